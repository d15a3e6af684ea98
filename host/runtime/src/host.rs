//! `PluginHost`: loading, routing, evaluation with transactional commits,
//! fault recovery and quarantine, hot reload and status.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use opm_model::plugin::{Commit, Outcome, OutcomeKind, StateKey, StateStore, StateValue};
use opm_model::{Event, EventKind, Str};
use parking_lot::Mutex;
use prometheus::Registry;
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::bindings::pack::AchievementPackPre;
use crate::bindings::pack::openmohaa::stats::meta;
use crate::config::RuntimeConfig;
use crate::convert;
use crate::enrich::{EnricherEntry, EnricherStatus};
use crate::error::{ErrorKind, Failure, FailureSink, LoadError, ProcessError};
use crate::metrics::{Metrics, PackSeries};
use crate::pack::{self, PackVersion, Warm};
use crate::routing::Router;
use crate::sandbox::{self, CallCtx, LogLine, World};
use crate::state::{self, Committed, EndedSet, EventInfo, FxMap, LifeBook, Txn, TxnLimits};

mod definitions;

pub use definitions::{AchievementDefinition, PackDefinitions};

/// Fuel per epoch tick in the tooling engine (see `Inner::arm`).
const FUEL_PER_TICK: u64 = 10_000_000;

/// Where a pack stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum PackState {
    Active,
    /// Not evaluated until the back-off ends; its events wait in a bounded
    /// per-worker queue and are evaluated, in order, first thing after.
    Quarantined {
        remaining_ms: u64,
    },
    /// The queue overflowed while quarantined: the pack is paused at its
    /// positions until its events are replayed ([`PluginHost::replay`])
    /// and it is resumed ([`PluginHost::resume`]).
    Lagging,
}

/// Status of one loaded pack.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackStatus {
    pub id: Str,
    pub version: Str,
    pub path: PathBuf,
    pub sha256: String,
    pub achievements: usize,
    pub kinds: Vec<EventKind>,
    pub state: PackState,
    /// Times the pack has been quarantined.
    pub quarantines: u32,
    pub failures: u64,
    /// Events waiting while quarantined, over all workers.
    pub queued: usize,
    /// Last evaluated event id per server.
    pub positions: Vec<(Str, u64)>,
    /// The version `rollback` would restore.
    pub previous_version: Option<Str>,
    /// State values held in memory.
    pub state_values: usize,
}

/// A component the runtime refused (the old version, if any, keeps running).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rejection {
    pub path: PathBuf,
    pub reason: String,
    pub at: SystemTime,
}

/// Everything `status` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostStatus {
    pub packs: Vec<PackStatus>,
    pub enrichers: Vec<EnricherStatus>,
    pub rejected: Vec<Rejection>,
}

#[derive(Debug)]
struct Health {
    recent: VecDeque<Instant>,
    until: Option<Instant>,
    backoff: Duration,
    quarantines: u32,
    released_at: Option<Instant>,
}

pub(crate) struct PackEntry {
    id: Str,
    current: ArcSwap<PackVersion>,
    previous: Mutex<Option<Arc<PackVersion>>>,
    /// Digest of the version a rollback replaced: the file usually still
    /// holds it, and a late or repeated notification of that file must
    /// not undo the rollback. Cleared when another version is loaded.
    rolled_back_from: Mutex<Option<String>>,
    committed: Arc<Mutex<Committed>>,
    positions: Mutex<FxMap<Str, u64>>,
    health: Mutex<Health>,
    queues: Vec<Mutex<VecDeque<Event>>>,
    /// Emptied transactions with their tables' capacity, for the next
    /// batches (at most one per worker).
    spare_txns: Mutex<Vec<Txn>>,
    lagging: AtomicBool,
    logs: Arc<Mutex<VecDeque<LogLine>>>,
    failures: AtomicU64,
}

/// A batch ready to commit.
struct Prepared {
    txn: Txn,
    outcomes: Vec<Outcome>,
    positions: Vec<(Str, u64)>,
    events: usize,
}

type Fault = (ErrorKind, String);

#[derive(Default)]
struct Admin {
    by_path: HashMap<PathBuf, (World, Str)>,
    rejected: BTreeMap<PathBuf, Rejection>,
}

pub(crate) struct Inner {
    pub(crate) cfg: RuntimeConfig,
    pub(crate) engine: Engine,
    _ticker: Option<sandbox::Ticker>,
    fuel: bool,
    store: Arc<dyn StateStore>,
    sink: Option<Arc<dyn FailureSink>>,
    pub(crate) metrics: Metrics,
    packs: ArcSwap<Vec<Arc<PackEntry>>>,
    pub(crate) enrichers: ArcSwap<Vec<Arc<EnricherEntry>>>,
    admin: Mutex<Admin>,
    failures: Mutex<VecDeque<Failure>>,
    book: Arc<Mutex<LifeBook>>,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
    pub(crate) fuel_used: AtomicU64,
    pub(crate) memory_high_water: AtomicU64,
}

/// The plugin runtime. Cheap to share: clone it into every worker thread.
///
/// Workers call [`PluginHost::process`] with their own index; a pack's
/// instance for worker `w` is only used by `w`. Feed one server's events to
/// one worker, in id order (shard by server), so each pack sees a server's
/// events in order.
#[derive(Clone)]
pub struct PluginHost {
    pub(crate) inner: Arc<Inner>,
}

impl PluginHost {
    /// A host with no packs loaded, committing to `store`, with metrics on
    /// `registry`.
    pub fn new(
        cfg: RuntimeConfig,
        store: Arc<dyn StateStore>,
        registry: &Registry,
    ) -> Result<PluginHost, LoadError> {
        PluginHost::build(cfg, store, registry, false)
    }

