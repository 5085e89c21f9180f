//! Token storm (issue 3): N concurrent named calls through one connector whose OAuth token is
//! absent ("expired") or already cached ("fresh"), against a token endpoint that takes 200 ms.
//!
//! Not a test: nothing here asserts on time. Run it with `bash bench/run-token-storm`, or
//! `token-storm <path to latchkey> [--n N] [--rounds R] [--delay-ms D]`.
//!
//! Every round starts a new fake provider and a new Latchkey (so the token is absent), a new
//! client whose pool is first filled by N concurrent `GET /healthz` (so both scenarios pay the
//! same for connections), then times N concurrent `POST /v1/connectors/api/calls/echo` from
//! start to the last answer. "fresh" makes one call first, so the token is cached. Rounds
//! alternate between the scenarios.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test and benchmark code: a panic is the failure report")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use latchkey_testkit::fake_oauth::FakeOAuth;
use latchkey_testkit::latchkey::{Latchkey, Options};
use serde_json::json;

/// One request may take this long (after that it counts as a failure).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A whole storm may take this long (after that the bench stops with an error).
const ROUND_TIMEOUT: Duration = Duration::from_secs(90);

struct Args {
    bin: PathBuf,
    n: usize,
    rounds: usize,
    delay_ms: u64,
}

fn usage() -> ! {
    eprintln!("usage: token-storm <path to latchkey> [--n N] [--rounds R] [--delay-ms D]");
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut args = Args { bin: PathBuf::new(), n: 1000, rounds: 5, delay_ms: 200 };
    let mut bin = None;
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> u64 {
            it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                eprintln!("{name} needs a number");
                usage()
            })
        };
        match a.as_str() {
            "--n" => args.n = usize::try_from(num("--n")).unwrap_or(1).max(1),
            "--rounds" => args.rounds = usize::try_from(num("--rounds")).unwrap_or(1).max(1),
            "--delay-ms" => args.delay_ms = num("--delay-ms"),
            "-h" | "--help" => usage(),
            _ if bin.is_none() && !a.starts_with('-') => bin = Some(PathBuf::from(a)),
            _ => usage(),
        }
    }
    // Latchkey runs in its own work directory: a relative path would resolve there.
    let bin = bin.unwrap_or_else(|| usage());
    args.bin = std::fs::canonicalize(&bin).unwrap_or_else(|e| {
        eprintln!("no latchkey binary at {}: {e}", bin.display());
        usage()
    });
    args
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Expired,
    Fresh,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Expired => "expired",
            Scenario::Fresh => "fresh",
        }
    }
}

/// One timed storm.
struct Round {
    wall: Duration,
    ok: usize,
    /// Token requests the provider received during the storm (after any warm-up).
    token_requests: usize,
    /// Per-call latencies, sorted.
    latencies: Vec<Duration>,
    /// Anything but 200, by "status error-code" or transport error.
    failures: BTreeMap<String, usize>,
}

/// The client the storm uses: one pool with room for every concurrent call.
#[allow(clippy::disallowed_methods)]
fn storm_client(n: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(n)
        .timeout(CALL_TIMEOUT)
        .build()
        .expect("storm client")
}

/// The connector of `crates/cli/tests/it/lifecycle.rs`: the password grant at the fake.
fn config(fake: &FakeOAuth) -> String {
    format!(
        "[connectors.api]\nbase_url = \"{base}\"\n\
         auth = {{ method = \"oauth2_password\", token_url = \"{token}\", username = \"ada\", password = {{ secret = \"pw\" }}, \
         client_id = \"app\", client_secret = {{ secret = \"cs\" }} }}\n\
         [connectors.api.calls.echo]\npath = \"/api/echo\"\n",
        base = fake.base_url,
        token = fake.token_url,
    )
}

async fn start(bin: &Path, delay: Duration) -> (FakeOAuth, Latchkey, String) {
    let fake = FakeOAuth::start().await;
    fake.set_delay(delay);
    let opts = Options {
        config: config(&fake),
        // The default level (the testkit asks for debug): one line per call, as in production.
        env: vec![("LATCHKEY_LOG".to_owned(), "info".to_owned())],
        ..Options::default()
    };
    let lk = Latchkey::start_with(bin, opts).unwrap_or_else(|out| panic!("latchkey did not start:\n{out}"));
    lk.put_secret("pw", "live", "ada-password").await;
    lk.put_secret("cs", "live", "client-secret").await;
    let app = lk.app_key("live").await;
    (fake, lk, app)
}

/// Fills the client's pool: `n` concurrent `GET /healthz`, which touch no token.
async fn warm_pool(client: &reqwest::Client, lk: &Latchkey, n: usize) {
    let url = lk.url("/healthz");
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let r = client.get(&url).send().await.expect("healthz");
                let _ = r.bytes().await;
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("warm-up task");
    }
}

async fn one_call(client: &reqwest::Client, url: &str, app: &str) -> Result<(), String> {
    let resp = client
        .post(url)
        .bearer_auth(app)
        .json(&json!({"params": {}}))
        .send()
        .await
        .map_err(|e| format!("transport: {e}"))?;
    let status = resp.status().as_u16();
    let code = resp.headers().get("latchkey-error").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
    if status == 200 && body.starts_with(b"{") { Ok(()) } else { Err(format!("{status} {code}").trim().to_owned()) }
}

