//! Read queries over the rollups, written once for both backends.
//!
//! Every query reads rollup tables only (never `raw_events`), groups by the
//! rollup key and sums, which is both how SQLite's exact rows and
//! ClickHouse's lazily collapsing SummingMergeTree rows must be read. The
//! one exception is the leaderboard, the hottest query over the most rows:
//! on SQLite it reads its bucket's rows as they are (they are exact), since
//! grouping 20 000 players costs SQLite tens of milliseconds.
//! Aggregates are computed in an inner query and derived values (ratios)
//! in an outer one: ClickHouse lets an alias shadow a column, so
//! `sum(kills) AS kills` must never be referenced again at the same level.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use super::{AnalyticsStore, Dialect, Row};
use crate::error::StoreError;
use crate::time;

/// Time window of a leaderboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    All,
    Day,
    Week,
    Month,
    Year,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        Some(match s.to_ascii_lowercase().as_str() {
            "" | "all" | "alltime" | "all_time" => Period::All,
            "day" | "today" | "daily" => Period::Day,
            "week" | "weekly" => Period::Week,
            "month" | "monthly" => Period::Month,
            "year" | "yearly" => Period::Year,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::All => "all",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
        }
    }

    /// The `player_period_stats` bucket of the period holding `ms`: the
    /// first day (`YYYY-MM-DD`, UTC) of its calendar day, ISO week (from
    /// Monday), month or year; empty for all time.
    pub fn bucket(self, ms: i64) -> String {
        match self {
            Period::All => String::new(),
            Period::Day => time::day_string(ms),
            Period::Week => time::week_start_string(ms),
            Period::Month => time::month_start_string(ms),
            Period::Year => time::year_start_string(ms),
        }
    }

    /// First day (`YYYY-MM-DD`) of the current period (today, this week,
    /// this month or this year); `None` for all time.
    pub fn first_day(self, now_ms: i64) -> Option<String> {
        (self != Period::All).then(|| self.bucket(now_ms))
    }
}

/// What a leaderboard ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaderStat {
    Kills,
    Deaths,
    Headshots,
    Kd,
    Accuracy,
    Damage,
}

impl LeaderStat {
    /// The forum's names, with its aliases; `None` for unknown names.
    pub fn parse(s: &str) -> Option<LeaderStat> {
        Some(match s.to_ascii_lowercase().as_str() {
            "kills" | "total_kills" | "global" | "" => LeaderStat::Kills,
            "deaths" => LeaderStat::Deaths,
            "headshots" => LeaderStat::Headshots,
            "kd" | "kd_ratio" | "kdr" => LeaderStat::Kd,
            "accuracy" => LeaderStat::Accuracy,
            "damage" | "damage_dealt" => LeaderStat::Damage,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LeaderStat::Kills => "kills",
            LeaderStat::Deaths => "deaths",
            LeaderStat::Headshots => "headshots",
            LeaderStat::Kd => "kd",
            LeaderStat::Accuracy => "accuracy",
            LeaderStat::Damage => "damage",
        }
    }

    /// The ranking expression over the inner query's columns.
    fn value(self) -> &'static str {
        match self {
            LeaderStat::Kills => "kills * 1.0",
            LeaderStat::Deaths => "deaths * 1.0",
            LeaderStat::Headshots => "headshots * 1.0",
            // kills per death, with no deaths counting as one
            LeaderStat::Kd => {
                "(CASE WHEN deaths = 0 THEN kills * 1.0 ELSE kills * 1.0 / deaths END)"
            }
            LeaderStat::Accuracy => {
                "(CASE WHEN shots_fired = 0 THEN 0.0 ELSE shots_hit * 100.0 / shots_fired END)"
            }
            LeaderStat::Damage => "damage_dealt * 1.0",
        }
    }
}

/// Lifetime totals of one player.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlayerTotals {
    pub player_id: String,
    pub player_name: String,
    pub events: u64,
    pub kills: u64,
    pub deaths: u64,
    pub headshots: u64,
    pub suicides: u64,
    pub team_kills: u64,
    pub bash_kills: u64,
    pub grenade_kills: u64,
    pub bot_kills: u64,
    pub damage_dealt: f64,
    pub damage_taken: f64,
    pub shots_fired: u64,
    pub shots_hit: u64,
    pub jumps: u64,
    pub reloads: u64,
    pub distance: f64,
    pub playtime_seconds: f64,
    pub matches_played: u64,
    pub first_day: String,
    pub last_day: String,
}

