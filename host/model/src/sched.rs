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
//! Nice values alone leave a woken handler waiting for the running
//! thread's time slice (1.4 ms here by default). The acknowledgement
//! path's threads (the HTTP runtime's and the journal writer) therefore
//! also ask for the shortest slice ([`enter_foreground`]): with Linux's
//! EEVDF scheduler a waking thread with a shorter slice preempts one with
//! a longer slice at once. Under `loadgen` run A this took the p99
//! acknowledgement from about 4.0 to 3.3 ms, for about 0.4 µs more CPU
//! per event at saturation (docs/ingest.md §9).
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
    // A thread inherits its creator's slice: one started from a
    // latency-bound thread goes back to the default.
    let _ = imp::set_slice(0);
    let add = background_nice();
    if add > 0
        && let Ok(now) = current_thread_nice()
    {
        let _ = set_current_thread_nice((now + add).min(MAX_NICE));
    }
}

/// Marks the calling thread as latency-bound: a short scheduler time
/// slice ([`FOREGROUND_SLICE_NS`]), so that when it wakes it may preempt a thread with
/// the default slice at once instead of waiting for that slice to end
/// (Linux 6.12 and later, EEVDF's custom slices; older kernels ignore
/// it). Call it once per thread. A failure leaves the thread as it was.
pub fn enter_foreground() {
    let _ = imp::set_slice(FOREGROUND_SLICE_NS);
}

/// Time slice of a latency-bound thread: the shortest Linux accepts.
pub const FOREGROUND_SLICE_NS: u64 = 100_000;

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

    /// `struct sched_attr` of sched_setattr(2), first version (48 bytes).
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }

    /// Keeps the thread's policy (SCHED_OTHER) and nice value and asks for
    /// a time slice of `ns` (`sched_runtime`).
    pub fn set_slice(ns: u64) -> std::io::Result<()> {
        let attr = SchedAttr {
            size: std::mem::size_of::<SchedAttr>() as u32,
            policy: libc::SCHED_OTHER as u32,
            nice: get()?,
            runtime: ns,
            ..SchedAttr::default()
        };
        // SAFETY: sched_setattr on our own thread with a valid, sized
        // struct; the kernel only reads it.
        let rc =
            unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0u32) };
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

    pub fn set_slice(_: u64) -> std::io::Result<()> {
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

    /// The calling thread's scheduler slice in ns, where the kernel shows
    /// it (`se.slice` in its sched file, Linux 6.6 and later).
    fn current_slice() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched
            .lines()
            .find(|l| l.trim_start().starts_with("se.slice"))?;
        line.split(':').nth(1)?.trim().parse().ok()
    }

    #[test]
    fn a_foreground_thread_gets_a_short_slice_that_background_threads_drop() {
        let (foreground, background, nice_kept) = std::thread::spawn(|| {
            let nice = current_thread_nice().unwrap();
            enter_foreground();
            let foreground = current_slice();
            let nice_kept = current_thread_nice().unwrap() == nice;
            // Started from a foreground thread, it inherits the slice.
            let background = std::thread::spawn(|| {
                enter_background();
                current_slice()
            })
            .join()
            .unwrap();
            (foreground, background, nice_kept)
        })
        .join()
        .unwrap();
        assert!(nice_kept, "the nice value is kept");
        let (Some(foreground), Some(background)) = (foreground, background) else {
            eprintln!("skipped: this kernel does not show scheduler slices");
            return;
        };
        // Kernels before custom slices (6.12) keep the default for both.
        if foreground != FOREGROUND_SLICE_NS {
            assert_eq!(foreground, background, "no custom slices here");
            eprintln!("skipped: this kernel has no custom slices");
            return;
        }
        assert!(background > FOREGROUND_SLICE_NS, "{background}");
    }
}
