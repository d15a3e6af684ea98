//! Opening all three stores from one configuration.

use std::sync::Arc;

use crate::analytics::AnalyticsStore;
use crate::analytics::clickhouse::{ClickHouseAnalytics, ClickHouseConfig};
use crate::analytics::query::StatsQueries;
use crate::analytics::sqlite::SqliteAnalytics;
use crate::analytics::writer::{BatchWriter, WriterConfig};
use crate::config::{RelationalKind, StoreConfig};
use crate::error::StoreError;
use crate::live::LiveStore;
use crate::live::memory::MemoryLive;
use crate::live::redis::RedisLive;
use crate::relational::RelationalStore;
use crate::relational::sql::{PgRelational, SqliteRelational};
use crate::relational::state::SqlStateStore;

/// The three stores a server runs with.
#[derive(Clone)]
pub struct Stores {
    pub analytics: Arc<dyn AnalyticsStore>,
    pub relational: Arc<dyn RelationalStore>,
    pub live: Arc<dyn LiveStore>,
    pub config: StoreConfig,
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    pub analytics: &'static str,
    pub relational: &'static str,
    /// Relational migrations applied now (analytics DDL is idempotent and
    /// always re-applied).
    pub relational_applied: u32,
}

async fn open_analytics(config: &StoreConfig) -> Result<Arc<dyn AnalyticsStore>, StoreError> {
    Ok(match &config.clickhouse_url {
        Some(url) => Arc::new(ClickHouseAnalytics::new(ClickHouseConfig::parse(url)?)?),
        None => Arc::new(SqliteAnalytics::open(&config.analytics_sqlite_path()).await?),
    })
}

async fn open_relational(config: &StoreConfig) -> Result<Arc<dyn RelationalStore>, StoreError> {
    Ok(match config.relational_kind()? {
        RelationalKind::Postgres(url) => Arc::new(PgRelational::connect(&url).await?),
        RelationalKind::Sqlite(path) => Arc::new(SqliteRelational::open(&path).await?),
    })
}

/// Applies every schema: analytics DDL and relational migrations.
pub async fn migrate(config: &StoreConfig) -> Result<MigrateReport, StoreError> {
    let analytics = open_analytics(config).await?;
    analytics.migrate().await?;
    let relational = open_relational(config).await?;
    let relational_applied = relational.migrate().await?;
    Ok(MigrateReport {
        analytics: analytics.backend(),
        relational: relational.backend(),
        relational_applied,
    })
}

impl Stores {
    /// Opens the configured backends and brings their schemas up to date
    /// (idempotent), so a fresh embedded install needs no separate step.
    pub async fn open(config: &StoreConfig) -> Result<Stores, StoreError> {
        let analytics = open_analytics(config).await?;
        analytics.migrate().await?;
        let relational = open_relational(config).await?;
        relational.migrate().await?;
        let live: Arc<dyn LiveStore> = match &config.redis_url {
            Some(url) => Arc::new(RedisLive::connect(url, &config.key_prefix).await?),
            None => Arc::new(MemoryLive::new()),
        };
        tracing::info!(
            analytics = analytics.backend(),
            relational = relational.backend(),
            live = live.backend(),
            "stores open"
        );
        Ok(Stores {
            analytics,
            relational,
            live,
            config: config.clone(),
        })
    }

    /// The read queries over the analytics store.
    pub fn stats(&self) -> StatsQueries {
        StatsQueries::new(self.analytics.clone())
    }

    /// Starts a batch writer into the analytics store (needs a runtime).
    pub fn batch_writer(&self, config: WriterConfig) -> BatchWriter {
        BatchWriter::spawn(self.analytics.clone(), config)
    }

    /// The plugin runtime's state store, blocking on `handle`.
    pub fn state_store(&self, handle: tokio::runtime::Handle) -> SqlStateStore {
        SqlStateStore::new(self.relational.clone(), handle)
    }

    /// Ready when all three stores answer; the first failure otherwise.
    pub async fn ready(&self) -> Result<(), StoreError> {
        self.analytics.ping().await?;
        self.relational.ping().await?;
        self.live.ping().await
    }

    /// Applies retention now and then every `every` (a day is plenty:
    /// partitions are months). Failures are logged and retried next time.
    pub fn spawn_retention(&self, every: std::time::Duration) -> tokio::task::JoinHandle<()> {
        let stores = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match stores.apply_retention(crate::time::now_ms()).await {
                    Ok(dropped) if !dropped.is_empty() => {
                        tracing::info!(?dropped, "raw event months dropped")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "retention failed; retrying at the next run")
                    }
                }
            }
        })
    }

    /// Drops raw events older than the configured retention.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<Vec<u32>, StoreError> {
        let cutoff = now_ms - self.config.raw_retention_days as i64 * 86_400_000;
        self.analytics.drop_raw_before(cutoff).await
    }
}
