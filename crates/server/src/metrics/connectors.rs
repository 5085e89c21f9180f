//! Calls by connector and environment: requests by status class, errors by source, and the
//! latency histograms (the whole request, the upstream's share, Latchkey's own). Each
//! connector's counters are found once per request by name in a lock-free table; a name is
//! added the first time a request names a connector that exists, so a caller cannot make up
//! label values. The counters live as long as the process (one small struct per connector
//! ever called, a bounded set), which lets a request hold them without reference counting.

use std::fmt::Write as _;
use std::hash::BuildHasher as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use latchkey_core::{Env, Origin};

use super::histogram::Histogram;

/// Whose failure an error answer is, as the `source` label says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The request itself: a bad parameter, an unknown call, a refused key (a 4xx that is not
    /// Latchkey's failure).
    Caller,
    /// Latchkey: its configuration, its store, itself.
    Latchkey,
    /// The upstream API: unreachable, timed out, or its own 5xx answer.
    Upstream,
    /// The OAuth provider's token endpoint.
    Provider,
}

impl Source {
    pub const ALL: [Source; 4] = [Source::Caller, Source::Latchkey, Source::Upstream, Source::Provider];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Caller => "caller",
            Source::Latchkey => "latchkey",
            Source::Upstream => "upstream",
            Source::Provider => "provider",
        }
    }

    pub fn of(origin: Origin) -> Source {
        match origin {
            Origin::Caller => Source::Caller,
            Origin::Config | Origin::Store | Origin::Internal => Source::Latchkey,
            Origin::Upstream => Source::Upstream,
            Origin::Provider => Source::Provider,
        }
    }
}

const ENVS: [Env; 2] = [Env::Live, Env::Dev];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[derive(Default)]
struct EnvStats {
    requests: [AtomicU64; 5],
    errors: [AtomicU64; 4],
    duration: Histogram,
    upstream: Histogram,
    latchkey: Histogram,
}

/// One connector's counters.
pub struct ConnectorStats {
    pub(crate) name: Box<str>,
    envs: [EnvStats; 2],
}

impl ConnectorStats {
    /// One answered call: its status, the source of its error if it failed, how long it took
    /// and, when the upstream answered, how long the upstream took.
    pub fn record(&self, env: Env, status: u16, error: Option<Source>, total: Duration, upstream: Option<Duration>) {
        let e = &self.envs[usize::from(env == Env::Dev)];
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        e.requests[class].fetch_add(1, Ordering::Relaxed);
        if let Some(source) = error {
            e.errors[source as usize].fetch_add(1, Ordering::Relaxed);
        }
        e.duration.observe(total);
        if let Some(upstream) = upstream {
            e.upstream.observe(upstream);
            e.latchkey.observe(total.saturating_sub(upstream));
        }
    }
}

/// Slots in the table of connectors: at most [`MAX_CONNECTORS`] are used, so a probe ends soon.
const SLOTS: usize = 1024;

/// Connectors labelled at most; calls to connectors beyond are counted without labels.
pub const MAX_CONNECTORS: usize = SLOTS * 3 / 4;

/// The counters of every connector called so far: an open-addressing table whose slots are
/// set once and never cleared, so a lookup is a hash, a load or two and a comparison of names,
/// with no lock and no reference count.
pub struct Connectors {
    slots: Box<[OnceLock<&'static ConnectorStats>]>,
    hasher: foldhash::fast::RandomState,
    used: AtomicUsize,
}

impl Default for Connectors {
    fn default() -> Self {
        Connectors {
            slots: (0..SLOTS).map(|_| OnceLock::new()).collect(),
            hasher: foldhash::fast::RandomState::default(),
            used: AtomicUsize::new(0),
        }
    }
}

impl Connectors {
    /// The counters of connector `name`; the first time, only if `exists` says it does (and
    /// while fewer than [`MAX_CONNECTORS`] are labelled).
    pub fn get(&self, name: &str, exists: impl FnOnce() -> bool) -> Option<&'static ConnectorStats> {
        let start = self.hasher.hash_one(name) as usize;
        let probe = || (0..SLOTS).map(move |i| &self.slots[(start + i) % SLOTS]);
        for slot in probe() {
            match slot.get() {
                Some(stats) if *stats.name == *name => return Some(stats),
                Some(_) => continue,
                None => break,
            }
        }
        if !exists() || self.used.load(Ordering::Relaxed) >= MAX_CONNECTORS {
            return None;
        }
        // The first empty slot on the probe takes it, unless another request took that slot
        // first (for this name: use it; for another: probe on).
        for slot in probe() {
            let stats = slot.get_or_init(|| {
                self.used.fetch_add(1, Ordering::Relaxed);
                Box::leak(Box::new(ConnectorStats {
                    name: name.into(),
                    envs: [EnvStats::default(), EnvStats::default()],
                }))
            });
            if *stats.name == *name {
                return Some(stats);
            }
        }
        None
    }

