//! The fields of one wire object, indexed by the names normalisation reads.
//!
//! Normalisation asks for some forty names per event, each in an order of
//! preference (`type`, then `event_type`, then `event`). Every name it
//! reads has a fixed slot, found by one hash lookup when the field is
//! parsed; taking a field is then an array index instead of a scan over
//! the object's fields. Whatever is not taken becomes the extra fields.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::LazyLock;

use crate::event::Str;

/// Field text, borrowed from the body wherever the JSON string has no
/// escapes (nearly always): most fields are parsed into numbers or
/// dropped, so copying them would be wasted.
pub(super) type Text<'a> = Cow<'a, str>;

/// Declares a set of wire names as an enum with its texts.
macro_rules! wire_names {
    ($(#[$meta:meta])* enum $ty:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(super) enum $ty { $($variant),* }

        impl $ty {
            pub(super) const ALL: &'static [$ty] = &[$($ty::$variant),*];

            pub(super) const fn text(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }
        }
    };
}

wire_names! {
    /// Top-level names normalisation reads (contract §1.7 spellings).
    enum Plain {
        Type = "type", EventType = "event_type", Event = "event",
        ServerId = "server_id", ServerToken = "server_token", Token = "token",
        AuthToken = "auth_token",
        Timestamp = "timestamp", Time = "time", EventTime = "event_time",
        SessionId = "session_id", Session = "session", MatchId = "match_id",
        RoundNumber = "round_number", Round = "round",
        Gametype = "gametype", GameType = "game_type", GameMode = "game_mode",
        Weapon = "weapon", NewWeapon = "new_weapon", Projectile = "projectile",
        Mod = "mod", MeansOfDeath = "means_of_death", Method = "method",
        Hitloc = "hitloc", Hitlocation = "hitlocation", HitLocation = "hit_location",
        Damage = "damage", Distance = "distance",
        MapName = "map_name", Map = "map", CurrentMap = "current_map", Mapname = "mapname",
        PosX = "pos_x", PosY = "pos_y", PosZ = "pos_z",
        AimPitch = "aim_pitch", AimYaw = "aim_yaw",
    }
}

wire_names! {
    /// Participant prefixes: `attacker_guid`, or an `attacker` block.
    enum Role {
        Attacker = "attacker", Killer = "killer", Player = "player",
        Victim = "victim", Target = "target",
    }
}

wire_names! {
    /// A participant's fields, after its prefix.
    enum Attr {
        Guid = "guid", Id = "id", SmfId = "smf_id", Name = "name", Team = "team",
        X = "x", Y = "y", Z = "z", Pitch = "pitch", Yaw = "yaw",
        Stance = "stance", Health = "health", Hp = "hp",
    }
}

impl Role {
    /// A top-level key whose object value is a participant block.
    pub(super) fn of_block(key: &str) -> Option<Role> {
        Role::ALL.iter().copied().find(|r| r.text() == key)
    }
}

/// A name normalisation reads.
#[derive(Debug, Clone, Copy)]
pub(super) enum Name {
    Plain(Plain),
    Part(Role, Attr),
}

pub(super) const SLOTS: usize = Plain::ALL.len() + Role::ALL.len() * Attr::ALL.len();

/// A slot number; `NO_SLOT` for names normalisation never reads.
pub(super) type Slot = u8;
pub(super) const NO_SLOT: Slot = Slot::MAX;
const _: () = assert!(SLOTS < NO_SLOT as usize && SLOTS <= 128);

impl Name {
    const fn slot(self) -> usize {
        match self {
            Name::Plain(p) => p as usize,
            Name::Part(r, a) => Plain::ALL.len() + r as usize * Attr::ALL.len() + a as usize,
        }
    }

    /// The name as the wire spells it (for error messages).
    pub(super) fn text(self) -> Cow<'static, str> {
        match self {
            Name::Plain(p) => Cow::Borrowed(p.text()),
            Name::Part(r, a) => Cow::Owned(format!("{}_{}", r.text(), a.text())),
        }
    }
}

type SlotMap = HashMap<Box<str>, Slot, foldhash::fast::FixedState>;

static SLOT_OF: LazyLock<SlotMap> = LazyLock::new(|| {
    let plain = Plain::ALL.iter().map(|&p| Name::Plain(p));
    let parts = Role::ALL
        .iter()
        .flat_map(|&r| Attr::ALL.iter().map(move |&a| Name::Part(r, a)));
    plain
        .chain(parts)
        .map(|n| (Box::from(&*n.text()), n.slot() as Slot))
        .collect()
});

/// The slot of a field name, or `NO_SLOT`.
pub(super) fn slot_of(name: &str) -> Slot {
    SLOT_OF.get(name).copied().unwrap_or(NO_SLOT)
}

/// Bit of a slot in a set of slots (`SLOTS <= 128`).
pub(super) fn slot_bit(slot: Slot) -> u128 {
    1u128 << slot
}

/// One field of an object: name, value (None once taken), its slot, and
/// whether it came from a participant block (`{"attacker":{"guid":…}}`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry<'a> {
    pub key: Text<'a>,
    pub value: Option<Text<'a>>,
    pub slot: Slot,
    pub block: bool,
}

impl<'a> Entry<'a> {
    pub(super) fn new(key: Text<'a>, slot: Slot, value: Text<'a>, block: bool) -> Self {
        Entry {
            key,
            value: Some(value),
            slot,
            block,
        }
    }
}

