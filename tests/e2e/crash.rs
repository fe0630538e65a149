//! Crash safety: `ca-server` killed with SIGKILL at random moments while clients sign and revoke, 20
//! rounds, restarted each time. Nothing acknowledged may be lost: no duplicate serial, every certificate
//! a client received is in the database, every acknowledged revocation is in the CRL served after the
//! restart, and SQLite's integrity check passes.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ca_cli::remote::Client;
use hyper::{Method, StatusCode};
use x509_parser::prelude::FromDer;

use crate::harness::{server_binary, spawn_until_listening, sqlite, TestCa, API_LISTENING};

fn start(data: &std::path::Path, port: u16) -> (Child, u16) {
    start_with(data, port, &[])
}

/// The real `ca-server` on `data` with `extra` arguments, listening on `port` (0: one it picks,
/// the first start; a restart comes back on the port it had); waits until it listens and returns
/// the port it logged. Its log is `server.log` next to `data`.
pub fn start_with(data: &std::path::Path, port: u16, extra: &[&str]) -> (Child, u16) {
    spawn_until_listening(
        Command::new(server_binary())
            .args([
                "--data-dir",
                data.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(extra)
            .env("RUST_LOG", "error,ca_server::server=info"),
        &data.with_extension("log"),
        API_LISTENING,
        Duration::from_secs(30),
    )
}

#[derive(Default)]
struct Seen {
    /// certname → (serial, DER) of every certificate a client received.
    received: BTreeMap<String, (u64, Vec<u8>)>,
    /// Serials whose revocation was acknowledged (204).
    revoked: BTreeSet<u64>,
}

fn csr(name: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.serialize_request(&key).unwrap().pem().unwrap()
}

#[test]
fn sigkill_during_signing_and_revoking_loses_nothing_acknowledged() {
    let ca = TestCa::with_args(&["--dns-alt-names", "localhost"]);
    let d = &ca.data;
    let (mut server, port) = start(d, 0);
    let url = format!("https://localhost:{port}");
    let admin = Client::new(
        &url,
        &d.join("ca_crt.pem"),
        Some((&d.join("admin/cert.pem"), &d.join("admin/key.pem"))),
    )
    .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    println!("crash test seed {seed}");

    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (admin, seen, stop) = (admin.clone(), Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let json = [("content-type", "application/json")];
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let name = format!("crash-{w}-{i}.example.test");
                    let put = rt.block_on(admin.send(
                        Method::PUT,
                        &format!("/puppet-ca/v1/certificate_request/{name}"),
                        &[],
                        csr(&name).into_bytes(),
                    ));
                    if !matches!(put, Ok(ref a) if a.status == StatusCode::OK) {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    let sign = rt.block_on(admin.send(
                        Method::PUT,
                        &format!("/puppet-ca/v1/certificate_status/{name}"),
                        &json,
                        br#"{"desired_state":"signed"}"#.to_vec(),
                    ));
                    if !matches!(sign, Ok(ref a) if a.status == StatusCode::NO_CONTENT) {
                        continue;
                    }
                    if let Ok(a) = rt.block_on(admin.get(&format!("/puppet-ca/v1/certificate/{name}"))) {
                        if a.status == StatusCode::OK {
                            let der = pem::parse(a.text()).unwrap().into_contents();
                            let (_, c) = x509_parser::prelude::X509Certificate::from_der(&der).unwrap();
                            let serial = u64::try_from(c.serial.clone()).unwrap();
                            seen.lock().unwrap().received.insert(name.clone(), (serial, der));
                            // Revoke every other one.
                            if i % 2 == 0 {
                                let r = rt.block_on(admin.send(
                                    Method::PUT,
                                    &format!("/puppet-ca/v1/certificate_status/{name}"),
                                    &json,
                                    br#"{"desired_state":"revoked"}"#.to_vec(),
                                ));
                                if matches!(r, Ok(ref a) if a.status == StatusCode::NO_CONTENT) {
                                    seen.lock().unwrap().revoked.insert(serial);
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();

    let mut rng = seed;
    for _ in 0..20 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(150 + rng % 500));
        server.kill().unwrap();
        server.wait().unwrap();
        server = start(d, port).0;
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }

    let seen = seen.lock().unwrap();
    assert!(
        seen.received.len() >= 20,
        "the load made progress: {}",
        seen.received.len()
    );
    assert!(!seen.revoked.is_empty());
    // The CRL served after the last restart holds every acknowledged revocation.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let crl = rt
        .block_on(admin.get("/puppet-ca/v1/certificate_revocation_list/ca"))
        .unwrap();
    assert_eq!(crl.status, StatusCode::OK);
    let in_crl = crate::harness::crl_serials_of(&crl.text());
    for s in &seen.revoked {
        assert!(
            in_crl.contains(s),
            "acknowledged revocation of serial {s} missing from the CRL"
        );
    }
    server.kill().unwrap();
    server.wait().unwrap();
    // Every certificate a client received is in the database; serials are unique.
    let stored = ca.with_store(async |st| st.all_certificates().await.unwrap());
    let by_serial: BTreeMap<u64, &Vec<u8>> = stored.iter().map(|(r, _)| (r.serial, &r.der)).collect();
    assert_eq!(by_serial.len(), stored.len(), "no duplicate serial");
    for (name, (serial, der)) in &seen.received {
        assert_eq!(
            by_serial.get(serial).map(|d| d.as_slice()),
            Some(der.as_slice()),
            "{name} (serial {serial}) lost"
        );
    }
    // The helper's busy timeout: the store closed just above may still be letting go of its connection.
    assert_eq!(sqlite(&d.join("ca.db"), "PRAGMA integrity_check"), "ok");
    println!(
        "crash test: {} certificates received, {} revocations acknowledged, 20 kills",
        seen.received.len(),
        seen.revoked.len()
    );
}

/// A revocation is stored with its CRL in one transaction: killed right after acknowledging it, the
/// server leaves a CRL with it. A database left by an older version (which stored the CRL a moment
/// after the acknowledgement, and could be killed in between) holds a CRL older than the last CRL
/// number signed; whoever opens the CA next (the `ca` CLI here, then the restarted server) signs a
/// new CRL from the database, with the revocation.
#[test]
fn revocation_acknowledged_before_a_sigkill_is_in_the_crl_and_a_crl_behind_is_repaired() {
    let ca = TestCa::with_args(&["--dns-alt-names", "localhost"]);
    for name in [
        "victim-1.example.test",
        "victim-2.example.test",
        "victim-3.example.test",
    ] {
        let out = ca.data.join(name);
        ca.ca(&["generate", name, "--out", out.to_str().unwrap()]).ok();
    }
    let d = &ca.data;
    // The port the server picks at its first start; it comes back on it after each kill.
    let (mut first, port) = start(d, 0);
    first.kill().unwrap();
    first.wait().unwrap();
    let db = d.join("ca.db");
    let admin = Client::new(
        &format!("https://localhost:{port}"),
        &d.join("ca_crt.pem"),
        Some((&d.join("admin/cert.pem"), &d.join("admin/key.pem"))),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let serial_of = |name: &str| -> u64 {
        sqlite(
            &db,
            &format!("SELECT serial FROM certificates WHERE certname = '{name}'"),
        )
        .parse()
        .unwrap()
    };
    let revoke_and_kill = |name: &str| {
        let mut server = start(d, port).0;
        let res = rt
            .block_on(admin.send(
                Method::PUT,
                &format!("/puppet-ca/v1/certificate_status/{name}"),
                &[("content-type", "application/json")],
                br#"{"desired_state":"revoked"}"#.to_vec(),
            ))
            .unwrap();
        assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
        server.kill().unwrap();
        server.wait().unwrap();
        let stored: u64 = sqlite(&db, "SELECT number FROM crl").parse().unwrap();
        let signed: u64 = sqlite(&db, "SELECT value FROM counters WHERE name = 'crl_number'")
            .parse()
            .unwrap();
        assert_eq!(stored, signed, "the CRL is stored with the revocation");
    };
    // What an older version left when killed between the revocation's commit and the CRL's write:
    // the revocation and the CRL number, not the CRL.
    let leave_crl_behind = |name: &str| {
        let serial = serial_of(name);
        sqlite(
            &db,
            &format!(
                "INSERT INTO revocations (serial, certname, revoked_at, reason) VALUES ({serial}, '{name}', \
                 strftime('%s','now'), 1); UPDATE counters SET value = value + 1 WHERE name = 'crl_number'"
            ),
        );
    };
    let in_crl = crate::harness::crl_serials_of;

    revoke_and_kill("victim-1.example.test");
    let printed = ca.ca(&["crl"]).ok().stdout;
    assert!(in_crl(&printed).contains(&serial_of("victim-1.example.test")));

    // The CLI finds the stored CRL behind and signs one with the revocation.
    leave_crl_behind("victim-2.example.test");
    let printed = ca.ca(&["crl"]).ok().stdout;
    assert!(in_crl(&printed).contains(&serial_of("victim-2.example.test")));

    // So does the restarted server, before it serves anything.
    leave_crl_behind("victim-3.example.test");
    let mut server = start(d, port).0;
    let crl = rt
        .block_on(admin.get("/puppet-ca/v1/certificate_revocation_list/ca"))
        .unwrap();
    assert_eq!(crl.status, StatusCode::OK);
    let served = in_crl(&crl.text());
    for name in [
        "victim-1.example.test",
        "victim-2.example.test",
        "victim-3.example.test",
    ] {
        assert!(served.contains(&serial_of(name)), "{name} missing from the CRL");
    }
    server.kill().unwrap();
    server.wait().unwrap();
}
