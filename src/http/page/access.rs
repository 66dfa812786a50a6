//! Who may use a pen name's Social Accounts page: the page cookie and its CSRF token.
//!
//! Opening a page link sets one cookie, `social_studio_page`, `HttpOnly`,
//! `SameSite=Lax` (so that it comes back with the platform's redirect to the OAuth
//! callback and on to the page), `Secure` when `public_url` is https, with its `Path` the
//! pen name's page (`{prefix}/page/{pen}`), so the browser sends it to nothing else. Its
//! value is `{expiry}.{signature}.{pen name}`: the signature is HMAC-SHA256 under the
//! studio's page key ([`Studio::page_key`](crate::studio::Studio::page_key)) of the expiry
//! and the pen name, so the cookie cannot be made for another pen name nor kept alive past
//! its expiry. Every request to a page route checks that a cookie it carries names the
//! pen name of the path.
//!
//! Every request that changes something is a POST carrying `X-CSRF-Token`: the HMAC of
//! the cookie's value under the same key, written into the page as it is served. Another
//! site can make the browser send the cookie (a Lax cookie rides on a top-level
//! navigation) but cannot read the page to learn the token, nor set that header across
//! origins without a preflight the engine never answers.

use axum::http::{header, HeaderMap};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use social_studio_storage::{PenName, Timestamp};
use subtle::ConstantTimeEq;

/// The cookie's name.
pub(super) const COOKIE: &str = "social_studio_page";
/// The header that carries the CSRF token.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";
/// How long a page cookie lasts once a link has been opened.
pub(crate) const SESSION: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key");
    for part in parts {
        mac.update(&(part.len() as u64).to_le_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A page cookie's value for `pen`, valid until `expires`.
pub(super) fn cookie_value(key: &[u8; 32], pen: &PenName, expires: Timestamp) -> String {
    let expiry = expires.unix_millis().to_string();
    let signature = mac(
        key,
        &[b"cookie", expiry.as_bytes(), pen.as_str().as_bytes()],
    );
    format!("{expiry}.{}.{}", b64(&signature), pen.as_str())
}

/// The CSRF token that goes with a cookie's value.
pub(super) fn csrf_token(key: &[u8; 32], cookie: &str) -> String {
    b64(&mac(key, &[b"csrf", cookie.as_bytes()]))
}

/// Whether `value` is a page cookie for `pen`, signed with `key`, unexpired at `now`.
fn valid_for(key: &[u8; 32], value: &str, pen: &PenName, now: Timestamp) -> bool {
    let mut parts = value.splitn(3, '.');
    let (Some(expiry), Some(signature), Some(named)) = (parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let Ok(expires) = expiry.parse::<i64>() else {
        return false;
    };
    let Ok(given) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    let expected = mac(key, &[b"cookie", expiry.as_bytes(), named.as_bytes()]);
    bool::from(given.ct_eq(&expected)) && named == pen.as_str() && now.unix_millis() < expires
}

/// The value of the request's page cookie for `pen`, if it carries a valid one (a
/// browser may hold several, one per pen name's path).
pub(super) fn session(
    headers: &HeaderMap,
    key: &[u8; 32],
    pen: &PenName,
    now: Timestamp,
) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .find(|value| valid_for(key, value, pen, now))
        .map(str::to_owned)
}

/// Whether the request carries the CSRF token of `cookie`.
pub(super) fn csrf_ok(headers: &HeaderMap, key: &[u8; 32], cookie: &str) -> bool {
    let expected = csrf_token(key, cookie);
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
}

/// The `Set-Cookie` header's value.
pub(super) fn set_cookie(value: &str, path: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite=Lax{}",
        SESSION.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pen(name: &str) -> PenName {
        PenName::parse(name).unwrap()
    }

    #[test]
    fn a_cookie_is_for_its_pen_name_its_key_and_its_time() {
        let key = [7u8; 32];
        let now = Timestamp::from_unix_millis(1_000_000);
        let later = Timestamp::from_unix_millis(2_000_000);
        let value = cookie_value(&key, &pen("jane"), later);
        assert!(valid_for(&key, &value, &pen("jane"), now));
        assert!(!valid_for(&key, &value, &pen("pat"), now));
        assert!(!valid_for(&[8u8; 32], &value, &pen("jane"), now));
        assert!(!valid_for(&key, &value, &pen("jane"), later));
        // The pen name cannot be swapped under the signature.
        let forged = value.replace(".jane", ".pat");
        assert!(!valid_for(&key, &forged, &pen("pat"), now));
        assert!(!valid_for(&key, "garbage", &pen("jane"), now));
    }
}
