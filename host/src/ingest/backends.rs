//! The pipeline's traits on the real components: the analytics store's
//! batch writer as an [`EventSink`], the relational store's servers table
//! as a [`ServerDirectory`], and the plugin runtime as a [`PluginStage`].
//!
//! The stores are async; the pipeline calls from its own blocking threads,
//! so calls block those threads on the server's tokio runtime.

use std::collections::HashMap;
use std::sync::Arc;

use opm_model::Event;
use opm_model::plugin::Outcome;
use opm_plugin_runtime::PluginHost;
use opm_store::StoreError;
use opm_store::analytics::writer::BatchWriter;
use opm_store::relational::{self, NewServer, RelationalStore};
use parking_lot::RwLock;
use tokio::runtime::Handle;

use crate::ingest::pipeline::{EventSink, PluginStage, SinkError};
use crate::ingest::servers::{DirectoryError, ServerDirectory, ServerRecord, ServerStatus};

/// Runs a future to completion from a thread outside the runtime's async
/// workers (pipeline workers, the checkpointer, `spawn_blocking`).
fn block<T>(handle: &Handle, f: impl std::future::Future<Output = T>) -> T {
    match Handle::try_current() {
        // On a multi-thread runtime worker: let the runtime move its other
        // tasks off this thread while it blocks.
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(f))
        }
        _ => handle.block_on(f),
    }
}

/// The analytics store, fed through its batch writer (1 000 rows or 1 s
/// unless `OPM_BATCH_ROWS` / `OPM_BATCH_MS` say otherwise).
/// `flush` returns once everything written is stored, which is what the
/// checkpoint needs; the store skips events at or below its per-server
/// high-water mark, so replays are idempotent.
pub struct AnalyticsSink {
    writer: BatchWriter,
    handle: Handle,
    /// False after a failed write or flush, until one succeeds: `/ready`.
    healthy: std::sync::atomic::AtomicBool,
}

impl AnalyticsSink {
    pub fn new(writer: BatchWriter, handle: Handle) -> AnalyticsSink {
        AnalyticsSink {
            writer,
            handle,
            healthy: std::sync::atomic::AtomicBool::new(true),
        }
    }

    fn note<T, E: std::fmt::Display>(&self, r: Result<T, E>) -> Result<T, SinkError> {
        self.healthy
            .store(r.is_ok(), std::sync::atomic::Ordering::Release);
        r.map_err(|e| SinkError::Unavailable(e.to_string()))
    }
}

impl EventSink for AnalyticsSink {
    fn name(&self) -> &str {
        "analytics"
    }

    fn write(&self, events: &[Event], _outcomes: &[Outcome]) -> Result<(), SinkError> {
        self.note(block(&self.handle, self.writer.send_many(events.to_vec())))
    }

    fn flush(&self) -> Result<(), SinkError> {
        self.note(block(&self.handle, self.writer.flush()).map(|_| ()))
    }

    fn ready(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Acquire)
    }
}

fn status_to_store(s: ServerStatus) -> relational::ServerStatus {
    match s {
        ServerStatus::Active => relational::ServerStatus::Active,
        ServerStatus::Pending => relational::ServerStatus::Pending,
        ServerStatus::Disabled => relational::ServerStatus::Disabled,
    }
}

fn status_from_store(s: relational::ServerStatus) -> ServerStatus {
    match s {
        relational::ServerStatus::Active => ServerStatus::Active,
        relational::ServerStatus::Pending => ServerStatus::Pending,
        relational::ServerStatus::Disabled => ServerStatus::Disabled,
    }
}

fn record_of(s: relational::Server) -> ServerRecord {
    ServerRecord {
        id: s.id,
        name: s.name,
        ip_address: s.ip_address,
        port: s.port,
        token_hash: s.token_hash,
        status: status_from_store(s.status),
        created_ms: s.created_ms,
    }
}

fn unavailable(e: StoreError) -> DirectoryError {
    DirectoryError::Unavailable(e.to_string())
}

/// The relational store's servers table, with every record cached in
/// memory: authentication runs on every ingest request and must not wait
/// for a database. Writes go to the store first, then to the cache; this
/// process is the only writer of the table.
pub struct RelationalDirectory {
    store: Arc<dyn RelationalStore>,
    handle: Handle,
    cache: RwLock<HashMap<String, ServerRecord>>,
}

impl RelationalDirectory {
    pub async fn load(store: Arc<dyn RelationalStore>) -> Result<RelationalDirectory, StoreError> {
        let servers = store.list_servers().await?;
        let cache = servers
            .into_iter()
            .map(|s| (s.id.clone(), record_of(s)))
            .collect();
        Ok(RelationalDirectory {
            store,
            handle: Handle::current(),
            cache: RwLock::new(cache),
        })
    }

