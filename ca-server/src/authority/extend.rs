//! `ca extend-ca`: the CA certificate (and the intermediate's root, when its key is here) re-signed
//! with the same key, subject and key identifier and a new validity, as puppetlabs/ca_extend does for
//! puppetserver. Every certificate issued so far keeps verifying under the new CA certificate, and
//! under the old one until that expires: agents can pick up the new one at their own pace.

use time::OffsetDateTime;

use super::{blocking, unix, Authority, AuthorityError};
use crate::ca::signer::{extended_ca, CaCert};
use crate::ca::{pem_encode, CaSigner};
use crate::storage::AuditRecord;

/// What [`Authority::extend_ca`] did.
#[derive(Debug, Clone)]
pub struct Extension {
    /// The new chain (signing CA first), PEM.
    pub chain_pem: String,
    /// Each certificate of the chain: common name, old notAfter, new notAfter.
    pub certificates: Vec<(String, OffsetDateTime, OffsetDateTime)>,
}

impl Authority {
    /// Re-signs the CA chain with a validity of `ttl` from now (one day backdated), stores it as the
    /// CA's chain (served on `certificate/ca` once each server restarts) and writes `ca_crt.pem`. An
    /// intermediate CA needs its root's key in the data directory (`root_key.pem`).
    pub async fn extend_ca(&self, actor: &str, ttl: time::Duration) -> Result<Extension, AuthorityError> {
        let chain = self.signer.chain_der.clone();
        let root_key = match chain.len() {
            1 => None,
            2 => {
                let path = self.dir.root_key();
                let pem = std::fs::read_to_string(&path).map_err(|e| {
                    AuthorityError::Invalid(format!(
                        "extending an intermediate CA re-signs its root too: its key {} is needed ({e})",
                        path.display()
                    ))
                })?;
                Some(self.settings().load_key(pem, "the root CA key").await?)
            }
            n => {
                return Err(AuthorityError::Invalid(format!(
                    "a chain of {n} certificates cannot be extended here"
                )))
            }
        };
        let now = self.now();
        let mut tx = self.store.write().await?;
        let serials = tx
            .reserve_serials(u64::try_from(chain.len()).unwrap_or(1))
            .await?;
        let signer = std::sync::Arc::clone(&self.signer);
        let new_chain = blocking(move || {
            let ca_key = signer.issuer().key();
            match root_key {
                None => Ok(vec![extended_ca(
                    &chain[0],
                    ca_key,
                    serials.start,
                    now,
                    ttl,
                    None,
                )?]),
                Some(root_key) => {
                    let root = extended_ca(&chain[1], &root_key, serials.start, now, ttl, None)?;
                    let root_signer = CaSigner::new(&pem_encode("CERTIFICATE", &root), root_key)?;
                    let inter =
                        extended_ca(&chain[0], ca_key, serials.start + 1, now, ttl, Some(&root_signer))?;
                    Ok(vec![inter, root])
                }
            }
        })
        .await?;
        let chain_pem: String = new_chain.iter().map(|d| pem_encode("CERTIFICATE", d)).collect();
        let mut certificates = Vec::new();
        for (old, new) in self.signer.chain_der.iter().zip(&new_chain) {
            let (old, _) = CaCert::from_der(old)?;
            let (new, _) = CaCert::from_der(new)?;
            certificates.push((new.common_name, old.not_after, new.not_after));
        }
        tx.replace_ca_chain(&chain_pem, unix(now)).await?;
        let until = certificates
            .first()
            .map(|c| crate::ca::text::puppet_time(c.2))
            .unwrap_or_default();
        tx.audit(&AuditRecord::ok(unix(now), actor, "extend-ca").detail(&format!("valid until {until}")))
            .await?;
        tx.commit().await?;
        let path = self.dir.ca_cert();
        if let Err(e) = crate::datadir::replace_file(&path, chain_pem.as_bytes(), 0o644) {
            return Err(AuthorityError::Internal(format!(
                "the extended chain is stored, but {} could not be written: {e}",
                path.display()
            )));
        }
        Ok(Extension {
            chain_pem,
            certificates,
        })
    }
}
