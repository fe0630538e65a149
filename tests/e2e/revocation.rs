//! A revoked certificate stops working at once, everywhere (issue: the security review's critical and
//! high findings): resumed TLS sessions, open keep-alive connections, renewal, header mode, and the
//! trust anchors of an intermediate CA. Each test is the attack as an attacker runs it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::server::{As, TestServer};

/// `openssl s_client` sending one `GET path` (Connection: close) with a client certificate, saving or
/// resuming a session; its whole output.
pub fn s_client(s: &TestServer, id: &As, path: &str, session: (&str, &Path), tls: &str) -> String {
    let As::Cert(cert, key) = id else {
        unreachable!("a certificate identity")
    };
    let mut child = Command::new("timeout")
        .arg("20")
        .arg("openssl")
        .args(["s_client", tls, "-ign_eof", "-servername", "localhost"])
        .arg("-connect")
        .arg(format!("127.0.0.1:{}", s.addr.port()))
        .arg("-CAfile")
        .arg(s.ca.ca_cert())
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .arg(session.0)
        .arg(session.1)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl (scripts/test installs it)");
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(req.as_bytes())
        .expect("write request");
    let out = child.wait_with_output().expect("openssl output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn identity_paths(id: &As) -> (PathBuf, PathBuf) {
    match id {
        As::Cert(c, k) => (c.clone(), k.clone()),
        _ => unreachable!("a certificate identity"),
    }
}

/// The attack of the review: a session saved while the certificate was good, resumed after `ca revoke`,
/// in TLS 1.3 (session ticket) and TLS 1.2 (session id).
#[test]
fn a_resumed_session_of_a_revoked_certificate_is_refused() {
    let s = TestServer::start();
    for (tls, name) in [
        ("-tls1_3", "agent13.example.test"),
        ("-tls1_2", "agent12.example.test"),
    ] {
        let agent = s.identity(name);
        let (saved_a, saved_b) = (
            s.ca.path(&format!("{name}.a.sess")),
            s.ca.path(&format!("{name}.b.sess")),
        );
        for saved in [&saved_a, &saved_b] {
            let out = s_client(&s, &agent, "/puppet-ca/v1/expirations", ("-sess_out", saved), tls);
            assert!(out.contains("HTTP/1.1 200 OK"), "{tls}: full handshake: {out}");
        }
        // Resumption works here while the certificate is good (TLS 1.3 tickets are single-use: the
        // second saved session is kept for the attack).
        let out = s_client(
            &s,
            &agent,
            "/puppet-ca/v1/expirations",
            ("-sess_in", &saved_a),
            tls,
        );
        assert!(out.contains("Reused,"), "{tls}: the session must resume: {out}");
        assert!(
            out.contains("HTTP/1.1 200 OK"),
            "{tls}: resumed while good: {out}"
        );

        s.ca.ca(&["revoke", name]).ok();
        let out = s_client(
            &s,
            &agent,
            "/puppet-ca/v1/expirations",
            ("-sess_in", &saved_b),
            tls,
        );
        assert!(
            !out.contains("HTTP/1.1 200"),
            "{tls}: a resumed session of a revoked certificate was served: {out}"
        );
        // A new full handshake is refused as before.
        let out = s_client(
            &s,
            &agent,
            "/puppet-ca/v1/expirations",
            ("-sess_out", &saved_a),
            tls,
        );
        assert!(
            !out.contains("HTTP/1.1 200"),
            "{tls}: full handshake after revoke: {out}"
        );
    }
}

/// One TLS connection kept open (HTTP/1.1 keep-alive), as an agent's or the admin's connection pool.
pub struct KeepAlive {
    rt: tokio::runtime::Runtime,
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl KeepAlive {
    pub fn open(s: &TestServer, id: &As) -> KeepAlive {
        Self::open_from(s, id, None)
    }

    /// Connects from the loopback address `from` (any 127.0.0.0/8 address works on Linux).
    pub fn open_from(s: &TestServer, id: &As, from: Option<std::net::IpAddr>) -> KeepAlive {
        Self::connect(s.addr, &s.ca.ca_cert(), id, from)
    }

    /// A connection to any server at `addr` whose CA bundle is `cacert` (dialled as `localhost`).
    pub fn connect(
        addr: std::net::SocketAddr,
        cacert: &Path,
        id: &As,
        from: Option<std::net::IpAddr>,
    ) -> KeepAlive {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(cacert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = match id {
            As::Anonymous => builder.with_no_client_auth(),
            _ => {
                let (cert, key) = identity_paths(id);
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                let key = PrivateKeyDer::from_pem_file(&key).unwrap();
                builder.with_client_auth_cert(chain, key).unwrap()
            }
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let sender = rt.block_on(async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            if let Some(ip) = from {
                socket.bind(std::net::SocketAddr::new(ip, 0)).unwrap();
            }
            let tcp = socket.connect(addr).await.unwrap();
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
                .unwrap();
            let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        });
        KeepAlive { rt, sender }
    }

    /// One request on the open connection; Err when the connection is gone.
    pub fn get(&mut self, path: &str) -> Result<(StatusCode, String), String> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(path)
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let sender = &mut self.sender;
        self.rt.block_on(async move {
            sender.ready().await.map_err(|e| e.to_string())?;
            let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        })
    }
}

/// A connection opened before the revocation is refused on its next request (403, then closed), for a
/// revocation through the API and one by `ca revoke` on the database.
#[test]
fn an_open_keep_alive_connection_is_refused_after_revocation() {
    let s = TestServer::start();
    for (name, by_cli) in [("keep-api.example.test", false), ("keep-cli.example.test", true)] {
        let agent = s.identity(name);
        let mut conn = KeepAlive::open(&s, &agent);
        assert_eq!(conn.get("/puppet-ca/v1/expirations").unwrap().0, StatusCode::OK);
        assert_eq!(
            conn.get("/puppet-ca/v1/expirations").unwrap().0,
            StatusCode::OK,
            "keep-alive"
        );
        if by_cli {
            s.ca.ca(&["revoke", name]).ok();
        } else {
            let r = s.send(
                &As::Admin,
                Method::PUT,
                &format!("/puppet-ca/v1/certificate_status/{name}"),
                &[("content-type", "application/json")],
                br#"{"desired_state":"revoked"}"#,
            );
            assert_eq!(r.status, StatusCode::NO_CONTENT);
        }
        // The next CRL the server serves lists it (a CRL GET reads no database unless `ca.db-crl`
        // moved: the CLI's commit grows it).
        let served = s.get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca");
        assert_eq!(served.status, StatusCode::OK);
        assert!(
            crate::harness::crl_serials_of(&served.text())
                .contains(&crate::harness::serial_of_cert_file(&identity_paths(&agent).0)),
            "{name}: revoked, not in the next CRL served"
        );
        let after = conn.get("/puppet-ca/v1/expirations");
        match &after {
            Ok((status, body)) => {
                assert_eq!(*status, StatusCode::FORBIDDEN, "{name}: {body}");
                assert!(body.contains("revoked"), "{body}");
            }
            Err(e) => panic!("{name}: expected 403 on the open connection, got {e}"),
        }
        assert!(
            conn.get("/puppet-ca/v1/certificate/ca").is_err(),
            "{name}: the connection must be closed after the refusal"
        );
    }
}

fn renew(s: &TestServer, who: &As, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut h = vec![("content-type", "text/plain")];
    h.extend_from_slice(headers);
    let a = s.send(who, Method::POST, "/puppet-ca/v1/certificate_renewal", &h, b"");
    (a.status, a.text())
}

/// Renewal re-issues only the name's current, unrevoked certificate: a superseded one (still valid,
/// never revoked) and a revoked or cleaned one are refused, with an audit row.
#[test]
fn renewal_never_undoes_a_revocation_or_revives_a_superseded_certificate() {
    let s = TestServer::start_with("[ca]\nallow-auto-renewal = true\n");
    let agent = s.identity("renew-me.example.test");
    let (status, body) = renew(&s, &agent, &[]);
    assert_eq!(status, StatusCode::OK, "{body}");
    // The first certificate is superseded by the renewed one.
    let (status, body) = renew(&s, &agent, &[]);
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "superseded certificate renewed: {body}"
    );
    assert!(body.contains("not the current certificate"), "{body}");
    let audit = s.ca.audit("renew-me.example.test");
    assert!(
        audit
            .iter()
            .any(|r| r.action == "renew" && r.outcome == "refused"),
        "{audit:?}"
    );

    // In process, below the HTTP layer: the authority itself refuses a revoked and a cleaned
    // certificate (the request check is not the only guard).
    let victim = s.identity("renew-revoked.example.test");
    let cleaned = s.identity("renew-cleaned.example.test");
    s.ca.ca(&["revoke", "renew-revoked.example.test"]).ok();
    s.ca.ca(&["clean", "renew-cleaned.example.test"]).ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = ca_server::datadir::DataDir::new(s.data());
    let authority = rt
        .block_on(ca_server::authority::Authority::open(
            &dir,
            ca_server::authority::CaSettings::default(),
            Arc::new(ca_server::clock::SystemClock),
        ))
        .unwrap();
    for id in [&victim, &cleaned] {
        let (cert, _) = identity_paths(id);
        let der = pem::parse(std::fs::read(&cert).unwrap()).unwrap().into_contents();
        let res = rt.block_on(authority.renew("cert:attacker", &der));
        assert!(res.is_err(), "{}: renewed: {res:?}", cert.display());
    }
    let listed = s.ca.ca(&["list", "--all"]).ok().stdout;
    assert!(
        !listed
            .lines()
            .any(|l| l.contains("renew-revoked") && l.trim_start().starts_with('+')),
        "{listed}"
    );
}

fn der_of(path: &Path) -> Vec<u8> {
    pem::parse(std::fs::read(path).unwrap()).unwrap().into_contents()
}

/// A self-signed forgery carrying the CA's key identifier as AKI, `pp_cli_auth` and `DNS:puppet`.
fn forged_admin(ca_key_id: &[u8]) -> String {
    let mut params = rcgen::CertificateParams::new(vec!["puppet".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "forged.example.test");
    // AuthorityKeyIdentifier ::= SEQUENCE { [0] keyIdentifier }
    let mut aki = vec![0x30, (ca_key_id.len() + 2) as u8, 0x80, ca_key_id.len() as u8];
    aki.extend_from_slice(ca_key_id);
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 35], aki));
    // pp_cli_auth = "true" (UTF8String)
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 34380, 1, 3, 39],
            vec![0x0c, 4, b't', b'r', b'u', b'e'],
        ));
    let key = rcgen::KeyPair::generate().unwrap();
    params.self_signed(&key).unwrap().pem()
}

