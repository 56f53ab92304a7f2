//! `/hardware` — the inventory with its availability.

use super::AppState;
use super::auth::Admin;
use super::document::{
    ChangesProblems, CreateProblems, DeleteProblems, ImportProblems, ListProblems, ShowProblems,
    UpdateProblems,
};
use super::error::ApiError;
use super::extract::{Body, Id, Params};
use super::query::{ListQuery, RawListQuery};
use super::select;
use crate::db::Record;
use crate::engine::Since;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wire::{Changes, Item, ItemInput, Version};

use crate::engine::item;

/// The JSON of the unfiltered list, reused while nothing it shows changed
/// (the engine numbers every change), so it is exactly what serializing anew
/// would produce.
///
/// With it: its `ETag`, the data's [`wire::Version`] (so replicas holding the
/// same data give the same tag, and a client that has them is answered `304`
/// with no body), and its gzip form, made once per version for the first
/// client that accepts it.
#[derive(Debug, Clone, Default)]
pub struct FullListCache {
    inner: std::sync::Arc<std::sync::Mutex<Option<FullList>>>,
}

#[derive(Debug)]
struct FullList {
    /// The engine's change this rendering shows.
    change: u64,
    rendered: std::sync::Arc<Rendered>,
    /// When it was last asked for: an unused rendering (12 MB at 100,000
    /// items; portals ask for changes, not lists) is dropped.
    used: std::time::Instant,
}

/// How long a rendering nobody asks for is kept.
pub const FULL_LIST_KEPT: std::time::Duration = std::time::Duration::from_secs(30);

/// One version of the full list, in every form it is sent in.
#[derive(Debug)]
pub(crate) struct Rendered {
    body: axum::body::Bytes,
    etag: HeaderValue,
    count: usize,
    gzip: std::sync::OnceLock<axum::body::Bytes>,
}

impl Rendered {
    fn new(body: Vec<u8>, version: Version, count: usize) -> Self {
        let etag = HeaderValue::from_str(&version.etag())
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Self {
            body: axum::body::Bytes::from(body),
            etag,
            count,
            gzip: std::sync::OnceLock::new(),
        }
    }

