//! `GET /openapi.json`: the OpenAPI document, generated from the `#[utoipa::path]`
//! annotations on the handlers and the `ToSchema` types beside them. Protected like every
//! admin route: it describes the admin API.
//!
//! The engine's views (`studio::views`) do not derive `ToSchema`, so their fields appear
//! as `object` (`#[schema(value_type = Object)]`); the request bodies of the engine
//! (`NewPost`, `PostPatch`) are mirrored here as schema-only types.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::AppState;

/// Every error: `{"error": {"code", "message", ...detail}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorObject,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorObject {
    /// Stable machine-readable code (`unauthorized`, `invalid_pen_name`,
    /// `validation_failed`, `confirmation_required`, …).
    pub(crate) code: String,
    /// A sentence for a person.
    pub(crate) message: String,
    /// Per-platform refusals of a `validation_failed` schedule.
    #[schema(value_type = Option<Vec<Object>>)]
    pub(crate) platforms: Option<Vec<serde_json::Value>>,
    /// How many scheduled posts a `confirmation_required` action would affect.
    pub(crate) scheduled_posts_affected: Option<usize>,
    /// The reason and remedy of a connection problem.
    #[schema(value_type = Option<Object>)]
    pub(crate) reason: Option<serde_json::Value>,
}

/// One platform (and target) of a multi-platform post.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlatformTargetSchema {
    pub(crate) platform: String,
    pub(crate) target: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct MediaSchema {
    /// A public http(s) URL.
    pub(crate) url: String,
    /// `image` or `video`.
    pub(crate) kind: String,
    pub(crate) alt: Option<String>,
}

/// A request to schedule content (mirrors `studio::NewPost`): `platform` (with
/// `target`), or `platforms`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NewPostSchema {
    pub(crate) platform: Option<String>,
    pub(crate) platforms: Option<Vec<PlatformTargetSchema>>,
    pub(crate) target: Option<String>,
    /// `feed|story|reel|pin|video|community|thread`; the platform's main kind if absent.
    pub(crate) kind: Option<String>,
    #[serde(default)]
    pub(crate) text: String,
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) links: Vec<String>,
    #[serde(default)]
    pub(crate) media: Vec<MediaSchema>,
    /// RFC 3339.
    pub(crate) scheduled_at: String,
}

/// A change to a post that has not been published (mirrors `studio::PostPatch`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PostPatchSchema {
    pub(crate) text: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) links: Option<Vec<String>>,
    pub(crate) media: Option<Vec<MediaSchema>>,
    /// RFC 3339.
    pub(crate) scheduled_at: Option<String>,
}

/// Declares the `admin_token` bearer scheme the protected operations name.
struct AdminToken;

impl Modify for AdminToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi
            .components
            .get_or_insert_with(utoipa::openapi::Components::new);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Social Studio engine",
        description = "Status and admin API of the Social Studio engine: connections, the OAuth connect flow, scheduled posts, events."
    ),
    paths(
        super::admin::healthz,
        super::admin::readyz,
        super::oauth::callback,
        super::metrics::render,
        document,
        super::admin::attention_all,
        super::admin::supervisor,
        super::events::all,
        super::admin::erase_pen_name,
        super::admin::attention_of_pen,
        super::events::of_pen,
        super::connections::list,
        super::connections::show,
        super::connections::connect_with_app_password,
        super::connections::disconnect,
        super::connections::authorize,
        super::connections::verify,
        super::posts::schedule,
        super::posts::list,
        super::posts::show,
        super::posts::update,
        super::posts::cancel,
        super::posts::retry,
        super::posts::resolve,
    ),
    components(schemas(ErrorBody, ErrorObject, NewPostSchema, PostPatchSchema)),
    modifiers(&AdminToken),
    tags(
        (name = "connections", description = "a pen name's social accounts"),
        (name = "posts", description = "scheduled content"),
        (name = "events", description = "the event stream"),
        (name = "status", description = "health, attention, supervisor, metrics"),
    )
)]
pub struct ApiDoc;

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "status",
    responses(
        (status = 200, description = "this document"),
        (status = 401, description = "no or wrong admin token", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
pub(crate) async fn document(State(_state): State<AppState>) -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
