//! Per-user connections (SPEC §8): connect sessions, the browser flow (state bound to a cookie,
//! PKCE S256, RFC 9207 `iss`), the callback's code exchange and profile, and the connections'
//! lifecycle (listing, deletion with revocation, reconnect links).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use latchkey_vault::{Aad, random, sha256};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::Engine;
use crate::auth::Credential;
use crate::auth::authorization_code::{Revocable, UserAuth};
use crate::config::RedirectMode;
use crate::event::{EventKind, EventOutcome};
use crate::secret::PkceVerifier;
use crate::store::{ConnectionFilter, ConnectionRow, FlowRow, FlowTake, TokenKey, TokenRow};
use crate::time_fmt::now_ms;
use crate::token::{TokenState, request_token};
use crate::{CallError, Env, ErrorCode};

/// Connect sessions and `state`s live this long (SPEC §8: 10 minutes).
const FLOW_TTL_MS: i64 = 10 * 60 * 1000;

/// A failed browser step: where to send the browser (the app's `return_to` with
/// `status=error&error=<code>`), or, when no trustworthy `return_to` is known, an error page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowError {
    pub code: &'static str,
    pub message: String,
    pub redirect: Option<String>,
}

/// A finished callback: where the browser goes, and which cookie to clear.
#[derive(Debug, Clone)]
pub struct CallbackOutcome {
    pub redirect: String,
    pub cookie_name: String,
}

/// A connection with its token's health, for listings.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    pub row: ConnectionRow,
    pub token: Option<TokenRow>,
}

#[derive(Serialize, Deserialize)]
struct SessionData {
    params: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize)]
struct StateData {
    verifier: Option<String>,
    params: BTreeMap<String, String>,
    redirect_uri: String,
    /// A sign-in: the owner comes from the provider's profile, not from a caller.
    #[serde(default)]
    login: bool,
}

/// Sign-in codes live this long.
const LOGIN_CODE_TTL_MS: i64 = 60_000;

pub(crate) fn flow_aad(hash: &[u8], kind: &'static str, env: Env) -> Aad {
    Aad::new("flow", latchkey_vault::to_hex(hash), kind, env.as_str())
}

/// `return_to` with `key=value` pairs added to its query.
fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            u.into()
        }
        Err(_) => base.to_owned(),
    }
}

fn flow_error(code: &'static str, message: impl Into<String>, return_to: Option<&str>) -> FlowError {
    FlowError {
        code,
        message: message.into(),
        redirect: return_to.map(|r| with_query(r, &[("status", "error"), ("error", code)])),
    }
}

/// The cookie that binds a `state` to the browser that started the flow; one per flow, so
/// parallel flows in one browser do not overwrite each other.
pub fn flow_cookie_name(state: &str) -> String {
    let h = sha256(state.as_bytes());
    format!("lkflow_{}", latchkey_vault::to_hex(&h[..6]))
}

impl Engine {
    fn user_auth_env(&self, connector: &str, env: Env) -> Result<Arc<UserAuth>, CallError> {
        let conn = self
            .connector(connector)
            .ok_or_else(|| CallError::not_found(format!("no connector named `{connector}`")))?;
        match &conn.credential(env)?.credential {
            Credential::User(u) => Ok(u.clone()),
            _ => Err(CallError::invalid_params(format!(
                "connector `{connector}` uses `{}`, not `oauth2_authorization_code`: it has no per-user connections",
                conn.config.auth.method()
            ))),
        }
    }

    /// Whether `return_to` matches an entry of `[server] return_to_allow`: same scheme, host
    /// and port, and a path under the entry's path.
    pub fn return_to_allowed(&self, return_to: &str) -> bool {
        let Ok(u) = url::Url::parse(return_to) else { return false };
        if !u.username().is_empty() || u.password().is_some() || u.fragment().is_some() {
            return false;
        }
        self.config.server.return_to_allow.iter().any(|entry| {
            let e = entry.value();
            let under = if e.path().ends_with('/') {
                u.path().starts_with(e.path())
            } else {
                u.path() == e.path() || u.path().starts_with(&format!("{}/", e.path()))
            };
            u.scheme() == e.scheme()
                && u.host() == e.host()
                && u.port_or_known_default() == e.port_or_known_default()
                && under
        })
    }

