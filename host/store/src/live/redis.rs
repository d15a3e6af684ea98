//! Redis live state. Every key and the pub/sub channel start with the
//! configured prefix, so deployments and test runs can share a server.
//!
//! Keys (`{p}` = prefix):
//! * `{p}live:matches` hash match id -> scoreboard JSON;
//! * `{p}live:feed:{server}` list, newest first, trimmed to the feed length;
//! * `{p}live:server:{server}` heartbeat JSON with a TTL, and
//!   `{p}live:servers` sorted set server -> expiry (ms) to list them;
//! * `{p}cache:{key}` cached response with a TTL;
//! * `{p}rate:{key}:{window}` counter expiring with its window;
//! * channel `{p}unlocks`: unlock notices as JSON.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde_json::Value;
use tokio::sync::broadcast;

use super::{KILL_FEED_LEN, LiveJson, LiveStore, UnlockNotice, parsed};
use crate::error::StoreError;
use crate::time::now_ms;

pub struct RedisLive {
    conn: ConnectionManager,
    prefix: String,
    unlocks: broadcast::Sender<UnlockNotice>,
    listener: tokio::task::JoinHandle<()>,
}

impl Drop for RedisLive {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn e(err: redis::RedisError) -> StoreError {
    StoreError::redis(err)
}

impl RedisLive {
    /// Connects (failing fast if Redis is unreachable) and starts the
    /// unlock subscription, which reconnects by itself.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisLive, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|err| StoreError::Config(format!("REDIS_URL: {err}")))?;
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            ConnectionManager::new(client.clone()),
        )
        .await
        .map_err(|_| StoreError::Unavailable {
            backend: "redis",
            message: "connect timed out".into(),
        })?
        .map_err(e)?;
        let (unlocks, _) = broadcast::channel(1024);
        let channel = format!("{prefix}unlocks");
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let listener = tokio::spawn(listen(client, channel, unlocks.clone(), ready_tx));
        // Wait for the first subscription so a publish right after
        // connect is not missed by our own subscribers.
        let _ = tokio::time::timeout(Duration::from_secs(5), ready_rx).await;
        Ok(RedisLive {
            conn,
            prefix: prefix.to_string(),
            unlocks,
            listener,
        })
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        k.push_str(&parts.join(":"));
        k
    }

    /// Deletes every key under the prefix (tests' cleanup).
    pub async fn purge(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn.clone();
        let pattern = format!("{}*", glob_escape(&self.prefix));
        let keys = scan(&mut conn, &pattern).await?;
        if keys.is_empty() {
            return Ok(0);
        }
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<u64>(&mut conn)
            .await
            .map_err(e)
    }
}

fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

async fn scan(conn: &mut ConnectionManager, pattern: &str) -> Result<Vec<String>, StoreError> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(500)
            .query_async(conn)
            .await
            .map_err(e)?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

async fn listen(
    client: redis::Client,
    channel: String,
    out: broadcast::Sender<UnlockNotice>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut wait = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(err) = pubsub.subscribe(&channel).await {
                    tracing::warn!(error = %err, "redis unlock subscription failed");
                } else {
                    wait = Duration::from_millis(100);
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                    let mut stream = pubsub.on_message();
                    while let Some(msg) = stream.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<UnlockNotice>(&payload) {
                            Ok(n) => {
                                let _ = out.send(n);
                            }
                            Err(err) => {
                                tracing::warn!(error = %err, "malformed unlock notice on redis")
                            }
                        }
                    }
                    tracing::warn!("redis unlock subscription closed; reconnecting");
                }
            }
            Err(err) => tracing::warn!(error = %err, "redis unavailable for unlock subscription"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(10));
    }
}

#[async_trait]
impl LiveStore for RedisLive {
    fn backend(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .map_err(e)
            .map(|_| ())
    }

