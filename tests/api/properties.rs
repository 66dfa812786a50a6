//! Property test over HTTP inputs, straight into `router(studio)` with `oneshot` (no
//! socket): every route of the table ([`routes`]), with arbitrary path segments, every
//! query and header parameter the route declares in `/openapi.json` (the OAuth
//! callback's `code`, `state`, `error` and `error_description`; `state`, `confirm`,
//! `last_event_id`; `Last-Event-ID`, `Idempotency-Key`) filled with plausible and
//! arbitrary values — live OAuth states among them — plus arbitrary query strings,
//! JSON bodies shaped after every schema property the document names, non-JSON bodies,
//! other methods, with and without the token. Whatever comes in, nothing panics,
//! nothing answers 5xx, and every refusal is a JSON error with a code.
//!
//! Routes and parameters come from the table and the document (which `openapi.rs`
//! checks against the table), so a route or parameter added later is fuzzed without
//! touching this file. `RELIABILITY_FUZZ_CASES` sets the number of inputs (default
//! 2048); the count tried is printed (`-- --nocapture`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, Method, Request, StatusCode};
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
    /// A value (or none) for each parameter the route declares, in declaration order.
    params: Vec<Option<String>>,
    /// An arbitrary query string besides (or instead of) the declared parameters.
    query: Option<String>,
    body: BodyInput,
    content_type: Option<String>,
    token: Token,
}

/// Where a declared parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum In {
    Query,
    Header,
}

/// The query and header parameters one route declares in the OpenAPI document.
#[derive(Debug, Clone, Default)]
struct Declared {
    params: Vec<(In, String)>,
}

/// What the OpenAPI document says the fuzzer should send: per route of the table, its
/// query and header parameters; and every property name of every schema, for bodies.
struct Surface {
    routes: Vec<Declared>,
    body_keys: Vec<String>,
}

impl Surface {
    fn from_document(doc: &Value) -> Surface {
        let routes = routes()
            .iter()
            .map(|route| {
                let method = route.method.as_method().as_str().to_ascii_lowercase();
                let operation = &doc["paths"][route.path][method.as_str()];
                let params = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| {
                        let place = match p["in"].as_str()? {
                            "query" => In::Query,
                            "header" => In::Header,
                            _ => return None,
                        };
                        Some((place, p["name"].as_str()?.to_owned()))
                    })
                    .collect();
                Declared { params }
            })
            .collect();
        let mut keys = BTreeSet::new();
        collect_property_names(&doc["components"]["schemas"], &mut keys);
        collect_property_names(&doc["paths"], &mut keys);
        Surface {
            routes,
            body_keys: keys.into_iter().collect(),
        }
    }

    fn most_params(&self) -> usize {
        self.routes
            .iter()
            .map(|r| r.params.len())
            .max()
            .unwrap_or(0)
    }
}

/// Every key of every `properties` object anywhere under `value`.
fn collect_property_names(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::Object(properties)) = map.get("properties") {
                into.extend(properties.keys().cloned());
            }
            for inner in map.values() {
                collect_property_names(inner, into);
            }
        }
        Value::Array(items) => {
            for inner in items {
                collect_property_names(inner, into);
            }
        }
        _ => {}
    }
}

/// A value for a declared parameter: absent, one the engine knows, a live OAuth state,
/// or anything at all.
fn param_value(states: Vec<String>) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        3 => Just(None),
        4 => prop::sample::select(vec![
            "0", "1", "-1", "42", "18446744073709551616", "true", "false", "yes", "",
            "paused", "published", "scheduled", "failed", "unconfirmed", "held", "cancelled",
            "access_denied", "server_error", "the author said no", "x", "jane",
            "0190a7a0-0000-7000-8000-000000000000", "key-1",
        ])
        .prop_map(|v| Some(v.to_string())),
        2 => prop::sample::select(states).prop_map(Some),
        2 => "[!-~]{0,40}".prop_map(Some),
        1 => "[ -~]{0,300}".prop_map(Some),
        2 => any::<String>().prop_map(Some),
    ]
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
        6 => Just("jane".to_string()),
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

/// Objects with the field names the API documents (every schema's properties), holding
/// anything.
fn api_shaped_object(keys: Vec<String>) -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(keys), json_value(), 0..7)
        .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

