//! The command line's own surface (issue 14, "a complete CLI"): `key list`/`rm`, `connector
//! list`/`show`, `--json` bodies equal to the HTTP API's, completions, version, flags scoped to
//! their command, read-only commands that never create a store, `secret set` at a terminal,
//! and `check` (every problem in one pass, `--strict`, `--live` with a full grant).

use std::io::{Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use latchkey_testkit::latchkey::run_cli;
use latchkey_testkit::peers::authlib::{ClientOptions, authlib};
use latchkey_testkit::recorder::Recorder;
use serde_json::{Value, json};

use super::*;

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn stdout_json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// A scratch directory with `config` as its `latchkey.toml`, and the data directory to use.
fn workdir(config: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("latchkey.toml"), config).unwrap();
    let data = work.path().join("data");
    (work, data)
}

const ONE_CONNECTOR: &str = "[connectors.up]\nbase_url = \"https://up.example\"\n\
                             auth = { method = \"api_key_header\", name = \"X-Key\", key = { secret = \"k\" } }\n\
                             [connectors.up.calls.get]\npath = \"/x\"\n";

#[test]
fn read_only_commands_never_create_a_store_and_writes_say_they_did() {
    let (work, data) = workdir(ONE_CONNECTOR);
    let cli = |args: &[&str]| run_cli(bin(), work.path(), &data, &[], args, None);
    for args in [
        &["secret", "list"][..],
        &["secret", "list", "--json"],
        &["secret", "rm", "k"],
        &["key", "list"],
        &["key", "list", "--json"],
        &["key", "rm", "abc"],
        &["call", "up", "get"],
        &["check", "--live"],
    ] {
        let out = cli(args);
        assert!(!out.status.success(), "{args:?} succeeded without a store: {}", text(&out));
        let t = text(&out);
        assert!(t.contains("no store at") && t.contains("latchkey.db"), "{args:?} did not say where it looked: {t}");
        assert!(t.contains("latchkey secret set NAME"), "{args:?} did not say how to make one: {t}");
        assert!(!data.exists(), "{args:?} created {}", data.display());
    }
    // Showing what the file defines, and checking it, need no store: they say so and succeed.
    let out = cli(&["connector", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("up\tfile\tapi_key_header\thttps://up.example\tget"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no store at"), "{}", text(&out));
    let out = cli(&["connector", "show", "up", "--json"]);
    assert_eq!(stdout_json(&out)["source"], "file");
    let out = cli(&["check"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no store at"), "{}", text(&out));
    assert!(!data.exists(), "a read-only command created {}", data.display());

    let out = cli(&["key", "create", "--env", "dev"]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains(&format!("Created a new store at {}", data.join("latchkey.db").display())), "{said}");
    // The second write finds the store and says nothing of creating one.
    let out = cli(&["key", "create", "--env", "live"]);
    assert!(out.status.success() && !text(&out).contains("Created a new store"), "{}", text(&out));
    let out = cli(&["secret", "list"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no secrets"), "{}", text(&out));
}

/// One value from `sql` on database `db`.
fn psql_value(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .expect("psql is missing: install the PostgreSQL client (`apt-get install -y postgresql-client`)");
    assert!(out.status.success(), "psql: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// On PostgreSQL, where only the database tells whether a store is there: a read-only command
/// against an empty database says where it looked and creates no table; against a store whose
/// schema is older than the binary's, it says to run `latchkey serve` and migrates nothing.
#[test]
fn read_only_commands_on_postgres_create_and_migrate_nothing() {
    let db = super::at_rest::Database::create();
    let (work, data) = workdir("");
    let env = [("LATCHKEY_DATABASE_URL".to_owned(), db.url())];
    let cli = |args: &[&str]| run_cli(bin(), work.path(), &data, &env, args, None);
    let tables = || psql_value(&db.0, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'");
    for args in [&["secret", "list"][..], &["key", "list"], &["secret", "rm", "k"]] {
        let out = cli(args);
        assert!(!out.status.success(), "{args:?} succeeded without a store: {}", text(&out));
        let t = text(&out);
        assert!(t.contains(&format!("the database postgres://127.0.0.1:5432/{} holds no Latchkey store", db.0)), "{t}");
        assert!(t.contains("latchkey secret set NAME"), "{args:?} did not say how to make one: {t}");
        assert_eq!(tables(), "0", "{args:?} created tables");
    }

    let out = cli(&["key", "create", "--env", "dev"]);
    assert!(out.status.success(), "{}", text(&out));
    let latest = psql_value(&db.0, "SELECT max(version) FROM _sqlx_migrations");
    // Migration 7 undone by hand: the schema of a store an older Latchkey made.
    psql_value(&db.0, "DELETE FROM _sqlx_migrations WHERE version = 7; DROP TABLE idempotency_keys");
    let out = cli(&["secret", "list"]);
    assert!(!out.status.success(), "{}", text(&out));
    let t = text(&out);
    let behind = format!("older than this Latchkey's ({latest}), and this command does not migrate it");
    assert!(t.contains(&behind) && t.contains("run `latchkey serve` with this version"), "{t}");
    assert_eq!(psql_value(&db.0, "SELECT count(*) FROM _sqlx_migrations WHERE version = 7"), "0");
    let out = cli(&["key", "create", "--env", "dev"]);
    assert!(out.status.success(), "a command that writes migrates: {}", text(&out));
    let out = cli(&["secret", "list"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[tokio::test]
async fn key_list_and_rm_agree_with_the_api_and_a_removed_key_is_refused() {
    let up = Recorder::start().await;
    let lk = with_connector(&up.base_url, r#"{ method = "none" }"#, "");
    let out = lk.cli(&["key", "create", "--env", "dev", "--name", "ci"], None);
    assert!(out.status.success(), "{}", text(&out));
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let r = lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let listed = stdout_json(&lk.cli(&["key", "list", "--json"], None));
    let api = Reply::read(lk.admin_req(reqwest::Method::GET, "/v1/admin/keys").send().await.unwrap()).await;
    assert_eq!(api.status, 200, "{}", api.body);
    // The API's own request marks the admin key used: that one time aside, the bodies are equal.
    let unused = |mut v: Value| {
        for k in v["keys"].as_array_mut().unwrap() {
            assert!(k.as_object_mut().unwrap().remove("last_used_at").is_some(), "{k}");
        }
        v
    };
    assert_eq!(unused(listed.clone()), unused(api.json()), "`key list --json` is not the body of GET /v1/admin/keys");
    let keys = listed["keys"].as_array().unwrap();
    let ours = keys.iter().find(|k| k["name"] == "ci").unwrap_or_else(|| panic!("{listed}"));
    assert_eq!((ours["kind"].as_str(), ours["environment"].as_str()), (Some("app"), Some("dev")));
    let id = ours["id"].as_str().unwrap().to_owned();
    assert!(!listed.to_string().contains(&key), "a key was listed");

    let out = lk.cli(&["key", "list"], None);
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(table.starts_with("ID\tKIND\tENV\tPREFIX\tNAME\tCREATED\tLAST USED\n"), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&format!("{id}\tapp\tdev\tlk_dev_{id}\tci\t"))), "{table}");
    assert!(table.lines().any(|l| l.contains("\tadmin\t-\t")), "the admin key is not listed: {table}");

    let out = lk.cli(&["key", "rm", &id], None);
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&key).send().await.unwrap();
        if r.status() == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "the server still accepts a removed key");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = lk.cli(&["key", "rm", &id], None);
    assert!(!out.status.success());
    assert!(text(&out).contains(&format!("no key with id `{id}`")), "{}", text(&out));
    let listed = stdout_json(&lk.cli(&["key", "list", "--json"], None));
    assert!(!listed.to_string().contains(&id), "{listed}");
}

#[tokio::test]
async fn connector_and_secret_json_are_the_apis_bodies() {
    let up = Recorder::start().await;
    let lk =
        with_connector(&up.base_url, r#"{ method = "api_key_header", name = "X-Key", key = { secret = "k" } }"#, "");
    let made = lk
        .admin_req(reqwest::Method::PUT, "/v1/admin/connectors/made")
        // A public address: API connectors are checked against the egress rules when written.
        .json(&json!({"base_url": "https://8.8.8.8", "auth": {"method": "none"}, "calls": {"c": {"path": "/c"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201, "{}", made.text().await.unwrap());
    lk.put_secret("k", "live", "secret-value-1").await;

    let lk = &lk;
    let api = |path: &'static str| async move {
        let r = Reply::read(lk.admin_req(reqwest::Method::GET, path).send().await.unwrap()).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.json()
    };
    let list = stdout_json(&lk.cli(&["connector", "list", "--json"], None));
    assert_eq!(list, api("/v1/admin/connectors").await);
    let sources: Vec<(&str, &str)> = list["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["source"].as_str().unwrap()))
        .collect();
    assert_eq!(sources, [("made", "api"), ("up", "file")]);
    assert_eq!(
        stdout_json(&lk.cli(&["connector", "show", "made", "--json"], None)),
        api("/v1/admin/connectors/made").await
    );
    assert_eq!(stdout_json(&lk.cli(&["secret", "list", "--json"], None)), api("/v1/admin/secrets").await);

    let out = lk.cli(&["connector", "list"], None);
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(t.contains("made\tapi\tnone\t") && t.contains("up\tfile\tapi_key_header\t"), "{t}");
    let out = lk.cli(&["connector", "show", "up"], None);
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(t.contains("[connectors.up.auth.key]\nsecret = \"k\""), "{t}");
    assert!(!t.contains("[connectors.up.headers]"), "empty tables are shown: {t}");
    assert!(!text(&out).contains("secret-value-1"), "a secret's value was shown");
    let out = lk.cli(&["connector", "show", "nope"], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("no connector named `nope`"), "{}", text(&out));
}

#[test]
fn completions_version_and_flags_scoped_to_their_command() {
    let (work, data) = workdir("");
    let cli = |args: &[&str]| run_cli(bin(), work.path(), &data, &[], args, None);
    for shell in ["bash", "zsh", "fish"] {
        let out = cli(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        for word in ["latchkey", "connector", "completions", "strict", "json", "reuse-tokens"] {
            assert!(script.contains(word), "{shell}'s script lacks `{word}`");
        }
    }
    let out = cli(&["completions", "powershell"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("[possible values: bash, zsh, fish]"), "{}", text(&out));

    let version = format!("latchkey {}\n", env!("CARGO_PKG_VERSION"));
    for args in [&["--version"][..], &["version"]] {
        let out = cli(args);
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), version);
    }

    let help = |args: &[&str]| {
        let out = cli(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for args in
        [&["secret", "--help"][..], &["secret", "set", "--help"], &["key", "list", "--help"], &["check", "--help"]]
    {
        let h = help(args);
        for serve_only in ["--listen", "--public-url", "--threads"] {
            assert!(!h.contains(serve_only), "{args:?} shows {serve_only}:\n{h}");
        }
        assert!(h.contains("--data-dir <DIR>"), "{args:?}:\n{h}");
    }
    let h = help(&["serve", "--help"]);
    assert!(h.contains("--listen <HOST:PORT>") && h.contains("--threads <N>"), "{h}");
    let h = help(&["key", "create", "--help"]);
    assert!(h.contains("--env <ENV>") && h.contains("[possible values: live, dev]"), "{h}");
    let out = cli(&["secret", "list", "--listen", "127.0.0.1:1"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("unexpected argument '--listen'"), "{}", text(&out));
    assert!(!data.exists());
}

#[test]
fn check_reports_every_problem_with_its_line_and_refuses_unknown_methods() {
    let config = "[connectors.a]\nbase_url = \"https://a.example\"\nbogus = 1\n\
                  auth = { method = \"api_key_query\", name = \"\", key = { secret = \"x\" } }\n\
                  [connectors.b]\nbase_url = \"https://b.example\"\nauth = { method = \"none\" }\n\
                  [connectors.b.calls.c]\npath = \"/x/<y>\"\nmethod = \"FETCH\"\n";
    let (work, data) = workdir(config);
    let out = run_cli(bin(), work.path(), &data, &[], &["check"], None);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("the configuration has 4 problems"), "{t}");
    assert!(t.contains("latchkey.toml:3: connector `a`, field `bogus`: unknown field `bogus`"), "{t}");
    assert!(t.contains("latchkey.toml:4: connector `a`, field `auth.name`"), "{t}");
    assert!(
        t.contains("latchkey.toml:10: connector `b`, field `calls.c.method`: `FETCH` is not an HTTP method"),
        "{t}"
    );
    assert!(t.contains("latchkey.toml:9: connector `b`, field `calls.c.path`: uses `<y>`"), "{t}");
    assert!(!data.exists(), "check created a store");
}

#[test]
fn check_knows_the_digest_fields() {
    let config = "[connectors.d]\nbase_url = \"https://d.example\"\n\
                  auth = { method = \"digest\", password = { secret = \"dpw\" }, realm = \"r\" }\n";
    let (work, data) = workdir(config);
    let out = run_cli(bin(), work.path(), &data, &[], &["check"], None);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("connector `d`, field `auth.realm`: unknown field `realm`"), "{t}");
    assert!(t.contains("connector `d`, field `auth.username`"), "{t}");
    let config = "[connectors.d]\nbase_url = \"https://d.example\"\n\
                  auth = { method = \"digest\", username = \"ada\", password = { secret = \"dpw\" } }\n";
    let (work, data) = workdir(config);
    let out = run_cli(bin(), work.path(), &data, &[], &["check", "--strict"], None);
    assert!(!out.status.success());
    assert!(text(&out).contains("connector `d`, field `auth.password`: secret `dpw` is missing"), "{}", text(&out));
}

#[test]
fn check_strict_fails_while_a_secret_is_missing() {
    let (work, data) = workdir(ONE_CONNECTOR);
    let cli = |args: &[&str], stdin| run_cli(bin(), work.path(), &data, &[], args, stdin);
    // No store: the secret is missing by definition.
    let out = cli(&["check"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("secret `k` is missing"), "{}", text(&out));
    let out = cli(&["check", "--strict"], None);
    assert!(!out.status.success(), "--strict passed with a missing secret: {}", text(&out));
    // A store without the secret.
    let out = cli(&["secret", "set", "other"], Some("v"));
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(&["check", "--strict"], None);
    assert!(!out.status.success(), "--strict passed with a missing secret: {}", text(&out));
    assert!(text(&out).contains("warning:"), "{}", text(&out));
    let out = cli(&["check"], None);
    assert!(out.status.success(), "without --strict a missing secret is a warning: {}", text(&out));
    let out = cli(&["secret", "set", "k"], Some("v"));
    assert!(out.status.success(), "{}", text(&out));
    let out = cli(&["check", "--strict"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("warning"), "{}", text(&out));
}

#[tokio::test]
async fn check_live_runs_the_full_grant_even_with_a_stored_token() {
    let a = authlib();
    let client = a.register_client(&ClientOptions::default());
    let auth = format!(
        "{{ method = \"oauth2_password\", token_url = \"{}\", username = \"{}\", password = {{ secret = \"pw\" }}, \
         client_id = \"{}\", client_secret = {{ secret = \"cs\" }}, scope = [\"read\"] }}",
        a.token_url, a.user, client.id
    );
    let lk = with_connector(&a.base_url, &auth, "[connectors.up.calls.me]\npath = \"/api/me\"\n");
    lk.put_secret("pw", "live", &a.password).await;
    lk.put_secret("cs", "live", &client.secret).await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "me", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let grants = |stats: &Value, grant: &str| stats[grant]["ok"].as_u64().unwrap_or(0);
    assert_eq!(grants(&a.client_stats(&client.id), "password"), 1);

    // A token and its refresh token are stored now; `--live` still runs the grant itself.
    let out = lk.cli(&["check", "--live"], None);
    assert!(out.status.success(), "{}", text(&out));
    let t = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(t.contains(&format!("up: ok (live, oauth2_password): full grant at {}", a.token_url)), "{t}");
    let stats = a.client_stats(&client.id);
    assert_eq!(grants(&stats, "password"), 2, "no full grant was made: {stats}");
    assert_eq!(grants(&stats, "refresh_token"), 0, "a refresh token was used: {stats}");

    // --reuse-tokens takes what calls take: the stored token, no request.
    let out = lk.cli(&["check", "--live", "--reuse-tokens"], None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("up: ok (live, oauth2_password): a token as calls get it"), "{}", text(&out));
    assert_eq!(grants(&a.client_stats(&client.id), "password"), 2);

    // A refused grant fails the check and says what the provider said.
    lk.put_secret("pw", "live", "wrong-password").await;
    let out = lk.cli(&["check", "--live"], None);
    assert!(!out.status.success(), "check --live passed with a wrong password: {}", text(&out));
    let t = text(&out);
    assert!(t.contains("up: FAILED (live, oauth2_password): full grant at"), "{t}");
    assert!(!t.contains("wrong-password"), "{t}");
}

/// Waits until the terminal of `script`'s child (`latchkey`) has echo turned off, as `stty`
/// reports it; after 10 s the test goes on, and its echo assertion says what happened.
fn wait_for_echo_off(script_pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let children =
            std::fs::read_to_string(format!("/proc/{script_pid}/task/{script_pid}/children")).unwrap_or_default();
        for pid in children.split_whitespace() {
            let Ok(tty) = std::fs::read_link(format!("/proc/{pid}/fd/0")) else { continue };
            let Ok(out) = Command::new("stty").arg("-a").arg("-F").arg(&tty).output() else { continue };
            if String::from_utf8_lossy(&out.stdout).split_whitespace().any(|w| w == "-echo") {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `secret set` at a terminal: `script` gives it a pseudo-terminal; the value typed after the
/// prompt is not echoed, and it is what is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_set_at_a_terminal_prompts_without_echo() {
    let up = Recorder::start().await;
    let lk =
        with_connector(&up.base_url, r#"{ method = "api_key_header", name = "X-Key", key = { secret = "k" } }"#, "");
    let mut cmd = Command::new("script");
    cmd.args(["--quiet", "--return", "--command"])
        .arg(format!("{} secret set k", bin().display()))
        .arg("/dev/null")
        .current_dir(&lk.work_dir)
        .env("LATCHKEY_DATA_DIR", &lk.data_dir)
        .env_remove("LATCHKEY_CONFIG")
        .env_remove("LATCHKEY_DATABASE_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in &lk.env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("script (util-linux) runs");
    let mut stdout = child.stdout.take().unwrap();
    let (prompted, prompt) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        let mut told = false;
        loop {
            let n = stdout.read(&mut buf).unwrap_or(0);
            if n == 0 {
                return String::from_utf8_lossy(&seen).into_owned();
            }
            seen.extend_from_slice(&buf[..n]);
            if !told && String::from_utf8_lossy(&seen).contains("not shown): ") {
                told = true;
                let _ = prompted.send(());
            }
        }
    });
    // Typed before the prompt, the value would be echoed by the terminal before echo is off.
    let waited = prompt.recv_timeout(Duration::from_secs(20));
    let mut stdin = child.stdin.take().unwrap();
    if waited.is_ok() {
        // rpassword shows the prompt, then turns echo off: wait until the terminal says so.
        wait_for_echo_off(child.id());
        stdin.write_all(b"typed-at-tty\n").unwrap();
        stdin.flush().unwrap();
    } else {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    let seen = reader.join().unwrap();
    assert!(waited.is_ok(), "no prompt within 20 s: {seen}");
    assert!(status.success(), "{seen}");
    assert!(seen.contains("Value of secret `k` (live; not shown): "), "no prompt: {seen}");
    assert!(!seen.contains("typed-at-tty"), "the value was echoed: {seen}");
    assert!(seen.contains("secret `k` set for live"), "{seen}");
    let app = lk.app_key("live").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&app).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the server never saw the secret");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(up.last().header("x-key"), Some("typed-at-tty"));
}
