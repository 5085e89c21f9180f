//! `client_auth = "private_key_jwt"`: the exact form, and the assertion's header and claims
//! checked with the public key, for each algorithm and each request that authenticates; and
//! `"tls_client_auth"`: the form carries the client id alone.

use super::*;

const TOKEN_URL: &str = "https://login.example/oauth2/token";
const ASSERTION_FORM: &str =
    "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=";

/// One P-256 key per test run.
pub(super) fn ec_key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        use latchkey_vault::identity::{SigningAlg, SigningKey};
        let key = SigningKey::generate(SigningAlg::Es256).expect("an EC key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
        let body: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", body.join("\n"));
        TestKey { pem, jwk: key.public_jwk().clone() }
    })
}

fn keyed(extra: Value) -> Value {
    let mut auth = json!({"method": "oauth2_client_credentials", "token_url": TOKEN_URL, "client_id": "s6BhdRkqt3",
                          "client_auth": "private_key_jwt", "client_private_key": {"secret": "ck"}});
    auth.as_object_mut().expect("object").extend(extra.as_object().cloned().unwrap_or_default());
    auth
}

/// The client assertion at the end of `body`, after `before` and the assertion type.
fn assertion_in(body: &str, before: &str) -> String {
    let jwt = body
        .strip_prefix(before)
        .and_then(|rest| rest.strip_prefix(ASSERTION_FORM))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(jwt.split('.').count() == 3 && jwt.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)));
    jwt.to_owned()
}

/// The claims, after checking the signature with `key`'s public half under `alg`.
fn verified(jwt: &str, key: &TestKey, alg: Algorithm, audience: &str) -> Value {
    assert_eq!(jsonwebtoken::decode_header(jwt).unwrap().alg, alg);
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).expect("a JWK");
    let mut v = Validation::new(alg);
    v.set_audience(&[audience]);
    v.validate_exp = false; // `NOW` is in the past; exp is checked against iat.
    v.set_required_spec_claims(&["iss", "sub", "aud", "iat", "exp"]);
    jsonwebtoken::decode::<Value>(jwt, &DecodingKey::from_jwk(&jwk).expect("a key"), &v)
        .unwrap_or_else(|e| panic!("{e}"))
        .claims
}

#[test]
fn client_credentials_with_a_client_assertion_and_no_secret() {
    let g = grant(keyed(json!({"scope": "read", "client_key_id": "key-2024"})), &[("ck", &test_key().pem)]);
    let (head, headers, body) = sent(&g.request(NOW).unwrap());
    assert_eq!(head, format!("POST {TOKEN_URL}"));
    assert_eq!(headers, lines(&[ACCEPT, FORM]), "no Authorization header: the assertion authenticates");
    let jwt = assertion_in(&body, "grant_type=client_credentials&scope=read&client_id=s6BhdRkqt3&");
    let header = jsonwebtoken::decode_header(&jwt).unwrap();
    assert_eq!((header.typ.as_deref(), header.kid.as_deref()), (Some("JWT"), Some("key-2024")));
    let claims = verified(&jwt, test_key(), Algorithm::RS256, TOKEN_URL);
    let jti = claims["jti"].as_str().expect("a jti").to_owned();
    assert_eq!(jti.len(), 24);
    assert_eq!(
        claims,
        json!({"iss": "s6BhdRkqt3", "sub": "s6BhdRkqt3", "aud": TOKEN_URL, "jti": jti,
               "iat": NOW / 1000, "exp": NOW / 1000 + 60})
    );
}

#[test]
fn rs256_ps256_and_es256_each_verify_with_the_public_key() {
    for (alg, key, setting) in [
        (Algorithm::RS256, test_key(), None),
        (Algorithm::RS256, test_key(), Some("RS256")),
        (Algorithm::PS256, test_key(), Some("PS256")),
        (Algorithm::ES256, ec_key(), None),
        (Algorithm::ES256, ec_key(), Some("ES256")),
    ] {
        let extra = setting.map_or(json!({}), |a| json!({"client_assertion_alg": a}));
        let g = grant(keyed(extra), &[("ck", &key.pem)]);
        let (_, _, body) = sent(&g.request(NOW).unwrap());
        let jwt = assertion_in(&body, "grant_type=client_credentials&client_id=s6BhdRkqt3&");
        assert_eq!(jsonwebtoken::decode_header(&jwt).unwrap().kid, None, "{alg:?}");
        let claims = verified(&jwt, key, alg, TOKEN_URL);
        assert_eq!(claims["iss"], "s6BhdRkqt3", "{alg:?}");
    }
}

