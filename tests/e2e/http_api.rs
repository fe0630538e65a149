//! The v1 API over HTTPS as Puppet's clients use it: status codes, bodies, content types, headers,
//! authorization with no / agent / admin / revoked certificates, the CRL with If-Modified-Since, legacy
//! routes, and limits.

use hyper::{Method, StatusCode};

use crate::harness::fixture;
use crate::server::{As, TestServer};

fn csr(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("csr/{name}"))).unwrap()
}

const AGENT: &str = "agent-rsa2048.example.test";

#[test]
fn ca_certificate_and_csr_round_trip() {
    let s = TestServer::start();
    let ca = s.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca");
    assert_eq!(ca.status, StatusCode::OK);
    assert_eq!(ca.headers["content-type"], "text/plain");
    assert_eq!(ca.headers["x-puppet-version"], "8.4.0");
    assert_eq!(ca.text(), std::fs::read_to_string(s.ca.ca_cert()).unwrap());

    let missing = s.get(&As::Anonymous, &format!("/puppet-ca/v1/certificate/{AGENT}"));
    assert_eq!(
        (missing.status, missing.text().as_str()),
        (
            StatusCode::NOT_FOUND,
            format!("Could not find certificate {AGENT}").as_str()
        )
    );

    let put = s.send(
        &As::Anonymous,
        Method::PUT,
        &format!("/puppet-ca/v1/certificate_request/{AGENT}"),
        &[("content-type", "text/plain")],
        &csr("rsa2048.pem"),
    );
    assert_eq!((put.status, put.text().as_str()), (StatusCode::OK, ""));
    let again = s.send(
        &As::Anonymous,
        Method::PUT,
        &format!("/puppet-ca/v1/certificate_request/{AGENT}"),
        &[],
        &csr("rsa2048.pem"),
    );
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        again.text(),
        format!("{AGENT} already has a requested certificate; ignoring certificate request")
    );
    let got = s.get(
        &As::Anonymous,
        &format!("/puppet-ca/v1/certificate_request/{AGENT}"),
    );
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.text().starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    let nocsr = s.get(&As::Anonymous, "/puppet-ca/v1/certificate_request/nobody");
    assert_eq!(
        (nocsr.status, nocsr.text().as_str()),
        (StatusCode::NOT_FOUND, "Could not find certificate_request nobody")
    );

    // Sign as admin through certificate_status, then fetch as the agent would.
    let sign = s.send(
        &As::Admin,
        Method::PUT,
        &format!("/puppet-ca/v1/certificate_status/{AGENT}"),
        &[("content-type", "application/json")],
        br#"{"desired_state":"signed"}"#,
    );
    assert_eq!(sign.status, StatusCode::NO_CONTENT, "{}", sign.text());
    let cert = s.get(&As::Anonymous, &format!("/puppet-ca/v1/certificate/{AGENT}"));
    assert_eq!(cert.status, StatusCode::OK);
    assert!(cert.text().starts_with("-----BEGIN CERTIFICATE-----"));
    let status = s.get(&As::Admin, &format!("/puppet-ca/v1/certificate_status/{AGENT}"));
    let v: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(
        (v["state"].as_str(), v["name"].as_str()),
        (Some("signed"), Some(AGENT))
    );
    assert_eq!(status.headers["content-type"], "application/json");
}

