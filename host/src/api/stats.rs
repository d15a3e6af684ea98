//! `/stats/player/{guid}`, `/stats/leaderboard`, `/stats/match/{id}`.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use opm_store::StoreError;
use opm_store::analytics::query::{LeaderStat, Period};
use opm_store::live::ttl;
use serde_json::{Map, Value, json};

use super::{ApiState, cached, rfc3339, round2};

fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 { num } else { num / den }
}

fn pct(num: f64, den: f64) -> f64 {
    if den == 0.0 { 0.0 } else { num * 100.0 / den }
}

/// Player profile: `{"player":{…}}` plus the same keys flat, as both
/// forum pages read it.
pub async fn player(State(state): State<ApiState>, Path(guid): Path<String>) -> Response {
    let key = format!("player:{guid}");
    let s = state.clone();
    cached(&state, &key, ttl::PLAYER, async move {
        player_json(&s, &guid).await
    })
    .await
}

async fn player_json(state: &ApiState, guid: &str) -> Result<Value, StoreError> {
    let q = state.stores.stats();
    let totals = q.player(guid).await?.unwrap_or_default();
    let weapons = q.player_weapons(guid).await?;
    let maps = q.player_maps(guid).await?;
    let matches = q.player_matches(guid, 10).await?;
    // The profile lists unlocked codes; `/achievements/player/{guid}` has
    // the details.
    let achievements: Vec<Value> = state
        .stores
        .relational
        .unlocks_of(guid)
        .await?
        .into_iter()
        .map(|u| json!({"code": u.code, "unlocked_at": rfc3339(u.unlocked_ms)}))
        .collect();
    let weapons: Vec<Value> = weapons
        .iter()
        .map(|w| {
            json!({
                "weapon": w.weapon, "name": w.weapon,
                "kills": w.kills, "deaths": w.deaths, "headshots": w.headshots,
                "shots_fired": w.shots_fired, "shots_hit": w.shots_hit,
                "shots": w.shots_fired, "hits": w.shots_hit,
                "damage": round2(w.damage_dealt),
                "accuracy": round2(pct(w.shots_hit as f64, w.shots_fired as f64)),
            })
        })
        .collect();
    let maps: Vec<Value> = maps
        .iter()
        .take(5)
        .map(|m| {
            json!({
                "map_name": m.map_name, "name": m.map_name, "kills": m.kills, "deaths": m.deaths,
                "headshots": m.headshots, "kd_ratio": round2(ratio(m.kills as f64, m.deaths as f64)),
            })
        })
        .collect();
    let recent: Vec<Value> = matches
        .iter()
        .map(|m| {
            json!({
                "match_id": m.match_id, "map_name": m.map_name, "kills": m.kills, "deaths": m.deaths,
                "date": rfc3339(m.started_ms), "started_at": rfc3339(m.started_ms), "ended_at": rfc3339(m.ended_ms),
            })
        })
        .collect();
    let name = if totals.player_name.is_empty() {
        "Unknown Soldier".to_string()
    } else {
        totals.player_name.clone()
    };
    let player = json!({
        "guid": guid,
        "id": guid,
        "name": name,
        "player_name": name,
        "kills": totals.kills,
        "deaths": totals.deaths,
        "headshots": totals.headshots,
        "kd_ratio": round2(totals.kd_ratio()),
        "accuracy": round2(totals.accuracy()),
        "damage": round2(totals.damage_dealt),
        "damage_dealt": round2(totals.damage_dealt),
        "damage_taken": round2(totals.damage_taken),
        "shots_fired": totals.shots_fired,
        "shots_hit": totals.shots_hit,
        "suicides": totals.suicides,
        "team_kills": totals.team_kills,
        "bash_kills": totals.bash_kills,
        "grenade_kills": totals.grenade_kills,
        "bot_kills": totals.bot_kills,
        "matches_played": totals.matches_played,
        "playtime_seconds": totals.playtime_seconds.round() as u64,
        "distance_traveled": round2(totals.distance),
        "jumps": totals.jumps,
        "reloads": totals.reloads,
        "first_seen": totals.first_day,
        "last_seen": totals.last_day,
        "weapons": weapons,
        "maps": maps,
        "recent_matches": recent,
        "achievements": achievements,
    });
    let mut out = Map::new();
    if let Value::Object(flat) = &player {
        out.extend(flat.clone());
    }
    out.insert("player".into(), player);
    Ok(Value::Object(out))
}

/// `/stats/leaderboard?stat=&period=&limit=&offset=|page=`.
pub async fn leaderboard(
    State(state): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let stat = q.get("stat").cloned().unwrap_or_default();
    board(state, &stat, &q).await
}