    pub fn render(&self, out: &mut String) {
        let mut all: Vec<&ConnectorStats> = self.slots.iter().filter_map(|s| s.get().copied()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let each = |out: &mut String, f: &dyn Fn(&mut String, &str, &EnvStats)| {
            for c in &all {
                for (i, env) in ENVS.iter().enumerate() {
                    let labels = format!("connector=\"{}\",env=\"{env}\"", escape(&c.name));
                    f(out, &labels, &c.envs[i]);
                }
            }
        };
        header(
            out,
            "latchkey_calls_total",
            "counter",
            "Calls (proxy and named) by connector, environment and status class.",
        );
        each(out, &|out, labels, e| {
            for (class, n) in CLASSES.iter().zip(&e.requests) {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(out, "latchkey_calls_total{{{labels},status=\"{class}\"}} {n}");
            }
        });
        header(
            out,
            "latchkey_call_errors_total",
            "counter",
            "Failed calls by connector, environment and whose failure: caller, latchkey, upstream (including its own 5xx answers), provider.",
        );
        each(out, &|out, labels, e| {
            for (source, n) in Source::ALL.iter().zip(&e.errors) {
                let (source, n) = (source.as_str(), n.load(Ordering::Relaxed));
                let _ = writeln!(out, "latchkey_call_errors_total{{{labels},source=\"{source}\"}} {n}");
            }
        });
        let histograms: [(&str, &str, Pick); 3] = [
            ("latchkey_call_duration_seconds", "Calls' whole time, to the response head.", |e| &e.duration),
            (
                "latchkey_call_upstream_seconds",
                "The upstream's share of calls it answered: from the send to its response head.",
                |e| &e.upstream,
            ),
            (
                "latchkey_call_latchkey_seconds",
                "Latchkey's own share of calls the upstream answered: the whole time less the upstream's (token requests included).",
                |e| &e.latchkey,
            ),
        ];
        for (name, help, pick) in histograms {
            header(out, name, "histogram", help);
            each(out, &|out, labels, e| pick(e).render(out, name, labels));
        }
    }
}

/// Which of an environment's histograms.
type Pick = fn(&EnvStats) -> &Histogram;

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value as the text format writes it: `\`, `"` and newlines escaped.
pub fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use latchkey_core::Env;

    use super::{Connectors, Source};

    /// Only a connector that exists becomes a label; its counters are kept by environment,
    /// status class and error source, and Latchkey's share is the whole less the upstream's.
    #[test]
    fn calls_are_counted_by_connector_env_status_and_source() {
        let c = Connectors::default();
        assert!(c.get("nope", || false).is_none());
        let gh = c.get("gh", || true).unwrap();
        assert!(std::ptr::eq(gh, c.get("gh", || panic!("looked up twice")).unwrap()));
        gh.record(Env::Live, 200, None, Duration::from_millis(30), Some(Duration::from_millis(29)));
        gh.record(Env::Dev, 502, Some(Source::Upstream), Duration::from_millis(3), None);
        gh.record(Env::Dev, 400, Some(Source::Caller), Duration::from_micros(40), None);
        c.get("a\"b", || true).unwrap();
        // Many connectors, each found again (probes past the others), up to the bound.
        for i in 0..super::MAX_CONNECTORS - 2 {
            let name = format!("c{i}");
            let first = c.get(&name, || true).unwrap();
            assert!(std::ptr::eq(first, c.get(&name, || unreachable!()).unwrap()), "{name}");
        }
        assert!(c.get("one-too-many", || true).is_none(), "past the bound");
        assert!(std::ptr::eq(gh, c.get("gh", || unreachable!()).unwrap()));
        let mut out = String::new();
        c.render(&mut out);
        for line in [
            "latchkey_calls_total{connector=\"gh\",env=\"live\",status=\"2xx\"} 1",
            "latchkey_calls_total{connector=\"gh\",env=\"dev\",status=\"5xx\"} 1",
            "latchkey_calls_total{connector=\"gh\",env=\"dev\",status=\"4xx\"} 1",
            "latchkey_calls_total{connector=\"gh\",env=\"live\",status=\"5xx\"} 0",
            "latchkey_call_errors_total{connector=\"gh\",env=\"dev\",source=\"upstream\"} 1",
            "latchkey_call_errors_total{connector=\"gh\",env=\"dev\",source=\"caller\"} 1",
            "latchkey_call_errors_total{connector=\"gh\",env=\"live\",source=\"upstream\"} 0",
            "latchkey_call_duration_seconds_count{connector=\"gh\",env=\"dev\"} 2",
            "latchkey_call_upstream_seconds_count{connector=\"gh\",env=\"dev\"} 0",
            "latchkey_call_upstream_seconds_bucket{connector=\"gh\",env=\"live\",le=\"0.025\"} 0",
            "latchkey_call_upstream_seconds_bucket{connector=\"gh\",env=\"live\",le=\"0.05\"} 1",
            "latchkey_call_latchkey_seconds_bucket{connector=\"gh\",env=\"live\",le=\"0.001\"} 1",
            "latchkey_call_latchkey_seconds_sum{connector=\"gh\",env=\"live\"} 0.001",
            "latchkey_calls_total{connector=\"a\\\"b\",env=\"live\",status=\"2xx\"} 0",
        ] {
            assert!(out.lines().any(|l| l == line), "no {line:?} in\n{out}");
        }
        assert!(!out.contains("nope") && !out.contains("one-too-many"), "{out}");
        // Each family once, its samples together.
        for family in ["latchkey_calls_total", "latchkey_call_errors_total", "latchkey_call_duration_seconds"] {
            assert_eq!(out.matches(&format!("# TYPE {family} ")).count(), 1, "{out}");
        }
    }
}
