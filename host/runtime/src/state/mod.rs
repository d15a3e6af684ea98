//! Transactional plugin state: the committed view kept in memory per pack,
//! the per-batch write buffer, scope instance derivation and the lifecycle
//! bookkeeping that lets ended matches, rounds and lives be dropped.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::OnceLock;

use opm_model::plugin::{Scope, StateKey, StateValue};
use opm_model::{Event, EventKind, Str};

mod committed;

pub(crate) use committed::Committed;
use committed::{Hashes, str_hash};

/// FxHash: the state maps hash short strings on every guest call, where
/// SipHash showed up as the largest cost. Keys are a pack's own state keys
/// and player GUIDs; a hostile guest can only slow itself down.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut b = [0u8; 8];
            b[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(b));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;
pub(crate) type FxSet<K> = HashSet<K, BuildHasherDefault<FxHasher>>;

/// `(Str, Str)` looked up as `(&str, &str)`: hashes and compares as the
/// two strings, so std maps can be probed without building an owned key.
trait PairKey {
    fn parts(&self) -> (&str, &str);
}

impl PairKey for (Str, Str) {
    fn parts(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

impl PairKey for (&str, &str) {
    fn parts(&self) -> (&str, &str) {
        (self.0, self.1)
    }
}

impl<'a> Borrow<dyn PairKey + 'a> for (Str, Str) {
    fn borrow(&self) -> &(dyn PairKey + 'a) {
        self
    }
}

impl Hash for dyn PairKey + '_ {
    fn hash<H: Hasher>(&self, h: &mut H) {
        let (a, b) = self.parts();
        a.hash(h);
        b.hash(h);
    }
}

impl PartialEq for dyn PairKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn PairKey + '_ {}

fn counter(v: Option<&StateValue>) -> i64 {
    match v {
        Some(StateValue::Counter(n)) => *n,
        _ => 0,
    }
}

/// A buffered write.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    /// `put` sets `base`; `add` accumulates `delta`. Counters commit as
    /// `base or committed + delta`, so concurrent batches of one pack on
    /// different workers never lose an increment.
    /// `seen` is the committed counter read at `Committed::generation`
    /// (for `base: None`), so repeated adds skip the committed lookup while
    /// nothing was committed in between.
    Counter {
        base: Option<i64>,
        delta: i64,
        seen: Option<Seen>,
    },
    /// Empty deletes.
    Blob(Vec<u8>),
    /// Members this batch added that were not committed when it added them.
    Set(BTreeSet<String>),
}

/// What a committed lookup found for a slot, valid while
/// `Committed::generation` is still `generation`: nothing was committed in
/// between, so the lookup would find the same again.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seen {
    generation: u64,
    /// A committed value of any type exists there.
    exists: bool,
    /// Its counter value (0 when absent or not a counter).
    counter: i64,
}

impl Seen {
    fn of(c: &Committed, v: Option<&StateValue>) -> Seen {
        Seen {
            generation: c.generation,
            exists: v.is_some(),
            counter: counter(v),
        }
    }

    fn valid(self, c: &Committed) -> Option<Seen> {
        (self.generation == c.generation).then_some(self)
    }
}

/// Strings a transaction has seen, as small ids: the write buffer is keyed
/// by ids so a state call hashes 16 bytes instead of three strings, and
/// the strings are shared, not cloned, until commit.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: FxMap<Str, u32>,
    strs: Vec<Str>,
    /// `str_hash` of each string: committed lookups and the commit reuse it.
    hashes: Vec<u64>,
}

impl Interner {
    pub(crate) fn id(&mut self, s: &Str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        self.push(s.clone())
    }

    fn find(&self, s: &str) -> Option<u32> {
        self.ids.get(s).copied()
    }

    fn push(&mut self, s: Str) -> u32 {
        let i = self.strs.len() as u32;
        self.hashes.push(str_hash(&s));
        self.strs.push(s.clone());
        self.ids.insert(s, i);
        i
    }

    fn get(&self, i: u32) -> &Str {
        &self.strs[i as usize]
    }

    fn hash(&self, i: u32) -> u64 {
        self.hashes[i as usize]
    }

    fn clear(&mut self) {
        self.ids.clear();
        self.strs.clear();
        self.hashes.clear();
    }
}

/// A slot by interned ids (valid for the transaction that made them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Id {
    pub scope: Scope,
    pub inst: u32,
    pub player: u32,
    pub key: u32,
}

/// Why a state call was refused; it traps the batch.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StateLimit {
    #[error("state key of {0} bytes exceeds {1}")]
    KeyTooLong(usize, usize),
    #[error("blob of {0} bytes exceeds {1}")]
    BlobTooBig(usize, usize),
    #[error("player holds {0} keys, the cap")]
    TooManyKeys(usize),
    #[error("set holds {0} members, the cap")]
    SetFull(usize),
    #[error("set member of {0} bytes exceeds {1}")]
    MemberTooLong(usize, usize),
    #[error("instance interned {0} key names, the cap")]
    TooManyKeyNames(usize),
}

