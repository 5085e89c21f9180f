//! The wire types: one `Serialize` struct per response body the server writes, built from the
//! domain types at the edge (which are not `Serialize`, except the stored config).
//!
//! Fields are declared in alphabetical order, the order in which `serde_json::json!` wrote
//! them before (its map is sorted), so that the bodies stay byte-for-byte what they were.
//! `Option` fields without `skip_serializing_if` are written as `null`, as before.
//! The one body the engine builds as a `serde_json::Value`, the JWKS (its keys are JWKs the
//! vault made), passes through unchanged.
//!
//! One module per part of the API: `admin.rs` (connectors, secrets, keys, events, tokens),
//! `connections.rs` (per-user connections and connect links), `identity.rs` (users, token
//! pairs, discovery, introspection); errors and health here.

mod admin;
mod connections;
mod identity;
#[cfg(test)]
mod tests;

pub use admin::*;
pub use connections::*;
pub use identity::*;
use serde::Serialize;
use serde_json::Value;

/// A text column that holds JSON (an event's detail, a connection's metadata, a user's
/// attributes), or `null` when it does not parse.
fn stored_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

// ----- errors ---------------------------------------------------------------------------

/// `{"error": {...}}`, the body of every error Latchkey writes (see [`crate::ApiError`]).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope<'a> {
    pub error: ErrorBody<'a>,
}

/// `code`, `doc_url` and `message`, the error's details (a provider's `error`, a
/// `reconnect_url`, config `problems`, ...), each at the top level of the object, and the
/// request's `request_id`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    #[schema(schema_with = crate::openapi::error_code)]
    pub code: &'static str,
    /// Where this code is explained, on this Latchkey (`/docs/errors#<code>`, relative to the
    /// address the request was sent to).
    pub doc_url: String,
    pub message: &'a str,
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub details: &'a serde_json::Map<String, Value>,
    /// The request's id, as in the `Latchkey-Request-Id` header and the request's log line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<&'a str>,
}

/// One entry of a `config_invalid` error's `problems`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConfigProblem<'a> {
    pub field: Option<&'a str>,
    pub message: &'a str,
    pub text: String,
}

// ----- health ---------------------------------------------------------------------------

/// `GET /healthz`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// `GET /readyz`: `{"status": "ready", "connectors": n}`, or 503 with
/// `{"status": "unavailable", "reason": "..."}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connectors: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub status: &'static str,
}
