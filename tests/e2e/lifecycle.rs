//! CA lifecycle beyond puppetserver: the relying parties' CRL (`/crl.pem`, `/crl.der`) checked with
//! `openssl verify -crl_check` and nginx's `ssl_crl`, and re-signed before it lapses.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use hyper::StatusCode;
use x509_parser::prelude::FromDer;

use crate::harness::{crl_check, free_port, FixedClockCa};
use crate::server::{As, TestServer};

/// Number, thisUpdate and nextUpdate (Unix seconds) of a DER CRL, and its serials.
fn crl_facts(der: &[u8]) -> (u64, i64, i64, Vec<u64>) {
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der).expect("a CRL");
    let number = crl
        .crl_number()
        .and_then(|n| u64::try_from(n.clone()).ok())
        .expect("a CRL number");
    let serials = crl
        .iter_revoked_certificates()
        .map(|r| u64::try_from(r.user_certificate.clone()).expect("serial"))
        .collect();
    (
        number,
        crl.last_update().timestamp(),
        crl.next_update().expect("nextUpdate").timestamp(),
        serials,
    )
}

fn pem_der(pem_text: &str) -> Vec<u8> {
    let p = pem::parse(pem_text).expect("PEM");
    assert_eq!(p.tag(), "X509 CRL");
    p.into_contents()
}

