//! Typed, borrowed views of a batch: events and the players in them.
//!
//! The host sends events with strings interned into a per-batch symbol
//! table and players as indexes into a per-batch player table (that keeps
//! the per-event crossing cheap). These views resolve both, so a pack reads
//! `ev.weapon()` and `player.guid()` and never sees an index.

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

/// A participant as it crosses the boundary. Transport detail: packs use
/// [`PlayerView`].
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq)]
pub struct RawParticipant {
    pub player: PlayerRef,
    pub team: Team,
    pub position: Option<Vec3>,
    pub pitch: f32,
    pub yaw: f32,
    pub stance: Stance,
    pub health: i32,
    pub life: u32,
}

/// An event as it crosses the boundary. Transport detail: packs use
/// [`Event`].
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq)]
pub struct RawEvent {
    pub id: u64,
    pub kind: EventKind,
    pub type_name: Sym,
    pub time_ms: i64,
    pub server: Sym,
    pub session: Sym,
    pub match_id: Sym,
    pub round: u32,
    pub map_name: Sym,
    pub game_mode: Sym,
    pub actor: Option<RawParticipant>,
    pub target: Option<RawParticipant>,
    pub weapon: Sym,
    pub means_of_death: Sym,
    pub hit_location: Sym,
    pub damage: f32,
    pub distance: f32,
    pub extra: Vec<(Sym, Sym)>,
}

/// Identity of a player in a batch.
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq)]
pub struct PlayerInfo {
    pub guid: String,
    pub name: String,
}

/// One call's worth of subscribed events, in event order.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    events: Vec<RawEvent>,
    /// The symbol table as it crosses the boundary: every symbol's text
    /// concatenated, and the end offset of each.
    text: String,
    ends: Vec<u32>,
    /// (GUID, name) symbols per player.
    players: Vec<(Sym, Sym)>,
}

impl Batch {
    /// Assembles a batch from a symbol list and a player table (harness
    /// and tests).
    #[doc(hidden)]
    pub fn from_parts(
        events: Vec<RawEvent>,
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
        Batch {
            events,
            text,
            ends,
            players,
        }
    }

    /// Assembles a batch from the contract's wire form (guest glue).
    #[doc(hidden)]
    pub fn from_wire(
        events: Vec<RawEvent>,
        text: String,
        ends: Vec<u32>,
        players: Vec<(Sym, Sym)>,
    ) -> Batch {
        Batch {
            events,
            text,
            ends,
            players,
        }
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events, in order.
    pub fn events(&self) -> impl ExactSizeIterator<Item = Event<'_>> + '_ {
        (0..self.events.len()).map(move |i| Event {
            batch: self,
            index: i as u32,
        })
    }

    /// The event at an index, if any.
    pub fn event(&self, index: usize) -> Option<Event<'_>> {
        (index < self.events.len()).then_some(Event {
            batch: self,
            index: index as u32,
        })
    }

    pub(crate) fn sym(&self, sym: Sym) -> &str {
        let i = sym as usize;
        let start = match i {
            0 => 0,
            _ => self.ends.get(i - 1).copied().unwrap_or(0) as usize,
        };
        let end = self.ends.get(i).copied().unwrap_or(0) as usize;
        self.text.get(start..end).unwrap_or("")
    }

    /// A player's (GUID, name), if the batch has the player.
    pub(crate) fn player_info(&self, player: PlayerRef) -> Option<(&str, &str)> {
        let &(guid, name) = self.players.get(player as usize)?;
        Some((self.sym(guid), self.sym(name)))
    }

    pub(crate) fn raw(&self, index: u32) -> &RawEvent {
        &self.events[index as usize]
    }
}

