//! What the server does with its inbound side: connections that send nothing, half a request
//! head or nothing more after a response are closed; more sockets than it may hold, or than
//! its file descriptors allow, never lock clients out for good; every error it writes itself is
//! Latchkey's JSON (SPEC §11), also the framework's rejections; `SIGHUP` does not stop it.

use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::raw::KeepAlive;
use super::*;

/// Generous: every wait below ends as soon as what it waits for happens.
const PATIENCE: Duration = Duration::from_secs(60);

fn start(config: &str) -> Latchkey {
    Latchkey::start(bin(), config)
}

#[tokio::test]
async fn sighup_does_not_stop_the_server() {
    let lk = start("");
    lk.hangup();
    let deadline = Instant::now() + PATIENCE;
    while !lk.output().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "nothing logged about SIGHUP:\n{}", lk.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(lk.output().contains("configuration reloaded: nothing changed"), "{}", lk.output());
    let r = lk.http.get(lk.url("/healthz")).send().await.expect("served after SIGHUP");
    assert_eq!(r.status(), 200);
}

fn addr(lk: &Latchkey) -> String {
    lk.base_url.trim_start_matches("http://").to_owned()
}

/// Sends `req` (a whole HTTP/1.1 request) on a new connection and reads the whole response.
async fn raw_exchange(lk: &Latchkey, req: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr(lk)).await.expect("connect");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// Asserts `r` is Latchkey's JSON error with `status` and `code`.
fn is_api_error(r: &Reply, status: u16, code: &str, what: &str) {
    assert_eq!((r.status, r.error_code()), (status, Some(code)), "{what}: {r:?}");
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("application/json"), "{what}: content-type {ct:?}");
    let v: Value = r.json();
    assert_eq!(v["error"]["code"], code, "{what}: {}", r.body);
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: no message: {}", r.body);
}

#[tokio::test]
async fn the_frameworks_own_rejections_are_latchkey_json_errors() {
    let lk = start("");
    let app = lk.app_key("live").await;
    let send = |b: reqwest::RequestBuilder| async move { Reply::read(b.send().await.expect("send")).await };

    let r = send(lk.http.get(lk.url("/no/such/route"))).await;
    is_api_error(&r, 404, "not_found", "unknown route");
    let r = send(lk.admin_req(reqwest::Method::GET, "/v1/admin/no-such-thing")).await;
    is_api_error(&r, 404, "not_found", "unknown admin route");

    let r = send(lk.http.delete(lk.url("/healthz"))).await;
    is_api_error(&r, 405, "method_not_allowed", "DELETE /healthz");
    let allow = r.headers.get("allow").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(allow.contains("GET"), "405 without its Allow header: {r:?}");
    let r = send(lk.http.get(lk.url("/v1/connectors/up/calls/get")).bearer_auth(&app)).await;
    is_api_error(&r, 405, "method_not_allowed", "GET on a named call");
    let r = send(lk.admin_req(reqwest::Method::PATCH, "/v1/admin/keys")).await;
    is_api_error(&r, 405, "method_not_allowed", "PATCH on a nested admin route");

    let introspect = || lk.http.post(lk.url("/v1/token/introspect")).bearer_auth(&app);
    let r = send(introspect().json(&serde_json::json!({"token": "x"}))).await;
    is_api_error(&r, 415, "unsupported_media_type", "introspection sent as JSON");
    let big = format!("token={}", "a".repeat(3 * 1024 * 1024));
    let r = send(introspect().header("content-type", "application/x-www-form-urlencoded").body(big)).await;
    is_api_error(&r, 413, "payload_too_large", "a 3 MiB form");
    let r =
        send(introspect().header("content-type", "application/x-www-form-urlencoded").body("token=a&token=b")).await;
    is_api_error(&r, 400, "invalid_params", "a malformed form");
    let r = send(lk.http.get(lk.url("/v1/connections?user=a&user=b")).bearer_auth(&app)).await;
    is_api_error(&r, 400, "invalid_params", "a malformed query string");

    // Straight from hyper's connection to the router, without a client that normalizes.
    let (status, head, body) = raw_exchange(
        &lk,
        &format!("PUT /readyz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", addr(&lk)),
    )
    .await;
    assert_eq!(status, 405, "{head}{body}");
    assert!(head.contains("latchkey-error: method_not_allowed"), "{head}");
    assert!(body.contains("\"method_not_allowed\""), "{body}");
}

