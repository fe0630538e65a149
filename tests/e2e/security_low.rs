//! Security review, "Low" items (issue 11): each test reproduces the attack or the bug.
//!
//! Repeated extensions and critical `pp_*` extensions; the server's and the admin's keys private like
//! the CA key; autosign executables capped; `ca export` and `ca backup` never write through a symbolic
//! link; reserved and IP-literal certnames; weak keys and digests named as such.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::harness::{assert_verifies, free_port, openssl, server_binary, TestCa};

/// `pp_role` (1.3.6.1.4.1.34380.1.1.13).
const PP_ROLE: &[u64] = &[1, 3, 6, 1, 4, 1, 34380, 1, 1, 13];

fn utf8(s: &str) -> Vec<u8> {
    let mut v = vec![0x0c, u8::try_from(s.len()).unwrap()];
    v.extend_from_slice(s.as_bytes());
    v
}

/// DER of a subjectAltName value holding one DNS name.
fn san_dns(name: &str) -> Vec<u8> {
    let mut gn = vec![0x82, u8::try_from(name.len()).unwrap()];
    gn.extend_from_slice(name.as_bytes());
    let mut v = vec![0x30, u8::try_from(gn.len()).unwrap()];
    v.extend(gn);
    v
}

/// A CSR for `cn` made with rcgen, with `exts` as (OID, critical, DER value) in its extension request.
fn csr_with(cn: &str, sans: &[&str], exts: &[(&[u64], bool, Vec<u8>)]) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p =
        rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    for (oid, critical, value) in exts {
        let mut e = rcgen::CustomExtension::from_oid_content(oid, value.clone());
        e.set_criticality(*critical);
        p.custom_extensions.push(e);
    }
    p.serialize_request(&key).unwrap().pem().unwrap()
}

