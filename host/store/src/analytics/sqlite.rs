//! SQLite analytics backend: raw events and the rollups in one file,
//! rollups maintained in Rust inside the insert's transaction.
//!
//! Exactly-once: raw rows and rollup deltas commit together, the delta is
//! built only from rows this transaction inserted, and ids at or below the
//! server's high-water mark are skipped. A crash before COMMIT leaves
//! nothing; a replay after COMMIT finds the ids already stored.
//!
//! Writes go through one dedicated connection (its page cache stays warm
//! across batches: SQLite drops a connection's cache whenever another
//! connection has written) and reads through a small pool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use opm_model::{Event, Participant};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{AssertSqlSafe, Column, Connection, Row as _, TypeInfo, ValueRef};
use tokio::sync::Mutex;

use super::rows::{self, Contribution, Role};
use super::{AnalyticsStore, Dialect, InsertReport, Row};
use crate::error::StoreError;
use crate::time;

const B: &str = "sqlite";
/// Applied in order on every open; each is idempotent.
const SCHEMA: &[&str] = &[
    include_str!("../../../../migrations/analytics-sqlite/001_raw_and_rollups.sql"),
    include_str!("../../../../migrations/analytics-sqlite/002_period_leaderboards.sql"),
];

/// Rows inserted without a `sync` after which `insert` checkpoints by
/// itself, so the write-ahead log stays bounded for callers that never
/// flush (the batch writer syncs on every flush).
const AUTO_SYNC_ROWS: u64 = 200_000;

fn err(e: sqlx::Error) -> StoreError {
    StoreError::sqlx(B, e)
}

pub struct SqliteAnalytics {
    pool: SqlitePool,
    writer: Mutex<SqliteConnection>,
    /// Rows committed since the last checkpoint.
    unsynced: AtomicU64,
}

impl SqliteAnalytics {
    pub async fn open(path: &Path) -> Result<SqliteAnalytics, StoreError> {
        let writer = crate::sqlite::open_writer(path).await?;
        Ok(SqliteAnalytics {
            pool: crate::sqlite::open(path, 4).await?,
            writer: Mutex::new(writer),
            unsynced: AtomicU64::new(0),
        })
    }

    /// Copies the write-ahead log into the database file (fsyncing both)
    /// as far as readers allow; see [`AnalyticsStore::sync`].
    async fn checkpoint(&self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        let (busy, _log, _done): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?;
        if busy != 0 {
            tracing::debug!("analytics checkpoint could not take its lock; next sync retries");
        }
        self.unsynced.store(0, Ordering::Relaxed);
        Ok(())
    }
}

