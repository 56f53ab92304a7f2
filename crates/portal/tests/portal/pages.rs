//! The dashboard router, driven with `oneshot`, against stub hardware.

use crate::helpers::{Behaviour, StubHardware, build_portal, item, seed_items};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use std::time::{Duration, Instant};
use tower::ServiceExt;
use wire::Availability;

async fn get(
    router: &portal::web::Public,
    uri: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let (status, headers, body) = get_with(router, uri, "identity").await;
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// A GET with `Accept-Encoding`; the body as it came.
async fn get_with(
    router: &portal::web::Public,
    uri: &str,
    accept_encoding: &str,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    get_headers(router, uri, &[("accept-encoding", accept_encoding)]).await
}

/// A GET with these request headers; the body as it came.
async fn get_headers(
    router: &portal::web::Public,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let mut request = Request::get(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).expect("request"))
        .await
        .expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 4 * 1024 * 1024)
        .await
        .expect("body");
    (status, headers, body.to_vec())
}

#[tokio::test]
async fn the_dashboard_lists_items_with_badges_counts_and_security_headers() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let app = build_portal(&stub.url(), &[]).await;
    let (status, headers, body) = get(&app.router(), "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<td data-label=\"Name\">c5</td>"), "{body}");
    assert!(body.contains("<td data-label=\"Name\">H16mr</td>"));
    assert!(body.contains(r#"<span class="badge badge-high">HIGH</span>"#));
    assert!(body.contains(r#"<span class="badge badge-low">LOW</span>"#));
    assert!(body.contains(r#"data-count="HIGH">1<"#));
    assert!(
        body.contains(r#"id="stale" class="banner" role="alert" hidden"#),
        "no stale banner"
    );
    let csp = headers["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-served-by"], "portal-test");
    assert!(!body.contains("<script>"), "no inline script");
}

#[tokio::test]
async fn names_with_markup_are_rendered_inert() {
    let hostile = vec![item(
        1,
        "<b>Evil</b>",
        "<script>alert('x')</script>\"><img src=x onerror=alert(1)>",
        Availability::High,
    )];
    let stub = StubHardware::start(Behaviour::Items(hostile)).await;
    let app = build_portal(&stub.url(), &[]).await;
    let (status, _, body) = get(&app.router(), "/").await;
    assert_eq!(status, 200);
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(!body.contains("<img src=x"));
    assert!(!body.contains("<b>Evil</b>"));
    assert!(
        body.contains("&#60;script&#62;") || body.contains("&lt;script&gt;"),
        "{body}"
    );
}

#[tokio::test]
async fn filters_sorting_and_pages_work_from_query_parameters() {
    let mut items = seed_items();
    items.extend((3..=12).map(|id| item(id, "GCP", &format!("n{id:02}"), Availability::Medium)));
    let stub = StubHardware::start(Behaviour::Items(items)).await;
    let app = build_portal(&stub.url(), &[]).await;
    let router = app.router();

    let (_, _, body) = get(&router, "/?level=low").await;
    assert!(body.contains("H16mr") && !body.contains(">c5<"));
    let (_, _, body) = get(&router, "/?provider=Amazon&q=C5").await;
    assert!(body.contains(">c5<") && !body.contains("H16mr"));
    let (_, _, body) = get(&router, "/?provider=GCP&sort=name&order=desc&per_page=4").await;
    let first = body.find(">n12<").expect("n12 shown");
    let second = body.find(">n11<").expect("n11 shown");
    assert!(first < second, "descending by name");
    assert!(body.contains("Page 1 of 3"));
    let next = body
        .split("rel=\"next\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a next link");
    assert_eq!(
        next.replace("&#38;", "&").replace("&amp;", "&"),
        "/?provider=GCP&sort=name&order=desc&per_page=4&page=2"
    );
    let (_, _, body) = get(&router, "/?provider=GCP&per_page=4&page=3").await;
    assert!(body.contains("Page 3 of 3") && body.contains(">n11<") && body.contains(">n12<"));
}

#[tokio::test]
async fn bad_parameters_get_a_friendly_400_page() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let app = build_portal(&stub.url(), &[]).await;
    for uri in [
        "/?level=SOMETIMES",
        "/?page=0",
        "/?sort=price",
        "/?per_page=99999",
    ] {
        let (status, headers, body) = get(&app.router(), uri).await;
        assert_eq!(status, 400, "{uri}");
        assert!(
            headers["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/html")
        );
        assert!(body.contains("Back to the dashboard"), "{body}");
    }
    let long = format!("/?q={}", "x".repeat(10_000));
    assert_eq!(get(&app.router(), &long).await.0, 400);
}

#[tokio::test]
async fn with_nothing_ever_fetched_the_page_is_a_friendly_503_with_retry_after() {
    let stub = StubHardware::start(Behaviour::Status(500)).await;
    let app = build_portal(&stub.url(), &[]).await;
    let (status, headers, body) = get(&app.router(), "/").await;
    assert_eq!(status, 503);
    assert_eq!(headers["retry-after"], "5");
    assert!(body.contains("not available yet"), "{body}");

    stub.set(Behaviour::Garbage);
    assert_eq!(get(&app.router(), "/").await.0, 503, "bad JSON is no data");
}

#[tokio::test]
async fn a_hung_hardware_costs_a_page_at_most_its_timeouts() {
    let stub = StubHardware::start(Behaviour::Hang).await;
    let app = build_portal(&stub.url(), &[]).await;
    let started = Instant::now();
    let (status, _, _) = get(&app.router(), "/").await;
    assert_eq!(status, 503);
    // One try and one retry, each bounded by UPSTREAM_TIMEOUT = 500 ms.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn when_hardware_fails_later_the_last_data_is_served_with_a_stale_banner() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let app = build_portal(&stub.url(), &[]).await;
    assert_eq!(get(&app.router(), "/").await.0, 200);
    stub.set(Behaviour::Status(503));
    let _ = app.catalog().refresh("test").await;
    let (status, _, body) = get(&app.router(), "/").await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#"id="stale" class="banner" role="alert" >"#),
        "{body}"
    );
    assert!(body.contains("stale since"));
    assert!(body.contains(">c5<"), "last-known-good rows still shown");
}

fn header<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[tokio::test]
async fn pages_and_assets_come_compressed_as_the_client_takes_them() {
    use std::io::Read;
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let app = build_portal(&stub.url(), &[]).await;
    let router = app.router();
    let (status, headers, plain) = get_with(&router, "/", "identity").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), "");
    assert_eq!(header(&headers, "vary"), "accept-encoding");
    let (_, headers, br) = get_with(&router, "/", "gzip, deflate, br").await;
    assert_eq!(header(&headers, "content-encoding"), "br");
    assert_eq!(header(&headers, "vary"), "accept-encoding");
    let mut decoded = Vec::new();
    brotli::Decompressor::new(&br[..], 4096)
        .read_to_end(&mut decoded)
        .expect("a brotli body");
    assert_eq!(decoded, plain, "the same page");
    assert!(
        br.len() * 3 < plain.len(),
        "{} of {}",
        br.len(),
        plain.len()
    );
    let (_, headers, gz) = get_with(&router, "/", "gzip;q=1, br;q=0").await;
    assert_eq!(header(&headers, "content-encoding"), "gzip");
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut decoded)
        .expect("a gzip body");
    assert_eq!(decoded, plain);

    // Assets: linked under hashed names, kept a year; the plain names briefly.
    let page = String::from_utf8_lossy(&plain).into_owned();
    let css = page
        .split('"')
        .find(|part| part.starts_with("/assets/app.") && part.ends_with(".css"))
        .expect("the page links its stylesheet by a hashed name")
        .to_owned();
    assert!(page.contains(".js\" defer></script>"), "{page}");
    let (status, headers, body) = get_with(&router, &css, "br").await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&headers, "content-encoding"), "br");
    let (_, plain_headers, plain_css) = get_with(&router, "/assets/app.css", "").await;
    assert_eq!(
        header(&plain_headers, "cache-control"),
        "public, max-age=300"
    );
    // Past those five minutes, a browser revalidates: 304, not the bytes again.
    let tag = header(&plain_headers, "etag").to_owned();
    let again = get_headers(&router, "/assets/app.css", &[("if-none-match", &tag)]).await;
    assert_eq!((again.0, again.2.len()), (StatusCode::NOT_MODIFIED, 0));
    let mut decoded = Vec::new();
    brotli::Decompressor::new(&body[..], 4096)
        .read_to_end(&mut decoded)
        .expect("a brotli body");
    assert_eq!(decoded, plain_css);
    assert_eq!(
        get_with(&router, "/assets/app.0000000000.css", "").await.0,
        404
    );
}

