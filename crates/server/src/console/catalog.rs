//! New connectors: the provider catalog (searched and filtered by a plain GET form), a
//! template's form (the connector's name, the template's parameters, the fields it leaves to
//! the connector, its secrets, optional overrides) and a blank connector (TOML or JSON of the
//! `[connectors.NAME]` shape). Both create an API connector through
//! [`Admin::create_connector`], the checks of `PUT /v1/admin/connectors/{name}` with no
//! replacing; the secrets typed go to the vault as the secrets page writes them, only once the
//! connector has passed every check, and are never put back into a page.
//!
//! [`Admin::create_connector`]: latchkey_core::engine::Admin::create_connector

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use http::StatusCode;
use latchkey_core::engine::PutConnectorError;
use latchkey_core::providers::{self, Template};
use latchkey_core::{Env, ErrorCode};
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::layout::{Nav, Notice};
use super::session::Operator;
use super::{Failure, enc};
use crate::AppState;

/// The catalog's groups, by what the user has to hand: (query value, heading, the filter's
/// short label, methods).
const GROUPS: [(&str, &str, &str, &[&str]); 4] = [
    (
        "user",
        "Each user connects their own account (OAuth)",
        "Users connect (OAuth)",
        &["oauth2_authorization_code", "oauth1_authorization"],
    ),
    (
        "app",
        "The app's own credentials (OAuth client, service account, app key pair)",
        "App credentials",
        &["oauth2_client_credentials", "jwt_bearer", "oauth2_custom_token", "oauth2_password"],
    ),
    ("key", "An API key, token or password", "API key or token", &["api_key_header", "api_key_query", "basic"]),
    ("signed", "Signed requests", "Signed requests", &["aws_sigv4", "oauth1"]),
];

/// The group a template's method belongs to (methods no group names go under the last).
fn group_of(t: &Template) -> &'static str {
    let method = t.method().unwrap_or_default();
    GROUPS.iter().find(|(_, _, _, methods)| methods.contains(&method)).map_or("signed", |(g, _, _, _)| g)
}

#[derive(Deserialize, Default)]
pub(crate) struct CatalogQuery {
    /// Words the provider's name or title contains.
    q: Option<String>,
    /// One of [`GROUPS`]' query values; empty: every group.
    kind: Option<String>,
}

