//! Cost of the plugin stage: nanoseconds per event per subscribed pack,
//! 64-event batches of kills (every event reaches every pack).
//!
//! * `achievements_{1,50,500}`: four copies of the test good pack (built on
//!   the SDK, like production packs) declaring 1, 50 and 500 achievements;
//!   four state calls per event (lifetime, life, round, match), served by
//!   the SDK's per-batch counter cache: one host read per distinct counter,
//!   one `write-counters` call per batch.
//! * `milestones`: the bundled `plugins/milestones` pack (what production
//!   runs): one lifetime `add` per kill, a second for the quarter of kills
//!   that are headshots, a progress outcome now and then.
//!
//! Run (release build, the numbers in docs/runtime.md):
//! `cargo bench -p opm-plugin-runtime --bench plugin_stage -- --warm-up-time 1 --measurement-time 3`

use std::path::Path;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
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
    cfg.max_instances = 32;
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

fn plugin_stage(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = guest::build_component("opm-test-good-pack", &root).unwrap();
    let milestones = guest::build_component("opm-pack-milestones", &root).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("plugin_stage");
    for achievements in [1usize, 50, 500] {
        let host = host(&wasm, achievements, dir.path());
        let mut feed = feed();
        // Events × packs: criterion's time per element is then the cost of
        // one event in one subscribed pack.
        group.throughput(Throughput::Elements((BATCH * PACKS) as u64));
        group.bench_function(format!("achievements_{achievements}"), |b| {
            b.iter_batched(
                || feed.batch(),
                |events| host.process(0, &events).unwrap(),
                BatchSize::SmallInput,
            )
        });
        assert!(host.failures().is_empty(), "{:?}", host.failures());
    }
    {
        // The pack id is fixed in the component, so it is loaded once.
        let packs = dir.path().join("packs-milestones");
        std::fs::create_dir_all(&packs).unwrap();
        std::fs::copy(&milestones, packs.join("milestones.wasm")).unwrap();
        let mut cfg = RuntimeConfig::new(dir.path().join("cache"));
        cfg.workers = 1;
        cfg.max_instances = 32;
        let host = PluginHost::new(cfg, Arc::new(Discard), &prometheus::Registry::new()).unwrap();
        let rejected = host.load_dir(&packs);
        assert!(rejected.is_empty(), "{rejected:?}");
        let mut feed = feed();
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function("milestones", |b| {
            b.iter_batched(
                || feed.batch(),
                |events| host.process(0, &events).unwrap(),
                BatchSize::SmallInput,
            )
        });
        assert!(host.failures().is_empty(), "{:?}", host.failures());
        assert!(
            host.state_snapshot("milestones").len() >= 16,
            "milestones counted nothing"
        );
    }
    group.finish();
}

criterion_group!(benches, plugin_stage);
criterion_main!(benches);
