//! One token request: build it, send it, read the answer, and classify a failure as terminal
//! (the provider refused the credential) or transient (try again later, keep every token).

use std::time::Duration;

use http::{HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::TokenSet;
use super::scrub::{ProviderError, Scrubber};
use crate::{CallError, ErrorCode};

pub enum TokenRequestBody {
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(String, SecretString)>),
    /// A JSON document (custom token requests); may hold secrets.
    Json(SecretString),
}

/// Where the token and its lifetime sit in the response (dotted paths).
#[derive(Debug, Clone)]
pub struct TokenResponseShape {
    pub token_path: String,
    pub expires_in_path: String,
}

impl Default for TokenResponseShape {
    fn default() -> Self {
        Self { token_path: "access_token".into(), expires_in_path: "expires_in".into() }
    }
}

pub struct TokenRequest {
    pub url: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Client id and secret for `Authorization: Basic`.
    pub basic_auth: Option<(String, SecretString)>,
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
const PUBLIC_FORM_FIELDS: &[&str] =
    &["grant_type", "client_id", "username", "scope", "audience", "resource", "redirect_uri", "token_type_hint"];

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

/// Why a token request failed. Holds only what RFC 6749 §5.2 defines of the provider's answer
/// (`error`, `error_description`, `error_uri`), scrubbed of every secret this request sent
/// (`token::scrub`), never the response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// The provider refused the credential: retrying the same request will not help.
    pub terminal: bool,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub description: Option<String>,
    /// The provider's `error_uri`.
    pub uri: Option<String>,
    pub retry_after: Option<Duration>,
    /// No answer at all (timeout, connection refused).
    pub no_response: bool,
    pub timed_out: bool,
    /// The request may have reached the provider, and its answer was lost (a timeout or a
    /// connection cut after connecting): a refresh token may have been rotated without our
    /// knowing (SECURITY, "an ambiguous timeout").
    pub ambiguous: bool,
}

impl TokenError {
    fn transport(timed_out: bool, ambiguous: bool, description: String) -> Self {
        TokenError {
            terminal: false,
            status: None,
            error: None,
            description: Some(description),
            uri: None,
            retry_after: None,
            no_response: true,
            timed_out,
            ambiguous,
        }
    }

    /// An answer that came but cannot be used (Latchkey's words, never the provider's).
    fn unusable(status: u16, error: &str, description: String, ambiguous: bool) -> Self {
        TokenError {
            terminal: false,
            status: Some(status),
            error: Some(error.into()),
            description: Some(description),
            uri: None,
            retry_after: None,
            no_response: false,
            timed_out: false,
            ambiguous,
        }
    }

    /// A one-line summary: `invalid_grant (400): refresh token expired`.
    pub fn summary(&self) -> String {
        let mut s = self.error.clone().unwrap_or_else(|| {
            if self.timed_out {
                "timeout".into()
            } else if self.no_response {
                "unreachable".into()
            } else {
                "error".into()
            }
        });
        if let Some(st) = self.status {
            s.push_str(&format!(" ({st})"));
        }
        if let Some(d) = &self.description {
            s.push_str(": ");
            s.push_str(d);
        }
        s
    }

    /// The caller's error: `token_request_failed` with the provider's words.
    pub fn to_call_error(&self, connector: &str) -> CallError {
        let what = if self.terminal {
            "the token endpoint refused the credential"
        } else {
            "the token endpoint failed (Latchkey will retry with backoff)"
        };
        let mut e = CallError::new(
            ErrorCode::TokenRequestFailed,
            format!(
                "connector `{connector}`: {what}: {}{}",
                self.summary(),
                if self.terminal { "; check its client id, secrets and grant settings" } else { "" }
            ),
        );
        if let Some(err) = &self.error {
            e.details.insert("provider_error".into(), Value::String(err.clone()));
        }
        if let Some(d) = &self.description {
            e.details.insert("provider_error_description".into(), Value::String(d.clone()));
        }
        if let Some(u) = &self.uri {
            e.details.insert("provider_error_uri".into(), Value::String(u.clone()));
        }
        if let Some(st) = self.status {
            e.details.insert("provider_status".into(), Value::from(st));
        }
        if self.terminal {
            // Shown to the caller; decisions read the retry hint below, never this key.
            e.details.insert("terminal".into(), Value::Bool(true));
        }
        e.with_retry(match (self.terminal, self.retry_after) {
            (true, _) => crate::Retry::Never,
            (false, Some(after)) => crate::Retry::After(after),
            (false, None) => crate::Retry::Later,
        })
    }
}

