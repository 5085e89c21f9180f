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

use super::page::{Page, PageQuery};
use crate::extract::AdminCaller;
use crate::{ApiError, AppState, wire};

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>, shape: &str) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(|e| {
        ApiError::new(ErrorCode::InvalidParams, format!("the request body must be JSON {shape}: {}", e.body_text()))
    })
}

#[utoipa::path(get, path = "/v1/admin/connectors", tag = "admin", params(super::page::PageQuery), security(("admin_key" = [])), responses((status = 200, description = "Connectors by name, one page.", body = wire::Connectors)))]
pub async fn list_connectors(
    _: AdminCaller,
    State(state): State<AppState>,
    q: QueryOf<PageQuery>,
) -> Result<Response, ApiError> {
    let page = query(q)?.page()?;
    let mut list = state.engine.connectors();
    list.sort_by(|a, b| a.name.cmp(&b.name));
    let (list, has_more) = page.take(list, |c| c.name.as_str())?;
    let connectors = list.iter().map(|c| wire::Connector::from(&**c)).collect();
    Ok(Json(wire::Connectors { connectors, has_more }).into_response())
}

#[utoipa::path(get, path = "/v1/admin/providers", tag = "admin", params(super::page::PageQuery), security(("admin_key" = [])), responses((status = 200, description = "The provider catalog by name, one page.", body = wire::Providers)))]
pub async fn list_providers(_: AdminCaller, q: QueryOf<PageQuery>) -> Result<Response, ApiError> {
    let page = query(q)?.page()?;
    let list: Vec<_> = latchkey_core::providers::all().collect();
    let (list, has_more) = page.take(list, |t| t.name.as_str())?;
    let providers = list.into_iter().map(wire::ProviderSummary::from).collect();
    Ok(Json(wire::Providers { providers, has_more }).into_response())
}

#[utoipa::path(get, path = "/v1/admin/providers/{name}", tag = "admin", params(("name" = String, Path, description = "The template's name.")), security(("admin_key" = [])), responses((status = 200, description = "The template: what it fills, its parameters, the fields left to the connector, an example.", body = wire::Provider)))]
pub async fn get_provider(_: AdminCaller, Path(name): Path<String>) -> Result<Response, ApiError> {
    let t = latchkey_core::providers::get(&name).ok_or_else(|| {
        CallError::not_found(format!("no provider template named `{name}`: `GET /v1/admin/providers` lists them"))
    })?;
    Ok(Json(wire::Provider::from(t)).into_response())
}

type QueryOf<T> = Result<axum::extract::Query<T>, axum::extract::rejection::QueryRejection>;

/// The query string, or `invalid_params` saying what is wrong with it.
fn query<T>(q: QueryOf<T>) -> Result<T, ApiError> {
    q.map(|axum::extract::Query(v)| v)
        .map_err(|e| ApiError::new(ErrorCode::InvalidParams, format!("bad query: {}", e.body_text())))
}

#[utoipa::path(get, path = "/v1/admin/connectors/{name}", tag = "admin", params(("name" = String, Path, description = "The connector's name.")), security(("admin_key" = [])), responses((status = 200, description = "The connector.", body = wire::Connector)))]
pub async fn get_connector(
    _: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let c =
        state.engine.connector(&name).ok_or_else(|| CallError::not_found(format!("no connector named `{name}`")))?;
    Ok(Json(wire::Connector::from(&*c)).into_response())
}

#[utoipa::path(put, path = "/v1/admin/connectors/{name}", tag = "admin", params(("name" = String, Path, description = "The connector's name.")), request_body(content = Object, description = "A connector definition: the shape of `[connectors.NAME]` in the configuration file, as JSON; each of a call's parameters (`calls.CALL.params.NAME`) is a `CallParameter`."), security(("admin_key" = [])), responses((status = 200, description = "Replaced.", body = wire::Connector), (status = 201, description = "Created.", body = wire::Connector), (status = 400, description = "`config_invalid`, each problem under `problems`.", body = wire::ErrorEnvelope), (status = 422, description = "`egress_refused`: a URL reaches a non-public address; `field` names it.", body = wire::ErrorEnvelope)))]
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

