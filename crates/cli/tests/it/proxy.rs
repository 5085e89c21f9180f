//! The passthrough proxy: what goes up, what comes back, and how failures are reported.

use latchkey_testkit::recorder::Recorder;
use serde_json::json;

use super::*;

async fn setup(extra: &str) -> (Recorder, Latchkey, String) {
    let up = Recorder::start().await;
    let lk = with_connector(
        &format!("{}/api", up.base_url),
        r#"{ method = "api_key_header", name = "X-Api-Key", key = { secret = "k" } }"#,
        &format!("headers = {{ \"X-Fixed\" = \"1\" }}\n{extra}"),
    );
    lk.put_secret("k", "live", "the-real-key").await;
    let app = lk.app_key("live").await;
    (up, lk, app)
}

#[tokio::test]
async fn forwards_method_path_query_body_and_end_to_end_headers() {
    let (up, lk, app) = setup("").await;
    let resp = lk
        .http
        .put(lk.url("/v1/proxy/up/v2/things/a%20b?x=1&y=%2F"))
        .bearer_auth(&app)
        .header("X-Custom", "kept")
        .header("X-Api-Key", "caller-tries-its-own")
        .header("Cookie", "latchkey_session=1")
        .header("Latchkey-Trace", "internal")
        .header("Connection", "keep-alive, X-Hop")
        .header("X-Hop", "dropped")
        .header("Content-Type", "text/plain")
        .body("hello body")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let rec = up.last();
    assert_eq!(rec.method, "PUT");
    assert_eq!(rec.uri, "/api/v2/things/a%20b?x=1&y=%2F");
    assert_eq!(rec.body, b"hello body");
    assert_eq!(rec.header("x-custom"), Some("kept"));
    assert_eq!(rec.header("content-type"), Some("text/plain"));
    assert_eq!(rec.header_all("x-api-key"), vec!["the-real-key"], "the caller overrode the credential");
    assert_eq!(rec.header("x-fixed"), Some("1"));
    for dropped in ["authorization", "cookie", "latchkey-trace", "x-hop"] {
        assert_eq!(rec.header(dropped), None, "{dropped} was forwarded");
    }
}

#[tokio::test]
async fn responses_come_back_as_they_are_minus_cookies_and_hop_by_hop() {
    let (_up, lk, app) = setup("").await;
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/cookies")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers.get("x-upstream").unwrap(), "kept");
    assert!(r.headers.get("set-cookie").is_none());
    assert!(r.headers.get("keep-alive").is_none());
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/status/418")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (418, None));
}

#[tokio::test]
async fn redirects_are_returned_not_followed() {
    let (up, lk, app) = setup("").await;
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/redirect")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.headers.get("location").unwrap(), "http://127.0.0.2:9/elsewhere");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let (up, lk, app) = setup("").await;
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    let stream =
        futures_util::stream::iter(big.chunks(65536).map(|c| Ok::<_, std::io::Error>(c.to_vec())).collect::<Vec<_>>());
    let resp = lk
        .http
        .post(lk.url("/v1/proxy/up/upload"))
        .bearer_auth(&app)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.last().body, big);
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/chunks/500")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.body, (0..500).map(|i| format!("chunk{i};")).collect::<String>());
}

#[tokio::test]
async fn unreachable_and_slow_upstreams_are_reported_by_kind() {
    let up = Recorder::start().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = format!(
        "[connectors.dead]\nbase_url = \"http://{dead}\"\nauth = {{ method = \"none\" }}\n\
         [connectors.slow]\nbase_url = \"{}\"\ntimeout_ms = 200\nauth = {{ method = \"none\" }}\n",
        up.base_url
    );
    let lk = Latchkey::start(bin(), &config);
    let app = lk.app_key("live").await;
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/dead/x")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (502, Some("upstream_unreachable")), "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("could not connect to"), "{}", r.body);
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/slow/slow/3000")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (504, Some("upstream_timeout")), "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("raise `timeout_ms`"), "{}", r.body);
}

