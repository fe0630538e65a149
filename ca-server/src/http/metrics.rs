//! `/metrics` in Prometheus' text format: requests by route and status, signing latency, pending
//! requests, CRL size, age and time to nextUpdate, certificates expiring within 30 days.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Request counters, by route and status.
#[derive(Debug, Default)]
pub struct RequestCounters(Mutex<BTreeMap<String, BTreeMap<u16, u64>>>);

impl RequestCounters {
    /// Counts one answered request on `route` (a route's template, or [`UNROUTED`]); the route's
    /// name is copied only the first time it is seen.
    pub fn record(&self, route: &str, status: u16) {
        if let Ok(mut m) = self.0.lock() {
            let statuses = match m.get_mut(route) {
                Some(s) => s,
                None => m.entry(route.to_owned()).or_default(),
            };
            *statuses.entry(status).or_insert(0) += 1;
        }
    }
}

/// The route label of a request no route served (an unknown path, or a request that timed out
/// before it was routed; a request `normalize` refuses, for its headers or its path's encoding, is
/// not counted).
pub(super) const UNROUTED: &str = "other";

/// Where the router leaves the template of the route it matched (axum's [`MatchedPath`]:
/// `/puppet-ca/v1/certificate_status/{subject}`, never the certname) for the request's counter.
#[derive(Debug, Clone, Default)]
pub(super) struct RouteSlot(Arc<OnceLock<MatchedPath>>);

impl RouteSlot {
    /// The label: the matched route's template, or [`UNROUTED`].
    pub(super) fn get(&self) -> &str {
        self.0.get().map_or(UNROUTED, MatchedPath::as_str)
    }
}

/// Leaves the matched route's template in the request's [`RouteSlot`] (a layer of the router: it
/// runs once the route is matched).
pub(super) async fn label(req: Request, next: Next) -> Response {
    if let (Some(slot), Some(matched)) = (
        req.extensions().get::<RouteSlot>(),
        req.extensions().get::<MatchedPath>(),
    ) {
        let _ = slot.0.set(matched.clone());
    }
    next.run(req).await
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
    write_histogram(
        &mut out,
        "ca_signing_seconds",
        "Time to issue a certificate (checks, signature, storage).",
        &a.signing_histogram(),
    );
    write_histogram(
        &mut out,
        "ca_signing_round_seconds",
        "The signing pipeline's write transactions (storing signed certificates; on SQLite also reserving serials), start to commit.",
        &a.signing_round_histogram(),
    );
    let (signatures, cpu) = crate::ca::signer::signatures();
    let counters = [
        (
            "ca_key_signatures_total",
            "Signatures made with the CA key by this process (certificates and CRLs; OCSP answers are signed by the responder's own key).",
            signatures.to_string(),
        ),
        (
            "ca_key_signature_cpu_seconds_total",
            "CPU time of this process's threads in those signatures: the signing primitive alone, on each thread's CPU clock.",
            format!("{:.9}", cpu.as_secs_f64()),
        ),
    ];
    for (name, help, v) in counters {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
    }
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
        for (route, status, n) in m
            .iter()
            .flat_map(|(r, s)| s.iter().map(move |(st, n)| (r, st, n)))
        {
            let _ = writeln!(
                out,
                "ca_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
    }
}

/// A histogram `name` (seconds).
fn write_histogram(out: &mut String, name: &str, help: &str, h: &crate::authority::HistogramSnapshot) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (le, n) in &h.buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum {}", h.sum);
    let _ = writeln!(out, "{name}_count {}", h.count);
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
