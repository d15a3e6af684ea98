//! The per-batch counter cache between a pack and the host.
//!
//! Every host call crosses the component boundary, and with a few counter
//! updates per event those crossings were most of a pack's cost. Within
//! one batch the guest can keep counters itself: it reads each (scope
//! instance, player, key) from the host once, applies later `add`/`get`/
//! `put` locally, and hands every write over in one `write-counters` call
//! when the batch succeeds. The host applies them exactly as the direct
//! calls, so what commits, and what the other reads see, does not change:
//! reads see the committed value (as of the first read in the batch) plus
//! the batch's own writes, and a failed batch discards everything because
//! nothing reached the host's transaction before `on-batch` returned.
//!
//! The cache must address a slot exactly as the host would, so it only
//! caches what it can derive from the event the call names: lifetime,
//! session, match and round instances always, the life instance when the
//! player takes part in that event (their life number is in it). Anything
//! else (a life-scope call for a player not in the event, blobs, sets)
//! first flushes the pending writes so the host sees them, then goes to
//! the host directly; calls that write that way also empty the cache,
//! because they may have changed a slot it holds.

use crate::ctx::{Ctx, Outcome};
use crate::event::{Batch, PlayerRef};
use crate::keys::{KeyTable, same_text};
use crate::pack::{Pack, PackError};
use crate::state::{Backend, CounterOp, CounterWrite, Level, Scope};

/// A scope instance of one player, by batch symbols: `(scope, a, b,
/// player)` with `a`/`b` the session or match symbol and the round or life
/// number. Symbols and player refs are unique per batch, so two different
/// addresses are two different host slots.
type Address = (Scope, u32, u32, PlayerRef);

/// One cached counter.
#[derive(Debug)]
struct Slot {
    /// The event index the host derives the instance from at write-back.
    at: u32,
    scope: Scope,
    /// The instance parts of the address (see [`Address`]).
    a: u32,
    b: u32,
    player: PlayerRef,
    /// Index into the key table.
    key: u32,
    /// Where the key string the slot was made with lies: a pack passes the
    /// same literal again, so a match here (checked against the text)
    /// finds the slot without looking the name up.
    key_at: usize,
    /// The value the pack sees: the host's value at the first read plus the
    /// batch's own writes since.
    value: i64,
    /// What the host has not been told yet.
    pending: Option<CounterOp>,
}

/// The cache's tables. They outlive a batch (emptied, capacity kept, key
/// names kept): allocating them anew for every batch, a `String` per slot
/// included, was a quarter of a simple pack's own cost.
#[derive(Default)]
struct Tables {
    /// Key names seen; a slot names its key by index.
    keys: KeyTable,
    /// Slots in first-touch order, so the write-back is deterministic.
    slots: Vec<Slot>,
    /// Indices into `slots` by player: a player has a handful of counters
    /// in a batch, and scanning them beats hashing an address.
    by_player: Vec<Vec<u32>>,
}

/// Key names kept across batches at most; beyond, they are dropped
/// between batches (a pack that makes a key per player or weapon does not
/// grow the table without bound).
const KEEP_NAMES: usize = 4096;

impl Tables {
    /// Empties the slots, keeping every table's capacity.
    fn forget(&mut self) {
        self.slots.clear();
        for p in &mut self.by_player {
            p.clear();
        }
    }

    fn clear(&mut self) {
        self.forget();
        if self.keys.len() > KEEP_NAMES {
            self.keys.clear();
        }
    }
}

thread_local! {
    /// The tables between batches (a component instance is one thread).
    static SPARE: std::cell::Cell<Option<Tables>> = const { std::cell::Cell::new(None) };
}

/// The cache, in front of the real backend for one batch.
pub(crate) struct Cache<'b> {
    inner: &'b mut dyn Backend,
    batch: &'b Batch,
    t: Tables,
}

impl Drop for Cache<'_> {
    fn drop(&mut self) {
        let mut t = std::mem::take(&mut self.t);
        t.clear();
        SPARE.with(|s| s.set(Some(t)));
    }
}

