//! Each static auth method against a real server: httpbin (PyPI) for keys, Basic and Digest, nginx
//! (Debian) with `ssl_verify_client on` for client certificates.

use serde_json::json;

use latchkey_testkit::forwarder::Forwarder;
use latchkey_testkit::peers::httpbin::httpbin;
use latchkey_testkit::peers::nginx::nginx_mtls;

use super::*;

const CALLS: &str = r#"
[connectors.up.calls.get]
path = "/get"
[connectors.up.calls.headers]
path = "/headers"
[connectors.up.calls.bearer]
path = "/bearer"
[connectors.up.calls.basic]
path = "/basic-auth/<user>/<password>"
[connectors.up.calls.basic.params]
user = { required = true }
password = { required = true }
[connectors.up.calls.anything]
method = "POST"
path = "/anything/<id>"
query = { q = "<q>" }
body = '{"id": "<id>", "note": "id is <id>", "tags": "<tags>"}'
[connectors.up.calls.anything.params]
id = { required = true }
q = { default = "dflt" }
tags = { default = [] }
"#;

#[tokio::test]
async fn api_key_in_the_query_reaches_httpbin() {
    let lk = with_connector(
        &httpbin().base_url,
        r#"{ method = "api_key_query", name = "api_key", key = { secret = "k" } }"#,
        CALLS,
    );
    lk.put_secret("k", "live", "query-key-123").await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "get", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["args"]["api_key"], "query-key-123");
}

#[tokio::test]
async fn api_key_in_a_header_with_a_prefix_reaches_httpbin() {
    let lk = with_connector(
        &httpbin().base_url,
        r#"{ method = "api_key_header", name = "Authorization", prefix = "Bearer", key = { secret = "k" } }"#,
        CALLS,
    );
    lk.put_secret("k", "live", "header-key-456").await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "bearer", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["token"], "header-key-456");

    let lk = with_connector(
        &httpbin().base_url,
        r#"{ method = "api_key_header", name = "X-Api-Key", key = { secret = "k" } }"#,
        CALLS,
    );
    lk.put_secret("k", "live", "plain-key").await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "headers", json!({})).await;
    assert_eq!(r.json()["headers"]["X-Api-Key"], "plain-key");
    assert!(r.json()["headers"].get("Authorization").is_none(), "the caller's credential went upstream");
}

#[tokio::test]
async fn basic_auth_right_and_wrong_against_httpbin() {
    let lk = with_connector(
        &httpbin().base_url,
        r#"{ method = "basic", username = "ada", password = { secret = "pw" } }"#,
        CALLS,
    );
    lk.put_secret("pw", "live", "s3cret pass:word").await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "basic", json!({"user": "ada", "password": "s3cret pass:word"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), json!({"authenticated": true, "user": "ada"}));
    // httpbin expects other credentials than the ones Latchkey holds: its 401 comes back as is.
    let r = lk.call(&app, "up", "basic", json!({"user": "ada", "password": "other"})).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), None, "an upstream 401 is passed through, not a Latchkey error");
}

