//! `/v1/admin`: connectors, secrets and keys. Never returns a secret value; the one response
//! that shows a key is the one that creates it.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use latchkey_core::engine::PutConnectorError;
use latchkey_core::store::KeyKind;
use latchkey_core::{CallError, Env, ErrorCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use crate::extract::AdminCaller;
use crate::{ApiError, AppState, wire};

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>, shape: &str) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(|e| {
        ApiError::new(ErrorCode::InvalidParams, format!("the request body must be JSON {shape}: {}", e.body_text()))
    })
}

pub async fn list_connectors(_: AdminCaller, State(state): State<AppState>) -> Response {
    let mut list = state.engine.connectors();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Json(wire::Connectors { connectors: list.iter().map(|c| wire::Connector::from(&**c)).collect() }).into_response()
}

pub async fn get_connector(
    _: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let c =
        state.engine.connector(&name).ok_or_else(|| CallError::not_found(format!("no connector named `{name}`")))?;
    Ok(Json(wire::Connector::from(&*c)).into_response())
}

pub async fn put_connector(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    b: JsonBody<Value>,
) -> Result<Response, ApiError> {
    let json = body(b, "of a connector definition (the shape of `[connectors.NAME]` in the file)")?;
    state.audit("connector.put", |_| change(&admin, "connector", &name))?;
    let existed = state.engine.connector(&name).is_some();
    match state.engine.admin().put_connector(&name, json).await {
        Ok(_) => {
            let c = state
                .engine
                .connector(&name)
                .ok_or_else(|| CallError::internal("connector vanished after it was written"))?;
            let status = if existed { StatusCode::OK } else { StatusCode::CREATED };
            Ok((status, Json(wire::Connector::from(&*c))).into_response())
        }
        Err(PutConnectorError::Invalid(errors)) => Err(ApiError::config(&errors)),
        Err(PutConnectorError::Call(e)) => Err(e.into()),
    }
}

pub async fn delete_connector(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.audit("connector.delete", |_| change(&admin, "connector", &name))?;
    if state.engine.admin().delete_connector(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(CallError::not_found(format!("no connector named `{name}` was created through the API")).into())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    value: SecretString,
    #[serde(default)]
    environment: Option<String>,
}

pub async fn put_secret(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    b: JsonBody<PutSecret>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"`{"value": "...", "environment": "live"|"dev"}`"#)?;
    let env = match req.environment.as_deref() {
        None => Env::Live,
        Some(e) => e.parse::<Env>().map_err(CallError::invalid_params)?,
    };
    state.audit("secret.put", |_| {
        let mut f = change(&admin, "secret", &name);
        f.insert("environment".into(), env.as_str().into());
        f
    })?;
    let info = state.engine.admin().put_secret(&name, env, &req.value).await?;
    Ok(Json(wire::Secret::from(&info)).into_response())
}

pub async fn delete_secret(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.audit("secret.delete", |_| change(&admin, "secret", &name))?;
    if state.engine.admin().delete_secret(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(CallError::not_found(format!("no secret named `{name}`")).into())
    }
}

pub async fn list_secrets(_: AdminCaller, State(state): State<AppState>) -> Result<Response, ApiError> {
    let list = state.engine.admin().list_secrets().await?;
    Ok(Json(wire::Secrets { secrets: list.iter().map(wire::Secret::from).collect() }).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    environment: String,
    #[serde(default)]
    name: Option<String>,
}

pub async fn create_key(
    admin: AdminCaller,
    State(state): State<AppState>,
    b: JsonBody<CreateKey>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"`{"environment": "live"|"dev", "name": "..."}`"#)?;
    let env = req.environment.parse::<Env>().map_err(CallError::invalid_params)?;
    state.audit("key.create", |_| {
        let mut f = change(&admin, "key", req.name.as_deref().unwrap_or(""));
        f.insert("environment".into(), env.as_str().into());
        f
    })?;
    let new = state.engine.admin().create_key(KeyKind::App(env), req.name.as_deref().unwrap_or("")).await?;
    let out = wire::Key { key: Some(new.key.expose_secret()), ..wire::Key::from(&new.row) };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

pub async fn list_keys(_: AdminCaller, State(state): State<AppState>) -> Result<Response, ApiError> {
    let keys = state.engine.admin().list_keys().await?;
    Ok(Json(wire::Keys { keys: keys.iter().map(wire::Key::from).collect() }).into_response())
}

pub async fn delete_key(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.audit("key.delete", |_| change(&admin, "key", &id))?;
    if state.engine.admin().delete_key(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(CallError::not_found(format!("no key with id `{id}`")).into())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    connector: Option<String>,
    kind: Option<String>,
    /// RFC 3339 or Unix milliseconds.
    since: Option<String>,
    until: Option<String>,
    limit: Option<i64>,
}

fn parse_time(field: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            ApiError::new(
                ErrorCode::InvalidParams,
                format!("`{field}` must be an RFC 3339 time (2026-01-31T12:00:00Z) or Unix milliseconds"),
            )
        })
}

/// `GET /v1/admin/events?connector=&kind=&since=&until=&limit=`: the audit log, newest first.
pub async fn list_events(
    _: AdminCaller,
    State(state): State<AppState>,
    q: Result<axum::extract::Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(q) =
        q.map_err(|e| ApiError::new(ErrorCode::InvalidParams, format!("bad query: {}", e.body_text())))?;
    let filter = latchkey_core::store::EventFilter {
        connector: q.connector,
        kind: q.kind,
        since: q.since.as_deref().map(|v| parse_time("since", v)).transpose()?,
        until: q.until.as_deref().map(|v| parse_time("until", v)).transpose()?,
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    let events = state.engine.admin().events(&filter).await?;
    Ok(Json(wire::Events { events: events.iter().map(wire::Event::from).collect() }).into_response())
}

/// `GET /v1/admin/tokens`: the health of every app-level token (never the tokens).
pub async fn list_tokens(_: AdminCaller, State(state): State<AppState>) -> Result<Response, ApiError> {
    let rows = state.engine.admin().token_states().await?;
    let now = state.engine.now_ms();
    Ok(Json(wire::Tokens { tokens: rows.iter().map(|t| wire::Token::of(t, now)).collect() }).into_response())
}

/// The fields of a credential change in the audit log: who, and the name of what changed.
fn change(admin: &AdminCaller, what: &str, name: &str) -> serde_json::Map<String, Value> {
    let mut f = serde_json::Map::new();
    f.insert("caller".into(), admin.key_id.as_str().into());
    f.insert(what.into(), name.into());
    f
}

#[derive(Deserialize)]
pub struct AuditHash {
    value: String,
}

/// `POST /v1/admin/audit-hash`: the HMAC under which the audit log records `value`, to look a
/// path or user id up in it (SECURITY S8).
pub async fn audit_hash(
    _: AdminCaller,
    State(state): State<AppState>,
    b: JsonBody<AuditHash>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"`{"value": "..."}`"#)?;
    let hash = state.audit_hash(&req.value).ok_or_else(|| {
        CallError::not_found("no audit log is configured: set `[server] audit_log` to the file to write it to")
    })?;
    Ok(Json(wire::AuditHash { hash }).into_response())
}
