//! puppetserver's HOCON `auth.conf` (trapperkeeper-authorization `version: 1` rules, protocol §3.1).

use std::collections::{BTreeMap, HashMap};

use hocon::{HoconValue, ScalarType, TokenKind};
use regex::Regex;

use super::names::{
    canonical_extension_key, compile_regex, extension_value, BackrefDigits, Match, NamePattern,
};
use super::{AccessConfigError, AccessRequest, Decision, Identity, Method};

/// The decision when no rule matches (tk-authorization's message, used as the rule name).
pub(crate) const GLOBAL_DENY: &str = "global deny all - no rules matched";

/// Keys a rule may have.
const RULE_KEYS: &[&str] = &[
    "name",
    "sort-order",
    "match-request",
    "allow",
    "deny",
    "allow-unauthenticated",
];
/// Keys `match-request` may have.
const MATCH_KEYS: &[&str] = &["path", "type", "method", "query-params"];
/// Keys the `authorization` section may have.
const AUTHZ_KEYS: &[&str] = &["version", "allow-header-cert-info", "rules"];

/// Parsed and sorted rules.
#[derive(Debug, Clone, Default)]
pub(crate) struct HoconRules {
    /// Sorted by (sort-order, name).
    rules: Vec<Rule>,
    /// `authorization.allow-header-cert-info`.
    pub(crate) allow_header_cert_info: bool,
}

#[derive(Debug, Clone)]
struct Rule {
    name: String,
    sort_order: i64,
    path: PathMatch,
    /// `None` = any method.
    methods: Option<Vec<Method>>,
    /// Parameter name → accepted values.
    query_params: Vec<(String, Vec<String>)>,
    acl: Acl,
}

#[derive(Debug, Clone)]
enum PathMatch {
    /// `type: path`: literal prefix.
    Prefix(String),
    /// `type: regex`: searched in the path.
    Regex(Regex),
}

#[derive(Debug, Clone)]
enum Acl {
    AllowUnauthenticated,
    Entries { allow: Vec<Ace>, deny: Vec<Ace> },
}

#[derive(Debug, Clone)]
struct Ace {
    /// As written, for log messages.
    source: String,
    kind: AceKind,
}

#[derive(Debug, Clone)]
enum AceKind {
    Name(NamePattern),
    /// Canonical key → accepted values (all keys must be present, each equal to one of its values).
    Extensions(Vec<(String, Vec<String>)>),
    /// `{rbac: ...}`: accepted for compatibility, never matches (there is no RBAC service).
    Rbac,
}

fn config_error(msg: impl Into<String>) -> AccessConfigError {
    AccessConfigError::from(msg.into())
}

/// A scalar's text (strings, numbers and booleans; not null).
fn scalar_text(v: &HoconValue) -> Option<String> {
    match v {
        HoconValue::Scalar(s) => match s.value_type {
            ScalarType::Null => None,
            _ => Some(s.raw.clone()),
        },
        _ => None,
    }
}

fn kind_of(v: &HoconValue) -> &'static str {
    match v {
        HoconValue::Object(_) => "a map",
        HoconValue::Array(_) => "a list",
        HoconValue::Scalar(s) => match s.value_type {
            ScalarType::Null => "null",
            ScalarType::String => "a string",
            ScalarType::Number => "a number",
            ScalarType::Boolean => "a boolean",
            _ => "a scalar",
        },
        _ => "an unresolved value",
    }
}

/// A string or a list of strings (scalars accepted), as a list.
fn string_or_list(v: &HoconValue, what: &str) -> Result<Vec<String>, AccessConfigError> {
    if let Some(s) = scalar_text(v) {
        return Ok(vec![s]);
    }
    match v.as_array() {
        Some(items) => items
            .iter()
            .map(|item| {
                scalar_text(item).ok_or_else(|| {
                    format!(
                        "{what} must be a string or a list of strings, found {} in the list",
                        kind_of(item)
                    )
                    .into()
                })
            })
            .collect(),
        None => Err(format!(
            "{what} must be a string or a list of strings, found {}",
            kind_of(v)
        )
        .into()),
    }
}

