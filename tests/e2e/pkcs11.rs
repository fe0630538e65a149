//! The CA key in a PKCS#11 token (SoftHSM, a throwaway token per test), with the real binaries: `ca
//! setup` makes the key in the token, `ca-server` signs a real agent's certificate and CRLs through
//! it, `ca revoke` too; the key file never exists and the token says the key was never extractable;
//! a wrong PIN or a missing token stops the server at start with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{assert_crl_verifies, assert_verifies, ca_binary, crl_check, TestCa};
use crate::real_clients::{agent_args_at, require, text};
use crate::reload::Running;

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const TOKEN: &str = "ca-token";
const PIN: &str = "4711";

/// A SoftHSM configuration with its own token directory and one initialised token.
struct SoftHsm {
    conf: PathBuf,
}

impl SoftHsm {
    fn new(dir: &Path) -> SoftHsm {
        require("softhsm2-util");
        assert!(
            Path::new(MODULE).exists(),
            "{MODULE} (scripts/test installs softhsm2)"
        );
        let tokens = dir.join("tokens");
        std::fs::create_dir_all(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            ),
        )
        .unwrap();
        let out = Command::new("softhsm2-util")
            .args([
                "--init-token",
                "--free",
                "--label",
                TOKEN,
                "--pin",
                PIN,
                "--so-pin",
                "123456",
            ])
            .env("SOFTHSM2_CONF", &conf)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        SoftHsm { conf }
    }
}

