//! Canary scan (SPEC §12.1, SECURITY S5–S7): unique secret values planted in every secret
//! field; calls that succeed and calls that fail; then no canary may appear in any response
//! Latchkey itself wrote, in its log output, or in plaintext in the data directory.

use latchkey_testkit::canary::{canary, find, read_dir_bytes};
use latchkey_testkit::peers::nginx::nginx_mtls;
use latchkey_testkit::recorder::Recorder;
use reqwest::Method;
use serde_json::json;

use super::*;

#[tokio::test]
async fn no_canary_reaches_responses_logs_or_the_disk() {
    let up = Recorder::start().await;
    let nginx = nginx_mtls();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        r#"
[connectors.header]
base_url = "{up}"
auth = {{ method = "api_key_header", name = "X-Api-Key", prefix = "Token", key = {{ secret = "header_key" }} }}
[connectors.header.calls.ok]
path = "/ok"
[connectors.header.calls.fail]
path = "/status/500"
[connectors.header.calls.slow]
path = "/slow/2000"
[connectors.query]
base_url = "{up}"
auth = {{ method = "api_key_query", name = "api_key", key = {{ secret = "query_key" }} }}
[connectors.query.calls.ok]
path = "/ok"
[connectors.basic]
base_url = "{up}"
timeout_ms = 300
auth = {{ method = "basic", username = "u", password = {{ secret = "basic_pw" }} }}
[connectors.basic.calls.slow]
path = "/slow/2000"
[connectors.dead]
base_url = "http://{dead}"
auth = {{ method = "api_key_query", name = "api_key", key = {{ secret = "query_key" }} }}
[connectors.dead.calls.ok]
path = "/ok"
[connectors.mtls]
base_url = "{nginx}"
auth = {{ method = "client_certificate", certificate = {{ secret = "cert" }}, private_key = {{ secret = "key" }}, ca_certificate = """{ca}""" }}
[connectors.mtls.calls.root]
path = "/"
[connectors.broken_mtls]
base_url = "{nginx}"
auth = {{ method = "client_certificate", certificate = {{ secret = "bad_cert" }}, private_key = {{ secret = "key" }} }}
[connectors.broken_mtls.calls.root]
path = "/"
"#,
        up = up.base_url,
        nginx = nginx.base_url,
        ca = nginx.server_ca_pem
    );
    // Debug, and the store's statements too (logged at trace: their text, never a value).
    let env = vec![("LATCHKEY_LOG".to_owned(), "debug,sqlx=trace".to_owned())];
    let lk = Latchkey::start_with(bin(), Options { config, env, ..Options::default() }).unwrap();
    let header_key = canary("hdr");
    let query_key = canary("qry");
    let dev_query_key = canary("qrydev");
    let basic_pw = canary("pw");
    let bad_cert = format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", canary("badcert"));
    lk.put_secret("header_key", "live", &header_key).await;
    lk.put_secret("query_key", "live", &query_key).await;
    lk.put_secret("query_key", "dev", &dev_query_key).await;
    lk.put_secret("basic_pw", "live", &basic_pw).await;
    lk.put_secret("cert", "live", &nginx.client.cert_pem).await;
    lk.put_secret("key", "live", &nginx.client.key_pem).await;
    lk.put_secret("bad_cert", "live", &bad_cert).await;
    let live = lk.app_key("live").await;
    let dev = lk.app_key("dev").await;
    // The private key's base64 body is the secret part of the PEM.
    let key_body: String =
        nginx.client.key_pem.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().join("");
    let mut canaries = vec![
        header_key.clone(),
        query_key.clone(),
        dev_query_key.clone(),
        basic_pw.clone(),
        bad_cert.clone(),
        live.clone(),
        dev.clone(),
        lk.admin().to_owned(),
    ];
    canaries.push(key_body[..48].to_owned());

    let mut latchkey_wrote = String::new();
    let mut calls = vec![];
    for (key, conn, call) in [
        (&live, "header", "ok"),
        (&live, "header", "fail"),
        (&live, "query", "ok"),
        (&dev, "query", "ok"),
        (&live, "basic", "slow"),
        (&live, "dead", "ok"),
        (&dev, "dead", "ok"),
        (&live, "mtls", "root"),
        (&live, "broken_mtls", "root"),
        (&live, "header", "nope"),
    ] {
        let r = lk.call(key, conn, call, json!({})).await;
        calls.push(format!("{conn}/{call} -> {} {:?}", r.status, r.error_code()));
        if r.error_code().is_some() {
            latchkey_wrote.push_str(&r.all_text());
        }
    }
    // The calls did what the scan needs: successes, upstream failures and Latchkey errors.
    assert_eq!(
        calls,
        [
            "header/ok -> 200 None",
            "header/fail -> 500 None",
            "query/ok -> 200 None",
            "query/ok -> 200 None",
            "basic/slow -> 504 Some(\"upstream_timeout\")",
            "dead/ok -> 502 Some(\"upstream_unreachable\")",
            "dead/ok -> 502 Some(\"upstream_unreachable\")",
            "mtls/root -> 200 None",
            "broken_mtls/root -> 424 Some(\"secret_missing\")",
            "header/nope -> 404 Some(\"not_found\")",
        ]
    );
    assert_eq!(up.requests().iter().filter(|r| r.uri.contains(&query_key)).count(), 1, "the query key did not arrive");
    // Latchkey's own answers: errors above, and every admin listing.
    for path in ["/v1/admin/secrets", "/v1/admin/keys", "/v1/admin/connectors", "/metrics", "/readyz"] {
        let r = Reply::read(lk.admin_req(Method::GET, path).send().await.unwrap()).await;
        assert_eq!(r.status, 200, "{path}");
        latchkey_wrote.push_str(&r.all_text());
    }
    let r =
        Reply::read(lk.http.get(lk.url("/v1/proxy/header/x")).bearer_auth(format!("{live}0")).send().await.unwrap())
            .await;
    latchkey_wrote.push_str(&r.all_text());

    let found = find(latchkey_wrote.as_bytes(), &canaries);
    assert!(found.is_empty(), "canaries in Latchkey's responses: {found:?}\n{latchkey_wrote}");

    // The log: everything printed, except the one line that shows the first admin key.
    let admin_line = format!("Admin key (shown only this once; keep it safe): {}", lk.admin());
    let log = lk.output().replace(&admin_line, "");
    assert!(log.contains("db.statement"), "the server did not log the store's statements");
    let found = find(log.as_bytes(), &canaries);
    assert!(found.is_empty(), "canaries in the server's output: {found:?}\n{log}");

    // The disk: the SQLite database, its WAL, everything in the data directory.
    let disk = read_dir_bytes(&lk.data_dir);
    assert!(disk.len() > 10_000, "the data directory looks empty");
    let found = find(&disk, &canaries);
    assert!(found.is_empty(), "canaries in plaintext on disk: {found:?}");
}

