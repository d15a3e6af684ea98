//! Runs a fixed number of plugin-stage batches, for instruction counts
//! (`perf stat -e instructions:u`, minus a run with 0 batches): the same
//! packs and feed as `benches/plugin_stage.rs`.
//!
//! `cargo run --profile bench -p opm-plugin-runtime --example stage_count -- <1|50|500|milestones> <batches>`

#[path = "../benches/support/fixture.rs"]
mod fixture;

use std::path::Path;

use fixture::{feed, good_packs, milestones};
use opm_model::Event;
use opm_plugin_runtime::guest;

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().expect("case: 1, 50, 500 or milestones");
    let n: usize = args.next().expect("batches").parse().expect("a number");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let (host, pack) = if case == "milestones" {
        let wasm = guest::build_component("opm-pack-milestones", &root).unwrap();
        (milestones(&wasm, dir.path(), max_instances()), "milestones")
    } else {
        let wasm = guest::build_component("opm-test-good-pack", &root).unwrap();
        let achievements = case.parse().unwrap();
        (
            good_packs(&wasm, achievements, dir.path(), max_instances()),
            "p0",
        )
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
