//! The identity provider's routes (SPEC §9): users, user tokens, the token endpoint,
//! introspection, revocation, the JWKS and the discovery document.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use http::{HeaderValue, StatusCode, header};
use latchkey_core::engine::exchange;
use latchkey_core::engine::identity::JWKS_MAX_AGE_S;
use latchkey_core::{CallError, ErrorCode};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::extract::AppCaller;
use crate::{ApiError, AppState, wire};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserBody {
    id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    attributes: Value,
}

/// `POST /v1/users`: creates or updates a user in the key's environment.
#[utoipa::path(post, path = "/v1/users", tag = "identity", params(crate::idempotency::IdempotencyKey), request_body = UserBody, security(("app_key" = [])), responses((status = 200, description = "The user, created or updated.", body = wire::User)))]
pub async fn upsert_user(
    State(state): State<AppState>,
    caller: AppCaller,
    b: Result<Json<UserBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = b.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidParams,
            format!(r#"the body must be JSON {{"id": "...", "email": "..."}}: {}"#, e.body_text()),
        )
    })?;
    let u = state.engine.identity().upsert_user(caller.env, &b.id, b.email, b.attributes).await?;
    Ok(Json(wire::User::from(&u)).into_response())
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "identity", params(("id" = String, Path)), security(("app_key" = [])), responses((status = 200, description = "The user.", body = wire::User)))]
pub async fn get_user(
    State(state): State<AppState>,
    caller: AppCaller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let u = state
        .engine
        .identity()
        .get_user(caller.env, &id)
        .await?
        .ok_or_else(|| CallError::not_found(format!("no user `{id}`")))?;
    Ok(Json(wire::User::from(&u)).into_response())
}

