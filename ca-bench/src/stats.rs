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
    }
}

/// The table's header; `backends`: with a first column naming the own server's database.
pub fn header(backends: bool) -> String {
    let row = format!(
        "{:<44} {:>8} {:>11} {:>9} {:>9} {:>8}  {}",
        "phase", "count", "ops/s", "p50 ms", "p99 ms", "ratio", "note"
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
    let row = format!(
        "{:<44} {:>8} {:>11.1} {:>9.2} {:>9.2} {:>8}  {}",
        f.phase, f.count, f.per_sec, f.p50_ms, f.p99_ms, ratio, f.note
    );
    if backends {
        format!("{:<7} {row}", f.backend)
    } else {
        row
    }
}
