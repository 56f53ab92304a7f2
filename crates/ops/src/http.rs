//! The middleware every router of ours is wrapped in.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request};
use axum::response::Response;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

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
/// new UUID; returns the id the request now carries.
fn request_id(headers: &mut HeaderMap) -> Option<HeaderValue> {
    if let Some(id) = headers.get(wire::REQUEST_ID)
        && valid_request_id(id.as_bytes())
    {
        return Some(id.clone());
    }
    let id = new_request_id()?;
    headers.insert(HeaderName::from_static(wire::REQUEST_ID), id.clone());
    Some(id)
}

/// A new random (v4 UUID) request id, as a header value. The bytes come from
/// the thread's userspace generator (seeded from the system once): asking the
/// kernel (`getrandom`) for each was one system call per request, as many as
/// reading the request and writing the answer.
///
/// Its bytes are held once, shared by the request's header and the
/// response's (a clone counts a reference instead of copying the text).
fn new_request_id() -> Option<HeaderValue> {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    id.hyphenated().encode_lower(&mut text);
    HeaderValue::from_maybe_shared(axum::body::Bytes::from_owner(text)).ok()
}

/// Headers set on every response that does not set its own.
#[derive(Debug, Clone)]
pub struct ResponseHeaders(std::sync::Arc<HeaderMap>);

impl ResponseHeaders {
    pub fn new(headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> Self {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(name, value);
        }
        Self(std::sync::Arc::new(map))
    }

    /// These headers and `more` (which win over these).
    pub fn and(&self, more: &Self) -> Self {
        let mut map = (*self.0).clone();
        for (name, value) in more.0.iter() {
            map.insert(name, value.clone());
        }
        Self(std::sync::Arc::new(map))
    }

    /// Sets `request_id` and these headers where `headers` has none of its
    /// own: one lookup each, in room made once (none when the response was
    /// built with [`ROOM`] to spare).
    fn merge_into(&self, headers: &mut HeaderMap, request_id: Option<HeaderValue>) {
        use axum::http::header::Entry;
        headers.reserve(self.0.len() + 1);
        if let Some(id) = request_id
            && let Entry::Vacant(slot) = headers.entry(wire::REQUEST_ID)
        {
            slot.insert(id);
        }
        for (name, value) in self.0.iter() {
            if let Entry::Vacant(slot) = headers.entry(name) {
                slot.insert(value.clone());
            }
        }
    }
}

/// Room a handler can leave in its response's headers for the ones
/// [`observe`] adds (request id, `x-served-by`, the fixed headers) and hyper's
/// `content-length`, so they go in without growing the map. With two headers
/// of its own that asks for 12, the most a map of 16 slots holds: the next
/// size up doubles the block (2.5 KB).
pub const ROOM: usize = 10;

/// Wraps a service (our routers) so that every request
/// - has an `x-request-id` (kept when the caller sent a valid one — see
///   [`valid_request_id`] —, a UUID otherwise), echoed on the response and
///   recorded on its trace span;
/// - runs inside a span with method and path; responses are logged at DEBUG
///   (a busy service would drown its logs otherwise), 5xx at WARN (the
///   handler logs real errors with their cause at ERROR);
/// - answers with `x-served-by: <instance>`, so spread over replicas is
///   observable, and with the headers of [`Observe::with_headers`];
/// - is refused with 431 when its headers exceed [`MAX_HEADER_BYTES`].
///
/// One service and one future, serving `inner` directly: as a stack of
/// tower-http layers inside an outer `Router` each request went through a
/// route lookup, a boxed clone of the stack, a boxed future, a wrapped body
/// and a future per layer.
pub fn observe<S>(inner: S, instance: &str) -> Observe<S> {
    let served_by = HeaderValue::from_str(instance)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid-instance-name"));
    Observe {
        inner,
        headers: ResponseHeaders::new([(HeaderName::from_static(wire::SERVED_BY), served_by)]),
    }
}

/// A service wrapped by [`observe`].
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    headers: ResponseHeaders,
}

impl<S> Observe<S> {
    /// Also sets `headers` on every response that does not set its own.
    pub fn with_headers(mut self, headers: &ResponseHeaders) -> Self {
        self.headers = self.headers.and(headers);
        self
    }
}