fn proxy_headers(dn: &str, cert_pem: &str) -> Vec<(String, String)> {
    vec![
        ("x-client-verify".into(), "SUCCESS".into()),
        ("x-client-dn".into(), dn.into()),
        ("x-client-cert".into(), crate::harness::url_encode(cert_pem)),
    ]
}

fn refs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Header mode: a forged `X-Client-Cert` (self-signed, with the CA's AKI, `pp_cli_auth` and
/// `DNS:puppet`) is refused, so renewal cannot mint an admin certificate; a genuine agent renews with
/// what the database holds; a revoked one is refused; headers from an address that is not a trusted
/// proxy are ignored.
#[test]
fn header_mode_trusts_only_verified_current_certificates_from_trusted_proxies() {
    let s = TestServer::start_with(
        "[ca]\nallow-auto-renewal = true\n[authorization]\nallow-header-cert-info = true\ntrusted-proxies = [\"127.0.0.1\"]\n",
    );
    let ca_der = der_of(&s.data().join("ca_crt.pem"));
    let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
    let key_id = ca
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    let forged = forged_admin(&key_id);
    let h = proxy_headers("CN=forged.example.test", &forged);
    let (status, body) = renew(&s, &As::Anonymous, &refs(&h));
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a forged header certificate was renewed: {body}"
    );
    assert!(!body.contains("BEGIN CERTIFICATE"), "{body}");
    let a = s.send(
        &As::Anonymous,
        Method::GET,
        "/puppet-ca/v1/certificate_statuses/any",
        &refs(&h),
        b"",
    );
    assert_eq!(a.status, StatusCode::FORBIDDEN, "forged admin: {}", a.text());

    // A genuine agent through the "proxy": renewed, with the stored certificate's names.
    let agent = s.identity("proxied.example.test");
    let (cert, _) = identity_paths(&agent);
    let pem_text = std::fs::read_to_string(&cert).unwrap();
    let h = proxy_headers("CN=proxied.example.test", &pem_text);
    let (status, body) = renew(&s, &As::Anonymous, &refs(&h));
    assert_eq!(status, StatusCode::OK, "{body}");
    // The DN must name the certificate's subject.
    let h2 = proxy_headers("CN=ca-admin", &pem_text);
    let a = s.send(
        &As::Anonymous,
        Method::GET,
        "/puppet-ca/v1/certificate_statuses/any",
        &refs(&h2),
        b"",
    );
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());

    // Revoked: refused through the proxy too.
    let other = s.identity("proxied-revoked.example.test");
    let (cert, _) = identity_paths(&other);
    let pem_text = std::fs::read_to_string(&cert).unwrap();
    let h = proxy_headers("CN=proxied-revoked.example.test", &pem_text);
    assert_eq!(
        s.send(
            &As::Anonymous,
            Method::GET,
            "/puppet-ca/v1/expirations",
            &refs(&h),
            b""
        )
        .status,
        StatusCode::OK
    );
    s.ca.ca(&["revoke", "proxied-revoked.example.test"]).ok();
    let a = s.send(
        &As::Anonymous,
        Method::GET,
        "/puppet-ca/v1/expirations",
        &refs(&h),
        b"",
    );
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text());

    // Only trusted proxies may speak for others: from 127.0.0.1 with 127.0.0.2 trusted, the admin's
    // genuine headers count for nothing.
    drop(s);
    let s = TestServer::start_with(
        "[authorization]\nallow-header-cert-info = true\ntrusted-proxies = [\"127.0.0.2\"]\n",
    );
    let admin_pem = std::fs::read_to_string(s.data().join("admin/cert.pem")).unwrap();
    let h = proxy_headers("CN=ca-admin", &admin_pem);
    let a = s.send(
        &As::Anonymous,
        Method::GET,
        "/puppet-ca/v1/certificate_statuses/any",
        &refs(&h),
        b"",
    );
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "untrusted source's headers: {}",
        a.text()
    );
    // ...while its own TLS certificate does.
    assert_eq!(
        s.get(&As::Admin, "/puppet-ca/v1/certificate_statuses/any").status,
        StatusCode::OK
    );
}

