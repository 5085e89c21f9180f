use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use latchkey_core::config::ConfigErrors;
use latchkey_core::{CallError, ErrorCode};
use serde_json::json;

/// Every error Latchkey itself writes: `{"error": {"code", "message", ...}}` plus the
/// `Latchkey-Error: <code>` header, and on a 401 the `WWW-Authenticate: Bearer` challenge
/// (RFC 6750 §3). Built only from [`CallError`]s, whose messages never carry secrets;
/// internals are logged by the engine, not shown here.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub extra: serde_json::Map<String, serde_json::Value>,
    /// A credential was presented and refused: the challenge says `error="invalid_token"`.
    invalid_token: bool,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), extra: serde_json::Map::new(), invalid_token: false }
    }

    /// This error answers a credential that was presented: a 401 says `error="invalid_token"`.
    pub fn presented(mut self) -> Self {
        self.invalid_token = true;
        self
    }

    pub fn config(errors: &ConfigErrors) -> Self {
        let problems: Vec<serde_json::Value> =
            errors.0.iter().map(|p| json!({"field": p.field, "message": p.message, "text": p.to_string()})).collect();
        let mut e = Self::new(
            ErrorCode::ConfigInvalid,
            errors.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        );
        e.extra.insert("problems".into(), problems.into());
        e
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        Self { code: e.code, message: e.message, extra: e.details, invalid_token: false }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = serde_json::Map::new();
        body.insert("code".into(), self.code.as_str().into());
        body.insert("message".into(), self.message.into());
        body.extend(self.extra);
        let mut resp = (status, Json(json!({ "error": body }))).into_response();
        resp.headers_mut().insert("latchkey-error", HeaderValue::from_static(self.code.as_str()));
        if status == StatusCode::UNAUTHORIZED {
            let challenge = if self.invalid_token { r#"Bearer error="invalid_token""# } else { "Bearer" };
            resp.headers_mut().insert(http::header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        resp
    }
}
