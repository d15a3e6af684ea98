//! Misbehaving packs beside a good one: the host stays up, the good pack's
//! outcomes are exactly those of a run without them, and the bad ones are
//! recorded and quarantined.

mod common;

use std::sync::Arc;

use common::*;
use opm_model::plugin::Outcome;
use opm_plugin_runtime::{ErrorKind, Failure, FailureSink};
use parking_lot::Mutex;

#[derive(Default)]
struct Sink(Mutex<Vec<Failure>>);

impl FailureSink for Sink {
    fn record(&self, f: &Failure) {
        self.0.lock().push(f.clone());
    }
}

const BAD: &[(&str, &str, &str, ErrorKind)] = &[
    // (file stem / pack id, mode, every, expected error kind)
    ("loop", "loop", "7", ErrorKind::Timeout),
    ("panic", "panic", "1", ErrorKind::Trap),
    ("oom", "oom", "5", ErrorKind::OutOfMemory),
    ("flood", "flood", "3", ErrorKind::InvalidOutput),
    ("state-flood", "state-flood", "4", ErrorKind::StateLimit),
    ("counter-flood", "counter-flood", "4", ErrorKind::StateLimit),
    ("error", "error", "2", ErrorKind::PluginError),
    ("bad-code", "bad-code", "6", ErrorKind::InvalidOutput),
];

fn good_only(
    events: &[opm_model::Event],
    cache: &std::path::Path,
) -> (
    Vec<Outcome>,
    Vec<(opm_model::plugin::StateKey, opm_model::plugin::StateValue)>,
) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(good_pack(), dir.path().join("good.wasm")).unwrap();
    let mut cfg = config(cache, 2);
    cfg.pack_config.insert("good".into(), kv(&[("id", "good")]));
    let (host, store, _) = new_host(cfg);
    assert!(host.load_dir(dir.path()).is_empty());
    let out = run(&host, events, 2, 64);
    (out, store.snapshot())
}

#[test]
fn bad_packs_are_isolated_recorded_and_quarantined() {
    let events = stream(2, 1500, 3);
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let (expected, expected_state) = good_only(&events, &cache);

    let packs = tmp.path().join("packs");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::copy(good_pack(), packs.join("good.wasm")).unwrap();
    let mut cfg = config(&cache, 2);
    cfg.pack_config.insert("good".into(), kv(&[("id", "good")]));
    for (id, mode, every, _) in BAD {
        std::fs::copy(fault_pack(), packs.join(format!("{id}.wasm"))).unwrap();
        cfg.pack_config.insert(
            id.to_string(),
            kv(&[("id", id), ("mode", mode), ("every", every)]),
        );
    }
    cfg.max_keys_per_player = 64;
    // Every poison event of the loop pack costs a few deadlines, but the
    // other bad packs must fail for their own reason, not by losing the CPU
    // on a busy machine: 100 ms is far above what any of them needs.
    cfg.batch_deadline_base = std::time::Duration::from_millis(100);
    let (host, store, registry) = new_host(cfg);
    let sink = Arc::new(Sink::default());
    let host = host.with_failure_sink(sink.clone());
    assert!(host.load_dir(&packs).is_empty());
    assert_eq!(host.status().packs.len(), 1 + BAD.len());

    let out = run(&host, &events, 2, 64);

    let good: Vec<_> = out.iter().filter(|o| &*o.pack == "good").cloned().collect();
    same(
        &canonical(&good),
        &canonical(&expected),
        "good pack outcomes",
    );
    let good_state: Vec<_> = store
        .snapshot()
        .into_iter()
        .filter(|(k, _)| &*k.pack == "good")
        .collect();
    same(&good_state, &expected_state, "good pack state");

    let failures = host.failures();
    assert_eq!(
        failures.len(),
        sink.0.lock().len(),
        "the sink saw every failure"
    );
    let status = host.status();
    for (id, _, _, kind) in BAD {
        let mine: Vec<_> = failures.iter().filter(|f| &*f.pack == *id).collect();
        assert!(!mine.is_empty(), "{id}: no failure recorded");
        assert!(
            mine.iter().all(|f| f.kind == *kind),
            "{id}: {:?}",
            mine.iter().map(|f| f.kind).collect::<Vec<_>>()
        );
        let st = status.packs.iter().find(|p| &*p.id == *id).unwrap();
        assert!(st.quarantines >= 1, "{id} was never quarantined: {st:?}");
        assert_eq!(st.failures as usize, mine.len());
        // Each failure names an event the pack was given and skipped.
        for f in &mine {
            assert!(
                events
                    .iter()
                    .any(|e| e.id == f.event_id && e.server == f.server)
            );
        }
        let errors = registry
            .gather()
            .into_iter()
            .find(|m| m.name() == "opm_plugin_errors_total")
            .unwrap();
        assert!(
            errors
                .get_metric()
                .iter()
                .any(|m| m.get_label().iter().any(|l| l.value() == *id)),
            "{id}: no error metric"
        );
    }
    // The good pack never failed and never was quarantined.
    let g = status.packs.iter().find(|p| &*p.id == "good").unwrap();
    assert_eq!((g.failures, g.quarantines), (0, 0));
    // Bad packs' good events still committed: their clean unlocks are there
    // for packs that only misbehave on some events.
    assert!(out.iter().any(|o| &*o.pack == "loop"));
    // Logs are attributed to the pack and capped per line.
    let logs = host.logs("loop");
    assert!(
        logs.iter()
            .all(|l| &*l.pack == "loop" && l.message.len() <= 512)
    );
    assert!(!logs.is_empty());
}

