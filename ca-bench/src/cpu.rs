//! CPU time of processes over a phase, from /proc: the replicas, the PostgreSQL server (its main process
//! and every backend, also those that ended during the phase) and ca-bench itself.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

/// Clock ticks per second of /proc/<pid>/stat's times.
fn ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// A process's parent, its own CPU seconds (user + system, all threads) and those of its children it
/// waited for.
struct Stat {
    parent: u32,
    own: f64,
    children: f64,
}

fn stat(pid: u32) -> Option<Stat> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the fields follow the last ')'.
    let rest: Vec<&str> = s.get(s.rfind(')')? + 1..)?.split_whitespace().collect();
    let num = |i: usize| rest.get(i).and_then(|v| v.parse::<f64>().ok());
    Some(Stat {
        parent: rest.get(1)?.parse().ok()?,
        own: (num(11)? + num(12)?) / ticks(),
        children: (num(13)? + num(14)?) / ticks(),
    })
}

/// A process's own CPU seconds (user + system, all threads).
pub fn process_cpu(pid: u32) -> Option<f64> {
    stat(pid).map(|s| s.own)
}

/// The CPU a process used per operation since `before` (its [`process_cpu`] then), in ms.
pub fn per_op_ms(pid: Option<u32>, before: Option<f64>, ops: usize) -> Option<f64> {
    let (now, before) = (process_cpu(pid?)?, before?);
    (ops > 0).then(|| (now - before) * 1000.0 / ops as f64)
}

/// What a thread of ca-server does, told by its name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `ca-signer`: signs certificates (the signature, the certificate's DER, its status object).
    Signing,
    /// `tokio-rt-worker`: TLS, HTTP, the handlers (and the runtime's blocking pool).
    Requests,
    /// `ca-writer` and the SQLite connections' threads: the write transactions.
    Database,
    Other,
}

impl Role {
    fn of(comm: &str) -> Role {
        match comm.trim_end() {
            "ca-signer" => Role::Signing,
            "tokio-rt-worker" => Role::Requests,
            c if c == "ca-writer" || c.starts_with("sqlx-sqlite") => Role::Database,
            _ => Role::Other,
        }
    }
}

/// The CPU seconds of each live thread of `pid` and what it does (from /proc/<pid>/task: the name
/// and the nanoseconds on a CPU in schedstat).
fn threads(pid: u32) -> HashMap<u32, (Role, f64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashMap::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let tid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let ns: f64 = std::fs::read_to_string(e.path().join("schedstat"))
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()?;
            Some((tid, (Role::of(&comm), ns / 1e9)))
        })
        .collect()
}

/// The server's CPU time per operation by what its threads do (ms): the signers, the request
/// threads, the database threads and the rest of the process (other threads, and those that
/// ended during the phase).
#[derive(Debug, Clone, Copy)]
pub struct ByRole {
    pub signing: f64,
    pub requests: f64,
    pub database: f64,
    pub other: f64,
    /// PostgreSQL's processes (another process, when the server's database is one on this machine).
    pub postgres: Option<f64>,
}

/// The server's and ca-bench's own CPU time per operation, phase after phase.
pub struct Meter {
    pid: Option<u32>,
    since: Option<f64>,
    me_since: Option<f64>,
    threads_since: HashMap<u32, (Role, f64)>,
    /// The PostgreSQL server the server uses, when it runs on this machine.
    postmaster: Option<u32>,
    postgres_since: Postgres,
}

impl Meter {
    /// For the server process `pid` (none: nothing measured), from now.
    pub fn new(pid: Option<u32>) -> Meter {
        Meter {
            pid,
            since: pid.and_then(process_cpu),
            me_since: process_cpu(std::process::id()),
            threads_since: pid.map(threads).unwrap_or_default(),
            postmaster: None,
            postgres_since: None,
        }
    }

    /// Also PostgreSQL's CPU per operation (in [`ByRole`]), its main process being `postmaster`.
    pub fn with_postgres(mut self, postmaster: Option<u32>) -> Meter {
        self.postmaster = postmaster;
        self.postgres_since = postgres_snapshot(postmaster);
        self
    }

    /// From now (after work that belongs to no phase).
    pub fn restart(&mut self) {
        self.since = self.pid.and_then(process_cpu);
        self.me_since = process_cpu(std::process::id());
        self.threads_since = self.pid.map(threads).unwrap_or_default();
        self.postgres_since = postgres_snapshot(self.postmaster);
    }

