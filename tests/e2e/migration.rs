//! Moving in and out: a cadir made by the real `puppetserver ca setup` (offline), with certificates it
//! signed and one revoked, imported and served to the old certificates unchanged; a Puppet 3 ssldir/ca
//! with an encrypted key; export → import → export byte-identical.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use hyper::{Method, StatusCode};

use crate::harness::{crl_check, openssl, TestCa};
use crate::real_clients::require;
use crate::server::{As, TestServer};

pub fn sh(script: &str, dir: &Path) {
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn real_cli(conf: &Path, args: &[&str]) -> String {
    require("ruby");
    let out = Command::new("ruby")
        .args([
            "-e",
            "require 'puppetserver/ca/cli'; exit Puppetserver::Ca::Cli.run(ARGV)",
            "--",
        ])
        .args(args)
        .arg("--config")
        .arg(conf)
        .output()
        .unwrap();
    let t = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "puppetserver ca {args:?}: {t}");
    t
}

/// Revokes `serial` (hex) in the intermediate CA's CRL with openssl, the way an offline CA would: the
/// Debian CLI (2.4.0) has no offline revoke. The CRL keeps puppetserver's shape (v2, AKI, number).
fn revoke_with_openssl(cadir: &Path, serial_hex: &str, subject: &str) {
    sh(
        &format!(
            r#"
awk 'BEGIN{{n=0}} /BEGIN CERTIFICATE/{{n++}} n==1' ca_crt.pem > inter.pem
printf 'R\t411231000000Z\t261101000000Z,keyCompromise\t{serial_hex}\tunknown\t/{subject}\n' > index.txt
echo 01 > crlnumber
cat > ossl.cnf <<'EOF2'
[ca]
default_ca = d
[d]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 1825
crl_extensions = ext
[ext]
authorityKeyIdentifier = keyid:always
EOF2
openssl ca -config ossl.cnf -gencrl -keyfile ca_key.pem -cert inter.pem -out new_crl.pem 2>/dev/null
awk 'BEGIN{{n=0}} /BEGIN X509 CRL/{{n++}} n==2' ca_crl.pem > root_crl.pem
cat new_crl.pem root_crl.pem > ca_crl.pem
rm -f inter.pem index.txt* crlnumber* ossl.cnf new_crl.pem root_crl.pem
"#
        ),
        cadir,
    );
}

#[test]
fn cadir_from_the_real_puppetserver_ca_setup_is_imported_and_served() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let conf = t.join("puppet.conf");
    std::fs::write(
        &conf,
        format!(
            "[main]\ncertname = old-ca.example.test\nssldir = {ssl}\ncadir = {cadir}\nkeylength = 2048\n[server]\ncadir = {cadir}\n",
            ssl = t.join("ssl").display(),
            cadir = t.join("cadir").display()
        ),
    )
    .unwrap();
    real_cli(&conf, &["setup"]);
    for n in ["agent1.example.test", "agent2.example.test"] {
        real_cli(&conf, &["generate", "--certname", n, "--ca-client", "--force"]);
    }
    let cadir = t.join("cadir");
    let (_, text) = openssl(&[
        "x509",
        "-in",
        cadir.join("signed/agent2.example.test.pem").to_str().unwrap(),
        "-noout",
        "-serial",
    ]);
    let serial_hex = text.trim().trim_start_matches("serial=").to_string();
    revoke_with_openssl(&cadir, &serial_hex, "CN=agent2.example.test");

    let data = t.join("data");
    let ca = TestCa {
        tmp,
        data: data.clone(),
    };
    let out = ca.ca(&["import", "--cadir", cadir.to_str().unwrap()]).ok().stdout;
    assert!(
        out.contains("chain:        2 certificate(s)") && out.contains("revoked:      1 serial(s)"),
        "{out}"
    );
    assert!(out.contains("signed:       3 found, 3 new"), "{out}");
    // Safe to re-run: nothing new the second time.
    let again = ca.ca(&["import", "--cadir", cadir.to_str().unwrap()]).ok().stdout;
    assert!(again.contains("signed:       3 found, 0 new"), "{again}");
    let listed = ca.ca(&["list", "--all"]).ok().stdout;
    assert!(
        listed.contains("agent1.example.test") && listed.contains("Revoked Certificates:"),
        "{listed}"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("ca_crt.pem")).unwrap(),
        std::fs::read_to_string(cadir.join("ca_crt.pem")).unwrap(),
        "same CA certificate"
    );

    let ssl = ca.tmp.path().join("ssl");
    let s = TestServer::launch(ca, "key-type = \"ec-p256\"\n");
    // The certificate the old CA issued works against us unchanged; the one it revoked does not.
    let agent1 = As::Cert(
        ssl.join("certs/agent1.example.test.pem"),
        ssl.join("private_keys/agent1.example.test.pem"),
    );
    assert_eq!(s.get(&agent1, "/puppet-ca/v1/expirations").status, StatusCode::OK);
    let agent2 = As::Cert(
        ssl.join("certs/agent2.example.test.pem"),
        ssl.join("private_keys/agent2.example.test.pem"),
    );
    assert!(s
        .try_send(&agent2, Method::GET, "/puppet-ca/v1/expirations", &[], b"")
        .is_err());
    // The CRL chain we serve has both levels and still revokes agent2 (what an agent in chain mode checks).
    let crl = s
        .get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca")
        .text();
    assert_eq!(crl.matches("BEGIN X509 CRL").count(), 2);
    let crl_file = s.ca.path("served_crl.pem");
    std::fs::write(&crl_file, &crl).unwrap();
    assert!(crl_check(
        &s.ca.ca_cert(),
        &crl_file,
        &ssl.join("certs/agent1.example.test.pem")
    )
    .is_ok());
    let err = crl_check(
        &s.ca.ca_cert(),
        &crl_file,
        &ssl.join("certs/agent2.example.test.pem"),
    )
    .unwrap_err();
    assert!(err.contains("certificate revoked"), "{err}");
    // New serials continue after the old ones.
    s.ca.ca(&[
        "submit",
        crate::harness::fixture("csr/ec-p256.pem").to_str().unwrap(),
    ])
    .ok();
    let signed = s.ca.ca(&["sign", "agent-ec.example.test"]).ok().stdout;
    let serial: u64 = signed
        .rsplit("serial ")
        .next()
        .unwrap()
        .trim_end_matches([')', '\n'])
        .parse()
        .unwrap();
    assert!(serial >= 5, "{signed}");
}

