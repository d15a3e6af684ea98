//! Admin routes for the plugin runtime: what is loaded, what failed, what
//! the packs logged, and rolling a pack back to its previous version.
//! Guarded by the admin token (`OPM_ADMIN_TOKEN`) like every admin route.

use std::time::UNIX_EPOCH;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use opm_plugin_runtime::PluginHost;
use serde_json::json;

use crate::ingest::Ingest;
use crate::ingest::routes::check_admin;

#[derive(Clone)]
struct PluginApi {
    host: PluginHost,
    ingest: Ingest,
}

pub fn router(host: PluginHost, ingest: Ingest) -> Router {
    Router::new()
        .route("/api/v1/admin/plugins", get(status))
        .route("/api/v1/admin/plugins/failures", get(failures))
        .route("/api/v1/admin/plugins/{id}/logs", get(logs))
        .route("/api/v1/admin/plugins/{id}/rollback", post(rollback))
        .with_state(PluginApi { host, ingest })
}

async fn status(State(api): State<PluginApi>, headers: HeaderMap) -> Response {
    if let Err(r) = check_admin(&api.ingest, &headers) {
        return *r;
    }
    Json(api.host.status()).into_response()
}

async fn failures(State(api): State<PluginApi>, headers: HeaderMap) -> Response {
    if let Err(r) = check_admin(&api.ingest, &headers) {
        return *r;
    }
    let items: Vec<_> = api
        .host
        .failures()
        .into_iter()
        .map(|f| {
            json!({
                "pack": f.pack, "version": f.version, "server": f.server,
                "event_id": f.event_id, "kind": format!("{:?}", f.kind).to_lowercase(),
                "message": f.message,
                "at_ms": f.at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            })
        })
        .collect();
    Json(json!({ "failures": items })).into_response()
}

async fn logs(
    State(api): State<PluginApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = check_admin(&api.ingest, &headers) {
        return *r;
    }
    let lines: Vec<_> = api
        .host
        .logs(&id)
        .into_iter()
        .map(|l| json!({"version": l.version, "level": l.level, "message": l.message}))
        .collect();
    Json(json!({ "pack": id, "logs": lines })).into_response()
}

async fn rollback(
    State(api): State<PluginApi>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = check_admin(&api.ingest, &headers) {
        return *r;
    }
    if api.host.rollback(&id) {
        Json(json!({ "status": "rolled_back", "pack": id })).into_response()
    } else {
        (
            StatusCode::CONFLICT,
            Json(
                json!({ "error": format!("pack {id:?} has no previous version to roll back to") }),
            ),
        )
            .into_response()
    }
}