#[tokio::test]
async fn unauthenticated_answers_carry_a_bearer_challenge() {
    let lk = start("");
    let send = |b: reqwest::RequestBuilder| async move { Reply::read(b.send().await.expect("send")).await };
    let challenge = |r: &Reply| r.headers.get("www-authenticate").and_then(|v| v.to_str().ok()).map(str::to_owned);

    // No credential: a bare challenge (RFC 6750 §3.1: no error code when none was presented).
    for (what, r) in [
        ("admin route", send(lk.http.get(lk.url("/v1/admin/keys"))).await),
        ("proxy (hot route)", send(lk.http.get(lk.url("/v1/proxy/up/x"))).await),
        ("named call (hot route)", send(lk.http.post(lk.url("/v1/connectors/up/calls/get")).json(&())).await),
    ] {
        is_api_error(&r, 401, "unauthenticated", what);
        assert_eq!(challenge(&r).as_deref(), Some("Bearer"), "{what}: {r:?}");
    }
    // A credential that is wrong: `error="invalid_token"`.
    let wrong = "lk_live_aaaaaaaaaaaabbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    for (what, r) in [
        ("admin route", send(lk.http.get(lk.url("/v1/admin/keys")).bearer_auth(wrong)).await),
        ("proxy (hot route)", send(lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(wrong)).await),
        ("user token", send(lk.http.get(lk.url("/v1/connections")).bearer_auth("a.b.c")).await),
    ] {
        is_api_error(&r, 401, "unauthenticated", what);
        assert_eq!(challenge(&r).as_deref(), Some(r#"Bearer error="invalid_token""#), "{what}: {r:?}");
        assert!(!r.all_text().contains(wrong), "{what}: the key came back");
    }
}

/// Reads until the server closes `stream`; panics if it is still open after [`PATIENCE`].
async fn closed_by_server(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    let ended = tokio::time::timeout(PATIENCE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "{what}: the server kept the connection open for {PATIENCE:?}");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let lk = start("[server]\nheader_read_timeout_s = 1\n");
    let mut silent = TcpStream::connect(addr(&lk)).await.expect("connect");
    closed_by_server(&mut silent, "no byte sent").await;
    // HTTP/2's preface is sniffed before hyper's own timers run: a stalled prefix is closed too.
    let mut prefix = TcpStream::connect(addr(&lk)).await.expect("connect");
    prefix.write_all(b"PRI * HTTP/2").await.expect("write");
    closed_by_server(&mut prefix, "part of the HTTP/2 preface").await;
}

#[tokio::test]
async fn a_partial_request_head_is_closed_after_the_header_read_timeout() {
    let lk = start("[server]\nheader_read_timeout_s = 1\n");
    let mut slow = TcpStream::connect(addr(&lk)).await.expect("connect");
    slow.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nX-Slow: 1\r\n", addr(&lk)).as_bytes())
        .await
        .expect("write");
    closed_by_server(&mut slow, "half a request head").await;
    // The server still serves.
    let r = lk.http.get(lk.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_keepalive_idle_s() {
    let lk = start("[server]\nkeepalive_idle_s = 1\n");
    let mut conn = KeepAlive::open(&lk.base_url).await;
    assert_eq!(conn.get("/healthz", "none").await, 200);
    assert_eq!(conn.get("/healthz", "none").await, 200, "keep-alive works while requests come");
    closed_by_server(conn.stream(), "idle after two requests").await;
}

/// Opens `n` TCP connections that never send a byte.
async fn idle_sockets(lk: &Latchkey, n: usize) -> Vec<TcpStream> {
    let mut idle = Vec::with_capacity(n);
    for _ in 0..n {
        idle.push(TcpStream::connect(addr(lk)).await.expect("connect"));
    }
    idle
}

/// GET /healthz on new connections until one is answered 200; panics after [`PATIENCE`].
async fn eventually_served(lk: &Latchkey, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(r) = lk.http.get(lk.url("/healthz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: no client was served for {PATIENCE:?}\n{}", lk.output());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn more_idle_sockets_than_max_connections_do_not_lock_clients_out() {
    let lk = start("[server]\nmax_connections = 5\nheader_read_timeout_s = 1\n");
    // Twice the limit, held open by this test for as long as it runs.
    let _flood = idle_sockets(&lk, 10).await;
    eventually_served(&lk, "10 idle sockets against max_connections = 5").await;
    let warnings = lk.output().matches("max_connections reached").count();
    assert!(warnings >= 1, "no warning that the limit was reached:\n{}", lk.output());
    assert!(warnings <= 5, "the limit's warning is not once per burst ({warnings} lines):\n{}", lk.output());
}

#[tokio::test]
async fn under_a_low_fd_limit_an_idle_flood_times_out_and_accept_does_not_spin() {
    // The binary under `ulimit -n 128`, through a shell that execs it (same pid).
    let dir = tempfile::tempdir().expect("temp dir");
    let wrapper = dir.path().join("latchkey-limited");
    std::fs::write(&wrapper, format!("#!/bin/sh\nulimit -n 128 || exit 99\nexec '{}' \"$@\"\n", bin().display()))
        .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let lk = Latchkey::start(&wrapper, "[server]\nheader_read_timeout_s = 1\n");
    // More sockets than the process has file descriptors, held open by this test.
    let _flood = idle_sockets(&lk, 200).await;
    eventually_served(&lk, "200 idle sockets against 128 file descriptors").await;
    let out = lk.output();
    assert!(out.contains("lowering max_connections"), "no word that the fd limit lowered max_connections:\n{out}");
    let accept_errors = out.lines().filter(|l| l.contains("accept failed")).count();
    assert!(accept_errors <= 10, "the accept loop logged {accept_errors} failures:\n{out}");
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_with_keep_alive_pings_on() {
    let lk = start("[server]\nhttp2_keepalive_interval_s = 1\nkeepalive_idle_s = 30\n");
    #[allow(clippy::disallowed_methods)]
    let h2 = reqwest::Client::builder().http2_prior_knowledge().no_proxy().build().expect("client");
    for round in 0..2 {
        let r = h2.get(lk.url("/healthz")).send().await.expect("GET over HTTP/2");
        assert_eq!((r.status().as_u16(), r.version()), (200, reqwest::Version::HTTP_2), "round {round}");
        // Pings go out and are answered while the connection waits.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
