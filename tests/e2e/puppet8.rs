//! Debian 13's real clients, puppet-agent 8.10 and ruby-puppetserver-ca-cli 2.7, against the server in
//! process. They run in the Debian 13 (trixie) root that `scripts/trixie-root` builds under `target/`
//! (scripts/test runs it first), as `chroot ROOT puppet ...`: the chroot shares the loopback network, so
//! they reach the test server on 127.0.0.1 as `localhost` (a name in its certificate). Each test keeps
//! the clients' files in its own directory inside the root. A missing root fails, never skips.
//!
//! Puppet 7.23 and the 2.4 CLI (Debian 12, on the host) are in `real_clients.rs`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use x509_parser::num_bigint::BigUint;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::harness::{assert_crl_verifies, assert_verifies, fixture};
use crate::real_clients::{text, wait_for_request};
use crate::server::{As, TestServer};

/// The stamp `scripts/trixie-root` writes last: a root without it is incomplete.
const STAMP: &str = ".ca-trixie-root";

/// The trixie root: `$CA_TRIXIE_ROOT` (relative to the workspace), else `target/trixie-root`. Panics,
/// naming the script that builds it, when it is missing or incomplete.
pub fn trixie_root() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = match std::env::var_os("CA_TRIXIE_ROOT") {
        Some(r) => workspace.join(r),
        None => workspace.join("target/trixie-root"),
    };
    assert!(
        root.join(STAMP).is_file(),
        "the Debian 13 root with puppet-agent 8.10 and ruby-puppetserver-ca-cli 2.7 is missing or \
         incomplete at {}: build it with scripts/trixie-root (scripts/test runs it)",
        root.display()
    );
    static HOSTS: Once = Once::new();
    HOSTS.call_once(|| {
        // `localhost` resolves inside the root as it does here.
        let hosts = std::fs::read("/etc/hosts").expect("/etc/hosts");
        let inner = root.join("etc/hosts");
        if std::fs::read(&inner).ok().as_deref() != Some(hosts.as_slice()) {
            let tmp = root.join("etc/hosts.ca-e2e");
            std::fs::write(&tmp, &hosts).expect("write hosts");
            std::fs::rename(&tmp, &inner).expect("install hosts");
        }
    });
    root
}

