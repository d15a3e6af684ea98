//! Game-state tracking: turns a server's event stream into sessions,
//! matches, rounds and lives, so rules never see `no_match`.
//!
//! The tracker is deterministic: the same events in the same order give the
//! same ids and numbers, whatever the batch boundaries. One tracker serves
//! one server; the pipeline shards servers across workers.
//!
//! Besides filling the canonical fields it keeps per player the team, last
//! position and health (filling `team` and `health` where an event lacks
//! them), marks the first kill of a match with the extra field
//! `first_blood`, and emits synthetic lifecycle events packs can subscribe
//! to: `round_end` and `match_end` when a match is closed without saying so
//! (a new match, a map change, a new session or an idle gap), and one
//! `match_outcome` per player (actor = the player, extra `outcome` =
//! win/loss/draw) whenever a match ends. Synthetic events carry the extra
//! field `synthetic` = `true`.
//!
//! Synthetic ids: host event ids are journal sequences shifted left by
//! [`SYNTHETIC_ID_BITS`], so between two host ids there are 1 023 free
//! ids. Events emitted *after* the event that caused them (an explicit
//! `match_end`) take `id + 1 …`; events emitted *before* it (closing the
//! previous match when a new one begins) take `id - 512 …`. So synthetic
//! ids are deterministic, unique, and sort exactly where the events were
//! emitted; at most 511 per side are emitted (a match has at most 64
//! players).
//!
//! A tracker serialises (serde), so the host can snapshot it with its
//! journal checkpoint and a restart continues exactly where it stopped.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::EventKind;
use crate::event::{Event, Participant, Str, Team, Vec3};

/// A match without events for this long (event time) has ended.
pub const MATCH_IDLE_GAP_MS: i64 = 10 * 60 * 1000;

/// Host event ids are sequence numbers shifted left by this many bits.
pub const SYNTHETIC_ID_BITS: u32 = 10;

/// Synthetic ids available on each side of a host event id.
const SYNTHETIC_SLOTS: u64 = 1 << (SYNTHETIC_ID_BITS - 1);

