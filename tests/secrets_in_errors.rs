//! No secret reaches error text. Every adapter's token and API calls — connect (the
//! code exchange, or Bluesky's app password), refresh, check, publish and revoke — are
//! driven into a transport failure (a port that refuses, a server that accepts and
//! closes) and into answers that echo the planted secrets back (a 200, a 400, a 401 and
//! a 500 from a server that answers every path alike), and the `Display` and `Debug` of
//! every error must hold none of the planted strings.
//!
//! The echoing server quotes each secret where a platform or a proxy might: under the
//! credential's own key (JSON and form), in an echoed request URL, and — in the answers
//! that are not a 2xx — bare inside the platform's error message.
//!
//! The log lines written meanwhile (the engine's crates at TRACE, the HTTP and OAuth
//! libraries under them at DEBUG) must hold none of them either.

#[path = "support/logs.rs"]
mod logs;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Router;
use social_studio::platforms::bluesky::{BlueskySettings, SessionEndpoint};
use social_studio::platforms::{
    Adapter, BlueskyAdapter, FacebookAdapter, InstagramAdapter, LinkedinAdapter, PinterestAdapter,
    PlatformSettings, ThreadsAdapter, TiktokAdapter, XAdapter, YoutubeAdapter,
};
use social_studio_storage::{fixtures, Grant, Platform, Secret, Timestamp};

const CLIENT_SECRET: &str = "planted-client-secret-5b1f0a";
const ACCESS_TOKEN: &str = "planted-access-token-7c2e0b";
const REFRESH_TOKEN: &str = "planted-refresh-token-9d3a0c";
const CODE: &str = "planted-authorization-code-1e4b0d";
const VERIFIER: &str = "planted-pkce-verifier-planted-pkce-verifier-2f6c0e";
/// Bluesky's app-password shape, so that the adapter sends it.
const APP_PASSWORD: &str = "pl4n-t3dx-ap9w-q7zk";

const PLANTED: [&str; 6] = [
    CLIENT_SECRET,
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    CODE,
    VERIFIER,
    APP_PASSWORD,
];

/// Longest any one call may take: the servers answer at once, so only an adapter that
/// loops without end reaches it.
const CALL_BUDGET: Duration = Duration::from_secs(30);

/// An answer that echoes every planted secret under its own key (JSON, and in an echoed
/// URL's query) and, when `request` is given (answers that are not a 2xx), the request
/// itself — its query, `Authorization` header and body — bare inside the platform's
/// error message, as a platform saying "invalid code …" or a proxy's debug page does.
fn echo_body(request: Option<&str>) -> String {
    let said = match request {
        Some(request) => format!("invalid request: you sent {request}"),
        None => "something went wrong".to_owned(),
    };
    serde_json::json!({
        "error": {"message": said, "type": "OAuthException", "code": 1, "error_subcode": 2},
        "error_description": said,
        "message": said,
        "access_token": ACCESS_TOKEN,
        "refresh_token": REFRESH_TOKEN,
        "accessJwt": ACCESS_TOKEN,
        "refreshJwt": REFRESH_TOKEN,
        "client_secret": CLIENT_SECRET,
        "code": CODE,
        "code_verifier": VERIFIER,
        "password": APP_PASSWORD,
        "request": format!(
            "https://graph.example/oauth/access_token?client_secret={CLIENT_SECRET}&code={CODE}\
             &fb_exchange_token={ACCESS_TOKEN}&refresh_token={REFRESH_TOKEN}"
        ),
        "data": [{"id": "1", "access_token": ACCESS_TOKEN}],
    })
    .to_string()
}

/// Serves `routes` on a free loopback port.
async fn serve(routes: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, routes).await });
    addr
}

/// A server answering every path and method with `status` and the echoing body.
async fn echoing(status: StatusCode) -> String {
    let routes = Router::new().fallback(move |request: Request| async move {
        let echoed = if status.is_success() {
            None
        } else {
            let query = request.uri().query().unwrap_or("").to_owned();
            let authorization = request
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let body = axum::body::to_bytes(request.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            Some(format!(
                "{query} {authorization} {}",
                String::from_utf8_lossy(&body)
            ))
        };
        let body = echo_body(echoed.as_deref());
        (status, [("content-type", "application/json")], body).into_response()
    });
    format!("http://{}", serve(routes).await)
}

/// A port that accepts each connection and closes it unanswered.
async fn closing() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            drop(socket);
        }
    });
    format!("http://{addr}")
}

/// A port nothing listens on.
async fn refusing() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

fn settings(base: &str) -> PlatformSettings {
    PlatformSettings {
        client_id: "app-id".into(),
        client_secret: Secret::new(CLIENT_SECRET),
        auth_url: format!("{base}/oauth/authorize"),
        token_url: format!("{base}/oauth/token"),
        revoke_url: Some(format!("{base}/oauth/revoke")),
        api_base: base.to_owned(),
        // Every server here is on 127.0.0.1: media fetches must reach it to be tested.
        allow_private_media_urls: true,
    }
}

