//! One token request: [`build`] makes the exact HTTP request from a [`TokenRequest`] (a pure
//! function, which the grants' tests check byte for byte), [`send`] is the only part that
//! needs a network, and `answer::parse` reads what came back (pure too).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::TokenSet;
use super::answer::{Answer, AnswerError, MAX_ANSWER, parse};
use super::error::TokenError;
use super::scrub::Scrubber;
use crate::secret::ClientSecret;

pub enum TokenRequestBody {
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(String, SecretString)>),
    /// A JSON document (custom token requests); may hold secrets.
    Json(SecretString),
}

/// Where the token and its lifetime sit in the response (dotted paths), and what kind of
/// answer it is.
#[derive(Debug, Clone)]
pub struct TokenResponseShape {
    pub token_path: String,
    pub expires_in_path: String,
    /// Where an absolute expiry sits instead (RFC 3339 or Unix seconds): `expires_in_path`
    /// is then not read.
    pub expires_at_path: Option<String>,
    pub format: AnswerFormat,
}

/// What a token endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerFormat {
    /// RFC 6749 §5.1 JSON (or a form), with `token_path` and `expires_in_path`.
    #[default]
    OAuth,
    /// AWS STS XML (`AssumeRole`): temporary credentials (`auth::aws_sigv4::sts`).
    AwsSts,
}

impl Default for TokenResponseShape {
    fn default() -> Self {
        Self {
            token_path: "access_token".into(),
            expires_in_path: "expires_in".into(),
            expires_at_path: None,
            format: AnswerFormat::OAuth,
        }
    }
}

pub struct TokenRequest {
    pub url: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Client id and secret for `Authorization: Basic`.
    pub basic_auth: Option<(String, ClientSecret)>,
    pub body: TokenRequestBody,
    pub shape: TokenResponseShape,
    /// Whether this request used a refresh token (a refusal then may fall back to the grant).
    pub is_refresh: bool,
    /// Secret values in `headers` or a JSON `body` (a custom token request's substituted
    /// secrets), scrubbed from anything the provider echoes. Form values and the Basic pair
    /// need no listing: they are known from `body` and `basic_auth`.
    pub secrets: Vec<SecretString>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("url", &self.url)
            .field("is_refresh", &self.is_refresh)
            .finish_non_exhaustive()
    }
}

/// Form fields that never carry a secret; every other form value is scrubbed from the
/// provider's answer.
const PUBLIC_FORM_FIELDS: &[&str] = &[
    "grant_type",
    "client_id",
    "client_assertion_type",
    "username",
    "scope",
    "audience",
    "resource",
    "redirect_uri",
    "token_type_hint",
    // AWS STS `AssumeRole` (`auth::aws_sigv4::sts`): its form carries no secret.
    "Action",
    "Version",
    "RoleArn",
    "RoleSessionName",
    "DurationSeconds",
];

impl TokenRequest {
    /// Every secret this request carries, in every representation, to scrub from anything the
    /// provider says back.
    pub(crate) fn scrubber(&self) -> Scrubber {
        let mut values: Vec<&str> = self.secrets.iter().map(|s| s.expose_secret()).collect();
        if let TokenRequestBody::Form(pairs) = &self.body {
            values.extend(
                pairs.iter().filter(|(k, _)| !PUBLIC_FORM_FIELDS.contains(&k.as_str())).map(|(_, v)| v.expose_secret()),
            );
        }
        let basic = self.basic_auth.as_ref().map(|(id, secret)| (id.as_str(), secret.expose_secret()));
        Scrubber::new(values, basic)
    }
}

/// The bytes of a request body Latchkey sends to a provider. They carry secrets: `Debug`
/// shows only their length, and they are zeroized on drop.
pub struct WireBody(Zeroizing<Vec<u8>>);

impl WireBody {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `application/x-www-form-urlencoded` of `pairs`, in their order.
    pub(crate) fn form(pairs: &[(String, SecretString)]) -> WireBody {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.expose_secret())))
            .finish();
        WireBody(Zeroizing::new(body.into_bytes()))
    }
}

impl std::fmt::Debug for WireBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WireBody({} bytes, [REDACTED])", self.0.len())
    }
}

impl From<WireBody> for reqwest::Body {
    fn from(mut body: WireBody) -> reqwest::Body {
        // Moved, not copied: what reqwest sends is the only copy left.
        reqwest::Body::from(std::mem::take(&mut *body.0))
    }
}

