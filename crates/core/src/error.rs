//! Errors of the call pipeline, classified by code (which decides the HTTP status at the edge).
//! Messages say what is wrong and what to do next, and never contain a secret value.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    NotFound,
    /// The route exists, but not with this method (the response's `Allow` lists those it takes).
    MethodNotAllowed,
    /// The request body is larger than the route accepts.
    PayloadTooLarge,
    /// The request body's `Content-Type` is not the one the route reads.
    UnsupportedMediaType,
    InvalidParams,
    ConfigInvalid,
    SecretMissing,
    ReauthorizationRequired,
    TokenRequestFailed,
    UpstreamUnreachable,
    UpstreamTimeout,
    RateLimited,
    Unavailable,
    Internal,
    /// A connector written through the admin API names a destination its egress rules forbid
    /// (SECURITY S16): refused when written, naming the field.
    EgressRefused,
    /// An `Idempotency-Key` already used by this caller with another request.
    IdempotencyKeyReused,
    /// An `Idempotency-Key` whose first request is still being answered.
    IdempotencyKeyInUse,
    /// The upstream refused a user's values when the connector's `verify` call was made with
    /// them: nothing was saved.
    CredentialsRefused,
}

impl ErrorCode {
    /// Every code, in the order of the enum (the OpenAPI document lists them all).
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidParams,
        ErrorCode::ConfigInvalid,
        ErrorCode::SecretMissing,
        ErrorCode::ReauthorizationRequired,
        ErrorCode::TokenRequestFailed,
        ErrorCode::UpstreamUnreachable,
        ErrorCode::UpstreamTimeout,
        ErrorCode::RateLimited,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::EgressRefused,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::IdempotencyKeyInUse,
        ErrorCode::CredentialsRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::ConfigInvalid => "config_invalid",
            ErrorCode::SecretMissing => "secret_missing",
            ErrorCode::ReauthorizationRequired => "reauthorization_required",
            ErrorCode::TokenRequestFailed => "token_request_failed",
            ErrorCode::UpstreamUnreachable => "upstream_unreachable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::EgressRefused => "egress_refused",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::IdempotencyKeyInUse => "idempotency_key_in_use",
            ErrorCode::CredentialsRefused => "credentials_refused",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Unauthenticated => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::InvalidParams | ErrorCode::ConfigInvalid => 400,
            ErrorCode::SecretMissing => 424,
            ErrorCode::ReauthorizationRequired => 409,
            ErrorCode::TokenRequestFailed | ErrorCode::UpstreamUnreachable => 502,
            ErrorCode::UpstreamTimeout => 504,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
            ErrorCode::EgressRefused | ErrorCode::IdempotencyKeyReused | ErrorCode::CredentialsRefused => 422,
            ErrorCode::IdempotencyKeyInUse => 409,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an error came from: the caller's request, the configuration, the upstream API, the
/// credential's provider (token endpoint), the store, or Latchkey itself. Code that decides
/// (reauthorize? count as an upstream failure?) matches on this, never on message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Caller,
    Config,
    Upstream,
    Provider,
    Store,
    Internal,
}

/// Whether the same request can succeed if tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Not without a change: a refused credential, a bad parameter, a missing secret.
    Never,
    /// Later, after the cause (an outage, a timeout) has passed.
    Later,
    /// After this long, as the other side said (`Retry-After`).
    After(std::time::Duration),
}

impl ErrorCode {
    /// The origin an error of this code has unless it says otherwise.
    pub fn origin(self) -> Origin {
        match self {
            ErrorCode::Unauthenticated
            | ErrorCode::Forbidden
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::InvalidParams
            | ErrorCode::RateLimited
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::IdempotencyKeyInUse
            | ErrorCode::CredentialsRefused => Origin::Caller,
            ErrorCode::ConfigInvalid | ErrorCode::SecretMissing | ErrorCode::EgressRefused => Origin::Config,
            ErrorCode::ReauthorizationRequired | ErrorCode::TokenRequestFailed => Origin::Provider,
            ErrorCode::UpstreamUnreachable | ErrorCode::UpstreamTimeout => Origin::Upstream,
            ErrorCode::Unavailable => Origin::Store,
            ErrorCode::Internal => Origin::Internal,
        }
    }

    /// The retry hint an error of this code has unless it says otherwise.
    pub fn retry(self) -> Retry {
        match self {
            ErrorCode::RateLimited
            | ErrorCode::TokenRequestFailed
            | ErrorCode::UpstreamUnreachable
            | ErrorCode::UpstreamTimeout
            | ErrorCode::Unavailable
            | ErrorCode::IdempotencyKeyInUse
            | ErrorCode::Internal => Retry::Later,
            _ => Retry::Never,
        }
    }
}

/// The cause of an error, kept for logs and `Error::source` (never shown to the caller).
type Cause = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// The error of core: a code (which decides the HTTP status at the edge), a message for the
/// caller, public details, where it came from, whether retrying helps, and its cause.
/// Constructed only from names and classifications, never from a secret or from an upstream's
/// echo of one; the cause is never rendered into a response.
#[derive(Debug, Clone)]
pub struct CallError {
    pub code: ErrorCode,
    pub message: String,
    /// Extra fields for the error body (a provider's `error`, a `reconnect_url`, ...). Shown,
    /// never read back to decide anything.
    pub details: serde_json::Map<String, serde_json::Value>,
    origin: Origin,
    retry: Retry,
    source: Option<Cause>,
}