/// Every adapter, pointed at `base` for its token endpoint, API and (Bluesky) PDS.
fn adapters(base: &str) -> Vec<(Platform, Arc<dyn Adapter>)> {
    let s = settings(base);
    let short = Duration::from_millis(10);
    vec![
        (Platform::X, Arc::new(XAdapter::new(&s).unwrap()) as _),
        (
            Platform::Linkedin,
            Arc::new(LinkedinAdapter::new(&s).unwrap()) as _,
        ),
        (
            Platform::Pinterest,
            Arc::new(PinterestAdapter::new(&s).unwrap()) as _,
        ),
        (
            Platform::Tiktok,
            Arc::new(TiktokAdapter::new(&s).unwrap()) as _,
        ),
        (
            Platform::Facebook,
            Arc::new(FacebookAdapter::new(&s).unwrap()) as _,
        ),
        (
            Platform::Instagram,
            Arc::new(InstagramAdapter::new(&s).unwrap()) as _,
        ),
        (
            Platform::Threads,
            Arc::new(
                ThreadsAdapter::new(&s)
                    .unwrap()
                    .with_polling(short, short * 10),
            ) as _,
        ),
        (
            Platform::Youtube,
            Arc::new(YoutubeAdapter::new(&s).unwrap()) as _,
        ),
        (
            Platform::Bluesky,
            Arc::new(
                BlueskyAdapter::new(&BlueskySettings {
                    service: base.to_owned(),
                    plc_directory: base.to_owned(),
                    allow_private_media_urls: true,
                })
                .unwrap(),
            ) as _,
        ),
    ]
}

/// A grant holding the planted tokens (and, for Bluesky, a session endpoint at `base`).
fn grant(base: &str) -> Grant {
    let mut grant = fixtures::grant(ACCESS_TOKEN, Some(REFRESH_TOKEN));
    grant.endpoint = Some(
        serde_json::to_string(&SessionEndpoint {
            pds: base.to_owned(),
            did: "did:plc:planted".into(),
            handle: "author.example".into(),
        })
        .unwrap(),
    );
    grant
}

/// The text of `error` as logs, API answers and callback pages could show it.
fn texts(error: &(impl std::fmt::Display + std::fmt::Debug)) -> [String; 2] {
    [error.to_string(), format!("{error:?}")]
}

/// Drives every call of every adapter against `base` and returns each error's texts,
/// named by platform and call.
async fn errors_against(base: &str) -> Vec<(String, String)> {
    let now = Timestamp::now_system();
    let redirect = "http://127.0.0.1:1/v1/oauth/callback";
    let verifier = Secret::new(VERIFIER);
    let grant = grant(base);
    let mut found = Vec::new();
    for (platform, adapter) in adapters(base) {
        let mut post = fixtures::post(&fixtures::key("pen", platform), 1);
        for media in &mut post.content.media {
            media.url = format!("{base}/media/cover.jpg");
        }
        let mut note = |call: &str, text: [String; 2]| {
            for t in text {
                found.push((format!("{platform} {call}"), t));
            }
        };
        macro_rules! drive {
            ($call:literal, $future:expr) => {
                match tokio::time::timeout(CALL_BUDGET, $future).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(error)) => note($call, texts(&error)),
                    Err(_) => panic!("{platform} {} did not finish in {CALL_BUDGET:?}", $call),
                }
            };
        }
        drive!(
            "connect",
            adapter.connect(CODE, Some(&verifier), redirect, now)
        );
        drive!(
            "connect with an app password",
            adapter.connect_with_app_password("author.example", Secret::new(APP_PASSWORD), now)
        );
        drive!("refresh", adapter.refresh(&grant));
        drive!("check", adapter.check(&grant));
        drive!("publish", adapter.publish(&grant, &post));
        drive!("revoke", adapter.revoke(&grant));
    }
    found
}

/// Drives every call against `base` while capturing the logs; neither the errors nor the
/// log lines may hold a planted secret.
async fn assert_none_leak_against(base: &str) {
    let (logs, guard) = logs::capture();
    let errors = errors_against(base).await;
    drop(guard);
    assert_no_secret(base, &errors);
    let text = logs.text();
    assert!(!text.is_empty(), "nothing was logged against {base}");
    let leaks: Vec<&str> = text
        .lines()
        .filter(|line| PLANTED.iter().any(|secret| line.contains(secret)))
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log against {base}:\n{}",
        leaks.join("\n")
    );
}

fn assert_no_secret(base: &str, errors: &[(String, String)]) {
    assert!(!errors.is_empty(), "nothing failed against {base}");
    let leaks: Vec<String> = errors
        .iter()
        .filter(|(_, text)| PLANTED.iter().any(|secret| text.contains(secret)))
        .map(|(call, text)| format!("{call}: {text}"))
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in error text against {base}:\n{}",
        leaks.join("\n")
    );
}

#[tokio::test]
async fn a_refused_connection_names_no_secret() {
    assert_none_leak_against(&refusing().await).await;
}

#[tokio::test]
async fn a_connection_closed_unanswered_names_no_secret() {
    assert_none_leak_against(&closing().await).await;
}

#[tokio::test]
async fn answers_that_echo_the_secrets_put_none_into_errors() {
    for status in [
        StatusCode::OK,
        StatusCode::BAD_REQUEST,
        StatusCode::UNAUTHORIZED,
        StatusCode::INTERNAL_SERVER_ERROR,
    ] {
        assert_none_leak_against(&echoing(status).await).await;
    }
}
