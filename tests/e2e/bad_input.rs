//! Hostile and malformed input over HTTPS: every case gets its exact 4xx with a short plain-text message
//! (no panic text, no internals), leaves the CA's state as it was, and the server keeps serving.
//!
//! `bad_requests_table` is the table (bodies, paths, names, JSON, content types, methods, query strings);
//! the tests after it speak raw TLS where an HTTP client cannot say the bad thing (oversized header,
//! broken request line, a client that stops half-way through its headers or body, no TLS at all).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::fixture;
use crate::server::{As, TestServer};

/// The longest answer body we accept: messages are one line; the longest ones echo a hostile name,
/// which `names::printable` caps at 300 characters, plus the words around it.
const MAX_MESSAGE: usize = 400;

/// What must never reach a client: panic and debug output, internals, secrets.
const FORBIDDEN: [&str; 14] = [
    "panic",
    "Internal",
    "internal error",
    "RUST_BACKTRACE",
    "backtrace",
    "thread '",
    ".rs:",
    "src/",
    "Some(",
    "None",
    "Err(",
    "Ok(",
    "{ ",
    "-----BEGIN",
];

const PENDING: &str = "agent-rsa2048.example.test";
const SIGNED: &str = "agent-x.example.test";

fn csr(name: &str) -> Vec<u8> {
    std::fs::read(fixture(&format!("csr/{name}"))).unwrap()
}

/// A fresh CSR made with rcgen; `cn: None` gives an empty subject.
fn make_csr(cn: Option<&str>) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = cn {
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    }
    p.serialize_request(&key).unwrap().pem().unwrap().into_bytes()
}

/// One row: a request and the status it must get.
struct Case {
    what: String,
    who: As,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    /// A phrase the message must contain, when it matters which refusal it is.
    says: Option<&'static str>,
}

impl Case {
    fn new(what: impl Into<String>, who: As, method: Method, path: impl Into<String>, status: u16) -> Case {
        Case {
            what: what.into(),
            who,
            method,
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
            status,
            says: None,
        }
    }
    fn body(mut self, b: impl Into<Vec<u8>>) -> Case {
        self.body = b.into();
        self
    }
    /// Sets a header (replacing one of the same name).
    fn header(mut self, k: &'static str, v: impl Into<String>) -> Case {
        self.headers.retain(|(name, _)| *name != k);
        self.headers.push((k, v.into()));
        self
    }
    fn says(mut self, s: &'static str) -> Case {
        self.says = Some(s);
        self
    }
}

fn get(what: &str, path: impl Into<String>, status: u16) -> Case {
    Case::new(what, As::Anonymous, Method::GET, path, status)
}

fn admin(what: &str, method: Method, path: impl Into<String>, status: u16) -> Case {
    Case::new(what, As::Admin, method, path, status)
}

/// PUT certificate_request/<name> without a certificate, as an agent does.
fn submit(what: &str, name: &str, body: impl Into<Vec<u8>>, status: u16) -> Case {
    Case::new(
        what,
        As::Anonymous,
        Method::PUT,
        format!("/puppet-ca/v1/certificate_request/{name}"),
        status,
    )
    .header("content-type", "text/plain")
    .body(body)
}

/// PUT certificate_status/<name> as admin with a JSON body.
fn status_put(what: &str, name: &str, body: impl Into<Vec<u8>>, status: u16) -> Case {
    admin(
        what,
        Method::PUT,
        format!("/puppet-ca/v1/certificate_status/{name}"),
        status,
    )
    .header("content-type", "application/json")
    .body(body)
}

/// Everything the CA holds, one line per name (state, fingerprint, serial), as the admin lists it.
fn snapshot(s: &TestServer) -> String {
    let a = s.get(&As::Admin, "/puppet-ca/v1/certificate_statuses/any");
    assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {}\n",
                e["name"], e["state"], e["fingerprint"], e["serial_number"]
            )
        })
        .collect()
}

/// Why the body is not one short, clean line of text (no panic, no debug output, no internals).
fn message_problem(status: StatusCode, headers: &hyper::HeaderMap, body: &[u8]) -> Option<String> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // /sign answers a schema violation as puppetserver does: 422 with a small JSON object.
    let json_ok = status == StatusCode::UNPROCESSABLE_ENTITY && ct == "application/json";
    if !(ct.starts_with("text/plain") || json_ok) {
        return Some(format!("content-type {ct:?}"));
    }
    if body.is_empty() {
        return Some(format!("empty body for {status}"));
    }
    if body.len() > MAX_MESSAGE {
        return Some(format!(
            "{} bytes: {}",
            body.len(),
            short(&String::from_utf8_lossy(body))
        ));
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Some(format!("body not UTF-8: {body:?}"));
    };
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Some(format!("control characters in {text:?}"));
    }
    if text.trim_end().lines().count() != 1 {
        return Some(format!("more than one line: {text:?}"));
    }
    FORBIDDEN
        .iter()
        .find(|bad| text.contains(**bad))
        .map(|bad| format!("body contains {bad:?}: {text:?}"))
}