/// `chroot ROOT program args...` with a clean environment.
fn chroot(root: &Path, program: &str) -> Command {
    let mut c = Command::new("chroot");
    c.arg(root)
        .arg(program)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// A directory of one test inside the root (removed at the end), and its path as the chroot sees it.
struct Place {
    root: PathBuf,
    dir: tempfile::TempDir,
    inner: PathBuf,
}

impl Place {
    fn new() -> Place {
        let root = trixie_root();
        let dir = tempfile::Builder::new()
            .prefix("ca-e2e-")
            .tempdir_in(root.join("tmp"))
            .expect("a directory inside the root");
        let inner = Path::new("/").join(dir.path().strip_prefix(&root).expect("inside the root"));
        Place { root, dir, inner }
    }

    /// `rel` as this process sees it.
    fn host(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `rel` as the chroot sees it.
    fn inner(&self, rel: &str) -> String {
        self.inner.join(rel).display().to_string()
    }
}

/// A Puppet 8.10 agent with its own confdir, ssldir, ... inside the root, pointed at a test server.
struct Agent {
    place: Place,
    certname: String,
    port: u16,
}

impl Agent {
    fn new(s: &TestServer, certname: &str) -> Agent {
        Agent {
            place: Place::new(),
            certname: certname.to_string(),
            port: s.addr.port(),
        }
    }

    /// Isolation settings and identity, with no server setting.
    fn base_args(&self) -> Vec<String> {
        let p = &self.place;
        let mut args: Vec<String> = ["--color", "false", "--verbose"]
            .iter()
            .map(|a| a.to_string())
            .collect();
        for (flag, sub) in [
            ("--confdir", "conf"),
            ("--vardir", "var"),
            ("--ssldir", "ssl"),
            ("--rundir", "run"),
            ("--logdir", "log"),
            ("--codedir", "code"),
            ("--publicdir", "public"),
        ] {
            args.push(flag.into());
            args.push(p.inner(sub));
        }
        for a in [
            "--certname",
            &self.certname,
            "--keylength",
            "2048",
            "--http_connect_timeout",
            "5",
            "--http_read_timeout",
            "20",
        ] {
            args.push(a.into());
        }
        args
    }

    /// `--server`, `--ca_server` and `--ca_port` naming the test server.
    fn server_args(&self) -> Vec<String> {
        let port = self.port.to_string();
        [
            "--server",
            "localhost",
            "--ca_server",
            "localhost",
            "--ca_port",
            &port,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    }

    /// `puppet ssl <action>` against the test server.
    fn ssl(&self, action: &str, extra: &[&str]) -> Command {
        let mut c = chroot(&self.place.root, "puppet");
        c.args(["ssl", action])
            .args(self.base_args())
            .args(self.server_args())
            .args(extra);
        c
    }

    fn run(&self, action: &str, extra: &[&str]) -> Output {
        self.ssl(action, extra).output().expect("chroot puppet")
    }

    #[track_caller]
    fn ok(&self, action: &str, extra: &[&str]) -> String {
        let out = self.run(action, extra);
        assert!(
            out.status.success(),
            "puppet ssl {action} {extra:?}: {}",
            text(&out)
        );
        text(&out)
    }

    fn ssl_file(&self, rel: &str) -> PathBuf {
        self.place.host(&format!("ssl/{rel}"))
    }

    fn cert(&self) -> PathBuf {
        self.ssl_file(&format!("certs/{}.pem", self.certname))
    }

    fn key(&self) -> PathBuf {
        self.ssl_file(&format!("private_keys/{}.pem", self.certname))
    }

    fn ca_cert(&self) -> PathBuf {
        self.ssl_file("certs/ca.pem")
    }

    fn crl(&self) -> PathBuf {
        self.ssl_file("crl.pem")
    }
}

/// A child that is killed when the test ends early; its output goes to files, never the runner's.
struct Waiting {
    child: Option<Child>,
    out: PathBuf,
    err: PathBuf,
}

impl Waiting {
    fn spawn(mut c: Command, dir: &Path) -> Waiting {
        let (out, err) = (dir.join("stdout"), dir.join("stderr"));
        c.stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        Waiting {
            child: Some(c.spawn().expect("chroot puppet")),
            out,
            err,
        }
    }

    /// Waits for the exit (at most `limit`); its status and combined output.
    fn wait(mut self, limit: Duration) -> (bool, String) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the agent did not finish within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let out = format!(
            "rc={:?}\nstdout:\n{}\nstderr:\n{}",
            status.code(),
            std::fs::read_to_string(&self.out).unwrap_or_default(),
            std::fs::read_to_string(&self.err).unwrap_or_default()
        );
        (status.success(), out)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Serial, validity in days (notAfter - notBefore) and SubjectPublicKeyInfo of a PEM certificate file.
fn cert_facts(path: &Path) -> (BigUint, i64, Vec<u8>) {
    let der = pem::parse(std::fs::read(path).unwrap()).unwrap().into_contents();
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    let v = c.validity();
    let days = (v.not_after.to_datetime() - v.not_before.to_datetime()).whole_days();
    (c.serial.clone(), days, c.public_key().raw.to_vec())
}

/// The serials a PEM CRL file (or bundle) lists.
fn crl_serials(path: &Path) -> Vec<BigUint> {
    let mut serials = Vec::new();
    for block in pem::parse_many(std::fs::read(path).unwrap()).unwrap() {
        let (_, crl) = CertificateRevocationList::from_der(block.contents()).unwrap();
        serials.extend(
            crl.iter_revoked_certificates()
                .map(|r| r.user_certificate.clone()),
        );
    }
    serials
}

/// Requests the server answered on one route (all statuses), from its /metrics.
fn answered(s: &TestServer, route: &str) -> u64 {
    let prefix = format!("ca_http_requests_total{{route=\"{route}\",");
    s.get(&As::Anonymous, "/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with(&prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// The certificate the server holds for `name`, as a file.
fn server_cert(s: &TestServer, name: &str) -> PathBuf {
    s.ca.cert_file(name)
}

/// Autosign on; renewal left at its default (on: the Puppet 8 agents' renewal tests rely on it).
fn autosigning() -> TestServer {
    TestServer::start_with("[ca]\nautosign = true\n")
}

#[track_caller]
fn assert_has(out: &str, needle: &str) {
    assert!(out.contains(needle), "{needle:?} missing in:\n{out}");
}

/// `puppet ssl bootstrap --waitforcert`: the agent submits and waits; the admin signs; the agent takes its
/// certificate, CA certificate and CRL, and `puppet ssl verify` and `show` accept them.
#[test]
fn puppet8_bootstrap_waits_for_the_admin_to_sign() {
    let s = TestServer::start();
    let name = "p8-wait.example.test";
    let agent = Agent::new(&s, name);
    let waiting = Waiting::spawn(
        agent.ssl("bootstrap", &["--waitforcert", "1", "--maxwaitforcert", "60"]),
        agent.place.dir.path(),
    );
    wait_for_request(&s, name);
    assert_has(&s.ca.ca(&["list"]).ok().stdout, name);
    s.ca.ca(&["sign", name]).ok();
    let signed_at = Instant::now();
    let (ok, out) = waiting.wait(Duration::from_secs(60));
    assert!(ok, "{out}");
    assert_has(&out, "Completed SSL initialization");
    assert!(
        signed_at.elapsed() < Duration::from_secs(20),
        "the agent stalled after signing: {:?}\n{out}",
        signed_at.elapsed()
    );

    assert_verifies(&s.ca.ca_cert(), &agent.cert());
    assert_eq!(
        std::fs::read_to_string(agent.ca_cert()).unwrap(),
        std::fs::read_to_string(s.ca.ca_cert()).unwrap()
    );
    assert_crl_verifies(&s.ca.ca_cert(), &agent.crl());
    assert_eq!(
        std::fs::read(agent.cert()).unwrap(),
        std::fs::read(server_cert(&s, name)).unwrap(),
        "the agent holds the certificate the server issued"
    );
    assert_has(&agent.ok("verify", &[]), "Verified client certificate");
    let (serial, _, _) = cert_facts(&agent.cert());
    let shown = agent.ok("show", &[]);
    assert_has(&shown, &format!("CN={name}"));
    assert_has(&shown, &format!("Serial Number: {serial} (0x{serial:x})"));
}

/// With autosign the first `puppet ssl bootstrap` completes; the agent's CSR says it can renew
/// (`pp_auth_auto_renew`), so its certificate has `auto-renewal-cert-ttl` (90 days, plus the day of
/// backdating). A run whose `hostcert_renewal_interval` reaches into that validity renews through
/// `POST /certificate_renewal`: same key, new serial, the server's current certificate; the default
/// interval (30 days) does not.
#[test]
fn puppet8_autosigned_agent_renews_its_certificate() {
    let s = autosigning();
    let name = "p8-renew.example.test";
    let agent = Agent::new(&s, name);
    let out = agent.ok("bootstrap", &["--waitforcert", "0"]);
    assert_has(&out, "Completed SSL initialization");
    assert_verifies(&s.ca.ca_cert(), &agent.cert());
    let (first, days, key) = cert_facts(&agent.cert());
    assert_eq!(days, 91, "auto-renewal-cert-ttl (90d) plus the one-day backdate");

    let before = answered(&s, "/puppet-ca/v1/certificate_renewal");
    let out = agent.ok("bootstrap", &[]);
    assert!(!out.contains("Renewed client certificate"), "{out}");
    assert_eq!(
        cert_facts(&agent.cert()).0,
        first,
        "30 days before expiry is not yet"
    );
    assert_eq!(answered(&s, "/puppet-ca/v1/certificate_renewal"), before);

    let out = agent.ok("bootstrap", &["--hostcert_renewal_interval", "100d"]);
    assert_has(&out, "Renewed client certificate");
    assert_eq!(answered(&s, "/puppet-ca/v1/certificate_renewal"), before + 1);
    let (renewed, days, renewed_key) = cert_facts(&agent.cert());
    assert_ne!(renewed, first, "a new serial");
    assert_eq!(days, 91);
    assert_eq!(renewed_key, key, "the same key");
    assert_verifies(&s.ca.ca_cert(), &agent.cert());
    assert_eq!(
        std::fs::read(agent.cert()).unwrap(),
        std::fs::read(server_cert(&s, name)).unwrap(),
        "the renewed certificate is the server's current one"
    );
    // Audited as issued to the agent itself (its certificate authenticated the renewal).
    let audit = s.ca.audit(name);
    let serial: i64 = renewed.to_string().parse().unwrap();
    assert!(
        audit.iter().any(|r| r.action == "sign"
            && r.outcome == "ok"
            && r.actor == format!("cert:{name}")
            && r.serial == Some(serial)),
        "{audit:?}"
    );
    // The agent works on with the renewed certificate.
    assert_has(&agent.ok("verify", &[]), "Verified client certificate");
}

/// The single steps: `submit_request` leaves a pending request, `download_cert` fails until the admin
/// signs and then saves the certificate, `verify` accepts it, `clean` removes the agent's key and
/// certificate (and with `--localca` its CA certificate and CRL).
#[test]
fn puppet8_ssl_submit_download_verify_clean() {
    let s = TestServer::start();
    let name = "p8-steps.example.test";
    let agent = Agent::new(&s, name);
    let out = agent.ok("submit_request", &[]);
    assert_has(&out, &format!("Submitted certificate request for '{name}'"));
    assert!(s
        .ca
        .with_store(async |st| st.request(name).await.unwrap().is_some()));
    assert!(agent.key().is_file());
    assert!(!agent.cert().exists());

    let unsigned = agent.run("download_cert", &[]);
    assert!(!unsigned.status.success(), "{}", text(&unsigned));
    assert_has(
        &text(&unsigned),
        &format!("The certificate for '{name}' has not yet been signed"),
    );
    let unverified = agent.run("verify", &[]);
    assert!(!unverified.status.success(), "{}", text(&unverified));

    s.ca.ca(&["sign", name]).ok();
    let out = agent.ok("download_cert", &[]);
    assert_has(&out, &format!("Downloaded certificate '{name}'"));
    assert_eq!(
        std::fs::read(agent.cert()).unwrap(),
        std::fs::read(server_cert(&s, name)).unwrap()
    );
    assert_has(&agent.ok("verify", &[]), "Verified client certificate");

    let out = agent.ok("clean", &[]);
    assert_has(&out, "Removed private key");
    assert!(!agent.key().exists() && !agent.cert().exists(), "{out}");
    assert!(
        agent.ca_cert().exists() && agent.crl().exists(),
        "kept without --localca"
    );
    let out = agent.ok("clean", &["--localca"]);
    assert!(!agent.ca_cert().exists() && !agent.crl().exists(), "{out}");
    // Cleaned on the agent only: the server still holds the certificate.
    assert!(s.ca.holds(name));
}

/// CRL and CA certificate refresh. After a revocation the agent's CRL stays as it is while
/// `crl_refresh_interval` has not passed; once it has, the agent fetches the new CRL, which lists the
/// revoked serial, without asking for the CA certificate. With `ca_refresh_interval` passed it asks for
/// the CA certificate (with `If-Modified-Since`: unchanged, 304) and keeps a CA file equal to the
/// server's.
#[test]
fn puppet8_refreshes_its_crl_and_ca_certificate() {
    let s = autosigning();
    let agent = Agent::new(&s, "p8-refresh.example.test");
    agent.ok("bootstrap", &["--waitforcert", "0"]);
    let victim = |n: &str| {
        let a = Agent::new(&s, n);
        a.ok("bootstrap", &["--waitforcert", "0"]);
        let serial = cert_facts(&a.cert()).0;
        s.ca.ca(&["revoke", n]).ok();
        serial
    };
    let first = victim("p8-revoked-1.example.test");

    // From here on only `agent` talks to the server until the next victim.
    let (certs, crls) = (
        answered(&s, "/puppet-ca/v1/certificate/{subject}"),
        answered(&s, "/puppet-ca/v1/certificate_revocation_list/{any}"),
    );
    let out = agent.ok("bootstrap", &[]);
    assert!(!out.contains("Refreshing CRL"), "{out}");
    assert!(!crl_serials(&agent.crl()).contains(&first), "not refreshed yet");
    assert_eq!(
        answered(&s, "/puppet-ca/v1/certificate_revocation_list/{any}"),
        crls
    );

    // Puppet refreshes when now > last update + interval, in whole seconds.
    std::thread::sleep(Duration::from_millis(2200));
    let out = agent.ok("bootstrap", &["--crl_refresh_interval", "1s"]);
    assert_has(&out, "Refreshing CRL");
    assert_has(&out, "Refreshed CRL");
    assert!(crl_serials(&agent.crl()).contains(&first), "{out}");
    assert_crl_verifies(&s.ca.ca_cert(), &agent.crl());
    assert_eq!(
        answered(&s, "/puppet-ca/v1/certificate_revocation_list/{any}"),
        crls + 1
    );
    assert_eq!(
        answered(&s, "/puppet-ca/v1/certificate/{subject}"),
        certs,
        "no CA certificate request"
    );

    let second = victim("p8-revoked-2.example.test");
    let certs = answered(&s, "/puppet-ca/v1/certificate/{subject}");
    std::thread::sleep(Duration::from_millis(2200));
    let out = agent.ok("bootstrap", &["--ca_refresh_interval", "1s"]);
    assert_has(&out, "Refreshing CA certificate");
    assert!(!out.contains("Failed to refresh CA certificate"), "{out}");
    assert_eq!(
        answered(&s, "/puppet-ca/v1/certificate/{subject}"),
        certs + 1,
        "one GET of the CA certificate"
    );
    assert_eq!(
        std::fs::read_to_string(agent.ca_cert()).unwrap(),
        std::fs::read_to_string(s.ca.ca_cert()).unwrap()
    );
    assert_verifies(&agent.ca_cert(), &agent.cert());
    // The CA certificate did not change: 304, as from puppetserver >= 7.12, and the agent keeps its
    // file (only a new CA certificate would force a CRL refresh).
    assert_has(&out, "CA certificate is unmodified");
    assert!(!crl_serials(&agent.crl()).contains(&second), "{out}");
    std::thread::sleep(Duration::from_millis(1100));
    agent.ok("bootstrap", &["--crl_refresh_interval", "1s"]);
    assert!(crl_serials(&agent.crl()).contains(&second));
    assert_has(&agent.ok("verify", &[]), "Verified client certificate");
}

/// `--key_type ec`: the agent makes a P-256 key, its CSR is signed, and the certificate carries that key.
#[test]
fn puppet8_ec_key_agent() {
    let s = autosigning();
    let name = "p8-ec.example.test";
    let agent = Agent::new(&s, name);
    let out = agent.ok("bootstrap", &["--waitforcert", "0", "--key_type", "ec"]);
    assert_has(&out, "Creating a new EC SSL key");
    let key = std::fs::read_to_string(agent.key()).unwrap();
    assert!(key.contains("BEGIN EC PRIVATE KEY"), "{key}");
    assert_verifies(&s.ca.ca_cert(), &agent.cert());
    let der = pem::parse(std::fs::read(agent.cert()).unwrap())
        .unwrap()
        .into_contents();
    let (_, c) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        c.public_key().algorithm.algorithm.to_id_string(),
        "1.2.840.10045.2.1",
        "id-ecPublicKey"
    );
    assert_has(&agent.ok("verify", &[]), "Verified client certificate");
}

/// An agent configured with only `server_list` (no `server`, `ca_server`, `ca_port`) first asks each
/// server for `/status/v1/simple/server` (then `/status/v1/simple/master`) and uses the first that
/// answers; the CA is that server.
#[test]
fn puppet8_agent_with_only_server_list() {
    let s = autosigning();
    let name = "p8-list.example.test";
    let agent = Agent::new(&s, name);
    let mut c = chroot(&agent.place.root, "puppet");
    c.args(["ssl", "bootstrap", "--waitforcert", "0"])
        .args(agent.base_args())
        .args(["--server_list", &format!("localhost:{}", s.addr.port())]);
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_has(&text(&out), "Completed SSL initialization");
    assert_verifies(&s.ca.ca_cert(), &agent.cert());
}

/// The 2.7 `puppetserver ca` CLI in the root, with the server's admin certificate (copied in).
struct Cli27 {
    place: Place,
}

impl Cli27 {
    fn new(s: &TestServer) -> Cli27 {
        let place = Place::new();
        let data = s.data();
        std::fs::create_dir_all(place.host("admin")).unwrap();
        for f in ["admin/cert.pem", "admin/key.pem", "ca_crt.pem"] {
            std::fs::copy(data.join(f), place.host(f)).unwrap();
        }
        std::fs::write(place.host("crl.pem"), s.ca.ca(&["crl"]).ok().stdout).unwrap();
        let conf = format!(
            "[main]\ncertname = ca-admin\nssldir = {ssl}\nca_server = localhost\nca_port = {port}\n\
             hostcert = {cert}\nhostprivkey = {key}\nlocalcacert = {ca}\nhostcrl = {crl}\nkeylength = 2048\n",
            ssl = place.inner("ssl"),
            port = s.addr.port(),
            cert = place.inner("admin/cert.pem"),
            key = place.inner("admin/key.pem"),
            ca = place.inner("ca_crt.pem"),
            crl = place.inner("crl.pem"),
        );
        std::fs::write(place.host("puppet.conf"), conf).unwrap();
        Cli27 { place }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = chroot(&self.place.root, "ruby");
        c.args([
            "-e",
            "require 'puppetserver/ca/cli'; exit Puppetserver::Ca::Cli.run(ARGV)",
            "--",
        ])
        .args(args)
        .args(["--config", &self.place.inner("puppet.conf")]);
        let out = c.output().expect("chroot ruby");
        assert!(
            !text(&out).contains("cannot load such file"),
            "ruby-puppetserver-ca-cli is missing in the root: {}",
            text(&out)
        );
        out
    }

    #[track_caller]
    fn ok(&self, args: &[&str], needle: &str) -> String {
        let out = self.run(args);
        let t = text(&out);
        assert!(
            out.status.success() && t.contains(needle),
            "puppetserver ca (2.7) {args:?}: {t}"
        );
        t
    }
}

#[test]
fn puppetserver_ca_cli_2_7_administers_us() {
    let s = TestServer::start();
    let cli = Cli27::new(&s);
    let version = cli.run(&["--version"]);
    assert_has(&text(&version), "2.7.0");
    let names = [
        "agent-rsa2048.example.test",
        "agent-ec.example.test",
        "agent-pp.example.test",
    ];
    for f in ["rsa2048.pem", "ec-p256.pem", "pp-extensions.pem"] {
        s.ca.ca(&["submit", fixture(&format!("csr/{f}")).to_str().unwrap()])
            .ok();
    }

    let listed = cli.ok(&["list"], "Requested Certificates:");
    for n in names {
        assert_has(&listed, n);
    }
    let json = cli.run(&["list", "--all", "--format", "json"]);
    assert!(json.status.success(), "{}", text(&json));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON on stdout");
    let named = |state: &str| -> Vec<String> {
        v[state]
            .as_array()
            .unwrap_or_else(|| panic!("{state} in {v}"))
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut requested = named("requested");
    requested.sort();
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.sort();
    assert_eq!(requested, expected);
    assert!(named("signed").contains(&"ca-admin".to_string()), "{v}");
    let some = cli.run(&["list", "--certname", &format!("{},ghost.example.test", names[0])]);
    assert_eq!(some.status.code(), Some(1), "a missing name: {}", text(&some));
    assert_has(&text(&some), "Missing Certificates:");
    assert_has(&text(&some), names[0]);

    // Several names: one POST /puppet-ca/v1/sign (2.7 uses the bulk endpoints of a server that says
    // it is 8.4.0 or later), no per-name PUT certificate_status.
    const SIGN: &str = "/puppet-ca/v1/sign";
    const SIGN_ALL: &str = "/puppet-ca/v1/sign/all";
    const STATUS: &str = "/puppet-ca/v1/certificate_status/{subject}";
    let (sign, sign_all, status) = (answered(&s, SIGN), answered(&s, SIGN_ALL), answered(&s, STATUS));
    let out = cli.ok(
        &["sign", "--certname", &names.join(",")],
        "Successfully signed the following certificate requests:",
    );
    for n in names {
        assert_has(&out, n);
        let signed = s.ca.audit(n);
        assert!(
            signed
                .iter()
                .any(|r| r.action == "sign" && r.outcome == "ok" && r.actor == "cert:ca-admin"),
            "{signed:?}"
        );
        assert_verifies(&s.ca.ca_cert(), &server_cert(&s, n));
    }
    assert_eq!(answered(&s, SIGN), sign + 1, "one bulk request");
    assert_eq!(answered(&s, STATUS), status, "no per-name signing");

    let missing = cli.run(&["sign", "--certname", "ghost.example.test"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert_has(
        &text(&missing),
        "No certificate request found for the following nodes when attempting to sign",
    );
    // --all: POST /sign/all.
    s.ca.ca(&["submit", fixture("csr/challenge.pem").to_str().unwrap()])
        .ok();
    let out = cli.ok(&["sign", "--all"], "agent-challenge.example.test");
    assert_has(&out, "Successfully signed the following certificate requests:");
    assert_eq!(
        answered(&s, SIGN),
        sign + 2,
        "the bulk request for ghost.example.test"
    );
    assert_eq!(answered(&s, SIGN_ALL), sign_all + 1);
    let none = cli.run(&["sign", "--all"]);
    assert_eq!(none.status.code(), Some(24), "nothing to sign: {}", text(&none));

    let revoked = names[0];
    let serial = cert_facts(&server_cert(&s, revoked)).0;
    cli.ok(
        &["revoke", "--certname", revoked],
        &format!("Certificate for {revoked} has been revoked"),
    );
    let crl = s.ca.crl_file();
    assert!(crl_serials(&crl).contains(&serial));
    assert_has(&cli.ok(&["list", "--all"], "Revoked Certificates:"), revoked);
    cli.ok(
        &["clean", "--certname", names[1]],
        &format!("Cleaned files related to {}", names[1]),
    );
    assert!(!s.ca.holds(names[1]));
    assert!(!cli
        .ok(&["list", "--all"], "Signed Certificates:")
        .contains(names[1]));

    let gen = cli.ok(
        &["generate", "--certname", "gen27.example.test"],
        "Successfully saved certificate for gen27.example.test",
    );
    assert_has(
        &gen,
        "Successfully signed certificate request for gen27.example.test",
    );
    let saved = cli.place.host("ssl/certs/gen27.example.test.pem");
    assert_verifies(&s.ca.ca_cert(), &saved);
    assert_eq!(
        std::fs::read(&saved).unwrap(),
        std::fs::read(server_cert(&s, "gen27.example.test")).unwrap()
    );
}

/// `ca extend-ca`: a Puppet 8 agent picks up the new CA certificate by its own CA refresh (here
/// `--ca_refresh_interval 1s` instead of its daily default), with nothing to do on the agent.
#[test]
fn puppet8_picks_up_an_extended_ca_certificate_by_itself() {
    let s = autosigning();
    let mut agent = Agent::new(&s, "p8-extend.example.test");
    agent.ok("bootstrap", &["--waitforcert", "0"]);
    let old = std::fs::read_to_string(agent.ca_cert()).unwrap();
    // HTTP dates have whole seconds: the extension is stored in a later second than the agent's file.
    std::thread::sleep(Duration::from_millis(1100));
    let out = s.ca.ca(&["extend-ca", "--ttl", "20y"]).ok().stdout;
    assert!(out.contains("Extended"), "{out}");
    let s = s.restart("[ca]\nautosign = true\n");
    agent.port = s.addr.port();
    let out = agent.ok("bootstrap", &["--ca_refresh_interval", "1s"]);
    assert_has(&out, "Refreshed CA certificate");
    assert!(!out.contains("CA certificate is unmodified"), "{out}");
    let new = std::fs::read_to_string(agent.ca_cert()).unwrap();
    assert_ne!(new, old);
    assert_eq!(new, std::fs::read_to_string(s.ca.ca_cert()).unwrap());
    assert_verifies(&agent.ca_cert(), &agent.cert());
    assert_has(&agent.ok("verify", &[]), "Verified client certificate");
}

/// A CA key rollover seen by a Puppet 8 agent: after `start` its CA refresh brings the bundle of both
/// CA certificates; after `switch` its CRL refresh brings a CRL of each key, and it keeps verifying
/// its certificate (the old key's) and talking to the CA.
#[test]
fn puppet8_follows_a_key_rollover_by_its_own_refreshes() {
    let config = "[ca]\nautosign = true\n";
    let s = autosigning();
    let mut agent = Agent::new(&s, "p8-rollover.example.test");
    agent.ok("bootstrap", &["--waitforcert", "0"]);
    std::thread::sleep(Duration::from_millis(1100));
    s.ca.ca(&["rollover", "start", "--key-type", "ec-p256"]).ok();
    let s = s.restart(config);
    agent.port = s.addr.port();
    let out = agent.ok("bootstrap", &["--ca_refresh_interval", "1s"]);
    assert_has(&out, "Refreshed CA certificate");
    let ca = std::fs::read_to_string(agent.ca_cert()).unwrap();
    assert_eq!(ca.matches("BEGIN CERTIFICATE").count(), 2, "{ca}");
    std::thread::sleep(Duration::from_millis(1100));
    s.ca.ca(&["rollover", "switch"]).ok();
    let s = s.restart(config);
    agent.port = s.addr.port();
    std::thread::sleep(Duration::from_millis(1100));
    let out = agent.ok(
        "bootstrap",
        &["--ca_refresh_interval", "1s", "--crl_refresh_interval", "1s"],
    );
    assert_has(&out, "Refreshed CRL");
    let crl = std::fs::read_to_string(agent.crl()).unwrap();
    assert_eq!(crl.matches("BEGIN X509 CRL").count(), 2, "{crl}");
    assert_has(&agent.ok("verify", &[]), "Verified client certificate");
    // Its certificate (the old key's) renews by itself, under the new key.
    let out = agent.ok("bootstrap", &["--hostcert_renewal_interval", "100d"]);
    assert_has(&out, "Renewed client certificate");
    assert_verifies(&s.ca.data.join("rollover/next_ca_crt.pem"), &agent.cert());
    // A new agent bootstraps under the new key.
    let fresh = Agent::new(&s, "p8-rollover-new.example.test");
    fresh.ok("bootstrap", &["--waitforcert", "0"]);
    assert_verifies(&s.ca.data.join("rollover/next_ca_crt.pem"), &fresh.cert());
}
