//! The HTTPS server: a hand-written accept loop over tokio-rustls (peer certificate per connection,
//! hot-swapped TLS config), hyper HTTP/1.1, graceful shutdown.

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::authority::{self, Authority, SetupOptions};
use crate::ca::signer::parse_cert_bundle;
use crate::clock::Clock;
use crate::config::{AuthSource, Settings};
use crate::http::extract::PeerInfo;
use crate::http::{self, AppState};
use crate::policy::access::AccessRules;
use crate::tls::TlsState;

/// Why the server cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The CA could not be opened or created.
    #[error(transparent)]
    Authority(#[from] crate::authority::AuthorityError),
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The access rules contradict a setting.
    #[error("{0}")]
    Rules(String),
    /// The access rules file is invalid.
    #[error("{path}")]
    AuthConf {
        /// The file.
        path: String,
        /// What is wrong in it.
        source: crate::policy::access::AccessConfigError,
    },
    /// The data directory cannot serve the CA (a replica missing its key).
    #[error("{0}")]
    Setup(String),
    /// Socket errors.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The configuration file.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A file the server needs (the access rules) could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A listening socket could not be bound.
    #[error("cannot listen on {what}")]
    Listen {
        /// The address, and which setting named it.
        what: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Opens the CA in the data directory, or creates one there (as `ca setup`) when it is empty.
pub async fn open_or_setup(settings: &Settings, clock: Arc<dyn Clock>) -> Result<Authority, ServeError> {
    let dir = settings.data_dir();
    // A replica on a shared database: the CA is there; its key is a copy of ca_key.pem, or in the
    // PKCS#11 token every replica uses.
    let mut joins = false;
    if !dir.has_ca() {
        if let Some(url) = dir.database_url() {
            joins = crate::storage::Store::holds_ca(&dir)
                .await
                .map_err(crate::authority::AuthorityError::from)?;
            if joins && settings.ca.pkcs11.is_none() {
                return Err(ServeError::Setup(format!(
                    "the database {} holds a CA but {} has no ca_key.pem: to join as a replica, copy \
                     ca_key.pem (mode 0600; and root_key.pem for an intermediate CA) from the first \
                     replica into it",
                    crate::storage::redact_url(url),
                    dir.root().display()
                )));
            }
        }
    }
    if dir.has_ca() || joins {
        let authority = Authority::open(&dir, settings.ca.clone(), clock).await?;
        // After an import there is no server or admin identity yet.
        let certname = settings.certname.clone().unwrap_or_else(authority::host_fqdn);
        let made = authority
            .ensure_identities(
                &certname,
                &settings.dns_alt_names,
                settings.key_type,
                settings.server_key_type,
            )
            .await?;
        if !made.is_empty() {
            tracing::info!(issued = ?made, "issued the missing server/admin certificates");
        }
        return Ok(authority);
    }
    let certname = settings.certname.clone().unwrap_or_else(authority::host_fqdn);
    let mut opts = SetupOptions::new(&certname);
    opts.dns_alt_names = settings.dns_alt_names.clone();
    opts.key_type = settings.key_type;
    opts.server_key_type = Some(settings.server_key_type);
    // A passphrase given to a server with no CA yet is meant for the new CA's key.
    opts.encrypt_key = settings.ca.key_passphrase.is_given();
    tracing::info!(data_dir = %dir.root().display(), %certname, encrypted_key = opts.encrypt_key, "no CA in the data directory: creating one");
    let (authority, report) = authority::setup(&dir, &opts, settings.ca.clone(), clock).await?;
    tracing::info!(ca = %report.ca_name, server = %report.server_certname, admin = %report.admin_certname, "CA created");
    Ok(authority)
}

/// Loads the configured access rules (and checks that header mode names its trusted proxies).
pub fn load_rules(settings: &Settings) -> Result<AccessRules, ServeError> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).map_err(|source| ServeError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    let rules = match &settings.auth {
        AuthSource::Defaults => AccessRules::puppetserver_defaults(),
        AuthSource::Hocon(p) => {
            AccessRules::from_hocon(&read(p)?).map_err(|source| ServeError::AuthConf {
                path: p.display().to_string(),
                source,
            })?
        }
        AuthSource::Legacy(p) => {
            AccessRules::from_legacy(&read(p)?).map_err(|source| ServeError::AuthConf {
                path: p.display().to_string(),
                source,
            })?
        }
    };
    let header_mode = settings.allow_header_cert_info || rules.allow_header_cert_info();
    if header_mode && settings.trusted_proxies.is_empty() {
        return Err(ServeError::Rules(
            "allow-header-cert-info is on but [authorization] trusted-proxies is empty: list the \
             addresses of the proxies allowed to send X-Client-* headers (anyone else who could send \
             them could claim any identity)"
                .into(),
        ));
    }
    Ok(rules)
}

/// The access rules and header mode of `settings` (a warning names the trusted proxies in header mode).
fn load_access(settings: &Settings) -> Result<http::Access, ServeError> {
    let rules = load_rules(settings)?;
    let header_cert_info = settings.allow_header_cert_info || rules.allow_header_cert_info();
    if header_cert_info {
        let proxies: Vec<String> = settings.trusted_proxies.iter().map(ToString::to_string).collect();
        tracing::warn!(
            trusted_proxies = %proxies.join(", "),
            "header mode: X-Client-* headers from these addresses decide who the caller is; make sure \
             nobody else can connect from them"
        );
    }
    Ok(http::Access {
        rules,
        header_cert_info,
        trusted_proxies: settings.trusted_proxies.clone(),
    })
}

/// Re-reads the configuration file, the auth.conf it names, and the server's certificate and key, and
/// puts them in force for the next request and handshake, or none of them: the new configuration is
/// checked whole first, and a broken one leaves the running one in force. Open connections stay.
/// What only a restart changes (listen address, data directory, database, limits, the server's
/// certname) is kept. Returns the settings now in force.
pub async fn reload(state: &AppState, running: &Settings) -> Result<Settings, ServeError> {
    let new = running.reloaded()?;
    let access = load_access(&new)?;
    let identity = state.tls.load_identity(&new.data_dir())?;
    state.tls.install_identity(identity)?;
    state.authority.reload_settings(new.ca.clone());
    state.authority.revocations().settings_changed();
    state.access.store(Arc::new(access));
    Ok(new)
}

/// The `STATUS=` line for systemd: where it listens, the CA certificate's expiry, the CRL's freshness.
fn status_line(state: &AppState, listen: std::net::SocketAddr) -> String {
    let day = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t)
            .map(|d| d.date().to_string())
            .unwrap_or_else(|_| "?".into())
    };
    let ca_until = x509_parser::parse_x509_certificate(&state.authority.signer().cert.der)
        .map(|(_, c)| day(c.validity().not_after.timestamp()))
        .unwrap_or_else(|_| "?".into());
    let crl = state.authority.revocations().snapshot().map_or_else(
        || "no CRL loaded".to_string(),
        |s| format!("CRL {} next update {}", s.number(), day(s.row().next_update)),
    );
    format!("serving on {listen}; CA certificate valid until {ca_until}; {crl}")
}

