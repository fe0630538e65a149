//! The CA's operations, shared by the server and the CLI: each one runs the engine and the policy in
//! write transactions (most in one; a signing in two, the serial's reservation then the certificate,
//! see `batch.rs`; concurrent submissions share one, see `submits.rs`) and leaves an audit row,
//! whatever the outcome.

mod ahead;
mod autosign;
mod batch;
mod error;
mod expiry;
mod explain;
mod extend;
mod infra;
mod keyfile;
mod latency;
mod lifecycle;
mod ocsp;
mod parents;
mod publish;
pub mod revocations;
mod rollover;
mod setup;
pub mod status;
mod submits;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::ca::crl::Reason;
use crate::ca::csr::{self, Csr, San};
use crate::ca::issue::{self, Validity};
use crate::ca::keys::{self, KeyType};
use crate::ca::passphrase::PassphraseSource;
use crate::ca::{names, pem_encode, CaError, CaSigner};
use crate::clock::Clock;
use crate::datadir::DataDir;
use crate::policy::{Permit, SigningOptions, SigningPolicy};
use crate::storage::{AuditRecord, AuditSeal, CertRow, Store, StoreError, WriteTx};

pub use autosign::AutosignVerdict;
pub use error::AuthorityError;
pub use expiry::{days_left, Expiring, ExpiringKind};
pub use explain::{ExplainItem, Explanation};
pub use extend::Extension;
pub use keyfile::{rewrite_keys, RewrittenKey};
pub use latency::HistogramSnapshot;
pub use lifecycle::{BatchOutcome, SerialRevocation};
pub use ocsp::OCSP_CERTNAME;
pub use revocations::RelyingCrl;
pub use rollover::RolloverStarted;
pub use setup::{host_fqdn, setup, OwnCertificate, SetupOptions, SetupReport, ADMIN_CERTNAME};
pub use status::{CertStatus, ListFilter};

/// Settings of the CA's behaviour (from the config file or defaults).
#[derive(Debug, Clone)]
pub struct CaSettings {
    /// Validity of issued certificates (`ca-ttl`), default 5 years.
    pub cert_ttl: Duration,
    /// How far ahead `nextUpdate` of a new CRL lies, default 5 years.
    pub crl_lifetime: Duration,
    /// How far ahead `nextUpdate` of the relying parties' CRL (`/crl.pem`) lies, default 7 days: it
    /// is re-signed with every CRL and when half of this has passed.
    pub relying_crl_lifetime: Duration,
    /// Warn (log, `/metrics`, `ca list`) of what expires within this, default 30 days.
    pub expiry_warning: Duration,
    /// CRL Distribution Points and Authority Information Access URLs written into issued
    /// certificates (none by default, as puppetserver).
    pub issuer_urls: issue::IssuerUrls,
    /// The CA key in a PKCS#11 token instead of `ca_key.pem` (`[ca.pkcs11]`).
    pub pkcs11: Option<crate::ca::token::Pkcs11Settings>,
    /// The signing policy: global switches and per-pattern rules.
    pub signing: SigningPolicy,
    /// Accept a CSR for a name that already has a certificate or request.
    pub allow_duplicate_certs: bool,
    /// Serve `/certificate_renewal` (Puppet 8 agents renew their own certificate). On by default,
    /// unlike puppetserver: renewal re-issues only a caller's current, unrevoked certificate as the
    /// database holds it, so it cannot revive or widen anything.
    pub allow_auto_renewal: bool,
    /// Validity of renewed certificates.
    pub auto_renewal_cert_ttl: Duration,
    /// Autosign: off, everything, or a path (allow-list file or executable).
    pub autosign: Autosign,
    /// How long an autosign executable may run.
    pub autosign_timeout: std::time::Duration,
    /// How many autosign executables may run at once; further submissions wait their turn.
    pub autosign_max_concurrent: usize,
    /// Where the passphrase of an encrypted CA key (and root key) comes from.
    pub key_passphrase: PassphraseSource,
    /// Serve the infrastructure CRL (revocations of the infrastructure nodes' certificates only) to
    /// agents instead of the full CRL, as puppetserver's `enable-infra-crl`.
    pub enable_infra_crl: bool,
}

