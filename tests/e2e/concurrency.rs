//! 200 simulated agents plus admin operations for 60 s, with the `ca` CLI writing the same database at
//! the same time: no 5xx, no deadlock, no lost write.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};

use crate::server::{As, TestServer};

fn csr(name: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.serialize_request(&key).unwrap().pem().unwrap().into_bytes()
}

#[test]
fn two_hundred_agents_admins_and_the_cli_for_a_minute() {
    let s = TestServer::start();
    let anon = s.client(&As::Anonymous);
    let admin = s.client(&As::Admin);
    let stop = Arc::new(AtomicBool::new(false));
    let server_errors = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let certified = Arc::new(AtomicUsize::new(0));
    let check = {
        let (server_errors, requests) = (Arc::clone(&server_errors), Arc::clone(&requests));
        move |r: &anyhow::Result<ca_cli::remote::Answer>| {
            requests.fetch_add(1, Ordering::Relaxed);
            if let Ok(a) = r {
                if a.status.is_server_error() {
                    eprintln!("5xx: {} {}", a.status, a.text());
                    server_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    let run_for = Duration::from_secs(60);
    let started = Instant::now();

    // The CLI on the same database, concurrently: signs what is pending and lists.
    let cli_stop = Arc::clone(&stop);
    let ca_dir = s.data().to_path_buf();
    let cli = std::thread::spawn(move || {
        let mut runs = 0;
        while !cli_stop.load(Ordering::Relaxed) {
            let d = ca_dir.to_str().unwrap().to_string();
            let r = crate::harness::ca(&["--data-dir", &d, "sign", "--all"]);
            // Racing the server's bulk signing: a request it signed first is "already signed" here.
            let raced = r
                .stderr
                .lines()
                .all(|l| l.contains("already signed") || l.contains("Could not find"));
            assert!(r.code == 0 || raced, "ca sign --all: {r:#?}");
            crate::harness::ca(&["--data-dir", &d, "list", "--all"]).ok();
            runs += 1;
            std::thread::sleep(Duration::from_millis(300));
        }
        runs
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for a in 0..200 {
            let (anon, stop, accepted, certified, check) = (
                anon.clone(),
                Arc::clone(&stop),
                Arc::clone(&accepted),
                Arc::clone(&certified),
                check.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let name = format!("agent{a}-{n}.example.test");
                    let r = anon
                        .send(
                            Method::PUT,
                            &format!("/puppet-ca/v1/certificate_request/{name}"),
                            &[],
                            csr(&name),
                        )
                        .await;
                    check(&r);
                    if matches!(r, Ok(ref x) if x.status == StatusCode::OK) {
                        accepted.lock().unwrap().insert(name.clone());
                    }
                    // Poll for the certificate as an agent waits for signing.
                    while !stop.load(Ordering::Relaxed) {
                        let r = anon.get(&format!("/puppet-ca/v1/certificate/{name}")).await;
                        check(&r);
                        if matches!(r, Ok(ref x) if x.status == StatusCode::OK) {
                            certified.fetch_add(1, Ordering::Relaxed);
                            let crl = anon.get("/puppet-ca/v1/certificate_revocation_list/ca").await;
                            check(&crl);
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }));
        }
        // Admin operations over the API: bulk signing, listing, revoking.
        let admin_task = {
            let (admin, stop, check) = (admin.clone(), Arc::clone(&stop), check.clone());
            tokio::spawn(async move {
                let json = [("content-type", "application/json")];
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    check(
                        &admin
                            .send(Method::POST, "/puppet-ca/v1/sign/all", &json, b"{}".to_vec())
                            .await,
                    );
                    if i.is_multiple_of(4) {
                        check(
                            &admin
                                .get("/puppet-ca/v1/certificate_statuses/any?state=signed")
                                .await,
                        );
                        let victim = format!("agent{}-1.example.test", i % 200);
                        check(
                            &admin
                                .send(
                                    Method::PUT,
                                    &format!("/puppet-ca/v1/certificate_status/{victim}"),
                                    &json,
                                    br#"{"desired_state":"revoked"}"#.to_vec(),
                                )
                                .await,
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            })
        };
        tokio::time::sleep(run_for).await;
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("no deadlock")
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(30), admin_task)
            .await
            .expect("no deadlock")
            .unwrap();
    });
    let cli_runs = cli.join().unwrap();
    let elapsed = started.elapsed();
    assert_eq!(server_errors.load(Ordering::Relaxed), 0, "no 5xx");
    // No lost write: every request the server accepted is pending or certified.
    let accepted = accepted.lock().unwrap();
    let (pending, certs) = s.ca.with_store(async |st| {
        let p: BTreeSet<String> = st
            .requests()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.certname)
            .collect();
        let c: BTreeSet<String> = st
            .all_certificates()
            .await
            .unwrap()
            .into_iter()
            .map(|(r, _)| r.certname)
            .collect();
        (p, c)
    });
    for name in accepted.iter() {
        assert!(
            pending.contains(name) || certs.contains(name),
            "{name} was accepted and then lost"
        );
    }
    println!(
        "concurrency: {:.0} s, {} requests, {} CSRs accepted, {} certificates fetched, {} CLI rounds",
        elapsed.as_secs_f64(),
        requests.load(Ordering::Relaxed),
        accepted.len(),
        certified.load(Ordering::Relaxed),
        cli_runs
    );
    assert!(
        certified.load(Ordering::Relaxed) > 200,
        "agents got their certificates"
    );
}
