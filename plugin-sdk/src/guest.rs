//! The Wasm side: generated bindings and the glue between them and the
//! author-facing types. Only compiled for `wasm32`.

use opm_plugin_abi::counters::{COUNTER_WRITE_SIZE, CounterOp as AbiOp, CounterWriteRecord};

use crate::keys::KeyTable;
use crate::state::{Backend, CounterOp, CounterWrite, Level, Scope};
use crate::{Batch, Config, EventKind, Outcome, Pack, PackError, PlayerRef};

#[doc(hidden)]
// The generated export glue takes the batch record flattened (ten
// pointer/length words): the canonical ABI's shape, not ours.
#[allow(clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "achievement-pack",
        pub_export_macro: true,
        export_macro_name: "__opm_export_world",
        default_bindings_module: "::opm_plugin_sdk::guest::bindings",
    });
}

use bindings::openmohaa::stats::{log as wlog, meta, state as wstate, types};

pub type WitPackInfo = meta::PackInfo;
pub type WitPluginError = types::PluginError;
pub type WitBatch = types::Batch;
pub type WitOutcome = meta::Outcome;

fn wit_error(e: PackError) -> WitPluginError {
    match e {
        PackError::BadConfig(m) => types::PluginError::BadConfig(m),
        PackError::Internal(m) => types::PluginError::Internal(m),
    }
}

fn kind_to_wit(kind: EventKind) -> types::EventKind {
    // SAFETY: both enums list the contract's kinds in the same order and
    // the SDK's list is checked against the contract by a native test, so
    // every discriminant of `kind` is a valid generated discriminant.
    unsafe { types::EventKind::_lift(kind as u8) }
}

/// Builds the pack on first use and describes it.
pub fn describe<P: Pack>(
    slot: &mut Option<P>,
    config: Vec<(String, String)>,
) -> Result<WitPackInfo, WitPluginError> {
    let pack = slot.get_or_insert_with(P::default);
    let info = pack.describe(&Config::new(config)).map_err(wit_error)?;
    info.validate().map_err(wit_error)?;
    Ok(meta::PackInfo {
        id: info.id,
        version: info.version,
        achievements: info
            .achievements
            .into_iter()
            .map(|a| meta::Achievement {
                code: a.code,
                name: a.name,
                description: a.description,
                category: a.category,
                tier: a.tier,
                points: a.points,
                icon: a.icon,
                hidden: a.hidden,
                target: a.target,
            })
            .collect(),
        subscriptions: info
            .subscriptions
            .into_iter()
            .map(|s| meta::Subscription {
                kinds: s.kinds.into_iter().map(kind_to_wit).collect(),
                weapons: s.weapons,
                maps: s.maps,
            })
            .collect(),
    })
}

fn batch(b: WitBatch) -> Batch {
    let players = b.players.into_iter().map(|p| (p.guid, p.name)).collect();
    let extras = b
        .extras
        .into_iter()
        .map(|x| (x.event, x.name, x.value))
        .collect();
    Batch::from_wire(b.events, b.symbol_text, b.symbol_ends, players, extras)
}

/// The real host imports. Keys cross as ids the host interned
/// (`state.key`); the table of ids lives as long as the instance, as the
/// host's does.
struct Imports;

thread_local! {
    static KEY_IDS: std::cell::RefCell<KeyIds> = std::cell::RefCell::default();
}

/// Key name → host key id, for this instance.
#[derive(Default)]
struct KeyIds {
    names: KeyTable,
    /// Host id by index in `names`.
    ids: Vec<u32>,
}

fn key_id(name: &str) -> u32 {
    KEY_IDS.with(|k| {
        let mut k = k.borrow_mut();
        if let Some(i) = k.names.get(name) {
            return k.ids[i as usize];
        }
        let id = wstate::key(name);
        let i = k.names.intern(name);
        debug_assert_eq!(i as usize, k.ids.len());
        k.ids.push(id);
        id
    })
}

