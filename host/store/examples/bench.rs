//! Storage benchmark: loads a realistic event stream into one analytics
//! backend through the batch writer, then times the leaderboard (every
//! stat × period, with paging) and player-profile queries. Not a test: it
//! prints the numbers docs/storage.md quotes. Run it optimised:
//!
//! ```sh
//! cargo run --release -p opm-store --example bench -- --backend sqlite
//! cargo run --release -p opm-store --example bench -- --backend clickhouse --batch-rows 100000
//! ```
//!
//! Options (defaults in brackets):
//!
//! * `--backend sqlite|clickhouse` [sqlite]
//! * `--events N` [10000000]: events in the stream, a year of play ending now
//! * `--players N` [20000], `--servers N` [8]
//! * `--small N` [500000]: the first N events go through the writer's
//!   default 1 000-row batches, the rest through `--batch-rows` batches
//! * `--batch-rows N` [20000]
//! * `--flush-ms N` [200]: flush the writer this often while loading, as
//!   the ingest pipeline's checkpointer does (0: only at the end)
//! * `--dir PATH` [/var/tmp/opm-bench]: SQLite file location
//! * `--clickhouse URL` [http://127.0.0.1:8123], database `opm_bench`
//! * `--samples N` [50]: timed runs per query shape
//! * `--reuse`: skip loading when the store already holds the stream
//! * `--keep`: keep the data afterwards (deleted by default)

use std::sync::Arc;
use std::time::Instant;

use opm_model::{Event, EventKind, Participant, Stance, Str, Team, Vec3};
use opm_store::analytics::AnalyticsStore;
use opm_store::analytics::clickhouse::{ClickHouseAnalytics, ClickHouseConfig};
use opm_store::analytics::query::{LeaderStat, Period, StatsQueries};
use opm_store::analytics::sqlite::SqliteAnalytics;
use opm_store::analytics::writer::{BatchWriter, WriterConfig};

struct Args {
    backend: String,
    events: u64,
    players: usize,
    servers: usize,
    small: u64,
    batch_rows: usize,
    flush_ms: u64,
    dir: String,
    clickhouse: String,
    samples: usize,
    reuse: bool,
    keep: bool,
}

fn args() -> Args {
    let mut a = Args {
        backend: "sqlite".into(),
        events: 10_000_000,
        players: 20_000,
        servers: 8,
        small: 500_000,
        batch_rows: 20_000,
        flush_ms: 200,
        dir: "/var/tmp/opm-bench".into(),
        clickhouse: "http://127.0.0.1:8123".into(),
        samples: 50,
        reuse: false,
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => a.backend = value(),
            "--events" => a.events = value().parse().expect("--events N"),
            "--players" => a.players = value().parse().expect("--players N"),
            "--servers" => a.servers = value().parse().expect("--servers N"),
            "--small" => a.small = value().parse().expect("--small N"),
            "--batch-rows" => a.batch_rows = value().parse().expect("--batch-rows N"),
            "--flush-ms" => a.flush_ms = value().parse().expect("--flush-ms N"),
            "--dir" => a.dir = value(),
            "--clickhouse" => a.clickhouse = value(),
            "--samples" => a.samples = value().parse().expect("--samples N"),
            "--reuse" => a.reuse = true,
            "--keep" => a.keep = true,
            other => panic!("unknown option {other} (see the header of examples/bench.rs)"),
        }
    }
    a
}

/// xorshift64*: deterministic and fast enough to outrun any store.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Index into `weights` drawn by weight.
    fn pick(&mut self, weights: &[u32]) -> usize {
        let total: u32 = weights.iter().sum();
        let mut r = self.below(total as u64) as u32;
        for (i, w) in weights.iter().enumerate() {
            if r < *w {
                return i;
            }
            r -= w;
        }
        weights.len() - 1
    }
}

const MAPS: &[(&str, &str)] = &[
    ("mohdm1", "dm"),
    ("mohdm2", "dm"),
    ("mohdm3", "dm"),
    ("mohdm4", "dm"),
    ("mohdm6", "tdm"),
    ("mohdm7", "tdm"),
    ("obj/obj_team1", "obj"),
    ("obj/obj_team2", "obj"),
    ("obj/obj_team3", "obj"),
    ("obj/obj_team4", "obj"),
];

