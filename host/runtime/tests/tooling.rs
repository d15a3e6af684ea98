//! Author tooling, enrichers and the sandbox's view of the world.

mod common;

use std::sync::OnceLock;

use common::*;
use opm_model::EventKind;
use opm_plugin_runtime::{ErrorKind, guest, tooling};

fn enricher() -> std::path::PathBuf {
    static P: OnceLock<std::path::PathBuf> = OnceLock::new();
    P.get_or_init(|| guest::build_component("opm-test-enricher", &root()).unwrap())
        .clone()
}

#[test]
fn fixture_runs_match_production_and_count_fuel_deterministically() {
    let events = stream(1, 800, 9);
    let config = kv(&[("id", "good")]);
    let a = tooling::run_fixture(&good_pack(), config.clone(), &events, 64).unwrap();
    let b = tooling::run_fixture(&good_pack(), config.clone(), &events, 64).unwrap();
    assert_eq!(a.pack.as_deref(), Some("good"));
    assert!(a.fuel > 0 && a.memory_high_water > 0 && a.failures.is_empty());
    assert_eq!(a.fuel, b.fuel, "fuel is deterministic");
    same(
        &canonical(&a.outcomes),
        &canonical(&b.outcomes),
        "fixture reruns",
    );

    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(good_pack(), tmp.path().join("good.wasm")).unwrap();
    let mut cfg = config_for(tmp.path());
    cfg.pack_config.insert("good".into(), config);
    let (host, _, _) = new_host(cfg);
    host.load_dir(tmp.path());
    let prod = run(&host, &events, 1, 64);
    same(
        &canonical(&a.outcomes),
        &canonical(&prod),
        "fixture vs production",
    );
    assert_eq!(a.state, host.state_snapshot("good"));

    let report = tooling::bench(&good_pack(), kv(&[("id", "good")]), &events, 64, 2).unwrap();
    assert!(report.ns_per_event > 0.0 && report.fuel_per_event > 0.0);
}

fn config_for(dir: &std::path::Path) -> opm_plugin_runtime::RuntimeConfig {
    config(&dir.join("cache"), 1)
}

#[test]
fn fuel_stops_a_looping_pack_in_tooling() {
    let events = stream(1, 100, 2);
    let run = tooling::run_fixture(
        &fault_pack(),
        kv(&[("id", "spin"), ("mode", "loop"), ("every", "1")]),
        &events,
        16,
    )
    .unwrap();
    assert!(!run.failures.is_empty());
    assert!(run.failures.iter().all(|f| f.kind == ErrorKind::Timeout));
}

#[test]
fn check_reports_world_imports_and_metadata() {
    let good = tooling::check(&good_pack(), kv(&[("id", "good")]));
    assert!(good.ok(), "{:?}", good.problems);
    assert_eq!(good.world, Some("achievement-pack"));
    assert!(
        good.imports
            .iter()
            .any(|i| i.starts_with("openmohaa:stats/state"))
    );
    assert!(
        good.forbidden_imports.is_empty(),
        "{:?}",
        good.forbidden_imports
    );
    assert!(good.size > 0 && good.size < 4 << 20);

    let enr = tooling::check(&enricher(), vec![]);
    assert!(enr.ok(), "{:?}", enr.problems);
    assert_eq!(enr.world, Some("enricher"));

    // The fault pack refuses to describe itself without an id.
    let no_id = tooling::check(&fault_pack(), vec![]);
    assert!(
        no_id.problems.iter().any(|p| p.contains("describe")),
        "{:?}",
        no_id.problems
    );
    let bad_meta = tooling::check(&good_pack(), kv(&[("id", "Not Lower")]));
    assert!(
        bad_meta.problems.iter().any(|p| p.contains("lower case")),
        "{:?}",
        bad_meta.problems
    );

    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x0d\0\x01\0garbage").unwrap();
    assert!(!tooling::check(&junk, vec![]).ok());
    let big = tmp.path().join("big.wasm");
    std::fs::write(&big, vec![0u8; (4 << 20) + 1]).unwrap();
    assert!(tooling::check(&big, vec![]).problems[0].contains("limit"));
}

