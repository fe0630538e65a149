//! Name and IP patterns shared by both rule formats, following Puppet's Ruby `authstore.rb` (which
//! trapperkeeper-authorization ported), plus the Puppet extension short-name table.
//!
//! Name patterns, tried in this order (the order matters, e.g. `$1.example.com` is a back-reference):
//! - `*` — any name (handled by the callers: "any authenticated" for HOCON, global allow for legacy);
//! - a full host name `^(\w[-\w]*\.)+[-\w]+$` — exact, case-insensitive, compared label by label;
//! - `*.domain.com` (`^\*(\.\w[-\w]*)+$`) — the leftmost label is a wildcard: matches every name whose
//!   lowercase reversed labels start with the pattern's (so `a.domain.com`, `a.b.domain.com` and, as in
//!   Ruby and tk-authorization, `domain.com` itself);
//! - anything containing `$<digit>` — a back-reference into the path regex captures;
//! - an opaque name `^\w[-.@\w]*$` (e.g. a single-label `localhost`) — exact, case-insensitive;
//! - `/regex/` — searched in the name, case-sensitive.
//!
//! `\w` is ASCII (`[A-Za-z0-9_]`), as in Ruby and Java.

use crate::ca::oids;
use std::net::IpAddr;

use regex::Regex;

use super::AccessConfigError;

/// Largest compiled size accepted for a regex from a config file (bytes of program).
const REGEX_SIZE_LIMIT: usize = 2 << 20;

/// Compile a regex from configuration text with conservative resource limits.
pub(crate) fn compile_regex(pattern: &str) -> Result<Regex, AccessConfigError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| AccessConfigError::caused(format!("invalid regular expression {pattern:?}"), e))
}

/// The Puppet short name of a dotted OID (`pp_uuid` for 1.3.6.1.4.1.34380.1.1.1), if it has one.
pub fn short_name_for_oid(oid: &str) -> Option<&'static str> {
    oids::parse_dotted(oid).and_then(|arcs| oids::short_name(&arcs))
}

/// The dotted OID of a Puppet short name, if it is one.
pub fn oid_for_short_name(short: &str) -> Option<String> {
    oids::parse_dotted(short)
        .is_none()
        .then(|| oids::from_name(short))
        .flatten()
        .map(|arcs| oids::dotted(&arcs))
}

/// The key under which an extension is compared: the short name when Puppet has one, else the key as given.
pub(crate) fn canonical_extension_key(key: &str) -> String {
    short_name_for_oid(key).map_or_else(|| key.to_owned(), str::to_owned)
}

/// Look up an extension (by canonical key) in an identity's map, which may use either spelling.
pub(crate) fn extension_value<'a>(
    extensions: &'a std::collections::BTreeMap<String, String>,
    canonical_key: &str,
) -> Option<&'a str> {
    if let Some(v) = extensions.get(canonical_key) {
        return Some(v.as_str());
    }
    oid_for_short_name(canonical_key)
        .and_then(|oid| extensions.get(&oid))
        .map(String::as_str)
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `\w[-\w]*`
fn is_word_label(label: &str) -> bool {
    let mut chars = label.chars();
    chars.next().is_some_and(is_word) && chars.all(|c| is_word(c) || c == '-')
}

/// `^(\w[-\w]*\.)+[-\w]+$`
fn is_full_hostname(s: &str) -> bool {
    let labels: Vec<&str> = s.split('.').collect();
    match labels.split_last() {
        Some((last, init)) if !init.is_empty() => {
            init.iter().all(|l| is_word_label(l))
                && !last.is_empty()
                && last.chars().all(|c| is_word(c) || c == '-')
        }
        _ => false,
    }
}

/// `^\*(\.(\w[-\w]*)){1,}$`: returns the labels after `*.`.
fn glob_labels(s: &str) -> Option<Vec<&str>> {
    let rest = s.strip_prefix("*.")?;
    let labels: Vec<&str> = rest.split('.').collect();
    labels.iter().all(|l| is_word_label(l)).then_some(labels)
}

/// `^\w[-.@\w]*$`
fn is_opaque(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_word) && chars.all(|c| is_word(c) || c == '-' || c == '.' || c == '@')
}

/// Whether the text contains `$<digit>`.
fn has_backref(s: &str) -> bool {
    s.as_bytes()
        .windows(2)
        .any(|w| matches!(w, [b'$', d] if d.is_ascii_digit()))
}