impl<'b> Cache<'b> {
    pub(crate) fn new(inner: &'b mut dyn Backend, batch: &'b Batch) -> Cache<'b> {
        Cache {
            inner,
            batch,
            t: SPARE.with(|s| s.take()).unwrap_or_default(),
        }
    }

    /// Where a call lands, when the cache can tell without the host.
    fn address(&self, at: u32, scope: Scope, player: PlayerRef) -> Option<Address> {
        if at as usize >= self.batch.len() || player as usize >= self.batch.player_count() {
            // Let the host refuse it.
            return None;
        }
        let ev = self.batch.raw(at);
        Some(match scope {
            Scope::Lifetime => (scope, 0, 0, player),
            Scope::Session => (scope, ev.session(), 0, player),
            Scope::Match => (scope, ev.match_id(), 0, player),
            Scope::Round => (scope, ev.match_id(), ev.round(), player),
            Scope::Life => {
                // Actor first, as the host looks.
                let p = [ev.actor(), ev.target()]
                    .into_iter()
                    .flatten()
                    .find(|p| p.player() == player)?;
                (scope, ev.session(), p.life(), player)
            }
        })
    }

    fn find(&self, addr: &Address, key: &str) -> Option<usize> {
        let &(scope, a, b, player) = addr;
        let mine = self.t.by_player.get(player as usize)?;
        let slots = &self.t.slots;
        let at = key.as_ptr() as usize;
        let here = |s: &Slot| s.scope == scope && s.a == a && s.b == b;
        for &i in mine {
            let s = &slots[i as usize];
            if s.key_at == at
                && here(s)
                && same_text(self.t.keys.name(s.key).as_bytes(), key.as_bytes())
            {
                return Some(i as usize);
            }
        }
        // The same name from another string (built at run time).
        let k = self.t.keys.get(key)?;
        mine.iter()
            .map(|&i| i as usize)
            .find(|&i| slots[i].key == k && here(&slots[i]))
    }

    fn insert(&mut self, addr: Address, at: u32, key: &str, value: i64) -> usize {
        let k = self.t.keys.intern(key);
        let i = self.t.slots.len();
        let (scope, a, b, player) = addr;
        self.t.slots.push(Slot {
            at,
            scope,
            a,
            b,
            player,
            key: k,
            key_at: key.as_ptr() as usize,
            value,
            pending: None,
        });
        // `address` admits only players of the batch.
        let p = player as usize;
        if self.t.by_player.len() <= p {
            self.t.by_player.resize_with(p + 1, Vec::new);
        }
        self.t.by_player[p].push(i as u32);
        i
    }

    /// The slot for a cacheable call, read from the host on first use.
    fn slot(&mut self, addr: Address, at: u32, key: &str) -> usize {
        match self.find(&addr, key) {
            Some(i) => i,
            None => {
                let value = self.inner.get(at, addr.0, addr.3, key);
                self.insert(addr, at, key, value)
            }
        }
    }

    /// Hands every pending write to the host in one call. Values stay
    /// cached: the host's transaction now holds what they say.
    pub(crate) fn flush(&mut self) {
        let keys = &self.t.keys;
        let writes: Vec<CounterWrite<'_>> = self
            .t
            .slots
            .iter_mut()
            .filter_map(|s| {
                let op = s.pending.take()?;
                Some(CounterWrite {
                    at: s.at,
                    scope: s.scope,
                    player: s.player,
                    key: keys.name(s.key),
                    op,
                })
            })
            .collect();
        if !writes.is_empty() {
            self.inner.write_counters(&writes);
        }
    }

    /// Before a call the cache cannot serve: the host must see the writes.
    fn passthrough(&mut self) -> &mut dyn Backend {
        self.flush();
        &mut *self.inner
    }

    /// After such a call wrote: it may have changed a cached slot.
    fn forget(&mut self) {
        self.t.forget();
    }
}

