//! Writes shared by the admin API and the CLI: secrets, keys and connectors, and what admins
//! read besides (the audit events, the health of app-level tokens). Each write goes to the
//! store and then brings memory up to date ([`Mirror::own_write`], [`Mirror::catch_up`]), so
//! the next call sees it.

use std::collections::BTreeSet;
use std::sync::Arc;

use latchkey_vault::Vault;
use secrecy::SecretString;

use super::mirror::Mirror;
use crate::callers::{self, NewKey};
use crate::clock::Clock;
use crate::config::{Config, ConfigErrors, ConnectorConfig, Problem};
use crate::secrets::{check_secret_name, seal_secret};
use crate::store::{ConnectorRow, EventFilter, EventRow, KeyKind, KeyRow, SecretRow, Store, StoreError, TokenRow};
use crate::{CallError, Env, ErrorCode};

/// A secret's names and timestamps, never its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    pub name: String,
    pub environments: Vec<Env>,
    pub updated_at: i64,
}

fn unavailable(e: StoreError) -> CallError {
    CallError::from(e)
}

/// A write the store did not confirm: it may have been made all the same (an answer lost after
/// the commit), so the caller is told to look (`look`: where) before repeating it.
fn write_failed(e: StoreError, look: &str) -> CallError {
    let mut error = CallError::from(e);
    error.message = format!("{}; the change may or may not have been made: {look} before repeating it", error.message);
    error
}

/// A write the store confirmed, which this instance could not read back into memory: it takes
/// effect here when the store answers again (the 1 s sync, or a change notice, catches up).
fn applied_later(e: StoreError) -> CallError {
    let mut error = CallError::from(e);
    error.message = format!(
        "the change was made, but this instance could not read it back ({}); it takes effect here once the store \
         answers again (other instances see it as usual)",
        error.message
    );
    error
}

/// The administration of what the runtime is compiled from: owns secrets, app and admin
/// keys and API connectors in the store.
pub struct Admin {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    mirror: Arc<Mirror>,
    clock: Arc<dyn Clock>,
}

impl Admin {
    pub(crate) fn new(store: Arc<dyn Store>, vault: Arc<Vault>, mirror: Arc<Mirror>) -> Admin {
        let clock = mirror.clock().clone();
        Admin { store, vault, mirror, clock }
    }

    pub async fn put_secret(&self, name: &str, env: Env, value: &SecretString) -> Result<SecretInfo, CallError> {
        check_secret_name(name)?;
        if secrecy::ExposeSecret::expose_secret(value).is_empty() {
            return Err(CallError::invalid_params(format!("the value of secret `{name}` is empty")));
        }
        let row = SecretRow {
            name: name.to_owned(),
            env,
            sealed: seal_secret(&self.vault, name, env, value),
            updated_at: self.clock.now_ms(),
        };
        self.store.put_secret(&row).await.map_err(|e| write_failed(e, "list the secrets (GET /v1/admin/secrets)"))?;
        self.mirror.own_secret_write(|s| s.set(name, env, value.clone())).await.map_err(applied_later)?;
        let environments = self.mirror.runtime().secrets.environments(name);
        Ok(SecretInfo { name: name.to_owned(), environments, updated_at: row.updated_at })
    }

    pub async fn delete_secret(&self, name: &str) -> Result<bool, CallError> {
        let deleted = self
            .store
            .delete_secret(name)
            .await
            .map_err(|e| write_failed(e, "list the secrets (GET /v1/admin/secrets)"))?;
        if deleted {
            self.mirror.own_secret_write(|s| s.remove(name)).await.map_err(applied_later)?;
        }
        Ok(deleted)
    }

    pub async fn list_secrets(&self) -> Result<Vec<SecretInfo>, CallError> {
        let rows = self.store.list_secrets().await.map_err(unavailable)?;
        Ok(secret_infos(rows))
    }

    /// Creates a key; the returned key text is shown once and never stored.
    pub async fn create_key(&self, kind: KeyKind, name: &str) -> Result<NewKey, CallError> {
        if name.len() > 200 {
            return Err(CallError::invalid_params("a key name is at most 200 characters"));
        }
        let new = callers::generate(kind, name, self.clock.now_ms());
        self.store
            .insert_key(&new.row)
            .await
            .map_err(|e| write_failed(e, "list the keys (GET /v1/admin/keys; a key made is named as asked)"))?;
        // The key is in the store and in memory: it works here and (by a lookup) everywhere,
        // so a failed catch-up must not lose the only copy of its text.
        self.mirror.callers().remember(new.row.clone());
        if let Err(e) = self.mirror.own_write(|_| None).await {
            tracing::warn!(error = %e, "a new key was stored but this instance could not catch up with the store; it will on its next sync");
        }
        Ok(new)
    }