#[test]
fn every_assertion_is_new_and_dated_when_made() {
    let g = grant(keyed(json!({})), &[("ck", &test_key().pem)]);
    let claims = |now| {
        let (_, _, body) = sent(&g.request(now).unwrap());
        let jwt = assertion_in(&body, "grant_type=client_credentials&client_id=s6BhdRkqt3&");
        verified(&jwt, test_key(), Algorithm::RS256, TOKEN_URL)
    };
    let (first, later) = (claims(NOW), claims(NOW + 90_000));
    assert_ne!(first["jti"], later["jti"]);
    assert_eq!(later["iat"].as_i64().unwrap() - first["iat"].as_i64().unwrap(), 90);
}

#[test]
fn a_refresh_a_code_exchange_and_a_revocation_each_carry_an_assertion_for_the_token_endpoint() {
    let pw = json!({"method": "oauth2_password", "token_url": TOKEN_URL, "username": "ada", "password": {"secret": "pw"},
                    "client_id": "app", "client_auth": "private_key_jwt", "client_private_key": {"secret": "ck"}});
    let g = grant(pw, &[("pw", "p"), ("ck", &test_key().pem)]);
    let (_, headers, body) = sent(&g.refresh_request(&refresh_token(), NOW).unwrap().unwrap());
    assert_eq!(headers, lines(&[ACCEPT, FORM]));
    let jwt = assertion_in(&body, "grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA&client_id=app&");
    assert_eq!(verified(&jwt, test_key(), Algorithm::RS256, TOKEN_URL)["sub"], "app");

    let web = authorization_code(json!({"client_secret": null, "client_auth": "private_key_jwt",
                                        "client_private_key": {"secret": "ck"}, "client_assertion_alg": "ES256",
                                        "revoke_url": "https://login.example/oauth2/revoke"}));
    let u = user(web, &[("ck", &ec_key().pem)]);
    let req = u.code_request(&SecretString::from("c0de"), REDIRECT, None, NOW).unwrap();
    let (_, headers, body) = sent(&req);
    assert_eq!(headers, lines(&[ACCEPT, FORM]));
    let before = "grant_type=authorization_code&code=c0de&redirect_uri=https%3A%2F%2Flatchkey.example%2Foauth%2Fcallback&client_id=web-app&";
    let token_url = u.config.token_url.to_string();
    let jwt = assertion_in(&body, before);
    assert_eq!(verified(&jwt, ec_key(), Algorithm::ES256, &token_url)["iss"], "web-app");

    let rt = refresh_token();
    let (_, headers, body) = wire(&u.revocation_request(Revocable::Refresh(&rt), NOW).unwrap().unwrap());
    assert!(!headers.iter().any(|h| h.starts_with("authorization")), "{headers:?}");
    let jwt = assertion_in(&body, "token=tGzv3JOkF0XG5Qx2TlKWIA&token_type_hint=refresh_token&client_id=web-app&");
    assert_eq!(verified(&jwt, ec_key(), Algorithm::ES256, &token_url)["aud"], token_url.as_str());
}

