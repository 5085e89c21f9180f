//! The connect page (`/connect`, SPEC §13): where an app's end user connects the accounts the
//! app asked for, hosted by Latchkey. Server-rendered HTML on the console's shell, stylesheet
//! and security headers (no script, nothing from another origin, `form-action 'self'`).
//!
//! - `GET /connect?session=…`: the single-use link from `POST /v1/connect`. Opening it spends
//!   it (a second opening is refused) and gives the browser the page's session in a cookie
//!   sealed by the vault (`lk_connect`, `Path=/connect`, `HttpOnly`, `SameSite=Lax` so that it
//!   comes back with the provider's redirect), then `303` to `/connect`.
//! - `GET /connect`: the connectors and their state for the session's user; an OAuth
//!   connector has a link to its login (`/connect/{connector}/start?csrf=…`, whose callback
//!   comes back here), a `per_user` connector a form with its fields.
//! - `POST /connect/{connector}`: the form; its values go to [`Engine::put_user_values`] (so
//!   `verify` runs), a refusal is shown on the page, and the values are never written back.
//! - `GET /connect/done?csrf=…`: back to the app's `return_to` with `status=done`.
//! - `GET /connect/style.css`, `GET /connect/logo`: the stylesheet (with the accent colour)
//!   and the configured logo, both from this origin.
//!
//! [`Engine::put_user_values`]: latchkey_core::engine::Engine::put_user_values

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use latchkey_core::engine::{PageConnector, PageMethod, PageSession, PageState};
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};

use crate::AppState;
use crate::console::layout::{Notice, STYLE, Shell};
use crate::console::{enc, html as page_response, see_other};
use crate::cookie::{self, SameSite};

/// The page session's cookie.
pub const COOKIE: &str = "lk_connect";
const DEFAULT_TITLE: &str = "Connect your accounts";

/// Every connect page route and its methods (HTML, outside the JSON API's `routes::api!`).
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/connect", &["get"]),
    ("/connect/style.css", &["get"]),
    ("/connect/logo", &["get"]),
    ("/connect/done", &["get"]),
    ("/connect/{connector}", &["post"]),
    ("/connect/{connector}/start", &["get"]),
];

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/connect", get(page))
        .route("/connect/style.css", get(style))
        .route("/connect/logo", get(logo))
        .route("/connect/done", get(done))
        // Another method on these paths is answered with the error page (a browser's).
        .route("/connect/{connector}", post(put_values).fallback(not_found))
        .route("/connect/{connector}/start", get(start).fallback(not_found))
        .layer(axum::middleware::map_response(crate::console::secure_headers))
}

use crate::cookie::value as cookie_value;

fn set_cookie(state: &AppState, value: &str, max_age_s: i64) -> Option<HeaderValue> {
    cookie::set(COOKIE, value, "/connect", SameSite::Lax, max_age_s, cookie::secure(state))
}

use crate::cookie::with as with_cookie;

fn shell() -> Shell<'static> {
    Shell { site: "Latchkey", stylesheet: "/connect/style.css" }
}

fn header(state: &AppState) -> Markup {
    let brand = state.engine.connections().page_branding();
    html! {
        @if brand.logo().is_some() {
            img.logo src="/connect/logo" alt="" width="32" height="32";
        }
        span.brand { (brand.title.as_deref().unwrap_or(DEFAULT_TITLE)) }
    }
}

/// An error as a page: what went wrong and what to do (the page never answers JSON).
pub(crate) fn error_page(state: &AppState, status: StatusCode, message: &str) -> Response {
    let body = html! {
        p.notice.error role="alert" { (message) }
        p { "Go back to the app and start connecting again." }
    };
    let title = status.canonical_reason().unwrap_or("Error");
    page_response(status, shell().document(title, header(state), None, body))
}

async fn not_found(State(state): State<AppState>) -> Response {
    error_page(&state, StatusCode::NOT_FOUND, "There is no such page.")
}

/// Why a request of the page is refused before anything is done.
#[derive(Clone, Copy)]
enum Refused {
    /// No session: no cookie, or one that does not open (ended, tampered, another install's).
    Ended,
    /// A form or link without the session's CSRF token.
    Csrf,
}

impl Refused {
    fn page(self, state: &AppState) -> Response {
        match self {
            Refused::Ended => error_page(
                state,
                StatusCode::UNAUTHORIZED,
                "This connect session has ended (it lasts 15 minutes, and its link opens once): ask the app for a new link.",
            ),
            Refused::Csrf => error_page(
                state,
                StatusCode::FORBIDDEN,
                "This form does not belong to your connect session (it came from another page): go back, reload the page and try again.",
            ),
        }
    }
}

/// The page's session from its cookie.
fn session(state: &AppState, headers: &HeaderMap) -> Result<PageSession, Refused> {
    cookie_value(headers, COOKIE)
        .filter(|v| !v.is_empty())
        .and_then(|v| state.engine.connections().open_page_session(v))
        .ok_or(Refused::Ended)
}

