//! PostgreSQL URLs naming several servers, in libpq's form:
//! `postgresql://user@db1:5432,db2:5432/ca?target_session_attrs=read-write`.
//!
//! sqlx's driver takes one host per URL, so the host list is split here (by hand: the `url` crate does
//! not parse a comma-separated host list) into one single-host URL per candidate, in the order given,
//! with `target_session_attrs` taken out (sqlx does not know it); which candidate is used is decided by
//! probing them (`failover.rs`). A URL with one host and no `target_session_attrs` passes through
//! unchanged.
//!
//! Nothing here panics on any input, and no error message repeats the user name, password or port text
//! of the URL it refuses.

use std::fmt;

/// libpq's `target_session_attrs`: which of the listed servers a connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionAttrs {
    /// The first server that accepts the connection (the default).
    Any,
    /// The first that accepts writes (`transaction_read_only` off): the primary.
    ReadWrite,
    /// The first that refuses writes.
    ReadOnly,
    /// The first not in recovery (`pg_is_in_recovery()` false).
    Primary,
    /// The first in recovery (a standby).
    Standby,
    /// The first standby, else the first that accepts the connection.
    PreferStandby,
}

impl SessionAttrs {
    /// The value as written in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionAttrs::Any => "any",
            SessionAttrs::ReadWrite => "read-write",
            SessionAttrs::ReadOnly => "read-only",
            SessionAttrs::Primary => "primary",
            SessionAttrs::Standby => "standby",
            SessionAttrs::PreferStandby => "prefer-standby",
        }
    }

    fn parse(value: &str) -> Option<SessionAttrs> {
        Some(match value {
            "any" => SessionAttrs::Any,
            "read-write" => SessionAttrs::ReadWrite,
            "read-only" => SessionAttrs::ReadOnly,
            "primary" => SessionAttrs::Primary,
            "standby" => SessionAttrs::Standby,
            "prefer-standby" => SessionAttrs::PreferStandby,
            _ => return None,
        })
    }

    /// Whether a server in this state qualifies (for `PreferStandby`: as a standby, the first choice).
    pub fn accepts(self, in_recovery: bool, read_only: bool) -> bool {
        match self {
            SessionAttrs::Any => true,
            SessionAttrs::ReadWrite => !read_only,
            SessionAttrs::ReadOnly => read_only,
            SessionAttrs::Primary => !in_recovery,
            SessionAttrs::Standby | SessionAttrs::PreferStandby => in_recovery,
        }
    }
}

/// One server of the list.
#[derive(Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The host as written: a name, an IPv4 address, `[IPv6]`, or a percent-encoded socket directory.
    host: String,
    /// The port, when the URL gives one.
    port: Option<u16>,
    /// The single-host URL sqlx connects with. It may hold a password: never log it.
    url: String,
}

impl Candidate {
    /// The URL to hand to sqlx (may hold a password: not for messages).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host:port` (or the host alone when the URL gives no port), for messages and logs.
    pub fn label(&self) -> String {
        let host = if self.host.is_empty() {
            "(default host)"
        } else {
            &self.host
        };
        match self.port {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        }
    }

    /// The host as written in the URL.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port given in the URL, if any.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

impl fmt::Debug for Candidate {
    /// The label only: the URL may hold a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Candidate({})", self.label())
    }
}

/// A parsed PostgreSQL URL: its servers in order, and what kind of server to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgHosts {
    /// The servers, in the order of the URL (at least one).
    pub candidates: Vec<Candidate>,
    /// `target_session_attrs` (default `any`).
    pub attrs: SessionAttrs,
}

impl PgHosts {
    /// Whether a server must be chosen by probing (several hosts, or a session kind required).
    pub fn needs_probe(&self) -> bool {
        self.candidates.len() > 1 || self.attrs != SessionAttrs::Any
    }

