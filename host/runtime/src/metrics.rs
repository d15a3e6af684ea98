//! Per-pack Prometheus metrics.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// The runtime's metric families, registered once per host.
#[derive(Clone)]
pub(crate) struct Metrics {
    pub batches: IntCounterVec,
    pub events: IntCounterVec,
    pub outcomes: IntCounterVec,
    pub errors: IntCounterVec,
    pub latency: HistogramVec,
    pub quarantined: IntGaugeVec,
    pub memory: IntGaugeVec,
    pub recycles: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new(registry: &Registry) -> Result<Metrics, prometheus::Error> {
        let m = Metrics {
            batches: IntCounterVec::new(
                Opts::new("opm_plugin_batches_total", "Batches evaluated by a pack"),
                &["pack", "version"],
            )?,
            events: IntCounterVec::new(
                Opts::new(
                    "opm_plugin_events_total",
                    "Events delivered to a pack after routing",
                ),
                &["pack", "version"],
            )?,
            outcomes: IntCounterVec::new(
                Opts::new("opm_plugin_outcomes_total", "Outcomes committed by a pack"),
                &["pack", "version"],
            )?,
            errors: IntCounterVec::new(
                Opts::new("opm_plugin_errors_total", "Failed calls by error kind"),
                &["pack", "version", "kind"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "opm_plugin_batch_seconds",
                    "Wall time of one pack batch, commit included",
                )
                .buckets(vec![
                    1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25,
                ]),
                &["pack"],
            )?,
            quarantined: IntGaugeVec::new(
                Opts::new("opm_plugin_quarantined", "1 while the pack is quarantined"),
                &["pack"],
            )?,
            memory: IntGaugeVec::new(
                Opts::new(
                    "opm_plugin_memory_high_water_bytes",
                    "Largest linear memory of any instance of the pack",
                ),
                &["pack"],
            )?,
            recycles: IntCounterVec::new(
                Opts::new(
                    "opm_plugin_instance_recycles_total",
                    "Instances dropped and rebuilt after a fault",
                ),
                &["pack"],
            )?,
        };
        registry.register(Box::new(m.batches.clone()))?;
        registry.register(Box::new(m.events.clone()))?;
        registry.register(Box::new(m.outcomes.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.latency.clone()))?;
        registry.register(Box::new(m.quarantined.clone()))?;
        registry.register(Box::new(m.memory.clone()))?;
        registry.register(Box::new(m.recycles.clone()))?;
        Ok(m)
    }
}

/// One pack version's series of the per-batch metrics, resolved once at
/// load: looking a series up by its labels hashes them on every batch.
#[derive(Clone)]
pub(crate) struct PackSeries {
    pub batches: IntCounter,
    pub events: IntCounter,
    pub outcomes: IntCounter,
    pub latency: Histogram,
    pub memory: IntGauge,
}

impl PackSeries {
    pub(crate) fn new(m: &Metrics, pack: &str, version: &str) -> PackSeries {
        let labels = [pack, version];
        PackSeries {
            batches: m.batches.with_label_values(&labels),
            events: m.events.with_label_values(&labels),
            outcomes: m.outcomes.with_label_values(&labels),
            latency: m.latency.with_label_values(&[pack]),
            memory: m.memory.with_label_values(&[pack]),
        }
    }
}