    pub async fn list_keys(&self) -> Result<Vec<KeyRow>, CallError> {
        self.store.list_keys().await.map_err(unavailable)
    }

    pub async fn delete_key(&self, id: &str) -> Result<bool, CallError> {
        let deleted =
            self.store.delete_key(id).await.map_err(|e| write_failed(e, "list the keys (GET /v1/admin/keys)"))?;
        if deleted {
            // Forgotten here at once; a failed catch-up changes nothing for this key.
            self.mirror.callers().forget(id);
            if let Err(e) = self.mirror.own_write(|_| None).await {
                tracing::warn!(error = %e, "a key was deleted but this instance could not catch up with the store; it will on its next sync");
            }
        }
        Ok(deleted)
    }

    /// Creates or replaces a connector from JSON of the configuration's shape.
    pub async fn put_connector(
        &self,
        name: &str,
        json: serde_json::Value,
    ) -> Result<ConnectorConfig, PutConnectorError> {
        let config = self.check_connector(name, json).await?;
        self.write_connector(name, &config).await?;
        Ok(config)
    }

    /// Creates a connector as [`Admin::put_connector`] does, refusing (`invalid_params`) when
    /// one of that name exists already, in the file, in memory or in the store (the console's
    /// "New connector" never replaces one). The store's insert-if-absent decides: of two
    /// creations of one name at the same instant, on any instances, exactly one succeeds.
    pub async fn create_connector(
        &self,
        name: &str,
        json: serde_json::Value,
    ) -> Result<ConnectorConfig, PutConnectorError> {
        let config = self.check_connector(name, json).await?;
        if self.mirror.connector(name).is_some() {
            return Err(PutConnectorError::Call(exists(name)));
        }
        let row = self.connector_row(name, &config)?;
        let inserted = self.store.insert_connector(&row).await.map_err(|e| {
            PutConnectorError::Call(write_failed(e, "look at the connectors (GET /v1/admin/connectors)"))
        })?;
        if !inserted {
            return Err(PutConnectorError::Call(exists(name)));
        }
        self.mirror.catch_up().await.map_err(|e| PutConnectorError::Call(applied_later(e)))?;
        Ok(config)
    }

    /// Every check [`Admin::put_connector`] makes (the configuration's validation with its
    /// provider template, vault-only secrets, the egress rules), without writing anything.
    pub async fn check_connector(
        &self,
        name: &str,
        json: serde_json::Value,
    ) -> Result<ConnectorConfig, PutConnectorError> {
        if self.mirror.config().connectors.contains_key(name) {
            return Err(PutConnectorError::Call(CallError::new(
                ErrorCode::Forbidden,
                format!("connector `{name}` is defined in the configuration file; change it there"),
            )));
        }
        let config = Config::connector_from_json(name, json, "request body").map_err(PutConnectorError::Invalid)?;
        // The process environment belongs to whoever wrote the file, not to API callers: an
        // API connector reading `{ env = "VAR" }` could send any variable to its upstream.
        let env_refs: Vec<Problem> = config
            .auth
            .secret_refs()
            .into_iter()
            .filter(|(_, r)| matches!(r, crate::config::SecretRef::Env(_)))
            .map(|(field, _)| {
                Problem::at("request body", Some(name), format!("auth.{field}"), "connectors created through the API take secrets from the vault only: write `{\"secret\": \"NAME\"}` (`{\"env\": ...}` is for the configuration file)")
            })
            .collect();
        if !env_refs.is_empty() {
            return Err(PutConnectorError::Invalid(ConfigErrors(env_refs)));
        }
        // SECURITY S16, said when the connector is written rather than on every call.
        if !self.mirror.config().server.api_connectors_private_egress {
            let value = serde_json::to_value(&config)
                .map_err(|e| PutConnectorError::Call(CallError::internal(e.to_string())))?;
            crate::upstream::egress::check_definition(&value).await.map_err(PutConnectorError::Call)?;
        }
        Ok(config)
    }

