//! `GET /openapi.json`: the OpenAPI document, generated from the `#[utoipa::path]`
//! annotations on the handlers and the `ToSchema` types beside them. Protected like every
//! admin route: it describes the admin API.
//!
//! Imports go one way: this module reads the handlers' annotations and the schemas beside
//! them (the error body in `error.rs`, the engine's request and answer types in
//! `studio`); no handler imports anything from here.

use axum::extract::State;
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorObject};
use super::AppState;
use crate::studio::{MediaInput, PlatformTarget, PostPatch, PostRequest};

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
        super::backup::backup,
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
        super::connections::choose_targets,
        super::page::links::mint,
        super::posts::schedule,
        super::posts::list,
        super::posts::show,
        super::posts::update,
        super::posts::cancel,
        super::posts::retry,
        super::posts::resolve,
    ),
    components(schemas(ErrorBody, ErrorObject, PostRequest, PostPatch, PlatformTarget, MediaInput)),
    modifiers(&AdminToken),
    tags(
        (name = "connections", description = "a pen name's social accounts"),
        (name = "posts", description = "scheduled content"),
        (name = "events", description = "the event stream"),
        (name = "page", description = "links to the Social Accounts page"),
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