    fn refresh(&self, id: &str) -> Result<(), DirectoryError> {
        match block(&self.handle, self.store.server(id)).map_err(unavailable)? {
            Some(s) => {
                self.cache.write().insert(s.id.clone(), record_of(s));
                Ok(())
            }
            None => Err(DirectoryError::NotFound(id.to_string())),
        }
    }
}

impl ServerDirectory for RelationalDirectory {
    fn insert(&self, record: ServerRecord) -> Result<(), DirectoryError> {
        let new = NewServer {
            id: Some(record.id.clone()),
            name: record.name.clone(),
            ip_address: record.ip_address.clone(),
            port: record.port,
            token_hash: record.token_hash.clone(),
            status: status_to_store(record.status),
        };
        match block(&self.handle, self.store.insert_server(&new)) {
            Ok(s) => {
                self.cache.write().insert(s.id.clone(), record_of(s));
                Ok(())
            }
            Err(StoreError::Rejected { .. }) => Err(DirectoryError::Duplicate(format!(
                "{}:{}",
                record.ip_address, record.port
            ))),
            Err(e) => Err(unavailable(e)),
        }
    }

    fn get(&self, id: &str) -> Result<Option<ServerRecord>, DirectoryError> {
        Ok(self.cache.read().get(id).cloned())
    }

    fn get_by_addr(&self, ip: &str, port: u16) -> Result<Option<ServerRecord>, DirectoryError> {
        Ok(self
            .cache
            .read()
            .values()
            .find(|r| r.ip_address == ip && r.port == port)
            .cloned())
    }

    fn get_by_token_hash(&self, hash: &str) -> Result<Option<ServerRecord>, DirectoryError> {
        Ok(self
            .cache
            .read()
            .values()
            .find(|r| r.token_hash == hash)
            .cloned())
    }

    fn update_token_hash(&self, id: &str, hash: &str) -> Result<(), DirectoryError> {
        if !block(&self.handle, self.store.update_server_token(id, hash)).map_err(unavailable)? {
            return Err(DirectoryError::NotFound(id.to_string()));
        }
        self.refresh(id)
    }

    fn set_status(&self, id: &str, status: ServerStatus) -> Result<(), DirectoryError> {
        if !block(
            &self.handle,
            self.store.set_server_status(id, status_to_store(status)),
        )
        .map_err(unavailable)?
        {
            return Err(DirectoryError::NotFound(id.to_string()));
        }
        self.refresh(id)
    }

    fn list(&self) -> Result<Vec<ServerRecord>, DirectoryError> {
        let mut v: Vec<ServerRecord> = self.cache.read().values().cloned().collect();
        v.sort_by(|a, b| a.created_ms.cmp(&b.created_ms).then(a.id.cmp(&b.id)));
        Ok(v)
    }
}

/// The Wasm plugin runtime: enrichers before the tracker, packs after.
pub struct RuntimeStage {
    host: PluginHost,
}

impl RuntimeStage {
    pub fn new(host: PluginHost) -> RuntimeStage {
        RuntimeStage { host }
    }
}

impl PluginStage for RuntimeStage {
    fn enrich(&self, worker: usize, events: &mut Vec<Event>) -> Result<(), String> {
        self.host
            .enrich(worker, events.as_mut_slice())
            .map_err(|e| e.to_string())
    }

    fn evaluate(&self, worker: usize, events: &[Event]) -> Result<Vec<Outcome>, String> {
        self.host.process(worker, events).map_err(|e| e.to_string())
    }
}

/// The real components a server runs with.
pub struct Backends {
    pub stores: opm_store::Stores,
    pub directory: Arc<dyn ServerDirectory>,
    pub sinks: Vec<Arc<dyn EventSink>>,
    pub plugins: Option<Arc<dyn PluginStage>>,
    pub plugin_host: Option<PluginHost>,
}

