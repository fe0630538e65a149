//! One contract for both storage backends: the same battery runs on a SQLite file and on a throwaway
//! PostgreSQL cluster. It covers what several writers must never break: serials never reused (with
//! concurrent writers on separate pools, as separate processes or replicas would be), CRL numbers never
//! going back, a duplicate request refused, a revocation shown as revoked, the audit chain intact.

use ca_server::storage::{
    AuditRecord, CertRow, CrlLayout, CrlRow, CrlUpdate, NewCertificate, NewRequest, StatusFilter, Store,
    StoreError,
};

use crate::pg::PgCluster;

async fn contract(open: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Store>>>) {
    let store = open().await;
    let mut tx = store.write().await.unwrap();
    tx.init_ca("chain", b"key-id", 2, 100).await.unwrap();
    tx.commit().await.unwrap();
    // A second CA in the same database is refused.
    let mut tx = store.write().await.unwrap();
    assert!(matches!(
        tx.init_ca("other", b"k", 1, 0).await,
        Err(StoreError::Duplicate(_))
    ));
    drop(tx);

    // Serials: four writers, each on its own pool (as separate processes), 25 serials each.
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s = open().await;
        tasks.push(async move {
            let mut got = Vec::new();
            for i in 0..25 {
                let mut tx = s.write().await.unwrap();
                let serial = tx.next_serial().await.unwrap();
                let name = format!("w{w}-{i}.example.test");
                tx.insert_certificate(
                    &cert_row(serial, &name, vec![1, 2, 3]),
                    "{\"state\":\"signed\"}",
                    100,
                    "test",
                )
                .await
                .unwrap();
                tx.audit(&AuditRecord::ok(100, "test", "sign").on(&name).serial(serial))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
                got.push(serial);
            }
            s.close().await;
            got
        });
    }
    let mut all: Vec<u64> = futures_join_all(tasks).await.into_iter().flatten().collect();
    all.sort_unstable();
    let expected: Vec<u64> = (2..102).collect();
    assert_eq!(all, expected, "serials unique, dense, from the first serial");
    assert_eq!(store.peek_serial().await.unwrap(), 102);
    audit_intact(&store, 100, "under concurrent writers").await;

    // Requests: a duplicate is refused unless replacing.
    let mut tx = store.write().await.unwrap();
    tx.put_request("req.example.test", b"csr", "{}", 1, "test", false)
        .await
        .unwrap();
    assert!(matches!(
        tx.put_request("req.example.test", b"csr2", "{}", 1, "test", false)
            .await,
        Err(StoreError::Duplicate(_))
    ));
    drop(tx); // rolled back: nothing stored
    assert!(store.request("req.example.test").await.unwrap().is_none());
    let mut tx = store.write().await.unwrap();
    tx.put_request("req.example.test", b"csr", "{}", 1, "test", false)
        .await
        .unwrap();
    tx.put_request("req.example.test", b"csr2", "{}", 2, "test", true)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.request("req.example.test").await.unwrap().unwrap().csr_der,
        b"csr2"
    );

    // A signing round as the signing pipeline writes it: the requests read with what the audit
    // rows need, then the certificates, the requests they take, the audit rows and the serials
    // reserved for the next certificates, together.
    let mut tx = store.write().await.unwrap();
    for name in ["round-a.example.test", "round-b.example.test"] {
        tx.put_request(name, name.as_bytes(), "{}", 1, "test", false)
            .await
            .unwrap();
    }
    let first = tx.reserve_serials(1).await.unwrap();
    assert_eq!(first, 102..103);
    tx.commit().await.unwrap();
    let row = cert_row(102, "round-a.example.test", vec![4, 5, 6]);
    let new = [NewCertificate {
        row: &row,
        status_json: "{\"state\":\"signed\"}",
        by: "test",
    }];
    let audits = [
        AuditRecord::ok(300, "test", "sign")
            .on("round-a.example.test")
            .serial(102),
        AuditRecord::refused(300, "test", "sign")
            .on("none.example.test")
            .detail("no request"),
    ];
    let mut tx = store.write_batch().await.unwrap();
    let names = [
        "round-a.example.test",
        "round-b.example.test",
        "none.example.test",
    ];
    let pending = tx
        .requests_named_before_audit(&names, audits.len())
        .await
        .unwrap();
    assert_eq!(pending.len(), 2, "{:?}", pending.keys());
    assert_eq!(pending["round-a.example.test"].csr_der, b"round-a.example.test");
    let next = tx
        .store_round_and_commit(&new, 300, &["round-a.example.test"], &audits, 2)
        .await
        .unwrap();
    assert_eq!(next, 103..105, "the serials after the last reserved");
    assert!(store.request("round-a.example.test").await.unwrap().is_none());
    assert!(store.request("round-b.example.test").await.unwrap().is_some());
    let cert = store
        .current_certificate("round-a.example.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((cert.serial, cert.der), (102, vec![4, 5, 6]));
    assert_eq!(store.peek_serial().await.unwrap(), 105);
    // The next round sees it (its policy checks read a name's current certificate).
    let mut tx = store.write_batch().await.unwrap();
    let seen = tx
        .current_certificate("round-a.example.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((seen.serial, seen.der, seen.revoked), (102, vec![4, 5, 6], None));
    drop(tx);
    // A serial stored twice is refused, and the whole round with it.
    let again = cert_row(102, "round-b.example.test", vec![4, 5, 6]);
    let dup = [NewCertificate {
        row: &again,
        status_json: "{}",
        by: "test",
    }];
    let mut tx = store.write_batch().await.unwrap();
    tx.requests_named_before_audit(&["round-b.example.test"], 1)
        .await
        .unwrap();
    let refused = tx
        .store_round_and_commit(
            &dup,
            301,
            &["round-b.example.test"],
            &[AuditRecord::ok(301, "test", "sign")
                .on("round-b.example.test")
                .serial(102)],
            1,
        )
        .await;
    assert!(matches!(refused, Err(StoreError::Duplicate(_))), "{refused:?}");
    assert!(store.request("round-b.example.test").await.unwrap().is_some());
    assert_eq!(store.peek_serial().await.unwrap(), 105);
    audit_intact(&store, 102, "after a signing round").await;
    // Certificate requests as a submission stores them: what their names hold, read with the audit
    // log's ends; the requests and their audit rows written in one round trip.
    let mut tx = store.write_batch().await.unwrap();
    let held = tx
        .name_states_before_audit(
            &[
                "round-a.example.test",
                "round-b.example.test",
                "new-a.example.test",
            ],
            2,
        )
        .await
        .unwrap();
    assert_eq!(held.get("round-a.example.test"), Some(&"signed"), "{held:?}");
    assert_eq!(held.get("round-b.example.test"), Some(&"requested"), "{held:?}");
    assert_eq!(held.get("new-a.example.test"), None, "{held:?}");
    let rows = [NewRequest {
        certname: "new-a.example.test",
        csr_der: b"new-a",
        status_json: "{}",
        by: "test",
    }];
    let submitted = [
        AuditRecord::ok(303, "test", "submit").on("new-a.example.test"),
        AuditRecord::refused(303, "test", "submit")
            .on("round-a.example.test")
            .detail("has a certificate"),
    ];
    tx.store_requests_and_commit(&rows, 303, true, &submitted)
        .await
        .unwrap();
    let stored = store.request("new-a.example.test").await.unwrap().unwrap();
    assert_eq!((stored.csr_der, stored.submitted_at), (b"new-a".to_vec(), 303));
    // The same name again without replacing: refused, and nothing of the transaction kept.
    let mut tx = store.write_batch().await.unwrap();
    tx.name_states_before_audit(&[], 1).await.unwrap();
    let again = tx
        .store_requests_and_commit(&rows, 304, false, &submitted[..1])
        .await;
    assert!(matches!(again, Err(StoreError::Duplicate(_))), "{again:?}");
    assert_eq!(
        store
            .request("new-a.example.test")
            .await
            .unwrap()
            .unwrap()
            .submitted_at,
        303
    );
    audit_intact(&store, 104, "after certificate requests").await;
    // Gone again, for the listings below.
    let mut tx = store.write().await.unwrap();
    assert!(tx.delete_request("new-a.example.test").await.unwrap());
    assert_eq!(
        tx.clean_certificates("round-a.example.test", 302).await.unwrap(),
        1
    );
    assert!(tx.delete_request("round-b.example.test").await.unwrap());
    tx.commit().await.unwrap();

    // Revocation, CRL numbers.
    let mut tx = store.write().await.unwrap();
    assert!(tx.revoke(5, Some("w0-3.example.test"), 200, 1).await.unwrap());
    assert!(
        !tx.revoke(5, Some("w0-3.example.test"), 201, 1).await.unwrap(),
        "revoked once"
    );
    let n0 = tx.next_crl_number().await.unwrap();
    let crl = |number, der: &[u8]| CrlRow {
        number,
        this_update: 200,
        next_update: 900,
        der: der.to_vec(),
        last_modified: 0,
        // The relying parties' CRL's nextUpdate travels with each CRL.
        relying_next_update: Some(300 + i64::try_from(number).unwrap()),
        previous: Some(ca_server::storage::TwinPieces {
            head: format!("PH{number}").into_bytes(),
            tail: b"PT".to_vec(),
        }),
    };
    let whole = |entries: std::ops::Range<usize>| CrlLayout {
        entries,
        appends_to: None,
    };
    tx.store_crl(&crl(n0, b"HEAD-e1-TAIL"), &whole(4..8))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let revoked = store.certificates(StatusFilter::Revoked).await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].serial, 5);
    assert_eq!(revoked[0].revoked, Some((200, 1)));
    let listed = store
        .status_list_json(true, Some(StatusFilter::All), "\"signed\"", "\"revoked\"")
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 101, "{listed}");
    assert_eq!(listed.matches("\"revoked\"").count(), 1);
    let mut tx = store.write().await.unwrap();
    let n1 = tx.next_crl_number().await.unwrap();
    assert_eq!(n1, n0 + 1);
    // A CRL that appends to the stored one stores only what it adds; a reader holding the older one
    // gets just that, and a reader with none gets it whole.
    let appended = CrlLayout {
        entries: 2..9,
        appends_to: Some((n0, 4)),
    };
    tx.store_crl(&crl(n1, b"H2-e1-e2-T2"), &appended).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.crl().await.unwrap().unwrap().der, b"H2-e1-e2-T2");
    match store.crl_since(Some(n0)).await.unwrap() {
        CrlUpdate::Appended {
            row,
            head,
            added,
            tail,
        } => {
            assert_eq!(
                (row.number, &head[..], &added[..], &tail[..]),
                (n1, &b"H2"[..], &b"e2-"[..], &b"T2"[..])
            );
            assert_eq!(row.relying_next_update, crl(n1, b"").relying_next_update);
            assert_eq!(row.previous, crl(n1, b"").previous);
        }
        other => panic!("expected what CRL {n1} appends, got {other:?}"),
    }
    assert!(matches!(
        store.crl_since(Some(n1)).await.unwrap(),
        CrlUpdate::Unchanged
    ));
    match store.crl_since(None).await.unwrap() {
        CrlUpdate::Whole { row, pieces } => {
            assert!(pieces && row.der == b"H2-e1-e2-T2");
            assert_eq!(row.relying_next_update, crl(n1, b"").relying_next_update);
        }
        other => panic!("expected the whole CRL, got {other:?}"),
    }
    // An append to a CRL that is not the stored one is refused (it would not rebuild to what was
    // signed), and changes nothing.
    let mut tx = store.write().await.unwrap();
    let stale = CrlLayout {
        entries: 2..4,
        appends_to: Some((n0, 0)),
    };
    assert!(tx.store_crl(&crl(n1 + 1, b"H3e3T3"), &stale).await.is_err());
    drop(tx);
    // An older CRL never replaces a newer one.
    let mut tx = store.write().await.unwrap();
    tx.store_crl(&crl(n0, b"HEAD-e1-TAIL"), &whole(4..8))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(store.crl().await.unwrap().unwrap().number, n1);
    assert_eq!(store.crl().await.unwrap().unwrap().der, b"H2-e1-e2-T2");
    assert_eq!(store.crl_number().await.unwrap(), Some(n1));
    let mut tx = store.write().await.unwrap();
    tx.raise_crl_number(0).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store.crl_number().await.unwrap(),
        Some(n1),
        "the CRL number never goes back"
    );

    // Cleaning, export listing.
    let mut tx = store.write().await.unwrap();
    assert_eq!(tx.clean_certificates("w1-0.example.test", 400).await.unwrap(), 1);
    tx.commit().await.unwrap();
    assert!(store
        .current_certificate("w1-0.example.test")
        .await
        .unwrap()
        .is_none());
    // With the signing round's certificate, cleaned above.
    let every = store.all_certificates().await.unwrap();
    assert_eq!(every.len(), 101);
    assert_eq!(every.iter().filter(|(_, cleaned)| *cleaned).count(), 2);
    let m = store.metrics(100, 2_592_000, "none").await.unwrap();
    assert_eq!((m.pending, m.certificates, m.revoked), (1, 99, 1));

    // Expirations: a name's current (highest, not cleaned) certificate, unless revoked.
    let mut tx = store.write().await.unwrap();
    for (name, not_after, revoke) in [
        ("old.example.test", 500, false),
        ("soon.example.test", 1_500, false),
        ("renewed.example.test", 1_200, false),
        ("renewed.example.test", 1_000_000, false),
        ("gone.example.test", 1_300, true),
    ] {
        let serial = tx.next_serial().await.unwrap();
        let row = CertRow {
            serial,
            certname: name.to_string(),
            der: vec![1],
            not_before: 0,
            not_after,
            revoked: None,
        };
        tx.insert_certificate(&row, "{}", 100, "test").await.unwrap();
        if revoke {
            tx.revoke(serial, Some(name), 100, 1).await.unwrap();
        }
    }
    tx.commit().await.unwrap();
    let m = store.metrics(1_000, 1_000, "none").await.unwrap();
    assert_eq!((m.expiring, m.expired), (1, 1), "soon expiring, old expired");
    let names: Vec<(String, i64)> = store
        .expiring(2_000, "none")
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.certname, r.not_after))
        .collect();
    assert_eq!(
        names,
        vec![
            ("old.example.test".to_string(), 500),
            ("soon.example.test".to_string(), 1_500)
        ]
    );
    listings_in_pages(&store).await;
    store.close().await;
}

