//! The read contract: shapes, ordering, headers, filters, pagination, errors.

use crate::helpers::{Options, assert_problem, spawn_app};
use sqlx::MySqlPool;
use wire::{Availability, Item};

#[sqlx::test(migrations = "../../sql")]
async fn the_list_returns_the_seed_rows_in_id_order_with_real_availability(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let response = app.get("/hardware/").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().expect("ascii"),
        "application/json"
    );
    let json: serde_json::Value = response.json().await.expect("json");
    let rows = json.as_array().expect("a bare JSON array");
    assert_eq!(rows.len(), 2);
    let expected = [("Amazon", "c5"), ("Azure", "H16mr")];
    for (row, (provider, name)) in rows.iter().zip(expected) {
        let keys: Vec<&str> = row
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 5, "{row}");
        assert_eq!(row["provider"], provider);
        assert_eq!(row["name"], name);
        let level = row["availability"].as_str().expect("string");
        assert!(["HIGH", "MEDIUM", "LOW"].contains(&level), "{level}");
        let checked = row["checked_at"].as_str().expect("computed");
        assert!(
            chrono::DateTime::parse_from_rfc3339(checked).is_ok(),
            "{checked}"
        );
    }
    assert!(rows[0]["id"].as_u64() < rows[1]["id"].as_u64());
}

#[sqlx::test(migrations = "../../sql")]
async fn the_list_answers_without_the_trailing_slash_too(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    assert_eq!(app.list("/hardware").await.len(), 2);
}

