//! The engine: the in-memory runtime (connectors compiled, secrets decrypted, credentials
//! prepared, clients pooled) and the call pipeline over it.
//!
//! The pipeline runs in phases, each small and testable: resolve connector and call ->
//! resolve parameters -> take the prepared credential -> build the request -> sign it ->
//! check the origin -> send. Nothing on this path touches the store or the vault.
//!
//! The runtime is rebuilt as a whole and swapped in atomically when anything changes: after
//! this process writes, and when the store's generation counter shows that another writer did.
//! Rebuilding reads the whole store only at start; afterwards it reads the secrets and app keys
//! that changed (each row carries the generation of its last write) and compiles connectors
//! again from the secrets in memory.
//!
//! [`Engine`] is a façade over services, each owning its part of the store and of memory:
//! `Mirror` (`mirror.rs`: the runtime, the app keys, the generation; reload, catch-up, sync),
//! [`Admin`] (secrets, keys, API connectors), [`Connections`] (the connect flow and per-user
//! connections), [`Identity`] (users, their tokens, signing keys) and the token lifecycle
//! ([`tokens::TokenManager`]). The server reaches them only through the façade: its services'
//! methods, and its own for what spans them (`authenticate`, `ping`, `stats`).

mod admin;
pub mod audit;
mod background;
mod connections;
pub mod console;
pub mod exchange;
pub mod idempotency;
pub mod identity;
mod keycheck;
pub mod mcp_auth;
pub mod mcp_session;
mod mirror;
mod pipeline;
mod reload;
pub mod rotate;
mod runtime;
pub mod sweep;
#[cfg(test)]
mod tests;
pub mod tokens;
mod webhooks;

pub use connections::{
    CallbackOutcome, ConnectionView, Connections, FlowError, PAGE_TTL_MS, PageConnector, PageMethod, PageSession,
    PageState,
};
pub use webhooks::signature as webhook_signature;

pub use admin::{Admin, PutConnectorError, SecretInfo};
pub use audit::AuditKeyError;
pub use identity::Identity;
pub use keycheck::{KeyCheck, KeyCheckError, check_master_key};
/// The audit log's prepared HMAC key.
pub use latchkey_vault::HmacKey as AuditKey;
pub use pipeline::{OutBody, ProxyRequest, UpstreamResponse};
pub use reload::{ReloadReport, ServerField, server_fields};
pub use runtime::ConnectorRuntime;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use latchkey_vault::Vault;
use secrecy::SecretString;

use crate::callers::{Caller, Callers, KeyMemo};
use crate::clock::Clock;
use crate::config::Config;
use crate::store::{ConnectionRow, Store, StoreError};
use crate::{CallError, Env};

/// How long one check for other writers' changes may wait for the store (a full read of a
/// large store takes about a second).
pub const SYNC_WAIT: Duration = Duration::from_secs(10);

/// What the engine needs from the process: the file configuration and the environment
/// variables that `{ env = "VAR" }` references may name. Tests build this in code.
#[derive(Default)]
pub struct EngineSettings {
    pub config: Config,
    pub env_vars: BTreeMap<String, SecretString>,
    pub bootstrap_admin_key: Option<SecretString>,
    /// The externally visible base URL (redirect URIs and connect links are built from it).
    pub public_url: String,
    /// Test hook: abort at a named point of a token refresh (`LATCHKEY_FAULT`).
    pub fault: Option<String>,
    /// Where `master.key.next` appears during `latchkey vault rotate` (key-file mode): the
    /// engine loads it as its sealing key within a second.
    pub key_dir: Option<std::path::PathBuf>,
    /// Where every service reads the time (`None`: the system's clock); tests give a
    /// [`crate::clock::FakeClock`].
    pub clock: Option<Arc<dyn Clock>>,
    /// Where token requests go (`None`: the providers' token endpoints over HTTP); tests give
    /// a scripted one.
    pub token_endpoint: Option<Arc<dyn tokens::TokenEndpoint>>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    public_url: String,
    mirror: Arc<mirror::Mirror>,
    tokens: Arc<tokens::TokenManager>,
    connections: Arc<Connections>,
    identity: Identity,
    admin: Admin,
    clock: Arc<dyn Clock>,
    /// The MCP authorization server's fetched client metadata documents.
    mcp: mcp_auth::Shared,
    /// Rows the sweep deleted, per table.
    swept: sweep::Swept,
}

