//! The CA's signing identity: its certificate chain and its key, ready to issue and to sign CRLs.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{der, digest, oids, pem_encode, CaError};

/// The comment puppetserver puts in every certificate it issues.
pub const NETSCAPE_COMMENT_TEXT: &str = "Puppet Server Internal Certificate";

/// A CA certificate parsed once: what issuance and the CRL need from it.
#[derive(Clone)]
pub struct CaCert {
    /// DER of the certificate.
    pub der: Vec<u8>,
    /// Subject key identifier (the AKI of everything this CA signs).
    pub key_id: Vec<u8>,
    /// Subject CN.
    pub common_name: String,
    /// notAfter.
    pub not_after: OffsetDateTime,
}

impl CaCert {
    /// Parses a CA certificate from DER.
    pub fn from_der(der_bytes: &[u8]) -> Result<(Self, Vec<u8>), CaError> {
        let (_, cert) = X509Certificate::from_der(der_bytes)
            .map_err(|e| CaError::failed("could not parse: CA certificate", e))?;
        let spk = cert.public_key().subject_public_key.data.to_vec();
        let ski = cert.extensions().iter().find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        });
        let key_id = ski.unwrap_or_else(|| digest::key_identifier(&spk));
        let common_name = super::names::common_name(cert.subject()).unwrap_or_default();
        let not_after = cert.validity().not_after.to_datetime();
        Ok((
            CaCert {
                der: der_bytes.to_vec(),
                key_id,
                common_name,
                not_after,
            },
            spk,
        ))
    }
}

/// The signing CA: chain (signing CA first) and key. `Debug` never shows the key.
pub struct CaSigner {
    issuer: Issuer<'static, CaKey>,
    /// The signing CA's certificate.
    pub cert: CaCert,
    /// The whole chain as PEM, signing CA first (served on `certificate/ca`).
    pub chain_pem: String,
    /// DER of every certificate in the chain, signing CA first.
    pub chain_der: Vec<Vec<u8>>,
    /// DER of the signing CA's subject Name (the issuer of everything it signs).
    pub subject_der: Vec<u8>,
    /// The key that seals the audit log (see [`audit_key`]); as secret as the CA key.
    audit_key: zeroize::Zeroizing<[u8; 32]>,
    /// The key file's key as aws-lc holds it to sign a SHA-256 digest (rcgen's key signs only whole
    /// messages); made on first use, `None` for a token's key.
    digest_key: std::sync::OnceLock<Option<DigestKey>>,
}

/// A CA key that signs SHA-256 digests (see [`CaSigner::sign_digest`]).
enum DigestKey {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ecdsa(aws_lc_rs::signature::EcdsaKeyPair),
}

impl fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaSigner")
            .field("ca", &self.cert.common_name)
            .field("key", &"[secret key elided]")
            .finish()
    }
}

/// Parses every `CERTIFICATE` block of a PEM bundle to DER.
pub fn parse_cert_bundle(pem_text: &str) -> Result<Vec<Vec<u8>>, CaError> {
    let blocks = pem::parse_many(pem_text).map_err(|e| CaError::failed("could not parse: PEM", e))?;
    let ders: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(pem::Pem::into_contents)
        .collect();
    if ders.is_empty() {
        return Err(CaError::Parse("no certificate in the CA bundle".into()));
    }
    Ok(ders)
}

/// The public key of a chain's first certificate, as rcgen gives a key's (to find that key).
pub fn chain_public_key(chain_pem: &str) -> Result<Vec<u8>, CaError> {
    let chain = parse_cert_bundle(chain_pem)?;
    Ok(CaCert::from_der(&chain[0])?.1)
}

