//! Callers as extractors: a handler that takes `AdminCaller` or `AppCaller` is reachable only
//! with such a credential.

use axum::extract::FromRequestParts;
use http::request::Parts;
use latchkey_core::callers::{Caller, KeyMemo};
use latchkey_core::{CallError, Env, ErrorCode};

use crate::{ApiError, AppState};

pub struct AdminCaller {
    pub key_id: String,
}

pub struct AppCaller {
    pub env: Env,
    pub key_id: String,
}

/// An app key, or a user token (a Latchkey-issued JWT) acting for its own user.
pub enum AppOrUser {
    App {
        env: Env,
        key_id: String,
    },
    /// A user token: its user, and its `scope` claim (absent: unrestricted).
    User {
        env: Env,
        user: String,
        scope: Option<String>,
    },
}

impl AppOrUser {
    pub fn env(&self) -> Env {
        match self {
            AppOrUser::App { env, .. } | AppOrUser::User { env, .. } => *env,
        }
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    single_authorization(parts)?;
    let header = parts.headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        ApiError::new(ErrorCode::Unauthenticated, "missing `Authorization: Bearer <key or user token>`")
    })?;
    header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::new(ErrorCode::Unauthenticated, "the Authorization header must be `Bearer <credential>`")
        })
}

impl FromRequestParts<AppState> for AppOrUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        AppOrUser::of(parts, state, None).await
    }
}

impl AppOrUser {
    /// The caller of a request on a connection whose last key is in `memo`, if any.
    pub async fn of(parts: &Parts, state: &AppState, memo: Option<&KeyMemo>) -> Result<Self, ApiError> {
        Self::verified(parts, state, memo, false).await
    }

    /// The caller of `/mcp`: as [`AppOrUser::of`], and a user token may also be one an MCP
    /// client was given (`aud` `<public_url>/mcp`), which no other route accepts.
    pub async fn of_mcp(parts: &Parts, state: &AppState) -> Result<Self, ApiError> {
        Self::verified(parts, state, None, true).await
    }

    async fn verified(parts: &Parts, state: &AppState, memo: Option<&KeyMemo>, mcp: bool) -> Result<Self, ApiError> {
        let token = bearer(parts)?;
        if token.matches('.').count() == 2 && !token.starts_with("lk_") {
            let identity = state.engine.identity();
            let claims = if mcp { identity.verify_mcp_token(token) } else { identity.verify_user_token(token) }
                .map_err(refused)?;
            let env = claims
                .env
                .parse::<Env>()
                .map_err(|_| refused(CallError::new(ErrorCode::Unauthenticated, "bad token environment")))?;
            return Ok(AppOrUser::User { env, user: claims.sub, scope: claims.scope });
        }
        match authenticate(parts, state, memo).await? {
            Caller::App { env, key_id } => Ok(AppOrUser::App { env, key_id }),
            Caller::Admin { .. } => {
                Err(CallError::new(ErrorCode::Forbidden, "this route needs an app key or a user token").into())
            }
        }
    }
}

/// An error about a credential that was presented (RFC 6750 §3.1: `invalid_token`).
fn refused(e: impl Into<ApiError>) -> ApiError {
    e.into().presented()
}

/// Two `Authorization` headers are ambiguous (which one would an intermediary see?): refused.
fn single_authorization(parts: &Parts) -> Result<(), ApiError> {
    if parts.headers.get_all(http::header::AUTHORIZATION).iter().count() > 1 {
        return Err(ApiError::new(ErrorCode::InvalidParams, "send exactly one Authorization header"));
    }
    Ok(())
}

async fn authenticate(parts: &Parts, state: &AppState, memo: Option<&KeyMemo>) -> Result<Caller, ApiError> {
    single_authorization(parts)?;
    let header = parts.headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthenticated,
            "missing `Authorization: Bearer <key>`: every /v1 request needs an admin or app key",
        )
    })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated, "the Authorization header must be `Bearer <key>`"))?;
    if token.matches('.').count() == 2 && !token.starts_with("lk_") {
        state.engine.identity().verify_user_token(token).map_err(refused)?;
        return Err(CallError::new(
            ErrorCode::Forbidden,
            "a user token may make `access = \"user\"` calls and manage its own connections only",
        )
        .into());
    }
    state.engine.authenticate(token, memo).await.map_err(refused)
}

/// The id of the key a request's credential is, when it is a valid admin or app key: the
/// scope of its `Idempotency-Key`s. None for anything else (the handler refuses it).
pub(crate) async fn scope(parts: &Parts, state: &AppState) -> Option<String> {
    match authenticate(parts, state, None).await.ok()? {
        Caller::Admin { key_id } | Caller::App { key_id, .. } => Some(key_id),
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match authenticate(parts, state, None).await? {
            Caller::Admin { key_id } => Ok(AdminCaller { key_id }),
            Caller::App { .. } => Err(CallError::new(
                ErrorCode::Forbidden,
                "this route needs an admin key (lk_admin_…); app keys reach calls, proxy and connections",
            )
            .into()),
        }
    }
}

impl FromRequestParts<AppState> for AppCaller {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        AppCaller::of(parts, state, None).await
    }
}

impl AppCaller {
    /// The caller of a request on a connection whose last key is in `memo`, if any.
    pub async fn of(parts: &Parts, state: &AppState, memo: Option<&KeyMemo>) -> Result<Self, ApiError> {
        match authenticate(parts, state, memo).await? {
            Caller::App { env, key_id } => Ok(AppCaller { env, key_id }),
            Caller::Admin { .. } => Err(CallError::new(
                ErrorCode::Forbidden,
                "this route needs an app key (lk_live_… or lk_dev_…), which chooses the environment; \
                 create one with POST /v1/admin/keys",
            )
            .into()),
        }
    }
}
