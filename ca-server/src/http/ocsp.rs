//! OCSP (RFC 6960): `POST /ocsp` with a DER request, `GET /ocsp/{base64 request}`, on the server's
//! port and, with `ocsp-listen`, on a plain-HTTP listener (OCSP is signed, and clients such as
//! nginx's stapling only speak HTTP to responders). Answers are signed by this server's delegated
//! responder (never the CA key). An answer to a request without a nonce is kept and served again, with
//! no signature, until a new CRL (a revocation anywhere) or an hour passes; a nonce is echoed, which
//! takes one EC P-256 signature.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error::text;
use super::v1::crl::off_executor;
use super::{read_body, AppState};
use crate::ca::ocsp::{self, Responder, SerialStatus};

/// How long an answer is valid (its nextUpdate) and served again from memory.
const VALIDITY_SECS: i64 = 3_600;
/// Answers kept; the whole memory is dropped when it is full.
const KEPT: usize = 16_384;
/// Largest request read.
const MAX_REQUEST: usize = 64 * 1024;

/// An answer kept: the CRL number it was made under, its thisUpdate and its DER.
#[derive(Clone)]
struct Kept {
    crl_number: u64,
    at: i64,
    der: Arc<[u8]>,
}

/// The responder and the answers it keeps.
pub struct OcspState {
    responder: Responder,
    /// By request DER.
    kept: Mutex<HashMap<Vec<u8>, Kept>>,
}

impl OcspState {
    /// Serving as `responder`.
    pub fn new(responder: Responder) -> OcspState {
        OcspState {
            responder,
            kept: Mutex::new(HashMap::new()),
        }
    }
}

/// POST `/ocsp` (`application/ocsp-request`).
pub async fn post(State(state): State<Arc<AppState>>, body: Body) -> Response {
    match read_body(body, MAX_REQUEST, state.body_read_timeout).await {
        Ok(b) => answer(&state, b.to_vec()).await,
        Err(e) => e.into_response(),
    }
}

/// GET `/ocsp/{request}`: the DER request, base64 and then percent-encoded (RFC 6960 appendix A).
pub async fn get(State(state): State<Arc<AppState>>, OriginalUri(uri): OriginalUri) -> Response {
    use base64::Engine as _;
    let raw = uri.path().strip_prefix("/ocsp/").unwrap_or_default();
    let decoded = super::extract::percent_decode(raw).unwrap_or_default();
    let b64: Vec<u8> = decoded.into_iter().filter(|b| !b.is_ascii_whitespace()).collect();
    match base64::engine::general_purpose::STANDARD.decode(&b64) {
        Ok(der) => answer(&state, der).await,
        Err(_) => ocsp_response(ocsp::malformed()),
    }
}

fn ocsp_response(der: impl Into<Arc<[u8]>>) -> Response {
    let der: Arc<[u8]> = der.into();
    let mut r = Response::new(Body::from(axum::body::Bytes::from_owner(der)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ocsp-response"),
    );
    r
}

/// The responder in force, issued now when there is none yet (one issuance at a time).
async fn responder(state: &AppState) -> Option<Arc<OcspState>> {
    if let Some(o) = state.ocsp.load_full() {
        return Some(o);
    }
    let _one = state.ocsp_issuing.lock().await;
    if let Some(o) = state.ocsp.load_full() {
        return Some(o);
    }
    match state.authority.ocsp_responder("ca-server", true).await {
        Ok(Some((r, issued))) => {
            if issued {
                tracing::info!("issued the OCSP responder's certificate (first OCSP request)");
            }
            let o = Arc::new(OcspState::new(r));
            state.ocsp.store(Some(Arc::clone(&o)));
            Some(o)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %crate::error::Chain(&e), "no OCSP responder");
            None
        }
    }
}

async fn answer(state: &AppState, der: Vec<u8>) -> Response {
    let Some(o) = responder(state).await else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "The OCSP responder is not ready.",
        );
    };
    let Some(question) = o.responder.read(&der) else {
        return ocsp_response(ocsp::malformed());
    };
    let crl_number = match state.current_crl().await {
        Ok(c) => c.number(),
        Err(e) => return internal_error(&e),
    };
    let now = state.authority.now().unix_timestamp();
    let keep = !question.has_nonce();
    if let Some(kept) = o.kept(&der, crl_number, now).filter(|_| keep) {
        return ocsp_response(kept);
    }
    let statuses = match statuses(state, &question).await {
        Ok(s) => s,
        Err(e) => return internal_error(&e),
    };
    let o2 = Arc::clone(&o);
    let signed = off_executor(move || {
        o2.responder
            .answer(&question, &statuses, now, now + VALIDITY_SECS)
    });
    let answer: Arc<[u8]> = match signed.await {
        Ok(Ok(a)) => a.into(),
        Ok(Err(e)) => return internal_error(&e),
        Err(_) => return ocsp_response(ocsp::internal_error()),
    };
    if keep {
        o.keep(der, crl_number, now, &answer);
    }
    ocsp_response(answer)
}

/// What the database says of each certificate asked about.
async fn statuses(
    state: &AppState,
    question: &ocsp::Question,
) -> Result<Vec<SerialStatus>, crate::authority::AuthorityError> {
    let mut statuses = Vec::with_capacity(question.asked.len());
    for a in &question.asked {
        statuses.push(match a.serial {
            None => SerialStatus::Unknown,
            Some(serial) => state.authority.serial_status(serial).await?,
        });
    }
    Ok(statuses)
}

/// OCSP's own "internal error" answer (HTTP 200, as RFC 6960 wants), the cause logged.
fn internal_error(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "OCSP: no answer");
    ocsp_response(ocsp::internal_error())
}

impl OcspState {
    /// The kept answer to `der`, when made under CRL `crl_number` less than half its validity ago.
    fn kept(&self, der: &[u8], crl_number: u64, now: i64) -> Option<Arc<[u8]>> {
        let kept = self.kept.lock().ok()?.get(der).cloned()?;
        (kept.crl_number == crl_number && now - kept.at < VALIDITY_SECS / 2).then_some(kept.der)
    }

    /// Keeps `answer` to `der` (all are dropped when the memory is full).
    fn keep(&self, der: Vec<u8>, crl_number: u64, now: i64, answer: &Arc<[u8]>) {
        if let Ok(mut k) = self.kept.lock() {
            if k.len() >= KEPT {
                k.clear();
            }
            let kept = Kept {
                crl_number,
                at: now,
                der: Arc::clone(answer),
            };
            k.insert(der, kept);
        }
    }
}
