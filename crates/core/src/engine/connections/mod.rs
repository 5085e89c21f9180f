//! Per-user connections (SPEC §8): the browser flow that makes them (`flow.rs`: connect
//! sessions, the state bound to a cookie, PKCE S256, RFC 9207 `iss`, the callback's code
//! exchange and profile; its pure checks in `rules.rs`), and their lifecycle here: the lookup
//! calls make, listings, deletion with revocation, and reconnect links.

mod flow;
mod oauth1;
mod page;
mod rules;
mod values;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hashlink::LruCache;
use latchkey_vault::{Aad, Vault};
use serde_json::json;

use super::mirror::Mirror;
use super::tokens::{TokenManager, store_bounded};
use crate::auth::Credential;
use crate::auth::authorization_code::{Revocable, UserAuth};
use crate::auth::per_user::UserSigner;
use crate::clock::Clock;
use crate::event::{EventKind, EventOutcome};
use crate::store::{ConnectionFilter, ConnectionRow, Store, StoreError, TokenKey, TokenRow};
use crate::{CallError, Env, ErrorCode};

pub use flow::{CallbackOutcome, FlowError};
pub use page::{PAGE_TTL_MS, PageConnector, PageMethod, PageSession, PageState};

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

/// A connection calls looked up: its row, and for a `per_user` connector what it holds,
/// prepared to sign (once per user, until the values change or the connection goes).
pub(crate) struct CachedConnection {
    row: ConnectionRow,
    signer: Option<Arc<UserSigner>>,
}

/// The per-user connections calls looked up: (connector, env, owner) -> row (and signer).
/// Filled by [`Connections::user_connection`] and [`Connections::user_signer`], emptied by the
/// [`Mirror`] on every swap of the runtime (so a change anywhere, which bumps the store's
/// generation, takes effect everywhere within a second). Bounded by `[server]
/// connection_cache` entries: past it the least recently used goes, and its next lookup reads
/// the store as a cold start does. `epoch` moves with every removal (an eviction is not one:
/// what it drops was current), so that a lookup that read the store before a removal does
/// not put back what was removed.
pub(crate) struct ConnectionCache {
    map: Mutex<LruCache<ConnectionKey, Arc<CachedConnection>>>,
    epoch: AtomicU64,
}

impl ConnectionCache {
    /// An empty cache that keeps at most `capacity` connections (at least one).
    pub(crate) fn new(capacity: usize) -> ConnectionCache {
        ConnectionCache { map: Mutex::new(LruCache::new(capacity.max(1))), epoch: AtomicU64::new(0) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<ConnectionKey, Arc<CachedConnection>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `key`, now the most recently used.
    fn get(&self, key: &ConnectionKey) -> Option<Arc<CachedConnection>> {
        self.lock().get(key).cloned()
    }

    pub(crate) fn clear(&self) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        map.clear();
    }

    /// Empties the cache and bounds it at `capacity` from now on (a reload of the file).
    pub(crate) fn clear_to(&self, capacity: usize) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        map.clear();
        map.set_capacity(capacity.max(1));
    }

    fn remove(&self, key: &ConnectionKey) {
        let mut map = self.lock();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        map.remove(key);
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Keeps `entry` unless something was removed since `epoch` was read (before the store);
    /// at the bound, the least recently used entry makes room.
    fn insert_since(&self, epoch: u64, key: ConnectionKey, entry: Arc<CachedConnection>) {
        let mut map = self.lock();
        if self.epoch.load(Ordering::SeqCst) == epoch {
            map.insert(key, entry);
        }
    }

    /// Entries held and the bound (tests and `/metrics`-like measurements).
    #[cfg(test)]
    pub(crate) fn len_and_capacity(&self) -> (usize, usize) {
        let map = self.lock();
        (map.len(), map.capacity())
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
            Credential::PerUser(_) => Err(CallError::invalid_params(format!(
                "connector `{connector}` takes each user's own values (per_user = true), not a browser flow: set them with PUT /v1/connections/{connector}"
            ))),
            _ => Err(CallError::invalid_params(format!(
                "connector `{connector}` uses `{}`, not `oauth2_authorization_code`, `oauth1_authorization` or `per_user = true`: it has no per-user connections",
                conn.config.auth.method()
            ))),
        }
    }

