//! Every SQL statement the service runs, checked at compile time against the
//! schema in `sql/` (offline data in `.sqlx/`).
//!
//! # Every statement is bounded in time
//! A network that fails silently (packets dropped, nothing reset) would
//! otherwise leave a query waiting until TCP gives up, about 15 minutes.
//! [`Database`] runs each operation on a pooled connection under
//! `DATABASE_STATEMENT_TIMEOUT` per statement; when the limit passes, the
//! connection is *detached* and dropped (its socket closed, never returned to
//! the pool, where it would hang the next caller) and the caller gets
//! [`timed_out`], which the API answers with 503. The server enforces the same
//! limit (`max_statement_time`, set on every connection of the serving pool),
//! so a slow statement is also stopped where it runs. Getting a connection is
//! bounded separately by `DATABASE_ACQUIRE_TIMEOUT` (which includes the
//! liveness test of an idle connection). sqlx 0.9 cannot set TCP keepalive on
//! MySQL sockets; the per-statement limit makes it unnecessary here.

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{Executor, MySqlConnection, MySqlPool};
use std::sync::Arc;
use std::time::Duration;

/// The migrations in `sql/`, embedded in the binary. A database may already
/// hold migrations this binary does not know: a newer release applied them
/// (its pods migrate before serving, while this release's pods still serve,
/// restart, or come back with a rollback). That is not an error: migrations
/// are written to be compatible with the release before them (add, then use;
/// stop using, then drop), which a rolling update needs anyway. A migration
/// this binary knows whose file changed is still refused (checksum).
pub static MIGRATOR: std::sync::LazyLock<Migrator> = std::sync::LazyLock::new(|| {
    let mut migrator = sqlx::migrate!("../../sql");
    migrator.set_ignore_missing(true);
    migrator
});

/// An inventory row, as the service holds it: the texts are shared with the
/// engine and the lists made from it, and one provider's text is held once
/// per read of the table (a few providers name many items).
pub type Record = crate::engine::Target;

/// A row as the database hands it over.
struct Row {
    id: u64,
    provider: String,
    name: String,
}

/// Makes records of rows, holding each provider's text once.
#[derive(Debug, Default)]
struct Interner {
    providers: std::collections::HashMap<String, Arc<str>>,
}

impl Interner {
    fn record(&mut self, row: Row) -> Record {
        let provider = match self.providers.get(&row.provider) {
            Some(provider) => Arc::clone(provider),
            None => {
                let provider: Arc<str> = Arc::from(row.provider.as_str());
                self.providers.insert(row.provider, Arc::clone(&provider));
                provider
            }
        };
        Record {
            id: row.id,
            provider,
            name: Arc::from(row.name),
        }
    }
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
///
/// With `statement_limit`, every connection asks the server to abort any
/// statement running longer (MariaDB's `max_statement_time`).
pub fn lazy_pool(
    options: MySqlConnectOptions,
    max: u32,
    acquire_timeout: Duration,
    statement_limit: Option<Duration>,
) -> MySqlPool {
    let pool = MySqlPoolOptions::new()
        .max_connections(max)
        .min_connections(0)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(true);
    let pool = match statement_limit {
        Some(limit) => pool.after_connect(move |conn, _meta| {
            Box::pin(async move {
                conn.execute(
                    sqlx::query("SET SESSION max_statement_time = ?").bind(limit.as_secs_f64()),
                )
                .await
                .map(drop)
            })
        }),
        None => pool,
    };
    pool.connect_lazy_with(options)
}

/// The error of a statement that did not finish within `limit`; the API
/// answers it with 503 (an I/O error: the database is not answering).
pub fn timed_out(limit: Duration) -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("the database did not answer within {limit:?}"),
    ))
}

/// The serving pool with its per-statement time limit; cheap to clone.
#[derive(Debug, Clone)]
pub struct Database {
    pool: MySqlPool,
    limit: Duration,
}

impl Database {
    pub fn new(pool: MySqlPool, statement_limit: Duration) -> Self {
        Self {
            pool,
            limit: statement_limit,
        }
    }

    /// The limit of one statement.
    pub fn statement_limit(&self) -> Duration {
        self.limit
    }

    /// Runs `work` (at most `statements` statements) on one pooled connection
    /// within `statements` × the limit; past it, the connection is closed
    /// rather than returned to the pool.
    async fn bounded<T>(
        &self,
        statements: u32,
        work: impl AsyncFnOnce(&mut MySqlConnection) -> sqlx::Result<T>,
    ) -> sqlx::Result<T> {
        let limit = self.limit * statements.max(1);
        let mut conn = self.pool.acquire().await?;
        match tokio::time::timeout(limit, work(&mut conn)).await {
            Ok(result) => result,
            Err(_) => {
                // Whatever state the connection is in (a half-read answer, an
                // open transaction), nobody may use it again: the server rolls
                // back what was open when the socket closes.
                drop(conn.detach());
                Err(timed_out(limit))
            }
        }
    }

