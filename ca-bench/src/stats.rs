//! Latency statistics and the report lines.

use std::time::Duration;

/// Figures of one phase.
#[derive(Debug, Clone)]
pub struct Figures {
    pub phase: String,
    pub count: usize,
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Ratio to the signing ceiling, for signing phases.
    pub ratio: Option<f64>,
    pub note: String,
    /// The own server's database (`sqlite`, `pg`); shown as a column when a run has both.
    pub backend: &'static str,
    /// The phase's id in `--json` (derived from the name when not set).
    pub id: String,
    /// CPU time of the server process per operation (ms), when ca-bench knows its process.
    pub server_cpu_ms_per_op: Option<f64>,
    /// CPU time of ca-bench itself (the load generator, on the same cores) per operation (ms).
    pub bench_cpu_ms_per_op: Option<f64>,
    /// Resident memory (MB), for the RSS phases.
    pub rss_mb: Option<f64>,
    /// The server's CPU time per operation by what its threads do.
    pub server_cpu_by_role: Option<crate::cpu::ByRole>,
    /// For a signing phase: the ceiling measured right before and right after it (2 cores, /s).
    pub ceiling_around: Option<(f64, f64)>,
    /// For a signing phase: the server's signing rounds in it (write transactions storing
    /// certificates and reserving serials), their number and their time in all (s), from the
    /// server's `/metrics` (`ca_signing_round_seconds`).
    pub rounds: Option<(u64, f64)>,
    /// For a signing phase: the CA key's signatures the server made in it, their number and the CPU
    /// time spent in them (s), from its `/metrics` (`ca_key_signatures_total`,
    /// `ca_key_signature_cpu_seconds_total`).
    pub signatures: Option<(u64, f64)>,
    /// The signing ceiling at the machine's speed during the phase (/s): the cores, each signing
    /// one signature after the other at the CPU time one signature took in the phase.
    pub ceiling_at_speed: Option<f64>,
}

impl Figures {
    /// With the id `--json` gives it.
    pub fn id(mut self, id: impl Into<String>) -> Figures {
        self.id = id.into();
        self
    }

    /// The id in `--json`: the one set, else the name in lower case with `_` between words.
    pub fn json_id(&self) -> String {
        if !self.id.is_empty() {
            return self.id.clone();
        }
        let mut out = String::new();
        for w in self
            .phase
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            if !out.is_empty() {
                out.push('_');
            }
            out.push_str(&w.to_ascii_lowercase());
        }
        out
    }

    /// The phase as `--json` writes it.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.json_id(),
            "name": self.phase.trim(),
            "backend": if self.backend.is_empty() { "sqlite" } else { self.backend },
            "count": self.count,
            "ops_per_s": self.per_sec,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "ratio": self.ratio,
            "server_cpu_ms_per_op": self.server_cpu_ms_per_op,
            "bench_cpu_ms_per_op": self.bench_cpu_ms_per_op,
            "rss_mb": self.rss_mb,
            "server_cpu_ms_per_op_by_thread": self.server_cpu_by_role.map(|r| serde_json::json!({
                "signing": r.signing,
                "requests": r.requests,
                "database": r.database,
                "other": r.other,
                "postgres": r.postgres,
            })),
            "ceiling_around_per_s": self.ceiling_around.map(|(a, b)| [a, b]),
            "ratio_around": self.ceiling_around.map(|(a, b)| self.per_sec / ((a + b) / 2.0).max(1e-9)),
            "signing_rounds": self.rounds.map(|(n, _)| n),
            "signing_round_ms_mean": self.rounds.map(|(n, s)| s * 1000.0 / (n.max(1) as f64)),
            "signature_cpu_ms": self.signatures.map(|(n, cpu)| cpu * 1000.0 / (n.max(1) as f64)),
            "ceiling_at_speed_per_s": self.ceiling_at_speed,
            "ratio_at_speed": self.ceiling_at_speed.map(|c| self.per_sec / c.max(1e-9)),
            "note": self.note,
        })
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(idx).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

