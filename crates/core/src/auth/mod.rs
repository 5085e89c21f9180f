//! Authentication methods. [`AuthConfig`] names them, [`prepare`] turns one into a
//! [`Prepared`] credential for an environment (once, when secrets or connectors change), and
//! the call path signs each request with it through [`sign::Sign`], the one signing step,
//! without touching the store or the vault. A method that signs with what was prepared is a
//! [`Credential::Static`] signer in its own file; OAuth tokens and identity JWTs are obtained
//! per call and signed with [`sign::Bearer`].

mod api_key;
pub mod authorization_code;
pub mod aws_sigv4;
mod basic;
mod client_assertion;
mod client_certificate;
pub mod digest;
pub mod grant;
mod jwt_bearer;
pub mod oauth1;
mod oauth2;
pub mod per_user;
pub mod sign;
mod signed_jwt;

pub use client_certificate::ClientPool;
pub use grant::{Grant, SharedSource, TokenSigning, TokenSource};

use http::{HeaderMap, HeaderName};
use url::Url;

use crate::config::{AuthConfig, ConnectorConfig, TokenIn};
use crate::secrets::SecretSet;
use crate::store::TokenKey;
use crate::{CallError, Env};
use sign::{Bearer, Sign, Unsigned};

/// A credential ready to sign with. `Debug` never shows a value.
pub enum Credential {
    None,
    /// Signs with what was prepared (an API key in a header or the query, a Basic pair).
    Static(Box<dyn Sign>),
    /// HTTP Digest: signed per request over a challenge the upstream sent (and that is kept).
    Digest(Box<digest::DigestAuth>),
    /// OAuth 1.0a: signed per request over the request itself, with the app's token
    /// (`oauth1`) or, when it has a flow (`oauth1_authorization`), the calling user's.
    OAuth1(Box<oauth1::OAuth1Auth>),
    /// An OAuth token, obtained and refreshed by the token lifecycle.
    Token(SharedSource),
    /// Per-user tokens from the browser flow: each call names whose connection to use.
    User(std::sync::Arc<authorization_code::UserAuth>),
    /// Per-user values (`per_user = true`): each call names whose connection's values sign,
    /// prepared once per user ([`per_user::UserSigner`]).
    PerUser(std::sync::Arc<per_user::PerUserAuth>),
    /// A JWT for the calling user, minted per call (`latchkey_identity`).
    Identity {
        audience: String,
        lifetime_s: i64,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::None => f.write_str("Credential::None"),
            Credential::Static(signer) => write!(f, "Credential::Static({signer:?})"),
            Credential::Digest(d) => write!(f, "Credential::Digest({d:?})"),
            Credential::OAuth1(o) => write!(f, "Credential::OAuth1({o:?})"),
            Credential::Token(src) => write!(f, "Credential::Token({:?})", src.key),
            Credential::User(u) => write!(f, "Credential::User({:?})", u.template.key),
            Credential::PerUser(u) => write!(f, "Credential::PerUser({u:?})"),
            Credential::Identity { audience, .. } => write!(f, "Credential::Identity({audience})"),
        }
    }
}

/// `tls_client_auth`'s token-endpoint client and, for certificate-bound tokens, upstream.
type TlsClients = (Option<reqwest::Client>, Option<std::sync::Arc<crate::upstream::Upstream>>);

/// The credential and the upstream client (pooled; one per client identity) for one connector
/// in one environment.
#[derive(Debug)]
pub struct Prepared {
    pub credential: Credential,
    pub upstream: std::sync::Arc<crate::upstream::Upstream>,
}

