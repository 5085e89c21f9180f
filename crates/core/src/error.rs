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
}

impl ErrorCode {
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
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with its code and a message for the caller. Constructed only from names and
/// classifications, never from a secret or from an upstream's echo of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub code: ErrorCode,
    pub message: String,
    /// Extra fields for the error body (a provider's `error`, a `reconnect_url`, ...).
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl CallError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: serde_json::Map::new() }
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
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CallError {}

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