/// `DELETE /v1/users/{id}`: its connections (revoked at the providers) and tokens go too.
/// Audited as `user.delete` (the console's deletion writes the same record), before anything
/// is deleted; each of its connections is then recorded as `connection.deleted`.
#[utoipa::path(delete, path = "/v1/users/{id}", tag = "identity", params(("id" = String, Path)), security(("app_key" = [])), responses((status = 204, description = "Deleted, with its connections and tokens.")))]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: AppCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.engine.identity().get_user(caller.env, &id).await?.is_none() {
        return Err(CallError::not_found(format!("no user `{id}`")).into());
    }
    state.audit("user.delete", |a| {
        let mut f = serde_json::Map::new();
        f.insert("caller".into(), caller.key_id.as_str().into());
        f.insert("environment".into(), caller.env.as_str().into());
        f.insert("user".into(), a.hash(&id).into());
        f
    })?;
    if state.engine.identity().delete_user(caller.env, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(CallError::not_found(format!("no user `{id}`")).into())
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintBody {
    /// Narrows what the token may do at `/mcp`: `tools`, `connector:NAME`, `tool:NAME`,
    /// space-separated (absent: unrestricted).
    scope: Option<String>,
}

/// `POST /v1/users/{id}/tokens`, with an optional `{"scope": "..."}`.
#[utoipa::path(post, path = "/v1/users/{id}/tokens", tag = "identity", params(("id" = String, Path), crate::idempotency::IdempotencyKey), request_body(content = Option<MintBody>, description = "Optional: the tokens' `scope`."), security(("app_key" = [])), responses((status = 201, description = "A user access token (JWT) and refresh token.", body = wire::TokenPair)))]
pub async fn mint(
    State(state): State<AppState>,
    caller: AppCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let scope = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let b: MintBody = serde_json::from_slice(&body).map_err(|_| {
            ApiError::new(ErrorCode::InvalidParams, r#"the body must be empty or JSON {"scope": "tools"}"#)
        })?;
        b.scope
    };
    let pair = state.engine.identity().mint_scoped_tokens(caller.env, &id, scope.as_deref()).await?;
    Ok((StatusCode::CREATED, no_store(Json(wire::TokenPair::from(&pair)).into_response())).into_response())
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// An OAuth error body (RFC 6749 §5.2) as well as Latchkey's own shape.
fn oauth_error(e: CallError) -> Response {
    let oauth = e.details.get("oauth_error").and_then(Value::as_str).unwrap_or("invalid_request").to_owned();
    ApiError::from(e).with_detail("oauth_error", oauth).into_response()
}

/// `POST /v1/token`: `grant_type=authorization_code` (an MCP client's code, with
/// `code_verifier`, `client_id`, `redirect_uri`, `resource`), `grant_type=refresh_token` (with
/// `refresh_token`), or the token-exchange
/// grant (RFC 8693: `grant_type=urn:ietf:params:oauth:grant-type:token-exchange` with
/// `subject_token`, `subject_token_type`, and `resource` or `audience` naming a connector;
/// app key as bearer).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenForm {
    /// `refresh_token`, or `urn:ietf:params:oauth:grant-type:token-exchange`.
    grant_type: Option<String>,
    #[schema(value_type = Option<String>)]
    refresh_token: Option<SecretString>,
    /// Token exchange: the user's Latchkey access token.
    #[schema(value_type = Option<String>)]
    subject_token: Option<SecretString>,
    /// Token exchange: `urn:ietf:params:oauth:token-type:access_token`.
    subject_token_type: Option<String>,
    /// Token exchange: the connector whose provider token is wanted (or `audience`).
    resource: Option<String>,
    /// Token exchange: the connector, when `resource` is not given.
    audience: Option<String>,
    /// Token exchange: if given, `urn:ietf:params:oauth:token-type:access_token`.
    requested_token_type: Option<String>,
    /// Authorization code (MCP clients): the code the authorization endpoint gave.
    #[schema(value_type = Option<String>)]
    code: Option<SecretString>,
    /// Authorization code: the PKCE verifier (RFC 7636).
    #[schema(value_type = Option<String>)]
    code_verifier: Option<SecretString>,
    /// Authorization code: the client the code was issued to.
    client_id: Option<String>,
    /// Authorization code: the redirect URI the code was sent to.
    redirect_uri: Option<String>,
}

/// `POST /v1/token` (form): `grant_type=refresh_token` (the refresh token is the credential),
/// or the token-exchange grant with an app key (RFC 8693).
#[utoipa::path(post, path = "/v1/token", tag = "identity", request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"), responses((status = 200, description = "A new pair (the refresh token is rotated); or, for the token-exchange grant, the user's provider access token (`ExchangedToken`).", body = wire::TokenPair)))]
pub async fn token(
    State(state): State<AppState>,
    parts: http::request::Parts,
    form: Result<Form<TokenForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(f)) = form else {
        return oauth_error(CallError::invalid_params(
            "the body must be a form: grant_type=refresh_token&refresh_token=...",
        ));
    };
    if f.grant_type.as_deref() == Some(exchange::GRANT_TYPE) {
        return token_exchange(&state, &parts, f).await;
    }
    if f.grant_type.as_deref() == Some("authorization_code") {
        let Some(code) = f.code else {
            return oauth_error(CallError::invalid_params("code is missing"));
        };
        let verifier = f.code_verifier.as_ref().map(|v| v.expose_secret());
        let exchanged = state
            .engine
            .mcp_auth()
            .exchange_code(
                code.expose_secret(),
                verifier,
                f.client_id.as_deref(),
                f.redirect_uri.as_deref(),
                f.resource.as_deref(),
            )
            .await;
        return match exchanged {
            Ok(pair) => {
                let mut r = no_store(Json(wire::TokenPair::from(&pair)).into_response());
                r.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
                r
            }
            Err(e) => oauth_error(e),
        };
    }
    if f.grant_type.as_deref() != Some("refresh_token") {
        let mut e = CallError::invalid_params(format!(
            "grant_type must be authorization_code, refresh_token or {} (token exchange)",
            exchange::GRANT_TYPE
        ));
        e.details.insert("oauth_error".into(), Value::String("unsupported_grant_type".into()));
        return oauth_error(e);
    }
    let Some(rt) = f.refresh_token else {
        return oauth_error(CallError::invalid_params("refresh_token is missing"));
    };
    match state.engine.identity().refresh_user_tokens(&rt).await {
        Ok(pair) => no_store(Json(wire::TokenPair::from(&pair)).into_response()),
        Err(e) => oauth_error(e),
    }
}

