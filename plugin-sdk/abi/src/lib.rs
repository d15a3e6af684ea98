//! The packed layouts of the `openmohaa:stats` contract: events here,
//! counter writes in [`counters`].
//!
//! `batch.events` is a `list<u8>`: every event is one [`EVENT_SIZE`]-byte
//! little-endian record, the `event` record of `wit/stats.wit` laid out at
//! fixed offsets. A typed `list<event>` costs the host a field-by-field
//! store into guest memory and the guest a field-by-field copy out of it
//! (about 15 % of a pack's whole cost per event, measured); bytes cross as
//! one copy and the guest reads the fields where they lie.
//!
//! Layout of one event (offsets in bytes):
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u64 | `id` |
//! | 8 | s64 | `time-ms` |
//! | 16 | u8 | `kind` (index of the `event-kind` case) |
//! | 17 | u8 | flags: 1 actor present, 2 actor position present, 4 target present, 8 target position present |
//! | 18 | u16 | reserved, 0 |
//! | 20 | u32 × 10 | symbols `type-name`, `server`, `session`, `match-id`, then `round`, then symbols `map-name`, `game-mode`, `weapon`, `means-of-death`, `hit-location` |
//! | 60 | f32 | `damage` |
//! | 64 | f32 | `distance` |
//! | 68 | participant | `actor` (zeroes when absent) |
//! | 104 | participant | `target` (zeroes when absent) |
//!
//! A participant is 36 bytes: `player` u32 at 0, `team` u8 at 4 and
//! `stance` u8 at 5 (case indices), 2 reserved bytes, position x, y, z as
//! f32 at 8, 12, 16 (zeroes when absent), `pitch` f32 at 20, `yaw` f32 at
//! 24, `health` s32 at 28, `life` u32 at 32.

pub mod counters;
#[cfg(feature = "model")]
pub mod lower;

/// The text of symbol `sym` of a batch's symbol table (`symbol-text` and
/// `symbol-ends`): bytes `ends[sym - 1]` (0 for symbol 0) to `ends[sym]`;
/// "" when out of range.
pub fn symbol<'a>(text: &'a str, ends: &[u32], sym: u32) -> &'a str {
    let i = sym as usize;
    let start = match i {
        0 => 0,
        _ => ends.get(i - 1).copied().unwrap_or(0) as usize,
    };
    let end = ends.get(i).copied().unwrap_or(0) as usize;
    text.get(start..end).unwrap_or("")
}

/// Bytes per packed event.
pub const EVENT_SIZE: usize = 140;
/// Bytes per packed participant.
pub const PARTICIPANT_SIZE: usize = 36;

/// Bits of the flags byte.
pub mod flags {
    pub const ACTOR: u8 = 1;
    pub const ACTOR_POSITION: u8 = 2;
    pub const TARGET: u8 = 4;
    pub const TARGET_POSITION: u8 = 8;
}

const ID: usize = 0;
const TIME_MS: usize = 8;
const KIND: usize = 16;
const FLAGS: usize = 17;
const TYPE_NAME: usize = 20;
const SERVER: usize = 24;
const SESSION: usize = 28;
const MATCH_ID: usize = 32;
const ROUND: usize = 36;
const MAP_NAME: usize = 40;
const GAME_MODE: usize = 44;
const WEAPON: usize = 48;
const MEANS_OF_DEATH: usize = 52;
const HIT_LOCATION: usize = 56;
const DAMAGE: usize = 60;
const DISTANCE: usize = 64;
const ACTOR: usize = 68;
const TARGET: usize = ACTOR + PARTICIPANT_SIZE;
const _: () = assert!(TARGET + PARTICIPANT_SIZE == EVENT_SIZE);

const P_PLAYER: usize = 0;
const P_TEAM: usize = 4;
const P_STANCE: usize = 5;
const P_POSITION: usize = 8;
const P_PITCH: usize = 20;
const P_YAW: usize = 24;
const P_HEALTH: usize = 28;
const P_LIFE: usize = 32;

