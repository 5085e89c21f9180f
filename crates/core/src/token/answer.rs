//! Reading a token endpoint's answer, a pure function of what came back (status, headers,
//! the body as read): the token set, or why there is none, by kind.

use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;

use super::TokenSet;
use super::endpoint::TokenRequest;
use super::error::{TokenError, TokenErrorKind};
use crate::secret::{AccessToken, RefreshToken};

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

/// A token endpoint's answer as received: its status, its headers, and its body as read
/// (at most [`MAX_ANSWER`]). `Debug` never shows the body (it carries tokens).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Result<Vec<u8>, AnswerError>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer").field("status", &self.status).finish_non_exhaustive()
    }
}

fn lookup<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |v, part| v.get(part))
}

/// The token set in `answer` to `req` at `now` (Unix ms), or why there is none: a provider's
/// error status is [`TokenErrorKind::Refused`] or, when passing (5xx, 408, 429),
/// [`TokenErrorKind::Failed`] with its `Retry-After`; a success without a usable token is
/// `Failed`; a success too large to read, or an answer cut off, is [`TokenErrorKind::Lost`]
/// (it may hold a rotated refresh token).
pub fn parse(req: &TokenRequest, answer: &Answer, now: i64) -> Result<TokenSet, TokenError> {
    let status = answer.status;
    let success = (200..300).contains(&status);
    let retry_after = answer
        .headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let is_form = answer
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded") || v.starts_with("text/plain"));
    let bytes = match &answer.body {
        Ok(b) => b,
        Err(AnswerError::TooLarge) => {
            let description = format!(
                "the token endpoint's answer exceeded {MAX_ANSWER_TEXT}; Latchkey read no further: check the token_url"
            );
            // A success whose tokens were never read: a rotated refresh token may be in it.
            let kind = if success {
                TokenErrorKind::Lost { timed_out: false }
            } else {
                TokenError::by_status(status, retry_after)
            };
            return Err(TokenError::unread(kind, status, description));
        }
        Err(AnswerError::Cut { timed_out }) => {
            return Err(TokenError::lost(*timed_out, "the answer was cut off".into()));
        }
    };
    if req.shape.format == super::AnswerFormat::AwsSts {
        return crate::auth::aws_sigv4::sts::parse(req, status, bytes, retry_after, now);
    }
    let json: Value = serde_json::from_slice(bytes).unwrap_or_else(|_| {
        if is_form || bytes.contains(&b'=') {
            // Some providers answer `access_token=...&expires_in=...`.
            let map: serde_json::Map<String, Value> = url::form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect();
            Value::Object(map)
        } else {
            Value::Null
        }
    });
    if !success {
        return Err(TokenError::answered(status, req.scrubber().provider_error(&json), retry_after));
    }
    let path = &req.shape.token_path;
    let Some(access) = lookup(&json, path).and_then(Value::as_str).filter(|s| !s.is_empty()) else {
        return Err(TokenError::unusable(status, "no_token", format!("the answer has no `{path}`")));
    };
    if !header_safe(access) {
        let description = format!(
            "the access token at `{path}` has characters no HTTP header can carry (a line break or another control \
             character; RFC 6749 allows %x20-7E): the provider's answer is broken"
        );
        return Err(TokenError::unusable(status, "invalid_access_token", description));
    }
    let expires_at = match &req.shape.expires_at_path {
        None => {
            let expires_path = &req.shape.expires_in_path;
            expires_at(now, lookup(&json, expires_path)).map_err(|why| {
                let description =
                    format!("`{expires_path}` in the answer {why}: expected a number of seconds (RFC 6749 §5.1)");
                TokenError::unusable(status, "invalid_expires_in", description)
            })?
        }
        Some(at_path) => expires_at_absolute(now, lookup(&json, at_path)).map_err(|why| {
            let description = format!(
                "`{at_path}` in the answer {why}: expected an RFC 3339 time (`2026-12-06T11:00:00Z`) or Unix seconds"
            );
            TokenError::unusable(status, "invalid_expires_at", description)
        })?,
    };
    let refresh = json.get("refresh_token").and_then(Value::as_str).filter(|s| !s.is_empty());
    let id_token = json.get("id_token").and_then(Value::as_str).filter(|s| !s.is_empty());
    let issued: Vec<&str> = [Some(access), refresh, id_token].into_iter().flatten().collect();
    let extra = super::metadata::metadata(&json, &[path.as_str()], &issued);
    Ok(TokenSet {
        access_token: AccessToken::from(access.to_owned()),
        refresh_token: refresh.map(|s| RefreshToken::from(s.to_owned())),
        token_secret: None,
        token_type: json.get("token_type").and_then(Value::as_str).map(str::to_owned),
        expires_at,
        scope: json.get("scope").and_then(Value::as_str).map(str::to_owned),
        extra,
        obtained_at: now,
        grant: None,
    })
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

/// When a token expires, from an absolute expiry (`expires_at_name`): an RFC 3339 time, or
/// Unix seconds as a number or numeric string; absent or `null` means none was given. A time
/// already past is kept as it is (the token is then not used); one further than
/// [`MAX_LIFETIME_S`] from `now` is clamped to it, as lifetimes are.
pub fn expires_at_absolute(now: i64, at: Option<&Value>) -> Result<Option<i64>, &'static str> {
    let ms = match at {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => seconds_to_ms(n.as_f64().ok_or("is not a number")?)?,
        Some(Value::String(s)) => match s.trim().parse::<f64>() {
            Ok(secs) => seconds_to_ms(secs)?,
            Err(_) => {
                let t = time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
                    .map_err(|_| "is neither an RFC 3339 time nor a number")?;
                i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|_| "is out of range")?
            }
        },
        Some(_) => return Err("is neither an RFC 3339 time nor a number"),
    };
    let cap = now.saturating_add((MAX_LIFETIME_S * 1000.0) as i64);
    Ok(Some(ms.min(cap)))
}

/// Unix seconds to milliseconds, refusing what is not a finite, non-negative number.
fn seconds_to_ms(secs: f64) -> Result<i64, &'static str> {
    if !secs.is_finite() || secs < 0.0 {
        return Err("is not a time: a negative or non-finite number");
    }
    // Far-future values are clamped by the caller; this only keeps the cast in range.
    Ok((secs.min(4.0e15 / 1000.0) * 1000.0) as i64)
}

#[cfg(test)]
mod tests;
