//! SECURITY S8: with `[server] audit_log`, every call and credential change is written to the
//! log before it goes upstream or takes effect; strings that may carry caller data appear only
//! as HMACs (looked up with `POST /v1/admin/audit-hash`); secret values never appear; and when
//! the log cannot be written, calls and changes are refused and nothing reaches the upstream.

use latchkey_testkit::latchkey::Options;
use latchkey_testkit::recorder::Recorder;
use reqwest::Method;
use serde_json::{Value, json};

use super::*;

fn config(up: &Recorder, log: &str, key: &str) -> String {
    format!(
        "[server]\naudit_log = \"{log}\"\n[connectors.up]\nbase_url = \"{}/api\"\n\
         auth = {{ method = \"api_key_header\", name = \"X-Api-Key\", key = {key} }}\n\
         [connectors.up.calls.get]\npath = \"/named\"\n",
        up.base_url
    )
}

/// A Latchkey whose audit log is `audit.jsonl` in a new directory (kept while the directory is).
fn logged(up: &Recorder) -> (tempfile::TempDir, std::path::PathBuf, Latchkey) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let lk = Latchkey::start(bin(), &config(up, &log.display().to_string(), "{ secret = \"k\" }"));
    (dir, log, lk)
}

/// The log's text and its records.
fn records(log: &std::path::Path) -> (String, Vec<Value>) {
    let text = std::fs::read_to_string(log).unwrap();
    let records = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (text, records)
}

#[tokio::test]
async fn calls_and_credential_changes_are_written_first_with_caller_data_hashed() {
    const SECRET: &str = "canary-secret-3b1f0c";
    let up = Recorder::start().await;
    let (_dir, log, lk) = logged(&up);
    lk.put_secret("k", "live", SECRET).await;
    let app = lk.app_key("live").await;
    let r =
        lk.http.get(lk.url("/v1/proxy/up/private-canarypath?q=canary-query")).bearer_auth(&app).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(lk.call(&app, "up", "get", json!({})).await.status, 200);
    let r = lk.admin_req(Method::DELETE, "/v1/admin/secrets/k").send().await.unwrap();
    assert_eq!(r.status(), 204);

    let (text, records) = records(&log);
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["secret.put", "key.create", "proxy", "call", "secret.delete"], "{text}");
    let key_id = &app["lk_live_".len().."lk_live_".len() + 12];
    let proxy = &records[2];
    assert_eq!(proxy["caller"], key_id);
    assert_eq!((proxy["connector"].as_str(), proxy["method"].as_str()), (Some("up"), Some("GET")));
    assert_eq!(proxy["environment"], "live");
    assert!(proxy["at"].as_str().is_some_and(|t| t.ends_with('Z')), "{proxy}");
    assert_eq!(records[3]["call"], "get");
    assert_eq!(records[0]["secret"], "k");
    // The path is recorded as its HMAC, which the admin can compute to look it up.
    let body = json!({ "value": "/private-canarypath?q=canary-query" });
    let r = lk.admin_req(Method::POST, "/v1/admin/audit-hash").json(&body).send().await.unwrap();
    let h = Reply::read(r).await;
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(proxy["path"], h.json()["hash"], "{proxy}");
    assert!(h.json()["hash"].as_str().unwrap().starts_with("hmac-sha256:"));
    // An app key may not use it.
    let r = lk.http.post(lk.url("/v1/admin/audit-hash")).bearer_auth(&app).json(&json!({"value": "x"})).send();
    assert_eq!(r.await.unwrap().status(), 403);
    for canary in [SECRET, "canarypath", "canary-query"] {
        assert!(!text.contains(canary), "{canary} in the audit log:\n{text}");
    }
    assert!(!text.contains(&app[8 + 12..]), "the app key's secret part is in the audit log");
}