/// A listing longer than a page (a thousand names) comes whole and in order, requests first; names
/// stored in one statement are found by one look-up.
/// A certificate row valid from 0 to far in the future, not revoked.
fn cert_row(serial: u64, certname: &str, der: Vec<u8>) -> CertRow {
    CertRow {
        serial,
        certname: certname.to_string(),
        der,
        not_before: 0,
        not_after: i64::MAX / 2,
        revoked: None,
    }
}

/// Asserts that the audit chain verifies with `records` records (`when`: for the message).
async fn audit_intact(store: &Store, records: u64, when: &str) {
    let verdict = store.verify_audit().await.unwrap();
    assert!(
        matches!(verdict, ca_server::storage::AuditVerdict::Intact { records: r, .. } if r == records),
        "audit chain intact {when}: {verdict:?}"
    );
}

async fn listings_in_pages(store: &Store) {
    let before: Vec<serde_json::Value> = serde_json::from_str(
        &store
            .status_list_json(true, Some(StatusFilter::All), "\"signed\"", "\"revoked\"")
            .await
            .unwrap(),
    )
    .unwrap();
    let names: Vec<String> = (0..1_100).map(|i| format!("page-{i:04}.example.test")).collect();
    let jsons: Vec<String> = names.iter().map(|n| format!("{{\"name\":\"{n}\"}}")).collect();
    let rows: Vec<ca_server::storage::NewRequest<'_>> = names
        .iter()
        .zip(&jsons)
        .map(|(n, j)| ca_server::storage::NewRequest {
            certname: n,
            csr_der: b"csr",
            status_json: j,
            by: "test",
        })
        .collect();
    let mut tx = store.write().await.unwrap();
    tx.put_requests(&rows, 5, false).await.unwrap();
    for i in 0..2_100 {
        let serial = tx.next_serial().await.unwrap();
        let certname = format!("paged-{i:04}.example.test");
        let json = format!("{{\"name\":\"{certname}\",\"state\":\"signed\"}}");
        let row = CertRow {
            serial,
            certname,
            der: vec![1],
            not_before: 0,
            not_after: i64::MAX / 2,
            revoked: None,
        };
        tx.insert_certificate(&row, &json, 100, "test").await.unwrap();
    }
    let held = tx
        .name_states(&[
            "page-0007.example.test",
            "paged-0007.example.test",
            "none.example.test",
        ])
        .await
        .unwrap();
    assert_eq!(held.get("page-0007.example.test"), Some(&"requested"));
    assert_eq!(held.get("paged-0007.example.test"), Some(&"signed"));
    assert_eq!(held.len(), 2, "{held:?}");
    tx.commit().await.unwrap();
    let listed = store
        .status_list_json(true, Some(StatusFilter::All), "\"signed\"", "\"revoked\"")
        .await
        .unwrap();
    let all: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    assert_eq!(all.len(), before.len() + 1_100 + 2_100);
    let listed_names: Vec<&str> = all.iter().filter_map(|v| v["name"].as_str()).collect();
    let pages: Vec<&str> = listed_names
        .iter()
        .copied()
        .filter(|n| n.starts_with("page-"))
        .collect();
    let paged: Vec<&str> = listed_names
        .iter()
        .copied()
        .filter(|n| n.starts_with("paged-"))
        .collect();
    assert_eq!(
        pages,
        names.iter().map(String::as_str).collect::<Vec<_>>(),
        "requests in order"
    );
    assert_eq!(paged.len(), 2_100);
    assert!(paged.windows(2).all(|w| w[0] < w[1]), "certificates in order");
    let first_cert = listed_names.iter().position(|n| n.starts_with("paged-")).unwrap();
    let last_request = listed_names.iter().rposition(|n| n.starts_with("page-")).unwrap();
    assert!(last_request < first_cert, "requests before certificates");
    let requested_only: Vec<serde_json::Value> =
        serde_json::from_str(&store.status_list_json(true, None, "x", "y").await.unwrap()).unwrap();
    assert!(requested_only.len() >= 1_100);
    let none: Vec<serde_json::Value> =
        serde_json::from_str(&store.status_list_json(false, None, "x", "y").await.unwrap()).unwrap();
    assert!(none.is_empty());
}

