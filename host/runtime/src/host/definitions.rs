//! The achievement catalogue of the loaded packs, as their `describe()`
//! declared it, for whoever keeps definitions elsewhere (the relational
//! store, the forum's catalogue). Read from the packs' current versions, so
//! it follows loads, hot reloads, unloads and rollbacks.

use std::hash::{DefaultHasher, Hash, Hasher};

use super::PluginHost;

/// One achievement a pack declares.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AchievementDefinition {
    pub code: String,
    pub name: String,
    pub description: String,
    pub category: String,
    /// 1 (easiest) to 10.
    pub tier: u8,
    pub points: i32,
    pub icon: String,
    /// Not listed until unlocked.
    pub hidden: bool,
    /// What progress counts towards; 1 for a one-off feat.
    pub target: u64,
}

/// Everything one loaded pack (its current version) declares.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PackDefinitions {
    pub pack: String,
    pub version: String,
    /// Of the component, so a rebuild under the same version is visible.
    pub sha256: String,
    pub achievements: Vec<AchievementDefinition>,
}

impl PluginHost {
    /// The definitions of every loaded pack, in load order.
    pub fn definitions(&self) -> Vec<PackDefinitions> {
        self.inner
            .packs
            .load()
            .iter()
            .map(|e| {
                let v = e.current.load();
                PackDefinitions {
                    pack: v.id.to_string(),
                    version: v.version.to_string(),
                    sha256: v.sha256.clone(),
                    achievements: v
                        .info
                        .achievements
                        .iter()
                        .map(|a| AchievementDefinition {
                            code: a.code.clone(),
                            name: a.name.clone(),
                            description: a.description.clone(),
                            category: a.category.clone(),
                            tier: a.tier,
                            points: a.points,
                            icon: a.icon.clone(),
                            hidden: a.hidden,
                            target: a.target,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// Changes whenever the set of loaded pack versions changes (load, hot
    /// reload, unload, rollback); cheap enough to poll. Equal revisions
    /// mean [`PluginHost::definitions`] would answer the same.
    pub fn definitions_revision(&self) -> u64 {
        let mut h = DefaultHasher::new();
        for e in self.inner.packs.load().iter() {
            let v = e.current.load();
            v.id.hash(&mut h);
            v.sha256.hash(&mut h);
        }
        h.finish()
    }
}
