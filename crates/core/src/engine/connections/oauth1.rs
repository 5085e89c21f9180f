//! `oauth1_authorization`'s browser flow (RFC 5849 §2), through the same connect sessions,
//! `/start`, cookie-bound `state` and callback as the authorization-code flow: `/start`
//! obtains temporary credentials with `oauth_callback` = Latchkey's callback carrying the
//! `state` (OAuth 1.0a has no `state` of its own), seals their secret into the state row
//! (single use) and sends the browser to `authorize_url?oauth_token=`; the callback's
//! `oauth_token` must be the one obtained, and its `oauth_verifier` is exchanged for the token
//! credentials, which the connection holds (`access_token` and `token_secret`, no expiry).

use std::collections::HashMap;
use std::sync::Arc;

use latchkey_vault::{random, sha256};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::flow::Exchanged;
use super::rules::{self, flow_cookie_name, flow_error, with_query};
use super::{CallbackOutcome, Connections, FlowError, flow_aad};
use crate::auth::Credential;
use crate::auth::oauth1::{Flow, OAuth1Auth, Token};
use crate::config::AuthMethod;
use crate::engine::runtime::ConnectorRuntime;
use crate::event::{EventKind, EventOutcome};
use crate::secret::{AccessToken, TokenSecret};
use crate::store::{FlowRow, FlowTake, TokenKey};
use crate::token::TokenSet;
use crate::{CallError, Env};

/// Connect sessions and `state`s live this long (as the authorization-code flow's).
const FLOW_TTL_MS: i64 = 10 * 60 * 1000;

/// What the state row seals: the temporary credentials, spent with the state.
#[derive(Serialize, Deserialize)]
struct OAuth1State {
    token: String,
    secret: String,
}

/// The connector's OAuth 1.0a credential and flow in one environment.
fn parts(conn: &ConnectorRuntime, env: Env) -> Result<(&OAuth1Auth, &Flow), CallError> {
    match &conn.credential(env)?.credential {
        Credential::OAuth1(auth) => match &auth.flow {
            Some(flow) => Ok((auth, flow)),
            None => Err(CallError::internal("oauth1_authorization was prepared without its flow")),
        },
        _ => Err(CallError::internal("oauth1_authorization was prepared as another method")),
    }
}

impl Connections {
    /// `connector`, when its method is `oauth1_authorization`; `Err` when it is but cannot be
    /// used in `env` (a secret missing).
    pub(super) fn oauth1_user(&self, connector: &str, env: Env) -> Result<Option<Arc<ConnectorRuntime>>, CallError> {
        let Some(conn) = self.mirror.connector(connector) else { return Ok(None) };
        if conn.config.auth.kind() != AuthMethod::OAuth1Authorization {
            return Ok(None);
        }
        parts(&conn, env)?;
        Ok(Some(conn))
    }

    /// `/start` for an OAuth 1.0a connector: temporary credentials obtained with the callback
    /// that carries the new `state`; returns the provider's authorize URL, the cookie's name
    /// and its value, as [`Connections::start_flow`] does.
    pub(super) async fn begin_oauth1(
        &self,
        conn: &ConnectorRuntime,
        env: Env,
        owner: &str,
        return_to: &str,
    ) -> Result<(String, String, String), FlowError> {
        let rt = Some(return_to);
        let (auth, flow) = parts(conn, env).map_err(|e| flow_error("connector_unavailable", e.message, rt))?;
        let state = random::token(43);
        let binding = random::token(32);
        let callback =
            with_query(&rules::redirect_uri(&self.public_url, &conn.name, flow.config.redirect), &[("state", &state)]);
        let now = self.clock.now_ms();
        let temporary = auth
            .token_request(
                flow.config.request_token_url.value(),
                None,
                &[("oauth_callback", &callback)],
                now.div_euclid(1000),
                &flow.template.client,
                flow.template.timeout,
            )
            .await;
        let temporary = match temporary {
            Ok(t) if t.callback_confirmed => t,
            Ok(_) => {
                let message = "the provider did not confirm the callback (`oauth_callback_confirmed=true`, RFC 5849 §2.1): it does not speak OAuth 1.0a";
                return Err(self.oauth1_failed(conn, env, owner, message.into(), rt).await);
            }
            Err(e) => {
                let message = format!("the provider gave no temporary credentials: {}", e.message);
                return Err(self.oauth1_failed(conn, env, owner, message, rt).await);
            }
        };
        let login_url = with_query(flow.config.authorize_url.as_str(), &[("oauth_token", &temporary.token)]);
        let sealed = serde_json::to_vec(&OAuth1State {
            token: temporary.token,
            secret: temporary.secret.expose_secret().to_owned(),
        })
        .map_err(|e| flow_error("internal", e.to_string(), rt))?;
        let state_hash = sha256(state.as_bytes()).to_vec();
        let row = FlowRow {
            sealed: Some(self.vault.seal(&flow_aad(&state_hash, "state", env), &sealed)),
            handle_hash: state_hash,
            kind: "state".into(),
            connector: conn.name.clone(),
            env,
            owner: owner.to_owned(),
            return_to: return_to.to_owned(),
            binding: Some(sha256(binding.as_bytes()).to_vec()),
            created_at: now,
            expires_at: now + FLOW_TTL_MS,
            used_at: None,
        };
        self.store.insert_flow(&row).await.map_err(|e| flow_error("unavailable", e.to_string(), rt))?;
        Ok((login_url, flow_cookie_name(&state), binding))
    }

