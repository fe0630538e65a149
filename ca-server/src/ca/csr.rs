//! Parsing a PEM CSR into what policy and issuance need. Every refusal is a `CsrError` with a short
//! message fit for a client; nothing here panics on any input.

use std::fmt;
use std::net::IpAddr;

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::{der, oids};

/// The largest CSR body we look at.
pub const MAX_CSR_BYTES: usize = 64 * 1024;

/// Why a CSR body is refused before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsrError {
    /// No bytes at all.
    Empty,
    /// Larger than [`MAX_CSR_BYTES`].
    TooLarge,
    /// Not a PEM CSR, or its DER is broken.
    Unparsable(String),
    /// More than one PEM block.
    MultiplePem,
    /// No CN in the subject.
    NoCommonName,
    /// The self-signature does not verify.
    BadSignature,
    /// The extension request names the same extension more than once.
    DuplicateExtension(String),
    /// The public key is too weak or of a kind we do not certify.
    WeakKey(String),
    /// The self-signature uses a broken or unsupported digest.
    WeakSignature(String),
}

impl fmt::Display for CsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsrError::Empty => f.write_str("The certificate request is empty"),
            CsrError::TooLarge => write!(
                f,
                "The certificate request is larger than {} KiB",
                MAX_CSR_BYTES / 1024
            ),
            CsrError::Unparsable(why) => {
                write!(f, "Could not parse the certificate request: {why}")
            }
            CsrError::MultiplePem => f.write_str("The body must contain exactly one PEM certificate request"),
            CsrError::NoCommonName => f.write_str("The certificate request has no subject CN"),
            CsrError::BadSignature => {
                f.write_str("CSR contains a public key that does not correspond to the signing key")
            }
            CsrError::DuplicateExtension(name) => write!(
                f,
                "The certificate request contains the extension {name} more than once; \
                 each extension may appear only once"
            ),
            CsrError::WeakKey(why) => write!(f, "The certificate request's key is refused: {why}"),
            CsrError::WeakSignature(why) => {
                write!(f, "The certificate request's signature is refused: {why}")
            }
        }
    }
}

impl std::error::Error for CsrError {}

/// One subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum San {
    /// `DNS:name`
    Dns(String),
    /// `IP:addr`
    Ip(IpAddr),
    /// Any other type, in its display form (`email:x`, `URI:x`, ...): never issued.
    Other(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(n) => write!(f, "DNS:{n}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Other(s) => f.write_str(s),
        }
    }
}

impl San {
    /// Parses `DNS:x`, `IP:x` or a bare name (taken as DNS), as `dns_alt_names` lists are written.
    pub fn parse_alt_name(s: &str) -> Option<San> {
        let s = s.trim();
        if let Some(ip) = s.strip_prefix("IP:") {
            return ip.trim().parse().ok().map(San::Ip);
        }
        let name = s.strip_prefix("DNS:").unwrap_or(s).trim();
        if name.is_empty() || name.contains(',') || name.chars().any(char::is_whitespace) {
            return None;
        }
        Some(San::Dns(name.to_ascii_lowercase()))
    }
}

/// An extension the CSR asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedExtension {
    /// Its OID arcs.
    pub oid: Vec<u64>,
    /// Whether it is marked critical.
    pub critical: bool,
    /// The DER of the extension value (the contents of extnValue).
    pub value: Vec<u8>,
}

/// A parsed, self-signature-checked CSR.
#[derive(Debug, Clone)]
pub struct Csr {
    /// The PEM as stored and served back.
    pub pem: String,
    /// The DER.
    pub der: Vec<u8>,
    /// The subject CN.
    pub common_name: String,
    /// DER SubjectPublicKeyInfo.
    pub spki_der: Vec<u8>,
    /// The SAN entries of the extension request, in request order.
    pub sans: Vec<San>,
    /// Every requested extension except the SAN.
    pub extensions: Vec<RequestedExtension>,
    /// challengePassword, if present.
    pub challenge_password: Option<String>,
    /// Other attributes with a string value (dotted OID, value).
    pub attributes: Vec<(String, String)>,
}

fn oid_arcs(oid: &x509_parser::der_parser::oid::Oid<'_>) -> Result<Vec<u64>, CsrError> {
    oid.iter()
        .map(|it| it.collect())
        .ok_or_else(|| CsrError::Unparsable("an OID has an arc too large to handle".into()))
}

/// An IP address from the bytes of an iPAddress general name (4 or 16 bytes).
pub fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(IpAddr::from([b[0], b[1], b[2], b[3]])),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            Some(IpAddr::from(a))
        }
        _ => None,
    }
}

