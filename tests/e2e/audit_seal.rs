//! The sealed audit log: someone who can write the database but lacks the CA key cannot cut the log's
//! tail or rewrite a record (re-hashing the chain after it) without `ca audit verify` failing.

use ca_server::storage::{audit_hash, AuditRecord, HEAD_FILE};

use crate::harness::{fixture, sqlite, TestCa};

/// A CA with a few decisions in its log.
fn busy_ca() -> TestCa {
    let ca = TestCa::new();
    ca.ca(&["submit", fixture("csr/altnames.pem").to_str().unwrap()])
        .ok();
    ca.ca(&["sign", "master-2"])
        .fails_with(1, "--allow-dns-alt-names");
    ca.ca(&["sign", "--allow-dns-alt-names", "master-2"]).ok();
    ca.ca(&["revoke", "master-2"]).ok();
    ca
}

fn last_id(ca: &TestCa) -> i64 {
    sqlite(&ca.data.join("ca.db"), "SELECT max(id) FROM audit")
        .parse()
        .unwrap()
}

#[test]
fn audit_seal_untouched_log_is_intact() {
    let ca = busy_ca();
    let ok = ca.ca(&["audit", "verify"]).ok().stdout;
    assert!(ok.contains("audit log intact"), "{ok}");
    assert!(ca.data.join(HEAD_FILE).exists());
    // The head names the newest record.
    let head = std::fs::read_to_string(ca.data.join(HEAD_FILE)).unwrap();
    assert!(head.contains(&format!(" id {} ", last_id(&ca))), "{head}");

    // A log from before sealing (no seals, no head file) is sealed at the next start, and verifies.
    let db = ca.data.join("ca.db");
    sqlite(&db, "UPDATE audit SET mac = NULL");
    std::fs::remove_file(ca.data.join(HEAD_FILE)).unwrap();
    let ok = ca.ca(&["audit", "verify"]).ok().stdout;
    assert!(ok.contains("audit log intact"), "{ok}");
    ca.ca(&["revoke", "ca-admin"]).ok();
    ca.ca(&["audit", "verify"]).ok();

    // No head file (a database restored from a backup): intact, with a warning, until the next change.
    std::fs::remove_file(ca.data.join(HEAD_FILE)).unwrap();
    let run = ca.ca(&["audit", "verify"]).ok();
    assert!(run.stderr.contains("audit-head is missing"), "{run:?}");
    ca.ca(&["clean", "ca-admin"]).ok();
    let run = ca.ca(&["audit", "verify"]).ok();
    assert!(run.stderr.is_empty(), "{run:?}");
}

#[test]
fn audit_seal_deleting_the_last_record_is_detected() {
    let ca = busy_ca();
    ca.ca(&["audit", "verify"]).ok();
    let db = ca.data.join("ca.db");
    let last = last_id(&ca);
    sqlite(&db, "DELETE FROM audit WHERE id = (SELECT max(id) FROM audit)");
    ca.ca(&["audit", "verify"])
        .fails_with(1, &format!("record {last} is missing"));
    // Later changes do not hide it: the head file is not moved past the cut.
    ca.ca(&["revoke", "ca-admin"]).ok();
    ca.ca(&["audit", "verify"]).fails_with(1, "audit log tampered");
}

/// Rewrites record `id`'s actor and recomputes the hash chain from there on, as someone who knows the
/// hash function but not the CA key would.
fn rewrite_and_rehash(ca: &TestCa, id: i64) {
    let rows = ca.with_store(async |s| s.audit_rows(None).await.unwrap());
    let db = ca.data.join("ca.db");
    let mut prev = String::new();
    let mut sql = String::from("BEGIN;");
    for r in rows {
        let actor = if r.id == id {
            "someone-else".to_string()
        } else {
            r.actor.clone()
        };
        let fields = AuditRecord {
            at: r.at,
            actor: &actor,
            action: &r.action,
            certname: r.certname.as_deref(),
            serial: r.serial.map(|s| u64::try_from(s).unwrap()),
            outcome: &r.outcome,
            detail: r.detail.as_deref(),
        };
        let hash = audit_hash(&prev, &fields);
        if r.id >= id {
            sql.push_str(&format!(
                "UPDATE audit SET actor = '{actor}', hash = '{hash}' WHERE id = {};",
                r.id
            ));
        }
        prev = hash;
    }
    sql.push_str("COMMIT;");
    sqlite(&db, &sql);
}

#[test]
fn audit_seal_rewritten_and_rehashed_record_is_detected() {
    let ca = busy_ca();
    ca.ca(&["audit", "verify"]).ok();
    rewrite_and_rehash(&ca, 3);
    // The old test would have passed this: the chain is consistent again.
    ca.ca(&["audit", "verify"])
        .fails_with(1, "record 3 does not match its seal");

    // Dropping every seal as well: the newest record must be sealed.
    let other = busy_ca();
    rewrite_and_rehash(&other, 2);
    sqlite(
        &other.data.join("ca.db"),
        "UPDATE audit SET mac = NULL WHERE id >= 2",
    );
    other
        .ca(&["audit", "verify"])
        .fails_with(1, "record 2 is not sealed");

    // ...and every seal, with the head file left: the head's record no longer has its hash.
    let third = busy_ca();
    rewrite_and_rehash(&third, 2);
    sqlite(&third.data.join("ca.db"), "UPDATE audit SET mac = NULL");
    let last = last_id(&third);
    third.ca(&["audit", "verify"]).fails_with(
        1,
        &format!("record {last} differs from the one {HEAD_FILE} names"),
    );
}