/// One participant, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ParticipantRecord {
    pub player: u32,
    /// `team` case index: none, allies, axis, spectator.
    pub team: u8,
    /// `stance` case index: unknown, stand, crouch, prone.
    pub stance: u8,
    pub position: Option<[f32; 3]>,
    pub pitch: f32,
    pub yaw: f32,
    /// -1 when unknown.
    pub health: i32,
    pub life: u32,
}

/// One event, decoded: the fields of the WIT `event` record, strings as
/// symbols of the batch.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EventRecord {
    pub id: u64,
    /// `event-kind` case index.
    pub kind: u8,
    pub type_name: u32,
    pub time_ms: i64,
    pub server: u32,
    pub session: u32,
    pub match_id: u32,
    pub round: u32,
    pub map_name: u32,
    pub game_mode: u32,
    pub actor: Option<ParticipantRecord>,
    pub target: Option<ParticipantRecord>,
    pub weapon: u32,
    pub means_of_death: u32,
    pub hit_location: u32,
    pub damage: f32,
    pub distance: f32,
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

impl ParticipantRecord {
    fn write(&self, buf: &mut [u8]) {
        put(buf, P_PLAYER, &self.player.to_le_bytes());
        buf[P_TEAM] = self.team;
        buf[P_STANCE] = self.stance;
        let [x, y, z] = self.position.unwrap_or_default();
        put(buf, P_POSITION, &x.to_le_bytes());
        put(buf, P_POSITION + 4, &y.to_le_bytes());
        put(buf, P_POSITION + 8, &z.to_le_bytes());
        put(buf, P_PITCH, &self.pitch.to_le_bytes());
        put(buf, P_YAW, &self.yaw.to_le_bytes());
        put(buf, P_HEALTH, &self.health.to_le_bytes());
        put(buf, P_LIFE, &self.life.to_le_bytes());
    }
}

impl EventRecord {
    /// Appends the packed form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut b = [0u8; EVENT_SIZE];
        put(&mut b, ID, &self.id.to_le_bytes());
        put(&mut b, TIME_MS, &self.time_ms.to_le_bytes());
        b[KIND] = self.kind;
        let mut f = 0;
        for (p, at, present, positioned) in [
            (&self.actor, ACTOR, flags::ACTOR, flags::ACTOR_POSITION),
            (&self.target, TARGET, flags::TARGET, flags::TARGET_POSITION),
        ] {
            if let Some(p) = p {
                f |= present;
                if p.position.is_some() {
                    f |= positioned;
                }
                p.write(&mut b[at..at + PARTICIPANT_SIZE]);
            }
        }
        b[FLAGS] = f;
        for (at, v) in [
            (TYPE_NAME, self.type_name),
            (SERVER, self.server),
            (SESSION, self.session),
            (MATCH_ID, self.match_id),
            (ROUND, self.round),
            (MAP_NAME, self.map_name),
            (GAME_MODE, self.game_mode),
            (WEAPON, self.weapon),
            (MEANS_OF_DEATH, self.means_of_death),
            (HIT_LOCATION, self.hit_location),
        ] {
            put(&mut b, at, &v.to_le_bytes());
        }
        put(&mut b, DAMAGE, &self.damage.to_le_bytes());
        put(&mut b, DISTANCE, &self.distance.to_le_bytes());
        out.extend_from_slice(&b);
    }
}

/// A packed event, read in place.
#[derive(Clone, Copy)]
pub struct PackedEvent<'a>(&'a [u8; EVENT_SIZE]);

/// A packed participant, read in place.
#[derive(Clone, Copy)]
pub struct PackedParticipant<'a>(&'a [u8; PARTICIPANT_SIZE]);

