//! Issuing leaf certificates with puppetserver's profile (§5.3), from a [`Permit`] only.

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, KeyIdMethod, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime};

use super::csr::San;
use super::signer::{netscape_comment, CaSigner};
use super::{digest, oids, CaError};
use crate::policy::Permit;

/// A validity window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// notBefore.
    pub not_before: OffsetDateTime,
    /// notAfter.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// Puppet's window: backdated one day, `ttl` from now. Seconds only (X.509 has no fractions).
    /// Refuses a window that would end after the year 9999 (X.509 dates stop there).
    pub fn from_now(now: OffsetDateTime, ttl: Duration) -> Result<Validity, CaError> {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let too_long = || CaError::Invalid("the certificate would expire after the year 9999".into());
        let not_after = now
            .checked_add(ttl)
            .filter(|t| t.year() <= 9999)
            .ok_or_else(too_long)?;
        let not_before = now.checked_sub(Duration::days(1)).ok_or_else(too_long)?;
        Ok(Validity {
            not_before,
            not_after,
        })
    }
}

/// DER of `SEQUENCE { serverAuth, clientAuth }`, for a critical extKeyUsage as puppetserver writes it.
const EKU_SERVER_CLIENT: [u8; 22] = [
    0x30, 0x14, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01, 0x06, 0x08, 0x2b, 0x06, 0x01,
    0x05, 0x05, 0x07, 0x03, 0x02,
];

/// Issues a leaf certificate for the public key `spki_der` as the permit allows. CPU-heavy (one
/// signature): call it off the async executor.
pub fn issue_leaf(
    signer: &CaSigner,
    spki_der: &[u8],
    permit: &Permit,
    serial: u64,
    validity: Validity,
) -> Result<Vec<u8>, CaError> {
    let spki = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| CaError::Invalid(format!("unsupported public key: {e}")))?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, permit.certname());
    p.distinguished_name = dn;
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = validity.not_before;
    p.not_after = validity.not_after;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::PreSpecified(digest::key_identifier(spki.der_bytes()));
    p.subject_alt_names = permit
        .sans()
        .iter()
        .map(|s| match s {
            San::Dns(n) => n
                .as_str()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|_| CaError::Invalid(format!("invalid DNS name {n}"))),
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            San::Other(o) => Err(CaError::Invalid(format!("unsupported SAN {o}"))),
        })
        .collect::<Result<_, _>>()?;
    let mut eku = CustomExtension::from_oid_content(oids::EXT_KEY_USAGE, EKU_SERVER_CLIENT.to_vec());
    eku.set_criticality(true);
    p.custom_extensions = vec![netscape_comment(), eku];
    for (oid, critical, value) in permit.extensions() {
        let mut ext = CustomExtension::from_oid_content(oid, value.clone());
        ext.set_criticality(*critical);
        p.custom_extensions.push(ext);
    }
    Ok(p.signed_by(&spki, signer.issuer())?.der().to_vec())
}
