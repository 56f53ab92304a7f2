//! `GET /`: the dashboard page.

use super::cache::{Claim, Lookup, Stamp};
use super::encoding::{Coding, Conditions, Encoded};
use super::view::{
    Filters, RawFilters, SortKey, badge_text, checked_text, iso, level_class, level_label,
};
use super::{PageError, WebState};
use crate::catalog::{Data, Entry};
use crate::client::ClientKey;
use askama::Template;
use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use chrono::Utc;
use wire::Availability;

pub struct Row<'a> {
    id: u64,
    provider: &'a str,
    name: &'a str,
    /// The badge's words: the level, or "PENDING" while never computed
    /// (the same word the counts use).
    badge: &'static str,
    class: &'static str,
    pending: bool,
    checked_iso: String,
    /// When it was checked, absolute (the script words it as an age).
    checked: String,
}

pub struct Count {
    level: &'static str,
    label: &'static str,
    class: &'static str,
    n: usize,
    href: String,
    active: bool,
}

pub struct Choice {
    value: String,
    label: &'static str,
    selected: bool,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Dashboard<'a> {
    version: String,
    stale: bool,
    stale_since: String,
    counts: Vec<Count>,
    filter: &'a Filters,
    providers: Vec<Choice>,
    levels: Vec<Choice>,
    sorts: Vec<Choice>,
    descending: bool,
    live_text: String,
    caption: String,
    rows: Vec<Row<'a>>,
    page: usize,
    pages: usize,
    prev_href: Option<String>,
    next_href: Option<String>,
}

/// The request's id (set by `ops::http::observe`), taken alone: the
/// `HeaderMap` extractor copied every header of every request.
pub struct RequestId(Option<HeaderValue>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get(wire::REQUEST_ID).cloned()))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Coding {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::preferred(&parts.headers))
    }
}

pub async fn page(
    State(state): State<WebState>,
    RequestId(request_id): RequestId,
    coding: Coding,
    conditions: Conditions,
    Extension(client): Extension<ClientKey>,
    query: Result<Query<RawFilters>, QueryRejection>,
) -> Result<Response, PageError> {
    let Query(raw) = query
        .map_err(|_| PageError::BadRequest("The address has a malformed query string.".into()))?;
    let mut filters = Filters::parse(raw, state.page_size)?;
    let request_id = request_id
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    state
        .catalog
        .ensure_loaded(request_id, state.first_fetch_wait)
        .await;
    let view = state.catalog.view();
    let Some(data) = view.data.as_deref() else {
        return Err(PageError::Unavailable);
    };
    let now = Utc::now();
    let stale = view.is_stale(state.stale_after, now);
    // Pages past the last that can exist show the last: one cache key for all of them.
    filters.page = filters
        .page
        .min(data.entries.len().div_ceil(filters.per_page).max(1));
    let key = filters.href(None, None);
    let stamp = Stamp {
        version: data.version,
        stale_since: stale.then(|| data.fetched_at.timestamp()),
        fetch: data.fetch,
    };
    let page = loop {
        match state.pages.lookup(&key, stamp, client) {
            Lookup::Hit(page) => break page,
            // This client asked for the page again while rendering it: one
            // render, every waiting request woken at once.
            Lookup::Wait(mut done) => {
                let _ = done.changed().await;
            }
            // Boxed: the wait for a render turn would otherwise be part of
            // every page request's future (allocated per request).
            Lookup::Render(claim) => {
                let miss = Miss {
                    state: &state,
                    data,
                    filters: &filters,
                    stale,
                    stamp,
                    client,
                    coding,
                };
                break Box::pin(miss.render(key.clone(), claim)).await?;
            }
        }
    };
    // Compressed once per page and coding, on the first request that wants
    // it; not at all for a client that holds it already (304).
    let (response, made) = page.respond(
        coding,
        &conditions,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            // A view of live data: revalidated before any reuse from a cache.
            // Not `no-store`, which would bar the page from the back/forward cache.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
    );
    if made > 0 {
        state.pages.grew(&key, stamp, made);
    }
    Ok(response)
}

/// A page not in the cache, to render.
struct Miss<'a> {
    state: &'a WebState,
    data: &'a Data,
    filters: &'a Filters,
    stale: bool,
    stamp: Stamp,
    client: ClientKey,
    coding: Coding,
}

