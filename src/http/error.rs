//! `ApiError`: every refusal the API answers, as `{"error": {"code", "message", ...}}`
//! with its HTTP status — the engine's refusals (each use case's error type from
//! `studio`: their codes and remedies are their own, their HTTP status and body are
//! decided here, in one place), axum's own rejections, the fallbacks for unknown routes
//! and methods, panics, and a last-resort rewrite of any error response that is not JSON
//! yet.

use std::any::Any;
use std::borrow::Cow;

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use social_studio_storage::Reason;

use crate::platforms::ConnectError;
use crate::studio::views::ReasonView;
use crate::studio::{
    AddressError, ConnectingError, ConnectionError, EngineRefusal, EraseError, PlatformRefusal,
    PostError, TargetsError,
};

/// Every error: `{"error": {"code", "message", ...detail}}` — the schema of the body
/// [`ApiError::body`] builds, for the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorObject,
}

/// The `error` object. Beside the fields named here, a refusal may carry more of what it
/// is about (a `confirmation_required` disconnect its `platform`, an erasure's dry run
/// the `connections` and `posts` it would remove, an `invalid_state_filter` the
/// `allowed` states).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorObject {
    /// Stable machine-readable code (`unauthorized`, `invalid_pen_name`,
    /// `validation_failed`, `confirmation_required`, …).
    pub(crate) code: String,
    /// A sentence for a person.
    pub(crate) message: String,
    /// What a person can do about it, where the engine knows.
    pub(crate) remedy: Option<String>,
    /// Per-platform refusals of a `validation_failed` schedule.
    pub(crate) platforms: Option<Vec<PlatformRefusal>>,
    /// How many scheduled posts a `confirmation_required` action would affect.
    pub(crate) scheduled_posts_affected: Option<usize>,
    /// The reason and remedy of a connection problem.
    pub(crate) reason: Option<ReasonView>,
}

/// A refusal: status, stable machine-readable code, a sentence, and structured detail
/// that is merged into the `error` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: Cow<'static, str>,
    message: String,
    /// What a person can do about it, where the engine knows.
    remedy: Option<&'static str>,
    detail: Option<Value>,
}

/// Marks a response that is an error on purpose but not JSON (the OAuth callback page),
/// so that [`ensure_json_error`] leaves it alone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NotJsonOnPurpose;

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            remedy: None,
            detail: None,
        }
    }

    /// What a person can do about this refusal.
    pub fn remedy(&self) -> &'static str {
        self.remedy.unwrap_or("Check the request and try again.")
    }

    /// Adds structured detail; an object's fields are merged into the `error` object.
    pub fn with_detail(mut self, detail: Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn detail(&self) -> Option<&Value> {
        self.detail.as_ref()
    }

    pub(crate) fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this route needs the admin token: send `Authorization: Bearer <admin token>`",
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    /// The JSON body: `{"error": {"code", "message", ...detail}}`.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("code".into(), Value::String(self.code.to_string()));
        error.insert("message".into(), Value::String(self.message.clone()));
        if let Some(remedy) = self.remedy {
            error.insert("remedy".into(), Value::String(remedy.into()));
        }
        match &self.detail {
            Some(Value::Object(fields)) => {
                for (k, v) in fields {
                    // The code and message stay the ones above.
                    if k != "code" && k != "message" {
                        error.insert(k.clone(), v.clone());
                    }
                }
            }
            Some(other) => {
                error.insert("detail".into(), other.clone());
            }
            None => {}
        }
        json!({ "error": error })
    }
}

