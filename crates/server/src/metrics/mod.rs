//! Prometheus counters, kept as atomics so the hot path never takes a lock: by route class
//! here, by connector and environment in [`connectors`], latency in [`histogram`]s, and the
//! process's own numbers ([`process`]) read at scrape time.

mod connectors;
mod histogram;
mod process;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

pub use connectors::{ConnectorStats, Connectors, Source, escape};
pub use process::Process;

#[derive(Debug, Clone, Copy)]
pub enum Route {
    Proxy = 0,
    Call = 1,
    Admin = 2,
    Other = 3,
}

const ROUTES: [&str; 4] = ["proxy", "call", "admin", "other"];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Default)]
pub struct Metrics {
    requests: [[AtomicU64; 5]; 4],
    upstream_errors: AtomicU64,
    /// Calls by connector and environment.
    pub connectors: Connectors,
}

impl Metrics {
    pub fn record(&self, route: Route, status: u16, upstream_error: bool) {
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        self.requests[route as usize][class].fetch_add(1, Ordering::Relaxed);
        if upstream_error {
            self.upstream_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP latchkey_http_requests_total Requests served, by route and status class.\n");
        out.push_str("# TYPE latchkey_http_requests_total counter\n");
        for (r, route) in ROUTES.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let n = self.requests[r][c].load(Ordering::Relaxed);
                let _ = writeln!(out, "latchkey_http_requests_total{{route=\"{route}\",status=\"{class}\"}} {n}");
            }
        }
        let upstream_errors = self.upstream_errors.load(Ordering::Relaxed);
        let help = "Calls that failed to reach the upstream or timed out.";
        metric(&mut out, "latchkey_upstream_errors_total", "counter", help, &[("", &upstream_errors)]);
        self.connectors.render(&mut out);
        out
    }
}

/// One metric in Prometheus' text format: its help, its type, and a line per labelled value
/// (`labels` is `""` for none, else e.g. `{kind="full"}`).
pub fn metric(out: &mut String, name: &str, kind: &str, help: &str, values: &[(&str, &dyn std::fmt::Display)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in values {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}
