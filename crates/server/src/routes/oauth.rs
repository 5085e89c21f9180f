//! The browser side of per-user connections: connect sessions, the start link, the callback,
//! and the connections routes for app keys and admins.

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use latchkey_core::engine::{ConnectionView, FlowError, PAGE_TTL_MS};
use latchkey_core::store::ConnectionFilter;
use latchkey_core::time_fmt::rfc3339;
use latchkey_core::{CallError, Env, ErrorCode};
use serde::Deserialize;
use serde_json::Value;

use super::page::Page;
use crate::extract::{AdminCaller, AppCaller, AppOrUser};
use crate::{ApiError, AppState, wire};

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectBody {
    user: String,
    return_to: String,
    #[serde(default)]
    params: BTreeMap<String, String>,
}

/// `POST /v1/connect/{connector}`: a single-use link that sends the user's browser to the
/// provider's login. The owner is the app key's caller plus `user`, never the browser.
#[utoipa::path(post, path = "/v1/connect/{connector}", tag = "connections", params(("connector" = String, Path), crate::idempotency::IdempotencyKey), request_body = ConnectBody, security(("app_key" = [])), responses((status = 201, description = "A single-use link (10 minutes) for the user's browser.", body = wire::ConnectLink)))]
pub async fn connect(
    State(state): State<AppState>,
    caller: AppCaller,
    Path(connector): Path<String>,
    b: JsonBody<ConnectBody>,
) -> Result<Response, ApiError> {
    let Json(b) = b.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidParams,
            format!(r#"the body must be JSON {{"user": "...", "return_to": "https://..."}}: {}"#, e.body_text()),
        )
    })?;
    let connections = state.engine.connections();
    if connections.is_values_connector(&connector) {
        // A user's own values are entered on the connect page, not at a provider.
        if !b.params.is_empty() {
            return Err(ApiError::new(
                ErrorCode::InvalidParams,
                format!("connector `{connector}` takes no `params`: its users enter their values on the connect page"),
            ));
        }
        let url = connections.connect_page_session(caller.env, &b.user, &[connector], &b.return_to).await?;
        return Ok(link(&state, url, PAGE_TTL_MS));
    }
    let url = connections.connect_session(caller.env, &connector, &b.user, &b.return_to, b.params).await?;
    Ok(link(&state, url, 10 * 60 * 1000))
}

fn link(state: &AppState, url: String, ttl_ms: i64) -> Response {
    let expires_at = rfc3339(state.engine.now_ms() + ttl_ms);
    (StatusCode::CREATED, Json(wire::ConnectLink { expires_at: Some(expires_at), url })).into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectManyBody {
    /// The app's user id (1 to 200 characters).
    user: String,
    /// The connectors to list on the page (1 to 20): OAuth (`oauth2_authorization_code`)
    /// connectors and `per_user = true` ones.
    connectors: Vec<String>,
    /// Where the browser goes when the user is done (`?status=done` added); an entry of
    /// `[server] return_to_allow` must allow it.
    return_to: String,
}

/// `POST /v1/connect`: a single-use link (15 minutes) to the connect page, where the user
/// connects several connectors (OAuth logins and their own API keys or passwords).
#[utoipa::path(post, path = "/v1/connect", tag = "connections", params(crate::idempotency::IdempotencyKey), request_body = ConnectManyBody, security(("app_key" = [])), responses((status = 201, description = "A single-use link (15 minutes) to the connect page for the user's browser.", body = wire::ConnectLink)))]
pub async fn connect_many(
    State(state): State<AppState>,
    caller: AppCaller,
    b: JsonBody<ConnectManyBody>,
) -> Result<Response, ApiError> {
    let Json(b) = b.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidParams,
            format!(
                r#"the body must be JSON {{"user": "...", "connectors": ["..."], "return_to": "https://..."}}: {}"#,
                e.body_text()
            ),
        )
    })?;
    let url = state.engine.connections().connect_page_session(caller.env, &b.user, &b.connectors, &b.return_to).await?;
    Ok(link(&state, url, PAGE_TTL_MS))
}

fn flow_failure(e: FlowError) -> Response {
    match e.redirect {
        Some(to) => redirect(&to, None),
        None => {
            let code = match e.code {
                "unavailable" => ErrorCode::Unavailable,
                _ => ErrorCode::InvalidParams,
            };
            ApiError::new(code, e.message).with_detail("flow_error", e.code).into_response()
        }
    }
}

