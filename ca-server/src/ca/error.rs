use std::fmt;

/// Errors of the CA engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaError {
    /// rcgen refused to build or sign a structure (a bug or an unusable key).
    Build(String),
    /// Key material could not be read or generated.
    Key(String),
    /// A certificate or CRL that should be ours could not be parsed.
    Parse(String),
    /// Input given by an operator is invalid (a duration, a reason, an alt name).
    Invalid(String),
}

impl fmt::Display for CaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaError::Build(m) => write!(f, "could not build the certificate structure: {m}"),
            CaError::Key(m) => write!(f, "key error: {m}"),
            CaError::Parse(m) => write!(f, "could not parse: {m}"),
            CaError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CaError {}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        CaError::Build(e.to_string())
    }
}
