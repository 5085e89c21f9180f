//! Latchkey as the OAuth authorization server of MCP clients (the MCP authorization spec,
//! revision 2025-11-25): clients (dynamic registration, RFC 7591, and client ID metadata
//! documents), the authorization request and its checks, the browser's pending request sealed
//! into a cookie, the user's sign-in (through a `login = true` connector, or the app's own
//! sign-in page and `POST /v1/mcp/sign-in`), authorization codes (single use in the store,
//! hashed, bound to the client, redirect URI, PKCE challenge, user, scope and resource), and
//! their exchange for a Latchkey user token pair whose access tokens say `aud` =
//! `<public_url>/mcp`.
//!
//! The pages and routes are the server's (`crates/server/src/mcp_auth/`); every decision is here.

pub mod clients;
pub mod scope;

use std::collections::HashMap;
use std::sync::Mutex;

use latchkey_vault::{Aad, random, sha256};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

pub use clients::{Client, ClientKind};
pub use scope::ScopeLine;

use super::Engine;
use super::identity::{Grant, TokenPair};
use crate::store::{AuthGrantRow, GrantTake, OAuthClientRow, StoreError};
use crate::{CallError, Env, ErrorCode};

/// Authorization codes live this long.
pub const CODE_TTL_MS: i64 = 60_000;
/// A pending authorization (the browser's cookie) lives this long: sign-in and consent.
pub const PENDING_TTL_MS: i64 = 10 * 60_000;
/// An app sign-in request lives this long; the grant it is answered with much less.
const SIGN_IN_TTL_MS: i64 = 10 * 60_000;
const GRANT_TTL_MS: i64 = 2 * 60_000;
/// A registered client nobody authorized is forgotten this long after its registration; an
/// authorized one this long after the refresh-token family of its last authorization expired
/// (then nothing issued to it works any more). See [`McpAuth::client`].
pub const CLIENT_IDLE_MS: i64 = 30 * 86_400_000;
/// The longest `state` accepted (it travels in the cookie).
const MAX_STATE: usize = 400;
/// Metadata documents kept at most.
const CACHE_MAX: usize = 1_000;

/// The path of the authorization endpoint, and of the browser's return from a sign-in.
pub const AUTHORIZE_PATH: &str = "/oauth/authorize";
pub const SIGNED_IN_PATH: &str = "/oauth/authorize/signed-in";
pub const CONTINUE_PATH: &str = "/oauth/authorize/continue";

/// What the engine keeps for the authorization server: fetched metadata documents and the
/// HTTP clients that fetch them.
pub(crate) struct Shared {
    documents: Mutex<HashMap<String, (Client, i64)>>,
    public_http: reqwest::Client,
    any_http: reqwest::Client,
}

impl Default for Shared {
    fn default() -> Self {
        let public_http = crate::http::client_builder()
            .dns_resolver(crate::upstream::egress::PublicOnly)
            .build()
            .unwrap_or_else(|_| crate::http::default_client());
        Shared { documents: Mutex::default(), public_http, any_http: crate::http::default_client() }
    }
}

/// The authorization request, as checked (what a code is bound to).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The scope as granted (checked, never empty).
    pub scope: String,
    /// `<public_url>/mcp` (the only resource there is), given or not.
    pub resource: String,
}