pub(crate) fn redirect(to: &str, cookie: Option<String>) -> Response {
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

pub(crate) fn cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> String {
    let secure = if state.engine.public_url().starts_with("https://") { "; Secure" } else { "" };
    format!("{name}={value}; Path=/oauth; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
}

/// `GET /oauth/{connector}/start?session=`.
#[utoipa::path(get, path = "/oauth/{connector}/start", tag = "oauth", params(("connector" = String, Path), ("session" = String, Query, description = "The connect link's session.")), responses((status = 302, description = "To the provider's login dialog, with a cookie binding the browser.")))]
pub async fn start(
    State(state): State<AppState>,
    Path(connector): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = q.get("session") else {
        return browser_failure(
            &state,
            &headers,
            FlowError { code: "session_invalid", message: "the link has no `session`".into(), redirect: None },
        )
        .await;
    };
    match state.engine.connections().start_flow(&connector, session).await {
        Ok((login, name, value)) => {
            let c = cookie(&state, &name, &value, 600);
            redirect(&login, Some(c))
        }
        Err(e) => browser_failure(&state, &headers, e).await,
    }
}

/// A failed step with nowhere to send the browser back: an error page (with the connect
/// page's headers) for a browser, which asks for HTML; the JSON error for anything else.
async fn browser_failure(state: &AppState, headers: &HeaderMap, e: FlowError) -> Response {
    let html = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"));
    if e.redirect.is_some() || !html {
        return flow_failure(e);
    }
    let status = if e.code == "unavailable" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_REQUEST };
    crate::console::secure_headers(crate::connect_page::error_page(state, status, &e.message)).await
}

fn cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

async fn finish(
    state: AppState,
    connector: Option<String>,
    q: HashMap<String, String>,
    headers: HeaderMap,
) -> Response {
    match state.engine.connections().finish_flow(connector.as_deref(), &q, &cookies(&headers)).await {
        Ok(done) => {
            let c = cookie(&state, &done.cookie_name, "", 0);
            redirect(&done.redirect, Some(c))
        }
        Err(e) => browser_failure(&state, &headers, e).await,
    }
}

/// `GET /oauth/callback` (generic redirect).
#[utoipa::path(get, path = "/oauth/callback", tag = "oauth", params(("state" = String, Query), ("code" = Option<String>, Query), ("iss" = Option<String>, Query), ("error" = Option<String>, Query)), responses((status = 302, description = "To `return_to` with `status=connected` or `status=error&error=<code>`.")))]
pub async fn callback(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    finish(state, None, q, headers).await
}

/// `GET /oauth/{connector}/callback` (per-connector redirect).
#[utoipa::path(get, path = "/oauth/{connector}/callback", tag = "oauth", params(("connector" = String, Path), ("state" = String, Query), ("code" = Option<String>, Query), ("iss" = Option<String>, Query), ("error" = Option<String>, Query)), responses((status = 302, description = "To `return_to` with `status=connected` or `status=error&error=<code>`.")))]
pub async fn connector_callback(
    State(state): State<AppState>,
    Path(connector): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    finish(state, Some(connector), q, headers).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UserQuery {
    user: Option<String>,
    /// How many items to answer, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The id of the last item of the previous page: this page starts after it.
    starting_after: Option<String>,
}

fn owner(q: &UserQuery) -> Result<&str, ApiError> {
    q.user
        .as_deref()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidParams, "name the user: `?user=<the app's user id>`"))
}

/// Whose connections: the user token's own user, or the app key's `?user=`.
fn whose<'a>(caller: &'a AppOrUser, q: &'a UserQuery) -> Result<&'a str, ApiError> {
    match caller {
        AppOrUser::User { user, .. } => match q.user.as_deref() {
            Some(u) if u != user => Err(CallError::not_found("no such connection").into()),
            _ => Ok(user),
        },
        AppOrUser::App { .. } => owner(q),
    }
}

/// `GET /v1/connections?user=` (app key) or `GET /v1/connections` (user token: its own).
#[utoipa::path(get, path = "/v1/connections", tag = "connections", params(UserQuery), security(("app_key" = []), ("user_token" = [])), responses((status = 200, description = "The user's connections, one page.", body = wire::Connections)))]
pub async fn list(
    State(state): State<AppState>,
    caller: AppOrUser,
    Query(q): Query<UserQuery>,
) -> Result<Response, ApiError> {
    let filter =
        ConnectionFilter { connector: None, env: Some(caller.env()), owner: Some(whose(&caller, &q)?.to_owned()) };
    let views = state.engine.connections().views(&filter).await?;
    connections(views, Page::of(q.limit, q.starting_after.clone())?, state.engine.now_ms())
}