#[test]
fn a_pack_that_cannot_get_an_instance_waits_instead_of_skipping() {
    let events = stream(1, 400, 8);
    let tmp = tempfile::tempdir().unwrap();
    let packs = tmp.path().join("packs");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::copy(good_pack(), packs.join("a.wasm")).unwrap();
    std::fs::copy(good_pack(), packs.join("b.wasm")).unwrap();
    let mut cfg = config(&tmp.path().join("cache"), 1);
    // Room for one instance: `a` takes it, `b` cannot instantiate.
    cfg.max_instances = 1;
    cfg.quarantine_backoff_start = std::time::Duration::from_millis(1);
    cfg.pack_config.insert("a".into(), kv(&[("id", "a")]));
    cfg.pack_config.insert("b".into(), kv(&[("id", "b")]));
    let (host, store, _) = new_host(cfg);
    assert!(host.load_dir(&packs).is_empty());
    run(&host, &events, 1, 64);
    assert!(host.failures().is_empty(), "no event was declared poison");
    let b = || {
        host.status()
            .packs
            .into_iter()
            .find(|p| &*p.id == "b")
            .unwrap()
    };
    assert!(b().queued > 0 && b().positions.is_empty() && b().quarantines >= 1);

    // Free the slot: `b` catches up from its queue, in order, once.
    host.unload(&packs.join("a.wasm"));
    while b().queued > 0 {
        std::thread::sleep(std::time::Duration::from_millis(2));
        host.process(0, &[]).unwrap();
    }
    let kills: i64 = store
        .snapshot()
        .iter()
        .filter(|(k, _)| &*k.pack == "b" && &*k.key == "kills")
        .map(|(_, v)| match v {
            opm_model::plugin::StateValue::Counter(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(kills as usize, common::kills(&events));
    let a: Vec<_> = canonical(&store.outcomes())
        .into_iter()
        .filter(|o| o.0 == "a")
        .map(|o| (o.1, o.2.replacen("a-", "", 1), o.3, o.4))
        .collect();
    let b: Vec<_> = canonical(&store.outcomes())
        .into_iter()
        .filter(|o| o.0 == "b")
        .map(|o| (o.1, o.2.replacen("b-", "", 1), o.3, o.4))
        .collect();
    same(&a, &b, "b's late outcomes equal a's");
}

#[test]
fn a_lagging_pack_catches_up_by_replay() {
    let events = stream(1, 400, 12);
    let tmp = tempfile::tempdir().unwrap();
    let packs = tmp.path().join("packs");
    std::fs::create_dir_all(&packs).unwrap();
    std::fs::copy(good_pack(), packs.join("a.wasm")).unwrap();
    std::fs::copy(good_pack(), packs.join("b.wasm")).unwrap();
    let mut cfg = config(&tmp.path().join("cache"), 1);
    cfg.max_instances = 1;
    cfg.quarantine_backoff_start = std::time::Duration::from_millis(1);
    cfg.quarantine_backoff_max = std::time::Duration::from_millis(1);
    // A queue too small for what `b` misses while it cannot run.
    cfg.quarantine_buffer = 10;
    cfg.pack_config.insert("a".into(), kv(&[("id", "a")]));
    cfg.pack_config.insert("b".into(), kv(&[("id", "b")]));
    let (host, store, _) = new_host(cfg);
    assert!(host.load_dir(&packs).is_empty());
    run(&host, &events, 1, 64);
    let b = || {
        host.status()
            .packs
            .into_iter()
            .find(|p| &*p.id == "b")
            .unwrap()
    };
    assert_eq!(b().state, opm_plugin_runtime::PackState::Lagging);
    assert!(host.failures().is_empty());

    host.unload(&packs.join("a.wasm"));
    // The worker replays from b's positions (none yet: everything), then
    // resumes it, on its own thread. (The sleep outlasts the 1 ms back-off.)
    std::thread::sleep(std::time::Duration::from_millis(5));
    for chunk in events.chunks(64) {
        host.replay(0, "b", chunk).unwrap();
    }
    assert!(host.resume("b"));
    assert_eq!(b().state, opm_plugin_runtime::PackState::Active);
    let strip = |pack: &str| -> Vec<_> {
        canonical(&store.outcomes())
            .into_iter()
            .filter(|o| o.0 == pack)
            .map(|o| (o.1, o.2.replacen(&format!("{pack}-"), "", 1), o.3, o.4))
            .collect()
    };
    same(&strip("a"), &strip("b"), "b after replay equals a");
    // Replaying again changes nothing: positions make it idempotent.
    let before = store.outcomes().len();
    for chunk in events.chunks(64) {
        host.replay(0, "b", chunk).unwrap();
    }
    assert_eq!(store.outcomes().len(), before);
}
