//! Log output (issue 14, "Observability"): `LATCHKEY_LOG_FORMAT=json` (or `[server]
//! log_format = "json"`) writes one JSON object per line, with the event's fields at the top
//! level, so a log collector reads them without parsing text.

use std::time::{Duration, Instant};

use latchkey_testkit::latchkey::Options;
use serde_json::{Value, json};

use super::*;

/// A line of tracing's text format: `2026-…T…Z  INFO message key=value`.
fn is_text_event(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let stamp = words.next().unwrap_or("");
    let level = words.next().unwrap_or("");
    stamp.len() > 20 && stamp.as_bytes()[4] == b'-' && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].contains(&level)
}

async fn wait_for(lk: &Latchkey, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = lk.output();
        if out.contains(needle) {
            return out;
        }
        assert!(Instant::now() < deadline, "no {needle:?} in the output:\n{out}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_events_fields() {
    let env = vec![("LATCHKEY_LOG_FORMAT".to_owned(), "json".to_owned())];
    let lk = Latchkey::start_with(bin(), Options { env, ..Options::default() }).unwrap();
    let status = lk.http.get(lk.url("/v1/no-such-route")).send().await.unwrap().status();
    assert_eq!(status, 404);
    let out = wait_for(&lk, r#""route":"unmatched""#).await;

    let text_events: Vec<&str> = out.lines().filter(|l| is_text_event(l)).collect();
    assert!(text_events.is_empty(), "text log lines in JSON mode: {text_events:#?}");
    let events: Vec<Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}")))
        .collect();
    assert!(events.len() >= 3, "{out}");
    for e in &events {
        assert!(e["timestamp"].is_string() && e["level"].is_string(), "{e}");
    }
    let request = events.iter().find(|e| e["message"] == "request").unwrap_or_else(|| panic!("{out}"));
    assert_eq!(request["method"], "GET");
    assert_eq!(request["route"], "unmatched");
    assert_eq!(request["status"], json!(404));
    assert_eq!(request["error"], "not_found");
    assert!(request["micros"].is_u64(), "{request}");
    assert_eq!(request["level"], "INFO");
}

#[tokio::test]
async fn the_environment_overrides_the_files_log_format_and_a_wrong_one_is_refused() {
    let config = "[server]\nlog_format = \"json\"\n".to_owned();
    let env = vec![("LATCHKEY_LOG_FORMAT".to_owned(), "text".to_owned())];
    let lk = Latchkey::start_with(bin(), Options { config: config.clone(), env, ..Options::default() }).unwrap();
    lk.http.get(lk.url("/v1/no-such-route")).send().await.unwrap();
    let out = wait_for(&lk, "route=unmatched").await;
    assert!(out.lines().any(is_text_event), "{out}");
    assert!(!out.lines().any(|l| l.starts_with('{')), "{out}");
    drop(lk);

    let lk = Latchkey::start_with(bin(), Options { config: config.clone(), ..Options::default() }).unwrap();
    lk.http.get(lk.url("/v1/no-such-route")).send().await.unwrap();
    let out = wait_for(&lk, r#""route":"unmatched""#).await;
    assert!(!out.lines().any(is_text_event), "{out}");
    drop(lk);

    let env = vec![("LATCHKEY_LOG_FORMAT".to_owned(), "xml".to_owned())];
    let Err(out) = Latchkey::start_with(bin(), Options { config, env, ..Options::default() }) else {
        panic!("started with LATCHKEY_LOG_FORMAT=xml");
    };
    assert!(out.contains("LATCHKEY_LOG_FORMAT: `xml` is not a log format: use `text` or `json`"), "{out}");
}

/// At `LATCHKEY_LOG=debug` the store's statements are not logged (sqlx logs each at trace
/// here, only those slower than a second at warn): the 1 s generation poll would otherwise
/// print one every second. On SQLite and on PostgreSQL (each backend has its own options); at
/// trace they are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_hold_no_sql_statements() {
    const STATEMENTS: [&str; 3] = ["SELECT value FROM generation", "INSERT INTO secrets", "db.statement"];
    let db = super::at_rest::Database::create();
    for (level, database_url) in [("debug", None), ("debug", Some(db.url())), ("trace", None)] {
        let mut env = vec![("LATCHKEY_LOG".to_owned(), level.to_owned())];
        env.extend(database_url.clone().map(|url| ("LATCHKEY_DATABASE_URL".to_owned(), url)));
        let lk = Latchkey::start_with(bin(), Options { env, ..Options::default() }).unwrap();
        lk.put_secret("k", "live", "v").await;
        // Something logged at debug: a connection that sends no HTTP ends with an error.
        let addr = lk.url("").trim_start_matches("http://").trim_end_matches('/').to_owned();
        let mut garbage = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut garbage, b"NOT HTTP\r\n\r\n").await.unwrap();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut garbage, &mut Vec::new()).await;
        wait_for(&lk, "a connection ended with an error").await;
        // A few of the sync's polls.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let out = lk.output();
        for statement in STATEMENTS {
            assert_eq!(out.contains(statement), level == "trace", "{level} {database_url:?}: `{statement}`:\n{out}");
        }
    }
}
