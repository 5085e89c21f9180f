//! What this process holds of the store, and keeping it current: the compiled runtime
//! (connectors, secrets, identity keys), the app keys ([`Callers`]) and the store generation
//! they reflect. Rebuilt from the whole store only at start ([`Mirror::reload`]); afterwards
//! brought up to date from the rows changed since ([`Mirror::catch_up`]), after this
//! process's own writes ([`Mirror::own_write`]) and when the 1 s sync sees another writer
//! ([`Mirror::sync_once`]). The configuration file's contents ride in the runtime, and a
//! reload of the file swaps both at once ([`Mirror::swap_config`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use latchkey_vault::Vault;
use secrecy::SecretString;

use super::connections::ConnectionCache;
use super::identity::IdentityKeys;
use super::runtime::{ConnectorRuntime, Runtime};
use crate::auth::ClientPool;
use crate::callers::Callers;
use crate::clock::Clock;
use crate::config::Config;
use crate::secrets::SecretSet;
use crate::store::{Store, StoreError};

pub(crate) struct Mirror {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    /// Where `master.key.next` appears during `latchkey vault rotate` (key-file mode).
    key_dir: Option<PathBuf>,
    clients: ClientPool,
    runtime: ArcSwap<Runtime>,
    callers: Callers,
    generation: AtomicI64,
    full_reloads: AtomicU64,
    catch_ups: AtomicU64,
    /// When memory was last known to match the store (ms since the epoch): the last sync that
    /// got an answer, or the start.
    synced_at: AtomicI64,
    /// Held by every rebuild (a full reload, a catch-up, an own write, a configuration swap),
    /// so that none builds on a runtime another is replacing.
    reload_lock: tokio::sync::Mutex<()>,
    /// The per-user connections calls looked up ([`super::Connections`] fills it): cleared on
    /// every swap, so a deletion anywhere takes effect everywhere within a second.
    user_connections: Arc<ConnectionCache>,
    clock: Arc<dyn Clock>,
}

impl Mirror {
    /// An empty mirror; [`Mirror::reload`] fills it.
    #[expect(clippy::too_many_arguments, reason = "the parts of the engine it holds, handed over once at start")]
    pub(crate) fn new(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        config: Arc<Config>,
        env_vars: BTreeMap<String, SecretString>,
        key_dir: Option<PathBuf>,
        callers: Callers,
        user_connections: Arc<ConnectionCache>,
        clock: Arc<dyn Clock>,
    ) -> Mirror {
        let secrets = SecretSet::open(&[], &vault, Arc::new(env_vars));
        let first = Runtime { config, secrets: Arc::new(secrets), ..Runtime::default() };
        Mirror {
            store,
            vault,
            key_dir,
            clients: ClientPool::default(),
            runtime: ArcSwap::from_pointee(first),
            callers,
            generation: AtomicI64::new(i64::MIN),
            full_reloads: AtomicU64::new(0),
            catch_ups: AtomicU64::new(0),
            synced_at: AtomicI64::new(clock.now_ms()),
            reload_lock: tokio::sync::Mutex::new(()),
            user_connections,
            clock,
        }
    }