#[test]
fn csr_refusals_are_400_with_the_message() {
    let s = TestServer::start();
    let cases: [(&str, Vec<u8>, &str); 6] = [
        (
            "agent-x.example.test",
            b"garbage".to_vec(),
            "Could not parse the certificate request",
        ),
        (
            "agent-x.example.test",
            Vec::new(),
            "The certificate request is empty",
        ),
        (
            "agent-mismatch.example.test",
            csr("cn-mismatch.pem"),
            "does not match requested key",
        ),
        (
            "agent-badsig.example.test",
            csr("bad-signature.pem"),
            "does not correspond to the signing key",
        ),
        (
            "Agent-Upper.example.test",
            csr("uppercase.pem"),
            "Certificate names must be lower case.",
        ),
        (
            "x",
            [csr("rsa2048.pem"), csr("ec-p256.pem")].concat(),
            "exactly one PEM",
        ),
    ];
    for (name, body, msg) in cases {
        let a = s.send(
            &As::Anonymous,
            Method::PUT,
            &format!("/puppet-ca/v1/certificate_request/{name}"),
            &[],
            &body,
        );
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{name}: {}", a.text());
        assert!(a.text().contains(msg), "{name}: {}", a.text());
    }
    let big = vec![b'A'; 65 * 1024];
    let a = s.send(
        &As::Anonymous,
        Method::PUT,
        "/puppet-ca/v1/certificate_request/big",
        &[],
        &big,
    );
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    let list = s.get(
        &As::Admin,
        "/puppet-ca/v1/certificate_statuses/any?state=requested",
    );
    assert_eq!(list.text(), "[]", "nothing stored");
}

#[test]
fn crl_without_client_cert_with_if_modified_since() {
    let s = TestServer::start();
    for path in [
        "/puppet-ca/v1/certificate_revocation_list/ca",
        "/production/certificate_revocation_list/ca",
    ] {
        let a = s.get(&As::Anonymous, path);
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert!(a.text().starts_with("-----BEGIN X509 CRL-----"));
        assert_eq!(a.headers["content-type"], "text/plain");
    }
    let a = s.get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca");
    let lm = a.headers["last-modified"].to_str().unwrap().to_string();
    let not_modified = s.send(
        &As::Anonymous,
        Method::GET,
        "/puppet-ca/v1/certificate_revocation_list/ca",
        &[("if-modified-since", &lm)],
        b"",
    );
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert!(not_modified.body.is_empty());
    let old = s.send(
        &As::Anonymous,
        Method::GET,
        "/puppet-ca/v1/certificate_revocation_list/ca",
        &[("if-modified-since", "Tue, 10 Dec 2024 20:01:36 GMT")],
        b"",
    );
    assert_eq!(old.status, StatusCode::OK);

    // A revocation by the CLI on the database is served at once, and the old date is now stale: each
    // CRL's Last-Modified is at least a second after the previous one's, so no clock second is waited.
    s.ca.ca(&["revoke", "ca-admin"]).ok();
    let after = s.send(
        &As::Anonymous,
        Method::GET,
        "/puppet-ca/v1/certificate_revocation_list/ca",
        &[("if-modified-since", &lm)],
        b"",
    );
    assert_eq!(after.status, StatusCode::OK);
    assert_ne!(after.text(), a.text());
}

#[test]
fn authorization_by_identity() {
    let s = TestServer::start();
    let agent = s.identity("agent-x.example.test");
    let admin_paths = [
        (Method::GET, "/puppet-ca/v1/certificate_statuses/any"),
        (Method::GET, "/puppet-ca/v1/certificate_status/ca-admin"),
        (Method::PUT, "/puppet-ca/v1/clean"),
        (Method::POST, "/puppet-ca/v1/sign"),
        (Method::POST, "/puppet-ca/v1/sign/all"),
        (Method::DELETE, "/puppet-ca/v1/certificate_status/nobody"),
    ];
    for (m, path) in &admin_paths {
        for who in [&As::Anonymous, &agent] {
            let a = s.send(
                who,
                m.clone(),
                path,
                &[("content-type", "application/json")],
                b"{}",
            );
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{m} {path} as {who:?}");
            assert_eq!(
                a.text(),
                format!(
                    "Forbidden request: {path} (method :{}). Please see the server logs for details.",
                    m.as_str().to_lowercase()
                )
            );
        }
    }
    let ok = s.get(&As::Admin, "/puppet-ca/v1/certificate_statuses/any");
    assert_eq!(ok.status, StatusCode::OK);
    let del = s.send(
        &As::Admin,
        Method::DELETE,
        "/puppet-ca/v1/certificate_status/nobody",
        &[],
        b"",
    );
    assert_eq!(del.status, StatusCode::NOT_FOUND);
    let exp = s.get(&agent, "/puppet-ca/v1/expirations");
    assert_eq!(exp.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&exp.body).unwrap();
    assert!(v["ca-certs"]["Puppet CA: ca.example.test"]
        .as_str()
        .unwrap()
        .ends_with("UTC"));
    assert_eq!(
        s.get(&As::Anonymous, "/puppet-ca/v1/expirations").status,
        StatusCode::FORBIDDEN
    );
    let del_csr = s.send(
        &As::Admin,
        Method::DELETE,
        "/puppet-ca/v1/certificate_request/x",
        &[],
        b"",
    );
    assert_eq!(
        del_csr.status,
        StatusCode::FORBIDDEN,
        "not allowed by the default rules"
    );
    assert_eq!(
        s.get(&As::Anonymous, "/puppet-ca/v1/nope").status,
        StatusCode::FORBIDDEN
    );
}

