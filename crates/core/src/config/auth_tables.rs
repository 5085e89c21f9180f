//! The `auth` table of each method: its fields, their defaults, and the secrets it names.
//! Which methods exist, and what else each one is, is in [`super::methods`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use url::Url;

use super::methods::MethodTable;
use super::raw::yes;
use super::secret_ref::{PemSource, SecretRef};
use super::value::{BodyTemplate, HeaderTable, HeaderText, LoginUrl, Parsed};

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
    pub authorize_url: Parsed<LoginUrl>,
    pub token_url: Parsed<Url>,
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
    /// With `client_auth = "private_key_jwt"`: the PEM key that signs the client assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_private_key: Option<SecretRef>,
    /// The assertion's `kid` header, as the provider registered the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_id: Option<String>,
    /// `RS256`, `PS256` or `ES256`; by default `RS256` for an RSA key, `ES256` for a P-256 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion_alg: Option<AssertionAlg>,
    /// With `client_auth = "private_key_jwt"`: the PEM certificate of `client_private_key`,
    /// whose thumbprints the assertion's header carries (`x5t`, `x5t#S256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_certificate: Option<PemSource>,
    /// With `client_auth = "tls_client_auth"` (RFC 8705): the client's PEM certificate chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<SecretRef>,
    /// With `client_auth = "tls_client_auth"`: the certificate's PEM private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<SecretRef>,
    /// With `client_auth = "tls_client_auth"`: a PEM CA to trust for the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<PemSource>,
    /// With `client_auth = "tls_client_auth"`: the tokens are bound to the certificate
    /// (RFC 8705 §3), so calls to `base_url` present it too (and trust `ca_certificate`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub certificate_bound: bool,
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
    pub profile_url: Option<Parsed<Url>>,
    #[serde(default = "default_user_id_path")]
    pub user_id_path: String,
    #[serde(default = "default_user_email_path")]
    pub user_email_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoke_url: Option<Parsed<Url>>,
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
    /// A short-lived JWT signed with `client_private_key` (RFC 7523 §2.2, OpenID Connect
    /// Core §9): `client_assertion_type` and `client_assertion` in the form body.
    PrivateKeyJwt,
    /// Mutual TLS with `client_certificate` and `client_key` (RFC 8705 §2.1): `client_id` in
    /// the form body, the certificate on the connection.
    TlsClientAuth,
}

/// The signature algorithm of a `private_key_jwt` client assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum AssertionAlg {
    RS256,
    PS256,
    ES256,
}

/// The fields of `client_auth = "private_key_jwt"` and `"tls_client_auth"`, common to the
/// OAuth methods' tables.
pub trait ClientKeyFields {
    fn client_auth(&self) -> ClientAuth;
    fn client_private_key(&self) -> Option<&SecretRef>;
    fn client_key_id(&self) -> Option<&str>;
    fn client_assertion_alg(&self) -> Option<AssertionAlg>;
    fn client_key_certificate(&self) -> Option<&PemSource>;
    /// `client_certificate`, `client_key` and `ca_certificate` (`tls_client_auth`).
    fn tls_identity(&self) -> (Option<&SecretRef>, Option<&SecretRef>, Option<&PemSource>);
    fn certificate_bound(&self) -> bool;
}

macro_rules! client_key_fields {
    ($($t:ty),*) => {$(
        impl ClientKeyFields for $t {
            fn client_auth(&self) -> ClientAuth {
                self.client_auth
            }
            fn client_private_key(&self) -> Option<&SecretRef> {
                self.client_private_key.as_ref()
            }
            fn client_key_id(&self) -> Option<&str> {
                self.client_key_id.as_deref()
            }
            fn client_assertion_alg(&self) -> Option<AssertionAlg> {
                self.client_assertion_alg
            }
            fn client_key_certificate(&self) -> Option<&PemSource> {
                self.client_key_certificate.as_ref()
            }
            fn tls_identity(&self) -> (Option<&SecretRef>, Option<&SecretRef>, Option<&PemSource>) {
                (self.client_certificate.as_ref(), self.client_key.as_ref(), self.ca_certificate.as_ref())
            }
            fn certificate_bound(&self) -> bool {
                self.certificate_bound
            }
        }
    )*};
}