    /// Whether `If-None-Match` names this version.
    fn matches(&self, headers: &HeaderMap) -> bool {
        let Ok(tag) = self.etag.to_str() else {
            return false;
        };
        headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|candidate| candidate.trim().trim_start_matches("W/"))
            .any(|candidate| candidate == tag || candidate == "*")
    }

    /// The gzip form, compressed on first use (off the async threads).
    async fn gzip(self: std::sync::Arc<Self>) -> Result<axum::body::Bytes, ApiError> {
        if let Some(done) = self.gzip.get() {
            return Ok(done.clone());
        }
        tokio::task::spawn_blocking(move || {
            self.gzip
                .get_or_init(|| axum::body::Bytes::from(gzip(&self.body)))
                .clone()
        })
        .await
        .map_err(|err| ApiError::Internal(err.into()))
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 8),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Whether the client takes gzip (`Accept-Encoding`, not refused with `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

impl FullListCache {
    fn get_or_render(&self, state: &AppState) -> Result<std::sync::Arc<Rendered>, ApiError> {
        let change = state.engine.change();
        let mut cached = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(list) = cached.as_mut()
            && list.change == change
        {
            list.used = std::time::Instant::now();
            return Ok(std::sync::Arc::clone(&list.rendered));
        }
        // The items, their version and the change they were current at, read
        // together: the tag always names exactly this body.
        let (version, change, items) = state.engine.everything();
        let body = serde_json::to_vec(&items).map_err(|err| ApiError::Internal(err.into()))?;
        let rendered = std::sync::Arc::new(Rendered::new(body, version, items.len()));
        *cached = Some(FullList {
            change,
            rendered: std::sync::Arc::clone(&rendered),
            used: std::time::Instant::now(),
        });
        Ok(rendered)
    }

    /// Drops the rendering if nobody asked for it for `kept`; true if it did.
    pub fn forget_unused(&self, kept: std::time::Duration) -> bool {
        let mut cached = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let unused = cached
            .as_ref()
            .is_some_and(|list| list.used.elapsed() >= kept);
        if unused {
            *cached = None;
        }
        unused
    }
}

/// Bodies of the change feed smaller than this are sent as they are.
const GZIP_FROM_BYTES: usize = 1_400;

#[derive(Debug, serde::Deserialize)]
pub struct ChangesQuery {
    since: Option<String>,
}

impl utoipa::IntoParams for ChangesQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        vec![
            ParameterBuilder::new()
                .name("since")
                .parameter_in(ParameterIn::Query)
                .required(utoipa::openapi::Required::True)
                .description(Some(
                    "A version this replica handed out: a list's `ETag` (quotes optional) or a previous answer's `version`",
                ))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^\"?[0-9a-f]{16}\"?$")),
                ))
                .build(),
        ]
    }
}

/// `GET /hardware/changes?since=<version>`: what changed since then.
#[utoipa::path(
    get,
    path = "/hardware/changes",
    operation_id = "hardwareChanges",
    summary = "What changed in the inventory since a version this replica handed out",
    description = "The change feed: items added or changed (as they are now) and ids removed since `since`, with the version they make. A replica answers from what it remembers of its own versions; `404` means fetch the whole list (`GET /hardware/`, whose `ETag` is a version) and go on from there. Versions are the data's (a sum of per-item digests), equal on every replica holding the same data.",
    params(ChangesQuery),
    responses(
        (status = 200, description = "What changed", body = Changes, headers(
            ("etag" = String, description = "The version now"),
            ("content-encoding" = String, description = "`gzip` when the request accepts it and the body is not tiny"),
        )),
        (status = 304, description = "`since` is the current version: nothing changed (no body)"),
        ChangesProblems,
    ),
)]
pub async fn changes(
    State(state): State<AppState>,
    request_headers: HeaderMap,
    Params(raw): Params<ChangesQuery>,
) -> Result<Response, ApiError> {
    let text = raw.since.as_deref().unwrap_or_default();
    let digits = text.trim().trim_matches('"');
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(
            "since: a version is required: 16 hex digits, e.g. an ETag".into(),
        ));
    }
    // Well-formed; all zeros is "nothing seen", which no data has.
    let since = Version::parse(digits).unwrap_or(Version::NONE);
    if state.inventory.snapshot().is_none() {
        return Err(ApiError::Unavailable(
            "the inventory is not loaded yet; try again shortly".into(),
        ));
    }
    let (version, changed, removed) = match state.engine.changes_since(since) {
        Since::Current => {
            let mut headers = HeaderMap::new();
            if let Ok(tag) = HeaderValue::from_str(&since.etag()) {
                headers.insert(header::ETAG, tag);
            }
            return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
        }
        Since::Unknown => {
            return Err(ApiError::NotFound(format!(
                "this replica does not know version {digits} (never handed it out, or forgot what followed); fetch GET /hardware/ and go on from its ETag"
            )));
        }
        Since::Changed {
            version,
            changed,
            removed,
        } => (version, changed, removed),
    };
    let answer = Changes {
        since: since.to_string(),
        version: version.to_string(),
        changed,
        removed,
    };
    let body = serde_json::to_vec(&answer).map_err(|err| ApiError::Internal(err.into()))?;
    let mut headers = HeaderMap::new();
    if let Ok(tag) = HeaderValue::from_str(&version.etag()) {
        headers.insert(header::ETAG, tag);
    }
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if body.len() >= GZIP_FROM_BYTES && accepts_gzip(&request_headers) {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        let body = tokio::task::spawn_blocking(move || gzip(&body))
            .await
            .map_err(|err| ApiError::Internal(err.into()))?;
        return Ok((headers, body).into_response());
    }
    Ok((headers, body).into_response())
}

/// `GET /hardware/`: every item (or a filtered page), in id order.
#[utoipa::path(
    get,
    path = "/hardware/",
    operation_id = "listHardware",
    summary = "Every item with its availability, in id order",
    description = "A bare JSON array (compatible with the original service). Filters and pagination are optional.",
    params(RawListQuery),
    responses(
        (status = 200, description = "The items", body = [Item], headers(
            ("x-total-count" = u64, description = "Items matching the filters"),
            ("link" = String, description = "`rel=\"next\"` when a further page exists"),
            ("etag" = String, description = "Unfiltered list only: the data's version (equal on every replica with the same data); send it as `If-None-Match`, or as `since` to `/hardware/changes`"),
            ("content-encoding" = String, description = "Unfiltered list only: `gzip` when the request accepts it"),
        )),
        (status = 304, description = "Unfiltered list only: `If-None-Match` named the current `ETag` (no body)"),
        ListProblems,
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    request_headers: HeaderMap,
    Params(raw): Params<RawListQuery>,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(raw)?;
    let snapshot = state.inventory.snapshot().ok_or_else(|| {
        ApiError::Unavailable("the inventory is not loaded yet; try again shortly".into())
    })?;
    let wait = query.wait.unwrap_or(state.max_wait).min(state.max_wait);
    if query.is_full_listing() {
        // The common request (the portal, old clients): no per-item work
        // unless some value was never computed.
        if !wait.is_zero() && state.engine.has_never_computed() {
            let ids: Vec<u64> = snapshot.records.iter().map(|r| r.id).collect();
            state.engine.wait_for(&ids, wait).await;
        }
        let rendered = state.full_list.get_or_render(&state)?;
        let mut headers = HeaderMap::new();
        headers.insert(header::ETAG, rendered.etag.clone());
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        headers.insert(
            HeaderName::from_static(wire::TOTAL_COUNT),
            HeaderValue::from(rendered.count),
        );
        if rendered.matches(&request_headers) {
            return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if accepts_gzip(&request_headers) {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            let body = rendered.gzip().await?;
            return Ok((headers, body).into_response());
        }
        return Ok((headers, rendered.body.clone()).into_response());
    }
    let candidates = select::candidates(&snapshot.records, &query.filter);
    if !wait.is_zero() {
        let ids = select::worth_waiting_for(&candidates, &query);
        state.engine.wait_for(&ids, wait).await;
    }
    let readings = state
        .engine
        .readings(candidates.iter().map(|record| record.id));
    let page = select::page(
        candidates
            .iter()
            .zip(readings)
            .map(|(record, reading)| item(record, reading)),
        &query,
    );
    let mut headers = HeaderMap::new();
    headers.insert(wire::TOTAL_COUNT, HeaderValue::from(page.total));
    if let Some(next) = page.next_offset {
        let link = format!("</hardware/?{}>; rel=\"next\"", query.with_offset(next));
        if let Ok(value) = HeaderValue::from_str(&link) {
            headers.insert(header::LINK, value);
        }
    }
    Ok((headers, Json(page.items)).into_response())
}

