//! The signing checks of §4.3, made explicit: alt names and authorization extensions need a permission
//! (a flag on this signing, or the global switch), wildcard SANs and SAN types other than DNS and IP are
//! refused, and only Puppet's extension arcs may be copied into a certificate.

use std::fmt;

use crate::ca::csr::{Csr, San};
use crate::ca::{der, names, oids};

/// What the caller (flags on this signing, or configuration) allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SigningOptions {
    /// Subject alternative names other than `DNS:<certname>` may be signed.
    pub allow_dns_alt_names: bool,
    /// Extensions under the authorization arc (1.3.6.1.4.1.34380.1.3) may be signed.
    pub allow_authorization_extensions: bool,
}

/// Why a request may not be signed. Each message names what refused and how to allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// SANs other than `DNS:<certname>` without permission.
    AltNamesNotAllowed {
        /// The certname.
        certname: String,
        /// The extra names, as `DNS:x` / `IP:y`.
        names: Vec<String>,
    },
    /// SAN types other than DNS and IP.
    SanTypeNotAllowed {
        /// The certname.
        certname: String,
        /// The offending entries.
        names: Vec<String>,
    },
    /// A wildcard DNS SAN.
    WildcardSan {
        /// The certname.
        certname: String,
        /// The offending entries.
        names: Vec<String>,
    },
    /// A DNS SAN that is not a host name.
    InvalidSan {
        /// The certname.
        certname: String,
        /// The offending entries.
        names: Vec<String>,
    },
    /// Authorization extensions without permission.
    AuthorizationExtensionNotAllowed {
        /// The certname.
        certname: String,
        /// Their names.
        names: Vec<String>,
    },
    /// Extensions outside the whitelist (and always `pp_cli_auth`).
    ExtensionsNotPermitted(Vec<String>),
    /// A Puppet extension whose value is not a string.
    BadExtensionValue(String),
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PolicyError::AltNamesNotAllowed { certname, names } => write!(
                f,
                "CSR '{certname}' contains extra subject alternative names ({}), which are disallowed. \
                 To allow them, sign with --allow-dns-alt-names (ca sign --allow-dns-alt-names {certname}), \
                 add a [[ca.alt-name-rules]] entry whose certnames match {certname}, \
                 or set allow-subject-alt-names = true in the configuration.",
                names.join(", ")
            ),
            PolicyError::SanTypeNotAllowed { certname, names } => write!(
                f,
                "CSR '{certname}' contains subject alternative names of a type other than DNS and IP ({}), \
                 which are never signed unless a [[ca.alt-name-rules]] entry for {certname} names them.",
                names.join(", ")
            ),
            PolicyError::WildcardSan { certname, names } => write!(
                f,
                "CSR '{certname}' contains wildcard subject alternative names ({}), which are never signed \
                 unless a [[ca.alt-name-rules]] entry for {certname} names them.",
                names.join(", ")
            ),
            PolicyError::InvalidSan { certname, names } => write!(
                f,
                "CSR '{certname}' contains subject alternative names that are not valid host names ({}).",
                names.join(", ")
            ),
            PolicyError::AuthorizationExtensionNotAllowed { certname, names } => write!(
                f,
                "CSR '{certname}' contains an authorization extension ({}), which is disallowed. \
                 To allow it, sign with --allow-authorization-extensions, list it in the \
                 authorization-extensions of a [[ca.alt-name-rules]] entry for {certname}, \
                 or set allow-authorization-extensions = true in the configuration.",
                names.join(", ")
            ),
            PolicyError::ExtensionsNotPermitted(oids) => {
                write!(f, "Found extensions that are not permitted: {}", oids.join(", "))
            }
            PolicyError::BadExtensionValue(oid) => {
                write!(f, "The value of extension {oid} is not a string")
            }
        }
    }
}

impl std::error::Error for PolicyError {}