/// A Puppet 3 `ssldir/ca` in `ca_dir`, made with openssl: the CA key DES-EDE3 encrypted with the password
/// `p3-secret-pass` in `private/ca.pass`, node1 signed (serial 2), node2 pending, next serial 3.
pub fn make_puppet3_cadir(ca_dir: &Path) {
    std::fs::create_dir_all(ca_dir.join("private")).unwrap();
    std::fs::create_dir_all(ca_dir.join("signed")).unwrap();
    std::fs::create_dir_all(ca_dir.join("requests")).unwrap();
    sh(
        r#"
echo 'p3-secret-pass' > private/ca.pass
openssl genrsa -traditional -des3 -passout file:private/ca.pass -out ca_key.pem 2048 2>/dev/null
cat > x.cnf <<'EOF2'
[req]
distinguished_name = dn
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[leaf]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = critical,serverAuth,clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid,issuer
subjectAltName = DNS:node1.example.test
[ca]
default_ca = d
[d]
database = index.txt
crlnumber = crlnumber
default_md = sha256
default_crl_days = 1825
crl_extensions = crl_ext
[crl_ext]
authorityKeyIdentifier = keyid:always
EOF2
openssl req -x509 -new -key ca_key.pem -passin file:private/ca.pass -subj '/CN=Puppet CA: p3master.example.test' -days 1825 -config x.cnf -extensions ca_ext -set_serial 1 -out ca_crt.pem
openssl req -new -newkey rsa:2048 -nodes -keyout node1.key -subj /CN=node1.example.test -out node1.csr 2>/dev/null
openssl x509 -req -in node1.csr -CA ca_crt.pem -CAkey ca_key.pem -passin file:private/ca.pass -set_serial 2 -days 365 -extfile x.cnf -extensions leaf -out signed/node1.example.test.pem 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -keyout node2.key -subj /CN=node2.example.test -out requests/node2.example.test.pem 2>/dev/null
touch index.txt; echo 00 > crlnumber
openssl ca -config x.cnf -gencrl -keyfile ca_key.pem -passin file:private/ca.pass -cert ca_crt.pem -out ca_crl.pem 2>/dev/null
printf '0003' > serial
printf '0x0001 2026-01-01T00:00:00UTC 2031-01-01T00:00:00UTC /CN=Puppet CA: p3master.example.test\n0x0002 2026-01-01T00:00:00UTC 2027-01-01T00:00:00UTC /CN=node1.example.test\n' > inventory.txt
rm -f x.cnf index.txt* crlnumber* node1.csr node2.key
"#,
        ca_dir,
    );
}