#[tokio::test]
async fn a_connector_can_close_the_proxy() {
    let (up, lk, app) = setup("proxy = false").await;
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (403, Some("forbidden")));
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/nope/x")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")));
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(lk.admin()).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (403, Some("forbidden")), "admin keys do not proxy");
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn upstream_connections_are_reused() {
    let (up, lk, app) = setup("").await;
    for _ in 0..20 {
        let r = lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&app).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    assert_eq!(up.count(), 20);
    assert_eq!(up.connections(), 1, "each request opened its own upstream connection");
    // Named calls share the same pool.
    let _ = lk.call(&app, "up", "missing-call", json!({})).await;
}

/// A keep-alive connection's app key is remembered (issue 5) only until any key changes: a key
/// deleted while the connection stays open is refused on its next request, and a different
/// key on the same connection is checked on its own.
#[tokio::test]
async fn a_connection_remembers_its_key_only_until_the_keys_change() {
    let (_up, lk, app) = setup("").await;
    let other = lk.app_key("live").await;
    let last = app.chars().last().unwrap();
    let forged = format!("{}{}", &app[..app.len() - 1], if last == 'x' { 'y' } else { 'x' });
    let mut conn = raw::KeepAlive::open(&lk.url("")).await;
    assert_eq!(conn.get("/v1/proxy/up/x", &app).await, 200);
    assert_eq!(conn.get("/v1/proxy/up/x", &app).await, 200);
    assert_eq!(conn.get("/v1/proxy/up/x", &forged).await, 401, "a wrong key after a right one");
    assert_eq!(conn.get("/v1/proxy/up/x", &other).await, 200);
    assert_eq!(conn.get("/v1/proxy/up/x", &app).await, 200);
    // A key is `lk_live_`, its 12-character id, then its secret.
    let id = &app[8..20];
    let r = lk.admin_req(reqwest::Method::DELETE, &format!("/v1/admin/keys/{id}")).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(conn.get("/v1/proxy/up/x", &app).await, 401, "a deleted key on a connection that used it");
    assert_eq!(conn.get("/v1/proxy/up/x", &other).await, 200);
    assert_eq!(conn.get("/v1/proxy/up/x", &app).await, 401);
}

