//! OAuth 1.0a (RFC 5849) against oauthlib's provider (PyPI `oauthlib`, `peers/oauth1`), which
//! checks every signature: each signature method in the header, the query and the form body,
//! by named calls and the proxy, live and dev with their own secrets; a wrong secret refused by
//! the provider; the signature of the exact request sent computed again by oauthlib's client;
//! the secrets in no output, answer or file.

use serde_json::{Value, json};

use latchkey_testkit::canary::{canary, find, read_dir_bytes};
use latchkey_testkit::peers::oauth1::{OAuth1Peer, oauth1_peer};
use latchkey_testkit::recorder::Recorder;

use super::*;

const METHODS: [&str; 4] = ["HMAC-SHA1", "HMAC-SHA256", "PLAINTEXT", "RSA-SHA1"];
const PLACES: [&str; 3] = ["header", "query", "body"];

fn name(method: &str, place: &str) -> String {
    format!("{}_{place}", method.to_ascii_lowercase().replace('-', ""))
}

/// One connector per signature method and place, at `base_url`, with a named call `echo`
/// (`GET /api/echo?q=<q>`).
fn connectors(peer: &OAuth1Peer, base_url: &str) -> String {
    let mut out = String::new();
    for method in METHODS {
        for place in PLACES {
            let n = name(method, place);
            let keys = if method == "RSA-SHA1" {
                format!(
                    r#"consumer_key = "{}", private_key = {{ secret = "rsa_key" }}, token = {{ secret = "rsa_tok" }}, token_secret = {{ secret = "rsa_ts" }}"#,
                    peer.rsa_consumer_key
                )
            } else {
                format!(
                    r#"consumer_key = "{}", consumer_secret = {{ secret = "cs" }}, token = {{ secret = "tok" }}, token_secret = {{ secret = "ts" }}"#,
                    peer.consumer_key
                )
            };
            out.push_str(&format!(
                r#"
[connectors.{n}]
base_url = "{base_url}"
auth = {{ method = "oauth1", {keys}, signature_method = "{method}", signature_in = "{place}" }}
[connectors.{n}.calls.echo]
path = "/api/echo"
query = {{ q = "<q>" }}
[connectors.{n}.calls.echo.params]
q = {{ required = true }}
"#
            ));
        }
    }
    out
}

async fn put_secrets(lk: &Latchkey, peer: &OAuth1Peer) {
    for env in ["live", "dev"] {
        lk.put_secret("cs", env, peer.secret(env)).await;
        let t = peer.token(false, env);
        lk.put_secret("tok", env, &t.token).await;
        lk.put_secret("ts", env, &t.secret).await;
        let t = peer.token(true, env);
        lk.put_secret("rsa_tok", env, &t.token).await;
        lk.put_secret("rsa_ts", env, &t.secret).await;
        lk.put_secret("rsa_key", env, &peer.rsa_private_pem).await;
    }
}

async fn proxied_form(lk: &Latchkey, key: &str, connector: &str, form: &str) -> Reply {
    let req = lk
        .http
        .post(lk.url(&format!("/v1/proxy/{connector}/api/echo?x=%7Eone+two")))
        .bearer_auth(key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    Reply::read(req.send().await.unwrap()).await
}

fn signature_type(place: &str) -> &'static str {
    match place {
        "header" => "AUTH_HEADER",
        "query" => "QUERY",
        _ => "BODY",
    }
}