/// The browser's authorization in progress: the request, and once the user signed in, who.
/// Sealed into the authorization cookie. `Debug` leaves out the CSRF token and the app
/// sign-in request's handle.
#[derive(Clone, Serialize, Deserialize)]
pub struct Pending {
    pub request: AuthRequest,
    pub client: ClientCard,
    pub env: Env,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub csrf: String,
    pub expires_at: i64,
    /// The app sign-in request the browser was sent with (`sign_in_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in: Option<String>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("request", &self.request)
            .field("client", &self.client)
            .field("env", &self.env)
            .field("user", &self.user)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the consent page says of a client (the whole client would not fit in a cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCard {
    pub kind: ClientKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// A refused authorization request: shown as a page while the redirect URI is not trusted
/// (RFC 6749 §4.1.2.1: never redirect to an unverified URI), else sent back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizeError {
    Page(String),
    Redirect(String),
}

/// How users sign in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignIn {
    /// Through this `login = true` connector's login flow.
    Connector(String),
    /// At the app's own page (`[server.mcp] sign_in_url`).
    App(String),
}

fn cookie_aad() -> Aad {
    Aad::new("mcp", "authorize", "cookie", "")
}

fn hash(handle: &str) -> Vec<u8> {
    sha256(handle.as_bytes()).to_vec()
}

fn unavailable(e: StoreError) -> CallError {
    CallError::from(e)
}

/// An OAuth error for the token endpoint: `oauth_error` is its RFC 6749 §5.2 code.
fn oauth(code: ErrorCode, oauth_error: &str, message: impl Into<String>) -> CallError {
    let mut e = CallError::new(code, message);
    e.details.insert("oauth_error".into(), Value::String(oauth_error.into()));
    e
}

/// `redirect_uri` with `params` added to its query.
fn with_params(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let Ok(mut u) = Url::parse(redirect_uri) else { return redirect_uri.to_owned() };
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// Whether `verifier` (RFC 7636 §4.1: 43 to 128 unreserved characters) hashes to `challenge`
/// (S256), compared in constant time.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed =
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sha256(verifier.as_bytes()));
    // Both sides compared whatever the verifier's form, so the time says nothing.
    latchkey_vault::constant_time_eq(computed.as_bytes(), challenge.as_bytes()) && well_formed
}

/// The authorization server, over the engine's store, vault, identity provider and clock.
pub struct McpAuth<'a> {
    pub(super) engine: &'a Engine,
}

#[derive(Serialize, Deserialize)]
struct CodeData {
    redirect_uri: String,
    code_challenge: String,
    scope: String,
    resource: String,
}

#[derive(Serialize, Deserialize)]
struct GrantData {
    /// The SHA-256 (hex) of the sign-in request it answers.
    request: String,
}

