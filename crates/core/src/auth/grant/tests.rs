//! The exact request each grant sends (oauth2-rs `src/tests.rs` style): method, URL, every
//! header in order, and the body byte for byte, from a connector's configuration through
//! `auth::prepare` to `token::build`, without a network.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::auth::authorization_code::{Revocable, UserAuth};
use crate::auth::{ClientPool, Credential, Grant, Prepared, prepare};
use crate::config::Config;
use crate::secret::{AccessToken, PkceVerifier, RefreshToken};
use crate::secrets::SecretSet;
use crate::token::{TokenRequest, WireBody, build};
use crate::{Env, ErrorCode};

const NOW: i64 = 1_700_000_000_000;
const FORM: &str = "content-type: application/x-www-form-urlencoded";
const ACCEPT: &str = "accept: application/json";

fn prepared(auth: Value, secrets: &[(&str, &str)]) -> Prepared {
    static POOL: OnceLock<ClientPool> = OnceLock::new();
    let connector = Config::connector_from_json("crm", json!({"base_url": "https://api.example", "auth": auth}), "t")
        .unwrap_or_else(|e| panic!("{e:?}"));
    let mut set = SecretSet::default();
    for (name, value) in secrets {
        set.set(name, Env::Live, SecretString::from(*value));
    }
    prepare("crm", &connector, Env::Live, &set, POOL.get_or_init(ClientPool::default), false)
        .unwrap_or_else(|e| panic!("{e:?}"))
}

fn grant(auth: Value, secrets: &[(&str, &str)]) -> Arc<Grant> {
    match prepared(auth, secrets).credential {
        Credential::Token(src) => src.grant.clone(),
        Credential::User(user) => user.template.grant.clone(),
        other => panic!("not a grant: {other:?}"),
    }
}

fn user(auth: Value, secrets: &[(&str, &str)]) -> Arc<UserAuth> {
    match prepared(auth, secrets).credential {
        Credential::User(user) => user,
        other => panic!("not the browser flow: {other:?}"),
    }
}

/// The request as it goes over the wire: `POST <uri>`, each header line, the body.
fn wire(req: &http::Request<WireBody>) -> (String, Vec<String>, String) {
    let head = format!("{} {}", req.method(), req.uri());
    let lines = req.headers().iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("<bytes>"))).collect();
    (head, lines, String::from_utf8(req.body().as_bytes().to_vec()).expect("text"))
}

fn sent(req: &TokenRequest) -> (String, Vec<String>, String) {
    wire(&build(req).unwrap_or_else(|e| panic!("{e:?}")))
}

fn lines(l: &[&str]) -> Vec<String> {
    l.iter().map(|s| (*s).to_owned()).collect()
}

fn client_credentials(extra: Value) -> Value {
    let mut auth = json!({"method": "oauth2_client_credentials", "token_url": "https://login.example/oauth2/token",
                          "client_id": "s6BhdRkqt3", "client_secret": {"secret": "cs"}});
    auth.as_object_mut().expect("object").extend(extra.as_object().cloned().unwrap_or_default());
    auth
}

const CS: &[(&str, &str)] = &[("cs", "gX1fBat3bV")];

// ---- client credentials (RFC 6749 §4.4) ----

#[test]
fn client_credentials_with_basic_auth_scope_and_audience() {
    let g =
        grant(client_credentials(json!({"scope": ["read", "write:all"], "audience": "https://api.example/v1"})), CS);
    let req = g.request(NOW).unwrap();
    assert!(!req.is_refresh);
    assert_eq!(
        sent(&req),
        (
            "POST https://login.example/oauth2/token".into(),
            lines(&[ACCEPT, "authorization: Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW", FORM]),
            "grant_type=client_credentials&scope=read+write%3Aall&audience=https%3A%2F%2Fapi.example%2Fv1".into()
        )
    );
}

#[test]
fn client_credentials_with_the_secret_in_the_body() {
    let g = grant(client_credentials(json!({"client_auth": "body", "scope": "read"})), &[("cs", "s3cr&t=+ é")]);
    assert_eq!(
        sent(&g.request(NOW).unwrap()),
        (
            "POST https://login.example/oauth2/token".into(),
            lines(&[ACCEPT, FORM]),
            "grant_type=client_credentials&scope=read&client_id=s6BhdRkqt3&client_secret=s3cr%26t%3D%2B+%C3%A9".into()
        )
    );
}

