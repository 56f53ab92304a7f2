//! Migrations are safe to start from several replicas at once, and from an
//! older release against a database a newer one migrated.

use sqlx::MySqlPool;
use sqlx::mysql::MySqlPoolOptions;

#[sqlx::test(migrations = false)]
async fn three_servers_migrating_an_empty_database_at_once_apply_the_schema_once(pool: MySqlPool) {
    let options = pool.connect_options();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let options = (*options).clone();
        runs.push(tokio::spawn(async move {
            let own_pool = MySqlPoolOptions::new()
                .max_connections(2)
                .connect_with(options)
                .await
                .expect("connects");
            hardware::db::migrate(&own_pool).await
        }));
    }
    for run in runs {
        run.await.expect("task").expect("every run succeeds");
    }
    let applied: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success = 1")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(
        applied,
        i64::try_from(hardware::db::MIGRATOR.iter().count()).expect("fits")
    );
    let seeds: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hardware")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert_eq!(seeds, 2, "seed rows inserted once");
    assert!(
        hardware::db::migrations_applied(&mut pool.acquire().await.expect("connection"))
            .await
            .expect("query")
    );
}

/// A rolling update's new pods migrate first; the old release's pods keep
/// serving, restart, or come back with a rollback, and run `hardware migrate`
/// again against a database that holds a migration they do not know.
#[sqlx::test(migrations = false)]
async fn an_older_release_migrates_and_is_ready_against_a_database_a_newer_one_migrated(
    pool: MySqlPool,
) {
    hardware::db::migrate(&pool).await.expect("migrates");
    // What the newer release left: one more applied migration.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99991231000000, 'from a newer release', 1, X'00', 1)",
    )
    .execute(&pool)
    .await
    .expect("a newer release's migration");
    hardware::db::migrate(&pool)
        .await
        .expect("the older release still migrates (nothing to do)");
    assert!(
        hardware::db::migrations_applied(&mut pool.acquire().await.expect("connection"))
            .await
            .expect("query"),
        "and is ready"
    );
    // A migration this release knows, changed after it was applied, is still refused.
    sqlx::query(
        "UPDATE _sqlx_migrations SET checksum = X'00' WHERE version < 99991231000000 LIMIT 1",
    )
    .execute(&pool)
    .await
    .expect("tamper");
    assert!(
        hardware::db::migrate(&pool).await.is_err(),
        "a changed migration is refused"
    );
}