/// The `autosign` setting (§4.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Autosign {
    /// Never (the default).
    #[default]
    Off,
    /// Every request (`autosign = true`).
    All,
    /// An allow-list file (puppet's autosign.conf), or an executable policy when the file is executable.
    Path(std::path::PathBuf),
}

impl CaSettings {
    /// Loads a PEM key of the data directory, decrypting it with the configured passphrase when it is
    /// encrypted (off the executor: the key derivation takes a fraction of a second). `what` names it in
    /// errors.
    pub(crate) async fn load_key(
        &self,
        pem: String,
        what: &'static str,
    ) -> Result<rcgen::KeyPair, AuthorityError> {
        let passphrase = if keys::is_encrypted(&pem) {
            self.key_passphrase.read()?
        } else {
            None
        };
        blocking(move || keys::load_key(&pem, passphrase.as_ref(), what)).await
    }
}

/// Autosign executables running at once unless `autosign-max-concurrent` says otherwise.
pub const DEFAULT_AUTOSIGN_MAX_CONCURRENT: usize = 4;

impl Default for CaSettings {
    fn default() -> Self {
        CaSettings {
            cert_ttl: Duration::days(5 * 365),
            crl_lifetime: Duration::days(5 * 365),
            relying_crl_lifetime: Duration::days(7),
            expiry_warning: Duration::days(30),
            issuer_urls: issue::IssuerUrls::default(),
            pkcs11: None,
            signing: SigningPolicy::default(),
            allow_duplicate_certs: false,
            allow_auto_renewal: true,
            auto_renewal_cert_ttl: Duration::days(90),
            autosign: Autosign::Off,
            autosign_timeout: std::time::Duration::from_secs(30),
            autosign_max_concurrent: DEFAULT_AUTOSIGN_MAX_CONCURRENT,
            key_passphrase: PassphraseSource::None,
            enable_infra_crl: false,
        }
    }
}

/// Per-signing options.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignRequest {
    /// Flags given with this signing.
    pub options: SigningOptions,
    /// TTL instead of the configured one.
    pub ttl: Option<Duration>,
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Serial.
    pub serial: u64,
    /// DER.
    pub der: Vec<u8>,
}

impl Issued {
    /// PEM of the certificate.
    pub fn pem(&self) -> String {
        pem_encode("CERTIFICATE", &self.der)
    }
}

/// What `clean` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cleaned {
    /// Serials revoked by this clean.
    pub revoked: Vec<u64>,
    /// Whether a pending request was removed.
    pub removed_request: bool,
    /// How many certificates were removed from the listing.
    pub removed_certificates: u64,
}

/// The certificate authority.
#[derive(Debug, Clone)]
pub struct Authority {
    store: Store,
    signer: Arc<CaSigner>,
    /// Swapped whole by a reload (SIGHUP); each operation reads it once.
    settings: Arc<arc_swap::ArcSwap<CaSettings>>,
    clock: Arc<dyn Clock>,
    autosign_cache: Arc<autosign::AllowListCache>,
    /// One permit per autosign executable running (`autosign_max_concurrent`).
    autosign_slots: Arc<tokio::sync::Semaphore>,
    dir: DataDir,
    /// The CN of `server/cert.pem`, read once it exists (it is written only at setup or first start).
    server_cn: Arc<std::sync::OnceLock<String>>,
    queue: Arc<batch::Queue>,
    /// Certificate requests waiting for a shared transaction.
    submits: Arc<submits::SubmitQueue>,
    sign_latency: Arc<latency::Histogram>,
    /// The signing pipeline's write transactions, from their start to their commit.
    round_latency: Arc<latency::Histogram>,
    /// The revocation state's one owner: CRL numbering, signing, storage, the served CRL and the
    /// revoked serials TLS checks.
    revocations: Arc<revocations::Revocations>,
    /// A key rollover in progress: the next or the previous CA.
    rollover: Arc<rollover::RolloverState>,
}

/// What a submission did.
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The stored request.
    pub csr: Csr,
    /// The autosign decision.
    pub autosign: AutosignVerdict,
    /// The certificate, when autosigned.
    pub issued: Option<Issued>,
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// The CA key must be private to its owner: refuse to use it otherwise, saying how to fix it.
fn check_key_mode(path: &std::path::Path) -> Result<(), AuthorityError> {
    check_private_key(path, "the CA key")
}

