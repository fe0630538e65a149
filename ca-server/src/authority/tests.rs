//! The authority's invariants, at a fixed clock on a temporary SQLite database: every signing takes
//! its own serial and consumes its request, validity comes from the clock, a revocation takes one CRL
//! number and is in the published snapshot before `revoke` returns, renewal re-issues only the name's
//! current unrevoked certificate, and a name holds one request or certificate at a time.

use std::sync::Arc;

use time::OffsetDateTime;

use super::*;
use crate::clock::FixedClock;

struct Fixture {
    rt: tokio::runtime::Runtime,
    a: Authority,
    t0: OffsetDateTime,
    clock: Arc<FixedClock>,
    _tmp: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let t0 = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("ca"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut opts = SetupOptions::new("ca.example.test");
    opts.key_type = crate::ca::keys::KeyType::EcP256;
    let clock = Arc::new(FixedClock::new(t0));
    let (a, _) = rt
        .block_on(setup(&dir, &opts, CaSettings::default(), Arc::clone(&clock) as _))
        .unwrap();
    Fixture {
        rt,
        a,
        t0,
        clock,
        _tmp: tmp,
    }
}

impl Fixture {
    /// Submits and signs a request for each of `names`: their serials, in order.
    async fn issue_all(&self, names: &[String]) -> Vec<u64> {
        let mut serials = Vec::with_capacity(names.len());
        for name in names {
            self.a.submit("t", name, csr(name).0.as_bytes()).await.unwrap();
            serials.push(
                self.a
                    .sign("t", name, SignRequest::default())
                    .await
                    .unwrap()
                    .serial,
            );
        }
        serials
    }

    /// Another authority on the same data directory (as a second process, `ca` in local mode, would be).
    async fn another(&self) -> Authority {
        Authority::open(
            &self.a.dir(),
            (*self.a.settings()).clone(),
            Arc::clone(&self.a.clock),
        )
        .await
        .unwrap()
    }
}

/// A CSR for `name` with a new EC P-256 key: (PEM, the key's SubjectPublicKeyInfo DER).
fn csr(name: &str) -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let req = params.serialize_request(&key).unwrap();
    (
        req.pem().unwrap(),
        rcgen::PublicKeyData::subject_public_key_info(&key),
    )
}

fn public_key_of(der: &[u8]) -> Vec<u8> {
    let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
    c.public_key().raw.to_vec()
}

#[test]
fn concurrent_signings_take_one_serial_each_consume_their_requests_and_date_from_the_clock() {
    let f = fixture();
    let names: Vec<String> = (0..8).map(|i| format!("node{i}.example.test")).collect();
    f.rt.block_on(async {
        for n in &names {
            f.a.submit("t", n, csr(n).0.as_bytes()).await.unwrap();
        }
        let tasks: Vec<_> = names
            .iter()
            .map(|n| {
                let (a, n) = (f.a.clone(), n.clone());
                tokio::spawn(async move { a.sign("t", &n, SignRequest::default()).await })
            })
            .collect();
        let mut serials = Vec::new();
        for t in tasks {
            let issued = t.await.unwrap().unwrap();
            let (_, c) = x509_parser::parse_x509_certificate(&issued.der).unwrap();
            assert!(c.validity().not_before.timestamp() <= f.t0.unix_timestamp());
            let ttl = f.a.settings().cert_ttl.whole_seconds();
            assert_eq!(c.validity().not_after.timestamp(), f.t0.unix_timestamp() + ttl);
            serials.push(issued.serial);
        }
        serials.sort_unstable();
        serials.dedup();
        assert_eq!(serials.len(), names.len(), "no serial twice");
        for n in &names {
            assert!(
                f.a.store().request(n).await.unwrap().is_none(),
                "{n}: request consumed"
            );
            let s = f.a.status(n).await.unwrap().unwrap();
            assert_eq!(s.state, "signed");
        }
        let signs = f.a.store().audit_rows(None).await.unwrap();
        let ours = |r: &&crate::storage::AuditRow| {
            r.action == "sign" && r.certname.as_ref().is_some_and(|c| names.contains(c))
        };
        assert_eq!(
            signs.iter().filter(ours).count(),
            names.len(),
            "one audit row each"
        );
        // Signing again: nothing is pending.
        let again = f.a.sign("t", &names[0], SignRequest::default()).await;
        assert!(
            matches!(again, Err(AuthorityError::NoRequest { has_cert: true, .. })),
            "{again:?}"
        );
    });
}

