//! Durability and overload against the real binary: kill -9 under load,
//! and offered load above capacity. Every acknowledged event must be
//! stored exactly once.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::Server;
use parking_lot::Mutex;
use serde_json::json;

/// A batch of `n` jump events, each carrying a unique marker.
fn batch(tag: &str, n: usize) -> (String, Vec<String>) {
    let markers: Vec<String> = (0..n).map(|k| format!("{tag}-{k}")).collect();
    let events: Vec<serde_json::Value> = markers
        .iter()
        .map(|m| {
            json!({"type": "jump", "match_id": "no_match", "session_id": "sess_load",
                   "timestamp": "12.5", "player_guid": "unauth_1", "player_team": "german",
                   "marker": m})
        })
        .collect();
    (serde_json::to_string(&events).unwrap(), markers)
}

/// Markers stored, with how often each was stored.
fn stored_markers(server: &Server) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let mut ids = HashSet::new();
    for e in server.events() {
        assert!(ids.insert(e.id), "event id {} stored twice", e.id);
        if let Some(m) = e.extra("marker") {
            *seen.entry(m.to_string()).or_insert(0) += 1;
        }
    }
    seen
}

#[test]
fn kill_9_under_load_loses_and_duplicates_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--durability", "fsync"]);
    let senders = 4;
    let identities: Vec<(String, String)> = (0..senders)
        .map(|i| {
            server.register(
                &format!("crash-{i}"),
                &format!("192.0.2.{i}"),
                json!("12203"),
            )
        })
        .collect();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let acked_count = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let url = server.url("/api/v1/ingest/events");
    let threads: Vec<_> = identities
        .iter()
        .enumerate()
        .map(|(i, (_, token))| {
            let (acked, acked_count, stop, url, token) = (
                acked.clone(),
                acked_count.clone(),
                stop.clone(),
                url.clone(),
                token.clone(),
            );
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                let mut n = 0;
                while !stop.load(Ordering::Acquire) {
                    let (body, markers) = batch(&format!("s{i}-b{n}"), 20);
                    n += 1;
                    let r = client
                        .post(&url)
                        .header("X-Server-Token", &token)
                        .body(body)
                        .send();
                    match r {
                        Ok(r) if r.status() == 202 => {
                            acked_count.fetch_add(markers.len() as u64, Ordering::AcqRel);
                            acked.lock().extend(markers);
                        }
                        // The server is gone: nothing more is acknowledged.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    // Kill once a good amount is acknowledged, while senders are mid-flight.
    while acked_count.load(Ordering::Acquire) < 6_000 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    server.kill9();
    stop.store(true, Ordering::Release);
    for t in threads {
        t.join().unwrap();
    }
    let acked = acked.lock().clone();

    server.restart();
    server.settle();
    let stored = stored_markers(&server);
    for m in &acked {
        assert_eq!(
            stored.get(m),
            Some(&1),
            "acknowledged event {m} stored {:?} times",
            stored.get(m)
        );
    }
    assert!(
        stored.values().all(|&c| c == 1),
        "an event was stored twice"
    );

    // And the server goes on accepting after the crash.
    let (body, markers) = batch("after", 5);
    let (status, reply) = server.post(&identities[0].1, "application/json", body);
    assert_eq!(status, 202, "{reply}");
    server.wait_for(reply["last_id"].as_u64().unwrap());
    let stored = stored_markers(&server);
    assert!(markers.iter().all(|m| stored.get(m) == Some(&1)));
}

fn rss_kib(pid: u32) -> u64 {
    opm_stats::loadgen::memory_of(pid).map_or(0, |(rss, _)| rss)
}

#[test]
fn overload_sheds_with_429_keeps_memory_bounded_and_stores_every_ack() {
    let dir = tempfile::tempdir().unwrap();
    // One worker and a queue of 1 000: a batch of 1 000 events is admitted
    // only into an empty queue, so concurrent senders must be shed.
    let server = Server::start(
        dir.path(),
        &[
            "--queue-capacity",
            "1000",
            "--workers",
            "1",
            "--durability",
            "fsync",
        ],
    );
    let pid = server.pid();
    let (_, token) = server.register("overload", "192.0.2.200", json!(12203));
    let url = server.url("/api/v1/ingest/events");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let shed = Arc::new(AtomicU64::new(0));
    let retry_after_ok = Arc::new(AtomicBool::new(true));
    let peak_rss = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak_rss, done) = (peak_rss.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                peak_rss.fetch_max(rss_kib(pid), Ordering::AcqRel);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (acked, shed, retry_after_ok, url, token) = (
                acked.clone(),
                shed.clone(),
                retry_after_ok.clone(),
                url.clone(),
                token.clone(),
            );
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                for n in 0..25 {
                    let (body, markers) = batch(&format!("o{i}-b{n}"), 1000);
                    let r = client
                        .post(&url)
                        .header("X-Server-Token", &token)
                        .body(body)
                        .send()
                        .unwrap();
                    match r.status().as_u16() {
                        202 => acked.lock().extend(markers),
                        429 => {
                            shed.fetch_add(1, Ordering::AcqRel);
                            if r.headers().get("retry-after").is_none() {
                                retry_after_ok.store(false, Ordering::Release);
                            }
                        }
                        s => panic!("unexpected status {s}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    server.settle();
    done.store(true, Ordering::Release);
    sampler.join().unwrap();

    let shed = shed.load(Ordering::Acquire);
    let acked = acked.lock().clone();
    assert!(shed > 0, "offered load above capacity must be shed");
    assert!(!acked.is_empty());
    assert!(
        retry_after_ok.load(Ordering::Acquire),
        "429 carries Retry-After"
    );
    let metrics = server.metrics();
    assert!(metrics.contains("mohaa_events_load_shed_total"));
    let stored = stored_markers(&server);
    for m in &acked {
        assert_eq!(stored.get(m), Some(&1), "acknowledged {m}");
    }
    // 200 000 events were offered; the queue bounds what is held at once.
    let peak_mib = peak_rss.load(Ordering::Acquire) / 1024;
    eprintln!(
        "overload: {} batches shed, {} events acknowledged, peak RSS {peak_mib} MiB",
        shed,
        acked.len()
    );
    assert!(peak_mib < 512, "server RSS peaked at {peak_mib} MiB");
}

#[test]
fn mqtt_backpressure_stores_everything_with_bounded_memory() {
    if !common::mosquitto_available() {
        eprintln!("skipped: no Mosquitto on 127.0.0.1:1883");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let client_id = format!("opm-test-bp-{}-{}", std::process::id(), common::free_port());
    // A queue far smaller than what is published: MQTT must wait, not shed.
    let server = Server::start(
        dir.path(),
        &[
            "--queue-capacity",
            "500",
            "--workers",
            "1",
            "--mqtt-url",
            "mqtt://127.0.0.1:1883",
            "--mqtt-client-id",
            &client_id,
        ],
    );
    let (id, _) = server.register("mqtt-bp", "192.0.2.201", json!(12203));
    server.wait_subscribed();
    let topic = format!("openmohaa/events/{id}");
    let mut markers = Vec::new();
    let messages: Vec<(String, Vec<u8>)> = (0..400)
        .map(|n| {
            let (body, m) = batch(&format!("mq{n}"), 20);
            markers.extend(m);
            (topic.clone(), body.into_bytes())
        })
        .collect();
    common::mqtt_publish(&messages);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut peak = 0;
    loop {
        peak = peak.max(rss_kib(server.pid()));
        let stored = stored_markers(&server);
        if markers.iter().all(|m| stored.contains_key(m)) {
            assert!(stored.values().all(|&c| c == 1));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} stored; missing batches {:?}",
            stored.len(),
            markers.len(),
            {
                let mut missing: Vec<&str> = markers
                    .iter()
                    .filter(|m| !stored.contains_key(*m))
                    .map(|m| m.split('-').next().unwrap())
                    .collect();
                missing.dedup();
                missing
            }
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        !server.metrics().contains("mohaa_events_load_shed_total 1"),
        "MQTT never sheds"
    );
    assert!(peak / 1024 < 512, "peak RSS {} MiB", peak / 1024);
}

#[test]
fn game_state_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let (_, token) = server.register("state", "192.0.2.210", json!(12203));
    let ev = |kind: &str, t: &str, extra: serde_json::Value| {
        let mut e = json!({"type": kind, "match_id": "no_match", "session_id": "sess_state",
                           "timestamp": t, "player_guid": "p1", "player_team": "american"});
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        e
    };
    let first = json!([
        ev("match_start", "1", json!({})),
        ev(
            "player_kill",
            "2",
            json!({"attacker_guid": "p2", "attacker_team": "german",
                                      "victim_guid": "p1", "victim_team": "american"})
        ),
        ev("match_start", "3", json!({})),
        ev("player_spawn", "4", json!({})),
    ]);
    let (status, reply) = server.post(&token, "application/json", first.to_string());
    assert_eq!(status, 202, "{reply}");
    server.wait_for(reply["last_id"].as_u64().unwrap());
    server.kill9();
    server.restart();
    let (status, reply) = server.post(
        &token,
        "application/json",
        json!([ev("jump", "5", json!({}))]).to_string(),
    );
    assert_eq!(status, 202);
    server.wait_for(reply["last_id"].as_u64().unwrap());
    let events = server.events();
    let jump = events.iter().find(|e| &*e.type_name == "jump").unwrap();
    // A fresh tracker would call this the first match and p1's first life.
    assert_eq!(&*jump.match_id, "sess_state-m2");
    assert_eq!(jump.actor.as_ref().unwrap().life, 3);
    assert_eq!(jump.actor.as_ref().unwrap().health, Some(100));
}
