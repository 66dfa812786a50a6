//! Who may call a protected route (see `routes()`).
//!
//! **The admin token** (the default): `Authorization: Bearer <admin token>` — the current
//! token or, during a rotation, one of the previous ones ([`AdminTokens`]). Both sides are
//! hashed with SHA-256 and the digests compared in constant time, against every accepted
//! token without stopping at a match, so neither the token's bytes nor its length nor
//! which token matched can be learned from how long an answer takes. The token is never
//! logged, and a refusal never says what was wrong with what was sent.
//!
//! **The host's own authorization**: a host application with its own users implements
//! [`Authorize`] and gives it to [`RouterBuilder`](super::RouterBuilder), to decide alone
//! or beside the admin token. It is asked before the handler with the request's head and
//! the [`RouteInfo`] (route template, method, the pen name in the path), and admits with
//! `Ok(())` or answers a [`Refusal`] (401 or 403, with a code of the host's choosing), which
//! becomes the API's error body like every other refusal.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use social_studio_storage::PenName;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::extract::PenPath;
use super::{RouteSpec, Verb};
use crate::studio::AdminTokens;

/// Whether a request with these headers carries an accepted admin token (see
/// [`super::layers::AdminLayer`]).
pub(crate) fn is_admin(headers: &HeaderMap, accepted: &AdminTokens) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .is_some_and(|token| any_token_matches(token, accepted))
}

/// A host application's authorization in front of the engine's protected routes.
///
/// Asked once per request to a protected route, after routing and before the handler;
/// never for `/healthz`, `/readyz` or the OAuth callback. The request's head carries
/// everything the host's own layers put there: a host that authenticates in a middleware
/// of its own, outside the nested router, reads the user it found from
/// `request.extensions` rather than parsing credentials a second time.
///
/// An `async fn` implements it:
///
/// ```
/// use axum::http::request::Parts;
/// use social_studio::http::{Authorize, Refusal, RouteInfo};
///
/// /// The host's user, as its own authentication middleware stored it.
/// #[derive(Clone)]
/// struct User {
///     pen_names: Vec<String>,
/// }
///
/// struct OwnPenNamesOnly;
///
/// impl Authorize for OwnPenNamesOnly {
///     async fn authorize(&self, request: &Parts, route: &RouteInfo) -> Result<(), Refusal> {
///         let user = request
///             .extensions
///             .get::<User>()
///             .ok_or_else(Refusal::unauthorized)?;
///         match &route.pen_name {
///             Some(pen) if user.pen_names.iter().any(|p| p == pen.as_str()) => Ok(()),
///             // Another user's pen name, or a route across pen names (`/metrics`, …).
///             _ => Err(Refusal::forbidden().with_code("not_your_pen_name")),
///         }
///     }
/// }
/// ```
pub trait Authorize: Send + Sync + 'static {
    /// `Ok(())` lets the request through to `route`; a [`Refusal`] is answered instead.
    fn authorize(
        &self,
        request: &Parts,
        route: &RouteInfo,
    ) -> impl Future<Output = Result<(), Refusal>> + Send;
}

/// What the host decides about: one protected route of the table, as this request asks it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RouteInfo {
    /// The route's method.
    pub method: Verb,
    /// The route's template as the table ([`routes`](super::routes)) names it, without
    /// the prefix the host nests the router under (`/v1/pen-names/{pen}/posts`).
    pub template: &'static str,
    /// The `{pen}` of the path, for the routes that have one: the pen name the request is
    /// about, so a host can check that its user owns it. `None` for the routes across pen
    /// names (`/metrics`, `/v1/events`, `/v1/attention`, `/v1/supervisor`, the backup,
    /// `/openapi.json`). A `{pen}` that is not a valid pen name is refused with 400
    /// `invalid_pen_name` before the host is asked, as the route itself would refuse it.
    pub pen_name: Option<PenName>,
}

