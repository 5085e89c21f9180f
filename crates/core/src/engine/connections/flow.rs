//! The browser flow: a connect session made for an owner (or a sign-in without one), the
//! `/start` that turns it into a `state` bound to the browser, and the callback that spends
//! the state, exchanges the code, reads the profile and stores the connection and its tokens.
//! Single-use rows are read and checked first ([`super::rules`]) and taken only then.

use std::collections::{BTreeMap, HashMap};

use latchkey_vault::{random, sha256};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::rules::{self, flow_cookie_name, flow_error, with_query};
use super::{Connections, flow_aad, unavailable};
use crate::auth::TokenSource;
use crate::auth::authorization_code::UserAuth;
use crate::event::{EventKind, EventOutcome};
use crate::secret::PkceVerifier;
use crate::store::{ConnectionRow, FlowRow, FlowTake, LoginCodeRow, TokenKey, UserRow};
use crate::token::{TokenSet, TokenState, request_token};
use crate::{CallError, Env, ErrorCode};

/// Connect sessions and `state`s live this long (SPEC §8: 10 minutes).
const FLOW_TTL_MS: i64 = 10 * 60 * 1000;
/// Sign-in codes live this long.
const LOGIN_CODE_TTL_MS: i64 = 60_000;

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

/// What the provider answered a callback's code with: its tokens and who the user is there.
pub(super) struct Exchanged {
    pub(super) set: TokenSet,
    pub(super) provider_user_id: Option<String>,
    pub(super) email: Option<String>,
}