/// Primary weapons with their means of death; everyone also carries a
/// pistol and grenades.
const PRIMARY: &[(&str, &str)] = &[
    ("Thompson", "MOD_BULLET"),
    ("MP40", "MOD_BULLET"),
    ("Kar98K", "MOD_BULLET"),
    ("M1 Garand", "MOD_BULLET"),
    ("BAR", "MOD_BULLET"),
    ("StG 44", "MOD_BULLET"),
    ("Springfield '03 Sniper", "MOD_BULLET"),
    ("KAR98 - Sniper", "MOD_BULLET"),
    ("Shotgun", "MOD_SHOTGUN"),
    ("Bazooka", "MOD_ROCKET"),
    ("Panzerschreck", "MOD_ROCKET"),
];
const PISTOLS: &[&str] = &["Colt 45", "Walther P38"];
const GRENADES: &[&str] = &["Frag Grenade", "Stielhandgranate"];

const HIT_LOCATIONS: &[(&str, u32)] = &[
    ("head", 7),
    ("helmet", 3),
    ("neck", 2),
    ("torso_upper", 24),
    ("torso_mid", 14),
    ("torso_lower", 10),
    ("pelvis", 6),
    ("r_arm_upper", 4),
    ("l_arm_upper", 4),
    ("r_arm_lower", 3),
    ("l_arm_lower", 3),
    ("r_leg_upper", 5),
    ("l_leg_upper", 5),
    ("r_leg_lower", 3),
    ("l_leg_lower", 3),
    ("r_hand", 1),
    ("l_hand", 1),
    ("r_foot", 1),
    ("l_foot", 1),
];

/// Event mix: mostly shooting and damage, as a real server logs it.
const KINDS: &[(EventKind, u32)] = &[
    (EventKind::WeaponFire, 420),
    (EventKind::Damage, 190),
    (EventKind::WeaponHit, 150),
    (EventKind::PlayerKill, 80),
    (EventKind::Jump, 50),
    (EventKind::Reload, 50),
    (EventKind::Distance, 30),
    (EventKind::PlayerSpawn, 25),
    (EventKind::PlayerSuicide, 5),
];

struct Seat {
    player: usize,
    team: Team,
    weapon: usize,
    life: u32,
}

struct Match {
    id: Str,
    server: usize,
    map: Str,
    mode: Str,
    seats: Vec<Seat>,
    left: u64,
    round: u32,
}

/// A year of matches on a few servers: each match seats 12-32 of the
/// player pool (regulars far more often than the rest), runs 1 000-3 000
/// events, and its events carry the raw object a game server would send.
struct Stream {
    rng: Rng,
    guids: Vec<Str>,
    names: Vec<Str>,
    servers: Vec<Str>,
    next_id: Vec<u64>,
    total: u64,
    made: u64,
    start_ms: i64,
    span_ms: i64,
    matches: u64,
    current: Option<Match>,
    kind_weights: Vec<u32>,
    hit_weights: Vec<u32>,
}

impl Stream {
    fn new(total: u64, players: usize, servers: usize, end_ms: i64) -> Stream {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let guids = (0..players)
            .map(|_| Str::from(format!("{:016x}{:016x}", rng.next(), rng.next())))
            .collect();
        let names = (0..players)
            .map(|i| Str::from(format!("Soldier {i}")))
            .collect();
        let span_ms = 365 * 86_400_000i64;
        Stream {
            rng,
            guids,
            names,
            servers: (0..servers)
                .map(|i| Str::from(format!("bench-{i}")))
                .collect(),
            next_id: vec![0; servers],
            total,
            made: 0,
            start_ms: end_ms - span_ms,
            span_ms,
            matches: 0,
            current: None,
            kind_weights: KINDS.iter().map(|k| k.1).collect(),
            hit_weights: HIT_LOCATIONS.iter().map(|h| h.1).collect(),
        }
    }

    /// A player index, skewed so a few thousand regulars play most.
    fn someone(&mut self) -> usize {
        let u = self.rng.unit();
        ((u * u * u) * self.guids.len() as f64) as usize % self.guids.len()
    }

