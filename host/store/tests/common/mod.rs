//! Shared by the integration suite: a deterministic event generator, an
//! independent recount of what the rollups must say, the per-run backend
//! setups (embedded, and ClickHouse + PostgreSQL + Redis when reachable),
//! and a TCP proxy that takes ClickHouse "down" for the outage tests.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use opm_model::{Event, EventKind, Participant, Team, Vec3};
use opm_store::analytics::clickhouse::{ClickHouseAnalytics, ClickHouseConfig};
use opm_store::live::redis::RedisLive;
use opm_store::{StoreConfig, Stores};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const CLICKHOUSE: &str = "http://127.0.0.1:8123";
pub const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS: &str = "redis://127.0.0.1:6379/0";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

pub fn clickhouse_base() -> String {
    env_or("OPM_TEST_CLICKHOUSE", CLICKHOUSE)
}

pub fn unique(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "opm_test_{tag}_{}_{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

// ---------------------------------------------------------------- generator

/// xorshift64*: deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

pub const PLAYERS: usize = 16;
const MAPS: &[&str] = &["mohdm1", "mohdm2", "obj_team2"];
const WEAPONS: &[&str] = &[
    "Thompson",
    "MP40",
    "Kar98K",
    "M1 Garand",
    "Frag Grenade",
    "Colt 45",
];
const HITLOCS: &[&str] = &["head", "helmet", "torso_upper", "left_arm", "right_leg", ""];

fn player(rng: &mut Rng, i: usize) -> Participant {
    let mut p = Participant::new(format!("guid-{i:02}"));
    // Now and then an event arrives without the name: the stored name must
    // still be the last non-empty one.
    if !rng.chance(10) {
        p.name = format!("Soldier {i}").into();
    }
    p.team = if i.is_multiple_of(2) {
        Team::Allies
    } else {
        Team::Axis
    };
    if rng.chance(80) {
        p.position = Some(Vec3 {
            x: rng.below(4000) as f32 - 2000.0 + 0.25,
            y: rng.below(4000) as f32 - 2000.0 + 0.5,
            z: rng.below(300) as f32,
        });
    }
    p
}

/// `n` events over two servers, spread evenly over the `days` days before
/// `end_ms`, ids increasing per server from 1.
pub fn stream(n: usize, seed: u64, end_ms: i64, days: i64) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    let servers = ["srv-a", "srv-b"];
    let mut next_id = [0u64; 2];
    let mut matches = [(0u32, *rng.pick(MAPS), 1u32), (0u32, *rng.pick(MAPS), 1u32)];
    let span = days * 86_400_000;
    let start = end_ms - span;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let s = rng.below(2) as usize;
        next_id[s] += 1;
        if rng.chance(1) {
            matches[s] = (matches[s].0 + 1, *rng.pick(MAPS), 1);
        } else if rng.chance(2) {
            matches[s].2 += 1;
        }
        let roll = rng.below(100);
        let kind = match roll {
            0..20 => EventKind::PlayerKill,
            20..35 => EventKind::Damage,
            35..60 => EventKind::WeaponFire,
            60..72 => EventKind::WeaponHit,
            72..80 => EventKind::Jump,
            80..85 => EventKind::Distance,
            85..88 => EventKind::Reload,
            88..90 => EventKind::PlayerSuicide,
            90..92 => EventKind::PlayerTeamkill,
            92..94 => EventKind::Disconnect,
            94..96 => EventKind::Connect,
            _ => EventKind::Chat,
        };
        let mut e = Event::new(kind);
        e.id = next_id[s];
        e.server = servers[s].into();
        e.time_ms = start + (i as i64 * span) / n as i64;
        e.session = format!("{}-sess", servers[s]).into();
        e.match_id = format!("{}-m{}", servers[s], matches[s].0).into();
        e.map = matches[s].1.into();
        e.game_mode = "dm".into();
        e.round = matches[s].2;
        let a = rng.below(PLAYERS as u64) as usize;
        let mut t = rng.below(PLAYERS as u64) as usize;
        if t == a {
            t = (t + 1) % PLAYERS;
        }
        e.actor = Some(player(&mut rng, a));
        match kind {
            EventKind::PlayerKill => {
                e.weapon = (*rng.pick(WEAPONS)).into();
                e.hit_location = (*rng.pick(HITLOCS)).into();
                e.means_of_death = "MOD_BULLET".into();
                let r = rng.below(100);
                if r < 5 {
                    // self-kill
                    e.target = e.actor.clone();
                } else if r < 10 {
                    // killed by the world
                    e.target = Some(player(&mut rng, t));
                    e.actor = None;
                } else {
                    e.target = Some(player(&mut rng, t));
                }
                e.damage = 100.0;
            }
            EventKind::Damage | EventKind::WeaponHit => {
                e.weapon = (*rng.pick(WEAPONS)).into();
                e.hit_location = (*rng.pick(HITLOCS)).into();
                e.target = Some(player(&mut rng, t));
                e.damage = (rng.below(1000) as f32) / 8.0;
            }
            EventKind::WeaponFire | EventKind::Reload => e.weapon = (*rng.pick(WEAPONS)).into(),
            EventKind::PlayerTeamkill => e.target = Some(player(&mut rng, t)),
            EventKind::Distance => {
                e.extra = vec![
                    ("distance".into(), "99999".into()),
                    (
                        "walked".into(),
                        format!("{}", rng.below(2000) as f64 / 4.0).into(),
                    ),
                ]
            }
            EventKind::Disconnect => {
                e.extra = vec![("playtime".into(), format!("{}", rng.below(3600)).into())]
            }
            EventKind::Chat => e.extra = vec![("message".into(), "gg 'quoted' \\ back".into())],
            _ => {}
        }
        e.raw = Some(format!("{{\"type\":\"{}\",\"seq\":{i}}}", kind.as_str()).into());
        out.push(e);
    }
    out
}

