//! The write-ahead journal: nothing is acknowledged before it is here.
//!
//! Accepted batches are appended to segment files under
//! `<data-dir>/journal` as records framed `[len u32][crc32 u32][payload]`
//! (little endian, CRC over the payload). A payload is the request body as
//! the client sent it, with the header to decode it again (see
//! [`encode_wire_record`]); or, for a batch without one (imports, bodies
//! that may carry a credential), the events as a MessagePack map (JSON in
//! segments written before 2026-12-05). One writer thread owns the
//! active segment and group-commits: it drains every append waiting, writes
//! them in one `write`, fsyncs once (`--durability fsync`), and only then
//! assigns the batches to the pipeline and answers the callers. Event ids
//! are assigned here, from a monotonic sequence stored in the records, so a
//! replay gives every event the id it had the first time and the stores can
//! drop what they already have.
//!
//! Segments are zero-filled before they are written ([`spare`]), so an
//! fsync has no file size to commit; an all-zero record header ends a
//! segment's records.
//!
//! The checkpoint (`<data-dir>/journal/checkpoint`) is the sequence up to
//! which every pipeline stage has committed; on start the records past it
//! are replayed, and segments wholly at or below it are deleted.

mod spare;

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use opm_model::{Event, Str};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::WireBody;
use crate::metrics::metrics;
use spare::Spares;

/// Event ids are journal sequences shifted left by this many bits. The
/// gap between two host ids leaves room for the tracker's synthetic events
/// (see `opm_model::tracker`), which take ids derived from the event that
/// caused them and so sort where they happened.
pub const ID_SHIFT: u32 = opm_model::tracker::SYNTHETIC_ID_BITS;

/// The host event id of a journal sequence number.
pub fn event_id(seq: u64) -> u64 {
    seq << ID_SHIFT
}

/// Gives a record's events the ids of its sequences, from `first_seq` on.
fn assign_ids(events: &mut [Event], first_seq: u64) {
    for (i, e) in events.iter_mut().enumerate() {
        e.id = event_id(first_seq + i as u64);
    }
}

/// The journal sequence of a host event id (synthetic ids map to the
/// sequence of the event that caused them, or the one before it).
pub fn sequence_of(id: u64) -> u64 {
    id >> ID_SHIFT
}

/// When an acknowledgement may be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Durability {
    /// After the batch is fsynced (group commit). Survives power loss.
    #[default]
    Fsync,
    /// After the write; fsync every 100 ms. Survives a process crash.
    Batch,
    /// After the write; never fsync. Survives a process crash only.
    None,
}

#[derive(Debug, Error)]
pub enum JournalError {
    #[error("journal I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("journal record {offset} in {segment}: {reason}")]
    Corrupt {
        segment: String,
        offset: u64,
        reason: String,
    },
    #[error("journal is stopped after a write failure")]
    Failed,
    #[error("journal writer has shut down")]
    Closed,
    #[error("journal {0} is in use by another process (a server or an import)")]
    Locked(String),
}

/// One journaled batch: consecutive sequences, one server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub first_seq: u64,
    pub last_seq: u64,
    pub server: Str,
    pub events: Vec<Event>,
    /// Identifies the transport delivery this batch came in (an MQTT
    /// message digest), so a redelivery of an already journaled message is
    /// recognised, also after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Str>,
}

/// What an append returns once the batch is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub first_id: u64,
    pub last_id: u64,
}

#[derive(Debug, Clone)]
pub struct JournalConfig {
    pub dir: PathBuf,
    pub durability: Durability,
    /// A segment is closed and a new one started past this size; segments
    /// are zero-filled to it ahead of time.
    pub segment_bytes: u64,
}

impl JournalConfig {
    pub fn new(dir: impl Into<PathBuf>, durability: Durability) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            durability,
            // Small enough that filling the next one ahead of time costs
            // little (a server that is started and stopped at once fills
            // one), big enough that rolls (two fsyncs and a rename) stay
            // rare: under a second apart only above 60 000 events/s.
            segment_bytes: 16 << 20,
        }
    }
}

/// What was found on open.
pub struct Recovery {
    /// The persisted checkpoint sequence.
    pub checkpoint: u64,
    /// Records past the checkpoint, in order: replay them before new input.
    pub replay: Vec<Record>,
    /// Bytes of a torn tail, cleared.
    pub truncated_bytes: u64,
    /// Deliveries of every record still in the journal, oldest first.
    pub deliveries: Vec<Str>,
}

/// Receives every durable record, in sequence order, on the writer thread.
pub type Dispatch = Box<dyn FnMut(Record) + Send>;

