//! The smallest axum server: `GET /` answers a short JSON body. The baseline that
//! `bench/http.sh` measures beside the engine's API, in the same run.
//!
//! `cargo run --release --example hello_axum -- [PORT]` — port 0 (the default) takes any
//! free port; the bound address is printed as `LISTENING http://127.0.0.1:PORT`.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The same allocator as the `social-studio` binary, so the comparison is like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn hello() -> Json<Value> {
    Json(json!({ "hello": "world" }))
}

fn main() -> std::io::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p.parse().map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("port {p:?}: {e}"))
        })?,
        None => 0,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("LISTENING http://{}", listener.local_addr()?);
        let app = Router::new().route("/", get(hello));
        axum::serve(listener, app).await
    })
}
