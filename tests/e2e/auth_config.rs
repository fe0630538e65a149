//! Access rules chosen by configuration: a puppetserver HOCON auth.conf, a Puppet 3 legacy auth.conf,
//! and `allow-header-cert-info` for a TLS-terminating proxy (off by default: spoofed headers do nothing).

use hyper::{Method, StatusCode};

use crate::server::{As, TestServer};

fn server_with_file(section_key: &str, contents: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.conf");
    std::fs::write(&file, contents).unwrap();
    (
        TestServer::start_with(&format!(
            "[authorization]\n{section_key} = \"{}\"\n",
            file.display()
        )),
        dir,
    )
}

#[test]
fn legacy_puppet3_auth_conf() {
    let (s, _dir) = server_with_file(
        "legacy-auth-conf",
        "# as old multi-master guides recommend\n\
         path /certificate_revocation_list\nauth any\nmethod find\nallow *\n\n\
         path /certificate_status\nmethod find, search, save, destroy\nallow ca-admin\n",
    );
    let a = s.identity("agent-l.example.test");
    assert_eq!(
        s.get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca")
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.get(&As::Anonymous, "/production/certificate_revocation_list/ca")
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca").status,
        StatusCode::OK
    );
    assert_eq!(
        s.get(&As::Admin, "/puppet-ca/v1/certificate_statuses/all").status,
        StatusCode::OK
    );
    assert_eq!(
        s.get(&a, "/puppet-ca/v1/certificate_statuses/all").status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.get(&As::Anonymous, "/puppet-ca/v1/certificate_statuses/all")
            .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(s.get(&As::Anonymous, "/status/v1/simple").status, StatusCode::OK);
}

#[test]
fn hocon_auth_conf_with_back_reference() {
    let (s, _dir) = server_with_file(
        "auth-conf",
        r#"authorization: {
  version: 1
  rules: [
    { match-request: { path: "^/puppet-ca/v1/certificate_status/([^/]+)$", type: regex, method: get }
      allow: "$1", sort-order: 400, name: "own status" },
    { match-request: { path: "/puppet-ca/v1/certificate_statuses", type: path, method: get }
      allow: { extensions: { pp_cli_auth: "true" } }, sort-order: 500, name: "admin list" },
    { match-request: { path: "/", type: path }, deny: "*", sort-order: 999, name: "deny all" }
  ]
}"#,
    );
    let a = s.identity("agent-h.example.test");
    assert_eq!(
        s.get(&a, "/puppet-ca/v1/certificate_status/agent-h.example.test")
            .status,
        StatusCode::OK
    );
    assert_eq!(
        s.get(&a, "/puppet-ca/v1/certificate_status/ca-admin").status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.get(&As::Admin, "/puppet-ca/v1/certificate_statuses/x").status,
        StatusCode::OK
    );
    assert_eq!(
        s.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca").status,
        StatusCode::FORBIDDEN,
        "the file replaces the defaults"
    );
}

fn proxy_headers(s: &TestServer) -> Vec<(String, String)> {
    let pem = std::fs::read_to_string(s.data().join("admin/cert.pem")).unwrap();
    let encoded = crate::harness::url_encode(&pem);
    vec![
        ("x-client-verify".into(), "SUCCESS".into()),
        ("x-client-dn".into(), "CN=ca-admin".into()),
        ("x-client-cert".into(), encoded),
    ]
}

#[test]
fn header_cert_info_only_when_enabled() {
    for (enabled, want) in [(false, StatusCode::FORBIDDEN), (true, StatusCode::OK)] {
        let s = TestServer::start_with(&format!(
            "[authorization]\nallow-header-cert-info = {enabled}\ntrusted-proxies = [\"127.0.0.1\"]\n"
        ));
        let h = proxy_headers(&s);
        let hv: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let a = s.send(
            &As::Anonymous,
            Method::GET,
            "/puppet-ca/v1/certificate_statuses/x",
            &hv,
            b"",
        );
        assert_eq!(a.status, want, "header mode {enabled}");
        if enabled {
            let bad = [
                ("x-client-verify", "SUCCESS"),
                ("x-client-dn", "CN=ca-admin"),
                ("x-client-cert", "%zz"),
            ];
            let a = s.send(
                &As::Anonymous,
                Method::GET,
                "/puppet-ca/v1/certificate_statuses/x",
                &bad,
                b"",
            );
            assert_eq!(a.status, StatusCode::BAD_REQUEST);
            let unverified = [("x-client-verify", "NONE"), ("x-client-dn", "CN=ca-admin")];
            let a = s.send(
                &As::Anonymous,
                Method::GET,
                "/puppet-ca/v1/certificate_statuses/x",
                &unverified,
                b"",
            );
            assert_eq!(a.status, StatusCode::FORBIDDEN);
        }
    }
}
