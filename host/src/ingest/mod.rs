//! Ingest: from a game server's batch to durable, processed events.
//!
//! ```text
//! HTTP / MQTT / import → decode (per event) → authenticate → admission
//!   → journal (group-commit fsync, ids assigned) → acknowledge
//!   → pipeline workers (sharded by server) → enrichers → tracker → packs → stores
//!   → checkpoint
//! ```
//!
//! * [`servers`]: registration, tokens, authentication;
//! * [`journal`]: the write-ahead journal and its checkpoint;
//! * [`delivery`]: recently journaled MQTT messages, to drop redeliveries;
//! * [`queue`]: admission to the bounded queue (load shedding);
//! * [`pipeline`]: workers, stage traits, checkpoint tracking;
//! * [`event_log`]: the optional JSONL export of the processed stream;
//! * [`live`]: kill feed, scoreboards and heartbeats for the read API;
//! * [`routes`]: the HTTP endpoints; [`mqtt`]: the MQTT consumer.

pub mod backends;
pub mod delivery;
pub mod event_log;
pub mod journal;
pub mod live;
pub mod mqtt;
pub mod pipeline;
pub mod queue;
pub mod routes;
pub mod servers;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opm_model::wire::{BodyError, DecodeContext, EventError, decode_body};
use opm_model::{Event, Str};
use thiserror::Error;

use crate::metrics::metrics;
use event_log::EventLog;
use journal::{Appended, Durability, Journal, JournalConfig, JournalError, JournalHandle};
use pipeline::{EventSink, Pipeline, PipelineConfig, PluginStage};
use queue::Admission;
use servers::{FileDirectory, RegistrationPolicy, ServerDirectory, Servers};

/// Ingest settings (flattened into `serve` and `import`).
#[derive(Debug, Clone, clap::Args)]
pub struct IngestConfig {
    /// When an accepted batch is acknowledged: after fsync (group commit),
    /// after the write with an fsync every 100 ms, or without fsync.
    #[arg(long, env = "OPM_DURABILITY", value_enum, default_value = "fsync")]
    pub durability: Durability,
    /// Events between the journal and the stores at most; above 90 % HTTP
    /// ingest answers 429.
    #[arg(long, env = "OPM_QUEUE_CAPACITY", default_value_t = 50_000)]
    pub queue_capacity: usize,
    /// Pipeline worker threads (default: one per core).
    #[arg(long, env = "OPM_WORKERS")]
    pub workers: Option<usize>,
    /// Also append every normalised event and outcome as JSON lines under
    /// `DATA_DIR/events/` (an export for debugging and tests; it is a second
    /// full copy of the stream with no retention, so it is off by default).
    #[arg(long, env = "OPM_EXPORT_EVENTS")]
    pub export_events: bool,
    /// Who may register: `open` (anyone, the quick start) or `approval`
    /// (new servers wait for an admin).
    #[arg(long, env = "OPM_REGISTRATION", value_enum, default_value = "open")]
    pub registration: RegistrationPolicy,
    /// Token for the admin routes (approve servers, rotate any token).
    #[arg(long, env = "OPM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// External MQTT broker to consume game events from, e.g.
    /// mqtt://127.0.0.1:1883 (user:password@ allowed).
    #[arg(long, env = "MQTT_URL")]
    pub mqtt_url: Option<String>,
    /// Topic filter the game publishes to.
    #[arg(long, env = "OPM_MQTT_TOPIC", default_value = "openmohaa/events/+")]
    pub mqtt_topic: String,
    /// MQTT client id; the broker keeps its session (and unacknowledged
    /// messages) across restarts under this id.
    #[arg(long, env = "OPM_MQTT_CLIENT_ID", default_value = "opm-stats-ingest")]
    pub mqtt_client_id: String,
    /// Added to the nice value of the threads behind the queue (pipeline
    /// workers with the plugin stage, the SQLite analytics writer, the
    /// checkpointer), so request handlers and the journal get the CPU
    /// first; 0 leaves them at the server's priority (docs/operations.md).
    #[arg(long, env = "OPM_BACKGROUND_NICE", default_value_t = 10)]
    pub background_nice: i32,
    /// Milliseconds between journal checkpoints. Each one flushes the
    /// stores (ending the analytics batch being filled) unless the batch
    /// is large and the last flush less than a second old (docs/ingest.md
    /// §4). Longer: a longer journal replay after a crash.
    #[arg(long, env = "OPM_CHECKPOINT_MS", default_value_t = 200)]
    pub checkpoint_ms: u64,
}

