//! What Latchkey does with what a provider answers (SECURITY S6, SPEC §5, §8): an error that
//! echoes the request, token metadata with tokens nested in it, lifetimes that are no number of
//! seconds, access tokens no header can carry, and answers too large to read. The provider is
//! `testkit::hostile_provider`, which answers whatever the test tells it to.

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use latchkey_testkit::canary::{canary, find, read_dir_bytes};
use latchkey_testkit::hostile_provider::{Answer, HostileProvider};
use latchkey_testkit::recorder::Recorder;
use reqwest::Method;
use serde_json::{Value, json};

use super::*;

const RETURN_TO: &str = "https://app.example.com/done";

fn form(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn json_escaped(s: &str) -> String {
    let quoted = serde_json::to_string(s).unwrap();
    quoted[1..quoted.len() - 1].to_owned()
}

async fn get(lk: &Latchkey, path: &str) -> Reply {
    let r = Reply::read(lk.admin_req(Method::GET, path).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r
}

async fn call_as(lk: &Latchkey, app: &str, connector: &str, user: &str) -> Reply {
    Reply::read(
        lk.http
            .post(lk.url(&format!("/v1/connectors/{connector}/calls/echo")))
            .bearer_auth(app)
            .json(&json!({"params": {}, "user": user}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// GETs `url` with `cookies`, keeps the cookies it sets, and returns its redirect's Location.
async fn follow(http: &reqwest::Client, url: &str, cookies: &mut HashMap<String, String>) -> String {
    let jar: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let resp = http.get(url).header("cookie", jar.join("; ")).send().await.unwrap();
    for c in resp.headers().get_all("set-cookie") {
        let text = c.to_str().unwrap();
        let (kv, _) = text.split_once(';').unwrap_or((text, ""));
        let (k, v) = kv.split_once('=').unwrap();
        cookies.insert(k.to_owned(), v.to_owned());
    }
    let status = resp.status();
    let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    location.unwrap_or_else(|| panic!("{url} answered {status} without a redirect"))
}

/// Runs the browser flow of `connector` for `user` (the provider approves at once); returns
/// the query Latchkey sent the browser back to `return_to` with.
async fn connect(lk: &Latchkey, app: &str, connector: &str, user: &str) -> HashMap<String, String> {
    let r = Reply::read(
        lk.http
            .post(lk.url(&format!("/v1/connect/{connector}")))
            .bearer_auth(app)
            .json(&json!({"user": user, "return_to": RETURN_TO}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut cookies = HashMap::new();
    let authorize = follow(&lk.http, r.json()["url"].as_str().unwrap(), &mut cookies).await;
    let callback = follow(&lk.http, &authorize, &mut cookies).await;
    let back = follow(&lk.http, &callback, &mut cookies).await;
    assert!(back.starts_with(RETURN_TO), "{back}");
    url::Url::parse(&back).unwrap().query_pairs().into_owned().collect()
}

/// `GET /v1/connections/{connector}?user=` with the app key.
async fn connection(lk: &Latchkey, app: &str, connector: &str, user: &str) -> Value {
    let path = format!("/v1/connections/{connector}?user={user}");
    let r = Reply::read(lk.http.get(lk.url(&path)).bearer_auth(app).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

/// Everything Latchkey shows about its tokens and events, for scans.
async fn admin_views(lk: &Latchkey) -> String {
    let mut out = String::new();
    for path in ["/v1/admin/events?limit=1000", "/v1/admin/tokens", "/v1/admin/connectors"] {
        out.push_str(&get(lk, path).await.all_text());
    }
    out
}

fn assert_nowhere(lk: &Latchkey, wrote: &str, canaries: &[String]) {
    let found = find(wrote.as_bytes(), canaries);
    assert!(found.is_empty(), "secrets in Latchkey's responses: {found:?}\n{wrote}");
    let admin_line = format!("Admin key (shown only this once; keep it safe): {}", lk.admin());
    let log = lk.output().replace(&admin_line, "");
    let found = find(log.as_bytes(), canaries);
    assert!(found.is_empty(), "secrets in the server's output: {found:?}\n{log}");
    let found = find(&read_dir_bytes(&lk.data_dir), canaries);
    assert!(found.is_empty(), "secrets in plaintext on disk: {found:?}");
}

/// SECURITY S6: a token endpoint that echoes its whole request into `error_description` gets
/// none of the secrets sent back out of Latchkey, in any encoding: a password and a client
/// secret form-encoded (`+`, `%26`), the Base64 `Authorization: Basic` pair, a custom token
/// request's JSON body (JSON-escaped) and a header set from a secret. A secret that straddles
/// the description's 300-character cut leaks no prefix; a secret too short to search for
/// keeps the whole description out. Scanned: the calls' errors, events, token health, the
/// log and the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoing_token_endpoint_gets_back_no_secret_sent_in_any_encoding() {
    let echo = |error| Answer::Echo { status: 401, error, place: None };
    let (pw_p, custom_p, cut_p, short_p) = (
        HostileProvider::start().await,
        HostileProvider::start().await,
        HostileProvider::start().await,
        HostileProvider::start().await,
    );
    let pw = format!("{}+a&b c\"d\\e/é", canary("pw"));
    let cs = format!("{}&+=?é", canary("cs"));
    let ck = format!("{}\"q\\u/é", canary("ck"));
    let hk = canary("hk");
    let cut = canary("cut");
    pw_p.token_answers(&[echo("invalid_grant")]);
    custom_p.token_answers(&[echo("invalid_request")]);
    // The client secret of `cut` starts five characters before the cut.
    cut_p.token_answers(&[Answer::Echo { status: 401, error: "invalid_client", place: Some((form(&cut), 295)) }]);
    short_p.token_answers(&[echo("invalid_client")]);
    let lk = Latchkey::start(
        bin(),
        &format!(
            r#"
[connectors.pw]
base_url = "{pw_base}"
auth = {{ method = "oauth2_password", token_url = "{pw_token}", username = "ada", password = {{ secret = "pw" }}, client_id = "app id", client_secret = {{ secret = "cs" }}, client_auth = "basic" }}
[connectors.pw.calls.echo]
path = "/api"
[connectors.custom]
base_url = "{custom_base}"
auth = {{ method = "oauth2_custom_token", token_url = "{custom_token}", token_body = '{{"key": "<k>", "n": 1}}', token_headers = {{ "X-Api-Key" = "Key <h>" }}, secrets = {{ k = {{ secret = "ck" }}, h = {{ secret = "hk" }} }} }}
[connectors.custom.calls.echo]
path = "/api"
[connectors.cut]
base_url = "{cut_base}"
auth = {{ method = "oauth2_client_credentials", token_url = "{cut_token}", client_id = "app", client_secret = {{ secret = "cut" }}, client_auth = "body" }}
[connectors.cut.calls.echo]
path = "/api"
[connectors.short]
base_url = "{short_base}"
auth = {{ method = "oauth2_client_credentials", token_url = "{short_token}", client_id = "app", client_secret = {{ secret = "short" }}, client_auth = "body" }}
[connectors.short.calls.echo]
path = "/api"
"#,
            pw_base = pw_p.base_url,
            pw_token = pw_p.token_url,
            custom_base = custom_p.base_url,
            custom_token = custom_p.token_url,
            cut_base = cut_p.base_url,
            cut_token = cut_p.token_url,
            short_base = short_p.base_url,
            short_token = short_p.token_url,
        ),
    );
    for (name, value) in [("pw", &pw), ("cs", &cs), ("ck", &ck), ("hk", &hk), ("cut", &cut)] {
        lk.put_secret(name, "live", value).await;
    }
    lk.put_secret("short", "live", "k9").await;
    let app = lk.app_key("live").await;

    let mut wrote = String::new();
    let mut descriptions = HashMap::new();
    for connector in ["pw", "custom", "cut", "short"] {
        let r = lk.call(&app, connector, "echo", json!({})).await;
        assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{connector}: {}", r.body);
        let e = r.json()["error"].clone();
        assert_eq!(e["provider_status"], 401, "{connector}: {e}");
        descriptions.insert(connector, e["provider_error_description"].clone());
        wrote.push_str(&r.all_text());
    }
    // What each provider received: the secrets really were sent in the encodings scanned for.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("app+id:{}", form(&cs)));
    let pw_sent = &pw_p.received()[0];
    assert!(pw_sent.body.contains(&form(&pw)), "{}", pw_sent.body);
    assert!(pw_sent.headers.iter().any(|(k, v)| k == "authorization" && v == &format!("Basic {basic}")));
    let custom_sent = &custom_p.received()[0];
    assert!(custom_sent.body.contains(&json_escaped(&ck)), "{}", custom_sent.body);
    assert!(custom_sent.headers.iter().any(|(k, v)| k == "x-api-key" && v == &format!("Key {hk}")));
    assert!(short_p.received()[0].body.contains("client_secret=k9"));
    // The providers' words are kept, minus the secrets.
    let pw_said = descriptions["pw"].as_str().unwrap_or_default();
    assert!(pw_said.contains("&password=[REDACTED]") && pw_said.contains("Basic [REDACTED]"), "{pw_said}");
    let custom_said = descriptions["custom"].as_str().unwrap_or_default();
    assert!(custom_said.contains("[REDACTED]") && custom_said.contains("Key [REDACTED]"), "{custom_said}");
    let cut_said = descriptions["cut"].as_str().unwrap_or_default();
    assert!(cut_said.contains("xxxxxxxxxx"), "{cut_said}");
    assert!(!cut_said.contains(&cut[..10]), "a prefix of the secret across the cut leaked: {cut_said}");
    assert_eq!(descriptions["short"], Value::Null, "a description that may hold a 2-character secret was kept");

    wrote.push_str(&admin_views(&lk).await);
    assert!(wrote.contains("invalid_grant") && wrote.contains("token.refresh_failed"), "the scenario did not run");
    let mut canaries = vec![pw.clone(), form(&pw), cs.clone(), form(&cs), basic, ck.clone(), json_escaped(&ck), hk];
    canaries.extend([cut.clone(), form(&cut), cut[..10].to_owned()]);
    canaries.push("client_secret=k9".to_owned());
    assert_nowhere(&lk, &wrote, &canaries);
}

/// SECURITY S6 for a user's connection: the code exchange and a refresh are echoed back; the
/// code, the PKCE verifier, the refresh token and the Basic pair reach neither the events, the
/// connection's `last_error` (which the user's own token can read), the webhook, the call's
/// error, the log nor the disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoing_provider_gets_back_no_secret_of_a_connection() {
    let p = HostileProvider::start().await;
    let hooks = Recorder::start().await;
    let lk = Latchkey::start(
        bin(),
        &format!(
            r#"
[server]
return_to_allow = ["https://app.example.com/"]
webhook_url = "{hooks}/hooks"
webhook_secret = {{ secret = "whsec" }}
[connectors.conn]
base_url = "{base}"
refresh_skew_s = 7200
auth = {{ method = "oauth2_authorization_code", authorize_url = "{authorize}", token_url = "{token}", client_id = "app", client_secret = {{ secret = "cs" }}, revoke_url = "{revoke}" }}
[connectors.conn.calls.echo]
path = "/api"
"#,
            hooks = hooks.base_url,
            base = p.base_url,
            authorize = p.authorize_url,
            token = p.token_url,
            revoke = p.revoke_url,
        ),
    );
    let cs = format!("{}&=+", canary("conncs"));
    lk.put_secret("cs", "live", &cs).await;
    lk.put_secret("whsec", "live", "webhook-signing-secret").await;
    let app = lk.app_key("live").await;

    // The code exchange is refused with an echo.
    p.token_answers(&[Answer::Echo { status: 400, error: "invalid_grant", place: None }]);
    let back = connect(&lk, &app, "conn", "ada").await;
    assert_eq!(back.get("error").map(String::as_str), Some("token_exchange_failed"), "{back:?}");
    // Then a connection, and its refresh refused with an echo (the token is stale at once).
    p.token_answers(&[Answer::Tokens, Answer::Echo { status: 400, error: "invalid_grant", place: None }]);
    let back = connect(&lk, &app, "conn", "ada").await;
    assert_eq!(back.get("status").map(String::as_str), Some("connected"), "{back:?}");
    let r = call_as(&lk, &app, "conn", "ada").await;
    assert_eq!((r.status, r.error_code()), (409, Some("reauthorization_required")), "{}", r.body);
    assert!(r.json()["error"]["provider_error_description"].as_str().is_some_and(|d| d.contains("[REDACTED]")));
    let mut wrote = r.all_text();
    let conn = connection(&lk, &app, "conn", "ada").await;
    assert!(conn["last_error"].as_str().is_some_and(|e| e.contains("[REDACTED]")), "{conn}");
    wrote.push_str(&conn.to_string());
    wrote.push_str(&get(&lk, "/v1/admin/connections").await.all_text());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !hooks.requests().iter().any(|h| h.header("latchkey-event") == Some("connection.refresh_failed")) {
        assert!(std::time::Instant::now() < deadline, "no connection.refresh_failed webhook");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for h in hooks.requests() {
        wrote.push_str(&String::from_utf8_lossy(&h.body));
    }
    wrote.push_str(&admin_views(&lk).await);
    assert!(wrote.contains("connection.exchange_failed"), "the scenario did not run");

    // Every secret value the provider received in a token request.
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("app:{}", form(&cs)));
    let mut canaries = vec![cs.clone(), form(&cs), basic];
    for sent in p.received().iter().filter(|r| r.path == "/token") {
        for (k, v) in url::form_urlencoded::parse(sent.body.as_bytes()) {
            if matches!(k.as_ref(), "code" | "code_verifier" | "refresh_token") {
                canaries.push(v.into_owned());
            }
        }
    }
    assert_eq!(canaries.len(), 3 + 5, "code and verifier twice, one refresh token: {canaries:?}");
    canaries.extend(p.issued_tokens());
    assert_nowhere(&lk, &wrote, &canaries);
}

/// SPEC §8: a connection's metadata is the token response without its secrets, at any depth.
/// Slack's `oauth.v2.access` answer nests the user's token and refresh token in `authed_user`;
/// a connector whose `token_name` points there (`authed_user.access_token`) uses the user's
/// token, and the bot's is no metadata either. Kept: `ok`, `token_type`, `scope`, `team`,
/// `bot_user_id`, `authed_user.id`, the lifetimes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_metadata_keeps_no_token_at_any_depth_in_slacks_answer() {
    let p = HostileProvider::start().await;
    let (bot, user, user_refresh, bot_refresh) = (
        format!("xoxb-{}", canary("bot")),
        format!("xoxp-{}", canary("user")),
        format!("xoxe-{}", canary("userrefresh")),
        format!("xoxe-1-{}", canary("botrefresh")),
    );
    p.token_answers(&[Answer::Json(
        200,
        json!({"ok": true, "access_token": bot, "token_type": "bot", "scope": "commands,chat:write",
            "bot_user_id": "U0BOT", "app_id": "A0APP", "team": {"name": "Acme", "id": "T0TEAM"}, "enterprise": null,
            "authed_user": {"id": "U0ADA", "scope": "chat:write", "access_token": user, "token_type": "user",
                "refresh_token": user_refresh, "expires_in": 43200},
            "refresh_token": bot_refresh, "expires_in": 43200}),
    )]);
    let connector = |name: &str, token_name: &str| {
        format!(
            r#"
[connectors.{name}]
base_url = "{base}"
auth = {{ method = "oauth2_authorization_code", authorize_url = "{authorize}", token_url = "{token}", client_id = "app", client_secret = {{ secret = "cs" }}, token_name = "{token_name}" }}
[connectors.{name}.calls.echo]
path = "/api"
"#,
            base = p.base_url,
            authorize = p.authorize_url,
            token = p.token_url,
        )
    };
    let lk = Latchkey::start(
        bin(),
        &format!(
            "[server]\nreturn_to_allow = [\"https://app.example.com/\"]\n{}{}",
            connector("bot", "access_token"),
            connector("user", "authed_user.access_token")
        ),
    );
    lk.put_secret("cs", "live", "client-secret").await;
    let app = lk.app_key("live").await;
    let expected = json!({"ok": true, "token_type": "bot", "scope": "commands,chat:write", "bot_user_id": "U0BOT",
        "app_id": "A0APP", "team": {"name": "Acme", "id": "T0TEAM"}, "enterprise": null,
        "authed_user": {"id": "U0ADA", "scope": "chat:write", "token_type": "user", "expires_in": 43200},
        "expires_in": 43200});
    let mut wrote = String::new();
    for name in ["bot", "user"] {
        let back = connect(&lk, &app, name, "ada").await;
        assert_eq!(back.get("status").map(String::as_str), Some("connected"), "{name}: {back:?}");
        let conn = connection(&lk, &app, name, "ada").await;
        assert_eq!(conn["metadata"], expected, "{name}");
        wrote.push_str(&conn.to_string());
    }
    // The user connector calls with the user's token.
    let r = call_as(&lk, &app, "user", "ada").await;
    assert_eq!(r.json()["authorization"], format!("Bearer {user}"), "{}", r.body);
    wrote.push_str(&get(&lk, "/v1/admin/connections").await.all_text());
    wrote.push_str(&admin_views(&lk).await);
    assert_nowhere(&lk, &wrote, &[bot, user, user_refresh, bot_refresh]);
}

/// The year of an RFC 3339 time.
fn year(t: &Value) -> i64 {
    t.as_str().and_then(|t| t.get(..4)?.parse().ok()).unwrap_or_else(|| panic!("not a time: {t}"))
}

/// Latchkey's token health row for `connector`.
async fn token_row(lk: &Latchkey, connector: &str) -> Value {
    let tokens = get(lk, "/v1/admin/tokens").await.json();
    let rows = tokens["tokens"].as_array().unwrap();
    rows.iter().find(|t| t["connector"] == connector).cloned().unwrap_or_else(|| panic!("{connector}: {tokens}"))
}

/// A Latchkey with one `oauth2_client_credentials` connector per provider, named as given.
async fn client_credentials(providers: &[(&str, &HostileProvider)]) -> (Latchkey, String) {
    let mut config = String::new();
    for (name, p) in providers {
        config.push_str(&format!(
            r#"
[connectors.{name}]
base_url = "{base}"
auth = {{ method = "oauth2_client_credentials", token_url = "{token}", client_id = "app", client_secret = {{ secret = "cs" }} }}
[connectors.{name}.calls.echo]
path = "/api"
"#,
            base = p.base_url,
            token = p.token_url,
        ));
    }
    let lk = Latchkey::start(bin(), &config);
    lk.put_secret("cs", "live", "client-secret").await;
    let app = lk.app_key("live").await;
    (lk, app)
}

/// SPEC §5: `expires_in` is a number of seconds. A huge one (`1e300`) is clamped to ten years
/// (no overflow: the token is neither always expired nor eternal); a numeric string is read;
/// `"inf"`, `"NaN"`, a negative number or a word are refused as the provider's error, and the
/// token is not `ok`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lifetime_that_is_no_number_of_seconds_is_clamped_or_refused() {
    let cases = [
        ("huge", json!(1e300), true),
        ("numeric_string", json!("3600"), true),
        ("inf", json!("inf"), false),
        ("nan", json!("NaN"), false),
        ("negative", json!(-5), false),
        ("word", json!("soon"), false),
    ];
    let mut providers = Vec::new();
    for (name, expires_in, _) in &cases {
        let p = HostileProvider::start().await;
        let answer = json!({"access_token": format!("tok-{name}"), "token_type": "Bearer", "expires_in": expires_in});
        p.token_answers(&[Answer::Json(200, answer)]);
        providers.push((*name, p));
    }
    let named: Vec<(&str, &HostileProvider)> = providers.iter().map(|(n, p)| (*n, p)).collect();
    let (lk, app) = client_credentials(&named).await;
    let this_year = 1970 + latchkey_core::clock::system_now_ms() / 1000 / 31_556_952;
    for ((name, _, usable), (_, p)) in cases.iter().zip(&providers) {
        let first = lk.call(&app, name, "echo", json!({})).await;
        if *usable {
            assert_eq!(first.status, 200, "{name}: {}", first.body);
            let second = lk.call(&app, name, "echo", json!({})).await;
            assert_eq!(second.status, 200, "{name}: {}", second.body);
            assert_eq!(p.token_requests(), 1, "{name}: the token did not stay fresh");
            let row = token_row(&lk, name).await;
            assert_eq!(row["state"], "ok", "{name}: {row}");
            let expires = year(&row["expires_at"]);
            assert!((this_year..=this_year + 11).contains(&expires), "{name}: {row}");
        } else {
            assert_eq!(
                (first.status, first.error_code()),
                (502, Some("token_request_failed")),
                "{name}: {}",
                first.body
            );
            let message = first.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
            assert!(message.contains("`expires_in`"), "{name}: {message}");
            let row = token_row(&lk, name).await;
            assert_ne!(row["state"], "ok", "{name}: {row}");
            assert_eq!(row["has_token"], false, "{name}: {row}");
        }
    }
}

/// An access token with CR, LF or NUL cannot go into a header: it is refused at the token
/// response (`token_request_failed`), never stored as `ok`, and no call goes out with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_access_token_no_header_can_carry_is_refused_at_the_token_response() {
    let (crlf, nul) = (HostileProvider::start().await, HostileProvider::start().await);
    crlf.token_answers(&[Answer::Json(200, json!({"access_token": "tok\r\nX-Injected: 1", "expires_in": 3600}))]);
    nul.token_answers(&[Answer::Json(200, json!({"access_token": "tok\u{0}x", "expires_in": 3600}))]);
    let (lk, app) = client_credentials(&[("crlf", &crlf), ("nul", &nul)]).await;
    for (name, p) in [("crlf", &crlf), ("nul", &nul)] {
        let r = lk.call(&app, name, "echo", json!({})).await;
        assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{name}: {}", r.body);
        let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains("access token") && message.contains("header"), "{name}: {message}");
        let row = token_row(&lk, name).await;
        assert_ne!(row["state"], "ok", "{name}: {row}");
        assert_eq!(row["has_token"], false, "{name}: {row}");
        assert!(p.received().iter().all(|r| r.path == "/token"), "{name}: a call went out with the token");
    }
}

/// Token and profile answers are read up to 1 MiB: a larger one, announced by
/// `Content-Length` or chunked without it, success or error, is refused with an error that
/// says so, instead of being read whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_larger_than_1_mib_are_refused_with_a_clear_error() {
    const LEN: usize = 3 << 20;
    let (sized, chunked, refused) =
        (HostileProvider::start().await, HostileProvider::start().await, HostileProvider::start().await);
    sized.token_answers(&[Answer::Huge { status: 200, len: LEN, content_length: true }]);
    chunked.token_answers(&[Answer::Huge { status: 200, len: LEN, content_length: false }]);
    refused.token_answers(&[Answer::Huge { status: 400, len: LEN, content_length: false }]);
    let (lk, app) = client_credentials(&[("sized", &sized), ("chunked", &chunked), ("refused", &refused)]).await;
    for name in ["sized", "chunked", "refused"] {
        let r = lk.call(&app, name, "echo", json!({})).await;
        assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{name}: {}", r.body);
        let message = r.json()["error"]["message"].as_str().unwrap_or_default().to_owned();
        assert!(message.contains("exceeded 1 MiB") && message.contains(name), "{name}: {message}");
        assert_ne!(token_row(&lk, name).await["state"], "ok", "{name}");
    }

    // The profile, read after the code exchange.
    let p = HostileProvider::start().await;
    p.profile_answer(Answer::Huge { status: 200, len: LEN, content_length: false });
    let (lk, app) = profile_connector(&p).await;
    let back = connect(&lk, &app, "conn", "ada").await;
    assert_eq!(back.get("error").map(String::as_str), Some("profile_failed"), "{back:?}");
    let events = get(&lk, "/v1/admin/events?kind=connection.profile_failed").await.json();
    let error = events["events"][0]["detail"]["error"].as_str().unwrap_or_default().to_owned();
    assert!(error.contains("exceeded 1 MiB"), "{events}");
}

/// SECURITY S6 for the profile request: a profile that echoes the access token it was sent
/// (here as the user id and the email) gives the connection neither, since both are stored in
/// plaintext and shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_that_echoes_the_access_token_gives_no_user_id_or_email() {
    let p = HostileProvider::start().await;
    let token = format!("hat-{}", canary("profile"));
    p.token_answers(&[Answer::Json(200, json!({"access_token": token, "token_type": "Bearer", "expires_in": 3600}))]);
    p.profile_answer(Answer::Json(200, json!({"id": token, "email": format!("{token}@example.com")})));
    let (lk, app) = profile_connector(&p).await;
    let back = connect(&lk, &app, "conn", "ada").await;
    assert_eq!(back.get("status").map(String::as_str), Some("connected"), "{back:?}");
    let conn = connection(&lk, &app, "conn", "ada").await;
    assert_eq!((&conn["provider_user_id"], &conn["email"]), (&Value::Null, &Value::Null), "{conn}");
    let mut wrote = conn.to_string();
    wrote.push_str(&get(&lk, "/v1/admin/connections").await.all_text());
    wrote.push_str(&admin_views(&lk).await);
    assert_nowhere(&lk, &wrote, &[token]);
}

/// RFC 6749 §5.2's `error_uri` is kept (`provider_error_uri`), on an app-level token's error
/// and on a connection's `reauthorization_required`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_error_uri_is_kept() {
    let refusal = json!({"error": "invalid_grant", "error_description": "expired",
        "error_uri": "https://docs.example.com/errors/invalid_grant"});
    let (app_p, conn_p) = (HostileProvider::start().await, HostileProvider::start().await);
    app_p.token_answers(&[Answer::Json(400, refusal.clone())]);
    conn_p.token_answers(&[Answer::Tokens, Answer::Json(400, refusal.clone())]);
    let lk = Latchkey::start(
        bin(),
        &format!(
            r#"
[server]
return_to_allow = ["https://app.example.com/"]
[connectors.cc]
base_url = "{app_base}"
auth = {{ method = "oauth2_client_credentials", token_url = "{app_token}", client_id = "app", client_secret = {{ secret = "cs" }} }}
[connectors.cc.calls.echo]
path = "/api"
[connectors.conn]
base_url = "{conn_base}"
refresh_skew_s = 7200
auth = {{ method = "oauth2_authorization_code", authorize_url = "{authorize}", token_url = "{conn_token}", client_id = "app", client_secret = {{ secret = "cs" }} }}
[connectors.conn.calls.echo]
path = "/api"
"#,
            app_base = app_p.base_url,
            app_token = app_p.token_url,
            conn_base = conn_p.base_url,
            authorize = conn_p.authorize_url,
            conn_token = conn_p.token_url,
        ),
    );
    lk.put_secret("cs", "live", "client-secret").await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "cc", "echo", json!({})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{}", r.body);
    assert_eq!(r.json()["error"]["provider_error_uri"], refusal["error_uri"], "{}", r.body);
    let back = connect(&lk, &app, "conn", "ada").await;
    assert_eq!(back.get("status").map(String::as_str), Some("connected"), "{back:?}");
    let r = call_as(&lk, &app, "conn", "ada").await;
    assert_eq!((r.status, r.error_code()), (409, Some("reauthorization_required")), "{}", r.body);
    assert_eq!(r.json()["error"]["provider_error_uri"], refusal["error_uri"], "{}", r.body);
}

/// A Latchkey with connector `conn`: the browser flow at `p`, reading its profile; and a live
/// app key.
async fn profile_connector(p: &HostileProvider) -> (Latchkey, String) {
    let lk = Latchkey::start(
        bin(),
        &format!(
            r#"
[server]
return_to_allow = ["https://app.example.com/"]
[connectors.conn]
base_url = "{base}"
auth = {{ method = "oauth2_authorization_code", authorize_url = "{authorize}", token_url = "{token}", client_id = "app", client_secret = {{ secret = "cs" }}, profile_url = "{profile}" }}
[connectors.conn.calls.echo]
path = "/api"
"#,
            base = p.base_url,
            authorize = p.authorize_url,
            token = p.token_url,
            profile = p.profile_url,
        ),
    );
    lk.put_secret("cs", "live", "client-secret").await;
    let app = lk.app_key("live").await;
    (lk, app)
}
