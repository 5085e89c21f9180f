//! Agents (SPEC §13): the MCP server at `/mcp` driven by the official MCP Python SDK (PyPI
//! `mcp`), and token exchange (RFC 8693) at `POST /v1/token`, with per-user connections made
//! through oidc-provider.

use latchkey_testkit::canary::{canary, find};
use latchkey_testkit::peers::httpbin::httpbin;
use latchkey_testkit::peers::mcp;
use reqwest::Method;
use serde_json::{Value, json};

use super::connections::{Setup, connect, login, sent_token, setup};
use super::*;

async fn client(request: Value) -> Value {
    tokio::task::spawn_blocking(move || mcp::run(&request)).await.unwrap()
}

async fn user_token(lk: &Latchkey, app: &str, user: &str) -> String {
    let r = Reply::read(
        lk.http.post(lk.url("/v1/users")).bearer_auth(app).json(&json!({"id": user})).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r =
        Reply::read(lk.http.post(lk.url(&format!("/v1/users/{user}/tokens"))).bearer_auth(app).send().await.unwrap())
            .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_owned()
}

/// A per-user connector `oidc` whose call `ping` (to the recorder's non-echoing `/quiet`) is a
/// user tool, with token exchange allowed; and an app-level connector `bin` at httpbin whose
/// call `auth` (Basic, the password a secret and a private parameter) is an app tool.
async fn agents_setup(password: &str) -> Setup {
    let s = setup(
        "basic",
        json!({"connector": {"token_exchange": true, "calls": {"ping": {
            "path": "/quiet", "access": "user", "mcp": true, "tool_name": "my_ping",
            "description": "Pings the API as the signed-in user.",
        }}}}),
    )
    .await;
    s.lk.put_secret("binpw", "live", password).await;
    let def = json!({
        "base_url": httpbin().base_url,
        "auth": {"method": "basic", "username": "agent", "password": {"secret": "binpw"}},
        "mcp": true,
        "calls": {"auth": {
            "path": "/basic-auth/<who>/<pw>",
            "description": "Checks Basic credentials at httpbin.",
            "params": {
                "who": {"required": true, "description": "the user name httpbin expects"},
                "pw": {"private": true, "value": password},
                "note": {"default": "hello", "type": "string", "enum": ["hello", "bye"]},
            },
        }},
    });
    let r = Reply::read(s.lk.admin_req(Method::PUT, "/v1/admin/connectors/bin").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_sdk_lists_and_calls_tools_for_an_app_key_and_for_users_with_and_without_a_connection() {
    let password = canary("mcppw");
    let s = agents_setup(&password).await;
    let url = s.lk.url("/mcp");

    // Unauthenticated: 401 naming the resource metadata (RFC 9728), which names Latchkey.
    let r = Reply::read(
        s.lk.http.post(&url).json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    let metadata_url = s.lk.url("/.well-known/oauth-protected-resource/mcp");
    assert_eq!(challenge, format!("Bearer resource_metadata=\"{metadata_url}\""));
    let m = Reply::read(s.lk.http.get(&metadata_url).send().await.unwrap()).await.json();
    assert_eq!(m["resource"], url.as_str());
    // The SDK without a credential fails (it gets the 401).
    let out = client(json!({"url": url})).await;
    assert!(out.get("error").is_some(), "{out}");
    // A foreign Origin is refused (DNS rebinding).
    let r =
        s.lk.http
            .post(&url)
            .bearer_auth(&s.app)
            .header("origin", "http://evil.example")
            .body("{}")
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 403);

    // An app key: the app tools, schema from the public parameters; a call reaching httpbin.
    let out = client(json!({"url": url, "token": s.app, "calls": [
        {"name": "bin.auth", "arguments": {"who": "agent"}},
        {"name": "bin.auth", "arguments": {"who": "someone-else"}},
        {"name": "bin.auth", "arguments": {"who": "agent", "note": "ciao"}},
    ]}))
    .await;
    assert!(out.get("error").is_none(), "{out}");
    assert_eq!(out["initialized"]["serverInfo"]["name"], "latchkey");
    assert_eq!(out["initialized"]["protocolVersion"], "2025-11-25", "{out}");
    let tools = out["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bin.auth"], "per-user tools are not an app key's: {out}");
    let schema = &tools[0]["inputSchema"];
    assert_eq!(tools[0]["description"], "Checks Basic credentials at httpbin.");
    assert_eq!(schema["required"], json!(["who"]));
    assert_eq!(schema["properties"]["note"], json!({"type": "string", "default": "hello", "enum": ["hello", "bye"]}));
    assert!(schema["properties"].get("pw").is_none(), "a private parameter appears: {schema}");
    let ok = &out["results"][0];
    assert_eq!(ok["isError"], false, "{ok}");
    assert_eq!(ok["structuredContent"], json!({"authenticated": true, "user": "agent"}));
    assert_eq!(out["results"][1]["isError"], true, "httpbin's 401 is a tool error: {out}");
    // A value outside the parameter's `enum` is refused before anything is sent: a tool error
    // naming the parameter and its values.
    let refused = &out["results"][2];
    assert_eq!(refused["isError"], true, "{out}");
    let text = refused["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("invalid_params") && text.contains("parameter `note` must be one of: \"hello\", \"bye\""),
        "{text}"
    );
    let app_out = out.to_string();

    // Users: bob has no connection (a connect link), alice connects and calls.
    let alice = user_token(&s.lk, &s.app, "alice").await;
    let bob = user_token(&s.lk, &s.app, "bob").await;
    connect(&s, "alice").await;
    let before = s.up.count();
    let out = client(json!({"url": url, "token": bob, "calls": [
        {"name": "my_ping"},
        // Another user's connection cannot be named: the user is the token's.
        {"name": "my_ping", "arguments": {"user": "alice"}},
    ]}))
    .await;
    assert!(out.get("error").is_none(), "{out}");
    let names: Vec<&str> = out["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["my_ping"], "{out}");
    let link = out["results"][0]["structuredContent"]["connect_url"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert!(link.starts_with(&s.lk.url("/")), "{link}");
    assert!(out["results"][0]["content"][0]["text"].as_str().unwrap().contains(link));
    assert_eq!(out["results"][1]["isError"], true, "{out}");
    assert_eq!(s.up.count(), before, "bob's calls reached the upstream: {out}");
    let bob_out = out.to_string();

    // A client that declares URL-mode elicitation (the SDK does when given a callback) gets
    // the connect link as URLElicitationRequiredError (-32042): the capability reached the
    // tool call through the session id the SDK sent back.
    let out = client(json!({"url": url, "token": bob, "elicitation": true, "calls": [{"name": "my_ping"}]})).await;
    assert!(out.get("error").is_none(), "{out}");
    let error = &out["results"][0]["protocol_error"];
    assert_eq!(error["code"], -32042, "{out}");
    let e = &error["data"]["elicitations"][0];
    assert_eq!(e["mode"], "url", "{out}");
    assert!(e["url"].as_str().unwrap().starts_with(&s.lk.url("/")), "{out}");
    assert!(e["elicitationId"].as_str().is_some_and(|id| !id.is_empty()), "{out}");
    assert!(e["message"].as_str().unwrap().contains("then call it again"), "{out}");
    assert_eq!(s.up.count(), before, "bob's call reached the upstream: {out}");
    let bob_out = format!("{bob_out}{out}");

    // Bob opens the link he was handed and connects at oidc-provider: the same tool, called
    // again by the same client, now works for him, with his own provider token.
    let (callback, mut browser) = login(&s, link, "bob").await;
    let back = browser.get(&s.lk.http, &callback).await;
    assert!(back.contains("status=connected"), "{back}");
    let before = s.up.count();
    let out = client(json!({"url": url, "token": bob, "calls": [{"name": "my_ping"}]})).await;
    assert_eq!(out["results"][0]["isError"], false, "{out}");
    assert_eq!(out["results"][0]["structuredContent"], json!({"ok": true, "items": [1, 2, 3]}));
    assert_eq!(s.up.count(), before + 1, "bob's call reached the upstream once: {out}");
    let bob_token = sent_token(&s.up);
    let bob_out = format!("{bob_out}{out}");

    let before = s.up.count();
    let out = client(json!({"url": url, "token": alice, "calls": [{"name": "my_ping"}]})).await;
    assert!(out.get("error").is_none(), "{out}");
    assert_eq!(out["results"][0]["isError"], false, "{out}");
    assert_eq!(out["results"][0]["structuredContent"], json!({"ok": true, "items": [1, 2, 3]}));
    assert_eq!(s.up.count(), before + 1);
    assert_eq!(s.up.last().uri, "/quiet");
    let provider_token = sent_token(&s.up);
    let names: Vec<&str> = out["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["my_ping"], "a user sees no app tools: {out}");
    let alice_out = out.to_string();

    // Nothing secret reached the client: the app's password, both users' provider access
    // tokens, the app key.
    let seen = format!("{app_out}{bob_out}{alice_out}");
    assert_ne!(bob_token, provider_token, "bob and alice share a provider token");
    let secrets = [password.clone(), provider_token.clone(), bob_token.clone(), s.app.clone()];
    assert!(find(seen.as_bytes(), &secrets).is_empty(), "a secret reached the MCP client: {seen}");
}

async fn exchange(s: &Setup, key: &str, subject: &str, resource: &str) -> Reply {
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", subject),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ("resource", resource),
    ];
    Reply::read(s.lk.http.post(s.lk.url("/v1/token")).bearer_auth(key).form(&form).send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_hands_out_the_users_provider_token_and_refuses_each_case_with_its_error() {
    let s = agents_setup(&canary("xpw")).await;
    let alice = user_token(&s.lk, &s.app, "alice").await;
    let bob = user_token(&s.lk, &s.app, "bob").await;
    connect(&s, "alice").await;

    let r = exchange(&s, &s.app, &alice, "oidc").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let x = r.json();
    assert_eq!(x["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(x["token_type"].as_str().map(str::to_ascii_lowercase).as_deref(), Some("bearer"));
    assert!(x["expires_in"].as_i64().unwrap() > 0, "{x}");
    assert!(x.get("refresh_token").is_none(), "{x}");
    // The same token a call for alice is signed with.
    let r = Reply::read(
        s.lk.http
            .post(s.lk.url("/v1/connectors/oidc/calls/ping"))
            .bearer_auth(&s.app)
            .json(&json!({"user": "alice"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(x["access_token"].as_str().unwrap(), sent_token(&s.up));
    // `audience` names the connector as well.
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", alice.as_str()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ("audience", "oidc"),
    ];
    let r =
        Reply::read(s.lk.http.post(s.lk.url("/v1/token")).bearer_auth(&s.app).form(&form).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let refused = |r: &Reply| (r.status, r.json()["error"]["oauth_error"].clone(), r.json()["error"]["reason"].clone());
    // Wrong app environment.
    let dev = s.lk.app_key("dev").await;
    let r = exchange(&s, &dev, &alice, "oidc").await;
    assert_eq!(refused(&r), (403, json!("invalid_request"), json!("subject_token_environment")), "{}", r.body);
    // An invalid subject token, and a revoked (no longer valid) one.
    let r = exchange(&s, &s.app, "eyJ.not.valid", "oidc").await;
    assert_eq!(refused(&r), (401, json!("invalid_request"), json!("subject_token_invalid")), "{}", r.body);
    let carol = user_token(&s.lk, &s.app, "carol").await;
    let rv =
        s.lk.http
            .post(s.lk.url("/v1/token/revoke"))
            .bearer_auth(&s.app)
            .form(&[("token", carol.as_str())])
            .send()
            .await
            .unwrap();
    assert_eq!(rv.status(), 200);
    let r = exchange(&s, &s.app, &carol, "oidc").await;
    assert_eq!(refused(&r), (401, json!("invalid_request"), json!("subject_token_invalid")), "{}", r.body);
    // A connector without token_exchange.
    let r = exchange(&s, &s.app, &alice, "bin").await;
    assert_eq!(refused(&r), (403, json!("invalid_target"), json!("connector_not_exchangeable")), "{}", r.body);
    // A user without a connection.
    let r = exchange(&s, &s.app, &bob, "oidc").await;
    assert_eq!(refused(&r), (404, json!("invalid_grant"), json!("no_connection")), "{}", r.body);

    // Each exchange given is an event.
    let r =
        Reply::read(s.lk.admin_req(Method::GET, "/v1/admin/events?kind=token.exchanged").send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 2, "{}", r.body);
}
