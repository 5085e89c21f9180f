//! The identity provider's bodies: users, token pairs, sign-in, discovery, introspection.

use latchkey_core::store::UserRow;
use latchkey_core::time_fmt::rfc3339;
use secrecy::ExposeSecret as _;
use serde::Serialize;
use serde_json::Value;

use super::stored_json;

/// A user of the identity provider.
#[derive(Serialize, utoipa::ToSchema)]
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
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenPair<'a> {
    pub access_token: &'a str,
    pub expires_in: i64,
    pub refresh_token: &'a str,
    /// The granted scope, when the tokens are narrowed (`tools`, `connector:NAME`,
    /// `tool:NAME`, space-separated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'a str>,
    pub token_type: &'a str,
}

/// The answer to a token exchange (RFC 8693 §2.2.1): the user's provider access token; never
/// a refresh token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ExchangedToken<'a> {
    pub access_token: &'a str,
    /// `urn:ietf:params:oauth:token-type:access_token`.
    pub issued_token_type: &'a str,
    pub token_type: &'a str,
    /// Seconds left, when the provider gave the token a lifetime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
}

impl<'a> From<&'a latchkey_core::engine::exchange::Exchanged> for ExchangedToken<'a> {
    fn from(x: &'a latchkey_core::engine::exchange::Exchanged) -> Self {
        ExchangedToken {
            access_token: x.access_token.expose_secret(),
            issued_token_type: latchkey_core::engine::exchange::ACCESS_TOKEN_TYPE,
            token_type: &x.token_type,
            expires_in: x.expires_in,
        }
    }
}

impl<'a> From<&'a latchkey_core::engine::identity::TokenPair> for TokenPair<'a> {
    fn from(p: &'a latchkey_core::engine::identity::TokenPair) -> Self {
        TokenPair {
            access_token: &p.access_token,
            expires_in: p.expires_in,
            refresh_token: &p.refresh_token,
            scope: p.scope.as_deref(),
            token_type: &p.token_type,
        }
    }
}

/// `POST /v1/login/exchange`'s user.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignedInUser<'a> {
    pub email: Option<&'a str>,
    pub environment: &'static str,
    pub id: &'a str,
}

/// `POST /v1/login/exchange`: the signed-in user, its tokens and its connection's id.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SignIn<'a> {
    pub connection: &'a str,
    pub tokens: TokenPair<'a>,
    pub user: SignedInUser<'a>,
}

/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §3, RFC 8414).
#[derive(Serialize, utoipa::ToSchema)]
pub struct OpenIdConfiguration<'a> {
    pub authorization_endpoint: String,
    pub authorization_response_iss_parameter_supported: bool,
    pub client_id_metadata_document_supported: bool,
    pub code_challenge_methods_supported: [&'static str; 1],
    pub grant_types_supported: [&'static str; 3],
    pub id_token_signing_alg_values_supported: Vec<&'static str>,
    pub introspection_endpoint: String,
    pub introspection_endpoint_auth_methods_supported: [&'static str; 1],
    pub issuer: &'a str,
    pub jwks_uri: String,
    pub registration_endpoint: String,
    pub response_types_supported: [&'static str; 1],
    pub revocation_endpoint: String,
    pub revocation_endpoint_auth_methods_supported: [&'static str; 1],
    /// `tools`, then `connector:NAME` for each connector with tools and `tool:NAME` for each tool.
    pub scopes_supported: Vec<String>,
    pub subject_types_supported: [&'static str; 1],
    pub token_endpoint: String,
    pub token_endpoint_auth_methods_supported: [&'static str; 1],
}

impl<'a> OpenIdConfiguration<'a> {
    /// The document of the identity provider and MCP authorization server at `base` (its
    /// public URL).
    pub fn of(base: &'a str, algs: Vec<&'static str>, scopes: Vec<String>) -> Self {
        OpenIdConfiguration {
            authorization_endpoint: format!("{base}/oauth/authorize"),
            authorization_response_iss_parameter_supported: true,
            client_id_metadata_document_supported: true,
            code_challenge_methods_supported: ["S256"],
            grant_types_supported: [
                "authorization_code",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ],
            id_token_signing_alg_values_supported: algs,
            introspection_endpoint: format!("{base}/v1/token/introspect"),
            introspection_endpoint_auth_methods_supported: ["bearer"],
            issuer: base,
            jwks_uri: format!("{base}/.well-known/jwks.json"),
            registration_endpoint: format!("{base}/v1/mcp/register"),
            response_types_supported: ["code"],
            revocation_endpoint: format!("{base}/v1/token/revoke"),
            revocation_endpoint_auth_methods_supported: ["bearer"],
            scopes_supported: scopes,
            subject_types_supported: ["public"],
            token_endpoint: format!("{base}/v1/token"),
            token_endpoint_auth_methods_supported: ["none"],
        }
    }
}

/// `POST /v1/token/introspect` (RFC 7662 §2.2): exactly `{"active": false}` for anything
/// not active; otherwise `active`, `token_type` and the token's claims.
#[derive(Serialize, utoipa::ToSchema)]
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

/// `POST /v1/mcp/register` (RFC 7591 §3.2.1): the client's id and its metadata as accepted.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RegisteredClient<'a> {
    pub client_id: &'a str,
    /// Unix seconds.
    pub client_id_issued_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<&'a str>,
    pub grant_types: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<&'a str>,
    pub redirect_uris: &'a [String],
    pub response_types: [&'static str; 1],
    /// Always `none`: MCP clients are public clients.
    pub token_endpoint_auth_method: &'static str,
}

impl<'a> RegisteredClient<'a> {
    pub fn of(id: &'a str, issued_at: i64, m: &'a latchkey_core::engine::mcp_auth::clients::Metadata) -> Self {
        RegisteredClient {
            client_id: id,
            client_id_issued_at: issued_at,
            client_name: m.client_name.as_deref(),
            client_uri: m.client_uri.as_deref(),
            grant_types: &m.grant_types,
            logo_uri: m.logo_uri.as_deref(),
            redirect_uris: &m.redirect_uris,
            response_types: ["code"],
            token_endpoint_auth_method: "none",
        }
    }
}
