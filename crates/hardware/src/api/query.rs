//! Query parameters of the list endpoint, parsed into checked values.
//!
//! Every parameter arrives as text and is parsed here, so a bad value gets a
//! 400 that names the parameter and says what is expected.

use super::error::ApiError;
use serde::Deserialize;
use std::time::Duration;
use utoipa::openapi::Required;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use wire::Availability;

/// Most items one page may hold.
pub const MAX_LIMIT: usize = 1000;
/// Largest offset accepted (documented in the OpenAPI schema).
pub const MAX_OFFSET: usize = 1_000_000_000_000;

/// The raw parameters; unknown ones are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct RawListQuery {
    pub provider: Option<String>,
    pub availability: Option<String>,
    pub q: Option<String>,
    pub limit: Option<String>,
    pub offset: Option<String>,
    pub wait: Option<String>,
}

#[cfg(test)]
impl RawListQuery {
    /// The parameters as a query string's pairs would set them (tests).
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        let mut raw = Self::default();
        for (key, value) in pairs {
            let value = Some((*value).to_owned());
            match *key {
                "provider" => raw.provider = value,
                "availability" => raw.availability = value,
                "q" => raw.q = value,
                "limit" => raw.limit = value,
                "offset" => raw.offset = value,
                "wait" => raw.wait = value,
                _ => {}
            }
        }
        raw
    }
}

/// The parameters, checked.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ListQuery {
    /// `provider`, `q` and `availability`, as the shared filter rules.
    pub filter: wire::Filter,
    pub limit: Option<usize>,
    pub offset: usize,
    /// `None` means "the default", which the caller knows.
    pub wait: Option<Duration>,
}

