//! HTTP endpoints of ingest and server identity.
//!
//! * `POST /api/v1/ingest/events`: 202 `{status, processed, rejected,
//!   errors:[{index, error}]}`; 401 for a missing or wrong token (the game
//!   re-registers on it); 403 for a pending or disabled server (the game
//!   keeps its token and retries); 413 over 1 MiB; 400 for an unreadable
//!   body; 429 with `Retry-After` when the queue is above 90 %.
//! * `POST /api/v1/servers/register`: 200 `{server_id, token}`; 409 when
//!   the address is registered and neither its token nor an admin token
//!   was presented.
//! * `POST /api/v1/admin/servers/{id}/approve`, `/disable`,
//!   `GET /api/v1/admin/servers`: need `OPM_ADMIN_TOKEN`.
//! * `GET /ready`, `GET /metrics`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::ingest::servers::{AuthError, RegisterError, ServerStatus};
use crate::ingest::{Admit, Ingest, SubmitError, now_ms};

/// Largest accepted body, as upstream.
pub const MAX_BODY: usize = 1 << 20;

pub fn router(ingest: Ingest) -> Router {
    Router::new()
        .route(
            "/api/v1/ingest/events",
            post(ingest_events).layer(DefaultBodyLimit::max(MAX_BODY)),
        )
        .route("/api/v1/servers/register", post(register))
        .route("/api/v1/admin/servers", get(admin_list))
        .route("/api/v1/admin/servers/{id}/approve", post(admin_approve))
        .route("/api/v1/admin/servers/{id}/disable", post(admin_disable))
        .route("/ready", get(ready))
        .route("/metrics", get(crate::metrics::render))
        .with_state(ingest)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The server token: `X-Server-Token`, else `Authorization: Bearer`, else
/// `?server_token=`.
pub fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers.get("x-server-token").and_then(|v| v.to_str().ok())
        && !v.trim().is_empty()
    {
        return Some(v.trim().to_string());
    }
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let t = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v)
            .trim();
        if !t.is_empty() {
            return Some(t.to_string());
        }
    }
    query_param(query, "server_token").filter(|t| !t.trim().is_empty())
}

fn admin_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-admin-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(|t| t.trim().to_string())
}

/// Legacy URL-encoded lines carried the token in the body; upstream never
/// read it there (so those servers always got 401). Read it from the first
/// line when no header or query token came.
fn token_in_body(body: &[u8]) -> Option<String> {
    let first = body.split(|b| *b == b'\n').next()?;
    let first = std::str::from_utf8(first).ok()?.trim();
    if first.starts_with('[') || first.starts_with('{') {
        return None;
    }
    form_urlencoded::parse(first.as_bytes())
        .find(|(k, _)| k == "server_token")
        .map(|(_, v)| v.into_owned())
}

