//! The multi-master deployment end to end (docs/multi-master.md): a central `ca-server` with
//! `allow-header-cert-info = true`; a second Puppet server "master-2" gets its certificate with alt names
//! from the real agent (`ca sign --allow-dns-alt-names`), then terminates TLS with that certificate and
//! proxies certificate traffic to the CA, once with nginx (deploy/nginx/ca-proxy.conf.template) and once
//! with Apache httpd (deploy/apache/ca-proxy.conf). A real agent bootstraps through each; the CA sees
//! proxied callers by the X-Client-* headers the proxy sets. nginx and apache2 are required (scripts/test
//! installs them): a missing one fails the test.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ca_cli::remote::{Answer, Client};
use hyper::{Method, StatusCode};

use crate::harness::{assert_verifies, openssl};
use crate::real_clients::{agent_args, bootstrap, require, text};
use crate::server::{As, TestServer};

const MASTER: &str = "master-2.example.test";

fn deploy_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(name)
}

/// What master-2's proxy is given: its own identity from its puppet ssldir, and the CA to proxy to.
struct ProxySetup<'a> {
    ssldir: &'a Path,
    certname: &'a str,
    ca_upstream: SocketAddr,
    ca_name: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Nginx,
    Apache,
}

/// `name` in $PATH, else in /usr/sbin or /sbin (where Debian puts nginx and apache2, outside a normal
/// user's PATH).
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A proxy run from a temporary directory; stopped (SIGTERM to its master process, then SIGKILL of its
/// process group) when dropped, also when the test fails.
struct Proxy {
    kind: Kind,
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Proxy {
    fn start(kind: Kind, setup: &ProxySetup) -> Proxy {
        let (cmd, package) = match kind {
            Kind::Nginx => ("nginx", "nginx"),
            Kind::Apache => ("apache2", "apache2-bin"),
        };
        let program = find_program(cmd).unwrap_or_else(|| {
            panic!("`{cmd}` is missing: scripts/test installs it (Debian package {package})")
        });
        // The port is picked by binding :0 and released before the proxy binds it; retry on a lost race.
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::try_start(kind, &program, setup) {
                Ok(p) => return p,
                Err(e) => last_error = e,
            }
        }
        panic!("{kind:?} did not start: {last_error}");
    }

    fn try_start(kind: Kind, program: &Path, setup: &ProxySetup) -> Result<Proxy, String> {
        let dir = tempfile::tempdir().unwrap();
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let mut cmd = match kind {
            Kind::Nginx => nginx_command(program, dir.path(), port, setup),
            Kind::Apache => apache_command(program, dir.path(), port, setup),
        };
        let child = {
            use std::os::unix::process::CommandExt;
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(
                    std::fs::File::create(dir.path().join("stderr.log")).unwrap(),
                ))
                .process_group(0)
                .spawn()
                .map_err(|e| format!("cannot run {kind:?}: {e}"))?
        };
        let mut p = Proxy {
            kind,
            child,
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = p.child.try_wait().unwrap() {
                return Err(format!("{kind:?} exited ({status}): {}", p.logs()));
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(p);
            }
            if Instant::now() > deadline {
                return Err(format!("{kind:?} does not accept connections: {}", p.logs()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// stderr and the error log, for failure messages.
    fn logs(&self) -> String {
        format!(
            "{:?} stderr:\n{}\nerror.log:\n{}",
            self.kind,
            self.read("stderr.log"),
            self.read("error.log")
        )
    }

    fn access_log(&self) -> String {
        self.read("access.log")
    }

    /// One GET through the proxy, trusting the CA bundle.
    fn get(
        &self,
        cacert: &Path,
        identity: Option<(&Path, &Path)>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let client = Client::new(&self.url(), cacert, identity).expect("client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(client.send(Method::GET, path, headers, Vec::new()))
            .unwrap_or_else(|e| panic!("GET {path} through {:?}: {e}\n{}", self.kind, self.logs()))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        // SIGTERM: the master process stops its workers and exits.
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The whole process group it leads (master and workers).
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.child.wait();
    }
}

/// nginx with deploy/nginx/ca-proxy.conf.template, placeholders filled in, as the template says.
fn nginx_command(program: &Path, dir: &Path, port: u16, setup: &ProxySetup) -> Command {
    let path = deploy_file("nginx/ca-proxy.conf.template");
    let mut conf = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ssl = setup.ssldir;
    let p = |x: PathBuf| x.display().to_string();
    let values = [
        ("@USER@", "root".to_string()),
        ("@PREFIX@", p(dir.to_path_buf())),
        ("@LISTEN@", format!("127.0.0.1:{port}")),
        (
            "@SERVER_CERT@",
            p(ssl.join(format!("certs/{}.pem", setup.certname))),
        ),
        (
            "@SERVER_KEY@",
            p(ssl.join(format!("private_keys/{}.pem", setup.certname))),
        ),
        ("@CA_BUNDLE@", p(ssl.join("certs/ca.pem"))),
        ("@CRL@", p(ssl.join("crl.pem"))),
        ("@CA_UPSTREAM@", setup.ca_upstream.to_string()),
        ("@CA_NAME@", setup.ca_name.to_string()),
    ];
    for (k, v) in &values {
        assert!(conf.contains(k), "the template lacks {k}");
        conf = conf.replace(k, v);
    }
    for line in conf.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for (at, _) in line.match_indices('@') {
            assert!(
                !line[at + 1..].starts_with(|c: char| c.is_ascii_uppercase()),
                "unfilled placeholder in the template: {line}"
            );
        }
    }
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut c = Command::new(program);
    c.arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .args(["-g", "daemon off;"]);
    c
}

/// Apache httpd (Debian's apache2 binary and module directory) with a minimal main configuration that
/// defines the site's values and includes deploy/apache/ca-proxy.conf unchanged.
fn apache_command(program: &Path, dir: &Path, port: u16, setup: &ProxySetup) -> Command {
    use std::os::unix::fs::PermissionsExt;
    // Apache's children run as nobody: they must reach the runtime directory.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = dir.display();
    let modules = "/usr/lib/apache2/modules";
    let load: String = [
        ("mpm_event_module", "mod_mpm_event.so"),
        ("authz_core_module", "mod_authz_core.so"),
        ("headers_module", "mod_headers.so"),
        ("ssl_module", "mod_ssl.so"),
        ("proxy_module", "mod_proxy.so"),
        ("proxy_http_module", "mod_proxy_http.so"),
    ]
    .iter()
    .map(|(m, f)| format!("LoadModule {m} {modules}/{f}\n"))
    .collect();
    let conf = format!(
        "ServerRoot {d}\nServerName {master}\nPidFile {d}/httpd.pid\nDefaultRuntimeDir {d}\n\
         ErrorLog {d}/error.log\nLogLevel warn\nUser nobody\nGroup nogroup\n{load}\
         CustomLog {d}/access.log \"%h \\\"%r\\\" %>s\"\n\
         Define CA_PROXY_PORT {port}\nDefine MASTER_CERTNAME {master}\nDefine PUPPET_SSLDIR {ssl}\n\
         Define CA_URL https://{name}:{ca_port}\nInclude {site}\n",
        master = setup.certname,
        ssl = setup.ssldir.display(),
        name = setup.ca_name,
        ca_port = setup.ca_upstream.port(),
        site = deploy_file("apache/ca-proxy.conf").display(),
    );
    let conf_path = dir.join("httpd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut c = Command::new(program);
    c.arg("-f").arg(&conf_path).arg("-DFOREGROUND");
    c
}

/// The DER of every PEM block in `text` (compares certificates and CRLs whatever their line breaks).
fn ders(text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(text)
        .unwrap()
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect()
}

/// master-2's own request with alt names: pending, refused by a plain `ca sign`, signed with the flag.
/// Returns master-2's ssldir.
fn bring_up_master(s: &TestServer, dir: &Path) -> PathBuf {
    let boot = || {
        bootstrap(
            s,
            dir,
            MASTER,
            &[
                "--dns_alt_names",
                "puppet,puppet.example.test,localhost",
                "--waitforcert",
                "0",
            ],
        )
        .output()
        .unwrap()
    };
    let out = boot();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("Couldn't fetch certificate from CA server"),
        "{}",
        text(&out)
    );
    assert!(s.ca.ca(&["list"]).ok().stdout.contains(MASTER));

    let refused = s.ca.ca(&["sign", MASTER]).fails_with(1, "DNS:puppet");
    assert!(refused.stderr.contains("--allow-dns-alt-names"), "{refused:#?}");
    s.ca.ca(&["sign", "--allow-dns-alt-names", MASTER]).ok();
    let out = boot();
    assert!(out.status.success(), "{}", text(&out));

    let ssl = dir.join("ssl");
    let cert = ssl.join(format!("certs/{MASTER}.pem"));
    assert!(ssl.join(format!("private_keys/{MASTER}.pem")).exists());
    assert_verifies(&s.ca.ca_cert(), &cert);
    let (ok, san) = openssl(&[
        "x509",
        "-in",
        cert.to_str().unwrap(),
        "-noout",
        "-ext",
        "subjectAltName",
    ]);
    for name in [
        "DNS:master-2.example.test",
        "DNS:puppet",
        "DNS:puppet.example.test",
        "DNS:localhost",
    ] {
        assert!(ok && san.contains(name), "{name} missing: {san}");
    }
    ssl
}

/// A real agent whose ca_server is the proxy: its CSR reaches the CA through it, an admin signs, the
/// agent finishes with our certificate and our CRL. Returns the agent's (cert, key).
fn agent_through(s: &TestServer, proxy: &Proxy, dir: &Path, certname: &str) -> (PathBuf, PathBuf) {
    let mut args = agent_args(s, dir, certname);
    let at = args.iter().position(|a| a == "--ca_port").unwrap();
    args[at + 1] = proxy.port.to_string();
    require("puppet");
    let mut child = Command::new("puppet")
        .args(["ssl", "bootstrap"])
        .args(&args)
        .args(["--waitforcert", "1", "--maxwaitforcert", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Until the CSR is pending on the CA; an agent that gives up or stalls fails with its output.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s
        .ca
        .with_store(async |st| st.request(certname).await.unwrap().is_some())
    {
        let exited = child.try_wait().unwrap().is_some();
        if exited || Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{certname}'s CSR never reached the CA through {:?}:\n{}\n{}\naccess.log:\n{}",
                proxy.kind,
                text(&out),
                proxy.logs(),
                proxy.access_log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    s.ca.ca(&["sign", certname]).ok();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Completed SSL initialization"),
        "{}\n{}",
        text(&out),
        proxy.logs()
    );
    let ssl = dir.join("ssl");
    let cert = ssl.join(format!("certs/{certname}.pem"));
    let key = ssl.join(format!("private_keys/{certname}.pem"));
    assert_verifies(&s.ca.ca_cert(), &cert);
    // The agent's CRL is ours, and it came through the proxy, like everything the agent asked for.
    let our_crl = s.ca.ca(&["crl"]).ok().stdout;
    assert_eq!(
        ders(&std::fs::read_to_string(ssl.join("crl.pem")).unwrap()),
        ders(&our_crl)
    );
    let log = proxy.access_log();
    for line in [
        "GET /puppet-ca/v1/certificate/ca ".to_string(),
        "GET /puppet-ca/v1/certificate_revocation_list/ca ".to_string(),
        format!("PUT /puppet-ca/v1/certificate_request/{certname} "),
        format!("GET /puppet-ca/v1/certificate/{certname} "),
    ] {
        assert!(
            log.contains(&line),
            "{:?} did not see {line:?}:\n{log}",
            proxy.kind
        );
    }
    (cert, key)
}

/// The CRL without a client certificate, and the caller's identity as the CA sees it, through the proxy.
fn check_proxy(s: &TestServer, proxy: &Proxy, agent: (&Path, &Path), certnames: &[&str]) {
    let kind = proxy.kind;
    let cacert = s.ca.ca_cert();
    let admin = (s.data().join("admin/cert.pem"), s.data().join("admin/key.pem"));
    let admin = Some((admin.0.as_path(), admin.1.as_path()));
    let our_crl = s.ca.ca(&["crl"]).ok().stdout;
    for path in [
        "/puppet-ca/v1/certificate_revocation_list/ca",
        "/production/certificate_revocation_list/ca",
    ] {
        let a = proxy.get(&cacert, None, path, &[]);
        assert_eq!(a.status, StatusCode::OK, "{kind:?} {path}: {}", a.text());
        assert_eq!(ders(&a.text()), ders(&our_crl), "{kind:?} {path}");
    }

    let statuses = "/puppet-ca/v1/certificate_statuses/any";
    for path in [statuses, "/production/certificate_statuses/any"] {
        let a = proxy.get(&cacert, admin, path, &[]);
        assert_eq!(
            a.status,
            StatusCode::OK,
            "admin through {kind:?}, {path}: {}\n{}",
            a.text(),
            proxy.logs()
        );
        for name in certnames {
            assert!(a.text().contains(name), "{name} not in {}", a.text());
        }
    }
    // Query strings pass through (nothing is pending now).
    for path in [statuses, "/production/certificate_statuses/any"] {
        let path = format!("{path}?state=requested");
        let a = proxy.get(&cacert, admin, &path, &[]);
        assert_eq!(
            (a.status, a.text().trim()),
            (StatusCode::OK, "[]"),
            "{kind:?} {path}"
        );
    }
    let a = proxy.get(&cacert, None, statuses, &[]);
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "{kind:?}, no client certificate: {}",
        a.text()
    );
    let a = proxy.get(&cacert, Some(agent), statuses, &[]);
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "{kind:?}, an agent's certificate: {}",
        a.text()
    );

    // Headers a client sends under those names are replaced or dropped by the proxy, never passed on.
    let pem = std::fs::read_to_string(s.data().join("admin/cert.pem")).unwrap();
    let spoofed_cert = crate::harness::url_encode(&pem);
    let spoof = [
        ("x-client-verify", "SUCCESS"),
        ("x-client-dn", "CN=ca-admin"),
        ("x-client-cert", spoofed_cert.as_str()),
    ];
    let a = proxy.get(&cacert, None, statuses, &spoof);
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "{kind:?}, spoofed headers: {}",
        a.text()
    );
    let a = proxy.get(&cacert, Some(agent), statuses, &spoof);
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "{kind:?}, spoofed headers with an agent's certificate: {}",
        a.text()
    );

    // The admin CLI in remote mode works through the proxy.
    let listed = s.ca.ca(&["--server", &proxy.url(), "list", "--all"]).ok().stdout;
    for name in certnames {
        assert!(listed.contains(name), "{name} not in {listed}");
    }
}

#[test]
fn second_master_proxies_certificate_traffic_to_the_central_ca() {
    let started = Instant::now();
    let s = TestServer::start_with(
        "[authorization]\nallow-header-cert-info = true\ntrusted-proxies = [\"127.0.0.1\"]\n",
    );
    let master = tempfile::tempdir().unwrap();
    let mssl = bring_up_master(&s, master.path());
    let setup = ProxySetup {
        ssldir: &mssl,
        certname: MASTER,
        ca_upstream: s.addr,
        ca_name: "localhost",
    };
    let master_done = started.elapsed();

    let nginx = Proxy::start(Kind::Nginx, &setup);
    let a9 = tempfile::tempdir().unwrap();
    let (cert9, key9) = agent_through(&s, &nginx, a9.path(), "agent-9.example.test");
    check_proxy(&s, &nginx, (&cert9, &key9), &[MASTER, "agent-9.example.test"]);
    drop(nginx);
    let nginx_done = started.elapsed();

    let apache = Proxy::start(Kind::Apache, &setup);
    let a10 = tempfile::tempdir().unwrap();
    let (cert10, key10) = agent_through(&s, &apache, a10.path(), "agent-10.example.test");
    check_proxy(
        &s,
        &apache,
        (&cert10, &key10),
        &[MASTER, "agent-9.example.test", "agent-10.example.test"],
    );
    drop(apache);

    // In header mode the CA ignores TLS client certificates, as puppetserver does: the admin
    // certificate straight to the CA is unauthenticated. Admins go through a proxy or run `ca` locally.
    assert_eq!(
        s.get(&As::Admin, "/puppet-ca/v1/certificate_statuses/any").status,
        StatusCode::FORBIDDEN
    );
    println!(
        "multi-master: master-2 {:.1} s, nginx {:.1} s, apache {:.1} s",
        master_done.as_secs_f64(),
        (nginx_done - master_done).as_secs_f64(),
        (started.elapsed() - nginx_done).as_secs_f64()
    );
}
