//! Request authorization, pure: puppetserver's HOCON `auth.conf` rules (trapperkeeper-authorization,
//! protocol §3.1–3.2) and Puppet 3's legacy `auth.conf` (§3.4). No I/O: callers read the file and pass
//! its text; [`AccessRules::check`] is a plain function of the loaded rules and the request.
//!
//! Name matching follows Puppet's Ruby `authstore.rb` in both formats (the grammar is documented in
//! `names.rs`).

mod hocon_conf;
mod legacy;
mod names;
pub(crate) use names::{in_domain, munge_name};

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

pub use names::{oid_for_short_name, short_name_for_oid, IpPattern};

/// HTTP method of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
}

impl Method {
    /// The lowercase name, as written in HOCON rules (`get`, `head`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Head => "head",
            Method::Post => "post",
            Method::Put => "put",
            Method::Delete => "delete",
        }
    }

    /// Parse a method name, case-insensitively (`GET`, `get`, ...).
    pub fn parse(name: &str) -> Option<Method> {
        match name.to_ascii_lowercase().as_str() {
            "get" => Some(Method::Get),
            "head" => Some(Method::Head),
            "post" => Some(Method::Post),
            "put" => Some(Method::Put),
            "delete" => Some(Method::Delete),
            _ => None,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who is calling: from the TLS client certificate (or trusted proxy headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// CN of the client certificate subject.
    pub certname: String,
    /// Extensions of the client cert: key = Puppet short name if it has one (pp_cli_auth, pp_role, ...),
    /// else the dotted OID; value = decoded string.
    pub extensions: BTreeMap<String, String>,
}

/// What the rules see of a request. `path` is the percent-decoded, normalised request path
/// (e.g. `/puppet-ca/v1/certificate/node1`), already translated from legacy routes.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// Percent-decoded, normalised path (`/puppet-ca/v1/...`, `/status/v1/...`).
    pub path: &'a str,
    /// HTTP method.
    pub method: Method,
    /// Decoded query parameters, in request order (a name may repeat).
    pub query: &'a [(String, String)],
    /// The caller, when it presented a (verified) client certificate. An identity whose certname is
    /// empty counts as unauthenticated (a certificate without CN authenticates nobody).
    pub identity: Option<&'a Identity>,
    /// The peer address (or the trusted proxy's client address).
    pub ip: Option<IpAddr>,
    /// The Puppet environment of a legacy route (`/production/certificate/x`), if any.
    pub environment: Option<&'a str>,
}

impl AccessRequest<'_> {
    /// The authenticated name: the identity's certname, when there is a non-empty one.
    pub(crate) fn authenticated_name(&self) -> Option<&str> {
        self.identity
            .map(|i| i.certname.as_str())
            .filter(|n| !n.is_empty())
    }
}

/// The verdict, with the rule that decided (for the log: "which rule denied").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by `rule`.
    Allow {
        /// The deciding rule (HOCON rule name, or the legacy ACL's origin).
        rule: String,
    },
    /// Denied by `rule`, with why.
    Deny {
        /// The deciding rule (HOCON rule name, legacy ACL origin, or the global deny).
        rule: String,
        /// Human-readable reason, for the server log (never for the client).
        reason: String,
    },
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    /// The rule that decided.
    pub fn rule(&self) -> &str {
        match self {
            Decision::Allow { rule } | Decision::Deny { rule, .. } => rule,
        }
    }
}

/// A config error with a clear message (which rule / which line, what is wrong) and, when another
/// crate refused a value (the HOCON parser, the regex compiler), that crate's error as its source.
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct AccessConfigError {
    what: String,
    source: Option<crate::error::Cause>,
}

impl AccessConfigError {
    /// `what` is wrong because of `cause` (kept as the source).
    pub(crate) fn caused(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        AccessConfigError {
            what: what.into(),
            source: Some(Box::new(cause)),
        }
    }

    /// The same error, said of `place` (`legacy auth.conf line 3: …`).
    pub(crate) fn within(mut self, place: impl fmt::Display) -> Self {
        self.what = format!("{place}: {}", self.what);
        self
    }