#[derive(Debug, serde::Deserialize)]
pub struct WaitQuery {
    wait: Option<String>,
}

impl utoipa::IntoParams for WaitQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![super::query::wait_parameter()]
    }
}

/// `GET /hardware/{id}`.
#[utoipa::path(
    get,
    path = "/hardware/{id}",
    operation_id = "getHardware",
    summary = "One item",
    params(("id" = u64, Path, minimum = 1), WaitQuery),
    responses(
        (status = 200, description = "The item", body = Item),
        ShowProblems,
    ),
)]
pub async fn show(
    State(state): State<AppState>,
    Id(id): Id,
    Params(raw): Params<WaitQuery>,
) -> Result<Json<Item>, ApiError> {
    let wait = ListQuery::parse(RawListQuery {
        wait: raw.wait,
        ..RawListQuery::default()
    })?
    .wait
    .unwrap_or(state.max_wait)
    .min(state.max_wait);
    let record = find(&state, id).await?;
    state.engine.wait_for(&[id], wait).await;
    Ok(Json(item(&record, state.engine.reading(id))))
}

/// Looks in the snapshot first; on a miss asks the database, since another
/// replica may have created the item since this one last refreshed.
async fn find(state: &AppState, id: u64) -> Result<Record, ApiError> {
    if let Some(record) = state.inventory.snapshot().and_then(|s| s.get(id).cloned()) {
        return Ok(record);
    }
    match state.db.find(id).await? {
        Some(record) => {
            refresh_after_write(state).await;
            Ok(record)
        }
        None => Err(not_found(id)),
    }
}

fn not_found(id: u64) -> ApiError {
    ApiError::NotFound(format!("no hardware with id {id}"))
}

/// Checks a body's fields; the error says which field and why.
fn validate(input: ItemInput) -> Result<ItemInput, ApiError> {
    crate::rules::check_item(&input).map_err(ApiError::Unprocessable)?;
    Ok(input)
}

/// Makes this replica see its own write at once (read-your-writes). The write
/// already succeeded, so a failure here is logged, not reported, and the
/// answer waits at most one statement limit for it (the refresh goes on in
/// the background, within its own bounds, rather than being cut mid-statement).
pub(crate) async fn refresh_after_write(state: &AppState) {
    let inventory = state.inventory.clone();
    let refreshing = tokio::spawn(async move { inventory.refresh().await });
    match tokio::time::timeout(state.db.statement_limit(), refreshing).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(err))) => {
            tracing::warn!(error = %err, "inventory refresh after a write failed; the poller will retry");
        }
        Ok(Err(panicked)) => tracing::error!(error = %panicked, "inventory refresh panicked"),
        Err(_) => tracing::warn!(
            "inventory refresh after a write is slow; answering now, this replica shows the write once it lands"
        ),
    }
}

/// `POST /hardware/` (admin): `201` with `Location`.
#[utoipa::path(
    post,
    path = "/hardware/",
    operation_id = "createHardware",
    summary = "Add an item (admin)",
    security(("bearer" = [])),
    request_body = ItemInput,
    responses(
        (status = 201, description = "Created", body = Item, headers(
            ("location" = String, description = "URL of the new item"),
        )),
        CreateProblems,
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    _admin: Admin,
    Body(input): Body<ItemInput>,
) -> Result<Response, ApiError> {
    let input = validate(input)?;
    let id = state.db.insert(&input.provider, &input.name).await?;
    refresh_after_write(&state).await;
    tracing::info!(id, provider = %input.provider, name = %input.name, "hardware created");
    let record = Record {
        id,
        provider: input.provider.into(),
        name: input.name.into(),
    };
    let location = HeaderValue::from_str(&format!("/hardware/{id}"))
        .map_err(|err| ApiError::Internal(err.into()))?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(item(&record, None)),
    )
        .into_response())
}

