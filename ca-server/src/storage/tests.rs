//! The store's invariants on a temporary SQLite database: serials are never handed out twice, a
//! transaction that is not committed leaves nothing, a name holds one request, a serial is revoked
//! once, and the audit log names the first record that was changed, removed or sealed by another key.

use std::path::Path;

use super::*;

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

async fn store(dir: &Path, key: u8) -> Store {
    Store::open(&dir.join("ca.db"), true)
        .await
        .unwrap()
        .with_seal(AuditSeal::new(&[key; 32], dir))
}

#[test]
fn committed_serial_reservations_never_overlap_and_a_dropped_one_takes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let s = store(tmp.path(), 1).await;
        let mut tx = s.write().await.unwrap();
        tx.init_ca("chain", b"key id", 2, 0).await.unwrap();
        let a = tx.reserve_serials(3).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = s.write().await.unwrap();
        let dropped = tx.reserve_serials(5).await.unwrap();
        drop(tx);
        let mut tx = s.write().await.unwrap();
        let b = tx.reserve_serials(2).await.unwrap();
        let c = tx.next_serial().await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(a, 2..5, "from the first serial");
        assert_eq!(b.start, a.end, "the next committed reservation follows");
        assert_eq!(dropped.start, a.end, "a rolled-back reservation issued nothing");
        assert_eq!(c, b.end);
        s.close().await;
        // Reopened: the counter is where the last commit left it.
        let s = store(tmp.path(), 1).await;
        assert_eq!(s.peek_serial().await.unwrap(), c + 1);
        s.close().await;
    });
}

#[test]
fn an_uncommitted_transaction_leaves_nothing_and_a_name_holds_one_request() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let s = store(tmp.path(), 1).await;
        let mut tx = s.write().await.unwrap();
        tx.put_request("a", b"csr-1", "{}", 10, "t", false).await.unwrap();
        drop(tx);
        assert!(s.request("a").await.unwrap().is_none());

        let mut tx = s.write().await.unwrap();
        tx.put_request("a", b"csr-1", "{}", 10, "t", false).await.unwrap();
        tx.commit().await.unwrap();
        let mut tx = s.write().await.unwrap();
        let again = tx.put_request("a", b"csr-2", "{}", 11, "t", false).await;
        assert!(matches!(again, Err(StoreError::Duplicate(_))), "{again:?}");
        tx.put_request("a", b"csr-2", "{}", 11, "t", true).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(s.request("a").await.unwrap().unwrap().csr_der, b"csr-2");
        s.close().await;
    });
}

#[test]
fn a_serial_is_revoked_once_and_is_then_no_longer_revocable() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let s = store(tmp.path(), 1).await;
        let row = CertRow {
            serial: 5,
            certname: "a".into(),
            der: b"der".to_vec(),
            not_before: 0,
            not_after: 1_000,
            revoked: None,
        };
        let mut tx = s.write().await.unwrap();
        tx.insert_certificate(&row, "{}", 0, "t").await.unwrap();
        assert_eq!(tx.revocable_serials("a", 10).await.unwrap(), vec![5]);
        assert!(tx.revoke(5, Some("a"), 20, 1).await.unwrap());
        assert!(!tx.revoke(5, Some("a"), 30, 4).await.unwrap(), "already revoked");
        assert!(tx.revocable_serials("a", 40).await.unwrap().is_empty());
        tx.commit().await.unwrap();
        assert_eq!(s.serial_status(5).await.unwrap(), (true, Some((20, 1))));
        assert_eq!(s.serial_status(6).await.unwrap(), (false, None));
        let current = s.current_certificate("a").await.unwrap().unwrap();
        assert_eq!(current.revoked, Some((20, 1)));
        s.close().await;
    });
}

async fn write_records(s: &Store, n: i64) {
    for i in 0..n {
        let mut tx = s.write().await.unwrap();
        tx.audit(&AuditRecord::ok(100 + i, "t", "sign")).await.unwrap();
        tx.commit().await.unwrap();
    }
}

fn tampered_at(v: &AuditVerdict) -> Option<i64> {
    match v {
        AuditVerdict::Tampered { record, .. } => *record,
        other => panic!("not tampered: {other:?}"),
    }
}

