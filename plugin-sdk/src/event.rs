//! Typed, borrowed views of a batch: events and the players in them.
//!
//! The host sends events with strings interned into a per-batch symbol
//! table and players as indexes into a per-batch player table (that keeps
//! the per-event crossing cheap). These views resolve both, so a pack reads
//! `ev.weapon()` and `player.guid()` and never sees an index.

use opm_plugin_abi::{PackedEvent, PackedParticipant};

use crate::EventKind;

/// Index into the batch's symbol table; 0 is the empty string.
pub(crate) type Sym = u32;

/// Index into the batch's player table. Only meaningful inside one batch.
pub type PlayerRef = u32;

/// A team as the host normalises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Team {
    #[default]
    None,
    Allies,
    Axis,
    Spectator,
}

impl Team {
    /// Every team, in contract order.
    pub const ALL: [Team; 4] = [Team::None, Team::Allies, Team::Axis, Team::Spectator];

    pub fn as_str(self) -> &'static str {
        match self {
            Team::None => "",
            Team::Allies => "allies",
            Team::Axis => "axis",
            Team::Spectator => "spectator",
        }
    }
}

/// Body posture when the event happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Stance {
    #[default]
    Unknown,
    Stand,
    Crouch,
    Prone,
}

impl Stance {
    /// Every stance, in contract order.
    pub const ALL: [Stance; 4] = [
        Stance::Unknown,
        Stance::Stand,
        Stance::Crouch,
        Stance::Prone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stance::Unknown => "",
            Stance::Stand => "stand",
            Stance::Crouch => "crouch",
            Stance::Prone => "prone",
        }
    }
}

/// A world position in game units (one unit is about 2.5 cm).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Vec3 {
    pub x: f32,
    pub y: f32,
    pub z: f32,
}

impl Vec3 {
    pub fn distance(&self, other: &Vec3) -> f32 {
        let (dx, dy, dz) = (self.x - other.x, self.y - other.y, self.z - other.z);
        (dx * dx + dy * dy + dz * dz).sqrt()
    }
}

/// Identity of a player in a batch, for assembling test batches.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PlayerInfo {
    pub guid: String,
    pub name: String,
}

/// One call's worth of subscribed events, in event order.
///
/// The events stay in the contract's packed form (`opm_plugin_abi`) and
/// are read in place: a batch costs the guest no conversion.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// Packed events.
    events: Vec<u8>,
    len: usize,
    /// The symbol table as it crosses the boundary: every symbol's text
    /// concatenated, and the end offset of each.
    text: String,
    ends: Vec<u32>,
    /// (GUID, name) symbols per player.
    players: Vec<(Sym, Sym)>,
    /// (event index, name, value) per extra field, by event index.
    extras: Vec<(u32, Sym, Sym)>,
}

impl Batch {
    /// Assembles a batch from decoded records, a symbol list and a player
    /// table (tests).
    #[cfg(test)]
    pub(crate) fn from_parts(
        events: &[opm_plugin_abi::EventRecord],
        symbols: Vec<String>,
        players: Vec<PlayerInfo>,
    ) -> Batch {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(symbols.len() + 2 * players.len());
        let mut push = |s: &str| {
            text.push_str(s);
            ends.push(text.len() as u32);
            ends.len() as u32 - 1
        };
        for s in &symbols {
            push(s);
        }
        let players = players
            .iter()
            .map(|p| (push(&p.guid), push(&p.name)))
            .collect();
        let mut packed = Vec::with_capacity(events.len() * opm_plugin_abi::EVENT_SIZE);
        for e in events {
            e.encode(&mut packed);
        }
        Batch::from_wire(packed, text, ends, players, Vec::new())
    }

