//! A pen name's posts: schedule (validated for every platform named, with an optional
//! `Idempotency-Key`), list by state, read, edit, cancel, retry, resolve. A post is only
//! ever found under its own pen name: another pen name asking for its id gets 404.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::{Deserialize, Serialize};
use social_studio_storage::StateLabel;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, PenPath, PostPath};
use super::AppState;
use crate::studio::views::PostView;
use crate::studio::{PostPatch, PostRequest};

/// The header that makes a schedule request safe to retry.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Longest accepted `Idempotency-Key`.
const IDEMPOTENCY_KEY_MAX: usize = 255;

/// `{"posts": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PostsBody {
    pub(crate) posts: Vec<PostView>,
}

/// `{"posts": [...], "unreadable": [...]}`: every post that can be read, and every one
/// that cannot, named by id with why — never an error because one is unreadable.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PostListBody {
    pub(crate) posts: Vec<PostView>,
    pub(crate) unreadable: Vec<crate::studio::views::UnreadableView>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// scheduled, paused, publishing, published, failed, unconfirmed, held or cancelled.
    #[serde(default)]
    pub(crate) state: Option<String>,
}

/// Body of `POST …/resolve`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResolveBody {
    /// Whether the post appeared on the platform; `false` sends it again.
    pub(crate) published: bool,
}

/// A post state named by its lowercase label, as a list filter.
fn parse_state_filter(raw: &str) -> Result<StateLabel, ApiError> {
    StateLabel::POST
        .into_iter()
        .find(|s| s.as_str() == raw)
        .ok_or_else(|| {
            let known: Vec<&str> = StateLabel::POST.iter().map(|s| s.as_str()).collect();
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_state_filter",
                format!("state must be one of {}", known.join(", ")),
            )
            .with_detail(serde_json::json!({ "allowed": known }))
        })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let refuse = || {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} visible ASCII characters"),
        )
    };
    let key = value.to_str().map_err(|_| refuse())?.trim();
    if key.is_empty()
        || key.len() > IDEMPOTENCY_KEY_MAX
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(refuse());
    }
    Ok(Some(key.to_string()))
}

fn record_pen(pen: &social_studio_storage::PenName) {
    tracing::Span::current().record("pen_name", pen.as_str());
}

#[utoipa::path(
    post,
    path = "/v1/pen-names/{pen}/posts",
    tag = "posts",
    params(
        ("pen" = String, Path, description = "pen name"),
        ("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key and body returns the first request's posts and creates nothing new; if the first attempt was cut short, the retry schedules what it had not"),
    ),
    request_body(content = PostRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "created: one post per platform", body = PostsBody),
        (status = 200, description = "a replay of an Idempotency-Key: the posts the first request created", body = PostsBody),
        (status = 400, description = "invalid pen name, JSON, time or Idempotency-Key", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 409, description = "idempotency_key_reused with a different body", body = ErrorBody),
        (status = 413, description = "payload_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 422, description = "validation_failed, with each platform's refusals under `platforms`; nothing was created", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name = %pen))]
pub(crate) async fn schedule(
    State(state): State<AppState>,
    PenPath(pen): PenPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PostRequest>,
) -> Result<(StatusCode, Json<PostsBody>), ApiError> {
    let key = idempotency_key(&headers)?;
    let (posts, created) = state.studio.schedule(&pen, body, key.as_deref()).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(PostsBody { posts })))
}