impl IngestConfig {
    pub fn new() -> IngestConfig {
        IngestConfig {
            durability: Durability::Fsync,
            queue_capacity: 50_000,
            workers: None,
            export_events: false,
            registration: RegistrationPolicy::Open,
            admin_token: None,
            mqtt_url: None,
            mqtt_topic: "openmohaa/events/+".into(),
            mqtt_client_id: "opm-stats-ingest".into(),
            background_nice: 0,
            checkpoint_ms: 200,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig::new()
    }
}

/// Why a batch was not accepted.
#[derive(Debug, Error)]
pub enum SubmitError {
    #[error("ingest queue is full")]
    Overloaded,
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// How to wait for queue room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Refuse at once above the shedding threshold (HTTP).
    Shed,
    /// Wait for room (MQTT, replay, import).
    Wait,
}

type KindCounts = Vec<(opm_model::EventKind, u64)>;
type DurableReply = tokio::sync::oneshot::Receiver<Result<Appended, JournalError>>;

/// A batch queued for the journal.
pub struct Pending {
    inner: Option<(DurableReply, usize, KindCounts)>,
    delivery: Option<Str>,
    ingest: Ingest,
}

impl Pending {
    /// Resolves once the batch is durable (or failed).
    pub async fn wait(self) -> Result<Option<Appended>, SubmitError> {
        let Some((rx, n, counts)) = self.inner else {
            return Ok(None);
        };
        match rx.await.unwrap_or(Err(JournalError::Closed)) {
            Ok(appended) => {
                record_ingested(&counts);
                if let Some(tag) = self.delivery {
                    self.ingest.inner.deliveries.remember(tag);
                }
                Ok(Some(appended))
            }
            Err(e) => {
                self.ingest.journal_failed(n);
                Err(e.into())
            }
        }
    }
}

/// The outcome of decoding one body.
pub struct DecodedBatch {
    pub events: Vec<Event>,
    pub errors: Vec<(usize, EventError)>,
    /// The body itself, for the journal to keep instead of the events; None
    /// when it may carry a credential (see [`WireBody::keepable`]).
    pub wire: Option<WireBody>,
}

/// The ingest core shared by every transport.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

struct Inner {
    servers: Servers,
    journal: JournalHandle,
    pipeline: Arc<Pipeline>,
    admission: Arc<Admission>,
    deliveries: delivery::RecentDeliveries,
    config: IngestConfig,
}

impl Ingest {
    /// Opens the embedded stores under `data_dir`, replays the journal past
    /// its checkpoint and starts the pipeline.
    /// `directory` defaults to the embedded `servers.json`; the embedded
    /// event log is always the first sink.
    pub fn open(
        data_dir: &Path,
        config: IngestConfig,
        directory: Option<Arc<dyn ServerDirectory>>,
        mut sinks: Vec<Arc<dyn EventSink>>,
        plugins: Option<Arc<dyn PluginStage>>,
    ) -> anyhow::Result<Ingest> {
        std::fs::create_dir_all(data_dir)?;
        let directory: Arc<dyn ServerDirectory> = match directory {
            Some(d) => d,
            None => Arc::new(FileDirectory::open(data_dir.join("servers.json"))?),
        };
        let servers = Servers::new(directory, config.registration, config.admin_token.clone());
        if config.export_events {
            let event_log = Arc::new(EventLog::open(data_dir.join("events"))?);
            sinks.insert(0, event_log);
        }

        let (journal, recovery) = Journal::open(JournalConfig::new(
            data_dir.join("journal"),
            config.durability,
        ))?;
        let admission = Arc::new(Admission::new(config.queue_capacity));
        let mut pconfig = PipelineConfig::default();
        if let Some(w) = config.workers {
            pconfig.workers = w.max(1);
        }
        pconfig.checkpoint_interval = Duration::from_millis(config.checkpoint_ms.max(10));
        let interval = pconfig.checkpoint_interval;
        let snapshot_path = data_dir.join("journal").join("trackers.json");
        let restored = pipeline::load_snapshots(&snapshot_path)?;
        let pipeline = Arc::new(Pipeline::start(
            pconfig,
            recovery.checkpoint,
            admission.clone(),
            sinks,
            plugins,
            restored,
            Some(snapshot_path),
        ));
        let replayed: usize = recovery.replay.iter().map(|r| r.events.len()).sum();
        if replayed > 0 {
            tracing::info!(
                events = replayed,
                checkpoint = recovery.checkpoint,
                "replaying journal past the checkpoint"
            );
        }
        // The writer starts before the replay so the checkpointer can run
        // (and free queue room) while a long replay is fed in; nothing is
        // appended before `open` returns, so replayed records stay first.
        let p = pipeline.clone();
        let journal = journal.start(Box::new(move |record| p.dispatch(record)));
        pipeline.spawn_checkpointer(journal.clone(), interval);
        let deliveries = delivery::RecentDeliveries::new(delivery::CAPACITY, recovery.deliveries);
        for record in recovery.replay {
            admission.reserve_blocking(record.events.len());
            pipeline.dispatch(record);
        }
        Ok(Ingest {
            inner: Arc::new(Inner {
                servers,
                journal,
                pipeline,
                admission,
                deliveries,
                config,
            }),
        })
    }

