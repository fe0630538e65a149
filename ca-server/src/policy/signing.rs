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

impl SigningOptions {
    /// Either side's permission counts.
    pub fn or(self, other: SigningOptions) -> SigningOptions {
        SigningOptions {
            allow_dns_alt_names: self.allow_dns_alt_names || other.allow_dns_alt_names,
            allow_authorization_extensions: self.allow_authorization_extensions
                || other.allow_authorization_extensions,
        }
    }
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
                 or set allow-subject-alt-names = true in the configuration.",
                names.join(", ")
            ),
            PolicyError::SanTypeNotAllowed { certname, names } => write!(
                f,
                "CSR '{certname}' contains subject alternative names of a type other than DNS and IP ({}), \
                 which are never signed.",
                names.join(", ")
            ),
            PolicyError::WildcardSan { certname, names } => write!(
                f,
                "CSR '{certname}' contains wildcard subject alternative names ({}), which are never signed.",
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
                 To allow it, sign with --allow-authorization-extensions, \
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
        let mut sans = sans;
        check_san_shapes(certname, &sans)?;
        let own = San::Dns(certname.to_string());
        if !sans.contains(&own) {
            sans.insert(0, own);
        }
        dedup_in_order(&mut sans);
        Ok(Permit {
            certname: certname.to_string(),
            sans,
            extensions,
        })
    }
}

fn dedup_in_order(sans: &mut Vec<San>) {
    let mut seen = std::collections::BTreeSet::new();
    sans.retain(|s| seen.insert(s.clone()));
}

fn check_san_shapes(certname: &str, sans: &[San]) -> Result<(), PolicyError> {
    let other: Vec<String> = sans
        .iter()
        .filter(|s| matches!(s, San::Other(_)))
        .map(San::to_string)
        .collect();
    if !other.is_empty() {
        return Err(PolicyError::SanTypeNotAllowed {
            certname: certname.into(),
            names: other,
        });
    }
    let dns = || {
        sans.iter().filter_map(|s| match s {
            San::Dns(n) => Some(n),
            _ => None,
        })
    };
    let wild: Vec<String> = dns()
        .filter(|n| n.contains('*'))
        .map(|n| format!("DNS:{n}"))
        .collect();
    if !wild.is_empty() {
        return Err(PolicyError::WildcardSan {
            certname: certname.into(),
            names: wild,
        });
    }
    let invalid: Vec<String> = dns()
        .filter(|n| !names::is_valid_syntax(&n.to_ascii_lowercase()))
        .map(|n| format!("DNS:{}", names::printable(n)))
        .collect();
    if !invalid.is_empty() {
        return Err(PolicyError::InvalidSan {
            certname: certname.into(),
            names: invalid,
        });
    }
    Ok(())
}

/// The checks of §4.3 (b)–(d) on a parsed CSR (its signature was checked when it was parsed).
pub fn check(csr: &Csr, opts: SigningOptions) -> Result<Permit, PolicyError> {
    let certname = csr.common_name.as_str();
    let own = San::Dns(certname.to_string());
    check_san_shapes(certname, &csr.sans)?;
    let extra: Vec<String> = csr
        .sans
        .iter()
        .filter(|s| **s != own)
        .map(San::to_string)
        .collect();
    if !extra.is_empty() && !opts.allow_dns_alt_names {
        return Err(PolicyError::AltNamesNotAllowed {
            certname: certname.into(),
            names: extra,
        });
    }

    let auth: Vec<String> = csr
        .extensions
        .iter()
        .filter(|e| oids::is_under(&e.oid, oids::PP_AUTH_CERT_EXT) && e.oid != oids::PP_CLI_AUTH)
        .map(|e| oids::display_name(&e.oid))
        .collect();
    if !auth.is_empty() && !opts.allow_authorization_extensions {
        return Err(PolicyError::AuthorizationExtensionNotAllowed {
            certname: certname.into(),
            names: auth,
        });
    }

    let forbidden: Vec<String> = csr
        .extensions
        .iter()
        .filter(|e| {
            let puppet = oids::is_under(&e.oid, oids::PP_REG_CERT_EXT)
                || oids::is_under(&e.oid, oids::PP_PRIV_CERT_EXT)
                || oids::is_under(&e.oid, oids::PP_AUTH_CERT_EXT);
            !puppet || e.oid == oids::PP_CLI_AUTH
        })
        .map(|e| oids::dotted(&e.oid))
        .collect();
    if !forbidden.is_empty() {
        return Err(PolicyError::ExtensionsNotPermitted(forbidden));
    }

    let mut extensions = Vec::with_capacity(csr.extensions.len());
    for e in &csr.extensions {
        let value = der::decode_string(&e.value)
            .ok_or_else(|| PolicyError::BadExtensionValue(oids::dotted(&e.oid)))?;
        extensions.push((e.oid.clone(), e.critical, der::utf8_string(&value)));
    }
    let mut sans = csr.sans.clone();
    if !sans.contains(&own) {
        sans.insert(0, own);
    }
    dedup_in_order(&mut sans);
    Ok(Permit {
        certname: certname.to_string(),
        sans,
        extensions,
    })
}
