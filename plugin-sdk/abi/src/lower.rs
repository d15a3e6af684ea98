//! Host events to a batch: strings become indices into a per-batch symbol
//! table (index 0 is ""), players indices into a per-batch player table,
//! events packed records. The host runtime sends exactly this; the SDK's
//! native harness builds it the same way, so a pack's tests see what the
//! server would give it.

use opm_model::{Event, Participant, Stance, Str, Team};
use rustc_hash::FxHashMap;

use crate::{EventRecord, ParticipantRecord};

/// One batch in contract form, plus the GUID behind every player index
/// (what the host's state bridge persists instead of the index).
#[derive(Debug, Clone, Default)]
pub struct LoweredBatch {
    /// Packed events ([`crate::EVENT_SIZE`] bytes each).
    pub events: Vec<u8>,
    /// Every symbol's text, concatenated.
    pub symbol_text: String,
    /// End offset of every symbol in `symbol_text`; symbol 0 is "".
    pub symbol_ends: Vec<u32>,
    /// (GUID symbol, name symbol) per player index.
    pub players: Vec<(u32, u32)>,
    /// (event index, name symbol, value symbol) of every extra field, by
    /// event then in the order the event has them.
    pub extras: Vec<(u32, u32, u32)>,
    /// GUID per player index.
    pub guids: Vec<Str>,
}

impl LoweredBatch {
    /// The text of symbol `sym` ("" when out of range).
    pub fn symbol(&self, sym: u32) -> &str {
        crate::symbol(&self.symbol_text, &self.symbol_ends, sym)
    }
}

struct Tables {
    out: LoweredBatch,
    symbol_index: FxHashMap<Str, u32>,
    player_index: FxHashMap<Str, u32>,
    /// Per string field of the event, the previous event's value and its
    /// symbol: consecutive events mostly share server, session, match,
    /// map and mode, and a comparison is cheaper than a hash lookup.
    last: [(Str, u32); FIELDS],
}

/// String fields of an event, in the order `lower` interns them.
const FIELDS: usize = 9;

impl Tables {
    /// `sym` for string field `field` of the event.
    fn field(&mut self, field: usize, s: &Str) -> u32 {
        let (last, sym) = &self.last[field];
        if **last == **s {
            return *sym;
        }
        let sym = self.sym(s);
        self.last[field] = (s.clone(), sym);
        sym
    }

    fn sym(&mut self, s: &Str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        if let Some(&i) = self.symbol_index.get(s) {
            return i;
        }
        let i = self.out.symbol_ends.len() as u32;
        self.out.symbol_text.push_str(s);
        self.out.symbol_ends.push(self.out.symbol_text.len() as u32);
        self.symbol_index.insert(s.clone(), i);
        i
    }

    fn player(&mut self, p: &Participant) -> u32 {
        if let Some(&i) = self.player_index.get(&p.guid) {
            return i;
        }
        let i = self.out.players.len() as u32;
        let ids = (self.sym(&p.guid), self.sym(&p.name));
        self.out.players.push(ids);
        self.out.guids.push(p.guid.clone());
        self.player_index.insert(p.guid.clone(), i);
        i
    }

    fn participant(&mut self, p: &Participant) -> ParticipantRecord {
        ParticipantRecord {
            player: self.player(p),
            team: match p.team {
                Team::None => 0,
                Team::Allies => 1,
                Team::Axis => 2,
                Team::Spectator => 3,
            },
            stance: match p.stance {
                Stance::Unknown => 0,
                Stance::Stand => 1,
                Stance::Crouch => 2,
                Stance::Prone => 3,
            },
            position: p.position.map(|v| [v.x, v.y, v.z]),
            pitch: p.pitch,
            yaw: p.yaw,
            health: p.health.unwrap_or(-1),
            life: p.life,
        }
    }
}

