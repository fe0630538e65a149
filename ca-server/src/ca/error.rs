pub use crate::error::Cause;

/// Errors of the CA engine.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// rcgen refused to build or sign a structure (a bug or an unusable key).
    #[error("could not build the certificate structure")]
    Build(#[from] rcgen::Error),
    /// Key material could not be read or generated.
    #[error("key error: {0}")]
    Key(String),
    /// A certificate or CRL that should be ours could not be parsed.
    #[error("could not parse: {0}")]
    Parse(String),
    /// Input given by an operator is invalid (a duration, a reason, an alt name).
    #[error("{0}")]
    Invalid(String),
    /// A step failed because of another error, kept as its source.
    #[error("{what}")]
    Failed {
        /// What failed.
        what: String,
        /// Why.
        source: Cause,
    },
}

impl CaError {
    /// `what` failed because of `cause`, kept as the source (not folded into the text).
    pub fn failed(what: impl Into<String>, cause: impl std::error::Error + Send + Sync + 'static) -> CaError {
        CaError::Failed {
            what: what.into(),
            source: Box::new(cause),
        }
    }
}
