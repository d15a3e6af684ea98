//! A well-behaved pack for the runtime's tests and benchmark, built on the
//! SDK as real packs are, so the tests and the benchmark go through the
//! SDK's counter cache and the host's `write-counters` as production does.
//! (The fault pack calls the raw imports directly.)
//!
//! It counts kills per player. Config keys (all optional):
//! * `id` (default `good-pack`) and `version` (default `1.0.0`);
//! * `prefix`: achievement code prefix (default: the id);
//! * `achievements`: how many achievements to declare (N, default 3):
//!   `streak-3` (three kills in one life) when N >= 2, `match-5` (five kills
//!   in one match) when N >= 3, and `kills-1 … kills-K` for the rest,
//!   unlocked when a player's lifetime kills reach k;
//! * `weapon`: only subscribe to kills with this weapon.
//!
//! Every kill makes four state calls: lifetime, life, round and match.

use opm_plugin_sdk::AchievementInfo;
use opm_plugin_sdk::prelude::*;

/// Codes are built once in `describe`, as the SDK's table and milestone
/// helpers build theirs: formatting a code for every outcome cost the
/// guest more than the host's whole handling of that outcome.
#[derive(Debug, Default)]
pub struct GoodPack {
    /// `kills[k - 1]` is the code of the k-kills achievement.
    kills: Vec<String>,
    streak: Option<String>,
    match5: Option<String>,
}

fn achievement(code: String, name: String, target: u64) -> AchievementInfo {
    AchievementInfo {
        code,
        name,
        description: String::from("test achievement"),
        category: String::from("basic"),
        tier: 1,
        points: 10,
        icon: String::new(),
        hidden: false,
        target,
    }
}

impl Pack for GoodPack {
    fn describe(&mut self, config: &Config) -> Result<PackInfo, PackError> {
        let id = config.get("id").unwrap_or("good-pack").to_string();
        let version = config.get("version").unwrap_or("1.0.0").to_string();
        let prefix = config.get("prefix").unwrap_or(&id).to_string();
        let total = config.get_u64("achievements", 3)?;
        if total < 1 {
            return Err(PackError::BadConfig(String::from(
                "achievements must be >= 1",
            )));
        }
        let streak = total >= 2;
        let match5 = total >= 3;
        let thresholds = total - streak as u64 - match5 as u64;
        let mut info = PackInfo::new(&id, &version);
        let kills: Vec<String> = (1..=thresholds)
            .map(|k| format!("{prefix}-kills-{k}"))
            .collect();
        for (k, code) in (1..).zip(&kills) {
            info = info.achievement(achievement(code.clone(), format!("{k} kills"), k));
        }
        let streak = streak.then(|| format!("{prefix}-streak-3"));
        if let Some(code) = &streak {
            info = info.achievement(achievement(code.clone(), String::from("Streak"), 3));
        }
        let match5 = match5.then(|| format!("{prefix}-match-5"));
        if let Some(code) = &match5 {
            info = info.achievement(achievement(code.clone(), String::from("Match five"), 5));
        }
        let mut sub = Subscription::kinds(&[EventKind::PlayerKill]);
        if let Some(w) = config.get("weapon") {
            sub = sub.weapons(&[w]);
        }
        *self = GoodPack {
            kills,
            streak,
            match5,
        };
        Ok(info.subscribe(sub))
    }

    fn on_batch(&mut self, ctx: &mut Ctx<'_>, batch: &Batch) -> Result<(), PackError> {
        for ev in batch.events() {
            let Some(p) = ev.actor() else { continue };
            let kills = ctx.lifetime(&ev, p).add("kills", 1) as u64;
            if let Some(code) = kills
                .checked_sub(1)
                .and_then(|k| self.kills.get(k as usize))
            {
                ctx.unlock(p, code, &ev);
            } else if let Some(code) = self.match5.as_deref().filter(|_| kills.is_multiple_of(10)) {
                ctx.progress(p, code, kills, kills + 10, &ev);
            }
            if ctx.per_life(&ev, p).add("streak", 1) == 3
                && let Some(code) = &self.streak
            {
                ctx.unlock(p, code, &ev);
            }
            ctx.per_round(&ev, p).add("round-kills", 1);
            if ctx.per_match(&ev, p).add("match-kills", 1) == 5
                && let Some(code) = &self.match5
            {
                ctx.unlock(p, code, &ev);
            }
        }
        Ok(())
    }
}

export_pack!(GoodPack);
