//! A store stopped during load and started again, end to end: the real
//! binary with both bundled packs, its PostgreSQL (and, separately, its
//! ClickHouse) behind a TCP proxy the test controls. Mid-load the proxy
//! lets one write land and loses its reply (the client cannot know it
//! committed), then drops every connection and refuses new ones; HTTP
//! keeps being acknowledged until the queue fills (then 429), and the
//! proxy is restored (in a second PostgreSQL test the server is killed
//! while the store is away and started again after). The result must
//! equal a run of the same stream without the outage: every event stored
//! once in analytics, the unlock ledger, progress, plugin state and pack
//! positions identical, unlocks on the events an independent recount
//! names, the checkpoint caught up.
//!
//! Event times are absolute and one sender sends the batches in a fixed
//! order (429s retried), so two runs assign the same event ids and the
//! comparison can be exact.

mod common;
mod external;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Server;
use external::{ChDatabase, HEADSHOT_LADDER, KILL_LADDER, PgDatabase, Proxy, Trigger};
use opm_model::Event;
use serde_json::{Value, json};

const SERVERS: usize = 2;
const PLAYERS: usize = 4;
const EVENTS_PER_SERVER: usize = 6_000;
const BATCH: usize = 40;
/// Small enough that a stalled pipeline fills it long before the stream
/// ends, so the outage must end in 429s.
const QUEUE: &str = "3000";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn guid(server: usize, p: usize) -> String {
    format!("o{server}p{p}")
}

fn team(p: usize) -> &'static str {
    if p.is_multiple_of(2) {
        "american"
    } else {
        "german"
    }
}

/// One server's stream: matches of kills (some headshots, some suicides
/// and teamkills), fire, damage and jumps, with wall-clock timestamps.
fn server_events(server: usize, base_ms: i64) -> Vec<Value> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((server as u64 + 1) * 0x1000_0001));
    let mut t = base_ms;
    let mut out: Vec<Value> = Vec::new();
    let mut n = 0usize;
    let maps = ["mohdm1", "mohdm2", "mohdm4", "mohdm6"];
    let mut map = server;
    let player = |prefix: &str, p: usize| {
        json!({
            format!("{prefix}_guid"): guid(server, p),
            format!("{prefix}_name"): format!("Player {server}-{p}"),
            format!("{prefix}_team"): team(p),
        })
    };
    let mut push = |out: &mut Vec<Value>, t: i64, kind: &str, fields: Value| {
        let mut e = json!({"type": kind, "match_id": "no_match",
            "session_id": format!("sess-e2e-{server}"), "timestamp": t.to_string(),
            "marker": format!("s{server}-{n}")});
        n += 1;
        if let Value::Object(m) = fields {
            e.as_object_mut().unwrap().extend(m);
        }
        out.push(e);
    };
    let merge = |a: Value, b: Value| {
        let mut a = a;
        a.as_object_mut()
            .unwrap()
            .extend(b.as_object().unwrap().clone());
        a
    };
    push(
        &mut out,
        t,
        "match_start",
        json!({"map_name": maps[map % maps.len()], "gametype": "tdm"}),
    );
    for p in 0..PLAYERS {
        push(&mut out, t, "player_spawn", player("player", p));
    }
    while out.len() < EVENTS_PER_SERVER {
        t += 200 + rng.below(600) as i64;
        let a = rng.below(PLAYERS);
        // An enemy: players alternate teams.
        let v = (a + 1 + 2 * rng.below(PLAYERS / 2)) % PLAYERS;
        let roll = rng.below(100);
        if roll < 60 {
            let hitloc = match rng.below(100) {
                0..20 => "head",
                20..25 => "helmet",
                25..70 => "torso_upper",
                _ => "left_leg",
            };
            let victim = match rng.below(100) {
                0..2 => a,                 // suicide
                2..4 => (a + 2) % PLAYERS, // teamkill
                _ => v,
            };
            let kill = merge(
                merge(player("attacker", a), player("victim", victim)),
                json!({"weapon": "Kar98K", "hitloc": hitloc, "mod": "MOD_RIFLE", "damage": "100"}),
            );
            push(&mut out, t, "player_kill", kill);
            if rng.chance(70) {
                push(&mut out, t + 1, "player_spawn", player("player", victim));
            }
        } else if roll < 75 {
            push(
                &mut out,
                t,
                "weapon_fire",
                merge(player("player", a), json!({"weapon": "Kar98K"})),
            );
        } else if roll < 90 {
            let dmg = 10 + rng.below(60);
            push(
                &mut out,
                t,
                "damage",
                merge(
                    merge(player("attacker", a), player("victim", v)),
                    json!({"weapon": "Kar98K", "damage": dmg.to_string(), "hitloc": "torso_lower"}),
                ),
            );
        } else {
            push(&mut out, t, "jump", player("player", a));
        }
        if out.len().is_multiple_of(1_500) {
            push(
                &mut out,
                t + 1,
                "match_end",
                json!({"winning_team": team(rng.below(2))}),
            );
            map += 1;
            t += 5_000;
            push(
                &mut out,
                t,
                "match_start",
                json!({"map_name": maps[map % maps.len()], "gametype": "tdm"}),
            );
        }
    }
    out
}

