//! Connectors: the list (method, environments, secrets present or missing, token health), a
//! connector's page (its calls, its tokens) and "try this call".

use axum::extract::{Path, Query, State};
use axum::response::Response;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt as _;
use latchkey_core::config::SecretRef;
use latchkey_core::engine::tokens::shown_state;
use latchkey_core::engine::{ConnectorRuntime, SecretInfo, UpstreamResponse};
use latchkey_core::store::TokenRow;
use latchkey_core::time_fmt::rfc3339;
use latchkey_core::{CallError, Env};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{Nav, Notice};
use super::session::Operator;
use super::{Failure, enc};
use crate::AppState;

/// How much of an upstream's answer "try this call" shows (characters).
const SHOWN_BODY: usize = 64 * 1024;
/// How much of it is read: more than is shown, so that a secret across the cut is still
/// recognised whole and redacted before the text is cut.
const READ_BODY: usize = SHOWN_BODY + 8 * 1024;

/// Where each secret a connector names is: present in which environments, or missing.
fn secret_cells(c: &ConnectorRuntime, secrets: &[SecretInfo]) -> Markup {
    let refs = c.config.auth.secret_refs();
    html! {
        @if refs.is_empty() {
            span.muted { "none" }
        }
        ul.plain {
            @for (field, r) in &refs {
                li {
                    @match r {
                        SecretRef::Vault(name) => {
                            @let envs = secrets.iter().find(|s| &s.name == name).map(|s| s.environments.clone()).unwrap_or_default();
                            code { (name) } " "
                            @if envs.is_empty() {
                                span.bad { "missing" } " "
                                a href={ "/console/secrets?name=" (enc(name)) } aria-label={ "Set secret " (name) } { "set" }
                            } @else {
                                span.ok { "present" }
                                " (" (envs.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")) ")"
                            }
                        }
                        SecretRef::Env(var) => {
                            span.muted { (field) " from environment variable " code { (var) } }
                        }
                    }
                }
            }
        }
    }
}

fn env_cell(c: &ConnectorRuntime, env: Env) -> Markup {
    html! {
        @match c.credential_status(env) {
            Ok(()) => span.ok { "ready" },
            Err(e) => span.bad title=(e.message) { "not ready" },
        }
    }
}

/// The app-level tokens of `name` (not users' connections), by environment.
fn app_tokens<'a>(name: &str, tokens: &'a [TokenRow]) -> Vec<&'a TokenRow> {
    tokens.iter().filter(|t| t.key.connector == name && t.key.connection.is_empty()).collect()
}

fn token_cell(rows: &[&TokenRow], now: i64) -> Markup {
    html! {
        @if rows.is_empty() {
            span.muted { "no token" }
        }
        @for t in rows {
            @let state = shown_state(t, now).as_str();
            div {
                (t.key.env.as_str()) ": "
                @if state == "ok" { span.ok { (state) } } @else { span.bad { (state) } }
            }
        }
    }
}

