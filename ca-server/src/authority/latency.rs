//! A small latency histogram (Prometheus buckets, cumulative on read).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Prometheus's default buckets, with 1 and 2.5 ms below them (a signing round, one signature).
const BOUNDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Counts per bucket, sum and count.
#[derive(Debug, Default)]
pub(super) struct Histogram {
    buckets: [AtomicU64; 13],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

/// A reading: cumulative counts per upper bound, sum in seconds, count.
#[derive(Debug, Clone, Default)]
pub struct HistogramSnapshot {
    /// (upper bound in seconds, observations at or below it).
    pub buckets: Vec<(f64, u64)>,
    /// Sum of observations, seconds.
    pub sum: f64,
    /// Observations.
    pub count: u64,
}

impl Histogram {
    /// Records one observation.
    pub(super) fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BOUNDS.iter().position(|b| secs <= *b) {
            if let Some(b) = self.buckets.get(i) {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads it.
    pub(super) fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let buckets = BOUNDS
            .iter()
            .zip(&self.buckets)
            .map(|(b, n)| {
                total += n.load(Ordering::Relaxed);
                (*b, total)
            })
            .collect();
        HistogramSnapshot {
            buckets,
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}