    pub async fn fingerprint(&self) -> sqlx::Result<Fingerprint> {
        self.bounded(1, async |conn| fingerprint(conn).await).await
    }

    pub async fn all(&self) -> sqlx::Result<Vec<Record>> {
        self.bounded(1, async |conn| all(conn).await).await
    }

    pub async fn find(&self, id: u64) -> sqlx::Result<Option<Record>> {
        self.bounded(1, async |conn| find(conn, id).await).await
    }

    pub async fn insert(&self, provider: &str, name: &str) -> sqlx::Result<u64> {
        self.bounded(1, async |conn| insert(conn, provider, name).await)
            .await
    }

    /// Four statements: begin, lock, update, commit.
    pub async fn update(&self, id: u64, provider: &str, name: &str) -> sqlx::Result<bool> {
        self.bounded(4, async |conn| update(conn, id, provider, name).await)
            .await
    }

    pub async fn delete(&self, id: u64) -> sqlx::Result<bool> {
        self.bounded(1, async |conn| delete(conn, id).await).await
    }

    pub async fn ping(&self) -> sqlx::Result<()> {
        self.bounded(1, async |conn| ping(conn).await).await
    }

    pub async fn migrations_applied(&self) -> sqlx::Result<bool> {
        self.bounded(1, async |conn| migrations_applied(conn).await)
            .await
    }

    /// An import: each of its statements gets the limit.
    pub async fn import(&self, request: &wire::ImportRequest) -> sqlx::Result<wire::ImportSummary> {
        let statements = crate::import::statements(request);
        self.bounded(statements, async |conn| {
            crate::import::apply(conn, request).await
        })
        .await
    }

    /// Applies pending migrations (no time limit: a migration may be long).
    pub async fn migrate(&self) -> anyhow::Result<()> {
        migrate(&self.pool).await
    }
}

pub async fn fingerprint(conn: &mut MySqlConnection) -> sqlx::Result<Fingerprint> {
    let row = sqlx::query!(
        r#"SELECT COUNT(*) AS "count!: i64",
                  CAST(COALESCE(MAX(id), 0) AS UNSIGNED) AS "max_id!: u64",
                  MAX(updated_at) AS "last_update: DateTime<Utc>"
           FROM hardware"#
    )
    .fetch_one(conn)
    .await?;
    Ok(Fingerprint {
        count: row.count,
        max_id: row.max_id,
        last_update: row.last_update,
    })
}

pub async fn all(conn: &mut MySqlConnection) -> sqlx::Result<Vec<Record>> {
    // Row by row: the table is never held twice (as rows, then as records).
    let mut rows =
        sqlx::query_as!(Row, "SELECT id, provider, name FROM hardware ORDER BY id").fetch(conn);
    let mut interner = Interner::default();
    let mut records = Vec::new();
    while let Some(row) = rows.try_next().await? {
        records.push(interner.record(row));
    }
    records.shrink_to_fit();
    Ok(records)
}

pub async fn find(conn: &mut MySqlConnection, id: u64) -> sqlx::Result<Option<Record>> {
    let row = sqlx::query_as!(
        Row,
        "SELECT id, provider, name FROM hardware WHERE id = ?",
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|row| Interner::default().record(row)))
}

/// Inserts a row and returns its id; a duplicate (provider, name) is a unique violation.
pub async fn insert(conn: &mut MySqlConnection, provider: &str, name: &str) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        "INSERT INTO hardware (provider, name) VALUES (?, ?)",
        provider,
        name
    )
    .execute(conn)
    .await?;
    Ok(done.last_insert_id())
}

/// Updates a row; `false` when no row has that id.
pub async fn update(
    conn: &mut MySqlConnection,
    id: u64,
    provider: &str,
    name: &str,
) -> sqlx::Result<bool> {
    let mut tx = sqlx::Connection::begin(conn).await?;
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
pub async fn delete(conn: &mut MySqlConnection, id: u64) -> sqlx::Result<bool> {
    let done = sqlx::query!("DELETE FROM hardware WHERE id = ?", id)
        .execute(conn)
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
pub async fn migrations_applied(conn: &mut MySqlConnection) -> sqlx::Result<bool> {
    // Runtime query: the bookkeeping table is sqlx's, not part of our schema.
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success = 1")
            .fetch_all(conn)
            .await?;
    Ok(MIGRATOR
        .iter()
        .all(|migration| applied.contains(&migration.version)))
}

/// Whether the database answers at all.
pub async fn ping(conn: &mut MySqlConnection) -> sqlx::Result<()> {
    sqlx::query("SELECT 1").execute(conn).await.map(drop)
}