    fn redirect_uri(&self, connector: &str, auth: &UserAuth) -> String {
        match auth.config.redirect {
            RedirectMode::Generic => format!("{}/oauth/callback", self.public_url),
            RedirectMode::PerConnector => format!("{}/oauth/{connector}/callback", self.public_url),
        }
    }

    /// `POST /v1/connect/{connector}`: a single-use link (valid 10 minutes) that starts the
    /// flow for `owner` in `env`.
    pub async fn connect_session(
        &self,
        env: Env,
        connector: &str,
        owner: &str,
        return_to: &str,
        params: BTreeMap<String, String>,
    ) -> Result<String, CallError> {
        let auth = self.user_auth_env(connector, env)?;
        if owner.is_empty() || owner.len() > 200 {
            return Err(CallError::invalid_params("`user` must name the app's user (1 to 200 characters)"));
        }
        if !self.return_to_allowed(return_to) {
            return Err(CallError::invalid_params(format!(
                "return_to `{return_to}` is not allowed: add its origin and path to `[server] return_to_allow`"
            )));
        }
        auth.login_base(&params)?;
        let handle = random::token(43);
        let hash = sha256(handle.as_bytes()).to_vec();
        let now = now_ms();
        let data = serde_json::to_vec(&SessionData { params }).map_err(|e| CallError::internal(e.to_string()))?;
        let row = FlowRow {
            sealed: Some(self.vault.seal(&flow_aad(&hash, "session", env), &data)),
            handle_hash: hash,
            kind: "session".into(),
            connector: connector.to_owned(),
            env,
            owner: owner.to_owned(),
            return_to: return_to.to_owned(),
            binding: None,
            created_at: now,
            expires_at: now + FLOW_TTL_MS,
            used_at: None,
        };
        self.store.insert_flow(&row).await.map_err(|e| CallError::new(ErrorCode::Unavailable, e.to_string()))?;
        Ok(format!("{}/oauth/{connector}/start?session={handle}", self.public_url))
    }

    /// `GET /oauth/{connector}/start?session=`: consumes the session, makes a `state` bound to
    /// this browser (a cookie) and a PKCE verifier, and returns the provider's login URL and
    /// the cookie to set.
    pub async fn start_flow(&self, connector: &str, session: &str) -> Result<(String, String, String), FlowError> {
        let now = now_ms();
        let hash = sha256(session.as_bytes());
        let unavailable = |e: crate::store::StoreError| flow_error("unavailable", e.to_string(), None);
        let used = |r: &FlowRow| {
            flow_error(
                "session_used",
                "this connect link was used already: ask the app for a new one",
                Some(&r.return_to),
            )
        };
        let invalid =
            || flow_error("session_invalid", "this connect link is not valid: ask the app for a new one", None);
        // Checked before it is taken: a link opened at another connector's `/start`, or too
        // late, is refused without spending it.
        let row = match self.store.get_flow(&hash).await.map_err(unavailable)? {
            Some(r) if r.kind == "session" => r,
            _ => return Err(invalid()),
        };
        if row.used_at.is_some() {
            return Err(used(&row));
        }
        if row.connector != connector {
            return Err(invalid());
        }
        if now > row.expires_at {
            return Err(flow_error(
                "session_expired",
                "this connect link expired: ask the app for a new one",
                Some(&row.return_to),
            ));
        }
        match self.store.take_flow(&hash, now).await.map_err(unavailable)? {
            FlowTake::Fresh(_) => {}
            FlowTake::Used(r) => return Err(used(&r)),
            FlowTake::Unknown => return Err(invalid()),
        }
        let data: SessionData = row
            .sealed
            .as_ref()
            .and_then(|s| self.vault.open(&flow_aad(&hash, "session", row.env), s).ok())
            .and_then(|p| serde_json::from_slice(p.expose_secret()).ok())
            .ok_or_else(|| flow_error("session_invalid", "the connect session is damaged", Some(&row.return_to)))?;
        self.begin_state(connector, row.env, &row.owner, &row.return_to, data.params, false).await
    }