#[test]
fn client_credentials_with_nothing_optional_sends_only_the_grant_type() {
    let (_, headers, body) = sent(&grant(client_credentials(json!({})), CS).request(NOW).unwrap());
    assert_eq!(body, "grant_type=client_credentials");
    assert_eq!(headers.len(), 3);
}

#[test]
fn a_basic_secret_with_reserved_characters_is_form_encoded_first() {
    let g = grant(client_credentials(json!({"client_id": "my app:1"})), &[("cs", "p@ss w/rd+&=%é")]);
    let (_, headers, _) = sent(&g.request(NOW).unwrap());
    // base64("my+app%3A1:p%40ss+w%2Frd%2B%26%3D%25%C3%A9")
    assert_eq!(headers[1], "authorization: Basic bXkrYXBwJTNBMTpwJTQwc3MrdyUyRnJkJTJCJTI2JTNEJTI1JUMzJUE5");
}

#[test]
fn the_client_secret_is_scrubbed_from_answers_in_both_placements() {
    for placement in ["basic", "body"] {
        let g = grant(client_credentials(json!({"client_auth": placement})), CS);
        let scrubbed = g.request(NOW).unwrap().scrubber().text("bad client gX1fBat3bV");
        assert_eq!(scrubbed.as_deref(), Some("bad client [REDACTED]"), "{placement}");
    }
}

// ---- password (RFC 6749 §4.3) ----

fn password(extra: Value) -> Value {
    let mut auth = json!({"method": "oauth2_password", "token_url": "https://login.example/token",
                          "username": "ada@x.example", "password": {"secret": "pw"}, "client_id": "app"});
    auth.as_object_mut().expect("object").extend(extra.as_object().cloned().unwrap_or_default());
    auth
}

#[test]
fn password_with_basic_client_auth() {
    let g = grant(
        password(json!({"client_secret": {"secret": "cs"}, "scope": "openid offline"})),
        &[("pw", "hunter 2&"), ("cs", "c")],
    );
    assert_eq!(
        sent(&g.request(NOW).unwrap()),
        (
            "POST https://login.example/token".into(),
            lines(&[ACCEPT, "authorization: Basic YXBwOmM=", FORM]),
            "grant_type=password&username=ada%40x.example&password=hunter+2%26&scope=openid+offline".into()
        )
    );
}

#[test]
fn password_with_the_client_secret_in_the_body() {
    let g =
        grant(password(json!({"client_secret": {"secret": "cs"}, "client_auth": "body"})), &[("pw", "p"), ("cs", "c")]);
    let (_, headers, body) = sent(&g.request(NOW).unwrap());
    assert_eq!(headers, lines(&[ACCEPT, FORM]));
    assert_eq!(body, "grant_type=password&username=ada%40x.example&password=p&client_id=app&client_secret=c");
}

#[test]
fn a_public_client_sends_its_id_in_the_body_even_with_basic_configured() {
    let g = grant(password(json!({})), &[("pw", "p")]);
    let (_, headers, body) = sent(&g.request(NOW).unwrap());
    assert_eq!(headers, lines(&[ACCEPT, FORM]));
    assert_eq!(body, "grant_type=password&username=ada%40x.example&password=p&client_id=app");
}

// ---- refresh (RFC 6749 §6) ----

fn refresh_token() -> RefreshToken {
    RefreshToken::from("tGzv3JOkF0XG5Qx2TlKWIA".to_owned())
}

#[test]
fn a_refresh_presents_the_refresh_token_with_the_scope_and_client_auth() {
    let g = grant(client_credentials(json!({"scope": "read"})), CS);
    let req = g.refresh_request(&refresh_token(), NOW).unwrap().unwrap();
    assert!(req.is_refresh);
    assert_eq!(
        sent(&req),
        (
            "POST https://login.example/oauth2/token".into(),
            lines(&[ACCEPT, "authorization: Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW", FORM]),
            "grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA&scope=read".into()
        )
    );
}

