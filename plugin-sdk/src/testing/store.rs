//! The emulated host state: committed values plus one batch's transaction,
//! with the host's scope-instance rules and limits.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::event::{Batch, PlayerRef};
use crate::limits;
use crate::state::{Backend, Level, Scope};

/// Where a value lives: scope, scope instance, player GUID, key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateKey {
    pub scope: Scope,
    /// "" for lifetime, the session id, the match id, "{match}#{round}" or
    /// "{session}#{life}".
    pub instance: String,
    pub player: String,
    pub key: String,
}

/// A stored value. A key holds one kind of value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateValue {
    Counter(i64),
    Blob(Vec<u8>),
    Set(BTreeSet<String>),
}

impl StateValue {
    fn kind(&self) -> &'static str {
        match self {
            StateValue::Counter(_) => "counter",
            StateValue::Blob(_) => "blob",
            StateValue::Set(_) => "set",
        }
    }
}

/// For each player GUID, the life number the tracker gave them at each
/// event (by id), so a state call about a player who is not in the event
/// still finds the life they were in at that moment.
#[derive(Debug, Default)]
pub(crate) struct LifeIndex {
    lives: HashMap<String, Vec<(u64, u32)>>,
}

impl LifeIndex {
    pub(crate) fn record(&mut self, guid: &str, event_id: u64, life: u32) {
        self.lives.entry(guid.to_string()).or_default().push((event_id, life));
    }

    /// The life of `guid` as of `event_id`: the latest recorded at or
    /// before it, 0 for a player not seen yet.
    pub(crate) fn at(&self, guid: &str, event_id: u64) -> u32 {
        let Some(list) = self.lives.get(guid) else {
            return 0;
        };
        let idx = list.partition_point(|(id, _)| *id <= event_id);
        if idx == 0 { 0 } else { list[idx - 1].1 }
    }
}

/// Committed state.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) committed: BTreeMap<StateKey, StateValue>,
}

/// One batch's view of the store: reads see committed values plus this
/// batch's writes; nothing reaches `committed` until [`Txn::writes`] is
/// applied.
pub(crate) struct Txn<'a> {
    store: &'a Store,
    batch: &'a Batch,
    lives: &'a LifeIndex,
    writes: BTreeMap<StateKey, Option<StateValue>>,
    /// The first call the host would have refused (the batch then fails).
    pub(crate) violation: Option<String>,
    pub(crate) logs: Vec<(Level, String)>,
}

