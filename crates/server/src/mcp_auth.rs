//! Latchkey as the OAuth authorization server of MCP clients: the metadata (RFC 8414), the
//! registration endpoint (RFC 7591), the authorization endpoint with its sign-in and consent
//! page, and the app's sign-in answer (`POST /v1/mcp/sign-in`). Every decision is in
//! `latchkey_core::engine::mcp_auth`; the token endpoint's `authorization_code` grant is in
//! `routes::identity`.
//!
//! The browser's authorization in progress lives in a cookie sealed by the vault
//! (`lk_authorize`, `Path=/oauth/authorize`, `HttpOnly`, `SameSite=Lax`, `Secure` on https, 10
//! minutes): the checked request, and once the user signed in, who. Any instance opens it.
//!
//! - `GET /oauth/authorize?response_type=code&client_id=…`: the request is checked (errors
//!   before the redirect URI is trusted are a page; after, the client is sent back with
//!   `error`, `state` and `iss`), then the user signs in: through the login connector's flow,
//!   whose return address is `/oauth/authorize/signed-in`, or at the app's `sign_in_url`,
//!   whose answer brings the browser to `/oauth/authorize/continue?grant=…`.
//! - `GET /oauth/authorize` (no query): the consent page for the signed-in user.
//! - `POST /oauth/authorize`: Allow (a code, back to the client) or Deny (`access_denied`).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use latchkey_core::engine::mcp_auth::{AUTHORIZE_PATH, AuthorizeError, ClientKind, Pending, SignIn};
use latchkey_core::time_fmt::rfc3339;
use latchkey_core::{CallError, ErrorCode};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use crate::console::layout::Shell;
use crate::console::{html as page_response, see_other};
use crate::cookie::{self, SameSite};
use crate::extract::AppCaller;
use crate::routes::oauth::redirect;
use crate::{ApiError, AppState, wire};

/// The authorization cookie.
pub const COOKIE: &str = "lk_authorize";
/// The largest registration read.
const REGISTRATION_MAX: usize = 64 * 1024;

fn set_cookie(state: &AppState, value: &str, max_age_s: i64) -> Option<HeaderValue> {
    cookie::set(COOKIE, value, AUTHORIZE_PATH, SameSite::Lax, max_age_s, cookie::secure(state))
}

use crate::cookie::with as with_cookie;

/// `response` carrying the pending authorization's cookie.
fn keeping(state: &AppState, p: &Pending, response: Response) -> Response {
    let sealed = state.engine.mcp_auth().seal_pending(p);
    let left = ((p.expires_at - state.engine.now_ms()) / 1000).max(1);
    with_cookie(response, set_cookie(state, &sealed, left))
}

/// `response` clearing the cookie (the authorization is over).
fn ending(state: &AppState, response: Response) -> Response {
    with_cookie(response, set_cookie(state, "", 0))
}

use crate::cookie::value as cookie_value;

fn pending(state: &AppState, headers: &HeaderMap) -> Option<Pending> {
    cookie_value(headers, COOKIE).and_then(|v| state.engine.mcp_auth().open_pending(v))
}

fn shell() -> Shell<'static> {
    Shell { site: "Latchkey", stylesheet: "/connect/style.css" }
}

fn header_markup() -> Markup {
    html! { span.brand { "Latchkey" } }
}

/// An error as a page, with the pages' security headers.
async fn error_page(status: StatusCode, message: &str) -> Response {
    let body = html! {
        p.notice.error role="alert" { (message) }
        p { "Go back to the application and connect it again." }
    };
    let title = status.canonical_reason().unwrap_or("Error");
    crate::console::secure_headers(page_response(status, shell().document(title, header_markup(), None, body))).await
}

async fn ended() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "There is no authorization in progress in this browser (it lasts 10 minutes, and ends once you allow or deny).",
    )
    .await
}

/// `GET /.well-known/oauth-authorization-server` (RFC 8414), and the same document at
/// `/.well-known/openid-configuration`.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "identity", responses((status = 200, description = "RFC 8414 authorization server metadata (the same document as `/.well-known/openid-configuration`).", body = wire::OpenIdConfiguration)))]
pub async fn metadata(State(state): State<AppState>) -> Response {
    discovery(&state)
}

/// The discovery document: the identity provider's and the MCP authorization server's.
pub(crate) fn discovery(state: &AppState) -> Response {
    let scopes = state.engine.mcp_auth().scopes_supported();
    Json(wire::OpenIdConfiguration::of(state.engine.public_url(), state.engine.identity().signing_algs(), scopes))
        .into_response()
}

