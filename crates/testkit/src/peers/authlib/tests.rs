//! The peer against its own contract: the grants, the errors exactly as Authlib answers them,
//! rotation and its races, and one process for every caller.

use super::*;

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

#[allow(clippy::disallowed_methods)]
fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// `request` with an `application/x-www-form-urlencoded` body (the `form` feature of
/// reqwest is not enabled in this workspace).
fn with_form(request: reqwest::RequestBuilder, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body: Vec<String> = form.iter().map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v))).collect();
    request.header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body.join("&"))
}

async fn token(request: reqwest::RequestBuilder, form: &[(&str, &str)]) -> (u16, Value) {
    let response = with_form(request, form).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("token endpoint gave non-JSON ({e}): {text}"));
    (status, body)
}

async fn password_grant(peer: &Authlib, client: &Client) -> Value {
    let request = http().post(&peer.token_url).basic_auth(&client.id, Some(&client.secret));
    let (status, body) = token(
        request,
        &[("grant_type", "password"), ("username", &peer.user), ("password", &peer.password), ("scope", "read write")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn me(peer: &Authlib, access_token: &str) -> (u16, Value) {
    let response = http().get(&peer.resource_url).bearer_auth(access_token).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[expect(clippy::disallowed_methods, reason = "a stand-in for another system, which has its own clock")]
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

async fn jwt_bearer(peer: &Authlib, assertion: &str) -> (u16, Value) {
    token(http().post(&peer.token_url), &[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion)]).await
}

#[tokio::test]
async fn password_grant_with_basic_auth_gives_tokens_the_resource_accepts() {
    let peer = authlib();
    let body = password_grant(peer, &peer.basic_client).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "read write");
    assert!(body["refresh_token"].as_str().is_some_and(|t| !t.is_empty()), "{body}");
    let (status, who) = me(peer, body["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(
        who,
        json!({"client_id": "basic-client", "user": "ada", "scope": "read write", "grant_type": "password"})
    );
    let (status, who) = me(peer, "not-a-token").await;
    assert_eq!((status, who), (401, json!({"error": "invalid_token"})));
}

#[tokio::test]
async fn password_grant_with_post_client() {
    let peer = authlib();
    let client = &peer.post_client;
    let (status, body) = token(
        http().post(&peer.token_url),
        &[
            ("grant_type", "password"),
            ("username", &peer.user),
            ("password", &peer.password),
            ("client_id", &client.id),
            ("client_secret", &client.secret),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].is_string(), "{body}");
    assert_eq!(me(peer, body["access_token"].as_str().unwrap()).await.1["client_id"], "post-client");
}

#[tokio::test]
async fn wrong_password_is_invalid_request() {
    let peer = authlib();
    let client = &peer.basic_client;
    let request = http().post(&peer.token_url).basic_auth(&client.id, Some(&client.secret));
    let (status, body) =
        token(request, &[("grant_type", "password"), ("username", &peer.user), ("password", "wrong")]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
}

#[tokio::test]
async fn client_auth_failures_are_401_invalid_client() {
    let peer = authlib();
    let basic = &peer.basic_client;
    // The basic client sending its credentials in the body.
    let (status, body) = token(
        http().post(&peer.token_url),
        &[("grant_type", "client_credentials"), ("client_id", &basic.id), ("client_secret", &basic.secret)],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    // The post client using HTTP Basic.
    let post = &peer.post_client;
    let request = http().post(&peer.token_url).basic_auth(&post.id, Some(&post.secret));
    let (status, body) = token(request, &[("grant_type", "client_credentials")]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
    // A wrong secret.
    let request = http().post(&peer.token_url).basic_auth(&basic.id, Some("wrong"));
    let (status, body) = token(request, &[("grant_type", "client_credentials")]).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_is_invalid_grant() {
    let peer = authlib();
    let client = &peer.basic_client;
    let first = password_grant(peer, client).await;
    let refresh = |refresh_token: String| {
        let request = http().post(&peer.token_url).basic_auth(&client.id, Some(&client.secret));
        async move { token(request, &[("grant_type", "refresh_token"), ("refresh_token", &refresh_token)]).await }
    };
    let first_refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let (status, second) = refresh(first_refresh.clone()).await;
    assert_eq!(status, 200, "{second}");
    let second_refresh = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(second["scope"], "read write");
    let (status, who) = me(peer, second["access_token"].as_str().unwrap()).await;
    assert_eq!((status, &who["grant_type"]), (200, &json!("refresh_token")), "{who}");

    let (status, body) = refresh(first_refresh).await;
    assert_eq!((status, body), (400, json!({"error": "invalid_grant"})));
    let (status, third) = refresh(second_refresh).await;
    assert_eq!(status, 200, "{third}");
}

#[tokio::test]
async fn client_credentials_gives_no_refresh_token() {
    let peer = authlib();
    let client = &peer.basic_client;
    let request = http().post(&peer.token_url).basic_auth(&client.id, Some(&client.secret));
    let (status, body) = token(request, &[("grant_type", "client_credentials")]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    assert_eq!(body["expires_in"], 3600);
    let (status, who) = me(peer, body["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        who,
        json!({"client_id": "basic-client", "user": null, "scope": "", "grant_type": "client_credentials"})
    );
}

#[tokio::test]
async fn expire_makes_the_resource_refuse_a_token() {
    let peer = authlib();
    let client = &peer.post_client;
    let (status, body) = token(
        http().post(&peer.token_url),
        &[("grant_type", "client_credentials"), ("client_id", &client.id), ("client_secret", &client.secret)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(me(peer, access).await.0, 200);
    peer.expire(access);
    assert_eq!(me(peer, access).await, (401, json!({"error": "invalid_token"})));
}

#[test]
fn key_files_and_service_account() {
    let peer = authlib();
    let jwt = &peer.jwt;
    assert!(jwt.pkcs1_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{}", jwt.pkcs1_pem);
    assert!(jwt.pkcs8_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", jwt.pkcs8_pem);
    assert!(jwt.wrong_key_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert_ne!(jwt.wrong_key_pem, jwt.pkcs1_pem);
    let account: Value = serde_json::from_str(&jwt.service_account_json).unwrap();
    assert_eq!(account["type"], "service_account");
    assert_eq!(account["client_email"], jwt.issuer.as_str());
    assert_eq!(account["client_id"], jwt.client_id.as_str());
    assert_eq!(account["private_key"], jwt.pkcs8_pem.as_str());
    assert_eq!(account["private_key_id"], jwt.private_key_id.as_str());
    assert_eq!(account["token_uri"], peer.token_url.as_str());
    assert!(account["project_id"].is_string() && account["auth_uri"].is_string());
}

#[tokio::test]
async fn jwt_bearer_assertion_gives_a_token_with_its_scope() {
    let peer = authlib();
    let t = now();
    let claims = json!({"iss": peer.jwt.issuer, "aud": peer.token_url, "iat": t, "exp": t + 3600,
                        "scope": "https://www.googleapis.com/auth/cloud-platform"});
    let (status, body) = jwt_bearer(peer, &peer.sign_assertion(&claims, AssertionKey::Trusted)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("refresh_token").is_none(), "{body}");
    let (status, who) = me(peer, body["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        who,
        json!({"client_id": peer.jwt.client_id, "user": null,
               "scope": "https://www.googleapis.com/auth/cloud-platform", "grant_type": JWT_BEARER_GRANT})
    );

    // Acting for a user (`sub`), and for an unknown one.
    let claims = json!({"iss": peer.jwt.issuer, "sub": "ada", "aud": peer.token_url, "iat": t, "exp": t + 3600});
    let (status, body) = jwt_bearer(peer, &peer.sign_assertion(&claims, AssertionKey::Trusted)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(me(peer, body["access_token"].as_str().unwrap()).await.1["user"], "ada");
    let claims = json!({"iss": peer.jwt.issuer, "sub": "bob", "aud": peer.token_url, "iat": t, "exp": t + 3600});
    let (status, body) = jwt_bearer(peer, &peer.sign_assertion(&claims, AssertionKey::Trusted)).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
}

#[tokio::test]
async fn jwt_bearer_refusals_are_invalid_grant() {
    let peer = authlib();
    let t = now();
    let claims = |aud: &str, iat: u64, exp: u64| json!({"iss": peer.jwt.issuer, "aud": aud, "iat": iat, "exp": exp});

    let wrong_aud = claims("https://oauth2.googleapis.com/token", t, t + 3600);
    let (status, body) = jwt_bearer(peer, &peer.sign_assertion(&wrong_aud, AssertionKey::Trusted)).await;
    assert_eq!((status, &body), (400, &json!({"error": "invalid_grant", "error_description": "Invalid claim: 'aud'"})));

    let good = claims(&peer.token_url, t, t + 3600);
    let (status, body) = jwt_bearer(peer, &peer.sign_assertion(&good, AssertionKey::Wrong)).await;
    assert_eq!((status, &body), (400, &json!({"error": "invalid_grant"})));

    let expired = claims(&peer.token_url, t - 7200, t - 3600);
    let (status, body) = jwt_bearer(peer, &peer.sign_assertion(&expired, AssertionKey::Trusted)).await;
    assert_eq!((status, &body), (400, &json!({"error": "invalid_grant", "error_description": "The token is expired"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_served_concurrently_and_counted_alone() {
    let peer = authlib();
    let delay = Duration::from_millis(800);
    let client =
        peer.register_client(&ClientOptions { auth: ClientAuth::Post, token_delay: delay, expires_in: Some(120) });
    let request = || {
        let form = [
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", client.id.clone()),
            ("client_secret", client.secret.clone()),
        ];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let request = with_form(http().post(&peer.token_url), &form);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let started = Instant::now();
    let (a, b) = tokio::join!(request(), request());
    let elapsed = started.elapsed();
    assert_eq!(a["expires_in"], 120, "{a}");
    assert!(b["access_token"].is_string(), "{b}");
    assert!(elapsed >= delay && elapsed < delay * 2, "two slow requests took {elapsed:?}");
    let stats = peer.client_stats(&client.id);
    assert_eq!(stats["client_credentials"], json!({"ok": 2, "error": 0}), "{stats}");
    assert!(peer.stats()["client_credentials"]["ok"].as_u64().unwrap() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_refreshes_with_one_token_give_one_invalid_grant() {
    let peer = authlib();
    let client = peer.register_client(&ClientOptions {
        auth: ClientAuth::Basic,
        token_delay: Duration::from_millis(300),
        expires_in: None,
    });
    let first = password_grant(peer, &client).await;
    let refresh_token = first["refresh_token"].as_str().unwrap();
    let refresh = || {
        let request = http().post(&peer.token_url).basic_auth(&client.id, Some(&client.secret));
        async move { token(request, &[("grant_type", "refresh_token"), ("refresh_token", refresh_token)]).await }
    };
    let (a, b) = tokio::join!(refresh(), refresh());
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "{a:?} {b:?}");
    let loser = if a.0 == 400 { a.1 } else { b.1 };
    assert_eq!(loser, json!({"error": "invalid_grant"}));
    let stats = peer.client_stats(&client.id);
    assert_eq!(stats["refresh_token"], json!({"ok": 1, "error": 1}), "{stats}");
    assert_eq!(stats["password"], json!({"ok": 1, "error": 0}), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authlib_is_one_process_for_all_callers() {
    let a = tokio::task::spawn_blocking(authlib);
    let b = tokio::task::spawn_blocking(authlib);
    assert!(std::ptr::eq(a.await.unwrap(), b.await.unwrap()));
}

#[test]
fn form_encoding() {
    assert_eq!(form_encode("a-b_c.d~e"), "a-b_c.d~e");
    assert_eq!(form_encode("a b+c/=&é"), "a%20b%2Bc%2F%3D%26%C3%A9");
}