    async fn put_match(&self, match_id: &str, state: LiveJson) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("HSET")
            .arg(self.key(&["live", "matches"]))
            .arg(match_id)
            .arg(state.get())
            .query_async::<()>(&mut c)
            .await
            .map_err(e)
    }

    async fn live_match(&self, match_id: &str) -> Result<Option<Value>, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<String> = redis::cmd("HGET")
            .arg(self.key(&["live", "matches"]))
            .arg(match_id)
            .query_async(&mut c)
            .await
            .map_err(e)?;
        Ok(v.map(|s| parsed(&s)))
    }

    async fn live_matches(&self) -> Result<Vec<(String, Value)>, StoreError> {
        let mut c = self.conn.clone();
        let mut v: Vec<(String, String)> = redis::cmd("HGETALL")
            .arg(self.key(&["live", "matches"]))
            .query_async(&mut c)
            .await
            .map_err(e)?;
        v.sort();
        Ok(v.into_iter().map(|(k, s)| (k, parsed(&s))).collect())
    }

    async fn end_match(&self, match_id: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("HDEL")
            .arg(self.key(&["live", "matches"]))
            .arg(match_id)
            .query_async::<()>(&mut c)
            .await
            .map_err(e)
    }

    async fn push_kill(&self, server: &str, kill: LiveJson) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let key = self.key(&["live", "feed", server]);
        redis::pipe()
            .atomic()
            .cmd("LPUSH")
            .arg(&key)
            .arg(kill.get())
            .ignore()
            .cmd("LTRIM")
            .arg(&key)
            .arg(0)
            .arg(KILL_FEED_LEN as i64 - 1)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(e)
    }

    async fn kill_feed(&self, server: &str, limit: usize) -> Result<Vec<Value>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut c = self.conn.clone();
        let v: Vec<String> = redis::cmd("LRANGE")
            .arg(self.key(&["live", "feed", server]))
            .arg(0)
            .arg(limit as i64 - 1)
            .query_async(&mut c)
            .await
            .map_err(e)?;
        Ok(v.iter().map(|s| parsed(s)).collect())
    }

    async fn heartbeat(
        &self,
        server: &str,
        status: LiveJson,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let ttl_ms = ttl.as_millis().max(1) as u64;
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.key(&["live", "server", server]))
            .arg(status.get())
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("ZADD")
            .arg(self.key(&["live", "servers"]))
            .arg(now_ms() + ttl_ms as i64)
            .arg(server)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(e)
    }

    async fn server_status(&self, server: &str) -> Result<Option<Value>, StoreError> {
        let mut c = self.conn.clone();
        let v: Option<String> = redis::cmd("GET")
            .arg(self.key(&["live", "server", server]))
            .query_async(&mut c)
            .await
            .map_err(e)?;
        Ok(v.map(|s| parsed(&s)))
    }

    async fn online_servers(&self) -> Result<Vec<(String, Value)>, StoreError> {
        let mut c = self.conn.clone();
        let set = self.key(&["live", "servers"]);
        let now = now_ms();
        let _: () = redis::cmd("ZREMRANGEBYSCORE")
            .arg(&set)
            .arg("-inf")
            .arg(now)
            .query_async(&mut c)
            .await
            .map_err(e)?;
        let mut servers: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(&set)
            .arg(now)
            .arg("+inf")
            .query_async(&mut c)
            .await
            .map_err(e)?;
        servers.sort();
        if servers.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = servers
            .iter()
            .map(|s| self.key(&["live", "server", s]))
            .collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut c)
            .await
            .map_err(e)?;
        Ok(servers
            .into_iter()
            .zip(values)
            .filter_map(|(s, v)| v.map(|v| (s, parsed(&v))))
            .collect())
    }

    async fn cache_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("GET")
            .arg(self.key(&["cache", key]))
            .query_async(&mut c)
            .await
            .map_err(e)
    }

    async fn cache_put(&self, key: &str, body: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        redis::cmd("SET")
            .arg(self.key(&["cache", key]))
            .arg(body)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async::<()>(&mut c)
            .await
            .map_err(e)
    }

    async fn cache_invalidate(&self, prefix: &str) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let pattern = format!("{}*", glob_escape(&self.key(&["cache", prefix])));
        let keys = scan(&mut c, &pattern).await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut c)
                .await
                .map_err(e)?;
        }
        Ok(())
    }

    async fn rate_hit(&self, key: &str, window: Duration) -> Result<u64, StoreError> {
        let mut c = self.conn.clone();
        let window_ms = window.as_millis().max(1) as i64;
        let index = now_ms().max(0) / window_ms;
        let k = self.key(&["rate", key, &index.to_string()]);
        let (n,): (u64,) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(&k)
            .cmd("PEXPIRE")
            .arg(&k)
            .arg(window_ms)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(e)?;
        Ok(n)
    }

    async fn publish_unlock(&self, notice: &UnlockNotice) -> Result<(), StoreError> {
        let mut c = self.conn.clone();
        let body = serde_json::to_string(notice).unwrap_or_default();
        redis::cmd("PUBLISH")
            .arg(format!("{}unlocks", self.prefix))
            .arg(body)
            .query_async::<()>(&mut c)
            .await
            .map_err(e)
    }

    fn subscribe_unlocks(&self) -> broadcast::Receiver<UnlockNotice> {
        self.unlocks.subscribe()
    }
}