/// Refuse `include` directives: the parser would read files relative to the working directory.
fn reject_includes(text: &str) -> Result<(), AccessConfigError> {
    // A tokenizer error is reported by the real parse below.
    let Ok(tokens) = hocon::tokenize(text) else {
        return Ok(());
    };
    let mut at_key_position = true;
    for token in &tokens {
        if at_key_position && token.kind == TokenKind::Unquoted && token.value == "include" {
            return Err(config_error(format!(
                "auth.conf line {}: 'include' is not supported; put the rules in this file",
                token.line
            )));
        }
        at_key_position = matches!(
            token.kind,
            TokenKind::Newline | TokenKind::LBrace | TokenKind::Comma
        );
    }
    Ok(())
}

impl HoconRules {
    /// Parse and validate a HOCON `auth.conf`.
    pub(crate) fn parse(text: &str) -> Result<HoconRules, AccessConfigError> {
        reject_includes(text)?;
        let opts = hocon::ParseOptions::defaults()
            .with_env(HashMap::new())
            .with_origin_description("auth.conf".to_owned());
        let cfg = hocon::parse_string_with_options(text, opts)
            .map_err(|e| AccessConfigError::caused("auth.conf is not valid HOCON", e))?;
        let authz = cfg
            .get("authorization")
            .ok_or_else(|| config_error("auth.conf has no 'authorization' section"))?;
        let authz = authz.as_object().ok_or_else(|| {
            config_error(format!(
                "auth.conf: 'authorization' must be a map, found {}",
                kind_of(authz)
            ))
        })?;
        for key in authz.keys() {
            if !AUTHZ_KEYS.contains(&key.as_str()) {
                return Err(config_error(format!(
                    "auth.conf: unknown key '{key}' in 'authorization' (expected one of: {})",
                    AUTHZ_KEYS.join(", ")
                )));
            }
        }
        match authz.get("version") {
            Some(v) if v.as_i64() == Some(1) => {}
            Some(v) => {
                return Err(config_error(format!(
                    "auth.conf: unsupported authorization version {}; the supported version is 1",
                    scalar_text(v).unwrap_or_else(|| kind_of(v).to_owned())
                )))
            }
            None => {
                return Err(config_error(
                    "auth.conf: missing 'authorization.version' (must be 1)",
                ))
            }
        }
        let allow_header_cert_info = match authz.get("allow-header-cert-info") {
            None => false,
            Some(v) => match v {
                HoconValue::Scalar(_) if !v.is_null() => v.as_bool(),
                _ => None,
            }
            .ok_or_else(|| {
                config_error(format!(
                    "auth.conf: 'allow-header-cert-info' must be true or false, found {}",
                    kind_of(v)
                ))
            })?,
        };
        let rules_value = authz
            .get("rules")
            .ok_or_else(|| config_error("auth.conf: missing 'authorization.rules' list"))?;
        let items = rules_value.as_array().ok_or_else(|| {
            config_error(format!(
                "auth.conf: 'authorization.rules' must be a list, found {}",
                kind_of(rules_value)
            ))
        })?;

        let mut rules = Vec::with_capacity(items.len());
        let mut seen: BTreeMap<String, usize> = BTreeMap::new();
        for (i, item) in items.iter().enumerate() {
            let number = i.saturating_add(1);
            let rule = parse_rule(number, item)?;
            if let Some(first) = seen.insert(rule.name.clone(), number) {
                return Err(config_error(format!(
                    "auth.conf: duplicate rule name \"{}\" (rules #{first} and #{number}); rule names must be unique",
                    rule.name
                )));
            }
            rules.push(rule);
        }
        rules.sort_by(|a, b| a.sort_order.cmp(&b.sort_order).then_with(|| a.name.cmp(&b.name)));
        Ok(HoconRules {
            rules,
            allow_header_cert_info,
        })
    }

    /// First matching rule decides; none → global deny.
    pub(crate) fn check(&self, req: &AccessRequest<'_>) -> Decision {
        for rule in &self.rules {
            if let Some(captures) = rule.match_request(req) {
                return rule.decide(req, &captures);
            }
        }
        Decision::Deny {
            rule: GLOBAL_DENY.to_owned(),
            reason: "no rules matched".to_owned(),
        }
    }
}