/// `join_all` without a futures dependency: each future on its own task.
async fn futures_join_all<F>(fs: Vec<F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Audit rows sealed with a test key, the head file in `dir`, as the authority does with the CA key.
fn sealed(store: Store, dir: &std::path::Path) -> Store {
    store.with_seal(ca_server::storage::AuditSeal::new(b"contract-test-key", dir))
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn store_contract_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.db");
    let head_dir = dir.path().to_path_buf();
    rt().block_on(contract(move || {
        let path = path.clone();
        let head_dir = head_dir.clone();
        Box::pin(async move { sealed(Store::open(&path, true).await.unwrap(), &head_dir) })
    }));
}

#[test]
fn store_contract_on_postgresql() {
    let pg = PgCluster::start();
    let url = pg.url("ca");
    let log = pg.log();
    let head = tempfile::tempdir().unwrap();
    let head_dir = head.path().to_path_buf();
    rt().block_on(contract(move || {
        let url = url.clone();
        let log = log.clone();
        let head_dir = head_dir.clone();
        Box::pin(async move {
            let store = Store::open_url(&url)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{log}"));
            sealed(store, &head_dir)
        })
    }));
}

/// A write transaction and the schema migration of a replica starting beside it take the same lock:
/// the newcomer's `open_url` (which migrates under the lock) waits until the transaction ends.
#[test]
fn a_write_transaction_and_a_starting_replicas_migration_exclude_each_other() {
    use std::time::{Duration, Instant};
    let pg = PgCluster::start();
    let url = pg.url("ca");
    let runtime = rt();
    let first = runtime.block_on(Store::open_url(&url)).unwrap();
    let tx = runtime.block_on(first.write()).unwrap();
    let second = std::thread::spawn({
        let url = url.clone();
        move || {
            let runtime = rt();
            let store = runtime.block_on(Store::open_url(&url)).unwrap();
            runtime.block_on(store.close());
        }
    });
    // Proving a wait: the second store must not open while the transaction holds the lock.
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !second.is_finished(),
        "the migration did not wait for the write transaction"
    );
    runtime.block_on(tx.commit()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !second.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the migration still waits after the transaction ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    second.join().unwrap();
    runtime.block_on(first.close());
}

/// PostgreSQL: serials drawn apart from any write transaction (as the signing pipeline does there)
/// and serials drawn in write transactions, by several writers on separate pools at once, never
/// overlap and leave the counter after the last one handed out. On SQLite there is no such session.
#[test]
fn serials_reserved_apart_and_in_write_transactions_never_overlap() {
    let pg = PgCluster::start();
    let url = pg.url("ca");
    rt().block_on(async move {
        let store = Store::open_url(&url).await.unwrap();
        assert!(store.reserves_apart());
        let mut tx = store.write().await.unwrap();
        tx.init_ca("chain", b"key-id", 2, 100).await.unwrap();
        tx.commit().await.unwrap();
        let mut tasks = Vec::new();
        for w in 0..4 {
            let s = Store::open_url(&url).await.unwrap();
            tasks.push(async move {
                let mut got = Vec::new();
                for i in 0..20u64 {
                    let n = 1 + (i + w) % 3;
                    let range = if w % 2 == 0 {
                        s.apart().await.unwrap().reserve_serials(n).await.unwrap()
                    } else {
                        let mut tx = s.write().await.unwrap();
                        let r = tx.reserve_serials(n).await.unwrap();
                        tx.commit().await.unwrap();
                        r
                    };
                    assert_eq!(range.end - range.start, n);
                    got.extend(range);
                }
                s.close().await;
                got
            });
        }
        let mut all: Vec<u64> = futures_join_all(tasks).await.into_iter().flatten().collect();
        let handed = all.len() as u64;
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len() as u64, handed, "a serial handed out twice");
        assert_eq!(
            all,
            (2..2 + handed).collect::<Vec<u64>>(),
            "dense, from the first serial"
        );
        assert_eq!(store.peek_serial().await.unwrap(), 2 + handed);
        store.close().await;
    });
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async move {
        let store = Store::open(&dir.path().join("ca.db"), true).await.unwrap();
        assert!(!store.reserves_apart());
        assert!(matches!(store.apart().await, Err(StoreError::Unsupported(_))));
        store.close().await;
    });
}