    /// The same error with advice after what is wrong (`… (quote dotted OIDs …)`).
    pub(crate) fn hint(mut self, advice: &str) -> Self {
        self.what = format!("{} ({advice})", self.what);
        self
    }
}

impl From<String> for AccessConfigError {
    fn from(what: String) -> Self {
        AccessConfigError { what, source: None }
    }
}

impl From<&str> for AccessConfigError {
    fn from(what: &str) -> Self {
        what.to_owned().into()
    }
}

/// puppetserver's default CA and status rules (protocol §3.2, puppetserver 8.x `conf.d/auth.conf`
/// restricted to the CA and status services), as a HOCON `auth.conf`. [`AccessRules::puppetserver_defaults`]
/// is this text, parsed; it is also a starting point for an operator's own file.
pub const DEFAULT_HOCON_AUTH_CONF: &str = r#"authorization: {
    version: 1
    rules: [
        {
            # ca-server's own: Prometheus metrics (counts only, no names), for scrapers without a certificate.
            match-request: {
                path: "/metrics"
                type: path
                method: get
            }
            allow-unauthenticated: true
            sort-order: 500
            name: "ca metrics"
        },
        {
            # ca-server's own: the CRL for relying parties that are not Puppet agents (short nextUpdate).
            match-request: {
                path: "^/crl\\.(pem|der)$"
                type: regex
                method: get
            }
            allow-unauthenticated: true
            sort-order: 500
            name: "ca relying-party crl"
        },
        {
            # ca-server's own: OCSP (RFC 6960), for any relying party.
            match-request: {
                path: "/ocsp"
                type: path
                method: [get, post]
            }
            allow-unauthenticated: true
            sort-order: 500
            name: "ca ocsp"
        },
        {
            # Allow nodes to retrieve the certificate they requested earlier (and the CA bundle)
            match-request: {
                path: "/puppet-ca/v1/certificate/"
                type: path
                method: get
            }
            allow-unauthenticated: true
            sort-order: 500
            name: "puppetlabs certificate"
        },
        {
            # Allow all nodes to access the certificate revocation list
            match-request: {
                path: "/puppet-ca/v1/certificate_revocation_list/ca"
                type: path
                method: get
            }
            allow-unauthenticated: true
            sort-order: 500
            name: "puppetlabs crl"
        },
        {
            # Allow nodes to request a new certificate
            match-request: {
                path: "/puppet-ca/v1/certificate_request"
                type: path
                method: [get, put]
            }
            allow-unauthenticated: true
            sort-order: 500
            name: "puppetlabs csr"
        },
        {
            # Allow nodes to renew their own certificate
            match-request: {
                path: "/puppet-ca/v1/certificate_renewal"
                type: path
                method: post
            }
            allow: "*"
            sort-order: 500
            name: "puppetlabs certificate renewal"
        },
        {
            # Allow the CA CLI to access the certificate_status endpoint
            match-request: {
                path: "/puppet-ca/v1/certificate_status"
                type: path
                method: [get, put, delete]
            }
            allow: {
                extensions: {
                    pp_cli_auth: "true"
                }
            }
            sort-order: 500
            name: "puppetlabs cert status"
        },
        {
            # Allow the CA CLI to upload CRLs for external/parent CAs
            match-request: {
                path: "^/puppet-ca/v1/certificate_revocation_list$"
                type: regex
                method: put
            }
            allow: {
                extensions: {
                    pp_cli_auth: "true"
                }
            }
            sort-order: 500
            name: "puppetlabs CRL update"
        },
        {
            # Allow the CA CLI to list all certificates
            match-request: {
                path: "/puppet-ca/v1/certificate_statuses"
                type: path
                method: get
            }
            allow: {
                extensions: {
                    pp_cli_auth: "true"
                }
            }
            sort-order: 500
            name: "puppetlabs cert statuses"
        },
        {
            # Allow any node to read the CA cert and CRL expiration dates
            match-request: {
                path: "/puppet-ca/v1/expirations"
                type: path
                method: get
            }
            allow: "*"
            sort-order: 500
            name: "puppetlabs CA cert and CRL expirations"
        },
        {
            # Allow the CA CLI to revoke and delete certificates in bulk
            match-request: {
                path: "/puppet-ca/v1/clean"
                type: path
                method: put
            }
            allow: {
                extensions: {
                    pp_cli_auth: "true"
                }
            }
            sort-order: 500
            name: "puppetlabs cert clean"
        },
        {
            # Allow the CA CLI to sign listed requests
            match-request: {
                path: "/puppet-ca/v1/sign"
                type: path
                method: post
            }
            allow: {
                extensions: {
                    pp_cli_auth: "true"
                }
            }
            sort-order: 500
            name: "puppetlabs cert sign"
        },
        {
            # Allow the CA CLI to sign every pending request
            match-request: {
                path: "/puppet-ca/v1/sign/all"
                type: path
                method: post
            }
            allow: {
                extensions: {
                    pp_cli_auth: "true"
                }
            }
            sort-order: 500
            name: "puppetlabs cert sign all"
        },
        {
            # Allow unauthenticated access to the status service endpoint
            match-request: {
                path: "/status/v1/services"
                type: path
                method: get
            }
            allow-unauthenticated: true
            sort-order: 500
            name: "puppetlabs status service - full"
        },
        {
            match-request: {
                path: "/status/v1/simple"
                type: path
                method: get
            }
            allow-unauthenticated: true
            sort-order: 500
            name: "puppetlabs status service - simple"
        },
        {
            # Deny everything else
            match-request: {
                path: "/"
                type: path
            }
            deny: "*"
            sort-order: 999
            name: "puppetlabs deny all"
        }
    ]
}
"#;

