//! Key generation and loading. Private key bytes only ever leave here as PEM written to a 0600 file.

use std::fmt;
use std::str::FromStr;

use rcgen::{KeyPair, RsaKeySize, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256};
use zeroize::Zeroizing;

use super::passphrase::{Passphrase, HOW_TO_GIVE};
use super::CaError;

/// PEM label of a PKCS#8 `EncryptedPrivateKeyInfo`.
pub const ENCRYPTED_LABEL: &str = "ENCRYPTED PRIVATE KEY";

/// PBKDF2-HMAC-SHA256 iterations for the keys we encrypt (OWASP's figure for 2023; a fraction of a
/// second, paid once when the CA opens).
pub const PBKDF2_ITERATIONS: u32 = 600_000;

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
    kp.map_err(|e| CaError::failed(format!("key error: could not generate a {kind} key"), e))
}

/// Loads a PEM private key (PKCS#8, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`).
pub fn load_pem(pem: &str) -> Result<KeyPair, CaError> {
    // The error from rcgen never contains key material, but keep it short anyway.
    KeyPair::from_pem(pem)
        .map_err(|_| CaError::Key("the private key is not an unencrypted PEM RSA or EC key".into()))
}

/// The key as PKCS#8 DER. rcgen keeps the DER it was loaded from, which is PKCS#1 or SEC1 for a
/// traditional `RSA PRIVATE KEY` or `EC PRIVATE KEY`; those are converted.
pub fn pkcs8_der(key: &KeyPair) -> Result<Zeroizing<Vec<u8>>, CaError> {
    use aws_lc_rs::encoding::AsDer;
    let der = key.serialized_der();
    if pkcs8::PrivateKeyInfo::try_from(der).is_ok() {
        return Ok(Zeroizing::new(der.to_vec()));
    }
    fn fail<E>(_: E) -> CaError {
        CaError::Key("cannot convert the private key to PKCS#8".into())
    }
    let converted = if key.algorithm() == &PKCS_ECDSA_P256_SHA256 {
        let alg = &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
        let kp = aws_lc_rs::signature::EcdsaKeyPair::from_private_key_der(alg, der).map_err(fail)?;
        kp.to_pkcs8v1().map_err(fail)?.as_ref().to_vec()
    } else {
        let kp = aws_lc_rs::rsa::KeyPair::from_der(der).map_err(fail)?;
        kp.as_der().map_err(fail)?.as_ref().to_vec()
    };
    Ok(Zeroizing::new(converted))
}

/// The key as an unencrypted PKCS#8 `PRIVATE KEY` PEM, whatever format it was loaded from.
pub fn pkcs8_pem(key: &KeyPair) -> Result<Zeroizing<String>, CaError> {
    Ok(Zeroizing::new(super::pem_encode("PRIVATE KEY", &pkcs8_der(key)?)))
}

/// Whether a PEM key is encrypted: PKCS#8 `ENCRYPTED PRIVATE KEY`, or a traditional OpenSSL PEM with a
/// `DEK-Info` header.
pub fn is_encrypted(pem_text: &str) -> bool {
    pem_text.contains(&format!("-----BEGIN {ENCRYPTED_LABEL}-----")) || pem_text.contains("DEK-Info:")
}

/// The key as a PKCS#8 `ENCRYPTED PRIVATE KEY` PEM: PBES2 with PBKDF2-HMAC-SHA256
/// ([`PBKDF2_ITERATIONS`], 16-byte random salt) and AES-256-CBC, as `openssl pkcs8 -topk8 -v2 aes-256-cbc`
/// writes it and `openssl pkey -passin` reads it. Takes a fraction of a second: call it off the executor.
pub fn encrypt_pem(key: &KeyPair, passphrase: &Passphrase) -> Result<String, CaError> {
    use pkcs8::{pkcs5::pbes2, PrivateKeyInfo};

    let fail = |_| CaError::Key("cannot encrypt the private key".into());
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt)
        .and_then(|()| aws_lc_rs::rand::fill(&mut iv))
        .map_err(|_| CaError::Key("no randomness for the key encryption".into()))?;
    let der = pkcs8_der(key)?;
    let info = PrivateKeyInfo::try_from(der.as_slice())
        .map_err(|_| CaError::Key("the private key is not PKCS#8".into()))?;
    let params = pbes2::Parameters::pbkdf2_sha256_aes256cbc(PBKDF2_ITERATIONS, &salt, &iv)
        .map_err(|e| fail(pkcs8::Error::from(e)))?;
    let doc = info
        .encrypt_with_params(params, passphrase.expose())
        .map_err(fail)?;
    Ok(super::pem_encode(ENCRYPTED_LABEL, doc.as_bytes()))
}

