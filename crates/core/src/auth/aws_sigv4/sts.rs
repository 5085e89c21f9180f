//! `role_arn`: STS `AssumeRole` as a grant of the token lifecycle. The request is a form POST
//! to `sts_url` signed with SigV4 by the connector's own keys; the answer's temporary
//! credentials become a token set (the session token as its access token, the secret key as
//! its `token_secret`, the key id in `extra`, `Expiration` as `expires_at`), so they are sealed,
//! refreshed before expiry and refreshed one at a time like OAuth tokens. Calls then sign with
//! them ([`sign_with_token`]).
//!
//! STS answers XML; a refusal (`<Error><Code>AccessDenied</Code>…`, any 4xx) is terminal, a
//! 5xx or throttling passing, and of the provider's words only its `Code` and `Message` are
//! kept, scrubbed as an OAuth provider's `error` and `error_description` are (`token::scrub`).

use std::fmt;
use std::time::Duration;

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderValue, Method};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{AwsSigner, Keys};
use crate::auth::sign::{Unsigned, sensitive_header};
use crate::secret::{AccessToken, TokenSecret};
use crate::token::{
    AnswerFormat, TokenError, TokenErrorKind, TokenRequest, TokenRequestBody, TokenResponseShape, TokenSet, WireBody,
};
use crate::{CallError, ErrorCode};

/// The lifetime asked for (STS's default, which every role allows).
pub const DURATION_S: u32 = 3600;
/// Where the access key id of temporary credentials is kept in the token set's `extra`.
const KEY_ID: &str = "access_key_id";

/// STS `AssumeRole` with the connector's keys.
pub struct AssumeRole {
    pub sts_url: String,
    role_arn: String,
    session_name: String,
    /// Signs for the STS endpoint's region, service `sts`.
    signer: AwsSigner,
    access_key_id: String,
    secret_access_key: SecretString,
    session_token: Option<SecretString>,
}

impl fmt::Debug for AssumeRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AssumeRole").field("role_arn", &self.role_arn).finish_non_exhaustive()
    }
}

/// The STS endpoint for `region` (AWS recommends the regional ones).
pub fn default_url(region: &str) -> String {
    format!("https://sts.{region}.amazonaws.com/")
}

