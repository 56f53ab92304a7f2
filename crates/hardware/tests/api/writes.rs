//! Token-protected writes: authorization, validation, conflicts, limits.

use crate::helpers::{Options, TOKEN, assert_problem, spawn_app};
use sqlx::MySqlPool;
use wire::{Availability, Item};

#[sqlx::test(migrations = "../../sql")]
async fn a_created_item_is_listed_probed_and_found_at_its_location(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let response = app.create("GCP", "n2-standard-4").await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let created: Item = response.json().await.expect("item");
    assert_eq!(location, format!("/hardware/{}", created.id));
    assert_eq!(created.availability, Availability::Unknown);

    let fetched: Item = app.get(&location).await.json().await.expect("item");
    assert_eq!(&*fetched.name, "n2-standard-4");
    assert_ne!(
        fetched.availability,
        Availability::Unknown,
        "probed, then waited for"
    );
    let all = app.list("/hardware/").await;
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].id, created.id, "new items come last (id order)");
}

#[sqlx::test(migrations = "../../sql")]
async fn writes_without_a_valid_token_are_401_and_change_nothing(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let body = serde_json::json!({"provider": "GCP", "name": "e2"});
    let post = || app.client.post(app.url("/hardware/")).json(&body);
    let attempts = [
        post(),
        post().bearer_auth("wrong-token-0123456789"),
        post().header("authorization", TOKEN),
        post().header("authorization", format!("Basic {TOKEN}")),
        app.client
            .post(app.url(&format!("/hardware/?token={TOKEN}")))
            .json(&body),
    ];
    for attempt in attempts {
        let response = attempt.send().await.expect("request");
        assert_eq!(
            response.headers()["www-authenticate"],
            r#"Bearer realm="hardware""#
        );
        assert_problem(response, 401).await;
    }
    let unauthorized_delete = app
        .client
        .delete(app.url("/hardware/1"))
        .send()
        .await
        .expect("request");
    assert_problem(unauthorized_delete, 401).await;
    assert_eq!(app.list("/hardware/?wait=0").await.len(), 2);
}

#[sqlx::test(migrations = "../../sql")]
async fn without_a_configured_token_no_write_is_possible(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default().read_only()).await;
    let detail = assert_problem(app.create("GCP", "e2").await, 401).await;
    assert!(detail.contains("ADMIN_TOKEN_FILE"), "{detail}");
}

#[sqlx::test(migrations = "../../sql")]
async fn a_duplicate_is_a_409_whatever_its_case(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    assert_problem(app.create("Amazon", "c5").await, 409).await;
    assert_problem(app.create("AMAZON", "C5").await, 409).await;
    let azure = app.list("/hardware/?provider=Azure").await;
    assert_problem(app.update(azure[0].id, "Amazon", "c5").await, 409).await;
}

#[sqlx::test(migrations = "../../sql")]
async fn invalid_bodies_get_precise_statuses(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    assert_problem(app.create("", "c6").await, 422).await;
    assert_problem(app.create("Amazon", &"x".repeat(129)).await, 422).await;
    assert_problem(app.create("Amazon", "bad\u{7}bell").await, 422).await;

    let raw = |body: &'static str, content_type: &'static str| {
        app.client
            .post(app.url("/hardware/"))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body)
    };
    let cases = [
        (raw("{not json", "application/json"), 400),
        (raw(r#"{"provider": "A"}"#, "application/json"), 422),
        (
            raw(
                r#"{"provider": "A", "name": "b", "extra": 1}"#,
                "application/json",
            ),
            422,
        ),
        (
            raw(r#"{"provider": 5, "name": "b"}"#, "application/json"),
            422,
        ),
        (raw(r#"{"provider": "A", "name": "b"}"#, "text/plain"), 415),
    ];
    for (request, status) in cases {
        assert_problem(request.send().await.expect("request"), status).await;
    }
    let huge = format!(r#"{{"provider": "A", "name": "{}"}}"#, "x".repeat(20_000));
    let response = app
        .client
        .post(app.url("/hardware/"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("request");
    assert_problem(response, 413).await;
    assert_eq!(
        app.list("/hardware/?wait=0").await.len(),
        2,
        "nothing was written"
    );
}

#[sqlx::test(migrations = "../../sql")]
async fn update_and_delete_work_and_404_on_missing_ids(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let id = app.list("/hardware/?provider=Azure").await[0].id;

    let response = app.update(id, "Azure", "H16mr_v2").await;
    assert_eq!(response.status(), 200);
    let updated: Item = response.json().await.expect("item");
    assert_eq!(&*updated.name, "H16mr_v2");
    assert_eq!(app.list("/hardware/?q=v2").await.len(), 1);
    // Writing the same values again is still a 200, not a 404.
    assert_eq!(app.update(id, "Azure", "H16mr_v2").await.status(), 200);

    assert_problem(app.update(999_999, "Azure", "X").await, 404).await;
    assert_eq!(app.delete(id).await.status(), 204);
    assert_problem(app.get(&format!("/hardware/{id}")).await, 404).await;
    assert_problem(app.delete(id).await, 404).await;
    assert_eq!(app.list("/hardware/").await.len(), 1);
}

#[sqlx::test(migrations = "../../sql")]
async fn a_replica_sees_writes_made_through_another(pool: MySqlPool) {
    let slow_poll = Options::default().arg("inventory-refresh", "1h");
    let writer = spawn_app(pool.clone(), Options::default()).await;
    let reader = spawn_app(pool, slow_poll).await;
    let created: Item = writer
        .create("GCP", "t2a")
        .await
        .json()
        .await
        .expect("item");
    // By id: the reader misses in its snapshot and asks the database.
    let response = reader
        .get(&format!("/hardware/{}?wait=0", created.id))
        .await;
    assert_eq!(response.status(), 200);
    // ...and refreshes its snapshot on the way, so the list has it too.
    assert_eq!(reader.list("/hardware/?wait=0").await.len(), 3);
}
