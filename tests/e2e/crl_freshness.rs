//! CRL freshness: a revocation in the same second as an agent's last CRL fetch still reaches it through
//! `If-Modified-Since`, and no CRL's thisUpdate is before a revocation it lists.

use std::time::{Duration as StdDuration, Instant, SystemTime, UNIX_EPOCH};

use hyper::{Method, StatusCode};
use time::Duration;
use x509_parser::prelude::{CertificateRevocationList, FromDer};

use crate::server::{As, TestServer};

/// (thisUpdate, serials with their revocation dates) of the first CRL in a PEM chain.
fn crl_parts(pem_text: &str) -> (i64, Vec<(u64, i64)>) {
    let block = pem::parse_many(pem_text)
        .unwrap()
        .into_iter()
        .find(|p| p.tag() == "X509 CRL")
        .expect("a CRL");
    crl_parts_der(block.contents())
}

fn crl_parts_der(der: &[u8]) -> (i64, Vec<(u64, i64)>) {
    let (_, crl) = CertificateRevocationList::from_der(der).unwrap();
    let entries = crl
        .iter_revoked_certificates()
        .map(|r| {
            (
                r.raw_serial_as_string()
                    .split(':')
                    .fold(0u64, |acc, b| acc * 256 + u64::from_str_radix(b, 16).unwrap()),
                r.revocation_date.timestamp(),
            )
        })
        .collect();
    (crl.last_update().timestamp(), entries)
}

#[track_caller]
fn assert_this_update_covers_revocations(this_update: i64, entries: &[(u64, i64)]) {
    for (serial, at) in entries {
        assert!(
            this_update >= *at,
            "thisUpdate {this_update} is before the revocation of serial {serial} at {at}"
        );
    }
}

const CRL: &str = "/puppet-ca/v1/certificate_revocation_list/ca";

fn revoke(s: &TestServer, name: &str) {
    let r = s.send(
        &As::Admin,
        Method::PUT,
        &format!("/puppet-ca/v1/certificate_status/{name}"),
        &[("content-type", "application/json")],
        br#"{"desired_state":"revoked"}"#,
    );
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
}

fn subsec() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_millis()
}

/// An agent fetched the CRL; a revocation follows within the same second; the agent asks again with the
/// `Last-Modified` it got as `If-Modified-Since`: it must get the new CRL, with the new serial.
#[test]
fn crl_revoked_in_the_same_second_is_not_answered_304() {
    let s = TestServer::start();
    let names: Vec<String> = (0..8).map(|i| format!("same-second-{i}.example.test")).collect();
    let serials: Vec<u64> = names
        .iter()
        .map(|n| match s.identity(n) {
            As::Cert(cert, _) => crate::harness::serial_of_cert_file(&cert),
            _ => unreachable!(),
        })
        .collect();
    let mut checked = 0;
    for pair in (0..names.len()).step_by(2) {
        // Start just after a second begins, so both revocations and the fetch between them fall in it.
        while subsec() > 100 {
            std::thread::sleep(StdDuration::from_millis(5));
        }
        let started = Instant::now();
        revoke(&s, &names[pair]);
        let first = s.get(&As::Anonymous, CRL);
        assert_eq!(first.status, StatusCode::OK);
        let lm = first.headers["last-modified"].to_str().unwrap().to_string();
        revoke(&s, &names[pair + 1]);
        let again = s.send(
            &As::Anonymous,
            Method::GET,
            CRL,
            &[("if-modified-since", &lm)],
            b"",
        );
        if started.elapsed() > StdDuration::from_millis(850) {
            continue; // the second ended in between: not the case under test, try again
        }
        checked += 1;
        assert_eq!(
            again.status,
            StatusCode::OK,
            "a CRL changed within the same second as Last-Modified {lm} was answered 304"
        );
        let (this_update, entries) = crl_parts(&again.text());
        assert!(
            entries.iter().any(|(serial, _)| *serial == serials[pair + 1]),
            "the new serial {} is not in the CRL served",
            serials[pair + 1]
        );
        assert_this_update_covers_revocations(this_update, &entries);
        // Nothing changed since: its own Last-Modified gets 304.
        let lm2 = again.headers["last-modified"].to_str().unwrap().to_string();
        assert_ne!(lm2, lm);
        let unchanged = s.send(
            &As::Anonymous,
            Method::GET,
            CRL,
            &[("if-modified-since", &lm2)],
            b"",
        );
        assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
        if checked == 2 {
            break;
        }
    }
    assert!(checked > 0, "never managed two revocations within one second");
}

/// Every CRL lists revocations no newer than its thisUpdate: after a revocation at a sub-second
/// instant, a republication, and a clock that stepped back.
#[test]
fn crl_this_update_is_never_before_a_revocation_it_lists() {
    let f = crate::harness::FixedClockCa::new(false);
    let (a, clock, t0) = (&f.authority, &f.clock, f.t0);
    f.rt.block_on(async {
        for name in ["one.example.test", "two.example.test", "three.example.test"] {
            a.generate("t", name, &[], ca_server::ca::keys::KeyType::EcP256, None)
                .await
                .unwrap();
        }
        let check = |what: &str, der: &[u8], revoked: usize| {
            let (this_update, entries) = crl_parts_der(der);
            assert_eq!(entries.len(), revoked, "{what}");
            assert_this_update_covers_revocations(this_update, &entries);
        };
        clock.set(t0 + Duration::milliseconds(400));
        a.revoke("t", "one.example.test", Default::default())
            .await
            .unwrap();
        check("a revocation", &a.crl().await.unwrap().row().der, 1);

        clock.set(t0 + Duration::seconds(5) + Duration::milliseconds(999));
        a.revoke("t", "two.example.test", Default::default())
            .await
            .unwrap();
        check("a second revocation", &a.crl().await.unwrap().row().der, 2);

        a.republish_crl("t").await.unwrap();
        check(
            "a CRL signed from the database",
            &a.crl().await.unwrap().row().der,
            2,
        );

        // The clock stepped back: the CRL still is no older than what it lists.
        clock.set(t0 - Duration::seconds(30));
        a.revoke("t", "three.example.test", Default::default())
            .await
            .unwrap();
        check(
            "after the clock stepped back",
            &a.crl().await.unwrap().row().der,
            3,
        );
        a.republish_crl("t").await.unwrap();
        check(
            "republished after the clock stepped back",
            &a.crl().await.unwrap().row().der,
            3,
        );
    });
}
