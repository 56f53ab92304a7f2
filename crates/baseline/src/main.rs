//! `baseline --listen ADDR --bytes N`: answers every `GET /` with the same
//! N-byte HTML page and does nothing else. `cargo xtask bench` drives it with
//! the same load generator as the real services: its throughput is the most
//! this machine can serve at that page size, and our figures are reported as
//! a share of it.

use axum::Router;
use axum::http::header;
use axum::routing::get;

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = arg("--listen").unwrap_or_else(|| "127.0.0.1:5999".into());
    let bytes: usize = arg("--bytes")
        .and_then(|b| b.parse().ok())
        .unwrap_or(20_000);
    let page: &'static str = Box::leak("x".repeat(bytes).into_boxed_str());
    let app = Router::new().route(
        "/",
        get(move || async move { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page) }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await
}
