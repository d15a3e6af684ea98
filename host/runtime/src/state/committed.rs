//! One pack's committed state in memory, grouped by scope instance so an
//! ended match, round or life is dropped in one step.
//!
//! Lookups come with their hashes ([`Hashes`]): a transaction hashes each
//! distinct instance, player and key string once when it interns it, and
//! every committed lookup and every commit of that batch reuses those
//! hashes instead of hashing three strings again. Names compare by address
//! first: the key names of an instance and the strings of one batch are
//! shared, so most comparisons never read the bytes.

use std::hash::Hasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use opm_model::Str;
use opm_model::plugin::{Scope, StateKey, StateValue};

use super::{EndedSet, FxHasher, FxMap};

/// The hash of a state string; the same wherever it is computed.
pub(crate) fn str_hash(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.finish()
}

fn mix(a: u64, b: u64) -> u64 {
    (a.rotate_left(5) ^ b).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
}

/// Where a slot lies: the hash of its (scope, instance) and of its
/// (player, key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hashes {
    inst: u64,
    pair: u64,
}

impl Hashes {
    /// From the strings' own hashes ([`str_hash`]).
    pub(crate) fn new(scope: Scope, inst: u64, player: u64, key: u64) -> Hashes {
        Hashes {
            inst: mix(inst, scope as u64),
            pair: mix(player, key),
        }
    }

    pub(crate) fn of(scope: Scope, inst: &str, player: &str, key: &str) -> Hashes {
        Hashes::new(scope, str_hash(inst), str_hash(player), str_hash(key))
    }
}

/// Same text; the address check first, as shared strings are the rule.
fn same(a: &str, b: &str) -> bool {
    (a.as_ptr() == b.as_ptr() && a.len() == b.len()) || a == b
}

#[derive(Debug)]
struct Slot {
    hash: u64,
    player: Str,
    key: Str,
    value: StateValue,
}

#[derive(Debug)]
struct Instance {
    hash: u64,
    scope: Scope,
    name: Str,
    slots: HashTable<Slot>,
}

#[derive(Debug, Default)]
pub(crate) struct Committed {
    inst: HashTable<Instance>,
    per_player: FxMap<Str, usize>,
    /// Bumped by every `apply`: a transaction may reuse a committed value
    /// it read while this has not moved.
    pub(super) generation: u64,
}

impl Committed {
    pub(crate) fn from_rows(rows: Vec<(StateKey, StateValue)>) -> Committed {
        let mut c = Committed::default();
        for (k, v) in rows {
            let h = Hashes::of(k.scope, &k.instance, &k.player, &k.key);
            c.set(k.scope, k.instance, k.player, k.key, Some(v), h);
        }
        c
    }

    pub(super) fn get(
        &self,
        scope: Scope,
        inst: &str,
        player: &str,
        key: &str,
        h: Hashes,
    ) -> Option<&StateValue> {
        self.inst
            .find(h.inst, |i| i.scope == scope && same(&i.name, inst))?
            .slots
            .find(h.pair, |s| same(&s.key, key) && same(&s.player, player))
            .map(|s| &s.value)
    }

    pub(super) fn keys_of(&self, player: &Str) -> usize {
        self.per_player.get(player).copied().unwrap_or(0)
    }