client_key_fields!(OAuth2Password, OAuth2ClientCredentials, AuthorizationCode);

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
    pub token_url: Parsed<Url>,
    pub username: String,
    pub password: SecretRef,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// With `client_auth = "private_key_jwt"`: the PEM key that signs the client assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_private_key: Option<SecretRef>,
    /// The assertion's `kid` header, as the provider registered the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_id: Option<String>,
    /// `RS256`, `PS256` or `ES256`; by default `RS256` for an RSA key, `ES256` for a P-256 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion_alg: Option<AssertionAlg>,
    /// With `client_auth = "private_key_jwt"`: the PEM certificate of `client_private_key`,
    /// whose thumbprints the assertion's header carries (`x5t`, `x5t#S256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_certificate: Option<PemSource>,
    /// With `client_auth = "tls_client_auth"` (RFC 8705): the client's PEM certificate chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<SecretRef>,
    /// With `client_auth = "tls_client_auth"`: the certificate's PEM private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<SecretRef>,
    /// With `client_auth = "tls_client_auth"`: a PEM CA to trust for the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<PemSource>,
    /// With `client_auth = "tls_client_auth"`: the tokens are bound to the certificate
    /// (RFC 8705 §3), so calls to `base_url` present it too (and trust `ca_certificate`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub certificate_bound: bool,
    #[serde(default)]
    pub token_in: TokenIn,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2ClientCredentials {
    pub token_url: Parsed<Url>,
    pub client_id: String,
    /// Required unless `client_auth = "private_key_jwt"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// With `client_auth = "private_key_jwt"`: the PEM key that signs the client assertion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_private_key: Option<SecretRef>,
    /// The assertion's `kid` header, as the provider registered the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_id: Option<String>,
    /// `RS256`, `PS256` or `ES256`; by default `RS256` for an RSA key, `ES256` for a P-256 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion_alg: Option<AssertionAlg>,
    /// With `client_auth = "private_key_jwt"`: the PEM certificate of `client_private_key`,
    /// whose thumbprints the assertion's header carries (`x5t`, `x5t#S256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_certificate: Option<PemSource>,
    /// With `client_auth = "tls_client_auth"` (RFC 8705): the client's PEM certificate chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<SecretRef>,
    /// With `client_auth = "tls_client_auth"`: the certificate's PEM private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<SecretRef>,
    /// With `client_auth = "tls_client_auth"`: a PEM CA to trust for the token endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<PemSource>,
    /// With `client_auth = "tls_client_auth"`: the tokens are bound to the certificate
    /// (RFC 8705 §3), so calls to `base_url` present it too (and trust `ca_certificate`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub certificate_bound: bool,
    #[serde(default)]
    pub token_in: TokenIn,
}

/// A token request of the provider's own shape: a JSON body and headers whose `<name>`
/// placeholders take the `secrets` and `values` declared here.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2CustomToken {
    pub token_url: Parsed<Url>,
    #[serde(default)]
    pub token_headers: HeaderTable<HeaderText>,
    /// A JSON template: a string of JSON text, or a table meaning the same JSON.
    pub token_body: BodyTemplate,
    /// Dotted path of the access token in the response.
    #[serde(default = "default_token_name")]
    pub token_name: String,
    /// Dotted path of the lifetime in seconds in the response.
    #[serde(default = "default_expires_in_name")]
    pub expires_in_name: String,
    /// Dotted path of an absolute expiry in the response (RFC 3339 or Unix seconds), for
    /// providers that answer one instead of a lifetime; `expires_in_name` is then not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_name: Option<String>,
    /// A JWT signed afresh for each token request, the placeholder `<jwt>` (GitHub Apps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<SignedJwt>,
    /// Secrets the templates may use, by placeholder name.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretRef>,
    /// Fixed, non-secret values the templates may use, by placeholder name.
    #[serde(default)]
    pub values: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub token_in: TokenIn,
}

/// `auth.jwt` of `oauth2_custom_token`: what the `<jwt>` placeholder is signed from.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SignedJwt {
    /// The PEM private key (RSA for RS256 and PS256, P-256 for ES256).
    pub private_key: SecretRef,
    /// The claims as written (`iss`, `aud`, ...); `iat` and `exp` are Latchkey's.
    #[serde(default)]
    pub claims: BTreeMap<String, serde_json::Value>,
    /// `exp` is this many seconds after the token request (`iat` is 60 seconds before it).
    #[serde(default = "default_signed_jwt_lifetime_s")]
    pub lifetime_s: u64,
    /// `RS256`, `PS256` or `ES256`; by default `RS256` for an RSA key, `ES256` for a P-256 key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<AssertionAlg>,
    /// The JWT's `kid` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

