//! A CA key rollover, in three steps an operator runs with `ca rollover start|switch|finish`:
//!
//! 1. `start`: a new CA key (`rollover/next_ca_key.pem`) and a new self-signed CA certificate with the
//!    same name, and two cross-certificates (the new key certified by the old CA, the old key by the
//!    new CA). `certificate/ca` serves the current and the new CA certificate, so agents and relying
//!    parties learn the new one before anything depends on it; TLS trusts both.
//! 2. `switch`: the new key signs from now on; the old CA certificate stays served and trusted, the old
//!    key (`rollover/previous_ca_key.pem`) signs every CRL too (the same number and entries), so
//!    certificates of either key are checked against a CRL of their issuer. The servers' own
//!    certificates stay under the old key, which every agent trusts.
//! 3. `finish`: the old CA is dropped; the servers' certificates are re-issued under the new key.
//!
//! The CA certificate's name never changes: agents and `ca_server` settings need no change.

use std::path::PathBuf;
use std::sync::Arc;

use time::Duration;

use super::{unix, Authority, AuthorityError, CaSettings, OwnCertificate};
use crate::ca::keys::{self, KeyType};
use crate::ca::signer::{ca_like, CaCert, CaKey};
use crate::ca::token::TokenKey;
use crate::ca::{digest, pem_encode, CaSigner};
use crate::datadir::{write_new, DataDir};
use crate::storage::{AuditRecord, Store};

/// A rollover as this process found it when it opened the CA.
#[derive(Debug, Clone, Default)]
pub(crate) struct RolloverState {
    /// After `start`: the next CA's certificate (PEM).
    next_pem: Option<String>,
    /// After `switch`: the previous CA's chain (PEM).
    previous_pem: Option<String>,
    /// After `switch`, when its key is in the data directory: the previous CA, which signs each CRL
    /// too.
    pub(crate) previous: Option<Arc<CaSigner>>,
    /// After `switch`: the previous CA's key identifier (its certificates are still ours).
    previous_key_id: Option<Vec<u8>>,
}

/// Reads the rollover in progress, and the previous CA's key when it is needed and present.
pub(crate) async fn load(
    store: &Store,
    dir: &DataDir,
    settings: &CaSettings,
) -> Result<RolloverState, AuthorityError> {
    let (next_pem, previous_pem) = store.rollover_chains().await?;
    let previous = match (&previous_pem, &settings.pkcs11) {
        (Some(chain), Some(p)) => {
            let cfg = p.config()?;
            let public = crate::ca::signer::chain_public_key(chain)?;
            match super::blocking(move || TokenKey::open_matching(&cfg, &public)).await {
                Ok(key) => Some(Arc::new(CaSigner::new(chain, CaKey::Token(key))?)),
                Err(e) => {
                    tracing::warn!(error = %crate::error::Chain(&e), "a key rollover is switching but the previous CA key is not in the token: CRLs are signed by the new key only");
                    None
                }
            }
        }
        (Some(chain), None) => match std::fs::read_to_string(dir.previous_ca_key()) {
            Ok(pem) => {
                let key = settings.load_key(pem, "the previous CA key").await?;
                Some(Arc::new(CaSigner::new(chain, key)?))
            }
            Err(_) => {
                tracing::warn!(
                    key = %dir.previous_ca_key().display(),
                    "a key rollover is switching but the previous CA key is not here: CRLs are signed by the new key only (copy it from the data directory where `ca rollover switch` ran)"
                );
                None
            }
        },
        (None, _) => None,
    };
    let previous_key_id = previous_pem
        .as_deref()
        .and_then(|chain| pem::parse_many(chain).ok())
        .and_then(|p| p.into_iter().next())
        .and_then(|first| CaCert::from_der(first.contents()).ok())
        .map(|(c, _)| c.key_id);
    Ok(RolloverState {
        next_pem,
        previous_pem,
        previous,
        previous_key_id,
    })
}

/// Where `ca rollover switch` finds the next CA key.
enum NextKey {
    /// `rollover/next_ca_key.pem`, as read.
    File(String),
    /// In the token, found by the next CA certificate's public key.
    Token(crate::ca::token::Pkcs11Settings),
}