fn parse_rule(number: usize, item: &HoconValue) -> Result<Rule, AccessConfigError> {
    let obj = item.as_object().ok_or_else(|| {
        config_error(format!(
            "auth.conf: authorization rule #{number} must be a map, found {}",
            kind_of(item)
        ))
    })?;
    let name = obj.get("name").and_then(scalar_text);
    let place = match &name {
        Some(n) => format!("auth.conf: authorization rule #{number} (\"{n}\")"),
        None => format!("auth.conf: authorization rule #{number}"),
    };
    let within = |e: AccessConfigError| e.within(&place);
    let fail = |msg: String| within(msg.into());
    for key in obj.keys() {
        if !RULE_KEYS.contains(&key.as_str()) {
            return Err(fail(format!(
                "unknown key '{key}' (expected one of: {})",
                RULE_KEYS.join(", ")
            )));
        }
    }
    let name = match (obj.get("name"), &name) {
        (None, _) => return Err(fail("missing required key 'name'".to_owned())),
        (Some(_), Some(n)) if !n.trim().is_empty() => n.clone(),
        (Some(v), _) => {
            return Err(fail(format!(
                "'name' must be a non-empty string, found {}",
                kind_of(v)
            )))
        }
    };
    let sort_order = match obj.get("sort-order") {
        None => {
            return Err(fail(
                "missing required key 'sort-order' (a number from 1 to 999)".to_owned(),
            ))
        }
        Some(v) => match v.as_i64() {
            Some(n)
                if (1..=999).contains(&n)
                    && !matches!(v, HoconValue::Scalar(s) if s.value_type == ScalarType::Boolean) =>
            {
                n
            }
            _ => {
                return Err(fail(format!(
                    "invalid sort-order {}: it must be a whole number from 1 to 999",
                    scalar_text(v).unwrap_or_else(|| kind_of(v).to_owned())
                )))
            }
        },
    };

    // match-request
    let mr_value = obj
        .get("match-request")
        .ok_or_else(|| fail("missing required key 'match-request'".to_owned()))?;
    let mr = mr_value.as_object().ok_or_else(|| {
        fail(format!(
            "'match-request' must be a map, found {}",
            kind_of(mr_value)
        ))
    })?;
    for key in mr.keys() {
        if !MATCH_KEYS.contains(&key.as_str()) {
            return Err(fail(format!(
                "unknown key '{key}' in 'match-request' (expected one of: {})",
                MATCH_KEYS.join(", ")
            )));
        }
    }
    let path_text = match mr.get("path") {
        None => return Err(fail("missing required key 'match-request.path'".to_owned())),
        Some(v) => scalar_text(v).ok_or_else(|| {
            fail(format!(
                "'match-request.path' must be a string, found {}",
                kind_of(v)
            ))
        })?,
    };
    let type_text = match mr.get("type") {
        None => {
            return Err(fail(
                "missing required key 'match-request.type' (path or regex)".to_owned(),
            ))
        }
        Some(v) => scalar_text(v).ok_or_else(|| {
            fail(format!(
                "'match-request.type' must be path or regex, found {}",
                kind_of(v)
            ))
        })?,
    };
    let path = match type_text.to_ascii_lowercase().as_str() {
        "path" => PathMatch::Prefix(path_text),
        "regex" => {
            PathMatch::Regex(compile_regex(&path_text).map_err(|e| within(e.within("match-request.path")))?)
        }
        other => {
            return Err(fail(format!(
                "invalid match-request.type '{other}': it must be path or regex"
            )))
        }
    };
    let methods = match mr.get("method") {
        None => None,
        Some(v) => {
            let names = string_or_list(v, "'match-request.method'").map_err(&within)?;
            if names.is_empty() {
                return Err(fail(
                    "'match-request.method' is an empty list: the rule could never match".to_owned(),
                ));
            }
            let mut methods = Vec::with_capacity(names.len());
            for n in names {
                let m = Method::parse(&n).ok_or_else(|| {
                    fail(format!(
                        "invalid method '{n}' (expected get, post, put, delete or head)"
                    ))
                })?;
                methods.push(m);
            }
            Some(methods)
        }
    };
    let query_params = match mr.get("query-params") {
        None => Vec::new(),
        Some(v) => {
            let map = v.as_object().ok_or_else(|| {
                fail(format!(
                    "'match-request.query-params' must be a map, found {}",
                    kind_of(v)
                ))
            })?;
            let mut params = Vec::with_capacity(map.len());
            for (param, values) in map {
                let values = string_or_list(values, &format!("query-param '{param}'")).map_err(&within)?;
                params.push((param.clone(), values));
            }
            params
        }
    };

    // ACL
    let allow_unauthenticated = match obj.get("allow-unauthenticated") {
        None => false,
        Some(v) => match v {
            HoconValue::Scalar(_) if !v.is_null() => v.as_bool(),
            _ => None,
        }
        .ok_or_else(|| {
            fail(format!(
                "'allow-unauthenticated' must be true or false, found {}",
                kind_of(v)
            ))
        })?,
    };
    let has_allow = obj.contains_key("allow");
    let has_deny = obj.contains_key("deny");
    let acl = if allow_unauthenticated {
        if has_allow || has_deny {
            return Err(fail(
                "'allow-unauthenticated: true' cannot be combined with 'allow' or 'deny'".to_owned(),
            ));
        }
        Acl::AllowUnauthenticated
    } else {
        if !has_allow && !has_deny {
            return Err(fail(
                "must contain 'allow' or 'deny' (or 'allow-unauthenticated: true')".to_owned(),
            ));
        }
        let allow = obj
            .get("allow")
            .map(|v| parse_aces(v, "allow"))
            .transpose()
            .map_err(&within)?
            .unwrap_or_default();
        let deny = obj
            .get("deny")
            .map(|v| parse_aces(v, "deny"))
            .transpose()
            .map_err(&within)?
            .unwrap_or_default();
        let groups = match &path {
            PathMatch::Prefix(_) => 0,
            PathMatch::Regex(re) => re.captures_len().saturating_sub(1),
        };
        for (field, aces) in [("allow", &allow), ("deny", &deny)] {
            for ace in aces {
                if let AceKind::Name(p) = &ace.kind {
                    let highest = p.max_backref();
                    if highest > groups {
                        return Err(fail(format!(
                            "the {field} entry \"{}\" uses back-reference ${highest} but the path {} has {groups} \
                             capture group(s)",
                            ace.source,
                            match &path {
                                PathMatch::Prefix(_) => "(type path)",
                                PathMatch::Regex(_) => "regex",
                            }
                        )));
                    }
                }
            }
        }
        Acl::Entries { allow, deny }
    };

    Ok(Rule {
        name,
        sort_order,
        path,
        methods,
        query_params,
        acl,
    })
}