impl CaSigner {
    /// Builds the signer from a chain (signing CA first) and its key; refuses a key that does not match.
    pub fn new(chain_pem: &str, key: impl Into<CaKey>) -> Result<Self, CaError> {
        let key: CaKey = key.into();
        let chain_der = parse_cert_bundle(chain_pem)?;
        let (cert, spk) = CaCert::from_der(&chain_der[0])?;
        if key.der_bytes() != spk.as_slice() {
            return Err(CaError::Key(
                "the CA private key does not match the CA certificate".into(),
            ));
        }
        let audit_key = audit_key(&key)?;
        let issuer = Issuer::from_ca_cert_der(&chain_der[0].clone().into(), key)?;
        let (_, parsed) = X509Certificate::from_der(&chain_der[0])
            .map_err(|e| CaError::failed("could not parse: CA certificate", e))?;
        let subject_der = parsed.subject().as_raw().to_vec();
        let chain_pem = chain_der
            .iter()
            .map(|d| pem_encode("CERTIFICATE", d))
            .collect::<String>();
        Ok(CaSigner {
            issuer,
            cert,
            chain_pem,
            chain_der,
            subject_der,
            audit_key,
            digest_key: std::sync::OnceLock::new(),
        })
    }

    /// Signs a SHA-256 digest as the CA key signs a message with that digest (sha256WithRSAEncryption,
    /// ecdsa-with-SHA256): for a CRL whose hash was begun ahead of time (see `crl::Preparing`). `None`
    /// when the key cannot (a PKCS#11 token's: sign the message instead).
    pub fn sign_digest(&self, digest: &aws_lc_rs::digest::Digest) -> Option<Result<Vec<u8>, CaError>> {
        let fail = |_| CaError::Key("key error: signing a digest".into());
        let key = self.digest_key()?;
        Some(metered(|| match key {
            DigestKey::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign_digest(&aws_lc_rs::signature::RSA_PKCS1_SHA256, digest, &mut sig)
                    .map(|()| sig)
                    .map_err(fail)
            }
            DigestKey::Ecdsa(k) => k.sign_digest(digest).map(|s| s.as_ref().to_vec()).map_err(fail),
        }))
    }

    /// Whether [`CaSigner::sign_digest`] can sign.
    pub fn can_sign_digests(&self) -> bool {
        self.digest_key().is_some()
    }

    fn digest_key(&self) -> Option<&DigestKey> {
        self.digest_key
            .get_or_init(|| {
                let CaKey::File(key) = self.issuer.key() else {
                    return None;
                };
                let pkcs8 = super::keys::pkcs8_der(key).ok()?;
                if key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
                    let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
                    aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, &pkcs8)
                        .ok()
                        .map(DigestKey::Ecdsa)
                } else if key.algorithm() == &rcgen::PKCS_RSA_SHA256 {
                    aws_lc_rs::rsa::KeyPair::from_pkcs8(&pkcs8)
                        .ok()
                        .map(DigestKey::Rsa)
                } else {
                    None
                }
            })
            .as_ref()
    }

    /// The audit log's sealing key, derived from the CA key: whoever lacks the CA key cannot seal a row.
    pub fn audit_key(&self) -> &[u8] {
        self.audit_key.as_slice()
    }

    /// The rcgen issuer (for `issue` and `crl`).
    pub(crate) fn issuer(&self) -> &Issuer<'static, CaKey> {
        &self.issuer
    }

    /// Whether the CA key is in a PKCS#11 token.
    pub fn issuer_in_token(&self) -> bool {
        self.issuer.key().token().is_some()
    }

    /// `audit_key` encrypted for this CA key (AES-256-GCM under a key derived from it, bound to its
    /// key identifier). A key rollover stores it, so the audit log keeps one sealing key across CA
    /// keys: the new key opens it ([`CaSigner::adopt_audit_key`]), and the records sealed before the
    /// rollover still verify.
    pub fn wrap_audit_key(&self, audit_key: &[u8]) -> Result<Vec<u8>, CaError> {
        use aws_lc_rs::rand::SecureRandom;
        let aead = self.wrapping_key()?;
        let mut nonce = [0u8; 12];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| CaError::Key("no randomness for wrapping the audit key".into()))?;
        let mut sealed = audit_key.to_vec();
        aead.seal_in_place_append_tag(
            aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
            aws_lc_rs::aead::Aad::from(self.cert.key_id.as_slice()),
            &mut sealed,
        )
        .map_err(|_| CaError::Key("cannot wrap the audit key".into()))?;
        let mut out = vec![WRAP_VERSION];
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Seals the audit log with the key `wrapped` holds ([`CaSigner::wrap_audit_key`] for this CA
    /// key) instead of the one derived from this CA key. Refuses what this key did not wrap.
    pub fn adopt_audit_key(&mut self, wrapped: &[u8]) -> Result<(), CaError> {
        let bad = || {
            CaError::Key(
                "the database's audit key was not wrapped for this CA key (is this the CA's key?)".into(),
            )
        };
        let (&version, rest) = wrapped.split_first().ok_or_else(bad)?;
        if version != WRAP_VERSION || rest.len() != 12 + 32 + 16 {
            return Err(bad());
        }
        let (nonce, sealed) = rest.split_at(12);
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let aead = self.wrapping_key()?;
        let mut buf = zeroize::Zeroizing::new(sealed.to_vec());
        let plain = aead
            .open_in_place(
                nonce,
                aws_lc_rs::aead::Aad::from(self.cert.key_id.as_slice()),
                &mut buf,
            )
            .map_err(|_| bad())?;
        self.audit_key.copy_from_slice(plain);
        Ok(())
    }

    fn wrapping_key(&self) -> Result<aws_lc_rs::aead::LessSafeKey, CaError> {
        let secret = key_secret(self.issuer.key(), b"ca audit key wrap v1")?;
        let key = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, secret.as_slice())
            .map_err(|_| CaError::Key("cannot make the audit key's wrapping key".into()))?;
        Ok(aws_lc_rs::aead::LessSafeKey::new(key))
    }
}

