//! The admin token: every protected route (see `routes()`) requires
//! `Authorization: Bearer <admin token>` — the current token or, during a rotation, one of
//! the previous ones ([`AdminTokens`]).
//!
//! Both sides are hashed with SHA-256 and the digests compared in constant time, against
//! every accepted token without stopping at a match, so neither the token's bytes nor its
//! length nor which token matched can be learned from how long an answer takes. The token
//! is never logged, and a refusal never says what was wrong with what was sent.

use axum::extract::Request;
use axum::http::header;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::studio::AdminTokens;

/// Whether the request carries an accepted admin token (see
/// [`super::layers::AdminLayer`]).
pub(crate) fn is_admin(request: &Request, accepted: &AdminTokens) -> bool {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .is_some_and(|token| any_token_matches(token, accepted))
}

/// [`token_matches`] against every accepted token, each compared whatever the others gave.
fn any_token_matches(presented: &str, accepted: &AdminTokens) -> bool {
    accepted.all().fold(false, |found, t| {
        token_matches(presented, t.expose()) | found
    })
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
    fn the_current_and_the_previous_tokens_are_accepted_and_no_other() {
        use social_studio_storage::Secret;
        let tokens = AdminTokens::new(
            Secret::new("current-token-0001"),
            vec![Secret::new("previous-token-001")],
        );
        assert!(any_token_matches("current-token-0001", &tokens));
        assert!(any_token_matches("previous-token-001", &tokens));
        assert!(!any_token_matches("another-token-001", &tokens));
        let after = AdminTokens::new(Secret::new("current-token-0001"), vec![]);
        assert!(!any_token_matches("previous-token-001", &after));
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("secret-token-123", "secret-token-123"));
        assert!(!token_matches("secret-token-12", "secret-token-123"));
        assert!(!token_matches("secret-token-124", "secret-token-123"));
        assert!(!token_matches("", ""));
    }
}