/// A private key of the data directory must be private to its owner (`what` names it in the error).
fn check_private_key(path: &std::path::Path, what: &str) -> Result<(), AuthorityError> {
    Ok(crate::datadir::check_private_key_mode(path, what)?)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, CaError> + Send + 'static,
) -> Result<T, AuthorityError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AuthorityError::failed("signing task failed", e))?
        .map_err(AuthorityError::Ca)
}

/// Runs `task` on the runtime of the database writers (CSR submissions, the signing pipeline's
/// database task): one thread of its own, so that a writer woken by its database connection (at
/// every statement of a write transaction) runs at once, instead of waiting in the request runtime's
/// queues behind requests busy with TLS and signature checks. Measured: the wait before `BEGIN` fell
/// from about 190 to 50 µs under 8 submitting clients, and CSR submissions went from about 3,000 to
/// 4,400-5,700 per second.
pub(crate) fn spawn_writer<F>(task: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    static HANDLE: std::sync::OnceLock<Option<tokio::runtime::Handle>> = std::sync::OnceLock::new();
    let handle = HANDLE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            // Its blocking threads are started from the writers' thread, whose core they inherit.
            .on_thread_start(crate::priority::unpin_this_thread)
            .build()
            .ok()?;
        let handle = rt.handle().clone();
        std::thread::Builder::new()
            .name("ca-writer".into())
            .spawn(move || rt.block_on(std::future::pending::<()>()))
            .ok()?;
        Some(handle)
    });
    match handle {
        Some(h) => drop(h.spawn(task)),
        // No thread for it: the writers run with the requests.
        None => drop(tokio::spawn(task)),
    }
}

/// Runs `step` on the writers' thread (see [`spawn_writer`]) again and again while it finds work (it
/// returns whether it did), unless a run is under way already, which `running` tells. Work queued
/// as the run ends is not stranded: `has_work` is asked once more after `running` is cleared. Should
/// a run end by a panic, the next call starts a new one.
pub(crate) fn run_writer<S, F, W>(running: Arc<AtomicBool>, has_work: W, mut step: S)
where
    S: FnMut() -> F + Send + 'static,
    F: std::future::Future<Output = bool> + Send + 'static,
    W: Fn() -> bool + Send + 'static,
{
    if running.swap(true, Ordering::AcqRel) {
        return;
    }
    spawn_writer(async move {
        struct Reset(Arc<AtomicBool>);
        impl Drop for Reset {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.store(false, Ordering::Release);
                }
            }
        }
        let _reset = Reset(Arc::clone(&running));
        loop {
            if step().await {
                continue;
            }
            running.store(false, Ordering::Release);
            if has_work() && !running.swap(true, Ordering::AcqRel) {
                continue;
            }
            return;
        }
    });
}

