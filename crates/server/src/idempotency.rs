//! `Idempotency-Key` on the `POST`s that create something.

/// The header, as the OpenAPI document describes it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKey {
    /// A unique key per request (a UUID, say), up to 255 characters: the same key and body within
    /// 24 hours answer what the first request was answered (status and body) without doing it again;
    /// the same key with another request is refused (`idempotency_key_reused`, 422).
    #[param(rename = "Idempotency-Key", max_length = 255, required = false)]
    idempotency_key: String,
}
