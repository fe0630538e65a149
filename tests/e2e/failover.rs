//! Disaster drill (issue 12, test 5): two `ca-server` replicas on a PostgreSQL primary with a
//! synchronous streaming standby, both named in one URL (`target_session_attrs=read-write`). While
//! clients sign and revoke through both replicas, the primary is killed (`pg_ctl stop -m immediate`)
//! and the standby promoted. The replicas find the new primary by themselves; nothing acknowledged to a
//! client is lost; the time from the kill to full service is measured and printed (`DRILL_LOGS=1`
//! also prints the replicas' logs and `/status/v1/simple` samples).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ca_cli::remote::{Answer, Client};
use hyper::{Method, StatusCode};
use x509_parser::prelude::FromDer;

use crate::harness::{server_binary, spawn_until_listening, TestCa, API_LISTENING};
use crate::pg::PgCluster;

/// In the URL to show it reaches no log (trust authentication never asks for it).
const SECRET: &str = "drill-s3cret-pw";

/// The real `ca-server` with the URL in `CA_DATABASE_URL`, its log (info level) in `log`.
/// A replica on a port it picks, its log in `log`; the child and its port.
fn start_replica(data: &Path, url: &str, certname: &str, log: &Path) -> (Child, u16) {
    spawn_until_listening(
        Command::new(server_binary())
            .args(["--data-dir", data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--certname", certname, "--dns-alt-names", "localhost"])
            .env("CA_DATABASE_URL", url)
            .env("RUST_LOG", "info"),
        log,
        API_LISTENING,
        Duration::from_secs(30),
    )
}

/// The admin client of the CA in `data` on the replica at `port`.
fn admin_client(data: &Path, port: u16) -> Client {
    Client::new(
        &format!("https://localhost:{port}"),
        &data.join("ca_crt.pem"),
        Some((&data.join("admin/cert.pem"), &data.join("admin/key.pem"))),
    )
    .unwrap()
}

/// A primary with a synchronous streaming standby, the URL naming both (`userinfo@` before the
/// hosts, `target_session_attrs=read-write`), and a CA set up there (EC P-256, `localhost` among
/// its server's names).
fn synchronous_pair(userinfo: &str) -> (PgCluster, PgCluster, String, TestCa) {
    let primary = PgCluster::start();
    let standby = PgCluster::standby_of(&primary);
    primary.make_synchronous();
    let url = format!(
        "postgresql://{userinfo}@127.0.0.1:{},127.0.0.1:{}/ca?target_session_attrs=read-write",
        primary.port, standby.port
    );
    let ca = TestCa::setup_on_database(&url, "localhost");
    (primary, standby, url, ca)
}

/// Kills the replicas when the test ends, however it ends.
struct Replicas(Vec<Child>);

impl Drop for Replicas {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn csr(name: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, name);
    p.serialize_request(&key).unwrap().pem().unwrap()
}

/// One request, given up after 30 s (a hung request fails the drill rather than the suite).
fn call(
    rt: &tokio::runtime::Runtime,
    client: &Client,
    method: Method,
    path: &str,
    body: &[u8],
) -> anyhow::Result<Answer> {
    let json = [("content-type", "application/json")];
    let headers: &[(&str, &str)] = if method == Method::PUT && path.contains("certificate_status") {
        &json
    } else {
        &[]
    };
    rt.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(30),
            client.send(method, path, headers, body.to_vec()),
        )
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 30 s")))
    })
}

/// Submits a CSR, signs it, fetches the certificate: (whether the signing was acknowledged, the
/// certificate's serial and DER when fetched).
fn issue(rt: &tokio::runtime::Runtime, client: &Client, name: &str) -> (bool, Option<(u64, Vec<u8>)>) {
    let put = call(
        rt,
        client,
        Method::PUT,
        &format!("/puppet-ca/v1/certificate_request/{name}"),
        csr(name).as_bytes(),
    );
    if !matches!(put, Ok(ref a) if a.status == StatusCode::OK) {
        return (false, None);
    }
    let sign = call(
        rt,
        client,
        Method::PUT,
        &format!("/puppet-ca/v1/certificate_status/{name}"),
        br#"{"desired_state":"signed"}"#,
    );
    if !matches!(sign, Ok(ref a) if a.status == StatusCode::NO_CONTENT) {
        return (false, None);
    }
    let got = call(
        rt,
        client,
        Method::GET,
        &format!("/puppet-ca/v1/certificate/{name}"),
        b"",
    );
    let cert = match got {
        Ok(a) if a.status == StatusCode::OK => {
            let der = pem::parse(a.text()).unwrap().into_contents();
            let (_, c) = x509_parser::prelude::X509Certificate::from_der(&der).unwrap();
            Some((u64::try_from(c.serial.clone()).unwrap(), der))
        }
        _ => None,
    };
    (true, cert)
}

