//! Engine tests: the fixture corpus through the parser and the policy, issuance and CRLs re-parsed with
//! x509-parser, and a mutation run that must never panic.

use time::{Duration, OffsetDateTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use super::crl::{sign_crl, Reason, RevokedEntry};
use super::csr::{self, CsrError, San};
use super::issue::{issue_leaf, Validity};
use super::keys::{self, KeyType};
use super::{der, digest, oids, pem_encode, signer, CaSigner};
use crate::policy::signing::{check as check_with, SigningOptions, SigningPolicy};

fn check(c: &csr::Csr, flags: SigningOptions) -> Result<crate::policy::Permit, crate::policy::PolicyError> {
    check_with(c, &SigningPolicy::default(), flags)
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/../fixtures/csr/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

pub(super) fn test_ca() -> CaSigner {
    test_ca_named("Puppet CA: test")
}

pub(super) fn test_ca_named(name: &str) -> CaSigner {
    let key = keys::generate(KeyType::EcP256).unwrap();
    let der = signer::self_signed_ca(name, &key, 1, now(), Duration::days(3650)).unwrap();
    CaSigner::new(&pem_encode("CERTIFICATE", &der), key).unwrap()
}

#[test]
fn corpus_parses_with_expected_errors() {
    for ok in [
        "rsa2048.pem",
        "rsa4096.pem",
        "ec-p256.pem",
        "altnames.pem",
        "pp-extensions.pem",
        "challenge.pem",
        "wildcard-cn.pem",
        "uppercase.pem",
        "email-san.pem",
    ] {
        assert!(csr::parse(&fixture(ok)).is_ok(), "{ok}");
    }
    assert_eq!(
        csr::parse(&fixture("bad-signature.pem")).err(),
        Some(CsrError::BadSignature)
    );
    assert_eq!(csr::parse(&fixture("empty.pem")).err(), Some(CsrError::Empty));
    assert!(matches!(
        csr::parse(&fixture("garbage.pem")),
        Err(CsrError::Unparsable(_))
    ));
    assert!(matches!(
        csr::parse(&fixture("truncated.pem")),
        Err(CsrError::Unparsable(_))
    ));
    let two = [fixture("rsa2048.pem"), fixture("ec-p256.pem")].concat();
    assert_eq!(csr::parse(&two).err(), Some(CsrError::MultiplePem));
    assert_eq!(
        csr::parse(&vec![b'a'; csr::MAX_CSR_BYTES + 1]).err(),
        Some(CsrError::TooLarge)
    );
}

#[test]
fn csr_fields_are_extracted() {
    let c = csr::parse(&fixture("challenge.pem")).unwrap();
    assert_eq!(c.common_name, "agent-challenge.example.test");
    assert_eq!(c.challenge_password.as_deref(), Some("s3cr3t-token"));
    let c = csr::parse(&fixture("altnames.pem")).unwrap();
    assert_eq!(
        c.sans,
        vec![
            San::Dns("master-2".into()),
            San::Dns("puppet".into()),
            San::Dns("puppet.example.test".into())
        ]
    );
    let c = csr::parse(&fixture("ip-san.pem")).unwrap();
    assert!(c.sans.contains(&San::Ip("192.0.2.10".parse().unwrap())));
}

#[test]
fn issued_certificate_has_puppet_profile() {
    let ca = test_ca();
    let c = csr::parse(&fixture("pp-extensions.pem")).unwrap();
    let permit = check(&c, SigningOptions::default()).unwrap();
    let validity = Validity::from_now(now(), Duration::days(5 * 365)).unwrap();
    assert!(
        Validity::from_now(now(), Duration::days(3_000_000)).is_err(),
        "past year 9999"
    );
    let der_bytes = issue_leaf(&ca, &c.spki_der, &permit, 42, validity, &Default::default()).unwrap();
    let (_, cert) = X509Certificate::from_der(&der_bytes).unwrap();

    cert.verify_signature(Some(
        X509Certificate::from_der(&ca.cert.der).unwrap().1.public_key(),
    ))
    .unwrap();
    assert_eq!(cert.serial.to_string(), "42");
    assert_eq!(cert.subject().to_string(), "CN=agent-pp.example.test");
    assert_eq!(cert.issuer().to_string(), "CN=Puppet CA: test");
    assert_eq!(cert.public_key().raw, c.spki_der.as_slice());
    assert_eq!(
        cert.validity().not_before.to_datetime(),
        now() - Duration::days(1)
    );
    assert_eq!(
        cert.validity().not_after.to_datetime(),
        now() + Duration::days(5 * 365)
    );

    let mut seen_uuid = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => assert!(ext.critical && !bc.ca),
            ParsedExtension::KeyUsage(ku) => {
                assert!(ext.critical && ku.digital_signature() && ku.key_encipherment())
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                assert!(ext.critical && eku.server_auth && eku.client_auth)
            }
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                assert_eq!(aki.key_identifier.as_ref().unwrap().0, ca.cert.key_id.as_slice())
            }
            ParsedExtension::SubjectKeyIdentifier(ski) => {
                assert_eq!(
                    ski.0,
                    digest::key_identifier(&cert.public_key().subject_public_key.data)
                )
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                assert_eq!(
                    san.general_names,
                    vec![GeneralName::DNSName("agent-pp.example.test")]
                )
            }
            _ => {
                let arcs: Vec<u64> = ext.oid.iter().unwrap().collect();
                if arcs == [1, 3, 6, 1, 4, 1, 34380, 1, 1, 1] {
                    seen_uuid = true;
                    assert_eq!(
                        ext.value,
                        der::utf8_string("ED803750-E3C7-44F5-BB08-41A04433FE2E")
                    );
                }
            }
        }
    }
    assert!(seen_uuid, "pp_uuid copied");
}

