//! Friendly error pages: the portal never shows a bare status.

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

/// An error shown to a visitor as a page.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// 400: a query parameter is not acceptable; the message says which.
    #[error("{0}")]
    BadRequest(String),
    /// 404: no such page.
    #[error("no such page")]
    NotFound,
    /// 503 + `Retry-After`: no data has ever been received from hardware.
    #[error("hardware unavailable")]
    Unavailable,
    /// 503 + `Retry-After`: a bound on what one client (or all) may hold is reached.
    #[error("busy: {0}")]
    Busy(&'static str),
    /// 429 + `Retry-After` (seconds): this client sent too many requests.
    #[error("too many requests")]
    TooManyRequests(u64),
}

/// Seconds a visitor (or a crawler) is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            Self::BadRequest(why) => (
                StatusCode::BAD_REQUEST,
                "That filter is not valid",
                why.as_str(),
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing at this address.",
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "Availability data is not available yet",
                "The hardware service has not answered yet. This page will work again in a few seconds; please retry.",
            ),
            Self::Busy(why) => (StatusCode::SERVICE_UNAVAILABLE, "The portal is busy", *why),
            Self::TooManyRequests(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "This address sent requests faster than the portal serves one visitor. Please wait a moment and reload.",
            ),
        };
        let body = ErrorPage { title, message }
            .render()
            .unwrap_or_else(|_| format!("{title}: {message}"));
        let mut response = (status, Html(body)).into_response();
        let retry_after = match self {
            Self::Unavailable | Self::Busy(_) => Some(u64::from(RETRY_AFTER_SECS)),
            Self::TooManyRequests(seconds) => Some(seconds),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        response
    }
}