    /// The servers' labels, `host:port, host:port`.
    pub fn labels(&self) -> String {
        self.candidates
            .iter()
            .map(Candidate::label)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why a URL was refused. The text never repeats the user name, password or port text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database URL: {0}")]
pub struct HostsError(String);

fn bad(why: impl Into<String>) -> HostsError {
    HostsError(why.into())
}

/// The URL's scheme prefix (`postgresql://` or `postgres://`) and the rest.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    ["postgresql://", "postgres://"]
        .into_iter()
        .find_map(|s| url.strip_prefix(s).map(|rest| (s, rest)))
}

/// The authority (up to the first `/`, `?` or `#`) and what follows it.
fn split_authority(rest: &str) -> (&str, &str) {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    rest.split_at(end)
}

/// Parses `url` (already known to start with `postgresql://` or `postgres://`).
pub fn parse(url: &str) -> Result<PgHosts, HostsError> {
    let Some((scheme, rest)) = split_scheme(url) else {
        return Err(bad("not a postgresql:// URL"));
    };
    if url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad(
            "spaces and control characters must be percent-encoded (%20...)",
        ));
    }
    let (authority, tail) = split_authority(rest);
    if tail.contains('@') {
        // A user name or password holding '/', '?' or '#' unencoded ends the host list early: what
        // looks like hosts and ports would be pieces of the password.
        return Err(bad(
            "an '@' after the host list: percent-encode '@', '/', '?' and '#' in the user name, password, \
             database name and parameters (%40, %2F, %3F, %23)",
        ));
    }
    let (userinfo, hostlist) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    // The path and fragment stay as they are; the query loses target_session_attrs.
    let (before_fragment, fragment) = match tail.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (tail, None),
    };
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (before_fragment, None),
    };
    let mut attrs = None;
    let mut kept = Vec::new();
    let mut named_hosts = false;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "target_session_attrs" => {
                if attrs.is_some() {
                    return Err(bad("target_session_attrs is given twice"));
                }
                attrs = Some(SessionAttrs::parse(value).ok_or_else(|| {
                    bad(format!(
                        "target_session_attrs={value:?} is not one of any, read-write, read-only, primary, \
                         standby, prefer-standby"
                    ))
                })?);
            }
            "host" | "hostaddr" | "port" => {
                named_hosts = true;
                kept.push(pair);
            }
            _ => kept.push(pair),
        }
    }
    let attrs = attrs.unwrap_or(SessionAttrs::Any);
    let mut tail_out = path.to_string();
    if !kept.is_empty() {
        tail_out.push('?');
        tail_out.push_str(&kept.join("&"));
    }
    if let Some(f) = fragment {
        tail_out.push('#');
        tail_out.push_str(f);
    }
    let prefix = match userinfo {
        Some(u) => format!("{scheme}{u}@"),
        None => scheme.to_string(),
    };

    let entries: Vec<&str> = hostlist.split(',').collect();
    if entries.len() == 1 {
        // One server: as sqlx reads it (an empty host is its default, a socket directory works too).
        let entry = entries[0];
        let (host, port) = if entry.is_empty() {
            (String::new(), None)
        } else {
            host_and_port(entry, 1)?
        };
        return Ok(PgHosts {
            candidates: vec![Candidate {
                host,
                port,
                url: format!("{prefix}{entry}{tail_out}"),
            }],
            attrs,
        });
    }
    if named_hosts {
        return Err(bad(
            "a host list in the URL cannot be combined with host=, hostaddr= or port= parameters \
             (give each host:port in the list)",
        ));
    }
    let mut candidates = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        if entry.is_empty() {
            return Err(bad(format!(
                "host {} of the list is empty (a stray comma?)",
                i + 1
            )));
        }
        let (host, port) = host_and_port(entry, i + 1)?;
        candidates.push(Candidate {
            host,
            port,
            url: format!("{prefix}{entry}{tail_out}"),
        });
    }
    Ok(PgHosts { candidates, attrs })
}

