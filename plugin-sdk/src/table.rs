//! Declarative achievement tables: many achievements as data, with their
//! thresholds, from which `describe()` is built and which the rule helpers
//! evaluate.
//!
//! ```
//! use opm_plugin_sdk::{Achievement, Rule};
//!
//! const TABLE: &[Achievement] = &[
//!     Achievement::new("first_blood", "First Blood", "Get your first kill")
//!         .category("basic").tier(1).points(5)
//!         .rule(Rule::Milestone { stat: "kills", threshold: 1 }),
//!     Achievement::new("double_kill", "Double Kill", "Kill 2 enemies within 3 seconds")
//!         .category("tactical").tier(3).points(25)
//!         .rule(Rule::Window { stat: "kills", n: 2, window_ms: 3_000 }),
//! ];
//! assert_eq!(TABLE[0].info().target, 1);
//! ```

use crate::pack::AchievementInfo;

/// How an achievement is earned, as far as the SDK helpers are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// A lifetime counter `stat` reaches `threshold`; progress counts
    /// towards it. Evaluated by [`Ctx::count`](crate::Ctx::count).
    Milestone { stat: &'static str, threshold: u64 },
    /// `n` in one life (reset on death and respawn). Evaluated by
    /// [`Ctx::streak`](crate::Ctx::streak).
    Streak { stat: &'static str, n: u64 },
    /// `n` within `window_ms` of event time (multi-kills). Evaluated by
    /// [`Ctx::window`](crate::Ctx::window).
    Window {
        stat: &'static str,
        n: u32,
        window_ms: i64,
    },
    /// `n` distinct members of the lifetime set `set`. Evaluated by
    /// [`Ctx::distinct`](crate::Ctx::distinct).
    Distinct { set: &'static str, n: u32 },
    /// When the player's match ends, their match counter `stat` lies in
    /// `min..=max`. Counted with [`Ctx::count_in_match`](crate::Ctx::count_in_match),
    /// evaluated by [`Ctx::finish_match`](crate::Ctx::finish_match) on the
    /// player's `match_outcome`.
    PerMatch {
        stat: &'static str,
        min: i64,
        max: i64,
    },
    /// The pack awards it itself; `target` is what progress counts to.
    Custom { target: u64 },
}

/// One achievement, declared as a `const`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Achievement {
    pub code: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub category: &'static str,
    pub tier: u8,
    pub points: i32,
    pub icon: &'static str,
    pub hidden: bool,
    pub rule: Rule,
}

impl Achievement {
    /// A one-off feat in category "basic", tier 1, 10 points; refine it
    /// with the builder methods.
    pub const fn new(
        code: &'static str,
        name: &'static str,
        description: &'static str,
    ) -> Achievement {
        Achievement {
            code,
            name,
            description,
            category: "basic",
            tier: 1,
            points: 10,
            icon: "",
            hidden: false,
            rule: Rule::Custom { target: 1 },
        }
    }

    pub const fn category(mut self, category: &'static str) -> Achievement {
        self.category = category;
        self
    }

    pub const fn tier(mut self, tier: u8) -> Achievement {
        self.tier = tier;
        self
    }

    pub const fn points(mut self, points: i32) -> Achievement {
        self.points = points;
        self
    }

    pub const fn icon(mut self, icon: &'static str) -> Achievement {
        self.icon = icon;
        self
    }

    pub const fn hidden(mut self) -> Achievement {
        self.hidden = true;
        self
    }

    pub const fn rule(mut self, rule: Rule) -> Achievement {
        self.rule = rule;
        self
    }

    /// What progress counts towards: the threshold of a milestone or a
    /// distinct set, 1 for feats.
    pub const fn target(&self) -> u64 {
        match self.rule {
            Rule::Milestone { threshold, .. } => threshold,
            Rule::Distinct { n, .. } => n as u64,
            Rule::Custom { target } => target,
            Rule::Streak { .. } | Rule::Window { .. } | Rule::PerMatch { .. } => 1,
        }
    }

    /// The metadata record the host lists.
    pub fn info(&self) -> AchievementInfo {
        AchievementInfo {
            code: self.code.to_string(),
            name: self.name.to_string(),
            description: self.description.to_string(),
            category: self.category.to_string(),
            tier: self.tier,
            points: self.points,
            icon: self.icon.to_string(),
            hidden: self.hidden,
            target: self.target(),
        }
    }
}
