//! Opening the embedded SQLite databases: WAL, a busy timeout, foreign
//! keys, and one pool per file. Writers serialise inside SQLite; the busy
//! timeout makes them wait for each other instead of failing.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::StoreError;

/// Process-wide SQLite settings; they take effect only before the library
/// initialises, so every connection this crate opens calls this first.
///
/// Memory statistics off: with them on, every allocation SQLite makes
/// (each bound text value, each record) takes a global mutex, a few per
/// cent of the analytics writer's time; nothing here reads them.
pub(crate) fn configure_library() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config before sqlite3_initialize, with the
        // argument SQLITE_CONFIG_MEMSTATUS takes (an int). Called later, it
        // returns SQLITE_MISUSE and changes nothing.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            )
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::debug!(rc, "SQLite was initialised before it could be configured");
        }
    });
}

fn options(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
    configure_library();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    Ok(SqliteConnectOptions::from_str("sqlite:")
        .map_err(|e| StoreError::sqlx("sqlite", e))?
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // WAL + NORMAL is durable against process crashes; the ingest
        // journal covers the rest (docs/storage.md).
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(30))
        .foreign_keys(true)
        // A statement that changes several rows keeps a statement journal
        // (for rolling itself back); on disk, every plugin-state commit
        // created and wrote a temporary file (perf, docs/ingest.md §9).
        .pragma("temp_store", "memory"))
}

pub(crate) async fn open(path: &Path, max_connections: u32) -> Result<SqlitePool, StoreError> {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options(path)?)
        .await
        .map_err(|e| StoreError::sqlx("sqlite", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.cargo/config.toml` builds SQLite without the process-wide page
    /// cache (one mutex for every page any connection touches).
    #[test]
    fn each_connection_has_a_page_cache_of_its_own() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let options: Vec<String> = conn
            .prepare("PRAGMA compile_options")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert!(
            options.iter().any(|o| o.starts_with("THREADSAFE=")),
            "{options:?}"
        );
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }

    #[tokio::test]
    async fn every_pooled_connection_keeps_temporary_data_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let pool = open(&dir.path().join("db.sqlite"), 2).await.unwrap();
        let (a, b) = (pool.acquire().await.unwrap(), pool.acquire().await.unwrap());
        for mut conn in [a, b] {
            let (mode,): (i64,) = sqlx::query_as("PRAGMA temp_store")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(mode, 2, "2 is MEMORY");
            let (journal,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
            assert_eq!(journal, "wal");
        }
    }
}