#[test]
fn a_password_refresh_with_body_auth_never_sends_the_password() {
    let g =
        grant(password(json!({"client_secret": {"secret": "cs"}, "client_auth": "body"})), &[("pw", "p"), ("cs", "c")]);
    let (_, _, body) = sent(&g.refresh_request(&refresh_token(), NOW).unwrap().unwrap());
    assert_eq!(body, "grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA&client_id=app&client_secret=c");
}

#[test]
fn the_refresh_token_is_scrubbed_from_a_refusal() {
    let g = grant(client_credentials(json!({})), CS);
    let req = g.refresh_request(&refresh_token(), NOW).unwrap().unwrap();
    assert_eq!(req.scrubber().text("unknown tGzv3JOkF0XG5Qx2TlKWIA").as_deref(), Some("unknown [REDACTED]"));
}

#[test]
fn grants_without_refresh_tokens_make_no_refresh_request() {
    let custom = grant(custom_token(), &[("ck", "k"), ("hk", "h")]);
    assert!(custom.refresh_request(&refresh_token(), NOW).is_none());
    assert!(grant(jwt_bearer(json!({})), &[("sa", &test_key().pem)]).refresh_request(&refresh_token(), NOW).is_none());
}

// ---- authorization code (RFC 6749 §4.1, PKCE RFC 7636) ----

fn authorization_code(extra: Value) -> Value {
    let mut auth = json!({"method": "oauth2_authorization_code", "authorize_url": "https://login.example/authorize",
                          "token_url": "https://login.example/token", "client_id": "web-app",
                          "client_secret": {"secret": "cs"}, "scope": ["openid", "email"],
                          "revoke_url": "https://login.example/revoke"});
    auth.as_object_mut().expect("object").extend(extra.as_object().cloned().unwrap_or_default());
    auth
}

const REDIRECT: &str = "https://latchkey.example/oauth/callback";

#[test]
fn the_code_exchange_sends_code_redirect_uri_and_the_pkce_verifier() {
    let u = user(authorization_code(json!({})), &[("cs", "web-secret")]);
    let verifier = PkceVerifier::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned());
    let req = u.code_request(&SecretString::from("SplxlOBeZQQYbYS6WxSbIA"), REDIRECT, Some(verifier), NOW).unwrap();
    assert!(!req.is_refresh);
    assert_eq!(
        sent(&req),
        (
            "POST https://login.example/token".into(),
            lines(&[ACCEPT, "authorization: Basic d2ViLWFwcDp3ZWItc2VjcmV0", FORM]),
            "grant_type=authorization_code&code=SplxlOBeZQQYbYS6WxSbIA\
             &redirect_uri=https%3A%2F%2Flatchkey.example%2Foauth%2Fcallback\
             &code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
                .into()
        )
    );
    // The code and the verifier are secrets; the redirect URI is not.
    let scrubbed = req.scrubber().text("code SplxlOBeZQQYbYS6WxSbIA verifier dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk for https://latchkey.example/oauth/callback");
    assert_eq!(
        scrubbed.as_deref(),
        Some("code [REDACTED] verifier [REDACTED] for https://latchkey.example/oauth/callback")
    );
}

#[test]
fn a_public_client_exchanges_with_its_id_and_the_verifier_only() {
    let u = user(authorization_code(json!({"client_secret": null})), &[]);
    let verifier = PkceVerifier::from("v".repeat(43));
    let (_, headers, body) = sent(&u.code_request(&SecretString::from("c0de"), REDIRECT, Some(verifier), NOW).unwrap());
    assert_eq!(headers, lines(&[ACCEPT, FORM]));
    assert_eq!(
        body,
        format!(
            "grant_type=authorization_code&code=c0de&redirect_uri=https%3A%2F%2Flatchkey.example%2Foauth%2Fcallback\
             &code_verifier={}&client_id=web-app",
            "v".repeat(43)
        )
    );
}

#[test]
fn the_code_exchange_with_body_auth_and_a_custom_token_path() {
    let u = user(
        authorization_code(json!({"client_auth": "body", "token_name": "authed_user.access_token"})),
        &[("cs", "s")],
    );
    let req = u.code_request(&SecretString::from("c"), REDIRECT, None, NOW).unwrap();
    assert_eq!(req.shape.token_path, "authed_user.access_token");
    let (_, headers, body) = sent(&req);
    assert_eq!(headers, lines(&[ACCEPT, FORM]));
    assert!(body.ends_with("&client_id=web-app&client_secret=s"), "{body}");
}

