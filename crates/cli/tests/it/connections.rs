//! Per-user connections (SPEC §8) end to end: the authorization-code flow against
//! oidc-provider (npm, OpenID-certified) driven over HTTP and once in headless Chromium, and
//! an in-process provider for the form token response and the token in the query.

use std::collections::HashMap;
use std::time::Duration;

use latchkey_testkit::fake_oauth::FakeOAuth;
use latchkey_testkit::peers::oidc::{RegisteredClient, oidc};
use latchkey_testkit::recorder::Recorder;
use reqwest::Method;
use serde_json::{Value, json};

use super::*;

const RETURN_TO: &str = "https://app.example.com/done";

pub(super) struct Setup {
    pub(super) lk: Latchkey,
    pub(super) app: String,
    client: RegisteredClient,
    pub(super) up: Recorder,
    hooks: Recorder,
}

/// Latchkey with connector `oidc` (authorization code at oidc-provider, `client_auth`),
/// calling the recorder `up` with the user's token; webhooks to `hooks`.
pub(super) async fn setup(client_auth: &str, extra: Value) -> Setup {
    let up = Recorder::start().await;
    let hooks = Recorder::start().await;
    let config = format!(
        "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\", \"{up}/landing\"]\nwebhook_url = \"{hooks}/hooks\"\n\
         webhook_secret = {{ secret = \"whsec\" }}\n",
        up = up.base_url,
        hooks = hooks.base_url
    );
    let lk = Latchkey::start(bin(), &config);
    lk.put_secret("whsec", "live", "webhook-signing-secret").await;
    let o = oidc();
    let grants = ["authorization_code", "refresh_token"];
    let client = if client_auth == "private_key_jwt" {
        let key = super::client_auth::client_key(latchkey_vault::identity::SigningAlg::Es256);
        lk.put_secret("client_key", "live", &key.pem).await;
        super::client_auth::register_keyed(&grants, &[&lk.url("/oauth/callback")], &[&key]).await
    } else {
        let method = if client_auth == "body" { "client_secret_post" } else { "client_secret_basic" };
        let client = o.register(method, &grants, &[&lk.url("/oauth/callback")]).await;
        lk.put_secret("cs", "live", client.client_secret.as_deref().unwrap()).await;
        client
    };
    let mut auth = json!({
        "method": "oauth2_authorization_code",
        "authorize_url": o.authorize_url,
        "token_url": o.token_url,
        "client_id": client.client_id,
        "client_secret": {"secret": "cs"},
        "client_auth": client_auth,
        "scope": ["openid", "email"],
        "profile_url": o.userinfo_url,
        "user_id_path": "sub",
        "revoke_url": o.revocation_url,
        "issuer": o.issuer,
    });
    if client_auth == "private_key_jwt" {
        auth["client_secret"] = Value::Null;
        auth["client_private_key"] = json!({"secret": "client_key"});
    }
    if let (Some(a), Some(e)) = (auth.as_object_mut(), extra.get("auth").and_then(Value::as_object)) {
        a.extend(e.clone());
    }
    let mut def = json!({"base_url": up.base_url, "auth": auth, "calls": {"ping": {"path": "/ping"}}});
    if let Some(skew) = extra.get("refresh_skew_s") {
        def["refresh_skew_s"] = skew.clone();
    }
    if let (Some(d), Some(e)) = (def.as_object_mut(), extra.get("connector").and_then(Value::as_object)) {
        d.extend(e.clone());
    }
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/oidc").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = lk.app_key("live").await;
    Setup { lk, app, client, up, hooks }
}

/// A browser: one cookie jar, redirects followed by hand.
#[derive(Default)]
pub(super) struct Browser {
    cookies: HashMap<String, String>,
}

