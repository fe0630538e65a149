//! The CRLs of parent CAs (an intermediate CA's root): re-signed here when the root key is present,
//! else replaced by newer ones uploaded with `PUT /certificate_revocation_list` (§1.7).

use time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::{blocking, unix, Authority, AuthorityError};
use crate::ca::crl::{sign_crl, Reason, RevokedEntry};
use crate::ca::{pem_encode, CaSigner};
use crate::storage::AuditRecord;

fn crl_aki(crl: &CertificateRevocationList<'_>) -> Option<Vec<u8>> {
    crate::ca::digest::authority_key_id(crl.extensions())
}

fn crl_number(crl: &CertificateRevocationList<'_>) -> u64 {
    crl.crl_number()
        .and_then(|n| u64::try_from(n.clone()).ok())
        .unwrap_or(0)
}

fn bad(msg: impl Into<String>) -> AuthorityError {
    AuthorityError::Invalid(msg.into())
}

impl Authority {
    /// Re-signs the root's CRL when less than half of the CRL lifetime remains and the root key is in the
    /// data directory. Returns the new CRL number when it did.
    pub async fn refresh_root_crl_if_due(&self) -> Result<Option<u64>, AuthorityError> {
        let chain = &self.signer.chain_der;
        if chain.len() < 2 || !self.dir.root_key().exists() {
            return Ok(None);
        }
        let exact = self.now();
        let now = exact.replace_nanosecond(0).unwrap_or(exact);
        let lifetime = self.settings().crl_lifetime;
        let parents = self.store.parent_crls().await?;
        let (number, entries) = match parents.first() {
            Some(der) => {
                let (_, crl) = CertificateRevocationList::from_der(der)
                    .map_err(|e| AuthorityError::rejected("root CRL", e))?;
                let remaining = crl.next_update().map_or(0, |n| n.timestamp() - unix(now));
                if remaining >= lifetime.whole_seconds() / 2 {
                    return Ok(None);
                }
                let entries: Vec<RevokedEntry> = crl
                    .iter_revoked_certificates()
                    .filter_map(|e| {
                        Some(RevokedEntry {
                            serial: u64::try_from(e.user_certificate.clone()).ok()?,
                            revoked_at: e.revocation_date.to_datetime(),
                            reason: e
                                .reason_code()
                                .and_then(|(_, r)| Reason::from_code(i64::from(r.0)))
                                .unwrap_or_default(),
                        })
                    })
                    .collect();
                (crl_number(&crl) + 1, entries)
            }
            None => (0, Vec::new()),
        };
        let key_pem = std::fs::read_to_string(self.dir.root_key()).map_err(|e| {
            AuthorityError::rejected(format!("cannot read {}", self.dir.root_key().display()), e)
        })?;
        let root_pem: String = chain[1..].iter().map(|d| pem_encode("CERTIFICATE", d)).collect();
        let root_key = self.settings().load_key(key_pem, "the root CA key").await?;
        let der = blocking(move || {
            let root = CaSigner::new(&root_pem, root_key)?;
            sign_crl(
                &root,
                number,
                now - Duration::seconds(1),
                now + lifetime,
                &entries,
            )
        })
        .await?;
        let mut tx = self.store.write().await?;
        tx.set_parent_crl(1, &der).await?;
        let detail = format!("root CRL number {number}");
        tx.audit(&AuditRecord::ok(unix(now), "ca-server", "crl-refresh").detail(&detail))
            .await?;
        tx.commit().await?;
        Ok(Some(number))
    }

    /// Takes newer CRLs of parent CAs (§1.7): for each parent, the submitted CRL with its key identifier
    /// and the highest CRL number, if higher than the one held and signed by that parent. Our own CRL is
    /// never replaced. Returns how many were replaced.
    pub async fn update_parent_crls(&self, actor: &str, ders: &[Vec<u8>]) -> Result<usize, AuthorityError> {
        let mut parsed = Vec::new();
        for der in ders {
            if let Ok((_, crl)) = CertificateRevocationList::from_der(der) {
                parsed.push((der, crl));
            }
        }
        if parsed.is_empty() {
            return Err(bad("No valid CRLs submitted."));
        }
        for (_, crl) in &parsed {
            if crl_aki(crl).is_none() {
                return Err(bad(
                    "One or more submitted CRLs do not have an authority key identifier.",
                ));
            }
            if crl
                .extensions()
                .iter()
                .any(|e| e.oid.iter().is_some_and(|a| a.eq([2u64, 5, 29, 27])))
            {
                return Err(bad("Cannot support delta CRL."));
            }
        }
        let held = self.store.parent_crls().await?;
        let mut tx = self.store.write().await?;
        let now = unix(self.now());
        let mut replaced = 0;
        for (i, parent_der) in self.signer.chain_der.iter().enumerate().skip(1) {
            let (_, parent) =
                X509Certificate::from_der(parent_der).map_err(|e| AuthorityError::rejected("CA chain", e))?;
            let (ca, _) = crate::ca::signer::CaCert::from_der(parent_der)?;
            let mut best: Option<(&Vec<u8>, u64)> = None;
            for (der, crl) in &parsed {
                if crl_aki(crl).as_deref() != Some(ca.key_id.as_slice()) {
                    continue;
                }
                if crl.verify_signature(parent.public_key()).is_err() {
                    return Err(bad(format!(
                        "Invalid certs and/or CRLs: the CRL for {} has a bad signature",
                        ca.common_name
                    )));
                }
                let n = crl_number(crl);
                match best {
                    Some((_, b)) if b == n => return Err(bad("Could not determine newest CRL.")),
                    Some((_, b)) if b > n => {}
                    _ => best = Some((der, n)),
                }
            }
            let Some((der, n)) = best else { continue };
            let current = held.get(i - 1).and_then(|d| {
                CertificateRevocationList::from_der(d)
                    .ok()
                    .map(|(_, c)| crl_number(&c))
            });
            if current.is_some_and(|c| c >= n) {
                continue;
            }
            let position = u32::try_from(i).map_err(|_| bad("CA chain too long"))?;
            tx.set_parent_crl(position, der).await?;
            let detail = format!("{} CRL number {n}", ca.common_name);
            tx.audit(&AuditRecord::ok(now, actor, "crl-update").detail(&detail))
                .await?;
            replaced += 1;
        }
        tx.commit().await?;
        Ok(replaced)
    }
}
