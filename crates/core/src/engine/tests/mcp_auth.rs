//! The MCP authorization server on a fake clock: a client registers, the user signs in at the
//! app's page, approves, and the code is exchanged once; an expired, replayed or mismatched
//! code is refused, a replay revokes what the code gave, and a refresh keeps the scope and the
//! audience.

use std::collections::HashMap;

use secrecy::SecretString;
use serde_json::{Value, json};

use super::Harness;
use crate::Env;
use crate::engine::mcp_auth::{AuthorizeError, Pending};
use crate::store::IdentityStore;

const CONFIG: &str = r#"
[server.mcp]
sign_in_url = "https://app.test/mcp-sign-in"

[connectors.bin]
base_url = "https://api.bin.test"
auth = { method = "none" }
mcp = true
calls.anything = { path = "/anything", access = "user" }
calls.get = { path = "/get", access = "user", tool_name = "bin_get" }
"#;

const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc";
const REDIRECT: &str = "http://127.0.0.1:9/cb";

async fn harness() -> Harness {
    let h = Harness::start(CONFIG).await;
    h.engine.identity().ensure_signing_key().await.unwrap();
    h
}

async fn register(h: &Harness) -> String {
    let (id, _, metadata) =
        h.engine.mcp_auth().register(&json!({"redirect_uris": [REDIRECT], "client_name": "Agent"})).await.unwrap();
    assert_eq!(metadata.client_name.as_deref(), Some("Agent"));
    id
}

fn query(client: &str, extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut q: HashMap<String, String> = [
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", REDIRECT),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "st"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in extra {
        q.insert((*k).to_owned(), (*v).to_owned());
    }
    q
}

/// Through the app's sign-in as `user`, approved: the code.
async fn code_for(h: &Harness, client: &str, user: &str, extra: &[(&str, &str)]) -> String {
    let auth = h.engine.mcp_auth();
    let mut p: Pending = auth.authorize(&query(client, extra)).await.unwrap();
    let (id, url) = auth.app_sign_in_request(p.env, "https://app.test/mcp-sign-in").await.unwrap();
    assert!(url.starts_with("https://app.test/mcp-sign-in?request=mcpr_"), "{url}");
    p.sign_in = Some(id.clone());
    let back = auth.app_signed_in(Env::Live, &id, user).await.unwrap();
    let grant = back.split("grant=").nth(1).unwrap();
    p.user = Some(auth.user_of_grant(&p, grant).await.unwrap());
    let to = auth.approve(&p).await.unwrap();
    assert!(to.contains("&state=st&iss=https%3A%2F%2Flk.test"), "{to}");
    let u = url::Url::parse(&to).unwrap();
    u.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap())
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_code_is_exchanged_once_for_mcp_tokens_whose_refresh_keeps_scope_and_audience() {
    let h = harness().await;
    let client = register(&h).await;
    let code = code_for(&h, &client, "alice", &[("scope", "tool:bin_get"), ("resource", "https://lk.test/mcp")]).await;
    let auth = h.engine.mcp_auth();
    let pair = auth
        .exchange_code(&code, Some(VERIFIER), Some(&client), Some(REDIRECT), Some("https://lk.test/mcp"))
        .await
        .unwrap();
    assert_eq!(pair.scope.as_deref(), Some("tool:bin_get"));
    let c = claims(&pair.access_token);
    assert_eq!(
        (c["aud"].as_str(), c["scope"].as_str(), c["sub"].as_str()),
        (Some("https://lk.test/mcp"), Some("tool:bin_get"), Some("alice"))
    );
    // /mcp accepts it; the rest of the API (the configured audience) does not.
    assert!(h.engine.identity().verify_mcp_token(&pair.access_token).is_ok());
    assert!(h.engine.identity().verify_user_token(&pair.access_token).is_err());
    // A refresh keeps the scope and the audience.
    let next = h.engine.identity().refresh_user_tokens(&SecretString::from(pair.refresh_token.clone())).await.unwrap();
    let c = claims(&next.access_token);
    assert_eq!((c["aud"].as_str(), c["scope"].as_str()), (Some("https://lk.test/mcp"), Some("tool:bin_get")));
    assert_eq!(next.scope.as_deref(), Some("tool:bin_get"));
    // The code again: refused, and what it gave is revoked (RFC 6749 §4.1.2).
    let again = auth.exchange_code(&code, Some(VERIFIER), Some(&client), Some(REDIRECT), None).await.unwrap_err();
    assert_eq!(again.details["oauth_error"], "invalid_grant");
    assert!(again.message.contains("used already"), "{}", again.message);
    assert!(h.engine.identity().verify_mcp_token(&next.access_token).is_err(), "the replay left the tokens alive");
    let refreshed = h.engine.identity().refresh_user_tokens(&SecretString::from(next.refresh_token)).await;
    assert!(refreshed.is_err(), "the replay left the refresh token alive");
}