/// The format of a wrapped audit key: this byte, the nonce (12 bytes), the key and the tag.
const WRAP_VERSION: u8 = 1;

/// The CA's private key: a key file's, in memory, or a PKCS#11 token's, which never leaves it.
pub enum CaKey {
    /// From `ca_key.pem`.
    File(KeyPair),
    /// In a token (`[ca.pkcs11]`).
    Token(super::token::TokenKey),
}

impl From<KeyPair> for CaKey {
    fn from(k: KeyPair) -> CaKey {
        CaKey::File(k)
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            CaKey::File(k) => k.der_bytes(),
            CaKey::Token(t) => t.public_der(),
        }
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            CaKey::File(k) => k.algorithm(),
            CaKey::Token(t) => t.algorithm(),
        }
    }
}

impl rcgen::SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        metered(|| match self {
            CaKey::File(k) => k.sign(msg),
            CaKey::Token(t) => t.sign(msg).map_err(|e| {
                tracing::error!(error = %crate::error::Chain(&e), "the CA key in the token could not sign");
                rcgen::Error::RemoteKeyError
            }),
        })
    }
}

/// The CA key's signatures made in this process (certificates, CRLs, everything the key signs;
/// not the OCSP responder's, whose key is its own).
static SIGNATURES: AtomicU64 = AtomicU64::new(0);
/// The CPU time the signing threads spent in them, in nanoseconds: the signing primitive alone
/// (the call into the key, not the certificate built around it), on each thread's own CPU clock,
/// so time the thread waited for a core is not in it.
static SIGNATURE_CPU_NS: AtomicU64 = AtomicU64::new(0);
static THREAD_CPU_CLOCK: OnceLock<fn() -> Option<Duration>> = OnceLock::new();

/// Installs how the calling thread's CPU time is read (once; later calls are ignored). Without it
/// signatures are counted and their CPU time stays 0.
pub fn set_thread_cpu_clock(clock: fn() -> Option<Duration>) {
    let _ = THREAD_CPU_CLOCK.set(clock);
}

/// The CA key's signatures made in this process so far, and the CPU time spent in them (zero when
/// no clock was installed). `/metrics` shows both: what one signature costs on this machine at the
/// moment, measured where the certificates are signed, whatever else runs on the cores.
pub fn signatures() -> (u64, Duration) {
    (
        SIGNATURES.load(Ordering::Relaxed),
        Duration::from_nanos(SIGNATURE_CPU_NS.load(Ordering::Relaxed)),
    )
}

