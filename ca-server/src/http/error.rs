//! The one table from domain errors to HTTP answers. Clients get short plain-text messages; the log gets
//! the detail.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::authority::AuthorityError;

/// An HTTP error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Status code.
    pub status: StatusCode,
    /// Plain-text body.
    pub message: String,
}

impl ApiError {
    /// An answer with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

/// Where an authority error arose: the same error reads differently per endpoint (§1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// PUT certificate_request: every refusal is a 400 (agents rely on it).
    Submit,
    /// certificate_status PUT/DELETE and the admin endpoints: conflicts are 409.
    Admin,
}

impl ApiError {
    /// Maps an authority error. Exhaustive: a new variant must choose its status here.
    pub fn from_authority(e: AuthorityError, ctx: Context) -> ApiError {
        use AuthorityError as E;
        let conflict = match ctx {
            Context::Submit => StatusCode::BAD_REQUEST,
            Context::Admin => StatusCode::CONFLICT,
        };
        match e {
            E::Csr(_) | E::Name(_) | E::Duplicate(_) | E::Invalid(_) => ApiError::bad_request(e.to_string()),
            E::Policy(_) => ApiError::new(conflict, e.to_string()),
            E::NoRequest {
                ref certname,
                has_cert: true,
            } => ApiError::new(
                StatusCode::CONFLICT,
                format!("Cannot sign certificate for host {certname} without a certificate request"),
            ),
            E::NoRequest { has_cert: false, .. } | E::NotFound(_) => {
                ApiError::not_found("Invalid certificate subject.")
            }
            E::NoCertificate(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            E::Ca(_) | E::Store(_) | E::Internal(_) => {
                tracing::error!(error = %e, "internal error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        }
    }
}

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut r = (status, body.into()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        text(self.status, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::csr::CsrError;
    use crate::policy::PolicyError;

    #[test]
    fn status_table() {
        let policy = || AuthorityError::Policy(PolicyError::ExtensionsNotPermitted(vec!["1.2.3".into()]));
        assert_eq!(
            ApiError::from_authority(policy(), Context::Submit).status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            ApiError::from_authority(policy(), Context::Admin).status,
            StatusCode::CONFLICT
        );
        let csr = AuthorityError::Csr(CsrError::Empty);
        assert_eq!(
            ApiError::from_authority(csr, Context::Admin).status,
            StatusCode::BAD_REQUEST
        );
        let nr = AuthorityError::NoRequest {
            certname: "a".into(),
            has_cert: true,
        };
        let e = ApiError::from_authority(nr, Context::Admin);
        assert_eq!(
            (e.status, e.message.as_str()),
            (
                StatusCode::CONFLICT,
                "Cannot sign certificate for host a without a certificate request"
            )
        );
        let nf = AuthorityError::NoRequest {
            certname: "a".into(),
            has_cert: false,
        };
        assert_eq!(
            ApiError::from_authority(nf, Context::Admin).status,
            StatusCode::NOT_FOUND
        );
        let nc = AuthorityError::NoCertificate("a".into());
        let e = ApiError::from_authority(nc, Context::Admin);
        assert_eq!(
            e.message,
            "Cannot revoke certificate for host a without a signed certificate"
        );
        let internal = AuthorityError::Internal("secret detail".into());
        let e = ApiError::from_authority(internal, Context::Admin);
        assert_eq!(
            (e.status, e.message.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        );
    }
}