/// Every server's batches, interleaved round-robin: the order one sender
/// sends them in.
fn stream(base_ms: i64) -> Vec<(usize, Vec<Value>)> {
    let per: Vec<Vec<Vec<Value>>> = (0..SERVERS)
        .map(|s| {
            server_events(s, base_ms)
                .chunks(BATCH)
                .map(|c| c.to_vec())
                .collect()
        })
        .collect();
    let longest = per.iter().map(Vec::len).max().unwrap();
    let mut out = Vec::new();
    for i in 0..longest {
        for (s, batches) in per.iter().enumerate() {
            if let Some(b) = batches.get(i) {
                out.push((s, b.clone()));
            }
        }
    }
    out
}

/// Which store is cut away.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Store {
    Postgres,
    ClickHouse,
}

/// What a run leaves behind, with server ids replaced by their index.
struct Outcome {
    /// (first_id, last_id) of every batch, in order.
    ids: Vec<(u64, u64)>,
    events: Vec<Event>,
    raw_rows: u64,
    high_water: BTreeMap<usize, u64>,
    api: BTreeMap<String, Value>,
    unlocks: BTreeMap<String, Vec<Value>>,
    progress: BTreeMap<String, Vec<Value>>,
    state: BTreeMap<String, Vec<String>>,
    positions: BTreeMap<String, BTreeMap<usize, u64>>,
    acked_during_outage: u64,
    shed_during_outage: u64,
}

/// What happens to the store (and the server) a third of the way in.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Outage {
    None,
    /// Cut, then restored under the same server process.
    Cut,
    /// Cut; once the queue is full the server is killed (SIGKILL), the
    /// store restored and the server started again: the journal replays
    /// onto a store that holds a commit the dead process never saw
    /// confirmed.
    CutAndCrash,
}

