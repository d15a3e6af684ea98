//! Host-owned state: scopes, the backend seam and the per-player handle.
//!
//! State lives in the host, not in the guest, so it survives instance
//! recycling, commits atomically with the batch's outcomes and is discarded
//! with them when a batch fails. The [`Backend`] seam exists so the same
//! pack code runs against the real imports in Wasm and against the native
//! harness's emulation in `cargo test`.

use crate::event::PlayerRef;

/// How long a piece of state lives. Each scope has instances: the scope
/// instance of a call is decided by the event the call is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Forever (instance "").
    Lifetime,
    /// One server process (instance: the session id).
    Session,
    /// One match (instance: the match id).
    Match,
    /// One round of one match (instance: "{match}#{round}").
    Round,
    /// One life of the player (instance: "{session}#{life}").
    Life,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Lifetime => "lifetime",
            Scope::Session => "session",
            Scope::Match => "match",
            Scope::Round => "round",
            Scope::Life => "life",
        }
    }
}

/// Log severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

/// A buffered counter write (the contract's `counter-op`).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterOp {
    /// Add to the counter, like `add`.
    Add(i64),
    /// Overwrite the counter, like `put`.
    Put(i64),
}

/// One write of a `write-counters` call, addressed like the other calls.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterWrite<'a> {
    pub at: u32,
    pub scope: Scope,
    pub player: PlayerRef,
    pub key: &'a str,
    pub op: CounterOp,
}

/// The host's `state` and `log` imports. Implemented by the Wasm glue and
/// by the native harness; packs never implement it.
#[doc(hidden)]
pub trait Backend {
    fn add(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, delta: i64) -> i64;
    fn get(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> i64;
    fn get_many(&mut self, at: u32, scope: Scope, keys: &[(PlayerRef, &str)]) -> Vec<i64>;
    fn put(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, value: i64);
    fn put_blob(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, value: &[u8]);
    fn get_blob(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> Vec<u8>;
    fn set_insert(
        &mut self,
        at: u32,
        scope: Scope,
        player: PlayerRef,
        key: &str,
        member: &str,
    ) -> bool;
    fn set_count(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> u32;
    /// Applies the writes in order, as the same `add`/`put` calls would.
    fn write_counters(&mut self, writes: &[CounterWrite<'_>]);
    fn log(&mut self, level: Level, message: &str);
}

/// One player's state in one scope instance, as seen from one event.
/// Obtained from [`Ctx::lifetime`](crate::Ctx::lifetime) and friends.
pub struct State<'c> {
    pub(crate) backend: &'c mut dyn Backend,
    pub(crate) at: u32,
    pub(crate) scope: Scope,
    pub(crate) player: PlayerRef,
}

impl State<'_> {
    /// Adds to a counter and returns the new value (absent counts as 0).
    pub fn add(&mut self, key: &str, delta: i64) -> i64 {
        self.backend
            .add(self.at, self.scope, self.player, key, delta)
    }

    /// Reads a counter; 0 when absent.
    pub fn get(&mut self, key: &str) -> i64 {
        self.backend.get(self.at, self.scope, self.player, key)
    }

    /// Reads several counters of this player in one host call.
    pub fn get_many(&mut self, keys: &[&str]) -> Vec<i64> {
        let keys: Vec<(PlayerRef, &str)> = keys.iter().map(|k| (self.player, *k)).collect();
        self.backend.get_many(self.at, self.scope, &keys)
    }

    /// Overwrites a counter.
    pub fn put(&mut self, key: &str, value: i64) {
        self.backend
            .put(self.at, self.scope, self.player, key, value)
    }

    /// Raises a counter to `value` if it is below; returns the maximum.
    pub fn max(&mut self, key: &str, value: i64) -> i64 {
        let current = self.get(key);
        if value > current {
            self.put(key, value);
            value
        } else {
            current
        }
    }

    /// Reads a blob; empty when absent.
    pub fn blob(&mut self, key: &str) -> Vec<u8> {
        self.backend.get_blob(self.at, self.scope, self.player, key)
    }

    /// Stores a blob of at most 4 KiB; an empty blob deletes it.
    pub fn put_blob(&mut self, key: &str, value: &[u8]) {
        self.backend
            .put_blob(self.at, self.scope, self.player, key, value)
    }

    /// Adds a member to a distinct set; true when it is new.
    pub fn insert(&mut self, set: &str, member: &str) -> bool {
        self.backend
            .set_insert(self.at, self.scope, self.player, set, member)
    }

    /// Number of distinct members in a set.
    pub fn count(&mut self, set: &str) -> u32 {
        self.backend
            .set_count(self.at, self.scope, self.player, set)
    }
}