#[test]
fn a_browser_connection_refreshes_with_its_scope_joined_by_the_separator() {
    let g = grant(authorization_code(json!({"scope_separator": ",", "token_name": "data.token"})), &[("cs", "s")]);
    let req = g.refresh_request(&refresh_token(), NOW).unwrap().unwrap();
    assert_eq!(req.shape.token_path, "data.token");
    assert_eq!(sent(&req).2, "grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA&scope=openid%2Cemail");
}

#[test]
fn a_browser_connection_cannot_repeat_its_grant() {
    let g = grant(authorization_code(json!({})), &[("cs", "s")]);
    assert!(!g.can_regrant());
    let e = g.request(NOW).unwrap_err();
    assert_eq!(e.code, ErrorCode::ReauthorizationRequired);
    assert!(grant(client_credentials(json!({})), CS).can_regrant());
}

#[test]
fn the_login_url_carries_the_s256_challenge_of_the_verifier() {
    let u = user(
        authorization_code(json!({"offline_access": true, "extra_authorize_params": {"hd": "x.example"}})),
        &[("cs", "s")],
    );
    let verifier = PkceVerifier::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned());
    let url = u.authorize_url(&Default::default(), REDIRECT, "st-1", Some(&verifier.challenge())).unwrap();
    assert_eq!(
        url,
        "https://login.example/authorize?response_type=code&client_id=web-app\
         &redirect_uri=https%3A%2F%2Flatchkey.example%2Foauth%2Fcallback&scope=openid+email&state=st-1\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256\
         &access_type=offline&prompt=consent&hd=x.example"
    );
}

// ---- revocation (RFC 7009) ----

#[test]
fn revoking_a_refresh_token_hints_its_kind_with_basic_auth() {
    let u = user(authorization_code(json!({})), &[("cs", "web-secret")]);
    let rt = refresh_token();
    let req = u.revocation_request(Revocable::Refresh(&rt), NOW).unwrap().unwrap();
    assert_eq!(
        wire(&req),
        (
            "POST https://login.example/revoke".into(),
            lines(&[FORM, "authorization: Basic d2ViLWFwcDp3ZWItc2VjcmV0"]),
            "token=tGzv3JOkF0XG5Qx2TlKWIA&token_type_hint=refresh_token".into()
        )
    );
    assert!(req.headers()[http::header::AUTHORIZATION].is_sensitive());
}

#[test]
fn revoking_an_access_token_with_body_auth() {
    let u = user(authorization_code(json!({"client_auth": "body"})), &[("cs", "s")]);
    let at = AccessToken::from("2YotnFZFEjr1zCsicMWpAA".to_owned());
    let (_, headers, body) = wire(&u.revocation_request(Revocable::Access(&at), NOW).unwrap().unwrap());
    assert_eq!(headers, lines(&[FORM]));
    assert_eq!(body, "token=2YotnFZFEjr1zCsicMWpAA&token_type_hint=access_token&client_id=web-app&client_secret=s");
}

#[test]
fn without_a_revoke_url_there_is_nothing_to_revoke() {
    let u = user(authorization_code(json!({"revoke_url": null})), &[("cs", "s")]);
    assert!(u.revocation_request(Revocable::Refresh(&refresh_token()), NOW).is_none());
}

// ---- custom token ----

fn custom_token() -> Value {
    json!({"method": "oauth2_custom_token", "token_url": "https://auth.example/api/session",
           "token_headers": {"X-Api-Key": "<api_key>", "X-Tenant": "t-<tenant>"},
           "token_body": r#"{"user": "<user>", "secret": "<ck>", "n": "<n>", "note": "for <user>"}"#,
           "token_name": "data.jwt", "expires_in_name": "data.ttl",
           "secrets": {"ck": {"secret": "ck"}, "api_key": {"secret": "hk"}},
           "values": {"user": "ada", "tenant": "acme", "n": 7}})
}

