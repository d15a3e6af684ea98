//! What plugins produce and the state they keep, as the host stores them.
//!
//! These types sit between the plugin runtime, which produces them, and the
//! relational store, which persists them: the runtime hands a [`Commit`] to
//! a [`StateStore`] and the store writes state, outcomes and the pack's
//! position in one transaction, so a batch's effects land together or not
//! at all.

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::event::Str;

/// Lifetime of a piece of plugin state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Lifetime,
    Session,
    Match,
    Round,
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

    pub fn parse(s: &str) -> Option<Scope> {
        Some(match s {
            "lifetime" => Scope::Lifetime,
            "session" => Scope::Session,
            "match" => Scope::Match,
            "round" => Scope::Round,
            "life" => Scope::Life,
            _ => return None,
        })
    }
}

/// Where a state value lives.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StateKey {
    pub pack: Str,
    pub scope: Scope,
    /// Which session, match, round or life: empty for `lifetime`, the
    /// session id, the match id, `"{match}#{round}"`, or
    /// `"{session}#{life}"` for the player's life.
    pub instance: Str,
    /// Player GUID.
    pub player: Str,
    pub key: Str,
}

/// A state value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateValue {
    Counter(i64),
    Blob(Vec<u8>),
    Set(BTreeSet<String>),
}

/// What an achievement outcome says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutcomeKind {
    Unlock,
    Progress { current: u64, target: u64 },
}

/// An unlock or a progress step, resolved to stable identities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub pack: Str,
    pub pack_version: Str,
    /// Player GUID.
    pub player: Str,
    pub code: Str,
    #[serde(flatten)]
    pub kind: OutcomeKind,
    /// The event that caused it.
    pub event_id: u64,
    pub match_id: Str,
    /// Event time of that event, ms since the epoch.
    pub time_ms: i64,
}

/// Everything one pack's batch changed, committed atomically.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Commit {
    pub pack: Str,
    pub pack_version: Str,
    /// `None` deletes the key (a reset scope, an emptied blob).
    pub writes: Vec<(StateKey, Option<StateValue>)>,
    pub outcomes: Vec<Outcome>,
    /// Per server, the id of the last event this pack has now evaluated.
    /// Replays skip events at or below it, so nothing is evaluated twice.
    pub positions: Vec<(Str, u64)>,
}

#[derive(Debug, Error)]
pub enum StateError {
    #[error("state store unavailable: {0}")]
    Unavailable(String),
}

/// Durable home of plugin state, outcomes and pack positions.
///
/// Calls are synchronous: the runtime calls them from its blocking worker
/// threads, outside any Wasm call, and keeps committed state in memory, so
/// the store is read only when a pack is loaded.
pub trait StateStore: Send + Sync {
    /// All committed state of one pack.
    fn load_pack(&self, pack: &str) -> Result<Vec<(StateKey, StateValue)>, StateError>;
    /// The pack's committed positions per server.
    fn positions(&self, pack: &str) -> Result<Vec<(Str, u64)>, StateError>;
    /// Writes state, outcomes and positions in one transaction.
    fn commit(&self, commit: &Commit) -> Result<(), StateError>;
}

/// Process-memory state store: the runtime's default and the tests' store.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    state: BTreeMap<StateKey, StateValue>,
    positions: BTreeMap<(Str, Str), u64>,
    outcomes: Vec<Outcome>,
}

impl MemoryStateStore {
    pub fn new() -> MemoryStateStore {
        MemoryStateStore::default()
    }

    /// Every outcome committed so far, in commit order.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.inner.lock().outcomes.clone()
    }

    /// A snapshot of all state, sorted by key.
    pub fn snapshot(&self) -> Vec<(StateKey, StateValue)> {
        let inner = self.inner.lock();
        inner
            .state
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl StateStore for MemoryStateStore {
    fn load_pack(&self, pack: &str) -> Result<Vec<(StateKey, StateValue)>, StateError> {
        let inner = self.inner.lock();
        Ok(inner
            .state
            .iter()
            .filter(|(k, _)| &*k.pack == pack)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn positions(&self, pack: &str) -> Result<Vec<(Str, u64)>, StateError> {
        let inner = self.inner.lock();
        Ok(inner
            .positions
            .iter()
            .filter(|((p, _), _)| &**p == pack)
            .map(|((_, server), pos)| (server.clone(), *pos))
            .collect())
    }

    fn commit(&self, commit: &Commit) -> Result<(), StateError> {
        let mut inner = self.inner.lock();
        for (key, value) in &commit.writes {
            match value {
                Some(v) => {
                    inner.state.insert(key.clone(), v.clone());
                }
                None => {
                    inner.state.remove(key);
                }
            }
        }
        inner.outcomes.extend(commit.outcomes.iter().cloned());
        for (server, pos) in &commit.positions {
            let slot = inner
                .positions
                .entry((commit.pack.clone(), server.clone()))
                .or_default();
            *slot = (*slot).max(*pos);
        }
        Ok(())
    }
}
