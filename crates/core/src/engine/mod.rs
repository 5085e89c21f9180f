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

mod admin;
pub mod audit;
mod connect;
pub mod identity;
mod keycheck;
mod pipeline;
pub mod rotate;
mod runtime;
pub mod tokens;
mod webhooks;

pub use connect::{CallbackOutcome, ConnectionView, FlowError};
pub use webhooks::signature as webhook_signature;

pub use admin::{PutConnectorError, SecretInfo};
pub use keycheck::{KeyCheck, check_master_key};
/// The audit log's prepared HMAC key.
pub use latchkey_vault::HmacKey as AuditKey;
pub use pipeline::{OutBody, ProxyRequest, UpstreamResponse};
pub use runtime::ConnectorRuntime;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use latchkey_vault::Vault;
use secrecy::SecretString;

use crate::auth::ClientPool;
use crate::callers::Callers;
use crate::config::Config;
use crate::secrets::SecretSet;
use crate::store::{Store, StoreError};

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
}

pub struct Engine {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    config: Config,
    key_dir: Option<std::path::PathBuf>,
    public_url: String,
    env_vars: Arc<BTreeMap<String, SecretString>>,
    clients: ClientPool,
    runtime: ArcSwap<runtime::Runtime>,
    generation: AtomicI64,
    full_reloads: AtomicU64,
    catch_ups: AtomicU64,
    /// When memory was last known to match the store (ms since the epoch): the last sync that
    /// got an answer, or the start.
    synced_at: AtomicI64,
    reload_lock: tokio::sync::Mutex<()>,
    pub callers: Callers,
    pub tokens: tokens::TokenManager,
    /// Per-user connections looked up by calls: (connector, env, owner) -> row. Cleared on
    /// every reload, so a deletion anywhere takes effect everywhere within a second.
    user_connections: UserConnections,
}

type UserConnections =
    std::sync::Mutex<std::collections::HashMap<(String, crate::Env, String), Arc<crate::store::ConnectionRow>>>;