#[test]
fn bad_requests_table() {
    let s = TestServer::start();
    // State to protect: one pending request, one signed agent (whose key and cert serve as bodies).
    let put = s.send(
        &As::Anonymous,
        Method::PUT,
        &format!("/puppet-ca/v1/certificate_request/{PENDING}"),
        &[],
        &csr("rsa2048.pem"),
    );
    assert_eq!(put.status, StatusCode::OK);
    let out = s.ca.path("gen");
    s.ca.ca(&[
        "generate",
        SIGNED,
        "--key-type",
        "ec-p256",
        "--out",
        out.to_str().unwrap(),
    ])
    .ok();
    let agent_cert = std::fs::read(out.join(format!("certs/{SIGNED}.pem"))).unwrap();
    let agent_key = std::fs::read(out.join(format!("private_keys/{SIGNED}.pem"))).unwrap();
    let agent = As::Cert(
        out.join(format!("certs/{SIGNED}.pem")),
        out.join(format!("private_keys/{SIGNED}.pem")),
    );
    let before = snapshot(&s);
    assert!(before.contains(PENDING) && before.contains(SIGNED), "{before}");
    // A piece of the key's base64: no answer may echo it.
    let key_probe: String = String::from_utf8_lossy(&agent_key)
        .lines()
        .nth(1)
        .unwrap()
        .chars()
        .take(32)
        .collect();

    let ec = csr("ec-p256.pem"); // CN agent-ec.example.test
    let ec_name = "agent-ec.example.test";
    let half = csr("rsa2048.pem")[..csr("rsa2048.pem").len() / 2].to_vec();
    let der = pem::parse(&ec).unwrap().into_contents();
    let long = "a".repeat(256);
    let very_long = "b".repeat(4096);
    let big_json = |prefix: &str| {
        let mut b = format!("{prefix}\"pad\":\"").into_bytes();
        b.extend(std::iter::repeat_n(b'x', 1024 * 1024 + 10));
        b.extend(b"\"}");
        b
    };
    let deep = |n: usize| "[".repeat(n).into_bytes();

    let cases: Vec<Case> = vec![
        // --- CSR bodies ---
        submit("garbage CSR", ec_name, "garbage", 400).says("Could not parse the certificate request"),
        submit("empty CSR", ec_name, "", 400).says("The certificate request is empty"),
        submit("whitespace-only CSR", ec_name, " \r\n\t\n", 400).says("empty"),
        submit(
            "truncated DER in PEM",
            "agent-truncated.example.test",
            csr("truncated.pem"),
            400,
        )
        .says("Could not parse"),
        submit("PEM cut in half", PENDING, half, 400).says("Could not parse"),
        submit("CSR body over 64 KiB", ec_name, vec![b'A'; 64 * 1024 + 1], 413),
        submit("CSR body at exactly 64 KiB", ec_name, vec![b'A'; 64 * 1024], 400).says("Could not parse"),
        submit(
            "valid CSR padded beyond 64 KiB",
            ec_name,
            [ec.clone(), vec![b'\n'; 64 * 1024]].concat(),
            413,
        ),
        submit(
            "two CSRs",
            ec_name,
            [ec.clone(), csr("rsa2048.pem")].concat(),
            400,
        )
        .says("exactly one PEM"),
        submit(
            "CSR then certificate",
            ec_name,
            [ec.clone(), agent_cert.clone()].concat(),
            400,
        )
        .says("exactly one PEM"),
        submit(
            "CSR for another name",
            "agent-other.example.test",
            ec.clone(),
            400,
        )
        .says("does not match requested key"),
        submit(
            "CSR with trailing junk",
            ec_name,
            [ec.clone(), b"trailing junk\n".to_vec()].concat(),
            400,
        ),
        submit(
            "CSR with leading junk",
            ec_name,
            [b"junk\n".to_vec(), ec.clone()].concat(),
            400,
        ),
        submit("certificate instead of a CSR", SIGNED, agent_cert.clone(), 400)
            .says("expected a CERTIFICATE REQUEST"),
        submit("private key instead of a CSR", SIGNED, agent_key.clone(), 400)
            .says("expected a CERTIFICATE REQUEST"),
        submit("DER instead of PEM", ec_name, der.clone(), 400).says("Could not parse"),
        submit("NUL bytes", ec_name, vec![0u8; 512], 400).says("Could not parse"),
        submit(
            "binary noise",
            ec_name,
            (0..=255u8).cycle().take(2000).collect::<Vec<u8>>(),
            400,
        )
        .says("Could not parse"),
        submit(
            "non-UTF-8 body",
            ec_name,
            b"\xff\xfe-----BEGIN CERTIFICATE REQUEST-----\xc3\x28".to_vec(),
            400,
        )
        .says("Could not parse"),
        submit(
            "PEM armour around bad base64",
            ec_name,
            "-----BEGIN CERTIFICATE REQUEST-----\n!!!not base64!!!\n-----END CERTIFICATE REQUEST-----\n",
            400,
        )
        .says("Could not parse"),
        submit(
            "PEM armour around random DER",
            ec_name,
            "-----BEGIN CERTIFICATE REQUEST-----\nMIIBAAAAAAAAAAAA\n-----END CERTIFICATE REQUEST-----\n",
            400,
        )
        .says("Could not parse"),
        submit(
            "bad self-signature",
            "agent-badsig.example.test",
            csr("bad-signature.pem"),
            400,
        )
        .says("does not correspond to the signing key"),
        submit(
            "CSR without a subject CN",
            "nocn.example.test",
            make_csr(None),
            400,
        )
        .says("no subject CN"),
        submit("already pending", PENDING, csr("rsa2048.pem"), 400)
            .says("already has a requested certificate"),
        submit("already signed", SIGNED, make_csr(Some(SIGNED)), 400)
            .says("already has a signed certificate"),
        // --- names in the URL ---
        submit(
            "uppercase name",
            "Agent-Upper.example.test",
            csr("uppercase.pem"),
            400,
        )
        .says("Certificate names must be lower case."),
        submit("wildcard name", "*.example.test", csr("wildcard-cn.pem"), 400)
            .says("Subject contains a wildcard"),
        submit(
            "bad name syntax",
            "bad..name.example.test",
            csr("bad-syntax.pem"),
            400,
        )
        .says("Subject hostname format is invalid"),
        submit("256-character name", &long, make_csr(Some(&long)), 400)
            .says("Subject hostname format is invalid"),
        submit(
            "4096-character name, CSR for another",
            &very_long,
            ec.clone(),
            400,
        )
        .says("does not match requested key"),
        submit("non-ASCII name", "%C3%A9", make_csr(Some("é")), 400)
            .says("Subject hostname format is invalid"),
        submit("name with an encoded slash", "a%2Fb", make_csr(Some("a/b")), 404).says("Not Found"),
        get(
            "256-character name",
            format!("/puppet-ca/v1/certificate/{long}"),
            404,
        )
        .says("Could not find certificate"),
        get(
            "4096-character name",
            format!("/puppet-ca/v1/certificate/{very_long}"),
            404,
        )
        .says("Could not find certificate"),
        get("non-ASCII name", "/puppet-ca/v1/certificate/%C3%A9", 404).says("Could not find certificate é"),
        get(
            "uppercase of a signed name",
            "/puppet-ca/v1/certificate/AGENT-X.EXAMPLE.TEST",
            404,
        ),
        get("wildcard name", "/puppet-ca/v1/certificate/*.example.test", 404),
        get("wildcard CSR name", "/puppet-ca/v1/certificate_request/*", 404),
        admin(
            "status of an uppercase name",
            Method::GET,
            "/puppet-ca/v1/certificate_status/CA-ADMIN",
            404,
        ),
        admin(
            "delete an uppercase name",
            Method::DELETE,
            "/puppet-ca/v1/certificate_status/CA-ADMIN",
            404,
        ),
        admin(
            "delete a wildcard",
            Method::DELETE,
            "/puppet-ca/v1/certificate_status/*",
            404,
        ),
        status_put("revoke a wildcard", "*", r#"{"desired_state":"revoked"}"#, 404),
        status_put(
            "revoke a non-ASCII name",
            "%C3%A9",
            r#"{"desired_state":"revoked"}"#,
            404,
        ),
        // --- paths ---
        get("dot-dot segment", "/puppet-ca/v1/certificate/..", 400).says("Invalid path"),
        get("dot segment", "/puppet-ca/v1/certificate/.", 400).says("Invalid path"),
        get("traversal", "/puppet-ca/v1/certificate/../../../etc/passwd", 400).says("Invalid path"),
        get(
            "encoded traversal",
            "/puppet-ca/v1/certificate/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            400,
        ),
        get(
            "uppercase-encoded traversal",
            "/puppet-ca/v1/certificate/%2E%2E/ca",
            400,
        )
        .says("Invalid path"),
        get(
            "traversal to the admin API",
            "/puppet-ca/v1/certificate/..%2Fcertificate_statuses%2Fany",
            400,
        ),
        get("legacy traversal", "/%2e%2e/certificate/ca", 400).says("Invalid path"),
        get("encoded slash in a name", "/puppet-ca/v1/certificate/a%2Fb", 404).says("Not Found"),
        get(
            "encoded slash is no way around the rules",
            "/puppet-ca/v1/certificate_status%2Fca-admin",
            403,
        )
        .says("Forbidden request: /puppet-ca/v1/certificate_status/ca-admin"),
        get(
            "double-encoded traversal is a name",
            "/puppet-ca/v1/certificate/%252e%252e%252fca",
            404,
        )
        .says("Could not find certificate %2e%2e%2fca"),
        admin(
            "double-encoded status name",
            Method::GET,
            "/puppet-ca/v1/certificate_status/%252e%252e",
            404,
        ),
        get("NUL in the path", "/puppet-ca/v1/certificate/a%00b", 400).says("Invalid path"),
        get("newline in the path", "/puppet-ca/v1/certificate/a%0ab", 400).says("Invalid path"),
        get(
            "header injection in the path",
            "/puppet-ca/v1/certificate/a%0d%0aX-Evil:%20yes",
            400,
        ),
        get("DEL in the path", "/puppet-ca/v1/certificate/a%7fb", 400).says("Invalid path"),
        get(
            "escape sequence in the path",
            "/puppet-ca/v1/certificate/%1b[31mred",
            400,
        ),
        get(
            "C1 control in the path",
            "/puppet-ca/v1/certificate/a%c2%85b",
            400,
        ),
        get("bad escape", "/puppet-ca/v1/certificate/%zz", 400).says("Invalid URL encoding"),
        get("lone percent", "/puppet-ca/v1/certificate/%", 400).says("Invalid URL encoding"),
        get("short escape", "/puppet-ca/v1/certificate/%4", 400).says("Invalid URL encoding"),
        get("invalid UTF-8 escape", "/puppet-ca/v1/certificate/%ff", 400).says("Invalid URL encoding"),
        get("truncated UTF-8 escape", "/puppet-ca/v1/certificate/%c3", 400),
        get(
            "overlong UTF-8 dots",
            "/puppet-ca/v1/certificate/%c0%ae%c0%ae",
            400,
        ),
        get("UTF-16 surrogate", "/puppet-ca/v1/certificate/%ed%a0%80", 400),
        get("empty name", "/puppet-ca/v1/certificate/", 404).says("Not Found"),
        get("double slash", "//puppet-ca/v1/certificate/ca", 403),
        admin(
            "statuses without a key",
            Method::GET,
            "/puppet-ca/v1/certificate_statuses/",
            400,
        )
        .says("Missing URL Segment"),
        // --- certificate_status PUT ---
        status_put("not JSON", SIGNED, "{", 400).says("Request body is not JSON."),
        status_put("empty JSON body", SIGNED, "", 400).says("Empty request body."),
        status_put("JSON array", SIGNED, "[]", 400).says("Missing required parameter"),
        status_put("JSON string", SIGNED, "\"revoked\"", 400).says("Missing required parameter"),
        status_put("JSON null", SIGNED, "null", 400).says("Missing required parameter"),
        status_put("numeric state", SIGNED, r#"{"desired_state":1}"#, 400).says("State 1 invalid"),
        status_put("unknown state", SIGNED, r#"{"desired_state":"deleted"}"#, 400).says("invalid"),
        status_put(
            "negative TTL",
            PENDING,
            r#"{"desired_state":"signed","cert_ttl":-5}"#,
            400,
        )
        .says("must be an integer"),
        status_put(
            "fractional TTL",
            PENDING,
            r#"{"desired_state":"signed","cert_ttl":1.5}"#,
            400,
        ),
        status_put(
            "TTL beyond 64 bits",
            PENDING,
            r#"{"desired_state":"signed","cert_ttl":99999999999999999999}"#,
            400,
        ),
        status_put(
            "TTL past year 9999",
            PENDING,
            r#"{"desired_state":"signed","cert_ttl":9223372036854775807}"#,
            400,
        ),
        status_put(
            "unknown revocation reason",
            SIGNED,
            r#"{"desired_state":"revoked","reason":"bogus"}"#,
            400,
        ),
        status_put(
            "revoke a pending request",
            PENDING,
            r#"{"desired_state":"revoked"}"#,
            409,
        )
        .says("without a signed certificate"),
        status_put(
            "sign without a request",
            SIGNED,
            r#"{"desired_state":"signed"}"#,
            409,
        )
        .says("without a certificate request"),
        status_put("deeply nested JSON", SIGNED, deep(100_000), 400).says("Request body is not JSON."),
        status_put(
            "invalid UTF-8 in JSON",
            SIGNED,
            b"{\"desired_state\":\"\xff\"}".to_vec(),
            400,
        ),
        status_put(
            "JSON over 1 MiB",
            SIGNED,
            big_json(r#"{"desired_state":"revoked","#),
            413,
        ),
        status_put("HTML content type", SIGNED, r#"{"desired_state":"revoked"}"#, 415)
            .header("content-type", "text/html")
            .says("Unsupported media type."),
        status_put("form content type", SIGNED, r#"{"desired_state":"revoked"}"#, 415)
            .header("content-type", "application/x-www-form-urlencoded"),
        admin(
            "unacceptable Accept",
            Method::GET,
            format!("/puppet-ca/v1/certificate_status/{SIGNED}"),
            406,
        )
        .header("accept", "text/html"),
        // --- /sign, /clean, CRL upload ---
        admin("sign: not JSON", Method::POST, "/puppet-ca/v1/sign", 400)
            .body("certnames=a")
            .says("Request body is not JSON."),
        admin(
            "sign: certnames not a list",
            Method::POST,
            "/puppet-ca/v1/sign",
            422,
        )
        .body(format!(r#"{{"certnames":"{PENDING}"}}"#)),
        admin(
            "sign: certnames of numbers",
            Method::POST,
            "/puppet-ca/v1/sign",
            422,
        )
        .body(r#"{"certnames":[1,2]}"#),
        admin("sign: no certnames", Method::POST, "/puppet-ca/v1/sign", 422).body("{}"),
        admin("sign: deeply nested", Method::POST, "/puppet-ca/v1/sign", 400).body(deep(100_000)),
        admin("sign: over 1 MiB", Method::POST, "/puppet-ca/v1/sign", 413)
            .body(big_json(&format!(r#"{{"certnames":["{PENDING}"],"#))),
        admin("clean: not JSON", Method::PUT, "/puppet-ca/v1/clean", 400)
            .body(b"\x00\x01\x02".to_vec())
            .says("Request body is not JSON."),
        admin("clean: no certnames", Method::PUT, "/puppet-ca/v1/clean", 400)
            .body("{}")
            .says("Missing required key: 'certnames'"),
        admin(
            "clean: certnames not a list",
            Method::PUT,
            "/puppet-ca/v1/clean",
            400,
        )
        .body(format!(r#"{{"certnames":"{SIGNED}"}}"#)),
        admin("clean: async", Method::PUT, "/puppet-ca/v1/clean", 400)
            .body(format!(r#"{{"certnames":["{SIGNED}"],"async":true}}"#))
            .says("Async mode is not currently supported."),
        admin("clean: over 1 MiB", Method::PUT, "/puppet-ca/v1/clean", 413)
            .body(big_json(&format!(r#"{{"certnames":["{SIGNED}"],"#))),
        admin(
            "CRL upload: garbage",
            Method::PUT,
            "/puppet-ca/v1/certificate_revocation_list",
            400,
        )
        .body("garbage")
        .says("No valid CRLs submitted."),
        admin(
            "CRL upload: a certificate",
            Method::PUT,
            "/puppet-ca/v1/certificate_revocation_list",
            400,
        )
        .body(agent_cert.clone()),
        // --- methods (the authorization layer answers first: 403 unless a rule allows the method) ---
        Case::new(
            "PATCH certificate",
            As::Anonymous,
            Method::PATCH,
            "/puppet-ca/v1/certificate/ca",
            403,
        )
        .says("Forbidden request: /puppet-ca/v1/certificate/ca (method :patch)"),
        Case::new(
            "POST certificate",
            As::Anonymous,
            Method::POST,
            "/puppet-ca/v1/certificate/ca",
            403,
        ),
        admin(
            "DELETE certificate",
            Method::DELETE,
            "/puppet-ca/v1/certificate/ca",
            403,
        ),
        admin(
            "POST certificate_status",
            Method::POST,
            format!("/puppet-ca/v1/certificate_status/{SIGNED}"),
            403,
        ),
        admin(
            "PATCH certificate_status",
            Method::PATCH,
            format!("/puppet-ca/v1/certificate_status/{SIGNED}"),
            403,
        ),
        // "puppetlabs cert status" is a prefix rule that also covers certificate_statuses (as upstream):
        // the admin gets through to the resource, which allows GET only.
        admin(
            "DELETE certificate_statuses",
            Method::DELETE,
            "/puppet-ca/v1/certificate_statuses/any",
            405,
        )
        .says("Method not allowed."),
        admin("GET clean", Method::GET, "/puppet-ca/v1/clean", 403),
        admin("GET sign", Method::GET, "/puppet-ca/v1/sign", 403),
        admin("PUT sign/all", Method::PUT, "/puppet-ca/v1/sign/all", 403),
        Case::new("PUT status", As::Anonymous, Method::PUT, "/status/v1/simple", 403),
        Case::new(
            "OPTIONS",
            As::Anonymous,
            Method::OPTIONS,
            "/puppet-ca/v1/certificate/ca",
            403,
        ),
        Case::new(
            "TRACE",
            As::Anonymous,
            Method::TRACE,
            "/puppet-ca/v1/certificate/ca",
            403,
        ),
        Case::new(
            "made-up method",
            As::Anonymous,
            Method::from_bytes(b"FROB").unwrap(),
            "/puppet-ca/v1/certificate/ca",
            403,
        )
        .says("(method :frob)"),
        Case::new(
            "DELETE a CSR as its agent",
            agent.clone(),
            Method::DELETE,
            format!("/puppet-ca/v1/certificate_request/{PENDING}"),
            403,
        ),
        // --- query strings ---
        admin(
            "explain=maybe",
            Method::GET,
            format!("/puppet-ca/v1/certificate_status/{PENDING}?explain=maybe"),
            400,
        ),
        admin(
            "explain=%zz",
            Method::GET,
            format!("/puppet-ca/v1/certificate_status/{PENDING}?explain=%zz"),
            400,
        ),
        admin(
            "repeated explain",
            Method::GET,
            format!("/puppet-ca/v1/certificate_status/{PENDING}?explain=true&explain=false"),
            400,
        ),
        admin(
            "alt-names flag not a bool",
            Method::GET,
            format!("/puppet-ca/v1/certificate_status/{PENDING}?explain=true&allow-dns-alt-names=2"),
            400,
        ),
        admin(
            "explain for nobody",
            Method::GET,
            "/puppet-ca/v1/certificate_status/nobody?explain=true",
            404,
        ),
        get(
            "query cannot open the admin API",
            "/puppet-ca/v1/certificate_statuses/any?pp_cli_auth=true",
            403,
        ),
    ];
    assert!(cases.len() >= 50, "{} cases", cases.len());

    let mut failures = Vec::new();
    let mut last = before.clone();
    for c in &cases {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let shown = format!("{} ({} {})", c.what, c.method, short(&c.path));
        match s.try_send(&c.who, c.method.clone(), &c.path, &headers, &c.body) {
            Err(e) => failures.push(format!("{shown}: no answer: {e}")),
            Ok(a) if a.status.as_u16() != c.status => {
                failures.push(format!(
                    "{shown}: {} (wanted {}): {}",
                    a.status,
                    c.status,
                    short(&a.text())
                ));
            }
            Ok(a) => {
                if let Some(p) = message_problem(a.status, &a.headers, &a.body) {
                    failures.push(format!("{shown}: {p}"));
                } else if a.text().contains(&key_probe) {
                    failures.push(format!("{shown}: the answer echoes the private key"));
                } else if let Some(needle) = c.says.filter(|n| !a.text().contains(n)) {
                    failures.push(format!("{shown}: {:?} lacks {needle:?}", a.text()));
                }
            }
        }
        let now = snapshot(&s);
        if now != last {
            failures.push(format!("{shown}: the state changed:\n{last}->\n{now}"));
            last = now;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(snapshot(&s), before, "state unchanged");
    assert!(!s.ca.holds(ec_name) && !s.ca.holds("agent-other.example.test"));
    let ca = s.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca");
    assert_eq!(ca.status, StatusCode::OK, "still serving");
    assert_eq!(s.get(&agent, "/puppet-ca/v1/expirations").status, StatusCode::OK);
}

fn short(s: &str) -> String {
    if s.len() <= 120 {
        s.to_string()
    } else {
        let mut end = 120;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…({} bytes)", &s[..end], s.len())
    }
}

// ---------------------------------------------------------------------------------------------------
// Raw TLS: what an HTTP client will not send.

/// What came back on a raw connection.
#[derive(Debug)]
struct Raw {
    bytes: Vec<u8>,
    /// The server closed the connection (EOF or reset) before the read deadline.
    closed: bool,
    /// When the server closed, from the end of our last write.
    after: Duration,
}

impl Raw {
    fn status(&self) -> Option<u16> {
        let text = String::from_utf8_lossy(&self.bytes);
        let line = text.lines().next()?;
        line.strip_prefix("HTTP/1.1 ")
            .or_else(|| line.strip_prefix("HTTP/1.0 "))?
            .get(..3)?
            .parse()
            .ok()
    }

    /// An error status the server chose, or a closed connection: never a 5xx.
    #[track_caller]
    fn assert_refused(&self, what: &str) {
        match self.status() {
            Some(st) => assert!((400..500).contains(&st), "{what}: {st}: {self:?}"),
            None => assert!(
                self.closed && self.bytes.is_empty(),
                "{what}: neither an answer nor a close: {self:?}"
            ),
        }
    }
}

fn tls_config(s: &TestServer) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(s.ca.ca_cert()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Reads until the server closes or `wait` passes.
async fn read_until_close<R: AsyncReadExt + Unpin>(r: &mut R, wait: Duration) -> Raw {
    let start = Instant::now();
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let left = wait.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, r.read(&mut buf)).await {
            Err(_) => {
                return Raw {
                    bytes,
                    closed: false,
                    after: start.elapsed(),
                }
            }
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Raw {
                    bytes,
                    closed: true,
                    after: start.elapsed(),
                }
            }
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
}

/// Opens TLS (no client certificate), writes `parts` in order with `pause` between them, then reads.
fn raw_tls(s: &TestServer, parts: &[&[u8]], pause: Duration, wait: Duration) -> Raw {
    let config = tls_config(s);
    let addr = s.addr;
    rt().block_on(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .unwrap();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(pause).await;
            }
            if tls.write_all(p).await.is_err() || tls.flush().await.is_err() {
                break;
            }
        }
        read_until_close(&mut tls, wait).await
    })
}

fn ca_path(s: &TestServer) -> PathBuf {
    s.ca.ca_cert()
}

/// Closes the loop on the raw tests: the server still answers a normal request.
#[track_caller]
fn assert_still_serving(s: &TestServer) {
    let a = s.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca");
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.text(), std::fs::read_to_string(ca_path(s)).unwrap());
}

#[test]
fn oversized_and_malformed_requests_on_the_wire() {
    let s = TestServer::start();
    let before = snapshot(&s);

    // A 100 KiB header through a normal client: 431, never served and never a 5xx. A 20 KiB one (a
    // proxy's X-Client-Cert is a few KiB) is still fine.
    let big = "x".repeat(100 * 1024);
    let a = s
        .try_send(
            &As::Anonymous,
            Method::GET,
            "/puppet-ca/v1/certificate/ca",
            &[("x-padding", &big)],
            b"",
        )
        .expect("an answer");
    assert_eq!(a.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(message_problem(a.status, &a.headers, &a.body), None);
    let fine = "x".repeat(20 * 1024);
    let a = s.send(
        &As::Anonymous,
        Method::GET,
        "/puppet-ca/v1/certificate/ca",
        &[("x-padding", &fine)],
        b"",
    );
    assert_eq!(a.status, StatusCode::OK);
    // The same as many small headers.
    let mut many = b"GET /puppet-ca/v1/certificate/ca HTTP/1.1\r\nhost: localhost\r\n".to_vec();
    for i in 0..2000 {
        many.extend(format!("x-h{i}: {}\r\n", "y".repeat(40)).as_bytes());
    }
    many.extend(b"connection: close\r\n\r\n");
    let r = raw_tls(&s, &[&many], Duration::ZERO, Duration::from_secs(5));
    eprintln!("2000 headers: {:?}, closed: {}", r.status(), r.closed);
    r.assert_refused("2000 headers");

    let uri = format!(
        "GET /puppet-ca/v1/certificate/{} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
        "u".repeat(100 * 1024)
    );
    let r = raw_tls(&s, &[uri.as_bytes()], Duration::ZERO, Duration::from_secs(5));
    eprintln!("100 KiB URI: {:?}, closed: {}", r.status(), r.closed);
    r.assert_refused("100 KiB URI");

    let wire: [(&str, &[u8]); 8] = [
        ("garbage request line", b"HELLO THERE\r\n\r\n"),
        ("binary request line", b"\x00\x01\x02\x03\xff\xfe\r\n\r\n"),
        (
            "raw NUL in the path",
            b"GET /puppet-ca/v1/certificate/a\x00b HTTP/1.1\r\nhost: localhost\r\n\r\n",
        ),
        (
            "raw space in the path",
            b"GET /puppet-ca/v1/certificate/a b HTTP/1.1\r\nhost: localhost\r\n\r\n",
        ),
        (
            "unknown HTTP version",
            b"GET /puppet-ca/v1/certificate/ca HTTP/9.9\r\nhost: localhost\r\n\r\n",
        ),
        (
            "bad Content-Length",
            b"PUT /puppet-ca/v1/certificate_request/a HTTP/1.1\r\nhost: localhost\r\ncontent-length: abc\r\n\r\n",
        ),
        (
            "two Content-Lengths",
            b"PUT /puppet-ca/v1/certificate_request/a HTTP/1.1\r\nhost: localhost\r\ncontent-length: 3\r\ncontent-length: 5\r\n\r\nabcde",
        ),
        (
            "header without a colon",
            b"GET /puppet-ca/v1/certificate/ca HTTP/1.1\r\nhost: localhost\r\nno colon here\r\n\r\n",
        ),
    ];
    for (what, req) in wire {
        let r = raw_tls(&s, &[req], Duration::ZERO, Duration::from_secs(5));
        eprintln!("{what}: {:?}, closed: {}", r.status(), r.closed);
        r.assert_refused(what);
        assert!(
            r.closed,
            "{what}: the connection stays open after a parse error: {r:?}"
        );
    }

    // Broken chunked framing in the body: a 400 (the body is malformed, not too large).
    let bad_chunk = b"PUT /puppet-ca/v1/certificate_request/a.example.test HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n";
    let r = raw_tls(&s, &[bad_chunk], Duration::ZERO, Duration::from_secs(5));
    assert_eq!(r.status(), Some(400), "{}", String::from_utf8_lossy(&r.bytes));
    assert!(
        String::from_utf8_lossy(&r.bytes).ends_with("Could not read the request body"),
        "{r:?}"
    );

    // A chunked CSR body past 64 KiB: 413 from the body cap, whatever the framing.
    let mut chunked =
        b"PUT /puppet-ca/v1/certificate_request/big.example.test HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            .to_vec();
    for _ in 0..80 {
        chunked.extend(b"400\r\n");
        chunked.extend(vec![b'A'; 1024]);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let r = raw_tls(&s, &[&chunked], Duration::ZERO, Duration::from_secs(5));
    assert_eq!(r.status(), Some(413), "{}", String::from_utf8_lossy(&r.bytes));

    // A non-UTF-8 content type is not taken for JSON.
    let body = br#"{"desired_state":"revoked"}"#;
    let mut req = format!(
        "PUT /puppet-ca/v1/certificate_status/ca-admin HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\nconnection: close\r\ncontent-type: ",
        body.len()
    )
    .into_bytes();
    req.extend(b"application/\xffjson\r\n\r\n");
    req.extend(body);
    let r = raw_tls(&s, &[&req], Duration::ZERO, Duration::from_secs(5));
    assert_eq!(
        r.status(),
        Some(403),
        "anonymous: {}",
        String::from_utf8_lossy(&r.bytes)
    );

    // Not TLS at all, and a broken ClientHello: the handshake fails, the server carries on.
    let plain = rt().block_on(async {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(b"GET /puppet-ca/v1/certificate/ca HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .unwrap();
        read_until_close(&mut tcp, Duration::from_secs(5)).await
    });
    assert!(plain.closed, "plain HTTP on the TLS port: {plain:?}");
    assert!(!String::from_utf8_lossy(&plain.bytes).contains("200"));
    let hello = rt().block_on(async {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        // A complete handshake record (4000 bytes) of nonsense.
        let mut junk = vec![0x16, 0x03, 0x01, 0x0f, 0xa0];
        junk.extend((0..=255u8).cycle().take(4000));
        let _ = tcp.write_all(&junk).await;
        read_until_close(&mut tcp, Duration::from_secs(5)).await
    });
    assert!(hello.closed, "broken ClientHello: {hello:?}");

    assert_eq!(snapshot(&s), before, "state unchanged");
    assert_still_serving(&s);
}

#[test]
fn slow_clients_are_cut_off() {
    let s = TestServer::start_with("[limits]\nheader-read-timeout = \"1s\"\nrequest-timeout = \"2s\"\n");
    let before = snapshot(&s);

    // Half a request line, then silence: closed after the header-read timeout.
    let r = raw_tls(
        &s,
        &[b"GET /puppet-ca/v1/certif"],
        Duration::ZERO,
        Duration::from_secs(8),
    );
    assert!(r.closed, "partial request line: still open after 8 s: {r:?}");
    assert!(
        r.after >= Duration::from_millis(800) && r.after < Duration::from_secs(5),
        "closed after {:?}",
        r.after
    );
    eprintln!(
        "partial request line: {:?}, closed after {:?}",
        r.status(),
        r.after
    );
    r.assert_refused("partial request line");

    // Headers that never end, trickled byte by byte well past the timeout in total.
    let trickle: Vec<&[u8]> =
        b"GET /puppet-ca/v1/certificate/ca HTTP/1.1\r\nhost: localhost\r\nx-slow: aaaaaaaaaaaa"
            .chunks(4)
            .collect();
    let start = Instant::now();
    let r = raw_tls(&s, &trickle, Duration::from_millis(150), Duration::from_secs(6));
    assert!(r.closed, "trickled headers: still open: {r:?}");
    assert!(start.elapsed() < Duration::from_secs(8), "{:?}", start.elapsed());
    r.assert_refused("trickled headers");

    // An idle connection that never sends anything (TLS done, no request).
    let r = raw_tls(&s, &[], Duration::ZERO, Duration::from_secs(8));
    assert!(r.closed && r.after < Duration::from_secs(5), "idle: {r:?}");
    assert!(r.bytes.is_empty(), "{r:?}");

    // Complete headers, a body that stops half-way: the request timeout answers 408.
    let csr = csr("ec-p256.pem");
    let head = format!(
        "PUT /puppet-ca/v1/certificate_request/agent-ec.example.test HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        csr.len()
    );
    let r = raw_tls(
        &s,
        &[head.as_bytes(), &csr[..csr.len() / 2]],
        Duration::from_millis(50),
        Duration::from_secs(8),
    );
    assert_eq!(r.status(), Some(408), "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.bytes).ends_with("Request timed out"),
        "{r:?}"
    );
    assert!(!s.ca.holds("agent-ec.example.test"));

    assert_eq!(snapshot(&s), before, "state unchanged");
    assert_still_serving(&s);
}