#[tokio::test]
async fn an_unchanged_view_revalidates_to_a_304_in_any_portal() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let a = build_portal(&stub.url(), &["--instance-id=portal-a"]).await;
    let b = build_portal(&stub.url(), &["--instance-id=portal-b"]).await;
    let (router_a, router_b) = (a.router(), b.router());
    let (status, headers, plain) = get_with(&router_a, "/", "identity").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    let tag = header(&headers, "etag").to_owned();
    assert!(
        tag.starts_with('"') && !tag.starts_with("W/"),
        "a strong tag: {tag}"
    );
    // The page holds nothing of the instance or the moment: portal B, a
    // second later, serves the same bytes under the same tag.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, headers_b, plain_b) = get_with(&router_b, "/", "identity").await;
    assert_eq!(header(&headers_b, "etag"), tag);
    assert_eq!(plain_b, plain);
    assert_eq!(header(&headers_b, "x-served-by"), "portal-b");

    // A reload of the view: 304, no body, the same tag and cache policy.
    for router in [&router_a, &router_b] {
        let (status, headers, body) = get_headers(router, "/", &[("if-none-match", &tag)]).await;
        assert_eq!(status, 304);
        assert!(body.is_empty());
        assert_eq!(header(&headers, "etag"), tag);
        assert_eq!(header(&headers, "cache-control"), "no-cache");
        assert_eq!(header(&headers, "vary"), "accept-encoding");
    }
    // Each coding is other bytes, so another tag; each revalidates alone.
    let (_, headers, _) = get_with(&router_a, "/", "br").await;
    let br_tag = header(&headers, "etag").to_owned();
    assert_ne!(br_tag, tag);
    let br = [
        ("accept-encoding", "br"),
        ("if-none-match", br_tag.as_str()),
    ];
    assert_eq!(get_headers(&router_a, "/", &br).await.0, 304);
    let plain_tag_for_br = [("accept-encoding", "br"), ("if-none-match", tag.as_str())];
    assert_eq!(get_headers(&router_a, "/", &plain_tag_for_br).await.0, 200);
    // Another view has another tag.
    let (_, headers, _) = get(&router_a, "/?sort=name").await;
    assert_ne!(header(&headers, "etag"), tag);

    // New data: the old tag no longer matches.
    let mut items = seed_items();
    items.push(item(9, "Azure", "new-one", Availability::High));
    stub.set(Behaviour::Items(items));
    a.catalog().refresh("test").await.expect("refresh");
    let (status, headers, body) = get_headers(&router_a, "/", &[("if-none-match", &tag)]).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("new-one"));
    let fresh = header(&headers, "etag").to_owned();
    assert_ne!(fresh, tag);
    // Stale: the banner is part of the page, so the tag moves too.
    stub.set(Behaviour::Status(503));
    let _ = a.catalog().refresh("test").await;
    let (status, _, body) = get_headers(&router_a, "/", &[("if-none-match", &fresh)]).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("stale since"));
}