impl Miss<'_> {
    async fn render(self, key: String, claim: Claim) -> Result<std::sync::Arc<Encoded>, PageError> {
        // One render per core at once and one per client at a time: a flood
        // of distinct views queues behind itself, bounded in CPU and memory,
        // while other visitors keep their turn.
        let _turn = self
            .state
            .renders
            .take(self.client)
            .await
            .ok_or(PageError::Unavailable)?;
        // Another client may have rendered it meanwhile.
        if let Some(page) = self.state.pages.get(&key, self.stamp) {
            return Ok(page);
        }
        let page = std::sync::Arc::new(Encoded::new(axum::body::Bytes::from(render(
            self.data,
            self.filters,
            self.stale,
        )?)));
        // The form this client takes is made within the render's turn, so a
        // flood of distinct views queues its compression too.
        let _ = page.get(self.coding);
        self.state.pages.put(key, self.stamp, page.clone());
        drop(claim);
        Ok(page)
    }
}

/// The page of `filters` over `data`: a function of the view, the data's
/// version and the stale state alone (see [`super::cache`]).
fn render(data: &Data, filters: &Filters, stale: bool) -> Result<String, PageError> {
    let rules = filters.rules();
    let matching: Vec<&Entry> = if filters.is_everything_by_id() {
        // The common view: the entries are in id order already.
        data.entries.iter().collect()
    } else {
        let mut matching: Vec<&Entry> = data
            .entries
            .iter()
            .filter(|e| rules.admits(&e.item))
            .collect();
        filters.sort(&mut matching);
        matching
    };
    let pages = matching.len().div_ceil(filters.per_page).max(1);
    let page = filters.page.min(pages);
    let start = (page - 1) * filters.per_page;
    let rows: Vec<Row<'_>> = matching
        .iter()
        .skip(start)
        .take(filters.per_page)
        .map(|entry| {
            let item = &entry.item;
            Row {
                id: item.id,
                provider: &item.provider,
                name: &item.name,
                badge: badge_text(item.availability),
                class: level_class(item.availability),
                pending: item.availability == Availability::Unknown,
                checked_iso: iso(item.checked_at),
                checked: checked_text(item.checked_at),
            }
        })
        .collect();

    let summary = data.summary();
    let counts_by_level = &summary.counts;
    let counts = Availability::ALL
        .into_iter()
        .map(|level| {
            let active = filters.level == Some(level);
            Count {
                level: level.as_str(),
                label: level_label(level),
                class: level_class(level),
                n: counts_by_level.get(&level).copied().unwrap_or(0),
                // Clicking the active level clears it.
                href: filters.href(Some((!active).then_some(level)), Some(1)),
                active,
            }
        })
        .collect();
    let providers = summary
        .providers
        .iter()
        .map(|provider| Choice {
            selected: provider.eq_ignore_ascii_case(&filters.provider),
            value: provider.to_string(),
            label: "",
        })
        .collect();
    let levels = Availability::ALL
        .into_iter()
        .map(|level| Choice {
            value: level.as_str().to_owned(),
            label: level_label(level),
            selected: filters.level == Some(level),
        })
        .collect();
    let sorts = SortKey::ALL
        .iter()
        .map(|(key, value, label)| Choice {
            value: (*value).to_owned(),
            label,
            selected: filters.sort == *key,
        })
        .collect();
    let pending = summary.pending;
    let live_text = match pending {
        0 => String::new(),
        1 => "1 value is still being computed.".to_owned(),
        n => format!("{n} values are still being computed."),
    };
    let shown = rows.len();
    let caption = if matching.len() == data.entries.len() {
        format!("{shown} of {} items", data.entries.len())
    } else {
        format!(
            "{shown} of {} matching items ({} in all)",
            matching.len(),
            data.entries.len()
        )
    };
    // Named only while stale: otherwise the page would change with every fetch.
    let stale_since = if stale {
        super::view::stale_since(data.fetched_at)
    } else {
        String::new()
    };
    let page_view = Dashboard {
        version: data.version.to_string(),
        stale,
        stale_since,
        counts,
        filter: filters,
        providers,
        levels,
        sorts,
        descending: filters.descending,
        live_text,
        caption,
        rows,
        page,
        pages,
        prev_href: (page > 1).then(|| filters.href(None, Some(page - 1))),
        next_href: (page < pages).then(|| filters.href(None, Some(page + 1))),
    };
    page_view.render().map_err(|err| {
        tracing::error!(error = %err, "dashboard template failed");
        PageError::Unavailable
    })
}
