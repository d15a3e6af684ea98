//! The emulated host state: committed values plus one batch's transaction,
//! with the host's scope-instance rules and limits.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::event::{Batch, PlayerRef};
use crate::limits;
use crate::state::{Backend, CounterOp, CounterWrite, Level, Scope};

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

/// A stored value. A key holds the kind last written to it; reading it as
/// another kind gives 0, an empty blob or an empty set, as on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateValue {
    Counter(i64),
    Blob(Vec<u8>),
    Set(BTreeSet<String>),
}

/// Every appearance of every player, so a state call about a player who
/// is not in the event it names finds the life they are in at that moment,
/// by the host's rule: their latest appearance earlier in the same session
/// gives the life, or the next one when that appearance ended it; a player
/// not seen yet in the session is in life 1.
#[derive(Debug, Default)]
pub(crate) struct LifeIndex {
    /// Per GUID, in event order: (event id, session, life, life ended).
    lives: HashMap<String, Vec<(u64, String, u32, bool)>>,
}

impl LifeIndex {
    /// Records one event's participants; call in event order.
    pub(crate) fn observe(&mut self, ev: &opm_model::Event) {
        let actor_dies = ev.kind == opm_model::EventKind::PlayerSuicide
            || (ev.kind == opm_model::EventKind::Death && ev.target.is_none());
        // The target goes last: when a player is both, the target's view
        // (a suicide by `player_kill`) is the one that counts.
        let parts = [(&ev.actor, actor_dies), (&ev.target, ev.kind.ends_life())];
        for (p, ends) in parts {
            if let Some(p) = p {
                self.lives.entry(p.guid.to_string()).or_default().push((
                    ev.id,
                    ev.session.to_string(),
                    p.life,
                    ends,
                ));
            }
        }
    }

    /// The life of `guid` at event `event_id` of `session`, for a call
    /// about a player who does not take part in that event.
    pub(crate) fn at(&self, guid: &str, session: &str, event_id: u64) -> u32 {
        let Some(list) = self.lives.get(guid) else {
            return 1;
        };
        let before = list.partition_point(|(id, ..)| *id < event_id);
        list[..before]
            .iter()
            .rev()
            .find(|(_, s, ..)| s == session)
            .map_or(
                1,
                |(_, _, life, ended)| if *ended { life + 1 } else { *life },
            )
    }
}

/// Committed state.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) committed: BTreeMap<StateKey, StateValue>,
}

/// A lifecycle span that ended within a host batch: the host drops its
/// state when the batch commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ended {
    /// One player's life: (guid, "{session}#{life}").
    Life(String, String),
    /// A match and all its rounds.
    Match(String),
    /// Rounds of a match numbered below the given one.
    RoundsBefore(String, u32),
}

fn round_of(match_id: &str, instance: &str) -> Option<u32> {
    instance
        .strip_prefix(match_id)?
        .strip_prefix('#')?
        .parse()
        .ok()
}

impl Ended {
    fn covers(&self, k: &StateKey) -> bool {
        match (self, k.scope) {
            (Ended::Life(g, l), Scope::Life) => *l == k.instance && *g == k.player,
            (Ended::Match(m), Scope::Match) => *m == k.instance,
            (Ended::Match(m), Scope::Round) => round_of(m, &k.instance).is_some(),
            (Ended::RoundsBefore(m, r), Scope::Round) => {
                round_of(m, &k.instance).is_some_and(|n| n < *r)
            }
            _ => false,
        }
    }

    /// The spans that end within a host batch, by the host's rules: a
    /// spawn ends the previous life, a death or suicide the current one, a
    /// match end the match, a round start the earlier rounds.
    pub(crate) fn within(events: &[opm_model::Event]) -> Vec<Ended> {
        use opm_model::EventKind as K;
        let mut out = Vec::new();
        for ev in events {
            let life = |p: &opm_model::Participant, n: u32| {
                Ended::Life(p.guid.to_string(), format!("{}#{}", ev.session, n))
            };
            if let Some(a) = &ev.actor {
                if ev.kind.starts_life() && a.life > 1 {
                    out.push(life(a, a.life - 1));
                }
                if ev.kind == K::PlayerSuicide || (ev.kind == K::Death && ev.target.is_none()) {
                    out.push(life(a, a.life));
                }
            }
            if let Some(t) = &ev.target
                && ev.kind.ends_life()
            {
                out.push(life(t, t.life));
            }
            match ev.kind {
                K::MatchEnd | K::GameEnd if !ev.match_id.is_empty() => {
                    out.push(Ended::Match(ev.match_id.to_string()));
                }
                K::RoundStart if ev.round > 1 => {
                    out.push(Ended::RoundsBefore(ev.match_id.to_string(), ev.round));
                }
                _ => {}
            }
        }
        out.dedup();
        out
    }
}

impl Store {
    /// Drops the state of spans that ended.
    pub(crate) fn drop_ended(&mut self, ended: &[Ended]) {
        if !ended.is_empty() {
            self.committed
                .retain(|k, _| !ended.iter().any(|e| e.covers(k)));
        }
    }

