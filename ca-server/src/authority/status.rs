//! puppetserver's certificate-status objects (§1.10), for `ca list` and `certificate_status(es)`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Authority, AuthorityError};
use crate::ca::csr::{self, Csr, San};
use crate::ca::digest::{fingerprint, Digest};
use crate::ca::text::puppet_time;
use crate::ca::{der, oids};
use crate::storage::{CertRow, RequestRow, StatusFilter};

/// The fingerprints object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fingerprints {
    /// SHA-1.
    #[serde(rename = "SHA1")]
    pub sha1: String,
    /// SHA-256.
    #[serde(rename = "SHA256")]
    pub sha256: String,
    /// SHA-512.
    #[serde(rename = "SHA512")]
    pub sha512: String,
    /// Same as SHA-256.
    pub default: String,
}

/// One status object, as puppetserver serialises it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertStatus {
    /// Certname.
    pub name: String,
    /// `requested`, `signed` or `revoked`.
    pub state: String,
    /// SHA-256 fingerprint.
    pub fingerprint: String,
    /// All fingerprints.
    pub fingerprints: Fingerprints,
    /// `DNS:x` entries.
    pub dns_alt_names: Vec<String>,
    /// `IP:` entries first, then `DNS:`.
    pub subject_alt_names: Vec<String>,
    /// Authorization extensions by short name or OID.
    #[serde(default)]
    pub authorization_extensions: BTreeMap<String, String>,
    /// Serial (certificates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial_number: Option<u64>,
    /// notBefore (certificates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// notAfter (certificates only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
}

/// Which states to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListFilter {
    /// Pending requests.
    pub requested: bool,
    /// Signed, not revoked.
    pub signed: bool,
    /// Revoked.
    pub revoked: bool,
}

impl ListFilter {
    /// Everything.
    pub const ALL: ListFilter = ListFilter {
        requested: true,
        signed: true,
        revoked: true,
    };
    /// Pending requests only.
    pub const REQUESTED: ListFilter = ListFilter {
        requested: true,
        signed: false,
        revoked: false,
    };
    /// Signed, unrevoked certificates only.
    pub const SIGNED: ListFilter = ListFilter {
        requested: false,
        signed: true,
        revoked: false,
    };
    /// Revoked certificates only.
    pub const REVOKED: ListFilter = ListFilter {
        requested: false,
        signed: false,
        revoked: true,
    };

    /// Which certificates it lists, if any.
    fn certificates(self) -> Option<StatusFilter> {
        match (self.signed, self.revoked) {
            (true, true) => Some(StatusFilter::All),
            (true, false) => Some(StatusFilter::Signed),
            (false, true) => Some(StatusFilter::Revoked),
            (false, false) => None,
        }
    }
}

fn fingerprints(der_bytes: &[u8]) -> Fingerprints {
    let sha256 = fingerprint(Digest::Sha256, der_bytes);
    Fingerprints {
        sha1: fingerprint(Digest::Sha1, der_bytes),
        sha512: fingerprint(Digest::Sha512, der_bytes),
        default: sha256.clone(),
        sha256,
    }
}

fn alt_names(sans: &[San]) -> (Vec<String>, Vec<String>) {
    let dns: Vec<String> = sans
        .iter()
        .filter(|s| matches!(s, San::Dns(_)))
        .map(San::to_string)
        .collect();
    let mut all: Vec<String> = sans
        .iter()
        .filter(|s| matches!(s, San::Ip(_)))
        .map(San::to_string)
        .collect();
    all.extend(dns.iter().cloned());
    (dns, all)
}

fn auth_extension(oid: &[u64], value: &[u8], out: &mut BTreeMap<String, String>) {
    if oids::is_under(oid, oids::PP_AUTH_CERT_EXT) {
        let v = der::decode_string(value).unwrap_or_default();
        out.insert(oids::display_name(oid), v);
    }
}

/// Status of a pending request.
pub fn request_status(row: &RequestRow) -> Result<CertStatus, AuthorityError> {
    let c = csr::parse_stored_der(&row.csr_der)?;
    Ok(parsed_request_status(&row.certname, &c))
}

/// Status of a pending request for `certname`, from its parsed CSR.
fn parsed_request_status(certname: &str, c: &Csr) -> CertStatus {
    let (dns, all) = alt_names(&c.sans);
    let mut auth = BTreeMap::new();
    for e in &c.extensions {
        auth_extension(&e.oid, &e.value, &mut auth);
    }
    let fps = fingerprints(&c.der);
    CertStatus {
        name: certname.to_string(),
        state: "requested".into(),
        fingerprint: fps.sha256.clone(),
        fingerprints: fps,
        dns_alt_names: dns,
        subject_alt_names: all,
        authorization_extensions: auth,
        serial_number: None,
        not_before: None,
        not_after: None,
    }
}

