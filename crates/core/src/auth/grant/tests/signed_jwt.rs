//! `oauth2_custom_token` with `auth.jwt` (GitHub Apps): `<jwt>` is a JWT signed afresh for
//! each token request, checked here with the public key for each algorithm, wherever the
//! templates put it; the key, claims and lifetime are part of the grant's fingerprint.

use super::client_auth::ec_key;
use super::*;

const GITHUB: &str = "https://api.github.example/app/installations/42/access_tokens";

/// Another RSA key (GitHub lets an app have two while one is rotated).
fn other_rsa_key() -> String {
    use latchkey_vault::identity::{SigningAlg, SigningKey};
    let key = SigningKey::generate(SigningAlg::Rs256).expect("an RSA key");
    let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
    let body: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).expect("ascii")).collect();
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", body.join("\n"))
}

fn github_app(jwt: Value) -> Value {
    let mut signed = json!({"private_key": {"secret": "app_key"}, "claims": {"iss": "123456"}});
    signed.as_object_mut().expect("object").extend(jwt.as_object().cloned().unwrap_or_default());
    json!({"method": "oauth2_custom_token", "token_url": GITHUB,
           "token_headers": {"Authorization": "Bearer <jwt>", "X-GitHub-Api-Version": "2022-11-28"},
           "token_body": {}, "token_name": "token", "expires_at_name": "expires_at", "jwt": signed})
}

/// The JWT's claims, after checking its signature with `key` under `alg` (and its `kid`).
fn claims_of(jwt: &str, key: &TestKey, alg: Algorithm, kid: Option<&str>) -> Value {
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    assert_eq!((header.alg, header.typ.as_deref(), header.kid.as_deref()), (alg, Some("JWT"), kid));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).expect("a JWK");
    let mut v = Validation::new(alg);
    v.validate_exp = false; // `NOW` is in the past; exp is checked against iat.
    v.validate_aud = false;
    v.set_required_spec_claims(&["iat", "exp"]);
    jsonwebtoken::decode::<Value>(jwt, &DecodingKey::from_jwk(&jwk).expect("a key"), &v)
        .unwrap_or_else(|e| panic!("{e}"))
        .claims
}

fn bearer_jwt(req: &TokenRequest) -> String {
    let (head, headers, body) = sent(req);
    assert_eq!((head.as_str(), body.as_str()), (format!("POST {GITHUB}").as_str(), "{}"));
    let auth = headers.iter().find_map(|h| h.strip_prefix("authorization: Bearer ")).expect("the JWT header");
    assert_eq!(
        headers,
        lines(&[
            ACCEPT,
            &format!("authorization: Bearer {auth}"),
            "x-github-api-version: 2022-11-28",
            "content-type: application/json"
        ])
    );
    auth.to_owned()
}

#[test]
fn a_github_app_jwt_is_signed_rs256_with_the_claims_backdated_iat_and_exp() {
    let g = grant(github_app(json!({})), &[("app_key", &test_key().pem)]);
    let req = g.request(NOW).unwrap();
    assert_eq!(req.shape.expires_at_path.as_deref(), Some("expires_at"));
    assert_eq!(req.shape.token_path, "token");
    let jwt = bearer_jwt(&req);
    let now = NOW / 1000;
    assert_eq!(
        claims_of(&jwt, test_key(), Algorithm::RS256, None),
        json!({"iss": "123456", "iat": now - 60, "exp": now + 540})
    );
    // The JWT is a secret of the request: scrubbed from what the provider says back.
    assert_eq!(req.scrubber().text(&format!("bad JWT {jwt}")).as_deref(), Some("bad JWT [REDACTED]"));
}

#[test]
fn each_token_request_gets_a_jwt_signed_then() {
    let g = grant(github_app(json!({"lifetime_s": 600})), &[("app_key", &test_key().pem)]);
    let first = claims_of(&bearer_jwt(&g.request(NOW).unwrap()), test_key(), Algorithm::RS256, None);
    let later = claims_of(&bearer_jwt(&g.request(NOW + 3_601_000).unwrap()), test_key(), Algorithm::RS256, None);
    assert_eq!(later["iat"].as_i64().unwrap() - first["iat"].as_i64().unwrap(), 3601);
    assert_eq!(later["exp"].as_i64().unwrap() - later["iat"].as_i64().unwrap(), 660);
}