#[derive(Debug, Default, Serialize, Deserialize)]
struct PlayerLife {
    life: u32,
    alive: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SessionClock {
    /// Wall-clock ms that corresponds to game time zero.
    anchor_ms: i64,
    last_game_ms: i64,
    last_wall_ms: i64,
    anchored: bool,
}

/// What the tracker knows about a player on this server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlayerState {
    pub name: Str,
    pub team: Team,
    pub position: Option<Vec3>,
    pub health: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Winner {
    Team(Team),
    Draw,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MatchPlayer {
    name: Str,
    team: Team,
    kills: u32,
}

/// The open match, kept so it can be closed with its own ids and names.
#[derive(Debug, Default, Serialize, Deserialize)]
struct MatchState {
    open: bool,
    match_id: Str,
    map: Str,
    game_mode: Str,
    round: u32,
    /// The current round has events and has not ended.
    round_open: bool,
    last_time_ms: i64,
    first_blood: bool,
    players: BTreeMap<Str, MatchPlayer>,
    team_kills: [u32; 2],
    winner: Option<Winner>,
}

/// Synthetic events produced while observing one event.
#[derive(Debug, Default, PartialEq)]
pub struct Lifecycle {
    /// To be placed before the observed event (closing what it replaced).
    pub before: Vec<Event>,
    /// To be placed after it (closing what it ended).
    pub after: Vec<Event>,
}

/// Tracks one server.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tracker {
    session: Str,
    clock: SessionClock,
    match_id: Option<Str>,
    match_seq: u32,
    round: u32,
    map: Option<Str>,
    game_mode: Option<Str>,
    last_time_ms: Option<i64>,
    lives: HashMap<Str, PlayerLife>,
    players: HashMap<Str, PlayerState>,
    current: MatchState,
}

fn winner_from(s: &str) -> Option<Winner> {
    match s.trim().to_ascii_lowercase().as_str() {
        "draw" | "tie" | "none" => Some(Winner::Draw),
        other => match Team::parse(other) {
            t @ (Team::Allies | Team::Axis) => Some(Winner::Team(t)),
            _ => None,
        },
    }
}

fn team_index(t: Team) -> Option<usize> {
    match t {
        Team::Allies => Some(0),
        Team::Axis => Some(1),
        _ => None,
    }
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// What is known about a player (team, last position, health).
    pub fn player(&self, guid: &str) -> Option<&PlayerState> {
        self.players.get(guid)
    }

    /// Observes `ev` and appends the synthetic events before it, the event
    /// and the synthetic events after it to `out`, in stream order.
    pub fn process(&mut self, mut ev: Event, out: &mut Vec<Event>) {
        let lifecycle = self.observe(&mut ev);
        out.extend(lifecycle.before);
        out.push(ev);
        out.extend(lifecycle.after);
    }

    /// Fills session, match, round, map, wall-clock time, life numbers,
    /// teams and health, and returns the synthetic events it caused.
    pub fn observe(&mut self, ev: &mut Event) -> Lifecycle {
        let mut life = Lifecycle::default();
        if ev.session.is_empty() {
            ev.session = if self.session.is_empty() {
                Str::from(format!("{}-session", ev.server).as_str())
            } else {
                self.session.clone()
            };
        }
        if ev.session != self.session {
            if !self.session.is_empty() {
                self.close_match(ev, "new_session", true, &mut life.before);
            }
            self.new_session(ev.session.clone());
        }
        self.resolve_time(ev);

        let idle = self
            .last_time_ms
            .is_some_and(|last| ev.time_ms - last > MATCH_IDLE_GAP_MS);
        self.last_time_ms = Some(ev.time_ms);

        let mut map_changed = false;
        if !ev.map.is_empty() && self.map.as_ref() != Some(&ev.map) {
            let changed = self.map.is_some();
            self.map = Some(ev.map.clone());
            if changed && ev.match_id.is_empty() {
                self.match_id = None;
                map_changed = true;
            }
        }
        if !ev.game_mode.is_empty() {
            self.game_mode = Some(ev.game_mode.clone());
        }
        let starts_match = matches!(
            ev.kind,
            EventKind::MatchStart
                | EventKind::MapStart
                | EventKind::GameStart
                | EventKind::MapRestart
        );
        if !ev.match_id.is_empty() {
            if self.match_id.as_ref() != Some(&ev.match_id) {
                self.close_match(ev, "new_match", true, &mut life.before);
                self.match_id = Some(ev.match_id.clone());
                self.round = 0;
            }
        } else if self.match_id.is_none() || idle || starts_match {
            let reason = if idle {
                "idle"
            } else if map_changed {
                "map_change"
            } else {
                "new_match"
            };
            self.close_match(ev, reason, true, &mut life.before);
            self.match_seq += 1;
            self.match_id = Some(Str::from(
                format!("{}-m{}", self.session, self.match_seq).as_str(),
            ));
            self.round = 0;
        }
        ev.match_id = self.match_id.clone().unwrap_or_default();

        if ev.kind == EventKind::RoundStart {
            if self.current.open && self.current.round_open && self.round > 0 {
                self.close_round(ev, "new_round", true, &mut life.before);
            }
            self.round = if ev.round > 0 {
                ev.round
            } else {
                self.round + 1
            };
        } else if ev.round > 0 {
            self.round = ev.round;
        }
        ev.round = self.round.max(1);
        if ev.map.is_empty()
            && let Some(map) = &self.map
        {
            ev.map = map.clone();
        }
        if ev.game_mode.is_empty()
            && let Some(mode) = &self.game_mode
        {
            ev.game_mode = mode.clone();
        }
        self.track_lives(ev);
        self.track_players(ev);
        self.track_match(ev);
        if matches!(ev.kind, EventKind::MatchEnd | EventKind::GameEnd) {
            if let Some(w) = ["winning_team", "winner", "teamnum"]
                .iter()
                .find_map(|k| ev.extra(k).and_then(winner_from))
            {
                self.current.winner = Some(w);
            }
            self.close_match(ev, "match_end", false, &mut life.after);
            // The next event opens a new match.
            self.match_id = None;
        }
        assign_synthetic_ids(ev.id, &mut life);
        life
    }

    fn new_session(&mut self, session: Str) {
        self.session = session;
        self.clock = SessionClock::default();
        self.match_id = None;
        self.match_seq = 0;
        self.round = 0;
        // A new session is a new server process: the map and mode are
        // unknown until an event names them.
        self.map = None;
        self.game_mode = None;
        self.last_time_ms = None;
        self.lives.clear();
        self.players.clear();
        self.current = MatchState::default();
    }

    /// Game-relative timestamps become wall-clock times anchored at the
    /// first event of the session; when `level.time` restarts (a new map),
    /// the anchor moves so time never runs backwards.
    fn resolve_time(&mut self, ev: &mut Event) {
        let Some(game_ms) = ev.game_time_ms else {
            return;
        };
        let received = ev.time_ms;
        let c = &mut self.clock;
        if !c.anchored {
            c.anchor_ms = received - game_ms;
            c.anchored = true;
        } else if game_ms < c.last_game_ms {
            c.anchor_ms = received.max(c.last_wall_ms) - game_ms;
        }
        c.last_game_ms = game_ms;
        ev.time_ms = c.anchor_ms + game_ms;
        c.last_wall_ms = ev.time_ms;
    }

    fn track_lives(&mut self, ev: &mut Event) {
        let kind = ev.kind;
        if let Some(actor) = ev.actor.as_mut() {
            let entry = self.lives.entry(actor.guid.clone()).or_default();
            if kind.starts_life() || !entry.alive {
                // A player seen acting without a spawn event is alive too.
                entry.life += 1;
                entry.alive = true;
            }
            actor.life = entry.life;
            if kind == EventKind::PlayerSuicide || kind == EventKind::Death && ev.target.is_none() {
                entry.alive = false;
            }
        }
        if let Some(target) = ev.target.as_mut() {
            let entry = self.lives.entry(target.guid.clone()).or_default();
            if !entry.alive {
                entry.life += 1;
                entry.alive = true;
            }
            target.life = entry.life;
            if kind.ends_life() {
                entry.alive = false;
            }
        }
    }

    /// Keeps team, position and health per player and fills the event's
    /// participants with them where the event is silent.
    fn track_players(&mut self, ev: &mut Event) {
        let kind = ev.kind;
        let damage = ev.damage;
        let team_switch = matches!(kind, EventKind::TeamJoin | EventKind::TeamChange)
            .then(|| {
                ["new_team", "to_team", "team"]
                    .iter()
                    .find_map(|k| ev.extra(k))
                    .map(Team::parse)
                    .filter(|t| *t != Team::None)
            })
            .flatten();
        let health_gain = (kind == EventKind::HealthPickup)
            .then(|| {
                ["count", "health_restored", "amount"]
                    .iter()
                    .find_map(|k| ev.extra_f64(k))
            })
            .flatten();
        if let Some(actor) = ev.actor.as_mut() {
            let state = self.players.entry(actor.guid.clone()).or_default();
            if let Some(t) = team_switch {
                actor.team = t;
            }
            update_player(state, actor);
            if kind.starts_life() && actor.health.is_none() {
                state.health = Some(100);
            }
            if let Some(gain) = health_gain {
                state.health = Some((state.health.unwrap_or(100) + gain as i32).min(100));
            }
            if kind == EventKind::PlayerSuicide || kind == EventKind::Death && ev.target.is_none() {
                state.health = Some(0);
            }
            fill_player(state, actor);
        }
        if let Some(target) = ev.target.as_mut() {
            let state = self.players.entry(target.guid.clone()).or_default();
            let given = target.health.is_some();
            update_player(state, target);
            if !given {
                if kind.ends_life() {
                    state.health = Some(0);
                } else if matches!(
                    kind,
                    EventKind::Damage | EventKind::PlayerPain | EventKind::WeaponHit
                ) && damage > 0.0
                {
                    let before = state.health.unwrap_or(100);
                    state.health = Some((before - damage.round() as i32).max(0));
                }
            }
            fill_player(state, target);
        }
    }

    /// Match bookkeeping: participants, kills per player and team, first
    /// blood, the round and the declared winner.
    fn track_match(&mut self, ev: &mut Event) {
        let m = &mut self.current;
        if !m.open || m.match_id != ev.match_id {
            *m = MatchState {
                open: true,
                match_id: ev.match_id.clone(),
                ..MatchState::default()
            };
        }
        m.map = ev.map.clone();
        m.game_mode = ev.game_mode.clone();
        m.round = ev.round;
        m.last_time_ms = ev.time_ms;
        m.round_open = ev.kind != EventKind::RoundEnd;
        for p in [&ev.actor, &ev.target].into_iter().flatten() {
            if p.guid.is_empty() || p.team == Team::Spectator {
                continue;
            }
            let entry = m.players.entry(p.guid.clone()).or_default();
            if !p.name.is_empty() {
                entry.name = p.name.clone();
            }
            if p.team != Team::None {
                entry.team = p.team;
            }
        }
        if ev.kind == EventKind::TeamWin
            && let Some(w) = ["winning_team", "teamnum", "team"]
                .iter()
                .find_map(|k| ev.extra(k).and_then(winner_from))
        {
            m.winner = Some(w);
        }
        let is_frag = ev.kind.is_kill()
            && ev.kind != EventKind::PlayerTeamkill
            && match (&ev.actor, &ev.target) {
                (Some(a), Some(t)) => {
                    a.guid != t.guid && (a.team == Team::None || a.team != t.team)
                }
                _ => false,
            };
        if is_frag {
            let actor = ev.actor.as_ref().expect("frag has an actor");
            if let Some(p) = m.players.get_mut(&actor.guid) {
                p.kills += 1;
            }
            if let Some(i) = team_index(actor.team) {
                m.team_kills[i] += 1;
            }
            if !m.first_blood {
                m.first_blood = true;
                ev.extra.push((Str::from("first_blood"), Str::from("true")));
            }
        }
    }

    /// A synthetic event in the open match's context.
    fn synthetic(&self, kind: EventKind, trigger: &Event, time_ms: i64, reason: &str) -> Event {
        let m = &self.current;
        let mut e = Event::new(kind);
        e.server = trigger.server.clone();
        e.session = if self.session.is_empty() {
            trigger.session.clone()
        } else {
            self.session.clone()
        };
        e.match_id = m.match_id.clone();
        e.round = m.round.max(1);
        e.map = m.map.clone();
        e.game_mode = m.game_mode.clone();
        e.time_ms = time_ms;
        e.extra.push((Str::from("synthetic"), Str::from("true")));
        e.extra.push((Str::from("reason"), Str::from(reason)));
        e
    }

    fn close_round(&mut self, trigger: &Event, reason: &str, before: bool, out: &mut Vec<Event>) {
        let time = if before {
            self.current.last_time_ms
        } else {
            trigger.time_ms
        };
        out.push(self.synthetic(EventKind::RoundEnd, trigger, time, reason));
        self.current.round_open = false;
    }

    /// Ends the open match: a round end if a round is open, a match end
    /// unless the match ended itself, and one outcome per player.
    fn close_match(&mut self, trigger: &Event, reason: &str, before: bool, out: &mut Vec<Event>) {
        if !self.current.open {
            return;
        }
        // An explicit round_end that is itself the trigger already closed it.
        if self.current.round_open
            && !(reason == "match_end" && trigger.kind == EventKind::RoundEnd)
        {
            self.close_round(trigger, reason, before, out);
        }
        let m = &self.current;
        let time = if before {
            m.last_time_ms
        } else {
            trigger.time_ms
        };
        let winner = m.winner.unwrap_or_else(|| {
            let [allies, axis] = m.team_kills;
            match allies.cmp(&axis) {
                std::cmp::Ordering::Greater => Winner::Team(Team::Allies),
                std::cmp::Ordering::Less => Winner::Team(Team::Axis),
                std::cmp::Ordering::Equal => Winner::Draw,
            }
        });
        let winner_name = match winner {
            Winner::Team(t) => t.as_str(),
            Winner::Draw => "draw",
        };
        if before {
            let mut end = self.synthetic(EventKind::MatchEnd, trigger, time, reason);
            end.extra
                .push((Str::from("winning_team"), Str::from(winner_name)));
            out.push(end);
        }
        // Free-for-all players (no team) are ranked by frags instead.
        let top = m
            .players
            .values()
            .filter(|p| p.team == Team::None)
            .map(|p| p.kills)
            .max()
            .unwrap_or(0);
        let top_count = m
            .players
            .values()
            .filter(|p| p.team == Team::None && p.kills == top)
            .count();
        for (guid, p) in &m.players {
            if out.len() as u64 >= SYNTHETIC_SLOTS - 1 {
                break;
            }
            let outcome = match (p.team, winner) {
                (Team::None, _) if top > 0 && p.kills == top && top_count == 1 => "win",
                (Team::None, _) if top > 0 && p.kills == top => "draw",
                (Team::None, _) if top > 0 => "loss",
                (Team::None, _) => "draw",
                (_, Winner::Draw) => "draw",
                (t, Winner::Team(w)) if t == w => "win",
                _ => "loss",
            };
            let mut e = self.synthetic(EventKind::MatchOutcome, trigger, time, reason);
            let mut actor = Participant::new(guid.clone());
            actor.name = p.name.clone();
            actor.team = p.team;
            e.actor = Some(actor);
            e.extra.push((Str::from("outcome"), Str::from(outcome)));
            e.extra
                .push((Str::from("winning_team"), Str::from(winner_name)));
            e.extra
                .push((Str::from("kills"), Str::from(p.kills.to_string().as_str())));
            out.push(e);
        }
        self.current.open = false;
    }
}

fn update_player(state: &mut PlayerState, p: &Participant) {
    if !p.name.is_empty() {
        state.name = p.name.clone();
    }
    if p.team != Team::None {
        state.team = p.team;
    }
    if p.position.is_some() {
        state.position = p.position;
    }
    if p.health.is_some() {
        state.health = p.health;
    }
}

fn fill_player(state: &PlayerState, p: &mut Participant) {
    if p.team == Team::None {
        p.team = state.team;
    }
    if p.health.is_none() {
        p.health = state.health;
    }
}

fn assign_synthetic_ids(trigger_id: u64, life: &mut Lifecycle) {
    if trigger_id == 0 {
        return;
    }
    let base = trigger_id.saturating_sub(SYNTHETIC_SLOTS);
    for (k, e) in life.before.iter_mut().enumerate() {
        e.id = base + k as u64;
    }
    for (k, e) in life.after.iter_mut().enumerate() {
        e.id = trigger_id + 1 + k as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Participant;

    fn ev(kind: EventKind, actor: Option<&str>, target: Option<&str>, t: i64) -> Event {
        let mut e = Event::new(kind);
        e.server = Str::from("s");
        e.session = Str::from("sess_1");
        e.time_ms = 1_000_000;
        e.game_time_ms = Some(t);
        e.actor = actor.map(Participant::new);
        e.target = target.map(Participant::new);
        e
    }

    #[test]
    fn lives_advance_on_spawn_and_end_on_death() {
        let mut t = Tracker::new();
        let mut stream = vec![
            ev(EventKind::PlayerSpawn, Some("a"), None, 0),
            ev(EventKind::PlayerKill, Some("a"), Some("b"), 1000),
            ev(EventKind::PlayerKill, Some("b"), Some("a"), 2000),
            ev(EventKind::PlayerSpawn, Some("a"), None, 3000),
            ev(EventKind::PlayerKill, Some("a"), Some("b"), 4000),
        ];
        for e in &mut stream {
            t.observe(e);
        }
        assert_eq!(stream[1].actor.as_ref().unwrap().life, 1);
        assert_eq!(stream[2].target.as_ref().unwrap().life, 1);
        assert_eq!(stream[4].actor.as_ref().unwrap().life, 2);
        // b died at 1000, acted again at 2000 without a spawn: a new life.
        assert_eq!(stream[2].actor.as_ref().unwrap().life, 2);
        assert!(stream.iter().all(|e| &*e.match_id == "sess_1-m1"));
        assert_eq!(stream[4].time_ms - stream[0].time_ms, 4000);
    }

    #[test]
    fn matches_split_on_map_change_and_idle_gap() {
        let mut t = Tracker::new();
        let mut a = ev(EventKind::Jump, Some("a"), None, 0);
        a.map = Str::from("dm/mohdm1");
        let mut b = ev(EventKind::Jump, Some("a"), None, 1000);
        b.map = Str::from("dm/mohdm2");
        let mut c = ev(
            EventKind::Jump,
            Some("a"),
            None,
            1000 + MATCH_IDLE_GAP_MS + 1,
        );
        for e in [&mut a, &mut b, &mut c] {
            t.observe(e);
        }
        assert_eq!(&*a.match_id, "sess_1-m1");
        assert_eq!(&*b.match_id, "sess_1-m2");
        assert_eq!(&*c.match_id, "sess_1-m3");
        assert_eq!(&*c.map, "dm/mohdm2");
    }

    fn teamed(
        kind: EventKind,
        a: Option<(&str, Team)>,
        t: Option<(&str, Team)>,
        at: i64,
        id: u64,
    ) -> Event {
        let mut e = ev(kind, a.map(|x| x.0), t.map(|x| x.0), at);
        if let (Some(p), Some((_, team))) = (e.actor.as_mut(), a) {
            p.team = team;
        }
        if let (Some(p), Some((_, team))) = (e.target.as_mut(), t) {
            p.team = team;
        }
        e.id = id;
        e
    }

    fn run(t: &mut Tracker, events: Vec<Event>) -> Vec<Event> {
        let mut out = Vec::new();
        for e in events {
            t.process(e, &mut out);
        }
        out
    }

    #[test]
    fn first_blood_teams_health_and_outcomes_on_explicit_end() {
        let mut t = Tracker::new();
        let al = Some(("al", Team::Allies));
        let ax = Some(("ax", Team::Axis));
        let mut dmg = teamed(
            EventKind::Damage,
            Some(("al", Team::None)),
            Some(("ax", Team::None)),
            1500,
            3 << 10,
        );
        dmg.damage = 30.0;
        let mut end = ev(EventKind::MatchEnd, None, None, 5000);
        end.id = 6 << 10;
        end.extra
            .push((Str::from("winning_team"), Str::from("american")));
        let out = run(
            &mut t,
            vec![
                teamed(EventKind::PlayerSpawn, al, None, 0, 1 << 10),
                teamed(EventKind::PlayerSpawn, ax, None, 10, 2 << 10),
                dmg,
                teamed(EventKind::PlayerKill, al, ax, 2000, 4 << 10),
                teamed(EventKind::PlayerKill, ax, al, 3000, 5 << 10),
                end,
            ],
        );
        // Teams and health are filled from what was seen before.
        assert_eq!(out[2].target.as_ref().unwrap().team, Team::Axis);
        assert_eq!(out[2].target.as_ref().unwrap().health, Some(70));
        assert_eq!(out[2].actor.as_ref().unwrap().health, Some(100));
        assert_eq!(out[3].extra("first_blood"), Some("true"));
        assert_eq!(out[3].target.as_ref().unwrap().health, Some(0));
        assert_eq!(out[4].extra("first_blood"), None);
        // After the explicit end: round end, then one outcome per player.
        let tail: Vec<(EventKind, u64)> = out[6..].iter().map(|e| (e.kind, e.id)).collect();
        assert_eq!(
            tail,
            vec![
                (EventKind::RoundEnd, (6 << 10) + 1),
                (EventKind::MatchOutcome, (6 << 10) + 2),
                (EventKind::MatchOutcome, (6 << 10) + 3),
            ]
        );
        let outcome = |guid: &str| {
            out.iter()
                .find(|e| {
                    e.kind == EventKind::MatchOutcome && &*e.actor.as_ref().unwrap().guid == guid
                })
                .and_then(|e| e.extra("outcome"))
        };
        assert_eq!(outcome("al"), Some("win"));
        assert_eq!(outcome("ax"), Some("loss"));
        assert!(
            out[6..]
                .iter()
                .all(|e| e.extra("synthetic") == Some("true") && &*e.match_id == "sess_1-m1")
        );
    }

    #[test]
    fn a_new_match_closes_the_previous_one_before_it() {
        let mut t = Tracker::new();
        let al = Some(("al", Team::Allies));
        let ax = Some(("ax", Team::Axis));
        let mut start = ev(EventKind::MatchStart, None, None, 9000);
        start.id = 3 << 10;
        let out = run(
            &mut t,
            vec![
                teamed(EventKind::PlayerKill, ax, al, 1000, 1 << 10),
                teamed(EventKind::Jump, al, None, 2000, 2 << 10),
                start,
            ],
        );
        let kinds: Vec<EventKind> = out.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::PlayerKill,
                EventKind::Jump,
                EventKind::RoundEnd,
                EventKind::MatchEnd,
                EventKind::MatchOutcome,
                EventKind::MatchOutcome,
                EventKind::MatchStart,
            ]
        );
        let ids: Vec<u64> = out.iter().map(|e| e.id).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids sort in stream order: {ids:?}"
        );
        assert_eq!(out[3].extra("winning_team"), Some("axis"));
        assert_eq!(out[3].time_ms, out[1].time_ms, "closed at its last event");
        assert_eq!(&*out[3].match_id, "sess_1-m1");
        assert_eq!(&*out[6].match_id, "sess_1-m2");
        // Deterministic: the same stream gives the same events.
        let mut again = Tracker::new();
        let mut start = ev(EventKind::MatchStart, None, None, 9000);
        start.id = 3 << 10;
        let out2 = run(
            &mut again,
            vec![
                teamed(EventKind::PlayerKill, ax, al, 1000, 1 << 10),
                teamed(EventKind::Jump, al, None, 2000, 2 << 10),
                start,
            ],
        );
        assert_eq!(out, out2);
    }

    #[test]
    fn free_for_all_outcomes_by_frags() {
        let mut t = Tracker::new();
        let mut end = ev(EventKind::MatchEnd, None, None, 5000);
        end.id = 9 << 10;
        let out = run(
            &mut t,
            vec![
                teamed(
                    EventKind::PlayerKill,
                    Some(("a", Team::None)),
                    Some(("b", Team::None)),
                    1,
                    1 << 10,
                ),
                teamed(
                    EventKind::PlayerKill,
                    Some(("a", Team::None)),
                    Some(("c", Team::None)),
                    2,
                    2 << 10,
                ),
                teamed(
                    EventKind::PlayerKill,
                    Some(("b", Team::None)),
                    Some(("c", Team::None)),
                    3,
                    3 << 10,
                ),
                end,
            ],
        );
        let outcomes: Vec<(String, String)> = out
            .iter()
            .filter(|e| e.kind == EventKind::MatchOutcome)
            .map(|e| {
                (
                    e.actor.as_ref().unwrap().guid.to_string(),
                    e.extra("outcome").unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            outcomes,
            vec![
                ("a".into(), "win".into()),
                ("b".into(), "loss".into()),
                ("c".into(), "loss".into())
            ]
        );
    }

    #[test]
    fn a_restored_snapshot_continues_exactly() {
        let stream = || {
            let al = Some(("al", Team::Allies));
            let ax = Some(("ax", Team::Axis));
            let mut start = ev(EventKind::MatchStart, None, None, 9000);
            start.id = 4 << 10;
            vec![
                teamed(EventKind::PlayerSpawn, al, None, 0, 1 << 10),
                teamed(EventKind::PlayerKill, ax, al, 1000, 2 << 10),
                teamed(EventKind::Jump, al, None, 2000, 3 << 10),
                start,
                teamed(EventKind::PlayerKill, al, ax, 9500, 5 << 10),
            ]
        };
        let whole = run(&mut Tracker::new(), stream());
        let mut first = Tracker::new();
        let mut events = stream();
        let tail = events.split_off(2);
        let mut out = run(&mut first, events);
        let json = serde_json::to_string(&first).unwrap();
        let mut restored: Tracker = serde_json::from_str(&json).unwrap();
        out.extend(run(&mut restored, tail));
        assert_eq!(out, whole);
    }
}