/// SIGHUP (`systemctl reload`): [`reload`], with one log line either way.
async fn reload_on_sighup(
    state: Arc<AppState>,
    mut running: Settings,
    notifier: Arc<crate::notify::Notifier>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: reloading needs a restart");
        return;
    };
    while hup.recv().await.is_some() {
        let file = running
            .config_file
            .as_ref()
            .map_or_else(|| "(built-in defaults)".to_string(), |p| p.display().to_string());
        notifier.send("RELOADING=1");
        let result = reload(&state, &running).await;
        notifier.send(&format!(
            "READY=1\nSTATUS={}",
            status_line(&state, running.listen)
        ));
        match result {
            Ok(new) => {
                running = new;
                tracing::info!(config = %file, names = %state.tls.server_names().join(", "), "reloaded: configuration, access rules, signing policy, autosign and the server certificate in force for new requests");
            }
            Err(e) => {
                tracing::error!(config = %file, error = %crate::error::Chain(&e), "reload refused: the running configuration stays in force");
            }
        }
    }
}

/// Re-signs the CRL well before its nextUpdate (or the relying parties' CRL's): checked at start and
/// then every hour (or a tenth of the shorter CRL lifetime when that is shorter).
async fn crl_upkeep(state: Arc<AppState>) {
    let settings = state.authority.settings();
    let lifetime = settings
        .crl_lifetime
        .min(settings.relying_crl_lifetime)
        .whole_seconds()
        .max(10);
    let period =
        std::time::Duration::from_secs(u64::try_from((lifetime / 10).clamp(1, 3600)).unwrap_or(3600));
    loop {
        match state.authority.refresh_crl_if_due().await {
            Ok(Some(n)) => {
                tracing::info!(crl_number = n, "CRL re-signed before its nextUpdate");
                if let Err(e) = state.refresh().await {
                    tracing::warn!(error = %crate::error::Chain(&e), "the new CRL is stored but not served yet (the next refresh takes it)");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %crate::error::Chain(&e), "CRL upkeep failed"),
        }
        match state.authority.refresh_root_crl_if_due().await {
            Ok(Some(n)) => {
                tracing::info!(crl_number = n, "root CRL re-signed before its nextUpdate");
                if let Err(e) = state.refresh().await {
                    tracing::warn!(error = %crate::error::Chain(&e), "the new CRL is stored but not served yet (the next refresh takes it)");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %crate::error::Chain(&e), "root CRL upkeep failed"),
        }
        renew_own_certificates_if_due(&state).await;
        refresh_ocsp_responder(&state, false).await;
        if let Err(e) = state.authority.warn_of_expiry().await {
            tracing::error!(error = %crate::error::Chain(&e), "could not check what expires soon");
        }
        tokio::time::sleep(period).await;
    }
}

/// Puts this server's OCSP responder in force: the one in the data directory, or (`issue`) a new one
/// when it is missing, another CA's or near its end. A responder in force is always renewed. Without
/// `issue` and none held, the first OCSP request issues it (see `http::ocsp`).
async fn refresh_ocsp_responder(state: &AppState, issue: bool) {
    let issue = issue || state.ocsp.load().is_some();
    match state.authority.ocsp_responder("ca-server", issue).await {
        Ok(Some((responder, issued))) => {
            if issued || state.ocsp.load().is_none() {
                if issued {
                    tracing::info!(certificate = %state.authority.dir().ocsp_cert().display(), "issued the OCSP responder's certificate");
                }
                state
                    .ocsp
                    .store(Some(Arc::new(http::ocsp::OcspState::new(responder))));
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %crate::error::Chain(&e), "no OCSP responder: OCSP requests are answered 503")
        }
    }
}

/// Renews the server's and the admin's certificates (same key, same names) when less than 30 days, or
/// a third of their lifetime, remain; the new server certificate is served from the next handshake.
async fn renew_own_certificates_if_due(state: &AppState) {
    use crate::authority::OwnCertificate;
    let dir = state.authority.dir();
    let now = state.authority.now().unix_timestamp();
    for (which, path) in [
        (OwnCertificate::Server, dir.server_cert()),
        (OwnCertificate::Admin, dir.admin_cert()),
    ] {
        let Some((not_before, not_after, aki)) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| pem::parse(t).ok())
            .and_then(|p| {
                let (_, c) = x509_parser::parse_x509_certificate(p.contents()).ok()?;
                let aki = crate::ca::digest::authority_key_id(c.extensions());
                Some((
                    c.validity().not_before.timestamp(),
                    c.validity().not_after.timestamp(),
                    aki,
                ))
            })
        else {
            continue;
        };
        let window = (30 * 86_400).min((not_after - not_before) / 3);
        // After a key rollover has finished, a certificate of the old key is re-issued under the new
        // one (while it switches, the servers keep theirs under the old key, which every agent trusts).
        let old_key = !state.authority.rollover_switched()
            && aki.is_some_and(|k| k != state.authority.signer().cert.key_id);
        if not_after - now >= window && !old_key {
            continue;
        }
        match state.authority.renew_own_certificate("ca-server", which).await {
            Ok(issued) => {
                tracing::info!(certificate = %path.display(), serial = issued.serial, "renewed before expiry");
                if which == OwnCertificate::Server {
                    let installed = state
                        .tls
                        .load_identity(&dir)
                        .and_then(|id| state.tls.install_identity(id));
                    if let Err(e) = installed {
                        tracing::error!(error = %crate::error::Chain(&e), "the renewed server certificate could not be put in force");
                    }
                }
            }
            Err(e) => {
                tracing::error!(certificate = %path.display(), error = %crate::error::Chain(&e), "could not renew")
            }
        }
    }
}

/// On a shared (PostgreSQL) database: keeps this replica's revocations and CRL current with the
/// other writers', woken by their transactions' notifications (or every 500 ms should one be lost),
/// and reports whether the database answers (`/status/v1/simple`). Nothing on SQLite.
async fn revocation_feed(state: Arc<AppState>) {
    use std::sync::atomic::Ordering;
    let Some(mut feed) = state
        .authority
        .store()
        .change_feed(std::time::Duration::from_millis(500))
    else {
        return;
    };
    loop {
        let res = match feed.wait().await {
            Ok(()) => match tokio::time::timeout(std::time::Duration::from_secs(2), state.refresh()).await {
                Ok(r) => r.map(drop).map_err(|e| crate::error::Chain(&e).to_string()),
                Err(_) => {
                    // A server that stopped answering without closing its connections: look for
                    // the one that qualifies now (a promoted standby) instead of waiting on it.
                    state.authority.store().suspect_failover();
                    Err("the database did not answer within 2 s".to_string())
                }
            },
            Err(e) => Err(crate::error::Chain(&e).to_string()),
        };
        match res {
            Ok(()) => {
                if !state.db_ok.swap(true, Ordering::Relaxed) {
                    tracing::info!("the database answers again: revocations and CRL are current");
                }
            }
            Err(e) => {
                if state.db_ok.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = %e, "the database cannot be reached: serving the CA certificate and the last CRL, refusing changes until it is back");
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
}

/// The sockets a server serves on, bound by its caller (so that a caller binding port 0 knows the
/// port before anything is served).
#[derive(Debug)]
pub struct Listeners {
    /// The Puppet CA API (TLS).
    pub api: TcpListener,
    /// OCSP and the relying parties' CRL over plain HTTP (`ocsp-listen`), when configured.
    pub plain: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `settings`: `listen` and `ocsp-listen`.
    pub async fn bind(settings: &Settings) -> Result<Listeners, ServeError> {
        let api = TcpListener::bind(settings.listen)
            .await
            .map_err(|source| ServeError::Listen {
                what: settings.listen.to_string(),
                source,
            })?;
        let plain = match settings.ocsp_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Listen {
                        what: format!("{addr} (ocsp-listen)"),
                        source,
                    })?,
            ),
            None => None,
        };
        Ok(Listeners { api, plain })
    }
}