/// The region an STS endpoint signs for: `us-east-1` for the global `sts.amazonaws.com`, the
/// one named in `sts.<region>.amazonaws.com`, else the connector's.
fn signing_region(sts_url: &str, region: &str) -> String {
    let host = url::Url::parse(sts_url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    if host == "sts.amazonaws.com" {
        return "us-east-1".into();
    }
    match host.strip_prefix("sts.").and_then(|h| h.split_once('.')) {
        Some((r, "amazonaws.com" | "amazonaws.com.cn")) if r.contains('-') && !r.contains("fips") => r.to_owned(),
        _ => region.to_owned(),
    }
}

impl AssumeRole {
    pub fn new(
        connector: &str,
        role_arn: &str,
        sts_url: &str,
        region: &str,
        (access_key_id, secret_access_key, session_token): (&str, &SecretString, Option<&SecretString>),
    ) -> AssumeRole {
        // [\w+=,.@-]{2,64}; a connector's name is letters, digits, `_` and `-`.
        let mut session_name = format!("latchkey-{connector}");
        session_name.truncate(64);
        AssumeRole {
            sts_url: sts_url.to_owned(),
            role_arn: role_arn.to_owned(),
            session_name,
            signer: AwsSigner::new(&signing_region(sts_url, region), "sts"),
            access_key_id: access_key_id.to_owned(),
            secret_access_key: secret_access_key.clone(),
            session_token: session_token.cloned(),
        }
    }

    /// The signed `AssumeRole` request at `now_ms`.
    pub fn request(&self, now_ms: i64) -> Result<TokenRequest, CallError> {
        let pair = |k: &str, v: &str| (k.to_owned(), SecretString::from(v.to_owned()));
        let form = vec![
            pair("Action", "AssumeRole"),
            pair("Version", "2011-06-15"),
            pair("RoleArn", &self.role_arn),
            pair("RoleSessionName", &self.session_name),
            pair("DurationSeconds", &DURATION_S.to_string()),
        ];
        // Signed over the bytes `token::build` sends, with the `Content-Type` it sets.
        let body = WireBody::form(&form);
        let mut url = url::Url::parse(&self.sts_url)
            .map_err(|_| CallError::new(ErrorCode::ConfigInvalid, "auth.sts_url is not a URL"))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        let token = match &self.session_token {
            Some(t) => Some(sensitive_header(t.expose_secret(), "the AWS session token")?),
            None => None,
        };
        let keys = Keys {
            access_key_id: &self.access_key_id,
            secret_access_key: self.secret_access_key.expose_secret(),
            session_token: token.as_ref(),
        };
        self.signer.sign_with(
            &keys,
            &mut Unsigned {
                method: &Method::POST,
                url: &mut url,
                headers: &mut headers,
                body: Some(body.as_bytes()),
                clock: &At(now_ms),
            },
        )?;
        headers.remove(CONTENT_TYPE);
        Ok(TokenRequest {
            url: url.to_string(),
            headers: headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            basic_auth: None,
            body: TokenRequestBody::Form(form),
            shape: TokenResponseShape { format: AnswerFormat::AwsSts, ..TokenResponseShape::default() },
            is_refresh: false,
            secrets: self.session_token.iter().cloned().collect(),
        })
    }
}

/// The time a request is signed at: the lifecycle's `now`.
struct At(i64);

impl crate::clock::Clock for At {
    fn now_ms(&self) -> i64 {
        self.0
    }
    fn sleep(&self, _: Duration) -> crate::clock::Sleep {
        Box::pin(std::future::pending())
    }
}

/// AWS's error codes that mean "not now" rather than "no" (they come with a 400).
const PASSING: &[&str] = &["Throttling", "ThrottlingException", "RequestLimitExceeded", "IDPCommunicationError"];

/// The temporary credentials in an STS answer of `status` (read whole, `bytes`), or why there
/// are none, by kind.
pub(crate) fn parse(
    req: &TokenRequest,
    status: u16,
    bytes: &[u8],
    retry_after: Option<Duration>,
    now: i64,
) -> Result<TokenSet, TokenError> {
    let text = std::str::from_utf8(bytes).ok();
    let doc = text.and_then(|t| roxmltree::Document::parse(t).ok());
    let element = |name: &str| {
        doc.as_ref().and_then(|d| {
            d.descendants()
                .find(|n| n.is_element() && n.tag_name().name() == name)
                .and_then(|n| n.text())
                .map(str::trim)
        })
    };
    if !(200..300).contains(&status) {
        let code = element("Code");
        let said = req.scrubber().provider_error(&serde_json::json!({
            "error": code,
            "error_description": element("Message"),
        }));
        let mut e = TokenError::answered(status, said, retry_after);
        if code.is_some_and(|c| PASSING.contains(&c)) {
            e.kind = TokenErrorKind::Failed { retry_after };
        }
        return Err(e);
    }
    let unusable = |error: &str, description: String| Err(TokenError::unusable(status, error, description));
    let Some(doc) = &doc else {
        return unusable("no_token", "the STS answer is not XML: check sts_url".into());
    };
    let Some(credentials) = doc.descendants().find(|n| n.is_element() && n.tag_name().name() == "Credentials") else {
        return unusable("no_token", "the STS answer has no `Credentials`: check sts_url".into());
    };
    let field = |name: &str| {
        credentials
            .children()
            .find(|n| n.is_element() && n.tag_name().name() == name)
            .and_then(|n| n.text())
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let (Some(key_id), Some(secret), Some(token), Some(expiration)) =
        (field("AccessKeyId"), field("SecretAccessKey"), field("SessionToken"), field("Expiration"))
    else {
        return unusable(
            "no_token",
            "the STS answer lacks one of `AccessKeyId`, `SecretAccessKey`, `SessionToken`, `Expiration`".into(),
        );
    };
    let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    if !visible(key_id) || !visible(token) || !visible(secret) {
        return unusable(
            "invalid_access_token",
            "the STS credentials have characters no HTTP header can carry: the answer is broken".into(),
        );
    }
    let Some(expires_at) = time::OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok())
    else {
        return unusable("invalid_expiration", "the STS `Expiration` is not an RFC 3339 time".into());
    };
    let mut extra = serde_json::Map::new();
    extra.insert(KEY_ID.into(), Value::String(key_id.to_owned()));
    Ok(TokenSet {
        access_token: AccessToken::from(token.to_owned()),
        refresh_token: None,
        token_secret: Some(TokenSecret::from(secret.to_owned())),
        token_type: Some("aws_sts".into()),
        expires_at: Some(expires_at.min(now.saturating_add(crate::token::MAX_LIFETIME_S as i64 * 1000))),
        scope: None,
        extra,
        obtained_at: now,
        grant: None,
    })
}

/// Signs a call with temporary credentials held as a token set (out of line: the Bearer path
/// does not carry it).
#[inline(never)]
pub fn sign_with_token(signer: &AwsSigner, set: &TokenSet, request: &mut Unsigned<'_>) -> Result<(), CallError> {
    let incomplete = || {
        CallError::internal("the AWS temporary credentials held are incomplete: they are refreshed at the next call")
    };
    let key_id = set.extra.get(KEY_ID).and_then(Value::as_str).ok_or_else(incomplete)?;
    let secret = set.token_secret.as_ref().ok_or_else(incomplete)?;
    let token = sensitive_header(set.access_token.expose_secret(), "the AWS session token")?;
    let keys = Keys { access_key_id: key_id, secret_access_key: secret.expose_secret(), session_token: Some(&token) };
    signer.sign_with(&keys, request)
}

#[cfg(test)]
mod tests;
