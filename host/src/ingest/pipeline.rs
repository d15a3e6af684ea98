//! The pipeline behind the journal: sharded workers on blocking threads,
//! the stages they run, and the checkpoint.
//!
//! A journaled record goes to the worker its server hashes to, so one
//! server's events (and so one match) are processed in journal order by
//! one thread. A worker drains what is waiting into one batch and runs:
//! enrichment plugins → game-state tracker (which may add synthetic
//! lifecycle events) → achievement packs → the stores. When the stores
//! accepted the batch its records are marked done; the checkpointer
//! flushes the stores (making what they accepted durable) and then moves
//! the journal checkpoint to the highest sequence below which everything
//! is done.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use opm_model::plugin::Outcome;
use opm_model::tracker::Tracker;
use opm_model::{Event, EventKind, Str};
use parking_lot::Mutex;
use thiserror::Error;

use crate::ingest::journal::{JournalHandle, Record};
use crate::ingest::queue::Admission;
use crate::metrics::metrics;

#[derive(Debug, Error)]
pub enum SinkError {
    #[error("{0}")]
    Unavailable(String),
}

/// A failed [`EventSink::write_owned`]: the error, and the events back for
/// the retry.
#[derive(Debug, Error)]
#[error("{error}")]
pub struct Unwritten {
    pub error: SinkError,
    pub events: Vec<Event>,
}

/// A store the pipeline hands event batches and outcomes to.
///
/// `write` may buffer; `flush` makes everything written before it durable.
/// Writes must be idempotent on event id: after a crash the journal
/// replays events past the checkpoint, some of which the store may have.
pub trait EventSink: Send + Sync {
    fn name(&self) -> &str;
    fn write(&self, events: &[Event], outcomes: &[Outcome]) -> Result<(), SinkError>;
    /// As `write`, taking the batch itself: the pipeline hands its last
    /// sink the batch instead of a copy, so a sink that keeps the events
    /// (the analytics writer buffers them) overrides this to skip copying
    /// a few hundred bytes per event. On failure the events come back.
    fn write_owned(&self, events: Vec<Event>, outcomes: &[Outcome]) -> Result<(), Unwritten> {
        self.write(&events, outcomes)
            .map_err(|error| Unwritten { error, events })
    }
    fn flush(&self) -> Result<(), SinkError>;
    /// False when a flush now would be costly and can wait for a later
    /// checkpoint (see `AnalyticsSink`); the checkpoint then skips this
    /// round. A sink must not say so for long: the journal keeps every
    /// event until a checkpoint covers it.
    fn flush_due(&self) -> bool {
        true
    }
    fn ready(&self) -> bool {
        true
    }
}

/// The plugin stages (the Wasm runtime): enrichers, then achievement packs.
/// Called from worker threads; `worker` selects the instance set.
pub trait PluginStage: Send + Sync {
    /// Enrichment plugins: add derived fields, before the tracker.
    fn enrich(&self, worker: usize, events: &mut Vec<Event>) -> Result<(), String>;
    /// Achievement packs; their state and outcomes are committed before
    /// this returns. An error means nothing was committed for the failing
    /// pack and the same batch may be offered again.
    fn evaluate(&self, worker: usize, events: &[Event]) -> Result<Vec<Outcome>, String>;
    fn ready(&self) -> bool {
        true
    }
}

/// A batch on its way to a worker.
struct Work {
    first_seq: u64,
    last_seq: u64,
    server: Str,
    events: Vec<Event>,
}

/// A worker's trackers: (server, last sequence it reflects, tracker).
type Snapshot = Vec<(Str, u64, serde_json::Value)>;

/// The trackers of every server as of the last checkpoint: server → (last
/// sequence of that server the state reflects, tracker).
pub type TrackerSnapshots = HashMap<Str, (u64, Tracker)>;

/// Reads the tracker snapshots written with the checkpoint.
pub fn load_snapshots(path: &std::path::Path) -> std::io::Result<TrackerSnapshots> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    let entries: Vec<(Str, u64, Tracker)> =
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)?;
    Ok(entries
        .into_iter()
        .map(|(s, seq, t)| (s, (seq, t)))
        .collect())
}

/// Which journal records are done, to find the checkpoint.
pub struct Progress {
    /// first sequence → (last sequence, done).
    open: Mutex<BTreeMap<u64, (u64, bool)>>,
    done: AtomicU64,
}

