//! The command line: `secret`, `key`, `call` and `check`, beside a running server.

use std::time::{Duration, Instant};

use latchkey_testkit::latchkey::run_cli;
use latchkey_testkit::recorder::Recorder;
use serde_json::json;

use super::*;

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test]
async fn secret_set_reads_stdin_and_a_running_server_picks_it_up() {
    let up = Recorder::start().await;
    let lk =
        with_connector(&up.base_url, r#"{ method = "api_key_header", name = "X-Key", key = { secret = "k" } }"#, "");
    let app = lk.app_key("live").await;
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.error_code(), Some("secret_missing"));

    let out = lk.cli(&["secret", "set", "k"], Some("from-stdin\n"));
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("from-stdin"));
    // The server notices the store's change within its sync interval.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&app).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the server never saw the new secret");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(up.last().header("x-key"), Some("from-stdin"), "the trailing newline was kept");

    let out = lk.cli(&["secret", "set", "k", "--env", "dev"], Some("dev-v"));
    assert!(out.status.success(), "{}", text(&out));
    let out = lk.cli(&["secret", "list"], None);
    let listed = text(&out);
    assert!(listed.contains("k\tdev,live\t") || listed.contains("k\tlive,dev\t"), "{listed}");
    assert!(!listed.contains("from-stdin") && !listed.contains("dev-v"), "{listed}");
    let out = lk.cli(&["secret", "set", "empty"], Some(""));
    assert!(!out.status.success());
    assert!(text(&out).contains("no value on standard input"), "{}", text(&out));
    let out = lk.cli(&["secret", "rm", "k"], None);
    assert!(out.status.success(), "{}", text(&out));
    let out = lk.cli(&["secret", "rm", "k"], None);
    assert!(!out.status.success());
}

#[tokio::test]
async fn key_create_prints_a_working_key_once() {
    let up = Recorder::start().await;
    let lk = with_connector(&up.base_url, r#"{ method = "none" }"#, "");
    let out = lk.cli(&["key", "create", "--env", "dev"], None);
    assert!(out.status.success(), "{}", text(&out));
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(key.starts_with("lk_dev_"), "{key}");
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&key).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "a key made by the CLI is not accepted by the running server: {}", r.body);
}

// The recorder must keep serving while this thread waits for the CLI process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_runs_one_named_call_locally() {
    let up = Recorder::start().await;
    let config = format!(
        "[connectors.up]\nbase_url = \"{}\"\nauth = {{ method = \"api_key_query\", name = \"key\", key = {{ secret = \"k\" }} }}\n\
         [connectors.up.calls.get]\npath = \"/items/<id>\"\nquery = {{ n = \"<n>\" }}\n[connectors.up.calls.get.params]\nid = {{ required = true }}\nn = {{}}\n",
        up.base_url
    );
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("latchkey.toml"), &config).unwrap();
    let data = work.path().join("data");
    let out = run_cli(bin(), work.path(), &data, &[], &["secret", "set", "k"], Some("qk"));
    assert!(out.status.success(), "{}", text(&out));
    let out = run_cli(bin(), work.path(), &data, &[], &["call", "up", "get", "-p", "id=a b", "-p", "n:=5"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("HTTP 200"), "{}", text(&out));
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(body["uri"], "/items/a%20b?n=5&key=qk");
    let out = run_cli(bin(), work.path(), &data, &[], &["call", "up", "get"], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("invalid_params: missing required parameter(s): id"), "{}", text(&out));
    let _ = json!({});
}

#[tokio::test]
async fn check_lists_every_problem_or_says_ok() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::write(
        work.path().join("latchkey.toml"),
        "[connectors.a]\nbase_url = \"https://a.example\"\nauth = { method = \"api_key_query\", name = \"\", key = \"literal\" }\n\
         [connectors.b]\nbase_url = \"https://b.example\"\nauth = { method = \"none\" }\n[connectors.b.calls.c]\npath = \"/x/<y>\"\n",
    )
    .unwrap();
    let out = run_cli(bin(), work.path(), &data, &[], &["check"], None);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("the configuration has 2 problems"), "{t}");
    assert!(t.contains("connector `a`, field `auth.key`"), "{t}");
    assert!(t.contains("connector `b`, field `calls.c.path`: uses `<y>`, which is not declared"), "{t}");
    assert!(!data.exists(), "check created a store");

    std::fs::write(work.path().join("latchkey.toml"), "[connectors.b]\nbase_url = \"https://b.example\"\nauth = { method = \"basic\", username = \"u\", password = { secret = \"pw\" } }\n").unwrap();
    let out = run_cli(bin(), work.path(), &data, &[], &["check"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("latchkey.toml: ok, 1 connector"), "{}", text(&out));
    let out = run_cli(bin(), work.path(), &data, &[], &["check", "--config", "missing.toml"], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("missing.toml: cannot read the file"), "{}", text(&out));
}
