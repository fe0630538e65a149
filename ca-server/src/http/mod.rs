//! Transport: axum only. Handlers translate HTTP to one authority call and back.

pub mod error;
pub mod extract;
pub mod identity;
pub mod legacy;
mod metrics;
pub mod ocsp;
mod relying;
mod status;
mod v1;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;

use self::error::{text, ApiError};
use self::extract::{Caller, PeerInfo};
use self::identity::Identified;
use crate::authority::revocations::CrlSnapshot;
use crate::authority::{Authority, AuthorityError};
use crate::config::Limits;
use crate::policy::access::{AccessRequest, AccessRules, Decision, IpPattern, Method};
use crate::tls::TlsState;

/// The API level we implement, reported as `X-Puppet-Version` and as the `ca` service version (≥ 8.4.0
/// makes the real `puppetserver ca` CLI use bulk signing).
pub const PUPPET_VERSION: &str = "8.4.0";

/// Who may do what: swapped whole by a reload.
#[derive(Debug)]
pub struct Access {
    /// Access rules.
    pub rules: AccessRules,
    /// Trust `X-Client-*` headers (from `trusted_proxies` only).
    pub header_cert_info: bool,
    /// The proxies allowed to send `X-Client-*` headers in header mode.
    pub trusted_proxies: Vec<IpPattern>,
}

/// Shared state of the server.
pub struct AppState {
    /// The CA.
    pub authority: Authority,
    /// The access rules and header mode in force (a reload swaps them; each request reads them once).
    pub access: arc_swap::ArcSwap<Access>,
    /// The TLS layer, told about new CRLs.
    pub tls: Arc<TlsState>,
    /// Time allowed for one request.
    pub request_timeout: std::time::Duration,
    /// Time allowed for reading a request body.
    pub body_read_timeout: std::time::Duration,
    /// Requests answered, for `/metrics`.
    pub requests: metrics::RequestCounters,
    /// Whether the database answered the last time it was asked (readiness).
    pub db_ok: std::sync::atomic::AtomicBool,
    /// When the CA chain was stored (`certificate/ca`'s time for `If-Modified-Since`), once read.
    pub ca_written: std::sync::OnceLock<i64>,
    /// The OCSP responder (set at start-up, replaced when its certificate is renewed).
    pub ocsp: arc_swap::ArcSwapOption<ocsp::OcspState>,
    /// Held while the first OCSP request issues the responder.
    pub ocsp_issuing: tokio::sync::Mutex<()>,
}

impl AppState {
    /// Builds the state.
    pub fn new(authority: Authority, access: Access, tls: Arc<TlsState>, limits: &Limits) -> Self {
        AppState {
            authority,
            access: arc_swap::ArcSwap::from_pointee(access),
            tls,
            request_timeout: limits.request_timeout,
            body_read_timeout: limits.body_read_timeout,
            requests: metrics::RequestCounters::default(),
            db_ok: std::sync::atomic::AtomicBool::new(true),
            ca_written: std::sync::OnceLock::new(),
            ocsp: arc_swap::ArcSwapOption::empty(),
            ocsp_issuing: tokio::sync::Mutex::new(()),
        }
    }

    /// Brings the revocation state up to date with the database (see [`Revocations::refresh`]).
    ///
    /// [`Revocations::refresh`]: crate::authority::revocations::Revocations::refresh
    pub async fn refresh(&self) -> Result<Arc<CrlSnapshot>, AuthorityError> {
        self.authority.revocations().refresh().await
    }

    /// Before a handshake or an authenticated request: on SQLite, a revocation by the CLI on the
    /// database is loaded at once (a `stat` of `<database>-crl`, and a read of the database when it
    /// moved: see [`Revocations::refresh_if_changed`]). On a shared PostgreSQL database nothing: the
    /// change feed keeps this replica current (see `server::revocation_feed`), so no connection or
    /// request waits on the database.
    ///
    /// [`Revocations::refresh_if_changed`]: crate::authority::revocations::Revocations::refresh_if_changed
    pub async fn refresh_local(&self) -> Result<(), AuthorityError> {
        if self.authority.store().backend() == crate::storage::Backend::Sqlite {
            self.authority.revocations().refresh_if_changed().await.map(drop)
        } else {
            Ok(())
        }
    }

    /// The revocation state to serve: read from SQLite; on PostgreSQL the snapshot the change feed
    /// keeps current.
    pub async fn current_crl(&self) -> Result<Arc<CrlSnapshot>, AuthorityError> {
        if self.authority.store().backend() == crate::storage::Backend::Postgres {
            if let Some(s) = self.authority.revocations().snapshot() {
                return Ok(s);
            }
        }
        self.authority.revocations().refresh_if_changed().await
    }
}

