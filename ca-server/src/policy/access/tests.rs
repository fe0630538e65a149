use std::collections::BTreeMap;
use std::net::IpAddr;

use super::*;

const AGENT: &str = "agent1.example.test";
const ADMIN: &str = "admin.example.test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anon,
    Agent,
    Admin,
}

fn identity(name: &str, ext: &[(&str, &str)]) -> Identity {
    Identity {
        certname: name.to_owned(),
        extensions: ext
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn who(w: Who) -> Option<Identity> {
    match w {
        Who::Anon => None,
        Who::Agent => Some(identity(AGENT, &[])),
        Who::Admin => Some(identity(ADMIN, &[("pp_cli_auth", "true")])),
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Full-control request check.
fn decide(
    rules: &AccessRules,
    method: Method,
    path: &str,
    id: Option<&Identity>,
    query: &[(&str, &str)],
    addr: Option<IpAddr>,
    env: Option<&str>,
) -> Decision {
    let query: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    rules.check(&AccessRequest {
        path,
        method,
        query: &query,
        identity: id,
        ip: addr,
        environment: env,
    })
}

fn check(rules: &AccessRules, method: Method, path: &str, w: Who) -> Decision {
    let id = who(w);
    decide(rules, method, path, id.as_ref(), &[], Some(ip("10.0.0.1")), None)
}

fn check_id(rules: &AccessRules, method: Method, path: &str, id: &Identity) -> Decision {
    decide(rules, method, path, Some(id), &[], Some(ip("10.0.0.1")), None)
}

#[track_caller]
fn assert_allow(d: &Decision, rule: &str) {
    match d {
        Decision::Allow { rule: r } => assert_eq!(r, rule, "allowed by the wrong rule"),
        Decision::Deny { rule: r, reason } => {
            panic!("expected allow by {rule:?}, got deny by {r:?}: {reason}")
        }
    }
}

#[track_caller]
fn assert_deny(d: &Decision, rule: &str) {
    match d {
        Decision::Deny { rule: r, .. } => assert_eq!(r, rule, "denied by the wrong rule: {d:?}"),
        Decision::Allow { rule: r } => panic!("expected deny by {rule:?}, got allow by {r:?}"),
    }
}

#[track_caller]
fn assert_err_contains(result: Result<AccessRules, AccessConfigError>, needles: &[&str]) {
    match result {
        Ok(_) => panic!("expected a config error containing {needles:?}"),
        Err(e) => {
            let msg = crate::error::Chain(&e).to_string();
            for n in needles {
                assert!(msg.contains(n), "error {msg:?} does not contain {n:?}");
            }
        }
    }
}

fn hocon(rules: &str) -> AccessRules {
    let text = format!("authorization: {{\n version: 1\n rules: [\n{rules}\n ]\n}}\n");
    match AccessRules::from_hocon(&text) {
        Ok(r) => r,
        Err(e) => panic!("parse failed: {e}\n{text}"),
    }
}

fn hocon_err(rules: &str) -> Result<AccessRules, AccessConfigError> {
    AccessRules::from_hocon(&format!(
        "authorization: {{\n version: 1\n rules: [\n{rules}\n ]\n}}\n"
    ))
}

fn legacy(text: &str) -> AccessRules {
    match AccessRules::from_legacy(text) {
        Ok(r) => r,
        Err(e) => panic!("legacy parse failed: {e}\n{text}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Defaults (§3.2)

const CERT: &str = "puppetlabs certificate";
const CRL: &str = "puppetlabs crl";
const CSR: &str = "puppetlabs csr";
const RENEW: &str = "puppetlabs certificate renewal";
const STATUS: &str = "puppetlabs cert status";
const CRL_UPDATE: &str = "puppetlabs CRL update";
const EXPIRATIONS: &str = "puppetlabs CA cert and CRL expirations";
const CLEAN: &str = "puppetlabs cert clean";
const SIGN: &str = "puppetlabs cert sign";
const FULL: &str = "puppetlabs status service - full";
const SIMPLE: &str = "puppetlabs status service - simple";
const RELYING_CRL: &str = "ca relying-party crl";
const OCSP: &str = "ca ocsp";
const DENY_ALL: &str = "puppetlabs deny all";

#[test]
fn default_rules_table() {
    use Method::*;
    use Who::*;
    let rules = AccessRules::puppetserver_defaults();
    // (method, path, who, allowed, deciding rule)
    let table: &[(Method, &str, Who, bool, &str)] = &[
        // #1 certificate
        (Get, "/puppet-ca/v1/certificate/ca", Anon, true, CERT),
        (Get, "/puppet-ca/v1/certificate/node1", Anon, true, CERT),
        (Get, "/puppet-ca/v1/certificate/node1", Agent, true, CERT),
        (Get, "/puppet-ca/v1/certificate/node1", Admin, true, CERT),
        (Put, "/puppet-ca/v1/certificate/node1", Anon, false, DENY_ALL),
        (Put, "/puppet-ca/v1/certificate/node1", Admin, false, DENY_ALL),
        (Post, "/puppet-ca/v1/certificate/node1", Agent, false, DENY_ALL),
        (Delete, "/puppet-ca/v1/certificate/node1", Admin, false, DENY_ALL),
        (Head, "/puppet-ca/v1/certificate/ca", Anon, false, DENY_ALL),
        // #2-#4 certificate_request
        (Get, "/puppet-ca/v1/certificate_request/node1", Anon, true, CSR),
        (Get, "/puppet-ca/v1/certificate_request/node1", Agent, true, CSR),
        (Put, "/puppet-ca/v1/certificate_request/node1", Anon, true, CSR),
        (Put, "/puppet-ca/v1/certificate_request/node1", Agent, true, CSR),
        (
            Delete,
            "/puppet-ca/v1/certificate_request/node1",
            Anon,
            false,
            DENY_ALL,
        ),
        (
            Delete,
            "/puppet-ca/v1/certificate_request/node1",
            Agent,
            false,
            DENY_ALL,
        ),
        (
            Delete,
            "/puppet-ca/v1/certificate_request/node1",
            Admin,
            false,
            DENY_ALL,
        ),
        // #5 CRL
        (
            Get,
            "/puppet-ca/v1/certificate_revocation_list/ca",
            Anon,
            true,
            CRL,
        ),
        (
            Get,
            "/puppet-ca/v1/certificate_revocation_list/ca",
            Agent,
            true,
            CRL,
        ),
        (
            Get,
            "/puppet-ca/v1/certificate_revocation_list/other",
            Anon,
            false,
            DENY_ALL,
        ),
        (
            Get,
            "/puppet-ca/v1/certificate_revocation_list/other",
            Agent,
            false,
            DENY_ALL,
        ),
        (
            Get,
            "/puppet-ca/v1/certificate_revocation_list",
            Admin,
            false,
            DENY_ALL,
        ),
        // #6 CRL update (exact regex)
        (
            Put,
            "/puppet-ca/v1/certificate_revocation_list",
            Admin,
            true,
            CRL_UPDATE,
        ),
        (
            Put,
            "/puppet-ca/v1/certificate_revocation_list",
            Agent,
            false,
            CRL_UPDATE,
        ),
        (
            Put,
            "/puppet-ca/v1/certificate_revocation_list",
            Anon,
            false,
            CRL_UPDATE,
        ),
        (
            Put,
            "/puppet-ca/v1/certificate_revocation_list/ca",
            Admin,
            false,
            DENY_ALL,
        ),
        // #7 certificate_status
        (Get, "/puppet-ca/v1/certificate_status/node1", Anon, false, STATUS),
        (
            Get,
            "/puppet-ca/v1/certificate_status/node1",
            Agent,
            false,
            STATUS,
        ),
        (Get, "/puppet-ca/v1/certificate_status/node1", Admin, true, STATUS),
        (
            Put,
            "/puppet-ca/v1/certificate_status/node1",
            Agent,
            false,
            STATUS,
        ),
        (Put, "/puppet-ca/v1/certificate_status/node1", Admin, true, STATUS),
        (
            Delete,
            "/puppet-ca/v1/certificate_status/node1",
            Agent,
            false,
            STATUS,
        ),
        (
            Delete,
            "/puppet-ca/v1/certificate_status/node1",
            Admin,
            true,
            STATUS,
        ),
        (
            Post,
            "/puppet-ca/v1/certificate_status/node1",
            Admin,
            false,
            DENY_ALL,
        ),
        // #8 certificate_statuses: "cert status" is a path prefix of it and sorts first by name.
        (Get, "/puppet-ca/v1/certificate_statuses/any", Admin, true, STATUS),
        (
            Get,
            "/puppet-ca/v1/certificate_statuses/any",
            Agent,
            false,
            STATUS,
        ),
        (Get, "/puppet-ca/v1/certificate_statuses/any", Anon, false, STATUS),
        // #9 expirations
        (Get, "/puppet-ca/v1/expirations", Agent, true, EXPIRATIONS),
        (Get, "/puppet-ca/v1/expirations", Admin, true, EXPIRATIONS),
        (Get, "/puppet-ca/v1/expirations", Anon, false, EXPIRATIONS),
        (Put, "/puppet-ca/v1/expirations", Admin, false, DENY_ALL),
        // #10 clean
        (Put, "/puppet-ca/v1/clean", Admin, true, CLEAN),
        (Put, "/puppet-ca/v1/clean", Agent, false, CLEAN),
        (Put, "/puppet-ca/v1/clean", Anon, false, CLEAN),
        (Get, "/puppet-ca/v1/clean", Admin, false, DENY_ALL),
        // #11 renewal
        (Post, "/puppet-ca/v1/certificate_renewal", Agent, true, RENEW),
        (Post, "/puppet-ca/v1/certificate_renewal", Admin, true, RENEW),
        (Post, "/puppet-ca/v1/certificate_renewal", Anon, false, RENEW),
        (Get, "/puppet-ca/v1/certificate_renewal", Agent, false, DENY_ALL),
        // #12/#13 sign, sign/all ("cert sign" is a prefix of sign/all and sorts first)
        (Post, "/puppet-ca/v1/sign", Admin, true, SIGN),
        (Post, "/puppet-ca/v1/sign", Agent, false, SIGN),
        (Post, "/puppet-ca/v1/sign", Anon, false, SIGN),
        (Post, "/puppet-ca/v1/sign/all", Admin, true, SIGN),
        (Post, "/puppet-ca/v1/sign/all", Agent, false, SIGN),
        (Get, "/puppet-ca/v1/sign/all", Admin, false, DENY_ALL),
        // status service
        (Get, "/status/v1/services", Anon, true, FULL),
        (Get, "/status/v1/services/ca", Agent, true, FULL),
        (Get, "/status/v1/simple", Anon, true, SIMPLE),
        (Get, "/status/v1/simple/ca", Anon, true, SIMPLE),
        (Post, "/status/v1/services", Anon, false, DENY_ALL),
        // relying parties' CRL
        (Get, "/crl.pem", Anon, true, RELYING_CRL),
        (Get, "/crl.der", Anon, true, RELYING_CRL),
        (Put, "/crl.pem", Admin, false, DENY_ALL),
        (Get, "/crl.pemx", Anon, false, DENY_ALL),
        (Post, "/ocsp", Anon, true, OCSP),
        (Get, "/ocsp/MEow", Anon, true, OCSP),
        (Put, "/ocsp", Anon, false, DENY_ALL),
        // everything else
        (Get, "/puppet-ca/v1/unknown", Anon, false, DENY_ALL),
        (Get, "/puppet-ca/v1/unknown", Admin, false, DENY_ALL),
        (Get, "/", Agent, false, DENY_ALL),
        (
            Get,
            "/puppet/v3/catalog/agent1.example.test",
            Agent,
            false,
            DENY_ALL,
        ),
    ];
    for (method, path, w, allowed, rule) in table {
        let d = check(&rules, *method, path, *w);
        assert_eq!(d.is_allowed(), *allowed, "{method} {path} as {w:?}: {d:?}");
        assert_eq!(d.rule(), *rule, "{method} {path} as {w:?}: {d:?}");
    }
}

#[test]
fn default_text_parses_and_matches_builtin() {
    let parsed = AccessRules::from_hocon(DEFAULT_HOCON_AUTH_CONF).unwrap();
    assert!(!parsed.allow_header_cert_info());
    let builtin = AccessRules::puppetserver_defaults();
    assert!(!builtin.allow_header_cert_info());
    assert!(!builtin.is_legacy());
    for w in [Who::Anon, Who::Agent, Who::Admin] {
        for m in [
            Method::Get,
            Method::Head,
            Method::Post,
            Method::Put,
            Method::Delete,
        ] {
            for p in [
                "/puppet-ca/v1/certificate_status/x",
                "/puppet-ca/v1/certificate/ca",
                "/x",
            ] {
                assert_eq!(check(&parsed, m, p, w), check(&builtin, m, p, w));
            }
        }
    }
}

#[test]
fn default_deny_reasons() {
    let rules = AccessRules::puppetserver_defaults();
    match check(&rules, Method::Get, "/nowhere", Who::Agent) {
        Decision::Deny { reason, .. } => {
            assert!(
                reason.contains(AGENT) && reason.contains("matched deny"),
                "{reason}"
            )
        }
        d => panic!("{d:?}"),
    }
    match check(&rules, Method::Get, "/nowhere", Who::Anon) {
        Decision::Deny { reason, .. } => assert_eq!(reason, "not authenticated"),
        d => panic!("{d:?}"),
    }
    match check(
        &rules,
        Method::Put,
        "/puppet-ca/v1/certificate_status/x",
        Who::Agent,
    ) {
        Decision::Deny { reason, .. } => assert!(reason.contains("no allow entry"), "{reason}"),
        d => panic!("{d:?}"),
    }
}

#[test]
fn admin_extension_by_oid_or_wrong_value() {
    let rules = AccessRules::puppetserver_defaults();
    let by_oid = identity(ADMIN, &[("1.3.6.1.4.1.34380.1.3.39", "true")]);
    assert_allow(
        &check_id(&rules, Method::Put, "/puppet-ca/v1/certificate_status/x", &by_oid),
        STATUS,
    );
    let falsy = identity(ADMIN, &[("pp_cli_auth", "false")]);
    assert_deny(
        &check_id(&rules, Method::Put, "/puppet-ca/v1/certificate_status/x", &falsy),
        STATUS,
    );
    let other_ext = identity(ADMIN, &[("pp_role", "true")]);
    assert_deny(
        &check_id(
            &rules,
            Method::Put,
            "/puppet-ca/v1/certificate_status/x",
            &other_ext,
        ),
        STATUS,
    );
}

#[test]
fn empty_certname_is_unauthenticated() {
    let rules = AccessRules::puppetserver_defaults();
    let empty = identity("", &[("pp_cli_auth", "true")]);
    match check_id(&rules, Method::Put, "/puppet-ca/v1/certificate_status/x", &empty) {
        Decision::Deny { rule, reason } => {
            assert_eq!(rule, STATUS);
            assert_eq!(reason, "not authenticated");
        }
        d => panic!("{d:?}"),
    }
    assert_allow(
        &check_id(&rules, Method::Get, "/puppet-ca/v1/certificate/ca", &empty),
        CERT,
    );
}

// ---------------------------------------------------------------------------------------------
// Custom HOCON rules

const OWN_STATUS: &str = r#"{
    match-request: { path: "^/puppet-ca/v1/certificate_status/([^/]+)$", type: regex, method: [get, put] }
    allow: "$1"
    sort-order: 100
    name: "own status"
}"#;

#[test]
fn hocon_regex_backreference() {
    let rules = hocon(OWN_STATUS);
    let agent = identity(AGENT, &[]);
    assert_allow(
        &check_id(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/agent1.example.test",
            &agent,
        ),
        "own status",
    );
    assert_allow(
        &check_id(
            &rules,
            Method::Put,
            "/puppet-ca/v1/certificate_status/AGENT1.Example.test",
            &agent,
        ),
        "own status",
    );
    assert_deny(
        &check_id(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/agent2.example.test",
            &agent,
        ),
        "own status",
    );
    // A capture that is not a name (here `*`) never widens the entry.
    assert_deny(
        &check_id(&rules, Method::Get, "/puppet-ca/v1/certificate_status/*", &agent),
        "own status",
    );
    assert_deny(
        &check_id(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/*.example.test",
            &agent,
        ),
        "own status",
    );
    // Method not listed → no rule matches.
    assert_deny(
        &check_id(
            &rules,
            Method::Delete,
            "/puppet-ca/v1/certificate_status/agent1.example.test",
            &agent,
        ),
        "global deny all - no rules matched",
    );
    // Anchored regex: a longer path does not match the rule.
    assert_deny(
        &check_id(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/agent1.example.test/x",
            &agent,
        ),
        "global deny all - no rules matched",
    );
}

#[test]
fn hocon_backreference_with_domain_suffix_and_deny_fail_closed() {
    let rules = hocon(
        r#"{
            match-request: { path: "^/puppet-ca/v1/certificate/(\\w+)(-x)?$", type: regex }
            allow: "$1.example.test"
            deny: "$2"
            sort-order: 1
            name: "r"
        }"#,
    );
    let agent = identity(AGENT, &[]);
    // $2 did not participate: it substitutes to "", which is no name: the deny entry fails closed.
    assert_deny(
        &check_id(&rules, Method::Get, "/puppet-ca/v1/certificate/agent1", &agent),
        "r",
    );
    let rules = hocon(
        r#"{
            match-request: { path: "^/puppet-ca/v1/certificate/(\\w+)$", type: regex }
            allow: "$1.example.test"
            sort-order: 1
            name: "r"
        }"#,
    );
    assert_allow(
        &check_id(&rules, Method::Get, "/puppet-ca/v1/certificate/agent1", &agent),
        "r",
    );
    assert_deny(
        &check_id(&rules, Method::Get, "/puppet-ca/v1/certificate/agent2", &agent),
        "r",
    );
}

#[test]
fn hocon_regex_is_a_search_not_anchored() {
    let rules = hocon(
        r#"{ match-request: { path: "certificate_status", type: regex }, allow-unauthenticated: true, sort-order: 1, name: "s" }"#,
    );
    assert_allow(
        &check(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/x",
            Who::Anon,
        ),
        "s",
    );
    assert_allow(
        &check(
            &rules,
            Method::Delete,
            "/anything/certificate_statuses",
            Who::Anon,
        ),
        "s",
    );
    assert_deny(
        &check(&rules, Method::Get, "/puppet-ca/v1/certificate/x", Who::Anon),
        "global deny all - no rules matched",
    );
}

#[test]
fn hocon_path_type_is_literal_prefix() {
    let rules = hocon(
        r#"{ match-request: { path: "/a.b", type: path }, allow-unauthenticated: true, sort-order: 1, name: "p" }"#,
    );
    assert_allow(&check(&rules, Method::Get, "/a.b", Who::Anon), "p");
    assert_allow(&check(&rules, Method::Get, "/a.bc/d", Who::Anon), "p");
    assert_deny(
        &check(&rules, Method::Get, "/axb", Who::Anon),
        "global deny all - no rules matched",
    );
    assert_deny(
        &check(&rules, Method::Get, "/x/a.b", Who::Anon),
        "global deny all - no rules matched",
    );
}

#[test]
fn hocon_query_params() {
    let rules = hocon(
        r#"{
            match-request: {
                path: "/puppet-ca/v1/certificate_statuses"
                type: path
                method: get
                query-params: { state: [signed, revoked], other: x }
            }
            allow: "*"
            sort-order: 1
            name: "q"
        }"#,
    );
    let agent = identity(AGENT, &[]);
    let d = |q: &[(&str, &str)]| {
        decide(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_statuses/all",
            Some(&agent),
            q,
            None,
            None,
        )
    };
    assert_allow(&d(&[("state", "signed"), ("other", "x")]), "q");
    assert_allow(
        &d(&[("other", "x"), ("state", "requested"), ("state", "revoked")]),
        "q",
    );
    assert_deny(
        &d(&[("state", "requested"), ("other", "x")]),
        "global deny all - no rules matched",
    );
    assert_deny(&d(&[("state", "signed")]), "global deny all - no rules matched");
    assert_deny(&d(&[]), "global deny all - no rules matched");
}

#[test]
fn hocon_method_list_and_case() {
    let rules = hocon(
        r#"{ match-request: { path: "/x", type: PATH, method: [GET, Head] }, allow-unauthenticated: true, sort-order: 1, name: "m" }"#,
    );
    assert_allow(&check(&rules, Method::Get, "/x", Who::Anon), "m");
    assert_allow(&check(&rules, Method::Head, "/x", Who::Anon), "m");
    assert_deny(
        &check(&rules, Method::Post, "/x", Who::Anon),
        "global deny all - no rules matched",
    );
}

#[test]
fn hocon_deny_wins_and_globs() {
    let rules = hocon(
        r#"{
            match-request: { path: "/", type: path }
            allow: ["*.example.test"]
            deny: "agent1.example.test"
            sort-order: 1
            name: "d"
        }"#,
    );
    let id = |n: &str| identity(n, &[]);
    assert_deny(&check_id(&rules, Method::Get, "/x", &id(AGENT)), "d");
    match check_id(&rules, Method::Get, "/x", &id(AGENT)) {
        Decision::Deny { reason, .. } => assert!(
            reason.contains("matched deny entry agent1.example.test"),
            "{reason}"
        ),
        d => panic!("{d:?}"),
    }
    assert_allow(
        &check_id(&rules, Method::Get, "/x", &id("agent2.example.test")),
        "d",
    );
    assert_allow(&check_id(&rules, Method::Get, "/x", &id("a.b.example.test")), "d");
    assert_allow(
        &check_id(&rules, Method::Get, "/x", &id("AGENT2.EXAMPLE.TEST")),
        "d",
    );
    // As in Ruby authstore and tk-authorization, the glob's own domain matches too.
    assert_allow(&check_id(&rules, Method::Get, "/x", &id("example.test")), "d");
    assert_deny(&check_id(&rules, Method::Get, "/x", &id("badexample.test")), "d");
    assert_deny(&check_id(&rules, Method::Get, "/x", &id("example.testing")), "d");
    assert_deny(&check_id(&rules, Method::Get, "/x", &id("test")), "d");
    assert_deny(
        &check_id(&rules, Method::Get, "/x", &id("agent.example.org")),
        "d",
    );
}

#[test]
fn hocon_exact_names() {
    let rules = hocon(
        r#"{ match-request: { path: "/", type: path }, allow: [example.test, localhost, {certname: "Node9.Example.Test"}], sort-order: 1, name: "e" }"#,
    );
    let id = |n: &str| identity(n, &[]);
    assert_allow(&check_id(&rules, Method::Get, "/x", &id("example.test")), "e");
    assert_allow(&check_id(&rules, Method::Get, "/x", &id("EXAMPLE.test")), "e");
    assert_allow(&check_id(&rules, Method::Get, "/x", &id("localhost")), "e");
    assert_allow(
        &check_id(&rules, Method::Get, "/x", &id("node9.example.test")),
        "e",
    );
    // Exact means exact: no subdomain, no suffix.
    assert_deny(
        &check_id(&rules, Method::Get, "/x", &id("agent1.example.test")),
        "e",
    );
    assert_deny(
        &check_id(&rules, Method::Get, "/x", &id("localhost.example.test")),
        "e",
    );
    assert_deny(
        &check_id(&rules, Method::Get, "/x", &id("example.test.evil")),
        "e",
    );
}

#[test]
fn hocon_regex_ace() {
    let rules = hocon(
        r#"{ match-request: { path: "/", type: path }, allow: "/^agent\\d+\\./", sort-order: 1, name: "r" }"#,
    );
    let id = |n: &str| identity(n, &[]);
    assert_allow(
        &check_id(&rules, Method::Get, "/x", &id("agent1.example.test")),
        "r",
    );
    assert_allow(&check_id(&rules, Method::Get, "/x", &id("agent42.other")), "r");
    assert_deny(
        &check_id(&rules, Method::Get, "/x", &id("xagent1.example.test")),
        "r",
    );
    assert_deny(
        &check_id(&rules, Method::Get, "/x", &id("AGENT1.example.test")),
        "r",
    );
    // A search, not a full match.
    let rules = hocon(
        r#"{ match-request: { path: "/", type: path }, allow: "/example/", sort-order: 1, name: "r" }"#,
    );
    assert_allow(&check_id(&rules, Method::Get, "/x", &id("a.example.test")), "r");
}

#[test]
fn hocon_extensions() {
    let rules = hocon(
        r#"{
            match-request: { path: "/", type: path }
            allow: [
                { extensions: { pp_role: [web, db], pp_environment: production } },
                { extensions: { "1.3.6.1.4.1.34380.1.1.16": blue } },
                { rbac: { permission: "cert_requests:accept_reject:*" } }
            ]
            sort-order: 1
            name: "x"
        }"#,
    );
    let check_ext = |ext: &[(&str, &str)]| check_id(&rules, Method::Get, "/x", &identity(AGENT, ext));
    assert_allow(
        &check_ext(&[("pp_role", "db"), ("pp_environment", "production")]),
        "x",
    );
    assert_allow(
        &check_ext(&[("pp_role", "web"), ("1.3.6.1.4.1.34380.1.1.12", "production")]),
        "x",
    );
    assert_deny(
        &check_ext(&[("pp_role", "mail"), ("pp_environment", "production")]),
        "x",
    );
    assert_deny(&check_ext(&[("pp_role", "db")]), "x");
    assert_deny(
        &check_ext(&[("pp_role", "DB"), ("pp_environment", "production")]),
        "x",
    );
    assert_deny(&check_ext(&[]), "x");
    // The rule named the OID of pp_cluster; the identity carries the short name.
    assert_allow(&check_ext(&[("pp_cluster", "blue")]), "x");
    assert_allow(&check_ext(&[("1.3.6.1.4.1.34380.1.1.16", "blue")]), "x");
    assert_deny(&check_ext(&[("pp_cluster", "green")]), "x");
    assert_deny(&check(&rules, Method::Get, "/x", Who::Anon), "x");
}

#[test]
fn hocon_unknown_oid_extension_and_boolean_value() {
    let rules = hocon(
        r#"{ match-request: { path: "/", type: path }, allow: { extensions: { "1.2.3.4": yes, pp_cli_auth: true } }, sort-order: 1, name: "x" }"#,
    );
    let ok = identity(ADMIN, &[("1.2.3.4", "yes"), ("pp_cli_auth", "true")]);
    assert_allow(&check_id(&rules, Method::Get, "/x", &ok), "x");
    let missing = identity(ADMIN, &[("pp_cli_auth", "true")]);
    assert_deny(&check_id(&rules, Method::Get, "/x", &missing), "x");
}

#[test]
fn hocon_rbac_never_matches() {
    let rules = hocon(
        r#"{ match-request: { path: "/", type: path }, allow: { rbac: { permission: "x:y:z" } }, sort-order: 1, name: "x" }"#,
    );
    assert_deny(&check(&rules, Method::Get, "/x", Who::Admin), "x");
    let rules = hocon(
        r#"{ match-request: { path: "/", type: path }, allow: "*", deny: { rbac: {permission: p} }, sort-order: 1, name: "x" }"#,
    );
    assert_allow(&check(&rules, Method::Get, "/x", Who::Agent), "x");
}

#[test]
fn hocon_sort_order_and_name_ties() {
    let rules = hocon(
        r#"{ match-request: { path: "/x", type: path }, deny: "*", sort-order: 10, name: "b" },
           { match-request: { path: "/x", type: path }, allow: "*", sort-order: 10, name: "a" },
           { match-request: { path: "/x", type: path }, deny: "*", sort-order: 11, name: "0 first by name but later by order" }"#,
    );
    assert_allow(&check(&rules, Method::Get, "/x", Who::Agent), "a");
    let rules = hocon(
        r#"{ match-request: { path: "/x", type: path }, deny: "*", sort-order: 10, name: "B" },
           { match-request: { path: "/x", type: path }, allow: "*", sort-order: 10, name: "a" }"#,
    );
    // Code point order: "B" (0x42) < "a" (0x61).
    assert_deny(&check(&rules, Method::Get, "/x", Who::Agent), "B");
    let rules = hocon(
        r#"{ match-request: { path: "/x", type: path }, deny: "*", sort-order: 999, name: "a" },
           { match-request: { path: "/x", type: path }, allow: "*", sort-order: 2, name: "z" }"#,
    );
    assert_allow(&check(&rules, Method::Get, "/x", Who::Agent), "z");
}

#[test]
fn hocon_allow_header_cert_info_and_top_level() {
    let text = r#"
        # comment
        other-service { setting: 1 }
        authorization: {
            version: 1
            allow-header-cert-info: true
            rules: [
                { match-request: { path: "/", type: path }, deny: "*", sort-order: 999, name: "deny" }
            ]
        }"#;
    let rules = AccessRules::from_hocon(text).unwrap();
    assert!(rules.allow_header_cert_info());
    assert_deny(&check(&rules, Method::Get, "/", Who::Admin), "deny");
    let text = "authorization { version = 1, allow-header-cert-info = false, rules = [] }";
    let rules = AccessRules::from_hocon(text).unwrap();
    assert!(!rules.allow_header_cert_info());
    assert_deny(
        &check(&rules, Method::Get, "/", Who::Admin),
        "global deny all - no rules matched",
    );
}

#[test]
fn hocon_allow_list_with_deny_only_rule() {
    let rules = hocon(
        r#"{ match-request: { path: "/", type: path }, deny: "agent1.example.test", sort-order: 1, name: "d" }"#,
    );
    assert_deny(&check(&rules, Method::Get, "/x", Who::Agent), "d");
    match check(&rules, Method::Get, "/x", Who::Admin) {
        Decision::Deny { rule, reason } => {
            assert_eq!(rule, "d");
            assert!(reason.contains("no allow entry"), "{reason}");
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn hocon_env_substitution_does_not_read_process_environment() {
    // ${?HOME} is undefined here (no environment), so the optional key is simply absent.
    let text = r#"authorization { version: 1, rules: [ { match-request: { path: "/", type: path }, allow: "*", sort-order: 1, name: "n", x: ${?HOME} } ] }"#;
    assert!(AccessRules::from_hocon(text).is_ok());
    let text = r#"authorization { version: 1, rules: [ { match-request: { path: ${?PATH}"/", type: path }, allow: "*", sort-order: 1, name: "n" } ] }"#;
    let rules = AccessRules::from_hocon(text).unwrap();
    assert_allow(&check(&rules, Method::Get, "/y", Who::Agent), "n");
}

// ---------------------------------------------------------------------------------------------
// Malformed HOCON

const GOOD_MR: &str = r#"match-request: { path: "/x", type: path }"#;

#[test]
fn hocon_config_errors() {
    let cases: Vec<(String, Vec<&str>)> = vec![
        (format!("{{ {GOOD_MR}, allow: \"*\", sort-order: 1 }}"), vec!["rule #1", "missing required key 'name'"]),
        (
            format!("{{ {GOOD_MR}, allow: \"*\", sort-order: 1, name: a }}, {{ {GOOD_MR}, deny: \"*\", sort-order: 2, name: a }}"),
            vec!["duplicate rule name \"a\"", "#1", "#2"],
        ),
        (
            format!("{{ {GOOD_MR}, allow-unauthenticated: true, allow: \"*\", sort-order: 1, name: n }}"),
            vec!["\"n\"", "cannot be combined"],
        ),
        (
            format!("{{ {GOOD_MR}, allow-unauthenticated: true, deny: \"*\", sort-order: 1, name: n }}"),
            vec!["cannot be combined"],
        ),
        (format!("{{ {GOOD_MR}, allow: \"*\", sort-order: 0, name: n }}"), vec!["\"n\"", "sort-order"]),
        (format!("{{ {GOOD_MR}, allow: \"*\", sort-order: 1000, name: n }}"), vec!["sort-order 1000"]),
        (format!("{{ {GOOD_MR}, allow: \"*\", sort-order: abc, name: n }}"), vec!["sort-order abc"]),
        (format!("{{ {GOOD_MR}, allow: \"*\", sort-order: 1.5, name: n }}"), vec!["sort-order"]),
        (format!("{{ {GOOD_MR}, allow: \"*\", name: n }}"), vec!["missing required key 'sort-order'"]),
        (format!("{{ {GOOD_MR}, alow: \"*\", sort-order: 1, name: n }}"), vec!["\"n\"", "unknown key 'alow'"]),
        (format!("{{ {GOOD_MR}, sort-order: 1, name: n }}"), vec!["must contain 'allow' or 'deny'"]),
        (format!("{{ {GOOD_MR}, allow-unauthenticated: false, sort-order: 1, name: n }}"), vec!["must contain 'allow' or 'deny'"]),
        (format!("{{ {GOOD_MR}, allow-unauthenticated: maybe, sort-order: 1, name: n }}"), vec!["allow-unauthenticated"]),
        ("{ allow: \"*\", sort-order: 1, name: n }".to_owned(), vec!["missing required key 'match-request'"]),
        ("{ match-request: { type: path }, allow: \"*\", sort-order: 1, name: n }".to_owned(), vec!["match-request.path"]),
        ("{ match-request: { path: \"/\" }, allow: \"*\", sort-order: 1, name: n }".to_owned(), vec!["match-request.type"]),
        ("{ match-request: { path: \"/\", type: glob }, allow: \"*\", sort-order: 1, name: n }".to_owned(), vec!["'glob'"]),
        ("{ match-request: { path: \"(\", type: regex }, allow: \"*\", sort-order: 1, name: n }".to_owned(), vec!["\"n\"", "regular expression"]),
        ("{ match-request: { path: \"/\", type: path, method: fetch }, allow: \"*\", sort-order: 1, name: n }".to_owned(), vec!["invalid method 'fetch'"]),
        ("{ match-request: { path: \"/\", type: path, method: [] }, allow: \"*\", sort-order: 1, name: n }".to_owned(), vec!["empty list"]),
        ("{ match-request: { path: \"/\", type: path, verb: get }, allow: \"*\", sort-order: 1, name: n }".to_owned(), vec!["unknown key 'verb' in 'match-request'"]),
        ("{ match-request: { path: \"/\", type: path, query-params: x }, allow: \"*\", sort-order: 1, name: n }".to_owned(), vec!["query-params"]),
        ("{ match-request: { path: \"/\", type: path, query-params: { a: {b: c} } }, allow: \"*\", sort-order: 1, name: n }".to_owned(), vec!["query-param 'a'"]),
        ("{ match-request: { path: \"^/a/([^/]+)$\", type: regex }, allow: \"$2\", sort-order: 1, name: n }".to_owned(), vec!["$2", "1 capture group"]),
        ("{ match-request: { path: \"/a\", type: path }, allow: \"$1\", sort-order: 1, name: n }".to_owned(), vec!["$1", "0 capture group"]),
        ("{ match-request: { path: \"^/a/(.+)$\", type: regex }, deny: [\"x.y\", \"$0.y\"], sort-order: 1, name: n }".to_owned(), vec!["$1"]),
        (format!("{{ {GOOD_MR}, allow: \"foo bar\", sort-order: 1, name: n }}"), vec!["invalid name pattern \"foo bar\""]),
        (format!("{{ {GOOD_MR}, allow: \"/(/\", sort-order: 1, name: n }}"), vec!["regular expression"]),
        (format!("{{ {GOOD_MR}, allow: {{ certname: a, extensions: {{ a: b }} }}, sort-order: 1, name: n }}"), vec!["exactly one key"]),
        (format!("{{ {GOOD_MR}, allow: {{ group: admins }}, sort-order: 1, name: n }}"), vec!["unknown map key 'group'"]),
        (format!("{{ {GOOD_MR}, allow: {{ extensions: {{}} }}, sort-order: 1, name: n }}"), vec!["empty"]),
        (format!("{{ {GOOD_MR}, allow: {{ extensions: {{ pp_role: [] }} }}, sort-order: 1, name: n }}"), vec!["empty list"]),
        (format!("{{ {GOOD_MR}, allow: {{ extensions: {{ 1.3.6.1: x }} }}, sort-order: 1, name: n }}"), vec!["quote dotted OIDs"]),
        (format!("{{ {GOOD_MR}, allow: [[a.b]], sort-order: 1, name: n }}"), vec!["strings or maps"]),
        (format!("{{ {GOOD_MR}, allow: \"*\", sort-order: 1, name: \"\" }}"), vec!["non-empty"]),
        ("\"not a map\"".to_owned(), vec!["rule #1 must be a map"]),
    ];
    for (rules, needles) in cases {
        assert_err_contains(hocon_err(&rules), &needles);
    }
}

#[test]
fn hocon_document_errors() {
    let cases: &[(&str, &[&str])] = &[
        ("", &["no 'authorization' section"]),
        ("authorization: 1", &["must be a map"]),
        (
            "authorization { rules: [] }",
            &["missing 'authorization.version'"],
        ),
        (
            "authorization { version: 2, rules: [] }",
            &["unsupported authorization version 2"],
        ),
        ("authorization { version: 1 }", &["missing 'authorization.rules'"]),
        ("authorization { version: 1, rules: {} }", &["must be a list"]),
        (
            "authorization { version: 1, rules: [], allow-header-cert-info: sometimes }",
            &["allow-header-cert-info"],
        ),
        (
            "authorization { version: 1, rules: [], allow-header-cert-infos: true }",
            &["unknown key 'allow-header-cert-infos'"],
        ),
        ("authorization { version: 1, rules: [ ", &["not valid HOCON"]),
        (
            "authorization { version: 1, rules: [ ${missing} ] }",
            &["not valid HOCON"],
        ),
        (
            "include \"other.conf\"\nauthorization { version: 1, rules: [] }",
            &["line 1", "'include'"],
        ),
        (
            "authorization {\n version: 1\n include file(\"/etc/passwd\")\n rules: [] }",
            &["line 3", "'include'"],
        ),
    ];
    for (text, needles) in cases {
        assert_err_contains(AccessRules::from_hocon(text), needles);
    }
}

// ---------------------------------------------------------------------------------------------
// Legacy auth.conf (§3.4)

#[test]
fn legacy_defaults_only() {
    use Method::*;
    use Who::*;
    let rules = legacy("");
    assert!(rules.is_legacy());
    assert!(!rules.allow_header_cert_info());
    let crl_default = "legacy default: path /certificate_revocation_list/ca";
    let deny_all = "legacy default: path /";
    let table: &[(Method, &str, Who, bool, &str)] = &[
        (
            Get,
            "/puppet-ca/v1/certificate/ca",
            Anon,
            true,
            "legacy default: path /certificate/ca",
        ),
        (
            Get,
            "/puppet-ca/v1/certificate/node1",
            Anon,
            true,
            "legacy default: path /certificate/",
        ),
        (
            Get,
            "/puppet-ca/v1/certificate/node1",
            Agent,
            true,
            "legacy default: path /certificate/",
        ),
        (
            Head,
            "/puppet-ca/v1/certificate/node1",
            Anon,
            true,
            "legacy default: path /certificate/",
        ),
        (Put, "/puppet-ca/v1/certificate/node1", Admin, false, deny_all),
        (
            Get,
            "/puppet-ca/v1/certificate_request/node1",
            Anon,
            true,
            "legacy default: path /certificate_request",
        ),
        (
            Put,
            "/puppet-ca/v1/certificate_request/node1",
            Anon,
            true,
            "legacy default: path /certificate_request",
        ),
        (
            Post,
            "/puppet-ca/v1/certificate_request/node1",
            Anon,
            true,
            "legacy default: path /certificate_request",
        ),
        (
            Delete,
            "/puppet-ca/v1/certificate_request/node1",
            Admin,
            false,
            deny_all,
        ),
        // The P3 default CRL rule is authenticated-only.
        (
            Get,
            "/puppet-ca/v1/certificate_revocation_list/ca",
            Agent,
            true,
            crl_default,
        ),
        (
            Get,
            "/puppet-ca/v1/certificate_revocation_list/ca",
            Anon,
            false,
            deny_all,
        ),
        // certificate_status is not reachable without an explicit ACL.
        (
            Get,
            "/puppet-ca/v1/certificate_status/node1",
            Admin,
            false,
            deny_all,
        ),
        (
            Put,
            "/puppet-ca/v1/certificate_status/node1",
            Admin,
            false,
            deny_all,
        ),
        (
            Get,
            "/puppet-ca/v1/certificate_statuses/all",
            Admin,
            false,
            deny_all,
        ),
        (Post, "/puppet-ca/v1/sign/all", Admin, false, deny_all),
        (Get, "/puppet-ca/v1/expirations", Agent, false, deny_all),
        (Get, "/puppet-ca/v1", Agent, false, deny_all),
        // Outside the CA API.
        (
            Get,
            "/status/v1/simple",
            Anon,
            true,
            "legacy: status API (built-in)",
        ),
        (
            Head,
            "/status/v1/services",
            Anon,
            true,
            "legacy: status API (built-in)",
        ),
        (Post, "/status/v1/services", Admin, false, "legacy: not a CA path"),
        (
            Get,
            "/crl.pem",
            Anon,
            true,
            "legacy: relying-party CRL and OCSP (built-in)",
        ),
        (
            Head,
            "/crl.der",
            Anon,
            true,
            "legacy: relying-party CRL and OCSP (built-in)",
        ),
        (Put, "/crl.der", Admin, false, "legacy: not a CA path"),
        (
            Post,
            "/ocsp",
            Anon,
            true,
            "legacy: relying-party CRL and OCSP (built-in)",
        ),
        (
            Get,
            "/ocsp/MEow",
            Anon,
            true,
            "legacy: relying-party CRL and OCSP (built-in)",
        ),
        (Post, "/ocspx", Anon, false, "legacy: not a CA path"),
        (
            Get,
            "/puppet/v3/catalog/agent1.example.test",
            Agent,
            false,
            "legacy: not a CA path",
        ),
        (
            Get,
            "/puppet-ca/v1x/certificate/ca",
            Anon,
            false,
            "legacy: not a CA path",
        ),
        (
            Get,
            "/production/certificate/ca",
            Anon,
            false,
            "legacy: not a CA path",
        ),
    ];
    for (method, path, w, allowed, rule) in table {
        let d = check(&rules, *method, path, *w);
        assert_eq!(d.is_allowed(), *allowed, "{method} {path} as {w:?}: {d:?}");
        assert_eq!(d.rule(), *rule, "{method} {path} as {w:?}: {d:?}");
    }
}

#[test]
fn legacy_forbidden_message() {
    let rules = legacy("");
    match check(
        &rules,
        Method::Put,
        "/puppet-ca/v1/certificate_status/node1",
        Who::Admin,
    ) {
        Decision::Deny { reason, .. } => assert_eq!(
            reason,
            "Forbidden request: admin.example.test(10.0.0.1) access to /certificate_status/node1 [save] \
             authenticated at built-in default ACL 'path /'"
        ),
        d => panic!("{d:?}"),
    }
    let rules = legacy("path /certificate_status\nmethod find\nallow admin.example.test\n");
    match check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/node1",
        Who::Agent,
    ) {
        Decision::Deny { rule, reason } => {
            assert_eq!(rule, "legacy auth.conf line 1: path /certificate_status");
            assert_eq!(
                reason,
                "Forbidden request: agent1.example.test(10.0.0.1) access to /certificate_status/node1 [find] \
                 authenticated at line 1"
            );
        }
        d => panic!("{d:?}"),
    }
    match decide(
        &legacy(""),
        Method::Get,
        "/puppet-ca/v1/certificate_statuses/x",
        None,
        &[],
        None,
        None,
    ) {
        Decision::Deny { reason, .. } => {
            assert!(
                reason.starts_with("Forbidden request: unknown access to /certificate_status/x [search] at"),
                "{reason}"
            )
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn legacy_crl_auth_any() {
    let rules = legacy("path /certificate_revocation_list\nauth any\nmethod find\nallow *\n");
    let line1 = "legacy auth.conf line 1: path /certificate_revocation_list";
    assert_allow(
        &check(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_revocation_list/ca",
            Who::Anon,
        ),
        line1,
    );
    assert_allow(
        &check(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_revocation_list/ca",
            Who::Agent,
        ),
        line1,
    );
    // Only find: a PUT falls through to the implicit deny.
    assert_deny(
        &check(
            &rules,
            Method::Put,
            "/puppet-ca/v1/certificate_revocation_list",
            Who::Admin,
        ),
        "legacy default: path /",
    );
    // The default alone requires authentication.
    assert_deny(
        &check(
            &legacy(""),
            Method::Get,
            "/puppet-ca/v1/certificate_revocation_list/ca",
            Who::Anon,
        ),
        "legacy default: path /",
    );
}

#[test]
fn legacy_regex_backreference() {
    let text = "# own status\npath ~ ^/certificate_status/([^/]+)$\nmethod find, save\nallow $1\n";
    let rules = legacy(text);
    let line2 = "legacy auth.conf line 2: path ~ ^/certificate_status/([^/]+)$";
    assert_allow(
        &check(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/agent1.example.test",
            Who::Agent,
        ),
        line2,
    );
    assert_allow(
        &check(
            &rules,
            Method::Put,
            "/puppet-ca/v1/certificate_status/agent1.example.test",
            Who::Agent,
        ),
        line2,
    );
    assert_deny(
        &check(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/agent2.example.test",
            Who::Agent,
        ),
        line2,
    );
    assert_deny(
        &check(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/*",
            Who::Agent,
        ),
        line2,
    );
    // destroy is not listed: skipped, implicit deny.
    assert_deny(
        &check(
            &rules,
            Method::Delete,
            "/puppet-ca/v1/certificate_status/agent1.example.test",
            Who::Agent,
        ),
        "legacy default: path /",
    );
    // Authenticated only (default): anonymous requests skip it.
    assert_deny(
        &check(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/agent1.example.test",
            Who::Anon,
        ),
        "legacy default: path /",
    );
    // Ruby-style escaped slashes work too, and a suffix after the back-reference.
    let rules = legacy("path ~ ^\\/certificate_status\\/([^\\/.]+)$\nallow $1.example.test\n");
    assert!(check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/agent1",
        Who::Agent
    )
    .is_allowed());
    assert!(!check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/agent2",
        Who::Agent
    )
    .is_allowed());
}

#[test]
fn legacy_methods_search_and_head() {
    let rules = legacy("path /certificate_status\nmethod search\nallow admin.example.test\n");
    let line1 = "legacy auth.conf line 1: path /certificate_status";
    assert_allow(
        &check(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_statuses/all",
            Who::Admin,
        ),
        line1,
    );
    assert_allow(
        &check(
            &rules,
            Method::Head,
            "/puppet-ca/v1/certificate_statuses/all",
            Who::Admin,
        ),
        line1,
    );
    assert_deny(
        &check(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/x",
            Who::Admin,
        ),
        "legacy default: path /",
    );
    // HEAD: allowed as find or as save.
    let rules = legacy("path /certificate_status\nmethod save\nallow admin.example.test\n");
    assert_allow(
        &check(
            &rules,
            Method::Head,
            "/puppet-ca/v1/certificate_status/x",
            Who::Admin,
        ),
        line1,
    );
    assert_deny(
        &check(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/x",
            Who::Admin,
        ),
        "legacy default: path /",
    );
    // POST is find; DELETE is destroy.
    let rules = legacy("path /sign\nmethod find\nallow admin.example.test\npath /certificate_status\nmethod destroy\nallow admin.example.test");
    assert!(check(&rules, Method::Post, "/puppet-ca/v1/sign/all", Who::Admin).is_allowed());
    assert!(!check(&rules, Method::Post, "/puppet-ca/v1/sign/all", Who::Agent).is_allowed());
    assert!(check(
        &rules,
        Method::Delete,
        "/puppet-ca/v1/certificate_status/x",
        Who::Admin
    )
    .is_allowed());
    assert!(!check(
        &rules,
        Method::Put,
        "/puppet-ca/v1/certificate_status/x",
        Who::Admin
    )
    .is_allowed());
}

#[test]
fn legacy_environment_filter() {
    let rules =
        legacy("path /certificate_status\nenvironment production, testing\nallow admin.example.test\n");
    let admin = who(Who::Admin);
    let line1 = "legacy auth.conf line 1: path /certificate_status";
    let d = |env: Option<&str>, q: &[(&str, &str)]| {
        decide(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/x",
            admin.as_ref(),
            q,
            None,
            env,
        )
    };
    assert_allow(&d(Some("production"), &[]), line1);
    assert_allow(&d(Some("testing"), &[]), line1);
    assert_deny(&d(Some("staging"), &[]), "legacy default: path /");
    assert_deny(&d(None, &[]), "legacy default: path /");
    // Puppet 4/5 agents send the environment as a query parameter.
    assert_allow(&d(None, &[("environment", "production")]), line1);
}

#[test]
fn legacy_ip_patterns() {
    let rules = legacy("path /certificate_status\nauth any\nallow_ip 10.0.0.0/8, 192.168.*, 2001:db8::/32\ndeny_ip 10.0.0.5\n");
    let line1 = "legacy auth.conf line 1: path /certificate_status";
    let d = |addr: &str| {
        decide(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/x",
            None,
            &[],
            Some(ip(addr)),
            None,
        )
    };
    assert_allow(&d("10.1.2.3"), line1);
    assert_allow(&d("::ffff:10.1.2.3"), line1);
    assert_allow(&d("192.168.77.1"), line1);
    assert_allow(&d("2001:db8:1::1"), line1);
    assert_deny(&d("10.0.0.5"), line1);
    assert_deny(&d("192.169.0.1"), line1);
    assert_deny(&d("172.16.0.1"), line1);
    assert_deny(&d("2001:db9::1"), line1);
    assert_deny(
        &decide(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/x",
            None,
            &[],
            None,
            None,
        ),
        line1,
    );
    // Exact IPv6, and a name plus an IP in the same ACL.
    let rules = legacy("path /certificate_status\nallow_ip ::1\nallow admin.example.test\n");
    let agent = who(Who::Agent);
    let d = |addr: &str| {
        decide(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/x",
            agent.as_ref(),
            &[],
            Some(ip(addr)),
            None,
        )
    };
    assert!(d("::1").is_allowed());
    assert!(!d("::2").is_allowed());
    assert!(check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/x",
        Who::Admin
    )
    .is_allowed());
}

#[test]
fn legacy_declaration_order() {
    // Exact before inexact: an exact allow beats a glob deny.
    let rules = legacy("path /certificate_status\nallow agent1.example.test\ndeny *.example.test\n");
    assert!(check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/x",
        Who::Agent
    )
    .is_allowed());
    let agent2 = identity("agent2.example.test", &[]);
    assert!(!check_id(&rules, Method::Get, "/puppet-ca/v1/certificate_status/x", &agent2).is_allowed());
    // Same specificity: deny before allow.
    let rules = legacy("path /certificate_status\nallow *.example.test\ndeny *.example.test\n");
    assert!(!check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/x",
        Who::Agent
    )
    .is_allowed());
    // Longer glob first.
    let rules = legacy("path /certificate_status\ndeny *.example.test\nallow *.a.example.test\n");
    let a = identity("x.a.example.test", &[]);
    assert!(check_id(&rules, Method::Get, "/puppet-ca/v1/certificate_status/x", &a).is_allowed());
    assert!(!check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/x",
        Who::Agent
    )
    .is_allowed());
    // `allow *` allows everyone, denies notwithstanding (Ruby's global allow).
    let rules = legacy("path /certificate_status\nallow *\ndeny agent1.example.test\n");
    assert!(check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/x",
        Who::Agent
    )
    .is_allowed());
    // Regex and opaque names.
    let rules = legacy("path /certificate_status\nallow /^admin\\./, localhost\n");
    assert!(check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/x",
        Who::Admin
    )
    .is_allowed());
    assert!(!check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/x",
        Who::Agent
    )
    .is_allowed());
    let localhost = identity("LocalHost", &[]);
    assert!(check_id(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/x",
        &localhost
    )
    .is_allowed());
}

#[test]
fn legacy_file_order_and_default_override() {
    // The file's /certificate/ replaces the default of the same path: anonymous GET is no longer allowed.
    let rules = legacy("path /certificate/\nmethod find\nallow admin.example.test\n");
    assert_deny(
        &check(&rules, Method::Get, "/puppet-ca/v1/certificate/node1", Who::Anon),
        "legacy default: path /",
    );
    assert_deny(
        &check(&rules, Method::Get, "/puppet-ca/v1/certificate/node1", Who::Agent),
        "legacy auth.conf line 1: path /certificate/",
    );
    // Other defaults are still appended (certificate/ca is a different path).
    assert!(check(&rules, Method::Get, "/puppet-ca/v1/certificate/ca", Who::Anon).is_allowed());
    // First fitting ACL in file order decides, even if a later one would allow.
    let rules = legacy("path /certificate_status\ndeny agent1.example.test\npath /certificate_status/x\nallow agent1.example.test\n");
    assert_deny(
        &check(
            &rules,
            Method::Get,
            "/puppet-ca/v1/certificate_status/x",
            Who::Agent,
        ),
        "legacy auth.conf line 1: path /certificate_status",
    );
    // A declared `/` replaces the implicit one; unmatched methods then find no ACL at all.
    let rules = legacy("path /\nmethod find\nauth any\nallow *\n");
    assert!(check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/x",
        Who::Anon
    )
    .is_allowed());
    assert_deny(
        &check(
            &rules,
            Method::Delete,
            "/puppet-ca/v1/certificate_status/x",
            Who::Anon,
        ),
        "legacy: no ACL matched",
    );
}

#[test]
fn legacy_syntax_tolerance() {
    let text = "# comment\r\n\r\npath /certificate_status\r\n  method find # trailing comment\r\n\tallow admin.example.test,agent1.example.test # c\r\n  authenticated yes\r\n   # indented comment\r\n";
    let rules = legacy(text);
    assert!(check(
        &rules,
        Method::Get,
        "/puppet-ca/v1/certificate_status/x",
        Who::Agent
    )
    .is_allowed());
    assert!(!check(
        &rules,
        Method::Put,
        "/puppet-ca/v1/certificate_status/x",
        Who::Agent
    )
    .is_allowed());
}

#[test]
fn legacy_config_errors() {
    let cases: &[(&str, &[&str])] = &[
        ("allow foo.example.test\n", &["line 1", "before any 'path'"]),
        ("path /a\nbogus x\n", &["line 2", "invalid line"]),
        ("path /a\n\nallowx y\n", &["line 3", "invalid line"]),
        ("path /a\nallow\n", &["line 2", "invalid line"]),
        ("path /a\nmethod fetch\n", &["line 2", "'fetch'"]),
        ("path /a\nmethod find, find\n", &["line 2", "already"]),
        ("path /a\nenvironment a, a\n", &["line 2", "already"]),
        ("path /a\nauth maybe\n", &["line 2", "maybe"]),
        ("path /a\nallow foo bar\n", &["line 2", "invalid name pattern"]),
        ("path /a\nallow /(/\n", &["line 2", "regular expression"]),
        ("path /a\ndeny *\n", &["line 2", "'*'"]),
        (
            "path /a\nallow_ip 10.0.0.0/33\n",
            &["line 2", "invalid IP pattern"],
        ),
        (
            "path /a\nallow_ip 10.0.0.256\n",
            &["line 2", "invalid IP pattern"],
        ),
        ("path /a\nallow_ip *\n", &["line 2", "invalid IP pattern"]),
        (
            "path /a\ndeny_ip agent1.example.test\n",
            &["line 2", "invalid IP pattern"],
        ),
        ("path /a\nallow $1\n", &["line 2", "$1", "0 capture group"]),
        ("path ~ ^/a/(.+)$\nallow $2.example.test\n", &["line 2", "$2"]),
        ("path\n", &["line 1", "invalid line"]),
        ("path ~\n", &["line 1"]),
        ("path ~ (\n", &["line 1", "regular expression"]),
        ("path relative\n", &["line 1", "must start with '/'"]),
        ("path /a b\n", &["line 1", "invalid path line"]),
        ("\n\n[puppetca]\n", &["line 3", "invalid line"]),
    ];
    for (text, needles) in cases {
        assert_err_contains(AccessRules::from_legacy(text), needles);
    }
}

// ---------------------------------------------------------------------------------------------
// Names and IPs (unit level)

#[test]
fn name_pattern_classification() {
    use super::names::{BackrefDigits, NamePattern};
    let kinds: &[(&str, &str)] = &[
        ("*", "Any"),
        ("a.b", "Exact"),
        ("agent-1.example.test", "Exact"),
        ("*.example.test", "Glob"),
        ("$1", "Backref"),
        ("$1.example.test", "Backref"),
        ("node$12", "Backref"),
        ("localhost", "Opaque"),
        ("user@host", "Opaque"),
        ("/^a/", "Regex"),
        ("//", "Regex"),
    ];
    for (text, kind) in kinds {
        let p = NamePattern::parse(text, BackrefDigits::Many).unwrap();
        assert!(format!("{p:?}").starts_with(kind), "{text}: {p:?}");
    }
    for bad in [
        "", "/", "a b", "*.", "*.*.a", "**", "a*", "-a.b", ".a", "*a.b", "$0",
    ] {
        assert!(
            NamePattern::parse(bad, BackrefDigits::Many).is_err(),
            "{bad:?} should be invalid"
        );
    }
}

#[test]
fn oid_table() {
    assert_eq!(short_name_for_oid("1.3.6.1.4.1.34380.1.1.1"), Some("pp_uuid"));
    assert_eq!(short_name_for_oid("1.3.6.1.4.1.34380.1.1.13"), Some("pp_role"));
    assert_eq!(short_name_for_oid("1.3.6.1.4.1.34380.1.1.26"), Some("pp_owner"));
    assert_eq!(
        short_name_for_oid("1.3.6.1.4.1.34380.1.3.39"),
        Some("pp_cli_auth")
    );
    assert_eq!(
        oid_for_short_name("pp_auth_role").as_deref(),
        Some("1.3.6.1.4.1.34380.1.3.13")
    );
    assert_eq!(
        oid_for_short_name("pp_auth_auto_renew").as_deref(),
        Some("1.3.6.1.4.1.34380.1.3.2")
    );
    assert_eq!(short_name_for_oid("1.3.6.1.4.1.34380.1.1.27"), None);
}

#[test]
fn method_names() {
    for m in [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
    ] {
        assert_eq!(Method::parse(&m.to_string().to_uppercase()), Some(m));
    }
    assert_eq!(Method::parse("patch"), None);
}

// ---------------------------------------------------------------------------------------------
// Robustness: no panic on any input

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % (n as u64)) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    /// Mostly one of the first `valid` items (the valid ones), sometimes any.
    fn pick_mostly<'a>(&mut self, items: &[&'a str], valid: usize) -> &'a str {
        if self.below(10) < 9 {
            items[self.below(valid.min(items.len()))]
        } else {
            self.pick(items)
        }
    }
}

const FRAGMENTS: &[&str] = &[
    "authorization",
    "{",
    "}",
    "[",
    "]",
    ":",
    "=",
    ",",
    "\n",
    " ",
    "\"",
    "'",
    "version",
    "1",
    "rules",
    "match-request",
    "path",
    "type",
    "regex",
    "method",
    "get",
    "query-params",
    "allow",
    "deny",
    "*",
    "$1",
    "$9",
    "/",
    "^",
    "$",
    "(",
    ")",
    "(.+)",
    "sort-order",
    "500",
    "0",
    "-1",
    "name",
    "\"n\"",
    "extensions",
    "pp_cli_auth",
    "certname",
    "rbac",
    "allow-unauthenticated",
    "true",
    "false",
    "null",
    "${x}",
    "${?y}",
    "include",
    "#",
    "//",
    "\\",
    "\\u0000",
    "é",
    "\u{0}",
    "~",
    "auth",
    "any",
    "allow_ip",
    "10.0.0.0/8",
    "10.*",
    "::1/129",
    "environment",
    "find",
    "save",
    "*.example",
    "a.b",
    "@",
    "+=",
    "\"\"\"",
    ".",
    "..",
    "\t",
    "\r\n",
    "{{{",
    "]]]",
    "9999999999999999999999",
    "1e400",
    "[[[[",
    "=\"",
    "/a/",
    "$",
    "$$1",
];

fn garbage(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(80) {
        if rng.below(8) == 0 {
            s.push(char::from_u32((rng.next() % 0x11_0000) as u32).unwrap_or('?'));
        } else {
            s.push_str(rng.pick(FRAGMENTS));
        }
    }
    s
}

fn random_request_checks(rules: &AccessRules, rng: &mut Rng) {
    const PATHS: &[&str] = &[
        "",
        "/",
        "/puppet-ca/v1",
        "/puppet-ca/v1/",
        "/puppet-ca/v1/certificate_statuses",
        "/puppet-ca/v1/certificate/",
        "/puppet-ca/v1/certificate_status/$1",
        "/status/v1/",
        "//",
        "/puppet-ca/v1/certificate_revocation_list",
        "/puppet-ca/v1/a/b/c/d",
        "/é/ü",
        "/a\u{0}b",
        "/*",
        "/puppet-ca/v1/sign/all",
        "x",
    ];
    let methods = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
    ];
    let ids = [
        identity("", &[]),
        identity(AGENT, &[]),
        identity("*", &[("pp_cli_auth", "true")]),
        identity("$1", &[("1.3.6.1.4.1.34380.1.3.39", "true")]),
        identity("é.ü", &[]),
    ];
    for _ in 0..20 {
        let mut path = rng.pick(PATHS).to_owned();
        if rng.below(2) == 0 {
            path.push_str(&garbage(rng));
        }
        let method = methods[rng.below(methods.len())];
        let id = if rng.below(4) == 0 {
            None
        } else {
            Some(&ids[rng.below(ids.len())])
        };
        let query = [
            ("environment".to_owned(), garbage(rng)),
            (garbage(rng), garbage(rng)),
        ];
        let addr = match rng.below(3) {
            0 => None,
            1 => Some(IpAddr::from([10, 0, 0, rng.below(256) as u8])),
            _ => Some(IpAddr::V6(std::net::Ipv6Addr::from(
                (rng.next() as u128) << 64 | rng.next() as u128,
            ))),
        };
        let env = garbage(rng);
        let req = AccessRequest {
            path: &path,
            method,
            query: &query,
            identity: id,
            ip: addr,
            environment: if rng.below(2) == 0 {
                Some(env.as_str())
            } else {
                None
            },
        };
        let _ = rules.check(&req);
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let parsed_sets = [
        AccessRules::puppetserver_defaults(),
        hocon(OWN_STATUS),
        legacy(""),
        legacy("path ~ ^/certificate_status/([^/]+)$\nallow $1, *.example, /a/\nallow_ip 10.0.0.0/8\ndeny_ip ::1"),
    ];
    for _ in 0..3000 {
        let text = garbage(&mut rng);
        let h = AccessRules::from_hocon(&text);
        let l = AccessRules::from_legacy(&text);
        for rules in [h, l].into_iter().flatten() {
            random_request_checks(&rules, &mut rng);
        }
        // Wrapped in a plausible frame, so the rule-level code sees the garbage.
        let framed = format!("authorization {{ version: 1, rules: [ {{ {} }} ] }}", text);
        if let Ok(rules) = AccessRules::from_hocon(&framed) {
            random_request_checks(&rules, &mut rng);
        }
        let framed = format!("path ~ ^/(.*)/(.*)$\n{}", text);
        if let Ok(rules) = AccessRules::from_legacy(&framed) {
            random_request_checks(&rules, &mut rng);
        }
    }
    for rules in &parsed_sets {
        for _ in 0..500 {
            random_request_checks(rules, &mut rng);
        }
    }
}

#[test]
fn pathological_inputs_are_errors_not_crashes() {
    let deep = "[".repeat(5000);
    assert!(AccessRules::from_hocon(&format!("authorization {{ version: 1, rules: {deep} }}")).is_err());
    let deep = format!("a: {}", "{".repeat(5000));
    assert!(AccessRules::from_hocon(&deep).is_err());
    let huge_regex = r#"{ match-request: { path: "(((a{100}){100}){100})", type: regex }, allow: "*", sort-order: 1, name: n }"#;
    assert_err_contains(hocon_err(huge_regex), &["regular expression"]);
    assert!(AccessRules::from_legacy("path ~ (((a{100}){100}){100})\n").is_err());
    let long = "a".repeat(100_000);
    assert!(AccessRules::from_legacy(&format!("path /{long}\nallow {long}.b\n")).is_ok());
    let rules = hocon(OWN_STATUS);
    let path = format!("/puppet-ca/v1/certificate_status/{long}");
    assert!(!check(&rules, Method::Get, &path, Who::Agent).is_allowed());
    // Big back-reference numbers parse as errors, not overflows.
    assert!(hocon_err(r#"{ match-request: { path: "^(a)$", type: regex }, allow: "$99999999999999999999999", sort-order: 1, name: n }"#).is_err());
}

/// Rule sets assembled from valid and invalid field values, so that many load and reach `check`.
#[test]
fn structured_fuzz_never_panics() {
    const PATHS: &[&str] = &[
        r#"path: "/", type: path"#,
        r#"path: "/puppet-ca/v1/certificate_status", type: path"#,
        r#"path: "^/puppet-ca/v1/certificate_status/([^/]+)$", type: regex"#,
        r#"path: "^/puppet-ca/v1/([^/]*)/(.*)$", type: regex"#,
        r#"path: "(x)?(y)?", type: regex"#,
        r#"path: "", type: path"#,
        r#"path: "[", type: regex"#,
        r#"path: "/x""#,
    ];
    const EXTRAS: &[&str] = &[
        "",
        "method: get",
        "method: [get, head, post, put, delete]",
        "method: []",
        "method: patch",
        "query-params: { state: [signed, revoked] }",
        "query-params: { environment: production }",
        "query-params: { a: {} }",
    ];
    const ACLS: &[&str] = &[
        "allow-unauthenticated: true",
        r#"allow: "*""#,
        r#"deny: "*""#,
        r#"allow: "$1""#,
        r#"allow: "$2.example""#,
        r#"deny: "$1", allow: "*""#,
        r#"allow: ["*.example.test", "/^a/", "localhost", {certname: "$1"}]"#,
        r#"allow: { extensions: { pp_cli_auth: "true", "1.3.6.1.4.1.34380.1.1.13": [web, db] } }"#,
        r#"allow: { rbac: { permission: x } }, deny: "agent1.example.test""#,
        r#"allow: "bad name""#,
        "allow: []",
        "",
    ];
    const SORTS: &[&str] = &[
        "sort-order: 1",
        "sort-order: 500",
        "sort-order: 999",
        "sort-order: 0",
        "",
    ];
    const LEGACY_LINES: &[&str] = &[
        "path /",
        "path /certificate_status",
        "path ~ ^/certificate_status/([^/]+)$",
        "path ~ ^/(.*)/(.*)$",
        "path ~ (x)?",
        "method find",
        "method search, save",
        "method destroy",
        "environment production",
        "auth any",
        "auth yes",
        "allow *",
        "allow $1",
        "allow $2.example.test",
        "deny $1",
        "allow *.example.test",
        "deny agent1.example.test",
        "allow /^a/",
        "allow_ip 10.0.0.0/8",
        "deny_ip ::1",
        "allow_ip 10.*",
        "# comment",
        "",
        "bogus",
    ];
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let (mut loaded_hocon, mut loaded_legacy) = (0, 0);
    for round in 0..1500 {
        let mut rules = Vec::new();
        for i in 0..1 + rng.below(3) {
            let name = if rng.below(20) == 0 {
                String::new()
            } else {
                format!("name: \"r{i}\"")
            };
            rules.push(format!(
                "{{ match-request: {{ {}, {} }}, {}, {}, {} }}",
                rng.pick_mostly(PATHS, 6),
                rng.pick_mostly(EXTRAS, 6),
                rng.pick_mostly(ACLS, 9),
                rng.pick_mostly(SORTS, 3),
                name
            ));
        }
        let text = format!("authorization {{ version: 1, rules: [ {} ] }}", rules.join(",\n"));
        if let Ok(rules) = AccessRules::from_hocon(&text) {
            loaded_hocon += 1;
            random_request_checks(&rules, &mut rng);
        }
        let lines: Vec<&str> = (0..1 + rng.below(8)).map(|_| rng.pick(LEGACY_LINES)).collect();
        let text = if round % 2 == 0 {
            format!("path /x\n{}", lines.join("\n"))
        } else {
            lines.join("\n")
        };
        if let Ok(rules) = AccessRules::from_legacy(&text) {
            loaded_legacy += 1;
            random_request_checks(&rules, &mut rng);
        }
    }
    // Make sure the generator really reaches `check` for a good share of the rounds.
    assert!(loaded_hocon > 100, "only {loaded_hocon} HOCON sets loaded");
    assert!(loaded_legacy > 100, "only {loaded_legacy} legacy sets loaded");
}

/// The regex compiler's and the HOCON parser's errors are kept, typed, as the source of the
/// configuration error (which says where), not folded into its text.
#[test]
fn a_foreign_parse_error_is_the_source() {
    let e = AccessRules::from_legacy("path ~ ^/a(\nallow *\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "legacy auth.conf line 1: invalid regular expression \"^/a(\""
    );
    let source = std::error::Error::source(&e).expect("a source");
    assert!(source.downcast_ref::<regex::Error>().is_some(), "{source:?}");
    let e = AccessRules::from_hocon("authorization { rules: [ {").unwrap_err();
    assert_eq!(e.to_string(), "auth.conf is not valid HOCON");
    assert!(std::error::Error::source(&e).is_some());
    let e =
        hocon_err(r#"{ name: "r", match-request: { path: "(", type: regex }, allow: "*", sort-order: 1 }"#)
            .unwrap_err();
    let shown = crate::error::Chain(&e).to_string();
    assert!(
        shown.starts_with("auth.conf: authorization rule #1 (\"r\"): match-request.path: invalid regular expression \"(\": "),
        "{shown}"
    );
}
