//! The OpenAPI document is generated from the code, covers the whole route table, and
//! describes what the routes really answer: live answers are validated against it.

use reqwest::StatusCode;
use serde_json::{json, Value};
use social_studio::http::{routes, Verb};

use crate::helpers::{in_a_day, spawn_app, JANE};

#[tokio::test]
async fn the_document_lists_every_route_of_the_table() {
    let app = spawn_app().await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    for route in routes() {
        let method = match route.method {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Patch => "patch",
            Verb::Put => "put",
            Verb::Delete => "delete",
        };
        let operation = &doc["paths"][route.path][method];
        assert!(
            operation.is_object(),
            "{method} {} is documented",
            route.path
        );
        let secured = operation["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("admin_token").is_some()));
        assert_eq!(secured, route.protected, "{method} {} security", route.path);
    }
}

/// The schema the document gives the answer of `method path` with `status`, with every
/// object schema closed (`additionalProperties: false`) so that a field on the wire the
/// document does not describe fails too — except the error object, which by design
/// carries what each refusal is about beside its named fields.
fn answer_schema(doc: &Value, method: &str, path: &str, status: u16) -> Value {
    let operation = &doc["paths"][path][method];
    let schema =
        operation["responses"][status.to_string()]["content"]["application/json"]["schema"].clone();
    assert!(
        schema.is_object(),
        "{method} {path} documents a JSON answer for {status}: {operation}"
    );
    let mut components = doc["components"].clone();
    if let Some(schemas) = components["schemas"].as_object_mut() {
        for (name, schema) in schemas.iter_mut() {
            if name != "ErrorObject" {
                close_objects(schema);
            }
        }
    }
    let mut root = schema;
    root["components"] = components;
    root
}

fn close_objects(schema: &mut Value) {
    match schema {
        Value::Object(fields) => {
            if fields.contains_key("properties") && !fields.contains_key("additionalProperties") {
                fields.insert("additionalProperties".into(), Value::Bool(false));
            }
            for (key, value) in fields.iter_mut() {
                // Inside `properties` the keys are field names, not keywords.
                if key == "properties" {
                    if let Some(properties) = value.as_object_mut() {
                        properties.values_mut().for_each(close_objects);
                    }
                } else {
                    close_objects(value);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// Fails the test, naming every mismatch, unless `answer` fits the schema the document
/// gives `method path` answering `status`.
#[track_caller]
pub(crate) fn assert_documented(
    doc: &Value,
    method: &str,
    path: &str,
    status: StatusCode,
    answer: &Value,
) {
    let schema = answer_schema(doc, method, path, status.as_u16());
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("the schema of {method} {path} {status} compiles: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(answer)
        .map(|e| format!("{} (at {})", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} answered {status} outside its schema:\n{}\nanswer: {answer:#}",
        errors.join("\n")
    );
}

#[tokio::test]
async fn live_answers_fit_the_documented_schemas() {
    let app = spawn_app().await;
    let (_, doc) = app.get("/openapi.json").await;

    // The connect flow, then a connection with its account, targets and events.
    let (status, start) = app
        .post("/v1/pen-names/jane/connections/x/authorize", json!({}))
        .await;
    assert_documented(
        &doc,
        "post",
        "/v1/pen-names/{pen}/connections/{platform}/authorize",
        status,
        &start,
    );
    app.connect_x("jane", JANE).await;
    let (status, list) = app.get("/v1/pen-names/jane/connections").await;
    assert_eq!(status, StatusCode::OK);
    assert_documented(
        &doc,
        "get",
        "/v1/pen-names/{pen}/connections",
        status,
        &list,
    );
    let (status, one) = app.get("/v1/pen-names/jane/connections/x").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!one["events"].as_array().unwrap().is_empty(), "{one}");
    assert_documented(
        &doc,
        "get",
        "/v1/pen-names/{pen}/connections/{platform}",
        status,
        &one,
    );

    // Posts: scheduled, listed, read, cancelled.
    let (status, created) = app
        .post(
            "/v1/pen-names/jane/posts",
            json!({
                "platform": "x",
                "text": "with a picture",
                "media": [{"url": "https://example.com/cover.png", "kind": "image", "alt": "the cover"}],
                "scheduled_at": in_a_day(),
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_documented(&doc, "post", "/v1/pen-names/{pen}/posts", status, &created);
    let id = created["posts"][0]["id"].as_str().unwrap().to_string();
    let (status, posts) = app.get("/v1/pen-names/jane/posts").await;
    assert_documented(&doc, "get", "/v1/pen-names/{pen}/posts", status, &posts);
    let (status, post) = app.get(&format!("/v1/pen-names/jane/posts/{id}")).await;
    assert_documented(&doc, "get", "/v1/pen-names/{pen}/posts/{id}", status, &post);
    let (status, cancelled) = app.delete(&format!("/v1/pen-names/jane/posts/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_documented(
        &doc,
        "delete",
        "/v1/pen-names/{pen}/posts/{id}",
        status,
        &cancelled,
    );

    // Status routes.
    let (status, supervisor) = app.get("/v1/supervisor").await;
    assert_documented(&doc, "get", "/v1/supervisor", status, &supervisor);
    let (status, attention) = app.get("/v1/attention").await;
    assert_documented(&doc, "get", "/v1/attention", status, &attention);
    let (status, ready) = app.get("/readyz").await;
    assert_documented(&doc, "get", "/readyz", status, &ready);

    // Errors: a refusal of each shape.
    let (status, invalid) = app.get("/v1/pen-names/NOT%20A%20PEN/connections").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{invalid}");
    assert_documented(
        &doc,
        "get",
        "/v1/pen-names/{pen}/connections",
        status,
        &invalid,
    );
    let (status, refused) = app
        .post(
            "/v1/pen-names/jane/posts",
            json!({"platforms": [{"platform": "x"}, {"platform": "nowhere"}], "text": "hi", "scheduled_at": in_a_day()}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_documented(&doc, "post", "/v1/pen-names/{pen}/posts", status, &refused);
    let (status, dry_run) = app.delete("/v1/pen-names/jane/connections/x").await;
    assert_eq!(status, StatusCode::CONFLICT, "{dry_run}");
    assert_documented(
        &doc,
        "delete",
        "/v1/pen-names/{pen}/connections/{platform}",
        status,
        &dry_run,
    );

    // Verify, disconnect, erase.
    let (status, verified) = app
        .post("/v1/pen-names/jane/connections/x/verify", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{verified}");
    assert_documented(
        &doc,
        "post",
        "/v1/pen-names/{pen}/connections/{platform}/verify",
        status,
        &verified,
    );
    let (status, disconnected) = app
        .delete("/v1/pen-names/jane/connections/x?confirm=true")
        .await;
    assert_eq!(status, StatusCode::OK, "{disconnected}");
    assert_documented(
        &doc,
        "delete",
        "/v1/pen-names/{pen}/connections/{platform}",
        status,
        &disconnected,
    );
    app.connect_x("jane", JANE).await;
    let (status, erased) = app.delete("/v1/pen-names/jane?confirm=true").await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert!(
        !erased["connections"].as_array().unwrap().is_empty(),
        "{erased}"
    );
    assert_documented(&doc, "delete", "/v1/pen-names/{pen}", status, &erased);
}
