//! Answers a side-by-side probe against a real puppetserver found different, each as puppetserver
//! gives it (see the protocol notes): status services, `If-Modified-Since` on certificates, the 403
//! and 404 texts, and the `/clean` list.

use std::time::{Duration, SystemTime};

use hyper::{Method, StatusCode};

use crate::server::{As, TestServer};

/// puppetserver registers its server service as `server` and `master`: an agent whose `server_list`
/// names the CA (no `ca_server`) asks `/status/v1/simple/server` before it bootstraps.
#[test]
fn simple_status_answers_for_the_server_and_master_services() {
    let s = TestServer::start();
    for service in ["", "/ca", "/server", "/master"] {
        let r = s.get(&As::Anonymous, &format!("/status/v1/simple{service}"));
        assert_eq!(
            (r.status, r.text().as_str()),
            (StatusCode::OK, "running"),
            "{service}"
        );
    }
    let r = s.get(&As::Anonymous, "/status/v1/simple/jruby-metrics-nope");
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

/// Puppet 8 agents refresh the CA certificate (and may fetch their own) with `If-Modified-Since`;
/// puppetserver ≥ 7.12 answers 304 when the file was not written after that time.
#[test]
fn certificates_honour_if_modified_since() {
    let s = TestServer::start();
    let _agent = s.identity("ims.example.test");
    for path in [
        "/puppet-ca/v1/certificate/ca",
        "/puppet-ca/v1/certificate/ims.example.test",
    ] {
        let first = s.get(&As::Anonymous, path);
        assert_eq!(first.status, StatusCode::OK, "{path}");
        assert!(first.text().contains("BEGIN CERTIFICATE"));
        let lm = first.headers["last-modified"].to_str().unwrap().to_string();
        let written = httpdate::parse_http_date(&lm).unwrap();
        // A date at or after the certificate was written: 304, empty, text/plain.
        for since in [
            lm.clone(),
            http_date(SystemTime::now() + Duration::from_secs(3600)),
        ] {
            let r = s.send(
                &As::Anonymous,
                Method::GET,
                path,
                &[("if-modified-since", &since)],
                b"",
            );
            assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{path} since {since}");
            assert!(r.body.is_empty());
            assert_eq!(r.headers["content-type"], "text/plain");
        }
        // Before it (an agent with an older copy), or unparsable (as if absent): the certificate.
        for since in [
            http_date(written - Duration::from_secs(1)),
            "yesterday".to_string(),
        ] {
            let r = s.send(
                &As::Anonymous,
                Method::GET,
                path,
                &[("if-modified-since", &since)],
                b"",
            );
            assert_eq!(r.status, StatusCode::OK, "{path} since {since}");
            assert_eq!(r.text(), first.text());
        }
    }
    // Unknown names stay 404 whatever the header says.
    let r = s.send(
        &As::Anonymous,
        Method::GET,
        "/puppet-ca/v1/certificate/nobody.example.test",
        &[("if-modified-since", &http_date(SystemTime::now()))],
        b"",
    );
    assert_eq!(
        (r.status, r.text().as_str()),
        (
            StatusCode::NOT_FOUND,
            "Could not find certificate nobody.example.test"
        )
    );
}

/// A DELETE of an unknown subject gets liberator's default 404 body, as from puppetserver (a PUT
/// still says `Invalid certificate subject.`).
#[test]
fn delete_of_an_unknown_subject_says_resource_not_found() {
    let s = TestServer::start();
    for subject in ["nobody.example.test", "Not..A..Name"] {
        let r = s.send(
            &As::Admin,
            Method::DELETE,
            &format!("/puppet-ca/v1/certificate_status/{subject}"),
            &[],
            b"",
        );
        assert_eq!(
            (r.status, r.text().as_str()),
            (StatusCode::NOT_FOUND, "Resource not found."),
            "{subject}"
        );
    }
    let r = s.send(
        &As::Admin,
        Method::PUT,
        "/puppet-ca/v1/clean",
        &[],
        br#"{"certnames":["ghost-1","ghost-2"]}"#,
    );
    assert_eq!(
        r.text(),
        r#"The following certs do not exist and cannot be revoked: ["ghost-1" "ghost-2"]"#
    );
    // The 403 names the method as a Clojure keyword, like puppetserver.
    let r = s.get(&As::Anonymous, "/puppet-ca/v1/certificate_statuses/any");
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("(method :get)"), "{}", r.text());
}

/// A server started with `--config` elsewhere records that file in its data directory, and `ca` in
/// local mode (no `--config`) judges with it: `ca check` says what the server's autosign would do,
/// not what the built-in defaults would.
#[test]
fn ca_check_judges_with_the_configuration_the_server_uses() {
    let elsewhere = tempfile::tempdir().unwrap();
    let list = elsewhere.path().join("autosign.conf");
    std::fs::write(&list, "*.listed.example.test\n").unwrap();
    let s = TestServer::start_with(&format!("[ca]\nautosign = \"{}\"\n", list.display()));
    assert!(
        !s.data().join("config.toml").exists(),
        "the configuration is elsewhere"
    );
    let name = "agent-rsa2048.example.test";
    let csr = std::fs::read(crate::harness::fixture("csr/rsa2048.pem")).unwrap();
    let r = s.send(
        &As::Anonymous,
        Method::PUT,
        &format!("/puppet-ca/v1/certificate_request/{name}"),
        &[("content-type", "text/plain")],
        &csr,
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let out = s.ca.ca(&["check", name]).ok().stdout;
    assert!(out.contains("autosign: would not sign it"), "{out}");
    assert!(
        !out.contains("autosign is off"),
        "ca check judged with the built-in defaults, not the server's configuration: {out}"
    );
    // An explicit --config still wins.
    let other = elsewhere.path().join("off.toml");
    std::fs::write(&other, "").unwrap();
    let out =
        s.ca.ca(&["--config", other.to_str().unwrap(), "check", name])
            .ok()
            .stdout;
    assert!(out.contains("autosign is off"), "{out}");
}