#[sqlx::test(migrations = "../../sql")]
async fn every_response_names_its_instance_and_echoes_the_request_id(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let response = app
        .client
        .get(app.url("/hardware/?wait=0"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-served-by"], "test-instance");
    assert_eq!(response.headers()["x-request-id"], "abc-123");
    assert_eq!(response.headers()["x-total-count"], "2");
    // Errors carry them too, and an id is generated when none was sent.
    let missing = app.get("/nowhere").await;
    assert_eq!(missing.headers()["x-served-by"], "test-instance");
    assert!(!missing.headers()["x-request-id"].is_empty());
    assert_problem(missing, 404).await;
}

#[sqlx::test(migrations = "../../sql")]
async fn filters_narrow_the_list(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let names = |items: Vec<Item>| {
        items
            .into_iter()
            .map(|i| i.name.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(app.list("/hardware/?provider=azure").await),
        ["H16mr"]
    );
    assert_eq!(names(app.list("/hardware/?q=C5").await), ["c5"]);
    assert!(app.list("/hardware/?q=zzz").await.is_empty());
    let all = app.list("/hardware/").await;
    let level = all[0].availability;
    let same_level = app
        .list(&format!(
            "/hardware/?availability={}",
            level.as_str().to_lowercase()
        ))
        .await;
    assert!(same_level.iter().any(|i| i.id == all[0].id));
    assert!(same_level.iter().all(|i| i.availability == level));
    assert!(app.list("/hardware/?availability=UNKNOWN").await.is_empty());
}

#[sqlx::test(migrations = "../../sql")]
async fn pagination_reports_the_total_and_links_the_next_page(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let first = app.get("/hardware/?limit=1").await;
    assert_eq!(first.headers()["x-total-count"], "2");
    let link = first.headers()["link"].to_str().expect("ascii").to_owned();
    assert_eq!(link, r#"</hardware/?limit=1&offset=1>; rel="next""#);
    let first: Vec<Item> = first.json().await.expect("json");
    assert_eq!(&*first[0].name, "c5");

    let second = app.get("/hardware/?limit=1&offset=1").await;
    assert!(
        second.headers().get("link").is_none(),
        "no page after the last"
    );
    let second: Vec<Item> = second.json().await.expect("json");
    assert_eq!(&*second[0].name, "H16mr");
    assert!(app.list("/hardware/?offset=5").await.is_empty());
}

#[sqlx::test(migrations = "../../sql")]
async fn bad_query_values_are_400_problems(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    for query in [
        "limit=0",
        "limit=abc",
        "offset=-3",
        "availability=SOMETIMES",
        "wait=-1",
        "wait=forever",
    ] {
        let detail = assert_problem(app.get(&format!("/hardware/?{query}")).await, 400).await;
        let name = query.split('=').next().expect("key");
        assert!(detail.contains(name), "{query}: {detail}");
    }
}

#[sqlx::test(migrations = "../../sql")]
async fn one_item_by_id_or_a_404_problem(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let all = app.list("/hardware/").await;
    let response = app.get(&format!("/hardware/{}", all[1].id)).await;
    assert_eq!(response.status(), 200);
    let item: Item = response.json().await.expect("item");
    assert_eq!(&*item.name, "H16mr");
    assert_ne!(item.availability, Availability::Unknown);

    let detail = assert_problem(app.get("/hardware/999999").await, 404).await;
    assert!(detail.contains("999999"));
    assert_problem(app.get("/hardware/abc").await, 400).await;
}

#[sqlx::test(migrations = "../../sql")]
async fn unknown_routes_and_methods_are_problems(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    assert_problem(app.get("/nothing/here").await, 404).await;
    let patch = app
        .client
        .patch(app.url("/hardware/1"))
        .send()
        .await
        .expect("request");
    assert_problem(patch, 405).await;
}

#[sqlx::test(migrations = "../../sql")]
async fn health_metrics_and_openapi_answer(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.list("/hardware/").await;
    let metrics = app.get("/metrics").await.text().await.expect("text");
    assert!(
        metrics.contains("hardware_availability_probes_total"),
        "{metrics}"
    );
    // One series per method, matched route (as routed, not as asked) and status.
    assert!(
        metrics.contains(
            r#"hardware_http_requests_total{method="GET",route="/hardware/",status="200"} 1"#
        ),
        "{metrics}"
    );
    let openapi: serde_json::Value = app.get("/openapi.json").await.json().await.expect("json");
    assert_eq!(openapi["openapi"], "3.1.0");
    for path in ["/hardware/", "/hardware/{id}", "/healthz", "/readyz"] {
        assert!(openapi["paths"].get(path).is_some(), "{path} documented");
    }
}

#[sqlx::test(migrations = false)]
async fn readiness_fails_until_migrations_are_applied(pool: MySqlPool) {
    let settings = crate::helpers::settings(&[]);
    let app = hardware::Application::with_parts(&settings, pool.clone(), Options::default().probe)
        .await
        .expect("builds");
    let addr = app.local_addr();
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::new();
    let ready = |client: reqwest::Client| async move {
        client
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .expect("request")
    };
    let not_ready = ready(client.clone()).await;
    let detail = assert_problem(not_ready, 503).await;
    assert!(detail.contains("migrat"), "{detail}");
    assert_eq!(
        client
            .get(format!("http://{addr}/healthz"))
            .send()
            .await
            .expect("request")
            .status(),
        200,
        "liveness does not depend on the database"
    );

    hardware::db::migrate(&pool).await.expect("migrates");
    let mut status = 0;
    for _ in 0..50 {
        status = ready(client.clone()).await.status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
}

/// The full list carries an `ETag` (the data's version): asked again with
/// it, the answer is `304` with no body; a change gives a new tag. With
/// `Accept-Encoding: gzip` the same bytes come compressed.
#[sqlx::test(migrations = "../../sql")]
async fn the_full_list_is_conditional_and_compressible(pool: MySqlPool) {
    let app = spawn_app(pool.clone(), Options::default()).await;
    let raw = reqwest::Client::builder()
        .no_gzip()
        .build()
        .expect("client");
    let url = format!("http://{}/hardware/?wait=0", app.addr);
    let first = raw.get(&url).send().await.expect("list");
    assert_eq!(first.status(), 200);
    let tag = first.headers()["etag"].to_str().expect("ascii").to_owned();
    assert!(tag.starts_with('"') && tag.len() == 18, "{tag}");
    assert_eq!(first.headers()["vary"], "accept-encoding");
    let plain = first.bytes().await.expect("body");

    let again = raw
        .get(&url)
        .header("if-none-match", &tag)
        .send()
        .await
        .expect("list");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"].to_str().expect("ascii"), tag);
    assert!(again.bytes().await.expect("body").is_empty(), "no body");

    let zipped = raw
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("list");
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let compressed = zipped.bytes().await.expect("body");
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(compressed.as_ref()),
        &mut unzipped,
    )
    .expect("gzip");
    assert_eq!(unzipped, plain, "the same bytes, compressed");
    let refused = raw
        .get(&url)
        .header("accept-encoding", "gzip;q=0, identity")
        .send()
        .await
        .expect("list");
    assert!(refused.headers().get("content-encoding").is_none());

    sqlx::query("INSERT INTO hardware (provider, name) VALUES ('P', 'new')")
        .execute(&pool)
        .await
        .expect("insert");
    let mut changed = false;
    for _ in 0..50 {
        let answer = raw
            .get(&url)
            .header("if-none-match", &tag)
            .send()
            .await
            .expect("list");
        if answer.status() == 200 {
            assert_ne!(answer.headers()["etag"].to_str().expect("ascii"), tag);
            changed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(changed, "a change answers 200 with a new tag");
}

/// The change feed: the list's `ETag` is a version; asked `since` it, the
/// replica answers `304` while nothing changed, then exactly what changed
/// (added, renamed, removed) with the version that makes, which is the next
/// list's `ETag`. A version it never handed out is `404`; a malformed one `400`.
#[sqlx::test(migrations = "../../sql")]
async fn the_change_feed_answers_what_changed_since_a_version(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let list = app.get("/hardware/?wait=5").await;
    let tag = list.headers()["etag"].to_str().expect("ascii").to_owned();
    let items: Vec<wire::Item> = list.json().await.expect("items");
    assert_eq!(
        wire::Version::parse(&tag),
        Some(wire::Version::of(&items)),
        "the ETag is the data's version"
    );
    let since = tag.trim_matches('"').to_owned();
    let unchanged = app.get(&format!("/hardware/changes?since={since}")).await;
    assert_eq!(unchanged.status(), 304);
    assert!(unchanged.bytes().await.expect("body").is_empty());

    let created = app.create("Feed", "added").await;
    assert_eq!(created.status(), 201);
    let added: wire::Item = created.json().await.expect("item");
    let renamed = items[0].id;
    assert_eq!(app.update(renamed, "Feed", "renamed").await.status(), 200);
    let removed = items[1].id;
    assert_eq!(app.delete(removed).await.status(), 204);

    let answer = app.get(&format!("/hardware/changes?since={since}")).await;
    assert_eq!(answer.status(), 200);
    let changes: wire::Changes = answer.json().await.expect("changes");
    assert_eq!(changes.since, since);
    let ids: Vec<u64> = changes.changed.iter().map(|item| item.id).collect();
    assert!(ids.contains(&added.id) && ids.contains(&renamed), "{ids:?}");
    assert!(!ids.contains(&removed));
    assert_eq!(changes.removed, vec![removed]);
    let now = app.get("/hardware/?wait=0").await;
    let now_tag = now.headers()["etag"].to_str().expect("ascii").to_owned();
    let now_items: Vec<wire::Item> = now.json().await.expect("items");
    // The list may have moved on (a value landed) only by changes after the answer.
    let again = app
        .get(&format!("/hardware/changes?since={}", changes.version))
        .await;
    if again.status() == 304 {
        assert_eq!(now_tag.trim_matches('"'), changes.version);
        for item in &changes.changed {
            assert!(now_items.contains(item), "as listed now: {item:?}");
        }
    } else {
        assert_eq!(again.status(), 200, "its own version is known");
    }

    for unknown in ["0123456789abcdef", "0000000000000000"] {
        let answer = app.get(&format!("/hardware/changes?since={unknown}")).await;
        let detail = assert_problem(answer, 404).await;
        assert!(detail.contains("GET /hardware/"), "{detail}");
    }
    for bad in ["", "?since=", "?since=xyz", "?since=0123"] {
        assert_problem(app.get(&format!("/hardware/changes{bad}")).await, 400).await;
    }
}
