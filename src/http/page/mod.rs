//! The Social Accounts page: what an author uses to connect, check and disconnect their
//! accounts, for one pen name at a time, served by the engine's router (so it mounts with
//! it under a host's prefix) with no front-end build step — HTML rendered here (maud), one
//! small script and one stylesheet embedded in the binary (`assets/`), nothing from a CDN.
//!
//! | route | what |
//! |---|---|
//! | `GET /page-link/{token}` | a form that POSTs to the link, submitted at once by `open.js`: a link preview spends nothing |
//! | `POST /page-link/{token}` | opens a page link once: sets the page cookie, then 303 to the page |
//! | `GET /page/{pen}` | the page |
//! | `GET /page/{pen}/events` | the pen name's events as server-sent events: the page reloads its list on each |
//! | `POST /page/{pen}/connect/{platform}` | begins an OAuth connect (`{"replace"}`): `{"authorize_url"}`, the page's path bound to the `state` |
//! | `POST /page/{pen}/app-password` | Bluesky's handle and app password |
//! | `POST /page/{pen}/disconnect/{platform}` | `{"confirm": false}` answers how many scheduled posts would fail; `true` disconnects |
//! | `POST /page/{pen}/verify/{platform}` | Check connection, or `{"test_post": "…"}` to send one |
//! | `POST /page/{pen}/targets/{platform}` | `{"targets": [id…]}`: where posts that name no target go, as `PUT …/connections/{platform}/targets` |
//! | `GET /page-assets/page.js`, `open.js`, `page.css` | the embedded assets |
//!
//! These routes are not in the API's route table ([`super::routes`]): the admin token and
//! a host's [`Authorize`](super::Authorize) mean nothing to them. They admit a browser
//! holding the pen name's page cookie, and POSTs that also carry its CSRF token
//! (`access.rs`). Every page answer has a Content-Security-Policy without
//! `unsafe-inline` (`script-src 'self'`), `frame-ancestors` from `page_frame_ancestors`,
//! and `img-src 'self' data: https:` — the accounts' pictures are `https` URLs on each
//! platform's own image hosts, which differ by platform and shard and can appear with a
//! live update (a list fixed at the page's load would block a newly connected account's).
//! The host mints links with `POST /v1/pen-names/{pen}/page-links` (`links.rs`).

mod access;
pub(crate) mod links;
mod render;

use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use social_studio_storage::{ConnectionKey, PenName, Platform, Secret};

use super::error::{ApiError, NotJsonOnPurpose};
use super::extract::{ApiJson, OptionalJson};
use super::AppState;
use crate::studio::PageLinkError;

pub(crate) use access::SESSION;

const PAGE_JS: &str = include_str!("assets/page.js");
const OPEN_JS: &str = include_str!("assets/open.js");
const PAGE_CSS: &str = include_str!("assets/page.css");

/// The page's routes, beside the API's: those of a pen name behind [`guard`].
pub(crate) fn router(state: AppState) -> Router<AppState> {
    let of_a_pen_name = Router::new()
        .route("/page/{pen}", get(show))
        .route("/page/{pen}/events", get(events))
        .route("/page/{pen}/connect/{platform}", post(connect))
        .route("/page/{pen}/app-password", post(app_password))
        .route("/page/{pen}/disconnect/{platform}", post(disconnect))
        .route("/page/{pen}/verify/{platform}", post(verify))
        .route("/page/{pen}/targets/{platform}", post(choose_targets))
        .route_layer(axum::middleware::from_fn_with_state(state, guard));
    Router::new()
        .route("/page-link/{token}", get(offer_link).post(open_link))
        .route("/page-assets/page.js", get(script))
        .route("/page-assets/open.js", get(open_script))
        .route("/page-assets/page.css", get(stylesheet))
        .merge(of_a_pen_name)
}

/// The page cookie a request was admitted with (its value signs the CSRF token).
#[derive(Debug, Clone)]
struct PageSession(String);

/// Before any handler of a pen name's page, before its body is read: the page cookie of
/// the pen name in the path, and on a POST its CSRF token. The page itself, refused, is a
/// page saying what to do; the rest are the API's JSON refusals.
async fn guard(
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri = request.uri().clone();
    let raw = uri
        .path()
        .strip_prefix("/page/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    let pen = match pen_of(raw) {
        Ok(pen) => pen,
        Err(e) => return e.into_response(),
    };
    let headers = request.headers();
    let admitted = session(&state, headers, &pen).and_then(|cookie| {
        if request.method() != axum::http::Method::POST
            || access::csrf_ok(headers, state.studio.page_key(), &cookie)
        {
            Ok(cookie)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_token_invalid",
                "the request did not carry this page's CSRF token: reload the page",
            ))
        }
    });
    match admitted {
        Ok(cookie) => {
            request.extensions_mut().insert(PageSession(cookie));
            next.run(request).await
        }
        Err(e) if request.method() == axum::http::Method::GET && !uri.path().ends_with("/events") => html(
            &state,
            e.status(),
            render::refused(
                &prefix(&original, &uri),
                e.message(),
                "Page links open once and only for a short while. Open Social Accounts again from the application.",
            ),
        ),
        Err(e) => e.into_response(),
    }
}

