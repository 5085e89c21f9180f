//! The OAuth grants behind the token methods, with their secrets resolved: each builds its
//! token request and, where the grant has one, its refresh request.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use secrecy::SecretString;

use crate::CallError;
use crate::config::{ClientAuth, RefreshOn, TokenIn};
use crate::secret::{ClientSecret, RefreshToken};
use crate::store::TokenKey;
use crate::token::{TokenRequest, TokenRequestBody, TokenResponseShape};

pub use super::client_assertion::ClientAssertion;
pub use super::jwt_bearer::JwtGrant;

/// Client credentials as the token endpoint wants them.
pub struct Client {
    pub id: String,
    pub secret: Option<ClientSecret>,
    pub auth: ClientAuth,
    /// The signing key of `client_auth = "private_key_jwt"`.
    pub assertion: Option<ClientAssertion>,
}

impl Client {
    /// Adds client authentication to a form request for `token_url`: the pair for
    /// `Authorization: Basic` (`client_secret_basic`); or `client_id` (and `client_secret`,
    /// `client_secret_post`) appended to the form; or, for `private_key_jwt`, `client_id`,
    /// `client_assertion_type` and a fresh `client_assertion` whose audience is `token_url`;
    /// or, for `tls_client_auth`, `client_id` alone (the connection carries the certificate).
    /// A client without a secret or key (a public client) sends its id in the form whatever
    /// `auth` says.
    pub fn authenticate(
        &self,
        form: &mut Vec<(String, SecretString)>,
        token_url: &str,
        now_ms: i64,
    ) -> Result<Option<(String, ClientSecret)>, CallError> {
        if let (ClientAuth::PrivateKeyJwt, Some(key)) = (self.auth, &self.assertion) {
            let assertion = key.sign(&self.id, token_url, now_ms)?;
            form.push(pair("client_id", &self.id));
            form.push(pair("client_assertion_type", super::client_assertion::ASSERTION_TYPE));
            form.push(("client_assertion".into(), assertion));
            return Ok(None);
        }
        if self.auth == ClientAuth::TlsClientAuth {
            // RFC 8705 §2.1: the certificate on the connection authenticates; the id says whose.
            form.push(pair("client_id", &self.id));
            return Ok(None);
        }
        Ok(match (&self.secret, self.auth) {
            (Some(secret), ClientAuth::Basic) => Some((self.id.clone(), secret.clone())),
            (secret, _) => {
                form.push(("client_id".into(), SecretString::from(self.id.clone())));
                if let Some(s) = secret {
                    form.push(("client_secret".into(), s.clone().into_secret()));
                }
                None
            }
        })
    }
}

pub enum Grant {
    /// Tokens come from a user's browser flow; only refresh tokens renew them.
    AuthorizationCode {
        token_url: String,
        client: Client,
        scope: Option<String>,
        shape: TokenResponseShape,
    },
    Password {
        token_url: String,
        username: String,
        password: SecretString,
        client: Client,
        scope: Option<String>,
    },
    ClientCredentials {
        token_url: String,
        client: Client,
        scope: Option<String>,
        audience: Option<String>,
    },
    Custom {
        token_url: String,
        headers: Vec<(HeaderName, HeaderValue)>,
        body: SecretString,
        shape: TokenResponseShape,
        /// The secret values substituted into `headers` and `body`.
        secrets: Vec<SecretString>,
        /// With `auth.jwt`: the templates, rendered per request with a fresh `<jwt>`
        /// (`headers` and `body` are then not sent).
        jwt: Option<Box<super::signed_jwt::JwtRequest>>,
    },
    JwtBearer(JwtGrant),
    /// AWS STS `AssumeRole` (`aws_sigv4` with `role_arn`): temporary credentials.
    AwsAssumeRole(Box<super::aws_sigv4::sts::AssumeRole>),
}

fn pair(k: &str, v: &str) -> (String, SecretString) {
    (k.to_owned(), SecretString::from(v.to_owned()))
}

impl Grant {
    pub fn token_url(&self) -> &str {
        match self {
            Grant::Password { token_url, .. }
            | Grant::AuthorizationCode { token_url, .. }
            | Grant::ClientCredentials { token_url, .. }
            | Grant::Custom { token_url, .. } => token_url,
            Grant::JwtBearer(j) => &j.token_url,
            Grant::AwsAssumeRole(a) => &a.sts_url,
        }
    }

    /// Whether the grant can be repeated without a person (every grant but the browser flow).
    pub fn can_regrant(&self) -> bool {
        !matches!(self, Grant::AuthorizationCode { .. })
    }

