//! The admin console (`/console`): server-rendered HTML pages over the same [`Engine`] functions
//! as the admin API, for an operator with an admin key. No script, no external asset: forms
//! do the work, the one stylesheet is served from the binary, and every answer carries a strict
//! Content-Security-Policy.
//!
//! - `session.rs`: signing in and out, the session cookie (sealed by the vault), CSRF tokens,
//!   idle expiry, the [`Operator`] extractor, failed sign-ins audited and rate-limited.
//! - `layout.rs`: the page shell, navigation, the stylesheet, error pages.
//! - one file per page: `connectors.rs` (the list, a connector's page and "try this call"),
//!   `catalog.rs` (a new connector: the provider catalog, a template's form, a blank one),
//!   `import.rs` (a new connector imported from a pasted cURL command, OpenAPI document or
//!   Postman collection),
//!   `secrets.rs`, `keys.rs`, `connections.rs`, `events.rs`, `users.rs` (users and signing
//!   keys).
//!
//! The console's routes are not in `routes::api!` (the JSON API, which the OpenAPI document
//! describes) but in [`ROUTES`] here, merged into the same router. None of them is on the call
//! path: the proxy and named calls never pass the console's layer. `[server.console] enabled =
//! false` answers every one of them as an unknown route (`404 not_found`), read per request so
//! that a reload applies it.
//!
//! [`Engine`]: latchkey_core::engine::Engine

mod catalog;
mod connections;
mod connectors;
mod events;
mod import;
mod keys;
pub(crate) mod layout;
mod secrets;
mod session;
mod users;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode, header};
use latchkey_core::CallError;

pub(crate) use session::SignInLimiter;
pub use session::{COOKIE, IDLE_MS};

use crate::{ApiError, AppState};

/// Every console route and its methods (outside `routes::api!`: these are HTML pages, not the
/// JSON API; `openapi::tests` checks the API's).
pub const ROUTES: &[(&str, &[&str])] = &[
    ("/console", &["get", "post"]),
    ("/console/sign-out", &["post"]),
    ("/console/style.css", &["get"]),
    ("/console/connectors", &["get"]),
    ("/console/connectors/{name}", &["get"]),
    ("/console/connectors/{name}/try", &["post"]),
    ("/console/catalog", &["get"]),
    ("/console/catalog/{provider}", &["get", "post"]),
    ("/console/blank-connector", &["get", "post"]),
    ("/console/import", &["get", "post"]),
    ("/console/import/create", &["post"]),
    ("/console/secrets", &["get", "post"]),
    ("/console/secrets/delete", &["post"]),
    ("/console/keys", &["get", "post"]),
    ("/console/keys/revoke", &["post"]),
    ("/console/connections", &["get"]),
    ("/console/connections/revoke", &["post"]),
    ("/console/connections/reconnect", &["post"]),
    ("/console/events", &["get"]),
    ("/console/users", &["get"]),
    ("/console/users/delete", &["post"]),
    ("/console/signing-keys/rotate", &["post"]),
];

pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/console", get(session::sign_in_page).post(session::sign_in))
        .route("/console/", get(session::to_console))
        .route("/console/sign-out", post(session::sign_out))
        .route("/console/style.css", get(layout::style))
        .route("/console/connectors", get(connectors::list))
        .route("/console/connectors/{name}", get(connectors::show))
        .route("/console/connectors/{name}/try", post(connectors::try_call))
        .route("/console/catalog", get(catalog::catalog))
        .route("/console/catalog/{provider}", get(catalog::provider_form).post(catalog::create_from_template))
        .route("/console/blank-connector", get(catalog::blank_form).post(catalog::create_blank))
        .route(
            "/console/import",
            get(import::form).post(import::preview).layer(axum::extract::DefaultBodyLimit::max(import::BODY_LIMIT)),
        )
        .route(
            "/console/import/create",
            post(import::create).layer(axum::extract::DefaultBodyLimit::max(import::BODY_LIMIT)),
        )
        .route("/console/secrets", get(secrets::page).post(secrets::put))
        .route("/console/secrets/delete", post(secrets::delete))
        .route("/console/keys", get(keys::page).post(keys::create))
        .route("/console/keys/revoke", post(keys::revoke))
        .route("/console/connections", get(connections::page))
        .route("/console/connections/revoke", post(connections::revoke))
        .route("/console/connections/reconnect", post(connections::reconnect))
        .route("/console/events", get(events::page))
        .route("/console/users", get(users::page))
        .route("/console/users/delete", post(users::delete))
        .route("/console/signing-keys/rotate", post(users::rotate))
        .route("/console/{*rest}", axum::routing::any(not_found))
        .layer(axum::middleware::map_response(secure_headers))
        .layer(axum::middleware::from_fn_with_state(state.clone(), switched_on))
}

/// `[server.console] enabled = false`: every console path is an unknown route, before any
/// session or form is read.
async fn switched_on(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if state.engine.config().server.console_enabled() {
        next.run(req).await
    } else {
        crate::routes::not_found().await.into_response()
    }
}

/// The Content-Security-Policy of every console answer: nothing but this origin's stylesheet
/// and forms posting to this origin; no script at all, no frames.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                       frame-ancestors 'none'; base-uri 'none'";

/// The headers every console answer carries, pages, redirects and errors alike.
pub(crate) async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(http::HeaderName::from_static("cross-origin-opener-policy"), HeaderValue::from_static("same-origin"));
    h.insert(http::HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("same-origin"));
    response
}

async fn not_found() -> Response {
    Failure::new(StatusCode::NOT_FOUND, "There is no such console page.").into_response()
}

/// An error shown as a page (the console never answers JSON): its status and a message that
/// is safe to show (a [`CallError`]'s public message, or the console's own words).
#[derive(Debug)]
pub(crate) struct Failure {
    status: StatusCode,
    message: String,
}

impl Failure {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        Failure { status, message: message.into() }
    }

    pub(crate) fn bad_form() -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, "The form could not be read. Go back, reload the page and send it again.")
    }
}

impl From<CallError> for Failure {
    fn from(e: CallError) -> Failure {
        let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Failure { status, message: e.message }
    }
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Failure {
        let code = e.code();
        let status = StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Failure { status, message: e.message().to_owned() }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        layout::error_page(self.status, &self.message)
    }
}

/// An HTML page as an answer.
pub(crate) fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// `303 See Other` to `to` (a console path): after a form, the browser asks for the page.
pub(crate) fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// `value` as one path segment or query value (everything but unreserved characters encoded).
pub(crate) fn enc(value: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(value, SET).to_string()
}

#[cfg(test)]
mod tests;
