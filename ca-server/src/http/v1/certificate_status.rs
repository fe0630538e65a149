//! `/certificate_status/{subject}` (GET, PUT sign/revoke, DELETE) and `/certificate_statuses/{key}`,
//! with liberator's content negotiation (§1.8, §1.9).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use serde::Deserialize;
use serde_json::Value;

use crate::authority::{ListFilter, SignRequest};
use crate::ca::crl::Reason;
use crate::http::error::{json, ApiError};
use crate::http::extract::{Caller, Certname, NotThere, ResourceNotFound};
use crate::http::{read_body, AppState};

/// JSON bodies are capped at 1 MiB.
pub(crate) const MAX_JSON_BYTES: usize = 1024 * 1024;

const MEDIA_TYPES: [&str; 3] = ["application/json", "text/pson", "pson"];

/// The negotiated response type, or 406.
fn negotiate(headers: &HeaderMap) -> Result<&'static str, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok("application/json");
    };
    for range in accept.split(',') {
        let mt = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if let Some(t) = MEDIA_TYPES.iter().find(|t| **t == mt) {
            return Ok(t);
        }
        if mt == "*/*" || mt == "application/*" {
            return Ok("application/json");
        }
    }
    Err(ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "No acceptable resource available.",
    ))
}

/// 415 unless the body's type (when given) is JSON or PSON.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let mt = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if MEDIA_TYPES.contains(&mt.as_str()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type.",
        ))
    }
}

/// `?explain=true` (ours): the signing verdict instead of the status object, for `ca check`.
#[derive(Debug, Deserialize)]
pub(crate) struct ExplainQuery {
    #[serde(default)]
    explain: bool,
    #[serde(default, rename = "allow-dns-alt-names")]
    allow_dns_alt_names: bool,
    #[serde(default, rename = "allow-authorization-extensions")]
    allow_authorization_extensions: bool,
}

/// GET: the status object (or, with `?explain=true`, the verdict for a pending request).
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    subject: Certname<ResourceNotFound>,
    Query(q): Query<ExplainQuery>,
) -> Result<Response, ApiError> {
    let ct = negotiate(&headers)?;
    let subject = subject.as_str();
    if q.explain {
        let flags = crate::policy::SigningOptions {
            allow_dns_alt_names: q.allow_dns_alt_names,
            allow_authorization_extensions: q.allow_authorization_extensions,
        };
        let verdict = state.authority.explain(subject, flags).await?;
        return Ok(json(StatusCode::OK, ct, &verdict));
    }
    match state.authority.status(subject).await? {
        Some(s) => Ok(json(StatusCode::OK, ct, &s)),
        None => Err(ResourceNotFound::answer(subject)),
    }
}

/// Whether a certificate valid for `ttl` seconds from now ends by the last year X.509 can say
/// ([`crate::ca::issue::LAST_YEAR`]), with a day to spare for the moment the signing happens.
fn ttl_representable(now: time::OffsetDateTime, ttl: i64) -> bool {
    now.checked_add(time::Duration::seconds(ttl))
        .and_then(|t| t.checked_add(time::Duration::DAY))
        .is_some_and(|t| t.year() <= crate::ca::issue::LAST_YEAR)
}

/// Parses the PUT body with puppetserver's checks and messages (plus our optional `reason`).
fn desired(
    bytes: &[u8],
    subject: &str,
    now: time::OffsetDateTime,
) -> Result<(String, Option<i64>, Reason), ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("Empty request body."));
    }
    let v: Value =
        serde_json::from_slice(bytes).map_err(|_| ApiError::bad_request("Request body is not JSON."))?;
    let state = match v.get("desired_state") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "Missing required parameter \"desired_state\"",
            ))
        }
        Some(Value::String(s)) if s == "signed" || s == "revoked" => s.clone(),
        Some(other) => {
            let shown = other.as_str().map_or_else(|| other.to_string(), str::to_string);
            return Err(ApiError::bad_request(format!(
                "State {shown} invalid; Must specify desired state of 'signed' or 'revoked' for host {subject}."
            )));
        }
    };
    let ttl = match v.get("cert_ttl") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some_and(|t| t > 0 && ttl_representable(now, t)) => {
            n.as_i64()
        }
        Some(Value::Number(n)) if n.as_i64().is_some_and(|t| t > 0) => {
            return Err(ApiError::bad_request(format!(
                "cert_ttl specified for host {subject} is too large: the certificate would expire after the year 9999"
            )));
        }
        Some(other) => {
            let shown = other.as_str().map_or_else(|| other.to_string(), str::to_string);
            return Err(ApiError::bad_request(format!(
                "cert_ttl specified for host {subject} must be an integer, not \"{shown}\""
            )));
        }
    };
    let reason = match v.get("reason").and_then(Value::as_str) {
        None => Reason::default(),
        Some(r) => r
            .parse()
            .map_err(|e: crate::ca::CaError| ApiError::bad_request(crate::error::Chain(&e).to_string()))?,
    };
    Ok((state, ttl, reason))
}