/// `Authorization: Basic` for a client (RFC 6749 §2.3.1: the id and the secret each
/// form-encoded, then `id:secret` in Base64), marked sensitive.
#[expect(clippy::expect_used, reason = "`Basic ` and Base64 are visible ASCII, always a header value")]
pub(crate) fn basic_authorization(id: &str, secret: &ClientSecret) -> HeaderValue {
    let enc = |s: &str| Zeroizing::new(url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>());
    let pair = Zeroizing::new(format!("{}:{}", *enc(id), *enc(secret.expose_secret())));
    let text = Zeroizing::new(format!("Basic {}", STANDARD.encode(pair.as_bytes())));
    let mut value = HeaderValue::from_str(&text).expect("Base64 is a valid header value");
    value.set_sensitive(true);
    value
}

/// A `POST` of `body` to `url` with `headers`. The URL is read as reqwest reads it (WHATWG),
/// then given as the URI it sends; the error is why it is no URL.
pub(crate) fn post(url: &str, headers: HeaderMap, body: WireBody) -> Result<http::Request<WireBody>, String> {
    let url = url::Url::parse(url).map_err(|e| e.to_string())?;
    let uri = http::Uri::try_from(url.as_str()).map_err(|e| e.to_string())?;
    let mut request = http::Request::new(body);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Ok(request)
}

/// The exact HTTP request for `req`: `POST` to its URL with `Accept: application/json`, its own
/// headers, `Authorization: Basic` for `client_secret_basic`, and a form or JSON body with its
/// `Content-Type`, in that order.
pub fn build(req: &TokenRequest) -> Result<http::Request<WireBody>, TokenError> {
    let mut headers = HeaderMap::new();
    headers.append(ACCEPT, HeaderValue::from_static("application/json"));
    for (k, v) in &req.headers {
        headers.append(k, v.clone());
    }
    if let Some((id, secret)) = &req.basic_auth {
        headers.append(AUTHORIZATION, basic_authorization(id, secret));
    }
    let (content_type, body) = match &req.body {
        TokenRequestBody::Form(pairs) => ("application/x-www-form-urlencoded", WireBody::form(pairs)),
        TokenRequestBody::Json(json) => {
            ("application/json", WireBody(Zeroizing::new(json.expose_secret().as_bytes().to_vec())))
        }
    };
    headers.append(CONTENT_TYPE, HeaderValue::from_static(content_type));
    post(&req.url, headers, body).map_err(|cause| {
        // Nothing was sent: the URL (checked when the config was loaded) is none.
        TokenError::unreachable(false, format!("could not reach the token endpoint ({cause})"))
    })
}

/// Sends `request` with `client`, bounded by `timeout` as a whole.
pub(crate) async fn execute(
    client: &reqwest::Client,
    request: http::Request<WireBody>,
    timeout: Duration,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut request = reqwest::Request::try_from(request)?;
    *request.timeout_mut() = Some(timeout);
    client.execute(request).await
}

/// Sends a built token request and reads its answer (up to [`MAX_ANSWER`]). A failure to get
/// one is [`TokenErrorKind::Unreachable`](super::TokenErrorKind) when no connection was made,
/// else [`TokenErrorKind::Lost`](super::TokenErrorKind): the request may have arrived.
pub async fn send(
    client: &reqwest::Client,
    request: http::Request<WireBody>,
    timeout: Duration,
) -> Result<Answer, TokenError> {
    let response = match execute(client, request, timeout).await {
        Ok(r) => r,
        Err(e) => {
            let description = if e.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else {
                let cause = crate::error::innermost_cause(&e).unwrap_or_default();
                format!("could not reach the token endpoint ({cause})")
            };
            return Err(if e.is_connect() {
                TokenError::unreachable(e.is_timeout(), description)
            } else {
                TokenError::lost(e.is_timeout(), description)
            });
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_bounded(response, MAX_ANSWER).await;
    Ok(Answer { status, headers, body })
}

/// Sends one token request and reads the token set from the answer.
pub async fn request_token(
    client: &reqwest::Client,
    req: &TokenRequest,
    timeout: Duration,
    now: i64,
) -> Result<TokenSet, TokenError> {
    let answer = send(client, build(req)?, timeout).await?;
    parse(req, &answer, now)
}

/// Reads `response`'s body in chunks, stopping as soon as it is longer than `limit`.
pub async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, AnswerError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(AnswerError::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(AnswerError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(AnswerError::Cut { timed_out: e.is_timeout() }),
        }
    }
}

#[cfg(test)]
mod tests;
