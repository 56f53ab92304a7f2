//! `GET /events`: Server-Sent Events that fill in pending values without a reload.
//!
//! A stream starts from the version the page was rendered from (`since`, or
//! `Last-Event-ID` when the browser reconnects) and sends:
//! - `update` frames, built once per version and shared by every stream (see
//!   [`crate::catalog::Data::frame_since`]): only the change when the client is
//!   one version behind, the whole snapshot when it is further behind;
//! - `stale` frames when the stale banner should appear or go;
//! - a comment every [`KEEP_ALIVE`] of silence, so proxies keep it open and a
//!   vanished client is noticed.
//!
//! Bounds: `MAX_EVENT_STREAMS` in all and `MAX_EVENT_STREAMS_PER_CLIENT` per
//! client (503 over either), each stream ending after `EVENT_STREAM_LIFETIME`
//! (the browser reconnects where it left off). A client that does not read
//! holds at most one pending frame, and frames are shared bytes, not copies.

use super::{PageError, WebState};
use crate::catalog::{Signal, Version};
use crate::client::{ClientKey, Pass, QuotaMetrics, Refused};
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use futures_util::StreamExt as _;
use prometheus_client::registry::Registry;
use serde::Deserialize;
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;

/// Silence after which a keep-alive comment is sent.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// How long the browser waits before reconnecting after a stream ends.
const RETRY_MS: u32 = 5000;

#[derive(Debug, Deserialize)]
pub struct Since {
    /// The data version the page was rendered from; malformed means "unknown".
    since: Option<String>,
}

/// The streams' metrics: `event_streams_open`, `event_streams_refused_total`.
pub fn register_metrics(registry: &mut Registry) -> QuotaMetrics {
    QuotaMetrics::register(
        registry,
        "event_streams",
        "Live-update streams",
        "full (MAX_EVENT_STREAMS) or client_full (MAX_EVENT_STREAMS_PER_CLIENT)",
    )
}

fn stale_frame(state: &WebState, stale: bool) -> Bytes {
    let view = state.catalog.view();
    let since = view.data.as_ref().map_or_else(String::new, |data| {
        super::view::stale_since(data.fetched_at)
    });
    let body = serde_json::json!({ "stale": stale, "stale_since": since });
    Bytes::from(format!("event: stale\ndata: {body}\n\n"))
}

struct Stream {
    state: WebState,
    changes: tokio::sync::watch::Receiver<Signal>,
    seen: Version,
    stale: Option<bool>,
    ends: Instant,
    _pass: Pass,
}

impl Stream {
    /// The next frame to send, or `None` when the stream is over.
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            let view = self.state.catalog.view();
            if let Some(data) = view.data.as_deref()
                && let Some(frame) = data.frame_since(self.seen)
            {
                self.seen = data.version;
                return Some(frame);
            }
            let stale = view.is_stale(self.state.stale_after, Utc::now());
            if self.stale != Some(stale) {
                self.stale = Some(stale);
                return Some(stale_frame(&self.state, stale));
            }
            let quiet = tokio::time::sleep(KEEP_ALIVE);
            tokio::select! {
                () = self.state.shutdown.cancelled() => return None,
                () = tokio::time::sleep_until(self.ends) => return None,
                changed = self.changes.changed() => if changed.is_err() { return None },
                () = quiet => return Some(Bytes::from_static(b":\n\n")),
            }
        }
    }
}

pub async fn stream(
    State(state): State<WebState>,
    Extension(client): Extension<ClientKey>,
    headers: HeaderMap,
    Query(query): Query<Since>,
) -> Response {
    let pass = match state.streams.enter(Some(client)) {
        Ok(pass) => pass,
        Err(why) => {
            return PageError::Busy(match why {
                Refused::Full => "The portal has as many live-update streams open as it serves.",
                Refused::ClientFull => {
                    "This address has as many live-update streams open as one visitor may."
                }
            })
            .into_response();
        }
    };
    // A reconnecting browser says where it left off; else the page's version.
    let seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .or(query.since.as_deref())
        .and_then(Version::parse)
        .unwrap_or(Version::NONE);
    let mut changes = state.catalog.subscribe();
    changes.mark_unchanged();
    let stream = Stream {
        ends: Instant::now() + state.stream_lifetime,
        _pass: pass,
        state,
        changes,
        seen,
        stale: None,
    };
    let first = Bytes::from(format!("retry: {RETRY_MS}\n\n"));
    let frames = futures_util::stream::once(async move { Ok::<_, Infallible>(first) }).chain(
        futures_util::stream::unfold(stream, |mut stream| async move {
            let frame = stream.next().await?;
            Some((Ok::<_, Infallible>(frame), stream))
        }),
    );
    let mut response = Body::from_stream(frames).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    // A stream is never reused from a cache; `no-cache` rather than
    // `no-store`, which would bar the page from the back/forward cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell buffering proxies (nginx) to pass frames on as they come.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}