    /// The grant itself (no refresh token involved).
    pub fn request(&self, now_ms: i64) -> Result<TokenRequest, CallError> {
        let form_request = |url: &str, mut form: Vec<(String, SecretString)>, client: Option<&Client>| {
            let basic_auth = match client {
                Some(c) => c.authenticate(&mut form, url, now_ms)?,
                None => None,
            };
            Ok::<_, CallError>(TokenRequest {
                url: url.to_owned(),
                headers: Vec::new(),
                basic_auth,
                body: TokenRequestBody::Form(form),
                shape: TokenResponseShape::default(),
                is_refresh: false,
                secrets: Vec::new(),
            })
        };
        Ok(match self {
            Grant::AuthorizationCode { .. } => {
                return Err(CallError::new(
                    crate::ErrorCode::ReauthorizationRequired,
                    "the connection has no usable refresh token: the user must connect again",
                ));
            }
            Grant::Password { token_url, username, password, client, scope } => {
                let mut form = vec![
                    pair("grant_type", "password"),
                    pair("username", username),
                    ("password".into(), password.clone()),
                ];
                if let Some(s) = scope {
                    form.push(pair("scope", s));
                }
                form_request(token_url, form, Some(client))?
            }
            Grant::ClientCredentials { token_url, client, scope, audience } => {
                let mut form = vec![pair("grant_type", "client_credentials")];
                if let Some(s) = scope {
                    form.push(pair("scope", s));
                }
                if let Some(a) = audience {
                    form.push(pair("audience", a));
                }
                form_request(token_url, form, Some(client))?
            }
            Grant::Custom { token_url, headers, body, shape, secrets, jwt: None } => TokenRequest {
                url: token_url.clone(),
                headers: headers.clone(),
                basic_auth: None,
                body: TokenRequestBody::Json(body.clone()),
                shape: shape.clone(),
                is_refresh: false,
                secrets: secrets.clone(),
            },
            Grant::Custom { token_url, shape, secrets, jwt: Some(t), .. } => {
                let (headers, body, jwt) = t.render(now_ms)?;
                let mut secrets = secrets.clone();
                secrets.push(jwt);
                TokenRequest {
                    url: token_url.clone(),
                    headers,
                    basic_auth: None,
                    body: TokenRequestBody::Json(body),
                    shape: shape.clone(),
                    is_refresh: false,
                    secrets,
                }
            }
            Grant::JwtBearer(j) => {
                let assertion = j.assertion(now_ms)?;
                let form = vec![
                    pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion".into(), assertion),
                ];
                form_request(&j.token_url, form, None)?
            }
            Grant::AwsAssumeRole(a) => a.request(now_ms)?,
        })
    }

    /// A refresh with `refresh_token`, for the grants whose tokens can be refreshed (`None`
    /// for the others); `Err` when the client assertion cannot be signed.
    pub fn refresh_request(
        &self,
        refresh_token: &RefreshToken,
        now_ms: i64,
    ) -> Option<Result<TokenRequest, CallError>> {
        let (token_url, client, scope, shape) = match self {
            Grant::Password { token_url, client, scope, .. } => {
                (token_url, client, scope, TokenResponseShape::default())
            }
            Grant::ClientCredentials { token_url, client, scope, .. } => {
                (token_url, client, scope, TokenResponseShape::default())
            }
            Grant::AuthorizationCode { token_url, client, scope, shape } => (token_url, client, scope, shape.clone()),
            Grant::Custom { .. } | Grant::JwtBearer(_) | Grant::AwsAssumeRole(_) => return None,
        };
        let mut form =
            vec![pair("grant_type", "refresh_token"), ("refresh_token".into(), refresh_token.clone().into_secret())];
        if let Some(s) = scope {
            form.push(pair("scope", s));
        }
        let basic_auth = match client.authenticate(&mut form, token_url, now_ms) {
            Ok(b) => b,
            Err(e) => return Some(Err(e)),
        };
        Some(Ok(TokenRequest {
            url: token_url.clone(),
            headers: Vec::new(),
            basic_auth,
            body: TokenRequestBody::Form(form),
            shape,
            is_refresh: true,
            secrets: Vec::new(),
        }))
    }
}

/// Everything the token lifecycle needs for one connector in one environment (and, for the
/// browser flow, one connection).
#[derive(Clone)]
pub struct TokenSource {
    pub key: TokenKey,
    pub grant: Arc<Grant>,
    pub token_in: TokenIn,
    /// How long before expiry a token is refreshed (`refresh_skew_s`; [`Self::skew_for`]).
    pub skew_ms: i64,
    /// Whether `refresh_skew_s` was set: then it is used as it is, else capped.
    pub skew_configured: bool,
    pub keepalive_ms: i64,
    pub timeout: Duration,
    pub client: reqwest::Client,
    /// SHA-256 over the grant's settings and secrets: when it changes, a refused credential
    /// may be tried again.
    pub fingerprint: [u8; 32],
    /// What the tokens of a shared grant are stamped with (its `fingerprint`): a token set
    /// stamped otherwise was obtained under other settings or secrets (before a reload, a
    /// restart, a secret change, or by an instance with another file), so neither it nor its
    /// refresh token is used. `None` for per-user connections: only the user's consent
    /// replaces their tokens.
    pub stamp: Option<[u8; 32]>,
    pub refresh_on: Option<RefreshOn>,
    /// How a token signs the upstream request.
    pub signing: TokenSigning,
}

/// How a token source's tokens sign a call.
#[derive(Debug, Clone, Default)]
pub enum TokenSigning {
    /// The access token where `token_in` says (RFC 6750).
    #[default]
    Bearer,
    /// AWS SigV4 with temporary credentials (`aws_sigv4` with `role_arn`).
    AwsSigV4(Arc<super::aws_sigv4::AwsSigner>),
}

/// `refresh_skew_s` when the connector does not set it.
pub const DEFAULT_SKEW_MS: i64 = 300_000;

impl TokenSource {
    /// How long before its expiry `set` is refreshed: the configured `refresh_skew_s` as it
    /// is; the default capped at half the token's lifetime, so that tokens living less than
    /// twice the default (60-second tokens) are not fetched again on every call.
    pub fn skew_for(&self, set: &crate::token::TokenSet) -> i64 {
        if self.skew_configured { self.skew_ms } else { set.skew_ms(self.skew_ms) }
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("key", &self.key).finish_non_exhaustive()
    }
}

pub type SharedSource = Arc<TokenSource>;

#[cfg(test)]
mod tests;
