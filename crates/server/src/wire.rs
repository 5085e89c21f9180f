//! The wire types: one `Serialize` struct per response body the server writes, built from the
//! domain types at the edge (which are not `Serialize`, except the stored config).
//!
//! Fields are declared in alphabetical order, the order in which `serde_json::json!` wrote
//! them before (its map is sorted), so that the bodies stay byte-for-byte what they were.
//! `Option` fields without `skip_serializing_if` are written as `null`, as before.
//! The one body the engine builds as a `serde_json::Value`, the JWKS (its keys are JWKs the
//! vault made), passes through unchanged.

use latchkey_core::callers::display_prefix;
use latchkey_core::engine::tokens::shown_state;
use latchkey_core::engine::{ConnectionView, ConnectorRuntime, SecretInfo};
use latchkey_core::store::{EventRow, KeyKind, KeyRow, TokenRow, UserRow};
use latchkey_core::time_fmt::rfc3339;
use serde::Serialize;
use serde_json::Value;

/// A text column that holds JSON (an event's detail, a connection's metadata, a user's
/// attributes), or `null` when it does not parse.
fn stored_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

// ----- errors ---------------------------------------------------------------------------

/// `{"error": {...}}`, the body of every error Latchkey writes (see [`crate::ApiError`]).
#[derive(Serialize)]
pub struct ErrorEnvelope<'a> {
    pub error: ErrorBody<'a>,
}

/// `code` and `message`, then the error's details (a provider's `error`, a `reconnect_url`,
/// config `problems`, ...), each at the top level of the object.
#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub code: &'static str,
    pub message: &'a str,
    #[serde(flatten)]
    pub details: &'a serde_json::Map<String, Value>,
}

/// One entry of a `config_invalid` error's `problems`.
#[derive(Serialize)]
pub struct ConfigProblem<'a> {
    pub field: Option<&'a str>,
    pub message: &'a str,
    pub text: String,
}

// ----- health ---------------------------------------------------------------------------

/// `GET /healthz`.
#[derive(Serialize)]
pub struct Health {
    pub status: &'static str,
}

/// `GET /readyz`: `{"status": "ready", "connectors": n}`, or 503 with
/// `{"status": "unavailable", "reason": "..."}`.
#[derive(Serialize)]
pub struct Ready {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connectors: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub status: &'static str,
}

// ----- admin ----------------------------------------------------------------------------

/// A connector and where it was defined.
#[derive(Serialize)]
pub struct Connector<'a> {
    pub definition: &'a latchkey_core::config::ConnectorConfig,
    pub name: &'a str,
    pub source: &'static str,
}

impl<'a> From<&'a ConnectorRuntime> for Connector<'a> {
    fn from(c: &'a ConnectorRuntime) -> Self {
        Connector { definition: &c.config, name: &c.name, source: if c.from_file { "file" } else { "api" } }
    }
}

#[derive(Serialize)]
pub struct Connectors<'a> {
    pub connectors: Vec<Connector<'a>>,
}

/// A secret's name and environments, never its value.
#[derive(Serialize)]
pub struct Secret<'a> {
    pub environments: Vec<&'static str>,
    pub name: &'a str,
    pub updated_at: String,
}

impl<'a> From<&'a SecretInfo> for Secret<'a> {
    fn from(s: &'a SecretInfo) -> Self {
        Secret {
            environments: s.environments.iter().map(|e| e.as_str()).collect(),
            name: &s.name,
            updated_at: rfc3339(s.updated_at),
        }
    }
}

#[derive(Serialize)]
pub struct Secrets<'a> {
    pub secrets: Vec<Secret<'a>>,
}

/// An admin or app key as listed: its display prefix, never the key. `key` is there only in
/// the answer that creates it.
#[derive(Serialize)]
pub struct Key<'a> {
    pub created_at: String,
    pub environment: Option<&'static str>,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    pub kind: &'static str,
    pub last_used_at: Option<String>,
    pub name: &'a str,
    pub prefix: String,
}

impl<'a> From<&'a KeyRow> for Key<'a> {
    fn from(k: &'a KeyRow) -> Self {
        let (kind, environment) = match k.kind {
            KeyKind::Admin => ("admin", None),
            KeyKind::App(e) => ("app", Some(e.as_str())),
        };
        Key {
            created_at: rfc3339(k.created_at),
            environment,
            id: &k.id,
            key: None,
            kind,
            last_used_at: k.last_used_at.map(rfc3339),
            name: &k.name,
            prefix: display_prefix(k),
        }
    }
}

#[derive(Serialize)]
pub struct Keys<'a> {
    pub keys: Vec<Key<'a>>,
}

/// One audit event.
#[derive(Serialize)]
pub struct Event<'a> {
    pub actor: &'a str,
    pub at: String,
    pub connection: Option<&'a str>,
    pub connector: &'a str,
    pub detail: Value,
    pub environment: &'static str,
    pub id: &'a str,
    pub kind: &'static str,
    pub outcome: &'static str,
}

