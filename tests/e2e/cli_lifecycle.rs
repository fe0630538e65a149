//! The rest of the CLI: setup, exit codes, generate, print, fingerprint, clean, reasons, serials,
//! concurrent writers, and the real binary.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::{
    assert_crl_verifies, assert_verifies, ca, ca_binary, crl_check, fixture, openssl, TestCa,
};

fn submit(ca: &TestCa, file: &str) {
    ca.ca(&["submit", &fixture(&format!("csr/{file}")).display().to_string()])
        .ok();
}

#[test]
fn setup_makes_a_working_ca_and_refuses_to_touch_it_again() {
    let ca = TestCa::new();
    let mode = std::fs::metadata(ca.data.join("ca_key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    for key in ["server/key.pem", "admin/key.pem"] {
        let mode = std::fs::metadata(ca.data.join(key)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    for cert in ["server/cert.pem", "admin/cert.pem", "ca_crt.pem"] {
        assert_verifies(&ca.ca_cert(), &ca.data.join(cert));
    }
    let (_, text) = openssl(&[
        "x509",
        "-in",
        ca.data.join("server/cert.pem").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(text.contains("DNS:ca.example.test, DNS:puppet"), "{text}");
    assert!(
        text.contains("1.3.6.1.4.1.34380.1.3.39"),
        "server cert carries pp_cli_auth: {text}"
    );
    let (_, ca_text) = openssl(&["x509", "-in", ca.ca_cert().to_str().unwrap(), "-noout", "-text"]);
    assert!(
        ca_text.contains("Puppet CA: ca.example.test") && ca_text.contains("CA:TRUE"),
        "{ca_text}"
    );
    assert_crl_verifies(&ca.ca_cert(), &ca.crl_file());

    let again = ca.ca(&["setup", "--certname", "other.example.test"]);
    again.fails_with(1, "already exists");
    assert_verifies(&ca.ca_cert(), &ca.data.join("server/cert.pem"));
}

#[test]
fn exit_codes_and_messages() {
    let ca_ = TestCa::new();
    ca(&["frobnicate"]).fails_with(2, "unrecognized subcommand");
    ca_.ca(&["sign"]).fails_with(2, "required");
    ca_.ca(&["sign", "nobody.example.test"])
        .fails_with(1, "Could not find certificate request for nobody.example.test");
    ca_.ca(&["revoke", "nobody.example.test"])
        .fails_with(1, "without a signed certificate");
    ca_.ca(&["clean", "nobody.example.test"])
        .fails_with(1, "nobody.example.test");
    ca_.ca(&["revoke", "ca-admin", "--reason", "bogus"])
        .fails_with(1, "unknown revocation reason");
    ca_.ca(&["print", "../../etc/passwd"])
        .fails_with(1, "Subject hostname format is invalid");
    ca_.ca(&["fingerprint", "ca", "--digest", "md5"])
        .fails_with(1, "unknown digest");
    let missing = ca_.path("nowhere");
    ca(&["--data-dir", missing.to_str().unwrap(), "list"]).fails_with(1, "no CA in");
    ca_.ca(&["submit", "/nonexistent/file.pem"])
        .fails_with(1, "cannot read");
    let help = ca(&["--help"]).ok();
    assert!(help.stdout.contains("Exit codes"), "{help:#?}");
}

#[test]
fn real_binary_exit_codes() {
    let bin = ca_binary();
    let tmp = tempfile::tempdir().unwrap();
    let status = |args: &[&str]| {
        Command::new(&bin)
            .args(args)
            .env("CA_DATA_DIR", tmp.path().join("ca"))
            .output()
            .unwrap()
    };
    assert_eq!(status(&["--help"]).status.code(), Some(0));
    assert_eq!(status(&["bogus"]).status.code(), Some(2));
    let out = status(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no CA in"));
    let out = status(&["setup", "--certname", "bin.example.test", "--key-type", "ec-p256"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(tmp.path().join("ca").to_str().unwrap()));
    let out = status(&["list", "--all"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("bin.example.test"));
}

#[test]
fn list_text_layout_and_filters() {
    let ca = TestCa::new();
    assert_eq!(ca.ca(&["list"]).ok().stdout, "No certificates to list\n");
    submit(&ca, "altnames.pem");
    submit(&ca, "rsa2048.pem");
    let text = ca.ca(&["list"]).ok().stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Requested Certificates:");
    let width = "agent-rsa2048.example.test".len() + 6;
    assert!(
        lines[1].starts_with(&format!(
            "    {:<width$} (SHA256)  ",
            "agent-rsa2048.example.test"
        )),
        "{text}"
    );
    assert!(
        lines[2].contains("\talt names: [\"DNS:master-2\", \"DNS:puppet\", \"DNS:puppet.example.test\"]"),
        "{text}"
    );
    ca.ca(&["sign", "agent-rsa2048.example.test"]).ok();
    let signed = ca.ca(&["list", "--signed"]).ok().stdout;
    assert!(
        signed.starts_with("Signed Certificates:")
            && signed.contains("agent-rsa2048")
            && !signed.contains("master-2")
    );
    ca.ca(&["revoke", "agent-rsa2048.example.test"]).ok();
    let revoked = ca.ca(&["list", "--revoked", "--format", "json"]).ok().stdout;
    let v: serde_json::Value = serde_json::from_str(&revoked).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 1);
    assert_eq!(v["revoked"][0]["name"], "agent-rsa2048.example.test");
}

#[test]
fn generate_print_fingerprint() {
    let ca = TestCa::new();
    let out = ca.path("gen");
    ca.ca(&[
        "generate",
        "db-1.example.test",
        "--dns-alt-names",
        "db.example.test,IP:192.0.2.7",
        "--out",
        out.to_str().unwrap(),
        "--key-type",
        "ec-p256",
    ])
    .ok();
    let cert = out.join("certs/db-1.example.test.pem");
    let key = out.join("private_keys/db-1.example.test.pem");
    assert_verifies(&out.join("certs/ca.pem"), &cert);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (_, text) = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-text"]);
    assert!(
        text.contains("DNS:db-1.example.test, DNS:db.example.test, IP Address:192.0.2.7"),
        "{text}"
    );
    let (_, m1) = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-pubkey"]);
    let (_, m2) = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    assert_eq!(m1, m2, "key matches certificate");

    ca.ca(&[
        "generate",
        "db-1.example.test",
        "--out",
        ca.path("gen2").to_str().unwrap(),
    ])
    .fails_with(1, "already has a certificate");
    ca.ca(&["generate", "bad name", "--out", ca.path("gen3").to_str().unwrap()])
        .fails_with(1, "invalid");
    ca.ca(&[
        "generate",
        "w.example.test",
        "--dns-alt-names",
        "*.example.test",
        "--key-type",
        "ec-p256",
        "--out",
        ca.path("gen4").to_str().unwrap(),
    ])
    .fails_with(1, "wildcard");

    let printed = ca.ca(&["print", "db-1.example.test"]).ok().stdout;
    assert!(
        printed.contains("Subject: CN=db-1.example.test") && printed.contains("-----BEGIN CERTIFICATE-----")
    );
    let ca_printed = ca.ca(&["print", "ca"]).ok().stdout;
    assert!(ca_printed.contains("Puppet CA: ca.example.test"));

    let fp = ca.ca(&["fingerprint", "db-1.example.test"]).ok().stdout;
    let (_, want) = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    let want = want.trim().rsplit('=').next().unwrap().to_string();
    assert_eq!(fp.trim(), format!("db-1.example.test (SHA256) {want}"));
    let fp1 = ca
        .ca(&["fingerprint", "db-1.example.test", "--digest", "sha1"])
        .ok()
        .stdout;
    assert!(fp1.contains("(SHA1)"));
}

#[test]
fn clean_revokes_then_removes_and_serials_are_sequential() {
    let ca = TestCa::new();
    for f in ["rsa2048.pem", "ec-p256.pem", "san-only-self.pem"] {
        submit(&ca, f);
    }
    let signed = ca.ca(&["sign", "--all"]).ok().stdout;
    for (serial, name) in [
        (4, "agent-ec.example.test"),
        (5, "agent-rsa2048.example.test"),
        (6, "agent-san.example.test"),
    ] {
        assert!(
            signed.contains(&format!("Signed certificate for {name} (serial {serial})")),
            "{signed}"
        );
    }
    let cert = ca.cert_file("agent-ec.example.test");
    let cleaned = ca.ca(&["clean", "agent-ec.example.test"]).ok().stdout;
    assert!(cleaned.contains("revoked serial 4"), "{cleaned}");
    let crl = ca.crl_file();
    assert!(crl_check(&ca.ca_cert(), &crl, &cert)
        .unwrap_err()
        .contains("certificate revoked"));
    assert!(!ca.holds("agent-ec.example.test"));
    assert!(!ca
        .ca(&["list", "--all"])
        .ok()
        .stdout
        .contains("agent-ec.example.test"));

    // After clean the name may request again; the new certificate gets a fresh serial.
    submit(&ca, "ec-p256.pem");
    assert!(ca
        .ca(&["sign", "agent-ec.example.test"])
        .ok()
        .stdout
        .contains("(serial 7)"));

    // A duplicate request for a signed name is refused, as puppetserver does.
    ca.ca(&["submit", fixture("rsa2048.pem").to_str().unwrap()])
        .fails_with(1, "cannot read");
    ca.ca(&["submit", fixture("csr/rsa2048.pem").to_str().unwrap()])
        .fails_with(
            1,
            "agent-rsa2048.example.test already has a signed certificate; ignoring certificate request",
        );

    // Revocation reasons and CRL numbers.
    ca.ca(&["revoke", "agent-san.example.test", "--reason", "superseded"])
        .ok();
    assert!(ca
        .ca(&["revoke", "agent-san.example.test"])
        .ok()
        .stdout
        .contains("already revoked"));
    let text = ca.ca(&["crl", "--text"]).ok().stdout;
    assert!(
        text.contains("CRL Number: 2") && text.contains("Superseded"),
        "{text}"
    );
}

/// Writers of different processes queue on the database's writer lock (`ca.db-lock`, `flock`) in
/// the kernel instead of meeting SQLite's lock and its busy-handler sleeps: while another process
/// holds it, `ca sign` waits, then signs.
#[test]
fn writers_of_other_processes_queue_on_the_writer_lock() {
    let ca = TestCa::new();
    let file = fixture("csr/ec-p256.pem").display().to_string();
    ca.ca(&["submit", &file]).ok();
    let name = ca.with_store(async |s| s.requests().await.unwrap().remove(0).certname);
    let lock = ca.data.join("ca.db-lock");
    assert!(lock.exists(), "the writer lock file is made with the database");
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .args(["sleep", "2"])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Until the holder has it (`flock -n` fails while it is held).
    let started = std::time::Instant::now();
    while std::process::Command::new("flock")
        .arg("-n")
        .arg(&lock)
        .arg("true")
        .status()
        .unwrap()
        .success()
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "flock never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let t = std::time::Instant::now();
    ca.ca(&["sign", &name]).ok();
    let waited = t.elapsed();
    assert!(holder.wait().unwrap().success());
    assert!(
        waited >= std::time::Duration::from_millis(1000),
        "ca sign did not wait for the other process's writer lock ({waited:?})"
    );
    assert!(ca.holds(&name), "signed once the lock was let go");
}

#[test]
fn concurrent_cli_writers_lose_nothing() {
    let ca = TestCa::new();
    let files = [
        "rsa2048.pem",
        "ec-p256.pem",
        "san-only-self.pem",
        "pp-extensions.pem",
        "challenge.pem",
        "rsa4096.pem",
    ];
    std::thread::scope(|s| {
        for f in files {
            let ca = &ca;
            s.spawn(move || {
                let file = fixture(&format!("csr/{f}")).display().to_string();
                ca.ca(&["submit", &file]).ok();
            });
        }
    });
    let names: Vec<String> = ca.with_store(async |s| {
        s.requests()
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.certname)
            .collect()
    });
    assert_eq!(names.len(), files.len());
    std::thread::scope(|s| {
        for n in &names {
            let ca = &ca;
            s.spawn(move || ca.ca(&["sign", n.as_str()]).ok());
        }
    });
    let serials: Vec<u64> = ca.with_store(async |s| {
        s.certificates(ca_server::storage::StatusFilter::All)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.serial)
            .collect()
    });
    let mut sorted = serials.clone();
    sorted.sort_unstable();
    sorted.dedup();
    // 2 and 3 are the server and admin certificates from setup.
    assert_eq!(serials.len(), 8);
    assert_eq!(
        sorted,
        (2..=9).collect::<Vec<u64>>(),
        "serials unique and sequential"
    );
}

#[test]
fn a_ca_key_readable_by_others_is_refused_with_the_fix() {
    let ca = TestCa::new();
    let key = ca.data.join("ca_key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    ca.ca(&["list"]).fails_with(1, "chmod 600");
    let out = Command::new(ca_binary().with_file_name("ca-server"))
        .args(["--data-dir", ca.data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("chmod 600"),
        "{out:?}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    ca.ca(&["list"]).ok();
}
