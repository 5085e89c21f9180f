//! The bodies are byte for byte what `json!` wrote before the wire types, and keep their
//! `null`s and omissions.

use latchkey_core::Env;
use latchkey_core::engine::ConnectionView;
use latchkey_core::store::{ConnectionRow, EventRow, KeyKind, KeyRow, TokenKey, TokenRow, UserRow};
use serde::Serialize;

use super::*;

/// The bytes `json!` wrote: the same value through a sorted `serde_json::Value`.
#[track_caller]
fn as_json_wrote(body: impl Serialize) {
    let direct = serde_json::to_string(&body).unwrap();
    let sorted = serde_json::to_string(&serde_json::to_value(&body).unwrap()).unwrap();
    assert_eq!(direct, sorted, "fields out of alphabetical order");
}

fn token() -> TokenRow {
    TokenRow {
        key: TokenKey::app("github", Env::Live),
        sealed: Some(vec![1]),
        expires_at: Some(1_800_000_000_000),
        state: latchkey_core::token::TokenState::Ok,
        last_error: None,
        last_refresh_at: Some(1_700_000_000_000),
        last_used_at: None,
        version: 1,
        lease_until: 0,
        epoch: 0,
        updated_at: 0,
    }
}

#[test]
fn bodies_are_byte_for_byte_what_json_wrote() {
    as_json_wrote(Health { status: "ok" });
    as_json_wrote(Ready { connectors: Some(2), reason: None, status: "ready" });
    as_json_wrote(Ready { connectors: None, reason: Some("down".into()), status: "unavailable" });
    let admin = KeyRow {
        id: "k1".into(),
        name: "ci".into(),
        kind: KeyKind::Admin,
        hash: vec![],
        created_at: 0,
        last_used_at: None,
    };
    let app = KeyRow { kind: KeyKind::App(Env::Dev), last_used_at: Some(5), ..admin.clone() };
    as_json_wrote(Keys {
        has_more: false,
        keys: vec![Key::from(&admin), Key { key: Some("lk_dev_x"), ..Key::from(&app) }],
    });
    let event = EventRow {
        id: "e".into(),
        at: 0,
        kind: latchkey_core::event::EventKind::TokenRefreshed,
        connector: "github".into(),
        env: Env::Live,
        connection: String::new(),
        actor: "k1".into(),
        outcome: latchkey_core::event::EventOutcome::Ok,
        detail: r#"{"status": 200}"#.into(),
    };
    as_json_wrote(Events { events: vec![Event::from(&event)], has_more: true });
    as_json_wrote(Tokens { has_more: false, tokens: vec![Token::of(&token(), 0)] });
    let row = ConnectionRow {
        id: "c1".into(),
        connector: "google".into(),
        env: Env::Live,
        owner: "u1".into(),
        provider_user_id: None,
        email: Some("a@example.com".into()),
        scopes: Some("a b".into()),
        metadata: "{}".into(),
        return_to: None,
        created_at: 0,
        updated_at: 0,
    };
    let views = [ConnectionView { row: row.clone(), token: None }, ConnectionView { row, token: Some(token()) }];
    as_json_wrote(Connections { connections: views.iter().map(|v| Connection::of(v, 0)).collect(), has_more: false });
    as_json_wrote(Deleted { deleted: "c1", revoked: true });
    as_json_wrote(ConnectLink { expires_at: Some("2026-01-01T00:00:00Z".into()), url: "https://x".into() });
    let user = UserRow {
        env: Env::Dev,
        id: "u1".into(),
        email: None,
        attributes: r#"{"b": 1, "a": 2}"#.into(),
        provider: None,
        provider_user_id: None,
        created_at: 0,
        updated_at: 0,
    };
    as_json_wrote(User::from(&user));
    let pair = latchkey_core::engine::identity::TokenPair {
        access_token: "a".into(),
        token_type: "Bearer".into(),
        expires_in: 900,
        refresh_token: "r".into(),
        scope: Some("tools".into()),
    };
    as_json_wrote(SignIn {
        connection: "c1",
        tokens: TokenPair::from(&pair),
        user: SignedInUser { email: None, environment: "dev", id: "u1" },
    });
    as_json_wrote(Introspection::INACTIVE);
    use latchkey_core::engine::identity::{Introspection as Found, UserClaims};
    let refresh = Found::Refresh { sub: "u1".into(), exp: 1, iss: "https://lk".into(), env: Env::Live };
    as_json_wrote(Introspection::from(&refresh));
    let claims = UserClaims {
        iss: "https://lk".into(),
        sub: "u1".into(),
        aud: "app".into(),
        exp: 3,
        iat: 1,
        nbf: 1,
        jti: "j".into(),
        env: "live".into(),
        fam: "f".into(),
        scope: None,
    };
    as_json_wrote(Introspection::from(&Found::Access(claims)));
    let m = latchkey_core::engine::mcp_auth::clients::Metadata {
        redirect_uris: vec!["https://a.example/cb".into()],
        grant_types: vec!["authorization_code".into()],
        client_name: Some("A".into()),
        client_uri: None,
        logo_uri: None,
    };
    as_json_wrote(RegisteredClient::of("mcp_1", 1, &m));
    as_json_wrote(OpenIdConfiguration::of("https://lk.example", vec!["ES256", "RS256"], vec!["tools".into()]));
    as_json_wrote(AuditHash { hash: "h".into() });
    let mut details = serde_json::Map::new();
    details.insert("reconnect_url".into(), "https://x".into());
    let doc_url = "/docs/errors#not_found".to_owned();
    as_json_wrote(ErrorEnvelope {
        error: ErrorBody { code: "not_found", message: "m", doc_url, request_id: Some("r-1"), details: &details },
    });
}

/// The shapes the end-to-end suite and clients rely on: `null`s stay, omissions stay.
#[test]
fn nulls_and_omissions() {
    let v = serde_json::to_value(Introspection::INACTIVE).unwrap();
    assert_eq!(v, serde_json::json!({"active": false}));
    let v = serde_json::to_value(OpenIdConfiguration::of("https://lk", vec![], vec!["tools".into()])).unwrap();
    assert_eq!(v["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(v["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(v["authorization_endpoint"], "https://lk/oauth/authorize");
    assert_eq!(v["registration_endpoint"], "https://lk/v1/mcp/register");
    assert_eq!(v["id_token_signing_alg_values_supported"], serde_json::json!([]));
    assert_eq!(v["issuer"], "https://lk");
    let v = serde_json::to_value(ConnectLink { expires_at: None, url: "u".into() }).unwrap();
    assert_eq!(v, serde_json::json!({"url": "u"}));
    let v = serde_json::to_value(Ready { connectors: Some(0), reason: None, status: "ready" }).unwrap();
    assert_eq!(v, serde_json::json!({"connectors": 0, "status": "ready"}));
    let t = TokenRow { last_error: None, expires_at: None, ..token() };
    let v = serde_json::to_value(Token::of(&t, 0)).unwrap();
    assert_eq!(v["expires_at"], serde_json::Value::Null);
    assert_eq!(v["last_error"], serde_json::Value::Null);
    assert!(v.as_object().unwrap().contains_key("last_used_at"));
}
