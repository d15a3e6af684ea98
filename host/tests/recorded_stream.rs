//! A recorded `loadgen` stream imported into both sets of backends (the
//! embedded defaults, and ClickHouse + PostgreSQL + Redis) through the real
//! binary with the bundled packs: the leaderboards (every stat and
//! period, every page), every player's stats and every player's
//! achievements must be the same on both, and equal to an independent
//! recount from the raw recording (per-player counters, and the unlocks
//! and progress the milestones pack's ladders must give, on the events
//! that cross each rung).
//!
//! `OPM_RECORDED_EVENTS` sets the size (default 80 000, the CI run);
//! `million_event_recorded_stream_agrees` is the opt-in 1 000 000-event
//! run (`cargo test -p opm-stats --test recorded_stream -- --ignored`).

mod common;
mod external;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Instant;

use common::{Server, opm};
use external::{ChDatabase, HEADSHOT_LADDER, KILL_LADDER, PgDatabase, RedisPrefix};
use serde_json::Value;

/// The SDK reports progress every 5 % of the next rung.
fn progress_step(target: u64) -> u64 {
    (target / 20).max(1)
}

const STATS: &[&str] = &["kills", "deaths", "headshots", "kd", "accuracy", "damage"];
const PERIODS: &[&str] = &["all", "day", "week", "month", "year"];
/// Answers that depend on the wall clock of the import, not the stream.
const CLOCK_FIELDS: &[&str] = &[
    "first_seen",
    "last_seen",
    "date",
    "started_at",
    "ended_at",
    "unlocked_at",
    "unlocked_date",
    "updated_at",
];

#[derive(Default, Debug, Clone)]
struct Player {
    kills: u64,
    deaths: u64,
    headshots: u64,
    suicides: u64,
    shots_fired: u64,
    shots_hit: u64,
    damage_dealt: f64,
    damage_taken: f64,
    jumps: u64,
    reloads: u64,
    distance: f64,
    /// (server, match number) the player took part in.
    matches: BTreeSet<(u64, u64)>,
    /// Milestone counters and the unlocks they gave: code → event index.
    credited: u64,
    credited_heads: u64,
    unlocks: BTreeMap<String, u64>,
}

impl Player {
    fn value(&self, stat: &str) -> f64 {
        match stat {
            "kills" => self.kills as f64,
            "deaths" => self.deaths as f64,
            "headshots" => self.headshots as f64,
            "kd" if self.deaths == 0 => self.kills as f64,
            "kd" => self.kills as f64 / self.deaths as f64,
            "accuracy" if self.shots_fired == 0 => 0.0,
            "accuracy" => self.shots_hit as f64 * 100.0 / self.shots_fired as f64,
            "damage" => self.damage_dealt,
            _ => unreachable!(),
        }
    }

    /// The milestones progress rows this player must have: for each rung,
    /// the highest count at a 5 % step while that rung was the next one.
    fn progress(&self) -> BTreeMap<String, (u64, u64)> {
        let mut out = BTreeMap::new();
        for (ladder, count) in [
            (KILL_LADDER, self.credited),
            (HEADSHOT_LADDER, self.credited_heads),
        ] {
            let mut previous = 0;
            for &(code, target) in ladder {
                let step = progress_step(target);
                let top = count.min(target - 1);
                let reported = top - top % step;
                if reported >= previous.max(1) && reported < target {
                    out.insert(code.to_string(), (reported, target));
                }
                previous = target;
            }
        }
        out
    }
}