    pub fn servers(&self) -> &Servers {
        &self.inner.servers
    }

    pub fn config(&self) -> &IngestConfig {
        &self.inner.config
    }

    pub fn admission(&self) -> &Admission {
        &self.inner.admission
    }

    /// Decodes a body for an authenticated server.
    pub fn decode(&self, server_id: &str, body: &Bytes) -> Result<DecodedBatch, BodyError> {
        self.decode_as(server_id, body, None)
    }

    /// Decodes a body whose Content-Type said how it is framed. The body is
    /// sniffed as upstream does (a leading `[` is one JSON array, otherwise
    /// lines); a line-based type (NDJSON, URL-encoded) makes every line an
    /// item on its own even when the first one starts with `[`.
    pub fn decode_as(
        &self,
        server_id: &str,
        body: &Bytes,
        content_type: Option<&str>,
    ) -> Result<DecodedBatch, BodyError> {
        let wire = WireBody {
            bytes: body.clone(),
            received_ms: now_ms(),
            line_based: content_type.is_some_and(is_line_based),
        };
        let decoded = wire.decode(server_id)?;
        if !decoded.errors.is_empty() {
            metrics()
                .rejected
                .with_label_values(&["invalid_event"])
                .inc_by(decoded.errors.len() as u64);
        }
        Ok(DecodedBatch {
            events: decoded.events,
            errors: decoded.errors,
            wire: wire.keepable().then_some(wire),
        })
    }

    /// Journals a batch of one server and hands it to the pipeline.
    /// Resolves when the batch is durable: then it may be acknowledged.
    pub async fn submit(
        &self,
        server_id: &str,
        batch: DecodedBatch,
        admit: Admit,
    ) -> Result<Option<Appended>, SubmitError> {
        self.enqueue(server_id, batch.events, batch.wire, admit, None)
            .await?
            .wait()
            .await
    }

    /// True when a batch with this delivery tag is already journaled.
    pub fn delivered(&self, tag: &str) -> bool {
        self.inner.deliveries.contains(tag)
    }