    /// The callback of an OAuth 1.0a flow whose `state` row was found and checked (fresh,
    /// this connector, this browser): its `oauth_token` is the one obtained, the state is
    /// spent, the verifier exchanged, the connection stored.
    pub(super) async fn finish_oauth1(
        &self,
        conn: &ConnectorRuntime,
        row: FlowRow,
        state: &str,
        query: &HashMap<String, String>,
    ) -> Result<CallbackOutcome, FlowError> {
        let rt = Some(row.return_to.as_str());
        let (auth, flow) = parts(conn, row.env).map_err(|e| flow_error("connector_unavailable", e.message, rt))?;
        if query.contains_key("denied") || query.contains_key("error") {
            return Err(FlowError {
                code: "provider_error",
                message: "the provider said `access_denied`".into(),
                redirect: Some(with_query(&row.return_to, &[("status", "error"), ("error", "access_denied")])),
            });
        }
        let verifier = query
            .get("oauth_verifier")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| flow_error("code_missing", "the callback has no `oauth_verifier`", rt))?;
        let hash = sha256(state.as_bytes());
        let data: OAuth1State = row
            .sealed
            .as_ref()
            .and_then(|s| self.vault.open(&flow_aad(&hash, "state", row.env), s).ok())
            .and_then(|p| serde_json::from_slice(p.expose_secret()).ok())
            .ok_or_else(|| flow_error("state_invalid", "the flow's state is damaged", rt))?;
        if query.get("oauth_token") != Some(&data.token) {
            return Err(flow_error(
                "state_invalid",
                "the callback's `oauth_token` is not the one this flow obtained: start the connection again from the app",
                rt,
            ));
        }
        let now = self.clock.now_ms();
        match self.store.take_flow(&hash, now).await.map_err(|e| flow_error("unavailable", e.to_string(), rt))? {
            FlowTake::Fresh(_) => {}
            FlowTake::Used(r) => return Err(rules::state_used(&r)),
            FlowTake::Unknown => return Err(rules::state_unknown(rt)),
        }
        let token = Token { token: &data.token, secret: &data.secret };
        let credentials = auth
            .token_request(
                flow.config.access_token_url.value(),
                Some(token),
                &[("oauth_verifier", verifier)],
                now.div_euclid(1000),
                &flow.template.client,
                flow.template.timeout,
            )
            .await;
        let credentials = match credentials {
            Ok(c) => c,
            Err(e) => {
                let message = format!("the provider refused the verifier: {}", e.message);
                return Err(self.oauth1_failed(conn, row.env, &row.owner, message, rt).await);
            }
        };
        let set = TokenSet {
            access_token: AccessToken::from(credentials.token),
            refresh_token: None,
            token_secret: Some(TokenSecret::from(credentials.secret)),
            token_type: None,
            expires_at: None,
            scope: None,
            extra: serde_json::Map::new(),
            obtained_at: now,
            grant: None,
        };
        let exchanged = Exchanged { set, provider_user_id: None, email: None };
        let (_, connection) = self.record(&flow.template, &row, exchanged, false, now).await?;
        let redirect = with_query(&row.return_to, &[("connection", &connection.id), ("status", "connected")]);
        Ok(CallbackOutcome { redirect, cookie_name: flow_cookie_name(state) })
    }

    /// A failed token request of the flow: recorded with its reason, `token_exchange_failed`
    /// for the browser.
    async fn oauth1_failed(
        &self,
        conn: &ConnectorRuntime,
        env: Env,
        owner: &str,
        message: String,
        rt: Option<&str>,
    ) -> FlowError {
        let key = TokenKey { connector: conn.name.clone(), env, connection: String::new() };
        let detail = json!({"error": message, "user": owner});
        self.tokens.event(&key, EventKind::ConnectionExchangeFailed, EventOutcome::Error, detail).await;
        flow_error("token_exchange_failed", message, rt)
    }
}
