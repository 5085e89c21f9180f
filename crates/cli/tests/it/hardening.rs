//! Promises that must hold under attack (issue 12): bounded reactive refresh, short-lived
//! tokens, upstream answers that speak as Latchkey, fixed headers and query that callers cannot
//! override, `..;` path segments, single-use values spent only by valid requests, and user
//! tokens on app-level connectors.

use latchkey_testkit::fake_oauth::FakeOAuth;
use latchkey_testkit::recorder::Recorder;
use serde_json::json;

use super::*;

/// Issue 12 item 4: a path that refuses every token cannot make each call fetch a new one.
/// One reactive refresh replaces the token; when the path refuses the new one too, its 401s
/// are the path's answer for a minute, not a reason to refresh.
#[tokio::test]
async fn a_path_that_refuses_every_token_gets_one_reactive_refresh_not_one_per_call() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = super::lifecycle::setup(&fake, "").await;
    for _ in 0..25 {
        assert_eq!(lk.call(&app, "api", "deny", json!({})).await.status, 401);
        let r =
            Reply::read(lk.http.get(lk.url("/v1/proxy/api/api/always-401")).bearer_auth(&app).send().await.unwrap())
                .await;
        assert_eq!(r.status, 401);
    }
    // Concurrent callers share the one refresh too.
    let lk = std::sync::Arc::new(lk);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (lk, app) = (lk.clone(), app.clone());
            tokio::spawn(async move { lk.call(&app, "api", "deny", json!({})).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    // The grant, then one reactive refresh, whose token the path refused too.
    assert_eq!(fake.token_requests(), 2, "{:?}", fake.calls().iter().map(|c| c.grant().to_owned()).collect::<Vec<_>>());
    let log = lk.output();
    assert_eq!(log.matches("the upstream refused a token obtained just now").count(), 1, "{log}");
    // The token still works where the upstream accepts it.
    assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    assert_eq!(fake.token_requests(), 2);
}

/// Issue 12 item 5: 60-second tokens under the default `refresh_skew_s = 300` are refreshed at
/// half their lifetime, not on every call; the cap is logged once.
#[tokio::test]
async fn tokens_shorter_lived_than_the_skew_are_not_fetched_on_every_call() {
    let fake = FakeOAuth::start().await;
    fake.set_expires_in(60);
    let (lk, app) = super::lifecycle::setup(&fake, "").await;
    for _ in 0..10 {
        assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    }
    assert_eq!(fake.token_requests(), 1);
    let log = lk.output();
    assert_eq!(log.matches("each is refreshed at half its lifetime instead").count(), 1, "{log}");
}

/// A `refresh_skew_s` the operator set is used as it is, and a lifetime it reaches is warned
/// about once: every use refreshes.
#[tokio::test]
async fn a_configured_skew_that_reaches_the_lifetime_is_warned_about_once() {
    let fake = FakeOAuth::start().await;
    fake.set_expires_in(60);
    let (lk, app) = super::lifecycle::setup(&fake, "refresh_skew_s = 60").await;
    for _ in 0..3 {
        assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    }
    assert_eq!(fake.token_requests(), 3);
    let log = lk.output();
    assert_eq!(log.matches("every use refreshes; lower refresh_skew_s or leave it unset").count(), 1, "{log}");
}

/// Issue 12 item 9: `Latchkey-*` headers are Latchkey's alone: an upstream's are removed (its
/// `Latchkey-Request-Id` replaced by Latchkey's), and Latchkey's metrics do not count them as
/// its own errors.
#[tokio::test]
async fn an_upstreams_latchkey_headers_never_reach_the_caller() {
    let up = Recorder::start().await;
    let lk = with_connector(&up.base_url, r#"{ method = "none" }"#, "[connectors.up.calls.spoof]\npath = \"/spoof\"\n");
    let app = lk.app_key("live").await;
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/spoof")).bearer_auth(&app).send().await.unwrap()).await;
    let r2 = lk.call(&app, "up", "spoof", json!({})).await;
    for r in [r, r2] {
        assert_eq!(r.status, 409, "the upstream's status passes");
        assert_eq!(r.headers.get("x-upstream").and_then(|v| v.to_str().ok()), Some("kept"));
        // Only Latchkey's own: the request's id, once, never the upstream's.
        let theirs: Vec<_> =
            r.headers.keys().filter(|k| k.as_str().starts_with("latchkey-") && *k != "latchkey-request-id").collect();
        assert!(theirs.is_empty(), "an upstream's Latchkey-* header reached the caller: {theirs:?}");
        let ids: Vec<_> = r.headers.get_all("latchkey-request-id").iter().collect();
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_ne!(ids[0], "forged");
    }
    assert_eq!(lk.metric("latchkey_upstream_errors_total").await, 0.0);
}

/// Issue 12 item 10: the connector's fixed headers and query parameters win over the caller's
/// in the proxy, and are sent once.
#[tokio::test]
async fn fixed_headers_and_query_win_over_the_callers_in_the_proxy() {
    let up = Recorder::start().await;
    let lk = with_connector(
        &up.base_url,
        r#"{ method = "none" }"#,
        "headers = { \"X-Fixed\" = \"fixed\" }\nquery = { pinned = \"1\" }\n",
    );
    let app = lk.app_key("live").await;
    let r = lk
        .http
        .get(lk.url("/v1/proxy/up/things?a=b%20c&pinned=evil&pi%6Ened=evil2&z=1"))
        .bearer_auth(&app)
        .header("X-Fixed", "caller-override")
        .header("x-fixed", "caller-second")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rec = up.last();
    assert_eq!(rec.header_all("x-fixed"), ["fixed"]);
    assert_eq!(rec.uri, "/things?a=b%20c&z=1&pinned=1");
}

/// Issue 12 item 11: `..;` (and `%2e%2e;`, `..%3b`) is `..` to Tomcat and Spring: refused in
/// proxy paths and in named-call path parameters, and nothing reaches the upstream.
#[tokio::test]
async fn dot_dot_semicolon_segments_are_refused_like_dot_dot() {
    let up = Recorder::start().await;
    let lk = with_connector(
        &format!("{}/api/v1", up.base_url),
        r#"{ method = "none" }"#,
        "[connectors.up.calls.item]\npath = \"/items/<id>\"\n[connectors.up.calls.item.params]\nid = { required = true }\n",
    );
    let app = lk.app_key("live").await;
    for path in ["/v1/proxy/up/a/..;/admin", "/v1/proxy/up/a/%2e%2e;/admin", "/v1/proxy/up/a/..%3b/admin"] {
        let r = Reply::read(lk.http.get(lk.url(path)).bearer_auth(&app).send().await.unwrap()).await;
        assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{path}: {}", r.body);
    }
    for id in ["..;", "%2e%2e;", "..;x=1", ".;"] {
        let r = lk.call(&app, "up", "item", json!({"id": id})).await;
        assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{id}: {}", r.body);
    }
    assert_eq!(up.count(), 0, "a request reached the upstream: {:?}", up.requests());
    // Semicolons elsewhere are ordinary characters.
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/a;v=1/b")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Two browser-flow connectors on the in-process provider (`fake` also signs users in) and a
/// live app key.
async fn flow_setup(fake: &FakeOAuth) -> (Latchkey, String) {
    let lk = Latchkey::start(
        bin(),
        "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\n",
    );
    lk.put_secret("cs", "live", "fake-secret").await;
    for (name, login) in [("fake", true), ("other", false)] {
        let def = json!({"base_url": fake.base_url, "auth": {
            "method": "oauth2_authorization_code", "authorize_url": format!("{}/authorize", fake.base_url),
            "token_url": fake.token_url, "client_id": "app", "client_secret": {"secret": "cs"},
            "profile_url": format!("{}/profile", fake.base_url), "user_id_path": "data.user.id", "login": login}});
        let r = Reply::read(
            lk.admin_req(reqwest::Method::PUT, &format!("/v1/admin/connectors/{name}"))
                .json(&def)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let app = lk.app_key("live").await;
    (lk, app)
}

fn location(resp: &reqwest::Response) -> String {
    let to = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    to.unwrap_or_else(|| panic!("{} answered {} without a redirect", resp.url(), resp.status()))
}

/// Issue 12 item 12: a connect link opened at another connector's `/start` is refused and not
/// spent: the link still works where it belongs.
#[tokio::test]
async fn a_connect_link_opened_at_another_connector_is_refused_and_not_spent() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = flow_setup(&fake).await;
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connect/fake"))
            .bearer_auth(&app)
            .json(&json!({"user": "ada", "return_to": "https://app.example.com/done"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let link = r.json()["url"].as_str().unwrap().to_owned();
    assert!(link.contains("/oauth/fake/start?"), "{link}");
    let r =
        Reply::read(lk.http.get(link.replace("/oauth/fake/start", "/oauth/other/start")).send().await.unwrap()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"]["flow_error"], "session_invalid", "{}", r.body);
    let resp = lk.http.get(&link).send().await.unwrap();
    let to = location(&resp);
    assert!(to.starts_with(&format!("{}/authorize", fake.base_url)), "the link was spent by the refused request: {to}");
}

/// Issue 12 item 12: a sign-in code presented with another environment's key is refused and
/// not spent: the right key still exchanges it, once.
#[tokio::test]
async fn a_sign_in_code_presented_with_a_dev_key_is_refused_and_not_spent() {
    let fake = FakeOAuth::start().await;
    let (lk, live) = flow_setup(&fake).await;
    let dev = lk.app_key("dev").await;
    let resp = lk.http.get(lk.url("/oauth/fake/login?return_to=https://app.example.com/in")).send().await.unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let callback = location(&lk.http.get(location(&resp)).send().await.unwrap());
    let back = location(&lk.http.get(&callback).header("cookie", cookie).send().await.unwrap());
    let q: std::collections::HashMap<String, String> =
        url::Url::parse(&back).unwrap().query_pairs().into_owned().collect();
    assert_eq!(q.get("status").map(String::as_str), Some("signed_in"), "{back}");
    let exchange = |key: String| {
        let (lk, code) = (&lk, q["code"].clone());
        async move {
            let req = lk.http.post(lk.url("/v1/login/exchange")).bearer_auth(key).json(&json!({"code": code}));
            Reply::read(req.send().await.unwrap()).await
        }
    };
    let r = exchange(dev).await;
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{}", r.body);
    let r = exchange(live.clone()).await;
    assert_eq!(r.status, 200, "the dev key's refused exchange spent the code: {}", r.body);
    assert_eq!(r.json()["user"]["id"].as_str().map(|u| u.starts_with("usr_")), Some(true), "{}", r.body);
    let r = exchange(live).await;
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "a code worked twice: {}", r.body);
}

/// Issue 12 item 12: a callback without the browser's cookie is refused and does not spend
/// the state: the browser that started the flow still finishes it, once.
#[tokio::test]
async fn a_callback_without_the_browsers_cookie_does_not_spend_the_state() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = flow_setup(&fake).await;
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connect/other"))
            .bearer_auth(&app)
            .json(&json!({"user": "ada", "return_to": "https://app.example.com/done"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let resp = lk.http.get(r.json()["url"].as_str().unwrap()).send().await.unwrap();
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let callback = location(&lk.http.get(location(&resp)).send().await.unwrap());
    let status_of = |back: &str| -> (Option<String>, Option<String>) {
        let q: std::collections::HashMap<String, String> =
            url::Url::parse(back).unwrap().query_pairs().into_owned().collect();
        (q.get("status").cloned(), q.get("error").cloned())
    };
    let stranger = location(&lk.http.get(&callback).send().await.unwrap());
    assert_eq!(status_of(&stranger), (Some("error".into()), Some("browser_mismatch".into())), "{stranger}");
    let owner = location(&lk.http.get(&callback).header("cookie", &cookie).send().await.unwrap());
    assert_eq!(status_of(&owner).0.as_deref(), Some("connected"), "the stranger's callback spent the state: {owner}");
    let replay = location(&lk.http.get(&callback).header("cookie", &cookie).send().await.unwrap());
    assert_eq!(status_of(&replay).1.as_deref(), Some("state_used"), "{replay}");
}

/// Issue 12, "also check": a well-formed but unknown app key costs at most one store lookup
/// per id until any key changes, and made-up keys at most 20 lookups a second in all; a key
/// another writer made is still found.
#[tokio::test]
async fn unknown_app_keys_cost_a_bounded_number_of_store_lookups() {
    let lk = Latchkey::start(bin(), "");
    let unknown = format!("lk_live_{}{}", "a".repeat(12), "b".repeat(32));
    for _ in 0..50 {
        let r = Reply::read(lk.http.get(lk.url("/v1/connections?user=x")).bearer_auth(&unknown).send().await.unwrap())
            .await;
        assert_eq!(r.status, 401, "{}", r.body);
    }
    assert_eq!(lk.metric("latchkey_key_store_lookups_total").await, 1.0);
    let started = std::time::Instant::now();
    for i in 0..300 {
        let made_up = format!("lk_live_{i:012}{}", "c".repeat(32));
        let r = lk.http.get(lk.url("/v1/connections?user=x")).bearer_auth(&made_up).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    let seconds = started.elapsed().as_secs_f64().ceil() + 1.0;
    let lookups = lk.metric("latchkey_key_store_lookups_total").await - 1.0;
    assert!(lookups <= 20.0 * seconds, "{lookups} store lookups for 300 made-up keys in {seconds} s");
    // A key made by the command line (another writer) works.
    let out = lk.cli(&["key", "create", "--env", "live"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key =
        String::from_utf8_lossy(&out.stdout).split_whitespace().find(|w| w.starts_with("lk_live_")).unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = lk.http.get(lk.url("/v1/connections?user=x")).bearer_auth(&key).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a key made by the CLI was not accepted: {}", r.status());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A connection's first transient refresh failure (from `ok`) sends one
/// `connection.refresh_failed` webhook; the next transient failure (from `degraded`) does not.
/// The event's detail carries the state before, which the webhook choice reads.
#[tokio::test]
async fn the_first_transient_refresh_failure_of_a_connection_sends_one_webhook() {
    use latchkey_testkit::fake_oauth::Step;
    let fake = FakeOAuth::start().await;
    let hooks = Recorder::start().await;
    let lk = Latchkey::start(
        bin(),
        &format!(
            "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\n\
             webhook_url = \"{}/hooks\"\nwebhook_secret = {{ secret = \"whsec\" }}\n",
            hooks.base_url
        ),
    );
    lk.put_secret("whsec", "live", "webhook-signing-secret").await;
    lk.put_secret("cs", "live", "fake-secret").await;
    // Every token is inside the refresh window: each use refreshes.
    let def = json!({"base_url": fake.base_url, "refresh_skew_s": 3600, "auth": {
        "method": "oauth2_authorization_code", "authorize_url": format!("{}/authorize", fake.base_url),
        "token_url": fake.token_url, "client_id": "app", "client_secret": {"secret": "cs"}},
        "calls": {"echo": {"path": "/api/echo"}}});
    let r =
        Reply::read(lk.admin_req(reqwest::Method::PUT, "/v1/admin/connectors/fake").json(&def).send().await.unwrap())
            .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = lk.app_key("live").await;
    super::connections::connect_through(&lk, &app, "fake", "ada").await;
    let failed =
        || hooks.requests().iter().filter(|r| r.header("latchkey-event") == Some("connection.refresh_failed")).count();
    let call = || async {
        let req = lk.http.post(lk.url("/v1/connectors/fake/calls/echo")).bearer_auth(&app);
        Reply::read(req.json(&json!({"params": {}, "user": "ada"})).send().await.unwrap()).await
    };
    fake.script(&[Step::Error(503, "temporarily_unavailable"); 3]);
    let r = call().await;
    assert_eq!(r.status, 200, "a still-valid token keeps working: {}", r.body);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while failed() == 0 {
        assert!(std::time::Instant::now() < deadline, "no connection.refresh_failed webhook for the first failure");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Past the backoff (at most 2 s after one failure), the next refresh fails again.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let before = fake.token_requests();
    fake.script(&[Step::Error(503, "temporarily_unavailable"); 3]);
    assert_eq!(call().await.status, 200);
    assert!(fake.token_requests() > before, "the second call did not try to refresh");
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(failed(), 1, "a failure while already degraded sent another webhook");
}