/// nginx serving TLS on a loopback port with a certificate of ours, its `server` block completed by
/// `extra`; stopped when dropped.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Client certificates checked against `ca` and `ssl_crl`.
    fn start(ca: &Path, crl: &Path, cert: &Path, key: &Path) -> Nginx {
        let extra = format!(
            "  ssl_client_certificate {};\n  ssl_verify_client on;\n  ssl_crl {};\n",
            ca.display(),
            crl.display()
        );
        Self::start_with(cert, key, &extra)
    }

    fn start_with(cert: &Path, key: &Path, extra: &str) -> Nginx {
        let program = ["/usr/sbin/nginx", "/sbin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .expect("nginx (scripts/test installs it)");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let port = free_port();
        let conf = format!(
            "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\nevents {{}}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port} ssl;\n  ssl_certificate {cert};\n  ssl_certificate_key {key};\n\
             {extra}  location / {{ return 200 \"hello $ssl_client_s_dn\\n\"; }}\n }}\n}}\n",
            cert = cert.display(),
            key = key.display(),
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        use std::os::unix::process::CommandExt;
        let child = Command::new(program)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("nginx");
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "nginx did not start: {log}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Nginx { child, port, dir }
    }

    /// The status nginx answers a client presenting `cert`.
    fn status_for(&self, cert: &Path, key: &Path) -> String {
        let out = Command::new("curl")
            .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "--cert"])
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg(format!("https://127.0.0.1:{}/", self.port))
            .stdin(Stdio::null())
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

fn cert_key(who: &As) -> (PathBuf, PathBuf) {
    match who {
        As::Cert(c, k) => (c.clone(), k.clone()),
        _ => unreachable!("an identity with a certificate"),
    }
}

#[test]
fn relying_party_crl_is_short_lived_follows_revocations_and_satisfies_openssl_and_nginx() {
    let s = TestServer::start();
    let (good, good_key) = cert_key(&s.identity("good.example.test"));
    let (bad, bad_key) = cert_key(&s.identity("bad.example.test"));
    let (web, web_key) = cert_key(&s.identity("web.example.test"));
    let agents_crl = || {
        pem_der(
            &s.get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca")
                .text(),
        )
    };

    // DER and PEM, no client certificate; the agents' CRL's number, a 7-day nextUpdate.
    let der = s.get(&As::Anonymous, "/crl.der");
    assert_eq!(der.status, StatusCode::OK);
    assert_eq!(der.headers["content-type"], "application/pkix-crl");
    let pem = s.get(&As::Anonymous, "/crl.pem");
    assert_eq!(pem.status, StatusCode::OK);
    assert_eq!(pem_der(&pem.text()), der.body.to_vec());
    let (number, this_update, next_update, serials) = crl_facts(&der.body);
    let (agents_number, agents_this, agents_next, _) = crl_facts(&agents_crl());
    assert_eq!(number, agents_number);
    assert_eq!(this_update, agents_this);
    assert_eq!(
        next_update - this_update,
        7 * 86_400 + 1,
        "7 days after the backdated thisUpdate"
    );
    assert!(
        agents_next - agents_this > 4 * 365 * 86_400,
        "the agents' CRL keeps its years"
    );
    assert!(serials.is_empty());

    // Not modified since it was served.
    let since = pem.headers["last-modified"].to_str().unwrap().to_string();
    let again = s.send(
        &As::Anonymous,
        hyper::Method::GET,
        "/crl.pem",
        &[("if-modified-since", since.as_str())],
        b"",
    );
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);

    // A revocation re-signs it with the agents' next CRL number, and the revoked certificate fails
    // `openssl verify -crl_check` while the good one passes.
    s.ca.ca(&["revoke", "bad.example.test"]).ok();
    let pem = s.get(&As::Anonymous, "/crl.pem").text();
    let (number2, _, next2, serials2) = crl_facts(&pem_der(&pem));
    assert_eq!(number2, number + 1);
    assert_eq!(number2, crl_facts(&agents_crl()).0);
    assert_eq!(serials2.len(), 1);
    assert!(next2 - now() < 8 * 86_400);
    let crl_file = s.ca.path("relying.pem");
    std::fs::write(&crl_file, &pem).unwrap();
    let ca = s.ca.ca_cert();
    let err = crl_check(&ca, &crl_file, &bad).unwrap_err();
    assert!(err.contains("certificate revoked"), "{err}");
    crl_check(&ca, &crl_file, &good).unwrap();

    // nginx with `ssl_crl` set to it: the good client is served, the revoked one refused.
    let nginx = Nginx::start(&ca, &crl_file, &web, &web_key);
    assert_eq!(nginx.status_for(&good, &good_key), "200");
    assert_eq!(nginx.status_for(&bad, &bad_key), "400");

    // No OCSP configured: no responder until the first OCSP request, which issues it.
    assert!(!s.ca.data.join("ocsp").exists());
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let req = s.ca.path("req.der");
    let (ok, made) = crate::harness::openssl(&[
        "ocsp",
        "-issuer",
        &path(&ca),
        "-cert",
        &path(&good),
        "-no_nonce",
        "-reqout",
        &path(&req),
    ]);
    assert!(ok, "{made}");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--fail",
            "--cacert",
            &path(&ca),
            "-H",
            "Content-Type: application/ocsp-request",
        ])
        .arg("--data-binary")
        .arg(format!("@{}", path(&req)))
        .arg(format!("{}/ocsp", s.url()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let resp = s.ca.path("resp.der");
    std::fs::write(&resp, &out.stdout).unwrap();
    let (_, text) = crate::harness::openssl(&[
        "ocsp",
        "-respin",
        &path(&resp),
        "-issuer",
        &path(&ca),
        "-CAfile",
        &path(&ca),
        "-cert",
        &path(&good),
    ]);
    assert!(
        text.contains("Response verify OK") && text.contains(": good"),
        "{text}"
    );
    assert!(s.ca.data.join("ocsp/cert.pem").exists());
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// At a fixed clock: the relying parties' CRL is re-signed (with the agents', as the next CRL number,
/// keeping every entry) once half of its 7 days has passed, long before agents' CRL would be.
#[test]
fn relying_party_crl_is_re_signed_before_it_lapses() {
    let f = FixedClockCa::with_settings(
        false,
        ca_server::authority::CaSettings {
            crl_lifetime: time::Duration::days(10),
            ..Default::default()
        },
    );
    let a = &f.authority;
    let at = |secs: i64| f.clock.set(f.t0 + time::Duration::seconds(secs));
    let snapshot = || f.rt.block_on(a.crl()).unwrap();
    let first = snapshot();
    let relying = first.relying().unwrap().expect("dated at setup");
    assert_eq!(relying.next_update, f.t0.unix_timestamp() + 7 * 86_400);
    assert_eq!(crl_facts(&relying.der).0, first.number());

    let gone = "gone.example.test";
    f.rt.block_on(a.generate("t", gone, &[], ca_server::ca::keys::KeyType::EcP256, None))
        .unwrap();
    let issued = f.rt.block_on(a.revoke("t", gone, Default::default())).unwrap()[0];
    let revoked = snapshot();

    at(3 * 86_400);
    assert_eq!(f.rt.block_on(a.refresh_crl_if_due()).unwrap(), None);
    at(3 * 86_400 + 12 * 3_600 + 60);
    let n =
        f.rt.block_on(a.refresh_crl_if_due())
            .unwrap()
            .expect("due after half of 7 days");
    assert_eq!(n, revoked.number() + 1);
    let fresh = snapshot();
    let relying = fresh.relying().unwrap().unwrap();
    let (number, this_update, next_update, serials) = crl_facts(&relying.der);
    assert_eq!(number, n);
    assert_eq!(serials, vec![issued]);
    let now = f.t0.unix_timestamp() + 3 * 86_400 + 12 * 3_600 + 60;
    assert_eq!(next_update, now + 7 * 86_400);
    assert_eq!(this_update, now - 1);
    // The agents' CRL moved with it: same number, same entries, its own 10 days.
    assert_eq!(fresh.number(), n);
    assert_eq!(fresh.row().next_update, now + 10 * 86_400);
    assert_eq!(crl_facts(&fresh.row().der).3, vec![issued]);
}

/// `ca expirations` (local and remote), the expirations endpoint, `/metrics` and `ca list` agree on
/// what expires within the window; a revoked certificate is no longer listed.
#[test]
fn expirations_are_listed_counted_and_marked() {
    let s = TestServer::start_with("[ca]\nexpiry-warning = \"60d\"\n");
    let out = s.ca.path("ids");
    let short = "short-lived.example.test";
    for (name, ttl) in [(short, "20d"), ("long-lived.example.test", "5y")] {
        s.ca.ca(&[
            "generate",
            name,
            "--key-type",
            "ec-p256",
            "--ttl",
            ttl,
            "--out",
            out.to_str().unwrap(),
        ])
        .ok();
    }

    // Local mode: only the 20-day certificate within 30 days; everything with its kind otherwise.
    let text = s.ca.ca(&["expirations", "--within", "30d"]).ok().stdout;
    assert!(text.starts_with("EXPIRES"), "{text}");
    assert!(text.contains(short) && text.contains("certificate"), "{text}");
    assert!(!text.contains("long-lived"), "{text}");
    let line = text.lines().find(|l| l.contains(short)).unwrap();
    assert!(line.contains(" 20 "), "a started day counts whole: {line}");
    let json = s.ca.ca(&["expirations", "--format", "json"]).ok().stdout;
    let all: serde_json::Value = serde_json::from_str(&json).unwrap();
    let kinds: std::collections::BTreeSet<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    for k in ["ca", "server", "admin", "crl", "relying-crl", "certificate"] {
        assert!(kinds.contains(k), "{k} in {json}");
    }
    let expires: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["expires_unix"].as_i64().unwrap())
        .collect();
    assert!(expires.windows(2).all(|w| w[0] <= w[1]), "soonest first: {json}");

    // Remote mode and the endpoint: the same list for the admin, puppetserver's answer for agents.
    let remote = s.remote_ca(&["expirations", "--within", "30d"]).ok().stdout;
    assert_eq!(remote, text);
    let agent = s.identity("plain.example.test");
    let for_agent: serde_json::Value =
        serde_json::from_slice(&s.get(&agent, "/puppet-ca/v1/expirations").body).unwrap();
    assert!(for_agent.get("ca-certs").is_some() && for_agent.get("expiring").is_none());
    let for_admin: serde_json::Value =
        serde_json::from_slice(&s.get(&As::Admin, "/puppet-ca/v1/expirations?within=30d").body).unwrap();
    let certs: Vec<&serde_json::Value> = for_admin["expiring"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "certificate")
        .collect();
    assert_eq!(certs.len(), 1, "{for_admin}");
    assert_eq!(certs[0]["name"], short);
    let bad = s.get(&As::Admin, "/puppet-ca/v1/expirations?within=soon");
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("Invalid within"), "{}", bad.text());

    // /metrics: within the configured 60 days.
    let metrics = s.get(&As::Anonymous, "/metrics").text();
    assert!(metrics.contains("\nca_certificates_expiring 1\n"), "{metrics}");
    assert!(metrics.contains("\nca_certificates_expired 0\n"), "{metrics}");
    assert!(
        metrics.contains("\nca_expiry_warning_seconds 5184000\n"),
        "{metrics}"
    );

    // `ca list --all` marks it.
    let list = s.ca.ca(&["list", "--all"]).ok().stdout;
    let line = list.lines().find(|l| l.contains(short)).unwrap();
    assert!(line.contains("expires in 20 days"), "{line}");
    assert!(!list
        .lines()
        .find(|l| l.contains("long-lived"))
        .unwrap()
        .contains("expires"));

    // Revoked: no longer expiring, nowhere.
    s.ca.ca(&["revoke", short]).ok();
    let text = s.ca.ca(&["expirations", "--within", "30d"]).ok().stdout;
    assert!(!text.contains(short), "{text}");
    assert!(text.contains("relying-crl"), "the 7-day CRL: {text}");
    let metrics = s.get(&As::Anonymous, "/metrics").text();
    assert!(metrics.contains("\nca_certificates_expiring 0\n"), "{metrics}");
}