#[test]
fn a_revocation_takes_one_crl_number_and_is_published_before_revoke_returns() {
    let f = fixture();
    f.rt.block_on(async {
        let name = "revoked.example.test";
        f.a.submit("t", name, csr(name).0.as_bytes()).await.unwrap();
        let issued = f.a.sign("t", name, SignRequest::default()).await.unwrap();
        let before = f.a.revocations().snapshot().unwrap();
        let serial_bytes = issued.serial.to_be_bytes();
        assert!(!before.revoked().contains(&serial_bytes));
        let revoked =
            f.a.revoke("t", name, crate::ca::crl::Reason::default())
                .await
                .unwrap();
        assert_eq!(revoked, vec![issued.serial]);
        let after = f.a.revocations().snapshot().unwrap();
        assert_eq!(after.number(), before.number() + 1);
        assert!(after.revoked().contains(&serial_bytes), "in force at once");
        assert_eq!(f.a.store().crl_number().await.unwrap(), Some(after.number()));
        // Nothing left to revoke: nothing revoked, and no CRL number spent.
        let again =
            f.a.revoke("t", name, crate::ca::crl::Reason::default())
                .await
                .unwrap();
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(f.a.revocations().snapshot().unwrap().number(), after.number());
    });
}

#[test]
fn renewal_reissues_only_the_current_unrevoked_certificate_for_the_same_key() {
    let f = fixture();
    f.rt.block_on(async {
        let name = "renewed.example.test";
        let (pem, public) = csr(name);
        f.a.submit("t", name, pem.as_bytes()).await.unwrap();
        let first = f.a.sign("t", name, SignRequest::default()).await.unwrap();
        let second = f.a.renew("t", &first.der).await.unwrap();
        assert_ne!(second.serial, first.serial);
        assert_eq!(public_key_of(&second.der), public);
        // The first is no longer the name's current certificate.
        assert!(matches!(
            f.a.renew("t", &first.der).await,
            Err(AuthorityError::Invalid(_))
        ));
        f.a.revoke("t", name, crate::ca::crl::Reason::default())
            .await
            .unwrap();
        assert!(matches!(
            f.a.renew("t", &second.der).await,
            Err(AuthorityError::Invalid(_))
        ));
    });
}

#[test]
fn a_name_holds_one_request_or_certificate_at_a_time() {
    let f = fixture();
    f.rt.block_on(async {
        let name = "once.example.test";
        f.a.submit("t", name, csr(name).0.as_bytes()).await.unwrap();
        let second = f.a.submit("t", name, csr(name).0.as_bytes()).await;
        assert!(matches!(second, Err(AuthorityError::Duplicate(_))), "{second:?}");
        f.a.sign("t", name, SignRequest::default()).await.unwrap();
        let after = f.a.submit("t", name, csr(name).0.as_bytes()).await;
        assert!(matches!(after, Err(AuthorityError::Duplicate(_))), "{after:?}");
        // A CSR under another name than its CN is refused, and stores nothing.
        let other =
            f.a.submit("t", "other.example.test", csr(name).0.as_bytes())
                .await;
        assert!(matches!(other, Err(AuthorityError::Name(_))), "{other:?}");
        assert!(f.a.store().request("other.example.test").await.unwrap().is_none());
    });
}

#[test]
fn a_crl_left_behind_its_number_is_signed_again_from_the_database() {
    let f = fixture();
    f.rt.block_on(async {
        let name = "lost-crl.example.test";
        f.a.submit("t", name, csr(name).0.as_bytes()).await.unwrap();
        let issued = f.a.sign("t", name, SignRequest::default()).await.unwrap();
        // What an older version could leave when it died between committing a revocation (with its
        // CRL number) and storing the CRL.
        let mut tx = f.a.store().write().await.unwrap();
        tx.revoke(issued.serial, Some(name), f.t0.unix_timestamp(), 1)
            .await
            .unwrap();
        let number = tx.next_crl_number().await.unwrap();
        tx.commit().await.unwrap();
        let reopened = f.another().await;
        let crl = reopened.revocations().refresh().await.unwrap();
        assert!(crl.number() > number, "a new CRL after the lost one");
        assert!(crl.revoked().contains(&issued.serial.to_be_bytes()));
        assert_eq!(reopened.store().crl_number().await.unwrap(), Some(crl.number()));
        let audit = reopened.store().audit_rows(None).await.unwrap();
        assert!(audit.iter().any(|r| r.action == "crl-recovery"));
        reopened.store().close().await;
    });
}

