//! Kill streaks in one life and multi-kills in a few seconds of event time.
//!
//! * Streaks: `killing_spree` (5), `unstoppable` (10), `rampage` (15) and
//!   `godlike` (25) kills without dying. The count lives in the host's
//!   life scope, so it starts again after every death or respawn.
//! * Multi-kills: `double_kill`, `triple_kill`, `ultra_kill` and
//!   `monster_kill` for 2, 3, 4 and 5 kills within 3 seconds, as the forum
//!   catalogue describes them (upstream's code used a 4-second wall-clock
//!   TTL; this uses event time, so replays agree with live play).
//!
//! A kill is a `player_kill` or `bot_killed` credited to the attacker; a
//! suicide or a teamkill is neither a kill nor a streak breaker (the
//! suicide ends the life, which is what resets the streak).

use opm_plugin_sdk::prelude::*;

pub const PACK_ID: &str = "streaks";

/// Kills in the current life.
pub const STREAK: &str = "streak";
/// Kills, for the multi-kill window.
pub const KILLS: &str = "kills";
/// "Within 3 seconds".
pub const MULTI_KILL_WINDOW_MS: i64 = 3_000;

const fn streak(
    code: &'static str,
    name: &'static str,
    description: &'static str,
    n: u64,
) -> Achievement {
    Achievement::new(code, name, description)
        .category("tactical")
        .icon("streak")
        .rule(Rule::Streak { stat: STREAK, n })
}

const fn multi(
    code: &'static str,
    name: &'static str,
    description: &'static str,
    n: u32,
) -> Achievement {
    Achievement::new(code, name, description)
        .category("tactical")
        .icon("multi_kill")
        .rule(Rule::Window {
            stat: KILLS,
            n,
            window_ms: MULTI_KILL_WINDOW_MS,
        })
}

/// Names, descriptions and points are the forum catalogue's;
/// `killing_spree` comes from the old PostgreSQL seed.
pub const ACHIEVEMENTS: &[Achievement] = &[
    streak(
        "killing_spree",
        "Killing Spree",
        "Kill 5 enemies without dying",
        5,
    )
    .tier(2)
    .points(10),
    streak("unstoppable", "Unstoppable", "Get a 10 killstreak", 10)
        .tier(3)
        .points(75),
    streak("rampage", "Rampage", "Get a 15 killstreak", 15)
        .tier(4)
        .points(100),
    streak("godlike", "GODLIKE", "Get a 25 killstreak", 25)
        .tier(6)
        .points(200),
    multi(
        "double_kill",
        "Double Kill",
        "Kill 2 enemies within 3 seconds",
        2,
    )
    .tier(2)
    .points(25),
    multi(
        "triple_kill",
        "Triple Kill",
        "Kill 3 enemies within 3 seconds",
        3,
    )
    .tier(3)
    .points(50),
    multi(
        "ultra_kill",
        "ULTRA KILL",
        "Kill 4 enemies within 3 seconds",
        4,
    )
    .tier(4)
    .points(100),
    multi(
        "monster_kill",
        "M-M-MONSTER KILL",
        "Kill 5+ enemies within 3 seconds",
        5,
    )
    .tier(6)
    .points(200),
];

#[derive(Debug, Default)]
pub struct Streaks;

impl Pack for Streaks {
    fn describe(&mut self, _config: &Config) -> Result<PackInfo, PackError> {
        Ok(PackInfo::new(PACK_ID, env!("CARGO_PKG_VERSION"))
            .achievements(ACHIEVEMENTS)
            .subscribe(Subscription::kinds(&[
                EventKind::PlayerKill,
                EventKind::BotKilled,
            ])))
    }

    fn on_batch(&mut self, ctx: &mut Ctx<'_>, batch: &Batch) -> Result<(), PackError> {
        for ev in batch.events() {
            let Some(killer) = ev.credited_kill() else {
                continue;
            };
            ctx.streak(&ev, killer, STREAK, ACHIEVEMENTS);
            ctx.window(&ev, killer, KILLS, ACHIEVEMENTS);
        }
        Ok(())
    }
}

export_pack!(Streaks);