impl Connections {
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
        // OAuth 1.0a's authorize URL takes no `[name]` parameters.
        let auth = match self.oauth1_user(connector, env)? {
            Some(_) => None,
            None => Some(self.user_auth(connector, env)?),
        };
        if owner.is_empty() || owner.len() > 200 {
            return Err(CallError::invalid_params("`user` must name the app's user (1 to 200 characters)"));
        }
        if !self.return_to_allowed(return_to) {
            return Err(CallError::invalid_params(format!(
                "return_to `{return_to}` is not allowed: add its origin and path to `[server] return_to_allow`"
            )));
        }
        match &auth {
            Some(auth) => {
                auth.login_base(&params)?;
            }
            None if !params.is_empty() => {
                return Err(CallError::invalid_params(format!(
                    "connector `{connector}` uses oauth1_authorization, whose authorize URL takes no parameters: drop `params`"
                )));
            }
            None => {}
        }
        let handle = random::token(43);
        let hash = sha256(handle.as_bytes()).to_vec();
        let now = self.clock.now_ms();
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
        self.store.insert_flow(&row).await.map_err(unavailable)?;
        Ok(rules::start_link(&self.public_url, connector, &handle))
    }

    pub(super) fn return_to_allowed(&self, return_to: &str) -> bool {
        rules::return_to_allowed(self.mirror.config().server.return_to_allow.iter().map(|e| e.value()), return_to)
    }

    /// `GET /oauth/{connector}/start?session=`: consumes the session, makes a `state` bound to
    /// this browser (a cookie) and a PKCE verifier, and returns the provider's login URL and
    /// the cookie to set.
    pub async fn start_flow(&self, connector: &str, session: &str) -> Result<(String, String, String), FlowError> {
        let now = self.clock.now_ms();
        let hash = sha256(session.as_bytes());
        let unavailable = |e: crate::store::StoreError| flow_error("unavailable", e.to_string(), None);
        // Checked before it is taken: a link opened at another connector's `/start`, or too
        // late, is refused without spending it.
        let found = self.store.get_flow(&hash).await.map_err(unavailable)?;
        let row = rules::check_session(found, connector, now)?;
        match self.store.take_flow(&hash, now).await.map_err(unavailable)? {
            FlowTake::Fresh(_) => {}
            FlowTake::Used(r) => return Err(rules::session_used(&r)),
            FlowTake::Unknown => {
                return Err(flow_error(
                    "session_invalid",
                    "this connect link is not valid: ask the app for a new one",
                    None,
                ));
            }
        }
        let data: SessionData = row
            .sealed
            .as_ref()
            .and_then(|s| self.vault.open(&flow_aad(&hash, "session", row.env), s).ok())
            .and_then(|p| serde_json::from_slice(p.expose_secret()).ok())
            .ok_or_else(|| flow_error("session_invalid", "the connect session is damaged", Some(&row.return_to)))?;
        if let Ok(Some(conn)) = self.oauth1_user(connector, row.env) {
            return self.begin_oauth1(&conn, row.env, &row.owner, &row.return_to).await;
        }
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
        if matches!(self.oauth1_user(connector, env), Ok(Some(_))) {
            return Err(flow_error(
                "login_disabled",
                format!("connector `{connector}` uses oauth1_authorization, which does not sign users in"),
                None,
            ));
        }
        let auth = self.user_auth(connector, env).map_err(|e| flow_error("connector_unavailable", e.message, None))?;
        if !auth.config.login {
            return Err(flow_error(
                "login_disabled",
                format!("connector `{connector}` does not sign users in (login = false)"),
                None,
            ));
        }
        // Latchkey's own return from a sign-in for an MCP client needs no entry.
        let own = format!("{}{}", self.public_url, crate::engine::mcp_auth::SIGNED_IN_PATH);
        if return_to != own && !self.return_to_allowed(return_to) {
            return Err(flow_error("return_to_not_allowed", "return_to is not in `[server] return_to_allow`", None));
        }
        self.begin_state(connector, env, "", return_to, BTreeMap::new(), true).await
    }

    pub(super) async fn begin_state(
        &self,
        connector: &str,
        env: Env,
        owner: &str,
        return_to: &str,
        params: BTreeMap<String, String>,
        login: bool,
    ) -> Result<(String, String, String), FlowError> {
        let now = self.clock.now_ms();
        let rt = Some(return_to);
        let auth = self.user_auth(connector, env).map_err(|e| flow_error("connector_unavailable", e.message, rt))?;
        let state = random::token(43);
        let verifier = auth.config.pkce.then(PkceVerifier::generate);
        let challenge = verifier.as_ref().map(PkceVerifier::challenge);
        let verifier = verifier.map(|v| v.expose_secret().to_owned()); // sealed into the state
        let binding = random::token(32);
        let redirect_uri = rules::redirect_uri(&self.public_url, connector, auth.config.redirect);
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
        let now = self.clock.now_ms();
        let state =
            query.get("state").ok_or_else(|| flow_error("state_missing", "the callback has no `state`", None))?;
        let hash = sha256(state.as_bytes());
        let unavailable = |e: crate::store::StoreError| flow_error("unavailable", e.to_string(), None);
        // The state is read, the callback checked against it (fresh, this connector, this
        // browser, this issuer), and only then taken: a callback that is refused (one without
        // the browser's cookie) does not spend the state of the browser that holds it.
        let found = self.store.get_flow(&hash).await.map_err(unavailable)?;
        let row = rules::check_state(found, state, path_connector, cookies, now)?;
        if let Ok(Some(conn)) = self.oauth1_user(&row.connector, row.env) {
            return self.finish_oauth1(&conn, row, state, query).await;
        }
        let rt = Some(row.return_to.as_str());
        let auth =
            self.user_auth(&row.connector, row.env).map_err(|e| flow_error("connector_unavailable", e.message, rt))?;
        let code = rules::check_answer(query, auth.config.issuer.as_deref(), &row.return_to)?;
        // Spent exactly when its code is exchanged; a concurrent twin finds it used.
        match self.store.take_flow(&hash, now).await.map_err(unavailable)? {
            FlowTake::Fresh(_) => {}
            FlowTake::Used(r) => return Err(rules::state_used(&r)),
            FlowTake::Unknown => return Err(rules::state_unknown(rt)),
        }
        let data: StateData = row
            .sealed
            .as_ref()
            .and_then(|s| self.vault.open(&flow_aad(&hash, "state", row.env), s).ok())
            .and_then(|p| serde_json::from_slice(p.expose_secret()).ok())
            .ok_or_else(|| flow_error("state_invalid", "the flow's state is damaged", rt))?;
        let exchanged = self.exchange(&auth, &row, code, &data).await?;
        let (owner, connection) = self.record(&auth.template, &row, exchanged, data.login, now).await?;
        let cookie_name = flow_cookie_name(state);
        if data.login {
            let code = format!("lkc_{}", random::token(43));
            let issued = self.clock.now_ms();
            let row_code = LoginCodeRow {
                hash: sha256(code.as_bytes()).to_vec(),
                env: row.env,
                user_id: owner,
                connection_id: connection.id.clone(),
                created_at: issued,
                expires_at: issued + LOGIN_CODE_TTL_MS,
            };
            self.store.insert_login_code(&row_code).await.map_err(|e| flow_error("unavailable", e.to_string(), rt))?;
            let redirect = with_query(&row.return_to, &[("code", &code), ("status", "signed_in")]);
            return Ok(CallbackOutcome { redirect, cookie_name });
        }
        let redirect = with_query(&row.return_to, &[("connection", &connection.id), ("status", "connected")]);
        Ok(CallbackOutcome { redirect, cookie_name })
    }

    /// The code exchanged with the PKCE verifier, and the profile read with the new token; a
    /// refusal of either is recorded with the reason (the browser only sees the code).
    async fn exchange(
        &self,
        auth: &UserAuth,
        row: &FlowRow,
        code: &str,
        data: &StateData,
    ) -> Result<Exchanged, FlowError> {
        let rt = Some(row.return_to.as_str());
        let key = TokenKey { connector: row.connector.clone(), env: row.env, connection: String::new() };
        let verifier = data.verifier.clone().map(PkceVerifier::from);
        let now = self.clock.now_ms();
        let request = auth
            .code_request(&SecretString::from(code.to_owned()), &data.redirect_uri, verifier, now)
            .map_err(|e| flow_error("token_exchange_failed", e.message, rt))?;
        let set = match request_token(&auth.template.client, &request, auth.template.timeout, now).await {
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
        match auth.profile(&set.access_token).await {
            Ok((provider_user_id, email)) => Ok(Exchanged { set, provider_user_id, email }),
            Err(e) => {
                let detail = json!({"error": e.message, "user": row.owner});
                self.tokens.event(&key, EventKind::ConnectionProfileFailed, EventOutcome::Error, detail).await;
                Err(flow_error("profile_failed", e.message, rt))
            }
        }
    }

    /// The connection stored (the same id when its owner reconnects) with its tokens
    /// installed durably, and the event that says what happened; the owner of a sign-in is
    /// the user its profile finds or creates. Returns the owner and the connection.
    pub(super) async fn record(
        &self,
        template: &TokenSource,
        row: &FlowRow,
        exchanged: Exchanged,
        login: bool,
        now: i64,
    ) -> Result<(String, ConnectionRow), FlowError> {
        let rt = Some(row.return_to.as_str());
        let Exchanged { set, provider_user_id, email } = exchanged;
        let owner = if login {
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
        let mut src = template.clone();
        src.key.connection = upserted.id.clone();
        let previous = self.tokens.install(&src, set).await.map_err(|e| flow_error("unavailable", e.message, rt))?;
        let kind = match (&existing, previous) {
            (None, _) => EventKind::ConnectionCreated,
            (Some(_), TokenState::ReauthorizationRequired | TokenState::Degraded) => EventKind::ConnectionRecovered,
            (Some(_), _) => EventKind::ConnectionReconnected,
        };
        self.tokens.event(&src.key, kind, EventOutcome::Ok, json!({"user": owner})).await;
        Ok((owner, upserted))
    }

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
        let now = self.clock.now_ms();
        let row = UserRow {
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
}
