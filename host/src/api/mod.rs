//! Read routes over the stores, in the JSON shapes the SMF forum reads
//! (`shared/upstream/contract.md` §2.2-2.3, `achievements.md` §4.3).
//!
//! Every response is cached in the live store for its route's TTL, keyed
//! by the normalised request; unknown players and matches answer 200 with
//! empty structures, because the forum treats any other status as "no data".

mod achievements;
mod stats;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use opm_store::{StoreError, Stores};
use serde_json::{Value, json};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub stores: Stores,
}

/// The read routes, under `/api/v1`.
pub fn router(stores: Stores) -> Router {
    Router::new()
        .route("/api/v1/stats/player/{guid}", get(stats::player))
        .route("/api/v1/stats/leaderboard", get(stats::leaderboard))
        .route(
            "/api/v1/stats/leaderboard/{stat}",
            get(stats::leaderboard_stat),
        )
        .route("/api/v1/stats/match/{id}", get(stats::match_detail))
        .route("/api/v1/achievements", get(achievements::catalogue))
        .route("/api/v1/achievements/", get(achievements::catalogue))
        .route(
            "/api/v1/achievements/player/{guid}",
            get(achievements::player),
        )
        .with_state(ApiState { stores })
}

/// A JSON body, ready to send.
fn json_body(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn unavailable(e: StoreError) -> Response {
    tracing::warn!(error = %e, "read route failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"error": "store unavailable"})),
    )
        .into_response()
}

/// Serves `key` from the cache, or computes it and caches it for `ttl`.
/// A cache that is down is skipped, never an error.
async fn cached<F>(state: &ApiState, key: &str, ttl: Duration, compute: F) -> Response
where
    F: Future<Output = Result<Value, StoreError>>,
{
    let live = &state.stores.live;
    match live.cache_get(key).await {
        Ok(Some(body)) => return json_body(body),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "response cache unavailable"),
    }
    match compute.await {
        Ok(value) => {
            let body = value.to_string();
            if let Err(e) = live.cache_put(key, &body, ttl).await {
                tracing::warn!(error = %e, "response cache unavailable");
            }
            json_body(body)
        }
        Err(e) => unavailable(e),
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339(ms: i64) -> String {
    format!(
        "{}Z",
        opm_store::time::datetime_string(ms).replacen(' ', "T", 1)
    )
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