#[tokio::test]
async fn named_call_templates_reach_httpbin_as_configured() {
    let lk = with_connector(&httpbin().base_url, r#"{ method = "none" }"#, CALLS);
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "anything", json!({"id": 42, "tags": ["a", "b"]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["method"], "POST");
    assert!(v["url"].as_str().unwrap().ends_with("/anything/42?q=dflt"), "{v}");
    assert_eq!(v["json"], json!({"id": 42, "note": "id is 42", "tags": ["a", "b"]}));
    assert_eq!(v["headers"]["Content-Type"], "application/json");
}

fn mtls_connector(ca: &str) -> String {
    format!(
        "{{ method = \"client_certificate\", certificate = {{ secret = \"cert\" }}, private_key = {{ secret = \"key\" }}, ca_certificate = \"\"\"{ca}\"\"\" }}"
    )
}

const ROOT_CALL: &str = "[connectors.up.calls.root]\npath = \"/\"\n";

#[tokio::test]
async fn client_certificate_is_presented_to_nginx() {
    let nginx = nginx_mtls();
    let lk = with_connector(&nginx.base_url, &mtls_connector(&nginx.server_ca_pem), ROOT_CALL);
    lk.put_secret("cert", "live", &nginx.client.cert_pem).await;
    lk.put_secret("key", "live", &nginx.client.key_pem).await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "root", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("CN=latchkey-test-client"), "{}", r.body);
    // The proxy uses the same pooled identity.
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("CN=latchkey-test-client"), "{}", r.body);
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_by_nginx() {
    let nginx = nginx_mtls();
    let lk = with_connector(&nginx.base_url, &mtls_connector(&nginx.server_ca_pem), ROOT_CALL);
    lk.put_secret("cert", "live", &nginx.foreign_client.cert_pem).await;
    lk.put_secret("key", "live", &nginx.foreign_client.key_pem).await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "root", json!({})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("SSL certificate error") || r.body.contains("400"), "{}", r.body);
}

#[tokio::test]
async fn a_missing_certificate_is_a_clear_error_and_nothing_is_sent() {
    let nginx = nginx_mtls();
    let lk = with_connector(&nginx.base_url, &mtls_connector(&nginx.server_ca_pem), ROOT_CALL);
    lk.put_secret("key", "live", &nginx.client.key_pem).await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "root", json!({})).await;
    assert_eq!((r.status, r.error_code()), (424, Some("secret_missing")), "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("latchkey secret set cert"), "{}", r.body);
}

#[tokio::test]
async fn a_server_outside_the_private_ca_is_not_trusted() {
    // The connector trusts only the CA it names: nginx's certificate from another CA fails TLS.
    let nginx = nginx_mtls();
    let other = latchkey_testkit::peers::certs::Ca::new("unrelated CA");
    let lk = with_connector(&nginx.base_url, &mtls_connector(&other.cert_pem), ROOT_CALL);
    lk.put_secret("cert", "live", &nginx.client.cert_pem).await;
    lk.put_secret("key", "live", &nginx.client.key_pem).await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "root", json!({})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("upstream_unreachable")), "{}", r.body);
}

#[tokio::test]
async fn without_a_private_ca_only_the_system_trust_store_is_trusted() {
    // nginx's certificate comes from the test CA, which no system trust store holds.
    let nginx = nginx_mtls();
    let lk = with_connector(&nginx.base_url, r#"{ method = "none" }"#, ROOT_CALL);
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "root", json!({})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("upstream_unreachable")), "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("TLS handshake failed") && message.contains("UnknownIssuer"), "{message}");
}

#[tokio::test]
async fn the_system_trust_store_is_what_the_default_client_trusts() {
    // Point the system trust store (SSL_CERT_FILE, as OpenSSL and rustls-native-certs read it)
    // at the test CA: the TLS handshake with nginx now succeeds and verifies its name, and
    // nginx answers itself, asking for the client certificate this connector does not have.
    let nginx = nginx_mtls();
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("ca.pem");
    std::fs::write(&bundle, &nginx.server_ca_pem).unwrap();
    let config =
        format!("[connectors.up]\nbase_url = \"{}\"\nauth = {{ method = \"none\" }}\n{ROOT_CALL}", nginx.base_url);
    let opts = latchkey_testkit::latchkey::Options {
        config,
        env: vec![
            ("SSL_CERT_FILE".into(), bundle.display().to_string()),
            ("SSL_CERT_DIR".into(), work.path().display().to_string()),
        ],
        ..Default::default()
    };
    let lk = Latchkey::start_with(bin(), opts).unwrap();
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "root", json!({})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("No required SSL certificate was sent"), "{}", r.body);
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_is_a_clear_error() {
    let nginx = nginx_mtls();
    let lk = with_connector(&nginx.base_url, &mtls_connector(&nginx.server_ca_pem), ROOT_CALL);
    lk.put_secret("cert", "live", &nginx.client.cert_pem).await;
    lk.put_secret("key", "live", &nginx.foreign_client.key_pem).await;
    let app = lk.app_key("live").await;
    let r = lk.call(&app, "up", "root", json!({})).await;
    assert_eq!((r.status, r.error_code()), (424, Some("secret_missing")), "{}", r.body);
    assert!(r.body.contains("does the key match the certificate?"), "{}", r.body);
}

