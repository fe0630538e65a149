//! What expires when: the CA certificates, this data directory's server and admin certificates, the
//! CRLs and every current, unrevoked certificate; and the warnings when any of them is within the
//! configured window (`expiry-warning`, 30 days by default) of its end.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{unix, Authority, AuthorityError};
use crate::ca::signer::CaCert;

/// What an [`Expiring`] item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpiringKind {
    /// A CA certificate of the chain (signing CA first).
    Ca,
    /// The server's own TLS certificate (this data directory's).
    Server,
    /// The admin certificate (this data directory's).
    Admin,
    /// The agents' CRL (its nextUpdate).
    Crl,
    /// The relying parties' CRL (its nextUpdate).
    RelyingCrl,
    /// An issued certificate (the current one of its name, not revoked).
    Certificate,
}

/// One thing that expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expiring {
    /// What it is.
    pub kind: ExpiringKind,
    /// Certname, or the CA's common name.
    pub name: String,
    /// Serial (certificates), CRL number (CRLs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// When (RFC 3339, UTC).
    pub expires: String,
    /// Days left, a started day counted whole (negative once expired).
    pub days_left: i64,
    /// When (Unix seconds).
    #[serde(rename = "expires_unix")]
    pub at: i64,
}

/// Days until `at`, a started day counted whole: a certificate issued for 20 days says 20 for its
/// whole first day instead of turning to 19 one second after it was issued, so two readings a second
/// apart agree. Negative (whole days ago, rounded down) once expired.
pub fn days_left(at: i64, now: i64) -> i64 {
    let secs = at - now;
    if secs < 0 {
        secs.div_euclid(86_400)
    } else {
        (secs + 86_399) / 86_400
    }
}

impl Expiring {
    fn new(kind: ExpiringKind, name: String, serial: Option<u64>, at: i64, now: i64) -> Expiring {
        let expires = OffsetDateTime::from_unix_timestamp(at)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default();
        Expiring {
            kind,
            name,
            serial,
            expires,
            days_left: days_left(at, now),
            at,
        }
    }
}

/// notAfter of a PEM certificate file (None when unreadable or absent).
fn file_not_after(path: &std::path::Path) -> Option<(String, u64, i64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let der = pem::parse(text).ok()?.into_contents();
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let name = crate::ca::names::common_name(cert.subject()).unwrap_or_default();
    let serial = u64::try_from(cert.serial.clone()).unwrap_or(0);
    Some((name, serial, cert.validity().not_after.timestamp()))
}

impl Authority {
    /// Everything that expires at or before `now + within` (everything without `within`), soonest
    /// first: CA certificates, the server's and admin's certificates, the CRLs, and (with
    /// `certificates`) every current, unrevoked certificate.
    pub async fn expirations(
        &self,
        within: Option<time::Duration>,
        certificates: bool,
    ) -> Result<Vec<Expiring>, AuthorityError> {
        let now = unix(self.now());
        let until = within.map_or(i64::MAX, |w| now.saturating_add(w.whole_seconds()));
        let mut items = Vec::new();
        for der in &self.signer().chain_der {
            if let Ok((c, _)) = CaCert::from_der(der) {
                items.push(Expiring::new(
                    ExpiringKind::Ca,
                    c.common_name,
                    None,
                    unix(c.not_after),
                    now,
                ));
            }
        }
        let dir = self.dir();
        for (kind, path) in [
            (ExpiringKind::Server, dir.server_cert()),
            (ExpiringKind::Admin, dir.admin_cert()),
        ] {
            if let Some((name, serial, at)) = file_not_after(&path) {
                items.push(Expiring::new(kind, name, Some(serial), at, now));
            }
        }
        let crl = self.crl().await?;
        let ca_name = self.signer().cert.common_name.clone();
        items.push(Expiring::new(
            ExpiringKind::Crl,
            ca_name.clone(),
            Some(crl.number()),
            crl.row().next_update,
            now,
        ));
        if let Some(at) = crl.relying_next_update() {
            items.push(Expiring::new(
                ExpiringKind::RelyingCrl,
                ca_name,
                Some(crl.number()),
                at,
                now,
            ));
        }
        if certificates {
            for r in self.store.expiring(until, super::OCSP_CERTNAME).await? {
                items.push(Expiring::new(
                    ExpiringKind::Certificate,
                    r.certname,
                    Some(r.serial),
                    r.not_after,
                    now,
                ));
            }
        }
        items.retain(|i| i.at <= until);
        items.sort_by(|a, b| (a.at, a.kind, &a.name).cmp(&(b.at, b.kind, &b.name)));
        Ok(items)
    }

    /// Logs a warning for each CA, server or admin certificate, and a count of issued certificates,
    /// within the `expiry-warning` window, and for a CRL left unrenewed past the time it is re-signed
    /// (half its lifetime: the upkeep is not running). Returns how many items it warned about.
    pub async fn warn_of_expiry(&self) -> Result<usize, AuthorityError> {
        let settings = self.settings();
        let now = unix(self.now());
        let items = self.expirations(None, false).await?;
        let mut warned = 0;
        for i in &items {
            let (lifetime, label) = match i.kind {
                ExpiringKind::Crl => (settings.crl_lifetime, "the CRL"),
                ExpiringKind::RelyingCrl => (settings.relying_crl_lifetime, "the relying parties' CRL"),
                _ => {
                    if i.at - now <= settings.expiry_warning.whole_seconds() {
                        warned += 1;
                        tracing::warn!(
                            kind = ?i.kind, name = %i.name, expires = %i.expires, days_left = i.days_left,
                            "certificate expires soon"
                        );
                    }
                    continue;
                }
            };
            if i.at - now < lifetime.whole_seconds() / 2 - 3_600 {
                warned += 1;
                tracing::warn!(
                    crl = label, number = i.serial, expires = %i.expires,
                    "CRL not re-signed in time: is the CRL upkeep failing?"
                );
            }
        }
        let window = settings.expiry_warning;
        let certificates = self
            .store
            .expiring(now.saturating_add(window.whole_seconds()), super::OCSP_CERTNAME)
            .await?
            .len();
        if certificates > 0 {
            warned += certificates;
            tracing::warn!(
                certificates,
                within_days = window.whole_days(),
                "issued certificates expire soon: see `ca expirations`"
            );
        }
        Ok(warned)
    }
}

#[cfg(test)]
mod tests {
    use super::days_left;

    #[test]
    fn a_started_day_counts_whole() {
        let day = 86_400;
        assert_eq!(days_left(20 * day, 0), 20);
        assert_eq!(days_left(20 * day, 1), 20);
        assert_eq!(days_left(20 * day, day - 1), 20);
        assert_eq!(days_left(20 * day, day), 19);
        assert_eq!(days_left(0, 0), 0);
        assert_eq!(days_left(0, 1), -1);
        assert_eq!(days_left(0, day + 1), -2);
    }
}
