//! A pen name's connections: one entry per platform, one connection with its recent
//! events, the start of an OAuth connect, verify, disconnect, Bluesky's app-password
//! connect, and choosing targets.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use social_studio_storage::{Platform, Secret};
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, KeyPath, OptionalJson, PenPath};
use super::query::ConfirmQuery;
use super::AppState;
use crate::studio::views::{
    AuthorizeStart, ConnectionEntry, DisconnectView, EventView, VerifyView,
};

/// How many recent events the detail of a connection shows.
const RECENT_EVENTS: usize = 20;

/// `{"connections": [...]}`: one entry per platform, in platform order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConnectionsBody {
    pub(crate) connections: Vec<ConnectionEntry>,
}

/// One connection and its most recent events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ConnectionDetail {
    pub(crate) connection: ConnectionEntry,
    pub(crate) events: Vec<EventView>,
}

/// Body of `POST …/authorize`: `{}` (or no body), or `{"replace": true}` to allow a
/// different account to replace the connected one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthorizeBody {
    #[serde(default)]
    pub(crate) replace: bool,
}

/// Body of `POST …/verify`: `{}` (or no body), or `{"test_post": "text"}` to also
/// publish that text now and wait for the outcome.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct VerifyBody {
    #[serde(default)]
    pub(crate) test_post: Option<String>,
}

/// Body of the app-password connect. The password is a [`Secret`]: it never prints, and
/// the engine sends it once to sign in and keeps nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppPasswordBody {
    /// The account's handle or DID.
    pub(crate) identifier: String,
    /// An app password (`xxxx-xxxx-xxxx-xxxx`), never the account's main password.
    #[schema(value_type = String, format = Password)]
    pub(crate) app_password: Secret,
    /// Allow a different account to replace the connected one.
    #[serde(default)]
    pub(crate) replace: bool,
}

/// Body of `PUT …/targets`: the ids, from the connection's `targets`, of those a post
/// naming no target goes to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetsBody {
    pub(crate) targets: Vec<String>,
}

fn record_key(key: &social_studio_storage::ConnectionKey) {
    let span = tracing::Span::current();
    span.record("pen_name", key.pen_name.as_str());
    span.record("platform", key.platform.id());
}

#[utoipa::path(
    get,
    path = "/v1/pen-names/{pen}/connections",
    tag = "connections",
    params(("pen" = String, Path, description = "pen name")),
    responses(
        (status = 200, description = "one entry per platform; a pen name nobody has used has every platform not_connected or not_configured", body = ConnectionsBody),
        (status = 400, description = "invalid pen name", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(level = "debug", skip_all, fields(pen_name = %pen))]
pub(crate) async fn list(
    State(state): State<AppState>,
    PenPath(pen): PenPath,
) -> Result<Json<ConnectionsBody>, ApiError> {
    let connections = state.studio.connections(&pen).await?;
    Ok(Json(ConnectionsBody { connections }))
}

#[utoipa::path(
    get,
    path = "/v1/pen-names/{pen}/connections/{platform}",
    tag = "connections",
    params(
        ("pen" = String, Path, description = "pen name"),
        ("platform" = String, Path, description = "facebook, instagram, tiktok, x, linkedin, pinterest, youtube, threads or bluesky"),
    ),
    responses(
        (status = 200, description = "the connection and its recent events", body = ConnectionDetail),
        (status = 400, description = "invalid pen name", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "unknown platform", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(level = "debug", skip_all, fields(pen_name, platform))]
pub(crate) async fn show(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
) -> Result<Json<ConnectionDetail>, ApiError> {
    record_key(&key);
    let connection = state.studio.connection(&key).await?;
    let events = state.studio.connection_events(&key, RECENT_EVENTS).await?;
    Ok(Json(ConnectionDetail { connection, events }))
}

#[utoipa::path(
    post,
    path = "/v1/pen-names/{pen}/connections/{platform}/authorize",
    tag = "connections",
    params(
        ("pen" = String, Path, description = "pen name"),
        ("platform" = String, Path, description = "platform id"),
    ),
    request_body(content = Option<AuthorizeBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "`{authorize_url, state, expires_at}`: send the author's browser to authorize_url", body = AuthorizeStart),
        (status = 400, description = "invalid pen name or body", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "unknown platform", body = ErrorBody),
        (status = 409, description = "platform_not_configured, or wrong_connect_flow (Bluesky)", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name, platform))]
pub(crate) async fn authorize(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
    OptionalJson(body): OptionalJson<AuthorizeBody>,
) -> Result<Json<AuthorizeStart>, ApiError> {
    record_key(&key);
    let start = state.studio.begin_connect(&key, body.replace).await?;
    Ok(Json(start))
}