#[test]
fn puppet3_ssldir_with_an_encrypted_key() {
    let tmp = tempfile::tempdir().unwrap();
    let ca_dir = tmp.path().join("ssl/ca");
    make_puppet3_cadir(&ca_dir);
    let data = tmp.path().join("data");
    let ca = TestCa { tmp, data };
    let out = ca
        .ca(&["import", "--cadir", ca_dir.to_str().unwrap()])
        .ok()
        .stdout;
    assert!(out.contains("decrypted with private/ca.pass"), "{out}");
    assert!(
        out.contains("requests:     1 found, 1 new") && out.contains("next serial 0x0003"),
        "{out}"
    );
    let mode = std::fs::metadata(ca.data.join("ca_key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(!std::fs::read_to_string(ca.data.join("ca_key.pem"))
        .unwrap()
        .contains("ENCRYPTED"));
    // Written as real PKCS#8 (the key inside Puppet 3's PEM is PKCS#1), so openssl and puppetserver read it.
    let (ok, text) = openssl(&[
        "pkey",
        "-in",
        ca.data.join("ca_key.pem").to_str().unwrap(),
        "-noout",
    ]);
    assert!(ok, "{text}");
    // The imported CA signs: the pending request, with the next serial.
    let signed = ca.ca(&["sign", "node2.example.test"]).ok().stdout;
    assert!(signed.contains("(serial 3)"), "{signed}");
    crate::harness::assert_verifies(&ca.ca_cert(), &ca.cert_file("node2.example.test"));
    // Wrong password: refused, with nothing written.
    std::fs::write(ca_dir.join("private/ca.pass"), "wrong\n").unwrap();
    let other = ca.path("data2");
    crate::harness::ca(&[
        "--data-dir",
        other.to_str().unwrap(),
        "import",
        "--cadir",
        ca_dir.to_str().unwrap(),
    ])
    .fails_with(1, "wrong password");
    assert!(!other.exists());
}

#[test]
fn partial_or_foreign_state_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cadir = tmp.path().join("cadir");
    std::fs::create_dir_all(&cadir).unwrap();
    let target = tmp.path().join("data");
    let t = target.to_str().unwrap();
    crate::harness::ca(&["--data-dir", t, "import", "--cadir", cadir.to_str().unwrap()])
        .fails_with(1, "no Puppet CA");
    std::fs::write(cadir.join("ca_crt.pem"), "x").unwrap();
    crate::harness::ca(&["--data-dir", t, "import", "--cadir", cadir.to_str().unwrap()])
        .fails_with(1, "partial CA state")
        .fails_with(1, "missing ca_key.pem, ca_crl.pem");
    // Another CA's export into an existing CA: refused.
    let a = TestCa::new();
    let b = TestCa::new();
    let exported = a.path("exp");
    a.ca(&["export", "--cadir", exported.to_str().unwrap()]).ok();
    b.ca(&["import", "--cadir", exported.to_str().unwrap()])
        .fails_with(1, "a different CA");
}

fn tree(dir: &Path) -> Vec<(String, Vec<u8>, u32)> {
    let mut out = Vec::new();
    for e in walk(dir) {
        let rel = e.strip_prefix(dir).unwrap().display().to_string();
        let mode = std::fs::metadata(&e).unwrap().permissions().mode() & 0o777;
        let bytes = if e.is_dir() {
            Vec::new()
        } else {
            std::fs::read(&e).unwrap()
        };
        out.push((rel, bytes, mode));
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            v.extend(walk(&p));
        }
        v.push(p);
    }
    v
}

#[test]
fn export_import_export_is_byte_identical() {
    let a = TestCa::with_args(&["--intermediate"]);
    for f in [
        "rsa2048.pem",
        "ec-p256.pem",
        "san-only-self.pem",
        "pp-extensions.pem",
    ] {
        a.ca(&[
            "submit",
            crate::harness::fixture(&format!("csr/{f}")).to_str().unwrap(),
        ])
        .ok();
    }
    a.ca(&[
        "sign",
        "agent-rsa2048.example.test",
        "agent-ec.example.test",
        "agent-pp.example.test",
    ])
    .ok();
    a.ca(&["revoke", "agent-ec.example.test"]).ok();
    a.ca(&["clean", "agent-pp.example.test"]).ok();
    let first = a.path("export1");
    let out = a.ca(&["export", "--cadir", first.to_str().unwrap()]).ok().stdout;
    assert!(out.contains("1 requests"), "{out}");
    let serial = std::fs::read_to_string(first.join("serial")).unwrap();
    assert!(
        serial.len() >= 4 && u64::from_str_radix(&serial, 16).is_ok() && serial == serial.to_uppercase(),
        "{serial:?}"
    );
    let inv = std::fs::read_to_string(first.join("inventory.txt")).unwrap();
    assert!(
        inv.lines()
            .all(|l| l.starts_with("0x") && l.contains("UTC ") && l.contains(" /CN=")),
        "{inv}"
    );
    assert!(
        inv.contains("/CN=agent-pp.example.test"),
        "cleaned certificates stay in the inventory"
    );
    assert_eq!(
        std::fs::metadata(first.join("ca_key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(
        first.join("signed/agent-ec.example.test.pem").exists()
            && !first.join("signed/agent-pp.example.test.pem").exists()
    );
    a.ca(&["export", "--cadir", first.to_str().unwrap()])
        .fails_with(1, "not empty");

    let b_dir = a.path("b");
    crate::harness::ca(&[
        "--data-dir",
        b_dir.to_str().unwrap(),
        "import",
        "--cadir",
        first.to_str().unwrap(),
    ])
    .ok();
    let second = a.path("export2");
    crate::harness::ca(&[
        "--data-dir",
        b_dir.to_str().unwrap(),
        "export",
        "--cadir",
        second.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        tree(&first),
        tree(&second),
        "export → import → export is identical"
    );
}