/// Sorts entries by name, a block's field before a top-level field of the
/// same name: the order extra fields are stored in.
pub(super) fn sort_by_name(entries: &mut [Entry<'_>]) {
    entries.sort_by(|a, b| a.key.cmp(&b.key).then(b.block.cmp(&a.block)));
}

/// An object's fields, consumed as normalisation maps them.
pub(super) struct Fields<'a> {
    entries: Vec<Entry<'a>>,
    /// Per slot, the entry from a block and the top-level entry (an object
    /// holds at most one of each per name: duplicates were resolved when
    /// it was parsed).
    index: [[u32; 2]; SLOTS],
}

const ABSENT: u32 = u32::MAX;

impl<'a> Fields<'a> {
    pub(super) fn new(entries: Vec<Entry<'a>>) -> Self {
        let mut index = [[ABSENT; 2]; SLOTS];
        for (i, e) in entries.iter().enumerate() {
            if e.slot != NO_SLOT {
                index[e.slot as usize][usize::from(!e.block)] = i as u32;
            }
        }
        Fields { entries, index }
    }

    /// The field of that name not taken yet: a participant block's before
    /// a top-level field of the same name.
    pub(super) fn take(&mut self, name: Name) -> Option<Text<'a>> {
        let [block, top] = self.index[name.slot()];
        for i in [block, top] {
            if i != ABSENT
                && let Some(v) = self.entries[i as usize].value.take()
            {
                return Some(v);
            }
        }
        None
    }

    /// What was not taken, by name: the event's extra fields.
    ///
    /// Collected into a new vector of their size, not in place: collecting
    /// in place kept the parser's whole buffer (room for 36 fields, 2 KiB)
    /// alive in every event, however few extras it had.
    pub(super) fn into_extra(self) -> Vec<(Str, Str)> {
        let mut left = self.entries;
        left.retain(|e| e.value.is_some());
        if left.len() > 1 {
            sort_by_name(&mut left);
        }
        let mut extra = Vec::with_capacity(left.len());
        extra.extend(
            left.iter()
                .filter_map(|e| Some((Str::from(&*e.key), Str::from(&**e.value.as_ref()?)))),
        );
        extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_name_has_its_own_slot() {
        assert_eq!(SLOT_OF.len(), SLOTS);
        assert_eq!(
            slot_of("attacker_smf_id") as usize,
            Name::Part(Role::Attacker, Attr::SmfId).slot()
        );
        assert_eq!(slot_of("type") as usize, Name::Plain(Plain::Type).slot());
        assert_eq!(slot_of("ammo_remaining"), NO_SLOT);
        assert_eq!(slot_of("attacker"), NO_SLOT);
    }

    fn entry(key: &str, value: &str, block: bool) -> Entry<'static> {
        Entry::new(
            Cow::Owned(key.into()),
            slot_of(key),
            Cow::Owned(value.into()),
            block,
        )
    }

    /// The reference: entries sorted by name (blocks first), each lookup
    /// the first untaken one of that name.
    fn take_by_scan(sorted: &mut [Entry<'static>], name: &str) -> Option<String> {
        sorted
            .iter_mut()
            .find(|e| e.value.is_some() && e.key == name)
            .and_then(|e| e.value.take())
            .map(Cow::into_owned)
    }

    fn any_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("type".to_string()),
            Just("attacker_guid".to_string()),
            Just("player_x".to_string()),
            Just("pos_x".to_string()),
            Just("walked".to_string()),
            Just("victim_smf_id".to_string()),
        ]
    }

    proptest! {
        /// Slot lookups take exactly what a scan of the sorted fields would,
        /// and leave the same extra fields behind.
        #[test]
        fn slots_take_what_a_sorted_scan_takes(
            // Unique (name, origin) pairs, as parsing leaves them.
            fields in proptest::collection::btree_map((any_name(), any::<bool>()), "[a-z0-9]{0,3}", 0..10),
            lookups in proptest::collection::vec(any_name(), 0..12),
        ) {
            let entries: Vec<Entry<'static>> =
                fields.iter().map(|((k, block), v)| entry(k, v, *block)).collect();
            let mut reference = entries.clone();
            sort_by_name(&mut reference);
            let mut table = Fields::new(entries);
            for name in &lookups {
                let slot = slot_of(name);
                if slot == NO_SLOT {
                    continue;
                }
                let expected = take_by_scan(&mut reference, name);
                let taken = Name::ALL_FOR_TESTS[slot as usize];
                prop_assert_eq!(table.take(taken).map(Cow::into_owned), expected);
            }
            let left: Vec<(String, String)> = reference
                .into_iter()
                .filter_map(|e| Some((e.key.into_owned(), e.value?.into_owned())))
                .collect();
            let extra: Vec<(String, String)> = table
                .into_extra()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            // Unslotted names were never taken by either side.
            prop_assert_eq!(extra, left);
        }
    }

    impl Name {
        /// Every name, indexed by slot.
        const ALL_FOR_TESTS: [Name; SLOTS] = {
            let mut all = [Name::Plain(Plain::Type); SLOTS];
            let mut i = 0;
            while i < Plain::ALL.len() {
                all[i] = Name::Plain(Plain::ALL[i]);
                i += 1;
            }
            let mut r = 0;
            while r < Role::ALL.len() {
                let mut a = 0;
                while a < Attr::ALL.len() {
                    let n = Name::Part(Role::ALL[r], Attr::ALL[a]);
                    all[n.slot()] = n;
                    a += 1;
                }
                r += 1;
            }
            all
        };
    }
}