#[test]
fn policy_refusals_name_the_permission() {
    let c = csr::parse(&fixture("altnames.pem")).unwrap();
    let msg = check(&c, SigningOptions::default()).unwrap_err().to_string();
    assert!(
        msg.contains("DNS:puppet, DNS:puppet.example.test") && msg.contains("--allow-dns-alt-names"),
        "{msg}"
    );
    let allowed = SigningOptions {
        allow_dns_alt_names: true,
        ..Default::default()
    };
    assert!(check(&c, allowed).is_ok());

    let c = csr::parse(&fixture("cli-auth.pem")).unwrap();
    let all = SigningOptions {
        allow_dns_alt_names: true,
        allow_authorization_extensions: true,
    };
    let msg = check(&c, all).unwrap_err().to_string();
    assert_eq!(
        msg,
        "Found extensions that are not permitted: 1.3.6.1.4.1.34380.1.3.39"
    );

    let c = csr::parse(&fixture("wildcard-san.pem")).unwrap();
    assert!(check(&c, all)
        .unwrap_err()
        .to_string()
        .contains("DNS:*.example.test"));
}

#[test]
fn crl_carries_number_aki_and_reasons() {
    let ca = test_ca();
    let entries = vec![
        RevokedEntry {
            serial: 2,
            revoked_at: now(),
            reason: Reason::default(),
        },
        RevokedEntry {
            serial: 99,
            revoked_at: now(),
            reason: "superseded".parse().unwrap(),
        },
    ];
    let der_bytes = sign_crl(
        &ca,
        7,
        now() - Duration::seconds(1),
        now() + Duration::days(1825),
        &entries,
    )
    .unwrap();
    let (_, crl) = CertificateRevocationList::from_der(&der_bytes).unwrap();
    assert_eq!(crl.crl_number().map(|n| n.to_string()).as_deref(), Some("7"));
    let (_, ca_cert) = X509Certificate::from_der(&ca.cert.der).unwrap();
    crl.verify_signature(ca_cert.public_key()).unwrap();
    let aki = crl
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().map(|k| k.0.to_vec()),
            _ => None,
        })
        .unwrap();
    assert_eq!(aki, ca.cert.key_id);
    let got: Vec<(String, u8)> = crl
        .iter_revoked_certificates()
        .map(|e| (e.user_certificate.to_string(), e.reason_code().unwrap().1 .0))
        .collect();
    assert_eq!(got, vec![("2".to_string(), 1), ("99".to_string(), 4)]);
}

