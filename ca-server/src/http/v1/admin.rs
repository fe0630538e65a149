//! Admin endpoints: `/expirations`, `/clean`, `/sign`, `/sign/all` (§1.11, §1.12, §1.14).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde_json::{json, Value};

use super::certificate_status::MAX_JSON_BYTES;
use crate::authority::{ListFilter, SignRequest};
use crate::ca::text::puppet_time;
use crate::http::error::{text, ApiError, Context};
use crate::http::extract::Caller;
use crate::http::{read_body, AppState};
use crate::policy::SigningOptions;

fn json_ok(status: StatusCode, v: &Value) -> Response {
    let mut r = (status, v.to_string()).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// GET `/expirations`: notAfter of each CA certificate and nextUpdate of each CRL (puppetserver's
/// answer). For the admin (`pp_cli_auth`), also `expiring`: the CA, server and admin certificates, the
/// CRLs and every current, unrevoked certificate that expire within `?within=` (a duration; default:
/// everything), soonest first.
pub async fn expirations(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Response {
    let within = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "within")
        .map(|(_, v)| crate::ca::duration::parse(&v));
    let within = match within.transpose() {
        Ok(w) => w,
        Err(e) => return ApiError::bad_request(format!("Invalid within: {e}")).into_response(),
    };
    let signer = state.authority.signer();
    let crl = match state.authority.crl().await {
        Ok(c) => c,
        Err(e) => return ApiError::from_authority(e, Context::Admin).into_response(),
    };
    let mut ca_certs = BTreeMap::new();
    for der in &signer.chain_der {
        if let Ok((c, _)) = crate::ca::signer::CaCert::from_der(der) {
            ca_certs.insert(c.common_name, puppet_time(c.not_after));
        }
    }
    let next = time::OffsetDateTime::from_unix_timestamp(crl.row().next_update)
        .map(puppet_time)
        .unwrap_or_default();
    let mut body = json!({ "ca-certs": ca_certs, "crls": { signer.cert.common_name.clone(): next } });
    let admin = caller
        .identity
        .as_ref()
        .is_some_and(|i| i.extensions.get("pp_cli_auth").map(String::as_str) == Some("true"));
    if admin {
        match state.authority.expirations(within, true).await {
            Ok(items) => body["expiring"] = json!(items),
            Err(e) => return ApiError::from_authority(e, Context::Admin).into_response(),
        }
    }
    json_ok(StatusCode::OK, &body)
}

async fn json_body(body: Body, timeout: std::time::Duration) -> Result<Value, ApiError> {
    let bytes = read_body(body, MAX_JSON_BYTES, timeout).await?;
    serde_json::from_slice(&bytes).map_err(|_| ApiError::bad_request("Request body is not JSON."))
}

/// PUT `/clean`: revoke and remove each name.
pub async fn clean(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    let v = match json_body(body, state.body_read_timeout).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    if v.get("async").and_then(Value::as_bool) == Some(true) {
        return ApiError::bad_request("Async mode is not currently supported.").into_response();
    }
    let Some(names) = v.get("certnames").and_then(Value::as_array) else {
        return ApiError::bad_request(
            "Missing required key: 'certnames'. Please supply the list of certs you want to clean.",
        )
        .into_response();
    };
    let mut names: Vec<String> = names
        .iter()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect();
    names.dedup();
    let mut missing = Vec::new();
    for name in &names {
        match state.authority.clean(&caller.actor(), name).await {
            Ok(_) => {}
            Err(crate::authority::AuthorityError::NotFound(_)) => missing.push(name.clone()),
            Err(e) => {
                tracing::error!(error = %e, "clean failed");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("Error while cleaning certs: {e}"),
                );
            }
        }
    }
    // The revocations are in force in TLS already (the authority updates what TLS checks).
    if missing.is_empty() {
        text(StatusCode::OK, "Successfully cleaned all certs.")
    } else {
        text(
            StatusCode::OK,
            format!(
                "The following certs do not exist and cannot be revoked: [{}]",
                // Clojure's print form of a vector of strings, as puppetserver answers.
                missing
                    .iter()
                    .map(|n| format!("\"{}\"", n.replace('\\', "\\\\").replace('"', "\\\"")))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        )
    }
}

fn options(v: &Value) -> SigningOptions {
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    SigningOptions {
        allow_dns_alt_names: flag("allow-dns-alt-names"),
        allow_authorization_extensions: flag("allow-authorization-extensions"),
    }
}

async fn sign_names(state: &AppState, caller: &Caller, names: Vec<String>, opts: SigningOptions) -> Response {
    let req = SignRequest {
        options: opts,
        ttl: None,
    };
    let outcome = state.authority.sign_many(&caller.actor(), &names, req).await;
    match outcome {
        Ok(o) => {
            // `signing-error-messages` is ours (the reasons); puppetserver's keys are unchanged.
            let names: Vec<&String> = o.errors.iter().map(|(n, _)| n).collect();
            let signed: Vec<&String> = o.signed.iter().map(|(n, _)| n).collect();
            let messages: BTreeMap<&String, &String> = o.errors.iter().map(|(n, m)| (n, m)).collect();
            json_ok(
                StatusCode::OK,
                &json!({ "signed": signed, "no-csr": o.no_csr, "signing-errors": names, "signing-error-messages": messages }),
            )
        }
        Err(e) => ApiError::from_authority(e, Context::Admin).into_response(),
    }
}

/// POST `/sign`: `{"certnames": [...]}` (and our `allow-dns-alt-names` / `allow-authorization-extensions`).
pub async fn sign(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    let v = match json_body(body, state.body_read_timeout).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let names = v.get("certnames").and_then(Value::as_array).and_then(|a| {
        a.iter()
            .map(|n| n.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
    });
    let Some(names) = names else {
        let submitted = v.get("certnames").cloned().unwrap_or(Value::Null);
        return json_ok(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"kind": "schema-violation", "submitted": submitted, "error": "certnames must be a list of strings"}),
        );
    };
    sign_names(&state, &caller, names, options(&v)).await
}

/// POST `/sign/all`: every pending request.
pub async fn sign_all(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Response {
    let v = json_body(body, state.body_read_timeout)
        .await
        .unwrap_or(Value::Null);
    let names = match state.authority.list(ListFilter::REQUESTED).await {
        Ok(l) => l.into_iter().map(|s| s.name).collect(),
        Err(e) => return ApiError::from_authority(e, Context::Admin).into_response(),
    };
    sign_names(&state, &caller, names, options(&v)).await
}
