//! Shared by the auth-rule fuzz targets: the requests a rule set is checked against.
//!
//! An input is an auth.conf, optionally followed by a line `%%` and one request per line:
//! `METHOD PATH[?QUERY] CERTNAME|- [ext:KEY=VALUE]... [ip:ADDR] [env:ENVIRONMENT]`. Without requests,
//! a fixed set (the CA endpoints by an anonymous caller, an agent and an admin) plus every path-like
//! word of the file itself are checked.

pub mod targets;

use std::collections::BTreeMap;
use std::net::IpAddr;

use ca_server::policy::access::{AccessRequest, AccessRules, Decision, Identity, Method};

/// One request, owned.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub identity: Option<Identity>,
    pub ip: Option<IpAddr>,
    pub environment: Option<String>,
}

impl Req {
    fn new(method: Method, path: &str, identity: Option<Identity>) -> Req {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, parse_query(q)),
            None => (path, Vec::new()),
        };
        Req {
            method,
            path: path.to_string(),
            query,
            identity,
            ip: Some(IpAddr::from([127, 0, 0, 1])),
            environment: None,
        }
    }

    fn check(&self, rules: &AccessRules) -> Decision {
        rules.check(&AccessRequest {
            path: &self.path,
            method: self.method,
            query: &self.query,
            identity: self.identity.as_ref(),
            ip: self.ip,
            environment: self.environment.as_deref(),
        })
    }
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn identity(name: &str, ext: &[(&str, &str)]) -> Identity {
    Identity {
        certname: name.to_string(),
        extensions: ext
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

const METHODS: [Method; 5] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Delete,
];

const PATHS: [&str; 14] = [
    "/puppet-ca/v1/certificate/ca",
    "/puppet-ca/v1/certificate/agent1.example.test",
    "/puppet-ca/v1/certificate_request/agent1.example.test",
    "/puppet-ca/v1/certificate_revocation_list/ca",
    "/puppet-ca/v1/certificate_revocation_list",
    "/puppet-ca/v1/certificate_status/agent1.example.test",
    "/puppet-ca/v1/certificate_statuses/any?state=requested",
    "/puppet-ca/v1/expirations",
    "/puppet-ca/v1/clean",
    "/puppet-ca/v1/sign",
    "/puppet-ca/v1/sign/all",
    "/puppet-ca/v1/certificate_renewal",
    "/status/v1/simple/ca",
    "/certificate/agent1.example.test",
];

/// The fixed set: every path × method × {anonymous, agent, admin}, plus `extra_paths`.
fn standard(extra_paths: &[String]) -> Vec<Req> {
    let callers = [
        None,
        Some(identity("agent1.example.test", &[("pp_role", "web")])),
        Some(identity("admin.example.test", &[("pp_cli_auth", "true")])),
    ];
    let mut out = Vec::new();
    let paths = PATHS
        .iter()
        .map(|p| p.to_string())
        .chain(extra_paths.iter().cloned());
    for path in paths {
        for m in METHODS {
            for who in &callers {
                out.push(Req::new(m, &path, who.clone()));
            }
        }
    }
    if let Some(r) = out.get_mut(1) {
        r.environment = Some("production".into());
    }
    out
}

/// Requests written after `%%`.
fn written(spec: &str) -> Vec<Req> {
    let mut out = Vec::new();
    for line in spec.lines().take(64) {
        let mut words = line.split_whitespace();
        let (Some(m), Some(path)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(method) = Method::parse(m) else {
            continue;
        };
        let who = match words.next() {
            None | Some("-") => None,
            Some(name) => Some(identity(name, &[])),
        };
        let mut r = Req::new(method, path, who);
        for w in words {
            if let Some(kv) = w.strip_prefix("ext:") {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                if let Some(id) = r.identity.as_mut() {
                    id.extensions.insert(k.to_string(), v.to_string());
                }
            } else if let Some(ip) = w.strip_prefix("ip:") {
                r.ip = ip.parse().ok();
            } else if let Some(env) = w.strip_prefix("env:") {
                r.environment = Some(env.to_string());
            }
        }
        out.push(r);
    }
    out
}

/// Splits an input into the auth.conf text and the requests to check.
pub fn requests(input: &str) -> (&str, Vec<Req>) {
    match input.split_once("\n%%\n") {
        Some((conf, spec)) => (conf, written(spec)),
        None => {
            // Path-like words of the file: its own rules' paths, and one level below them.
            let mut extra = Vec::new();
            for w in input
                .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
                .take(4096)
            {
                if w.starts_with('/') && w.len() < 200 && extra.len() < 32 {
                    extra.push(w.to_string());
                    extra.push(format!("{w}/x"));
                }
            }
            (input, standard(&extra))
        }
    }
}

/// Checks every request twice: no panic, and the same decision each time.
pub fn exercise(rules: &AccessRules, reqs: &[Req]) {
    for r in reqs {
        let first = r.check(rules);
        assert_eq!(first, r.check(rules), "{r:?}");
    }
}