#[utoipa::path(
    post,
    path = "/v1/pen-names/{pen}/connections/{platform}",
    tag = "connections",
    params(
        ("pen" = String, Path, description = "pen name"),
        ("platform" = String, Path, description = "platform id (bluesky)"),
    ),
    request_body(content = AppPasswordBody, content_type = "application/json"),
    responses(
        (status = 200, description = "connected: the connection as it now stands", body = ConnectionEntry),
        (status = 400, description = "invalid pen name or body", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "unknown platform", body = ErrorBody),
        (status = 409, description = "platform_not_configured, wrong_account, or wrong_connect_flow for a platform that connects through OAuth", body = ErrorBody),
        (status = 422, description = "app_password_required (not an app password), app_password_rejected (wrong or revoked), account_suspended", body = ErrorBody),
        (status = 429, description = "the platform is rate limiting sign-ins", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name, platform))]
pub(crate) async fn connect_with_app_password(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
    ApiJson(body): ApiJson<AppPasswordBody>,
) -> Result<Json<ConnectionEntry>, ApiError> {
    record_key(&key);
    let AppPasswordBody {
        identifier,
        app_password,
        replace,
    } = body;
    if key.platform == Platform::Bluesky {
        let entry = state
            .studio
            .connect_with_app_password(
                &key.pen_name,
                key.platform,
                &identifier,
                app_password,
                replace,
            )
            .await?;
        return Ok(Json(entry));
    }
    // Not an app-password platform: the password is dropped unused.
    drop(app_password);
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "wrong_connect_flow",
        format!(
            "{} connects through the platform's consent page, not with an app password: POST /v1/pen-names/{}/connections/{}/authorize",
            key.platform.display_name(),
            key.pen_name,
            key.platform.id()
        ),
    ))
}

#[utoipa::path(
    post,
    path = "/v1/pen-names/{pen}/connections/{platform}/verify",
    tag = "connections",
    params(
        ("pen" = String, Path, description = "pen name"),
        ("platform" = String, Path, description = "platform id"),
    ),
    request_body(content = Option<VerifyBody>, content_type = "application/json"),
    responses(
        (status = 200, description = "the connection after the check, and the test post when one was asked for", body = VerifyView),
        (status = 400, description = "invalid pen name or body", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "unknown platform", body = ErrorBody),
        (status = 409, description = "not connected, or the connection needs attention (the reason says why)", body = ErrorBody),
        (status = 422, description = "the test post was refused", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name, platform))]
pub(crate) async fn verify(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
    OptionalJson(body): OptionalJson<VerifyBody>,
) -> Result<Json<VerifyView>, ApiError> {
    record_key(&key);
    let view = state.studio.verify(&key, body.test_post).await?;
    Ok(Json(view))
}

#[utoipa::path(
    delete,
    path = "/v1/pen-names/{pen}/connections/{platform}",
    tag = "connections",
    params(
        ("pen" = String, Path, description = "pen name"),
        ("platform" = String, Path, description = "platform id"),
        ConfirmQuery,
    ),
    responses(
        (status = 200, description = "disconnected: revoked where the platform allows, grant erased, scheduled posts failed with account_disconnected", body = DisconnectView),
        (status = 400, description = "invalid pen name or query", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "unknown platform", body = ErrorBody),
        (status = 409, description = "confirmation_required (with scheduled_posts_affected), or not_connected", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name, platform))]
pub(crate) async fn disconnect(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
    ApiQuery(query): ApiQuery<ConfirmQuery>,
) -> Result<Json<DisconnectView>, ApiError> {
    record_key(&key);
    let view = state.studio.disconnect(&key, query.confirm).await?;
    Ok(Json(view))
}

#[utoipa::path(
    put,
    path = "/v1/pen-names/{pen}/connections/{platform}/targets",
    tag = "connections",
    params(
        ("pen" = String, Path, description = "pen name"),
        ("platform" = String, Path, description = "platform id"),
    ),
    request_body(content = TargetsBody, content_type = "application/json"),
    responses(
        (status = 200, description = "the connection with its chosen targets", body = ConnectionEntry),
        (status = 400, description = "invalid pen name or body; `unknown_target`, `duplicate_target` or `no_target_chosen`: nothing changed", body = ErrorBody),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
        (status = 404, description = "unknown platform", body = ErrorBody),
        (status = 409, description = "not connected, or `no_targets_to_choose`: the account's only target is itself", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[tracing::instrument(skip_all, fields(pen_name, platform))]
pub(crate) async fn choose_targets(
    State(state): State<AppState>,
    KeyPath(key): KeyPath,
    ApiJson(body): ApiJson<TargetsBody>,
) -> Result<Json<ConnectionEntry>, ApiError> {
    record_key(&key);
    let entry = state.studio.choose_targets(&key, body.targets).await?;
    Ok(Json(entry))
}