struct AppendRequest {
    server: Str,
    events: Vec<Event>,
    /// The body the events were decoded from, journaled in their place.
    wire: Option<WireBody>,
    delivery: Option<Str>,
    reply: tokio::sync::oneshot::Sender<Result<Appended, JournalError>>,
}

struct Shared {
    dir: PathBuf,
    /// (first sequence, path) of every segment, oldest first; the last is
    /// the active one.
    segments: Mutex<Vec<(u64, PathBuf)>>,
    checkpoint: AtomicU64,
    failed: AtomicBool,
    checkpoint_lock: Mutex<()>,
    /// Held for the life of the journal: one process per data directory.
    _lock: File,
}

/// The open journal, before its writer starts.
pub struct Journal {
    config: JournalConfig,
    shared: Arc<Shared>,
    active: File,
    /// Bytes of records in the active segment: where the next write goes.
    active_len: u64,
    /// The active segment was zero-filled ahead of its records.
    active_filled: bool,
    spares: Spares,
    next_seq: u64,
}

/// A handle to the running journal writer.
#[derive(Clone)]
pub struct JournalHandle {
    tx: Sender<AppendRequest>,
    shared: Arc<Shared>,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.seg")
}

fn list_segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("seg") {
            continue;
        }
        if let Some(seq) = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