/// One `host[:port]` entry (`n` counts from 1, for messages).
fn host_and_port(entry: &str, n: usize) -> Result<(String, Option<u16>), HostsError> {
    let (host, port) = if let Some(inner) = entry.strip_prefix('[') {
        let Some((addr, after)) = inner.split_once(']') else {
            return Err(bad(format!("host {n}: an IPv6 address without its closing ']'")));
        };
        let addr_ok = !addr.is_empty()
            && addr.contains(':')
            && addr.chars().all(|c| {
                c.is_ascii_hexdigit() || c == ':' || c == '.' || c == '%' || c.is_ascii_alphanumeric()
            });
        if !addr_ok {
            return Err(bad(format!("host {n}: not an IPv6 address between '[' and ']'")));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(port_number(p, n)?),
                None => return Err(bad(format!("host {n}: only ':port' may follow ']'"))),
            },
        };
        (format!("[{addr}]"), port)
    } else {
        let mut parts = entry.split(':');
        let host = parts.next().unwrap_or("");
        let port = parts.next();
        if parts.next().is_some() {
            return Err(bad(format!(
                "host {n}: more than one ':' (an IPv6 address goes in brackets: [::1]:5432)"
            )));
        }
        if host.is_empty() {
            return Err(bad(format!("host {n}: a port without a host")));
        }
        if host.contains(['[', ']']) {
            return Err(bad(format!("host {n}: a stray '[' or ']'")));
        }
        if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._~%!$&'()*+;=".contains(c) || !c.is_ascii())
        {
            return Err(bad(format!("host {n}: not a host name or address")));
        }
        let port = match port {
            None => None,
            Some(p) => Some(port_number(p, n)?),
        };
        (host.to_string(), port)
    };
    Ok((host, port))
}

fn port_number(text: &str, n: usize) -> Result<u16, HostsError> {
    let valid = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u16>() {
        Ok(p) if valid && p > 0 => Ok(p),
        _ => Err(bad(format!("host {n}: the port is not a number from 1 to 65535"))),
    }
}

