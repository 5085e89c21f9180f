//! GitHub App installation tokens: `oauth2_custom_token` with `auth.jwt` (a fresh RS256 app
//! JWT per token request, `<jwt>` in `Authorization`) and `expires_at_name` (GitHub answers
//! `{"token", "expires_at"}`), against a mimic of GitHub's endpoint whose PyJWT verifies the
//! JWT (`peers/github_app`): through a named call and the proxy, refreshed before the absolute
//! expiry, live and dev with their own keys (a refused one, then the app's second), a rotated
//! key obtaining new tokens, and no key, JWT or token in what Latchkey says, logs or stores in
//! the clear.

use latchkey_testkit::canary::{find, read_dir_bytes};
use latchkey_testkit::peers::github_app::{GitHubApp, github_app};
use reqwest::Method;
use serde_json::json;

use super::*;

/// Connectors `gh` (tokens of `short` installation, each call inside its refresh window) and
/// `gh_long` (`long` installation), both with the app key `gh_app_key`.
fn config(gh: &GitHubApp, short: u64, long: u64) -> String {
    let connector = |name: &str, installation: u64, extra: &str| {
        format!(
            "[connectors.{name}]\nbase_url = \"{base}\"\n{extra}\n\
             auth = {{ method = \"oauth2_custom_token\", token_url = \"{url}\", \
             token_headers = {{ Authorization = \"Bearer <jwt>\", X-GitHub-Api-Version = \"2022-11-28\" }}, token_body = {{}}, \
             token_name = \"token\", expires_at_name = \"expires_at\", \
             jwt = {{ private_key = {{ secret = \"gh_app_key\" }}, claims = {{ iss = \"{app}\" }} }} }}\n\
             [connectors.{name}.calls.repos]\npath = \"/installation/repositories\"\n",
            base = gh.base_url,
            url = gh.token_url(installation),
            app = gh.app_id,
        )
    };
    // Tokens of `short` live 60 s: with `refresh_skew_s = 60` every call refreshes before expiry.
    connector("gh", short, "refresh_skew_s = 60") + &connector("gh_long", long, "")
}

/// The 48 characters in the middle of a PEM key's base64 body: a canary of it.
fn key_canary(pem: &str) -> String {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    body[200..248].to_owned()
}

