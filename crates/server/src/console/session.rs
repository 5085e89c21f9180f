//! Signing in and out of the console, and the session every other page needs ([`Operator`]).
//!
//! The session lives in its cookie, sealed by the vault ([`Engine::seal_console_session`]):
//! the admin key it was opened with, its CSRF token and its times. Every request opens it and
//! checks the key again with [`Engine::authenticate`], as the admin API checks a bearer key, so
//! a deleted admin key ends its sessions. Idle for [`IDLE_MS`] (or signed in for [`MAX_MS`]),
//! a session is over. Each form carries the session's CSRF token, compared in constant time;
//! the sign-in form carries the token of a cookie of its own (no one can sign a browser in
//! from another site).
//!
//! [`Engine::seal_console_session`]: latchkey_core::engine::Engine::seal_console_session
//! [`Engine::authenticate`]: latchkey_core::engine::Engine::authenticate

use axum::extract::{FromRequestParts, Query, State};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, StatusCode};
use latchkey_core::callers::Caller;
use latchkey_core::engine::console::{ConsoleSession, random_token};
use maud::{Markup, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::layout::{self, Nav, Notice};
use super::{Failure, html as page_response, see_other};
use crate::AppState;
use crate::limit::RateLimiter;

/// The session cookie's name.
pub const COOKIE: &str = "lk_console";
/// The sign-in form's own cookie (its CSRF token).
const SIGN_IN_COOKIE: &str = "lk_console_signin";
/// A session unused this long is over (30 minutes).
pub const IDLE_MS: i64 = 30 * 60 * 1000;
/// A session is over this long after signing in, used or not (12 hours).
const MAX_MS: i64 = 12 * 60 * 60 * 1000;
/// The cookie is sealed again (its idle time restarted) at most this often.
const RENEW_MS: i64 = 60 * 1000;
/// Failed sign-ins per second (in bursts of twice that) before the form answers 429.
const FAILURES_PER_SECOND: u32 = 1;

/// Failed console sign-ins, counted for the whole process: the console has one door, and a
/// caller's address is not known here (a proxy in front would make it the proxy's anyway).
pub(crate) struct SignInLimiter(RateLimiter);

impl Default for SignInLimiter {
    fn default() -> Self {
        SignInLimiter(RateLimiter::new(FAILURES_PER_SECOND))
    }
}

/// An operator signed in to the console: the admin key's id, the session's CSRF token, and
/// the renewed cookie to send back, if it was renewed.
pub(crate) struct Operator {
    pub key_id: String,
    csrf: SecretString,
    renew: Option<String>,
    secure: bool,
}

use crate::cookie::value as cookie_value;

/// Whether cookies must say `Secure`: Latchkey is reached over HTTPS.
use crate::cookie::secure;

/// A console cookie: `Path=/console`, `HttpOnly`, `SameSite=Strict`, `Secure` behind HTTPS.
fn set_cookie(secure: bool, name: &str, value: &str, max_age_s: i64) -> Option<HeaderValue> {
    crate::cookie::set(name, value, "/console", crate::cookie::SameSite::Strict, max_age_s, secure)
}

use crate::cookie::with as with_cookie;

/// Back to the sign-in form, forgetting the session cookie, saying why (`why`, a fixed word).
fn ended(state: &AppState, why: &str) -> Response {
    let to = format!("/console?{why}=1");
    with_cookie(see_other(&to), set_cookie(secure(state), COOKIE, "", 0))
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(value) = cookie_value(&parts.headers, COOKIE).filter(|v| !v.is_empty()) else {
            return Err(see_other("/console"));
        };
        let now = state.engine.now_ms();
        let Some(mut session) = state.engine.open_console_session(value) else {
            return Err(ended(state, "expired"));
        };
        if now - session.seen_at > IDLE_MS || now - session.signed_in_at > MAX_MS {
            return Err(ended(state, "expired"));
        }
        let key_id = match state.engine.authenticate(session.admin_key.expose_secret(), None).await {
            Ok(Caller::Admin { key_id }) => key_id,
            // The key was deleted since (or the store cannot say): the session is over.
            _ => return Err(ended(state, "expired")),
        };
        let renew = (now - session.seen_at >= RENEW_MS).then(|| {
            session.seen_at = now;
            state.engine.seal_console_session(&session)
        });
        Ok(Operator { key_id, csrf: session.csrf, renew, secure: secure(state) })
    }
}

