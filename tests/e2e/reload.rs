//! SIGHUP (`systemctl reload`) on the real binary: new access rules, a new autosign policy and a
//! renewed server certificate are in force for the next request and handshake, an open connection
//! stays open, and a broken configuration leaves the running one in force.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper::StatusCode;

use crate::harness::{fixture, server_binary, TestCa};
use crate::revocation::KeepAlive;
use crate::server::As;

const AUTH_V1: &str = r#"authorization: {
  version: 1
  rules: [
    { match-request: { path: "/puppet-ca/v1/certificate/", type: path, method: get }
      allow-unauthenticated: true, sort-order: 400, name: "certificates" },
    { match-request: { path: "/puppet-ca/v1/certificate_request/", type: path, method: [get, put] }
      allow-unauthenticated: true, sort-order: 400, name: "requests" },
    { match-request: { path: "/status/v1/simple", type: path, method: get }
      allow-unauthenticated: true, sort-order: 400, name: "status" },
    { match-request: { path: "/", type: path }, deny: "*", sort-order: 999, name: "deny all" }
  ]
}"#;

fn config(auth: &std::path::Path, autosign: bool) -> String {
    format!(
        "[ca]\nautosign = {autosign}\n[authorization]\nauth-conf = \"{}\"\n",
        auth.display()
    )
}

