//! Publishing CRLs from the authority's operations: every CRL is numbered, signed, stored and put in
//! force by the revocation state's one owner ([`super::revocations::Revocations`]).

use std::sync::Arc;

use time::OffsetDateTime;

use super::revocations::{CrlSnapshot, Signed};
use super::{unix, Authority, AuthorityError};
use crate::ca::crl::{Reason, RevokedEntry};
use crate::storage::WriteTx;

impl Authority {
    /// Records revocations of `serials` (those not revoked already) with their audit rows, and signs
    /// the next CRL. Call under [`super::revocations::Revocations::publishing`]; install the result
    /// with [`Authority::install_crl`] after the commit.
    pub(crate) async fn revoke_serials(
        &self,
        tx: &mut WriteTx,
        actor: &str,
        certname: Option<&str>,
        serials: &[u64],
        reason: Reason,
        now: OffsetDateTime,
    ) -> Result<Signed, AuthorityError> {
        let at = now.replace_nanosecond(0).unwrap_or(now);
        let mut added = Vec::with_capacity(serials.len());
        let detail = reason.to_string();
        let mut records = Vec::with_capacity(serials.len());
        for &serial in serials {
            if tx.revoke(serial, certname, unix(at), reason.code()).await? {
                added.push(RevokedEntry {
                    serial,
                    revoked_at: at,
                    reason,
                });
            }
            let mut audit = super::AuditRecord::ok(unix(at), actor, "revoke").serial(serial);
            if let Some(name) = certname {
                audit = audit.on(name);
            }
            records.push(audit.detail(&detail));
        }
        tx.audit_all(&records).await?;
        self.revocations.sign_next(tx, Some(added), now).await
    }

    /// After the commit of a transaction that signed `crl`: in force for TLS and served from now on.
    pub(crate) fn install_crl(&self, crl: Signed) {
        self.revocations.install(crl);
    }

    /// Re-signs the CRL from every revocation in the database now (after revocations were written
    /// without one, e.g. by a bulk load). Returns the new CRL number.
    pub async fn republish_crl(&self, actor: &str) -> Result<u64, AuthorityError> {
        let _order = self.revocations.publishing().await;
        let mut tx = self.store.write().await?;
        let now = self.now();
        let signed = self.publish_crl(&mut tx, now).await?;
        let number = signed.number();
        let detail = format!("CRL number {number}");
        tx.audit(&super::AuditRecord::ok(unix(now), actor, "crl-republish").detail(&detail))
            .await?;
        tx.commit().await?;
        self.install_crl(signed);
        Ok(number)
    }

    /// Signs and stores a new CRL from every revocation in the database, with the next CRL number
    /// (call under [`super::revocations::Revocations::publishing`], install after the commit),
    /// signed at `now`.
    pub(crate) async fn publish_crl(
        &self,
        tx: &mut WriteTx,
        now: OffsetDateTime,
    ) -> Result<Signed, AuthorityError> {
        self.revocations.sign_next(tx, None, now).await
    }

    /// The current CRL and revocation state, brought up to date with the database.
    pub async fn crl(&self) -> Result<Arc<CrlSnapshot>, AuthorityError> {
        self.revocations.refresh().await
    }
}
