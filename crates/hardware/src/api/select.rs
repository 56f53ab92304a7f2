//! Which items a list request returns, as pure functions over the inventory
//! and the engine's readings (the handler does the waiting and the HTTP).
//! The filter rules themselves are `wire::Filter`, shared with the portal.

use super::query::ListQuery;
use crate::db::Record;
use wire::{Filter, Item};

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Item>,
    /// Items matching the filters, on every page.
    pub total: usize,
    /// Where the next page starts, when the request was paged and there is one.
    pub next_offset: Option<usize>,
}

/// Records that pass the rules the inventory alone decides (provider, name).
pub fn candidates<'a>(records: &'a [Record], filter: &Filter) -> Vec<&'a Record> {
    records
        .iter()
        .filter(|record| filter.admits_record(&record.provider, &record.name))
        .collect()
}

/// The items whose never-computed values are worth waiting for: with an
/// availability filter every candidate (any could end up on the page);
/// without one only those on the requested page.
pub fn worth_waiting_for(candidates: &[&Record], query: &ListQuery) -> Vec<u64> {
    let on_page = if query.filter.by_availability() {
        0..candidates.len()
    } else {
        wire::page(candidates.len(), query.offset, query.limit)
    };
    candidates[on_page].iter().map(|record| record.id).collect()
}

/// The candidates' items (with their readings) that pass the availability
/// rule, paged.
pub fn page(items: impl IntoIterator<Item = Item>, query: &ListQuery) -> Page {
    let mut matching: Vec<Item> = items
        .into_iter()
        .filter(|item| query.filter.admits_level(item.availability))
        .collect();
    let total = matching.len();
    let range = wire::page(total, query.offset, query.limit);
    let next_offset = (query.limit.is_some() && range.end < total).then_some(range.end);
    matching.truncate(range.end);
    matching.drain(..range.start);
    Page {
        items: matching,
        total,
        next_offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::query::RawListQuery;
    use wire::Availability;

    fn records() -> Vec<Record> {
        [
            ("Amazon", "c5"),
            ("Azure", "H16mr"),
            ("amazon", "m5"),
            ("GCP", "c2"),
        ]
        .iter()
        .zip(1..)
        .map(|((provider, name), id)| Record {
            id,
            provider: (*provider).into(),
            name: (*name).into(),
        })
        .collect()
    }

    fn query(pairs: &[(&str, &str)]) -> ListQuery {
        ListQuery::parse(RawListQuery::from_pairs(pairs)).expect("valid query")
    }

    fn items(records: &[&Record], level: impl Fn(u64) -> Availability) -> Vec<Item> {
        records
            .iter()
            .map(|record| Item {
                id: record.id,
                provider: record.provider.clone(),
                name: record.name.clone(),
                availability: level(record.id),
                checked_at: None,
            })
            .collect()
    }

    #[test]
    fn only_the_plain_listing_takes_the_fast_path() {
        assert!(query(&[]).is_full_listing());
        assert!(query(&[("provider", "")]).is_full_listing());
        assert!(!query(&[("limit", "5")]).is_full_listing());
        assert!(!query(&[("offset", "1")]).is_full_listing());
        assert!(!query(&[("availability", "high")]).is_full_listing());
    }

    #[test]
    fn candidates_follow_the_shared_rules() {
        let records = records();
        let ids = |q: &ListQuery| -> Vec<u64> {
            candidates(&records, &q.filter)
                .iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(ids(&query(&[("provider", "AMAZON")])), [1, 3]);
        assert_eq!(ids(&query(&[("q", "C")])), [1, 4]);
        assert_eq!(ids(&query(&[])), [1, 2, 3, 4]);
    }

    #[test]
    fn waiting_covers_the_page_or_every_candidate_under_a_level_filter() {
        let records = records();
        let all = candidates(&records, &query(&[]).filter);
        assert_eq!(
            worth_waiting_for(&all, &query(&[("limit", "2"), ("offset", "1")])),
            [2, 3]
        );
        assert_eq!(
            worth_waiting_for(&all, &query(&[("offset", "9")])),
            Vec::<u64>::new()
        );
        let high = query(&[("availability", "HIGH"), ("limit", "1")]);
        assert_eq!(worth_waiting_for(&all, &high), [1, 2, 3, 4]);
    }

    #[test]
    fn pages_count_every_match_and_link_onwards_only_when_paged() {
        let records = records();
        let all = candidates(&records, &query(&[]).filter);
        let level = |id| {
            if id % 2 == 0 {
                Availability::High
            } else {
                Availability::Low
            }
        };
        let high = page(
            items(&all, level),
            &query(&[("availability", "high"), ("limit", "1")]),
        );
        assert_eq!(high.total, 2);
        assert_eq!(high.items.iter().map(|i| i.id).collect::<Vec<_>>(), [2]);
        assert_eq!(high.next_offset, Some(1));
        let last = page(
            items(&all, level),
            &query(&[("limit", "3"), ("offset", "2")]),
        );
        assert_eq!(last.items.iter().map(|i| i.id).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(last.next_offset, None);
        let unpaged = page(items(&all, level), &query(&[("offset", "1")]));
        assert_eq!(
            (unpaged.items.len(), unpaged.total, unpaged.next_offset),
            (3, 4, None)
        );
    }
}
