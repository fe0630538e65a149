//! Operations: the hash-chained audit log (`ca audit`, `ca audit verify` detecting tampering) and
//! `ca backup` while the server runs, with a restore.

use crate::harness::{fixture, sqlite, TestCa};
use crate::server::TestServer;

#[test]
fn audit_log_shows_every_decision_and_detects_tampering() {
    let ca = TestCa::new();
    ca.ca(&["submit", fixture("csr/altnames.pem").to_str().unwrap()])
        .ok();
    ca.ca(&["sign", "master-2"])
        .fails_with(1, "--allow-dns-alt-names");
    ca.ca(&["sign", "--allow-dns-alt-names", "master-2"]).ok();
    ca.ca(&["revoke", "master-2"]).ok();
    let log = ca.ca(&["audit", "--certname", "master-2"]).ok().stdout;
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 4, "{log}");
    assert!(
        lines[1].contains("sign master-2") && lines[1].contains("refused") && lines[1].contains("cli:"),
        "{log}"
    );
    assert!(lines[2].contains("sign master-2 serial 4  ok"), "{log}");
    assert!(
        lines[3].contains("revoke master-2 serial 4  ok: keyCompromise"),
        "{log}"
    );
    assert!(ca.ca(&["audit", "--since", "1h"]).ok().stdout.contains("setup"));
    assert_eq!(ca.ca(&["audit", "--since", "2099-01-01"]).ok().stdout, "");
    let json: serde_json::Value =
        serde_json::from_str(&ca.ca(&["audit", "--format", "json"]).ok().stdout).unwrap();
    assert!(json.as_array().unwrap().len() >= 6);

    let ok = ca.ca(&["audit", "verify"]).ok().stdout;
    assert!(ok.contains("audit log intact"), "{ok}");
    let db = ca.data.join("ca.db");
    sqlite(&db, "UPDATE audit SET actor = 'someone-else' WHERE id = 3");
    ca.ca(&["audit", "verify"])
        .fails_with(1, "record 3 does not match");
    let other = TestCa::new();
    other.ca(&["audit", "verify"]).ok();
    sqlite(&other.data.join("ca.db"), "DELETE FROM audit WHERE id = 2");
    other.ca(&["audit", "verify"]).fails_with(1, "record 3");
}

#[test]
fn backup_while_serving_and_restore() {
    let s = TestServer::start();
    s.ca.ca(&["submit", fixture("csr/ec-p256.pem").to_str().unwrap()])
        .ok();
    s.ca.ca(&["sign", "agent-ec.example.test"]).ok();
    let file = s.ca.path("backup.db");
    let out = s.ca.ca(&["backup", file.to_str().unwrap()]).ok().stdout;
    assert!(out.contains("consistent copy"), "{out}");
    s.ca.ca(&["backup", file.to_str().unwrap()])
        .fails_with(1, "cannot write the backup");
    // Restore: the keys and identities of the data directory, the database from the backup.
    let restored = s.ca.path("restored");
    std::fs::create_dir_all(&restored).unwrap();
    for f in ["ca_key.pem", "ca_crt.pem"] {
        std::fs::copy(s.data().join(f), restored.join(f)).unwrap();
    }
    std::fs::copy(&file, restored.join("ca.db")).unwrap();
    let listing = |dir: &std::path::Path| {
        crate::harness::ca(&["--data-dir", dir.to_str().unwrap(), "list", "--all"])
            .ok()
            .stdout
    };
    assert_eq!(listing(&restored), listing(s.data()));
    crate::harness::ca(&["--data-dir", restored.to_str().unwrap(), "audit", "verify"]).ok();
}

#[test]
fn metrics_in_prometheus_format_and_request_ids() {
    use crate::server::As;
    use hyper::{Method, StatusCode};
    let s = TestServer::start();
    let csr = std::fs::read(fixture("csr/ec-p256.pem")).unwrap();
    let put = s.send(
        &As::Anonymous,
        Method::PUT,
        "/puppet-ca/v1/certificate_request/agent-ec.example.test",
        &[],
        &csr,
    );
    assert!(put.headers.contains_key("x-request-id"));
    let m = s.get(&As::Anonymous, "/metrics").text();
    assert!(m.contains("ca_pending_requests 1"), "{m}");
    let signatures_before = crate::harness::metric(&m, "ca_key_signatures_total");
    let cpu_before = crate::harness::metric(&m, "ca_key_signature_cpu_seconds_total");
    let sign = s.send(
        &As::Admin,
        Method::PUT,
        "/puppet-ca/v1/certificate_status/agent-ec.example.test",
        &[("content-type", "application/json")],
        br#"{"desired_state":"signed"}"#,
    );
    assert_eq!(sign.status, StatusCode::NO_CONTENT);
    // Refused by the access rules: counted on its route all the same. No route: "other".
    let denied = s.get(
        &As::Anonymous,
        "/puppet-ca/v1/certificate_statuses/agent-ec.example.test",
    );
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(s.get(&As::Admin, "/no/such/route").status, StatusCode::FORBIDDEN);
    let m = s.get(&As::Anonymous, "/metrics").text();
    assert!(!m.contains("agent-ec"), "a certname in a label:\n{m}");
    for want in [
        "# TYPE ca_http_requests_total counter",
        "ca_http_requests_total{route=\"/puppet-ca/v1/certificate_request/{subject}\",status=\"200\"} 1",
        "ca_http_requests_total{route=\"/puppet-ca/v1/certificate_status/{subject}\",status=\"204\"} 1",
        "ca_http_requests_total{route=\"/puppet-ca/v1/certificate_statuses/{key}\",status=\"403\"} 1",
        "ca_http_requests_total{route=\"other\",status=\"403\"} 1",
        "ca_signing_seconds_count 1",
        "ca_pending_requests 0",
        "ca_certificates 3",
        "ca_crl_entries 0",
        "ca_crl_seconds_to_next_update ",
        "ca_certificates_expiring_30d 0",
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
    assert!(!m.contains("agent-ec"), "no certnames in labels");
    // The signing pipeline's write transactions: at least the one that reserved the serial and the
    // one that stored the certificate.
    assert!(m.contains("# TYPE ca_signing_round_seconds histogram"), "{m}");
    let rounds: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("ca_signing_round_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ca_signing_round_seconds_count in\n{m}"));
    assert!(rounds >= 2, "{m}");
    // The CA key's signatures and the CPU time they took: the certificate signed above is one of
    // them. (Their CPU time stays 0 here: only the binary reads its threads' CPU clocks; see
    // `server_binary`.)
    for want in [
        "# TYPE ca_key_signatures_total counter",
        "# TYPE ca_key_signature_cpu_seconds_total counter",
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
    assert!(
        crate::harness::metric(&m, "ca_key_signatures_total") >= signatures_before + 1.0,
        "{m}"
    );
    assert!(
        crate::harness::metric(&m, "ca_key_signature_cpu_seconds_total") >= cpu_before,
        "{m}"
    );
}
