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

/// The last year a certificate may end in: X.509's GeneralizedTime and the date type stop at 9999.
pub const LAST_YEAR: i32 = 9999;

impl Validity {
    /// Puppet's window: backdated one day, `ttl` from now. Seconds only (X.509 has no fractions).
    /// Refuses a window that would end after the year 9999 (X.509 dates stop there).
    pub fn from_now(now: OffsetDateTime, ttl: Duration) -> Result<Validity, CaError> {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        let too_long = || CaError::Invalid("the certificate would expire after the year 9999".into());
        let not_after = now
            .checked_add(ttl)
            .filter(|t| t.year() <= LAST_YEAR)
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

/// Where relying parties find the CA's revocation status and certificate, written into every
/// certificate issued when configured (`crl-distribution-points`, `ocsp-urls`, `ca-issuers-urls`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerUrls {
    /// CRL Distribution Points (RFC 5280 §4.2.1.13), one point with these URIs.
    pub crl: Vec<String>,
    /// Authority Information Access: OCSP responders.
    pub ocsp: Vec<String>,
    /// Authority Information Access: where the CA certificate is.
    pub ca_issuers: Vec<String>,
}

impl IssuerUrls {
    /// The authorityInfoAccess extension (RFC 5280 §4.2.2.1), when there is an OCSP or CA issuers URL.
    fn aia_extension(&self) -> Option<CustomExtension> {
        const OCSP: [u8; 10] = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
        const CA_ISSUERS: [u8; 10] = [0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
        let mut body = Vec::new();
        for (method, urls) in [(&OCSP, &self.ocsp), (&CA_ISSUERS, &self.ca_issuers)] {
            for url in urls {
                let mut access = method.to_vec();
                // accessLocation: GeneralName uniformResourceIdentifier [6] IA5String.
                access.extend(super::der::encode_tlv(0x86, url.as_bytes()));
                body.extend(super::der::encode_tlv(0x30, &access));
            }
        }
        (!body.is_empty()).then(|| {
            CustomExtension::from_oid_content(
                &[1, 3, 6, 1, 5, 5, 7, 1, 1],
                super::der::encode_tlv(0x30, &body),
            )
        })
    }

    /// Refuses what cannot stand in a certificate: only absolute `http`/`https` URLs in ASCII.
    pub fn check(&self) -> Result<(), CaError> {
        for u in self.crl.iter().chain(&self.ocsp).chain(&self.ca_issuers) {
            let ok = u.is_ascii()
                && url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https") && p.has_host());
            if !ok {
                return Err(CaError::Invalid(format!(
                    "'{u}' is not an absolute http or https URL"
                )));
            }
        }
        Ok(())
    }
}

/// Issues a leaf certificate for the public key `spki_der` as the permit allows, with the
/// relying parties' URLs of `urls`. CPU-heavy (one signature): call it off the async executor.
pub fn issue_leaf(
    signer: &CaSigner,
    spki_der: &[u8],
    permit: &Permit,
    serial: u64,
    validity: Validity,
    urls: &IssuerUrls,
) -> Result<Vec<u8>, CaError> {
    let spki =
        SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| CaError::failed("unsupported public key", e))?;
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
    if !urls.crl.is_empty() {
        p.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
            uris: urls.crl.clone(),
        }];
    }
    p.custom_extensions.extend(urls.aia_extension());
    Ok(p.signed_by(&spki, signer.issuer())?.der().to_vec())
}

/// DER of `SEQUENCE { id-kp-OCSPSigning }`.
const EKU_OCSP_SIGNING: [u8; 12] = [
    0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09,
];

/// Issues the certificate of a delegated OCSP responder (RFC 6960 §4.2.2.2): named `certname`, for
/// the key `spki_der`, with the OCSPSigning purpose only, and `id-pkix-ocsp-nocheck` (clients do not
/// check its own revocation; it is short-lived instead).
pub fn issue_ocsp_responder(
    signer: &CaSigner,
    spki_der: &[u8],
    certname: &str,
    serial: u64,
    validity: Validity,
) -> Result<Vec<u8>, CaError> {
    let spki =
        SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| CaError::failed("unsupported public key", e))?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, certname);
    p.distinguished_name = dn;
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = validity.not_before;
    p.not_after = validity.not_after;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.use_authority_key_identifier_extension = true;
    p.key_identifier_method = KeyIdMethod::PreSpecified(digest::key_identifier(spki.der_bytes()));
    p.custom_extensions = vec![
        CustomExtension::from_oid_content(oids::EXT_KEY_USAGE, EKU_OCSP_SIGNING.to_vec()),
        super::ocsp::nocheck_extension(),
    ];
    Ok(p.signed_by(&spki, signer.issuer())?.der().to_vec())
}