#[utoipa::path(delete, path = "/v1/admin/connectors/{name}", tag = "admin", params(("name" = String, Path, description = "The connector's name.")), security(("admin_key" = [])), responses((status = 204, description = "Deleted.")))]
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

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    #[schema(value_type = String, min_length = 1)]
    value: SecretString,
    #[serde(default)]
    /// `live` or `dev` (default `live`).
    #[schema(value_type = Option<String>, pattern = "^(live|dev)$")]
    environment: Option<String>,
}

#[utoipa::path(put, path = "/v1/admin/secrets/{name}", tag = "admin", params(("name" = String, Path, description = "The secret's name.")), request_body = PutSecret, security(("admin_key" = [])), responses((status = 200, description = "Stored, sealed.", body = wire::Secret)))]
pub async fn put_secret(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(name): Path<String>,
    b: JsonBody<PutSecret>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"`{"value": "...", "environment": "live"|"dev"}`"#)?;
    let env = match req.environment.as_deref() {
        None => Env::Live,
        Some(e) => e.parse::<Env>().map_err(|e| CallError::invalid_params(e.to_string()))?,
    };
    state.audit("secret.put", |_| {
        let mut f = change(&admin, "secret", &name);
        f.insert("environment".into(), env.as_str().into());
        f
    })?;
    let info = state.engine.admin().put_secret(&name, env, &req.value).await?;
    Ok(Json(wire::Secret::from(&info)).into_response())
}

#[utoipa::path(delete, path = "/v1/admin/secrets/{name}", tag = "admin", params(("name" = String, Path, description = "The secret's name.")), security(("admin_key" = [])), responses((status = 204, description = "Deleted.")))]
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

