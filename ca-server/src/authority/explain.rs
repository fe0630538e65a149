//! `ca check`: why a pending request would or would not be signed, item by item, changing nothing.

use serde::{Deserialize, Serialize};

use super::{Authority, AuthorityError};
use crate::ca::csr;
use crate::policy::signing::{self, SigningOptions};

/// One SAN or extension with its verdict.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExplainItem {
    /// `san` or `extension`.
    pub kind: String,
    /// `DNS:puppet`, `pp_role`, ...
    pub item: String,
    /// Allowed?
    pub allowed: bool,
    /// The rule that allows or refuses it, and how to allow it.
    pub reason: String,
}

/// The whole verdict for a pending request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Explanation {
    /// Certname.
    pub certname: String,
    /// Every SAN and extension.
    pub items: Vec<ExplainItem>,
    /// Whether `ca sign` (with the flags given) would sign it.
    pub signable: bool,
    /// The refusal `ca sign` would print, if any.
    pub refusal: Option<String>,
    /// Whether autosign would sign it on submission, and why.
    pub autosign: bool,
    /// Why autosign decides so (an executable policy is described, not run).
    pub autosign_reason: String,
}

impl Authority {
    /// Explains the verdict for `certname`'s pending request under `flags`. Runs nothing, writes nothing.
    pub async fn explain(
        &self,
        certname: &str,
        flags: SigningOptions,
    ) -> Result<Explanation, AuthorityError> {
        let Some(row) = self.store.request(certname).await? else {
            let has_cert = self.store.current_certificate(certname).await?.is_some();
            return Err(AuthorityError::NoRequest {
                certname: certname.to_string(),
                has_cert,
            });
        };
        let parsed = csr::parse_stored_der(&row.csr_der)?;
        let eval = signing::evaluate(&parsed, &self.settings().signing, flags);
        let auto_eval = signing::evaluate(&parsed, &self.settings().signing, SigningOptions::default());
        let pem = crate::ca::pem_encode("CERTIFICATE REQUEST", &row.csr_der);
        let verdict = self.autosign_verdict(certname, pem.as_bytes(), false).await;
        let mut items: Vec<ExplainItem> = eval
            .sans
            .iter()
            .map(|v| ExplainItem {
                kind: "san".into(),
                item: v.item.clone(),
                allowed: v.allowed,
                reason: v.reason.clone(),
            })
            .collect();
        items.extend(eval.extensions.iter().map(|v| ExplainItem {
            kind: "extension".into(),
            item: v.item.clone(),
            allowed: v.allowed,
            reason: v.reason.clone(),
        }));
        let autosign_reason = match (&verdict.sign, &auto_eval.result) {
            (true, Err(e)) => format!(
                "{}, but the signing policy refuses it: {}",
                verdict.reason,
                crate::error::Chain(e)
            ),
            _ => verdict.reason.clone(),
        };
        Ok(Explanation {
            certname: certname.to_string(),
            items,
            signable: eval.result.is_ok(),
            refusal: eval.result.err().map(|e| e.to_string()),
            autosign: verdict.sign && auto_eval.result.is_ok(),
            autosign_reason,
        })
    }
}
