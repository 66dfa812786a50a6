//! The smallest axum server: `GET /` answers a short JSON body. The baseline that
//! `bench/http.sh` measures beside the engine's API, in the same run.
//!
//! `cargo run --release --example hello_axum -- [PORT]` — port 0 (the default) takes any
//! free port; the bound address is printed as `LISTENING http://127.0.0.1:PORT`.
//! `HELLO_BODY_BYTES=N` pads the body to about N bytes, to see what a larger answer costs
//! on its own (over loopback, the receiving side's TCP work is charged to the sender).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The same allocator as the `social-studio` binary, so the comparison is like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn hello(
    axum::extract::State(pad): axum::extract::State<std::sync::Arc<String>>,
) -> Json<Value> {
    if pad.is_empty() {
        Json(json!({ "hello": "world" }))
    } else {
        Json(json!({ "hello": "world", "pad": pad.as_str() }))
    }
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
        let pad: usize = std::env::var("HELLO_BODY_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let pad = std::sync::Arc::new("x".repeat(pad.saturating_sub(30)));
        let app = Router::new().route("/", get(hello)).with_state(pad);
        axum::serve(listener, app).await
    })
}