/// The proxy and named calls are dispatched by their path's shape before the router (issue 5):
/// the shapes around them must still answer as the router would.
#[tokio::test]
async fn the_hot_routes_are_recognised_by_shape_and_everything_else_is_the_routers() {
    let (up, lk, app) = setup("[connectors.up.calls.get]\npath = \"/named\"\n").await;
    let status = |r: reqwest::Response| r.status().as_u16();
    // Connector names are percent-decoded as a router capture would be.
    let r = lk.http.get(lk.url("/v1/proxy/%75p/x")).bearer_auth(&app).send().await.unwrap();
    assert_eq!(status(r), 200);
    assert_eq!(up.last().uri, "/api/x");
    let r = lk.http.get(lk.url("/v1/proxy/up")).bearer_auth(&app).send().await.unwrap();
    assert_eq!(status(r), 200);
    assert_eq!(up.last().uri, "/api");
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/%FF/x")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{}", r.body);
    // The caller is checked before the path, as the router's extractors did.
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/%FF/x")).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (401, Some("unauthenticated")), "{}", r.body);
    // An empty connector segment is no route at all.
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy//x")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")), "{}", r.body);
    // Named calls: POST only, exactly `{connector}/calls/{call}`.
    let call = |path: &str| lk.http.post(lk.url(path)).bearer_auth(&app).json(&json!({"params": {}}));
    assert_eq!(status(call("/v1/connectors/up/calls/get").send().await.unwrap()), 200);
    assert_eq!(up.last().uri, "/api/named");
    assert_eq!(status(call("/v1/connectors/%75p/calls/g%65t").send().await.unwrap()), 200);
    let r = lk.http.get(lk.url("/v1/connectors/up/calls/get")).bearer_auth(&app).send().await.unwrap();
    assert_eq!(status(r), 405);
    let r = Reply::read(call("/v1/connectors/up/calls/get/more").send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")), "{}", r.body);
    let r = Reply::read(call("/v1/connectors/up/calls/").send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")), "{}", r.body);
    // Both shapes count in the metrics under their own route.
    assert_eq!(lk.metric("latchkey_http_requests_total{route=\"proxy\",status=\"2xx\"}").await, 2.0);
    assert_eq!(lk.metric("latchkey_http_requests_total{route=\"call\",status=\"2xx\"}").await, 2.0);
}

/// Serving threads (issue 5): `threads` of them, each with its own runtime; new connections go
/// to the thread with the fewest, and each thread reuses only its own upstream connections
/// (a connection is registered with the runtime that opened it).
#[tokio::test]
async fn connections_are_spread_over_serving_threads_each_with_its_own_upstream_connections() {
    let up = Recorder::start().await;
    let config = format!(
        "[server]\nthreads = 3\n[connectors.up]\nbase_url = \"{}/api\"\nauth = {{ method = \"api_key_header\", name = \"X-Api-Key\", key = {{ secret = \"k\" }} }}\n",
        up.base_url
    );
    let lk = Latchkey::start_with(bin(), latchkey_testkit::latchkey::Options { config, ..Default::default() }).unwrap();
    lk.put_secret("k", "live", "the-real-key").await;
    let app = lk.app_key("live").await;
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", lk.pid()))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_owned())
        .filter(|n| n.starts_with("latchkey-http"))
        .collect();
    names.sort();
    assert_eq!(names, ["latchkey-http-0", "latchkey-http-1", "latchkey-http-2"]);

    // Three keep-alive clients, one connection each; their requests interleave one at a time.
    let clients: Vec<reqwest::Client> = (0..3).map(|_| latchkey_testkit::latchkey::test_client()).collect();
    let before = up.connections();
    for _ in 0..5 {
        for c in &clients {
            let r = c.get(lk.url("/v1/proxy/up/x")).bearer_auth(&app).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.bytes().await.unwrap();
        }
    }
    // One thread would have reused one upstream connection for all 15; three threads open one
    // each and reuse it.
    assert_eq!(up.connections() - before, 3, "one upstream connection per serving thread");
    assert_eq!(up.count(), 15);

    let refused = refused_start("[server]\nthreads = 0\n");
    assert!(refused.contains("field `server.threads`: must be at least 1"), "{refused}");
}

/// SIGTERM: the listener closes, calls in flight on the serving threads finish, and the process
/// exits with success once they have.
#[tokio::test]
async fn a_terminated_server_finishes_calls_in_flight_and_exits_cleanly() {
    let (up, mut lk, app) = setup("").await;
    let (client, url, key) = (lk.http.clone(), lk.url("/v1/proxy/up/slow/1000"), app.clone());
    let in_flight = tokio::spawn(async move {
        let r = client.get(url).bearer_auth(&key).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    });
    while up.count() == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    lk.terminate();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Refused at once (not accepted into a backlog that nobody serves any more).
    let fresh = latchkey_testkit::latchkey::test_client().get(lk.url("/healthz")).send();
    let fresh = tokio::time::timeout(std::time::Duration::from_millis(500), fresh).await;
    assert!(
        matches!(&fresh, Ok(Err(e)) if e.is_connect()),
        "a new connection during shutdown was not refused: {fresh:?}"
    );
    let (status, _) = in_flight.await.unwrap();
    assert_eq!(status, 200, "the call in flight was cut off");
    let exit = tokio::task::spawn_blocking(move || {
        let exit = lk.wait_exit(std::time::Duration::from_secs(10));
        (exit, lk.output())
    })
    .await
    .unwrap();
    assert!(exit.0.is_some_and(|s| s.success()), "exit: {:?}\n{}", exit.0, exit.1);
    assert!(exit.1.contains("stopped"), "{}", exit.1);
}