/// Permission to issue exactly this profile for this certname. Only this module constructs one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    certname: String,
    sans: Vec<San>,
    extensions: Vec<(Vec<u64>, bool, Vec<u8>)>,
}

impl Permit {
    /// The certname the certificate is for.
    pub fn certname(&self) -> &str {
        &self.certname
    }
    /// SANs, `DNS:<certname>` included.
    pub fn sans(&self) -> &[San] {
        &self.sans
    }
    /// Extensions to copy: (OID, critical, DER value).
    pub fn extensions(&self) -> &[(Vec<u64>, bool, Vec<u8>)] {
        &self.extensions
    }

    /// A certificate the CA makes for itself or that an admin generates on the CA: the admin's command is
    /// the permission for its alt names; `cli_auth` adds `pp_cli_auth` (server and admin certificates).
    pub(crate) fn for_generated(
        certname: &str,
        alt_names: &[San],
        cli_auth: bool,
    ) -> Result<Permit, PolicyError> {
        let mut sans = vec![San::Dns(certname.to_string())];
        sans.extend(alt_names.iter().cloned());
        check_san_shapes(certname, &sans)?;
        dedup_in_order(&mut sans);
        let extensions = if cli_auth {
            vec![(oids::PP_CLI_AUTH.to_vec(), false, der::utf8_string("true"))]
        } else {
            Vec::new()
        };
        Ok(Permit {
            certname: certname.to_string(),
            sans,
            extensions,
        })
    }
}

impl Permit {
    /// A renewal (§1.13): the alt names and Puppet extensions of the certificate being renewed, which this
    /// CA already signed once.
    pub(crate) fn for_renewal(
        certname: &str,
        sans: Vec<San>,
        extensions: Vec<(Vec<u64>, bool, Vec<u8>)>,
    ) -> Result<Permit, PolicyError> {
        check_san_shapes(certname, &sans)?;
        let extensions = extensions
            .into_iter()
            .map(|(oid, critical, value)| {
                let puppet = oids::is_under(&oid, oids::PUPPET_ARC);
                (oid, critical && !puppet, value)
            })
            .collect();
        Ok(Permit::with_own_name(certname, sans, extensions))
    }

    /// A permit for `certname` with these alt names (its own name first unless given, each once).
    fn with_own_name(
        certname: &str,
        mut sans: Vec<San>,
        extensions: Vec<(Vec<u64>, bool, Vec<u8>)>,
    ) -> Permit {
        let own = San::Dns(certname.to_string());
        if !sans.contains(&own) {
            sans.insert(0, own);
        }
        dedup_in_order(&mut sans);
        Permit {
            certname: certname.to_string(),
            sans,
            extensions,
        }
    }
}

fn dedup_in_order(sans: &mut Vec<San>) {
    let mut seen = std::collections::BTreeSet::new();
    sans.retain(|s| seen.insert(s.clone()));
}

/// Checks the shapes of alt names the admin gave on the command line (generate, setup).
fn check_san_shapes(certname: &str, sans: &[San]) -> Result<(), PolicyError> {
    let policy = SigningPolicy::default();
    let flags = SigningOptions {
        allow_dns_alt_names: true,
        allow_authorization_extensions: false,
    };
    let verdicts: Vec<Verdict> = sans
        .iter()
        .map(|s| san_verdict(certname, s, &policy, flags))
        .collect();
    san_error(certname, &verdicts).map_or(Ok(()), Err)
}

/// A per-pattern rule (`[[ca.alt-name-rules]]`): certnames matching `certnames` may carry these alt
/// names and authorization extensions, whoever signs (admin or autosign).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AltNameRule {
    /// How the rule is named in verdicts (`alt-name-rules[1] (compile-*.example.com)`).
    pub label: String,
    /// Certname glob (`compile-*.example.com`; `*`, `?` and `[...]` as in shell globs), matched
    /// without regard to case.
    pub certnames: CertnameGlob,
    /// SANs allowed: exact (`DNS:puppet`, `IP:10.0.0.1`, `DNS:*.example.com` literally), or a
    /// `DNS:*.domain` pattern matching any non-wildcard name under that domain.
    pub allow: Vec<String>,
    /// Authorization extensions allowed, by short name or dotted OID.
    pub authorization_extensions: Vec<String>,
}

