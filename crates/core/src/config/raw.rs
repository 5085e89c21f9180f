//! The serde shapes of the configuration, and the per-section deserialization that lets one
//! load report every problem instead of the first.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::problems::{ConfigErrors, Problem};
use super::{Config, LATER_METHODS, METHODS};

/// Where a secret comes from: a vault secret by name, or a process environment variable.
/// A plain string is refused, so a secret can never be written into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Vault(String),
    Env(String),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Vault(n) => write!(f, "secret `{n}`"),
            SecretRef::Env(v) => write!(f, "environment variable `{v}`"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"{ secret = "NAME" } or { env = "VAR" }"#)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(
                    "a secret cannot be written in the configuration: store it with \
                     `latchkey secret set NAME` (value on standard input) and write \
                     `{ secret = \"NAME\" }` here, or `{ env = \"VAR\" }` to read it from the environment",
                ))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let mut found: Option<SecretRef> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    if value.is_empty() {
                        return Err(de::Error::custom(format!(
                            "`{key}` must name a {}",
                            if key == "env" { "variable" } else { "secret" }
                        )));
                    }
                    let r = match key.as_str() {
                        "secret" => SecretRef::Vault(value),
                        "env" => SecretRef::Env(value),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}` in a secret reference: write {{ secret = \"NAME\" }} or {{ env = \"VAR\" }}"
                            )));
                        }
                    };
                    if found.replace(r).is_some() {
                        return Err(de::Error::custom("give either `secret` or `env`, not both"));
                    }
                }
                found.ok_or_else(|| {
                    de::Error::custom(r#"empty secret reference: write { secret = "NAME" } or { env = "VAR" }"#)
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            SecretRef::Vault(n) => m.serialize_entry("secret", n)?,
            SecretRef::Env(v) => m.serialize_entry("env", v)?,
        }
        m.end()
    }
}

/// A PEM given inline (a public certificate is not secret) or by reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PemSource {
    Inline(String),
    Ref(SecretRef),
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(default)]
    pub return_to_allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretRef>,
    /// Signing algorithm of new identity keys: `RS256` (default), `ES256` or `EdDSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_algorithm: Option<String>,
    /// `aud` of user access tokens (default: the public URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_audience: Option<String>,
    /// Lifetime of user access tokens (default 900 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_ttl_s: Option<u64>,
    /// Absolute lifetime of a refresh-token family (default 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_ttl_s: Option<u64>,
    /// Let connectors defined through the admin API reach loopback, private and link-local
    /// addresses (default: public addresses only, SECURITY S16).
    #[serde(default)]
    pub api_connectors_private_egress: bool,
    /// Token introspection calls allowed per second per app key, in bursts of twice that
    /// (default 100; SECURITY S33).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_per_second: Option<u32>,
    /// An append-only audit log (JSON lines): every call and credential change is written
    /// to it before it goes out or takes effect, and refused (503) when it cannot be
    /// (SECURITY S8). Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<String>,
    /// Serving threads, each with its own single-threaded runtime (default: one per CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u16>,
    /// The longest a request other than a call (admin, connections, identity) may take before
    /// it is answered `503 unavailable`, in seconds (default 60): a store that stopped
    /// answering must not hold requests for the TCP timeout (SECURITY R5). Calls have their
    /// own bounds (`timeout_ms`, and 3 s for the token store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_s: Option<u64>,
    /// Values each data key seals before the vault draws a new one (default 3,865,470,566;
    /// SECURITY S2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key_max_seals: Option<u64>,
    /// Seconds a new connection has to deliver its first complete request head (default 10):
    /// sockets that send nothing, or half a head, are closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_s: Option<u64>,
    /// Seconds a connection may go without starting a request before it is closed (default
    /// 75): at once when idle, after the response in flight otherwise (HTTP/2: GOAWAY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_idle_s: Option<u64>,
    /// Seconds between HTTP/2 keep-alive pings (default 30); a ping not answered within 20 s
    /// closes the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_keepalive_interval_s: Option<u64>,
    /// Open inbound connections at most (default 10,000, lowered to what the file-descriptor
    /// limit allows); past it, new connections wait in the listen backlog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