// ---------------------------------------------------------------- recount

/// Per-player totals counted straight from the events.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub name: String,
    pub name_ms: i64,
    pub kills: u64,
    pub deaths: u64,
    pub headshots: u64,
    pub suicides: u64,
    pub team_kills: u64,
    pub damage_dealt: f64,
    pub damage_taken: f64,
    pub shots_fired: u64,
    pub shots_hit: u64,
    pub jumps: u64,
    pub reloads: u64,
    pub distance: f64,
    pub playtime: f64,
    pub weapon_kills: BTreeMap<String, u64>,
    pub matches: std::collections::BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct Recount {
    pub players: BTreeMap<String, Tally>,
    /// match -> player -> (kills, deaths)
    pub scoreboards: BTreeMap<String, BTreeMap<String, (u64, u64)>>,
    /// map -> kills with a killer position
    pub kill_cells: BTreeMap<String, u64>,
}

/// Counts the events whose day (`YYYY-MM-DD`) lies in `days` (inclusive),
/// or all of them.
pub fn recount(events: &[Event], days: Option<(&str, &str)>) -> Recount {
    let mut r = Recount::default();
    // Replays and duplicates must not count: one event per (server, id).
    let mut seen = std::collections::HashSet::new();
    for e in events {
        if !seen.insert((e.server.to_string(), e.id)) {
            continue;
        }
        if let Some((first, last)) = days {
            let day = opm_store::time::day_string(e.time_ms);
            if day.as_str() < first || day.as_str() > last {
                continue;
            }
        }
        let a = e
            .actor
            .as_ref()
            .map(|p| p.guid.to_string())
            .unwrap_or_default();
        let t = e
            .target
            .as_ref()
            .map(|p| p.guid.to_string())
            .unwrap_or_default();
        let touch = |r: &mut Recount, p: &Participant| {
            let tl = r.players.entry(p.guid.to_string()).or_default();
            if !p.name.is_empty() && e.time_ms > tl.name_ms {
                tl.name = p.name.to_string();
                tl.name_ms = e.time_ms;
            }
            if !e.match_id.is_empty() {
                tl.matches.insert(e.match_id.to_string());
                r.scoreboards
                    .entry(e.match_id.to_string())
                    .or_default()
                    .entry(p.guid.to_string())
                    .or_default();
            }
        };
        if let Some(p) = e.actor.as_ref() {
            touch(&mut r, p);
        }
        if let Some(p) = e.target.as_ref().filter(|p| p.guid != a) {
            touch(&mut r, p);
        }
        match e.kind {
            EventKind::PlayerKill if !a.is_empty() && t != a => {
                let k = r.players.get_mut(&a).unwrap();
                k.kills += 1;
                if matches!(&*e.hit_location, "head" | "helmet") {
                    k.headshots += 1;
                }
                *k.weapon_kills.entry(e.weapon.to_string()).or_default() += 1;
                r.players.get_mut(&t).unwrap().deaths += 1;
                let sb = r.scoreboards.get_mut(&*e.match_id).unwrap();
                sb.get_mut(&a).unwrap().0 += 1;
                sb.get_mut(&t).unwrap().1 += 1;
                if e.actor.as_ref().unwrap().position.is_some() {
                    *r.kill_cells.entry(e.map.to_string()).or_default() += 1;
                }
            }
            EventKind::PlayerKill => {
                // self-kill (t == a) or world kill (no actor): a suicide
                let victim = if a.is_empty() { t.clone() } else { a.clone() };
                let v = r.players.get_mut(&victim).unwrap();
                v.deaths += 1;
                v.suicides += 1;
                r.scoreboards
                    .get_mut(&*e.match_id)
                    .unwrap()
                    .get_mut(&victim)
                    .unwrap()
                    .1 += 1;
            }
            EventKind::PlayerSuicide => r.players.get_mut(&a).unwrap().suicides += 1,
            EventKind::PlayerTeamkill => r.players.get_mut(&a).unwrap().team_kills += 1,
            EventKind::Damage => {
                r.players.get_mut(&a).unwrap().damage_dealt += e.damage as f64;
                r.players.get_mut(&t).unwrap().damage_taken += e.damage as f64;
            }
            EventKind::WeaponFire => r.players.get_mut(&a).unwrap().shots_fired += 1,
            EventKind::WeaponHit => r.players.get_mut(&a).unwrap().shots_hit += 1,
            EventKind::Jump => r.players.get_mut(&a).unwrap().jumps += 1,
            EventKind::Reload => r.players.get_mut(&a).unwrap().reloads += 1,
            EventKind::Distance => {
                r.players.get_mut(&a).unwrap().distance +=
                    e.extra("walked").unwrap().parse::<f64>().unwrap()
            }
            EventKind::Disconnect => {
                r.players.get_mut(&a).unwrap().playtime +=
                    e.extra("playtime").unwrap().parse::<f64>().unwrap()
            }
            _ => {}
        }
    }
    r
}

