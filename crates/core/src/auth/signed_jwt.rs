//! `auth.jwt` of `oauth2_custom_token` (GitHub Apps and the like): a JWT signed afresh for
//! each token request from the configured claims, `iat` 60 seconds back (clock skew, as GitHub
//! recommends) and `exp` `lifetime_s` ahead, and put where the templates say `<jwt>`. With it
//! the custom token request is rendered per request ([`JwtRequest`]); without it, once.

use http::{HeaderName, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use latchkey_vault::Fingerprint;
use secrecy::{ExposeSecret, SecretString};

use super::client_assertion::{KEY_HINT, signing_key};
use crate::config::{HeaderText, SignedJwt as Config};
use crate::template::{Body, Values};
use crate::{CallError, ErrorCode};

/// How far `iat` is set back from the token request, for a provider whose clock is behind.
pub const BACKDATE_S: i64 = 60;

/// The placeholder the signed JWT fills.
pub const PLACEHOLDER: &str = "jwt";

/// A key and claims ready to sign. `Debug` shows no key.
pub struct SignedJwt {
    key: EncodingKey,
    alg: Algorithm,
    key_id: Option<String>,
    claims: serde_json::Map<String, serde_json::Value>,
    lifetime_s: i64,
}

impl std::fmt::Debug for SignedJwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignedJwt({:?}, kid {:?}, [REDACTED])", self.alg, self.key_id)
    }
}

impl SignedJwt {
    /// Reads the key (test-signing once) and adds what identifies the JWT to `id`: a changed
    /// key, claim, lifetime or algorithm is a changed grant, whose tokens are not used.
    pub fn new(cfg: &Config, pem: &SecretString, id: &mut Fingerprint) -> Result<SignedJwt, CallError> {
        let (key, alg) = signing_key(pem, cfg.alg).map_err(|what| {
            CallError::new(
                ErrorCode::SecretMissing,
                format!("oauth2_custom_token: jwt.private_key: {what}; {KEY_HINT}"),
            )
        })?;
        let claims: serde_json::Map<String, serde_json::Value> =
            cfg.claims.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let lifetime_s = i64::try_from(cfg.lifetime_s).unwrap_or(540);
        id.part(b"signed_jwt")
            .part(pem.expose_secret().trim().as_bytes())
            .part(format!("{alg:?}").as_bytes())
            .opt(cfg.key_id.as_ref().map(String::as_bytes))
            .part(serde_json::Value::Object(claims.clone()).to_string().as_bytes())
            .part(&lifetime_s.to_be_bytes());
        Ok(SignedJwt { key, alg, key_id: cfg.key_id.clone(), claims, lifetime_s })
    }

    /// A fresh JWT for a token request at `now_ms`: the configured claims, `iat` and `exp`.
    pub fn sign(&self, now_ms: i64) -> Result<SecretString, CallError> {
        let now = now_ms.div_euclid(1000);
        let mut claims = self.claims.clone();
        claims.insert("iat".into(), (now - BACKDATE_S).into());
        claims.insert("exp".into(), (now + self.lifetime_s).into());
        let mut header = Header::new(self.alg);
        header.kid = self.key_id.clone();
        jsonwebtoken::encode(&header, &claims, &self.key).map(SecretString::from).map_err(|_| {
            CallError::new(ErrorCode::SecretMissing, "oauth2_custom_token: jwt.private_key could not sign the JWT")
        })
    }
}

/// A custom token request rendered per request, with a fresh `<jwt>` each time.
pub struct JwtRequest {
    pub jwt: SignedJwt,
    /// The other placeholders' values, secrets included (as `values` of the rendering).
    pub values: Vec<(String, serde_json::Value)>,
    pub secret_values: Vec<(String, SecretString)>,
    pub headers: Vec<(HeaderName, HeaderText)>,
    pub body: Body,
}

impl JwtRequest {
    /// The headers and the JSON body with `<jwt>` signed at `now_ms`, and the JWT (a secret
    /// of the request, scrubbed from what the provider says back).
    #[expect(clippy::type_complexity, reason = "the parts of one token request")]
    pub fn render(
        &self,
        now_ms: i64,
    ) -> Result<(Vec<(HeaderName, HeaderValue)>, SecretString, SecretString), CallError> {
        let jwt = self.jwt.sign(now_ms)?;
        let mut values = Values::new();
        for (k, v) in &self.values {
            values.insert(k.clone(), v.clone());
        }
        for (k, v) in &self.secret_values {
            values.insert(k.clone(), serde_json::Value::String(v.expose_secret().to_owned()));
        }
        values.insert(PLACEHOLDER.into(), serde_json::Value::String(jwt.expose_secret().to_owned()));
        let headers = render_headers(&self.headers, &values)?;
        let body = SecretString::from(serde_json::to_string(&self.body.render(&values)).unwrap_or_default());
        Ok((headers, body, jwt))
    }
}

/// The token headers rendered with `values`, each marked sensitive.
pub(super) fn render_headers(
    templates: &[(HeaderName, HeaderText)],
    values: &Values,
) -> Result<Vec<(HeaderName, HeaderValue)>, CallError> {
    let mut headers = Vec::new();
    for (k, v) in templates {
        let text = v.render_value(values, "a token header")?.unwrap_or_default();
        let mut value = HeaderValue::from_str(&text).map_err(|_| {
            CallError::new(
                ErrorCode::SecretMissing,
                format!("oauth2_custom_token: header `{k}` would contain a line break"),
            )
        })?;
        value.set_sensitive(true);
        headers.push((k.clone(), value));
    }
    Ok(headers)
}
