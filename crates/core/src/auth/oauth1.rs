//! `oauth1` and `oauth1_authorization`: RFC 5849 OAuth 1.0a. Each request is signed over its
//! method, base URI, query and (for a form-encoded body) body parameters and the protocol
//! parameters (§3.4.1), with `HMAC-SHA1`, `HMAC-SHA256`, `RSA-SHA1` or `PLAINTEXT`; the
//! protocol parameters go into the `Authorization` header, the query or the form body (§3.5).
//! The method owns every `oauth_*` parameter name: a caller's are dropped from the query and
//! the form body. Two-legged, the token is the app's (from the vault); three-legged, the
//! calling user's connection's (`engine/connections/oauth1.rs` makes it). The base string is
//! written here (pure, unit-tested against the RFC's examples); HMAC comes from the vault
//! (aws-lc-rs), RSA-SHA1 from RustCrypto `rsa` (aws-lc-rs signs PKCS#1 v1.5 with SHA-2 only).

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _};
use secrecy::{ExposeSecret, SecretString};
use url::Url;
use zeroize::Zeroizing;

use crate::config::{OAuth1, OAuth1Authorization, OAuth1Fields, SignatureIn, SignatureMethod};
use crate::secrets::SecretSet;
use crate::{CallError, Env, ErrorCode};

/// RFC 5849 §3.6: all but ALPHA, DIGIT, `-`, `.`, `_` and `~` is percent-encoded (uppercase).
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// RFC 5849 §3.6 percent-encoding.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// The base string URI (§3.4.1.2): scheme and host in lowercase, the port only when it is not
/// the scheme's default, the path as sent; no query, no fragment.
pub fn base_uri(url: &Url) -> String {
    let mut s = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default().to_ascii_lowercase());
    if let Some(port) = url.port() {
        s.push(':');
        s.push_str(&port.to_string());
    }
    s.push_str(url.path());
    s
}

/// The normalized parameters (§3.4.1.3.2): each name and value encoded, sorted by name then
/// value, joined with `=` and `&`.
pub fn normalized<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut pairs: Vec<(String, String)> = params.into_iter().map(|(k, v)| (encode(k), encode(v))).collect();
    pairs.sort_unstable();
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(&k);
        out.push('=');
        out.push_str(&v);
    }
    out
}

/// The signature base string (§3.4.1.1).
pub fn base_string(method: &str, url: &Url, normalized_params: &str) -> String {
    format!("{}&{}&{}", method.to_ascii_uppercase(), encode(&base_uri(url)), encode(normalized_params))
}

/// A token and its secret, borrowed for one request.
#[derive(Clone, Copy)]
pub struct Token<'a> {
    pub token: &'a str,
    pub secret: &'a str,
}

/// The secret that signs: the consumer secret (the HMAC methods and `PLAINTEXT`) or the
/// consumer's RSA key.
enum Key {
    Secret(SecretString),
    Rsa(Box<rsa::pkcs1v15::SigningKey<sha1::Sha1>>),
}

/// A prepared OAuth 1.0a credential for one connector in one environment. `Debug` shows the
/// consumer key and the method only.
pub struct OAuth1Auth {
    consumer_key: String,
    key: Key,
    method: SignatureMethod,
    signature_in: SignatureIn,
    /// Two-legged: the app's token and its secret (empty when none is configured).
    token: Option<(SecretString, SecretString)>,
    /// Three-legged: the flow's endpoints; each call signs with its user's connection.
    pub flow: Option<Box<Flow>>,
}

impl fmt::Debug for OAuth1Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OAuth1Auth({}, {}: [REDACTED])", self.consumer_key, self.method.name())
    }
}

/// `oauth1_authorization`'s flow: its settings, and where each connection's token lives.
pub struct Flow {
    pub config: OAuth1Authorization,
    /// The token source every connection's key is made from: the token lifecycle stores and
    /// seals a connection's token and secret under it. Its grant obtains nothing (OAuth 1.0a
    /// token credentials neither expire nor refresh): a refused token means connecting again.
    pub template: super::TokenSource,
}