/// `GET /console/connectors`.
pub(crate) async fn list(State(state): State<AppState>, operator: Operator) -> Result<Response, Failure> {
    let mut connectors = state.engine.connectors();
    connectors.sort_by(|a, b| a.name.cmp(&b.name));
    let secrets = state.engine.admin().list_secrets().await?;
    let tokens = state.engine.admin().token_states().await?;
    let now = state.engine.now_ms();
    let body = html! {
        p { a href="/console/catalog" { "New connector" } ": from the provider catalog, or a blank one." }
        @if connectors.is_empty() {
            p { "No connectors yet: add one here, to the configuration file, or with " code { "PUT /v1/admin/connectors/NAME" } "." }
        } @else {
            div.scroll {
                table {
                    caption.muted { "Every connector this Latchkey serves" }
                    thead { tr { th scope="col" { "Connector" } th scope="col" { "Method" } th scope="col" { "live" } th scope="col" { "dev" } th scope="col" { "Secrets" } th scope="col" { "Token" } } }
                    tbody {
                        @for c in &connectors {
                            tr {
                                th scope="row" { a href={ "/console/connectors/" (enc(&c.name)) } { (c.name) } br; span.muted { (if c.from_file { "file" } else { "api" }) } }
                                td { code { (c.config.auth.method()) } }
                                td { (env_cell(c, Env::Live)) }
                                td { (env_cell(c, Env::Dev)) }
                                td { (secret_cells(c, &secrets)) }
                                td { (token_cell(&app_tokens(&c.name, &tokens), now)) }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(operator.page(Nav::Connectors, "Connectors", None, body))
}

fn connector_body(
    c: &ConnectorRuntime,
    secrets: &[SecretInfo],
    tokens: &[&TokenRow],
    now: i64,
    operator: &Operator,
    tried: Option<Markup>,
    form: &TryForm,
) -> Markup {
    let name = &c.name;
    html! {
        p { "Base URL " code { (c.config.base_url.as_str()) } ", method " code { (c.config.auth.method()) }
            ", defined " (if c.from_file { "in the configuration file" } else { "through the admin API" }) "." }
        h2 { "Environments" }
        ul {
            @for env in Env::ALL {
                li { (env.as_str()) ": "
                    @match c.credential_status(env) {
                        Ok(()) => span.ok { "ready" },
                        Err(e) => { span.bad { "not ready" } " — " (e.message) },
                    }
                }
            }
        }
        h2 { "Secrets" }
        (secret_cells(c, secrets))
        h2 { "Tokens" }
        @if tokens.is_empty() {
            p.muted { "No app-level token stored (this method holds none, or none was obtained yet)." }
        } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Environment" } th scope="col" { "State" } th scope="col" { "Last refresh" } th scope="col" { "Expires" } th scope="col" { "Last error" } } }
                tbody { @for t in tokens { tr {
                    td { (t.key.env.as_str()) }
                    td { (shown_state(t, now).as_str()) }
                    td { (t.last_refresh_at.map(rfc3339).unwrap_or_else(|| "never".into())) }
                    td { (t.expires_at.map(rfc3339).unwrap_or_else(|| "—".into())) }
                    td { (t.last_error.as_deref().unwrap_or("—")) }
                } } }
            } }
        }
        h2 { "Calls" }
        @if c.config.calls.is_empty() {
            p.muted { "No named calls (the passthrough proxy " (if c.config.proxy { "reaches" } else { "does not reach" }) " this connector)." }
        } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Call" } th scope="col" { "Request" } th scope="col" { "Access" } th scope="col" { "Parameters" } } }
                tbody { @for (call, cfg) in &c.config.calls { tr {
                    th scope="row" { code { (call) } @if let Some(d) = &cfg.description { br; span.muted { (d) } } }
                    td { code { (cfg.method.as_str()) " " (cfg.path.as_str()) } }
                    td { (match cfg.access { latchkey_core::config::Access::App => "app", latchkey_core::config::Access::User => "user" }) }
                    td { (cfg.params.keys().cloned().collect::<Vec<_>>().join(", ")) }
                } } }
            } }
            h2 #try { "Try this call" }
            form.card method="post" action={ "/console/connectors/" (enc(name)) "/try" } {
                (operator.csrf_field())
                label for="call" { "Call" }
                select #call name="call" {
                    @for call in c.config.calls.keys() {
                        option value=(call) selected[form.call.as_deref() == Some(call.as_str())] { (call) }
                    }
                }
                label for="environment" { "Environment" }
                select #environment name="environment" {
                    option value="live" selected[form.environment.as_deref() != Some("dev")] { "live" }
                    option value="dev" selected[form.environment.as_deref() == Some("dev")] { "dev" }
                }
                label for="params" { "Parameters (JSON object, optional)" }
                textarea #params name="params" spellcheck="false" { (form.params.as_deref().unwrap_or("")) }
                label for="user" { "User (for a per-user connection, optional)" }
                input #user name="user" type="text" value=(form.user.as_deref().unwrap_or("")) autocomplete="off";
                button type="submit" { "Send" }
            }
            @if let Some(t) = tried { (t) }
        }
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct ShowQuery {
    /// Set by "New connector" after it created this one.
    created: Option<String>,
}

/// `GET /console/connectors/{name}`.
pub(crate) async fn show(
    State(state): State<AppState>,
    operator: Operator,
    Path(name): Path<String>,
    q: Result<Query<ShowQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Failure> {
    let created = q.is_ok_and(|Query(q)| q.created.is_some());
    let c = state
        .engine
        .connector(&name)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("There is no connector named `{name}`.")))?;
    let secrets = state.engine.admin().list_secrets().await?;
    let tokens = state.engine.admin().token_states().await?;
    let rows = app_tokens(&name, &tokens);
    let body = connector_body(&c, &secrets, &rows, state.engine.now_ms(), &operator, None, &TryForm::default());
    let notice = created
        .then(|| Notice::info("The connector was created. Its secrets are sealed in the vault and never shown."));
    Ok(operator.page(Nav::Connectors, &format!("Connector {name}"), notice, body))
}

