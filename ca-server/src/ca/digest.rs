//! Fingerprints and key identifiers.

use aws_lc_rs::digest::{self, Algorithm};

/// A digest Puppet shows fingerprints in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Digest {
    /// SHA-1 (legacy display only).
    Sha1,
    /// SHA-256, Puppet's default.
    Sha256,
    /// SHA-512.
    Sha512,
}

impl Digest {
    fn algorithm(self) -> &'static Algorithm {
        match self {
            Digest::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Digest::Sha256 => &digest::SHA256,
            Digest::Sha512 => &digest::SHA512,
        }
    }

    /// The label Puppet prints (`SHA256`).
    pub fn label(self) -> &'static str {
        match self {
            Digest::Sha1 => "SHA1",
            Digest::Sha256 => "SHA256",
            Digest::Sha512 => "SHA512",
        }
    }

    /// Parses `sha256`, `SHA-256`, ...
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().replace('-', "").as_str() {
            "sha1" => Some(Digest::Sha1),
            "sha256" => Some(Digest::Sha256),
            "sha512" => Some(Digest::Sha512),
            _ => None,
        }
    }
}

/// Uppercase hex pairs joined by `:`, as Puppet prints fingerprints.
pub fn fingerprint(alg: Digest, der: &[u8]) -> String {
    colon_hex(digest::digest(alg.algorithm(), der).as_ref())
}

/// Uppercase colon-separated hex.
pub fn colon_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Lowercase hex, no separator (hashes in the audit log, random names).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The authority key identifier among `extensions` (of a certificate or a CRL): which CA key signed it.
pub fn authority_key_id(extensions: &[x509_parser::extensions::X509Extension<'_>]) -> Option<Vec<u8>> {
    extensions.iter().find_map(|e| match e.parsed_extension() {
        x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
            a.key_identifier.as_ref().map(|k| k.0.to_vec())
        }
        _ => None,
    })
}

/// RFC 5280 method 1 key identifier: SHA-1 of the subjectPublicKey bits, as Puppet and OpenSSL use.
pub fn key_identifier(subject_public_key: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, subject_public_key)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_format() {
        let fp = fingerprint(Digest::Sha256, b"abc");
        assert!(fp.starts_with("BA:78:16:BF"), "{fp}");
        assert_eq!(fp.len(), 32 * 3 - 1);
        assert_eq!(colon_hex(&[0x00, 0xab, 0x7f]), "00:AB:7F");
        assert_eq!(colon_hex(&[]), "");
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(Digest::parse("SHA-512"), Some(Digest::Sha512));
        assert_eq!(Digest::parse("md5"), None);
    }
}
