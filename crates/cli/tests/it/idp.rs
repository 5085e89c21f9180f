//! Latchkey as identity provider (SPEC §9): user tokens, refresh rotation, JWKS, RFC 7662
//! introspection and RFC 7009 revocation, key rotation, and user tokens as callers.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_testkit::fake_oauth::FakeOAuth;
use reqwest::Method;
use serde_json::{Value, json};

use super::*;

async fn user_tokens(lk: &Latchkey, app: &str, user: &str) -> Value {
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/users"))
            .bearer_auth(app)
            .json(&json!({"id": user, "email": format!("{user}@example.com")}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r =
        Reply::read(lk.http.post(lk.url(&format!("/v1/users/{user}/tokens"))).bearer_auth(app).send().await.unwrap())
            .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()
}

async fn refresh(lk: &Latchkey, rt: &str) -> Reply {
    Reply::read(
        lk.http
            .post(lk.url("/v1/token"))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn introspect(lk: &Latchkey, app: &str, token: &str) -> Value {
    let r = Reply::read(
        lk.http.post(lk.url("/v1/token/introspect")).bearer_auth(app).form(&[("token", token)]).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn claims_of(jwt: &str) -> (Value, Value) {
    let mut parts = jwt.split('.');
    let h = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    let c = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    (serde_json::from_slice(&h).unwrap(), serde_json::from_slice(&c).unwrap())
}

#[tokio::test]
async fn user_tokens_have_the_standard_claims_and_a_public_only_jwks() {
    let lk = Latchkey::start(bin(), "");
    let app = lk.app_key("live").await;
    let t = user_tokens(&lk, &app, "alice").await;
    assert_eq!((t["token_type"].as_str(), t["expires_in"].as_i64()), (Some("Bearer"), Some(900)));
    assert!(t["refresh_token"].as_str().unwrap().starts_with("lkr_"));
    let (h, c) = claims_of(t["access_token"].as_str().unwrap());
    assert_eq!((h["alg"].as_str(), h["typ"].as_str()), (Some("RS256"), Some("at+jwt")));
    assert_eq!(c["iss"], lk.base_url.as_str());
    assert_eq!(c["aud"], lk.base_url.as_str());
    assert_eq!(c["sub"], "alice");
    for claim in ["exp", "iat", "nbf", "jti"] {
        assert!(c.get(claim).is_some(), "missing {claim}: {c}");
    }
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);

    let jwks = Reply::read(lk.http.get(lk.url("/.well-known/jwks.json")).send().await.unwrap()).await;
    assert!(jwks.headers.get("cache-control").unwrap().to_str().unwrap().contains("max-age"));
    let keys = jwks.json()["keys"].as_array().unwrap().clone();
    assert!(keys.iter().any(|k| k["kid"] == h["kid"]), "the signing key is not published");
    for k in &keys {
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(k.get(private).is_none(), "private member `{private}` in the JWKS: {k}");
        }
    }
    let conf = Reply::read(lk.http.get(lk.url("/.well-known/openid-configuration")).send().await.unwrap()).await.json();
    assert_eq!(conf["issuer"], lk.base_url.as_str());
    assert_eq!(conf["jwks_uri"], lk.url("/.well-known/jwks.json"));
    assert_eq!(conf["introspection_endpoint"], lk.url("/v1/token/introspect"));
    assert_eq!(conf["revocation_endpoint"], lk.url("/v1/token/revoke"));
    let r = Reply::read(lk.http.post(lk.url("/v1/users/nobody/tokens")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.error_code(), Some("not_found"));
}

#[tokio::test]
async fn refresh_rotates_reuse_revokes_the_family_and_a_quick_retry_gets_the_same_pair() {
    let lk = Latchkey::start(bin(), "");
    let app = lk.app_key("live").await;
    let t0 = user_tokens(&lk, &app, "alice").await;
    let rt0 = t0["refresh_token"].as_str().unwrap().to_owned();
    let r1 = refresh(&lk, &rt0).await;
    assert_eq!(r1.status, 200, "{}", r1.body);
    let t1 = r1.json();
    let rt1 = t1["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(rt1, rt0);
    // A client that retried at once (it lost the answer) gets the same new pair.
    let again = refresh(&lk, &rt0).await;
    assert_eq!(again.json(), t1, "the retry window did not return the same pair");
    // Rotation goes on.
    let t2 = refresh(&lk, &rt1).await.json();
    let rt2 = t2["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&lk, &app, &rt2).await["active"], true);
    // The token two generations back is reuse: the whole family dies, new tokens included.
    let r = refresh(&lk, &rt0).await;
    assert_eq!((r.status, r.json()["error"]["oauth_error"].as_str()), (400, Some("invalid_grant")), "{}", r.body);
    assert_eq!(introspect(&lk, &app, &rt2).await, json!({"active": false}));
    assert_eq!(introspect(&lk, &app, t2["access_token"].as_str().unwrap()).await, json!({"active": false}));
    assert_eq!(refresh(&lk, &rt2).await.status, 400);
    // Another family of the same user is untouched.
    let other = user_tokens(&lk, &app, "alice").await;
    assert_eq!(introspect(&lk, &app, other["access_token"].as_str().unwrap()).await["active"], true);
}

/// SECURITY S30 under concurrency: presenters of the same refresh token at the same moment all
/// get the one successor pair (or a refusal that leaves it working); the family survives.
#[tokio::test]
async fn concurrent_refreshes_with_one_token_share_its_successor_and_keep_the_family() {
    let lk = std::sync::Arc::new(Latchkey::start(bin(), ""));
    let app = lk.app_key("live").await;
    for trial in 0..10 {
        let t0 = user_tokens(&lk, &app, &format!("u{trial}")).await;
        let rt0 = t0["refresh_token"].as_str().unwrap().to_owned();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (lk, rt0) = (lk.clone(), rt0.clone());
                tokio::spawn(async move { refresh(&lk, &rt0).await })
            })
            .collect();
        let mut pairs = Vec::new();
        for t in tasks {
            let r = t.await.unwrap();
            match r.status {
                200 => pairs.push(r.json()),
                _ => assert_eq!(r.json()["error"]["oauth_error"], "invalid_grant", "trial {trial}: {}", r.body),
            }
        }
        assert!(!pairs.is_empty(), "trial {trial}: no presenter got a pair");
        assert!(pairs.iter().all(|p| *p == pairs[0]), "trial {trial}: different pairs for one token: {pairs:?}");
        let rt1 = pairs[0]["refresh_token"].as_str().unwrap();
        assert_eq!(introspect(&lk, &app, rt1).await["active"], true, "trial {trial}: the successor was revoked");
        let next = refresh(&lk, rt1).await;
        assert_eq!(next.status, 200, "trial {trial}: the winner's successor does not refresh: {}", next.body);
    }
}

/// Issue 12 item 15: a signed-in user's page calls an API that the app's own credential signs,
/// the credential never reaching the browser: a user token runs `access = "user"` calls of a
/// connector with app-level credentials, and still no `access = "app"` call.
#[tokio::test]
async fn a_user_token_runs_user_calls_signed_with_the_apps_own_credential() {
    let up = latchkey_testkit::recorder::Recorder::start().await;
    let lk = with_connector(
        &up.base_url,
        r#"{ method = "api_key_header", name = "X-Api-Key", key = { secret = "k" } }"#,
        "[connectors.up.calls.search]
path = \"/search\"\naccess = \"user\"\nquery = { q = \"<q>\" }\n\
         [connectors.up.calls.search.params]\nq = {}\n\
         [connectors.up.calls.billing]\npath = \"/billing\"\n",
    );
    lk.put_secret("k", "live", "app-api-key").await;
    let app = lk.app_key("live").await;
    let alice = user_tokens(&lk, &app, "alice").await["access_token"].as_str().unwrap().to_owned();
    let call = |call: &'static str, body: Value| {
        let (lk, alice) = (&lk, alice.clone());
        async move {
            let url = lk.url(&format!("/v1/connectors/up/calls/{call}"));
            Reply::read(lk.http.post(url).bearer_auth(alice).json(&body).send().await.unwrap()).await
        }
    };
    let r = call("search", json!({"params": {"q": "shoes"}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = up.last();
    assert_eq!((sent.uri.as_str(), sent.header("x-api-key")), ("/search?q=shoes", Some("app-api-key")));
    // Naming itself is allowed; naming another user is not.
    assert_eq!(call("search", json!({"params": {"q": "a"}, "user": "alice"})).await.status, 200);
    let r = call("search", json!({"params": {"q": "a"}, "user": "bob"})).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")), "{}", r.body);
    // The app's own calls stay the app's.
    let r = call("billing", json!({"params": {}})).await;
    assert_eq!((r.status, r.error_code()), (403, Some("forbidden")), "{}", r.body);
    // An app key that names a user on an app-level connector is still told it sent one.
    let r = lk.call(&app, "up", "search", json!({"q": "a"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connectors/up/calls/search"))
            .bearer_auth(&app)
            .json(&json!({"params": {"q": "a"}, "user": "alice"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.error_code(), Some("invalid_params"), "{}", r.body);
    assert_eq!(up.count(), 3);
}

#[tokio::test]
async fn introspection_and_revocation_follow_the_rfcs() {
    let lk = Latchkey::start(bin(), "");
    let live = lk.app_key("live").await;
    let dev = lk.app_key("dev").await;
    let t = user_tokens(&lk, &live, "alice").await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    let rt = t["refresh_token"].as_str().unwrap().to_owned();
    let v = introspect(&lk, &live, &at).await;
    assert_eq!(
        (v["active"].as_bool(), v["sub"].as_str(), v["token_type"].as_str()),
        (Some(true), Some("alice"), Some("access_token"))
    );
    assert_eq!(introspect(&lk, &live, &rt).await["token_type"], "refresh_token");
    // Foreign (another environment), garbage, tampered: exactly {"active": false}.
    assert_eq!(introspect(&lk, &dev, &at).await, json!({"active": false}));
    assert_eq!(introspect(&lk, &live, "garbage").await, json!({"active": false}));
    let mut tampered: Vec<String> = at.split('.').map(str::to_owned).collect();
    let (_, mut c) = claims_of(&at);
    c["sub"] = json!("mallory");
    tampered[1] = URL_SAFE_NO_PAD.encode(c.to_string());
    assert_eq!(introspect(&lk, &live, &tampered.join(".")).await, json!({"active": false}));
    // Introspection needs a caller.
    let r =
        Reply::read(lk.http.post(lk.url("/v1/token/introspect")).form(&[("token", at.as_str())]).send().await.unwrap())
            .await;
    assert_eq!(r.status, 401);
    // Revocation: unknown tokens get 200; revoking the refresh token kills the access token.
    for token in ["unknown", "lkr_unknown"] {
        let r =
            lk.http.post(lk.url("/v1/token/revoke")).bearer_auth(&live).form(&[("token", token)]).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = lk
        .http
        .post(lk.url("/v1/token/revoke"))
        .bearer_auth(&dev)
        .form(&[("token", rt.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(introspect(&lk, &live, &rt).await["active"], true, "another environment's key revoked the token");
    let r = lk
        .http
        .post(lk.url("/v1/token/revoke"))
        .bearer_auth(&live)
        .form(&[("token", rt.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(introspect(&lk, &live, &rt).await, json!({"active": false}));
    assert_eq!(introspect(&lk, &live, &at).await, json!({"active": false}));
}

#[tokio::test]
async fn key_rotation_publishes_before_signing_and_keeps_old_keys() {
    let lk = Latchkey::start(bin(), "");
    let app = lk.app_key("live").await;
    let before = user_tokens(&lk, &app, "alice").await;
    let (h0, _) = claims_of(before["access_token"].as_str().unwrap());
    // Published, but not signing yet.
    let out = lk.cli(&["keys", "rotate", "--algorithm", "ES256"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let kid_es = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(3).unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let jwks = Reply::read(lk.http.get(lk.url("/.well-known/jwks.json")).send().await.unwrap()).await.json();
        if jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == kid_es.as_str()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new key was never published");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mid = user_tokens(&lk, &app, "alice").await;
    assert_eq!(
        claims_of(mid["access_token"].as_str().unwrap()).0["kid"],
        h0["kid"],
        "a key signed before its publication delay"
    );
    // Rotating with --now signs at once; old keys stay published and old tokens verify.
    let out = lk.cli(&["keys", "rotate", "--algorithm", "EdDSA", "--now"], None);
    assert!(out.status.success());
    let kid_ed = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(3).unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let t = user_tokens(&lk, &app, "alice").await;
        let (h, _) = claims_of(t["access_token"].as_str().unwrap());
        if h["kid"] == kid_ed.as_str() {
            assert_eq!(h["alg"], "EdDSA");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the new key never signed");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let jwks = Reply::read(lk.http.get(lk.url("/.well-known/jwks.json")).send().await.unwrap()).await.json();
    let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert!(
        kids.contains(&h0["kid"].as_str().unwrap())
            && kids.contains(&kid_es.as_str())
            && kids.contains(&kid_ed.as_str()),
        "{kids:?}"
    );
    assert_eq!(introspect(&lk, &app, before["access_token"].as_str().unwrap()).await["active"], true);
}

/// A Latchkey with a per-user connector `fake` (calls: `mine` for users, `admin_only` for the
/// app, `with_private` with a private parameter), and users alice and bob connected.
async fn user_setup(fake: &FakeOAuth) -> (Latchkey, String) {
    let lk = Latchkey::start(
        bin(),
        "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\n",
    );
    let def = json!({"base_url": fake.base_url, "auth": {
        "method": "oauth2_authorization_code", "authorize_url": format!("{}/authorize", fake.base_url),
        "token_url": fake.token_url, "client_id": "public-app"},
        "calls": {
            "mine": {"path": "/api/echo", "access": "user", "query": {"q": "<q>"}, "params": {"q": {}, "tenant": {"private": true, "value": "acme"}}},
            "admin_only": {"path": "/api/echo"}}});
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/fake").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = lk.app_key("live").await;
    for user in ["alice", "bob"] {
        let r = Reply::read(
            lk.http
                .post(lk.url("/v1/connect/fake"))
                .bearer_auth(&app)
                .json(&json!({"user": user, "return_to": "https://app.example.com/x"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let mut at = r.json()["url"].as_str().unwrap().to_owned();
        let mut cookies = String::new();
        for _ in 0..3 {
            let resp = lk.http.get(&at).header("cookie", cookies.clone()).send().await.unwrap();
            if let Some(c) = resp.headers().get("set-cookie") {
                cookies = c.to_str().unwrap().split(';').next().unwrap().to_owned();
            }
            at = resp.headers()["location"].to_str().unwrap().to_owned();
        }
        assert!(at.contains("status=connected"), "{at}");
    }
    (lk, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_token_reaches_only_its_own_user_calls_and_connections() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = user_setup(&fake).await;
    let alice = user_tokens(&lk, &app, "alice").await["access_token"].as_str().unwrap().to_owned();
    let call = |token: String, call: &'static str, body: Value| {
        let lk = &lk;
        async move {
            Reply::read(
                lk.http
                    .post(lk.url(&format!("/v1/connectors/fake/calls/{call}")))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let r = call(alice.clone(), "mine", json!({"params": {"q": "1"}})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["token"].as_str().unwrap().starts_with("at-"));
    // Not an app call, not another user's connection, not a private parameter.
    let r = call(alice.clone(), "admin_only", json!({"params": {}})).await;
    assert_eq!((r.status, r.error_code()), (403, Some("forbidden")), "{}", r.body);
    let r = call(alice.clone(), "mine", json!({"params": {}, "user": "bob"})).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")), "{}", r.body);
    let r = call(alice.clone(), "mine", json!({"params": {"tenant": "evil"}})).await;
    assert_eq!(r.error_code(), Some("invalid_params"), "{}", r.body);
    // Its own connections only.
    let r = Reply::read(lk.http.get(lk.url("/v1/connections")).bearer_auth(&alice).send().await.unwrap()).await;
    let list = r.json()["connections"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "{}", r.body);
    assert_eq!(list[0]["user"], "alice");
    let r =
        Reply::read(lk.http.get(lk.url("/v1/connections?user=bob")).bearer_auth(&alice).send().await.unwrap()).await;
    assert_eq!(r.status, 404);
    let r =
        Reply::read(lk.http.delete(lk.url("/v1/connections/fake?user=bob")).bearer_auth(&alice).send().await.unwrap())
            .await;
    assert_eq!(r.status, 404);
    // Not the proxy, not the admin API, not minting tokens.
    for (method, path) in
        [(Method::GET, "/v1/proxy/fake/x"), (Method::GET, "/v1/admin/keys"), (Method::POST, "/v1/users/bob/tokens")]
    {
        let r = Reply::read(lk.http.request(method, lk.url(path)).bearer_auth(&alice).send().await.unwrap()).await;
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    // Another environment's user does not see live connections.
    let dev = lk.app_key("dev").await;
    let dev_alice = user_tokens(&lk, &dev, "alice").await["access_token"].as_str().unwrap().to_owned();
    let r = call(dev_alice, "mine", json!({"params": {}})).await;
    assert_eq!(r.status, 404, "{}", r.body);
    // Deleting its own connection works.
    let r = Reply::read(lk.http.delete(lk.url("/v1/connections/fake")).bearer_auth(&alice).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r =
        Reply::read(lk.http.get(lk.url("/v1/connections/fake?user=bob")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "bob's connection went too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_tampered_unsigned_and_foreign_tokens_are_unauthenticated() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = user_setup(&fake).await;
    let good = user_tokens(&lk, &app, "alice").await["access_token"].as_str().unwrap().to_owned();
    let (h, c) = claims_of(&good);
    let parts: Vec<&str> = good.split('.').collect();
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let mut tampered_claims = c.clone();
    tampered_claims["sub"] = json!("bob");
    let mut none_header = h.clone();
    none_header["alg"] = json!("none");
    let mut hs_header = h.clone();
    hs_header["alg"] = json!("HS256");
    let other = Latchkey::start(bin(), "");
    let other_app = other.app_key("live").await;
    let foreign = user_tokens(&other, &other_app, "alice").await["access_token"].as_str().unwrap().to_owned();
    let mut expired_claims = c.clone();
    expired_claims["exp"] = json!(1);
    let bad = [
        format!("{}.{}.{}", parts[0], enc(&tampered_claims), parts[2]),
        format!("{}.{}.", enc(&none_header), parts[1]),
        format!("{}.{}.{}", enc(&hs_header), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], enc(&expired_claims), parts[2]),
        foreign,
        "a.b.c".to_owned(),
    ];
    for token in bad {
        let r = Reply::read(
            lk.http
                .post(lk.url("/v1/connectors/fake/calls/mine"))
                .bearer_auth(&token)
                .json(&json!({"params": {}}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((r.status, r.error_code()), (401, Some("unauthenticated")), "{token}: {}", r.body);
    }
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connectors/fake/calls/mine"))
            .bearer_auth(&good)
            .json(&json!({"params": {}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_deletes_its_connections_and_revokes_its_tokens() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = user_setup(&fake).await;
    let t = user_tokens(&lk, &app, "alice").await;
    let r = Reply::read(lk.http.delete(lk.url("/v1/users/alice")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(introspect(&lk, &app, t["access_token"].as_str().unwrap()).await, json!({"active": false}));
    assert_eq!(refresh(&lk, t["refresh_token"].as_str().unwrap()).await.status, 400);
    let r =
        Reply::read(lk.http.get(lk.url("/v1/connections?user=alice")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.json(), json!({"connections": [], "has_more": false}));
    let r = Reply::read(lk.http.get(lk.url("/v1/connections?user=bob")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.json()["connections"].as_array().unwrap().len(), 1);
}

fn verify_both(
    jwks: String,
    token: String,
    issuer: String,
    audience: String,
    alg: &'static str,
) -> (latchkey_testkit::peers::verifiers::Verified, latchkey_testkit::peers::verifiers::Verified) {
    use latchkey_testkit::peers::verifiers::{Library, Request, verify};
    let req = Request {
        jwks_url: &jwks,
        token: &token,
        issuer: &issuer,
        audience: &audience,
        algorithms: &[alg],
        typ: Some("at+jwt"),
    };
    (verify(Library::PyJwt, &req), verify(Library::Jose, &req))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_libraries_verify_user_tokens_from_the_jwks_alone() {
    for alg in ["RS256", "ES256", "EdDSA"] {
        let lk = Latchkey::start(
            bin(),
            &format!("[server]\ntoken_algorithm = \"{alg}\"\ntoken_audience = \"https://api.example.com\"\n"),
        );
        let app = lk.app_key("live").await;
        let t = user_tokens(&lk, &app, "alice").await;
        let args = (
            lk.url("/.well-known/jwks.json"),
            t["access_token"].as_str().unwrap().to_owned(),
            lk.base_url.clone(),
            "https://api.example.com".to_owned(),
        );
        let (py, js) =
            tokio::task::spawn_blocking(move || verify_both(args.0, args.1, args.2, args.3, alg)).await.unwrap();
        for (lib, v) in [("PyJWT", &py), ("jose", &js)] {
            assert!(v.ok, "{lib} refused a {alg} token: {:?}", v.error);
            assert_eq!(v.claims["sub"], "alice", "{lib}");
            assert_eq!(v.header["alg"], alg, "{lib}");
        }
        // The wrong audience is refused by both.
        let args = (
            lk.url("/.well-known/jwks.json"),
            t["access_token"].as_str().unwrap().to_owned(),
            lk.base_url.clone(),
            "https://other.example".to_owned(),
        );
        let (py, js) =
            tokio::task::spawn_blocking(move || verify_both(args.0, args.1, args.2, args.3, alg)).await.unwrap();
        assert!(!py.ok && !js.ok, "a wrong audience verified");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_stops_verifying_once_its_key_leaves_the_jwks() {
    let lk = Latchkey::start(bin(), "");
    let app = lk.app_key("live").await;
    let old = user_tokens(&lk, &app, "alice").await["access_token"].as_str().unwrap().to_owned();
    let old_kid = claims_of(&old).0["kid"].as_str().unwrap().to_owned();
    let out = lk.cli(&["keys", "rotate", "--now"], None);
    assert!(out.status.success());
    let verify_old = |old: String| {
        let (jwks, issuer, aud) = (lk.url("/.well-known/jwks.json"), lk.base_url.clone(), lk.base_url.clone());
        tokio::task::spawn_blocking(move || verify_both(jwks, old, issuer, aud, "RS256"))
    };
    let (py, js) = verify_old(old.clone()).await.unwrap();
    assert!(py.ok && js.ok, "a token of a just-retired key must still verify: {:?} {:?}", py.error, js.error);
    // Pretend every token of the old key has expired: it leaves the JWKS at the next reload.
    let db = latchkey_store::SqliteStore::open(&lk.data_dir.join("latchkey.db")).await.unwrap();
    sqlx::query("UPDATE signing_keys SET retired_at = 1 WHERE kid = $1")
        .bind(&old_kid)
        .execute(db.pool())
        .await
        .unwrap();
    // Another writer's change makes the server read the store again within its 1 s sync
    // (its own writes update memory without reading the signing keys).
    assert!(lk.cli(&["secret", "set", "nudge"], Some("x")).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let jwks = Reply::read(lk.http.get(lk.url("/.well-known/jwks.json")).send().await.unwrap()).await.json();
        if !jwks["keys"].as_array().unwrap().iter().any(|k| k["kid"] == old_kid.as_str()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the retired key stayed in the JWKS: {jwks}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (py, js) = verify_old(old).await.unwrap();
    assert!(!py.ok && !js.ok, "a token of a key no longer published still verified");
    assert!(py.error.as_deref().unwrap_or("").contains("Unable to find a signing key"), "{:?}", py.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_oidc_provider_with_a_one_time_code() {
    use latchkey_testkit::peers::oidc::oidc;
    let lk = Latchkey::start(
        bin(),
        "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\n",
    );
    let o = oidc();
    let client = o
        .register("client_secret_basic", &["authorization_code", "refresh_token"], &[&lk.url("/oauth/callback")])
        .await;
    lk.put_secret("cs", "live", client.client_secret.as_deref().unwrap()).await;
    let def = json!({"base_url": o.issuer, "auth": {
        "method": "oauth2_authorization_code", "authorize_url": o.authorize_url, "token_url": o.token_url,
        "client_id": client.client_id, "client_secret": {"secret": "cs"}, "scope": "openid email",
        "profile_url": o.userinfo_url, "user_id_path": "sub", "login": true, "issuer": o.issuer}});
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/idp").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = lk.app_key("live").await;

    let sign_in = |who: &'static str| {
        let lk = &lk;
        async move {
            let resp = lk
                .http
                .get(lk.url("/oauth/idp/login?return_to=https://app.example.com/signed-in"))
                .send()
                .await
                .unwrap();
            let cookie = resp.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
            let provider = resp.headers()["location"].to_str().unwrap().to_owned();
            let callback = oidc().login(&provider, who).await;
            let resp = lk.http.get(&callback).header("cookie", cookie).send().await.unwrap();
            let back = resp.headers()["location"].to_str().unwrap().to_owned();
            let q: std::collections::HashMap<String, String> =
                url::Url::parse(&back).unwrap().query_pairs().into_owned().collect();
            assert_eq!(q.get("status").map(String::as_str), Some("signed_in"), "{back}");
            q["code"].clone()
        }
    };
    let code = sign_in("dana").await;
    let exchange = |code: String| {
        let lk = &lk;
        let app = app.clone();
        async move {
            Reply::read(
                lk.http
                    .post(lk.url("/v1/login/exchange"))
                    .bearer_auth(app)
                    .json(&json!({"code": code}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let r = exchange(code.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let user = v["user"]["id"].as_str().unwrap().to_owned();
    assert!(user.starts_with("usr_"), "{v}");
    assert_eq!(v["user"]["email"], "dana@example.com");
    let access = v["tokens"]["access_token"].as_str().unwrap().to_owned();
    assert_eq!(introspect(&lk, &app, &access).await["sub"], user.as_str());
    // The user token sees the connection made by signing in.
    let r = Reply::read(lk.http.get(lk.url("/v1/connections")).bearer_auth(&access).send().await.unwrap()).await;
    assert_eq!(r.json()["connections"][0]["id"], v["connection"], "{}", r.body);
    // The code works once.
    let r = exchange(code).await;
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{}", r.body);
    // Signing in again finds the same user.
    let again = exchange(sign_in("dana").await).await.json();
    assert_eq!(again["user"]["id"], user.as_str());
    // An expired code is refused.
    let code = sign_in("erin").await;
    let db = latchkey_store::SqliteStore::open(&lk.data_dir.join("latchkey.db")).await.unwrap();
    sqlx::query("UPDATE login_codes SET expires_at = 0").execute(db.pool()).await.unwrap();
    assert_eq!(exchange(code).await.status, 400);
    // A connector without `login = true` does not sign in.
    let r =
        Reply::read(lk.http.get(lk.url("/oauth/nope/login?return_to=https://app.example.com/x")).send().await.unwrap())
            .await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latchkey_identity_sends_the_calling_users_jwt_upstream() {
    use latchkey_testkit::recorder::Recorder;
    let up = Recorder::start().await;
    let lk = with_connector(
        &up.base_url,
        "{ method = \"latchkey_identity\", lifetime_s = 30 }",
        "[connectors.up.calls.whoami]\npath = \"/whoami\"\naccess = \"user\"\n",
    );
    let app = lk.app_key("live").await;
    let user_access = user_tokens(&lk, &app, "alice").await["access_token"].as_str().unwrap().to_owned();
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connectors/up/calls/whoami"))
            .bearer_auth(&app)
            .json(&json!({"user": "alice"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let jwt = up.last().header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let (jwks, issuer) = (lk.url("/.well-known/jwks.json"), lk.base_url.clone());
    let (py, js) =
        tokio::task::spawn_blocking(move || verify_both(jwks, jwt, issuer, "up".into(), "RS256")).await.unwrap();
    assert!(py.ok && js.ok, "{:?} {:?}", py.error, js.error);
    assert_eq!(py.claims["sub"], "alice");
    assert_eq!(py.claims["exp"].as_i64().unwrap() - py.claims["iat"].as_i64().unwrap(), 30);
    // With a user token the identity is the token's own.
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connectors/up/calls/whoami"))
            .bearer_auth(&user_access)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        claims_of(up.last().header("authorization").unwrap().strip_prefix("Bearer ").unwrap()).1["sub"],
        "alice"
    );
    // Unknown users and missing users are refused before anything is sent.
    let before = up.count();
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connectors/up/calls/whoami"))
            .bearer_auth(&app)
            .json(&json!({"user": "ghost"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.error_code(), Some("not_found"));
    let r = Reply::read(
        lk.http.post(lk.url("/v1/connectors/up/calls/whoami")).bearer_auth(&app).json(&json!({})).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.error_code(), Some("invalid_params"));
    assert_eq!(up.count(), before);
}

/// The canary scan for the identity provider: refresh tokens are stored only as hashes, and
/// neither they nor access tokens reach the log or the disk.
#[tokio::test]
async fn no_user_token_reaches_the_log_or_the_disk() {
    use latchkey_testkit::canary::{find, read_dir_bytes};
    let lk = Latchkey::start(bin(), "");
    let app = lk.app_key("live").await;
    let t = user_tokens(&lk, &app, "alice").await;
    let rt0 = t["refresh_token"].as_str().unwrap().to_owned();
    let t1 = refresh(&lk, &rt0).await.json();
    let _ = refresh(&lk, &rt0).await; // the retry window
    let rt1 = t1["refresh_token"].as_str().unwrap().to_owned();
    let _ = introspect(&lk, &app, &rt1).await;
    let _ = lk
        .http
        .post(lk.url("/v1/token/revoke"))
        .bearer_auth(&app)
        .form(&[("token", rt1.as_str())])
        .send()
        .await
        .unwrap();
    let _ = refresh(&lk, &rt1).await;
    let canaries =
        vec![rt0, rt1, t["access_token"].as_str().unwrap().to_owned(), t1["access_token"].as_str().unwrap().to_owned()];
    let admin_line = format!("Admin key (shown only this once; keep it safe): {}", lk.admin());
    let log = lk.output().replace(&admin_line, "");
    let found = find(log.as_bytes(), &canaries);
    assert!(found.is_empty(), "user tokens in the server's output: {found:?}");
    let found = find(&read_dir_bytes(&lk.data_dir), &canaries);
    assert!(found.is_empty(), "user tokens in plaintext on disk: {found:?}");
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/events?limit=1000").send().await.unwrap()).await;
    assert!(find(r.body.as_bytes(), &canaries).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_token_starts_a_connect_flow_for_itself() {
    let fake = FakeOAuth::start().await;
    let (lk, app) = user_setup(&fake).await;
    let carol = user_tokens(&lk, &app, "carol").await["access_token"].as_str().unwrap().to_owned();
    let r = Reply::read(
        lk.http
            .get(lk.url("/oauth/fake/connect?return_to=https://app.example.com/back"))
            .bearer_auth(&carol)
            .header("accept", "application/json")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut at = r.json()["url"].as_str().unwrap().to_owned();
    let mut cookies = String::new();
    for _ in 0..3 {
        let resp = lk.http.get(&at).header("cookie", cookies.clone()).send().await.unwrap();
        if let Some(c) = resp.headers().get("set-cookie") {
            cookies = c.to_str().unwrap().split(';').next().unwrap().to_owned();
        }
        at = resp.headers()["location"].to_str().unwrap().to_owned();
    }
    assert!(at.starts_with("https://app.example.com/back?") && at.contains("status=connected"), "{at}");
    // The connection belongs to carol (the token's user), whatever the browser did.
    let r = Reply::read(lk.http.get(lk.url("/v1/connections/fake?user=carol")).bearer_auth(&app).send().await.unwrap())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Reply::read(
        lk.http
            .get(lk.url("/oauth/fake/connect?return_to=https://evil.example/"))
            .bearer_auth(&carol)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.error_code(), Some("invalid_params"));
    let r = Reply::read(
        lk.http
            .get(lk.url("/oauth/fake/connect?return_to=https://app.example.com/x"))
            .bearer_auth(&app)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 403, "app keys use POST /v1/connect");
}

#[tokio::test]
async fn introspection_is_rate_limited_per_app_key() {
    let lk = Latchkey::start(bin(), "[server]\nintrospection_per_second = 2\n");
    let (scanner, other) = (lk.app_key("live").await, lk.app_key("live").await);
    let mut statuses = Vec::new();
    let mut refused = None;
    for i in 0..20 {
        let guess = format!("guessed-token-{i}");
        let r = Reply::read(
            lk.http
                .post(lk.url("/v1/token/introspect"))
                .bearer_auth(&scanner)
                .form(&[("token", &guess)])
                .send()
                .await
                .unwrap(),
        )
        .await;
        statuses.push(r.status);
        if r.status == 429 && refused.is_none() {
            refused = Some(r);
        }
    }
    let allowed = statuses.iter().filter(|s| **s == 200).count();
    assert!((4..=10).contains(&allowed), "a burst of twice the rate (4), refills at 2/s, then refusals: {statuses:?}");
    let r = refused.expect("scanning is refused");
    assert_eq!(r.error_code(), Some("rate_limited"), "{}", r.body);
    let wait: u64 = r.headers.get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    // Another app key has its own allowance.
    assert_eq!(introspect(&lk, &other, "guessed").await, json!({"active": false}));
}