/// A loaded rule set.
#[derive(Debug, Clone)]
pub struct AccessRules {
    inner: Inner,
}

#[derive(Debug, Clone)]
enum Inner {
    Hocon(hocon_conf::HoconRules),
    Legacy(legacy::LegacyRules),
}

impl AccessRules {
    /// puppetserver's default CA and status rules (§3.2), built in: [`DEFAULT_HOCON_AUTH_CONF`], parsed.
    pub fn puppetserver_defaults() -> AccessRules {
        // The text is a constant and a unit test parses it; should it ever fail, deny everything
        // rather than run without rules.
        let rules = hocon_conf::HoconRules::parse(DEFAULT_HOCON_AUTH_CONF).unwrap_or_default();
        AccessRules {
            inner: Inner::Hocon(rules),
        }
    }

    /// Parse a puppetserver HOCON auth.conf (`authorization { version: 1, rules: [...] }`).
    ///
    /// The text must be self-contained: `include` directives are refused and `${ENV}` substitutions
    /// do not see the process environment (this function does no I/O).
    pub fn from_hocon(text: &str) -> Result<AccessRules, AccessConfigError> {
        hocon_conf::HoconRules::parse(text).map(|rules| AccessRules {
            inner: Inner::Hocon(rules),
        })
    }

    /// Parse a Puppet 3 legacy auth.conf (§3.4), with the built-in defaults appended as Puppet 3 does.
    pub fn from_legacy(text: &str) -> Result<AccessRules, AccessConfigError> {
        legacy::LegacyRules::parse(text).map(|rules| AccessRules {
            inner: Inner::Legacy(rules),
        })
    }

    /// Decide.
    pub fn check(&self, req: &AccessRequest<'_>) -> Decision {
        match &self.inner {
            Inner::Hocon(rules) => rules.check(req),
            Inner::Legacy(rules) => rules.check(req),
        }
    }

    /// Whether a HOCON file set `authorization.allow-header-cert-info: true` (false for legacy/defaults).
    pub fn allow_header_cert_info(&self) -> bool {
        match &self.inner {
            Inner::Hocon(rules) => rules.allow_header_cert_info,
            Inner::Legacy(_) => false,
        }
    }

    /// Whether these rules came from a Puppet 3 legacy file.
    pub fn is_legacy(&self) -> bool {
        matches!(self.inner, Inner::Legacy(_))
    }
}