/// `GET /console/catalog`: every template, grouped by what the user has to hand, each with
/// its title, method and documentation; a GET form narrows it.
pub(crate) async fn catalog(
    operator: Operator,
    q: Result<Query<CatalogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, Failure> {
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let words: Vec<String> = q.q.as_deref().unwrap_or("").split_whitespace().map(str::to_lowercase).collect();
    let kind = q.kind.as_deref().filter(|k| GROUPS.iter().any(|(g, _, _, _)| g == k));
    let matches = |t: &Template| {
        let hay = format!("{} {}", t.name, t.title).to_lowercase();
        words.iter().all(|w| hay.contains(w.as_str())) && kind.is_none_or(|k| group_of(t) == k)
    };
    let mut found: Vec<&Template> = providers::all().filter(|t| matches(t)).collect();
    found.sort_by_key(|t| t.title.to_lowercase());
    let body = html! {
        p { "Choose the API to connect: its template fills the endpoints, scopes and quirks, and the next page asks only for what is yours. "
            "Or " a href="/console/import" { "import" } " a cURL command, an OpenAPI document or a Postman collection, "
            "or start from a " a href="/console/blank-connector" { "blank connector" } " (TOML or JSON)." }
        form.filters method="get" action="/console/catalog" role="search" {
            label { "Search" input name="q" type="search" value=(q.q.as_deref().unwrap_or("")) autocomplete="off" spellcheck="false"; }
            label { "Kind"
                select name="kind" {
                    option value="" { "Any" }
                    @for (g, _, label, _) in GROUPS {
                        option value=(g) selected[kind == Some(g)] { (label) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        @if found.is_empty() {
            p { "No provider template matches. Try fewer words, or start from a " a href="/console/blank-connector" { "blank connector" } "." }
        }
        @for (g, heading, _, _) in GROUPS {
            @let in_group: Vec<&&Template> = found.iter().filter(|t| group_of(t) == g).collect();
            @if !in_group.is_empty() {
                h2 { (heading) " (" (in_group.len()) ")" }
                div.scroll { table {
                    thead { tr { th scope="col" { "Provider" } th scope="col" { "Method" } th scope="col" { "Parameters" } th scope="col" { "Documentation" } } }
                    tbody { @for t in in_group { tr {
                        th scope="row" { a href={ "/console/catalog/" (enc(&t.name)) } { (t.title) } br; span.muted { code { (t.name) } } }
                        td { code { (t.method().unwrap_or_default()) } }
                        td { (t.params.keys().cloned().collect::<Vec<_>>().join(", ")) }
                        td { @if let Some(d) = t.docs.first() {
                            a href=(d) rel="noreferrer" aria-label={ "Documentation of " (t.title) } { "docs" }
                        } }
                    } } }
                } }
            }
        }
    };
    Ok(operator.page(Nav::Connectors, "New connector", None, body))
}

/// What the operator typed into a template's form, secrets left out (they are never shown
/// again, nor kept for a second try).
#[derive(Default)]
struct Typed {
    name: String,
    params: BTreeMap<String, String>,
    /// The template's non-secret `needs`, by field.
    fields: BTreeMap<String, String>,
    scope: String,
    base_url: String,
    more: String,
    environment: String,
}

/// Problems by the form input they belong to (`name`, `param.X`, `field.X`, `secret.X`,
/// `scope`, `base_url`, `more`), and those of no input.
#[derive(Default)]
struct Problems {
    at: BTreeMap<String, Vec<String>>,
    general: Vec<String>,
}

impl Problems {
    fn add(&mut self, input: &str, message: impl Into<String>) {
        self.at.entry(input.to_owned()).or_default().push(message.into());
    }

    fn count(&self) -> usize {
        self.at.values().map(Vec::len).sum::<usize>() + self.general.len()
    }

    /// The problems of `input`, shown under it (its `id` for `aria-describedby`).
    fn under(&self, input: &str) -> Markup {
        html! {
            @if let Some(list) = self.at.get(input) {
                @for m in list { p.bad id={ (dom_id(input)) "-problem" } { (m) } }
            }
        }
    }

    fn described_by(&self, input: &str) -> Option<String> {
        self.at.contains_key(input).then(|| format!("{}-problem", dom_id(input)))
    }
}

/// A template's text, its `backquoted` words as code (escaped like any value).
fn prose(text: &str) -> Markup {
    html! {
        @for (i, part) in text.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

/// A form input's name as an element id (`field.auth.client_id` → `field-auth-client_id`).
fn dom_id(input: &str) -> String {
    input.replace('.', "-")
}

/// The vault secret a template's secret field is stored as, for connector `connector`.
fn secret_name(connector: &str, field: &str) -> String {
    format!("{connector}_{}", field.rsplit('.').next().unwrap_or(field))
}

/// The template's default scopes, as the form shows them.
fn template_scope(t: &Template) -> Option<String> {
    match t.connector.get("auth")?.get("scope")? {
        Value::Array(a) => Some(a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ")),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn template_of(name: &str) -> Result<&'static Template, Failure> {
    providers::get(name).ok_or_else(|| {
        Failure::new(
            StatusCode::NOT_FOUND,
            format!("There is no provider template named `{name}`: the catalog lists them."),
        )
    })
}

/// `GET /console/catalog/{provider}`: the template's form, with its defaults.
pub(crate) async fn provider_form(
    State(state): State<AppState>,
    operator: Operator,
    Path(provider): Path<String>,
) -> Result<Response, Failure> {
    let t = template_of(&provider)?;
    let typed = Typed {
        name: t.name.clone(),
        params: t.params.iter().filter_map(|(k, p)| Some((k.clone(), p.default.clone()?))).collect(),
        environment: "live".into(),
        ..Typed::default()
    };
    let existing = existing_secrets(&state).await?;
    Ok(operator.page(
        Nav::Connectors,
        &format!("New connector: {}", t.title),
        None,
        provider_body(t, &typed, &Problems::default(), &existing, &operator),
    ))
}

async fn existing_secrets(state: &AppState) -> Result<Vec<String>, Failure> {
    Ok(state.engine.admin().list_secrets().await?.into_iter().map(|s| s.name).collect())
}

fn provider_body(t: &Template, typed: &Typed, problems: &Problems, existing: &[String], operator: &Operator) -> Markup {
    let connector = if typed.name.is_empty() { t.name.as_str() } else { typed.name.as_str() };
    let secrets: Vec<_> = t.needs.iter().filter(|n| n.secret).collect();
    let fields: Vec<_> = t.needs.iter().filter(|n| !n.secret).collect();
    html! {
        @if !t.notes.is_empty() {
            ul { @for n in &t.notes { li { (prose(n)) } } }
        }
        p { "Taken from the provider's documentation: "
            @for (i, d) in t.docs.iter().enumerate() {
                @if i > 0 { ", " }
                a href=(d) rel="noreferrer" { (d) }
            }
            ". " a href="/console/catalog" { "Back to the catalog" } "." }
        @if !problems.general.is_empty() {
            ul.bad #problems { @for m in &problems.general { li { (m) } } }
        }
        form.card method="post" action={ "/console/catalog/" (enc(&t.name)) } {
            (operator.csrf_field())
            label for="name" { "Connector name" }
            input #name name="name" type="text" required autocomplete="off" spellcheck="false" value=(typed.name)
                aria-describedby=[problems.described_by("name")];
            p.help { "Letters, digits, " code { "_" } " and " code { "-" } ", as in " code { "/v1/proxy/NAME/…" } " and " code { "/v1/connectors/NAME/calls/…" } "." }
            (problems.under("name"))
            @for (key, p) in &t.params {
                @let input = format!("param.{key}");
                label for=(dom_id(&input)) { "Parameter " code { (key) } @if p.default.is_none() { " (required)" } }
                input id=(dom_id(&input)) name=(input) type="text" autocomplete="off" spellcheck="false"
                    placeholder=(p.example) value=(typed.params.get(key).map(String::as_str).unwrap_or(""))
                    aria-describedby=[problems.described_by(&input)];
                p.help { (prose(&p.about)) @if let Some(d) = &p.default { " (default " code { (d) } ")" } }
                (problems.under(&input))
            }
            @for n in &fields {
                @let input = format!("field.{}", n.field);
                label for=(dom_id(&input)) { code { (n.field) } }
                input id=(dom_id(&input)) name=(input) type="text" autocomplete="off" spellcheck="false"
                    value=(typed.fields.get(&n.field).map(String::as_str).unwrap_or(""))
                    aria-describedby=[problems.described_by(&input)];
                p.help { (prose(&n.about)) }
                (problems.under(&input))
            }
            @if !secrets.is_empty() {
                fieldset {
                    legend { "Secrets" }
                    p.help { "Each value is sealed into the vault when the connector is created, and never shown again, here or anywhere." }
                    @for n in &secrets {
                        @let input = format!("secret.{}", n.field);
                        @let stored = secret_name(connector, &n.field);
                        label for=(dom_id(&input)) { code { (n.field) } }
                        input id=(dom_id(&input)) name=(input) type="password" autocomplete="new-password" spellcheck="false"
                            aria-describedby=[problems.described_by(&input)];
                        p.help { (prose(&n.about)) ". Stored as secret " code { (stored) } "."
                            @if existing.contains(&stored) { " A secret of that name exists: leave this empty to use it." } }
                        (problems.under(&input))
                    }
                    label for="environment" { "Store the secrets for" }
                    select #environment name="environment" {
                        option value="live" selected[typed.environment != "dev"] { "live (dev falls back to it)" }
                        option value="dev" selected[typed.environment == "dev"] { "dev only" }
                    }
                }
            }
            @if let Some(scope) = template_scope(t) {
                label for="scope" { "Scopes (optional)" }
                input #scope name="scope" type="text" autocomplete="off" spellcheck="false" value=(typed.scope)
                    aria-describedby=[problems.described_by("scope")];
                p.help { "Separated by spaces; empty keeps the template's: " code { (scope) } }
                (problems.under("scope"))
            }
            label for="base_url" { "Base URL (optional)" }
            input #base_url name="base_url" type="text" inputmode="url" autocomplete="off" spellcheck="false" value=(typed.base_url)
                aria-describedby=[problems.described_by("base_url")];
            p.help { "Empty keeps the template's: " code { (t.connector.get("base_url").and_then(Value::as_str).unwrap_or("")) } }
            (problems.under("base_url"))
            label for="more" { "More fields (TOML, optional)" }
            textarea #more name="more" spellcheck="false" aria-describedby=[problems.described_by("more")] { (typed.more) }
            p.help { "Written as in " code { "[connectors.NAME]" } ", merged over the fields above, e.g. " code { "calls.me = { path = \"/user\" }" } ". Name secrets with " code { "{ secret = \"NAME\" }" } "; never write a secret's value here." }
            (problems.under("more"))
            button type="submit" { "Create connector" }
        }
    }
}

/// `POST /console/catalog/{provider}`: checks the connector made from the form, then stores
/// the secrets typed and creates the connector (a name in use is refused); on any problem,
/// the form again with every problem next to its field and the values typed (never the
/// secrets).
pub(crate) async fn create_from_template(
    State(state): State<AppState>,
    operator: Operator,
    Path(provider): Path<String>,
    form: Result<axum::Form<Vec<(String, SecretString)>>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let t = template_of(&provider)?;
    let axum::Form(pairs) = form.map_err(|_| Failure::bad_form())?;
    let plain = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.expose_secret().trim().to_owned());
    operator.check(&plain("csrf").unwrap_or_default())?;
    let mut typed = Typed {
        name: plain("name").unwrap_or_default(),
        scope: plain("scope").unwrap_or_default(),
        base_url: plain("base_url").unwrap_or_default(),
        more: pairs.iter().find(|(n, _)| n == "more").map(|(_, v)| v.expose_secret().to_owned()).unwrap_or_default(),
        environment: plain("environment").unwrap_or_else(|| "live".into()),
        ..Typed::default()
    };
    for key in t.params.keys() {
        if let Some(v) = plain(&format!("param.{key}")).filter(|v| !v.is_empty()) {
            typed.params.insert(key.clone(), v);
        }
    }
    for n in t.needs.iter().filter(|n| !n.secret) {
        if let Some(v) = plain(&format!("field.{}", n.field)).filter(|v| !v.is_empty()) {
            typed.fields.insert(n.field.clone(), v);
        }
    }
    let typed_secrets: Vec<(&str, &SecretString)> = t
        .needs
        .iter()
        .filter(|n| n.secret)
        .filter_map(|n| {
            let value = pairs.iter().find(|(k, _)| *k == format!("secret.{}", n.field)).map(|(_, v)| v)?;
            (!value.expose_secret().trim().is_empty()).then_some((n.field.as_str(), value))
        })
        .collect();
    let existing = existing_secrets(&state).await?;
    let mut problems = Problems::default();
    let env = match typed.environment.as_str() {
        "dev" => Env::Dev,
        _ => Env::Live,
    };
    let name = typed.name.clone();

    // The connector the form describes.
    let mut json = Map::new();
    json.insert("provider".into(), Value::String(t.name.clone()));
    if !typed.params.is_empty() {
        json.insert(
            "provider_params".into(),
            Value::Object(typed.params.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()),
        );
    }
    for (field, value) in &typed.fields {
        providers::set_field(&mut json, field, Value::String(value.clone()));
    }
    for n in t.needs.iter().filter(|n| n.secret) {
        let stored = secret_name(&name, &n.field);
        let typed_one = typed_secrets.iter().any(|(f, _)| *f == n.field);
        if typed_one || existing.contains(&stored) {
            providers::set_field(&mut json, &n.field, serde_json::json!({ "secret": stored }));
        }
    }
    if !typed.scope.is_empty() {
        let list: Vec<Value> = typed.scope.split_whitespace().map(|s| Value::String(s.to_owned())).collect();
        providers::set_field(&mut json, "auth.scope", Value::Array(list));
    }
    if !typed.base_url.is_empty() {
        json.insert("base_url".into(), Value::String(typed.base_url.clone()));
    }
    if !typed.more.trim().is_empty() {
        match toml::from_str::<toml::Table>(&typed.more).map(serde_json::to_value) {
            Ok(Ok(Value::Object(more))) => merge_over(&mut json, more),
            Ok(_) => problems.add("more", "could not be read as a table"),
            Err(e) => problems.add("more", format!("is not TOML: {}", e.message())),
        }
    }
    if problems.count() == 0 {
        match check_new(&state, &name, Value::Object(json.clone())).await {
            Ok(()) => {}
            Err(Checked::Problems(list)) => {
                for (at, message) in list {
                    match at {
                        At::Name => problems.add("name", message),
                        At::Field(field) => problems_for(t, &mut problems, &field, message),
                        At::Whole => problems.general.push(message),
                    }
                }
            }
            Err(Checked::Failed(f)) => return Err(f),
        }
    }
    // A secret's name must be one the vault takes, before anything is written.
    for (field, _) in &typed_secrets {
        if let Err(e) = latchkey_core::secrets::check_secret_name(&secret_name(&name, field)) {
            problems.add(&format!("secret.{field}"), e.message);
        }
    }
    if problems.count() > 0 {
        let notice = Notice::error(&format!(
            "The connector was not created: {} to fix (below). The secrets typed were not kept: type them again.",
            plural(problems.count(), "problem")
        ));
        return Ok(operator.page_with(
            StatusCode::BAD_REQUEST,
            Nav::Connectors,
            &format!("New connector: {}", t.title),
            Some(notice),
            provider_body(t, &typed, &problems, &existing, &operator),
        ));
    }
    for (field, value) in &typed_secrets {
        super::secrets::store(&state, &operator, &secret_name(&name, field), env, value).await?;
    }
    create(&state, &operator, &name, Value::Object(json)).await
}

pub(super) fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}

/// `more` over `json`: tables merged key by key, any other value replacing.
fn merge_over(json: &mut Map<String, Value>, more: Map<String, Value>) {
    for (k, v) in more {
        match (json.get_mut(&k), v) {
            (Some(Value::Object(mine)), Value::Object(theirs)) => merge_over(mine, theirs),
            (_, v) => {
                json.insert(k, v);
            }
        }
    }
}

/// Where a problem of the merged connector is shown on a template's form.
fn problems_for(t: &Template, problems: &mut Problems, field: &str, message: String) {
    if let Some(key) = field.strip_prefix("provider_params.")
        && t.params.contains_key(key)
    {
        problems.add(&format!("param.{key}"), message);
        return;
    }
    if let Some(n) = t.needs.iter().find(|n| field == n.field || field.starts_with(&format!("{}.", n.field))) {
        let kind = if n.secret { "secret" } else { "field" };
        problems.add(&format!("{kind}.{}", n.field), message);
        return;
    }
    if field == "auth.scope" && template_scope(t).is_some() {
        problems.add("scope", message);
    } else if field == "base_url" {
        problems.add("base_url", message);
    } else {
        problems.general.push(format!("{field}: {message}"));
    }
}

/// Where a problem of a new connector belongs.
pub(super) enum At {
    /// The connector's name.
    Name,
    /// A field of the connector (`auth.client_id`).
    Field(String),
    /// No one field (the message says which).
    Whole,
}

pub(super) enum Checked {
    /// Each problem, from the configuration's checks, the egress rules or the name's.
    Problems(Vec<(At, String)>),
    Failed(Failure),
}

/// The checks of `PUT /v1/admin/connectors/{name}`, and that the name is free.
pub(super) async fn check_new(state: &AppState, name: &str, json: Value) -> Result<(), Checked> {
    if name.is_empty() {
        return Err(Checked::Problems(vec![(At::Name, "missing: give the connector a name".into())]));
    }
    if state.engine.connector(name).is_some() {
        return Err(Checked::Problems(vec![(At::Name, taken(name))]));
    }
    match state.engine.admin().check_connector(name, json).await {
        Ok(_) => Ok(()),
        Err(PutConnectorError::Invalid(errors)) => Err(Checked::Problems(
            errors
                .0
                .into_iter()
                .map(|p| match p.field.filter(|f| !f.is_empty()) {
                    Some(f) => (At::Field(f), p.message),
                    None => (At::Name, p.message),
                })
                .collect(),
        )),
        // The file defines that name.
        Err(PutConnectorError::Call(e)) if e.code == ErrorCode::Forbidden => {
            Err(Checked::Problems(vec![(At::Name, e.message)]))
        }
        // A URL that reaches a private address (its message names the field).
        Err(PutConnectorError::Call(e)) if e.code == ErrorCode::EgressRefused => {
            Err(Checked::Problems(vec![(At::Whole, e.message)]))
        }
        Err(PutConnectorError::Call(e)) => Err(Checked::Failed(e.into())),
    }
}

fn taken(name: &str) -> String {
    format!("a connector named `{name}` exists already: choose another name (a new connector never replaces one)")
}

/// Creates the checked connector (audited as `connector.put`, as the admin API's), then its
/// page says so.
pub(super) async fn create(
    state: &AppState,
    operator: &Operator,
    name: &str,
    json: Value,
) -> Result<Response, Failure> {
    state.audit("connector.put", |_| super::keys::change(operator, "connector", name))?;
    match state.engine.admin().create_connector(name, json).await {
        Ok(_) => Ok(operator.redirect(&format!("/console/connectors/{}?created=1", enc(name)))),
        Err(PutConnectorError::Invalid(errors)) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            errors.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
        )),
        Err(PutConnectorError::Call(e)) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub(crate) struct BlankForm {
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    definition: String,
}

/// `GET /console/blank-connector`.
pub(crate) async fn blank_form(operator: Operator) -> Response {
    operator.page(Nav::Connectors, "New connector: blank", None, blank_body("", "", &[], &operator))
}

const BLANK_EXAMPLE: &str = "base_url = \"https://api.example.com/v1\"\n\
auth = { method = \"api_key_header\", name = \"Authorization\", prefix = \"Bearer\", key = { secret = \"example_key\" } }\n\
calls.me = { path = \"/me\" }";

fn blank_body(name: &str, definition: &str, problems: &[String], operator: &Operator) -> Markup {
    html! {
        p { "The connector's table, as " code { "[connectors.NAME]" } " in the configuration file (TOML), or the same as JSON "
            "(the body of " code { "PUT /v1/admin/connectors/NAME" } "). It may say " code { "provider = \"NAME\"" } "; "
            "secrets are named (" code { "{ secret = \"NAME\" }" } ") and set on the " a href="/console/secrets" { "Secrets" } " page. "
            a href="/console/catalog" { "Back to the catalog" } "." }
        @if !problems.is_empty() {
            ul.bad #problems { @for m in problems { li { (m) } } }
        }
        form.card method="post" action="/console/blank-connector" {
            (operator.csrf_field())
            label for="name" { "Connector name" }
            input #name name="name" type="text" autocomplete="off" spellcheck="false" value=(name);
            p.help { "Empty takes it from a pasted " code { "[connectors.NAME]" } " header." }
            label for="definition" { "Definition (TOML or JSON)" }
            textarea #definition name="definition" spellcheck="false" required placeholder=(BLANK_EXAMPLE) { (definition) }
            button type="submit" { "Create connector" }
        }
    }
}

/// The connector table a blank connector's text holds, and the name a `[connectors.NAME]`
/// header gives it.
pub(super) fn parse_definition(text: &str) -> Result<(Option<String>, Map<String, Value>), String> {
    let trimmed = text.trim();
    let value = if trimmed.starts_with('{') {
        serde_json::from_str::<Value>(trimmed).map_err(|e| format!("the definition is not JSON: {e}"))?
    } else {
        let table = toml::from_str::<toml::Table>(trimmed)
            .map_err(|e| format!("the definition is not TOML: {}", e.message()))?;
        serde_json::to_value(table).map_err(|e| e.to_string())?
    };
    let Value::Object(mut map) = value else { return Err("the definition must be a table (an object)".into()) };
    // `[connectors.NAME]` pasted whole: its one connector.
    if map.len() == 1
        && let Some(Value::Object(connectors)) = map.get("connectors")
        && connectors.len() == 1
        && let Some((name, Value::Object(_))) = connectors.iter().next()
    {
        let name = name.clone();
        if let Some(Value::Object(connectors)) = map.remove("connectors")
            && let Some(Value::Object(inner)) = connectors.into_iter().next().map(|(_, v)| v)
        {
            return Ok((Some(name), inner));
        }
    }
    Ok((None, map))
}

/// `POST /console/blank-connector`.
pub(crate) async fn create_blank(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<BlankForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::bad_form())?;
    operator.check(&form.csrf)?;
    let again = |problems: Vec<String>, name: &str| {
        let notice = Notice::error(&format!(
            "The connector was not created: {} to fix (below).",
            plural(problems.len(), "problem")
        ));
        operator.page_with(
            StatusCode::BAD_REQUEST,
            Nav::Connectors,
            "New connector: blank",
            Some(notice),
            blank_body(name, &form.definition, &problems, &operator),
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
    match check_new(&state, &name, Value::Object(table.clone())).await {
        Ok(()) => create(&state, &operator, &name, Value::Object(table)).await,
        Err(Checked::Problems(list)) => {
            let shown = list
                .into_iter()
                .map(|(at, m)| match at {
                    At::Field(f) => format!("{f}: {m}"),
                    At::Name => format!("name: {m}"),
                    At::Whole => m,
                })
                .collect();
            Ok(again(shown, &name))
        }
        Err(Checked::Failed(f)) => Err(f),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_connectors_table_gives_its_name_and_json_is_read_too() {
        let (name, t) = parse_definition("[connectors.weather]\nbase_url = \"https://a.example\"\n").unwrap();
        assert_eq!(name.as_deref(), Some("weather"));
        assert_eq!(t["base_url"], "https://a.example");
        let (name, t) = parse_definition("base_url = \"https://a.example\"").unwrap();
        assert_eq!((name, t["base_url"].as_str()), (None, Some("https://a.example")));
        let (_, t) = parse_definition(" {\"provider\": \"openai\"} ").unwrap();
        assert_eq!(t["provider"], "openai");
        assert!(parse_definition("base_url = ").unwrap_err().starts_with("the definition is not TOML"));
        assert!(parse_definition("{\"base_url\": ").unwrap_err().starts_with("the definition is not JSON"));
    }

    #[test]
    fn more_fields_merge_table_by_table() {
        let mut json = serde_json::json!({"auth": {"client_id": "a", "scope": ["x"]}, "base_url": "u"});
        let more = serde_json::json!({"auth": {"scope": ["y"]}, "calls": {"me": {"path": "/me"}}});
        let (Value::Object(j), Value::Object(m)) = (&mut json, more) else { panic!() };
        merge_over(j, m);
        assert_eq!(
            json,
            serde_json::json!({"auth": {"client_id": "a", "scope": ["y"]}, "base_url": "u", "calls": {"me": {"path": "/me"}}})
        );
    }

    #[test]
    fn every_template_lands_in_a_group_with_a_heading() {
        for t in providers::all() {
            let g = group_of(t);
            let (_, _, _, methods) = GROUPS.iter().find(|(name, _, _, _)| *name == g).unwrap();
            assert!(methods.contains(&t.method().unwrap_or_default()), "{}: {:?} is in no group", t.name, t.method());
        }
    }
}