    /// The server's CPU per operation since the last phase by what its threads do.
    fn by_role(&self, ops: usize) -> Option<ByRole> {
        let pid = self.pid?;
        let total = process_cpu(pid)? - self.since?;
        if ops == 0 {
            return None;
        }
        let mut seconds = [0.0f64; 3];
        for (tid, (role, now)) in threads(pid) {
            // A thread id used again by a new thread (of another name) counts from zero.
            let before = self
                .threads_since
                .get(&tid)
                .filter(|(r, _)| *r == role)
                .map_or(0.0, |(_, t)| *t);
            let slot = match role {
                Role::Signing => 0,
                Role::Requests => 1,
                Role::Database => 2,
                Role::Other => continue,
            };
            seconds[slot] += (now - before).max(0.0);
        }
        let ms = |s: f64| s * 1000.0 / ops as f64;
        Some(ByRole {
            signing: ms(seconds[0]),
            requests: ms(seconds[1]),
            database: ms(seconds[2]),
            // The process's time is counted in clock ticks: what is left may be a tick below zero.
            other: ms((total - seconds.iter().sum::<f64>()).max(0.0)),
            postgres: postgres_seconds(&self.postgres_since, &postgres_snapshot(self.postmaster)).map(ms),
        })
    }

    /// `f` with its id and the server's CPU per operation since the last phase; the next starts now.
    pub fn done(&mut self, mut f: crate::stats::Figures, id: &str) -> crate::stats::Figures {
        f.server_cpu_ms_per_op = per_op_ms(self.pid, self.since, f.count);
        f.server_cpu_by_role = self.by_role(f.count);
        f.bench_cpu_ms_per_op = per_op_ms(Some(std::process::id()), self.me_since, f.count);
        self.restart();
        f.id(id)
    }
}

/// A process's parent.
pub fn parent(pid: u32) -> Option<u32> {
    stat(pid).map(|s| s.parent)
}

/// The children of `parent` and their own CPU seconds.
fn children_of(parent: u32) -> HashMap<u32, f64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).filter(|s| s.parent == parent).map(|s| (pid, s.own)))
        .collect()
}

/// The PostgreSQL main process's own and reaped children's CPU seconds, and each live child's own.
type Postgres = Option<(f64, HashMap<u32, f64>)>;

fn postgres_snapshot(postmaster: Option<u32>) -> Postgres {
    postmaster.and_then(|pm| stat(pm).map(|s| (s.own + s.children, children_of(pm))))
}

/// The CPU seconds PostgreSQL (main process and every backend) used between two snapshots.
fn postgres_seconds(start: &Postgres, end: &Postgres) -> Option<f64> {
    let ((main0, kids0), (main1, kids1)) = (start.as_ref()?, end.as_ref()?);
    // A backend that ended in between was reaped by the main process: its whole time is in the
    // main process's children time now, so what it had used before is taken off.
    let live: f64 = kids1
        .iter()
        .map(|(pid, t)| t - kids0.get(pid).copied().unwrap_or(0.0))
        .sum();
    let ended: f64 = kids0
        .iter()
        .filter(|(pid, _)| !kids1.contains_key(pid))
        .map(|(_, t)| t)
        .sum();
    Some(main1 - main0 + live - ended)
}

struct Snapshot {
    at: Instant,
    replicas: f64,
    postgres: Postgres,
    me: f64,
}

fn snapshot(replicas: &[u32], postmaster: Option<u32>) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        replicas: replicas.iter().filter_map(|&p| stat(p)).map(|s| s.own).sum(),
        postgres: postgres_snapshot(postmaster),
        me: stat(std::process::id()).map_or(0.0, |s| s.own),
    }
}

/// CPU of the replicas, PostgreSQL and ca-bench from now until [`CpuWatch::note`].
pub struct CpuWatch {
    replicas: Vec<u32>,
    postmaster: Option<u32>,
    start: Snapshot,
}

impl CpuWatch {
    pub fn start(replicas: Vec<u32>, postmaster: Option<u32>) -> CpuWatch {
        let start = snapshot(&replicas, postmaster);
        CpuWatch {
            replicas,
            postmaster,
            start,
        }
    }

    /// CPU seconds per wall second (1.00 = one core busy) of each group since the start.
    pub fn note(&self) -> String {
        let end = snapshot(&self.replicas, self.postmaster);
        let wall = end.at.duration_since(self.start.at).as_secs_f64().max(1e-9);
        let postgres = postgres_seconds(&self.start.postgres, &end.postgres)
            .map_or_else(|| "n/a".to_string(), |s| format!("{:.2}", s / wall));
        format!(
            "CPU s/s: {} replicas {:.2}, postgres {postgres}, ca-bench {:.2}",
            self.replicas.len(),
            (end.replicas - self.start.replicas) / wall,
            (end.me - self.start.me) / wall
        )
    }
}