/// `POST /v1/mcp/register` (RFC 7591): dynamic client registration of a public client.
#[utoipa::path(post, path = "/v1/mcp/register", tag = "identity", request_body(content = Object, description = "RFC 7591 client metadata: `redirect_uris` (required: https, http on loopback, or a private-use scheme), `client_name`, `client_uri`, `logo_uri`, `grant_types`, `response_types`, `token_endpoint_auth_method` (`none`)."), responses((status = 201, description = "The client: `client_id` and its metadata as accepted.", body = wire::RegisteredClient), (status = 429, description = "Too many registrations: wait `Retry-After` seconds.", body = wire::ErrorEnvelope)))]
pub async fn register(State(state): State<AppState>, body: Bytes) -> Response {
    if let Err(wait) = state.registrations.check("register") {
        let mut r = ApiError::new(
            ErrorCode::RateLimited,
            "too many client registrations: wait for `Retry-After` seconds, or raise `[server.mcp] registrations_per_second`",
        )
        .into_response();
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1)));
        return r;
    }
    let invalid = |m: &str| {
        ApiError::new(ErrorCode::InvalidParams, m).with_detail("oauth_error", "invalid_client_metadata").into_response()
    };
    if body.len() > REGISTRATION_MAX {
        return invalid("the registration is larger than 64 KiB");
    }
    let Ok(metadata) = serde_json::from_slice::<Value>(&body) else {
        return invalid(
            r#"the body must be JSON client metadata (RFC 7591): {"redirect_uris": ["https://..."], "client_name": "..."}"#,
        );
    };
    match state.engine.mcp_auth().register(&metadata).await {
        Ok((id, issued_at, m)) => {
            let mut r = (StatusCode::CREATED, Json(wire::RegisteredClient::of(&id, issued_at, &m))).into_response();
            r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            let oauth =
                e.details.get("oauth_error").and_then(Value::as_str).unwrap_or("invalid_client_metadata").to_owned();
            ApiError::from(e).with_detail("oauth_error", oauth).into_response()
        }
    }
}

/// `GET /oauth/authorize`: with a request, checks it and sends the user to sign in; without,
/// the consent page of the authorization in progress.
#[utoipa::path(get, path = "/oauth/authorize", tag = "oauth", params(
    ("response_type" = Option<String>, Query, description = "`code`."),
    ("client_id" = Option<String>, Query, description = "A registered client's id, or the https URL of its client ID metadata document."),
    ("redirect_uri" = Option<String>, Query, description = "Exactly one of the client's redirect URIs."),
    ("code_challenge" = Option<String>, Query, description = "PKCE (RFC 7636), required."),
    ("code_challenge_method" = Option<String>, Query, description = "`S256`."),
    ("state" = Option<String>, Query), ("scope" = Option<String>, Query, description = "`tools` (default), `connector:NAME`, `tool:NAME`."),
    ("resource" = Option<String>, Query, description = "RFC 8707: `<public_url>/mcp`, or absent.")),
    responses((status = 302, description = "To the sign-in, or back to the client with `error`, `state` and `iss`."), (status = 200, description = "The consent page (HTML)."), (status = 400, description = "A request that cannot be sent back to the client (HTML).")))]
pub async fn authorize(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if q.is_empty() {
        return match pending(&state, &headers) {
            Some(p) if p.user.is_some() => consent(&state, &p).await,
            Some(p) => sign_in(&state, p).await,
            None => ended().await,
        };
    }
    match state.engine.mcp_auth().authorize(&q).await {
        Ok(p) => sign_in(&state, p).await,
        Err(AuthorizeError::Page(m)) => error_page(StatusCode::BAD_REQUEST, &m).await,
        Err(AuthorizeError::Redirect(to)) => ending(&state, redirect(&to, None)),
    }
}

