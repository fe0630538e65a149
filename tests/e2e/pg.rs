//! Throwaway PostgreSQL clusters for the tests: `initdb` in a temporary directory, `pg_ctl` on a free
//! loopback port, as a non-root user (root runs them as `postgres`, the user Debian's package makes).
//! No PostgreSQL service needs to be running; scripts/test installs the `postgresql` package.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

use crate::harness::free_port;

/// The newest PostgreSQL server binaries (`/usr/lib/postgresql/<v>/bin`).
pub fn pg_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries (scripts/test installs the postgresql package)")
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, b)| b)
        .expect("initdb under /usr/lib/postgresql/<version>/bin")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A running cluster; stopped (immediately) when dropped.
pub struct PgCluster {
    _tmp: TempDir,
    pub data: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

impl PgCluster {
    /// A new cluster with a `ca` superuser (trust authentication on loopback) and database `ca`.
    pub fn start() -> PgCluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("pgdata");
        let bin = pg_bin();
        if is_root() {
            // The server refuses to run as root: the cluster belongs to `postgres`.
            run(Command::new("chown").arg("postgres:postgres").arg(tmp.path()));
        }
        let mut c = PgCluster {
            port: 0,
            data,
            bin,
            _tmp: tmp,
        };
        c.as_owner(
            "initdb",
            &[
                "-D",
                &c.data.display().to_string(),
                "-U",
                "ca",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        c.start_on_a_free_port();
        c.psql("postgres", "CREATE DATABASE ca");
        c
    }

    /// A streaming standby of `primary` on its own port: `pg_basebackup -R` (standby.signal and
    /// primary_conninfo), started, and streaming when this returns. It stays a standby until
    /// [`PgCluster::promote`].
    pub fn standby_of(primary: &PgCluster) -> PgCluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("pgdata");
        let bin = pg_bin();
        if is_root() {
            run(Command::new("chown").arg("postgres:postgres").arg(tmp.path()));
        }
        let mut c = PgCluster {
            port: 0,
            data,
            bin,
            _tmp: tmp,
        };
        c.as_owner(
            "pg_basebackup",
            &[
                "-D",
                &c.data.display().to_string(),
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "ca",
                "--write-recovery-conf",
                "--wal-method=stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
        );
        // The primary's log came along with the copy: the standby starts its own.
        let _ = std::fs::write(c.data.join("server.log"), "");
        c.start_on_a_free_port();
        let started = std::time::Instant::now();
        while primary.psql(
            "postgres",
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
        ) != "1"
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the standby does not stream: {}",
                c.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        c
    }

    /// Makes commits wait for the standby: `synchronous_standby_names = '*'`, `synchronous_commit =
    /// on`; returns once the standby is the synchronous one. Set on this (primary) cluster only, after
    /// the standby was copied from it: a promoted standby carrying it would wait for a standby of its
    /// own and hang every commit.
    pub fn make_synchronous(&self) {
        self.psql("postgres", "ALTER SYSTEM SET synchronous_standby_names = '*'");
        self.psql("postgres", "ALTER SYSTEM SET synchronous_commit = 'on'");
        self.psql("postgres", "SELECT pg_reload_conf()");
        let started = std::time::Instant::now();
        while self.psql(
            "postgres",
            "SELECT string_agg(sync_state, ',') FROM pg_stat_replication",
        ) != "sync"
        {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(30),
                "the standby did not become synchronous"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Promotes this standby to a primary (`pg_ctl promote`, waiting until it accepts writes).
    pub fn promote(&self) {
        self.as_owner(
            "pg_ctl",
            &["-D", &self.data.display().to_string(), "-w", "promote"],
        );
    }

    /// `postgresql://ca@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://ca@127.0.0.1:{}/{db}", self.port)
    }

    fn as_owner(&self, tool: &str, args: &[&str]) -> Output {
        let mut cmd = self.owner_command(tool);
        cmd.args(args);
        run(&mut cmd)
    }

    /// `tool` to run as the cluster's owner.
    fn owner_command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        }
    }

    /// Starts the server on a port no one else holds. PostgreSQL cannot pick its own port, and a port
    /// found free may be taken by another test before the server binds it: then another port.
    fn start_on_a_free_port(&mut self) {
        for _ in 0..5 {
            self.port = free_port();
            if self.try_pg_ctl_start().status.success() {
                return;
            }
            assert!(
                self.log().contains("Address already in use"),
                "the server did not start: {}",
                self.log()
            );
        }
        panic!("no free port in five tries: {}", self.log());
    }

