//! Shared test helpers: building the test packs, a deterministic event
//! stream run through the real tracker, and a sharded runner.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use opm_model::plugin::{MemoryStateStore, Outcome, OutcomeKind};
use opm_model::tracker::{SYNTHETIC_ID_BITS, Tracker};
use opm_model::{Event, EventKind, Participant, Str};
use opm_plugin_runtime::{PluginHost, RuntimeConfig, guest};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn good_pack() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| guest::build_component("opm-test-good-pack", &root()).unwrap())
        .clone()
}

pub fn fault_pack() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| guest::build_component("opm-test-fault-pack", &root()).unwrap())
        .clone()
}

/// xorshift: deterministic and dependency free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `per_server` raw events for each of `servers` servers, run through the
/// tracker (so lives, matches, rounds and synthetic events are real), then
/// interleaved by time. Each server has its own players.
pub fn stream(servers: usize, per_server: usize, seed: u64) -> Vec<Event> {
    let mut all: Vec<Vec<Event>> = Vec::new();
    for s in 0..servers {
        let mut rng = Rng::new(seed.wrapping_mul(31).wrapping_add(s as u64 + 1));
        let mut tracker = Tracker::new();
        let mut out = Vec::new();
        let server: Str = Str::from(format!("srv{s}"));
        let players: Vec<String> = (0..8).map(|p| format!("s{s}-p{p}")).collect();
        for seq in 0..per_server as u64 {
            let roll = rng.below(100);
            let kind = if seq % 250 == 0 {
                EventKind::MatchStart
            } else if seq % 250 == 249 {
                EventKind::MatchEnd
            } else if seq % 50 == 0 {
                EventKind::RoundStart
            } else if roll < 60 {
                EventKind::PlayerKill
            } else if roll < 75 {
                EventKind::PlayerSpawn
            } else if roll < 85 {
                EventKind::WeaponFire
            } else {
                EventKind::Chat
            };
            let mut ev = Event::new(kind);
            ev.id = (seq + 1) << SYNTHETIC_ID_BITS;
            ev.server = server.clone();
            ev.session = Str::from(format!("srv{s}-sess"));
            ev.time_ms = 1_700_000_000_000 + seq as i64 * 1000;
            ev.map = Str::from("dm/mohdm1");
            ev.weapon = Str::from(["kar98", "thompson", "mp40"][rng.below(3) as usize]);
            let a = rng.below(8) as usize;
            match kind {
                EventKind::PlayerKill => {
                    let t = (a + 1 + rng.below(7) as usize) % 8;
                    ev.actor = Some(Participant::new(players[a].as_str()));
                    ev.target = Some(Participant::new(players[t].as_str()));
                }
                EventKind::PlayerSpawn | EventKind::WeaponFire | EventKind::Chat => {
                    ev.actor = Some(Participant::new(players[a].as_str()));
                }
                _ => {}
            }
            tracker.process(ev, &mut out);
        }
        all.push(out);
    }
    let mut merged: Vec<Event> = all.into_iter().flatten().collect();
    // Stable: a server's events keep their order.
    merged.sort_by_key(|e| e.time_ms);
    merged
}

pub fn server_index(ev: &Event) -> usize {
    ev.server.trim_start_matches("srv").parse().unwrap()
}

/// Feeds `events` to `host` from `workers` threads, sharded by server, in
/// batches of `batch`.
pub fn run(host: &PluginHost, events: &[Event], workers: usize, batch: usize) -> Vec<Outcome> {
    let shards: Vec<Vec<Event>> = (0..workers)
        .map(|w| {
            events
                .iter()
                .filter(|e| server_index(e) % workers == w)
                .cloned()
                .collect()
        })
        .collect();
    let mut out = Vec::new();
    std::thread::scope(|s| {
        let handles: Vec<_> = shards
            .iter()
            .enumerate()
            .map(|(w, shard)| {
                s.spawn(move || {
                    let mut out = Vec::new();
                    for chunk in shard.chunks(batch) {
                        out.extend(host.process(w, chunk).unwrap());
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            out.extend(h.join().unwrap());
        }
    });
    out
}

/// Outcomes in a canonical order, without the pack version.
pub fn canonical(outcomes: &[Outcome]) -> Vec<(String, String, String, u64, String)> {
    let mut v: Vec<_> = outcomes
        .iter()
        .map(|o| {
            let kind = match &o.kind {
                OutcomeKind::Unlock => "unlock".to_string(),
                OutcomeKind::Progress { current, target } => format!("progress {current}/{target}"),
            };
            (
                o.pack.to_string(),
                o.player.to_string(),
                o.code.to_string(),
                o.event_id,
                kind,
            )
        })
        .collect();
    v.sort();
    v
}

pub fn config(cache: &Path, workers: usize) -> RuntimeConfig {
    let mut cfg = RuntimeConfig::new(cache);
    cfg.workers = workers;
    cfg.max_instances = 64;
    // Generous: the machine is shared, and a good pack that loses the CPU
    // for longer than its deadline twice in a row would be recorded as
    // failing. Tests with a looping pack lower it.
    cfg.batch_deadline_base = std::time::Duration::from_millis(200);
    cfg
}

pub fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn new_host(cfg: RuntimeConfig) -> (PluginHost, Arc<MemoryStateStore>, prometheus::Registry) {
    let store = Arc::new(MemoryStateStore::new());
    let registry = prometheus::Registry::new();
    let host = PluginHost::new(cfg, store.clone(), &registry).unwrap();
    (host, store, registry)
}

/// Kill events with an actor: what the good pack subscribes to and counts.
pub fn kills(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| e.kind == EventKind::PlayerKill && e.actor.is_some())
        .count()
}

/// Panics with the first difference between two sorted lists, not both.
pub fn same<T: PartialEq + std::fmt::Debug>(a: &[T], b: &[T], what: &str) {
    if a == b {
        return;
    }
    let i = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    panic!(
        "{what}: lengths {} vs {}, first difference at {i}: {:?} vs {:?}",
        a.len(),
        b.len(),
        a.get(i),
        b.get(i)
    );
}