/// The engine's counters and gauges, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Token requests sent to providers.
    pub token_requests: u64,
    /// Refresh-token requests whose answer was lost after they may have reached the provider.
    pub refresh_ambiguous: u64,
    /// Store lookups of presented keys not in memory.
    pub key_store_lookups: u64,
    /// Times memory was read from the whole store.
    pub full_reloads: u64,
    /// Times memory caught up from the changed rows only.
    pub catch_ups: u64,
    /// How long ago memory was last known to match the store.
    pub sync_age: Duration,
    /// Data keys this process's vault has drawn (SECURITY S2).
    pub data_keys_drawn: u64,
}

impl Engine {
    /// Loads secrets, keys and connectors and builds the first runtime.
    pub async fn start(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        settings: EngineSettings,
    ) -> Result<Arc<Engine>, StoreError> {
        let public_url = settings.public_url.trim_end_matches('/').to_owned();
        // One clock for every service: the mirror carries it, and each service takes it from
        // there when it is made.
        let clock: Arc<dyn Clock> = settings.clock.unwrap_or_else(|| Arc::new(crate::clock::SystemClock));
        let callers = Callers::new(store.clone(), settings.bootstrap_admin_key.as_ref(), clock.clone());
        let cache = Arc::new(connections::ConnectionCache::new(settings.config.server.connection_cache()));
        let mirror = Arc::new(mirror::Mirror::new(
            store.clone(),
            vault.clone(),
            Arc::new(settings.config),
            settings.env_vars,
            settings.key_dir,
            callers,
            cache.clone(),
            clock.clone(),
        ));
        let (notify, events) = tokio::sync::mpsc::unbounded_channel();
        let mut tokens = tokens::TokenManager::new(
            store.clone(),
            vault.clone(),
            clock.clone(),
            settings.fault.clone(),
            Some(notify),
        );
        if let Some(endpoint) = settings.token_endpoint {
            tokens = tokens.with_endpoint(endpoint);
        }
        let tokens = Arc::new(tokens);
        let connections = Arc::new(Connections::new(
            store.clone(),
            vault.clone(),
            mirror.clone(),
            tokens.clone(),
            public_url.clone(),
            cache,
        ));
        let identity =
            Identity::new(store.clone(), vault.clone(), mirror.clone(), connections.clone(), public_url.clone());
        let admin = Admin::new(store.clone(), vault.clone(), mirror.clone());
        let webhooks = Arc::new(webhooks::Webhooks::new(store.clone(), mirror.clone(), tokens.clone()));
        let engine = Arc::new(Engine {
            store,
            vault,
            public_url,
            mirror,
            tokens,
            connections,
            identity,
            admin,
            clock,
            mcp: mcp_auth::Shared::default(),
            swept: sweep::Swept::default(),
        });
        engine.mirror.reload().await?;
        tokio::spawn(webhooks.run(events));
        Ok(engine)
    }

    /// The time (Unix milliseconds) on the engine's clock: what the server stamps and compares
    /// with, so that it agrees with the services.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The configuration file as of now (a reload swaps it: [`Engine::reload_config`]).
    pub fn config(&self) -> Arc<Config> {
        self.mirror.config()
    }

    /// Secrets, keys and API connectors (the admin API and the CLI).
    pub fn admin(&self) -> &Admin {
        &self.admin
    }