impl Flow {
    /// The token source of one connection.
    pub fn for_connection(&self, id: &str) -> super::TokenSource {
        let mut src = self.template.clone();
        src.key.connection = id.to_owned();
        src
    }
}

/// The grant behind [`Flow::template`]: an authorization-code grant without a refresh token,
/// which the lifecycle never regrants (`can_regrant` is false), so a refresh, were one asked
/// for, is `reauthorization_required`.
pub(super) fn flow_grant(c: &OAuth1Authorization) -> (super::Grant, latchkey_vault::Fingerprint) {
    let mut id = latchkey_vault::Fingerprint::default();
    id.part(b"oauth1_authorization").part(c.access_token_url.as_str().as_bytes()).part(c.consumer_key.as_bytes());
    let grant = super::Grant::AuthorizationCode {
        token_url: c.access_token_url.to_string(),
        client: super::grant::Client {
            id: c.consumer_key.clone(),
            secret: None,
            auth: crate::config::ClientAuth::Basic,
            assertion: None,
        },
        scope: None,
        shape: crate::token::TokenResponseShape::default(),
    };
    (grant, id)
}

/// Credentials a provider answered (RFC 5849 §2.1, §2.3): a token and its secret.
pub struct Credentials {
    pub token: String,
    pub secret: SecretString,
    /// `oauth_callback_confirmed=true` (temporary credentials must say it).
    pub callback_confirmed: bool,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials([REDACTED])")
    }
}

/// The vault's CSPRNG, for the blinding of RSA signatures (against timing side channels).
struct VaultRng;

impl rand_core::RngCore for VaultRng {
    fn next_u32(&mut self) -> u32 {
        u32::from_le_bytes(latchkey_vault::random::bytes::<4>())
    }
    fn next_u64(&mut self) -> u64 {
        u64::from_le_bytes(latchkey_vault::random::bytes::<8>())
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        latchkey_vault::random::fill(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        latchkey_vault::random::fill(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for VaultRng {}

fn rsa_key(pem: &SecretString) -> Result<Key, CallError> {
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    let text = pem.expose_secret().trim();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(text)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(text))
        .map_err(|_| {
            CallError::new(
                ErrorCode::SecretMissing,
                "oauth1: `private_key` is not an RSA private key in PEM (PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY`): set it again with `latchkey secret set`",
            )
        })?;
    Ok(Key::Rsa(Box::new(rsa::pkcs1v15::SigningKey::<sha1::Sha1>::new(key))))
}

fn prepare_common(c: &impl OAuth1Fields, env: Env, secrets: &SecretSet) -> Result<(Key, String), CallError> {
    let key = match (c.signature_method(), c.consumer_secret(), c.private_key()) {
        (SignatureMethod::RsaSha1, _, Some(pem)) => rsa_key(secrets.resolve(pem, env)?)?,
        (SignatureMethod::RsaSha1, _, None) => {
            return Err(CallError::new(ErrorCode::ConfigInvalid, "oauth1: RSA-SHA1 needs `private_key`"));
        }
        (_, Some(secret), _) => Key::Secret(secrets.resolve(secret, env)?.clone()),
        (method, None, _) => {
            return Err(CallError::new(
                ErrorCode::ConfigInvalid,
                format!("oauth1: {} needs `consumer_secret`", method.name()),
            ));
        }
    };
    Ok((key, c.consumer_key().to_owned()))
}

/// `oauth1`: the app's consumer and, when configured, its token.
pub(super) fn two_legged(c: &OAuth1, env: Env, secrets: &SecretSet) -> Result<OAuth1Auth, CallError> {
    let (key, consumer_key) = prepare_common(c, env, secrets)?;
    let token = match &c.token {
        Some(t) => {
            let secret = match &c.token_secret {
                Some(s) => secrets.resolve(s, env)?.clone(),
                None => SecretString::from(String::new()),
            };
            Some((secrets.resolve(t, env)?.clone(), secret))
        }
        None => None,
    };
    Ok(OAuth1Auth { consumer_key, key, method: c.signature_method, signature_in: c.signature_in, token, flow: None })
}

/// `oauth1_authorization`: the consumer, and the flow that makes each user's connection.
pub(super) fn three_legged(c: &OAuth1Authorization, env: Env, secrets: &SecretSet) -> Result<OAuth1Auth, CallError> {
    let (key, consumer_key) = prepare_common(c, env, secrets)?;
    // The flow (and where its tokens live) is added by `auth::prepare`.
    Ok(OAuth1Auth {
        consumer_key,
        key,
        method: c.signature_method,
        signature_in: c.signature_in,
        token: None,
        flow: None,
    })
}

/// Whether `headers` say the body is `application/x-www-form-urlencoded` (§3.4.1.3.1).
pub fn is_form(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
    })
}

/// A request to sign: its parts as built, the body when it is in memory.
pub struct Request<'a> {
    pub method: &'a Method,
    pub url: &'a mut Url,
    pub headers: &'a mut HeaderMap,
    /// The body in memory; `None` while it streams (then it is no form: the pipeline reads a
    /// form body into memory first).
    pub body: Option<&'a mut Bytes>,
    /// Unix seconds (`oauth_timestamp`).
    pub now_s: i64,
}