/// What `ca rollover start` made.
#[derive(Debug, Clone)]
pub struct RolloverStarted {
    /// The new CA certificate, the cross-certificates and the new key, as written.
    pub files: Vec<PathBuf>,
    /// With the CA key in a PKCS#11 token: the new key's label there (no key file is written).
    pub token_label: Option<String>,
    /// The new CA certificate's notAfter.
    pub not_after: time::OffsetDateTime,
}

fn io(what: &std::path::Path, e: std::io::Error) -> AuthorityError {
    AuthorityError::failed(what.display().to_string(), e)
}

/// [`crate::datadir::replace_file`], its error naming the file.
fn replace_file(path: &std::path::Path, contents: &[u8], mode: u32) -> Result<(), AuthorityError> {
    crate::datadir::replace_file(path, contents, mode).map_err(|e| io(path, e))
}

impl Authority {
    /// The CA certificates served at `certificate/ca`: ours, then during a rollover the next CA's
    /// (after `start`) or the previous CA's (after `switch`).
    pub fn served_ca_bundle(&self) -> String {
        let mut bundle = self.signer.chain_pem.clone();
        for extra in [&self.rollover.next_pem, &self.rollover.previous_pem]
            .into_iter()
            .flatten()
        {
            bundle.push_str(extra);
        }
        bundle
    }

    /// The certificates a client certificate may chain to: the signing CA's and, during a rollover,
    /// the next or the previous CA's.
    pub fn trust_anchors(&self) -> Vec<Vec<u8>> {
        let mut anchors = vec![self.signer.chain_der[0].clone()];
        for extra in [&self.rollover.next_pem, &self.rollover.previous_pem]
            .into_iter()
            .flatten()
        {
            if let Some(first) = pem::parse_many(extra).ok().and_then(|p| p.into_iter().next()) {
                anchors.push(first.into_contents());
            }
        }
        anchors
    }

    /// Whether `key_id` names a CA key whose certificates this CA issued and still stands by: the
    /// signing CA's and, between a rollover's `switch` and `finish`, the previous CA's.
    pub fn issued_by_our_key(&self, key_id: &[u8]) -> bool {
        key_id == self.signer.cert.key_id.as_slice()
            || self.rollover.previous_key_id.as_deref() == Some(key_id)
    }

    /// Whether a rollover has switched and not finished (the servers keep their certificates under
    /// the previous key meanwhile).
    pub fn rollover_switched(&self) -> bool {
        self.rollover.previous_pem.is_some()
    }