    /// The stored form of a checked connector.
    fn connector_row(&self, name: &str, config: &ConnectorConfig) -> Result<ConnectorRow, PutConnectorError> {
        let definition =
            serde_json::to_string(config).map_err(|e| PutConnectorError::Call(CallError::internal(e.to_string())))?;
        Ok(ConnectorRow { name: name.to_owned(), definition, updated_at: self.clock.now_ms() })
    }

    /// Stores a checked connector (creating or replacing it) and brings memory up to date.
    async fn write_connector(&self, name: &str, config: &ConnectorConfig) -> Result<(), PutConnectorError> {
        let row = self.connector_row(name, config)?;
        self.store.put_connector(&row).await.map_err(|e| {
            PutConnectorError::Call(write_failed(e, "look at the connector (GET /v1/admin/connectors)"))
        })?;
        self.mirror.catch_up().await.map_err(|e| PutConnectorError::Call(applied_later(e)))?;
        Ok(())
    }

    pub async fn delete_connector(&self, name: &str) -> Result<bool, CallError> {
        if self.mirror.config().connectors.contains_key(name) {
            return Err(CallError::new(
                ErrorCode::Forbidden,
                format!("connector `{name}` is defined in the configuration file; remove it there"),
            ));
        }
        let deleted = self
            .store
            .delete_connector(name)
            .await
            .map_err(|e| write_failed(e, "list the connectors (GET /v1/admin/connectors)"))?;
        self.mirror.catch_up().await.map_err(applied_later)?;
        Ok(deleted)
    }

    /// Which secrets the connectors name but the vault lacks, per environment (for `check`).
    pub fn missing_secrets(&self) -> Vec<Problem> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for conn in self.mirror.connectors() {
            for env in Env::ALL {
                // Dev falls back to live: when live is missing, one report says it all.
                if env == Env::Dev && conn.credential_status(Env::Live).is_err() {
                    continue;
                }
                if let Err(e) = conn.credential_status(env)
                    && seen.insert((conn.name.clone(), e.message.clone()))
                {
                    out.push(Problem::at("store", Some(&conn.name), "auth", format!("{env}: {}", e.message)));
                }
            }
        }
        out
    }

    /// `GET /v1/admin/events`: the audit events `filter` selects, newest first.
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<EventRow>, CallError> {
        self.store.list_events(filter).await.map_err(|e| CallError::new(ErrorCode::Unavailable, e.to_string()))
    }

    /// `GET /v1/admin/tokens`: every stored token's row (its health; the server never shows
    /// the sealed token).
    pub async fn token_states(&self) -> Result<Vec<TokenRow>, CallError> {
        self.store.list_tokens().await.map_err(|e| CallError::new(ErrorCode::Unavailable, e.to_string()))
    }
}

/// A connector of that name exists (only [`Admin::create_connector`] says so).
fn exists(name: &str) -> CallError {
    CallError::invalid_params(format!(
        "a connector named `{name}` exists already: choose another name (a new connector never replaces one)"
    ))
}

#[derive(Debug)]
pub enum PutConnectorError {
    Invalid(ConfigErrors),
    Call(CallError),
}

/// One entry per secret name (rows come sorted by name): its environments, sorted, and its
/// last change in any of them.
fn secret_infos(rows: Vec<SecretRow>) -> Vec<SecretInfo> {
    let mut out: Vec<SecretInfo> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some(last) if last.name == row.name => {
                last.environments.push(row.env);
                last.updated_at = last.updated_at.max(row.updated_at);
            }
            _ => out.push(SecretInfo { name: row.name, environments: vec![row.env], updated_at: row.updated_at }),
        }
    }
    for s in &mut out {
        s.environments.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_listed_once_per_name_with_their_environments() {
        let row = |name: &str, env, updated_at| SecretRow { name: name.into(), env, sealed: vec![], updated_at };
        let infos = secret_infos(vec![row("a", Env::Dev, 5), row("a", Env::Live, 3), row("b", Env::Live, 7)]);
        assert_eq!(
            infos,
            [
                SecretInfo { name: "a".into(), environments: vec![Env::Live, Env::Dev], updated_at: 5 },
                SecretInfo { name: "b".into(), environments: vec![Env::Live], updated_at: 7 },
            ]
        );
        assert!(secret_infos(vec![]).is_empty());
    }
}
