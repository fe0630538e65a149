//! Certname rules (§1.4 step 3, puppetserver 7.9.5): the only gate between a name and a key in storage.

use std::fmt;

/// The longest certname we accept, in bytes.
pub const MAX_CERTNAME_LEN: usize = 255;

/// Why a certname is not acceptable; `Display` gives puppetserver's messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The CSR's CN differs from the name it was submitted under.
    Mismatch {
        /// The CN in the CSR.
        cn: String,
        /// The name in the URL.
        requested: String,
    },
    /// Uppercase characters.
    Uppercase,
    /// A `*` in the name.
    Wildcard(String),
    /// Anything else the syntax rule refuses (including empty and overlong names).
    Syntax,
    /// A name kept for the CA's own certificates (`ca`, `ca-admin`, the server's certname).
    Reserved {
        /// The name.
        name: String,
        /// What it is kept for.
        what: &'static str,
    },
    /// An IP-literal certname that the signing policy does not allow as an IP alt name.
    IpAddress(String),
    /// An IPv6 literal, which the syntax rule can never accept.
    Ipv6Address(String),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Mismatch { cn, requested } => write!(
                f,
                "Instance name \"{}\" does not match requested key \"{}\"",
                printable(cn),
                printable(requested)
            ),
            NameError::Uppercase => f.write_str("Certificate names must be lower case."),
            NameError::Wildcard(cn) => write!(
                f,
                "Subject contains a wildcard, which is not allowed: {}",
                printable(cn)
            ),
            NameError::Syntax => f.write_str("Subject hostname format is invalid"),
            NameError::Reserved { name, what } => write!(
                f,
                "The certname '{}' is reserved for {what}; choose another name",
                printable(name)
            ),
            NameError::IpAddress(name) => {
                let name = printable(name);
                write!(
                    f,
                    "The certname '{name}' is an IP address, which is refused unless the signing policy \
                     allows IP:{name} for it: set allow-subject-alt-names = true, or add a \
                     [[ca.alt-name-rules]] entry with certnames = \"{name}\" and allow = [\"IP:{name}\"] \
                     (ca generate also takes --dns-alt-names IP:{name})"
                )
            }
            NameError::Ipv6Address(name) => write!(
                f,
                "The certname '{}' is an IPv6 address, which is not a valid certname",
                printable(name)
            ),
        }
    }
}

impl std::error::Error for NameError {}

/// Escapes control characters and caps the length, so a hostile name cannot mangle a message or a log line.
pub fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(300).flat_map(char::escape_debug).collect();
    if s.chars().count() > 300 {
        out.push('…');
    }
    out
}

/// The 7.9.5 syntax rule: lowercase alphanumerics, `-`, `_` and `.`; starts and ends with `[a-z0-9]`;
/// no `-.`, `.-` or `..`; not empty; at most 255 bytes.
pub fn is_valid_syntax(name: &str) -> bool {
    let b = name.as_bytes();
    let edge = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else {
        return false;
    };
    if b.len() > MAX_CERTNAME_LEN || !edge(first) || !edge(last) {
        return false;
    }
    let chars_ok = b.iter().all(|&c| edge(c) || c == b'-' || c == b'_' || c == b'.');
    let pairs_ok = b
        .windows(2)
        .all(|w| !matches!(w, [b'-', b'.'] | [b'.', b'-'] | [b'.', b'.']));
    chars_ok && pairs_ok
}

/// Checks a name an operator or a URL gives us (no CSR involved).
pub fn validate_certname(name: &str) -> Result<(), NameError> {
    if name.chars().any(char::is_uppercase) {
        return Err(NameError::Uppercase);
    }
    if name.contains('*') {
        return Err(NameError::Wildcard(name.to_string()));
    }
    if name.parse::<std::net::Ipv6Addr>().is_ok() {
        return Err(NameError::Ipv6Address(name.to_string()));
    }
    if !is_valid_syntax(name) {
        return Err(NameError::Syntax);
    }
    Ok(())
}

/// The submission check of §1.4 step 3, in puppetserver's order.
pub fn validate_subject(requested: &str, cn: &str) -> Result<(), NameError> {
    if cn != requested {
        return Err(NameError::Mismatch {
            cn: cn.to_string(),
            requested: requested.to_string(),
        });
    }
    validate_certname(cn)
}

/// The first common name of an X.509 name, when it is a readable string.
pub fn common_name(name: &x509_parser::x509::X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_rule() {
        for ok in ["a", "node1", "agent-1.example.test", "a_b.c", "1.2.3.4", "x-y-z"] {
            assert!(is_valid_syntax(ok), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in [
            "", "-a", "a-", "a.", ".a", "a..b", "a-.b", "a.-b", "a/b", "../etc", "a b", "a\0b", "é", "_a",
            "a_", &long,
        ] {
            assert!(!is_valid_syntax(bad), "{bad:?}");
        }
        assert!(is_valid_syntax(&"a".repeat(255)));
    }

    #[test]
    fn messages_follow_puppetserver() {
        assert_eq!(
            validate_subject("agent-mismatch.example.test", "other.example.test")
                .map_err(|e| e.to_string()),
            Err("Instance name \"other.example.test\" does not match requested key \"agent-mismatch.example.test\"".into())
        );
        assert_eq!(
            validate_certname("Agent").map_err(|e| e.to_string()),
            Err("Certificate names must be lower case.".into())
        );
        assert_eq!(
            validate_certname("*.example.test").map_err(|e| e.to_string()),
            Err("Subject contains a wildcard, which is not allowed: *.example.test".into())
        );
        assert_eq!(validate_certname("bad..name"), Err(NameError::Syntax));
    }

    #[test]
    fn printable_escapes_controls() {
        assert_eq!(printable("a\nb\0"), "a\\nb\\0");
    }
}
