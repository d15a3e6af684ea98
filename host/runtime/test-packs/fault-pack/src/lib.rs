//! A misbehaving pack for the runtime's fault tests, written against the raw
//! WIT bindings. Config keys:
//! * `id` (required) and `version` (default `1.0.0`); its one achievement
//!   is `{id}-x`;
//! * `mode`: `loop`, `panic`, `oom`, `flood`, `state-flood`, `counter-flood`, `error`,
//!   `bad-code`, `probe` (logs what the sandbox lets it see),
//!   `unknown-import` (calls an import the host does not define) or `none`;
//! * `every`: misbehave only on events whose id is a multiple of it
//!   (default 1: every event). Other events are evaluated cleanly (an
//!   unlock of `{id}-x` on every tenth event).

// The generated export glue takes the batch record flattened (ten
// pointer/length words), which is the canonical ABI's shape, not ours.
#![allow(clippy::too_many_arguments)]

// The achievement-pack world plus one import the host does not provide, so
// the tests can show that calling an unknown import traps.
wit_bindgen::generate!({
    inline: r#"
        package opm-test:extra;
        interface extra {
            peek: func() -> u32;
        }
        world fault-pack {
            include openmohaa:stats/achievement-pack@0.1.0;
            import extra;
        }
    "#,
    path: "../../../../wit",
    world: "opm-test:extra/fault-pack",
    generate_all,
});

use openmohaa::stats::log::{self, Level};
use openmohaa::stats::meta::{Achievement, Subscription, Unlock};
use openmohaa::stats::state::{self, Scope};
use openmohaa::stats::types::EventKind;
use std::cell::RefCell;
use std::hint::black_box;

struct Config {
    id: String,
    mode: String,
    every: u64,
}

thread_local! {
    static CONFIG: RefCell<Option<Config>> = const { RefCell::new(None) };
}

fn get<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
    config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

struct Pack;

impl Guest for Pack {
    fn describe(config: Vec<(String, String)>) -> Result<PackInfo, PluginError> {
        let id = get(&config, "id")
            .ok_or_else(|| PluginError::BadConfig(String::from("id is required")))?
            .to_string();
        let version = get(&config, "version").unwrap_or("1.0.0").to_string();
        let mode = get(&config, "mode").unwrap_or("none").to_string();
        let every = get(&config, "every")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1u64)
            .max(1);
        let info = PackInfo {
            id: id.clone(),
            version,
            achievements: vec![Achievement {
                code: format!("{id}-x"),
                name: String::from("X"),
                description: String::from("fault test"),
                category: String::from("test"),
                tier: 1,
                points: 1,
                icon: String::new(),
                hidden: false,
                target: 1,
            }],
            subscriptions: vec![Subscription {
                kinds: vec![EventKind::PlayerKill],
                weapons: Vec::new(),
                maps: Vec::new(),
            }],
        };
        CONFIG.with(|c| *c.borrow_mut() = Some(Config { id, mode, every }));
        Ok(info)
    }

    fn on_batch(batch: Batch) -> Result<Vec<Outcome>, PluginError> {
        CONFIG.with(|c| {
            let c = c.borrow();
            let config = c
                .as_ref()
                .ok_or_else(|| PluginError::Internal(String::from("no describe")))?;
            let mut out = Vec::new();
            let events = &batch.events;
            for i in 0..opm_plugin_abi::count(events) {
                let Some(packed) = opm_plugin_abi::PackedEvent::at(events, i) else {
                    continue;
                };
                let ev = packed.record();
                let Some(actor) = &ev.actor else { continue };
                if ev.id % config.every != 0 {
                    if ev.id % 10 == 0 {
                        out.push(Outcome::Unlock(Unlock {
                            player: actor.player,
                            code: format!("{}-x", config.id),
                            event_id: ev.id,
                        }));
                    }
                    continue;
                }
                log::emit(
                    Level::Warn,
                    &format!("misbehaving ({}) at event {}", config.mode, ev.id),
                );
                match config.mode.as_str() {
                    "loop" => {
                        let mut x = 0u64;
                        loop {
                            x = black_box(x.wrapping_add(1));
                        }
                    }
                    "panic" => panic!("fault-pack panics at event {}", ev.id),
                    "oom" => {
                        // Reserve without touching, in big steps: growth,
                        // not memset, is what the cap must stop, and it
                        // must get there long before any deadline.
                        let mut hog: Vec<Vec<u8>> = Vec::new();
                        loop {
                            hog.push(black_box(Vec::with_capacity(8 << 20)));
                        }
                    }
                    "flood" => {
                        // Far beyond the cap (events + 64) yet quick to
                        // build: the host must refuse it, not time out.
                        for _ in 0..1_000 {
                            out.push(Outcome::Unlock(Unlock {
                                player: actor.player,
                                code: format!("{}-x", config.id),
                                event_id: ev.id,
                            }));
                        }
                    }
                    "state-flood" => {
                        for n in 0..100_000u32 {
                            state::put(
                                i as u32,
                                Scope::Lifetime,
                                actor.player,
                                state::key(&format!("k{n}")),
                                1,
                            );
                        }
                    }
                    "counter-flood" => {
                        // The same cap, reached through the batched call.
                        let mut writes = Vec::new();
                        for n in 0..1000u32 {
                            opm_plugin_abi::counters::CounterWriteRecord {
                                at: i as u32,
                                scope: Scope::Lifetime as u8,
                                op: opm_plugin_abi::counters::CounterOp::Add,
                                player: actor.player,
                                key: state::key(&format!("k{n}")),
                                value: 1,
                            }
                            .encode(&mut writes);
                        }
                        state::write_counters(&writes);
                    }
                    "probe" => {
                        // What the sandbox lets a guest see.
                        use std::hash::BuildHasher;
                        let env = std::env::vars().count();
                        let args = std::env::args().count();
                        let file = std::fs::read("/etc/passwd").is_ok();
                        let dir = std::fs::read_dir("/").is_ok();
                        let time = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_secs())
                            .unwrap_or(u64::MAX);
                        let hash = std::collections::hash_map::RandomState::new().hash_one(1u32);
                        let net = std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
                        log::emit(
                            Level::Info,
                            &format!("probe env={env} args={args} file={file} dir={dir} time={time} net={net} hash={hash}"),
                        );
                    }
                    "unknown-import" => {
                        let _ = opm_test::extra::extra::peek();
                    }
                    "error" => {
                        return Err(PluginError::Internal(format!("refusing event {}", ev.id)));
                    }
                    "bad-code" => out.push(Outcome::Unlock(Unlock {
                        player: actor.player,
                        code: String::from("no-such-code"),
                        event_id: ev.id,
                    })),
                    _ => {}
                }
            }
            Ok(out)
        })
    }
}

export!(Pack);