/// Limits a transaction enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TxnLimits {
    pub blob_bytes: usize,
    pub keys_per_player: usize,
    pub set_members: usize,
    pub member_bytes: usize,
}

/// One batch's writes. Reads see the committed value plus these writes.
#[derive(Debug, Default)]
pub(crate) struct Txn {
    writes: FxMap<Id, Pending>,
    /// Committed lookups of slots this batch read but has not written, so
    /// the write that usually follows (the SDK's cache reads a counter,
    /// then hands its write over) and the commit do not look it up again.
    reads: FxMap<Id, Seen>,
    /// Keys this batch creates, per player id.
    new_keys: FxMap<u32, usize>,
    pub(crate) insts: Interner,
    pub(crate) players: Interner,
    pub(crate) keys: Interner,
}

#[cfg(test)]
/// Where a state call lands, by name.
pub(crate) struct Slot {
    pub scope: Scope,
    pub inst: Str,
    pub player: Str,
    pub key: Str,
}

impl Txn {
    /// Empties the transaction but keeps its tables' capacity, so the next
    /// batch of the pack does not grow them again from nothing.
    pub(crate) fn clear(&mut self) {
        self.writes.clear();
        self.reads.clear();
        self.new_keys.clear();
        self.insts.clear();
        self.players.clear();
        self.keys.clear();
    }

    /// Whether `clear` would keep anything worth reusing.
    pub(crate) fn has_capacity(&self) -> bool {
        self.writes.capacity() > 0 || self.reads.capacity() > 0
    }

    #[cfg(test)]
    /// Interns a named slot.
    pub(crate) fn id(&mut self, s: &Slot) -> Id {
        Id {
            scope: s.scope,
            inst: self.insts.id(&s.inst),
            player: self.players.id(&s.player),
            key: self.keys.id(&s.key),
        }
    }

    #[cfg(test)]
    /// A named slot's id when this transaction has seen all its names
    /// (otherwise it has no write there).
    fn find(&self, s: &Slot) -> Option<Id> {
        Some(Id {
            scope: s.scope,
            inst: self.insts.find(&s.inst)?,
            player: self.players.find(&s.player)?,
            key: self.keys.find(&s.key)?,
        })
    }

