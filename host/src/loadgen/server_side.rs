//! What the load cost the server, read from outside: CPU time from
//! `/proc/PID/stat`, memory from `/proc/PID/status`, and how long its
//! pipeline needed after the load stopped until everything acknowledged
//! was processed and checkpointed (`GET /ready`). With these, a loadgen run
//! reports the end-to-end rate, not only the acknowledged one.

use std::time::{Duration, Instant};

/// User + system CPU seconds a process has used so far (Linux).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields after it are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The unit of `/proc/PID/stat` times: USER_HZ, 100 on every Linux
/// architecture the server is built for.
const USER_HZ: f64 = 100.0;

/// Resident and peak memory of a process in KiB (Linux).
pub fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Waits until the server's queue is empty and its checkpoint covers
/// everything processed; returns how long that took, or None when it did
/// not happen within `limit`.
pub async fn wait_drained(
    client: &reqwest::Client,
    url: &str,
    limit: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    let ready = format!("{}/ready", url.trim_end_matches('/'));
    while started.elapsed() < limit {
        if let Ok(r) = client.get(&ready).send().await
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v["queue_depth"].as_u64() == Some(0)
            && v["checkpoint"] == v["processed"]
        {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The server's side of a run.
#[derive(Debug, serde::Serialize)]
pub struct ServerReport {
    /// CPU the server used from the start of the load until drained.
    pub cpu_seconds: f64,
    /// That CPU per acknowledged event.
    pub cpu_us_per_event: f64,
    /// Time after the load stopped until everything was processed and
    /// checkpointed (None: not within a minute).
    pub drain_seconds: Option<f64>,
    /// Acknowledged events over load time plus drain time.
    pub end_to_end_events_per_second: Option<f64>,
    pub rss_mib: u64,
    pub peak_rss_mib: u64,
}

/// Completes a run's numbers once the load has stopped: waits for the
/// server to drain, then reads its CPU and memory.
pub async fn after_run(
    url: &str,
    pid: u32,
    cpu_before: f64,
    events: u64,
    load_seconds: f64,
) -> Option<ServerReport> {
    let client = reqwest::Client::new();
    let drain = wait_drained(&client, url, Duration::from_secs(60)).await;
    let cpu = cpu_seconds(pid)? - cpu_before;
    let (rss, peak) = memory_of(pid)?;
    Some(ServerReport {
        cpu_seconds: cpu,
        cpu_us_per_event: cpu * 1e6 / events.max(1) as f64,
        drain_seconds: drain.map(|d| d.as_secs_f64()),
        end_to_end_events_per_second: drain
            .map(|d| events as f64 / (load_seconds + d.as_secs_f64())),
        rss_mib: rss / 1024,
        peak_rss_mib: peak / 1024,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let pid = std::process::id();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(cpu_seconds(pid).is_some_and(|s| s >= 0.0));
        let (rss, peak) = memory_of(pid).unwrap();
        assert!(rss > 0 && peak >= rss);
    }
}
