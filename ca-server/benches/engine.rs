//! Engine micro-benchmarks (`cargo bench -p ca-server`): each operation timed in a loop, printed as
//! ops/s and µs/op. The HTTPS benchmark with the signing ceiling is `ca-bench`.

use std::time::{Duration, Instant};

use ca_server::ca::crl::{encode_entries, sign_crl_with_entries, Reason, RevokedEntry};
use ca_server::ca::issue::{issue_leaf, Validity};
use ca_server::ca::keys::{self, KeyType};
use ca_server::ca::{csr, pem_encode, signer, CaSigner};
use ca_server::policy::signing::{check, SigningOptions, SigningPolicy};
use time::OffsetDateTime;

fn time_it(name: &str, min: Duration, mut f: impl FnMut()) {
    f();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < min {
        f();
        n += 1;
    }
    let per = started.elapsed().as_secs_f64() / n as f64;
    println!("{name:<48} {:>12.1} ops/s {:>12.1} µs/op", 1.0 / per, per * 1e6);
}

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn ca(kind: KeyType, now: OffsetDateTime) -> R<CaSigner> {
    let key = keys::generate(kind)?;
    let der = signer::self_signed_ca("Puppet CA: bench", &key, 1, now, time::Duration::days(3650))?;
    Ok(CaSigner::new(&pem_encode("CERTIFICATE", &der), key)?)
}

fn main() -> R<()> {
    let t = Duration::from_millis(1500);
    let fixture = |f: &str| std::fs::read(format!("{}/../fixtures/csr/{f}", env!("CARGO_MANIFEST_DIR")));
    let rsa_csr = fixture("rsa2048.pem")?;
    let pp_csr = fixture("pp-extensions.pem")?;
    time_it("csr::parse (RSA-2048 CSR, signature verified)", t, || {
        let _ = csr::parse(&rsa_csr);
    });
    let parsed = csr::parse(&pp_csr)?;
    let policy = SigningPolicy::default();
    time_it("signing::check (pp_* extensions)", t, || {
        let _ = check(&parsed, &policy, SigningOptions::default());
    });
    let permit = check(&parsed, &policy, SigningOptions::default())?;
    let now = OffsetDateTime::from_unix_timestamp(1_800_000_000)?;
    let validity = Validity::from_now(now, time::Duration::days(1825))?;
    for kind in [KeyType::EcP256, KeyType::Rsa2048, KeyType::Rsa4096] {
        let signer = ca(kind, now)?;
        time_it(&format!("issue_leaf by a {kind} CA"), t, || {
            let _ = issue_leaf(
                &signer,
                &parsed.spki_der,
                &permit,
                42,
                validity,
                &Default::default(),
            );
        });
    }
    let signer = ca(KeyType::Rsa4096, now)?;
    for n in [0usize, 1_000, 100_000] {
        let entries: Vec<RevokedEntry> = (0..n as u64)
            .map(|s| RevokedEntry {
                serial: s + 2,
                revoked_at: now,
                reason: Reason::default(),
            })
            .collect();
        let der = encode_entries(&entries);
        time_it(&format!("CRL, {n} entries: encode all entries"), t, || {
            let _ = encode_entries(&entries);
        });
        time_it(
            &format!("CRL, {n} entries: sign from encoded entries (RSA-4096)"),
            t,
            || {
                let _ = sign_crl_with_entries(&signer, 7, now, now + time::Duration::days(1825), &der);
            },
        );
    }
    Ok(())
}
