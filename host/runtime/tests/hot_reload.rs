//! Hot reload under continuous load: 20 version swaps while 100 000 events
//! stream through; nothing skipped, nothing evaluated twice.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use opm_model::plugin::{Scope, StateValue};
use opm_plugin_runtime::PluginHost;
use sha2::{Digest, Sha256};

fn leb(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The component with a custom section appended: a new version that
/// behaves the same.
fn variant(base: &[u8], tag: &str) -> Vec<u8> {
    let name = b"opm-test-version";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = base.to_vec();
    out.push(0);
    leb(payload.len(), &mut out);
    out.extend(payload);
    out
}

fn install(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn current_sha(host: &PluginHost) -> Option<String> {
    host.status().packs.first().map(|p| p.sha256.clone())
}

/// A repeated or late notification of the file a rollback turned away
/// from leaves the rollback in place; other content loads as usual.
#[test]
fn a_rollback_holds_until_other_content_is_written() {
    let base = std::fs::read(good_pack()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut c = config(&tmp.path().join("cache"), 1);
    c.pack_config.insert("good".into(), kv(&[("id", "good")]));
    let (host, _, _) = new_host(c);
    let path = tmp.path().join("good.wasm");
    let versions: Vec<Vec<u8>> = (1..=3).map(|i| variant(&base, &format!("r{i}"))).collect();
    for bytes in &versions[..2] {
        install(tmp.path(), "good.wasm", bytes);
        host.load_file(&path).unwrap();
    }
    assert!(host.rollback("good"));
    assert_eq!(current_sha(&host).unwrap(), sha(&versions[0]));
    // The file still holds the second version: loading it again is a
    // repeated notification.
    host.load_file(&path).unwrap();
    assert_eq!(current_sha(&host).unwrap(), sha(&versions[0]));
    install(tmp.path(), "good.wasm", &versions[2]);
    host.load_file(&path).unwrap();
    assert_eq!(current_sha(&host).unwrap(), sha(&versions[2]));
    // Written again after another version, the second loads once more.
    install(tmp.path(), "good.wasm", &versions[1]);
    host.load_file(&path).unwrap();
    assert_eq!(current_sha(&host).unwrap(), sha(&versions[1]));
}

#[test]
fn twenty_swaps_under_load_change_nothing() {
    const SWAPS: usize = 20;
    const WORKERS: usize = 2;
    let events = stream(4, 25_000, 5);
    assert!(events.len() >= 100_000);
    let base = std::fs::read(good_pack()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let cfg = || {
        let mut c = config(&cache, WORKERS);
        c.pack_config.insert("good".into(), kv(&[("id", "good")]));
        c.watch_debounce = Duration::from_millis(20);
        c
    };

    // Reference: no reloads.
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    install(&plain, "good.wasm", &base);
    let (host, store, _) = new_host(cfg());
    assert!(host.load_dir(&plain).is_empty());
    run(&host, &events, WORKERS, 64);
    let expected = (canonical(&store.outcomes()), store.snapshot());
    drop(host);

    // With reloads.
    let dir = tmp.path().join("watched");
    std::fs::create_dir_all(&dir).unwrap();
    install(&dir, "good.wasm", &base);
    let (host, store, registry) = new_host(cfg());
    assert!(host.load_dir(&dir).is_empty());
    host.watch(&dir).unwrap();
    let swaps = AtomicUsize::new(0);
    let shards: Vec<Vec<opm_model::Event>> = (0..WORKERS)
        .map(|w| {
            events
                .iter()
                .filter(|e| server_index(e) % WORKERS == w)
                .cloned()
                .collect()
        })
        .collect();
    let mut shas = vec![sha(&base)];
    std::thread::scope(|s| {
        for (w, shard) in shards.iter().enumerate() {
            let host = &host;
            let swaps = &swaps;
            s.spawn(move || {
                let batches: Vec<_> = shard.chunks(64).collect();
                for (j, chunk) in batches.iter().enumerate() {
                    // Pace the stream so the swaps land all along it.
                    let due = j * SWAPS / batches.len();
                    while swaps.load(Ordering::Acquire) < due {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    host.process(w, chunk).unwrap();
                }
            });
        }
        for i in 1..=SWAPS {
            let bytes = variant(&base, &format!("v{i}"));
            let want = sha(&bytes);
            shas.push(want.clone());
            install(&dir, "good.wasm", &bytes);
            wait_for(&format!("swap {i}"), || {
                current_sha(&host).as_deref() == Some(want.as_str())
            });
            swaps.fetch_add(1, Ordering::Release);
        }
    });
    assert_eq!(swaps.load(Ordering::Relaxed), SWAPS);

    same(
        &canonical(&store.outcomes()),
        &expected.0,
        "outcomes with reloads",
    );
    same(&store.snapshot(), &expected.1, "state with reloads");
    // Every subscribed event evaluated exactly once over all versions.
    let kills = kills(&events) as u64;
    let counted: i64 = store
        .snapshot()
        .iter()
        .filter(|(k, _)| k.scope == Scope::Lifetime && &*k.key == "kills")
        .map(|(_, v)| match v {
            StateValue::Counter(n) => *n,
            _ => 0,
        })
        .sum();
    assert_eq!(counted as u64, kills);
    let delivered: u64 = registry
        .gather()
        .into_iter()
        .find(|m| m.name() == "opm_plugin_events_total")
        .unwrap()
        .get_metric()
        .iter()
        .map(|m| m.get_counter().get_value() as u64)
        .sum();
    assert_eq!(delivered, kills, "events delivered across all versions");
    let st = host.status();
    assert_eq!(st.packs.len(), 1);
    assert_eq!(st.packs[0].sha256, shas[SWAPS]);
    for (server, pos) in &st.packs[0].positions {
        let last = events
            .iter()
            .filter(|e| &e.server == server && e.kind == opm_model::EventKind::PlayerKill)
            .map(|e| e.id)
            .max()
            .unwrap();
        assert_eq!(*pos, last);
    }

    // Rollback restores the previous version; a broken file is rejected and
    // the running version stays; removing the file unloads the pack.
    assert!(host.rollback("good"));
    assert_eq!(current_sha(&host).unwrap(), shas[SWAPS - 1]);
    install(&dir, "good.wasm", b"\0asm not really");
    wait_for("rejection", || !host.status().rejected.is_empty());
    assert_eq!(current_sha(&host).unwrap(), shas[SWAPS - 1]);
    assert!(
        host.status().rejected[0].reason.contains("compil"),
        "{:?}",
        host.status().rejected
    );
    std::fs::remove_file(dir.join("good.wasm")).unwrap();
    wait_for("unload", || host.status().packs.is_empty());
}

#[test]
fn a_version_declaring_another_packs_code_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("packs");
    std::fs::create_dir_all(&dir).unwrap();
    let mut cfg = config(&tmp.path().join("cache"), 1);
    cfg.pack_config
        .insert("a".into(), kv(&[("id", "a"), ("prefix", "shared")]));
    cfg.pack_config
        .insert("b".into(), kv(&[("id", "b"), ("prefix", "shared")]));
    cfg.pack_config
        .insert("c".into(), kv(&[("id", "c"), ("achievements", "0")]));
    cfg.pack_config
        .insert("d".into(), kv(&[("id", "a"), ("prefix", "other")]));
    let (host, _, _) = new_host(cfg);
    for name in ["a", "b", "c", "d"] {
        std::fs::copy(good_pack(), dir.join(format!("{name}.wasm"))).unwrap();
    }
    let rejected = host.load_dir(&dir);
    let names: Vec<_> = rejected
        .iter()
        .map(|(p, _)| p.file_stem().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["b", "c", "d"]);
    assert!(matches!(
        rejected[0].1,
        opm_plugin_runtime::LoadError::DuplicateCode { .. }
    ));
    assert!(matches!(
        rejected[1].1,
        opm_plugin_runtime::LoadError::Describe(_)
    ));
    assert_eq!(host.status().packs.len(), 1);
    assert_eq!(host.status().rejected.len(), 3);
}