/// Sends the browser to sign in: the login connector's flow, or the app's sign-in page.
async fn sign_in(state: &AppState, mut p: Pending) -> Response {
    let auth = state.engine.mcp_auth();
    match auth.sign_in() {
        Err(m) => error_page(StatusCode::SERVICE_UNAVAILABLE, &m).await,
        Ok(SignIn::Connector(connector)) => {
            match state.engine.connections().start_login(&connector, p.env, &auth.signed_in_url()).await {
                Ok((url, name, value)) => {
                    let flow = crate::routes::oauth::cookie(state, &name, &value, 600);
                    let r = redirect(&url, Some(flow));
                    keeping(state, &p, r)
                }
                Err(e) => {
                    let status =
                        if e.code == "unavailable" { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::BAD_REQUEST };
                    error_page(status, &format!("Signing in is not possible: {}", e.message)).await
                }
            }
        }
        Ok(SignIn::App(url)) => match auth.app_sign_in_request(p.env, &url).await {
            Ok((id, to)) => {
                p.sign_in = Some(id);
                keeping(state, &p, redirect(&to, None))
            }
            Err(e) => error_page(StatusCode::SERVICE_UNAVAILABLE, &e.message).await,
        },
    }
}

/// `GET /oauth/authorize/signed-in?code=…&status=signed_in`: back from the login connector.
#[utoipa::path(get, path = "/oauth/authorize/signed-in", tag = "oauth", params(("code" = Option<String>, Query, description = "The login flow's one-time sign-in code."), ("status" = Option<String>, Query, description = "`signed_in` or `error`.")), responses((status = 303, description = "To the consent page."), (status = 302, description = "Back to the client with `access_denied` when the sign-in failed.")))]
pub async fn signed_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(mut p) = pending(&state, &headers) else { return ended().await };
    let auth = state.engine.mcp_auth();
    let code = q.get("code").filter(|_| q.get("status").map(String::as_str) == Some("signed_in"));
    let Some(code) = code else {
        let to = auth.refusal(&p, "access_denied", "the user did not sign in");
        return ending(&state, redirect(&to, None));
    };
    match auth.user_of_login_code(p.env, code).await {
        Ok(user) => {
            p.user = Some(user);
            keeping(&state, &p, see_other(AUTHORIZE_PATH))
        }
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.message).await,
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContinueQuery {
    /// The single-use grant `POST /v1/mcp/sign-in` answered with.
    grant: Option<String>,
}

/// `GET /oauth/authorize/continue?grant=…`: back from the app's sign-in.
#[utoipa::path(get, path = "/oauth/authorize/continue", tag = "oauth", params(ContinueQuery), responses((status = 303, description = "To the consent page."), (status = 400, description = "A grant unknown, used, expired, or made for another browser (HTML).")))]
pub async fn continue_sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ContinueQuery>,
) -> Response {
    let Some(mut p) = pending(&state, &headers) else { return ended().await };
    let Some(grant) = q.grant else { return error_page(StatusCode::BAD_REQUEST, "The link has no `grant`.").await };
    match state.engine.mcp_auth().user_of_grant(&p, &grant).await {
        Ok(user) => {
            p.user = Some(user);
            keeping(&state, &p, see_other(AUTHORIZE_PATH))
        }
        Err(m) => error_page(StatusCode::BAD_REQUEST, &m).await,
    }
}

/// `form-action` must allow where the form's answer redirects (Chromium checks redirects too).
fn consent_csp(redirect_uri: &str) -> String {
    let target = match url::Url::parse(redirect_uri) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u.origin().ascii_serialization(),
        Ok(u) => format!("{}:", u.scheme()),
        Err(_) => String::new(),
    };
    format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {target}; frame-ancestors 'none'; base-uri 'none'"
    )
}

fn redirect_host(redirect_uri: &str) -> String {
    match url::Url::parse(redirect_uri) {
        Ok(u) => match u.host_str() {
            Some(h) => u.port().map_or_else(|| h.to_owned(), |p| format!("{h}:{p}")),
            None => format!("{}:", u.scheme()),
        },
        Err(_) => redirect_uri.chars().take(80).collect(),
    }
}