/// A CA certificate near its end: `ca list` warns, and the server logs it at start.
#[test]
fn a_ca_certificate_near_its_end_is_warned_about() {
    let ca = crate::harness::TestCa::setup(&["--ca-ttl", "20d", "--key-type", "ec-p256"]);
    let run = ca.ca(&["list", "--all"]).ok();
    assert!(
        run.stderr.contains("Warning: the CA certificate")
            && run.stderr.contains("expires in 20 days")
            && !run.stderr.contains("CRL"),
        "{}",
        run.stderr
    );
    let (server, _) = crate::reload::Running::start_on_any_port(&ca, &[], &[]);
    let started = std::time::Instant::now();
    while !server.log().contains("certificate expires soon") {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "{}",
            server.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let line = server
        .log()
        .lines()
        .find(|l| l.contains("certificate expires soon"))
        .unwrap()
        .to_string();
    assert!(line.contains("Ca") && line.contains("days_left=20"), "{line}");
    assert!(!server.log().contains("CRL not re-signed"), "{}", server.log());
}

/// `ca revoke --serial` for a certificate this CA holds no copy of: a puppetserver CA (made by the
/// real CLI) whose signed/ file was lost is imported with its inventory; the serial is revoked with
/// its certname from the inventory, and the CRL refuses the lost certificate in `openssl verify`.
#[test]
fn revoke_by_serial_covers_certificates_known_only_from_the_inventory() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let conf = t.join("puppet.conf");
    let cadir = t.join("cadir");
    std::fs::write(
        &conf,
        format!(
            "[main]\ncertname = old-ca.example.test\nssldir = {ssl}\ncadir = {cadir}\nkeylength = 2048\n[server]\ncadir = {cadir}\n",
            ssl = t.join("ssl").display(),
            cadir = cadir.display()
        ),
    )
    .unwrap();
    crate::migration::real_cli(&conf, &["setup"]);
    let lost = "lost.example.test";
    crate::migration::real_cli(&conf, &["generate", "--certname", lost, "--ca-client", "--force"]);
    let lost_cert = t.join("ssl/certs/lost.example.test.pem");
    let (_, serial_text) =
        crate::harness::openssl(&["x509", "-in", lost_cert.to_str().unwrap(), "-noout", "-serial"]);
    let serial = u64::from_str_radix(serial_text.trim().trim_start_matches("serial="), 16).unwrap();
    std::fs::remove_file(cadir.join(format!("signed/{lost}.pem"))).unwrap();
    // Offline generation skips the inventory; a CA signing it over the API writes this line.
    let mut inventory = std::fs::read_to_string(cadir.join("inventory.txt")).unwrap();
    inventory.push_str(&format!(
        "0x{serial:04x} 2026-01-01T00:00:00UTC 2031-01-01T00:00:00UTC /CN={lost}\n"
    ));
    std::fs::write(cadir.join("inventory.txt"), inventory).unwrap();

    let ca = crate::harness::TestCa {
        data: t.join("data"),
        tmp,
    };
    ca.ca(&["import", "--cadir", cadir.to_str().unwrap()]).ok();
    // Not held: revoking by name cannot reach it.
    ca.ca(&["revoke", lost]).fails_with(1, "");
    let out = ca
        .ca(&["revoke", "--serial", &format!("0x{serial:X}")])
        .ok()
        .stdout;
    assert!(
        out.contains(&format!("Revoked serial {serial}")) && out.contains(lost),
        "{out}"
    );
    let again = ca.ca(&["revoke", "--serial", &serial.to_string()]).ok().stdout;
    assert!(again.contains("already revoked"), "{again}");
    let crl = ca.path("crl.pem");
    std::fs::write(&crl, ca.ca(&["crl"]).ok().stdout).unwrap();
    let err = crl_check(&ca.ca_cert(), &crl, &lost_cert).unwrap_err();
    assert!(err.contains("certificate revoked"), "{err}");
    let audit = ca.audit(lost);
    assert!(audit
        .iter()
        .any(|r| r.action == "revoke" && r.serial == Some(i64::try_from(serial).unwrap())));

    // Never issued, not a number: refused, nothing changes.
    ca.ca(&["revoke", "--serial", "999999"])
        .fails_with(1, "was never issued by this CA");
    ca.ca(&["revoke", "--serial", "0xZZ"])
        .fails_with(1, "is not a serial");
    let listed = crate::harness::crl_serials_of(&ca.ca(&["crl"]).ok().stdout);
    assert_eq!(listed.into_iter().collect::<Vec<_>>(), vec![serial]);
}

