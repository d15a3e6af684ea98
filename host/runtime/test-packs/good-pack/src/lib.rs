//! A well-behaved pack for the runtime's tests and benchmark, written
//! against the raw WIT bindings (no SDK) so the runtime is tested on its
//! own.
//!
//! It counts kills per player. Config keys (all optional):
//! * `id` (default `good-pack`) and `version` (default `1.0.0`);
//! * `prefix`: achievement code prefix (default: the id);
//! * `achievements`: how many achievements to declare (N, default 3):
//!   `streak-3` (three kills in one life) when N >= 2, `match-5` (five kills
//!   in one match) when N >= 3, and `kills-1 … kills-K` for the rest,
//!   unlocked when a player's lifetime kills reach k;
//! * `weapon`: only subscribe to kills with this weapon.

wit_bindgen::generate!({
    path: "../../../../wit",
    world: "achievement-pack",
});

use openmohaa::stats::meta::{Achievement, Progress, Subscription, Unlock};
use openmohaa::stats::state::{self, Scope};
use openmohaa::stats::types::EventKind;
use std::cell::RefCell;

struct Config {
    prefix: String,
    thresholds: u64,
    streak: bool,
    match5: bool,
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

fn get<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn achievement(code: String, name: String, target: u64) -> Achievement {
    Achievement {
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

struct Pack;

impl Guest for Pack {
    fn describe(config: Vec<(String, String)>) -> Result<PackInfo, PluginError> {
        let id = get(&config, "id").unwrap_or("good-pack").to_string();
        let version = get(&config, "version").unwrap_or("1.0.0").to_string();
        let prefix = get(&config, "prefix").unwrap_or(&id).to_string();
        let total: u64 = match get(&config, "achievements") {
            Some(n) => n
                .parse()
                .map_err(|_| PluginError::BadConfig(format!("achievements: {n}")))?,
            None => 3,
        };
        if total < 1 {
            return Err(PluginError::BadConfig(String::from(
                "achievements must be >= 1",
            )));
        }
        let streak = total >= 2;
        let match5 = total >= 3;
        let thresholds = total - streak as u64 - match5 as u64;
        let mut achievements: Vec<Achievement> = (1..=thresholds)
            .map(|k| achievement(format!("{prefix}-kills-{k}"), format!("{k} kills"), k))
            .collect();
        if streak {
            achievements.push(achievement(
                format!("{prefix}-streak-3"),
                String::from("Streak"),
                3,
            ));
        }
        if match5 {
            achievements.push(achievement(
                format!("{prefix}-match-5"),
                String::from("Match five"),
                5,
            ));
        }
        let weapons = get(&config, "weapon")
            .map(|w| vec![w.to_string()])
            .unwrap_or_default();
        CONFIG.with(|c| {
            *c.borrow_mut() = Some(Config {
                prefix,
                thresholds,
                streak,
                match5,
            })
        });
        Ok(PackInfo {
            id,
            version,
            achievements,
            subscriptions: vec![Subscription {
                kinds: vec![EventKind::PlayerKill],
                weapons,
                maps: Vec::new(),
            }],
        })
    }

    fn on_batch(batch: Batch) -> Result<Vec<Outcome>, PluginError> {
        CONFIG.with(|c| {
            let c = c.borrow();
            let Some(config) = c.as_ref() else {
                return Err(PluginError::Internal(String::from(
                    "describe was not called",
                )));
            };
            let mut out = Vec::new();
            for (i, ev) in batch.events.iter().enumerate() {
                let Some(actor) = &ev.actor else { continue };
                let at = i as u32;
                let p = actor.player;
                let kills = state::add(at, Scope::Lifetime, p, "kills", 1) as u64;
                if kills <= config.thresholds {
                    out.push(Outcome::Unlock(Unlock {
                        player: p,
                        code: format!("{}-kills-{kills}", config.prefix),
                        event_id: ev.id,
                    }));
                } else if config.match5 && kills.is_multiple_of(10) {
                    out.push(Outcome::Progress(Progress {
                        player: p,
                        code: format!("{}-match-5", config.prefix),
                        current: kills,
                        target: kills + 10,
                        event_id: ev.id,
                    }));
                }
                if state::add(at, Scope::Life, p, "streak", 1) == 3 && config.streak {
                    out.push(Outcome::Unlock(Unlock {
                        player: p,
                        code: format!("{}-streak-3", config.prefix),
                        event_id: ev.id,
                    }));
                }
                state::add(at, Scope::Round, p, "round-kills", 1);
                if state::add(at, Scope::Match, p, "match-kills", 1) == 5 && config.match5 {
                    out.push(Outcome::Unlock(Unlock {
                        player: p,
                        code: format!("{}-match-5", config.prefix),
                        event_id: ev.id,
                    }));
                }
            }
            Ok(out)
        })
    }
}

export!(Pack);