/// `{"connections": [...], "has_more": ...}`: one page of `views` (in the store's order), each known by its id.
fn connections(views: Vec<ConnectionView>, page: Page, now: i64) -> Result<Response, ApiError> {
    let (views, has_more) = page.take(views, |v| v.row.id.as_str())?;
    let connections = views.iter().map(|v| wire::Connection::of(v, now)).collect();
    Ok(Json(wire::Connections { connections, has_more }).into_response())
}

async fn own(state: &AppState, env: Env, connector: &str, user: &str) -> Result<ConnectionView, ApiError> {
    state.engine.connections().require_user_connector(connector)?;
    let filter =
        ConnectionFilter { connector: Some(connector.to_owned()), env: Some(env), owner: Some(user.to_owned()) };
    state.engine.connections().views(&filter).await?.into_iter().next().ok_or_else(|| {
        CallError::not_found(format!("user `{user}` has no connection on connector `{connector}` ({env})")).into()
    })
}

/// `GET /v1/connections/{connector}?user=`.
#[utoipa::path(get, path = "/v1/connections/{connector}", tag = "connections", params(("connector" = String, Path), UserQuery), security(("app_key" = []), ("user_token" = [])), responses((status = 200, description = "The user's connection on this connector.", body = wire::Connection)))]
pub async fn get_one(
    State(state): State<AppState>,
    caller: AppOrUser,
    Path(connector): Path<String>,
    Query(q): Query<UserQuery>,
) -> Result<Response, ApiError> {
    let v = own(&state, caller.env(), &connector, whose(&caller, &q)?).await?;
    Ok(Json(wire::Connection::of(&v, state.engine.now_ms())).into_response())
}

/// The body of `PUT /v1/connections/{connector}`: whose values, and the values by the
/// method's field names.
#[derive(utoipa::ToSchema)]
#[allow(dead_code, reason = "the documented shape; the handler reads the JSON itself, so that no error echoes a value")]
pub struct PutValuesBody {
    /// The app's user id (1 to 200 characters).
    user: String,
    /// The method's fields: `{"key": "..."}` (`api_key_query`, `api_key_header`), or
    /// `{"username": "...", "password": "..."}` (`basic`, `digest`). Each 1 to 4096 bytes,
    /// without control characters.
    credentials: BTreeMap<String, String>,
}

/// Reads `PutValuesBody` from JSON without serde's messages, which quote what they refuse.
fn put_values_body(b: Value) -> Result<(String, Vec<(String, secrecy::SecretString)>), ApiError> {
    let shape =
        r#"the body must be JSON {"user": "...", "credentials": {"key": "..."}} (or "username" and "password")"#;
    let Value::Object(mut map) = b else {
        return Err(ApiError::new(ErrorCode::InvalidParams, shape));
    };
    let user = match map.remove("user") {
        Some(Value::String(u)) => u,
        Some(_) => return Err(ApiError::new(ErrorCode::InvalidParams, "`user` must be a string: the app's user id")),
        None => return Err(ApiError::new(ErrorCode::InvalidParams, format!("`user` is missing: {shape}"))),
    };
    let credentials = match map.remove("credentials") {
        Some(Value::Object(c)) => c,
        Some(_) => {
            return Err(ApiError::new(ErrorCode::InvalidParams, format!("`credentials` must be an object: {shape}")));
        }
        None => return Err(ApiError::new(ErrorCode::InvalidParams, format!("`credentials` is missing: {shape}"))),
    };
    if let Some(field) = map.keys().next() {
        let shown: String = field.chars().take(64).collect();
        return Err(ApiError::new(ErrorCode::InvalidParams, format!("unknown field `{shown}`: {shape}")));
    }
    let mut given = Vec::with_capacity(credentials.len());
    for (field, value) in credentials {
        let Value::String(value) = value else {
            let shown: String = field.chars().take(64).collect();
            return Err(ApiError::new(ErrorCode::InvalidParams, format!("`credentials.{shown}` must be a string")));
        };
        given.push((field, secrecy::SecretString::from(value)));
    }
    Ok((user, given))
}