/// A host's refusal ([`Authorize`](super::Authorize)): its status (401 or 403), its code
/// and its sentence, in the body every refusal has.
impl From<super::Refusal> for ApiError {
    fn from(refusal: super::Refusal) -> ApiError {
        ApiError::new(
            refusal.status(),
            refusal.code().to_owned(),
            refusal.message().to_owned(),
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

/// The engine's refusals as the API answers them: the HTTP status of each is decided
/// here and nowhere else; the code, sentence and remedy are the refusal's own; the body
/// adds what the refusal carries (each platform's errors, what a confirmation would
/// affect, the reason and its remedy).
fn refusal(
    status: StatusCode,
    code: &'static str,
    error: &dyn std::error::Error,
    remedy: &'static str,
    reason: Option<Reason>,
) -> ApiError {
    if status.is_server_error() {
        tracing::error!(code, error = %error, "the engine failed a request");
    }
    let mut api = ApiError::new(status, code, error.to_string());
    api.remedy = Some(remedy);
    match reason {
        Some(reason) => api.with_detail(json!({ "reason": ReasonView::from(&reason) })),
        None => api,
    }
}

/// The status of what the engine, the store and the platforms answer.
fn engine_status(e: &EngineRefusal) -> StatusCode {
    match e {
        EngineRefusal::NotConnected(_)
        | EngineRefusal::WrongAccount { .. }
        | EngineRefusal::ConnectionNotActive { .. }
        | EngineRefusal::InvalidTransition { .. } => StatusCode::CONFLICT,
        EngineRefusal::PostNotFound(_) => StatusCode::NOT_FOUND,
        EngineRefusal::Platform(p) => platform_status(p),
        // A record that cannot be read stays so; a store that refuses the write is the
        // engine being unavailable (see `/readyz`): the request changed nothing, and may be
        // sent again once it is ready (with the same `Idempotency-Key` where it has one).
        EngineRefusal::Storage(e) if crate::studio::error::is_record_problem(e) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        EngineRefusal::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        EngineRefusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        // Another node of the deployment is the one to ask (RFC 9110 §15.5.20).
        EngineRefusal::NotOwnerHere { .. } => StatusCode::MISDIRECTED_REQUEST,
        // Only at start: nothing serves requests with a store that did not open.
        EngineRefusal::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The status of a platform's refusal: the author's doing (400), an unmet requirement
/// (422), the service's app settings (502), or the platform's state (429, 503).
fn platform_status(e: &ConnectError) -> StatusCode {
    match e {
        ConnectError::AccessDenied { .. }
        | ConnectError::CodeRejected { .. }
        | ConnectError::InvalidRedirectUri(_) => StatusCode::BAD_REQUEST,
        ConnectError::RequirementUnmet(_) | ConnectError::AuthorizationRefused(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        ConnectError::AppCredentialsRejected { .. } => StatusCode::BAD_GATEWAY,
        ConnectError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ConnectError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl From<EngineRefusal> for ApiError {
    fn from(e: EngineRefusal) -> ApiError {
        let api = refusal(engine_status(&e), e.code(), &e, e.remedy(), e.reason());
        match e {
            EngineRefusal::NotOwnerHere { owner } => api.with_detail(json!({ "owner": owner })),
            _ => api,
        }
    }
}

impl From<AddressError> for ApiError {
    fn from(e: AddressError) -> ApiError {
        let status = match e {
            AddressError::InvalidPenName(_) => StatusCode::BAD_REQUEST,
            AddressError::UnknownPlatform(_) | AddressError::UnknownPost => StatusCode::NOT_FOUND,
        };
        refusal(status, e.code(), &e, e.remedy(), None)
    }
}

impl From<ConnectingError> for ApiError {
    fn from(e: ConnectingError) -> ApiError {
        let status = match e {
            ConnectingError::Engine(engine) => return engine.into(),
            ConnectingError::InvalidState
            | ConnectingError::StateExpired
            | ConnectingError::StateUsed
            | ConnectingError::MissingParameter(_) => StatusCode::BAD_REQUEST,
            ConnectingError::PlatformNotConfigured(_) | ConnectingError::WrongConnectFlow(_) => {
                StatusCode::CONFLICT
            }
        };
        refusal(status, e.code(), &e, e.remedy(), e.reason())
    }
}

impl From<ConnectionError> for ApiError {
    fn from(e: ConnectionError) -> ApiError {
        let status = match e {
            ConnectionError::Engine(engine) => return engine.into(),
            ConnectionError::TestPost(post) => return post.into(),
            ConnectionError::ConfirmationRequired(ref preview) => {
                return confirmation(&e, e.remedy(), json!(preview))
            }
            ConnectionError::TestPostFailed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ConnectionError::TestPostMissing => StatusCode::NOT_FOUND,
        };
        refusal(status, e.code(), &e, e.remedy(), e.reason())
    }
}

impl From<TargetsError> for ApiError {
    fn from(e: TargetsError) -> ApiError {
        let status = match e {
            TargetsError::Engine(engine) => return engine.into(),
            TargetsError::NoneChosen
            | TargetsError::UnknownTarget(_)
            | TargetsError::DuplicateTarget(_) => StatusCode::BAD_REQUEST,
            TargetsError::NothingToChoose(_) => StatusCode::CONFLICT,
        };
        refusal(status, e.code(), &e, e.remedy(), e.reason())
    }
}

impl From<PostError> for ApiError {
    fn from(e: PostError) -> ApiError {
        let status = match e {
            PostError::Engine(engine) => return engine.into(),
            PostError::ValidationFailed(ref platforms) => {
                let detail = json!({ "platforms": platforms });
                return refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    e.code(),
                    &e,
                    e.remedy(),
                    None,
                )
                .with_detail(detail);
            }
            PostError::InvalidTime { .. } => StatusCode::BAD_REQUEST,
            PostError::IdempotencyKeyReused => StatusCode::CONFLICT,
        };
        refusal(status, e.code(), &e, e.remedy(), e.reason())
    }
}

impl From<EraseError> for ApiError {
    fn from(e: EraseError) -> ApiError {
        match e {
            EraseError::Engine(engine) => engine.into(),
            EraseError::ConfirmationRequired(ref preview) => {
                confirmation(&e, e.remedy(), json!(preview))
            }
        }
    }
}

/// 409 `confirmation_required`, with what the action would affect merged into the body.
fn confirmation(error: &dyn std::error::Error, remedy: &'static str, preview: Value) -> ApiError {
    refusal(
        StatusCode::CONFLICT,
        "confirmation_required",
        error,
        remedy,
        None,
    )
    .with_detail(preview)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body().to_string();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// The code a bare status is answered with when nothing more specific is known.
fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "validation_failed",
        429 => "rate_limited",
        503 => "unavailable",
        s if s >= 500 => "internal_error",
        _ => "error",
    }
}

/// A JSON body rejected by axum: 400 for bad syntax, 415 for a missing or wrong content
/// type, 413 for a body over the limit, 422 for JSON of the wrong shape.
pub(crate) fn from_json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "validation_failed",
        _ if status.is_client_error() => "invalid_json",
        _ => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_body",
                rejection.body_text(),
            )
        }
    };
    let status = if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(status, code, rejection.body_text())
}

/// A body that could not be read: too large (413), or cut off (400).
pub(crate) fn from_bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            rejection.body_text(),
        )
    } else {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            rejection.body_text(),
        )
    }
}