fn lookup<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |v, part| v.get(part))
}

/// Sends one token request and reads the token set from the answer.
pub async fn request_token(
    client: &reqwest::Client,
    req: &TokenRequest,
    timeout: Duration,
    now: i64,
) -> Result<TokenSet, TokenError> {
    let mut builder = client.post(&req.url).timeout(timeout).header(http::header::ACCEPT, "application/json");
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    if let Some((id, secret)) = &req.basic_auth {
        // RFC 6749 §2.3.1: both parts form-encoded before Basic encoding.
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let user = enc(id);
        let pass = SecretString::from(enc(secret.expose_secret()));
        builder = builder.basic_auth(user, Some(pass.expose_secret()));
    }
    builder = match &req.body {
        TokenRequestBody::Form(pairs) => {
            let body: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.expose_secret())))
                .finish();
            builder.header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(body)
        }
        TokenRequestBody::Json(json) => {
            builder.header(http::header::CONTENT_TYPE, "application/json").body(json.expose_secret().to_owned())
        }
    };
    let response = match builder.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            let description = format!("no answer within {} ms", timeout.as_millis());
            return Err(TokenError::transport(true, !e.is_connect(), description));
        }
        Err(e) => {
            let cause = crate::error::innermost_cause(&e).unwrap_or_default();
            let description = format!("could not reach the token endpoint ({cause})");
            return Err(TokenError::transport(false, !e.is_connect(), description));
        }
    };
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let is_form = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded") || v.starts_with("text/plain"));
    let bytes = match read_bounded(response, MAX_ANSWER).await {
        Ok(b) => b,
        Err(AnswerError::TooLarge) => {
            let description = format!(
                "the token endpoint's answer exceeded {}; Latchkey read no further: check the token_url",
                MAX_ANSWER_TEXT
            );
            if !(200..300).contains(&status) {
                let transient = status == 429 || status == 408 || status >= 500;
                let mut e = TokenError::unusable(status, "answer_too_large", description, false);
                e.terminal = !transient;
                e.retry_after = retry_after;
                return Err(e);
            }
            // A success whose tokens were never read: a rotated refresh token may be in it.
            return Err(TokenError::unusable(status, "answer_too_large", description, true));
        }
        Err(AnswerError::Cut { timed_out }) => {
            return Err(TokenError::transport(timed_out, true, "the answer was cut off".into()));
        }
    };
    let json: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        if is_form || bytes.contains(&b'=') {
            // Some providers answer `access_token=...&expires_in=...`.
            let map: serde_json::Map<String, Value> = url::form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            Value::Object(map)
        } else {
            Value::Null
        }
    });
    if !(200..300).contains(&status) {
        let ProviderError { error, description, uri } = req.scrubber().provider_error(&json);
        let transient = status == 429 || status == 408 || status >= 500;
        return Err(TokenError {
            terminal: !transient,
            status: Some(status),
            error,
            description,
            uri,
            retry_after,
            no_response: false,
            timed_out: false,
            ambiguous: false,
        });
    }
    let path = &req.shape.token_path;
    let Some(access) = lookup(&json, path).and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return Err(TokenError::unusable(status, "no_token", format!("the answer has no `{path}`"), false));
    };
    if !header_safe(access) {
        let description = format!(
            "the access token at `{path}` has characters no HTTP header can carry (a line break or another control \
             character; RFC 6749 allows %x20-7E): the provider's answer is broken"
        );
        return Err(TokenError::unusable(status, "invalid_access_token", description, false));
    }
    let expires_path = &req.shape.expires_in_path;
    let expires_at = expires_at(now, lookup(&json, expires_path)).map_err(|why| {
        let description = format!("`{expires_path}` in the answer {why}: expected a number of seconds (RFC 6749 §5.1)");
        TokenError::unusable(status, "invalid_expires_in", description, false)
    })?;
    let refresh = json.get("refresh_token").and_then(Value::as_str).filter(|s| !s.is_empty());
    let id_token = json.get("id_token").and_then(Value::as_str).filter(|s| !s.is_empty());
    let issued: Vec<&str> = [Some(access), refresh, id_token].into_iter().flatten().collect();
    let extra = super::metadata::metadata(&json, &[path.as_str()], &issued);
    Ok(TokenSet {
        access_token: SecretString::from(access.to_owned()),
        refresh_token: refresh.map(|s| SecretString::from(s.to_owned())),
        token_type: json.get("token_type").and_then(Value::as_str).map(str::to_owned),
        expires_at,
        scope: json.get("scope").and_then(Value::as_str).map(str::to_owned),
        extra,
        obtained_at: now,
    })
}