macro_rules! field {
    ($(#[$doc:meta])* $name:ident: $ty:ty = $at:expr) => {
        $(#[$doc])*
        #[inline]
        pub fn $name(&self) -> $ty {
            <$ty>::from_le_bytes(self.0[$at..$at + size_of::<$ty>()].try_into().unwrap())
        }
    };
}

/// Number of whole events in a packed list (a trailing partial record,
/// which no correct host sends, is ignored).
pub fn count(events: &[u8]) -> usize {
    events.len() / EVENT_SIZE
}

impl<'a> PackedEvent<'a> {
    /// Event `index` of a packed list.
    #[inline]
    pub fn at(events: &'a [u8], index: usize) -> Option<PackedEvent<'a>> {
        let start = index.checked_mul(EVENT_SIZE)?;
        let bytes = events.get(start..start.checked_add(EVENT_SIZE)?)?;
        Some(PackedEvent(bytes.try_into().ok()?))
    }

    field!(id: u64 = ID);
    field!(time_ms: i64 = TIME_MS);
    field!(type_name: u32 = TYPE_NAME);
    field!(server: u32 = SERVER);
    field!(session: u32 = SESSION);
    field!(match_id: u32 = MATCH_ID);
    field!(round: u32 = ROUND);
    field!(map_name: u32 = MAP_NAME);
    field!(game_mode: u32 = GAME_MODE);
    field!(weapon: u32 = WEAPON);
    field!(means_of_death: u32 = MEANS_OF_DEATH);
    field!(hit_location: u32 = HIT_LOCATION);
    field!(damage: f32 = DAMAGE);
    field!(distance: f32 = DISTANCE);

    /// `event-kind` case index.
    #[inline]
    pub fn kind(&self) -> u8 {
        self.0[KIND]
    }

    #[inline]
    fn flags(&self) -> u8 {
        self.0[FLAGS]
    }

    #[inline]
    fn participant(&self, at: usize, present: u8) -> Option<PackedParticipant<'a>> {
        let bytes: &'a [u8; EVENT_SIZE] = self.0;
        (self.flags() & present != 0)
            .then(|| PackedParticipant(bytes[at..at + PARTICIPANT_SIZE].try_into().unwrap()))
    }

    #[inline]
    pub fn actor(&self) -> Option<PackedParticipant<'a>> {
        self.participant(ACTOR, flags::ACTOR)
    }

    #[inline]
    pub fn target(&self) -> Option<PackedParticipant<'a>> {
        self.participant(TARGET, flags::TARGET)
    }

    /// Whether the actor's (`actor = true`) or target's position was sent.
    #[inline]
    fn positioned(&self, actor: bool) -> bool {
        let bit = if actor {
            flags::ACTOR_POSITION
        } else {
            flags::TARGET_POSITION
        };
        self.flags() & bit != 0
    }

    /// Every field, decoded.
    pub fn record(&self) -> EventRecord {
        let side = |p: Option<PackedParticipant<'_>>, actor: bool| {
            p.map(|p| ParticipantRecord {
                player: p.player(),
                team: p.team(),
                stance: p.stance(),
                position: self.positioned(actor).then(|| p.xyz()),
                pitch: p.pitch(),
                yaw: p.yaw(),
                health: p.health(),
                life: p.life(),
            })
        };
        EventRecord {
            id: self.id(),
            kind: self.kind(),
            type_name: self.type_name(),
            time_ms: self.time_ms(),
            server: self.server(),
            session: self.session(),
            match_id: self.match_id(),
            round: self.round(),
            map_name: self.map_name(),
            game_mode: self.game_mode(),
            actor: side(self.actor(), true),
            target: side(self.target(), false),
            weapon: self.weapon(),
            means_of_death: self.means_of_death(),
            hit_location: self.hit_location(),
            damage: self.damage(),
            distance: self.distance(),
        }
    }

    /// The actor's position, if the game sent one.
    #[inline]
    pub fn actor_position(&self) -> Option<[f32; 3]> {
        self.actor()
            .filter(|_| self.positioned(true))
            .map(|p| p.xyz())
    }

    /// The target's position, if the game sent one.
    #[inline]
    pub fn target_position(&self) -> Option<[f32; 3]> {
        self.target()
            .filter(|_| self.positioned(false))
            .map(|p| p.xyz())
    }
}

