//! `/status/v1/services[/{service}]` and `/status/v1/simple[/{service}]` (trapperkeeper-status shapes).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::error::text;
use super::{AppState, PUPPET_VERSION};

fn ca_service() -> Value {
    json!({
        "service_version": PUPPET_VERSION,
        "service_status_version": 1,
        "detail_level": "info",
        "state": "running",
        "status": {}
    })
}

fn json_response(v: &Value) -> Response {
    super::error::json(StatusCode::OK, "application/json", v)
}

/// All services.
pub(super) async fn services() -> Response {
    json_response(&json!({ "ca": ca_service() }))
}

/// One service.
pub(super) async fn service(Path(name): Path<String>) -> Response {
    if name == "ca" {
        json_response(&ca_service())
    } else {
        text(StatusCode::NOT_FOUND, "Not Found")
    }
}

/// `running`; `error` (503) while the database cannot be reached.
pub(super) async fn simple(State(state): State<Arc<AppState>>, name: Option<Path<String>>) -> Response {
    match name {
        // puppetserver registers its server service under both names; agents whose `server_list`
        // names the CA ask for `server` (then `master`) before bootstrapping.
        Some(Path(n)) if !matches!(n.as_str(), "ca" | "server" | "master") => {
            text(StatusCode::NOT_FOUND, "Not Found")
        }
        _ if !state.db_ok.load(std::sync::atomic::Ordering::Relaxed) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "error")
        }
        _ => text(StatusCode::OK, "running"),
    }
}
