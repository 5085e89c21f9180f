//! A latency histogram as Prometheus counts it: fixed buckets of atomics, so recording is a
//! search over 16 bounds and two additions, never a lock.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The buckets' upper bounds in microseconds: 100 µs (Latchkey's own share of a call) to 10 s
/// (a slow upstream). The `le` labels are these in seconds.
pub const BOUNDS_MICROS: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000,
];

/// Observations per bucket (not cumulative; the last is past every bound) and their sum.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_MICROS.partition_point(|bound| *bound < micros);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The `_bucket` (cumulative, `le`), `_sum` (seconds) and `_count` lines, each labelled
    /// with `labels` (`connector="gh",env="live"`).
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut seen = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            match BOUNDS_MICROS.get(i) {
                Some(bound) => {
                    let le = *bound as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {seen}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {seen}");
                }
            }
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {seen}");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Histogram;

    /// An observation lands in the first bucket whose bound it does not pass (`le` is "less
    /// than or equal"); buckets are rendered cumulative, with the sum in seconds.
    #[test]
    fn observations_land_in_cumulative_buckets_by_their_upper_bound() {
        let h = Histogram::default();
        for micros in [50, 100, 101, 2_500, 20_000_000] {
            h.observe(Duration::from_micros(micros));
        }
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "connector=\"gh\",env=\"live\"");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 17 + 2, "{out}");
        assert_eq!(lines[0], "x_seconds_bucket{connector=\"gh\",env=\"live\",le=\"0.0001\"} 2");
        assert_eq!(lines[1], "x_seconds_bucket{connector=\"gh\",env=\"live\",le=\"0.00025\"} 3");
        assert_eq!(lines[3], "x_seconds_bucket{connector=\"gh\",env=\"live\",le=\"0.001\"} 3");
        assert_eq!(lines[4], "x_seconds_bucket{connector=\"gh\",env=\"live\",le=\"0.0025\"} 4");
        assert_eq!(lines[15], "x_seconds_bucket{connector=\"gh\",env=\"live\",le=\"10\"} 4");
        assert_eq!(lines[16], "x_seconds_bucket{connector=\"gh\",env=\"live\",le=\"+Inf\"} 5");
        assert_eq!(lines[17], "x_seconds_sum{connector=\"gh\",env=\"live\"} 20.002751");
        assert_eq!(lines[18], "x_seconds_count{connector=\"gh\",env=\"live\"} 5");
    }
}