#[tokio::test]
async fn an_unwritable_audit_log_refuses_calls_and_changes_and_nothing_reaches_the_upstream() {
    let up = Recorder::start().await;
    let key = "{ env = \"LK_AUDIT_TEST_KEY\" }";
    let opts = Options {
        config: config(&up, "/dev/full", key),
        env: vec![("LK_AUDIT_TEST_KEY".into(), "upstream-key".into())],
        ..Options::default()
    };
    let lk = Latchkey::start_with(bin(), opts).unwrap();
    // A key made by the CLI under a configuration without the log (the CLI writes to the log
    // too, so with this one it would refuse).
    let out = cli_without_log(&lk, &up, &["key", "create", "--env", "live"], None);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    let app = printed.split_whitespace().find(|w| w.starts_with("lk_live_")).expect("a key").to_owned();

    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (503, Some("unavailable")), "{}", r.body);
    assert!(r.body.contains("audit log"), "{}", r.body);
    let r = lk.call(&app, "up", "get", json!({})).await;
    assert_eq!((r.status, r.error_code()), (503, Some("unavailable")), "{}", r.body);
    assert_eq!(up.count(), 0, "a call went upstream without its audit record");

    let r = lk.admin_req(Method::PUT, "/v1/admin/secrets/s").json(&json!({"value": "v"})).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/secrets").send().await.unwrap()).await;
    assert_eq!(r.json()["secrets"], json!([]), "a change took effect without its audit record: {}", r.body);
    assert!(lk.output().contains("the audit log cannot be written"), "{}", lk.output());
}

/// `DELETE /v1/users/{id}` with an app key writes `user.delete` (caller, environment, the user
/// as its HMAC) before the user goes, as the console's deletion does; the user's connection is
/// recorded as deleted in the events table; an unknown user is 404 and writes nothing.
#[tokio::test]
async fn a_user_deleted_by_an_app_key_is_audited_first_with_the_user_hashed() {
    const USER: &str = "canary-user-5e2a91";
    let up = Recorder::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut text = config(&up, &log.display().to_string(), "{ secret = \"k\" }");
    text.push_str(&format!(
        "[connectors.mine]\nbase_url = \"{}/api\"\nper_user = true\nauth = {{ method = \"api_key_header\", name = \"X-Api-Key\" }}\n",
        up.base_url
    ));
    let lk = Latchkey::start(bin(), &text);
    let app = lk.app_key("live").await;
    let r = lk.http.post(lk.url("/v1/users")).bearer_auth(&app).json(&json!({"id": USER})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body = json!({"user": USER, "credentials": {"key": "canary-value-77c1"}});
    let r =
        Reply::read(lk.http.put(lk.url("/v1/connections/mine")).bearer_auth(&app).json(&body).send().await.unwrap())
            .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let r = lk.http.delete(lk.url(&format!("/v1/users/{USER}"))).bearer_auth(&app).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = lk.http.delete(lk.url("/v1/users/nobody")).bearer_auth(&app).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = lk.http.get(lk.url(&format!("/v1/users/{USER}"))).bearer_auth(&app).send().await.unwrap();
    assert_eq!(r.status(), 404, "the user is gone");

    let (text, records) = records(&log);
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["key.create", "connection.put", "user.delete"], "{text}");
    let deletion = &records[2];
    assert_eq!(deletion["caller"], &app["lk_live_".len().."lk_live_".len() + 12], "{deletion}");
    assert_eq!(deletion["environment"], "live");
    let r = lk.admin_req(Method::POST, "/v1/admin/audit-hash").json(&json!({ "value": USER })).send().await.unwrap();
    assert_eq!(deletion["user"], Reply::read(r).await.json()["hash"], "{deletion}");
    for canary in [USER, "canary-value"] {
        assert!(!text.contains(canary), "{canary} in the audit log:\n{text}");
    }
    let r =
        Reply::read(lk.admin_req(Method::GET, "/v1/admin/events?kind=connection.deleted").send().await.unwrap()).await;
    let events = r.json()["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{}", r.body);
    assert_eq!(events[0]["connector"], "mine", "{}", r.body);
    assert_eq!(events[0]["detail"]["actor"], "user_deleted", "{}", r.body);
}

