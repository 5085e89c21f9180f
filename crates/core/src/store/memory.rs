//! The whole [`Store`] in memory, for tests: the same semantics as the SQL stores (the
//! generation and its deletions, leases with fencing epochs, token versions, flows and
//! refresh tokens taken once), checked by latchkey-store's conformance suite, which runs
//! against it too. Clones share the data (a second instance on the same database).
//!
//! A fault switch makes chosen operations fail with [`StoreError::Unavailable`] or never
//! answer ([`MemoryStore::fail`], [`MemoryStore::hang`]), and [`MemoryStore::calls`] counts
//! the operations made.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::{
    ConnectionFilter, ConnectionRow, ConnectionStore, ConnectorRow, EventFilter, EventRow, FlowRow, FlowTake,
    IdentityStore, KeyRow, LoginCodeRow, RefreshRow, RefreshTake, SealedPlace, SealedStore, SecretRow, SigningKeyRow,
    Store, StoreChanges, StoreError, StoreResult, TokenKey, TokenRow, TokenStore, TokenWrite, UserRow,
};
use crate::Env;
use crate::token::TokenState;

/// Rows in the SQL stores' order: text columns compared as text (`dev` before `live`).
type TokenId = (String, &'static str, String);

fn token_id(key: &TokenKey) -> TokenId {
    (key.connector.clone(), key.env.as_str(), key.connection.clone())
}

#[derive(Default)]
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

#[derive(Default)]
struct Inner {
    data: Mutex<Data>,
    faults: Mutex<Vec<Fault>>,
    calls: Mutex<HashMap<&'static str, u64>>,
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

    /// How many times `op` was called (including calls a fault met).
    pub fn calls(&self, op: &str) -> u64 {
        lock(&self.inner.calls).get(op).copied().unwrap_or(0)
    }

    /// Every operation starts here: counted, then met by the first fault that matches.
    async fn enter(&self, op: &'static str) -> StoreResult<()> {
        *lock(&self.inner.calls).entry(op).or_default() += 1;
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
    async fn delete_connector(&self, name: &str) -> StoreResult<bool> {
        self.enter("delete_connector").await?;
        let mut d = self.data();
        if d.connectors.remove(name).is_none() {
            return Ok(false);
        }
        d.bump();
        Ok(true)
    }
}

/// Keys as the SQL stores list them: by creation time, then id.
fn keys_in_order<'a>(rows: impl Iterator<Item = &'a KeyRow>) -> Vec<KeyRow> {
    let mut rows: Vec<KeyRow> = rows.cloned().collect();
    rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    rows
}

/// Applies a token write: `sealed`/`expires_at` only when set, `last_refresh_at` kept when
/// unset, the version bumped.
fn apply(row: &mut TokenRow, w: &TokenWrite, now: i64) {
    if let Some(sealed) = &w.sealed {
        row.sealed = sealed.clone();
    }
    if let Some(expires_at) = w.expires_at {
        row.expires_at = expires_at;
    }
    row.state = w.state;
    row.last_error = w.last_error.clone();
    row.last_refresh_at = w.last_refresh_at.or(row.last_refresh_at);
    row.version += 1;
    row.updated_at = now;
}

#[async_trait::async_trait]
impl TokenStore for MemoryStore {
    async fn get_token(&self, key: &TokenKey) -> StoreResult<Option<TokenRow>> {
        self.enter("get_token").await?;
        Ok(self.data().tokens.get(&token_id(key)).cloned())
    }
    async fn list_tokens(&self) -> StoreResult<Vec<TokenRow>> {
        self.enter("list_tokens").await?;
        Ok(self.data().tokens.values().cloned().collect())
    }
    async fn take_lease(&self, key: &TokenKey, _owner: &str, now: i64, until: i64) -> StoreResult<Option<TokenRow>> {
        self.enter("take_lease").await?;
        let mut d = self.data();
        let row = d.tokens.entry(token_id(key)).or_insert_with(|| TokenRow {
            key: key.clone(),
            sealed: None,
            expires_at: None,
            state: TokenState::Empty,
            last_error: None,
            last_refresh_at: None,
            last_used_at: None,
            version: 0,
            lease_until: 0,
            epoch: 0,
            updated_at: now,
        });
        if row.lease_until > now {
            return Ok(None);
        }
        row.lease_until = until;
        row.epoch += 1;
        Ok(Some(row.clone()))
    }
    async fn commit_token(&self, key: &TokenKey, epoch: i64, write: &TokenWrite, now: i64) -> StoreResult<bool> {
        self.enter("commit_token").await?;
        let mut d = self.data();
        match d.tokens.get_mut(&token_id(key)).filter(|row| row.epoch == epoch) {
            Some(row) => {
                apply(row, write, now);
                row.lease_until = 0;
                Ok(true)
            }
            None => Ok(false),
        }
    }
    async fn commit_token_if_version(
        &self,
        key: &TokenKey,
        version: i64,
        write: &TokenWrite,
        now: i64,
    ) -> StoreResult<bool> {
        self.enter("commit_token_if_version").await?;
        let mut d = self.data();
        match d.tokens.get_mut(&token_id(key)).filter(|row| row.version == version) {
            Some(row) => {
                apply(row, write, now);
                Ok(true)
            }
            None => Ok(false),
        }
    }
    async fn touch_token(&self, key: &TokenKey, at: i64) -> StoreResult<()> {
        self.enter("touch_token").await?;
        if let Some(row) = self.data().tokens.get_mut(&token_id(key))
            && row.last_used_at.is_none_or(|last| last < at)
        {
            row.last_used_at = Some(at);
        }
        Ok(())
    }
    async fn delete_token(&self, key: &TokenKey) -> StoreResult<bool> {
        self.enter("delete_token").await?;
        Ok(self.data().tokens.remove(&token_id(key)).is_some())
    }
    async fn insert_event(&self, event: &EventRow) -> StoreResult<()> {
        const OP: &str = "insert_event";
        self.enter(OP).await?;
        let mut d = self.data();
        if d.events.iter().any(|e| e.id == event.id) {
            return Err(duplicate(OP, "the event"));
        }
        d.events.push(event.clone());
        Ok(())
    }
    async fn list_events(&self, f: &EventFilter) -> StoreResult<Vec<EventRow>> {
        self.enter("list_events").await?;
        let d = self.data();
        let mut rows: Vec<EventRow> = d
            .events
            .iter()
            .filter(|e| f.connector.as_deref().is_none_or(|c| e.connector == c))
            .filter(|e| f.kind.as_deref().is_none_or(|k| e.kind.as_str() == k))
            .filter(|e| f.since.is_none_or(|s| e.at >= s) && f.until.is_none_or(|u| e.at < u))
            .cloned()
            .collect();
        rows.sort_by(|a, b| (b.at, &b.id).cmp(&(a.at, &a.id)));
        rows.truncate(usize::try_from(if f.limit > 0 { f.limit } else { 100 }).unwrap_or(usize::MAX));
        Ok(rows)
    }
}

#[async_trait::async_trait]
impl ConnectionStore for MemoryStore {
    async fn upsert_connection(&self, row: &ConnectionRow) -> StoreResult<ConnectionRow> {
        const OP: &str = "upsert_connection";
        self.enter(OP).await?;
        let mut d = self.data();
        let existing = d
            .connections
            .values_mut()
            .find(|c| c.connector == row.connector && c.env == row.env && c.owner == row.owner);
        if let Some(c) = existing {
            c.provider_user_id = row.provider_user_id.clone();
            c.email = row.email.clone();
            c.scopes = row.scopes.clone();
            c.metadata = row.metadata.clone();
            c.return_to = row.return_to.clone().or(c.return_to.take());
            c.updated_at = row.updated_at;
            return Ok(c.clone());
        }
        if d.connections.contains_key(&row.id) {
            return Err(duplicate(OP, "a connection with this id"));
        }
        d.connections.insert(row.id.clone(), row.clone());
        Ok(row.clone())
    }
    async fn find_connection(&self, connector: &str, env: Env, owner: &str) -> StoreResult<Option<ConnectionRow>> {
        self.enter("find_connection").await?;
        let d = self.data();
        Ok(d.connections.values().find(|c| c.connector == connector && c.env == env && c.owner == owner).cloned())
    }
    async fn get_connection(&self, id: &str) -> StoreResult<Option<ConnectionRow>> {
        self.enter("get_connection").await?;
        Ok(self.data().connections.get(id).cloned())
    }
    async fn list_connections(&self, f: &ConnectionFilter) -> StoreResult<Vec<ConnectionRow>> {
        self.enter("list_connections").await?;
        let d = self.data();
        let mut rows: Vec<ConnectionRow> = d
            .connections
            .values()
            .filter(|c| f.connector.as_deref().is_none_or(|x| c.connector == x))
            .filter(|c| f.env.is_none_or(|x| c.env == x) && f.owner.as_deref().is_none_or(|x| c.owner == x))
            .cloned()
            .collect();
        rows.sort_by(|a, b| (&a.connector, a.env.as_str(), &a.owner).cmp(&(&b.connector, b.env.as_str(), &b.owner)));
        Ok(rows)
    }
    async fn delete_connection(&self, id: &str) -> StoreResult<bool> {
        self.enter("delete_connection").await?;
        let mut d = self.data();
        if d.connections.remove(id).is_none() {
            return Ok(false);
        }
        d.tokens.retain(|(_, _, connection), _| connection.is_empty() || connection != id);
        d.bump();
        Ok(true)
    }
    async fn insert_flow(&self, row: &FlowRow) -> StoreResult<()> {
        const OP: &str = "insert_flow";
        self.enter(OP).await?;
        let mut d = self.data();
        if d.flows.contains_key(&row.handle_hash) {
            return Err(duplicate(OP, "the flow"));
        }
        d.flows.insert(row.handle_hash.clone(), FlowRow { used_at: None, ..row.clone() });
        Ok(())
    }
    async fn take_flow(&self, handle_hash: &[u8], now: i64) -> StoreResult<FlowTake> {
        self.enter("take_flow").await?;
        Ok(match self.data().flows.get_mut(handle_hash) {
            Some(row) if row.used_at.is_none() => {
                row.used_at = Some(now);
                FlowTake::Fresh(row.clone())
            }
            Some(row) => FlowTake::Used(row.clone()),
            None => FlowTake::Unknown,
        })
    }
    async fn get_flow(&self, handle_hash: &[u8]) -> StoreResult<Option<FlowRow>> {
        self.enter("get_flow").await?;
        Ok(self.data().flows.get(handle_hash).cloned())
    }
    async fn purge_flows(&self, before: i64) -> StoreResult<u64> {
        self.enter("purge_flows").await?;
        let mut d = self.data();
        let count = d.flows.len();
        d.flows.retain(|_, f| f.expires_at >= before);
        Ok(u64::try_from(count - d.flows.len()).unwrap_or(0))
    }
}

#[async_trait::async_trait]
impl IdentityStore for MemoryStore {
    async fn upsert_user(&self, row: &UserRow) -> StoreResult<UserRow> {
        self.enter("upsert_user").await?;
        let mut d = self.data();
        let user = d.users.entry((row.env.as_str(), row.id.clone())).or_insert_with(|| row.clone());
        user.email = row.email.clone().or(user.email.take());
        user.attributes = row.attributes.clone();
        user.provider = row.provider.clone().or(user.provider.take());
        user.provider_user_id = row.provider_user_id.clone().or(user.provider_user_id.take());
        user.updated_at = row.updated_at;
        Ok(user.clone())
    }
    async fn get_user(&self, env: Env, id: &str) -> StoreResult<Option<UserRow>> {
        self.enter("get_user").await?;
        Ok(self.data().users.get(&(env.as_str(), id.to_owned())).cloned())
    }
    async fn find_user_by_provider(
        &self,
        env: Env,
        provider: &str,
        provider_user_id: &str,
    ) -> StoreResult<Option<UserRow>> {
        self.enter("find_user_by_provider").await?;
        let d = self.data();
        let found = d.users.values().find(|u| {
            u.env == env
                && u.provider.as_deref() == Some(provider)
                && u.provider_user_id.as_deref() == Some(provider_user_id)
        });
        Ok(found.cloned())
    }
    async fn delete_user(&self, env: Env, id: &str) -> StoreResult<bool> {
        self.enter("delete_user").await?;
        Ok(self.data().users.remove(&(env.as_str(), id.to_owned())).is_some())
    }
    async fn insert_signing_key(&self, row: &SigningKeyRow) -> StoreResult<()> {
        const OP: &str = "insert_signing_key";
        self.enter(OP).await?;
        let mut d = self.data();
        if d.signing_keys.contains_key(&row.kid) {
            return Err(duplicate(OP, "the signing key"));
        }
        d.signing_keys.insert(row.kid.clone(), row.clone());
        d.bump();
        Ok(())
    }
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        self.enter("list_signing_keys").await?;
        let mut rows: Vec<SigningKeyRow> = self.data().signing_keys.values().cloned().collect();
        rows.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        Ok(rows)
    }
    async fn retire_signing_key(&self, kid: &str, at: i64) -> StoreResult<bool> {
        self.enter("retire_signing_key").await?;
        let mut d = self.data();
        match d.signing_keys.get_mut(kid).filter(|k| k.retired_at.is_none()) {
            Some(key) => key.retired_at = Some(at),
            None => return Ok(false),
        }
        d.bump();
        Ok(true)
    }
    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
        self.enter("delete_signing_key").await?;
        let mut d = self.data();
        if d.signing_keys.remove(kid).is_none() {
            return Ok(false);
        }
        d.bump();
        Ok(true)
    }
    async fn insert_refresh(&self, row: &RefreshRow) -> StoreResult<()> {
        const OP: &str = "insert_refresh";
        self.enter(OP).await?;
        let mut d = self.data();
        if d.refresh.contains_key(&row.hash) {
            return Err(duplicate(OP, "the refresh token"));
        }
        let fresh = RefreshRow { used_at: None, revoked_at: None, successor: None, ..row.clone() };
        d.refresh.insert(row.hash.clone(), fresh);
        Ok(())
    }
    async fn rotate_refresh(
        &self,
        hash: &[u8],
        now: i64,
        successor: &RefreshRow,
        sealed_pair: &[u8],
    ) -> StoreResult<RefreshTake> {
        const OP: &str = "rotate_refresh";
        self.enter(OP).await?;
        let mut d = self.data();
        let Some(row) = d.refresh.get(hash).cloned() else { return Ok(RefreshTake::Unknown) };
        if row.used_at.is_some() || row.revoked_at.is_some() {
            return Ok(RefreshTake::Spent(row));
        }
        if d.refresh.contains_key(&successor.hash) {
            return Err(duplicate(OP, "the successor"));
        }
        let taken = RefreshRow { used_at: Some(now), successor: Some(sealed_pair.to_vec()), ..row };
        d.refresh.insert(hash.to_vec(), taken.clone());
        let next = RefreshRow { used_at: None, revoked_at: None, successor: None, ..successor.clone() };
        d.refresh.insert(successor.hash.clone(), next);
        Ok(RefreshTake::Fresh(taken))
    }
    async fn get_refresh(&self, hash: &[u8]) -> StoreResult<Option<RefreshRow>> {
        self.enter("get_refresh").await?;
        Ok(self.data().refresh.get(hash).cloned())
    }
    async fn revoke_family(&self, family: &str, now: i64) -> StoreResult<u64> {
        self.enter("revoke_family").await?;
        Ok(self.revoke(|r| r.family == family, now))
    }
    async fn revoked_families(&self, since: i64) -> StoreResult<Vec<String>> {
        self.enter("revoked_families").await?;
        let d = self.data();
        let mut families: Vec<String> = d
            .refresh
            .values()
            .filter(|r| r.revoked_at.is_some_and(|at| at >= since))
            .map(|r| r.family.clone())
            .collect();
        families.sort();
        families.dedup();
        Ok(families)
    }
    async fn revoke_user_families(&self, env: Env, user_id: &str, now: i64) -> StoreResult<u64> {
        self.enter("revoke_user_families").await?;
        Ok(self.revoke(|r| r.env == env && r.user_id == user_id, now))
    }
    async fn insert_login_code(&self, row: &LoginCodeRow) -> StoreResult<()> {
        const OP: &str = "insert_login_code";
        self.enter(OP).await?;
        let mut d = self.data();
        if d.login_codes.contains_key(&row.hash) {
            return Err(duplicate(OP, "the sign-in code"));
        }
        d.login_codes.insert(row.hash.clone(), (row.clone(), None));
        Ok(())
    }
    async fn take_login_code(&self, hash: &[u8], env: Env, now: i64) -> StoreResult<Option<LoginCodeRow>> {
        self.enter("take_login_code").await?;
        let mut d = self.data();
        let Some((row, used_at)) = d.login_codes.get_mut(hash) else { return Ok(None) };
        if used_at.is_some() || row.env != env || row.expires_at < now {
            return Ok(None);
        }
        *used_at = Some(now);
        Ok(Some(row.clone()))
    }
}