impl<'a> From<&'a EventRow> for Event<'a> {
    fn from(e: &'a EventRow) -> Self {
        Event {
            actor: &e.actor,
            at: rfc3339(e.at),
            connection: (!e.connection.is_empty()).then_some(e.connection.as_str()),
            connector: &e.connector,
            detail: stored_json(&e.detail),
            environment: e.env.as_str(),
            id: &e.id,
            kind: e.kind.as_str(),
            outcome: e.outcome.as_str(),
        }
    }
}

#[derive(Serialize)]
pub struct Events<'a> {
    pub events: Vec<Event<'a>>,
}

/// The health of an app-level token (never the token).
#[derive(Serialize)]
pub struct Token<'a> {
    pub connector: &'a str,
    pub environment: &'static str,
    pub expires_at: Option<String>,
    pub has_token: bool,
    pub last_error: Option<&'a str>,
    pub last_refresh_at: Option<String>,
    pub last_used_at: Option<String>,
    /// `refreshing` while a lease runs; `refresh_outcome_unknown` after one that was never
    /// given back (SECURITY S24).
    pub state: &'static str,
}

impl<'a> Token<'a> {
    pub fn of(t: &'a TokenRow, now: i64) -> Self {
        Token {
            connector: &t.key.connector,
            environment: t.key.env.as_str(),
            expires_at: t.expires_at.map(rfc3339),
            has_token: t.sealed.is_some(),
            last_error: t.last_error.as_deref(),
            last_refresh_at: t.last_refresh_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
            state: shown_state(t, now).as_str(),
        }
    }
}

#[derive(Serialize)]
pub struct Tokens<'a> {
    pub tokens: Vec<Token<'a>>,
}

/// `POST /v1/admin/audit-hash`.
#[derive(Serialize)]
pub struct AuditHash {
    pub hash: String,
}

// ----- connections (oauth) --------------------------------------------------------------

/// A per-user connection and the health of its token.
#[derive(Serialize)]
pub struct Connection<'a> {
    pub connector: &'a str,
    pub created_at: String,
    pub email: Option<&'a str>,
    pub environment: &'static str,
    pub expires_at: Option<String>,
    pub id: &'a str,
    pub last_error: Option<&'a str>,
    pub last_refresh_at: Option<String>,
    pub metadata: Value,
    pub provider_user_id: Option<&'a str>,
    pub scopes: Vec<&'a str>,
    /// The token's shown state, or `empty` when there is none yet.
    pub status: &'static str,
    pub updated_at: String,
    pub user: &'a str,
}

impl<'a> Connection<'a> {
    pub fn of(v: &'a ConnectionView, now: i64) -> Self {
        let t = v.token.as_ref();
        let r = &v.row;
        Connection {
            connector: &r.connector,
            created_at: rfc3339(r.created_at),
            email: r.email.as_deref(),
            environment: r.env.as_str(),
            expires_at: t.and_then(|t| t.expires_at).map(rfc3339),
            id: &r.id,
            last_error: t.and_then(|t| t.last_error.as_deref()),
            last_refresh_at: t.and_then(|t| t.last_refresh_at).map(rfc3339),
            metadata: stored_json(&r.metadata),
            provider_user_id: r.provider_user_id.as_deref(),
            scopes: r.scopes.as_deref().map(|s| s.split_whitespace().collect()).unwrap_or_default(),
            status: t.map_or("empty", |t| shown_state(t, now).as_str()),
            updated_at: rfc3339(r.updated_at),
            user: &r.owner,
        }
    }
}

#[derive(Serialize)]
pub struct Connections<'a> {
    pub connections: Vec<Connection<'a>>,
}

/// `DELETE` of a connection: its id, and whether the provider confirmed the revocation.
#[derive(Serialize)]
pub struct Deleted<'a> {
    pub deleted: &'a str,
    pub revoked: bool,
}

/// A connect link: `POST /v1/connect/{connector}` gives `expires_at`, the user token's
/// `GET /oauth/{connector}/connect` does not.
#[derive(Serialize)]
pub struct ConnectLink {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub url: String,
}

// ----- identity -------------------------------------------------------------------------

/// A user of the identity provider.
#[derive(Serialize)]
pub struct User<'a> {
    pub attributes: Value,
    pub created_at: String,
    pub email: Option<&'a str>,
    pub environment: &'static str,
    pub id: &'a str,
    pub updated_at: String,
}

impl<'a> From<&'a UserRow> for User<'a> {
    fn from(u: &'a UserRow) -> Self {
        User {
            attributes: stored_json(&u.attributes),
            created_at: rfc3339(u.created_at),
            email: u.email.as_deref(),
            environment: u.env.as_str(),
            id: &u.id,
            updated_at: rfc3339(u.updated_at),
        }
    }
}

/// An access and refresh token (RFC 6749 §5.1): `POST /v1/users/{id}/tokens`, `POST /v1/token`.
#[derive(Serialize)]
pub struct TokenPair<'a> {
    pub access_token: &'a str,
    pub expires_in: i64,
    pub refresh_token: &'a str,
    pub token_type: &'a str,
}

