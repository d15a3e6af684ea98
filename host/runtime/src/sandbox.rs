//! The wasmtime side: engines, the `.cwasm` cache, linkers with a deny-all
//! WASI, per-store data and its limits, and the host's `state` and `log`
//! imports.

use std::collections::VecDeque;
use std::hash::Hasher;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use opm_model::Str;
use opm_model::plugin::Scope;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
    Trap,
};
use wasmtime_wasi::{
    Deterministic, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView,
    WasiView,
};

use crate::bindings::pack::openmohaa::stats::{log, meta, state, types};
use crate::bindings::{enricher, pack};
use crate::config::RuntimeConfig;
use crate::error::{ErrorKind, LoadError};
use crate::state::{
    self as st, Committed, EventInfo, FxMap, Id, LifeBook, StateLimit, Txn, TxnLimits,
};
use opm_plugin_abi::counters::{CounterOp, CounterWriteError, CounterWriteRecord};

/// Builds the production engine (epochs, pooling) or the tooling engine
/// (fuel, on-demand allocation).
pub(crate) fn engine(cfg: &RuntimeConfig, fuel: bool) -> Result<Engine, LoadError> {
    let mut c = Config::new();
    c.wasm_component_model(true);
    // Profiling aid: `perf record` can then name the guests' functions
    // (wasmtime writes /tmp/perf-PID.map).
    if std::env::var_os("OPM_PLUGIN_PERFMAP").is_some() {
        c.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    c.max_wasm_stack(cfg.max_wasm_stack);
    if fuel {
        c.consume_fuel(true);
    } else {
        c.epoch_interruption(true);
        let n = cfg.max_instances;
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(n)
            .total_core_instances(n * 4)
            .total_memories(n * 2)
            .total_tables(n * 4)
            .max_memory_size(cfg.max_memory_bytes);
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&c).map_err(|e| LoadError::Engine(format!("{e:#}")))
}

/// Advances the engine's epoch every tick until dropped.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(engine: Engine, tick: Duration) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("opm-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawning the epoch ticker");
        Ticker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

/// Hex digest identifying what this engine's artifacts are compatible with.
pub(crate) fn compat_hash(engine: &Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut h);
    hex::encode(&h.0.finalize()[..8])
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Compiles a component, or loads it from the `.cwasm` cache keyed by the
/// wasm's sha256 and the engine's compatibility hash.
pub(crate) fn compile_cached(
    engine: &Engine,
    cache_dir: Option<&Path>,
    bytes: &[u8],
    sha: &str,
) -> Result<Component, LoadError> {
    let Some(dir) = cache_dir else {
        return Component::new(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")));
    };
    let path = dir.join(format!("{sha}-{}.cwasm", compat_hash(engine)));
    if path.exists() {
        // SAFETY: the cache directory holds only artifacts this runtime wrote
        // with `precompile_component` (atomically, via rename), under a name
        // that binds them to this engine's compatibility hash.
        if let Ok(c) = unsafe { Component::deserialize_file(engine, &path) } {
            return Ok(c);
        }
    }
    let artifact = engine
        .precompile_component(bytes)
        .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
    std::fs::create_dir_all(dir)
        .map_err(|e| LoadError::Io(dir.display().to_string(), e.to_string()))?;
    let tmp = dir.join(format!(
        ".{sha}.{}.{:?}.tmp",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&tmp, &artifact)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| LoadError::Io(path.display().to_string(), e.to_string()))?;
    // SAFETY: produced just above by this engine.
    unsafe { Component::deserialize(engine, &artifact) }
        .map_err(|e| LoadError::Compile(format!("{e:#}")))
}

/// Which world a component implements, from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum World {
    Pack,
    Enricher,
}

pub(crate) fn world_of(engine: &Engine, component: &Component) -> Option<World> {
    let ty = component.component_type();
    let names: Vec<String> = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("describe") && has("on-batch") {
        Some(World::Pack)
    } else if has("describe-enricher") && has("enrich") {
        Some(World::Enricher)
    } else {
        None
    }
}

/// A linker for one component: WASI p2 (denied by its context), our
/// imports, and a trap for anything else the component imports.
pub(crate) fn linker(
    engine: &Engine,
    component: &Component,
    world: World,
) -> Result<Linker<StoreData>, LoadError> {
    let mut l = Linker::new(engine);
    let link = |e: wasmtime::Error| LoadError::Link(format!("{e:#}"));
    wasmtime_wasi::p2::add_to_linker_sync(&mut l).map_err(link)?;
    match world {
        World::Pack => {
            pack::AchievementPack::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut l, |d| d)
                .map_err(link)?
        }
        World::Enricher => {
            enricher::Enricher::add_to_linker::<StoreData, HasSelf<StoreData>>(&mut l, |d| d)
                .map_err(link)?
        }
    }
    stub_unknown_imports(&mut l, engine, component).map_err(link)?;
    Ok(l)
}