/// The URL with its password (in the user information, or a `password=` parameter) replaced by
/// `********`. Works on host lists, and on malformed URLs: when in doubt, more is hidden.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = split_scheme(url) else {
        return "(unparsable database URL)".to_string();
    };
    // The last '@' ends the user information, wherever it is (an unencoded '/' in a password must not
    // reveal the rest of it).
    let (userinfo, after) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let mut out = scheme.to_string();
    if let Some(u) = userinfo {
        match u.find(':') {
            Some(colon) => {
                // Only the user name is shown; everything after its ':' may be password.
                let user = &u[..colon];
                if user.contains(['/', '?', '#']) {
                    out.push_str("********");
                } else {
                    out.push_str(user);
                    out.push_str(":********");
                }
            }
            None if u.contains(['/', '?', '#']) => out.push_str("********"),
            None => out.push_str(u),
        }
        out.push('@');
    }
    // A password given as a parameter.
    let (before_query, query) = match after.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (after, None),
    };
    out.push_str(before_query);
    if let Some(q) = query {
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some(("password", _)) => "password=********".to_string(),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(h: &PgHosts) -> Vec<&str> {
        h.candidates.iter().map(Candidate::url).collect()
    }

    #[test]
    fn a_host_list_becomes_one_url_per_host_in_order_without_target_session_attrs() {
        let h = parse("postgresql://ca:pw@db1:5432,db2:5433/ca?target_session_attrs=read-write").unwrap();
        assert_eq!(h.attrs, SessionAttrs::ReadWrite);
        assert_eq!(
            urls(&h),
            ["postgresql://ca:pw@db1:5432/ca", "postgresql://ca:pw@db2:5433/ca"]
        );
        assert_eq!(h.labels(), "db1:5432, db2:5433");
        assert!(h.needs_probe());
        assert_eq!(h.candidates[1].host(), "db2");
        assert_eq!(h.candidates[1].port(), Some(5433));
    }

    #[test]
    fn other_parameters_and_the_fragment_stay_on_every_url() {
        let h = parse(
            "postgres://ca@a,b:6000/ca?sslmode=require&target_session_attrs=primary&application_name=x#f",
        )
        .unwrap();
        assert_eq!(h.attrs, SessionAttrs::Primary);
        assert_eq!(
            urls(&h),
            [
                "postgres://ca@a/ca?sslmode=require&application_name=x#f",
                "postgres://ca@b:6000/ca?sslmode=require&application_name=x#f"
            ]
        );
        assert_eq!(h.candidates[0].port(), None);
        assert_eq!(h.candidates[0].label(), "a");
    }

    #[test]
    fn ipv6_addresses_in_brackets_with_and_without_port() {
        let h = parse("postgresql://ca@[::1]:5432,[fe80::1%25eth0],127.0.0.1:5433/ca").unwrap();
        assert_eq!(h.labels(), "[::1]:5432, [fe80::1%25eth0], 127.0.0.1:5433");
        assert_eq!(urls(&h)[0], "postgresql://ca@[::1]:5432/ca");
        assert_eq!(urls(&h)[1], "postgresql://ca@[fe80::1%25eth0]/ca");
        let one = parse("postgresql://[::1]:5432/ca").unwrap();
        assert_eq!(one.candidates[0].label(), "[::1]:5432");
    }

    #[test]
    fn a_single_host_url_passes_through_unchanged() {
        for u in [
            "postgresql://ca@db.example.com/ca",
            "postgresql://ca:secret@127.0.0.1:5432/ca?sslmode=disable",
            "postgresql:///ca?host=/var/run/postgresql",
            "postgresql://%2Fvar%2Frun%2Fpostgresql/ca",
            "postgres://db",
        ] {
            let h = parse(u).unwrap();
            assert_eq!(urls(&h), [u]);
            assert_eq!(h.attrs, SessionAttrs::Any);
            assert!(!h.needs_probe(), "{u}");
        }
        // With target_session_attrs: one URL without it, and a probe (is that one server writable?).
        let h = parse("postgresql://ca@db/ca?target_session_attrs=read-write").unwrap();
        assert_eq!(urls(&h), ["postgresql://ca@db/ca"]);
        assert!(h.needs_probe());
    }

    #[test]
    fn every_libpq_value_of_target_session_attrs() {
        for (v, a) in [
            ("any", SessionAttrs::Any),
            ("read-write", SessionAttrs::ReadWrite),
            ("read-only", SessionAttrs::ReadOnly),
            ("primary", SessionAttrs::Primary),
            ("standby", SessionAttrs::Standby),
            ("prefer-standby", SessionAttrs::PreferStandby),
        ] {
            let h = parse(&format!("postgresql://a,b/ca?target_session_attrs={v}")).unwrap();
            assert_eq!(h.attrs, a);
            assert_eq!(a.as_str(), v);
        }
        assert!(SessionAttrs::ReadWrite.accepts(false, false));
        assert!(!SessionAttrs::ReadWrite.accepts(true, true));
        assert!(SessionAttrs::Primary.accepts(false, true));
        assert!(SessionAttrs::Standby.accepts(true, true));
        assert!(SessionAttrs::Any.accepts(true, true));
    }

    #[test]
    fn bad_input_gets_a_clear_error_and_never_the_password_or_port_text() {
        let cases = [
            ("postgresql://a,,b/ca", "host 2 of the list is empty"),
            ("postgresql://a,b,/ca", "host 3 of the list is empty"),
            ("postgresql://,a/ca", "host 1 of the list is empty"),
            ("postgresql://a:99999,b/ca", "host 1: the port is not a number"),
            ("postgresql://a:0,b/ca", "host 1: the port is not a number"),
            ("postgresql://a,b:+12/ca", "host 2: the port is not a number"),
            ("postgresql://a,b:/ca", "host 2: the port is not a number"),
            ("postgresql://a,::1/ca", "an IPv6 address goes in brackets"),
            ("postgresql://a,[::1/ca", "without its closing ']'"),
            ("postgresql://a,[]:5/ca", "not an IPv6 address"),
            ("postgresql://a,[db]/ca", "not an IPv6 address"),
            ("postgresql://a,[::1]x/ca", "only ':port' may follow"),
            ("postgresql://a,:5432/ca", "a port without a host"),
            ("postgresql://a,b]/ca", "a stray"),
            ("postgresql://a,b\"c/ca", "not a host name"),
            (
                "postgresql://a,b/ca?target_session_attrs=writable",
                "is not one of",
            ),
            (
                "postgresql://a,b/ca?target_session_attrs=any&target_session_attrs=any",
                "given twice",
            ),
            ("postgresql://a,b/ca?port=5", "cannot be combined"),
            ("postgresql://a,b/ca?host=c", "cannot be combined"),
            ("postgresql://a b/ca", "percent-encoded"),
            ("mysql://a/b", "not a postgresql"),
            ("", "not a postgresql"),
        ];
        for (u, want) in cases {
            let e = parse(u).unwrap_err().to_string();
            assert!(e.contains(want), "{u}: {e}");
        }
        // A password with an unencoded '/' would make its pieces look like a host and a port.
        let e = parse("postgresql://ca:s3cr/et@db1,db2/ca")
            .unwrap_err()
            .to_string();
        assert!(e.contains("percent-encode"), "{e}");
        for u in [
            "postgresql://ca:s3cr/et@db1,db2/ca",
            "postgresql://ca:4321/x@h/ca",
            "postgresql://ca:s3cret@db1:xyz,db2/ca",
            "postgresql://ca:s3cret@db1:777777,db2/ca",
        ] {
            let e = parse(u).unwrap_err().to_string();
            for secret in ["s3cr", "4321", "xyz", "777777"] {
                assert!(!e.contains(secret), "{u}: {e}");
            }
        }
    }

    #[test]
    fn no_panic_on_arbitrary_input() {
        let alphabet = [
            "postgresql://",
            "@",
            ":",
            ",",
            "[",
            "]",
            "/",
            "?",
            "#",
            "=",
            "&",
            "a",
            "1",
            "%",
            "é",
        ];
        // Every string of up to 4 pieces of the alphabet, after the scheme.
        let mut frontier = vec![String::from("postgresql://")];
        for _ in 0..4 {
            let mut next = Vec::new();
            for s in &frontier {
                for p in &alphabet[1..] {
                    next.push(format!("{s}{p}"));
                }
            }
            for u in &next {
                let _ = parse(u);
                let _ = redact(u);
            }
            frontier = next;
        }
        for u in [
            "postgresql://[",
            "postgresql://[]",
            "postgresql://:",
            "postgresql://@",
            "postgres://",
        ] {
            let _ = parse(u);
            let _ = redact(u);
        }
    }

    #[test]
    fn redaction_hides_passwords_in_host_lists_malformed_urls_and_parameters() {
        assert_eq!(
            redact("postgresql://ca:hunter2@db1:5432,db2:5433/ca?target_session_attrs=read-write"),
            "postgresql://ca:********@db1:5432,db2:5433/ca?target_session_attrs=read-write"
        );
        assert_eq!(redact("postgresql://ca@db1,db2/ca"), "postgresql://ca@db1,db2/ca");
        assert_eq!(
            redact("postgresql://db/ca?user=ca&password=hunter2"),
            "postgresql://db/ca?user=ca&password=********"
        );
        for u in [
            "postgresql://ca:hun/ter2@db/ca",
            "postgresql://ca:hun@ter2@db/ca",
            "postgresql://ca:hun?ter2@db/ca",
            "postgres://ca:hunter2@[::1]:5432/ca",
        ] {
            let r = redact(u);
            assert!(!r.contains("hun") && !r.contains("ter2"), "{u} -> {r}");
        }
        assert_eq!(redact("sqlite://x"), "(unparsable database URL)");
    }
}
