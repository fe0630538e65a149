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

struct Snapshot {
    at: Instant,
    replicas: f64,
    /// The main process's own and reaped children's time, and each live child's own.
    postgres: Option<(f64, HashMap<u32, f64>)>,
    me: f64,
}

fn snapshot(replicas: &[u32], postmaster: Option<u32>) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        replicas: replicas.iter().filter_map(|&p| stat(p)).map(|s| s.own).sum(),
        postgres: postmaster.and_then(|pm| stat(pm).map(|s| (s.own + s.children, children_of(pm)))),
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
        let postgres = match (&self.start.postgres, &end.postgres) {
            (Some((main0, kids0)), Some((main1, kids1))) => {
                // A backend that ended in between was reaped by the main process: its whole time is in
                // the main process's children time now, so what it had used before is taken off.
                let live: f64 = kids1
                    .iter()
                    .map(|(pid, t)| t - kids0.get(pid).copied().unwrap_or(0.0))
                    .sum();
                let ended: f64 = kids0
                    .iter()
                    .filter(|(pid, _)| !kids1.contains_key(pid))
                    .map(|(_, t)| t)
                    .sum();
                format!("{:.2}", (main1 - main0 + live - ended) / wall)
            }
            _ => "n/a".to_string(),
        };
        format!(
            "CPU s/s: {} replicas {:.2}, postgres {postgres}, ca-bench {:.2}",
            self.replicas.len(),
            (end.replicas - self.start.replicas) / wall,
            (end.me - self.start.me) / wall
        )
    }
}