#[test]
fn the_assertion_is_scrubbed_from_answers_and_its_type_is_not() {
    let g = grant(keyed(json!({})), &[("ck", &test_key().pem)]);
    let req = g.request(NOW).unwrap();
    let (_, _, body) = sent(&req);
    let jwt = assertion_in(&body, "grant_type=client_credentials&client_id=s6BhdRkqt3&");
    let said = format!("bad {jwt} of type urn:ietf:params:oauth:client-assertion-type:jwt-bearer");
    assert_eq!(
        req.scrubber().text(&said).as_deref(),
        Some("bad [REDACTED] of type urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
}

fn refused(alg: Option<&str>, pem: &str) -> crate::CallError {
    let extra = alg.map_or(json!({}), |a| json!({"client_assertion_alg": a}));
    let connector =
        Config::connector_from_json("crm", json!({"base_url": "https://api.example", "auth": keyed(extra)}), "t")
            .unwrap();
    let mut set = SecretSet::default();
    set.set("ck", Env::Live, SecretString::from(pem));
    prepare("crm", &connector, Env::Live, &set, &ClientPool::default(), false).unwrap_err()
}

#[test]
fn a_key_that_is_none_or_does_not_fit_the_algorithm_is_refused_when_prepared() {
    let e = refused(None, "-----BEGIN PRIVATE KEY-----\nnope-canary\n-----END PRIVATE KEY-----");
    assert_eq!(e.code, ErrorCode::SecretMissing);
    assert!(e.message.starts_with("client_private_key: this is not a private key in PEM"), "{}", e.message);
    assert!(!e.message.contains("nope-canary"));
    let e = refused(Some("ES256"), &test_key().pem);
    assert!(e.message.starts_with("client_private_key: ES256 needs an EC private key"), "{}", e.message);
    let e = refused(Some("PS256"), &ec_key().pem);
    assert!(e.message.starts_with("client_private_key: PS256 needs an RSA private key"), "{}", e.message);
    assert!(!e.message.contains(&ec_key().pem[30..60]));
}

#[test]
fn the_fingerprint_follows_the_key_its_id_and_algorithm() {
    let key = &[("ck", test_key().pem.as_str())][..];
    let base = fingerprint(keyed(json!({})), key);
    assert_eq!(base, fingerprint(keyed(json!({})), key));
    assert_ne!(base, fingerprint(keyed(json!({})), &[("ck", &ec_key().pem)]));
    assert_ne!(base, fingerprint(keyed(json!({"client_key_id": "k2"})), key));
    assert_ne!(base, fingerprint(keyed(json!({"client_assertion_alg": "PS256"})), key));
}

#[test]
fn a_client_key_never_prints_through_a_prepared_grant() {
    let p = prepared(keyed(json!({"client_key_id": "kid-1"})), &[("ck", &test_key().pem)]);
    let Credential::Token(src) = &p.credential else { panic!() };
    let Grant::ClientCredentials { client, .. } = &*src.grant else { panic!() };
    let shown = format!("{:?}", client.assertion);
    assert_eq!(shown, "Some(ClientAssertion(RS256, kid Some(\"kid-1\"), [REDACTED]))");
}

// ---- tls_client_auth (RFC 8705 §2.1) ----

#[test]
fn tls_client_auth_sends_the_client_id_alone_in_the_form() {
    use crate::auth::grant::Client;
    use crate::config::ClientAuth;
    let client = Client { id: "s6BhdRkqt3".into(), secret: None, auth: ClientAuth::TlsClientAuth, assertion: None };
    let g =
        Grant::ClientCredentials { token_url: TOKEN_URL.into(), client, scope: Some("read".into()), audience: None };
    assert_eq!(
        sent(&g.request(NOW).unwrap()),
        (
            format!("POST {TOKEN_URL}"),
            lines(&[ACCEPT, FORM]),
            "grant_type=client_credentials&scope=read&client_id=s6BhdRkqt3".into()
        )
    );
    let (_, headers, body) = sent(&g.refresh_request(&refresh_token(), NOW).unwrap().unwrap());
    assert_eq!(headers, lines(&[ACCEPT, FORM]));
    assert_eq!(body, "grant_type=refresh_token&refresh_token=tGzv3JOkF0XG5Qx2TlKWIA&scope=read&client_id=s6BhdRkqt3");
}

#[test]
fn a_tls_client_certificate_that_is_no_pem_is_refused_when_prepared() {
    let auth = json!({"method": "oauth2_client_credentials", "token_url": TOKEN_URL, "client_id": "c",
                      "client_auth": "tls_client_auth", "client_certificate": {"secret": "cc"}, "client_key": {"secret": "ck"}});
    let connector =
        Config::connector_from_json("crm", json!({"base_url": "https://api.example", "auth": auth}), "t").unwrap();
    let mut set = SecretSet::default();
    set.set("cc", Env::Live, SecretString::from("cert-canary"));
    set.set("ck", Env::Live, SecretString::from(test_key().pem.clone()));
    let e = prepare("crm", &connector, Env::Live, &set, &ClientPool::default(), false).unwrap_err();
    assert_eq!(e.code, ErrorCode::SecretMissing);
    assert!(e.message.starts_with("tls_client_auth: "), "{}", e.message);
    assert!(!e.message.contains("canary"), "{}", e.message);
}

// ---- x5t: the key named by its certificate's thumbprint ----

/// Runs Debian's `openssl` with `args` and `stdin`; its standard output.
fn openssl(args: &[&str], stdin: &str) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run openssl ({e}): install it with `apt-get install openssl`"));
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write to openssl");
    let out = child.wait_with_output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?} failed");
    String::from_utf8(out.stdout).expect("openssl writes text")
}

