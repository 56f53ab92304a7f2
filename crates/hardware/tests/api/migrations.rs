//! Migrations are safe to start from several replicas at once.

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
