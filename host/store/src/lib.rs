//! Storage for OpenMOHAA Stats: three roles, each one trait with a
//! scale-out backend and an embedded default.
//!
//! * [`analytics`]: raw events and rollups ([`analytics::AnalyticsStore`]):
//!   ClickHouse, or SQLite; the batch writer ([`analytics::writer`]) and
//!   the read queries shared by both ([`analytics::query`]);
//! * [`relational`]: servers, users, identities, tournaments, the unlock
//!   ledger, progress and plugin state ([`relational::RelationalStore`]):
//!   PostgreSQL, or SQLite; [`relational::state::SqlStateStore`] bridges it
//!   to the plugin runtime's synchronous `StateStore`;
//! * [`live`]: live matches, kill feed, heartbeats, response cache, rate
//!   limits and unlock notifications ([`live::LiveStore`]): Redis, or
//!   process memory.
//!
//! [`Stores::open`] picks the backends from a [`StoreConfig`]
//! (`CLICKHOUSE_URL`, `DATABASE_URL`/`POSTGRES_URL`, `REDIS_URL`; unset
//! means embedded under the data directory); [`migrate`] applies schemas.

pub mod analytics;
pub mod config;
pub mod error;
pub mod live;
pub mod relational;
mod sqlite;
mod stores;
pub mod time;

pub use config::StoreConfig;
pub use error::StoreError;
pub use stores::{MigrateReport, Stores, migrate};