/// Opens the stores (`CLICKHOUSE_URL`, `DATABASE_URL`, `REDIS_URL`, or
/// embedded under `data_dir`) and, when `plugins_dir` exists, the plugin
/// runtime with every component in it (hot-reloaded). `workers` must be the
/// pipeline's worker count.
pub async fn open(
    data_dir: &std::path::Path,
    workers: usize,
    plugins_dir: Option<&std::path::Path>,
) -> anyhow::Result<Backends> {
    let config = opm_store::StoreConfig::from_env(data_dir)?;
    let stores = opm_store::Stores::open(&config).await?;
    let directory: Arc<dyn ServerDirectory> =
        Arc::new(RelationalDirectory::load(stores.relational.clone()).await?);
    // OPM_BATCH_ROWS / OPM_BATCH_MS: ClickHouse wants bigger batches.
    let writer = stores.batch_writer(opm_store::analytics::writer::WriterConfig::from_env());
    let sinks: Vec<Arc<dyn EventSink>> = vec![
        Arc::new(AnalyticsSink::new(writer, Handle::current())),
        Arc::new(LiveSink::new(stores.live.clone(), Handle::current())),
    ];
    let mut plugin_host = None;
    if let Some(dir) = plugins_dir.filter(|d| d.is_dir()) {
        let mut rc = opm_plugin_runtime::RuntimeConfig::new(data_dir.join("plugin-cache"));
        rc.workers = workers;
        let state = Arc::new(opm_store::relational::state::SqlStateStore::new(
            stores.relational.clone(),
            Handle::current(),
        ));
        let host = PluginHost::new(rc, state, prometheus::default_registry())
            .map_err(|e| anyhow::anyhow!("plugin runtime: {e}"))?;
        let loader = host.clone();
        let dir_owned = dir.to_path_buf();
        // Compiling components is slow; keep it off the async threads.
        for (path, e) in tokio::task::spawn_blocking(move || loader.load_dir(&dir_owned)).await? {
            tracing::error!(component = %path.display(), error = %e, "plugin rejected");
        }
        if let Err(e) = host.watch(dir) {
            tracing::warn!(error = %e, "plugin hot reload disabled");
        }
        plugin_host = Some(host);
    }
    let plugins = plugin_host
        .clone()
        .map(|h| Arc::new(RuntimeStage::new(h)) as Arc<dyn PluginStage>);
    Ok(Backends {
        stores,
        directory,
        sinks,
        plugins,
        plugin_host,
    })
}

/// Live state for the read API: kill feed, running matches' scoreboards,
/// server heartbeats and unlock notifications. Disposable by design (the
/// live store is a cache), so a failed write is logged and never holds up
/// the pipeline, and nothing here needs flushing for the checkpoint.
pub struct LiveSink {
    live: Arc<dyn opm_store::live::LiveStore>,
    handle: Handle,
    matches: parking_lot::Mutex<HashMap<opm_model::Str, serde_json::Value>>,
}

/// How long a server counts as online after its last event.
const ONLINE_TTL: std::time::Duration = std::time::Duration::from_secs(120);

fn player_json(p: &opm_model::Participant) -> serde_json::Value {
    serde_json::json!({"guid": &*p.guid, "name": &*p.name, "team": p.team.as_str()})
}

