//! The wire contract between the `hardware` service and the `portal`.
//!
//! Both services depend on this crate, so a portal test deserializes exactly
//! what hardware serializes. The JSON shapes here are a public contract (the
//! README's API section, hardware's `/openapi.json`): the list endpoint answers a bare JSON array of [`Item`] so that
//! clients of the original Flask service keep working.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Header naming the instance that produced a response (its hostname by default).
pub const SERVED_BY: &str = "x-served-by";
/// Header carrying the request id, generated at the edge and forwarded downstream.
pub const REQUEST_ID: &str = "x-request-id";
/// Header with the number of items matching a filtered, paginated list request.
pub const TOTAL_COUNT: &str = "x-total-count";
/// Media type of every error body (RFC 9457).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Longest provider name accepted (the column's width in `sql/`).
pub const MAX_PROVIDER_CHARS: usize = 64;
/// Longest item name accepted (the column's width in `sql/`).
pub const MAX_NAME_CHARS: usize = 128;
/// Most items one import may carry.
pub const MAX_IMPORT_ITEMS: usize = 1_000_000;
/// The text rule of provider and name as an ECMA-262 pattern (for the
/// OpenAPI document): no control character anywhere, no white space or
/// control character first or last. hardware's `rules` checks the same in Rust.
pub const TEXT_PATTERN: &str = r"^[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000](?:[^\u0000-\u001F\u007F-\u009F]*[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000])?$";

/// How available an item is, as reported by the slow availability process.
///
/// `Unknown` means the value has never been computed (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "UPPERCASE")]
pub enum Availability {
    High,
    Medium,
    Low,
    Unknown,
}

impl Availability {
    /// Every level, in display order.
    pub const ALL: [Availability; 4] = [Self::High, Self::Medium, Self::Low, Self::Unknown];

    /// The wire spelling (`HIGH`, `MEDIUM`, `LOW`, `UNKNOWN`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "HIGH",
            Self::Medium => "MEDIUM",
            Self::Low => "LOW",
            Self::Unknown => "UNKNOWN",
        }
    }
}

impl fmt::Display for Availability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error returned when a string is not an availability level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseAvailabilityError;

impl fmt::Display for ParseAvailabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected one of HIGH, MEDIUM, LOW, UNKNOWN")
    }
}

impl std::error::Error for ParseAvailabilityError {}

impl FromStr for Availability {
    type Err = ParseAvailabilityError;

    /// Case-insensitive, so `?availability=high` works in a browser's address bar.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(s))
            .ok_or(ParseAvailabilityError)
    }
}

/// One piece of hardware with its availability, as listed by `GET /hardware/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Item {
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub id: u64,
    /// Shared, not copied: a service holds many items of few providers, and
    /// hands the same text to every list it makes (a clone is a count).
    #[cfg_attr(feature = "openapi", schema(schema_with = openapi::stored_provider))]
    pub provider: Arc<str>,
    #[cfg_attr(feature = "openapi", schema(schema_with = openapi::stored_name))]
    pub name: Arc<str>,
    pub availability: Availability,
    /// When `availability` was computed; null while it never was.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub checked_at: Option<DateTime<Utc>>,
}

/// The body of `POST /hardware/` and `PUT /hardware/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ItemInput {
    #[cfg_attr(feature = "openapi", schema(schema_with = openapi::input_provider))]
    pub provider: String,
    #[cfg_attr(feature = "openapi", schema(schema_with = openapi::input_name))]
    pub name: String,
}

/// The body of `POST /hardware/import`: the inventory as a list of items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// Each item is checked by the rules of `POST /hardware/` and, when it
    /// breaks them, reported in the summary rather than refused with the
    /// request: so the schema here does not constrain the fields.
    #[cfg_attr(feature = "openapi", schema(schema_with = openapi::import_items))]
    pub items: Vec<ItemInput>,
    /// Remove every item the list does not name.
    #[serde(default)]
    pub prune: bool,
    /// Work out the summary, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Apply the valid items even when some are rejected (otherwise a
    /// rejected item means nothing is applied).
    #[serde(default)]
    pub partial: bool,
}

/// One item of an import that was refused, by its position in the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rejected {
    pub index: usize,
    pub reason: String,
}

/// What an import did (or, with `dry_run` or a rejection, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportSummary {
    /// Items that were not in the inventory.
    pub added: u64,
    /// Valid items already there (including repeats within the list).
    pub unchanged: u64,
    /// Items removed because the list did not name them (`prune`).
    pub removed: u64,
    pub rejected: Vec<Rejected>,
    /// Whether the changes were made.
    pub applied: bool,
}

/// An RFC 9457 problem body: every error either service answers in JSON.
/// Which items a listing keeps: the rules the hardware API's `provider`,
/// `q` and `availability` parameters and the dashboard's filters share.
///
/// - `provider`: equal, ignoring ASCII case;
/// - `name`: contains the text, ignoring case;
/// - `availability`: equal.
///
/// Empty texts filter nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    provider: Option<String>,
    /// Lower-cased once, here.
    name: Option<String>,
    availability: Option<Availability>,
}