/// A revocation by another process on the SQLite database (here a second authority on it, as `ca
/// revoke` in local mode) is in this one's next check, although this one checked a moment before
/// and the file it checks first changed within the same clock tick; an unchanged file keeps the
/// snapshot; a file that went away is a change too.
#[test]
fn a_revocation_by_another_process_is_in_the_next_check() {
    let f = fixture();
    f.rt.block_on(async {
        let names: Vec<String> = (0..3).map(|i| format!("other{i}.example.test")).collect();
        let serials = f.issue_all(&names).await;
        let cli = f.another().await;
        let server = f.a.revocations();
        let before = server.refresh_if_changed().await.unwrap();
        for (name, serial) in names.iter().zip(&serials) {
            let held = server.refresh_if_changed().await.unwrap();
            assert!(!held.revoked().contains(&serial.to_be_bytes()));
            cli.revoke("t", name, crate::ca::crl::Reason::default())
                .await
                .unwrap();
            let after = server.refresh_if_changed().await.unwrap();
            assert!(
                after.revoked().contains(&serial.to_be_bytes()),
                "{name}: revoked by the other process, not in the next check"
            );
            assert!(after.number() > held.number());
        }
        let last = server.refresh_if_changed().await.unwrap();
        assert!(Arc::ptr_eq(&last, &server.refresh_if_changed().await.unwrap()));
        assert!(last.number() > before.number());
        // The file removed (by hand): read from the database again, nothing lost.
        let mark = f.a.dir().db().with_file_name("ca.db-crl");
        std::fs::remove_file(&mark).unwrap();
        let again = server.refresh_if_changed().await.unwrap();
        assert_eq!(again.number(), last.number());
        assert!(serials.iter().all(|s| again.revoked().contains(&s.to_be_bytes())));
        cli.store().close().await;
    });
}

/// With a CRL of more than 7,000 entries, each revocation's CRL is begun on another thread while the
/// previous one is signed (`authority/ahead.rs`): revocations in the same second that add an entry
/// as long as the last one are signed from that start, others (a later second, so another
/// thisUpdate; an entry of another length) are signed whole, and every CRL is the one
/// the CA would sign whole: its TBS is, its signature verifies, it lists every revocation.
#[test]
fn crls_begun_ahead_are_the_crls_signed_whole() {
    use crate::ca::crl::{encode_entries, sign_crl_with_entries, RevokedEntry};
    let f = fixture();
    f.rt.block_on(async {
        let names: Vec<String> = (0..4).map(|i| format!("r{i}.example.test")).collect();
        let serials = f.issue_all(&names).await;
        let mut tx = f.a.store().write().await.unwrap();
        for serial in 1_000_000..1_008_000u64 {
            tx.revoke(serial, None, f.t0.unix_timestamp() - 60, 1)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        f.a.republish_crl("t").await.unwrap();
        let signer = f.a.signer();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&signer.cert.der).unwrap();
        let check = |expected: usize| {
            let snap = f.a.revocations().snapshot().unwrap();
            let row = snap.row().clone();
            let (rest, crl) = x509_parser::parse_x509_crl(&row.der).unwrap();
            assert!(rest.is_empty());
            crl.verify_signature(ca_cert.public_key()).unwrap();
            assert_eq!(crl.iter_revoked_certificates().count(), expected);
            let entries: Vec<RevokedEntry> = crl
                .iter_revoked_certificates()
                .map(|e| RevokedEntry {
                    serial: e.raw_serial().iter().fold(0, |a, b| (a << 8) | u64::from(*b)),
                    revoked_at: e.revocation_date.to_datetime(),
                    reason: Default::default(),
                })
                .collect();
            let at = |t| OffsetDateTime::from_unix_timestamp(t).unwrap();
            let whole = sign_crl_with_entries(
                signer,
                row.number,
                at(row.this_update),
                at(row.next_update),
                &encode_entries(&entries),
            )
            .unwrap();
            let tbs = |der: &[u8]| {
                x509_parser::parse_x509_crl(der)
                    .unwrap()
                    .1
                    .tbs_cert_list
                    .as_ref()
                    .to_vec()
            };
            assert_eq!(tbs(&row.der), tbs(&whole), "CRL {}", row.number);
            snap
        };
        let before = f.a.revocations().started_ahead();
        for (i, name) in names.iter().enumerate().take(3) {
            f.a.revoke("t", name, Default::default()).await.unwrap();
            let snap = check(8_001 + i);
            assert!(snap.revoked().contains(&serials[i].to_be_bytes()));
        }
        // The first was predicted from the CRL signed from the database, whose last entry has a
        // longer serial (1,007,999): one more entry of that length is not what came. Then one more
        // entry like the last, in the same second: as predicted.
        assert_eq!(f.a.revocations().started_ahead(), before + 2);
        // A second later: thisUpdate is not the one predicted; signed whole, all the same.
        f.clock.set(f.t0 + time::Duration::seconds(1));
        f.a.revoke("t", &names[3], Default::default()).await.unwrap();
        check(8_004);
        assert_eq!(f.a.revocations().started_ahead(), before + 2);
    });
}