#[derive(Deserialize, Default)]
pub(crate) struct TryForm {
    #[serde(default)]
    csrf: String,
    call: Option<String>,
    environment: Option<String>,
    params: Option<String>,
    user: Option<String>,
}

/// `POST /console/connectors/{name}/try`: makes the call as the admin API's callers do (audited
/// as `call`), and shows the upstream's status and a bounded, escaped part of its body.
pub(crate) async fn try_call(
    State(state): State<AppState>,
    operator: Operator,
    Path(name): Path<String>,
    form: Result<axum::Form<TryForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::bad_form())?;
    operator.check(&form.csrf)?;
    let c = state
        .engine
        .connector(&name)
        .ok_or_else(|| Failure::new(StatusCode::NOT_FOUND, format!("There is no connector named `{name}`.")))?;
    let outcome = attempt(&state, &operator, &name, &form).await;
    let (tried, notice) = match outcome {
        Ok((up, body, truncated)) => {
            let text = state.engine.redact_secrets(&name, &String::from_utf8_lossy(&body));
            let text: String = text.chars().take(SHOWN_BODY).collect();
            (Some(answer(&up, &text, truncated)), None)
        }
        Err(e) => (None, Some(Notice::error(&format!("The call was not made or failed: {}", e.message)))),
    };
    let secrets = state.engine.admin().list_secrets().await?;
    let tokens = state.engine.admin().token_states().await?;
    let rows = app_tokens(&name, &tokens);
    let body = connector_body(&c, &secrets, &rows, state.engine.now_ms(), &operator, tried, &form);
    Ok(operator.page(Nav::Connectors, &format!("Connector {name}"), notice, body))
}

async fn attempt(
    state: &AppState,
    operator: &Operator,
    connector: &str,
    form: &TryForm,
) -> Result<(UpstreamResponse, Bytes, bool), CallError> {
    let call = form.call.as_deref().unwrap_or_default();
    let env = form
        .environment
        .as_deref()
        .unwrap_or("live")
        .parse::<Env>()
        .map_err(|e| CallError::invalid_params(e.to_string()))?;
    let params: serde_json::Value = match form.params.as_deref().map(str::trim) {
        None | Some("") => serde_json::Value::Object(serde_json::Map::new()),
        Some(text) => serde_json::from_str(text)
            .map_err(|_| CallError::invalid_params("the parameters must be a JSON object, such as {\"id\": 42}"))?,
    };
    if !params.is_object() {
        return Err(CallError::invalid_params("the parameters must be a JSON object, such as {\"id\": 42}"));
    }
    let user = form.user.as_deref().map(str::trim).filter(|u| !u.is_empty());
    state
        .audit("call", |a| {
            let mut f = serde_json::Map::new();
            f.insert("caller".into(), operator.key_id.as_str().into());
            f.insert("environment".into(), env.as_str().into());
            if let Some(u) = user {
                f.insert("user".into(), a.hash(u).into());
            }
            f.insert("connector".into(), connector.into());
            f.insert("call".into(), call.into());
            f.insert("console".into(), true.into());
            f
        })
        .map_err(|e| CallError::new(e.code(), e.message()))?;
    let mut up = state.engine.call(env, connector, call, &params, user).await?;
    let (body, truncated) = read_bounded(&mut up).await;
    Ok((up, body, truncated))
}

/// At most [`READ_BODY`] bytes of the answer's body, and whether there was more than
/// [`SHOWN_BODY`].
async fn read_bounded(up: &mut UpstreamResponse) -> (Bytes, bool) {
    let mut out = Vec::new();
    while let Some(frame) = up.body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            let room = READ_BODY - out.len();
            if data.len() > room {
                out.extend_from_slice(&data[..room]);
                return (Bytes::from(out), true);
            }
            out.extend_from_slice(&data);
        }
    }
    let more = out.len() > SHOWN_BODY;
    (Bytes::from(out), more)
}

/// The answer as shown: `text` is its body, already redacted and cut.
fn answer(up: &UpstreamResponse, text: &str, truncated: bool) -> Markup {
    let content_type = up.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("none");
    html! {
        section #answer aria-labelledby="answer-title" {
            h2 #answer-title { "The upstream's answer" }
            p { "Status " strong { (up.status.as_u16()) " " (up.status.canonical_reason().unwrap_or("")) }
                ", content type " code { (content_type) }
                @if truncated { ", the first " (SHOWN_BODY / 1024) " KiB shown" } "." }
            pre { (text) }
        }
    }
}