    /// `GET /oauth/{connector}/login?return_to=&environment=`: a sign-in through a connector
    /// with `login = true`; the user is found or created from the provider's profile.
    pub async fn start_login(
        &self,
        connector: &str,
        env: Env,
        return_to: &str,
    ) -> Result<(String, String, String), FlowError> {
        let auth =
            self.user_auth_env(connector, env).map_err(|e| flow_error("connector_unavailable", e.message, None))?;
        if !auth.config.login {
            return Err(flow_error(
                "login_disabled",
                format!("connector `{connector}` does not sign users in (login = false)"),
                None,
            ));
        }
        if !self.return_to_allowed(return_to) {
            return Err(flow_error("return_to_not_allowed", "return_to is not in `[server] return_to_allow`", None));
        }
        self.begin_state(connector, env, "", return_to, BTreeMap::new(), true).await
    }

    async fn begin_state(
        &self,
        connector: &str,
        env: Env,
        owner: &str,
        return_to: &str,
        params: BTreeMap<String, String>,
        login: bool,
    ) -> Result<(String, String, String), FlowError> {
        let now = now_ms();
        let rt = Some(return_to);
        let auth =
            self.user_auth_env(connector, env).map_err(|e| flow_error("connector_unavailable", e.message, rt))?;
        let state = random::token(43);
        let verifier = auth.config.pkce.then(PkceVerifier::generate);
        let challenge = verifier.as_ref().map(PkceVerifier::challenge);
        let verifier = verifier.map(|v| v.expose_secret().to_owned()); // sealed into the state
        let binding = random::token(32);
        let redirect_uri = self.redirect_uri(connector, &auth);
        let login_url = auth
            .authorize_url(&params, &redirect_uri, &state, challenge.as_deref())
            .map_err(|e| flow_error("invalid_params", e.message, rt))?;
        let state_hash = sha256(state.as_bytes()).to_vec();
        let sealed = serde_json::to_vec(&StateData { verifier, params, redirect_uri, login })
            .map_err(|e| flow_error("internal", e.to_string(), rt))?;
        let state_row = FlowRow {
            sealed: Some(self.vault.seal(&flow_aad(&state_hash, "state", env), &sealed)),
            handle_hash: state_hash,
            kind: "state".into(),
            connector: connector.to_owned(),
            env,
            owner: owner.to_owned(),
            return_to: return_to.to_owned(),
            binding: Some(sha256(binding.as_bytes()).to_vec()),
            created_at: now,
            expires_at: now + FLOW_TTL_MS,
            used_at: None,
        };
        self.store.insert_flow(&state_row).await.map_err(|e| flow_error("unavailable", e.to_string(), rt))?;
        Ok((login_url, flow_cookie_name(&state), binding))
    }

