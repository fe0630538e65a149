//! Puppet 3's legacy `auth.conf` (PUP 3.8.7 `auth_config_parser.rb`, `rights.rb`, `authstore.rb`,
//! `authconfig.rb`; protocol §3.4).
//!
//! Requests are matched against the *indirection path*: `/puppet-ca/v1/<indirection>/<key>` becomes
//! `/<indirection>/<key>`, with the plural `certificate_statuses` read as `certificate_status`.
//!
//! Paths outside `/puppet-ca/v1/` are not covered by a Puppet 3 file (Puppet 3 had no status API):
//! in legacy mode `GET`/`HEAD` of `/status/v1/...` is allowed to anyone, as puppetserver's default
//! status rules do, and so are the relying parties' CRL (`GET`/`HEAD` of `/crl.pem`, `/crl.der`) and
//! OCSP (`GET /ocsp/...`, `POST /ocsp`), public by nature; everything else outside the CA API is
//! denied ("legacy: not a CA path").

use regex::Regex;

use super::names::{compile_regex, normalise_ip, BackrefDigits, IpPattern, Match, NamePattern};
use super::{AccessConfigError, AccessRequest, Decision, Method};

/// The CA API prefix whose rest is the indirection path.
const CA_PREFIX: &str = "/puppet-ca/v1";
/// Status API prefix allowed for GET/HEAD in legacy mode.
const STATUS_PREFIX: &str = "/status/v1/";

/// Public paths outside the CA API (the relying parties' CRL), allowed for GET/HEAD in legacy mode.
const PUBLIC_PATHS: [&str; 2] = ["/crl.pem", "/crl.der"];
/// Rule name for the relying parties' CRL.
pub(crate) const PUBLIC_ALLOWED: &str = "legacy: relying-party CRL and OCSP (built-in)";

/// Rule name for paths outside the CA API.
pub(crate) const NOT_CA_PATH: &str = "legacy: not a CA path";
/// Rule name for the status API allowance.
pub(crate) const STATUS_ALLOWED: &str = "legacy: status API (built-in)";
/// Rule name when no ACL (not even `/`) fits the request.
pub(crate) const NO_ACL: &str = "legacy: no ACL matched";

/// Indirector methods (the `method` directive's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IMethod {
    Find,
    Search,
    Save,
    Destroy,
}

const ALL_METHODS: [IMethod; 4] = [IMethod::Find, IMethod::Search, IMethod::Save, IMethod::Destroy];

impl IMethod {
    fn parse(s: &str) -> Option<IMethod> {
        match s {
            "find" => Some(IMethod::Find),
            "search" => Some(IMethod::Search),
            "save" => Some(IMethod::Save),
            "destroy" => Some(IMethod::Destroy),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            IMethod::Find => "find",
            IMethod::Search => "search",
            IMethod::Save => "save",
            IMethod::Destroy => "destroy",
        }
    }
}

/// Parsed file ACLs, then the defaults not declared by the file, then the implicit `/`.
#[derive(Debug, Clone)]
pub(crate) struct LegacyRules {
    acls: Vec<Acl>,
}

#[derive(Debug, Clone)]
enum Origin {
    Line(usize),
    Default,
}

#[derive(Debug, Clone)]
enum PathMatch {
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct Acl {
    /// The path as written (`/certificate` or `~ ^/x$`), for messages.
    spec: String,
    /// Ruby's right name (the path without `~ `), used to skip defaults the file declares.
    key: String,
    path: PathMatch,
    methods: Vec<IMethod>,
    /// Whether a `method` directive replaced the default "all methods".
    methods_restricted: bool,
    environments: Vec<String>,
    /// `true` = authenticated requests only (the default); `false` = any.
    authenticated_only: bool,
    /// `allow *`.
    global_allow: bool,
    /// Sorted most specific first (Ruby authstore order).
    declarations: Vec<Declaration>,
    origin: Origin,
}

#[derive(Debug, Clone)]
struct Declaration {
    allow: bool,
    pattern: Pattern,
}

#[derive(Debug, Clone)]
enum Pattern {
    Name(NamePattern),
    Ip(IpPattern),
}

impl Pattern {
    fn is_exact(&self) -> bool {
        match self {
            Pattern::Name(p) => p.is_exact(),
            Pattern::Ip(p) => p.is_exact(),
        }
    }

    fn is_ip(&self) -> bool {
        matches!(self, Pattern::Ip(_))
    }

