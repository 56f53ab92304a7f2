//! Importing an inventory (`POST /hardware/import`, `hardware items import`):
//! every item checked by the same rules as a single write, the missing ones
//! added, and with `prune` the ones the list does not name removed — in one
//! transaction, a statement per [`BATCH`] items, never one round trip per row.
//!
//! Whether two items are the same is the database's call (its collation is
//! case- and accent-insensitive), so duplicates are found by the unique key,
//! not by comparing strings here. A rejected item means nothing is applied,
//! unless `partial`; `dry_run` does the work and rolls it back, so its summary
//! is exactly what a real run would report.

use sqlx::{Connection, MySql, MySqlConnection, QueryBuilder};
use std::collections::HashSet;
use wire::{ImportRequest, ImportSummary, ItemInput, Rejected};

/// Items per statement (two placeholders each; far below MySQL's 65,535).
pub const BATCH: usize = 1000;
/// Most items one import may carry (part of the wire contract).
pub use wire::MAX_IMPORT_ITEMS as MAX_ITEMS;

async fn count(conn: &mut MySqlConnection) -> sqlx::Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hardware")
        .fetch_one(conn)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// The most statements [`apply`] runs for `request` (each is bounded in time
/// on its own: see [`crate::db::Database`]).
pub fn statements(request: &ImportRequest) -> u32 {
    let chunks = request.items.len().div_ceil(BATCH);
    // begin, two counts, the inserts, commit; with prune: the lookups, the
    // list of ids and at most as many deletes as there are rows (in batches).
    let mut n = 4 + chunks;
    if request.prune {
        n += chunks + 1 + chunks.max(1) * 2;
    }
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Runs the import described by `request`; see the module documentation.
pub async fn apply(
    conn: &mut MySqlConnection,
    request: &ImportRequest,
) -> sqlx::Result<ImportSummary> {
    let mut rejected = Vec::new();
    let mut valid: Vec<&ItemInput> = Vec::with_capacity(request.items.len());
    for (index, item) in request.items.iter().enumerate() {
        match crate::rules::check_item(item) {
            Ok(()) => valid.push(item),
            Err(reason) => rejected.push(Rejected { index, reason }),
        }
    }
    let commit = !request.dry_run && (rejected.is_empty() || request.partial);
    let mut tx = conn.begin().await?;
    let before = count(&mut tx).await?;
    for chunk in valid.chunks(BATCH) {
        let mut insert = QueryBuilder::<MySql>::new("INSERT INTO hardware (provider, name) ");
        insert.push_values(chunk, |mut row, item| {
            row.push_bind(&item.provider).push_bind(&item.name);
        });
        // An item already there (by the unique key's collation) is left as it is.
        insert.push(" ON DUPLICATE KEY UPDATE id = id");
        insert.build().execute(&mut *tx).await?;
    }
    let added = count(&mut tx).await?.saturating_sub(before);
    let mut removed = 0;
    if request.prune {
        let mut keep = HashSet::new();
        for chunk in valid.chunks(BATCH) {
            let mut find =
                QueryBuilder::<MySql>::new("SELECT id FROM hardware WHERE (provider, name) IN ");
            find.push_tuples(chunk, |mut row, item| {
                row.push_bind(&item.provider).push_bind(&item.name);
            });
            let ids: Vec<u64> = find.build_query_scalar().fetch_all(&mut *tx).await?;
            keep.extend(ids);
        }
        let all: Vec<u64> = sqlx::query_scalar("SELECT id FROM hardware")
            .fetch_all(&mut *tx)
            .await?;
        let gone: Vec<u64> = all.into_iter().filter(|id| !keep.contains(id)).collect();
        for chunk in gone.chunks(BATCH) {
            let mut delete = QueryBuilder::<MySql>::new("DELETE FROM hardware WHERE id IN (");
            let mut ids = delete.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            delete.push(")");
            removed += delete.build().execute(&mut *tx).await?.rows_affected();
        }
    }
    if commit {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(ImportSummary {
        added,
        unchanged: (valid.len() as u64).saturating_sub(added),
        removed,
        rejected,
        applied: commit,
    })
}