/// Counts the recording the way docs/storage.md defines the rollups and
/// plugins/milestones its ladders, from the raw wire objects.
fn recount(recording: &Path) -> BTreeMap<String, Player> {
    let mut players: BTreeMap<String, Player> = BTreeMap::new();
    let mut match_no: HashMap<u64, u64> = HashMap::new();
    let mut index = 0u64;
    let text = std::fs::read_to_string(recording).unwrap();
    let num = |v: &Value| -> f64 {
        match v {
            Value::String(s) => s.parse().unwrap(),
            v => v.as_f64().unwrap(),
        }
    };
    for line in text.lines() {
        let rec: Value = serde_json::from_str(line).unwrap();
        let server = rec["server"].as_u64().unwrap();
        for e in rec["batch"].as_array().unwrap() {
            let i = index;
            index += 1;
            let kind = e["type"].as_str().unwrap();
            if kind == "match_start" {
                *match_no.entry(server).or_default() += 1;
            }
            let m = (server, match_no.get(&server).copied().unwrap_or(0));
            let guid = |prefix: &str| e[format!("{prefix}_guid")].as_str().map(str::to_string);
            let actor = guid("attacker").or_else(|| guid("player"));
            let target = guid("victim").or_else(|| guid("target"));
            for g in [&actor, &target].into_iter().flatten() {
                players.entry(g.clone()).or_default().matches.insert(m);
            }
            let Some(a) = actor else { continue };
            match kind {
                "player_kill" => {
                    let v = target.unwrap();
                    if a == v {
                        let p = players.get_mut(&a).unwrap();
                        p.suicides += 1;
                        p.deaths += 1;
                        continue;
                    }
                    let head = matches!(e["hitloc"].as_str(), Some("head" | "helmet"));
                    players.get_mut(&v).unwrap().deaths += 1;
                    let p = players.get_mut(&a).unwrap();
                    p.kills += 1;
                    p.headshots += u64::from(head);
                    if e["attacker_team"] != e["victim_team"] {
                        p.credited += 1;
                        for &(code, n) in KILL_LADDER {
                            if p.credited == n {
                                p.unlocks.insert(code.into(), i);
                            }
                        }
                        if head {
                            p.credited_heads += 1;
                            for &(code, n) in HEADSHOT_LADDER {
                                if p.credited_heads == n {
                                    p.unlocks.insert(code.into(), i);
                                }
                            }
                        }
                    }
                }
                "damage" => {
                    let v = target.unwrap();
                    if a != v {
                        let d = num(&e["damage"]);
                        players.get_mut(&a).unwrap().damage_dealt += d;
                        players.get_mut(&v).unwrap().damage_taken += d;
                    }
                }
                "weapon_fire" => players.get_mut(&a).unwrap().shots_fired += 1,
                "weapon_hit" => players.get_mut(&a).unwrap().shots_hit += 1,
                "jump" => players.get_mut(&a).unwrap().jumps += 1,
                "reload" => players.get_mut(&a).unwrap().reloads += 1,
                "distance" => {
                    let d = if e["delta_distance"].is_null() {
                        num(&e["walked"])
                    } else {
                        num(&e["delta_distance"])
                    };
                    players.get_mut(&a).unwrap().distance += d;
                }
                _ => {}
            }
        }
    }
    players
}

/// Everything the read routes answer about the stream.
struct Answers {
    /// "stat/period" → every entry, all pages.
    boards: BTreeMap<String, Vec<Value>>,
    totals: BTreeMap<String, u64>,
    players: BTreeMap<String, Value>,
    achievements: BTreeMap<String, Value>,
    import_seconds: f64,
}

fn get(server: &Server, path: &str) -> Value {
    let r = server.client.get(server.url(path)).send().unwrap();
    assert_eq!(r.status(), 200, "{path}");
    r.json().unwrap()
}

