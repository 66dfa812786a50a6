//! The OpenAPI document is generated from the code and covers the whole route table.

use reqwest::StatusCode;
use social_studio::http::{routes, Verb};

use crate::helpers::spawn_app;

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
