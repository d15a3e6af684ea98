//! The event export (`--export-events`): normalised events (and outcomes)
//! appended as JSON lines under `<data-dir>/events/`.
//!
//! A plain-text copy of exactly what the pipeline processed, for debugging
//! and for tests that check the stream field by field. Off by default: the
//! analytics store already keeps every event, and this copy has no
//! retention. Idempotent the way the analytics store is: it remembers per server the
//! highest event id it holds and writes only events above it, so a journal
//! replay after a crash never stores an event twice.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use opm_model::Event;
use opm_model::plugin::Outcome;
use parking_lot::Mutex;
use serde::Deserialize;

use crate::ingest::pipeline::{EventSink, SinkError};

pub struct EventLog {
    path: PathBuf,
    inner: Mutex<LogInner>,
}

struct LogInner {
    events: std::io::BufWriter<File>,
    outcomes: std::io::BufWriter<File>,
    high_water: HashMap<String, u64>,
}

#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: u64,
    #[serde(default)]
    server: String,
}

/// Reads the lines of a file, cutting a torn last line (a crash mid-write).
fn scan_and_repair(path: &Path, mut each: impl FnMut(&str)) -> std::io::Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut good = 0u64;
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            break;
        }
        if !line.ends_with('\n') {
            break;
        }
        good += n as u64;
        each(line.trim_end());
    }
    let len = std::fs::metadata(path)?.len();
    if len != good {
        tracing::warn!(file = %path.display(), cut = len - good, "cutting torn event-log line");
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(good)?;
        f.sync_all()?;
    }
    Ok(())
}

impl EventLog {
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<EventLog> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("events.jsonl");
        let mut high_water = HashMap::new();
        scan_and_repair(&path, |line| {
            if let Ok(e) = serde_json::from_str::<IdOnly>(line) {
                let hw = high_water.entry(e.server).or_insert(0);
                *hw = (*hw).max(e.id);
            }
        })?;
        let opath = dir.join("outcomes.jsonl");
        scan_and_repair(&opath, |_| {})?;
        let mut events = OpenOptions::new().create(true).append(true).open(&path)?;
        events.seek(SeekFrom::End(0))?;
        let outcomes = OpenOptions::new().create(true).append(true).open(&opath)?;
        Ok(EventLog {
            path,
            inner: Mutex::new(LogInner {
                events: std::io::BufWriter::with_capacity(1 << 20, events),
                outcomes: std::io::BufWriter::new(outcomes),
                high_water,
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every complete event in the log (for tests and tools); a last line
    /// still being written is left out.
    pub fn read_all(path: &Path) -> std::io::Result<Vec<Event>> {
        let text = std::fs::read_to_string(path)?;
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(std::io::Error::other))
            .collect()
    }
}

impl EventSink for EventLog {
    fn name(&self) -> &str {
        "event-log"
    }

    fn write(&self, events: &[Event], outcomes: &[Outcome]) -> Result<(), SinkError> {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let io = |e: std::io::Error| SinkError::Unavailable(e.to_string());
        for ev in events {
            // Ids rise per server, so a replayed event is at or below the
            // server's mark; events without an id are always new.
            let hw = inner.high_water.get(&*ev.server).copied().unwrap_or(0);
            if ev.id != 0 && ev.id <= hw {
                continue;
            }
            serde_json::to_writer(&mut inner.events, ev).map_err(|e| io(e.into()))?;
            inner.events.write_all(b"\n").map_err(io)?;
            if ev.id != 0 {
                match inner.high_water.get_mut(&*ev.server) {
                    Some(v) => *v = ev.id,
                    None => {
                        inner.high_water.insert(ev.server.to_string(), ev.id);
                    }
                }
            }
        }
        for o in outcomes {
            serde_json::to_writer(&mut inner.outcomes, o).map_err(|e| io(e.into()))?;
            inner.outcomes.write_all(b"\n").map_err(io)?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), SinkError> {
        let io = |e: std::io::Error| SinkError::Unavailable(e.to_string());
        let mut inner = self.inner.lock();
        inner.events.flush().map_err(io)?;
        inner.outcomes.flush().map_err(io)?;
        // fsync outside nothing: the lock keeps writes ordered with it.
        inner.events.get_ref().sync_data().map_err(io)?;
        inner.outcomes.get_ref().sync_data().map_err(io)?;
        Ok(())
    }
}
