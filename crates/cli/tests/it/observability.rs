//! Observability (issue 14): `/metrics` by connector and environment with the error's source,
//! latency histograms, token requests by outcome, connections by state and the process's
//! numbers, in a text a strict Prometheus reader takes; request ids on every answer, in error
//! bodies and in the JSON log line.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use latchkey_testkit::fake_oauth::{FakeOAuth, Step};
use latchkey_testkit::latchkey::Options;
use latchkey_testkit::recorder::Recorder;
use reqwest::Method;
use serde_json::{Value, json};

use super::*;

const SECRET: &str = "cs-canary-7f3a9d";

/// Two API connectors (`up`, answered by the recorder; `api`, whose tokens come from a provider
/// that refuses the first grant), `gone` at a closed port, and `fake`, which holds per-user
/// connections; JSON logs.
async fn setup(up: &Recorder, fake: &FakeOAuth) -> Latchkey {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!(
        "[server]\nreturn_to_allow = [\"https://app.example.com/\"]\n\
         [connectors.up]\nbase_url = \"{up}\"\nauth = {{ method = \"api_key_header\", name = \"X-Key\", key = {{ secret = \"k\" }} }}\n\
         [connectors.up.calls.ping]\npath = \"/ping\"\n\
         [connectors.up.calls.down]\npath = \"/status/503\"\n\
         [connectors.gone]\nbase_url = \"http://127.0.0.1:{closed}\"\nauth = {{ method = \"none\" }}\n\
         [connectors.gone.calls.ping]\npath = \"/ping\"\n\
         [connectors.api]\nbase_url = \"{base}\"\n\
         auth = {{ method = \"oauth2_client_credentials\", token_url = \"{token}\", client_id = \"app\", client_secret = {{ secret = \"cs\" }} }}\n\
         [connectors.api.calls.echo]\npath = \"/api/echo\"\n\
         [connectors.fake]\nbase_url = \"{base}\"\n\
         auth = {{ method = \"oauth2_authorization_code\", authorize_url = \"{base}/authorize\", token_url = \"{token}\", client_id = \"app\", client_secret = {{ secret = \"cs\" }} }}\n",
        up = up.base_url,
        base = fake.base_url,
        token = fake.token_url,
    );
    let env = vec![("LATCHKEY_LOG_FORMAT".to_owned(), "json".to_owned())];
    let lk = Latchkey::start_with(bin(), Options { config, env, ..Options::default() }).unwrap();
    lk.put_secret("k", "live", SECRET).await;
    lk.put_secret("cs", "live", SECRET).await;
    lk
}