/// A certname glob of `[[ca.alt-name-rules]]` (a shell's glob; [`GLOB`] says how it matches).
pub use glob::Pattern as CertnameGlob;

/// How certname globs match: case aside, as a shell matches file names (a certname has no `/`).
const GLOB: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: false,
    require_literal_separator: false,
    require_literal_leading_dot: false,
};

impl AltNameRule {
    fn applies_to(&self, certname: &str) -> bool {
        self.certnames.matches_with(certname, GLOB)
    }

    fn allows_san(&self, san: &San) -> bool {
        let text = san.to_string();
        self.allow.iter().any(|a| {
            if a.eq_ignore_ascii_case(&text) {
                return true;
            }
            // `DNS:*.domain` matches names under the domain, never a wildcard SAN itself.
            match (a.strip_prefix("DNS:*."), san) {
                (Some(domain), San::Dns(n)) if !n.contains('*') => {
                    let n = n.to_ascii_lowercase();
                    n.ends_with(&format!(".{}", domain.to_ascii_lowercase()))
                }
                _ => false,
            }
        })
    }

    fn allows_extension(&self, oid: &[u64]) -> bool {
        self.authorization_extensions
            .iter()
            .any(|e| oids::from_name(e).as_deref() == Some(oid))
    }
}

/// The whole signing policy: global switches plus per-pattern rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SigningPolicy {
    /// puppetserver's global `allow-subject-alt-names` / `allow-authorization-extensions`.
    pub global: SigningOptions,
    /// `[[ca.alt-name-rules]]`, in file order.
    pub rules: Vec<AltNameRule>,
}

impl SigningPolicy {
    /// Whether the configured policy (the global `allow-subject-alt-names` switch, or a
    /// `[[ca.alt-name-rules]]` entry for `certname`) allows the alt name `san` whoever signs: what an
    /// IP-literal certname needs for its own address.
    pub fn allows_alt_name(&self, certname: &str, san: &San) -> bool {
        self.global.allow_dns_alt_names || rule_for(self, certname, |r| r.allows_san(san)).is_some()
    }
}

/// One SAN or extension and what the policy says of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `DNS:puppet`, `pp_auth_role`, ...
    pub item: String,
    /// Allowed?
    pub allowed: bool,
    /// Which rule allowed or refused it, and how to allow it.
    pub reason: String,
    kind: Refusal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    None,
    NeedsPermission,
    OtherType,
    Wildcard,
    Invalid,
    AuthExtension,
    Forbidden,
    BadValue,
}

/// Every SAN and extension of a request with its verdict, and the overall result.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// SAN verdicts, in request order.
    pub sans: Vec<Verdict>,
    /// Extension verdicts, in request order.
    pub extensions: Vec<Verdict>,
    /// The permit, or the first refusal (SAN shapes, then alt names, then extensions).
    pub result: Result<Permit, PolicyError>,
}

fn rule_for<'a>(
    policy: &'a SigningPolicy,
    certname: &str,
    f: impl Fn(&AltNameRule) -> bool,
) -> Option<&'a AltNameRule> {
    policy.rules.iter().find(|r| r.applies_to(certname) && f(r))
}

fn verdict(item: String, kind: Refusal, reason: String) -> Verdict {
    Verdict {
        item,
        allowed: kind == Refusal::None,
        reason,
        kind,
    }
}

