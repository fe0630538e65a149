//! CRLs (§5.4): v2, CRL number, AKI = the CA's own key identifier, a reason code on every entry.

use std::fmt;
use std::str::FromStr;

use rcgen::RevocationReason;
use time::OffsetDateTime;

use super::{der, CaError, CaSigner};

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
    sign_crl_with_entries(signer, number, this_update, next_update, &encode_entries(entries))
}

fn der_uint(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut v = bytes[skip..].to_vec();
    if v.first().is_some_and(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    der::encode_tlv(0x02, &v)
}

/// UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5).
fn der_time(t: OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let body = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if (1950..2050).contains(&t.year()) {
        der::encode_tlv(0x17, format!("{:02}{body}", t.year() % 100).as_bytes())
    } else {
        der::encode_tlv(0x18, format!("{:04}{body}", t.year()).as_bytes())
    }
}

fn extension(oid_der: &[u8], value: &[u8]) -> Vec<u8> {
    let mut inner = oid_der.to_vec();
    inner.extend(der::encode_tlv(0x04, value));
    der::encode_tlv(0x30, &inner)
}

const OID_REASON: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x15];
const OID_CRL_NUMBER: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x14];
const OID_AKI: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x23];
const ALG_RSA_SHA256: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
];
const ALG_ECDSA_SHA256: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];

/// The DER of revokedCertificate entries (without the enclosing SEQUENCE), so that a new CRL can
/// append to the entries of the previous one instead of encoding them all again.
pub fn encode_entries(entries: &[RevokedEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 36);
    for e in entries {
        let mut inner = der_uint(e.serial);
        inner.extend(der_time(e.revoked_at));
        let reason = extension(&OID_REASON, &der::encode_tlv(0x0a, &[e.reason.code() as u8]));
        inner.extend(der::encode_tlv(0x30, &reason));
        out.extend(der::encode_tlv(0x30, &inner));
    }
    out
}

/// Signs a v2 CRL whose revokedCertificates are `entries_der` (from [`encode_entries`]), with the CRL
/// number and AKI = the CA's key identifier. One signature; everything else is copying.
pub fn sign_crl_with_entries(
    signer: &CaSigner,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    entries_der: &[u8],
) -> Result<Vec<u8>, CaError> {
    if next_update <= this_update {
        return Err(CaError::Invalid(
            "the CRL's nextUpdate must follow its thisUpdate".into(),
        ));
    }
    let key = signer.issuer().key();
    let alg: &[u8] = if key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
        &ALG_RSA_SHA256
    } else if key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
        &ALG_ECDSA_SHA256
    } else {
        return Err(CaError::Key(
            "the CA key's algorithm cannot sign CRLs here".into(),
        ));
    };
    let mut tbs = Vec::with_capacity(entries_der.len() + 512);
    tbs.extend([0x02, 0x01, 0x01]);
    tbs.extend_from_slice(alg);
    tbs.extend_from_slice(&signer.subject_der);
    tbs.extend(der_time(this_update));
    tbs.extend(der_time(next_update));
    if !entries_der.is_empty() {
        tbs.extend(der::encode_tlv(0x30, entries_der));
    }
    let aki = der::encode_tlv(0x30, &der::encode_tlv(0x80, &signer.cert.key_id));
    let mut exts = extension(&OID_AKI, &aki);
    exts.extend(extension(&OID_CRL_NUMBER, &der_uint(number)));
    tbs.extend(der::encode_tlv(0xa0, &der::encode_tlv(0x30, &exts)));
    let tbs = der::encode_tlv(0x30, &tbs);
    let sig = rcgen::SigningKey::sign(key, &tbs).map_err(|e| CaError::Key(format!("CRL signature: {e}")))?;
    let mut bits = vec![0u8];
    bits.extend(sig);
    let mut all = tbs;
    all.extend_from_slice(alg);
    all.extend(der::encode_tlv(0x03, &bits));
    Ok(der::encode_tlv(0x30, &all))
}
