//! The authorization matrix: every endpoint of §1.1, the Puppet 3 routes and `/status/v1` × every kind
//! of caller, under the default rules (puppetserver's auth.conf, §3.2) and header mode off.
//!
//! Cells are the status code, or `TLS` when the handshake is refused (revoked certificate, certificate
//! of another CA: refused before any rule is consulted). Bodies are chosen so an allowed request
//! changes nothing: a refused CSR, an empty certname list, a name that does not exist.
//!
//! Where a cell may surprise:
//! - `GET certificate_revocation_list/<not ca>` is 403 for everyone, the admin included: the default
//!   rule only covers the `/certificate_revocation_list/ca` prefix (as upstream).
//! - `DELETE certificate_request` is 403 for everyone: no default rule allows it (§1.5); the Puppet 3
//!   route has no DELETE at all, so `/production/certificate_request/x` falls to the global deny.
//! - `POST certificate_renewal` is 404 for any authenticated caller: allowed by the rule (`allow *`),
//!   then refused because `allow-auto-renewal` is off here (§1.13; puppetserver's default, turned
//!   off explicitly since ours is on, so that no allowed request changes anything).
//! - The spoofed `X-Client-Verify`/`X-Client-DN`/`X-Client-Cert` headers change nothing when
//!   `allow-header-cert-info` is off (§3.3): with no certificate the caller stays anonymous, with an
//!   agent certificate it stays that agent.

use hyper::Method;

use crate::server::{As, TestServer};

/// Column order of the expectations.
const CALLERS: [&str; 7] = [
    "no certificate",
    "agent",
    "revoked agent",
    "other CA's admin",
    "admin",
    "spoofed admin headers",
    "agent + spoofed headers",
];

/// Connects with `who`'s certificate and sends one request: the fatal alert the server answers with,
/// if it refuses the certificate.
fn tls_refusal(s: &TestServer, who: &As) -> Option<String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let As::Cert(cert, key) = who else {
        return None;
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(s.ca.ca_cert()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key).unwrap())
        .unwrap();
    let addr = s.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = match connector.connect(name, tcp).await {
            Ok(t) => t,
            Err(e) => return Some(format!("{e:?}")),
        };
        let req = b"GET /status/v1/simple HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
        if let Err(e) = tls.write_all(req).await {
            return Some(format!("{e:?}"));
        }
        let mut buf = Vec::new();
        match tls.read_to_end(&mut buf).await {
            Err(e) if format!("{e:?}").contains("AlertReceived") => Some(format!("{e:?}")),
            _ => None,
        }
    })
}

