//! Property test over HTTP inputs, straight into `router(studio)` with `oneshot` (no
//! socket): arbitrary path segments, query strings, JSON and non-JSON bodies, methods,
//! with and without the token. Whatever comes in, nothing panics, nothing answers 5xx,
//! and every refusal is a JSON error with a code.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use serde_json::{Map, Value};
use social_studio::http::{router, routes, Verb};
use tower::ServiceExt;

use crate::helpers::{spawn_app, ADMIN_TOKEN, JANE};

#[derive(Debug, Clone)]
enum Token {
    Missing,
    Right,
    Wrong(String),
}

#[derive(Debug, Clone)]
enum BodyInput {
    Empty,
    Json(Value),
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Input {
    route: usize,
    /// Another method than the table's, sometimes.
    method: Option<Method>,
    segments: Vec<String>,
    query: Option<String>,
    body: BodyInput,
    content_type: Option<String>,
    token: Token,
}

/// Every byte outside the unreserved set as `%XX`, except `keep`.
fn percent_encode(raw: &str, keep: &[u8]) -> String {
    let mut out = String::new();
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("jane".to_string()),
        3 => Just("x".to_string()),
        1 => Just("bluesky".to_string()),
        1 => Just("youtube".to_string()),
        1 => Just("0190a7a0-0000-7000-8000-000000000000".to_string()),
        1 => "[a-zA-Z0-9._-]{1,70}",
        1 => any::<String>(),
        1 => "\\PC{0,12}",
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("confirm=true".to_string())),
        Just(Some("state=paused".to_string())),
        Just(Some("last_event_id=0".to_string())),
        "[a-z_]{1,12}=[^&]{0,12}(&[a-z_]{1,12}=.{0,8}){0,3}".prop_map(Some),
        any::<String>().prop_map(Some),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        Just(Value::String("x".into())),
        Just(Value::String("2030-01-01T09:00:00Z".into())),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Objects with the field names the API reads, holding anything.
fn api_shaped_object() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("platform"),
        Just("platforms"),
        Just("target"),
        Just("kind"),
        Just("text"),
        Just("title"),
        Just("links"),
        Just("media"),
        Just("scheduled_at"),
        Just("test_post"),
        Just("replace"),
        Just("published"),
        Just("identifier"),
        Just("app_password"),
    ];
    prop::collection::btree_map(key, json_value(), 0..7)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
}

/// Close to a real schedule request, so that some get all the way through.
fn plausible_post() -> impl Strategy<Value = Value> {
    (
        prop_oneof![Just("x"), Just("youtube"), Just("bluesky"), Just("nope")],
        prop_oneof![
            Just(None),
            Just(Some("feed")),
            Just(Some("thread")),
            Just(Some("community")),
            Just(Some("reel"))
        ],
        "\\PC{0,300}",
        prop_oneof![
            3 => Just("2031-05-01T09:00:00Z".to_string()),
            1 => any::<String>(),
        ],
        prop::collection::vec("(https?://)?[a-z.]{0,12}(/[a-z]{0,5})?", 0..2),
    )
        .prop_map(|(platform, kind, text, scheduled_at, links)| {
            let mut post = serde_json::json!({
                "platform": platform,
                "text": text,
                "scheduled_at": scheduled_at,
                "links": links,
            });
            if let Some(kind) = kind {
                post["kind"] = Value::from(kind);
            }
            post
        })
}

fn body() -> impl Strategy<Value = BodyInput> {
    prop_oneof![
        Just(BodyInput::Empty),
        json_value().prop_map(BodyInput::Json),
        api_shaped_object().prop_map(BodyInput::Json),
        plausible_post().prop_map(BodyInput::Json),
        plausible_post().prop_map(BodyInput::Json),
        prop::collection::vec(any::<u8>(), 0..256).prop_map(BodyInput::Bytes),
    ]
}