#[test]
fn crl_is_read_without_decoding_entries() {
    use super::crl::{entries_range, read_crl, RevokedSerials};
    let ca = test_ca();
    let entries: Vec<RevokedEntry> = [1u64, 0x80, 0xffff_ffff_ffff]
        .iter()
        .map(|&serial| RevokedEntry {
            serial,
            revoked_at: now(),
            reason: Reason::default(),
        })
        .collect();
    let der_bytes = sign_crl(&ca, 300, now(), now() + Duration::days(5), &entries).unwrap();
    let parts = read_crl(&der_bytes).unwrap();
    assert_eq!(parts.number, Some(300));
    assert_eq!(parts.issuer, &ca.subject_der[..]);
    assert_eq!(parts.entries, &super::crl::encode_entries(&entries)[..]);
    let set = RevokedSerials::from_entries(parts.entries).unwrap();
    // Where the entries are, for storing the CRL in pieces.
    let range = entries_range(&der_bytes).unwrap();
    assert_eq!(&der_bytes[range], parts.entries);
    // No entries at all.
    let empty = sign_crl(&ca, 0, now(), now() + Duration::days(5), &[]).unwrap();
    let parts = read_crl(&empty).unwrap();
    let empty_set = RevokedSerials::from_entries(parts.entries).unwrap();
    assert!(empty_set.is_empty());
    assert_eq!((parts.number, parts.entries.len()), (Some(0), 0));
    assert_eq!(entries_range(&empty), Some(empty.len()..empty.len()));
    // Truncated or garbage input: None, never a panic.
    for cut in [0, 1, 10, der_bytes.len() / 2, der_bytes.len() - 1] {
        assert!(read_crl(&der_bytes[..cut]).is_none(), "cut at {cut}");
    }
    assert!(RevokedSerials::from_entries(&[0x30, 0x03, 0x04, 0x01, 0x00]).is_none());
    assert!(entries_range(&der_bytes[..10]).is_none());

    // The set TLS checks: loaded from the CRL, then extended in place.
    assert!(set.contains(&[0x00, 0x80]) && set.contains(&[0x01]) && !set.contains(&[0x02]));
    assert!(set.contains(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]));
    // A serial longer than 8 bytes is looked up as bytes.
    let long = [0x01, 2, 3, 4, 5, 6, 7, 8, 9];
    let mut entry = vec![0x02, 9];
    entry.extend(long);
    entry.extend([0x17, 0x0d]);
    entry.extend(b"250101000000Z");
    let mut entries = vec![0x30, entry.len() as u8];
    entries.extend(entry);
    let long_set = RevokedSerials::from_entries(&entries).unwrap();
    assert!(long_set.contains(&long) && !long_set.contains(&long[1..]));
    // A new set shares the old one, which does not change.
    let more = set.with_serials(&[2, 1]);
    assert!(more.contains(&[0x02]) && more.len() == 4);
    assert!(!set.contains(&[0x02]) && set.len() == 3);
    let with_long = more.with_entries(&entries).unwrap();
    assert!(with_long.contains(&long) && with_long.contains(&[0x02]) && with_long.len() == 5);
    assert!(more.with_entries(&[0x30, 0x01]).is_none());
}

#[test]
fn revoked_serials_fold_many_additions_into_a_new_base() {
    use super::crl::RevokedSerials;
    let mut set = RevokedSerials::default();
    for n in 1..=10_000u64 {
        set = set.with_serials(&[n]);
    }
    assert_eq!(set.len(), 10_000);
    for n in [1u64, 4096, 4097, 8193, 10_000] {
        assert!(set.contains(&n.to_be_bytes()), "{n}");
    }
    assert!(!set.contains(&10_001u64.to_be_bytes()) && !set.contains(&[0]));
    // Adding what is there changes nothing.
    assert_eq!(set.with_serials(&[5, 5, 10_000]).len(), 10_000);
}

#[test]
fn revoked_serials_merge_additions_in_any_order() {
    use super::crl::RevokedSerials;
    // Odd serials first, then even ones from the top down, in batches that cross the fold.
    let mut set = RevokedSerials::default().with_serials(&(1..=9_999u64).step_by(2).collect::<Vec<_>>());
    let evens: Vec<u64> = (2..=10_000u64).rev().step_by(2).collect();
    for batch in evens.chunks(1_500) {
        set = set.with_serials(batch);
    }
    assert_eq!(set.len(), 10_000);
    assert!((1..=10_000u64).all(|n| set.contains(&n.to_be_bytes())));
    assert!(!set.contains(&0u64.to_be_bytes()) && !set.contains(&10_001u64.to_be_bytes()));
}