/// Imports the recording into a fresh data directory on the embedded
/// stores or on ClickHouse + PostgreSQL + Redis, then reads it back over
/// HTTP.
fn import_and_read(recording: &Path, external: bool, guids: &[String]) -> Answers {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (pg, ch, redis) = if external {
        (
            Some(PgDatabase::create("recorded")),
            Some(ChDatabase::new("recorded")),
            Some(RedisPrefix::new("recorded")),
        )
    } else {
        (None, None, None)
    };
    let mut env: Vec<(&str, String)> = Vec::new();
    if let (Some(pg), Some(ch), Some(redis)) = (&pg, &ch, &redis) {
        env.push(("DATABASE_URL", pg.url()));
        env.push(("CLICKHOUSE_URL", ch.url()));
        env.push(("REDIS_URL", external::redis_url()));
        env.push(("OPM_REDIS_PREFIX", redis.prefix.clone()));
        // ClickHouse pays per INSERT (docs/storage.md).
        env.push(("OPM_BATCH_ROWS", "20000".into()));
    }
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The first start installs the bundled packs into DATA/plugins and
    // syncs their definitions; the import then evaluates with them.
    drop(Server::start_with_env(&data, &[], &env_refs));
    let started = Instant::now();
    let out = opm(
        &[
            "import",
            recording.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--plugins",
            data.join("plugins").to_str().unwrap(),
            // One worker: the packs see every player's kills in stream
            // order, so the event that crosses a rung is the recount's.
            "--workers",
            "1",
        ],
        &env,
    );
    let import_seconds = started.elapsed().as_secs_f64();
    assert!(out.contains("rejected 0"), "{out}");
    let server = Server::start_with_env(&data, &["--workers", "1"], &env_refs);
    let mut boards = BTreeMap::new();
    let mut totals = BTreeMap::new();
    for stat in STATS {
        for period in PERIODS {
            let mut all = Vec::new();
            loop {
                let page = get(
                    &server,
                    &format!(
                        "/api/v1/stats/leaderboard?stat={stat}&period={period}&limit=100&offset={}",
                        all.len()
                    ),
                );
                let players = page["players"].as_array().unwrap().clone();
                totals.insert(format!("{stat}/{period}"), page["total"].as_u64().unwrap());
                let n = players.len();
                all.extend(players);
                if n < 100 {
                    break;
                }
            }
            boards.insert(format!("{stat}/{period}"), all);
        }
    }
    let mut players = BTreeMap::new();
    let mut achievements = BTreeMap::new();
    for g in guids {
        players.insert(
            g.clone(),
            get(&server, &format!("/api/v1/stats/player/{g}")),
        );
        achievements.insert(
            g.clone(),
            get(&server, &format!("/api/v1/achievements/player/{g}")),
        );
    }
    drop(server);
    Answers {
        boards,
        totals,
        players,
        achievements,
        import_seconds,
    }
}

