//! The live-state sink: kill feed, running matches' scoreboards, server
//! heartbeats and unlock notifications for the read API.
//!
//! Disposable by design (the live store is a cache), so a failed write is
//! logged and never holds up the pipeline, and nothing here needs flushing
//! for the checkpoint. Scoreboards are kept as typed structs and turned
//! into JSON text once per touched match per batch, not once per event;
//! every document is serialised straight to text ([`LiveJson`]), never
//! built as a tree of JSON values.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use opm_model::plugin::{Outcome, OutcomeKind};
use opm_model::{Event, EventKind, Participant, Str, Team};
use opm_store::StoreError;
use opm_store::live::{LiveJson, LiveStore, UnlockNotice, live_json};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::runtime::Handle;

use crate::ingest::backends::block;
use crate::ingest::pipeline::{EventSink, SinkError};

/// How long a server counts as online after its last event.
const ONLINE_TTL: std::time::Duration = std::time::Duration::from_secs(120);

#[derive(Serialize)]
struct PlayerRow {
    name: Str,
    team: &'static str,
    kills: u64,
    deaths: u64,
}

/// One running match, in the JSON shape `/api/v1/stats/live` serves.
#[derive(Serialize)]
struct Scoreboard {
    match_id: Str,
    server_id: Str,
    started_ms: i64,
    updated_ms: i64,
    map_name: Str,
    gametype: Str,
    round: u32,
    allies_kills: u64,
    axis_kills: u64,
    players: BTreeMap<Str, PlayerRow>,
}

impl Scoreboard {
    fn new(ev: &Event) -> Scoreboard {
        Scoreboard {
            match_id: ev.match_id.clone(),
            server_id: ev.server.clone(),
            started_ms: ev.time_ms,
            updated_ms: ev.time_ms,
            map_name: ev.map.clone(),
            gametype: ev.game_mode.clone(),
            round: ev.round,
            allies_kills: 0,
            axis_kills: 0,
            players: BTreeMap::new(),
        }
    }

    fn player(&mut self, p: &Participant) -> &mut PlayerRow {
        let row = self.players.entry(p.guid.clone()).or_insert(PlayerRow {
            name: p.name.clone(),
            team: p.team.as_str(),
            kills: 0,
            deaths: 0,
        });
        row.name = p.name.clone();
        row.team = p.team.as_str();
        row
    }

    fn apply(&mut self, ev: &Event) {
        self.map_name = ev.map.clone();
        self.gametype = ev.game_mode.clone();
        self.round = ev.round;
        self.updated_ms = ev.time_ms;
        for p in [&ev.actor, &ev.target].into_iter().flatten() {
            self.player(p);
        }
        if ev.kind.is_kill()
            && let (Some(a), Some(t)) = (&ev.actor, &ev.target)
        {
            if a.guid != t.guid {
                self.player(a).kills += 1;
                match a.team {
                    Team::Allies => self.allies_kills += 1,
                    Team::Axis => self.axis_kills += 1,
                    _ => {}
                }
            }
            self.player(t).deaths += 1;
        }
    }
}

/// A kill-feed entry, in the JSON shape `/api/v1/stats/live` serves.
#[derive(Serialize)]
struct FeedKill<'a> {
    event_id: u64,
    time_ms: i64,
    match_id: &'a str,
    attacker: Option<FeedPlayer<'a>>,
    victim: Option<FeedPlayer<'a>>,
    weapon: &'a str,
    hit_location: &'a str,
    means_of_death: &'a str,
    headshot: bool,
    first_blood: bool,
}

impl<'a> FeedKill<'a> {
    fn of(ev: &'a Event) -> FeedKill<'a> {
        FeedKill {
            event_id: ev.id,
            time_ms: ev.time_ms,
            match_id: &ev.match_id,
            attacker: ev.actor.as_ref().map(FeedPlayer::of),
            victim: ev.target.as_ref().map(FeedPlayer::of),
            weapon: &ev.weapon,
            hit_location: &ev.hit_location,
            means_of_death: &ev.means_of_death,
            headshot: ev.is_headshot(),
            first_blood: ev.extra("first_blood").is_some(),
        }
    }
}

#[derive(Serialize)]
struct FeedPlayer<'a> {
    guid: &'a str,
    name: &'a str,
    team: &'static str,
}

