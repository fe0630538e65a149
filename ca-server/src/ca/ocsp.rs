//! OCSP (RFC 6960) with the types of the `x509-ocsp` crate: requests read, responses built and signed
//! by a delegated responder (an EC P-256 key whose certificate the CA issued with the OCSPSigning
//! purpose and `id-pkix-ocsp-nocheck`), so that answering never uses the CA key.

use aws_lc_rs::digest::{digest, SHA1_FOR_LEGACY_USE_ONLY, SHA256};
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_ASN1_SIGNING};
use der::asn1::{BitString, GeneralizedTime, Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::ext::Extension;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspRequest, OcspResponse, ResponderId,
    ResponseData, RevokedInfo, SingleResponse, Version,
};

use super::CaError;

const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const OID_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");

/// How the CA is named in requests: the hashes of its subject and of its public key, by SHA-1 (what
/// nearly every client sends) and SHA-256.
#[derive(Debug, Clone)]
pub struct IssuerHashes {
    sha1: (Vec<u8>, Vec<u8>),
    sha256: (Vec<u8>, Vec<u8>),
}

impl IssuerHashes {
    /// From the CA certificate (DER).
    pub fn of(ca_der: &[u8]) -> Result<IssuerHashes, CaError> {
        let (_, c) = x509_parser::parse_x509_certificate(ca_der)
            .map_err(|e| CaError::failed("could not parse: CA certificate", e))?;
        let name = c.subject().as_raw();
        let key = c.public_key().subject_public_key.data.as_ref();
        let h = |alg, data: &[u8]| digest(alg, data).as_ref().to_vec();
        Ok(IssuerHashes {
            sha1: (
                h(&SHA1_FOR_LEGACY_USE_ONLY, name),
                h(&SHA1_FOR_LEGACY_USE_ONLY, key),
            ),
            sha256: (h(&SHA256, name), h(&SHA256, key)),
        })
    }

    /// Whether `id` names this CA.
    fn names(&self, id: &CertId) -> bool {
        let pair = match id.hash_algorithm.oid {
            OID_SHA1 => &self.sha1,
            OID_SHA256 => &self.sha256,
            _ => return false,
        };
        id.issuer_name_hash.as_bytes() == pair.0 && id.issuer_key_hash.as_bytes() == pair.1
    }
}

/// The delegated responder: its certificate and key.
pub struct Responder {
    cert_der: Vec<u8>,
    key: EcdsaKeyPair,
    key_hash: Vec<u8>,
    issuer: IssuerHashes,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder").finish_non_exhaustive()
    }
}

/// A serial's status, as the CA's records say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialStatus {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked at (Unix seconds) for the RFC 5280 reason code.
    Revoked(i64, u8),
    /// Not a serial this CA issued.
    Unknown,
}

/// One certificate asked about.
#[derive(Debug, Clone)]
pub struct Asked {
    id: CertId,
    /// Its serial, when the request names this CA and the serial fits.
    pub serial: Option<u64>,
}

/// A request, read.
#[derive(Debug, Clone)]
pub struct Question {
    /// What is asked, in order.
    pub asked: Vec<Asked>,
    /// The request's nonce extension, echoed in the answer.
    nonce: Option<Extension>,
}

impl Question {
    /// Whether the answer must be signed for this request alone (it carries a nonce).
    pub fn has_nonce(&self) -> bool {
        self.nonce.is_some()
    }
}

/// `malformedRequest`, as DER.
pub fn malformed() -> Vec<u8> {
    OcspResponse::malformed_request().to_der().unwrap_or_default()
}

/// `internalError`, as DER.
pub fn internal_error() -> Vec<u8> {
    OcspResponse::internal_error().to_der().unwrap_or_default()
}

fn gtime(unix: i64) -> Result<OcspGeneralizedTime, CaError> {
    let secs = u64::try_from(unix).map_err(|_| CaError::Invalid("a time before 1970".into()))?;
    GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map(OcspGeneralizedTime)
        .map_err(|e| CaError::failed("time", e))
}

