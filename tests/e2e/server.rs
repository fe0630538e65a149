//! A `ca-server` in process on 127.0.0.1:0, on a temporary data directory, with HTTPS clients.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ca_cli::remote::{Answer, Client};
use ca_server::clock::SystemClock;
use ca_server::config::{Overrides, Settings};
use hyper::Method;

use crate::harness::TestCa;

/// A running server.
pub struct TestServer {
    pub ca: TestCa,
    pub addr: SocketAddr,
    /// The `ocsp-listen` address, when [`TestServer::start_with_plain`] bound it.
    plain: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Which client identity to use.
#[derive(Debug, Clone)]
pub enum As {
    Anonymous,
    Admin,
    Cert(PathBuf, PathBuf),
}

impl TestServer {
    /// A CA whose server certificate also names `localhost` and 127.0.0.1, served with `config` applied.
    pub fn start_with(config_toml: &str) -> TestServer {
        let ca = TestCa::with_args(&["--dns-alt-names", "localhost,IP:127.0.0.1"]);
        Self::launch(ca, config_toml)
    }

    /// Serves the data directory of `ca` (made by setup or import); a missing server identity is issued
    /// for ca.example.test with `localhost` and 127.0.0.1.
    pub fn launch(ca: TestCa, config_toml: &str) -> TestServer {
        Self::launch_as(ca, config_toml, "ca.example.test")
    }

    /// [`TestServer::start_with`] the configuration `config(addr)`, where `addr` is a loopback
    /// address bound beforehand for `ocsp-listen` (handed to the server as its socket: no port
    /// changes hands between binds).
    pub fn start_with_plain(config: impl FnOnce(std::net::SocketAddr) -> String) -> TestServer {
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = plain.local_addr().unwrap();
        let ca = TestCa::with_args(&["--dns-alt-names", "localhost,IP:127.0.0.1"]);
        let mut s = Self::launch_on(ca, &config(addr), "ca.example.test", Some(plain));
        s.plain = Some(addr);
        // The socket takes connections at once; wait until the server answers on it (it has then
        // recorded its configuration for `ca` in local mode, too).
        let started = std::time::Instant::now();
        while !answers_http(addr) {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "no answer on {addr}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        s
    }

    /// As [`TestServer::launch`], with the server certname `certname` (a second replica's).
    pub fn launch_as(ca: TestCa, config_toml: &str, certname: &str) -> TestServer {
        Self::launch_on(ca, config_toml, certname, None)
    }

    fn launch_on(
        ca: TestCa,
        config_toml: &str,
        certname: &str,
        plain: Option<std::net::TcpListener>,
    ) -> TestServer {
        let config_path = ca.path("ca-server.toml");
        std::fs::write(&config_path, config_toml).unwrap();
        let overrides = Overrides {
            data_dir: Some(ca.data.clone()),
            listen: Some("127.0.0.1:0".into()),
            certname: Some(certname.into()),
            dns_alt_names: Some(vec!["localhost".into(), "IP:127.0.0.1".into()]),
            ..Overrides::default()
        };
        let settings =
            Settings::load(Some(&config_path), overrides, PathBuf::from("/nonexistent")).expect("settings");
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let authority = ca_server::server::open_or_setup(&settings, Arc::new(SystemClock))
                    .await
                    .unwrap();
                let listeners = match plain {
                    None => ca_server::server::Listeners::bind(&settings).await.unwrap(),
                    Some(l) => {
                        l.set_nonblocking(true).unwrap();
                        ca_server::server::Listeners {
                            api: tokio::net::TcpListener::bind(settings.listen).await.unwrap(),
                            plain: Some(tokio::net::TcpListener::from_std(l).unwrap()),
                        }
                    }
                };
                addr_tx.send(listeners.api.local_addr().unwrap()).unwrap();
                ca_server::server::serve(settings, authority, listeners, async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv().expect("server started");
        TestServer {
            ca,
            addr,
            plain: None,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Stops the server and starts it again on the same data directory with `config_toml` (on a
    /// new port): what restarting the service does.
    pub fn restart(mut self, config_toml: &str) -> TestServer {
        let placeholder = TestCa {
            tmp: tempfile::tempdir().unwrap(),
            data: PathBuf::new(),
        };
        let ca = std::mem::replace(&mut self.ca, placeholder);
        drop(self);
        Self::launch(ca, config_toml)
    }

    pub fn start() -> TestServer {
        Self::start_with("")
    }

    /// The port of the plain-HTTP listener bound by [`TestServer::start_with_plain`].
    pub fn plain_port(&self) -> u16 {
        self.plain.expect("started with start_with_plain").port()
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn client(&self, who: &As) -> Client {
        let cacert = self.ca.ca_cert();
        let d = &self.ca.data;
        let (cert, key) = (d.join("admin/cert.pem"), d.join("admin/key.pem"));
        match who {
            As::Anonymous => Client::new(&self.url(), &cacert, None),
            As::Admin => Client::new(&self.url(), &cacert, Some((&cert, &key))),
            As::Cert(c, k) => Client::new(&self.url(), &cacert, Some((c, k))),
        }
        .expect("client")
    }

    /// One request; Err is a connection/TLS failure.
    pub fn try_send(
        &self,
        who: &As,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<Answer> {
        let client = self.client(who);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(client.send(method, path, headers, body.to_vec()))
    }

    #[track_caller]
    pub fn send(
        &self,
        who: &As,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Answer {
        let m = method.clone();
        self.try_send(who, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{m} {path}: {e}"))
    }

    #[track_caller]
    pub fn get(&self, who: &As, path: &str) -> Answer {
        self.send(who, Method::GET, path, &[], b"")
    }

    /// Runs the `ca` CLI against this server (remote mode).
    pub fn remote_ca(&self, args: &[&str]) -> crate::harness::Run {
        let mut argv: Vec<String> = vec!["--server".into(), self.url()];
        argv.extend(args.iter().map(|s| s.to_string()));
        self.ca.ca(&argv)
    }

    /// A certificate and key for `name`, made with `ca generate` (EC P-256), as a client identity.
    pub fn identity(&self, name: &str) -> As {
        let out = self.ca.path(&format!("id-{name}"));
        self.ca
            .ca(&[
                "generate",
                name,
                "--key-type",
                "ec-p256",
                "--out",
                out.to_str().unwrap(),
            ])
            .ok();
        As::Cert(
            out.join(format!("certs/{name}.pem")),
            out.join(format!("private_keys/{name}.pem")),
        )
    }

    pub fn data(&self) -> &Path {
        &self.ca.data
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a plain-HTTP GET of the relying parties' CRL at `addr` gets a 200.
fn answers_http(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let mut head = [0u8; 12];
    c.write_all(b"GET /crl.der HTTP/1.0\r\n\r\n").is_ok()
        && c.read_exact(&mut head).is_ok()
        && head.ends_with(b" 200")
}
