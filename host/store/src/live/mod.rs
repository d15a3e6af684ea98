//! Live state and the response cache: match scoreboards, kill feeds,
//! server heartbeats, cached responses, rate-limit counters and unlock
//! notifications. Redis when configured ([`redis`]), process memory
//! otherwise ([`memory`]). Everything here is disposable: losing it costs
//! a few seconds of freshness, never data.

pub mod memory;
pub mod redis;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::broadcast;

use crate::error::StoreError;

/// A live document as JSON text. Live state is written for every batch and
/// read only when someone looks: writers hand over serialised text (no
/// tree of maps to build and drop), readers get a parsed [`Value`].
pub type LiveJson = Box<serde_json::value::RawValue>;

/// Serialises a live document.
pub fn live_json<T: Serialize + ?Sized>(doc: &T) -> Result<LiveJson, StoreError> {
    serde_json::value::to_raw_value(doc).map_err(|e| StoreError::Decode {
        backend: "live",
        message: e.to_string(),
    })
}

/// The parsed form of a stored live document (written as JSON, so `Null`
/// only for text something else put there).
pub(crate) fn parsed(doc: &str) -> Value {
    serde_json::from_str(doc).unwrap_or(Value::Null)
}

/// Response-cache lifetimes per route family.
pub mod ttl {
    use std::time::Duration;
    pub const LEADERBOARD: Duration = Duration::from_secs(60);
    pub const WEEKLY_LEADERBOARD: Duration = Duration::from_secs(30);
    pub const PLAYER: Duration = Duration::from_secs(10);
    pub const LIVE_MATCHES: Duration = Duration::from_secs(5);
    pub const ACHIEVEMENT_LIST: Duration = Duration::from_secs(300);
    pub const BRACKET: Duration = Duration::from_secs(30);
}

/// Kill-feed entries kept per server.
pub const KILL_FEED_LEN: usize = 50;

/// Sent to subscribers when a player unlocks an achievement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockNotice {
    pub player: String,
    pub code: String,
    pub pack: String,
    pub match_id: String,
    pub server: String,
    pub time_ms: i64,
}

#[async_trait]
pub trait LiveStore: Send + Sync + 'static {
    /// "redis" or "memory".
    fn backend(&self) -> &'static str;
    /// Answers when the live store is reachable (readiness probes).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Replaces the live state (scoreboard JSON) of a running match.
    async fn put_match(&self, match_id: &str, state: LiveJson) -> Result<(), StoreError>;
    async fn live_match(&self, match_id: &str) -> Result<Option<Value>, StoreError>;
    /// All running matches, by match id.
    async fn live_matches(&self) -> Result<Vec<(String, Value)>, StoreError>;
    async fn end_match(&self, match_id: &str) -> Result<(), StoreError>;

    /// Prepends a kill to the server's feed, keeping the newest
    /// [`KILL_FEED_LEN`].
    async fn push_kill(&self, server: &str, kill: LiveJson) -> Result<(), StoreError>;
    /// Newest first.
    async fn kill_feed(&self, server: &str, limit: usize) -> Result<Vec<Value>, StoreError>;

    /// Records a heartbeat; the server counts as online for `ttl`.
    async fn heartbeat(
        &self,
        server: &str,
        status: LiveJson,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    async fn server_status(&self, server: &str) -> Result<Option<Value>, StoreError>;
    /// Servers whose heartbeat has not expired.
    async fn online_servers(&self) -> Result<Vec<(String, Value)>, StoreError>;

    async fn cache_get(&self, key: &str) -> Result<Option<String>, StoreError>;
    async fn cache_put(&self, key: &str, body: &str, ttl: Duration) -> Result<(), StoreError>;
    /// Drops cached entries whose key starts with `prefix`.
    async fn cache_invalidate(&self, prefix: &str) -> Result<(), StoreError>;

    /// Counts a hit in the fixed window of length `window` containing now
    /// and returns the hits so far in that window (this one included).
    async fn rate_hit(&self, key: &str, window: Duration) -> Result<u64, StoreError>;

    /// Tells every subscriber, in this process and (with Redis) in others.
    async fn publish_unlock(&self, notice: &UnlockNotice) -> Result<(), StoreError>;
    /// Receives notices published from now on.
    fn subscribe_unlocks(&self) -> broadcast::Receiver<UnlockNotice>;
}
