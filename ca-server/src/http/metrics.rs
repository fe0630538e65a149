//! `/metrics` in Prometheus' text format: requests by route and status, signing latency, pending
//! requests, CRL size, age and time to nextUpdate, certificates expiring within 30 days.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Request counters, by (route, status).
#[derive(Debug, Default)]
pub struct RequestCounters(Mutex<BTreeMap<(&'static str, u16), u64>>);

impl RequestCounters {
    /// Counts one answered request.
    pub fn record(&self, path: &str, status: u16) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry((route(path), status)).or_insert(0) += 1;
        }
    }
}

/// A bounded label for a path (never the certname).
pub(super) fn route(path: &str) -> &'static str {
    let rest = path.strip_prefix("/puppet-ca/v1/").unwrap_or("");
    let first = rest.split('/').next().unwrap_or("");
    match first {
        "certificate" => "certificate",
        "certificate_request" => "certificate_request",
        "certificate_revocation_list" => "certificate_revocation_list",
        "certificate_status" => "certificate_status",
        "certificate_statuses" => "certificate_statuses",
        "certificate_renewal" => "certificate_renewal",
        "expirations" => "expirations",
        "clean" => "clean",
        "sign" => "sign",
        _ if path.starts_with("/status/") => "status",
        _ if path == "/metrics" => "metrics",
        _ if path == "/ocsp" || path.starts_with("/ocsp/") => "ocsp",
        _ if path == "/crl.pem" || path == "/crl.der" => "relying_crl",
        _ => "other",
    }
}

/// The earliest notAfter of the CA chain (Unix seconds).
fn ca_not_after(a: &crate::authority::Authority) -> i64 {
    a.signer()
        .chain_der
        .iter()
        .filter_map(|d| crate::ca::signer::CaCert::from_der(d).ok())
        .map(|(c, _)| c.not_after.unix_timestamp())
        .min()
        .unwrap_or(0)
}

/// GET `/metrics`.
pub(super) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let a = &state.authority;
    let now = a.now().unix_timestamp();
    let window = a.settings().expiry_warning.whole_seconds();
    let snap = a
        .store()
        .metrics(now, window, crate::authority::OCSP_CERTNAME)
        .await?;
    let mut out = String::new();
    write_requests(&mut out, &state);
    write_signing(&mut out, &a.signing_histogram());
    for (name, help, v) in gauges(a, &snap, now, window) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
    }
    let mut r = (StatusCode::OK, out).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    Ok(r)
}

/// The requests answered, by route and status.
fn write_requests(out: &mut String, state: &AppState) {
    let _ = writeln!(
        out,
        "# HELP ca_http_requests_total HTTP requests answered, by route and status."
    );
    let _ = writeln!(out, "# TYPE ca_http_requests_total counter");
    if let Ok(m) = state.requests.0.lock() {
        for ((route, status), n) in m.iter() {
            let _ = writeln!(
                out,
                "ca_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
    }
}

/// The signing-time histogram.
fn write_signing(out: &mut String, h: &crate::authority::HistogramSnapshot) {
    let _ = writeln!(
        out,
        "# HELP ca_signing_seconds Time to issue a certificate (checks, signature, storage)."
    );
    let _ = writeln!(out, "# TYPE ca_signing_seconds histogram");
    for (le, n) in &h.buckets {
        let _ = writeln!(out, "ca_signing_seconds_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "ca_signing_seconds_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "ca_signing_seconds_sum {}", h.sum);
    let _ = writeln!(out, "ca_signing_seconds_count {}", h.count);
}

/// The gauges: (name, help, value).
fn gauges(
    a: &crate::authority::Authority,
    snap: &crate::storage::MetricsSnapshot,
    now: i64,
    window: i64,
) -> [(&'static str, &'static str, i64); 12] {
    [
        (
            "ca_pending_requests",
            "Certificate requests waiting for signing.",
            snap.pending,
        ),
        (
            "ca_certificates",
            "Certificates held (not cleaned).",
            snap.certificates,
        ),
        (
            "ca_certificates_expiring_30d",
            "Certificates whose notAfter is within 30 days.",
            snap.expiring_30d,
        ),
        (
            "ca_certificates_expiring",
            "Current, unrevoked certificates whose notAfter is within the expiry-warning window.",
            snap.expiring,
        ),
        (
            "ca_certificates_expired",
            "Current, unrevoked certificates past their notAfter (not cleaned).",
            snap.expired,
        ),
        ("ca_expiry_warning_seconds", "The expiry-warning window.", window),
        (
            "ca_ca_certificate_seconds_to_expiry",
            "Seconds until the first CA certificate of the chain expires.",
            ca_not_after(a) - now,
        ),
        ("ca_crl_entries", "Entries in the CRL.", snap.revoked),
        ("ca_crl_number", "Number of the current CRL.", snap.crl_number),
        (
            "ca_crl_age_seconds",
            "Seconds since the current CRL's thisUpdate.",
            now - snap.crl_this_update,
        ),
        (
            "ca_crl_seconds_to_next_update",
            "Seconds until the current CRL's nextUpdate.",
            snap.crl_next_update - now,
        ),
        (
            "ca_relying_crl_seconds_to_next_update",
            "Seconds until the relying parties' CRL's nextUpdate (/crl.pem).",
            snap.relying_crl_next_update.unwrap_or(now) - now,
        ),
    ]
}
