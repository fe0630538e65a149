//! `/status/v1/services[/{service}]` and `/status/v1/simple[/{service}]` (trapperkeeper-status shapes).

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::error::text;
use super::PUPPET_VERSION;

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
    let mut r = (StatusCode::OK, v.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// All services.
pub async fn services() -> Response {
    json_response(&json!({ "ca": ca_service() }))
}

/// One service.
pub async fn service(Path(name): Path<String>) -> Response {
    if name == "ca" {
        json_response(&ca_service())
    } else {
        text(StatusCode::NOT_FOUND, "Not Found")
    }
}

/// `running`.
pub async fn simple(name: Option<Path<String>>) -> Response {
    match name {
        Some(Path(n)) if n != "ca" => text(StatusCode::NOT_FOUND, "Not Found"),
        _ => text(StatusCode::OK, "running"),
    }
}