pub fn figures(phase: &str, mut lat: Vec<Duration>, wall: Duration) -> Figures {
    lat.sort_unstable();
    Figures {
        phase: phase.to_string(),
        count: lat.len(),
        per_sec: lat.len() as f64 / wall.as_secs_f64().max(1e-9),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        ratio: None,
        note: String::new(),
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

/// The table's header; `backends`: with a first column naming the own server's database.
pub fn header(backends: bool) -> String {
    let row = format!(
        "{:<44} {:>8} {:>11} {:>9} {:>9} {:>8} {:>11} {:>11}  {}",
        "phase", "count", "ops/s", "p50 ms", "p99 ms", "ratio", "srv CPU ms", "bench CPU", "note"
    );
    if backends {
        format!("{:<7} {row}", "backend")
    } else {
        row
    }
}

pub fn line(f: &Figures, backends: bool) -> String {
    let ratio = f
        .ratio
        .map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0));
    let cpu = f
        .server_cpu_ms_per_op
        .map_or_else(|| "-".to_string(), |c| format!("{c:.3}"));
    let bench = f
        .bench_cpu_ms_per_op
        .map_or_else(|| "-".to_string(), |c| format!("{c:.3}"));
    let row = format!(
        "{:<44} {:>8} {:>11.1} {:>9.2} {:>9.2} {:>8} {:>11} {:>11}  {}",
        f.phase, f.count, f.per_sec, f.p50_ms, f.p99_ms, ratio, cpu, bench, f.note
    );
    if backends {
        format!("{:<7} {row}", f.backend)
    } else {
        row
    }
}

/// For a signing phase measured with its ceiling around it: where the cores' time per certificate
/// went (`cores` × the wall time per certificate), next to the raw signature's cost on all cores
/// at the time (`cores` ÷ the ceiling around the phase). The raw signature's share of the time is
/// the phase's ratio to that ceiling.
pub fn account(f: &Figures, cores: usize, backends: bool) -> Option<String> {
    let (before, after) = f.ceiling_around?;
    let by = f.server_cpu_by_role?;
    if f.per_sec <= 0.0 {
        return None;
    }
    let cores = cores as f64;
    let time = cores * 1000.0 / f.per_sec;
    let raw = cores * 1000.0 / ((before + after) / 2.0).max(1e-9);
    let server = f.server_cpu_ms_per_op.unwrap_or(0.0);
    let bench = f.bench_cpu_ms_per_op.unwrap_or(0.0);
    let postgres = by
        .postgres
        .map_or_else(String::new, |p| format!(" + postgres {p:.3}"));
    // The database stage: one round at a time; how busy it was over the phase.
    let rounds = f.rounds.filter(|(n, _)| *n > 0).map_or_else(String::new, |(n, secs)| {
        let wall = f.count as f64 / f.per_sec;
        format!(
            "; {n} signing rounds, {:.2} certificates and {:.2} ms each, the database stage busy {:.0} % of the phase",
            f.count as f64 / n as f64,
            secs * 1000.0 / n as f64,
            100.0 * secs / wall.max(1e-9)
        )
    });
    // The signatures' own CPU time, measured by the server as it signed: the machine's speed during
    // the phase, whatever it was before and after it.
    let at_speed = match (f.signatures, f.ceiling_at_speed) {
        (Some((n, cpu)), Some(c)) => format!(
            "; the signatures {:.3} ms of CPU each during the phase, a ceiling of {c:.0}/s at that speed: {:.1} %",
            cpu * 1000.0 / n as f64,
            100.0 * f.per_sec / c.max(1e-9)
        ),
        _ => String::new(),
    };
    let backend = if backends {
        format!("[{}] ", f.backend)
    } else {
        String::new()
    };
    Some(format!(
        "{backend}{}: {time:.3} = signing threads {:.3} (raw signature {raw:.3}, ceiling {before:.0}/s before, \
         {after:.0}/s after: {:.1} %) + requests {:.3} + database {:.3} + other {:.3}{postgres} + ca-bench \
         {bench:.3} + idle or other processes {:.3}{at_speed}{rounds}",
        f.json_id(),
        by.signing,
        100.0 * raw / time,
        by.requests,
        by.database,
        by.other,
        time - server - bench - by.postgres.unwrap_or(0.0),
    ))
}