/// Runs one signature, counting it and its CPU time.
fn metered<T>(sign: impl FnOnce() -> T) -> T {
    let clock = THREAD_CPU_CLOCK.get();
    let started = clock.and_then(|c| c());
    let out = sign();
    if let (Some(c), Some(started)) = (clock, started) {
        if let Some(spent) = c().and_then(|now| now.checked_sub(started)) {
            let ns = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
            SIGNATURE_CPU_NS.fetch_add(ns, Ordering::Relaxed);
        }
    }
    SIGNATURES.fetch_add(1, Ordering::Relaxed);
    out
}

impl CaKey {
    /// The token, when the key is in one.
    pub fn token(&self) -> Option<&super::token::TokenKey> {
        match self {
            CaKey::Token(t) => Some(t),
            CaKey::File(_) => None,
        }
    }
}

/// The audit log's sealing key: for a key file, HMAC-SHA256 under a fixed label over the CA key in a
/// canonical form (the EC scalar, or the RSA key as aws-lc re-encodes it), so that re-encoding or
/// encrypting the key file (`ca key encrypt`, PKCS#1 or SEC1 files) keeps the same sealing key; for a
/// token, an HMAC by its audit secret.
fn audit_key(key: &CaKey) -> Result<zeroize::Zeroizing<[u8; 32]>, CaError> {
    key_secret(key, b"ca audit seal v1")
}

/// 32 secret bytes for `label`, derived from the CA key (see [`audit_key`]).
fn key_secret(key: &CaKey, label: &[u8]) -> Result<zeroize::Zeroizing<[u8; 32]>, CaError> {
    let key = match key {
        CaKey::File(k) => k,
        CaKey::Token(t) => return t.derive(label),
    };
    use aws_lc_rs::encoding::{AsBigEndian, AsDer};
    fn fail<E>(_: E) -> CaError {
        CaError::Key("cannot derive the audit sealing key from the CA key".into())
    }
    let pkcs8 = super::keys::pkcs8_der(key)?;
    let canonical: zeroize::Zeroizing<Vec<u8>> = if key.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256 {
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let kp = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, &pkcs8).map_err(fail)?;
        let scalar = kp.private_key().as_be_bytes().map_err(fail)?;
        zeroize::Zeroizing::new(scalar.as_ref().to_vec())
    } else {
        let kp = aws_lc_rs::rsa::KeyPair::from_pkcs8(&pkcs8).map_err(fail)?;
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der<'static>>::as_der(&kp).map_err(fail)?;
        zeroize::Zeroizing::new(der.as_ref().to_vec())
    };
    let label = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, label);
    let tag = aws_lc_rs::hmac::sign(&label, &canonical);
    let mut out = zeroize::Zeroizing::new([0u8; 32]);
    out.copy_from_slice(tag.as_ref());
    Ok(out)
}

/// Netscape comment extension with puppetserver's text.
pub(crate) fn netscape_comment() -> CustomExtension {
    CustomExtension::from_oid_content(
        oids::NETSCAPE_COMMENT,
        der::encode_tlv(0x16, NETSCAPE_COMMENT_TEXT.as_bytes()),
    )
}

fn ca_params(
    name: &str,
    key: &impl PublicKeyData,
    serial: u64,
    now: OffsetDateTime,
    ttl: time::Duration,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.serial_number = Some(SerialNumber::from(serial));
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + ttl;
    p.key_identifier_method = KeyIdMethod::PreSpecified(digest::key_identifier(key.der_bytes()));
    p.use_authority_key_identifier_extension = true;
    p.custom_extensions = vec![netscape_comment()];
    p
}

/// An intermediate CA certificate signed by `parent` (§5.2): same profile as a root, AKI = the parent's SKI.
pub fn intermediate_ca(
    name: &str,
    key: &impl PublicKeyData,
    serial: u64,
    now: OffsetDateTime,
    ttl: time::Duration,
    parent: &CaSigner,
) -> Result<Vec<u8>, CaError> {
    let p = ca_params(name, key, serial, now, ttl);
    Ok(p.signed_by(key, parent.issuer())?.der().to_vec())
}

/// A self-signed CA certificate (§5.1): CA:TRUE critical, keyCertSign+cRLSign critical, SHA-1 SKI and AKI.
pub fn self_signed_ca(
    name: &str,
    key: &impl rcgen::SigningKey,
    serial: u64,
    now: OffsetDateTime,
    ttl: time::Duration,
) -> Result<Vec<u8>, CaError> {
    Ok(ca_params(name, key, serial, now, ttl)
        .self_signed(key)?
        .der()
        .to_vec())
}