/// SECURITY S11: pooled upstream connections are keyed by the whole credential identity. Two
/// connectors reach the same nginx (same host, port and scheme) with different client
/// certificates, one of them with another certificate for dev; 10,000 proxied requests,
/// interleaved over 32 concurrent callers, each come back with the subject of the
/// certificate its connector and environment hold, never another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_pooled_connections_never_cross_client_certificates() {
    let nginx = nginx_mtls();
    let auth = |name: &str| {
        format!(
            "{{ method = \"client_certificate\", certificate = {{ secret = \"{name}-cert\" }}, private_key = {{ secret = \"{name}-key\" }}, ca_certificate = \"\"\"{}\"\"\" }}",
            nginx.server_ca_pem
        )
    };
    let config = format!(
        "[connectors.a]\nbase_url = \"{url}\"\nauth = {a}\n[connectors.b]\nbase_url = \"{url}\"\nauth = {b}\n",
        url = nginx.base_url,
        a = auth("a"),
        b = auth("b"),
    );
    let lk = std::sync::Arc::new(Latchkey::start(bin(), &config));
    for (name, env) in [("a", "live"), ("a", "dev"), ("b", "live"), ("b", "dev")] {
        let pem = nginx.client_ca.client_cert(&format!("tenant-{name}-{env}"));
        lk.put_secret(&format!("{name}-cert"), env, &pem.cert_pem).await;
        lk.put_secret(&format!("{name}-key"), env, &pem.key_pem).await;
    }
    let keys = std::sync::Arc::new([lk.app_key("live").await, lk.app_key("dev").await]);
    let mut callers = Vec::new();
    for c in 0..32usize {
        let (lk, keys) = (lk.clone(), keys.clone());
        callers.push(tokio::spawn(async move {
            let mut crossed = Vec::new();
            for i in 0..10_000 / 32 + 1 {
                let n = c + i;
                let (name, env) = (["a", "b"][n % 2], n / 2 % 2);
                let r =
                    lk.http.get(lk.url(&format!("/v1/proxy/{name}/"))).bearer_auth(&keys[env]).send().await.unwrap();
                let status = r.status();
                let body = r.text().await.unwrap();
                let want = format!("CN=tenant-{name}-{}", ["live", "dev"][env]);
                if status != 200 || body.trim() != want {
                    crossed.push(format!("{want}: {status} {body}"));
                }
            }
            crossed
        }));
    }
    let mut crossed = Vec::new();
    for c in callers {
        crossed.extend(c.await.unwrap());
    }
    assert!(
        crossed.is_empty(),
        "{} of 10,000 requests got another identity, first: {:?}",
        crossed.len(),
        crossed.first()
    );
}

const DIGEST_CALLS: &str = r#"
[connectors.up.calls.digest]
path = "/digest-auth/auth/ada/<pw>/<alg>"
[connectors.up.calls.digest.params]
pw = { required = true }
alg = { required = true }
"#;

/// What the forwarder saw since `from`: (status, the `Authorization` it carried).
fn round_trips(fwd: &Forwarder, from: usize) -> Vec<(u16, String)> {
    fwd.passed()[from..].iter().map(|p| (p.status, p.authorization.clone().unwrap_or_default())).collect()
}