#[utoipa::path(
    get,
    path = "/v1/pen-names/{pen}/posts",
    tag = "posts",
    params(("pen" = String, Path, description = "pen name"), ListQuery),
    responses(
        (status = 200, description = "the pen name's posts, newest due first, and those that cannot be read", body = PostListBody),
        (status = 400, description = "invalid pen name, or invalid_state_filter", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(level = "debug", skip_all, fields(pen_name = %pen))]
pub(crate) async fn list(
    State(state): State<AppState>,
    PenPath(pen): PenPath,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<PostListBody>, ApiError> {
    let filter = query.state.as_deref().map(parse_state_filter).transpose()?;
    let list = state.studio.posts(&pen, filter).await?;
    Ok(Json(PostListBody {
        posts: list.posts,
        unreadable: list.unreadable,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/pen-names/{pen}/posts/{id}",
    tag = "posts",
    params(("pen" = String, Path, description = "pen name"), ("id" = String, Path, description = "post id")),
    responses(
        (status = 200, description = "the post", body = PostView),
        (status = 400, description = "invalid pen name", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such post under this pen name", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(level = "debug", skip_all, fields(pen_name, post_id = %path.id))]
pub(crate) async fn show(
    State(state): State<AppState>,
    path: PostPath,
) -> Result<Json<PostView>, ApiError> {
    record_pen(&path.pen);
    Ok(Json(state.studio.post(&path.pen, path.id).await?))
}

#[utoipa::path(
    patch,
    path = "/v1/pen-names/{pen}/posts/{id}",
    tag = "posts",
    params(("pen" = String, Path, description = "pen name"), ("id" = String, Path, description = "post id")),
    request_body(content = PostPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "the edited post", body = PostView),
        (status = 400, description = "invalid pen name, JSON or time", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such post under this pen name", body = ErrorBody),
        (status = 409, description = "invalid_transition: the post can no longer be edited", body = ErrorBody),
        (status = 422, description = "validation_failed", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name, post_id = %path.id))]
pub(crate) async fn update(
    State(state): State<AppState>,
    path: PostPath,
    ApiJson(patch): ApiJson<PostPatch>,
) -> Result<Json<PostView>, ApiError> {
    record_pen(&path.pen);
    let post = state.studio.update_post(&path.pen, path.id, patch).await?;
    Ok(Json(post))
}

#[utoipa::path(
    delete,
    path = "/v1/pen-names/{pen}/posts/{id}",
    tag = "posts",
    params(("pen" = String, Path, description = "pen name"), ("id" = String, Path, description = "post id")),
    responses(
        (status = 200, description = "the cancelled post", body = PostView),
        (status = 400, description = "invalid pen name", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such post under this pen name", body = ErrorBody),
        (status = 409, description = "invalid_transition", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name, post_id = %path.id))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    path: PostPath,
) -> Result<Json<PostView>, ApiError> {
    record_pen(&path.pen);
    Ok(Json(state.studio.cancel_post(&path.pen, path.id).await?))
}

#[utoipa::path(
    post,
    path = "/v1/pen-names/{pen}/posts/{id}/retry",
    tag = "posts",
    params(("pen" = String, Path, description = "pen name"), ("id" = String, Path, description = "post id")),
    responses(
        (status = 200, description = "the post, scheduled again", body = PostView),
        (status = 400, description = "invalid pen name", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such post under this pen name", body = ErrorBody),
        (status = 409, description = "invalid_transition: only failed or held posts are retried", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name, post_id = %path.id))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    path: PostPath,
) -> Result<Json<PostView>, ApiError> {
    record_pen(&path.pen);
    Ok(Json(state.studio.retry_post(&path.pen, path.id).await?))
}

#[utoipa::path(
    post,
    path = "/v1/pen-names/{pen}/posts/{id}/resolve",
    tag = "posts",
    params(("pen" = String, Path, description = "pen name"), ("id" = String, Path, description = "post id")),
    request_body(content = ResolveBody, content_type = "application/json"),
    responses(
        (status = 200, description = "the post: published, or scheduled again", body = PostView),
        (status = 400, description = "invalid pen name or JSON", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "no such post under this pen name", body = ErrorBody),
        (status = 409, description = "invalid_transition: only unconfirmed posts are resolved", body = ErrorBody),
        (status = 422, description = "validation_failed: `published` is missing or not a boolean", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name, post_id = %path.id))]
pub(crate) async fn resolve(
    State(state): State<AppState>,
    path: PostPath,
    ApiJson(body): ApiJson<ResolveBody>,
) -> Result<Json<PostView>, ApiError> {
    record_pen(&path.pen);
    let post = state
        .studio
        .resolve_post(&path.pen, path.id, body.published)
        .await?;
    Ok(Json(post))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_filters_are_the_post_labels() {
        assert_eq!(parse_state_filter("paused").unwrap(), StateLabel::Paused);
        assert_eq!(
            parse_state_filter("cancelled").unwrap(),
            StateLabel::Cancelled
        );
        for bad in ["active", "Paused", "", "expired"] {
            assert_eq!(
                parse_state_filter(bad).unwrap_err().code(),
                "invalid_state_filter"
            );
        }
    }
}