fn input() -> impl Strategy<Value = Input> {
    let methods = prop_oneof![
        4 => Just(None),
        1 => prop_oneof![
            Just(Method::GET),
            Just(Method::POST),
            Just(Method::PUT),
            Just(Method::PATCH),
            Just(Method::DELETE),
            Just(Method::OPTIONS),
        ]
        .prop_map(Some),
    ];
    let content_type = prop_oneof![
        4 => Just(None),
        1 => Just(Some("application/json".to_string())),
        1 => Just(Some("text/plain".to_string())),
        1 => "[ -~]{0,30}".prop_map(Some),
    ];
    let token = prop_oneof![
        1 => Just(Token::Missing),
        6 => Just(Token::Right),
        1 => "[ -~]{0,40}".prop_map(Token::Wrong),
    ];
    // Half the cases go to the routes that read a body, where most of the parsing is.
    let with_body: Vec<usize> = routes()
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.method, Verb::Post | Verb::Patch))
        .map(|(i, _)| i)
        .collect();
    let route = prop_oneof![0..routes().len(), prop::sample::select(with_body)];
    (
        route,
        methods,
        prop::collection::vec(segment(), 3),
        query(),
        body(),
        content_type,
        token,
    )
        .prop_map(
            |(route, method, segments, query, body, content_type, token)| Input {
                route,
                method,
                segments,
                query,
                body,
                content_type,
                token,
            },
        )
}

fn build(input: &Input) -> Option<Request<Body>> {
    let spec = &routes()[input.route];
    let mut segments = input.segments.iter();
    let path = spec
        .path
        .split('/')
        .map(|part| {
            if part.starts_with('{') {
                percent_encode(segments.next().map(String::as_str).unwrap_or(""), &[])
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let uri = match &input.query {
        Some(q) => format!("{path}?{}", percent_encode(q, b"=&")),
        None => path,
    };
    let method = input
        .method
        .clone()
        .unwrap_or_else(|| spec.method.as_method());
    let mut request = Request::builder().method(method).uri(uri);
    match &input.token {
        Token::Missing => {}
        Token::Right => {
            request = request.header(header::AUTHORIZATION, format!("Bearer {ADMIN_TOKEN}"))
        }
        Token::Wrong(t) => request = request.header(header::AUTHORIZATION, format!("Bearer {t}")),
    }
    let body = match &input.body {
        BodyInput::Empty => Body::empty(),
        BodyInput::Json(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        BodyInput::Bytes(b) => Body::from(b.clone()),
    };
    if let Some(ct) = &input.content_type {
        request = request.header(header::CONTENT_TYPE, ct.as_str());
    }
    request.body(body).ok()
}

#[test]
fn no_http_input_panics_or_answers_5xx() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = runtime.block_on(async {
        let app = spawn_app().await;
        app.connect_x("jane", JANE).await;
        app
    });
    let service = router(app.studio.clone());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let outcome = runner.run(&input(), |input| {
        let Some(request) = build(&input) else {
            return Ok(());
        };
        let callback = routes()[input.route].path == "/v1/oauth/callback";
        let response = runtime
            .block_on(service.clone().oneshot(request))
            .map_err(|e| TestCaseError::fail(format!("the router failed: {e:?}")))?;
        let status = response.status();
        *seen.lock().unwrap().entry(status.as_u16()).or_default() += 1;
        prop_assert!(!status.is_server_error(), "{status} for {input:?}");
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if content_type.starts_with("text/event-stream") {
            // A live stream never ends: its status and type are the answer.
            return Ok(());
        }
        let bytes = runtime
            .block_on(axum::body::to_bytes(response.into_body(), 4 * 1024 * 1024))
            .map_err(|e| TestCaseError::fail(format!("unreadable body: {e}")))?;
        if status.is_client_error() && !callback {
            prop_assert!(
                content_type.starts_with("application/json"),
                "{status} {content_type} for {input:?}"
            );
            let body: Value = serde_json::from_slice(&bytes)
                .map_err(|e| TestCaseError::fail(format!("error body is not JSON: {e}")))?;
            prop_assert!(body["error"]["code"].is_string(), "{body} for {input:?}");
            if status == StatusCode::UNAUTHORIZED {
                prop_assert_eq!(&body["error"]["code"], "unauthorized");
            }
        }
        Ok(())
    });
    drop(service);
    runtime.block_on(async move {
        app.stop().await;
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    // The inputs reached the handlers, not only the front door.
    let seen = seen.into_inner().unwrap();
    eprintln!("statuses over the run: {seen:?}");
    assert!(seen.keys().any(|s| (200..300).contains(s)), "{seen:?}");
    for expected in [400, 401, 404] {
        assert!(seen.contains_key(&expected), "{seen:?}");
    }
}