/// RFC 7616 Digest against httpbin's `/digest-auth/auth/<user>/<pass>/<algorithm>`, through a
/// forwarder that counts the round trips: the first call costs the challenge's, later ones
/// reuse it with the next nonce count; live and dev hold different passwords and challenges.
#[tokio::test]
async fn digest_md5_and_sha_256_named_and_proxied_live_and_dev_against_httpbin() {
    let fwd = Forwarder::start(&httpbin().base_url).await;
    let lk = with_connector(
        &fwd.base_url,
        r#"{ method = "digest", username = "ada", password = { secret = "pw" } }"#,
        DIGEST_CALLS,
    );
    // httpbin checks the answer over the decoded path (werkzeug's `request.path`), where a
    // server checks it over the request target as sent: passwords in the path stay unencoded.
    lk.put_secret("pw", "live", "live-pass").await;
    lk.put_secret("pw", "dev", "dev-pass").await;
    let (live, dev) = (lk.app_key("live").await, lk.app_key("dev").await);
    let ok = json!({"authenticated": true, "user": "ada"});

    // Live, MD5: the first call goes unsigned, answers the challenge; the second signs at once.
    let r = lk.call(&live, "up", "digest", json!({"pw": "live-pass", "alg": "MD5"})).await;
    assert_eq!((r.status, r.json()), (200, ok.clone()), "{}", r.body);
    let trips = round_trips(&fwd, 0);
    assert_eq!(trips.iter().map(|t| t.0).collect::<Vec<_>>(), [401, 200], "{trips:?}");
    assert_eq!(trips[0].1, "", "the first request went signed without a challenge");
    assert!(trips[1].1.starts_with("Digest username=\"ada\"") && trips[1].1.contains("algorithm=MD5"), "{trips:?}");
    assert!(trips[1].1.contains("nc=00000001") && trips[1].1.contains("qop=auth"), "{trips:?}");
    let r = lk.call(&live, "up", "digest", json!({"pw": "live-pass", "alg": "MD5"})).await;
    assert_eq!((r.status, r.json()), (200, ok.clone()), "{}", r.body);
    let trips = round_trips(&fwd, 2);
    assert_eq!(trips.len(), 1, "the second call cost another round trip: {trips:?}");
    assert!(trips[0].1.contains("nc=00000002"), "{trips:?}");

    // The proxy signs with the same kept challenge.
    let proxied = |key: &str, path: &str| {
        let req = lk.http.get(lk.url(&format!("/v1/proxy/up{path}"))).bearer_auth(key);
        async move { Reply::read(req.send().await.unwrap()).await }
    };
    let r = proxied(&live, "/digest-auth/auth/ada/live-pass/MD5").await;
    assert_eq!((r.status, r.json()), (200, ok.clone()), "{}", r.body);
    let trips = round_trips(&fwd, 3);
    assert_eq!(trips.len(), 1, "{trips:?}");
    assert!(
        trips[0].1.contains("nc=00000003") && trips[0].1.contains("uri=\"/digest-auth/auth/ada/live-pass/MD5\""),
        "{trips:?}"
    );

    // Dev: its own password and its own challenge, SHA-256, by the proxy first.
    let r = proxied(&dev, "/digest-auth/auth/ada/dev-pass/SHA-256").await;
    assert_eq!((r.status, r.json()), (200, ok.clone()), "{}", r.body);
    let trips = round_trips(&fwd, 4);
    assert_eq!(trips.iter().map(|t| t.0).collect::<Vec<_>>(), [401, 200], "{trips:?}");
    assert!(trips[1].1.contains("algorithm=SHA-256") && trips[1].1.contains("nc=00000001"), "{trips:?}");
    let r = lk.call(&dev, "up", "digest", json!({"pw": "dev-pass", "alg": "SHA-256"})).await;
    assert_eq!((r.status, r.json()), (200, ok.clone()), "{}", r.body);
    assert_eq!(round_trips(&fwd, 6).len(), 1);

    // httpbin expecting dev's password from a live key: the upstream refuses the answer to its
    // own challenge, which is a clear error, not the upstream's 401.
    let r = lk.call(&live, "up", "digest", json!({"pw": "dev-pass", "alg": "MD5"})).await;
    assert_eq!((r.status, r.error_code()), (424, Some("secret_missing")), "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("refused the Digest username and password") && !message.contains("live-pass"),
        "{message}"
    );
    assert_eq!(round_trips(&fwd, 7).iter().map(|t| t.0).collect::<Vec<_>>(), [401, 401]);
    // After a refusal the kept challenge is dropped: the next call starts over, and works.
    let r = lk.call(&live, "up", "digest", json!({"pw": "live-pass", "alg": "MD5"})).await;
    assert_eq!((r.status, r.json()), (200, ok.clone()), "{}", r.body);
    let trips = round_trips(&fwd, 9);
    assert_eq!(trips.iter().map(|t| (t.0, t.1.is_empty())).collect::<Vec<_>>(), [(401, true), (200, false)]);
}

