//! The server runs the stages behind the queue at a lower priority than
//! the acknowledgement path (`--background-nice`, docs/ingest.md §4): read
//! back from `/proc` for the real binary's threads.
#![cfg(target_os = "linux")]

mod common;

use std::collections::BTreeMap;

use common::Server;

/// Nice value of every thread of `pid`, by thread name (the kernel keeps
/// 15 bytes of a name); threads sharing a name must agree.
fn nice_by_thread(pid: u32) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let (Ok(name), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("stat")),
        ) else {
            continue; // the thread ended meanwhile
        };
        // Fields after the parenthesised name: state is field 3, nice 19.
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        let nice: i64 = rest.split_whitespace().nth(16).unwrap().parse().unwrap();
        let name = name.trim().to_string();
        if let Some(seen) = out.insert(name.clone(), nice) {
            assert_eq!(seen, nice, "threads named {name} differ");
        }
    }
    out
}

/// Starts the real server with `--background-nice amount` and returns the
/// main thread's nice value and every thread's.
fn server_threads(amount: &str) -> (i64, BTreeMap<String, i64>) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--background-nice", amount]);
    let nice = nice_by_thread(server.pid());
    (nice["opm-stats"], nice)
}

#[test]
fn background_threads_yield_to_request_handlers() {
    let (front, nice) = server_threads("7");
    for name in ["opm-journal", "tokio-rt-worker"] {
        assert_eq!(nice[name], front, "{name}: {nice:?}");
    }
    for name in [
        "opm-worker-0",
        "analytics-write",
        "analytics-fold",
        "opm-checkpoint",
    ] {
        assert_eq!(nice[name], (front + 7).min(19), "{name}: {nice:?}");
    }
}

#[test]
fn zero_leaves_every_thread_alike() {
    let (front, nice) = server_threads("0");
    assert!(nice.values().all(|&n| n == front), "{nice:?}");
}