/// Status of a certificate.
pub fn certificate_status(row: &CertRow) -> Result<CertStatus, AuthorityError> {
    let (_, cert) = X509Certificate::from_der(&row.der)
        .map_err(|e| AuthorityError::failed(format!("stored certificate {}", row.serial), e))?;
    let mut sans = Vec::new();
    let mut auth = BTreeMap::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(s) = ext.parsed_extension() {
            sans.extend(
                s.general_names
                    .iter()
                    .map(csr::general_name)
                    .filter(|n| !matches!(n, San::Other(_))),
            );
        } else if let Some(arcs) = ext.oid.iter().map(|i| i.collect::<Vec<u64>>()) {
            auth_extension(&arcs, ext.value, &mut auth);
        }
    }
    let (dns, all) = alt_names(&sans);
    let fps = fingerprints(&row.der);
    let time = |t: i64| time::OffsetDateTime::from_unix_timestamp(t).map(puppet_time).ok();
    Ok(CertStatus {
        name: row.certname.clone(),
        state: if row.revoked.is_some() {
            "revoked"
        } else {
            "signed"
        }
        .into(),
        fingerprint: fps.sha256.clone(),
        fingerprints: fps,
        dns_alt_names: dns,
        subject_alt_names: all,
        authorization_extensions: auth,
        serial_number: Some(row.serial),
        not_before: time(row.not_before),
        not_after: time(row.not_after),
    })
}

/// The stored status object of a request for `certname` (JSON text), from its parsed CSR.
pub fn request_status_json(certname: &str, csr: &Csr) -> Result<String, AuthorityError> {
    serde_json::to_string(&parsed_request_status(certname, csr))
        .map_err(|e| AuthorityError::failed("a request's status cannot be written", e))
}

/// The stored status object of a certificate (JSON text, `"state":"signed"`; the listing marks revoked
/// ones as it reads them).
pub fn certificate_status_json(row: &CertRow) -> Result<String, AuthorityError> {
    let row = CertRow {
        revoked: None,
        ..row.clone()
    };
    serde_json::to_string(&certificate_status(&row)?)
        .map_err(|e| AuthorityError::failed("a certificate's status cannot be written", e))
}

const SIGNED: &str = "\"state\":\"signed\"";
const REVOKED: &str = "\"state\":\"revoked\"";

impl Authority {
    /// The status of one name: its current certificate, else its pending request.
    pub async fn status(&self, certname: &str) -> Result<Option<CertStatus>, AuthorityError> {
        if let Some(c) = self.store.current_certificate(certname).await? {
            return certificate_status(&c).map(Some);
        }
        match self.store.request(certname).await? {
            Some(r) => request_status(&r).map(Some),
            None => Ok(None),
        }
    }

    /// Statuses: pending requests first, then certificates, each by name, as a JSON array — assembled
    /// from the status objects stored at submission and issuance, so a listing costs no X.509 work.
    pub async fn list_json(&self, filter: ListFilter) -> Result<String, AuthorityError> {
        // A certname cannot hold a quote, so SIGNED occurs once in a status object: at its state.
        Ok(self
            .store
            .status_list_json(filter.requested, filter.certificates(), SIGNED, REVOKED)
            .await?)
    }

    /// The statuses [`Authority::list_json`] lists, a page at a time as they are read: each page the
    /// JSON objects of up to a thousand statuses joined with commas (a listing of any size takes
    /// little memory); an error ends the pages with it.
    pub fn list_json_pages(
        &self,
        filter: ListFilter,
    ) -> tokio::sync::mpsc::Receiver<Result<String, crate::storage::StoreError>> {
        let (sink, pieces) = tokio::sync::mpsc::channel(2);
        let store = self.store.clone();
        tokio::spawn(async move {
            let listed = store
                .stream_status_list(filter.requested, filter.certificates(), SIGNED, REVOKED, &sink)
                .await;
            match listed {
                // The pages were sent and freed: a large listing leaves its memory free but kept.
                Ok(bytes) => drop(crate::memory::after_work(bytes)),
                Err(e) => {
                    tracing::error!(error = %crate::error::Chain(&e), "certificate statuses: the listing failed part way");
                    let _ = sink.send(Err(e)).await;
                }
            }
        });
        pieces
    }

    /// The statuses, parsed a page at a time (see [`Authority::list_json_pages`]), each page given
    /// to `each` as it is read.
    pub async fn list_each(
        &self,
        filter: ListFilter,
        mut each: impl FnMut(Vec<CertStatus>),
    ) -> Result<(), AuthorityError> {
        let mut pages = self.list_json_pages(filter);
        while let Some(page) = pages.recv().await {
            let parsed: Vec<CertStatus> = serde_json::from_str(&format!("[{}]", page?))
                .map_err(|e| AuthorityError::failed("a stored status is unreadable", e))?;
            each(parsed);
        }
        Ok(())
    }

    /// The longest certname a listing with `filter` holds (0 when none): the text listing's column.
    pub async fn longest_listed_name(&self, filter: ListFilter) -> Result<usize, AuthorityError> {
        Ok(self
            .store
            .longest_listed_name(filter.requested, filter.certificates())
            .await?)
    }

    /// Statuses, parsed (for the CLI).
    pub async fn list(&self, filter: ListFilter) -> Result<Vec<CertStatus>, AuthorityError> {
        serde_json::from_str(&self.list_json(filter).await?)
            .map_err(|e| AuthorityError::failed("a stored status is unreadable", e))
    }
}