impl Progress {
    pub fn new(checkpoint: u64) -> Progress {
        Progress {
            open: Mutex::new(BTreeMap::new()),
            done: AtomicU64::new(checkpoint),
        }
    }

    /// Registers a record; records arrive in sequence order.
    pub fn register(&self, first: u64, last: u64) {
        self.open.lock().insert(first, (last, false));
    }

    pub fn complete(&self, first: u64) {
        let mut open = self.open.lock();
        if let Some(entry) = open.get_mut(&first) {
            entry.1 = true;
        }
        let mut done = self.done.load(Ordering::Acquire);
        while let Some(entry) = open.first_entry() {
            if !entry.get().1 {
                break;
            }
            let (_, (last, _)) = entry.remove_entry();
            done = last;
        }
        self.done.store(done, Ordering::Release);
    }

    /// Every sequence up to this one has been through every stage.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Acquire)
    }
}

pub struct PipelineConfig {
    pub workers: usize,
    /// Events a worker gathers into one batch at most.
    pub max_batch: usize,
    /// How long a worker waits for more work while its batch is smaller
    /// than `linger_below`. Every batch has fixed costs (a plugin call and
    /// a state commit per pack, a store transaction, live-state updates),
    /// so a few milliseconds of processing delay buy much larger batches
    /// under load; acknowledgement latency is unaffected (the journal acks).
    pub linger: Duration,
    pub linger_below: usize,
    pub checkpoint_interval: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .clamp(1, 8),
            // Under run B, 4 000 / 10 ms / 2 000 against 2 000 / 5 ms / 500
            // cut the workers' CPU per event by 15 % and the plugin-state
            // commits' by 30 % (docs/ingest.md §9).
            max_batch: 4_000,
            linger: Duration::from_millis(10),
            linger_below: 2_000,
            checkpoint_interval: Duration::from_millis(200),
        }
    }
}

/// The running workers.
pub struct Pipeline {
    senders: Vec<Sender<Work>>,
    /// Per worker: asks for its trackers, answered between batches.
    controls: Vec<Sender<Sender<Snapshot>>>,
    /// Where tracker snapshots are written with each checkpoint.
    snapshot_path: Option<std::path::PathBuf>,
    progress: Arc<Progress>,
    sinks: Arc<Vec<Arc<dyn EventSink>>>,
    plugins: Option<Arc<dyn PluginStage>>,
    stop: Arc<AtomicBool>,
    /// One checkpoint at a time: the checkpointer thread and a draining
    /// caller must not interleave, or an older tracker snapshot could
    /// overwrite a newer one under a newer checkpoint.
    checkpointing: Mutex<()>,
}

fn shard(server: &str, n: usize) -> usize {
    // SipHash with fixed keys: the same server maps to the same worker in
    // every run, which keeps replays in the same order.
    let mut h = std::hash::DefaultHasher::new();
    server.hash(&mut h);
    (h.finish() % n as u64) as usize
}

impl Pipeline {
    /// `restored` are the trackers saved with the checkpoint (see
    /// [`load_snapshots`]); `snapshot_path` is where new ones are saved.
    pub fn start(
        config: PipelineConfig,
        checkpoint: u64,
        admission: Arc<Admission>,
        sinks: Vec<Arc<dyn EventSink>>,
        plugins: Option<Arc<dyn PluginStage>>,
        restored: TrackerSnapshots,
        snapshot_path: Option<std::path::PathBuf>,
    ) -> Pipeline {
        let progress = Arc::new(Progress::new(checkpoint));
        let sinks = Arc::new(sinks);
        let workers = config.workers.max(1);
        let mut per_worker: Vec<TrackerSnapshots> = (0..workers).map(|_| HashMap::new()).collect();
        for (server, entry) in restored {
            per_worker[shard(&server, workers)].insert(server, entry);
        }
        let mut senders = Vec::new();
        let mut controls = Vec::new();
        for (index, restored) in per_worker.into_iter().enumerate() {
            let (tx, rx) = crossbeam_channel::unbounded();
            senders.push(tx);
            let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
            controls.push(ctl_tx);
            let mut trackers = HashMap::new();
            let mut last_seq = HashMap::new();
            for (server, (seq, tracker)) in restored {
                trackers.insert(server.clone(), tracker);
                last_seq.insert(server, seq);
            }
            let worker = Worker {
                index,
                rx,
                control: ctl_rx,
                progress: progress.clone(),
                admission: admission.clone(),
                sinks: sinks.clone(),
                plugins: plugins.clone(),
                restored_seq: last_seq.clone(),
                last_seq,
                trackers,
                max_batch: config.max_batch,
                linger: config.linger,
                linger_below: config.linger_below.min(config.max_batch),
            };
            std::thread::Builder::new()
                .name(format!("opm-worker-{index}"))
                .spawn(move || {
                    opm_model::sched::enter_background();
                    worker.run()
                })
                .expect("spawn pipeline worker");
        }
        Pipeline {
            senders,
            controls,
            snapshot_path,
            progress,
            sinks,
            plugins,
            stop: Arc::new(AtomicBool::new(false)),
            checkpointing: Mutex::new(()),
        }
    }