impl ListQuery {
    pub fn parse(raw: RawListQuery) -> Result<Self, ApiError> {
        let limit = raw
            .limit
            .map(|text| match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(ApiError::BadRequest(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}"
                ))),
            })
            .transpose()?;
        let offset = raw
            .offset
            .map(|text| match text.parse::<usize>() {
                Ok(n) if n <= MAX_OFFSET => Ok(n),
                _ => Err(ApiError::BadRequest(format!(
                    "offset must be a whole number from 0 to {MAX_OFFSET}"
                ))),
            })
            .transpose()?
            .unwrap_or(0);
        let availability = raw
            .availability
            .map(|text| {
                text.parse::<Availability>().map_err(|_| {
                    ApiError::BadRequest(
                        "availability must be one of HIGH, MEDIUM, LOW, UNKNOWN".into(),
                    )
                })
            })
            .transpose()?;
        let wait = raw.wait.map(|text| parse_wait(&text)).transpose()?;
        Ok(Self {
            filter: wire::Filter::new(raw.provider.as_deref(), raw.q.as_deref(), availability),
            limit,
            offset,
            wait,
        })
    }

    /// Whether this is the plain full listing (no filter, no paging): the
    /// cached fast path.
    pub fn is_full_listing(&self) -> bool {
        self.filter.is_empty() && self.limit.is_none() && self.offset == 0
    }

    /// The query string for the same filters at another offset (for `Link`).
    pub fn with_offset(&self, offset: usize) -> String {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(provider) = self.filter.provider() {
            pairs.push(("provider", provider.to_owned()));
        }
        if let Some(level) = self.filter.availability() {
            pairs.push(("availability", level.as_str().to_owned()));
        }
        if let Some(q) = self.filter.name() {
            pairs.push(("q", q.to_owned()));
        }
        if let Some(limit) = self.limit {
            pairs.push(("limit", limit.to_string()));
        }
        pairs.push(("offset", offset.to_string()));
        if let Some(wait) = self.wait {
            pairs.push(("wait", format!("{}", wait.as_secs_f64())));
        }
        pairs
            .iter()
            .map(|(key, value)| format!("{key}={}", encode(value)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// `wait` as documented in the OpenAPI schema: seconds with up to six
/// decimals, optionally suffixed `s`, or whole milliseconds with `ms`
/// (`2`, `0.5`, `2s`, `250ms`). Exactly that grammar, so what the schema
/// allows is accepted and what it forbids is refused.
/// What `parse_wait` accepts, as an ECMA-262 pattern (for the OpenAPI document).
pub const WAIT_PATTERN: &str = r"^[0-9]{1,9}(\.[0-9]{1,6})?(ms|s)?$";

const WAIT_DESCRIPTION: &str = "How long to wait for values never computed: seconds (`2`, \
    `0.5`, `2s`) or milliseconds (`250ms`). Default and upper bound: AVAILABILITY_MAX_WAIT. \
    `0` never blocks.";

/// The query parameter `wait`, documented.
pub fn wait_parameter() -> Parameter {
    parameter(
        "wait",
        WAIT_DESCRIPTION,
        string().pattern(Some(WAIT_PATTERN)),
    )
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn integer(minimum: usize, maximum: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(minimum as f64))
        .maximum(Some(maximum as f64))
}

fn parameter(name: &str, description: &str, schema: ObjectBuilder) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// The list endpoint's parameters, documented from the same limits `parse` enforces.
impl utoipa::IntoParams for RawListQuery {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let levels = Availability::ALL.map(Availability::as_str);
        vec![
            parameter("provider", "Exact provider, case-insensitive", string()),
            parameter(
                "availability",
                "Only items at this level (case-insensitive)",
                string().enum_values(Some(levels)),
            ),
            parameter("q", "Name contains (case-insensitive)", string()),
            parameter("limit", "Page size", integer(1, MAX_LIMIT)),
            parameter("offset", "Items to skip", integer(0, MAX_OFFSET)),
            wait_parameter(),
        ]
    }
}

fn parse_wait(text: &str) -> Result<Duration, ApiError> {
    let bad = || {
        ApiError::BadRequest(
            "wait must be seconds (2, 0.5, 2s) or milliseconds (250ms), at most 9 digits".into(),
        )
    };
    let (number, millis) = match text.strip_suffix("ms") {
        Some(number) => (number, true),
        None => (text.strip_suffix('s').unwrap_or(text), false),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(whole, 9) || (number.contains('.') && !digits(fraction, 6)) {
        return Err(bad());
    }
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = if millis { value / 1000.0 } else { value };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

/// Encodes a query value (`application/x-www-form-urlencoded`).
fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> RawListQuery {
        RawListQuery::from_pairs(pairs)
    }

    #[test]
    fn good_values_parse() {
        let query = ListQuery::parse(raw(&[
            ("availability", "high"),
            ("q", "C5"),
            ("limit", "10"),
            ("offset", "20"),
            ("wait", "0.5"),
        ]))
        .expect("valid");
        assert_eq!(query.filter.availability(), Some(Availability::High));
        assert_eq!(query.filter.name(), Some("c5"));
        assert_eq!((query.limit, query.offset), (Some(10), 20));
        assert_eq!(query.wait, Some(Duration::from_millis(500)));
    }

    #[test]
    fn bad_values_are_rejected_naming_the_parameter() {
        for (key, value) in [
            ("limit", "0"),
            ("limit", "1001"),
            ("limit", "ten"),
            ("offset", "-1"),
            ("availability", "average"),
            ("wait", "-1"),
            ("wait", "NaN"),
            ("wait", "soon"),
            ("wait", "1m"),
            ("wait", "1e3"),
            ("wait", "1234567890"),
            ("wait", ".5"),
        ] {
            let err = ListQuery::parse(raw(&[(key, value)])).expect_err(value);
            assert!(err.to_string().starts_with(key), "{key}={value}: {err}");
        }
    }

    #[test]
    fn wait_accepts_seconds_and_milliseconds() {
        for (text, expected) in [("250ms", 250), ("2s", 2000), ("0.5", 500), ("0", 0)] {
            let query = ListQuery::parse(raw(&[("wait", text)])).expect(text);
            assert_eq!(query.wait, Some(Duration::from_millis(expected)), "{text}");
        }
    }

    #[test]
    fn the_next_link_keeps_the_filters_and_encodes_them() {
        let query = ListQuery::parse(raw(&[("provider", "A&B"), ("limit", "2")])).expect("valid");
        assert_eq!(query.with_offset(2), "provider=A%26B&limit=2&offset=2");
    }
}