impl PartialEq for CallError {
    /// Equal in what the caller sees and what decisions read; the cause is not compared.
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code
            && self.message == other.message
            && self.details == other.details
            && self.origin == other.origin
            && self.retry == other.retry
    }
}

impl Eq for CallError {}

impl CallError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: serde_json::Map::new(),
            origin: code.origin(),
            retry: code.retry(),
            source: None,
        }
    }
    pub fn invalid_params(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidParams, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// The same error, coming from `origin`.
    #[must_use]
    pub fn from_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// The same error, with this retry hint.
    #[must_use]
    pub fn with_retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// The same error, caused by `cause` (kept for `Error::source`, never shown).
    #[must_use]
    pub fn caused_by(mut self, cause: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(std::sync::Arc::new(cause));
        self
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// The credential's provider refused it, and asking again will not help: the credential
    /// must change (a user reconnects, an operator fixes a secret).
    pub fn is_refused_credential(&self) -> bool {
        self.code == ErrorCode::ReauthorizationRequired
            || (self.origin == Origin::Provider && self.retry == Retry::Never)
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CallError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The innermost source of an error (the part that says what happened, such as "Connection
/// refused"), or `None` when it has none. Callers never show the outer error of a reqwest
/// failure instead: its text carries the URL, which may carry a query key.
pub fn innermost_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut inner = e.source()?;
    while let Some(next) = inner.source() {
        inner = next;
    }
    Some(inner.to_string())
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// `ALL` holds every code once: the OpenAPI document's list of codes is complete.
    #[test]
    fn all_lists_every_code_once() {
        let names: std::collections::BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        // A new variant fails to compile here until it is counted (and added to `ALL`).
        let counted = |c: ErrorCode| match c {
            ErrorCode::Unauthenticated
            | ErrorCode::Forbidden
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::PayloadTooLarge
            | ErrorCode::UnsupportedMediaType
            | ErrorCode::InvalidParams
            | ErrorCode::ConfigInvalid
            | ErrorCode::SecretMissing
            | ErrorCode::ReauthorizationRequired
            | ErrorCode::TokenRequestFailed
            | ErrorCode::UpstreamUnreachable
            | ErrorCode::UpstreamTimeout
            | ErrorCode::RateLimited
            | ErrorCode::Unavailable
            | ErrorCode::Internal
            | ErrorCode::EgressRefused
            | ErrorCode::IdempotencyKeyReused
            | ErrorCode::IdempotencyKeyInUse
            | ErrorCode::CredentialsRefused => 20,
        };
        assert_eq!(counted(ErrorCode::Internal), ErrorCode::ALL.len());
    }
    use crate::store::StoreError;

    #[test]
    fn a_code_gives_its_origin_and_retry_hint() {
        let e = CallError::invalid_params("x");
        assert_eq!((e.origin(), e.retry()), (Origin::Caller, Retry::Never));
        let e = CallError::new(ErrorCode::UpstreamTimeout, "x");
        assert_eq!((e.origin(), e.retry()), (Origin::Upstream, Retry::Later));
        let e = CallError::new(ErrorCode::SecretMissing, "x");
        assert_eq!((e.origin(), e.retry()), (Origin::Config, Retry::Never));
    }

    #[test]
    fn only_a_provider_refusal_or_reauthorization_is_a_refused_credential() {
        let transient = CallError::new(ErrorCode::TokenRequestFailed, "x");
        assert!(!transient.is_refused_credential());
        assert!(transient.clone().with_retry(Retry::Never).is_refused_credential());
        assert!(CallError::new(ErrorCode::ReauthorizationRequired, "x").is_refused_credential());
        // Details are shown, never read: a `terminal` key decides nothing.
        let mut shown = CallError::new(ErrorCode::UpstreamUnreachable, "x");
        shown.details.insert("terminal".into(), serde_json::Value::Bool(true));
        assert!(!shown.is_refused_credential());
        assert!(!CallError::invalid_params("x").is_refused_credential());
    }

    #[test]
    fn the_cause_is_kept_as_the_source_and_not_compared() {
        let store = StoreError::Unavailable { op: "get_token", reason: "connection refused".into() };
        let e = CallError::from(store);
        assert_eq!(e.code, ErrorCode::Unavailable);
        let source = e.source().map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("store unavailable during get_token: connection refused"));
        assert_eq!(e, CallError::new(ErrorCode::Unavailable, e.message.clone()));
    }

    #[test]
    fn corrupt_stored_data_is_internal_from_the_store_and_not_retried() {
        let e = CallError::from(StoreError::Corrupt { op: "list_tokens", reason: "state `x`".into() });
        assert_eq!((e.code, e.origin(), e.retry()), (ErrorCode::Internal, Origin::Store, Retry::Never));
        assert!(e.message.contains("list_tokens"), "{}", e.message);
        assert!(e.source().is_some());
    }
}