#[tokio::test]
async fn debug_output_of_credential_types_is_redacted() {
    // S7: the types that hold secrets print [REDACTED].
    let key = latchkey_vault::MasterKey::generate();
    assert!(format!("{key:?}").contains("[REDACTED]"));
    let s = secrecy::SecretString::from(canary("dbg"));
    assert!(!format!("{s:?}").contains("CANARY"));
}

/// The canary scan for the token methods: client secrets, passwords, private keys, access and
/// refresh tokens, through obtain, refresh, reactive refresh, transient and terminal failures.
#[tokio::test]
async fn no_token_or_grant_secret_reaches_responses_logs_or_the_disk() {
    use latchkey_testkit::fake_oauth::{FakeOAuth, Step};
    use latchkey_testkit::peers::authlib::authlib;
    let fake = FakeOAuth::start().await;
    fake.set_expires_in(60);
    let a = authlib();
    let config = format!(
        r#"
[connectors.pw]
base_url = "{base}"
refresh_skew_s = 60
auth = {{ method = "oauth2_password", token_url = "{token}", username = "ada", password = {{ secret = "pw" }}, client_id = "app", client_secret = {{ secret = "cs" }} }}
[connectors.pw.calls.echo]
path = "/api/echo"
[connectors.custom]
base_url = "{base}"
auth = {{ method = "oauth2_custom_token", token_url = "{token}", token_body = '{{"key": "<k>"}}', secrets = {{ k = {{ secret = "ck" }} }} }}
[connectors.custom.calls.echo]
path = "/api/echo"
[connectors.jwt]
base_url = "{abase}"
auth = {{ method = "jwt_bearer", token_url = "{atoken}", issuer = "{issuer}", private_key = {{ secret = "sa" }} }}
[connectors.jwt.calls.me]
path = "/api/me"
[connectors.pkjwt]
base_url = "{base}"
auth = {{ method = "oauth2_client_credentials", token_url = "{token}", client_id = "app", client_auth = "private_key_jwt", client_private_key = {{ secret = "client_key" }}, client_key_id = "k1" }}
[connectors.pkjwt.calls.echo]
path = "/api/echo"
[connectors.tls]
base_url = "{base}"
auth = {{ method = "oauth2_client_credentials", token_url = "{token}", client_id = "app", client_auth = "tls_client_auth", client_certificate = {{ secret = "tls_cert" }}, client_key = {{ secret = "tls_key" }} }}
[connectors.tls.calls.echo]
path = "/api/echo"
"#,
        base = fake.base_url,
        token = fake.token_url,
        abase = a.base_url,
        atoken = a.token_url,
        issuer = a.jwt.issuer,
    );
    let lk = Latchkey::start(bin(), &config);
    let pw = canary("grantpw");
    let cs = canary("clientsecret");
    let ck = canary("customkey");
    lk.put_secret("pw", "live", &pw).await;
    lk.put_secret("cs", "live", &cs).await;
    lk.put_secret("ck", "live", &ck).await;
    lk.put_secret("sa", "live", &a.jwt.pkcs8_pem).await;
    lk.put_secret("client_key", "live", &a.jwt.wrong_key_pem).await;
    let tls = latchkey_testkit::peers::certs::Ca::new("leak test CA").client_cert("leak-test-client");
    lk.put_secret("tls_cert", "live", &tls.cert_pem).await;
    lk.put_secret("tls_key", "live", &tls.key_pem).await;
    let app = lk.app_key("live").await;

    let mut latchkey_wrote = String::new();
    let mut record = |r: &Reply| {
        if r.error_code().is_some() {
            latchkey_wrote.push_str(&r.all_text());
        }
    };
    for _ in 0..3 {
        record(&lk.call(&app, "pw", "echo", json!({})).await); // obtain, then refresh with rotation
    }
    fake.expire_access_tokens();
    record(&lk.call(&app, "pw", "echo", json!({})).await); // reactive refresh
    fake.script(&[Step::Error(503, "temporarily_unavailable"); 3]);
    record(&lk.call(&app, "pw", "echo", json!({})).await); // transient
    record(&lk.call(&app, "custom", "echo", json!({})).await);
    record(&lk.call(&app, "jwt", "me", json!({})).await);
    record(&lk.call(&app, "pkjwt", "echo", json!({})).await);
    let r = lk.call(&app, "tls", "echo", json!({})).await;
    assert_eq!(r.status, 200, "the tls_client_auth connector did not get its token: {}", r.body);
    lk.put_secret("cs", "live", &format!("{cs}-changed")).await;
    fake.script(&[Step::Error(401, "invalid_client"), Step::Error(401, "invalid_client")]);
    fake.expire_access_tokens();
    record(&lk.call(&app, "pw", "echo", json!({})).await); // terminal
    record(&lk.call(&app, "pw", "echo", json!({})).await);
    for path in ["/v1/admin/events?limit=1000", "/v1/admin/tokens", "/v1/admin/connectors", "/v1/admin/secrets"] {
        let r = Reply::read(lk.admin_req(Method::GET, path).send().await.unwrap()).await;
        assert_eq!(r.status, 200);
        latchkey_wrote.push_str(&r.all_text());
    }
    assert!(
        latchkey_wrote.contains("token.refreshed") && latchkey_wrote.contains("invalid_client"),
        "the scenario did not run"
    );

    let mut canaries = vec![pw, cs, ck, app.clone(), lk.admin().to_owned()];
    canaries.extend(fake.issued_tokens());
    assert!(canaries.len() > 8, "too few tokens were issued: {canaries:?}");
    let key_body: String = a.jwt.pkcs8_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    canaries.push(key_body[..64].to_owned());
    let client_key_body: String = a.jwt.wrong_key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    canaries.push(client_key_body[..64].to_owned());
    let tls_key_body: String = tls.key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    canaries.push(tls_key_body[..48].to_owned());
    // The client assertions Latchkey signed (each a credential while it lives).
    let assertions: Vec<String> = fake.calls().iter().filter_map(|c| c.form.get("client_assertion").cloned()).collect();
    assert_eq!(assertions.len(), 1, "the private_key_jwt connector did not get its token");
    canaries.extend(assertions);

    let found = find(latchkey_wrote.as_bytes(), &canaries);
    assert!(found.is_empty(), "canaries in Latchkey's responses: {found:?}\n{latchkey_wrote}");
    let admin_line = format!("Admin key (shown only this once; keep it safe): {}", lk.admin());
    let log = lk.output().replace(&admin_line, "");
    let found = find(log.as_bytes(), &canaries);
    assert!(found.is_empty(), "canaries in the server's output: {found:?}\n{log}");
    let found = find(&read_dir_bytes(&lk.data_dir), &canaries);
    assert!(found.is_empty(), "canaries in plaintext on disk: {found:?}");
}