/// Per-batch rollup deltas, keyed like the rollup tables.
#[derive(Default)]
struct Deltas {
    player_daily: HashMap<(String, String), (Named, u64, Contribution)>,
    weapon: HashMap<(String, String, String), [f64; 7]>,
    map: HashMap<(String, String, String), [f64; 5]>,
    hitloc: HashMap<(String, String, String), [f64; 7]>,
    heat: HashMap<(String, String, &'static str, i32, i32), u64>,
    map_daily: HashMap<(String, String), [f64; 4]>,
    matches: HashMap<String, MatchDelta>,
    match_players: HashMap<(String, String), (Named, Named, [f64; 8])>,
    activity: HashMap<(String, String), [u64; 2]>,
}

/// A value with the time it was seen; the later non-empty one wins.
#[derive(Default, Clone)]
struct Named {
    value: String,
    ms: i64,
}

impl Named {
    fn offer(&mut self, value: &str, ms: i64) {
        let ms = if value.is_empty() { 0 } else { ms };
        if ms > self.ms {
            self.value = value.to_string();
            self.ms = ms;
        }
    }
}

struct MatchDelta {
    server: String,
    map: String,
    game_type: String,
    started: i64,
    ended: i64,
    max_round: u32,
    events: u64,
    kills: u64,
}

fn add_contribution(into: &mut Contribution, c: &Contribution) {
    into.kills += c.kills;
    into.deaths += c.deaths;
    into.headshots += c.headshots;
    into.suicides += c.suicides;
    into.team_kills += c.team_kills;
    into.bash_kills += c.bash_kills;
    into.grenade_kills += c.grenade_kills;
    into.bot_kills += c.bot_kills;
    into.damage_dealt += c.damage_dealt;
    into.damage_taken += c.damage_taken;
    into.shots_fired += c.shots_fired;
    into.shots_hit += c.shots_hit;
    into.jumps += c.jumps;
    into.reloads += c.reloads;
    into.distance += c.distance;
    into.playtime_seconds += c.playtime_seconds;
}

fn add<const N: usize>(into: &mut [f64; N], v: [f64; N]) {
    for (a, b) in into.iter_mut().zip(v) {
        *a += b;
    }
}

impl Deltas {
    fn add(&mut self, e: &Event) {
        use opm_model::EventKind as K;
        let day = time::day_string(e.time_ms);
        let kill = rows::is_kill(e);
        let headshot = kill && rows::is_headshot(&e.hit_location);
        for (role, p) in rows::roles(e) {
            let c = Contribution::of(e, role);
            let player = p.guid.to_string();
            let slot = self
                .player_daily
                .entry((day.clone(), player.clone()))
                .or_default();
            slot.0.offer(&p.name, e.time_ms);
            slot.1 += 1;
            add_contribution(&mut slot.2, &c);

            let weapon_kinds = matches!(
                e.kind,
                K::PlayerKill | K::WeaponFire | K::WeaponHit | K::Damage
            );
            if !e.weapon.is_empty() {
                let row = match role {
                    Role::Actor if weapon_kinds => Some([
                        1.0,
                        c.kills as f64,
                        0.0,
                        c.headshots as f64,
                        c.shots_fired as f64,
                        c.shots_hit as f64,
                        c.damage_dealt,
                    ]),
                    Role::Target if e.kind == K::PlayerKill => {
                        Some([1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0])
                    }
                    _ => None,
                };
                if let Some(row) = row {
                    add(
                        self.weapon
                            .entry((day.clone(), player.clone(), e.weapon.to_string()))
                            .or_insert([0.0; 7]),
                        row,
                    );
                }
            }
            if !e.map.is_empty() {
                let row = match role {
                    Role::Actor => [
                        1.0,
                        c.kills as f64,
                        c.deaths as f64,
                        c.headshots as f64,
                        c.damage_dealt,
                    ],
                    Role::Target => [1.0, 0.0, c.deaths as f64, 0.0, 0.0],
                };
                add(
                    self.map
                        .entry((day.clone(), player.clone(), e.map.to_string()))
                        .or_insert([0.0; 5]),
                    row,
                );
            }
            if !e.hit_location.is_empty()
                && matches!(e.kind, K::PlayerKill | K::WeaponHit | K::Damage)
            {
                let hit = (e.kind == K::WeaponHit) as u64 as f64;
                let row = match role {
                    Role::Actor => [1.0, hit, c.kills as f64, c.damage_dealt, 0.0, 0.0, 0.0],
                    Role::Target => [1.0, 0.0, 0.0, 0.0, hit, c.deaths as f64, c.damage_taken],
                };
                add(
                    self.hitloc
                        .entry((day.clone(), player.clone(), e.hit_location.to_string()))
                        .or_insert([0.0; 7]),
                    row,
                );
            }
            if !e.match_id.is_empty() {
                let slot = self
                    .match_players
                    .entry((e.match_id.to_string(), player))
                    .or_insert_with(|| (Named::default(), Named::default(), [0.0; 8]));
                slot.0.offer(&p.name, e.time_ms);
                slot.1.offer(p.team.as_str(), e.time_ms);
                add(
                    &mut slot.2,
                    [
                        1.0,
                        c.kills as f64,
                        c.deaths as f64,
                        c.headshots as f64,
                        c.suicides as f64,
                        c.team_kills as f64,
                        c.damage_dealt,
                        c.damage_taken,
                    ],
                );
            }
        }
        if kill {
            for (layer, p) in [("kill", &e.actor), ("death", &e.target)] {
                if let Some(pos) = p.as_ref().and_then(|p| p.position) {
                    *self
                        .heat
                        .entry((
                            day.clone(),
                            e.map.to_string(),
                            layer,
                            rows::cell(pos.x),
                            rows::cell(pos.y),
                        ))
                        .or_default() += 1;
                }
            }
        }
        let dealt = if e.kind == K::Damage && rows::guid(&e.target) != rows::guid(&e.actor) {
            e.damage as f64
        } else {
            0.0
        };
        if !e.map.is_empty() {
            add(
                self.map_daily
                    .entry((day.clone(), e.map.to_string()))
                    .or_insert([0.0; 4]),
                [1.0, kill as u64 as f64, headshot as u64 as f64, dealt],
            );
        }
        if !e.match_id.is_empty() {
            let m = self
                .matches
                .entry(e.match_id.to_string())
                .or_insert_with(|| MatchDelta {
                    server: String::new(),
                    map: String::new(),
                    game_type: String::new(),
                    started: e.time_ms,
                    ended: e.time_ms,
                    max_round: 0,
                    events: 0,
                    kills: 0,
                });
            m.server = m.server.clone().max(e.server.to_string());
            m.map = m.map.clone().max(e.map.to_string());
            m.game_type = m.game_type.clone().max(e.game_mode.to_string());
            m.started = m.started.min(e.time_ms);
            m.ended = m.ended.max(e.time_ms);
            m.max_round = m.max_round.max(e.round);
            m.events += 1;
            m.kills += kill as u64;
        }
        if !e.server.is_empty() {
            let a = self
                .activity
                .entry((time::hour_string(e.time_ms), e.server.to_string()))
                .or_default();
            a[0] += 1;
            a[1] += kill as u64;
        }
    }
}

/// A bound value of a generated multi-row statement.
enum V {
    I(i64),
    F(f64),
    S(String),
    NI(Option<i64>),
}

/// SQLite accepts 32 766 parameters per statement; stay below.
const MAX_PARAMS: usize = 30_000;
/// Most rows one statement carries.
const MAX_ROWS: usize = 512;

/// Runs `INSERT INTO {head} VALUES (…),(…) {tail}` over `rows`: one
/// multi-row statement per table per batch instead of one per row. The
/// rows go in chunks of power-of-two sizes (512, then the binary digits of
/// the rest), so each table has at most ten distinct statements and every
/// one of them stays prepared in the connection's statement cache.
async fn insert_many(
    conn: &mut SqliteConnection,
    head: &str,
    tail: &str,
    rows: Vec<Vec<V>>,
) -> Result<u64, StoreError> {
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(0);
    };
    let one = format!("({})", vec!["?"; width].join(","));
    let mut largest = MAX_ROWS;
    while largest > 1 && largest * width > MAX_PARAMS {
        largest /= 2;
    }
    let mut affected = 0;
    let mut left = rows.len();
    let mut rows = rows.into_iter();
    while left > 0 {
        let n = if left >= largest {
            largest
        } else {
            1 << left.ilog2()
        };
        left -= n;
        let sql = format!(
            "INSERT INTO {head} VALUES {} {tail}",
            vec![one.as_str(); n].join(",")
        );
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for row in rows.by_ref().take(n) {
            for v in row {
                q = match v {
                    V::I(x) => q.bind(x),
                    V::F(x) => q.bind(x),
                    V::S(x) => q.bind(x),
                    V::NI(x) => q.bind(x),
                };
            }
        }
        affected += q.execute(&mut *conn).await.map_err(err)?.rows_affected();
    }
    Ok(affected)
}