/// Every method in every place, named and proxied, live and dev: oauthlib verifies each
/// request with the environment's consumer secret (or the RSA public key) and token secret.
#[tokio::test]
async fn every_signature_method_in_the_header_query_and_body_named_and_proxied_live_and_dev() {
    let peer = oauth1_peer();
    let lk = Latchkey::start(bin(), &connectors(peer, &peer.base_url));
    put_secrets(&lk, peer).await;
    let keys = [("live", lk.app_key("live").await), ("dev", lk.app_key("dev").await)];
    let mut replies = Vec::new();
    for method in METHODS {
        for place in PLACES {
            let n = name(method, place);
            for (env, key) in &keys {
                let label = if method == "RSA-SHA1" { format!("rsa-{env}") } else { (*env).to_owned() };
                let consumer = if method == "RSA-SHA1" { &peer.rsa_consumer_key } else { &peer.consumer_key };
                let what = format!("{n} {env}");
                if place != "body" {
                    let r = lk.call(key, &n, "echo", json!({"q": "a b&c=d/é~"})).await;
                    assert_eq!(r.status, 200, "{what}: {}", r.body);
                    let v = r.json();
                    assert_eq!(
                        (&v["client_key"], &v["token"], &v["signature_method"], &v["signature_type"]),
                        (&json!(consumer), &json!(label), &json!(method), &json!(signature_type(place))),
                        "{what}: {v}"
                    );
                    assert_eq!(v["params"], json!([["q", "a b&c=d/é~"]]), "{what}");
                    replies.push(r);
                } else {
                    // A named call sends JSON, which cannot carry the signature.
                    let r = lk.call(key, &n, "echo", json!({"q": "x"})).await;
                    assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{what}: {}", r.body);
                    assert!(r.body.contains("application/x-www-form-urlencoded"), "{}", r.body);
                    replies.push(r);
                }
                // The proxy, with a form body: its parameters are signed too (§3.4.1.3.1).
                let r = proxied_form(&lk, key, &n, "b=two+words&a=%3D1&oauth_token=caller").await;
                assert_eq!(r.status, 200, "{what} proxied: {}", r.body);
                let v = r.json();
                assert_eq!(
                    (&v["token"], &v["signature_method"], &v["signature_type"]),
                    (&json!(label), &json!(method), &json!(signature_type(place))),
                    "{what} proxied: {v}"
                );
                let mut params: Vec<Value> = v["params"].as_array().unwrap().clone();
                params.sort_by_key(ToString::to_string);
                assert_eq!(params, [json!(["a", "=1"]), json!(["b", "two words"]), json!(["x", "~one two"])], "{what}");
                replies.push(r);
            }
        }
    }
    // A proxied GET without a body signs in every place but the body.
    let r = Reply::read(
        lk.http.get(lk.url("/v1/proxy/hmacsha1_query/api/echo?q=1")).bearer_auth(&keys[0].1).send().await.unwrap(),
    )
    .await;
    assert_eq!((r.status, &r.json()["signature_type"]), (200, &json!("QUERY")), "{}", r.body);

    // The secrets: in no answer, no output, no file.
    let canaries = peer.canaries();
    let answers: String = replies.iter().map(Reply::all_text).collect();
    assert!(find(answers.as_bytes(), &canaries).is_empty(), "a secret in an answer");
    let admin_line = format!("Admin key (shown only this once; keep it safe): {}", lk.admin());
    let log = lk.output().replace(&admin_line, "");
    assert!(find(log.as_bytes(), &canaries).is_empty(), "a secret in the output:\n{log}");
    assert!(find(&read_dir_bytes(&lk.data_dir), &canaries).is_empty(), "a secret in plaintext on disk");
}

