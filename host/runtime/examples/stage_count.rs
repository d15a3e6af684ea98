//! Runs a fixed number of plugin-stage batches, for instruction counts
//! (`perf stat -e instructions:u`, minus a run with 0 batches): the same
//! packs and feed as `benches/plugin_stage.rs`.
//!
//! `cargo run --profile bench -p opm-plugin-runtime --example stage_count -- <1|50|500|milestones> <batches>`

use std::path::Path;
use std::sync::Arc;

use opm_model::plugin::{Commit, StateError, StateKey, StateStore, StateValue};
use opm_model::tracker::{SYNTHETIC_ID_BITS, Tracker};
use opm_model::{Event, EventKind, Participant, Str};
use opm_plugin_runtime::{PluginHost, RuntimeConfig, guest};

const BATCH: usize = 64;
const PACKS: usize = 4;

/// Commits go nowhere: the benchmark measures the runtime, not a store.
struct Discard;

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
struct Feed {
    tracker: Tracker,
    seq: u64,
    rng: u64,
}

impl Feed {
    fn batch(&mut self) -> Vec<Event> {
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
            ev.server = Arc::from("srv");
            ev.session = Arc::from("sess");
            ev.time_ms = 1_700_000_000_000 + self.seq as i64 * 500;
            ev.map = Arc::from("dm/mohdm1");
            ev.weapon = Arc::from("kar98");
            ev.hit_location = Arc::from(if self.seq.is_multiple_of(4) {
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

fn host(wasm: &Path, achievements: usize, dir: &Path) -> PluginHost {
    let packs = dir.join(format!("packs-{achievements}"));
    std::fs::create_dir_all(&packs).unwrap();
    let mut cfg = RuntimeConfig::new(dir.join("cache"));
    cfg.workers = 1;
    cfg.max_instances = max_instances();
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

fn feed() -> Feed {
    Feed {
        tracker: Tracker::new(),
        seq: 0,
        rng: 0x9e37_79b9_7f4a_7c15,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().expect("case: 1, 50, 500 or milestones");
    let n: usize = args.next().expect("batches").parse().expect("a number");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let (host, pack) = if case == "milestones" {
        let wasm = guest::build_component("opm-pack-milestones", &root).unwrap();
        let packs = dir.path().join("packs-milestones");
        std::fs::create_dir_all(&packs).unwrap();
        std::fs::copy(&wasm, packs.join("milestones.wasm")).unwrap();
        let mut cfg = RuntimeConfig::new(dir.path().join("cache"));
        cfg.workers = 1;
        cfg.max_instances = max_instances();
        let host = PluginHost::new(cfg, Arc::new(Discard), &prometheus::Registry::new()).unwrap();
        assert!(host.load_dir(&packs).is_empty());
        (host, "milestones")
    } else {
        let wasm = guest::build_component("opm-test-good-pack", &root).unwrap();
        (host(&wasm, case.parse().unwrap(), dir.path()), "p0")
    };
    let mut feed = feed();
    let batches: Vec<Vec<Event>> = (0..n).map(|_| feed.batch()).collect();
    let mut outcomes = 0;
    for events in &batches {
        outcomes += host.process(0, events).unwrap().len();
    }
    assert!(host.failures().is_empty(), "{:?}", host.failures());
    println!(
        "{n} batches, {outcomes} outcomes, {} state values in {pack}",
        host.state_snapshot(pack).len()
    );
}

/// `STAGE_MAX_INSTANCES` (default 32, as the bench): valgrind cannot
/// reserve the pool's address space for 32.
fn max_instances() -> u32 {
    std::env::var("STAGE_MAX_INSTANCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32)
}