/// Our view of a general name: DNS and IP as themselves, every other type in its display form.
pub fn general_name(gn: &GeneralName<'_>) -> San {
    match gn {
        GeneralName::DNSName(n) => San::Dns(n.to_string()),
        GeneralName::IPAddress(b) => {
            ip_from_bytes(b).map_or_else(|| San::Other("IP:<invalid>".into()), San::Ip)
        }
        GeneralName::RFC822Name(n) => San::Other(format!("email:{n}")),
        GeneralName::URI(u) => San::Other(format!("URI:{u}")),
        GeneralName::DirectoryName(n) => San::Other(format!("DirName:{n}")),
        GeneralName::RegisteredID(o) => San::Other(format!("RID:{o}")),
        GeneralName::OtherName(o, _) => San::Other(format!("othername:{o}")),
        GeneralName::X400Address(_) => San::Other("X400Name:<unsupported>".into()),
        GeneralName::EDIPartyName(_) => San::Other("EdiPartyName:<unsupported>".into()),
        GeneralName::Invalid(..) => San::Other("<invalid>".into()),
    }
}

/// Parses and checks the body of a CSR submission: exactly one PEM CSR, a CN, a valid self-signature.
pub fn parse(body: &[u8]) -> Result<Csr, CsrError> {
    if body.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge);
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(CsrError::Empty);
    }
    let text =
        std::str::from_utf8(body).map_err(|_| CsrError::Unparsable("the body is not PEM text".into()))?;
    let mut blocks = pem::parse_many(text)
        .map_err(|e| CsrError::Unparsable(format!("bad PEM ({e})")))?
        .into_iter();
    let block = blocks
        .next()
        .ok_or_else(|| CsrError::Unparsable("no PEM block found".into()))?;
    if blocks.next().is_some() {
        return Err(CsrError::MultiplePem);
    }
    if has_text_outside_block(text) {
        return Err(CsrError::Unparsable("text outside the PEM block".into()));
    }
    if !matches!(block.tag(), "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST") {
        return Err(CsrError::Unparsable(format!(
            "expected a CERTIFICATE REQUEST PEM block, found {}",
            super::names::printable(block.tag())
        )));
    }
    parse_der(block.contents())
}

/// The value (`SET OF ...`, tag and all) of each attribute of a DER CertificationRequestInfo, in order:
/// `SEQUENCE { version, subject, subjectPKInfo, [0] { SEQUENCE { type, SET }... } }`. Empty when the
/// structure is not that (x509-parser has already accepted it by then).
fn attribute_sets(cri: &[u8]) -> Vec<&[u8]> {
    let mut sets = Vec::new();
    let Some((0x30, body, _)) = der::read_tlv(cri) else {
        return sets;
    };
    let mut rest = body;
    for _ in 0..3 {
        match der::read_tlv(rest) {
            Some((_, _, r)) => rest = r,
            None => return sets,
        }
    }
    let Some((0xa0, mut attrs, _)) = der::read_tlv(rest) else {
        return sets;
    };
    while let Some((0x30, attr, next)) = der::read_tlv(attrs) {
        attrs = next;
        let set = der::read_tlv(attr).map(|(_, _, value)| value).unwrap_or_default();
        sets.push(set);
    }
    sets
}

/// Whether anything but whitespace stands before the `-----BEGIN` line or after the first `-----END`
/// line (the body holds exactly one PEM block when this is asked).
fn has_text_outside_block(text: &str) -> bool {
    let Some(begin) = text.find("-----BEGIN ") else {
        return true;
    };
    let after_end = text[begin..]
        .find("-----END ")
        .map(|i| begin + i + "-----END ".len())
        .and_then(|i| text[i..].find("-----").map(|j| i + j + "-----".len()));
    let Some(end) = after_end else {
        return true;
    };
    !text[..begin].trim().is_empty() || !text[end..].trim().is_empty()
}

/// Parses and checks a DER CSR.
pub fn parse_der(der_bytes: &[u8]) -> Result<Csr, CsrError> {
    parse_der_checked(der_bytes, true)
}

/// [`parse_der`] for a request this CA stored: its signature was verified when it was submitted (or
/// imported), every request reaches the database through [`parse`], so signing and explaining it do
/// not verify it again (an ECDSA verification costs about as much as the signature that follows).
pub fn parse_stored_der(der_bytes: &[u8]) -> Result<Csr, CsrError> {
    parse_der_checked(der_bytes, false)
}

