//! A new connector imported (`/console/import`): a pasted cURL command, OpenAPI 3.x / Swagger
//! 2.0 document (JSON or YAML) or Postman v2.1 collection goes through the importers of
//! `latchkey import` (the `latchkey-import` crate), and the page shows the connector's TOML to
//! review and edit, and the credentials found by secret name only. Create then runs the blank
//! connector's path: the checks of `PUT /v1/admin/connectors/{name}`, then the credentials the
//! connector names sealed into the vault, then the connector created.
//!
//! Only pasted text is read: the server never fetches a URL for an import (an operator's form
//! must not make Latchkey reach addresses it chooses; docs/decisions.md). The credentials found
//! travel from the preview to Create sealed by the vault in a hidden field
//! ([`Engine::seal_import_credentials`]), bound to the operator's session and good for 15
//! minutes: their values are never in a page. The pasted text itself is shown again (after an
//! importer's error) only for an OpenAPI document: a cURL command or a collection may hold a
//! credential.
//!
//! [`Engine::seal_import_credentials`]: latchkey_core::engine::Engine::seal_import_credentials

use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::response::Response;
use http::StatusCode;
use latchkey_core::Env;
use latchkey_import::{Auth, CLIENT_ID_PLACEHOLDER, Imported, Kind, Options, Select};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::Failure;
use super::catalog::{At, Checked, check_new, create as create_connector, parse_definition, plural};
use super::layout::{Nav, Notice};
use super::session::Operator;
use crate::AppState;

/// The largest document imported (bytes of text, as pasted).
pub(crate) const MAX_DOCUMENT: usize = 2 * 1024 * 1024;
/// The largest form read: the document percent-encoded (up to three bytes for one) and the rest.
pub(crate) const BODY_LIMIT: usize = 3 * MAX_DOCUMENT + 64 * 1024;

const TITLE: &str = "New connector: import";

/// The import form as sent (and as shown again).
#[derive(Deserialize, Default)]
pub(crate) struct ImportForm {
    #[serde(default)]
    csrf: String,
    /// `""` (detect), `curl`, `openapi` or `postman`.
    #[serde(default)]
    kind: String,
    #[serde(default)]
    document: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    base_url: String,
    /// OpenAPI only: tags, separated by commas or spaces.
    #[serde(default)]
    tags: String,
}

fn kind_of(form: &ImportForm) -> Kind {
    match form.kind.as_str() {
        "curl" => Kind::Curl,
        "openapi" => Kind::Openapi,
        "postman" => Kind::Postman,
        _ => Kind::detect(&form.document),
    }
}

/// A form that could not be read: too large (the body limit), or not a form.
fn unreadable(rejection: &FormRejection) -> Failure {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The document is larger than an import reads here (about {} MiB): paste a smaller one (one part of \
                 the API, or without its examples), or import it with `latchkey import` on the command line.",
                MAX_DOCUMENT >> 20
            ),
        )
    } else {
        Failure::bad_form()
    }
}

/// `GET /console/import`.
pub(crate) async fn form(operator: Operator) -> Response {
    operator.page(Nav::Connectors, TITLE, None, form_body(&ImportForm::default(), None, &operator))
}

fn form_body(form: &ImportForm, problem: Option<&str>, operator: &Operator) -> Markup {
    html! {
        p { "Paste a " code { "curl" } " command, an OpenAPI 3.x or Swagger 2.0 document (JSON or YAML) or a Postman "
            "collection (v2.1): the next page shows the connector made from it, to review before it is created. "
            "Credentials found in it (an " code { "Authorization" } " header, " code { "-u" } ", an API key) go to the vault, "
            "never into the connector's definition. Documents are read from what is pasted only (at most "
            (MAX_DOCUMENT >> 20) " MiB): to import from a URL, download it first, or use " code { "latchkey import" } ". "
            a href="/console/catalog" { "Back to the catalog" } "." }
        form.card method="post" action="/console/import" {
            (operator.csrf_field())
            label for="kind" { "Kind" }
            select #kind name="kind" {
                option value="" selected[form.kind.is_empty()] { "Detect from the text" }
                option value="curl" selected[form.kind == "curl"] { "cURL command" }
                option value="openapi" selected[form.kind == "openapi"] { "OpenAPI or Swagger document" }
                option value="postman" selected[form.kind == "postman"] { "Postman collection (v2.1)" }
            }
            label for="document" { "Command or document" }
            textarea #document name="document" spellcheck="false" required
                aria-describedby=[problem.map(|_| "document-problem")] { (form.document) }
            @if let Some(m) = problem { p.bad #document-problem { (m) } }
            label for="name" { "Connector name (optional)" }
            input #name name="name" type="text" autocomplete="off" spellcheck="false" value=(form.name);
            p.help { "Empty takes it from the document's title or the host." }
            label for="base_url" { "Base URL (optional)" }
            input #base_url name="base_url" type="text" inputmode="url" autocomplete="off" spellcheck="false" value=(form.base_url);
            p.help { "Instead of the document's server (a staging host, a local copy)." }
            label for="tags" { "Only these tags (OpenAPI, optional)" }
            input #tags name="tags" type="text" autocomplete="off" spellcheck="false" value=(form.tags);
            p.help { "Separated by commas or spaces; empty imports every operation." }
            button type="submit" { "Preview" }
        }
    }
}