/// Header mode without trusted proxies does not start: `--check-config` says what is missing.
#[test]
fn header_mode_requires_trusted_proxies() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("c.toml");
    std::fs::write(&conf, "[authorization]\nallow-header-cert-info = true\n").unwrap();
    let out = Command::new(crate::harness::server_binary())
        .arg("--config")
        .arg(&conf)
        .arg("--data-dir")
        .arg(dir.path().join("d"))
        .arg("--check-config")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("trusted-proxies"), "{err}");
}

/// With an intermediate CA only the signing (intermediate) CA is a trust anchor for clients: a
/// certificate the root signed directly, even one with `pp_cli_auth`, does not authenticate.
#[test]
fn a_leaf_signed_by_the_root_does_not_authenticate() {
    let ca =
        crate::harness::TestCa::with_args(&["--intermediate", "--dns-alt-names", "localhost,IP:127.0.0.1"]);
    let s = TestServer::launch(ca, "");
    let bundle = std::fs::read_to_string(s.data().join("ca_crt.pem")).unwrap();
    let blocks = pem::parse_many(&bundle).unwrap();
    assert_eq!(blocks.len(), 2, "intermediate then root");
    let root = s.ca.path("root.pem");
    std::fs::write(&root, pem::encode(&blocks[1])).unwrap();
    let key = s.ca.path("rogue.key");
    let csr = s.ca.path("rogue.csr");
    let cert = s.ca.path("rogue.pem");
    let ext = s.ca.path("rogue.ext");
    std::fs::write(&ext, "1.3.6.1.4.1.34380.1.3.39=ASN1:UTF8String:true\n").unwrap();
    let p = |x: &Path| x.display().to_string();
    let (ok, out) = crate::harness::openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
        "-subj",
        "/CN=rogue-admin",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = crate::harness::openssl(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&root),
        "-CAkey",
        &p(&s.data().join("root_key.pem")),
        "-set_serial",
        "4242",
        "-days",
        "2",
        "-extfile",
        &p(&ext),
        "-out",
        &p(&cert),
    ]);
    assert!(ok, "{out}");
    let rogue = As::Cert(cert, key);
    let a = s.try_send(
        &rogue,
        Method::GET,
        "/puppet-ca/v1/certificate_statuses/any",
        &[],
        b"",
    );
    assert!(
        !matches!(&a, Ok(a) if a.status == StatusCode::OK),
        "a root-signed leaf got admin rights: {a:?}"
    );
    // The intermediate's own admin still works.
    assert_eq!(
        s.get(&As::Admin, "/puppet-ca/v1/certificate_statuses/any").status,
        StatusCode::OK
    );
}