fn parse_der_checked(der_bytes: &[u8], verify: bool) -> Result<Csr, CsrError> {
    let (rest, req) = X509CertificationRequest::from_der(der_bytes)
        .map_err(|e| CsrError::Unparsable(format!("invalid DER ({e})")))?;
    if !rest.is_empty() {
        return Err(CsrError::Unparsable("trailing bytes after the request".into()));
    }
    let info = &req.certification_request_info;
    let mut cns = info.subject.iter_common_name();
    let common_name = cns
        .next()
        .ok_or(CsrError::NoCommonName)?
        .as_str()
        .map_err(|_| CsrError::Unparsable("the subject CN is not a string".into()))?
        .to_string();
    if cns.next().is_some() {
        return Err(CsrError::Unparsable("the subject has more than one CN".into()));
    }
    check_key(&info.subject_pki)?;
    check_signature_algorithm(&oid_arcs(&req.signature_algorithm.algorithm)?)?;
    if verify {
        req.verify_signature().map_err(|_| CsrError::BadSignature)?;
    }

    let mut sans = Vec::new();
    let mut seen: Vec<Vec<u64>> = Vec::new();
    let mut extensions = Vec::new();
    let mut challenge_password = None;
    let mut attributes = Vec::new();
    // x509-parser hands an unknown attribute's value as its SET header only; the whole SETs, in order,
    // come from the raw request info.
    let raw_sets = attribute_sets(info.raw);
    for (i, attr) in info.iter_attributes().enumerate() {
        match attr.parsed_attribute() {
            ParsedCriAttribute::ChallengePassword(p) => challenge_password = Some(p.0.clone()),
            ParsedCriAttribute::ExtensionRequest(er) => {
                for ext in &er.extensions {
                    let oid = oid_arcs(&ext.oid)?;
                    if seen.contains(&oid) {
                        return Err(CsrError::DuplicateExtension(extension_name(&oid)));
                    }
                    seen.push(oid.clone());
                    if oid == oids::SUBJECT_ALT_NAME {
                        match ext.parsed_extension() {
                            ParsedExtension::SubjectAlternativeName(s) => {
                                sans.extend(s.general_names.iter().map(general_name));
                            }
                            _ => {
                                return Err(CsrError::Unparsable(
                                    "the subjectAltName extension is malformed".into(),
                                ))
                            }
                        }
                    } else {
                        extensions.push(RequestedExtension {
                            oid,
                            critical: ext.critical,
                            value: ext.value.to_vec(),
                        });
                    }
                }
            }
            ParsedCriAttribute::UnsupportedAttribute => {
                let oid = oids::dotted(&oid_arcs(&attr.oid)?);
                let set = raw_sets.get(i).copied().unwrap_or_default();
                if let Some(v) = der::decode_set_of_string(set) {
                    attributes.push((oid, v));
                }
            }
        }
    }
    Ok(Csr {
        pem: super::pem_encode("CERTIFICATE REQUEST", der_bytes),
        der: der_bytes.to_vec(),
        common_name,
        spki_der: info.subject_pki.raw.to_vec(),
        sans,
        extensions,
        challenge_password,
        attributes,
    })
}

/// An extension's name for messages: `subjectAltName`, `pp_role`, or the dotted OID.
fn extension_name(oid: &[u64]) -> String {
    if oid == oids::SUBJECT_ALT_NAME {
        return "subjectAltName (2.5.29.17)".into();
    }
    match oids::short_name(oid) {
        Some(n) => format!("{n} ({})", oids::dotted(oid)),
        None => oids::dotted(oid),
    }
}

/// The smallest RSA modulus we certify, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus the signature check handles, in bits.
pub const MAX_RSA_BITS: usize = 8192;
/// The smallest RSA public exponent we certify.
pub const MIN_RSA_EXPONENT: u64 = 65537;

/// The value of a big-endian unsigned integer without its leading zero bytes.
fn strip_zeros(b: &[u8]) -> &[u8] {
    let skip = b.iter().take_while(|x| **x == 0).count();
    &b[skip..]
}

/// Refuses keys too weak to certify (RSA under 2048 bits or with a small exponent, DSA, curves other
/// than P-256 and P-384) with a message that says so, before the signature check would fail on them.
fn check_key(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<(), CsrError> {
    use x509_parser::public_key::PublicKey;
    let alg = oid_arcs(&spki.algorithm.algorithm)?;
    if alg == oids::KEY_DSA {
        return Err(CsrError::WeakKey(
            "DSA keys are not accepted; use RSA (at least 2048 bits) or EC P-256/P-384".into(),
        ));
    }
    if alg == oids::KEY_EC {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .map(|o| oid_arcs(&o))
            .transpose()?;
        return match curve.as_deref() {
            Some(c) if c == oids::CURVE_P256 || c == oids::CURVE_P384 => Ok(()),
            Some(c) if c == oids::CURVE_P192 => Err(CsrError::WeakKey(
                "EC P-192 keys are too weak; use EC P-256/P-384 or RSA (at least 2048 bits)".into(),
            )),
            Some(c) => Err(CsrError::WeakKey(format!(
                "EC curve {} is not accepted; use EC P-256/P-384 or RSA (at least 2048 bits)",
                oids::dotted(c)
            ))),
            None => Err(CsrError::WeakKey("the EC key names no curve".into())),
        };
    }
    if alg == oids::KEY_RSA {
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(CsrError::Unparsable("the RSA public key is malformed".into()));
        };
        let modulus = strip_zeros(rsa.modulus);
        let bits = modulus
            .first()
            .map_or(0, |b| (modulus.len() - 1) * 8 + (8 - b.leading_zeros() as usize));
        if bits < MIN_RSA_BITS {
            return Err(CsrError::WeakKey(format!(
                "RSA keys of {bits} bits are too weak; at least {MIN_RSA_BITS} bits are required"
            )));
        }
        if bits > MAX_RSA_BITS {
            return Err(CsrError::WeakKey(format!(
                "RSA keys of {bits} bits are not supported; at most {MAX_RSA_BITS} bits"
            )));
        }
        let exponent = strip_zeros(rsa.exponent);
        if exponent.len() <= 8 {
            let mut buf = [0u8; 8];
            buf[8 - exponent.len()..].copy_from_slice(exponent);
            let e = u64::from_be_bytes(buf);
            if e < MIN_RSA_EXPONENT {
                return Err(CsrError::WeakKey(format!(
                    "the RSA public exponent {e} is too small; at least {MIN_RSA_EXPONENT} is required"
                )));
            }
        }
    }
    Ok(())
}