    /// The connect flow and per-user connections.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// The identity provider: users, their tokens, signing keys.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// `Idempotency-Key`s: claims and kept answers, in the store.
    pub fn idempotency(&self) -> idempotency::Idempotency<'_> {
        idempotency::Idempotency { store: &*self.store, vault: &self.vault }
    }

    pub fn connector(&self, name: &str) -> Option<Arc<ConnectorRuntime>> {
        self.mirror.connector(name)
    }

    pub fn connectors(&self) -> Vec<Arc<ConnectorRuntime>> {
        self.mirror.connectors()
    }

    /// The caller an admin or app key names: from memory, else (a key another writer made)
    /// from the store. With `memo`, the key its connection presented last is recognised by a
    /// constant-time comparison alone.
    pub async fn authenticate(&self, presented: &str, memo: Option<&KeyMemo>) -> Result<Caller, CallError> {
        let callers = self.mirror.callers();
        match memo {
            Some(memo) => callers.authenticate_memo(presented, memo).await,
            None => callers.authenticate(presented).await,
        }
    }

    /// Whether the store answers, within the bound every store operation on a call's path has
    /// ([`tokens::STORE_WAIT`]); the error says Latchkey is not ready, and why.
    pub async fn ping(&self) -> Result<(), CallError> {
        tokens::store_bounded(self.store.ping(), "Latchkey is not ready").await
    }

    /// Per-user connections by connector, environment and their token's stored state (for the
    /// metrics), bounded like every store operation on a request's path.
    pub async fn connection_counts(&self) -> Result<Vec<crate::store::ConnectionCount>, CallError> {
        tokens::store_bounded(self.store.count_connections(), "connections cannot be counted").await
    }

    /// Token requests sent to providers, by connector, kind and outcome.
    pub fn token_counts(&self) -> Vec<tokens::TokenCount> {
        self.tokens.tally.counts()
    }

    pub fn stats(&self) -> EngineStats {
        let (full_reloads, catch_ups) = self.mirror.sync_counts();
        EngineStats {
            token_requests: self.tokens.requests.load(Ordering::Relaxed),
            refresh_ambiguous: self.tokens.ambiguous.load(Ordering::Relaxed),
            key_store_lookups: self.mirror.callers().store_lookups.load(Ordering::Relaxed),
            full_reloads,
            catch_ups,
            sync_age: self.mirror.sync_age(),
            data_keys_drawn: self.vault.data_keys_drawn(),
        }
    }

    /// Catches up when another writer (another instance, or the CLI) changed the store; says
    /// whether the generation had moved.
    pub async fn sync_once(&self) -> Result<bool, StoreError> {
        self.mirror.sync_once().await
    }

    /// How many times memory was rebuilt from the whole store, and how many times it caught up
    /// from the changed rows only (tests, metrics).
    pub fn sync_counts(&self) -> (u64, u64) {
        self.mirror.sync_counts()
    }

    /// The per-install key of the audit log's HMACs (SECURITY S8), made on first use.
    pub async fn audit_key(&self) -> Result<AuditKey, AuditKeyError> {
        audit::key(&*self.store, &self.vault).await
    }

    /// Obtains a token for `connector` in `env` now (for `latchkey check --live`). `Ok(None)`
    /// when the connector's method has no token.
    pub async fn obtain_token(&self, connector: &str, env: Env) -> Result<Option<i64>, CallError> {
        let conn = self
            .connector(connector)
            .ok_or_else(|| CallError::not_found(format!("no connector named `{connector}`")))?;
        let prepared = conn.credential(env)?;
        match &prepared.credential {
            crate::auth::Credential::Token(src) => {
                let t = self.tokens.get(src).await?;
                Ok(Some(t.token.expires_at.unwrap_or(0)))
            }
            _ => Ok(None),
        }
    }

    // What the call path asks of the services.

    pub(crate) async fn user_connection(
        &self,
        env: Env,
        connector: &str,
        owner: &str,
    ) -> Result<Option<ConnectionRow>, CallError> {
        self.connections.user_connection(env, connector, owner).await
    }

    pub(crate) async fn reconnect_url(&self, row: &ConnectionRow) -> Option<String> {
        self.connections.reconnect_url(row).await
    }

    pub(crate) async fn sign_identity(
        &self,
        env: Env,
        user: &str,
        audience: &str,
        lifetime_s: i64,
    ) -> Result<String, CallError> {
        self.identity.sign_identity(env, user, audience, lifetime_s).await
    }
}
