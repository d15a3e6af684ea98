//! ClickHouse analytics backend over plain HTTP (JSONEachRow), which works
//! on 18.16 and on modern servers alike. Rollups are fed by the
//! materialized views in `clickhouse/`.
//!
//! Exactly-once: materialized views fire on every inserted block, so a
//! re-insert would double the rollups even though ReplacingMergeTree
//! eventually collapses the raw rows. The backend therefore inserts only
//! ids above each server's high-water mark. The mark is the larger of the
//! `high_water` table (written after every successful insert, so it
//! survives retention dropping every partition) and `max(event_id)` in
//! `raw_events` (which covers a crash between the two writes); it is read
//! at start and again after any failed insert, because a failed HTTP
//! insert may still have been written.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use opm_model::{Event, Participant};
use parking_lot::Mutex;
use serde::Serialize;

use super::rows;
use super::{AnalyticsStore, Dialect, InsertReport, Row};
use crate::error::StoreError;
use crate::time;

const B: &str = "clickhouse";
const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "raw_events",
        include_str!("../../../../clickhouse/001_raw_events.sql"),
    ),
    (
        2,
        "rollups",
        include_str!("../../../../clickhouse/002_rollups.sql"),
    ),
    (
        3,
        "high_water",
        include_str!("../../../../clickhouse/003_high_water.sql"),
    ),
    (
        4,
        "period_leaderboards",
        include_str!("../../../../clickhouse/004_period_leaderboards.sql"),
    ),
];

/// Fills `player_period_stats` of a store that had events before the
/// table existed, from the daily rollup (which has every count it needs).
/// Runs once, while the table is empty and before its views exist, so no
/// event is counted twice.
const BACKFILL_PERIODS: &str = "INSERT INTO {db}.player_period_stats (period, bucket, player_id, player_name, events,
    kills, deaths, headshots, shots_fired, shots_hit, damage_dealt)
SELECT period, bucket, player_id, argMaxMergeState(player_name), sum(events), sum(kills), sum(deaths),
    sum(headshots), sum(shots_fired), sum(shots_hit), sum(damage_dealt)
FROM {db}.player_stats_daily
ARRAY JOIN
    ['all', 'day', 'week', 'month', 'year'] AS period,
    ['', toString(day), toString(toMonday(day)), toString(toStartOfMonth(day)), toString(toStartOfYear(day))] AS bucket
GROUP BY period, bucket, player_id";

/// Where and as whom to connect.
#[derive(Debug, Clone)]
pub struct ClickHouseConfig {
    /// `http://host:8123`, without path.
    pub base: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

impl ClickHouseConfig {
    /// `http://[user[:password]@]host:port[/database][?database=…]`;
    /// the database defaults to `opm_stats`.
    pub fn parse(url: &str) -> Result<ClickHouseConfig, StoreError> {
        let u = reqwest::Url::parse(url).map_err(|e| {
            StoreError::Config(format!(
                "CLICKHOUSE_URL {}: {e}",
                crate::config::redact(url)
            ))
        })?;
        let mut database = u.path().trim_matches('/').to_string();
        for (k, v) in u.query_pairs() {
            if k == "database" {
                database = v.into_owned();
            }
        }
        if database.is_empty() {
            database = "opm_stats".into();
        }
        if !database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StoreError::Config(format!(
                "ClickHouse database name {database:?} must be [A-Za-z0-9_]"
            )));
        }
        let user = (!u.username().is_empty()).then(|| u.username().to_string());
        let password = u.password().map(str::to_string);
        let base = format!(
            "{}://{}{}",
            u.scheme(),
            u.host_str().unwrap_or("127.0.0.1"),
            u.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        Ok(ClickHouseConfig {
            base,
            database,
            user,
            password,
        })
    }
}

pub struct ClickHouseAnalytics {
    http: reqwest::Client,
    config: ClickHouseConfig,
    /// Trusted high-water marks; `None` until read, and reset after a
    /// failed insert.
    marks: Mutex<Option<HashMap<String, u64>>>,
}

fn unavailable(e: reqwest::Error) -> StoreError {
    StoreError::Unavailable {
        backend: B,
        message: e.to_string(),
    }
}