/// The token-exchange grant (RFC 8693 §2): an app key, a user's Latchkey access token, and
/// a connector with `token_exchange = true`; the answer is the user's provider access token.
async fn token_exchange(state: &AppState, parts: &http::request::Parts, f: TokenForm) -> Response {
    let caller = match AppCaller::of(parts, state, None).await {
        Ok(c) => c,
        Err(e) => return e.with_detail("oauth_error", "invalid_client").into_response(),
    };
    let invalid = |message: String| oauth_error(CallError::invalid_params(message));
    let Some(subject) = f.subject_token else {
        return invalid("subject_token is missing: give the user's Latchkey access token".into());
    };
    if f.subject_token_type.as_deref() != Some(exchange::ACCESS_TOKEN_TYPE) {
        return invalid(format!("subject_token_type must be {}", exchange::ACCESS_TOKEN_TYPE));
    }
    if let Some(t) = f.requested_token_type.as_deref().filter(|t| *t != exchange::ACCESS_TOKEN_TYPE) {
        return invalid(format!("requested_token_type `{t}` is not offered: only {}", exchange::ACCESS_TOKEN_TYPE));
    }
    let connector = match (f.resource, f.audience) {
        (Some(r), None) | (None, Some(r)) => r,
        (Some(r), Some(a)) if r == a => r,
        (None, None) => return invalid("name the connector as `resource` (or `audience`)".into()),
        (Some(_), Some(_)) => return invalid("`resource` and `audience` name different connectors: give one".into()),
    };
    if let Err(e) = state.audit("token_exchange", |_| {
        let mut m = serde_json::Map::new();
        m.insert("caller".into(), caller.key_id.as_str().into());
        m.insert("environment".into(), caller.env.as_str().into());
        m.insert("connector".into(), connector.as_str().into());
        m
    }) {
        return e.into_response();
    }
    match state.engine.exchange_token(caller.env, &caller.key_id, subject.expose_secret(), &connector).await {
        Ok(x) => {
            let mut r = no_store(Json(wire::ExchangedToken::from(&x)).into_response());
            r.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            r
        }
        Err(e) => oauth_error(e),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenOnly {
    token: Option<String>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
}

/// `POST /v1/token/introspect` (RFC 7662), for app keys: anything not active in the key's
/// environment is exactly `{"active": false}`.
#[utoipa::path(post, path = "/v1/token/introspect", tag = "identity", request_body(content = TokenOnly, content_type = "application/x-www-form-urlencoded"), security(("app_key" = [])), responses((status = 200, description = "RFC 7662: exactly `{\"active\": false}` for anything not active.", body = wire::Introspection)))]
pub async fn introspect(State(state): State<AppState>, caller: AppCaller, Form(f): Form<TokenOnly>) -> Response {
    if let Err(wait) = state.introspection.check(&caller.key_id) {
        let mut r = ApiError::new(
            ErrorCode::RateLimited,
            "too many introspection requests for this app key: wait for `Retry-After` seconds, or raise `[server] introspection_per_second`",
        )
        .into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        return r;
    }
    let answer = match f.token {
        Some(t) => {
            Json(wire::Introspection::from(&state.engine.identity().introspect(caller.env, &t).await)).into_response()
        }
        None => Json(wire::Introspection::INACTIVE).into_response(),
    };
    no_store(answer)
}

/// `POST /v1/token/revoke` (RFC 7009): 200 whatever the token.
#[utoipa::path(post, path = "/v1/token/revoke", tag = "identity", request_body(content = TokenOnly, content_type = "application/x-www-form-urlencoded"), security(("app_key" = [])), responses((status = 200, description = "RFC 7009: revoked, or was never valid.")))]
pub async fn revoke(
    State(state): State<AppState>,
    caller: AppCaller,
    Form(f): Form<TokenOnly>,
) -> Result<StatusCode, ApiError> {
    if let Some(t) = f.token {
        state.engine.identity().revoke_user_token(caller.env, &t).await?;
    }
    Ok(StatusCode::OK)
}

#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity", responses((status = 200, description = "The public signing keys (RFC 7517).", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> Response {
    let mut r = Json(state.engine.identity().jwks()).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={JWKS_MAX_AGE_S}")) {
        r.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    r
}

#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "identity", responses((status = 200, description = "OpenID Connect Discovery / RFC 8414 metadata.", body = wire::OpenIdConfiguration)))]
pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    crate::mcp_auth::discovery(&state)
}
