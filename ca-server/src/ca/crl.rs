//! CRLs (§5.4): v2, CRL number, AKI = the CA's own key identifier, a reason code on every entry.

use std::fmt;
use std::str::FromStr;

use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

use super::{CaError, CaSigner};

/// A revocation reason (RFC 5280 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub RevocationReason);

const REASONS: [(&str, RevocationReason); 10] = [
    ("unspecified", RevocationReason::Unspecified),
    ("keyCompromise", RevocationReason::KeyCompromise),
    ("cACompromise", RevocationReason::CaCompromise),
    ("affiliationChanged", RevocationReason::AffiliationChanged),
    ("superseded", RevocationReason::Superseded),
    ("cessationOfOperation", RevocationReason::CessationOfOperation),
    ("certificateHold", RevocationReason::CertificateHold),
    ("removeFromCRL", RevocationReason::RemoveFromCrl),
    ("privilegeWithdrawn", RevocationReason::PrivilegeWithdrawn),
    ("aACompromise", RevocationReason::AaCompromise),
];

impl Default for Reason {
    /// Puppet revokes with keyCompromise.
    fn default() -> Self {
        Reason(RevocationReason::KeyCompromise)
    }
}

impl Reason {
    /// The RFC 5280 code.
    pub fn code(self) -> i64 {
        self.0 as i64
    }
    /// From the RFC 5280 code.
    pub fn from_code(code: i64) -> Option<Reason> {
        REASONS
            .iter()
            .find(|(_, r)| *r as i64 == code)
            .map(|(_, r)| Reason(*r))
    }
}

impl FromStr for Reason {
    type Err = CaError;
    /// Accepts RFC names in any case and with or without dashes/underscores (`key-compromise`).
    fn from_str(s: &str) -> Result<Self, CaError> {
        let norm = |x: &str| x.to_ascii_lowercase().replace(['-', '_'], "");
        REASONS
            .iter()
            .find(|(n, _)| norm(n) == norm(s))
            .map(|(_, r)| Reason(*r))
            .ok_or_else(|| {
                let names: Vec<&str> = REASONS.iter().map(|(n, _)| *n).collect();
                CaError::Invalid(format!(
                    "unknown revocation reason '{s}': use one of {}",
                    names.join(", ")
                ))
            })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = REASONS
            .iter()
            .find(|(_, r)| *r == self.0)
            .map_or("unspecified", |(n, _)| n);
        f.write_str(name)
    }
}

/// One revoked serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The serial.
    pub serial: u64,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: Reason,
}

/// Signs a CRL. CPU-heavy (one signature, plus encoding every entry): call it off the async executor.
pub fn sign_crl(
    signer: &CaSigner,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    entries: &[RevokedEntry],
) -> Result<Vec<u8>, CaError> {
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: entries
            .iter()
            .map(|e| RevokedCertParams {
                serial_number: SerialNumber::from(e.serial),
                revocation_time: e.revoked_at,
                reason_code: Some(e.reason.0),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: KeyIdMethod::PreSpecified(signer.cert.key_id.clone()),
    };
    Ok(params.signed_by(signer.issuer())?.der().to_vec())
}