    fn committed<'c>(&self, c: &'c Committed, id: Id) -> Option<&'c StateValue> {
        committed_at(c, &self.insts, &self.players, &self.keys, id)
    }

    /// The committed lookup for `id`, from `reads` while it is valid.
    fn seen(&mut self, c: &Committed, id: Id) -> Seen {
        if let Some(s) = self.reads.get(&id).and_then(|s| s.valid(c)) {
            return s;
        }
        let s = Seen::of(c, self.committed(c, id));
        self.reads.insert(id, s);
        s
    }

    /// Counts a key this batch creates against the player's cap.
    fn claim_key(&mut self, c: &Committed, player: u32, lim: &TxnLimits) -> Result<(), StateLimit> {
        let held =
            c.keys_of(self.players.get(player)) + self.new_keys.get(&player).copied().unwrap_or(0);
        if held >= lim.keys_per_player {
            return Err(StateLimit::TooManyKeys(held));
        }
        *self.new_keys.entry(player).or_default() += 1;
        Ok(())
    }

    /// Makes room for a write; fails when it would create a key beyond the
    /// player's cap.
    fn reserve(&mut self, c: &Committed, id: Id, lim: &TxnLimits) -> Result<(), StateLimit> {
        if self.writes.contains_key(&id) || self.seen(c, id).exists {
            return Ok(());
        }
        self.claim_key(c, id.player, lim)
    }

    #[cfg(test)]
    pub(crate) fn get(&mut self, c: &Committed, s: &Slot) -> i64 {
        match self.find(s) {
            Some(id) => self.get_at(c, id),
            None => counter(committed_named(c, s)),
        }
    }

    pub(crate) fn get_at(&mut self, c: &Committed, id: Id) -> i64 {
        match self.writes.get(&id) {
            Some(Pending::Counter {
                base: Some(base),
                delta,
                ..
            }) => base.wrapping_add(*delta),
            Some(Pending::Counter {
                base: None,
                delta,
                seen,
            }) => match seen.and_then(|s| s.valid(c)) {
                Some(s) => s.counter.wrapping_add(*delta),
                None => counter(self.committed(c, id)).wrapping_add(*delta),
            },
            Some(_) => 0,
            None => self.seen(c, id).counter,
        }
    }

    #[cfg(test)]
    pub(crate) fn add(
        &mut self,
        c: &Committed,
        s: &Slot,
        delta: i64,
        lim: &TxnLimits,
    ) -> Result<i64, StateLimit> {
        let id = self.id(s);
        self.add_at(c, id, delta, lim)
    }

    pub(crate) fn add_at(
        &mut self,
        c: &Committed,
        id: Id,
        delta: i64,
        lim: &TxnLimits,
    ) -> Result<i64, StateLimit> {
        // The hot path: one transaction lookup, at most one committed lookup.
        if let Some(p) = self.writes.get_mut(&id) {
            match p {
                Pending::Counter {
                    base,
                    delta: d,
                    seen,
                } => {
                    *d = d.wrapping_add(delta);
                    let base = match (*base, seen.and_then(|s| s.valid(c))) {
                        (Some(b), _) => b,
                        (None, Some(s)) => s.counter,
                        (None, None) => {
                            let s = Seen::of(
                                c,
                                committed_at(c, &self.insts, &self.players, &self.keys, id),
                            );
                            *seen = Some(s);
                            s.counter
                        }
                    };
                    return Ok(base.wrapping_add(*d));
                }
                other => {
                    *other = Pending::Counter {
                        base: Some(0),
                        delta,
                        seen: None,
                    };
                    return Ok(delta);
                }
            }
        }
        let seen = self.seen(c, id);
        if !seen.exists {
            self.claim_key(c, id.player, lim)?;
        }
        self.writes.insert(
            id,
            Pending::Counter {
                base: None,
                delta,
                seen: Some(seen),
            },
        );
        Ok(seen.counter.wrapping_add(delta))
    }

    #[cfg(test)]
    pub(crate) fn put(
        &mut self,
        c: &Committed,
        s: &Slot,
        value: i64,
        lim: &TxnLimits,
    ) -> Result<(), StateLimit> {
        let id = self.id(s);
        self.put_at(c, id, value, lim)
    }

    pub(crate) fn put_at(
        &mut self,
        c: &Committed,
        id: Id,
        value: i64,
        lim: &TxnLimits,
    ) -> Result<(), StateLimit> {
        self.reserve(c, id, lim)?;
        self.writes.insert(
            id,
            Pending::Counter {
                base: Some(value),
                delta: 0,
                seen: None,
            },
        );
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn put_blob(
        &mut self,
        c: &Committed,
        s: &Slot,
        value: Vec<u8>,
        lim: &TxnLimits,
    ) -> Result<(), StateLimit> {
        let id = self.id(s);
        self.put_blob_at(c, id, value, lim)
    }

    pub(crate) fn put_blob_at(
        &mut self,
        c: &Committed,
        id: Id,
        value: Vec<u8>,
        lim: &TxnLimits,
    ) -> Result<(), StateLimit> {
        if value.len() > lim.blob_bytes {
            return Err(StateLimit::BlobTooBig(value.len(), lim.blob_bytes));
        }
        self.reserve(c, id, lim)?;
        self.writes.insert(id, Pending::Blob(value));
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn get_blob(&self, c: &Committed, s: &Slot) -> Vec<u8> {
        match self.find(s) {
            Some(id) => self.get_blob_at(c, id),
            None => match committed_named(c, s) {
                Some(StateValue::Blob(b)) => b.clone(),
                _ => Vec::new(),
            },
        }
    }

    pub(crate) fn get_blob_at(&self, c: &Committed, id: Id) -> Vec<u8> {
        match self.writes.get(&id) {
            Some(Pending::Blob(b)) => b.clone(),
            Some(_) => Vec::new(),
            None => match self.committed(c, id) {
                Some(StateValue::Blob(b)) => b.clone(),
                _ => Vec::new(),
            },
        }
    }

    fn committed_set<'a>(&self, c: &'a Committed, id: Id) -> Option<&'a BTreeSet<String>> {
        match self.committed(c, id) {
            Some(StateValue::Set(m)) => Some(m),
            _ => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn set_insert(
        &mut self,
        c: &Committed,
        s: &Slot,
        member: String,
        lim: &TxnLimits,
    ) -> Result<bool, StateLimit> {
        let id = self.id(s);
        self.set_insert_at(c, id, member, lim)
    }

    pub(crate) fn set_insert_at(
        &mut self,
        c: &Committed,
        id: Id,
        member: String,
        lim: &TxnLimits,
    ) -> Result<bool, StateLimit> {
        if member.len() > lim.member_bytes {
            return Err(StateLimit::MemberTooLong(member.len(), lim.member_bytes));
        }
        let overwritten = matches!(
            self.writes.get(&id),
            Some(Pending::Counter { .. } | Pending::Blob(_))
        );
        let committed = if overwritten {
            None
        } else {
            self.committed_set(c, id)
        };
        if committed.is_some_and(|m| m.contains(&member)) {
            return Ok(false);
        }
        self.reserve(c, id, lim)?;
        let count = self.set_count_at(c, id) as usize;
        let e = self
            .writes
            .entry(id)
            .or_insert_with(|| Pending::Set(BTreeSet::new()));
        if !matches!(e, Pending::Set(_)) {
            *e = Pending::Set(BTreeSet::new());
        }
        let Pending::Set(added) = e else {
            unreachable!()
        };
        if added.contains(&member) {
            return Ok(false);
        }
        if count >= lim.set_members {
            return Err(StateLimit::SetFull(count));
        }
        added.insert(member);
        Ok(true)
    }

    #[cfg(test)]
    pub(crate) fn set_count(&self, c: &Committed, s: &Slot) -> u32 {
        match self.find(s) {
            Some(id) => self.set_count_at(c, id),
            None => match committed_named(c, s) {
                Some(StateValue::Set(m)) => m.len() as u32,
                _ => 0,
            },
        }
    }

    pub(crate) fn set_count_at(&self, c: &Committed, id: Id) -> u32 {
        match self.writes.get(&id) {
            Some(Pending::Set(added)) => {
                (self.committed_set(c, id).map_or(0, BTreeSet::len) + added.len()) as u32
            }
            Some(_) => 0,
            None => self.committed_set(c, id).map_or(0, BTreeSet::len) as u32,
        }
    }

    /// Resolves the writes against the committed state (the caller holds
    /// its lock) and adds deletions for every ended instance. Returns the
    /// writes, ready for `StateStore::commit`, and their hashes, for
    /// `apply`.
    pub(crate) fn resolve(&self, c: &Committed, pack: &Str, ended: &EndedSet) -> Resolved {
        // Ids map one-to-one to names, so the writes are unique keys already.
        let mut out: Vec<(StateKey, Option<StateValue>)> = Vec::with_capacity(self.writes.len());
        let mut hashes: Vec<Hashes> = Vec::with_capacity(self.writes.len());
        for (id, p) in &self.writes {
            let scope = id.scope;
            let inst = self.insts.get(id.inst);
            let player = self.players.get(id.player);
            let key = self.keys.get(id.key);
            let h = hashes_of(&self.insts, &self.players, &self.keys, *id);
            let covered = ended.covers(scope, inst, player);
            // A counter that stays needs no committed lookup when the one
            // this batch made is still valid (or a `put` gave its base).
            if let Pending::Counter { base, delta, seen } = p
                && !covered
            {
                let base = match (base, seen.and_then(|s| s.valid(c))) {
                    (Some(b), _) => *b,
                    (None, Some(s)) => s.counter,
                    (None, None) => counter(c.get(scope, inst, player, key, h)),
                };
                hashes.push(h);
                out.push((
                    StateKey {
                        pack: pack.clone(),
                        scope,
                        instance: inst.clone(),
                        player: player.clone(),
                        key: key.clone(),
                    },
                    Some(StateValue::Counter(base.wrapping_add(*delta))),
                ));
                continue;
            }
            let current = c.get(scope, inst, player, key, h);
            let value = match p {
                Pending::Counter { base, delta, .. } => {
                    let committed = match current {
                        Some(StateValue::Counter(v)) => *v,
                        _ => 0,
                    };
                    Some(StateValue::Counter(
                        base.unwrap_or(committed).wrapping_add(*delta),
                    ))
                }
                Pending::Blob(b) if b.is_empty() => None,
                Pending::Blob(b) => Some(StateValue::Blob(b.clone())),
                Pending::Set(added) => {
                    let mut m = match current {
                        Some(StateValue::Set(m)) => m.clone(),
                        _ => BTreeSet::new(),
                    };
                    m.extend(added.iter().cloned());
                    Some(StateValue::Set(m))
                }
            };
            let value = if covered { None } else { value };
            // A delete of something that was never committed is noise.
            if value.is_none() && current.is_none() {
                continue;
            }
            hashes.push(h);
            out.push((
                StateKey {
                    pack: pack.clone(),
                    scope,
                    instance: inst.clone(),
                    player: player.clone(),
                    key: key.clone(),
                },
                value,
            ));
        }
        if !ended.is_empty() {
            for (scope, instance, player, key) in c.ended_keys(ended) {
                // Committed keys this batch wrote are handled above.
                let written = (|| {
                    let id = Id {
                        scope,
                        inst: self.insts.find(&instance)?,
                        player: self.players.find(&player)?,
                        key: self.keys.find(&key)?,
                    };
                    self.writes.contains_key(&id).then_some(())
                })()
                .is_some();
                if written {
                    continue;
                }
                hashes.push(Hashes::of(scope, &instance, &player, &key));
                let k = StateKey {
                    pack: pack.clone(),
                    scope,
                    instance,
                    player,
                    key,
                };
                out.push((k, None));
            }
        }
        // Unordered: keys are unique, so the order cannot change what a
        // store ends up holding, and sorting was a visible cost.
        Resolved {
            writes: out,
            hashes,
        }
    }
}

/// A transaction's resolved writes and, in the same order, where each
/// lies in the committed state.
pub(crate) struct Resolved {
    pub writes: Vec<(StateKey, Option<StateValue>)>,
    hashes: Vec<Hashes>,
}

impl Resolved {
    pub(crate) fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

fn hashes_of(insts: &Interner, players: &Interner, keys: &Interner, id: Id) -> Hashes {
    Hashes::new(
        id.scope,
        insts.hash(id.inst),
        players.hash(id.player),
        keys.hash(id.key),
    )
}

#[cfg(test)]
/// The committed value of a named slot, for the by-name test calls.
fn committed_named<'c>(c: &'c Committed, s: &Slot) -> Option<&'c StateValue> {
    c.get(
        s.scope,
        &s.inst,
        &s.player,
        &s.key,
        Hashes::of(s.scope, &s.inst, &s.player, &s.key),
    )
}

