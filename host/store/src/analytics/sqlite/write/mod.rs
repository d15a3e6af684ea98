//! The write side of the embedded analytics store: one SQLite connection
//! on its own thread, through `rusqlite`.
//!
//! Why a thread of its own and not sqlx: a batch is a thousand raw rows of
//! 49 values plus a few hundred rollup upserts. Through sqlx every value
//! was copied into an owned argument and every statement crossed to the
//! driver's worker thread and back; here the values are bound straight
//! from the events and the statements run where the rows are built, off
//! the async runtime. The connection's page cache stays warm because it
//! is the only one that writes (SQLite drops a connection's cache whenever
//! another connection has written).
//!
//! A batch is one transaction: its raw rows ([`raw_row`], text bound
//! without copies through [`borrowed`]), then one upsert per rollup row it
//! changed ([`rollups`]), then the servers' new high-water marks.

use foldhash::HashMap;
use foldhash::HashMapExt as _;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use opm_model::{Event, Str};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::super::InsertReport;
use super::deltas::Deltas;
use crate::error::StoreError;
use raw_row::RawRows;

mod borrowed;
mod raw_row;
mod rollups;

const B: &str = "sqlite";

/// Page cache of the writer, in KiB (SQLite's negative `cache_size`): the
/// rollup pages a batch updates stay in memory between batches instead of
/// being re-read from the file.
const WRITER_CACHE_KIB: i64 = 256 * 1024;

/// Page size of a new analytics database. Larger than SQLite's 4 KiB
/// default: raw rows are appended a few hundred bytes at a time, and
/// bigger pages mean fewer page splits, page-cache lookups and log frames
/// per row.
const PAGE_SIZE: u32 = 16 * 1024;

/// Size the write-ahead log is cut back to when it restarts. The log is
/// rewritten from its start after every complete fold; a log file that
/// keeps its size is overwritten in place, while one that grows makes the
/// kernel allocate and zero new blocks for every frame (a quarter of the
/// writer's time when the log never restarted). Cycles under `loadgen`
/// run B write tens of MiB, so this keeps them in place and still bounds
/// the file after a burst.
const WAL_KEEP_BYTES: i64 = 256 * 1024 * 1024;

pub(super) fn err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::SystemIoFailure
                    | C::DiskFull
                    | C::CannotOpen
            ) =>
        {
            StoreError::Unavailable {
                backend: B,
                message: e.to_string(),
            }
        }
        _ => StoreError::Rejected {
            backend: B,
            message: e.to_string(),
        },
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable {
        backend: B,
        message: "analytics writer thread stopped".into(),
    }
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Handle to the writer thread; the thread ends when the handle drops.
pub(super) struct WriterThread {
    jobs: mpsc::Sender<Job>,
}

impl WriterThread {
    /// Opens the database on a new thread (named `name`) and keeps the
    /// connection there.
    pub async fn open(path: &Path, name: &str) -> Result<WriterThread, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let (jobs, queue) = mpsc::channel::<Job>();
        let (opened_tx, opened) = oneshot::channel();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                opm_model::sched::enter_background();
                let mut conn = match open_connection(&path) {
                    Ok(c) => {
                        let _ = opened_tx.send(Ok(()));
                        c
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                for job in queue {
                    // A panicking job drops its reply (the caller sees the
                    // writer as unavailable and retries) and rolls back its
                    // transaction; the thread carries on.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn)));
                }
            })?;
        opened.await.map_err(|_| stopped())??;
        Ok(WriterThread { jobs })
    }

    /// Runs `f` on the writer thread with its connection.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(move |conn| {
                let _ = reply.send(f(conn));
            }))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Queues `f` on the thread without waiting for it.
    pub fn detach(
        &self,
        f: impl FnOnce(&mut Connection) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.jobs.send(Box::new(f)).map_err(|_| stopped())
    }
}