fn read_checkpoint(dir: &Path) -> Result<u64, JournalError> {
    match std::fs::read_to_string(dir.join("checkpoint")) {
        Ok(s) => s.trim().parse().map_err(|e| JournalError::Corrupt {
            segment: "checkpoint".into(),
            offset: 0,
            reason: format!("{e}"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Encodes one record, framed, onto `buf`.
///
/// The payload is MessagePack with named fields (self-describing, so the
/// fields an event skips when empty decode as their defaults). It was
/// JSON until 2026-12-05; JSON escaped every event's original object, a
/// string full of quotes, and that escaping was most of the journal
/// thread's time (docs/ingest.md §3).
pub fn encode_record(record: &Record, buf: &mut Vec<u8>) {
    frame(buf, |buf| {
        rmp_serde::encode::write_named(buf, record).expect("events serialise")
    });
}

/// First byte of a wire record's payload; a MessagePack map starts with
/// 0x80-0x8f, 0xde or 0xdf, and JSON with `{`.
const WIRE_RECORD: u8 = 0x01;

/// What a wire record says besides its body.
#[derive(Debug, Serialize, Deserialize)]
struct WireHeader {
    first_seq: u64,
    last_seq: u64,
    server: Str,
    #[serde(default)]
    delivery: Option<Str>,
    received_ms: i64,
    line_based: bool,
}

/// Encodes one record as the body its events were decoded from, framed,
/// onto `buf`: `[0x01][header length u32][header, MessagePack][body]`.
/// Nothing is encoded per event; the body is copied as it came.
pub fn encode_wire_record(record: &Record, wire: &WireBody, buf: &mut Vec<u8>) {
    let header = WireHeader {
        first_seq: record.first_seq,
        last_seq: record.last_seq,
        server: record.server.clone(),
        delivery: record.delivery.clone(),
        received_ms: wire.received_ms,
        line_based: wire.line_based,
    };
    frame(buf, |buf| {
        buf.push(WIRE_RECORD);
        let at = buf.len();
        buf.extend_from_slice(&[0u8; 4]);
        rmp_serde::encode::write_named(buf, &header).expect("header serialises");
        let header_len = (buf.len() - at - 4) as u32;
        buf[at..at + 4].copy_from_slice(&header_len.to_le_bytes());
        buf.extend_from_slice(&wire.bytes);
    });
}

/// Writes `[len][crc]` around what `payload` appends to `buf`.
fn frame(buf: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 8]);
    payload(buf);
    let payload_len = (buf.len() - start - 8) as u32;
    let crc = crc32fast::hash(&buf[start + 8..]);
    buf[start..start + 4].copy_from_slice(&payload_len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A record as read back from a segment. A wire record's body is decoded
/// only by [`Stored::into_record`]: records at or below the checkpoint are
/// read for their sequences and delivery tags alone.
#[derive(Debug)]
pub struct Stored {
    pub first_seq: u64,
    pub last_seq: u64,
    pub delivery: Option<Str>,
    content: Content,
}

#[derive(Debug)]
enum Content {
    Events(Record),
    Wire { server: Str, body: WireBody },
}

impl Stored {
    /// The record, its events decoded from the body if it was journaled
    /// as one. Decoding is deterministic: the same events, with the ids
    /// they had when they were acknowledged.
    pub fn into_record(self) -> Record {
        let (server, body) = match self.content {
            Content::Events(record) => return record,
            Content::Wire { server, body } => (server, body),
        };
        let journaled = (self.last_seq - self.first_seq + 1) as usize;
        let mut events = match body.decode(&server) {
            Ok(decoded) => decoded.events,
            Err(e) => {
                tracing::error!(first_seq = self.first_seq, error = %e, "journaled body no longer decodes");
                Vec::new()
            }
        };
        if events.len() != journaled {
            // Only a decoder changed between the crash and this start can
            // do this; ids must stay inside the record's sequences.
            tracing::error!(
                first_seq = self.first_seq,
                journaled,
                decoded = events.len(),
                "journaled body decodes to a different number of events"
            );
            events.truncate(journaled);
        }
        assign_ids(&mut events, self.first_seq);
        Record {
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            server,
            events,
            delivery: self.delivery,
        }
    }
}

/// A record's payload: a wire record (0x01), a MessagePack map, or a JSON
/// object (`{`) in segments an older version wrote, which a MessagePack
/// map never starts with (0x80-0x8f, 0xde, 0xdf).
fn decode_payload(payload: &[u8]) -> Result<Stored, String> {
    let record: Record = match payload.first() {
        Some(&WIRE_RECORD) => return decode_wire(&payload[1..]),
        Some(b'{') => serde_json::from_slice(payload).map_err(|e| e.to_string())?,
        _ => rmp_serde::from_slice(payload).map_err(|e| e.to_string())?,
    };
    Ok(Stored {
        first_seq: record.first_seq,
        last_seq: record.last_seq,
        delivery: record.delivery.clone(),
        content: Content::Events(record),
    })
}

fn decode_wire(rest: &[u8]) -> Result<Stored, String> {
    let (len, rest) = rest
        .split_first_chunk::<4>()
        .ok_or("wire record without a header")?;
    let len = u32::from_le_bytes(*len) as usize;
    let (header, body) = rest
        .split_at_checked(len)
        .ok_or("wire record header past its end")?;
    let header: WireHeader = rmp_serde::from_slice(header).map_err(|e| e.to_string())?;
    if header.last_seq < header.first_seq {
        return Err("wire record with no sequences".into());
    }
    Ok(Stored {
        first_seq: header.first_seq,
        last_seq: header.last_seq,
        delivery: header.delivery,
        content: Content::Wire {
            server: header.server,
            body: WireBody {
                bytes: bytes::Bytes::copy_from_slice(body),
                received_ms: header.received_ms,
                line_based: header.line_based,
            },
        },
    })
}

/// Decodes the records of a segment's bytes. Returns the records and the
/// length of the valid prefix; the error says why decoding stopped early.
/// An all-zero header is where a zero-filled segment's records end (no
/// record has an empty payload), so it stops decoding without an error;
/// [`torn_tail`] checks what follows it.
pub fn decode_segment(bytes: &[u8]) -> (Vec<Stored>, usize, Option<String>) {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        if bytes[pos..bytes.len().min(pos + 8)].iter().all(|b| *b == 0) {
            break;
        }
        if bytes.len() - pos < 8 {
            return (records, pos, Some("torn record header".into()));
        }
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap());
        let Some(payload) = bytes.get(pos + 8..pos + 8 + len) else {
            return (records, pos, Some("torn record".into()));
        };
        if crc32fast::hash(payload) != crc {
            return (records, pos, Some("checksum mismatch".into()));
        }
        match decode_payload(payload) {
            Ok(r) => records.push(r),
            Err(e) => return (records, pos, Some(format!("undecodable record: {e}"))),
        }
        pos += 8 + len;
    }
    (records, pos, None)
}

/// Creates an empty segment that is not zero-filled: the writer appends
/// to it until a spare replaces it or it rolls.
fn plain_segment(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
}

/// Length of what follows a segment's valid prefix up to its last
/// non-zero byte: the torn part of a write that never completed (zeros
/// after it are the segment's unwritten fill).
fn torn_tail(bytes: &[u8], valid: usize) -> usize {
    bytes[valid..]
        .iter()
        .rposition(|b| *b != 0)
        .map_or(0, |last| last + 1)
}

impl Journal {
    /// Opens (or creates) the journal, clears a torn tail, and collects
    /// the records past the checkpoint.
    pub fn open(config: JournalConfig) -> Result<(Journal, Recovery), JournalError> {
        std::fs::create_dir_all(&config.dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(config.dir.join("LOCK"))?;
        lock.try_lock()
            .map_err(|_| JournalError::Locked(config.dir.display().to_string()))?;
        let checkpoint = read_checkpoint(&config.dir)?;
        let mut segments = list_segments(&config.dir)?;
        let mut replay = Vec::new();
        let mut last_seq = checkpoint;
        let mut truncated_bytes = 0;
        let mut deliveries = Vec::new();
        // Records in the last segment, and whether zeros follow them.
        let mut active_state = (0, false);
        let count = segments.len();
        for (i, (_, path)) in segments.iter().enumerate() {
            let mut bytes = Vec::new();
            File::open(path)?.read_to_end(&mut bytes)?;
            let (records, valid, err) = decode_segment(&bytes);
            let torn = torn_tail(&bytes, valid);
            if torn > 0 {
                let reason = err.unwrap_or_else(|| "data after the end of the records".into());
                if i + 1 == count {
                    // A crash mid-write leaves a torn tail on the active
                    // segment; nothing in it was acknowledged. Zeroing it
                    // keeps the segment's fill, and no stale bytes are left
                    // for later records to end next to.
                    tracing::warn!(segment = %path.display(), valid, reason, "clearing torn journal tail");
                    let f = OpenOptions::new().write(true).open(path)?;
                    f.write_all_at(&vec![0u8; torn], valid as u64)?;
                    f.sync_data()?;
                    truncated_bytes = torn as u64;
                } else {
                    return Err(JournalError::Corrupt {
                        segment: path.display().to_string(),
                        offset: valid as u64,
                        reason,
                    });
                }
            }
            if i + 1 == count {
                active_state = (valid as u64, bytes.len() as u64 > valid as u64);
            }
            for r in records {
                last_seq = last_seq.max(r.last_seq);
                deliveries.extend(r.delivery.clone());
                if r.last_seq > checkpoint {
                    replay.push(r.into_record());
                }
            }
        }
        let next_seq = last_seq + 1;
        let (active, (active_len, active_filled)) = match segments.last() {
            Some((_, path)) => (OpenOptions::new().write(true).open(path)?, active_state),
            None => {
                // Empty: the first write swaps in a zero-filled spare
                // once one is ready.
                let path = config.dir.join(segment_name(next_seq));
                let f = plain_segment(&path)?;
                File::open(&config.dir)?.sync_all()?;
                segments.push((next_seq, path));
                (f, (0, false))
            }
        };
        let spares = Spares::start(&config.dir, config.segment_bytes)?;
        metrics().checkpoint.set(checkpoint as i64);
        let shared = Arc::new(Shared {
            dir: config.dir.clone(),
            segments: Mutex::new(segments),
            checkpoint: AtomicU64::new(checkpoint),
            failed: AtomicBool::new(false),
            checkpoint_lock: Mutex::new(()),
            _lock: lock,
        });
        Ok((
            Journal {
                config,
                shared,
                active,
                active_len,
                active_filled,
                spares,
                next_seq,
            },
            Recovery {
                checkpoint,
                replay,
                truncated_bytes,
                deliveries,
            },
        ))
    }

    /// The sequence the next appended event gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Starts the writer thread. `dispatch` sees every durable record, in
    /// order, before its caller is answered.
    pub fn start(self, dispatch: Dispatch) -> JournalHandle {
        let (tx, rx) = crossbeam_channel::bounded(16_384);
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("opm-journal".into())
            .spawn(move || {
                opm_model::sched::enter_foreground();
                self.run(rx, dispatch)
            })
            .expect("spawn journal writer");
        JournalHandle { tx, shared }
    }

    fn run(mut self, rx: Receiver<AppendRequest>, mut dispatch: Dispatch) {
        let mut buf = Vec::with_capacity(1 << 20);
        let mut pending: Vec<(
            Record,
            tokio::sync::oneshot::Sender<Result<Appended, JournalError>>,
        )> = Vec::new();
        let mut dirty = false;
        let mut last_sync = Instant::now();
        let tick = Duration::from_millis(20);
        loop {
            let first = match rx.recv_timeout(tick) {
                Ok(req) => req,
                Err(RecvTimeoutError::Timeout) => {
                    if dirty && self.config.durability == Durability::Batch {
                        let _ = self.sync();
                        dirty = false;
                        last_sync = Instant::now();
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            buf.clear();
            let mut next = Some(first);
            // Group commit: everything waiting goes into one write and one
            // fsync, bounded so a flood cannot delay the first caller.
            while let Some(req) = next.take() {
                let count = req.events.len() as u64;
                let first_seq = self.next_seq;
                let mut events = req.events;
                assign_ids(&mut events, first_seq);
                let record = Record {
                    first_seq,
                    last_seq: first_seq + count - 1,
                    server: req.server,
                    events,
                    delivery: req.delivery,
                };
                self.next_seq += count;
                match &req.wire {
                    Some(wire) => encode_wire_record(&record, wire, &mut buf),
                    None => encode_record(&record, &mut buf),
                }
                pending.push((record, req.reply));
                if buf.len() < 8 << 20 {
                    next = rx.try_recv().ok();
                }
            }
            let started = Instant::now();
            let result = self
                .write(&buf)
                .and_then(|()| match self.config.durability {
                    Durability::Fsync => self.sync(),
                    Durability::Batch => {
                        dirty = true;
                        if last_sync.elapsed() >= Duration::from_millis(100) {
                            last_sync = Instant::now();
                            dirty = false;
                            self.sync()
                        } else {
                            Ok(())
                        }
                    }
                    Durability::None => Ok(()),
                });
            let m = metrics();
            m.fsync_seconds.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    m.journal_bytes.inc_by(buf.len() as u64);
                    for (record, reply) in pending.drain(..) {
                        let appended = Appended {
                            first_id: event_id(record.first_seq),
                            last_id: event_id(record.last_seq),
                        };
                        dispatch(record);
                        let _ = reply.send(Ok(appended));
                    }
                    if self.active_len >= self.config.segment_bytes
                        && let Err(e) = self.roll()
                    {
                        tracing::error!(error = %e, "journal segment roll failed");
                        self.shared.failed.store(true, Ordering::SeqCst);
                    }
                }
                Err(e) => {
                    // The file may now hold a partial write: stop taking
                    // appends; the next start cuts the torn tail.
                    tracing::error!(error = %e, "journal write failed; refusing further appends");
                    self.shared.failed.store(true, Ordering::SeqCst);
                    for (_, reply) in pending.drain(..) {
                        let _ = reply.send(Err(JournalError::Failed));
                    }
                }
            }
            if self.shared.failed.load(Ordering::SeqCst) {
                for req in rx.try_iter() {
                    let _ = req.reply.send(Err(JournalError::Failed));
                }
            }
        }
        if dirty {
            let _ = self.sync();
        }
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("journal failed earlier"));
        }
        if self.active_len == 0 && !self.active_filled {
            self.fill_active()?;
        }
        self.active.write_all_at(buf, self.active_len)?;
        self.active_len += buf.len() as u64;
        Ok(())
    }

    /// Replaces the empty active segment (a new journal's first, or one
    /// rolled to while no spare was ready) with a zero-filled spare, if
    /// one is ready. Either file holds no records, so a crash on the way
    /// loses nothing.
    fn fill_active(&mut self) -> std::io::Result<()> {
        let path = self.active_path();
        if let Some(f) = self.spares.take(&path)? {
            File::open(&self.config.dir)?.sync_all()?;
            self.active = f;
            self.active_filled = true;
        }
        Ok(())
    }

    fn active_path(&self) -> PathBuf {
        let segments = self.shared.segments.lock();
        segments
            .last()
            .expect("the active segment is listed")
            .1
            .clone()
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.active.sync_data()
    }

    fn roll(&mut self) -> std::io::Result<()> {
        self.active.sync_all()?;
        let path = self.config.dir.join(segment_name(self.next_seq));
        let (f, filled) = match self.spares.take(&path)? {
            Some(f) => (f, true),
            None => (plain_segment(&path)?, false),
        };
        File::open(&self.config.dir)?.sync_all()?;
        self.active = f;
        self.active_len = 0;
        self.active_filled = filled;
        self.shared.segments.lock().push((self.next_seq, path));
        Ok(())
    }
}

impl JournalHandle {
    /// Appends a batch; resolves once it is durable (per the durability
    /// setting) and handed to the pipeline.
    pub async fn append(&self, server: Str, events: Vec<Event>) -> Result<Appended, JournalError> {
        self.send(server, events, None, None)?
            .await
            .map_err(|_| JournalError::Closed)?
    }

    /// Queues a batch for the writer now, so batches keep the order of
    /// these calls; the receiver resolves once the batch is durable. Blocks
    /// only if the writer is thousands of batches behind. With `wire`, the
    /// body is journaled in place of the events it decodes to.
    pub fn send(
        &self,
        server: Str,
        events: Vec<Event>,
        wire: Option<WireBody>,
        delivery: Option<Str>,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<Appended, JournalError>>, JournalError> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(JournalError::Failed);
        }
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.tx
            .send(AppendRequest {
                server,
                events,
                wire,
                delivery,
                reply,
            })
            .map_err(|_| JournalError::Closed)?;
        Ok(rx)
    }

    /// Blocking variant of [`JournalHandle::append`] for non-async callers.
    pub fn append_blocking(
        &self,
        server: Str,
        events: Vec<Event>,
        wire: Option<WireBody>,
    ) -> Result<Appended, JournalError> {
        self.send(server, events, wire, None)?
            .blocking_recv()
            .map_err(|_| JournalError::Closed)?
    }

    /// True until a write has failed.
    pub fn healthy(&self) -> bool {
        !self.shared.failed.load(Ordering::SeqCst)
    }

    /// The persisted checkpoint sequence.
    pub fn checkpoint(&self) -> u64 {
        self.shared.checkpoint.load(Ordering::SeqCst)
    }

    /// Persists a new checkpoint and deletes the segments it covers. The
    /// caller guarantees every stage has durably committed up to `seq`.
    pub fn set_checkpoint(&self, seq: u64) -> Result<(), JournalError> {
        let _guard = self.shared.checkpoint_lock.lock();
        if seq <= self.shared.checkpoint.load(Ordering::SeqCst) {
            return Ok(());
        }
        crate::ingest::servers::write_atomically(
            &self.shared.dir.join("checkpoint"),
            seq.to_string().as_bytes(),
        )?;
        self.shared.checkpoint.store(seq, Ordering::SeqCst);
        metrics().checkpoint.set(seq as i64);
        let mut segments = self.shared.segments.lock();
        // A segment is covered when the next one starts at or below
        // checkpoint + 1; the active (last) segment always stays.
        let mut remove = 0;
        while remove + 1 < segments.len() && segments[remove + 1].0 <= seq + 1 {
            remove += 1;
        }
        for (_, path) in segments.drain(..remove) {
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(segment = %path.display(), error = %e, "cannot delete checkpointed segment");
            }
        }
        Ok(())
    }

    /// Number of segment files (for tests and the status page).
    pub fn segment_count(&self) -> usize {
        self.shared.segments.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opm_model::EventKind;

    fn events(n: usize) -> Vec<Event> {
        (0..n)
            .map(|i| {
                let mut e = Event::new(EventKind::Jump);
                e.time_ms = i as i64;
                e
            })
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn append_replay_checkpoint_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = JournalConfig::new(dir.path(), Durability::Fsync);
        config.segment_bytes = 2_000;
        let (journal, rec) = Journal::open(config.clone()).unwrap();
        assert!(rec.replay.is_empty());
        assert!(
            matches!(Journal::open(config.clone()), Err(JournalError::Locked(_))),
            "one process per journal"
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let handle = journal.start(Box::new(move |r: Record| s2.lock().push(r.first_seq)));
        let mut ids = Vec::new();
        for _ in 0..20 {
            ids.push(handle.append(Str::from("srv"), events(5)).await.unwrap());
        }
        let tagged = handle
            .send(
                Str::from("srv"),
                events(1),
                None,
                Some(Str::from("mqtt:abc")),
            )
            .unwrap()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids[0].first_id, event_id(1));
        assert_eq!(ids[19].last_id, event_id(100));
        assert_eq!(seen.lock().len(), 21);
        assert!(handle.segment_count() > 1, "segments roll");
        handle.set_checkpoint(50).unwrap();
        let segments_after = handle.segment_count();
        drop(handle);
        std::thread::sleep(Duration::from_millis(100));

        // A torn tail on the active segment is cleared, nothing else lost.
        let last = list_segments(dir.path()).unwrap().pop().unwrap().1;
        let (_, valid, _) = decode_segment(&std::fs::read(&last).unwrap());
        let f = OpenOptions::new().write(true).open(&last).unwrap();
        f.write_all_at(&[42, 0, 0, 0, 1, 2], valid as u64).unwrap();
        drop(f);
        let (journal, rec) = Journal::open(config).unwrap();
        assert_eq!(rec.checkpoint, 50);
        assert_eq!(rec.truncated_bytes, 6);
        assert!(list_segments(dir.path()).unwrap().len() <= segments_after);
        let replayed: Vec<u64> = rec
            .replay
            .iter()
            .flat_map(|r| r.events.iter().map(|e| sequence_of(e.id)))
            .collect();
        assert_eq!(replayed, (51..=101).collect::<Vec<_>>());
        assert_eq!(sequence_of(tagged.first_id), 101);
        assert_eq!(journal.next_seq(), 102);
        // The delivery tag comes back with the journal.
        assert_eq!(rec.deliveries, vec![Str::from("mqtt:abc")]);
    }

    /// Sequences of every event a journal in `dir` replays from scratch.
    fn replayed(config: &JournalConfig) -> (Vec<u64>, u64) {
        let (_journal, rec) = Journal::open(config.clone()).unwrap();
        let seqs = rec
            .replay
            .iter()
            .flat_map(|r| r.events.iter().map(|e| sequence_of(e.id)))
            .collect();
        (seqs, rec.truncated_bytes)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn zero_filled_segments_are_written_in_place_and_end_at_their_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = JournalConfig::new(dir.path(), Durability::Fsync);
        config.segment_bytes = 4096;
        let (mut journal, _) = Journal::open(config.clone()).unwrap();
        assert!(journal.spares.wait_ready(Duration::from_secs(30)));
        let handle = journal.start(Box::new(|_| {}));
        for _ in 0..3 {
            handle.append(Str::from("srv"), events(2)).await.unwrap();
        }
        drop(handle);
        std::thread::sleep(Duration::from_millis(100));
        let segment = list_segments(dir.path()).unwrap().pop().unwrap().1;
        let bytes = std::fs::read(&segment).unwrap();
        assert_eq!(bytes.len(), 4096, "the first write took the spare");
        let (records, valid, err) = decode_segment(&bytes);
        assert_eq!((records.len(), err), (3, None));
        assert!(bytes[valid..].iter().all(|b| *b == 0));
        assert_eq!(replayed(&config), ((1..=6).collect(), 0));

        // A restart writes after the records, not after the fill.
        let (journal, _) = Journal::open(config.clone()).unwrap();
        let handle = journal.start(Box::new(|_| {}));
        handle.append(Str::from("srv"), events(1)).await.unwrap();
        drop(handle);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(std::fs::metadata(&segment).unwrap().len(), 4096);
        assert_eq!(replayed(&config), ((1..=7).collect(), 0));

        // Stray bytes inside the fill (a write torn out of order) are
        // cleared in the active segment...
        let f = OpenOptions::new().write(true).open(&segment).unwrap();
        f.write_all_at(&[7], 4000).unwrap();
        let (_, valid, _) = decode_segment(&std::fs::read(&segment).unwrap());
        let (seqs, cleared) = replayed(&config);
        assert_eq!((seqs, cleared), ((1..=7).collect(), 4001 - valid as u64));
        assert!(
            std::fs::read(&segment).unwrap()[valid..]
                .iter()
                .all(|b| *b == 0)
        );
        // ...and make any earlier segment corrupt.
        f.write_all_at(&[7], 4000).unwrap();
        File::create(dir.path().join(segment_name(8))).unwrap();
        assert!(matches!(
            Journal::open(config),
            Err(JournalError::Corrupt { offset, .. }) if offset == valid as u64
        ));
    }

    #[test]
    fn corrupt_record_is_detected() {
        let mut buf = Vec::new();
        let r = Record {
            first_seq: 1,
            last_seq: 2,
            server: Str::from("s"),
            events: events(2),
            delivery: None,
        };
        encode_record(&r, &mut buf);
        encode_record(&r, &mut buf);
        let (ok, valid, err) = decode_segment(&buf);
        assert_eq!((ok.len(), valid, err), (2, buf.len(), None));
        let n = buf.len();
        buf[n - 3] ^= 0xff;
        let (ok, _, err) = decode_segment(&buf);
        assert_eq!(ok.len(), 1);
        assert_eq!(err.as_deref(), Some("checksum mismatch"));
    }

    /// Every field of an event, skipped-when-empty ones included, survives
    /// the record encoding; and segments of the JSON era still replay.
    #[test]
    fn records_round_trip_and_json_records_still_decode() {
        let body = br#"[{"type":"player_kill","timestamp":"12.5","attacker_name":"^1Rommel","attacker_guid":"unauth_3","attacker_team":"german","attacker_x":"-120.5","attacker_y":"33","attacker_z":"0","victim_name":"Say \"hi\"","victim_guid":"1234","victim_smf_id":"1234","victim_team":"american","weapon":"Kar98","damage":"60","hitloc":"head","mod":"bullet","custom":"kept"},{"type":"chat","player_name":"Doc","message":"gg"},{"type":"something_new","x":"1"}]"#;
        let ctx = opm_model::wire::DecodeContext {
            server_id: Str::from("srv"),
            received_ms: 1_780_000_000_000,
        };
        let decoded = opm_model::wire::decode_body(body, &ctx).unwrap();
        assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
        let mut events: Vec<Event> = decoded.events;
        for (i, e) in events.iter_mut().enumerate() {
            e.id = event_id(7 + i as u64);
            e.match_id = Str::from("sess-m1");
            e.round = 2;
        }
        let record = Record {
            first_seq: 7,
            last_seq: 9,
            server: Str::from("srv"),
            events,
            delivery: Some(Str::from("mqtt:0123")),
        };
        let as_json = |r: &Record| serde_json::to_value(r).unwrap();
        let mut buf = Vec::new();
        encode_record(&record, &mut buf);
        assert_ne!(buf[8], b'{', "MessagePack, not JSON");
        // The JSON framing of the versions before.
        let json = serde_json::to_vec(&record).unwrap();
        buf.extend_from_slice(&(json.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
        buf.extend_from_slice(&json);
        let (back, valid, err) = decode_segment(&buf);
        assert_eq!((valid, err), (buf.len(), None));
        assert_eq!(back.len(), 2);
        for r in back.into_iter().map(Stored::into_record) {
            let r = &r;
            assert_eq!(as_json(r), as_json(&record));
            assert_eq!(r.events[0].raw, record.events[0].raw);
            assert!(r.events[0].raw.as_deref().unwrap().contains(r#"\"hi\""#));
        }
    }

    fn wire(body: &str, line_based: bool) -> WireBody {
        WireBody {
            bytes: bytes::Bytes::copy_from_slice(body.as_bytes()),
            received_ms: 1_780_000_000_000,
            line_based,
        }
    }

    /// The record the live path journals for a body: its events decoded,
    /// ids assigned from `first_seq`.
    fn acknowledged(wire: &WireBody, first_seq: u64, delivery: Option<&str>) -> Record {
        let mut events = wire.decode("srv").unwrap().events;
        assign_ids(&mut events, first_seq);
        Record {
            first_seq,
            last_seq: first_seq + events.len() as u64 - 1,
            server: Str::from("srv"),
            events,
            delivery: delivery.map(Str::from),
        }
    }

    /// A body journaled as it came decodes on replay to the events the
    /// live path handed on (rejected items skipped, ids as assigned), and
    /// its header keeps the delivery tag; records of both kinds share a
    /// segment.
    #[test]
    fn wire_records_replay_the_events_they_were_decoded_to() {
        let body = r#"[{"type":"player_kill","timestamp":"3.5","attacker_guid":"a","victim_guid":"b","weapon":"Kar98"},"not an object",{"type":"chat","player_name":"Doc","message":"gg"}]"#;
        let array_wire = wire(body, false);
        let record = acknowledged(&array_wire, 40, Some("mqtt:ff"));
        assert_eq!(record.events.len(), 2, "the string item is rejected");
        let lines = "type=chat&player_name=A&message=hi\ntype=jump&player_name=B";
        let line_wire = wire(lines, true);
        let line_record = acknowledged(&line_wire, 42, None);
        let plain = Record {
            first_seq: 44,
            last_seq: 45,
            server: Str::from("other"),
            events: events(2),
            delivery: None,
        };
        let mut buf = Vec::new();
        encode_wire_record(&record, &array_wire, &mut buf);
        encode_wire_record(&line_record, &line_wire, &mut buf);
        encode_record(&plain, &mut buf);
        assert_eq!(buf[8], WIRE_RECORD);
        let (stored, valid, err) = decode_segment(&buf);
        assert_eq!((valid, err), (buf.len(), None));
        assert_eq!(stored[0].delivery.as_deref(), Some("mqtt:ff"));
        assert_eq!((stored[1].first_seq, stored[1].last_seq), (42, 43));
        let back: Vec<Record> = stored.into_iter().map(Stored::into_record).collect();
        assert_eq!(back, vec![record, line_record, plain]);
    }

    /// A wire record that decodes to more events than it journaled (a
    /// decoder changed across a crash) keeps its ids inside its sequences.
    #[test]
    fn a_wire_record_never_gives_ids_outside_its_sequences() {
        let wire = wire(
            r#"[{"type":"jump"},{"type":"jump"},{"type":"jump"}]"#,
            false,
        );
        let narrow = Record {
            first_seq: 10,
            last_seq: 11,
            server: Str::from("srv"),
            events: Vec::new(),
            delivery: None,
        };
        let mut buf = Vec::new();
        encode_wire_record(&narrow, &wire, &mut buf);
        let (mut stored, _, err) = decode_segment(&buf);
        assert_eq!(err, None);
        let record = stored.remove(0).into_record();
        let seqs: Vec<u64> = record.events.iter().map(|e| sequence_of(e.id)).collect();
        assert_eq!(seqs, vec![10, 11]);
    }

    #[test]
    fn a_body_naming_a_token_is_not_kept() {
        assert!(wire(r#"[{"type":"jump"}]"#, false).keepable());
        assert!(!wire("server_token=abc&type=jump", true).keepable());
        assert!(!wire(r#"[{"type":"jump","auth_token":"x"}]"#, false).keepable());
    }
}
