//! The batch writer: events in, batches of up to 30 000 rows or 1 s out,
//! retried with backoff while the store is down.
//!
//! Nothing is lost: a batch is retried until the store accepts it, and
//! while it is retried the writer stops taking new events, so the bounded
//! queue fills and `send` waits (backpressure reaches the pipeline, whose
//! journal still holds everything). Nothing is doubled: the store skips ids
//! it already has (see [`super`]), so a batch that landed although its
//! acknowledgement was lost is harmless to retry.
//!
//! [`BatchWriter::committed`] tells the caller what is durably stored: the
//! highest committed event id per server, so the journal checkpoint can
//! advance to it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use opm_model::Event;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::time::Instant;

use super::AnalyticsStore;
use crate::error::StoreError;

#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Rows per batch.
    pub max_rows: usize,
    /// Longest an event waits for its batch to fill.
    pub max_delay: Duration,
    /// Events the writer holds (queued, and in the batch being written)
    /// before `send` waits; at least two batches (`2 * max_rows`). This
    /// bounds the memory behind the pipeline: the ingest queue gives an
    /// event's slot back once the writer took it.
    pub queue: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Attempts at a batch the store *rejects* (not merely unreachable)
    /// before it is split to isolate the event at fault.
    pub rejected_attempts: u32,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            // Rollup rows are summed per batch before they are written, so a
            // bigger batch writes fewer of them per event (SQLite: 3x fewer
            // at 10 000 than at 1 000 rows under `loadgen`; the writer's CPU
            // per event 15-20 % lower at 30 000 than at 10 000). The ingest
            // checkpoint flushes every second anyway, which bounds the wait.
            max_rows: 30_000,
            max_delay: Duration::from_secs(1),
            // Room for the next full batch while one is being written.
            queue: 60_000,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            rejected_attempts: 5,
        }
    }
}

impl WriterConfig {
    /// The defaults, with `OPM_BATCH_ROWS` and `OPM_BATCH_MS` overriding
    /// the batch size and deadline. ClickHouse pays per INSERT (one part
    /// per table and view), so a busy ClickHouse deployment wants batches
    /// of 100 000 rows (docs/storage.md, "Benchmarks").
    pub fn from_env() -> WriterConfig {
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .filter(|v| *v > 0)
        };
        let mut config = WriterConfig::default();
        if let Some(rows) = var("OPM_BATCH_ROWS") {
            config.max_rows = rows as usize;
            // Two batches: one being written, the next filling.
            config.queue = config.max_rows.saturating_mul(2);
        }
        if let Some(ms) = var("OPM_BATCH_MS") {
            config.max_delay = Duration::from_millis(ms);
        }
        config
    }
}

/// What the writer has durably stored so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// Highest event id stored per server: everything at or below it is
    /// in the store (ids increase per server).
    pub high_water: BTreeMap<String, u64>,
    pub inserted: u64,
    /// Already stored before (replays), or without an id.
    pub skipped: u64,
    /// Events the store refused on their own; logged with their id.
    pub rejected: u64,
    pub batches: u64,
    /// Failed attempts so far (each was retried).
    pub failed_attempts: u64,
}

enum Msg {
    /// Events, and the room they hold (see [`BatchWriter::send_many`]).
    Events(Vec<Event>, u32),
    Flush(oneshot::Sender<Committed>),
}

/// The writer has stopped (its task ended).
#[derive(Debug, thiserror::Error)]
#[error("batch writer stopped")]
pub struct WriterClosed;

/// The writer has stopped; the events it did not take are handed back, so
/// a caller that must not lose them can keep them (or try again).
#[derive(Debug, thiserror::Error)]
#[error("batch writer stopped; {} events not taken", .0.len())]
pub struct NotTaken(pub Vec<Event>);

pub struct BatchWriter {
    tx: mpsc::UnboundedSender<Msg>,
    /// One permit per event the writer may still take in.
    room: Arc<Semaphore>,
    capacity: u32,
    max_rows: usize,
    committed: watch::Receiver<Committed>,
    task: tokio::task::JoinHandle<()>,
}