impl Authority {
    /// Opens the CA in a data directory: its database and its key.
    pub async fn open(
        dir: &DataDir,
        settings: CaSettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Authority, AuthorityError> {
        let store = Store::open_for(dir, false).await?;
        let (chain_pem, _) = store
            .ca()
            .await?
            .ok_or_else(|| StoreError::Corrupt("the database holds no CA".into()))?;
        let key = match &settings.pkcs11 {
            Some(p) => {
                let cfg = p.config()?;
                let public = crate::ca::signer::chain_public_key(&chain_pem)?;
                let token =
                    blocking(move || crate::ca::token::TokenKey::open_matching(&cfg, &public)).await?;
                crate::ca::signer::CaKey::Token(token)
            }
            None => {
                let key_path = dir.ca_key();
                check_key_mode(&key_path)?;
                let key_pem = std::fs::read_to_string(&key_path).map_err(|e| {
                    AuthorityError::Ca(CaError::Key(format!(
                        "cannot read the CA key {}: {e}",
                        key_path.display()
                    )))
                })?;
                crate::ca::signer::CaKey::File(settings.load_key(key_pem, "the CA key").await?)
            }
        };
        let mut signer = CaSigner::new(&chain_pem, key)?;
        if let Some(wrapped) = store.audit_key_wrap().await? {
            signer.adopt_audit_key(&wrapped)?;
        }
        let rollover = rollover::load(&store, dir, &settings).await?;
        let authority = Authority::assemble(store, signer, rollover, settings, clock, dir);
        authority.store.seal_legacy_log().await?;
        Ok(authority)
    }

    /// When the binary says how threads are placed (the server): on SQLite keeps the writers'
    /// thread on one core (see [`crate::priority`]; its batched transactions run on it, see
    /// `storage/direct.rs`); on PostgreSQL opens the write connections anew from it, so that their
    /// sockets wake it directly. Done on the writers' thread, as its first task or between two.
    fn place_writers(&self) {
        if !crate::priority::places_threads() {
            return;
        }
        let sqlite = self.store.backend() == crate::storage::Backend::Sqlite;
        let store = self.store.clone();
        spawn_writer(async move {
            if sqlite && !crate::priority::pin_writer_thread() {
                return;
            }
            if let Err(e) = store.reopen_write_connections().await {
                tracing::debug!(error = %crate::error::Chain(&e), "write connections not reopened");
            }
        });
    }

    fn assemble(
        store: Store,
        signer: CaSigner,
        rollover: rollover::RolloverState,
        settings: CaSettings,
        clock: Arc<dyn Clock>,
        dir: &DataDir,
    ) -> Authority {
        let slots = settings.autosign_max_concurrent.max(1);
        let store = store.with_seal(AuditSeal::new(signer.audit_key(), dir.root()));
        let signer = Arc::new(signer);
        let settings = Arc::new(arc_swap::ArcSwap::from_pointee(settings));
        let revocations = Arc::new(revocations::Revocations::new(
            store.clone(),
            Arc::clone(&signer),
            rollover.previous.clone(),
            Arc::clone(&clock),
            Arc::clone(&settings),
        ));
        let authority = Authority {
            store,
            signer,
            settings,
            clock,
            autosign_cache: Arc::default(),
            autosign_slots: Arc::new(tokio::sync::Semaphore::new(slots)),
            dir: dir.clone(),
            server_cn: Arc::default(),
            queue: Arc::default(),
            submits: Arc::default(),
            sign_latency: Arc::default(),
            round_latency: Arc::default(),
            revocations,
            rollover: Arc::new(rollover),
        };
        authority.place_writers();
        authority
    }

    /// The store (read access for listings and serving).
    pub fn store(&self) -> &Store {
        &self.store
    }
    /// The data directory.
    pub fn dir(&self) -> DataDir {
        self.dir.clone()
    }
    /// The revocation state (snapshots for HTTP and TLS).
    pub fn revocations(&self) -> &Arc<revocations::Revocations> {
        &self.revocations
    }
    /// The signing CA.
    pub fn signer(&self) -> &CaSigner {
        &self.signer
    }
    /// The settings in force now.
    pub fn settings(&self) -> Arc<CaSettings> {
        self.settings.load_full()
    }
    /// Puts new settings in force for the operations that start from now on (a reload). The
    /// passphrase source is kept: keys are loaded at start.
    pub fn reload_settings(&self, mut new: CaSettings) {
        new.key_passphrase = self.settings.load().key_passphrase.clone();
        self.settings.store(Arc::new(new));
    }
    /// Issuance latency so far (for `/metrics`).
    pub fn signing_histogram(&self) -> latency::HistogramSnapshot {
        self.sign_latency.snapshot()
    }
    /// The signing pipeline's write transactions so far, each from its start to its commit (for
    /// `/metrics`): how busy the one database stage that stores certificates (and, on SQLite,
    /// reserves their serials) is.
    pub fn signing_round_histogram(&self) -> latency::HistogramSnapshot {
        self.round_latency.snapshot()
    }
    /// Now, from the authority's clock.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    async fn refuse(
        &self,
        mut tx: WriteTx,
        actor: &str,
        action: &str,
        certname: &str,
        err: AuthorityError,
    ) -> AuthorityError {
        let res = async {
            self.audit_refusal(&mut tx, actor, action, certname, &err).await?;
            tx.commit().await.map_err(AuthorityError::from)
        }
        .await;
        match res {
            Ok(()) => err,
            Err(e) => e,
        }
    }