#[test]
fn crl_from_another_encoder_is_read_like_x509_parser_reads_it() {
    use rcgen::{
        CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
    };
    let ca = test_ca();
    let serials: Vec<Vec<u8>> = vec![vec![0x01], vec![0x00, 0xff, 0x10], vec![0x7f; 20], vec![0x42; 3]];
    let params = CertificateRevocationListParams {
        this_update: now(),
        next_update: now() + Duration::days(1),
        crl_number: SerialNumber::from(77u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from_slice(s),
                revocation_time: now(),
                reason_code: Some(RevocationReason::Superseded),
                invalidity_date: Some(now()),
            })
            .collect(),
        key_identifier_method: KeyIdMethod::PreSpecified(ca.cert.key_id.clone()),
    };
    let crl = params.signed_by(ca.issuer()).unwrap();
    let der_bytes = crl.der().to_vec();
    let (_, parsed) = CertificateRevocationList::from_der(&der_bytes).unwrap();
    let parts = super::crl::read_crl(&der_bytes).unwrap();
    assert_eq!(parts.number, Some(77));
    assert_eq!(parts.issuer, parsed.issuer().as_raw());
    let set = super::crl::RevokedSerials::from_entries(parts.entries).unwrap();
    assert_eq!(set.len(), parsed.iter_revoked_certificates().count());
    for e in parsed.iter_revoked_certificates() {
        assert!(set.contains(e.raw_serial()), "{:?}", e.raw_serial());
    }
    assert!(!set.contains(&[0x02]));
}

#[test]
fn certificate_issuer_and_serial_are_found() {
    use super::crl::cert_issuer_and_serial;
    let ca = test_ca();
    let (issuer, serial) = cert_issuer_and_serial(&ca.cert.der).unwrap();
    let (_, parsed) = X509Certificate::from_der(&ca.cert.der).unwrap();
    assert_eq!(issuer, parsed.issuer().as_raw());
    assert_eq!(serial, parsed.raw_serial());
    assert!(cert_issuer_and_serial(&ca.cert.der[..40]).is_none());
    assert!(cert_issuer_and_serial(b"").is_none());
}

#[test]
fn reasons_parse_and_print() {
    assert_eq!("key-compromise".parse::<Reason>().unwrap(), Reason::default());
    assert_eq!(Reason::from_code(5).unwrap().to_string(), "cessationOfOperation");
    assert!("nope".parse::<Reason>().is_err());
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn no_panic_on_mutated_or_random_input() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let seeds: Vec<Vec<u8>> = ["rsa2048.pem", "pp-extensions.pem", "altnames.pem", "ec-p256.pem"]
        .iter()
        .map(|f| pem::parse(fixture(f)).unwrap().into_contents())
        .collect();
    let permissive = SigningOptions {
        allow_dns_alt_names: true,
        allow_authorization_extensions: true,
    };
    for i in 0..4000 {
        let mut der_bytes = seeds[i % seeds.len()].clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(der_bytes.len());
            match rng.below(3) {
                0 if !der_bytes.is_empty() => der_bytes[at] ^= 1 << rng.below(8),
                1 => der_bytes.truncate(at),
                _ => der_bytes.insert(at, rng.next() as u8),
            }
        }
        if let Ok(c) = csr::parse_der(&der_bytes) {
            let _ = check(&c, permissive);
        }
        let pem_text = pem_encode("CERTIFICATE REQUEST", &der_bytes);
        let _ = csr::parse(pem_text.as_bytes());
        let random: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
        let _ = csr::parse(&random);
        let _ = csr::parse_der(&random);
        let _ = der::decode_string(&random);
    }
    assert_eq!(oids::short_name(oids::PP_CLI_AUTH), Some("pp_cli_auth"));
}

#[test]
fn a_stored_request_is_not_verified_again_but_a_submitted_one_is() {
    let pem_text = fixture("bad-signature.pem");
    assert!(matches!(csr::parse(&pem_text), Err(CsrError::BadSignature)));
    let der_bytes = pem::parse(&pem_text).unwrap().into_contents();
    assert!(matches!(csr::parse_der(&der_bytes), Err(CsrError::BadSignature)));
    // Only requests that went through `parse` are stored: signing them does not verify again.
    let stored = csr::parse_stored_der(&der_bytes).unwrap();
    assert!(!stored.common_name.is_empty());
}