    /// Hands a durable record to its worker. Its queue slots must have been
    /// reserved by whoever submitted it.
    pub fn dispatch(&self, record: Record) {
        self.progress.register(record.first_seq, record.last_seq);
        let index = shard(&record.server, self.senders.len());
        let work = Work {
            first_seq: record.first_seq,
            last_seq: record.last_seq,
            server: record.server,
            events: record.events,
        };
        if self.senders[index].send(work).is_err() {
            tracing::error!(worker = index, "pipeline worker is gone");
        }
    }

    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// True when every store and the plugin stage can take work.
    pub fn ready(&self) -> bool {
        self.sinks.iter().all(|s| s.ready()) && self.plugins.as_ref().is_none_or(|p| p.ready())
    }

    /// Flushes the stores and advances the journal checkpoint; returns the
    /// new checkpoint.
    pub fn checkpoint(&self, journal: &JournalHandle) -> Result<u64, String> {
        let _one_at_a_time = self.checkpointing.lock();
        let done = self.progress.done();
        if done <= journal.checkpoint() {
            return Ok(journal.checkpoint());
        }
        // Trackers first: each reflects at least everything up to `done`,
        // and whatever it reflects was handed to the stores before it
        // answered, so the flush below makes all of that durable too.
        let mut snapshot: Vec<(Str, u64, serde_json::Value)> = Vec::new();
        if self.snapshot_path.is_some() {
            for control in &self.controls {
                let (tx, rx) = crossbeam_channel::bounded(1);
                control
                    .send(tx)
                    .map_err(|_| "pipeline worker is gone".to_string())?;
                snapshot.extend(
                    rx.recv()
                        .map_err(|_| "pipeline worker is gone".to_string())?,
                );
            }
        }
        for sink in self.sinks.iter() {
            sink.flush().map_err(|e| format!("{}: {e}", sink.name()))?;
        }
        if let Some(path) = &self.snapshot_path {
            snapshot.sort_by(|a, b| a.0.cmp(&b.0));
            let bytes = serde_json::to_vec(&snapshot).map_err(|e| e.to_string())?;
            crate::ingest::servers::write_atomically(path, &bytes).map_err(|e| e.to_string())?;
        }
        journal.set_checkpoint(done).map_err(|e| e.to_string())?;
        Ok(done)
    }