impl Filter {
    pub fn new(
        provider: Option<&str>,
        name: Option<&str>,
        availability: Option<Availability>,
    ) -> Self {
        fn text(value: Option<&str>) -> Option<&str> {
            value.filter(|value| !value.is_empty())
        }
        Self {
            provider: text(provider).map(str::to_owned),
            name: text(name).map(str::to_lowercase),
            availability,
        }
    }

    /// The provider asked for.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// The name part asked for, lower-cased.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The level asked for.
    pub fn availability(&self) -> Option<Availability> {
        self.availability
    }

    /// Whether it keeps every item.
    pub fn is_empty(&self) -> bool {
        self.provider.is_none() && self.name.is_none() && self.availability.is_none()
    }

    /// Whether it looks at availability (values not computed yet matter).
    pub fn by_availability(&self) -> bool {
        self.availability.is_some()
    }

    /// The rules that need only the inventory: provider and name.
    pub fn admits_record(&self, provider: &str, name: &str) -> bool {
        self.provider
            .as_ref()
            .is_none_or(|wanted| provider.eq_ignore_ascii_case(wanted))
            && self
                .name
                .as_ref()
                .is_none_or(|part| name.to_lowercase().contains(part.as_str()))
    }

    /// The availability rule.
    pub fn admits_level(&self, level: Availability) -> bool {
        self.availability.is_none_or(|wanted| level == wanted)
    }

    /// Every rule.
    pub fn admits(&self, item: &Item) -> bool {
        self.admits_record(&item.provider, &item.name) && self.admits_level(item.availability)
    }
}

/// FNV-1a, 64 bits: a digest that is the same on every replica, process and
/// Rust release (unlike `std`'s hasher). Names data versions: the portal's
/// version of a list, hardware's `ETag` of a list body.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    pub fn feed(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn finish(self) -> u64 {
        self.0
    }

    /// The digest of one byte string.
    pub fn of(bytes: &[u8]) -> u64 {
        let mut hash = Self::default();
        hash.feed(bytes);
        hash.finish()
    }
}

/// What a set of items is, as a number: the wrapping sum of every item's
/// [`digest`]. Equal data has an equal version on every replica of either
/// service and across restarts (no process counter is in it), and a change of
/// one item moves it by that item's digests alone, so both services keep it
/// up to date without looking at the other items. `Version::NONE` (0) is
/// "nothing seen"; no set of items has it (the empty set is 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Version(u64);

impl Version {
    pub const NONE: Version = Version(0);

    /// The version of a set whose digests sum to `sum`.
    pub fn from_sum(sum: u64) -> Self {
        Self(if sum == 0 { 1 } else { sum })
    }

    /// The version of `items`.
    pub fn of<'a>(items: impl IntoIterator<Item = &'a Item>) -> Self {
        Self::from_sum(
            items
                .into_iter()
                .fold(0u64, |sum, item| sum.wrapping_add(item.digest())),
        )
    }

    /// Parses what [`fmt::Display`] writes (16 hex digits), with or without
    /// the quotes of an `ETag`; anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let text = text.strip_prefix("W/").unwrap_or(text);
        let text = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        (text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| u64::from_str_radix(text, 16).ok())
            .flatten()
            .filter(|&n| n != 0)
            .map(Self)
    }

    /// The `ETag` of the data with this version.
    pub fn etag(self) -> String {
        format!("\"{self}\"")
    }
}

impl std::fmt::Display for Version {
    /// 16 hex digits: a string in HTML, JSON, SSE ids and `ETag`s, where a
    /// JavaScript number would lose the low bits.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// One item's contribution to a [`Version`]: FNV-1a over every field, then
/// mixed (so sums of similar items do not cancel out).
pub fn digest(
    id: u64,
    provider: &str,
    name: &str,
    availability: Availability,
    checked_at: Option<DateTime<Utc>>,
) -> u64 {
    let mut hash = Fnv1a::default();
    hash.feed(&id.to_le_bytes());
    hash.feed(provider.as_bytes());
    hash.feed(&[0xff]);
    hash.feed(name.as_bytes());
    hash.feed(&[0xff]);
    hash.feed(availability.as_str().as_bytes());
    let checked = checked_at.map_or(i64::MIN, |at| at.timestamp_nanos_opt().unwrap_or(i64::MAX));
    hash.feed(&checked.to_le_bytes());
    // The finalizer of SplitMix64.
    let mut z = hash.finish();
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Item {
    /// This item's contribution to a [`Version`].
    pub fn digest(&self) -> u64 {
        digest(
            self.id,
            &self.provider,
            &self.name,
            self.availability,
            self.checked_at,
        )
    }
}

/// `GET /hardware/changes?since=<version>`: what changed in the answering
/// replica's inventory since it held `since`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Changes {
    /// The version asked about.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{16}$"))]
    pub since: String,
    /// The replica's version now (also its list's `ETag`, unquoted).
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{16}$"))]
    pub version: String,
    /// Items added or changed since then, as they are now, in id order.
    pub changed: Vec<Item>,
    /// Ids of items removed since then, ascending.
    pub removed: Vec<u64>,
}

/// The slice `offset`, `limit` (none: to the end) selects of `total` items,
/// clamped to what exists.
pub fn page(total: usize, offset: usize, limit: Option<usize>) -> std::ops::Range<usize> {
    let start = offset.min(total);
    let end = limit.map_or(total, |limit| start.saturating_add(limit).min(total));
    start..end
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Problem {
    /// A URI reference naming the problem type (`about:blank` when generic).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
}

/// Schemas of fields whose limits are the constants above (utoipa's
/// attributes take literals only; these keep one source).
#[cfg(feature = "openapi")]
pub mod openapi {
    use super::{MAX_IMPORT_ITEMS, MAX_NAME_CHARS, MAX_PROVIDER_CHARS, TEXT_PATTERN};
    use utoipa::openapi::schema::{
        AdditionalProperties, ArrayBuilder, Object, ObjectBuilder, Type,
    };

    fn bounded(max: usize) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(max))
    }