/// Refuses a form or link whose token is not the session's (compared in constant time).
fn check_csrf(s: &PageSession, sent: &str) -> Result<(), Refused> {
    if bool::from(subtle::ConstantTimeEq::ct_eq(s.csrf.expose_secret().as_bytes(), sent.as_bytes())) {
        Ok(())
    } else {
        Err(Refused::Csrf)
    }
}

/// `GET /connect?session=` (the link: spent, becomes the cookie) or `GET /connect` (the page).
async fn page(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(handle) = q.get("session") {
        return match state.engine.connections().open_page_link(handle).await {
            Ok(s) => {
                let sealed = state.engine.connections().seal_page_session(&s);
                let left = ((s.expires_at - state.engine.now_ms()) / 1000).max(1);
                with_cookie(see_other("/connect"), set_cookie(&state, &sealed, left))
            }
            Err(e) => {
                let status = if e.code == "unavailable" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::GONE };
                error_page(&state, status, &e.message)
            }
        };
    }
    let s = match session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.page(&state),
    };
    let notice = match (q.get("status").map(String::as_str), q.get("saved"), q.get("error")) {
        (Some("connected"), _, _) => Some(Notice::info("Connected.")),
        (Some("error"), _, Some(code)) => Some(Notice::error(&format!(
            "The connection did not complete ({}): try again.",
            code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect::<String>()
        ))),
        (_, Some(name), _) if s.connectors.contains(name) => {
            Some(Notice::info(&format!("Saved: {name} is connected.")))
        }
        _ => None,
    };
    render(&state, &s, StatusCode::OK, notice, None).await
}

/// The page for session `s`; `failed` names the connector whose form was just refused.
async fn render(
    state: &AppState,
    s: &PageSession,
    status: StatusCode,
    notice: Option<Notice>,
    failed: Option<&str>,
) -> Response {
    let connectors = match state.engine.connections().page_connectors(s).await {
        Ok(c) => c,
        Err(e) => return error_page(state, StatusCode::SERVICE_UNAVAILABLE, &e.message),
    };
    let csrf = s.csrf.expose_secret();
    let brand = state.engine.connections().page_branding();
    let title = brand.title.as_deref().unwrap_or(DEFAULT_TITLE).to_owned();
    let body = html! {
        p { "The app asks you to connect these accounts. Each is kept by Latchkey for you and used only for the app's calls." }
        ul.plain.connectors {
            @for c in &connectors {
                li { (card(c, csrf, failed == Some(c.name.as_str()))) }
            }
        }
        p { a.button href={ "/connect/done?csrf=" (enc(csrf)) } { "Done: back to the app" } }
    };
    page_response(status, shell().document(&title, header(state), notice, body))
}

fn state_text(state: PageState) -> (&'static str, &'static str) {
    match state {
        PageState::Connected => ("Connected", "ok"),
        PageState::NeedsReconnecting => ("Needs reconnecting", "bad"),
        PageState::NotConnected => ("Not connected", "muted"),
    }
}

fn field_label(field: &str) -> &'static str {
    match field {
        "key" => "API key",
        "username" => "Username",
        "password" => "Password",
        _ => "Value",
    }
}

/// One connector: its name, state, help, and the way to connect it.
fn card(c: &PageConnector, csrf: &str, failed: bool) -> Markup {
    let label = c.labels.label.as_deref().unwrap_or(&c.name);
    let (state, class) = state_text(c.state);
    let id = format!("c-{}", c.name);
    html! {
        section.card aria-labelledby=(id) {
            h2 #(id) { (label) " " span.(class) { "(" (state) ")" } }
            @if let Some(help) = &c.labels.help { p.help { (help) } }
            @if let Some(url) = &c.labels.help_url {
                p { a href=(url) rel="noopener noreferrer" target="_blank" { "Where to find it" } }
            }
            @match &c.method {
                PageMethod::OAuth => {
                    @let verb = if c.state == PageState::NotConnected { "Connect " } else { "Connect again: " };
                    p { a.button href={ "/connect/" (enc(&c.name)) "/start?csrf=" (enc(csrf)) } { (verb) (label) } }
                }
                PageMethod::Values { fields } => {
                    form.card method="post" action={ "/connect/" (enc(&c.name)) } {
                        input type="hidden" name="csrf" value=(csrf);
                        @for f in *fields {
                            @let fid = format!("{}-{}", c.name, f);
                            label for=(fid) { (field_label(f)) }
                            @if *f == "username" {
                                input #(fid) type="text" name=(f) required autocomplete="username" spellcheck="false"
                                    aria-invalid=[failed.then_some("true")];
                            } @else {
                                input #(fid) type="password" name=(f) required autocomplete="off" spellcheck="false"
                                    aria-invalid=[failed.then_some("true")];
                            }
                        }
                        button type="submit" { @if c.state == PageState::NotConnected { "Save" } @else { "Replace" } }
                    }
                }
            }
        }
    }
}

