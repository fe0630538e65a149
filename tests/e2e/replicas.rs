//! Several `ca-server` replicas on one PostgreSQL database: a replica joins with only the CA key in its
//! data directory, and a revocation made on one is in force on the other at once (new handshake,
//! open keep-alive connection) and in its CRL.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use hyper::{Method, StatusCode};

use crate::harness::TestCa;
use crate::pg::PgCluster;
use crate::revocation::{s_client, KeepAlive};
use crate::server::{As, TestServer};

/// The first replica: `ca setup --database-url` on an empty database, then served. The data
/// directory's config.toml names the database, so the `ca` CLI there works on it too.
fn first_replica(url: &str) -> TestServer {
    let ca = TestCa::setup_on_database(url, "localhost,IP:127.0.0.1");
    assert!(
        !ca.data.join("ca.db").exists(),
        "the state is in PostgreSQL, not in a SQLite file"
    );
    std::fs::write(ca.data.join("config.toml"), format!("database-url = \"{url}\"\n")).unwrap();
    TestServer::launch(ca, &format!("database-url = \"{url}\"\n"))
}

/// Another replica: a new data directory holding only a copy of the CA key.
fn joining_replica(url: &str, first: &TestServer, certname: &str) -> TestServer {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("ca");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = data.join("ca_key.pem");
    std::fs::copy(first.data().join("ca_key.pem"), &key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(data.join("config.toml"), format!("database-url = \"{url}\"\n")).unwrap();
    // The CA certificate, for this test's clients (the server itself reads the chain from the database).
    std::fs::copy(first.data().join("ca_crt.pem"), data.join("ca_crt.pem")).unwrap();
    TestServer::launch_as(
        TestCa { tmp, data },
        &format!("database-url = \"{url}\"\n"),
        certname,
    )
}

/// How long until `server` refuses a handshake with `who`'s certificate; fails after one second.
fn until_refused(server: &TestServer, who: &As) -> Duration {
    let started = Instant::now();
    loop {
        if server
            .try_send(who, Method::GET, "/puppet-ca/v1/expirations", &[], b"")
            .is_err()
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "still accepted a second after the revocation"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_replica_joins_with_the_ca_key_and_enforces_the_others_revocations_at_once() {
    let pg = PgCluster::start();
    let url = pg.url("ca");
    let a = first_replica(&url);
    let b = joining_replica(&url, &a, "ca-b.example.test");
    // B issued its own server certificate from the shared CA, and no second admin certificate.
    assert!(b.data().join("server/cert.pem").exists());
    assert!(!b.data().join("admin/cert.pem").exists());
    let ca_a = a.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca").text();
    assert_eq!(ca_a, b.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca").text());
    let listed = a.ca.ca(&["list", "--all"]).ok().stdout;
    assert!(listed.contains("ca-b.example.test"), "{listed}");

    // An agent issued on the shared database (the CLI on A's host) is known to both.
    let agent = a.identity("agent-r.example.test");
    let mut on_b = KeepAlive::open(&b, &agent);
    assert_eq!(on_b.get("/puppet-ca/v1/expirations").unwrap().0, StatusCode::OK);
    assert_eq!(b.get(&agent, "/puppet-ca/v1/expirations").status, StatusCode::OK);

    // A TLS session with B saved for resumption (TLS 1.3 tickets are single-use: one shows that
    // resumption works, the other is kept for after the revocation).
    let sessions = [a.ca.path("b-1.sess"), a.ca.path("b-2.sess")];
    for saved in &sessions {
        let out = s_client(
            &b,
            &agent,
            "/puppet-ca/v1/expirations",
            ("-sess_out", saved),
            "-tls1_3",
        );
        assert!(out.contains("HTTP/1.1 200 OK"), "full handshake on B: {out}");
    }
    let out = s_client(
        &b,
        &agent,
        "/puppet-ca/v1/expirations",
        ("-sess_in", &sessions[0]),
        "-tls1_3",
    );
    assert!(
        out.contains("Reused,") && out.contains("HTTP/1.1 200 OK"),
        "resumed on B: {out}"
    );

    // Revoked through A's API: B refuses it within a second (it is told by A's transaction), on a new
    // handshake, on a resumed session and on the open connection.
    let r = a.send(
        &As::Admin,
        Method::PUT,
        "/puppet-ca/v1/certificate_status/agent-r.example.test",
        &[("content-type", "application/json")],
        br#"{"desired_state":"revoked"}"#,
    );
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text());
    let acknowledged = Instant::now();
    let refused_in = until_refused(&b, &agent);
    let after = on_b.get("/puppet-ca/v1/expirations").unwrap();
    assert_eq!(after.0, StatusCode::FORBIDDEN, "{}", after.1);
    let out = s_client(
        &b,
        &agent,
        "/puppet-ca/v1/expirations",
        ("-sess_in", &sessions[1]),
        "-tls1_3",
    );
    assert!(
        !out.contains("HTTP/1.1 200"),
        "B served a resumed session of a certificate A revoked: {out}"
    );
    println!(
        "revocation on A refused on B after {} ms (handshake)",
        refused_in.as_millis()
    );
    assert!(acknowledged.elapsed() < Duration::from_secs(2));

    // Revoked with the CLI on the database: both replicas refuse it within a second.
    let other = a.identity("agent-s.example.test");
    assert_eq!(b.get(&other, "/puppet-ca/v1/expirations").status, StatusCode::OK);
    let crl_path = "/puppet-ca/v1/certificate_revocation_list/ca";
    let last_modified = |r: &TestServer| {
        let got = r.get(&As::Anonymous, crl_path);
        got.headers["last-modified"].to_str().unwrap().to_string()
    };
    // Every replica gives the same CRL the same Last-Modified.
    let seen_on_a = last_modified(&a);
    assert_eq!(seen_on_a, last_modified(&b));
    a.ca.ca(&["revoke", "agent-s.example.test"]).ok();
    for (name, r) in [("A", &a), ("B", &b)] {
        let t = until_refused(r, &other);
        println!("CLI revocation refused on {name} after {} ms", t.as_millis());
    }
    // An agent that fetched from A and asks B (If-Modified-Since from A, in the same second as the
    // revocation, most likely) gets the new CRL, not 304.
    let again = b.send(
        &As::Anonymous,
        Method::GET,
        crl_path,
        &[("if-modified-since", &seen_on_a)],
        b"",
    );
    assert_eq!(
        again.status,
        StatusCode::OK,
        "a changed CRL answered {}",
        again.status
    );
    assert_ne!(again.headers["last-modified"].to_str().unwrap(), seen_on_a);
    let unchanged = b.send(
        &As::Anonymous,
        Method::GET,
        crl_path,
        &[(
            "if-modified-since",
            again.headers["last-modified"].to_str().unwrap(),
        )],
        b"",
    );
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);

    // Both serve the same CRL, which lists the serial; B signed none of its own.
    let crl_a = a
        .get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca")
        .text();
    let crl_b = b
        .get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca")
        .text();
    assert_eq!(crl_a, crl_b, "byte-identical CRLs");
    let crl_file = a.ca.path("shared-crl.pem");
    std::fs::write(&crl_file, &crl_a).unwrap();
    let (cert, _) = match &agent {
        As::Cert(c, k) => (c.clone(), k.clone()),
        _ => unreachable!(),
    };
    let refused = crate::harness::crl_check(&a.ca.ca_cert(), &crl_file, &cert);
    assert!(
        refused.is_err_and(|e| e.contains("revoked")),
        "the shared CRL lists the agent"
    );
    let audit = a.ca.ca(&["audit"]).ok().stdout;
    assert!(
        !audit.contains("crl-recovery") && !audit.contains("crl-republish"),
        "no replica re-signed the CRL: {audit}"
    );
    // The relying parties' CRL: signed by each replica where it is served, from the stored CRL, so
    // the same TBSCertList on both (an ECDSA key here: the signatures differ), each signature valid,
    // and nothing of it stored but its nextUpdate.
    let ca_pem = std::fs::read(a.ca.ca_cert()).unwrap();
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(&ca_pem).unwrap();
    let ca_cert = ca_pem.parse_x509().unwrap();
    let relying_tbs = |s: &TestServer| {
        let der = s.get(&As::Anonymous, "/crl.der").body.to_vec();
        let (_, crl) = x509_parser::parse_x509_crl(&der).unwrap();
        crl.verify_signature(ca_cert.public_key()).unwrap();
        assert_eq!(crl.iter_revoked_certificates().count(), 2);
        crl.tbs_cert_list.as_ref().to_vec()
    };
    assert_eq!(relying_tbs(&a), relying_tbs(&b), "the same relying parties' CRL");
    assert_eq!(
        pg.psql(
            "ca",
            "SELECT (relying_head IS NULL AND relying_tail IS NULL AND relying_next_update IS NOT NULL)::text FROM crl"
        ),
        "true"
    );
    // Each revocation took one CRL number and stored only what it added: the CRL signed at setup
    // (number 0, all its entries) and one segment per revocation since, no whole CRL in `der`.
    assert_eq!(
        pg.psql(
            "ca",
            "SELECT string_agg(number::text, ',' ORDER BY number) FROM crl_segments"
        ),
        "0,1,2"
    );
    assert_eq!(
        pg.psql(
            "ca",
            "SELECT number || ' ' || entries_from || ' ' || octet_length(der) FROM crl"
        ),
        "2 0 0"
    );

    // A third replica on a database that holds a CA but without the key: a clear refusal.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("empty");
    let out = std::process::Command::new(crate::harness::server_binary())
        .args(["--listen", "127.0.0.1:0", "--database-url", &url, "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("copy") && err.contains("ca_key.pem"), "{err}");
}

/// A replica that loses its database says so (`/status/v1/simple` answers 503 `error`), keeps
/// serving the CA certificate and the last CRL, and recovers by itself when the database returns.
#[test]
fn a_replica_without_its_database_says_so_serves_what_it_can_and_recovers() {
    let pg = PgCluster::start();
    let url = pg.url("ca");
    let a = first_replica(&url);
    assert_eq!(a.get(&As::Anonymous, "/status/v1/simple").text(), "running");
    let crl = a
        .get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca")
        .text();
    pg.stop_immediately();
    let started = Instant::now();
    loop {
        let s = a.get(&As::Anonymous, "/status/v1/simple");
        if s.status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(s.text(), "error");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still 'running' without a database"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("database loss noticed after {} ms", started.elapsed().as_millis());
    assert_eq!(
        a.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca").status,
        StatusCode::OK
    );
    let served = a.get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca");
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.text(), crl, "the last CRL");
    // A change needs the database: a clear error, not a hang.
    let r = a.send(
        &As::Admin,
        Method::PUT,
        "/puppet-ca/v1/certificate_status/ca-admin",
        &[("content-type", "application/json")],
        br#"{"desired_state":"revoked"}"#,
    );
    assert!(r.status.is_server_error(), "{} {}", r.status, r.text());

    pg.start_again();
    let started = Instant::now();
    while a.get(&As::Anonymous, "/status/v1/simple").text() != "running" {
        assert!(started.elapsed() < Duration::from_secs(10), "did not recover");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "recovered {} ms after the database returned",
        started.elapsed().as_millis()
    );
    let agent = a.identity("after.example.test");
    assert_eq!(a.get(&agent, "/puppet-ca/v1/expirations").status, StatusCode::OK);
}

/// nginx (stream module) balancing TCP round-robin over the replicas, from
/// deploy/nginx/ca-balancer.conf.template; killed when dropped.
struct Balancer {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Balancer {
    fn start(replicas: &[&TestServer]) -> Balancer {
        let module = "/usr/lib/nginx/modules/ngx_stream_module.so";
        assert!(
            std::path::Path::new(module).exists(),
            "{module} missing: scripts/test installs libnginx-mod-stream"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = crate::harness::free_port();
        let template =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx/ca-balancer.conf.template");
        let upstreams: Vec<String> = replicas
            .iter()
            .map(|r| format!("server 127.0.0.1:{} max_fails=1 fail_timeout=10s;", r.addr.port()))
            .collect();
        // Placeholders are filled in outside the comments (which name them).
        let conf: String = std::fs::read_to_string(&template)
            .unwrap()
            .lines()
            .map(|l| {
                if l.trim_start().starts_with('#') {
                    l.to_string()
                } else {
                    l.replace("@STREAM_MODULE@", module)
                        .replace("@PREFIX@", &dir.path().display().to_string())
                        .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
                        .replace("@UPSTREAMS@", &upstreams.join("\n        "))
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        // Its own process group (master and workers stopped together), and no inherited output: a
        // worker left behind must not hold the test runner's pipe open.
        let child = std::process::Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("nginx (scripts/test installs it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nginx did not start: {}",
                std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Balancer {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for Balancer {
    /// SIGTERM (the master stops its workers), then SIGKILL of the whole process group.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.child.wait();
    }
}

/// Requests a replica answered, from its /metrics.
fn answered(r: &TestServer) -> u64 {
    r.get(&As::Anonymous, "/metrics")
        .text()
        .lines()
        .filter(|l| l.starts_with("ca_http_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Three replicas on one database behind nginx (TCP round-robin, TLS passed through): real
/// `puppet ssl bootstrap` agents get certificates through it, signed with `ca sign` on the database;
/// the real `puppetserver ca` CLI lists and revokes through it; every replica refuses the revoked
/// certificate within a second and serves the same CRL.
#[test]
fn three_replicas_behind_a_balancer_serve_real_agents_and_the_real_cli() {
    use crate::real_clients::{agent_args_at, require, text, RealCli};
    require("puppet");
    let pg = PgCluster::start();
    let url = pg.url("ca");
    let a = first_replica(&url);
    let b = joining_replica(&url, &a, "ca-b.example.test");
    let c = joining_replica(&url, &a, "ca-c.example.test");
    let lb = Balancer::start(&[&a, &b, &c]);
    let before: Vec<u64> = [&a, &b, &c].iter().map(|r| answered(r)).collect();

    let names = [
        "lb-agent1.example.test",
        "lb-agent2.example.test",
        "lb-agent3.example.test",
    ];
    let dirs: Vec<tempfile::TempDir> = names.iter().map(|_| tempfile::tempdir().unwrap()).collect();
    let agents: Vec<std::process::Child> = names
        .iter()
        .zip(&dirs)
        .map(|(n, d)| {
            std::process::Command::new("puppet")
                .args(["ssl", "bootstrap"])
                .args(agent_args_at(lb.port, d.path(), n))
                .args(["--waitforcert", "1", "--maxwaitforcert", "60"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // The requests arrive through whichever replica; they are signed on the database.
    let started = Instant::now();
    loop {
        let listed = a.ca.ca(&["list"]).ok().stdout;
        if names.iter().all(|n| listed.contains(n)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "requests missing: {listed}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for n in names {
        a.ca.ca(&["sign", n]).ok();
    }
    for child in agents {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let after: Vec<u64> = [&a, &b, &c].iter().map(|r| answered(r)).collect();
    for (i, (x, y)) in before.iter().zip(&after).enumerate() {
        assert!(
            y > x,
            "replica {i} answered nothing through the balancer: {before:?} -> {after:?}"
        );
    }

    // The real puppetserver CA CLI through the balancer.
    let cli = RealCli::at(&a, lb.port);
    let listed = cli.ok(&["list", "--all"], "Signed Certificates:");
    for n in names {
        assert!(listed.contains(n), "{listed}");
    }
    cli.ok(
        &["revoke", "--certname", names[0]],
        &format!("Certificate for {} has been revoked", names[0]),
    );
    let revoked = As::Cert(
        dirs[0].path().join(format!("ssl/certs/{}.pem", names[0])),
        dirs[0].path().join(format!("ssl/private_keys/{}.pem", names[0])),
    );
    for r in [&a, &b, &c] {
        until_refused(r, &revoked);
    }
    let crls: Vec<String> = [&a, &b, &c]
        .iter()
        .map(|r| {
            r.get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca")
                .text()
        })
        .collect();
    assert!(
        crls.iter().all(|x| *x == crls[0]),
        "byte-identical CRLs on every replica"
    );
    // The other agents still work through the balancer.
    let out = std::process::Command::new("puppet")
        .args(["ssl", "verify"])
        .args(agent_args_at(lb.port, dirs[1].path(), names[1]))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// kill -9 of one replica (the real binary) while clients sign and revoke on all three: no duplicate
/// serial, every certificate a client received is stored, every acknowledged revocation is in the
/// survivors' CRL, and the survivors keep serving (the longest request on them is reported).
#[test]
fn kill_9_of_a_replica_under_load_loses_nothing_and_the_others_keep_serving() {
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use ca_cli::remote::Client;
    use x509_parser::prelude::FromDer;

    let pg = PgCluster::start();
    let url = pg.url("ca");
    let first = TestCa::setup_on_database(&url, "localhost");
    let mut dirs = vec![first.data.clone()];
    let _keep: Vec<tempfile::TempDir> = (0..2)
        .map(|_| {
            let tmp = tempfile::tempdir().unwrap();
            let data = tmp.path().join("ca");
            std::fs::create_dir(&data).unwrap();
            std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
            std::fs::copy(first.data.join("ca_key.pem"), data.join("ca_key.pem")).unwrap();
            std::fs::set_permissions(data.join("ca_key.pem"), std::fs::Permissions::from_mode(0o600))
                .unwrap();
            dirs.push(data);
            tmp
        })
        .collect();
    let (servers, ports): (Vec<_>, Vec<u16>) = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            crate::crash::start_with(
                d,
                0,
                &[
                    "--database-url",
                    &url,
                    "--certname",
                    &format!("ca-{i}.example.test"),
                    "--dns-alt-names",
                    "localhost",
                ],
            )
        })
        .unzip();
    let mut servers: Vec<Option<std::process::Child>> = servers.into_iter().map(Some).collect();
    let d = &first.data;
    let admin = |port: u16| {
        Client::new(
            &format!("https://localhost:{port}"),
            &d.join("ca_crt.pem"),
            Some((&d.join("admin/cert.pem"), &d.join("admin/key.pem"))),
        )
        .unwrap()
    };
    #[derive(Default)]
    struct Seen {
        received: BTreeMap<String, (u64, Vec<u8>)>,
        revoked: BTreeSet<u64>,
        /// Longest request on a surviving replica after the kill.
        survivor_max: Duration,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let client = admin(ports[w]);
            let (seen, stop, killed) = (Arc::clone(&seen), Arc::clone(&stop), Arc::clone(&killed));
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let json = [("content-type", "application/json")];
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let name = format!("kill-{w}-{i}.example.test");
                    let timed = |f: &mut dyn FnMut() -> anyhow::Result<ca_cli::remote::Answer>| {
                        let t = Instant::now();
                        let r = f();
                        if w != 2 && killed.load(Ordering::Relaxed) {
                            let mut s = seen.lock().unwrap();
                            s.survivor_max = s.survivor_max.max(t.elapsed());
                        }
                        r
                    };
                    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
                    let mut p = rcgen::CertificateParams::default();
                    p.distinguished_name
                        .push(rcgen::DnType::CommonName, name.as_str());
                    let csr = p.serialize_request(&key).unwrap().pem().unwrap();
                    let put = timed(&mut || {
                        rt.block_on(client.send(
                            hyper::Method::PUT,
                            &format!("/puppet-ca/v1/certificate_request/{name}"),
                            &[],
                            csr.clone().into_bytes(),
                        ))
                    });
                    if !matches!(put, Ok(ref a) if a.status == StatusCode::OK) {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    let sign = timed(&mut || {
                        rt.block_on(client.send(
                            hyper::Method::PUT,
                            &format!("/puppet-ca/v1/certificate_status/{name}"),
                            &json,
                            br#"{"desired_state":"signed"}"#.to_vec(),
                        ))
                    });
                    if !matches!(sign, Ok(ref a) if a.status == StatusCode::NO_CONTENT) {
                        continue;
                    }
                    let Ok(a) =
                        timed(&mut || rt.block_on(client.get(&format!("/puppet-ca/v1/certificate/{name}"))))
                    else {
                        continue;
                    };
                    if a.status != StatusCode::OK {
                        continue;
                    }
                    let der = pem::parse(a.text()).unwrap().into_contents();
                    let (_, c) = x509_parser::prelude::X509Certificate::from_der(&der).unwrap();
                    let serial = u64::try_from(c.serial.clone()).unwrap();
                    seen.lock().unwrap().received.insert(name.clone(), (serial, der));
                    if i % 2 == 0 {
                        let r = timed(&mut || {
                            rt.block_on(client.send(
                                hyper::Method::PUT,
                                &format!("/puppet-ca/v1/certificate_status/{name}"),
                                &json,
                                br#"{"desired_state":"revoked"}"#.to_vec(),
                            ))
                        });
                        if matches!(r, Ok(ref a) if a.status == StatusCode::NO_CONTENT) {
                            seen.lock().unwrap().revoked.insert(serial);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let mut victim = servers[2].take().unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    killed.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }

    let seen = seen.lock().unwrap();
    assert!(
        seen.received.len() >= 10,
        "the load made progress: {}",
        seen.received.len()
    );
    assert!(!seen.revoked.is_empty());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The last revocation acknowledged by one survivor reaches the other within a second (the
    // propagation bound); from then on both serve the same CRL.
    let started = std::time::Instant::now();
    let crls = loop {
        let mut crls = Vec::new();
        for port in &ports[..2] {
            let crl = rt
                .block_on(admin(*port).get("/puppet-ca/v1/certificate_revocation_list/ca"))
                .unwrap();
            assert_eq!(crl.status, StatusCode::OK);
            crls.push(crl.text());
        }
        if crls[0] == crls[1] || started.elapsed() > Duration::from_secs(1) {
            break crls;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        crls[0], crls[1],
        "the survivors serve the same CRL within a second"
    );
    let in_crl = crate::harness::crl_serials_of(&crls[0]);
    for s in &seen.revoked {
        assert!(
            in_crl.contains(s),
            "acknowledged revocation of serial {s} missing from the CRL"
        );
    }
    let stored = rt.block_on(async {
        let store = ca_server::storage::Store::open_url(&url).await.unwrap();
        let all = store.all_certificates().await.unwrap();
        store.close().await;
        all
    });
    let by_serial: BTreeMap<u64, &Vec<u8>> = stored.iter().map(|(r, _)| (r.serial, &r.der)).collect();
    assert_eq!(by_serial.len(), stored.len(), "no duplicate serial");
    for (name, (serial, der)) in &seen.received {
        assert_eq!(
            by_serial.get(serial).map(|d| d.as_slice()),
            Some(der.as_slice()),
            "{name} (serial {serial}) lost"
        );
    }
    println!(
        "kill -9 of a replica: {} certificates received, {} revocations acknowledged, longest request on a survivor after the kill {} ms",
        seen.received.len(),
        seen.revoked.len(),
        seen.survivor_max.as_millis()
    );
    for s in servers.iter_mut().flatten() {
        let _ = s.kill();
        let _ = s.wait();
    }
}

/// On PostgreSQL the signing pipeline reads the requests and draws the serials outside the CA's write
/// lock, so that the signers need not wait for a write transaction: many signings at once, each name
/// asked twice, give one certificate per name, each with a serial of its own, the second ask refused
/// (409); a signing refused there (no request, 404) is answered only once a write transaction has
/// audited it; the audit chain stays intact.
#[test]
fn signings_at_once_on_postgresql_get_distinct_serials_and_their_refusals_are_audited_first() {
    let pg = PgCluster::start();
    let url = pg.url("ca");
    let a = first_replica(&url);
    let names: Vec<String> = (0..12).map(|i| format!("apart-{i}.example.test")).collect();
    let missing: Vec<String> = (0..3).map(|i| format!("missing-{i}.example.test")).collect();
    for n in &names {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name.push(rcgen::DnType::CommonName, n.as_str());
        let csr = p.serialize_request(&key).unwrap().pem().unwrap();
        let r = a.send(
            &As::Anonymous,
            Method::PUT,
            &format!("/puppet-ca/v1/certificate_request/{n}"),
            &[("content-type", "text/plain")],
            csr.as_bytes(),
        );
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let admin = a.client(&As::Admin);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(ca_server::storage::Store::open_url(&url)).unwrap();
    let answers: Vec<(String, StatusCode, String)> = rt.block_on(async {
        let tasks: Vec<_> = names
            .iter()
            .chain(&names)
            .chain(&missing)
            .cloned()
            .map(|n| {
                let (admin, store) = (admin.clone(), store.clone());
                tokio::spawn(async move {
                    let r = admin
                        .send(
                            Method::PUT,
                            &format!("/puppet-ca/v1/certificate_status/{n}"),
                            &[("content-type", "application/json")],
                            br#"{"desired_state":"signed"}"#.to_vec(),
                        )
                        .await
                        .unwrap();
                    // Read at once: a refusal is answered after the transaction that audits it.
                    let refusals = if r.status == StatusCode::NO_CONTENT {
                        0
                    } else {
                        let rows = store.audit_rows(Some(&n)).await.unwrap();
                        rows.iter().filter(|row| row.outcome == "refused").count()
                    };
                    assert!(
                        r.status == StatusCode::NO_CONTENT || refusals > 0,
                        "{n}: answered {} before its refusal was audited",
                        r.status
                    );
                    (n, r.status, r.text())
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let status_of = |n: &str| -> Vec<StatusCode> {
        let mut s: Vec<StatusCode> = answers
            .iter()
            .filter(|(m, ..)| m == n)
            .map(|(_, s, _)| *s)
            .collect();
        s.sort();
        s
    };
    for n in &names {
        assert_eq!(
            status_of(n),
            [StatusCode::NO_CONTENT, StatusCode::CONFLICT],
            "{n}: {answers:?}"
        );
    }
    for n in &missing {
        assert_eq!(status_of(n), [StatusCode::NOT_FOUND], "{n}: {answers:?}");
    }
    let serials: std::collections::BTreeSet<u64> = rt.block_on(async {
        let mut out = std::collections::BTreeSet::new();
        for n in &names {
            let cert = store.current_certificate(n).await.unwrap().expect("stored");
            assert!(
                store.request(n).await.unwrap().is_none(),
                "{n}: its request is gone"
            );
            out.insert(cert.serial);
        }
        out
    });
    assert_eq!(serials.len(), names.len(), "a serial given twice: {serials:?}");
    rt.block_on(store.close());
    a.ca.ca(&["audit", "verify"]).ok();
}