/// `PUT /hardware/{id}` (admin): replaces provider and name.
#[utoipa::path(
    put,
    path = "/hardware/{id}",
    operation_id = "updateHardware",
    summary = "Replace provider and name (admin)",
    security(("bearer" = [])),
    params(("id" = u64, Path, minimum = 1)),
    request_body = ItemInput,
    responses(
        (status = 200, description = "Updated", body = Item),
        UpdateProblems,
    ),
)]
pub async fn update(
    State(state): State<AppState>,
    _admin: Admin,
    Id(id): Id,
    Body(input): Body<ItemInput>,
) -> Result<Json<Item>, ApiError> {
    let input = validate(input)?;
    if !state.db.update(id, &input.provider, &input.name).await? {
        return Err(not_found(id));
    }
    refresh_after_write(&state).await;
    tracing::info!(id, provider = %input.provider, name = %input.name, "hardware updated");
    let record = Record {
        id,
        provider: input.provider.into(),
        name: input.name.into(),
    };
    Ok(Json(item(&record, state.engine.reading(id))))
}

/// `POST /hardware/import` (admin): adds the listed items that are missing
/// (and with `prune` removes the rest) in one transaction; the summary says
/// what was (or, with `dry_run` or a rejection, would be) done.
#[utoipa::path(
    post,
    path = "/hardware/import",
    operation_id = "importHardware",
    summary = "Import an inventory (admin): add the listed items that are missing; with prune, remove the rest",
    description = "One transaction, in batches. Each item is checked by the same rules as POST /hardware/; an item that breaks them is reported in `rejected` (by its index) and, unless `partial`, nothing is applied. Whether two items are the same is decided by the database's case-insensitive collation. `dry_run` reports what would happen and changes nothing.",
    security(("bearer" = [])),
    request_body = wire::ImportRequest,
    responses(
        (status = 200, description = "What was (or would be) done", body = wire::ImportSummary),
        ImportProblems,
    ),
)]
pub async fn import(
    State(state): State<AppState>,
    _admin: Admin,
    Body(request): Body<wire::ImportRequest>,
) -> Result<Json<wire::ImportSummary>, ApiError> {
    if request.items.len() > crate::import::MAX_ITEMS {
        return Err(ApiError::Unprocessable(format!(
            "an import carries at most {} items",
            crate::import::MAX_ITEMS
        )));
    }
    let summary = state.db.import(&request).await?;
    if summary.applied {
        refresh_after_write(&state).await;
    }
    tracing::info!(
        items = request.items.len(),
        added = summary.added,
        unchanged = summary.unchanged,
        removed = summary.removed,
        rejected = summary.rejected.len(),
        applied = summary.applied,
        "inventory import"
    );
    Ok(Json(summary))
}

/// `DELETE /hardware/{id}` (admin): `204`.
#[utoipa::path(
    delete,
    path = "/hardware/{id}",
    operation_id = "deleteHardware",
    summary = "Remove an item (admin)",
    security(("bearer" = [])),
    params(("id" = u64, Path, minimum = 1)),
    responses(
        (status = 204, description = "Deleted"),
        DeleteProblems,
    ),
)]
pub async fn remove(
    State(state): State<AppState>,
    _admin: Admin,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    if !state.db.delete(id).await? {
        return Err(not_found(id));
    }
    refresh_after_write(&state).await;
    tracing::info!(id, "hardware deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::MAX_NAME_CHARS;

    fn input(provider: &str, name: &str) -> ItemInput {
        ItemInput {
            provider: provider.into(),
            name: name.into(),
        }
    }

    #[test]
    fn valid_fields_pass() {
        assert!(validate(input("Amazon", "c5.large")).is_ok());
        assert!(validate(input("Ünïcode", &"n".repeat(MAX_NAME_CHARS))).is_ok());
    }

    #[test]
    fn invalid_fields_are_named() {
        for (body, field) in [
            (input("", "c5"), "provider"),
            (input("  ", "c5"), "provider"),
            (input("Amazon", &"n".repeat(MAX_NAME_CHARS + 1)), "name"),
            (input("Amazon", "c5\u{0}"), "name"),
            (input("Amazon\n", "c5"), "provider"),
            (input("Amazon", " c5"), "name"),
        ] {
            let err = validate(body).expect_err("invalid");
            assert!(err.to_string().starts_with(field), "{err}");
            assert_eq!(err.status(), StatusCode::UNPROCESSABLE_ENTITY);
        }
    }
}