    pub(super) fn set(
        &mut self,
        scope: Scope,
        inst: Str,
        player: Str,
        key: Str,
        value: Option<StateValue>,
        h: Hashes,
    ) {
        let inst_eq = |i: &Instance| i.scope == scope && same(&i.name, &inst);
        match value {
            Some(v) => {
                let instance = self
                    .inst
                    .entry(h.inst, inst_eq, |i| i.hash)
                    .or_insert_with(|| Instance {
                        hash: h.inst,
                        scope,
                        name: inst.clone(),
                        slots: HashTable::new(),
                    })
                    .into_mut();
                match instance.slots.entry(
                    h.pair,
                    |s| same(&s.key, &key) && same(&s.player, &player),
                    |s| s.hash,
                ) {
                    Entry::Occupied(mut o) => o.get_mut().value = v,
                    Entry::Vacant(slot) => {
                        slot.insert(Slot {
                            hash: h.pair,
                            player: player.clone(),
                            key,
                            value: v,
                        });
                        *self.per_player.entry(player).or_default() += 1;
                    }
                }
            }
            None => {
                let Ok(mut instance) = self.inst.find_entry(h.inst, inst_eq) else {
                    return;
                };
                let removed = match instance
                    .get_mut()
                    .slots
                    .find_entry(h.pair, |s| same(&s.key, &key) && same(&s.player, &player))
                {
                    Ok(slot) => {
                        slot.remove();
                        true
                    }
                    Err(_) => false,
                };
                if instance.get().slots.is_empty() {
                    instance.remove();
                }
                if removed {
                    self.forget_key(&player);
                }
            }
        }
    }

    fn forget_key(&mut self, player: &Str) {
        if let Some(n) = self.per_player.get_mut(player) {
            *n -= 1;
            if *n == 0 {
                self.per_player.remove(player);
            }
        }
    }

    /// Committed keys the ended lifecycle spans cover.
    pub(super) fn ended_keys(&self, ended: &EndedSet) -> Vec<(Scope, Str, Str, Str)> {
        let mut out = Vec::new();
        for i in &self.inst {
            if !ended.covers_instance(i.scope, &i.name) {
                continue;
            }
            for s in &i.slots {
                if ended.covers(i.scope, &i.name, &s.player) {
                    out.push((i.scope, i.name.clone(), s.player.clone(), s.key.clone()));
                }
            }
        }
        out
    }

    /// Number of values held, for tests and status.
    pub(crate) fn len(&self) -> usize {
        self.inst.iter().map(|i| i.slots.len()).sum()
    }

    /// Every value, sorted: the state snapshot.
    pub(crate) fn snapshot(&self, pack: &Str) -> Vec<(StateKey, StateValue)> {
        let mut out: Vec<_> = self
            .inst
            .iter()
            .flat_map(|i| {
                i.slots.iter().map(move |s| {
                    (
                        StateKey {
                            pack: pack.clone(),
                            scope: i.scope,
                            instance: i.name.clone(),
                            player: s.player.clone(),
                            key: s.key.clone(),
                        },
                        s.value.clone(),
                    )
                })
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Str {
        Str::from(v)
    }

    #[test]
    fn set_get_delete_and_counts_per_player() {
        let mut c = Committed::default();
        let h = Hashes::of(Scope::Match, "m1", "p", "k");
        c.set(
            Scope::Match,
            s("m1"),
            s("p"),
            s("k"),
            Some(StateValue::Counter(3)),
            h,
        );
        // Found through other allocations of the same text.
        assert_eq!(
            c.get(Scope::Match, "m1", "p", "k", h),
            Some(&StateValue::Counter(3))
        );
        // Another scope with the same instance text is another slot.
        let hr = Hashes::of(Scope::Round, "m1", "p", "k");
        assert_eq!(c.get(Scope::Round, "m1", "p", "k", hr), None);
        c.set(
            Scope::Match,
            s("m1"),
            s("p"),
            s("k"),
            Some(StateValue::Counter(4)),
            h,
        );
        let h2 = Hashes::of(Scope::Match, "m1", "p", "k2");
        c.set(
            Scope::Match,
            s("m1"),
            s("p"),
            s("k2"),
            Some(StateValue::Counter(1)),
            h2,
        );
        assert_eq!((c.len(), c.keys_of(&s("p"))), (2, 2));
        c.set(Scope::Match, s("m1"), s("p"), s("k"), None, h);
        c.set(Scope::Match, s("m1"), s("p"), s("k2"), None, h2);
        assert_eq!((c.len(), c.keys_of(&s("p"))), (0, 0));
        assert!(c.inst.is_empty(), "an emptied instance is dropped");
        // Deleting what is not there changes nothing.
        c.set(Scope::Match, s("m1"), s("p"), s("k"), None, h);
        assert_eq!(c.len(), 0);
    }
}
