//! CRLs (§5.4): v2, CRL number, AKI = the CA's own key identifier, a reason code on every entry.

use std::fmt;
use std::str::FromStr;

use rcgen::{PublicKeyData, RevocationReason};
use time::OffsetDateTime;

use ::der::asn1::{Any, ContextSpecific, GeneralizedTime, ObjectIdentifier, OctetString, Uint, UtcTime};
use ::der::oid::AssociatedOid;
use ::der::{Encode, TagMode, TagNumber};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber};
use x509_cert::ext::Extension;
use x509_cert::time::Time;
use x509_cert::Version;

use super::{der, CaError, CaSigner};

/// A revocation reason (RFC 5280 §5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason(pub RevocationReason);

const REASONS: [(&str, RevocationReason); 10] = [
    ("unspecified", RevocationReason::Unspecified),
    ("keyCompromise", RevocationReason::KeyCompromise),
    ("cACompromise", RevocationReason::CaCompromise),
    ("affiliationChanged", RevocationReason::AffiliationChanged),
    ("superseded", RevocationReason::Superseded),
    ("cessationOfOperation", RevocationReason::CessationOfOperation),
    ("certificateHold", RevocationReason::CertificateHold),
    ("removeFromCRL", RevocationReason::RemoveFromCrl),
    ("privilegeWithdrawn", RevocationReason::PrivilegeWithdrawn),
    ("aACompromise", RevocationReason::AaCompromise),
];

impl Default for Reason {
    /// Puppet revokes with keyCompromise.
    fn default() -> Self {
        Reason(RevocationReason::KeyCompromise)
    }
}

impl Reason {
    /// The RFC 5280 code.
    pub fn code(self) -> i64 {
        self.0 as i64
    }
    /// From the RFC 5280 code.
    pub fn from_code(code: i64) -> Option<Reason> {
        REASONS
            .iter()
            .find(|(_, r)| *r as i64 == code)
            .map(|(_, r)| Reason(*r))
    }
}

impl FromStr for Reason {
    type Err = CaError;
    /// Accepts RFC names in any case and with or without dashes/underscores (`key-compromise`).
    fn from_str(s: &str) -> Result<Self, CaError> {
        let norm = |x: &str| x.to_ascii_lowercase().replace(['-', '_'], "");
        REASONS
            .iter()
            .find(|(n, _)| norm(n) == norm(s))
            .map(|(_, r)| Reason(*r))
            .ok_or_else(|| {
                let names: Vec<&str> = REASONS.iter().map(|(n, _)| *n).collect();
                CaError::Invalid(format!(
                    "unknown revocation reason '{s}': use one of {}",
                    names.join(", ")
                ))
            })
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = REASONS
            .iter()
            .find(|(_, r)| *r == self.0)
            .map_or("unspecified", |(n, _)| n);
        f.write_str(name)
    }
}

/// One revoked serial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// The serial.
    pub serial: u64,
    /// When it was revoked.
    pub revoked_at: OffsetDateTime,
    /// Why.
    pub reason: Reason,
}

/// Signs a CRL. CPU-heavy (one signature, plus encoding every entry): call it off the async executor.
pub fn sign_crl(
    signer: &CaSigner,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    entries: &[RevokedEntry],
) -> Result<Vec<u8>, CaError> {
    sign_crl_with_entries(signer, number, this_update, next_update, &encode_entries(entries))
}

fn der_uint(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut v = bytes[skip..].to_vec();
    if v.first().is_some_and(|b| b & 0x80 != 0) {
        v.insert(0, 0);
    }
    der::encode_tlv(0x02, &v)
}