    /// Appends the audit row of a refusal to `tx`.
    async fn audit_refusal(
        &self,
        tx: &mut WriteTx,
        actor: &str,
        action: &str,
        certname: &str,
        err: &AuthorityError,
    ) -> Result<(), AuthorityError> {
        let detail = crate::error::Chain(err).to_string();
        let name = names::printable(certname);
        let rec = AuditRecord::refused(unix(self.now()), actor, action)
            .on(&name)
            .detail(&detail);
        tx.audit(&rec).await?;
        Ok(())
    }

    /// Accepts a CSR submitted for `certname` (§1.4): parses it, checks the name and the signature and
    /// the duplicate policy, and stores it as pending. Refusals leave only an audit row. Then autosign
    /// (§4.1) decides; an autosigned request still goes through the whole signing policy, and a refusal
    /// there leaves it pending (the error says why).
    pub async fn submit(
        &self,
        actor: &str,
        certname: &str,
        body: &[u8],
    ) -> Result<Submitted, AuthorityError> {
        // Parsing and the signature check happen before the write lock is taken.
        let checked = csr::parse(body).map_err(AuthorityError::from).and_then(|c| {
            names::validate_subject(certname, &c.common_name)?;
            self.check_name_available(certname, &[])?;
            Ok(c)
        });
        let csr = self.store_request_grouped(actor, certname, checked).await?;
        // The executable runs with no transaction open.
        let autosign = self.autosign_verdict(&csr.common_name, body, true).await;
        tracing::info!(certname = %csr.common_name, sign = autosign.sign, reason = %autosign.reason, "autosign");
        if !autosign.sign {
            return Ok(Submitted {
                csr,
                autosign,
                issued: None,
            });
        }
        let job = batch::Job {
            actor: "autosign".into(),
            certname: csr.common_name.clone(),
            req: SignRequest::default(),
            csr: Some(Arc::new(csr.clone())),
        };
        match self.sign_job(job).await {
            Ok(issued) => Ok(Submitted {
                csr,
                autosign,
                issued: Some(issued),
            }),
            // Someone signed or cleaned it in between: it is no longer ours to sign.
            Err(AuthorityError::NoRequest { .. }) => Ok(Submitted {
                csr,
                autosign,
                issued: None,
            }),
            Err(e) => Err(e),
        }
    }

    /// Signs the pending request of `certname` if the policy allows it.
    pub async fn sign(
        &self,
        actor: &str,
        certname: &str,
        req: SignRequest,
    ) -> Result<Issued, AuthorityError> {
        let job = batch::Job {
            actor: actor.to_string(),
            certname: certname.to_string(),
            req,
            csr: None,
        };
        self.sign_job(job).await
    }

    async fn sign_job(&self, job: batch::Job) -> Result<Issued, AuthorityError> {
        self.sign_queued(vec![job])
            .await
            .pop()
            .unwrap_or_else(|| Err(AuthorityError::Internal("no result".into())))
    }

    /// The validity for a request: an explicit TTL, else the auto-renewal TTL for a request that says it
    /// can renew (`pp_auth_auto_renew`) when auto-renewal is on, else the configured one.
    pub(crate) fn ttl_for(&self, csr: &Csr, explicit: Option<Duration>) -> Duration {
        if let Some(t) = explicit {
            return t;
        }
        let renews = csr.attribute(crate::ca::oids::PP_AUTH_AUTO_RENEW) == Some("true");
        if self.settings().allow_auto_renewal && renews {
            self.settings().auto_renewal_cert_ttl
        } else {
            self.settings().cert_ttl
        }
    }

    /// Issues within `tx` (serial from the same transaction), valid from `now` for `ttl`, stores the
    /// certificate and audits it.
    async fn issue(
        &self,
        tx: &mut WriteTx,
        actor: &str,
        spki_der: Vec<u8>,
        permit: Permit,
        ttl: Duration,
        now: time::OffsetDateTime,
    ) -> Result<Issued, AuthorityError> {
        let serial = tx.next_serial().await?;
        let validity = Validity::from_now(now, ttl).map_err(|e| AuthorityError::Invalid(e.to_string()))?;
        let signer = Arc::clone(&self.signer);
        let certname = permit.certname().to_string();
        let settings = self.settings();
        let der = blocking(move || {
            issue::issue_leaf(
                &signer,
                &spki_der,
                &permit,
                serial,
                validity,
                &settings.issuer_urls,
            )
        })
        .await?;
        self.record_issued(tx, actor, "sign", &certname, serial, &der, validity, unix(now))
            .await?;
        Ok(Issued { serial, der })
    }