/// Ruby `name.downcase.split(".").reverse` (trailing empty labels dropped, as Ruby and Java split do).
pub(crate) fn munge_name(name: &str) -> Vec<String> {
    let lower = name.to_lowercase();
    let mut labels: Vec<String> = lower.split('.').map(str::to_owned).collect();
    while labels.last().is_some_and(|l| l.is_empty()) {
        labels.pop();
    }
    labels.reverse();
    labels
}

/// Puppet's domain glob (`*.domain` in auth.conf and autosign.conf): whether `name` is in the domain
/// whose lowercase labels, reversed, are `domain`, or is that domain itself.
pub(crate) fn in_domain(domain: &[String], name: &str) -> bool {
    let n = munge_name(name);
    n.len() >= domain.len() && n.iter().zip(domain).all(|(a, b)| a == b)
}

/// Result of matching one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    Yes,
    No,
    /// A back-reference substituted into something that is not a valid exact name.
    Invalid,
}

impl From<bool> for Match {
    fn from(b: bool) -> Self {
        if b {
            Match::Yes
        } else {
            Match::No
        }
    }
}

/// How `$N` is read: tk-authorization reads all digits (`$12`), Ruby one digit (`$1` then `2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BackrefDigits {
    Many,
    One,
}

/// A parsed name pattern (see the module documentation).
#[derive(Debug, Clone)]
pub(crate) enum NamePattern {
    /// `*`.
    Any,
    /// A full host name: its lowercase labels, reversed.
    Exact(Vec<String>),
    /// `*.domain`: the lowercase labels after the `*`, reversed.
    Glob(Vec<String>),
    /// A pattern with `$N` back-references (lowercased template, as Ruby munges it).
    Backref { template: String, digits: BackrefDigits },
    /// An opaque name, lowercased.
    Opaque(String),
    /// `/regex/`.
    Regex(Regex),
}

impl NamePattern {
    /// Classify and compile a name pattern. Errors carry a short explanation.
    pub(crate) fn parse(value: &str, digits: BackrefDigits) -> Result<NamePattern, AccessConfigError> {
        if value == "*" {
            return Ok(NamePattern::Any);
        }
        if is_full_hostname(value) {
            return Ok(NamePattern::Exact(munge_name(value)));
        }
        if let Some(labels) = glob_labels(value) {
            let mut reversed: Vec<String> = labels.iter().map(|l| l.to_lowercase()).collect();
            reversed.reverse();
            return Ok(NamePattern::Glob(reversed));
        }
        if has_backref(value) {
            if backrefs(value, digits).any(|n| n == Some(0)) {
                return Err(
                    format!("invalid back-reference in {value:?}: groups are numbered from $1").into(),
                );
            }
            return Ok(NamePattern::Backref {
                template: value.to_lowercase(),
                digits,
            });
        }
        if is_opaque(value) {
            return Ok(NamePattern::Opaque(value.to_lowercase()));
        }
        if let Some(inner) = value.strip_prefix('/').and_then(|v| v.strip_suffix('/')) {
            return compile_regex(inner).map(NamePattern::Regex);
        }
        Err(format!(
            "invalid name pattern {value:?} (expected a host name, *.domain, $1-style back-reference, \
             /regex/ or *)"
        )
        .into())
    }

    /// The highest `$N` used, 0 if none.
    pub(crate) fn max_backref(&self) -> usize {
        match self {
            NamePattern::Backref { template, digits } => backrefs(template, *digits)
                .map(|n| n.unwrap_or(usize::MAX))
                .max()
                .unwrap_or(0),
            _ => 0,
        }
    }

    /// Ruby authstore: exact patterns sort before inexact ones.
    pub(crate) fn is_exact(&self) -> bool {
        matches!(
            self,
            NamePattern::Exact(_) | NamePattern::Backref { .. } | NamePattern::Opaque(_)
        )
    }

    /// Ruby authstore: the "length" used to sort inexact patterns (longer first).
    pub(crate) fn length(&self) -> Option<usize> {
        match self {
            NamePattern::Glob(labels) => Some(labels.len()),
            _ => None,
        }
    }

    /// Match a name; `captures` are the path regex groups (`captures[0]` is `$1`).
    pub(crate) fn matches(&self, name: &str, captures: &[Option<&str>]) -> Match {
        match self {
            NamePattern::Any => Match::Yes,
            NamePattern::Exact(labels) => (munge_name(name) == *labels).into(),
            NamePattern::Glob(labels) => in_domain(labels, name).into(),
            NamePattern::Opaque(v) => (name.to_lowercase() == *v).into(),
            NamePattern::Regex(re) => re.is_match(name).into(),
            NamePattern::Backref { template, digits } => {
                let substituted = substitute(template, *digits, captures);
                // Only an exact name may come out of a substitution: a capture of `*` or `*.x` must not
                // widen the entry (tk-authorization would re-classify it as a glob).
                if is_full_hostname(&substituted) {
                    (munge_name(name) == munge_name(&substituted)).into()
                } else if is_opaque(&substituted) {
                    (name.to_lowercase() == substituted.to_lowercase()).into()
                } else {
                    Match::Invalid
                }
            }
        }
    }
}

