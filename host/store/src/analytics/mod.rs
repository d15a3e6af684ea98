//! Analytics: raw events plus rollups, behind one trait with two backends.
//!
//! Both backends keep the same rollup tables with the same column names
//! (see `docs/storage.md`), so the read queries in [`query`] are written
//! once and differ only through the small [`Dialect`]. ClickHouse feeds the
//! rollups with materialized views; SQLite maintains them in the insert's
//! own transaction.
//!
//! Idempotency: every backend remembers, per server, the highest event id
//! it has stored (its high-water mark) and [`AnalyticsStore::insert`] writes
//! only events above it. Host event ids increase per server, so replaying a
//! journal after a crash re-offers events the store already has and they
//! are skipped before any row (or materialized view) sees them.

pub mod clickhouse;
pub mod query;
pub mod rows;
pub mod sqlite;
pub mod writer;

use async_trait::async_trait;
use opm_model::Event;

use crate::error::StoreError;

/// One result row, keyed by column alias.
pub type Row = serde_json::Map<String, serde_json::Value>;

/// What one insert call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InsertReport {
    /// Events written now.
    pub inserted: u64,
    /// Events skipped: already stored (id at or below the server's
    /// high-water mark), repeated within the batch, or without an id.
    pub skipped: u64,
    /// After the call, the highest stored event id of every server the
    /// batch touched.
    pub high_water: Vec<(String, u64)>,
}

/// SQL differences between the backends that the shared queries need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    ClickHouse,
}

impl Dialect {
    /// A string literal.
    pub fn str(self, s: &str) -> String {
        match self {
            // ClickHouse reads backslash escapes inside literals.
            Dialect::ClickHouse => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            Dialect::Sqlite => format!("'{}'", s.replace('\'', "''")),
        }
    }

    /// Minimum of a column that ClickHouse keeps as an aggregate state.
    pub fn min_merge(self, col: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("minMerge({col})"),
            Dialect::Sqlite => format!("min({col})"),
        }
    }

    /// Maximum of a column that ClickHouse keeps as an aggregate state.
    pub fn max_merge(self, col: &str) -> String {
        match self {
            Dialect::ClickHouse => format!("maxMerge({col})"),
            Dialect::Sqlite => format!("max({col})"),
        }
    }

    /// The most recent player name across rows of a rollup. ClickHouse
    /// keeps `argMax(name, time)` states; SQLite keeps `player_name` with
    /// its `name_ms` and uses its rule that a bare column next to a single
    /// `max()` comes from the row holding the maximum.
    pub fn last_name(self) -> &'static str {
        match self {
            Dialect::ClickHouse => "argMaxMerge(player_name) AS player_name",
            Dialect::Sqlite => "player_name, max(name_ms) AS name_ms",
        }
    }

    /// Float division that yields 0 instead of NaN or NULL on zero.
    pub fn ratio(self, num: &str, den: &str) -> String {
        format!("(CASE WHEN ({den}) = 0 THEN 0.0 ELSE ({num}) * 1.0 / ({den}) END)")
    }
}

/// The analytics store: raw events in, rollup rows out.
#[async_trait]
pub trait AnalyticsStore: Send + Sync + 'static {
    /// "clickhouse" or "sqlite".
    fn backend(&self) -> &'static str;
    fn dialect(&self) -> Dialect;
    /// Creates or upgrades the schema; safe to run repeatedly.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Stores the events whose id is above their server's high-water mark,
    /// with their rollups. Events of one server must arrive in id order
    /// across calls (the host assigns increasing ids per server).
    async fn insert(&self, events: &[Event]) -> Result<InsertReport, StoreError>;
    /// `insert`, for a batch the caller shares: a store that hands the
    /// events to a thread of its own (SQLite's writer) keeps a reference
    /// instead of copying every event. The store drops its reference
    /// before it returns.
    async fn insert_shared(
        &self,
        events: std::sync::Arc<Vec<Event>>,
    ) -> Result<InsertReport, StoreError> {
        self.insert(&events).await
    }
    /// Makes everything inserted so far durable against power loss too,
    /// and lets the store fold its write-ahead log (SQLite: a passive WAL
    /// checkpoint, which also keeps the log from growing). Inserts are
    /// already durable against a crash of this process when `insert`
    /// returns. The batch writer calls it on every flush.
    async fn sync(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// The highest stored event id of every server.
    async fn high_water_marks(&self) -> Result<Vec<(String, u64)>, StoreError>;
    /// Runs a read query (from [`query`]) and returns its rows.
    async fn fetch(&self, sql: &str) -> Result<Vec<Row>, StoreError>;
    /// Drops every monthly partition of raw events that lies entirely before
    /// `cutoff_ms`; returns the partitions (`YYYYMM`) dropped. Rollups stay.
    async fn drop_raw_before(&self, cutoff_ms: i64) -> Result<Vec<u32>, StoreError>;
    /// Number of raw events stored (deduplicated), for checks and metrics.
    async fn raw_count(&self) -> Result<u64, StoreError>;
    /// Answers when the store can serve reads (readiness probes).
    async fn ping(&self) -> Result<(), StoreError> {
        self.fetch("SELECT 1 AS ok").await.map(|_| ())
    }
}