#[test]
fn revoked_client_certificate_is_refused_at_once() {
    let s = TestServer::start();
    let agent = s.identity("agent-x.example.test");
    assert_eq!(s.get(&agent, "/puppet-ca/v1/expirations").status, StatusCode::OK);
    // Revoked through the API...
    let r = s.send(
        &As::Admin,
        Method::PUT,
        "/puppet-ca/v1/certificate_status/agent-x.example.test",
        &[("content-type", "application/json")],
        br#"{"desired_state":"revoked"}"#,
    );
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let refused = s.try_send(&agent, Method::GET, "/puppet-ca/v1/expirations", &[], b"");
    assert!(
        refused.is_err(),
        "revoked certificate must fail the handshake: {refused:?}"
    );
    // ...and through the CLI on the database, with no restart.
    let other = s.ca.path("gen-b");
    s.ca.ca(&[
        "generate",
        "agent-b.example.test",
        "--key-type",
        "ec-p256",
        "--out",
        other.to_str().unwrap(),
    ])
    .ok();
    let b = As::Cert(
        other.join("certs/agent-b.example.test.pem"),
        other.join("private_keys/agent-b.example.test.pem"),
    );
    assert_eq!(s.get(&b, "/puppet-ca/v1/expirations").status, StatusCode::OK);
    s.ca.ca(&["revoke", "agent-b.example.test"]).ok();
    assert!(s
        .try_send(&b, Method::GET, "/puppet-ca/v1/expirations", &[], b"")
        .is_err());
    // A certificate from another CA is refused too.
    let foreign = crate::harness::TestCa::new();
    let f = As::Cert(
        foreign.data.join("admin/cert.pem"),
        foreign.data.join("admin/key.pem"),
    );
    assert!(s
        .try_send(&f, Method::GET, "/puppet-ca/v1/certificate/ca", &[], b"")
        .is_err());
}