pub(crate) struct Running {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Running {
    /// The real binary on `ca`'s data directory, listening on `port`, its log in a file, in a process
    /// group of its own; `extra` arguments and `env` added.
    pub(crate) fn start(ca: &TestCa, port: u16, extra: &[&str], env: &[(&str, &std::path::Path)]) -> Running {
        let log = ca.path("server.log");
        let mut cmd = Command::new(server_binary());
        cmd.args(["--data-dir", ca.data.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .env_remove("WATCHDOG_PID")
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Running {
            child: cmd.spawn().unwrap(),
            log,
        }
    }

    /// The real binary as [`Running::start`] starts it, on a port it picks itself (`127.0.0.1:0`), and
    /// that port, read from its log once it listens (no port is handed over between processes).
    pub(crate) fn start_on_any_port(
        ca: &TestCa,
        extra: &[&str],
        env: &[(&str, &std::path::Path)],
    ) -> (Running, u16) {
        let mut server = Running::start(ca, 0, extra, env);
        let port = server.listening_port("serving the Puppet CA API");
        (server, port)
    }

    /// The port of the log line containing `what` (its `listen=ADDR:PORT`), once it is written.
    pub(crate) fn listening_port(&mut self, what: &str) -> u16 {
        let started = Instant::now();
        loop {
            let log = self.log();
            if let Some(port) = crate::harness::listening_port(&log, what) {
                return port;
            }
            assert!(self.try_wait().is_none(), "ca-server exited: {log}");
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "not listening: {log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status, once the server has exited.
    pub(crate) fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
    /// Sends SIGHUP and waits for the reload's log line (the `n`-th of `what`).
    fn hup(&self, what: &str, n: usize) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success());
        let started = Instant::now();
        while self.log().matches(what).count() < n {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no '{what}' in {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn served_serial(port: u16) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl s_client -connect 127.0.0.1:{port} -servername localhost </dev/null 2>/dev/null \
             | openssl x509 -noout -serial"
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn sighup_reloads_rules_policy_and_the_server_certificate() {
    let ca = TestCa::with_args(&["--dns-alt-names", "localhost"]);
    let etc = ca.path("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let (conf, auth) = (etc.join("ca.toml"), etc.join("auth.conf"));
    std::fs::write(&auth, AUTH_V1).unwrap();
    std::fs::write(&conf, config(&auth, false)).unwrap();
    let (server, port) = Running::start_on_any_port(&ca, &["--config", conf.to_str().unwrap()], &[]);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let cacert = ca.ca_cert();
    let mut open = KeepAlive::connect(addr, &cacert, &As::Anonymous, None);
    assert_eq!(open.get("/status/v1/simple").unwrap().0, StatusCode::OK);
    let statuses = "/puppet-ca/v1/certificate_statuses/any";
    assert_eq!(open.get(statuses).unwrap().0, StatusCode::FORBIDDEN);

    // A rule change: in force for the next request, on the connection opened before the reload.
    let opened = AUTH_V1.replace(
        r#"{ match-request: { path: "/", type: path }"#,
        r#"{ match-request: { path: "/puppet-ca/v1/certificate_statuses/", type: path, method: get }
      allow-unauthenticated: true, sort-order: 500, name: "open list" },
    { match-request: { path: "/", type: path }"#,
    );
    std::fs::write(&auth, opened).unwrap();
    server.hup("reloaded", 1);
    assert_eq!(
        open.get(statuses).unwrap().0,
        StatusCode::OK,
        "same connection, new rules"
    );

    // The autosign policy: a request before the reload stays pending, one after is signed.
    let submit = |file: &str, name: &str| {
        let csr = std::fs::read(fixture(&format!("csr/{file}"))).unwrap();
        let client =
            ca_cli::remote::Client::new(&format!("https://localhost:{port}"), &cacert, None).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let path = format!("/puppet-ca/v1/certificate_request/{name}");
        let r = rt
            .block_on(client.send(hyper::Method::PUT, &path, &[("content-type", "text/plain")], csr))
            .unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        rt.block_on(client.get(&format!("/puppet-ca/v1/certificate/{name}")))
            .unwrap()
            .status
    };
    assert_eq!(
        submit("rsa2048.pem", "agent-rsa2048.example.test"),
        StatusCode::NOT_FOUND
    );
    std::fs::write(&conf, config(&auth, true)).unwrap();
    server.hup("reloaded", 2);
    assert_eq!(
        submit("ec-p256.pem", "agent-ec.example.test"),
        StatusCode::OK,
        "autosigned"
    );

    // A renewed server certificate: served to the next handshake after the reload.
    let before = served_serial(port);
    let out = ca.ca(&["renew-own", "server"]).ok().stdout;
    assert!(out.contains("Renewed the server certificate"), "{out}");
    assert_eq!(served_serial(port), before, "not before the reload");
    server.hup("reloaded", 3);
    let after = served_serial(port);
    assert!(
        after.starts_with("serial=") && after != before,
        "{before} -> {after}"
    );
    assert_eq!(
        open.get("/status/v1/simple").unwrap().0,
        StatusCode::OK,
        "still open"
    );

    // A broken configuration: refused, with the file named; the running one stays in force.
    std::fs::write(&conf, "[ca\nautosign = ").unwrap();
    server.hup("reload refused", 1);
    let log = server.log();
    let refused = log.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(refused.contains(conf.to_str().unwrap()), "{refused}");
    assert_eq!(
        open.get(statuses).unwrap().0,
        StatusCode::OK,
        "old rules still in force"
    );
    // A broken auth.conf too.
    std::fs::write(&conf, config(&auth, true)).unwrap();
    std::fs::write(&auth, "authorization: { version: 1, rules: [ { name: x } ] }").unwrap();
    server.hup("reload refused", 2);
    assert_eq!(open.get(statuses).unwrap().0, StatusCode::OK);
    assert_eq!(served_serial(port), after);
}

/// systemd's notifications, through a `NOTIFY_SOCKET` datagram socket the test owns: `READY=1` only
/// once the listener accepts, a `STATUS=` line, `WATCHDOG=1` at half of `WATCHDOG_USEC`,
/// `RELOADING=1` then `READY=1` around a reload, `STOPPING=1` at shutdown.
#[test]
fn systemd_notifications_without_systemd() {
    let ca = TestCa::new();
    let sock_path = ca.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let server = Running::start(
        &ca,
        0,
        &["--certname", "ca.example.test"],
        &[
            ("NOTIFY_SOCKET", &sock_path),
            ("WATCHDOG_USEC", std::path::Path::new("400000")),
        ],
    );
    let mut buf = [0u8; 4096];
    let mut next = || {
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let ready = next();
    let port: u16 = ready
        .strip_prefix("READY=1\nSTATUS=serving on 127.0.0.1:")
        .and_then(|rest| rest.split(';').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{ready}"));
    assert!(
        ready.contains("CA certificate valid until") && ready.contains("CRL 0 next update"),
        "{ready}"
    );
    // Ready means ready: the port accepts now.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    let started = Instant::now();
    let mut watchdogs = 0;
    while watchdogs < 3 {
        if next() == "WATCHDOG=1" {
            watchdogs += 1;
        }
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "3 keep-alives took {took:?} at a 400 ms watchdog"
    );
    server.hup("reloaded", 1);
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.starts_with("READY=1")) {
        let m = next();
        if m != "WATCHDOG=1" {
            seen.push(m);
        }
    }
    assert_eq!(seen[0], "RELOADING=1", "{seen:?}");
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    while next() != "STOPPING=1" {}
}

/// The server renews its own certificate by itself when little of its lifetime remains, and serves
/// the new one to the next handshake without a reload.
#[test]
fn the_server_renews_its_own_certificate_before_expiry() {
    let ca = TestCa::with_args(&["--dns-alt-names", "localhost"]);
    let conf = ca.path("short.toml");
    // Six hours (issued a day back-dated): less than a third of its lifetime left at once.
    std::fs::write(&conf, "[ca]\ncert-ttl = \"6h\"\n").unwrap();
    let out = ca
        .ca(&["--config", conf.to_str().unwrap(), "renew-own", "server"])
        .ok()
        .stdout;
    assert!(out.contains("Renewed the server certificate"), "{out}");
    let (server, port) = Running::start_on_any_port(&ca, &["--config", conf.to_str().unwrap()], &[]);
    let started = Instant::now();
    while !server.log().contains("renewed before expiry") {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let on_disk = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(ca.data.join("server/cert.pem"))
        .output()
        .unwrap();
    let on_disk = String::from_utf8_lossy(&on_disk.stdout).trim().to_string();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "{}", server.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(served_serial(port), on_disk, "the renewed certificate is served");
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("renewed before expiry"))
        .unwrap()
        .to_string();
    assert!(line.contains("server/cert.pem"), "{line}");
}