impl RouteInfo {
    /// The route `spec` as the request in `parts` asks it (the path parameters are there
    /// once the router has matched).
    pub(crate) async fn of(
        spec: &'static RouteSpec,
        parts: &mut Parts,
    ) -> Result<RouteInfo, ApiError> {
        let pen_name = if spec.path.contains("{pen}") {
            Some(PenPath::from_request_parts(parts, &()).await?.0)
        } else {
            None
        };
        Ok(RouteInfo {
            method: spec.method,
            template: spec.path,
            pen_name,
        })
    }
}

/// A host's refusal of a request ([`Authorize`]): answered as the API's error body,
/// `{"error": {"code", "message"}}`, with its status — 401 (with `WWW-Authenticate:
/// Bearer`, like every 401 of the API) or 403.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} {code}: {message}", status.as_u16())]
pub struct Refusal {
    status: StatusCode,
    code: Cow<'static, str>,
    message: Cow<'static, str>,
}

impl Refusal {
    /// 401 `unauthorized`: the request does not say who sends it, or not in a way the host
    /// accepts.
    pub fn unauthorized() -> Refusal {
        Refusal {
            status: StatusCode::UNAUTHORIZED,
            code: Cow::Borrowed("unauthorized"),
            message: Cow::Borrowed("this route needs the host application's credentials"),
        }
    }

    /// 403 `forbidden`: the host knows who sends it, and they may not do this (another
    /// user's pen name, say).
    pub fn forbidden() -> Refusal {
        Refusal {
            status: StatusCode::FORBIDDEN,
            code: Cow::Borrowed("forbidden"),
            message: Cow::Borrowed("the host application does not allow this request"),
        }
    }

    /// The machine-readable code the body carries instead of `unauthorized` or
    /// `forbidden`; an empty one is ignored.
    pub fn with_code(mut self, code: impl Into<Cow<'static, str>>) -> Refusal {
        let code = code.into();
        if !code.is_empty() {
            self.code = code;
        }
        self
    }

    /// The sentence for a person the body carries. It is sent to the caller: name what
    /// is missing, never a secret.
    pub fn with_message(mut self, message: impl Into<Cow<'static, str>>) -> Refusal {
        self.message = message.into();
        self
    }

    /// 401 or 403.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

/// What the layer holds of the host's [`Authorize`]: the same, with its future boxed, so
/// any host's type fits behind one `Arc`.
pub(crate) type Verdict<'a> = Pin<Box<dyn Future<Output = Result<(), Refusal>> + Send + 'a>>;

pub(crate) trait AuthorizeDyn: Send + Sync + 'static {
    fn authorize_dyn<'a>(&'a self, request: &'a Parts, route: &'a RouteInfo) -> Verdict<'a>;
}

impl<A: Authorize> AuthorizeDyn for A {
    fn authorize_dyn<'a>(&'a self, request: &'a Parts, route: &'a RouteInfo) -> Verdict<'a> {
        Box::pin(self.authorize(request, route))
    }
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
    fn a_host_s_refusal_is_401_or_403_with_the_code_it_chose() {
        let refused = Refusal::unauthorized();
        assert_eq!(
            (refused.status(), refused.code()),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
        let refused = Refusal::forbidden()
            .with_code("not_your_pen_name")
            .with_message("another user's");
        assert_eq!(
            (refused.status(), refused.code(), refused.message()),
            (StatusCode::FORBIDDEN, "not_your_pen_name", "another user's")
        );
        // A code must say something: an empty one keeps the default.
        assert_eq!(Refusal::forbidden().with_code("").code(), "forbidden");
        let body = ApiError::from(refused).body();
        assert_eq!(body["error"]["code"], "not_your_pen_name");
        assert_eq!(body["error"]["message"], "another user's");
    }

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("secret-token-123", "secret-token-123"));
        assert!(!token_matches("secret-token-12", "secret-token-123"));
        assert!(!token_matches("secret-token-124", "secret-token-123"));
        assert!(!token_matches("", ""));
    }
}