    /// The provider's redirect back: checks `state` (single use, fresh, this browser, this
    /// connector), `iss`, exchanges the code with the PKCE verifier, reads the profile, stores
    /// the connection and its tokens, and says where the browser goes.
    pub async fn finish_flow(
        &self,
        path_connector: Option<&str>,
        query: &HashMap<String, String>,
        cookies: &HashMap<String, String>,
    ) -> Result<CallbackOutcome, FlowError> {
        let now = now_ms();
        let state =
            query.get("state").ok_or_else(|| flow_error("state_missing", "the callback has no `state`", None))?;
        let hash = sha256(state.as_bytes());
        let unavailable = |e: crate::store::StoreError| flow_error("unavailable", e.to_string(), None);
        let used = |r: &FlowRow| {
            flow_error("state_used", "this login was completed already (a replayed callback)", Some(&r.return_to))
        };
        // The state is read, the callback checked against it (fresh, this connector, this
        // browser, this issuer), and only then taken: a callback that is refused (one without
        // the browser's cookie) does not spend the state of the browser that holds it.
        let row = match self.store.get_flow(&hash).await.map_err(unavailable)? {
            Some(r) if r.kind == "state" => r,
            _ => {
                return Err(flow_error(
                    "state_invalid",
                    "unknown `state`: start the connection again from the app",
                    None,
                ));
            }
        };
        if row.used_at.is_some() {
            return Err(used(&row));
        }
        let rt = Some(row.return_to.as_str());
        if now > row.expires_at {
            return Err(flow_error("state_expired", "the login took longer than 10 minutes: start again", rt));
        }
        if path_connector.is_some_and(|c| c != row.connector) {
            return Err(flow_error("state_invalid", "this `state` belongs to another connector", rt));
        }
        let cookie_name = flow_cookie_name(state);
        let bound = cookies
            .get(&cookie_name)
            .zip(row.binding.as_ref())
            .is_some_and(|(value, expected)| latchkey_vault::constant_time_eq(&sha256(value.as_bytes()), expected));
        if !bound {
            return Err(flow_error(
                "browser_mismatch",
                "the login finished in another browser than the one that started it",
                rt,
            ));
        }
        let auth = self
            .user_auth_env(&row.connector, row.env)
            .map_err(|e| flow_error("connector_unavailable", e.message, rt))?;
        if let Some(err) = query.get("error") {
            let code: String = err.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
            let redirect = with_query(&row.return_to, &[("status", "error"), ("error", &code)]);
            return Err(FlowError {
                code: "provider_error",
                message: format!("the provider said `{code}`"),
                redirect: Some(redirect),
            });
        }
        if let Some(issuer) = &auth.config.issuer
            && query.get("iss") != Some(issuer)
        {
            return Err(flow_error(
                "iss_mismatch",
                "the callback's `iss` is not this connector's issuer (RFC 9207 mix-up defence)",
                rt,
            ));
        }
        let code = query
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| flow_error("code_missing", "the callback has no `code`", rt))?;
        // Spent exactly when its code is exchanged; a concurrent twin finds it used.
        match self.store.take_flow(&hash, now).await.map_err(unavailable)? {
            FlowTake::Fresh(_) => {}
            FlowTake::Used(r) => return Err(used(&r)),
            FlowTake::Unknown => {
                return Err(flow_error(
                    "state_invalid",
                    "unknown `state`: start the connection again from the app",
                    rt,
                ));
            }
        }
        let data: StateData = row
            .sealed
            .as_ref()
            .and_then(|s| self.vault.open(&flow_aad(&hash, "state", row.env), s).ok())
            .and_then(|p| serde_json::from_slice(p.expose_secret()).ok())
            .ok_or_else(|| flow_error("state_invalid", "the flow's state is damaged", rt))?;
        let key = TokenKey { connector: row.connector.clone(), env: row.env, connection: String::new() };
        let verifier = data.verifier.map(PkceVerifier::from);
        let request = auth.code_request(&SecretString::from(code.clone()), &data.redirect_uri, verifier);
        let set = match request_token(&auth.template.client, &request, auth.template.timeout, now_ms()).await {
            Ok(s) => s,
            Err(e) => {
                self.tokens
                    .event(
                        &key,
                        EventKind::ConnectionExchangeFailed,
                        EventOutcome::Error,
                        json!({"error": e.error, "error_description": e.description, "error_uri": e.uri, "user": row.owner}),
                    )
                    .await;
                return Err(flow_error(
                    "token_exchange_failed",
                    format!("the provider refused the code: {}", e.summary()),
                    rt,
                ));
            }
        };
        let (provider_user_id, email) = match auth.profile(&set.access_token).await {
            Ok(found) => found,
            Err(e) => {
                let detail = json!({"error": e.message, "user": row.owner});
                self.tokens.event(&key, EventKind::ConnectionProfileFailed, EventOutcome::Error, detail).await;
                return Err(flow_error("profile_failed", e.message, rt));
            }
        };
        let owner = if data.login {
            let puid = provider_user_id
                .clone()
                .ok_or_else(|| flow_error("profile_failed", "the profile has no user id at `user_id_path`", rt))?;
            self.sign_in_user(&row.connector, row.env, &puid, email.clone())
                .await
                .map_err(|e| flow_error("unavailable", e.message, rt))?
        } else {
            row.owner.clone()
        };
        let existing = self
            .store
            .find_connection(&row.connector, row.env, &owner)
            .await
            .map_err(|e| flow_error("unavailable", e.to_string(), rt))?;
        let id = existing.as_ref().map_or_else(|| format!("conn_{}", random::token(20)), |c| c.id.clone());
        let upserted = self
            .store
            .upsert_connection(&ConnectionRow {
                id,
                connector: row.connector.clone(),
                env: row.env,
                owner: owner.clone(),
                provider_user_id,
                email,
                scopes: set.scope.clone(),
                metadata: serde_json::Value::Object(set.extra.clone()).to_string(),
                return_to: Some(row.return_to.clone()),
                created_at: now,
                updated_at: now,
            })
            .await
            .map_err(|e| flow_error("unavailable", e.to_string(), rt))?;
        self.forget_user_connection(&upserted);
        let src = auth.for_connection(&upserted.id);
        let previous = self.tokens.install(&src, set).await.map_err(|e| flow_error("unavailable", e.message, rt))?;
        let kind = match (&existing, previous) {
            (None, _) => EventKind::ConnectionCreated,
            (Some(_), TokenState::ReauthorizationRequired | TokenState::Degraded) => EventKind::ConnectionRecovered,
            (Some(_), _) => EventKind::ConnectionReconnected,
        };
        self.tokens.event(&src.key, kind, EventOutcome::Ok, json!({"user": owner})).await;
        if data.login {
            let code = format!("lkc_{}", random::token(43));
            let row_code = crate::store::LoginCodeRow {
                hash: sha256(code.as_bytes()).to_vec(),
                env: row.env,
                user_id: owner.clone(),
                connection_id: upserted.id.clone(),
                created_at: now_ms(),
                expires_at: now_ms() + LOGIN_CODE_TTL_MS,
            };
            self.store.insert_login_code(&row_code).await.map_err(|e| flow_error("unavailable", e.to_string(), rt))?;
            let redirect = with_query(&row.return_to, &[("code", &code), ("status", "signed_in")]);
            return Ok(CallbackOutcome { redirect, cookie_name });
        }
        let redirect = with_query(&row.return_to, &[("connection", &upserted.id), ("status", "connected")]);
        Ok(CallbackOutcome { redirect, cookie_name })
    }

    /// The connection of `owner` on `connector` in `env`, if any: from memory when it was
    /// looked up since the last reload, else from the store.
    pub async fn user_connection(
        &self,
        env: Env,
        connector: &str,
        owner: &str,
    ) -> Result<Option<ConnectionRow>, CallError> {
        let key = (connector.to_owned(), env, owner.to_owned());
        if let Some(row) = self.user_connections.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(Some(ConnectionRow::clone(row)));
        }
        let found = self.store.find_connection(connector, env, owner);
        let row = super::tokens::store_bounded(found, "the user's connection could not be looked up").await?;
        if let Some(r) = &row {
            self.user_connections.lock().unwrap_or_else(|e| e.into_inner()).insert(key, Arc::new(r.clone()));
        }
        Ok(row)
    }

    fn forget_user_connection(&self, row: &ConnectionRow) {
        let key = (row.connector.clone(), row.env, row.owner.clone());
        self.user_connections.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
    }

    pub async fn connection_views(&self, filter: &ConnectionFilter) -> Result<Vec<ConnectionView>, CallError> {
        let rows = self
            .store
            .list_connections(filter)
            .await
            .map_err(|e| CallError::new(ErrorCode::Unavailable, e.to_string()))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let key = TokenKey { connector: row.connector.clone(), env: row.env, connection: row.id.clone() };
            let token = self.tokens.state_of(&key).await?;
            out.push(ConnectionView { row, token });
        }
        Ok(out)
    }

    pub async fn connection_by_id(&self, id: &str) -> Result<Option<ConnectionRow>, CallError> {
        self.store.get_connection(id).await.map_err(|e| CallError::new(ErrorCode::Unavailable, e.to_string()))
    }

    /// Revokes the connection's tokens at the provider (when the connector has a
    /// `revoke_url`), then erases the connection and its tokens. Returns whether the
    /// provider confirmed the revocation.
    pub async fn delete_connection(&self, row: &ConnectionRow, actor: &str) -> Result<bool, CallError> {
        let key = TokenKey { connector: row.connector.clone(), env: row.env, connection: row.id.clone() };
        let mut revoked = false;
        let mut revoke_error = None;
        if let Ok(auth) = self.user_auth_env(&row.connector, row.env)
            && let Some(set) = self.tokens.current(&key).await
        {
            let token = match &set.refresh_token {
                Some(r) => Revocable::Refresh(r),
                None => Revocable::Access(&set.access_token),
            };
            match auth.revoke(token).await {
                Ok(done) => revoked = done,
                Err(e) => revoke_error = Some(e.message),
            }
        }
        self.store
            .delete_connection(&row.id)
            .await
            .map_err(|e| CallError::new(ErrorCode::Unavailable, e.to_string()))?;
        self.forget_user_connection(row);
        self.tokens.forget(&key);
        self.tokens
            .event(
                &key,
                EventKind::ConnectionDeleted,
                EventOutcome::Ok,
                json!({"user": row.owner, "revoked": revoked, "revoke_error": revoke_error, "actor": actor}),
            )
            .await;
        Ok(revoked)
    }

    /// A fresh connect link that reconnects `row` (same owner, so the same connection id).
    pub async fn reconnect_url(&self, row: &ConnectionRow) -> Option<String> {
        let return_to =
            row.return_to.clone().or_else(|| self.config.server.return_to_allow.first().map(ToString::to_string))?;
        self.connect_session(row.env, &row.connector, &row.owner, &return_to, BTreeMap::new()).await.ok()
    }

    /// Validates that `connector` holds per-user connections (for routes).
    pub fn require_user_connector(&self, connector: &str) -> Result<(), CallError> {
        self.user_auth_env(connector, Env::Live).or_else(|_| self.user_auth_env(connector, Env::Dev)).map(|_| ())
    }
}

