//! Batch signing, renewal, and removing a pending request.

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{unix, Authority, AuthorityError, Issued, SignRequest};
use crate::ca::crl::Reason;
use crate::ca::csr::{self, San};
use crate::ca::oids;
use crate::policy::Permit;
use crate::storage::AuditRecord;

/// What a batch signing did, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Signed: (name, serial).
    pub signed: Vec<(String, u64)>,
    /// No pending request.
    pub no_csr: Vec<String>,
    /// Refused by policy: (name, why); each also has an audit row.
    pub errors: Vec<(String, String)>,
}

impl Authority {
    /// Signs every named request in one transaction: a request the policy refuses stays pending.
    pub async fn sign_many(
        &self,
        actor: &str,
        names: &[String],
        req: SignRequest,
    ) -> Result<BatchOutcome, AuthorityError> {
        let jobs: Vec<super::batch::Job> = names
            .iter()
            .map(|n| super::batch::Job {
                actor: actor.to_string(),
                certname: n.clone(),
                req,
                csr: None,
            })
            .collect();
        let mut out = BatchOutcome::default();
        for (name, res) in names.iter().zip(self.sign_queued(jobs).await) {
            match res {
                Ok(issued) => out.signed.push((name.clone(), issued.serial)),
                Err(AuthorityError::NoRequest { has_cert: false, .. }) => out.no_csr.push(name.clone()),
                Err(e) => out
                    .errors
                    .push((name.clone(), crate::error::Chain(&e).to_string())),
            }
        }
        Ok(out)
    }