/// A consumer secret the provider does not hold: the provider's 401 comes back; the secret
/// is in no answer or output. Without a token (two-legged, consumer only) the signature is
/// checked alone.
#[tokio::test]
async fn a_wrong_consumer_secret_is_refused_by_the_provider_and_a_consumer_alone_signs() {
    let peer = oauth1_peer();
    let auth = format!(
        r#"{{ method = "oauth1", consumer_key = "{}", consumer_secret = {{ secret = "cs" }}, token = {{ secret = "tok" }}, token_secret = {{ secret = "ts" }} }}"#,
        peer.consumer_key
    );
    let calls = "[connectors.up.calls.echo]\npath = \"/api/echo\"\n";
    let lk = with_connector(&peer.base_url, &auth, calls);
    let wrong = canary("o1wrong");
    lk.put_secret("cs", "live", &wrong).await;
    let t = peer.token(false, "live");
    lk.put_secret("tok", "live", &t.token).await;
    lk.put_secret("ts", "live", &t.secret).await;
    let key = lk.app_key("live").await;
    let r = lk.call(&key, "up", "echo", json!({})).await;
    assert_eq!((r.status, r.json()), (401, json!({"error": "invalid_request"})), "{}", r.body);
    // The right one, set again, is taken at once.
    lk.put_secret("cs", "live", peer.secret("live")).await;
    let r = lk.call(&key, "up", "echo", json!({})).await;
    assert_eq!((r.status, &r.json()["token"]), (200, &json!("live")), "{}", r.body);
    let mut canaries = peer.canaries();
    canaries.push(wrong);
    assert!(find(lk.output().as_bytes(), &canaries).is_empty(), "a secret in the output");

    let auth = format!(
        r#"{{ method = "oauth1", consumer_key = "{}", consumer_secret = {{ secret = "cs" }} }}"#,
        peer.consumer_key
    );
    let lk = with_connector(&peer.base_url, &auth, calls);
    lk.put_secret("cs", "live", peer.secret("live")).await;
    let key = lk.app_key("live").await;
    let r = lk.call(&key, "up", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((&r.json()["token"], &r.json()["endpoint"]), (&Value::Null, &json!("SignatureOnlyEndpoint")));
}

/// The exact request Latchkey sent (to a recorder), signed again by oauthlib's client with the
/// same nonce and timestamp: the same `oauth_signature`, for every method and place.
#[tokio::test]
async fn oauthlibs_client_computes_the_same_signature_for_the_request_sent() {
    let peer = oauth1_peer();
    let rec = Recorder::start().await;
    let lk = Latchkey::start(bin(), &connectors(peer, &rec.base_url));
    put_secrets(&lk, peer).await;
    let key = lk.app_key("dev").await;
    for method in METHODS {
        for place in PLACES {
            let n = name(method, place);
            let r = proxied_form(&lk, &key, &n, "b=two+words&a=%3D1").await;
            assert_eq!(r.status, 200, "{n}: {}", r.body);
            let sent = rec.last();
            let content_type = sent.header("content-type").unwrap_or_default().to_owned();
            let body = String::from_utf8(sent.body.clone()).unwrap();
            let uri = format!("{}{}", rec.base_url, sent.uri);
            let (params, unsigned_uri, unsigned_body) =
                protocol_params(place, &uri, &body, sent.header("authorization"));
            let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap();
            let rsa = method == "RSA-SHA1";
            let t = peer.token(rsa, "dev");
            let input = json!({
                "consumer_key": get("oauth_consumer_key"),
                "consumer_secret": if rsa { Value::Null } else { json!(peer.secret("dev")) },
                "rsa_key": if rsa { json!(peer.rsa_private_pem) } else { Value::Null },
                "token": t.token, "token_secret": t.secret,
                "method": method, "type": place,
                "nonce": get("oauth_nonce"), "timestamp": get("oauth_timestamp"),
                "uri": unsigned_uri, "http_method": sent.method, "body": unsigned_body,
                "content_type": content_type,
            });
            assert_eq!(oauthlib_signature(&input), get("oauth_signature"), "{n}: {input}");
        }
    }
}

/// The protocol parameters Latchkey sent, and the URI and body without them.
fn protocol_params(
    place: &str,
    uri: &str,
    body: &str,
    authorization: Option<&str>,
) -> (Vec<(String, String)>, String, String) {
    // Protocol parameters are RFC 3986-encoded (no `+`), which form decoding reads the same.
    let decode = |s: &str| url::form_urlencoded::parse(format!("v={s}").as_bytes()).next().unwrap().1.into_owned();
    let split = |text: &str| -> (Vec<(String, String)>, String) {
        let (mut oauth, mut rest) = (Vec::new(), Vec::new());
        for pair in text.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k.starts_with("oauth_") {
                oauth.push((k.to_owned(), decode(v)));
            } else {
                rest.push(pair);
            }
        }
        (oauth, rest.join("&"))
    };
    match place {
        "header" => {
            let h = authorization.unwrap().strip_prefix("OAuth ").unwrap();
            let params = h
                .split(", ")
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap();
                    (k.to_owned(), decode(v.trim_matches('"')))
                })
                .collect();
            (params, uri.to_owned(), body.to_owned())
        }
        "query" => {
            let (base, query) = uri.split_once('?').unwrap();
            let (params, rest) = split(query);
            (params, format!("{base}?{rest}"), body.to_owned())
        }
        _ => {
            let (params, rest) = split(body);
            (params, uri.to_owned(), rest)
        }
    }
}