impl<'a> FeedPlayer<'a> {
    fn of(p: &'a Participant) -> FeedPlayer<'a> {
        FeedPlayer {
            guid: &p.guid,
            name: &p.name,
            team: p.team.as_str(),
        }
    }
}

/// A server's heartbeat document.
#[derive(Serialize)]
struct ServerStatus<'a> {
    server_id: &'a str,
    match_id: &'a str,
    map_name: &'a str,
    gametype: &'a str,
    last_event_ms: i64,
}

pub struct LiveSink {
    live: Arc<dyn LiveStore>,
    handle: Handle,
    matches: Mutex<HashMap<Str, Scoreboard>>,
}

impl LiveSink {
    pub fn new(live: Arc<dyn LiveStore>, handle: Handle) -> LiveSink {
        LiveSink {
            live,
            handle,
            matches: Mutex::new(HashMap::new()),
        }
    }

    /// Updates the scoreboards the batch touched; returns (matches to put,
    /// matches that ended).
    fn scoreboards(&self, events: &[Event]) -> (Vec<(String, LiveJson)>, Vec<String>) {
        let mut matches = self.matches.lock();
        let mut touched: Vec<Str> = Vec::new();
        let mut ended = Vec::new();
        // A batch holds runs of one server's (so one match's) events: the
        // board is taken out of the map once per run, not hashed per event.
        for run in events.chunk_by(|a, b| a.match_id == b.match_id) {
            let id = &run[0].match_id;
            if id.is_empty() {
                continue;
            }
            let mut board = matches.remove(id);
            for ev in run {
                if matches!(ev.kind, EventKind::MatchEnd | EventKind::GameEnd) {
                    board = None;
                    ended.push(id.to_string());
                } else {
                    board.get_or_insert_with(|| Scoreboard::new(ev)).apply(ev);
                }
            }
            touched.retain(|t| t != id);
            if let Some(board) = board {
                matches.insert(id.clone(), board);
                touched.push(id.clone());
            }
        }
        let put = touched
            .iter()
            .filter_map(|id| {
                let board = matches.get(id)?;
                Some((id.to_string(), live_json(board).ok()?))
            })
            .collect();
        (put, ended)
    }

    async fn publish(
        &self,
        events: &[Event],
        outcomes: &[Outcome],
        put: Vec<(String, LiveJson)>,
        ended: Vec<String>,
    ) -> Result<(), StoreError> {
        let live = &self.live;
        for ev in events.iter().filter(|e| e.kind.is_kill()) {
            live.push_kill(&ev.server, live_json(&FeedKill::of(ev))?)
                .await?;
        }
        // Ends first: a match that ended and played again within the batch
        // keeps its new board.
        for id in &ended {
            live.end_match(id).await?;
        }
        for (id, state) in put {
            live.put_match(&id, state).await?;
        }
        // One heartbeat per server per batch, from its last event (the
        // last of its last run: later runs replace earlier ones).
        let mut last: HashMap<&str, &Event> = HashMap::new();
        for run in events.chunk_by(|a, b| a.server == b.server) {
            let ev = &run[run.len() - 1];
            last.insert(&ev.server, ev);
        }
        for (server, ev) in &last {
            let status = live_json(&ServerStatus {
                server_id: server,
                match_id: &ev.match_id,
                map_name: &ev.map,
                gametype: &ev.game_mode,
                last_event_ms: ev.time_ms,
            })?;
            live.heartbeat(server, status, ONLINE_TTL).await?;
        }
        for o in outcomes.iter().filter(|o| o.kind == OutcomeKind::Unlock) {
            let server = events
                .iter()
                .find(|e| e.id == o.event_id)
                .map(|e| e.server.to_string())
                .unwrap_or_default();
            let notice = UnlockNotice {
                player: o.player.to_string(),
                code: o.code.to_string(),
                pack: o.pack.to_string(),
                match_id: o.match_id.to_string(),
                server,
                time_ms: o.time_ms,
            };
            live.publish_unlock(&notice).await?;
        }
        Ok(())
    }
}

impl EventSink for LiveSink {
    fn name(&self) -> &str {
        "live"
    }

