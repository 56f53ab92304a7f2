//! `GET /events`: Server-Sent Events that fill in pending values without a reload.
//!
//! Each event carries only the items whose availability changed since the
//! version the client last saw, plus the per-level counts and the stale flag.

use super::WebState;
use super::view::{age, iso, level_class};
use crate::catalog::View;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use chrono::Utc;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::convert::Infallible;

#[derive(Debug, Deserialize)]
pub struct Since {
    /// The data version the page was rendered from; malformed means "all".
    since: Option<String>,
}

#[derive(Debug, Serialize)]
struct RowUpdate {
    id: u64,
    level: &'static str,
    class: &'static str,
    checked: String,
    age: String,
}

#[derive(Debug, Serialize)]
struct Update {
    version: u64,
    stale: bool,
    stale_since: String,
    counts: BTreeMap<&'static str, usize>,
    rows: Vec<RowUpdate>,
}

/// The event for `view` given that the client has seen `since`; `None` when
/// there is nothing new to say.
fn update_event(
    view: &View,
    since: u64,
    was_stale: bool,
    state: &WebState,
) -> Option<(Event, u64, bool)> {
    let data = view.data.as_deref()?;
    let now = Utc::now();
    let stale = view.is_stale(state.stale_after, now);
    let rows: Vec<RowUpdate> = data
        .entries
        .iter()
        .filter(|e| e.changed_in > since)
        .map(|e| RowUpdate {
            id: e.item.id,
            level: e.item.availability.as_str(),
            class: level_class(e.item.availability),
            checked: iso(e.item.checked_at),
            age: age(e.item.checked_at, now),
        })
        .collect();
    if rows.is_empty() && stale == was_stale {
        return None;
    }
    // Every level, zeros included, so a count that drops to 0 is updated too.
    let present = data.counts();
    let counts = wire::Availability::ALL
        .into_iter()
        .map(|level| (level.as_str(), present.get(&level).copied().unwrap_or(0)))
        .collect();
    let update = Update {
        version: data.version,
        stale,
        stale_since: format!(
            "{} ({})",
            data.fetched_at.format("%H:%M:%S UTC"),
            age(Some(data.fetched_at), now)
        ),
        counts,
        rows,
    };
    let event = Event::default().event("update").json_data(&update).ok()?;
    Some((event, data.version, stale))
}

pub async fn stream(
    State(state): State<WebState>,
    Query(query): Query<Since>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let since = query.since.and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    let changes = state.catalog.subscribe();
    let start = (state, changes, since, false, true);
    let events = futures_util::stream::unfold(
        start,
        |(state, mut changes, mut since, mut stale, mut first)| async move {
            loop {
                if !first {
                    tokio::select! {
                        () = state.shutdown.cancelled() => return None,
                        changed = changes.changed() => if changed.is_err() { return None },
                    }
                }
                first = false;
                let view = state.catalog.view();
                if let Some((event, version, now_stale)) = update_event(&view, since, stale, &state)
                {
                    since = version;
                    stale = now_stale;
                    return Some((Ok(event), (state, changes, since, stale, first)));
                }
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}
