//! Turning the catalog into what a page shows: filters, sorting, paging, wording.
//!
//! Pure functions over data, so they are unit-tested without HTTP.

use super::PageError;
pub use crate::catalog::{Entry, badge_text, iso, level_class};
use crate::config::MAX_PAGE_SIZE;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use wire::Availability;

/// The dashboard's query parameters, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct RawFilters {
    pub provider: Option<String>,
    pub level: Option<String>,
    pub q: Option<String>,
    pub sort: Option<String>,
    pub order: Option<String>,
    pub page: Option<String>,
    pub per_page: Option<String>,
}

/// What can be sorted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Provider,
    Name,
    Availability,
    Checked,
}

impl SortKey {
    pub const ALL: [(SortKey, &'static str, &'static str); 5] = [
        (Self::Id, "id", "Date added"),
        (Self::Provider, "provider", "Provider"),
        (Self::Name, "name", "Name"),
        (Self::Availability, "availability", "Availability"),
        (Self::Checked, "checked", "Last checked"),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(key, _, _)| *key == self)
            .map_or("id", |(_, value, _)| value)
    }
}

/// The parameters, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filters {
    pub provider: String,
    pub level: Option<Availability>,
    pub q: String,
    pub sort: SortKey,
    pub descending: bool,
    pub page: usize,
    pub per_page: usize,
    default_per_page: usize,
}

const MAX_TEXT: usize = 128;

fn text(name: &str, value: Option<String>) -> Result<String, PageError> {
    let value = value.unwrap_or_default();
    if value.chars().count() > MAX_TEXT {
        return Err(PageError::BadRequest(format!(
            "The {name} filter is longer than {MAX_TEXT} characters."
        )));
    }
    Ok(value.trim().to_owned())
}

fn number(
    name: &str,
    value: Option<String>,
    range: std::ops::RangeInclusive<usize>,
) -> Result<Option<usize>, PageError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<usize>() {
            Ok(n) if range.contains(&n) => Ok(Some(n)),
            _ => Err(PageError::BadRequest(format!(
                "{name} must be a whole number from {} to {}.",
                range.start(),
                range.end()
            ))),
        },
    }
}

impl Filters {
    pub fn parse(raw: RawFilters, default_per_page: usize) -> Result<Self, PageError> {
        let level = match raw.level.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse::<Availability>().map_err(|_| {
                PageError::BadRequest(
                    "The availability filter must be HIGH, MEDIUM, LOW or UNKNOWN.".into(),
                )
            })?),
        };
        let sort = match raw.sort.as_deref().map(str::trim) {
            None | Some("") => SortKey::Id,
            Some(text) => SortKey::ALL
                .iter()
                .find(|(_, value, _)| *value == text)
                .map(|(key, _, _)| *key)
                .ok_or_else(|| {
                    PageError::BadRequest(
                        "Sort must be one of id, provider, name, availability or checked.".into(),
                    )
                })?,
        };
        let descending = match raw.order.as_deref().map(str::trim) {
            None | Some("") | Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(PageError::BadRequest("Order must be asc or desc.".into())),
        };
        Ok(Self {
            provider: text("provider", raw.provider)?,
            level,
            q: text("name", raw.q)?,
            sort,
            descending,
            page: number("The page", raw.page, 1..=1_000_000)?.unwrap_or(1),
            per_page: number("Rows per page", raw.per_page, 1..=MAX_PAGE_SIZE)?
                .unwrap_or(default_per_page),
            default_per_page,
        })
    }

    /// The filter rules (shared with the hardware API) these filters ask for.
    pub fn rules(&self) -> wire::Filter {
        wire::Filter::new(Some(&self.provider), Some(&self.q), self.level)
    }

    /// No filter and ascending by id: every entry, in the order held.
    pub fn is_everything_by_id(&self) -> bool {
        self.provider.is_empty()
            && self.q.is_empty()
            && self.level.is_none()
            && self.sort == SortKey::Id
            && !self.descending
    }

    /// Sorts `entries` in place; ties keep id order, so paging is stable.
    pub fn sort(&self, entries: &mut [&Entry]) {
        entries.sort_by(|a, b| {
            let (a, b) = (&a.item, &b.item);
            let primary = match self.sort {
                SortKey::Id => std::cmp::Ordering::Equal,
                SortKey::Provider => a.provider.to_lowercase().cmp(&b.provider.to_lowercase()),
                SortKey::Name => a.name.to_lowercase().cmp(&b.name.to_lowercase()),
                // HIGH < MEDIUM < LOW < UNKNOWN in the enum: "best first" ascending.
                SortKey::Availability => a.availability.cmp(&b.availability),
                SortKey::Checked => a.checked_at.cmp(&b.checked_at),
            };
            let ordered = primary.then(a.id.cmp(&b.id));
            if self.descending {
                ordered.reverse()
            } else {
                ordered
            }
        });
    }

    /// A link to this view with other values for some parameters.
    pub fn href(&self, level: Option<Option<Availability>>, page: Option<usize>) -> String {
        let level = level.unwrap_or(self.level);
        let page = page.unwrap_or(self.page);
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if !self.q.is_empty() {
            pairs.push(("q", self.q.clone()));
        }
        if !self.provider.is_empty() {
            pairs.push(("provider", self.provider.clone()));
        }
        if let Some(level) = level {
            pairs.push(("level", level.as_str().to_owned()));
        }
        if self.sort != SortKey::Id {
            pairs.push(("sort", self.sort.as_str().to_owned()));
        }
        if self.descending {
            pairs.push(("order", "desc".to_owned()));
        }
        if self.per_page != self.default_per_page {
            pairs.push(("per_page", self.per_page.to_string()));
        }
        if page > 1 {
            pairs.push(("page", page.to_string()));
        }
        if pairs.is_empty() {
            return "/".to_owned();
        }
        let query: Vec<String> = pairs
            .into_iter()
            .map(|(key, value)| format!("{key}={}", url_encode(&value)))
            .collect();
        format!("/?{}", query.join("&"))
    }
}