impl Backend for Cache<'_> {
    fn add(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, delta: i64) -> i64 {
        let Some(addr) = self.address(at, scope, player) else {
            let v = self.passthrough().add(at, scope, player, key, delta);
            self.forget();
            return v;
        };
        let i = self.slot(addr, at, key);
        let s = &mut self.t.slots[i];
        s.value = s.value.wrapping_add(delta);
        s.pending = Some(match s.pending {
            None => CounterOp::Add(delta),
            Some(CounterOp::Add(d)) => CounterOp::Add(d.wrapping_add(delta)),
            // After an overwrite the value is known outright.
            Some(CounterOp::Put(_)) => CounterOp::Put(s.value),
        });
        s.value
    }

    fn get(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> i64 {
        let Some(addr) = self.address(at, scope, player) else {
            return self.passthrough().get(at, scope, player, key);
        };
        let i = self.slot(addr, at, key);
        self.t.slots[i].value
    }

    fn get_many(&mut self, at: u32, scope: Scope, keys: &[(PlayerRef, &str)]) -> Vec<i64> {
        let mut addrs = Vec::with_capacity(keys.len());
        for &(player, _) in keys {
            match self.address(at, scope, player) {
                Some(a) => addrs.push(a),
                None => return self.passthrough().get_many(at, scope, keys),
            }
        }
        // Misses in one host call.
        let missing: Vec<(PlayerRef, &str)> = keys
            .iter()
            .zip(&addrs)
            .filter(|((_, k), a)| self.find(a, k).is_none())
            .map(|(&(p, k), _)| (p, k))
            .collect();
        if !missing.is_empty() {
            let values = self.inner.get_many(at, scope, &missing);
            for (&(player, key), value) in missing.iter().zip(values) {
                let addr = self
                    .address(at, scope, player)
                    .expect("checked above: every key is cacheable");
                // A key listed twice is read twice but cached once.
                if self.find(&addr, key).is_none() {
                    self.insert(addr, at, key, value);
                }
            }
        }
        keys.iter()
            .zip(&addrs)
            .map(|((_, k), a)| {
                let i = self.find(a, k).expect("cached above");
                self.t.slots[i].value
            })
            .collect()
    }

    fn put(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, value: i64) {
        let Some(addr) = self.address(at, scope, player) else {
            self.passthrough().put(at, scope, player, key, value);
            self.forget();
            return;
        };
        // An overwrite needs no read.
        let i = match self.find(&addr, key) {
            Some(i) => i,
            None => self.insert(addr, at, key, value),
        };
        let s = &mut self.t.slots[i];
        s.value = value;
        s.pending = Some(CounterOp::Put(value));
    }

    fn put_blob(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, value: &[u8]) {
        self.passthrough().put_blob(at, scope, player, key, value);
        self.forget();
    }

    fn get_blob(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> Vec<u8> {
        self.passthrough().get_blob(at, scope, player, key)
    }

    fn set_insert(
        &mut self,
        at: u32,
        scope: Scope,
        player: PlayerRef,
        key: &str,
        member: &str,
    ) -> bool {
        let new = self
            .passthrough()
            .set_insert(at, scope, player, key, member);
        self.forget();
        new
    }

    fn set_count(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> u32 {
        self.passthrough().set_count(at, scope, player, key)
    }

    fn write_counters(&mut self, writes: &[CounterWrite<'_>]) {
        self.passthrough().write_counters(writes);
        self.forget();
    }

    fn log(&mut self, level: Level, message: &str) {
        self.inner.log(level, message)
    }
}

/// Runs one batch through a pack with the cache in front of `backend`,
/// and writes the counters back when the pack succeeds. On an error
/// nothing is written back: the host discards the batch anyway.
#[doc(hidden)]
pub fn run_batch<P: Pack>(
    pack: &mut P,
    backend: &mut dyn Backend,
    batch: &Batch,
) -> Result<Vec<Outcome>, PackError> {
    let mut cache = Cache::new(backend, batch);
    let outcomes = {
        let mut ctx = Ctx::new(&mut cache, batch);
        pack.on_batch(&mut ctx, batch)?;
        ctx.finish()
    };
    cache.flush();
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::EventKind;
    use crate::event::PlayerInfo;
    use opm_plugin_abi::{EventRecord, ParticipantRecord};
    use proptest::prelude::*;

    /// A host model: counters by resolved address, every call counted.
    /// Life instances of players outside the event resolve by a rule of
    /// its own; the cache must send those calls here, never guess.
    #[derive(Default)]
    struct Model<'b> {
        batch: Option<&'b Batch>,
        values: BTreeMap<(Scope, String, PlayerRef, String), i64>,
        calls: usize,
        write_calls: usize,
    }

    impl Model<'_> {
        fn addr(
            &self,
            at: u32,
            scope: Scope,
            player: PlayerRef,
            key: &str,
        ) -> (Scope, String, PlayerRef, String) {
            let ev = self.batch.unwrap().event(at as usize).unwrap();
            let inst = match scope {
                Scope::Lifetime => String::new(),
                Scope::Session => ev.session().to_string(),
                Scope::Match => ev.match_id().to_string(),
                Scope::Round => format!("{}#{}", ev.match_id(), ev.round()),
                Scope::Life => match [ev.actor(), ev.target()]
                    .into_iter()
                    .flatten()
                    .find(|p| p.player().index() == player)
                {
                    Some(p) => format!("{}#{}", ev.session(), p.life()),
                    None => format!("{}#elsewhere", ev.session()),
                },
            };
            (scope, inst, player, key.to_string())
        }
    }

    impl Backend for Model<'_> {
        fn add(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, delta: i64) -> i64 {
            self.calls += 1;
            let a = self.addr(at, scope, player, key);
            let v = self.values.entry(a).or_default();
            *v = v.wrapping_add(delta);
            *v
        }
        fn get(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str) -> i64 {
            self.calls += 1;
            let a = self.addr(at, scope, player, key);
            self.values.get(&a).copied().unwrap_or(0)
        }
        fn get_many(&mut self, at: u32, scope: Scope, keys: &[(PlayerRef, &str)]) -> Vec<i64> {
            self.calls += 1;
            keys.iter()
                .map(|(p, k)| {
                    let a = self.addr(at, scope, *p, k);
                    self.values.get(&a).copied().unwrap_or(0)
                })
                .collect()
        }
        fn put(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, value: i64) {
            self.calls += 1;
            let a = self.addr(at, scope, player, key);
            self.values.insert(a, value);
        }
        fn put_blob(&mut self, at: u32, scope: Scope, player: PlayerRef, key: &str, _: &[u8]) {
            // A blob replaces whatever the key held; as a counter it reads 0.
            self.calls += 1;
            let a = self.addr(at, scope, player, key);
            self.values.insert(a, 0);
        }
        fn get_blob(&mut self, _: u32, _: Scope, _: PlayerRef, _: &str) -> Vec<u8> {
            self.calls += 1;
            Vec::new()
        }
        fn set_insert(&mut self, _: u32, _: Scope, _: PlayerRef, _: &str, _: &str) -> bool {
            self.calls += 1;
            true
        }
        fn set_count(&mut self, _: u32, _: Scope, _: PlayerRef, _: &str) -> u32 {
            self.calls += 1;
            0
        }
        fn write_counters(&mut self, writes: &[CounterWrite<'_>]) {
            self.write_calls += 1;
            for w in writes {
                match w.op {
                    CounterOp::Add(d) => {
                        self.add(w.at, w.scope, w.player, w.key, d);
                    }
                    CounterOp::Put(v) => self.put(w.at, w.scope, w.player, w.key, v),
                }
                self.calls -= 1;
            }
        }
        fn log(&mut self, _: Level, _: &str) {}
    }

    fn participant(player: PlayerRef, life: u32) -> ParticipantRecord {
        ParticipantRecord {
            player,
            health: -1,
            life,
            ..ParticipantRecord::default()
        }
    }

    /// Events of players 0..4 in two matches and rounds; symbols 1, 2 are
    /// sessions, 3, 4 matches.
    fn batch(shape: &[(u8, u8, u8, u8)]) -> Batch {
        let events: Vec<EventRecord> = shape
            .iter()
            .enumerate()
            .map(|(i, &(actor, target, life, where_))| EventRecord {
                id: i as u64 + 1,
                kind: EventKind::PlayerKill as u8,
                session: 1 + (where_ & 1) as u32,
                match_id: 3 + ((where_ >> 1) & 1) as u32,
                round: 1 + ((where_ >> 2) & 1) as u32,
                actor: Some(participant(actor as u32 % 4, 1 + life as u32 % 3)),
                target: (target % 5 < 4)
                    .then(|| participant(target as u32 % 5, 1 + life as u32 / 3 % 3)),
                ..EventRecord::default()
            })
            .collect();
        let symbols = ["", "s1", "s2", "m1", "m2"].map(String::from).to_vec();
        let players = (0..4)
            .map(|p| PlayerInfo {
                guid: format!("g{p}"),
                name: String::new(),
            })
            .collect();
        Batch::from_parts(&events, symbols, players)
    }

    const SCOPES: [Scope; 5] = [
        Scope::Lifetime,
        Scope::Session,
        Scope::Match,
        Scope::Round,
        Scope::Life,
    ];

    /// One call: (kind, event, scope, player, key, value).
    type Op = (u8, u8, u8, u8, u8, i8);

    fn apply(b: &mut dyn Backend, n: usize, op: Op) -> i64 {
        let (kind, at, scope, player, key, value) = op;
        let at = at as u32 % n as u32;
        let scope = SCOPES[scope as usize % 5];
        let player = player as u32 % 4;
        let key = ["a", "b", "c"][key as usize % 3];
        match kind % 8 {
            0..=2 => b.add(at, scope, player, key, value as i64),
            3 => b.get(at, scope, player, key),
            4 => {
                b.put(at, scope, player, key, value as i64);
                0
            }
            5 => b
                .get_many(
                    at,
                    scope,
                    &[(player, key), ((player + 1) % 4, "a"), (player, key)],
                )
                .iter()
                .sum(),
            6 => {
                b.put_blob(at, scope, player, key, &[1]);
                0
            }
            _ => b.set_count(at, scope, player, key) as i64,
        }
    }

    proptest! {
        /// Whatever the calls, the cache returns what the host would and
        /// leaves the host holding what direct calls would have left.
        #[test]
        fn cache_is_transparent(
            shape in prop::collection::vec(any::<(u8, u8, u8, u8)>(), 1..12),
            ops in prop::collection::vec(any::<Op>(), 0..60),
        ) {
            let b = batch(&shape);
            let mut direct = Model { batch: Some(&b), ..Model::default() };
            let want: Vec<i64> = ops.iter().map(|&op| apply(&mut direct, b.len(), op)).collect();
            let mut host = Model { batch: Some(&b), ..Model::default() };
            let got: Vec<i64> = {
                let mut cache = Cache::new(&mut host, &b);
                let got = ops.iter().map(|&op| apply(&mut cache, b.len(), op)).collect();
                cache.flush();
                got
            };
            prop_assert_eq!(got, want);
            prop_assert_eq!(host.values, direct.values);
            prop_assert!(host.calls <= direct.calls);
        }
    }

    #[test]
    fn counters_cross_once_to_read_and_once_to_write_back() {
        let b = batch(&[(0, 1, 0, 0), (0, 2, 0, 0), (1, 0, 0, 0)]);
        let mut host = Model {
            batch: Some(&b),
            ..Model::default()
        };
        {
            let mut cache = Cache::new(&mut host, &b);
            for at in 0..3 {
                let actor = b.raw(at).actor().unwrap().player();
                for scope in SCOPES {
                    cache.add(at, scope, actor, "kills", 1);
                }
            }
            cache.flush();
        }
        // Actors 0, 0, 1: one read per scope and actor (the life numbers
        // are equal), then one write-back.
        assert_eq!(host.calls, 10);
        assert_eq!(host.write_calls, 1);
        assert_eq!(
            host.values[&(Scope::Lifetime, String::new(), 0, "kills".into())],
            2
        );
    }

    #[test]
    fn a_player_outside_the_event_goes_to_the_host_after_a_flush() {
        // Player 3 is in neither event.
        let b = batch(&[(0, 1, 0, 0), (1, 0, 0, 0)]);
        let mut host = Model {
            batch: Some(&b),
            ..Model::default()
        };
        {
            let mut cache = Cache::new(&mut host, &b);
            cache.add(0, Scope::Life, 3, "x", 1);
            cache.add(0, Scope::Lifetime, 0, "k", 1);
            assert_eq!(cache.get(1, Scope::Life, 3, "x"), 1);
            assert_eq!(cache.add(1, Scope::Life, 3, "x", 1), 2);
            // The fallback write emptied the cache: read again.
            assert_eq!(cache.add(1, Scope::Lifetime, 0, "k", 1), 2);
            cache.flush();
        }
        assert_eq!(
            host.values[&(Scope::Lifetime, String::new(), 0, "k".into())],
            2
        );
        assert_eq!(
            host.values[&(Scope::Life, "s1#elsewhere".into(), 3, "x".into())],
            2
        );
    }
}
