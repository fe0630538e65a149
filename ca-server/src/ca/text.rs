//! Human-readable renderings of certificates and CRLs (`ca print`, `ca crl --text`), and Puppet's
//! date format.

use std::fmt::Write as _;

use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::revocation_list::CertificateRevocationList;

use super::csr::San;
use super::{der, digest, oids, CaError};

/// `YYYY-MM-DDTHH:MM:SSUTC`, the format of puppetserver's status JSON and inventory.
pub fn puppet_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn oid_label(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    let arcs: Option<Vec<u64>> = oid.iter().map(|i| i.collect());
    if let Some(name) = arcs.as_deref().and_then(oids::short_name) {
        return format!("{name} ({oid})");
    }
    match x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry()) {
        Ok(sn) => sn.to_string(),
        Err(_) => oid.to_id_string(),
    }
}

fn san_list(names: &[x509_parser::extensions::GeneralName<'_>]) -> String {
    use x509_parser::extensions::GeneralName;
    let v: Vec<String> = names
        .iter()
        .map(|g| match g {
            GeneralName::DNSName(n) => San::Dns(n.to_string()).to_string(),
            GeneralName::IPAddress(b) if b.len() == 4 => format!("IP:{}.{}.{}.{}", b[0], b[1], b[2], b[3]),
            GeneralName::IPAddress(b) if b.len() == 16 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(b);
                format!("IP:{}", std::net::Ipv6Addr::from(a))
            }
            other => format!("{other:?}"),
        })
        .collect();
    v.join(", ")
}

/// A certificate as text: the fields an operator checks, Puppet extensions by short name.
pub fn describe_certificate(der_bytes: &[u8]) -> Result<String, CaError> {
    let (_, c) = X509Certificate::from_der(der_bytes)
        .map_err(|e| CaError::failed("could not parse: certificate", e))?;
    let mut s = String::new();
    let _ = writeln!(s, "Certificate:");
    let _ = writeln!(
        s,
        "    Serial Number: {} (0x{})",
        c.serial,
        c.raw_serial_as_string().replace(':', "")
    );
    let _ = writeln!(
        s,
        "    Signature Algorithm: {}",
        oid_label(&c.signature_algorithm.algorithm)
    );
    let _ = writeln!(s, "    Issuer: {}", c.issuer());
    let _ = writeln!(s, "    Validity");
    let _ = writeln!(
        s,
        "        Not Before: {}",
        puppet_time(c.validity().not_before.to_datetime())
    );
    let _ = writeln!(
        s,
        "        Not After : {}",
        puppet_time(c.validity().not_after.to_datetime())
    );
    let _ = writeln!(s, "    Subject: {}", c.subject());
    let key = match c.public_key().parsed() {
        Ok(PublicKey::RSA(k)) => format!("RSA ({} bit)", k.key_size()),
        Ok(PublicKey::EC(k)) => format!("EC ({} bit)", k.key_size()),
        _ => oid_label(&c.public_key().algorithm.algorithm),
    };
    let _ = writeln!(s, "    Public Key: {key}");
    let _ = writeln!(
        s,
        "    Fingerprint (SHA256): {}",
        digest::fingerprint(digest::Digest::Sha256, der_bytes)
    );
    let _ = writeln!(s, "    X509v3 extensions:");
    for ext in c.extensions() {
        let crit = if ext.critical { " (critical)" } else { "" };
        let value = match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => san_list(&san.general_names),
            ParsedExtension::BasicConstraints(bc) => format!("CA:{}", if bc.ca { "TRUE" } else { "FALSE" }),
            ParsedExtension::KeyUsage(ku) => ku.to_string(),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let mut v = Vec::new();
                if eku.server_auth {
                    v.push("serverAuth");
                }
                if eku.client_auth {
                    v.push("clientAuth");
                }
                v.join(", ")
            }
            ParsedExtension::SubjectKeyIdentifier(k) => digest::colon_hex(k.0),
            ParsedExtension::AuthorityKeyIdentifier(a) => a
                .key_identifier
                .as_ref()
                .map_or_else(String::new, |k| format!("keyid:{}", digest::colon_hex(k.0))),
            _ => der::decode_string(ext.value).unwrap_or_else(|| digest::colon_hex(ext.value)),
        };
        let _ = writeln!(s, "        {}{crit}: {value}", oid_label(&ext.oid));
    }
    Ok(s)
}

/// A CRL as text: issuer, dates, number and every entry.
pub fn describe_crl(der_bytes: &[u8]) -> Result<String, CaError> {
    let (_, crl) = CertificateRevocationList::from_der(der_bytes)
        .map_err(|e| CaError::failed("could not parse: CRL", e))?;
    let mut s = String::new();
    let _ = writeln!(s, "Certificate Revocation List (CRL):");
    let _ = writeln!(s, "    Issuer: {}", crl.issuer());
    let _ = writeln!(
        s,
        "    Last Update: {}",
        puppet_time(crl.last_update().to_datetime())
    );
    if let Some(n) = crl.next_update() {
        let _ = writeln!(s, "    Next Update: {}", puppet_time(n.to_datetime()));
    }
    if let Some(n) = crl.crl_number() {
        let _ = writeln!(s, "    CRL Number: {n}");
    }
    let entries: Vec<_> = crl.iter_revoked_certificates().collect();
    let _ = writeln!(s, "Revoked Certificates: {}", entries.len());
    for e in entries {
        let reason = e
            .reason_code()
            .map_or_else(|| "-".to_string(), |(_, r)| format!("{r}"));
        let _ = writeln!(
            s,
            "    Serial Number: {} ({})  Revoked: {}  Reason: {}",
            e.user_certificate,
            e.raw_serial_as_string(),
            puppet_time(e.revocation_date.to_datetime()),
            reason
        );
    }
    Ok(s)
}