#[utoipa::path(get, path = "/v1/admin/secrets", tag = "admin", params(super::page::PageQuery), security(("admin_key" = [])), responses((status = 200, description = "Secrets by name (never their values), one page.", body = wire::Secrets)))]
pub async fn list_secrets(
    _: AdminCaller,
    State(state): State<AppState>,
    q: QueryOf<PageQuery>,
) -> Result<Response, ApiError> {
    let page = query(q)?.page()?;
    let list = state.engine.admin().list_secrets().await?;
    let (list, has_more) = page.take(list, |s| s.name.as_str())?;
    Ok(Json(wire::Secrets { has_more, secrets: list.iter().map(wire::Secret::from).collect() }).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// `live` or `dev`.
    #[schema(value_type = String, pattern = "^(live|dev)$")]
    environment: String,
    #[serde(default)]
    name: Option<String>,
}

#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", params(crate::idempotency::IdempotencyKey), request_body = CreateKey, security(("admin_key" = [])), responses((status = 201, description = "The new app key: `key` is shown only here.", body = wire::Key)))]
pub async fn create_key(
    admin: AdminCaller,
    State(state): State<AppState>,
    b: JsonBody<CreateKey>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"`{"environment": "live"|"dev", "name": "..."}`"#)?;
    let env = req.environment.parse::<Env>().map_err(|e| CallError::invalid_params(e.to_string()))?;
    state.audit("key.create", |_| {
        let mut f = change(&admin, "key", req.name.as_deref().unwrap_or(""));
        f.insert("environment".into(), env.as_str().into());
        f
    })?;
    let new = state.engine.admin().create_key(KeyKind::App(env), req.name.as_deref().unwrap_or("")).await?;
    let out = wire::Key { key: Some(new.key.expose_secret()), ..wire::Key::from(&new.row) };
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin", params(super::page::PageQuery), security(("admin_key" = [])), responses((status = 200, description = "Keys by creation (never the keys), one page.", body = wire::Keys)))]
pub async fn list_keys(
    _: AdminCaller,
    State(state): State<AppState>,
    q: QueryOf<PageQuery>,
) -> Result<Response, ApiError> {
    let page = query(q)?.page()?;
    let keys = state.engine.admin().list_keys().await?;
    let (keys, has_more) = page.take(keys, |k| k.id.as_str())?;
    Ok(Json(wire::Keys { has_more, keys: keys.iter().map(wire::Key::from).collect() }).into_response())
}

#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin", params(("id" = String, Path, description = "The key's id.")), security(("admin_key" = [])), responses((status = 204, description = "Deleted.")))]
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

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    connector: Option<String>,
    kind: Option<String>,
    /// RFC 3339 or Unix milliseconds.
    since: Option<String>,
    until: Option<String>,
    /// How many items to answer, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The id of the last item of the previous page: this page starts after it.
    starting_after: Option<String>,
}

pub(crate) fn parse_time(field: &str, v: &str) -> Result<i64, ApiError> {
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
#[utoipa::path(get, path = "/v1/admin/events", tag = "admin", params(EventQuery), security(("admin_key" = [])), responses((status = 200, description = "Audit events, newest first, one page.", body = wire::Events)))]
pub async fn list_events(
    _: AdminCaller,
    State(state): State<AppState>,
    q: Result<axum::extract::Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(q) =
        q.map_err(|e| ApiError::new(ErrorCode::InvalidParams, format!("bad query: {}", e.body_text())))?;
    let page = Page::of(q.limit, q.starting_after)?;
    let filter = latchkey_core::store::EventFilter {
        connector: q.connector,
        kind: q.kind,
        since: q.since.as_deref().map(|v| parse_time("since", v)).transpose()?,
        until: q.until.as_deref().map(|v| parse_time("until", v)).transpose()?,
        // One more than the page, to know whether more follow.
        limit: i64::try_from(page.limit).unwrap_or(100) + 1,
        starting_after: page.starting_after.clone(),
    };
    let mut events = state.engine.admin().events(&filter).await?;
    let has_more = events.len() > page.limit;
    events.truncate(page.limit);
    Ok(Json(wire::Events { events: events.iter().map(wire::Event::from).collect(), has_more }).into_response())
}

/// `GET /v1/admin/tokens`: the health of every app-level token (never the tokens).
#[utoipa::path(get, path = "/v1/admin/tokens", tag = "admin", params(super::page::PageQuery), security(("admin_key" = [])), responses((status = 200, description = "The health of every app-level token (never the tokens), one page.", body = wire::Tokens)))]
pub async fn list_tokens(
    _: AdminCaller,
    State(state): State<AppState>,
    q: QueryOf<PageQuery>,
) -> Result<Response, ApiError> {
    let page = query(q)?.page()?;
    let rows = state.engine.admin().token_states().await?;
    let now = state.engine.now_ms();
    let tokens: Vec<wire::Token<'_>> = rows.iter().map(|t| wire::Token::of(t, now)).collect();
    let (tokens, has_more) = page.take(tokens, |t| t.id.as_str())?;
    Ok(Json(wire::Tokens { has_more, tokens }).into_response())
}

/// The fields of a credential change in the audit log: who, and the name of what changed.
fn change(admin: &AdminCaller, what: &str, name: &str) -> serde_json::Map<String, Value> {
    let mut f = serde_json::Map::new();
    f.insert("caller".into(), admin.key_id.as_str().into());
    f.insert(what.into(), name.into());
    f
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AuditHashBody {
    value: String,
}

/// `POST /v1/admin/audit-hash`: the HMAC under which the audit log records `value`, to look a
/// path or user id up in it (SECURITY S8).
#[utoipa::path(post, path = "/v1/admin/audit-hash", tag = "admin", request_body = AuditHashBody, security(("admin_key" = [])), responses((status = 200, description = "The HMAC the audit log records the value under.", body = wire::AuditHash)))]
pub async fn audit_hash(
    _: AdminCaller,
    State(state): State<AppState>,
    b: JsonBody<AuditHashBody>,
) -> Result<Response, ApiError> {
    let req = body(b, r#"`{"value": "..."}`"#)?;
    let hash = state.audit_hash(&req.value).ok_or_else(|| {
        CallError::not_found("no audit log is configured: set `[server] audit_log` to the file to write it to")
    })?;
    Ok(Json(wire::AuditHash { hash }).into_response())
}