/// Iterate the group numbers of `$N` back-references (`None` when the number does not fit a usize).
fn backrefs(template: &str, digits: BackrefDigits) -> impl Iterator<Item = Option<usize>> + '_ {
    let mut rest = template;
    std::iter::from_fn(move || loop {
        let pos = rest.find('$')?;
        let after = rest.get(pos + 1..).unwrap_or("");
        let len = digit_run(after, digits);
        if len == 0 {
            rest = after;
            continue;
        }
        let number = after.get(..len).and_then(|d| d.parse::<usize>().ok());
        rest = after.get(len..).unwrap_or("");
        return Some(number);
    })
}

fn digit_run(s: &str, digits: BackrefDigits) -> usize {
    let run = s.bytes().take_while(u8::is_ascii_digit).count();
    match digits {
        BackrefDigits::Many => run,
        BackrefDigits::One => run.min(1),
    }
}

/// Replace each `$N` by capture N (empty when absent).
fn substitute(template: &str, digits: BackrefDigits, captures: &[Option<&str>]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(rest.get(..pos).unwrap_or(""));
        let after = rest.get(pos + 1..).unwrap_or("");
        let len = digit_run(after, digits);
        if len == 0 {
            out.push('$');
            rest = after;
            continue;
        }
        let value = after
            .get(..len)
            .and_then(|d| d.parse::<usize>().ok())
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| captures.get(i).copied().flatten())
            .unwrap_or("");
        out.push_str(value);
        rest = after.get(len..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

/// An `allow_ip`/`deny_ip` pattern (also a `trusted-proxies` entry): exact address, CIDR, or `10.1.*`
/// wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpPattern {
    /// One address.
    Exact(IpAddr),
    /// A network (its address masked to the prefix).
    Net(ipnet::IpNet),
}

impl IpPattern {
    /// Parse as Ruby authstore's `parse_ip` does.
    pub fn parse(value: &str) -> Result<IpPattern, String> {
        let invalid = || format!("invalid IP pattern {value:?}");
        if value.contains('/') {
            let net: ipnet::IpNet = value.parse().map_err(|_| invalid())?;
            return Ok(IpPattern::Net(net.trunc()));
        }
        if let Some(prefix) = value.strip_suffix(".*") {
            let octets: Vec<&str> = prefix.split('.').collect();
            if octets.is_empty() || octets.len() > 3 {
                return Err(invalid());
            }
            let mut full = [0u8; 4];
            for (slot, octet) in full.iter_mut().zip(&octets) {
                *slot = parse_octet(octet).ok_or_else(invalid)?;
            }
            let bits = u8::try_from(octets.len() * 8).map_err(|_| invalid())?;
            let net = ipnet::IpNet::new(IpAddr::from(full), bits).map_err(|_| invalid())?;
            return Ok(IpPattern::Net(net));
        }
        value
            .parse::<IpAddr>()
            .map(|a| IpPattern::Exact(normalise_ip(a)))
            .map_err(|_| invalid())
    }

    /// Ruby authstore: all IP patterns but exact addresses are inexact.
    pub(crate) fn is_exact(&self) -> bool {
        matches!(self, IpPattern::Exact(_))
    }

    /// Ruby authstore: the prefix length, for sorting (longer first).
    pub(crate) fn length(&self) -> Option<usize> {
        match self {
            IpPattern::Exact(_) => None,
            IpPattern::Net(net) => Some(usize::from(net.prefix_len())),
        }
    }

    /// Whether the address is covered (IPv4-mapped IPv6 addresses are compared as IPv4).
    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = normalise_ip(ip);
        match self {
            IpPattern::Exact(a) => *a == ip,
            IpPattern::Net(net) => net.contains(&ip),
        }
    }
}

impl std::fmt::Display for IpPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpPattern::Exact(a) => write!(f, "{a}"),
            IpPattern::Net(net) => write!(f, "{net}"),
        }
    }
}

/// `\d|[1-9]\d|1\d\d|2[0-4]\d|25[0-5]`: no sign, no leading zero.
fn parse_octet(s: &str) -> Option<u8> {
    if s.is_empty()
        || s.len() > 3
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) to IPv4, so dual-stack listeners compare like IPv4 ones.
pub(crate) fn normalise_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}