    /// `ca rollover start`: a new CA key of `key_type`, its self-signed certificate (the same name,
    /// valid `ttl` from now) and the cross-certificates, published beside the current CA.
    pub async fn rollover_start(
        &self,
        actor: &str,
        key_type: KeyType,
        ttl: Duration,
    ) -> Result<RolloverStarted, AuthorityError> {
        if self.signer.chain_der.len() != 1 {
            return Err(AuthorityError::Invalid(
                "a key rollover of an intermediate CA is not supported: extend it (ca extend-ca) or set up a new one".into(),
            ));
        }
        let mut tx = self.store.write().await?;
        if tx.rollover_chains().await? != (None, None) {
            return Err(AuthorityError::Invalid(
                "a key rollover is already in progress (ca rollover switch, then ca rollover finish)".into(),
            ));
        }
        let now = self.now();
        // The new key is kept as the current one is: in the token (under the configured label and
        // the time, never extractable), or in a file, encrypted when the current one is.
        let (key, key_pem, token_label): (CaKey, Option<String>, Option<String>) =
            match &self.settings().pkcs11 {
                Some(p) => {
                    let cfg = p.config()?;
                    let label = format!("{}.{}", cfg.key_label, unix(now));
                    let made = label.clone();
                    let key = super::blocking(move || TokenKey::generate(&cfg, &made, key_type)).await?;
                    (CaKey::Token(key), None, Some(label))
                }
                None => {
                    let current =
                        std::fs::read_to_string(self.dir.ca_key()).map_err(|e| io(&self.dir.ca_key(), e))?;
                    let passphrase = if keys::is_encrypted(&current) {
                        self.settings().key_passphrase.read()?
                    } else {
                        None
                    };
                    super::blocking(move || {
                        let key = keys::generate(key_type)?;
                        let key_pem = match &passphrase {
                            Some(p) => keys::encrypt_pem(&key, p)?,
                            None => keys::pkcs8_pem(&key)?.to_string(),
                        };
                        Ok((CaKey::File(key), Some(key_pem), None))
                    })
                    .await?
                }
            };
        let serials = tx.reserve_serials(3).await?;
        let signer = Arc::clone(&self.signer);
        let made = super::blocking(move || {
            let old = &signer.chain_der[0];
            let new_id = digest::key_identifier(rcgen::PublicKeyData::der_bytes(&key));
            let root = ca_like(old, &key, new_id.clone(), serials.start, now, ttl, None)?;
            let new_by_old = ca_like(old, &key, new_id, serials.start + 1, now, ttl, Some(&signer))?;
            let new_signer = CaSigner::new(&pem_encode("CERTIFICATE", &root), key)?;
            let old_by_new = ca_like(
                old,
                signer.issuer().key(),
                signer.cert.key_id.clone(),
                serials.start + 2,
                now,
                ttl,
                Some(&new_signer),
            )?;
            Ok((root, new_by_old, old_by_new))
        })
        .await?;
        let (root, new_by_old, old_by_new) = made;
        let dir = self.dir.rollover_dir();
        crate::datadir::create_private_dir(&dir).map_err(|e| io(&dir, e))?;
        let root_pem = pem_encode("CERTIFICATE", &root);
        let mut files = vec![
            (dir.join("next_ca_crt.pem"), root_pem.clone().into_bytes(), 0o644),
            (
                dir.join("cross_new_by_old.pem"),
                pem_encode("CERTIFICATE", &new_by_old).into_bytes(),
                0o644,
            ),
            (
                dir.join("cross_old_by_new.pem"),
                pem_encode("CERTIFICATE", &old_by_new).into_bytes(),
                0o644,
            ),
        ];
        if let Some(key_pem) = key_pem {
            files.insert(0, (self.dir.next_ca_key(), key_pem.into_bytes(), 0o600));
        }
        for (path, contents, mode) in &files {
            replace_file(path, contents, *mode)?;
        }
        tx.set_next_chain(Some(&root_pem), unix(now)).await?;
        let (cert, _) = CaCert::from_der(&root)?;
        let detail = format!("next CA key identifier {}", digest::colon_hex(&cert.key_id));
        tx.audit(&AuditRecord::ok(unix(now), actor, "rollover-start").detail(&detail))
            .await?;
        tx.commit().await?;
        Ok(RolloverStarted {
            files: files.into_iter().map(|(p, _, _)| p).collect(),
            token_label,
            not_after: cert.not_after,
        })
    }