#[test]
fn the_audit_log_names_the_first_record_changed_removed_or_sealed_by_another_key() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let s = store(tmp.path(), 1).await;
        write_records(&s, 4).await;
        assert!(
            matches!(
                s.verify_audit().await.unwrap(),
                AuditVerdict::Intact { records: 4, .. }
            ),
            "{:?}",
            s.verify_audit().await
        );
        // Another key: the first record is not this CA's.
        let other = store(tmp.path(), 2).await;
        assert_eq!(tampered_at(&other.verify_audit().await.unwrap()), Some(1));
        other.close().await;
        // A changed record.
        sqlx::query("UPDATE audit SET actor = 'someone' WHERE id = 3")
            .execute(&s.pool)
            .await
            .unwrap();
        assert_eq!(tampered_at(&s.verify_audit().await.unwrap()), Some(3));
        s.close().await;
    });
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let s = store(tmp.path(), 1).await;
        write_records(&s, 4).await;
        // A removed record breaks the chain at the next one.
        sqlx::query("DELETE FROM audit WHERE id = 2")
            .execute(&s.pool)
            .await
            .unwrap();
        assert_eq!(tampered_at(&s.verify_audit().await.unwrap()), Some(3));
        s.close().await;
    });
}

/// One submission's transaction as the request writer runs it: the read that begins it (on SQLite
/// with the `BEGIN` in the same round trip), then the writes that end it (with the `COMMIT`).
async fn submit(s: &Store, name: &str, csr: &[u8], replace: bool) -> Result<(), StoreError> {
    let mut tx = s.write_batch().await?;
    tx.name_states_before_audit(&[name], 1).await?;
    let row = NewRequest {
        certname: name,
        csr_der: csr,
        status_json: "{}",
        by: "t",
    };
    let audit = [AuditRecord::ok(100, "t", "submit").on(name)];
    tx.store_requests_and_commit(&[row], 100, replace, &audit).await
}

fn audit_records(v: &AuditVerdict) -> u64 {
    match v {
        AuditVerdict::Intact {
            records, head_file, ..
        } => {
            assert!(head_file, "the head file follows the commits");
            *records
        }
        other => panic!("not intact: {other:?}"),
    }
}

#[test]
fn a_batched_writers_transaction_is_all_or_nothing_and_leaves_no_lock() {
    let tmp = tempfile::tempdir().unwrap();
    run(async {
        let s = store(tmp.path(), 1).await;
        submit(&s, "a", b"csr-a", false).await.unwrap();
        assert_eq!(s.request("a").await.unwrap().unwrap().csr_der, b"csr-a");
        assert_eq!(audit_records(&s.verify_audit().await.unwrap()), 1);

        // Dropped after its read: rolled back, and the next transaction begins.
        let mut tx = s.write_batch().await.unwrap();
        tx.name_states_before_audit(&["b"], 1).await.unwrap();
        drop(tx);
        // A write that is not a batched writer's is refused in such a transaction (SQLite), and
        // the transaction with it leaves nothing.
        let mut tx = s.write_batch().await.unwrap();
        tx.name_states_before_audit(&["b"], 1).await.unwrap();
        let other = tx.put_request("b", b"csr-b0", "{}", 10, "t", false).await;
        assert!(matches!(other, Err(StoreError::Unsupported(_))), "{other:?}");
        drop(tx);
        assert!(s.request("b").await.unwrap().is_none());
        // Its last write fails (a second request for "a"): nothing of it stays, the audit row neither.
        let twice = submit(&s, "a", b"csr-a2", false).await;
        assert!(matches!(twice, Err(StoreError::Duplicate(_))), "{twice:?}");
        assert_eq!(s.request("a").await.unwrap().unwrap().csr_der, b"csr-a");
        assert_eq!(audit_records(&s.verify_audit().await.unwrap()), 1);

        // The same connection goes on, and another process (the CLI) can write at once: no
        // transaction was left open holding the database's write lock.
        submit(&s, "b", b"csr-b", false).await.unwrap();
        let cli = store(tmp.path(), 1).await;
        let other = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            submit(&cli, "c", b"csr-c", false),
        )
        .await
        .expect("the write lock is free");
        other.unwrap();
        cli.close().await;
        submit(&s, "a", b"csr-a3", true).await.unwrap();
        assert_eq!(s.request("a").await.unwrap().unwrap().csr_der, b"csr-a3");
        assert!(s.request("c").await.unwrap().is_some());
        assert_eq!(audit_records(&s.verify_audit().await.unwrap()), 4);
        s.close().await;
    });
}