impl Operator {
    /// The hidden field every form of this session carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf.expose_secret()); }
    }

    /// The session's CSRF token: what sealed values of this session only are bound to.
    pub fn csrf(&self) -> &SecretString {
        &self.csrf
    }

    /// Refuses a form whose token is not this session's (compared in constant time).
    pub fn check(&self, sent: &str) -> Result<(), Failure> {
        let ours = self.csrf.expose_secret().as_bytes();
        if bool::from(subtle::ConstantTimeEq::ct_eq(ours, sent.as_bytes())) {
            Ok(())
        } else {
            Err(Failure::new(
                StatusCode::FORBIDDEN,
                "This form does not belong to your session (it came from another page, or from before you \
                 signed in again): reload the page and send it again.",
            ))
        }
    }

    /// A page of the console for this operator (with the renewed cookie, if any).
    pub fn page(&self, nav: Nav, title: &str, notice: Option<Notice>, body: Markup) -> Response {
        self.page_with(StatusCode::OK, nav, title, notice, body)
    }

    pub fn page_with(
        &self,
        status: StatusCode,
        nav: Nav,
        title: &str,
        notice: Option<Notice>,
        body: Markup,
    ) -> Response {
        let markup = layout::page(nav, title, notice, Some(self), body);
        self.answer(page_response(status, markup))
    }

    /// `303` to `to`, with the renewed cookie.
    pub fn redirect(&self, to: &str) -> Response {
        self.answer(see_other(to))
    }

    fn answer(&self, response: Response) -> Response {
        let cookie = self.renew.as_deref().and_then(|v| set_cookie(self.secure, COOKIE, v, IDLE_MS / 1000));
        with_cookie(response, cookie)
    }
}

#[derive(Deserialize)]
pub(crate) struct SignInQuery {
    expired: Option<String>,
    signed_out: Option<String>,
}

/// `GET /console/`: the console is at `/console`.
pub(crate) async fn to_console() -> Response {
    see_other("/console")
}

/// `GET /console`: the sign-in form, or the connectors for an operator signed in.
pub(crate) async fn sign_in_page(State(state): State<AppState>, parts: Parts) -> Response {
    let mut parts = parts;
    if Operator::from_request_parts(&mut parts, &state).await.is_ok() {
        return see_other("/console/connectors");
    }
    let q = Query::<SignInQuery>::try_from_uri(&parts.uri).map(|Query(q)| q).ok();
    let notice = match q {
        Some(SignInQuery { expired: Some(_), .. }) => {
            Some(Notice::info("Your session ended (idle too long, or its admin key was revoked): sign in again."))
        }
        Some(SignInQuery { signed_out: Some(_), .. }) => Some(Notice::info("You are signed out.")),
        _ => None,
    };
    sign_in_form(&state, StatusCode::OK, notice, None)
}

