//! Bearer-token authorization for writes.

use super::AppState;
use super::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configured token, kept only as a digest.
///
/// Comparing fixed-size digests in constant time leaks neither the token's
/// content nor its length through response timing.
#[derive(Clone)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    fn matches(&self, presented: &str) -> bool {
        Self::of(presented).0.ct_eq(&self.0).into()
    }
}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(***)")
    }
}

/// Proof that the request carries the admin token. Declare it before the body
/// extractor, so unauthenticated callers learn nothing about body validation.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(expected) = &state.admin else {
            return Err(ApiError::Unauthorized(
                "writes are disabled: no admin token is configured (ADMIN_TOKEN_FILE)",
            ));
        };
        let presented = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        match presented {
            None => Err(ApiError::Unauthorized(
                "this write needs an `Authorization: Bearer <token>` header",
            )),
            Some(token) if expected.matches(token) => Ok(Admin),
            Some(_) => Err(ApiError::Unauthorized("the bearer token is not valid")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let digest = TokenDigest::of("0123456789abcdef");
        assert!(digest.matches("0123456789abcdef"));
        assert!(!digest.matches("0123456789abcdeF"));
        assert!(!digest.matches("0123456789abcdef0"));
        assert!(!digest.matches(""));
    }
}
