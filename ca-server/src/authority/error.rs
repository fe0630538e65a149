use crate::ca::csr::CsrError;
use crate::ca::names::NameError;
use crate::ca::CaError;
use crate::policy::PolicyError;
use crate::storage::StoreError;

/// Why an operation of the authority did not happen.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// The CSR body is refused.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// The certname is refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The signing policy refuses.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A request or certificate already exists for the name.
    #[error("{0}")]
    Duplicate(String),
    /// Signing asked for a name with no pending request.
    #[error("{}", no_request(.certname, *.has_cert))]
    NoRequest {
        /// The name.
        certname: String,
        /// Whether it has a certificate (already signed).
        has_cert: bool,
    },
    /// Revoking asked for a name with no signed certificate.
    #[error("Cannot revoke certificate for host {0} without a signed certificate")]
    NoCertificate(String),
    /// Nothing is held for the name.
    #[error("Nothing is known for {0}")]
    NotFound(String),
    /// Invalid operator input.
    #[error("{0}")]
    Invalid(String),
    /// Invalid operator input because of another error (a file that cannot be read, written or
    /// parsed), kept as the source.
    #[error("{what}")]
    Rejected {
        /// What cannot be done.
        what: String,
        /// Why.
        source: crate::error::Cause,
    },
    /// The engine failed.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or a crashed task.
    #[error("internal error: {0}")]
    Internal(String),
    /// A step that cannot fail in normal operation failed because of another error (kept as the
    /// source): a task that panicked, a file of the data directory.
    #[error("internal error: {what}")]
    Failed {
        /// What failed.
        what: String,
        /// Why.
        source: crate::error::Cause,
    },
}

fn no_request(certname: &str, has_cert: bool) -> String {
    if has_cert {
        format!("Cannot sign certificate for host {certname} without a certificate request (it is already signed)")
    } else {
        format!("Could not find certificate request for {certname}")
    }
}

impl AuthorityError {
    /// `what` failed because of `cause` (an internal error, its cause kept as the source).
    pub fn failed(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> AuthorityError {
        AuthorityError::Failed {
            what: what.into(),
            source: Box::new(cause),
        }
    }

    /// Invalid operator input: `what` cannot be done because of `cause` (kept as the source).
    pub fn rejected(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> AuthorityError {
        AuthorityError::Rejected {
            what: what.into(),
            source: Box::new(cause),
        }
    }
}
