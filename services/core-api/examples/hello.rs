//! The reference point of the POST /transactions benchmark: the smallest
//! axum service on the same runtime settings (`bench/run.sh`).
//!
//! `HELLO_ADDR` (default 127.0.0.1:7299).

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let addr = std::env::var("HELLO_ADDR").unwrap_or_else(|_| "127.0.0.1:7299".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .expect("bind HELLO_ADDR");
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    axum::serve(listener, app).await.expect("serve");
}
