//! `client_auth = "private_key_jwt"` (RFC 7523 §2.2, OpenID Connect Core §9): the client
//! proves itself at the token endpoint with a short-lived JWT signed by its own key: `iss` and
//! `sub` the client id, `aud` the token endpoint, a unique `jti`, `iat` and `exp` 60 seconds
//! later; `kid` in the header when `client_key_id` is set.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use latchkey_vault::Fingerprint;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::grant::Client;
use crate::config::{AssertionAlg, ClientAuth, ClientKeyFields, PemSource};
use crate::secret::ClientSecret;
use crate::secrets::SecretSet;
use crate::{CallError, Env, ErrorCode};

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion is valid.
pub const LIFETIME_S: i64 = 60;

/// A client's signing key, ready to sign assertions. `Debug` shows no key.
pub struct ClientAssertion {
    key: EncodingKey,
    alg: Algorithm,
    key_id: Option<String>,
    /// `x5t` and `x5t#S256` of `client_key_certificate`.
    thumbprints: Option<(String, String)>,
}

impl std::fmt::Debug for ClientAssertion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientAssertion({:?}, kid {:?}, [REDACTED])", self.alg, self.key_id)
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: i64,
    exp: i64,
}

fn bad_key(what: &str) -> CallError {
    CallError::new(ErrorCode::SecretMissing, format!("client_private_key: {what}; {KEY_HINT}"))
}

/// Reads `pem` for `alg` (by default `RS256` for an RSA key, `ES256` for a P-256 key) and
/// signs once to prove the key fits the algorithm; `Err` says what is wrong with the key.
pub(super) fn signing_key(pem: &SecretString, alg: Option<AssertionAlg>) -> Result<(EncodingKey, Algorithm), String> {
    let bytes = pem.expose_secret().trim().as_bytes();
    let rsa = || EncodingKey::from_rsa_pem(bytes).ok();
    let ec = || EncodingKey::from_ec_pem(bytes).ok();
    let (key, alg) = match alg {
        Some(AssertionAlg::RS256) => (rsa().ok_or("RS256 needs an RSA private key")?, Algorithm::RS256),
        Some(AssertionAlg::PS256) => (rsa().ok_or("PS256 needs an RSA private key")?, Algorithm::PS256),
        Some(AssertionAlg::ES256) => (ec().ok_or("ES256 needs an EC private key")?, Algorithm::ES256),
        None => match (rsa(), ec()) {
            (Some(k), _) => (k, Algorithm::RS256),
            (None, Some(k)) => (k, Algorithm::ES256),
            (None, None) => return Err("this is not a private key in PEM".into()),
        },
    };
    jsonwebtoken::encode(&Header::new(alg), &serde_json::json!({"check": true}), &key).map_err(|_| {
        format!("the key cannot sign {alg:?} (an RSA key needs at least 2048 bits; ES256 needs the P-256 curve)")
    })?;
    Ok((key, alg))
}

/// What to do about a key [`signing_key`] refused.
pub(super) const KEY_HINT: &str = "give an RSA key (RS256, PS256) or a P-256 EC key (ES256) in PEM \
     (`RSA PRIVATE KEY`, `EC PRIVATE KEY` or PKCS#8 `PRIVATE KEY`) with `latchkey secret set`";

impl ClientAssertion {
    /// Reads `pem` for `alg` (by default `RS256` for an RSA key, `ES256` for an EC key) and
    /// signs once to prove the key fits the algorithm.
    pub fn new(pem: &SecretString, alg: Option<AssertionAlg>, key_id: Option<String>) -> Result<Self, CallError> {
        let (key, alg) = signing_key(pem, alg).map_err(|what| bad_key(&what))?;
        Ok(ClientAssertion { key, alg, key_id, thumbprints: None })
    }

    /// The header names the key by the thumbprints of its certificate, `certificate_pem` (the
    /// first certificate there, when it is a chain), as well as by `kid` if that is set.
    pub fn with_certificate(mut self, certificate_pem: &str) -> Result<Self, CallError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject as _;
        let der = CertificateDer::pem_slice_iter(certificate_pem.as_bytes()).next().and_then(Result::ok).ok_or_else(
            || {
                CallError::new(
                    ErrorCode::SecretMissing,
                    "client_key_certificate: this is not a certificate in PEM (`-----BEGIN CERTIFICATE-----`); \
                     give the certificate of `client_private_key` as the provider registered it",
                )
            },
        )?;
        self.thumbprints = Some(latchkey_vault::thumbprint::x5t(&der));
        Ok(self)
    }

    /// A fresh assertion for `client_id` at `audience` (the token endpoint).
    pub fn sign(&self, client_id: &str, audience: &str, now_ms: i64) -> Result<SecretString, CallError> {
        let iat = now_ms.div_euclid(1000);
        let claims = Claims {
            iss: client_id,
            sub: client_id,
            aud: audience,
            jti: latchkey_vault::random::token(24),
            iat,
            exp: iat + LIFETIME_S,
        };
        let mut header = Header::new(self.alg);
        header.kid = self.key_id.clone();
        if let Some((x5t, x5t_s256)) = &self.thumbprints {
            header.x5t = Some(x5t.clone());
            header.x5t_s256 = Some(x5t_s256.clone());
        }
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map(SecretString::from)
            .map_err(|_| bad_key("the key could not sign the client assertion"))
    }
}

/// The client of an OAuth method's table: its id, secret or signing key as `client_auth`
/// says, resolved for `env`. Adds what identifies it to `id`. (The load checked that the
/// fields `client_auth` needs are there.)
pub(super) fn client(
    c: &impl ClientKeyFields,
    client_id: &str,
    secret: Option<ClientSecret>,
    env: Env,
    secrets: &SecretSet,
    id: &mut Fingerprint,
) -> Result<Client, CallError> {
    let assertion = match (c.client_auth(), c.client_private_key()) {
        (ClientAuth::PrivateKeyJwt, Some(r)) => {
            let pem = secrets.resolve(r, env)?;
            id.part(b"private_key_jwt")
                .part(pem.expose_secret().as_bytes())
                .opt(c.client_key_id().map(str::as_bytes))
                .opt(c.client_assertion_alg().map(|a| format!("{a:?}")).as_ref().map(|a| a.as_bytes()));
            let assertion = ClientAssertion::new(pem, c.client_assertion_alg(), c.client_key_id().map(str::to_owned))?;
            let certificate = match c.client_key_certificate() {
                None => None,
                Some(PemSource::Inline(pem)) => Some(pem.as_str()),
                Some(PemSource::Ref(r)) => Some(secrets.resolve(r, env)?.expose_secret()),
            };
            match certificate {
                Some(cert) => {
                    id.part(b"client_key_certificate").part(cert.trim().as_bytes());
                    Some(assertion.with_certificate(cert)?)
                }
                None => Some(assertion),
            }
        }
        (ClientAuth::PrivateKeyJwt, None) => {
            return Err(CallError::new(
                ErrorCode::ConfigInvalid,
                "client_auth = \"private_key_jwt\" needs `client_private_key`: name the secret that holds the key",
            ));
        }
        _ => None,
    };
    Ok(Client { id: client_id.to_owned(), secret, auth: c.client_auth(), assertion })
}