    fn length(&self) -> Option<usize> {
        match self {
            Pattern::Name(p) => p.length(),
            Pattern::Ip(p) => p.length(),
        }
    }
}

fn line_error(line: usize, e: impl Into<AccessConfigError>) -> AccessConfigError {
    e.into().within(format_args!("legacy auth.conf line {line}"))
}

impl Acl {
    fn new(spec_text: &str, origin: Origin) -> Result<Acl, AccessConfigError> {
        let (key, path) = if let Some(re) = spec_text.strip_prefix('~') {
            let re = re.trim_start();
            if re.is_empty() {
                return Err("'path ~' needs a regular expression".into());
            }
            (re.to_owned(), PathMatch::Regex(compile_regex(re)?))
        } else if spec_text.starts_with('/') {
            (spec_text.to_owned(), PathMatch::Prefix(spec_text.to_owned()))
        } else {
            return Err(
                format!("invalid path {spec_text:?}: it must start with '/' or be '~ <regex>'").into(),
            );
        };
        Ok(Acl {
            spec: spec_text.to_owned(),
            key,
            path,
            methods: ALL_METHODS.to_vec(),
            methods_restricted: false,
            environments: Vec::new(),
            authenticated_only: true,
            global_allow: false,
            declarations: Vec::new(),
            origin,
        })
    }

    fn capture_groups(&self) -> usize {
        match &self.path {
            PathMatch::Prefix(_) => 0,
            PathMatch::Regex(re) => re.captures_len().saturating_sub(1),
        }
    }

    fn restrict_method(&mut self, value: &str) -> Result<(), AccessConfigError> {
        let m = IMethod::parse(value).ok_or_else(|| {
            format!("'{value}' is not an allowed value for method directive (find, search, save, destroy)")
        })?;
        if !self.methods_restricted {
            self.methods.clear();
            self.methods_restricted = true;
        }
        if self.methods.contains(&m) {
            return Err(format!("'{value}' is already in the '{}' ACL", self.spec).into());
        }
        self.methods.push(m);
        Ok(())
    }

    fn restrict_environment(&mut self, value: &str) -> Result<(), AccessConfigError> {
        if self.environments.iter().any(|e| e == value) {
            return Err(format!("'{value}' is already in the '{}' ACL", self.spec).into());
        }
        self.environments.push(value.to_owned());
        Ok(())
    }

    fn restrict_authenticated(&mut self, value: &str) -> Result<(), AccessConfigError> {
        self.authenticated_only = match value {
            "yes" | "on" | "true" => true,
            "no" | "off" | "false" | "any" | "all" => false,
            _ => return Err(format!("'{}' incorrect authenticated value: {value}", self.spec).into()),
        };
        Ok(())
    }

    fn add(&mut self, allow: bool, pattern: Pattern, source: &str) -> Result<(), AccessConfigError> {
        if let Pattern::Name(p) = &pattern {
            let highest = p.max_backref();
            let groups = self.capture_groups();
            if highest > groups {
                return Err(format!(
                    "'{source}' uses back-reference ${highest} but path '{}' has {groups} capture group(s)",
                    self.spec
                )
                .into());
            }
        }
        self.declarations.push(Declaration { allow, pattern });
        // Ruby authstore order: exact first, IP first, longer first, deny first; stable otherwise.
        self.declarations.sort_by(|a, b| {
            let key = |d: &Declaration| {
                (
                    !d.pattern.is_exact(),
                    !d.pattern.is_ip(),
                    std::cmp::Reverse(d.pattern.length().unwrap_or(0)),
                    d.allow,
                )
            };
            key(a).cmp(&key(b))
        });
        Ok(())
    }

    fn directive(&mut self, directive: &str, value: &str) -> Result<(), AccessConfigError> {
        for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match directive {
                "allow" if item == "*" => self.global_allow = true,
                "allow" | "deny" => {
                    let pattern = NamePattern::parse(item, BackrefDigits::One)?;
                    if matches!(pattern, NamePattern::Any) {
                        return Err("invalid pattern '*' for deny (an ACL denies by default)".into());
                    }
                    self.add(directive == "allow", Pattern::Name(pattern), item)?;
                }
                "allow_ip" | "deny_ip" => {
                    let pattern = IpPattern::parse(item)?;
                    self.add(directive == "allow_ip", Pattern::Ip(pattern), item)?;
                }
                "method" => self.restrict_method(item)?,
                "environment" => self.restrict_environment(item)?,
                "auth" | "authenticated" => self.restrict_authenticated(item)?,
                other => return Err(format!("unknown directive '{other}'").into()),
            }
        }
        Ok(())
    }

    fn label(&self) -> String {
        match self.origin {
            Origin::Line(n) => format!("legacy auth.conf line {n}: path {}", self.spec),
            Origin::Default => format!("legacy default: path {}", self.spec),
        }
    }

    fn location(&self) -> String {
        match self.origin {
            Origin::Line(n) => format!("line {n}"),
            Origin::Default => format!("built-in default ACL 'path {}'", self.spec),
        }
    }