/// The committed value at `id`, found with the hashes interned with its
/// names.
fn committed_at<'c>(
    c: &'c Committed,
    insts: &Interner,
    players: &Interner,
    keys: &Interner,
    id: Id,
) -> Option<&'c StateValue> {
    c.get(
        id.scope,
        insts.get(id.inst),
        players.get(id.player),
        keys.get(id.key),
        hashes_of(insts, players, keys, id),
    )
}

/// Applies resolved writes to the in-memory committed state.
/// Takes them by value: the store has them already, and moving the names
/// and values in saves a clone and a drop of each.
pub(crate) fn apply(c: &mut Committed, resolved: Resolved) {
    debug_assert_eq!(resolved.writes.len(), resolved.hashes.len());
    c.generation = c.generation.wrapping_add(1);
    for ((k, v), h) in resolved.writes.into_iter().zip(resolved.hashes) {
        c.set(k.scope, k.instance, k.player, k.key, v, h);
    }
}

/// A lifecycle span that has ended: its state can go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ended {
    /// One player's life: (player, session, life); its instance is
    /// `"{session}#{life}"`, shared by every player on their life with that
    /// number. Kept as parts: formatting it for every death was a visible
    /// cost of each batch.
    Life(Str, Str, u32),
    /// A match and all its rounds.
    Match(Str),
    /// Rounds of a match numbered below `round` (a later round started).
    RoundsBefore(Str, u32),
}

