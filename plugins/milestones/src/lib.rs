//! Lifetime milestones: the forum's kill ladder (`first_blood` at one kill
//! up to `god_of_war` at 100 000) and a headshot ladder around the
//! forum's `headhunter` (100) and `executioner` (1 000), with progress
//! towards the next rung.
//!
//! A kill is a `player_kill` or `bot_killed` credited to the attacker; a
//! suicide or a teamkill is not a kill. A headshot is a kill whose hit
//! location is the head or the helmet.

use opm_plugin_sdk::prelude::*;

/// Pack id, as the host and the forum know it.
pub const PACK_ID: &str = "milestones";

/// Lifetime counter of credited kills.
pub const KILLS: &str = "kills";
/// Lifetime counter of credited headshot kills.
pub const HEADSHOTS: &str = "headshots";

const fn kills(
    code: &'static str,
    name: &'static str,
    description: &'static str,
    threshold: u64,
) -> Achievement {
    Achievement::new(code, name, description)
        .category("basic")
        .icon("medal_kills")
        .rule(Rule::Milestone {
            stat: KILLS,
            threshold,
        })
}

const fn headshots(
    code: &'static str,
    name: &'static str,
    description: &'static str,
    threshold: u64,
) -> Achievement {
    Achievement::new(code, name, description)
        .category("tactical")
        .icon("medal_headshots")
        .rule(Rule::Milestone {
            stat: HEADSHOTS,
            threshold,
        })
}

/// Codes, names, descriptions and points of the kill ladder and the two
/// headshot rungs are the forum catalogue's; `headshot_rookie` and
/// `headshot_expert` are new rungs between them. Tiers grade difficulty.
pub const ACHIEVEMENTS: &[Achievement] = &[
    kills("first_blood", "First Blood", "Get your first kill", 1)
        .tier(1)
        .points(5),
    kills("marksman", "Marksman", "Get 100 kills", 100)
        .tier(2)
        .points(10),
    kills("soldier", "Soldier", "Get 500 kills", 500)
        .tier(3)
        .points(25),
    kills("veteran", "Veteran", "Get 1,000 kills", 1_000)
        .tier(4)
        .points(50),
    kills("war_hero", "War Hero", "Get 5,000 kills", 5_000)
        .tier(5)
        .points(100),
    kills("legend", "Legend", "Get 10,000 kills", 10_000)
        .tier(6)
        .points(250),
    kills("immortal", "Immortal", "Get 50,000 kills", 50_000)
        .tier(8)
        .points(500),
    kills("god_of_war", "God of War", "Get 100,000 kills", 100_000)
        .tier(10)
        .points(1000),
    headshots(
        "headshot_rookie",
        "Headshot Rookie",
        "Get 10 headshot kills",
        10,
    )
    .tier(2)
    .points(10),
    headshots("headhunter", "Headhunter", "Get 100 headshots", 100)
        .tier(3)
        .points(25),
    headshots(
        "headshot_expert",
        "Headshot Expert",
        "Get 500 headshot kills",
        500,
    )
    .tier(4)
    .points(50),
    headshots("executioner", "Executioner", "Get 1,000 headshots", 1_000)
        .tier(5)
        .points(100),
];

/// The pack. It keeps nothing in memory: every count is host state.
#[derive(Debug, Default)]
pub struct Milestones;

impl Pack for Milestones {
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
            ctx.count(&ev, killer, KILLS, 1, ACHIEVEMENTS);
            if ev.is_headshot() {
                ctx.count(&ev, killer, HEADSHOTS, 1, ACHIEVEMENTS);
            }
        }
        Ok(())
    }
}

export_pack!(Milestones);