#[test]
fn certificate_status_put_validation() {
    let s = TestServer::start();
    let put = |body: &[u8], ct: &str| {
        s.send(
            &As::Admin,
            Method::PUT,
            "/puppet-ca/v1/certificate_status/ca-admin",
            &[("content-type", ct)],
            body,
        )
    };
    let cases: [(&[u8], &str, StatusCode, &str); 6] = [
        (
            b"",
            "application/json",
            StatusCode::BAD_REQUEST,
            "Empty request body.",
        ),
        (
            b"{",
            "application/json",
            StatusCode::BAD_REQUEST,
            "Request body is not JSON.",
        ),
        (
            b"{}",
            "application/json",
            StatusCode::BAD_REQUEST,
            "Missing required parameter \"desired_state\"",
        ),
        (
            br#"{"desired_state":"bogus"}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "State bogus invalid; Must specify desired state of 'signed' or 'revoked' for host ca-admin.",
        ),
        (
            br#"{"desired_state":"signed","cert_ttl":"x"}"#,
            "application/json",
            StatusCode::BAD_REQUEST,
            "cert_ttl specified for host ca-admin must be an integer, not \"x\"",
        ),
        (
            br#"{"desired_state":"signed"}"#,
            "text/html",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type.",
        ),
    ];
    for (body, ct, status, msg) in cases {
        let a = put(body, ct);
        assert_eq!((a.status, a.text().as_str()), (status, msg));
    }
    let a = put(br#"{"desired_state":"signed"}"#, "application/json");
    assert_eq!(
        (a.status, a.text().as_str()),
        (
            StatusCode::CONFLICT,
            "Cannot sign certificate for host ca-admin without a certificate request"
        )
    );
    let a = s.send(
        &As::Admin,
        Method::PUT,
        "/puppet-ca/v1/certificate_status/nobody",
        &[],
        br#"{"desired_state":"revoked"}"#,
    );
    assert_eq!(
        (a.status, a.text().as_str()),
        (StatusCode::NOT_FOUND, "Invalid certificate subject.")
    );
    let a = s.send(
        &As::Admin,
        Method::GET,
        "/puppet-ca/v1/certificate_status/ca-admin",
        &[("accept", "text/html")],
        b"",
    );
    assert_eq!(a.status, StatusCode::NOT_ACCEPTABLE);
    let a = s.send(
        &As::Admin,
        Method::POST,
        "/puppet-ca/v1/certificate_status/ca-admin",
        &[],
        b"",
    );
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "POST is not in the rule's methods"
    );
    assert_eq!(
        s.get(&As::Admin, "/puppet-ca/v1/certificate_statuses/").status,
        StatusCode::BAD_REQUEST
    );
}

#[test]
fn bulk_sign_clean_and_status_endpoints() {
    let s = TestServer::start();
    for (name, file) in [
        (AGENT, "rsa2048.pem"),
        ("agent-ec.example.test", "ec-p256.pem"),
        ("master-2", "altnames.pem"),
    ] {
        let a = s.send(
            &As::Anonymous,
            Method::PUT,
            &format!("/puppet-ca/v1/certificate_request/{name}"),
            &[],
            &csr(file),
        );
        assert_eq!(a.status, StatusCode::OK);
    }
    let a = s.send(
        &As::Admin,
        Method::POST,
        "/puppet-ca/v1/sign",
        &[("content-type", "application/json")],
        br#"{"certnames":["agent-ec.example.test","master-2","ghost"]}"#,
    );
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["signed"], serde_json::json!(["agent-ec.example.test"]));
    assert_eq!(v["no-csr"], serde_json::json!(["ghost"]));
    assert_eq!(v["signing-errors"], serde_json::json!(["master-2"]));
    let bad = s.send(
        &As::Admin,
        Method::POST,
        "/puppet-ca/v1/sign",
        &[],
        br#"{"certnames":"x"}"#,
    );
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let all = s.send(&As::Admin, Method::POST, "/puppet-ca/v1/sign/all", &[], b"{}");
    let v: serde_json::Value = serde_json::from_slice(&all.body).unwrap();
    assert_eq!(v["signed"], serde_json::json!([AGENT]));
    let alt = s.send(
        &As::Admin,
        Method::POST,
        "/puppet-ca/v1/sign",
        &[],
        br#"{"certnames":["master-2"],"allow-dns-alt-names":true}"#,
    );
    let v: serde_json::Value = serde_json::from_slice(&alt.body).unwrap();
    assert_eq!(v["signed"], serde_json::json!(["master-2"]));

    let clean = s.send(
        &As::Admin,
        Method::PUT,
        "/puppet-ca/v1/clean",
        &[],
        br#"{"certnames":["master-2","ghost"]}"#,
    );
    assert_eq!(
        clean.text(),
        "The following certs do not exist and cannot be revoked: [\"ghost\"]"
    );
    let clean = s.send(
        &As::Admin,
        Method::PUT,
        "/puppet-ca/v1/clean",
        &[],
        br#"{"certnames":[]}"#,
    );
    assert_eq!(clean.text(), "Successfully cleaned all certs.");
    assert_eq!(
        s.send(
            &As::Admin,
            Method::PUT,
            "/puppet-ca/v1/clean",
            &[],
            br#"{"async":true,"certnames":[]}"#
        )
        .status,
        StatusCode::BAD_REQUEST
    );

    let services = s.get(&As::Anonymous, "/status/v1/services");
    let v: serde_json::Value = serde_json::from_slice(&services.body).unwrap();
    assert_eq!(v["ca"]["service_version"], "8.4.0");
    assert_eq!(s.get(&As::Anonymous, "/status/v1/simple/ca").text(), "running");
    assert_eq!(s.get(&As::Anonymous, "/status/v1/simple").text(), "running");
    let renew = s.send(
        &As::Admin,
        Method::POST,
        "/puppet-ca/v1/certificate_renewal",
        &[],
        b"",
    );
    // Renewal is on by default (puppetserver's is off): the admin's own certificate, renewed.
    assert_eq!(renew.status, StatusCode::OK, "{}", renew.text());
    let renewed = pem::parse(renew.body.as_ref()).unwrap().into_contents();
    let (_, c) = x509_parser::parse_x509_certificate(&renewed).unwrap();
    assert_eq!(
        c.subject().iter_common_name().next().unwrap().as_str().unwrap(),
        "ca-admin"
    );
}