/// PostgreSQL: the batched writers' transactions run on connections kept out of the pool between
/// them. One dropped before its commit closes its connection: nothing it wrote stays, no transaction
/// is left open on the server, and the CA's write lock is free for every other writer (another
/// store's included) at once. A kept connection whose server process ended while it was idle is not
/// handed out again: the next batched transaction runs on a new one.
#[test]
fn batched_transactions_on_kept_connections_end_cleanly() {
    use std::time::{Duration, Instant};
    let pg = PgCluster::start();
    let url = pg.url("ca");
    rt().block_on(async move {
        let store = Store::open_url(&url).await.unwrap();
        let other = Store::open_url(&url).await.unwrap();
        let mut tx = store.write().await.unwrap();
        tx.init_ca("chain", b"key-id", 2, 100).await.unwrap();
        tx.commit().await.unwrap();
        // Committed, twice: the second runs on the connection the first left.
        for expected in [2..3, 3..4] {
            let mut tx = store.write_batch().await.unwrap();
            assert_eq!(tx.reserve_serials(1).await.unwrap(), expected);
            tx.commit().await.unwrap();
        }
        // Dropped before its commit, holding the write lock.
        let mut tx = store.write_batch_unsynced().await.unwrap();
        assert_eq!(tx.reserve_serials(5).await.unwrap(), 4..9);
        drop(tx);
        let started = Instant::now();
        let mut tx = tokio::time::timeout(Duration::from_secs(5), other.write())
            .await
            .expect("the write lock of a dropped batched transaction was not released")
            .unwrap();
        assert_eq!(
            tx.reserve_serials(1).await.unwrap(),
            4..5,
            "the dropped transaction's draw was kept"
        );
        tx.commit().await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let open = pg.psql(
            "ca",
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
        );
        assert_eq!(open, "0", "a transaction left open on the server");
        // The kept connection's server process ends while it is idle.
        let mut tx = store.write_batch().await.unwrap();
        assert_eq!(tx.reserve_serials(1).await.unwrap(), 5..6);
        tx.commit().await.unwrap();
        let ended = pg.psql(
            "ca",
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = 'ca' AND pid <> pg_backend_pid()",
        );
        assert_ne!(ended, "0");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let mut tx = store.write_batch().await.unwrap();
        assert_eq!(tx.reserve_serials(1).await.unwrap(), 6..7);
        tx.commit().await.unwrap();
        let mut apart = store.apart().await.unwrap();
        assert_eq!(apart.reserve_serials(2).await.unwrap(), 7..9);
        drop(apart);
        assert_eq!(store.peek_serial().await.unwrap(), 9);
        store.close().await;
        other.close().await;
    });
}