/// The real `ca` with the token's configuration in its environment.
fn ca(hsm: &SoftHsm, data: &Path, config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(ca_binary())
        .args([
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ])
        .args(args)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn config(dir: &Path, token: &str, pin: &str) -> PathBuf {
    let pin_file = dir.join(format!("pin-{token}-{pin}"));
    std::fs::write(&pin_file, format!("{pin}\n")).unwrap();
    let path = dir.join(format!("config-{token}-{pin}.toml"));
    std::fs::write(
        &path,
        format!(
            "[ca]\nautosign = true\n[ca.pkcs11]\nmodule = \"{MODULE}\"\ntoken-label = \"{token}\"\n\
             key-label = \"puppet-ca\"\npin-file = \"{}\"\n",
            pin_file.display()
        ),
    )
    .unwrap();
    path
}

fn wait_listening(port: u16, server: &Running) {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(30), "{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// OpenSC's `pkcs11-tool` on the test token, logged in; what it printed (it must succeed).
fn pkcs11_tool(hsm: &SoftHsm, args: &[&str]) -> std::process::Output {
    let out = Command::new("pkcs11-tool")
        .args([
            "--module",
            MODULE,
            "--token-label",
            TOKEN,
            "--login",
            "--pin",
            PIN,
        ])
        .args(args)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    out
}

/// `pkcs11-tool --list-objects --type privkey` on the test token: each key's label and attributes.
fn private_keys(hsm: &SoftHsm) -> String {
    text(&pkcs11_tool(hsm, &["--list-objects", "--type", "privkey"]))
}

/// A real Puppet agent's `puppet ssl bootstrap` (autosigned) against the server on `port`; its
/// certificate's path.
fn bootstrap(port: u16, agent: &Path, name: &str, server: &Running) -> PathBuf {
    let out = Command::new("puppet")
        .args(["ssl", "bootstrap"])
        .args(agent_args_at(port, agent, name))
        .args(["--waitforcert", "0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}\n{}", text(&out), server.log());
    agent.join(format!("ssl/certs/{name}.pem"))
}

/// The agents' CRL (all of it: one per CA key during a rollover) as served on `port`, fetched with
/// curl trusting `ca`.
fn served_crl(port: u16, ca: &Path) -> Vec<u8> {
    let got = Command::new("curl")
        .args(["-sS", "--fail", "--cacert", ca.to_str().unwrap()])
        .arg(format!(
            "https://localhost:{port}/puppet-ca/v1/certificate_revocation_list/ca"
        ))
        .output()
        .unwrap();
    assert!(got.status.success(), "{}", text(&got));
    got.stdout
}

#[test]
fn ca_key_in_a_softhsm_token_signs_a_real_agent_and_crls_and_never_leaves_it() {
    require("puppet");
    let tmp = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(tmp.path());
    let data = tmp.path().join("data");
    let conf = config(tmp.path(), TOKEN, PIN);
    let out = ca(
        &hsm,
        &data,
        &conf,
        &[
            "setup",
            "--certname",
            "ca.example.test",
            "--dns-alt-names",
            "localhost,IP:127.0.0.1",
            "--key-type",
            "rsa-2048",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!data.join("ca_key.pem").exists(), "no key file");
    assert_verifies(&data.join("ca_crt.pem"), &data.join("server/cert.pem"));

    // The token says: sensitive (never readable), never extractable (never wrapped out), made in it.
    let listed = private_keys(&hsm);
    assert!(
        listed.contains("puppet-ca")
            && listed.contains("always sensitive")
            && listed.contains("never extractable")
            && listed.contains("local"),
        "{listed}"
    );

    // The server signs a real agent's certificate with the token.
    let ca_dir = TestCa {
        tmp: tempfile::tempdir().unwrap(),
        data: data.clone(),
    };
    let env = [("SOFTHSM2_CONF", hsm.conf.as_path())];
    let (server, port) = Running::start_on_any_port(&ca_dir, &["--config", conf.to_str().unwrap()], &env);
    let agent = tmp.path().join("agent");
    let name = "hsm-agent.example.test";
    let cert = bootstrap(port, &agent, name, &server);
    assert_verifies(&data.join("ca_crt.pem"), &cert);

    // Revocation through the token (the CLI, in local mode), a CRL that verifies and lists it.
    let out = ca(&hsm, &data, &conf, &["revoke", name]);
    assert!(out.status.success(), "{}", text(&out));
    let crl = tmp.path().join("crl.pem");
    std::fs::write(&crl, served_crl(port, &data.join("ca_crt.pem"))).unwrap();
    assert_crl_verifies(&data.join("ca_crt.pem"), &crl);
    let err = crl_check(&data.join("ca_crt.pem"), &crl, &cert).unwrap_err();
    assert!(err.contains("certificate revoked"), "{err}");
    // The audit log is sealed with the token's secret, and verifies.
    let out = ca(&hsm, &data, &conf, &["audit", "verify"]);
    assert!(out.status.success(), "{}", text(&out));
    drop(server);

    // Restarted: still serving from the token.
    let (server, _) = Running::start_on_any_port(&ca_dir, &["--config", conf.to_str().unwrap()], &env);
    drop(server);
    assert!(!data.join("ca_key.pem").exists());

    // A wrong PIN, a missing token: the server stops at start and says why (never the PIN).
    for (bad, why) in [
        (
            config(tmp.path(), TOKEN, "0000"),
            "the PIN of token 'ca-token' is wrong",
        ),
        (
            config(tmp.path(), "no-such-token", PIN),
            "no token labelled 'no-such-token'",
        ),
    ] {
        let mut server = Running::start(&ca_dir, 0, &["--config", bad.to_str().unwrap()], &env);
        let started = Instant::now();
        let status = loop {
            if let Some(s) = server.try_wait() {
                break s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "still running: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(!status.success());
        let log = server.log();
        assert!(log.contains(why), "{log}");
        assert!(
            !log.contains("0000") && !log.contains(PIN),
            "no PIN in the log: {log}"
        );
    }
}

/// An EC P-256 CA key in the token: ECDSA signatures from the token are DER-encoded as X.509 wants.
/// Also: a key made beforehand by the token's own tools (`pkcs11-tool --keypairgen`) under the
/// label is the one `ca setup` uses, and the PIN may come from `CA_PKCS11_PIN` instead of a file.
#[test]
fn an_ec_ca_key_in_the_token_makes_valid_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(tmp.path());
    let data = tmp.path().join("data");
    pkcs11_tool(
        &hsm,
        &[
            "--keypairgen",
            "--key-type",
            "EC:prime256v1",
            "--label",
            "puppet-ca",
        ],
    );
    let before = private_keys(&hsm);
    let conf = tmp.path().join("no-pin-file.toml");
    std::fs::write(
        &conf,
        format!("[ca.pkcs11]\nmodule = \"{MODULE}\"\ntoken-label = \"{TOKEN}\"\nkey-label = \"puppet-ca\"\n"),
    )
    .unwrap();
    let setup = |pin: Option<&str>| {
        let mut cmd = Command::new(ca_binary());
        cmd.args([
            "--data-dir",
            data.to_str().unwrap(),
            "--config",
            conf.to_str().unwrap(),
        ])
        .args(["setup", "--certname", "ec.example.test", "--key-type", "ec-p256"])
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env_remove(ca_server::ca::token::PIN_ENV)
        .stdin(Stdio::null());
        if let Some(pin) = pin {
            cmd.env(ca_server::ca::token::PIN_ENV, pin);
        }
        cmd.output().unwrap()
    };
    let refused = setup(None);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("CA_PKCS11_PIN"), "{}", text(&refused));
    let out = setup(Some(PIN));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!data.join("ca_key.pem").exists());
    assert_eq!(private_keys(&hsm), before, "the key already there, no other");
    // The CA certificate holds that key's public key.
    let public = pkcs11_tool(
        &hsm,
        &["--read-object", "--type", "pubkey", "--label", "puppet-ca"],
    );
    let ca_pem = std::fs::read_to_string(data.join("ca_crt.pem")).unwrap();
    let ca_der = pem::parse(&ca_pem).unwrap().into_contents();
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert_eq!(ca_cert.public_key().raw, public.stdout.as_slice());
    let conf = config(tmp.path(), TOKEN, PIN);
    assert_verifies(&data.join("ca_crt.pem"), &data.join("admin/cert.pem"));
    let out = ca(
        &hsm,
        &data,
        &conf,
        &[
            "generate",
            "ec-node.example.test",
            "--key-type",
            "ec-p256",
            "--out",
            tmp.path().join("gen").to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_verifies(
        &data.join("ca_crt.pem"),
        &tmp.path().join("gen/certs/ec-node.example.test.pem"),
    );
}

/// `ca import` with `[ca.pkcs11]`: a puppetserver CA (made by the real CLI) is imported with its key
/// taken into the token (sensitive from then on), no key file; the CA signs through the token and
/// the certificates verify under the imported CA certificate; export refuses (the key cannot leave).
#[test]
fn ca_import_takes_a_puppetserver_key_into_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let puppet_conf = t.join("puppet.conf");
    let cadir = t.join("cadir");
    std::fs::write(
        &puppet_conf,
        format!(
            "[main]\ncertname = old-ca.example.test\nssldir = {ssl}\ncadir = {cadir}\nkeylength = 2048\n[server]\ncadir = {cadir}\n",
            ssl = t.join("ssl").display(),
            cadir = cadir.display()
        ),
    )
    .unwrap();
    crate::migration::real_cli(&puppet_conf, &["setup"]);
    let hsm = SoftHsm::new(t);
    let data = t.join("data");
    let conf = config(t, TOKEN, PIN);
    let out = ca(
        &hsm,
        &data,
        &conf,
        &["import", "--cadir", cadir.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !data.join("ca_key.pem").exists(),
        "the key went into the token, not a file"
    );
    let listed = private_keys(&hsm);
    assert!(
        listed.contains("puppet-ca") && listed.contains("sensitive"),
        "{listed}"
    );
    let gen = t.join("gen");
    let out = ca(
        &hsm,
        &data,
        &conf,
        &[
            "generate",
            "imported-node.example.test",
            "--out",
            gen.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_verifies(
        &cadir.join("ca_crt.pem"),
        &gen.join("certs/imported-node.example.test.pem"),
    );
    let out = ca(
        &hsm,
        &data,
        &conf,
        &["export", "--cadir", t.join("out").to_str().unwrap()],
    );
    assert!(
        !out.status.success() && text(&out).contains("never leaves it"),
        "{}",
        text(&out)
    );
}

/// Two replicas on one PostgreSQL database, both with the CA key in the same token and no key file:
/// the second finds the CA in the database and the key in the token, issues its own server
/// certificate through it, signs a real agent's certificate, and serves the first's revocation.
#[test]
fn replicas_share_the_ca_key_in_the_token() {
    use std::os::unix::fs::PermissionsExt;
    require("puppet");
    let tmp = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(tmp.path());
    let pg = crate::pg::PgCluster::start();
    let url = pg.url("ca");
    let pkcs11 = std::fs::read_to_string(config(tmp.path(), TOKEN, PIN)).unwrap();
    let conf = tmp.path().join("replica.toml");
    std::fs::write(&conf, format!("database-url = \"{url}\"\n{pkcs11}")).unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let out = ca(
        &hsm,
        &a,
        &conf,
        &[
            "--database-url",
            &url,
            "setup",
            "--certname",
            "ca-a.example.test",
            "--dns-alt-names",
            "localhost,IP:127.0.0.1",
            "--key-type",
            "ec-p256",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    std::fs::create_dir(&b).unwrap();
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o700)).unwrap();
    let env = [("SOFTHSM2_CONF", hsm.conf.as_path())];
    let ca_a = TestCa {
        tmp: tempfile::tempdir().unwrap(),
        data: a.clone(),
    };
    let ca_b = TestCa {
        tmp: tempfile::tempdir().unwrap(),
        data: b.clone(),
    };
    let (_server_a, _) = Running::start_on_any_port(&ca_a, &["--config", conf.to_str().unwrap()], &env);
    let (server_b, port_b) = Running::start_on_any_port(
        &ca_b,
        &[
            "--config",
            conf.to_str().unwrap(),
            "--certname",
            "ca-b.example.test",
            "--dns-alt-names",
            "localhost",
        ],
        &env,
    );
    assert!(!a.join("ca_key.pem").exists() && !b.join("ca_key.pem").exists());
    let chain = a.join("ca_crt.pem");
    assert_verifies(&chain, &b.join("server/cert.pem"));

    let agent = tmp.path().join("agent");
    let name = "replica-hsm-agent.example.test";
    let cert = bootstrap(port_b, &agent, name, &server_b);
    assert_verifies(&chain, &cert);
    // Revoked through replica A's CLI (the token again): B's CRL lists it.
    let out = ca(&hsm, &a, &conf, &["--database-url", &url, "revoke", name]);
    assert!(out.status.success(), "{}", text(&out));
    let crl = tmp.path().join("crl.pem");
    let started = Instant::now();
    loop {
        std::fs::write(&crl, served_crl(port_b, &chain)).unwrap();
        if crl_check(&chain, &crl, &cert).is_err() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "B's CRL never listed it"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_crl_verifies(&chain, &crl);
}

/// A root + intermediate CA with the intermediate's (the signing) key in the token: the root key is a
/// file that can go offline; certificates the token signs verify through the chain.
#[test]
fn an_intermediate_ca_signs_through_the_token() {
    let tmp = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(tmp.path());
    let data = tmp.path().join("data");
    let conf = config(tmp.path(), TOKEN, PIN);
    let out = ca(
        &hsm,
        &data,
        &conf,
        &[
            "setup",
            "--certname",
            "int.example.test",
            "--intermediate",
            "--key-type",
            "ec-p256",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !data.join("ca_key.pem").exists(),
        "the signing key is in the token"
    );
    assert!(
        data.join("root_key.pem").exists(),
        "the root key is a file (to keep offline)"
    );
    let gen = tmp.path().join("gen");
    let out = ca(
        &hsm,
        &data,
        &conf,
        &[
            "generate",
            "leaf.example.test",
            "--key-type",
            "ec-p256",
            "--out",
            gen.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // ca_crt.pem holds the intermediate and the root: openssl builds the chain to the root.
    assert_verifies(&data.join("ca_crt.pem"), &gen.join("certs/leaf.example.test.pem"));
    let crl = tmp.path().join("crl.pem");
    let out = ca(&hsm, &data, &conf, &["crl"]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(&crl, &out.stdout).unwrap();
    assert_crl_verifies(&data.join("ca_crt.pem"), &crl);
    // The root key taken offline: the intermediate in the token still signs.
    std::fs::rename(data.join("root_key.pem"), tmp.path().join("offline_root_key.pem")).unwrap();
    let out = ca(
        &hsm,
        &data,
        &conf,
        &["generate", "leaf2.example.test", "--out", gen.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_verifies(
        &data.join("ca_crt.pem"),
        &gen.join("certs/leaf2.example.test.pem"),
    );
}

/// A CA key rollover with the keys in the token: `start` makes the new key in the token (no key
/// file, never extractable), `switch` signs with it (found by its public key: no label changes),
/// both keys sign the CRL meanwhile, `finish` leaves the old key in the token under its label, and
/// the audit log sealed before, during and after verifies. Real agents and openssl throughout.
#[test]
fn a_key_rollover_happens_inside_the_token() {
    require("puppet");
    let tmp = tempfile::tempdir().unwrap();
    let hsm = SoftHsm::new(tmp.path());
    let data = tmp.path().join("data");
    let conf = config(tmp.path(), TOKEN, PIN);
    let ok = |args: &[&str]| {
        let out = ca(&hsm, &data, &conf, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&[
        "setup",
        "--certname",
        "ca.example.test",
        "--dns-alt-names",
        "localhost,IP:127.0.0.1",
        "--key-type",
        "rsa-2048",
    ]);
    let ca_dir = TestCa {
        tmp: tempfile::tempdir().unwrap(),
        data: data.clone(),
    };
    let env = [("SOFTHSM2_CONF", hsm.conf.as_path())];
    let old_ca = tmp.path().join("old_ca.pem");
    std::fs::copy(data.join("ca_crt.pem"), &old_ca).unwrap();
    // The agents keep the port they bootstrapped with: restarts listen on it again.
    let (server, port) = Running::start_on_any_port(&ca_dir, &["--config", conf.to_str().unwrap()], &env);
    let run = || {
        let server = Running::start(&ca_dir, port, &["--config", conf.to_str().unwrap()], &env);
        wait_listening(port, &server);
        server
    };
    let (a, b) = ("token-roll-a.example.test", "token-roll-b.example.test");
    let a_cert = bootstrap(port, &tmp.path().join("a"), a, &server);
    drop(server);

    let started = ok(&["rollover", "start", "--key-type", "ec-p256"]);
    let label = started
        .split('\'')
        .find(|l| l.starts_with("puppet-ca."))
        .unwrap_or_else(|| panic!("the new key's label: {started}"))
        .to_string();
    assert!(!data.join("rollover/next_ca_key.pem").exists(), "no key file");
    let keys = private_keys(&hsm);
    assert!(keys.contains(&label), "{keys}");
    assert_eq!(keys.matches("never extractable").count(), 2, "{keys}");
    let next_ca = data.join("rollover/next_ca_crt.pem");

    let switched = ok(&["rollover", "switch"]);
    assert!(switched.contains("keys stay in the token"), "{switched}");
    let server = run();
    let b_cert = bootstrap(port, &tmp.path().join("b"), b, &server);
    assert_verifies(&next_ca, &b_cert);
    ok(&["revoke", a, b]);
    let crls = tmp.path().join("crls.pem");
    let served = served_crl(port, &old_ca);
    assert_eq!(
        String::from_utf8_lossy(&served).matches("BEGIN X509 CRL").count(),
        2,
        "one CRL per key"
    );
    std::fs::write(&crls, &served).unwrap();
    let bundle = tmp.path().join("bundle.pem");
    let both = [std::fs::read(&old_ca).unwrap(), std::fs::read(&next_ca).unwrap()].concat();
    std::fs::write(&bundle, both).unwrap();
    for cert in [&a_cert, &b_cert] {
        let err = crl_check(&bundle, &crls, cert).unwrap_err();
        assert!(err.contains("certificate revoked"), "{err}");
    }
    drop(server);

    let finished = ok(&["rollover", "finish"]);
    assert!(finished.contains("labelled 'puppet-ca'"), "{finished}");
    let server = run();
    assert_verifies(&next_ca, &data.join("server/cert.pem"));
    let c_cert = bootstrap(port, &tmp.path().join("c"), "token-roll-c.example.test", &server);
    assert_verifies(&next_ca, &c_cert);
    drop(server);
    assert!(ok(&["audit", "verify"]).contains("intact"));
    // No CA key anywhere in the data directory, old or new.
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.starts_with(data.join("server")) && !path.starts_with(data.join("admin")) {
                let body = std::fs::read(&path).unwrap();
                assert!(
                    !String::from_utf8_lossy(&body).contains("PRIVATE KEY"),
                    "a key in {}",
                    path.display()
                );
            }
        }
    }
}