/// What an import gives, by the form's choices, or the importer's message.
fn run(form: &ImportForm) -> Result<Imported, String> {
    if form.document.len() > MAX_DOCUMENT {
        return Err(format!(
            "the document is larger than {} MiB, more than an import reads here: paste a smaller one (one part of \
             the API, or without its examples), or use `latchkey import` on the command line",
            MAX_DOCUMENT >> 20
        ));
    }
    let options = Options {
        name: Some(form.name.trim()).filter(|n| !n.is_empty()),
        base_url: Some(form.base_url.trim()).filter(|u| !u.is_empty()),
    };
    let imported = match kind_of(form) {
        Kind::Curl => latchkey_import::curl(&form.document, options, None),
        Kind::Postman => latchkey_import::postman(&form.document, options),
        Kind::Openapi => {
            let tags =
                form.tags.split([',', ' ']).map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
            latchkey_import::openapi(&form.document, options, &Select { tags, operations: Vec::new() })
        }
    };
    imported.map_err(|e| e.to_string())
}

/// `POST /console/import`: the preview, or the form again with the importer's error next to
/// the document.
pub(crate) async fn preview(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<ImportForm>, FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(mut form) = form.map_err(|r| unreadable(&r))?;
    operator.check(&form.csrf)?;
    let kind = kind_of(&form);
    let imported = match run(&form) {
        Ok(i) => i,
        Err(e) => {
            let mut message = e;
            // A cURL command or a collection may hold a credential: not put back in the page.
            if kind != Kind::Openapi {
                form.document.clear();
                message.push_str(". The text is not shown again (it may hold a credential): paste it again.");
            } else if form.document.len() > MAX_DOCUMENT {
                form.document.clear();
            }
            let notice = Notice::error(&format!("Nothing was imported from the {}: see below.", what(kind)));
            return Ok(operator.page_with(
                StatusCode::BAD_REQUEST,
                Nav::Connectors,
                TITLE,
                Some(notice),
                form_body(&form, Some(&message), &operator),
            ));
        }
    };
    let sealed = state.engine.seal_import_credentials(&operator.key_id, operator.csrf(), imported.found());
    let mut notes: Vec<String> = imported.notes().to_vec();
    if matches!(imported.connector.auth, Auth::ClientCredentials { .. } | Auth::AuthorizationCode { .. }) {
        notes.push(format!(
            "replace client_id = \"{CLIENT_ID_PLACEHOLDER}\" with the client id the provider gave you; the documents never hold it"
        ));
    }
    let found: Vec<String> = imported.found().iter().map(|(n, _)| n.clone()).collect();
    let mut unset = Vec::new();
    if let Some(secret) = imported.connector.auth.secret()
        && !found.iter().any(|s| s == secret)
    {
        unset.push(secret.to_owned());
    }
    let review = Review {
        name: imported.name.clone(),
        definition: imported.toml.clone(),
        sealed,
        found,
        unset,
        notes,
        environment: "live".into(),
    };
    Ok(operator.page(Nav::Connectors, "New connector: review the import", None, review_body(&review, &[], &operator)))
}

fn what(kind: Kind) -> &'static str {
    match kind {
        Kind::Curl => "cURL command",
        Kind::Openapi => "OpenAPI document",
        Kind::Postman => "Postman collection",
    }
}

/// The review page's content.
struct Review {
    name: String,
    definition: String,
    /// The credentials found, sealed ([`Engine::seal_import_credentials`]).
    ///
    /// [`Engine::seal_import_credentials`]: latchkey_core::engine::Engine::seal_import_credentials
    sealed: String,
    /// The secret names of the credentials found.
    found: Vec<String>,
    /// A secret the connector reads that the document did not hold.
    unset: Vec<String>,
    notes: Vec<String>,
    environment: String,
}