#[test]
fn es256_and_ps256_with_a_key_id_and_the_jwt_in_the_body_beside_secrets_and_values() {
    for (alg, key, name) in [(Algorithm::ES256, ec_key(), "ES256"), (Algorithm::PS256, test_key(), "PS256")] {
        let auth = json!({"method": "oauth2_custom_token", "token_url": "https://auth.example/token",
                          "token_headers": {"X-Key": "<hk>"},
                          "token_body": {"assertion": "<jwt>", "note": "jwt=<jwt>", "team": "<team>"},
                          "secrets": {"hk": {"secret": "hk"}}, "values": {"team": "T-1"},
                          "jwt": {"private_key": {"secret": "k"}, "alg": name, "key_id": "ABC123",
                                  "claims": {"iss": "T-1", "aud": "appstoreconnect-v1", "scope": ["GET /v1/apps"]},
                                  "lifetime_s": 1200}});
        let g = grant(auth, &[("k", &key.pem), ("hk", "hdr-secret")]);
        let (_, headers, body) = sent(&g.request(NOW).unwrap());
        assert_eq!(headers, lines(&[ACCEPT, "x-key: hdr-secret", "content-type: application/json"]), "{name}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let jwt = body["assertion"].as_str().unwrap();
        assert_eq!(body["note"], format!("jwt={jwt}"));
        assert_eq!(body["team"], "T-1");
        let now = NOW / 1000;
        assert_eq!(
            claims_of(jwt, key, alg, Some("ABC123")),
            json!({"iss": "T-1", "aud": "appstoreconnect-v1", "scope": ["GET /v1/apps"], "iat": now - 60, "exp": now + 1200}),
            "{name}"
        );
    }
}

#[test]
fn a_key_that_is_none_or_does_not_fit_the_algorithm_is_refused_when_prepared() {
    let refused = |alg: Option<&str>, pem: &str| {
        let mut auth = github_app(json!({}));
        if let Some(a) = alg {
            auth["jwt"]["alg"] = json!(a);
        }
        let connector =
            Config::connector_from_json("gh", json!({"base_url": "https://api.example", "auth": auth}), "t").unwrap();
        let mut set = SecretSet::default();
        set.set("app_key", Env::Live, SecretString::from(pem));
        prepare("gh", &connector, Env::Live, &set, &ClientPool::default(), false).unwrap_err()
    };
    let e = refused(Some("ES256"), &test_key().pem);
    assert_eq!(e.code, ErrorCode::SecretMissing);
    assert!(
        e.message.starts_with("oauth2_custom_token: jwt.private_key: ES256 needs an EC private key; give"),
        "{}",
        e.message
    );
    let e = refused(None, "-----BEGIN RSA PRIVATE KEY-----\nCANARYnope\n-----END RSA PRIVATE KEY-----");
    assert!(
        e.message.starts_with("oauth2_custom_token: jwt.private_key: this is not a private key in PEM"),
        "{}",
        e.message
    );
    assert!(!e.message.contains("CANARY"));
}

#[test]
fn the_key_claims_lifetime_and_algorithm_are_part_of_the_grant() {
    let key = &[("app_key", test_key().pem.as_str())][..];
    let base = fingerprint(github_app(json!({})), key);
    assert_eq!(base, fingerprint(github_app(json!({})), key));
    assert_ne!(base, fingerprint(github_app(json!({})), &[("app_key", &other_rsa_key())]));
    assert_ne!(base, fingerprint(github_app(json!({"claims": {"iss": "654321"}})), key));
    assert_ne!(base, fingerprint(github_app(json!({"lifetime_s": 600})), key));
    assert_ne!(base, fingerprint(github_app(json!({"alg": "PS256"})), key));
    assert_ne!(base, fingerprint(github_app(json!({"key_id": "k1"})), key));
    let mut at = github_app(json!({}));
    at["expires_at_name"] = json!("data.expires_at");
    assert_ne!(base, fingerprint(at, key));
}
