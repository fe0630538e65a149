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

/// Decrypts a traditional OpenSSL-encrypted PEM key (`Proc-Type: 4,ENCRYPTED`, `DEK-Info:
/// DES-EDE3-CBC,<iv>`), as Puppet 3 wrote its CA key with the password in `private/ca.pass`. Returns
/// the key; an unencrypted PEM is loaded as it is.
pub fn load_pem_with_password(pem_text: &str, password: Option<&[u8]>) -> Result<KeyPair, CaError> {
    use cbc::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
    use md5::{Digest, Md5};

    let block = pem::parse(pem_text).map_err(|_| CaError::Key("the private key is not PEM".into()))?;
    let Some(dek) = block.headers().get("DEK-Info") else {
        return load_pem(pem_text);
    };
    let password = password.ok_or_else(|| {
        CaError::Key("the private key is encrypted and no password was given (private/ca.pass)".into())
    })?;
    let (cipher, iv_hex) = dek
        .split_once(',')
        .ok_or_else(|| CaError::Key("malformed DEK-Info header".into()))?;
    if !cipher.trim().eq_ignore_ascii_case("DES-EDE3-CBC") {
        return Err(CaError::Key(format!(
            "unsupported key encryption {cipher}: decrypt it first (openssl rsa -in KEY -out PLAIN)"
        )));
    }
    let iv: Vec<u8> = (0..iv_hex.trim().len() / 2)
        .map(|i| u8::from_str_radix(iv_hex.trim().get(2 * i..2 * i + 2).unwrap_or("zz"), 16))
        .collect::<Result<_, _>>()
        .map_err(|_| CaError::Key("malformed DEK-Info IV".into()))?;
    if iv.len() != 8 {
        return Err(CaError::Key("malformed DEK-Info IV".into()));
    }
    // OpenSSL's EVP_BytesToKey with MD5, one iteration, the IV's first 8 bytes as salt.
    let mut key = Vec::with_capacity(32);
    let mut prev: Vec<u8> = Vec::new();
    while key.len() < 24 {
        let mut h = Md5::new();
        h.update(&prev);
        h.update(password);
        h.update(&iv[..8]);
        prev = h.finalize().to_vec();
        key.extend_from_slice(&prev);
    }
    let mut buf = block.contents().to_vec();
    let plain = cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key[..24], &iv)
        .map_err(|_| CaError::Key("bad key or IV length".into()))?
        .decrypt_padded_mut::<Pkcs7>(&mut buf)
        .map_err(|_| CaError::Key("cannot decrypt the private key: wrong password?".into()))?;
    let label = if block.tag().contains("EC") {
        "EC PRIVATE KEY"
    } else {
        "RSA PRIVATE KEY"
    };
    load_pem(&super::pem_encode(label, plain))
        .map_err(|_| CaError::Key("cannot decrypt the private key: wrong password?".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decrypts_openssl_des3_pem() {
        // `openssl genrsa -traditional -des3 -passout pass:puppet-ca-pass 1024` would do; the test makes one
        // with the openssl CLI so the encryption is OpenSSL's own.
        let dir = std::env::temp_dir().join(format!("ca-keytest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("k.pem");
        let st = std::process::Command::new("openssl")
            .args([
                "genrsa",
                "-traditional",
                "-des3",
                "-passout",
                "pass:puppet-ca-pass",
                "-out",
            ])
            .arg(&out)
            .arg("2048")
            .output()
            .expect("openssl");
        assert!(st.status.success(), "{st:?}");
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("DEK-Info: DES-EDE3-CBC"));
        let kp = load_pem_with_password(&text, Some(b"puppet-ca-pass")).unwrap();
        assert_eq!(kp.algorithm(), &rcgen::PKCS_RSA_SHA256);
        assert!(load_pem_with_password(&text, Some(b"wrong")).is_err());
        assert!(load_pem_with_password(&text, None).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
