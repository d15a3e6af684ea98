//! The HTTP server.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing::get};
use serde_json::json;

use crate::config::ServeConfig;

/// Builds the router.
pub fn router() -> Router {
    Router::new().route("/health", get(health))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// How often retention runs.
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(86_400);

/// `GET /ready` is also not ready while a store does not answer, even when
/// no event has needed it yet (the ingest side only notices on writes).
///
/// The state is behind an `Arc`: a middleware's state is cloned for every
/// request, and `Stores` holds its configuration's strings.
async fn stores_ready(
    State(stores): State<std::sync::Arc<opm_store::Stores>>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path() == "/ready"
        && let Err(e) = stores.ready().await
    {
        tracing::warn!(error = %e, "not ready: store unavailable");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": "store unavailable"})),
        )
            .into_response();
    }
    next.run(request).await
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    // Before any background thread starts: each takes it as it starts.
    opm_model::sched::set_background_nice(config.ingest.background_nice);
    std::fs::create_dir_all(&config.data_dir)?;
    let plugin_dir = config.plugin_dir();
    let installed = crate::bundled::install(&plugin_dir)?;
    if !installed.is_empty() {
        tracing::info!(packs = ?installed, dir = %plugin_dir.display(), "bundled packs installed");
    }
    let mut ingest_config = config.ingest.clone();
    let workers = ingest_config
        .workers
        .unwrap_or_else(|| crate::ingest::pipeline::PipelineConfig::default().workers);
    ingest_config.workers = Some(workers);
    let backends =
        crate::ingest::backends::open(&config.data_dir, workers, Some(&plugin_dir)).await?;
    // Raw events past OPM_RAW_RETENTION_DAYS; partitions are months, so
    // a daily run is plenty.
    backends.stores.spawn_retention(RETENTION_EVERY);
    if let Some(host) = backends.plugin_host.clone() {
        crate::catalog::start(
            host,
            backends.stores.relational.clone(),
            backends.stores.live.clone(),
        )
        .await;
    }
    let data_dir = config.data_dir.clone();
    let (directory, sinks, plugins) = (
        backends.directory.clone(),
        backends.sinks.clone(),
        backends.plugins.clone(),
    );
    // Opening replays the journal, which may block for a while.
    let ingest = tokio::task::spawn_blocking(move || {
        crate::ingest::Ingest::open(&data_dir, ingest_config, Some(directory), sinks, plugins)
    })
    .await??;
    if ingest.config().mqtt_url.is_some() {
        let consumer = ingest.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::ingest::mqtt::run(consumer).await {
                tracing::error!(error = %e, "MQTT consumer stopped");
            }
        });
    }
    let mut app = router()
        .merge(crate::ingest::routes::router(ingest.clone()))
        .merge(crate::api::router(backends.stores.clone()));
    if let Some(host) = backends.plugin_host.clone() {
        app = app.merge(crate::plugin_routes::router(host, ingest.clone()));
    }
    let app = app
        .layer(axum::middleware::from_fn_with_state(
            std::sync::Arc::new(backends.stores.clone()),
            stores_ready,
        ))
        .layer(axum::middleware::from_fn(crate::metrics::track_requests));
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "serving");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    let drained = tokio::task::spawn_blocking(move || {
        let ok = ingest.drain(std::time::Duration::from_secs(30));
        ingest.stop();
        ok
    })
    .await?;
    tracing::info!(drained, "stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