/// The canary scan for `digest`: the password signs answers to httpbin's challenges, named and
/// proxied, with debug logging; httpbin expects another password, so every call ends in the
/// refusal error after a challenge and an answer. No canary in what Latchkey wrote, its log,
/// the disk, or what reached the upstream (only hashes leave).
#[tokio::test]
async fn no_digest_password_reaches_responses_logs_the_disk_or_the_upstream() {
    use latchkey_testkit::forwarder::Forwarder;
    use latchkey_testkit::peers::httpbin::httpbin;
    let fwd = Forwarder::start(&httpbin().base_url).await;
    let config = format!(
        r#"
[connectors.dg]
base_url = "{up}"
auth = {{ method = "digest", username = "ada", password = {{ secret = "dg_pw" }} }}
[connectors.dg.calls.check]
path = "/digest-auth/auth/ada/other/SHA-256"
"#,
        up = fwd.base_url
    );
    let env = vec![("LATCHKEY_LOG".to_owned(), "debug,sqlx=trace".to_owned())];
    let lk = Latchkey::start_with(bin(), Options { config, env, ..Options::default() }).unwrap();
    let (live_pw, dev_pw) = (canary("digestlive"), canary("digestdev"));
    lk.put_secret("dg_pw", "live", &live_pw).await;
    lk.put_secret("dg_pw", "dev", &dev_pw).await;
    let (live, dev) = (lk.app_key("live").await, lk.app_key("dev").await);
    let mut latchkey_wrote = String::new();
    for key in [&live, &dev, &live] {
        let r = lk.call(key, "dg", "check", json!({})).await;
        assert_eq!((r.status, r.error_code()), (424, Some("secret_missing")), "{}", r.body);
        latchkey_wrote.push_str(&r.all_text());
        let r = Reply::read(
            lk.http.get(lk.url("/v1/proxy/dg/digest-auth/auth/ada/other/MD5")).bearer_auth(key).send().await.unwrap(),
        )
        .await;
        assert_eq!(r.error_code(), Some("secret_missing"), "{}", r.body);
        latchkey_wrote.push_str(&r.all_text());
    }
    let signed = fwd.passed().iter().filter(|p| p.authorization.is_some()).count();
    assert!(signed >= 6, "the password signed too few answers: {signed}");
    for path in ["/v1/admin/secrets", "/v1/admin/connectors", "/metrics"] {
        let r = Reply::read(lk.admin_req(Method::GET, path).send().await.unwrap()).await;
        latchkey_wrote.push_str(&r.all_text());
    }
    let canaries = [live_pw, dev_pw];
    let found = find(latchkey_wrote.as_bytes(), &canaries);
    assert!(found.is_empty(), "canaries in Latchkey's responses: {found:?}\n{latchkey_wrote}");
    let log = lk.output();
    assert!(log.contains("db.statement") && log.contains("secret_missing"), "the scenario was not logged:\n{log}");
    let found = find(log.as_bytes(), &canaries);
    assert!(found.is_empty(), "canaries in the server's output: {found:?}\n{log}");
    let sent: String = fwd.passed().iter().map(|p| format!("{} {:?}\n", p.uri, p.authorization)).collect();
    let found = find(sent.as_bytes(), &canaries);
    assert!(found.is_empty(), "canaries sent upstream: {found:?}\n{sent}");
    let found = find(&read_dir_bytes(&lk.data_dir), &canaries);
    assert!(found.is_empty(), "canaries in plaintext on disk: {found:?}");
}
