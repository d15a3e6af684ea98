//! Subscription routing: a pack only sees the events it asked for.

use std::collections::HashSet;

use opm_model::{Event, EventKind};

use crate::bindings::{kind_from_wit, pack::openmohaa::stats::meta::Subscription};

#[derive(Debug, Clone)]
struct Rule {
    kinds: Vec<bool>,
    weapons: HashSet<String>,
    maps: HashSet<String>,
}

/// A pack's subscriptions, compiled for matching.
#[derive(Debug, Clone)]
pub(crate) struct Router {
    /// Union of every rule's kinds: the quick reject.
    any_kind: Vec<bool>,
    rules: Vec<Rule>,
    kinds: Vec<EventKind>,
}

impl Router {
    pub(crate) fn new(subs: &[Subscription]) -> Router {
        let n = EventKind::ALL.len();
        let mut any_kind = vec![false; n];
        let rules = subs
            .iter()
            .map(|s| {
                let mut kinds = vec![false; n];
                for &k in &s.kinds {
                    let k = kind_from_wit(k) as usize;
                    kinds[k] = true;
                    any_kind[k] = true;
                }
                Rule {
                    kinds,
                    weapons: s.weapons.iter().cloned().collect(),
                    maps: s.maps.iter().cloned().collect(),
                }
            })
            .collect();
        let kinds = EventKind::ALL
            .iter()
            .copied()
            .filter(|&k| any_kind[k as usize])
            .collect();
        Router {
            any_kind,
            rules,
            kinds,
        }
    }

    /// Event kinds any subscription names.
    pub(crate) fn kinds(&self) -> &[EventKind] {
        &self.kinds
    }

    pub(crate) fn matches(&self, ev: &Event) -> bool {
        let k = ev.kind as usize;
        if !self.any_kind[k] {
            return false;
        }
        self.rules.iter().any(|r| {
            r.kinds[k]
                && (r.weapons.is_empty() || r.weapons.contains(&*ev.weapon))
                && (r.maps.is_empty() || r.maps.contains(&*ev.map))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::wit::EventKind as W;
    use opm_model::Str;

    fn sub(kinds: Vec<W>, weapons: &[&str], maps: &[&str]) -> Subscription {
        Subscription {
            kinds,
            weapons: weapons.iter().map(|s| s.to_string()).collect(),
            maps: maps.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn ev(kind: EventKind, weapon: &str, map: &str) -> Event {
        let mut e = Event::new(kind);
        e.weapon = Str::from(weapon);
        e.map = Str::from(map);
        e
    }

    #[test]
    fn kinds_weapons_and_maps_narrow() {
        let r = Router::new(&[
            sub(vec![W::PlayerKill], &["kar98"], &[]),
            sub(vec![W::Chat], &[], &["dm/mohdm1"]),
        ]);
        assert!(r.matches(&ev(EventKind::PlayerKill, "kar98", "x")));
        assert!(!r.matches(&ev(EventKind::PlayerKill, "thompson", "x")));
        assert!(r.matches(&ev(EventKind::Chat, "", "dm/mohdm1")));
        assert!(!r.matches(&ev(EventKind::Chat, "", "dm/mohdm2")));
        assert!(!r.matches(&ev(EventKind::Jump, "kar98", "dm/mohdm1")));
        assert_eq!(r.kinds(), &[EventKind::PlayerKill, EventKind::Chat]);
    }

    #[test]
    fn any_matching_subscription_delivers_once() {
        let r = Router::new(&[
            sub(vec![W::PlayerKill], &[], &[]),
            sub(vec![W::PlayerKill], &["kar98"], &[]),
        ]);
        assert!(r.matches(&ev(EventKind::PlayerKill, "kar98", "")));
        assert!(r.matches(&ev(EventKind::PlayerKill, "m1", "")));
    }
}
