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

fn options(path: &Path) -> Result<SqliteConnectOptions, StoreError> {
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
        .foreign_keys(true))
}

pub(crate) async fn open(path: &Path, max_connections: u32) -> Result<SqlitePool, StoreError> {
    SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options(path)?)
        .await
        .map_err(|e| StoreError::sqlx("sqlite", e))
}