    fn write(&self, events: &[Event], outcomes: &[Outcome]) -> Result<(), SinkError> {
        let (put, ended) = self.scoreboards(events);
        if let Err(e) = block(&self.handle, self.publish(events, outcomes, put, ended)) {
            tracing::debug!(error = %e, "live store write skipped");
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_kills_scoreboards_and_heartbeats() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let live: Arc<dyn LiveStore> = Arc::new(opm_store::live::memory::MemoryLive::new());
        let sink = LiveSink::new(live.clone(), rt.handle().clone());
        let mut kill = Event::new(EventKind::PlayerKill);
        kill.id = 1024;
        kill.server = "srv".into();
        kill.match_id = "m1".into();
        kill.weapon = "Kar98".into();
        let mut a = Participant::new("a");
        a.team = Team::Axis;
        kill.actor = Some(a);
        kill.target = Some(Participant::new("b"));
        let mut own_goal = kill.clone();
        own_goal.id = 2048;
        own_goal.kind = EventKind::PlayerSuicide;
        own_goal.target = own_goal.actor.clone();
        sink.write(&[kill, own_goal], &[]).unwrap();
        let feed = rt.block_on(live.kill_feed("srv", 10)).unwrap();
        assert_eq!(feed.last().unwrap()["weapon"], "Kar98");
        assert_eq!(feed.last().unwrap()["attacker"]["guid"], "a");
        let m = rt.block_on(live.live_match("m1")).unwrap().unwrap();
        assert_eq!(m["match_id"], "m1");
        assert_eq!(m["players"]["a"]["kills"], 1);
        assert_eq!(m["players"]["a"]["team"], "axis");
        assert_eq!(m["players"]["b"]["deaths"], 1);
        assert_eq!(m["axis_kills"], 1);
        assert!(rt.block_on(live.server_status("srv")).unwrap().is_some());
        let mut end = Event::new(EventKind::MatchEnd);
        end.server = "srv".into();
        end.match_id = "m1".into();
        sink.write(&[end], &[]).unwrap();
        assert!(rt.block_on(live.live_match("m1")).unwrap().is_none());
    }

    /// One batch with two matches interleaved and a match that ends and
    /// starts again within one run: the same boards as event by event.
    #[test]
    fn boards_follow_runs_and_ends_inside_a_batch() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let live: Arc<dyn LiveStore> = Arc::new(opm_store::live::memory::MemoryLive::new());
        let sink = LiveSink::new(live.clone(), rt.handle().clone());
        let ev = |kind, server: &str, m: &str, time_ms| {
            let mut e = Event::new(kind);
            e.server = server.into();
            e.match_id = m.into();
            e.time_ms = time_ms;
            e.actor = Some(Participant::new("a"));
            e.target = Some(Participant::new("b"));
            e
        };
        let batch = vec![
            ev(EventKind::PlayerKill, "s1", "m1", 1),
            ev(EventKind::PlayerKill, "s1", "m1", 2),
            ev(EventKind::PlayerKill, "s2", "m2", 3),
            ev(EventKind::PlayerKill, "s1", "m1", 4),
            ev(EventKind::MatchEnd, "s1", "m1", 5),
            ev(EventKind::PlayerKill, "s1", "m1", 6),
            ev(EventKind::PlayerKill, "s2", "m2", 7),
            ev(EventKind::MatchEnd, "s2", "m3", 8),
            ev(EventKind::PlayerKill, "s2", "m2", 9),
        ];
        sink.write(&batch, &[]).unwrap();
        let m1 = rt.block_on(live.live_match("m1")).unwrap().unwrap();
        assert_eq!(
            m1["players"]["a"]["kills"], 1,
            "the board restarted after the end"
        );
        assert_eq!(m1["started_ms"], 6);
        let m2 = rt.block_on(live.live_match("m2")).unwrap().unwrap();
        assert_eq!(m2["players"]["a"]["kills"], 3);
        assert_eq!(m2["updated_ms"], 9);
        let s1 = rt.block_on(live.server_status("s1")).unwrap().unwrap();
        assert_eq!(s1["last_event_ms"], 6);
        let s2 = rt.block_on(live.server_status("s2")).unwrap().unwrap();
        assert_eq!(
            (s2["last_event_ms"].clone(), s2["match_id"].clone()),
            (9.into(), "m2".into())
        );
        assert_eq!(rt.block_on(live.kill_feed("s1", 10)).unwrap().len(), 4);
    }
}