    fn new_match(&mut self) -> Match {
        self.matches += 1;
        let (map, mode) = MAPS[self.rng.below(MAPS.len() as u64) as usize];
        let size = 12 + self.rng.below(21) as usize;
        let mut seats: Vec<Seat> = Vec::with_capacity(size);
        while seats.len() < size {
            let p = self.someone();
            if seats.iter().all(|s| s.player != p) {
                seats.push(Seat {
                    player: p,
                    team: if seats.len().is_multiple_of(2) {
                        Team::Allies
                    } else {
                        Team::Axis
                    },
                    weapon: self.rng.below(PRIMARY.len() as u64) as usize,
                    life: 1,
                });
            }
        }
        Match {
            id: Str::from(format!("m{:06}", self.matches)),
            server: (self.matches % self.servers.len() as u64) as usize,
            map: Str::from(map),
            mode: Str::from(mode),
            seats,
            left: 1000 + self.rng.below(2001),
            round: 1,
        }
    }

    fn participant(&mut self, m: &Match, seat: usize) -> Participant {
        let s = &m.seats[seat];
        let mut p = Participant::new(self.guids[s.player].clone());
        p.name = self.names[s.player].clone();
        p.team = s.team;
        p.life = s.life;
        p.stance = [Stance::Stand, Stance::Crouch, Stance::Prone][self.rng.below(3) as usize];
        p.health = Some(1 + self.rng.below(100) as i32);
        p.position = Some(Vec3 {
            x: self.rng.below(6000) as f32 - 3000.0,
            y: self.rng.below(6000) as f32 - 3000.0,
            z: self.rng.below(300) as f32,
        });
        p.pitch = self.rng.below(180) as f32 - 90.0;
        p.yaw = self.rng.below(360) as f32;
        p
    }

    fn event(&mut self) -> Event {
        let mut m = match self.current.take() {
            Some(m) if m.left > 0 => m,
            _ => self.new_match(),
        };
        m.left -= 1;
        if m.left.is_multiple_of(700) {
            m.round += 1;
        }
        let kind = KINDS[self.rng.pick(&self.kind_weights)].0;
        let mut e = Event::new(kind);
        let server = m.server;
        self.next_id[server] += 1;
        e.id = self.next_id[server];
        e.server = self.servers[server].clone();
        e.time_ms =
            self.start_ms + (self.made as i128 * self.span_ms as i128 / self.total as i128) as i64;
        e.session = m.id.clone();
        e.match_id = m.id.clone();
        e.round = m.round;
        e.map = m.map.clone();
        e.game_mode = m.mode.clone();
        let a = self.rng.below(m.seats.len() as u64) as usize;
        e.actor = Some(self.participant(&m, a));
        let weapon = {
            let r = self.rng.below(100);
            let s = &m.seats[a];
            if r < 80 {
                PRIMARY[s.weapon]
            } else if r < 93 {
                (PISTOLS[s.player % PISTOLS.len()], "MOD_BULLET")
            } else {
                (GRENADES[s.team as usize % GRENADES.len()], "MOD_GRENADE")
            }
        };
        let targeted = matches!(
            kind,
            EventKind::PlayerKill | EventKind::Damage | EventKind::WeaponHit
        );
        let mut raw = format!(
            "{{\"type\":\"{}\",\"timestamp\":{:.3},\"match_id\":\"{}\",\"map\":\"{}\",\"player_guid\":\"{}\",\"player_name\":\"{}\"",
            kind.as_str(),
            e.time_ms as f64 / 1000.0,
            m.id,
            m.map,
            self.guids[m.seats[a].player],
            self.names[m.seats[a].player],
        );
        if matches!(
            kind,
            EventKind::WeaponFire | EventKind::Reload | EventKind::PlayerKill
        ) || targeted
        {
            e.weapon = Str::from(weapon.0);
            raw.push_str(&format!(",\"weapon\":\"{}\"", weapon.0));
        }
        if targeted {
            // Someone on the other team, rarely a team mate.
            let mut t = self.rng.below(m.seats.len() as u64) as usize;
            for _ in 0..4 {
                if t != a && m.seats[t].team != m.seats[a].team {
                    break;
                }
                t = self.rng.below(m.seats.len() as u64) as usize;
            }
            if t == a {
                t = (a + 1) % m.seats.len();
            }
            e.target = Some(self.participant(&m, t));
            e.hit_location = Str::from(HIT_LOCATIONS[self.rng.pick(&self.hit_weights)].0);
            e.means_of_death = Str::from(weapon.1);
            e.damage = if kind == EventKind::WeaponHit {
                0.0
            } else {
                (5 + self.rng.below(95)) as f32
            };
            e.distance = self.rng.below(3000) as f32;
            raw.push_str(&format!(
                ",\"victim_guid\":\"{}\",\"victim_name\":\"{}\",\"hitloc\":\"{}\",\"damage\":{},\"mod\":\"{}\"",
                self.guids[m.seats[t].player],
                self.names[m.seats[t].player],
                e.hit_location,
                e.damage,
                weapon.1
            ));
            if kind == EventKind::PlayerKill {
                m.seats[t].life += 1;
            }
        }
        if kind == EventKind::Distance {
            let walked = format!("{:.1}", self.rng.below(4000) as f64 / 10.0);
            raw.push_str(&format!(",\"walked\":{walked}"));
            e.extra = vec![(Str::from("walked"), Str::from(walked))];
        }
        raw.push('}');
        e.raw = Some(Str::from(raw));
        self.made += 1;
        self.current = Some(m);
        e
    }