/// WAL with `synchronous = NORMAL` is durable against a crash of this
/// process; `sync` (a checkpoint) covers power loss. The writer never
/// checkpoints on its own (`wal_autocheckpoint = 0`): a checkpoint inside
/// a commit stalls the insert that triggered it (page copies and two
/// fsyncs), so the store checkpoints from `sync` (docs/storage.md,
/// "Durability").
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    crate::sqlite::configure_library();
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(Duration::from_secs(30)).map_err(err)?;
    // Takes effect only on a new, empty database (before WAL mode writes
    // its first page); an existing file keeps the page size it has.
    conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE}"))
        .map_err(err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Config(format!(
            "analytics database {} cannot use write-ahead logging (journal mode {mode})",
            path.display()
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -{WRITER_CACHE_KIB}; PRAGMA wal_autocheckpoint = 0;
         PRAGMA journal_size_limit = {WAL_KEEP_BYTES};"
    ))
    .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

const SCHEMA: &str =
    include_str!("../../../../../../migrations/analytics-sqlite/001_raw_and_rollups.sql");
/// Applied after `SCHEMA`; idempotent.
const PERIODS: &str =
    include_str!("../../../../../../migrations/analytics-sqlite/002_period_leaderboards.sql");
/// Moves a `raw_events` table of the first layout aside; `SCHEMA` then
/// creates the current one and `RAW_EVENTS_COPY` fills it.
const RAW_EVENTS_ASIDE: &str =
    include_str!("../../../../../../migrations/analytics-sqlite/003_raw_events_rowid.sql");
/// Applied after `PERIODS`; idempotent.
const DROP_ID_INDEX: &str =
    include_str!("../../../../../../migrations/analytics-sqlite/004_drop_raw_events_id.sql");
const RAW_EVENTS_COPY: &str =
    "INSERT INTO raw_events SELECT * FROM raw_events_without_rowid ORDER BY server, event_id;
    DROP TABLE raw_events_without_rowid;";

/// Creates or upgrades the schema; safe to run on every open.
pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    // The first layout kept raw events in a WITHOUT ROWID table keyed by
    // (server, event_id); it is copied into the rowid table once.
    let first_layout: bool = tx
        .query_row(
            "SELECT count(*) > 0 FROM sqlite_master
             WHERE type = 'table' AND name = 'raw_events' AND sql LIKE '%WITHOUT ROWID%'",
            [],
            |r| r.get(0),
        )
        .map_err(err)?;
    if first_layout {
        tracing::info!("analytics: moving raw events to the rowid layout (once)");
        tx.execute_batch(RAW_EVENTS_ASIDE).map_err(err)?;
    }
    tx.execute_batch(SCHEMA).map_err(err)?;
    if first_layout {
        tx.execute_batch(RAW_EVENTS_COPY).map_err(err)?;
    }
    tx.execute_batch(PERIODS).map_err(err)?;
    tx.execute_batch(DROP_ID_INDEX).map_err(err)?;
    tx.commit().map_err(err)
}

/// What a checkpoint did, in WAL frames (pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checkpointed {
    /// Another checkpoint held the lock; nothing was copied.
    pub busy: bool,
    /// Frames in the log.
    pub log: i64,
    /// Frames of the log now in the database file.
    pub copied: i64,
}

impl Checkpointed {
    /// Frames still only in the log.
    pub fn behind(&self) -> i64 {
        (self.log - self.copied).max(0)
    }
}

/// Copies the write-ahead log into the database file (fsyncing both) as
/// far as readers allow.
pub(super) fn checkpoint(conn: &mut Connection) -> Result<Checkpointed, StoreError> {
    let done = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok(Checkpointed {
                busy: r.get::<_, i64>(0)? != 0,
                log: r.get(1)?,
                copied: r.get(2)?,
            })
        })
        .map_err(err)?;
    if done.busy {
        tracing::debug!("analytics checkpoint could not take its lock; next sync retries");
    }
    Ok(done)
}

/// One server's events of a batch, in id order, and its high-water mark.
struct ServerEvents<'a> {
    name: &'a Str,
    events: Vec<&'a Event>,
    mark: u64,
}

/// Groups a batch by server, keeping each server's events in id order.
/// A server's events arrive in order from its one pipeline worker, so the
/// sort is nearly always skipped; consecutive events of one server find
/// their group without a lookup.
fn by_server(events: &[Event]) -> Vec<ServerEvents<'_>> {
    let mut groups: Vec<ServerEvents<'_>> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut last = usize::MAX;
    for e in events {
        if groups.get(last).is_none_or(|g| *g.name != e.server) {
            last = *index.entry(&e.server).or_insert_with(|| {
                groups.push(ServerEvents {
                    name: &e.server,
                    events: Vec::new(),
                    mark: 0,
                });
                groups.len() - 1
            });
        }
        groups[last].events.push(e);
    }
    for g in &mut groups {
        if !g.events.is_sorted_by_key(|e| e.id) {
            g.events.sort_by_key(|e| e.id);
        }
    }
    groups
}

