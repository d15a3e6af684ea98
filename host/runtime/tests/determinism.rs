//! Same events, same outcomes and state: whatever the batch size, worker
//! count and run.

mod common;

use common::*;
use opm_model::plugin::{Scope, StateValue};

#[test]
fn outcomes_and_state_do_not_depend_on_batching_or_workers() {
    let events = stream(4, 1500, 7);
    let dir = tempfile::tempdir().unwrap();
    let packs = dir.path().join("packs");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::copy(good_pack(), packs.join("good.wasm")).unwrap();
    let mut reference = None;
    for workers in [1, 2, 4] {
        for batch in [1, 7, 64, 500] {
            let mut cfg = config(&dir.path().join("cache"), workers);
            cfg.pack_config
                .insert("good".into(), kv(&[("id", "good"), ("achievements", "12")]));
            let (host, store, _) = new_host(cfg);
            assert!(host.load_dir(&packs).is_empty());
            let outcomes = run(&host, &events, workers, batch);
            same(
                &canonical(&outcomes),
                &canonical(&store.outcomes()),
                "returned vs stored",
            );
            assert!(host.failures().is_empty(), "{:?}", host.failures());
            let snapshot = store.snapshot();
            same(
                &snapshot,
                &host.state_snapshot("good"),
                "memory mirrors the store",
            );
            // Every subscribed event counted exactly once.
            let counted: i64 = snapshot
                .iter()
                .filter(|(k, _)| k.scope == Scope::Lifetime && &*k.key == "kills")
                .map(|(_, v)| match v {
                    StateValue::Counter(n) => *n,
                    _ => 0,
                })
                .sum();
            assert_eq!(counted as usize, kills(&events));
            let run = (canonical(&outcomes), snapshot);
            match &reference {
                None => reference = Some(run),
                Some(r) => {
                    same(
                        &r.0,
                        &run.0,
                        &format!("outcomes with {workers} workers, batch {batch}"),
                    );
                    same(
                        &r.1,
                        &run.1,
                        &format!("state with {workers} workers, batch {batch}"),
                    );
                }
            }
        }
    }
    let (outcomes, snapshot) = reference.unwrap();
    assert!(outcomes.len() > 100);
    // Ended lives, rounds and matches were dropped: only lifetime counters
    // and the last open match, round and lives remain.
    assert!(snapshot.iter().any(|(k, _)| k.scope == Scope::Life));
    let lives = snapshot
        .iter()
        .filter(|(k, _)| k.scope == Scope::Life)
        .count();
    assert!(lives <= 4 * 8, "{lives} life instances kept");
    let matches = snapshot
        .iter()
        .filter(|(k, _)| k.scope == Scope::Match)
        .count();
    assert!(matches <= 4 * 8, "{matches} match values kept");
}

#[test]
fn a_restart_resumes_from_positions_without_evaluating_twice() {
    let events = stream(2, 1200, 11);
    let dir = tempfile::tempdir().unwrap();
    let packs = dir.path().join("packs");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::copy(good_pack(), packs.join("good.wasm")).unwrap();
    let cfg = || {
        let mut c = config(&dir.path().join("cache"), 1);
        c.pack_config.insert("good".into(), kv(&[("id", "good")]));
        c
    };
    // Uninterrupted run.
    let (host, store, _) = new_host(cfg());
    host.load_dir(&packs);
    run(&host, &events, 1, 64);
    let expected = (canonical(&store.outcomes()), store.snapshot());

    // Crash after 1000 events, restart on the same store, replay everything.
    let (host, store, _) = new_host(cfg());
    host.load_dir(&packs);
    run(&host, &events[..1000], 1, 64);
    drop(host);
    let store2 = store.clone();
    let registry = prometheus::Registry::new();
    let host = opm_plugin_runtime::PluginHost::new(cfg(), store2, &registry).unwrap();
    host.load_dir(&packs);
    run(&host, &events, 1, 64);
    same(
        &canonical(&store.outcomes()),
        &expected.0,
        "outcomes after restart",
    );
    same(&store.snapshot(), &expected.1, "state after restart");
}