/// `/stats/leaderboard/{stat}`; `global` (what the forum sends) defers to
/// the `stat` query parameter.
pub async fn leaderboard_stat(
    State(state): State<ApiState>,
    Path(stat): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let stat = if stat == "global" {
        q.get("stat").cloned().unwrap_or_default()
    } else {
        stat
    };
    board(state, &stat, &q).await
}

async fn board(state: ApiState, stat: &str, q: &HashMap<String, String>) -> Response {
    // Unknown stats rank by kills, as upstream did.
    let stat = LeaderStat::parse(stat).unwrap_or(LeaderStat::Kills);
    let period = q
        .get("period")
        .and_then(|p| Period::parse(p))
        .unwrap_or(Period::All);
    let limit = q
        .get("limit")
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(25)
        .clamp(1, 100);
    let offset = match (
        q.get("offset").and_then(|v| v.parse::<u64>().ok()),
        q.get("page").and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(o), _) => o,
        (None, Some(p)) => p.saturating_sub(1) * limit as u64,
        (None, None) => 0,
    };
    let count_only = q.get("count_only").is_some_and(|v| v == "1" || v == "true");
    let ttl = if period == Period::Week {
        ttl::WEEKLY_LEADERBOARD
    } else {
        ttl::LEADERBOARD
    };
    let key = format!(
        "leaderboard:{}:{}:{limit}:{offset}:{count_only}",
        stat.as_str(),
        period.as_str()
    );
    let s = state.clone();
    cached(&state, &key, ttl, async move {
        let board = s
            .stores
            .stats()
            .leaderboard(stat, period, limit, offset, opm_store::time::now_ms())
            .await?;
        if count_only {
            return Ok(
                json!({"total": board.total, "stat": stat.as_str(), "period": period.as_str()}),
            );
        }
        let players: Vec<Value> = board
            .entries
            .iter()
            .map(|e| {
                json!({
                    "rank": e.rank,
                    "player_id": e.player_id, "guid": e.player_id, "id": e.player_id,
                    "player_name": e.player_name, "name": e.player_name,
                    "value": round2(e.value),
                    "kills": e.kills, "deaths": e.deaths, "headshots": e.headshots,
                    "shots_fired": e.shots_fired, "shots_hit": e.shots_hit,
                    "accuracy": round2(pct(e.shots_hit as f64, e.shots_fired as f64)),
                    "kd_ratio": round2(ratio(e.kills as f64, e.deaths as f64)),
                    "damage": round2(e.damage_dealt),
                })
            })
            .collect();
        Ok(json!({
            "players": players,
            "total": board.total,
            "page": offset / limit as u64 + 1,
            "limit": limit,
            "offset": offset,
            "stat": stat.as_str(),
            "period": period.as_str(),
        }))
    })
    .await
}

/// `/stats/match/{id}`: summary and scoreboard.
pub async fn match_detail(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    let key = format!("match:{id}");
    let s = state.clone();
    cached(&state, &key, ttl::PLAYER, async move {
        let q = s.stores.stats();
        let Some(m) = q.match_summary(&id).await? else {
            return Ok(json!({"match_id": id, "summary": {}, "scoreboard": [], "players": []}));
        };
        let board: Vec<Value> = q
            .match_players(&id)
            .await?
            .iter()
            .map(|p| {
                json!({
                    "player_id": p.player_id, "guid": p.player_id, "player_name": p.player_name, "name": p.player_name,
                    "team": p.team, "kills": p.kills, "deaths": p.deaths, "headshots": p.headshots,
                    "suicides": p.suicides, "team_kills": p.team_kills,
                    "damage_dealt": round2(p.damage_dealt), "damage_taken": round2(p.damage_taken),
                    "kd": round2(ratio(p.kills as f64, p.deaths as f64)),
                })
            })
            .collect();
        let duration = ((m.ended_ms - m.started_ms).max(0) / 1000) as u64;
        let summary = json!({
            "map_name": m.map_name, "server_id": m.server_id, "game_type": m.game_type,
            "started_at": rfc3339(m.started_ms), "ended_at": rfc3339(m.ended_ms), "duration": duration,
            "total_kills": m.kills, "unique_players": board.len(), "rounds": m.max_round,
        });
        Ok(json!({
            "match_id": m.match_id,
            "map_name": m.map_name,
            "server_id": m.server_id,
            "game_mode": m.game_type,
            "started_at": rfc3339(m.started_ms),
            "ended_at": rfc3339(m.ended_ms),
            "duration": duration,
            "summary": summary,
            "scoreboard": board,
            "players": board,
        }))
    })
    .await
}