impl OAuth1Auth {
    pub fn signature_in(&self) -> SignatureIn {
        self.signature_in
    }

    /// The app's token (two-legged), if configured.
    pub fn app_token(&self) -> Option<Token<'_>> {
        self.token.as_ref().map(|(t, s)| Token { token: t.expose_secret(), secret: s.expose_secret() })
    }

    /// Signs `r` with `token` (none for the request-token step), adding `extra` protocol
    /// parameters (`oauth_callback`, `oauth_verifier`), with a fresh nonce.
    pub fn sign(&self, r: Request<'_>, token: Option<Token<'_>>, extra: &[(&str, &str)]) -> Result<(), CallError> {
        self.sign_with_nonce(r, token, extra, &latchkey_vault::random::token(32))
    }

    pub(crate) fn sign_with_nonce(
        &self,
        r: Request<'_>,
        token: Option<Token<'_>>,
        extra: &[(&str, &str)],
        nonce: &str,
    ) -> Result<(), CallError> {
        let Request { method, url, headers, body, now_s } = r;
        let owned = |n: &str| n.starts_with("oauth_");
        // The caller's `oauth_*` parameters are not sent: the method owns the names.
        if let Some(kept) = url.query().map(|q| super::without_params(q, owned)) {
            url.set_query(Some(kept.as_str()).filter(|k| !k.is_empty()));
        }
        let form = is_form(headers);
        let mut body = body;
        if form {
            let Some(b) = body.as_deref_mut() else {
                return Err(CallError::internal("oauth1: a form body to sign was not read into memory"));
            };
            if let Ok(text) = std::str::from_utf8(b)
                && text.contains("oauth_")
            {
                *b = Bytes::from(super::without_params(text, owned));
                headers.remove(CONTENT_LENGTH);
            }
        }
        if self.signature_in == SignatureIn::Body && !form {
            return Err(CallError::invalid_params(
                "this connector signs OAuth 1.0a in the request body (signature_in = \"body\"), which needs a form body: send `Content-Type: application/x-www-form-urlencoded` with the request, or set signature_in = \"header\"",
            ));
        }
        let timestamp = now_s.to_string();
        let mut protocol: Vec<(&str, &str)> = vec![
            ("oauth_consumer_key", &self.consumer_key),
            ("oauth_nonce", nonce),
            ("oauth_signature_method", self.method.name()),
            ("oauth_timestamp", &timestamp),
            ("oauth_version", "1.0"),
        ];
        if let Some(t) = token {
            protocol.push(("oauth_token", t.token));
        }
        protocol.extend_from_slice(extra);
        let signature = {
            let query: Vec<(String, String)> =
                url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            let body_pairs: Vec<(String, String)> = match (form, body.as_deref()) {
                (true, Some(b)) => {
                    url::form_urlencoded::parse(b).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
                }
                _ => Vec::new(),
            };
            let all =
                query.iter().chain(&body_pairs).map(|(k, v)| (k.as_str(), v.as_str())).chain(protocol.iter().copied());
            let base = base_string(method.as_str(), url, &normalized(all));
            // PLAINTEXT's signature is the secrets themselves.
            Zeroizing::new(self.signature(&base, token.map_or("", |t| t.secret))?)
        };
        protocol.push(("oauth_signature", &signature));
        match self.signature_in {
            SignatureIn::Header => {
                let mut value = Zeroizing::new(String::from("OAuth "));
                for (i, (k, v)) in protocol.iter().enumerate() {
                    if i > 0 {
                        value.push_str(", ");
                    }
                    value.push_str(&format!("{k}=\"{}\"", encode(v)));
                }
                headers.insert(AUTHORIZATION, super::sign::sensitive_header(&value, "the OAuth 1.0a token")?);
            }
            SignatureIn::Query => {
                let mut q = url.query().unwrap_or_default().to_owned();
                append(&mut q, &protocol);
                url.set_query(Some(&q));
            }
            SignatureIn::Body => {
                if let Some(b) = body {
                    let mut text = String::from_utf8_lossy(b).into_owned();
                    append(&mut text, &protocol);
                    *b = Bytes::from(text);
                    headers.remove(CONTENT_LENGTH);
                }
            }
        }
        Ok(())
    }

    /// `oauth_signature` over `base` (§3.4.2 to §3.4.4).
    fn signature(&self, base: &str, token_secret: &str) -> Result<String, CallError> {
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let hmac_key = |secret: &SecretString| {
            Zeroizing::new(format!("{}&{}", encode(secret.expose_secret()), encode(token_secret)))
        };
        match (&self.key, self.method) {
            (Key::Secret(s), SignatureMethod::HmacSha1) => {
                Ok(b64(&latchkey_vault::hmac_sha1(hmac_key(s).as_bytes(), base.as_bytes())))
            }
            (Key::Secret(s), SignatureMethod::HmacSha256) => {
                Ok(b64(&latchkey_vault::hmac_sha256(hmac_key(s).as_bytes(), base.as_bytes())))
            }
            (Key::Secret(s), SignatureMethod::Plaintext) => Ok(hmac_key(s).to_string()),
            (Key::Rsa(k), SignatureMethod::RsaSha1) => {
                let sig = k.try_sign_with_rng(&mut VaultRng, base.as_bytes()).map_err(|_| {
                    CallError::new(ErrorCode::SecretMissing, "oauth1: the RSA private key could not sign: set it again")
                })?;
                Ok(b64(&sig.to_bytes()))
            }
            _ => Err(CallError::internal("oauth1: the key does not match the signature method")),
        }
    }
}