/// Serves until `shutdown` resolves, then lets open requests finish (up to 10 s).
pub async fn serve(
    settings: Settings,
    authority: Authority,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let Listeners { api: listener, plain } = listeners;
    let access = load_access(&settings)?;
    let dir = settings.data_dir();
    // `ca` in local mode then judges with this configuration, wherever the file is.
    if let Err(e) = crate::config::record_server_config(&settings.data_dir, settings.config_file.as_deref()) {
        tracing::warn!(error = %crate::error::Chain(&e), data_dir = %settings.data_dir.display(), "could not record the configuration file in the data directory (`ca` in local mode then reads <data-dir>/config.toml)");
    }
    let chain =
        parse_cert_bundle(&authority.signer().chain_pem).map_err(crate::authority::AuthorityError::from)?;
    // The revocation state is loaded before anything is served.
    authority.revocations().refresh().await?;
    let tls = Arc::new(TlsState::new(
        &dir,
        &chain,
        &authority.trust_anchors(),
        Arc::clone(authority.revocations()),
    )?);
    let state = Arc::new(AppState::new(authority, access, tls, &settings.limits));
    // The CA chain's time for If-Modified-Since, read now so it is served without the database too.
    if let Ok(Some(at)) = state.authority.store().ca_stored_at().await {
        let _ = state.ca_written.set(at);
    }
    // Issued now where OCSP is clearly wanted (a listener for it, or its URL in certificates); else
    // by the first OCSP request.
    let ocsp_wanted = settings.ocsp_listen.is_some() || !settings.ca.issuer_urls.ocsp.is_empty();
    refresh_ocsp_responder(&state, ocsp_wanted).await;
    let plain = match plain {
        Some(l) => {
            tracing::info!(listen = %l.local_addr()?, "serving OCSP and the relying parties' CRL over plain HTTP");
            let app = http::plain_app(Arc::clone(&state));
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(l, app).await {
                    tracing::error!(error = %crate::error::Chain(&e), "the plain-HTTP listener stopped");
                }
            }))
        }
        None => None,
    };
    let app = http::app(Arc::clone(&state));
    let upkeep = tokio::spawn(crl_upkeep(Arc::clone(&state)));
    let notifier = Arc::new(crate::notify::Notifier::from_env());
    let reloads = tokio::spawn(reload_on_sighup(
        Arc::clone(&state),
        settings.clone(),
        Arc::clone(&notifier),
    ));
    let feed = tokio::spawn(revocation_feed(Arc::clone(&state)));
    let limits = settings.limits.clone();
    let slots = Arc::new(Slots::new(
        limits.max_connections,
        limits.max_connections_per_address,
    ));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let listen = listener.local_addr()?;
    // The listener accepts from here on: systemd may start what depends on us.
    notifier.send(&format!("READY=1\nSTATUS={}", status_line(&state, listen)));
    // Keep-alives from now on (systemd's watchdog counts from READY).
    let watchdog = notifier.watchdog_interval().map(|every| {
        let n = Arc::clone(&notifier);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                n.send("WATCHDOG=1");
            }
        })
    });
    tracing::info!(
        listen = %listen,
        names = %state.tls.server_names().join(", "),
        "serving the Puppet CA API; agents can reach it by these names (its certificate's alt names)"
    );
    loop {
        let (tcp, addr) = tokio::select! {
            () = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %crate::error::Chain(&e), "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        // Full (in all, or for this source address): closed at once rather than left to grow the
        // kernel's backlog, so that one client's idle sockets cannot delay everybody else.
        let Some(slot) = Slots::take(&slots, addr.ip()) else {
            tracing::debug!(%addr, "connection limit reached: closed");
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let state = Arc::clone(&state);
        let app = app.clone();
        let watcher = graceful.watcher();
        let hrt = limits.header_read_timeout;
        let handshake_timeout = limits.handshake_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            // A CRL published by anyone (this server or the CLI) is in force before the handshake.
            if let Err(e) = state.refresh_local().await {
                tracing::warn!(error = %crate::error::Chain(&e), "could not refresh the CRL");
            }
            let acceptor = state.tls.acceptor();
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::info!(%addr, error = %crate::error::Chain(&e), "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::info!(%addr, "TLS handshake timed out");
                    return;
                }
            };
            let cert = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(crate::tls::PeerCert::read(c.to_vec())));
            // A resumed session skips the certificate verifier: its certificate is checked again here
            // against the current revocations and validity dates (and on every request after).
            if let Some(cert) = &cert {
                let now = state.authority.now().unix_timestamp();
                if let Err(why) = state.tls.check_peer(cert, now) {
                    tracing::info!(%addr, reason = %why, "client certificate refused after the handshake: closed");
                    return;
                }
            }
            let peer = PeerInfo { addr, cert };
            let svc = app.map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(peer.clone());
                req
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(hrt)
                // Bounds what hyper buffers for a request head; our 431 check (32 KiB) answers before it.
                .max_buf_size(128 * 1024)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc));
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%addr, error = %crate::error::Chain(&e), "connection ended with an error");
            }
        });
    }
    drop(listener);
    if let Some(p) = plain {
        p.abort();
    }
    upkeep.abort();
    feed.abort();
    reloads.abort();
    if let Some(w) = watchdog {
        w.abort();
    }
    notifier.send("STOPPING=1");
    tracing::info!("shutting down: waiting for open requests");
    if tokio::time::timeout(std::time::Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("open connections did not finish within 10 s");
    }
    state.authority.store().close().await;
    Ok(())
}

