//! Writes under contention, least privilege, limits.

use crate::helpers::{Options, TOKEN, assert_problem, spawn_app};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{Connection, MySqlConnection, MySqlPool};
use std::sync::Arc;

#[sqlx::test(migrations = "../../sql")]
async fn concurrent_creates_of_the_same_item_give_one_201_and_409s(pool: MySqlPool) {
    let app = Arc::new(spawn_app(pool.clone(), Options::default()).await);
    let attempts: Vec<_> = (0..20)
        .map(|_| {
            let app = Arc::clone(&app);
            tokio::spawn(async move { app.create("GCP", "race-condition").await.status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for attempt in attempts {
        statuses.push(attempt.await.expect("task"));
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        19,
        "{statuses:?}"
    );
    let rows: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM hardware WHERE name = 'race-condition'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(rows, 1, "nothing half-written or duplicated");
}

/// A password a careless script would break: a quote, a backslash, a dollar.
const HOSTILE_PASSWORD: &str = "it's a \\ $HOME \"test\" password";

/// The serving user's statements, as the script Compose and Kubernetes run
/// writes them (run for real, told to print its SQL instead of applying it),
/// for `user` on `database` with [`HOSTILE_PASSWORD`].
fn app_grants(database: &str, user: &str) -> Vec<String> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../k8s/base/db-init/10-users.sh"
    );
    let secrets = crate::helpers::TempDir::new("users-sql");
    std::fs::write(
        secrets.0.join("db-app-password"),
        format!("{HOSTILE_PASSWORD}\n"),
    )
    .expect("write");
    std::fs::write(secrets.0.join("db-migrate-password"), "unused").expect("write");
    let output = std::process::Command::new("bash")
        .arg(script)
        .env("USERS_SECRETS_DIR", &secrets.0)
        .env("USERS_PRINT_SQL", "1")
        .env("MARIADB_DATABASE", database)
        .output()
        .expect("bash runs the script");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.contains("hardware_app"))
        .map(|line| {
            line.replace("hardware_app", user)
                .trim_end_matches(';')
                .to_owned()
        })
        .collect()
}

#[sqlx::test(migrations = "../../sql")]
async fn the_serving_user_can_change_rows_but_never_the_schema(pool: MySqlPool) {
    let database: String = sqlx::query_scalar("SELECT DATABASE()")
        .fetch_one(&pool)
        .await
        .expect("name");
    let user = format!(
        "app_{}",
        &database[database.len().saturating_sub(8)..].to_lowercase()
    )
    .replace('-', "_");
    let grants = app_grants(&database, &user);
    assert_eq!(
        grants.len(),
        2,
        "CREATE USER and GRANT found in the init script: {grants:?}"
    );
    for statement in &grants {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&pool)
            .await
            .expect(statement);
    }
    let options: MySqlConnectOptions = (*pool.connect_options())
        .clone()
        .username(&user)
        .password(HOSTILE_PASSWORD);
    let mut app = MySqlConnection::connect_with(&options)
        .await
        .expect("app user connects");

    sqlx::query("INSERT INTO hardware (provider, name) VALUES ('P', 'dml-allowed')")
        .execute(&mut app)
        .await
        .expect("INSERT allowed");
    sqlx::query("DELETE FROM hardware WHERE name = 'dml-allowed'")
        .execute(&mut app)
        .await
        .expect("DELETE allowed");
    for ddl in [
        "CREATE TABLE sneaky (id INT)",
        "ALTER TABLE hardware ADD COLUMN sneaky INT",
        "DROP TABLE hardware",
        "TRUNCATE TABLE hardware",
    ] {
        let err = sqlx::query(ddl).execute(&mut app).await.expect_err(ddl);
        let denied = err
            .as_database_error()
            .and_then(|db| db.code())
            .is_some_and(|code| code == "42000");
        assert!(denied, "{ddl}: {err}");
    }
    app.close().await.expect("close");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP USER '{user}'@'%'")))
        .execute(&pool)
        .await
        .expect("cleanup");
}

#[sqlx::test(migrations = "../../sql")]
async fn oversized_headers_are_refused_before_any_handler(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    let response = app
        .client
        .post(app.url("/hardware/"))
        .bearer_auth(TOKEN)
        .header("x-filler", "a".repeat(100_000))
        .json(&serde_json::json!({"provider": "P", "name": "n"}))
        .send()
        .await;
    match response {
        // hyper answers 431 (or closes the connection) for a head over its limit.
        Ok(response) => assert_eq!(response.status(), 431),
        Err(err) => assert!(
            err.is_request() || err.is_connect() || err.is_body(),
            "{err}"
        ),
    }
    assert_eq!(
        app.list("/hardware/?wait=0").await.len(),
        2,
        "nothing written"
    );
}

#[sqlx::test(migrations = "../../sql")]
async fn the_token_in_a_cookie_or_custom_header_is_not_accepted(pool: MySqlPool) {
    let app = spawn_app(pool, Options::default()).await;
    for (name, value) in [
        ("cookie", format!("token={TOKEN}")),
        ("x-api-key", TOKEN.to_owned()),
        ("authorization", format!("Bearer {TOKEN}x")),
        ("authorization", "Bearer".to_owned()),
    ] {
        let response = app
            .client
            .post(app.url("/hardware/"))
            .header(name, value)
            .json(&serde_json::json!({"provider": "P", "name": "n"}))
            .send()
            .await
            .expect("request");
        assert_problem(response, 401).await;
    }
}