impl Engine {
    /// The Latchkey user a provider identity signs in as: found by (connector, provider user
    /// id), or created on first sign-in.
    async fn sign_in_user(
        &self,
        connector: &str,
        env: Env,
        puid: &str,
        email: Option<String>,
    ) -> Result<String, CallError> {
        let unavailable = |e: crate::store::StoreError| CallError::new(ErrorCode::Unavailable, e.to_string());
        if let Some(u) = self.store.find_user_by_provider(env, connector, puid).await.map_err(unavailable)? {
            return Ok(u.id);
        }
        let now = now_ms();
        let row = crate::store::UserRow {
            env,
            id: format!("usr_{}", random::token(20)),
            email,
            attributes: "{}".into(),
            provider: Some(connector.to_owned()),
            provider_user_id: Some(puid.to_owned()),
            created_at: now,
            updated_at: now,
        };
        Ok(self.store.upsert_user(&row).await.map_err(unavailable)?.id)
    }

    /// `POST /v1/login/exchange`: a one-time sign-in code for the user, its tokens and the
    /// connection. A code works once, for 60 seconds, in its environment.
    pub async fn exchange_login_code(
        &self,
        env: Env,
        code: &str,
    ) -> Result<(crate::store::UserRow, super::identity::TokenPair, String), CallError> {
        let unavailable = |e: crate::store::StoreError| CallError::new(ErrorCode::Unavailable, e.to_string());
        let refused = || {
            let mut e = CallError::invalid_params("the sign-in code is unknown, used or expired: sign in again");
            e.details.insert("oauth_error".into(), serde_json::Value::String("invalid_grant".into()));
            e
        };
        // Taken only by a request that may use it: a code presented with another
        // environment's key, or too late, is refused and stays as it was.
        let row = self
            .store
            .take_login_code(&sha256(code.as_bytes()), env, now_ms())
            .await
            .map_err(unavailable)?
            .ok_or_else(refused)?;
        let user = self.store.get_user(env, &row.user_id).await.map_err(unavailable)?.ok_or_else(refused)?;
        let tokens = self.mint_tokens(env, &user.id).await?;
        Ok((user, tokens, row.connection_id))
    }
}
