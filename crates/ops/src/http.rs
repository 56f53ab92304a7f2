//! The middleware every router of ours is wrapped in.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Request};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
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

/// Wraps `router` so that every request
/// - has an `x-request-id` (kept when the caller sent one, a UUID otherwise),
///   echoed on the response and recorded on its trace span;
/// - runs inside a span with method and path; responses are logged at DEBUG
///   (a busy service would drown its logs otherwise), 5xx and failures at WARN
///   (the handler logs real errors with their cause at ERROR);
/// - answers with `x-served-by: <instance>`, so spread over replicas is observable;
/// - is refused with 431 when its headers exceed [`MAX_HEADER_BYTES`].
pub fn observe(router: Router, instance: &str) -> Router {
    let request_id = HeaderName::from_static(wire::REQUEST_ID);
    let served_by = HeaderValue::from_str(instance)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid-instance-name"));
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
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
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(SetResponseHeaderLayer::overriding(
                HeaderName::from_static(wire::SERVED_BY),
                served_by,
            ))
            .layer(axum::middleware::from_fn(limit_headers)),
    )
}