impl McpAuth<'_> {
    fn now(&self) -> i64 {
        self.engine.clock.now_ms()
    }

    fn mirror(&self) -> &super::mirror::Mirror {
        &self.engine.mirror
    }

    fn settings(&self) -> crate::config::McpServerConfig {
        self.engine.mirror.config().server.mcp.clone().unwrap_or_default()
    }

    /// The issuer: Latchkey's public URL.
    pub fn issuer(&self) -> &str {
        &self.engine.public_url
    }

    /// `<public_url>/mcp`: the resource MCP clients' tokens are for, and their `aud`.
    pub fn resource(&self) -> String {
        self.engine.identity.mcp_audience()
    }

    /// The environment MCP clients' users and tokens belong to (`[server.mcp] environment`).
    pub fn env(&self) -> Env {
        self.settings().env()
    }

    /// The scopes to advertise.
    pub fn scopes_supported(&self) -> Vec<String> {
        scope::supported(self.mirror())
    }

    /// A granted scope in words, for the consent page.
    pub fn describe_scope(&self, scope: &str) -> Vec<ScopeLine> {
        scope::describe(self.mirror(), scope)
    }

    /// Dynamic client registrations allowed per second (`[server.mcp] registrations_per_second`).
    pub fn registrations_per_second(&self) -> u32 {
        self.settings().registrations_per_second.unwrap_or(2)
    }

    /// `POST /v1/mcp/register` (RFC 7591): a public client; answers its id, when it was
    /// issued (Unix seconds) and its metadata as accepted (`token_endpoint_auth_method` is
    /// always `none`).
    pub async fn register(&self, body: &Value) -> Result<(String, i64, clients::Metadata), CallError> {
        let metadata = clients::check_metadata(body, false).map_err(|e| {
            let mut err = CallError::invalid_params(e.message);
            err.details.insert("oauth_error".into(), Value::String(e.code.into()));
            err
        })?;
        let id = format!("mcp_{}", random::token(24));
        let now = self.now();
        let stored = serde_json::to_string(&metadata).map_err(|e| CallError::internal(e.to_string()))?;
        let row =
            OAuthClientRow { id: id.clone(), metadata: stored, created_at: now, kept_until: now + CLIENT_IDLE_MS };
        self.engine.store.insert_oauth_client(&row).await.map_err(unavailable)?;
        Ok((id, now / 1000, metadata))
    }

    /// The client `client_id` names: a registered one, or the metadata document at that URL
    /// (fetched, or kept from a recent fetch). The error says what is wrong, for a page. A
    /// registration past its `kept_until` (see [`CLIENT_IDLE_MS`]) is unknown, whether or not
    /// the sweep has deleted it yet.
    pub async fn client(&self, client_id: &str) -> Result<Client, String> {
        let loopback = self.settings().allow_loopback_client_ids;
        if let Some(url) = clients::document_url(client_id, loopback) {
            let url = url?;
            return self.document(&url, loopback).await;
        }
        if client_id.is_empty() || client_id.len() > clients::MAX_CLIENT_ID {
            return Err("the request has no valid `client_id`".into());
        }
        let row = self
            .engine
            .store
            .get_oauth_client(client_id)
            .await
            .map_err(|_| "Latchkey's store did not answer: try again in a moment".to_owned())?
            .filter(|row| row.kept_until >= self.now())
            .ok_or_else(|| {
                "this client is not registered here: it must register again (or use a client ID metadata document)"
                    .to_owned()
            })?;
        let metadata: clients::Metadata =
            serde_json::from_str(&row.metadata).map_err(|_| "this client's registration is damaged".to_owned())?;
        Ok(metadata.into_client(row.id, ClientKind::Registered))
    }

    async fn document(&self, url: &Url, loopback: bool) -> Result<Client, String> {
        let now = self.now();
        let key = url.as_str().to_owned();
        if let Some((client, until)) = self.engine.mcp.documents.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && *until > now
        {
            return Ok(client.clone());
        }
        let http = if loopback { &self.engine.mcp.any_http } else { &self.engine.mcp.public_http };
        if !loopback {
            crate::upstream::egress::check_url("client_id", url.as_str()).map_err(|e| e.message)?;
        }
        let (client, keep_s) = clients::fetch_document(http, url).await?;
        let mut cache = self.engine.mcp.documents.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (_, until)| *until > now);
        }
        if keep_s > 0 && cache.len() < CACHE_MAX {
            cache.insert(key, (client.clone(), now + keep_s * 1000));
        }
        Ok(client)
    }

    /// Checks an authorization request (`GET /oauth/authorize`'s query) and starts the
    /// browser's pending authorization (the user is not known yet).
    pub async fn authorize(&self, q: &HashMap<String, String>) -> Result<Pending, AuthorizeError> {
        let page = |m: &str| AuthorizeError::Page(m.to_owned());
        let client_id = q.get("client_id").filter(|c| !c.is_empty()).ok_or_else(|| {
            page("The request names no client (`client_id` is missing). Start again from the application.")
        })?;
        let client = self
            .client(client_id)
            .await
            .map_err(|m| AuthorizeError::Page(format!("The client cannot be used: {m}.")))?;
        let redirect_uri = q.get("redirect_uri").ok_or_else(|| {
            page("The request has no `redirect_uri`: the application must name one of its registered redirect URIs.")
        })?;
        if !client.redirect_uris.iter().any(|r| r == redirect_uri) {
            return Err(page(
                "The request's `redirect_uri` is not one of the client's registered redirect URIs (they must match exactly), so Latchkey will not send you there.",
            ));
        }
        let state = q.get("state").cloned();
        let refuse = |error: &str, description: &str| {
            let mut params = vec![("error", error), ("error_description", description)];
            if let Some(s) = &state {
                params.push(("state", s));
            }
            params.push(("iss", self.issuer()));
            AuthorizeError::Redirect(with_params(redirect_uri, &params))
        };
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
            return Err(AuthorizeError::Redirect(with_params(
                redirect_uri,
                &[("error", "invalid_request"), ("error_description", "state is too long"), ("iss", self.issuer())],
            )));
        }
        if q.get("response_type").map(String::as_str) != Some("code") {
            return Err(refuse("unsupported_response_type", "response_type must be code"));
        }
        let Some(challenge) = q.get("code_challenge") else {
            return Err(refuse(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        };
        if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
            return Err(refuse("invalid_request", "code_challenge_method must be S256"));
        }
        if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(refuse(
                "invalid_request",
                "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
            ));
        }
        let resource = self.resource();
        if let Some(r) = q.get("resource")
            && r.trim_end_matches('/') != resource
        {
            return Err(refuse("invalid_target", "resource must be this server's /mcp"));
        }
        let scope = scope::check(self.mirror(), q.get("scope").map_or("", String::as_str))
            .map_err(|m| refuse("invalid_scope", &format!("scope {m}")))?;
        let request = AuthRequest {
            client_id: client.id.clone(),
            redirect_uri: redirect_uri.clone(),
            code_challenge: challenge.clone(),
            state,
            scope,
            resource,
        };
        Ok(Pending {
            request,
            client: ClientCard { kind: client.kind, name: client.client_name, uri: client.client_uri },
            env: self.env(),
            user: None,
            csrf: random::token(32),
            expires_at: self.now() + PENDING_TTL_MS,
            sign_in: None,
        })
    }

    /// Where the client is sent back to with `error` (its `state` and our `iss` with it).
    pub fn refusal(&self, p: &Pending, error: &str, description: &str) -> String {
        let mut params = vec![("error", error), ("error_description", description)];
        if let Some(s) = &p.request.state {
            params.push(("state", s));
        }
        params.push(("iss", self.issuer()));
        with_params(&p.request.redirect_uri, &params)
    }

    /// The pending authorization as a cookie's value: sealed, then base64url.
    pub fn seal_pending(&self, p: &Pending) -> String {
        let text = serde_json::to_vec(p).unwrap_or_default();
        let sealed = self.engine.vault.seal(&cookie_aad(), &text);
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sealed)
    }

    /// The pending authorization a cookie holds, if this install sealed it and it has not
    /// expired.
    pub fn open_pending(&self, cookie: &str) -> Option<Pending> {
        if cookie.is_empty() || cookie.len() > 8192 {
            return None;
        }
        let sealed = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, cookie).ok()?;
        let opened = self.engine.vault.open(&cookie_aad(), &sealed).ok()?;
        let p: Pending = serde_json::from_slice(opened.expose_secret()).ok()?;
        (p.expires_at > self.now()).then_some(p)
    }

    /// How users sign in: the app's page when `sign_in_url` is set, else the configured
    /// `login_connector`, else the only `login = true` connector. The error says what to set.
    pub fn sign_in(&self) -> Result<SignIn, String> {
        let settings = self.settings();
        if let Some(url) = settings.sign_in_url {
            return Ok(SignIn::App(url));
        }
        if let Some(c) = settings.login_connector {
            return Ok(SignIn::Connector(c));
        }
        let mut login: Vec<String> = self
            .mirror()
            .connectors()
            .iter()
            .filter(|c| matches!(&c.config.auth, crate::config::AuthConfig::OAuth2AuthorizationCode(a) if a.login))
            .map(|c| c.name.clone())
            .collect();
        login.sort();
        match login.len() {
            1 => Ok(SignIn::Connector(login.remove(0))),
            0 => Err("No sign-in is configured for MCP clients: add a connector with `login = true`, or set `[server.mcp] sign_in_url`.".into()),
            _ => Err(format!(
                "Several connectors sign users in ({}): choose one with `[server.mcp] login_connector`.",
                login.join(", ")
            )),
        }
    }

    /// Latchkey's own return address from a login connector's flow.
    pub fn signed_in_url(&self) -> String {
        format!("{}{SIGNED_IN_PATH}", self.engine.public_url)
    }

    /// The user a login connector's one-time sign-in code names (taken: it works once).
    pub async fn user_of_login_code(&self, env: Env, code: &str) -> Result<String, CallError> {
        let row =
            self.engine.store.take_login_code(&hash(code), env, self.now()).await.map_err(unavailable)?.ok_or_else(
                || CallError::invalid_params("the sign-in code is unknown, used or expired: sign in again"),
            )?;
        Ok(row.user_id)
    }

    /// An app sign-in request (`sign_in_url`): its id and the URL to send the browser to.
    pub async fn app_sign_in_request(&self, env: Env, sign_in_url: &str) -> Result<(String, String), CallError> {
        let id = format!("mcpr_{}", random::token(32));
        let now = self.now();
        let row = AuthGrantRow {
            hash: hash(&id),
            kind: "sign_in".into(),
            env,
            user_id: String::new(),
            client_id: String::new(),
            data: "{}".into(),
            family: String::new(),
            created_at: now,
            expires_at: now + SIGN_IN_TTL_MS,
            used_at: None,
        };
        self.engine.store.insert_auth_grant(&row).await.map_err(unavailable)?;
        Ok((id.clone(), with_params(sign_in_url, &[("request", &id)])))
    }

    /// `POST /v1/mcp/sign-in` (app key of `env`): the app has signed `user` in for `request`;
    /// answers the single-use URL that carries the browser back (2 minutes). A user unknown to
    /// Latchkey is created.
    pub async fn app_signed_in(&self, env: Env, request: &str, user: &str) -> Result<String, CallError> {
        if env != self.env() {
            return Err(CallError::new(
                ErrorCode::Forbidden,
                format!(
                    "MCP clients sign users in to the {} environment (`[server.mcp] environment`): use an app key of that environment",
                    self.env()
                ),
            ));
        }
        if user.is_empty() || user.len() > 200 || user.chars().any(char::is_control) {
            return Err(CallError::invalid_params("`user` must be the app's user id (1 to 200 characters)"));
        }
        let now = self.now();
        let refused = || {
            CallError::not_found(
                "no such sign-in request: it is unknown, used or expired (10 minutes); the user must start again from their MCP client",
            )
        };
        let row = match self.engine.store.take_auth_grant(&hash(request), "sign_in", now).await.map_err(unavailable)? {
            GrantTake::Fresh(row) if row.expires_at >= now && row.env == env => row,
            _ => return Err(refused()),
        };
        if self.engine.identity.get_user(env, user).await?.is_none() {
            self.engine.identity.upsert_user(env, user, None, Value::Null).await?;
        }
        let grant = format!("mcpg_{}", random::token(32));
        let data = serde_json::to_string(&GrantData { request: latchkey_vault::to_hex(&row.hash) })
            .map_err(|e| CallError::internal(e.to_string()))?;
        let grant_row = AuthGrantRow {
            hash: hash(&grant),
            kind: "grant".into(),
            env,
            user_id: user.to_owned(),
            client_id: String::new(),
            data,
            family: String::new(),
            created_at: now,
            expires_at: now + GRANT_TTL_MS,
            used_at: None,
        };
        self.engine.store.insert_auth_grant(&grant_row).await.map_err(unavailable)?;
        Ok(format!("{}{CONTINUE_PATH}?grant={grant}", self.engine.public_url))
    }

    /// The user an app's grant names, when the grant answers this browser's own sign-in
    /// request (`p.sign_in`): taken, it works once.
    pub async fn user_of_grant(&self, p: &Pending, grant: &str) -> Result<String, String> {
        let Some(request) = &p.sign_in else { return Err("this browser was not sent to the app's sign-in".into()) };
        let now = self.now();
        let taken = self
            .engine
            .store
            .take_auth_grant(&hash(grant), "grant", now)
            .await
            .map_err(|_| "Latchkey's store did not answer: try again in a moment".to_owned())?;
        let row = match taken {
            GrantTake::Fresh(row) if row.expires_at >= now && row.env == p.env => row,
            _ => return Err("this sign-in link is unknown, used or expired: start again from the application".into()),
        };
        let data: GrantData = serde_json::from_str(&row.data).map_err(|_| "the sign-in is damaged".to_owned())?;
        if data.request != latchkey_vault::to_hex(&hash(request)) {
            return Err("this sign-in was made for another browser: start again from the application".into());
        }
        Ok(row.user_id)
    }

    /// The user approved: an authorization code (60 s, single use) and where the browser
    /// takes it. A registered client is kept for [`CLIENT_IDLE_MS`] after the refresh-token
    /// family this authorization starts expires; one whose registration lapsed meanwhile is
    /// refused (`invalid_client`: it must register again).
    pub async fn approve(&self, p: &Pending) -> Result<String, CallError> {
        let user = p.user.as_deref().ok_or_else(|| CallError::invalid_params("nobody has signed in"))?;
        let code = format!("mcpc_{}", random::token(43));
        let now = self.now();
        if p.client.kind == ClientKind::Registered {
            let until = now + self.engine.identity.refresh_ttl_ms() + CLIENT_IDLE_MS;
            let kept =
                self.engine.store.keep_oauth_client(&p.request.client_id, now, until).await.map_err(unavailable)?;
            if !kept {
                return Err(oauth(
                    ErrorCode::InvalidParams,
                    "invalid_client",
                    "this client is not registered here: it must register again (or use a client ID metadata document)",
                ));
            }
        }
        let data = serde_json::to_string(&CodeData {
            redirect_uri: p.request.redirect_uri.clone(),
            code_challenge: p.request.code_challenge.clone(),
            scope: p.request.scope.clone(),
            resource: p.request.resource.clone(),
        })
        .map_err(|e| CallError::internal(e.to_string()))?;
        let row = AuthGrantRow {
            hash: hash(&code),
            kind: "code".into(),
            env: p.env,
            user_id: user.to_owned(),
            client_id: p.request.client_id.clone(),
            data,
            family: Grant::new_family(),
            created_at: now,
            expires_at: now + CODE_TTL_MS,
            used_at: None,
        };
        self.engine.store.insert_auth_grant(&row).await.map_err(unavailable)?;
        let mut params = vec![("code", code.as_str())];
        if let Some(s) = &p.request.state {
            params.push(("state", s));
        }
        params.push(("iss", self.issuer()));
        Ok(with_params(&p.request.redirect_uri, &params))
    }

    /// `POST /v1/token` with `grant_type=authorization_code`: the code is taken (once, across
    /// instances), checked against the client, redirect URI, PKCE verifier and resource, and
    /// exchanged for a user token pair (`aud` `<public_url>/mcp`, the granted scope). A code
    /// presented again revokes the tokens it was exchanged for (RFC 6749 §4.1.2).
    pub async fn exchange_code(
        &self,
        code: &str,
        verifier: Option<&str>,
        client_id: Option<&str>,
        redirect_uri: Option<&str>,
        resource: Option<&str>,
    ) -> Result<TokenPair, CallError> {
        let invalid = |m: &str| oauth(ErrorCode::InvalidParams, "invalid_grant", m);
        let Some(verifier) = verifier else {
            return Err(oauth(
                ErrorCode::InvalidParams,
                "invalid_request",
                "code_verifier is missing (PKCE is required)",
            ));
        };
        let Some(client_id) = client_id else {
            return Err(oauth(ErrorCode::InvalidParams, "invalid_request", "client_id is missing"));
        };
        let now = self.now();
        let row = match self.engine.store.take_auth_grant(&hash(code), "code", now).await.map_err(unavailable)? {
            GrantTake::Fresh(row) => row,
            GrantTake::Used(row) => {
                self.engine.identity.revoke_family(&row.family).await?;
                tracing::warn!(client = %row.client_id, "authorization code replayed: its tokens are revoked");
                return Err(invalid("the authorization code was used already: the tokens issued for it are revoked"));
            }
            GrantTake::Unknown => return Err(invalid("the authorization code is not valid")),
        };
        if row.expires_at < now {
            return Err(invalid("the authorization code expired (it lasts 60 seconds): authorize again"));
        }
        let data: CodeData =
            serde_json::from_str(&row.data).map_err(|_| invalid("the authorization code is damaged"))?;
        if row.client_id != client_id {
            return Err(invalid("the authorization code was issued to another client"));
        }
        if redirect_uri != Some(data.redirect_uri.as_str()) {
            return Err(invalid("redirect_uri is not the one the code was issued for"));
        }
        if !pkce_matches(verifier, &data.code_challenge) {
            return Err(invalid("code_verifier does not match the code_challenge"));
        }
        if let Some(r) = resource
            && r.trim_end_matches('/') != data.resource
        {
            return Err(oauth(
                ErrorCode::InvalidParams,
                "invalid_target",
                "resource is not the one the code was issued for",
            ));
        }
        let grant = Grant { family: row.family.clone(), scope: Some(data.scope), audience: Some(data.resource) };
        self.engine.identity.mint_tokens_for(row.env, &row.user_id, grant).await
    }
}

impl Engine {
    /// The authorization server of MCP clients.
    pub fn mcp_auth(&self) -> McpAuth<'_> {
        McpAuth { engine: self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_is_checked_and_malformed_verifiers_fail() {
        // The challenge computed by Python's hashlib and base64 (an independent implementation).
        let verifier = "dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "ngF5GsXcbwljx6u133FFr3Xht9xooA_DuaX_3QwODtc";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches("dBjftJeZ4CVP-mJ92K27uhbUJU1p1r_wW1gFWFOEjXj", challenge));
        assert!(!pkce_matches("short", challenge));
        assert!(!pkce_matches(&format!("{verifier} "), challenge));
    }

    #[test]
    fn parameters_are_added_to_the_redirect_uris_own_query() {
        assert_eq!(
            with_params("https://a.example/cb?x=1", &[("code", "c d"), ("iss", "https://lk")]),
            "https://a.example/cb?x=1&code=c+d&iss=https%3A%2F%2Flk"
        );
        assert_eq!(with_params("com.example.app:/cb", &[("code", "c")]), "com.example.app:/cb?code=c");
    }
}