/// The sign-in form with a token of its own: the one in its cookie when the browser has one
/// (`token`), else a new one, set in a new cookie.
fn sign_in_form(state: &AppState, status: StatusCode, notice: Option<Notice>, token: Option<&str>) -> Response {
    let (token, cookie) = match token {
        Some(t) => (t.to_owned(), None),
        None => {
            let t = random_token().expose_secret().to_owned();
            let c = set_cookie(secure(state), SIGN_IN_COOKIE, &t, 3600);
            (t, c)
        }
    };
    let body = html! {
        form.card method="post" action="/console" {
            input type="hidden" name="csrf" value=(token);
            label for="admin_key" { "Admin key" }
            input #admin_key type="password" name="admin_key" required autocomplete="off" autofocus
                spellcheck="false" aria-describedby="admin_key_help";
            p #admin_key_help .help {
                "An admin key: the " code { "lk_admin_…" } " key Latchkey printed at its first start, or the "
                code { "LATCHKEY_ADMIN_KEY" } " it was started with."
            }
            button type="submit" { "Sign in" }
        }
    };
    let markup = layout::page(Nav::None, "Sign in", notice, None, body);
    with_cookie(page_response(status, markup), cookie)
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    admin_key: SecretString,
    csrf: String,
}

/// `POST /console`: checks the admin key as the admin API does, then opens a session.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<axum::Form<SignInForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(form)) = form else { return Failure::bad_form().into_response() };
    let ours = cookie_value(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if ours.is_empty() || !bool::from(subtle::ConstantTimeEq::ct_eq(ours.as_bytes(), form.csrf.as_bytes())) {
        let notice = Notice::error("The sign-in form had expired (or came from another page): sign in again.");
        return sign_in_form(&state, StatusCode::FORBIDDEN, Some(notice), None);
    }
    if let Err(wait) = state.console_sign_in.0.peek("console") {
        let message = format!("Too many failed sign-ins: wait {} s and try again.", wait.as_secs().max(1));
        return sign_in_form(&state, StatusCode::TOO_MANY_REQUESTS, Some(Notice::error(&message)), Some(ours));
    }
    let key_id = match state.engine.authenticate(form.admin_key.expose_secret(), None).await {
        Ok(Caller::Admin { key_id }) => key_id,
        outcome => {
            // Counted whatever the reason; the same words for an app key and for no key.
            let _ = state.console_sign_in.0.check("console");
            tracing::warn!("console sign-in refused: the key presented is not an admin key");
            if let Err(e) = state.audit("console.sign_in", |_| outcome_fields("refused", None)) {
                return Failure::from(e).into_response();
            }
            let unavailable = matches!(&outcome, Err(e) if e.code == latchkey_core::ErrorCode::Unavailable);
            let (status, message) = if unavailable {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Latchkey cannot check keys right now (its store does not answer): try again shortly.",
                )
            } else {
                (StatusCode::UNAUTHORIZED, "That is not an admin key of this Latchkey.")
            };
            return sign_in_form(&state, status, Some(Notice::error(message)), Some(ours));
        }
    };
    if let Err(e) = state.audit("console.sign_in", |_| outcome_fields("ok", Some(&key_id))) {
        return Failure::from(e).into_response();
    }
    let session = ConsoleSession::new(form.admin_key, state.engine.now_ms());
    let sealed = state.engine.seal_console_session(&session);
    let response =
        with_cookie(see_other("/console/connectors"), set_cookie(secure(&state), COOKIE, &sealed, IDLE_MS / 1000));
    with_cookie(response, set_cookie(secure(&state), SIGN_IN_COOKIE, "", 0))
}

fn outcome_fields(outcome: &str, key_id: Option<&str>) -> serde_json::Map<String, serde_json::Value> {
    let mut f = serde_json::Map::new();
    if let Some(id) = key_id {
        f.insert("caller".into(), id.into());
    }
    f.insert("outcome".into(), outcome.into());
    f
}

#[derive(Deserialize)]
pub(crate) struct CsrfOnly {
    csrf: String,
}

/// `POST /console/sign-out`: forgets the session in this browser.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    operator: Operator,
    form: Result<axum::Form<CsrfOnly>, axum::extract::rejection::FormRejection>,
) -> Result<Response, Failure> {
    let axum::Form(form) = form.map_err(|_| Failure::bad_form())?;
    operator.check(&form.csrf)?;
    state.audit("console.sign_out", |_| outcome_fields("ok", Some(&operator.key_id)))?;
    Ok(ended(&state, "signed_out"))
}