    pub(crate) fn build(
        cfg: RuntimeConfig,
        store: Arc<dyn StateStore>,
        registry: &Registry,
        fuel: bool,
    ) -> Result<PluginHost, LoadError> {
        let engine = sandbox::engine(&cfg, fuel)?;
        let ticker = (!fuel).then(|| sandbox::Ticker::start(engine.clone(), cfg.epoch_tick));
        let metrics =
            Metrics::new(registry).map_err(|e| LoadError::Engine(format!("metrics: {e}")))?;
        Ok(PluginHost {
            inner: Arc::new(Inner {
                cfg,
                engine,
                _ticker: ticker,
                fuel,
                store,
                sink: None,
                metrics,
                packs: ArcSwap::from_pointee(Vec::new()),
                enrichers: ArcSwap::from_pointee(Vec::new()),
                admin: Mutex::new(Admin::default()),
                failures: Mutex::new(VecDeque::new()),
                book: Arc::new(Mutex::new(LifeBook::default())),
                watcher: Mutex::new(None),
                fuel_used: AtomicU64::new(0),
                memory_high_water: AtomicU64::new(0),
            }),
        })
    }

    /// Also sends every failure to `sink` (e.g. a `plugin_failures` table).
    /// Call before sharing the host.
    pub fn with_failure_sink(mut self, sink: Arc<dyn FailureSink>) -> PluginHost {
        match Arc::get_mut(&mut self.inner) {
            Some(inner) => inner.sink = Some(sink),
            None => tracing::error!("with_failure_sink called on a shared host; sink ignored"),
        }
        self
    }

