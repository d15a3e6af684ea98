//! A loaded pack version: its metadata, routing, `InstancePre` and one warm
//! instance slot per worker; and metadata validation.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use opm_model::Str;
use parking_lot::Mutex;
use wasmtime::Store;

use crate::bindings::pack::openmohaa::stats::meta::PackInfo;
use crate::bindings::pack::{AchievementPack, AchievementPackPre};
use crate::error::LoadError;
use crate::metrics::PackSeries;
use crate::routing::Router;
use crate::sandbox::StoreData;
use crate::state::FxSet;

/// A live instance and its store.
pub(crate) struct Warm {
    pub store: Store<StoreData>,
    pub bindings: AchievementPack,
}

/// One compiled, validated version of a pack.
pub(crate) struct PackVersion {
    pub id: Str,
    pub version: Str,
    pub path: PathBuf,
    pub sha256: String,
    pub info: PackInfo,
    pub codes: FxSet<Str>,
    pub router: Router,
    /// This version's metric series.
    pub series: PackSeries,
    pub config: Vec<(String, String)>,
    pub pre: AchievementPackPre<StoreData>,
    /// Warm instance per worker; only worker `w` touches `slots[w]`, the
    /// mutex is uncontended and exists to make that safe to share.
    pub slots: Vec<Mutex<Option<Warm>>>,
}

impl PackVersion {
    pub(crate) fn code(&self, code: &str) -> Option<Str> {
        self.codes.get(code).cloned()
    }
}

/// Checks what `describe` returned, on its own and against the codes of the
/// other loaded packs (`others`: code → pack id).
pub(crate) fn validate(info: &PackInfo, others: &HashMap<Str, Str>) -> Result<(), LoadError> {
    let bad = |m: String| Err(LoadError::Metadata(m));
    if info.id.trim().is_empty() {
        return bad("empty pack id".into());
    }
    if info.id != info.id.to_lowercase() || info.id.chars().any(char::is_whitespace) {
        return bad(format!(
            "pack id {:?} must be lower case without spaces",
            info.id
        ));
    }
    if info.version.trim().is_empty() {
        return bad("empty version".into());
    }
    if info.achievements.is_empty() {
        return bad("no achievements".into());
    }
    if info.subscriptions.is_empty() || info.subscriptions.iter().any(|s| s.kinds.is_empty()) {
        return bad("every pack needs at least one subscription, each naming event kinds".into());
    }
    let mut seen = HashSet::new();
    for a in &info.achievements {
        if a.code.trim().is_empty() || a.name.trim().is_empty() {
            return bad(format!("achievement {:?} needs a code and a name", a.code));
        }
        if a.code.len() > 128 {
            return bad(format!(
                "achievement code {:?} is longer than 128 bytes",
                a.code
            ));
        }
        if !(1..=10).contains(&a.tier) {
            return bad(format!(
                "achievement {:?}: tier {} is outside 1..=10",
                a.code, a.tier
            ));
        }
        if a.target < 1 {
            return bad(format!(
                "achievement {:?}: target must be at least 1",
                a.code
            ));
        }
        if !seen.insert(a.code.as_str()) {
            return bad(format!("achievement code {:?} is declared twice", a.code));
        }
        if let Some(pack) = others.get(a.code.as_str())
            && **pack != *info.id
        {
            return Err(LoadError::DuplicateCode {
                code: a.code.clone(),
                pack: pack.to_string(),
            });
        }
    }
    Ok(())
}

pub(crate) fn codes(info: &PackInfo) -> FxSet<Str> {
    info.achievements
        .iter()
        .map(|a| Str::from(a.code.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::pack::openmohaa::stats::meta::{Achievement, Subscription};
    use crate::bindings::wit::EventKind;

    fn info() -> PackInfo {
        PackInfo {
            id: "p".into(),
            version: "1.0.0".into(),
            achievements: vec![Achievement {
                code: "a".into(),
                name: "A".into(),
                description: String::new(),
                category: String::new(),
                tier: 1,
                points: 1,
                icon: String::new(),
                hidden: false,
                target: 1,
            }],
            subscriptions: vec![Subscription {
                kinds: vec![EventKind::PlayerKill],
                weapons: vec![],
                maps: vec![],
            }],
        }
    }

    #[test]
    fn metadata_lint() {
        let none = HashMap::new();
        assert!(validate(&info(), &none).is_ok());
        let mut i = info();
        i.achievements[0].tier = 11;
        assert!(validate(&i, &none).is_err());
        let mut i = info();
        i.achievements[0].target = 0;
        assert!(validate(&i, &none).is_err());
        let mut i = info();
        i.subscriptions.clear();
        assert!(validate(&i, &none).is_err());
        let mut i = info();
        i.achievements.push(i.achievements[0].clone());
        assert!(validate(&i, &none).is_err());
        let mut i = info();
        i.id = String::new();
        assert!(validate(&i, &none).is_err());
        let taken: HashMap<Str, Str> = [(Str::from("a"), Str::from("other"))].into();
        assert!(matches!(
            validate(&info(), &taken),
            Err(LoadError::DuplicateCode { .. })
        ));
        // The same pack's previous version may hold the code.
        let own: HashMap<Str, Str> = [(Str::from("a"), Str::from("p"))].into();
        assert!(validate(&info(), &own).is_ok());
    }
}