/// The application: routes under the normalisation, legacy translation and authorization layers.
pub fn app(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/puppet-ca/v1/certificate/{subject}", get(v1::certificate::get))
        .route(
            "/puppet-ca/v1/certificate_request/{subject}",
            get(v1::certificate_request::get)
                .put(v1::certificate_request::put)
                .delete(v1::certificate_request::delete),
        )
        .route(
            "/puppet-ca/v1/certificate_revocation_list/{any}",
            get(v1::crl::get),
        )
        .route("/puppet-ca/v1/certificate_revocation_list", put(v1::crl::put))
        .route(
            "/puppet-ca/v1/certificate_status/{subject}",
            get(v1::certificate_status::get)
                .put(v1::certificate_status::put)
                .delete(v1::certificate_status::delete)
                .fallback(v1::method_not_allowed),
        )
        .route(
            "/puppet-ca/v1/certificate_statuses/{key}",
            get(v1::certificate_status::list).fallback(v1::method_not_allowed),
        )
        .route(
            "/puppet-ca/v1/certificate_statuses/",
            axum::routing::any(v1::missing_segment),
        )
        .route("/puppet-ca/v1/expirations", get(v1::admin::expirations))
        .route("/puppet-ca/v1/clean", put(v1::admin::clean))
        .route("/puppet-ca/v1/sign", post(v1::admin::sign))
        .route("/puppet-ca/v1/sign/all", post(v1::admin::sign_all))
        .route("/puppet-ca/v1/certificate_renewal", post(v1::renewal::post))
        .route("/status/v1/services", get(status::services))
        .route("/status/v1/services/{service}", get(status::service))
        .route("/status/v1/simple", get(status::simple))
        .route("/status/v1/simple/{service}", get(status::simple))
        .route("/metrics", get(metrics::metrics))
        .route("/crl.pem", get(relying::pem))
        .route("/crl.der", get(relying::der))
        .route("/ocsp", post(ocsp::post))
        .route("/ocsp/{*request}", get(ocsp::get))
        .fallback(not_found)
        .with_state(Arc::clone(&state))
        // Layers of the router run once its route is matched (and around the fallback: a path no
        // route serves is authorized like any other, puppetserver answers 403 before 404).
        .layer(middleware::from_fn_with_state(Arc::clone(&state), authorize))
        .layer(middleware::from_fn(metrics::label));
    Router::new()
        .fallback_service(api)
        .layer(middleware::from_fn_with_state(state, deadline))
        .layer(middleware::from_fn(normalize))
        .layer(middleware::map_response(version_header))
}

/// The plain-HTTP listener's application (`ocsp-listen`): OCSP and the relying parties' CRL only,
/// both public by nature, no client certificates.
pub fn plain_app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ocsp", post(ocsp::post))
        .route("/ocsp/{*request}", get(ocsp::get))
        .route("/crl.pem", get(relying::pem))
        .route("/crl.der", get(relying::der))
        .fallback(not_found)
        .with_state(Arc::clone(&state))
        .layer(middleware::from_fn(metrics::label))
        .layer(middleware::from_fn_with_state(state, deadline))
        .layer(middleware::map_response(version_header))
}

/// Bounds a whole request (a slow client cannot hold a worker forever) and logs it.
async fn deadline(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    use tracing::Instrument;
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let route = metrics::RouteSlot::default();
    req.extensions_mut().insert(route.clone());
    // Every log line of this request carries its id; the client sees it in X-Request-Id.
    let span = tracing::info_span!("request", id);
    let mut res =
        match tokio::time::timeout(state.request_timeout, next.run(req).instrument(span.clone())).await {
            Ok(r) => r,
            Err(_) => text(StatusCode::REQUEST_TIMEOUT, "Request timed out"),
        };
    state.requests.record(route.get(), res.status().as_u16());
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        res.headers_mut().insert("x-request-id", v);
    }
    span.in_scope(|| {
        tracing::debug!(%method, %path, status = res.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    });
    res
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "Not Found")
}

async fn version_header(mut res: Response) -> Response {
    res.headers_mut()
        .insert("x-puppet-version", HeaderValue::from_static(PUPPET_VERSION));
    res
}

/// The Puppet environment of a translated legacy request.
#[derive(Debug, Clone)]
pub struct LegacyEnvironment(pub String);