impl Engine {
    /// Loads secrets, keys and connectors and builds the first runtime.
    pub async fn start(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        settings: EngineSettings,
    ) -> Result<Arc<Engine>, StoreError> {
        let callers = Callers::new(store.clone(), settings.bootstrap_admin_key.as_ref());
        let (notify, events) = tokio::sync::mpsc::unbounded_channel();
        let clock = Arc::new(crate::clock::SystemClock);
        let tokens =
            tokens::TokenManager::new(store.clone(), vault.clone(), clock, settings.fault.clone(), Some(notify));
        let engine = Arc::new(Engine {
            store,
            vault,
            config: settings.config,
            key_dir: settings.key_dir,
            public_url: settings.public_url.trim_end_matches('/').to_owned(),
            env_vars: Arc::new(settings.env_vars),
            clients: ClientPool::default(),
            runtime: ArcSwap::from_pointee(runtime::Runtime::default()),
            generation: AtomicI64::new(i64::MIN),
            full_reloads: AtomicU64::new(0),
            catch_ups: AtomicU64::new(0),
            synced_at: AtomicI64::new(crate::time_fmt::now_ms()),
            reload_lock: tokio::sync::Mutex::new(()),
            callers,
            tokens,
            user_connections: UserConnections::default(),
        });
        engine.reload().await?;
        tokio::spawn(engine.clone().webhook_loop(events));
        Ok(engine)
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Rebuilds the runtime from the store and swaps it in.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _guard = self.reload_lock.lock().await;
        let generation = self.store.generation().await?;
        let secrets = self.store.list_secrets().await?;
        let stored = self.store.list_connectors().await?;
        self.callers.reload().await?;
        let identity = self.load_identity().await?;
        let rt =
            runtime::Runtime::load(&self.config, stored, &secrets, &self.vault, self.env_vars.clone(), &self.clients);
        self.swap_in(rt, identity, generation);
        self.full_reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Signing keys and recent revocations: few rows, read whole on every rebuild.
    async fn load_identity(&self) -> Result<identity::IdentityKeys, StoreError> {
        /// Revocations older than this concern refresh tokens that have expired anyway.
        const REVOCATIONS_KEPT_MS: i64 = 2 * 86_400_000;
        let keys = self.store.list_signing_keys().await?;
        let revoked = self.store.revoked_families(crate::time_fmt::now_ms() - REVOCATIONS_KEPT_MS).await?;
        Ok(identity::IdentityKeys::load(keys, &self.vault, revoked))
    }

    /// Makes `rt` (with `identity`) the runtime, as of store generation `generation`.
    fn swap_in(&self, mut rt: runtime::Runtime, identity: identity::IdentityKeys, generation: i64) {
        rt.identity = identity;
        self.runtime.store(Arc::new(rt));
        self.user_connections.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.generation.store(generation, Ordering::SeqCst);
    }

    /// Brings memory up to date after this instance's own write, which bumped the store's
    /// generation by one. When nobody else wrote meanwhile, `change` makes the same change in
    /// memory (or returns `None` when the runtime is not concerned, such as for app keys)
    /// without reading the store. Otherwise it catches up with every change since
    /// ([`Engine::catch_up`]), this one included.
    pub(crate) async fn own_write(
        &self,
        change: impl FnOnce(&runtime::Runtime) -> Option<runtime::Runtime>,
    ) -> Result<(), StoreError> {
        let guard = self.reload_lock.lock().await;
        let now = self.store.generation().await?;
        let seen = self.generation.load(Ordering::SeqCst);
        if now == seen {
            return Ok(()); // a reload since the write already read it
        }
        if now != seen + 1 {
            drop(guard);
            return self.catch_up().await;
        }
        if let Some(rt) = change(&self.runtime.load()) {
            self.runtime.store(Arc::new(rt));
            self.user_connections.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        self.generation.store(now, Ordering::SeqCst);
        Ok(())
    }

    /// The per-install key of the audit log's HMACs (SECURITY S8), made on first use.
    pub async fn audit_key(&self) -> Result<AuditKey, String> {
        audit::key(&*self.store, &self.vault).await
    }

    /// Picks up `master.key.next` (written by `latchkey vault rotate`) as the sealing key.
    fn adopt_next_key(&self) {
        let Some(dir) = &self.key_dir else { return };
        let Ok(text) = std::fs::read_to_string(dir.join("master.key.next")) else { return };
        match latchkey_vault::MasterKey::from_base64(&text) {
            Ok(k) if self.vault.active_key_id() != k.id() => {
                self.vault.promote(&k);
                tracing::info!(key_id = %k.id(), "sealing with the new master key (vault rotation in progress)");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "master.key.next is not usable"),
        }
    }

    /// Catches up when another writer (another instance, or the CLI) changed the store.
    pub async fn sync_once(&self) -> Result<bool, StoreError> {
        self.adopt_next_key();
        let asked = crate::time_fmt::now_ms();
        let now = self.store.generation().await?;
        let moved = now != self.generation.load(Ordering::SeqCst);
        if moved {
            self.catch_up().await?;
        }
        self.synced_at.fetch_max(asked, Ordering::Relaxed);
        Ok(moved)
    }

    /// How long ago memory was last known to match the store: a second or so while the sync
    /// runs, growing while the store does not answer (changes other instances make, such as a
    /// deleted app key, are not seen here meanwhile).
    pub fn sync_age(&self) -> Duration {
        let ms = crate::time_fmt::now_ms() - self.synced_at.load(Ordering::Relaxed);
        Duration::from_millis(ms.max(0) as u64)
    }

    /// Brings memory up to the store's generation without reading the whole store: only the
    /// secrets and app keys written or deleted since the generation held are read (and only
    /// those secrets opened); connectors, signing keys and revocations, which are few, are read
    /// again; connectors are compiled again from the secrets in memory. Every write that
    /// changes what memory holds bumps the generation, so a generation that has not moved
    /// means there is nothing to do.
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let guard = self.reload_lock.lock().await;
        let seen = self.generation.load(Ordering::SeqCst);
        let changes = self.store.changes_since(seen).await?;
        if changes.through == seen {
            return Ok(()); // caught up meanwhile
        }
        if changes.through < seen {
            // The generation went back: the store was restored from a backup or replaced.
            // Rows stamped before what this instance saw may differ: read everything.
            drop(guard);
            tracing::warn!(
                held = seen,
                store = changes.through,
                "the store's generation went back; reading it all again"
            );
            return self.reload().await;
        }
        let stored = self.store.list_connectors().await?;
        let identity = self.load_identity().await?;
        let current = self.runtime.load_full();
        let secrets = if changes.secrets.is_empty() && changes.deleted_secrets.is_empty() {
            current.secrets.clone()
        } else {
            let mut secrets = SecretSet::clone(&current.secrets);
            for name in &changes.deleted_secrets {
                secrets.remove(name);
            }
            secrets.open_rows(&changes.secrets, &self.vault);
            Arc::new(secrets)
        };
        let (n_secrets, n_keys) =
            (changes.secrets.len() + changes.deleted_secrets.len(), changes.keys.len() + changes.deleted_keys.len());
        self.callers.apply(changes.keys, &changes.deleted_keys);
        let rt = runtime::Runtime::build(&self.config, Arc::new(stored), secrets, &self.clients);
        self.swap_in(rt, identity, changes.through);
        self.catch_ups.fetch_add(1, Ordering::Relaxed);
        drop(guard);
        tracing::info!(
            generation = changes.through,
            secrets = n_secrets,
            keys = n_keys,
            "caught up with changes in the store (secrets and keys read: only those changed)"
        );
        Ok(())
    }

    /// Data keys this process's vault has drawn (SECURITY S2): one at the first seal, one more
    /// each time a data key reached its budget or a new master key took over.
    pub fn data_keys_drawn(&self) -> u64 {
        self.vault.data_keys_drawn()
    }

    /// How many times memory was rebuilt from the whole store, and how many times it caught up
    /// from the changed rows only (tests, metrics).
    pub fn sync_counts(&self) -> (u64, u64) {
        (self.full_reloads.load(Ordering::Relaxed), self.catch_ups.load(Ordering::Relaxed))
    }

    /// Runs [`Engine::sync_once`] every `every` until the task is dropped. Each is bounded by
    /// [`SYNC_WAIT`]: a store that stopped answering (a partition) is reported and asked again
    /// on a new attempt, instead of holding the sync until the TCP timeout.
    pub async fn sync_forever(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match tokio::time::timeout(SYNC_WAIT, self.sync_once()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not check the store for changes"),
                Err(_) => tracing::warn!(
                    seconds = SYNC_WAIT.as_secs(),
                    behind_s = self.sync_age().as_secs(),
                    "the store did not answer the check for changes; changes other instances make are not seen here until it does"
                ),
            }
        }
    }

