//! Model events to the WIT batch: strings become indices into a per-batch
//! symbol table (index 0 is ""), players indices into a per-batch player
//! table, because lowering strings per event costs several times more than
//! lowering numbers.

use std::cell::RefCell;
use std::sync::Arc;

use opm_model::{Event, Participant, Stance, Str, Team};

use crate::bindings::{kind_to_wit, wit};
use crate::state::FxMap;

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

#[derive(Default)]
struct Tables {
    text: String,
    ends: Vec<u32>,
    symbol_index: FxMap<Str, u32>,
    players: Vec<wit::PlayerInfo>,
    guids: Vec<Str>,
    player_index: FxMap<Str, u32>,
}

impl Tables {
    fn sym(&mut self, s: &Str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&i) = self.symbol_index.get(s) {
            return i;
        }
        let i = self.ends.len() as u32;
        self.text.push_str(s);
        self.ends.push(self.text.len() as u32);
        self.symbol_index.insert(s.clone(), i);
        i
    }

    fn player(&mut self, p: &Participant) -> u32 {
        if let Some(&i) = self.player_index.get(&p.guid) {
            return i;
        }
        let i = self.players.len() as u32;
        let (guid, name) = (self.sym(&p.guid), self.sym(&p.name));
        self.players.push(wit::PlayerInfo { guid, name });
        self.guids.push(p.guid.clone());
        self.player_index.insert(p.guid.clone(), i);
        i
    }

    fn participant(&mut self, p: &Participant) -> wit::Participant {
        wit::Participant {
            player: self.player(p),
            team: match p.team {
                Team::None => wit::Team::None,
                Team::Allies => wit::Team::Allies,
                Team::Axis => wit::Team::Axis,
                Team::Spectator => wit::Team::Spectator,
            },
            position: p.position.map(|v| wit::Vec3 {
                x: v.x,
                y: v.y,
                z: v.z,
            }),
            pitch: p.pitch,
            yaw: p.yaw,
            stance: match p.stance {
                Stance::Unknown => wit::Stance::Unknown,
                Stance::Stand => wit::Stance::Stand,
                Stance::Crouch => wit::Stance::Crouch,
                Stance::Prone => wit::Stance::Prone,
            },
            health: p.health.unwrap_or(-1),
            life: p.life,
        }
    }
}

/// Lowers `events` (already routed) into one WIT batch.
pub(crate) fn lower<'a>(events: impl IntoIterator<Item = &'a Event>) -> Lowered {
    let mut t = Tables {
        // Symbol 0 is "": it ends at byte 0.
        ends: vec![0],
        ..Tables::default()
    };
    let mut out = Vec::new();
    let mut extras = Vec::new();
    for ev in events {
        let actor = ev.actor.as_ref().map(|p| t.participant(p));
        let target = ev.target.as_ref().map(|p| t.participant(p));
        let index = out.len() as u32;
        extras.extend(ev.extra.iter().map(|(k, v)| wit::ExtraField {
            event: index,
            name: t.sym(k),
            value: t.sym(v),
        }));
        out.push(wit::Event {
            id: ev.id,
            kind: kind_to_wit(ev.kind),
            type_name: t.sym(&ev.type_name),
            time_ms: ev.time_ms,
            server: t.sym(&ev.server),
            session: t.sym(&ev.session),
            match_id: t.sym(&ev.match_id),
            round: ev.round,
            map_name: t.sym(&ev.map),
            game_mode: t.sym(&ev.game_mode),
            actor,
            target,
            weapon: t.sym(&ev.weapon),
            means_of_death: t.sym(&ev.means_of_death),
            hit_location: t.sym(&ev.hit_location),
            damage: ev.damage,
            distance: ev.distance,
        });
    }
    Lowered {
        batch: wit::Batch {
            events: out,
            symbol_text: t.text,
            symbol_ends: t.ends,
            players: t.players,
            extras,
        },
        guids: t.guids,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opm_model::EventKind;

    #[test]
    fn symbols_and_players_are_interned_per_batch() {
        let mut a = Event::new(EventKind::PlayerKill);
        a.weapon = Arc::from("kar98");
        a.map = Arc::from("dm/mohdm1");
        a.actor = Some(Participant::new("g1"));
        a.target = Some(Participant::new("g2"));
        let mut b = a.clone();
        b.actor = Some(Participant::new("g2"));
        b.target = None;
        b.extra = vec![(Arc::from("k"), Arc::from("kar98"))];
        let l = lower([&a, &b]);
        let sym = |i: u32| {
            let b = &l.batch;
            let start = if i == 0 {
                0
            } else {
                b.symbol_ends[i as usize - 1]
            };
            &b.symbol_text[start as usize..b.symbol_ends[i as usize] as usize]
        };
        assert_eq!(sym(0), "");
        assert_eq!(sym(l.batch.events[0].weapon), "kar98");
        assert_eq!(sym(l.batch.events[0].map_name), "dm/mohdm1");
        assert_eq!(l.batch.events[1].weapon, l.batch.events[0].weapon);
        assert_eq!(l.batch.extras.len(), 1);
        assert_eq!(l.batch.extras[0].event, 1);
        assert_eq!(l.batch.extras[0].value, l.batch.events[0].weapon);
        assert_eq!(l.batch.events[0].hit_location, 0);
        assert_eq!(l.guids.len(), 2);
        assert_eq!(l.batch.events[1].actor.as_ref().unwrap().player, 1);
        assert_eq!(sym(l.batch.players[1].guid), "g2");
        assert_eq!(l.batch.events[0].actor.as_ref().unwrap().health, -1);
    }
}