    fn keys_of(&self, player: &str) -> usize {
        self.committed.keys().filter(|k| k.player == player).count()
    }
}

/// One batch's view of the store: reads see committed values plus this
/// batch's writes; nothing reaches `committed` until [`Txn::writes`] is
/// applied.
pub(crate) struct Txn<'a> {
    store: &'a Store,
    batch: &'a Batch,
    lives: &'a LifeIndex,
    writes: BTreeMap<StateKey, Option<StateValue>>,
    /// Keys this batch adds, per player, for the keys-per-player limit.
    new_keys: HashMap<String, usize>,
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
            new_keys: HashMap::new(),
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
            self.refuse(format!(
                "state call at event index {at}, but the batch has {} events",
                self.batch.len()
            ));
            return None;
        };
        let Some(info) = self.batch.player_info(player) else {
            self.refuse(format!(
                "state call for player ref {player}, which is not in the batch"
            ));
            return None;
        };
        if key.len() > limits::MAX_KEY_BYTES {
            self.refuse(format!(
                "state key of {} bytes (limit {}): {key:.40}…",
                key.len(),
                limits::MAX_KEY_BYTES
            ));
            return None;
        }
        let guid = info.0.to_string();
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
                let life = in_event.unwrap_or_else(|| self.lives.at(&guid, ev.session(), ev.id()));
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

    /// Counts a key the batch is about to create against the player's
    /// limit; false (and a violation) when the player holds too many.
    fn reserve(&mut self, k: &StateKey) -> bool {
        if self.writes.contains_key(k) || self.store.committed.contains_key(k) {
            return true;
        }
        let added = self.new_keys.get(&k.player).copied().unwrap_or(0);
        let held = self.store.keys_of(&k.player) + added;
        if held >= limits::MAX_KEYS_PER_PLAYER {
            self.refuse(format!(
                "player {:?} already holds {held} keys (limit {})",
                k.player,
                limits::MAX_KEYS_PER_PLAYER
            ));
            return false;
        }
        *self.new_keys.entry(k.player.clone()).or_default() += 1;
        true
    }

    fn counter(&self, key: &StateKey) -> i64 {
        match self.read(key) {
            Some(StateValue::Counter(v)) => v,
            _ => 0,
        }
    }

    fn set(&self, key: &StateKey) -> BTreeSet<String> {
        match self.read(key) {
            Some(StateValue::Set(s)) => s,
            _ => BTreeSet::new(),
        }
    }
}

impl Backend for Txn<'_> {
    fn add(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, delta: i64) -> i64 {
        let Some(k) = self.address(at, scope, player, key) else {
            return 0;
        };
        if !self.reserve(&k) {
            return 0;
        }
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
        keys.iter()
            .map(|(p, k)| self.get(at, scope, *p, k))
            .collect()
    }

    fn put(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, value: i64) {
        if let Some(k) = self.address(at, scope, player, key)
            && self.reserve(&k)
        {
            self.writes.insert(k, Some(StateValue::Counter(value)));
        }
    }

    fn put_blob(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, value: &[u8]) {
        if value.len() > limits::MAX_BLOB_BYTES {
            self.refuse(format!(
                "blob {key:?} of {} bytes (limit {})",
                value.len(),
                limits::MAX_BLOB_BYTES
            ));
            return;
        }
        if let Some(k) = self.address(at, scope, player, key)
            && self.reserve(&k)
        {
            let value = (!value.is_empty()).then(|| StateValue::Blob(value.to_vec()));
            self.writes.insert(k, value);
        }
    }

    fn get_blob(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> Vec<u8> {
        let Some(k) = self.address(at, scope, player, key) else {
            return Vec::new();
        };
        match self.read(&k) {
            Some(StateValue::Blob(b)) => b,
            _ => Vec::new(),
        }
    }

    fn set_insert(
        &mut self,
        at: u32,
        scope: Scope,
        player: PlayerRef,
        key: &str,
        member: &str,
    ) -> bool {
        if member.len() > limits::MAX_SET_MEMBER_BYTES {
            self.refuse(format!(
                "set member of {} bytes (limit {})",
                member.len(),
                limits::MAX_SET_MEMBER_BYTES
            ));
            return false;
        }
        let Some(k) = self.address(at, scope, player, key) else {
            return false;
        };
        let mut set = self.set(&k);
        if set.contains(member) {
            return false;
        }
        if set.len() >= limits::MAX_SET_MEMBERS {
            self.refuse(format!("set {key:?} is full ({} members)", set.len()));
            return false;
        }
        if !self.reserve(&k) {
            return false;
        }
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

    fn write_counters(&mut self, writes: &[CounterWrite<'_>]) {
        for w in writes {
            match w.op {
                CounterOp::Add(delta) => {
                    self.add(w.at, w.scope, w.player, w.key, delta);
                }
                CounterOp::Put(value) => self.put(w.at, w.scope, w.player, w.key, value),
            }
        }
    }

    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_string()));
    }
}
