//! Key generation and loading. Private key bytes only ever leave here as PEM written to a 0600 file.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, RsaKeySize, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};

use super::CaError;

/// Key types we generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyType {
    /// RSA 4096 bits, Puppet's default.
    #[default]
    Rsa4096,
    /// RSA 2048 bits.
    Rsa2048,
    /// ECDSA on P-256.
    EcP256,
}

impl FromStr for KeyType {
    type Err = CaError;
    fn from_str(s: &str) -> Result<Self, CaError> {
        match s.to_ascii_lowercase().as_str() {
            "rsa-4096" | "rsa4096" | "rsa" => Ok(KeyType::Rsa4096),
            "rsa-2048" | "rsa2048" => Ok(KeyType::Rsa2048),
            "ec-p256" | "ec" | "p256" | "prime256v1" => Ok(KeyType::EcP256),
            _ => Err(CaError::Invalid(format!(
                "unknown key type '{s}': use rsa-4096, rsa-2048 or ec-p256"
            ))),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::EcP256 => "ec-p256",
        })
    }
}

/// Generates a key. RSA takes 0.1–1 s: call it off the async executor.
pub fn generate(kind: KeyType) -> Result<KeyPair, CaError> {
    let kp = match kind {
        KeyType::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyType::EcP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
    };
    kp.map_err(|e| CaError::Key(format!("could not generate a {kind} key: {e}")))
}

/// Loads a PEM private key (PKCS#8, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
pub fn load_pem(pem: &str) -> Result<KeyPair, CaError> {
    // The error from rcgen never contains key material, but keep it short anyway.
    KeyPair::from_pem(pem)
        .map_err(|_| CaError::Key("the private key is not an unencrypted PEM RSA or EC key".into()))
}
