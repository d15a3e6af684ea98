//! Storage benchmark: insert throughput per analytics backend and the
//! latency of the leaderboard and player queries. Not a test: it prints
//! numbers for docs/storage.md.
//!
//! ```sh
//! cargo run -p opm-store --example bench -- [events] [clickhouse-url]
//! ```
//! Defaults: 200 000 events; ClickHouse at http://127.0.0.1:8123 (skipped
//! when unreachable). SQLite runs in a temporary directory.

use std::sync::Arc;
use std::time::Instant;

use opm_model::{Event, EventKind, Participant, Team, Vec3};
use opm_store::analytics::AnalyticsStore;
use opm_store::analytics::clickhouse::{ClickHouseAnalytics, ClickHouseConfig};
use opm_store::analytics::query::{LeaderStat, Period, StatsQueries};
use opm_store::analytics::sqlite::SqliteAnalytics;
use opm_store::analytics::writer::{BatchWriter, WriterConfig};

fn events(n: usize, end_ms: i64) -> Vec<Event> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let kinds = [
        EventKind::PlayerKill,
        EventKind::WeaponFire,
        EventKind::WeaponFire,
        EventKind::WeaponHit,
        EventKind::Damage,
        EventKind::Jump,
    ];
    let weapons = ["Thompson", "MP40", "Kar98K", "M1 Garand", "Colt 45"];
    let maps = ["mohdm1", "mohdm2", "mohdm6", "obj_team2"];
    let span = 30 * 86_400_000i64;
    (0..n)
        .map(|i| {
            let r = next();
            let mut e = Event::new(kinds[(r % kinds.len() as u64) as usize]);
            e.id = i as u64 + 1;
            e.server = "bench".into();
            e.time_ms = end_ms - span + (i as i64 * span) / n as i64;
            e.match_id = format!("m{}", i / 2000).into();
            e.map = maps[(i / 2000) % maps.len()].into();
            let a = (r >> 8) % 2000;
            let t = ((r >> 20) % 2000 + 1 + a) % 2000;
            let mut pa = Participant::new(format!("player-{a}"));
            pa.name = format!("Player {a}").into();
            pa.team = Team::Allies;
            pa.position = Some(Vec3 {
                x: (r >> 32 & 0xfff) as f32,
                y: (r >> 44 & 0xfff) as f32,
                z: 0.0,
            });
            e.actor = Some(pa);
            if matches!(
                e.kind,
                EventKind::PlayerKill | EventKind::WeaponHit | EventKind::Damage
            ) {
                let mut pt = Participant::new(format!("player-{t}"));
                pt.name = format!("Player {t}").into();
                pt.team = Team::Axis;
                e.target = Some(pt);
                e.hit_location = if r % 7 == 0 {
                    "head".into()
                } else {
                    "torso_upper".into()
                };
                e.damage = (r % 100) as f32;
            }
            e.weapon = weapons[((r >> 40) % weapons.len() as u64) as usize].into();
            e.raw = Some(format!("{{\"type\":\"{}\",\"i\":{i}}}", e.kind.as_str()).into());
            e
        })
        .collect()
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(name: &str, store: Arc<dyn AnalyticsStore>, evs: &[Event], now: i64) {
    store.migrate().await.unwrap();
    // Direct inserts, 1 000 rows per call.
    let half = evs.len() / 2;
    let t = Instant::now();
    for chunk in evs[..half].chunks(1000) {
        store.insert(chunk).await.unwrap();
    }
    let direct = half as f64 / t.elapsed().as_secs_f64();
    // Through the batch writer, default (1 000 rows or 1 s) for a quarter…
    let quarter = half + (evs.len() - half) / 2;
    let t = Instant::now();
    let writer = BatchWriter::spawn(store.clone(), WriterConfig::default());
    for chunk in evs[half..quarter].chunks(5000) {
        writer.send_many(chunk.to_vec()).await.unwrap();
    }
    writer.close().await.unwrap();
    let via_writer = (quarter - half) as f64 / t.elapsed().as_secs_f64();
    // …and with 20 000-row batches for the last quarter.
    let t = Instant::now();
    let writer = BatchWriter::spawn(
        store.clone(),
        WriterConfig {
            max_rows: 20_000,
            ..WriterConfig::default()
        },
    );
    for chunk in evs[quarter..].chunks(5000) {
        writer.send_many(chunk.to_vec()).await.unwrap();
    }
    writer.close().await.unwrap();
    let big = (evs.len() - quarter) as f64 / t.elapsed().as_secs_f64();
    println!(
        "{name}: insert {direct:.0} rows/s (1 000-row inserts), {via_writer:.0} rows/s (batch writer, 1 000 rows), {big:.0} rows/s (batch writer, 20 000 rows); {} events",
        evs.len()
    );
    let q = StatsQueries::new(store.clone());
    for (label, stat, period) in [
        ("leaderboard kills/all", LeaderStat::Kills, Period::All),
        ("leaderboard kd/week", LeaderStat::Kd, Period::Week),
    ] {
        let mut ms = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let b = q.leaderboard(stat, period, 25, 0, now).await.unwrap();
            assert!(!b.entries.is_empty());
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "{name}: {label}: p50 {:.1} ms, p99 {:.1} ms",
            pct(&ms, 0.5),
            pct(&ms, 0.99)
        );
    }
    let mut ms = Vec::new();
    for i in 0..50 {
        let g = format!("player-{}", i * 37 % 2000);
        let t = Instant::now();
        q.player(&g).await.unwrap();
        q.player_weapons(&g).await.unwrap();
        q.player_matches(&g, 10).await.unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "{name}: player profile (totals + weapons + matches): p50 {:.1} ms, p99 {:.1} ms",
        pct(&ms, 0.5),
        pct(&ms, 0.99)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let ch = args
        .get(2)
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:8123".into());
    let now = opm_store::time::now_ms();
    let evs = events(n, now);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(
        SqliteAnalytics::open(&dir.path().join("analytics.sqlite"))
            .await
            .unwrap(),
    );
    run("sqlite", sqlite, &evs, now).await;
    let db = format!("opm_bench_{}", std::process::id());
    match ClickHouseConfig::parse(&format!("{ch}/{db}")).and_then(ClickHouseAnalytics::new) {
        Ok(store) => {
            let store = Arc::new(store);
            if store.migrate().await.is_ok() {
                run("clickhouse", store.clone(), &evs, now).await;
                store.drop_database().await.unwrap();
            } else {
                println!("clickhouse: unreachable at {ch}, skipped");
            }
        }
        Err(e) => println!("clickhouse: {e}"),
    }
}