fn scope(s: Scope) -> wstate::Scope {
    match s {
        Scope::Lifetime => wstate::Scope::Lifetime,
        Scope::Session => wstate::Scope::Session,
        Scope::Match => wstate::Scope::Match,
        Scope::Round => wstate::Scope::Round,
        Scope::Life => wstate::Scope::Life,
    }
}

impl Backend for Imports {
    fn add(&mut self, at: u32, s: Scope, player: PlayerRef, key: &str, delta: i64) -> i64 {
        wstate::add(at, scope(s), player, key_id(key), delta)
    }
    fn get(&mut self, at: u32, s: Scope, player: PlayerRef, key: &str) -> i64 {
        wstate::get(at, scope(s), player, key_id(key))
    }
    fn get_many(&mut self, at: u32, s: Scope, keys: &[(PlayerRef, &str)]) -> Vec<i64> {
        let keys: Vec<(PlayerRef, u32)> = keys.iter().map(|(p, k)| (*p, key_id(k))).collect();
        wstate::get_many(at, scope(s), &keys)
    }
    fn put(&mut self, at: u32, s: Scope, player: PlayerRef, key: &str, value: i64) {
        wstate::put(at, scope(s), player, key_id(key), value)
    }
    fn put_blob(&mut self, at: u32, s: Scope, player: PlayerRef, key: &str, value: &[u8]) {
        wstate::put_blob(at, scope(s), player, key_id(key), value)
    }
    fn get_blob(&mut self, at: u32, s: Scope, player: PlayerRef, key: &str) -> Vec<u8> {
        wstate::get_blob(at, scope(s), player, key_id(key))
    }
    fn set_insert(
        &mut self,
        at: u32,
        s: Scope,
        player: PlayerRef,
        key: &str,
        member: &str,
    ) -> bool {
        wstate::set_insert(at, scope(s), player, key_id(key), member)
    }
    fn set_count(&mut self, at: u32, s: Scope, player: PlayerRef, key: &str) -> u32 {
        wstate::set_count(at, scope(s), player, key_id(key))
    }
    fn write_counters(&mut self, writes: &[CounterWrite<'_>]) {
        let mut packed = Vec::with_capacity(writes.len() * COUNTER_WRITE_SIZE);
        for w in writes {
            let (op, value) = match w.op {
                CounterOp::Add(d) => (AbiOp::Add, d),
                CounterOp::Put(v) => (AbiOp::Put, v),
            };
            CounterWriteRecord {
                at: w.at,
                scope: scope(w.scope) as u8,
                op,
                player: w.player,
                key: key_id(w.key),
                value,
            }
            .encode(&mut packed);
        }
        wstate::write_counters(&packed)
    }
    fn log(&mut self, level: Level, message: &str) {
        let level = match level {
            Level::Debug => wlog::Level::Debug,
            Level::Info => wlog::Level::Info,
            Level::Warn => wlog::Level::Warn,
            Level::Error => wlog::Level::Error,
        };
        wlog::emit(level, message)
    }
}

/// Runs one batch through the pack.
pub fn on_batch<P: Pack>(
    slot: &mut Option<P>,
    b: WitBatch,
) -> Result<Vec<WitOutcome>, WitPluginError> {
    let pack = slot.get_or_insert_with(P::default);
    let batch = batch(b);
    let outcomes = crate::cache::run_batch(pack, &mut Imports, &batch).map_err(wit_error)?;
    Ok(outcomes
        .into_iter()
        .map(|o| match o {
            Outcome::Unlock {
                player,
                code,
                event_id,
            } => meta::Outcome::Unlock(meta::Unlock {
                player,
                code,
                event_id,
            }),
            Outcome::Progress {
                player,
                code,
                current,
                target,
                event_id,
            } => meta::Outcome::Progress(meta::Progress {
                player,
                code,
                current,
                target,
                event_id,
            }),
        })
        .collect())
}