    /// Reserves queue room and queues the batch for the journal. Batches
    /// enqueued one after another are journaled (and processed) in that
    /// order; [`Pending::wait`] resolves once the batch is durable.
    /// `delivery` tags the batch with its transport delivery (see
    /// [`delivery`]).
    pub async fn enqueue(
        &self,
        server_id: &str,
        events: Vec<Event>,
        wire: Option<WireBody>,
        admit: Admit,
        delivery: Option<Str>,
    ) -> Result<Pending, SubmitError> {
        if events.is_empty() {
            return Ok(Pending {
                inner: None,
                delivery: None,
                ingest: self.clone(),
            });
        }
        let n = events.len();
        match admit {
            Admit::Shed => {
                if !self.inner.admission.try_reserve(n) {
                    metrics().load_shed.inc_by(n as u64);
                    metrics()
                        .rejected
                        .with_label_values(&["load_shed"])
                        .inc_by(n as u64);
                    return Err(SubmitError::Overloaded);
                }
            }
            Admit::Wait => self.inner.admission.reserve(n).await,
        }
        let counts = kind_counts(&events);
        match self
            .inner
            .journal
            .send(Str::from(server_id), events, wire, delivery.clone())
        {
            Ok(rx) => Ok(Pending {
                inner: Some((rx, n, counts)),
                delivery,
                ingest: self.clone(),
            }),
            Err(e) => {
                self.journal_failed(n);
                Err(e.into())
            }
        }
    }

    fn journal_failed(&self, n: usize) {
        self.inner.admission.release(n);
        metrics()
            .rejected
            .with_label_values(&["journal"])
            .inc_by(n as u64);
    }

    /// Blocking variant of [`Ingest::submit`] with [`Admit::Wait`].
    pub fn submit_blocking(
        &self,
        server_id: &str,
        batch: DecodedBatch,
    ) -> Result<Option<Appended>, SubmitError> {
        let events = batch.events;
        if events.is_empty() {
            return Ok(None);
        }
        let n = events.len();
        self.inner.admission.reserve_blocking(n);
        let counts = kind_counts(&events);
        match self
            .inner
            .journal
            .append_blocking(Str::from(server_id), events, batch.wire)
        {
            Ok(a) => {
                record_ingested(&counts);
                Ok(Some(a))
            }
            Err(e) => {
                self.inner.admission.release(n);
                Err(e.into())
            }
        }
    }

    /// Ready: the journal takes writes and every store is ready.
    pub fn ready(&self) -> bool {
        self.inner.journal.healthy() && self.inner.pipeline.ready()
    }

    /// Every sequence up to this one went through every stage (it may not
    /// be durable in the stores yet: that is the checkpoint).
    pub fn processed(&self) -> u64 {
        self.inner.pipeline.progress().done()
    }

    /// The persisted checkpoint (sequence).
    pub fn checkpoint(&self) -> u64 {
        self.inner.journal.checkpoint()
    }