/// The lifecycle spans that ended in a batch, indexed for O(1) checks.
#[derive(Debug, Default)]
pub(crate) struct EndedSet {
    /// Ended lives: session → life number → players.
    lives: FxMap<Str, FxMap<u32, Vec<Str>>>,
    matches: FxSet<Str>,
    rounds_before: FxMap<Str, u32>,
}

impl EndedSet {
    pub(crate) fn new(ended: Vec<Ended>) -> EndedSet {
        let mut s = EndedSet::default();
        for e in ended {
            match e {
                Ended::Life(p, session, life) => {
                    let players = s.lives.entry(session).or_default().entry(life).or_default();
                    if !players.contains(&p) {
                        players.push(p);
                    }
                }
                Ended::Match(m) => {
                    s.matches.insert(m);
                }
                Ended::RoundsBefore(m, r) => {
                    let slot = s.rounds_before.entry(m).or_default();
                    *slot = (*slot).max(r);
                }
            }
        }
        s
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.lives.is_empty() && self.matches.is_empty() && self.rounds_before.is_empty()
    }

    /// Players whose life `inst` (`"{session}#{life}"`) ended.
    fn life(&self, inst: &str) -> Option<&Vec<Str>> {
        let (session, life) = inst.rsplit_once('#')?;
        self.lives.get(session)?.get(&life.parse::<u32>().ok()?)
    }

    fn covers_instance(&self, scope: Scope, inst: &str) -> bool {
        match scope {
            Scope::Life => self.life(inst).is_some(),
            Scope::Match => self.matches.contains(inst),
            Scope::Round => match inst.rsplit_once('#') {
                Some((m, r)) => {
                    self.matches.contains(m)
                        || self
                            .rounds_before
                            .get(m)
                            .is_some_and(|&before| r.parse::<u32>().is_ok_and(|r| r < before))
                }
                None => false,
            },
            Scope::Lifetime | Scope::Session => false,
        }
    }

    fn covers(&self, scope: Scope, inst: &str, player: &str) -> bool {
        match scope {
            Scope::Life => self
                .life(inst)
                .is_some_and(|ps| ps.iter().any(|p| &**p == player)),
            _ => self.covers_instance(scope, inst),
        }
    }
}

/// Whether the actor's life ends with this event (the tracker's rule).
fn actor_dies(ev: &EventInfo) -> bool {
    ev.kind == EventKind::PlayerSuicide || (ev.kind == EventKind::Death && ev.target.is_none())
}

/// What scope derivation needs from one event.
#[derive(Debug, Clone)]
pub(crate) struct EventInfo {
    pub kind: EventKind,
    pub session: Str,
    pub match_id: Str,
    pub round: u32,
    pub actor: Option<(Str, u32)>,
    pub target: Option<(Str, u32)>,
    /// The round instance and the actor's and target's life instances,
    /// formatted on first use. The infos of a batch are shared by every
    /// pack, so each is formatted once per batch, not once per pack.
    formatted: [OnceLock<Str>; 3],
}

impl EventInfo {
    pub(crate) fn of(ev: &Event) -> EventInfo {
        EventInfo {
            kind: ev.kind,
            session: ev.session.clone(),
            match_id: ev.match_id.clone(),
            round: ev.round,
            actor: ev.actor.as_ref().map(|p| (p.guid.clone(), p.life)),
            target: ev.target.as_ref().map(|p| (p.guid.clone(), p.life)),
            formatted: Default::default(),
        }
    }

    /// The event's round instance ("match#round").
    pub(crate) fn round_instance(&self) -> Str {
        self.formatted[0]
            .get_or_init(|| numbered(&self.match_id, self.round))
            .clone()
    }