impl<S> tower::Service<Request<Body>> for Observe<S>
where
    S: tower::Service<Request<Body>, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let id = request_id(request.headers_mut());
        let span = tracing::info_span!(
            "request",
            method = %request.method(),
            path = %request.uri().path(),
            request_id = %id.as_ref().and_then(|id| id.to_str().ok()).unwrap_or("-"),
        );
        let answer = match too_large(&request) {
            Some(refusal) => Answer::Now {
                response: Some(refusal),
            },
            None => Answer::Later {
                future: span.in_scope(|| self.inner.call(request)),
            },
        };
        Observed {
            answer,
            span,
            started: Instant::now(),
            request_id: id,
            headers: self.headers.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// An answer now (a refusal) or the inner service's, later.
    #[project = AnswerProj]
    pub enum Answer<F> {
        Now { response: Option<Response> },
        Later { #[pin] future: F },
    }
}

impl<F> Future for Answer<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            AnswerProj::Now { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            AnswerProj::Later { future } => future.poll(cx),
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of an [`Observe`] service.
    pub struct Observed<F> {
        #[pin]
        answer: Answer<F>,
        span: tracing::Span,
        started: Instant,
        request_id: Option<HeaderValue>,
        headers: ResponseHeaders,
    }
}

impl<F> Future for Observed<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let Ok(mut response) = std::task::ready!(this.answer.poll(cx));
        this.headers
            .merge_into(response.headers_mut(), this.request_id.take());
        let status = response.status().as_u16();
        let latency_ms = this.started.elapsed().as_secs_f64() * 1000.0;
        if response.status().is_server_error() {
            tracing::warn!(status, latency_ms, "response failed");
        } else {
            tracing::debug!(status, latency_ms, "finished processing request");
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// A handler that sets its own `x-frame-options` and two `vary` values.
    fn observed() -> Observe<
        impl tower::Service<Request<Body>, Response = Response, Error = Infallible, Future: Send>
        + Clone,
    > {
        let inner = tower::service_fn(|request: Request<Body>| async move {
            assert!(
                request.headers().contains_key(wire::REQUEST_ID),
                "the handler sees the id"
            );
            let mut response = Response::new(Body::from("ok"));
            let headers = response.headers_mut();
            headers.insert("x-frame-options", HeaderValue::from_static("SAMEORIGIN"));
            headers.append("vary", HeaderValue::from_static("a"));
            headers.append("vary", HeaderValue::from_static("b"));
            Ok::<_, Infallible>(response)
        });
        observe(inner, "replica-1").with_headers(&ResponseHeaders::new([
            (
                HeaderName::from_static("x-frame-options"),
                HeaderValue::from_static("DENY"),
            ),
            (
                HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
        ]))
    }

    #[tokio::test]
    async fn fixed_headers_fill_in_without_overriding_the_answer_s_own() {
        let request = Request::get("/")
            .header(wire::REQUEST_ID, "caller-7")
            .body(Body::empty());
        let response = observed()
            .oneshot(request.expect("request"))
            .await
            .expect("infallible");
        let headers = response.headers();
        assert_eq!(
            headers[wire::REQUEST_ID],
            "caller-7",
            "a valid caller id is echoed"
        );
        assert_eq!(headers[wire::SERVED_BY], "replica-1");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(
            headers["x-frame-options"], "SAMEORIGIN",
            "the answer's own wins"
        );
        let vary: Vec<_> = headers.get_all("vary").iter().collect();
        assert_eq!(vary, ["a", "b"], "every value of the answer's own kept");

        let request = Request::get("/")
            .header(wire::REQUEST_ID, "bad id")
            .body(Body::empty());
        let response = observed()
            .oneshot(request.expect("request"))
            .await
            .expect("infallible");
        let id = response.headers()[wire::REQUEST_ID]
            .to_str()
            .expect("ascii");
        assert_eq!(id.len(), 36, "an invalid id is replaced by a UUID: {id}");
    }

    #[tokio::test]
    async fn oversized_heads_are_refused_before_the_handler() {
        let request = Request::get("/")
            .header("x-big", "y".repeat(MAX_HEADER_BYTES + 1))
            .body(Body::empty());
        let response = observed()
            .oneshot(request.expect("request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), 431);
        assert_eq!(response.headers()[wire::SERVED_BY], "replica-1");
        assert!(response.headers().contains_key(wire::REQUEST_ID));
    }

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