    /// Stores a certificate just issued (at `now`), with its status object, and its audit row (`action`).
    #[allow(clippy::too_many_arguments)]
    async fn record_issued(
        &self,
        tx: &mut WriteTx,
        actor: &str,
        action: &str,
        certname: &str,
        serial: u64,
        der: &[u8],
        validity: Validity,
        now: i64,
    ) -> Result<(), AuthorityError> {
        let row = CertRow {
            serial,
            certname: certname.to_string(),
            der: der.to_vec(),
            not_before: unix(validity.not_before),
            not_after: unix(validity.not_after),
            revoked: None,
        };
        tx.insert_certificate(&row, &status::certificate_status_json(&row)?, now, actor)
            .await?;
        tx.audit(&AuditRecord::ok(now, actor, action).on(certname).serial(serial))
            .await?;
        Ok(())
    }

    /// Generates a key and a certificate for `certname` on the CA (`puppet cert generate`): the alt names
    /// given are the admin's explicit permission. Returns the key PEM and the certificate.
    pub async fn generate(
        &self,
        actor: &str,
        certname: &str,
        alt_names: &[San],
        key_type: KeyType,
        ttl: Option<Duration>,
    ) -> Result<(String, Issued), AuthorityError> {
        let permit = Self::generated_permit(certname, alt_names, false)?;
        if let Err(e) = self.check_name_available(certname, alt_names) {
            let tx = self.store.write().await?;
            return Err(self.refuse(tx, actor, "generate", certname, e.into()).await);
        }
        let key = blocking(move || keys::generate(key_type)).await?;
        let mut tx = self.store.write().await?;
        if tx.current_certificate(certname).await?.is_some() || tx.request(certname).await?.is_some() {
            let err = AuthorityError::Duplicate(format!(
                "{certname} already has a certificate or a request; clean it first"
            ));
            return Err(self.refuse(tx, actor, "generate", certname, err).await);
        }
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let issued = self
            .issue(
                &mut tx,
                actor,
                spki,
                permit,
                ttl.unwrap_or(self.settings().cert_ttl),
                self.now(),
            )
            .await?;
        tx.commit().await?;
        Ok((key.serialize_pem(), issued))
    }

    /// The certname of this CA's server certificate (`server/cert.pem`), when it is there: read from
    /// the file the first time only (not on every submission and signing).
    fn server_certname(&self) -> Option<String> {
        if let Some(cn) = self.server_cn.get() {
            return Some(cn.clone());
        }
        let cn = self.read_server_certname()?;
        Some(self.server_cn.get_or_init(|| cn).clone())
    }

    fn read_server_certname(&self) -> Option<String> {
        let pem = std::fs::read_to_string(self.dir.server_cert()).ok()?;
        let ders = crate::ca::signer::parse_cert_bundle(&pem).ok()?;
        let (_, cert) = X509Certificate::from_der(ders.first()?).ok()?;
        let cn = names::common_name(cert.subject())?;
        Some(cn)
    }

    /// Refuses certnames no request or `ca generate` may take: `ca`, the admin certificate's and this
    /// server's own (setup issues those directly), and an IP literal unless the signing policy allows
    /// it as an IP alt name for itself (or `granted`, the alt names of `ca generate`, holds it).
    fn check_name_available(&self, certname: &str, granted: &[San]) -> Result<(), names::NameError> {
        let reserved = |what| names::NameError::Reserved {
            name: certname.to_string(),
            what,
        };
        if certname == "ca" {
            return Err(reserved("the CA certificate"));
        }
        if certname == ADMIN_CERTNAME {
            return Err(reserved("the CA's admin certificate"));
        }
        if certname == OCSP_CERTNAME {
            return Err(reserved("the CA's OCSP responders"));
        }
        if let Ok(ip) = certname.parse::<std::net::IpAddr>() {
            let san = San::Ip(ip);
            if !granted.contains(&san) && !self.settings().signing.allows_alt_name(certname, &san) {
                return Err(names::NameError::IpAddress(certname.to_string()));
            }
        }
        if self.server_certname().as_deref() == Some(certname) {
            return Err(reserved("the CA server's own certificate"));
        }
        Ok(())
    }