/// UTCTime for 1950–2049, GeneralizedTime otherwise (RFC 5280 §4.1.2.5).
fn der_time(t: OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let body = format!(
        "{:02}{:02}{:02}{:02}{:02}Z",
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    if (1950..2050).contains(&t.year()) {
        der::encode_tlv(0x17, format!("{:02}{body}", t.year() % 100).as_bytes())
    } else {
        der::encode_tlv(0x18, format!("{:04}{body}", t.year()).as_bytes())
    }
}

fn extension(oid_der: &[u8], value: &[u8]) -> Vec<u8> {
    let mut inner = oid_der.to_vec();
    inner.extend(der::encode_tlv(0x04, value));
    der::encode_tlv(0x30, &inner)
}

const OID_REASON: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x15];

/// The signature AlgorithmIdentifier for what the CA key signs with (RFC 4055 and RFC 5758: NULL
/// parameters for RSA, none for ECDSA).
fn signature_algorithm(alg: &rcgen::SignatureAlgorithm) -> Result<AlgorithmIdentifierOwned, CaError> {
    const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
    const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
    if alg == &rcgen::PKCS_RSA_SHA256 {
        Ok(AlgorithmIdentifierOwned {
            oid: SHA256_WITH_RSA,
            parameters: Some(Any::null()),
        })
    } else if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
        Ok(AlgorithmIdentifierOwned {
            oid: ECDSA_WITH_SHA256,
            parameters: None,
        })
    } else {
        Err(CaError::Key(
            "the CA key's algorithm cannot sign CRLs here".into(),
        ))
    }
}

/// X.509 Time as RFC 5280 §4.1.2.5 wants it: UTCTime through 2049, GeneralizedTime after.
fn x509_time(t: OffsetDateTime) -> ::der::Result<Time> {
    let secs =
        u64::try_from(t.unix_timestamp()).map_err(|_| ::der::Error::from(::der::ErrorKind::DateTime))?;
    let dt = ::der::DateTime::from_unix_duration(std::time::Duration::from_secs(secs))?;
    Ok(if dt.year() < 2050 {
        UtcTime::from_date_time(dt)?.into()
    } else {
        GeneralizedTime::from_date_time(dt).into()
    })
}