/// Subject (DER), public key, subject key identifier and notAfter of a PEM certificate (the first).
fn ca_facts(path: &Path) -> (Vec<u8>, Vec<u8>, Vec<u8>, i64) {
    let der = pem::parse(std::fs::read(path).unwrap()).unwrap().into_contents();
    let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
    let ski = c
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .expect("a subject key identifier");
    (
        c.subject().as_raw().to_vec(),
        c.public_key().raw.to_vec(),
        ski,
        c.validity().not_after.timestamp(),
    )
}

/// `ca extend-ca` on a CA made to expire in 30 days: same subject, key and key identifier, a new
/// notAfter; a Puppet 7 agent bootstrapped under the old CA certificate keeps working after the
/// restart, and picks up the new one with the documented step (remove its CA file, bootstrap).
#[test]
fn extend_ca_keeps_every_certificate_verifying_and_puppet7_agents_pick_it_up() {
    use crate::real_clients::{agent_args_at, require, text};
    require("puppet");
    let ca =
        crate::harness::TestCa::with_args(&["--dns-alt-names", "localhost,IP:127.0.0.1", "--ca-ttl", "30d"]);
    let config = "[ca]\nautosign = true\n";
    let s = TestServer::launch(ca, config);
    let agent_dir = tempfile::tempdir().unwrap();
    let name = "p7-extend.example.test";
    let ssl = |port: u16, action: &str| {
        Command::new("puppet")
            .args(["ssl", action])
            .args(agent_args_at(port, agent_dir.path(), name))
            .args(["--waitforcert", "0"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = ssl(s.addr.port(), "bootstrap");
    assert!(out.status.success(), "{}", text(&out));
    let agent_ca = agent_dir.path().join("ssl/certs/ca.pem");
    let agent_cert = agent_dir.path().join(format!("ssl/certs/{name}.pem"));
    let old = ca_facts(&s.ca.ca_cert());
    assert_eq!(ca_facts(&agent_ca), old);

    let out = s.ca.ca(&["extend-ca", "--ttl", "10y"]).ok().stdout;
    assert!(
        out.contains("Extended 'Puppet CA: ") && out.contains("Restart each ca-server"),
        "{out}"
    );
    let new = ca_facts(&s.ca.ca_cert());
    assert_eq!(
        (&new.0, &new.1, &new.2),
        (&old.0, &old.1, &old.2),
        "same subject, key, key identifier"
    );
    assert!(new.3 - now() > 9 * 365 * 86_400, "valid for ten years now");
    // Everything issued under the old certificate verifies under the new one (openssl).
    crate::harness::assert_verifies(&s.ca.ca_cert(), &agent_cert);
    crate::harness::assert_verifies(&s.ca.ca_cert(), &s.ca.data.join("server/cert.pem"));
    crate::harness::assert_verifies(&s.ca.ca_cert(), &s.ca.data.join("admin/cert.pem"));
    s.ca.ca(&["extend-ca", "--server", "https://localhost:1"])
        .fails_with(1, "data directory only");
    let audit = s.ca.with_store(async |st| st.audit_rows(None).await.unwrap());
    assert!(audit.iter().any(|r| r.action == "extend-ca"));

    // After the restart the new chain is served; the agent, still with the old one, keeps working.
    let s = s.restart(config);
    let served = s.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca").text();
    assert_eq!(served, std::fs::read_to_string(s.ca.ca_cert()).unwrap());
    let out = ssl(s.addr.port(), "verify");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(ca_facts(&agent_ca), old, "Puppet 7 keeps its CA file");
    // The documented step for Puppet 7: remove the CA file and bootstrap again.
    std::fs::remove_file(&agent_ca).unwrap();
    let out = ssl(s.addr.port(), "bootstrap");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&agent_ca).unwrap(), served);
    let out = ssl(s.addr.port(), "verify");
    assert!(out.status.success(), "{}", text(&out));
}

/// `openssl ocsp` against `url` for `args` (`-cert FILE` or `-serial N`), the CA as issuer and trust
/// anchor; stdout and stderr together.
fn openssl_ocsp(ca: &Path, url: &str, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(ca)
        .arg("-CAfile")
        .arg(ca)
        .args(["-url", url])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// OCSP with the real `openssl ocsp`: good, revoked after `ca revoke` (at once), unknown for a serial
/// never issued; signed by the delegated responder (its certificate is the CA's, with OCSPSigning),
/// the nonce echoed; the same answers over GET and on the TLS port; answers to nonce-less requests
/// served again without signing until a revocation; garbage gets `malformedRequest`.
#[test]
fn ocsp_answers_good_revoked_and_unknown_to_openssl() {
    let s = TestServer::start_with_plain(|addr| format!("ocsp-listen = \"{addr}\"\n"));
    let plain = s.plain_port();
    let ca = s.ca.ca_cert();
    let (cert, _) = cert_key(&s.identity("ocsp-agent.example.test"));
    let url = format!("http://127.0.0.1:{plain}/ocsp");
    let path = |p: &Path| p.to_str().unwrap().to_string();

    let out = openssl_ocsp(&ca, &url, &["-cert", &path(&cert)]);
    assert!(
        out.contains("Response verify OK") && out.contains(": good"),
        "{out}"
    );
    assert!(!out.contains("WARNING"), "the nonce is echoed: {out}");
    let out = openssl_ocsp(&ca, &url, &["-serial", "0x7FFFFFFF"]);
    assert!(
        out.contains("Response verify OK") && out.contains(": unknown"),
        "{out}"
    );

    // The responder's certificate: issued by the CA for OCSP signing only, short-lived.
    let responder = s.ca.data.join("ocsp/cert.pem");
    crate::harness::assert_verifies(&ca, &responder);
    let (_, text) = crate::harness::openssl(&["x509", "-in", &path(&responder), "-noout", "-text"]);
    assert!(
        text.contains("OCSP Signing") && text.contains("OCSP No Check"),
        "{text}"
    );
    assert!(!text.contains("TLS Web"), "{text}");

    // A nonce-less request (as nginx's stapling sends) is answered from memory: the same bytes.
    let req = s.ca.path("req.der");
    let (ok, made) = crate::harness::openssl(&[
        "ocsp",
        "-issuer",
        &path(&ca),
        "-cert",
        &path(&cert),
        "-no_nonce",
        "-reqout",
        &path(&req),
    ]);
    assert!(ok, "{made}");
    let post = |to: &str, extra: &[&str]| -> Vec<u8> {
        let out = Command::new("curl")
            .args([
                "-sS",
                "--fail",
                "-H",
                "Content-Type: application/ocsp-request",
                "--data-binary",
            ])
            .arg(format!("@{}", path(&req)))
            .args(extra)
            .arg(to)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };
    let first = post(&url, &[]);
    assert_eq!(post(&url, &[]), first, "kept and served again");
    // The TLS port answers the same (no client certificate needed).
    let tls_url = format!("{}/ocsp", s.url());
    assert_eq!(post(&tls_url, &["--cacert", &path(&ca)]), first);
    // GET: base64 of the DER request, percent-encoded.
    let b64 = {
        use std::io::Write;
        let mut child = Command::new("openssl")
            .args(["base64", "-A"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&std::fs::read(&req).unwrap())
            .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    let got = Command::new("curl")
        .args(["-sS", "--fail"])
        .arg(format!("{url}/{}", crate::harness::url_encode(b64.trim())))
        .output()
        .unwrap();
    assert_eq!(got.stdout, first, "GET and POST answer alike");

    // Revoked: at once, with its reason; the kept answer is not served any more.
    s.ca.ca(&["revoke", "ocsp-agent.example.test", "--reason", "superseded"])
        .ok();
    let out = openssl_ocsp(&ca, &url, &["-cert", &path(&cert)]);
    assert!(
        out.contains("Response verify OK") && out.contains(": revoked"),
        "{out}"
    );
    assert!(out.contains("Reason: superseded"), "{out}");
    let after = post(&url, &[]);
    assert_ne!(after, first);
    let resp = s.ca.path("resp.der");
    std::fs::write(&resp, &after).unwrap();
    let (_, text) = crate::harness::openssl(&[
        "ocsp",
        "-respin",
        &path(&resp),
        "-issuer",
        &path(&ca),
        "-CAfile",
        &path(&ca),
        "-cert",
        &path(&cert),
    ]);
    assert!(text.contains(": revoked"), "{text}");

    // Garbage: malformedRequest (status 1), over HTTP 200, as RFC 6960 wants.
    let bad = Command::new("curl")
        .args([
            "-sS",
            "--data-binary",
            "not a request",
            "-H",
            "Content-Type: application/ocsp-request",
        ])
        .arg(&url)
        .output()
        .unwrap();
    assert_eq!(bad.stdout, vec![0x30, 0x03, 0x0a, 0x01, 0x01]);
}

/// CRL Distribution Points and Authority Information Access, configured, are in issued
/// certificates, and the real tools follow them: `openssl verify -crl_download` fetches the relying
/// parties' CRL from the CDP, `openssl ocsp` asks the AIA's responder; nginx staples OCSP answers.
#[test]
fn cdp_and_aia_urls_are_followed_by_openssl_and_nginx_staples_ocsp() {
    let s = TestServer::start_with_plain(|addr| {
        let base = format!("http://{addr}");
        format!(
            "ocsp-listen = \"{addr}\"\n[ca]\ncrl-distribution-points = [\"{base}/crl.der\"]\n\
             ocsp-urls = [\"{base}/ocsp\"]\nca-issuers-urls = [\"https://ca.example.test:8140/puppet-ca/v1/certificate/ca\"]\n"
        )
    });
    let plain = s.plain_port();
    let base = format!("http://127.0.0.1:{plain}");
    let ca = s.ca.ca_cert();
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let (cert, _) = cert_key(&s.identity("cdp.example.test"));
    let (_, text) = crate::harness::openssl(&["x509", "-in", &path(&cert), "-noout", "-text"]);
    assert!(
        text.contains("X509v3 CRL Distribution Points") && text.contains(&format!("URI:{base}/crl.der")),
        "{text}"
    );
    assert!(text.contains(&format!("OCSP - URI:{base}/ocsp")), "{text}");
    assert!(
        text.contains("CA Issuers - URI:https://ca.example.test:8140/puppet-ca/v1/certificate/ca"),
        "{text}"
    );
    let (_, uri) = crate::harness::openssl(&["x509", "-in", &path(&cert), "-noout", "-ocsp_uri"]);
    let out = openssl_ocsp(&ca, uri.trim(), &["-cert", &path(&cert)]);
    assert!(
        out.contains("Response verify OK") && out.contains(": good"),
        "{out}"
    );
    let verify = || {
        crate::harness::openssl(&[
            "verify",
            "-crl_check",
            "-crl_download",
            "-CAfile",
            &path(&ca),
            &path(&cert),
        ])
    };
    let (ok, out) = verify();
    assert!(ok, "{out}");

    // nginx with stapling: its certificate names no responder, so it is given one.
    let (web, web_key) = cert_key(&s.identity("stapling.example.test"));
    let extra = format!(
        "  ssl_stapling on;\n  ssl_stapling_verify on;\n  ssl_trusted_certificate {};\n  ssl_stapling_responder {base}/ocsp;\n",
        path(&ca)
    );
    let nginx = Nginx::start_with(&web, &web_key, &extra);
    // nginx asks the responder after the first handshake; the next ones carry the answer.
    let started = std::time::Instant::now();
    let stapled = loop {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", nginx.port),
                "-status",
                "-CAfile",
            ])
            .arg(&ca)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("OCSP Response Status: successful") {
            break text;
        }
        let log = std::fs::read_to_string(nginx.dir.path().join("error.log")).unwrap_or_default();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "no stapled answer: {text}\n{log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(stapled.contains("Cert Status: good"), "{stapled}");

    // Revoked: the CRL at the CDP says so at once.
    s.ca.ca(&["revoke", "cdp.example.test"]).ok();
    let (ok, out) = verify();
    assert!(!ok && out.contains("certificate revoked"), "{out}");
}

/// A CA key rollover from start to finish with real Puppet 7 agents: agent A bootstrapped under the
/// old key keeps talking to the CA through `start` and `switch`; agent B, bootstrapped after the
/// switch, gets a certificate of the new key and the CA bundle of both; revocations of either reach
/// a CRL of its issuer (openssl); after `finish` only the new CA is served and the server's own
/// certificate is the new key's, and B keeps working.
#[test]
fn key_rollover_keeps_old_and_new_agents_working_from_start_to_finish() {
    use crate::real_clients::{agent_args_at, require, text};
    require("puppet");
    let config = "[ca]\nautosign = true\n";
    let s = TestServer::start_with(config);
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let puppet = |port: u16, dir: &Path, name: &str, action: &str| {
        let out = Command::new("puppet")
            .args(["ssl", action])
            .args(agent_args_at(port, dir, name))
            .args(["--waitforcert", "0"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: puppet ssl {action}: {}",
            text(&out)
        );
    };
    let bundle_of = |s: &TestServer| -> Vec<Vec<u8>> {
        let text = s.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca").text();
        pem::parse_many(text)
            .unwrap()
            .into_iter()
            .map(pem::Pem::into_contents)
            .collect()
    };
    let key_of = |der: &[u8]| {
        let (_, c) = x509_parser::parse_x509_certificate(der).unwrap();
        (c.subject().as_raw().to_vec(), c.public_key().raw.to_vec())
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = ("rollover-a.example.test", "rollover-b.example.test");
    let cert_in = |dir: &Path, name: &str| dir.join(format!("ssl/certs/{name}.pem"));
    puppet(s.addr.port(), a_dir.path(), a, "bootstrap");
    let old = bundle_of(&s);
    assert_eq!(old.len(), 1);

    // start: the new CA certificate is served beside the old one; nothing else changes.
    let out =
        s.ca.ca(&["rollover", "start", "--key-type", "ec-p256", "--ttl", "10y"])
            .ok()
            .stdout;
    assert!(out.contains("New CA key and certificate made"), "{out}");
    s.ca.ca(&["rollover", "start"])
        .fails_with(1, "already in progress");
    let s = s.restart(config);
    let both = bundle_of(&s);
    assert_eq!(both.len(), 2);
    assert_eq!(both[0], old[0]);
    assert_eq!(key_of(&both[1]).0, key_of(&old[0]).0, "the same name");
    assert_ne!(key_of(&both[1]).1, key_of(&old[0]).1, "a new key");
    let next_ca = s.ca.data.join("rollover/next_ca_crt.pem");
    // The cross-certificates chain each key to the other CA.
    let cross_new = s.ca.data.join("rollover/cross_new_by_old.pem");
    let cross_old = s.ca.data.join("rollover/cross_old_by_new.pem");
    crate::harness::assert_verifies(&s.ca.ca_cert(), &cross_new);
    crate::harness::assert_verifies(&next_ca, &cross_old);
    puppet(s.addr.port(), a_dir.path(), a, "download_cert");

    // switch: new certificates are the new key's; the old CA is still served and trusted.
    s.ca.ca(&["rollover", "switch"]).ok();
    let s = s.restart(config);
    let switched = bundle_of(&s);
    assert_eq!(switched.len(), 2);
    assert_eq!(
        key_of(&switched[1]),
        key_of(&old[0]),
        "the old CA after the new one"
    );
    puppet(s.addr.port(), b_dir.path(), b, "bootstrap");
    let (a_cert, b_cert) = (cert_in(a_dir.path(), a), cert_in(b_dir.path(), b));
    crate::harness::assert_verifies(&next_ca, &b_cert);
    let old_ca = s.ca.path("old_ca.pem");
    std::fs::write(&old_ca, ca_server::ca::pem_encode("CERTIFICATE", &old[0])).unwrap();
    assert!(!crate::harness::openssl(&["verify", "-CAfile", &path(&old_ca), &path(&b_cert)]).0);
    puppet(s.addr.port(), b_dir.path(), b, "download_cert");
    puppet(s.addr.port(), a_dir.path(), a, "download_cert");
    let who = |dir: &Path, name: &str| {
        As::Cert(
            cert_in(dir, name),
            dir.join(format!("ssl/private_keys/{name}.pem")),
        )
    };
    for (dir, name) in [(a_dir.path(), a), (b_dir.path(), b)] {
        let ok = s.try_send(
            &who(dir, name),
            hyper::Method::GET,
            "/puppet-ca/v1/expirations",
            &[],
            b"",
        );
        assert!(ok.is_ok_and(|r| r.status == StatusCode::OK), "{name} is served");
    }

    // Revocations of either key's certificates are in a CRL of their issuer.
    let c_dir = tempfile::tempdir().unwrap();
    let c = "rollover-c.example.test";
    puppet(s.addr.port(), c_dir.path(), c, "bootstrap");
    s.ca.ca(&["revoke", a, b]).ok();
    let crls = s
        .get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca")
        .text();
    assert_eq!(crls.matches("BEGIN X509 CRL").count(), 2, "one per key");
    let (ca_bundle, crl_bundle) = (s.ca.path("bundle.pem"), s.ca.path("crls.pem"));
    std::fs::write(
        &ca_bundle,
        s.get(&As::Anonymous, "/puppet-ca/v1/certificate/ca").text(),
    )
    .unwrap();
    std::fs::write(&crl_bundle, &crls).unwrap();
    for cert in [&a_cert, &b_cert] {
        let err = crl_check(&ca_bundle, &crl_bundle, cert).unwrap_err();
        assert!(err.contains("certificate revoked"), "{err}");
    }
    crl_check(&ca_bundle, &crl_bundle, &cert_in(c_dir.path(), c)).unwrap();
    for (dir, name) in [(a_dir.path(), a), (b_dir.path(), b)] {
        let refused = s.try_send(
            &who(dir, name),
            hyper::Method::GET,
            "/puppet-ca/v1/expirations",
            &[],
            b"",
        );
        assert!(refused.is_err(), "{name} revoked: refused at the handshake");
    }

    // finish: only the new CA; the server's certificate is the new key's; C (with the bundle) works.
    s.ca.ca(&["rollover", "finish"]).ok();
    assert!(s.ca.data.join("rollover/retired_ca_key.pem").exists());
    let s = s.restart(config);
    let new_only = bundle_of(&s);
    assert_eq!(new_only.len(), 1);
    assert_eq!(key_of(&new_only[0]), key_of(&switched[0]));
    crate::harness::assert_verifies(&next_ca, &s.ca.data.join("server/cert.pem"));
    puppet(s.addr.port(), c_dir.path(), c, "download_cert");
    let crls = s
        .get(&As::Anonymous, "/puppet-ca/v1/certificate_revocation_list/ca")
        .text();
    assert_eq!(crls.matches("BEGIN X509 CRL").count(), 1);
    let audit = s.ca.with_store(async |st| st.audit_rows(None).await.unwrap());
    for step in ["rollover-start", "rollover-switch", "rollover-finish"] {
        assert!(audit.iter().any(|r| r.action == step), "{step} audited");
    }
    // The audit log written before, during and after the rollover verifies with the new key alone.
    let verified = s.ca.ca(&["audit", "verify"]).ok();
    assert!(verified.stdout.contains("intact"), "{verified:?}");
}
