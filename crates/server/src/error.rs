use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use latchkey_core::config::ConfigErrors;
use latchkey_core::{CallError, ErrorCode};

use crate::wire;

/// Every error Latchkey itself writes: a [`CallError`] rendered as `{"error": {"code",
/// "message", ...details}}` ([`wire::ErrorEnvelope`]) plus the `Latchkey-Error: <code>`
/// header, and on a 401 the `WWW-Authenticate: Bearer` challenge (RFC 6750 §3). The body also
/// names the request's id and where the code is explained (`doc_url`). The response carries
/// the [`ErrorCode`] and the error's [`latchkey_core::Origin`] as extensions, which the
/// metrics and the log line read.
/// Built only from [`CallError`]s, whose messages never carry secrets; internals are logged
/// by the engine, not shown here.
#[derive(Debug)]
pub struct ApiError {
    error: CallError,
    /// A credential was presented and refused: the challenge says `error="invalid_token"`.
    invalid_token: bool,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        CallError::new(code, message).into()
    }

    /// This error answers a credential that was presented: a 401 says `error="invalid_token"`.
    pub fn presented(mut self) -> Self {
        self.invalid_token = true;
        self
    }

    /// The error's code (what `Latchkey-Error` says).
    pub fn code(&self) -> ErrorCode {
        self.error.code
    }

    /// What the body's `message` says.
    pub fn message(&self) -> &str {
        &self.error.message
    }

    /// Adds `name` to the error's body, next to `code` and `message`.
    pub fn with_detail(mut self, name: &str, value: impl Into<serde_json::Value>) -> Self {
        self.error.details.insert(name.into(), value.into());
        self
    }

    /// `config_invalid`, with each problem under `problems`.
    pub fn config(errors: &ConfigErrors) -> Self {
        let problems: Vec<wire::ConfigProblem<'_>> = errors
            .0
            .iter()
            .map(|p| wire::ConfigProblem { field: p.field.as_deref(), message: &p.message, text: p.to_string() })
            .collect();
        let message = errors.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        Self::new(ErrorCode::ConfigInvalid, message)
            .with_detail("problems", serde_json::to_value(problems).unwrap_or_default())
    }
}

impl From<CallError> for ApiError {
    fn from(error: CallError) -> Self {
        Self { error, invalid_token: false }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.error.code;
        let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let id = crate::request::current_id();
        let body = wire::ErrorEnvelope {
            error: wire::ErrorBody {
                code: code.as_str(),
                message: &self.error.message,
                doc_url: format!("{}#{}", crate::docs::ERRORS_PATH, code.as_str()),
                request_id: id.as_ref().and_then(|id| id.to_str().ok()),
                details: &self.error.details,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        resp.headers_mut().insert("latchkey-error", HeaderValue::from_static(code.as_str()));
        // The other side said when to come back (a provider's `Retry-After`): so do we.
        if let latchkey_core::Retry::After(after) = self.error.retry() {
            resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
        }
        if status == StatusCode::UNAUTHORIZED {
            let challenge = if self.invalid_token { r#"Bearer error="invalid_token""# } else { "Bearer" };
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        resp.extensions_mut().insert(code);
        resp.extensions_mut().insert(self.error.origin());
        resp
    }
}
