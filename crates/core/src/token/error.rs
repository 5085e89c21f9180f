//! Why a token request failed, by kind: what happened decides what the lifecycle does next
//! (erase and reauthorize, retry, or count a possibly rotated refresh token), never a
//! combination of flags.

use std::time::Duration;

use serde_json::Value;

use super::scrub::ProviderError;
use crate::{CallError, ErrorCode, Retry};

/// What happened to a token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenErrorKind {
    /// The provider answered and refused (RFC 6749 §5.2 `invalid_grant`, `invalid_client`, any
    /// 4xx but 408 and 429): the same request will not work again; the credential or the
    /// settings must change. Terminal.
    Refused,
    /// No request could be made from the credential (a key that cannot sign, a browser
    /// connection without a refresh token). Terminal like [`Self::Refused`], though the
    /// provider saw nothing.
    Unsendable,
    /// The provider answered without a usable token: it is down or busy (5xx, 408, 429), or
    /// its answer is broken (no token, a bad `expires_in`). Trying later may work, after
    /// `retry_after` when it said so (`Retry-After`).
    Failed { retry_after: Option<Duration> },
    /// The request never reached the provider (connection refused, name not resolved, no
    /// connection within the timeout): nothing happened there.
    Unreachable { timed_out: bool },
    /// The request may have reached the provider and its answer was lost (no answer in time
    /// or a connection cut after the request went out, or a success too large to read): a
    /// refresh token may have been rotated without our knowing (SECURITY, "an ambiguous
    /// timeout").
    Lost { timed_out: bool },
}

/// Why a token request failed. Holds only what RFC 6749 §5.2 defines of the provider's answer
/// (`error`, `error_description`, `error_uri`), scrubbed of every secret this request sent
/// (`token::scrub`), never the response body; or Latchkey's own words when there was no
/// usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub kind: TokenErrorKind,
    /// The answer's HTTP status, when one came.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub description: Option<String>,
    /// The provider's `error_uri`.
    pub uri: Option<String>,
}

impl TokenError {
    fn new(kind: TokenErrorKind, status: Option<u16>, error: Option<&str>, description: String) -> Self {
        TokenError { kind, status, error: error.map(str::to_owned), description: Some(description), uri: None }
    }

    /// A provider's error answer (`status` not 2xx): refused, unless the status says it is
    /// passing (5xx, 408 Request Timeout, 429 Too Many Requests).
    pub(crate) fn answered(status: u16, said: ProviderError, retry_after: Option<Duration>) -> Self {
        let ProviderError { error, description, uri } = said;
        TokenError { kind: Self::by_status(status, retry_after), status: Some(status), error, description, uri }
    }

    /// [`TokenErrorKind::Refused`] or [`TokenErrorKind::Failed`], by an error status.
    pub(crate) fn by_status(status: u16, retry_after: Option<Duration>) -> TokenErrorKind {
        if status == 429 || status == 408 || status >= 500 {
            TokenErrorKind::Failed { retry_after }
        } else {
            TokenErrorKind::Refused
        }
    }

    /// An answer that came but cannot be used (Latchkey's words, never the provider's).
    pub(crate) fn unusable(status: u16, error: &str, description: String) -> Self {
        Self::new(TokenErrorKind::Failed { retry_after: None }, Some(status), Some(error), description)
    }

    /// An answer of `status` whose body was not read (too large), of the given kind.
    pub(crate) fn unread(kind: TokenErrorKind, status: u16, description: String) -> Self {
        Self::new(kind, Some(status), Some("answer_too_large"), description)
    }

    pub(crate) fn unreachable(timed_out: bool, description: String) -> Self {
        Self::new(TokenErrorKind::Unreachable { timed_out }, None, None, description)
    }

    pub(crate) fn lost(timed_out: bool, description: String) -> Self {
        Self::new(TokenErrorKind::Lost { timed_out }, None, None, description)
    }

    /// The grant could not make its request (`Grant::request`'s error): terminal, with the
    /// error's code and message.
    pub fn unsendable(e: CallError) -> Self {
        Self::new(TokenErrorKind::Unsendable, None, Some(e.code.as_str()), e.message)
    }

    /// The provider refused the credential, or no request can be made from it: retrying the
    /// same request will not help.
    pub fn is_terminal(&self) -> bool {
        matches!(self.kind, TokenErrorKind::Refused | TokenErrorKind::Unsendable)
    }