impl Browser {
    /// GETs `url` and returns the redirect's Location (panics on anything else).
    pub(super) async fn get(&mut self, http: &reqwest::Client, url: &str) -> String {
        let cookie: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut req = http.get(url);
        if !cookie.is_empty() {
            req = req.header("cookie", cookie.join("; "));
        }
        let resp = req.send().await.unwrap();
        for c in resp.headers().get_all("set-cookie") {
            let text = c.to_str().unwrap();
            let (kv, _) = text.split_once(';').unwrap_or((text, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if v.is_empty() {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let status = resp.status();
        let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        location.unwrap_or_else(|| panic!("{url} answered {status} without a redirect"))
    }
}

async fn connect_link(s: &Setup, user: &str, return_to: &str) -> String {
    let r = Reply::read(
        s.lk.http
            .post(s.lk.url("/v1/connect/oidc"))
            .bearer_auth(&s.app)
            .json(&json!({"user": user, "return_to": return_to}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["url"].as_str().unwrap().to_owned()
}

/// Runs the flow headlessly; returns (callback URL at Latchkey, the browser).
pub(super) async fn login(s: &Setup, link: &str, user: &str) -> (String, Browser) {
    let mut browser = Browser::default();
    let provider = browser.get(&s.lk.http, link).await;
    assert!(provider.starts_with(&oidc().authorize_url), "{provider}");
    let callback = oidc().login(&provider, user).await;
    assert!(callback.starts_with(&s.lk.url("/oauth/callback")), "{callback}");
    (callback, browser)
}

fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

pub(super) async fn connect(s: &Setup, user: &str) -> String {
    let link = connect_link(s, user, RETURN_TO).await;
    let (callback, mut browser) = login(s, &link, user).await;
    let back = browser.get(&s.lk.http, &callback).await;
    assert!(back.starts_with(RETURN_TO), "{back}");
    let q = query_of(&back);
    assert_eq!(q.get("status").map(String::as_str), Some("connected"), "{back}");
    assert!(browser.cookies.is_empty(), "the flow cookie was not cleared: {:?}", browser.cookies);
    q["connection"].clone()
}

async fn call_as(s: &Setup, user: &str) -> Reply {
    Reply::read(
        s.lk.http
            .post(s.lk.url("/v1/connectors/oidc/calls/ping"))
            .bearer_auth(&s.app)
            .json(&json!({"params": {}, "user": user}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

pub(super) fn sent_token(up: &Recorder) -> String {
    up.last().header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_owned()
}

async fn hooks_of(hooks: &Recorder, kind: &str, wait: Duration) -> Vec<Value> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let found: Vec<Value> = hooks
            .requests()
            .iter()
            .filter(|r| r.header("latchkey-event") == Some(kind))
            .map(|r| {
                // The signature is HMAC-SHA256 over "<t>.<body>" with the webhook secret.
                let sig = r.header("latchkey-signature").unwrap();
                let (t, v1) = sig.split_once(",v1=").unwrap();
                let t = t.strip_prefix("t=").unwrap();
                let mut signed = format!("{t}.").into_bytes();
                signed.extend_from_slice(&r.body);
                let expect: String = latchkey_vault::hmac_sha256(b"webhook-signing-secret", &signed)
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                assert_eq!(v1, expect, "bad webhook signature");
                serde_json::from_slice(&r.body).unwrap()
            })
            .collect();
        if !found.is_empty() || std::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_with_basic_client_auth_rotation_and_revocation() {
    // Every token is inside the refresh window: each call refreshes and rotates. oidc-provider
    // revokes the whole grant when a rotated refresh token is reused, so a double refresh shows.
    let s = setup("basic", json!({"refresh_skew_s": 3600})).await;
    let id = connect(&s, "alice").await;
    assert!(id.starts_with("conn_"), "{id}");
    let created = hooks_of(&s.hooks, "connection.created", Duration::from_secs(5)).await;
    assert_eq!(created[0]["data"]["connection_id"], id.as_str());
    assert_eq!(created[0]["data"]["user"], "alice");

    let r =
        Reply::read(s.lk.http.get(s.lk.url("/v1/connections?user=alice")).bearer_auth(&s.app).send().await.unwrap())
            .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = &r.json()["connections"][0];
    assert_eq!((c["id"].as_str(), c["status"].as_str()), (Some(id.as_str()), Some("ok")));
    assert_eq!((c["provider_user_id"].as_str(), c["email"].as_str()), (Some("alice"), Some("alice@example.com")));
    assert!(c["scopes"].as_array().unwrap().iter().any(|x| x == "openid"), "{c}");
    assert!(c["expires_at"].is_string() && c["metadata"]["token_type"] == "Bearer", "{c}");
    assert!(
        !r.body.contains("access_token") && !r.body.contains("refresh_token") && !r.body.contains("id_token"),
        "{}",
        r.body
    );

    let mut tokens = Vec::new();
    for _ in 0..4 {
        let r = call_as(&s, "alice").await;
        assert_eq!(r.status, 200, "{}", r.body);
        tokens.push(sent_token(&s.up));
    }
    let info = oidc().introspect(&s.client, tokens.last().unwrap()).await;
    assert_eq!(info["active"], true, "the newest access token is not active: {info}");
    assert_eq!(info["sub"], "alice");
    tokens.dedup();
    assert_eq!(tokens.len(), 4, "the token was not refreshed on each call");
    // The proxy with Latchkey-User uses the same connection.
    let r = Reply::read(
        s.lk.http
            .get(s.lk.url("/v1/proxy/oidc/x"))
            .bearer_auth(&s.app)
            .header("Latchkey-User", "alice")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let last = sent_token(&s.up);

    // Deleting revokes at the provider: the token is inactive at introspection afterwards.
    let r = Reply::read(
        s.lk.http.delete(s.lk.url("/v1/connections/oidc?user=alice")).bearer_auth(&s.app).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"deleted": id, "revoked": true}));
    assert_eq!(oidc().introspect(&s.client, &last).await, json!({"active": false}));
    let r = call_as(&s, "alice").await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")));
    let deleted = hooks_of(&s.hooks, "connection.deleted", Duration::from_secs(5)).await;
    assert_eq!(deleted[0]["data"]["connection_id"], id.as_str());
}

/// `private_key_jwt` (an ES256 client key): the code exchange, each refresh and the
/// revocation carry a client assertion, which oidc-provider checks against the client's JWKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_with_private_key_jwt_refreshes_and_revokes() {
    let s = setup("private_key_jwt", json!({"refresh_skew_s": 3600})).await;
    let inspector = super::client_auth::introspector().await;
    let id = connect(&s, "carol").await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let r = call_as(&s, "carol").await;
        assert_eq!(r.status, 200, "{}", r.body);
        tokens.push(sent_token(&s.up));
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "the token was not refreshed on each call");
    let r = Reply::read(
        s.lk.http
            .get(s.lk.url("/v1/proxy/oidc/x"))
            .bearer_auth(&s.app)
            .header("Latchkey-User", "carol")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let last = sent_token(&s.up);
    let info = oidc().introspect(&inspector, &last).await;
    assert_eq!((&info["active"], &info["sub"]), (&json!(true), &json!("carol")), "{info}");
    assert_eq!(info["client_id"], s.client.client_id.as_str());

    let r = Reply::read(
        s.lk.http.delete(s.lk.url("/v1/connections/oidc?user=carol")).bearer_auth(&s.app).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.json(), json!({"deleted": id, "revoked": true}), "{}", r.body);
    assert_eq!(oidc().introspect(&inspector, &last).await, json!({"active": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_with_body_client_auth_and_a_per_connector_redirect() {
    let up = Recorder::start().await;
    let lk = Latchkey::start(
        bin(),
        "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\n",
    );
    let o = oidc();
    let client = o
        .register("client_secret_post", &["authorization_code", "refresh_token"], &[&lk.url("/oauth/gh/callback")])
        .await;
    lk.put_secret("cs", "live", client.client_secret.as_deref().unwrap()).await;
    let def = json!({"base_url": up.base_url, "auth": {
        "method": "oauth2_authorization_code", "authorize_url": o.authorize_url, "token_url": o.token_url,
        "client_id": client.client_id, "client_secret": {"secret": "cs"}, "client_auth": "body",
        "scope": "openid", "redirect": "per_connector", "profile_url": o.userinfo_url, "user_id_path": "sub"}});
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/gh").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = lk.app_key("live").await;
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connect/gh"))
            .bearer_auth(&app)
            .json(&json!({"user": "bo", "return_to": RETURN_TO}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let link = r.json()["url"].as_str().unwrap().to_owned();
    let mut browser = Browser::default();
    let provider = browser.get(&lk.http, &link).await;
    let q = query_of(&provider);
    assert_eq!(q.get("code_challenge_method").map(String::as_str), Some("S256"));
    assert_eq!(q["code_challenge"].len(), 43);
    assert_eq!(q["redirect_uri"], lk.url("/oauth/gh/callback"));
    assert!(q["state"].len() >= 43);
    let callback = o.login(&provider, "bo").await;
    let back = browser.get(&lk.http, &callback).await;
    assert_eq!(query_of(&back).get("status").map(String::as_str), Some("connected"), "{back}");
    let r = Reply::read(
        lk.http.get(lk.url("/v1/proxy/gh/x")).bearer_auth(&app).header("Latchkey-User", "bo").send().await.unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// `tls_client_auth` (RFC 8705) in the browser flow, at oidc-provider behind nginx verifying
/// client certificates: the code exchange, the profile, each refresh and the revocation go
/// over a connection presenting the client's certificate, and oidc-provider authenticates the
/// client by its subject. The same connector with another subject's certificate cannot even
/// exchange its code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_with_tls_client_auth_exchanges_refreshes_and_revokes_over_the_certificate() {
    use latchkey_testkit::peers::oidc_mtls::{CLIENT_DN, oidc_mtls};
    let p = oidc_mtls();
    let o = &p.oidc;
    let up = Recorder::start().await;
    let lk = Latchkey::start(
        bin(),
        "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\n",
    );
    let client = o
        .register_metadata(json!({
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": CLIENT_DN,
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "redirect_uris": [lk.url("/oauth/callback")],
        }))
        .await;
    let inspector = o.register("client_secret_post", &["client_credentials"], &[]).await;
    lk.put_secret("client_cert", "live", &p.nginx.client.cert_pem).await;
    lk.put_secret("client_key", "live", &p.nginx.client.key_pem).await;
    let def = json!({"base_url": up.base_url, "refresh_skew_s": 3600, "auth": {
        "method": "oauth2_authorization_code", "authorize_url": o.authorize_url, "token_url": o.token_url,
        "client_id": client.client_id, "client_auth": "tls_client_auth",
        "client_certificate": {"secret": "client_cert"}, "client_key": {"secret": "client_key"},
        "ca_certificate": p.nginx.server_ca_pem, "scope": ["openid", "email"], "profile_url": o.userinfo_url,
        "user_id_path": "sub", "revoke_url": o.revocation_url, "issuer": o.issuer},
        "calls": {"ping": {"path": "/ping"}}});
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/bank").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = lk.app_key("live").await;
    let connect = |user: &'static str| {
        let (lk, app) = (&lk, &app);
        async move {
            let r = Reply::read(
                lk.http
                    .post(lk.url("/v1/connect/bank"))
                    .bearer_auth(app)
                    .json(&json!({"user": user, "return_to": RETURN_TO}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!(r.status, 201, "{}", r.body);
            let mut browser = Browser::default();
            let provider = browser.get(&lk.http, r.json()["url"].as_str().unwrap()).await;
            assert!(provider.starts_with(&o.authorize_url), "{provider}");
            let callback = o.login_trusting(&p.nginx.server_ca_pem, &provider, user).await;
            assert!(callback.starts_with(&lk.url("/oauth/callback")), "{callback}");
            query_of(&browser.get(&lk.http, &callback).await)
        }
    };
    let call = |user: &'static str| {
        let (lk, app) = (&lk, &app);
        async move {
            Reply::read(
                lk.http
                    .post(lk.url("/v1/connectors/bank/calls/ping"))
                    .bearer_auth(app)
                    .json(&json!({"params": {}, "user": user}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };

    // The code exchange and the profile (`sub` is the connection's user id) over the certificate.
    let back = connect("dora").await;
    assert_eq!(back.get("status").map(String::as_str), Some("connected"), "{back:?}");
    let id = back["connection"].clone();
    // Every call refreshes (each token is inside the hour's refresh window), over the certificate.
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let r = call("dora").await;
        assert_eq!(r.status, 200, "{}", r.body);
        tokens.push(sent_token(&up));
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 3, "the token was not refreshed on each call");
    let last = tokens.pop().unwrap();
    let info = o.introspect(&inspector, &last).await;
    assert_eq!(
        (&info["active"], &info["sub"], &info["client_id"]),
        (&json!(true), &json!("dora"), &json!(client.client_id)),
        "{info}"
    );
    // Revocation, over the certificate too.
    let r =
        Reply::read(lk.http.delete(lk.url("/v1/connections/bank?user=dora")).bearer_auth(&app).send().await.unwrap())
            .await;
    assert_eq!(r.json(), json!({"deleted": id, "revoked": true}), "{}", r.body);
    assert_eq!(o.introspect(&inspector, &last).await, json!({"active": false}));

    // A certificate of another subject: oidc-provider refuses the code exchange (invalid_client),
    // and the user is sent back with the error rather than a connection.
    let other = p.nginx.client_ca.client_cert("latchkey-someone-else");
    lk.put_secret("client_cert", "live", &other.cert_pem).await;
    lk.put_secret("client_key", "live", &other.key_pem).await;
    let back = connect("eve").await;
    assert_eq!(back.get("status").map(String::as_str), Some("error"), "{back:?}");
    assert!(!back.contains_key("connection"), "{back:?}");
    assert_eq!(back.get("error").map(String::as_str), Some("token_exchange_failed"), "{back:?}");
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/events?limit=1").send().await.unwrap()).await;
    let event = &r.json()["events"][0];
    assert_eq!(
        (&event["kind"], &event["detail"]["error"], &event["detail"]["user"]),
        (&json!("connection.exchange_failed"), &json!("invalid_client"), &json!("eve")),
        "{event}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_foreign_expired_and_mixed_up_callbacks_are_refused_each_with_its_error() {
    let s = setup("basic", json!({})).await;
    // A callback in another browser session (no flow cookie): refused, and the state is not
    // spent by it (issue 12), so the browser that started the flow still finishes it.
    let link = connect_link(&s, "alice", RETURN_TO).await;
    let (callback, mut browser) = login(&s, &link, "alice").await;
    let back = Browser::default().get(&s.lk.http, &callback).await;
    assert_eq!(query_of(&back).get("error").map(String::as_str), Some("browser_mismatch"), "{back}");
    let back = browser.get(&s.lk.http, &callback).await;
    assert_eq!(query_of(&back).get("status").map(String::as_str), Some("connected"), "{back}");
    // The same callback, replayed in the right browser, after the state was spent.
    let back = browser.get(&s.lk.http, &callback).await;
    assert_eq!(query_of(&back).get("error").map(String::as_str), Some("state_used"), "{back}");
    // A used connect link.
    let back = Browser::default().get(&s.lk.http, &link).await;
    assert_eq!(query_of(&back).get("error").map(String::as_str), Some("session_used"), "{back}");
    // An unknown state: no redirect (an attacker could pick return_to), a JSON error.
    let r = Reply::read(s.lk.http.get(s.lk.url("/oauth/callback?state=forged&code=x")).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")));
    assert_eq!(r.json()["error"]["flow_error"], "state_invalid");

    // An expired state.
    let link = connect_link(&s, "alice", RETURN_TO).await;
    let (callback, mut browser) = login(&s, &link, "alice").await;
    let db = latchkey_store::SqliteStore::open(&s.lk.data_dir.join("latchkey.db")).await.unwrap();
    sqlx::query("UPDATE flows SET expires_at = 0").execute(db.pool()).await.unwrap();
    let back = browser.get(&s.lk.http, &callback).await;
    assert_eq!(query_of(&back).get("error").map(String::as_str), Some("state_expired"), "{back}");

    // return_to outside the allow-list: refused before any flow starts.
    for bad in [
        "https://evil.example/done",
        "https://app.example.com.evil.example/",
        "http://app.example.com/done",
        "https://app.example.com:444/x",
        "https://user@app.example.com/x",
    ] {
        let r = Reply::read(
            s.lk.http
                .post(s.lk.url("/v1/connect/oidc"))
                .bearer_auth(&s.app)
                .json(&json!({"user": "alice", "return_to": bad}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{bad}: {}", r.body);
        assert!(r.body.contains("return_to_allow"), "{}", r.body);
    }

    // A mismatched `iss` (RFC 9207): the connector expects another issuer.
    let s2 = setup("basic", json!({"auth": {"issuer": "https://other-issuer.example"}})).await;
    let link = connect_link(&s2, "alice", RETURN_TO).await;
    let (callback, mut browser) = login(&s2, &link, "alice").await;
    let back = browser.get(&s2.lk.http, &callback).await;
    assert_eq!(query_of(&back).get("error").map(String::as_str), Some("iss_mismatch"), "{back}");
    assert_eq!(call_as(&s2, "alice").await.status, 404, "a refused flow created a connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_can_neither_use_see_nor_delete_anothers_connection() {
    let s = setup("basic", json!({})).await;
    let id = connect(&s, "alice").await;
    let bob = [
        call_as(&s, "bob").await,
        Reply::read(
            s.lk.http
                .get(s.lk.url("/v1/proxy/oidc/x"))
                .bearer_auth(&s.app)
                .header("Latchkey-User", "bob")
                .send()
                .await
                .unwrap(),
        )
        .await,
        Reply::read(s.lk.http.get(s.lk.url("/v1/connections/oidc?user=bob")).bearer_auth(&s.app).send().await.unwrap())
            .await,
        Reply::read(
            s.lk.http.delete(s.lk.url("/v1/connections/oidc?user=bob")).bearer_auth(&s.app).send().await.unwrap(),
        )
        .await,
    ];
    for r in &bob {
        assert_eq!((r.status, r.error_code()), (404, Some("not_found")), "{}", r.body);
        assert!(!r.body.contains(&id), "another user's connection id leaked: {}", r.body);
    }
    let r = Reply::read(s.lk.http.get(s.lk.url("/v1/connections?user=bob")).bearer_auth(&s.app).send().await.unwrap())
        .await;
    assert_eq!(r.json(), json!({"connections": [], "has_more": false}));
    // Another environment does not see it either.
    let dev = s.lk.app_key("dev").await;
    let r = Reply::read(
        s.lk.http
            .post(s.lk.url("/v1/connectors/oidc/calls/ping"))
            .bearer_auth(&dev)
            .json(&json!({"user": "alice"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    // Without `user` the per-user connector refuses clearly.
    let r = Reply::read(s.lk.http.get(s.lk.url("/v1/proxy/oidc/x")).bearer_auth(&s.app).send().await.unwrap()).await;
    assert_eq!(r.error_code(), Some("invalid_params"));
    assert!(r.body.contains("Latchkey-User"), "{}", r.body);
    // Alice's connection still works; the admin sees it.
    assert_eq!(call_as(&s, "alice").await.status, 200);
    let r =
        Reply::read(s.lk.admin_req(Method::GET, "/v1/admin/connections?connector=oidc").send().await.unwrap()).await;
    assert_eq!(r.json()["connections"][0]["user"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_asks_for_reconnection_and_reconnecting_keeps_the_id() {
    let s = setup("basic", json!({"refresh_skew_s": 3600})).await;
    let id = connect(&s, "alice").await;
    assert_eq!(call_as(&s, "alice").await.status, 200);
    // The user revokes the grant at the provider: every token of it dies.
    let token = sent_token(&s.up);
    let revoke = s.client.authenticate(s.lk.http.post(&oidc().revocation_url), &[("token", token.as_str())]);
    assert_eq!(revoke.send().await.unwrap().status(), 200);

    let r = call_as(&s, "alice").await;
    assert_eq!((r.status, r.error_code()), (409, Some("reauthorization_required")), "{}", r.body);
    let e = &r.json()["error"];
    assert_eq!(e["connection"], id.as_str());
    assert_eq!(e["provider_error"], "invalid_grant");
    let reconnect = e["reconnect_url"].as_str().unwrap().to_owned();
    assert!(reconnect.starts_with(&s.lk.url("/oauth/oidc/start?session=")), "{reconnect}");
    let failed = hooks_of(&s.hooks, "connection.refresh_failed", Duration::from_secs(5)).await;
    assert_eq!(
        (failed[0]["data"]["connection_id"].as_str(), failed[0]["data"]["error"].as_str()),
        (Some(id.as_str()), Some("invalid_grant"))
    );
    let r = Reply::read(
        s.lk.http.get(s.lk.url("/v1/connections/oidc?user=alice")).bearer_auth(&s.app).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.json()["status"], "reauthorization_required", "{}", r.body);

    // Reconnecting through the link keeps the connection id and fires `connection.recovered`.
    let (callback, mut browser) = login(&s, &reconnect, "alice").await;
    let back = browser.get(&s.lk.http, &callback).await;
    let q = query_of(&back);
    assert_eq!((q.get("status").map(String::as_str), q.get("connection")), (Some("connected"), Some(&id)), "{back}");
    assert_eq!(call_as(&s, "alice").await.status, 200);
    let recovered = hooks_of(&s.hooks, "connection.recovered", Duration::from_secs(5)).await;
    assert_eq!(recovered[0]["data"]["connection_id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flow_in_a_real_browser() {
    let s = setup("basic", json!({})).await;
    let landing = format!("{}/landing", s.up.base_url);
    let link = connect_link(&s, "carol", &landing).await;
    let page = format!("data:text/html,<html><body><a href=\"{}\">Connect</a></body></html>", link.replace('&', "%26"));
    let input = json!({"start_url": page, "click": "text=Connect", "login": "carol", "expect_prefix": landing, "timeout_ms": 30000});
    let result = tokio::task::spawn_blocking(move || latchkey_testkit::peers::browser::run_flow(&input)).await.unwrap();
    let flow = result.unwrap_or_else(|e| panic!("browser flow failed: {e}"));
    let q = query_of(&flow.final_url);
    assert_eq!(q.get("status").map(String::as_str), Some("connected"), "{flow:?}");
    assert!(flow.steps.iter().any(|u| u.contains("/interaction/")), "the provider's pages were not shown: {flow:?}");
    assert_eq!(call_as(&s, "carol").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_token_response_the_token_in_the_query_and_a_dotted_profile() {
    let fake = FakeOAuth::start().await;
    fake.set_form_response(true);
    let lk = Latchkey::start(
        bin(),
        "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\n",
    );
    lk.put_secret("cs", "live", "fake-secret").await;
    let def = json!({"base_url": fake.base_url, "auth": {
        "method": "oauth2_authorization_code", "authorize_url": format!("{}/authorize", fake.base_url),
        "token_url": fake.token_url, "client_id": "app", "client_secret": {"secret": "cs"},
        "token_response": "form", "token_in": "query", "scope": ["a", "b"], "scope_separator": ",",
        "offline_access": true, "extra_authorize_params": {"audience": "api"},
        "profile_url": format!("{}/profile", fake.base_url), "user_id_path": "data.user.id", "user_email_path": "data.user.mail"},
        "calls": {"echo": {"path": "/api/echo"}}});
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/fake").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = lk.app_key("live").await;
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connect/fake"))
            .bearer_auth(&app)
            .json(&json!({"user": "ada", "return_to": RETURN_TO}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let link = r.json()["url"].as_str().unwrap().to_owned();
    let mut browser = Browser::default();
    let authorize = browser.get(&lk.http, &link).await;
    let q = query_of(&authorize);
    assert_eq!(q.get("scope").map(String::as_str), Some("a,b"));
    assert_eq!(
        (q.get("access_type").map(String::as_str), q.get("prompt").map(String::as_str)),
        (Some("offline"), Some("consent"))
    );
    assert_eq!(q.get("audience").map(String::as_str), Some("api"));
    let callback = browser.get(&lk.http, &authorize).await;
    let back = browser.get(&lk.http, &callback).await;
    assert_eq!(query_of(&back).get("status").map(String::as_str), Some("connected"), "{back}");
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connectors/fake/calls/echo"))
            .bearer_auth(&app)
            .json(&json!({"user": "ada"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["token"].as_str().unwrap().starts_with("at-"), "{}", r.body);
    let r =
        Reply::read(lk.http.get(lk.url("/v1/connections/fake?user=ada")).bearer_auth(&app).send().await.unwrap()).await;
    let v = r.json();
    assert_eq!((v["provider_user_id"].as_str(), v["email"].as_str()), (Some("4242"), Some("ada@example.com")), "{v}");
    let code_call = fake.calls().into_iter().find(|c| c.grant() == "authorization_code").unwrap();
    assert!(code_call.form.contains_key("code_verifier"), "PKCE verifier missing");
    assert_eq!(code_call.header("authorization"), Some("Basic YXBwOmZha2Utc2VjcmV0"));
}

/// A connection through the in-process provider; returns (Latchkey, app key).
async fn fake_connection(fake: &FakeOAuth, extra: Value) -> (Latchkey, String) {
    fake_connection_with(fake, extra, "").await
}

/// [`fake_connection`] with more `[server]` settings.
async fn fake_connection_with(fake: &FakeOAuth, extra: Value, server: &str) -> (Latchkey, String) {
    let lk = Latchkey::start(
        bin(),
        &format!(
            "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\n{server}"
        ),
    );
    lk.put_secret("cs", "live", "fake-secret").await;
    let mut def = json!({"base_url": fake.base_url, "auth": {
        "method": "oauth2_authorization_code", "authorize_url": format!("{}/authorize", fake.base_url),
        "token_url": fake.token_url, "client_id": "app", "client_secret": {"secret": "cs"},
        "revoke_url": format!("{}/revoke", fake.base_url)},
        "calls": {"echo": {"path": "/api/echo"}}});
    if let (Some(d), Some(e)) = (def.as_object_mut(), extra.as_object()) {
        d.extend(e.clone());
    }
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/fake").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = lk.app_key("live").await;
    connect_fake(&lk, &app, "ada").await;
    (lk, app)
}

/// Connects `user` to connector `fake` through the in-process provider, as their browser would.
async fn connect_fake(lk: &Latchkey, app: &str, user: &str) {
    connect_through(lk, app, "fake", user).await;
}

/// Connects `user` to `connector`, whose provider approves at once (the in-process one), as
/// their browser would.
pub(crate) async fn connect_through(lk: &Latchkey, app: &str, connector: &str, user: &str) {
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
    let link = r.json()["url"].as_str().unwrap().to_owned();
    let mut browser = Browser::default();
    let authorize = browser.get(&lk.http, &link).await;
    let callback = browser.get(&lk.http, &authorize).await;
    let back = browser.get(&lk.http, &callback).await;
    assert_eq!(query_of(&back).get("status").map(String::as_str), Some("connected"), "{back}");
}

/// SECURITY S12: token caches are keyed by connection and credential. Four users connect to
/// one connector; the provider gives each grant a lineage of its own (`at-L<n>-…`). 300
/// operations in a fixed pseudo-random order, calls often four at once: calls as a user,
/// every access token expiring at the provider (so calls refresh reactively), a user's
/// connection deleted, a user connecting again (a new lineage). Every call that reaches the
/// provider carries a token of the lineage its user holds now; a user without a connection
/// gets 404 and sends nothing; no refresh token is presented twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_no_call_is_ever_served_another_connections_or_a_deleted_connections_token() {
    let fake = FakeOAuth::start().await;
    fake.set_lineages();
    let (lk, app) = fake_connection(&fake, json!({})).await;
    let lk = std::sync::Arc::new(lk);
    let users = ["ada", "bob", "cy", "dee"];
    let mut lineage: HashMap<&str, Option<u64>> = HashMap::from([("ada", Some(1))]);
    for (n, user) in users.iter().enumerate().skip(1) {
        connect_fake(&lk, &app, user).await;
        lineage.insert(user, Some(n as u64 + 1));
    }
    let mut next_lineage = users.len() as u64 + 1;
    let mut state: u64 = 0x1234_5678_9abc_def1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut served, mut refused) = (0, 0);
    for step in 0..300 {
        let user = users[(next() % users.len() as u64) as usize];
        match next() % 10 {
            0..=5 => {
                let burst: Vec<&str> = (0..4).map(|_| users[(next() % users.len() as u64) as usize]).collect();
                let calls: Vec<_> = burst
                    .iter()
                    .map(|u| {
                        let (lk, app, u) = (lk.clone(), app.clone(), u.to_string());
                        tokio::spawn(async move {
                            Reply::read(
                                lk.http
                                    .post(lk.url("/v1/connectors/fake/calls/echo"))
                                    .bearer_auth(&app)
                                    .json(&json!({"user": u}))
                                    .send()
                                    .await
                                    .unwrap(),
                            )
                            .await
                        })
                    })
                    .collect();
                for (u, call) in burst.iter().zip(calls) {
                    let r = call.await.unwrap();
                    match lineage[u] {
                        Some(n) => {
                            assert_eq!(r.status, 200, "step {step}, {u}: {}", r.body);
                            let token = r.json()["token"].as_str().unwrap_or_default().to_owned();
                            assert!(
                                token.starts_with(&format!("at-L{n}-")),
                                "step {step}: {u} (lineage {n}) was served {token}"
                            );
                            served += 1;
                        }
                        None => {
                            assert_eq!(r.status, 404, "step {step}, {u} has no connection: {}", r.body);
                            refused += 1;
                        }
                    }
                }
            }
            6 => fake.expire_access_tokens(),
            7 | 8 if lineage[user].is_some() => {
                let r = Reply::read(
                    lk.http
                        .delete(lk.url(&format!("/v1/connections/fake?user={user}")))
                        .bearer_auth(&app)
                        .send()
                        .await
                        .unwrap(),
                )
                .await;
                assert!(r.status < 300, "step {step}, deleting {user}'s connection: {}", r.body);
                lineage.insert(user, None);
            }
            _ => {
                connect_fake(&lk, &app, user).await;
                lineage.insert(user, Some(next_lineage));
                next_lineage += 1;
            }
        }
    }
    assert!(served > 300 && refused > 20, "served {served}, refused {refused}: the operations are not varied");
    assert_eq!(fake.reused_refresh_tokens(), 0, "a refresh token was presented twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_refreshed_in_the_background() {
    let fake = FakeOAuth::start().await;
    let (lk, _app) = fake_connection(&fake, json!({"keepalive_s": 2})).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while !fake.calls().iter().any(|c| c.grant() == "refresh_token") {
        assert!(std::time::Instant::now() < deadline, "no keep-alive refresh within 15 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/events?kind=token.refreshed").send().await.unwrap()).await;
    assert_eq!(r.json()["events"][0]["detail"]["mode"], "keepalive", "{}", r.body);
    assert_eq!(fake.reused_refresh_tokens(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_code_verifier_or_token_reaches_responses_logs_or_the_disk() {
    use latchkey_testkit::canary::{find, read_dir_bytes};
    let fake = FakeOAuth::start().await;
    let (lk, app) = fake_connection(&fake, json!({"refresh_skew_s": 3600})).await;
    let mut wrote = String::new();
    for _ in 0..3 {
        let r = Reply::read(
            lk.http
                .post(lk.url("/v1/connectors/fake/calls/echo"))
                .bearer_auth(&app)
                .json(&json!({"user": "ada"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    for path in ["/v1/connections?user=ada", "/v1/connections/fake?user=ada"] {
        wrote
            .push_str(&Reply::read(lk.http.get(lk.url(path)).bearer_auth(&app).send().await.unwrap()).await.all_text());
    }
    for path in ["/v1/admin/connections", "/v1/admin/events?limit=1000", "/v1/admin/tokens"] {
        wrote.push_str(&Reply::read(lk.admin_req(Method::GET, path).send().await.unwrap()).await.all_text());
    }
    wrote.push_str(
        &Reply::read(lk.http.delete(lk.url("/v1/connections/fake?user=ada")).bearer_auth(&app).send().await.unwrap())
            .await
            .all_text(),
    );
    let code_call = fake.calls().into_iter().find(|c| c.grant() == "authorization_code").unwrap();
    let mut canaries = vec![
        code_call.form["code"].clone(),
        code_call.form["code_verifier"].clone(),
        "fake-secret".to_owned(),
        app.clone(),
    ];
    canaries.extend(fake.issued_tokens());
    assert!(canaries.len() >= 10, "{canaries:?}");
    let found = find(wrote.as_bytes(), &canaries);
    assert!(found.is_empty(), "in Latchkey's responses: {found:?}\n{wrote}");
    let admin_line = format!("Admin key (shown only this once; keep it safe): {}", lk.admin());
    let log = lk.output().replace(&admin_line, "");
    let found = find(log.as_bytes(), &canaries);
    assert!(found.is_empty(), "in the server's output: {found:?}");
    let found = find(&read_dir_bytes(&lk.data_dir), &canaries);
    assert!(found.is_empty(), "in plaintext on disk: {found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_url_parameters_are_filled_and_checked() {
    let fake = FakeOAuth::start().await;
    let lk = Latchkey::start(
        bin(),
        "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\n",
    );
    let def = json!({"base_url": fake.base_url, "auth": {
        "method": "oauth2_authorization_code", "authorize_url": format!("{}/[tenant]/authorize", fake.base_url),
        "token_url": fake.token_url, "client_id": "public-app"}});
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/t").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = lk.app_key("live").await;
    let start = |params: Value| {
        lk.http
            .post(lk.url("/v1/connect/t"))
            .bearer_auth(&app)
            .json(&json!({"user": "u", "return_to": RETURN_TO, "params": params}))
    };
    for bad in
        [json!({}), json!({"tenant": "../evil"}), json!({"tenant": "a/b"}), json!({"tenant": "x.evil.example:1@"})]
    {
        let r = Reply::read(start(bad.clone()).send().await.unwrap()).await;
        assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{bad}: {}", r.body);
    }
    let r = Reply::read(start(json!({"tenant": "acme"})).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut browser = Browser::default();
    let authorize = browser.get(&lk.http, r.json()["url"].as_str().unwrap()).await;
    assert!(authorize.starts_with(&format!("{}/acme/authorize?", fake.base_url)), "{authorize}");
    // A public client (no secret) always uses PKCE and sends its id in the body.
    let callback = browser.get(&lk.http, &authorize).await;
    let back = browser.get(&lk.http, &callback).await;
    assert_eq!(query_of(&back).get("status").map(String::as_str), Some("connected"), "{back}");
    let code_call = fake.calls().into_iter().find(|c| c.grant() == "authorization_code").unwrap();
    assert_eq!(code_call.form.get("client_id").map(String::as_str), Some("public-app"));
    assert!(code_call.header("authorization").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_webhook_receiver_gets_retries_and_the_failure_is_recorded() {
    let fake = FakeOAuth::start().await;
    let hooks = Recorder::start().await;
    let lk = Latchkey::start(
        bin(),
        &format!(
            "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\nwebhook_url = \"{}/status/503\"\n",
            hooks.base_url
        ),
    );
    let def = json!({"base_url": fake.base_url, "auth": {
        "method": "oauth2_authorization_code", "authorize_url": format!("{}/authorize", fake.base_url),
        "token_url": fake.token_url, "client_id": "public-app"}});
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/fake").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = lk.app_key("live").await;
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connect/fake"))
            .bearer_auth(&app)
            .json(&json!({"user": "u", "return_to": RETURN_TO}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let mut browser = Browser::default();
    let authorize = browser.get(&lk.http, r.json()["url"].as_str().unwrap()).await;
    let callback = browser.get(&lk.http, &authorize).await;
    let back = browser.get(&lk.http, &callback).await;
    assert!(back.contains("status=connected"), "{back}");
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        let r =
            Reply::read(lk.admin_req(Method::GET, "/v1/admin/events?kind=webhook.failed").send().await.unwrap()).await;
        if let Some(e) = r.json()["events"].as_array().and_then(|a| a.first().cloned()) {
            assert_eq!(e["detail"]["type"], "connection.created");
            assert_eq!(e["detail"]["attempts"], 5);
            assert_eq!(e["detail"]["error"], "status 503");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no webhook.failed event");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let attempts = hooks.requests().iter().filter(|r| r.header("latchkey-event") == Some("connection.created")).count();
    assert_eq!(attempts, 5);
    // Every attempt carries the same delivery id, so the receiver can deduplicate.
    let ids: std::collections::HashSet<_> =
        hooks.requests().iter().filter_map(|r| r.header("latchkey-delivery").map(str::to_owned)).collect();
    assert_eq!(ids.len(), 1);
}

/// SECURITY S8: deleting a connection is a credential change: audited first, with the user
/// id as its HMAC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_connection_is_audited_with_the_user_hashed() {
    let fake = FakeOAuth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let server = format!("audit_log = \"{}\"\n", log.display());
    let (lk, app) = fake_connection_with(&fake, json!({}), &server).await;
    let r = lk.http.delete(lk.url("/v1/connections/fake?user=ada")).bearer_auth(&app).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = std::fs::read_to_string(&log).unwrap();
    let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let kinds: Vec<&str> = records.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["secret.put", "connector.put", "key.create", "connection.delete"], "{text}");
    let deleted = &records[3];
    assert_eq!(deleted["connector"], "fake");
    let r = Reply::read(
        lk.admin_req(Method::POST, "/v1/admin/audit-hash").json(&json!({"value": "ada"})).send().await.unwrap(),
    )
    .await;
    assert_eq!(deleted["user"], r.json()["hash"], "{deleted}");
    // As a JSON string value (a hex HMAC may well contain the letters `ada`).
    assert!(!text.contains("\"ada\""), "{text}");
}