pub fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

// ---------------------------------------------------------------- backends

/// One set of stores under test, and how to tidy up after it.
pub struct Backend {
    pub name: &'static str,
    pub stores: Stores,
    pub config: StoreConfig,
    _dir: tempfile::TempDir,
    ch_database: Option<String>,
    pg_database: Option<String>,
    redis_prefix: Option<String>,
}

pub async fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::embedded(dir.path());
    let stores = Stores::open(&config).await.expect("embedded stores open");
    Backend {
        name: "embedded",
        stores,
        config,
        _dir: dir,
        ch_database: None,
        pg_database: None,
        redis_prefix: None,
    }
}

async fn reachable_clickhouse(base: &str) -> bool {
    reqwest::Client::new()
        .get(format!("{base}/?query=SELECT%201"))
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

async fn pg_admin() -> Option<sqlx::PgPool> {
    let url = env_or("OPM_TEST_POSTGRES", POSTGRES);
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(&url)
        .await
        .ok()
}

fn pg_url_for(db: &str) -> String {
    let base = env_or("OPM_TEST_POSTGRES", POSTGRES);
    let cut = base.rfind('/').unwrap();
    format!("{}/{db}", &base[..cut])
}

/// ClickHouse + PostgreSQL + Redis, each isolated for this run; `None`
/// (with a loud message) if any is unreachable.
pub async fn external(tag: &str) -> Option<Backend> {
    let ch = clickhouse_base();
    let redis_url = env_or("OPM_TEST_REDIS", REDIS);
    let ch_ok = reachable_clickhouse(&ch).await;
    let admin = pg_admin().await;
    let redis_ok = match redis::Client::open(redis_url.as_str()) {
        Ok(c) => tokio::time::timeout(
            std::time::Duration::from_secs(3),
            c.get_multiplexed_async_connection(),
        )
        .await
        .is_ok_and(|r| r.is_ok()),
        Err(_) => false,
    };
    if !ch_ok || admin.is_none() || !redis_ok {
        // CI sets this: there a missing service is a failure, not a skip.
        let required =
            std::env::var("OPM_REQUIRE_SERVICES").is_ok_and(|v| !v.is_empty() && v != "0");
        assert!(
            !required,
            "OPM_REQUIRE_SERVICES is set but clickhouse {ch_ok}, postgres {}, redis {redis_ok}",
            admin.is_some()
        );
        eprintln!(
            "\n!!!!!!!! SKIPPING the ClickHouse/PostgreSQL/Redis half of `{tag}`: clickhouse {} ({ch}), postgres {}, redis {} ({redis_url}).\n\
             !!!!!!!! Start them (bash .ci/clickhouse.sh; see /work/shared/design/services-here.md) to run it.\n",
            if ch_ok { "up" } else { "DOWN" },
            if admin.is_some() { "up" } else { "DOWN" },
            if redis_ok { "up" } else { "DOWN" },
        );
        return None;
    }
    let name = unique(tag);
    let admin = admin.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::embedded(dir.path());
    config.clickhouse_url = Some(format!("{ch}/{name}"));
    config.database_url = Some(pg_url_for(&name));
    config.redis_url = Some(redis_url);
    config.key_prefix = format!("{name}:");
    let stores = Stores::open(&config).await.expect("external stores open");
    Some(Backend {
        name: "clickhouse+postgres+redis",
        stores,
        config,
        _dir: dir,
        ch_database: Some(name.clone()),
        pg_database: Some(name.clone()),
        redis_prefix: Some(format!("{name}:")),
    })
}

impl Backend {
    /// Drops this run's ClickHouse database, PostgreSQL database and
    /// Redis keys.
    pub async fn cleanup(self) {
        let Backend {
            stores,
            config,
            ch_database,
            pg_database,
            redis_prefix,
            ..
        } = self;
        drop(stores);
        if ch_database.is_some() {
            let ch = ClickHouseAnalytics::new(
                ClickHouseConfig::parse(config.clickhouse_url.as_deref().unwrap()).unwrap(),
            )
            .unwrap();
            ch.drop_database().await.unwrap();
        }
        if let Some(prefix) = redis_prefix {
            let live = RedisLive::connect(config.redis_url.as_deref().unwrap(), &prefix)
                .await
                .unwrap();
            live.purge().await.unwrap();
        }
        if let Some(db) = pg_database {
            let admin = pg_admin().await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"
            )))
            .execute(&admin)
            .await
            .unwrap();
        }
    }
}

