//! Secrets: their names and environments (never their values), set or replaced through a
//! password field, deleted. The same engine calls and audit records as `/v1/admin/secrets`.

use std::collections::BTreeSet;

use axum::extract::{Query, State};
use axum::response::Response;
use latchkey_core::Env;
use latchkey_core::config::SecretRef;
use latchkey_core::time_fmt::rfc3339;
use maud::html;
use secrecy::SecretString;
use serde::Deserialize;

use super::Failure;
use super::layout::{Nav, Notice};
use super::session::Operator;
use crate::AppState;

#[derive(Deserialize, Default)]
pub(crate) struct PageQuery {
    /// Prefills the form's name (the connectors page's "set" link).
    name: Option<String>,
    /// What the last form did: `saved` or `deleted`.
    done: Option<String>,
}

/// `GET /console/secrets`.
pub(crate) async fn page(
    State(state): State<AppState>,
    operator: Operator,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Failure> {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let secrets = state.engine.admin().list_secrets().await?;
    // Secrets the connectors name that the vault lacks, and who names them.
    let mut missing: BTreeSet<(String, String)> = BTreeSet::new();
    for c in state.engine.connectors() {
        for (_, r) in c.config.auth.secret_refs() {
            if let SecretRef::Vault(name) = r
                && !secrets.iter().any(|s| &s.name == name)
            {
                missing.insert((name.clone(), c.name.clone()));
            }
        }
    }
    let notice = match q.done.as_deref() {
        Some("saved") => Some(Notice::info("The secret was saved. Its value is sealed and is never shown.")),
        Some("deleted") => Some(Notice::info("The secret was deleted.")),
        _ => None,
    };
    let body = html! {
        h2 { "Set or replace a secret" }
        form.card method="post" action="/console/secrets" {
            (operator.csrf_field())
            label for="name" { "Name" }
            input #name name="name" type="text" required autocomplete="off" spellcheck="false"
                value=(q.name.as_deref().unwrap_or(""));
            label for="environment" { "Environment" }
            select #environment name="environment" {
                option value="live" { "live" }
                option value="dev" { "dev (falls back to live when unset)" }
            }
            label for="value" { "Value" }
            input #value name="value" type="password" required autocomplete="new-password" spellcheck="false";
            p.help { "The value is sealed at once and never shown again, here or anywhere." }
            button type="submit" { "Save secret" }
        }
        @if !missing.is_empty() {
            h2 { "Missing" }
            ul { @for (name, connector) in &missing {
                li { code { (name) } ", named by connector " (connector) " — "
                    a href={ "/console/secrets?name=" (super::enc(name)) } aria-label={ "Set secret " (name) } { "set it" } }
            } }
        }
        h2 { "Secrets" }
        @if secrets.is_empty() {
            p.muted { "No secrets yet." }
        } @else {
            div.scroll { table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Environments" } th scope="col" { "Updated" } th scope="col" { "Actions" } } }
                tbody { @for s in &secrets { tr {
                    th scope="row" { code { (s.name) } }
                    td { (s.environments.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(", ")) }
                    td { (rfc3339(s.updated_at)) }
                    td {
                        a href={ "/console/secrets?name=" (super::enc(&s.name)) } aria-label={ "Replace secret " (s.name) } { "Replace" }
                        " "
                        form.inline method="post" action="/console/secrets/delete" {
                        (operator.csrf_field())
                        input type="hidden" name="name" value=(s.name);
                        button.danger type="submit" aria-label={ "Delete secret " (s.name) } { "Delete" }
                        }
                    }
                } } }
            } }
        }
    };
    Ok(operator.page(Nav::Secrets, "Secrets", notice, body))
}

#[derive(Deserialize)]
pub(crate) struct PutForm {
    csrf: String,
    name: String,
    environment: Option<String>,
    value: SecretString,
}

/// `POST /console/secrets`: as `PUT /v1/admin/secrets/{name}`.
pub(crate) async fn put(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<PutForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::bad_form())?;
    operator.check(&form.csrf)?;
    let name = form.name.trim();
    let env = match form.environment.as_deref() {
        None | Some("") => Env::Live,
        Some(e) => e.parse::<Env>().map_err(|e| latchkey_core::CallError::invalid_params(e.to_string()))?,
    };
    store(&state, &operator, name, env, &form.value).await?;
    Ok(operator.redirect("/console/secrets?done=saved"))
}

/// Seals `value` as secret `name` in `env`, audited as `secret.put` first: the one way the
/// console writes a secret (this page, and a new connector's secrets).
pub(crate) async fn store(
    state: &AppState,
    operator: &Operator,
    name: &str,
    env: Env,
    value: &SecretString,
) -> Result<(), Failure> {
    state.audit("secret.put", |_| {
        let mut f = super::keys::change(operator, "secret", name);
        f.insert("environment".into(), env.as_str().into());
        f
    })?;
    state.engine.admin().put_secret(name, env, value).await?;
    Ok(())
}

#[derive(Deserialize)]
pub(crate) struct NameForm {
    csrf: String,
    name: String,
}

/// `POST /console/secrets/delete`: as `DELETE /v1/admin/secrets/{name}`.
pub(crate) async fn delete(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<NameForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::bad_form())?;
    operator.check(&form.csrf)?;
    state.audit("secret.delete", |_| super::keys::change(&operator, "secret", &form.name))?;
    if !state.engine.admin().delete_secret(&form.name).await? {
        return Err(latchkey_core::CallError::not_found(format!("no secret named `{}`", form.name)).into());
    }
    Ok(operator.redirect("/console/secrets?done=deleted"))
}
