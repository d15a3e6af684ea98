//! Zero-filled segment files, prepared off the writer thread.
//!
//! Appending to a file changes its size, so every `fdatasync` after an
//! append also commits the file system's metadata (on ext4 a jbd2
//! transaction, which first writes out every other file's newly allocated
//! data: here the analytics database's). Writing into blocks that already
//! hold data changes no metadata, and `fdatasync` only flushes the pages.
//! So the writer takes segments that were filled with zeros ahead of time,
//! and writes them from the start; an all-zero record header marks where
//! the records end (section 3 of docs/ingest.md).
//!
//! Blocks merely reserved with `fallocate` do not help: they are marked
//! unwritten, and the first write into each converts it, which is again a
//! metadata change.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

/// Name of the spare in the journal directory while it is filled; it is
/// renamed to [`SPARE`] once filled and synced. Neither ends in `.seg`, so
/// recovery never reads them.
const FILLING: &str = "spare.filling";
const SPARE: &str = "spare";

/// Zeros written per `write` while filling.
const CHUNK: usize = 1 << 20;

/// One spare segment at a time, filled by a thread of its own.
pub(super) struct Spares {
    request: Sender<()>,
    /// A filled spare, or `None` when filling one failed.
    ready: Receiver<Option<PathBuf>>,
    /// A spare was asked for and has not been taken yet.
    pending: bool,
    /// An answer of the filling thread received but not yet taken.
    held: Option<Option<PathBuf>>,
}

impl Spares {
    /// Starts the filling thread; spares are `bytes` long. The thread
    /// ends when the writer drops this.
    pub fn start(dir: &Path, bytes: u64) -> std::io::Result<Spares> {
        let (request, requests) = crossbeam_channel::bounded::<()>(1);
        let (done, ready) = crossbeam_channel::bounded(1);
        let thread_dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("opm-journal-spare".into())
            .spawn(move || {
                opm_model::sched::enter_background();
                for () in requests {
                    let filled = fill(&thread_dir, bytes)
                        .inspect_err(|e| {
                            // The writer appends to a plain file instead,
                            // and asks again at its next roll.
                            tracing::warn!(error = %e, "cannot prepare a journal segment");
                            let _ = std::fs::remove_file(thread_dir.join(FILLING));
                        })
                        .ok();
                    if done.send(filled).is_err() {
                        return;
                    }
                }
            })?;
        let mut spares = Spares {
            request,
            ready,
            pending: false,
            held: None,
        };
        spares.ask();
        Ok(spares)
    }

    /// Asks for the next spare unless one is on its way.
    fn ask(&mut self) {
        if !self.pending {
            self.pending = self.request.try_send(()).is_ok();
        }
    }

    /// Moves the spare, if one is ready, to `path` (replacing what is
    /// there) and asks for the next one. The caller syncs the directory.
    pub fn take(&mut self, path: &Path) -> std::io::Result<Option<File>> {
        let spare = match self.held.take().map_or_else(|| self.ready.try_recv(), Ok) {
            Ok(spare) => spare,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Ok(None),
        };
        self.pending = false;
        let Some(spare) = spare else {
            self.ask();
            return Ok(None);
        };
        std::fs::rename(&spare, path)?;
        self.ask();
        OpenOptions::new().write(true).open(path).map(Some)
    }

    /// Waits up to `timeout` for a spare to be ready.
    #[cfg(test)]
    pub fn wait_ready(&mut self, timeout: std::time::Duration) -> bool {
        if self.held.is_none() {
            self.held = self.ready.recv_timeout(timeout).ok();
        }
        self.held.as_ref().is_some_and(Option::is_some)
    }
}

/// Writes a zero-filled file of `bytes` and syncs it (data and size), then
/// gives it its ready name, so a spare found under that name is complete.
fn fill(dir: &Path, bytes: u64) -> std::io::Result<PathBuf> {
    let filling = dir.join(FILLING);
    let mut f = File::create(&filling)?;
    let zeros = vec![0u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        f.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    let ready = dir.join(SPARE);
    std::fs::rename(&filling, &ready)?;
    Ok(ready)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_spare_is_zeros_of_the_segment_size_and_the_next_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let mut spares = Spares::start(dir.path(), 3 * CHUNK as u64 + 5).unwrap();
        let target = dir.path().join("1.seg");
        assert!(spares.wait_ready(Duration::from_secs(30)), "no spare");
        assert!(spares.take(&target).unwrap().is_some());
        let bytes = std::fs::read(&target).unwrap();
        assert_eq!(bytes.len(), 3 * CHUNK + 5);
        assert!(bytes.iter().all(|b| *b == 0));
        // The next one follows, under the ready name.
        assert!(
            spares.wait_ready(Duration::from_secs(30)),
            "no second spare"
        );
        assert!(dir.path().join(SPARE).exists());
        assert!(spares.take(&dir.path().join("2.seg")).unwrap().is_some());
        assert!(!dir.path().join(SPARE).exists());
    }

    #[test]
    fn a_failed_fill_is_asked_for_again_at_the_next_take() {
        let dir = tempfile::tempdir().unwrap();
        // The filling file's name is taken by a directory: filling fails.
        std::fs::create_dir(dir.path().join(FILLING)).unwrap();
        let mut spares = Spares::start(dir.path(), 4096).unwrap();
        assert!(!spares.wait_ready(Duration::from_secs(30)), "no spare");
        let target = dir.path().join("1.seg");
        assert!(spares.take(&target).unwrap().is_none());
        assert!(spares.pending, "asked again");
        std::fs::remove_dir(dir.path().join(FILLING)).unwrap();
        assert!(
            spares.wait_ready(Duration::from_secs(30)),
            "the retry fills"
        );
        assert!(spares.take(&target).unwrap().is_some());
    }
}
