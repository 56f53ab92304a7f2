//! Every SQL statement the service runs, checked at compile time against the
//! schema in `sql/` (offline data in `.sqlx/`).

use chrono::{DateTime, Utc};
use sqlx::MySqlPool;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use std::time::Duration;

/// The migrations in `sql/`, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../sql");

/// An inventory row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub id: u64,
    pub provider: String,
    pub name: String,
}

/// A cheap summary of the table that changes whenever a row is added, removed
/// or updated: replicas poll it and re-read the rows only when it moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    pub count: i64,
    pub max_id: u64,
    pub last_update: Option<DateTime<Utc>>,
}

/// A pool that connects on first use, so the service starts (and reports
/// not-ready) while the database is still coming up, instead of crash-looping.
pub fn lazy_pool(options: MySqlConnectOptions, max: u32, acquire_timeout: Duration) -> MySqlPool {
    MySqlPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(true)
        .connect_lazy_with(options)
}

pub async fn fingerprint(pool: &MySqlPool) -> sqlx::Result<Fingerprint> {
    let row = sqlx::query!(
        r#"SELECT COUNT(*) AS "count!: i64",
                  CAST(COALESCE(MAX(id), 0) AS UNSIGNED) AS "max_id!: u64",
                  MAX(updated_at) AS "last_update: DateTime<Utc>"
           FROM hardware"#
    )
    .fetch_one(pool)
    .await?;
    Ok(Fingerprint {
        count: row.count,
        max_id: row.max_id,
        last_update: row.last_update,
    })
}

pub async fn all(pool: &MySqlPool) -> sqlx::Result<Vec<Record>> {
    sqlx::query_as!(
        Record,
        "SELECT id, provider, name FROM hardware ORDER BY id"
    )
    .fetch_all(pool)
    .await
}

pub async fn find(pool: &MySqlPool, id: u64) -> sqlx::Result<Option<Record>> {
    sqlx::query_as!(
        Record,
        "SELECT id, provider, name FROM hardware WHERE id = ?",
        id
    )
    .fetch_optional(pool)
    .await
}

/// Inserts a row and returns its id; a duplicate (provider, name) is a unique violation.
pub async fn insert(pool: &MySqlPool, provider: &str, name: &str) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "INSERT INTO hardware (provider, name) VALUES (?, ?)",
        provider,
        name
    )
    .execute(pool)
    .await?;
    Ok(done.last_insert_id())
}

/// Updates a row; `false` when no row has that id.
pub async fn update(pool: &MySqlPool, id: u64, provider: &str, name: &str) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    // MySQL counts only *changed* rows as affected, so existence is checked under
    // the row lock rather than inferred from the update's result.
    let exists = sqlx::query_scalar!("SELECT id FROM hardware WHERE id = ? FOR UPDATE", id)
        .fetch_optional(&mut *tx)
        .await?
        .is_some();
    if exists {
        sqlx::query!(
            "UPDATE hardware SET provider = ?, name = ? WHERE id = ?",
            provider,
            name,
            id
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(exists)
}

/// Deletes a row; `false` when no row has that id.
pub async fn delete(pool: &MySqlPool, id: u64) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM hardware WHERE id = ?", id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Applies pending migrations; safe when several replicas do it at once.
///
/// sqlx's own migration lock calls `GET_LOCK(name, -1)`, which MariaDB answers
/// with NULL at once (a negative timeout is invalid there), so on MariaDB it
/// locks nothing and concurrent migrators insert the same version twice. We
/// hold our own named lock, per database, on the connection that migrates.
pub async fn migrate(pool: &MySqlPool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    loop {
        // 1 = acquired; 0 = another migrator holds it after 10 s: keep waiting.
        let got: Option<i64> = sqlx::query_scalar(
            "SELECT GET_LOCK(CONCAT('hardware-migrate:', SHA1(DATABASE())), 10)",
        )
        .fetch_one(&mut *conn)
        .await?;
        match got {
            Some(1) => break,
            Some(_) => tracing::info!("another instance is migrating; waiting"),
            None => anyhow::bail!("the database refused the migration lock"),
        }
    }
    // `run_direct` on the connection itself (every migration, no skipping):
    // `run(&mut conn)` trips the "Acquire is not general enough" inference
    // issue inside spawned tasks.
    let result = MIGRATOR.run_direct(None, &mut *conn, false).await;
    let released =
        sqlx::query("SELECT RELEASE_LOCK(CONCAT('hardware-migrate:', SHA1(DATABASE())))")
            .execute(&mut *conn)
            .await;
    result?;
    released?;
    Ok(())
}

/// Whether every embedded migration has been applied successfully.
pub async fn migrations_applied(pool: &MySqlPool) -> sqlx::Result<bool> {
    // Runtime query: the bookkeeping table is sqlx's, not part of our schema.
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
            .fetch_all(pool)
            .await?;
    Ok(MIGRATOR
        .iter()
        .all(|migration| applied.contains(&migration.version)))
}

/// Whether the database answers at all.
pub async fn ping(pool: &MySqlPool) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await.map(drop)
}