impl Responder {
    /// From the responder's certificate (DER) and PKCS#8 key, for the CA certificate `ca_der`.
    pub fn new(cert_der: Vec<u8>, pkcs8: &[u8], ca_der: &[u8]) -> Result<Responder, CaError> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
            .map_err(|_| CaError::Key("the OCSP responder key is not an EC P-256 PKCS#8 key".into()))?;
        let (_, c) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| CaError::failed("could not parse: OCSP responder certificate", e))?;
        if c.public_key().subject_public_key.data.as_ref() != key.public_key().as_ref() {
            return Err(CaError::Key(
                "the OCSP responder key does not match its certificate".into(),
            ));
        }
        let key_hash = digest(&SHA1_FOR_LEGACY_USE_ONLY, key.public_key().as_ref())
            .as_ref()
            .to_vec();
        Ok(Responder {
            cert_der,
            key,
            key_hash,
            issuer: IssuerHashes::of(ca_der)?,
        })
    }

    /// Reads a DER request (`None`: malformed).
    pub fn read(&self, der: &[u8]) -> Option<Question> {
        let req = OcspRequest::from_der(der).ok()?;
        if req.tbs_request.request_list.is_empty() {
            return None;
        }
        let nonce = req
            .tbs_request
            .request_extensions
            .as_ref()
            .and_then(|e| e.iter().find(|x| x.extn_id == OID_NONCE).cloned());
        let asked = req
            .tbs_request
            .request_list
            .into_iter()
            .map(|r| {
                let serial = self
                    .issuer
                    .names(&r.req_cert)
                    .then(|| serial_u64(r.req_cert.serial_number.as_bytes()))
                    .flatten();
                Asked {
                    id: r.req_cert,
                    serial,
                }
            })
            .collect();
        Some(Question { asked, nonce })
    }

    /// The signed answer to `q` (DER `OCSPResponse`), each certificate with `status[i]`, valid from
    /// `this_update` to `next_update` (Unix seconds).
    pub fn answer(
        &self,
        q: &Question,
        status: &[SerialStatus],
        this_update: i64,
        next_update: i64,
    ) -> Result<Vec<u8>, CaError> {
        let fail = |e: der::Error| CaError::failed("OCSP response", e);
        let mut responses = Vec::with_capacity(q.asked.len());
        for (a, s) in q.asked.iter().zip(status) {
            let cert_status = match s {
                SerialStatus::Good => CertStatus::good(),
                SerialStatus::Unknown => CertStatus::unknown(),
                SerialStatus::Revoked(at, reason) => CertStatus::Revoked(RevokedInfo {
                    revocation_time: gtime(*at)?,
                    revocation_reason: crl_reason(*reason),
                }),
            };
            responses.push(SingleResponse {
                cert_id: a.id.clone(),
                cert_status,
                this_update: gtime(this_update)?,
                next_update: Some(gtime(next_update)?),
                single_extensions: None,
            });
        }
        let tbs = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(OctetString::new(self.key_hash.clone()).map_err(fail)?),
            produced_at: gtime(this_update)?,
            responses,
            response_extensions: q.nonce.clone().map(|n| vec![n]),
        };
        let tbs_der = tbs.to_der().map_err(fail)?;
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self
            .key
            .sign(&rng, &tbs_der)
            .map_err(|_| CaError::Key("the OCSP responder key could not sign".into()))?;
        let basic = BasicOcspResponse {
            tbs_response_data: tbs,
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: OID_ECDSA_SHA256,
                parameters: None,
            },
            signature: BitString::from_bytes(sig.as_ref()).map_err(fail)?,
            certs: Some(vec![
                x509_cert::Certificate::from_der(&self.cert_der).map_err(fail)?
            ]),
        };
        OcspResponse::successful(basic)
            .and_then(|r| r.to_der())
            .map_err(fail)
    }
}

/// A DER OCSP request for `serial` of the CA `ca_der`, naming the CA by SHA-1 as clients do, with
/// `nonce` when given (for load generators and tests).
pub fn request_der(ca_der: &[u8], serial: u64, nonce: Option<&[u8]>) -> Result<Vec<u8>, CaError> {
    let fail = |e: der::Error| CaError::failed("OCSP request", e);
    let h = IssuerHashes::of(ca_der)?;
    let bytes = serial.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut serial_bytes = bytes[skip..].to_vec();
    if serial_bytes[0] & 0x80 != 0 {
        serial_bytes.insert(0, 0);
    }
    let id = CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: OID_SHA1,
            parameters: Some(der::Any::null()),
        },
        issuer_name_hash: OctetString::new(h.sha1.0).map_err(fail)?,
        issuer_key_hash: OctetString::new(h.sha1.1).map_err(fail)?,
        serial_number: x509_cert::serial_number::SerialNumber::new(&serial_bytes).map_err(fail)?,
    };
    let nonce = match nonce {
        Some(n) => Some(vec![Extension {
            extn_id: OID_NONCE,
            critical: false,
            extn_value: OctetString::new(OctetString::new(n).map_err(fail)?.to_der().map_err(fail)?)
                .map_err(fail)?,
        }]),
        None => None,
    };
    OcspRequest {
        tbs_request: x509_ocsp::TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![x509_ocsp::Request {
                req_cert: id,
                single_request_extensions: None,
            }],
            request_extensions: nonce,
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(fail)
}