impl BatchWriter {
    /// Starts the writer on the current tokio runtime. The initial
    /// high-water marks are read from the store (retrying while it is down).
    pub fn spawn(store: Arc<dyn AnalyticsStore>, config: WriterConfig) -> BatchWriter {
        let (tx, rx) = mpsc::unbounded_channel();
        let (ctx, committed) = watch::channel(Committed::default());
        // Never less than two batches: one being written, the next filling,
        // or a writer configured for big batches would wait out its
        // deadline for a batch the room can never hold.
        let room = config.queue.max(config.max_rows.saturating_mul(2));
        let capacity = room.clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize)) as u32;
        let room = Arc::new(Semaphore::new(capacity as usize));
        let max_rows = config.max_rows;
        let task = tokio::spawn(run(store, config, rx, ctx, room.clone()));
        BatchWriter {
            tx,
            room,
            capacity,
            max_rows,
            committed,
            task,
        }
    }

    /// Queues one event; waits while the writer holds `queue` events.
    pub async fn send(&self, event: Event) -> Result<(), WriterClosed> {
        self.send_many(vec![event]).await.map_err(|_| WriterClosed)
    }

    /// Queues events in order; waits while the writer holds `queue`
    /// events. A batch larger than that waits for the writer to be empty.
    pub async fn send_many(&self, events: Vec<Event>) -> Result<(), NotTaken> {
        if events.is_empty() {
            return Ok(());
        }
        let n = (events.len().min(self.capacity as usize)) as u32;
        // The writer gives the room back once these events are stored.
        match self.room.acquire_many(n).await {
            Ok(permit) => permit.forget(),
            Err(_) => return Err(NotTaken(events)),
        }
        self.tx.send(Msg::Events(events, n)).map_err(|e| match e.0 {
            Msg::Events(events, _) => NotTaken(events),
            Msg::Flush(_) => NotTaken(Vec::new()),
        })
    }

    /// Events handed to the writer and not yet stored (queued, or in the
    /// batch being filled or written).
    pub fn held(&self) -> usize {
        (self.capacity as usize).saturating_sub(self.room.available_permits())
    }

    /// Rows per batch (`WriterConfig::max_rows`).
    pub fn batch_rows(&self) -> usize {
        self.max_rows
    }

    /// Watches the committed state; it changes after every stored batch.
    pub fn committed(&self) -> watch::Receiver<Committed> {
        self.committed.clone()
    }

    /// Writes everything queued so far and returns once it is stored.
    pub async fn flush(&self) -> Result<Committed, WriterClosed> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(tx)).map_err(|_| WriterClosed)?;
        rx.await.map_err(|_| WriterClosed)
    }

    /// Flushes and stops the writer.
    pub async fn close(self) -> Result<Committed, WriterClosed> {
        let committed = self.flush().await?;
        drop(self.tx);
        let _ = self.task.await;
        Ok(committed)
    }
}