fn san_verdict(certname: &str, san: &San, policy: &SigningPolicy, flags: SigningOptions) -> Verdict {
    let item = san.to_string();
    if *san == San::Dns(certname.to_string()) {
        return verdict(item, Refusal::None, "the certname itself".into());
    }
    if let Some(rule) = rule_for(policy, certname, |r| r.allows_san(san)) {
        return verdict(item, Refusal::None, format!("allowed by {}", rule.label));
    }
    let (kind, why) = match san {
        San::Other(_) => (
            Refusal::OtherType,
            "not DNS or IP: never signed unless a rule names it".to_string(),
        ),
        San::Dns(n) if n.contains('*') => (
            Refusal::Wildcard,
            "wildcard: never signed unless a rule names it".into(),
        ),
        San::Dns(n) if !names::is_valid_syntax(&n.to_ascii_lowercase()) => {
            (Refusal::Invalid, "not a valid host name".into())
        }
        _ if flags.allow_dns_alt_names => (Refusal::None, "allowed by --allow-dns-alt-names".into()),
        _ if policy.global.allow_dns_alt_names => {
            (Refusal::None, "allowed by allow-subject-alt-names = true".into())
        }
        _ => (
            Refusal::NeedsPermission,
            "needs --allow-dns-alt-names, a [[ca.alt-name-rules]] entry, or allow-subject-alt-names".into(),
        ),
    };
    verdict(item, kind, why)
}

fn extension_verdict(certname: &str, oid: &[u64], policy: &SigningPolicy, flags: SigningOptions) -> Verdict {
    let item = oids::display_name(oid);
    let puppet = oids::is_under(oid, oids::PP_REG_CERT_EXT)
        || oids::is_under(oid, oids::PP_PRIV_CERT_EXT)
        || oids::is_under(oid, oids::PP_AUTH_CERT_EXT);
    if !puppet || oid == oids::PP_CLI_AUTH {
        return verdict(
            item,
            Refusal::Forbidden,
            "not a permitted extension: never signed".into(),
        );
    }
    if !oids::is_under(oid, oids::PP_AUTH_CERT_EXT) {
        return verdict(item, Refusal::None, "a Puppet extension: copied".into());
    }
    if let Some(rule) = rule_for(policy, certname, |r| r.allows_extension(oid)) {
        return verdict(item, Refusal::None, format!("allowed by {}", rule.label));
    }
    if flags.allow_authorization_extensions {
        return verdict(
            item,
            Refusal::None,
            "allowed by --allow-authorization-extensions".into(),
        );
    }
    if policy.global.allow_authorization_extensions {
        return verdict(
            item,
            Refusal::None,
            "allowed by allow-authorization-extensions = true".into(),
        );
    }
    verdict(
        item,
        Refusal::AuthExtension,
        "authorization extension: needs --allow-authorization-extensions, a rule, or the global switch"
            .into(),
    )
}

fn names_of(verdicts: &[Verdict], kind: Refusal) -> Vec<String> {
    verdicts
        .iter()
        .filter(|v| v.kind == kind)
        .map(|v| v.item.clone())
        .collect()
}

fn san_error(certname: &str, sans: &[Verdict]) -> Option<PolicyError> {
    let c = || certname.to_string();
    let other = names_of(sans, Refusal::OtherType);
    if !other.is_empty() {
        return Some(PolicyError::SanTypeNotAllowed {
            certname: c(),
            names: other,
        });
    }
    let wild = names_of(sans, Refusal::Wildcard);
    if !wild.is_empty() {
        return Some(PolicyError::WildcardSan {
            certname: c(),
            names: wild,
        });
    }
    let invalid = names_of(sans, Refusal::Invalid);
    if !invalid.is_empty() {
        let names = invalid.iter().map(|n| names::printable(n)).collect();
        return Some(PolicyError::InvalidSan { certname: c(), names });
    }
    let needs = names_of(sans, Refusal::NeedsPermission);
    if !needs.is_empty() {
        return Some(PolicyError::AltNamesNotAllowed {
            certname: c(),
            names: needs,
        });
    }
    None
}