/// A store on `url` holding a CA (first serial 2) whose statements may take 2 s each.
async fn limited_store(url: &str) -> Store {
    let store = Store::open_url(url).await.unwrap();
    store.set_statement_limit(std::time::Duration::from_secs(2));
    let mut tx = store.write().await.unwrap();
    tx.init_ca("chain", b"key-id", 2, 100).await.unwrap();
    tx.commit().await.unwrap();
    store
}

/// PostgreSQL: a write statement that gets no answer (the server's processes stopped, its
/// connections left open: a primary that lost power, seen from here) fails within the store's
/// statement limit, whether it waits for the write lock (`BEGIN`) or for a statement's answer,
/// instead of waiting for the kernel to give up retransmitting (about 15 minutes); once the server
/// answers again the next write runs on a new connection, and the one that failed left nothing.
#[test]
fn a_write_statement_without_an_answer_fails_within_the_limit() {
    use std::time::{Duration, Instant};
    let pg = PgCluster::start();
    let url = pg.url("ca");
    rt().block_on(async move {
        let store = limited_store(&url).await;
        // A statement in flight.
        let mut tx = store.write().await.unwrap();
        let frozen = pg.freeze();
        let started = Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(20), tx.reserve_serials(3))
            .await
            .expect("a statement without an answer still waits after 20 s");
        let took = started.elapsed();
        drop(frozen);
        let err = res.expect_err("an answer from a stopped server");
        let mut said = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            said = format!("{said}: {c}");
            cause = c.source();
        }
        assert!(said.contains("no answer from the database within 2 s"), "{said}");
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(6),
            "{took:?}"
        );
        drop(tx);
        let mut tx = store.write().await.unwrap();
        assert_eq!(
            tx.reserve_serials(1).await.unwrap(),
            2..3,
            "the failed draw was kept"
        );
        tx.commit().await.unwrap();
        // Waiting to begin (a kept connection, checked less than a second ago, or a new one).
        let frozen = pg.freeze();
        let started = Instant::now();
        let res = tokio::time::timeout(Duration::from_secs(20), store.write())
            .await
            .expect("a BEGIN without an answer still waits after 20 s");
        let took = started.elapsed();
        drop(frozen);
        assert!(res.is_err(), "a transaction begun on a stopped server");
        assert!(took < Duration::from_secs(8), "{took:?}");
        // The serial reservations apart from the write lock are bounded the same way.
        let mut apart = store.apart().await.unwrap();
        let frozen = pg.freeze();
        let res = tokio::time::timeout(Duration::from_secs(20), apart.reserve_serials(1))
            .await
            .expect("a reservation without an answer still waits after 20 s");
        drop(frozen);
        assert!(res.is_err(), "serials from a stopped server");
        drop(apart);
        let mut tx = store.write_batch().await.unwrap();
        assert_eq!(tx.reserve_serials(1).await.unwrap(), 3..4);
        tx.commit().await.unwrap();
        store.close().await;
    });
}

