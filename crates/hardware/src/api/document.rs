//! The OpenAPI document, generated from the handlers' `#[utoipa::path]`
//! attributes and the wire types' schemas, so it cannot drift from the code.
//! A copy is committed beside this file (`openapi.json`) for readers; a test
//! fails when it differs from what the code generates.

use super::health::Status;
use super::{health, items};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, PathItem};
use utoipa::{Modify, OpenApi};
use wire::{
    Availability, Changes, ImportRequest, ImportSummary, Item, ItemInput, Problem, Rejected,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hardware",
        description = "The private hardware service: inventory and availability. Every error is an RFC 9457 problem body.",
    ),
    paths(
        items::list,
        items::changes,
        items::create,
        items::show,
        items::update,
        items::remove,
        items::import,
        health::live,
        health::ready,
        super::metrics,
        super::openapi,
    ),
    components(schemas(
        Availability,
        Item,
        Changes,
        ItemInput,
        ImportRequest,
        ImportSummary,
        Rejected,
        Problem,
        Status
    )),
    modifiers(&Conventions),
)]
struct ApiDoc;

/// What holds for every operation, added once rather than per handler.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token in ADMIN_TOKEN_FILE"))
                    .build(),
            ),
        );
        for item in doc.paths.paths.values_mut() {
            for operation in operations(item) {
                traced(operation);
            }
        }
        // `/hardware` answers like `/hardware/` (clients of the original
        // service use both): the same operations under their own ids.
        if let Some(item) = doc.paths.paths.get("/hardware/") {
            let mut bare = item.clone();
            for operation in operations(&mut bare) {
                if let Some(id) = &mut operation.operation_id {
                    id.push_str("NoSlash");
                }
            }
            doc.paths.paths.insert("/hardware".into(), bare);
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
    ]
    .into_iter()
    .flatten()
}

/// Every success answer names its replica and echoes the request id.
fn traced(operation: &mut Operation) {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    for (status, response) in operation.responses.responses.iter_mut() {
        let utoipa::openapi::RefOr::T(response) = response else {
            continue;
        };
        if status.starts_with('2') {
            response.headers.insert(
                wire::SERVED_BY.into(),
                HeaderBuilder::new()
                    .schema(Some(text()))
                    .description(Some("Instance that answered"))
                    .build()
                    .into(),
            );
            response.headers.insert(
                wire::REQUEST_ID.into(),
                HeaderBuilder::new()
                    .schema(Some(text()))
                    .description(Some("Request id (echoed when valid, generated otherwise)"))
                    .build()
                    .into(),
            );
        }
    }
}

/// Declares a set of problem answers (status, description), all with an
/// RFC 9457 body, for a handler's `responses(...)`, from lists of them.
macro_rules! problems {
    ($(#[$doc:meta])* $name:ident = $($list:expr),+ $(,)?) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::response::Response>,
            > {
                problems(&[$($list),+])
            }
        }
    };
}

type Problems = &'static [(u16, &'static str)];

fn problems(
    lists: &[Problems],
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::response::Response>>
{
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    lists
        .iter()
        .flat_map(|list| list.iter())
        .map(|(status, description)| {
            let response = ResponseBuilder::new()
                .description(*description)
                .content(
                    wire::PROBLEM_JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build();
            (status.to_string(), response.into())
        })
        .collect()
}

/// What any admin write can meet once its input parsed.
const WRITE: Problems = &[
    (401, "Missing or invalid token"),
    (409, "Duplicate provider and name"),
    (413, "Body too large"),
    (415, "Not JSON"),
    (422, "Invalid fields"),
    (503, "Database unavailable"),
];
const NO_SUCH_ITEM: Problems = &[(404, "No such item")];

problems!(
    /// The list's failures.
    ListProblems = &[(400, "A query value is malformed"), (503, "The inventory is not loaded yet")]
);
problems!(
    /// The change feed's failures.
    ChangesProblems = &[
        (400, "`since` is missing or not 16 hex digits"),
        (404, "This replica does not know that version (never handed it out, or forgot what followed): fetch the whole list"),
        (503, "The inventory is not loaded yet"),
    ]
);
problems!(
    /// Reading one item's failures.
    ShowProblems = &[(400, "Malformed id or query")], NO_SUCH_ITEM
);
problems!(
    /// Creating an item's failures.
    CreateProblems = &[(400, "Malformed JSON")], WRITE
);
problems!(
    /// Replacing an item's failures.
    UpdateProblems = &[(400, "Malformed id or JSON")], NO_SUCH_ITEM, WRITE
);
problems!(
    /// Removing an item's failures.
    DeleteProblems = &[
        (400, "Malformed id"),
        (401, "Missing or invalid token"),
        (503, "Database unavailable"),
    ],
    NO_SUCH_ITEM
);
problems!(
    /// An import's failures.
    ImportProblems = &[
        (400, "Malformed JSON"),
        (401, "Missing or invalid token"),
        (413, "Body too large (64 MiB)"),
        (415, "Not JSON"),
        (422, "Not an import request, or more than 1,000,000 items"),
        (503, "Database unavailable"),
    ]
);
problems!(
    /// Readiness failing.
    NotReady = &[(503, "Not ready")]
);

/// The document as pretty JSON.
pub fn json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"cannot serialize the document: {err}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::json;

    /// `cargo test` regenerates nothing: it fails, naming the command that does.
    #[test]
    fn the_committed_copy_is_what_the_code_generates() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api/openapi.json");
        let generated = json() + "\n";
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).expect("writing openapi.json");
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == generated,
            "crates/hardware/src/api/openapi.json differs from the generated document; \
             regenerate it with `UPDATE_OPENAPI=1 cargo test -p hardware --lib openapi`"
        );
    }

    #[test]
    fn the_limits_come_from_the_rust_constants() {
        let doc: serde_json::Value = serde_json::from_str(&json()).expect("json");
        let input = &doc["components"]["schemas"]["ItemInput"]["properties"];
        assert_eq!(input["provider"]["maxLength"], wire::MAX_PROVIDER_CHARS);
        assert_eq!(input["name"]["maxLength"], wire::MAX_NAME_CHARS);
        assert_eq!(input["name"]["pattern"], wire::TEXT_PATTERN);
        let items = &doc["components"]["schemas"]["ImportRequest"]["properties"]["items"];
        assert_eq!(items["maxItems"], wire::MAX_IMPORT_ITEMS);
        let list = &doc["paths"]["/hardware/"]["get"]["parameters"];
        let limit = list
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "limit"))
            .expect("limit parameter");
        assert_eq!(
            limit["schema"]["maximum"],
            super::super::query::MAX_LIMIT as f64
        );
        for path in [
            "/hardware",
            "/hardware/",
            "/hardware/{id}",
            "/hardware/import",
            "/readyz",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} documented");
        }
    }
}
