//! Reloading the configuration while serving: `SIGHUP` under load, a broken file, the file
//! watch, and settings that need a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use latchkey_testkit::recorder::Recorder;

use super::*;

/// Connector `up` at the recorder under `/v{version}`, sending `X-Version: {version}`: an
/// answer says which configuration it was sent under, and a mix of two would show.
fn config(up: &Recorder, version: u32, server: &str) -> String {
    format!(
        r#"[server]
{server}

[connectors.up]
base_url = "{}/v{version}"
headers = {{ "X-Version" = "{version}" }}
auth = {{ method = "api_key_header", name = "X-Api-Key", key = {{ secret = "k" }} }}
"#,
        up.base_url
    )
}

/// The configuration version a proxied answer was sent under, after checking that its path
/// and its header agree.
fn version_of(reply: &Reply) -> Result<u32, String> {
    if reply.status != 200 {
        return Err(format!("status {}: {}", reply.status, reply.body));
    }
    let echo = reply.json();
    let uri = echo["uri"].as_str().unwrap_or_default();
    let from_path: u32 = uri
        .strip_prefix("/v")
        .and_then(|rest| rest.split('/').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("unexpected path {uri}"))?;
    let header = echo["headers"]["x-version"][0].as_str().unwrap_or_default();
    if header != from_path.to_string() {
        return Err(format!("a mix of two configurations: path {uri} with X-Version {header}"));
    }
    if echo["headers"]["x-api-key"][0] != "the-key" {
        return Err(format!("the credential was not sent: {echo}"));
    }
    Ok(from_path)
}

async fn proxied(http: &reqwest::Client, lk_url: &str, app: &str) -> Reply {
    Reply::read(http.get(format!("{lk_url}/v1/proxy/up/thing")).bearer_auth(app).send().await.unwrap()).await
}

/// Calls until one is answered under `version` (generous deadline: this waits for a reload,
/// it does not time it).
async fn until_version(lk: &Latchkey, app: &str, version: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let reply = proxied(&lk.http, &lk.base_url, app).await;
        if version_of(&reply) == Ok(version) {
            return;
        }
        assert!(Instant::now() < deadline, "version {version} never applied; last answer {reply:?}\n{}", lk.output());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the log holds `text`.
async fn until_logged(lk: &Latchkey, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = lk.output();
        if out.contains(text) {
            return out;
        }
        assert!(Instant::now() < deadline, "never logged `{text}`:\n{out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn start(up: &Recorder, server: &str) -> (Latchkey, String) {
    let lk = Latchkey::start(bin(), &config(up, 1, server));
    lk.put_secret("k", "live", "the-key").await;
    let app = lk.app_key("live").await;
    (lk, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reload_under_load_answers_every_call_from_one_configuration_or_the_other() {
    let up = Recorder::start().await;
    let (lk, app) = start(&up, "").await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..8 {
        let (http, url, app, stop) = (lk.http.clone(), lk.base_url.clone(), app.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                answers.push(version_of(&proxied(&http, &url, &app).await));
            }
            answers
        }));
    }
    // The load runs before, between and after the reloads.
    let load_runs = |more: usize| {
        let until = up.count() + more;
        let up = &up;
        async move {
            while up.count() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    load_runs(40).await;
    for version in 2..=6 {
        lk.replace_config(&config(&up, version, ""));
        lk.hangup();
        lk.hangup(); // a second signal while the first reload may be running
        until_version(&lk, &app, version).await;
        load_runs(20).await;
    }
    load_runs(40).await;
    stop.store(true, Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    let mut total = 0;
    for caller in callers {
        for answer in caller.await.unwrap() {
            let version = answer.unwrap_or_else(|e| panic!("a call during the reloads failed: {e}"));
            seen.insert(version);
            total += 1;
        }
    }
    assert!(total > 40, "the load ran ({total} calls)");
    assert!(seen.contains(&1) && seen.contains(&6), "answers under the first and the last configuration: {seen:?}");
    // After the last reload, every call uses the new configuration.
    for _ in 0..20 {
        assert_eq!(version_of(&proxied(&lk.http, &lk.base_url, &app).await), Ok(6));
    }
    let out = lk.output();
    assert!(out.contains("configuration reloaded: connectors changed: up"), "{out}");
    assert!(!out.contains("configuration not reloaded"), "{out}");
}

#[tokio::test]
async fn a_broken_file_on_sighup_changes_nothing_and_names_every_problem() {
    let up = Recorder::start().await;
    let (lk, app) = start(&up, "").await;
    assert_eq!(version_of(&proxied(&lk.http, &lk.base_url, &app).await), Ok(1));
    let broken = r#"[connectors.up]
base_url = "not a url"
auth = { method = "api_key_header", name = "X-Api-Key", key = { secret = "k" } }

[connectors.other]
base_url = "https://other.test"
auth = { method = "no_such_method" }
"#;
    lk.replace_config(broken);
    lk.hangup();
    let out = until_logged(&lk, "configuration not reloaded: 2 problems").await;
    for expected in [
        "latchkey.toml:2: connector `up`, field `base_url`",
        "latchkey.toml:7: connector `other`, field `auth.method`",
        "nothing changed",
    ] {
        assert!(out.contains(expected), "`{expected}` not in:\n{out}");
    }
    for _ in 0..5 {
        assert_eq!(version_of(&proxied(&lk.http, &lk.base_url, &app).await), Ok(1), "the running configuration");
    }
    let ready = lk.http.get(lk.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    // Fixed, the next reload applies.
    lk.replace_config(&config(&up, 2, ""));
    lk.hangup();
    until_version(&lk, &app, 2).await;
}

#[tokio::test]
async fn watch_config_applies_a_changed_file_without_a_signal() {
    let up = Recorder::start().await;
    let (lk, app) = start(&up, "watch_config = true").await;
    assert_eq!(version_of(&proxied(&lk.http, &lk.base_url, &app).await), Ok(1));
    // Written in place, as an editor does (not renamed over).
    let text = config(&up, 2, "watch_config = true");
    std::fs::write(lk.config_path(), &text[..text.len() / 2]).unwrap();
    std::fs::write(lk.config_path(), &text).unwrap();
    until_version(&lk, &app, 2).await;
    let out = until_logged(&lk, "trigger=\"watch_config\"").await;
    assert!(out.contains("configuration reloaded: connectors changed: up"), "{out}");
}

#[tokio::test]
async fn a_reload_that_changes_a_setting_read_at_start_says_it_needs_a_restart() {
    let up = Recorder::start().await;
    let (lk, app) = start(&up, "request_timeout_s = 60").await;
    lk.replace_config(&config(&up, 2, "request_timeout_s = 30\naccess_token_ttl_s = 600"));
    lk.hangup();
    let out = until_logged(&lk, "need a restart to apply").await;
    assert!(out.contains("need a restart to apply: server.request_timeout_s"), "{out}");
    assert!(out.contains("[server] applied: access_token_ttl_s"), "{out}");
    // The rest of the file applied.
    until_version(&lk, &app, 2).await;
}

#[tokio::test]
async fn sighup_without_a_configuration_file_says_there_is_nothing_to_re_read() {
    let lk = Latchkey::start_with(bin(), Options { no_config_file: true, ..Options::default() }).unwrap();
    lk.hangup();
    until_logged(&lk, "started without a configuration file: there is no file to re-read").await;
    let r = lk.http.get(lk.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "still serving");
}