pub fn prepare(
    name: &str,
    connector: &ConnectorConfig,
    env: Env,
    secrets: &SecretSet,
    clients: &ClientPool,
    public_only: bool,
) -> Result<Prepared, CallError> {
    // SECURITY S16 for the URLs Latchkey itself sends credentials to: a non-public IP
    // literal is refused here (names are checked when resolved).
    let egress = |field: &str, url: &str| -> Result<(), CallError> {
        if !public_only {
            return Ok(());
        }
        crate::upstream::egress::check_url(field, url)
    };
    let with_default = |credential| Prepared { credential, upstream: clients.default_upstream() };
    let source = |grant: Grant,
                  token_in,
                  mut identity: latchkey_vault::Fingerprint,
                  client: Option<reqwest::Client>|
     -> Result<TokenSource, CallError> {
        egress("auth.token_url", grant.token_url())?;
        Ok(TokenSource {
            key: TokenKey::app(name, env),
            grant: std::sync::Arc::new(grant),
            token_in,
            skew_ms: connector
                .refresh_skew_s
                .map_or(grant::DEFAULT_SKEW_MS, |s| i64::try_from(s).unwrap_or(i64::MAX).saturating_mul(1000)),
            skew_configured: connector.refresh_skew_s.is_some(),
            keepalive_ms: i64::try_from(connector.keepalive_s).unwrap_or(86_400).saturating_mul(1000),
            timeout: std::time::Duration::from_millis(connector.timeout_ms.min(30_000)),
            client: client.unwrap_or_else(|| clients.client_for(public_only)),
            fingerprint: {
                identity.part(name.as_bytes()).part(env.as_str().as_bytes());
                identity.finish()
            },
            stamp: None,
            refresh_on: connector.refresh_on.clone(),
            signing: grant::TokenSigning::Bearer,
        })
    };
    let token = |grant: Grant,
                 token_in,
                 identity: latchkey_vault::Fingerprint,
                 (client, upstream): TlsClients|
     -> Result<Prepared, CallError> {
        let mut src = source(grant, token_in, identity, client)?;
        src.stamp = Some(src.fingerprint);
        Ok(Prepared {
            credential: Credential::Token(std::sync::Arc::new(src)),
            upstream: upstream.unwrap_or_else(|| clients.default_upstream()),
        })
    };
    let auth = &connector.auth;
    match auth {
        AuthConfig::None(_) => Ok(with_default(Credential::None)),
        // Out of line: the prepared shape of the method; each user's values sign (`per_user.rs`).
        _ if connector.per_user => per_user::prepare(name, connector).map(with_default),
        AuthConfig::ApiKeyQuery(a) => {
            Ok(with_default(Credential::Static(api_key::query(&a.name, secrets.resolve(required(&a.key)?, env)?))))
        }
        AuthConfig::ApiKeyHeader(a) => Ok(with_default(Credential::Static(api_key::header(
            &a.name,
            a.prefix.as_deref(),
            secrets.resolve(required(&a.key)?, env)?,
        )?))),
        AuthConfig::Basic(b) => Ok(with_default(Credential::Static(basic::header(
            required(&b.username)?,
            secrets.resolve(required(&b.password)?, env)?,
        )?))),
        AuthConfig::Digest(d) => Ok(with_default(Credential::Digest(Box::new(digest::DigestAuth::new(
            required(&d.username)?,
            secrets.resolve(required(&d.password)?, env)?,
        ))))),
        AuthConfig::AwsSigv4(a) => {
            let access_key_id = match &a.access_key_id {
                crate::config::PublicValue::Plain(id) => id.as_str(),
                crate::config::PublicValue::Ref(r) => {
                    let id = secrecy::ExposeSecret::expose_secret(secrets.resolve(r, env)?);
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                        return Err(CallError::new(
                            crate::ErrorCode::SecretMissing,
                            format!(
                                "the value of {r} (auth.access_key_id) is not an AWS access key id (letters and digits): set it again"
                            ),
                        ));
                    }
                    id
                }
            };
            let signer = aws_sigv4::AwsSigner::new(&a.region, &a.service);
            let secret = secrets.resolve(&a.secret_access_key, env)?;
            let session_token = match &a.session_token {
                Some(r) => Some(secrets.resolve(r, env)?),
                None => None,
            };
            let Some(role_arn) = &a.role_arn else {
                let keys = aws_sigv4::StaticKeys::new(signer, access_key_id, secret, session_token)?;
                return Ok(with_default(Credential::Static(Box::new(keys))));
            };
            // The role's temporary credentials, through the token lifecycle.
            let sts_url = a.sts_url.as_ref().map_or_else(|| aws_sigv4::sts::default_url(&a.region), |u| u.to_string());
            egress("auth.sts_url", &sts_url)?;
            let mut id = latchkey_vault::Fingerprint::default();
            id.part(b"aws_assume_role")
                .part(role_arn.as_bytes())
                .part(sts_url.as_bytes())
                .part(a.region.as_bytes())
                .part(access_key_id.as_bytes())
                .part(secrecy::ExposeSecret::expose_secret(secret).as_bytes())
                .opt(session_token.map(|t| secrecy::ExposeSecret::expose_secret(t).as_bytes()));
            let keys = (access_key_id, secret, session_token);
            let grant = aws_sigv4::sts::AssumeRole::new(name, role_arn, &sts_url, &a.region, keys);
            let mut src = source(Grant::AwsAssumeRole(Box::new(grant)), TokenIn::Header, id, None)?;
            src.stamp = Some(src.fingerprint);
            src.signing = grant::TokenSigning::AwsSigV4(std::sync::Arc::new(signer));
            // AWS says `ExpiredToken` (`ExpiredTokenException`) with a 400 or a 403: one refresh.
            src.refresh_on.get_or_insert_with(|| crate::config::RefreshOn {
                status: vec![400, 403],
                body_contains: Some("ExpiredToken".into()),
            });
            Ok(with_default(Credential::Token(std::sync::Arc::new(src))))
        }
        AuthConfig::OAuth1(c) => Ok(with_default(Credential::OAuth1(Box::new(oauth1::two_legged(c, env, secrets)?)))),
        AuthConfig::OAuth1Authorization(c) => {
            for (field, url) in
                [("auth.request_token_url", &c.request_token_url), ("auth.access_token_url", &c.access_token_url)]
            {
                egress(field, url.as_str())?;
            }
            let mut auth = oauth1::three_legged(c, env, secrets)?;
            let (grant, id) = oauth1::flow_grant(c);
            let template = source(grant, TokenIn::Header, id, None)?;
            auth.flow = Some(Box::new(oauth1::Flow { config: c.clone(), template }));
            Ok(with_default(Credential::OAuth1(Box::new(auth))))
        }
        AuthConfig::ClientCertificate(c) => {
            let upstream = client_certificate::client(c, env, secrets, clients)?;
            Ok(Prepared { credential: Credential::None, upstream })
        }
        AuthConfig::OAuth2Password(c) => {
            let (g, mut id) = oauth2::password(c, env, secrets)?;
            let tls = client_certificate::tls_clients(c, env, secrets, clients, public_only, &mut id)?;
            token(g, c.token_in, id, tls)
        }
        AuthConfig::OAuth2ClientCredentials(c) => {
            let (g, mut id) = oauth2::client_credentials(c, env, secrets)?;
            let tls = client_certificate::tls_clients(c, env, secrets, clients, public_only, &mut id)?;
            token(g, c.token_in, id, tls)
        }
        AuthConfig::OAuth2CustomToken(c) => {
            let (g, id) = oauth2::custom(c, env, secrets)?;
            token(g, c.token_in, id, (None, None))
        }
        AuthConfig::JwtBearer(c) => {
            let (g, id) = jwt_bearer::JwtGrant::new(c, secrets.resolve(&c.private_key, env)?)?;
            token(Grant::JwtBearer(g), c.token_in, id, (None, None))
        }
        AuthConfig::LatchkeyIdentity(c) => Ok(with_default(Credential::Identity {
            audience: c.audience.clone().unwrap_or_else(|| name.to_owned()),
            lifetime_s: i64::try_from(c.lifetime_s).unwrap_or(60),
        })),
        AuthConfig::OAuth2AuthorizationCode(c) => {
            for (field, url) in [("auth.profile_url", &c.profile_url), ("auth.revoke_url", &c.revoke_url)] {
                if let Some(url) = url {
                    egress(field, url.as_str())?;
                }
            }
            let (g, mut id) = authorization_code::grant(c, env, secrets)?;
            let (client, upstream) = client_certificate::tls_clients(c, env, secrets, clients, public_only, &mut id)?;
            let user = authorization_code::UserAuth { template: source(g, c.token_in, id, client)?, config: c.clone() };
            Ok(Prepared {
                credential: Credential::User(std::sync::Arc::new(user)),
                upstream: upstream.unwrap_or_else(|| clients.default_upstream()),
            })
        }
    }
}

