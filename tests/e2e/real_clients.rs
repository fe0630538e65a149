//! The real clients: Debian's puppet-agent 7.23 (`puppet ssl bootstrap`) and the real `puppetserver ca`
//! CLI (ruby-puppetserver-ca-cli), against the server in process. They never skip: scripts/test installs
//! them, and a missing one fails here with a message.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{assert_verifies, openssl};
use crate::server::TestServer;

pub fn require(cmd: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .output()
        .map(|o| o.status.success());
    assert!(found.unwrap_or(false), "`{cmd}` is missing: scripts/test installs it (Debian packages puppet-agent, ruby-puppetserver-ca-cli)");
}

/// Settings that isolate a puppet run in `dir` and point it at the test server.
pub fn agent_args(s: &TestServer, dir: &Path, certname: &str) -> Vec<String> {
    agent_args_at(s.addr.port(), dir, certname)
}

/// The agent's arguments for a CA on `localhost:port` (a server, or a balancer in front of several).
pub fn agent_args_at(port: u16, dir: &Path, certname: &str) -> Vec<String> {
    let d = |sub: &str| dir.join(sub).display().to_string();
    let port = port.to_string();
    [
        "--color",
        "false",
        "--confdir",
        &d("conf"),
        "--vardir",
        &d("var"),
        "--ssldir",
        &d("ssl"),
        "--rundir",
        &d("run"),
        "--logdir",
        &d("log"),
        "--codedir",
        &d("code"),
        "--publicdir",
        &d("public"),
        "--certname",
        certname,
        "--server",
        "localhost",
        "--ca_server",
        "localhost",
        "--ca_port",
        &port,
        "--keylength",
        "2048",
        "--http_connect_timeout",
        "5",
        "--http_read_timeout",
        "20",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect()
}

/// `puppet ssl <action>` fully isolated in `dir`, against the test server.
pub fn puppet_ssl(action: &str, s: &TestServer, dir: &Path, certname: &str, extra: &[&str]) -> Command {
    require("puppet");
    let mut c = Command::new("puppet");
    c.args(["ssl", action])
        .args(agent_args(s, dir, certname))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The agent asks once and is left waiting; the admin signs; the agent asks again and completes.
pub fn bootstrap_until_signed(s: &TestServer, dir: &Path, name: &str) {
    let out = bootstrap(s, dir, name, &["--waitforcert", "0"]).output().unwrap();
    assert!(!out.status.success(), "not signed yet: {}", text(&out));
    s.ca.ca(&["sign", name]).ok();
    let out = bootstrap(s, dir, name, &["--waitforcert", "0"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

pub fn bootstrap(s: &TestServer, dir: &Path, certname: &str, extra: &[&str]) -> Command {
    puppet_ssl("bootstrap", s, dir, certname, extra)
}

pub fn text(o: &Output) -> String {
    format!(
        "rc={:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn wait_for_request(s: &TestServer, certname: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending =
            s.ca.with_store(async |st| st.request(certname).await.unwrap().is_some());
        if pending {
            return;
        }
        assert!(Instant::now() < deadline, "the agent never submitted its CSR");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn puppet_agent_bootstraps_after_ca_sign() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let name = "agent1.example.test";
    let started = Instant::now();
    let child = bootstrap(
        &s,
        dir.path(),
        name,
        &["--waitforcert", "1", "--maxwaitforcert", "60"],
    )
    .spawn()
    .unwrap();
    wait_for_request(&s, name);
    let listed = s.ca.ca(&["list"]).ok().stdout;
    assert!(listed.contains(name), "{listed}");
    s.ca.ca(&["sign", name]).ok();
    let signed_at = Instant::now();
    let out = child.wait_with_output().unwrap();
    let total = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Completed SSL initialization"), "{}", text(&out));
    println!(
        "puppet ssl bootstrap: {:.2} s in all, {:.2} s after signing",
        total.as_secs_f64(),
        signed_at.elapsed().as_secs_f64()
    );
    // A Ruby client stalled by a late TLS 1.3 session ticket waits 30 s per session; this run must not.
    assert!(
        signed_at.elapsed() < Duration::from_secs(20),
        "the agent stalled: {:?}",
        signed_at.elapsed()
    );

    let ssl = dir.path().join("ssl");
    let cert = ssl.join(format!("certs/{name}.pem"));
    assert_verifies(&s.ca.ca_cert(), &cert);
    assert_eq!(
        std::fs::read_to_string(ssl.join("certs/ca.pem")).unwrap(),
        std::fs::read_to_string(s.ca.ca_cert()).unwrap()
    );
    let crl: PathBuf = ssl.join("crl.pem");
    let (ok, t) = openssl(&[
        "crl",
        "-in",
        crl.to_str().unwrap(),
        "-noout",
        "-CAfile",
        s.ca.ca_cert().to_str().unwrap(),
        "-verify",
    ]);
    assert!(ok && t.contains("verify OK"), "{t}");
    // The agent itself verifies what it holds.
    let out = puppet_ssl("verify", &s, dir.path(), name, &[]).output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified client certificate"),
        "{}",
        text(&out)
    );
}

#[test]
fn puppet_agent_gives_up_while_unsigned_and_resubmits_harmlessly() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let name = "agent2.example.test";
    let out = bootstrap(&s, dir.path(), name, &["--waitforcert", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("Couldn't fetch certificate from CA server"),
        "{}",
        text(&out)
    );
    // Second run: the server answers the re-submitted CSR with 400 (already requested) and the agent waits on.
    let out = bootstrap(&s, dir.path(), name, &["--waitforcert", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("Failed to submit the CSR"),
        "{}",
        text(&out)
    );
    s.ca.ca(&["sign", name]).ok();
    let out = bootstrap(&s, dir.path(), name, &["--waitforcert", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// The real `puppetserver ca` CLI, configured as §7 describes, with our admin certificate as hostcert.
pub struct RealCli {
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl RealCli {
    pub fn new(s: &TestServer) -> RealCli {
        Self::at(s, s.addr.port())
    }

    /// The CLI with `s`'s admin certificate, talking to `localhost:port` (`s`, or a balancer).
    pub fn at(s: &TestServer, port: u16) -> RealCli {
        require("ruby");
        let dir = tempfile::tempdir().unwrap();
        let crl = dir.path().join("crl.pem");
        std::fs::write(&crl, s.ca.ca(&["crl"]).ok().stdout).unwrap();
        let data = s.data();
        let conf = dir.path().join("puppet.conf");
        let text = format!(
            "[main]\ncertname = ca-admin\nssldir = {ssl}\nca_server = localhost\nca_port = {port}\nhostcert = {cert}\nhostprivkey = {key}\nlocalcacert = {ca}\nhostcrl = {crl}\nkeylength = 2048\n",
            ssl = dir.path().join("ssl").display(),
            port = port,
            cert = data.join("admin/cert.pem").display(),
            key = data.join("admin/key.pem").display(),
            ca = data.join("ca_crt.pem").display(),
            crl = crl.display(),
        );
        std::fs::write(&conf, text).unwrap();
        RealCli { conf, _dir: dir }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new("ruby");
        c.args([
            "-e",
            "require 'puppetserver/ca/cli'; exit Puppetserver::Ca::Cli.run(ARGV)",
            "--",
        ]);
        c.args(args).arg("--config").arg(&self.conf);
        let out = c.output().expect("ruby");
        let t = text(&out);
        assert!(
            !t.contains("cannot load such file"),
            "ruby-puppetserver-ca-cli is missing: {t}"
        );
        out
    }

    #[track_caller]
    pub fn ok(&self, args: &[&str], needle: &str) -> String {
        let out = self.run(args);
        let t = text(&out);
        assert!(
            out.status.success() && t.contains(needle),
            "puppetserver ca {args:?}: {t}"
        );
        t
    }
}

#[test]
fn real_puppetserver_ca_cli_administers_us() {
    let s = TestServer::start();
    let cli = RealCli::new(&s);
    let csr = crate::harness::fixture("csr/rsa2048.pem");
    s.ca.ca(&["submit", csr.to_str().unwrap()]).ok();
    let name = "agent-rsa2048.example.test";

    let listed = cli.ok(&["list"], "Requested Certificates:");
    assert!(listed.contains(name), "{listed}");
    let json = cli.ok(&["list", "--all", "--format", "json"], "\"signed\"");
    assert!(json.contains("ca-admin"), "{json}");
    cli.ok(
        &["sign", "--certname", name],
        &format!("Successfully signed certificate request for {name}"),
    );
    let all = cli.ok(&["list", "--all"], "Signed Certificates:");
    assert!(all.contains(name), "{all}");
    cli.ok(
        &["revoke", "--certname", name],
        &format!("Certificate for {name} has been revoked"),
    );
    let all = cli.ok(&["list", "--all"], "Revoked Certificates:");
    assert!(all.contains(name), "{all}");
    cli.ok(
        &["clean", "--certname", name],
        &format!("Cleaned files related to {name}"),
    );
    assert!(!cli.ok(&["list", "--all"], "Signed Certificates:").contains(name));

    let gen = cli.ok(
        &["generate", "--certname", "gen1.example.test"],
        "Successfully saved certificate for gen1.example.test",
    );
    assert!(
        gen.contains("Successfully signed certificate request for gen1.example.test"),
        "{gen}"
    );
    assert!(s
        .ca
        .ca(&["list", "--all"])
        .ok()
        .stdout
        .contains("gen1.example.test"));
    // Alt names need the admin's explicit permission: the CLI's per-certificate signing has no flag for it.
    let refused = cli.run(&[
        "generate",
        "--certname",
        "gen2.example.test",
        "--subject-alt-names",
        "gen2alt.example.test",
    ]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("DNS:gen2alt.example.test"),
        "{}",
        text(&refused)
    );
    s.ca.ca(&["sign", "--allow-dns-alt-names", "gen2.example.test"])
        .ok();

    let missing = cli.run(&["sign", "--certname", "ghost.example.test"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(text(&missing).contains("Could not find certificate request for ghost.example.test"));
}

#[test]
fn puppet_agent_accepts_an_ec_server_certificate_from_an_rsa_ca() {
    let ca = crate::harness::TestCa::setup(&[
        "--key-type",
        "rsa-2048",
        "--server-key-type",
        "ec-p256",
        "--dns-alt-names",
        "localhost,IP:127.0.0.1",
    ]);
    let (_, server) = openssl(&[
        "x509",
        "-in",
        ca.data.join("server/cert.pem").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        server.contains("id-ecPublicKey") && server.contains("sha256WithRSAEncryption"),
        "{server}"
    );
    let s = TestServer::launch(ca, "");
    let dir = tempfile::tempdir().unwrap();
    let name = "agent-ec-server.example.test";
    bootstrap_until_signed(&s, dir.path(), name);
}
