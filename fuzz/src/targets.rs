//! The fuzz targets' bodies, one function each. `fuzz_targets/*.rs` hand them to libFuzzer; the
//! workspace's test suite runs them too (`tests/e2e/fuzz_smoke.rs`: every seed and a few thousand
//! mutations of them per target), so a short smoke run of every target is part of the test command.
//! Each one panics on a finding.

use ca_server::ca::csr;
use ca_server::ca::names::{self, MAX_CERTNAME_LEN};
use ca_server::http::legacy;
use ca_server::policy::access::AccessRules;
use ca_server::policy::autosign::AllowList;
use ca_server::policy::signing::{check, evaluate, AltNameRule, SigningOptions, SigningPolicy};
use http::Method;

const PERMISSIVE: SigningOptions = SigningOptions {
    allow_dns_alt_names: true,
    allow_authorization_extensions: true,
};

fn policies() -> [SigningPolicy; 2] {
    let ruled = SigningPolicy {
        global: SigningOptions::default(),
        rules: vec![AltNameRule {
            label: "fuzz".into(),
            certnames: ca_server::policy::signing::CertnameGlob::new("*.example.*").expect("a glob"),
            allow: vec![
                "DNS:puppet".into(),
                "DNS:*.example.test".into(),
                "IP:192.0.2.10".into(),
            ],
            authorization_extensions: vec!["pp_auth_role".into(), "1.3.6.1.4.1.34380.1.3.1".into()],
        }],
    };
    [SigningPolicy::default(), ruled]
}

/// CSR bodies: `csr::parse` (PEM, as submitted) and `csr::parse_der`, then the signing policy on
/// whatever parses. What parses must re-encode to PEM that parses to the same request.
pub fn csr(data: &[u8]) {
    for parsed in [csr::parse(data), csr::parse_der(data)] {
        let Ok(c) = parsed else {
            continue;
        };
        for policy in policies() {
            for flags in [PERMISSIVE, SigningOptions::default()] {
                let verdict = check(&c, &policy, flags);
                let e = evaluate(&c, &policy, flags);
                assert_eq!(e.sans.len(), c.sans.len());
                assert_eq!(e.extensions.len(), c.extensions.len());
                assert_eq!(verdict.is_ok(), e.result.is_ok());
                if let Ok(permit) = verdict {
                    assert_eq!(permit.certname(), c.common_name);
                }
            }
        }
        let again = csr::parse(c.pem.as_bytes()).expect("the stored PEM parses");
        assert_eq!(again.der, c.der);
        assert_eq!(again.common_name, c.common_name);
        assert_eq!(again.sans, c.sans);
    }
}

/// puppetserver HOCON auth.conf: parse, then decide requests (the file's own paths, or written ones).
pub fn hocon_auth(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (conf, reqs) = super::requests(text);
    if let Ok(rules) = AccessRules::from_hocon(conf) {
        assert!(!rules.is_legacy());
        super::exercise(&rules, &reqs);
    }
}

/// Puppet 3 auth.conf: parse, then decide requests (the file's own paths, or written ones).
pub fn legacy_auth(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (conf, reqs) = super::requests(text);
    if let Ok(rules) = AccessRules::from_legacy(conf) {
        assert!(rules.is_legacy());
        assert!(!rules.allow_header_cert_info());
        super::exercise(&rules, &reqs);
    }
}

const NAMES: [&str; 8] = [
    "agent1.example.com",
    "a.b.example.com",
    "example.com",
    "badexample.com",
    "",
    ".",
    "*",
    "AGENT1.EXAMPLE.COM",
];

/// autosign.conf allow-lists: parse, then match fixed names and the file's own lines.
pub fn autosign_conf(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let list = AllowList::parse(text);
    let lines = text.lines().count();
    for (n, line) in &list.invalid {
        assert!(*n >= 1 && *n <= lines, "line {n} of {lines}");
        assert!(line.contains('#') || line.contains(' ') || line.contains('\t'));
    }
    for name in NAMES.iter().copied().chain(text.lines().take(256)) {
        if let Some(entry) = list.matching(name) {
            assert!(text.contains(entry), "{entry:?} is not in the file");
        }
    }
    // Every valid exact entry matches itself.
    for raw in text.lines().take(256) {
        let line = raw.trim_end_matches('\r').trim();
        let valid = !line.is_empty()
            && !line.starts_with('#')
            && !line.contains('#')
            && !line.contains(' ')
            && !line.contains('\t');
        if valid && !line.starts_with('*') {
            assert!(list.matching(line).is_some(), "{line:?} does not match itself");
        }
    }
}

/// Certname rules: what `validate_certname` accepts is safe as a storage key, a path segment and a
/// log word; `validate_subject` agrees with it; messages carry no control characters.
pub fn certname(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let (a, b) = s.split_once('\n').unwrap_or((s, s));
    let verdict = names::validate_certname(a);
    if verdict.is_ok() {
        assert!(names::is_valid_syntax(a));
        assert!(!a.is_empty() && a.len() <= MAX_CERTNAME_LEN);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(&c)));
        assert!(!a.contains("..") && !a.starts_with('.') && !a.ends_with('.'));
        assert!(a != "." && a != ".." && !a.contains('/'));
    }
    assert_eq!(names::validate_subject(a, a), verdict);
    match names::validate_subject(a, b) {
        Ok(()) => assert!(a == b && verdict.is_ok()),
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.chars().any(char::is_control), "{msg:?}");
        }
    }
    if let Err(e) = &verdict {
        assert!(!e.to_string().chars().any(char::is_control));
    }
    let shown = names::printable(a);
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(shown.chars().count() <= 300 * 10 + 1);
}

fn check_normalised(path: &str) {
    assert!(path.starts_with('/'));
    assert!(!path.chars().any(char::is_control), "{path:?}");
    assert!(!path.split('/').any(|s| s == "." || s == ".."), "{path:?}");
    let enc = legacy::encode_path(path);
    assert!(enc.is_ascii());
    assert_eq!(legacy::normalize(&enc).as_deref(), Ok(path), "{enc:?}");
    let uri = http::Uri::builder()
        .path_and_query(enc.as_str())
        .build()
        .expect("an encoded path is a valid URI");
    assert_eq!(uri.path(), enc);
}

/// Path handling before routing: `normalize` (percent-decoding, traversal and control refusal),
/// `translate` (Puppet 3 routes) and `encode_path`. A normalised path re-encodes to a valid URI path
/// that normalises back to itself, and a translation is a normalised v1 path that is not translated
/// again.
pub fn routing(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for candidate in [raw.to_string(), format!("/{raw}")] {
        let Ok(path) = legacy::normalize(&candidate) else {
            continue;
        };
        check_normalised(&path);
        for m in [
            Method::GET,
            Method::HEAD,
            Method::PUT,
            Method::POST,
            Method::DELETE,
            Method::PATCH,
        ] {
            if let Some(t) = legacy::translate(&path, &m) {
                assert!(t.path.starts_with("/puppet-ca/v1/"), "{t:?}");
                assert!(!t.environment.is_empty() && !t.environment.contains('/'), "{t:?}");
                check_normalised(&t.path);
                assert!(legacy::translate(&t.path, &m).is_none(), "{t:?}");
            }
        }
    }
}