impl OAuth1Auth {
    /// A token request of the flow (temporary credentials: `token` none and `oauth_callback`
    /// in `extra`; token credentials: the temporary ones and `oauth_verifier`): a signed `POST`
    /// with a form body (empty but for the protocol parameters with `signature_in = "body"`),
    /// its form answer read (bounded). The answer's body is never shown: it holds secrets.
    pub async fn token_request(
        &self,
        url: &Url,
        token: Option<Token<'_>>,
        extra: &[(&str, &str)],
        now_s: i64,
        client: &reqwest::Client,
        timeout: std::time::Duration,
    ) -> Result<Credentials, CallError> {
        let what =
            |e: &str| CallError::new(ErrorCode::UpstreamUnreachable, format!("the provider's token endpoint {e}"));
        let mut url = url.clone();
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, http::HeaderValue::from_static("application/x-www-form-urlencoded"));
        let mut body = Bytes::new();
        self.sign(
            Request { method: &Method::POST, url: &mut url, headers: &mut headers, body: Some(&mut body), now_s },
            token,
            extra,
        )?;
        let resp = client
            .post(url)
            .headers(headers)
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|_| what("could not be reached"))?;
        let status = resp.status();
        let bytes = crate::token::read_bounded(resp, crate::token::MAX_ANSWER)
            .await
            .map_err(|_| what(&format!("answer exceeded {} or was cut off", crate::token::MAX_ANSWER_TEXT)))?;
        if !status.is_success() {
            return Err(CallError::new(
                ErrorCode::SecretMissing,
                format!("the provider refused the signed token request ({})", status.as_u16()),
            ));
        }
        let mut token = None;
        let mut secret = None;
        let mut callback_confirmed = false;
        for (k, v) in url::form_urlencoded::parse(&bytes) {
            match &*k {
                "oauth_token" => token = Some(v.into_owned()),
                "oauth_token_secret" => secret = Some(SecretString::from(v.into_owned())),
                "oauth_callback_confirmed" => callback_confirmed = v == "true",
                _ => {}
            }
        }
        match (token, secret) {
            (Some(token), Some(secret)) if !token.is_empty() => Ok(Credentials { token, secret, callback_confirmed }),
            _ => Err(what("answered without `oauth_token` and `oauth_token_secret`")),
        }
    }
}