/// `openssl x509 -fingerprint` of `cert` (`AB:CD:...`) as base64url, the form of `x5t`.
fn openssl_thumbprint(cert: &str, digest: &str) -> String {
    let out = openssl(&["x509", "-noout", "-fingerprint", digest], cert);
    let hex = out.trim().split_once('=').expect("Fingerprint=...").1.replace(':', "");
    let bytes: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn a_client_key_certificate_puts_its_thumbprints_in_the_assertion_header() {
    // Key, certificate and thumbprints all made by openssl, not by Latchkey's code.
    let both = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "-",
            "-out",
            "-",
            "-subj",
            "/CN=latchkey-x5t",
            "-days",
            "2",
        ],
        "",
    );
    let split = both.find("-----BEGIN CERTIFICATE-----").expect("a certificate");
    let (key_pem, cert_pem) = both.split_at(split);
    let (sha1, sha256) = (openssl_thumbprint(cert_pem, "-sha1"), openssl_thumbprint(cert_pem, "-sha256"));
    assert_eq!((sha1.len(), sha256.len()), (27, 43));
    let public_pem = openssl(&["x509", "-noout", "-pubkey"], cert_pem);
    let check = |extra: Value, secrets: &[(&str, &str)]| {
        let g = grant(keyed(extra), secrets);
        let (_, _, body) = sent(&g.request(NOW).unwrap());
        let jwt = assertion_in(&body, "grant_type=client_credentials&client_id=s6BhdRkqt3&");
        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        let mut v = Validation::new(header.alg);
        v.set_audience(&[TOKEN_URL]);
        v.validate_exp = false;
        let key = DecodingKey::from_rsa_pem(public_pem.as_bytes()).expect("openssl's public key");
        let claims = jsonwebtoken::decode::<Value>(&jwt, &key, &v).unwrap_or_else(|e| panic!("{e}")).claims;
        assert_eq!(claims["sub"], "s6BhdRkqt3");
        header
    };
    // Inline, with PS256 and a kid: both thumbprints and the kid.
    let h = check(
        json!({"client_key_certificate": cert_pem, "client_assertion_alg": "PS256", "client_key_id": "k9"}),
        &[("ck", key_pem)],
    );
    assert_eq!(
        (h.alg, h.x5t.as_deref(), h.x5t_s256.as_deref(), h.kid.as_deref()),
        (Algorithm::PS256, Some(sha1.as_str()), Some(sha256.as_str()), Some("k9"))
    );
    // From the vault, the certificate first in a chain.
    let chain = format!("{cert_pem}{}", ec_certificate_stand_in());
    let h = check(json!({"client_key_certificate": {"secret": "cert"}}), &[("ck", key_pem), ("cert", &chain)]);
    assert_eq!(
        (h.alg, h.x5t.as_deref(), h.x5t_s256.as_deref(), h.kid),
        (Algorithm::RS256, Some(sha1.as_str()), Some(sha256.as_str()), None)
    );
    // Without it: neither.
    let h = check(json!({}), &[("ck", key_pem)]);
    assert_eq!((h.x5t, h.x5t_s256), (None, None));
    // The certificate is part of the grant.
    let key = &[("ck", key_pem)][..];
    assert_ne!(
        fingerprint(keyed(json!({})), key),
        fingerprint(keyed(json!({"client_key_certificate": cert_pem})), key)
    );
    // What is not a certificate is refused when prepared, naming the field.
    let connector = Config::connector_from_json(
        "crm",
        json!({"base_url": "https://api.example", "auth": keyed(json!({"client_key_certificate": {"secret": "cert"}}))}),
        "t",
    )
    .unwrap();
    let mut set = SecretSet::default();
    set.set("ck", Env::Live, SecretString::from(key_pem));
    set.set(
        "cert",
        Env::Live,
        SecretString::from("-----BEGIN CERTIFICATE-----\nCANARYnot-base64\n-----END CERTIFICATE-----\n"),
    );
    let e = prepare("crm", &connector, Env::Live, &set, &ClientPool::default(), false).unwrap_err();
    assert_eq!(e.code, ErrorCode::SecretMissing);
    assert!(e.message.starts_with("client_key_certificate: this is not a certificate in PEM"), "{}", e.message);
    assert!(!e.message.contains("CANARY"));
}

/// A second PEM block after the first certificate (its content is never read).
fn ec_certificate_stand_in() -> &'static str {
    "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n"
}
