//! The one boundary error type: every failure becomes an RFC 9457 problem body.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An error answered to a client. Each variant's status is fixed; internal
/// causes are logged (inside the request's span) and never sent.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a query or path value is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the write lacks a valid bearer token.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 404: no such item or route.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("method not allowed on this resource")]
    MethodNotAllowed,
    /// 409: (provider, name) is taken.
    #[error("{0}")]
    Conflict(String),
    /// 422: the body is well-formed JSON with invalid fields.
    #[error("{0}")]
    Unprocessable(String),
    /// A body rejected by the JSON extractor: 400, 413, 415 or 422 as axum judged it.
    #[error("{detail}")]
    Rejected { status: StatusCode, detail: String },
    /// 503: the database is unreachable or the inventory not loaded yet.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected database error.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Rejected { status, .. } => *status,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                Self::Conflict("an item with this provider and name exists already".into())
            }
            sqlx::Error::Database(db) if is_statement_timeout(db.as_ref()) => {
                tracing::warn!(error = %err, "database statement stopped by max_statement_time");
                Self::Unavailable(
                    "the database is too slow to answer; nothing was changed, try again".into(),
                )
            }
            // No connection was had: nothing reached the database.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                tracing::warn!(error = %err, "database unavailable");
                Self::Unavailable(
                    "the database is unavailable; nothing was changed, try again".into(),
                )
            }
            // The connection failed or went silent mid-statement: the server
            // may have applied it. Repeating a write is safe (a create
            // answers 409 if it had been applied; updates and deletes are
            // idempotent), so the client is told to retry.
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed => {
                tracing::warn!(error = %err, "database stopped answering");
                Self::Unavailable(
                    "the database stopped answering; the change may not have been applied, try again".into(),
                )
            }
            _ => Self::Internal(err.into()),
        }
    }
}

/// MariaDB's error 1969: the statement ran past `max_statement_time`.
fn is_statement_timeout(err: &dyn sqlx::error::DatabaseError) -> bool {
    err.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
        .is_some_and(|err| err.number() == 1969)
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        Self::Rejected {
            status: rejection.status(),
            detail: rejection.body_text(),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::BadRequest("the id in the path must be a positive integer".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            Self::Internal(cause) => {
                tracing::error!(error = ?cause, "request failed");
                "the server failed to answer; the error was logged".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(wire::Problem {
                kind: "about:blank".to_owned(),
                title: status.canonical_reason().unwrap_or("Error").to_owned(),
                status: status.as_u16(),
                detail,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(wire::PROBLEM_JSON),
        );
        match &self {
            Self::Unauthorized(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="hardware""#),
                );
            }
            Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            }
            _ => {}
        }
        response
    }
}