    /// The instance of life `life` of `guid` in the event's session
    /// ("session#life").
    pub(crate) fn life_instance(&self, guid: &Str, life: u32) -> Str {
        let format = || numbered(&self.session, life);
        for (i, p) in [&self.actor, &self.target].into_iter().enumerate() {
            if let Some((g, l)) = p
                && *l == life
                && g == guid
            {
                return self.formatted[1 + i].get_or_init(format).clone();
            }
        }
        format()
    }
}

/// `"{name}#{n}"`, the name of a round or life instance, built without the
/// formatting machinery and with one allocation: it is made for every
/// event and participant a pack addresses, and `format!` into a `String`
/// then copied into a `Str` was about 5 % of the plugin stage.
fn numbered(name: &str, n: u32) -> Str {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let digits = &digits[i..];
    let len = name.len() + 1 + digits.len();
    let mut short = [0u8; 96];
    if len <= short.len() {
        short[..name.len()].copy_from_slice(name.as_bytes());
        short[name.len()] = b'#';
        short[name.len() + 1..len].copy_from_slice(digits);
        // Valid UTF-8: a str, an ASCII '#' and ASCII digits.
        Str::from(std::str::from_utf8(&short[..len]).expect("str + ascii"))
    } else {
        let mut s = String::with_capacity(len);
        s.push_str(name);
        s.push('#');
        s.push_str(std::str::from_utf8(digits).expect("ascii digits"));
        Str::from(s)
    }
}

/// Latest life per (session, player) the runtime has seen, and whether it
/// has ended. A player not in the event a state call names gets this life;
/// when it has ended, the next one (the number the tracker gives the player
/// on their next appearance), so an ended life is never addressed again and
/// dropping it cannot change what a pack reads.
#[derive(Debug, Default)]
pub(crate) struct LifeBook {
    lives: FxMap<(Str, Str), (u32, bool)>,
}

impl LifeBook {
    fn upcoming(&self, session: &Str, guid: &Str) -> u32 {
        match self.lives.get(&(&**session, &**guid) as &dyn PairKey) {
            Some(&(life, true)) => life,
            Some(&(life, false)) => life + 1,
            None => 1,
        }
    }

    /// Records a batch's events, in order.
    pub(crate) fn observe(&mut self, events: &[EventInfo]) {
        for ev in events {
            if let Some((g, life)) = &ev.actor {
                self.lives
                    .insert((ev.session.clone(), g.clone()), (*life, !actor_dies(ev)));
            }
            if let Some((g, life)) = &ev.target {
                self.lives.insert(
                    (ev.session.clone(), g.clone()),
                    (*life, !ev.kind.ends_life()),
                );
            }
        }
    }
}

/// The scope instance for a state call made at `events[at]` for `guid`.
/// `book` is the life book as of the start of `events`. (The state bridge
/// derives the same step by step, caching; tests check this reference.)
#[cfg(test)]
pub(crate) fn instance(
    scope: Scope,
    events: &[EventInfo],
    at: usize,
    guid: &Str,
    book: &LifeBook,
) -> Str {
    let ev = &events[at];
    match scope {
        Scope::Lifetime => opm_model::event::empty(),
        Scope::Session => ev.session.clone(),
        Scope::Match => ev.match_id.clone(),
        Scope::Round => ev.round_instance(),
        Scope::Life => ev.life_instance(guid, life_at(events, at, guid, book)),
    }
}

pub(crate) fn life_at(events: &[EventInfo], at: usize, guid: &Str, book: &LifeBook) -> u32 {
    let ev = &events[at];
    for p in [&ev.actor, &ev.target].into_iter().flatten() {
        if &p.0 == guid {
            return p.1;
        }
    }
    for prev in events[..at].iter().rev() {
        if prev.session != ev.session {
            continue;
        }
        if let Some((g, life)) = &prev.target
            && g == guid
        {
            return if prev.kind.ends_life() {
                life + 1
            } else {
                *life
            };
        }
        if let Some((g, life)) = &prev.actor
            && g == guid
        {
            return if actor_dies(prev) { life + 1 } else { *life };
        }
    }
    book.upcoming(&ev.session, guid)
}

/// Lifecycle spans that end within `events`.
pub(crate) fn ended_in(events: &[EventInfo]) -> EndedSet {
    EndedSet::new(ended_list(events))
}

