//! Entry points for the author CLI: run a component over fixture events
//! with fuel counting, benchmark it, and check it before publishing.
//!
//! These use a separate engine with `consume_fuel` (and no epochs or
//! pooling), so instruction counts are deterministic; everything else (the
//! linker, limits, state semantics, validation) is the production code.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use opm_model::plugin::{MemoryStateStore, Outcome, StateKey, StateValue};
use opm_model::{Event, Str};
use prometheus::Registry;

use crate::config::RuntimeConfig;
use crate::error::{Failure, LoadError};
use crate::host::PluginHost;

/// What one fixture run produced.
#[derive(Debug, Clone)]
pub struct FixtureRun {
    pub pack: Option<Str>,
    pub outcomes: Vec<Outcome>,
    pub failures: Vec<Failure>,
    pub state: Vec<(StateKey, StateValue)>,
    /// Fuel consumed by the guest: about one unit per Wasm instruction.
    pub fuel: u64,
    pub wall: Duration,
    pub memory_high_water: u64,
    pub events: usize,
}

fn tooling_host(wasm: &Path, config: Vec<(String, String)>) -> Result<PluginHost, LoadError> {
    let dir = std::env::temp_dir();
    let mut cfg = RuntimeConfig::new(dir);
    cfg.workers = 1;
    let stem = wasm
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    cfg.pack_config.insert(stem, config);
    PluginHost::build(
        cfg,
        Arc::new(MemoryStateStore::new()),
        &Registry::new(),
        true,
    )
}

/// Runs `wasm` over `events` in batches of `batch_size`, with fuel counting,
/// against a fresh in-memory state store.
pub fn run_fixture(
    wasm: &Path,
    config: Vec<(String, String)>,
    events: &[Event],
    batch_size: usize,
) -> Result<FixtureRun, LoadError> {
    let host = tooling_host(wasm, config)?;
    host.load_file(wasm)?;
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for chunk in events.chunks(batch_size.max(1)) {
        let mut chunk = chunk.to_vec();
        host.enrich(0, &mut chunk)
            .map_err(|e| LoadError::Store(e.to_string()))?;
        outcomes.extend(
            host.process(0, &chunk)
                .map_err(|e| LoadError::Store(e.to_string()))?,
        );
    }
    let wall = started.elapsed();
    let pack = host.status().packs.first().map(|p| p.id.clone());
    let state = pack
        .as_ref()
        .map(|p| host.state_snapshot(p))
        .unwrap_or_default();
    Ok(FixtureRun {
        pack,
        outcomes,
        failures: host.failures(),
        state,
        fuel: host.inner.fuel_used.load(Ordering::Relaxed),
        wall,
        memory_high_water: host.inner.memory_high_water.load(Ordering::Relaxed),
        events: events.len(),
    })
}

/// Cost of a component per event.
#[derive(Debug, Clone)]
pub struct BenchReport {
    pub events: usize,
    /// Wall time per event on the production engine (epochs, pooling).
    pub ns_per_event: f64,
    /// Fuel (≈ instructions) per event, from the tooling engine.
    pub fuel_per_event: f64,
    pub memory_high_water: u64,
}

/// Times `wasm` over `events` `rounds` times on the production engine (a
/// fresh state store each round) and counts its fuel once.
pub fn bench(
    wasm: &Path,
    config: Vec<(String, String)>,
    events: &[Event],
    batch_size: usize,
    rounds: usize,
) -> Result<BenchReport, LoadError> {
    let fuel = run_fixture(wasm, config.clone(), events, batch_size)?;
    let mut total = Duration::ZERO;
    for _ in 0..rounds.max(1) {
        let mut cfg = RuntimeConfig::new(std::env::temp_dir().join("opm-plugin-cache"));
        cfg.workers = 1;
        cfg.max_instances = 8;
        let stem = wasm
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        cfg.pack_config.insert(stem, config.clone());
        let host = PluginHost::new(cfg, Arc::new(MemoryStateStore::new()), &Registry::new())?;
        host.load_file(wasm)?;
        let started = Instant::now();
        for chunk in events.chunks(batch_size.max(1)) {
            host.process(0, chunk)
                .map_err(|e| LoadError::Store(e.to_string()))?;
        }
        total += started.elapsed();
    }
    let n = events.len().max(1) as f64;
    Ok(BenchReport {
        events: events.len(),
        ns_per_event: total.as_nanos() as f64 / rounds.max(1) as f64 / n,
        fuel_per_event: fuel.fuel as f64 / n,
        memory_high_water: fuel.memory_high_water,
    })
}

/// Imports a component may have. Anything else is reported as forbidden
/// (and would trap at runtime). Filesystem interfaces are allowed because
/// Rust's std imports them; the runtime gives no preopens, so they see no
/// files.
const ALLOWED_IMPORTS: &[&str] = &[
    "openmohaa:stats/",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// What `check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub size: usize,
    /// `achievement-pack` or `enricher`, when the component implements one.
    pub world: Option<&'static str>,
    pub imports: Vec<String>,
    pub forbidden_imports: Vec<String>,
    /// Every problem found; empty means the component would load.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks a component before publishing: size, world compatibility,
/// imports, and `describe`'s metadata (run with `config`).
pub fn check(wasm: &Path, config: Vec<(String, String)>) -> CheckReport {
    let mut r = CheckReport::default();
    let host = match tooling_host(wasm, config) {
        Ok(h) => h,
        Err(e) => {
            r.problems.push(e.to_string());
            return r;
        }
    };
    r.size = std::fs::metadata(wasm)
        .map(|m| m.len() as usize)
        .unwrap_or(0);
    let (component, world, _) = match host.inner.compile(wasm) {
        Ok(c) => c,
        Err(e) => {
            r.problems.push(e.to_string());
            return r;
        }
    };
    r.world = Some(match world {
        crate::sandbox::World::Pack => "achievement-pack",
        crate::sandbox::World::Enricher => "enricher",
    });
    for (name, _) in component.component_type().imports(&host.inner.engine) {
        if !ALLOWED_IMPORTS.iter().any(|p| name.starts_with(p)) {
            r.forbidden_imports.push(name.to_string());
        }
        r.imports.push(name.to_string());
    }
    for f in &r.forbidden_imports {
        r.problems.push(format!("forbidden import {f}"));
    }
    if let Err(e) = host.load_file(wasm) {
        r.problems.push(e.to_string());
    }
    r
}