impl ClickHouseAnalytics {
    pub fn new(config: ClickHouseConfig) -> Result<ClickHouseAnalytics, StoreError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| StoreError::Config(e.to_string()))?;
        Ok(ClickHouseAnalytics {
            http,
            config,
            marks: Mutex::new(None),
        })
    }

    pub fn database(&self) -> &str {
        &self.config.database
    }

    /// Runs one statement; `query` goes in the URL when a body is sent.
    async fn request(
        &self,
        query: Option<&str>,
        body: Vec<u8>,
        with_db: bool,
    ) -> Result<String, StoreError> {
        let mut params: Vec<(&str, &str)> = vec![("output_format_json_quote_64bit_integers", "0")];
        if with_db {
            params.push(("database", &self.config.database));
        }
        if let Some(q) = query {
            params.push(("query", q));
        }
        if let Some(u) = &self.config.user {
            params.push(("user", u));
        }
        if let Some(p) = &self.config.password {
            params.push(("password", p));
        }
        let resp = self
            .http
            .post(&self.config.base)
            .query(&params)
            .body(body)
            .send()
            .await
            .map_err(unavailable)?;
        let status = resp.status();
        let text = resp.text().await.map_err(unavailable)?;
        if status.is_success() {
            Ok(text)
        } else if status.as_u16() == 503
            || text.contains("TOO_MANY_PARTS")
            || text.contains("Code: 252")
        {
            Err(StoreError::Unavailable {
                backend: B,
                message: text.trim().to_string(),
            })
        } else {
            Err(StoreError::Rejected {
                backend: B,
                message: text.trim().to_string(),
            })
        }
    }

    /// Runs a statement given as the body.
    pub async fn execute(&self, sql: &str) -> Result<String, StoreError> {
        self.request(None, sql.as_bytes().to_vec(), true).await
    }

    /// Drops the whole database (tests' cleanup).
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        let sql = format!("DROP DATABASE IF EXISTS {}", self.config.database);
        self.request(None, sql.into_bytes(), false)
            .await
            .map(|_| ())
    }

    /// True when migration `version` was recorded by an earlier run.
    async fn applied(&self, version: u32) -> Result<bool, StoreError> {
        let rows = self
            .fetch(&format!(
                "SELECT count() AS n FROM schema_migrations WHERE version = {version}"
            ))
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("n"))
            .and_then(|v| v.as_u64())
            .unwrap_or(0)
            > 0)
    }

    async fn read_marks(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut marks = HashMap::new();
        for sql in [
            "SELECT server, max(event_id) AS m FROM high_water GROUP BY server",
            "SELECT server, max(event_id) AS m FROM raw_events GROUP BY server",
        ] {
            for row in self.fetch(sql).await? {
                let server = row
                    .get("server")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string();
                let m = row.get("m").and_then(|v| v.as_u64()).unwrap_or(0);
                let slot = marks.entry(server).or_insert(0);
                *slot = (*slot).max(m);
            }
        }
        Ok(marks)
    }
}

/// One `raw_events` row as JSONEachRow.
#[derive(Serialize)]
struct RawRow<'a> {
    event_id: u64,
    server: &'a str,
    time: String,
    ms: u16,
    time_ms: i64,
    kind: &'a str,
    type_name: &'a str,
    game_time_ms: Option<i64>,
    session: &'a str,
    match_id: &'a str,
    round: u32,
    map: &'a str,
    game_mode: &'a str,
    #[serde(flatten)]
    actor: Side<'a>,
    #[serde(flatten)]
    target: TargetSide<'a>,
    weapon: &'a str,
    means_of_death: &'a str,
    hit_location: &'a str,
    damage: f32,
    distance: f32,
    headshot: u8,
    grenade: u8,
    moved: f64,
    playtime: f64,
    extra_keys: Vec<&'a str>,
    extra_values: Vec<&'a str>,
    raw: &'a str,
}

macro_rules! side {
    ($name:ident, $guid:literal, $pname:literal, $smf:literal, $team:literal, $has:literal, $x:literal, $y:literal, $z:literal, $pitch:literal, $yaw:literal, $stance:literal, $health:literal, $life:literal) => {
        #[derive(Serialize)]
        struct $name<'a> {
            #[serde(rename = $guid)]
            guid: &'a str,
            #[serde(rename = $pname)]
            name: &'a str,
            #[serde(rename = $smf)]
            smf_id: u64,
            #[serde(rename = $team)]
            team: &'static str,
            #[serde(rename = $has)]
            has_pos: u8,
            #[serde(rename = $x)]
            x: f32,
            #[serde(rename = $y)]
            y: f32,
            #[serde(rename = $z)]
            z: f32,
            #[serde(rename = $pitch)]
            pitch: f32,
            #[serde(rename = $yaw)]
            yaw: f32,
            #[serde(rename = $stance)]
            stance: &'static str,
            #[serde(rename = $health)]
            health: Option<i32>,
            #[serde(rename = $life)]
            life: u32,
        }

        impl<'a> $name<'a> {
            fn of(p: &'a Option<Participant>) -> $name<'a> {
                match p {
                    None => $name {
                        guid: "",
                        name: "",
                        smf_id: 0,
                        team: "",
                        has_pos: 0,
                        x: 0.0,
                        y: 0.0,
                        z: 0.0,
                        pitch: 0.0,
                        yaw: 0.0,
                        stance: "",
                        health: None,
                        life: 0,
                    },
                    Some(p) => {
                        let pos = p.position.unwrap_or_default();
                        $name {
                            guid: &p.guid,
                            name: &p.name,
                            smf_id: p.smf_id.unwrap_or(0),
                            team: p.team.as_str(),
                            has_pos: p.position.is_some() as u8,
                            x: pos.x,
                            y: pos.y,
                            z: pos.z,
                            pitch: p.pitch,
                            yaw: p.yaw,
                            stance: p.stance.as_str(),
                            health: p.health,
                            life: p.life,
                        }
                    }
                }
            }
        }
    };
}