/// The `auth` table: one variant per method, each with its own fields. Deserialized by
/// [`parse_auth`] (the method first, then its fields), so that a problem names its exact field.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum AuthConfig {
    None(NoAuth),
    ApiKeyQuery(ApiKeyQuery),
    ApiKeyHeader(ApiKeyHeader),
    Basic(Basic),
    ClientCertificate(ClientCertificate),
    #[serde(rename = "oauth2_password")]
    OAuth2Password(OAuth2Password),
    #[serde(rename = "oauth2_client_credentials")]
    OAuth2ClientCredentials(OAuth2ClientCredentials),
    #[serde(rename = "oauth2_custom_token")]
    OAuth2CustomToken(OAuth2CustomToken),
    JwtBearer(JwtBearer),
    #[serde(rename = "oauth2_authorization_code")]
    OAuth2AuthorizationCode(AuthorizationCode),
    LatchkeyIdentity(LatchkeyIdentity),
}

/// Sends the calling user's identity to an upstream the app owns: a short-lived JWT signed
/// with Latchkey's identity key (verifiable with the JWKS), `aud` = this connector.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LatchkeyIdentity {
    /// Defaults to the connector's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default = "default_identity_lifetime_s")]
    pub lifetime_s: u64,
}

fn default_identity_lifetime_s() -> u64 {
    60
}

/// The authorization-code flow ("user-agent flow"): tokens belong to one end user, in a
/// connection made through the browser.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationCode {
    /// The login dialog; `[name]` inserts a parameter given when the connect session starts.
    pub authorize_url: String,
    pub token_url: String,
    pub client_id: String,
    /// Optional: public clients (PKCE only) have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default = "default_scope_separator")]
    pub scope_separator: String,
    #[serde(default = "yes")]
    pub pkce: bool,
    #[serde(default)]
    pub client_auth: ClientAuth,
    #[serde(default)]
    pub token_in: TokenIn,
    /// Dotted path of the access token in the token response.
    #[serde(default = "default_token_name")]
    pub token_name: String,
    #[serde(default)]
    pub token_response: TokenResponseFormat,
    /// Adds `access_type=offline&prompt=consent` (providers that give refresh tokens only so).
    #[serde(default)]
    pub offline_access: bool,
    #[serde(default)]
    pub extra_authorize_params: BTreeMap<String, String>,
    #[serde(default)]
    pub redirect: RedirectMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_url: Option<String>,
    #[serde(default = "default_user_id_path")]
    pub user_id_path: String,
    #[serde(default = "default_user_email_path")]
    pub user_email_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_url: Option<String>,
    /// This connector may sign users in (the identity-provider part; later).
    #[serde(default)]
    pub login: bool,
    /// The provider's issuer: when set, a callback's `iss` (RFC 9207) must equal it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

fn default_scope_separator() -> String {
    " ".to_owned()
}
fn default_user_id_path() -> String {
    "id".to_owned()
}
fn default_user_email_path() -> String {
    "email".to_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenResponseFormat {
    #[default]
    Json,
    /// The token comes back as `access_token=...&expires_in=...`.
    Form,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectMode {
    /// One `/oauth/callback` for every connector.
    #[default]
    Generic,
    /// `/oauth/<connector>/callback`.
    PerConnector,
}

/// How a client authenticates at the token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded id and secret.
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body.
    Body,
}

/// Where an access token goes on the upstream call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenIn {
    /// `Authorization: Bearer <token>`.
    #[default]
    Header,
    /// `?access_token=<token>`.
    Query,
}

/// A scope given as one string or as a list (joined with spaces).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Scope {
    One(String),
    Many(Vec<String>),
}

