//! Latchkey as the OAuth authorization server of MCP clients, end to end over HTTP: the
//! metadata (RFC 8414, RFC 9728), dynamic client registration (RFC 7591) and its refusals, a
//! client ID metadata document served locally, the authorization endpoint's refusals (a page
//! before the redirect URI is trusted, `error` + `iss` after), the app's own sign-in
//! (`sign_in_url`, `POST /v1/mcp/sign-in`), the consent page (escaped, CSRF), denied consent,
//! the code's exchange (PKCE, single use across instances, expiry), `aud=/mcp` tokens that only
//! `/mcp` accepts, and a refresh that keeps the scope. The official Python SDK signing a user in
//! through oidc-provider in a real browser is `the_mcp_sdk_signs_a_user_in_...`.

use std::collections::HashMap;

use latchkey_testkit::peers::httpbin::httpbin;
use serde_json::{Value, json};

use super::*;

const VERIFIER: &str = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
/// base64url(SHA-256(VERIFIER)), computed by Python's hashlib (an independent implementation).
const CHALLENGE: &str = "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc";
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const SIGN_IN: &str = "https://app.example/mcp-sign-in";

fn config(extra: &str) -> String {
    format!(
        r#"
[server]
api_connectors_private_egress = true

[server.mcp]
sign_in_url = "{SIGN_IN}"
allow_loopback_client_ids = true
registrations_per_second = 50
{extra}

[connectors.bin]
base_url = "{bin}"
auth = {{ method = "none" }}
mcp = true
calls.anything = {{ path = "/anything", access = "user", description = "Echoes the request." }}
calls.get = {{ path = "/get", access = "user", tool_name = "bin_get" }}
"#,
        bin = httpbin().base_url,
    )
}

fn location(r: &Reply) -> String {
    r.headers
        .get("location")
        .unwrap_or_else(|| panic!("no Location ({}): {}", r.status, r.body))
        .to_str()
        .unwrap()
        .to_owned()
}

fn query_of(url: &str) -> HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// The `lk_authorize` cookie a response set (`name=value`).
fn cookie(r: &Reply) -> String {
    r.headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("lk_authorize="))
        .unwrap_or_else(|| panic!("no lk_authorize cookie: {:?}", r.headers))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

async fn register(lk: &Latchkey, metadata: Value) -> Reply {
    Reply::read(lk.http.post(lk.url("/v1/mcp/register")).json(&metadata).send().await.unwrap()).await
}

async fn client(lk: &Latchkey, name: &str) -> String {
    let r =
        register(lk, json!({"redirect_uris": [REDIRECT], "client_name": name, "token_endpoint_auth_method": "none"}))
            .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["client_id"].as_str().unwrap().to_owned()
}