/// The consent page: who asks, where it will be sent, who is signed in, what it may do.
async fn consent(state: &AppState, p: &Pending) -> Response {
    let auth = state.engine.mcp_auth();
    let lines = auth.describe_scope(&p.request.scope);
    let name = p.client.name.as_deref().unwrap_or("An application without a name");
    let user = p.user.as_deref().unwrap_or_default();
    let email = match state.engine.identity().get_user(p.env, user).await {
        Ok(Some(u)) => u.email,
        _ => None,
    };
    let vouched = match p.client.kind {
        ClientKind::MetadataDocument => url::Url::parse(&p.request.client_id)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .map(|h| format!("Its name is published by {h}.")),
        ClientKind::Registered => None,
    };
    let body = html! {
        p.lead {
            strong { (name) }
            @if p.client.kind == ClientKind::Registered { " " span.bad { "(unverified: it named itself)" } }
            " asks to use your tools through Latchkey, as you."
        }
        @if let Some(v) = vouched { p { (v) } }
        @if let Some(uri) = &p.client.uri { p { "Its site: " (uri) } }
        p {
            "Signed in as "
            @if let Some(e) = &email { strong { (e) } " (" (user) ")" } @else { strong { (user) } }
            "."
        }
        p { "If you allow it, it will be sent back to " strong { (redirect_host(&p.request.redirect_uri)) } " and may:" }
        ul {
            @for l in &lines {
                li {
                    (l.text)
                    @if !l.tools.is_empty() {
                        ": " @for (i, t) in l.tools.iter().enumerate() { @if i > 0 { ", " } code { (t) } }
                    }
                }
            }
        }
        p { "It never sees your passwords or your accounts' tokens: Latchkey makes each call for it." }
        form.card method="post" action=(AUTHORIZE_PATH) {
            input type="hidden" name="csrf" value=(p.csrf);
            button type="submit" name="decision" value="approve" { "Allow" }
            " "
            button.secondary type="submit" name="decision" value="deny" { "Deny" }
        }
    };
    let mut r = page_response(StatusCode::OK, shell().document("Allow access?", header_markup(), None, body));
    r = crate::console::secure_headers(r).await;
    if let Ok(v) = HeaderValue::from_str(&consent_csp(&p.request.redirect_uri)) {
        r.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
    }
    r
}

/// `POST /oauth/authorize`: the consent form's answer (`csrf`, `decision` = `approve` or
/// `deny`).
#[utoipa::path(post, path = "/oauth/authorize", tag = "oauth", request_body(content = Object, content_type = "application/x-www-form-urlencoded", description = "`csrf` (the page's) and `decision`: `approve` or `deny`."), responses((status = 303, description = "Back to the client: with `code`, `state` and `iss`, or with `error=access_denied`.")))]
pub async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(p) = pending(&state, &headers).filter(|p| p.user.is_some()) else { return ended().await };
    let Ok(axum::Form(form)) = form else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "The form could not be read: go back, reload the page and answer again.",
        )
        .await;
    };
    let sent = form.get("csrf").map_or("", String::as_str);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(p.csrf.as_bytes(), sent.as_bytes())) {
        return error_page(
            StatusCode::FORBIDDEN,
            "This answer does not come from the consent page Latchkey showed you: go back, reload it and answer again.",
        )
        .await;
    }
    let auth = state.engine.mcp_auth();
    let to = match form.get("decision").map(String::as_str) {
        Some("approve") => match auth.approve(&p).await {
            Ok(to) => to,
            // A lapsed registration is the client's to fix (400); the store's trouble is ours (503).
            Err(e) => {
                let status = StatusCode::from_u16(e.code.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
                return error_page(status, &e.message).await;
            }
        },
        Some("deny") => auth.refusal(&p, "access_denied", "the user denied access"),
        _ => return error_page(StatusCode::BAD_REQUEST, "Choose Allow or Deny.").await,
    };
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut().insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    ending(&state, r)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignInBody {
    /// The `request` Latchkey sent the browser to `sign_in_url` with.
    request: String,
    /// The app's user id of who signed in.
    user: String,
}

/// `POST /v1/mcp/sign-in` (app key): the app signed `user` in for an MCP client's
/// authorization; answers where to send the browser (single use, 2 minutes).
#[utoipa::path(post, path = "/v1/mcp/sign-in", tag = "identity", request_body = SignInBody, security(("app_key" = [])), responses((status = 200, description = "Where the app sends the browser back.", body = wire::ConnectLink)))]
pub async fn app_sign_in(
    State(state): State<AppState>,
    caller: AppCaller,
    b: Result<Json<SignInBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(b) = b.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidParams,
            format!(r#"the body must be JSON {{"request": "mcpr_...", "user": "..."}}: {}"#, e.body_text()),
        )
    })?;
    if state.engine.config().server.mcp.as_ref().and_then(|m| m.sign_in_url.as_ref()).is_none() {
        return Err(CallError::new(
            ErrorCode::Forbidden,
            "MCP clients do not sign users in at the app: set `[server.mcp] sign_in_url` first",
        )
        .into());
    }
    let url = state.engine.mcp_auth().app_signed_in(caller.env, &b.request, &b.user).await?;
    let expires_at = Some(rfc3339(state.engine.now_ms() + 2 * 60_000));
    let mut r = Json(wire::ConnectLink { expires_at, url }).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}
