//! The whole [`Store`] in memory, for tests: the same semantics as the SQL stores (the
//! generation and its deletions, leases with fencing epochs, token versions, flows and
//! refresh tokens taken once), checked by latchkey-store's conformance suite, which runs
//! against it too. Clones share the data (a second instance on the same database).
//!
//! A fault switch makes chosen operations fail with [`StoreError::Unavailable`] or never
//! answer ([`MemoryStore::fail`], [`MemoryStore::hang`]), and [`MemoryStore::calls`] counts
//! the operations made. [`MemoryStore::before_next`] runs a test's step just before an
//! operation (a concurrent writer between a read and a write), and [`MemoryStore::backup`] /
//! [`MemoryStore::restore`] put an older copy back (the generation goes back).

mod identity;
mod tokens;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::{
    ConnectionRow, ConnectorRow, EventRow, FlowRow, IdempotencyRow, KeyRow, LoginCodeRow, RefreshRow, SecretRow,
    SigningKeyRow, Store, StoreChanges, StoreError, StoreResult, Sweep, TokenKey, TokenRow, UserRow,
};

/// Rows in the SQL stores' order: text columns compared as text (`dev` before `live`).
type TokenId = (String, &'static str, String);

fn token_id(key: &TokenKey) -> TokenId {
    (key.connector.clone(), key.env.as_str(), key.connection.clone())
}

#[derive(Clone, Default)]
struct Data {
    generation: i64,
    meta: BTreeMap<String, Vec<u8>>,
    /// (name, env) -> (row, changed_gen)
    secrets: BTreeMap<(String, &'static str), (SecretRow, i64)>,
    keys: BTreeMap<String, (KeyRow, i64)>,
    /// (kind, name) -> changed_gen
    deletions: BTreeMap<(&'static str, String), i64>,
    connectors: BTreeMap<String, ConnectorRow>,
    tokens: BTreeMap<TokenId, TokenRow>,
    events: Vec<EventRow>,
    connections: BTreeMap<String, ConnectionRow>,
    flows: BTreeMap<Vec<u8>, FlowRow>,
    users: BTreeMap<(&'static str, String), UserRow>,
    signing_keys: BTreeMap<String, SigningKeyRow>,
    refresh: BTreeMap<Vec<u8>, RefreshRow>,
    /// hash -> (row, used_at)
    login_codes: BTreeMap<Vec<u8>, (LoginCodeRow, Option<i64>)>,
    oauth_clients: BTreeMap<String, crate::store::OAuthClientRow>,
    auth_grants: BTreeMap<Vec<u8>, crate::store::AuthGrantRow>,
    /// (scope, key) -> claim
    idempotency: BTreeMap<(String, String), IdempotencyRow>,
}

impl Data {
    fn bump(&mut self) -> i64 {
        self.generation += 1;
        self.generation
    }
}

/// What a fault does to the operation it meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FaultKind {
    Fail,
    Hang,
}

struct Fault {
    /// The operation (the trait method's name), or every one.
    op: Option<&'static str>,
    times: u32,
    kind: FaultKind,
}

/// A test's step run just before an operation.
type Hook = Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

#[derive(Default)]
struct Inner {
    data: Mutex<Data>,
    faults: Mutex<Vec<Fault>>,
    calls: Mutex<HashMap<&'static str, u64>>,
    hooks: Mutex<Vec<(&'static str, Hook)>>,
    /// What the next `change_feed` returns ([`MemoryStore::set_change_feed`]).
    feed: Mutex<Option<crate::store::ChangeFeed>>,
}

/// The in-memory store. Cheap to clone; clones share everything.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn duplicate(op: &'static str, what: &str) -> StoreError {
    StoreError::Unavailable { op, reason: format!("{what} already exists (unique constraint)") }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The next `times` operations named `op` (a trait method's name, e.g. `"commit_token"`;
    /// `None`: any) fail with [`StoreError::Unavailable`].
    pub fn fail(&self, op: Option<&'static str>, times: u32) {
        lock(&self.inner.faults).push(Fault { op, times, kind: FaultKind::Fail });
    }

    /// The next `times` operations named `op` (`None`: any) never answer (a partition).
    pub fn hang(&self, op: Option<&'static str>, times: u32) {
        lock(&self.inner.faults).push(Fault { op, times, kind: FaultKind::Hang });
    }

    /// Removes every fault not yet spent: the store answers again.
    pub fn heal(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Runs `step` (once) just before the next operation named `op` does its work: what
    /// another writer does between a caller's read and its write.
    pub fn before_next<F>(&self, op: &'static str, step: impl FnOnce() -> F + Send + 'static)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        lock(&self.inner.hooks).push((op, Box::new(move || Box::pin(step()))));
    }

    /// A copy of the data as it is now, shared with nothing (a backup).
    pub fn backup(&self) -> MemoryStore {
        let copy = MemoryStore::new();
        *lock(&copy.inner.data) = self.data().clone();
        copy
    }

    /// Puts `backup`'s data back in place of this store's (a restore: the generation goes
    /// back to the backup's).
    pub fn restore(&self, backup: &MemoryStore) {
        let data = backup.data().clone();
        *self.data() = data;
    }

    /// Makes `feed` (whose sender the test keeps) what the next `change_feed` returns: a store
    /// sends no notices of its own.
    pub fn set_change_feed(&self, feed: crate::store::ChangeFeed) {
        *lock(&self.inner.feed) = Some(feed);
    }

    /// How many times `op` was called (including calls a fault met).
    pub fn calls(&self, op: &str) -> u64 {
        lock(&self.inner.calls).get(op).copied().unwrap_or(0)
    }

    /// Every operation starts here: counted, then met by the first fault that matches.
    async fn enter(&self, op: &'static str) -> StoreResult<()> {
        *lock(&self.inner.calls).entry(op).or_default() += 1;
        let hook = {
            let mut hooks = lock(&self.inner.hooks);
            hooks.iter().position(|(o, _)| *o == op).map(|i| hooks.remove(i).1)
        };
        if let Some(step) = hook {
            step().await;
        }
        let kind = {
            let mut faults = lock(&self.inner.faults);
            let found = faults.iter_mut().find(|f| f.times > 0 && f.op.is_none_or(|o| o == op));
            found.map(|f| {
                f.times -= 1;
                f.kind
            })
        };
        match kind {
            None => Ok(()),
            Some(FaultKind::Fail) => Err(StoreError::Unavailable { op, reason: "fault injected".into() }),
            Some(FaultKind::Hang) => std::future::pending().await,
        }
    }

    fn data(&self) -> std::sync::MutexGuard<'_, Data> {
        lock(&self.inner.data)
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        self.enter("ping").await
    }
    async fn generation(&self) -> StoreResult<i64> {
        self.enter("generation").await?;
        Ok(self.data().generation)
    }
    async fn get_meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.enter("get_meta").await?;
        Ok(self.data().meta.get(key).cloned())
    }
    async fn insert_meta(&self, key: &str, value: &[u8]) -> StoreResult<bool> {
        self.enter("insert_meta").await?;
        let mut d = self.data();
        if d.meta.contains_key(key) {
            return Ok(false);
        }
        d.meta.insert(key.to_owned(), value.to_vec());
        Ok(true)
    }
    async fn put_secret(&self, row: &SecretRow) -> StoreResult<()> {
        self.enter("put_secret").await?;
        let mut d = self.data();
        let generation = d.bump();
        d.secrets.insert((row.name.clone(), row.env.as_str()), (row.clone(), generation));
        Ok(())
    }
    async fn delete_secret(&self, name: &str) -> StoreResult<bool> {
        self.enter("delete_secret").await?;
        let mut d = self.data();
        let before = d.secrets.len();
        d.secrets.retain(|(n, _), _| n != name);
        if d.secrets.len() == before {
            return Ok(false);
        }
        let generation = d.bump();
        d.deletions.insert(("secret", name.to_owned()), generation);
        Ok(true)
    }
    async fn list_secrets(&self) -> StoreResult<Vec<SecretRow>> {
        self.enter("list_secrets").await?;
        Ok(self.data().secrets.values().map(|(row, _)| row.clone()).collect())
    }
    async fn changes_since(&self, since: i64) -> StoreResult<StoreChanges> {
        self.enter("changes_since").await?;
        let d = self.data();
        let mut changes = StoreChanges { through: d.generation, ..StoreChanges::default() };
        for ((kind, name), _) in d.deletions.iter().filter(|(_, g)| **g > since) {
            match *kind {
                "secret" => changes.deleted_secrets.push(name.clone()),
                _ => changes.deleted_keys.push(name.clone()),
            }
        }
        changes.secrets = d.secrets.values().filter(|(_, g)| *g > since).map(|(row, _)| row.clone()).collect();
        changes.keys = keys_in_order(d.keys.values().filter(|(_, g)| *g > since).map(|(row, _)| row));
        Ok(changes)
    }
    async fn insert_key(&self, row: &KeyRow) -> StoreResult<()> {
        self.enter("insert_key").await?;
        let mut d = self.data();
        if d.keys.contains_key(&row.id) {
            return Err(StoreError::Conflict(format!("key `{}`", row.id)));
        }
        let generation = d.bump();
        d.keys.insert(row.id.clone(), (row.clone(), generation));
        Ok(())
    }
    async fn find_key(&self, id: &str) -> StoreResult<Option<KeyRow>> {
        self.enter("find_key").await?;
        Ok(self.data().keys.get(id).map(|(row, _)| row.clone()))
    }
    async fn list_keys(&self) -> StoreResult<Vec<KeyRow>> {
        self.enter("list_keys").await?;
        Ok(keys_in_order(self.data().keys.values().map(|(row, _)| row)))
    }
    async fn delete_key(&self, id: &str) -> StoreResult<bool> {
        self.enter("delete_key").await?;
        let mut d = self.data();
        if d.keys.remove(id).is_none() {
            return Ok(false);
        }
        let generation = d.bump();
        d.deletions.insert(("key", id.to_owned()), generation);
        Ok(true)
    }
    async fn touch_key(&self, id: &str, at: i64) -> StoreResult<()> {
        self.enter("touch_key").await?;
        if let Some((row, _)) = self.data().keys.get_mut(id)
            && row.last_used_at.is_none_or(|last| last < at)
        {
            row.last_used_at = Some(at);
        }
        Ok(())
    }
    async fn put_connector(&self, row: &ConnectorRow) -> StoreResult<()> {
        self.enter("put_connector").await?;
        let mut d = self.data();
        d.connectors.insert(row.name.clone(), row.clone());
        d.bump();
        Ok(())
    }
    async fn list_connectors(&self) -> StoreResult<Vec<ConnectorRow>> {
        self.enter("list_connectors").await?;
        Ok(self.data().connectors.values().cloned().collect())
    }
    async fn insert_connector(&self, row: &ConnectorRow) -> StoreResult<bool> {
        self.enter("insert_connector").await?;
        let mut d = self.data();
        if d.connectors.contains_key(&row.name) {
            return Ok(false);
        }
        d.connectors.insert(row.name.clone(), row.clone());
        d.bump();
        Ok(true)
    }
    async fn delete_connector(&self, name: &str) -> StoreResult<bool> {
        self.enter("delete_connector").await?;
        let mut d = self.data();
        if d.connectors.remove(name).is_none() {
            return Ok(false);
        }
        d.bump();
        Ok(true)
    }
    async fn claim_idempotency(
        &self,
        row: &IdempotencyRow,
        expired_before: i64,
        abandoned_before: i64,
    ) -> StoreResult<Option<IdempotencyRow>> {
        self.enter("claim_idempotency").await?;
        let mut d = self.data();
        let id = (row.scope.clone(), row.key.clone());
        if d.idempotency
            .get(&id)
            .is_some_and(|r| r.created_at < expired_before || (r.status == 0 && r.created_at < abandoned_before))
        {
            d.idempotency.remove(&id);
        }
        if let Some(found) = d.idempotency.get(&id) {
            return Ok(Some(found.clone()));
        }
        d.idempotency.insert(id, IdempotencyRow { status: 0, answer: Vec::new(), ..row.clone() });
        Ok(None)
    }
    async fn finish_idempotency(&self, scope: &str, key: &str, status: i64, answer: &[u8]) -> StoreResult<()> {
        self.enter("finish_idempotency").await?;
        let mut d = self.data();
        if let Some(r) = d.idempotency.get_mut(&(scope.to_owned(), key.to_owned())).filter(|r| r.status == 0) {
            r.status = status;
            r.answer = answer.to_vec();
        }
        Ok(())
    }
    async fn sweep(&self, what: Sweep, before: i64, limit: u32) -> StoreResult<u64> {
        self.enter("sweep").await?;
        let mut d = self.data();
        let mut left = usize::try_from(limit).unwrap_or(usize::MAX);
        // Deletes up to `left` entries of `map` that `old` says are swept; answers how many.
        fn take<K: Ord + Clone, V>(map: &mut BTreeMap<K, V>, left: &mut usize, old: impl Fn(&V) -> bool) -> u64 {
            let gone: Vec<K> = map.iter().filter(|(_, v)| old(v)).map(|(k, _)| k.clone()).take(*left).collect();
            for k in &gone {
                map.remove(k);
            }
            *left -= gone.len();
            u64::try_from(gone.len()).unwrap_or(u64::MAX)
        }
        Ok(match what {
            Sweep::Flows => take(&mut d.flows, &mut left, |f| f.expires_at < before),
            Sweep::LoginCodes => take(&mut d.login_codes, &mut left, |(c, _)| c.expires_at < before),
            Sweep::AuthGrants => take(&mut d.auth_grants, &mut left, |g| g.expires_at < before),
            Sweep::RefreshTokens => {
                take(&mut d.refresh, &mut left, |r| r.expires_at < before || r.revoked_at.is_some_and(|at| at < before))
            }
            Sweep::OAuthClients => take(&mut d.oauth_clients, &mut left, |c| c.kept_until < before),
            Sweep::IdempotencyKeys => take(&mut d.idempotency, &mut left, |r| r.created_at < before),
            Sweep::Events => {
                let n = d.events.iter().filter(|e| e.at < before).count().min(left);
                let mut seen = 0;
                d.events.retain(|e| {
                    let gone = e.at < before && seen < n;
                    seen += usize::from(gone);
                    !gone
                });
                u64::try_from(n).unwrap_or(u64::MAX)
            }
        })
    }
    fn change_feed(&self) -> Option<crate::store::ChangeFeed> {
        lock(&self.inner.feed).take()
    }
    async fn release_idempotency(&self, scope: &str, key: &str) -> StoreResult<()> {
        self.enter("release_idempotency").await?;
        let mut d = self.data();
        let id = (scope.to_owned(), key.to_owned());
        if d.idempotency.get(&id).is_some_and(|r| r.status == 0) {
            d.idempotency.remove(&id);
        }
        Ok(())
    }
}

/// Keys as the SQL stores list them: by creation time, then id.
fn keys_in_order<'a>(rows: impl Iterator<Item = &'a KeyRow>) -> Vec<KeyRow> {
    let mut rows: Vec<KeyRow> = rows.cloned().collect();
    rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    rows
}

#[cfg(test)]
mod tests {
    use super::MemoryStore;
    use crate::store::{Store, StoreError};

    #[tokio::test]
    async fn faults_meet_the_operations_they_name_as_many_times_as_asked() {
        let store = MemoryStore::new();
        store.fail(Some("generation"), 2);
        assert!(store.ping().await.is_ok(), "another operation");
        for _ in 0..2 {
            let e = store.generation().await.unwrap_err();
            assert!(matches!(e, StoreError::Unavailable { op: "generation", .. }), "{e}");
        }
        assert_eq!(store.generation().await.unwrap(), 0);
        store.fail(None, u32::MAX);
        assert!(store.ping().await.is_err());
        store.heal();
        assert!(store.ping().await.is_ok());
        assert_eq!((store.calls("generation"), store.calls("ping")), (3, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_operation_never_answers() {
        let store = MemoryStore::new();
        store.hang(Some("ping"), 1);
        let waited = tokio::time::timeout(std::time::Duration::from_secs(60), store.ping()).await;
        assert!(waited.is_err());
        assert!(store.ping().await.is_ok(), "only once");
    }
}
