//! The admin token: every protected route of the exported table refuses a request
//! without it or with a wrong one, so a route added later cannot escape the check.

use reqwest::StatusCode;
use social_studio::http::routes;

use crate::helpers::{assert_error, read_json, spawn_app};

/// The table's path with every parameter filled with a well-formed value.
fn concrete(template: &str) -> String {
    template
        .replace("{pen}", "jane")
        .replace("{platform}", "x")
        .replace("{id}", "0190a7a0-0000-7000-8000-000000000000")
}

#[tokio::test]
async fn only_health_readiness_and_the_callback_are_open() {
    let open: Vec<&str> = routes()
        .iter()
        .filter(|r| !r.protected)
        .map(|r| r.path)
        .collect();
    assert_eq!(open, ["/healthz", "/readyz", "/v1/oauth/callback"]);
}

#[tokio::test]
async fn every_protected_route_refuses_a_missing_or_wrong_token() {
    let app = spawn_app().await;
    let protected: Vec<_> = routes().iter().filter(|r| r.protected).collect();
    assert!(protected.len() >= 20, "the table lists the API");
    for route in protected {
        let url = app.url(&concrete(route.path));
        let method = route.method.as_method();
        let attempts = [
            ("no token", None),
            (
                "wrong token",
                Some("Bearer not-the-admin-token".to_string()),
            ),
            (
                "token prefix",
                Some(format!("Bearer {}", &app.admin_token[..8])),
            ),
            (
                "token plus more",
                Some(format!("Bearer {}x", app.admin_token)),
            ),
            ("other scheme", Some(format!("Basic {}", app.admin_token))),
        ];
        for (what, header) in attempts {
            let mut request = app.client.request(method.clone(), &url);
            if let Some(h) = header {
                request = request.header(reqwest::header::AUTHORIZATION, h);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer"),
                "{method} {} ({what})",
                route.path
            );
            let (status, body) = read_json(response).await;
            assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
        }
        // With the token the route is there for that method (neither 401 nor 405).
        let response = app
            .client
            .request(method.clone(), &url)
            .bearer_auth(&app.admin_token)
            .send()
            .await
            .unwrap();
        assert!(
            !matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::METHOD_NOT_ALLOWED
            ),
            "{method} {} answered {}",
            route.path,
            response.status()
        );
    }
}

#[tokio::test]
async fn open_routes_answer_without_a_token() {
    let app = spawn_app().await;
    let (status, body) = read_json(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    let (status, _) = read_json(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    let callback = app
        .client
        .get(app.url("/v1/oauth/callback"))
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), StatusCode::BAD_REQUEST);
}

/// The status of `GET /v1/pen-names/jane/connections` with `token`, and the error code of
/// a refusal.
async fn with_token(app: &crate::helpers::TestApp, token: &str) -> (StatusCode, String) {
    let response = app
        .client
        .get(app.url("/v1/pen-names/jane/connections"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, body) = read_json(response).await;
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

#[tokio::test]
async fn a_previous_admin_token_works_during_a_rotation_and_is_refused_after_it_without_a_restart()
{
    use social_studio_storage::Secret;
    let app = spawn_app().await;
    let old = app.admin_token.clone();
    let new = "the-new-admin-token-0123456789";
    assert_eq!(with_token(&app, &old).await.0, StatusCode::OK);
    assert_eq!(with_token(&app, new).await.0, StatusCode::UNAUTHORIZED);

    // The transition: the new token is current, the old one still accepted.
    let mut config = app.config.clone();
    config.admin_token = Some(Secret::new(new));
    config.previous_admin_tokens = vec![Secret::new(old.clone())];
    app.studio.reload_admin_tokens(&config).unwrap();
    assert_eq!(with_token(&app, new).await.0, StatusCode::OK);
    assert_eq!(with_token(&app, &old).await.0, StatusCode::OK);

    // Its end: the old token is refused like any wrong one; the server never stopped.
    config.previous_admin_tokens.clear();
    app.studio.reload_admin_tokens(&config).unwrap();
    assert_eq!(with_token(&app, new).await.0, StatusCode::OK);
    assert_eq!(
        with_token(&app, &old).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".to_owned())
    );
}

#[tokio::test]
async fn the_token_file_is_rotated_while_serving_and_a_broken_reload_keeps_the_tokens() {
    let app = spawn_app().await;
    // Tokens from the data directory's file rather than the configuration.
    let mut config = app.config.clone();
    config.admin_token = None;
    let file = app
        .data_dir
        .path()
        .join(social_studio::studio::ADMIN_TOKEN_FILE);
    std::fs::write(&file, "the-first-file-token-0123456789\n").unwrap();
    app.studio.reload_admin_tokens(&config).unwrap();
    let first = "the-first-file-token-0123456789";
    assert_eq!(with_token(&app, first).await.0, StatusCode::OK);
    assert_eq!(
        with_token(&app, &app.admin_token).await.0,
        StatusCode::UNAUTHORIZED
    );

    let rotated = social_studio::studio::rotate_token_file(app.data_dir.path(), false).unwrap();
    assert_eq!(rotated.previous, 1);
    let text = std::fs::read_to_string(&file).unwrap();
    let second = text.lines().next().unwrap().to_owned();
    assert_ne!(second, first);
    let tokens = app.studio.reload_admin_tokens(&config).unwrap();
    assert_eq!(tokens.current().expose(), second);
    assert_eq!(with_token(&app, &second).await.0, StatusCode::OK);
    assert_eq!(with_token(&app, first).await.0, StatusCode::OK);

    social_studio::studio::rotate_token_file(app.data_dir.path(), true).unwrap();
    app.studio.reload_admin_tokens(&config).unwrap();
    assert_eq!(with_token(&app, &second).await.0, StatusCode::OK);
    assert_eq!(
        with_token(&app, first).await,
        (StatusCode::UNAUTHORIZED, "unauthorized".to_owned())
    );

    // A reload that cannot read the file changes nothing.
    std::fs::remove_file(&file).unwrap();
    assert!(app.studio.reload_admin_tokens(&config).is_err());
    assert_eq!(with_token(&app, &second).await.0, StatusCode::OK);
}