/// Lowers `events` (already routed) into one batch.
pub fn lower<'a>(events: impl IntoIterator<Item = &'a Event>) -> LoweredBatch {
    let events = events.into_iter();
    let mut t = Tables {
        out: LoweredBatch {
            events: Vec::with_capacity(events.size_hint().0 * crate::EVENT_SIZE),
            // Symbol 0 is "": it ends at byte 0.
            symbol_ends: vec![0],
            ..LoweredBatch::default()
        },
        symbol_index: FxHashMap::default(),
        player_index: FxHashMap::default(),
        last: std::array::from_fn(|_| (opm_model::event::empty(), 0)),
    };
    for (index, ev) in events.enumerate() {
        let actor = ev.actor.as_ref().map(|p| t.participant(p));
        let target = ev.target.as_ref().map(|p| t.participant(p));
        for (k, v) in &ev.extra {
            let field = (index as u32, t.sym(k), t.sym(v));
            t.out.extras.push(field);
        }
        let record = EventRecord {
            id: ev.id,
            // The model's kinds are the contract's cases in contract order
            // (checked by `kinds_are_the_contract_order` in the SDK).
            kind: ev.kind as u8,
            type_name: t.field(0, &ev.type_name),
            time_ms: ev.time_ms,
            server: t.field(1, &ev.server),
            session: t.field(2, &ev.session),
            match_id: t.field(3, &ev.match_id),
            round: ev.round,
            map_name: t.field(4, &ev.map),
            game_mode: t.field(5, &ev.game_mode),
            actor,
            target,
            weapon: t.field(6, &ev.weapon),
            means_of_death: t.field(7, &ev.means_of_death),
            hit_location: t.field(8, &ev.hit_location),
            damage: ev.damage,
            distance: ev.distance,
        };
        record.encode(&mut t.out.events);
    }
    t.out
}

#[cfg(test)]
mod tests {

    use opm_model::EventKind;

    use super::*;
    use crate::PackedEvent;

    #[test]
    fn symbols_and_players_are_interned_per_batch() {
        let mut a = Event::new(EventKind::PlayerKill);
        a.weapon = Str::from("kar98");
        a.map = Str::from("dm/mohdm1");
        a.actor = Some(Participant::new("g1"));
        a.target = Some(Participant::new("g2"));
        let mut b = a.clone();
        b.actor = Some(Participant::new("g2"));
        b.target = None;
        b.extra = vec![(Str::from("k"), Str::from("kar98"))];
        let l = lower([&a, &b]);
        let ev = |i| PackedEvent::at(&l.events, i).unwrap();
        assert_eq!(l.symbol(0), "");
        assert_eq!(l.symbol(ev(0).weapon()), "kar98");
        assert_eq!(l.symbol(ev(0).map_name()), "dm/mohdm1");
        assert_eq!(ev(1).weapon(), ev(0).weapon());
        assert_eq!(ev(0).kind(), EventKind::PlayerKill as u8);
        assert_eq!(l.extras, vec![(1, l.extras[0].1, ev(0).weapon())]);
        assert_eq!(l.symbol(l.extras[0].1), "k");
        assert_eq!(ev(0).hit_location(), 0);
        assert_eq!(l.guids.len(), 2);
        assert_eq!(ev(1).actor().unwrap().player(), 1);
        assert!(ev(1).target().is_none());
        assert_eq!(l.symbol(l.players[1].0), "g2");
        assert_eq!(ev(0).actor().unwrap().health(), -1);
    }

    #[test]
    fn a_field_that_changes_between_events_gets_its_own_symbol() {
        let weapons = ["kar98", "mp40", "mp40", "kar98", "", "kar98"];
        let events: Vec<Event> = weapons
            .iter()
            .map(|w| {
                let mut e = Event::new(EventKind::WeaponFire);
                // Fresh strings each time: equal text, different pointers.
                e.weapon = Str::from(*w);
                e
            })
            .collect();
        let l = lower(&events);
        for (i, w) in weapons.iter().enumerate() {
            let sym = PackedEvent::at(&l.events, i).unwrap().weapon();
            assert_eq!(l.symbol(sym), *w, "event {i}");
        }
        // One symbol per distinct text.
        let symbols: Vec<&str> = (0..l.symbol_ends.len() as u32)
            .map(|i| l.symbol(i))
            .collect();
        assert_eq!(symbols, ["", "weapon_fire", "kar98", "mp40"]);
    }
}
