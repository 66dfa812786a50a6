//! A host application's own authorization in front of the nested router
//! (`RouterBuilder::authorize`, `authorize_or_admin_token`): the host's users reach their
//! own pen names without the admin token and are refused another's with the API's error
//! body; every protected route of the table stays refused without credentials in every
//! mode, and the open ones stay open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::request::Parts;
use axum::Router;
use reqwest::StatusCode;
use social_studio::http::{routes, Authorize, Refusal, RouteInfo, RouterBuilder, Verb};
use social_studio::studio::Studio;

use crate::helpers::{assert_error, read_json, spawn_app, TestApp};

/// The host's users: a bearer token each, and the pen names each owns.
struct HostUsers {
    owners: HashMap<&'static str, Vec<&'static str>>,
    /// What the host was asked, last: the route template, its method and the pen name.
    asked: Mutex<Vec<(&'static str, Verb, Option<String>)>>,
}

const JANE_TOKEN: &str = "host-session-of-jane";
const OTHER_TOKEN: &str = "host-session-of-other";

impl HostUsers {
    fn new() -> Arc<HostUsers> {
        Arc::new(HostUsers {
            owners: HashMap::from([(JANE_TOKEN, vec!["jane"]), (OTHER_TOKEN, vec!["other"])]),
            asked: Mutex::new(Vec::new()),
        })
    }
}

/// The policy given to the router; the test keeps the other `Arc` to read what was asked.
struct Policy(Arc<HostUsers>);

impl Authorize for Policy {
    async fn authorize(&self, request: &Parts, route: &RouteInfo) -> Result<(), Refusal> {
        self.0.asked.lock().unwrap().push((
            route.template,
            route.method,
            route.pen_name.as_ref().map(|p| p.as_str().to_owned()),
        ));
        let user = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .and_then(|token| self.0.owners.get(token))
            .ok_or_else(Refusal::unauthorized)?;
        match &route.pen_name {
            Some(pen) if user.contains(&pen.as_str()) => Ok(()),
            Some(_) => Err(Refusal::forbidden()
                .with_code("not_your_pen_name")
                .with_message("this pen name belongs to another user")),
            None => Err(Refusal::forbidden()),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    AdminToken,
    Host,
    HostOrAdminToken,
}

/// The engine's router in `mode`, nested under `/social` in a host server on a loopback
/// port; answers the base URL of the engine's API there.
async fn host(studio: &Studio, mode: Mode, users: &Arc<HostUsers>) -> String {
    let builder = RouterBuilder::new(studio.clone());
    let engine = match mode {
        Mode::AdminToken => builder,
        Mode::Host => builder.authorize(Policy(users.clone())),
        Mode::HostOrAdminToken => builder.authorize_or_admin_token(Policy(users.clone())),
    }
    .build();
    let app = Router::new().nest("/social", engine);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/social", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

/// `GET {base}{path}` with `token` as a bearer token (none when `None`).
async fn get(
    app: &TestApp,
    base: &str,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, serde_json::Value) {
    let mut request = app.client.get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    read_json(request.send().await.unwrap()).await
}

#[tokio::test]
async fn host_only_admits_the_host_s_user_to_their_pen_name_and_no_admin_token() {
    let app = spawn_app().await;
    let users = HostUsers::new();
    let base = host(&app.studio, Mode::Host, &users).await;

    let (status, body) = get(
        &app,
        &base,
        "/v1/pen-names/jane/connections",
        Some(JANE_TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["connections"].is_array(), "{body}");
    assert_eq!(
        users.asked.lock().unwrap().last().cloned(),
        Some((
            "/v1/pen-names/{pen}/connections",
            Verb::Get,
            Some("jane".to_owned())
        ))
    );

    // Another user's pen name: 403 with the host's code, in the API's body.
    let (status, body) = get(
        &app,
        &base,
        "/v1/pen-names/other/connections",
        Some(JANE_TOKEN),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_your_pen_name");
    assert_eq!(
        body["error"]["message"],
        "this pen name belongs to another user"
    );
    // A route across pen names: the host's plain 403.
    let (status, body) = get(&app, &base, "/v1/attention", Some(JANE_TOKEN)).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "forbidden");

    // The engine's admin token means nothing here: the host does not know it.
    for path in [
        "/v1/pen-names/jane/connections",
        "/v1/attention",
        "/metrics",
    ] {
        let (status, body) = get(&app, &base, path, Some(&app.admin_token)).await;
        assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    }

    // A pen name that is not one is refused as the route would, before the host is asked.
    let before = users.asked.lock().unwrap().len();
    let (status, body) = get(&app, &base, "/v1/pen-names/.hidden/posts", Some(JANE_TOKEN)).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid_pen_name");
    assert_eq!(users.asked.lock().unwrap().len(), before);
}

#[tokio::test]
async fn host_or_admin_token_admits_both() {
    let app = spawn_app().await;
    let users = HostUsers::new();
    let base = host(&app.studio, Mode::HostOrAdminToken, &users).await;

    let (status, body) = get(
        &app,
        &base,
        "/v1/pen-names/jane/connections",
        Some(JANE_TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = get(
        &app,
        &base,
        "/v1/pen-names/other/connections",
        Some(JANE_TOKEN),
    )
    .await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "not_your_pen_name");

    // The admin token admits everywhere, and the host is not asked about it.
    let before = users.asked.lock().unwrap().len();
    for path in [
        "/v1/pen-names/jane/connections",
        "/v1/pen-names/other/connections",
        "/v1/attention",
    ] {
        let (status, body) = get(&app, &base, path, Some(&app.admin_token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    assert_eq!(users.asked.lock().unwrap().len(), before);
}

#[tokio::test]
async fn every_protected_route_refuses_a_request_without_credentials_in_every_mode() {
    let app = spawn_app().await;
    let users = HostUsers::new();
    let protected: Vec<_> = routes().iter().filter(|r| r.protected).collect();
    assert!(protected.len() >= 20, "the table lists the API");
    for mode in [Mode::AdminToken, Mode::Host, Mode::HostOrAdminToken] {
        let base = host(&app.studio, mode, &users).await;
        for route in &protected {
            let path = route
                .path
                .replace("{pen}", "jane")
                .replace("{platform}", "x")
                .replace("{id}", "0190a7a0-0000-7000-8000-000000000000");
            for header in [None, Some("Bearer not-a-session-of-anyone")] {
                let mut request = app
                    .client
                    .request(route.method.as_method(), format!("{base}{path}"));
                if let Some(h) = header {
                    request = request.header(reqwest::header::AUTHORIZATION, h);
                }
                let response = request.send().await.unwrap();
                let what = format!(
                    "{mode:?}: {} {} ({header:?})",
                    route.method.as_method(),
                    route.path
                );
                assert_eq!(
                    response
                        .headers()
                        .get(reqwest::header::WWW_AUTHENTICATE)
                        .map(|v| v.to_str().unwrap()),
                    Some("Bearer"),
                    "{what}"
                );
                let (status, body) = read_json(response).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
                assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
            }
        }
        // The open routes stay open.
        let (status, _) = get(&app, &base, "/healthz", None).await;
        assert_eq!(status, StatusCode::OK, "{mode:?}");
        let (status, _) = get(&app, &base, "/readyz", None).await;
        assert_eq!(status, StatusCode::OK, "{mode:?}");
        let callback = app
            .client
            .get(format!("{base}/v1/oauth/callback"))
            .send()
            .await
            .unwrap();
        assert_eq!(callback.status(), StatusCode::BAD_REQUEST, "{mode:?}");
    }
}