/// `oauth_signature` as oauthlib's client (`oauthlib.oauth1.Client`) computes it.
fn oauthlib_signature(input: &Value) -> String {
    const SCRIPT: &str = r#"
import json, sys
from oauthlib.oauth1 import Client
a = json.loads(sys.stdin.read())
types = {"header": "AUTH_HEADER", "query": "QUERY", "body": "BODY"}
c = Client(a["consumer_key"], client_secret=a["consumer_secret"], resource_owner_key=a["token"],
           resource_owner_secret=a["token_secret"], signature_method=a["method"],
           signature_type=types[a["type"]], rsa_key=a["rsa_key"], nonce=a["nonce"], timestamp=a["timestamp"])
uri, headers, body = c.sign(a["uri"], http_method=a["http_method"], body=a["body"] or None,
                            headers={"Content-Type": a["content_type"]})
from oauthlib.common import urldecode
from urllib.parse import urlparse, unquote
if a["type"] == "header":
    h = headers["Authorization"]
    sig = [p.split("=", 1)[1].strip('"') for p in h[6:].split(", ") if p.startswith("oauth_signature=")][0]
    print(unquote(sig))
elif a["type"] == "query":
    print(dict(urldecode(urlparse(uri).query))["oauth_signature"])
else:
    print(dict(urldecode(body))["oauth_signature"])
"#;
    use std::io::Write as _;
    let mut child = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (with oauthlib: bash scripts/install-test-peers)");
    child.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "oauthlib's client failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const RETURN_TO: &str = "https://app.example.com/done";

/// GETs `url` with `cookies`, keeps the cookies it sets; returns the redirect's Location.
async fn hop(http: &reqwest::Client, url: &str, cookies: &mut Vec<(String, String)>) -> String {
    let cookie: Vec<String> = cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut req = http.get(url);
    if !cookie.is_empty() {
        req = req.header("cookie", cookie.join("; "));
    }
    let resp = req.send().await.unwrap();
    for c in resp.headers().get_all("set-cookie") {
        let text = c.to_str().unwrap();
        let (kv, _) = text.split_once(';').unwrap_or((text, ""));
        let (k, v) = kv.split_once('=').unwrap();
        cookies.retain(|(n, _)| n != k);
        if !v.is_empty() {
            cookies.push((k.to_owned(), v.to_owned()));
        }
    }
    let status = resp.status();
    let location = resp.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
    match location {
        Some(l) => l,
        None => panic!("{url} answered {status} without a redirect: {}", resp.text().await.unwrap_or_default()),
    }
}

fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

/// Three-legged (`oauth1_authorization`) through the connect flow: `/start` obtains a request
/// token with the callback carrying the state, the provider approves and redirects back with
/// the verifier, Latchkey exchanges it; calls and the proxy then sign with the user's token
/// and secret (HMAC-SHA1 in the header; RSA-SHA1 in the query), live and dev each with its own
/// consumer secret and connection. A replayed callback is
/// refused; a call without a user or for a user without a connection says what to do; the
/// secrets the provider issued are in no answer, output or file.
#[tokio::test]
async fn three_legged_connections_through_the_connect_flow_sign_each_users_calls() {
    let peer = oauth1_peer();
    let urls = format!(
        r#"request_token_url = "{0}/oauth/request_token", authorize_url = "{0}/oauth/authorize", access_token_url = "{0}/oauth/access_token""#,
        peer.base_url
    );
    let config = format!(
        r#"[server]
return_to_allow = ["https://app.example.com/"]

[connectors.hmac]
base_url = "{base}"
auth = {{ method = "oauth1_authorization", consumer_key = "{ck}", consumer_secret = {{ secret = "cs" }}, {urls} }}
[connectors.hmac.calls.echo]
path = "/api/echo"
query = {{ q = "1" }}
access = "user"

[connectors.wrong]
base_url = "{base}"
auth = {{ method = "oauth1_authorization", consumer_key = "{ck}", consumer_secret = {{ secret = "wrong_cs" }}, {urls} }}

[connectors.rsa]
base_url = "{base}"
auth = {{ method = "oauth1_authorization", consumer_key = "{rck}", private_key = {{ secret = "rsa_key" }}, signature_method = "RSA-SHA1", signature_in = "query", redirect = "per_connector", {urls} }}
[connectors.rsa.calls.echo]
path = "/api/echo"
"#,
        base = peer.base_url,
        ck = peer.consumer_key,
        rck = peer.rsa_consumer_key,
    );
    let lk = Latchkey::start(bin(), &config);
    lk.put_secret("cs", "live", peer.secret("live")).await;
    lk.put_secret("rsa_key", "live", &peer.rsa_private_pem).await;
    let app = lk.app_key("live").await;
    let mut canaries = peer.canaries();
    let mut answers = String::new();

    for (connector, method, place) in [("hmac", "HMAC-SHA1", "AUTH_HEADER"), ("rsa", "RSA-SHA1", "QUERY")] {
        let before = peer.stats();
        // Before connecting: the call names a user without a connection.
        let r = lk.call(&app, connector, "echo", json!({})).await;
        assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{}", r.body);
        assert!(r.body.contains("name whose"), "{}", r.body);
        let r = Reply::read(
            lk.http
                .post(lk.url(&format!("/v1/connectors/{connector}/calls/echo")))
                .bearer_auth(&app)
                .json(&json!({"params": {}, "user": "ada"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(r.body.contains(&format!("POST /v1/connect/{connector}")), "{}", r.body);

        // The flow, as a browser follows it.
        let r = Reply::read(
            lk.http
                .post(lk.url(&format!("/v1/connect/{connector}")))
                .bearer_auth(&app)
                .json(&json!({"user": "ada", "return_to": RETURN_TO}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let link = r.json()["url"].as_str().unwrap().to_owned();
        let mut cookies = Vec::new();
        let authorize = hop(&lk.http, &link, &mut cookies).await;
        assert!(authorize.starts_with(&peer.url("/oauth/authorize?oauth_token=")), "{authorize}");
        assert_eq!(cookies.len(), 1, "the flow cookie: {cookies:?}");
        let callback = hop(&lk.http, &authorize, &mut cookies).await;
        let expected = if connector == "rsa" { lk.url("/oauth/rsa/callback") } else { lk.url("/oauth/callback") };
        assert!(callback.starts_with(&format!("{expected}?state=")), "{callback}");
        assert!(query_of(&callback).contains_key("oauth_verifier"), "{callback}");
        let back = hop(&lk.http, &callback, &mut cookies.clone()).await;
        let q = query_of(&back);
        assert!(back.starts_with(RETURN_TO), "{back}");
        assert_eq!(q.get("status").map(String::as_str), Some("connected"), "{back}");
        assert!(q["connection"].starts_with("conn_"), "{back}");
        let after = peer.stats();
        assert_eq!(after["request_token"].as_u64().unwrap(), before["request_token"].as_u64().unwrap() + 1);
        assert_eq!(after["access_token"].as_u64().unwrap(), before["access_token"].as_u64().unwrap() + 1);
        let issued = peer.issued();
        for k in ["request_token_secret", "access_token", "access_token_secret"] {
            canaries.push(issued[k].as_str().unwrap().to_owned());
        }

        // The same callback again: the state is spent.
        let again = hop(&lk.http, &callback, &mut cookies.clone()).await;
        assert_eq!(query_of(&again).get("error").map(String::as_str), Some("state_used"), "{again}");

        // Calls and the proxy sign with ada's token and secret.
        let r = Reply::read(
            lk.http
                .post(lk.url(&format!("/v1/connectors/{connector}/calls/echo")))
                .bearer_auth(&app)
                .json(&json!({"params": {}, "user": "ada"}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(
            (&v["token"], &v["signature_method"], &v["signature_type"]),
            (&json!("user:ada"), &json!(method), &json!(place)),
            "{v}"
        );
        answers.push_str(&r.all_text());
        let r = Reply::read(
            lk.http
                .post(lk.url(&format!("/v1/proxy/{connector}/api/echo?x=1")))
                .bearer_auth(&app)
                .header("latchkey-user", "ada")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("a=b+c")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["token"], "user:ada", "{}", r.body);
        let mut params = r.json()["params"].as_array().unwrap().clone();
        params.sort_by_key(ToString::to_string);
        assert_eq!(params, [json!(["a", "b c"]), json!(["x", "1"])]);
        answers.push_str(&r.all_text());
        // Another user has no connection.
        let r = Reply::read(
            lk.http
                .get(lk.url(&format!("/v1/proxy/{connector}/api/echo")))
                .bearer_auth(&app)
                .header("latchkey-user", "bob")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 404, "{}", r.body);
    }

    // Dev: its own consumer secret, its own connection for the same user, its own token.
    lk.put_secret("cs", "dev", peer.secret("dev")).await;
    let dev = lk.app_key("dev").await;
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connect/hmac"))
            .bearer_auth(&dev)
            .json(&json!({"user": "ada", "return_to": RETURN_TO}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut cookies = Vec::new();
    let authorize = hop(&lk.http, r.json()["url"].as_str().unwrap(), &mut cookies).await;
    let callback = hop(&lk.http, &authorize, &mut cookies).await;
    let back = hop(&lk.http, &callback, &mut cookies).await;
    assert_eq!(query_of(&back).get("status").map(String::as_str), Some("connected"), "{back}");
    let issued = peer.issued();
    for k in ["request_token_secret", "access_token", "access_token_secret"] {
        canaries.push(issued[k].as_str().unwrap().to_owned());
    }
    for (key, label) in [(&dev, "user:ada@dev"), (&app, "user:ada")] {
        let r = Reply::read(
            lk.http
                .get(lk.url("/v1/proxy/hmac/api/echo"))
                .bearer_auth(key)
                .header("latchkey-user", "ada")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((r.status, &r.json()["token"]), (200, &json!(label)), "{}", r.body);
    }

    // A user token calls as its own user (`access = "user"` calls only).
    let r = Reply::read(
        lk.http.post(lk.url("/v1/users")).bearer_auth(&app).json(&json!({"id": "ada"})).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Reply::read(lk.http.post(lk.url("/v1/users/ada/tokens")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let user_token = r.json()["access_token"].as_str().unwrap().to_owned();
    let r = lk.call(&user_token, "hmac", "echo", json!({})).await;
    assert_eq!((r.status, &r.json()["token"]), (200, &json!("user:ada")), "{}", r.body);
    let r = lk.call(&user_token, "rsa", "echo", json!({})).await;
    assert_eq!(r.status, 403, "an `access = \"app\"` call: {}", r.body);

    // A consumer secret the provider does not hold: no temporary credentials, the browser goes
    // back with the error, and the reason is recorded.
    let wrong = canary("o1wrongcs");
    lk.put_secret("wrong_cs", "live", &wrong).await;
    canaries.push(wrong);
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/connect/wrong"))
            .bearer_auth(&app)
            .json(&json!({"user": "ada", "return_to": RETURN_TO}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let back = hop(&lk.http, r.json()["url"].as_str().unwrap(), &mut Vec::new()).await;
    let q = query_of(&back);
    assert!(back.starts_with(RETURN_TO), "{back}");
    assert_eq!((q["status"].as_str(), q["error"].as_str()), ("error", "token_exchange_failed"), "{back}");
    let r = Reply::read(
        lk.admin_req(reqwest::Method::GET, "/v1/admin/events?kind=connection.exchange_failed").send().await.unwrap(),
    )
    .await;
    assert!(r.body.contains("no temporary credentials") && r.body.contains("(401)"), "{}", r.body);
    answers.push_str(&r.all_text());

    // The connection is listed like any other.
    let r =
        Reply::read(lk.http.get(lk.url("/v1/connections/hmac?user=ada")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    answers.push_str(&r.all_text());

    // Signing in is OAuth 2's only.
    let r =
        lk.http.get(lk.url(&format!("/oauth/hmac/login?return_to={RETURN_TO}&environment=live"))).send().await.unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("login_disabled") && text.contains("does not sign users in"), "{text}");

    // Deleting the connection: its calls then have none.
    let r =
        Reply::read(lk.http.delete(lk.url("/v1/connections/hmac?user=ada")).bearer_auth(&app).send().await.unwrap())
            .await;
    assert_eq!((r.status, &r.json()["revoked"]), (200, &json!(false)), "{}", r.body);
    let r = Reply::read(
        lk.http
            .get(lk.url("/v1/proxy/hmac/api/echo"))
            .bearer_auth(&app)
            .header("latchkey-user", "ada")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);

    assert!(find(answers.as_bytes(), &canaries).is_empty(), "a secret in an answer:\n{answers}");
    let admin_line = format!("Admin key (shown only this once; keep it safe): {}", lk.admin());
    let log = lk.output().replace(&admin_line, "");
    assert!(find(log.as_bytes(), &canaries).is_empty(), "a secret in the output:\n{log}");
    assert!(find(&read_dir_bytes(&lk.data_dir), &canaries).is_empty(), "a secret in plaintext on disk");
}

/// A proxied form body is read into memory to be signed, at most 2 MiB; a body of another
/// type is not signed and streams through, whatever its size.
#[tokio::test]
async fn a_form_body_past_2_mib_is_refused_and_other_bodies_stream_unsigned() {
    let peer = oauth1_peer();
    let lk = Latchkey::start(bin(), &connectors(peer, &peer.base_url));
    put_secrets(&lk, peer).await;
    let key = lk.app_key("live").await;
    let big = format!("a={}", "x".repeat(2 * 1024 * 1024));
    let r = proxied_form(&lk, &key, "hmacsha1_header", &big).await;
    assert_eq!((r.status, r.error_code()), (413, Some("payload_too_large")), "{}", r.body);
    assert!(r.body.contains("OAuth 1.0a") && r.body.contains("2 MiB"), "{}", r.body);
    let r = Reply::read(
        lk.http
            .post(lk.url("/v1/proxy/hmacsha1_header/api/echo?x=1"))
            .bearer_auth(&key)
            .header("content-type", "application/octet-stream")
            .body(vec![b'x'; 3 * 1024 * 1024])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["params"], json!([["x", "1"]]), "{}", r.body);
}

/// Connects `user` on `connector` through the flow (the provider approves at once); returns
/// the connection's id.
async fn connect_through(lk: &Latchkey, key: &str, link: &str) -> String {
    let mut cookies = Vec::new();
    let authorize = hop(&lk.http, link, &mut cookies).await;
    let callback = hop(&lk.http, &authorize, &mut cookies).await;
    let back = hop(&lk.http, &callback, &mut cookies).await;
    let q = query_of(&back);
    assert_eq!(q.get("status").map(String::as_str), Some("connected"), "{back} ({key:.0})");
    q["connection"].clone()
}

async fn echo_as(lk: &Latchkey, key: &str, user: &str, mark: &str) -> Reply {
    let req = lk.http.get(lk.url(&format!("/v1/proxy/hmac/api/echo?mark={mark}"))).bearer_auth(key);
    Reply::read(req.header("latchkey-user", user).send().await.unwrap()).await
}

/// A user's token that the provider reports revoked (`oauth_problem=token_revoked` in
/// `WWW-Authenticate`, or `token_rejected` in a form body) marks the connection as needing
/// reconnection: `409 reauthorization_required` with a `reconnect_url`, the state and events of
/// a refused OAuth 2 refresh, and no more requests to the provider until the user connects
/// again through that link. A `401` without such a problem (a wrong consumer secret) passes
/// through and leaves the connection as it was.
#[tokio::test]
async fn a_token_the_provider_reports_revoked_asks_the_user_to_connect_again() {
    let peer = oauth1_peer();
    let config = format!(
        r#"[server]
return_to_allow = ["https://app.example.com/"]

[connectors.hmac]
base_url = "{base}"
auth = {{ method = "oauth1_authorization", consumer_key = "{ck}", consumer_secret = {{ secret = "cs" }}, request_token_url = "{base}/oauth/request_token", authorize_url = "{base}/oauth/authorize", access_token_url = "{base}/oauth/access_token" }}
"#,
        base = peer.base_url,
        ck = peer.consumer_key,
    );
    let lk = Latchkey::start(bin(), &config);
    lk.put_secret("cs", "live", peer.secret("live")).await;
    let app = lk.app_key("live").await;
    let mark = |what: &str| format!("{}-{what}", canary("o1mark"));

    for (user, problem, in_body) in [("rev-header", "token_revoked", false), ("rev-body", "token_rejected", true)] {
        let r = Reply::read(
            lk.http
                .post(lk.url("/v1/connect/hmac"))
                .bearer_auth(&app)
                .json(&json!({"user": user, "return_to": RETURN_TO}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
        let id = connect_through(&lk, &app, r.json()["url"].as_str().unwrap()).await;
        let first = mark(user);
        let r = echo_as(&lk, &app, user, &first).await;
        assert_eq!((r.status, &r.json()["token"]), (200, &json!("user:ada")), "{}", r.body);

        peer.revoke(&first, problem, in_body);
        let r = echo_as(&lk, &app, user, &mark("after")).await;
        assert_eq!((r.status, r.error_code()), (409, Some("reauthorization_required")), "{}", r.body);
        let e = &r.json()["error"];
        assert_eq!((e["provider_error"].as_str(), e["connection"].as_str()), (Some(problem), Some(id.as_str())), "{e}");
        let reconnect = e["reconnect_url"].as_str().expect("a reconnect_url").to_owned();
        assert!(reconnect.starts_with(&lk.url("/oauth/hmac/start?session=")), "{reconnect}");

        // Marked: listed so, with its events, and calls no longer reach the provider.
        let r = Reply::read(
            lk.http.get(lk.url(&format!("/v1/connections/hmac?user={user}"))).bearer_auth(&app).send().await.unwrap(),
        )
        .await;
        assert!(r.body.contains("\"reauthorization_required\""), "{}", r.body);
        let refused = peer.stats()["refused"].as_u64().unwrap();
        let r = echo_as(&lk, &app, user, &mark("again")).await;
        assert_eq!((r.status, r.error_code()), (409, Some("reauthorization_required")), "{}", r.body);
        assert!(r.json()["error"]["reconnect_url"].is_string(), "{}", r.body);
        assert_eq!(peer.stats()["refused"].as_u64().unwrap(), refused, "a call reached the provider");
        let r = Reply::read(
            lk.admin_req(reqwest::Method::GET, "/v1/admin/events?kind=token.reauthorization_required")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(r.body.contains(&id) && r.body.contains(problem), "{}", r.body);

        // The user connects again through the link: the same connection, calls work again.
        assert_eq!(connect_through(&lk, &app, &reconnect).await, id);
        let r = echo_as(&lk, &app, user, &mark("reconnected")).await;
        assert_eq!((r.status, &r.json()["token"]), (200, &json!("user:ada")), "{}", r.body);
    }

    // A 401 that reports no revoked token is the provider's answer, passed through.
    lk.put_secret("cs", "live", "not-the-consumer-secret").await;
    let r = echo_as(&lk, &app, "rev-header", &mark("wrong")).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_request", "{}", r.body);
    let r = Reply::read(
        lk.http.get(lk.url("/v1/connections/hmac?user=rev-header")).bearer_auth(&app).send().await.unwrap(),
    )
    .await;
    assert!(!r.body.contains("\"reauthorization_required\""), "{}", r.body);
}