/// The commands that use or change a credential from the command line (`secret set`, `secret
/// rm`, `key create`, `call`, `keys rotate`, `vault rotate`) write to the same log first, as
/// caller `cli`, with the user hashed; when the log cannot be written the command fails and
/// changes nothing.
// Multi-threaded: the CLI runs while this test waits for it, and the recorder must answer it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_changes_and_calls_are_written_first_too() {
    const SECRET: &str = "canary-cli-secret-91ad";
    let up = Recorder::start().await;
    let (_dir, log, lk) = logged(&up);
    let ok = |out: std::process::Output| {
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(lk.cli(&["secret", "set", "k"], Some(SECRET)));
    ok(lk.cli(&["key", "create", "--env", "live", "--name", "from-cli"], None));
    ok(lk.cli(&["call", "up", "get"], None));
    // Refused by the engine (`up` has no per-user connections), after its record was written.
    assert!(!lk.cli(&["call", "up", "get", "--user", "canary-cli-user"], None).status.success());
    ok(lk.cli(&["secret", "rm", "k"], None));
    ok(lk.cli(&["keys", "rotate", "--algorithm", "ES256"], None));
    let rotated = lk.cli(&["vault", "rotate"], None);
    let said = String::from_utf8_lossy(&rotated.stdout).into_owned();
    ok(rotated);
    let (text, records) = records(&log);
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["secret.put", "key.create", "call", "call", "secret.delete", "signing_key.rotate", "vault.rotate"],
        "{text}"
    );
    assert_eq!(records[5]["algorithm"].as_str(), Some("ES256"), "{text}");
    let new_key = records[6]["master_key"].as_str().unwrap();
    assert!(said.contains(&format!("rotated to master key {new_key}")), "{said} / {text}");
    assert!(records.iter().all(|r| r["caller"] == "cli"), "{text}");
    assert_eq!((records[0]["secret"].as_str(), records[0]["environment"].as_str()), (Some("k"), Some("live")));
    assert_eq!((records[2]["connector"].as_str(), records[2]["call"].as_str()), (Some("up"), Some("get")));
    assert!(records[3]["user"].as_str().is_some_and(|u| u.starts_with("hmac-sha256:")), "{text}");
    for canary in [SECRET, "canary-cli-user"] {
        assert!(!text.contains(canary), "{canary} in the audit log");
    }

    // A log that cannot be written (`/dev/full`): the command fails and the secret is not set.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("latchkey.toml"), config(&up, "/dev/full", "{ secret = \"k\" }")).unwrap();
    let run = |args: &[&str], stdin| {
        latchkey_testkit::latchkey::run_cli(bin(), work.path(), &lk.data_dir, &lk.env, args, stdin)
    };
    let out = run(&["secret", "set", "k2"], Some("never-stored"));
    assert!(!out.status.success(), "a change went ahead without its audit record");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("audit log cannot be written") && err.contains("nothing was done"), "{err}");
    let list = run(&["secret", "list"], None);
    assert!(list.status.success());
    assert!(!String::from_utf8_lossy(&list.stdout).contains("k2"), "the secret was set anyway");
    // Nor is the master key replaced: no new key file for running servers to pick up.
    let key_before = std::fs::read(lk.data_dir.join("master.key")).unwrap();
    let out = run(&["vault", "rotate"], None);
    assert!(!out.status.success(), "the vault was rotated without its audit record");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing was done"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(lk.data_dir.join("master.key")).unwrap(), key_before);
    assert!(!lk.data_dir.join("master.key.next").exists(), "a new master key was written");
}

/// Runs the CLI on `lk`'s data with `lk`'s configuration minus the audit log.
fn cli_without_log(lk: &Latchkey, up: &Recorder, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let work = tempfile::tempdir().unwrap();
    let plain = config(up, "", "{ env = \"LK_AUDIT_TEST_KEY\" }").replace("[server]\naudit_log = \"\"\n", "");
    std::fs::write(work.path().join("latchkey.toml"), plain).unwrap();
    latchkey_testkit::latchkey::run_cli(bin(), work.path(), &lk.data_dir, &lk.env, args, stdin)
}