/// A field the validator requires unless the connector is `per_user` (so never missing here).
fn required<T>(field: &Option<T>) -> Result<&T, CallError> {
    field.as_ref().ok_or_else(|| CallError::internal("a field the configuration requires is missing"))
}

/// `query` without the pairs whose (form-decoded) name `drop` picks; the rest byte for byte.
pub(crate) fn without_params(query: &str, drop: impl Fn(&str) -> bool) -> String {
    let mut out = String::with_capacity(query.len());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let raw_name = pair.split_once('=').map_or(pair, |(k, _)| k);
        let name: String = url::form_urlencoded::parse(raw_name.as_bytes()).map(|(k, _)| k).collect();
        if drop(&name) {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(pair);
    }
    out
}

/// Puts an access token on a request, where the method says (outside the call path: the
/// provider's profile and revocation requests).
pub fn apply_token(
    token_in: TokenIn,
    token: &crate::secret::AccessToken,
    headers: &mut HeaderMap,
    url: &mut Url,
) -> Result<(), CallError> {
    Bearer { token, token_in }.sign(&mut Unsigned {
        method: &http::Method::GET,
        url,
        headers,
        body: None,
        // A bearer token reads no time.
        clock: &crate::clock::SystemClock,
    })
}

impl Credential {
    /// The request header that the caller may not set, because this credential owns it.
    pub fn owned_header(&self) -> Option<&HeaderName> {
        match self {
            Credential::Static(signer) => signer.owned_header(),
            Credential::Digest(_) => Some(&http::header::AUTHORIZATION),
            Credential::OAuth1(o) if o.signature_in() == crate::config::SignatureIn::Header => {
                Some(&http::header::AUTHORIZATION)
            }
            Credential::Token(src) if src.token_in == TokenIn::Header => Some(&http::header::AUTHORIZATION),
            Credential::User(u) if u.template.token_in == TokenIn::Header => Some(&http::header::AUTHORIZATION),
            Credential::PerUser(u) => u.owned_header(),
            Credential::Identity { .. } => Some(&http::header::AUTHORIZATION),
            _ => None,
        }
    }

    /// The signer of a credential that signs with what was prepared, if this is one.
    pub fn prepared_signer(&self) -> Option<&dyn Sign> {
        match self {
            Credential::Static(signer) => Some(signer.as_ref()),
            _ => None,
        }
    }
}
