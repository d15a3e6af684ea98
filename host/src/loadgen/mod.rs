//! `opm-stats loadgen` and `opm-stats import`.
//!
//! Loadgen runs several simulated servers ([`game::GameSim`]) and sends
//! their batches, in the game's exact wire format, over HTTP (registering
//! the servers first) or MQTT, at a target total rate. Each simulated
//! server sends its batches in order, one at a time, as a game server does.
//! It reports the achieved rate and the acknowledgement latency
//! percentiles. `--record FILE` writes every batch as a JSON line
//! `{"server":i,"batch":[…]}`; `--dry-run` only records (deterministic for a
//! seed, for golden tests). `import FILE` feeds such a file through the
//! ingest pipeline of a data directory.

pub mod game;
pub mod server_side;
pub mod wire;

pub use server_side::memory_of;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use parking_lot::Mutex;
use serde_json::{Value, json};

use game::GameSim;

#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenConfig {
    /// Base URL of the stats server (registration and HTTP ingest).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Publish batches to this MQTT broker instead of POSTing them.
    #[arg(long)]
    pub mqtt: Option<String>,
    /// Simulated game servers.
    #[arg(long, default_value_t = 4)]
    pub servers: usize,
    #[arg(long, default_value_t = 8)]
    pub min_players: usize,
    #[arg(long, default_value_t = 32)]
    pub max_players: usize,
    /// Target events per second over all servers (0: as fast as possible).
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Stop after this many events instead.
    #[arg(long)]
    pub events: Option<u64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write every batch as a JSON line.
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Only generate (and record); send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Admin token, to re-register addresses a previous run registered.
    #[arg(long, env = "OPM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The server's process id (same machine): after the load, wait until
    /// it has processed and checkpointed everything, then report its CPU
    /// per event, the drain time, the end-to-end rate and its memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ImportConfig {
    /// A JSONL recording (`loadgen --record`).
    pub file: PathBuf,
    /// Data directory of the stats server (it must not be running on it).
    #[arg(long, env = "OPM_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Directory of plugin components to evaluate the import with.
    #[arg(long, env = "OPM_PLUGINS")]
    pub plugins: Option<PathBuf>,
    #[command(flatten)]
    pub ingest: crate::ingest::IngestConfig,
}

/// What a loadgen run achieved.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    pub events: u64,
    pub batches: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    pub shed_429: u64,
    pub errors: u64,
    pub latency_ms_p50: f64,
    pub latency_ms_p90: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_p999: f64,
    pub latency_ms_max: f64,
}

struct Shared {
    events: AtomicU64,
    batches: AtomicU64,
    shed: AtomicU64,
    errors: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
    record: Option<Mutex<std::io::BufWriter<std::fs::File>>>,
}

