//! The canonical event: what every stage after decoding works with.

use serde::{Deserialize, Serialize};

use crate::EventKind;

/// Immutable string of an event. Events are cloned into several stages
/// (stores, plugins, live state) on other threads. Most of their strings
/// (guids, names, weapons, maps, types) fit in 23 bytes and are stored
/// inline: no allocation, and a clone or drop on another thread touches
/// no shared reference count. Longer ones (the original JSON) are
/// reference counted.
pub type Str = smol_str::SmolStr;

/// The empty string.
pub fn empty() -> Str {
    Str::default()
}

fn is_empty_str(s: &Str) -> bool {
    s.is_empty()
}
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}
fn is_zero_f32(v: &f32) -> bool {
    *v == 0.0
}

/// The value of the spelling `s` matches, trimmed and in any case. Runs for
/// every participant of every event: no lowercased copy is made.
fn spelled<T: Copy>(s: &str, spellings: &[(&str, T)]) -> Option<T> {
    let s = s.trim();
    spellings
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, v)| *v)
}

/// A team, normalised: the game says "american" and "german".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Team {
    #[default]
    None,
    Allies,
    Axis,
    Spectator,
}

impl Team {
    /// Maps every spelling seen on the wire, in any case; anything unknown
    /// is `None`.
    pub fn parse(s: &str) -> Team {
        const SPELLINGS: &[(&str, Team)] = &[
            ("american", Team::Allies),
            ("german", Team::Axis),
            ("allies", Team::Allies),
            ("axis", Team::Axis),
            ("spectator", Team::Spectator),
            ("allied", Team::Allies),
            ("ally", Team::Allies),
            ("usa", Team::Allies),
            ("british", Team::Allies),
            ("russian", Team::Allies),
            ("germans", Team::Axis),
            ("spectators", Team::Spectator),
            ("spec", Team::Spectator),
        ];
        spelled(s, SPELLINGS).unwrap_or(Team::None)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Team::None => "",
            Team::Allies => "allies",
            Team::Axis => "axis",
            Team::Spectator => "spectator",
        }
    }

    fn is_none(&self) -> bool {
        *self == Team::None
    }
}

/// Body posture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stance {
    #[default]
    Unknown,
    Stand,
    Crouch,
    Prone,
}

impl Stance {
    pub fn parse(s: &str) -> Stance {
        const SPELLINGS: &[(&str, Stance)] = &[
            ("stand", Stance::Stand),
            ("crouch", Stance::Crouch),
            ("prone", Stance::Prone),
            ("standing", Stance::Stand),
            ("crouching", Stance::Crouch),
            ("duck", Stance::Crouch),
        ];
        spelled(s, SPELLINGS).unwrap_or(Stance::Unknown)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Stance::Unknown => "",
            Stance::Stand => "stand",
            Stance::Crouch => "crouch",
            Stance::Prone => "prone",
        }
    }

    fn is_unknown(&self) -> bool {
        *self == Stance::Unknown
    }
}

/// A position in game units.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
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

/// A player taking part in an event.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Participant {
    /// Stable identity: the forum member id once logged in, else the GUID.
    pub guid: Str,
    /// Display name with `^N` colour codes removed.
    #[serde(default = "empty", skip_serializing_if = "is_empty_str")]
    pub name: Str,
    /// Forum member id, when the player has logged in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smf_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Team::is_none")]
    pub team: Team,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<Vec3>,
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub pitch: f32,
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub yaw: f32,
    #[serde(default, skip_serializing_if = "Stance::is_unknown")]
    pub stance: Stance,
    /// Health as last known; `None` when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<i32>,
    /// Life number on this session; filled by the game-state tracker.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub life: u32,
}

impl Participant {
    pub fn new(guid: impl Into<Str>) -> Participant {
        Participant {
            guid: guid.into(),
            name: empty(),
            ..Participant::default()
        }
    }
}

impl Default for Event {
    fn default() -> Self {
        Event {
            id: 0,
            kind: EventKind::Other,
            type_name: empty(),
            time_ms: 0,
            game_time_ms: None,
            server: empty(),
            session: empty(),
            match_id: empty(),
            round: 0,
            map: empty(),
            game_mode: empty(),
            actor: None,
            target: None,
            weapon: empty(),
            means_of_death: empty(),
            hit_location: empty(),
            damage: 0.0,
            distance: 0.0,
            extra: Vec::new(),
            raw: None,
        }
    }
}

/// One normalised event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Host-assigned id, unique and increasing per server; 0 until assigned.
    #[serde(default)]
    pub id: u64,
    pub kind: EventKind,
    /// The type string as sent.
    #[serde(default = "empty", skip_serializing_if = "is_empty_str")]
    pub type_name: Str,
    /// Wall-clock event time, ms since the Unix epoch.
    #[serde(default)]
    pub time_ms: i64,
    /// Game-relative time (`level.time`) when that is what the game sent;
    /// the tracker turns it into `time_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_time_ms: Option<i64>,
    #[serde(default = "empty", skip_serializing_if = "is_empty_str")]
    pub server: Str,
    #[serde(default = "empty", skip_serializing_if = "is_empty_str")]
    pub session: Str,
    /// Empty until the tracker fills it ("no_match" is never kept).
    #[serde(default = "empty", skip_serializing_if = "is_empty_str")]
    pub match_id: Str,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub round: u32,
    #[serde(default = "empty", skip_serializing_if = "is_empty_str")]
    pub map: Str,
    #[serde(default = "empty", skip_serializing_if = "is_empty_str")]
    pub game_mode: Str,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Participant>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Participant>,
    #[serde(default = "empty", skip_serializing_if = "is_empty_str")]
    pub weapon: Str,
    #[serde(default = "empty", skip_serializing_if = "is_empty_str")]
    pub means_of_death: Str,
    #[serde(default = "empty", skip_serializing_if = "is_empty_str")]
    pub hit_location: Str,
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub damage: f32,
    #[serde(default, skip_serializing_if = "is_zero_f32")]
    pub distance: f32,
    /// Fields without a canonical column, in the order they were sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<(Str, Str)>,
    /// The original object exactly as received, for storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<Str>,
}

impl Event {
    pub fn new(kind: EventKind) -> Event {
        Event {
            kind,
            type_name: Str::from(kind.as_str()),
            ..Event::default()
        }
    }

    /// An extra field by name.
    pub fn extra(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| &**v)
    }

    /// An extra field parsed as a number.
    pub fn extra_f64(&self, name: &str) -> Option<f64> {
        self.extra(name).and_then(|v| v.trim().parse().ok())
    }

    /// True for a headshot hit location (head or helmet).
    pub fn is_headshot(&self) -> bool {
        matches!(&*self.hit_location, "head" | "helmet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teams_and_stances_parse_in_any_case_and_padding() {
        assert_eq!(Team::parse("american"), Team::Allies);
        assert_eq!(Team::parse(" German "), Team::Axis);
        assert_eq!(Team::parse("SPECTATORS"), Team::Spectator);
        assert_eq!(Team::parse("British"), Team::Allies);
        assert_eq!(Team::parse("americans"), Team::None);
        assert_eq!(Team::parse(""), Team::None);
        assert_eq!(Stance::parse("Crouching"), Stance::Crouch);
        assert_eq!(Stance::parse("duck"), Stance::Crouch);
        assert_eq!(Stance::parse(" PRONE"), Stance::Prone);
        assert_eq!(Stance::parse("stood"), Stance::Unknown);
    }
}