/// The TBSCertList around revokedCertificates, in typed DER: before them version, signature,
/// issuer (the CA's subject as encoded), thisUpdate and nextUpdate; after them crlExtensions (the
/// CA's key identifier and the CRL number).
fn tbs_around_entries(
    signer: &CaSigner,
    alg: &AlgorithmIdentifierOwned,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> ::der::Result<(Vec<u8>, Vec<u8>)> {
    let mut head = Version::V2.to_der()?;
    alg.encode_to_vec(&mut head)?;
    head.extend_from_slice(&signer.subject_der);
    x509_time(this_update)?.encode_to_vec(&mut head)?;
    x509_time(next_update)?.encode_to_vec(&mut head)?;
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(OctetString::new(signer.cert.key_id.as_slice())?),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    let extensions = vec![
        Extension {
            extn_id: AuthorityKeyIdentifier::OID,
            critical: false,
            extn_value: OctetString::new(aki.to_der()?)?,
        },
        Extension {
            extn_id: CrlNumber::OID,
            critical: false,
            extn_value: OctetString::new(CrlNumber(Uint::new(&number.to_be_bytes())?).to_der()?)?,
        },
    ];
    let tail = ContextSpecific {
        tag_number: TagNumber::N0,
        tag_mode: TagMode::Explicit,
        value: extensions,
    }
    .to_der()?;
    Ok((head, tail))
}

/// The DER of revokedCertificate entries (without the enclosing SEQUENCE), so that a new CRL can
/// append to the entries of the previous one instead of encoding them all again.
pub fn encode_entries(entries: &[RevokedEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 36);
    for e in entries {
        let mut inner = der_uint(e.serial);
        inner.extend(der_time(e.revoked_at));
        let reason = extension(&OID_REASON, &der::encode_tlv(0x0a, &[e.reason.code() as u8]));
        inner.extend(der::encode_tlv(0x30, &reason));
        out.extend(der::encode_tlv(0x30, &inner));
    }
    out
}

/// Signs a v2 CRL whose revokedCertificates are `entries_der` (from [`encode_entries`]), with the CRL
/// number and AKI = the CA's key identifier. One signature; everything else is copying.
pub fn sign_crl_with_entries(
    signer: &CaSigner,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    entries_der: &[u8],
) -> Result<Vec<u8>, CaError> {
    sign_crl_with_entry_parts(signer, number, this_update, next_update, &[entries_der])
}

/// The largest signature a CA key of ours makes (RSA-4096: 512 bytes; ECDSA P-256 in DER: 72).
const MAX_SIGNATURE: usize = 512;

/// [`sign_crl_with_entries`] with the entries in consecutive parts (the previous CRL's and the new
/// ones'). The entries (megabytes at 100,000) are copied once, into the result, and signed there: the
/// outer header is written first with room for the length, which is filled in after signing.
pub fn sign_crl_with_entry_parts(
    signer: &CaSigner,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    parts: &[&[u8]],
) -> Result<Vec<u8>, CaError> {
    let entries_len: usize = parts.iter().map(|p| p.len()).sum();
    let frame = Frame::new(signer, number, this_update, next_update, entries_len)?;
    let mut out = Vec::new();
    frame.start(&mut out);
    for part in parts {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(&frame.tail);
    let sig = rcgen::SigningKey::sign(signer.issuer().key(), &out[frame.room..])
        .map_err(|e| CaError::failed("key error: CRL signature", e))?;
    frame.finish(&mut out, &sig);
    Ok(out)
}

/// A CRL around its entries: what comes before them (the TBSCertList's header, its fields up to
/// nextUpdate, the header of revokedCertificates), after them (crlExtensions), and the signature's
/// AlgorithmIdentifier.
struct Frame {
    /// Room left at the start for the outer header, written last (its length depends on the
    /// signature's).
    room: usize,
    before: Vec<u8>,
    tail: Vec<u8>,
    alg: Vec<u8>,
    /// The TBSCertList's length with its header.
    tbs_full: usize,
}

impl Frame {
    fn new(
        signer: &CaSigner,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        entries_len: usize,
    ) -> Result<Frame, CaError> {
        if next_update <= this_update {
            return Err(CaError::Invalid(
                "the CRL's nextUpdate must follow its thisUpdate".into(),
            ));
        }
        let alg_id = signature_algorithm(signer.issuer().key().algorithm())?;
        let (head, tail) = tbs_around_entries(signer, &alg_id, number, this_update, next_update)
            .map_err(|e| CaError::failed("the CRL cannot be encoded", e))?;
        let alg = alg_id
            .to_der()
            .map_err(|e| CaError::failed("the CRL cannot be encoded", e))?;
        let mut entries_head = Vec::new();
        if entries_len > 0 {
            entries_head.push(0x30);
            der::encode_len(entries_len, &mut entries_head);
        }
        let tbs_len = head.len() + entries_head.len() + entries_len + tail.len();
        let mut before = vec![0x30];
        der::encode_len(tbs_len, &mut before);
        let tbs_full = before.len() + tbs_len;
        before.extend_from_slice(&head);
        before.extend_from_slice(&entries_head);
        // Room for the outer header as long as the longest signature needs; any signature whose
        // header has the same size fills it in place (all of them, but at a length-encoding boundary).
        let room = header_of(tbs_full + alg.len() + bits_len(MAX_SIGNATURE)).len();
        Ok(Frame {
            room,
            before,
            tail,
            alg,
            tbs_full,
        })
    }

    /// Fills the empty `out` with the room and what comes before the entries.
    fn start(&self, out: &mut Vec<u8>) {
        out.reserve(self.room + self.tbs_full + self.alg.len() + bits_len(MAX_SIGNATURE));
        out.resize(self.room, 0);
        out.extend_from_slice(&self.before);
    }

    /// After the TBSCertList in `out`: the algorithm and `sig`, and the outer header in front.
    fn finish(&self, out: &mut Vec<u8>, sig: &[u8]) {
        let mut bits = vec![0u8];
        bits.extend_from_slice(sig);
        let bits = der::encode_tlv(0x03, &bits);
        out.extend_from_slice(&self.alg);
        out.extend_from_slice(&bits);
        let header = header_of(self.tbs_full + self.alg.len() + bits.len());
        if header.len() == self.room {
            out[..self.room].copy_from_slice(&header);
        } else {
            // A length at an encoding boundary: the header is shorter than the room left for it.
            out.splice(..self.room, header);
        }
    }
}

/// The BIT STRING of a signature of `n` bytes: tag, length, the unused-bits byte, the signature.
fn bits_len(n: usize) -> usize {
    let mut l = Vec::new();
    der::encode_len(n + 1, &mut l);
    1 + l.len() + n + 1
}

fn header_of(all_len: usize) -> Vec<u8> {
    let mut h = vec![0x30];
    der::encode_len(all_len, &mut h);
    h
}

/// The first part of a CRL made ahead of time ([`Preparing`]): its bytes up to the end of the entries
/// known then, and their SHA-256 state.
pub struct Prepared {
    number: u64,
    this_update: i64,
    next_update: i64,
    entries_len: usize,
    /// The length of the entries it holds.
    known_len: usize,
    room: usize,
    out: Vec<u8>,
    hash: aws_lc_rs::digest::Context,
}

/// How much the thread making a CRL's start ahead copies and hashes in one step of
/// [`Preparing::advance`] (between two looks at its cancel flag and two yields of its core).
pub const PREPARE_STEP: usize = 64 * 1024;

/// The start of the CRL numbered `number`, dated `this_update`/`next_update`, being made ahead of
/// time: its entries will be `known` (given to [`Preparing::advance`]) followed by `more_len` bytes
/// not known yet. Everything up to the end of the known entries is copied and hashed, in steps, so
/// that [`sign_prepared`] has only the new entries and the tail to hash. A CRL's TBSCertList can only
/// be hashed from its start, and its start holds the dates and lengths: those are the prediction.
/// Any thread may do the next step: the one that needs the start finishes what another began.
pub struct Preparing {
    made: Prepared,
    /// How many bytes of the known entries are copied and hashed.
    done: usize,
}

impl Preparing {
    /// Nothing of the `known_len` bytes of known entries copied yet.
    pub fn new(
        signer: &CaSigner,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        known_len: usize,
        more_len: usize,
    ) -> Result<Preparing, CaError> {
        let entries_len = known_len + more_len;
        let frame = Frame::new(signer, number, this_update, next_update, entries_len)?;
        let mut out = Vec::new();
        frame.start(&mut out);
        let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        hash.update(&out[frame.room..]);
        Ok(Preparing {
            made: Prepared {
                number,
                this_update: this_update.unix_timestamp(),
                next_update: next_update.unix_timestamp(),
                entries_len,
                known_len,
                room: frame.room,
                out,
                hash,
            },
            done: 0,
        })
    }

    /// Copies and hashes up to `step` more bytes of the known entries, `known` being them in order
    /// (the same parts at every step). Returns whether more is left to do: `false` once all are in,
    /// or when `known` holds fewer bytes than announced (then [`Preparing::finish`] gives nothing).
    pub fn advance(&mut self, known: &[&[u8]], step: usize) -> bool {
        let before = self.done;
        let (mut skip, mut left) = (self.done, step.min(self.made.known_len - self.done));
        for part in known {
            if left == 0 {
                break;
            }
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            let chunk = &part[skip..part.len().min(skip + left)];
            skip = 0;
            self.made.out.extend_from_slice(chunk);
            self.made.hash.update(chunk);
            self.done += chunk.len();
            left -= chunk.len();
        }
        self.done > before && self.done < self.made.known_len
    }

    /// The start, once every known byte is in; `None` before.
    pub fn finish(self) -> Option<Prepared> {
        (self.done == self.made.known_len).then_some(self.made)
    }
}

/// Signs the CRL `prepared` was made for, with `added` after the entries it holds, when `number`,
/// the dates and the length of `added` are those it was made for and the CA key can sign a digest
/// (a key file; not a PKCS#11 token): the same CRL as [`sign_crl_with_entry_parts`] signs with all
/// the entries. `None` otherwise: sign it whole.
pub fn sign_prepared(
    signer: &CaSigner,
    prepared: Prepared,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    added: &[u8],
) -> Result<Option<Vec<u8>>, CaError> {
    let Prepared {
        number: made_number,
        this_update: made_this_update,
        next_update: made_next_update,
        entries_len,
        known_len,
        room,
        mut out,
        mut hash,
    } = prepared;
    if (made_number, made_this_update, made_next_update, entries_len)
        != (
            number,
            this_update.unix_timestamp(),
            next_update.unix_timestamp(),
            known_len + added.len(),
        )
    {
        return Ok(None);
    }
    let frame = Frame::new(signer, number, this_update, next_update, entries_len)?;
    // The same number, dates and lengths make the same start; checked all the same (a few hundred
    // bytes): a signature over anything but this CRL must never happen.
    if frame.room != room || out.get(room..room + frame.before.len()) != Some(&frame.before[..]) {
        return Ok(None);
    }
    out.extend_from_slice(added);
    out.extend_from_slice(&frame.tail);
    hash.update(added);
    hash.update(&frame.tail);
    let Some(sig) = signer.sign_digest(&hash.finish()) else {
        return Ok(None);
    };
    frame.finish(&mut out, &sig?);
    Ok(Some(out))
}

/// What [`read_crl`] finds in a CRL without decoding its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlParts<'a> {
    /// The issuer Name, as encoded (tag and length included).
    pub issuer: &'a [u8],
    /// The CRL number extension, when present and at most 8 bytes.
    pub number: Option<u64>,
    /// The contents of revokedCertificates (empty when there are none): what [`encode_entries`] makes,
    /// so that the next CRL can append to them.
    pub entries: &'a [u8],
}

/// Finds a CRL's issuer, number and entries by walking its outer structure: no work per entry, so a
/// 100,000-entry CRL is read in microseconds. `None` when it is not a well-formed v1/v2 CRL.
pub fn read_crl(crl_der: &[u8]) -> Option<CrlParts<'_>> {
    let (0x30, crl, _) = der::read_tlv(crl_der)? else {
        return None;
    };
    let (0x30, tbs, _) = der::read_tlv(crl)? else {
        return None;
    };
    let mut rest = tbs;
    if rest.first() == Some(&0x02) {
        rest = der::read_tlv(rest)?.2; // version
    }
    let (0x30, _, after_alg) = der::read_tlv(rest)? else {
        return None;
    };
    rest = after_alg;
    let after_issuer = der::read_tlv(rest)?.2;
    let issuer = rest.get(..rest.len() - after_issuer.len())?;
    rest = der::read_tlv(after_issuer)?.2; // thisUpdate
    let mut entries: &[u8] = &[];
    let mut number = None;
    while !rest.is_empty() {
        let (tag, value, next) = der::read_tlv(rest)?;
        match tag {
            0x17 | 0x18 => {} // nextUpdate
            0x30 => entries = value,
            0xa0 => number = crl_number(value),
            _ => return None,
        }
        rest = next;
    }
    Some(CrlParts {
        issuer,
        number,
        entries,
    })
}