    fn checked(max: usize) -> Object {
        bounded(max)
            .pattern(Some(TEXT_PATTERN))
            .description(Some(
                "No control characters, no leading or trailing white space",
            ))
            .build()
    }

    pub fn stored_provider() -> Object {
        bounded(MAX_PROVIDER_CHARS).build()
    }

    pub fn stored_name() -> Object {
        bounded(MAX_NAME_CHARS).build()
    }

    pub fn input_provider() -> Object {
        checked(MAX_PROVIDER_CHARS)
    }

    pub fn input_name() -> Object {
        checked(MAX_NAME_CHARS)
    }

    /// Items of an import: any provider and name strings (checked per item).
    pub fn import_items() -> utoipa::openapi::schema::Array {
        let item = ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("provider", ObjectBuilder::new().schema_type(Type::String))
            .property("name", ObjectBuilder::new().schema_type(Type::String))
            .required("provider")
            .required("name")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .description(Some(
                "An item to import; its fields are checked per item and reported in the summary, not refused with the request.",
            ));
        ArrayBuilder::new()
            .items(item)
            .max_items(Some(MAX_IMPORT_ITEMS))
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_serializes_to_the_seed_compatible_shape() {
        let item = Item {
            id: 1,
            provider: "Amazon".into(),
            name: "c5".into(),
            availability: Availability::High,
            checked_at: None,
        };
        let json = serde_json::to_value(&item).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({"id": 1, "provider": "Amazon", "name": "c5",
                               "availability": "HIGH", "checked_at": null})
        );
    }

    #[test]
    fn availability_parses_case_insensitively_and_rejects_others() {
        assert_eq!("medium".parse(), Ok(Availability::Medium));
        assert_eq!("UNKNOWN".parse(), Ok(Availability::Unknown));
        assert_eq!(
            "average".parse::<Availability>(),
            Err(ParseAvailabilityError)
        );
    }

    #[test]
    fn a_problem_uses_type_as_its_field_name() {
        let problem = Problem {
            kind: "about:blank".into(),
            title: "Not Found".into(),
            status: 404,
            detail: "no hardware with id 7".into(),
        };
        let json = serde_json::to_value(&problem).expect("serializes");
        assert_eq!(json["type"], "about:blank");
    }

    fn item(provider: &str, name: &str, level: Availability) -> Item {
        Item {
            id: 1,
            provider: provider.into(),
            name: name.into(),
            availability: level,
            checked_at: None,
        }
    }

    #[test]
    fn filters_match_provider_exactly_and_name_by_part_ignoring_case() {
        let filter = Filter::new(Some("amazon"), Some("C5"), None);
        assert!(filter.admits(&item("Amazon", "big-c5.xl", Availability::Low)));
        assert!(!filter.admits(&item("Amazon EU", "c5", Availability::Low)));
        assert!(!filter.admits(&item("Amazon", "m5", Availability::Low)));
        assert!(Filter::new(Some(""), Some(""), None).is_empty());
        let high = Filter::new(None, None, Some(Availability::High));
        assert!(high.by_availability());
        assert!(high.admits(&item("x", "y", Availability::High)));
        assert!(!high.admits(&item("x", "y", Availability::Unknown)));
        assert!(Filter::new(None, Some("ÄB"), None).admits_record("p", "xäbx"));
    }

    #[test]
    fn pages_are_clamped_to_what_exists() {
        assert_eq!(page(10, 0, None), 0..10);
        assert_eq!(page(10, 8, Some(5)), 8..10);
        assert_eq!(page(10, 20, Some(5)), 10..10);
        assert_eq!(page(10, 3, Some(usize::MAX)), 3..10);
    }
}