    /// Assembles a batch from the contract's wire form (guest glue and the
    /// native harness).
    #[doc(hidden)]
    pub fn from_wire(
        events: Vec<u8>,
        text: String,
        ends: Vec<u32>,
        players: Vec<(Sym, Sym)>,
        mut extras: Vec<(u32, Sym, Sym)>,
    ) -> Batch {
        // The host sends extras by event already; a stable sort keeps each
        // event's own order and makes the lookup's binary search sound
        // whatever arrives.
        if !extras.is_sorted_by_key(|x| x.0) {
            extras.sort_by_key(|x| x.0);
        }
        Batch {
            len: opm_plugin_abi::count(&events),
            events,
            text,
            ends,
            players,
            extras,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The events, in order.
    pub fn events(&self) -> impl ExactSizeIterator<Item = Event<'_>> + '_ {
        (0..self.len).map(move |i| Event {
            batch: self,
            raw: self.raw(i as u32),
            index: i as u32,
        })
    }

    /// The event at an index, if any.
    pub fn event(&self, index: usize) -> Option<Event<'_>> {
        (index < self.len).then(|| Event {
            batch: self,
            raw: self.raw(index as u32),
            index: index as u32,
        })
    }

    pub(crate) fn sym(&self, sym: Sym) -> &str {
        opm_plugin_abi::symbol(&self.text, &self.ends, sym)
    }

    /// Number of players in the batch's player table.
    pub(crate) fn player_count(&self) -> usize {
        self.players.len()
    }

    /// A player's (GUID, name), if the batch has the player.
    pub(crate) fn player_info(&self, player: PlayerRef) -> Option<(&str, &str)> {
        let &(guid, name) = self.players.get(player as usize)?;
        Some((self.sym(guid), self.sym(name)))
    }

    /// Event `index`, which must be below `len()`.
    pub(crate) fn raw(&self, index: u32) -> PackedEvent<'_> {
        PackedEvent::at(&self.events, index as usize).expect("event index within the batch")
    }

    /// The extra fields of event `index`.
    fn extras_of(&self, index: u32) -> &[(u32, Sym, Sym)] {
        let start = self.extras.partition_point(|x| x.0 < index);
        let end = self.extras.partition_point(|x| x.0 <= index);
        &self.extras[start..end]
    }
}

/// One event of a batch.
#[derive(Clone, Copy)]
pub struct Event<'a> {
    batch: &'a Batch,
    raw: PackedEvent<'a>,
    index: u32,
}

impl std::fmt::Debug for Event<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id())
            .field("kind", &self.kind())
            .field("actor", &self.actor().map(|p| p.guid()))
            .field("target", &self.target().map(|p| p.guid()))
            .finish()
    }
}

impl<'a> Event<'a> {
    fn raw(&self) -> PackedEvent<'a> {
        self.raw
    }

    /// Position in the batch: what the host's state calls name as `at`.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Host-assigned id, unique and increasing per server.
    pub fn id(&self) -> u64 {
        self.raw().id()
    }

    pub fn kind(&self) -> EventKind {
        EventKind::from_index(self.raw().kind() as usize)
    }

    /// The type as the game sent it (useful for [`EventKind::Other`]).
    pub fn type_name(&self) -> &'a str {
        self.batch.sym(self.raw().type_name())
    }

    /// Event time in ms since the Unix epoch. The only clock a pack has.
    pub fn time_ms(&self) -> i64 {
        self.raw().time_ms()
    }

    pub fn server(&self) -> &'a str {
        self.batch.sym(self.raw().server())
    }

    pub fn session(&self) -> &'a str {
        self.batch.sym(self.raw().session())
    }

    pub fn match_id(&self) -> &'a str {
        self.batch.sym(self.raw().match_id())
    }

    /// Round within the match, from 1.
    pub fn round(&self) -> u32 {
        self.raw().round()
    }

    pub fn map(&self) -> &'a str {
        self.batch.sym(self.raw().map_name())
    }

    pub fn game_mode(&self) -> &'a str {
        self.batch.sym(self.raw().game_mode())
    }

    /// Who did it: attacker, killer or the acting player.
    pub fn actor(&self) -> Option<PlayerView<'a>> {
        self.raw().actor().map(|p| PlayerView {
            batch: self.batch,
            p,
            position: self.raw().actor_position(),
        })
    }

    /// Who it was done to: victim or target.
    pub fn target(&self) -> Option<PlayerView<'a>> {
        self.raw().target().map(|p| PlayerView {
            batch: self.batch,
            p,
            position: self.raw().target_position(),
        })
    }

    pub fn weapon(&self) -> &'a str {
        self.batch.sym(self.raw().weapon())
    }

    /// Lower-case engine name without `MOD_` ("bullet", "grenade", …).
    pub fn means_of_death(&self) -> &'a str {
        self.batch.sym(self.raw().means_of_death())
    }

    /// Lower-case engine name ("head", "torso_upper", …).
    pub fn hit_location(&self) -> &'a str {
        self.batch.sym(self.raw().hit_location())
    }

    /// True for a hit in the head or helmet.
    pub fn is_headshot(&self) -> bool {
        matches!(self.hit_location(), "head" | "helmet")
    }

    pub fn damage(&self) -> f32 {
        self.raw().damage()
    }

    /// Attacker-to-target distance in game units.
    pub fn distance(&self) -> f32 {
        self.raw().distance()
    }

    /// A field the host has no column for.
    pub fn extra(&self, name: &str) -> Option<&'a str> {
        let batch = self.batch;
        batch
            .extras_of(self.index)
            .iter()
            .find(|(_, k, _)| batch.sym(*k) == name)
            .map(|(_, _, v)| batch.sym(*v))
    }

    /// An extra field parsed as a number.
    pub fn extra_f64(&self, name: &str) -> Option<f64> {
        self.extra(name).and_then(|v| v.trim().parse().ok())
    }

    /// Every extra field as (name, value), in the order sent.
    pub fn extras(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let batch = self.batch;
        batch
            .extras_of(self.index)
            .iter()
            .map(move |(_, k, v)| (batch.sym(*k), batch.sym(*v)))
    }

    /// The actor killed themself (same identity on both sides; a batch
    /// gives one player index per identity, so the indices are compared).
    pub fn is_suicide(&self) -> bool {
        self.kind() == EventKind::PlayerSuicide
            || matches!((self.actor(), self.target()), (Some(a), Some(t)) if a.player() == t.player())
    }

    /// The actor hit someone on their own team (both teams known).
    pub fn is_teamkill(&self) -> bool {
        if self.kind() == EventKind::PlayerTeamkill {
            return true;
        }
        match (self.actor(), self.target()) {
            (Some(a), Some(t)) => {
                a.team() != Team::None && a.team() == t.team() && a.player() != t.player()
            }
            _ => false,
        }
    }

    /// The player credited with a kill: the attacker of a `player_kill` or
    /// `bot_killed`, unless it was a suicide or a teamkill. The game also
    /// reports bashes and roadkills as `player_kill`, so the Bruno-only
    /// `player_bash`/`player_roadkill` events are not counted again.
    pub fn credited_kill(&self) -> Option<PlayerView<'a>> {
        if !matches!(self.kind(), EventKind::PlayerKill | EventKind::BotKilled) {
            return None;
        }
        if self.is_suicide() || self.is_teamkill() {
            return None;
        }
        self.actor()
    }
}