    /// `ca rollover switch`: the next CA becomes the signing CA (its key `rollover/next_ca_key.pem`
    /// becomes `ca_key.pem`, the current one `rollover/previous_ca_key.pem`; in a token, the keys stay
    /// as they are, found by their public keys), and a CRL signed by both keys is published. The
    /// audit log's sealing key is stored wrapped for the new key, so the log stays one sealed chain.
    /// Servers serve the new CA after a restart.
    pub async fn rollover_switch(&self, actor: &str) -> Result<(), AuthorityError> {
        let next_key_path = self.dir.next_ca_key();
        let source = match self.settings().pkcs11.clone() {
            Some(p) => NextKey::Token(p),
            None => NextKey::File(std::fs::read_to_string(&next_key_path).map_err(|e| {
                AuthorityError::Invalid(format!(
                    "the next CA key {} is needed here ({e}): run `ca rollover start` first, or copy it from where it ran",
                    next_key_path.display()
                ))
            })?),
        };
        let mut tx = self.store.write().await?;
        let (next, previous) = tx.rollover_chains().await?;
        let Some(next) = next.filter(|_| previous.is_none()) else {
            return Err(AuthorityError::Invalid(
                "no key rollover is started (ca rollover start), or it has switched already".into(),
            ));
        };
        let (key, next_key_pem) = match source {
            NextKey::File(pem) => (
                CaKey::File(self.settings().load_key(pem.clone(), "the next CA key").await?),
                Some(pem),
            ),
            NextKey::Token(p) => {
                let cfg = p.config()?;
                let public = crate::ca::signer::chain_public_key(&next)?;
                let key = super::blocking(move || TokenKey::open_matching(&cfg, &public)).await?;
                (CaKey::Token(key), None)
            }
        };
        let next_signer = CaSigner::new(&next, key)?;
        let wrapped = next_signer.wrap_audit_key(self.signer.audit_key())?;
        let now = unix(self.now());
        let Some(next_key_pem) = next_key_pem else {
            tx.switch_ca(&next_signer.cert.key_id, &wrapped, now).await?;
            tx.audit(&AuditRecord::ok(now, actor, "rollover-switch")).await?;
            tx.commit().await?;
            return self.after_rollover_step(actor, false).await;
        };
        // Both keys are in place under their new names before the database says so; the current key
        // is renamed last, after the commit.
        let current_pem = std::fs::read(self.dir.ca_key()).map_err(|e| io(&self.dir.ca_key(), e))?;
        replace_file(&self.dir.previous_ca_key(), &current_pem, 0o600)?;
        let staged = self.dir.ca_key().with_extension("pem.next");
        let _ = std::fs::remove_file(&staged);
        write_new(&staged, next_key_pem.as_bytes(), 0o600).map_err(|e| io(&staged, e))?;
        tx.switch_ca(&next_signer.cert.key_id, &wrapped, now).await?;
        tx.audit(&AuditRecord::ok(now, actor, "rollover-switch")).await?;
        tx.commit().await?;
        std::fs::rename(&staged, self.dir.ca_key()).map_err(|e| io(&self.dir.ca_key(), e))?;
        let _ = std::fs::remove_file(&next_key_path);
        self.after_rollover_step(actor, false).await
    }

    /// `ca rollover finish`: the previous CA is no longer served, trusted or signing; its key is
    /// renamed `rollover/retired_ca_key.pem` (destroy it, or keep it offline); this data directory's
    /// server and admin certificates are re-issued under the new key. With the keys in a token, the
    /// old key stays there: returns its label (to destroy it with the token's tools).
    pub async fn rollover_finish(&self, actor: &str) -> Result<Option<String>, AuthorityError> {
        let mut tx = self.store.write().await?;
        if tx.rollover_chains().await?.1.is_none() {
            return Err(AuthorityError::Invalid(
                "no key rollover has switched (ca rollover start, then switch)".into(),
            ));
        }
        let now = unix(self.now());
        tx.end_rollover(now).await?;
        tx.audit(&AuditRecord::ok(now, actor, "rollover-finish")).await?;
        tx.commit().await?;
        let previous = self.dir.previous_ca_key();
        if previous.exists() {
            let retired = self.dir.rollover_dir().join("retired_ca_key.pem");
            std::fs::rename(&previous, &retired).map_err(|e| io(&previous, e))?;
        }
        self.after_rollover_step(actor, true).await?;
        Ok(self
            .rollover
            .previous
            .as_ref()
            .and_then(|p| p.issuer().key().token().map(|t| t.label().to_string())))
    }

    /// After `switch` or `finish`: the CA as it now is signs a CRL (both keys while switching), and
    /// `ca_crt.pem` is what `certificate/ca` now serves; after `finish` the server's and admin's
    /// certificates are re-issued under the new key.
    async fn after_rollover_step(&self, actor: &str, renew_own: bool) -> Result<(), AuthorityError> {
        let now_open =
            Authority::open(&self.dir, (*self.settings()).clone(), Arc::clone(&self.clock)).await?;
        now_open.republish_crl(actor).await?;
        if renew_own {
            for which in [OwnCertificate::Server, OwnCertificate::Admin] {
                if now_open.own_certificate_path(which).exists() {
                    now_open.renew_own_certificate(actor, which).await?;
                }
            }
        }
        replace_file(&self.dir.ca_cert(), now_open.served_ca_bundle().as_bytes(), 0o644)?;
        now_open.store.close().await;
        Ok(())
    }

    fn own_certificate_path(&self, which: OwnCertificate) -> PathBuf {
        match which {
            OwnCertificate::Server => self.dir.server_cert(),
            OwnCertificate::Admin => self.dir.admin_cert(),
        }
    }
}