fn default_signed_jwt_lifetime_s() -> u64 {
    540
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
    pub token_url: Option<Parsed<Url>>,
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

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NoAuth {}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyQuery {
    pub name: String,
    /// Required, unless the connector is `per_user` (each user gives theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyHeader {
    #[serde(default = "default_auth_header")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Required, unless the connector is `per_user` (each user gives theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Basic {
    /// Required, unless the connector is `per_user` (each user gives theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Required, unless the connector is `per_user` (each user gives theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
}

/// `digest`: RFC 7616 HTTP Digest (MD5, SHA-256 and their `-sess` variants, `qop=auth`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Digest {
    /// Required, unless the connector is `per_user` (each user gives theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Required, unless the connector is `per_user` (each user gives theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretRef>,
}

/// `aws_sigv4`: AWS Signature Version 4 with an access key (and, for temporary keys, a session
/// token); with `role_arn`, with the temporary credentials of STS `AssumeRole` instead.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSigv4 {
    /// Not secret; a plain string, or a secret reference when live and dev use different keys.
    pub access_key_id: PublicValue,
    pub secret_access_key: SecretRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_token: Option<SecretRef>,
    /// The credential scope's region, e.g. `us-east-1`.
    pub region: String,
    /// The credential scope's service, e.g. `sqs`, `s3`, `execute-api`.
    pub service: String,
    /// Sign with the temporary credentials of this role (STS `AssumeRole`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The STS endpoint for `role_arn`; by default `https://sts.<region>.amazonaws.com/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_url: Option<Parsed<Url>>,
}

/// A value that is not secret but may differ between live and dev: written as a plain
/// string, or as a secret reference (whose live and dev values then apply).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PublicValue {
    Plain(String),
    Ref(SecretRef),
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

/// The secret references of `tls_client_auth`'s fields.
fn tls_refs(t: &impl ClientKeyFields) -> Vec<(&'static str, &SecretRef)> {
    let (cert, key, ca) = t.tls_identity();
    let mut v: Vec<_> = cert.map(|r| ("client_certificate", r)).into_iter().collect();
    v.extend(key.map(|r| ("client_key", r)));
    if let Some(PemSource::Ref(r)) = ca {
        v.push(("ca_certificate", r));
    }
    // `private_key_jwt`'s certificate (for `x5t`), when kept in the vault.
    if let Some(PemSource::Ref(r)) = t.client_key_certificate() {
        v.push(("client_key_certificate", r));
    }
    v
}

impl MethodTable for NoAuth {}

impl MethodTable for ApiKeyQuery {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        self.key.iter().map(|k| ("key", k)).collect()
    }
}

impl MethodTable for ApiKeyHeader {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        self.key.iter().map(|k| ("key", k)).collect()
    }
}

impl MethodTable for Basic {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        self.password.iter().map(|p| ("password", p)).collect()
    }
}

impl MethodTable for Digest {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        self.password.iter().map(|p| ("password", p)).collect()
    }
}

impl MethodTable for AwsSigv4 {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut v = Vec::new();
        if let PublicValue::Ref(r) = &self.access_key_id {
            v.push(("access_key_id", r));
        }
        v.push(("secret_access_key", &self.secret_access_key));
        v.extend(self.session_token.iter().map(|r| ("session_token", r)));
        v
    }
}

impl MethodTable for ClientCertificate {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut v = vec![("certificate", &self.certificate), ("private_key", &self.private_key)];
        if let Some(PemSource::Ref(r)) = &self.ca_certificate {
            v.push(("ca_certificate", r));
        }
        v
    }
}

impl MethodTable for OAuth2Password {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut v = vec![("password", &self.password)];
        v.extend(self.client_secret.iter().map(|s| ("client_secret", s)));
        v.extend(self.client_private_key.iter().map(|s| ("client_private_key", s)));
        v.extend(tls_refs(self));
        v
    }
}

impl MethodTable for OAuth2ClientCredentials {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut v: Vec<_> = self.client_secret.iter().map(|s| ("client_secret", s)).collect();
        v.extend(self.client_private_key.iter().map(|s| ("client_private_key", s)));
        v.extend(tls_refs(self));
        v
    }
}

impl MethodTable for OAuth2CustomToken {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut v: Vec<_> = self.secrets.values().map(|r| ("secrets", r)).collect();
        v.extend(self.jwt.iter().map(|j| ("jwt.private_key", &j.private_key)));
        v
    }
}

