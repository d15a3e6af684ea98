//! `/achievements/`: the catalogue, a plain array of definitions
//! (hidden ones too, flagged), as the newer SMF plugin copy reads it.
//!
//! `/achievements/player/{guid}`: unlocks and progress in the shapes both
//! SMF plugin copies read (`achievements.md` §4.3): `unlocked[]` and
//! `progress[]` keyed by `id_achievement`, the Go-style `achievements[]`,
//! and the page totals.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::Response;
use opm_store::live::ttl;
use serde_json::{Value, json};

use super::{ApiState, cached, rfc3339, round2};

/// Every active definition, in id order.
pub async fn catalogue(State(state): State<ApiState>) -> Response {
    let s = state.clone();
    cached(
        &state,
        "achievements:catalogue",
        ttl::ACHIEVEMENT_LIST,
        async move {
            let defs = s.stores.relational.definitions().await?;
            let list: Vec<Value> = defs
                .iter()
                .filter(|d| d.active)
                .map(|d| {
                    let mut v = json!({
                        "id_achievement": d.id,
                        "code": d.def.code,
                        "name": d.def.name,
                        "description": d.def.description,
                        "category": d.def.category,
                        "tier": d.def.tier,
                        "icon": d.def.icon,
                        "points": d.def.points,
                        "requirement_value": d.def.target,
                        "target": d.def.target,
                        "is_hidden": d.def.is_hidden,
                        "pack": d.def.pack,
                        "pack_version": d.def.pack_version,
                    });
                    if !d.def.metric.is_empty() {
                        v["requirement_type"] = json!(d.def.metric);
                        v["metric"] = json!(d.def.metric);
                    }
                    v
                })
                .collect();
            Ok(Value::Array(list))
        },
    )
    .await
}

pub async fn player(State(state): State<ApiState>, Path(guid): Path<String>) -> Response {
    let key = format!("achievements:player:{guid}");
    let s = state.clone();
    cached(&state, &key, ttl::PLAYER, async move {
        let r = &s.stores.relational;
        let defs = r.definitions().await?;
        let by_code: HashMap<&str, &opm_store::relational::StoredAchievement> =
            defs.iter().map(|d| (d.def.code.as_str(), d)).collect();
        let unlocks = r.unlocks_of(&guid).await?;
        let progress = r.progress_of(&guid).await?;
        let unlocked_codes: std::collections::HashSet<&str> =
            unlocks.iter().map(|u| u.code.as_str()).collect();
        let mut earned = 0i64;
        let unlocked: Vec<Value> = unlocks
            .iter()
            .map(|u| {
                let d = by_code.get(u.code.as_str());
                earned += d.map(|d| d.def.points as i64).unwrap_or(0);
                json!({
                    "id_achievement": d.map(|d| d.id),
                    "achievement_id": d.map(|d| d.id),
                    "code": u.code, "achievement_code": u.code, "slug": u.code,
                    "name": d.map(|d| d.def.name.as_str()).unwrap_or(u.code.as_str()),
                    "description": d.map(|d| d.def.description.as_str()).unwrap_or(""),
                    "category": d.map(|d| d.def.category.as_str()).unwrap_or(""),
                    "tier": d.map(|d| d.def.tier).unwrap_or(0),
                    "icon": d.map(|d| d.def.icon.as_str()).unwrap_or(""),
                    "points": d.map(|d| d.def.points).unwrap_or(0),
                    "requirement_value": d.and_then(|d| d.def.target),
                    "is_hidden": d.is_some_and(|d| d.def.is_hidden),
                    "player_guid": u.player,
                    "unlocked_date": u.unlocked_ms.div_euclid(1000),
                    "unlocked_at": rfc3339(u.unlocked_ms),
                    "match_id": u.match_id,
                    "event_id": u.event_id,
                    "source": u.source.as_str(),
                    "pack": u.pack,
                    "pack_version": u.pack_version,
                })
            })
            .collect();
        let progress: Vec<Value> = progress
            .iter()
            .map(|p| {
                let d = by_code.get(p.code.as_str());
                let percent = if p.target == 0 {
                    0.0
                } else {
                    (p.current as f64 * 100.0 / p.target as f64).min(100.0)
                };
                json!({
                    "id_achievement": d.map(|d| d.id),
                    "achievement_id": d.map(|d| d.id),
                    "code": p.code, "achievement_code": p.code,
                    "name": d.map(|d| d.def.name.as_str()).unwrap_or(p.code.as_str()),
                    "current_progress": p.current, "current": p.current, "progress": p.current,
                    "target": p.target, "requirement_value": p.target,
                    "progress_percent": round2(percent),
                    "unlocked": unlocked_codes.contains(p.code.as_str()),
                    "updated_at": rfc3339(p.updated_ms),
                })
            })
            .collect();
        let active: Vec<_> = defs.iter().filter(|d| d.active).collect();
        let total_points: i64 = active.iter().map(|d| d.def.points as i64).sum();
        let total = active.len();
        let completion = if total == 0 {
            0.0
        } else {
            unlocked.len() as f64 * 100.0 / total as f64
        };
        Ok(json!({
            "player_guid": guid,
            "unlocked": unlocked,
            "achievements": unlocked,
            "progress": progress,
            "total": total,
            "unlocked_count": unlocked.len(),
            "total_points": total_points,
            "earned_points": earned,
            "completion_percent": round2(completion.min(100.0)),
        }))
    })
    .await
}