/// The prefix the request came through: the host's nesting, `""` when there is none.
fn prefix(original: &Uri, uri: &Uri) -> String {
    original
        .path()
        .strip_suffix(uri.path())
        .unwrap_or_default()
        .to_owned()
}

/// The page's path for `pen`, as the browser reaches it.
fn page_path(original: &Uri, uri: &Uri, pen: &PenName) -> String {
    format!("{}/page/{}", prefix(original, uri), pen.as_str())
}

/// The headers every page answer has.
fn secure_headers(response: &mut Response, frame_ancestors: &[String]) {
    let ancestors = if frame_ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        frame_ancestors.join(" ")
    };
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self' data: https:; form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    );
    let headers = response.headers_mut();
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

fn html(state: &AppState, status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(&mut response, &state.studio.config().page_frame_ancestors);
    response.extensions_mut().insert(NotJsonOnPurpose);
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", PAGE_JS)
}

async fn open_script() -> Response {
    asset("text/javascript; charset=utf-8", OPEN_JS)
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", PAGE_CSS)
}

/// `GET /page-link/{token}`: the form that opens the link, spending nothing. Link
/// previews (chat apps, mail scanners) fetch a link before its person clicks it; were the
/// GET to spend the single-use link, the author would find it used. The browser's script
/// submits the form at once.
async fn offer_link(
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> Response {
    html(
        &state,
        StatusCode::OK,
        render::opening(&prefix(&original, &uri), original.path()),
    )
}

/// `POST /page-link/{token}`: spends the link, sets the cookie, sends the browser on to
/// the page. A link that does not open is a page saying so.
#[tracing::instrument(skip_all, fields(pen_name))]
async fn open_link(
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    Path(token): Path<String>,
) -> Response {
    match state.studio.open_page_link(&token).await {
        Ok(pen) => {
            tracing::Span::current().record("pen_name", pen.as_str());
            let expires = state.studio.now().saturating_add(SESSION);
            let value = access::cookie_value(state.studio.page_key(), &pen, expires);
            let path = page_path(&original, &uri, &pen);
            let secure = state.studio.config().public_url.starts_with("https://");
            let mut response = StatusCode::SEE_OTHER.into_response();
            let headers = response.headers_mut();
            if let (Ok(location), Ok(cookie)) = (
                HeaderValue::from_str(&path),
                HeaderValue::from_str(&access::set_cookie(&value, &path, secure)),
            ) {
                headers.insert(header::LOCATION, location);
                headers.insert(header::SET_COOKIE, cookie);
            }
            secure_headers(&mut response, &state.studio.config().page_frame_ancestors);
            response
        }
        Err(e) => {
            tracing::info!(code = e.code(), "a page link did not open");
            let status = match e {
                PageLinkError::Engine(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::GONE,
            };
            html(
                &state,
                status,
                render::refused(&prefix(&original, &uri), &e.to_string(), e.remedy()),
            )
        }
    }
}

/// The page cookie for `pen`, or the refusal: 401 `page_link_required`.
fn session(state: &AppState, headers: &HeaderMap, pen: &PenName) -> Result<String, ApiError> {
    access::session(headers, state.studio.page_key(), pen, state.studio.now()).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "page_link_required",
            "this page needs a page link for this pen name: open Social Accounts again from the application",
        )
    })
}

fn pen_of(raw: &str) -> Result<PenName, ApiError> {
    PenName::parse(raw).map_err(|e| ApiError::from(crate::studio::AddressError::InvalidPenName(e)))
}

fn platform_of(raw: &str) -> Result<Platform, ApiError> {
    Platform::from_id(raw)
        .ok_or_else(|| ApiError::from(crate::studio::AddressError::UnknownPlatform(raw.to_owned())))
}

/// What a same-tab connect came back with: `?connect={platform}&outcome={ok|code}`.
#[derive(Debug, Default, Deserialize)]
struct ShowQuery {
    connect: Option<String>,
    outcome: Option<String>,
}