#[test]
fn a_custom_token_request_sends_its_templated_headers_and_json_body() {
    let g = grant(custom_token(), &[("ck", "body-\"secret\""), ("hk", "hdr-key-1")]);
    let req = g.request(NOW).unwrap();
    assert_eq!((req.shape.token_path.as_str(), req.shape.expires_in_path.as_str()), ("data.jwt", "data.ttl"));
    let built = build(&req).unwrap();
    assert!(built.headers()["x-api-key"].is_sensitive());
    assert_eq!(
        wire(&built),
        (
            "POST https://auth.example/api/session".into(),
            lines(&[ACCEPT, "x-api-key: hdr-key-1", "x-tenant: t-acme", "content-type: application/json"]),
            r#"{"n":7,"note":"for ada","secret":"body-\"secret\"","user":"ada"}"#.into()
        )
    );
    let scrubbed = req.scrubber().text(r#"bad body-\"secret\" and hdr-key-1"#);
    assert_eq!(scrubbed.as_deref(), Some("bad [REDACTED] and [REDACTED]"));
}

// ---- JWT bearer (RFC 7523) ----

struct TestKey {
    pem: String,
    jwk: Value,
}

/// One RSA key per test run, made by the vault (no key is checked in).
fn test_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use latchkey_vault::identity::{SigningAlg, SigningKey};
        let key = SigningKey::generate(SigningAlg::Rs256).expect("an RSA key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
        let body: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", body.join("\n"));
        TestKey { pem, jwk: key.public_jwk().clone() }
    })
}

fn jwt_bearer(extra: Value) -> Value {
    let mut auth = json!({"method": "jwt_bearer", "token_url": "https://oauth2.example/token",
                          "issuer": "svc@proj.iam.example", "private_key": {"secret": "sa"}});
    auth.as_object_mut().expect("object").extend(extra.as_object().cloned().unwrap_or_default());
    auth
}

/// The assertion of a JWT-bearer request, after checking the request around it.
fn assertion_of(req: &TokenRequest, token_url: &str) -> String {
    let (head, headers, body) = sent(req);
    assert_eq!(head, format!("POST {token_url}"));
    assert_eq!(headers, lines(&[ACCEPT, FORM]), "no client authentication: the assertion is the credential");
    let prefix = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
    let jwt = body.strip_prefix(prefix).unwrap_or_else(|| panic!("{body}"));
    assert!(jwt.split('.').count() == 3 && jwt.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    jwt.to_owned()
}

/// The claims, after checking the signature with the public key.
fn verified_claims(jwt: &str, audience: &str) -> Value {
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(test_key().jwk.clone()).expect("a JWK");
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[audience]);
    v.validate_exp = false; // `NOW` is in the past; exp is checked below against iat.
    v.set_required_spec_claims(&["iss", "aud", "iat", "exp"]);
    jsonwebtoken::decode::<Value>(jwt, &DecodingKey::from_jwk(&jwk).expect("a key"), &v)
        .unwrap_or_else(|e| panic!("{e}"))
        .claims
}

#[test]
fn a_jwt_bearer_assertion_is_signed_rs256_with_every_claim() {
    let g = grant(
        jwt_bearer(
            json!({"scope": ["https://www.example/auth/a", "b"], "subject": "ada@x.example", "lifetime_s": 600, "audience": "https://oauth2.example/aud"}),
        ),
        &[("sa", &test_key().pem)],
    );
    let jwt = assertion_of(&g.request(NOW).unwrap(), "https://oauth2.example/token");
    let header = jsonwebtoken::decode_header(&jwt).unwrap();
    assert_eq!((header.alg, header.typ.as_deref(), header.kid), (Algorithm::RS256, Some("JWT"), None));
    let claims = verified_claims(&jwt, "https://oauth2.example/aud");
    let jti = claims["jti"].as_str().expect("a jti").to_owned();
    assert_eq!(jti.len(), 24);
    assert_eq!(
        claims,
        json!({"iss": "svc@proj.iam.example", "sub": "ada@x.example", "aud": "https://oauth2.example/aud",
               "scope": "https://www.example/auth/a b", "iat": NOW / 1000, "exp": NOW / 1000 + 600, "jti": jti})
    );
}

