//! Token-endpoint client authentication against oidc-provider: `client_auth =
//! "private_key_jwt"` (RFC 7523 §2.2) with client credentials, live and dev with different
//! keys, through a named call and the proxy; a key the provider does not know is refused.
//! `client_auth = "tls_client_auth"` (RFC 8705) the same way at oidc-provider behind nginx.
//! (The authorization-code flow with `private_key_jwt` and with `tls_client_auth` is in
//! `connections.rs`.)

use base64::Engine as _;
use latchkey_testkit::latchkey::run_cli;
use latchkey_testkit::peers::nginx::CLIENT_CN;
use latchkey_testkit::peers::oidc::{RegisteredClient, oidc};
use latchkey_testkit::peers::oidc_mtls::{CLIENT_DN, oidc_mtls};
use latchkey_testkit::recorder::Recorder;
use latchkey_vault::identity::{SigningAlg, SigningKey};
use serde_json::{Value, json};

use super::*;

/// A client key made for this test: its PKCS#8 PEM (the secret) and its public JWK.
pub struct ClientKey {
    pub pem: String,
    pub jwk: Value,
}

pub fn client_key(alg: SigningAlg) -> ClientKey {
    let key = SigningKey::generate(alg).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
    ClientKey { pem, jwk: key.public_jwk().clone() }
}

/// A `private_key_jwt` client at oidc-provider that knows `keys`.
pub async fn register_keyed(grant_types: &[&str], redirect_uris: &[&str], keys: &[&ClientKey]) -> RegisteredClient {
    let response_types: &[&str] = if grant_types.contains(&"authorization_code") { &["code"] } else { &[] };
    let client = oidc()
        .register_metadata(json!({
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()},
            "grant_types": grant_types,
            "response_types": response_types,
            "redirect_uris": redirect_uris,
        }))
        .await;
    assert_eq!((client.auth_method.as_str(), client.client_secret.as_deref()), ("private_key_jwt", None));
    client
}

/// A confidential client that may introspect any token.
pub async fn introspector() -> RegisteredClient {
    oidc().register("client_secret_post", &["client_credentials"], &[]).await
}

