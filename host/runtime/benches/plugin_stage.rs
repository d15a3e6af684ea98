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

#[path = "support/fixture.rs"]
mod fixture;

use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fixture::{BATCH, PACKS, feed, good_packs, milestones};
use opm_plugin_runtime::guest;

fn plugin_stage(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let wasm = guest::build_component("opm-test-good-pack", &root).unwrap();
    let milestones_wasm = guest::build_component("opm-pack-milestones", &root).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("plugin_stage");
    for achievements in [1usize, 50, 500] {
        let host = good_packs(&wasm, achievements, dir.path(), 32);
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
        let host = milestones(&milestones_wasm, dir.path(), 32);
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
