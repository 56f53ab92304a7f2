//! The middleware every router of ours is wrapped in.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Request};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Largest request head (all header names and values) accepted: far above
/// what browsers and our clients send, far below what a flood would use.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The 431 problem answer for a request whose headers exceed
/// [`MAX_HEADER_BYTES`], before any handler or extractor sees it.
fn too_large<B>(request: &Request<B>) -> Option<axum::response::Response> {
    use axum::response::IntoResponse;
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size <= MAX_HEADER_BYTES {
        return None;
    }
    let problem = wire::Problem {
        kind: "about:blank".into(),
        title: "Request Header Fields Too Large".into(),
        status: 431,
        detail: format!("request headers must total at most {MAX_HEADER_BYTES} bytes"),
    };
    let mut response = (
        axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        axum::Json(problem),
    )
        .into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static(wire::PROBLEM_JSON),
    );
    Some(response)
}

/// Longest request id kept from a caller.
pub const MAX_REQUEST_ID: usize = 64;

/// Whether a caller's request id is kept: 1 to 64 of `[A-Za-z0-9._-]`, so it
/// is safe to log, echo and forward.
pub fn valid_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Keeps a valid `x-request-id`, replaces a missing or invalid one with a
/// new UUID (a plain function of the request: see [`observe`]).
pub fn request_id<B>(mut request: Request<B>) -> Request<B> {
    let valid = request
        .headers()
        .get(wire::REQUEST_ID)
        .is_some_and(|id| valid_request_id(id.as_bytes()));
    if !valid && let Some(id) = new_request_id() {
        request
            .headers_mut()
            .insert(HeaderName::from_static(wire::REQUEST_ID), id);
    }
    request
}

/// Headers set on every response that does not set its own, in one pass.
#[derive(Debug, Clone)]
pub struct ResponseHeaders(std::sync::Arc<[(HeaderName, HeaderValue)]>);

impl ResponseHeaders {
    pub fn new(headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> Self {
        Self(headers.into_iter().collect())
    }

    /// A layer that adds them (one clone of a pointer per request; a layer
    /// per header cost a clone and a future of each, per request).
    pub fn layer(
        &self,
    ) -> tower::util::MapResponseLayer<
        impl FnOnce(axum::response::Response) -> axum::response::Response + Clone + use<>,
    > {
        let headers = self.clone();
        tower::util::MapResponseLayer::new(move |mut response: axum::response::Response| {
            let map = response.headers_mut();
            map.reserve(headers.0.len());
            for (name, value) in headers.0.iter() {
                if !map.contains_key(name) {
                    map.insert(name.clone(), value.clone());
                }
            }
            response
        })
    }
}

/// A new random (v4 UUID) request id, as a header value. The bytes come from
/// the thread's userspace generator (seeded from the system once): asking the
/// kernel (`getrandom`) for each was one system call per request, as many as
/// reading the request and writing the answer.
fn new_request_id() -> Option<HeaderValue> {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    HeaderValue::from_str(
        id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    )
    .ok()
}

/// Wraps `router` so that every request
/// - has an `x-request-id` (kept when the caller sent a valid one — see
///   [`valid_request_id`] —, a UUID otherwise),
///   echoed on the response and recorded on its trace span;
/// - runs inside a span with method and path; responses are logged at DEBUG
///   (a busy service would drown its logs otherwise), 5xx and failures at WARN
///   (the handler logs real errors with their cause at ERROR);
/// - answers with `x-served-by: <instance>`, so spread over replicas is observable;
/// - is refused with 431 when its headers exceed [`MAX_HEADER_BYTES`].
///
/// The layers go around the router, not into each of its routes (which
/// `Router::layer` does: every request then cloned the whole stack with its
/// route), and none of them boxes a future.
pub fn observe<S>(inner: S, instance: &str) -> Router
where
    S: tower::Service<
            axum::extract::Request,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let request_id_header = HeaderName::from_static(wire::REQUEST_ID);
    let served_by = HeaderValue::from_str(instance)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid-instance-name"));
    let stack = ServiceBuilder::new()
        .layer(tower::util::MapRequestLayer::new(
            self::request_id::<axum::body::Body>,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get(wire::REQUEST_ID)
                        .and_then(|value| value.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        path = %request.uri().path(),
                        request_id = %id,
                    )
                })
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                .on_failure(DefaultOnFailure::new().level(Level::WARN)),
        )
        .layer(PropagateRequestIdLayer::new(request_id_header))
        .layer(SetResponseHeaderLayer::overriding(
            HeaderName::from_static(wire::SERVED_BY),
            served_by,
        ))
        .service(tower::service_fn(move |request: axum::extract::Request| {
            let inner = inner.clone();
            async move {
                match too_large(&request) {
                    Some(refusal) => Ok(refusal),
                    None => inner.oneshot(request).await,
                }
            }
        }));
    Router::new().fallback_service(stack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        assert!(valid_request_id(b"portal-refresh-1a2b"));
        assert!(valid_request_id(b"a.b_c-D9"));
        assert!(valid_request_id("x".repeat(64).as_bytes()));
        assert!(!valid_request_id("x".repeat(65).as_bytes()));
        assert!(!valid_request_id(b""));
        assert!(!valid_request_id(b"has space"));
        assert!(!valid_request_id(b"new\nline"));
        assert!(!valid_request_id("caf\u{e9}".as_bytes()));
    }
}