/// Refuses self-signatures made with MD2/MD4/MD5 or SHA-1 (every Puppet agent since 3.x signs with
/// SHA-256), naming the digest.
fn check_signature_algorithm(alg: &[u64]) -> Result<(), CsrError> {
    let broken = |digest: &str| {
        Err(CsrError::WeakSignature(format!(
            "it is signed with {digest}, which is not accepted; sign it with SHA-256"
        )))
    };
    match alg {
        a if a == oids::SIG_MD2_RSA => broken("MD2"),
        a if a == oids::SIG_MD4_RSA => broken("MD4"),
        a if a == oids::SIG_MD5_RSA || a == oids::SIG_MD5_RSA_OLD => broken("MD5"),
        a if a == oids::SIG_SHA1_RSA
            || a == oids::SIG_SHA1_RSA_OLD
            || a == oids::SIG_ECDSA_SHA1
            || a == oids::SIG_DSA_SHA1 =>
        {
            broken("SHA-1")
        }
        _ => Ok(()),
    }
}

impl Csr {
    /// Value of a string attribute by dotted OID.
    pub fn attribute(&self, oid: &[u64]) -> Option<&str> {
        let dotted = oids::dotted(oid);
        self.attributes
            .iter()
            .find(|(o, _)| *o == dotted)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../fixtures/csr/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// Regression (bad_input e2e): a CSR with text before or after its PEM block was stored.
    #[test]
    fn text_outside_the_pem_block_is_refused() {
        let ok = fixture("ec-p256.pem");
        assert!(parse(&ok).is_ok());
        let padded = [b"\r\n  \n".as_slice(), &ok, b"\n\t\r\n"].concat();
        assert!(parse(&padded).is_ok(), "surrounding whitespace is fine");
        let outside = Err(CsrError::Unparsable("text outside the PEM block".into()));
        for junk in [
            [ok.as_slice(), b"trailing junk\n"].concat(),
            [b"Certificate Request:\n".as_slice(), &ok].concat(),
            [ok.as_slice(), b"-----END CERTIFICATE REQUEST-----\n"].concat(),
        ] {
            assert_eq!(parse(&junk).map(|c| c.common_name), outside);
        }
    }

    /// Regression (puppet8 e2e): Puppet 8 agents put `pp_auth_auto_renew = true` in their CSR as an
    /// attribute (PrintableString, as Puppet encodes it); it was never read, so no agent got the
    /// auto-renewal TTL.
    #[test]
    fn custom_attributes_are_read() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agent.example.test");
        // rcgen writes `values` as given: the whole `SET OF` value.
        let set = |v: Vec<u8>| der::encode_tlv(0x31, &v);
        let attrs = vec![
            rcgen::Attribute {
                oid: &[1, 3, 6, 1, 4, 1, 34380, 1, 1, 1],
                values: set(der::utf8_string("a-uuid")),
            },
            rcgen::Attribute {
                oid: oids::PP_AUTH_AUTO_RENEW,
                values: set(der::encode_tlv(0x13, b"true")),
            },
        ];
        let csr = params.serialize_request_with_attributes(&key, attrs).unwrap();
        let parsed = parse_der(csr.der()).unwrap();
        assert_eq!(parsed.attribute(oids::PP_AUTH_AUTO_RENEW), Some("true"));
        assert_eq!(
            parsed.attribute(&[1, 3, 6, 1, 4, 1, 34380, 1, 1, 1]),
            Some("a-uuid")
        );
        assert_eq!(parsed.attribute(&[1, 2, 3]), None);
    }
}