/// Where the revokedCertificates contents of a CRL are within its DER (an empty range at the end of
/// the DER when it has none): what [`crate::storage::CrlLayout`] records.
pub fn entries_range(crl_der: &[u8]) -> Option<std::ops::Range<usize>> {
    let parts = read_crl(crl_der)?;
    if parts.entries.is_empty() {
        return Some(crl_der.len()..crl_der.len());
    }
    let start = (parts.entries.as_ptr() as usize).checked_sub(crl_der.as_ptr() as usize)?;
    let end = start.checked_add(parts.entries.len())?;
    (end <= crl_der.len()).then_some(start..end)
}

fn crl_number(exts_wrapper: &[u8]) -> Option<u64> {
    let (0x30, mut exts, _) = der::read_tlv(exts_wrapper)? else {
        return None;
    };
    while !exts.is_empty() {
        let (_, ext, next) = der::read_tlv(exts)?;
        exts = next;
        let (0x06, oid, rest) = der::read_tlv(ext)? else {
            return None;
        };
        if oid != CrlNumber::OID.as_bytes() {
            continue;
        }
        // An optional `critical` BOOLEAN, then the OCTET STRING holding the INTEGER.
        let (mut tag, mut value, after) = der::read_tlv(rest)?;
        if tag == 0x01 {
            (tag, value, _) = der::read_tlv(after)?;
        }
        if tag != 0x04 {
            return None;
        }
        let (0x02, int, _) = der::read_tlv(value)? else {
            return None;
        };
        let int = int.strip_prefix(&[0]).unwrap_or(int);
        if int.len() > 8 {
            return None;
        }
        return Some(int.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
    }
    None
}

/// A serial's INTEGER contents without leading zero bytes: the key revocation checks compare.
pub fn serial_key(int: &[u8]) -> &[u8] {
    let zeros = int.iter().take_while(|b| **b == 0).count();
    &int[zeros..]
}

/// Serials added to a [`RevokedSerials`] beyond this are folded into a new base set.
const RECENT_MAX: usize = 4096;

/// The serials our CA has revoked: what TLS checks a client certificate against, instead of walking
/// a parsed CRL. Immutable: a revocation makes a new set that shares the bulk of the old one (a base
/// hash set, plus a short sorted list of the serials added since; the list is folded into a new base
/// every few thousand additions), so adding one serial to 100,000 costs microseconds.
#[derive(Debug, Clone, Default)]
pub struct RevokedSerials {
    base: std::sync::Arc<SerialSet>,
    /// Added since `base` was built: sorted, no duplicates, none in `base`.
    recent: std::sync::Arc<[u64]>,
}

#[derive(Debug, Default, Clone)]
struct SerialSet {
    /// Serials of up to 8 bytes (all of ours), sorted, each once: 8 bytes an entry, made by one sort
    /// of a CRL's serials (which come mostly in order), searched by bisection. A hash set of a
    /// million entries took twice the memory and several times as long to build at start-up.
    short: Box<[u64]>,
    /// Longer ones (from an imported CA, if ever).
    long: std::collections::HashSet<Box<[u8]>>,
}

impl SerialSet {
    fn contains_short(&self, n: u64) -> bool {
        self.short.binary_search(&n).is_ok()
    }

    /// The set with `more` short serials (sorted) merged in: the standard (stable) sort finds the two
    /// runs already in order and merges them in one pass.
    fn merged(&self, more: &[u64]) -> SerialSet {
        let mut short = Vec::with_capacity(self.short.len() + more.len());
        short.extend_from_slice(&self.short);
        short.extend_from_slice(more);
        short.sort();
        short.dedup();
        SerialSet {
            short: short.into(),
            long: self.long.clone(),
        }
    }
}

/// `v` sorted, each value once.
fn sorted_unique(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v.dedup();
    v
}

/// A serial key (see [`serial_key`]) of at most 8 bytes, as a number.
fn short_serial(key: &[u8]) -> Option<u64> {
    (key.len() <= 8).then(|| key.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

/// The serial keys of revokedCertificates contents ([`CrlParts::entries`]); `None` when malformed.
fn entry_serials(entries: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(entries.len() / 36);
    let mut rest = entries;
    while !rest.is_empty() {
        let (0x30, entry, next) = der::read_tlv(rest)? else {
            return None;
        };
        let (0x02, serial, _) = der::read_tlv(entry)? else {
            return None;
        };
        out.push(serial_key(serial));
        rest = next;
    }
    Some(out)
}

impl RevokedSerials {
    /// The serials of revokedCertificates contents ([`CrlParts::entries`]); `None` when malformed.
    pub fn from_entries(entries: &[u8]) -> Option<RevokedSerials> {
        let keys = entry_serials(entries)?;
        let mut short = Vec::with_capacity(keys.len());
        let mut long = std::collections::HashSet::new();
        for k in keys {
            match short_serial(k) {
                Some(n) => short.push(n),
                None => {
                    long.insert(k.into());
                }
            }
        }
        let set = SerialSet {
            short: sorted_unique(short).into(),
            long,
        };
        Some(RevokedSerials {
            base: std::sync::Arc::new(set),
            recent: std::sync::Arc::new([]),
        })
    }

    /// This set and the serials of more entries (revokedCertificates contents); `None` when they are
    /// malformed.
    pub fn with_entries(&self, entries: &[u8]) -> Option<RevokedSerials> {
        let keys = entry_serials(entries)?;
        let mut short = Vec::with_capacity(keys.len());
        let mut long = Vec::new();
        for k in keys {
            match short_serial(k) {
                Some(n) => short.push(n),
                None => long.push(k),
            }
        }
        if long.is_empty() {
            return Some(self.with_serials(&short));
        }
        let mut more: Vec<u64> = self.recent.to_vec();
        more.extend(short);
        let mut set = self.base.merged(&sorted_unique(more));
        for k in long {
            set.long.insert(k.into());
        }
        Some(RevokedSerials {
            base: std::sync::Arc::new(set),
            recent: std::sync::Arc::new([]),
        })
    }

    /// This set and `serials`.
    pub fn with_serials(&self, serials: &[u64]) -> RevokedSerials {
        let mut recent: Vec<u64> = self.recent.to_vec();
        recent.extend(serials.iter().filter(|s| !self.base.contains_short(**s)));
        recent.sort_unstable();
        recent.dedup();
        if recent.len() <= RECENT_MAX {
            return RevokedSerials {
                base: std::sync::Arc::clone(&self.base),
                recent: recent.into(),
            };
        }
        RevokedSerials {
            base: std::sync::Arc::new(self.base.merged(&recent)),
            recent: std::sync::Arc::new([]),
        }
    }

    /// How many serials it holds.
    pub fn len(&self) -> usize {
        self.base.short.len() + self.base.long.len() + self.recent.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `serial` (INTEGER contents, as in a certificate) is revoked.
    pub fn contains(&self, serial: &[u8]) -> bool {
        let key = serial_key(serial);
        match short_serial(key) {
            Some(n) => self.base.contains_short(n) || self.recent.binary_search(&n).is_ok(),
            None => self.base.long.contains(key),
        }
    }
}

/// The issuer Name (as encoded) and serial (INTEGER contents) of a certificate, found by walking its
/// outer structure. `None` when it is not a well-formed certificate.
pub fn cert_issuer_and_serial(cert_der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, cert, _) = der::read_tlv(cert_der)? else {
        return None;
    };
    let (0x30, mut tbs, _) = der::read_tlv(cert)? else {
        return None;
    };
    if tbs.first() == Some(&0xa0) {
        tbs = der::read_tlv(tbs)?.2; // version
    }
    let (0x02, serial, rest) = der::read_tlv(tbs)? else {
        return None;
    };
    let (0x30, _, rest) = der::read_tlv(rest)? else {
        return None; // signature algorithm
    };
    let after = der::read_tlv(rest)?.2;
    Some((rest.get(..rest.len() - after.len())?, serial))
}

/// The subject Name (as encoded) of a certificate.
pub fn cert_subject(cert_der: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = der::read_tlv(cert_der)? else {
        return None;
    };
    let (0x30, mut tbs, _) = der::read_tlv(cert)? else {
        return None;
    };
    if tbs.first() == Some(&0xa0) {
        tbs = der::read_tlv(tbs)?.2;
    }
    // serial, signature algorithm, issuer, validity, then the subject.
    let mut rest = tbs;
    for _ in 0..4 {
        rest = der::read_tlv(rest)?.2;
    }
    let after = der::read_tlv(rest)?.2;
    rest.get(..rest.len() - after.len())
}
