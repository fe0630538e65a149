//! The `ca-server` binary as an operator runs it: zero set-up on an empty data directory,
//! `--check-config`, graceful shutdown; and the limits that keep slow or greedy clients from holding it.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};

use crate::harness::{server_binary, spawn_until_listening, API_LISTENING};
use crate::server::{As, TestServer};

#[test]
fn binary_creates_a_ca_on_an_empty_data_dir_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let log_path = tmp.path().join("server.log");
    let (mut child, port) = spawn_until_listening(
        Command::new(server_binary())
            .args(["--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--certname", "ca.example.test", "--dns-alt-names", "localhost"]),
        &log_path,
        API_LISTENING,
        Duration::from_secs(60),
    );
    for f in [
        "ca.db",
        "ca_key.pem",
        "ca_crt.pem",
        "server/cert.pem",
        "admin/cert.pem",
    ] {
        assert!(data.join(f).exists(), "{f}");
    }
    assert_eq!(simple_status(port, &data.join("ca_crt.pem")).unwrap(), "running");
    // An agent that dials by IP address sends it as SNI: expected, not worth a warning.
    let mut hello = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "127.0.0.1",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _ = hello.wait();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "no graceful stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit status {code:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("creating one") && log.contains("shutting down"),
        "{log}"
    );
    // Not a terminal: no colour codes. Where the data is, which names agents can dial, a last line.
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal: {log:?}"
    );
    assert!(log.contains(data.to_str().unwrap()), "{log}");
    assert!(
        log.lines().any(|l| l.contains("agents can reach it")
            && l.contains("ca.example.test")
            && l.contains("localhost")),
        "{log}"
    );
    assert!(
        log.trim_end().lines().last().unwrap().ends_with("stopped"),
        "{log}"
    );
    assert!(!log.contains("Illegal SNI") && !log.contains("WARN"), "{log}");
    assert!(!log.contains("PRIVATE KEY"), "no key material in the log");
}

#[test]
fn check_config_validates_and_names_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |toml: &str| {
        let p = tmp.path().join("c.toml");
        std::fs::write(&p, toml).unwrap();
        Command::new(server_binary())
            .args(["--check-config", "--config", p.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let ok = run("listen = \"127.0.0.1:8140\"\n[ca]\nallow-subject-alt-names = false\n");
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("configuration OK"));
    let bad = run("[ca]\nallow-alt-names = true\n");
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("allow-alt-names"),
        "{bad:?}"
    );
    let auth = tmp.path().join("auth.conf");
    std::fs::write(&auth, "authorization: { version: 1, rules: [ { name: x } ] }").unwrap();
    let bad = run(&format!("[authorization]\nauth-conf = \"{}\"\n", auth.display()));
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("auth.conf"),
        "{bad:?}"
    );
    // A start-up error is one line naming the file, without a backtrace.
    let missing = tmp.path().join("missing.toml");
    let out = Command::new(server_binary())
        .args(["--config", missing.to_str().unwrap()])
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("ca-server: ") && err.contains(missing.to_str().unwrap()),
        "{err}"
    );
    assert!(!err.contains("backtrace") && !err.contains("Caused by"), "{err}");
}