#[tokio::test(start_paused = true)]
async fn expired_and_mismatched_codes_are_refused() {
    let h = harness().await;
    let client = register(&h).await;
    let auth = h.engine.mcp_auth();
    let grant_error = |e: crate::CallError| e.details["oauth_error"].as_str().unwrap().to_owned();
    // 61 seconds late.
    let code = code_for(&h, &client, "alice", &[]).await;
    h.clock.advance(61_000);
    let e = auth.exchange_code(&code, Some(VERIFIER), Some(&client), Some(REDIRECT), None).await.unwrap_err();
    assert_eq!(grant_error(e.clone()), "invalid_grant");
    assert!(e.message.contains("expired"), "{}", e.message);
    // A wrong verifier, another client, another redirect URI, another resource, no verifier.
    for (verifier, client_id, redirect, resource, expected) in [
        (Some("x".repeat(43)), client.clone(), REDIRECT, None, "invalid_grant"),
        (Some(VERIFIER.to_owned()), "mcp_other".to_owned(), REDIRECT, None, "invalid_grant"),
        (Some(VERIFIER.to_owned()), client.clone(), "http://127.0.0.1:9/other", None, "invalid_grant"),
        (Some(VERIFIER.to_owned()), client.clone(), REDIRECT, Some("https://elsewhere.test/mcp"), "invalid_target"),
        (None, client.clone(), REDIRECT, None, "invalid_request"),
    ] {
        let code = code_for(&h, &client, "alice", &[]).await;
        let e = auth
            .exchange_code(&code, verifier.as_deref(), Some(&client_id), Some(redirect), resource)
            .await
            .unwrap_err();
        assert_eq!(grant_error(e), expected, "{client_id} {redirect} {resource:?}");
    }
    let e = auth.exchange_code("mcpc_unknown", Some(VERIFIER), Some(&client), Some(REDIRECT), None).await.unwrap_err();
    assert_eq!(grant_error(e), "invalid_grant");
}

#[tokio::test(start_paused = true)]
async fn requests_are_refused_on_a_page_until_the_redirect_uri_is_trusted_then_sent_back() {
    let h = harness().await;
    let client = register(&h).await;
    let auth = h.engine.mcp_auth();
    let page = |r: Result<Pending, AuthorizeError>| match r {
        Err(AuthorizeError::Page(m)) => m,
        other => panic!("not a page: {other:?}"),
    };
    let back = |r: Result<Pending, AuthorizeError>| match r {
        Err(AuthorizeError::Redirect(to)) => to,
        other => panic!("not sent back: {other:?}"),
    };
    assert!(page(auth.authorize(&query("mcp_nobody", &[])).await).contains("not registered"));
    let m = page(auth.authorize(&query(&client, &[("redirect_uri", "http://127.0.0.1:9/evil")])).await);
    assert!(m.contains("not one of the client's registered redirect URIs"), "{m}");
    let mut no_pkce = query(&client, &[]);
    no_pkce.remove("code_challenge");
    let to = back(auth.authorize(&no_pkce).await);
    assert!(to.starts_with("http://127.0.0.1:9/cb?error=invalid_request&"), "{to}");
    assert!(to.contains("&state=st&iss=https%3A%2F%2Flk.test"), "{to}");
    let to = back(auth.authorize(&query(&client, &[("code_challenge_method", "plain")])).await);
    assert!(to.contains("error=invalid_request"), "{to}");
    let to = back(auth.authorize(&query(&client, &[("resource", "https://elsewhere.test/mcp")])).await);
    assert!(to.contains("error=invalid_target"), "{to}");
    let to = back(auth.authorize(&query(&client, &[("scope", "tools admin")])).await);
    assert!(to.contains("error=invalid_scope"), "{to}");
    let to = back(auth.authorize(&query(&client, &[("response_type", "token")])).await);
    assert!(to.contains("error=unsupported_response_type"), "{to}");
    // No scope: `tools`; words are checked against the tools there are.
    assert_eq!(auth.authorize(&query(&client, &[])).await.unwrap().request.scope, "tools");
    let p =
        auth.authorize(&query(&client, &[("scope", "connector:bin tool:bin.anything connector:bin")])).await.unwrap();
    assert_eq!(p.request.scope, "connector:bin tool:bin.anything");
}