// ---------------------------------------------------------------- outage proxy

pub const FORWARD: u8 = 0;
/// Accept and close at once: the store is unreachable.
pub const REFUSE: u8 = 1;
/// Forward the request, swallow the reply: the write lands but its
/// acknowledgement is lost.
pub const LOSE_REPLY: u8 = 2;

/// A TCP proxy in front of a real server whose behaviour can be switched.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    pub mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(FORWARD));
        let m = mode.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let m = m.clone();
                tokio::spawn(async move { relay(client, upstream, m).await });
            }
        });
        Proxy { addr, mode, task }
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

async fn relay(client: TcpStream, upstream: std::net::SocketAddr, mode: Arc<AtomicU8>) {
    if mode.load(Ordering::SeqCst) == REFUSE {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let m1 = mode.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if m1.load(Ordering::SeqCst) == REFUSE || sw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match sr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if mode.load(Ordering::SeqCst) != FORWARD || cw.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}

/// ClickHouse's address, for the proxy.
pub async fn clickhouse_addr() -> std::net::SocketAddr {
    let base = clickhouse_base();
    let u = reqwest::Url::parse(&base).unwrap();
    let host = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap_or(8123));
    tokio::net::lookup_host(host).await.unwrap().next().unwrap()
}

pub fn by_server_max(events: &[Event]) -> BTreeMap<String, u64> {
    let mut m: HashMap<String, u64> = HashMap::new();
    for e in events {
        let s = m.entry(e.server.to_string()).or_default();
        *s = (*s).max(e.id);
    }
    m.into_iter().collect()
}