/// Close to a real schedule request, so that some get all the way through.
fn plausible_post() -> impl Strategy<Value = Value> {
    (
        prop_oneof![3 => Just("x"), 1 => Just("youtube"), 1 => Just("bluesky"), 1 => Just("nope")],
        prop_oneof![
            4 => Just(None),
            1 => Just(Some("feed")),
            1 => Just(Some("thread")),
            1 => Just(Some("community")),
            1 => Just(Some("reel"))
        ],
        prop_oneof![2 => "[a-zA-Z0-9 ]{1,120}", 1 => "\\PC{0,300}"],
        prop_oneof![
            3 => Just("2031-05-01T09:00:00Z".to_string()),
            1 => any::<String>(),
        ],
        prop_oneof![
            2 => Just(Vec::new()),
            1 => prop::collection::vec("https://[a-z]{1,10}\\.example/[a-z]{0,5}", 1..3),
            1 => prop::collection::vec("(https?://)?[a-z.]{0,12}(/[a-z]{0,5})?", 0..3),
        ],
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

fn body(keys: Vec<String>) -> impl Strategy<Value = BodyInput> {
    prop_oneof![
        Just(BodyInput::Empty),
        json_value().prop_map(BodyInput::Json),
        api_shaped_object(keys).prop_map(BodyInput::Json),
        plausible_post().prop_map(BodyInput::Json),
        plausible_post().prop_map(BodyInput::Json),
        prop::collection::vec(any::<u8>(), 0..256).prop_map(BodyInput::Bytes),
    ]
}

fn input(surface: &Surface, states: Vec<String>) -> impl Strategy<Value = Input> {
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
        .filter(|(_, r)| matches!(r.method, Verb::Post | Verb::Patch | Verb::Put))
        .map(|(i, _)| i)
        .collect();
    // And a quarter to the routes that declare parameters, where those are read.
    let with_params: Vec<usize> = (0..routes().len())
        .filter(|&i| !surface.routes[i].params.is_empty())
        .collect();
    let route = prop_oneof![
        2 => 0..routes().len(),
        2 => prop::sample::select(with_body),
        1 => prop::sample::select(with_params),
    ];
    let params = prop::collection::vec(param_value(states), surface.most_params());
    // Often no arbitrary query beside the declared parameters, so that those parse.
    let query = prop_oneof![2 => Just(None), 1 => query()];
    (
        (route, methods, prop::collection::vec(segment(), 3), params),
        query,
        body(surface.body_keys.clone()),
        content_type,
        token,
    )
        .prop_map(
            |((route, method, segments, params), query, body, content_type, token)| Input {
                route,
                method,
                segments,
                params,
                query,
                body,
                content_type,
                token,
            },
        )
}

fn build(input: &Input, surface: &Surface) -> Option<Request<Body>> {
    let spec = &routes()[input.route];
    let declared = &surface.routes[input.route].params;
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
    let mut pairs: Vec<String> = Vec::new();
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    for ((place, name), value) in declared.iter().zip(&input.params) {
        let Some(value) = value else { continue };
        match place {
            In::Query => pairs.push(format!(
                "{}={}",
                percent_encode(name, &[]),
                percent_encode(value, &[])
            )),
            In::Header => {
                // A value no HTTP client could send (a line break, a non-ASCII byte
                // where the header must be text) is left out, not sent mangled.
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.push((name, value));
                }
            }
        }
    }
    if let Some(q) = &input.query {
        pairs.push(percent_encode(q, b"=&"));
    }
    let uri = if pairs.is_empty() {
        path
    } else {
        format!("{path}?{}", pairs.join("&"))
    };
    let method = input
        .method
        .clone()
        .unwrap_or_else(|| spec.method.as_method());
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(name, value);
    }
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
    let cases = std::env::var("RELIABILITY_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .unwrap_or(2048);
    let (app, doc, states) = runtime.block_on(async {
        let app = spawn_app().await;
        app.connect_x("jane", JANE).await;
        let (status, doc) = app.get("/openapi.json").await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        // Live OAuth states, so that some callbacks get as far as the code exchange.
        let mut states = Vec::new();
        for pen in ["jane", "other"] {
            for platform in ["x", "linkedin"] {
                states.push(app.authorize_on(pen, platform).await.1);
            }
        }
        (app, doc, states)
    });
    let surface = Surface::from_document(&doc);
    let declared: usize = surface.routes.iter().map(|r| r.params.len()).sum();
    for expected in [
        "code",
        "state",
        "error",
        "error_description",
        "Last-Event-ID",
        "Idempotency-Key",
    ] {
        assert!(
            surface
                .routes
                .iter()
                .any(|r| r.params.iter().any(|(_, n)| n == expected)),
            "the document declares {expected}"
        );
    }
    let service = router(app.studio.clone());
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::<u16, usize>::new());
    let tried = AtomicUsize::new(0);
    let live_states = states.clone();
    let outcome = runner.run(&input(&surface, states), |input| {
        let Some(request) = build(&input, &surface) else {
            return Ok(());
        };
        tried.fetch_add(1, Ordering::Relaxed);
        let callback = routes()[input.route].path == "/v1/oauth/callback";
        let response = runtime
            .block_on(service.clone().oneshot(request))
            .map_err(|e| TestCaseError::fail(format!("the router failed: {e:?}")))?;
        let status = response.status();
        *seen.lock().unwrap().entry(status.as_u16()).or_default() += 1;
        // The one 5xx the API means: a callback redeeming a live state with the
        // platform's `error` instead of a code. `server_error` and
        // `temporarily_unavailable` are the platform's passing state (503); any other
        // error names the service's app registration, which only its administrator can
        // fix (502, `app_credentials_rejected`).
        let value_of = |wanted: &str| {
            surface.routes[input.route]
                .params
                .iter()
                .zip(&input.params)
                .find(|((_, name), _)| name == wanted)
                .and_then(|(_, value)| value.as_deref())
        };
        let platform_said_no = callback
            && input.method.as_ref().is_none_or(|m| *m == Method::GET)
            && value_of("error").is_some()
            && value_of("state").is_some_and(|s| live_states.iter().any(|l| l == s));
        if platform_said_no && status.is_server_error() {
            prop_assert!(
                [StatusCode::BAD_GATEWAY, StatusCode::SERVICE_UNAVAILABLE].contains(&status),
                "{status} for {input:?}"
            );
        } else {
            prop_assert!(!status.is_server_error(), "{status} for {input:?}");
        }
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
    eprintln!(
        "route fuzzing: {} inputs tried over {} routes and their {declared} declared query and header parameters, statuses {seen:?}",
        tried.into_inner(),
        routes().len()
    );
    assert!(seen.keys().any(|s| (200..300).contains(s)), "{seen:?}");
    for expected in [400, 401, 404] {
        assert!(seen.contains_key(&expected), "{seen:?}");
    }
}