impl PackedParticipant<'_> {
    field!(player: u32 = P_PLAYER);
    field!(pitch: f32 = P_PITCH);
    field!(yaw: f32 = P_YAW);
    field!(health: i32 = P_HEALTH);
    field!(life: u32 = P_LIFE);

    /// `team` case index.
    #[inline]
    pub fn team(&self) -> u8 {
        self.0[P_TEAM]
    }

    /// `stance` case index.
    #[inline]
    pub fn stance(&self) -> u8 {
        self.0[P_STANCE]
    }

    /// The position bytes; meaningful only when the event's flags say the
    /// position was sent (see [`PackedEvent::actor_position`]).
    #[inline]
    fn xyz(&self) -> [f32; 3] {
        let f = |at: usize| f32::from_le_bytes(self.0[at..at + 4].try_into().unwrap());
        [f(P_POSITION), f(P_POSITION + 4), f(P_POSITION + 8)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn participant() -> impl Strategy<Value = ParticipantRecord> {
        (
            any::<u32>(),
            0u8..4,
            0u8..4,
            proptest::option::of(any::<[f32; 3]>()),
            any::<f32>(),
            any::<f32>(),
            any::<i32>(),
            any::<u32>(),
        )
            .prop_map(
                |(player, team, stance, position, pitch, yaw, health, life)| ParticipantRecord {
                    player,
                    team,
                    stance,
                    position,
                    pitch,
                    yaw,
                    health,
                    life,
                },
            )
    }

    fn event() -> impl Strategy<Value = EventRecord> {
        (
            (any::<u64>(), any::<u8>(), any::<i64>(), any::<[u32; 10]>()),
            proptest::option::of(participant()),
            proptest::option::of(participant()),
            (any::<f32>(), any::<f32>()),
        )
            .prop_map(
                |((id, kind, time_ms, s), actor, target, (damage, distance))| EventRecord {
                    id,
                    kind,
                    type_name: s[0],
                    time_ms,
                    server: s[1],
                    session: s[2],
                    match_id: s[3],
                    round: s[4],
                    map_name: s[5],
                    game_mode: s[6],
                    actor,
                    target,
                    weapon: s[7],
                    means_of_death: s[8],
                    hit_location: s[9],
                    damage,
                    distance,
                },
            )
    }

    /// Bitwise equality, so NaN payloads count as equal to themselves.
    fn bits(r: &EventRecord) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode(&mut out);
        out
    }

    proptest! {
        #[test]
        fn every_field_survives_the_round_trip(events in proptest::collection::vec(event(), 0..8)) {
            let mut packed = Vec::new();
            for e in &events {
                e.encode(&mut packed);
            }
            prop_assert_eq!(packed.len(), events.len() * EVENT_SIZE);
            prop_assert_eq!(count(&packed), events.len());
            for (i, e) in events.iter().enumerate() {
                let back = PackedEvent::at(&packed, i).unwrap().record();
                prop_assert_eq!(bits(&back), bits(e));
                prop_assert_eq!(back.actor.is_some(), e.actor.is_some());
                prop_assert_eq!(back.target.is_some(), e.target.is_some());
                prop_assert_eq!(
                    back.actor.and_then(|p| p.position).is_some(),
                    e.actor.and_then(|p| p.position).is_some()
                );
                prop_assert_eq!(
                    back.target.and_then(|p| p.position).is_some(),
                    e.target.and_then(|p| p.position).is_some()
                );
            }
            prop_assert!(PackedEvent::at(&packed, events.len()).is_none());
        }
    }

    #[test]
    fn offsets_are_the_documented_ones() {
        let e = EventRecord {
            id: 0x0102_0304_0506_0708,
            kind: 3,
            round: 7,
            weapon: 9,
            actor: Some(ParticipantRecord {
                player: 5,
                team: 2,
                position: Some([1.0, 2.0, 3.0]),
                life: 4,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut b = Vec::new();
        e.encode(&mut b);
        assert_eq!(b[0], 0x08);
        assert_eq!(b[16], 3);
        assert_eq!(b[17], flags::ACTOR | flags::ACTOR_POSITION);
        assert_eq!(b[36], 7);
        assert_eq!(b[48], 9);
        assert_eq!(b[68], 5);
        assert_eq!(b[72], 2);
        assert_eq!(&b[76..80], &1.0f32.to_le_bytes());
        assert_eq!(b[100], 4);
        assert!(b[104..].iter().all(|&x| x == 0));
    }

    #[test]
    fn a_short_list_yields_no_partial_event() {
        let bytes = vec![0u8; EVENT_SIZE + 10];
        assert_eq!(count(&bytes), 1);
        assert!(PackedEvent::at(&bytes, 1).is_none());
        assert!(PackedEvent::at(&bytes, usize::MAX).is_none());
    }
}
