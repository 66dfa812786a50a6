//! The admin token: every protected route (see `routes()`) requires
//! `Authorization: Bearer <admin token>`.
//!
//! Both sides are hashed with SHA-256 and the digests compared in constant time, so
//! neither the token's bytes nor its length can be learned from how long a refusal takes.
//! The token is never logged, and a refusal never says what was wrong with what was sent.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;

/// Middleware on every protected route.
pub(crate) async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    match presented {
        Some(token) if token_matches(token, state.studio.admin_token().expose()) => {
            next.run(request).await
        }
        _ => ApiError::unauthorized().into_response(),
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

/// Constant-time comparison of what was presented against the admin token.
fn token_matches(presented: &str, expected: &str) -> bool {
    if expected.is_empty() {
        // An empty admin token would let an empty or missing header through.
        return false;
    }
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(expected.as_bytes());
    a.as_slice().ct_eq(b.as_slice()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("secret-token-123", "secret-token-123"));
        assert!(!token_matches("secret-token-12", "secret-token-123"));
        assert!(!token_matches("secret-token-124", "secret-token-123"));
        assert!(!token_matches("", ""));
    }
}