#[test]
fn legacy_routes_as_a_puppet_3_agent() {
    let s = TestServer::start();
    let name = "agent-ec.example.test";
    let h = [("accept", "s"), ("x-puppet-version", "3.8.7")];
    let ca = s.send(&As::Anonymous, Method::GET, "/production/certificate/ca", &h, b"");
    assert_eq!(ca.status, StatusCode::OK);
    assert!(ca.text().contains("BEGIN CERTIFICATE"));
    let none = s.send(
        &As::Anonymous,
        Method::GET,
        &format!("/production/certificate/{name}"),
        &h,
        b"",
    );
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    let put = s.send(
        &As::Anonymous,
        Method::PUT,
        &format!("/production/certificate_request/{name}"),
        &[("accept", "s"), ("content-type", "text/plain")],
        &csr("ec-p256.pem"),
    );
    assert_eq!(put.status, StatusCode::OK);
    s.ca.ca(&["sign", name]).ok();
    let cert = s.send(
        &As::Anonymous,
        Method::GET,
        &format!("/production/certificate/{name}"),
        &h,
        b"",
    );
    assert_eq!(cert.status, StatusCode::OK);
    assert!(cert.text().contains("BEGIN CERTIFICATE"));
    let crl = s.send(
        &As::Anonymous,
        Method::GET,
        "/production/certificate_revocation_list/ca",
        &h,
        b"",
    );
    assert_eq!(crl.status, StatusCode::OK);
    let del = s.send(
        &As::Anonymous,
        Method::DELETE,
        &format!("/production/certificate_request/{name}"),
        &h,
        b"",
    );
    assert_eq!(del.status, StatusCode::FORBIDDEN);
    // Legacy admin routes go through the same rules as v1.
    assert_eq!(
        s.get(&As::Anonymous, "/production/certificate_statuses/all")
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.get(&As::Admin, "/production/certificate_statuses/all").status,
        StatusCode::OK
    );
}

#[test]
fn hostile_paths_are_refused_cleanly() {
    let s = TestServer::start();
    for (path, status) in [
        (
            "/puppet-ca/v1/certificate/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            StatusCode::BAD_REQUEST,
        ),
        ("/puppet-ca/v1/certificate/..%2Fca", StatusCode::BAD_REQUEST),
        ("/puppet-ca/v1/certificate/a%00b", StatusCode::BAD_REQUEST),
        ("/puppet-ca/v1/certificate/%zz", StatusCode::BAD_REQUEST),
        ("/puppet-ca/v1/certificate/a%2Fb", StatusCode::NOT_FOUND),
        ("/puppet-ca/v1/certificate/%61gent-none", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(s.get(&As::Anonymous, path).status, status, "{path}");
    }
    assert_eq!(
        s.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca").status,
        StatusCode::OK,
        "still serving"
    );
}
