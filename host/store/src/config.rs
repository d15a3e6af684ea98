//! Which backend plays each role, from configuration only.
//!
//! Unset URLs mean the embedded defaults under the server's data directory:
//! `analytics.sqlite`, `relational.sqlite` and in-process live state.

use std::path::{Path, PathBuf};

use crate::error::StoreError;

/// Default retention of raw events; rollups are kept forever.
pub const DEFAULT_RAW_RETENTION_DAYS: u32 = 90;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Home of the embedded stores.
    pub data_dir: PathBuf,
    /// `CLICKHOUSE_URL`, e.g. `http://127.0.0.1:8123/opm_stats` (the path
    /// names the database; `?database=` and `user:password@` work too).
    pub clickhouse_url: Option<String>,
    /// `DATABASE_URL` (or `POSTGRES_URL`): `postgres://…` or `sqlite://…`.
    pub database_url: Option<String>,
    /// `REDIS_URL`, e.g. `redis://127.0.0.1:6379/0`.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel (`OPM_REDIS_PREFIX`), so
    /// several deployments or test runs can share one Redis.
    pub key_prefix: String,
    /// Raw events older than this many days are dropped by whole months.
    pub raw_retention_days: u32,
}

impl StoreConfig {
    /// Embedded defaults under `data_dir`, nothing external.
    pub fn embedded(data_dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            data_dir: data_dir.into(),
            clickhouse_url: None,
            database_url: None,
            redis_url: None,
            key_prefix: "opm:".to_string(),
            raw_retention_days: DEFAULT_RAW_RETENTION_DAYS,
        }
    }

    /// Reads `CLICKHOUSE_URL`, `DATABASE_URL` / `POSTGRES_URL`, `REDIS_URL`,
    /// `OPM_REDIS_PREFIX` and `OPM_RAW_RETENTION_DAYS`; empty values count
    /// as unset.
    pub fn from_env(data_dir: impl Into<PathBuf>) -> Result<StoreConfig, StoreError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut config = StoreConfig::embedded(data_dir);
        config.clickhouse_url = var("CLICKHOUSE_URL");
        config.database_url = var("DATABASE_URL").or_else(|| var("POSTGRES_URL"));
        config.redis_url = var("REDIS_URL");
        if let Some(prefix) = var("OPM_REDIS_PREFIX") {
            config.key_prefix = prefix;
        }
        if let Some(days) = var("OPM_RAW_RETENTION_DAYS") {
            config.raw_retention_days = days.parse().map_err(|_| {
                StoreError::Config(format!(
                    "OPM_RAW_RETENTION_DAYS={days} is not a number of days"
                ))
            })?;
        }
        Ok(config)
    }

    /// Which relational backend `database_url` selects.
    pub fn relational_kind(&self) -> Result<RelationalKind, StoreError> {
        match self.database_url.as_deref() {
            None => Ok(RelationalKind::Sqlite(
                self.data_dir.join("relational.sqlite"),
            )),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(RelationalKind::Postgres(url.to_string()))
            }
            Some(url) if url.starts_with("sqlite:") => Ok(RelationalKind::Sqlite(sqlite_path(url))),
            Some(url) => Err(StoreError::Config(format!(
                "DATABASE_URL must start with postgres:// or sqlite:, got {}",
                redact(url)
            ))),
        }
    }

    /// Path of the embedded analytics database.
    pub fn analytics_sqlite_path(&self) -> PathBuf {
        self.data_dir.join("analytics.sqlite")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelationalKind {
    Postgres(String),
    Sqlite(PathBuf),
}

/// `sqlite://path`, `sqlite:path` or `sqlite:///abs/path` to a file path.
fn sqlite_path(url: &str) -> PathBuf {
    let rest = url.trim_start_matches("sqlite:");
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let rest = rest.split('?').next().unwrap_or(rest);
    Path::new(rest).to_path_buf()
}

/// A URL with any password replaced, for messages and logs.
pub fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relational_selection() {
        let mut c = StoreConfig::embedded("/d");
        assert_eq!(
            c.relational_kind().unwrap(),
            RelationalKind::Sqlite("/d/relational.sqlite".into())
        );
        c.database_url = Some("sqlite:///var/x.db?mode=rwc".into());
        assert_eq!(
            c.relational_kind().unwrap(),
            RelationalKind::Sqlite("/var/x.db".into())
        );
        c.database_url = Some("sqlite://rel.db".into());
        assert_eq!(
            c.relational_kind().unwrap(),
            RelationalKind::Sqlite("rel.db".into())
        );
        c.database_url = Some("postgres://u@h/db".into());
        assert!(matches!(
            c.relational_kind().unwrap(),
            RelationalKind::Postgres(_)
        ));
        c.database_url = Some("mysql://u:secret@h/db".into());
        let err = c.relational_kind().unwrap_err().to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