async fn ingest_events(
    State(ingest): State<Ingest>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            crate::metrics::metrics()
                .rejected
                .with_label_values(&["too_large"])
                .inc();
            return error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
        }
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let token = presented_token(&headers, query.as_deref()).or_else(|| token_in_body(&body));
    let servers = ingest.servers().clone();
    let server = match servers.authenticate(token.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            crate::metrics::metrics()
                .rejected
                .with_label_values(&["auth"])
                .inc();
            return match e {
                AuthError::Missing | AuthError::Invalid => {
                    error(StatusCode::UNAUTHORIZED, e.to_string())
                }
                AuthError::Pending | AuthError::Disabled => {
                    error(StatusCode::FORBIDDEN, e.to_string())
                }
                AuthError::Directory(d) => error(StatusCode::SERVICE_UNAVAILABLE, d.to_string()),
            };
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let decoded = match ingest.decode_as(&server.id, &body, content_type) {
        Ok(d) => d,
        Err(e) => {
            crate::metrics::metrics()
                .rejected
                .with_label_values(&["invalid_body"])
                .inc();
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };
    let processed = decoded.events.len();
    let errors: Vec<EventRejection> = decoded
        .errors
        .iter()
        .map(|(index, e)| EventRejection {
            index: *index,
            error: e.to_string(),
        })
        .collect();
    match ingest.submit(&server.id, decoded, Admit::Shed).await {
        Ok(appended) => {
            let reply = Accepted {
                status: "accepted",
                processed,
                rejected: errors.len(),
                errors,
                first_id: appended.as_ref().map(|a| a.first_id),
                last_id: appended.as_ref().map(|a| a.last_id),
            };
            (StatusCode::ACCEPTED, Json(reply)).into_response()
        }
        Err(SubmitError::Overloaded) => {
            let mut r = error(
                StatusCode::TOO_MANY_REQUESTS,
                "Ingest queue is full, retry later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
        Err(SubmitError::Journal(e)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The 202 of an ingest request. A struct, not `json!`: this is built for
/// every batch, and a map of owned keys cost an allocation per field.
#[derive(serde::Serialize)]
struct Accepted {
    status: &'static str,
    processed: usize,
    rejected: usize,
    errors: Vec<EventRejection>,
    /// Host-assigned ids of the batch's first and last event.
    #[serde(skip_serializing_if = "Option::is_none")]
    first_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_id: Option<u64>,
}

#[derive(serde::Serialize)]
struct EventRejection {
    index: usize,
    error: String,
}

/// The port arrives as a string ("12203") from the game, a number from
/// other clients.
fn parse_port(v: Option<&Value>) -> Result<u16, RegisterError> {
    match v {
        None | Some(Value::Null) => Ok(12203),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| RegisterError::BadPort(n.to_string())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(12203),
        Some(Value::String(s)) => s
            .trim()
            .parse::<u16>()
            .map_err(|_| RegisterError::BadPort(s.clone())),
        Some(other) => Err(RegisterError::BadPort(other.to_string())),
    }
}

async fn register(
    State(ingest): State<Ingest>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "Invalid request body");
    };
    let text = |k: &str| match obj.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let port = match parse_port(obj.get("port")) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let token = presented_token(&headers, query.as_deref());
    let admin = admin_token(&headers);
    let servers = ingest.servers().clone();
    let (name, ip) = (text("name"), text("ip_address"));
    let result = tokio::task::spawn_blocking(move || {
        servers.register(
            &name,
            &ip,
            port,
            token.as_deref(),
            admin.as_deref(),
            now_ms(),
        )
    })
    .await;
    match result {
        Ok(Ok(r)) => {
            tracing::info!(server_id = %r.server_id, rotated = r.rotated, status = r.status.as_str(), "server registered");
            Json(json!({"server_id": r.server_id, "token": r.token, "status": r.status.as_str()}))
                .into_response()
        }
        Ok(Err(e @ (RegisterError::MissingFields | RegisterError::BadPort(_)))) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Ok(Err(e @ RegisterError::Conflict(_))) => error(StatusCode::CONFLICT, e.to_string()),
        Ok(Err(RegisterError::Directory(e))) => {
            tracing::error!(error = %e, "registration failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Failed to register server",
            )
        }
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Failed to register server",
        ),
    }
}

pub(crate) fn check_admin(ingest: &Ingest, headers: &HeaderMap) -> Result<(), Box<Response>> {
    if !ingest.servers().admin_configured() {
        return Err(Box::new(error(
            StatusCode::FORBIDDEN,
            "Admin API disabled: set OPM_ADMIN_TOKEN",
        )));
    }
    if !ingest.servers().is_admin(admin_token(headers).as_deref()) {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "Invalid admin token",
        )));
    }
    Ok(())
}

async fn admin_list(State(ingest): State<Ingest>, headers: HeaderMap) -> Response {
    if let Err(r) = check_admin(&ingest, &headers) {
        return *r;
    }
    match ingest.servers().directory().list() {
        Ok(list) => {
            let items: Vec<Value> = list
                .into_iter()
                .map(|s| {
                    json!({"server_id": s.id, "name": s.name, "ip_address": s.ip_address,
                           "port": s.port, "status": s.status.as_str(), "created_ms": s.created_ms})
                })
                .collect();
            Json(json!({"servers": items})).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn set_status(
    ingest: Ingest,
    headers: HeaderMap,
    id: String,
    status: ServerStatus,
) -> Response {
    if let Err(r) = check_admin(&ingest, &headers) {
        return *r;
    }
    match ingest.servers().directory().set_status(&id, status) {
        Ok(()) => Json(json!({"server_id": id, "status": status.as_str()})).into_response(),
        Err(crate::ingest::servers::DirectoryError::NotFound(_)) => {
            error(StatusCode::NOT_FOUND, "Server not found")
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn admin_approve(
    State(ingest): State<Ingest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    set_status(ingest, headers, id, ServerStatus::Active).await
}

async fn admin_disable(
    State(ingest): State<Ingest>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    set_status(ingest, headers, id, ServerStatus::Disabled).await
}

async fn ready(State(ingest): State<Ingest>) -> Response {
    if ingest.ready() {
        Json(json!({"status": "ready", "checkpoint": ingest.checkpoint(),
                    "processed": ingest.processed(),
                    "queue_depth": ingest.admission().depth()}))
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready"})),
        )
            .into_response()
    }
}
