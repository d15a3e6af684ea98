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

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// Rows inserted without a `sync` after which `insert` syncs by itself,
/// so the write-ahead log stays bounded for callers that never flush (the
/// batch writer syncs on every flush).
const AUTO_SYNC_ROWS: u64 = 200_000;

/// Rows synced since the last fold after which a sync starts the next
/// fold (a passive WAL checkpoint on the folding thread).
const FOLD_ROWS: u64 = 20_000;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::sqlx(B, e)
}

pub struct SqliteAnalytics {
    pool: SqlitePool,
    writer: WriterThread,
    /// A second connection on its own thread that folds the write-ahead
    /// log into the database file while the writer goes on inserting.
    folder: WriterThread,
    /// True from the start of a fold until the writer has caught up.
    folding: Arc<AtomicBool>,
    /// Set by a fold that left the last frames to the writer.
    catch_up: Arc<AtomicBool>,
    wal: PathBuf,
    /// Rows committed since the last sync.
    unsynced: AtomicU64,
    /// Rows synced since the last fold started.
    unfolded: AtomicU64,
}

impl SqliteAnalytics {
    pub async fn open(path: &Path) -> Result<SqliteAnalytics, StoreError> {
        let writer = WriterThread::open(path, "analytics-writer").await?;
        let folder = WriterThread::open(path, "analytics-fold").await?;
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Ok(SqliteAnalytics {
            pool: crate::sqlite::open(path, 4).await?,
            writer,
            folder,
            folding: Arc::new(AtomicBool::new(false)),
            catch_up: Arc::new(AtomicBool::new(false)),
            wal: PathBuf::from(wal),
            unsynced: AtomicU64::new(0),
            unfolded: AtomicU64::new(0),
        })
    }

    /// Makes every committed row durable: an `fdatasync` of the
    /// write-ahead log, which holds every committed transaction not yet
    /// folded into the database file (a fold syncs the database file
    /// before the log can be reused). It runs off the writer's thread;
    /// the fold used to run on it, and its page copies and two fsyncs
    /// stalled every insert behind it (docs/storage.md, "Durability").
    async fn sync_log(&self) -> Result<(), StoreError> {
        let wal = self.wal.clone();
        let synced = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new()
                .read(true)
                .open(&wal)?
                .sync_data()
        })
        .await
        .map_err(|e| StoreError::Unavailable {
            backend: B,
            message: format!("log sync task: {e}"),
        })?;
        match synced {
            Ok(()) => Ok(()),
            // No log: everything is in the database file, which the fold
            // that removed the log synced.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a fold on the folding thread unless one is under way.
    ///
    /// A fold alone never lets the log restart: the writer appends while
    /// the fold copies, so the fold always ends a little behind, and SQLite
    /// rewrites the log from its start only when a write transaction
    /// begins with every frame copied. Under sustained load the log then
    /// grew without end (1.5 GB in 20 s of `loadgen` run B), and every
    /// frame appended to it cost the kernel a fresh zeroed block. So the
    /// fold passes over the log until little is left, and then hands the
    /// rest to the writer ([`SqliteAnalytics::insert`] catches up before
    /// its next transaction, which then restarts the log).
    fn fold(&self) {
        if self.folding.swap(true, Ordering::AcqRel) {
            return;
        }
        let folding = self.folding.clone();
        let catch_up = self.catch_up.clone();
        let queued = self.folder.detach(move |conn| {
            for _ in 0..FOLD_PASSES {
                match write::checkpoint(conn) {
                    Ok(done) if done.busy => break,
                    Ok(done) if done.behind() > CATCH_UP_FRAMES => continue,
                    Ok(_) => {
                        // `folding` stays set until the writer caught up.
                        catch_up.store(true, Ordering::Release);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "analytics log fold failed; the next sync retries");
                        break;
                    }
                }
            }
            folding.store(false, Ordering::Release);
        });
        if queued.is_err() {
            self.folding.store(false, Ordering::Release);
        }
    }
}

/// Passes a fold makes over the log before it gives up on catching up
/// (the writer outpaces it) and leaves the rest to the next fold.
const FOLD_PASSES: usize = 4;

/// Frames (pages) a fold may leave for the writer to copy itself before
/// its next transaction: 8 MiB, a few milliseconds of the writer's time.
const CATCH_UP_FRAMES: i64 = 2048;

/// Runs on the writer thread before a transaction: copies what the last
/// fold left, so that the transaction starts with the whole log in the
/// database file and SQLite rewrites the log from its start.
fn catch_up(conn: &mut rusqlite::Connection, catch_up: &AtomicBool, folding: &AtomicBool) {
    if !catch_up.swap(false, Ordering::AcqRel) {
        return;
    }
    if let Err(e) = write::checkpoint(conn) {
        tracing::warn!(error = %e, "analytics log catch-up failed; the next fold retries");
    }
    folding.store(false, Ordering::Release);
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
        // The writer thread needs the events for as long as it runs.
        self.insert_shared(Arc::new(events.to_vec())).await
    }

    async fn insert_shared(&self, events: Arc<Vec<Event>>) -> Result<InsertReport, StoreError> {
        let (pending, folding) = (self.catch_up.clone(), self.folding.clone());
        let report = self
            .writer
            .call(move |conn| {
                catch_up(conn, &pending, &folding);
                write::insert(conn, &events)
            })
            .await?;
        let unsynced =
            self.unsynced.fetch_add(report.inserted, Ordering::Relaxed) + report.inserted;
        if unsynced >= AUTO_SYNC_ROWS {
            // The batch is committed whatever happens here; a failed sync
            // is retried by the next one.
            if let Err(e) = self.sync().await {
                tracing::warn!(error = %e, "analytics sync failed; retried at the next sync");
            }
        }
        Ok(report)
    }

    async fn sync(&self) -> Result<(), StoreError> {
        // Taken before the log is synced: rows committed from here on are
        // counted for the next sync.
        let rows = self.unsynced.swap(0, Ordering::AcqRel);
        if rows == 0 {
            return Ok(());
        }
        if let Err(e) = self.sync_log().await {
            self.unsynced.fetch_add(rows, Ordering::AcqRel);
            return Err(e);
        }
        if self.unfolded.fetch_add(rows, Ordering::Relaxed) + rows >= FOLD_ROWS {
            self.unfolded.store(0, Ordering::Relaxed);
            self.fold();
        }
        Ok(())
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
                        write::checkpoint(conn).map(drop)
                    })
                    .await?;
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

