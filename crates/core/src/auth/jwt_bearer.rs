//! `jwt_bearer`: RFC 7523 §2.1, the Google service-account flow. Latchkey signs an RS256
//! assertion (`iss`, `scope`, `aud`, `iat`, `exp`, a unique `jti`, optional `sub`) and trades it
//! at the token endpoint. The key is a PKCS#1 or PKCS#8 PEM, or a whole service-account JSON
//! key, which then also supplies the issuer, the token URL and the key id.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use latchkey_vault::Fingerprint;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::config::JwtBearer;
use crate::secret::PrivateKey;
use crate::{CallError, ErrorCode};

pub struct JwtGrant {
    pub token_url: String,
    pub issuer: String,
    pub audience: String,
    pub scope: Option<String>,
    pub subject: Option<String>,
    pub lifetime_s: i64,
    key: EncodingKey,
    key_id: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
}

fn bad(message: String) -> CallError {
    CallError::new(ErrorCode::SecretMissing, message)
}

impl JwtGrant {
    /// Resolves the configuration with the private key's secret value. Returns the grant and
    /// the text that identifies it (for the fingerprint).
    pub fn new(cfg: &JwtBearer, private_key: &SecretString) -> Result<(JwtGrant, Fingerprint), CallError> {
        let text = private_key.expose_secret().trim();
        let (pem, json_issuer, json_token_url, key_id) = if text.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(text).map_err(|_| {
                bad("jwt_bearer: `private_key` looks like JSON but is not a service-account key".into())
            })?;
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
            let pem = field("private_key")
                .ok_or_else(|| bad("jwt_bearer: the service-account key has no `private_key`".into()))?;
            (PrivateKey::from(pem), field("client_email"), field("token_uri"), field("private_key_id"))
        } else {
            (PrivateKey::from(text.to_owned()), None, None, None)
        };
        let key = EncodingKey::from_rsa_pem(pem.expose_secret().as_bytes()).map_err(|_| {
            bad("jwt_bearer: `private_key` is not an RSA private key in PEM (PKCS#1 `RSA PRIVATE KEY` or PKCS#8 `PRIVATE KEY`) \
                 nor a service-account JSON key; set it again with `latchkey secret set`"
                .into())
        })?;
        let token_url = cfg.token_url.as_ref().map(ToString::to_string).or(json_token_url).ok_or_else(|| {
            CallError::new(
                ErrorCode::ConfigInvalid,
                "jwt_bearer: set `token_url` (or use a service-account JSON key, which has `token_uri`)",
            )
        })?;
        let issuer = cfg.issuer.clone().or(json_issuer).ok_or_else(|| {
            CallError::new(
                ErrorCode::ConfigInvalid,
                "jwt_bearer: set `issuer` (or use a service-account JSON key, which has `client_email`)",
            )
        })?;
        let grant = JwtGrant {
            audience: cfg.audience.clone().unwrap_or_else(|| token_url.clone()),
            token_url,
            issuer,
            scope: cfg.scope.as_ref().map(|s| s.joined(" ")),
            subject: cfg.subject.clone(),
            lifetime_s: i64::try_from(cfg.lifetime_s).unwrap_or(3600),
            key,
            key_id,
        };
        let mut id = Fingerprint::default();
        id.part(b"jwt_bearer")
            .part(grant.token_url.as_bytes())
            .part(grant.issuer.as_bytes())
            .part(grant.audience.as_bytes())
            .opt(grant.scope.as_ref().map(|s| s.as_bytes()))
            .opt(grant.subject.as_ref().map(|s| s.as_bytes()))
            .part(&grant.lifetime_s.to_be_bytes())
            .part(pem.expose_secret().as_bytes());
        Ok((grant, id))
    }

    /// A fresh signed assertion.
    pub fn assertion(&self, now_ms: i64) -> Result<SecretString, CallError> {
        let iat = now_ms / 1000;
        let claims = Claims {
            iss: &self.issuer,
            scope: self.scope.as_deref(),
            aud: &self.audience,
            iat,
            exp: iat + self.lifetime_s,
            jti: latchkey_vault::random::token(24),
            sub: self.subject.as_deref(),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key).map(SecretString::from).map_err(|_| {
            bad("jwt_bearer: the private key could not sign (is it an RSA key of at least 2048 bits?)".into())
        })
    }
}