    /// The path captures, when the indirection path matches.
    fn match_path<'p>(&self, path: &'p str) -> Option<Vec<Option<&'p str>>> {
        match &self.path {
            PathMatch::Prefix(prefix) => path.starts_with(prefix.as_str()).then(Vec::new),
            PathMatch::Regex(re) => re
                .captures(path)
                .map(|caps| caps.iter().skip(1).map(|m| m.map(|m| m.as_str())).collect()),
        }
    }

    /// Ruby `AuthStore#allowed?` with the interpolated declarations.
    fn allows(&self, name: Option<&str>, ip: Option<std::net::IpAddr>, captures: &[Option<&str>]) -> bool {
        if self.global_allow {
            return true;
        }
        for decl in &self.declarations {
            let m = match (&decl.pattern, name, ip) {
                (Pattern::Name(p), Some(name), _) => p.matches(name, captures),
                (Pattern::Ip(p), _, Some(ip)) => p.matches(ip).into(),
                _ => Match::No,
            };
            match m {
                Match::Yes => return decl.allow,
                // A back-reference that substitutes into garbage: a deny entry fails closed.
                Match::Invalid if !decl.allow => return false,
                Match::Invalid | Match::No => {}
            }
        }
        false
    }
}

/// Puppet 3.8.7 `Puppet::Network::AuthConfig::DEFAULT_ACL` (path, methods, authenticated only, allow).
const DEFAULT_ACLS: &[(&str, &[IMethod], bool, &str)] = &[
    ("~ ^/catalog/([^/]+)$", &[IMethod::Find], true, "$1"),
    ("~ ^/node/([^/]+)$", &[IMethod::Find], true, "$1"),
    ("/file", &ALL_METHODS, true, "*"),
    ("/certificate_revocation_list/ca", &[IMethod::Find], true, "*"),
    ("~ ^/report/([^/]+)$", &[IMethod::Save], true, "$1"),
    ("/certificate/ca", &[IMethod::Find], false, "*"),
    ("/certificate/", &[IMethod::Find], false, "*"),
    (
        "/certificate_request",
        &[IMethod::Find, IMethod::Save],
        false,
        "*",
    ),
    ("/status", &[IMethod::Find], true, "*"),
    ("/v2.0/environments", &[IMethod::Find], true, "*"),
];

fn default_acl(
    spec: &str,
    methods: &[IMethod],
    authenticated_only: bool,
    allow: &str,
) -> Result<Acl, AccessConfigError> {
    let mut acl = Acl::new(spec, Origin::Default)?;
    acl.methods = methods.to_vec();
    acl.methods_restricted = true;
    acl.authenticated_only = authenticated_only;
    acl.directive("allow", allow)?;
    Ok(acl)
}

/// Split a directive line into (directive, value without trailing comment).
fn split_directive(line: &str) -> Option<(&str, &str)> {
    let line = line.trim_start();
    let end = line.find(char::is_whitespace)?;
    let (word, rest) = line.split_at(end);
    let value = rest.split('#').next().unwrap_or("").trim();
    (!value.is_empty()).then_some((word, value))
}

const DIRECTIVES: &[&str] = &[
    "allow",
    "allow_ip",
    "deny",
    "deny_ip",
    "method",
    "environment",
    "auth",
    "authenticated",
];

impl LegacyRules {
    /// Parse a legacy file and append the defaults.
    pub(crate) fn parse(text: &str) -> Result<LegacyRules, AccessConfigError> {
        let mut acls: Vec<Acl> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let number = index.saturating_add(1);
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            if let Some(rest) = trimmed
                .strip_prefix("path")
                .filter(|r| r.starts_with(char::is_whitespace))
            {
                let spec = rest.trim();
                let spec_body = spec.strip_prefix('~').map_or(spec, str::trim_start);
                if spec_body.is_empty() || spec_body.contains(char::is_whitespace) {
                    return Err(line_error(number, format!("invalid path line: {trimmed}")));
                }
                let spec = if spec.starts_with('~') {
                    format!("~ {spec_body}")
                } else {
                    spec.to_owned()
                };
                acls.push(Acl::new(&spec, Origin::Line(number)).map_err(|e| line_error(number, e))?);
                continue;
            }
            let Some((directive, value)) = split_directive(trimmed).filter(|(d, _)| DIRECTIVES.contains(d))
            else {
                return Err(line_error(number, format!("invalid line: {trimmed}")));
            };
            let Some(acl) = acls.last_mut() else {
                return Err(line_error(
                    number,
                    format!("'{directive}' directive before any 'path' line"),
                ));
            };
            acl.directive(directive, value)
                .map_err(|e| line_error(number, e))?;
        }

