//! `Idempotency-Key` on the `POST`s that create something.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, header};
use latchkey_core::ErrorCode;
use latchkey_core::engine::idempotency::Claim;

use crate::{ApiError, AppState};

/// The header, as the OpenAPI document describes it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct IdempotencyKey {
    /// A unique key per request (a UUID, say), 1 to 255 visible ASCII characters: the same key and body within
    /// 24 hours answer what the first request was answered (status and body) without doing it again;
    /// the same key with another request is refused (`idempotency_key_reused`, 422).
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255, pattern = "^[!-~]+$", required = false)]
    idempotency_key: String,
}

/// The routes whose `POST` creates something, as the router names them: the only ones where
/// `Idempotency-Key` is read (elsewhere it is ignored, as Stripe does).
pub const CREATES: &[&str] =
    &["/v1/admin/keys", "/v1/connect", "/v1/connect/{connector}", "/v1/users", "/v1/users/{id}/tokens"];

/// The largest body read here: axum's JSON limit, which these routes' extractors apply anyway.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The middleware: a `POST` to one of [`CREATES`] with `Idempotency-Key` from an
/// authenticated caller is claimed before it runs; a repeat gets the first answer (marked
/// `Idempotent-Replayed: true`), or is refused. Only successful answers are kept: after any
/// other the claim is released, and the same key may be tried again. Without the header, or
/// with a credential that is refused (the handler says so), the request runs as it is.
pub async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let creates = req.extensions().get::<MatchedPath>().is_some_and(|m| CREATES.contains(&m.as_str()));
    let Some(key) = req.headers().get("idempotency-key").filter(|_| creates) else {
        return next.run(req).await;
    };
    let Ok(key) = key.to_str().map(str::to_owned) else {
        return ApiError::new(
            ErrorCode::InvalidParams,
            "`Idempotency-Key` must be 1 to 255 visible ASCII characters (a UUID, say), one per request",
        )
        .into_response();
    };
    let (parts, body) = req.into_parts();
    let Some(scope) = crate::extract::scope(&parts, &state).await else {
        return next.run(Request::from_parts(parts, body)).await;
    };
    let Ok(bytes) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than this route accepts (2 MiB), or could not be read: send a smaller one",
        )
        .into_response();
    };
    let target = parts.uri.path_and_query().map_or_else(|| parts.uri.path(), |p| p.as_str()).to_owned();
    let keys = state.engine.idempotency();
    match keys.claim(&scope, &key, (parts.method.as_str(), &target, &bytes), state.engine.now_ms()).await {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(Claim::Replay { status, body }) => return replay(status, body),
        Ok(Claim::First) => {}
    }
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    if !response.status().is_success() {
        if let Err(e) = keys.release(&scope, &key).await {
            tracing::warn!(error = %e, "an Idempotency-Key claim could not be released; it is forgotten in 10 minutes");
        }
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(bytes) => bytes,
        Err(e) => {
            // The handler's own answer, over 2 MiB or cut: nothing a caller sent. Its error
            // names a size or an I/O failure, never the body.
            tracing::error!(error = %e, "a created resource's answer could not be read to keep it for Idempotency-Key");
            if let Err(e) = keys.release(&scope, &key).await {
                tracing::warn!(error = %e, "an Idempotency-Key claim could not be released; it is forgotten in 10 minutes");
            }
            return ApiError::new(
                ErrorCode::Internal,
                "the answer could not be read inside Latchkey (see its log); the change may have been made: look before repeating it with a new key",
            )
            .into_response();
        }
    };
    if let Err(e) = keys.finish(&scope, &key, parts.status.as_u16(), &bytes).await {
        tracing::warn!(error = %e, "an Idempotency-Key answer could not be kept; the key is forgotten in 10 minutes");
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The kept answer: its status and JSON body, never cached, marked as a replay.
fn replay(status: u16, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    r
}