/// PostgreSQL: a read that gets no answer (the server's processes stopped, its connections left
/// open) fails within the store's statement limit, the CRL read the change feed makes and a status
/// listing's included,
/// instead of waiting for the kernel to give up retransmitting; its connection is closed, not given
/// back to the pool; once the server answers again the next read runs.
#[test]
fn a_read_without_an_answer_fails_within_the_limit() {
    use std::time::{Duration, Instant};
    let pg = PgCluster::start();
    let url = pg.url("ca");
    rt().block_on(async move {
        let store = limited_store(&url).await;
        for read in 0..3 {
            // A connection the pool hands out without checking it (used less than a second ago).
            assert!(store
                .current_certificate("none.example.test")
                .await
                .unwrap()
                .is_none());
            let frozen = pg.freeze();
            let started = Instant::now();
            let res = tokio::time::timeout(Duration::from_secs(20), async {
                match read {
                    0 => store.current_certificate("none.example.test").await.map(drop),
                    1 => store.crl_since(None).await.map(drop),
                    _ => store
                        .status_list_json(true, Some(StatusFilter::All), "signed", "revoked")
                        .await
                        .map(drop),
                }
            })
            .await
            .expect("a read without an answer still waits after 20 s");
            let took = started.elapsed();
            drop(frozen);
            assert!(res.is_err(), "an answer from a stopped server");
            assert!(
                took >= Duration::from_secs(2) && took < Duration::from_secs(6),
                "{took:?}"
            );
        }
        assert!(store
            .current_certificate("none.example.test")
            .await
            .unwrap()
            .is_none());
        assert_eq!(store.ca().await.unwrap().unwrap().0, "chain");
        let listed = store
            .status_list_json(true, Some(StatusFilter::All), "signed", "revoked")
            .await
            .unwrap();
        assert_eq!(listed, "[]");
        store.close().await;
    });
}