/// `POST /connect/{connector}`: the user's values, given to [`Engine::put_user_values`] as
/// `PUT /v1/connections/{connector}` gives them (and audited the same way).
///
/// [`Engine::put_user_values`]: latchkey_core::engine::Engine::put_user_values
async fn put_values(
    State(state): State<AppState>,
    Path(connector): Path<String>,
    headers: HeaderMap,
    form: Result<axum::Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let s = match session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.page(&state),
    };
    let Ok(axum::Form(form)) = form else {
        return error_page(
            &state,
            StatusCode::BAD_REQUEST,
            "The form could not be read: go back, reload the page and send it again.",
        );
    };
    let mut csrf = String::new();
    let mut given = Vec::new();
    for (k, v) in form {
        if k == "csrf" {
            csrf = v;
        } else {
            given.push((k, SecretString::from(v)));
        }
    }
    if let Err(r) = check_csrf(&s, &csrf) {
        return r.page(&state);
    }
    if !s.connectors.contains(&connector) || !state.engine.connections().is_values_connector(&connector) {
        return error_page(&state, StatusCode::NOT_FOUND, "This connector is not on this connect page.");
    }
    let audited = state.audit("connection.put", |a| {
        let mut f = serde_json::Map::new();
        f.insert("caller".into(), "connect page".into());
        f.insert("environment".into(), s.env.as_str().into());
        f.insert("connector".into(), connector.as_str().into());
        f.insert("user".into(), a.hash(&s.owner).into());
        f
    });
    if let Err(e) = audited {
        return error_page(&state, StatusCode::SERVICE_UNAVAILABLE, e.message());
    }
    match state.engine.put_user_values(s.env, &connector, &s.owner, given).await {
        Ok(_) => see_other(&format!("/connect?saved={}", enc(&connector))),
        Err(e) => {
            let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
            let notice = Notice::error(&format!("Not saved: {}", e.message));
            render(&state, &s, status, Some(notice), Some(&connector)).await
        }
    }
}

/// `GET /connect/{connector}/start?csrf=`: to the provider's login, for an OAuth connector of
/// the page (a link, not a form: `form-action 'self'` would stop a form's redirect to the
/// provider). The callback comes back to `/connect`.
async fn start(
    State(state): State<AppState>,
    Path(connector): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let s = match session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.page(&state),
    };
    if let Err(r) = check_csrf(&s, q.get("csrf").map_or("", String::as_str)) {
        return r.page(&state);
    }
    match state.engine.connections().start_from_page(&s, &connector).await {
        Ok((login, name, value)) => {
            let c = crate::routes::oauth::cookie(&state, &name, &value, 600);
            crate::routes::oauth::redirect(&login, Some(c))
        }
        Err(e) => {
            let status =
                if e.code == "unavailable" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_REQUEST };
            error_page(&state, status, &e.message)
        }
    }
}

/// `GET /connect/done?csrf=`: the session ends here; back to the app's `return_to`.
async fn done(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<HashMap<String, String>>) -> Response {
    let s = match session(&state, &headers) {
        Ok(s) => s,
        Err(r) => return r.page(&state),
    };
    if let Err(r) = check_csrf(&s, q.get("csrf").map_or("", String::as_str)) {
        return r.page(&state);
    }
    with_cookie(see_other(&s.done_url()), set_cookie(&state, "", 0))
}

/// `GET /connect/style.css`: the console's stylesheet, with the configured accent colour.
async fn style(State(state): State<AppState>) -> Response {
    let brand = state.engine.connections().page_branding();
    // After the console's rules (its dark scheme's too), so it wins in both schemes.
    let accent = brand.accent_color.as_deref().map_or(String::new(), |a| format!(":root {{ --accent: {a}; }}\n"));
    let css = format!("{STYLE}{PAGE_STYLE}{accent}");
    let mut response = css.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    response
}

/// What the connect page adds to the console's stylesheet.
const PAGE_STYLE: &str = r#"
main { max-width: 40rem; margin: 0 auto; }
.logo { width: 2rem; height: 2rem; object-fit: contain; }
section.card { border: 1px solid var(--line); border-radius: 6px; padding: .75rem 1rem; margin: 0 0 1rem; }
section.card h2 { margin-top: 0; }
section.card form.card { border: 0; padding: 0; }
a.button { display: inline-block; padding: .45rem .9rem; border-radius: 6px; background: var(--accent); color: #fff; text-decoration: none; min-height: 2.5rem; }
"#;

/// `GET /connect/logo`: the configured logo (a `data:` URL's bytes), from this origin.
async fn logo(State(state): State<AppState>) -> Response {
    match state.engine.connections().page_branding().logo() {
        Some((media, bytes)) => {
            let mut response = bytes.into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
            response
        }
        None => error_page(&state, StatusCode::NOT_FOUND, "This page has no logo."),
    }
}

#[cfg(test)]
mod tests;