fn check_against_recount(name: &str, a: &Answers, rc: &BTreeMap<String, Player>, with_day: bool) {
    let ranked: Vec<&String> = rc.keys().collect();
    for stat in STATS {
        let mut expected: Vec<(&String, f64)> =
            ranked.iter().map(|g| (*g, rc[*g].value(stat))).collect();
        expected.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(y.0)));
        for period in PERIODS {
            if *period == "day" && !with_day {
                continue;
            }
            // Every event lies in the last day (times are the import's
            // clock plus game time), so every period ranks everything.
            let key = format!("{stat}/{period}");
            let board = &a.boards[&key];
            assert_eq!(a.totals[&key], rc.len() as u64, "{name} {key} total");
            assert_eq!(board.len(), rc.len(), "{name} {key} entries");
            let mut seen = BTreeSet::new();
            for (i, entry) in board.iter().enumerate() {
                let g = entry["player_id"].as_str().unwrap();
                assert!(seen.insert(g.to_string()), "{name} {key}: {g} twice");
                let p = &rc[g];
                let ctx = format!("{name} {key} #{i} {g}");
                assert_eq!(entry["rank"], i as u64 + 1, "{ctx}");
                assert_eq!(
                    (&entry["kills"], &entry["deaths"], &entry["headshots"]),
                    (
                        &Value::from(p.kills),
                        &Value::from(p.deaths),
                        &Value::from(p.headshots)
                    ),
                    "{ctx}"
                );
                assert_eq!(
                    (&entry["shots_fired"], &entry["shots_hit"]),
                    (&Value::from(p.shots_fired), &Value::from(p.shots_hit)),
                    "{ctx}"
                );
                let value = entry["value"].as_f64().unwrap();
                assert!(
                    external::close(value, p.value(stat)),
                    "{ctx}: value {value} vs {}",
                    p.value(stat)
                );
                // The rank order, ties (within rounding) aside.
                assert!(
                    external::close(value, expected[i].1),
                    "{ctx}: rank {} should hold {} ({})",
                    i + 1,
                    expected[i].0,
                    expected[i].1
                );
            }
        }
    }
    for (g, p) in rc {
        let ctx = format!("{name} player {g}");
        let v = &a.players[g];
        for (field, want) in [
            ("kills", p.kills),
            ("deaths", p.deaths),
            ("headshots", p.headshots),
            ("suicides", p.suicides),
            ("shots_fired", p.shots_fired),
            ("shots_hit", p.shots_hit),
            ("jumps", p.jumps),
            ("reloads", p.reloads),
            ("matches_played", p.matches.len() as u64),
        ] {
            assert_eq!(v[field], want, "{ctx} {field}");
            assert_eq!(v["player"][field], want, "{ctx} player.{field}");
        }
        for (field, want) in [
            ("damage_dealt", p.damage_dealt),
            ("damage_taken", p.damage_taken),
            ("distance_traveled", p.distance),
        ] {
            let got = v[field].as_f64().unwrap();
            assert!(external::close(got, want), "{ctx} {field}: {got} vs {want}");
        }

        // Achievements: the milestones rungs on the events that cross them.
        let ach = &a.achievements[g];
        let milestone = |code: &str| {
            KILL_LADDER
                .iter()
                .chain(HEADSHOT_LADDER)
                .any(|(c, _)| *c == code)
        };
        let mut unlocked = BTreeMap::new();
        for u in ach["unlocked"].as_array().unwrap() {
            let code = u["code"].as_str().unwrap();
            if milestone(code) {
                assert_eq!(u["pack"], "milestones", "{ctx} {code}");
                // Host ids: the journal numbers events from 1 in file
                // order, shifted past the synthetic-id bits.
                let id = u["event_id"].as_u64().unwrap();
                let index = (id >> opm_model::tracker::SYNTHETIC_ID_BITS) - 1;
                assert!(
                    unlocked.insert(code.to_string(), index).is_none(),
                    "{ctx}: {code} twice"
                );
            }
        }
        assert_eq!(
            unlocked, p.unlocks,
            "{ctx}: milestones (code → event index)"
        );
        let progress: BTreeMap<String, (u64, u64)> = ach["progress"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| milestone(r["code"].as_str().unwrap()))
            .map(|r| {
                (
                    r["code"].as_str().unwrap().to_string(),
                    (
                        r["current_progress"].as_u64().unwrap(),
                        r["requirement_value"].as_u64().unwrap(),
                    ),
                )
            })
            .collect();
        assert_eq!(progress, p.progress(), "{ctx}: milestones progress");
    }
}

fn compare_backends(a: &Answers, b: &Answers, with_day: bool) {
    for (key, board) in &a.boards {
        if key.ends_with("/day") && !with_day {
            continue;
        }
        if let Err(e) = external::same(
            &Value::Array(board.clone()),
            &Value::Array(b.boards[key].clone()),
            &format!("leaderboard {key}"),
        ) {
            panic!("embedded vs external: {e}");
        }
        assert_eq!(a.totals[key], b.totals[key], "total {key}");
    }
    for (what, x, y) in [
        ("player", &a.players, &b.players),
        ("achievements", &a.achievements, &b.achievements),
    ] {
        for (g, v) in x {
            let (mut v, mut w) = (v.clone(), y[g].clone());
            external::strip(&mut v, CLOCK_FIELDS);
            external::strip(&mut w, CLOCK_FIELDS);
            if let Err(e) = external::same(&v, &w, &format!("{what} {g}")) {
                panic!("embedded vs external: {e}");
            }
        }
    }
}