#[test]
fn enrichers_add_fields_and_their_failures_are_contained() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("packs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(enricher(), dir.join("classes.wasm")).unwrap();
    let (host, _, _) = new_host(config_for(tmp.path()));
    assert!(host.load_dir(&dir).is_empty());
    assert_eq!(host.status().enrichers.len(), 1);
    let mut events = stream(1, 200, 4);
    host.enrich(0, &mut events).unwrap();
    for e in &events {
        let class = e.extra("weapon_class");
        if e.kind == EventKind::PlayerKill {
            let want = match &*e.weapon {
                "kar98" => "rifle",
                "thompson" | "mp40" => "smg",
                _ => "other",
            };
            assert_eq!(class, Some(want));
        } else {
            assert_eq!(class, None);
        }
    }

    let mut cfg = config_for(tmp.path());
    cfg.pack_config
        .insert("classes".into(), kv(&[("mode", "panic")]));
    let (host, _, _) = new_host(cfg);
    assert!(host.load_dir(&dir).is_empty());
    let mut events = stream(1, 200, 4);
    let before = events.clone();
    host.enrich(0, &mut events).unwrap();
    assert_eq!(events, before);
    let failures = host.failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].kind, ErrorKind::Trap);
    assert_eq!(host.status().enrichers[0].failures, 1);
}

#[test]
fn the_sandbox_denies_the_world_and_is_deterministic() {
    let events: Vec<_> = stream(1, 50, 1)
        .into_iter()
        .filter(|e| e.kind == EventKind::PlayerKill)
        .take(1)
        .collect();
    let probe = |_: ()| {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(fault_pack(), tmp.path().join("probe.wasm")).unwrap();
        let mut cfg = config_for(tmp.path());
        cfg.pack_config.insert(
            "probe".into(),
            kv(&[("id", "probe"), ("mode", "probe"), ("every", "1")]),
        );
        let (host, _, _) = new_host(cfg);
        assert!(host.load_dir(tmp.path()).is_empty());
        host.process(0, &events).unwrap();
        assert!(host.failures().is_empty(), "{:?}", host.failures());
        let logs = host.logs("probe");
        logs.into_iter()
            .find(|l| l.message.starts_with("probe"))
            .unwrap()
            .message
    };
    let first = probe(());
    assert!(
        first.contains("env=0 args=0 file=false dir=false time=0 net=false"),
        "{first}"
    );
    assert_eq!(first, probe(()), "seeded randomness is the same every run");
}

#[test]
fn an_unknown_import_loads_but_traps_when_called() {
    let events: Vec<_> = stream(1, 60, 1)
        .into_iter()
        .filter(|e| e.kind == EventKind::PlayerKill)
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(fault_pack(), tmp.path().join("odd.wasm")).unwrap();
    let mut cfg = config_for(tmp.path());
    cfg.pack_config.insert(
        "odd".into(),
        kv(&[("id", "odd"), ("mode", "unknown-import"), ("every", "1")]),
    );
    let (host, _, _) = new_host(cfg);
    assert!(
        host.load_dir(tmp.path()).is_empty(),
        "an unknown import does not stop loading"
    );
    host.process(0, &events).unwrap();
    let failures = host.failures();
    assert!(!failures.is_empty());
    assert!(
        failures
            .iter()
            .all(|f| f.kind == ErrorKind::Trap && f.message.contains("unknown import"))
    );

    let report = tooling::check(&fault_pack(), kv(&[("id", "odd")]));
    // The unknown interface, and the sockets its `probe` mode pulls in.
    assert_eq!(report.forbidden_imports[0], "opm-test:extra/extra");
    assert!(
        report.forbidden_imports[1..]
            .iter()
            .all(|i| i.starts_with("wasi:sockets/"))
    );
    assert!(!report.ok());
}