side!(
    Side,
    "actor_guid",
    "actor_name",
    "actor_smf_id",
    "actor_team",
    "actor_has_pos",
    "actor_x",
    "actor_y",
    "actor_z",
    "actor_pitch",
    "actor_yaw",
    "actor_stance",
    "actor_health",
    "actor_life"
);
side!(
    TargetSide,
    "target_guid",
    "target_name",
    "target_smf_id",
    "target_team",
    "target_has_pos",
    "target_x",
    "target_y",
    "target_z",
    "target_pitch",
    "target_yaw",
    "target_stance",
    "target_health",
    "target_life"
);

fn encode(e: &Event, out: &mut Vec<u8>) {
    let row = RawRow {
        event_id: e.id,
        server: &e.server,
        time: time::datetime_string(e.time_ms),
        ms: e.time_ms.rem_euclid(1000) as u16,
        time_ms: e.time_ms,
        kind: e.kind.as_str(),
        type_name: &e.type_name,
        game_time_ms: e.game_time_ms,
        session: &e.session,
        match_id: &e.match_id,
        round: e.round,
        map: &e.map,
        game_mode: &e.game_mode,
        actor: Side::of(&e.actor),
        target: TargetSide::of(&e.target),
        weapon: &e.weapon,
        means_of_death: &e.means_of_death,
        hit_location: &e.hit_location,
        damage: e.damage,
        distance: e.distance,
        headshot: (rows::is_kill(e) && rows::is_headshot(&e.hit_location)) as u8,
        grenade: rows::is_grenade(e) as u8,
        moved: rows::moved(e),
        playtime: rows::playtime(e),
        extra_keys: e.extra.iter().map(|(k, _)| &**k).collect(),
        extra_values: e.extra.iter().map(|(_, v)| &**v).collect(),
        raw: e.raw.as_deref().unwrap_or(""),
    };
    // Serialising plain structs of strings and numbers cannot fail; NaN
    // floats become null, which ClickHouse reads as 0 for Float32.
    serde_json::to_writer(&mut *out, &row).expect("raw row serialises");
    out.push(b'\n');
}

