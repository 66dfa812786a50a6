//! Extractors whose rejections are [`ApiError`]s: path segments parsed into the domain's
//! types (an invalid pen name is 400 `invalid_pen_name`, an unknown platform 404
//! `unknown_platform`, a post id that does not parse 404 `not_found`), query strings, and
//! JSON bodies (400 `invalid_json`, 415 `unsupported_media_type`, 413
//! `payload_too_large`, 422 `validation_failed`).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use social_studio_storage::{ConnectionKey, PenName, PostId};

use super::error::{
    from_bytes_rejection, from_json_rejection, from_path_rejection, from_query_rejection, ApiError,
};
use crate::studio::{AddressError, Studio};

/// The raw path parameters of the matched route.
async fn path_params<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
) -> Result<HashMap<String, String>, ApiError> {
    let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
        .await
        .map_err(from_path_rejection)?;
    Ok(params)
}

fn param<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    params.get(name).map(String::as_str).ok_or_else(|| {
        tracing::error!(name, "a route without the path parameter its handler reads");
        ApiError::internal("the route's parameters could not be read")
    })
}

fn pen_name(raw: &str) -> Result<PenName, ApiError> {
    PenName::parse(raw).map_err(|e| ApiError::from(AddressError::from(e)))
}

/// `{pen}`, parsed.
#[derive(Debug, Clone)]
pub(crate) struct PenPath(pub(crate) PenName);

impl<S: Send + Sync> FromRequestParts<S> for PenPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = path_params(parts, state).await?;
        Ok(PenPath(pen_name(param(&params, "pen")?)?))
    }
}

/// `{pen}` and `{platform}`, parsed the way every entry point must
/// ([`Studio::parse_key`]).
#[derive(Debug, Clone)]
pub(crate) struct KeyPath(pub(crate) ConnectionKey);

impl<S: Send + Sync> FromRequestParts<S> for KeyPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = path_params(parts, state).await?;
        let key = Studio::parse_key(param(&params, "pen")?, param(&params, "platform")?)?;
        Ok(KeyPath(key))
    }
}

/// `{pen}` and `{id}`: a post id that does not parse names no post, so it is 404.
#[derive(Debug, Clone)]
pub(crate) struct PostPath {
    pub(crate) pen: PenName,
    pub(crate) id: PostId,
}

impl<S: Send + Sync> FromRequestParts<S> for PostPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let params = path_params(parts, state).await?;
        let pen = pen_name(param(&params, "pen")?)?;
        let id = PostId::parse(param(&params, "id")?).ok_or(AddressError::UnknownPost)?;
        Ok(PostPath { pen, id })
    }
}

/// A query string read into `T`; a malformed one is 400 `invalid_query`.
#[derive(Debug, Clone)]
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(value) = Query::<T>::from_request_parts(parts, state)
            .await
            .map_err(from_query_rejection)?;
        Ok(ApiQuery(value))
    }
}

/// A required JSON body.
#[derive(Debug, Clone)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let Json(value) = Json::<T>::from_request(request, state)
            .await
            .map_err(from_json_rejection)?;
        Ok(ApiJson(value))
    }
}

/// A JSON body that may be left out: an empty body reads as `T::default()` (so `POST
/// …/authorize` works with no body as with `{}`); a body that is there must be JSON.
#[derive(Debug, Clone)]
pub(crate) struct OptionalJson<T>(pub(crate) T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let json_declared = is_json_content_type(request.headers());
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(from_bytes_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        if !json_declared {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a body with `Content-Type: application/json`",
            ));
        }
        let Json(value) = Json::<T>::from_bytes(&bytes).map_err(from_json_rejection)?;
        Ok(OptionalJson(value))
    }
}

/// `application/json`, or any `application/*+json`, with or without parameters.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!is_json_content_type(&headers));
        for (value, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/jsonx", false),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(is_json_content_type(&headers), json, "{value}");
        }
    }
}