/// One event of a batch.
#[derive(Clone, Copy)]
pub struct Event<'a> {
    batch: &'a Batch,
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
    fn raw(&self) -> &'a RawEvent {
        self.batch.raw(self.index)
    }

    /// Position in the batch: what the host's state calls name as `at`.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Host-assigned id, unique and increasing per server.
    pub fn id(&self) -> u64 {
        self.raw().id
    }

    pub fn kind(&self) -> EventKind {
        self.raw().kind
    }

    /// The type as the game sent it (useful for [`EventKind::Other`]).
    pub fn type_name(&self) -> &'a str {
        self.batch.sym(self.raw().type_name)
    }

    /// Event time in ms since the Unix epoch. The only clock a pack has.
    pub fn time_ms(&self) -> i64 {
        self.raw().time_ms
    }

    pub fn server(&self) -> &'a str {
        self.batch.sym(self.raw().server)
    }

    pub fn session(&self) -> &'a str {
        self.batch.sym(self.raw().session)
    }

    pub fn match_id(&self) -> &'a str {
        self.batch.sym(self.raw().match_id)
    }

    /// Round within the match, from 1.
    pub fn round(&self) -> u32 {
        self.raw().round
    }

    pub fn map(&self) -> &'a str {
        self.batch.sym(self.raw().map_name)
    }

    pub fn game_mode(&self) -> &'a str {
        self.batch.sym(self.raw().game_mode)
    }

    /// Who did it: attacker, killer or the acting player.
    pub fn actor(&self) -> Option<PlayerView<'a>> {
        self.raw().actor.as_ref().map(|p| PlayerView {
            batch: self.batch,
            p,
        })
    }

    /// Who it was done to: victim or target.
    pub fn target(&self) -> Option<PlayerView<'a>> {
        self.raw().target.as_ref().map(|p| PlayerView {
            batch: self.batch,
            p,
        })
    }

    pub fn weapon(&self) -> &'a str {
        self.batch.sym(self.raw().weapon)
    }

    /// Lower-case engine name without `MOD_` ("bullet", "grenade", …).
    pub fn means_of_death(&self) -> &'a str {
        self.batch.sym(self.raw().means_of_death)
    }

    /// Lower-case engine name ("head", "torso_upper", …).
    pub fn hit_location(&self) -> &'a str {
        self.batch.sym(self.raw().hit_location)
    }

    /// True for a hit in the head or helmet.
    pub fn is_headshot(&self) -> bool {
        matches!(self.hit_location(), "head" | "helmet")
    }

    pub fn damage(&self) -> f32 {
        self.raw().damage
    }

    /// Attacker-to-target distance in game units.
    pub fn distance(&self) -> f32 {
        self.raw().distance
    }

    /// A field the host has no column for.
    pub fn extra(&self, name: &str) -> Option<&'a str> {
        let batch = self.batch;
        self.raw()
            .extra
            .iter()
            .find(|(k, _)| batch.sym(*k) == name)
            .map(|(_, v)| batch.sym(*v))
    }

    /// An extra field parsed as a number.
    pub fn extra_f64(&self, name: &str) -> Option<f64> {
        self.extra(name).and_then(|v| v.trim().parse().ok())
    }

    /// Every extra field as (name, value), in the order sent.
    pub fn extras(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let batch = self.batch;
        self.raw()
            .extra
            .iter()
            .map(move |(k, v)| (batch.sym(*k), batch.sym(*v)))
    }

    /// The actor killed themself (same identity on both sides).
    pub fn is_suicide(&self) -> bool {
        self.kind() == EventKind::PlayerSuicide
            || matches!((self.actor(), self.target()), (Some(a), Some(t)) if a.guid() == t.guid())
    }

    /// The actor hit someone on their own team (both teams known).
    pub fn is_teamkill(&self) -> bool {
        if self.kind() == EventKind::PlayerTeamkill {
            return true;
        }
        match (self.actor(), self.target()) {
            (Some(a), Some(t)) => {
                a.team() != Team::None && a.team() == t.team() && a.guid() != t.guid()
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
    p: &'a RawParticipant,
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
            .player_info(self.p.player)
            .map(|(guid, _)| guid)
            .unwrap_or("")
    }

    /// Display name without colour codes.
    pub fn name(&self) -> &'a str {
        self.batch
            .player_info(self.p.player)
            .map(|(_, name)| name)
            .unwrap_or("")
    }

    pub fn team(&self) -> Team {
        self.p.team
    }

    pub fn stance(&self) -> Stance {
        self.p.stance
    }

    pub fn position(&self) -> Option<Vec3> {
        self.p.position
    }

    pub fn pitch(&self) -> f32 {
        self.p.pitch
    }

    pub fn yaw(&self) -> f32 {
        self.p.yaw
    }

    /// Health as the host last knew it.
    pub fn health(&self) -> Option<i32> {
        (self.p.health >= 0).then_some(self.p.health)
    }

    /// Life number on this server session; increases on every spawn.
    pub fn life(&self) -> u32 {
        self.p.life
    }

    /// A handle that stays valid for the rest of the batch.
    pub fn player(&self) -> Player {
        Player(self.p.player)
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
