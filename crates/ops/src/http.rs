//! The middleware every router of ours is wrapped in.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Request};
use tower::ServiceBuilder;
use tower_http::request_id::PropagateRequestIdLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Largest request head (all header names and values) accepted: far above
/// what browsers and our clients send, far below what a flood would use.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Rejects requests whose headers exceed [`MAX_HEADER_BYTES`] with a 431
/// problem body, before any handler or extractor sees them.
pub async fn limit_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > MAX_HEADER_BYTES {
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
        return response;
    }
    next.run(request).await
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

/// Middleware: keeps a valid `x-request-id`, replaces a missing or invalid one
/// with a new UUID.
pub async fn request_id(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let valid = request
        .headers()
        .get(wire::REQUEST_ID)
        .is_some_and(|id| valid_request_id(id.as_bytes()));
    if !valid && let Some(id) = new_request_id() {
        request
            .headers_mut()
            .insert(HeaderName::from_static(wire::REQUEST_ID), id);
    }
    next.run(request).await
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
pub fn observe(router: Router, instance: &str) -> Router {
    let request_id_header = HeaderName::from_static(wire::REQUEST_ID);
    let served_by = HeaderValue::from_str(instance)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid-instance-name"));
    router.layer(
        ServiceBuilder::new()
            .layer(axum::middleware::from_fn(self::request_id))
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
            .layer(axum::middleware::from_fn(limit_headers)),
    )
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