    /// Validates that `connector` holds per-user connections, OAuth ones or users' own values
    /// (for routes).
    pub fn require_user_connector(&self, connector: &str) -> Result<(), CallError> {
        let per_user = |env| {
            self.mirror
                .connector(connector)
                .and_then(|c| c.credential(env).ok().map(|p| matches!(p.credential, Credential::PerUser(_))))
                .unwrap_or(false)
        };
        if per_user(Env::Live)
            || per_user(Env::Dev)
            || matches!(self.oauth1_user(connector, Env::Live), Ok(Some(_)))
            || matches!(self.oauth1_user(connector, Env::Dev), Ok(Some(_)))
        {
            return Ok(());
        }
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
        if let Some(c) = self.cache.get(&key) {
            return Ok(Some(c.row.clone()));
        }
        let epoch = self.cache.epoch();
        let found = self.store.find_connection(connector, env, owner);
        let row = store_bounded(found, "the user's connection could not be looked up").await?;
        if let Some(r) = &row {
            self.cache.insert_since(epoch, key, Arc::new(CachedConnection { row: r.clone(), signer: None }));
        }
        Ok(row)
    }

    /// Connections memory holds, and its bound (tests).
    #[cfg(test)]
    pub(crate) fn cached(&self) -> (usize, usize) {
        self.cache.len_and_capacity()
    }

    /// Whether `owner` has a connection on `connector` in `env` (the MCP server's connect
    /// link); the connection itself stays inside.
    pub async fn has_connection(&self, env: Env, connector: &str, owner: &str) -> Result<bool, CallError> {
        Ok(self.user_connection(env, connector, owner).await?.is_some())
    }

    fn forget_user_connection(&self, row: &ConnectionRow) {
        let key = (row.connector.clone(), row.env, row.owner.clone());
        self.cache.remove(&key);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(owner: &str) -> Arc<CachedConnection> {
        let row = ConnectionRow {
            id: format!("conn_{owner}"),
            connector: "keys".into(),
            env: Env::Live,
            owner: owner.into(),
            provider_user_id: None,
            email: None,
            scopes: None,
            metadata: "{}".into(),
            return_to: None,
            created_at: 0,
            updated_at: 0,
        };
        Arc::new(CachedConnection { row, signer: None })
    }

    /// A connection as an OAuth provider fills it (the fields of a typical GitHub one).
    fn full_entry(i: usize) -> (ConnectionKey, Arc<CachedConnection>) {
        let owner = format!("0b6f1c2e-5d4a-4f3b-9a8c-{i:012}");
        let row = ConnectionRow {
            id: format!("conn_{i:020}"),
            connector: "github".into(),
            env: Env::Live,
            owner: owner.clone(),
            provider_user_id: Some(format!("{i:08}")),
            email: Some(format!("user{i}@example.com")),
            scopes: Some("repo read:user user:email".into()),
            metadata: "{}".into(),
            return_to: Some("https://app.example.com/settings/integrations".into()),
            created_at: 0,
            updated_at: 0,
        };
        (("github".to_owned(), Env::Live, owner), Arc::new(CachedConnection { row, signer: None }))
    }

    /// Twice the bound goes in, the bound stays, and the entries kept are the latest. Prints
    /// what an entry costs in resident memory (BENCHMARKS.md; not asserted: other tests share
    /// the process, so the number is only read from a run of this test alone).
    #[test]
    fn a_full_cache_keeps_its_bound_and_the_latest_entries() {
        const BOUND: usize = 20_000;
        let cache = ConnectionCache::new(BOUND);
        let before = resident_bytes();
        for i in 0..2 * BOUND {
            let (key, entry) = full_entry(i);
            cache.insert_since(cache.epoch(), key, entry);
        }
        assert_eq!(cache.len_and_capacity(), (BOUND, BOUND));
        assert!(cache.get(&full_entry(0).0).is_none(), "the oldest went");
        assert!(cache.get(&full_entry(2 * BOUND - 1).0).is_some(), "the latest stayed");
        if let (Some(b), Some(a)) = (before, resident_bytes()) {
            eprintln!("{} bytes of resident memory per cached connection", a.saturating_sub(b) / BOUND as u64);
        }
    }

    /// This process's resident memory (Linux), for the measurement above.
    fn resident_bytes() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }

    /// A lookup that read the store before new values were stored (or the connection deleted)
    /// does not put back what it read; one that read after does.
    #[test]
    fn a_lookup_from_before_a_removal_is_not_kept() {
        let cache = ConnectionCache::new(10);
        let key = ("keys".to_owned(), Env::Live, "alice".to_owned());
        let read_at = cache.epoch();
        cache.remove(&key);
        cache.insert_since(read_at, key.clone(), entry("alice"));
        assert!(cache.get(&key).is_none(), "a stale lookup was kept");
        let read_at = cache.epoch();
        cache.insert_since(read_at, key.clone(), entry("alice"));
        assert!(cache.get(&key).is_some());
        let read_at = cache.epoch();
        cache.clear();
        cache.insert_since(read_at, key.clone(), entry("alice"));
        assert!(cache.lock().is_empty(), "a lookup from before a swap was kept");
    }
}