/// A path whose segments cannot be read (percent-encoding that is not UTF-8).
pub(crate) fn from_path_rejection(rejection: PathRejection) -> ApiError {
    if rejection.status().is_server_error() {
        // A route whose template and extractor disagree: a bug here, not bad input.
        tracing::error!(error = %rejection.body_text(), "path extractor does not fit its route");
        return ApiError::internal("the route's parameters could not be read");
    }
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_path",
        rejection.body_text(),
    )
}

pub(crate) fn from_query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_query",
        rejection.body_text(),
    )
}

/// The fallback for paths no route matches.
pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", uri.path()),
    )
}

/// The fallback for a known path asked with a method it does not have (axum adds the
/// `Allow` header).
pub(crate) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not answer {method}", uri.path()),
    )
}

/// What a handler that panicked answers. The panic's text stays in the log.
pub(crate) fn panicked(panic: Box<dyn Any + Send + 'static>) -> Response {
    let text = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(not a string)");
    tracing::error!(panic = text, "a request handler panicked");
    ApiError::internal("the request failed inside the service; the log has the details")
        .into_response()
}

/// Rewrites any error response that is not JSON (tower-http's 413, for one) into the
/// API's error body, keeping its status and headers such as `Allow`.
pub(crate) fn ensure_json_error(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    if response.extensions().get::<NotJsonOnPurpose>().is_some() {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, _body) = response.into_parts();
    let message = match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    };
    let error = ApiError::new(status, code_for_status(status), message);
    let fresh = error.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::TRANSFER_ENCODING);
    let (fresh_parts, body) = fresh.into_parts();
    for (name, value) in fresh_parts.headers.iter() {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use social_studio_storage::{PostId, ReasonCode, StateLabel};

    use super::*;

    fn answer(e: impl Into<ApiError>) -> (u16, String, Value) {
        let e = e.into();
        (e.status().as_u16(), e.code().to_string(), e.body())
    }

    #[test]
    fn each_refusal_has_its_status_and_code() {
        let reason = Reason::new(ReasonCode::RevokedByUser);
        let cases: Vec<(ApiError, u16, &str)> = vec![
            (
                AddressError::UnknownPlatform("mastodon".into()).into(),
                404,
                "unknown_platform",
            ),
            (AddressError::UnknownPost.into(), 404, "not_found"),
            (ConnectingError::InvalidState.into(), 400, "invalid_state"),
            (ConnectingError::StateExpired.into(), 400, "state_expired"),
            (
                ConnectingError::MissingParameter("code").into(),
                400,
                "missing_parameter",
            ),
            (
                ConnectingError::PlatformNotConfigured(social_studio_storage::Platform::X).into(),
                409,
                "platform_not_configured",
            ),
            (
                ConnectingError::from(ConnectError::AccessDenied {
                    platform_message: None,
                })
                .into(),
                400,
                "access_denied",
            ),
            (
                ConnectingError::from(ConnectError::AppCredentialsRejected {
                    platform_message: None,
                })
                .into(),
                502,
                "app_credentials_rejected",
            ),
            (
                ConnectingError::from(ConnectError::RequirementUnmet(reason.clone())).into(),
                422,
                "revoked_by_user",
            ),
            (
                ConnectingError::from(ConnectError::RateLimited {
                    retry_after: Duration::from_secs(1),
                })
                .into(),
                429,
                "rate_limited",
            ),
            (
                ConnectionError::from(EngineRefusal::ConnectionNotActive {
                    status: StateLabel::Expired,
                    reason: reason.clone(),
                })
                .into(),
                409,
                "revoked_by_user",
            ),
            (
                ConnectionError::TestPostFailed {
                    reason: reason.clone(),
                }
                .into(),
                422,
                "revoked_by_user",
            ),
            (
                PostError::from(EngineRefusal::PostNotFound(PostId::new())).into(),
                404,
                "not_found",
            ),
            (
                PostError::IdempotencyKeyReused.into(),
                409,
                "idempotency_key_reused",
            ),
            (
                PostError::ValidationFailed(vec![]).into(),
                422,
                "validation_failed",
            ),
            (
                EngineRefusal::Unavailable("stopped".into()).into(),
                503,
                "engine_unavailable",
            ),
            (
                PostError::from(EngineRefusal::NotOwnerHere {
                    owner: Some("node-2".into()),
                })
                .into(),
                421,
                "not_owner_here",
            ),
            (
                EngineRefusal::Store(crate::studio::StoreRefusal::MasterKeyRequired).into(),
                503,
                "master_key_required",
            ),
        ];
        for (error, status, code) in cases {
            let (got_status, got_code, body) = answer(error);
            assert_eq!((got_status, got_code.as_str()), (status, code), "{body}");
            assert!(body["error"]["remedy"].is_string(), "{body}");
        }
    }

    #[test]
    fn a_command_for_another_nodes_connection_names_the_node() {
        let (status, _, body) = answer(PostError::from(EngineRefusal::NotOwnerHere {
            owner: Some("node-2".into()),
        }));
        assert_eq!(status, 421);
        assert_eq!(body["error"]["owner"], "node-2", "{body}");
        let (_, _, body) = answer(PostError::from(EngineRefusal::NotOwnerHere { owner: None }));
        assert!(body["error"]["owner"].is_null(), "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no node runs this connection")));
    }

    #[test]
    fn a_refusal_with_a_reason_carries_it_and_its_remedy() {
        let reason = Reason::new(ReasonCode::RevokedByUser);
        let (_, _, body) = answer(ConnectionError::from(EngineRefusal::ConnectionNotActive {
            status: StateLabel::Expired,
            reason: reason.clone(),
        }));
        assert_eq!(body["error"]["reason"]["code"], "revoked_by_user");
        assert_eq!(body["error"]["remedy"], reason.remedy());
        assert_eq!(body["error"]["reason"]["remedy"], reason.remedy());
    }

    #[test]
    fn a_dry_run_says_what_it_would_affect() {
        let (status, code, body) = answer(ConnectionError::ConfirmationRequired(
            crate::studio::DisconnectPreview {
                platform: social_studio_storage::Platform::X,
                scheduled_posts_affected: 3,
            },
        ));
        assert_eq!((status, code.as_str()), (409, "confirmation_required"));
        assert_eq!(body["error"]["platform"], "x");
        assert_eq!(body["error"]["scheduled_posts_affected"], 3);
    }
}
