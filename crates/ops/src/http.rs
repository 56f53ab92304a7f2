//! The middleware every router of ours is wrapped in.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Request};
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use tracing::Level;

/// Wraps `router` so that every request
/// - has an `x-request-id` (kept when the caller sent one, a UUID otherwise),
///   echoed on the response and recorded on its trace span;
/// - runs inside a span with method and path; responses are logged at DEBUG
///   (a busy service would drown its logs otherwise), 5xx and failures at WARN
///   (the handler logs real errors with their cause at ERROR);
/// - answers with `x-served-by: <instance>`, so spread over replicas is observable.
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
            )),
    )
}