#[test]
fn an_audit_key_wrapped_for_a_ca_key_opens_only_with_that_key() {
    let old = test_ca_named("Puppet CA: old");
    let mut new = test_ca_named("Puppet CA: new");
    let mut other = test_ca_named("Puppet CA: other");
    let sealing = old.audit_key().to_vec();
    assert_ne!(new.audit_key(), sealing.as_slice());
    let wrapped = new.wrap_audit_key(&sealing).unwrap();
    assert!(
        !wrapped.windows(sealing.len()).any(|w| w == sealing.as_slice()),
        "encrypted"
    );
    // Another CA key cannot open it, nor can anyone change a byte of it.
    assert!(other.adopt_audit_key(&wrapped).is_err());
    for i in [0, 5, wrapped.len() - 1] {
        let mut bad = wrapped.clone();
        bad[i] ^= 1;
        assert!(new.adopt_audit_key(&bad).is_err(), "byte {i} changed");
    }
    assert!(new.adopt_audit_key(&wrapped[..wrapped.len() - 1]).is_err());
    assert_ne!(
        new.audit_key(),
        sealing.as_slice(),
        "a refused key is not adopted"
    );
    new.adopt_audit_key(&wrapped).unwrap();
    assert_eq!(new.audit_key(), sealing.as_slice());
    // Wrapped again for a later key, it is still the first sealing key.
    let again = other.wrap_audit_key(new.audit_key()).unwrap();
    other.adopt_audit_key(&again).unwrap();
    assert_eq!(other.audit_key(), sealing.as_slice());
}

/// A self-signed RSA-2048 CA (RSA signatures are deterministic: the same TBS gives the same bytes).
fn rsa_2048_ca() -> CaSigner {
    let key = keys::generate(KeyType::Rsa2048).unwrap();
    let der = signer::self_signed_ca("Puppet CA: rsa", &key, 1, now(), Duration::days(3650)).unwrap();
    CaSigner::new(&pem_encode("CERTIFICATE", &der), key).unwrap()
}

/// A CRL entry for `serial`, revoked at [`now`] for keyCompromise.
fn entry(serial: u64) -> RevokedEntry {
    RevokedEntry {
        serial,
        revoked_at: now(),
        reason: Reason::default(),
    }
}

/// The TBSCertList of a CRL, as encoded.
fn tbs(der: &[u8]) -> Vec<u8> {
    let (_, crl) = CertificateRevocationList::from_der(der).unwrap();
    crl.tbs_cert_list.as_ref().to_vec()
}

/// A CRL signed from its entries in parts is the CRL signed from them whole (the same TBS), and it
/// verifies at every size, including sizes where the outer length needs one byte more or less than
/// the room left for it before signing (the ECDSA signature's length varies by a byte or two).
#[test]
fn crls_signed_from_entry_parts_verify_at_every_size() {
    use super::crl::{encode_entries, sign_crl_with_entries, sign_crl_with_entry_parts};
    let (ec, rsa) = (test_ca(), rsa_2048_ca());
    for ca in [&ec, &rsa] {
        let (_, ca_cert) = X509Certificate::from_der(&ca.cert.der).unwrap();
        // One entry is 36 bytes here: counts around the 128, 256 and 65,536-byte length boundaries.
        for n in (0..12).chain(1..9).map(|i| i as u64).chain(1_810..1_830) {
            let entries: Vec<RevokedEntry> = (1..=n).map(|s| entry(s + 1_000)).collect();
            let der = encode_entries(&entries);
            let (a, b) = der.split_at(der.len() / 3 / 36 * 36);
            let from_parts =
                sign_crl_with_entry_parts(ca, 5, now(), now() + Duration::days(5), &[a, b]).unwrap();
            let whole = sign_crl_with_entries(ca, 5, now(), now() + Duration::days(5), &der).unwrap();
            assert_eq!(tbs(&from_parts), tbs(&whole), "{n} entries");
            let (rest, crl) = CertificateRevocationList::from_der(&from_parts).unwrap();
            assert!(rest.is_empty(), "{n} entries: nothing after the CRL");
            crl.verify_signature(ca_cert.public_key()).unwrap();
            assert_eq!(crl.iter_revoked_certificates().count() as u64, n);
        }
    }
}