/// A kept nonce the server no longer takes (`stale=true`): answered once with the new
/// challenge, the request (and its body, a proxied one too) sent again; the new challenge is
/// kept. A proxied body beyond what may be held is refused before anything is sent.
#[tokio::test]
async fn a_stale_digest_nonce_is_answered_once_with_the_new_challenge() {
    let fwd = Forwarder::start(&httpbin().base_url).await;
    let lk = with_connector(
        &fwd.base_url,
        r#"{ method = "digest", username = "ada", password = { secret = "pw" } }"#,
        DIGEST_CALLS,
    );
    lk.put_secret("pw", "live", "pw1").await;
    let live = lk.app_key("live").await;
    let ok = json!({"authenticated": true, "user": "ada"});
    let call = || lk.call(&live, "up", "digest", json!({"pw": "pw1", "alg": "MD5"}));
    assert_eq!(call().await.status, 200);
    fwd.refuse_next_signed(
        r#"Digest realm="me@kennethreitz.com", nonce="fresh-nonce", qop="auth", algorithm=MD5, stale=TRUE"#,
    );
    let r = call().await;
    assert_eq!((r.status, r.json()), (200, ok.clone()), "{}", r.body);
    let trips = round_trips(&fwd, 2);
    assert_eq!(trips.iter().map(|t| t.0).collect::<Vec<_>>(), [401, 200], "{trips:?}");
    assert!(trips[0].1.contains("nc=00000002"), "{trips:?}");
    assert!(trips[1].1.contains("nonce=\"fresh-nonce\"") && trips[1].1.contains("nc=00000001"), "{trips:?}");
    let r = call().await;
    assert_eq!(r.status, 200);
    let trips = round_trips(&fwd, 4);
    assert!(
        trips.len() == 1 && trips[0].1.contains("nonce=\"fresh-nonce\"") && trips[0].1.contains("nc=00000002"),
        "{trips:?}"
    );

    // A proxied body streams in from the caller: it is held, so the answer to a refused nonce
    // sends it again (httpbin's /anything echoes it).
    fwd.refuse_next_signed(r#"Digest realm="r", nonce="third-nonce", qop="auth", stale=true"#);
    let body = "a streamed body ".repeat(1000);
    let req = lk.http.post(lk.url("/v1/proxy/up/anything/x")).bearer_auth(&live).body(body.clone());
    let r = Reply::read(req.send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["data"], body.as_str());
    let trips = round_trips(&fwd, 5);
    assert_eq!(trips.iter().map(|t| t.0).collect::<Vec<_>>(), [401, 200], "{trips:?}");
    assert!(trips[1].1.contains("nonce=\"third-nonce\"") && trips[1].1.contains("uri=\"/anything/x\""), "{trips:?}");
    // Beyond what may be held: refused before anything is sent.
    let req = lk.http.post(lk.url("/v1/proxy/up/anything/x")).bearer_auth(&live).body(vec![b'x'; 3 * 1024 * 1024]);
    let r = Reply::read(req.send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (413, Some("payload_too_large")), "{}", r.body);
    assert!(r.body.contains("uses Digest, which may send a request twice"), "{}", r.body);
    assert_eq!(fwd.passed().len(), 7);
}