    /// Loads every `*.wasm` in `dir` (sorted by name). Returns what was
    /// rejected; the rest is loaded.
    pub fn load_dir(&self, dir: &Path) -> Vec<(PathBuf, LoadError)> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect(),
            Err(e) => {
                return vec![(
                    dir.to_path_buf(),
                    LoadError::Io(dir.display().to_string(), e.to_string()),
                )];
            }
        };
        files.sort();
        files
            .into_iter()
            .filter_map(|p| self.inner.load_file(&p).err().map(|e| (p, e)))
            .collect()
    }

    /// Loads (or reloads) one component. A pack whose id is already loaded
    /// is swapped in at the next batch boundary, keeping state and
    /// positions; the old version stays ready for [`PluginHost::rollback`].
    pub fn load_file(&self, path: &Path) -> Result<(), LoadError> {
        self.inner.load_file(path)
    }

    /// Unloads whatever was loaded from `path`. Its state stays in the store.
    pub fn unload(&self, path: &Path) {
        self.inner.unload_path(path)
    }

    /// Swaps a pack back to its previous version (and the current one
    /// becomes the previous). False when there is none. The rollback holds
    /// until a file with other content is written: the watcher does not
    /// load the content it rolled back from again.
    pub fn rollback(&self, pack: &str) -> bool {
        let _admin = self.inner.admin.lock();
        let packs = self.inner.packs.load();
        let Some(entry) = packs.iter().find(|e| &*e.id == pack) else {
            return false;
        };
        let mut prev = entry.previous.lock();
        let Some(p) = prev.take() else { return false };
        let cur = entry.current.swap(p);
        *entry.rolled_back_from.lock() = Some(cur.sha256.clone());
        *prev = Some(cur);
        true
    }

    /// Watches `dir` and hot-reloads components as they are written,
    /// replaced or removed. Compiling happens on the watcher's thread, never
    /// on a caller of `process`.
    pub fn watch(&self, dir: &Path) -> Result<(), notify::Error> {
        use notify::Watcher;
        let (tx, rx) = crossbeam_channel::unbounded::<notify::Result<notify::Event>>();
        let mut watcher = notify::recommended_watcher(move |ev| {
            let _ = tx.send(ev);
        })?;
        watcher.watch(dir, notify::RecursiveMode::NonRecursive)?;
        *self.inner.watcher.lock() = Some(watcher);
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let debounce = self.inner.cfg.watch_debounce;
        std::thread::Builder::new()
            .name("opm-plugin-watch".into())
            .spawn(move || watch_loop(weak, rx, debounce))
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(())
    }

    /// Evaluates `events` (one worker's batch, in order) through every pack
    /// and returns the outcomes committed. A pack's failures never escape:
    /// they are retried, bisected, recorded and may quarantine the pack. The
    /// only error is the state store refusing a commit; offering the batch
    /// again is safe.
    pub fn process(&self, worker: usize, events: &[Event]) -> Result<Vec<Outcome>, ProcessError> {
        let inner = &self.inner;
        if worker >= inner.cfg.workers {
            return Err(ProcessError::Worker(worker, inner.cfg.workers));
        }
        let infos: Arc<Vec<EventInfo>> = Arc::new(events.iter().map(EventInfo::of).collect());
        let ended = state::ended_in(&infos);
        let lc = convert::LowerCache::default();
        let packs = inner.packs.load_full();
        let mut out = Vec::new();
        for entry in packs.iter() {
            let r = catch_unwind(AssertUnwindSafe(|| {
                inner.run_pack(entry, worker, events, &infos, &lc, &ended, &mut out)
            }));
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    // A bug in the host path for this pack: drop its instance
                    // so nothing half-done is reused, keep the others going.
                    tracing::error!(pack = %entry.id, "host panic while evaluating pack");
                    *entry.current.load().slots[worker].lock() = None;
                }
            }
        }
        inner.book.lock().observe(&infos);
        Ok(out)
    }

    /// Evaluates `events` for one pack only, even while it is lagging;
    /// positions still apply, so events it already evaluated are skipped.
    /// With [`PluginHost::resume`] this is how a lagging pack catches up: on
    /// each worker, replay that worker's servers from the pack's positions
    /// up to the last event the worker has processed, then resume, all on
    /// the worker's own thread so no live event slips in between.
    pub fn replay(
        &self,
        worker: usize,
        pack: &str,
        events: &[Event],
    ) -> Result<Vec<Outcome>, ProcessError> {
        let inner = &self.inner;
        if worker >= inner.cfg.workers {
            return Err(ProcessError::Worker(worker, inner.cfg.workers));
        }
        let packs = inner.packs.load_full();
        let Some(entry) = packs.iter().find(|e| &*e.id == pack) else {
            return Ok(Vec::new());
        };
        let infos: Arc<Vec<EventInfo>> = Arc::new(events.iter().map(EventInfo::of).collect());
        let ended = state::ended_in(&infos);
        let lc = convert::LowerCache::default();
        let mut out = Vec::new();
        let r = catch_unwind(AssertUnwindSafe(|| {
            inner.run_pack_unpaused(entry, worker, events, &infos, &lc, &ended, &mut out)
        }));
        match r {
            Ok(Ok(())) => Ok(out),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                tracing::error!(pack = %entry.id, "host panic while replaying pack");
                *entry.current.load().slots[worker].lock() = None;
                Ok(out)
            }
        }
    }

    /// Lets a lagging pack run again (after its events were replayed).
    /// False when the pack is not loaded or was not lagging.
    pub fn resume(&self, pack: &str) -> bool {
        let packs = self.inner.packs.load();
        packs
            .iter()
            .find(|e| &*e.id == pack)
            .is_some_and(|e| e.lagging.swap(false, Ordering::Relaxed))
    }

    /// Status of every pack and enricher, and the components rejected.
    pub fn status(&self) -> HostStatus {
        let packs = self.inner.packs.load();
        let now = Instant::now();
        let packs = packs
            .iter()
            .map(|e| {
                let v = e.current.load();
                let h = e.health.lock();
                let state = if e.lagging.load(Ordering::Relaxed) {
                    PackState::Lagging
                } else {
                    match h.until {
                        Some(u) if u > now => PackState::Quarantined {
                            remaining_ms: (u - now).as_millis() as u64,
                        },
                        _ => PackState::Active,
                    }
                };
                let mut positions: Vec<_> = e
                    .positions
                    .lock()
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                positions.sort();
                PackStatus {
                    id: e.id.clone(),
                    version: v.version.clone(),
                    path: v.path.clone(),
                    sha256: v.sha256.clone(),
                    achievements: v.info.achievements.len(),
                    kinds: v.router.kinds().to_vec(),
                    state,
                    quarantines: h.quarantines,
                    failures: e.failures.load(Ordering::Relaxed),
                    queued: e.queues.iter().map(|q| q.lock().len()).sum(),
                    positions,
                    previous_version: e.previous.lock().as_ref().map(|p| p.version.clone()),
                    state_values: e.committed.lock().len(),
                }
            })
            .collect();
        let admin = self.inner.admin.lock();
        HostStatus {
            packs,
            enrichers: self.inner.enricher_status(),
            rejected: admin.rejected.values().cloned().collect(),
        }
    }

    /// The most recent failures (poison events), oldest first.
    pub fn failures(&self) -> Vec<Failure> {
        self.inner.failures.lock().iter().cloned().collect()
    }

    /// The most recent log lines of a pack, oldest first.
    pub fn logs(&self, pack: &str) -> Vec<LogLine> {
        let packs = self.inner.packs.load();
        packs
            .iter()
            .find(|e| &*e.id == pack)
            .map(|e| e.logs.lock().iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The state a pack holds in memory (equal to what it committed), sorted.
    pub fn state_snapshot(&self, pack: &str) -> Vec<(StateKey, StateValue)> {
        let packs = self.inner.packs.load();
        packs
            .iter()
            .find(|e| &*e.id == pack)
            .map(|e| e.committed.lock().snapshot(&e.id))
            .unwrap_or_default()
    }

    /// Adds enricher-derived fields to `events`' `extra`. Run it before the
    /// tracker and `process`, on the same worker.
    pub fn enrich(&self, worker: usize, events: &mut [Event]) -> Result<(), ProcessError> {
        if worker >= self.inner.cfg.workers {
            return Err(ProcessError::Worker(worker, self.inner.cfg.workers));
        }
        self.inner.run_enrichers(worker, events);
        Ok(())
    }
}

fn watch_loop(
    weak: Weak<Inner>,
    rx: crossbeam_channel::Receiver<notify::Result<notify::Event>>,
    debounce: Duration,
) {
    let mut pending: Vec<PathBuf> = Vec::new();
    loop {
        let ev = if pending.is_empty() {
            match rx.recv() {
                Ok(ev) => Some(ev),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(debounce) {
                Ok(ev) => Some(ev),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
        };
        match ev {
            Some(Ok(ev)) => {
                for p in ev.paths {
                    if p.extension().is_some_and(|x| x == "wasm") && !pending.contains(&p) {
                        pending.push(p);
                    }
                }
            }
            Some(Err(e)) => tracing::warn!("plugin directory watch: {e}"),
            None => {
                let Some(inner) = weak.upgrade() else { return };
                for p in pending.drain(..) {
                    if p.exists() {
                        if let Err(e) = inner.load_file(&p) {
                            tracing::warn!(path = %p.display(), "reload rejected: {e}");
                        }
                    } else {
                        inner.unload_path(&p);
                    }
                }
            }
        }
    }
}

impl Inner {
    fn limits(&self) -> TxnLimits {
        TxnLimits {
            blob_bytes: self.cfg.max_blob_bytes,
            keys_per_player: self.cfg.max_keys_per_player,
            set_members: self.cfg.max_set_members,
            member_bytes: self.cfg.max_set_member_bytes,
        }
    }

    fn reject(&self, path: &Path, e: &LoadError) {
        tracing::warn!(path = %path.display(), "plugin rejected: {e}");
        self.admin.lock().rejected.insert(
            path.to_path_buf(),
            Rejection {
                path: path.to_path_buf(),
                reason: e.to_string(),
                at: SystemTime::now(),
            },
        );
    }

    pub(crate) fn load_file(&self, path: &Path) -> Result<(), LoadError> {
        let r = self.load_file_inner(path);
        if let Err(e) = &r {
            self.reject(path, e);
        }
        r
    }

    pub(crate) fn compile(&self, path: &Path) -> Result<(Component, World, String), LoadError> {
        let bytes = std::fs::read(path)
            .map_err(|e| LoadError::Io(path.display().to_string(), e.to_string()))?;
        if bytes.len() > self.cfg.max_component_bytes {
            return Err(LoadError::TooBig(bytes.len(), self.cfg.max_component_bytes));
        }
        let sha = sandbox::sha256_hex(&bytes);
        let cache = (!self.fuel).then_some(self.cfg.cache_dir.as_path());
        let component = sandbox::compile_cached(&self.engine, cache, &bytes, &sha)?;
        let world = sandbox::world_of(&self.engine, &component).ok_or(LoadError::UnknownWorld)?;
        Ok((component, world, sha))
    }

    fn config_for(&self, path: &Path) -> Vec<(String, String)> {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.cfg.pack_config.get(&stem).cloned().unwrap_or_default()
    }

    fn load_file_inner(&self, path: &Path) -> Result<(), LoadError> {
        {
            // Unchanged content (a touch, a duplicate notification), or
            // the content a rollback turned away from: nothing to do.
            let bytes = std::fs::read(path)
                .map_err(|e| LoadError::Io(path.display().to_string(), e.to_string()))?;
            let sha = sandbox::sha256_hex(&bytes);
            let packs = self.packs.load();
            if packs.iter().any(|e| {
                let v = e.current.load();
                v.path == path
                    && (v.sha256 == sha || e.rolled_back_from.lock().as_deref() == Some(&*sha))
            }) {
                return Ok(());
            }
        }
        let (component, world, sha) = self.compile(path)?;
        let linker = sandbox::linker(&self.engine, &component, world)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let config = self.config_for(path);
        match world {
            World::Enricher => return self.install_enricher(path, pre, config, sha),
            World::Pack => {}
        }
        let pre = AchievementPackPre::new(pre).map_err(|e| LoadError::Link(format!("{e:#}")))?;
        let ring = Arc::new(Mutex::new(VecDeque::new()));
        let (_, info) = self.instantiate(&pre, &config, Str::from("?"), Str::from("?"), ring)?;
        let mut admin = self.admin.lock();
        let packs = self.packs.load_full();
        let others: HashMap<Str, Str> = packs
            .iter()
            .flat_map(|e| {
                let v = e.current.load_full();
                v.codes
                    .iter()
                    .map(|c| (c.clone(), e.id.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        pack::validate(&info, &others)?;
        let id: Str = Str::from(info.id.as_str());
        if let Some(e) = packs.iter().find(|e| e.id == id) {
            let other = e.current.load().path.clone();
            if other != path {
                return Err(LoadError::Metadata(format!(
                    "pack id {id:?} is already loaded from {}",
                    other.display()
                )));
            }
        }
        let version = Arc::new(PackVersion {
            id: id.clone(),
            version: Str::from(info.version.as_str()),
            path: path.to_path_buf(),
            sha256: sha,
            codes: pack::codes(&info),
            router: Router::new(&info.subscriptions),
            series: PackSeries::new(&self.metrics, &id, &info.version),
            info,
            config,
            pre,
            slots: (0..self.cfg.workers).map(|_| Mutex::new(None)).collect(),
        });
        // The file used to hold another pack: that one is gone now.
        if let Some((_, old_id)) = admin.by_path.get(path).cloned()
            && old_id != id
        {
            self.remove_pack(&old_id);
        }
        let packs = self.packs.load_full();
        if let Some(entry) = packs.iter().find(|e| e.id == id) {
            let old = entry.current.swap(version.clone());
            *entry.previous.lock() = Some(old);
            *entry.rolled_back_from.lock() = None;
            tracing::info!(pack = %id, version = %version.version, "pack swapped");
        } else {
            let rows = self
                .store
                .load_pack(&id)
                .map_err(|e| LoadError::Store(e.to_string()))?;
            let positions = self
                .store
                .positions(&id)
                .map_err(|e| LoadError::Store(e.to_string()))?;
            let entry = Arc::new(PackEntry {
                id: id.clone(),
                current: ArcSwap::new(version.clone()),
                previous: Mutex::new(None),
                rolled_back_from: Mutex::new(None),
                committed: Arc::new(Mutex::new(Committed::from_rows(rows))),
                positions: Mutex::new(positions.into_iter().collect()),
                health: Mutex::new(Health {
                    recent: VecDeque::new(),
                    until: None,
                    backoff: self.cfg.quarantine_backoff_start,
                    quarantines: 0,
                    released_at: None,
                }),
                queues: (0..self.cfg.workers)
                    .map(|_| Mutex::new(VecDeque::new()))
                    .collect(),
                spare_txns: Mutex::new(Vec::new()),
                lagging: AtomicBool::new(false),
                logs: Arc::new(Mutex::new(VecDeque::new())),
                failures: AtomicU64::new(0),
            });
            let mut list = (*packs).clone();
            list.push(entry);
            list.sort_by(|a, b| a.id.cmp(&b.id));
            self.packs.store(Arc::new(list));
            self.metrics.quarantined.with_label_values(&[&*id]).set(0);
            tracing::info!(pack = %id, version = %version.version, "pack loaded");
        }
        admin.by_path.insert(path.to_path_buf(), (World::Pack, id));
        admin.rejected.remove(path);
        Ok(())
    }

    fn remove_pack(&self, id: &Str) {
        let packs = self.packs.load_full();
        let list: Vec<_> = packs.iter().filter(|e| &e.id != id).cloned().collect();
        self.packs.store(Arc::new(list));
        tracing::info!(pack = %id, "pack unloaded");
    }

    pub(crate) fn unload_path(&self, path: &Path) {
        let mut admin = self.admin.lock();
        admin.rejected.remove(path);
        match admin.by_path.remove(path) {
            Some((World::Pack, id)) => self.remove_pack(&id),
            Some((World::Enricher, id)) => self.remove_enricher(&id),
            None => {}
        }
    }

    pub(crate) fn install_enricher_path(&self, path: &Path, id: Str) {
        self.admin
            .lock()
            .by_path
            .insert(path.to_path_buf(), (World::Enricher, id));
        self.admin.lock().rejected.remove(path);
    }

    /// A fresh instance with `describe` called (under its deadline).
    fn instantiate(
        &self,
        pre: &AchievementPackPre<sandbox::StoreData>,
        config: &[(String, String)],
        id: Str,
        version: Str,
        ring: Arc<Mutex<VecDeque<LogLine>>>,
    ) -> Result<(Warm, meta::PackInfo), LoadError> {
        let mut store = sandbox::new_store(&self.engine, &self.cfg, id, version, ring, self.fuel);
        self.arm(&mut store, self.cfg.ticks(self.cfg.describe_deadline));
        let bindings = pre
            .instantiate(&mut store)
            .map_err(|e| LoadError::Instantiate(format!("{e:#}")))?;
        let info = bindings
            .call_describe(&mut store, config)
            .map_err(|e| LoadError::Describe(format!("{e:#}")))?
            .map_err(|e| LoadError::Describe(format!("{e:?}")))?;
        Ok((Warm { store, bindings }, info))
    }

    /// Sets the deadline (epochs) or budget (fuel) for the next call. The
    /// fuel budget is the epoch deadline at `FUEL_PER_TICK` instructions per
    /// tick, several times what a millisecond of CPU runs, so tooling never
    /// stops a pack production would accept.
    pub(crate) fn arm(&self, store: &mut wasmtime::Store<sandbox::StoreData>, ticks: u64) {
        if self.fuel {
            let fuel = ticks.saturating_mul(FUEL_PER_TICK);
            store.data_mut().fuel_armed = fuel;
            let _ = store.set_fuel(fuel);
        } else {
            store.set_epoch_deadline(ticks);
        }
    }

    pub(crate) fn account(&self, store: &wasmtime::Store<sandbox::StoreData>) {
        if self.fuel
            && let Ok(left) = store.get_fuel()
        {
            self.fuel_used.fetch_add(
                store.data().fuel_armed.saturating_sub(left),
                Ordering::Relaxed,
            );
        }
        self.memory_high_water
            .fetch_max(store.data().limiter.high_water as u64, Ordering::Relaxed);
    }

    fn is_quarantined(&self, entry: &PackEntry) -> bool {
        let mut h = entry.health.lock();
        match h.until {
            Some(u) if Instant::now() < u => true,
            Some(_) => {
                h.until = None;
                h.released_at = Some(Instant::now());
                self.metrics
                    .quarantined
                    .with_label_values(&[&*entry.id])
                    .set(0);
                tracing::info!(pack = %entry.id, "quarantine over");
                false
            }
            None => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_pack(
        &self,
        entry: &PackEntry,
        w: usize,
        events: &[Event],
        infos: &Arc<Vec<EventInfo>>,
        lc: &convert::LowerCache,
        ended: &EndedSet,
        out: &mut Vec<Outcome>,
    ) -> Result<(), ProcessError> {
        if entry.lagging.load(Ordering::Relaxed) {
            // Everything from the positions on will be replayed, queued
            // events included.
            entry.queues[w].lock().clear();
            return Ok(());
        }
        self.run_pack_unpaused(entry, w, events, infos, lc, ended, out)
    }

    #[allow(clippy::too_many_arguments)]
    fn run_pack_unpaused(
        &self,
        entry: &PackEntry,
        w: usize,
        events: &[Event],
        infos: &Arc<Vec<EventInfo>>,
        lc: &convert::LowerCache,
        ended: &EndedSet,
        out: &mut Vec<Outcome>,
    ) -> Result<(), ProcessError> {
        let version = entry.current.load_full();
        let selected: Vec<usize> = {
            let pos = entry.positions.lock();
            // A batch is mostly one server's: look its position up once.
            let mut last: Option<(&Str, Option<u64>)> = None;
            (0..events.len())
                .filter(|&i| {
                    let ev = &events[i];
                    if !version.router.matches(ev) {
                        return false;
                    }
                    let at = match last {
                        Some((server, at)) if **server == *ev.server => at,
                        _ => {
                            let at = pos.get(&ev.server).copied();
                            last = Some((&ev.server, at));
                            at
                        }
                    };
                    at.is_none_or(|p| ev.id > p)
                })
                .collect()
        };
        if self.is_quarantined(entry) {
            self.enqueue(entry, w, selected.iter().map(|&i| &events[i]));
            return Ok(());
        }
        let queued: Vec<Event> = {
            let pos = entry.positions.lock();
            entry.queues[w]
                .lock()
                .drain(..)
                .filter(|ev| pos.get(&ev.server).is_none_or(|&p| ev.id > p))
                .collect()
        };
        if !queued.is_empty() {
            let qinfos = Arc::new(queued.iter().map(EventInfo::of).collect::<Vec<_>>());
            let qlc = convert::LowerCache::default();
            let all: Vec<usize> = (0..queued.len()).collect();
            for chunk in all.chunks(512) {
                self.evaluate(
                    entry,
                    &version,
                    w,
                    &queued,
                    &qinfos,
                    &qlc,
                    chunk,
                    &EndedSet::default(),
                    out,
                )?;
            }
        }
        self.evaluate(entry, &version, w, events, infos, lc, &selected, ended, out)
    }

    fn enqueue<'a>(&self, entry: &PackEntry, w: usize, events: impl Iterator<Item = &'a Event>) {
        let mut q = entry.queues[w].lock();
        for ev in events {
            if q.len() >= self.cfg.quarantine_buffer {
                entry.lagging.store(true, Ordering::Relaxed);
                q.clear();
                tracing::error!(pack = %entry.id, "quarantine queue overflowed; pack paused until its events are replayed");
                return;
            }
            q.push_back(ev.clone());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &self,
        entry: &PackEntry,
        version: &Arc<PackVersion>,
        w: usize,
        events: &[Event],
        infos: &Arc<Vec<EventInfo>>,
        lc: &convert::LowerCache,
        sel: &[usize],
        ended: &EndedSet,
        out: &mut Vec<Outcome>,
    ) -> Result<(), ProcessError> {
        if sel.is_empty() {
            if !ended.is_empty() {
                self.commit(entry, version, empty_prepared(), ended, out)?;
            }
            return Ok(());
        }
        if self.is_quarantined(entry) {
            self.enqueue(entry, w, sel.iter().map(|&i| &events[i]));
            return Ok(());
        }
        let started = Instant::now();
        let first = self.attempt(entry, version, w, events, infos, lc, sel);
        let result = match first {
            Ok(p) => Ok(p),
            Err(f) => {
                self.count_error(entry, version, f.0);
                self.attempt(entry, version, w, events, infos, lc, sel)
            }
        };
        match result {
            Ok(p) => {
                self.commit(entry, version, p, ended, out)?;
                version
                    .series
                    .latency
                    .observe(started.elapsed().as_secs_f64());
                Ok(())
            }
            Err(f) if f.0 == ErrorKind::Instantiate => {
                // No instance could be made (pool exhausted, `describe`
                // failing): not these events' fault, so none is skipped.
                self.count_error(entry, version, f.0);
                self.hold(entry, w, events, sel, &f);
                Ok(())
            }
            Err(f) => {
                self.count_error(entry, version, f.0);
                self.bisect(entry, version, w, events, infos, lc, sel, f, out)?;
                if !ended.is_empty() {
                    self.commit(entry, version, empty_prepared(), ended, out)?;
                }
                Ok(())
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn bisect(
        &self,
        entry: &PackEntry,
        version: &Arc<PackVersion>,
        w: usize,
        events: &[Event],
        infos: &Arc<Vec<EventInfo>>,
        lc: &convert::LowerCache,
        sel: &[usize],
        fault: Fault,
        out: &mut Vec<Outcome>,
    ) -> Result<(), ProcessError> {
        if sel.len() == 1 {
            return self.poison(entry, version, &events[sel[0]], fault, out);
        }
        let (left, right) = sel.split_at(sel.len() / 2);
        for half in [left, right] {
            if self.is_quarantined(entry) {
                self.enqueue(entry, w, half.iter().map(|&i| &events[i]));
                continue;
            }
            match self.attempt(entry, version, w, events, infos, lc, half) {
                Ok(p) => self.commit(entry, version, p, &EndedSet::default(), out)?,
                Err(f) if f.0 == ErrorKind::Instantiate => {
                    self.count_error(entry, version, f.0);
                    self.hold(entry, w, events, half, &f);
                }
                Err(f) => {
                    self.count_error(entry, version, f.0);
                    self.bisect(entry, version, w, events, infos, lc, half, f, out)?;
                }
            }
        }
        Ok(())
    }

    /// Quarantines the pack and queues `sel` for after the back-off.
    fn hold(&self, entry: &PackEntry, w: usize, events: &[Event], sel: &[usize], fault: &Fault) {
        tracing::error!(pack = %entry.id, "cannot instantiate: {}", fault.1);
        self.quarantine(entry, Instant::now());
        self.enqueue(entry, w, sel.iter().map(|&i| &events[i]));
    }

    fn quarantine(&self, entry: &PackEntry, now: Instant) {
        let mut h = entry.health.lock();
        if h.until.is_some_and(|u| u > now) {
            return;
        }
        h.recent.clear();
        h.until = Some(now + h.backoff);
        h.quarantines += 1;
        tracing::warn!(pack = %entry.id, backoff_ms = h.backoff.as_millis() as u64, "pack quarantined");
        h.backoff = (h.backoff * 2).min(self.cfg.quarantine_backoff_max);
        self.metrics
            .quarantined
            .with_label_values(&[&*entry.id])
            .set(1);
    }

    /// Records a poison event and moves the pack's position past it.
    fn poison(
        &self,
        entry: &PackEntry,
        version: &PackVersion,
        ev: &Event,
        (kind, message): Fault,
        out: &mut Vec<Outcome>,
    ) -> Result<(), ProcessError> {
        let failure = Failure {
            pack: entry.id.clone(),
            version: version.version.clone(),
            server: ev.server.clone(),
            event_id: ev.id,
            kind,
            message,
            at: SystemTime::now(),
        };
        tracing::warn!(pack = %failure.pack, version = %failure.version, event = ev.id, kind = kind.as_str(), "poison event: {}", failure.message);
        self.record_failure(failure);
        entry.failures.fetch_add(1, Ordering::Relaxed);
        {
            let now = Instant::now();
            let mut h = entry.health.lock();
            h.recent.push_back(now);
            while h
                .recent
                .front()
                .is_some_and(|&t| now.duration_since(t) > self.cfg.failure_window)
            {
                h.recent.pop_front();
            }
            if h.recent.len() >= self.cfg.quarantine_after {
                drop(h);
                self.quarantine(entry, now);
            }
        }
        let mut p = empty_prepared();
        p.positions.push((ev.server.clone(), ev.id));
        self.commit(entry, version, p, &EndedSet::default(), out)
    }

    pub(crate) fn record_failure(&self, failure: Failure) {
        if let Some(sink) = &self.sink {
            sink.record(&failure);
        }
        let mut ring = self.failures.lock();
        if ring.len() >= self.cfg.failure_ring {
            ring.pop_front();
        }
        ring.push_back(failure);
    }

    fn count_error(&self, entry: &PackEntry, version: &PackVersion, kind: ErrorKind) {
        self.metrics
            .errors
            .with_label_values(&[&*entry.id, &*version.version, kind.as_str()])
            .inc();
    }

    /// One call of `on-batch` over `sel`. On any fault the instance is
    /// dropped (a trapped instance must not be re-entered) and rebuilt from
    /// the `InstancePre` on the next attempt.
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        entry: &PackEntry,
        version: &PackVersion,
        w: usize,
        events: &[Event],
        infos: &Arc<Vec<EventInfo>>,
        lc: &convert::LowerCache,
        sel: &[usize],
    ) -> Result<Prepared, Fault> {
        let mut slot = version.slots[w].lock();
        if slot.is_none() {
            let (warm, _) = self
                .instantiate(
                    &version.pre,
                    &version.config,
                    entry.id.clone(),
                    version.version.clone(),
                    entry.logs.clone(),
                )
                .map_err(|e| (ErrorKind::Instantiate, e.to_string()))?;
            *slot = Some(warm);
        }
        let warm = slot.as_mut().expect("just filled");
        let lowered = lc.get(events, sel);
        let n = sel.len();
        {
            let txn = entry.spare_txns.lock().pop().unwrap_or_default();
            let data = warm.store.data_mut();
            data.log.lines = 0;
            data.log.dropped = 0;
            let spare = std::mem::take(&mut data.spare);
            data.call = Some(CallCtx::new(
                entry.committed.clone(),
                infos.clone(),
                sel,
                lowered.clone(),
                self.book.clone(),
                self.limits(),
                txn,
                spare,
            ));
        }
        self.arm(&mut warm.store, self.cfg.batch_ticks(n));
        let r = warm.bindings.call_on_batch(&mut warm.store, &lowered.batch);
        self.account(&warm.store);
        let high_water = warm.store.data().limiter.high_water as i64;
        let gauge = &version.series.memory;
        if high_water > gauge.get() {
            gauge.set(high_water);
        }
        let (txn, spare) = warm
            .store
            .data_mut()
            .call
            .take()
            .expect("set above")
            .finish();
        warm.store.data_mut().spare = spare;
        let fault = match r {
            Err(e) => (sandbox::classify(&e), format!("{e:#}")),
            Ok(Err(pe)) => (ErrorKind::PluginError, format!("{pe:?}")),
            Ok(Ok(outs)) => match self.outcomes(version, events, sel, &lowered.guids, outs) {
                Ok(outcomes) => {
                    let positions = positions_of(events, sel);
                    return Ok(Prepared {
                        txn,
                        outcomes,
                        positions,
                        events: n,
                    });
                }
                Err(m) => (ErrorKind::InvalidOutput, m),
            },
        };
        *slot = None;
        self.recycle(entry, txn);
        self.metrics.recycles.with_label_values(&[&*entry.id]).inc();
        Err(fault)
    }

    /// Keeps an emptied `txn` for the pack's next batch.
    fn recycle(&self, entry: &PackEntry, mut txn: Txn) {
        if !txn.has_capacity() {
            return;
        }
        txn.clear();
        let mut spare = entry.spare_txns.lock();
        if spare.len() < self.cfg.workers {
            spare.push(txn);
        }
    }

    /// Checks and resolves a batch's outcomes to stable identities.
    fn outcomes(
        &self,
        version: &PackVersion,
        events: &[Event],
        sel: &[usize],
        guids: &[Str],
        outs: Vec<meta::Outcome>,
    ) -> Result<Vec<Outcome>, String> {
        let cap = sel.len() + self.cfg.extra_outcomes_per_batch;
        if outs.len() > cap {
            return Err(format!(
                "{} outcomes for {} events (cap {cap})",
                outs.len(),
                sel.len()
            ));
        }
        // The event an outcome names: ids rise through a batch (the
        // journal assigns them), so a binary search finds it; a map only
        // when they do not (the first event with an id wins either way).
        let sorted = sel.windows(2).all(|w| events[w[0]].id < events[w[1]].id);
        let mut by_id: FxMap<u64, &Event> = FxMap::default();
        if !sorted && !outs.is_empty() {
            by_id.reserve(sel.len());
            for &i in sel {
                by_id.entry(events[i].id).or_insert(&events[i]);
            }
        }
        let event = |id: u64| {
            if sorted {
                sel.binary_search_by_key(&id, |&i| events[i].id)
                    .ok()
                    .map(|j| &events[sel[j]])
            } else {
                by_id.get(&id).copied()
            }
        };
        let mut out = Vec::with_capacity(outs.len());
        for o in outs {
            let (player, code, event_id, kind) = match o {
                meta::Outcome::Unlock(u) => (u.player, u.code, u.event_id, OutcomeKind::Unlock),
                meta::Outcome::Progress(p) => (
                    p.player,
                    p.code,
                    p.event_id,
                    OutcomeKind::Progress {
                        current: p.current,
                        target: p.target,
                    },
                ),
            };
            let code = version
                .code(&code)
                .ok_or_else(|| format!("unknown achievement code {code:?}"))?;
            let player = guids.get(player as usize).ok_or_else(|| {
                format!("player {player} out of range ({} in batch)", guids.len())
            })?;
            let ev = event(event_id)
                .ok_or_else(|| format!("event id {event_id} is not in the batch"))?;
            out.push(Outcome {
                pack: version.id.clone(),
                pack_version: version.version.clone(),
                player: player.clone(),
                code,
                kind,
                event_id,
                match_id: ev.match_id.clone(),
                time_ms: ev.time_ms,
            });
        }
        Ok(out)
    }

    /// Commits writes, outcomes and positions together, then mirrors them in
    /// memory. Holding the pack's state lock across the store commit keeps
    /// memory and store in the same order when workers commit concurrently.
    fn commit(
        &self,
        entry: &PackEntry,
        version: &PackVersion,
        p: Prepared,
        ended: &EndedSet,
        out: &mut Vec<Outcome>,
    ) -> Result<(), ProcessError> {
        let mut committed = entry.committed.lock();
        let mut resolved = p.txn.resolve(&committed, &entry.id, ended);
        if resolved.is_empty() && p.outcomes.is_empty() && p.positions.is_empty() {
            drop(committed);
            self.recycle(entry, p.txn);
            return Ok(());
        }
        let commit = Commit {
            pack: entry.id.clone(),
            pack_version: version.version.clone(),
            writes: std::mem::take(&mut resolved.writes),
            outcomes: p.outcomes,
            positions: p.positions,
        };
        self.store
            .commit(&commit)
            .map_err(|e| ProcessError::Store {
                pack: entry.id.to_string(),
                message: e.to_string(),
            })?;
        let Commit {
            writes,
            outcomes,
            positions,
            ..
        } = commit;
        resolved.writes = writes;
        state::apply(&mut committed, resolved);
        drop(committed);
        self.recycle(entry, p.txn);
        {
            let mut pos = entry.positions.lock();
            for (server, id) in &positions {
                let slot = pos.entry(server.clone()).or_default();
                *slot = (*slot).max(*id);
            }
        }
        if p.events > 0 {
            version.series.batches.inc();
            version.series.events.inc_by(p.events as u64);
            version.series.outcomes.inc_by(outcomes.len() as u64);
            let mut h = entry.health.lock();
            if h.recent.is_empty()
                && h.released_at
                    .is_some_and(|t| t.elapsed() > self.cfg.quarantine_backoff_max)
            {
                h.backoff = self.cfg.quarantine_backoff_start;
                h.released_at = None;
            }
        }
        out.extend(outcomes);
        Ok(())
    }
}

/// The last event id per server among `events[sel]`, sorted by server.
fn positions_of(events: &[Event], sel: &[usize]) -> Vec<(Str, u64)> {
    // A batch holds few servers, mostly in runs: a scan beats a map.
    let mut positions: Vec<(Str, u64)> = Vec::new();
    let mut last = 0;
    for &i in sel {
        let ev = &events[i];
        let found = match positions.get(last) {
            Some((s, _)) if **s == *ev.server => Some(last),
            _ => positions.iter().position(|(s, _)| **s == *ev.server),
        };
        match found {
            Some(at) => {
                last = at;
                positions[at].1 = positions[at].1.max(ev.id);
            }
            None => {
                last = positions.len();
                positions.push((ev.server.clone(), ev.id));
            }
        }
    }
    positions.sort();
    positions
}

fn empty_prepared() -> Prepared {
    Prepared {
        txn: Txn::default(),
        outcomes: Vec::new(),
        positions: Vec::new(),
        events: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_the_last_id_per_server() {
        let ev = |server: &str, id: u64| {
            let mut e = Event::new(EventKind::PlayerKill);
            e.server = Str::from(server);
            e.id = id;
            e
        };
        let events = [
            ev("b", 5),
            ev("b", 7),
            ev("a", 3),
            ev("b", 9),
            ev("c", 1),
            ev("a", 4),
        ];
        let all: Vec<usize> = (0..events.len()).collect();
        let got = positions_of(&events, &all);
        let want: Vec<(Str, u64)> = vec![("a".into(), 4), ("b".into(), 9), ("c".into(), 1)];
        assert_eq!(got, want);
        // Only the selected events count.
        assert_eq!(
            positions_of(&events, &[0, 2]),
            vec![("a".into(), 3), ("b".into(), 5)]
        );
        assert!(positions_of(&events, &[]).is_empty());
    }
}