impl<'a> From<&'a latchkey_core::engine::identity::TokenPair> for TokenPair<'a> {
    fn from(p: &'a latchkey_core::engine::identity::TokenPair) -> Self {
        TokenPair {
            access_token: &p.access_token,
            expires_in: p.expires_in,
            refresh_token: &p.refresh_token,
            token_type: &p.token_type,
        }
    }
}

/// `POST /v1/login/exchange`'s user.
#[derive(Serialize)]
pub struct SignedInUser<'a> {
    pub email: Option<&'a str>,
    pub environment: &'static str,
    pub id: &'a str,
}

/// `POST /v1/login/exchange`: the signed-in user, its tokens and its connection's id.
#[derive(Serialize)]
pub struct SignIn<'a> {
    pub connection: &'a str,
    pub tokens: TokenPair<'a>,
    pub user: SignedInUser<'a>,
}

/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §3, RFC 8414).
#[derive(Serialize)]
pub struct OpenIdConfiguration<'a> {
    pub grant_types_supported: [&'static str; 1],
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub introspection_endpoint: String,
    pub introspection_endpoint_auth_methods_supported: [&'static str; 1],
    pub issuer: &'a str,
    pub jwks_uri: String,
    pub response_types_supported: [&'static str; 0],
    pub revocation_endpoint: String,
    pub revocation_endpoint_auth_methods_supported: [&'static str; 1],
    pub subject_types_supported: [&'static str; 1],
    pub token_endpoint: String,
    pub token_endpoint_auth_methods_supported: [&'static str; 1],
}

impl<'a> OpenIdConfiguration<'a> {
    /// The document of the identity provider at `base` (its public URL).
    pub fn of(base: &'a str, algs: Vec<&'static str>) -> Self {
        OpenIdConfiguration {
            grant_types_supported: ["refresh_token"],
            id_token_signing_alg_values_supported: algs,
            introspection_endpoint: format!("{base}/v1/token/introspect"),
            introspection_endpoint_auth_methods_supported: ["bearer"],
            issuer: base,
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            response_types_supported: [],
            revocation_endpoint: format!("{base}/v1/token/revoke"),
            revocation_endpoint_auth_methods_supported: ["bearer"],
            subject_types_supported: ["public"],
            token_endpoint: format!("{base}/v1/token"),
            token_endpoint_auth_methods_supported: ["none"],
        }
    }
}

/// `POST /v1/token/introspect` (RFC 7662 §2.2): exactly `{"active": false}` for anything
/// not active; otherwise `active`, `token_type` and the token's claims.
#[derive(Serialize)]
pub struct Introspection<'a> {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
}

impl Introspection<'_> {
    pub const INACTIVE: Introspection<'static> = Introspection {
        active: false,
        aud: None,
        env: None,
        exp: None,
        iat: None,
        iss: None,
        jti: None,
        nbf: None,
        sub: None,
        token_type: None,
    };
}

impl<'a> From<&'a latchkey_core::engine::identity::Introspection> for Introspection<'a> {
    fn from(found: &'a latchkey_core::engine::identity::Introspection) -> Self {
        use latchkey_core::engine::identity::Introspection as Found;
        match found {
            Found::Inactive => Introspection::INACTIVE,
            Found::Refresh { sub, exp, iss, env } => Introspection {
                active: true,
                env: Some(env.as_str()),
                exp: Some(*exp),
                iss: Some(iss),
                sub: Some(sub),
                token_type: Some("refresh_token"),
                ..Introspection::INACTIVE
            },
            Found::Access(c) => Introspection {
                active: true,
                aud: Some(&c.aud),
                env: Some(&c.env),
                exp: Some(c.exp),
                iat: Some(c.iat),
                iss: Some(&c.iss),
                jti: Some(&c.jti),
                nbf: Some(c.nbf),
                sub: Some(&c.sub),
                token_type: Some("access_token"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use latchkey_core::Env;
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
        as_json_wrote(Keys { keys: vec![Key::from(&admin), Key { key: Some("lk_dev_x"), ..Key::from(&app) }] });
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
        as_json_wrote(Events { events: vec![Event::from(&event)] });
        as_json_wrote(Tokens { tokens: vec![Token::of(&token(), 0)] });
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
        as_json_wrote(Connections { connections: views.iter().map(|v| Connection::of(v, 0)).collect() });
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
        };
        as_json_wrote(Introspection::from(&Found::Access(claims)));
        as_json_wrote(OpenIdConfiguration::of("https://lk.example", vec!["ES256", "RS256"]));
        as_json_wrote(AuditHash { hash: "h".into() });
        let mut details = serde_json::Map::new();
        details.insert("reconnect_url".into(), "https://x".into());
        as_json_wrote(ErrorEnvelope { error: ErrorBody { code: "not_found", message: "m", details: &details } });
    }

    /// The shapes the end-to-end suite and clients rely on: `null`s stay, omissions stay.
    #[test]
    fn nulls_and_omissions() {
        let v = serde_json::to_value(Introspection::INACTIVE).unwrap();
        assert_eq!(v, serde_json::json!({"active": false}));
        let v = serde_json::to_value(OpenIdConfiguration::of("https://lk", vec![])).unwrap();
        assert_eq!(v["response_types_supported"], serde_json::json!([]));
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
}