#[tokio::test(start_paused = true)]
async fn an_app_grant_works_once_in_the_browser_it_was_made_for() {
    let h = harness().await;
    let client = register(&h).await;
    let auth = h.engine.mcp_auth();
    let mut mine = auth.authorize(&query(&client, &[])).await.unwrap();
    let mut theirs = mine.clone();
    let (id, _) = auth.app_sign_in_request(Env::Live, "https://app.test/s").await.unwrap();
    let (other, _) = auth.app_sign_in_request(Env::Live, "https://app.test/s").await.unwrap();
    mine.sign_in = Some(id.clone());
    theirs.sign_in = Some(other);
    // An app key of the other environment may not answer.
    assert!(auth.app_signed_in(Env::Dev, &id, "alice").await.is_err());
    let back = auth.app_signed_in(Env::Live, &id, "alice").await.unwrap();
    assert!(auth.app_signed_in(Env::Live, &id, "mallory").await.is_err(), "a request was answered twice");
    let grant = back.split("grant=").nth(1).unwrap().to_owned();
    // Another browser (another request) cannot use it, and that spends it.
    assert!(auth.user_of_grant(&theirs, &grant).await.unwrap_err().contains("another browser"));
    assert!(auth.user_of_grant(&mine, &grant).await.is_err(), "a grant worked twice");
    // The user was made in Latchkey.
    assert!(h.engine.identity().get_user(Env::Live, "alice").await.unwrap().is_some());
}

const DAY: i64 = 86_400_000;

/// A registered client nobody authorizes lapses 30 days after its registration: it is then
/// unknown (as one never registered), whether or not the sweep has deleted it yet.
#[tokio::test(start_paused = true)]
async fn a_client_never_authorized_lapses_after_thirty_days() {
    let h = harness().await;
    let client = register(&h).await;
    h.clock.advance(30 * DAY);
    assert!(h.engine.mcp_auth().authorize(&query(&client, &[])).await.is_ok(), "kept through its last day");
    h.clock.advance(1);
    let refused = h.engine.mcp_auth().authorize(&query(&client, &[])).await;
    assert!(matches!(&refused, Err(AuthorizeError::Page(m)) if m.contains("not registered")), "{refused:?}");
    assert!(h.store.get_oauth_client(&client).await.unwrap().is_some(), "not swept yet, and already unknown");
    h.engine.sweep_once().await;
    assert_eq!(h.store.get_oauth_client(&client).await.unwrap(), None);
}

/// Each authorization keeps a client until 30 days after the refresh-token family it starts
/// expires (30 days by default), so a client whose tokens are still alive is never forgotten.
#[tokio::test(start_paused = true)]
async fn an_authorized_client_is_kept_until_thirty_days_after_its_tokens_expire() {
    let h = harness().await;
    let client = register(&h).await;
    h.clock.advance(20 * DAY);
    let code = code_for(&h, &client, "alice", &[]).await;
    let pair = h.engine.mcp_auth().exchange_code(&code, Some(VERIFIER), Some(&client), Some(REDIRECT), None).await;
    assert!(pair.is_ok(), "{pair:?}");
    // Past the 30 days of an unused registration, within those of its tokens.
    h.clock.advance(59 * DAY);
    h.engine.sweep_once().await;
    assert!(h.engine.mcp_auth().authorize(&query(&client, &[])).await.is_ok());
    h.clock.advance(DAY + 1);
    h.engine.sweep_once().await;
    assert_eq!(h.store.get_oauth_client(&client).await.unwrap(), None);
    let refused = h.engine.mcp_auth().authorize(&query(&client, &[])).await;
    assert!(matches!(&refused, Err(AuthorizeError::Page(m)) if m.contains("not registered")), "{refused:?}");
}

/// A registration that lapses while its user is signing in (the authorization was accepted
/// before) gets no code: `invalid_client`, and the client must register again.
#[tokio::test(start_paused = true)]
async fn a_client_that_lapsed_during_its_authorization_gets_no_code() {
    let h = harness().await;
    let client = register(&h).await;
    h.clock.advance(30 * DAY - 60_000);
    let auth = h.engine.mcp_auth();
    let mut p: Pending = auth.authorize(&query(&client, &[])).await.unwrap();
    p.user = Some("alice".into());
    h.clock.advance(2 * 60_000);
    let e = auth.approve(&p).await.unwrap_err();
    assert_eq!(e.details["oauth_error"], "invalid_client");
    assert!(e.message.contains("register again"), "{}", e.message);
    assert_eq!(h.store.calls("insert_auth_grant"), 0, "a code was stored");
}