/// Splits a migration file into statements, dropping comment lines.
pub(crate) fn statements(sql: &str, database: &str) -> Vec<String> {
    let sql = sql.replace("{db}", database);
    let code: Vec<&str> = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect();
    code.join("\n")
        .split(';')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[async_trait]
impl AnalyticsStore for ClickHouseAnalytics {
    fn backend(&self) -> &'static str {
        B
    }

    fn dialect(&self) -> Dialect {
        Dialect::ClickHouse
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let db = &self.config.database;
        self.request(
            None,
            format!("CREATE DATABASE IF NOT EXISTS {db}").into_bytes(),
            false,
        )
        .await?;
        for (version, name, sql) in MIGRATIONS {
            let (views, tables): (Vec<String>, Vec<String>) = statements(sql, db)
                .into_iter()
                .partition(|s| s.starts_with("CREATE MATERIALIZED VIEW"));
            for statement in tables {
                self.request(None, statement.into_bytes(), true).await?;
            }
            if *version == 4 && !self.applied(4).await? {
                let filled = self
                    .fetch("SELECT count() AS n FROM player_period_stats")
                    .await?;
                if filled
                    .first()
                    .and_then(|r| r.get("n"))
                    .and_then(|v| v.as_u64())
                    == Some(0)
                {
                    self.execute(&BACKFILL_PERIODS.replace("{db}", db)).await?;
                }
            }
            for statement in views {
                self.request(None, statement.into_bytes(), true).await?;
            }
            self.execute(&format!(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ({version}, '{name}', now())"
            ))
            .await?;
        }
        Ok(())
    }

    async fn insert(&self, events: &[Event]) -> Result<InsertReport, StoreError> {
        let known = self.marks.lock().clone();
        let mut marks = match known {
            Some(m) => m,
            None => self.read_marks().await?,
        };
        let mut order: Vec<&Event> = events.iter().collect();
        order.sort_by(|a, b| (&*a.server, a.id).cmp(&(&*b.server, b.id)));
        let mut report = InsertReport::default();
        let mut body = Vec::with_capacity(events.len() * 512);
        let mut touched: HashMap<String, u64> = HashMap::new();
        for e in order {
            let mark = marks.entry(e.server.to_string()).or_insert(0);
            if e.id == 0 || e.id <= *mark {
                report.skipped += 1;
                touched.entry(e.server.to_string()).or_insert(*mark);
                continue;
            }
            *mark = e.id;
            touched.insert(e.server.to_string(), e.id);
            encode(e, &mut body);
            report.inserted += 1;
        }
        if report.inserted > 0 {
            let db = &self.config.database;
            let result = self
                .request(
                    Some(&format!("INSERT INTO {db}.raw_events FORMAT JSONEachRow")),
                    body,
                    true,
                )
                .await;
            let result = match result {
                Ok(_) => {
                    let mut hw = Vec::new();
                    for (server, id) in &touched {
                        let _ = writeln_json(&mut hw, server, *id);
                    }
                    self.request(
                        Some(&format!("INSERT INTO {db}.high_water FORMAT JSONEachRow")),
                        hw,
                        true,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                // The insert may have landed anyway: re-read marks next time.
                *self.marks.lock() = None;
                return Err(e);
            }
        }
        *self.marks.lock() = Some(marks);
        let mut high_water: Vec<(String, u64)> = touched.into_iter().collect();
        high_water.sort();
        report.high_water = high_water;
        Ok(report)
    }

    async fn high_water_marks(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let mut marks: Vec<(String, u64)> = self.read_marks().await?.into_iter().collect();
        marks.sort();
        Ok(marks)
    }

    async fn fetch(&self, sql: &str) -> Result<Vec<Row>, StoreError> {
        let text = self.execute(&format!("{sql}\nFORMAT JSONEachRow")).await?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str::<Row>(l).map_err(|e| StoreError::Decode {
                    backend: B,
                    message: format!("{e}: {l}"),
                })
            })
            .collect()
    }

    async fn drop_raw_before(&self, cutoff_ms: i64) -> Result<Vec<u32>, StoreError> {
        let db = &self.config.database;
        let rows = self
            .fetch(&format!(
                "SELECT DISTINCT partition FROM system.parts WHERE database = '{db}' AND table = 'raw_events' AND active"
            ))
            .await?;
        let mut dropped = Vec::new();
        for row in rows {
            let Some(month) = row
                .get("partition")
                .and_then(|v| v.as_str())
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if time::month_end_ms(month) <= cutoff_ms {
                self.execute(&format!(
                    "ALTER TABLE {db}.raw_events DROP PARTITION {month}"
                ))
                .await?;
                dropped.push(month);
            }
        }
        dropped.sort();
        Ok(dropped)
    }

    async fn raw_count(&self) -> Result<u64, StoreError> {
        let rows = self
            .fetch("SELECT uniqExact(server, event_id) AS n FROM raw_events")
            .await?;
        Ok(rows
            .first()
            .and_then(|r| r.get("n"))
            .and_then(|v| v.as_u64())
            .unwrap_or(0))
    }
}

fn writeln_json(out: &mut Vec<u8>, server: &str, id: u64) -> Result<(), serde_json::Error> {
    serde_json::to_writer(
        &mut *out,
        &serde_json::json!({"server": server, "event_id": id}),
    )?;
    out.push(b'\n');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_forms() {
        let c = ClickHouseConfig::parse("http://127.0.0.1:8123").unwrap();
        assert_eq!(
            (c.base.as_str(), c.database.as_str()),
            ("http://127.0.0.1:8123", "opm_stats")
        );
        let c = ClickHouseConfig::parse("http://u:p@ch:8123/stats").unwrap();
        assert_eq!(
            (
                c.database.as_str(),
                c.user.as_deref(),
                c.password.as_deref()
            ),
            ("stats", Some("u"), Some("p"))
        );
        let c = ClickHouseConfig::parse("http://ch:8123/?database=x_1").unwrap();
        assert_eq!(c.database, "x_1");
        assert!(ClickHouseConfig::parse("http://ch:8123/bad;name").is_err());
    }

    #[test]
    fn statements_split_and_substitute() {
        let s = statements(
            "-- c; not code\nCREATE TABLE {db}.a (x UInt8);\n\n-- d\nSELECT 1;\n",
            "d1",
        );
        assert_eq!(
            s,
            vec![
                "CREATE TABLE d1.a (x UInt8)".to_string(),
                "SELECT 1".to_string()
            ]
        );
    }
}
