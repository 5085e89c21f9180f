//! App keys: listed with their last use (never the keys), created (the key shown once, on the
//! answer to the form), revoked. The same engine calls and audit records as `/v1/admin/keys`.

use axum::extract::{Query, State};
use axum::response::Response;
use http::StatusCode;
use latchkey_core::callers::display_prefix;
use latchkey_core::store::{KeyKind, KeyRow};
use latchkey_core::time_fmt::rfc3339;
use latchkey_core::{CallError, Env};
use maud::{Markup, html};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;

use super::Failure;
use super::layout::{Nav, Notice};
use super::session::Operator;
use crate::AppState;

/// The fields of a change in the audit log, as the admin API writes them: who, and the name
/// of what changed.
pub(crate) fn change(operator: &Operator, what: &str, name: &str) -> serde_json::Map<String, Value> {
    let mut f = serde_json::Map::new();
    f.insert("caller".into(), operator.key_id.as_str().into());
    f.insert(what.into(), name.into());
    f
}

#[derive(Deserialize, Default)]
pub(crate) struct PageQuery {
    done: Option<String>,
}

fn body(operator: &Operator, keys: &[KeyRow], created: Option<Markup>) -> Markup {
    html! {
        @if let Some(c) = created { (c) }
        h2 { "Create an app key" }
        form.card method="post" action="/console/keys" {
            (operator.csrf_field())
            label for="key_name" { "Name" }
            input #key_name name="name" type="text" autocomplete="off" maxlength="200";
            label for="key_environment" { "Environment" }
            select #key_environment name="environment" {
                option value="live" { "live" }
                option value="dev" { "dev" }
            }
            button type="submit" { "Create key" }
        }
        h2 { "Keys" }
        @if keys.is_empty() {
            p.muted { "No keys yet." }
        } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Key" } th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "Revoke" } } }
                tbody { @for k in keys { tr {
                    th scope="row" { code { (display_prefix(k)) "…" } }
                    td { (k.name) }
                    td { (match k.kind { KeyKind::Admin => "admin".to_owned(), KeyKind::App(e) => format!("app, {e}") }) }
                    td { (rfc3339(k.created_at)) }
                    td { (k.last_used_at.map(rfc3339).unwrap_or_else(|| "never".into())) }
                    td {
                        @if k.id == operator.key_id {
                            span.muted { "this session's key" }
                        } @else {
                            form.inline method="post" action="/console/keys/revoke" {
                                (operator.csrf_field())
                                input type="hidden" name="id" value=(k.id);
                                button.danger type="submit" aria-label={ "Revoke key " (display_prefix(k)) } { "Revoke" }
                            }
                        }
                    }
                } } }
            } }
        }
    }
}

/// `GET /console/keys`.
pub(crate) async fn page(
    State(state): State<AppState>,
    operator: Operator,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Failure> {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let keys = state.engine.admin().list_keys().await?;
    let notice = (q.done.as_deref() == Some("revoked")).then(|| Notice::info("The key was revoked."));
    Ok(operator.page(Nav::Keys, "App keys", notice, body(&operator, &keys, None)))
}

#[derive(Deserialize)]
pub(crate) struct CreateForm {
    csrf: String,
    name: Option<String>,
    environment: String,
}

/// `POST /console/keys`: as `POST /v1/admin/keys`; the answer is the one page that shows the
/// key (it is not kept anywhere).
pub(crate) async fn create(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<CreateForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::bad_form())?;
    operator.check(&form.csrf)?;
    let env = form.environment.parse::<Env>().map_err(|e| CallError::invalid_params(e.to_string()))?;
    let name = form.name.as_deref().map(str::trim).unwrap_or("");
    state.audit("key.create", |_| {
        let mut f = change(&operator, "key", name);
        f.insert("environment".into(), env.as_str().into());
        f
    })?;
    let new = state.engine.admin().create_key(KeyKind::App(env), name).await?;
    let keys = state.engine.admin().list_keys().await?;
    let created = html! {
        section.card aria-labelledby="new-key" {
            h2 #new-key { "New " (env.as_str()) " key" }
            p { "Copy it now: it is shown only this once." }
            code.shown-once #new-key-value { (new.key.expose_secret()) }
        }
    };
    let notice = Notice::info("The key was created.");
    Ok(operator.page_with(
        StatusCode::CREATED,
        Nav::Keys,
        "App keys",
        Some(notice),
        body(&operator, &keys, Some(created)),
    ))
}

#[derive(Deserialize)]
pub(crate) struct RevokeForm {
    csrf: String,
    id: String,
}

/// `POST /console/keys/revoke`: as `DELETE /v1/admin/keys/{id}`.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<RevokeForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::bad_form())?;
    operator.check(&form.csrf)?;
    state.audit("key.delete", |_| change(&operator, "key", &form.id))?;
    if !state.engine.admin().delete_key(&form.id).await? {
        return Err(CallError::not_found(format!("no key with id `{}`", form.id)).into());
    }
    Ok(operator.redirect("/console/keys?done=revoked"))
}