impl Shared {
    fn record(&self, server: usize, batch: &[u8]) -> anyhow::Result<()> {
        if let Some(w) = &self.record {
            let mut w = w.lock();
            // The batch is written as the game sent it, byte for byte.
            write!(w, "{{\"server\":{server},\"batch\":")?;
            w.write_all(batch)?;
            w.write_all(b"}\n")?;
        }
        Ok(())
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Registers a simulated server; returns (server_id, token).
async fn register(
    client: &reqwest::Client,
    config: &LoadgenConfig,
    index: usize,
    nonce: u32,
) -> anyhow::Result<(String, String)> {
    let body = json!({
        "name": format!("loadgen-{index}"),
        "ip_address": format!("10.{}.{}.{}", (nonce >> 8) & 0xff, nonce & 0xff, index % 250),
        "port": (12203 + index / 250).to_string(),
    });
    let mut req = client
        .post(format!("{}/api/v1/servers/register", config.url))
        .json(&body);
    if let Some(admin) = &config.admin_token {
        req = req.header("X-Admin-Token", admin);
    }
    let resp = req.send().await.context("register")?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        anyhow::bail!("register {index}: {status} {v}");
    }
    Ok((
        v["server_id"].as_str().unwrap_or_default().to_string(),
        v["token"].as_str().unwrap_or_default().to_string(),
    ))
}

/// Runs a load test.
pub async fn run(config: LoadgenConfig) -> anyhow::Result<Report> {
    let servers = config.servers.max(1);
    let record = match &config.record {
        Some(p) => Some(Mutex::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?,
        ))),
        None => None,
    };
    let shared = Arc::new(Shared {
        events: AtomicU64::new(0),
        batches: AtomicU64::new(0),
        shed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        latencies_us: Mutex::new(Vec::new()),
        record,
    });
    let limit = config.events;
    if config.dry_run {
        // Round-robin over the servers: one deterministic stream.
        let mut sims: Vec<GameSim> = (0..servers)
            .map(|i| GameSim::new(config.seed, i, config.min_players, config.max_players))
            .collect();
        let limit = limit.unwrap_or(config.rate.max(1) * config.duration);
        let mut sent = 0u64;
        'outer: loop {
            for sim in &mut sims {
                let batch = sim.next_batch();
                sent += batch.events as u64;
                shared.batches.fetch_add(1, Ordering::Relaxed);
                shared.record(sim.index, &batch.json)?;
                if sent >= limit {
                    break 'outer;
                }
            }
        }
        shared.events.store(sent, Ordering::Relaxed);
        if let Some(w) = &shared.record {
            w.lock().flush()?;
        }
        return Ok(Report {
            events: sent,
            batches: shared.batches.load(Ordering::Relaxed),
            ..Report::default()
        });
    }

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(servers * 2)
        .timeout(Duration::from_secs(30))
        .build()?;
    let nonce = (crate::ingest::now_ms() as u32) ^ std::process::id();
    let mut identities = Vec::new();
    for i in 0..servers {
        identities.push(register(&client, &config, i, nonce).await?);
    }
    let mqtt = match &config.mqtt {
        Some(url) => {
            let broker = crate::ingest::mqtt::parse_url(url).map_err(anyhow::Error::msg)?;
            let mut opts =
                rumqttc::MqttOptions::new(format!("opm-loadgen-{nonce}"), broker.host, broker.port);
            opts.set_max_packet_size(2 << 20, 2 << 20);
            opts.set_inflight(1000);
            let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 4096);
            let acks: Arc<Mutex<std::collections::VecDeque<Instant>>> = Arc::default();
            let acks2 = acks.clone();
            let shared2 = shared.clone();
            tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                            // The broker acknowledges in publish order.
                            if let Some(t) = acks2.lock().pop_front() {
                                shared2
                                    .latencies_us
                                    .lock()
                                    .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "loadgen MQTT connection");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            });
            Some((client, acks))
        }
        None => None,
    };

    let started = Instant::now();
    let deadline = started + Duration::from_secs(config.duration);
    let per_server_rate = config.rate as f64 / servers as f64;
    let per_server_limit = limit.map(|l| l.div_ceil(servers as u64));
    let mut tasks = Vec::new();
    for (i, (server_id, token)) in identities.into_iter().enumerate() {
        let shared = shared.clone();
        let client = client.clone();
        let url = format!("{}/api/v1/ingest/events", config.url);
        let mqtt = mqtt.clone();
        let mut sim = GameSim::new(config.seed, i, config.min_players, config.max_players);
        tasks.push(tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                if Instant::now() >= deadline && per_server_limit.is_none() {
                    break;
                }
                if per_server_limit.is_some_and(|l| sent >= l) {
                    break;
                }
                let batch = sim.next_batch();
                let n = batch.events as u64;
                if per_server_rate > 0.0 {
                    // Open-loop pacing: each batch has its due time.
                    let due = started + Duration::from_secs_f64(sent as f64 / per_server_rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = bytes::Bytes::from(batch.json);
                if let Some((client, acks)) = &mqtt {
                    acks.lock().push_back(Instant::now());
                    if client
                        .publish(
                            format!("openmohaa/events/{server_id}"),
                            rumqttc::QoS::AtLeastOnce,
                            false,
                            body.to_vec(),
                        )
                        .await
                        .is_err()
                    {
                        shared.errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                } else {
                    loop {
                        let t = Instant::now();
                        let resp = client
                            .post(&url)
                            .header("Content-Type", "application/json")
                            .header("X-Server-Token", &token)
                            .body(body.clone())
                            .send()
                            .await;
                        match resp {
                            Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                                let us = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
                                shared.latencies_us.lock().push(us);
                                break;
                            }
                            Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                                shared.shed.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Ok(r) => {
                                shared.errors.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(status = %r.status(), "loadgen batch refused");
                                break;
                            }
                            Err(e) => {
                                shared.errors.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(error = %e, "loadgen request failed");
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                break;
                            }
                        }
                    }
                }
                let _ = shared.record(i, &body);
                sent += n;
                shared.events.fetch_add(n, Ordering::Relaxed);
                shared.batches.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    if let Some((_, acks)) = &mqtt {
        // Wait for the last acknowledgements.
        let wait_until = Instant::now() + Duration::from_secs(10);
        while !acks.lock().is_empty() && Instant::now() < wait_until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(w) = &shared.record {
        w.lock().flush()?;
    }
    let mut lat = std::mem::take(&mut *shared.latencies_us.lock());
    lat.sort_unstable();
    let events = shared.events.load(Ordering::Relaxed);
    Ok(Report {
        events,
        batches: shared.batches.load(Ordering::Relaxed),
        seconds,
        events_per_second: events as f64 / seconds,
        shed_429: shared.shed.load(Ordering::Relaxed),
        errors: shared.errors.load(Ordering::Relaxed),
        latency_ms_p50: percentile(&lat, 0.50),
        latency_ms_p90: percentile(&lat, 0.90),
        latency_ms_p99: percentile(&lat, 0.99),
        latency_ms_p999: percentile(&lat, 0.999),
        latency_ms_max: lat.last().map_or(0.0, |v| *v as f64 / 1000.0),
    })
}

/// Feeds a recording through the ingest pipeline of a data directory.
/// Returns (events ingested, events rejected).
pub fn import(config: ImportConfig) -> anyhow::Result<(u64, u64)> {
    let rt = tokio::runtime::Runtime::new()?;
    let mut ingest_config = config.ingest.clone();
    let workers = ingest_config
        .workers
        .unwrap_or_else(|| crate::ingest::pipeline::PipelineConfig::default().workers);
    ingest_config.workers = Some(workers);
    let backends = rt.block_on(crate::ingest::backends::open(
        &config.data_dir,
        workers,
        config.plugins.as_deref(),
    ))?;
    let ingest = crate::ingest::Ingest::open(
        &config.data_dir,
        ingest_config,
        Some(backends.directory.clone()),
        backends.sinks.clone(),
        backends.plugins.clone(),
    )?;
    let file = std::fs::File::open(&config.file)
        .with_context(|| format!("open {}", config.file.display()))?;
    let mut ids: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    let (mut ok, mut bad) = (0u64, 0u64);
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).with_context(|| format!("line {}", n + 1))?;
        let server = v["server"].as_u64().unwrap_or(0);
        let id = match ids.get(&server) {
            Some(id) => id.clone(),
            None => {
                // Recorded servers become registered servers of this data
                // directory, at a stable address per index.
                let servers = ingest.servers();
                let ip = format!("192.0.2.{}", server % 250);
                let port = 12203 + (server / 250) as u16;
                let id = match servers.directory().get_by_addr(&ip, port)? {
                    Some(r) => r.id,
                    None => {
                        servers
                            .register(
                                &format!("import-{server}"),
                                &ip,
                                port,
                                None,
                                config.ingest.admin_token.as_deref(),
                                crate::ingest::now_ms(),
                            )?
                            .server_id
                    }
                };
                ids.insert(server, id.clone());
                id
            }
        };
        let body = bytes::Bytes::from(serde_json::to_vec(&v["batch"])?);
        let decoded = ingest.decode(&id, &body)?;
        bad += decoded.errors.len() as u64;
        ok += decoded.events.len() as u64;
        ingest.submit_blocking(&id, decoded)?;
    }
    if !ingest.drain(Duration::from_secs(120)) {
        anyhow::bail!("import did not drain within 120 s");
    }
    ingest.stop();
    Ok((ok, bad))
}