        let mut defaults = Vec::new();
        for (spec, methods, authenticated_only, allow) in DEFAULT_ACLS {
            let acl = default_acl(spec, methods, *authenticated_only, allow)
                .map_err(|e| e.within(format_args!("built-in legacy default {spec}")))?;
            if !acls.iter().any(|a| a.key == acl.key) {
                defaults.push(acl);
            }
        }
        acls.extend(defaults);
        if !acls.iter().any(|a| a.key == "/") {
            let mut deny_all = Acl::new("/", Origin::Default)?;
            deny_all.authenticated_only = false;
            acls.push(deny_all);
        }
        Ok(LegacyRules { acls })
    }

    /// Decide (see the module documentation for paths outside the CA API).
    pub(crate) fn check(&self, req: &AccessRequest<'_>) -> Decision {
        let rest = match req.path.strip_prefix(CA_PREFIX) {
            Some(rest) if rest.is_empty() || rest.starts_with('/') => rest,
            _ => {
                if req.path.starts_with(STATUS_PREFIX) && matches!(req.method, Method::Get | Method::Head) {
                    return Decision::Allow {
                        rule: STATUS_ALLOWED.to_owned(),
                    };
                }
                let ocsp = req.path == "/ocsp" || req.path.starts_with("/ocsp/");
                if (PUBLIC_PATHS.contains(&req.path) || ocsp)
                    && matches!(req.method, Method::Get | Method::Head)
                    || req.path == "/ocsp" && req.method == Method::Post
                {
                    return Decision::Allow {
                        rule: PUBLIC_ALLOWED.to_owned(),
                    };
                }
                return Decision::Deny {
                    rule: NOT_CA_PATH.to_owned(),
                    reason: format!(
                        "{} {} is outside /puppet-ca/v1/ and not covered by a legacy auth.conf",
                        req.method.as_str().to_ascii_uppercase(),
                        req.path
                    ),
                };
            }
        };
        let (path, plural) = indirection_path(rest);
        let find = if plural { IMethod::Search } else { IMethod::Find };
        let methods: &[IMethod] = match req.method {
            Method::Get | Method::Post => &[find],
            Method::Put => &[IMethod::Save],
            Method::Delete => &[IMethod::Destroy],
            Method::Head => &[find, IMethod::Save],
        };
        let mut first_denial = None;
        for m in methods {
            let decision = self.check_method(req, &path, *m);
            if decision.is_allowed() {
                return decision;
            }
            first_denial.get_or_insert(decision);
        }
        first_denial.unwrap_or_else(|| Decision::Deny {
            rule: NO_ACL.to_owned(),
            reason: "no indirector method for this request".to_owned(),
        })
    }

    fn check_method(&self, req: &AccessRequest<'_>, path: &str, method: IMethod) -> Decision {
        let name = req.authenticated_name();
        let authenticated = name.is_some();
        let environment = req.environment.or_else(|| {
            req.query
                .iter()
                .find(|(k, _)| k == "environment")
                .map(|(_, v)| v.as_str())
        });
        let ip = req.ip.map(normalise_ip);
        for acl in &self.acls {
            let Some(captures) = acl.match_path(path) else {
                continue;
            };
            if !acl.methods.contains(&method) {
                continue;
            }
            if !acl.environments.is_empty()
                && !environment.is_some_and(|e| acl.environments.iter().any(|a| a == e))
            {
                continue;
            }
            if acl.authenticated_only && !authenticated {
                continue;
            }
            if acl.allows(name, ip, &captures) {
                return Decision::Allow { rule: acl.label() };
            }
            return Decision::Deny {
                rule: acl.label(),
                reason: forbidden(name, ip, path, method, authenticated, &acl.location()),
            };
        }
        Decision::Deny {
            rule: NO_ACL.to_owned(),
            reason: forbidden(name, ip, path, method, authenticated, "no matching ACL"),
        }
    }
}

/// Puppet 3's denial message.
fn forbidden(
    name: Option<&str>,
    ip: Option<std::net::IpAddr>,
    path: &str,
    method: IMethod,
    authenticated: bool,
    location: &str,
) -> String {
    let ip = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let who = match name {
        Some(name) => format!("{name}({ip})"),
        None => ip,
    };
    let auth = if authenticated { " authenticated" } else { "" };
    format!(
        "Forbidden request: {who} access to {path} [{}]{auth} at {location}",
        method.as_str()
    )
}

/// `/<indirection>/<key>` from the part after `/puppet-ca/v1`, and whether the indirection was plural.
fn indirection_path(rest: &str) -> (String, bool) {
    let trimmed = rest.strip_prefix('/').unwrap_or(rest);
    let (indirection, key) = match trimmed.split_once('/') {
        Some((i, k)) => (i, Some(k)),
        None => (trimmed, None),
    };
    let (indirection, plural) = match indirection {
        "certificate_statuses" => ("certificate_status", true),
        other => (other, false),
    };
    let path = match key {
        Some(key) => format!("/{indirection}/{key}"),
        None => format!("/{indirection}"),
    };
    (path, plural)
}