/// How far past its first event a session of the recording runs, at
/// most, in milliseconds: its `timestamp`s are `level.time`, which starts
/// again at 0 with every map, and the host keeps a session's clock going
/// across maps (4.2 h for the million-event stream).
fn longest_session_ms(recording: &Path) -> i64 {
    let text = std::fs::read_to_string(recording).unwrap();
    // session → (game time of maps already ended, last level time)
    let mut sessions: HashMap<String, (f64, f64)> = HashMap::new();
    for line in text.lines() {
        let batch: Value = serde_json::from_str(line).unwrap();
        for event in batch["batch"].as_array().unwrap() {
            let (Some(session), Some(t)) = (
                event["session_id"].as_str(),
                event["timestamp"]
                    .as_str()
                    .and_then(|t| t.parse::<f64>().ok()),
            ) else {
                continue;
            };
            let (ended, last) = sessions.entry(session.to_string()).or_default();
            if t < *last {
                *ended += *last;
            }
            *last = t;
        }
    }
    let longest = sessions
        .values()
        .map(|(ended, last)| ended + last)
        .fold(0.0, f64::max);
    (longest * 1000.0).ceil() as i64
}

fn agree(events: u64) {
    if !external::available(true, true, true, "recorded stream on both backends") {
        return;
    }
    let started = Instant::now();
    let day = opm_store::time::day_string(opm_store::time::now_ms());
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("stream.jsonl");
    opm(
        &[
            "loadgen",
            "--dry-run",
            "--servers",
            "4",
            "--events",
            &events.to_string(),
            "--seed",
            "20261125",
            "--record",
            recording.to_str().unwrap(),
        ],
        &[],
    );
    let rc = recount(&recording);
    let recorded: u64 = std::fs::read_to_string(&recording)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["batch"]
                .as_array()
                .unwrap()
                .len() as u64
        })
        .sum();
    assert!(recorded >= events, "{recorded} events recorded");
    // The ladders must be exercised beyond their first rung.
    let rungs: BTreeSet<&String> = rc.values().flat_map(|p| p.unlocks.keys()).collect();
    assert!(
        rungs.len() >= 3,
        "the stream unlocks too little to test: {rungs:?}"
    );
    let guids: Vec<String> = rc.keys().cloned().collect();

    let embedded = import_and_read(&recording, false, &guids);
    let external = import_and_read(&recording, true, &guids);
    // Game-relative times are anchored when a session's first event
    // arrives, so events lie up to a session's length past the import:
    // hours for a long stream. The `day` board holds them all only when
    // that span stays inside the day the run started.
    let latest_event_ms = opm_store::time::now_ms() + longest_session_ms(&recording);
    let with_day = opm_store::time::day_string(latest_event_ms) == day;
    if !with_day {
        eprintln!(
            "the stream's event times reach into the next UTC day: the `day` period is not compared"
        );
    }
    check_against_recount("embedded", &embedded, &rc, with_day);
    check_against_recount("clickhouse+postgres+redis", &external, &rc, with_day);
    compare_backends(&embedded, &external, with_day);
    let unlocks: usize = rc.values().map(|p| p.unlocks.len()).sum();
    eprintln!(
        "recorded stream: {recorded} events, {} players, {unlocks} milestone unlocks (rungs {rungs:?}); \
         import {:.1} s embedded, {:.1} s external; whole test {:.1} s",
        rc.len(),
        embedded.import_seconds,
        external.import_seconds,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn recorded_stream_agrees_on_both_backends_and_with_a_recount() {
    let events = std::env::var("OPM_RECORDED_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80_000);
    agree(events);
}

#[test]
#[ignore = "1 000 000 events: minutes, run by hand (docs/storage.md)"]
fn million_event_recorded_stream_agrees() {
    agree(1_000_000);
}