/// Connection slots: at most `total` at once, and at most `per_address` from one source address.
struct Slots {
    total: usize,
    per_address: usize,
    held: std::sync::Mutex<(usize, std::collections::HashMap<IpAddr, usize>)>,
}

/// One connection's slot, given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    ip: IpAddr,
}

impl Slots {
    fn new(total: usize, per_address: usize) -> Self {
        Slots {
            total,
            per_address,
            held: std::sync::Mutex::new((0, std::collections::HashMap::new())),
        }
    }

    fn take(slots: &Arc<Slots>, ip: IpAddr) -> Option<Slot> {
        let mut held = slots.held.lock().ok()?;
        let (total, by_ip) = &mut *held;
        let mine = by_ip.entry(ip).or_insert(0);
        if *total >= slots.total || *mine >= slots.per_address {
            if *mine == 0 {
                by_ip.remove(&ip);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Slot {
            slots: Arc::clone(slots),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut held) = self.slots.held.lock() {
            let (total, by_ip) = &mut *held;
            *total = total.saturating_sub(1);
            if let Some(n) = by_ip.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    by_ip.remove(&self.ip);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_cap_in_all_and_per_address() {
        let slots = Arc::new(Slots::new(3, 2));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let a1 = Slots::take(&slots, a).unwrap();
        let _a2 = Slots::take(&slots, a).unwrap();
        assert!(Slots::take(&slots, a).is_none(), "a third from one address");
        let b1 = Slots::take(&slots, b).unwrap();
        assert!(Slots::take(&slots, b).is_none(), "over the total");
        drop(a1);
        let _a3 = Slots::take(&slots, a).unwrap();
        drop(b1);
        assert_eq!(slots.held.lock().unwrap().1.get(&b), None);
    }
}