struct Shared {
    acked: parking_lot::Mutex<Vec<(u64, u64)>>,
    url: parking_lot::Mutex<String>,
    /// The sender waits at its first 429 until the server was restarted.
    hold_at_429: bool,
    held: AtomicBool,
    released: AtomicBool,
    paused: AtomicBool,
    resume: AtomicBool,
    outage: AtomicBool,
    acked_during_outage: AtomicU64,
    shed_during_outage: AtomicU64,
    done: AtomicBool,
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    // A liveness bound only: every condition here is reached in seconds.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Streams `batches` into a fresh server whose `store` goes through a
/// proxy; with an `outage` the proxy cuts it a third of the way in.
fn run(store: Store, batches: &[(usize, Vec<Value>)], kind: Outage) -> Outcome {
    let outage = kind != Outage::None;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pg = (store == Store::Postgres).then(|| PgDatabase::create("outage"));
    let ch = (store == Store::ClickHouse).then(|| ChDatabase::new("outage"));
    let upstream = match store {
        Store::Postgres => external::socket_of(&external::postgres_admin_url()),
        Store::ClickHouse => external::socket_of(&external::clickhouse_base()),
    };
    let proxy = Proxy::start(upstream);
    // The test reads the processed stream back from the export.
    let mut env: Vec<(&str, String)> = vec![("OPM_EXPORT_EVENTS", "true".into())];
    match store {
        Store::Postgres => env.push(("DATABASE_URL", pg.as_ref().unwrap().url_via(proxy.addr))),
        Store::ClickHouse => {
            env.push(("CLICKHOUSE_URL", ch.as_ref().unwrap().url_via(proxy.addr)));
            // Small batches: many inserts in flight while the cut happens.
            env.push(("OPM_BATCH_ROWS", "200".into()));
            env.push(("OPM_BATCH_MS", "100".into()));
        }
    }
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut server = Server::start_with_env(
        &data,
        &["--queue-capacity", QUEUE, "--workers", "2"],
        &env_refs,
    );
    let tokens: Vec<String> = (0..SERVERS)
        .map(|s| {
            server
                .register(
                    &format!("outage-{s}"),
                    &format!("192.0.2.{}", 10 + s),
                    json!(12203),
                )
                .1
        })
        .collect();

    let shared = Arc::new(Shared {
        acked: Default::default(),
        url: parking_lot::Mutex::new(server.url("/api/v1/ingest/events")),
        hold_at_429: kind == Outage::CutAndCrash,
        held: AtomicBool::new(false),
        released: AtomicBool::new(false),
        paused: AtomicBool::new(false),
        resume: AtomicBool::new(false),
        outage: AtomicBool::new(false),
        acked_during_outage: AtomicU64::new(0),
        shed_during_outage: AtomicU64::new(0),
        done: AtomicBool::new(false),
    });
    let pause_at = batches.len() / 3;
    let sender = {
        let shared = shared.clone();
        let bodies: Vec<(String, String)> = batches
            .iter()
            .map(|(s, b)| (tokens[*s].clone(), serde_json::to_string(b).unwrap()))
            .collect();
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap();
            for (i, (token, body)) in bodies.into_iter().enumerate() {
                if i == pause_at {
                    shared.paused.store(true, Ordering::SeqCst);
                    while !shared.resume.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                loop {
                    let url = shared.url.lock().clone();
                    let r = client
                        .post(&url)
                        .header("X-Server-Token", &token)
                        .header("Content-Type", "application/json")
                        .body(body.clone())
                        .send()
                        .expect("the server answers during a store outage");
                    let status = r.status().as_u16();
                    let outage = shared.outage.load(Ordering::SeqCst);
                    if status == 202 {
                        let v: Value = r.json().unwrap();
                        assert_eq!(v["rejected"], 0, "{v}");
                        shared.acked.lock().push((
                            v["first_id"].as_u64().unwrap(),
                            v["last_id"].as_u64().unwrap(),
                        ));
                        if outage {
                            shared.acked_during_outage.fetch_add(1, Ordering::SeqCst);
                        }
                        break;
                    }
                    assert_eq!(status, 429, "batch {i}: unexpected status");
                    if outage {
                        shared.shed_during_outage.fetch_add(1, Ordering::SeqCst);
                        if shared.hold_at_429 && !shared.released.load(Ordering::SeqCst) {
                            // Nothing in flight while the server is killed:
                            // this batch was refused, not journaled.
                            shared.held.store(true, Ordering::SeqCst);
                            while !shared.released.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            continue;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            shared.done.store(true, Ordering::SeqCst);
        })
    };

    wait_until("the sender to reach the outage point", || {
        shared.paused.load(Ordering::SeqCst)
    });
    // Everything so far is through every stage: the outage starts with an
    // empty queue, so acknowledgements must go on during it.
    server.settle();
    if outage {
        proxy.arm(match store {
            Store::Postgres => Trigger::Reply(external::PG_COMMIT_COMPLETE),
            Store::ClickHouse => Trigger::Request(b"INSERT"),
        });
        shared.outage.store(true, Ordering::SeqCst);
    }
    shared.resume.store(true, Ordering::SeqCst);
    if outage {
        wait_until("a write to land with its reply lost", || proxy.is_cut());
        assert!(proxy.fired());
        wait_until("the queue to fill (429) while the store is away", || {
            shared.shed_during_outage.load(Ordering::SeqCst) > 0
                || shared.done.load(Ordering::SeqCst)
        });
        if kind == Outage::CutAndCrash {
            wait_until("the sender to hold", || shared.held.load(Ordering::SeqCst));
            server.kill9();
            shared.outage.store(false, Ordering::SeqCst);
            proxy.restore();
            server.restart();
            *shared.url.lock() = server.url("/api/v1/ingest/events");
            shared.released.store(true, Ordering::SeqCst);
        } else {
            shared.outage.store(false, Ordering::SeqCst);
            proxy.restore();
        }
    }
    sender.join().unwrap();
    server.settle();
    let ids = shared.acked.lock().clone();
    let last_seq = ids.last().unwrap().1 >> opm_model::tracker::SYNTHETIC_ID_BITS;
    let ready = server.ready();
    assert!(
        ready["checkpoint"].as_u64().unwrap() >= last_seq,
        "checkpoint caught up: {ready}"
    );

    let events = server.events();
    // Server ids become their registration index, so runs compare.
    let index_of: HashMap<String, usize> = {
        let mut m = HashMap::new();
        for e in &events {
            if let Some(marker) = e.extra("marker") {
                let s: usize = marker[1..marker.find('-').unwrap()].parse().unwrap();
                m.insert(e.server.to_string(), s);
            }
        }
        m
    };
    let players: Vec<String> = (0..SERVERS)
        .flat_map(|s| (0..PLAYERS).map(move |p| guid(s, p)))
        .collect();
    let mut api = BTreeMap::new();
    for g in &players {
        for route in ["stats/player", "achievements/player"] {
            let v: Value = server
                .client
                .get(server.url(&format!("/api/v1/{route}/{g}")))
                .send()
                .unwrap()
                .json()
                .unwrap();
            api.insert(format!("{route}/{g}"), v);
        }
    }
    for stat in ["kills", "deaths", "headshots", "kd", "accuracy", "damage"] {
        let v: Value = server
            .client
            .get(server.url(&format!(
                "/api/v1/stats/leaderboard?stat={stat}&period=all&limit=100"
            )))
            .send()
            .unwrap()
            .json()
            .unwrap();
        api.insert(format!("leaderboard/{stat}"), v);
    }
    server.kill9();

    // The stores themselves, directly (not through the proxy).
    let mut config = opm_store::StoreConfig::embedded(&data);
    config.database_url = pg.as_ref().map(PgDatabase::url);
    config.clickhouse_url = ch.as_ref().map(ChDatabase::url);
    let rt = external::runtime();
    let stores = rt.block_on(opm_store::Stores::open(&config)).unwrap();
    let (raw_rows, high_water, unlocks, progress, state, positions) = rt.block_on(async {
        let raw_rows = match &ch {
            // The physical count: a re-inserted row would be here until a
            // merge, and its rollups forever.
            Some(_) => {
                let rows = stores
                    .analytics
                    .fetch("SELECT count() AS n FROM raw_events")
                    .await
                    .unwrap();
                rows[0]["n"]
                    .as_u64()
                    .unwrap_or_else(|| rows[0]["n"].as_str().unwrap().parse().unwrap())
            }
            None => stores.analytics.raw_count().await.unwrap(),
        };
        let high_water: BTreeMap<usize, u64> = stores
            .analytics
            .high_water_marks()
            .await
            .unwrap()
            .into_iter()
            .map(|(s, id)| (index_of[&s], id))
            .collect();
        let r = &stores.relational;
        let mut unlocks = BTreeMap::new();
        let mut progress = BTreeMap::new();
        for g in &players {
            unlocks.insert(
                g.clone(),
                r.unlocks_of(g)
                    .await
                    .unwrap()
                    .iter()
                    .map(|u| serde_json::to_value(u).unwrap())
                    .collect::<Vec<_>>(),
            );
            progress.insert(
                g.clone(),
                r.progress_of(g)
                    .await
                    .unwrap()
                    .iter()
                    .map(|p| serde_json::to_value(p).unwrap())
                    .collect::<Vec<_>>(),
            );
        }
        let mut state = BTreeMap::new();
        let mut positions = BTreeMap::new();
        for pack in ["milestones", "streaks"] {
            let mut rows: Vec<String> = r
                .load_pack_state(pack)
                .await
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{k:?} = {v:?}"))
                .collect();
            rows.sort();
            state.insert(pack.to_string(), rows);
            positions.insert(
                pack.to_string(),
                r.pack_positions(pack)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|(s, id)| (index_of[&s], id))
                    .collect(),
            );
        }
        (raw_rows, high_water, unlocks, progress, state, positions)
    });
    drop(stores);
    drop(rt);
    Outcome {
        ids,
        events,
        raw_rows,
        high_water,
        api,
        unlocks,
        progress,
        state,
        positions,
        acked_during_outage: shared.acked_during_outage.load(Ordering::SeqCst),
        shed_during_outage: shared.shed_during_outage.load(Ordering::SeqCst),
    }
}

/// The milestones unlocks the raw stream must give: per player, code →
/// marker of the event that crossed the rung (players belong to one
/// server, so their kills are in that server's order).
fn recount_milestones(
    batches: &[(usize, Vec<Value>)],
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut kills: HashMap<String, u64> = HashMap::new();
    let mut heads: HashMap<String, u64> = HashMap::new();
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (_, batch) in batches {
        for e in batch {
            if e["type"] != "player_kill" {
                continue;
            }
            let (a, v) = (
                e["attacker_guid"].as_str().unwrap(),
                e["victim_guid"].as_str().unwrap(),
            );
            if a == v || e["attacker_team"] == e["victim_team"] {
                continue;
            }
            let marker = e["marker"].as_str().unwrap().to_string();
            let k = kills.entry(a.to_string()).or_default();
            *k += 1;
            for (code, n) in KILL_LADDER {
                if *k == *n {
                    out.entry(a.into())
                        .or_default()
                        .insert(code.to_string(), marker.clone());
                }
            }
            if matches!(e["hitloc"].as_str(), Some("head" | "helmet")) {
                let h = heads.entry(a.to_string()).or_default();
                *h += 1;
                for (code, n) in HEADSHOT_LADDER {
                    if *h == *n {
                        out.entry(a.into())
                            .or_default()
                            .insert(code.to_string(), marker.clone());
                    }
                }
            }
        }
    }
    out
}

fn check(store: Store, batches: &[(usize, Vec<Value>)], with: &Outcome, without: &Outcome) {
    let tag = format!("{store:?} outage");
    assert!(
        with.acked_during_outage > 0,
        "{tag}: acknowledgements stopped with the store"
    );
    assert!(
        with.shed_during_outage > 0,
        "{tag}: the queue never filled while the store was away"
    );
    assert_eq!(with.ids.len(), batches.len());
    assert_eq!(
        with.ids, without.ids,
        "{tag}: event ids differ from the run without outage"
    );

    // Every acknowledged event exactly once, and nothing else.
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut ids = BTreeSet::new();
    for e in &with.events {
        assert!(ids.insert(e.id), "{tag}: event id {} logged twice", e.id);
        if let Some(m) = e.extra("marker") {
            *seen.entry(m).or_default() += 1;
        }
    }
    for (_, batch) in batches {
        for e in batch {
            let m = e["marker"].as_str().unwrap();
            assert_eq!(seen.get(m), Some(&1), "{tag}: event {m}");
        }
    }
    let sent: usize = batches.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(seen.len(), sent);
    // Workers append to the log in their own order; ids say where each
    // event belongs.
    let fingerprint = |o: &Outcome| -> Vec<(u64, String, String)> {
        let mut v: Vec<_> = o
            .events
            .iter()
            .map(|e| {
                (
                    e.id,
                    e.type_name.to_string(),
                    e.extra("marker").unwrap_or_default().to_string(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let (a, b) = (fingerprint(with), fingerprint(without));
    if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
        panic!("{tag}: event log differs at {i}: {:?} vs {:?}", a[i], b[i]);
    }
    assert_eq!(a.len(), b.len(), "{tag}: events processed");
    assert_eq!(
        with.raw_rows,
        with.events.len() as u64,
        "{tag}: analytics rows (physical) vs events processed"
    );
    assert_eq!(with.raw_rows, without.raw_rows);
    assert_eq!(
        with.high_water, without.high_water,
        "{tag}: high-water marks"
    );

    // What the read routes answer: rollups, ledger, progress.
    for (key, v) in &with.api {
        if let Err(e) = external::same(v, &without.api[key], key) {
            panic!("{tag}: {e}");
        }
    }
    assert_eq!(with.unlocks, without.unlocks, "{tag}: unlock ledger");
    assert_eq!(with.progress, without.progress, "{tag}: progress");
    assert_eq!(with.state, without.state, "{tag}: plugin state");
    assert_eq!(with.positions, without.positions, "{tag}: pack positions");

    // And the ledger is what the stream says: each rung once, on the
    // event that crossed it, at that event's time.
    let by_id: HashMap<u64, &Event> = with.events.iter().map(|e| (e.id, e)).collect();
    let expected = recount_milestones(batches);
    assert!(
        expected.values().any(|c| c.contains_key("soldier"))
            && expected.values().any(|c| c.contains_key("headhunter")),
        "the stream reaches the upper rungs"
    );
    for (player, rows) in &with.unlocks {
        let mut got = BTreeMap::new();
        let mut codes = BTreeSet::new();
        for u in rows {
            let code = u["code"].as_str().unwrap().to_string();
            assert!(codes.insert(code.clone()), "{tag}: {player} {code} twice");
            if u["pack"] != "milestones" {
                continue;
            }
            let ev = by_id[&u["event_id"].as_u64().unwrap()];
            assert_eq!(
                u["unlocked_ms"].as_i64().unwrap(),
                ev.time_ms,
                "{tag}: {player} {code} time"
            );
            got.insert(code, ev.extra("marker").unwrap().to_string());
        }
        assert_eq!(
            got,
            expected.get(player).cloned().unwrap_or_default(),
            "{tag}: {player}'s milestones"
        );
    }
}

fn outage_test(store: Store, kind: Outage) {
    let base_ms = opm_store::time::now_ms() - 3_600_000;
    let batches = stream(base_ms);
    let started = Instant::now();
    let without = run(store, &batches, Outage::None);
    let with = run(store, &batches, kind);
    eprintln!(
        "{store:?} {kind:?}: {} batches acknowledged during the outage, {} shed with 429; both runs in {:.1} s",
        with.acked_during_outage,
        with.shed_during_outage,
        started.elapsed().as_secs_f64()
    );
    check(store, &batches, &with, &without);
}

#[test]
fn postgres_outage_under_load_loses_and_duplicates_nothing() {
    if !external::available(true, false, false, "postgres outage") {
        return;
    }
    outage_test(Store::Postgres, Outage::Cut);
}

#[test]
fn postgres_outage_with_a_crash_during_it_loses_and_duplicates_nothing() {
    if !external::available(true, false, false, "postgres outage and crash") {
        return;
    }
    outage_test(Store::Postgres, Outage::CutAndCrash);
}

#[test]
fn clickhouse_outage_under_load_loses_and_duplicates_nothing() {
    if !external::available(false, true, false, "clickhouse outage") {
        return;
    }
    outage_test(Store::ClickHouse, Outage::Cut);
}