    /// The request may have reached the provider and its answer was lost.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self.kind, TokenErrorKind::Lost { .. })
    }

    /// No answer came within the timeout.
    pub fn timed_out(&self) -> bool {
        matches!(self.kind, TokenErrorKind::Unreachable { timed_out: true } | TokenErrorKind::Lost { timed_out: true })
    }

    /// How long the provider asked us to wait (`Retry-After` on a passing failure).
    pub fn retry_after(&self) -> Option<Duration> {
        match self.kind {
            TokenErrorKind::Failed { retry_after } => retry_after,
            _ => None,
        }
    }

    /// A one-line summary: `invalid_grant (400): refresh token expired`.
    pub fn summary(&self) -> String {
        let mut s = self.error.clone().unwrap_or_else(|| {
            match self.kind {
                _ if self.timed_out() => "timeout",
                TokenErrorKind::Unreachable { .. } | TokenErrorKind::Lost { .. } => "unreachable",
                _ => "error",
            }
            .into()
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
        let terminal = self.is_terminal();
        let what = if terminal {
            "the token endpoint refused the credential"
        } else {
            "the token endpoint failed (Latchkey will retry with backoff)"
        };
        let mut e = CallError::new(
            ErrorCode::TokenRequestFailed,
            format!(
                "connector `{connector}`: {what}: {}{}",
                self.summary(),
                if terminal { "; check its client id, secrets and grant settings" } else { "" }
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
        if terminal {
            // Shown to the caller; decisions read the retry hint below, never this key.
            e.details.insert("terminal".into(), Value::Bool(true));
        }
        e.with_retry(match (terminal, self.retry_after()) {
            (true, _) => Retry::Never,
            (false, Some(after)) => Retry::After(after),
            (false, None) => Retry::Later,
        })
        .caused_by(self.clone())
    }
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl std::error::Error for TokenError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Origin;

    fn said(error: &str) -> ProviderError {
        ProviderError { error: Some(error.into()), description: None, uri: None }
    }

    #[test]
    fn a_refusal_is_never_retried_and_a_failure_says_when_to_retry() {
        let e = TokenError::unusable(503, "temporarily_unavailable", "down".into());
        assert_eq!(e.to_call_error("c").retry(), Retry::Later);
        let seven = Some(Duration::from_secs(7));
        let e = TokenError::answered(503, said("temporarily_unavailable"), seven);
        assert_eq!(e.to_call_error("c").retry(), Retry::After(Duration::from_secs(7)));
        assert!(!e.to_call_error("c").is_refused_credential());
        let refused = TokenError::answered(400, said("invalid_grant"), seven).to_call_error("c");
        assert_eq!((refused.origin(), refused.retry()), (Origin::Provider, Retry::Never));
        assert!(refused.is_refused_credential());
        assert_eq!(refused.details.get("terminal"), Some(&Value::Bool(true)));
    }

    #[test]
    fn an_error_status_is_refused_unless_it_is_passing() {
        let after = Some(Duration::from_secs(2));
        for status in [400, 401, 403, 404, 405, 409, 410, 413, 422, 499] {
            assert_eq!(TokenError::by_status(status, after), TokenErrorKind::Refused, "{status}");
        }
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(TokenError::by_status(status, after), TokenErrorKind::Failed { retry_after: after }, "{status}");
        }
    }

    #[test]
    fn each_kind_answers_the_questions_the_lifecycle_asks() {
        let d = || "d".to_owned();
        let unsendable = TokenError::unsendable(CallError::new(ErrorCode::SecretMissing, "no key"));
        let cases = [
            // (error, terminal, ambiguous, timed out)
            (TokenError::answered(400, said("invalid_grant"), None), true, false, false),
            (unsendable.clone(), true, false, false),
            (TokenError::unusable(200, "no_token", d()), false, false, false),
            (TokenError::unreachable(false, d()), false, false, false),
            (TokenError::unreachable(true, d()), false, false, true),
            (TokenError::lost(false, d()), false, true, false),
            (TokenError::lost(true, d()), false, true, true),
        ];
        for (e, terminal, ambiguous, timed_out) in cases {
            assert_eq!((e.is_terminal(), e.is_ambiguous(), e.timed_out()), (terminal, ambiguous, timed_out), "{e:?}");
            assert_eq!(e.retry_after(), None);
            assert_eq!(e.to_call_error("c").is_refused_credential(), terminal, "{e:?}");
        }
        assert_eq!(unsendable.summary(), "secret_missing: no key");
    }

    #[test]
    fn the_summary_names_what_happened_when_the_provider_said_nothing() {
        assert_eq!(
            TokenError::unreachable(true, "no answer within 5 ms".into()).summary(),
            "timeout: no answer within 5 ms"
        );
        assert_eq!(
            TokenError::lost(false, "the answer was cut off".into()).to_string(),
            "unreachable: the answer was cut off"
        );
        let bare = TokenError::answered(502, ProviderError::default(), None);
        assert_eq!(bare.summary(), "error (502)");
        let full = TokenError::answered(
            400,
            ProviderError {
                error: Some("invalid_grant".into()),
                description: Some("expired".into()),
                uri: Some("https://x.example/e".into()),
            },
            None,
        );
        assert_eq!(full.summary(), "invalid_grant (400): expired");
        let e = full.to_call_error("crm");
        assert_eq!(
            e.message,
            "connector `crm`: the token endpoint refused the credential: invalid_grant (400): expired; check its client \
             id, secrets and grant settings"
        );
        assert_eq!(e.details.get("provider_error_uri"), Some(&Value::String("https://x.example/e".into())));
        assert_eq!(e.details.get("provider_status"), Some(&Value::from(400)));
    }

    #[test]
    fn it_is_an_error_with_its_summary_as_text_and_the_cause_of_the_callers_error() {
        let e = TokenError::unreachable(false, "refused".into());
        let boxed: Box<dyn std::error::Error> = Box::new(e.clone());
        assert_eq!(boxed.to_string(), "unreachable: refused");
        let call = e.to_call_error("c");
        let cause = std::error::Error::source(&call).and_then(|c| c.downcast_ref::<TokenError>());
        assert_eq!(cause, Some(&e));
    }
}
