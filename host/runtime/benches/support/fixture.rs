//! What `benches/plugin_stage.rs` and `examples/stage_count.rs` share:
//! a discarding state store, a 16-player kill feed through the real
//! tracker, and hosts loaded with the bench's packs.

use std::path::Path;

use std::sync::Arc;

use opm_model::plugin::{Commit, StateError, StateKey, StateStore, StateValue};
use opm_model::tracker::{SYNTHETIC_ID_BITS, Tracker};
use opm_model::{Event, EventKind, Participant, Str};
use opm_plugin_runtime::{PluginHost, RuntimeConfig};

/// The allocator of the `opm-stats` binary, so the plugin stage is measured
/// as the server runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub const BATCH: usize = 64;
pub const PACKS: usize = 4;

/// Commits go nowhere: the benchmark measures the runtime, not a store.
pub struct Discard;

impl StateStore for Discard {
    fn load_pack(&self, _: &str) -> Result<Vec<(StateKey, StateValue)>, StateError> {
        Ok(Vec::new())
    }
    fn positions(&self, _: &str) -> Result<Vec<(Str, u64)>, StateError> {
        Ok(Vec::new())
    }
    fn commit(&self, _: &Commit) -> Result<(), StateError> {
        Ok(())
    }
}

/// An endless kill feed on one server, through the real tracker.
pub struct Feed {
    tracker: Tracker,
    seq: u64,
    rng: u64,
}

impl Feed {
    pub fn batch(&mut self) -> Vec<Event> {
        let mut out = Vec::with_capacity(BATCH + 8);
        while out.len() < BATCH {
            self.seq += 1;
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let a = (self.rng % 16) as usize;
            let t = (a + 1 + (self.rng >> 8) as usize % 15) % 16;
            let mut ev = Event::new(EventKind::PlayerKill);
            ev.id = self.seq << SYNTHETIC_ID_BITS;
            ev.server = Str::from("srv");
            ev.session = Str::from("sess");
            ev.time_ms = 1_700_000_000_000 + self.seq as i64 * 500;
            ev.map = Str::from("dm/mohdm1");
            ev.weapon = Str::from("kar98");
            ev.hit_location = Str::from(if self.seq.is_multiple_of(4) {
                "head"
            } else {
                "torso"
            });
            ev.actor = Some(Participant::new(format!("p{a}").as_str()));
            ev.target = Some(Participant::new(format!("p{t}").as_str()));
            let mut tracked = Vec::new();
            self.tracker.process(ev, &mut tracked);
            out.extend(
                tracked
                    .into_iter()
                    .filter(|e| e.kind == EventKind::PlayerKill),
            );
        }
        out.truncate(BATCH);
        out
    }
}

/// `PACKS` copies of the good pack declaring `achievements` achievements.
pub fn good_packs(wasm: &Path, achievements: usize, dir: &Path, max_instances: u32) -> PluginHost {
    let packs = dir.join(format!("packs-{achievements}"));
    std::fs::create_dir_all(&packs).unwrap();
    let mut cfg = RuntimeConfig::new(dir.join("cache"));
    cfg.workers = 1;
    cfg.max_instances = max_instances;
    for p in 0..PACKS {
        let stem = format!("p{p}");
        std::fs::copy(wasm, packs.join(format!("{stem}.wasm"))).unwrap();
        cfg.pack_config.insert(
            stem.clone(),
            vec![
                ("id".into(), stem.clone()),
                ("achievements".into(), achievements.to_string()),
            ],
        );
    }
    let host = PluginHost::new(cfg, Arc::new(Discard), &prometheus::Registry::new()).unwrap();
    let rejected = host.load_dir(&packs);
    assert!(rejected.is_empty(), "{rejected:?}");
    host
}

pub fn feed() -> Feed {
    Feed {
        tracker: Tracker::new(),
        seq: 0,
        rng: 0x9e37_79b9_7f4a_7c15,
    }
}

/// The bundled milestones pack, loaded once (its id is fixed).
pub fn milestones(wasm: &Path, dir: &Path, max_instances: u32) -> PluginHost {
    let packs = dir.join("packs-milestones");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::copy(wasm, packs.join("milestones.wasm")).unwrap();
    let mut cfg = RuntimeConfig::new(dir.join("cache"));
    cfg.workers = 1;
    cfg.max_instances = max_instances;
    let host = PluginHost::new(cfg, Arc::new(Discard), &prometheus::Registry::new()).unwrap();
    let rejected = host.load_dir(&packs);
    assert!(rejected.is_empty(), "{rejected:?}");
    host
}
