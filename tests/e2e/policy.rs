//! Signing policy and lifecycle: autosign (glob file, executable policy), alt names under autosign and
//! per-pattern rules, `ca check`, duplicates, renewal, bulk signing, CRL upkeep at a fixed clock.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use hyper::{Method, StatusCode};
use time::Duration;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::harness::{assert_verifies, fixture, openssl, TestCa};
use crate::real_clients::{bootstrap, text};
use crate::server::{As, TestServer};

fn pending(s: &TestServer, name: &str) -> bool {
    s.ca.with_store(async |st| st.request(name).await.unwrap().is_some())
}

/// Runs `puppet ssl bootstrap --waitforcert 0` with optional csr_attributes.yaml / dns_alt_names.
fn agent_once(
    s: &TestServer,
    dir: &Path,
    name: &str,
    csr_attributes: Option<&str>,
    extra: &[&str],
) -> std::process::Output {
    if let Some(yaml) = csr_attributes {
        std::fs::create_dir_all(dir.join("conf")).unwrap();
        std::fs::write(dir.join("conf/csr_attributes.yaml"), yaml).unwrap();
    }
    let mut args = vec!["--waitforcert", "0"];
    args.extend_from_slice(extra);
    bootstrap(s, dir, name, &args).output().unwrap()
}

