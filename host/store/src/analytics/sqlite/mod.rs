//! SQLite analytics backend: raw events and the rollups in one file,
//! rollups maintained in Rust inside the insert's transaction.
//!
//! Exactly-once: raw rows and rollup deltas commit together, the delta is
//! built only from rows this transaction inserted, and ids at or below the
//! server's high-water mark are skipped. A crash before COMMIT leaves
//! nothing; a replay after COMMIT finds the ids already stored.
//!
//! Writes go through one `rusqlite` connection on a thread of its own
//! ([`write`]); reads through a small sqlx pool. What a batch adds to the
//! rollups is summed first ([`deltas`]), then written once per rollup row.

mod deltas;
mod write;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use opm_model::Event;
use serde_json::Value;
use sqlx::sqlite::SqlitePool;
use sqlx::{AssertSqlSafe, Column, Row as _, TypeInfo, ValueRef};

use super::{AnalyticsStore, Dialect, InsertReport, Row};
use crate::error::StoreError;
use crate::time;
use write::WriterThread;

const B: &str = "sqlite";

/// Rows inserted without a `sync` after which `insert` checkpoints by
/// itself, so the write-ahead log stays bounded for callers that never
/// flush (the batch writer syncs on every flush).
const AUTO_SYNC_ROWS: u64 = 200_000;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::sqlx(B, e)
}

pub struct SqliteAnalytics {
    pool: SqlitePool,
    writer: WriterThread,
    /// Rows committed since the last checkpoint.
    unsynced: AtomicU64,
}

impl SqliteAnalytics {
    pub async fn open(path: &Path) -> Result<SqliteAnalytics, StoreError> {
        let writer = WriterThread::open(path).await?;
        Ok(SqliteAnalytics {
            pool: crate::sqlite::open(path, 4).await?,
            writer,
            unsynced: AtomicU64::new(0),
        })
    }

    /// Folds the write-ahead log into the database file; see
    /// [`AnalyticsStore::sync`].
    async fn checkpoint(&self) -> Result<(), StoreError> {
        self.writer.call(write::checkpoint).await?;
        self.unsynced.store(0, Ordering::Relaxed);
        Ok(())
    }
}

/// Decodes any SQLite result row into JSON by the values' runtime types.
pub(crate) fn row_to_json(row: &sqlx::sqlite::SqliteRow) -> Result<Row, StoreError> {
    let mut out = Row::new();
    for (i, col) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(err)?;
        let v = if raw.is_null() {
            Value::Null
        } else {
            match raw.type_info().name() {
                "INTEGER" | "BOOLEAN" => Value::from(row.try_get::<i64, _>(i).map_err(err)?),
                "REAL" | "NUMERIC" => Value::from(row.try_get::<f64, _>(i).map_err(err)?),
                "BLOB" => Value::from(
                    String::from_utf8_lossy(&row.try_get::<Vec<u8>, _>(i).map_err(err)?)
                        .into_owned(),
                ),
                _ => Value::from(row.try_get::<String, _>(i).map_err(err)?),
            }
        };
        out.insert(col.name().to_string(), v);
    }
    Ok(out)
}

#[async_trait]
impl AnalyticsStore for SqliteAnalytics {
    fn backend(&self) -> &'static str {
        B
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        self.writer.call(write::migrate).await
    }

    async fn insert(&self, events: &[Event]) -> Result<InsertReport, StoreError> {
        // The writer thread needs the events for as long as it runs; a
        // clone shares every string (reference counts) and copies the rest.
        let events = events.to_vec();
        let report = self
            .writer
            .call(move |conn| write::insert(conn, &events))
            .await?;
        let unsynced =
            self.unsynced.fetch_add(report.inserted, Ordering::Relaxed) + report.inserted;
        if unsynced >= AUTO_SYNC_ROWS {
            // The batch is committed whatever happens here; a failed
            // checkpoint is retried by the next sync.
            if let Err(e) = self.checkpoint().await {
                tracing::warn!(error = %e, "analytics checkpoint failed; retried at the next sync");
            }
        }
        Ok(report)
    }

    async fn sync(&self) -> Result<(), StoreError> {
        if self.unsynced.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        self.checkpoint().await
    }

    async fn high_water_marks(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT server, event_id FROM high_water ORDER BY server")
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        Ok(rows.into_iter().map(|(s, id)| (s, id as u64)).collect())
    }

    async fn fetch(&self, sql: &str) -> Result<Vec<Row>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(row_to_json).collect()
    }

    async fn drop_raw_before(&self, cutoff_ms: i64) -> Result<Vec<u32>, StoreError> {
        let months: Vec<i64> =
            sqlx::query_scalar("SELECT DISTINCT month FROM raw_events ORDER BY month")
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        let mut dropped = Vec::new();
        for m in months {
            let m = m as u32;
            if time::month_end_ms(m) <= cutoff_ms {
                self.writer
                    .call(move |conn| {
                        conn.execute("DELETE FROM raw_events WHERE month = ?1", [m as i64])
                            .map_err(write::err)?;
                        // A month of deletions is a large WAL: fold it in now.
                        write::checkpoint(conn)
                    })
                    .await?;
                self.unsynced.store(0, Ordering::Relaxed);
                dropped.push(m);
            }
        }
        Ok(dropped)
    }

    async fn raw_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM raw_events")
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        Ok(n as u64)
    }
}