/// The subject of a certificate as rcgen writes it, each attribute with its string type, so that the
/// re-signed certificate names the CA with the same bytes (TLS stacks such as webpki compare the
/// issuer of a leaf with the CA's subject byte for byte). One attribute per RDN.
fn same_subject(cert: &X509Certificate<'_>) -> Result<DistinguishedName, CaError> {
    use rcgen::string::{Ia5String, PrintableString, TeletexString};
    use rcgen::DnValue;
    use x509_parser::der_parser::asn1_rs::Tag;
    let unsupported = |why: &str| CaError::Invalid(format!("the CA certificate's subject {why}"));
    let mut dn = DistinguishedName::new();
    for rdn in cert.subject().iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(unsupported("has a multi-valued name part"));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| unsupported("has an unreadable attribute type"))?
            .collect();
        let data = attr.attr_value().data;
        let text = std::str::from_utf8(data).map_err(|_| unsupported("is not text"))?;
        let bad_string = |_| unsupported("has a malformed string");
        let value = match attr.attr_value().header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_string()),
            Tag::PrintableString => {
                DnValue::PrintableString(PrintableString::try_from(text).map_err(bad_string)?)
            }
            Tag::Ia5String => DnValue::Ia5String(Ia5String::try_from(text).map_err(bad_string)?),
            Tag::T61String => DnValue::TeletexString(TeletexString::try_from(text).map_err(bad_string)?),
            _ => return Err(unsupported("uses a string type this CA cannot re-encode")),
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// The CA certificate `old`, re-signed with a new validity (`now` - 1 day to `now` + `ttl`, capped by
/// the parent's notAfter) and serial: same subject (byte for byte), key and subject key identifier,
/// so every certificate it issued keeps verifying under it. Self-signed without `parent`; else
/// signed by the parent (an intermediate under its root).
pub fn extended_ca(
    old: &[u8],
    key: &impl rcgen::SigningKey,
    serial: u64,
    now: OffsetDateTime,
    ttl: time::Duration,
    parent: Option<&CaSigner>,
) -> Result<Vec<u8>, CaError> {
    let (ca, spk) = CaCert::from_der(old)?;
    if key.der_bytes() != spk.as_slice() {
        return Err(CaError::Key(
            "the key does not match the CA certificate to extend".into(),
        ));
    }
    ca_like(old, key, ca.key_id, serial, now, ttl, parent)
}

/// A CA certificate named exactly as the certificate `template` (its subject, byte for byte), for
/// `key`, with the subject key identifier `key_id`, valid from `now` - 1 day to `now` + `ttl` (capped
/// by the parent's notAfter): self-signed without `parent`, else signed by it. For extensions and for
/// a key rollover's new CA certificate and cross-certificates.
pub fn ca_like(
    template: &[u8],
    key: &impl rcgen::SigningKey,
    key_id: Vec<u8>,
    serial: u64,
    now: OffsetDateTime,
    ttl: time::Duration,
    parent: Option<&CaSigner>,
) -> Result<Vec<u8>, CaError> {
    let (_, cert) = X509Certificate::from_der(template)
        .map_err(|e| CaError::failed("could not parse: CA certificate", e))?;
    let mut p = ca_params("", key, serial, now, ttl);
    p.distinguished_name = same_subject(&cert)?;
    p.key_identifier_method = KeyIdMethod::PreSpecified(key_id);
    if let Some(parent) = parent {
        p.not_after = p.not_after.min(parent.cert.not_after);
    }
    let der = match parent {
        None => p.self_signed(key)?.der().to_vec(),
        Some(parent) => p.signed_by(key, parent.issuer())?.der().to_vec(),
    };
    let (_, new) = X509Certificate::from_der(&der)
        .map_err(|e| CaError::failed("could not parse: new CA certificate", e))?;
    if new.subject().as_raw() != cert.subject().as_raw() {
        return Err(CaError::Invalid(
            "the CA certificate's subject cannot be re-encoded identically".into(),
        ));
    }
    Ok(der)
}
