//! `baseline --listen ADDR --bytes N`: answers every `GET /` with the same
//! N-byte HTML page and does nothing else. With `--file PATH` the body is that
//! file's bytes instead, and with `--encoding CODING` it is labelled
//! `Content-Encoding: CODING` (a page compressed by the portal, served as is). `cargo xtask bench` drives it with
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
    let body: Vec<u8> = match arg("--file") {
        Some(path) => std::fs::read(&path)?,
        None => {
            let bytes: usize = arg("--bytes")
                .and_then(|b| b.parse().ok())
                .unwrap_or(20_000);
            vec![b'x'; bytes]
        }
    };
    let page = axum::body::Bytes::from(body);
    let encoding = arg("--encoding");
    let app = Router::new().route(
        "/",
        get(move || async move {
            let mut response = axum::response::Response::new(axum::body::Body::from(page));
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            if let Some(coding) = encoding.as_deref().and_then(|c| c.parse().ok()) {
                headers.insert(header::CONTENT_ENCODING, coding);
            }
            response
        }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await
}
