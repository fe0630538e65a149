//! Test harness: temporary CAs, the CLI in process, openssl, and direct reads of the store.

use std::path::{Path, PathBuf};
use std::process::Command;

use ca_server::storage::{AuditRow, Store};
use tempfile::TempDir;

/// The output of one `ca` invocation.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "expected success: {self:#?}");
        self
    }
    #[track_caller]
    pub fn fails_with(self, code: i32, needle: &str) -> Run {
        assert_eq!(self.code, code, "expected exit {code}: {self:#?}");
        assert!(self.stderr.contains(needle), "stderr lacks {needle:?}: {self:#?}");
        self
    }
}

/// Runs the CLI in process.
pub fn ca<S: AsRef<str>>(args: &[S]) -> Run {
    let mut argv = vec!["ca".to_string()];
    argv.extend(args.iter().map(|a| a.as_ref().to_string()));
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = ca_cli::run(argv, &mut out, &mut err);
    Run {
        code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// A CA in a temporary directory.
pub struct TestCa {
    pub tmp: TempDir,
    pub data: PathBuf,
}

impl TestCa {
    /// `ca setup` with an EC P-256 CA (fast), certname ca.example.test.
    pub fn new() -> TestCa {
        Self::with_key("ec-p256")
    }

    pub fn with_key(key_type: &str) -> TestCa {
        Self::setup(&["--key-type", key_type])
    }

    /// EC P-256 with extra setup arguments.
    pub fn with_args(extra: &[&str]) -> TestCa {
        let mut args = vec!["--key-type", "ec-p256"];
        args.extend_from_slice(extra);
        Self::setup(&args)
    }

    pub fn setup(extra: &[&str]) -> TestCa {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("ca");
        let ca = TestCa { tmp, data };
        let mut args = vec!["setup", "--certname", "ca.example.test"];
        args.extend_from_slice(extra);
        ca.ca(&args).ok();
        ca
    }

    /// A CA set up with its state in the PostgreSQL database at `url`: an EC P-256 key, `alt_names`
    /// (`--dns-alt-names`) on its server certificate.
    pub fn setup_on_database(url: &str, alt_names: &str) -> TestCa {
        TestCa::setup(&[
            "--key-type",
            "ec-p256",
            "--dns-alt-names",
            alt_names,
            "--database-url",
            url,
        ])
    }

    /// Runs `ca --data-dir <this CA> args...`.
    pub fn ca<S: AsRef<str>>(&self, args: &[S]) -> Run {
        let mut argv = vec!["--data-dir".to_string(), self.data.display().to_string()];
        argv.extend(args.iter().map(|a| a.as_ref().to_string()));
        ca(&argv)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.data.join("ca_crt.pem")
    }

    /// The PEM of `certname`'s certificate, from `ca print`, written to a file.
    pub fn cert_file(&self, certname: &str) -> PathBuf {
        let out = self.ca(&["print", certname]).ok().stdout;
        let pem = &out[out
            .find("-----BEGIN CERTIFICATE-----")
            .expect("PEM in print output")..];
        let path = self.path(&format!("{certname}.crt.pem"));
        std::fs::write(&path, pem).expect("write cert");
        path
    }

    /// The current CRL, from `ca crl`, written to a file.
    pub fn crl_file(&self) -> PathBuf {
        let pem = self.ca(&["crl"]).ok().stdout;
        let path = self.path("crl.pem");
        std::fs::write(&path, pem).expect("write crl");
        path
    }

    /// Reads the store directly.
    pub fn with_store<T>(&self, f: impl AsyncFnOnce(&Store) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        rt.block_on(async {
            let store = Store::open(&self.data.join("ca.db"), false)
                .await
                .expect("open store");
            let out = f(&store).await;
            store.close().await;
            out
        })
    }

    pub fn audit(&self, certname: &str) -> Vec<AuditRow> {
        self.with_store(async |s| s.audit_rows(Some(certname)).await.expect("audit"))
    }

    /// Whether anything but audit rows is held for `certname`.
    pub fn holds(&self, certname: &str) -> bool {
        self.with_store(async |s| {
            s.request(certname).await.expect("request").is_some()
                || s.current_certificate(certname).await.expect("cert").is_some()
        })
    }
}

/// Runs openssl; panics with its output when it cannot start (the test command installs it).
pub fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed (scripts/test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// `openssl verify -CAfile ca cert` succeeds.
#[track_caller]
pub fn assert_verifies(ca: &Path, cert: &Path) {
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        &ca.display().to_string(),
        &cert.display().to_string(),
    ]);
    assert!(ok && text.contains(": OK"), "openssl verify failed: {text}");
}

/// `openssl crl -verify` accepts the CRL.
#[track_caller]
pub fn assert_crl_verifies(ca: &Path, crl: &Path) {
    let (ok, text) = openssl(&[
        "crl",
        "-in",
        &crl.display().to_string(),
        "-CAfile",
        &ca.display().to_string(),
        "-noout",
        "-verify",
    ]);
    assert!(
        ok && text.contains("verify OK"),
        "openssl crl -verify failed: {text}"
    );
}

/// `openssl verify -crl_check`: Ok(()) when valid, Err(output) otherwise.
pub fn crl_check(ca: &Path, crl: &Path, cert: &Path) -> Result<(), String> {
    let (ok, text) = openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        &ca.display().to_string(),
        "-CRLfile",
        &crl.display().to_string(),
        &cert.display().to_string(),
    ]);
    if ok {
        Ok(())
    } else {
        Err(text)
    }
}