/// Evaluates §4.3 (b)–(d) for a parsed CSR (its signature was checked when it was parsed), item by item.
pub fn evaluate(csr: &Csr, policy: &SigningPolicy, flags: SigningOptions) -> Evaluation {
    let certname = csr.common_name.as_str();
    let sans: Vec<Verdict> = csr
        .sans
        .iter()
        .map(|s| san_verdict(certname, s, policy, flags))
        .collect();
    let mut extensions: Vec<Verdict> = csr
        .extensions
        .iter()
        .map(|e| extension_verdict(certname, &e.oid, policy, flags))
        .collect();
    let mut copied = Vec::with_capacity(csr.extensions.len());
    for (e, v) in csr.extensions.iter().zip(extensions.iter_mut()) {
        if v.allowed {
            match der::decode_string(&e.value) {
                // Puppet's extensions are never critical, whatever the request says: a critical
                // extension that verifiers do not know makes them reject the certificate.
                Some(value) => copied.push((e.oid.clone(), false, der::utf8_string(&value))),
                None => {
                    v.allowed = false;
                    v.kind = Refusal::BadValue;
                    v.reason = "the value is not a string".into();
                }
            }
        }
    }
    let result = if let Some(e) = san_error(certname, &sans) {
        Err(e)
    } else if !names_of(&extensions, Refusal::AuthExtension).is_empty() {
        Err(PolicyError::AuthorizationExtensionNotAllowed {
            certname: certname.to_string(),
            names: names_of(&extensions, Refusal::AuthExtension),
        })
    } else if !names_of(&extensions, Refusal::Forbidden).is_empty() {
        let oids = csr
            .extensions
            .iter()
            .zip(&extensions)
            .filter(|(_, v)| v.kind == Refusal::Forbidden)
            .map(|(e, _)| oids::dotted(&e.oid))
            .collect();
        Err(PolicyError::ExtensionsNotPermitted(oids))
    } else if let Some((e, _)) = csr
        .extensions
        .iter()
        .zip(&extensions)
        .find(|(_, v)| v.kind == Refusal::BadValue)
    {
        Err(PolicyError::BadExtensionValue(oids::dotted(&e.oid)))
    } else {
        Ok(Permit::with_own_name(certname, csr.sans.clone(), copied))
    };
    Evaluation {
        sans,
        extensions,
        result,
    }
}

/// The verdict alone.
pub fn check(csr: &Csr, policy: &SigningPolicy, flags: SigningOptions) -> Result<Permit, PolicyError> {
    evaluate(csr, policy, flags).result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let glob_match = |p: &str, n: &str| glob::Pattern::new(p).unwrap().matches_with(n, GLOB);
        assert!(glob_match("compile-*.example.com", "compile-1.example.com"));
        assert!(glob_match("compile-*.example.com", "COMPILE-a.b.example.com"));
        assert!(!glob_match("compile-*.example.com", "web-1.example.com"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exact2"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(glob_match("compile-?.example.com", "compile-7.example.com"));
        assert!(glob_match("compile-[ab].example.com", "compile-b.example.com"));
        assert!(!glob_match("compile-[ab].example.com", "compile-c.example.com"));
    }

    #[test]
    fn rule_patterns() {
        let r = AltNameRule {
            label: "r".into(),
            certnames: glob::Pattern::new("compile-*").unwrap(),
            allow: vec!["DNS:puppet".into(), "DNS:*.example.com".into()],
            authorization_extensions: vec!["pp_auth_role".into()],
        };
        assert!(r.allows_san(&San::Dns("puppet".into())));
        assert!(r.allows_san(&San::Dns("a.example.com".into())));
        assert!(r.allows_san(&San::Dns("*.example.com".into())), "named literally");
        assert!(!r.allows_san(&San::Dns("*.b.example.com".into())));
        assert!(!r.allows_san(&San::Dns("example.com".into())));
        assert!(r.allows_extension(&[1, 3, 6, 1, 4, 1, 34380, 1, 3, 13]));
    }
}
