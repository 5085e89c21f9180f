//! Connections whose credential is the user's own values (`per_user = true`): stored as a
//! connection whose token row holds the values sealed (bound to the connection and its user),
//! and prepared into a signer once per user, kept with the cached connection until the values
//! change or the connection goes (here or on another instance: both bump the generation).

use std::sync::Arc;

use serde_json::json;

use super::{CachedConnection, ConnectionView, Connections, unavailable};
use crate::auth::Credential;
use crate::auth::per_user::{PerUserAuth, UserSigner, UserValues};
use crate::event::{EventKind, EventOutcome};
use crate::store::{ConnectionRow, TokenKey};
use crate::{CallError, Env, ErrorCode};

/// How many times a store of values goes round when the connection was made meanwhile.
const PUT_ATTEMPTS: usize = 3;

impl Connections {
    /// The connector's per-user values method in `env`, or why it has none.
    pub(crate) fn per_user_auth(&self, connector: &str, env: Env) -> Result<Arc<PerUserAuth>, CallError> {
        let conn = self
            .mirror
            .connector(connector)
            .ok_or_else(|| CallError::not_found(format!("no connector named `{connector}`")))?;
        match (&conn.config.auth, conn.config.per_user) {
            (_, true) => match &conn.credential(env)?.credential {
                Credential::PerUser(a) => Ok(a.clone()),
                _ => Err(CallError::internal(format!("connector `{connector}` is per_user but not prepared so"))),
            },
            (crate::config::AuthConfig::OAuth2AuthorizationCode(_), false) => Err(CallError::invalid_params(format!(
                "connector `{connector}` holds OAuth connections: its users connect in the browser (POST /v1/connect/{connector}), not with values"
            ))),
            (auth, false) => Err(CallError::invalid_params(format!(
                "connector `{connector}` uses app-level credentials ({}): set `per_user = true` on it for each user to give their own",
                auth.method()
            ))),
        }
    }

    /// What `owner`'s connection on `connector` holds, prepared to sign: from memory when it
    /// was prepared since the last change, else read, opened and prepared (and kept).
    pub(crate) async fn user_signer(
        &self,
        env: Env,
        connector: &str,
        owner: &str,
        auth: &PerUserAuth,
    ) -> Result<Arc<UserSigner>, CallError> {
        let key = (connector.to_owned(), env, owner.to_owned());
        if let Some(signer) = self.cache.get(&key).and_then(|c| c.signer.clone()) {
            return Ok(signer);
        }
        let epoch = self.cache.epoch();
        let none = || {
            CallError::not_found(format!(
                "user `{owner}` has no connection on connector `{connector}` ({env}): connect one with PUT /v1/connections/{connector} (the user's {})",
                auth.fields().iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(" and ")
            ))
        };
        let found = self.store.find_connection(connector, env, owner);
        let row = crate::engine::tokens::store_bounded(found, "the user's connection could not be looked up")
            .await?
            .ok_or_else(none)?;
        let token_key = TokenKey { connector: connector.to_owned(), env, connection: row.id.clone() };
        let stored = crate::engine::tokens::store_bounded(
            self.store.get_token(&token_key),
            "the user's connection could not be looked up",
        )
        .await?;
        let sealed = stored.and_then(|t| t.sealed).ok_or_else(none)?;
        let values = UserValues::open(&self.vault, &token_key, owner, &sealed).map_err(|e| {
            CallError::new(
                ErrorCode::SecretMissing,
                format!(
                    "the values of user `{owner}` on connector `{connector}` ({env}) cannot be opened: set them again with PUT /v1/connections/{connector}"
                ),
            )
            .caused_by(e)
        })?;
        let signer = Arc::new(auth.prepare(&values)?);
        let entry = CachedConnection { row, signer: Some(signer.clone()) };
        self.cache.insert_since(epoch, key, Arc::new(entry));
        Ok(signer)
    }

    /// Stores `owner`'s checked `values` as their connection on `connector` (made, or its values
    /// replaced), records `connection.created` or `connection.reconnected`, and answers the
    /// connection as listings show it, and whether it was made now.
    pub(crate) async fn store_values(
        &self,
        env: Env,
        connector: &str,
        owner: &str,
        values: &UserValues,
    ) -> Result<(ConnectionView, bool), CallError> {
        for _ in 0..PUT_ATTEMPTS {
            let existing = self.store.find_connection(connector, env, owner).await.map_err(unavailable)?;
            let now = self.clock.now_ms();
            let id = existing
                .as_ref()
                .map_or_else(|| format!("conn_{}", latchkey_vault::random::token(20)), |c| c.id.clone());
            let key = TokenKey { connector: connector.to_owned(), env, connection: id.clone() };
            let sealed = values.seal(&self.vault, &key, owner);
            let row = ConnectionRow {
                id,
                connector: connector.to_owned(),
                env,
                owner: owner.to_owned(),
                provider_user_id: None,
                email: None,
                scopes: None,
                metadata: "{}".into(),
                return_to: None,
                created_at: now,
                updated_at: now,
            };
            let Some(stored) = self.store.put_connection_values(&row, &sealed, now).await.map_err(unavailable)? else {
                continue; // made meanwhile under another id: seal for that one
            };
            self.forget_user_connection(&stored);
            let created = existing.is_none();
            let kind = if created { EventKind::ConnectionCreated } else { EventKind::ConnectionReconnected };
            self.tokens.event(&key, kind, EventOutcome::Ok, json!({"user": owner, "per_user": true})).await;
            let token = self.tokens.state_of(&key).await?;
            return Ok((ConnectionView { row: stored, token }, created));
        }
        Err(CallError::new(
            ErrorCode::Unavailable,
            format!(
                "the connection of user `{owner}` on connector `{connector}` kept changing while it was stored: try again"
            ),
        ))
    }
}