#[cfg(test)]
pub(crate) mod tests {
    use std::time::{Duration, Instant};

    use opm_model::{EventKind, Participant};

    use super::*;

    /// A kill on server `s1` with event id `id`.
    pub(crate) fn kill(id: u64) -> Event {
        let mut e = Event::new(EventKind::PlayerKill);
        e.server = "s1".into();
        e.id = id;
        e.time_ms = 1_780_000_000_000 + id as i64;
        e.actor = Some(Participant::new("a"));
        e.target = Some(Participant::new("b"));
        e
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_sync_folds_the_log_on_its_own_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.db");
        let db_len = || std::fs::metadata(&path).unwrap().len();
        let store = SqliteAnalytics::open(&path).await.unwrap();
        store.migrate().await.unwrap();
        store.sync().await.unwrap();
        let events: Vec<Event> = (1..=FOLD_ROWS).map(kill).collect();
        store.insert(&events).await.unwrap();
        assert_eq!(store.unsynced.load(Ordering::Relaxed), FOLD_ROWS);
        // Committed rows live in the log until a fold copies them over.
        let before = db_len();
        store.sync().await.unwrap();
        assert_eq!(store.unsynced.load(Ordering::Relaxed), 0);
        wait_for_fold(&store).await;
        assert!(db_len() > before, "the fold copied nothing");
        // Nothing new: nothing to sync, nothing folded.
        store.sync().await.unwrap();
        assert!(store.catch_up.load(Ordering::Acquire));
        // The next insert catches up first and ends the fold; a new
        // connection sees every row.
        store.insert(&[kill(FOLD_ROWS + 1)]).await.unwrap();
        assert!(!store.folding.load(Ordering::Acquire));
        store.sync().await.unwrap();
        drop(store);
        let store = SqliteAnalytics::open(&path).await.unwrap();
        assert_eq!(store.raw_count().await.unwrap(), FOLD_ROWS + 1);
    }

    /// Waits until the fold queued by a sync has left the rest to the
    /// writer.
    async fn wait_for_fold(store: &SqliteAnalytics) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !store.catch_up.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "the fold never finished");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Frames in the write-ahead log (the fold connection asks; a passive
    /// checkpoint of what is left).
    async fn log_frames(store: &SqliteAnalytics) -> i64 {
        store.folder.call(write::checkpoint).await.unwrap().log
    }

    /// The fold can never copy the frames the writer appends while it
    /// runs, and SQLite only rewrites the log from its start when a write
    /// begins with every frame copied; without the writer's catch-up the
    /// log grew for as long as inserts kept coming. A reader pinning an
    /// older snapshot stands in for the writer racing the fold here: the
    /// fold cannot copy past it either.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_restarts_after_a_fold_that_fell_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let store = SqliteAnalytics::open(&path).await.unwrap();
        store.migrate().await.unwrap();
        let batch = |from: u64| (from..from + 500).map(kill).collect::<Vec<_>>();
        store.insert(&batch(1)).await.unwrap();
        let reader = rusqlite::Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let seen: i64 = reader
            .query_row("SELECT count(*) FROM raw_events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, 500);
        store.insert(&batch(501)).await.unwrap();
        store.unsynced.store(FOLD_ROWS, Ordering::Relaxed);
        store.sync().await.unwrap();
        wait_for_fold(&store).await;
        let behind_reader = log_frames(&store).await;
        reader.execute_batch("COMMIT").unwrap();
        // The catch-up copies the rest, so this insert starts the log over.
        store.insert(&[kill(1001)]).await.unwrap();
        assert!(!store.folding.load(Ordering::Acquire));
        let restarted = log_frames(&store).await;
        assert!(
            restarted < behind_reader / 2,
            "the log did not restart: {restarted} frames after, {behind_reader} before"
        );
        assert_eq!(store.raw_count().await.unwrap(), 1001);
    }

    #[tokio::test]
    async fn fewer_rows_than_a_fold_are_synced_but_not_folded() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteAnalytics::open(&dir.path().join("b.db"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        store.sync().await.unwrap();
        store.insert(&[kill(1), kill(2)]).await.unwrap();
        store.sync().await.unwrap();
        assert_eq!(store.unsynced.load(Ordering::Relaxed), 0);
        assert_eq!(store.unfolded.load(Ordering::Relaxed), 2);
        assert!(!store.folding.load(Ordering::Acquire));
    }

    /// The batch writer takes its batch back without copying it only if
    /// the store let go of it when `insert_shared` returned.
    #[tokio::test]
    async fn a_shared_batch_is_released_when_the_insert_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteAnalytics::open(&dir.path().join("s.db"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let batch = Arc::new(vec![kill(1), kill(2), kill(3)]);
        let report = store.insert_shared(batch.clone()).await.unwrap();
        assert_eq!(report.inserted, 3);
        assert_eq!(Arc::strong_count(&batch), 1);
        assert_eq!(store.raw_count().await.unwrap(), 3);
    }
}