    fn take(&mut self, n: usize) -> Vec<Event> {
        let n = n.min((self.total - self.made) as usize);
        (0..n).map(|_| self.event()).collect()
    }

    fn left(&self) -> u64 {
        self.total - self.made
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(ms: &mut [f64]) -> String {
    ms.sort_by(f64::total_cmp);
    format!(
        "p50 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms  (n={})",
        pct(ms, 0.5),
        pct(ms, 0.99),
        ms[ms.len() - 1],
        ms.len()
    )
}

/// Feeds `n` events of the stream through a batch writer, flushing it
/// every `flush_ms` like the pipeline's checkpointer; returns rows/s.
async fn load(
    store: &Arc<dyn AnalyticsStore>,
    stream: &mut Stream,
    n: u64,
    rows: usize,
    flush_ms: u64,
) -> f64 {
    let config = WriterConfig {
        max_rows: rows,
        // Bounded memory: at most 64 chunks of 1 000 events queued.
        queue: 64,
        ..WriterConfig::default()
    };
    let t = Instant::now();
    let writer = Arc::new(BatchWriter::spawn(store.clone(), config));
    let flusher = (flush_ms > 0).then(|| {
        let w = writer.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(flush_ms));
            loop {
                tick.tick().await;
                if w.flush().await.is_err() {
                    break;
                }
            }
        })
    });
    let mut sent = 0;
    let mut next_report = 1_000_000;
    while sent < n {
        let chunk = stream.take(1000.min((n - sent) as usize));
        sent += chunk.len() as u64;
        writer.send_many(chunk).await.expect("writer running");
        if sent >= next_report {
            next_report += 1_000_000;
            let c = writer.committed().borrow().clone();
            eprintln!(
                "  … {sent} sent, {} stored, {:.0} s",
                c.inserted,
                t.elapsed().as_secs_f64()
            );
        }
    }
    if let Some(f) = flusher {
        f.abort();
        let _ = f.await;
    }
    let writer = Arc::into_inner(writer).expect("the flusher is gone");
    let c = writer.close().await.expect("writer flushed");
    assert_eq!(c.rejected, 0, "the store rejected events");
    n as f64 / t.elapsed().as_secs_f64()
}