#[tokio::test]
async fn private_key_jwt_client_credentials_live_and_dev_through_a_call_and_the_proxy() {
    let o = oidc();
    let (live_key, dev_key, unknown_key) =
        (client_key(SigningAlg::Rs256), client_key(SigningAlg::Es256), client_key(SigningAlg::Rs256));
    let client = register_keyed(&["client_credentials"], &[], &[&live_key, &dev_key]).await;
    let inspector = introspector().await;
    let up = Recorder::start().await;
    let auth = format!(
        "{{ method = \"oauth2_client_credentials\", token_url = \"{}\", client_id = \"{}\", client_auth = \"private_key_jwt\", \
         client_private_key = {{ secret = \"client_key\" }}, scope = \"api:read\" }}",
        o.token_url, client.client_id
    );
    let lk = with_connector(&up.base_url, &auth, "[connectors.up.calls.ping]\npath = \"/ping\"\n");
    lk.put_secret("client_key", "live", &live_key.pem).await;
    let (live, dev) = (lk.app_key("live").await, lk.app_key("dev").await);
    let active = |token: String| {
        let inspector = inspector.clone();
        async move { o.introspect(&inspector, &token).await }
    };

    // Live: a named call, then the proxy, each with a token oidc-provider issued to the client.
    let r = lk.call(&live, "up", "ping", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = up.last().header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    let info = active(sent.clone()).await;
    assert_eq!(
        (&info["active"], &info["client_id"], &info["scope"]),
        (&json!(true), &json!(client.client_id), &json!("api:read"))
    );
    let r =
        Reply::read(lk.http.get(lk.url("/v1/proxy/up/ping?via=proxy")).bearer_auth(&live).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.last().uri, "/ping?via=proxy");
    assert_eq!(up.last().header("authorization"), Some(format!("Bearer {sent}").as_str()));

    // Dev with a key the provider does not know: refused, clearly, and the token is not used.
    lk.put_secret("client_key", "dev", &unknown_key.pem).await;
    let r = lk.call(&dev, "up", "ping", json!({})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{}", r.body);
    let e = &r.json()["error"];
    assert_eq!((&e["provider_error"], &e["terminal"]), (&json!("invalid_client"), &json!(true)), "{}", r.body);
    let message = e["message"].as_str().unwrap();
    assert!(
        message.starts_with("connector `up`: the token endpoint refused the credential: invalid_client"),
        "{message}"
    );

    // Dev with its own registered key (ES256): its own token; live keeps working with its key.
    lk.put_secret("client_key", "dev", &dev_key.pem).await;
    let r = lk.call(&dev, "up", "ping", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let dev_token = up.last().header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_owned();
    assert_ne!(dev_token, sent);
    assert_eq!(active(dev_token).await["client_id"], client.client_id.as_str());
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/ping")).bearer_auth(&dev).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(lk.call(&live, "up", "ping", json!({})).await.status, 200);
}

#[test]
fn check_names_missing_client_keys_and_an_unknown_algorithm() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let base = "base_url = \"https://a.example\"\nauth = { method = \"oauth2_client_credentials\", token_url = \"https://a.example/token\", client_id = \"c\"";
    let pre = format!("{base}, client_auth = \"private_key_jwt\"");
    let tls = format!("{base}, client_auth = \"tls_client_auth\"");
    std::fs::write(
        work.path().join("latchkey.toml"),
        format!(
            "[connectors.a]\n{pre} }}\n[connectors.b]\n{pre}, client_private_key = {{ secret = \"k\" }}, client_assertion_alg = \"HS256\" }}\n\
             [connectors.c]\n{tls}, client_certificate = {{ secret = \"cc\" }} }}\n"
        ),
    )
    .unwrap();
    let out = run_cli(bin(), work.path(), &data, &[], &["check"], None);
    let t = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("the configuration has 3 problems"), "{t}");
    assert!(
        t.contains(
            "connector `a`, field `auth.client_private_key`: is required with client_auth = \"private_key_jwt\""
        ),
        "{t}"
    );
    assert!(t.contains("connector `b`, field `auth.client_assertion_alg`"), "{t}");
    assert!(t.contains("RS256") && t.contains("ES256"), "{t}");
    assert!(
        t.contains("connector `c`, field `auth.client_key`: is required with client_auth = \"tls_client_auth\""),
        "{t}"
    );
}

#[tokio::test]
async fn tls_client_auth_client_credentials_live_and_dev_through_a_call_and_the_proxy() {
    let p = oidc_mtls();
    let client = p.register_tls_client(&["client_credentials"], CLIENT_DN, false).await;
    let inspector = p.oidc.register("client_secret_post", &["client_credentials"], &[]).await;
    let up = Recorder::start().await;
    let config = format!(
        "[connectors.up]\nbase_url = \"{}\"\n\
         auth = {{ method = \"oauth2_client_credentials\", token_url = \"{}\", client_id = \"{}\", client_auth = \"tls_client_auth\", \
         client_certificate = {{ secret = \"client_cert\" }}, client_key = {{ secret = \"client_key\" }}, ca_certificate = \"\"\"{}\"\"\", scope = \"api:read\" }}\n\
         [connectors.up.calls.ping]\npath = \"/ping\"\n",
        up.base_url, p.oidc.token_url, client.client_id, p.nginx.server_ca_pem
    );
    let lk = Latchkey::start(bin(), &config);
    lk.put_secret("client_cert", "live", &p.nginx.client.cert_pem).await;
    lk.put_secret("client_key", "live", &p.nginx.client.key_pem).await;
    let (live, dev) = (lk.app_key("live").await, lk.app_key("dev").await);
    let bearer = |up: &Recorder| up.last().header("authorization").unwrap().strip_prefix("Bearer ").unwrap().to_owned();

    let r = lk.call(&live, "up", "ping", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent = bearer(&up);
    let info = p.oidc.introspect(&inspector, &sent).await;
    assert_eq!((&info["active"], &info["client_id"]), (&json!(true), &json!(client.client_id)), "{info}");
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/ping")).bearer_auth(&live).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(bearer(&up), sent);

    // Dev: a certificate of the same CA with another subject is oidc-provider's invalid_client;
    // one of the same subject from a CA nginx does not trust is refused by nginx (400).
    for (label, cert, status, provider_error) in [
        ("another subject", p.nginx.client_ca.client_cert("latchkey-dev-client"), 401, json!("invalid_client")),
        ("another CA", p.nginx.foreign_client.clone(), 400, Value::Null),
    ] {
        lk.put_secret("client_cert", "dev", &cert.cert_pem).await;
        lk.put_secret("client_key", "dev", &cert.key_pem).await;
        let r = lk.call(&dev, "up", "ping", json!({})).await;
        assert_eq!((r.status, r.error_code()), (502, Some("token_request_failed")), "{label}: {}", r.body);
        let e = &r.json()["error"];
        assert_eq!(
            (&e["provider_status"], &e["provider_error"]),
            (&json!(status), &provider_error),
            "{label}: {}",
            r.body
        );
        assert_eq!(e["terminal"], true, "{label}: {}", r.body);
    }
    // Dev with its own certificate of the registered subject: its own token.
    let dev_cert = p.nginx.client_ca.client_cert(CLIENT_CN);
    lk.put_secret("client_cert", "dev", &dev_cert.cert_pem).await;
    lk.put_secret("client_key", "dev", &dev_cert.key_pem).await;
    let r = lk.call(&dev, "up", "ping", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let dev_token = bearer(&up);
    assert_ne!(dev_token, sent);
    assert_eq!(p.oidc.introspect(&inspector, &dev_token).await["client_id"], client.client_id.as_str());
    assert_eq!(lk.call(&live, "up", "ping", json!({})).await.status, 200);
}

/// `certificate_bound = true`: oidc-provider binds the token to the certificate (RFC 8705 §3)
/// and the calls present the same certificate with it (nginx's `/whoami` shows both).
#[tokio::test]
async fn certificate_bound_tokens_travel_with_their_certificate() {
    let p = oidc_mtls();
    let client = p.register_tls_client(&["client_credentials"], CLIENT_DN, true).await;
    let inspector = p.oidc.register("client_secret_post", &["client_credentials"], &[]).await;
    let config = format!(
        "[connectors.bank]\nbase_url = \"{}\"\n\
         auth = {{ method = \"oauth2_client_credentials\", token_url = \"{}\", client_id = \"{}\", client_auth = \"tls_client_auth\", \
         client_certificate = {{ secret = \"client_cert\" }}, client_key = {{ secret = \"client_key\" }}, ca_certificate = \"\"\"{}\"\"\", \
         certificate_bound = true }}\n[connectors.bank.calls.whoami]\npath = \"/whoami\"\n",
        p.oidc.issuer, p.oidc.token_url, client.client_id, p.nginx.server_ca_pem
    );
    let lk = Latchkey::start(bin(), &config);
    lk.put_secret("client_cert", "live", &p.nginx.client.cert_pem).await;
    lk.put_secret("client_key", "live", &p.nginx.client.key_pem).await;
    let live = lk.app_key("live").await;
    let r = lk.call(&live, "bank", "whoami", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.body.strip_prefix(&format!("{CLIENT_DN} Bearer ")).unwrap_or_else(|| panic!("{}", r.body)).trim_end();
    let info = p.oidc.introspect(&inspector, token).await;
    assert_eq!(info["active"], true, "{info}");
    assert!(info["cnf"]["x5t#S256"].as_str().is_some_and(|t| t.len() == 43), "the token is not bound: {info}");
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/bank/whoami")).bearer_auth(&live).send().await.unwrap()).await;
    assert_eq!(r.body.trim_end(), format!("{CLIENT_DN} Bearer {token}"));
}

/// What PyJWT and Python's cryptography (not Latchkey's code) say of a client assertion and
/// the certificate it should name: `{"header", "claims"}` once the signature is verified with
/// the certificate's public key, and the certificate's `x5t` and `x5t#S256`.
fn python_checks(assertion: &str, cert_pem: &str, audience: &str) -> Value {
    const SCRIPT: &str = r#"
import base64, json, sys
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes
assertion, cert_pem, audience = sys.argv[1:4]
cert = x509.load_pem_x509_certificate(cert_pem.encode())
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
header = jwt.get_unverified_header(assertion)
claims = jwt.decode(assertion, cert.public_key(), algorithms=[header["alg"]], audience=audience,
                    options={"verify_exp": False})
print(json.dumps({"header": header, "claims": claims,
                  "x5t": b64(cert.fingerprint(hashes.SHA1())), "x5t#S256": b64(cert.fingerprint(hashes.SHA256()))}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", SCRIPT, assertion, cert_pem, audience])
        .output()
        .expect("python3 runs (bash scripts/install-test-peers installs PyJWT)");
    assert!(
        out.status.success(),
        "PyJWT refused the assertion (or is not installed: `pip install 'PyJWT[crypto]==2.15.1'`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `client_key_certificate` (Microsoft Entra's certificate credentials): each assertion's
/// header names the key by its certificate's thumbprints, live and dev each with its own
/// key and certificate from the vault, through the binary.
#[tokio::test]
async fn private_key_jwt_names_the_key_by_its_certificate_thumbprints_live_and_dev() {
    let fake = latchkey_testkit::fake_oauth::FakeOAuth::start().await;
    let up = Recorder::start().await;
    let ca = latchkey_testkit::peers::certs::Ca::new("latchkey-x5t-ca");
    let (live_cert, dev_cert) = (ca.client_cert("entra-live"), ca.client_cert("entra-dev"));
    let auth = format!(
        "{{ method = \"oauth2_client_credentials\", token_url = \"{}\", client_id = \"entra-app\", client_auth = \"private_key_jwt\", \
         client_private_key = {{ secret = \"ck\" }}, client_key_certificate = {{ secret = \"kc\" }}, client_key_id = \"k1\" }}",
        fake.token_url
    );
    let lk = with_connector(&up.base_url, &auth, "[connectors.up.calls.ping]\npath = \"/ping\"\n");
    for (env, pem) in [("live", &live_cert), ("dev", &dev_cert)] {
        lk.put_secret("ck", env, &pem.key_pem).await;
        lk.put_secret("kc", env, &pem.cert_pem).await;
    }
    for env in ["live", "dev"] {
        let key = lk.app_key(env).await;
        let r = lk.call(&key, "up", "ping", json!({})).await;
        assert_eq!(r.status, 200, "{env}: {}", r.body);
    }
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    for (call, pem) in calls.iter().zip([&live_cert, &dev_cert]) {
        let said = python_checks(&call.form["client_assertion"], &pem.cert_pem, &fake.token_url);
        let h = &said["header"];
        assert_eq!(
            (&h["alg"], &h["kid"], &h["x5t"], &h["x5t#S256"]),
            (&json!("ES256"), &json!("k1"), &said["x5t"], &said["x5t#S256"]),
            "{said}"
        );
        assert_eq!(said["claims"]["sub"], "entra-app");
    }
}