impl LiveSink {
    pub fn new(live: Arc<dyn opm_store::live::LiveStore>, handle: Handle) -> LiveSink {
        LiveSink {
            live,
            handle,
            matches: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// Updates the scoreboards the batch touched; returns (matches to put,
    /// matches that ended).
    fn scoreboards(&self, events: &[Event]) -> (Vec<(String, serde_json::Value)>, Vec<String>) {
        use opm_model::EventKind;
        let mut matches = self.matches.lock();
        let mut touched: Vec<opm_model::Str> = Vec::new();
        let mut ended = Vec::new();
        for ev in events {
            if ev.match_id.is_empty() {
                continue;
            }
            let m = matches.entry(ev.match_id.clone()).or_insert_with(|| {
                serde_json::json!({"match_id": &*ev.match_id, "server_id": &*ev.server,
                    "started_ms": ev.time_ms, "players": {}, "allies_kills": 0, "axis_kills": 0})
            });
            m["map_name"] = serde_json::json!(&*ev.map);
            m["gametype"] = serde_json::json!(&*ev.game_mode);
            m["round"] = serde_json::json!(ev.round);
            m["updated_ms"] = serde_json::json!(ev.time_ms);
            for p in [&ev.actor, &ev.target].into_iter().flatten() {
                let entry = &mut m["players"][&*p.guid];
                if entry.is_null() {
                    *entry = serde_json::json!({"kills": 0, "deaths": 0});
                }
                entry["name"] = serde_json::json!(&*p.name);
                entry["team"] = serde_json::json!(p.team.as_str());
            }
            if ev.kind.is_kill()
                && let (Some(a), Some(t)) = (&ev.actor, &ev.target)
            {
                if a.guid != t.guid {
                    let k = &mut m["players"][&*a.guid]["kills"];
                    *k = serde_json::json!(k.as_u64().unwrap_or(0) + 1);
                    let side = match a.team {
                        opm_model::Team::Allies => Some("allies_kills"),
                        opm_model::Team::Axis => Some("axis_kills"),
                        _ => None,
                    };
                    if let Some(side) = side {
                        m[side] = serde_json::json!(m[side].as_u64().unwrap_or(0) + 1);
                    }
                }
                let d = &mut m["players"][&*t.guid]["deaths"];
                *d = serde_json::json!(d.as_u64().unwrap_or(0) + 1);
            }
            if matches!(ev.kind, EventKind::MatchEnd | EventKind::GameEnd) {
                matches.remove(&ev.match_id);
                touched.retain(|t| *t != ev.match_id);
                ended.push(ev.match_id.to_string());
            } else if !touched.contains(&ev.match_id) {
                touched.push(ev.match_id.clone());
            }
        }
        let put = touched
            .iter()
            .filter_map(|id| matches.get(id).map(|v| (id.to_string(), v.clone())))
            .collect();
        (put, ended)
    }
}

impl EventSink for LiveSink {
    fn name(&self) -> &str {
        "live"
    }

    fn write(&self, events: &[Event], outcomes: &[Outcome]) -> Result<(), SinkError> {
        let (put, ended) = self.scoreboards(events);
        let live = &self.live;
        let mut servers: HashMap<&str, &Event> = HashMap::new();
        for ev in events {
            servers.insert(&ev.server, ev);
        }
        let result: Result<(), StoreError> = block(&self.handle, async {
            for ev in events.iter().filter(|e| e.kind.is_kill()) {
                let kill = serde_json::json!({
                    "event_id": ev.id, "time_ms": ev.time_ms, "match_id": &*ev.match_id,
                    "attacker": ev.actor.as_ref().map(player_json),
                    "victim": ev.target.as_ref().map(player_json),
                    "weapon": &*ev.weapon, "hit_location": &*ev.hit_location,
                    "means_of_death": &*ev.means_of_death, "headshot": ev.is_headshot(),
                    "first_blood": ev.extra("first_blood").is_some(),
                });
                live.push_kill(&ev.server, &kill).await?;
            }
            for (id, state) in &put {
                live.put_match(id, state).await?;
            }
            for id in &ended {
                live.end_match(id).await?;
            }
            for (server, last) in &servers {
                let status = serde_json::json!({"server_id": server, "match_id": &*last.match_id,
                    "map_name": &*last.map, "gametype": &*last.game_mode, "last_event_ms": last.time_ms});
                live.heartbeat(server, &status, ONLINE_TTL).await?;
            }
            for o in outcomes {
                if o.kind == opm_model::plugin::OutcomeKind::Unlock {
                    let server = events
                        .iter()
                        .find(|e| e.id == o.event_id)
                        .map(|e| e.server.to_string())
                        .unwrap_or_default();
                    let notice = opm_store::live::UnlockNotice {
                        player: o.player.to_string(),
                        code: o.code.to_string(),
                        pack: o.pack.to_string(),
                        match_id: o.match_id.to_string(),
                        server,
                        time_ms: o.time_ms,
                    };
                    live.publish_unlock(&notice).await?;
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::debug!(error = %e, "live store write skipped");
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opm_model::{EventKind, Participant, Team};

    #[test]
    fn live_sink_feeds_kills_scoreboards_and_heartbeats() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let live: Arc<dyn opm_store::live::LiveStore> =
            Arc::new(opm_store::live::memory::MemoryLive::new());
        let sink = LiveSink::new(live.clone(), rt.handle().clone());
        let mut kill = Event::new(EventKind::PlayerKill);
        kill.id = 1024;
        kill.server = "srv".into();
        kill.match_id = "m1".into();
        kill.weapon = "Kar98".into();
        let mut a = Participant::new("a");
        a.team = Team::Axis;
        kill.actor = Some(a);
        kill.target = Some(Participant::new("b"));
        sink.write(std::slice::from_ref(&kill), &[]).unwrap();
        let feed = rt.block_on(live.kill_feed("srv", 10)).unwrap();
        assert_eq!(feed[0]["weapon"], "Kar98");
        assert_eq!(feed[0]["attacker"]["guid"], "a");
        let m = rt.block_on(live.live_match("m1")).unwrap().unwrap();
        assert_eq!(m["players"]["a"]["kills"], 1);
        assert_eq!(m["players"]["b"]["deaths"], 1);
        assert_eq!(m["axis_kills"], 1);
        assert!(rt.block_on(live.server_status("srv")).unwrap().is_some());
        let mut end = Event::new(EventKind::MatchEnd);
        end.server = "srv".into();
        end.match_id = "m1".into();
        sink.write(&[end], &[]).unwrap();
        assert!(rt.block_on(live.live_match("m1")).unwrap().is_none());
    }
}