fn review_body(r: &Review, problems: &[String], operator: &Operator) -> Markup {
    html! {
        p { "The connector made from the document, as " code { "[connectors.NAME]" } " in the configuration file. "
            "Edit it if you like, then create it. " a href="/console/import" { "Import another" } "." }
        @if !problems.is_empty() {
            ul.bad #problems { @for m in problems { li { (m) } } }
        }
        @if !r.notes.is_empty() {
            h2 { "Notes" }
            ul { @for n in &r.notes { li { (n) } } }
        }
        form.card method="post" action="/console/import/create" {
            (operator.csrf_field())
            input type="hidden" name="credentials" value=(r.sealed);
            label for="name" { "Connector name" }
            input #name name="name" type="text" required autocomplete="off" spellcheck="false" value=(r.name);
            label for="definition" { "Definition (TOML)" }
            textarea #definition name="definition" spellcheck="false" required rows="16" { (r.definition) }
            @if !r.found.is_empty() {
                fieldset #found {
                    legend { "Credentials found" }
                    p.help { "Found in the document; each will be stored in the vault when the connector is created "
                        "(never written into the definition, never shown)." }
                    ul { @for n in &r.found { li { "secret " code { (n) } } } }
                    label for="environment" { "Store them for" }
                    select #environment name="environment" {
                        option value="live" selected[r.environment != "dev"] { "live (dev falls back to it)" }
                        option value="dev" selected[r.environment == "dev"] { "dev only" }
                    }
                }
            }
            @for n in &r.unset {
                p.help { "The connector reads the secret " code { (n) } ", which the document did not hold: set it on the "
                    a href="/console/secrets" { "Secrets" } " page." }
            }
            button type="submit" { "Create connector" }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CreateForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    definition: String,
    #[serde(default)]
    credentials: String,
    #[serde(default)]
    environment: String,
}

/// Every `{ secret = "NAME" }` a connector's JSON names.
fn secrets_named(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if m.len() == 1
                && let Some(Value::String(name)) = m.get("secret")
            {
                out.push(name.clone());
            }
            m.values().for_each(|v| secrets_named(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| secrets_named(v, out)),
        _ => {}
    }
}

/// `POST /console/import/create`: the reviewed connector checked, then the credentials found
/// that it names sealed into the vault, then the connector created; on a problem, the review
/// again.
pub(crate) async fn create(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<CreateForm>, FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|r| unreadable(&r))?;
    operator.check(&form.csrf)?;
    let Some(found) = state.engine.open_import_credentials(&operator.key_id, operator.csrf(), &form.credentials) else {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "This review is too old (15 minutes) or from another session, so the credentials found in the document \
             are gone: import the document again.",
        ));
    };
    let env = if form.environment == "dev" { Env::Dev } else { Env::Live };
    let again = |problems: Vec<String>, name: &str| {
        let notice = Notice::error(&format!(
            "The connector was not created: {} to fix (below).",
            plural(problems.len(), "problem")
        ));
        let review = Review {
            name: name.to_owned(),
            definition: form.definition.clone(),
            sealed: form.credentials.clone(),
            found: found.iter().map(|(n, _)| n.clone()).collect(),
            unset: Vec::new(),
            notes: Vec::new(),
            environment: form.environment.clone(),
        };
        operator.page_with(
            StatusCode::BAD_REQUEST,
            Nav::Connectors,
            "New connector: review the import",
            Some(notice),
            review_body(&review, &problems, &operator),
        )
    };
    let (header_name, table) = match parse_definition(&form.definition) {
        Ok(v) => v,
        Err(why) => return Ok(again(vec![why], form.name.trim())),
    };
    let name = match form.name.trim() {
        "" => header_name.unwrap_or_default(),
        n => n.to_owned(),
    };
    let json = Value::Object(table);
    match check_new(&state, &name, json.clone()).await {
        Ok(()) => {}
        Err(Checked::Problems(list)) => {
            let shown = list
                .into_iter()
                .map(|(at, m)| match at {
                    At::Field(f) => format!("{f}: {m}"),
                    At::Name => format!("name: {m}"),
                    At::Whole => m,
                })
                .collect();
            return Ok(again(shown, &name));
        }
        Err(Checked::Failed(f)) => return Err(f),
    }
    // Only the credentials the reviewed connector still names are stored.
    let mut named = Vec::new();
    secrets_named(&json, &mut named);
    let stored: Vec<_> = found.iter().filter(|(n, _)| named.contains(n)).collect();
    let bad_names: Vec<String> = stored
        .iter()
        .filter_map(|(n, _)| {
            latchkey_core::secrets::check_secret_name(n).err().map(|e| format!("secret `{n}`: {}", e.message))
        })
        .collect();
    if !bad_names.is_empty() {
        return Ok(again(bad_names, &name));
    }
    for (secret, value) in stored {
        super::secrets::store(&state, &operator, secret, env, value).await?;
    }
    create_connector(&state, &operator, &name, json).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secrets_a_connector_names_are_found_wherever_they_are() {
        let json = serde_json::json!({
            "auth": {"method": "basic", "username": "u", "password": {"secret": "a_password"}},
            "calls": {"x": {"headers": {"X-Key": {"secret": "not-a-ref", "other": 1}}}},
            "list": [{"secret": "b_key"}]
        });
        let mut out = Vec::new();
        secrets_named(&json, &mut out);
        assert_eq!(out, ["a_password", "b_key"]);
    }
}