#[tokio::test]
async fn assets_are_served_and_unknown_pages_are_friendly_404s() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let app = build_portal(&stub.url(), &[]).await;
    let (status, headers, _) = get(&app.router(), "/assets/app.js").await;
    assert_eq!(status, 200);
    assert!(
        headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/javascript")
    );
    let (status, _, _) = get(&app.router(), "/assets/app.css").await;
    assert_eq!(status, 200);
    let (status, _, body) = get(&app.router(), "/wp-admin").await;
    assert_eq!(status, 404);
    assert!(body.contains("Page not found"));
    assert_eq!(
        get(&app.router(), "/metrics").await.0,
        404,
        "metrics are not public"
    );
}

#[tokio::test]
async fn hostile_query_strings_get_a_400_or_a_normal_page_never_a_500() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let app = build_portal(&stub.url(), &[]).await;
    let hostile = [
        "/?q=%FF%FE%FD",                                          // not UTF-8
        "/?q=%00%01%02",                                          // control bytes
        "/?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E",                // markup
        "/?q=%27%20OR%201%3D1%3B%20DROP%20TABLE%20hardware%3B--", // SQL
        "/?provider=..%2F..%2Fetc%2Fpasswd",
        "/?level[]=HIGH&level[]=LOW",
        "/?page=99999999999999999999999",
        "/?per_page=-1",
        "/?q=%", // truncated escape
        "/?&&&==&",
        "/?sort=name&sort=provider", // duplicated key
    ];
    for uri in hostile {
        let (status, _, body) = get(&app.router(), uri).await;
        assert!(status == 200 || status == 400, "{uri}: {status}");
        assert!(!body.contains("<script>alert"), "{uri}: reflected markup");
    }
    let huge = format!("/?q={}", "%41".repeat(20_000));
    assert_eq!(get(&app.router(), &huge).await.0, 400);
}

#[tokio::test]
async fn one_client_over_its_rate_gets_a_friendly_429_while_others_are_served() {
    let stub = StubHardware::start(Behaviour::Items(seed_items())).await;
    let app = build_portal(
        &stub.url(),
        &["--rate-limit-per-second=1", "--rate-limit-burst=3"],
    )
    .await;
    let from = |ip: &str| {
        let addr: std::net::SocketAddr = format!("{ip}:40000").parse().expect("addr");
        let mut request = Request::get("/").body(Body::empty()).expect("request");
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(addr));
        request
    };
    for _ in 0..3 {
        let response = app
            .router()
            .oneshot(from("192.0.2.7"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), 200);
    }
    let limited = app
        .router()
        .oneshot(from("192.0.2.7"))
        .await
        .expect("infallible");
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "1");
    let body = axum::body::to_bytes(limited.into_body(), 1 << 20)
        .await
        .expect("body");
    assert!(String::from_utf8_lossy(&body).contains("Too many requests"));
    let other = app
        .router()
        .oneshot(from("192.0.2.8"))
        .await
        .expect("infallible");
    assert_eq!(other.status(), 200, "another client is not starved");
    let health = Request::get("/healthz")
        .body(Body::empty())
        .expect("request");
    let mut health = health;
    health.extensions_mut().insert(axum::extract::ConnectInfo(
        "192.0.2.7:1".parse::<std::net::SocketAddr>().expect("addr"),
    ));
    assert_eq!(
        app.router()
            .oneshot(health)
            .await
            .expect("infallible")
            .status(),
        200,
        "probes exempt"
    );
}
