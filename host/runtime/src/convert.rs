//! Model events to the WIT batch. The lowering itself (symbol table,
//! player table, packed events) is `opm_plugin_abi::lower`, shared with
//! the SDK's native harness; this module wraps it in the generated types
//! and caches it across packs.

use std::cell::RefCell;
use std::sync::Arc;

use opm_model::{Event, Str};

use crate::bindings::wit;

/// A WIT batch plus the player table's GUIDs, which the state bridge needs to
/// turn a `player-ref` back into a stable identity.
pub(crate) struct Lowered {
    pub batch: wit::Batch,
    pub guids: Vec<Str>,
}

/// Lowered batches of one `process` call, by selection: packs routed the
/// same events (the common case) share one lowering instead of each
/// building the same symbol and player tables.
#[derive(Default)]
pub(crate) struct LowerCache {
    done: RefCell<Vec<(Vec<usize>, Arc<Lowered>)>>,
}

impl LowerCache {
    /// The lowering of `sel` over `events`; one cache serves one `events`.
    pub(crate) fn get(&self, events: &[Event], sel: &[usize]) -> Arc<Lowered> {
        if let Some((_, l)) = self.done.borrow().iter().find(|(s, _)| s == sel) {
            return l.clone();
        }
        let l = Arc::new(lower(sel.iter().map(|&i| &events[i])));
        let mut done = self.done.borrow_mut();
        // Bisection lowers many halves of a failing batch; keep the cache
        // for the shapes that repeat across packs, not every half.
        if done.len() < 4 {
            done.push((sel.to_vec(), l.clone()));
        }
        l
    }
}

/// Lowers `events` (already routed) into one WIT batch, in the contract's
/// packed form (`opm_plugin_abi`).
pub(crate) fn lower<'a>(events: impl IntoIterator<Item = &'a Event>) -> Lowered {
    let l = opm_plugin_abi::lower::lower(events);
    Lowered {
        batch: wit::Batch {
            events: l.events,
            symbol_text: l.symbol_text,
            symbol_ends: l.symbol_ends,
            players: l
                .players
                .into_iter()
                .map(|(guid, name)| wit::PlayerInfo { guid, name })
                .collect(),
            extras: l
                .extras
                .into_iter()
                .map(|(event, name, value)| wit::ExtraField { event, name, value })
                .collect(),
        },
        guids: l.guids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opm_model::{EventKind, Participant};
    use opm_plugin_abi::PackedEvent;

    #[test]
    fn the_wit_batch_carries_the_abi_lowering() {
        let mut a = Event::new(EventKind::PlayerKill);
        a.weapon = Str::from("kar98");
        a.actor = Some(Participant::new("g1"));
        a.target = Some(Participant::new("g2"));
        let mut b = a.clone();
        b.extra = vec![(Str::from("k"), Str::from("v"))];
        let l = lower([&a, &b]);
        let ev = PackedEvent::at(&l.batch.events, 1).unwrap();
        assert_eq!(ev.kind(), EventKind::PlayerKill as u8);
        assert_eq!(ev.target().unwrap().player(), 1);
        assert_eq!(l.batch.players.len(), 2);
        assert_eq!(l.batch.players[1].guid, 2);
        assert_eq!(l.batch.extras.len(), 1);
        assert_eq!(l.batch.extras[0].event, 1);
        assert_eq!(l.guids, vec![Str::from("g1"), Str::from("g2")]);
    }
}