fn authorize_url(lk: &Latchkey, client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(&lk.url("/oauth/authorize")).unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st-1");
    for (k, v) in extra {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

async fn get(lk: &Latchkey, url: &str, cookie: Option<&str>) -> Reply {
    let mut req = lk.http.get(url);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    Reply::read(req.send().await.unwrap()).await
}

/// Up to the consent page, signed in at the app as `user`: the page and the cookie.
async fn consent_page(
    lk: &Latchkey,
    app: &str,
    client_id: &str,
    extra: &[(&str, &str)],
    user: &str,
) -> (Reply, String) {
    let r = get(lk, &authorize_url(lk, client_id, extra), None).await;
    assert_eq!(r.status, 302, "{}", r.body);
    let to_app = location(&r);
    assert!(to_app.starts_with(&format!("{SIGN_IN}?request=mcpr_")), "{to_app}");
    let jar = cookie(&r);
    let request = query_of(&to_app)["request"].clone();
    // The app signs the user in and asks Latchkey where the browser goes back to.
    let b = Reply::read(
        lk.http
            .post(lk.url("/v1/mcp/sign-in"))
            .bearer_auth(app)
            .json(&json!({"request": request, "user": user}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(b.status, 200, "{}", b.body);
    let back = b.json()["url"].as_str().unwrap().to_owned();
    assert!(back.starts_with(&lk.url("/oauth/authorize/continue?grant=mcpg_")), "{back}");
    let r = get(lk, &back, Some(&jar)).await;
    assert_eq!((r.status, location(&r).as_str()), (303, "/oauth/authorize"), "{}", r.body);
    let jar = cookie(&r);
    let page = get(lk, &lk.url("/oauth/authorize"), Some(&jar)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    (page, jar)
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_owned()
}

async fn decide(lk: &Latchkey, jar: &str, csrf: &str, decision: &str) -> Reply {
    let form = [("csrf", csrf), ("decision", decision)];
    Reply::read(lk.http.post(lk.url("/oauth/authorize")).header("cookie", jar).form(&form).send().await.unwrap()).await
}

/// Through sign-in and consent: the code.
async fn code(lk: &Latchkey, app: &str, client_id: &str, extra: &[(&str, &str)]) -> String {
    let (page, jar) = consent_page(lk, app, client_id, extra, "alice").await;
    let r = decide(lk, &jar, &csrf_of(&page.body), "approve").await;
    assert_eq!(r.status, 303, "{}", r.body);
    let back = location(&r);
    assert!(back.starts_with(&format!("{REDIRECT}?code=mcpc_")), "{back}");
    let q = query_of(&back);
    assert_eq!((q["state"].as_str(), q["iss"].as_str()), ("st-1", lk.base_url.as_str()));
    q["code"].clone()
}

async fn token(lk: &Latchkey, form: &[(&str, &str)]) -> Reply {
    Reply::read(lk.http.post(lk.url("/v1/token")).form(form).send().await.unwrap()).await
}

async fn exchange(lk: &Latchkey, code: &str, client_id: &str) -> Reply {
    let resource = lk.url("/mcp");
    token(
        lk,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("code_verifier", VERIFIER),
            ("client_id", client_id),
            ("redirect_uri", REDIRECT),
            ("resource", &resource),
        ],
    )
    .await
}

fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap())
        .unwrap()
}

async fn mcp_tools(lk: &Latchkey, token: &str) -> Reply {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    Reply::read(lk.http.post(lk.url("/mcp")).bearer_auth(token).json(&body).send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_names_every_endpoint_and_registration_accepts_only_public_clients_with_safe_redirects() {
    let lk = Latchkey::start(bin(), &config(""));
    let m = get(&lk, &lk.url("/.well-known/oauth-authorization-server"), None).await.json();
    assert_eq!(m["issuer"], lk.base_url.as_str());
    assert_eq!(m["authorization_endpoint"], lk.url("/oauth/authorize"));
    assert_eq!(m["token_endpoint"], lk.url("/v1/token"));
    assert_eq!(m["registration_endpoint"], lk.url("/v1/mcp/register"));
    assert_eq!(m["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(m["client_id_metadata_document_supported"], true);
    assert_eq!(m["authorization_response_iss_parameter_supported"], true);
    assert_eq!(m["response_types_supported"], json!(["code"]));
    assert_eq!(m["token_endpoint_auth_methods_supported"], json!(["none"]));
    for g in ["authorization_code", "refresh_token"] {
        assert!(m["grant_types_supported"].as_array().unwrap().iter().any(|x| x == g), "{m}");
    }
    assert_eq!(m["scopes_supported"], json!(["tools", "connector:bin", "tool:bin.anything", "tool:bin_get"]));
    // OpenID discovery says the same; the protected resource names Latchkey and `tools`.
    assert_eq!(get(&lk, &lk.url("/.well-known/openid-configuration"), None).await.json(), m);
    let prm = get(&lk, &lk.url("/.well-known/oauth-protected-resource/mcp"), None).await.json();
    assert_eq!(
        (prm["authorization_servers"][0].as_str(), prm["scopes_supported"].clone()),
        (Some(lk.base_url.as_str()), json!(["tools"]))
    );

    // A registration: a public client, whatever method it asked for.
    let r = register(&lk, json!({"redirect_uris": ["http://localhost:3000/cb", "com.example.agent:/cb"], "client_name": "Agent", "token_endpoint_auth_method": "client_secret_basic"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.json();
    assert!(c["client_id"].as_str().unwrap().starts_with("mcp_"), "{c}");
    assert_eq!((c["token_endpoint_auth_method"].as_str(), c.get("client_secret")), (Some("none"), None));
    assert_eq!(c["grant_types"], json!(["authorization_code", "refresh_token"]));
    // Refusals, each naming the field.
    for (metadata, oauth_error, says) in [
        (
            json!({"redirect_uris": ["http://agent.example/cb"]}),
            "invalid_redirect_uri",
            "`redirect_uris[0]` uses http on a host other than loopback",
        ),
        (json!({"redirect_uris": ["https://agent.example/cb#frag"]}), "invalid_redirect_uri", "fragment"),
        (json!({"redirect_uris": ["javascript:alert(1)"]}), "invalid_redirect_uri", "`redirect_uris[0]`"),
        (json!({"client_name": "no redirects"}), "invalid_redirect_uri", "`redirect_uris` must list"),
        (
            json!({"redirect_uris": [REDIRECT], "grant_types": ["client_credentials"]}),
            "invalid_client_metadata",
            "client_credentials",
        ),
        (
            json!({"redirect_uris": [REDIRECT], "logo_uri": "http://agent.example/logo.png"}),
            "invalid_client_metadata",
            "`logo_uri`",
        ),
    ] {
        let r = register(&lk, metadata.clone()).await;
        assert_eq!(r.status, 400, "{metadata}: {}", r.body);
        let e = &r.json()["error"];
        assert_eq!(e["oauth_error"], oauth_error, "{metadata}: {}", r.body);
        assert!(e["message"].as_str().unwrap().contains(says), "{metadata}: {}", r.body);
    }
    let r = Reply::read(lk.http.post(lk.url("/v1/mcp/register")).body("not json").send().await.unwrap()).await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Registrations are bounded per time (here the default: 2 a second, bursts of 4).
    let slow = Latchkey::start(bin(), "");
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(register(&slow, json!({"redirect_uris": [REDIRECT]})).await.status);
    }
    assert!(statuses.contains(&201) && statuses.contains(&429), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_signed_in_by_the_app_approves_and_the_client_gets_tokens_only_mcp_accepts() {
    let lk = Latchkey::start(bin(), &config(""));
    let app = lk.app_key("live").await;
    let client_id = client(&lk, "Agent <b>bold</b>").await;

    // The consent page: escaped, unverified, the user, the redirect host, the tools in words.
    let (page, jar) = consent_page(&lk, &app, &client_id, &[("scope", "connector:bin")], "alice").await;
    let html = &page.body;
    assert!(html.contains("Agent &lt;b&gt;bold&lt;/b&gt;") && !html.contains("<b>bold</b>"), "{html}");
    assert!(html.contains("unverified") && html.contains("alice") && html.contains("127.0.0.1:9"), "{html}");
    assert!(html.contains("Use the tools of bin") && html.contains("bin_get"), "{html}");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("form-action 'self' http://127.0.0.1:9") && csp.contains("default-src 'none'"), "{csp}");
    // A forged answer (no CSRF token) does nothing; deny sends the client `access_denied`.
    let r = decide(&lk, &jar, "forged", "approve").await;
    assert_eq!(r.status, 403, "{}", r.body);
    let r = decide(&lk, &jar, &csrf_of(html), "deny").await;
    let q = query_of(&location(&r));
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str(), q["iss"].as_str()),
        ("access_denied", "st-1", lk.base_url.as_str())
    );

    // Approved: a code, exchanged once for tokens with `aud` = /mcp and the scope.
    let code = code(&lk, &app, &client_id, &[("scope", "connector:bin")]).await;
    let r = exchange(&lk, &code, &client_id).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers["cache-control"], "no-store");
    let t = r.json();
    assert_eq!(t["scope"], "connector:bin");
    let c = claims(t["access_token"].as_str().unwrap());
    assert_eq!(
        (c["aud"].as_str(), c["scope"].as_str(), c["sub"].as_str()),
        (Some(lk.url("/mcp").as_str()), Some("connector:bin"), Some("alice"))
    );
    let access = t["access_token"].as_str().unwrap().to_owned();
    // /mcp takes it; the rest of the API does not.
    let r = mcp_tools(&lk, &access).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["result"]["tools"].as_array().is_some(), "{}", r.body);
    let r = Reply::read(lk.http.get(lk.url("/v1/connections")).bearer_auth(&access).send().await.unwrap()).await;
    assert_eq!(r.status, 401, "an MCP client's token reached /v1/connections: {}", r.body);
    // Refreshed: the same scope and audience.
    let r =
        token(&lk, &[("grant_type", "refresh_token"), ("refresh_token", t["refresh_token"].as_str().unwrap())]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c2 = claims(r.json()["access_token"].as_str().unwrap());
    assert_eq!((c2["aud"].clone(), c2["scope"].clone()), (c["aud"].clone(), c["scope"].clone()));
    let next = r.json();

    // The same code again: refused, and the tokens it gave are revoked.
    let r = exchange(&lk, &code, &client_id).await;
    assert_eq!((r.status, r.json()["error"]["oauth_error"].as_str()), (400, Some("invalid_grant")), "{}", r.body);
    assert_eq!(
        mcp_tools(&lk, next["access_token"].as_str().unwrap()).await.status,
        401,
        "a replay left the tokens alive"
    );

    // An app-minted token with a scope works everywhere it did (its aud is the configured one).
    Reply::read(lk.http.post(lk.url("/v1/users")).bearer_auth(&app).json(&json!({"id": "bob"})).send().await.unwrap())
        .await;
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/users/bob/tokens"))
            .bearer_auth(&app)
            .json(&json!({"scope": "tool:bin_get"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.json()["scope"].as_str()), (201, Some("tool:bin_get")), "{}", r.body);
    let minted = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(claims(&minted)["scope"], "tool:bin_get");
    assert_eq!(mcp_tools(&lk, &minted).await.status, 200);
    let r = Reply::read(lk.http.get(lk.url("/v1/connections")).bearer_auth(&minted).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/users/bob/tokens"))
            .bearer_auth(&app)
            .json(&json!({"scope": "admin"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((r.status, r.json()["error"]["oauth_error"].as_str()), (400, Some("invalid_scope")), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_of_the_authorization_and_token_endpoints() {
    let lk = Latchkey::start(bin(), &config(""));
    let app = lk.app_key("live").await;
    let client_id = client(&lk, "Agent").await;
    let other = client(&lk, "Other").await;

    // Before the redirect URI is trusted: a page, never a redirect.
    for (url, says) in [
        (authorize_url(&lk, "mcp_unknown", &[]), "not registered"),
        (authorize_url(&lk, &client_id, &[("redirect_uri", "http://127.0.0.1:9/evil")]), "registered redirect URIs"),
        (lk.url("/oauth/authorize?response_type=code"), "names no client"),
    ] {
        let r = get(&lk, &url, None).await;
        assert_eq!(r.status, 400, "{url}: {}", r.body);
        assert!(r.headers.get("location").is_none(), "{url} redirected");
        assert!(r.body.starts_with("<!DOCTYPE html>") && r.body.contains(says), "{url}: {}", r.body);
    }
    // After: back to the client with `error`, `state` and `iss`.
    let mut no_pkce = url::Url::parse(&authorize_url(&lk, &client_id, &[])).unwrap();
    let kept: Vec<(String, String)> =
        no_pkce.query_pairs().into_owned().filter(|(k, _)| !k.starts_with("code_challenge")).collect();
    no_pkce.query_pairs_mut().clear().extend_pairs(kept);
    for (url, error) in [
        (no_pkce.to_string(), "invalid_request"),
        (authorize_url(&lk, &client_id, &[("code_challenge_method", "plain")]), "invalid_request"),
        (authorize_url(&lk, &client_id, &[("resource", "https://elsewhere.example/mcp")]), "invalid_target"),
        (authorize_url(&lk, &client_id, &[("scope", "tools email")]), "invalid_scope"),
    ] {
        let r = get(&lk, &url, None).await;
        assert_eq!(r.status, 302, "{url}: {}", r.body);
        let to = location(&r);
        assert!(to.starts_with(REDIRECT), "{to}");
        let q = query_of(&to);
        assert_eq!(
            (q["error"].as_str(), q["state"].as_str(), q["iss"].as_str()),
            (error, "st-1", lk.base_url.as_str()),
            "{to}"
        );
    }

    // The token endpoint: wrong verifier, wrong client, wrong redirect URI, foreign resource.
    let refused = |r: &Reply| r.json()["error"]["oauth_error"].as_str().unwrap_or_default().to_owned();
    let c = code(&lk, &app, &client_id, &[]).await;
    let r = token(
        &lk,
        &[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("code_verifier", &"x".repeat(43)),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!((r.status, refused(&r)), (400, "invalid_grant".into()), "{}", r.body);
    assert!(r.body.contains("code_verifier"), "{}", r.body);
    let c = code(&lk, &app, &client_id, &[]).await;
    let r = exchange(&lk, &c, &other).await;
    assert_eq!(refused(&r), "invalid_grant", "{}", r.body);
    let c = code(&lk, &app, &client_id, &[]).await;
    let r = token(
        &lk,
        &[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("code_verifier", VERIFIER),
            ("client_id", &client_id),
            ("redirect_uri", "http://127.0.0.1:9/other"),
        ],
    )
    .await;
    assert_eq!(refused(&r), "invalid_grant", "{}", r.body);
    let c = code(&lk, &app, &client_id, &[]).await;
    let r = token(
        &lk,
        &[
            ("grant_type", "authorization_code"),
            ("code", &c),
            ("code_verifier", VERIFIER),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
            ("resource", "https://elsewhere.example/mcp"),
        ],
    )
    .await;
    assert_eq!(refused(&r), "invalid_target", "{}", r.body);
    let r = token(
        &lk,
        &[
            ("grant_type", "authorization_code"),
            ("code", "mcpc_nope"),
            ("client_id", &client_id),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    assert_eq!(refused(&r), "invalid_request", "no verifier: {}", r.body);
    // An expired code (60 seconds; here aged in the store).
    let c = code(&lk, &app, &client_id, &[]).await;
    let db = latchkey_store::SqliteStore::open(&lk.data_dir.join("latchkey.db")).await.unwrap();
    sqlx::query("UPDATE auth_grants SET expires_at = 0 WHERE kind = 'code'").execute(db.pool()).await.unwrap();
    let r = exchange(&lk, &c, &client_id).await;
    assert_eq!(refused(&r), "invalid_grant", "{}", r.body);
    assert!(r.body.contains("expired"), "{}", r.body);
    // Codes are stored hashed: the code itself is nowhere in the database.
    let raw = std::fs::read(lk.data_dir.join("latchkey.db")).unwrap();
    assert!(!raw.windows(c.len()).any(|w| w == c.as_bytes()), "a code is stored in the clear");

    // The app's sign-in: an unknown request, a key of the other environment.
    let dev = lk.app_key("dev").await;
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/mcp/sign-in"))
            .bearer_auth(&app)
            .json(&json!({"request": "mcpr_nope", "user": "alice"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = get(&lk, &authorize_url(&lk, &client_id, &[]), None).await;
    let request = query_of(&location(&r))["request"].clone();
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/mcp/sign-in"))
            .bearer_auth(&dev)
            .json(&json!({"request": request, "user": "alice"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    // The consent page without the cookie: a page saying so.
    let r = get(&lk, &lk.url("/oauth/authorize"), None).await;
    assert!(r.status == 400 && r.body.contains("no authorization in progress"), "{}", r.body);
}

/// A one-file HTTP server that answers every request with `body` (the client ID metadata
/// document), counting requests.
async fn document_server(
    path: &str,
    body: impl Fn(&str) -> Value + Send + 'static,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}{path}", listener.local_addr().unwrap());
    let text = body(&url).to_string();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { continue };
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let text = text.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = sock.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncache-control: max-age=60\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (url, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_metadata_document_is_fetched_checked_and_kept() {
    let lk = Latchkey::start(bin(), &config(""));
    let app = lk.app_key("live").await;
    let (doc, fetched) = document_server("/agent.json", |url| {
        json!({"client_id": url, "client_name": "Doc Agent", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"})
    })
    .await;
    // The document names the client: consent says who vouches for the name.
    let (page, _) = consent_page(&lk, &app, &doc, &[], "carol").await;
    assert!(page.body.contains("Doc Agent") && page.body.contains("published by 127.0.0.1"), "{}", page.body);
    assert!(!page.body.contains("unverified"), "{}", page.body);
    let c = code(&lk, &app, &doc, &[]).await;
    let r = exchange(&lk, &c, &doc).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Kept as its answer said (60 s): three authorizations, one fetch.
    assert_eq!(fetched.load(std::sync::atomic::Ordering::SeqCst), 1);
    // A redirect URI the document does not list: a page.
    let r = get(&lk, &authorize_url(&lk, &doc, &[("redirect_uri", "http://127.0.0.1:9/elsewhere")]), None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // A document whose client_id is another URL: refused, on a page.
    let (liar, _) = document_server(
        "/liar.json",
        |_| json!({"client_id": "https://agent.example/c.json", "redirect_uris": [REDIRECT]}),
    )
    .await;
    let r = get(&lk, &authorize_url(&lk, &liar, &[]), None).await;
    assert!(r.status == 400 && r.body.contains("is not the document"), "{}", r.body);
    // Without the development setting, an http client ID is refused, and a private address is
    // never fetched.
    let strict = Latchkey::start(bin(), "");
    let r = get(&strict, &authorize_url(&strict, &doc, &[]), None).await;
    assert!(r.status == 400 && r.body.contains("https"), "{}", r.body);
    let r = get(&strict, &authorize_url(&strict, "https://127.0.0.1:9/agent.json", &[]), None).await;
    assert!(r.status == 400 && r.body.contains("non-public"), "{}", r.body);
    assert_eq!(fetched.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// `target/screenshots/<test>`, emptied.
fn screenshot_dir(test: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("screenshots").join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The real client: the official Python SDK, given only `<public_url>/mcp`, discovers Latchkey
/// as the authorization server, registers, and sends the user to authorize; in headless
/// Chromium the user signs in at oidc-provider (the `login = true` connector) and allows the
/// client on the consent page; the SDK exchanges the code, lists the tools and calls one as the
/// user. Nothing the client received holds the provider's token or the connector's secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_sdk_signs_a_user_in_through_oidc_provider_in_a_browser_and_calls_a_tool() {
    use latchkey_testkit::peers::browser::run_steps;
    use latchkey_testkit::peers::mcp;
    use latchkey_testkit::peers::oidc::oidc;

    let lk = Latchkey::start(bin(), "[server]\napi_connectors_private_egress = true\n");
    let o = oidc();
    let registered = o
        .register("client_secret_basic", &["authorization_code", "refresh_token"], &[&lk.url("/oauth/callback")])
        .await;
    let secret = registered.client_secret.clone().unwrap();
    lk.put_secret("cs", "live", &secret).await;
    let def = json!({"base_url": httpbin().base_url, "token_exchange": true, "auth": {
        "method": "oauth2_authorization_code", "authorize_url": o.authorize_url, "token_url": o.token_url,
        "client_id": registered.client_id, "client_secret": {"secret": "cs"}, "scope": "openid email",
        "profile_url": o.userinfo_url, "user_id_path": "sub", "login": true, "issuer": o.issuer},
        "calls": {"uuid": {"path": "/uuid", "access": "user", "mcp": true, "tool_name": "new_uuid",
            "description": "A fresh UUID from httpbin, called as you."}}});
    let r =
        Reply::read(lk.admin_req(reqwest::Method::PUT, "/v1/admin/connectors/idp").json(&def).send().await.unwrap())
            .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let dir = screenshot_dir("mcp_oauth_sdk");
    let base = lk.base_url.clone();
    let shots = dir.clone();
    let report = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let kept = report.clone();
    let request =
        json!({"url": lk.url("/mcp"), "client_name": "SDK agent", "calls": [{"name": "new_uuid", "arguments": {}}]});
    let out = tokio::task::spawn_blocking(move || {
        mcp::run_oauth(&request, |authorize| {
            let path = authorize.strip_prefix(&base).ok_or_else(|| format!("not Latchkey's: {authorize}"))?;
            let steps = json!([
                {"goto": path},
                // oidc-provider: its login, then its consent.
                {"fill": "input[name=login]", "value": "alice"},
                {"fill": "input[name=password]", "value": "any-password"},
                {"click": "button[type=submit]"},
                {"click": "button[type=submit]"},
                // Latchkey's consent page.
                {"expect_path": "/oauth/authorize"},
                {"expect_text": "Allow access?"},
                {"expect_text": "SDK agent"},
                {"expect_text": "new_uuid"},
                {"click": "button[value=approve]"},
                {"expect_text": "Signed in"},
            ]);
            let input = json!({"base_url": base, "steps": steps, "screenshot_dir": shots, "timeout_ms": 90000});
            let r = run_steps(&input)?;
            *kept.lock().unwrap() = r;
            Ok(())
        })
    })
    .await
    .unwrap();
    assert!(out.get("error").is_none(), "the SDK failed: {}", out["error"]);

    // The browser's visit: the consent page says who asks and what for, escaped, and nothing
    // of Latchkey's loads from another origin.
    let report = report.lock().unwrap().clone();
    let pages = report["pages"].as_array().unwrap();
    let consent = pages.iter().find(|p| p["url"].as_str().unwrap().ends_with("/oauth/authorize")).unwrap();
    let html = consent["html"].as_str().unwrap();
    assert!(html.contains("unverified") && html.contains("127.0.0.1"), "{html}");
    assert!(std::fs::read_dir(&dir).unwrap().count() >= 4, "screenshots in {}", dir.display());
    let requests: Vec<&str> = report["requests"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert!(requests.iter().any(|r| r.starts_with(&lk.url("/oauth/authorize/signed-in"))), "{requests:?}");

    // The SDK registered, got a token for /mcp with scope `tools`, listed and called the tool.
    assert!(out["client"]["client_id"].as_str().unwrap().starts_with("mcp_"), "{}", out["client"]);
    let access = out["tokens"]["access_token"].as_str().unwrap();
    let c = claims(access);
    assert_eq!((c["aud"].as_str(), c["scope"].as_str()), (Some(lk.url("/mcp").as_str()), Some("tools")));
    let tools: Vec<&str> = out["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tools, ["new_uuid"], "{}", out["tools"]);
    let result = &out["results"][0];
    assert_ne!(result["isError"], true, "{result}");
    assert!(result["content"][0]["text"].as_str().unwrap().contains("uuid"), "{result}");

    // Canaries: the provider's access token (had through token exchange) and the connector's
    // client secret never reached the client.
    let app = lk.app_key("live").await;
    let user = c["sub"].as_str().unwrap();
    let minted =
        Reply::read(lk.http.post(lk.url(&format!("/v1/users/{user}/tokens"))).bearer_auth(&app).send().await.unwrap())
            .await;
    let subject = minted.json()["access_token"].as_str().unwrap().to_owned();
    let x = token_exchange(&lk, &app, &subject).await;
    assert_eq!(x.status, 200, "{}", x.body);
    let provider_token = x.json()["access_token"].as_str().unwrap().to_owned();
    let received =
        out["received"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect::<Vec<_>>().join("\n");
    assert!(received.contains("new_uuid"), "the scan saw nothing: {received}");
    for (what, value) in
        [("the provider's access token", provider_token.as_str()), ("the client secret", secret.as_str())]
    {
        assert!(!received.contains(value), "{what} reached the MCP client");
        assert!(!out.to_string().contains(value), "{what} reached the MCP client");
    }
}

async fn token_exchange(lk: &Latchkey, app: &str, subject: &str) -> Reply {
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("subject_token", subject),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ("resource", "idp"),
    ];
    Reply::read(lk.http.post(lk.url("/v1/token")).bearer_auth(app).form(&form).send().await.unwrap()).await
}