    /// Waits until everything accepted so far is through the pipeline and
    /// checkpointed, or the timeout passes; returns whether it drained.
    pub fn drain(&self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            // An empty queue means every admitted event went through every
            // stage (a worker gives the room back after the stores took the
            // events), so a checkpoint taken after seeing it covers them.
            let idle = self.inner.admission.depth() == 0;
            match self.inner.pipeline.checkpoint(&self.inner.journal) {
                Ok(_) if idle => return true,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "checkpoint failed"),
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the checkpointer (after a final [`Ingest::drain`]).
    pub fn stop(&self) {
        self.inner.pipeline.stop();
    }
}

fn is_line_based(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/x-ndjson"
            | "application/ndjson"
            | "application/jsonl"
            | "application/x-jsonlines"
            | "application/json-seq"
            | "application/x-www-form-urlencoded"
    )
}

/// Decodes every line on its own, numbering items across the lines.
fn decode_lines(body: &[u8], ctx: &DecodeContext) -> Result<opm_model::wire::Decoded, BodyError> {
    let mut out = opm_model::wire::Decoded::default();
    let mut index = 0;
    let mut any = false;
    for line in body.split(|b| *b == b'\n') {
        match decode_body(line, ctx) {
            Ok(d) => {
                any = true;
                let items = d.events.len() + d.errors.len();
                out.events.extend(d.events);
                out.errors
                    .extend(d.errors.into_iter().map(|(i, e)| (index + i, e)));
                index += items;
            }
            Err(BodyError::Empty) => {}
            Err(e) => {
                any = true;
                out.errors
                    .push((index, EventError::InvalidJson(e.to_string())));
                index += 1;
            }
        }
    }
    if !any {
        return Err(BodyError::Empty);
    }
    Ok(out)
}

/// A request body as the client sent it, with what decoding it depends on.
/// The journal keeps this rather than the decoded events: the bytes are
/// already there, half the size of the encoded events (which carry each
/// event's original text as well), and need no encoding on the journal's
/// thread. A replay decodes them again, with the same result.
#[derive(Debug, Clone, PartialEq)]
pub struct WireBody {
    pub bytes: Bytes,
    pub received_ms: i64,
    /// Framed by lines whatever the first byte (see [`Ingest::decode_as`]).
    pub line_based: bool,
}

impl WireBody {
    /// Decodes the body for `server_id`: the events with their original
    /// text scrubbed of credentials, and the rejected items.
    pub fn decode(&self, server_id: &str) -> Result<opm_model::wire::Decoded, BodyError> {
        let ctx = DecodeContext {
            server_id: Str::from(server_id),
            received_ms: self.received_ms,
        };
        let mut decoded = if self.line_based {
            decode_lines(&self.bytes, &ctx)?
        } else {
            decode_body(&self.bytes, &ctx)?
        };
        for ev in &mut decoded.events {
            scrub_raw(ev);
        }
        Ok(decoded)
    }

    /// Whether the body may be written to disk as it is: not when it may
    /// carry a credential, in an event or in an item that was rejected.
    pub fn keepable(&self) -> bool {
        memchr::memmem::find(&self.bytes, SECRET_MARK.as_bytes()).is_none()
    }
}

/// Fields that carry credentials in legacy bodies; never stored.
const SECRET_FIELDS: &[&str] = &["server_token", "token", "auth_token"];

/// Text every secret field's name contains: where it is absent, no
/// credential can be.
const SECRET_MARK: &str = "token";

/// Removes credentials from the original text kept for storage: legacy
/// URL-encoded lines carried the server token in the body.
fn scrub_raw(ev: &mut Event) {
    let Some(raw) = &ev.raw else { return };
    if !raw.contains(SECRET_MARK) {
        return;
    }
    let text = raw.trim();
    let scrubbed = if text.starts_with('{') {
        match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text) {
            Ok(mut obj) => {
                for f in SECRET_FIELDS {
                    obj.remove(*f);
                }
                serde_json::to_string(&obj).unwrap_or_default()
            }
            Err(_) => return,
        }
    } else {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(text.as_bytes()) {
            if !SECRET_FIELDS.contains(&&*k) {
                out.append_pair(&k, &v);
            }
        }
        out.finish()
    };
    ev.raw = Some(Str::from(scrubbed.as_str()));
}

fn kind_counts(events: &[Event]) -> Vec<(opm_model::EventKind, u64)> {
    let mut v = Vec::new();
    pipeline::count_by_kind(events, |k, n| v.push((k, n)));
    v
}

fn record_ingested(counts: &[(opm_model::EventKind, u64)]) {
    let m = metrics();
    for (k, n) in counts {
        m.ingested.inc_by(*k, *n);
    }
}

/// Wall-clock ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scrubbing and the journal's keepable check look for the mark alone.
    #[test]
    fn every_secret_field_contains_the_mark() {
        assert!(SECRET_FIELDS.iter().all(|f| f.contains(SECRET_MARK)));
    }
}
