//! The admin token: every protected route (see `routes()`) requires
//! `Authorization: Bearer <admin token>`.
//!
//! Both sides are hashed with SHA-256 and the digests compared in constant time, so
//! neither the token's bytes nor its length can be learned from how long a refusal takes.
//! The token is never logged, and a refusal never says what was wrong with what was sent.

use axum::extract::Request;
use axum::http::header;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Whether the request carries the admin token (see [`super::layers::AdminLayer`]).
pub(crate) fn is_admin(request: &Request, expected: &str) -> bool {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .is_some_and(|token| token_matches(token, expected))
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