    /// Renews the caller's certificate (§1.13): same subject, key, alt names and Puppet extensions; a new
    /// serial and the auto-renewal TTL. Only the name's current certificate in the database renews, and
    /// only while it is unrevoked and valid: a revoked, superseded, cleaned or foreign certificate is
    /// refused (with an audit row). What is copied (key, alt names, extensions) comes from the stored
    /// row, never from what the caller presented.
    pub async fn renew(&self, actor: &str, cert_der: &[u8]) -> Result<Issued, AuthorityError> {
        let (_, cert) = X509Certificate::from_der(cert_der)
            .map_err(|_| AuthorityError::Invalid("No valid certificate found in renewal request".into()))?;
        let aki = crate::ca::digest::authority_key_id(cert.extensions());
        // A certificate of the previous CA key renews during a rollover (under the new key).
        if !aki.is_some_and(|k| self.issued_by_our_key(&k)) {
            return Err(AuthorityError::Invalid(
                "Certificate present, but does not match signature".into(),
            ));
        }
        let certname = crate::ca::names::common_name(cert.subject())
            .ok_or_else(|| AuthorityError::Invalid("No valid certificate found in renewal request".into()))?;
        let mut tx = self.store.write().await?;
        let at = self.now();
        let now = unix(at);
        let stored = match tx.current_certificate(&certname).await? {
            Some(c) if c.der != cert_der => Err("is not the current certificate of its name"),
            Some(c) if c.revoked.is_some() => Err("is revoked"),
            Some(c) if c.not_after < now || c.not_before > now => Err("is not within its validity dates"),
            Some(c) => Ok(c),
            None => Err("is not the current certificate of its name"),
        };
        let stored = match stored {
            Ok(c) => c,
            Err(why) => {
                let err = AuthorityError::Invalid(format!("Certificate present, but it {why}; not renewed"));
                return Err(self.refuse(tx, actor, "renew", &certname, err).await);
            }
        };
        let (_, cert) = X509Certificate::from_der(&stored.der).map_err(|_| {
            AuthorityError::Internal(format!("the stored certificate {} is unreadable", stored.serial))
        })?;
        let mut sans = Vec::new();
        let mut exts = Vec::new();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(s) => {
                    sans.extend(
                        s.general_names
                            .iter()
                            .map(csr::general_name)
                            .filter(|n| !matches!(n, San::Other(_))),
                    );
                }
                _ => {
                    if let Some(arcs) = ext.oid.iter().map(|i| i.collect::<Vec<u64>>()) {
                        if oids::is_under(&arcs, oids::PUPPET_ARC) {
                            exts.push((arcs, ext.critical, ext.value.to_vec()));
                        }
                    }
                }
            }
        }
        let permit = Permit::for_renewal(&certname, sans, exts)?;
        let spki = cert.public_key().raw.to_vec();
        let issued = self
            .issue(
                &mut tx,
                actor,
                spki,
                permit,
                self.settings().auto_renewal_cert_ttl,
                at,
            )
            .await?;
        tx.commit().await?;
        Ok(issued)
    }

    /// Removes from the CRL the entries of certificates that have expired (they can no longer be used).
    /// Returns the serials; with `dry_run` nothing changes.
    pub async fn prune(&self, actor: &str, dry_run: bool) -> Result<Vec<u64>, AuthorityError> {
        let _order = self.revocations.publishing().await;
        let mut tx = self.store.write().await?;
        let now = self.now();
        let serials = tx.expired_revocations(unix(now)).await?;
        if dry_run || serials.is_empty() {
            return Ok(serials);
        }
        for &s in &serials {
            tx.delete_revocation(s).await?;
        }
        let crl = self.publish_crl(&mut tx, now).await?;
        let detail = format!("{} entries removed, CRL number {}", serials.len(), crl.number());
        tx.audit(&AuditRecord::ok(unix(now), actor, "prune").detail(&detail))
            .await?;
        tx.commit().await?;
        self.install_crl(crl);
        Ok(serials)
    }

    /// Re-signs the CRL when less than half of its lifetime remains (so it never expires under agents
    /// that cache it), or less than half of the relying parties' CRL's (a week by default), or when
    /// there is no relying parties' CRL yet. The new CRL appends nothing to the current one (one
    /// signature each, whatever its size). Returns the new CRL number when it did.
    pub async fn refresh_crl_if_due(&self) -> Result<Option<u64>, AuthorityError> {
        let at = self.now();
        let now = unix(at);
        let settings = self.settings();
        let half = settings.crl_lifetime.whole_seconds() / 2;
        let relying_half = settings.relying_crl_lifetime.whole_seconds() / 2;
        let due = |next_update: i64, relying: Option<i64>| {
            next_update - now < half || relying.is_none_or(|r| r - now < relying_half)
        };
        let current = self.revocations.refresh().await?;
        if !due(current.row().next_update, current.relying_next_update()) {
            return Ok(None);
        }
        let _order = self.revocations.publishing().await;
        let mut tx = self.store.write().await?;
        // Checked again under the write lock: another process may have just done it.
        if let Some((_, next_update, relying)) = tx.crl_dates().await? {
            if !due(next_update, relying) {
                return Ok(None);
            }
        }
        let crl = self.revocations.sign_next(&mut tx, Some(Vec::new()), at).await?;
        let number = crl.number();
        let detail = format!("CRL number {number}");
        tx.audit(&AuditRecord::ok(now, "ca-server", "crl-refresh").detail(&detail))
            .await?;
        tx.commit().await?;
        self.install_crl(crl);
        Ok(Some(number))
    }

    /// Revokes one serial this CA issued, also one it holds no copy of (a certificate of an imported
    /// puppetserver CA that was listed in its inventory only, or whose file was lost), and publishes a
    /// new CRL. Refuses a serial this CA never issued (at or beyond its next serial).
    pub async fn revoke_serial(
        &self,
        actor: &str,
        serial: u64,
        reason: Reason,
    ) -> Result<SerialRevocation, AuthorityError> {
        let _order = self.revocations.publishing().await;
        let mut tx = self.store.write().await?;
        let now = self.now();
        let (held, line) = tx.serial_owner(serial).await?;
        let certname = held.or_else(|| line.as_deref().and_then(inventory_certname));
        let next = tx.peek_serial().await?;
        if serial >= next || serial == 0 {
            return Err(AuthorityError::Invalid(format!(
                "serial {serial} (0x{serial:X}) was never issued by this CA (its next serial is {next})"
            )));
        }
        if tx.is_revoked(serial).await? {
            return Ok(SerialRevocation {
                certname,
                revoked: false,
            });
        }
        let published = self
            .revoke_serials(&mut tx, actor, certname.as_deref(), &[serial], reason, now)
            .await?;
        tx.commit().await?;
        self.install_crl(published);
        Ok(SerialRevocation {
            certname,
            revoked: true,
        })
    }

    /// Removes a pending request; false when there was none.
    pub async fn delete_request(&self, actor: &str, certname: &str) -> Result<bool, AuthorityError> {
        let mut tx = self.store.write().await?;
        let removed = tx.delete_request(certname).await?;
        if removed {
            let now = unix(self.now());
            tx.audit(&AuditRecord::ok(now, actor, "delete-request").on(certname))
                .await?;
            tx.commit().await?;
        }
        Ok(removed)
    }
}

/// What [`Authority::revoke_serial`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialRevocation {
    /// Whom the serial was issued to, when known (a stored certificate, an inventory line).
    pub certname: Option<String>,
    /// Revoked now (false: it already was).
    pub revoked: bool,
}

/// The certname in a puppetserver inventory line (`0x0002 <from> <to> /CN=name`).
fn inventory_certname(line: &str) -> Option<String> {
    let subject = line.split_whitespace().nth(3)?;
    subject
        .split('/')
        .find_map(|part| part.strip_prefix("CN="))
        .filter(|n| !n.is_empty())
        .map(str::to_string)
}