/// Loads a PEM private key that may be encrypted: PKCS#8 `ENCRYPTED PRIVATE KEY` (PBES2) or a traditional
/// OpenSSL PEM with `DEK-Info: DES-EDE3-CBC`, with `passphrase`; anything else as [`load_pem`]. `what`
/// names the key in errors ("the CA key"). Decryption takes a fraction of a second: call it off the
/// executor.
pub fn load_key(pem_text: &str, passphrase: Option<&Passphrase>, what: &str) -> Result<KeyPair, CaError> {
    if !is_encrypted(pem_text) {
        return load_pem(pem_text);
    }
    let passphrase = passphrase.ok_or_else(|| {
        CaError::Key(format!(
            "{what} is encrypted and no passphrase was given: {HOW_TO_GIVE}"
        ))
    })?;
    let wrong = || CaError::Key(format!("cannot decrypt {what}: wrong passphrase?"));
    let block = pem::parse(pem_text).map_err(|_| CaError::Key(format!("{what} is not PEM")))?;
    if block.tag() != ENCRYPTED_LABEL {
        return load_pem_with_password(pem_text, Some(passphrase.expose())).map_err(|e| match e {
            CaError::Key(m) if m.contains("wrong password") => wrong(),
            other => other,
        });
    }
    let unsupported = || {
        CaError::Key(format!(
            "{what} is encrypted with an unsupported scheme: use PBES2 with AES-CBC \
             (openssl pkcs8 -topk8 -v2 aes-256-cbc)"
        ))
    };
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(block.contents()).map_err(|_| unsupported())?;
    let plain = info.decrypt(passphrase.expose()).map_err(|e| match e {
        pkcs8::Error::EncryptedPrivateKey(
            pkcs8::pkcs5::Error::DecryptFailed | pkcs8::pkcs5::Error::EncryptFailed,
        )
        | pkcs8::Error::Asn1(_) => wrong(),
        _ => unsupported(),
    })?;
    // Garbage that happens to end in valid padding is refused here.
    KeyPair::try_from(plain.as_bytes()).map_err(|_| wrong())
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

    fn openssl(args: &[&str]) -> String {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn encrypted_round_trip_and_refusals() {
        let key = generate(KeyType::EcP256).unwrap();
        let pass = Passphrase::new(b"correct horse".to_vec());
        let pem = encrypt_pem(&key, &pass).unwrap();
        assert!(
            pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----\n"),
            "{pem}"
        );
        assert!(is_encrypted(&pem));
        assert!(!is_encrypted(&key.serialize_pem()));
        let back = load_key(&pem, Some(&pass), "the CA key").unwrap();
        assert_eq!(back.public_key_raw(), key.public_key_raw());
        // A plain key loads whether or not a passphrase is given.
        let plain = load_key(&key.serialize_pem(), Some(&pass), "the CA key").unwrap();
        assert_eq!(plain.public_key_raw(), key.public_key_raw());

        let wrong = Passphrase::new(b"incorrect horse".to_vec());
        let e = load_key(&pem, Some(&wrong), "the CA key")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "key error: cannot decrypt the CA key: wrong passphrase?");
        let e = load_key(&pem, None, "the CA key").unwrap_err().to_string();
        assert!(
            e.contains("the CA key is encrypted and no passphrase was given"),
            "{e}"
        );
        assert!(e.contains("CA_KEY_PASSPHRASE"), "{e}");
        assert!(load_pem(&pem).is_err());
    }

    #[test]
    fn openssl_reads_our_encrypted_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = generate(KeyType::Rsa2048).unwrap();
        let pem = encrypt_pem(&key, &Passphrase::new(b"s3cret pass".to_vec())).unwrap();
        let (keyf, passf) = (dir.path().join("k.pem"), dir.path().join("pass"));
        std::fs::write(&keyf, &pem).unwrap();
        std::fs::write(&passf, "s3cret pass\n").unwrap();
        let (k, p) = (keyf.to_str().unwrap(), format!("file:{}", passf.display()));
        let public = openssl(&["pkey", "-in", k, "-passin", &p, "-pubout"]);
        assert_eq!(public, key.public_key_pem());
        let asn1 = openssl(&["asn1parse", "-in", k]);
        for alg in ["PBES2", "PBKDF2", "hmacWithSHA256", "aes-256-cbc"] {
            assert!(asn1.contains(alg), "{alg} missing: {asn1}");
        }
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-in", k, "-passin", "pass:nope", "-noout"])
            .output()
            .unwrap();
        assert!(!out.status.success());
    }

    #[test]
    fn we_read_openssl_encrypted_keys() {
        let dir = tempfile::tempdir().unwrap();
        for (alg, opt, expected) in [
            ("EC", "ec_paramgen_curve:P-256", &rcgen::PKCS_ECDSA_P256_SHA256),
            ("RSA", "rsa_keygen_bits:2048", &rcgen::PKCS_RSA_SHA256),
        ] {
            let f = dir.path().join(format!("{alg}.pem"));
            let f = f.to_str().unwrap();
            openssl(&[
                "genpkey",
                "-algorithm",
                alg,
                "-pkeyopt",
                opt,
                "-aes-256-cbc",
                "-pass",
                "pass:x",
                "-out",
                f,
            ]);
            let text = std::fs::read_to_string(f).unwrap();
            assert!(
                text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
                "{text}"
            );
            let kp = load_key(&text, Some(&Passphrase::new(b"x".to_vec())), "the CA key").unwrap();
            assert_eq!(kp.algorithm(), expected);
            let public = openssl(&["pkey", "-in", f, "-passin", "pass:x", "-pubout"]);
            assert_eq!(public, kp.public_key_pem());
            assert!(load_key(&text, Some(&Passphrase::new(b"y".to_vec())), "the CA key").is_err());
        }
    }

    #[test]
    fn legacy_encrypted_pem_takes_the_passphrase_too() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k.pem");
        let f = f.to_str().unwrap();
        openssl(&[
            "genrsa",
            "-traditional",
            "-des3",
            "-passout",
            "pass:old",
            "-out",
            f,
            "2048",
        ]);
        let text = std::fs::read_to_string(f).unwrap();
        assert!(is_encrypted(&text));
        let kp = load_key(&text, Some(&Passphrase::new(b"old".to_vec())), "the CA key").unwrap();
        // PKCS#1 inside, written as real PKCS#8 that openssl reads.
        let plain = dir.path().join("plain.pem");
        std::fs::write(&plain, pkcs8_pem(&kp).unwrap().as_bytes()).unwrap();
        let public = openssl(&["pkey", "-in", plain.to_str().unwrap(), "-pubout"]);
        assert_eq!(public, kp.public_key_pem());
        let enc = encrypt_pem(&kp, &Passphrase::new(b"new".to_vec())).unwrap();
        let back = load_key(&enc, Some(&Passphrase::new(b"new".to_vec())), "the CA key").unwrap();
        assert_eq!(back.public_key_raw(), kp.public_key_raw());
        let e = load_key(&text, Some(&Passphrase::new(b"new".to_vec())), "the CA key").unwrap_err();
        assert!(
            e.to_string()
                .ends_with("cannot decrypt the CA key: wrong passphrase?"),
            "{e}"
        );
    }
}
