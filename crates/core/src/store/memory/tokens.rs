//! Tokens, the audit log, connections and browser flows, in memory.

use super::{MemoryStore, duplicate, token_id};
use std::collections::BTreeMap;

use crate::Env;
use crate::store::{
    ConnectionCount, ConnectionFilter, ConnectionRow, ConnectionStore, EventFilter, EventRow, FlowRow, FlowTake,
    StoreResult, TokenKey, TokenRow, TokenStore, TokenWrite,
};
use crate::token::TokenState;

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
    async fn extend_lease(&self, key: &TokenKey, epoch: i64, now: i64, until: i64) -> StoreResult<bool> {
        self.enter("extend_lease").await?;
        let mut d = self.data();
        match d.tokens.get_mut(&token_id(key)).filter(|row| row.epoch == epoch && row.lease_until > now) {
            Some(row) => {
                row.lease_until = until;
                Ok(true)
            }
            None => Ok(false),
        }
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
        if let Some(after) = &f.starting_after {
            // As the SQL stores: the rows after that event in this order; none when it is unknown.
            let cursor = d.events.iter().find(|e| &e.id == after).map(|e| (e.at, e.id.clone()));
            rows.retain(|e| cursor.as_ref().is_some_and(|(at, id)| (e.at, &e.id) < (*at, id)));
        }
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
    async fn put_connection_values(
        &self,
        row: &ConnectionRow,
        sealed: &[u8],
        now: i64,
    ) -> StoreResult<Option<ConnectionRow>> {
        const OP: &str = "put_connection_values";
        self.enter(OP).await?;
        let mut d = self.data();
        let found = d
            .connections
            .values()
            .find(|c| c.connector == row.connector && c.env == row.env && c.owner == row.owner)
            .cloned();
        let stored = match found {
            Some(c) if c.id != row.id => return Ok(None),
            Some(mut c) => {
                c.provider_user_id = row.provider_user_id.clone();
                c.email = row.email.clone();
                c.scopes = row.scopes.clone();
                c.metadata = row.metadata.clone();
                c.return_to = row.return_to.clone().or(c.return_to.take());
                c.updated_at = row.updated_at;
                c
            }
            None if d.connections.contains_key(&row.id) => return Err(duplicate(OP, "a connection with this id")),
            None => row.clone(),
        };
        d.connections.insert(stored.id.clone(), stored.clone());
        let key = TokenKey { connector: row.connector.clone(), env: row.env, connection: row.id.clone() };
        let token = d.tokens.entry(token_id(&key)).or_insert_with(|| TokenRow {
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
        let write = TokenWrite {
            sealed: Some(Some(sealed.to_vec())),
            expires_at: Some(None),
            state: TokenState::Ok,
            last_error: None,
            last_refresh_at: Some(now),
        };
        apply(token, &write, now);
        token.lease_until = 0;
        d.bump();
        Ok(Some(stored))
    }
    async fn count_connections(&self) -> StoreResult<Vec<ConnectionCount>> {
        self.enter("count_connections").await?;
        let d = self.data();
        // Keyed as the SQL stores sort: by text.
        let mut counts: BTreeMap<(String, &'static str, &'static str), ConnectionCount> = BTreeMap::new();
        for c in d.connections.values() {
            let token = d.tokens.get(&(c.connector.clone(), c.env.as_str(), c.id.clone()));
            let state = token.map_or(TokenState::Empty, |t| t.state);
            counts
                .entry((c.connector.clone(), c.env.as_str(), state.as_str()))
                .or_insert_with(|| ConnectionCount { connector: c.connector.clone(), env: c.env, state, count: 0 })
                .count += 1;
        }
        Ok(counts.into_values().collect())
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
}
