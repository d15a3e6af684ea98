//! Runtime configuration: limits, pool sizes, deadlines.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// How the runtime runs plugins. `Default` gives the production limits.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Where precompiled `.cwasm` artifacts are cached.
    pub cache_dir: PathBuf,
    /// Number of worker threads that will call `process`; worker indices are
    /// `0..workers`.
    pub workers: usize,
    /// Linear memory cap per instance.
    pub max_memory_bytes: usize,
    /// Wasm stack cap per instance.
    pub max_wasm_stack: usize,
    /// Epoch tick: the deadline resolution.
    pub epoch_tick: Duration,
    /// Deadline of one `on-batch` call: `batch_deadline_base +
    /// batch_deadline_per_event × events`.
    pub batch_deadline_base: Duration,
    pub batch_deadline_per_event: Duration,
    /// Deadline of `describe` (at load and when an instance is rebuilt).
    pub describe_deadline: Duration,
    /// Outcomes allowed per batch beyond one per event.
    pub extra_outcomes_per_batch: usize,
    pub log_lines_per_batch: u32,
    pub log_line_bytes: usize,
    /// Log lines kept per pack for the status API.
    pub log_ring: usize,
    pub max_key_bytes: usize,
    pub max_blob_bytes: usize,
    /// Distinct keys one pack may hold for one player, over every scope and
    /// instance.
    pub max_keys_per_player: usize,
    pub max_set_members: usize,
    pub max_set_member_bytes: usize,
    /// Pack instances the pooling allocator is sized for (packs × workers ×
    /// 2 for the rollback version, plus headroom).
    pub max_instances: u32,
    /// Failures within `failure_window` that quarantine a pack.
    pub quarantine_after: usize,
    pub failure_window: Duration,
    pub quarantine_backoff_start: Duration,
    pub quarantine_backoff_max: Duration,
    /// Events a quarantined pack may have waiting per worker; beyond it the
    /// pack is marked lagging (see `docs/runtime.md`).
    pub quarantine_buffer: usize,
    /// Failures kept in memory for the `failures` API.
    pub failure_ring: usize,
    /// Component size limit for loading and `check`.
    pub max_component_bytes: usize,
    /// Configuration passed to `describe`, by component file stem
    /// (`core-milestones.wasm` → `core-milestones`).
    pub pack_config: HashMap<String, Vec<(String, String)>>,
    /// Quiet period the directory watcher waits for before reloading.
    pub watch_debounce: Duration,
}

impl RuntimeConfig {
    /// Production defaults with the given cache directory.
    pub fn new(cache_dir: impl Into<PathBuf>) -> RuntimeConfig {
        RuntimeConfig {
            cache_dir: cache_dir.into(),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_memory_bytes: 32 << 20,
            max_wasm_stack: 512 << 10,
            epoch_tick: Duration::from_millis(1),
            batch_deadline_base: Duration::from_millis(2),
            batch_deadline_per_event: Duration::from_micros(5),
            describe_deadline: Duration::from_millis(100),
            extra_outcomes_per_batch: 64,
            log_lines_per_batch: 64,
            log_line_bytes: 512,
            log_ring: 1000,
            max_key_bytes: 128,
            max_blob_bytes: 4096,
            max_keys_per_player: 256,
            max_set_members: 1024,
            max_set_member_bytes: 128,
            max_instances: 256,
            quarantine_after: 5,
            failure_window: Duration::from_secs(60),
            quarantine_backoff_start: Duration::from_secs(1),
            quarantine_backoff_max: Duration::from_secs(300),
            quarantine_buffer: 50_000,
            failure_ring: 1000,
            max_component_bytes: 4 << 20,
            pack_config: HashMap::new(),
            watch_debounce: Duration::from_millis(100),
        }
    }

    /// Epoch ticks for a deadline, rounded up, plus one tick because the
    /// current tick may be almost over when the deadline is set.
    pub(crate) fn ticks(&self, d: Duration) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        (d.as_nanos().div_ceil(tick) as u64).max(1) + 1
    }

    pub(crate) fn batch_ticks(&self, events: usize) -> u64 {
        self.ticks(self.batch_deadline_base + self.batch_deadline_per_event * events as u32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_scales_with_batch_size() {
        let c = RuntimeConfig::new("/tmp");
        assert_eq!(c.batch_ticks(0), 3);
        // 2 ms + 64 × 5 µs = 2.32 ms → 3 ticks, +1.
        assert_eq!(c.batch_ticks(64), 4);
        // 2 ms + 1000 × 5 µs = 7 ms.
        assert_eq!(c.batch_ticks(1000), 8);
    }
}