/// Appends `params` to a query or form text, §3.6-encoded.
/// The `oauth_problem` values that say the token credentials themselves are no longer good
/// (the OAuth Problem Reporting extension to OAuth 1.0a, which Twitter, Garmin, Xero, Etsy
/// and others answer with): the user must authorize again.
pub const REVOKED_TOKEN_PROBLEMS: [&str; 3] = ["token_revoked", "token_rejected", "token_expired"];

/// Which of [`REVOKED_TOKEN_PROBLEMS`] a `401` reports, in a `WWW-Authenticate` header
/// (`OAuth realm="…", oauth_problem="token_revoked"`) or in the body's first bytes
/// (`oauth_problem=token_rejected&…` as a form, or `"oauth_problem": "token_expired"` in
/// JSON). Any other problem (a bad signature, a nonce used twice, a consumer key refused) is
/// not the user's token and is passed through.
pub fn revoked_token_problem(headers: &HeaderMap, body: &[u8]) -> Option<&'static str> {
    headers
        .get_all(http::header::WWW_AUTHENTICATE)
        .iter()
        .map(http::HeaderValue::as_bytes)
        .chain(std::iter::once(body))
        .find_map(problem_in)
}

/// The first `oauth_problem` value of `text` that is one of [`REVOKED_TOKEN_PROBLEMS`].
fn problem_in(text: &[u8]) -> Option<&'static str> {
    const NAME: &[u8] = b"oauth_problem";
    let mut rest = text;
    while let Some(at) = rest.windows(NAME.len()).position(|w| w == NAME) {
        rest = &rest[at + NAME.len()..];
        // `=` (a header's or a form's) or `:` (JSON), quotes and spaces around either.
        let value = rest.trim_ascii_start();
        let value = value.strip_prefix(b"\"").unwrap_or(value).trim_ascii_start();
        let Some(value) = value.strip_prefix(b"=").or_else(|| value.strip_prefix(b":")) else { continue };
        let value = value.trim_ascii_start();
        let value = value.strip_prefix(b"\"").unwrap_or(value);
        let end = value.iter().position(|b| !(b.is_ascii_lowercase() || *b == b'_')).unwrap_or(value.len());
        if let Some(p) = REVOKED_TOKEN_PROBLEMS.iter().find(|p| p.as_bytes() == &value[..end]) {
            return Some(p);
        }
    }
    None
}

fn append(text: &mut String, params: &[(&str, &str)]) {
    for (k, v) in params {
        if !text.is_empty() {
            text.push('&');
        }
        text.push_str(k);
        text.push('=');
        text.push_str(&encode(v));
    }
}

#[cfg(test)]
mod tests;
