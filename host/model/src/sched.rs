//! Scheduling priority of the host's background threads.
//!
//! The acknowledgement path (HTTP, decoding, the journal's group commit) is
//! latency-bound: a game server waits for its 202. The stages behind the
//! queue (pipeline workers with the plugin stage, the analytics writer, the
//! checkpointer) are throughput-bound: a few milliseconds' delay there is
//! invisible, because the queue absorbs it. On a small machine they share
//! the cores, and a request handler that wakes while a background thread
//! holds the CPU waits for that thread's time slice. Background threads
//! therefore run at a higher nice value, so the scheduler lets the
//! handlers in first; under sustained overload the queue fills and ingest
//! sheds load (429) rather than the background stages starving.
//!
//! The binary sets the value once at start ([`set_background_nice`]);
//! each background thread calls [`enter_background`] when it starts and
//! adds it to the nice value it inherited, so a server started under
//! `nice -n 5` keeps the same distance between the two.
//! Library users and tests that never set it keep every thread at the
//! priority it inherited.

use std::sync::atomic::{AtomicI32, Ordering};

/// Added to a background thread's nice value; 0 leaves them as they are.
static BACKGROUND_NICE: AtomicI32 = AtomicI32::new(0);

/// Highest nice value Linux accepts.
pub const MAX_NICE: i32 = 19;

/// Sets how much [`enter_background`] raises a thread's nice value
/// (clamped to 0..=19; raising a nice value needs no privilege). Call it
/// before the background threads start.
pub fn set_background_nice(nice: i32) {
    BACKGROUND_NICE.store(nice.clamp(0, MAX_NICE), Ordering::Relaxed);
}

/// How much background threads raise their nice value.
pub fn background_nice() -> i32 {
    BACKGROUND_NICE.load(Ordering::Relaxed)
}

/// Lowers the calling thread's priority by the background amount (at
/// most to nice 19). Call it once per thread. A failure (another OS, a
/// sandbox that forbids it) leaves the thread as it was: priority is an
/// optimisation, never a reason to stop a thread.
pub fn enter_background() {
    let add = background_nice();
    if add > 0
        && let Ok(now) = current_thread_nice()
    {
        let _ = set_current_thread_nice((now + add).min(MAX_NICE));
    }
}

/// The calling thread's nice value.
pub fn current_thread_nice() -> std::io::Result<i32> {
    imp::get()
}

/// Sets the calling thread's nice value.
pub fn set_current_thread_nice(nice: i32) -> std::io::Result<()> {
    imp::set(nice)
}

#[cfg(target_os = "linux")]
mod imp {
    // On Linux a nice value belongs to a thread (a task), not the process:
    // `setpriority(PRIO_PROCESS, tid)` changes only that thread.
    fn tid() -> libc::id_t {
        // SAFETY: gettid has no preconditions and cannot fail.
        unsafe { libc::gettid() as libc::id_t }
    }

    pub fn get() -> std::io::Result<i32> {
        // getpriority returns -1 both for nice -1 and for an error; errno
        // tells them apart.
        // SAFETY: errno is thread-local; writing it is how the man page
        // says to detect an error from getpriority.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: plain system call on our own thread id.
        let v = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid()) };
        let err = std::io::Error::last_os_error();
        if v == -1 && err.raw_os_error().unwrap_or(0) != 0 {
            return Err(err);
        }
        Ok(v)
    }

    pub fn set(nice: i32) -> std::io::Result<()> {
        // SAFETY: plain system call on our own thread id.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid(), nice) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    // Elsewhere the nice value is per process; changing it would slow the
    // acknowledgement path too, so background threads stay as they are.
    pub fn get() -> std::io::Result<i32> {
        Ok(0)
    }

    pub fn set(_: i32) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_background_thread_is_niced_and_its_siblings_are_not() {
        let before = current_thread_nice().unwrap();
        let target = (before + 7).min(MAX_NICE);
        let inside = std::thread::spawn(move || {
            set_current_thread_nice(target).unwrap();
            current_thread_nice().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(inside, target);
        // Only that thread changed.
        assert_eq!(current_thread_nice().unwrap(), before);
    }

    #[test]
    fn the_amount_is_clamped_and_added_to_the_inherited_value() {
        // One test owns the global: these cases run in sequence here.
        set_background_nice(40);
        assert_eq!(background_nice(), MAX_NICE);
        set_background_nice(-5);
        assert_eq!(background_nice(), 0);
        let run = || {
            std::thread::spawn(|| {
                let before = current_thread_nice().unwrap();
                enter_background();
                (before, current_thread_nice().unwrap())
            })
            .join()
            .unwrap()
        };
        // Zero leaves a thread alone.
        let (before, after) = run();
        assert_eq!(before, after);
        // Otherwise the amount is added to what the thread inherited.
        set_background_nice(3);
        let (before, after) = run();
        assert_eq!(after, (before + 3).min(MAX_NICE));
        set_background_nice(0);
    }
}
