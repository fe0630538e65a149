//! The delegated OCSP responder of this data directory (`ocsp/cert.pem`, `ocsp/key.pem`): an EC
//! P-256 key and a 30-day certificate with the OCSPSigning purpose, issued by this CA, so that OCSP
//! answers never use the CA key; re-issued when a third of its life remains. And what the database
//! says of a serial.

use std::sync::Arc;

use time::Duration;

use super::{blocking, unix, Authority, AuthorityError};
use crate::ca::issue::{self, Validity};
use crate::ca::keys::{self, KeyType};
use crate::ca::ocsp::{Responder, SerialStatus};
use crate::ca::pem_encode;

/// The certname of the responders' certificates (every server issues its own).
pub const OCSP_CERTNAME: &str = "ca-ocsp-responder";

/// How long a responder certificate is valid.
const LIFETIME: Duration = Duration::days(30);

impl Authority {
    /// The responder, as the data directory holds it, when its certificate is this CA's and more
    /// than a third of its lifetime remains; else (with `issue`) a new one, issued and written now.
    /// Returns it and whether it was issued.
    pub async fn ocsp_responder(
        &self,
        actor: &str,
        issue: bool,
    ) -> Result<Option<(Responder, bool)>, AuthorityError> {
        if let Some(r) = self.held_responder() {
            return Ok(Some((r, false)));
        }
        if !issue {
            return Ok(None);
        }
        let key = blocking(|| keys::generate(KeyType::EcP256)).await?;
        let pkcs8 = keys::pkcs8_der(&key)?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let now = self.now();
        let validity = Validity::from_now(now, LIFETIME).map_err(AuthorityError::Ca)?;
        let mut tx = self.store.write().await?;
        let serial = tx.next_serial().await?;
        let signer = Arc::clone(&self.signer);
        let der =
            blocking(move || issue::issue_ocsp_responder(&signer, &spki, OCSP_CERTNAME, serial, validity))
                .await?;
        self.record_issued(
            &mut tx,
            actor,
            "ocsp-responder",
            OCSP_CERTNAME,
            serial,
            &der,
            validity,
            unix(now),
        )
        .await?;
        tx.commit().await?;
        let io = |what: &str, e: std::io::Error| AuthorityError::failed(what, e);
        let (cert_path, key_path) = (self.dir.ocsp_cert(), self.dir.ocsp_key());
        if let Some(parent) = cert_path.parent() {
            crate::datadir::create_private_dir(parent).map_err(|e| io("the OCSP directory", e))?;
        }
        for (path, contents, mode) in [
            (&key_path, keys::pkcs8_pem(&key)?.as_bytes().to_vec(), 0o600),
            (&cert_path, pem_encode("CERTIFICATE", &der).into_bytes(), 0o644),
        ] {
            crate::datadir::replace_file(path, &contents, mode)
                .map_err(|e| io(&path.display().to_string(), e))?;
        }
        let responder = Responder::new(der, &pkcs8, &self.signer.chain_der[0])?;
        Ok(Some((responder, true)))
    }

    /// The responder in the data directory, if it is this CA's and not near its end.
    fn held_responder(&self) -> Option<Responder> {
        let cert_pem = std::fs::read_to_string(self.dir.ocsp_cert()).ok()?;
        let key_pem = std::fs::read_to_string(self.dir.ocsp_key()).ok()?;
        let der = pem::parse(cert_pem).ok()?.into_contents();
        let pkcs8 = zeroize::Zeroizing::new(pem::parse(key_pem).ok()?.into_contents());
        let (_, c) = x509_parser::parse_x509_certificate(&der).ok()?;
        let aki = crate::ca::digest::authority_key_id(c.extensions())?;
        let (from, to) = (
            c.validity().not_before.timestamp(),
            c.validity().not_after.timestamp(),
        );
        let fresh = to - unix(self.now()) > (to - from) / 3;
        if aki != self.signer.cert.key_id || !fresh {
            return None;
        }
        Responder::new(der, &pkcs8, &self.signer.chain_der[0]).ok()
    }

    /// What the CA's records say of `serial`: revoked (when and why), issued by this CA, or unknown.
    pub async fn serial_status(&self, serial: u64) -> Result<SerialStatus, AuthorityError> {
        let (issued, revoked) = self.store.serial_status(serial).await?;
        Ok(match revoked {
            Some((at, reason)) => SerialStatus::Revoked(at, u8::try_from(reason).unwrap_or(0)),
            None if issued => SerialStatus::Good,
            None => SerialStatus::Unknown,
        })
    }
}
