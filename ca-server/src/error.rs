//! How errors are shown. An error's own text says what failed, never why: the cause is its
//! [`source`](std::error::Error::source), typed (wrappers are transparent). Whatever shows an error to
//! a person (a log line, the CLI, a message) shows the whole chain with [`Chain`].

use std::fmt;
use std::sync::Arc;

/// The error that made a step fail, kept as it was (the step's `source`), shared by the error types
/// whose variants say what failed.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// One error given to several callers (every request of a failed transaction): shows as the error
/// it shares, whose causes follow it.
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<dyn std::error::Error + Send + Sync>);

impl fmt::Display for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Shared {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// An error and its causes, `what failed: why: root cause`.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Chain;
    use crate::authority::AuthorityError;
    use crate::config::ConfigError;
    use crate::storage::StoreError;

    /// Wrappers add nothing and repeat nothing; each cause is shown once, after what failed.
    #[test]
    fn a_chain_shows_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = ConfigError::Read {
            path: "/etc/ca.toml".into(),
            source: io,
        };
        assert_eq!(e.to_string(), "cannot read /etc/ca.toml");
        assert_eq!(Chain(&e).to_string(), "cannot read /etc/ca.toml: no such file");
        let e = AuthorityError::from(StoreError::Db(sqlx::Error::PoolTimedOut));
        let shown = Chain(&e).to_string();
        assert!(shown.starts_with("database error: "), "{shown}");
        assert_eq!(shown.matches("database error").count(), 1, "{shown}");
        assert!(
            std::error::Error::source(&e).is_some(),
            "the cause is kept, typed"
        );
        let io = std::io::Error::other("bad bytes");
        let e = AuthorityError::from(crate::ca::CaError::failed("could not parse: CA certificate", io));
        assert_eq!(e.to_string(), "could not parse: CA certificate");
        assert_eq!(
            Chain(&e).to_string(),
            "could not parse: CA certificate: bad bytes"
        );
        let e = AuthorityError::failed("signing task failed", std::io::Error::other("panicked"));
        assert_eq!(
            Chain(&e).to_string(),
            "internal error: signing task failed: panicked"
        );
        let source = std::error::Error::source(&e).expect("a source");
        assert!(
            source.downcast_ref::<std::io::Error>().is_some(),
            "the source is the cause itself, not a wrapper: {source:?}"
        );
    }
}
