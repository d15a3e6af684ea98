//! Prometheus metrics of the ingest path and the HTTP API.
//!
//! Everything is registered once, in the process-wide default registry, so
//! metrics other crates register there (plugin runtime, stores) show up on
//! the same `GET /metrics` page. One process may run several servers (the
//! integration tests do), so the set is created lazily and shared.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    TextEncoder,
};

/// The ingest and API metrics.
pub struct Metrics {
    pub ingested: ByKind,
    pub processed: ByKind,
    pub rejected: IntCounterVec,
    pub load_shed: IntCounter,
    pub queue_depth: IntGauge,
    pub fsync_seconds: Histogram,
    pub journal_bytes: IntCounter,
    pub checkpoint: IntGauge,
    pub checkpoint_seconds: Histogram,
    pub mqtt_dropped: IntCounterVec,
    pub mqtt_subscribed: IntGauge,
    pub api_requests: IntCounterVec,
    pub api_duration: HistogramVec,
    pub sink_write_seconds: Histogram,
}

/// A counter labelled by event type, each type's series looked up once
/// instead of by hashing its label for every batch.
pub struct ByKind {
    vec: IntCounterVec,
    series: Box<[OnceLock<IntCounter>]>,
}

impl ByKind {
    fn new(vec: IntCounterVec) -> ByKind {
        ByKind {
            vec,
            series: (0..=u8::MAX).map(|_| OnceLock::new()).collect(),
        }
    }

    pub fn inc_by(&self, kind: opm_model::EventKind, n: u64) {
        self.series[kind as usize]
            .get_or_init(|| self.vec.with_label_values(&[kind.as_str()]))
            .inc_by(n);
    }
}

fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    // A second registration of the same name can only come from another
    // crate choosing our names; keep ours working rather than panic.
    let _ = prometheus::default_registry().register(Box::new(c.clone()));
    c
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let latency_buckets = vec![
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1,
            0.25, 0.5, 1.0,
        ];
        Metrics {
            ingested: ByKind::new(register(
                IntCounterVec::new(
                    Opts::new(
                        "mohaa_events_ingested_total",
                        "Events accepted and journaled",
                    ),
                    &["event_type"],
                )
                .unwrap(),
            )),
            processed: ByKind::new(register(
                IntCounterVec::new(
                    Opts::new(
                        "mohaa_events_processed_total",
                        "Events through every pipeline stage (synthetic events included)",
                    ),
                    &["event_type"],
                )
                .unwrap(),
            )),
            rejected: register(
                IntCounterVec::new(
                    Opts::new("mohaa_events_rejected_total", "Events or batches refused"),
                    &["reason"],
                )
                .unwrap(),
            ),
            load_shed: register(
                IntCounter::new(
                    "mohaa_events_load_shed_total",
                    "Events refused because the queue was above its shedding threshold",
                )
                .unwrap(),
            ),
            queue_depth: register(
                IntGauge::new(
                    "mohaa_worker_queue_depth",
                    "Events journaled (or reserved) and not yet through the pipeline",
                )
                .unwrap(),
            ),
            fsync_seconds: register(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "mohaa_journal_fsync_duration_seconds",
                        "Time of one journal group commit (write and fsync)",
                    )
                    .buckets(latency_buckets.clone()),
                )
                .unwrap(),
            ),
            journal_bytes: register(
                IntCounter::new("mohaa_journal_bytes_total", "Bytes appended to the journal")
                    .unwrap(),
            ),
            checkpoint: register(
                IntGauge::new(
                    "mohaa_journal_checkpoint_sequence",
                    "Journal sequence up to which every stage has committed",
                )
                .unwrap(),
            ),
            checkpoint_seconds: register(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "mohaa_checkpoint_duration_seconds",
                        "Time of one checkpoint: every store flushed, then the journal checkpoint \
                         written (events hold queue room until it ends)",
                    )
                    .buckets(latency_buckets.clone()),
                )
                .unwrap(),
            ),
            mqtt_dropped: register(
                IntCounterVec::new(
                    Opts::new(
                        "mohaa_mqtt_messages_dropped_total",
                        "MQTT messages not ingested",
                    ),
                    &["reason"],
                )
                .unwrap(),
            ),
            mqtt_subscribed: register(
                IntGauge::new(
                    "mohaa_mqtt_subscribed",
                    "1 while the MQTT consumer holds its subscription",
                )
                .unwrap(),
            ),
            api_requests: register(
                IntCounterVec::new(
                    Opts::new("mohaa_api_requests_total", "HTTP requests"),
                    &["endpoint", "status"],
                )
                .unwrap(),
            ),
            api_duration: register(
                HistogramVec::new(
                    HistogramOpts::new("mohaa_api_request_duration_seconds", "HTTP request time")
                        .buckets(latency_buckets.clone()),
                    &["endpoint"],
                )
                .unwrap(),
            ),
            sink_write_seconds: register(
                Histogram::with_opts(
                    HistogramOpts::new(
                        "mohaa_batch_insert_duration_seconds",
                        "Time to hand one worker batch to the stores",
                    )
                    .buckets(latency_buckets),
                )
                .unwrap(),
            ),
        }
    })
}

/// Axum middleware counting requests per route template and status.
pub async fn track_requests(req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let response = next.run(req).await;
    let m = metrics();
    m.api_duration
        .with_label_values(&[&endpoint])
        .observe(start.elapsed().as_secs_f64());
    m.api_requests
        .with_label_values(&[&endpoint, response.status().as_str()])
        .inc();
    response
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render() -> Response {
    let _ = metrics();
    let mut buf = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&prometheus::gather(), &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], buf).into_response()
}
