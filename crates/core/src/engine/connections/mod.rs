//! Per-user connections (SPEC §8): the browser flow that makes them (`flow.rs`: connect
//! sessions, the state bound to a cookie, PKCE S256, RFC 9207 `iss`, the callback's code
//! exchange and profile; its pure checks in `rules.rs`), and their lifecycle here: the lookup
//! calls make, listings, deletion with revocation, and reconnect links.

mod flow;
mod rules;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use latchkey_vault::{Aad, Vault};
use serde_json::json;

use super::mirror::Mirror;
use super::tokens::{TokenManager, store_bounded};
use crate::auth::Credential;
use crate::auth::authorization_code::{Revocable, UserAuth};
use crate::clock::Clock;
use crate::event::{EventKind, EventOutcome};
use crate::store::{ConnectionFilter, ConnectionRow, Store, StoreError, TokenKey, TokenRow};
use crate::{CallError, Env, ErrorCode};

pub use flow::{CallbackOutcome, FlowError};

/// A connection with its token's health, for listings.
#[derive(Debug, Clone)]
pub struct ConnectionView {
    pub row: ConnectionRow,
    pub token: Option<TokenRow>,
}

pub(crate) fn flow_aad(hash: &[u8], kind: &'static str, env: Env) -> Aad {
    Aad::new("flow", latchkey_vault::to_hex(hash), kind, env.as_str())
}

fn unavailable(e: StoreError) -> CallError {
    CallError::new(ErrorCode::Unavailable, e.to_string())
}

type ConnectionKey = (String, Env, String);

/// The per-user connections calls looked up: (connector, env, owner) -> row. Filled by
/// [`Connections::user_connection`], emptied by the [`Mirror`] on every swap of the runtime.
#[derive(Default)]
pub(crate) struct ConnectionCache(Mutex<HashMap<ConnectionKey, Arc<ConnectionRow>>>);

impl ConnectionCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConnectionKey, Arc<ConnectionRow>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}

/// Per-user connections: owns the connect flow's rows (sessions, states, sign-in codes), the
/// connections and their cache, and uses the token lifecycle for their tokens.
pub struct Connections {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    mirror: Arc<Mirror>,
    tokens: Arc<TokenManager>,
    public_url: String,
    cache: Arc<ConnectionCache>,
    clock: Arc<dyn Clock>,
}

impl Connections {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        mirror: Arc<Mirror>,
        tokens: Arc<TokenManager>,
        public_url: String,
        cache: Arc<ConnectionCache>,
    ) -> Connections {
        let clock = mirror.clock().clone();
        Connections { store, vault, mirror, tokens, public_url, cache, clock }
    }

    /// The connector's per-user method in `env`, or why it has none.
    fn user_auth(&self, connector: &str, env: Env) -> Result<Arc<UserAuth>, CallError> {
        let conn = self
            .mirror
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

    /// Validates that `connector` holds per-user connections (for routes).
    pub fn require_user_connector(&self, connector: &str) -> Result<(), CallError> {
        self.user_auth(connector, Env::Live).or_else(|_| self.user_auth(connector, Env::Dev)).map(|_| ())
    }

    /// The connection of `owner` on `connector` in `env`, if any: from memory when it was
    /// looked up since the last reload, else from the store.
    pub(crate) async fn user_connection(
        &self,
        env: Env,
        connector: &str,
        owner: &str,
    ) -> Result<Option<ConnectionRow>, CallError> {
        let key = (connector.to_owned(), env, owner.to_owned());
        if let Some(row) = self.cache.lock().get(&key) {
            return Ok(Some(ConnectionRow::clone(row)));
        }
        let found = self.store.find_connection(connector, env, owner);
        let row = store_bounded(found, "the user's connection could not be looked up").await?;
        if let Some(r) = &row {
            self.cache.lock().insert(key, Arc::new(r.clone()));
        }
        Ok(row)
    }

    fn forget_user_connection(&self, row: &ConnectionRow) {
        let key = (row.connector.clone(), row.env, row.owner.clone());
        self.cache.lock().remove(&key);
    }

    /// The connections `filter` selects, each with its token's health.
    pub async fn views(&self, filter: &ConnectionFilter) -> Result<Vec<ConnectionView>, CallError> {
        let rows = self.store.list_connections(filter).await.map_err(unavailable)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let key = TokenKey { connector: row.connector.clone(), env: row.env, connection: row.id.clone() };
            let token = self.tokens.state_of(&key).await?;
            out.push(ConnectionView { row, token });
        }
        Ok(out)
    }

    pub async fn by_id(&self, id: &str) -> Result<Option<ConnectionRow>, CallError> {
        self.store.get_connection(id).await.map_err(unavailable)
    }

    /// Revokes the connection's tokens at the provider (when the connector has a
    /// `revoke_url`), then erases the connection and its tokens. Returns whether the
    /// provider confirmed the revocation.
    pub async fn delete(&self, row: &ConnectionRow, actor: &str) -> Result<bool, CallError> {
        let key = TokenKey { connector: row.connector.clone(), env: row.env, connection: row.id.clone() };
        let mut revoked = false;
        let mut revoke_error = None;
        if let Ok(auth) = self.user_auth(&row.connector, row.env)
            && let Some(set) = self.tokens.current(&key).await
        {
            let token = match &set.refresh_token {
                Some(r) => Revocable::Refresh(r),
                None => Revocable::Access(&set.access_token),
            };
            match auth.revoke(token, self.clock.now_ms()).await {
                Ok(done) => revoked = done,
                Err(e) => revoke_error = Some(e.message),
            }
        }
        self.store.delete_connection(&row.id).await.map_err(unavailable)?;
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

    /// Deletes every connection of `owner` in `env` (revoked at their providers), for the
    /// deletion of a user.
    pub(crate) async fn delete_all_of(&self, env: Env, owner: &str) -> Result<(), CallError> {
        let filter = ConnectionFilter { connector: None, env: Some(env), owner: Some(owner.to_owned()) };
        for c in self.store.list_connections(&filter).await.map_err(CallError::from)? {
            self.delete(&c, "user_deleted").await?;
        }
        Ok(())
    }

    /// A fresh connect link that reconnects `row` (same owner, so the same connection id);
    /// `None` when no `return_to` it was made with is still allowed.
    pub async fn reconnect_url(&self, row: &ConnectionRow) -> Option<String> {
        let allow = &self.mirror.config().server.return_to_allow;
        let return_to = rules::reconnect_return_to(row.return_to.as_deref(), allow)?;
        self.connect_session(row.env, &row.connector, &row.owner, &return_to, BTreeMap::new()).await.ok()
    }
}