/// A CRL whose start was made ahead ([`super::crl::Preparing`]) is the CRL signed whole: byte for
/// byte with an RSA key (deterministic signatures), the same TBS and a valid signature with ECDSA,
/// at sizes around the length-encoding boundaries, whether its start was made at once or in small
/// steps over entries in two parts, finished at once (as a revocation finishes what the thread
/// working ahead began); a start made for other dates, another number or another length of new
/// entries is refused (`None`), and one given fewer entries than announced is not made.
#[test]
fn a_crl_started_ahead_is_the_crl_signed_whole() {
    use super::crl::{encode_entries, sign_crl_with_entry_parts, sign_prepared, Preparing};
    let (ec, rsa) = (test_ca(), rsa_2048_ca());
    let (t, next) = (now(), now() + Duration::days(5));
    for ca in [&ec, &rsa] {
        assert!(ca.can_sign_digests());
        let (_, ca_cert) = X509Certificate::from_der(&ca.cert.der).unwrap();
        for n in (0..4).chain(1_818..1_822).map(|i| i as u64) {
            let known = encode_entries(&(1..=n).map(|s| entry(s + 1_000)).collect::<Vec<_>>());
            let added = encode_entries(&[entry(n + 1_001)]);
            let start = || {
                let mut p = Preparing::new(ca, 7, t, next, known.len(), added.len()).unwrap();
                while p.advance(&[&known], usize::MAX) {}
                p.finish().unwrap()
            };
            let ahead = sign_prepared(ca, start(), 7, t, next, &added).unwrap().unwrap();
            let whole = sign_crl_with_entry_parts(ca, 7, t, next, &[&known, &added]).unwrap();
            // In steps of 100 bytes over two parts, a few of them, then the rest at once.
            let (a, b) = known.split_at(known.len() / 3);
            let mut p = Preparing::new(ca, 7, t, next, known.len(), added.len()).unwrap();
            for _ in 0..40 {
                p.advance(&[a, b], 100);
            }
            while p.advance(&[a, b], usize::MAX) {}
            let stepped = p.finish().unwrap();
            let stepped = sign_prepared(ca, stepped, 7, t, next, &added).unwrap().unwrap();
            assert_eq!(tbs(&stepped), tbs(&whole), "{n} entries, made in steps");
            assert_eq!(tbs(&ahead), tbs(&whole), "{n} entries");
            if std::ptr::eq(ca, &rsa) {
                assert_eq!(ahead, whole, "{n} entries: RSA signs the same bytes");
            }
            let (rest, crl) = CertificateRevocationList::from_der(&ahead).unwrap();
            assert!(rest.is_empty());
            crl.verify_signature(ca_cert.public_key()).unwrap();
            assert_eq!(crl.iter_revoked_certificates().count() as u64, n + 1);
            // Anything but what it was made for: signed whole by the caller.
            let later = t + Duration::seconds(1);
            assert!(sign_prepared(ca, start(), 8, t, next, &added).unwrap().is_none());
            assert!(sign_prepared(ca, start(), 7, later, next, &added)
                .unwrap()
                .is_none());
            assert!(
                sign_prepared(ca, start(), 7, t, later + Duration::days(5), &added)
                    .unwrap()
                    .is_none()
            );
            let two = encode_entries(&[entry(n + 1_001), entry(n + 1_002)]);
            assert!(sign_prepared(ca, start(), 7, t, next, &two).unwrap().is_none());
        }
        // Fewer known bytes than announced: nothing is made.
        let short = vec![0u8; 1_000];
        let mut p = Preparing::new(ca, 7, t, next, 1_001, 36).unwrap();
        while p.advance(&[&short], 64) {}
        assert!(p.finish().is_none());
    }
}

/// The CRL header (version, algorithm, issuer, dates, AKI and CRL number) is what an independent
/// encoder writes for the same CRL, with the dates as RFC 5280 wants them (UTCTime through 2049,
/// GeneralizedTime after) and for an RSA key the algorithm's NULL parameters.
#[test]
fn crl_header_is_what_another_encoder_writes() {
    use rcgen::{CertificateRevocationListParams, KeyIdMethod, SerialNumber};
    for ca in [test_ca(), rsa_2048_ca()] {
        for (this_update, number) in [
            (now(), 0u64),
            (now(), 0x80),
            (now() + Duration::days(365 * 30), u64::MAX),
        ] {
            let next_update = this_update + Duration::days(5);
            let ours = sign_crl(&ca, number, this_update, next_update, &[]).unwrap();
            let theirs = CertificateRevocationListParams {
                this_update,
                next_update,
                crl_number: SerialNumber::from(number),
                issuing_distribution_point: None,
                revoked_certs: Vec::new(),
                key_identifier_method: KeyIdMethod::PreSpecified(ca.cert.key_id.clone()),
            }
            .signed_by(ca.issuer())
            .unwrap();
            assert_eq!(tbs(&ours), tbs(theirs.der()), "CRL {number} at {this_update}");
        }
    }
}
