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

use crate::ingest::pipeline::{EventSink, PluginStage, SinkError, Unwritten};
use crate::ingest::servers::{DirectoryError, ServerDirectory, ServerRecord, ServerStatus};

/// Runs a future to completion from a thread outside the runtime's async
/// workers (pipeline workers, the checkpointer, `spawn_blocking`).
pub(crate) fn block<T>(handle: &Handle, f: impl std::future::Future<Output = T>) -> T {
    match Handle::try_current() {
        // On a multi-thread runtime worker: let the runtime move its other
        // tasks off this thread while it blocks.
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| handle.block_on(f))
        }
        _ => handle.block_on(f),
    }
}

/// The analytics store, fed through its batch writer (30 000 rows or 1 s
/// unless `OPM_BATCH_ROWS` / `OPM_BATCH_MS` say otherwise).
/// `flush` returns once everything written is stored, which is what the
/// checkpoint needs; the store skips events at or below its per-server
/// high-water mark, so replays are idempotent.
pub struct AnalyticsSink {
    writer: BatchWriter,
    /// When the last flush ended.
    flushed: parking_lot::Mutex<std::time::Instant>,
    handle: Handle,
    /// False after a failed write or flush, until one succeeds: `/ready`.
    healthy: std::sync::atomic::AtomicBool,
}

/// Longest a checkpoint waits for the analytics writer's batch to be
/// committed before it flushes the batch anyway.
const MAX_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl AnalyticsSink {
    pub fn new(writer: BatchWriter, handle: Handle) -> AnalyticsSink {
        AnalyticsSink {
            writer,
            flushed: parking_lot::Mutex::new(std::time::Instant::now()),
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

    fn write(&self, events: &[Event], outcomes: &[Outcome]) -> Result<(), SinkError> {
        self.write_owned(events.to_vec(), outcomes)
            .map_err(|u| u.error)
    }

    /// The pipeline's last sink: the writer keeps the batch it is handed.
    fn write_owned(&self, events: Vec<Event>, _outcomes: &[Outcome]) -> Result<(), Unwritten> {
        let sent = block(&self.handle, self.writer.send_many(events));
        self.healthy
            .store(sent.is_ok(), std::sync::atomic::Ordering::Release);
        sent.map_err(|not_taken| Unwritten {
            error: SinkError::Unavailable(not_taken.to_string()),
            events: not_taken.0,
        })
    }

    fn flush(&self) -> Result<(), SinkError> {
        let flushed = self.note(block(&self.handle, self.writer.flush()).map(|_| ()));
        *self.flushed.lock() = std::time::Instant::now();
        flushed
    }

    /// A flush ends the batch being filled, and rollup rows are written
    /// once per batch: under load, flushing at every 200 ms checkpoint cut
    /// batches to a third of their size and cost the SQLite writer 15-20 %
    /// more CPU per event. So while the writer holds a quarter of a batch
    /// or more, it fills and commits batches on its own, and the
    /// checkpoint waits for a cheap moment, for at most a second.
    fn flush_due(&self) -> bool {
        // Below a quarter of a batch, a flush is cheap.
        self.writer.held() < self.writer.batch_rows() / 4
            || self.flushed.lock().elapsed() >= MAX_FLUSH_INTERVAL
    }

    fn ready(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Acquire)
    }
}

fn record_of(s: relational::Server) -> ServerRecord {
    ServerRecord {
        id: s.id,
        name: s.name,
        ip_address: s.ip_address,
        port: s.port,
        token_hash: s.token_hash,
        status: s.status,
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
            status: record.status,
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
        if !block(&self.handle, self.store.set_server_status(id, status)).map_err(unavailable)? {
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
    // The analytics sink last: the pipeline hands the last sink the batch
    // itself, and it is the one that keeps the events.
    let sinks: Vec<Arc<dyn EventSink>> = vec![
        Arc::new(crate::ingest::live::LiveSink::new(
            stores.live.clone(),
            Handle::current(),
        )),
        Arc::new(AnalyticsSink::new(writer, Handle::current())),
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

#[cfg(test)]
mod tests {
    use super::*;
    use opm_model::EventKind;
    use opm_store::analytics::AnalyticsStore as _;
    use opm_store::analytics::sqlite::SqliteAnalytics;
    use opm_store::analytics::writer::WriterConfig;

    /// Events with nothing but a server and an id: all the writer needs.
    fn events(ids: std::ops::RangeInclusive<u64>) -> Vec<Event> {
        ids.map(|id| Event {
            server: "s1".into(),
            id,
            ..Event::new(EventKind::Chat)
        })
        .collect()
    }

    /// The checkpoint flushes a small batch at once, and leaves a large
    /// one to fill and commit on its own, for up to a second.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_large_batch_is_flushed_only_once_a_second_has_passed() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteAnalytics::open(&dir.path().join("a.db"))
            .await
            .unwrap();
        store.migrate().await.unwrap();
        let config = WriterConfig {
            max_rows: 100,
            max_delay: std::time::Duration::from_secs(60),
            ..WriterConfig::default()
        };
        let writer = BatchWriter::spawn(Arc::new(store), config);
        let sink = Arc::new(AnalyticsSink::new(writer, Handle::current()));
        let s = sink.clone();
        tokio::task::spawn_blocking(move || {
            s.write(&events(1..=10), &[]).unwrap();
            assert!(s.flush_due(), "10 of 100 rows: a cheap flush");
            s.write(&events(11..=40), &[]).unwrap();
            assert!(!s.flush_due(), "40 of 100 rows: the batch fills first");
            std::thread::sleep(MAX_FLUSH_INTERVAL);
            assert!(s.flush_due(), "a second since the last flush");
            s.flush().unwrap();
            assert!(s.flush_due(), "nothing held after a flush");
        })
        .await
        .unwrap();
    }
}
