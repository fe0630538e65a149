//! The one table from domain errors to HTTP answers. Clients get short plain-text messages; the log gets
//! the detail.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::authority::AuthorityError;
use crate::storage::StoreError;

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
    /// 500, with nothing of the cause for the client (the log has it).
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
    }
}

/// Where an authority error arose: the same error reads differently per endpoint (§1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// PUT certificate_request: every refusal is a 400 (agents rely on it).
    Submit,
    /// certificate_status PUT/DELETE and the admin endpoints: conflicts are 409.
    Admin,
    /// POST certificate_renewal: a certificate that cannot be renewed is refused with 403.
    Renewal,
}

impl ApiError {
    /// Maps an authority error. Exhaustive: a new variant must choose its status here.
    pub fn from_authority(e: AuthorityError, ctx: Context) -> ApiError {
        use AuthorityError as E;
        let conflict = match ctx {
            Context::Submit => StatusCode::BAD_REQUEST,
            Context::Admin | Context::Renewal => StatusCode::CONFLICT,
        };
        match e {
            E::Invalid(_) if ctx == Context::Renewal => ApiError::new(StatusCode::FORBIDDEN, e.to_string()),
            E::Rejected { .. } if ctx == Context::Renewal => {
                ApiError::new(StatusCode::FORBIDDEN, crate::error::Chain(&e).to_string())
            }
            E::Rejected { .. } => ApiError::bad_request(crate::error::Chain(&e).to_string()),
            E::Csr(_) | E::Name(_) | E::Duplicate(_) | E::Invalid(_) => ApiError::bad_request(e.to_string()),
            // A unique row the store found taken (a race the authority's own check did not see).
            E::Store(StoreError::Duplicate(_)) => ApiError::bad_request(e.to_string()),
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
            E::Ca(_) | E::Store(_) | E::Internal(_) | E::Failed { .. } => {
                tracing::error!(error = %crate::error::Chain(&e), "internal error");
                ApiError::internal()
            }
        }
    }
}

/// The admin reading of an authority error (`?` in handlers; [`ApiError::from_authority`] for the
/// others).
impl From<AuthorityError> for ApiError {
    fn from(e: AuthorityError) -> ApiError {
        ApiError::from_authority(e, Context::Admin)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        AuthorityError::from(e).into()
    }
}

/// A JSON answer (`content_type`: `application/json`, or a negotiated PSON type); 500 when the value
/// cannot be serialized.
pub fn json(status: StatusCode, content_type: &'static str, value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut r = (status, body).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            r
        }
        Err(e) => {
            tracing::error!(error = %crate::error::Chain(&e), "a JSON answer could not be serialized");
            ApiError::internal().into_response()
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
    use crate::ca::CaError;
    use crate::policy::PolicyError;

    fn answer(e: AuthorityError, ctx: Context) -> (StatusCode, String) {
        let a = ApiError::from_authority(e, ctx);
        (a.status, a.message)
    }

    /// Every variant of the table, in each context where it reads differently; internal causes never
    /// reach the client.
    #[test]
    fn status_table() {
        use AuthorityError as E;
        use Context::{Admin, Renewal, Submit};
        let policy = || E::Policy(PolicyError::ExtensionsNotPermitted(vec!["1.2.3".into()]));
        assert_eq!(answer(policy(), Submit).0, StatusCode::BAD_REQUEST);
        assert_eq!(answer(policy(), Admin).0, StatusCode::CONFLICT);
        assert_eq!(answer(policy(), Renewal).0, StatusCode::CONFLICT);
        assert_eq!(answer(E::Csr(CsrError::Empty), Admin).0, StatusCode::BAD_REQUEST);
        let name = E::Name(crate::ca::names::validate_certname("A B").unwrap_err());
        assert_eq!(answer(name, Submit).0, StatusCode::BAD_REQUEST);
        let dup = answer(E::Duplicate("a request for a".into()), Submit);
        assert_eq!(dup, (StatusCode::BAD_REQUEST, "a request for a".to_string()));
        let raced = answer(E::Store(StoreError::Duplicate("request a".into())), Submit);
        assert_eq!(
            raced,
            (StatusCode::BAD_REQUEST, "request a already exists".to_string())
        );
        let invalid = || E::Invalid("not that".into());
        assert_eq!(
            answer(invalid(), Admin),
            (StatusCode::BAD_REQUEST, "not that".to_string())
        );
        assert_eq!(
            answer(invalid(), Renewal),
            (StatusCode::FORBIDDEN, "not that".to_string())
        );
        // Refused input with its cause: the whole chain is the message.
        let rejected = || E::rejected("cannot read x.pem", std::io::Error::other("no such file"));
        let told = "cannot read x.pem: no such file".to_string();
        assert_eq!(answer(rejected(), Admin), (StatusCode::BAD_REQUEST, told.clone()));
        assert_eq!(answer(rejected(), Renewal), (StatusCode::FORBIDDEN, told));
        let nr = |has_cert| E::NoRequest {
            certname: "a".into(),
            has_cert,
        };
        assert_eq!(
            answer(nr(true), Admin),
            (
                StatusCode::CONFLICT,
                "Cannot sign certificate for host a without a certificate request".to_string()
            )
        );
        let not_found = (StatusCode::NOT_FOUND, "Invalid certificate subject.".to_string());
        assert_eq!(answer(nr(false), Admin), not_found);
        assert_eq!(answer(E::NotFound("a".into()), Admin), not_found);
        assert_eq!(
            answer(E::NoCertificate("a".into()), Admin),
            (
                StatusCode::CONFLICT,
                "Cannot revoke certificate for host a without a signed certificate".to_string()
            )
        );
        let internal = (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error".to_string(),
        );
        for e in [
            E::Internal("secret detail".into()),
            E::Ca(CaError::Key("secret key detail".into())),
            E::Store(StoreError::Corrupt("secret row".into())),
            E::Store(StoreError::File("/secret/path".into())),
            E::failed("signing task failed", std::io::Error::other("secret cause")),
        ] {
            assert_eq!(answer(e, Submit), internal);
        }
        // `?` reads an authority or store error as the admin endpoints do.
        assert_eq!(ApiError::from(nr(true)).status, StatusCode::CONFLICT);
        assert_eq!(
            ApiError::from(StoreError::Corrupt("x".into())).message,
            "Internal Server Error"
        );
    }

    #[test]
    fn json_answers_carry_their_type() {
        let r = json(StatusCode::OK, "text/pson", &serde_json::json!({"a": 1}));
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/pson");
    }
}