async fn run(
    store: Arc<dyn AnalyticsStore>,
    config: WriterConfig,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    out: watch::Sender<Committed>,
    room: Arc<Semaphore>,
) {
    let mut state = Committed::default();
    let mut backoff = Backoff::new(&config);
    loop {
        match store.high_water_marks().await {
            Ok(marks) => {
                state.high_water = marks.into_iter().collect();
                out.send_replace(state.clone());
                break;
            }
            Err(e) => {
                state.failed_attempts += 1;
                out.send_replace(state.clone());
                tracing::warn!(error = %e, "analytics store unavailable at start; retrying");
                tokio::time::sleep(backoff.next()).await;
            }
        }
    }
    // One buffer, handed to the store and back for every batch: events
    // are a few hundred bytes each, and a batch that outgrew it (or a new
    // one per batch) cost a copy of every event and fresh pages.
    let mut buf: Vec<Event> = Vec::with_capacity(config.max_rows);
    // The part of a message that did not fit the batch, with the room it
    // holds: it starts the next batch.
    let mut carry: Option<(Vec<Event>, usize)> = None;
    let mut deadline: Option<Instant> = None;
    let mut open = true;
    // Room held by the events in `buf`.
    let mut held = 0usize;
    while open || !buf.is_empty() || carry.is_some() {
        let mut flush_waiters = Vec::new();
        if let Some((events, permits)) = carry.take() {
            deadline = Some(Instant::now() + config.max_delay);
            carry = take_in(&mut buf, config.max_rows, events, permits, &mut held);
        }
        // Fill the batch until it is full, its first event is max_delay
        // old, a flush is asked for, or the channel closes.
        while open && carry.is_none() && buf.len() < config.max_rows && flush_waiters.is_empty() {
            let msg = match deadline {
                Some(d) => match tokio::time::timeout_at(d, rx.recv()).await {
                    Ok(m) => m,
                    Err(_) => break,
                },
                None => rx.recv().await,
            };
            match msg {
                Some(Msg::Events(events, permits)) => {
                    if deadline.is_none() && !events.is_empty() {
                        deadline = Some(Instant::now() + config.max_delay);
                    }
                    carry = take_in(
                        &mut buf,
                        config.max_rows,
                        events,
                        permits as usize,
                        &mut held,
                    );
                }
                Some(Msg::Flush(w)) => flush_waiters.push(w),
                None => open = false,
            }
        }
        loop {
            if !buf.is_empty() {
                let batch = std::mem::take(&mut buf);
                buf = write_batch(&*store, &config, batch, &mut state, &out).await;
                buf.reserve(config.max_rows);
                out.send_replace(state.clone());
            }
            // A flush, and the end, store what was carried over too.
            if open && flush_waiters.is_empty() {
                break;
            }
            match carry.take() {
                Some((events, permits)) => {
                    carry = take_in(&mut buf, config.max_rows, events, permits, &mut held);
                }
                None => break,
            }
        }
        room.add_permits(std::mem::take(&mut held));
        deadline = None;
        if !flush_waiters.is_empty() {
            // What a flush promises the caller (the pipeline's checkpoint)
            // is durability: fold the store's log now. Every batch above is
            // already committed, so a failure only delays that until the
            // next flush.
            if let Err(e) = store.sync().await {
                state.failed_attempts += 1;
                out.send_replace(state.clone());
                tracing::warn!(error = %e, "analytics store sync failed; retried at the next flush");
            }
        }
        for w in flush_waiters {
            let _ = w.send(state.clone());
        }
    }
}

/// Moves as many of `events` into `buf` as a batch of `max_rows` has
/// room for, counting the room (`permits`) they hold in `held`; returns
/// the rest with the room it holds.
fn take_in(
    buf: &mut Vec<Event>,
    max_rows: usize,
    mut events: Vec<Event>,
    permits: usize,
    held: &mut usize,
) -> Option<(Vec<Event>, usize)> {
    let fits = max_rows.saturating_sub(buf.len()).max(1);
    if events.len() <= fits {
        *held += permits;
        buf.extend(events);
        return None;
    }
    let rest = events.split_off(fits);
    // A message larger than the whole room holds less room than events.
    let rest_permits = permits.saturating_sub(fits).min(rest.len());
    *held += permits - rest_permits;
    buf.extend(events);
    Some((rest, rest_permits))
}