/// `PUT /v1/connections/{connector}` (app key): a user's own values for a `per_user`
/// connector, checked (and tried with its `verify` call) before they are stored. Answers the
/// connection, never the values.
#[utoipa::path(put, path = "/v1/connections/{connector}", tag = "connections", params(("connector" = String, Path)), request_body = PutValuesBody, security(("app_key" = [])), responses((status = 201, description = "The user's connection, made with these values.", body = wire::Connection), (status = 200, description = "The user's connection, its values replaced.", body = wire::Connection), (status = 422, description = "`credentials_refused`: the connector's verify call was refused with these values; nothing was saved.", body = wire::ErrorEnvelope)))]
pub async fn put_one(
    State(state): State<AppState>,
    caller: AppCaller,
    Path(connector): Path<String>,
    b: JsonBody<Value>,
) -> Result<Response, ApiError> {
    let Json(b) = b.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidParams,
            format!(r#"the body must be JSON {{"user": "...", "credentials": {{"key": "..."}}}}: {}"#, e.body_text()),
        )
    })?;
    let (user, given) = put_values_body(b)?;
    state.engine.connections().require_user_connector(&connector)?;
    state.audit("connection.put", |a| {
        let mut f = serde_json::Map::new();
        f.insert("caller".into(), caller.key_id.as_str().into());
        f.insert("environment".into(), caller.env.as_str().into());
        f.insert("connector".into(), connector.as_str().into());
        f.insert("user".into(), a.hash(&user).into());
        f
    })?;
    let (view, created) = state.engine.put_user_values(caller.env, &connector, &user, given).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(wire::Connection::of(&view, state.engine.now_ms()))).into_response())
}