/// PUT: sign (`{"desired_state":"signed","cert_ttl":N}`) or revoke. 204 on success.
/// The body is checked before the subject, as puppetserver does (a malformed body is a 400 for any
/// subject). A revocation is in force in TLS before the answer (the authority updates what TLS
/// checks).
pub(crate) async fn put(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_content_type(&headers)?;
    let bytes = read_body(body, MAX_JSON_BYTES, state.body_read_timeout).await?;
    let (desired_state, ttl, reason) = desired(&bytes, &subject, state.authority.now())?;
    let unknown = || ApiError::not_found("Invalid certificate subject.");
    if crate::ca::names::validate_certname(&subject).is_err() {
        return Err(unknown());
    }
    let (a, actor) = (&state.authority, caller.actor());
    if desired_state == "signed" {
        let ttl = ttl.map(time::Duration::seconds);
        let request = SignRequest {
            ttl,
            ..SignRequest::default()
        };
        a.sign(&actor, &subject, request).await?;
    } else {
        a.status(&subject).await?.ok_or_else(unknown)?;
        a.revoke(&actor, &subject, reason).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// DELETE: remove certificate and request without revoking. 204.
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    subject: Certname<ResourceNotFound>,
) -> Result<Response, ApiError> {
    // Liberator's default 404 body, as puppetserver answers a DELETE of an unknown subject.
    match state.authority.delete(&caller.actor(), subject.as_str()).await {
        Ok(()) => Ok(StatusCode::NO_CONTENT.into_response()),
        Err(crate::authority::AuthorityError::NotFound(_)) => Err(ResourceNotFound::answer(subject.as_str())),
        Err(e) => Err(e.into()),
    }
}

/// `?state=` of the listing.
#[derive(Debug, Deserialize)]
pub(crate) struct StatesQuery {
    state: Option<String>,
}

/// GET `/certificate_statuses/{key}`: requests, then certificates.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Path(_key): Path<String>,
    Query(q): Query<StatesQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ct = negotiate(&headers)?;
    let filter = match q.state.as_deref() {
        Some("requested") => ListFilter::REQUESTED,
        Some("signed") => ListFilter::SIGNED,
        Some("revoked") => ListFilter::REVOKED,
        _ => ListFilter::ALL,
    };
    let mut pages = state.authority.list_json_pages(filter);
    // The first page tells whether the listing can be read at all: an error then is still a status.
    let first = pages.recv().await.transpose()?;
    let body = axum::body::Body::new(Pages {
        first,
        opened: false,
        rest: Some(pages),
    });
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    Ok(r)
}

/// A response body sent as the listing is read (chunked): `[`, the pages joined with commas, `]`.
/// A listing that fails part way ends the response with an error (the connection is cut, not a short
/// array sent).
struct Pages {
    /// The first page (`None` when the listing is empty), sent with the opening bracket.
    first: Option<String>,
    /// Whether the opening bracket was sent.
    opened: bool,
    /// The pages after it; `None` once the closing bracket was sent.
    rest: Option<tokio::sync::mpsc::Receiver<Result<String, crate::storage::StoreError>>>,
}

impl hyper::body::Body for Pages {
    type Data = axum::body::Bytes;
    type Error = crate::storage::StoreError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let data = |s: String| Poll::Ready(Some(Ok(hyper::body::Frame::data(s.into()))));
        let me = self.get_mut();
        let Some(rest) = me.rest.as_mut() else {
            return Poll::Ready(None);
        };
        if !me.opened {
            me.opened = true;
            return data(format!("[{}", me.first.take().unwrap_or_default()));
        }
        match rest.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(page))) => data(format!(",{page}")),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => {
                me.rest = None;
                data("]".to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: time::OffsetDateTime = time::macros::datetime!(2026-11-24 12:00 UTC);

    /// Regression (bad_input e2e): a cert_ttl past the year 9999 panicked the issuing task.
    #[test]
    fn cert_ttl_past_year_9999_is_a_400() {
        let ok = desired(br#"{"desired_state":"signed","cert_ttl":86400}"#, "a", NOW).map(|d| d.1);
        assert_eq!(ok, Ok(Some(86400)));
        for huge in ["9223372036854775807", "316000000000"] {
            let body = format!(r#"{{"desired_state":"signed","cert_ttl":{huge}}}"#);
            let e = desired(body.as_bytes(), "a", NOW).map(|d| d.1);
            assert_eq!(
                e.map_err(|e| (e.status, e.message)),
                Err((
                    StatusCode::BAD_REQUEST,
                    "cert_ttl specified for host a is too large: the certificate would expire after the year 9999"
                        .to_string()
                ))
            );
        }
    }
}
