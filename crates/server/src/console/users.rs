//! Users (looked up by id and environment: there may be millions, so they are not listed) with
//! their connections, deleted; and the identity signing keys, rotated.

use axum::extract::{Query, State};
use axum::response::Response;
use latchkey_core::store::ConnectionFilter;
use latchkey_core::time_fmt::rfc3339;
use latchkey_core::{CallError, Env};
use maud::html;
use serde::Deserialize;

use super::layout::{Nav, Notice};
use super::session::Operator;
use super::{Failure, enc};
use crate::AppState;

#[derive(Deserialize, Default)]
pub(crate) struct Lookup {
    id: Option<String>,
    environment: Option<String>,
    done: Option<String>,
}

fn env_of(v: Option<&str>) -> Result<Env, Failure> {
    match v.map(str::trim) {
        None | Some("") => Ok(Env::Live),
        Some(e) => e.parse::<Env>().map_err(|e| CallError::invalid_params(e.to_string()).into()),
    }
}

/// `GET /console/users?id=&environment=`.
pub(crate) async fn page(
    State(state): State<AppState>,
    operator: Operator,
    q: Result<Query<Lookup>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Failure> {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let env = env_of(q.environment.as_deref())?;
    let id = q.id.as_deref().map(str::trim).filter(|v| !v.is_empty());
    let found = match id {
        Some(id) => Some((id, state.engine.identity().get_user(env, id).await?)),
        None => None,
    };
    let views = match id {
        Some(id) => {
            let filter = ConnectionFilter { connector: None, env: Some(env), owner: Some(id.to_owned()) };
            state.engine.connections().views(&filter).await?
        }
        None => Vec::new(),
    };
    let keys = state.engine.identity().signing_keys().await?;
    let now = state.engine.now_ms();
    let notice = match q.done.as_deref() {
        Some("deleted") => Some(Notice::info("The user was deleted, with their connections and refresh tokens.")),
        Some("rotated") => Some(Notice::info("A new signing key was made: published now, signing in 5 minutes.")),
        _ => None,
    };
    let body = html! {
        h2 { "Find a user" }
        form.filters method="get" action="/console/users" {
            label { "User id" input name="id" type="text" required value=(id.unwrap_or("")); }
            label { "Environment" select name="environment" {
                option value="live" selected[env == Env::Live] { "live" }
                option value="dev" selected[env == Env::Dev] { "dev" }
            } }
            button type="submit" { "Find" }
        }
        @if let Some((id, user)) = &found {
            @match user {
                None => p.notice.error role="status" { "No user " code { (id) } " in " (env.as_str()) "." },
                Some(u) => {
                    dl {
                        dt { "User" } dd { code { (u.id) } " (" (u.env.as_str()) ")" }
                        dt { "Email" } dd { (u.email.as_deref().unwrap_or("—")) }
                        dt { "Signed in through" } dd { (u.provider.as_deref().unwrap_or("—")) }
                        dt { "Attributes" } dd { code { (u.attributes) } }
                        dt { "Created" } dd { (rfc3339(u.created_at)) }
                        dt { "Updated" } dd { (rfc3339(u.updated_at)) }
                    }
                    form.inline method="post" action="/console/users/delete" {
                        (operator.csrf_field())
                        input type="hidden" name="id" value=(u.id);
                        input type="hidden" name="environment" value=(u.env.as_str());
                        button.danger type="submit" aria-label={ "Delete user " (u.id) } { "Delete user" }
                    }
                }
            }
            h2 { "Their connections" }
            (super::connections::table(&operator, &views, now))
        }
        h2 { "Signing keys" }
        p.help { "The keys that sign user tokens; " a href="/.well-known/jwks.json" { "the JWKS" } " publishes them." }
        div.scroll { table {
            thead { tr { th scope="col" { "Key id" } th scope="col" { "Algorithm" } th scope="col" { "Created" } th scope="col" { "Signs from" } th scope="col" { "Retired" } } }
            tbody { @for k in &keys { tr {
                th scope="row" { code { (k.kid) } }
                td { (k.alg) }
                td { (rfc3339(k.created_at)) }
                td { (rfc3339(k.activates_at)) @if k.activates_at > now { " " span.muted { "(published, not signing yet)" } } }
                td { (k.retired_at.map(rfc3339).unwrap_or_else(|| "—".into())) }
            } } }
        } }
        form.inline method="post" action="/console/signing-keys/rotate" {
            (operator.csrf_field())
            button type="submit" { "Rotate signing key" }
        }
    };
    Ok(operator.page(Nav::Users, "Users and signing keys", notice, body))
}

#[derive(Deserialize)]
pub(crate) struct DeleteForm {
    csrf: String,
    id: String,
    environment: Option<String>,
}

/// `POST /console/users/delete`: as `DELETE /v1/users/{id}` (with the environment chosen
/// here rather than by an app key), audited as `user.delete`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<DeleteForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::bad_form())?;
    operator.check(&form.csrf)?;
    let env = env_of(form.environment.as_deref())?;
    state.audit("user.delete", |a| {
        let mut f = serde_json::Map::new();
        f.insert("caller".into(), operator.key_id.as_str().into());
        f.insert("environment".into(), env.as_str().into());
        f.insert("user".into(), a.hash(&form.id).into());
        f
    })?;
    if !state.engine.identity().delete_user(env, &form.id).await? {
        return Err(CallError::not_found(format!("no user `{}` in {env}", form.id)).into());
    }
    Ok(operator.redirect(&format!("/console/users?environment={}&done=deleted", enc(env.as_str()))))
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    csrf: String,
}

/// `POST /console/signing-keys/rotate`: as `latchkey keys rotate` (published now, signing
/// after the publication delay), audited as `signing_key.rotate`.
pub(crate) async fn rotate(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<CsrfForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::bad_form())?;
    operator.check(&form.csrf)?;
    state.audit("signing_key.rotate", |_| {
        let mut f = serde_json::Map::new();
        f.insert("caller".into(), operator.key_id.as_str().into());
        f
    })?;
    state.engine.identity().rotate_signing_key(None, false).await?;
    Ok(operator.redirect("/console/users?done=rotated"))
}