/// `DELETE /v1/connections/{connector}?user=`: revokes at the provider, then erases.
#[utoipa::path(delete, path = "/v1/connections/{connector}", tag = "connections", params(("connector" = String, Path), UserQuery), security(("app_key" = []), ("user_token" = [])), responses((status = 200, description = "Revoked at the provider when it can be, then erased.", body = wire::Deleted)))]
pub async fn delete_one(
    State(state): State<AppState>,
    caller: AppOrUser,
    Path(connector): Path<String>,
    Query(q): Query<UserQuery>,
) -> Result<Response, ApiError> {
    let v = own(&state, caller.env(), &connector, whose(&caller, &q)?).await?;
    let by = match &caller {
        AppOrUser::App { key_id, .. } => key_id.as_str(),
        AppOrUser::User { .. } => "user token",
    };
    state.audit("connection.delete", |a| deletion(a, by, &v.row))?;
    let revoked = state.engine.connections().delete(&v.row, "app").await?;
    Ok(Json(wire::Deleted { deleted: &v.row.id, revoked }).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AdminQuery {
    connector: Option<String>,
    user: Option<String>,
    /// `live` or `dev`.
    #[param(pattern = "^(live|dev)$")]
    environment: Option<String>,
    /// How many items to answer, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// The id of the last item of the previous page: this page starts after it.
    starting_after: Option<String>,
}

/// `GET /v1/admin/connections?connector=&user=&environment=`.
#[utoipa::path(get, path = "/v1/admin/connections", tag = "admin", params(AdminQuery), security(("admin_key" = [])), responses((status = 200, description = "Per-user connections, one page.", body = wire::Connections)))]
pub async fn admin_list(
    _: AdminCaller,
    State(state): State<AppState>,
    Query(q): Query<AdminQuery>,
) -> Result<Response, ApiError> {
    let env = q
        .environment
        .as_deref()
        .map(str::parse::<Env>)
        .transpose()
        .map_err(|e| CallError::invalid_params(e.to_string()))?;
    let page = Page::of(q.limit, q.starting_after)?;
    let filter = ConnectionFilter { connector: q.connector, env, owner: q.user };
    let views = state.engine.connections().views(&filter).await?;
    connections(views, page, state.engine.now_ms())
}

/// `DELETE /v1/admin/connections/{id}`.
#[utoipa::path(delete, path = "/v1/admin/connections/{id}", tag = "admin", params(("id" = String, Path, description = "The connection's id.")), security(("admin_key" = [])), responses((status = 200, description = "Revoked at the provider when it can be, then erased.", body = wire::Deleted)))]
pub async fn admin_delete(
    admin: AdminCaller,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let row = state
        .engine
        .connections()
        .by_id(&id)
        .await?
        .ok_or_else(|| CallError::not_found(format!("no connection with id `{id}`")))?;
    state.audit("connection.delete", |a| deletion(a, &admin.key_id, &row))?;
    let revoked = state.engine.connections().delete(&row, "admin").await?;
    Ok(Json(wire::Deleted { deleted: &id, revoked }).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConnectAsUser {
    return_to: String,
}

/// `GET /oauth/{connector}/connect?return_to=` with a user token: a connect link for the
/// token's own user. Answers 302 to the link, or `{"url"}` to `Accept: application/json`.
#[utoipa::path(get, path = "/oauth/{connector}/connect", tag = "oauth", params(("connector" = String, Path), ConnectAsUser), security(("user_token" = [])), responses((status = 302, description = "To the connect link."), (status = 200, description = "With `Accept: application/json`: the link.", body = wire::ConnectLink)))]
pub async fn connect_as_user(
    State(state): State<AppState>,
    caller: AppOrUser,
    Path(connector): Path<String>,
    Query(q): Query<ConnectAsUser>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let AppOrUser::User { env, user, .. } = caller else {
        return Err(CallError::new(
            ErrorCode::Forbidden,
            "app keys start connections with POST /v1/connect/{connector}",
        )
        .into());
    };
    let url = state.engine.connections().connect_session(env, &connector, &user, &q.return_to, BTreeMap::new()).await?;
    let wants_json =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("application/json"));
    if wants_json {
        Ok(Json(wire::ConnectLink { expires_at: None, url }).into_response())
    } else {
        Ok(redirect(&url, None))
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LoginQuery {
    return_to: String,
    #[serde(default)]
    /// `live` or `dev`.
    #[param(pattern = "^(live|dev)$")]
    environment: Option<String>,
}

/// `GET /oauth/{connector}/login?return_to=&environment=`: sign-in through the provider.
#[utoipa::path(get, path = "/oauth/{connector}/login", tag = "oauth", params(("connector" = String, Path), LoginQuery), responses((status = 302, description = "To the provider's login.")))]
pub async fn login(
    State(state): State<AppState>,
    Path(connector): Path<String>,
    Query(q): Query<LoginQuery>,
) -> Response {
    let env = match q.environment.as_deref().map(str::parse::<Env>).transpose() {
        Ok(e) => e.unwrap_or(Env::Live),
        Err(m) => return ApiError::new(ErrorCode::InvalidParams, m.to_string()).into_response(),
    };
    match state.engine.connections().start_login(&connector, env, &q.return_to).await {
        Ok((url, name, value)) => {
            let c = cookie(&state, &name, &value, 600);
            redirect(&url, Some(c))
        }
        Err(e) => flow_failure(e),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExchangeBody {
    code: String,
}

/// `POST /v1/login/exchange` (app key): the one-time code from a sign-in for the user, its
/// tokens and its connection.
#[utoipa::path(post, path = "/v1/login/exchange", tag = "identity", request_body = ExchangeBody, security(("app_key" = [])), responses((status = 200, description = "The signed-in user, its tokens and its connection.", body = wire::SignIn)))]
pub async fn exchange(
    State(state): State<AppState>,
    caller: AppCaller,
    b: JsonBody<ExchangeBody>,
) -> Result<Response, ApiError> {
    let Json(b) = b.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidParams,
            format!(r#"the body must be JSON {{"code": "lkc_..."}}: {}"#, e.body_text()),
        )
    })?;
    let (user, tokens, connection) = state.engine.identity().exchange_login_code(caller.env, &b.code).await?;
    let mut resp = Json(wire::SignIn {
        connection: &connection,
        tokens: wire::TokenPair::from(&tokens),
        user: wire::SignedInUser { email: user.email.as_deref(), environment: user.env.as_str(), id: &user.id },
    })
    .into_response();
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The audit record of a connection deleted by `caller` (the user id as its HMAC).
pub(crate) fn deletion(
    audit: &crate::Audit,
    caller: &str,
    row: &latchkey_core::store::ConnectionRow,
) -> serde_json::Map<String, Value> {
    let mut f = serde_json::Map::new();
    f.insert("caller".into(), caller.into());
    f.insert("environment".into(), row.env.as_str().into());
    f.insert("connector".into(), row.connector.as_str().into());
    f.insert("connection".into(), row.id.as_str().into());
    f.insert("user".into(), audit.hash(&row.owner).into());
    f
}