#[tokio::test]
async fn a_github_app_installation_token_through_a_call_and_the_proxy_refreshed_before_it_expires() {
    let gh = github_app();
    let (short, long) = (gh.installation(60), gh.installation(3600));
    let env = vec![("LATCHKEY_LOG".to_owned(), "debug".to_owned())];
    let lk =
        Latchkey::start_with(bin(), Options { config: config(gh, short, long), env, ..Options::default() }).unwrap();
    lk.put_secret("gh_app_key", "live", &gh.key_pem).await;
    let (live, dev) = (lk.app_key("live").await, lk.app_key("dev").await);
    let mut latchkey_wrote = String::new();

    // A named call: one token request, whose JWT GitHub's rules accept.
    let r = lk.call(&live, "gh", "repos", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["repositories"][0], json!({"full_name": "octo-org/hello", "installation": short}));
    let s = gh.stats(short);
    assert_eq!((s.token_requests, s.refused, s.resource_ok), (1, 0, 1));
    let first = &s.jwts[0];
    let claims = &first["claims"];
    assert_eq!(claims.as_object().unwrap().keys().collect::<Vec<_>>(), ["exp", "iat", "iss"], "{claims}");
    assert_eq!(claims["iss"], "123456");
    let iat = claims["iat"].as_f64().unwrap();
    assert_eq!(claims["exp"].as_f64().unwrap() - iat, 600.0, "540 s ahead of a request made 60 s after iat");
    assert!(first["received_at"].as_f64().unwrap() - iat >= 59.0, "iat is not backdated: {first}");

    // The proxy: the token is inside its refresh window (60 s before an expiry 60 s away), so a
    // new one is obtained while the first still works, with a new JWT; the call uses it.
    let r = Reply::read(
        lk.http.get(lk.url("/v1/proxy/gh/installation/repositories")).bearer_auth(&live).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let s = gh.stats(short);
    assert_eq!((s.token_requests, s.refused, s.resource_ok, s.resource_refused), (2, 0, 2, 0));
    assert_ne!(s.jwts[0]["token"], s.jwts[1]["token"]);

    // A token that lives an hour is kept: two calls, one token request.
    for _ in 0..2 {
        assert_eq!(lk.call(&live, "gh_long", "repos", json!({})).await.status, 200);
    }
    let s = gh.stats(long);
    assert_eq!((s.token_requests, s.resource_ok), (1, 2));
    let live_token = s.jwts[0]["token"].clone();

    // Dev with a key that is not the app's: GitHub's 401, clearly, and no token.
    lk.put_secret("gh_app_key", "dev", &gh.unregistered_key_pem).await;
    let r = lk.call(&dev, "gh_long", "repos", json!({})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{}", r.body);
    assert_eq!(r.json()["error"]["provider_status"], 401, "{}", r.body);
    latchkey_wrote.push_str(&r.all_text());
    assert_eq!(gh.stats(long).refused, 1);

    // Dev with the app's second key: its own token (the refusal is over once the key changed).
    lk.put_secret("gh_app_key", "dev", &gh.second_key_pem).await;
    assert_eq!(lk.call(&dev, "gh_long", "repos", json!({})).await.status, 200);
    let s = gh.stats(long);
    assert_eq!((s.token_requests, s.refused, s.resource_ok), (3, 1, 3));
    assert_eq!((&s.jwts[0]["key"], &s.jwts[1]["key"]), (&json!("first"), &json!("second")));

    // The live key rotated to the second key too: the grant changed, so the next call gets a
    // new token with a JWT the second key signed, though the old token has an hour left.
    lk.put_secret("gh_app_key", "live", &gh.second_key_pem).await;
    assert_eq!(lk.call(&live, "gh_long", "repos", json!({})).await.status, 200);
    let s = gh.stats(long);
    assert_eq!((s.token_requests, s.refused, s.resource_ok), (4, 1, 4));
    let last = s.jwts.last().unwrap();
    assert_eq!(last["key"], "second");
    assert!(s.jwts[..2].iter().all(|j| j["token"] != last["token"]), "live reused an old token");
    assert_eq!(s.jwts[0]["token"], live_token);

    // Nothing secret in what Latchkey said, logged or stored in the clear.
    for path in ["/v1/admin/secrets", "/v1/admin/connectors", "/v1/admin/tokens", "/v1/admin/events", "/metrics"] {
        let r = Reply::read(lk.admin_req(Method::GET, path).send().await.unwrap()).await;
        assert_eq!(r.status, 200, "{path}");
        latchkey_wrote.push_str(&r.all_text());
    }
    let mut canaries: Vec<String> =
        [&gh.key_pem, &gh.second_key_pem, &gh.unregistered_key_pem].iter().map(|k| key_canary(k)).collect();
    for inst in [short, long] {
        for j in gh.stats(inst).jwts {
            canaries.extend(["jwt", "token"].iter().map(|k| j[*k].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!(canaries.len(), 3 + 2 * 5);
    let found = find(latchkey_wrote.as_bytes(), &canaries);
    assert!(found.is_empty(), "Latchkey's answers carry secrets: {found:?}");
    let found = find(&lk.output_bytes(), &canaries);
    assert!(found.is_empty(), "the log carries secrets: {found:?}");
    let found = find(&read_dir_bytes(&lk.data_dir), &canaries);
    assert!(found.is_empty(), "the data directory holds secrets in the clear: {found:?}");
}

#[test]
fn check_names_a_jwt_placeholder_without_its_key_and_a_key_nothing_uses() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let head = "base_url = \"https://api.github.com\"\nauth = { method = \"oauth2_custom_token\", \
                token_url = \"https://api.github.com/app/installations/1/access_tokens\"";
    std::fs::write(
        work.path().join("latchkey.toml"),
        format!(
            "[connectors.a]\n{head}, token_headers = {{ Authorization = \"Bearer <jwt>\" }}, token_body = {{}} }}\n\
             [connectors.b]\n{head}, token_body = {{}}, jwt = {{ private_key = {{ secret = \"k\" }}, lifetime_s = 601, alg = \"RS256\" }} }}\n"
        ),
    )
    .unwrap();
    let out = latchkey_testkit::latchkey::run_cli(bin(), work.path(), &data, &[], &["check"], None);
    let t = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("the configuration has 2 problems"), "{t}");
    assert!(
        t.contains("connector `a`, field `auth.token_headers.Authorization`: uses `<jwt>`, but `auth.jwt` is not set"),
        "{t}"
    );
    assert!(t.contains("connector `b`, field `auth.jwt`: is set but `<jwt>` is used nowhere"), "{t}");
}

#[test]
fn check_reports_an_app_key_that_is_no_private_key_once_it_is_set() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::write(
        work.path().join("latchkey.toml"),
        "[connectors.gh]\nbase_url = \"https://api.github.com\"\nauth = { method = \"oauth2_custom_token\", \
         token_url = \"https://api.github.com/app/installations/1/access_tokens\", \
         token_headers = { Authorization = \"Bearer <jwt>\" }, token_body = {}, token_name = \"token\", \
         expires_at_name = \"expires_at\", jwt = { private_key = { secret = \"k\" }, claims = { iss = \"1\" } } }\n",
    )
    .unwrap();
    let run = |args: &[&str], stdin: Option<&str>| {
        let out = latchkey_testkit::latchkey::run_cli(bin(), work.path(), &data, &[], args, stdin);
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, t) = run(&["check"], None);
    assert!(ok && t.contains("warning: connector `gh`, field `auth.jwt.private_key`: secret `k` is missing"), "{t}");
    let (ok, t) = run(
        &["secret", "set", "k"],
        Some("-----BEGIN RSA PRIVATE KEY-----\nCANARYnope\n-----END RSA PRIVATE KEY-----\n"),
    );
    assert!(ok, "{t}");
    let (ok, t) = run(&["check", "--strict"], None);
    assert!(!ok, "{t}");
    assert!(
        t.contains(
            "connector `gh`, field `auth`: live: oauth2_custom_token: jwt.private_key: this is not a private key in PEM"
        ),
        "{t}"
    );
    assert!(!t.contains("CANARY"), "{t}");
}