async fn round(args: &Args, scenario: Scenario) -> Round {
    let (fake, lk, app) = start(&args.bin, Duration::from_millis(args.delay_ms)).await;
    let client = storm_client(args.n);
    warm_pool(&client, &lk, args.n).await;
    let url = lk.url("/v1/connectors/api/calls/echo");
    if scenario == Scenario::Fresh {
        one_call(&client, &url, &app).await.unwrap_or_else(|e| panic!("warm-up call failed: {e}\n{}", lk.output()));
    }
    let before = fake.token_requests();

    let started = Instant::now();
    let tasks: Vec<_> = (0..args.n)
        .map(|_| {
            let (client, url, app) = (client.clone(), url.clone(), app.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let r = one_call(&client, &url, &app).await;
                (t.elapsed(), r)
            })
        })
        .collect();
    let joined = tokio::time::timeout(ROUND_TIMEOUT, async {
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.expect("call task"));
        }
        out
    })
    .await;
    let wall = started.elapsed();
    let results = joined.unwrap_or_else(|_| panic!("a {} round took over {ROUND_TIMEOUT:?}", scenario.name()));

    let mut ok = 0;
    let mut failures = BTreeMap::new();
    let mut latencies = Vec::with_capacity(results.len());
    for (d, r) in results {
        latencies.push(d);
        match r {
            Ok(()) => ok += 1,
            Err(e) => *failures.entry(e).or_insert(0) += 1,
        }
    }
    latencies.sort();
    let token_requests = fake.token_requests() - before;
    if token_requests != usize::from(scenario == Scenario::Expired) {
        let grants: Vec<String> = fake.calls().iter().map(|c| c.grant().to_owned()).collect();
        eprintln!(
            "!! {}: {token_requests} token requests during the storm (grants so far: {grants:?}); Latchkey's log tail:\n{}",
            scenario.name(),
            tail(&lk.output(), 40)
        );
    }
    drop(client);
    drop(lk);
    Round { wall, ok, token_requests, latencies, failures }
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    let m = v.len() / 2;
    if v.len() % 2 == 1 { v[m] } else { (v[m - 1] + v[m]) / 2 }
}

struct Summary {
    scenario: Scenario,
    rounds: Vec<Round>,
}

impl Summary {
    fn median_wall(&self) -> Duration {
        median(self.rounds.iter().map(|r| r.wall).collect())
    }
    fn median_of(&self, p: f64) -> Duration {
        median(self.rounds.iter().map(|r| pct(&r.latencies, p)).collect())
    }
    fn list<T: ToString>(&self, f: impl Fn(&Round) -> T) -> String {
        self.rounds.iter().map(|r| f(r).to_string()).collect::<Vec<_>>().join(",")
    }
}

/// `/proc/loadavg`: 1, 5 and 15 minute load averages (other work on the machine skews results).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("token-storm: {}", std::env::args().collect::<Vec<_>>().join(" "));
    println!("machine: {cores} cores (nproc), {}", cpu_model());
    println!(
        "N = {} concurrent calls per round, R = {} rounds per scenario, token endpoint delay {} ms",
        args.n, args.rounds, args.delay_ms
    );
    println!("(bench client, fake provider and Latchkey share the machine's cores)");

    // Rounds alternate (expired, fresh, expired, ...) so that background load on a shared
    // machine falls on both scenarios alike.
    println!("load average before: {}", loadavg());
    let mut summaries = vec![
        Summary { scenario: Scenario::Expired, rounds: Vec::new() },
        Summary { scenario: Scenario::Fresh, rounds: Vec::new() },
    ];
    for i in 1..=args.rounds {
        for s in &mut summaries {
            let scenario = s.scenario;
            let r = round(&args, scenario).await;
            println!(
                "  round {i} {:<7}: wall {:>7} ms, ok {}/{}, token requests {}, per call p50 {} / p99 {} / max {} ms{}",
                scenario.name(),
                ms(r.wall),
                r.ok,
                args.n,
                r.token_requests,
                ms(pct(&r.latencies, 0.5)),
                ms(pct(&r.latencies, 0.99)),
                ms(pct(&r.latencies, 1.0)),
                if r.failures.is_empty() { String::new() } else { format!(", failures {:?}", r.failures) },
            );
            s.rounds.push(r);
        }
    }
    println!("load average after: {}", loadavg());

    println!();
    println!(
        "| scenario | N    | token requests (per round) | successes (per round)          | median wall ms | median p50 ms | median p99 ms |"
    );
    println!(
        "|----------|------|----------------------------|--------------------------------|----------------|---------------|---------------|"
    );
    for s in &summaries {
        println!(
            "| {:<8} | {:<4} | {:<26} | {:<30} | {:>14} | {:>13} | {:>13} |",
            s.scenario.name(),
            args.n,
            s.list(|r| r.token_requests),
            s.list(|r| r.ok),
            ms(s.median_wall()),
            ms(s.median_of(0.5)),
            ms(s.median_of(0.99)),
        );
    }
    let (expired, fresh) = (summaries[0].median_wall(), summaries[1].median_wall());
    println!();
    println!(
        "median wall ratio expired/fresh: {:.2} (difference {} ms; token endpoint delay {} ms)",
        expired.as_secs_f64() / fresh.as_secs_f64().max(1e-9),
        ms(expired.saturating_sub(fresh)),
        args.delay_ms
    );
    let bad = summaries
        .iter()
        .flat_map(|s| s.rounds.iter().map(move |r| (s.scenario, r)))
        .any(|(sc, r)| r.ok != args.n || r.token_requests != usize::from(sc == Scenario::Expired));
    if bad {
        println!("NOTE: some round had failures or an unexpected number of token requests (see above)");
    }
}