#[test]
fn every_assertion_is_new_and_dated_when_made() {
    let g = grant(jwt_bearer(json!({})), &[("sa", &test_key().pem)]);
    let url = "https://oauth2.example/token";
    let first = verified_claims(&assertion_of(&g.request(NOW).unwrap(), url), url);
    let later = verified_claims(&assertion_of(&g.request(NOW + 61_000).unwrap(), url), url);
    assert_ne!(first["jti"], later["jti"]);
    assert_eq!(later["iat"].as_i64().unwrap() - first["iat"].as_i64().unwrap(), 61);
    // Defaults: an hour, the token URL as the audience, no scope, no subject.
    assert_eq!(first["exp"].as_i64().unwrap() - first["iat"].as_i64().unwrap(), 3600);
    assert!(first.get("scope").is_none() && first.get("sub").is_none());
}

#[test]
fn a_service_account_key_supplies_issuer_token_url_and_key_id() {
    let sa = json!({"type": "service_account", "client_email": "robot@proj.iam.example", "private_key_id": "kid-42",
                    "private_key": test_key().pem, "token_uri": "https://oauth2.example/sa-token"})
    .to_string();
    let g = grant(json!({"method": "jwt_bearer", "private_key": {"secret": "sa"}}), &[("sa", &sa)]);
    assert_eq!(g.token_url(), "https://oauth2.example/sa-token");
    let jwt = assertion_of(&g.request(NOW).unwrap(), "https://oauth2.example/sa-token");
    assert_eq!(jsonwebtoken::decode_header(&jwt).unwrap().kid.as_deref(), Some("kid-42"));
    let claims = verified_claims(&jwt, "https://oauth2.example/sa-token");
    assert_eq!(claims["iss"], "robot@proj.iam.example");
}

#[test]
fn a_jwt_bearer_assertion_is_scrubbed_from_answers() {
    let g = grant(jwt_bearer(json!({})), &[("sa", &test_key().pem)]);
    let req = g.request(NOW).unwrap();
    let jwt = assertion_of(&req, "https://oauth2.example/token");
    assert_eq!(req.scrubber().text(&format!("bad assertion {jwt}")).as_deref(), Some("bad assertion [REDACTED]"));
}

#[test]
fn a_private_key_that_is_no_rsa_pem_is_refused_when_prepared() {
    let connector = Config::connector_from_json(
        "crm",
        json!({"base_url": "https://api.example", "auth": jwt_bearer(json!({}))}),
        "t",
    )
    .unwrap();
    let mut set = SecretSet::default();
    set.set("sa", Env::Live, SecretString::from("-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----"));
    let e = prepare("crm", &connector, Env::Live, &set, &ClientPool::default(), false).unwrap_err();
    assert_eq!(e.code, ErrorCode::SecretMissing);
    assert!(e.message.starts_with("jwt_bearer: `private_key` is not an RSA private key in PEM"), "{}", e.message);
    assert!(!e.message.contains("nope"));
}

// ---- fingerprints ----

fn fingerprint(auth: Value, secrets: &[(&str, &str)]) -> [u8; 32] {
    match prepared(auth, secrets).credential {
        Credential::Token(src) => src.fingerprint,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_grants_fingerprint_follows_its_secrets_and_settings_only() {
    let base = fingerprint(client_credentials(json!({})), CS);
    assert_eq!(base, fingerprint(client_credentials(json!({})), CS));
    assert_ne!(base, fingerprint(client_credentials(json!({})), &[("cs", "other")]));
    assert_ne!(base, fingerprint(client_credentials(json!({"scope": "read"})), CS));
    assert_ne!(base, fingerprint(client_credentials(json!({"client_auth": "body"})), CS));
    assert_ne!(base, fingerprint(client_credentials(json!({"client_id": "other"})), CS));
    // Where the token goes on calls is no part of the grant.
    assert_eq!(base, fingerprint(client_credentials(json!({"token_in": "query"})), CS));
}

#[test]
fn a_secret_never_prints_through_a_prepared_grant() {
    let p = prepared(client_credentials(json!({})), CS);
    let Credential::Token(src) = &p.credential else { panic!() };
    let Grant::ClientCredentials { client, .. } = &*src.grant else { panic!() };
    assert_eq!(format!("{:?}", client.secret), "Some(ClientSecret([REDACTED]))");
    assert_eq!(client.secret.as_ref().map(|s| s.expose_secret()), Some("gX1fBat3bV"));
}

mod client_auth;
mod signed_jwt;