fn write(ca: &TestCa, name: &str, text: &str) -> PathBuf {
    let path = ca.path(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn submit(ca: &TestCa, name: &str, pem: &str) -> crate::harness::Run {
    let f = write(ca, &format!("{name}.csr"), pem);
    ca.ca(&["submit", f.to_str().unwrap()])
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

// --- 1. repeated extensions; pp_* never critical -------------------------------------------------

#[test]
fn csr_repeating_an_extension_is_refused() {
    let ca = TestCa::new();
    // Two subjectAltName extensions: the second one would slip past a check that reads only one.
    let name = "dup-san.example.test";
    let pem = csr_with(name, &[name], &[(&[2, 5, 29, 17], false, san_dns("puppet"))]);
    submit(&ca, name, &pem).fails_with(
        1,
        "contains the extension subjectAltName (2.5.29.17) more than once",
    );
    assert!(!ca.holds(name), "nothing stored");

    let name = "dup-pp.example.test";
    let pem = csr_with(
        name,
        &[],
        &[(PP_ROLE, false, utf8("web")), (PP_ROLE, false, utf8("db"))],
    );
    submit(&ca, name, &pem).fails_with(
        1,
        "contains the extension pp_role (1.3.6.1.4.1.34380.1.1.13) more than once",
    );
    assert!(!ca.holds(name));
}

#[test]
fn pp_extensions_are_issued_non_critical() {
    let ca = TestCa::new();
    let name = "crit-pp.example.test";
    submit(&ca, name, &csr_with(name, &[], &[(PP_ROLE, true, utf8("web"))])).ok();
    ca.ca(&["sign", name]).ok();
    let cert = ca.cert_file(name);
    let der = pem::parse(std::fs::read(&cert).unwrap()).unwrap().into_contents();
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    let ext = c
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == "1.3.6.1.4.1.34380.1.1.13")
        .expect("pp_role copied");
    assert!(!ext.critical, "pp_role must be issued non-critical");
    assert_eq!(ext.value, utf8("web").as_slice());
    // A critical extension OpenSSL does not know would make every verifier reject the certificate.
    assert_verifies(&ca.ca_cert(), &cert);
}

// --- 2. server/key.pem and admin/key.pem are checked like the CA key ------------------------------

#[test]
fn admin_key_readable_by_others_is_refused() {
    let ca = TestCa::new();
    let key = ca.data.join("admin/key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    // Refused before any connection is tried (nothing listens on this port).
    let server = format!("https://127.0.0.1:{}", free_port());
    ca.ca(&["--server", server.as_str(), "list"])
        .fails_with(1, "the admin key")
        .fails_with(1, "is accessible to other users (mode 640); run `chmod 600");
}

#[test]
fn server_key_readable_by_others_is_refused_at_start() {
    let ca = TestCa::new();
    let key = ca.data.join("server/key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut child = Command::new(server_binary())
        .args(["--data-dir", ca.data.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ca-server started with a server key readable by others");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut log).unwrap();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("the server key") && log.contains("is accessible to other users (mode 644)"),
        "{log}"
    );
}

// --- 3. autosign executables run with a concurrency cap ------------------------------------------

#[test]
fn autosign_executables_are_capped_and_queued() {
    const CAP: usize = 3;
    const N: usize = 24;
    let ca = TestCa::new();
    let state = ca.path("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("cur"), "0\n").unwrap();
    std::fs::write(state.join("max"), "0\n").unwrap();
    let script = ca.path("autosign.sh");
    let d = state.display();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             lock() {{ while ! mkdir '{d}/lock' 2>/dev/null; do sleep 0.01; done; }}\n\
             lock\n\
             n=$(( $(cat '{d}/cur') + 1 )); echo $n > '{d}/cur'\n\
             if [ $n -gt $(cat '{d}/max') ]; then echo $n > '{d}/max'; fi\n\
             rmdir '{d}/lock'\n\
             cat > /dev/null\n\
             sleep 0.3\n\
             lock\n\
             echo $(( $(cat '{d}/cur') - 1 )) > '{d}/cur'\n\
             rmdir '{d}/lock'\n\
             exit 0\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let csrs: Vec<(String, String)> = (0..N)
        .map(|i| {
            let n = format!("burst-{i:02}.example.test");
            let pem = csr_with(&n, &[], &[]);
            (n, pem)
        })
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let issued = rt.block_on(async {
        let settings = ca_server::authority::CaSettings {
            autosign: ca_server::authority::Autosign::Path(script.clone()),
            autosign_max_concurrent: CAP,
            ..Default::default()
        };
        let a = ca_server::authority::Authority::open(
            &ca_server::datadir::DataDir::new(&ca.data),
            settings,
            Arc::new(ca_server::clock::SystemClock),
        )
        .await
        .unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for (n, pem) in csrs {
            let a = a.clone();
            tasks.spawn(async move { a.submit("test", &n, pem.as_bytes()).await.map(|s| (n, s)) });
        }
        let mut issued = Vec::new();
        while let Some(r) = tasks.join_next().await {
            let (n, s) = r.unwrap().unwrap();
            assert!(s.autosign.sign, "{n}: {}", s.autosign.reason);
            issued.push((n, s.issued.expect("autosigned").serial));
        }
        a.store().close().await;
        issued
    });
    assert_eq!(issued.len(), N, "every submission completed and was signed");
    let max: usize = std::fs::read_to_string(state.join("max"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (1..=CAP).contains(&max),
        "{max} autosign executables ran at once; the cap is {CAP}"
    );
    assert_eq!(std::fs::read_to_string(state.join("cur")).unwrap().trim(), "0");
}

// --- 4. export and backup never write through a symbolic link; exported keys are 0600 -------------

#[test]
fn export_refuses_a_symlinked_target_and_writes_the_key_0600() {
    let ca = TestCa::new();
    let elsewhere = ca.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = ca.path("cadir-link");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    ca.ca(&["export", "--cadir", link.to_str().unwrap()])
        .fails_with(1, "is a symbolic link");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing written where the link points"
    );

    // An existing directory that other users may write to: they could plant links in it meanwhile.
    let open = ca.path("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    ca.ca(&["export", "--cadir", open.to_str().unwrap()])
        .fails_with(1, "writable by other users");

    let out = ca.path("cadir");
    ca.ca(&["export", "--cadir", out.to_str().unwrap()]).ok();
    assert_eq!(mode(&out.join("ca_key.pem")), 0o600, "the exported CA key");
}

#[test]
fn backup_refuses_a_symlinked_target() {
    let ca = TestCa::new();
    // A dangling link: following it would create the file it points to.
    let victim = ca.path("victim.db");
    let link = ca.path("backup.db");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    ca.ca(&["backup", link.to_str().unwrap()])
        .fails_with(1, "is a symbolic link");
    assert!(!victim.exists(), "nothing written through the link");

    let file = ca.path("real-backup.db");
    ca.ca(&["backup", file.to_str().unwrap()]).ok();
    assert_eq!(mode(&file), 0o600, "the backup is private");
    assert!(std::fs::metadata(&file).unwrap().len() > 0);
}

// --- 5. reserved and IP-literal certnames ---------------------------------------------------------

#[test]
fn reserved_certnames_are_refused() {
    let ca = TestCa::new();
    // Duplicates allowed: without the reservation a request would replace the admin's certificate.
    std::fs::write(
        ca.data.join("config.toml"),
        "[ca]\nallow-duplicate-certs = true\n",
    )
    .unwrap();
    for (name, what) in [
        ("ca", "reserved for the CA certificate"),
        ("ca-admin", "reserved for the CA's admin certificate"),
        ("ca.example.test", "reserved for the CA server's own certificate"),
    ] {
        submit(&ca, name, &csr_with(name, &[], &[])).fails_with(1, what);
        assert!(
            ca.with_store(async |s| s.request(name).await.unwrap().is_none()),
            "{name}: nothing pending"
        );
        let out = ca.path("gen");
        ca.ca(&[
            "generate",
            name,
            "--key-type",
            "ec-p256",
            "--out",
            out.to_str().unwrap(),
        ])
        .fails_with(1, what);
    }
    // The admin certificate issued at setup is still there and still works for its holder.
    assert!(ca.holds("ca-admin") && ca.holds("ca.example.test"));
    // A request stored before the reservation existed (written straight into the database, as an
    // older version would have) is refused at signing too.
    let der = pem::parse(csr_with("ca", &[], &[])).unwrap().into_contents();
    ca.with_store(async |s| {
        let mut tx = s.write().await.unwrap();
        tx.put_request("ca", &der, "{}", 0, "test", false).await.unwrap();
        tx.commit().await.unwrap();
    });
    ca.ca(&["sign", "ca"])
        .fails_with(1, "reserved for the CA certificate");
    assert!(ca.with_store(async |s| s.current_certificate("ca").await.unwrap().is_none()));
}

#[test]
fn ip_literal_certnames_need_the_policy() {
    let ca = TestCa::new();
    submit(&ca, "10.0.0.1", &csr_with("10.0.0.1", &[], &[]))
        .fails_with(1, "The certname '10.0.0.1' is an IP address")
        .fails_with(1, "allow = [\"IP:10.0.0.1\"]");
    assert!(!ca.holds("10.0.0.1"));
    submit(&ca, "::1", &csr_with("::1", &[], &[])).fails_with(1, "is an IPv6 address");
    let out = ca.path("gen");
    let out = out.to_str().unwrap();
    ca.ca(&["generate", "10.0.0.2", "--key-type", "ec-p256", "--out", out])
        .fails_with(1, "is an IP address");
    // ca generate: the admin's own --dns-alt-names IP:... is the permission.
    ca.ca(&[
        "generate",
        "10.0.0.2",
        "--dns-alt-names",
        "IP:10.0.0.2",
        "--key-type",
        "ec-p256",
        "--out",
        out,
    ])
    .ok();
    // A rule that allows the address for that certname.
    std::fs::write(
        ca.data.join("config.toml"),
        "[[ca.alt-name-rules]]\ncertnames = \"10.0.0.1\"\nallow = [\"IP:10.0.0.1\"]\n",
    )
    .unwrap();
    submit(&ca, "10.0.0.1", &csr_with("10.0.0.1", &[], &[])).ok();
    assert!(ca.holds("10.0.0.1"));
    // The rule is for that certname only.
    submit(&ca, "10.0.0.3", &csr_with("10.0.0.3", &[], &[])).fails_with(1, "is an IP address");
}

// --- 6. weak keys and digests get a message that says so -----------------------------------------

/// A CSR made by `openssl req -new` for the key in `key`, with `extra` flags (the digest).
fn openssl_csr(dir: &Path, cn: &str, key: &Path, extra: &[&str]) -> Result<String, String> {
    let out = dir.join(format!("{cn}.csr"));
    let mut args = vec!["req", "-new", "-key", key.to_str().unwrap(), "-subj"];
    let subj = format!("/CN={cn}");
    args.push(subj.as_str());
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-out", out.to_str().unwrap()]);
    let (ok, text) = openssl(&args);
    if ok {
        Ok(std::fs::read_to_string(&out).unwrap())
    } else {
        Err(text)
    }
}

fn openssl_key(dir: &Path, name: &str, genpkey: &[&str]) -> PathBuf {
    let key = dir.join(format!("{name}.key"));
    let mut args = vec!["genpkey"];
    args.extend_from_slice(genpkey);
    args.extend_from_slice(&["-out", key.to_str().unwrap()]);
    let (ok, text) = openssl(&args);
    assert!(ok, "openssl genpkey {genpkey:?}: {text}");
    key
}

#[test]
fn weak_keys_and_digests_are_named() {
    let ca = TestCa::new();
    let dir = ca.tmp.path();
    let rsa = |bits: &str, exp: &str| {
        let name = format!("rsa-{bits}-{exp}");
        let bits = format!("rsa_keygen_bits:{bits}");
        let exp = format!("rsa_keygen_pubexp:{exp}");
        openssl_key(
            dir,
            &name,
            &[
                "-algorithm",
                "RSA",
                "-pkeyopt",
                bits.as_str(),
                "-pkeyopt",
                exp.as_str(),
            ],
        )
    };
    let rsa1024 = rsa("1024", "65537");
    let rsa2048 = rsa("2048", "65537");
    let rsa_e3 = rsa("2048", "3");
    let p192 = openssl_key(
        dir,
        "p192",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime192v1"],
    );
    let dsa_params = dir.join("dsa.params");
    let (ok, text) = openssl(&[
        "genpkey",
        "-genparam",
        "-algorithm",
        "DSA",
        "-pkeyopt",
        "dsa_paramgen_bits:2048",
        "-out",
        dsa_params.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let dsa = openssl_key(dir, "dsa", &["-paramfile", dsa_params.to_str().unwrap()]);

    let cases: Vec<(&str, &Path, Vec<&str>, &str)> = vec![
        (
            "weak-rsa1024",
            rsa1024.as_path(),
            vec![],
            "RSA keys of 1024 bits are too weak; at least 2048 bits are required",
        ),
        (
            "weak-exp3",
            rsa_e3.as_path(),
            vec![],
            "the RSA public exponent 3 is too small; at least 65537 is required",
        ),
        ("weak-p192", p192.as_path(), vec![], "EC P-192 keys are too weak"),
        ("weak-dsa", dsa.as_path(), vec![], "DSA keys are not accepted"),
        (
            "weak-sha1",
            rsa2048.as_path(),
            vec!["-sha1"],
            "signed with SHA-1, which is not accepted",
        ),
        (
            "weak-md5",
            rsa2048.as_path(),
            vec!["-md5"],
            "signed with MD5, which is not accepted",
        ),
    ];
    for (cn, key, extra, needle) in cases {
        let name = format!("{cn}.example.test");
        let pem = match openssl_csr(dir, &name, key, &extra) {
            Ok(p) => p,
            // openssl may refuse to make an MD5 signature at all (then no agent can send one either).
            Err(e) if extra == ["-md5"] => {
                println!("openssl refused to sign with MD5, case skipped: {e}");
                continue;
            }
            Err(e) => panic!("openssl req for {name}: {e}"),
        };
        let run = submit(&ca, &name, &pem).fails_with(1, needle);
        assert!(
            !run.stderr.contains("does not correspond"),
            "{name}: the message names the weakness: {run:?}"
        );
        assert!(!ca.holds(&name), "{name}: nothing stored");
    }
    // RSA-2048 with SHA-256 (what agents send) is fine.
    let name = "strong-rsa.example.test";
    submit(
        &ca,
        name,
        &openssl_csr(dir, name, &rsa2048, &["-sha256"]).unwrap(),
    )
    .ok();
}
