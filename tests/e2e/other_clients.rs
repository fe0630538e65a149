//! Requests other real clients of the CA API make, recorded from their sources and replayed with
//! curl, header for header: Foreman smart-proxy's `puppetca_http_api` provider
//! (theforeman/smart-proxy `modules/puppetca_http_api/ca_v1_api_request.rb` and
//! `modules/puppet_proxy_common/api_request.rb`), Choria enrolment (choria-io/go-choria
//! `providers/security/puppetsec/puppet_security.go`: `fetchCA`, `submitCSR`, `fetchCert`) and
//! camptocamp's go-puppetca (`puppetca/puppetca.go`: chunked PUT bodies, `text/pson`, 200/204 only,
//! and consumers that look for `Not Found` in the status line).

use std::path::Path;
use std::process::Command;

use crate::server::TestServer;

struct Reply {
    status_line: String,
    status: u16,
    headers: String,
    body: String,
}

/// One request with curl: `https://localhost:<port><path>`, the server's CA, the admin certificate
/// when `admin`, `-k` (no verification, no client certificate) when `insecure`, and `args` (headers,
/// method, body) as the recorded client sends them.
fn curl(s: &TestServer, admin: bool, insecure: bool, path: &str, args: &[&str]) -> Reply {
    let port = s.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let (hfile, bfile) = (dir.path().join("h"), dir.path().join("b"));
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http1.1", "--max-time", "20", "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg("-D")
        .arg(&hfile)
        .arg("-o")
        .arg(&bfile);
    if insecure {
        cmd.arg("-k");
    } else {
        cmd.arg("--cacert").arg(s.ca.ca_cert());
    }
    if admin {
        let d = s.data();
        cmd.arg("--cert")
            .arg(d.join("admin/cert.pem"))
            .arg("--key")
            .arg(d.join("admin/key.pem"));
    }
    cmd.args(args).arg(format!("https://localhost:{port}{path}"));
    let out = cmd.output().expect("curl (scripts/test installs it)");
    assert!(
        out.status.success(),
        "curl {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let headers = std::fs::read_to_string(&hfile).unwrap();
    let status_line = headers.lines().next().unwrap_or_default().trim().to_string();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply {
        status_line,
        status,
        headers: headers.to_ascii_lowercase(),
        body: std::fs::read_to_string(&bfile).unwrap_or_default(),
    }
}

/// A new key and CSR with `subject`, PEM.
fn csr(dir: &Path, name: &str, subject: &str) -> std::path::PathBuf {
    let (key, out) = (dir.join(format!("{name}.key")), dir.join(format!("{name}.csr")));
    let ok = Command::new("openssl")
        .args([
            "req", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256", "-subj", subject, "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&out)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl req");
    out
}

/// What Ruby's Net::HTTP sends besides the provider's own headers.
const RUBY: [&str; 6] = [
    "-H",
    "User-Agent: Ruby",
    "-H",
    "Accept-Encoding: gzip;q=1.0,deflate;q=0.6,identity;q=0.3",
    "-H",
    "Connection: close",
];

fn foreman(s: &TestServer, method: &str, path: &str, body: Option<&str>) -> Reply {
    let mut args: Vec<&str> = RUBY.to_vec();
    args.extend(["-X", method, "-H", "Accept: */*, application/json"]);
    if let Some(b) = body {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    curl(s, true, false, path, &args)
}

#[test]
fn foreman_smart_proxy_lists_signs_and_cleans() {
    let s = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "pending-1.example.test",
        "pending-2.example.test",
        "signed-1.example.test",
    ] {
        let f = csr(tmp.path(), name, &format!("/CN={name}"));
        s.ca.ca(&["submit", f.to_str().unwrap()]).ok();
    }
    s.ca.ca(&["sign", "signed-1.example.test"]).ok();

    // list: GET certificate_statuses/foreman, 200 with a JSON array only.
    let r = foreman(&s, "GET", "/puppet-ca/v1/certificate_statuses/foreman", None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers.contains("content-type: application/json"),
        "{}",
        r.headers
    );
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let find = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == n)
            .cloned()
            .unwrap()
    };
    let signed = find("signed-1.example.test");
    assert_eq!(signed["state"], "signed");
    assert!(signed["serial_number"].is_u64() && signed["fingerprint"].is_string());
    // Ruby's Time.parse reads `2031-11-28T10:00:00UTC`.
    let not_after = signed["not_after"].as_str().unwrap();
    assert!(
        not_after.len() == 22 && not_after.ends_with("UTC") && &not_after[10..11] == "T",
        "{not_after}"
    );
    assert_eq!(find("pending-1.example.test")["state"], "requested");

    // sign: PUT {"desired_state":"signed"} → 204 (200 with an empty or JSON body would do too).
    let r = foreman(
        &s,
        "PUT",
        "/puppet-ca/v1/certificate_status/pending-1.example.test",
        Some(r#"{"desired_state":"signed"}"#),
    );
    assert_eq!(r.status, 204, "{}", r.body);

    // clean = revoke (204, 404 or 409 accepted), then DELETE (204 or 404 accepted).
    let clean = |name: &str| -> (u16, u16) {
        let path = format!("/puppet-ca/v1/certificate_status/{name}");
        let revoke = foreman(&s, "PUT", &path, Some(r#"{"desired_state":"revoked"}"#));
        let delete = foreman(&s, "DELETE", &path, None);
        (revoke.status, delete.status)
    };
    assert_eq!(
        clean("pending-1.example.test"),
        (204, 204),
        "a signed certificate"
    );
    assert_eq!(clean("pending-2.example.test"), (409, 204), "a pending request");
    assert_eq!(clean("nobody.example.test"), (404, 404), "an unknown name");
    let listed = s.ca.ca(&["list", "--all"]).ok().stdout;
    assert!(
        !listed.contains("pending-1") && !listed.contains("pending-2"),
        "{listed}"
    );
}

#[test]
fn choria_enrolment_gets_exactly_200() {
    let s = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let name = "choria-node.example.test";
    let go = [
        "-H",
        "User-Agent: Go-http-client/1.1",
        "-H",
        "Accept-Encoding: gzip",
    ];
    let choria_ua = ["-H", "User-Agent: Choria Orchestrator - http://choria.io"];

    // fetchCA: no verification, no client certificate; exactly 200, PEM written verbatim.
    let r = curl(
        &s,
        false,
        true,
        "/puppet-ca/v1/certificate/ca?environment=production",
        &go,
    );
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("-----BEGIN CERTIFICATE-----"), "{}", r.body);

    // submitCSR: OU=choria.io before CN, Host without the port, exactly 200.
    let f = csr(tmp.path(), name, &format!("/OU=choria.io/CN={name}"));
    let mut args = vec![
        "-X",
        "PUT",
        "-H",
        "Host: localhost",
        "-H",
        "Content-Type: text/plain",
    ];
    args.extend(choria_ua);
    args.extend(["-H", "Accept-Encoding: gzip", "--data-binary"]);
    let at_file = format!("@{}", f.display());
    args.push(&at_file);
    let r = curl(
        &s,
        false,
        false,
        &format!("/puppet-ca/v1/certificate_request/{name}?environment=production"),
        &args,
    );
    assert_eq!(r.status, 200, "{}", r.body);

    // fetchCert polls until exactly 200 (404 while pending), with a Content-Type on the GET.
    let mut fetch = vec!["-H", "Content-Type: text/plain", "-H", "Accept-Encoding: gzip"];
    fetch.extend(choria_ua);
    let path = format!("/puppet-ca/v1/certificate/{name}?environment=production");
    assert_eq!(curl(&s, false, false, &path, &fetch).status, 404);
    s.ca.ca(&["sign", name]).ok();
    let r = curl(&s, false, false, &path, &fetch);
    assert_eq!(r.status, 200, "{}", r.body);
    let cert = tmp.path().join("cert.pem");
    std::fs::write(&cert, &r.body).unwrap();
    crate::harness::assert_verifies(&s.ca.ca_cert(), &cert);
    let (_, subject) =
        crate::harness::openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-subject"]);
    assert!(subject.contains(name), "{subject}");
}

#[test]
fn go_puppetca_sends_chunked_pson_and_reads_not_found() {
    let s = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let name = "tf-node.example.test";
    let go = [
        "-H",
        "User-Agent: Go-http-client/1.1",
        "-H",
        "Accept-Encoding: gzip",
    ];
    let chunked = ["-H", "Transfer-Encoding: chunked"];
    let cert_path = format!("/puppet-ca/v1/certificate/{name}?environment=production");

    // The terraform provider first asks for the certificate and looks for "Not Found".
    let r = curl(&s, true, false, &cert_path, &go);
    assert_eq!(r.status_line, "HTTP/1.1 404 Not Found");

    // SubmitRequest: chunked text/plain (no Content-Length), 200 or 204.
    let f = csr(tmp.path(), name, &format!("/CN={name}"));
    let at_file = format!("@{}", f.display());
    let mut args = vec![
        "-X",
        "PUT",
        "-H",
        "Content-Type: text/plain",
        "--data-binary",
        &at_file,
    ];
    args.extend(go);
    args.extend(chunked);
    let r = curl(
        &s,
        true,
        false,
        &format!("/puppet-ca/v1/certificate_request/{name}?environment=production"),
        &args,
    );
    assert!(matches!(r.status, 200 | 204), "{} {}", r.status_line, r.body);

    // GetRequest.
    let r = curl(
        &s,
        true,
        false,
        &format!("/puppet-ca/v1/certificate_request/{name}?environment=production"),
        &go,
    );
    assert_eq!(r.status, 200);
    assert!(r.body.contains("BEGIN CERTIFICATE REQUEST"));

    // SignRequest: chunked text/pson.
    let mut args = vec![
        "-X",
        "PUT",
        "-H",
        "Content-Type: text/pson",
        "--data-binary",
        r#"{"desired_state":"signed"}"#,
    ];
    args.extend(go);
    args.extend(chunked);
    let r = curl(
        &s,
        true,
        false,
        &format!("/puppet-ca/v1/certificate_status/{name}?environment=production"),
        &args,
    );
    assert!(matches!(r.status, 200 | 204), "{} {}", r.status_line, r.body);
    let r = curl(&s, true, false, &cert_path, &go);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("BEGIN CERTIFICATE"));

    // DeleteCertByName: 200 or 204; then the certificate is Not Found again.
    let mut args = vec!["-X", "DELETE"];
    args.extend(go);
    let r = curl(
        &s,
        true,
        false,
        &format!("/puppet-ca/v1/certificate_status/{name}?environment=production"),
        &args,
    );
    assert!(matches!(r.status, 200 | 204), "{}", r.status_line);
    assert_eq!(
        curl(&s, true, false, &cert_path, &go).status_line,
        "HTTP/1.1 404 Not Found"
    );
}