/// A start made ahead is finished by the revocation that takes it when the thread working ahead has
/// not finished it (that thread yields its core between steps): what is taken is the start of the
/// CRL signed whole, whichever thread did which steps; a start for another plan is not given.
#[test]
fn a_start_taken_before_it_is_finished_is_finished_by_the_taker() {
    use super::ahead::{Ahead, Plan};
    use crate::ca::crl::{encode_entries, sign_crl_with_entry_parts, sign_prepared, RevokedEntry};
    let key = crate::ca::keys::generate(crate::ca::keys::KeyType::Rsa2048).unwrap();
    let t = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
    let der =
        crate::ca::signer::self_signed_ca("Puppet CA: ahead", &key, 1, t, time::Duration::days(9)).unwrap();
    let ca = crate::ca::CaSigner::new(&crate::ca::pem_encode("CERTIFICATE", &der), key).unwrap();
    let next = t + time::Duration::days(5);
    let entry = |serial| RevokedEntry {
        serial,
        revoked_at: t,
        reason: Default::default(),
    };
    // About 4 MB of entries, as at 100,000 revocations: dozens of steps.
    let known: Arc<Vec<u8>> = Arc::new(encode_entries(
        &(0..100_000).map(|s| entry(s + 10)).collect::<Vec<_>>(),
    ));
    let added = encode_entries(&[entry(200_000)]);
    let whole = sign_crl_with_entry_parts(&ca, 9, t, next, &[&known, &added]).unwrap();
    let plan = Plan {
        base: (8, known.len()),
        number: 9,
        this_update: t.unix_timestamp(),
        next_update: next.unix_timestamp(),
        entries_len: known.len() + added.len(),
    };
    let mut finished_by_taker = 0;
    for round in 0..6 {
        let ahead = Ahead::default();
        let keep = std::time::Duration::from_secs(5);
        // Every other round, a second plan beside it (a revocation expected near a second's end).
        let other_second = Plan {
            this_update: plan.this_update + 1,
            next_update: plan.next_update + 1,
            ..plan
        };
        let plans: &[(Plan, std::time::Duration)] = if round % 4 == 2 {
            &[(other_second, keep), (plan, keep)]
        } else {
            &[(plan, keep)]
        };
        ahead.start(&ca, plans, &[Arc::clone(&known) as _]);
        ahead.confirm(8);
        if round % 2 == 1 {
            // Another plan: nothing fits, the work is cancelled.
            let other = Plan { number: 10, ..plan };
            assert!(ahead.take(&other).is_none());
            continue;
        }
        let start = ahead.take(&plan).expect("the start made for this plan");
        finished_by_taker += ahead.finished_by_taker();
        let signed = sign_prepared(&ca, start, 9, t, next, &added).unwrap().unwrap();
        assert_eq!(signed, whole, "round {round}: RSA signs the same bytes");
        assert!(ahead.take(&plan).is_none(), "a start is taken once");
    }
    // Taken microseconds after it began, a start of 4 MB (milliseconds of hashing) is not finished.
    assert!(
        finished_by_taker >= 1,
        "no start was finished by the revocation taking it"
    );
}

#[test]
fn signer_threads_lower_their_own_priority() {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    fn record() {
        let name = std::thread::current().name().unwrap_or_default().to_string();
        SEEN.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name);
    }
    crate::priority::set_lower(record);
    let f = fixture();
    f.rt.block_on(async {
        let n = "low.example.test";
        f.a.submit("t", n, csr(n).0.as_bytes()).await.unwrap();
        f.a.sign("t", n, SignRequest::default()).await.unwrap();
    });
    let seen = SEEN.lock().unwrap().clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|n| n == "ca-signer"),
        "{seen:?}"
    );
}