fn participant_values(out: &mut Vec<V>, p: &Option<Participant>) {
    let d = Participant::default();
    let p = p.as_ref().unwrap_or(&d);
    let pos = p.position.unwrap_or_default();
    out.extend([
        V::S(p.guid.to_string()),
        V::S(p.name.to_string()),
        V::I(p.smf_id.unwrap_or(0) as i64),
        V::S(p.team.as_str().to_string()),
        V::I(p.position.is_some() as i64),
        V::F(pos.x as f64),
        V::F(pos.y as f64),
        V::F(pos.z as f64),
        V::F(p.pitch as f64),
        V::F(p.yaw as f64),
        V::S(p.stance.as_str().to_string()),
        V::NI(p.health.map(|h| h as i64)),
        V::I(p.life as i64),
    ]);
}

fn raw_values(e: &Event) -> Vec<V> {
    let extra = serde_json::to_string(
        &e.extra
            .iter()
            .map(|(k, v)| [&**k, &**v])
            .collect::<Vec<_>>(),
    )
    .unwrap_or_else(|_| "[]".into());
    let mut v = Vec::with_capacity(49);
    v.extend([
        V::S(e.server.to_string()),
        V::I(e.id as i64),
        V::I(time::month_id(e.time_ms) as i64),
        V::I(e.time_ms),
        V::S(e.kind.as_str().to_string()),
        V::S(e.type_name.to_string()),
        V::NI(e.game_time_ms),
        V::S(e.session.to_string()),
        V::S(e.match_id.to_string()),
        V::I(e.round as i64),
        V::S(e.map.to_string()),
        V::S(e.game_mode.to_string()),
    ]);
    participant_values(&mut v, &e.actor);
    participant_values(&mut v, &e.target);
    v.extend([
        V::S(e.weapon.to_string()),
        V::S(e.means_of_death.to_string()),
        V::S(e.hit_location.to_string()),
        V::F(e.damage as f64),
        V::F(e.distance as f64),
        V::I((rows::is_kill(e) && rows::is_headshot(&e.hit_location)) as i64),
        V::I(rows::is_grenade(e) as i64),
        V::F(rows::moved(e)),
        V::F(rows::playtime(e)),
        V::S(extra),
        V::S(e.raw.as_deref().unwrap_or("").to_string()),
    ]);
    v
}