#[test]
fn every_endpoint_by_every_caller() {
    let s = TestServer::start_with("[ca]\nallow-auto-renewal = false\n");
    let agent = s.identity("agent-m.example.test");
    let revoked = s.identity("agent-r.example.test");
    s.ca.ca(&["revoke", "agent-r.example.test"]).ok();
    let foreign_ca = crate::harness::TestCa::new();
    let foreign = As::Cert(
        foreign_ca.data.join("admin/cert.pem"),
        foreign_ca.data.join("admin/key.pem"),
    );
    let admin_pem = std::fs::read_to_string(s.data().join("admin/cert.pem")).unwrap();
    let spoof_cert = crate::harness::url_encode(&admin_pem);
    let spoof: Vec<(&str, &str)> = vec![
        ("x-client-verify", "SUCCESS"),
        ("x-client-dn", "CN=ca-admin"),
        ("x-client-cert", &spoof_cert),
    ];
    let callers: [(&As, bool); 7] = [
        (&As::Anonymous, false),
        (&agent, false),
        (&revoked, false),
        (&foreign, false),
        (&As::Admin, false),
        (&As::Anonymous, true),
        (&agent, true),
    ];
    let listing = |s: &TestServer| s.get(&As::Admin, "/puppet-ca/v1/certificate_statuses/any").text();
    let before = listing(&s);

    let garbage: &[u8] = b"not a CSR";
    let revoke_nobody: &[u8] = br#"{"desired_state":"revoked"}"#;
    let no_names: &[u8] = br#"{"certnames":[]}"#;
    #[rustfmt::skip]
    let table: Vec<(Method, &str, &[u8], &str)> = vec![
        //                                                                          anon agent rvk  frgn admin spoof a+spoof
        (Method::GET,    "/puppet-ca/v1/certificate/ca",                     b"",            "200 200 TLS TLS 200 200 200"),
        (Method::GET,    "/puppet-ca/v1/certificate/agent-m.example.test",   b"",            "200 200 TLS TLS 200 200 200"),
        (Method::GET,    "/puppet-ca/v1/certificate/nobody",                 b"",            "404 404 TLS TLS 404 404 404"),
        (Method::GET,    "/puppet-ca/v1/certificate_request/nobody",         b"",            "404 404 TLS TLS 404 404 404"),
        (Method::PUT,    "/puppet-ca/v1/certificate_request/matrix.example.test", garbage,   "400 400 TLS TLS 400 400 400"),
        (Method::DELETE, "/puppet-ca/v1/certificate_request/nobody",         b"",            "403 403 TLS TLS 403 403 403"),
        (Method::GET,    "/puppet-ca/v1/certificate_revocation_list/ca",     b"",            "200 200 TLS TLS 200 200 200"),
        (Method::GET,    "/puppet-ca/v1/certificate_revocation_list/other",  b"",            "403 403 TLS TLS 403 403 403"),
        (Method::PUT,    "/puppet-ca/v1/certificate_revocation_list",        garbage,        "403 403 TLS TLS 400 403 403"),
        (Method::GET,    "/puppet-ca/v1/certificate_status/ca-admin",        b"",            "403 403 TLS TLS 200 403 403"),
        (Method::PUT,    "/puppet-ca/v1/certificate_status/nobody",          revoke_nobody,  "403 403 TLS TLS 404 403 403"),
        (Method::DELETE, "/puppet-ca/v1/certificate_status/nobody",          b"",            "403 403 TLS TLS 404 403 403"),
        (Method::GET,    "/puppet-ca/v1/certificate_statuses/any",           b"",            "403 403 TLS TLS 200 403 403"),
        (Method::GET,    "/puppet-ca/v1/expirations",                        b"",            "403 200 TLS TLS 200 403 200"),
        (Method::PUT,    "/puppet-ca/v1/clean",                              no_names,       "403 403 TLS TLS 200 403 403"),
        (Method::POST,   "/puppet-ca/v1/certificate_renewal",                b"",            "403 404 TLS TLS 404 403 404"),
        (Method::POST,   "/puppet-ca/v1/sign",                               no_names,       "403 403 TLS TLS 200 403 403"),
        (Method::POST,   "/puppet-ca/v1/sign/all",                           b"{}",          "403 403 TLS TLS 200 403 403"),
        // Puppet 3 routes: translated, then the same rules as v1.
        (Method::GET,    "/production/certificate/ca",                       b"",            "200 200 TLS TLS 200 200 200"),
        (Method::GET,    "/production/certificate_request/nobody",           b"",            "404 404 TLS TLS 404 404 404"),
        (Method::PUT,    "/production/certificate_request/matrix.example.test", garbage,     "400 400 TLS TLS 400 400 400"),
        (Method::DELETE, "/production/certificate_request/nobody",           b"",            "403 403 TLS TLS 403 403 403"),
        (Method::GET,    "/production/certificate_revocation_list/ca",       b"",            "200 200 TLS TLS 200 200 200"),
        (Method::GET,    "/production/certificate_status/ca-admin",          b"",            "403 403 TLS TLS 200 403 403"),
        (Method::PUT,    "/production/certificate_status/nobody",            revoke_nobody,  "403 403 TLS TLS 404 403 403"),
        (Method::DELETE, "/production/certificate_status/nobody",            b"",            "403 403 TLS TLS 404 403 403"),
        (Method::GET,    "/production/certificate_statuses/all",             b"",            "403 403 TLS TLS 200 403 403"),
        // Status service.
        (Method::GET,    "/status/v1/services",                              b"",            "200 200 TLS TLS 200 200 200"),
        (Method::GET,    "/status/v1/services/ca",                           b"",            "200 200 TLS TLS 200 200 200"),
        (Method::GET,    "/status/v1/simple",                                b"",            "200 200 TLS TLS 200 200 200"),
        (Method::GET,    "/status/v1/simple/ca",                             b"",            "200 200 TLS TLS 200 200 200"),
    ];

    let mut wrong = Vec::new();
    let mut cells = 0;
    for (method, path, body, expected) in &table {
        let expected: Vec<&str> = expected.split_whitespace().collect();
        assert_eq!(expected.len(), CALLERS.len(), "{method} {path}");
        for (i, (who, spoofed)) in callers.iter().enumerate() {
            cells += 1;
            let headers: &[(&str, &str)] = if *spoofed { &spoof } else { &[] };
            let got = match s.try_send(who, method.clone(), path, headers, body) {
                Err(e) => {
                    let e = format!("{e:#}");
                    // A refused client certificate: the alert arrives during the handshake or, with
                    // TLS 1.3, on the first read.
                    assert!(
                        e.contains("TLS") || e.contains("HTTP"),
                        "{method} {path} as {}: {e}",
                        CALLERS[i]
                    );
                    "TLS".to_string()
                }
                Ok(a) => {
                    let text = a.text();
                    if a.status == hyper::StatusCode::FORBIDDEN {
                        let m = method.as_str().to_ascii_lowercase();
                        let ok = text.starts_with("Forbidden request: /")
                            && text.ends_with(&format!(
                                " (method :{m}). Please see the server logs for details."
                            ));
                        assert!(ok, "{method} {path} as {}: 403 body {text:?}", CALLERS[i]);
                    }
                    a.status.as_u16().to_string()
                }
            };
            if got != expected[i] {
                wrong.push(format!(
                    "{method} {path} as {}: {got}, expected {}",
                    CALLERS[i], expected[i]
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {cells} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(cells, table.len() * CALLERS.len());
    assert_eq!(listing(&s), before, "the matrix changed nothing");
    assert!(!s.ca.holds("matrix.example.test"));

    // The TLS cells are the handshake's doing (a fatal alert for the client certificate), not some
    // other broken connection.
    assert_eq!(tls_refusal(&s, &agent), None);
    let alert = tls_refusal(&s, &revoked).expect("revoked certificate refused");
    assert!(alert.contains("CertificateRevoked"), "{alert}");
    let alert = tls_refusal(&s, &foreign).expect("foreign certificate refused");
    // The other CA has the same name ("Puppet CA: ca.example.test"): the issuer is found by name and
    // its signature fails (rustls answers decrypt_error); a differently named CA gets unknown_ca.
    assert!(
        ["UnknownCA", "BadCertificate", "DecryptError"]
            .iter()
            .any(|a| alert.contains(a)),
        "{alert}"
    );

    // Control: the same kind of headers (with that server's own admin certificate, which it checks
    // against its key and database) do make an admin from a trusted proxy address, so the column above
    // shows them ignored, not malformed.
    let proxied = TestServer::start_with(
        "[authorization]\nallow-header-cert-info = true\ntrusted-proxies = [\"127.0.0.1\"]\n",
    );
    let own_pem = std::fs::read_to_string(proxied.data().join("admin/cert.pem")).unwrap();
    let own_cert = crate::harness::url_encode(&own_pem);
    let own: Vec<(&str, &str)> = vec![
        ("x-client-verify", "SUCCESS"),
        ("x-client-dn", "CN=ca-admin"),
        ("x-client-cert", &own_cert),
    ];
    let a = proxied.send(
        &As::Anonymous,
        Method::GET,
        "/puppet-ca/v1/certificate_statuses/any",
        &own,
        b"",
    );
    assert_eq!(a.status, hyper::StatusCode::OK, "{}", a.text());
    // The other server's admin certificate is not this CA's: refused.
    let a = proxied.send(
        &As::Anonymous,
        Method::GET,
        "/puppet-ca/v1/certificate_statuses/any",
        &spoof,
        b"",
    );
    assert_eq!(a.status, hyper::StatusCode::FORBIDDEN, "{}", a.text());
}