/// Interface families the linker defines (WASI p2 at 0.2.x, and ours).
fn is_linked(name: &str) -> bool {
    const WASI: &[&str] = &[
        "wasi:cli/",
        "wasi:io/",
        "wasi:clocks/",
        "wasi:random/",
        "wasi:filesystem/",
        "wasi:sockets/",
    ];
    name.starts_with("openmohaa:stats/")
        || (WASI.iter().any(|p| name.starts_with(p)) && name.contains("@0.2."))
}

/// Every other import becomes functions that trap when called.
///
/// Not `Linker::define_unknown_imports_as_traps`: it looks names up
/// exactly, so a guest importing `wasi:cli/environment@0.2.6` would get
/// traps shadowing the semver-compatible `@0.2.12` the linker defines.
fn stub_unknown_imports(
    l: &mut Linker<StoreData>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<()> {
    use wasmtime::component::types::ComponentItem;
    for (name, item) in component.component_type().imports(engine) {
        if is_linked(name) {
            continue;
        }
        match item.ty {
            ComponentItem::ComponentFunc(_) => {
                let what = name.to_string();
                l.root().func_new(name, move |_, _, _, _| {
                    Err(wasmtime::Error::msg(format!(
                        "unknown import `{what}` called"
                    )))
                })?;
            }
            ComponentItem::ComponentInstance(inst) => {
                let mut li = l.instance(name)?;
                for (f, fitem) in inst.exports(engine) {
                    if let ComponentItem::ComponentFunc(_) = fitem.ty {
                        let what = format!("{name}#{f}");
                        li.func_new(f, move |_, _, _, _| {
                            Err(wasmtime::Error::msg(format!(
                                "unknown import `{what}` called"
                            )))
                        })?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Clock fixed at the epoch: plugins get time from events only.
struct FixedClock;

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

fn deny_all_wasi() -> WasiCtx {
    let seed: Vec<u8> = (0u8..=255)
        .map(|b| b.wrapping_mul(167).wrapping_add(13))
        .collect();
    WasiCtxBuilder::new()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FixedClock)
        .monotonic_clock(FixedClock)
        .secure_random(Deterministic::new(seed.clone()))
        .insecure_random(Deterministic::new(seed))
        .insecure_random_seed(0x5eed_5eed)
        .build()
}

/// Memory growth beyond the cap.
#[derive(Debug, thiserror::Error)]
#[error("linear memory would grow to {0} bytes, beyond the cap")]
pub(crate) struct OutOfMemory(pub usize);

/// A state call naming an event or player the batch does not have.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct BadCall(pub String);

/// Most key names one instance may intern (`state.key`).
pub(crate) const MAX_KEY_NAMES: usize = 65_536;

/// The key names an instance interned with `state.key`, by id. Lives as
/// long as the store, like the guest's own table of ids.
#[derive(Default)]
pub(crate) struct KeyNames {
    names: Vec<Str>,
    index: FxMap<Str, u32>,
    max_bytes: usize,
}

impl KeyNames {
    fn intern(&mut self, name: String) -> Result<u32, StateLimit> {
        if let Some(&id) = self.index.get(name.as_str()) {
            return Ok(id);
        }
        if name.len() > self.max_bytes {
            return Err(StateLimit::KeyTooLong(name.len(), self.max_bytes));
        }
        if self.names.len() >= MAX_KEY_NAMES {
            return Err(StateLimit::TooManyKeyNames(MAX_KEY_NAMES));
        }
        let id = self.names.len() as u32;
        let name = Str::from(name);
        self.names.push(name.clone());
        self.index.insert(name, id);
        Ok(id)
    }

    fn get(&self, id: u32) -> wasmtime::Result<&Str> {
        self.names.get(id as usize).ok_or_else(|| {
            wasmtime::Error::new(BadCall(format!(
                "state call with key id {id}, the instance interned {}",
                self.names.len()
            )))
        })
    }
}

pub(crate) struct Limiter {
    cap: usize,
    pub high_water: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            return Err(wasmtime::Error::new(OutOfMemory(desired)));
        }
        self.high_water = self.high_water.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// One logged line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub pack: Str,
    pub version: Str,
    pub level: &'static str,
    pub message: String,
}

/// Log attribution and rate limiting for one store.
pub(crate) struct LogCtx {
    pub pack: Str,
    pub version: Str,
    pub lines: u32,
    pub dropped: u32,
    pub max_lines: u32,
    pub max_bytes: usize,
    pub ring_cap: usize,
    pub ring: Arc<Mutex<VecDeque<LogLine>>>,
}

/// Everything a state call needs during one `on-batch`.
pub(crate) struct CallCtx {
    pub committed: Arc<Mutex<Committed>>,
    /// Scope facts for the events the call's indices point into.
    pub events: Arc<Vec<EventInfo>>,
    /// `batch.events[i]` is `events[index[i]]`.
    pub index: Vec<usize>,
    /// The batch as the guest got it; its player table resolves `player`.
    pub lowered: Arc<crate::convert::Lowered>,
    pub book: Arc<Mutex<LifeBook>>,
    pub txn: Txn,
    pub limits: TxnLimits,
    /// Instance ids by (event index, who): `who` is the player for life
    /// scope, `u32::MAX - scope` for the scopes that do not depend on it.
    pub instances: FxMap<(u32, u32), u32>,
    /// Formatted round and life instances by (match or session string,
    /// number, scope): the events Arc keeps the strings, so their addresses
    /// identify them for the call.
    pub formatted: FxMap<(Str, u32, u8), u32>,
    /// Transaction player id per batch player index (`u32::MAX` = not yet).
    pub players: Vec<u32>,
    /// Transaction key id per instance key id (`u32::MAX` = not yet).
    pub key_ids: Vec<u32>,
}

/// A call context's tables, kept empty between batches with their
/// capacity (growing them from nothing on every batch was a visible cost).
#[derive(Default)]
pub(crate) struct Spare {
    index: Vec<usize>,
    instances: FxMap<(u32, u32), u32>,
    formatted: FxMap<(Str, u32, u8), u32>,
    players: Vec<u32>,
    key_ids: Vec<u32>,
}

impl CallCtx {
    /// `txn` must be empty (new or `Txn::clear`ed); `spare` lends its
    /// tables (see [`CallCtx::finish`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        committed: Arc<Mutex<Committed>>,
        events: Arc<Vec<EventInfo>>,
        sel: &[usize],
        lowered: Arc<crate::convert::Lowered>,
        book: Arc<Mutex<LifeBook>>,
        limits: TxnLimits,
        txn: Txn,
        spare: Spare,
    ) -> CallCtx {
        let Spare {
            mut index,
            instances,
            formatted,
            mut players,
            key_ids,
        } = spare;
        index.clear();
        index.extend_from_slice(sel);
        players.clear();
        players.resize(lowered.guids.len(), u32::MAX);
        CallCtx {
            committed,
            events,
            index,
            lowered,
            book,
            txn,
            limits,
            instances,
            formatted,
            players,
            key_ids,
        }
    }

    /// Splits the finished call into its transaction and its tables,
    /// emptied for the next call.
    pub(crate) fn finish(self) -> (Txn, Spare) {
        let CallCtx {
            txn,
            mut index,
            mut instances,
            mut formatted,
            mut players,
            mut key_ids,
            ..
        } = self;
        index.clear();
        instances.clear();
        formatted.clear();
        players.clear();
        key_ids.clear();
        (
            txn,
            Spare {
                index,
                instances,
                formatted,
                players,
                key_ids,
            },
        )
    }

    fn slot(
        &mut self,
        at: u32,
        scope: state::Scope,
        player: u32,
        key: u32,
        names: &KeyNames,
    ) -> wasmtime::Result<Id> {
        let Some(&full) = self.index.get(at as usize) else {
            return Err(wasmtime::Error::new(BadCall(format!(
                "state call for event {at}, batch has {}",
                self.index.len()
            ))));
        };
        let key = self.key_id(key, names)?;
        let Some(guid) = self.lowered.guids.get(player as usize) else {
            return Err(wasmtime::Error::new(BadCall(format!(
                "state call for player {player}, batch has {}",
                self.lowered.guids.len()
            ))));
        };
        let scope = match scope {
            state::Scope::Lifetime => Scope::Lifetime,
            state::Scope::Session => Scope::Session,
            state::Scope::Match => Scope::Match,
            state::Scope::Round => Scope::Round,
            state::Scope::Life => Scope::Life,
        };
        let ev = &self.events[full];
        // Instances that do not depend on the player are looked up by
        // their string once per call (session and match ids are short,
        // mostly inline strings: a copy and a short hash).
        let shared = match scope {
            Scope::Lifetime => Some(opm_model::event::empty()),
            Scope::Session => Some(ev.session.clone()),
            Scope::Match => Some(ev.match_id.clone()),
            Scope::Round | Scope::Life => None,
        };
        if let Some(text) = shared {
            let k = (text, 0, 2 + scope as u8);
            let inst = match self.formatted.get(&k) {
                Some(&i) => i,
                None => {
                    let s = match scope {
                        Scope::Session => ev.session.clone(),
                        Scope::Match => ev.match_id.clone(),
                        _ => opm_model::event::empty(),
                    };
                    let i = self.txn.insts.id(&s);
                    self.formatted.insert(k, i);
                    i
                }
            };
            return Ok(Id {
                scope,
                inst,
                player: player_id(&mut self.players, &mut self.txn, player, guid),
                key,
            });
        }
        let who = if scope == Scope::Life {
            player
        } else {
            u32::MAX - scope as u32
        };
        let inst = match self.instances.get(&(at, who)) {
            Some(&i) => i,
            None => {
                let ev = &self.events[full];
                // Round and life instances are formatted strings: format
                // each distinct one once per call, not per event.
                let i = match scope {
                    Scope::Lifetime => self.txn.insts.id(&opm_model::event::empty()),
                    Scope::Session => self.txn.insts.id(&ev.session),
                    Scope::Match => self.txn.insts.id(&ev.match_id),
                    Scope::Round => {
                        let k = (ev.match_id.clone(), ev.round, 0);
                        match self.formatted.get(&k) {
                            Some(&i) => i,
                            None => {
                                let i = self.txn.insts.id(&ev.round_instance());
                                self.formatted.insert(k, i);
                                i
                            }
                        }
                    }
                    Scope::Life => {
                        let life = st::life_at(&self.events, full, guid, &self.book.lock());
                        let k = (ev.session.clone(), life, 1);
                        match self.formatted.get(&k) {
                            Some(&i) => i,
                            None => {
                                let i = self.txn.insts.id(&ev.life_instance(guid, life));
                                self.formatted.insert(k, i);
                                i
                            }
                        }
                    }
                };
                self.instances.insert((at, who), i);
                i
            }
        };
        Ok(Id {
            scope,
            inst,
            player: player_id(&mut self.players, &mut self.txn, player, guid),
            key,
        })
    }

    /// The transaction's id for instance key `key`, interned on first use
    /// in the batch.
    fn key_id(&mut self, key: u32, names: &KeyNames) -> wasmtime::Result<u32> {
        let k = key as usize;
        if let Some(&id) = self.key_ids.get(k)
            && id != u32::MAX
        {
            return Ok(id);
        }
        let id = self.txn.keys.id(names.get(key)?);
        if self.key_ids.len() <= k {
            self.key_ids.resize(k + 1, u32::MAX);
        }
        self.key_ids[k] = id;
        Ok(id)
    }
}

/// The transaction's id for batch player `player`, interned on first use.
fn player_id(ids: &mut [u32], txn: &mut Txn, player: u32, guid: &Str) -> u32 {
    match ids[player as usize] {
        u32::MAX => {
            let p = txn.players.id(guid);
            ids[player as usize] = p;
            p
        }
        p => p,
    }
}

/// Per-store data.
pub(crate) struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: Limiter,
    pub call: Option<CallCtx>,
    /// The last call's tables, for the next one.
    pub spare: Spare,
    pub log: LogCtx,
    /// Key names interned by the instance.
    pub keys: KeyNames,
    /// Fuel given for the current call (tooling engine only).
    pub fuel_armed: u64,
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// A store for one instance, with its limits and attribution.
pub(crate) fn new_store(
    engine: &Engine,
    cfg: &RuntimeConfig,
    pack: Str,
    version: Str,
    ring: Arc<Mutex<VecDeque<LogLine>>>,
    fuel: bool,
) -> Store<StoreData> {
    let data = StoreData {
        wasi: deny_all_wasi(),
        table: ResourceTable::new(),
        limiter: Limiter {
            cap: cfg.max_memory_bytes,
            high_water: 0,
        },
        call: None,
        spare: Spare::default(),
        keys: KeyNames {
            max_bytes: cfg.max_key_bytes,
            ..KeyNames::default()
        },
        fuel_armed: 0,
        log: LogCtx {
            pack,
            version,
            lines: 0,
            dropped: 0,
            max_lines: cfg.log_lines_per_batch,
            max_bytes: cfg.log_line_bytes,
            ring_cap: cfg.log_ring,
            ring,
        },
    };
    let mut store = Store::new(engine, data);
    store.limiter(|d| &mut d.limiter);
    if !fuel {
        store.epoch_deadline_trap();
    }
    store
}

/// Sorts a failed call into the error kinds the metrics and failure log use.
pub(crate) fn classify(err: &wasmtime::Error) -> ErrorKind {
    if let Some(t) = err.downcast_ref::<Trap>() {
        return match t {
            Trap::Interrupt | Trap::OutOfFuel => ErrorKind::Timeout,
            _ => ErrorKind::Trap,
        };
    }
    for cause in err.chain() {
        if cause.is::<OutOfMemory>() {
            return ErrorKind::OutOfMemory;
        }
        if cause.is::<StateLimit>() {
            return ErrorKind::StateLimit;
        }
        if cause.is::<BadCall>() {
            return ErrorKind::InvalidOutput;
        }
        if let Some(t) = cause.downcast_ref::<Trap>() {
            return match t {
                Trap::Interrupt | Trap::OutOfFuel => ErrorKind::Timeout,
                _ => ErrorKind::Trap,
            };
        }
    }
    ErrorKind::Trap
}

fn outside() -> wasmtime::Error {
    wasmtime::Error::new(BadCall("state used outside on-batch".into()))
}

macro_rules! with_call {
    ($self:ident, $at:ident, $scope:ident, $player:ident, $key:expr, |$ctx:ident, $slot:ident, $committed:ident| $body:expr) => {{
        let $ctx = $self.call.as_mut().ok_or_else(outside)?;
        let $slot = $ctx.slot($at, $scope, $player, $key, &$self.keys)?;
        let $committed = $ctx.committed.lock();
        $body
    }};
}

impl state::Host for StoreData {
    fn add(
        &mut self,
        at: u32,
        scope: state::Scope,
        player: u32,
        key: u32,
        delta: i64,
    ) -> wasmtime::Result<i64> {
        with_call!(self, at, scope, player, key, |ctx, slot, c| {
            let lim = ctx.limits;
            ctx.txn
                .add_at(&c, slot, delta, &lim)
                .map_err(wasmtime::Error::new)
        })
    }

    fn get(
        &mut self,
        at: u32,
        scope: state::Scope,
        player: u32,
        key: u32,
    ) -> wasmtime::Result<i64> {
        with_call!(self, at, scope, player, key, |ctx, slot, c| Ok(ctx
            .txn
            .get_at(&c, slot)))
    }

    fn get_many(
        &mut self,
        at: u32,
        scope: state::Scope,
        keys: Vec<(u32, u32)>,
    ) -> wasmtime::Result<Vec<i64>> {
        let mut out = Vec::with_capacity(keys.len());
        for (player, key) in keys {
            out.push(with_call!(self, at, scope, player, key, |ctx, slot, c| {
                ctx.txn.get_at(&c, slot)
            }));
        }
        Ok(out)
    }

    fn put(
        &mut self,
        at: u32,
        scope: state::Scope,
        player: u32,
        key: u32,
        value: i64,
    ) -> wasmtime::Result<()> {
        with_call!(self, at, scope, player, key, |ctx, slot, c| {
            let lim = ctx.limits;
            ctx.txn
                .put_at(&c, slot, value, &lim)
                .map_err(wasmtime::Error::new)
        })
    }

    fn put_blob(
        &mut self,
        at: u32,
        scope: state::Scope,
        player: u32,
        key: u32,
        value: Vec<u8>,
    ) -> wasmtime::Result<()> {
        with_call!(self, at, scope, player, key, |ctx, slot, c| {
            let lim = ctx.limits;
            ctx.txn
                .put_blob_at(&c, slot, value, &lim)
                .map_err(wasmtime::Error::new)
        })
    }

    fn get_blob(
        &mut self,
        at: u32,
        scope: state::Scope,
        player: u32,
        key: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        with_call!(self, at, scope, player, key, |ctx, slot, c| Ok(ctx
            .txn
            .get_blob_at(&c, slot)))
    }

    fn set_insert(
        &mut self,
        at: u32,
        scope: state::Scope,
        player: u32,
        key: u32,
        member: String,
    ) -> wasmtime::Result<bool> {
        with_call!(self, at, scope, player, key, |ctx, slot, c| {
            let lim = ctx.limits;
            ctx.txn
                .set_insert_at(&c, slot, member, &lim)
                .map_err(wasmtime::Error::new)
        })
    }

    fn set_count(
        &mut self,
        at: u32,
        scope: state::Scope,
        player: u32,
        key: u32,
    ) -> wasmtime::Result<u32> {
        with_call!(self, at, scope, player, key, |ctx, slot, c| Ok(ctx
            .txn
            .set_count_at(&c, slot)))
    }

    fn key(&mut self, name: String) -> wasmtime::Result<u32> {
        self.keys.intern(name).map_err(wasmtime::Error::new)
    }

    fn write_counters(&mut self, writes: Vec<u8>) -> wasmtime::Result<()> {
        let bad = |e: CounterWriteError| wasmtime::Error::new(BadCall(e.to_string()));
        for w in CounterWriteRecord::decode_all(&writes).map_err(bad)? {
            let CounterWriteRecord {
                at,
                scope,
                op,
                player,
                key,
                value,
            } = w.map_err(bad)?;
            let scope = SCOPES.get(scope as usize).copied().ok_or_else(|| {
                wasmtime::Error::new(BadCall(format!("write-counters scope {scope}")))
            })?;
            with_call!(self, at, scope, player, key, |ctx, slot, c| {
                let lim = ctx.limits;
                match op {
                    CounterOp::Add => ctx.txn.add_at(&c, slot, value, &lim).map(drop),
                    CounterOp::Put => ctx.txn.put_at(&c, slot, value, &lim),
                }
                .map_err(wasmtime::Error::new)
            })?;
        }
        Ok(())
    }
}

/// The WIT scopes by case index.
const SCOPES: [state::Scope; 5] = [
    state::Scope::Lifetime,
    state::Scope::Session,
    state::Scope::Match,
    state::Scope::Round,
    state::Scope::Life,
];

impl log::Host for StoreData {
    fn emit(&mut self, level: log::Level, mut message: String) -> wasmtime::Result<()> {
        let l = &mut self.log;
        if l.lines >= l.max_lines {
            l.dropped += 1;
            return Ok(());
        }
        l.lines += 1;
        if message.len() > l.max_bytes {
            let mut cut = l.max_bytes;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        let level = match level {
            log::Level::Debug => "debug",
            log::Level::Info => "info",
            log::Level::Warn => "warn",
            log::Level::Error => "error",
        };
        match level {
            "error" | "warn" => {
                tracing::warn!(pack = %l.pack, version = %l.version, level, "{message}")
            }
            _ => tracing::debug!(pack = %l.pack, version = %l.version, level, "{message}"),
        }
        let mut ring = l.ring.lock();
        if ring.len() >= l.ring_cap {
            ring.pop_front();
        }
        ring.push_back(LogLine {
            pack: l.pack.clone(),
            version: l.version.clone(),
            level,
            message,
        });
        Ok(())
    }
}

impl types::Host for StoreData {}
impl meta::Host for StoreData {}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(max_bytes: usize) -> KeyNames {
        KeyNames {
            max_bytes,
            ..KeyNames::default()
        }
    }

    #[test]
    fn scopes_are_in_case_order() {
        for (i, s) in SCOPES.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?}");
        }
    }

    #[test]
    fn a_key_name_keeps_its_id_for_the_instance() {
        let mut k = names(8);
        assert_eq!(k.intern("kills".into()).unwrap(), 0);
        assert_eq!(k.intern("deaths".into()).unwrap(), 1);
        assert_eq!(k.intern("kills".into()).unwrap(), 0);
        assert_eq!(&**k.get(1).unwrap(), "deaths");
        let err = k.get(2).unwrap_err();
        assert!(err.is::<BadCall>(), "{err:#}");
    }

    #[test]
    fn key_names_are_capped_in_length_and_number() {
        let mut k = names(4);
        assert!(matches!(
            k.intern("toolong".into()),
            Err(StateLimit::KeyTooLong(7, 4))
        ));
        for n in 0..MAX_KEY_NAMES {
            k.intern(format!("{n:x}")).unwrap();
        }
        assert!(matches!(
            k.intern("new".into()),
            Err(StateLimit::TooManyKeyNames(MAX_KEY_NAMES))
        ));
        // Names it already has still resolve.
        assert_eq!(k.intern("0".into()).unwrap(), 0);
    }
}