impl<'a> Txn<'a> {
    pub(crate) fn new(store: &'a Store, batch: &'a Batch, lives: &'a LifeIndex) -> Txn<'a> {
        Txn {
            store,
            batch,
            lives,
            writes: BTreeMap::new(),
            violation: None,
            logs: Vec::new(),
        }
    }

    pub(crate) fn into_writes(self) -> BTreeMap<StateKey, Option<StateValue>> {
        self.writes
    }

    fn refuse(&mut self, why: String) {
        if self.violation.is_none() {
            self.violation = Some(why);
        }
    }

    /// Resolves a call's address, or records why the host would refuse it.
    fn address(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> Option<StateKey> {
        let Some(ev) = self.batch.event(at as usize) else {
            self.refuse(format!("state call at event index {at}, but the batch has {} events", self.batch.len()));
            return None;
        };
        let Some(info) = self.batch.player_info(player) else {
            self.refuse(format!("state call for player ref {player}, which is not in the batch"));
            return None;
        };
        if key.len() > limits::MAX_KEY_BYTES {
            self.refuse(format!("state key of {} bytes (limit {}): {key:.40}…", key.len(), limits::MAX_KEY_BYTES));
            return None;
        }
        let guid = info.guid.clone();
        let instance = match scope {
            Scope::Lifetime => String::new(),
            Scope::Session => ev.session().to_string(),
            Scope::Match => ev.match_id().to_string(),
            Scope::Round => format!("{}#{}", ev.match_id(), ev.round()),
            Scope::Life => {
                let in_event = [ev.actor(), ev.target()]
                    .into_iter()
                    .flatten()
                    .find(|p| p.player().index() == player)
                    .map(|p| p.life());
                let life = in_event.unwrap_or_else(|| self.lives.at(&guid, ev.id()));
                format!("{}#{}", ev.session(), life)
            }
        };
        Some(StateKey {
            scope,
            instance,
            player: guid,
            key: key.to_string(),
        })
    }

    fn read(&self, key: &StateKey) -> Option<StateValue> {
        match self.writes.get(key) {
            Some(v) => v.clone(),
            None => self.store.committed.get(key).cloned(),
        }
    }

    fn counter(&mut self, key: &StateKey) -> i64 {
        match self.read(key) {
            None => 0,
            Some(StateValue::Counter(v)) => v,
            Some(other) => {
                self.refuse(format!("key {:?} holds a {}, not a counter", key.key, other.kind()));
                0
            }
        }
    }

    fn set(&mut self, key: &StateKey) -> BTreeSet<String> {
        match self.read(key) {
            None => BTreeSet::new(),
            Some(StateValue::Set(s)) => s,
            Some(other) => {
                self.refuse(format!("key {:?} holds a {}, not a set", key.key, other.kind()));
                BTreeSet::new()
            }
        }
    }
}

impl Backend for Txn<'_> {
    fn add(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, delta: i64) -> i64 {
        let Some(k) = self.address(at, scope, player, key) else {
            return 0;
        };
        let value = self.counter(&k).wrapping_add(delta);
        self.writes.insert(k, Some(StateValue::Counter(value)));
        value
    }

    fn get(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> i64 {
        match self.address(at, scope, player, key) {
            Some(k) => self.counter(&k),
            None => 0,
        }
    }

    fn get_many(&mut self, at: u32, scope: Scope, keys: &[(PlayerRef, &str)]) -> Vec<i64> {
        keys.iter().map(|(p, k)| self.get(at, scope, *p, k)).collect()
    }

    fn put(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, value: i64) {
        if let Some(k) = self.address(at, scope, player, key) {
            if let Some(other @ (StateValue::Blob(_) | StateValue::Set(_))) = self.read(&k) {
                self.refuse(format!("key {:?} holds a {}, not a counter", k.key, other.kind()));
                return;
            }
            self.writes.insert(k, Some(StateValue::Counter(value)));
        }
    }

    fn put_blob(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, value: &[u8]) {
        if value.len() > limits::MAX_BLOB_BYTES {
            self.refuse(format!("blob {key:?} of {} bytes (limit {})", value.len(), limits::MAX_BLOB_BYTES));
            return;
        }
        if let Some(k) = self.address(at, scope, player, key) {
            if let Some(other @ (StateValue::Counter(_) | StateValue::Set(_))) = self.read(&k) {
                self.refuse(format!("key {:?} holds a {}, not a blob", k.key, other.kind()));
                return;
            }
            let value = (!value.is_empty()).then(|| StateValue::Blob(value.to_vec()));
            self.writes.insert(k, value);
        }
    }

    fn get_blob(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> Vec<u8> {
        let Some(k) = self.address(at, scope, player, key) else {
            return Vec::new();
        };
        match self.read(&k) {
            None => Vec::new(),
            Some(StateValue::Blob(b)) => b,
            Some(other) => {
                self.refuse(format!("key {:?} holds a {}, not a blob", k.key, other.kind()));
                Vec::new()
            }
        }
    }

    fn set_insert(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, member: &str) -> bool {
        let Some(k) = self.address(at, scope, player, key) else {
            return false;
        };
        let mut set = self.set(&k);
        let new = set.insert(member.to_string());
        if new {
            self.writes.insert(k, Some(StateValue::Set(set)));
        }
        new
    }

    fn set_count(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> u32 {
        match self.address(at, scope, player, key) {
            Some(k) => self.set(&k).len() as u32,
            None => 0,
        }
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_string()));
    }
}