#[tokio::test]
async fn metrics_count_calls_by_connector_environment_and_source() {
    let up = Recorder::start().await;
    let fake = FakeOAuth::start().await;
    let lk = setup(&up, &fake).await;
    let (live, dev) = (lk.app_key("live").await, lk.app_key("dev").await);
    let status = |r: Reply| (r.status, r.error_code().map(str::to_owned));
    let code = |c: &str| Some(c.to_owned());

    // `up` in both environments; one answer is the upstream's own 503, one a caller's mistake.
    assert_eq!(status(lk.call(&live, "up", "ping", json!({})).await), (200, None));
    assert_eq!(status(lk.call(&dev, "up", "ping", json!({})).await), (200, None));
    assert_eq!(status(lk.call(&live, "up", "down", json!({})).await), (503, None));
    assert_eq!(status(lk.call(&dev, "up", "nope", json!({})).await), (404, code("not_found")));
    let proxied = lk
        .http
        .get(lk.url("/v1/proxy/up/path-canary/x?q=query-canary"))
        .bearer_auth(&dev)
        .header("latchkey-user", "user-canary")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 400, "an app-level connector refuses a user");
    // `gone` fails at the upstream; `api` at the provider (live), then works (dev).
    assert_eq!(status(lk.call(&live, "gone", "ping", json!({})).await), (502, code("upstream_unreachable")));
    fake.script(&[Step::Error(401, "invalid_client")]);
    assert_eq!(status(lk.call(&live, "api", "echo", json!({})).await), (502, code("token_request_failed")));
    assert_eq!(status(lk.call(&dev, "api", "echo", json!({})).await), (200, None));
    // A name no connector has is not a label.
    assert_eq!(status(lk.call(&live, "made-up-name", "ping", json!({})).await), (404, code("not_found")));
    // Two users connected.
    for user in ["ada", "bob"] {
        super::connections::connect_through(&lk, &live, "fake", user).await;
    }

    let page = lk.http.get(lk.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let samples = parse_prometheus(&page);
    let value = |series: &str| *samples.get(series).unwrap_or_else(|| panic!("no {series} in\n{page}"));
    for (series, n) in [
        (r#"latchkey_calls_total{connector="up",env="live",status="2xx"}"#, 1.0),
        (r#"latchkey_calls_total{connector="up",env="dev",status="2xx"}"#, 1.0),
        (r#"latchkey_calls_total{connector="up",env="live",status="5xx"}"#, 1.0),
        (r#"latchkey_calls_total{connector="up",env="dev",status="4xx"}"#, 2.0),
        (r#"latchkey_call_errors_total{connector="up",env="live",source="upstream"}"#, 1.0),
        (r#"latchkey_call_errors_total{connector="up",env="dev",source="caller"}"#, 2.0),
        (r#"latchkey_call_errors_total{connector="up",env="dev",source="upstream"}"#, 0.0),
        (r#"latchkey_call_errors_total{connector="gone",env="live",source="upstream"}"#, 1.0),
        (r#"latchkey_call_errors_total{connector="gone",env="live",source="latchkey"}"#, 0.0),
        (r#"latchkey_call_errors_total{connector="api",env="live",source="provider"}"#, 1.0),
        (r#"latchkey_call_errors_total{connector="api",env="dev",source="provider"}"#, 0.0),
        (r#"latchkey_calls_total{connector="api",env="dev",status="2xx"}"#, 1.0),
        // Latency: every call in the whole; the upstream's and Latchkey's shares when it answered.
        (r#"latchkey_call_duration_seconds_count{connector="up",env="live"}"#, 2.0),
        (r#"latchkey_call_duration_seconds_bucket{connector="up",env="live",le="+Inf"}"#, 2.0),
        (r#"latchkey_call_upstream_seconds_count{connector="up",env="live"}"#, 2.0),
        (r#"latchkey_call_latchkey_seconds_count{connector="up",env="live"}"#, 2.0),
        (r#"latchkey_call_upstream_seconds_count{connector="up",env="dev"}"#, 1.0),
        (r#"latchkey_call_duration_seconds_count{connector="gone",env="live"}"#, 1.0),
        (r#"latchkey_call_upstream_seconds_count{connector="gone",env="live"}"#, 0.0),
        // Token requests by connector, kind and outcome.
        (r#"latchkey_token_requests_total{connector="api",kind="grant",outcome="refused"}"#, 1.0),
        (r#"latchkey_token_requests_total{connector="api",kind="grant",outcome="ok"}"#, 1.0),
        (r#"latchkey_token_requests_total{connector="api",kind="refresh",outcome="ok"}"#, 0.0),
        (r#"latchkey_connections{connector="fake",env="live",state="ok"}"#, 2.0),
        // The sweep's first run is a minute after the start: every table is there, at 0.
        (r#"latchkey_store_swept_rows_total{table="flows"}"#, 0.0),
        (r#"latchkey_store_swept_rows_total{table="events"}"#, 0.0),
    ] {
        assert_eq!(value(series), n, "{series} in\n{page}");
    }
    assert!(value(r#"latchkey_call_upstream_seconds_sum{connector="up",env="live"}"#) > 0.0, "{page}");
    assert!(value(r#"latchkey_call_duration_seconds_bucket{connector="up",env="live",le="10"}"#) == 2.0, "{page}");
    assert!(value("process_resident_memory_bytes") > 1e6, "{page}");
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"), "{page}");
    assert!(value("process_open_fds") >= 3.0 && value("process_max_fds") >= value("process_open_fds"), "{page}");
    assert!(value("process_cpu_seconds_total") > 0.0, "{page}");
    let started = value("process_start_time_seconds");
    assert!(started > 1.7e9 && started < 1e10, "{page}");
    // Labels are connector names, never made-up names, paths, queries, users, parameters or secrets.
    let connectors: BTreeSet<&str> =
        page.lines().filter_map(|l| l.split("connector=\"").nth(1)?.split('"').next()).collect();
    assert_eq!(connectors, BTreeSet::from(["api", "fake", "gone", "up"]), "{page}");
    for leak in ["made-up-name", "canary", SECRET, live.as_str(), dev.as_str(), "ada", "bob", "nope"] {
        assert!(!page.contains(leak), "{leak:?} in /metrics:\n{page}");
    }

    // The JSON log line of the upstream failure names connector, call and environment.
    let line = wait_for_log(&lk, |e| e["connector"] == "gone").await;
    assert_eq!(line["call"], "ping", "{line}");
    assert_eq!(line["env"], "live", "{line}");
    assert_eq!(line["source"], "upstream", "{line}");
    assert_eq!(line["error"], "upstream_unreachable", "{line}");
    assert!(line["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{line}");
    let unknown =
        wait_for_log(&lk, |e| e["status"] == 404 && e["route"] == "/v1/connectors/{connector}/calls/{call}").await;
    assert!(unknown.get("call").is_none() || unknown["call"].is_null(), "an unknown call was logged: {unknown}");
    let log = lk.output();
    for leak in ["made-up-name", "canary"] {
        assert!(!log.contains(leak), "{leak:?} in the log");
    }
}

/// Every answer names its request: a sane `X-Request-Id` is kept, any other replaced; errors
/// carry it in the body with the page that explains them; the log line carries it.
#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let up = Recorder::start().await;
    let fake = FakeOAuth::start().await;
    let lk = setup(&up, &fake).await;
    let live = lk.app_key("live").await;
    let send = |method: Method, path: &str, id: Option<&str>| {
        let mut req = lk.http.request(method, lk.url(path)).bearer_auth(&live);
        if let Some(id) = id {
            req = req.header("x-request-id", id);
        }
        async move { Reply::read(req.send().await.unwrap()).await }
    };
    let id_of = |r: &Reply| r.headers.get("latchkey-request-id").map(|v| v.to_str().unwrap().to_owned());

    // Kept: on a success (hot route), an error (hot route), the router's 404 and 405.
    let sane = "0f8fad5b-d9cb-469f-a165-70867728950e";
    let r = send(Method::GET, "/v1/proxy/up/ok", Some(sane)).await;
    assert_eq!((r.status, id_of(&r).as_deref()), (200, Some(sane)));
    let r = send(Method::GET, "/v1/proxy/gone/x", Some("req_42")).await;
    assert_eq!((r.status, id_of(&r).as_deref()), (502, Some("req_42")));
    assert_eq!(r.json()["error"]["request_id"], "req_42", "{}", r.body);
    assert_eq!(r.json()["error"]["doc_url"], "/docs/errors#upstream_unreachable", "{}", r.body);
    let r = send(Method::GET, "/v1/no-such-route", Some("trace:7/a+b=")).await;
    assert_eq!((r.status, id_of(&r).as_deref()), (404, Some("trace:7/a+b=")));
    assert_eq!(r.json()["error"]["request_id"], "trace:7/a+b=");
    let r = send(Method::DELETE, "/healthz", Some("m-405")).await;
    assert_eq!((r.status, id_of(&r).as_deref()), (405, Some("m-405")));
    assert_eq!(r.json()["error"]["request_id"], "m-405");
    let r = send(Method::GET, "/healthz", Some("h-1")).await;
    assert_eq!((r.status, id_of(&r).as_deref()), (200, Some("h-1")));

    // Replaced: too long, spaces, characters outside the set; and made when none was sent.
    let mut made = BTreeSet::new();
    for id in [Some("a".repeat(129).as_str()), Some("has space"), Some("x\"y"), Some("tab\there"), None] {
        let r = send(Method::GET, "/v1/proxy/gone/x", id).await;
        let got = id_of(&r).unwrap_or_else(|| panic!("no Latchkey-Request-Id: {r:?}", r = r.body));
        assert_ne!(Some(got.as_str()), id, "an insane id was echoed");
        assert!(got.len() <= 128 && got.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'), "{got}");
        assert_eq!(r.json()["error"]["request_id"], got.as_str(), "{}", r.body);
        made.insert(got);
    }
    assert_eq!(made.len(), 5, "made ids repeat: {made:?}");

    // The error's page is served, with the code's section.
    let r = Reply::read(lk.http.get(lk.url("/docs/errors")).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("<h2 id=\"upstream_unreachable\">"), "{}", r.body);

    // The log line carries the id.
    let line = wait_for_log(&lk, |e| e["request_id"] == "req_42").await;
    assert_eq!((line["connector"].as_str(), line["env"].as_str()), (Some("gone"), Some("live")), "{line}");
    assert_eq!(line["status"], 502);
}

/// The first JSON log event named `request` for which `matches` holds (waits up to 10 s).
async fn wait_for_log(lk: &Latchkey, matches: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = lk.output();
        let found = out
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["message"] == "request" && matches(e));
        if let Some(found) = found {
            return found;
        }
        assert!(Instant::now() < deadline, "no such request line in the output:\n{out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads Prometheus' text format strictly (what a scraper rejects, this rejects): each family
/// has one `# HELP` and one `# TYPE` (counter, gauge, histogram) before its samples, which are
/// together; names and labels are well formed, label values quoted and escaped, values
/// numbers; no series twice; a histogram's buckets are cumulative, end with `+Inf` and agree
/// with `_count`. Answers each series (name and labels as written) with its value.
fn parse_prometheus(page: &str) -> BTreeMap<String, f64> {
    let name_ok = |n: &str| {
        !n.is_empty()
            && !n.starts_with(|c: char| c.is_ascii_digit())
            && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    };
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut done_families = BTreeSet::new();
    let mut current: Option<String> = None;
    let mut samples = BTreeMap::new();
    // Per histogram series (labels without `le`): the buckets' counts in order.
    let mut buckets: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    assert!(page.ends_with('\n'), "the page does not end with a newline");
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut words = rest.splitn(3, ' ');
            let (kind, name, text) = (words.next().unwrap(), words.next().unwrap_or(""), words.next().unwrap_or(""));
            assert!(name_ok(name), "bad name: {line}");
            match kind {
                "HELP" => assert!(helped.insert(name.to_owned()), "HELP twice: {line}"),
                "TYPE" => {
                    assert!(["counter", "gauge", "histogram"].contains(&text), "bad type: {line}");
                    assert!(types.insert(name.to_owned(), text.to_owned()).is_none(), "TYPE twice: {line}");
                }
                _ => panic!("unknown comment: {line}"),
            }
            if current.as_deref() != Some(name) {
                if let Some(previous) = current.replace(name.to_owned()) {
                    done_families.insert(previous);
                }
                assert!(!done_families.contains(name), "family {name} is split: {line}");
            }
            continue;
        }
        assert!(!line.trim().is_empty(), "an empty line");
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"))),
            None => (series, ""),
        };
        assert!(name_ok(name), "bad name: {line}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| types.get(*f).is_some_and(|t| t == "histogram")))
            .unwrap_or(name);
        assert_eq!(current.as_deref(), Some(family), "a sample outside its family's block: {line}");
        assert!(types.contains_key(family) && helped.contains(family), "no HELP/TYPE before: {line}");
        // Labels: name="value" pairs, values escaped.
        let mut pairs = Vec::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (label, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad labels: {line}"));
            assert!(name_ok(label) && !label.contains(':'), "bad label name: {line}");
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c @ ('\\' | '"'))) => value.push(c),
                        Some((_, 'n')) => value.push('\n'),
                        _ => panic!("bad escape: {line}"),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => value.push(c),
                    None => panic!("unterminated label value: {line}"),
                }
            };
            pairs.push((label.to_owned(), value));
            rest = &after[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        if name.ends_with("_bucket") && family != name {
            let le = pairs.iter().find(|(l, _)| l == "le").unwrap_or_else(|| panic!("a bucket without le: {line}"));
            let others: Vec<_> = pairs.iter().filter(|(l, _)| l != "le").collect();
            buckets.entry(format!("{family}{others:?}")).or_default().push((le.1.clone(), value));
        }
        if name.ends_with("_count") && family != name {
            let key = format!("{family}{:?}", pairs.iter().collect::<Vec<_>>());
            let b = buckets.get(&key).unwrap_or_else(|| panic!("_count before its buckets: {line}"));
            assert_eq!(b.last().map(|(le, n)| (le.as_str(), *n)), Some(("+Inf", value)), "{line}");
            let cumulative = b.windows(2).all(|w| w[0].1 <= w[1].1);
            let bounds: Vec<f64> =
                b.iter().map(|(le, _)| if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() }).collect();
            assert!(cumulative && bounds.windows(2).all(|w| w[0] < w[1]), "buckets not cumulative: {b:?}");
        }
        assert!(samples.insert(series.to_owned(), value).is_none(), "a series twice: {line}");
    }
    samples
}

/// The strict reader refuses what a scraper refuses.
#[test]
fn the_strict_reader_refuses_broken_pages() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"\"} 2\n";
    assert_eq!(parse_prometheus(good).get("a_total{x=\"1\\\"\"}"), Some(&2.0));
    for bad in [
        "a_total 1\n",
        "# HELP a A.\n# TYPE a gauge\na{x=1} 1\n",
        "# HELP a A.\n# TYPE a gauge\na 1\n# HELP b B.\n# TYPE b gauge\nb 1\na 2\n",
        "# HELP a A.\n# TYPE a gauge\na one\n",
        "# HELP h H.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
        "# HELP a A.\n# TYPE a gauge\na 1\na 1\n",
    ] {
        assert!(std::panic::catch_unwind(|| parse_prometheus(bad)).is_err(), "took {bad:?}");
    }
}
