//! Admin endpoints: `/expirations`, `/clean`, `/sign`, `/sign/all` (§1.11, §1.12, §1.14).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Value};

use super::certificate_status::MAX_JSON_BYTES;
use crate::authority::{ListFilter, SignRequest};
use crate::ca::text::puppet_time;
use crate::http::error::{json, text, ApiError};
use crate::http::extract::Caller;
use crate::http::{read_body, AppState};
use crate::policy::SigningOptions;

fn json_ok(status: StatusCode, v: &Value) -> Response {
    json(status, "application/json", v)
}

/// GET `/expirations`: notAfter of each CA certificate and nextUpdate of each CRL (puppetserver's
/// answer). For the admin (`pp_cli_auth`), also `expiring`: the CA, server and admin certificates, the
/// CRLs and every current, unrevoked certificate that expire within `?within=` (a duration; default:
/// everything), soonest first.
pub(crate) async fn expirations(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let within = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "within")
        .map(|(_, v)| crate::ca::duration::parse(&v))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("Invalid within: {}", crate::error::Chain(&e))))?;
    let crl = state.authority.crl().await?;
    let mut body = ca_expirations(state.authority.signer(), crl.row().next_update);
    let admin = caller
        .identity
        .as_ref()
        .is_some_and(|i| i.extensions.get("pp_cli_auth").map(String::as_str) == Some("true"));
    if admin {
        body["expiring"] = json!(state.authority.expirations(within, true).await?);
    }
    Ok(json_ok(StatusCode::OK, &body))
}

/// puppetserver's `/expirations` answer: the CA certificates' notAfter by name, the CRL's nextUpdate.
fn ca_expirations(signer: &crate::ca::signer::CaSigner, crl_next_update: i64) -> Value {
    let mut ca_certs = BTreeMap::new();
    for der in &signer.chain_der {
        if let Ok((c, _)) = crate::ca::signer::CaCert::from_der(der) {
            ca_certs.insert(c.common_name, puppet_time(c.not_after));
        }
    }
    let next = time::OffsetDateTime::from_unix_timestamp(crl_next_update)
        .map(puppet_time)
        .unwrap_or_default();
    json!({ "ca-certs": ca_certs, "crls": { signer.cert.common_name.clone(): next } })
}

/// The JSON body; `Null` for an empty one when `empty_ok` (`sign/all` takes no options).
async fn json_body(body: Body, timeout: std::time::Duration, empty_ok: bool) -> Result<Value, ApiError> {
    let bytes = read_body(body, MAX_JSON_BYTES, timeout).await?;
    if empty_ok && bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|_| ApiError::bad_request("Request body is not JSON."))
}

/// PUT `/clean`: revoke and remove each name.
pub(crate) async fn clean(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    let v = json_body(body, state.body_read_timeout, false).await?;
    let mut missing = Vec::new();
    for name in clean_names(&v)? {
        // An error stops here, with the names before it cleaned (as puppetserver's loop does); the
        // client gets the table's answer, never the internal cause.
        match state.authority.clean(&caller.actor(), name).await {
            Ok(_) => {}
            Err(crate::authority::AuthorityError::NotFound(_)) => missing.push(name),
            Err(e) => return Err(e.into()),
        }
    }
    // The revocations are in force in TLS already (the authority updates what TLS checks).
    if missing.is_empty() {
        return Ok(text(StatusCode::OK, "Successfully cleaned all certs."));
    }
    let names = clojure_strings(&missing);
    Ok(text(
        StatusCode::OK,
        format!("The following certs do not exist and cannot be revoked: [{names}]"),
    ))
}

/// The names a `/clean` body lists (repeats next to each other once), or puppetserver's refusal.
fn clean_names(v: &Value) -> Result<Vec<&str>, ApiError> {
    if v.get("async").and_then(Value::as_bool) == Some(true) {
        return Err(ApiError::bad_request("Async mode is not currently supported."));
    }
    let names = v.get("certnames").and_then(Value::as_array).ok_or_else(|| {
        ApiError::bad_request(
            "Missing required key: 'certnames'. Please supply the list of certs you want to clean.",
        )
    })?;
    let mut names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
    names.dedup();
    Ok(names)
}

/// Clojure's print form of a vector of strings' items, as puppetserver answers.
fn clojure_strings(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{}\"", n.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn options(v: &Value) -> SigningOptions {
    let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
    SigningOptions {
        allow_dns_alt_names: flag("allow-dns-alt-names"),
        allow_authorization_extensions: flag("allow-authorization-extensions"),
    }
}

async fn sign_names(
    state: &AppState,
    caller: &Caller,
    names: Vec<String>,
    opts: SigningOptions,
) -> Result<Response, ApiError> {
    let req = SignRequest {
        options: opts,
        ttl: None,
    };
    let o = state.authority.sign_many(&caller.actor(), &names, req).await?;
    // `signing-error-messages` is ours (the reasons); puppetserver's keys are unchanged.
    let names: Vec<&String> = o.errors.iter().map(|(n, _)| n).collect();
    let signed: Vec<&String> = o.signed.iter().map(|(n, _)| n).collect();
    let messages: BTreeMap<&String, &String> = o.errors.iter().map(|(n, m)| (n, m)).collect();
    Ok(json_ok(
        StatusCode::OK,
        &json!({ "signed": signed, "no-csr": o.no_csr, "signing-errors": names, "signing-error-messages": messages }),
    ))
}

/// POST `/sign`: `{"certnames": [...]}` (and our `allow-dns-alt-names` / `allow-authorization-extensions`).
pub(crate) async fn sign(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    let v = json_body(body, state.body_read_timeout, false).await?;
    let names = v.get("certnames").and_then(Value::as_array).and_then(|a| {
        a.iter()
            .map(|n| n.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
    });
    let Some(names) = names else {
        let submitted = v.get("certnames").cloned().unwrap_or(Value::Null);
        return Ok(json_ok(
            StatusCode::UNPROCESSABLE_ENTITY,
            &json!({"kind": "schema-violation", "submitted": submitted, "error": "certnames must be a list of strings"}),
        ));
    };
    sign_names(&state, &caller, names, options(&v)).await
}

/// POST `/sign/all`: every pending request. The body may be empty; one that is not JSON, or too
/// large, is refused (it never means "sign without the options asked for").
pub(crate) async fn sign_all(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    body: Body,
) -> Result<Response, ApiError> {
    let v = json_body(body, state.body_read_timeout, true).await?;
    let names = state.authority.list(ListFilter::REQUESTED).await?;
    let names = names.into_iter().map(|s| s.name).collect();
    sign_names(&state, &caller, names, options(&v)).await
}