fn url_encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// Label of a level in the counts.
pub fn level_label(level: Availability) -> &'static str {
    match level {
        Availability::High => "High",
        Availability::Medium => "Medium",
        Availability::Low => "Low",
        Availability::Unknown => "Pending",
    }
}

/// What the stale banner says the data dates from: "2026-12-07 14:02:07 UTC".
pub fn stale_since(fetched_at: DateTime<Utc>) -> String {
    fetched_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// When a value was checked, as the page is served: "2026-12-07 14:02 UTC",
/// "not yet" for never. A page holds no wording relative to the moment it was
/// rendered (the page would change every second, and could not be cached or
/// revalidated); its script words these as ages ("12 s ago") in the browser.
pub fn checked_text(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(
        || "not yet".to_owned(),
        |at| at.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::Item;

    fn entry(id: u64, provider: &str, name: &str, level: Availability) -> Entry {
        Entry {
            item: Item {
                id,
                provider: provider.into(),
                name: name.into(),
                availability: level,
                checked_at: None,
            },
        }
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<Filters, PageError> {
        let mut raw = RawFilters::default();
        for (key, value) in pairs {
            let value = Some((*value).to_owned());
            match *key {
                "provider" => raw.provider = value,
                "level" => raw.level = value,
                "q" => raw.q = value,
                "sort" => raw.sort = value,
                "order" => raw.order = value,
                "page" => raw.page = value,
                "per_page" => raw.per_page = value,
                _ => {}
            }
        }
        Filters::parse(raw, 50)
    }

    #[test]
    fn a_value_never_computed_reads_pending_like_its_count() {
        assert_eq!(badge_text(Availability::Unknown), "PENDING");
        assert_eq!(level_label(Availability::Unknown), "Pending");
        assert_eq!(badge_text(Availability::High), "HIGH");
    }

    #[test]
    fn only_the_plain_view_takes_the_entries_as_held() {
        let everything =
            |pairs: &[(&str, &str)]| parse(pairs).expect("valid").is_everything_by_id();
        assert!(everything(&[]));
        assert!(everything(&[
            ("page", "3"),
            ("per_page", "100"),
            ("sort", "id")
        ]));
        for pairs in [
            &[("provider", "amazon")][..],
            &[("level", "high")],
            &[("q", "c5")],
            &[("sort", "name")],
            &[("order", "desc")],
        ] {
            assert!(!everything(pairs), "{pairs:?}");
        }
    }

    #[test]
    fn filters_combine() {
        let filters =
            parse(&[("provider", "amazon"), ("level", "high"), ("q", "C5")]).expect("valid");
        assert!(
            filters
                .rules()
                .admits(&entry(1, "Amazon", "c5.large", Availability::High).item)
        );
        assert!(
            !filters
                .rules()
                .admits(&entry(2, "Azure", "c5", Availability::High).item)
        );
        assert!(
            !filters
                .rules()
                .admits(&entry(3, "Amazon", "c5", Availability::Low).item)
        );
        assert!(
            !filters
                .rules()
                .admits(&entry(4, "Amazon", "m5", Availability::High).item)
        );
    }

    #[test]
    fn invalid_parameters_are_explained() {
        for pairs in [
            vec![("level", "sometimes")],
            vec![("sort", "price")],
            vec![("order", "up")],
            vec![("page", "0")],
            vec![("page", "x")],
            vec![("per_page", "100000")],
        ] {
            assert!(
                matches!(parse(&pairs), Err(PageError::BadRequest(_))),
                "{pairs:?}"
            );
        }
        let long = "x".repeat(200);
        assert!(parse(&[("q", &long)]).is_err());
    }

    #[test]
    fn sorting_is_stable_and_reversible() {
        let items = [
            entry(1, "b", "x", Availability::Low),
            entry(2, "a", "y", Availability::High),
            entry(3, "a", "z", Availability::Unknown),
        ];
        let mut refs: Vec<&Entry> = items.iter().collect();
        parse(&[("sort", "provider")])
            .expect("valid")
            .sort(&mut refs);
        assert_eq!(
            refs.iter().map(|e| e.item.id).collect::<Vec<_>>(),
            [2, 3, 1]
        );
        parse(&[("sort", "availability"), ("order", "desc")])
            .expect("valid")
            .sort(&mut refs);
        assert_eq!(
            refs.iter().map(|e| e.item.id).collect::<Vec<_>>(),
            [3, 1, 2]
        );
    }

    #[test]
    fn links_keep_the_filters_and_encode_them() {
        let filters = parse(&[("q", "a&b <c>"), ("sort", "name")]).expect("valid");
        assert_eq!(
            filters.href(None, Some(2)),
            "/?q=a%26b+%3Cc%3E&sort=name&page=2"
        );
        assert_eq!(parse(&[]).expect("valid").href(None, None), "/");
    }

    #[test]
    fn times_are_absolute() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T14:02:07Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(checked_text(None), "not yet");
        assert_eq!(checked_text(Some(at)), "2026-12-07 14:02 UTC");
        assert_eq!(stale_since(at), "2026-12-07 14:02:07 UTC");
    }
}