/// `ca sign --help` shows sign's own options apart from the global ones; `ca-server --help` names
/// the defaults; the audit log names the process's user when `$USER` and `$LOGNAME` are unset.
#[test]
fn help_texts_and_the_audit_actor_without_user_variables() {
    let help = Command::new(crate::harness::ca_binary())
        .args(["sign", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let (own, global) = help
        .split_once("Global options:")
        .expect("a global options section");
    assert!(
        own.contains("--allow-dns-alt-names") && !own.contains("--data-dir"),
        "{help}"
    );
    assert!(
        global.contains("--data-dir") && !global.contains("--allow-dns-alt-names"),
        "{help}"
    );
    let help = Command::new(server_binary()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for default in ["0.0.0.0:8140", "/var/lib/ca", "config.toml", "FQDN"] {
        assert!(
            help.contains(default),
            "ca-server --help does not name {default}: {help}"
        );
    }

    let ca = crate::harness::TestCa::new();
    let out = Command::new(crate::harness::ca_binary())
        .args([
            "--data-dir",
            ca.data.to_str().unwrap(),
            "generate",
            "cron-made.example.test",
            "--out",
        ])
        .arg(ca.path("out"))
        .env_remove("USER")
        .env_remove("LOGNAME")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let audit = ca.audit("cron-made.example.test");
    let me = String::from_utf8_lossy(&Command::new("id").arg("-un").output().unwrap().stdout)
        .trim()
        .to_string();
    assert!(
        audit.iter().any(|r| r.actor == format!("cli:{me}")),
        "{:?}",
        audit.iter().map(|r| &r.actor).collect::<Vec<_>>()
    );
}

#[test]
fn limits_bound_slow_and_greedy_clients() {
    let s = TestServer::start_with("[limits]\nmax-connections = 2\nhandshake-timeout = \"1s\"\n");
    let big = vec![b' '; 1024 * 1024 + 10];
    let a = s.send(
        &As::Admin,
        Method::PUT,
        "/puppet-ca/v1/clean",
        &[("content-type", "application/json")],
        &big,
    );
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    // That connection's slot is given back once the server has dropped the rest of its body.
    std::thread::sleep(Duration::from_millis(500));

    // max-connections = 2 leaves one per address. An idle TCP connection holds this address's slot:
    // another connection from here is accepted and closed at once (no backlog), until the handshake
    // timeout frees the slot.
    let mut idle = TcpStream::connect(s.addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let mut second = TcpStream::connect(s.addr).unwrap();
    second.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    assert_eq!(second.read(&mut [0u8; 16]).unwrap_or(1), 0, "closed at once");
    assert!(
        s.try_send(&As::Anonymous, Method::GET, "/status/v1/simple", &[], b"")
            .is_err(),
        "no slot for a third"
    );
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    assert_eq!(
        idle.read(&mut [0u8; 16]).unwrap_or(0),
        0,
        "idle connection closed by the server"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.get(&As::Anonymous, "/status/v1/simple").text(), "running");
}

/// The README's run command, as written but for `--release` (the same target in the test profile,
/// already built by scripts/test; a release build would add minutes to every run): it must resolve
/// the binary from the workspace root and serve on the embedded default. The configuration comes from
/// `CA_CONFIG`/`CA_DATA_DIR` only to keep the test on loopback and in a temporary directory.
#[test]
fn the_readme_run_command_starts_the_server() {
    use std::os::unix::process::CommandExt;
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let setup = &readme[readme
        .find("## Set-up on a fresh machine")
        .expect("set-up section")..];
    let block = &setup[setup.find("```sh\n").expect("first command block") + 6..];
    let command = block.lines().next().unwrap().trim();
    assert!(command.starts_with("cargo run"), "{command}");
    let command = command.replace(" --release", "");
    let tmp = tempfile::tempdir().unwrap();
    let conf = tmp.path().join("ca-server.toml");
    std::fs::write(
        &conf,
        "listen = \"127.0.0.1:0\"\ncertname = \"ca.example.test\"\ndns-alt-names = [\"localhost\"]\n",
    )
    .unwrap();
    let log = tmp.path().join("run.log");
    let (mut child, port) = spawn_until_listening(
        Command::new("sh")
            .args(["-c", &command])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CA_CONFIG", &conf)
            .env("CA_DATA_DIR", tmp.path().join("data"))
            .process_group(0),
        &log,
        API_LISTENING,
        Duration::from_secs(300),
    );
    let pgid = child.id().to_string();
    let status = simple_status(port, &tmp.path().join("data/ca_crt.pem"));
    // The whole group: sh, cargo and the server it started.
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{pgid}")])
        .status();
    let _ = child.wait();
    assert_eq!(
        status.ok().as_deref(),
        Some("running"),
        "`{command}` did not serve: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        tmp.path().join("data/ca_crt.pem").exists(),
        "a CA was created on first start"
    );

    // The Quickstart's build command builds both programs (not just the test package at the root).
    let quick = &readme[readme.find("## Quickstart").expect("quickstart")..];
    let build = quick
        .lines()
        .find(|l| l.trim_start().starts_with("cargo build"))
        .expect("a cargo build line")
        .trim()
        .replace(" --release", "");
    let out = Command::new("sh")
        .args(["-c", &format!("{build} -v")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{build}: {log}");
    for package in ["ca-server", "ca-cli"] {
        assert!(
            log.contains(&format!("Fresh {package} ")) || log.contains(&format!("Compiling {package} ")),
            "`{build}` does not build {package}: {log}"
        );
    }
}

/// `/status/v1/simple/ca` of the server on `port`, trusting `ca_cert`, without a client certificate.
fn simple_status(port: u16, ca_cert: &std::path::Path) -> anyhow::Result<String> {
    let client = ca_cli::remote::Client::new(&format!("https://localhost:{port}"), ca_cert, None)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(client.get("/status/v1/simple/ca"))?.text())
}

/// The binary's signer threads run at the lowest priority (nice 19), so that the request and
/// database threads of the certificates in flight are scheduled first (BENCHMARKS.md, session 13).
/// The writers' thread is kept on one core (session 15; it runs the batched writers' SQLite
/// statements itself since session 21), and the signer threads started from it run on every core. A signer thread lingers 100 ms
/// after its last signature: watched from /proc while one is made.
#[test]
fn the_binarys_signers_run_at_the_lowest_priority_on_every_core_and_the_writers_share_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut child, port) = spawn_until_listening(
        Command::new(server_binary())
            .args(["--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--certname", "ca.example.test", "--dns-alt-names", "localhost"]),
        &tmp.path().join("server.log"),
        API_LISTENING,
        Duration::from_secs(60),
    );
    let tasks = std::path::PathBuf::from(format!("/proc/{}/task", child.id()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Per thread of interest (its id): its name, nice value, cores and time slice, as last read: a
    // thread read in the microseconds between its start and its own setpriority, sched_setattr or
    // sched_setaffinity counts by its later reads.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
        String,
        (String, String, String, Option<u64>),
    >::new()));
    let watcher = {
        let (stop, seen) = (std::sync::Arc::clone(&stop), std::sync::Arc::clone(&seen));
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                for task in std::fs::read_dir(&tasks).into_iter().flatten().flatten() {
                    let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                    let comm = comm.trim();
                    if !["ca-signer", "ca-writer"].contains(&comm) {
                        continue;
                    }
                    // Field 19 of stat is the nice value: the 17th after the ")" that ends comm.
                    let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
                    let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
                    let cores = allowed_cores(&status);
                    let slice = time_slice(&task.path());
                    if let (Some(nice), Some(cores)) = (
                        stat.rsplit_once(')')
                            .and_then(|(_, rest)| rest.split_whitespace().nth(16)),
                        cores,
                    ) {
                        let tid = task.file_name().to_string_lossy().into_owned();
                        seen.lock()
                            .unwrap()
                            .insert(tid, (comm.to_string(), nice.to_string(), cores, slice));
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let client = ca_cli::remote::Client::new(
        &format!("https://localhost:{port}"),
        &data.join("ca_crt.pem"),
        Some((&data.join("admin/cert.pem"), &data.join("admin/key.pem"))),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let csr = std::fs::read(crate::harness::fixture("csr/ec-p256.pem")).unwrap();
    let name = "agent-ec.example.test";
    // Signed, cleaned and signed again until the watcher has seen a signer (on a busy machine it may
    // not be scheduled within a signer's 100 ms).
    for _ in 0..10 {
        let send = |method: Method, path: &str, ct: &str, body: Vec<u8>| {
            let headers = [("content-type", ct)];
            rt.block_on(client.send(method, path, &headers, body))
                .unwrap()
                .status
        };
        let put = send(
            Method::PUT,
            &format!("/puppet-ca/v1/certificate_request/{name}"),
            "text/plain",
            csr.clone(),
        );
        assert_eq!(put, StatusCode::OK);
        let signed = send(
            Method::PUT,
            &format!("/puppet-ca/v1/certificate_status/{name}"),
            "application/json",
            br#"{"desired_state":"signed"}"#.to_vec(),
        );
        assert_eq!(signed, StatusCode::NO_CONTENT);
        std::thread::sleep(Duration::from_millis(50));
        if seen
            .lock()
            .unwrap()
            .values()
            .any(|(comm, _, _, _)| comm == "ca-signer")
        {
            break;
        }
        let cleaned = send(
            Method::DELETE,
            &format!("/puppet-ca/v1/certificate_status/{name}"),
            "application/json",
            Vec::new(),
        );
        assert_eq!(cleaned, StatusCode::NO_CONTENT);
    }
    // The binary reads its threads' CPU clocks: the signatures above took CPU time, which /metrics
    // shows (ca-bench's ceiling at the machine's speed during a signing phase).
    let metrics = rt
        .block_on(client.send(Method::GET, "/metrics", &[], Vec::new()))
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    let value = |name: &str| crate::harness::metric(&metrics, name);
    assert!(value("ca_key_signatures_total") >= 1.0, "{metrics}");
    assert!(value("ca_key_signature_cpu_seconds_total") > 0.0, "{metrics}");
    stop.store(true, std::sync::atomic::Ordering::Release);
    watcher.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let seen = seen.lock().unwrap().clone();
    let of = |name: &str| -> Vec<(String, String)> {
        seen.values()
            .filter(|(comm, _, _, _)| comm == name)
            .map(|(_, nice, cores, _)| (nice.clone(), cores.clone()))
            .collect()
    };
    // A long time slice (100 ms), so that a task waking with the usual slice (PostgreSQL's, the
    // request threads') preempts a signature at once: read where the kernel shows it (its scheduler
    // statistics), taken where it supports a custom slice for a `SCHED_OTHER` thread (6.12).
    let slices: Vec<Option<u64>> = seen
        .values()
        .filter(|(comm, _, _, _)| comm == "ca-signer")
        .map(|(_, _, _, slice)| *slice)
        .collect();
    if custom_slices() && slices.iter().any(Option::is_some) {
        assert!(
            slices.iter().all(|s| *s == Some(100_000_000)),
            "ca-signer threads' time slices (ns): {slices:?}"
        );
    }
    let (signers, writer) = (of("ca-signer"), of("ca-writer"));
    assert!(!signers.is_empty(), "no ca-signer thread seen");
    // Each one read again until the watcher stopped: a signer lingers 100 ms after its signature.
    assert!(
        signers.iter().all(|(nice, _)| nice == "19"),
        "ca-signer threads (nice, cores): {signers:?}"
    );
    // The cores this test may use are those the server started with (it inherits them).
    let every = allowed_cores(&std::fs::read_to_string("/proc/self/status").unwrap()).unwrap();
    assert!(
        signers.iter().all(|(_, cores)| *cores == every),
        "ca-signer threads (nice, cores) on {every}: {signers:?}"
    );
    let [(_, writer_cores)] = writer.as_slice() else {
        panic!("one ca-writer thread expected: {writer:?}");
    };
    if every.contains([',', '-']) {
        // Several cores: the writers' thread (which runs the batched writers' SQLite statements
        // itself) on one of them.
        assert!(
            !writer_cores.contains([',', '-']),
            "ca-writer on {writer_cores} of {every}"
        );
    } else {
        assert_eq!(*writer_cores, every);
    }
}

/// A task's time slice in nanoseconds (`se.slice` of its /proc `sched`, shown when the kernel keeps
/// scheduler statistics).
fn time_slice(task: &std::path::Path) -> Option<u64> {
    std::fs::read_to_string(task.join("sched"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("se.slice")?.split(':').nth(1)?.trim().parse().ok())
}

/// Whether the running kernel takes a custom time slice for a `SCHED_OTHER` thread (Linux 6.12).
fn custom_slices() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(['.', '-']).map(|p| p.parse::<u32>().ok());
    matches!((parts.next().flatten(), parts.next().flatten()), (Some(major), Some(minor)) if (major, minor) >= (6, 12))
}

/// The cores a task may run on (`Cpus_allowed_list` of its /proc status, e.g. `0-1`).
fn allowed_cores(status: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|c| c.trim().to_string())
}