    /// The engine's clock (every service reads the time through it).
    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The configuration file as of now (swapped by a reload; not for the call path, which
    /// reads what it needs from the runtime it holds).
    pub(crate) fn config(&self) -> Arc<Config> {
        self.runtime.load().config.clone()
    }

    pub(crate) fn clients(&self) -> &ClientPool {
        &self.clients
    }

    pub(crate) fn callers(&self) -> &Callers {
        &self.callers
    }

    /// The runtime as of now (a snapshot: a swap meanwhile does not change it).
    pub(crate) fn runtime(&self) -> Guard<Arc<Runtime>> {
        self.runtime.load()
    }

    pub(crate) fn connector(&self, name: &str) -> Option<Arc<ConnectorRuntime>> {
        self.runtime.load().connectors.get(name).cloned()
    }

    pub(crate) fn connectors(&self) -> Vec<Arc<ConnectorRuntime>> {
        self.runtime.load().connectors.values().cloned().collect()
    }

    /// Rebuilds the runtime from the store and swaps it in.
    pub(crate) async fn reload(&self) -> Result<(), StoreError> {
        let _guard = self.reload_lock.lock().await;
        let generation = self.store.generation().await?;
        let secrets = self.store.list_secrets().await?;
        let stored = self.store.list_connectors().await?;
        self.callers.reload().await?;
        let identity = self.load_identity().await?;
        let current = self.runtime.load_full();
        let env_vars = current.secrets.env_vars().clone();
        let rt = Runtime::load(&current.config, stored, &secrets, &self.vault, env_vars, &self.clients);
        self.swap_in(rt, identity, generation);
        self.full_reloads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Signing keys and recent revocations: few rows, read whole on every rebuild.
    async fn load_identity(&self) -> Result<IdentityKeys, StoreError> {
        let keys = self.store.list_signing_keys().await?;
        let since = self.clock.now_ms() - super::identity::claims::REVOCATIONS_KEPT_MS;
        let revoked = self.store.revoked_families(since).await?;
        Ok(IdentityKeys::load(keys, &self.vault, revoked))
    }

    /// Makes `rt` (with `identity`) the runtime, as of store generation `generation`.
    fn swap_in(&self, mut rt: Runtime, identity: IdentityKeys, generation: i64) {
        rt.identity = identity;
        self.runtime.store(Arc::new(rt));
        self.user_connections.clear();
        self.generation.store(generation, Ordering::SeqCst);
    }

    /// Brings memory up to date after this instance's own write, which bumped the store's
    /// generation by one. When nobody else wrote meanwhile, `change` makes the same change in
    /// memory (or returns `None` when the runtime is not concerned, such as for app keys)
    /// without reading the store. Otherwise it catches up with every change since
    /// ([`Mirror::catch_up`]), this one included.
    pub(crate) async fn own_write(&self, change: impl FnOnce(&Runtime) -> Option<Runtime>) -> Result<(), StoreError> {
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
            self.user_connections.clear();
        }
        self.generation.store(now, Ordering::SeqCst);
        Ok(())
    }

    /// [`Mirror::own_write`] of a change to one secret: connectors are compiled again from
    /// the secrets in memory with `change` made to them.
    pub(crate) async fn own_secret_write(&self, change: impl FnOnce(&mut SecretSet)) -> Result<(), StoreError> {
        self.own_write(|rt| Some(rt.with_secrets(&self.clients, change))).await
    }

    /// Makes `config` the configuration: connectors are compiled again from the secrets and
    /// API connectors in memory (the store is not read), with `env_vars` for its
    /// `{ env = "VAR" }` references; connectors whose definition did not change are kept as
    /// they were ([`Runtime::keep_unchanged`]), and the client pool is kept. The runtime and
    /// the configuration change in one swap. Returns the runtimes before and after.
    pub(crate) async fn swap_config(
        &self,
        config: Arc<Config>,
        env_vars: BTreeMap<String, SecretString>,
    ) -> (Arc<Runtime>, Arc<Runtime>) {
        let _guard = self.reload_lock.lock().await;
        let current = self.runtime.load_full();
        let secrets = Arc::new(current.secrets.with_env_vars(Arc::new(env_vars)));
        let mut rt = Runtime::build(&config, current.stored.clone(), secrets, &self.clients);
        rt.keep_unchanged(&current);
        rt.identity = current.identity.clone();
        let rt = Arc::new(rt);
        self.runtime.store(rt.clone());
        self.user_connections.clear_to(config.server.connection_cache());
        (current, rt)
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
    pub(crate) async fn sync_once(&self) -> Result<bool, StoreError> {
        self.adopt_next_key();
        let asked = self.clock.now_ms();
        let now = self.store.generation().await?;
        let moved = now != self.generation.load(Ordering::SeqCst);
        if moved {
            self.catch_up().await?;
        }
        self.synced_at.fetch_max(asked, Ordering::Relaxed);
        Ok(moved)
    }

    /// The store generation memory reflects.
    pub(crate) fn generation(&self) -> i64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// How long ago memory was last known to match the store: a second or so while the sync
    /// runs, growing while the store does not answer (changes other instances make, such as a
    /// deleted app key, are not seen here meanwhile).
    pub(crate) fn sync_age(&self) -> Duration {
        let ms = self.clock.now_ms() - self.synced_at.load(Ordering::Relaxed);
        Duration::from_millis(ms.max(0) as u64)
    }

    /// Brings memory up to the store's generation without reading the whole store: only the
    /// secrets and app keys written or deleted since the generation held are read (and only
    /// those secrets opened); connectors, signing keys and revocations, which are few, are read
    /// again; connectors are compiled again from the secrets in memory. Every write that
    /// changes what memory holds bumps the generation, so a generation that has not moved
    /// means there is nothing to do.
    pub(crate) async fn catch_up(&self) -> Result<(), StoreError> {
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
        let rt = Runtime::build(&current.config, Arc::new(stored), secrets, &self.clients);
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

    /// How many times memory was rebuilt from the whole store, and how many times it caught up
    /// from the changed rows only.
    pub(crate) fn sync_counts(&self) -> (u64, u64) {
        (self.full_reloads.load(Ordering::Relaxed), self.catch_ups.load(Ordering::Relaxed))
    }
}