/// Validity dates count on every request too: a certificate that expires while its keep-alive
/// connection stays open is refused on that connection from then on.
#[test]
fn an_expired_certificate_stops_working_on_an_open_connection() {
    let s = TestServer::start();
    let bundle = std::fs::read_to_string(s.data().join("ca_crt.pem")).unwrap();
    let signing = pem::encode(&pem::parse_many(&bundle).unwrap()[0]);
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(s.data().join("ca_key.pem")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&signing, ca_key).unwrap();
    let now = time::OffsetDateTime::from(std::time::SystemTime::now());
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "short-lived.example.test");
    params.not_before = now - time::Duration::minutes(1);
    params.not_after = now + time::Duration::seconds(4);
    params.serial_number = Some(rcgen::SerialNumber::from(9_999_999u64));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (s.ca.path("short.pem"), s.ca.path("short.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mut conn = KeepAlive::open(&s, &As::Cert(cert_path, key_path));
    let (status, body) = conn.get("/puppet-ca/v1/expirations").unwrap();
    assert_eq!(status, StatusCode::OK, "while valid: {body}");
    std::thread::sleep(std::time::Duration::from_secs(6));
    match conn.get("/puppet-ca/v1/expirations") {
        Ok((status, body)) => {
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            assert!(body.contains("expired"), "{body}");
        }
        Err(e) => panic!("expected 403 on the open connection, got {e}"),
    }
}