/// Request headers (names and values) beyond this get 431. Jetty's default for puppetserver is 8 KiB;
/// this leaves room for a proxy's `X-Client-Cert`.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses oversized headers, percent-decodes the path, refuses traversal, and translates legacy routes.
async fn normalize(mut req: Request, next: Next) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request header fields too large",
        );
    }
    let path = match legacy::normalize(req.uri().path()) {
        Ok(p) => p,
        Err(legacy::PathError::BadEncoding) => return text(StatusCode::BAD_REQUEST, "Invalid URL encoding"),
        Err(legacy::PathError::Forbidden) => return text(StatusCode::BAD_REQUEST, "Invalid path"),
    };
    let (path, env) = match legacy::translate(&path, req.method()) {
        Some(t) => (t.path, Some(t.environment)),
        None => (path, None),
    };
    let mut pq = legacy::encode_path(&path);
    if let Some(q) = req.uri().query() {
        pq.push('?');
        pq.push_str(q);
    }
    match Uri::builder().path_and_query(pq).build() {
        Ok(uri) => *req.uri_mut() = uri,
        Err(_) => return text(StatusCode::BAD_REQUEST, "Invalid path"),
    }
    if let Some(e) = env {
        req.extensions_mut().insert(LegacyEnvironment(e));
    }
    next.run(req).await
}

fn access_method(m: &axum::http::Method) -> Option<Method> {
    Some(match *m {
        axum::http::Method::GET => Method::Get,
        axum::http::Method::HEAD => Method::Head,
        axum::http::Method::POST => Method::Post,
        axum::http::Method::PUT => Method::Put,
        axum::http::Method::DELETE => Method::Delete,
        _ => return None,
    })
}

fn query_pairs(q: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

/// Identifies the caller and applies the access rules; 403 with puppetserver's body when denied.
async fn authorize(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<PeerInfo>().cloned();
    let (identity, cert_der) = match identity::identify(&state, peer.as_ref(), req.headers()).await {
        Identified::Caller(i, c) => (i, c),
        Identified::BadRequest(e) => return e.into_response(),
        Identified::Refused(r) => return r.into_response(req.uri().path(), req.method().as_str()),
    };
    let caller = Caller {
        identity,
        cert_der,
        addr: peer.as_ref().map(|p| p.addr),
    };
    let path = req.uri().path().to_string();
    let query = query_pairs(req.uri().query());
    let env = req.extensions().get::<LegacyEnvironment>().map(|e| e.0.clone());
    let decision = match access_method(req.method()) {
        None => Decision::Deny {
            rule: "method".into(),
            reason: format!("method {} is not served", req.method()),
        },
        Some(method) => state.access.load().rules.check(&AccessRequest {
            path: &path,
            method,
            query: &query,
            identity: caller.identity.as_ref(),
            ip: caller.addr.map(|a| a.ip()),
            environment: env.as_deref(),
        }),
    };
    if let Decision::Deny { rule, reason } = decision {
        let who = caller
            .identity
            .as_ref()
            .map_or("(unauthenticated)", |i| i.certname.as_str());
        tracing::warn!(%path, method = %req.method(), caller = who, rule = %rule, reason = %reason, "access denied");
        let m = req.method().as_str().to_ascii_lowercase();
        return text(
            StatusCode::FORBIDDEN,
            // puppetserver prints the method as a Clojure keyword.
            format!("Forbidden request: {path} (method :{m}). Please see the server logs for details."),
        );
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// A body read with a size cap and a time limit; 413 beyond the cap (at once when `Content-Length`
/// announces more), 408 when the client is too slow, 400 when the body itself is broken (bad chunking).
pub async fn read_body(
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<axum::body::Bytes, ApiError> {
    use axum::body::HttpBody as _;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than {} KiB", limit / 1024),
        )
    };
    if body.size_hint().lower() > u64::try_from(limit).unwrap_or(u64::MAX) {
        // The answer goes out now; what the client keeps sending is read and dropped for a moment, so
        // that closing the connection does not reset it before the client has read the 413.
        drain_in_background(body);
        return Err(too_large());
    }
    let read = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(r) => r,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "Timed out reading the request body",
            ))
        }
    };
    read.map_err(|e| {
        let inner = e.into_inner();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&*inner);
        while let Some(c) = cause {
            if c.is::<hyper::Error>() {
                return ApiError::bad_request("Could not read the request body");
            }
            cause = c.source();
        }
        too_large()
    })
}

/// Reads and drops what is left of a refused body (at most 16 MiB, for at most 5 s).
fn drain_in_background(mut body: Body) {
    use axum::body::HttpBody as _;
    tokio::spawn(async move {
        let mut seen = 0usize;
        let drain = async {
            while let Some(Ok(frame)) =
                std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
            {
                seen += frame.data_ref().map_or(0, |d| d.len());
                if seen > 16 * 1024 * 1024 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
    });
}

/// A `text/plain` response of PEM.
pub fn pem_response(pem: impl Into<Body>) -> Response {
    let mut r = Response::new(pem.into());
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}