/// Stores the events above their server's high-water mark with their
/// rollup deltas and the new marks, in one transaction.
pub(super) fn insert(conn: &mut Connection, events: &[Event]) -> Result<InsertReport, StoreError> {
    let mut servers = by_server(events);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    {
        let mut stmt = tx
            .prepare_cached("SELECT event_id FROM high_water WHERE server = ?1")
            .map_err(err)?;
        for server in &mut servers {
            let mark: Option<i64> = stmt
                .query_row([&**server.name], |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(err)?;
            server.mark = mark.unwrap_or(0) as u64;
        }
    }
    let mut report = InsertReport::default();
    let mut deltas = Deltas::default();
    {
        let mut raw = RawRows::prepare(&tx)?;
        for server in &mut servers {
            for e in &server.events {
                // Only ids above the mark, which moves in this transaction:
                // that keeps (server, event_id) a key without an index.
                if e.id == 0 || e.id <= server.mark {
                    report.skipped += 1;
                    continue;
                }
                server.mark = e.id;
                raw.insert(e)?;
                report.inserted += 1;
                deltas.add(e);
            }
        }
    }
    rollups::apply(&tx, &deltas)?;
    {
        let mut stmt = tx
            .prepare_cached(
                "INSERT INTO high_water (server, event_id) VALUES (?1, ?2)
                 ON CONFLICT (server) DO UPDATE SET event_id = max(event_id, excluded.event_id)",
            )
            .map_err(err)?;
        for server in &servers {
            stmt.execute(params![&**server.name, server.mark as i64])
                .map_err(err)?;
        }
    }
    tx.commit().map_err(err)?;
    let mut high_water: Vec<(String, u64)> = servers
        .iter()
        .map(|s| (s.name.to_string(), s.mark))
        .collect();
    high_water.sort();
    report.high_water = high_water;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opm_model::{EventKind, Participant};

    fn kill(server: &str, id: u64) -> Event {
        let mut e = Event::new(EventKind::PlayerKill);
        e.server = server.into();
        e.id = id;
        e.time_ms = 1_780_000_000_000 + id as i64;
        e.map = "dm/mohdm6".into();
        e.weapon = "Thompson".into();
        e.actor = Some(Participant::new("a"));
        e.target = Some(Participant::new("b"));
        e
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    proptest::proptest! {
        /// Whatever order a batch arrives in, the rows stored are exactly
        /// those a sort by (server, id) and a skip of ids at or below the
        /// running mark would store, with the same marks.
        #[test]
        fn batches_store_what_a_sorted_scan_would(
            first in proptest::collection::vec((0..4u8, 0..12u64), 0..40),
            second in proptest::collection::vec((0..4u8, 0..12u64), 0..40),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut conn = open_connection(&dir.path().join("p.db")).unwrap();
            migrate(&mut conn).unwrap();
            let mut expected: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
            for batch in [first, second] {
                let events: Vec<Event> =
                    batch.iter().map(|(s, id)| kill(&format!("s{s}"), *id)).collect();
                let mut sorted = batch.clone();
                sorted.sort();
                let (mut inserted, mut skipped) = (0, 0);
                for (s, id) in sorted {
                    let stored = expected.entry(format!("s{s}")).or_default();
                    if id == 0 || stored.last().is_some_and(|m| id <= *m) {
                        skipped += 1;
                    } else {
                        stored.push(id);
                        inserted += 1;
                    }
                }
                let r = insert(&mut conn, &events).unwrap();
                proptest::prop_assert_eq!((r.inserted, r.skipped), (inserted, skipped));
            }
            let mut stmt = conn
                .prepare("SELECT server, event_id FROM raw_events ORDER BY server, event_id")
                .unwrap();
            let mut got: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
            for row in stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .unwrap()
            {
                let (s, id) = row.unwrap();
                got.entry(s).or_default().push(id as u64);
            }
            expected.retain(|_, ids| !ids.is_empty());
            proptest::prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn inserts_skip_stored_ids_and_sum_rollups_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("a.db")).unwrap();
        migrate(&mut conn).unwrap();
        let r = insert(&mut conn, &[kill("s1", 2), kill("s1", 1), kill("s2", 1)]).unwrap();
        assert_eq!((r.inserted, r.skipped), (3, 0));
        assert_eq!(r.high_water, vec![("s1".into(), 2), ("s2".into(), 1)]);
        // A replay of stored ids and a new one: only the new one counts.
        let r = insert(&mut conn, &[kill("s1", 1), kill("s1", 2), kill("s1", 3)]).unwrap();
        assert_eq!((r.inserted, r.skipped), (1, 2));
        assert_eq!(count(&conn, "SELECT count(*) FROM raw_events"), 4);
        assert_eq!(
            count(
                &conn,
                "SELECT sum(kills) FROM player_stats_daily WHERE player_id = 'a'"
            ),
            4
        );
        assert_eq!(
            count(
                &conn,
                "SELECT kills FROM player_period_stats WHERE period = 'all' AND player_id = 'a'"
            ),
            4
        );
        // (server, event_id) is a key by the high-water marks alone: no
        // pair is stored twice, and no index is kept to enforce it.
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM (SELECT 1 FROM raw_events GROUP BY server, event_id HAVING count(*) > 1)"
            ),
            0
        );
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM sqlite_master WHERE name = 'raw_events_id'"
            ),
            0
        );
    }

    #[test]
    fn the_id_index_of_an_earlier_database_is_dropped_and_its_rows_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("indexed.db");
        {
            let mut conn = open_connection(&path).unwrap();
            conn.execute_batch(SCHEMA).unwrap();
            conn.execute_batch(PERIODS).unwrap();
            conn.execute_batch(
                "CREATE UNIQUE INDEX raw_events_id ON raw_events (server, event_id)",
            )
            .unwrap();
            insert(&mut conn, &[kill("s1", 1), kill("s1", 2)]).unwrap();
        }
        let mut conn = open_connection(&path).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM sqlite_master WHERE name = 'raw_events_id'"
            ),
            0
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM raw_events"), 2);
        let r = insert(&mut conn, &[kill("s1", 2), kill("s1", 3)]).unwrap();
        assert_eq!((r.inserted, r.skipped), (1, 1));
    }

    /// Extra fields are stored as `[name, value]` pairs in sent order,
    /// escaped, and the buffer they are written through carries nothing
    /// from one row into the next.
    #[test]
    fn extra_fields_are_stored_as_json_pairs_row_by_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("x.db")).unwrap();
        migrate(&mut conn).unwrap();
        let mut long = kill("s1", 1);
        long.extra = vec![
            ("zeta".into(), "1".into()),
            ("quote".into(), "say \"hi\"".into()),
        ];
        let mut short = kill("s1", 2);
        short.extra = vec![("a".into(), "b".into())];
        let none = kill("s1", 3);
        insert(&mut conn, &[long, short, none]).unwrap();
        let stored: Vec<String> = conn
            .prepare("SELECT extra FROM raw_events ORDER BY event_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            stored,
            vec![
                r#"[["zeta","1"],["quote","say \"hi\""]]"#.to_string(),
                r#"[["a","b"]]"#.to_string(),
                "[]".to_string(),
            ]
        );
    }

    #[test]
    fn a_new_database_gets_the_large_page_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_connection(&dir.path().join("new.db")).unwrap();
        migrate(&mut conn).unwrap();
        assert_eq!(count(&conn, "PRAGMA page_size"), i64::from(PAGE_SIZE));
    }

    #[test]
    fn a_first_layout_database_is_upgraded_with_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The first layout: raw_events WITHOUT ROWID with its primary key.
            let conn = open_connection(&path).unwrap();
            let old = SCHEMA.replace(
                "    raw TEXT NOT NULL\n);",
                "    raw TEXT NOT NULL,\n    PRIMARY KEY (server, event_id)\n) WITHOUT ROWID;",
            );
            assert_ne!(old, SCHEMA, "the test must build the first layout");
            conn.execute_batch(&old).unwrap();
            conn.execute_batch(PERIODS).unwrap();
        }
        let mut conn = open_connection(&path).unwrap();
        // Rows written in the first layout by the same code path.
        insert(&mut conn, &[kill("s1", 1), kill("s1", 2)]).unwrap();
        let layout = |c: &Connection| -> String {
            c.query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'raw_events'",
                [],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert!(layout(&conn).contains("WITHOUT ROWID"));
        migrate(&mut conn).unwrap();
        assert!(!layout(&conn).contains("WITHOUT ROWID"));
        assert_eq!(count(&conn, "SELECT count(*) FROM raw_events"), 2);
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM sqlite_master WHERE name = 'raw_events_without_rowid'"
            ),
            0
        );
        // Idempotent, and the upgraded store goes on where it was.
        migrate(&mut conn).unwrap();
        let r = insert(&mut conn, &[kill("s1", 2), kill("s1", 3)]).unwrap();
        assert_eq!((r.inserted, r.skipped), (1, 1));
        assert_eq!(count(&conn, "SELECT count(*) FROM raw_events"), 3);
    }
}