#[test]
fn autosign_by_glob_file_with_the_real_agent() {
    let files = tempfile::tempdir().unwrap();
    let list = files.path().join("autosign.conf");
    std::fs::write(
        &list,
        "# agents of the auto domain\n*.auto.example.test\nbad entry\n",
    )
    .unwrap();
    let s = TestServer::start_with(&format!("[ca]\nautosign = \"{}\"\n", list.display()));
    let dir = tempfile::tempdir().unwrap();
    let out = agent_once(&s, dir.path(), "node1.auto.example.test", None, &[]);
    assert!(out.status.success(), "autosigned at once: {}", text(&out));
    assert_verifies(
        &s.ca.ca_cert(),
        &dir.path().join("ssl/certs/node1.auto.example.test.pem"),
    );
    let audit = s.ca.audit("node1.auto.example.test");
    assert!(
        audit
            .iter()
            .any(|r| r.actor == "autosign" && r.action == "sign" && r.outcome == "ok"),
        "{audit:?}"
    );

    let other = tempfile::tempdir().unwrap();
    let out = agent_once(&s, other.path(), "node2.other.test", None, &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(pending(&s, "node2.other.test"));
    // The file is re-read when it changes.
    std::fs::write(&list, "*.auto.example.test\nnode2.other.test\n").unwrap();
    let out = agent_once(&s, other.path(), "node3.other.test", None, &[]);
    assert!(!out.status.success());
    std::fs::write(&list, "*.auto.example.test\nnode2.other.test\nnode4.other.test\n").unwrap();
    let four = tempfile::tempdir().unwrap();
    let out = agent_once(&s, four.path(), "node4.other.test", None, &[]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn autosign_executable_checks_the_challenge_password() {
    let files = tempfile::tempdir().unwrap();
    let policy = files.path().join("policy.sh");
    std::fs::write(
        &policy,
        "#!/bin/sh\ncsr=$(cat)\nif printf '%s\\n' \"$csr\" | openssl req -noout -text | grep -q 's3cr3t-token'; then exit 0; fi\necho \"no valid challenge for $1\" >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = TestServer::start_with(&format!("[ca]\nautosign = \"{}\"\n", policy.display()));
    let good = tempfile::tempdir().unwrap();
    let yaml = "custom_attributes:\n  1.2.840.113549.1.9.7: s3cr3t-token\n";
    let out = agent_once(&s, good.path(), "web-1.example.test", Some(yaml), &[]);
    assert!(out.status.success(), "policy said yes: {}", text(&out));

    let bad = tempfile::tempdir().unwrap();
    let out = agent_once(
        &s,
        bad.path(),
        "web-2.example.test",
        Some("custom_attributes:\n  1.2.840.113549.1.9.7: wrong\n"),
        &[],
    );
    assert!(!out.status.success(), "policy said no: {}", text(&out));
    assert!(
        pending(&s, "web-2.example.test"),
        "the agent keeps waiting; the request is pending"
    );
}

#[test]
fn autosign_executable_timeout_leaves_the_request_pending() {
    let files = tempfile::tempdir().unwrap();
    let policy = files.path().join("slow.sh");
    std::fs::write(&policy, "#!/bin/sh\nsleep 30\nexit 0\n").unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = TestServer::start_with(&format!(
        "[ca]\nautosign = \"{}\"\nautosign-timeout = \"1s\"\n",
        policy.display()
    ));
    let started = std::time::Instant::now();
    let put = s.send(
        &As::Anonymous,
        Method::PUT,
        "/puppet-ca/v1/certificate_request/agent-ec.example.test",
        &[],
        &std::fs::read(fixture("csr/ec-p256.pem")).unwrap(),
    );
    assert_eq!(put.status, StatusCode::OK);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "killed at the timeout"
    );
    assert!(pending(&s, "agent-ec.example.test"));
}

#[test]
fn alt_names_under_autosign_and_per_pattern_rules() {
    let s = TestServer::start_with(
        "[ca]\nautosign = true\n[[ca.alt-name-rules]]\ncertnames = \"compile-*.example.test\"\nallow = [\"DNS:puppet\", \"DNS:puppet.example.test\"]\n",
    );
    // A compile master may carry the puppet names: autosigned.
    let c = tempfile::tempdir().unwrap();
    let out = agent_once(
        &s,
        c.path(),
        "compile-1.example.test",
        None,
        &["--dns_alt_names", "puppet,puppet.example.test"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (_, t) = openssl(&[
        "x509",
        "-in",
        c.path()
            .join("ssl/certs/compile-1.example.test.pem")
            .to_str()
            .unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        t.contains("DNS:compile-1.example.test") && t.contains("DNS:puppet.example.test"),
        "{t}"
    );

    // Any other node asking for them waits for an admin, who can see why.
    let m = tempfile::tempdir().unwrap();
    let out = agent_once(
        &s,
        m.path(),
        "master-2.example.test",
        None,
        &["--dns_alt_names", "puppet,puppet.example.test"],
    );
    assert!(!out.status.success());
    assert!(pending(&s, "master-2.example.test"));
    let refusal =
        s.ca.audit("master-2.example.test")
            .into_iter()
            .find(|r| r.outcome == "refused")
            .expect("refusal audited");
    assert_eq!(refusal.actor, "autosign");
    assert!(refusal.detail.unwrap().contains("--allow-dns-alt-names"));
    let check = s.ca.ca(&["check", "master-2.example.test"]).ok().stdout;
    assert!(
        check.contains("DNS:puppet")
            && check.contains("refused")
            && check.contains("ca sign would refuse it"),
        "{check}"
    );
    assert!(check.contains("autosign: would not sign it"), "{check}");
    let remote = s
        .remote_ca(&["check", "master-2.example.test", "--format", "json"])
        .ok()
        .stdout;
    let v: serde_json::Value = serde_json::from_str(&remote).unwrap();
    assert_eq!(v["signable"], false);
    let with_flag =
        s.ca.ca(&["check", "master-2.example.test", "--allow-dns-alt-names"])
            .ok()
            .stdout;
    assert!(
        with_flag.contains("ca sign would sign it") && with_flag.contains("allowed by --allow-dns-alt-names"),
        "{with_flag}"
    );
    s.ca.ca(&["sign", "master-2.example.test"])
        .fails_with(1, "DNS:puppet, DNS:puppet.example.test");
    s.ca.ca(&["sign", "--allow-dns-alt-names", "master-2.example.test"])
        .ok();
    let out = agent_once(
        &s,
        m.path(),
        "master-2.example.test",
        None,
        &["--dns_alt_names", "puppet,puppet.example.test"],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn check_names_the_rule_from_the_config_file() {
    let ca = TestCa::new();
    std::fs::write(
        ca.data.join("config.toml"),
        "[[ca.alt-name-rules]]\ncertnames = \"master-*\"\nallow = [\"DNS:puppet\"]\n",
    )
    .unwrap();
    ca.ca(&["submit", fixture("csr/altnames.pem").to_str().unwrap()])
        .ok();
    let out = ca.ca(&["check", "master-2"]).ok().stdout;
    assert!(
        out.contains("allowed by ca.alt-name-rules[1] (master-*)"),
        "{out}"
    );
    assert!(
        out.contains("DNS:puppet.example.test") && out.contains("ca sign would refuse it"),
        "{out}"
    );
    ca.ca(&["sign", "master-2"])
        .fails_with(1, "(DNS:puppet.example.test)");
    ca.ca(&["check", "nobody"])
        .fails_with(1, "Could not find certificate request for nobody");
}

#[test]
fn duplicates_when_allowed() {
    let s = TestServer::start_with("[ca]\nallow-duplicate-certs = true\n");
    let body = std::fs::read(fixture("csr/ec-p256.pem")).unwrap();
    let put = || {
        s.send(
            &As::Anonymous,
            Method::PUT,
            "/puppet-ca/v1/certificate_request/agent-ec.example.test",
            &[],
            &body,
        )
    };
    assert_eq!(put().status, StatusCode::OK);
    assert_eq!(
        put().status,
        StatusCode::OK,
        "a second request replaces the first"
    );
    s.ca.ca(&["sign", "agent-ec.example.test"]).ok();
    assert_eq!(
        put().status,
        StatusCode::OK,
        "a request for a signed name is accepted"
    );
    let out = s.ca.ca(&["sign", "agent-ec.example.test"]).ok().stdout;
    assert!(out.contains("(serial 5)"), "{out}");
}

#[test]
fn renewal_with_the_agents_own_certificate() {
    let s = TestServer::start_with("[ca]\nallow-auto-renewal = true\nauto-renewal-cert-ttl = \"30d\"\n");
    let out = s.ca.path("agent");
    s.ca.ca(&[
        "generate",
        "agent-r.example.test",
        "--key-type",
        "ec-p256",
        "--out",
        out.to_str().unwrap(),
    ])
    .ok();
    let cert = out.join("certs/agent-r.example.test.pem");
    let me = As::Cert(cert.clone(), out.join("private_keys/agent-r.example.test.pem"));
    let a = s.send(
        &me,
        Method::POST,
        "/puppet-ca/v1/certificate_renewal",
        &[("content-type", "text/plain")],
        b"",
    );
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let renewed = pem::parse(a.text()).unwrap().into_contents();
    let old = pem::parse(std::fs::read(&cert).unwrap()).unwrap().into_contents();
    let (_, new_c) = X509Certificate::from_der(&renewed).unwrap();
    let (_, old_c) = X509Certificate::from_der(&old).unwrap();
    assert_eq!(new_c.subject().to_string(), old_c.subject().to_string());
    assert_eq!(new_c.public_key().raw, old_c.public_key().raw, "same key");
    assert_ne!(new_c.serial, old_c.serial);
    let v = new_c.validity();
    let days = (v.not_after.to_datetime() - v.not_before.to_datetime()).whole_days();
    assert_eq!(days, 31, "auto-renewal-cert-ttl (30d) plus the one-day backdate");
    let f = s.ca.path("renewed.pem");
    std::fs::write(&f, a.text()).unwrap();
    assert_verifies(&s.ca.ca_cert(), &f);
    let anon = s.send(
        &As::Anonymous,
        Method::POST,
        "/puppet-ca/v1/certificate_renewal",
        &[],
        b"",
    );
    assert_eq!(
        anon.status,
        StatusCode::FORBIDDEN,
        "the rule needs an authenticated caller"
    );
}

#[test]
fn bulk_sign_of_a_thousand_requests_in_one_batch() {
    let ca = TestCa::new();
    let names: Vec<String> = (0..1000).map(|i| format!("bulk-{i:04}.example.test")).collect();
    let csrs: Vec<(String, String)> = names.iter().map(|n| (n.clone(), ec_csr_pem(n))).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = ca_server::datadir::DataDir::new(&ca.data);
        let a = ca_server::authority::Authority::open(
            &dir,
            Default::default(),
            Arc::new(ca_server::clock::SystemClock),
        )
        .await
        .unwrap();
        for (n, pem) in &csrs {
            a.submit("test", n, pem.as_bytes()).await.unwrap();
        }
        a.store().close().await;
    });
    let started = std::time::Instant::now();
    let out = ca.ca(&["sign", "--all"]).ok().stdout;
    println!(
        "ca sign --all: 1000 certificates in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.starts_with("Signed certificate for bulk-"))
            .count(),
        1000
    );
    let certs = ca.with_store(async |s| {
        s.certificates(ca_server::storage::StatusFilter::All)
            .await
            .unwrap()
    });
    let ca_der = pem::parse(std::fs::read(ca.ca_cert()).unwrap())
        .unwrap()
        .into_contents();
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    let mut serials: Vec<u64> = certs.iter().map(|c| c.serial).collect();
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(
        serials.len(),
        1002,
        "1000 plus the server and admin certificates, serials unique"
    );
    for c in &certs {
        let (_, x) = X509Certificate::from_der(&c.der).unwrap();
        x.verify_signature(Some(ca_cert.public_key())).unwrap();
    }
    let audit = ca.with_store(async |s| s.audit_rows(None).await.unwrap());
    assert_eq!(
        audit
            .iter()
            .filter(|r| r.action == "sign" && r.outcome == "ok")
            .count(),
        1002
    );
}

#[test]
fn crl_is_re_signed_before_next_update_and_pruned_at_a_fixed_clock() {
    let f = crate::harness::FixedClockCa::new(false);
    let (a, clock, t0) = (&f.authority, &f.clock, f.t0);
    f.rt.block_on(async {
        let first = a.crl().await.unwrap();
        assert_eq!(first.number(), 0);
        assert_eq!(
            first.row().next_update,
            (t0 + Duration::days(10)).unix_timestamp()
        );

        clock.set(t0 + Duration::days(4));
        assert_eq!(
            a.refresh_crl_if_due().await.unwrap(),
            None,
            "more than half the lifetime left"
        );
        clock.set(t0 + Duration::days(6));
        assert_eq!(a.refresh_crl_if_due().await.unwrap(), Some(1));
        let second = a.crl().await.unwrap();
        assert_eq!(
            second.row().next_update,
            (t0 + Duration::days(16)).unix_timestamp()
        );
        assert_eq!(a.refresh_crl_if_due().await.unwrap(), None);

        // A short-lived certificate, revoked, then expired: prune drops it from the CRL.
        let (_, issued) = a
            .generate(
                "t",
                "short.example.test",
                &[],
                ca_server::ca::keys::KeyType::EcP256,
                Some(Duration::days(1)),
            )
            .await
            .unwrap();
        a.revoke("t", "short.example.test", Default::default())
            .await
            .unwrap();
        assert_eq!(
            a.prune("t", true).await.unwrap(),
            Vec::<u64>::new(),
            "not expired yet"
        );
        clock.set(t0 + Duration::days(8));
        assert_eq!(
            a.prune("t", true).await.unwrap(),
            vec![issued.serial],
            "dry run lists it"
        );
        let before = a.crl().await.unwrap().number();
        assert_eq!(a.prune("t", false).await.unwrap(), vec![issued.serial]);
        let after = a.crl().await.unwrap();
        assert!(after.number() > before, "CRL numbers only increase");
        let text = ca_server::ca::text::describe_crl(&after.row().der).unwrap();
        assert!(text.contains("Revoked Certificates: 0"), "{text}");
        a.store().close().await;
    });
}

/// Concurrent submissions share write transactions (group commit): each name submitted twice at
/// once, with two different keys, is stored once and refused once as a duplicate, whichever
/// transaction each lands in; every outcome has its audit row and the sealed chain verifies.
#[test]
fn concurrent_submissions_store_each_name_once_and_audit_every_outcome() {
    let s = TestServer::start();
    let names: Vec<String> = (0..40).map(|i| format!("sub-{i:02}.example.test")).collect();
    let csrs: Vec<(String, String)> = names
        .iter()
        .chain(names.iter())
        .map(|n| (n.clone(), ec_csr_pem(n)))
        .collect();
    let statuses: Vec<(String, StatusCode, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = csrs
            .iter()
            .map(|(n, pem)| {
                let s = &s;
                scope.spawn(move || {
                    let a = s.send(
                        &As::Anonymous,
                        Method::PUT,
                        &format!("/puppet-ca/v1/certificate_request/{n}"),
                        &[("content-type", "text/plain")],
                        pem.as_bytes(),
                    );
                    (n.clone(), a.status, a.text())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for n in &names {
        let mine: Vec<&(String, StatusCode, String)> = statuses.iter().filter(|(m, _, _)| m == n).collect();
        let ok = mine.iter().filter(|(_, st, _)| *st == StatusCode::OK).count();
        let dup = mine
            .iter()
            .filter(|(_, st, t)| {
                *st == StatusCode::BAD_REQUEST && t.contains("already has a requested certificate")
            })
            .count();
        assert_eq!((ok, dup), (1, 1), "{n}: {mine:?}");
    }
    let (requests, audit) =
        s.ca.with_store(async |st| (st.requests().await.unwrap(), st.audit_rows(None).await.unwrap()));
    assert_eq!(requests.len(), names.len());
    let submits = |outcome: &str| {
        audit
            .iter()
            .filter(|r| r.action == "submit" && r.outcome == outcome)
            .count()
    };
    assert_eq!(submits("ok"), names.len(), "{audit:?}");
    assert_eq!(submits("refused"), names.len(), "{audit:?}");
    let verify = s.ca.ca(&["audit", "verify"]).ok().stdout;
    assert!(verify.contains("audit log intact"), "{verify}");
}

#[test]
fn concurrent_api_signing_loses_nothing() {
    let s = TestServer::start();
    let names: Vec<String> = (0..40).map(|i| format!("conc-{i:02}.example.test")).collect();
    for n in &names {
        let pem = ec_csr_pem(n);
        let a = s.send(
            &As::Anonymous,
            Method::PUT,
            &format!("/puppet-ca/v1/certificate_request/{n}"),
            &[],
            pem.as_bytes(),
        );
        assert_eq!(a.status, StatusCode::OK);
    }
    // 40 signings at once (plus a duplicate of each): the batched path signs each exactly once.
    std::thread::scope(|scope| {
        for n in names.iter().chain(names.iter()) {
            let s = &s;
            scope.spawn(move || {
                let a = s.send(
                    &As::Admin,
                    Method::PUT,
                    &format!("/puppet-ca/v1/certificate_status/{n}"),
                    &[("content-type", "application/json")],
                    br#"{"desired_state":"signed"}"#,
                );
                assert!(
                    matches!(a.status, StatusCode::NO_CONTENT | StatusCode::CONFLICT),
                    "{}: {}",
                    a.status,
                    a.text()
                );
            });
        }
    });
    let certs = s.ca.with_store(async |st| {
        st.certificates(ca_server::storage::StatusFilter::All)
            .await
            .unwrap()
    });
    let mut serials: Vec<u64> = certs.iter().map(|c| c.serial).collect();
    serials.sort_unstable();
    serials.dedup();
    assert_eq!(serials.len(), certs.len(), "serials unique");
    for n in &names {
        assert_eq!(
            certs.iter().filter(|c| &c.certname == n).count(),
            1,
            "{n} signed exactly once"
        );
    }
    let f = s.ca.path("c.pem");
    std::fs::write(
        &f,
        s.get(&As::Anonymous, &format!("/puppet-ca/v1/certificate/{}", names[7]))
            .text(),
    )
    .unwrap();
    assert_verifies(&s.ca.ca_cert(), &f);
}

/// A CSR for `name` with a fresh EC P-256 key (PEM).
fn ec_csr_pem(name: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.serialize_request(&key).unwrap().pem().unwrap()
}