fn parse_aces(v: &HoconValue, field: &str) -> Result<Vec<Ace>, AccessConfigError> {
    match v.as_array() {
        Some(items) => items.iter().map(|item| parse_ace(item, field)).collect(),
        None => parse_ace(v, field).map(|ace| vec![ace]),
    }
}

fn parse_ace(v: &HoconValue, field: &str) -> Result<Ace, AccessConfigError> {
    if let Some(text) = scalar_text(v) {
        let pattern = NamePattern::parse(&text, BackrefDigits::Many).map_err(|e| e.within(field))?;
        return Ok(Ace {
            source: text,
            kind: AceKind::Name(pattern),
        });
    }
    let Some(map) = v.as_object() else {
        return Err(format!("{field} entries must be strings or maps, found {}", kind_of(v)).into());
    };
    let mut entries = map.iter();
    let (key, value) = match (entries.next(), entries.next()) {
        (Some(only), None) => only,
        _ => {
            return Err(format!(
                "{field}: a map entry must have exactly one key: certname, extensions or rbac"
            )
            .into())
        }
    };
    match key.as_str() {
        "certname" => {
            let text = scalar_text(value)
                .ok_or_else(|| format!("{field}: 'certname' must be a string, found {}", kind_of(value)))?;
            let pattern = NamePattern::parse(&text, BackrefDigits::Many).map_err(|e| e.within(field))?;
            Ok(Ace {
                source: format!("{{certname: {text}}}"),
                kind: AceKind::Name(pattern),
            })
        }
        "extensions" => {
            let ext = value
                .as_object()
                .ok_or_else(|| format!("{field}: 'extensions' must be a map, found {}", kind_of(value)))?;
            if ext.is_empty() {
                return Err(
                    format!("{field}: 'extensions' map is empty (it would match every certificate)").into(),
                );
            }
            let mut wanted = Vec::with_capacity(ext.len());
            let mut shown = Vec::with_capacity(ext.len());
            for (k, vals) in ext {
                let values = string_or_list(vals, &format!("extension '{k}'")).map_err(|e| {
                    if vals.is_object() && k.bytes().all(|b| b.is_ascii_digit()) {
                        e.within(field)
                            .hint("quote dotted OIDs: \"1.3.6.1.4.1.34380.1.3.39\": ...")
                    } else {
                        e.within(field)
                    }
                })?;
                if values.is_empty() {
                    return Err(format!("{field}: extension '{k}' has an empty list of values").into());
                }
                shown.push(format!("{k}: {}", values.join("|")));
                wanted.push((canonical_extension_key(k), values));
            }
            Ok(Ace {
                source: format!("{{extensions: {{{}}}}}", shown.join(", ")),
                kind: AceKind::Extensions(wanted),
            })
        }
        "rbac" => Ok(Ace {
            source: "{rbac: ...}".to_owned(),
            kind: AceKind::Rbac,
        }),
        other => {
            Err(format!("{field}: unknown map key '{other}' (expected certname, extensions or rbac)").into())
        }
    }
}