/// Stores one batch, retrying until every event is stored, skipped or
/// (alone) rejected. Returns the batch's buffer, emptied, for the next.
async fn write_batch(
    store: &dyn AnalyticsStore,
    config: &WriterConfig,
    batch: Vec<Event>,
    state: &mut Committed,
    out: &watch::Sender<Committed>,
) -> Vec<Event> {
    let mut emptied = Vec::new();
    let mut pending = vec![batch];
    while let Some(mut batch) = pending.pop() {
        let mut backoff = Backoff::new(config);
        let mut rejected = 0;
        let done = loop {
            let started = std::time::Instant::now();
            let shared = Arc::new(batch);
            let result = store.insert_shared(shared.clone()).await;
            // The store let go of the batch before returning: no copy.
            batch = Arc::try_unwrap(shared).unwrap_or_else(|still| (*still).clone());
            match result {
                Ok(report) => {
                    tracing::debug!(
                        rows = report.inserted,
                        skipped = report.skipped,
                        ms = started.elapsed().as_millis() as u64,
                        backend = store.backend(),
                        "analytics batch stored"
                    );
                    state.inserted += report.inserted;
                    state.skipped += report.skipped;
                    state.batches += 1;
                    for (server, id) in report.high_water {
                        let slot = state.high_water.entry(server).or_insert(0);
                        *slot = (*slot).max(id);
                    }
                    break Some(batch);
                }
                Err(e @ StoreError::Rejected { .. }) | Err(e @ StoreError::Decode { .. }) => {
                    state.failed_attempts += 1;
                    out.send_replace(state.clone());
                    rejected += 1;
                    if rejected < config.rejected_attempts {
                        tracing::error!(error = %e, rows = batch.len(), "analytics store rejected a batch; retrying");
                        tokio::time::sleep(backoff.next()).await;
                        continue;
                    }
                    if batch.len() == 1 {
                        let e0 = &batch[0];
                        tracing::error!(error = %e, server = %e0.server, event_id = e0.id, "analytics store rejects this event; skipping it");
                        state.rejected += 1;
                        let slot = state.high_water.entry(e0.server.to_string()).or_insert(0);
                        *slot = (*slot).max(e0.id);
                        break Some(batch);
                    }
                    // Isolate the culprit: halves, earlier half first.
                    let mut batch = batch;
                    let second = batch.split_off(batch.len() / 2);
                    pending.push(second);
                    pending.push(batch);
                    break None;
                }
                Err(e) => {
                    state.failed_attempts += 1;
                    out.send_replace(state.clone());
                    let wait = backoff.next();
                    tracing::warn!(error = %e, rows = batch.len(), retry_in_ms = wait.as_millis() as u64, "analytics store unavailable; batch kept");
                    tokio::time::sleep(wait).await;
                }
            }
        };
        if let Some(mut done) = done
            && done.capacity() > emptied.capacity()
        {
            done.clear();
            emptied = done;
        }
    }
    emptied
}

struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(config: &WriterConfig) -> Backoff {
        Backoff {
            next: config.backoff_initial,
            max: config.backoff_max,
        }
    }

    fn next(&mut self) -> Duration {
        let now = self.next;
        self.next = (self.next * 2).min(self.max);
        now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::sqlite::SqliteAnalytics;
    use crate::analytics::{Dialect, InsertReport, Row};

    /// The real SQLite store behind a gate: `insert` waits for a permit,
    /// as a store that has fallen behind would. It records the ids of
    /// every batch it is handed.
    struct Gated {
        inner: SqliteAnalytics,
        gate: Arc<Semaphore>,
        batches: parking_lot::Mutex<Vec<Vec<u64>>>,
    }

    impl Gated {
        async fn open(dir: &std::path::Path, permits: usize) -> Gated {
            let inner = SqliteAnalytics::open(&dir.join("w.db")).await.unwrap();
            inner.migrate().await.unwrap();
            Gated {
                inner,
                gate: Arc::new(Semaphore::new(permits)),
                batches: parking_lot::Mutex::new(Vec::new()),
            }
        }
    }

    #[async_trait::async_trait]
    impl AnalyticsStore for Gated {
        fn backend(&self) -> &'static str {
            "sqlite"
        }
        fn dialect(&self) -> Dialect {
            Dialect::Sqlite
        }
        async fn migrate(&self) -> Result<(), StoreError> {
            self.inner.migrate().await
        }
        async fn insert(&self, events: &[Event]) -> Result<InsertReport, StoreError> {
            self.insert_shared(Arc::new(events.to_vec())).await
        }
        async fn insert_shared(&self, events: Arc<Vec<Event>>) -> Result<InsertReport, StoreError> {
            self.gate.acquire().await.unwrap().forget();
            self.batches
                .lock()
                .push(events.iter().map(|e| e.id).collect());
            self.inner.insert_shared(events).await
        }
        async fn high_water_marks(&self) -> Result<Vec<(String, u64)>, StoreError> {
            self.inner.high_water_marks().await
        }
        async fn fetch(&self, sql: &str) -> Result<Vec<Row>, StoreError> {
            self.inner.fetch(sql).await
        }
        async fn drop_raw_before(&self, cutoff_ms: i64) -> Result<Vec<u32>, StoreError> {
            self.inner.drop_raw_before(cutoff_ms).await
        }
        async fn raw_count(&self) -> Result<u64, StoreError> {
            self.inner.raw_count().await
        }
    }

    fn kills(ids: std::ops::RangeInclusive<u64>) -> Vec<Event> {
        ids.map(crate::analytics::sqlite::tests::kill).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_waits_while_the_writer_holds_its_queue_of_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Gated::open(dir.path(), 0).await);
        let gate = store.gate.clone();
        let config = WriterConfig {
            max_rows: 100,
            max_delay: Duration::from_millis(1),
            queue: 250,
            ..WriterConfig::default()
        };
        let writer = Arc::new(BatchWriter::spawn(store.clone(), config));
        // 100 go into the batch stuck at the gate, 150 more wait in the
        // queue: the writer holds 250 events, its whole room.
        writer.send_many(kills(1..=100)).await.unwrap();
        writer.send_many(kills(101..=250)).await.unwrap();
        let w = writer.clone();
        let blocked = tokio::spawn(async move { w.send_many(kills(251..=260)).await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!blocked.is_finished(), "a full writer takes no more events");
        assert_eq!(writer.held(), 250);
        // A batch bigger than the whole room waits for an empty writer.
        let w = writer.clone();
        let huge = tokio::spawn(async move { w.send_many(kills(261..=1000)).await });
        // Each stored batch gives its room back.
        gate.add_permits(1_000);
        blocked.await.unwrap().unwrap();
        huge.await.unwrap().unwrap();
        let committed = writer.flush().await.unwrap();
        assert_eq!(committed.inserted, 1000);
        assert_eq!(store.raw_count().await.unwrap(), 1000);
        assert_eq!(writer.held(), 0, "stored events are no longer held");
    }

    /// Messages that straddle a batch are split: every batch but the last
    /// is exactly full, events keep their order, a flush stores the part
    /// carried over, and no room stays held.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_are_split_across_batches_in_order() {
        for (max_rows, sizes) in [
            (10, vec![7, 7, 7, 7, 7]),
            (10, vec![25]),
            (10, vec![3, 30, 1]),
            (4, vec![4, 4, 5]),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(Gated::open(dir.path(), Semaphore::MAX_PERMITS).await);
            let config = WriterConfig {
                max_rows,
                // Only full batches and the flush cut a batch.
                max_delay: Duration::from_secs(600),
                queue: 1_000,
                ..WriterConfig::default()
            };
            let writer = BatchWriter::spawn(store.clone(), config);
            let mut next = 1;
            for n in &sizes {
                writer.send_many(kills(next..=next + n - 1)).await.unwrap();
                next += n;
            }
            let total = next - 1;
            let committed = writer.flush().await.unwrap();
            assert_eq!(committed.inserted, total, "{sizes:?}");
            assert_eq!(writer.held(), 0, "{sizes:?}");
            let batches = store.batches.lock().clone();
            let (last, full) = batches.split_last().unwrap();
            assert!(
                full.iter().all(|b| b.len() == max_rows),
                "{sizes:?}: {batches:?}"
            );
            assert!(!last.is_empty() && last.len() <= max_rows);
            let ids: Vec<u64> = batches.concat();
            assert_eq!(ids, (1..=total).collect::<Vec<_>>(), "{sizes:?}");
            assert_eq!(store.raw_count().await.unwrap(), total);
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = WriterConfig {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            ..WriterConfig::default()
        };
        let mut b = Backoff::new(&config);
        let waits: Vec<u128> = (0..5).map(|_| b.next().as_millis()).collect();
        assert_eq!(waits, vec![100, 200, 400, 500, 500]);
    }
}
