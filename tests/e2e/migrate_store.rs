//! `ca migrate-store`: a CA moves from SQLite to PostgreSQL and back, and lists, verifies and serves
//! identically (same serials, CRL number and bytes, audit chain and seals).

use std::os::unix::fs::PermissionsExt;

use crate::harness::TestCa;
use crate::pg::PgCluster;

/// What an operator compares: the listing, the CRL, the audit verification, the next serial.
fn observe(ca: &TestCa, db: &[&str]) -> (String, String, String) {
    let run = |args: &[&str]| {
        let mut a: Vec<&str> = db.to_vec();
        a.extend_from_slice(args);
        ca.ca(&a).ok().stdout
    };
    (run(&["list", "--all"]), run(&["crl"]), run(&["audit"]))
}

#[test]
fn a_ca_moves_from_sqlite_to_postgresql_and_back_unchanged() {
    let ca = TestCa::new();
    for name in ["one.example.test", "two.example.test", "three.example.test"] {
        ca.ca(&[
            "generate",
            name,
            "--key-type",
            "ec-p256",
            "--out",
            ca.path("gen").to_str().unwrap(),
        ])
        .ok();
    }
    ca.ca(&["revoke", "two.example.test"]).ok();
    ca.ca(&["clean", "three.example.test"]).ok();
    let before = observe(&ca, &[]);

    let pg = PgCluster::start();
    let url = pg.url("ca");
    let out = ca.ca(&["migrate-store", "--to", &url]).ok().stdout;
    assert!(out.contains("certificates"), "{out}");
    let on_pg = observe(&ca, &["--database-url", &url]);
    assert_eq!(before, on_pg, "the same CA on PostgreSQL");
    ca.ca(&["--database-url", &url, "audit", "verify"]).ok();
    // A second copy into a database that now holds a CA is refused.
    ca.ca(&["migrate-store", "--to", &url])
        .fails_with(1, "already exists");

    // Work continues on PostgreSQL: the next serial follows the last one issued on SQLite.
    let last = ca.with_store(async |s| s.peek_serial().await.unwrap());
    ca.ca(&[
        "--database-url",
        &url,
        "generate",
        "four.example.test",
        "--key-type",
        "ec-p256",
        "--out",
        ca.path("gen4").to_str().unwrap(),
    ])
    .ok();
    let printed = ca
        .ca(&["--database-url", &url, "print", "four.example.test"])
        .ok()
        .stdout;
    let serial_hex = format!("{last:X}");
    assert!(
        printed.to_uppercase().contains(&serial_hex),
        "serial {serial_hex} expected in {printed}"
    );

    // Back to a new SQLite file, served from a data directory holding it and the CA key.
    let back = tempfile::tempdir().unwrap();
    let dir = back.path().join("ca");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let file = dir.join("ca.db");
    ca.ca(&[
        "--database-url",
        &url,
        "migrate-store",
        "--to",
        file.to_str().unwrap(),
    ])
    .ok();
    ca.ca(&["migrate-store", "--to", file.to_str().unwrap()])
        .fails_with(1, "must be new");
    for f in ["ca_key.pem", "ca_crt.pem", "audit-head"] {
        let _ = std::fs::copy(ca.data.join(f), dir.join(f));
    }
    std::fs::set_permissions(dir.join("ca_key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let returned = TestCa { tmp: back, data: dir };
    let on_pg = observe(&ca, &["--database-url", &url]);
    assert_eq!(on_pg, observe(&returned, &[]), "the same CA back on SQLite");
    returned.ca(&["audit", "verify"]).ok();
}