/// A metric's value in a Prometheus text exposition (`/metrics`); panics when it is missing.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// A fixture path.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

/// The real `ca` binary next to this test binary (built by `cargo build --workspace` in scripts/test).
pub fn ca_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("ca");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --workspace` first (scripts/test does)",
        bin.display()
    );
    bin
}

/// The real `ca-server` binary, next to `ca`.
pub fn server_binary() -> PathBuf {
    ca_binary().with_file_name("ca-server")
}

/// A TCP port free at the time of asking.
/// The port in `listen=ADDR:PORT` of the first line of a ca-server log containing `what`.
pub fn listening_port(log: &str, what: &str) -> Option<u16> {
    let line = log.lines().find(|l| l.contains(what))?;
    let addr = line.split_whitespace().find_map(|w| w.strip_prefix("listen="))?;
    addr.rsplit(':').next()?.parse().ok()
}

/// Starts `cmd`, a server, with its log (standard error) in the file `log`, and waits until the line
/// containing `what` names its `listen=ADDR:PORT`; returns that port. A server told to listen on
/// port 0 picks its own: the port is learned from the process, never handed over. Panics when it
/// exits first or is not listening after `within`.
pub fn spawn_until_listening(
    cmd: &mut Command,
    log: &Path,
    what: &str,
    within: std::time::Duration,
) -> (std::process::Child, u16) {
    let file = std::fs::File::create(log).unwrap();
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(port) = listening_port(&text, what) {
            return (child, port);
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("exited ({status}) before listening: {text}");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("not listening: {text}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The log line of ca-server's Puppet CA API listener.
pub const API_LISTENING: &str = "serving the Puppet CA API";

/// A loopback port free when asked: only for servers that cannot pick their own (PostgreSQL, which
/// retries on another when it lost the race) and for addresses where nothing must listen. Servers
/// of ours listen on port 0 and tell theirs ([`crate::reload::Running::start_on_any_port`]).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs one SQL statement with the sqlite3 CLI (with a busy timeout: a server may hold the database);
/// its trimmed output.
pub fn sqlite(db: &Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 (scripts/test installs it)");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A CA made in process at a fixed clock (t0 = 1,900,000,000), EC P-256, CRLs valid 10 days: for CRL
/// upkeep at chosen instants. Returns the runtime, the authority, the clock, t0, its report and the
/// directory guard.
pub struct FixedClockCa {
    pub rt: tokio::runtime::Runtime,
    pub authority: ca_server::authority::Authority,
    pub clock: std::sync::Arc<ca_server::clock::FixedClock>,
    pub t0: time::OffsetDateTime,
    pub dir: ca_server::datadir::DataDir,
    pub report: ca_server::authority::SetupReport,
    _tmp: TempDir,
}

impl FixedClockCa {
    /// The relying parties' CRL lives 20 days here, so that only the agents' CRL's 10 days decide
    /// when a CRL is due.
    pub fn new(intermediate: bool) -> FixedClockCa {
        Self::with_settings(
            intermediate,
            ca_server::authority::CaSettings {
                crl_lifetime: time::Duration::days(10),
                relying_crl_lifetime: time::Duration::days(20),
                ..Default::default()
            },
        )
    }

    pub fn with_settings(intermediate: bool, settings: ca_server::authority::CaSettings) -> FixedClockCa {
        let t0 = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).expect("t0");
        let clock = std::sync::Arc::new(ca_server::clock::FixedClock::new(t0));
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = ca_server::datadir::DataDir::new(tmp.path().join("ca"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        let mut opts = ca_server::authority::SetupOptions::new("ca.example.test");
        opts.key_type = ca_server::ca::keys::KeyType::EcP256;
        opts.intermediate = intermediate;
        let (authority, report) = rt
            .block_on(ca_server::authority::setup(&dir, &opts, settings, clock.clone()))
            .expect("setup");
        FixedClockCa {
            rt,
            authority,
            clock,
            t0,
            dir,
            report,
            _tmp: tmp,
        }
    }
}

/// Percent-encodes everything but unreserved characters, as a proxy encodes `X-Client-Cert`.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The serial of the certificate in a PEM file.
pub fn serial_of_cert_file(cert_pem: &Path) -> u64 {
    use x509_parser::prelude::FromDer as _;
    let text = std::fs::read_to_string(cert_pem).expect("a certificate file");
    let der = pem::parse(text).expect("a PEM certificate").into_contents();
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der).expect("a certificate");
    cert.tbs_certificate
        .raw_serial()
        .iter()
        .fold(0u64, |acc, b| acc * 256 + u64::from(*b))
}

/// The serials our CRL lists: the first CRL of a PEM chain, as served.
pub fn crl_serials_of(pem_text: &str) -> std::collections::BTreeSet<u64> {
    let der = pem::parse(pem_text).expect("a PEM CRL").into_contents();
    use x509_parser::prelude::FromDer as _;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(&der).expect("a CRL");
    crl.iter_revoked_certificates()
        .map(|e| u64::try_from(e.user_certificate.clone()).expect("a serial of 8 bytes at most"))
        .collect()
}
