/// Errors of the CA engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}