/// When a replica was asked `/status/v1/simple`, and whether it said `running`.
type Samples = Vec<(Instant, bool)>;

/// What the clients were told.
#[derive(Default)]
struct Seen {
    /// certname → replica, for every acknowledged signing (204).
    signed: BTreeMap<String, usize>,
    /// certname → (serial, DER) of every certificate a client received.
    received: BTreeMap<String, (u64, Vec<u8>)>,
    /// Serials whose revocation was acknowledged (204).
    revoked: BTreeSet<u64>,
    /// Per replica: when each acknowledged signing was answered.
    signed_at: [Vec<Instant>; 2],
    /// Per replica: requests that failed (5xx, or no answer).
    failures: [u64; 2],
}

#[test]
fn killing_the_primary_and_promoting_the_synchronous_standby_loses_nothing_acknowledged() {
    // Replica 0 sets up the CA (on the primary, chosen as the writable server); replica 1 joins with
    // only the CA key.
    let (primary, standby, url, first) = synchronous_pair(&format!("ca:{SECRET}"));
    let tmp = tempfile::tempdir().unwrap();
    let second = tmp.path().join("ca");
    std::fs::create_dir(&second).unwrap();
    std::fs::set_permissions(&second, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(first.data.join("ca_key.pem"), second.join("ca_key.pem")).unwrap();
    std::fs::set_permissions(second.join("ca_key.pem"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let logs = [tmp.path().join("replica-0.log"), tmp.path().join("replica-1.log")];
    let mut replicas = Replicas(Vec::new());
    let mut ports = [0u16; 2];
    for (i, dir) in [&first.data, &second].into_iter().enumerate() {
        let (child, port) = start_replica(dir, &url, &format!("ca-{i}.example.test"), &logs[i]);
        replicas.0.push(child);
        ports[i] = port;
    }
    let d = &first.data;
    let admin = |port: u16| admin_client(d, port);

    // Clients: two per replica, each submitting, signing, fetching, and revoking every other one.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let r = w % 2;
            let client = admin(ports[r]);
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let name = format!("drill-{w}-{i}.example.test");
                    let (acknowledged, cert) = issue(&rt, &client, &name);
                    {
                        let mut s = seen.lock().unwrap();
                        if acknowledged {
                            s.signed.insert(name.clone(), r);
                            s.signed_at[r].push(Instant::now());
                        } else {
                            s.failures[r] += 1;
                        }
                        if let Some(c) = &cert {
                            s.received.insert(name.clone(), c.clone());
                        }
                    }
                    if !acknowledged {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    }
                    let Some((serial, _)) = cert else { continue };
                    if i % 2 == 0 {
                        let revoke = call(
                            &rt,
                            &client,
                            Method::PUT,
                            &format!("/puppet-ca/v1/certificate_status/{name}"),
                            br#"{"desired_state":"revoked"}"#,
                        );
                        let mut s = seen.lock().unwrap();
                        if matches!(revoke, Ok(ref a) if a.status == StatusCode::NO_CONTENT) {
                            s.revoked.insert(serial);
                        } else {
                            s.failures[r] += 1;
                        }
                    }
                }
            })
        })
        .collect();

    // Readiness as a load balancer would see it: /status/v1/simple on each replica, every 50 ms.
    let status_log: Arc<Mutex<[Samples; 2]>> = Arc::default();
    let watcher = {
        let (status_log, stop) = (Arc::clone(&status_log), Arc::clone(&stop));
        let clients = [admin(ports[0]), admin(ports[1])];
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                for (r, c) in clients.iter().enumerate() {
                    let ok = matches!(
                        call(&rt, c, Method::GET, "/status/v1/simple", b""),
                        Ok(ref a) if a.status == StatusCode::OK && a.text() == "running"
                    );
                    status_log.lock().unwrap()[r].push((Instant::now(), ok));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    std::thread::sleep(Duration::from_secs(3));
    let before_kill = seen.lock().unwrap().signed.len();
    assert!(
        before_kill >= 4,
        "the load made progress before the kill: {before_kill}"
    );

    // The drill: kill the primary; a second later (the operator's reaction, shortened), promote the
    // standby. Meanwhile there is no writable server: nothing may be written to the standby.
    let killed = Instant::now();
    primary.stop_immediately();
    std::thread::sleep(Duration::from_secs(1));
    let promote_started = Instant::now();
    standby.promote();
    let promoted = Instant::now();
    assert_eq!(standby.psql("ca", "SELECT pg_is_in_recovery()"), "f");

    // Keep the load going until both replicas signed after the promotion, then a few seconds more.
    let deadline = promoted + Duration::from_secs(30);
    loop {
        let s = seen.lock().unwrap();
        if s.signed_at.iter().all(|v| v.iter().any(|t| *t > promoted)) {
            break;
        }
        drop(s);
        assert!(
            Instant::now() < deadline,
            "a replica did not sign within 30 s of the promotion: {}\n---\n{}",
            std::fs::read_to_string(&logs[0]).unwrap_or_default(),
            std::fs::read_to_string(&logs[1]).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    watcher.join().unwrap();

    // Both replicas report running again and sign again.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (r, port) in ports.iter().enumerate() {
        let c = admin(*port);
        let status = call(&rt, &c, Method::GET, "/status/v1/simple", b"").unwrap();
        assert_eq!(
            (status.status, status.text().as_str()),
            (StatusCode::OK, "running")
        );
        let name = format!("after-failover-{r}.example.test");
        let (ok, cert) = issue(&rt, &c, &name);
        assert!(ok && cert.is_some(), "replica {r} signs after the failover");
        let mut s = seen.lock().unwrap();
        s.signed.insert(name.clone(), r);
        s.received.insert(name, cert.unwrap());
    }

    let seen = seen.lock().unwrap();
    assert!(!seen.revoked.is_empty(), "revocations were acknowledged");

    // Everything acknowledged is on the new primary: every signed certname has its certificate, every
    // received certificate is stored byte for byte, no serial twice, every acknowledged revocation.
    let on_new = standby.url("ca");
    let stored = rt.block_on(async {
        let store = ca_server::storage::Store::open_url(&on_new).await.unwrap();
        let all = store.all_certificates().await.unwrap();
        store.close().await;
        all
    });
    let by_serial: BTreeMap<u64, &Vec<u8>> = stored.iter().map(|(r, _)| (r.serial, &r.der)).collect();
    assert_eq!(by_serial.len(), stored.len(), "no duplicate serial");
    let names: BTreeSet<&str> = stored.iter().map(|(r, _)| r.certname.as_str()).collect();
    for (name, r) in &seen.signed {
        assert!(
            names.contains(name.as_str()),
            "{name}, signed by replica {r}, lost"
        );
    }
    for (name, (serial, der)) in &seen.received {
        assert_eq!(
            by_serial.get(serial).map(|d| d.as_slice()),
            Some(der.as_slice()),
            "{name} (serial {serial}) lost or changed"
        );
    }
    let revoked_in_db: BTreeSet<u64> = stored
        .iter()
        .filter(|(r, _)| r.revoked.is_some())
        .map(|(r, _)| r.serial)
        .collect();
    for s in &seen.revoked {
        assert!(revoked_in_db.contains(s), "acknowledged revocation of {s} lost");
    }

    // Both replicas serve the same CRL (their feeds follow the new primary), listing every one.
    let crl_of = |port: u16| {
        let a = call(
            &rt,
            &admin(port),
            Method::GET,
            "/puppet-ca/v1/certificate_revocation_list/ca",
            b"",
        )
        .unwrap();
        assert_eq!(a.status, StatusCode::OK);
        a.text()
    };
    let started = Instant::now();
    let crl = loop {
        let (a, b) = (crl_of(ports[0]), crl_of(ports[1]));
        if a == b {
            break a;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the replicas serve different CRLs"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let in_crl = crate::harness::crl_serials_of(&crl);
    for s in &seen.revoked {
        assert!(
            in_crl.contains(s),
            "acknowledged revocation of {s} missing from the CRL"
        );
    }

    // Each replica's change feed listens on the new primary (notifications are sent there).
    let listening = standby.psql(
        "ca",
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'",
    );
    assert_eq!(listening, "2", "both change feeds on the new primary");

    // Each replica says it moved to the standby's port; the password is in no log.
    let new_label = format!("now using 127.0.0.1:{}", standby.port);
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains(&new_label), "no switch logged: {text}");
        assert!(!text.contains(SECRET), "the password is in the log");
    }

    // The figures.
    let statuses = status_log.lock().unwrap();
    println!(
        "failover drill: {} signings and {} revocations acknowledged ({} before the kill), {} + {} failed requests",
        seen.signed.len(),
        seen.revoked.len(),
        before_kill,
        seen.failures[0],
        seen.failures[1]
    );
    println!(
        "  kill -> promote started {} ms (deliberate pause); pg_ctl promote took {} ms",
        (promote_started - killed).as_millis(),
        (promoted - promote_started).as_millis()
    );
    let mut full_service = Duration::ZERO;
    for r in 0..2 {
        let signed = &seen.signed_at[r];
        let last_before = signed.iter().filter(|t| **t <= killed).max();
        let first_after = signed.iter().filter(|t| **t > promoted).min().unwrap();
        let stall = last_before.map(|t| *first_after - *t).unwrap_or_default();
        // The replica says `error` once its feed gave up connecting (after 1 s): a shorter outage may
        // not show at all.
        let last_error = statuses[r]
            .iter()
            .filter(|(t, ok)| *t > killed && !*ok)
            .map(|(t, _)| *t)
            .max();
        let running_again = last_error.and_then(|e| {
            statuses[r]
                .iter()
                .find(|(t, ok)| *t > e && *ok)
                .map(|(t, _)| t.saturating_duration_since(promoted))
        });
        let error_seen = last_error.is_some();
        full_service = full_service.max(*first_after - killed);
        println!(
            "  replica {r}: first signing acknowledged {} ms after the promotion ({} ms after the kill); \
             signing stalled {} ms (last acknowledged before the kill to first after the promotion); \
             /status/v1/simple: {} after the kill, running again {} ms after the promotion",
            (*first_after - promoted).as_millis(),
            (*first_after - killed).as_millis(),
            stall.as_millis(),
            if error_seen { "error" } else { "never error" },
            running_again
                .map(|d| d.as_millis().to_string())
                .unwrap_or_else(|| "-".into())
        );
    }
    println!(
        "  time to full service (kill to both replicas signing again): {} ms; of it after the promotion: {} ms",
        full_service.as_millis(),
        (full_service.saturating_sub(promoted - killed)).as_millis()
    );
    if std::env::var("DRILL_LOGS").is_ok() {
        for (r, v) in statuses.iter().enumerate() {
            let samples: Vec<String> = v
                .iter()
                .filter(|(t, _)| *t > killed)
                .take(60)
                .map(|(t, ok)| format!("{}:{}", (*t - killed).as_millis(), if *ok { "R" } else { "E" }))
                .collect();
            println!("status {r}: {}", samples.join(" "));
        }
        for log in &logs {
            println!("=== {}\n{}", log.display(), std::fs::read_to_string(log).unwrap());
        }
    }
    drop(replicas);
}

/// Which server a store uses, by `target_session_attrs`, wherever the primary is listed: `read-write`
/// and `primary` skip a standby listed first (and the schema and writes go to the primary); `any` takes
/// the first that answers, so a standby listed first cannot even be migrated; a list with no writable
/// server is refused with what each server was.
#[test]
fn target_session_attrs_chooses_the_server_by_its_role_wherever_it_is_listed() {
    use ca_server::storage::Store;
    let primary = PgCluster::start();
    let standby = PgCluster::standby_of(&primary);
    let list = |ports: &[u16], attrs: &str| {
        let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        format!(
            "postgresql://ca@{}/ca?target_session_attrs={attrs}",
            hosts.join(",")
        )
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open_url(&list(&[standby.port, primary.port], "read-write"))
            .await
            .unwrap();
        let mut tx = store.write().await.unwrap();
        tx.init_ca("chain", b"key-id", 1, 0).await.unwrap();
        tx.commit().await.unwrap();
        store.close().await;
        let store = Store::open_url(&list(&[standby.port, primary.port], "primary"))
            .await
            .unwrap();
        assert_eq!(store.ca().await.unwrap().unwrap().0, "chain");
        store.close().await;

        let e = Store::open_url(&list(&[standby.port, primary.port], "any"))
            .await
            .map(drop)
            .map_err(|e| ca_server::error::Chain(&e).to_string())
            .unwrap_err();
        assert!(e.contains("read-only"), "migrations on the standby: {e}");

        let e = Store::open_url(&list(&[standby.port], "read-write"))
            .await
            .map(drop)
            .map_err(|e| ca_server::error::Chain(&e).to_string())
            .unwrap_err();
        assert!(
            e.contains("no database server is writable")
                && e.contains(&format!("127.0.0.1:{} (a standby", standby.port)),
            "{e}"
        );
        let e = Store::open_url("postgresql://ca@127.0.0.1:1,[::1/ca")
            .await
            .map(drop)
            .map_err(|e| ca_server::error::Chain(&e).to_string())
            .unwrap_err();
        assert!(e.contains("closing ']'"), "{e}");
    });
    // The primary's write reached the standby.
    let started = Instant::now();
    while standby.psql("ca", "SELECT count(*) FROM ca") != "1" {
        assert!(started.elapsed() < Duration::from_secs(10), "not replicated");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A primary that vanishes without closing its connections (its processes stopped: no answer and
/// no reset, as when its host loses power or the network drops its packets) while a replica signs
/// and revokes, then the standby promoted: the replica's writes to the vanished server fail within
/// `limits.database-statement-timeout` (3 s here), it finds the new primary, and signs and revokes
/// again within seconds instead of after the kernel's retransmissions give up (about 15 minutes).
/// Every acknowledged signing and revocation is on the new primary.
#[test]
fn a_primary_that_vanishes_silently_is_left_within_the_statement_limit() {
    let (primary, standby, url, ca) = synchronous_pair("ca");
    let config = ca.path("silent.toml");
    std::fs::write(&config, "[limits]\ndatabase-statement-timeout = \"3s\"\n").unwrap();
    let log = ca.path("replica.log");
    let (child, port) = spawn_until_listening(
        Command::new(server_binary())
            .args(["--config", config.to_str().unwrap()])
            .args(["--data-dir", ca.data.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--certname", "ca-0.example.test", "--dns-alt-names", "localhost"])
            .env("CA_DATABASE_URL", &url)
            .env(
                "RUST_LOG",
                std::env::var("DRILL_RUST_LOG").unwrap_or("info".into()),
            ),
        &log,
        API_LISTENING,
        Duration::from_secs(30),
    );
    let _replica = Replicas(vec![child]);
    let d = &ca.data;
    let client = admin_client(d, port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let revoke = |name: &str| {
        call(
            &rt,
            &client,
            Method::PUT,
            &format!("/puppet-ca/v1/certificate_status/{name}"),
            br#"{"desired_state":"revoked"}"#,
        )
        .is_ok_and(|a| a.status == StatusCode::NO_CONTENT)
    };
    let mut acknowledged = BTreeMap::new();
    let mut revoked = BTreeSet::new();
    for i in 0..3 {
        let name = format!("before-{i}.example.test");
        let (ok, cert) = issue(&rt, &client, &name);
        assert!(ok, "signing before the drill");
        acknowledged.insert(name.clone(), cert.unwrap());
        if i == 0 {
            assert!(revoke(&name), "revoking before the drill");
            revoked.insert(acknowledged[&name].0);
        }
    }

    // Writes in flight when the primary stops answering: the CA's write lock held (here by a
    // transaction of the test's own), a CSR submitted and a revocation asked meanwhile wait for it
    // on the primary, and their writers with them.
    let held = rt.block_on(async {
        let store = ca_server::storage::Store::open_url(&primary.url("ca"))
            .await
            .unwrap();
        let tx = store.write().await.unwrap();
        (store, tx)
    });
    let in_flight = {
        let client = admin_client(d, port);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let started = Instant::now();
            let (submitted, _) = issue(&rt, &client, "in-flight.example.test");
            let revoked = call(
                &rt,
                &client,
                Method::PUT,
                "/puppet-ca/v1/certificate_status/before-1.example.test",
                br#"{"desired_state":"revoked"}"#,
            );
            (submitted, revoked.map(|a| a.status), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // The primary stops answering; the standby is promoted a second later.
    let frozen = primary.freeze();
    let vanished = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    standby.promote();
    assert_eq!(standby.psql("ca", "SELECT pg_is_in_recovery()"), "f");

    // The replica signs and revokes again; with no bound it would wait for minutes.
    let mut signed_again = None;
    let mut revoked_again = None;
    let mut i = 0;
    while signed_again.is_none() || revoked_again.is_none() {
        assert!(
            vanished.elapsed() < Duration::from_secs(60),
            "the replica did not sign and revoke again within 60 s: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        i += 1;
        let name = format!("after-{i}.example.test");
        let (ok, cert) = issue(&rt, &client, &name);
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let Some(cert) = cert else { continue };
        signed_again.get_or_insert(vanished.elapsed());
        acknowledged.insert(name.clone(), cert);
        if revoke(&name) {
            revoked.insert(acknowledged[&name].0);
            revoked_again.get_or_insert(vanished.elapsed());
        }
    }
    let (signed_again, revoked_again) = (signed_again.unwrap(), revoked_again.unwrap());
    // The writes that were in flight were answered (refused or done) instead of waiting on.
    let (submitted, in_flight_revoke, waited) = in_flight.join().unwrap();
    println!(
        "  the writes in flight were answered after {} ms",
        waited.as_millis()
    );
    if submitted {
        // Acknowledged: stored on the new primary, checked below with the others.
        acknowledged.insert("in-flight.example.test".to_string(), (u64::MAX, Vec::new()));
    }
    if let Ok(StatusCode::NO_CONTENT) = in_flight_revoke {
        revoked.insert(acknowledged["before-1.example.test"].0);
    }
    println!(
        "silent primary loss: signing again {} ms, revoking again {} ms after the primary stopped \
         answering (statement limit 3 s, promotion after 1 s)",
        signed_again.as_millis(),
        revoked_again.as_millis()
    );
    assert!(
        signed_again < Duration::from_secs(30) && revoked_again < Duration::from_secs(30),
        "{signed_again:?} {revoked_again:?}"
    );

    // Everything acknowledged is on the new primary.
    let stored = rt.block_on(async {
        let store = ca_server::storage::Store::open_url(&standby.url("ca"))
            .await
            .unwrap();
        let all = store.all_certificates().await.unwrap();
        store.close().await;
        all
    });
    let by_serial: BTreeMap<u64, &ca_server::storage::CertRow> =
        stored.iter().map(|(r, _)| (r.serial, r)).collect();
    assert_eq!(by_serial.len(), stored.len(), "no duplicate serial");
    for (name, (serial, der)) in &acknowledged {
        if *serial == u64::MAX {
            assert!(
                stored.iter().any(|(r, _)| &r.certname == name),
                "{name}, acknowledged, lost"
            );
            continue;
        }
        let row = by_serial
            .get(serial)
            .unwrap_or_else(|| panic!("{name} (serial {serial}) lost"));
        assert_eq!(&row.der, der, "{name} changed");
        // A refused revocation may still have committed (its outcome unknown); an acknowledged one
        // must be there.
        assert!(
            row.revoked.is_some() || !revoked.contains(serial),
            "{name}: acknowledged revocation lost"
        );
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains(&format!("now using 127.0.0.1:{}", standby.port)),
        "no switch logged: {text}"
    );
    if std::env::var("DRILL_LOGS").is_ok() {
        println!("{text}");
    }
    drop(frozen);
    drop(held);
}