impl Scope {
    pub fn joined(&self, separator: &str) -> String {
        match self {
            Scope::One(s) => s.clone(),
            Scope::Many(v) => v.join(separator),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Password {
    pub token_url: String,
    pub username: String,
    pub password: SecretRef,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    #[serde(default)]
    pub token_in: TokenIn,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ClientCredentials {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    #[serde(default)]
    pub token_in: TokenIn,
}

/// A token request of the provider's own shape: a JSON body and headers whose `<name>`
/// placeholders take the `secrets` and `values` declared here.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2CustomToken {
    pub token_url: String,
    #[serde(default)]
    pub token_headers: BTreeMap<String, String>,
    /// A JSON template: a string of JSON text, or a table meaning the same JSON.
    pub token_body: serde_json::Value,
    /// Dotted path of the access token in the response.
    #[serde(default = "default_token_name")]
    pub token_name: String,
    /// Dotted path of the lifetime in seconds in the response.
    #[serde(default = "default_expires_in_name")]
    pub expires_in_name: String,
    /// Secrets the templates may use, by placeholder name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Fixed, non-secret values the templates may use, by placeholder name.
    #[serde(default)]
    pub values: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub token_in: TokenIn,
}

fn default_token_name() -> String {
    "access_token".to_owned()
}
fn default_expires_in_name() -> String {
    "expires_in".to_owned()
}

/// RFC 7523 JWT-bearer grant, as Google service accounts use it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwtBearer {
    /// Optional when `private_key` is a service-account JSON key, which carries `token_uri`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// The service account's e-mail; optional with a service-account JSON key (`client_email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    pub private_key: SecretRef,
    /// Defaults to the token URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default = "default_lifetime_s")]
    pub lifetime_s: u64,
    #[serde(default)]
    pub token_in: TokenIn,
}

fn default_lifetime_s() -> u64 {
    3600
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig::None(NoAuth {})
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoAuth {}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyQuery {
    pub name: String,
    pub key: SecretRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyHeader {
    #[serde(default = "default_auth_header")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    pub key: SecretRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Basic {
    pub username: String,
    pub password: SecretRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCertificate {
    pub certificate: SecretRef,
    pub private_key: SecretRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<PemSource>,
}

fn default_auth_header() -> String {
    "Authorization".to_owned()
}

impl AuthConfig {
    pub fn method(&self) -> &'static str {
        match self {
            AuthConfig::None(_) => "none",
            AuthConfig::ApiKeyQuery(_) => "api_key_query",
            AuthConfig::ApiKeyHeader(_) => "api_key_header",
            AuthConfig::Basic(_) => "basic",
            AuthConfig::ClientCertificate(_) => "client_certificate",
            AuthConfig::OAuth2Password(_) => "oauth2_password",
            AuthConfig::OAuth2ClientCredentials(_) => "oauth2_client_credentials",
            AuthConfig::OAuth2CustomToken(_) => "oauth2_custom_token",
            AuthConfig::JwtBearer(_) => "jwt_bearer",
            AuthConfig::OAuth2AuthorizationCode(_) => "oauth2_authorization_code",
            AuthConfig::LatchkeyIdentity(_) => "latchkey_identity",
        }
    }

    /// Every secret reference of this method, with the field that holds it.
    pub fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        match self {
            AuthConfig::None(_) => vec![],
            AuthConfig::ApiKeyQuery(a) => vec![("key", &a.key)],
            AuthConfig::ApiKeyHeader(a) => vec![("key", &a.key)],
            AuthConfig::Basic(b) => vec![("password", &b.password)],
            AuthConfig::ClientCertificate(c) => {
                let mut v = vec![("certificate", &c.certificate), ("private_key", &c.private_key)];
                if let Some(PemSource::Ref(r)) = &c.ca_certificate {
                    v.push(("ca_certificate", r));
                }
                v
            }
            AuthConfig::OAuth2Password(p) => {
                let mut v = vec![("password", &p.password)];
                if let Some(s) = &p.client_secret {
                    v.push(("client_secret", s));
                }
                v
            }
            AuthConfig::OAuth2ClientCredentials(c) => vec![("client_secret", &c.client_secret)],
            AuthConfig::OAuth2CustomToken(c) => c.secrets.values().map(|r| ("secrets", r)).collect(),
            AuthConfig::JwtBearer(j) => vec![("private_key", &j.private_key)],
            AuthConfig::OAuth2AuthorizationCode(c) => c.client_secret.iter().map(|s| ("client_secret", s)).collect(),
            AuthConfig::LatchkeyIdentity(_) => vec![],
        }
    }
}

/// The `auth` table: its `method` first, then that method's fields, each problem with its path.
fn parse_auth(value: serde_json::Value) -> Result<AuthConfig, Vec<(String, String)>> {
    let serde_json::Value::Object(mut map) = value else {
        return Err(vec![(String::new(), "must be a table: `auth = { method = \"...\", ... }`".into())]);
    };
    let method = match map.remove("method") {
        Some(serde_json::Value::String(m)) => m,
        Some(_) => return Err(vec![("method".into(), "must be a string".into())]),
        None => return Err(vec![(String::new(), format!("missing `method`: one of {}", METHODS.join(", ")))]),
    };
    let rest = serde_json::Value::Object(map);
    let field = |r: Result<AuthConfig, (String, String)>| r.map_err(|e| vec![e]);
    match method.as_str() {
        "none" => field(typed(rest).map(AuthConfig::None)),
        "api_key_query" => field(typed(rest).map(AuthConfig::ApiKeyQuery)),
        "api_key_header" => field(typed(rest).map(AuthConfig::ApiKeyHeader)),
        "basic" => field(typed(rest).map(AuthConfig::Basic)),
        "client_certificate" => field(typed(rest).map(AuthConfig::ClientCertificate)),
        "oauth2_password" => field(typed(rest).map(AuthConfig::OAuth2Password)),
        "oauth2_client_credentials" => field(typed(rest).map(AuthConfig::OAuth2ClientCredentials)),
        "oauth2_custom_token" => field(typed(rest).map(AuthConfig::OAuth2CustomToken)),
        "jwt_bearer" => field(typed(rest).map(AuthConfig::JwtBearer)),
        "oauth2_authorization_code" => field(typed(rest).map(AuthConfig::OAuth2AuthorizationCode)),
        "latchkey_identity" => field(typed(rest).map(AuthConfig::LatchkeyIdentity)),
        m if LATER_METHODS.contains(&m) => Err(vec![(
            "method".into(),
            format!("`{m}` is not available in this version of Latchkey yet; available: {}", METHODS.join(", ")),
        )]),
        m => Err(vec![("method".into(), format!("unknown auth method `{m}`: use one of {}", METHODS.join(", ")))]),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshOn {
    #[serde(default)]
    pub status: Vec<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    #[default]
    App,
    User,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParamConfig {
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub private: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallConfig {
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON template: a string of JSON text, or a table meaning the same JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(default)]
    pub access: Access,
    #[serde(default)]
    pub params: BTreeMap<String, ParamConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_method() -> String {
    "GET".to_owned()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    pub base_url: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Parsed apart by [`parse_auth`]; see there.
    #[serde(skip_deserializing)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub calls: BTreeMap<String, CallConfig>,
    /// Seconds before expiry to refresh. Unset: 300, capped at half the token's lifetime;
    /// set: exactly this (see `TokenSource::skew_for`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_skew_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_on: Option<RefreshOn>,
    #[serde(default = "default_keepalive_s")]
    pub keepalive_s: u64,
    /// Whether the passthrough proxy may reach this connector.
    #[serde(default = "yes")]
    pub proxy: bool,
    /// Allow `http://` to a host that is not loopback (credentials in clear text).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

fn default_timeout_ms() -> u64 {
    30_000
}
fn default_keepalive_s() -> u64 {
    86_400
}
fn yes() -> bool {
    true
}

/// Deserializes `value` into `T`, naming the failing field path on error.
fn typed<'de, T: Deserialize<'de>, D: Deserializer<'de>>(value: D) -> Result<T, (String, String)>
where
    D::Error: fmt::Display,
{
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let msg = e.inner().to_string();
        // "missing field `x`" is reported at the parent; name the field itself.
        if let Some(field) = msg.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
            return (join(&path, field), "missing: this field is required".to_owned());
        }
        (path, msg)
    })
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{path}"),
    }
}

pub(super) fn from_table(mut table: toml::Table, file: &str) -> Result<Config, ConfigErrors> {
    let mut problems = Vec::new();
    let mut config = Config::default();

    if let Some(server) = table.remove("server") {
        match typed::<ServerConfig, _>(server) {
            Ok(s) => config.server = s,
            Err((path, msg)) => problems.push(Problem::at(file, None, join("server", &path), msg)),
        }
    }
    match table.remove("connectors") {
        None => {}
        Some(toml::Value::Table(connectors)) => {
            for (name, value) in connectors {
                let json = match serde_json::to_value(value) {
                    Ok(v) => v,
                    Err(e) => {
                        problems.push(Problem::at(file, Some(&name), "", e.to_string()));
                        continue;
                    }
                };
                match connector_from_json(&name, json, file) {
                    Ok(c) => {
                        config.connectors.insert(name, c);
                    }
                    Err(ConfigErrors(mut p)) => problems.append(&mut p),
                }
            }
        }
        Some(_) => {
            problems.push(Problem::at(file, None, "connectors", "must be a table of connectors: `[connectors.NAME]`"))
        }
    }
    for key in table.keys() {
        problems.push(Problem::at(
            file,
            None,
            key.as_str(),
            "unknown section: the file has `[server]` and `[connectors.NAME]` sections only",
        ));
    }
    super::validate::server(&config.server, file, &mut problems);
    if problems.is_empty() { Ok(config) } else { Err(ConfigErrors(problems)) }
}

pub(super) fn connector_from_json(
    name: &str,
    json: serde_json::Value,
    file: &str,
) -> Result<ConnectorConfig, ConfigErrors> {
    let c = Some(name);
    let mut problems = Vec::new();
    let serde_json::Value::Object(mut map) = json else {
        return Err(ConfigErrors::one(Problem::at(file, c, "", "a connector must be a table (an object)")));
    };
    // Calls are parsed one by one, so a mistake in one call does not hide the others.
    let calls = match map.remove("calls") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(calls)) => calls,
        Some(_) => {
            problems.push(Problem::at(file, c, "calls", "must be a table of calls: `[connectors.NAME.calls.CALL]`"));
            serde_json::Map::new()
        }
    };
    let auth = match map.remove("auth") {
        Some(a) => match parse_auth(a) {
            Ok(a) => Some(a),
            Err(errs) => {
                for (path, msg) in errs {
                    problems.push(Problem::at(file, c, join("auth", &path), msg));
                }
                None
            }
        },
        None => {
            problems.push(Problem::at(
                file,
                c,
                "auth",
                format!(
                    "missing: every connector needs `auth = {{ method = \"...\" }}` (one of: {})",
                    METHODS.join(", ")
                ),
            ));
            None
        }
    };
    let connector = match typed::<ConnectorConfig, _>(serde_json::Value::Object(map)) {
        Ok(conn) => Some(conn),
        Err((path, msg)) => {
            problems.push(Problem::at(file, c, path, msg));
            None
        }
    };
    let mut parsed_calls = BTreeMap::new();
    for (call_name, value) in calls {
        let prefix = format!("calls.{call_name}");
        match typed::<CallConfig, _>(value) {
            Ok(call) => {
                parsed_calls.insert(call_name, call);
            }
            Err((path, msg)) => problems.push(Problem::at(file, c, join(&prefix, &path), msg)),
        }
    }
    let Some(mut connector) = connector else {
        return Err(ConfigErrors(problems));
    };
    // Even when `auth` is wrong, the rest of the connector is checked, so every problem shows.
    let auth_ok = auth.is_some();
    connector.auth = auth.unwrap_or_default();
    connector.calls = parsed_calls;
    super::validate::connector(name, &connector, file, &mut problems);
    if !auth_ok {
        return Err(ConfigErrors(problems));
    }
    if problems.is_empty() { Ok(connector) } else { Err(ConfigErrors(problems)) }
}
