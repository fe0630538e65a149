//! ca-bench's own ca-server: set up, started as a child process, seeded through the database (its
//! SQLite file, or the PostgreSQL database named by URL); on PostgreSQL, further replicas join it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ca_server::authority::{self, CaSettings, SetupOptions};
use ca_server::ca::keys::KeyType;
use ca_server::clock::SystemClock;
use ca_server::datadir::DataDir;
use ca_server::storage::{CertRow, Store};
use hyper::StatusCode;

use crate::client::Target;
use crate::stats::Figures;

pub struct OwnServer {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    /// The PostgreSQL database (never printed: it may hold a password); None: the SQLite file.
    database_url: Option<String>,
    /// `--certname` of a joining replica (the first server's comes from the setup).
    certname: Option<String>,
    pub port: u16,
    child: Option<Child>,
    pub ca_pem: Vec<u8>,
    pub admin_cert: Vec<u8>,
    pub admin_key: Vec<u8>,
    cold_start: Duration,
    seeded_revocations: usize,
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn row(phase: &str, value: f64, p50_ms: f64, note: &str) -> Figures {
    Figures {
        phase: phase.into(),
        count: 1,
        per_sec: value,
        p50_ms,
        p99_ms: p50_ms,
        ratio: None,
        note: note.into(),
        backend: "",
        id: String::new(),
        server_cpu_ms_per_op: None,
        bench_cpu_ms_per_op: None,
        rss_mb: None,
        server_cpu_by_role: None,
        ceiling_around: None,
        rounds: None,
        signatures: None,
        ceiling_at_speed: None,
    }
}

/// An RSS figure (MB, shown in the ops/s column as before, and as `rss_mb` in `--json`).
fn rss_figure(phase: &str, mb: f64) -> Figures {
    let mut f = row(phase, mb, 0.0, "");
    f.rss_mb = Some(mb);
    f
}

/// Samples the server's RSS until finished; reports the peak.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    peak_kb: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    /// Samples the RSS of process `pid` every 20 ms.
    pub fn of(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_kb = Arc::new(AtomicU64::new(0));
        let (s, p) = (Arc::clone(&stop), Arc::clone(&peak_kb));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max((rss_mb(pid) * 1024.0) as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Sampler {
            stop,
            peak_kb,
            thread,
        }
    }

    pub fn finish(self, phase: &str) -> Figures {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        rss_figure(phase, self.peak_kb.load(Ordering::Relaxed) as f64 / 1024.0)
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

impl OwnServer {
    /// Sets up a new CA (state in the database at `database_url`, else in the data directory's SQLite
    /// file) and starts a server on it.
    pub async fn start(
        kind: KeyType,
        server_kind: KeyType,
        database_url: Option<&str>,
        pkcs11: Option<&ca_server::ca::token::Pkcs11Settings>,
    ) -> Result<OwnServer, String> {
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = tmp.path().join("ca");
        let dir = DataDir::new(&data).with_database_url(database_url.map(str::to_string));
        let mut opts = SetupOptions::new("localhost");
        opts.key_type = kind;
        opts.server_key_type = Some(server_kind);
        let settings = CaSettings {
            pkcs11: pkcs11.cloned(),
            ..CaSettings::default()
        };
        let (a, _) = authority::setup(&dir, &opts, settings, Arc::new(SystemClock))
            .await
            .map_err(|e| e.to_string())?;
        a.store().close().await;
        // The server finds the token in its data directory's configuration (the module's own
        // environment, SOFTHSM2_CONF for SoftHSM, is inherited).
        if let Some(p) = pkcs11 {
            let pin = p
                .pin_file
                .as_ref()
                .map_or(String::new(), |f| format!("pin-file = \"{}\"\n", f.display()));
            let conf = format!(
                "[ca.pkcs11]\nmodule = \"{}\"\ntoken-label = \"{}\"\nkey-label = \"{}\"\n{pin}",
                p.module.display(),
                p.token_label,
                p.key_label
            );
            std::fs::write(data.join("config.toml"), conf).map_err(|e| e.to_string())?;
        }
        let read = |p: PathBuf| std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()));
        let mut s = OwnServer {
            ca_pem: read(dir.ca_cert())?,
            admin_cert: read(dir.admin_cert())?,
            admin_key: read(dir.admin_key())?,
            _tmp: tmp,
            data,
            database_url: database_url.map(str::to_string),
            certname: None,
            port: free_port()?,
            child: None,
            cold_start: Duration::ZERO,
            seeded_revocations: 0,
        };
        s.spawn().await?;
        Ok(s)
    }

    /// Another replica of `first`'s CA (PostgreSQL): a new data directory holding only a copy of the CA
    /// key and a config.toml with the key types, started with its own certname and port. It issues its
    /// own server certificate (with `DNS:localhost`) at its first start.
    pub async fn join(
        first: &OwnServer,
        certname: &str,
        kind: KeyType,
        server_kind: KeyType,
    ) -> Result<OwnServer, String> {
        use std::os::unix::fs::PermissionsExt;
        let url = first
            .database_url
            .as_deref()
            .ok_or("replicas need a PostgreSQL database")?;
        let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
        let data = tmp.path().join("ca");
        let io = |e: std::io::Error| format!("{}: {e}", data.display());
        std::fs::create_dir(&data).map_err(io)?;
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        let key = std::fs::read(first.data.join("ca_key.pem")).map_err(io)?;
        ca_server::datadir::write_new(&data.join("ca_key.pem"), &key, 0o600).map_err(io)?;
        std::fs::write(
            data.join("config.toml"),
            format!("key-type = \"{kind}\"\nserver-key-type = \"{server_kind}\"\n"),
        )
        .map_err(io)?;
        let mut s = OwnServer {
            _tmp: tmp,
            data,
            database_url: Some(url.to_string()),
            certname: Some(certname.to_string()),
            port: free_port()?,
            child: None,
            ca_pem: first.ca_pem.clone(),
            admin_cert: first.admin_cert.clone(),
            admin_key: first.admin_key.clone(),
            cold_start: Duration::ZERO,
            seeded_revocations: 0,
        };
        s.spawn().await?;
        Ok(s)
    }

    /// The data directory, with the database it names.
    fn dir(&self) -> DataDir {
        DataDir::new(&self.data).with_database_url(self.database_url.clone())
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let exe = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("ca-server");
        let started = Instant::now();
        let mut cmd = Command::new(&exe);
        cmd.args([
            "--data-dir",
            &self.data.display().to_string(),
            "--listen",
            &format!("127.0.0.1:{}", self.port),
        ])
        .env("RUST_LOG", "warn")
        // Nothing from ca-bench's own environment: the server uses the data directory and database
        // given here, and nothing else.
        .env_remove("CA_CONFIG")
        .env_remove("CA_DATA_DIR")
        .env_remove("CA_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        if let Some(name) = &self.certname {
            cmd.args(["--certname", name, "--dns-alt-names", "localhost"]);
        }
        // In the environment rather than the arguments: a password in the URL stays out of `ps`.
        if let Some(url) = &self.database_url {
            cmd.env("CA_DATABASE_URL", url);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        self.child = Some(child);
        let t = Target::new(
            "localhost",
            self.port,
            &self.ca_pem,
            (&self.admin_cert, &self.admin_key),
        )?;
        loop {
            if let Ok(mut c) = t.connect(false).await {
                if let Ok(r) = c
                    .send(hyper::Method::GET, "/status/v1/simple", &[], Default::default())
                    .await
                {
                    if r.status == StatusCode::OK {
                        break;
                    }
                }
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err("ca-server did not answer within 60 s".into());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.cold_start = started.elapsed();
        Ok(())
    }

    /// From spawning the process to its first served request.
    pub fn cold_start(&self) -> Duration {
        self.cold_start
    }

    /// The PostgreSQL database, if the state is there.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn cold_start_row(&self, phase: &str) -> Figures {
        row(
            phase,
            0.0,
            self.cold_start.as_secs_f64() * 1000.0,
            "ms in p50/p99",
        )
    }

    pub fn rss_row(&self, phase: &str) -> Figures {
        rss_figure(phase, rss_mb(self.pid()))
    }

    pub fn rss_sampler(&self) -> Sampler {
        Sampler::of(self.pid())
    }

    /// `ca list --all` in local mode on this server's data directory and database (the `ca` binary
    /// beside ca-bench's), its output thrown away: how long it takes, and its peak RSS.
    pub fn cli_list_all(&self, phase: &str) -> Result<Figures, String> {
        let exe = std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("ca");
        let mut cmd = Command::new(&exe);
        cmd.args(["--data-dir", &self.data.display().to_string(), "list", "--all"])
            .env_remove("CA_CONFIG")
            .env_remove("CA_DATA_DIR")
            .env_remove("CA_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(url) = &self.database_url {
            cmd.env("CA_DATABASE_URL", url);
        }
        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", exe.display()))?;
        let sampler = Sampler::of(child.id());
        let status = child.wait().map_err(|e| e.to_string())?;
        let took = started.elapsed();
        let peak = sampler.finish(phase).rss_mb.unwrap_or(0.0);
        if !status.success() {
            return Err(format!("ca list --all failed ({status})"));
        }
        let mut f = row(
            phase,
            0.0,
            took.as_secs_f64() * 1000.0,
            &format!("ms in p50/p99; peak RSS {peak:.1} MB"),
        );
        f.rss_mb = Some(peak);
        Ok(f)
    }

    /// Adds revoked serials (of certificates that were never issued) until the database holds `total`
    /// seeded ones; the next revocation publishes a CRL with all of them.
    pub async fn seed_revocations(&mut self, total: usize) -> Result<(), String> {
        if total <= self.seeded_revocations {
            return Ok(());
        }
        let dir = self.dir();
        let store = Store::open_for(&dir, false).await.map_err(|e| e.to_string())?;
        let mut tx = store.write().await.map_err(|e| e.to_string())?;
        let now = ca_server::clock::Clock::now(&SystemClock).unix_timestamp();
        // One counter update for the whole range: PostgreSQL slows down quadratically when one row is
        // updated 100,000 times in a transaction.
        let first = tx.next_serial().await.map_err(|e| e.to_string())?;
        let count = (total - self.seeded_revocations) as u64;
        tx.raise_next_serial(first + count)
            .await
            .map_err(|e| e.to_string())?;
        for serial in first..first + count {
            tx.revoke(serial, None, now, 1).await.map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        // The seeded pages go into the database file now, not during the measured phase.
        store.checkpoint().await.map_err(|e| e.to_string())?;
        store.close().await;
        // Publish them, as every revocation through the CA does.
        let a = ca_server::authority::Authority::open(&dir, CaSettings::default(), Arc::new(SystemClock))
            .await
            .map_err(|e| e.to_string())?;
        a.republish_crl("ca-bench").await.map_err(|e| e.to_string())?;
        a.store().close().await;
        self.seeded_revocations = total;
        Ok(())
    }

    /// Adds certificates (copies of the admin certificate under new names and serials) until the CA
    /// holds at least `total`.
    pub async fn seed_certificates(&mut self, total: usize) -> Result<(), String> {
        let store = Store::open_for(&self.dir(), false)
            .await
            .map_err(|e| e.to_string())?;
        let template = store
            .current_certificate("ca-admin")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no admin certificate")?;
        let have = store
            .certificates(ca_server::storage::StatusFilter::All)
            .await
            .map_err(|e| e.to_string())?
            .len();
        let mut tx = store.write().await.map_err(|e| e.to_string())?;
        let now = ca_server::clock::Clock::now(&SystemClock).unix_timestamp();
        // One counter update for the whole range (see seed_revocations).
        let first = tx.next_serial().await.map_err(|e| e.to_string())?;
        tx.raise_next_serial(first + total.saturating_sub(have) as u64)
            .await
            .map_err(|e| e.to_string())?;
        for (i, serial) in (have..total).zip(first..) {
            let row = CertRow {
                serial,
                certname: format!("seed-{i:06}.bench.test"),
                revoked: None,
                ..template.clone()
            };
            let json =
                ca_server::authority::status::certificate_status_json(&row).map_err(|e| e.to_string())?;
            tx.insert_certificate(&row, &json, now, "ca-bench")
                .await
                .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        // The seeded pages go into the database file now, not during the measured phase.
        store.checkpoint().await.map_err(|e| e.to_string())?;
        store.close().await;
        Ok(())
    }

    pub async fn restart(&mut self) -> Result<(), String> {
        self.stop();
        self.spawn().await
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.stop();
    }
}
