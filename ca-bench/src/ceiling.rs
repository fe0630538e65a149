//! The physical limit: how fast the CA's key type signs on this machine's cores, measured in this run.

use std::time::{Duration, Instant};

use ca_server::ca::keys::{self, KeyType};
use rcgen::SigningKey;

/// Raw signatures per second over `threads` threads for `secs` seconds (a 32-byte message, the CA's
/// algorithm: PKCS#1 v1.5 SHA-256 for RSA, ECDSA P-256 SHA-256).
pub fn raw_sign_rate(kind: KeyType, threads: usize, secs: f64) -> Result<f64, String> {
    let key = keys::generate(kind).map_err(|e| e.to_string())?;
    Ok(raw_sign_rate_with(&key, threads, secs))
}

/// [`raw_sign_rate`] with a key made before (a key takes up to a second to make).
pub fn raw_sign_rate_with(key: &rcgen::KeyPair, threads: usize, secs: f64) -> f64 {
    let started = Instant::now();
    let deadline = Duration::from_secs_f64(secs);
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    let msg = [7u8; 32];
                    while started.elapsed() < deadline {
                        if key.sign(&msg).is_err() {
                            break;
                        }
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// `n` raw signatures one at a time, each after a pause of `pause` (a serial client's round trip), and
/// each one's latency, with the time they took in all. A revocation signs once: this is what one
/// revocation cannot beat on these cores at this moment, and its 99th percentile shows the machine's
/// own hiccups (on a VM, a core that runs several times slower for tens of milliseconds), measured
/// in the same run as the revocations.
pub fn serial_sign_latencies(
    key: &rcgen::KeyPair,
    n: usize,
    pause: Duration,
) -> Result<(Vec<Duration>, Duration), String> {
    let mut lat = Vec::with_capacity(n);
    let started = Instant::now();
    for i in 0..n {
        let msg = [i as u8; 32];
        let begun = Instant::now();
        key.sign(&msg).map_err(|e| e.to_string())?;
        lat.push(begun.elapsed());
        std::thread::sleep(pause);
    }
    Ok((lat, started.elapsed()))
}

/// The key type of a CA certificate.
pub fn key_type_of(ca_pem: &[u8]) -> Result<KeyType, String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    use x509_parser::public_key::PublicKey;
    let der = pem::parse(ca_pem).map_err(|e| e.to_string())?.into_contents();
    let (_, c) = X509Certificate::from_der(&der).map_err(|e| e.to_string())?;
    match c.public_key().parsed() {
        Ok(PublicKey::RSA(k)) if k.key_size() > 3000 => Ok(KeyType::Rsa4096),
        Ok(PublicKey::RSA(_)) => Ok(KeyType::Rsa2048),
        Ok(PublicKey::EC(_)) => Ok(KeyType::EcP256),
        _ => Err("unsupported CA key type".into()),
    }
}
