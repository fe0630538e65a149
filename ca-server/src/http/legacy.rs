//! Path normalisation (percent-decoding before routing and authorization, as puppetserver's
//! `normalize-request-uri`) and the Puppet 3 routes `/<environment>/<indirection>/<key>`, translated to
//! the v1 API (§1.15). Translation only: the v1 handlers and their authorization do the rest.

use axum::http::Method;

use super::extract::percent_decode;

/// Indirections the legacy routes serve, with the methods each allows.
const LEGACY: [(&str, &[Method]); 5] = [
    ("certificate", &[Method::GET, Method::HEAD]),
    ("certificate_request", &[Method::GET, Method::HEAD, Method::PUT]),
    ("certificate_revocation_list", &[Method::GET, Method::HEAD]),
    (
        "certificate_status",
        &[Method::GET, Method::HEAD, Method::PUT, Method::DELETE],
    ),
    ("certificate_statuses", &[Method::GET, Method::HEAD]),
];

/// Why a path is refused before routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Bad `%` escape or not UTF-8.
    BadEncoding,
    /// Control characters, `.` or `..` segments.
    Forbidden,
}

/// Percent-decodes and checks a path.
pub fn normalize(raw: &str) -> Result<String, PathError> {
    let bytes = percent_decode(raw).ok_or(PathError::BadEncoding)?;
    let path = String::from_utf8(bytes).map_err(|_| PathError::BadEncoding)?;
    if path.chars().any(char::is_control) || !path.starts_with('/') {
        return Err(PathError::Forbidden);
    }
    if path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(PathError::Forbidden);
    }
    Ok(path)
}

/// A legacy path rewritten: the v1 path and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// `/puppet-ca/v1/<indirection>/<key>`.
    pub path: String,
    /// The environment segment.
    pub environment: String,
}

/// Rewrites `/<env>/<indirection>/<key...>` when it is a legacy CA route for this method.
pub fn translate(path: &str, method: &Method) -> Option<Translated> {
    let rest = path.strip_prefix('/')?;
    let (env, rest) = rest.split_once('/')?;
    let (indirection, key) = rest.split_once('/')?;
    if env.is_empty() || matches!(env, "puppet-ca" | "status") || key.is_empty() {
        return None;
    }
    let (_, methods) = LEGACY.iter().find(|(name, _)| *name == indirection)?;
    if !methods.contains(method) {
        return None;
    }
    Some(Translated {
        path: format!("/puppet-ca/v1/{indirection}/{key}"),
        environment: env.to_string(),
    })
}

/// Percent-encodes what may not stand in a URI path (so a decoded path can be routed again).
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_traversal() {
        assert_eq!(
            normalize("/puppet-ca/v1/certificate/%61gent").unwrap(),
            "/puppet-ca/v1/certificate/agent"
        );
        assert_eq!(normalize("/a/%2e%2e/b"), Err(PathError::Forbidden));
        assert_eq!(normalize("/a/../b"), Err(PathError::Forbidden));
        assert_eq!(normalize("/a/%00"), Err(PathError::Forbidden));
        assert_eq!(normalize("/a/%zz"), Err(PathError::BadEncoding));
        assert_eq!(normalize("/a/%ff"), Err(PathError::BadEncoding));
        assert_eq!(normalize("/a/%2Fb").unwrap(), "/a//b");
    }

    #[test]
    fn translates_legacy_routes() {
        let t = translate("/production/certificate/ca", &Method::GET).unwrap();
        assert_eq!(
            (t.path.as_str(), t.environment.as_str()),
            ("/puppet-ca/v1/certificate/ca", "production")
        );
        assert!(translate("/production/certificate_request/a", &Method::PUT).is_some());
        assert!(translate("/production/certificate_request/a", &Method::DELETE).is_none());
        assert!(translate("/production/certificate/a", &Method::PUT).is_none());
        assert!(translate("/puppet-ca/v1/certificate/a", &Method::GET).is_none());
        assert!(translate("/production/catalog/a", &Method::GET).is_none());
        assert!(translate("/production/certificate/", &Method::GET).is_none());
    }

    #[test]
    fn encodes_for_routing() {
        assert_eq!(encode_path("/a b/%"), "/a%20b/%25");
    }
}