    /// Obtains a token for `connector` in `env` now (for `latchkey check --live`). `Ok(None)`
    /// when the connector's method has no token.
    pub async fn obtain_token(&self, connector: &str, env: crate::Env) -> Result<Option<i64>, crate::CallError> {
        let conn = self
            .connector(connector)
            .ok_or_else(|| crate::CallError::not_found(format!("no connector named `{connector}`")))?;
        let prepared = conn.credential(env)?;
        match &prepared.credential {
            crate::auth::Credential::Token(src) => {
                let t = self.tokens.get(src).await?;
                Ok(Some(t.token.expires_at.unwrap_or(0)))
            }
            _ => Ok(None),
        }
    }

    /// Refreshes tokens unused for their connector's `keepalive_s`, so refresh tokens that
    /// die when idle stay alive. Returns how many were refreshed.
    pub async fn keepalive_once(&self) -> usize {
        let rows = match self.store.list_tokens().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "keep-alive could not list tokens");
                return 0;
            }
        };
        let now = crate::time_fmt::now_ms();
        let mut n = 0;
        for row in rows.iter().filter(|r| r.sealed.is_some()) {
            let Some(conn) = self.connector(&row.key.connector) else { continue };
            let Ok(prepared) = conn.credential(row.key.env) else { continue };
            let per_user;
            let src = match (&prepared.credential, row.key.connection.is_empty()) {
                (crate::auth::Credential::Token(src), true) => src.as_ref(),
                (crate::auth::Credential::User(auth), false) => {
                    per_user = auth.for_connection(&row.key.connection);
                    &per_user
                }
                _ => continue,
            };
            let last_activity = row.last_used_at.unwrap_or(0).max(row.last_refresh_at.unwrap_or(0));
            if now - last_activity < src.keepalive_ms {
                continue;
            }
            match self.tokens.keep_alive(src).await {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(connector = %row.key.connector, error = %e, "keep-alive refresh failed"),
            }
        }
        n
    }

    /// Runs [`Engine::keepalive_once`] until the task is dropped, every half of the smallest
    /// `keepalive_s` among the token connectors (between 1 s and `max_every`), rechecked every
    /// second as connectors change.
    pub async fn keepalive_forever(self: Arc<Self>, max_every: Duration) {
        let mut last_run = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let smallest = self
                .connectors()
                .iter()
                .filter(|c| c.config.auth.kind().holds_tokens())
                .map(|c| c.config.keepalive_s)
                .min()
                .unwrap_or(u64::MAX);
            let every = Duration::from_secs((smallest / 2).max(1)).min(max_every);
            if last_run.elapsed() >= every {
                last_run = std::time::Instant::now();
                self.keepalive_once().await;
            }
        }
    }

    pub fn connector(&self, name: &str) -> Option<Arc<ConnectorRuntime>> {
        self.runtime.load().connectors.get(name).cloned()
    }

    pub fn connectors(&self) -> Vec<Arc<ConnectorRuntime>> {
        self.runtime.load().connectors.values().cloned().collect()
    }
}