const RAW_HEAD: &str = "raw_events (server, event_id, month, time_ms, kind, type_name, game_time_ms, session, match_id, round, map, game_mode,
    actor_guid, actor_name, actor_smf_id, actor_team, actor_has_pos, actor_x, actor_y, actor_z, actor_pitch, actor_yaw, actor_stance, actor_health, actor_life,
    target_guid, target_name, target_smf_id, target_team, target_has_pos, target_x, target_y, target_z, target_pitch, target_yaw, target_stance, target_health, target_life,
    weapon, means_of_death, hit_location, damage, distance, headshot, grenade, moved, playtime, extra, raw)";

fn u(x: f64) -> V {
    V::I(x as i64)
}

/// The leaderboard buckets a `YYYY-MM-DD` day falls in: all time, the
/// day, its ISO week (Monday), month and year, each named by its first day.
fn period_buckets(day: &str) -> [(&'static str, String); 5] {
    let part = |r: std::ops::Range<usize>| day.get(r).and_then(|p| p.parse::<u32>().ok());
    let week = match (part(0..4), part(5..7), part(8..10)) {
        (Some(y), Some(m), Some(d)) => {
            time::week_start_string(time::days_from_civil(y as i64, m, d) * 86_400_000)
        }
        _ => day.to_string(),
    };
    [
        ("all", String::new()),
        ("day", day.to_string()),
        ("week", week),
        ("month", format!("{}-01", day.get(..7).unwrap_or(day))),
        ("year", format!("{}-01-01", day.get(..4).unwrap_or(day))),
    ]
}

/// `player_period_stats` rows from the per-day player deltas: the same
/// counts summed into every period bucket each day belongs to.
fn period_rows(daily: &HashMap<(String, String), (Named, u64, Contribution)>) -> Vec<Vec<V>> {
    let mut periods: HashMap<(&'static str, String, &str), (Named, [f64; 7])> = HashMap::new();
    for ((day, player), (name, events, c)) in daily {
        for (period, bucket) in period_buckets(day) {
            let slot = periods
                .entry((period, bucket, player.as_str()))
                .or_insert_with(|| (Named::default(), [0.0; 7]));
            slot.0.offer(&name.value, name.ms);
            add(
                &mut slot.1,
                [
                    *events as f64,
                    c.kills as f64,
                    c.deaths as f64,
                    c.headshots as f64,
                    c.shots_fired as f64,
                    c.shots_hit as f64,
                    c.damage_dealt,
                ],
            );
        }
    }
    periods
        .into_iter()
        .map(|((period, bucket, player), (name, v))| {
            vec![
                V::S(period.to_string()),
                V::S(bucket),
                V::S(player.to_string()),
                V::S(name.value),
                V::I(name.ms),
                u(v[0]),
                u(v[1]),
                u(v[2]),
                u(v[3]),
                u(v[4]),
                u(v[5]),
                V::F(v[6]),
            ]
        })
        .collect()
}

async fn apply(tx: &mut SqliteConnection, d: Deltas) -> Result<(), StoreError> {
    insert_many(
        tx,
        "player_period_stats (period, bucket, player_id, player_name, name_ms, events, kills, deaths, headshots,
            shots_fired, shots_hit, damage_dealt)",
        "ON CONFLICT (period, bucket, player_id) DO UPDATE SET
            player_name = CASE WHEN excluded.name_ms > name_ms THEN excluded.player_name ELSE player_name END,
            name_ms = max(name_ms, excluded.name_ms),
            events = events + excluded.events, kills = kills + excluded.kills, deaths = deaths + excluded.deaths,
            headshots = headshots + excluded.headshots, shots_fired = shots_fired + excluded.shots_fired,
            shots_hit = shots_hit + excluded.shots_hit, damage_dealt = damage_dealt + excluded.damage_dealt",
        period_rows(&d.player_daily),
    )
    .await?;
    let rows = d
        .player_daily
        .into_iter()
        .map(|((day, player), (name, events, c))| {
            vec![
                V::S(day),
                V::S(player),
                V::S(name.value),
                V::I(name.ms),
                V::I(events as i64),
                V::I(c.kills as i64),
                V::I(c.deaths as i64),
                V::I(c.headshots as i64),
                V::I(c.suicides as i64),
                V::I(c.team_kills as i64),
                V::I(c.bash_kills as i64),
                V::I(c.grenade_kills as i64),
                V::I(c.bot_kills as i64),
                V::F(c.damage_dealt),
                V::F(c.damage_taken),
                V::I(c.shots_fired as i64),
                V::I(c.shots_hit as i64),
                V::I(c.jumps as i64),
                V::I(c.reloads as i64),
                V::F(c.distance),
                V::F(c.playtime_seconds),
            ]
        })
        .collect();
    insert_many(
        tx,
        "player_stats_daily (day, player_id, player_name, name_ms, events, kills, deaths, headshots, suicides, team_kills,
            bash_kills, grenade_kills, bot_kills, damage_dealt, damage_taken, shots_fired, shots_hit, jumps, reloads, distance, playtime_seconds)",
        "ON CONFLICT (player_id, day) DO UPDATE SET
            player_name = CASE WHEN excluded.name_ms > name_ms THEN excluded.player_name ELSE player_name END,
            name_ms = max(name_ms, excluded.name_ms),
            events = events + excluded.events, kills = kills + excluded.kills, deaths = deaths + excluded.deaths,
            headshots = headshots + excluded.headshots, suicides = suicides + excluded.suicides,
            team_kills = team_kills + excluded.team_kills, bash_kills = bash_kills + excluded.bash_kills,
            grenade_kills = grenade_kills + excluded.grenade_kills, bot_kills = bot_kills + excluded.bot_kills,
            damage_dealt = damage_dealt + excluded.damage_dealt, damage_taken = damage_taken + excluded.damage_taken,
            shots_fired = shots_fired + excluded.shots_fired, shots_hit = shots_hit + excluded.shots_hit,
            jumps = jumps + excluded.jumps, reloads = reloads + excluded.reloads,
            distance = distance + excluded.distance, playtime_seconds = playtime_seconds + excluded.playtime_seconds",
        rows,
    )
    .await?;
    let rows = d
        .weapon
        .into_iter()
        .map(|((day, player, weapon), v)| {
            vec![
                V::S(day),
                V::S(player),
                V::S(weapon),
                u(v[0]),
                u(v[1]),
                u(v[2]),
                u(v[3]),
                u(v[4]),
                u(v[5]),
                V::F(v[6]),
            ]
        })
        .collect();
    insert_many(
        tx,
        "player_weapon_stats (day, player_id, weapon, events, kills, deaths, headshots, shots_fired, shots_hit, damage_dealt)",
        "ON CONFLICT (player_id, weapon, day) DO UPDATE SET events = events + excluded.events,
            kills = kills + excluded.kills, deaths = deaths + excluded.deaths, headshots = headshots + excluded.headshots,
            shots_fired = shots_fired + excluded.shots_fired, shots_hit = shots_hit + excluded.shots_hit,
            damage_dealt = damage_dealt + excluded.damage_dealt",
        rows,
    )
    .await?;
    let rows = d
        .map
        .into_iter()
        .map(|((day, player, map), v)| {
            vec![
                V::S(day),
                V::S(player),
                V::S(map),
                u(v[0]),
                u(v[1]),
                u(v[2]),
                u(v[3]),
                V::F(v[4]),
            ]
        })
        .collect();
    insert_many(
        tx,
        "player_map_stats (day, player_id, map_name, events, kills, deaths, headshots, damage_dealt)",
        "ON CONFLICT (player_id, map_name, day) DO UPDATE SET events = events + excluded.events,
            kills = kills + excluded.kills, deaths = deaths + excluded.deaths,
            headshots = headshots + excluded.headshots, damage_dealt = damage_dealt + excluded.damage_dealt",
        rows,
    )
    .await?;
    let rows = d
        .hitloc
        .into_iter()
        .map(|((day, player, loc), v)| {
            vec![
                V::S(day),
                V::S(player),
                V::S(loc),
                u(v[0]),
                u(v[1]),
                u(v[2]),
                V::F(v[3]),
                u(v[4]),
                u(v[5]),
                V::F(v[6]),
            ]
        })
        .collect();
    insert_many(
        tx,
        "player_hitloc_stats (day, player_id, hit_location, events, hits, kills, damage_dealt, hits_taken, deaths, damage_taken)",
        "ON CONFLICT (player_id, hit_location, day) DO UPDATE SET events = events + excluded.events,
            hits = hits + excluded.hits, kills = kills + excluded.kills, damage_dealt = damage_dealt + excluded.damage_dealt,
            hits_taken = hits_taken + excluded.hits_taken, deaths = deaths + excluded.deaths,
            damage_taken = damage_taken + excluded.damage_taken",
        rows,
    )
    .await?;
    let rows = d
        .heat
        .into_iter()
        .map(|((day, map, layer, x, y), n)| {
            vec![
                V::S(day),
                V::S(map),
                V::S(layer.to_string()),
                V::I(x as i64),
                V::I(y as i64),
                V::I(n as i64),
            ]
        })
        .collect();
    insert_many(
        tx,
        "heatmap_cells (day, map_name, layer, cell_x, cell_y, events)",
        "ON CONFLICT (map_name, layer, cell_x, cell_y, day) DO UPDATE SET events = events + excluded.events",
        rows,
    )
    .await?;
    let rows = d
        .map_daily
        .into_iter()
        .map(|((day, map), v)| vec![V::S(day), V::S(map), u(v[0]), u(v[1]), u(v[2]), V::F(v[3])])
        .collect();
    insert_many(
        tx,
        "map_stats_daily (day, map_name, events, kills, headshots, damage_dealt)",
        "ON CONFLICT (map_name, day) DO UPDATE SET events = events + excluded.events, kills = kills + excluded.kills,
            headshots = headshots + excluded.headshots, damage_dealt = damage_dealt + excluded.damage_dealt",
        rows,
    )
    .await?;
    let rows = d
        .matches
        .into_iter()
        .map(|(id, m)| {
            vec![
                V::S(id),
                V::S(m.server),
                V::S(m.map),
                V::S(m.game_type),
                V::I(m.started),
                V::I(m.ended),
                V::I(m.max_round as i64),
                V::I(m.events as i64),
                V::I(m.kills as i64),
            ]
        })
        .collect();
    insert_many(
        tx,
        "match_summary (match_id, server_id, map_name, game_type, started_ms, ended_ms, max_round, events, kills)",
        "ON CONFLICT (match_id) DO UPDATE SET server_id = max(server_id, excluded.server_id),
            map_name = max(map_name, excluded.map_name), game_type = max(game_type, excluded.game_type),
            started_ms = min(started_ms, excluded.started_ms), ended_ms = max(ended_ms, excluded.ended_ms),
            max_round = max(max_round, excluded.max_round), events = events + excluded.events, kills = kills + excluded.kills",
        rows,
    )
    .await?;
    let rows = d
        .match_players
        .into_iter()
        .map(|((match_id, player), (name, team, v))| {
            vec![
                V::S(match_id),
                V::S(player),
                V::S(name.value),
                V::I(name.ms),
                V::S(team.value),
                V::I(team.ms),
                u(v[0]),
                u(v[1]),
                u(v[2]),
                u(v[3]),
                u(v[4]),
                u(v[5]),
                V::F(v[6]),
                V::F(v[7]),
            ]
        })
        .collect();
    insert_many(
        tx,
        "match_players (match_id, player_id, player_name, name_ms, team, team_ms, events, kills, deaths, headshots,
            suicides, team_kills, damage_dealt, damage_taken)",
        "ON CONFLICT (match_id, player_id) DO UPDATE SET
            player_name = CASE WHEN excluded.name_ms > name_ms THEN excluded.player_name ELSE player_name END,
            name_ms = max(name_ms, excluded.name_ms),
            team = CASE WHEN excluded.team_ms > team_ms THEN excluded.team ELSE team END,
            team_ms = max(team_ms, excluded.team_ms),
            events = events + excluded.events, kills = kills + excluded.kills, deaths = deaths + excluded.deaths,
            headshots = headshots + excluded.headshots, suicides = suicides + excluded.suicides,
            team_kills = team_kills + excluded.team_kills, damage_dealt = damage_dealt + excluded.damage_dealt,
            damage_taken = damage_taken + excluded.damage_taken",
        rows,
    )
    .await?;
    let rows = d
        .activity
        .into_iter()
        .map(|((hour, server), v)| {
            vec![
                V::S(hour),
                V::S(server),
                V::I(v[0] as i64),
                V::I(v[1] as i64),
            ]
        })
        .collect();
    insert_many(
        tx,
        "server_activity (hour, server_id, events, kills)",
        "ON CONFLICT (server_id, hour) DO UPDATE SET events = events + excluded.events, kills = kills + excluded.kills",
        rows,
    )
    .await?;
    Ok(())
}