/// `GET /page/{pen}`.
#[tracing::instrument(level = "debug", skip_all)]
async fn show(
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    axum::Extension(cookie): axum::Extension<PageSession>,
    Path(raw): Path<String>,
    Query(query): Query<ShowQuery>,
) -> Response {
    let pen = match pen_of(&raw) {
        Ok(pen) => pen,
        Err(e) => return e.into_response(),
    };
    let prefix = prefix(&original, &uri);
    let connections = match state.studio.connections(&pen).await {
        Ok(connections) => connections,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let returned = query
        .connect
        .as_deref()
        .and_then(Platform::from_id)
        .map(|p| (p, query.outcome.unwrap_or_default()));
    let csrf = access::csrf_token(state.studio.page_key(), &cookie.0);
    let page = render::page(&render::PageInput {
        prefix: &prefix,
        pen: &pen,
        csrf: &csrf,
        connections: &connections,
        now: state.studio.now(),
        returned,
    });
    html(&state, StatusCode::OK, page)
}

/// `GET /page/{pen}/events`: the pen name's own events only.
async fn events(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let pen = pen_of(&raw)?;
    Ok(super::events::open(&state, None, Some(pen)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectBody {
    #[serde(default)]
    replace: bool,
}

/// `POST /page/{pen}/connect/{platform}`: `{"authorize_url"}` for the popup (or the
/// same tab), the page's own path bound to the `state`.
#[tracing::instrument(skip_all, fields(pen_name = %raw.0, platform = %raw.1))]
async fn connect(
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    Path(raw): Path<(String, String)>,
    OptionalJson(body): OptionalJson<ConnectBody>,
) -> Result<Response, ApiError> {
    let pen = pen_of(&raw.0)?;
    let platform = platform_of(&raw.1)?;
    let return_to = page_path(&original, &uri, &pen);
    let start = state
        .studio
        .begin_connect_returning(
            &ConnectionKey::new(pen, platform),
            body.replace,
            Some(return_to),
        )
        .await?;
    Ok(Json(json!({ "authorize_url": start.authorize_url })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppPasswordBody {
    identifier: String,
    app_password: Secret,
    #[serde(default)]
    replace: bool,
}

/// `POST /page/{pen}/app-password`: Bluesky's handle and app password.
#[tracing::instrument(skip_all, fields(pen_name = %raw))]
async fn app_password(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<AppPasswordBody>,
) -> Result<Response, ApiError> {
    let pen = pen_of(&raw)?;
    let entry = state
        .studio
        .connect_with_app_password(
            &pen,
            Platform::Bluesky,
            body.identifier.trim(),
            body.app_password,
            body.replace,
        )
        .await?;
    Ok(Json(json!({ "connection": entry })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DisconnectBody {
    #[serde(default)]
    confirm: bool,
}

/// `POST /page/{pen}/disconnect/{platform}`.
#[tracing::instrument(skip_all, fields(pen_name = %raw.0, platform = %raw.1))]
async fn disconnect(
    State(state): State<AppState>,
    Path(raw): Path<(String, String)>,
    OptionalJson(body): OptionalJson<DisconnectBody>,
) -> Result<Response, ApiError> {
    let pen = pen_of(&raw.0)?;
    let platform = platform_of(&raw.1)?;
    let view = state
        .studio
        .disconnect(&ConnectionKey::new(pen, platform), body.confirm)
        .await?;
    Ok(Json(json!({ "disconnected": view })).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    #[serde(default)]
    test_post: Option<String>,
}

/// `POST /page/{pen}/verify/{platform}`: Check connection, or Send a test post.
#[tracing::instrument(skip_all, fields(pen_name = %raw.0, platform = %raw.1))]
async fn verify(
    State(state): State<AppState>,
    Path(raw): Path<(String, String)>,
    OptionalJson(body): OptionalJson<VerifyBody>,
) -> Result<Response, ApiError> {
    let pen = pen_of(&raw.0)?;
    let platform = platform_of(&raw.1)?;
    let view = state
        .studio
        .verify(&ConnectionKey::new(pen, platform), body.test_post)
        .await?;
    Ok(Json(json!({ "verified": view })).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsBody {
    targets: Vec<String>,
}

/// `POST /page/{pen}/targets/{platform}`: the author's choice of targets, through the same
/// use case as the API's `PUT`; its refusals are the API's.
#[tracing::instrument(skip_all, fields(pen_name = %raw.0, platform = %raw.1))]
async fn choose_targets(
    State(state): State<AppState>,
    Path(raw): Path<(String, String)>,
    ApiJson(body): ApiJson<TargetsBody>,
) -> Result<Response, ApiError> {
    let pen = pen_of(&raw.0)?;
    let platform = platform_of(&raw.1)?;
    let entry = state
        .studio
        .choose_targets(&ConnectionKey::new(pen, platform), body.targets)
        .await?;
    Ok(Json(json!({ "connection": entry })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csp(frame_ancestors: &[String]) -> String {
        let mut response = ().into_response();
        secure_headers(&mut response, frame_ancestors);
        response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn the_policy_allows_no_inline_code_and_frames_only_where_configured() {
        let closed = csp(&[]);
        assert!(!closed.contains("unsafe-inline"), "{closed}");
        assert!(closed.contains("script-src 'self'"), "{closed}");
        assert!(closed.contains("frame-ancestors 'none'"), "{closed}");
        // Pictures from the platforms' image hosts, over https only; nothing else opens.
        assert!(closed.contains("img-src 'self' data: https:;"), "{closed}");
        assert!(closed.contains("default-src 'none'"), "{closed}");
        let framed = csp(&[
            "https://app.example.com".to_owned(),
            "https://cms.example.com:8443".to_owned(),
        ]);
        assert!(
            framed
                .ends_with("frame-ancestors https://app.example.com https://cms.example.com:8443"),
            "{framed}"
        );
    }

    #[test]
    fn the_prefix_is_what_the_host_nested_the_router_under() {
        let inner: Uri = "/page/jane".parse().unwrap();
        assert_eq!(
            prefix(&"/social/page/jane".parse().unwrap(), &inner),
            "/social"
        );
        assert_eq!(prefix(&inner, &inner), "");
    }
}