    fn pg_ctl_start(&self) {
        let out = self.try_pg_ctl_start();
        assert!(out.status.success(), "pg_ctl start: {}", self.log());
    }

    fn try_pg_ctl_start(&self) -> Output {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=200",
            self.port,
            self.data.display()
        );
        let mut cmd = self.owner_command("pg_ctl");
        cmd.args([
            "-D",
            &self.data.display().to_string(),
            "-o",
            &opts,
            "-l",
            &self.data.join("server.log").display().to_string(),
            "-w",
            "start",
        ]);
        cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"))
    }

    /// Starts the stopped server again (same data, same port).
    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    /// Runs SQL with psql; its output.
    #[track_caller]
    pub fn psql(&self, db: &str, sql: &str) -> String {
        match self.try_psql(db, sql) {
            Ok(out) => out,
            Err(e) => panic!("psql {sql:?}: {e}"),
        }
    }

    /// Runs SQL with psql: its output, or its error message.
    pub fn try_psql(&self, db: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "ca",
                "-p",
            ])
            .arg(self.port.to_string())
            .args(["-d", db, "-c", sql])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }

    /// Stops the server at once (as a crash would, without a checkpoint).
    pub fn stop_immediately(&self) {
        let _ = self.try_pg_ctl(&["-D", &self.data.display().to_string(), "-m", "immediate", "stop"]);
    }

    fn try_pg_ctl(&self, args: &[&str]) -> std::io::Result<Output> {
        let exe = self.bin.join("pg_ctl");
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).output()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    /// Stops every process of the server (`SIGSTOP`) until the guard drops: its connections stay
    /// open and nothing answers, as with a host that lost power or a network dropping packets.
    pub fn freeze(&self) -> Frozen {
        let pid = std::fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::trim).map(str::to_string))
            .expect("postmaster.pid");
        let children = Command::new("pgrep").args(["-P", &pid]).output().expect("pgrep");
        let mut pids = vec![pid];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .map(str::to_string),
        );
        let frozen = Frozen { pids };
        frozen.signal("-STOP");
        frozen
    }
}

/// The processes [`PgCluster::freeze`] stopped; continued when dropped.
pub struct Frozen {
    pids: Vec<String>,
}

impl Frozen {
    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(sig)
            .args(&self.pids)
            .status()
            .expect("kill");
        assert!(status.success(), "kill {sig} {:?}", self.pids);
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-CONT").args(&self.pids).status();
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop_immediately();
    }
}

#[track_caller]
fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The harness itself: a cluster starts on a free port as a non-root user, answers SQL, and stops.
#[test]
fn a_throwaway_cluster_starts_answers_and_stops() {
    let pg = PgCluster::start();
    assert_eq!(pg.psql("ca", "SELECT 40 + 2"), "42");
    assert_eq!(pg.psql("ca", "SELECT current_user"), "ca");
    assert!(pg.data_dir().join("postmaster.pid").exists(), "running");
    pg.stop_immediately();
    assert!(!pg.data_dir().join("postmaster.pid").exists(), "stopped");
}

/// The harness's standby: it receives what the primary commits, refuses writes, and takes them once
/// promoted.
#[test]
fn a_synchronous_standby_streams_refuses_writes_and_takes_over_when_promoted() {
    let primary = PgCluster::start();
    let standby = PgCluster::standby_of(&primary);
    primary.make_synchronous();
    primary.psql("ca", "CREATE TABLE t (x int); INSERT INTO t VALUES (1)");
    // Synchronous commit: acknowledged means on the standby too (and replayed there shortly after).
    let started = std::time::Instant::now();
    while standby.psql("ca", "SELECT count(*) FROM pg_tables WHERE tablename = 't'") != "1"
        || standby.psql("ca", "SELECT count(*) FROM t") != "1"
    {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "not replayed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(standby.psql("ca", "SELECT pg_is_in_recovery()"), "t");
    let refused = standby.try_psql("ca", "INSERT INTO t VALUES (5)").unwrap_err();
    assert!(refused.contains("read-only transaction"), "{refused}");
    primary.stop_immediately();
    standby.promote();
    assert_eq!(standby.psql("ca", "SELECT pg_is_in_recovery()"), "f");
    standby.psql("ca", "INSERT INTO t VALUES (2)");
    assert_eq!(standby.psql("ca", "SELECT sum(x) FROM t"), "3");
}