fn ended_list(events: &[EventInfo]) -> Vec<Ended> {
    let mut out = Vec::new();
    for ev in events {
        // The tracker starts a new life on every spawn, dead or not, so the
        // previous one is over even without a death.
        if let Some((g, life)) = &ev.actor
            && ev.kind.starts_life()
            && *life > 1
        {
            out.push(Ended::Life(g.clone(), ev.session.clone(), life - 1));
        }
        if let Some((g, life)) = &ev.actor
            && actor_dies(ev)
        {
            out.push(Ended::Life(g.clone(), ev.session.clone(), *life));
        }
        if let Some((g, life)) = &ev.target
            && ev.kind.ends_life()
        {
            out.push(Ended::Life(g.clone(), ev.session.clone(), *life));
        }
        match ev.kind {
            EventKind::MatchEnd | EventKind::GameEnd if !ev.match_id.is_empty() => {
                out.push(Ended::Match(ev.match_id.clone()));
            }
            EventKind::RoundStart if ev.round > 1 => {
                out.push(Ended::RoundsBefore(ev.match_id.clone(), ev.round));
            }
            _ => {}
        }
    }
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: TxnLimits = TxnLimits {
        blob_bytes: 16,
        keys_per_player: 3,
        set_members: 2,
        member_bytes: 8,
    };

    fn s(scope: Scope, inst: &str, player: &str, key: &str) -> Slot {
        Slot {
            scope,
            inst: Str::from(inst),
            player: Str::from(player),
            key: Str::from(key),
        }
    }

    fn pack() -> Str {
        Str::from("p")
    }

    #[test]
    fn numbered_names_match_format() {
        let long = "m".repeat(200);
        for name in ["", "S", "match-7f3a", "sess\u{e9}#x", long.as_str()] {
            for n in [0, 1, 9, 10, 99, 100, 12_345, u32::MAX] {
                assert_eq!(&*numbered(name, n), format!("{name}#{n}"));
            }
        }
    }

    #[test]
    fn reads_see_committed_plus_own_writes_and_commit_resolves() {
        let mut c = Committed::default();
        let k = s(Scope::Lifetime, "", "a", "kills");
        let w = Txn::default().resolve(&c, &pack(), &EndedSet::default());
        assert!(w.is_empty());
        let mut t = Txn::default();
        t.put(&c, &k, 10, &LIM).unwrap();
        let w = t.resolve(&c, &pack(), &EndedSet::default());
        apply(&mut c, w);
        let mut t = Txn::default();
        assert_eq!(t.get(&c, &k), 10);
        assert_eq!(t.add(&c, &k, 5, &LIM).unwrap(), 15);
        assert_eq!(t.get(&c, &k), 15);
        // Another batch commits meanwhile: the increment is not lost.
        let mut other = Txn::default();
        other.add(&c, &k, 1, &LIM).unwrap();
        let w = other.resolve(&c, &pack(), &EndedSet::default());
        apply(&mut c, w);
        let w = t.resolve(&c, &pack(), &EndedSet::default());
        assert_eq!(w.writes[0].1, Some(StateValue::Counter(16)));
        apply(&mut c, w);
        assert_eq!(Txn::default().get(&c, &k), 16);
    }

    #[test]
    fn discarded_txn_changes_nothing() {
        let c = Committed::default();
        let k = s(Scope::Match, "m1", "a", "x");
        let mut t = Txn::default();
        t.add(&c, &k, 3, &LIM).unwrap();
        drop(t);
        assert_eq!(Txn::default().get(&c, &k), 0);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn blobs_and_sets() {
        let mut c = Committed::default();
        let b = s(Scope::Lifetime, "", "a", "blob");
        let set = s(Scope::Lifetime, "", "a", "maps");
        let mut t = Txn::default();
        t.put_blob(&c, &b, vec![1, 2], &LIM).unwrap();
        assert_eq!(t.get_blob(&c, &b), vec![1, 2]);
        assert!(t.set_insert(&c, &set, "m1".into(), &LIM).unwrap());
        assert!(!t.set_insert(&c, &set, "m1".into(), &LIM).unwrap());
        assert_eq!(t.set_count(&c, &set), 1);
        let w = t.resolve(&c, &pack(), &EndedSet::default());
        apply(&mut c, w);
        let mut t = Txn::default();
        assert!(!t.set_insert(&c, &set, "m1".into(), &LIM).unwrap());
        assert!(t.set_insert(&c, &set, "m2".into(), &LIM).unwrap());
        assert!(matches!(
            t.set_insert(&c, &set, "m3".into(), &LIM),
            Err(StateLimit::SetFull(2))
        ));
        t.put_blob(&c, &b, Vec::new(), &LIM).unwrap();
        let w = t.resolve(&c, &pack(), &EndedSet::default());
        apply(&mut c, w);
        assert_eq!(Txn::default().get_blob(&c, &b), Vec::<u8>::new());
        assert_eq!(Txn::default().set_count(&c, &set), 2);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn limits_trap() {
        let c = Committed::default();
        let mut t = Txn::default();
        assert!(matches!(
            t.put_blob(&c, &s(Scope::Lifetime, "", "a", "b"), vec![0; 17], &LIM),
            Err(StateLimit::BlobTooBig(17, 16))
        ));
        for k in ["a", "b", "c"] {
            t.add(&c, &s(Scope::Lifetime, "", "p", k), 1, &LIM).unwrap();
        }
        // Rewriting an existing key is fine; a fourth key is not.
        t.add(&c, &s(Scope::Lifetime, "", "p", "a"), 1, &LIM)
            .unwrap();
        assert!(matches!(
            t.add(&c, &s(Scope::Match, "m", "p", "d"), 1, &LIM),
            Err(StateLimit::TooManyKeys(3))
        ));
        // Another player has their own quota.
        t.add(&c, &s(Scope::Lifetime, "", "q", "a"), 1, &LIM)
            .unwrap();
        assert!(matches!(
            t.set_insert(
                &c,
                &s(Scope::Lifetime, "", "q", "s"),
                "123456789".into(),
                &LIM
            ),
            Err(StateLimit::MemberTooLong(9, 8))
        ));
    }

    #[test]
    fn ended_instances_are_deleted_in_the_commit() {
        let lim = TxnLimits {
            keys_per_player: 10,
            ..LIM
        };
        let mut c = Committed::default();
        let mut t = Txn::default();
        let life = s(Scope::Life, "sess#1", "a", "streak");
        let round = s(Scope::Round, "m1#1", "a", "k");
        let round2 = s(Scope::Round, "m1#2", "a", "k");
        let other = s(Scope::Round, "m10#1", "a", "k");
        // Another player on a life with the same number is not affected.
        let their_life = s(Scope::Life, "sess#1", "c", "streak");
        for k in [&life, &round, &round2, &other, &their_life] {
            t.add(&c, k, 1, &lim).unwrap();
        }
        let w = t.resolve(&c, &pack(), &EndedSet::default());
        apply(&mut c, w);
        assert_eq!(c.len(), 5);
        let mut t = Txn::default();
        t.add(&c, &life, 1, &lim).unwrap();
        let w = t.resolve(
            &c,
            &pack(),
            &EndedSet::new(vec![
                Ended::Life(Str::from("a"), Str::from("sess"), 1),
                Ended::RoundsBefore(Str::from("m1"), 2),
            ]),
        );
        assert_eq!(w.writes.len(), 2);
        assert!(w.writes.iter().all(|(_, v)| v.is_none()));
        apply(&mut c, w);
        assert_eq!(c.len(), 3);
        let w = Txn::default().resolve(
            &c,
            &pack(),
            &EndedSet::new(vec![Ended::Match(Str::from("m1"))]),
        );
        assert_eq!(w.writes.len(), 1);
        apply(&mut c, w);
        assert_eq!(c.snapshot(&pack())[0].0.instance.as_str(), "m10#1");
        assert_eq!(c.keys_of(&Str::from("a")), 1);
    }

    fn info(kind: EventKind, actor: Option<(&str, u32)>, target: Option<(&str, u32)>) -> EventInfo {
        EventInfo {
            kind,
            session: Str::from("S"),
            match_id: Str::from("M"),
            round: 2,
            actor: actor.map(|(g, l)| (Str::from(g), l)),
            target: target.map(|(g, l)| (Str::from(g), l)),
            formatted: Default::default(),
        }
    }

    #[test]
    fn scope_instances_follow_the_event_and_player() {
        let book = LifeBook::default();
        let evs = vec![
            info(EventKind::PlayerKill, Some(("a", 3)), Some(("b", 7))),
            info(EventKind::Chat, Some(("c", 1)), None),
        ];
        let a: Str = Str::from("a");
        let b: Str = Str::from("b");
        assert_eq!(&*instance(Scope::Lifetime, &evs, 0, &a, &book), "");
        assert_eq!(&*instance(Scope::Session, &evs, 0, &a, &book), "S");
        assert_eq!(&*instance(Scope::Match, &evs, 0, &a, &book), "M");
        assert_eq!(&*instance(Scope::Round, &evs, 0, &a, &book), "M#2");
        assert_eq!(&*instance(Scope::Life, &evs, 0, &a, &book), "S#3");
        assert_eq!(&*instance(Scope::Life, &evs, 0, &b, &book), "S#7");
        // Not in event 1: a's latest life, b's next life (b died at 0).
        assert_eq!(&*instance(Scope::Life, &evs, 1, &a, &book), "S#3");
        assert_eq!(&*instance(Scope::Life, &evs, 1, &b, &book), "S#8");
        // Across batches the book carries the same answer.
        let mut book = LifeBook::default();
        book.observe(&evs[..1]);
        assert_eq!(&*instance(Scope::Life, &evs[1..], 0, &a, &book), "S#3");
        assert_eq!(&*instance(Scope::Life, &evs[1..], 0, &b, &book), "S#8");
        assert_eq!(
            &*instance(Scope::Life, &evs[1..], 0, &Str::from("new"), &book),
            "S#1"
        );
    }

    #[test]
    fn lifecycle_ends() {
        let mut end = info(EventKind::MatchEnd, None, None);
        end.match_id = Str::from("M");
        let ended = ended_list(&[
            info(EventKind::PlayerKill, Some(("a", 3)), Some(("b", 7))),
            info(EventKind::PlayerSuicide, Some(("c", 2)), None),
            info(EventKind::RoundStart, None, None),
            info(EventKind::PlayerSpawn, Some(("a", 4)), None),
            end,
        ]);
        assert_eq!(
            ended,
            vec![
                Ended::Life(Str::from("b"), Str::from("S"), 7),
                Ended::Life(Str::from("c"), Str::from("S"), 2),
                Ended::RoundsBefore(Str::from("M"), 2),
                Ended::Life(Str::from("a"), Str::from("S"), 3),
                Ended::Match(Str::from("M")),
            ]
        );
    }
}