/// Token and profile answers are read up to this many bytes (revocation answers are not read).
pub const MAX_ANSWER: usize = 1 << 20;
/// [`MAX_ANSWER`] in words, for messages.
pub const MAX_ANSWER_TEXT: &str = "1 MiB";

/// Why an answer's body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerError {
    /// Longer than the bound (by its `Content-Length`, or once that much had arrived).
    TooLarge,
    /// The connection failed or timed out before the end.
    Cut { timed_out: bool },
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

/// RFC 6749 Appendix A.12: an access token is `1*VSCHAR` (%x20-7E), which is also what a
/// header can carry.
fn header_safe(token: &str) -> bool {
    token.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Tokens are never taken to live longer than this (ten years), whatever the provider says.
pub const MAX_LIFETIME_S: f64 = 10.0 * 365.0 * 24.0 * 3600.0;

/// When a token given at `now` (Unix ms) expires, from its `expires_in`: absent, `null` or `0`
/// means no lifetime was given; a number or numeric string of seconds is clamped to
/// [`MAX_LIFETIME_S`]; anything else (negative, not finite, not a number) is refused, with
/// the reason.
pub fn expires_at(now: i64, expires_in: Option<&Value>) -> Result<Option<i64>, &'static str> {
    let secs = match expires_in {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().ok_or("is not a number")?,
        Some(Value::String(s)) => s.trim().parse::<f64>().map_err(|_| "is not a number")?,
        Some(_) => return Err("is not a number"),
    };
    if !secs.is_finite() {
        return Err("is not a finite number");
    }
    if secs < 0.0 {
        return Err("is negative");
    }
    if secs == 0.0 {
        return Ok(None);
    }
    // Clamped, so the product fits an i64 exactly; a sub-millisecond lifetime is 1 ms.
    let ms = (secs.min(MAX_LIFETIME_S) * 1000.0).ceil() as i64;
    now.checked_add(ms).map(Some).ok_or("is too large")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_refusal_is_never_retried_and_a_failure_says_when_to_retry() {
        let mut e = TokenError::unusable(503, "temporarily_unavailable", "down".into(), false);
        assert_eq!(e.to_call_error("c").retry(), crate::Retry::Later);
        e.retry_after = Some(Duration::from_secs(7));
        assert_eq!(e.to_call_error("c").retry(), crate::Retry::After(Duration::from_secs(7)));
        assert!(!e.to_call_error("c").is_refused_credential());
        e.terminal = true;
        let refused = e.to_call_error("c");
        assert_eq!((refused.origin(), refused.retry()), (crate::Origin::Provider, crate::Retry::Never));
        assert!(refused.is_refused_credential());
    }

    fn request(body: TokenRequestBody, basic: Option<(&str, &str)>, secrets: &[&str]) -> TokenRequest {
        TokenRequest {
            url: "https://x.example/token".into(),
            headers: Vec::new(),
            basic_auth: basic.map(|(id, s)| (id.to_owned(), SecretString::from(s.to_owned()))),
            body,
            shape: TokenResponseShape::default(),
            is_refresh: false,
            secrets: secrets.iter().map(|s| SecretString::from((*s).to_owned())).collect(),
        }
    }

    fn form(pairs: &[(&str, &str)]) -> TokenRequestBody {
        TokenRequestBody::Form(
            pairs.iter().map(|(k, v)| ((*k).to_owned(), SecretString::from((*v).to_owned()))).collect(),
        )
    }

    #[test]
    fn a_providers_echo_of_a_sent_secret_is_scrubbed() {
        let req = request(
            form(&[("grant_type", "password"), ("username", "ada"), ("password", "hunter2 pass&word")]),
            Some(("app", "client-secret-1")),
            &[],
        );
        let s = req.scrubber();
        let out = s.text("bad password hunter2+pass%26word for client client-secret-1 (user ada)");
        assert_eq!(out.as_deref(), Some("bad password [REDACTED] for client [REDACTED] (user ada)"));
        assert!(!format!("{req:?}").contains("hunter2"));
    }

    #[test]
    fn every_form_value_but_the_public_ones_is_a_secret() {
        // A field Latchkey does not know is scrubbed; the grant type and the client id are not.
        let req = request(
            form(&[("grant_type", "urn:x"), ("client_id", "my-app"), ("subject_token", "subj-tok-1")]),
            None,
            &[],
        );
        assert_eq!(req.scrubber().text("my-app urn:x subj-tok-1").as_deref(), Some("my-app urn:x [REDACTED]"));
    }

    #[test]
    fn a_custom_requests_listed_secrets_are_scrubbed_json_escaped_too() {
        let req = request(
            TokenRequestBody::Json(SecretString::from(r#"{"k":"a\"b\\c-key"}"#.to_owned())),
            None,
            &["a\"b\\c-key", "hdr-secret"],
        );
        let out = req.scrubber().text(r#"body {"k":"a\"b\\c-key"} header X-Key: hdr-secret"#);
        assert_eq!(out.as_deref(), Some("body {'k':'[REDACTED]'} header X-Key: [REDACTED]"));
    }

    #[test]
    fn expires_in_is_a_number_of_seconds_clamped_to_ten_years() {
        let now = 1_700_000_000_000;
        let ten_years = now + (MAX_LIFETIME_S as i64) * 1000;
        for (v, expected) in [
            (json!(3600), Ok(Some(now + 3_600_000))),
            (json!("3600"), Ok(Some(now + 3_600_000))),
            (json!(" 60 "), Ok(Some(now + 60_000))),
            (json!(1.5), Ok(Some(now + 1500))),
            (json!(1e300), Ok(Some(ten_years))),
            (json!(f64::MAX), Ok(Some(ten_years))),
            (json!(u64::MAX), Ok(Some(ten_years))),
            (json!(0), Ok(None)),
            (Value::Null, Ok(None)),
            (json!(-5), Err("is negative")),
            (json!("-1e9"), Err("is negative")),
            (json!("inf"), Err("is not a finite number")),
            (json!("-infinity"), Err("is not a finite number")),
            (json!("NaN"), Err("is not a finite number")),
            (json!("soon"), Err("is not a number")),
            (json!(""), Err("is not a number")),
            (json!(true), Err("is not a number")),
            (json!({"s": 1}), Err("is not a number")),
        ] {
            assert_eq!(expires_at(now, Some(&v)), expected, "{v}");
        }
        assert_eq!(expires_at(now, None), Ok(None));
        assert_eq!(expires_at(i64::MAX - 10, Some(&json!(60))), Err("is too large"));
    }

    #[test]
    fn an_access_token_must_be_visible_ascii() {
        assert!(header_safe("ya29.a0-_~+/= x"));
        for bad in ["a\r\nb", "a\nb", "a\u{0}b", "a\u{7f}b", "a\tb", "tök"] {
            assert!(!header_safe(bad), "{bad:?}");
        }
    }
}
