//! Cost of decoding what the game sends: a 20-event batch of the tracker
//! script's all-string JSON objects (kills, damage, weapon fire, movement)
//! through `decode_body` (split, parse, normalise). Throughput is per event.
//!
//! Run: `cargo bench -p opm-model --bench decode -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use opm_model::wire::{DecodeContext, decode_body};

/// The allocator of the `opm-stats` binary: decoding allocates, and glibc
/// malloc's costs (consolidation of freed chunks above its thread cache's
/// 1 KiB) are not the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn participant(prefix: &str, n: usize, team: &str) -> String {
    format!(
        r#""{prefix}_name":"^1Player{n}","{prefix}_guid":"{n:032x}","{prefix}_team":"{team}","{prefix}_x":"-67.0411","{prefix}_y":"1504.86","{prefix}_z":"384.125","{prefix}_pitch":"0","{prefix}_yaw":"253.74","{prefix}_stance":"stand""#
    )
}

fn body() -> String {
    let common = r#""match_id":"no_match","session_id":"sess_f88106789e6e168b","map_name":"obj/obj_team2","gametype":"4""#;
    let events: Vec<String> = (0..20)
        .map(|i| {
            let t = format!(r#""timestamp":"{}.5""#, 100 + i);
            match i % 4 {
                0 => format!(
                    r#"{{"type":"player_kill",{common},{t},{},{},"weapon":"Kar98k","damage":"112.487","hitloc":"head","mod":"MOD_BULLET"}}"#,
                    participant("attacker", i, "american"),
                    participant("victim", i + 1, "german")
                ),
                1 => format!(
                    r#"{{"type":"player_damage",{common},{t},{},{},"weapon":"Thompson","damage":"31","hitloc":"torso_upper","mod":"MOD_BULLET"}}"#,
                    participant("attacker", i, "german"),
                    participant("victim", i + 1, "american")
                ),
                2 => format!(
                    r#"{{"type":"weapon_fire",{common},{t},{},"weapon":"MP40","ammo_remaining":"27"}}"#,
                    participant("player", i, "german")
                ),
                _ => format!(
                    r#"{{"type":"distance",{common},{t},{},"walked":"42.7","sprinted":"0","swam":"0","driven":"0"}}"#,
                    participant("player", i, "american")
                ),
            }
        })
        .collect();
    format!("[{}]", events.join(","))
}

fn decode(c: &mut Criterion) {
    let body = body();
    let ctx = DecodeContext {
        server_id: "srv-1".into(),
        received_ms: 1_700_000_000_000,
    };
    assert_eq!(decode_body(body.as_bytes(), &ctx).unwrap().events.len(), 20);
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(20));
    group.bench_function("game_batch_20", |b| {
        b.iter(|| decode_body(std::hint::black_box(body.as_bytes()), &ctx).unwrap())
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
