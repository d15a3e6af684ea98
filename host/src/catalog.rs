//! The achievement catalogue: what the loaded packs declare, kept in the
//! relational store (versioned per pack) so the read routes can name and
//! describe unlocks and list every definition.
//!
//! Synced once before the server takes requests, then whenever the
//! runtime's definitions revision changes (a load, hot reload, unload or
//! rollback). The watcher polls a hash, never touches the event path, and
//! retries a failed sync on its next tick.

use std::sync::Arc;
use std::time::Duration;

use opm_plugin_runtime::{PackDefinitions, PluginHost};
use opm_store::StoreError;
use opm_store::live::LiveStore;
use opm_store::relational::{AchievementDef, RelationalStore};

/// How often the watcher looks at the runtime's revision.
const POLL: Duration = Duration::from_secs(1);

/// Prefix of every cached response that shows definitions.
const CACHE_PREFIX: &str = "achievements:";

/// The store's form of one pack's declarations.
fn store_defs(pack: &PackDefinitions) -> Vec<AchievementDef> {
    pack.achievements
        .iter()
        .map(|a| AchievementDef {
            code: a.code.clone(),
            pack: pack.pack.clone(),
            pack_version: pack.version.clone(),
            name: a.name.clone(),
            description: a.description.clone(),
            category: a.category.clone(),
            tier: a.tier.into(),
            points: a.points,
            icon: a.icon.clone(),
            // The contract has no metric name; SMF's requirement_type stays
            // empty and the catalogue omits it.
            metric: String::new(),
            target: i64::try_from(a.target).ok(),
            is_hidden: a.hidden,
        })
        .collect()
}

/// Writes every loaded pack's definitions, then drops cached responses
/// that show definitions. Returns the number of definitions written.
pub async fn sync(
    host: &PluginHost,
    relational: &dyn RelationalStore,
    live: &dyn LiveStore,
) -> Result<usize, StoreError> {
    let mut written = 0;
    for pack in host.definitions() {
        let defs = store_defs(&pack);
        relational
            .sync_definitions(&pack.pack, &pack.version, &defs)
            .await?;
        written += defs.len();
    }
    // A stale cache only delays names by its TTL; not worth failing over.
    if let Err(e) = live.cache_invalidate(CACHE_PREFIX).await {
        tracing::warn!(error = %e, "achievement cache not invalidated");
    }
    Ok(written)
}

/// Syncs now, then again on every change of the loaded packs.
pub async fn start(
    host: PluginHost,
    relational: Arc<dyn RelationalStore>,
    live: Arc<dyn LiveStore>,
) -> tokio::task::JoinHandle<()> {
    let mut synced = sync_logged(&host, &*relational, &*live).await;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if synced != Some(host.definitions_revision()) {
                synced = sync_logged(&host, &*relational, &*live).await;
            }
        }
    })
}

/// Syncs; the revision synced, or `None` to retry.
async fn sync_logged(
    host: &PluginHost,
    relational: &dyn RelationalStore,
    live: &dyn LiveStore,
) -> Option<u64> {
    // Read before syncing: a reload in between is picked up next tick.
    let revision = host.definitions_revision();
    match sync(host, relational, live).await {
        Ok(n) => {
            tracing::info!(definitions = n, "achievement definitions synced");
            Some(revision)
        }
        Err(e) => {
            tracing::warn!(error = %e, "achievement definitions not synced; retrying");
            None
        }
    }
}