/// A player taking part in an event, as they were at that event.
#[derive(Clone, Copy)]
pub struct PlayerView<'a> {
    batch: &'a Batch,
    p: PackedParticipant<'a>,
    position: Option<[f32; 3]>,
}

impl std::fmt::Debug for PlayerView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlayerView")
            .field("guid", &self.guid())
            .field("team", &self.team())
            .field("life", &self.life())
            .finish()
    }
}

impl<'a> PlayerView<'a> {
    /// Stable identity: the forum member id once logged in, else the GUID.
    pub fn guid(&self) -> &'a str {
        self.batch
            .player_info(self.p.player())
            .map(|(guid, _)| guid)
            .unwrap_or("")
    }

    /// Display name without colour codes.
    pub fn name(&self) -> &'a str {
        self.batch
            .player_info(self.p.player())
            .map(|(_, name)| name)
            .unwrap_or("")
    }

    pub fn team(&self) -> Team {
        Team::ALL
            .get(self.p.team() as usize)
            .copied()
            .unwrap_or_default()
    }

    pub fn stance(&self) -> Stance {
        Stance::ALL
            .get(self.p.stance() as usize)
            .copied()
            .unwrap_or_default()
    }

    pub fn position(&self) -> Option<Vec3> {
        self.position.map(|[x, y, z]| Vec3 { x, y, z })
    }

    pub fn pitch(&self) -> f32 {
        self.p.pitch()
    }

    pub fn yaw(&self) -> f32 {
        self.p.yaw()
    }

    /// Health as the host last knew it.
    pub fn health(&self) -> Option<i32> {
        let health = self.p.health();
        (health >= 0).then_some(health)
    }

    /// Life number on this server session; increases on every spawn.
    pub fn life(&self) -> u32 {
        self.p.life()
    }

    /// A handle that stays valid for the rest of the batch.
    pub fn player(&self) -> Player {
        Player(self.p.player())
    }
}

/// A player of the current batch, without the event context. Never persist
/// it: it is an index into this batch's player table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Player(pub(crate) PlayerRef);

impl Player {
    #[doc(hidden)]
    pub fn from_ref(player: PlayerRef) -> Player {
        Player(player)
    }

    pub fn index(self) -> PlayerRef {
        self.0
    }
}

/// Anything that names a player of the batch: a [`PlayerView`] or a
/// [`Player`].
pub trait AsPlayer {
    fn player(&self) -> Player;
}

impl AsPlayer for Player {
    fn player(&self) -> Player {
        *self
    }
}

impl AsPlayer for PlayerView<'_> {
    fn player(&self) -> Player {
        PlayerView::player(self)
    }
}

impl<T: AsPlayer + ?Sized> AsPlayer for &T {
    fn player(&self) -> Player {
        (**self).player()
    }
}
