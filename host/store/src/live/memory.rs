//! In-process live state: the embedded default. Lost on restart, which is
//! fine for a cache and for live views rebuilt by the next events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::broadcast;

use super::{KILL_FEED_LEN, LiveJson, LiveStore, UnlockNotice, parsed};
use crate::error::StoreError;

/// Cache entries kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;

pub struct MemoryLive {
    inner: Mutex<Inner>,
    unlocks: broadcast::Sender<UnlockNotice>,
}

#[derive(Default)]
struct Inner {
    matches: BTreeMap<String, LiveJson>,
    feeds: HashMap<String, VecDeque<LiveJson>>,
    heartbeats: BTreeMap<String, (LiveJson, Instant)>,
    cache: HashMap<String, (String, Instant)>,
    /// key -> (window index, hits)
    rates: HashMap<String, (u128, u64)>,
}

impl Default for MemoryLive {
    fn default() -> Self {
        MemoryLive {
            inner: Mutex::new(Inner::default()),
            unlocks: broadcast::channel(1024).0,
        }
    }
}

impl MemoryLive {
    pub fn new() -> MemoryLive {
        MemoryLive::default()
    }
}

#[async_trait]
impl LiveStore for MemoryLive {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn put_match(&self, match_id: &str, state: LiveJson) -> Result<(), StoreError> {
        self.inner
            .lock()
            .matches
            .insert(match_id.to_string(), state);
        Ok(())
    }

    async fn live_match(&self, match_id: &str) -> Result<Option<Value>, StoreError> {
        Ok(self
            .inner
            .lock()
            .matches
            .get(match_id)
            .map(|d| parsed(d.get())))
    }

    async fn live_matches(&self) -> Result<Vec<(String, Value)>, StoreError> {
        Ok(self
            .inner
            .lock()
            .matches
            .iter()
            .map(|(k, v)| (k.clone(), parsed(v.get())))
            .collect())
    }

    async fn end_match(&self, match_id: &str) -> Result<(), StoreError> {
        self.inner.lock().matches.remove(match_id);
        Ok(())
    }

    async fn push_kill(&self, server: &str, kill: LiveJson) -> Result<(), StoreError> {
        let mut inner = self.inner.lock();
        let feed = inner.feeds.entry(server.to_string()).or_default();
        feed.push_front(kill);
        feed.truncate(KILL_FEED_LEN);
        Ok(())
    }

    async fn kill_feed(&self, server: &str, limit: usize) -> Result<Vec<Value>, StoreError> {
        let inner = self.inner.lock();
        Ok(inner
            .feeds
            .get(server)
            .map(|f| f.iter().take(limit).map(|d| parsed(d.get())).collect())
            .unwrap_or_default())
    }

    async fn heartbeat(
        &self,
        server: &str,
        status: LiveJson,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        self.inner
            .lock()
            .heartbeats
            .insert(server.to_string(), (status, Instant::now() + ttl));
        Ok(())
    }

    async fn server_status(&self, server: &str) -> Result<Option<Value>, StoreError> {
        let now = Instant::now();
        Ok(self
            .inner
            .lock()
            .heartbeats
            .get(server)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| parsed(v.get())))
    }

    async fn online_servers(&self) -> Result<Vec<(String, Value)>, StoreError> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        inner.heartbeats.retain(|_, (_, exp)| *exp > now);
        Ok(inner
            .heartbeats
            .iter()
            .map(|(k, (v, _))| (k.clone(), parsed(v.get())))
            .collect())
    }

    async fn cache_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let now = Instant::now();
        Ok(self
            .inner
            .lock()
            .cache
            .get(key)
            .filter(|(_, exp)| *exp > now)
            .map(|(v, _)| v.clone()))
    }

    async fn cache_put(&self, key: &str, body: &str, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut inner = self.inner.lock();
        if inner.cache.len() >= SWEEP_AT {
            inner.cache.retain(|_, (_, exp)| *exp > now);
        }
        inner
            .cache
            .insert(key.to_string(), (body.to_string(), now + ttl));
        Ok(())
    }

    async fn cache_invalidate(&self, prefix: &str) -> Result<(), StoreError> {
        self.inner
            .lock()
            .cache
            .retain(|k, _| !k.starts_with(prefix));
        Ok(())
    }

    async fn rate_hit(&self, key: &str, window: Duration) -> Result<u64, StoreError> {
        let window_ms = window.as_millis().max(1);
        let index = crate::time::now_ms().max(0) as u128 / window_ms;
        let mut inner = self.inner.lock();
        if inner.rates.len() >= SWEEP_AT {
            inner.rates.retain(|_, (w, _)| *w >= index);
        }
        let slot = inner.rates.entry(key.to_string()).or_insert((index, 0));
        if slot.0 != index {
            *slot = (index, 0);
        }
        slot.1 += 1;
        Ok(slot.1)
    }

    async fn publish_unlock(&self, notice: &UnlockNotice) -> Result<(), StoreError> {
        // No subscriber is not an error: nobody is listening right now.
        let _ = self.unlocks.send(notice.clone());
        Ok(())
    }

    fn subscribe_unlocks(&self) -> broadcast::Receiver<UnlockNotice> {
        self.unlocks.subscribe()
    }
}