    /// Runs the checkpointer on its own thread until [`Pipeline::stop`].
    pub fn spawn_checkpointer(self: &Arc<Self>, journal: JournalHandle, interval: Duration) {
        let me = self.clone();
        std::thread::Builder::new()
            .name("opm-checkpoint".into())
            .spawn(move || {
                opm_model::sched::enter_background();
                while !me.stop.load(Ordering::Acquire) {
                    let start = std::time::Instant::now();
                    // A sink may ask for a later round (`flush_due`);
                    // explicit checkpoints (drain, shutdown) always flush.
                    if me.sinks.iter().all(|s| s.flush_due())
                        && let Err(e) = me.checkpoint(&journal)
                    {
                        tracing::warn!(error = %e, "checkpoint postponed");
                    }
                    let took = start.elapsed();
                    crate::metrics::metrics()
                        .checkpoint_seconds
                        .observe(took.as_secs_f64());
                    // One checkpoint per interval, not one interval after
                    // each: a slow flush should not stretch the journal's
                    // replay window by a whole interval on top.
                    std::thread::sleep(interval.saturating_sub(took));
                }
            })
            .expect("spawn checkpointer");
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

struct Worker {
    index: usize,
    rx: Receiver<Work>,
    control: Receiver<Sender<Snapshot>>,
    /// Last sequence processed per server.
    last_seq: HashMap<Str, u64>,
    /// Per server, the sequence its restored tracker already reflects:
    /// replayed records at or below it were processed and stored before the
    /// restart and are skipped.
    restored_seq: HashMap<Str, u64>,
    progress: Arc<Progress>,
    admission: Arc<Admission>,
    sinks: Arc<Vec<Arc<dyn EventSink>>>,
    plugins: Option<Arc<dyn PluginStage>>,
    trackers: HashMap<Str, Tracker>,
    max_batch: usize,
    linger: Duration,
    linger_below: usize,
}

impl Worker {
    fn run(mut self) {
        let mut items: Vec<Work> = Vec::new();
        let mut out: Vec<Event> = Vec::new();
        loop {
            let first = crossbeam_channel::select! {
                recv(self.rx) -> w => match w {
                    Ok(w) => w,
                    Err(_) => return,
                },
                recv(self.control) -> req => {
                    if let Ok(reply) = req {
                        let _ = reply.send(self.snapshot());
                    }
                    continue;
                }
            };
            let mut total = first.events.len();
            items.push(first);
            let deadline = Instant::now() + self.linger;
            while total < self.max_batch {
                let next = if total < self.linger_below {
                    self.rx.recv_deadline(deadline).ok()
                } else {
                    self.rx.try_recv().ok()
                };
                match next {
                    Some(w) => {
                        total += w.events.len();
                        items.push(w);
                    }
                    None => break,
                }
            }
            out.clear();
            let mut done = Vec::with_capacity(items.len());
            let mut held = 0;
            for mut item in items.drain(..) {
                done.push(item.first_seq);
                held += (item.last_seq - item.first_seq + 1) as usize;
                if self
                    .restored_seq
                    .get(&item.server)
                    .is_some_and(|&s| item.last_seq <= s)
                {
                    continue;
                }
                self.last_seq.insert(item.server.clone(), item.last_seq);
                let mut events = std::mem::take(&mut item.events);
                if let Some(p) = &self.plugins {
                    retry("enrichers", || p.enrich(self.index, &mut events));
                }
                let tracker = self.trackers.entry(item.server.clone()).or_default();
                for ev in events {
                    tracker.process(ev, &mut out);
                }
            }
            let outcomes = match &self.plugins {
                Some(p) => retry("packs", || p.evaluate(self.index, &out)),
                None => Vec::new(),
            };
            count_processed(&out);
            // The last sink takes the batch itself; the next one starts in
            // a buffer of the same size.
            let room = Vec::with_capacity(out.capacity());
            let batch = std::mem::replace(&mut out, room);
            self.store(batch, &outcomes);
            for first_seq in done {
                self.progress.complete(first_seq);
            }
            // Every store holds these events now, each within its own
            // bound (the analytics writer: `WriterConfig::queue`), and the
            // journal keeps them until a checkpoint covers them. Holding
            // their queue room until that checkpoint made ingest wait out
            // every flush and tracker snapshot.
            self.admission.release(held);
        }
    }

    fn snapshot(&self) -> Snapshot {
        self.trackers
            .iter()
            .filter_map(|(server, tracker)| {
                let seq = self.last_seq.get(server).copied().unwrap_or(0);
                serde_json::to_value(tracker)
                    .ok()
                    .map(|v| (server.clone(), seq, v))
            })
            .collect()
    }

    /// Hands the batch to every store, retrying until each took it: these
    /// events are acknowledged, dropping them is not an option. The last
    /// store takes the batch by value.
    fn store(&self, mut events: Vec<Event>, outcomes: &[Outcome]) {
        let started = Instant::now();
        let Some((last, others)) = self.sinks.split_last() else {
            return;
        };
        for sink in others {
            retry_write(sink.name(), || sink.write(&events, outcomes));
        }
        retry_write(last.name(), || {
            last.write_owned(std::mem::take(&mut events), outcomes)
                .map_err(|back| {
                    events = back.events;
                    back.error
                })
        });
        metrics()
            .sink_write_seconds
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Retries a store's write until it succeeds, backing off up to 5 s.
fn retry_write(sink: &str, mut write: impl FnMut() -> Result<(), SinkError>) {
    let mut wait = Duration::from_millis(10);
    while let Err(e) = write() {
        tracing::warn!(sink, error = %e, retry_in = ?wait, "store write failed");
        std::thread::sleep(wait);
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}

/// Retries a stage until it succeeds: the events are acknowledged, so
/// skipping a stage is not an option; the stage's own errors are transient
/// (a store that is down), a plugin's bugs are handled inside the runtime.
fn retry<T>(stage: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let mut wait = Duration::from_millis(10);
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(stage, error = %e, retry_in = ?wait, "pipeline stage failed");
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Counts per kind without a label lookup per event. Unknown types are
/// counted as `other` so clients cannot blow up label cardinality.
pub fn count_by_kind(events: &[Event], mut f: impl FnMut(EventKind, u64)) {
    let mut counts = [0u64; 256];
    for e in events {
        counts[e.kind as usize] += 1;
    }
    for kind in EventKind::ALL {
        let n = counts[*kind as usize];
        if n > 0 {
            f(*kind, n);
        }
    }
}

fn count_processed(events: &[Event]) {
    let m = metrics();
    count_by_kind(events, |k, n| m.processed.inc_by(k, n));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_advances_only_over_a_done_prefix() {
        let p = Progress::new(10);
        p.register(11, 15);
        p.register(16, 20);
        p.register(21, 21);
        p.complete(16);
        assert_eq!(p.done(), 10);
        p.complete(11);
        assert_eq!(p.done(), 20);
        p.complete(21);
        assert_eq!(p.done(), 21);
    }

    /// Records what it is handed; the owned write fails `failures` times
    /// first, handing the events back.
    #[derive(Default)]
    struct Recorder {
        failures: Mutex<u32>,
        borrowed: Mutex<Vec<u64>>,
        owned: Mutex<Vec<u64>>,
    }

    impl EventSink for Recorder {
        fn name(&self) -> &str {
            "recorder"
        }
        fn write(&self, events: &[Event], _: &[Outcome]) -> Result<(), SinkError> {
            self.borrowed.lock().extend(events.iter().map(|e| e.id));
            Ok(())
        }
        fn write_owned(&self, events: Vec<Event>, _: &[Outcome]) -> Result<(), Unwritten> {
            let mut failures = self.failures.lock();
            if *failures > 0 {
                *failures -= 1;
                return Err(Unwritten {
                    error: SinkError::Unavailable("down".into()),
                    events,
                });
            }
            self.owned.lock().extend(events.iter().map(|e| e.id));
            Ok(())
        }
        fn flush(&self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    /// The last sink gets the batch itself, and a write that fails gets
    /// the same events again; the sinks before it see every event too.
    #[test]
    fn the_last_sink_owns_the_batch_and_a_failed_write_is_retried_whole() {
        let first = Arc::new(Recorder::default());
        let last = Arc::new(Recorder {
            failures: Mutex::new(2),
            ..Recorder::default()
        });
        let admission = Arc::new(Admission::new(1_000));
        assert!(admission.try_reserve(3));
        let pipeline = Pipeline::start(
            PipelineConfig {
                workers: 1,
                ..PipelineConfig::default()
            },
            0,
            admission.clone(),
            vec![first.clone(), last.clone()],
            None,
            HashMap::new(),
            None,
        );
        let events: Vec<Event> = (1..=3)
            .map(|seq| {
                let mut e = Event::new(EventKind::Jump);
                e.id = crate::ingest::journal::event_id(seq);
                e.server = Str::from("srv");
                e
            })
            .collect();
        let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
        pipeline.dispatch(Record {
            first_seq: 1,
            last_seq: 3,
            server: Str::from("srv"),
            events,
            delivery: None,
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while pipeline.progress().done() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(pipeline.progress().done(), 3);
        assert_eq!(*first.borrowed.lock(), ids);
        assert_eq!(*last.owned.lock(), ids, "the third attempt got every event");
        assert_eq!(*last.failures.lock(), 0);
        assert!(
            last.borrowed.lock().is_empty(),
            "never copied for the last sink"
        );
        assert_eq!(admission.depth(), 0, "queue room given back");
        pipeline.stop();
    }
}