/// Decodes any SQLite result row into JSON by the values' runtime types.
pub(crate) fn row_to_json(row: &sqlx::sqlite::SqliteRow) -> Result<Row, StoreError> {
    let mut out = Row::new();
    for (i, col) in row.columns().iter().enumerate() {
        let raw = row.try_get_raw(i).map_err(err)?;
        let v = if raw.is_null() {
            Value::Null
        } else {
            match raw.type_info().name() {
                "INTEGER" | "BOOLEAN" => Value::from(row.try_get::<i64, _>(i).map_err(err)?),
                "REAL" | "NUMERIC" => Value::from(row.try_get::<f64, _>(i).map_err(err)?),
                "BLOB" => Value::from(
                    String::from_utf8_lossy(&row.try_get::<Vec<u8>, _>(i).map_err(err)?)
                        .into_owned(),
                ),
                _ => Value::from(row.try_get::<String, _>(i).map_err(err)?),
            }
        };
        out.insert(col.name().to_string(), v);
    }
    Ok(out)
}

#[async_trait]
impl AnalyticsStore for SqliteAnalytics {
    fn backend(&self) -> &'static str {
        B
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.writer.lock().await;
        for sql in SCHEMA {
            sqlx::raw_sql(*sql).execute(&mut *conn).await.map_err(err)?;
        }
        Ok(())
    }

    async fn insert(&self, events: &[Event]) -> Result<InsertReport, StoreError> {
        let mut order: Vec<&Event> = events.iter().collect();
        order.sort_by(|a, b| (&*a.server, a.id).cmp(&(&*b.server, b.id)));
        let mut conn = self.writer.lock().await;
        let mut tx = conn.begin().await.map_err(err)?;
        let mut marks: HashMap<String, u64> = HashMap::new();
        for e in &order {
            if !marks.contains_key(&*e.server) {
                let mark: Option<i64> =
                    sqlx::query_scalar("SELECT event_id FROM high_water WHERE server = $1")
                        .bind(e.server.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(err)?;
                marks.insert(e.server.to_string(), mark.unwrap_or(0) as u64);
            }
        }
        let mut report = InsertReport::default();
        let mut deltas = Deltas::default();
        let mut fresh: Vec<&Event> = Vec::with_capacity(order.len());
        for e in order {
            let mark = marks.get_mut(&*e.server).expect("loaded above");
            if e.id == 0 || e.id <= *mark {
                report.skipped += 1;
                continue;
            }
            *mark = e.id;
            fresh.push(e);
        }
        // Above the high-water mark, committed in the same transaction as
        // the rows, nothing can exist yet: a conflict here would mean the
        // invariant broke, and the plain INSERT fails the batch loudly.
        let rows = fresh.iter().map(|e| raw_values(e)).collect();
        report.inserted = insert_many(&mut tx, RAW_HEAD, "", rows).await?;
        for e in &fresh {
            deltas.add(e);
        }
        apply(&mut tx, deltas).await?;
        for (server, mark) in &marks {
            sqlx::query(
                "INSERT INTO high_water (server, event_id) VALUES ($1, $2)
                 ON CONFLICT (server) DO UPDATE SET event_id = max(event_id, excluded.event_id)",
            )
            .bind(server)
            .bind(*mark as i64)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        let unsynced =
            self.unsynced.fetch_add(report.inserted, Ordering::Relaxed) + report.inserted;
        if unsynced >= AUTO_SYNC_ROWS {
            // The batch is committed whatever happens here; a failed
            // checkpoint is retried by the next sync.
            if let Err(e) = self.checkpoint(&mut conn).await {
                tracing::warn!(error = %e, "analytics checkpoint failed; retried at the next sync");
            }
        }
        let mut high_water: Vec<(String, u64)> = marks.into_iter().collect();
        high_water.sort();
        report.high_water = high_water;
        Ok(report)
    }

    async fn sync(&self) -> Result<(), StoreError> {
        if self.unsynced.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        let mut conn = self.writer.lock().await;
        self.checkpoint(&mut conn).await
    }

    async fn high_water_marks(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT server, event_id FROM high_water ORDER BY server")
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        Ok(rows.into_iter().map(|(s, id)| (s, id as u64)).collect())
    }

    async fn fetch(&self, sql: &str) -> Result<Vec<Row>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
        rows.iter().map(row_to_json).collect()
    }

    async fn drop_raw_before(&self, cutoff_ms: i64) -> Result<Vec<u32>, StoreError> {
        let months: Vec<i64> =
            sqlx::query_scalar("SELECT DISTINCT month FROM raw_events ORDER BY month")
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
        let mut dropped = Vec::new();
        for m in months {
            let m = m as u32;
            if time::month_end_ms(m) <= cutoff_ms {
                let mut conn = self.writer.lock().await;
                sqlx::query("DELETE FROM raw_events WHERE month = $1")
                    .bind(m as i64)
                    .execute(&mut *conn)
                    .await
                    .map_err(err)?;
                // A month of deletions is a large WAL: fold it in now.
                self.checkpoint(&mut conn).await?;
                dropped.push(m);
            }
        }
        Ok(dropped)
    }

    async fn raw_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM raw_events")
            .fetch_one(&self.pool)
            .await
            .map_err(err)?;
        Ok(n as u64)
    }
}
