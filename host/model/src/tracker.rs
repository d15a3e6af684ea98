//! Game-state tracking: turns a server's event stream into sessions,
//! matches, rounds and lives, so rules never see `no_match`.
//!
//! The tracker is deterministic: the same events in the same order give the
//! same ids and numbers, whatever the batch boundaries. One tracker serves
//! one server; the pipeline shards servers across workers.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::{Event, Str};
use crate::EventKind;

/// A match without events for this long (event time) has ended.
pub const MATCH_IDLE_GAP_MS: i64 = 10 * 60 * 1000;

#[derive(Debug, Default)]
struct PlayerLife {
    life: u32,
    alive: bool,
}

#[derive(Debug, Default)]
struct SessionClock {
    /// Wall-clock ms that corresponds to game time zero.
    anchor_ms: i64,
    last_game_ms: i64,
    last_wall_ms: i64,
    anchored: bool,
}

/// Tracks one server.
#[derive(Debug, Default)]
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
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker::default()
    }

    /// Fills session, match, round, map, wall-clock time and life numbers.
    pub fn observe(&mut self, ev: &mut Event) {
        if ev.session.is_empty() {
            ev.session = if self.session.is_empty() {
                Arc::from(format!("{}-session", ev.server).as_str())
            } else {
                self.session.clone()
            };
        }
        if ev.session != self.session {
            self.new_session(ev.session.clone());
        }
        self.resolve_time(ev);

        let idle = self
            .last_time_ms
            .is_some_and(|last| ev.time_ms - last > MATCH_IDLE_GAP_MS);
        self.last_time_ms = Some(ev.time_ms);

        if !ev.map.is_empty() && self.map.as_ref() != Some(&ev.map) {
            let changed = self.map.is_some();
            self.map = Some(ev.map.clone());
            if changed && ev.match_id.is_empty() {
                self.match_id = None;
            }
        }
        if !ev.game_mode.is_empty() {
            self.game_mode = Some(ev.game_mode.clone());
        }
        let starts_match = matches!(
            ev.kind,
            EventKind::MatchStart | EventKind::MapStart | EventKind::GameStart | EventKind::MapRestart
        );
        if !ev.match_id.is_empty() {
            if self.match_id.as_ref() != Some(&ev.match_id) {
                self.match_id = Some(ev.match_id.clone());
                self.round = 0;
            }
        } else if self.match_id.is_none() || idle || starts_match {
            self.match_seq += 1;
            self.match_id = Some(Arc::from(
                format!("{}-m{}", self.session, self.match_seq).as_str(),
            ));
            self.round = 0;
        }
        ev.match_id = self.match_id.clone().unwrap_or_default();

        if ev.kind == EventKind::RoundStart {
            self.round = if ev.round > 0 { ev.round } else { self.round + 1 };
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
        if matches!(ev.kind, EventKind::MatchEnd | EventKind::GameEnd) {
            // The next event opens a new match.
            self.match_id = None;
        }
    }

    fn new_session(&mut self, session: Str) {
        self.session = session;
        self.clock = SessionClock::default();
        self.match_id = None;
        self.match_seq = 0;
        self.round = 0;
        self.lives.clear();
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Participant;

    fn ev(kind: EventKind, actor: Option<&str>, target: Option<&str>, t: i64) -> Event {
        let mut e = Event::new(kind);
        e.server = Arc::from("s");
        e.session = Arc::from("sess_1");
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
        a.map = Arc::from("dm/mohdm1");
        let mut b = ev(EventKind::Jump, Some("a"), None, 1000);
        b.map = Arc::from("dm/mohdm2");
        let mut c = ev(EventKind::Jump, Some("a"), None, 1000 + MATCH_IDLE_GAP_MS + 1);
        for e in [&mut a, &mut b, &mut c] {
            t.observe(e);
        }
        assert_eq!(&*a.match_id, "sess_1-m1");
        assert_eq!(&*b.match_id, "sess_1-m2");
        assert_eq!(&*c.match_id, "sess_1-m3");
        assert_eq!(&*c.map, "dm/mohdm2");
    }
}