impl MethodTable for JwtBearer {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        vec![("private_key", &self.private_key)]
    }
}

impl MethodTable for AuthorizationCode {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut v: Vec<_> = self.client_secret.iter().map(|s| ("client_secret", s)).collect();
        v.extend(self.client_private_key.iter().map(|s| ("client_private_key", s)));
        v.extend(tls_refs(self));
        v
    }
}

impl MethodTable for LatchkeyIdentity {}

/// OAuth 1.0a's signature method (RFC 5849 §3.4; `HMAC-SHA256` as the providers that offer
/// it name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
pub enum SignatureMethod {
    #[default]
    #[serde(rename = "HMAC-SHA1")]
    HmacSha1,
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
    #[serde(rename = "RSA-SHA1")]
    RsaSha1,
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
}

impl SignatureMethod {
    /// The `oauth_signature_method` value.
    pub const fn name(self) -> &'static str {
        match self {
            SignatureMethod::HmacSha1 => "HMAC-SHA1",
            SignatureMethod::HmacSha256 => "HMAC-SHA256",
            SignatureMethod::RsaSha1 => "RSA-SHA1",
            SignatureMethod::Plaintext => "PLAINTEXT",
        }
    }
}

/// Where OAuth 1.0a's protocol parameters go (RFC 5849 §3.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureIn {
    /// `Authorization: OAuth ...` (§3.5.1).
    #[default]
    Header,
    /// The query string (§3.5.3).
    Query,
    /// A form-encoded request body (§3.5.2).
    Body,
}

/// `oauth1`: RFC 5849 OAuth 1.0a, two-legged (the consumer's key, and a token the app holds).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth1 {
    pub consumer_key: String,
    /// Required except with `RSA-SHA1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_secret: Option<SecretRef>,
    /// With `RSA-SHA1`: the consumer's PEM private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret: Option<SecretRef>,
    #[serde(default)]
    pub signature_method: SignatureMethod,
    #[serde(default)]
    pub signature_in: SignatureIn,
}

/// `oauth1_authorization`: RFC 5849 OAuth 1.0a, three-legged: each end user's token comes
/// from a connection made through the browser (request token, authorization, access token).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth1Authorization {
    pub consumer_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_secret: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<SecretRef>,
    #[serde(default)]
    pub signature_method: SignatureMethod,
    #[serde(default)]
    pub signature_in: SignatureIn,
    /// Temporary credentials (RFC 5849 §2.1).
    pub request_token_url: Parsed<Url>,
    /// Where the user authorizes (§2.2).
    pub authorize_url: Parsed<Url>,
    /// Token credentials (§2.3).
    pub access_token_url: Parsed<Url>,
    #[serde(default)]
    pub redirect: RedirectMode,
}

/// The fields common to both OAuth 1.0a methods.
pub trait OAuth1Fields {
    fn consumer_key(&self) -> &str;
    fn consumer_secret(&self) -> Option<&SecretRef>;
    fn private_key(&self) -> Option<&SecretRef>;
    fn signature_method(&self) -> SignatureMethod;
    fn signature_in(&self) -> SignatureIn;
}

macro_rules! oauth1_fields {
    ($($t:ty),*) => {$(
        impl OAuth1Fields for $t {
            fn consumer_key(&self) -> &str {
                &self.consumer_key
            }
            fn consumer_secret(&self) -> Option<&SecretRef> {
                self.consumer_secret.as_ref()
            }
            fn private_key(&self) -> Option<&SecretRef> {
                self.private_key.as_ref()
            }
            fn signature_method(&self) -> SignatureMethod {
                self.signature_method
            }
            fn signature_in(&self) -> SignatureIn {
                self.signature_in
            }
        }
    )*};
}

oauth1_fields!(OAuth1, OAuth1Authorization);

fn oauth1_refs(t: &impl OAuth1Fields) -> Vec<(&'static str, &SecretRef)> {
    let mut v: Vec<_> = t.consumer_secret().map(|r| ("consumer_secret", r)).into_iter().collect();
    v.extend(t.private_key().map(|r| ("private_key", r)));
    v
}

impl MethodTable for OAuth1 {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        let mut v = oauth1_refs(self);
        v.extend(self.token.iter().map(|r| ("token", r)));
        v.extend(self.token_secret.iter().map(|r| ("token_secret", r)));
        v
    }
}

impl MethodTable for OAuth1Authorization {
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        oauth1_refs(self)
    }
}