impl PlayerTotals {
    pub fn kd_ratio(&self) -> f64 {
        if self.deaths == 0 {
            self.kills as f64
        } else {
            self.kills as f64 / self.deaths as f64
        }
    }

    /// Shots hit per shot fired, in percent.
    pub fn accuracy(&self) -> f64 {
        if self.shots_fired == 0 {
            0.0
        } else {
            self.shots_hit as f64 * 100.0 / self.shots_fired as f64
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WeaponLine {
    pub weapon: String,
    pub kills: u64,
    pub deaths: u64,
    pub headshots: u64,
    pub shots_fired: u64,
    pub shots_hit: u64,
    pub damage_dealt: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MapLine {
    pub map_name: String,
    pub events: u64,
    pub kills: u64,
    pub deaths: u64,
    pub headshots: u64,
    pub damage_dealt: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HitLocationLine {
    pub hit_location: String,
    pub hits: u64,
    pub kills: u64,
    pub damage_dealt: f64,
    pub hits_taken: u64,
    pub deaths: u64,
    pub damage_taken: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LeaderEntry {
    pub rank: u64,
    pub player_id: String,
    pub player_name: String,
    pub kills: u64,
    pub deaths: u64,
    pub headshots: u64,
    pub shots_fired: u64,
    pub shots_hit: u64,
    pub damage_dealt: f64,
    pub value: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Leaderboard {
    pub entries: Vec<LeaderEntry>,
    /// Players with any activity in the period.
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MatchSummary {
    pub match_id: String,
    pub server_id: String,
    pub map_name: String,
    pub game_type: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub max_round: u64,
    pub events: u64,
    pub kills: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MatchPlayer {
    pub player_id: String,
    pub player_name: String,
    pub team: String,
    pub kills: u64,
    pub deaths: u64,
    pub headshots: u64,
    pub suicides: u64,
    pub team_kills: u64,
    pub damage_dealt: f64,
    pub damage_taken: f64,
}

/// A player's line in one match, with the match's map and times.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PlayerMatch {
    pub match_id: String,
    pub map_name: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub kills: u64,
    pub deaths: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HeatCell {
    /// Cell indices: the cell spans `x*100 .. x*100+100` game units.
    pub x: i64,
    pub y: i64,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MapTotals {
    pub map_name: String,
    pub events: u64,
    pub kills: u64,
    pub headshots: u64,
    pub damage_dealt: f64,
    pub matches: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct WeaponTotals {
    pub weapon: String,
    pub kills: u64,
    pub headshots: u64,
    pub shots_fired: u64,
    pub shots_hit: u64,
    pub damage_dealt: f64,
    pub unique_users: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ActivityPoint {
    /// `YYYY-MM-DD HH:00:00` UTC.
    pub hour: String,
    pub events: u64,
    pub kills: u64,
}

fn num(row: &Row, key: &str) -> f64 {
    match row.get(key) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

fn uint(row: &Row, key: &str) -> u64 {
    match row.get(key) {
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| n.as_f64().map(|f| f.max(0.0).round() as u64))
            .unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn int(row: &Row, key: &str) -> i64 {
    match row.get(key) {
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f.round() as i64))
            .unwrap_or(0),
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn text(row: &Row, key: &str) -> String {
    match row.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// The read side: typed queries against any [`AnalyticsStore`].
#[derive(Clone)]
pub struct StatsQueries {
    store: Arc<dyn AnalyticsStore>,
}

impl StatsQueries {
    pub fn new(store: Arc<dyn AnalyticsStore>) -> StatsQueries {
        StatsQueries { store }
    }

    fn d(&self) -> Dialect {
        self.store.dialect()
    }

    /// Lifetime totals; `None` for a player never seen.
    pub async fn player(&self, guid: &str) -> Result<Option<PlayerTotals>, StoreError> {
        let d = self.d();
        let g = d.str(guid);
        let sql = format!(
            "SELECT player_id, {name}, sum(events) AS events, sum(kills) AS kills, sum(deaths) AS deaths,
                sum(headshots) AS headshots, sum(suicides) AS suicides, sum(team_kills) AS team_kills,
                sum(bash_kills) AS bash_kills, sum(grenade_kills) AS grenade_kills, sum(bot_kills) AS bot_kills,
                sum(damage_dealt) AS damage_dealt, sum(damage_taken) AS damage_taken, sum(shots_fired) AS shots_fired,
                sum(shots_hit) AS shots_hit, sum(jumps) AS jumps, sum(reloads) AS reloads, sum(distance) AS distance,
                sum(playtime_seconds) AS playtime_seconds
             FROM player_stats_daily WHERE player_id = {g} GROUP BY player_id",
            name = d.last_name()
        );
        let Some(r) = self.store.fetch(&sql).await?.into_iter().next() else {
            return Ok(None);
        };
        let days = self
            .store
            .fetch(&format!(
                "SELECT day FROM player_stats_daily WHERE player_id = {g} GROUP BY day ORDER BY day"
            ))
            .await?;
        let matches = self
            .store
            .fetch(&format!(
                "SELECT count(DISTINCT match_id) AS n FROM match_players WHERE player_id = {g}"
            ))
            .await?;
        Ok(Some(PlayerTotals {
            player_id: text(&r, "player_id"),
            player_name: text(&r, "player_name"),
            events: uint(&r, "events"),
            kills: uint(&r, "kills"),
            deaths: uint(&r, "deaths"),
            headshots: uint(&r, "headshots"),
            suicides: uint(&r, "suicides"),
            team_kills: uint(&r, "team_kills"),
            bash_kills: uint(&r, "bash_kills"),
            grenade_kills: uint(&r, "grenade_kills"),
            bot_kills: uint(&r, "bot_kills"),
            damage_dealt: num(&r, "damage_dealt"),
            damage_taken: num(&r, "damage_taken"),
            shots_fired: uint(&r, "shots_fired"),
            shots_hit: uint(&r, "shots_hit"),
            jumps: uint(&r, "jumps"),
            reloads: uint(&r, "reloads"),
            distance: num(&r, "distance"),
            playtime_seconds: num(&r, "playtime_seconds"),
            matches_played: matches.first().map(|r| uint(r, "n")).unwrap_or(0),
            first_day: days.first().map(|r| text(r, "day")).unwrap_or_default(),
            last_day: days.last().map(|r| text(r, "day")).unwrap_or_default(),
        }))
    }

    /// Per weapon, most kills first.
    pub async fn player_weapons(&self, guid: &str) -> Result<Vec<WeaponLine>, StoreError> {
        let g = self.d().str(guid);
        let rows = self
            .store
            .fetch(&format!(
                "SELECT weapon, sum(kills) AS kills, sum(deaths) AS deaths, sum(headshots) AS headshots,
                    sum(shots_fired) AS shots_fired, sum(shots_hit) AS shots_hit, sum(damage_dealt) AS damage_dealt
                 FROM player_weapon_stats WHERE player_id = {g} GROUP BY weapon ORDER BY kills DESC, weapon"
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| WeaponLine {
                weapon: text(r, "weapon"),
                kills: uint(r, "kills"),
                deaths: uint(r, "deaths"),
                headshots: uint(r, "headshots"),
                shots_fired: uint(r, "shots_fired"),
                shots_hit: uint(r, "shots_hit"),
                damage_dealt: num(r, "damage_dealt"),
            })
            .collect())
    }

    /// Per map, most kills first.
    pub async fn player_maps(&self, guid: &str) -> Result<Vec<MapLine>, StoreError> {
        let g = self.d().str(guid);
        let rows = self
            .store
            .fetch(&format!(
                "SELECT map_name, sum(events) AS events, sum(kills) AS kills, sum(deaths) AS deaths,
                    sum(headshots) AS headshots, sum(damage_dealt) AS damage_dealt
                 FROM player_map_stats WHERE player_id = {g} GROUP BY map_name ORDER BY kills DESC, map_name"
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| MapLine {
                map_name: text(r, "map_name"),
                events: uint(r, "events"),
                kills: uint(r, "kills"),
                deaths: uint(r, "deaths"),
                headshots: uint(r, "headshots"),
                damage_dealt: num(r, "damage_dealt"),
            })
            .collect())
    }

    /// Per hit location, by name.
    pub async fn player_hit_locations(
        &self,
        guid: &str,
    ) -> Result<Vec<HitLocationLine>, StoreError> {
        let g = self.d().str(guid);
        let rows = self
            .store
            .fetch(&format!(
                "SELECT hit_location, sum(hits) AS hits, sum(kills) AS kills, sum(damage_dealt) AS damage_dealt,
                    sum(hits_taken) AS hits_taken, sum(deaths) AS deaths, sum(damage_taken) AS damage_taken
                 FROM player_hitloc_stats WHERE player_id = {g} GROUP BY hit_location ORDER BY hit_location"
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| HitLocationLine {
                hit_location: text(r, "hit_location"),
                hits: uint(r, "hits"),
                kills: uint(r, "kills"),
                damage_dealt: num(r, "damage_dealt"),
                hits_taken: uint(r, "hits_taken"),
                deaths: uint(r, "deaths"),
                damage_taken: num(r, "damage_taken"),
            })
            .collect())
    }

    /// The player's matches, newest first.
    pub async fn player_matches(
        &self,
        guid: &str,
        limit: u32,
    ) -> Result<Vec<PlayerMatch>, StoreError> {
        let d = self.d();
        let g = d.str(guid);
        let lines = self
            .store
            .fetch(&format!(
                "SELECT match_id, sum(kills) AS kills, sum(deaths) AS deaths FROM match_players
                 WHERE player_id = {g} GROUP BY match_id ORDER BY match_id"
            ))
            .await?;
        if lines.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = lines.iter().map(|r| d.str(&text(r, "match_id"))).collect();
        let summaries = self
            .summaries(&format!("match_id IN ({})", ids.join(", ")), None)
            .await?;
        let mut out: Vec<PlayerMatch> = summaries
            .into_iter()
            .map(|s| {
                let line = lines.iter().find(|r| text(r, "match_id") == s.match_id);
                PlayerMatch {
                    kills: line.map(|r| uint(r, "kills")).unwrap_or(0),
                    deaths: line.map(|r| uint(r, "deaths")).unwrap_or(0),
                    match_id: s.match_id,
                    map_name: s.map_name,
                    started_ms: s.started_ms,
                    ended_ms: s.ended_ms,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.started_ms
                .cmp(&a.started_ms)
                .then_with(|| a.match_id.cmp(&b.match_id))
        });
        out.truncate(limit as usize);
        Ok(out)
    }

    /// Players ranked in the current calendar period (`now_ms` picks it).
    /// Reads the one `player_period_stats` bucket of that period: at most
    /// one row per player in SQLite, so no grouping there; ClickHouse sums
    /// its not-yet-merged rows.
    pub async fn leaderboard(
        &self,
        stat: LeaderStat,
        period: Period,
        limit: u32,
        offset: u64,
        now_ms: i64,
    ) -> Result<Leaderboard, StoreError> {
        let d = self.d();
        let filter = format!(
            "period = {} AND bucket = {}",
            d.str(period.as_str()),
            d.str(&period.bucket(now_ms))
        );
        let counts = "kills, deaths, headshots, shots_fired, shots_hit, damage_dealt";
        let (rows, total) = match d {
            Dialect::ClickHouse => (
                format!(
                    "SELECT player_id, argMaxMerge(player_name) AS player_name, sum(kills) AS kills,
                        sum(deaths) AS deaths, sum(headshots) AS headshots, sum(shots_fired) AS shots_fired,
                        sum(shots_hit) AS shots_hit, sum(damage_dealt) AS damage_dealt
                     FROM player_period_stats WHERE {filter} GROUP BY player_id"
                ),
                format!(
                    "SELECT count(DISTINCT player_id) AS n FROM player_period_stats WHERE {filter}"
                ),
            ),
            Dialect::Sqlite => (
                format!("SELECT player_id, player_name, {counts} FROM player_period_stats WHERE {filter}"),
                format!("SELECT count(*) AS n FROM player_period_stats WHERE {filter}"),
            ),
        };
        let sql = format!(
            "SELECT player_id, player_name, {counts}, {value} AS value
             FROM ({rows})
             ORDER BY value DESC, player_id
             LIMIT {offset}, {limit}",
            value = stat.value(),
        );
        let rows = self.store.fetch(&sql).await?;
        let total = self.store.fetch(&total).await?;
        Ok(Leaderboard {
            entries: rows
                .iter()
                .enumerate()
                .map(|(i, r)| LeaderEntry {
                    rank: offset + i as u64 + 1,
                    player_id: text(r, "player_id"),
                    player_name: text(r, "player_name"),
                    kills: uint(r, "kills"),
                    deaths: uint(r, "deaths"),
                    headshots: uint(r, "headshots"),
                    shots_fired: uint(r, "shots_fired"),
                    shots_hit: uint(r, "shots_hit"),
                    damage_dealt: num(r, "damage_dealt"),
                    value: num(r, "value"),
                })
                .collect(),
            total: total.first().map(|r| uint(r, "n")).unwrap_or(0),
        })
    }

    async fn summaries(
        &self,
        filter: &str,
        page: Option<(u32, u64)>,
    ) -> Result<Vec<MatchSummary>, StoreError> {
        let d = self.d();
        let page = page
            .map(|(limit, offset)| format!("LIMIT {offset}, {limit}"))
            .unwrap_or_default();
        let sql = format!(
            "SELECT match_id, server_id, map_name, game_type, started_ms, ended_ms, max_round, events, kills FROM (
                SELECT match_id, {server} AS server_id, {map} AS map_name, {gt} AS game_type,
                    {started} AS started_ms, {ended} AS ended_ms, {round} AS max_round,
                    sum(events) AS events, sum(kills) AS kills
                FROM match_summary WHERE {filter} GROUP BY match_id
             ) ORDER BY started_ms DESC, match_id {page}",
            server = d.max_merge("server_id"),
            map = d.max_merge("map_name"),
            gt = d.max_merge("game_type"),
            started = d.min_merge("started_ms"),
            ended = d.max_merge("ended_ms"),
            round = d.max_merge("max_round"),
        );
        Ok(self
            .store
            .fetch(&sql)
            .await?
            .iter()
            .map(|r| MatchSummary {
                match_id: text(r, "match_id"),
                server_id: text(r, "server_id"),
                map_name: text(r, "map_name"),
                game_type: text(r, "game_type"),
                started_ms: int(r, "started_ms"),
                ended_ms: int(r, "ended_ms"),
                max_round: uint(r, "max_round"),
                events: uint(r, "events"),
                kills: uint(r, "kills"),
            })
            .collect())
    }

    pub async fn match_summary(&self, match_id: &str) -> Result<Option<MatchSummary>, StoreError> {
        let filter = format!("match_id = {}", self.d().str(match_id));
        Ok(self.summaries(&filter, None).await?.into_iter().next())
    }

    /// Newest matches first.
    pub async fn recent_matches(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<MatchSummary>, StoreError> {
        self.summaries("1 = 1", Some((limit, offset))).await
    }

    /// The scoreboard: most kills first, then fewest deaths.
    pub async fn match_players(&self, match_id: &str) -> Result<Vec<MatchPlayer>, StoreError> {
        let d = self.d();
        let (team, team_ms) = match d {
            Dialect::ClickHouse => ("argMaxMerge(team) AS team", ""),
            Dialect::Sqlite => ("team", ", max(team_ms) AS team_ms"),
        };
        let sql = format!(
            "SELECT player_id, player_name, team, kills, deaths, headshots, suicides, team_kills, damage_dealt, damage_taken
             FROM (
                SELECT player_id, {name}, {team}{team_ms}, sum(kills) AS kills, sum(deaths) AS deaths,
                    sum(headshots) AS headshots, sum(suicides) AS suicides, sum(team_kills) AS team_kills,
                    sum(damage_dealt) AS damage_dealt, sum(damage_taken) AS damage_taken
                FROM match_players WHERE match_id = {m} GROUP BY player_id
             ) ORDER BY kills DESC, deaths, player_id",
            name = d.last_name(),
            m = d.str(match_id),
        );
        Ok(self
            .store
            .fetch(&sql)
            .await?
            .iter()
            .map(|r| MatchPlayer {
                player_id: text(r, "player_id"),
                player_name: text(r, "player_name"),
                team: text(r, "team"),
                kills: uint(r, "kills"),
                deaths: uint(r, "deaths"),
                headshots: uint(r, "headshots"),
                suicides: uint(r, "suicides"),
                team_kills: uint(r, "team_kills"),
                damage_dealt: num(r, "damage_dealt"),
                damage_taken: num(r, "damage_taken"),
            })
            .collect())
    }

    /// Kill (`layer` "kill") or death ("death") cells of a map, hottest first.
    pub async fn heatmap(
        &self,
        map: &str,
        layer: &str,
        limit: u32,
    ) -> Result<Vec<HeatCell>, StoreError> {
        let d = self.d();
        let sql = format!(
            "SELECT cell_x, cell_y, sum(events) AS n FROM heatmap_cells
             WHERE map_name = {m} AND layer = {l} GROUP BY cell_x, cell_y
             ORDER BY n DESC, cell_x, cell_y LIMIT {limit}",
            m = d.str(map),
            l = d.str(layer),
        );
        Ok(self
            .store
            .fetch(&sql)
            .await?
            .iter()
            .map(|r| HeatCell {
                x: int(r, "cell_x"),
                y: int(r, "cell_y"),
                count: uint(r, "n"),
            })
            .collect())
    }

    /// Every map (or one), most kills first, with its number of matches.
    pub async fn maps(&self, map: Option<&str>) -> Result<Vec<MapTotals>, StoreError> {
        let d = self.d();
        let filter = map
            .map(|m| format!("WHERE map_name = {}", d.str(m)))
            .unwrap_or_default();
        let rows = self
            .store
            .fetch(&format!(
                "SELECT map_name, sum(events) AS events, sum(kills) AS kills, sum(headshots) AS headshots,
                    sum(damage_dealt) AS damage_dealt
                 FROM map_stats_daily {filter} GROUP BY map_name ORDER BY kills DESC, map_name"
            ))
            .await?;
        let matches = self
            .store
            .fetch(&format!(
                "SELECT map_name, count(*) AS n FROM (
                    SELECT match_id, {map} AS map_name FROM match_summary GROUP BY match_id
                 ) {filter} GROUP BY map_name ORDER BY map_name",
                map = d.max_merge("map_name")
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let name = text(r, "map_name");
                MapTotals {
                    matches: matches
                        .iter()
                        .find(|m| text(m, "map_name") == name)
                        .map(|m| uint(m, "n"))
                        .unwrap_or(0),
                    map_name: name,
                    events: uint(r, "events"),
                    kills: uint(r, "kills"),
                    headshots: uint(r, "headshots"),
                    damage_dealt: num(r, "damage_dealt"),
                }
            })
            .collect())
    }

    /// Every weapon (or one), most kills first.
    pub async fn weapons(&self, weapon: Option<&str>) -> Result<Vec<WeaponTotals>, StoreError> {
        let d = self.d();
        let filter = weapon
            .map(|w| format!("WHERE weapon = {}", d.str(w)))
            .unwrap_or_default();
        let rows = self
            .store
            .fetch(&format!(
                "SELECT weapon, sum(kills) AS kills, sum(headshots) AS headshots, sum(shots_fired) AS shots_fired,
                    sum(shots_hit) AS shots_hit, sum(damage_dealt) AS damage_dealt, count(DISTINCT player_id) AS unique_users
                 FROM player_weapon_stats {filter} GROUP BY weapon ORDER BY kills DESC, weapon"
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| WeaponTotals {
                weapon: text(r, "weapon"),
                kills: uint(r, "kills"),
                headshots: uint(r, "headshots"),
                shots_fired: uint(r, "shots_fired"),
                shots_hit: uint(r, "shots_hit"),
                damage_dealt: num(r, "damage_dealt"),
                unique_users: uint(r, "unique_users"),
            })
            .collect())
    }

    /// Hourly activity of a server since `since_ms`.
    pub async fn server_activity(
        &self,
        server: &str,
        since_ms: i64,
    ) -> Result<Vec<ActivityPoint>, StoreError> {
        let d = self.d();
        let rows = self
            .store
            .fetch(&format!(
                "SELECT hour, sum(events) AS events, sum(kills) AS kills FROM server_activity
                 WHERE server_id = {s} AND hour >= {h} GROUP BY hour ORDER BY hour",
                s = d.str(server),
                h = d.str(&time::hour_string(since_ms)),
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| ActivityPoint {
                hour: text(r, "hour"),
                events: uint(r, "events"),
                kills: uint(r, "kills"),
            })
            .collect())
    }
}