impl MemoryStore {
    /// Revokes the unrevoked refresh tokens `which` picks, with one generation bump when any
    /// changed; returns how many.
    fn revoke(&self, which: impl Fn(&RefreshRow) -> bool, now: i64) -> u64 {
        let mut d = self.data();
        let mut changed = 0;
        for row in d.refresh.values_mut().filter(|r| r.revoked_at.is_none() && which(r)) {
            row.revoked_at = Some(now);
            row.successor = None;
            changed += 1;
        }
        if changed > 0 {
            d.bump();
        }
        changed
    }
}

/// The meta values that are sealed.
const SEALED_META: [&str; 2] = ["vault.key_check", "audit.salt"];

#[async_trait::async_trait]
impl SealedStore for MemoryStore {
    async fn sealed_values(&self) -> StoreResult<Vec<(SealedPlace, Vec<u8>)>> {
        self.enter("sealed_values").await?;
        let d = self.data();
        let mut out = Vec::new();
        for (key, value) in d.meta.iter().filter(|(k, _)| SEALED_META.contains(&k.as_str())) {
            out.push((SealedPlace::Meta(key.clone()), value.clone()));
        }
        for (row, _) in d.secrets.values() {
            out.push((SealedPlace::Secret(row.name.clone(), row.env), row.sealed.clone()));
        }
        for row in d.tokens.values() {
            if let Some(sealed) = &row.sealed {
                out.push((SealedPlace::Token(row.key.clone()), sealed.clone()));
            }
        }
        for row in d.flows.values() {
            if let Some(sealed) = &row.sealed {
                let place = SealedPlace::Flow { hash: row.handle_hash.clone(), kind: row.kind.clone(), env: row.env };
                out.push((place, sealed.clone()));
            }
        }
        for row in d.signing_keys.values() {
            out.push((SealedPlace::SigningKey(row.kid.clone()), row.sealed.clone()));
        }
        for row in d.refresh.values() {
            if let Some(sealed) = &row.successor {
                out.push((SealedPlace::RefreshSuccessor { hash: row.hash.clone(), env: row.env }, sealed.clone()));
            }
        }
        Ok(out)
    }
    async fn replace_sealed(&self, place: &SealedPlace, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        self.enter("replace_sealed").await?;
        let mut d = self.data();
        let slot: Option<&mut Vec<u8>> = match place {
            SealedPlace::Meta(key) => d.meta.get_mut(key),
            SealedPlace::Secret(name, env) => {
                d.secrets.get_mut(&(name.clone(), env.as_str())).map(|(r, _)| &mut r.sealed)
            }
            SealedPlace::Token(key) => d.tokens.get_mut(&token_id(key)).and_then(|r| r.sealed.as_mut()),
            SealedPlace::Flow { hash, .. } => d.flows.get_mut(hash).and_then(|r| r.sealed.as_mut()),
            SealedPlace::SigningKey(kid) => d.signing_keys.get_mut(kid).map(|r| &mut r.sealed),
            SealedPlace::RefreshSuccessor { hash, .. } => d.refresh.get_mut(hash).and_then(|r| r.successor.as_mut()),
        };
        match slot {
            Some(value) if value.as_slice() == old => {
                *value = new.to_vec();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
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