/// A serial's big-endian bytes as u64 (leading zero bytes allowed).
fn serial_u64(bytes: &[u8]) -> Option<u64> {
    let trimmed: &[u8] = {
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        &bytes[skip..]
    };
    if trimmed.len() > 8 {
        return None;
    }
    Some(trimmed.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

fn crl_reason(code: u8) -> Option<CrlReason> {
    Some(match code {
        0 => CrlReason::Unspecified,
        1 => CrlReason::KeyCompromise,
        2 => CrlReason::CaCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        6 => CrlReason::CertificateHold,
        8 => CrlReason::RemoveFromCRL,
        9 => CrlReason::PrivilegeWithdrawn,
        10 => CrlReason::AaCompromise,
        _ => return None,
    })
}

/// The extension marking a responder's certificate as not to be checked for revocation
/// (`id-pkix-ocsp-nocheck`, RFC 6960 §4.2.2.2.1), as rcgen wants it.
pub fn nocheck_extension() -> rcgen::CustomExtension {
    rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 48, 1, 5],
        Null.to_der().unwrap_or_else(|_| vec![0x05, 0x00]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request made here is read back with its serial and nonce; the answer is a successful basic
    /// response, signed by the responder's key, echoing the nonce; garbage is not a request.
    #[test]
    fn request_answer_round_trip() {
        use crate::ca::keys::{self, KeyType};
        let ca = crate::ca::tests::test_ca();
        let ca_der = ca.chain_der[0].clone();
        let key = keys::generate(KeyType::EcP256).unwrap();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        let validity = crate::ca::issue::Validity::from_now(
            time::OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap(),
            time::Duration::days(30),
        )
        .unwrap();
        let cert =
            crate::ca::issue::issue_ocsp_responder(&ca, &spki, "ca-ocsp-responder", 9, validity).unwrap();
        let r = Responder::new(cert, &keys::pkcs8_der(&key).unwrap(), &ca_der).unwrap();
        for junk in [&b""[..], b"\x30\x00", &[0xff; 64]] {
            assert!(r.read(junk).is_none());
        }
        let q = r
            .read(&request_der(&ca_der, 0x80, Some(b"n-1")).unwrap())
            .unwrap();
        assert!(q.has_nonce());
        assert_eq!(
            q.asked.iter().map(|a| a.serial).collect::<Vec<_>>(),
            vec![Some(0x80)]
        );
        let other = r
            .read(&request_der(&fixture_other_ca(), 0x80, None).unwrap())
            .unwrap();
        assert_eq!(other.asked[0].serial, None, "another issuer's serial is not ours");
        let der = r
            .answer(
                &q,
                &[SerialStatus::Revoked(1_900_000_000, 1)],
                1_900_000_100,
                1_900_003_700,
            )
            .unwrap();
        let resp = OcspResponse::from_der(&der).unwrap();
        assert_eq!(resp.response_status, x509_ocsp::OcspResponseStatus::Successful);
        let basic = BasicOcspResponse::from_der(resp.response_bytes.unwrap().response.as_bytes()).unwrap();
        assert!(matches!(
            basic.tbs_response_data.responses[0].cert_status,
            CertStatus::Revoked(_)
        ));
        assert!(
            basic.tbs_response_data.response_extensions.is_some(),
            "the nonce is echoed"
        );
        let tbs = basic.tbs_response_data.to_der().unwrap();
        let pk = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
            r.key.public_key().as_ref(),
        );
        pk.verify(&tbs, basic.signature.raw_bytes()).unwrap();
    }

    fn fixture_other_ca() -> Vec<u8> {
        crate::ca::tests::test_ca_named("Another CA").chain_der[0].clone()
    }

    #[test]
    fn serials_of_any_width() {
        assert_eq!(serial_u64(&[0x00, 0x01, 0x02]), Some(0x0102));
        assert_eq!(serial_u64(&[0x7f; 8]), Some(0x7f7f_7f7f_7f7f_7f7f));
        assert_eq!(serial_u64(&[1; 9]), None);
        assert_eq!(serial_u64(&[]), Some(0));
    }
}