    fn generated_permit(certname: &str, alt_names: &[San], cli_auth: bool) -> Result<Permit, AuthorityError> {
        names::validate_certname(certname)?;
        Ok(Permit::for_generated(certname, alt_names, cli_auth)?)
    }

    /// Revokes every unexpired certificate of `certname` and publishes a new CRL. Returns the serials
    /// revoked now (empty when they all were already).
    pub async fn revoke(
        &self,
        actor: &str,
        certname: &str,
        reason: Reason,
    ) -> Result<Vec<u64>, AuthorityError> {
        let _order = self.revocations.publishing().await;
        let mut tx = self.store.write().await?;
        let now = self.now();
        let serials = tx.revocable_serials(certname, unix(now)).await?;
        if serials.is_empty() {
            match tx.current_certificate(certname).await? {
                Some(c) if c.revoked.is_some() => return Ok(Vec::new()),
                _ => {
                    let err = AuthorityError::NoCertificate(certname.to_string());
                    return Err(self.refuse(tx, actor, "revoke", certname, err).await);
                }
            }
        }
        let published = self
            .revoke_serials(&mut tx, actor, Some(certname), &serials, reason, now)
            .await?;
        tx.commit().await?;
        self.install_crl(published);
        Ok(serials)
    }

    /// Revokes (if signed and not yet revoked) and then removes everything held for `certname`, like
    /// `puppetserver ca clean`.
    pub async fn clean(&self, actor: &str, certname: &str) -> Result<Cleaned, AuthorityError> {
        let _order = self.revocations.publishing().await;
        let mut tx = self.store.write().await?;
        let at = self.now();
        let now = unix(at);
        let revoked = tx.revocable_serials(certname, now).await?;
        let published = if revoked.is_empty() {
            None
        } else {
            Some(
                self.revoke_serials(&mut tx, actor, Some(certname), &revoked, Reason::default(), at)
                    .await?,
            )
        };
        let removed_request = tx.delete_request(certname).await?;
        let removed_certificates = tx.clean_certificates(certname, now).await?;
        if !removed_request && removed_certificates == 0 {
            let err = AuthorityError::NotFound(certname.to_string());
            return Err(self.refuse(tx, actor, "clean", certname, err).await);
        }
        tx.audit(&AuditRecord::ok(now, actor, "clean").on(certname))
            .await?;
        tx.commit().await?;
        if let Some(p) = published {
            self.install_crl(p);
        }
        Ok(Cleaned {
            revoked,
            removed_request,
            removed_certificates,
        })
    }

    /// Removes the certificate and request of `certname` without revoking (certificate_status DELETE).
    pub async fn delete(&self, actor: &str, certname: &str) -> Result<(), AuthorityError> {
        let mut tx = self.store.write().await?;
        let now = unix(self.now());
        let removed_request = tx.delete_request(certname).await?;
        let removed = tx.clean_certificates(certname, now).await?;
        if !removed_request && removed == 0 {
            let err = AuthorityError::NotFound(certname.to_string());
            return Err(self.refuse(tx, actor, "delete", certname, err).await);
        }
        tx.audit(&AuditRecord::ok(now, actor, "delete").on(certname))
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The current certificate of `certname` as PEM.
    pub async fn certificate_pem(&self, certname: &str) -> Result<Option<String>, AuthorityError> {
        Ok(self
            .store
            .current_certificate(certname)
            .await?
            .map(|c| pem_encode("CERTIFICATE", &c.der)))
    }

    /// The pending request of `certname` as PEM.
    pub async fn request_pem(&self, certname: &str) -> Result<Option<String>, AuthorityError> {
        Ok(self
            .store
            .request(certname)
            .await?
            .map(|r| pem_encode("CERTIFICATE REQUEST", &r.csr_der)))
    }
}