impl Rule {
    /// The path captures (`$1`.. as `captures[0]`..) when the request matches this rule.
    fn match_request<'p>(&self, req: &AccessRequest<'p>) -> Option<Vec<Option<&'p str>>> {
        if let Some(methods) = &self.methods {
            if !methods.contains(&req.method) {
                return None;
            }
        }
        for (param, accepted) in &self.query_params {
            let present = req
                .query
                .iter()
                .any(|(k, v)| k == param && accepted.iter().any(|a| a == v));
            if !present {
                return None;
            }
        }
        match &self.path {
            PathMatch::Prefix(prefix) => req.path.starts_with(prefix.as_str()).then(Vec::new),
            PathMatch::Regex(re) => re
                .captures(req.path)
                .map(|caps| caps.iter().skip(1).map(|m| m.map(|m| m.as_str())).collect()),
        }
    }

    fn decide(&self, req: &AccessRequest<'_>, captures: &[Option<&str>]) -> Decision {
        let (allow, deny) = match &self.acl {
            Acl::AllowUnauthenticated => {
                return Decision::Allow {
                    rule: self.name.clone(),
                }
            }
            Acl::Entries { allow, deny } => (allow, deny),
        };
        let deny_with = |reason: String| Decision::Deny {
            rule: self.name.clone(),
            reason,
        };
        let (Some(identity), Some(name)) = (req.identity, req.authenticated_name()) else {
            return deny_with("not authenticated".to_owned());
        };
        for ace in deny {
            match ace.matches(identity, name, captures) {
                Match::Yes => {
                    return deny_with(format!(
                        "authenticated name {name} matched deny entry {}",
                        ace.source
                    ))
                }
                Match::Invalid => {
                    return deny_with(format!(
                        "deny entry {} substituted the path captures into an invalid name; denying",
                        ace.source
                    ))
                }
                Match::No => {}
            }
        }
        if allow
            .iter()
            .any(|ace| ace.matches(identity, name, captures) == Match::Yes)
        {
            return Decision::Allow {
                rule: self.name.clone(),
            };
        }
        deny_with(format!("authenticated name {name} matched no allow entry"))
    }
}

impl Ace {
    fn matches(&self, identity: &Identity, name: &str, captures: &[Option<&str>]) -> Match {
        match &self.kind {
            AceKind::Name(pattern) => pattern.matches(name, captures),
            AceKind::Extensions(wanted) => wanted
                .iter()
                .all(|(key, values)| {
                    extension_value(&identity.extensions, key).is_some_and(|v| values.iter().any(|w| w == v))
                })
                .into(),
            AceKind::Rbac => Match::No,
        }
    }
}