async fn queries(name: &str, store: Arc<dyn AnalyticsStore>, stream: &Stream, samples: usize) {
    let q = StatsQueries::new(store);
    let now = opm_store::time::now_ms();
    let offsets = [0u64, 25, 100, 500, 2000];
    let mut all = Vec::new();
    println!("{name}: leaderboards (limit 25, offsets {offsets:?} in turn; entries + total):");
    for stat in [
        LeaderStat::Kills,
        LeaderStat::Deaths,
        LeaderStat::Headshots,
        LeaderStat::Kd,
        LeaderStat::Accuracy,
        LeaderStat::Damage,
    ] {
        for period in [
            Period::All,
            Period::Day,
            Period::Week,
            Period::Month,
            Period::Year,
        ] {
            let mut ms = Vec::with_capacity(samples);
            let mut total = 0;
            for i in 0..samples {
                let t = Instant::now();
                let b = q
                    .leaderboard(stat, period, 25, offsets[i % offsets.len()], now)
                    .await
                    .expect("leaderboard");
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                total = b.total;
                assert!(
                    i % offsets.len() != 0 || !b.entries.is_empty(),
                    "empty board"
                );
            }
            all.extend_from_slice(&ms);
            println!(
                "{name}:   {:9} {:5} {}  players {total}",
                stat.as_str(),
                period.as_str(),
                summary(&mut ms)
            );
        }
    }
    println!("{name}: every leaderboard query: {}", summary(&mut all));
    let mut rng = Rng(42);
    let (mut whole, mut totals, mut weapons, mut matches) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..samples * 4 {
        // Half regulars (long histories), half anyone.
        let p = if i % 2 == 0 {
            rng.below(500) as usize
        } else {
            rng.below(stream.guids.len() as u64) as usize
        };
        let guid = &stream.guids[p];
        let t = Instant::now();
        q.player(guid).await.expect("player");
        let t1 = t.elapsed().as_secs_f64() * 1000.0;
        q.player_weapons(guid).await.expect("weapons");
        let t2 = t.elapsed().as_secs_f64() * 1000.0;
        q.player_matches(guid, 10).await.expect("matches");
        let t3 = t.elapsed().as_secs_f64() * 1000.0;
        totals.push(t1);
        weapons.push(t2 - t1);
        matches.push(t3 - t2);
        whole.push(t3);
    }
    println!("{name}: player totals:           {}", summary(&mut totals));
    println!("{name}: player weapons:          {}", summary(&mut weapons));
    println!("{name}: player matches:          {}", summary(&mut matches));
    println!("{name}: player profile (all 3):  {}", summary(&mut whole));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let end = opm_store::time::now_ms();
    let mut stream = Stream::new(a.events, a.players, a.servers, end);
    let sqlite_path = std::path::Path::new(&a.dir).join("analytics.sqlite");
    let (store, ch): (Arc<dyn AnalyticsStore>, Option<Arc<ClickHouseAnalytics>>) =
        match a.backend.as_str() {
            "sqlite" => {
                std::fs::create_dir_all(&a.dir).expect("bench directory");
                let s = SqliteAnalytics::open(&sqlite_path).await.expect("sqlite");
                (Arc::new(s), None)
            }
            "clickhouse" => {
                let config = ClickHouseConfig::parse(&format!("{}/opm_bench", a.clickhouse))
                    .expect("clickhouse url");
                let s = Arc::new(ClickHouseAnalytics::new(config).expect("clickhouse"));
                (s.clone(), Some(s))
            }
            other => panic!("unknown backend {other}"),
        };
    let name = a.backend.as_str();
    store.migrate().await.expect("migrate");
    let stored = store.raw_count().await.expect("raw count");
    if a.reuse && stored == a.events {
        println!("{name}: reusing {stored} stored events");
    } else {
        assert_eq!(stored, 0, "{name}: the store is not empty (use --reuse)");
        println!(
            "{name}: loading {} events ({} players, {} servers, a year ending now)",
            a.events, a.players, a.servers
        );
        let t = Instant::now();
        let small = a.small.min(a.events);
        let r1 = load(&store, &mut stream, small, 1000, a.flush_ms).await;
        println!("{name}: insert, writer 1 000-row batches: {r1:.0} rows/s over {small} events");
        let rest = stream.left();
        if rest > 0 {
            let r2 = load(&store, &mut stream, rest, a.batch_rows, a.flush_ms).await;
            println!(
                "{name}: insert, writer {}-row batches: {r2:.0} rows/s over {rest} events",
                a.batch_rows
            );
        }
        println!(
            "{name}: loaded {} events in {:.0} s ({} matches)",
            a.events,
            t.elapsed().as_secs_f64(),
            stream.matches
        );
        assert_eq!(store.raw_count().await.expect("raw count"), a.events);
    }
    if name == "sqlite" {
        let size: u64 = std::fs::read_dir(&a.dir)
            .expect("bench dir")
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!("{name}: files {:.2} GB", size as f64 / 1e9);
    }
    queries(name, store, &stream, a.samples).await;
    if !a.keep {
        if let Some(ch) = ch {
            ch.drop_database().await.expect("drop bench database");
        } else {
            std::fs::remove_dir_all(&a.dir).expect("remove bench directory");
        }
    }
}
