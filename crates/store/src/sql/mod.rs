//! The one implementation of the store traits, over the SQL text both backends run.
//!
//! This directory is compiled twice, as `sqlite::sql` and `postgres::sql` (a `#[path]`
//! module in each), and takes from its parent `Db` (the sqlx database) and `ThisStore` (the
//! store, holding a `pool: sqlx::Pool<Db>`). Every type is therefore concrete: no
//! higher-ranked sqlx bounds, no macro, and rustfmt formats it.
//!
//! SQLite and PostgreSQL accept the same text here: `$N` placeholders (sqlx binds SQLite's
//! `$N` by number, not by position), `INSERT … ON CONFLICT`, and `excluded.` in upserts.
//! The schemas in `migrations/{sqlite,postgres}` differ only in type names and collation.
//!
//! One module per aggregate holds its SQL and its operations, free functions over the pool
//! named after the trait method they are (its `OP` in errors); rows are read through the
//! structs of [`crate::rows`]. The trait impls below only say which operation each method is.
//!
//! The parent also gives the statements whose text differs, `BUMP_GENERATION` (PostgreSQL's
//! also notifies listeners: SQLite has none) and `HAS_MIGRATIONS` (each catalog's own), the
//! sweep's `SKIP_LOCKED` (PostgreSQL's row-locking clause; nothing on SQLite), and
//! `change_feed`.
//!
//! Every write to secrets, api_keys (insert, delete) and connectors runs in one transaction
//! with the generation bump ([`generation`]), and bumps only when it changed a row. Each such
//! transaction starts with its write, so on SQLite it takes the write lock first (waiting out
//! the busy timeout) and never has to upgrade a read snapshot. A transaction dropped before
//! commit rolls back.

mod connections;
mod connectors;
mod events;
mod generation;
mod idempotency;
mod identity;
mod keys;
pub(super) mod schema;
mod sealed;
mod secrets;
mod sweep;
mod tokens;

use latchkey_core::Env;
use latchkey_core::store::{
    AuthGrantRow, ChangeFeed, ConnectionCount, ConnectionFilter, ConnectionRow, ConnectionStore, ConnectorRow,
    EventFilter, EventRow, FlowRow, FlowTake, GrantTake, IdempotencyRow, IdentityStore, KeyRow, LoginCodeRow,
    OAuthClientRow, RefreshRow, RefreshTake, SealedPlace, SealedStore, SecretRow, SigningKeyRow, Store, StoreChanges,
    StoreResult, Sweep, TokenKey, TokenRow, TokenStore, TokenWrite, UserRow,
};

use super::{BUMP_GENERATION, Db, HAS_MIGRATIONS, SKIP_LOCKED, ThisStore};
use crate::fail;

type Pool = sqlx::Pool<Db>;
type Tx<'c> = sqlx::Transaction<'c, Db>;

const PING: &str = "SELECT 1";

#[async_trait::async_trait]
impl Store for ThisStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query(PING).execute(&self.pool).await.map_err(fail("ping"))?;
        Ok(())
    }
    async fn generation(&self) -> StoreResult<i64> {
        generation::current(&self.pool).await
    }
    async fn get_meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        sealed::get_meta(&self.pool, key).await
    }
    async fn insert_meta(&self, key: &str, value: &[u8]) -> StoreResult<bool> {
        sealed::insert_meta(&self.pool, key, value).await
    }
    async fn put_secret(&self, row: &SecretRow) -> StoreResult<()> {
        secrets::put(&self.pool, row).await
    }
    async fn delete_secret(&self, name: &str) -> StoreResult<bool> {
        secrets::delete(&self.pool, name).await
    }
    async fn list_secrets(&self) -> StoreResult<Vec<SecretRow>> {
        secrets::list(&self.pool).await
    }
    async fn changes_since(&self, since: i64) -> StoreResult<StoreChanges> {
        generation::changes_since(&self.pool, since).await
    }
    async fn insert_key(&self, row: &KeyRow) -> StoreResult<()> {
        keys::insert(&self.pool, row).await
    }
    async fn find_key(&self, id: &str) -> StoreResult<Option<KeyRow>> {
        keys::find(&self.pool, id).await
    }
    async fn list_keys(&self) -> StoreResult<Vec<KeyRow>> {
        keys::list(&self.pool).await
    }
    async fn delete_key(&self, id: &str) -> StoreResult<bool> {
        keys::delete(&self.pool, id).await
    }
    async fn touch_key(&self, id: &str, at: i64) -> StoreResult<()> {
        keys::touch(&self.pool, id, at).await
    }
    async fn put_connector(&self, row: &ConnectorRow) -> StoreResult<()> {
        connectors::put(&self.pool, row).await
    }
    async fn list_connectors(&self) -> StoreResult<Vec<ConnectorRow>> {
        connectors::list(&self.pool).await
    }
    async fn insert_connector(&self, row: &ConnectorRow) -> StoreResult<bool> {
        connectors::insert(&self.pool, row).await
    }
    async fn delete_connector(&self, name: &str) -> StoreResult<bool> {
        connectors::delete(&self.pool, name).await
    }
    async fn claim_idempotency(
        &self,
        row: &IdempotencyRow,
        expired_before: i64,
        abandoned_before: i64,
    ) -> StoreResult<Option<IdempotencyRow>> {
        idempotency::claim(&self.pool, row, expired_before, abandoned_before).await
    }
    async fn finish_idempotency(&self, scope: &str, key: &str, status: i64, answer: &[u8]) -> StoreResult<()> {
        idempotency::finish(&self.pool, scope, key, status, answer).await
    }
    async fn release_idempotency(&self, scope: &str, key: &str) -> StoreResult<()> {
        idempotency::release(&self.pool, scope, key).await
    }
    async fn sweep(&self, what: Sweep, before: i64, limit: u32) -> StoreResult<u64> {
        sweep::sweep(&self.pool, what, before, limit).await
    }
    fn change_feed(&self) -> Option<ChangeFeed> {
        ThisStore::change_feed(self)
    }
}

#[async_trait::async_trait]
impl TokenStore for ThisStore {
    async fn get_token(&self, key: &TokenKey) -> StoreResult<Option<TokenRow>> {
        tokens::get(&self.pool, key).await
    }
    async fn list_tokens(&self) -> StoreResult<Vec<TokenRow>> {
        tokens::list(&self.pool).await
    }
    async fn take_lease(&self, key: &TokenKey, owner: &str, now: i64, until: i64) -> StoreResult<Option<TokenRow>> {
        tokens::take_lease(&self.pool, key, owner, now, until).await
    }
    async fn extend_lease(&self, key: &TokenKey, epoch: i64, now: i64, until: i64) -> StoreResult<bool> {
        tokens::extend_lease(&self.pool, key, epoch, now, until).await
    }
    async fn commit_token(&self, key: &TokenKey, epoch: i64, write: &TokenWrite, now: i64) -> StoreResult<bool> {
        tokens::commit(&self.pool, key, epoch, write, now).await
    }
    async fn commit_token_if_version(
        &self,
        key: &TokenKey,
        version: i64,
        write: &TokenWrite,
        now: i64,
    ) -> StoreResult<bool> {
        tokens::commit_if_version(&self.pool, key, version, write, now).await
    }
    async fn touch_token(&self, key: &TokenKey, at: i64) -> StoreResult<()> {
        tokens::touch(&self.pool, key, at).await
    }
    async fn delete_token(&self, key: &TokenKey) -> StoreResult<bool> {
        tokens::delete(&self.pool, key).await
    }
    async fn insert_event(&self, event: &EventRow) -> StoreResult<()> {
        events::insert(&self.pool, event).await
    }
    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<EventRow>> {
        events::list(&self.pool, filter).await
    }
}

#[async_trait::async_trait]
impl ConnectionStore for ThisStore {
    async fn upsert_connection(&self, row: &ConnectionRow) -> StoreResult<ConnectionRow> {
        connections::upsert(&self.pool, row).await
    }
    async fn find_connection(&self, connector: &str, env: Env, owner: &str) -> StoreResult<Option<ConnectionRow>> {
        connections::find(&self.pool, connector, env, owner).await
    }
    async fn get_connection(&self, id: &str) -> StoreResult<Option<ConnectionRow>> {
        connections::get(&self.pool, id).await
    }
    async fn list_connections(&self, filter: &ConnectionFilter) -> StoreResult<Vec<ConnectionRow>> {
        connections::list(&self.pool, filter).await
    }
    async fn delete_connection(&self, id: &str) -> StoreResult<bool> {
        connections::delete(&self.pool, id).await
    }
    async fn put_connection_values(
        &self,
        row: &ConnectionRow,
        sealed: &[u8],
        now: i64,
    ) -> StoreResult<Option<ConnectionRow>> {
        connections::put_values(&self.pool, row, sealed, now).await
    }
    async fn count_connections(&self) -> StoreResult<Vec<ConnectionCount>> {
        connections::count(&self.pool).await
    }
    async fn insert_flow(&self, row: &FlowRow) -> StoreResult<()> {
        connections::insert_flow(&self.pool, row).await
    }
    async fn take_flow(&self, handle_hash: &[u8], now: i64) -> StoreResult<FlowTake> {
        connections::take_flow(&self.pool, handle_hash, now).await
    }
    async fn get_flow(&self, handle_hash: &[u8]) -> StoreResult<Option<FlowRow>> {
        connections::get_flow(&self.pool, handle_hash).await
    }
}

#[async_trait::async_trait]
impl IdentityStore for ThisStore {
    async fn upsert_user(&self, row: &UserRow) -> StoreResult<UserRow> {
        identity::upsert_user(&self.pool, row).await
    }
    async fn get_user(&self, env: Env, id: &str) -> StoreResult<Option<UserRow>> {
        identity::get_user(&self.pool, env, id).await
    }
    async fn find_user_by_provider(
        &self,
        env: Env,
        provider: &str,
        provider_user_id: &str,
    ) -> StoreResult<Option<UserRow>> {
        identity::find_user_by_provider(&self.pool, env, provider, provider_user_id).await
    }
    async fn delete_user(&self, env: Env, id: &str) -> StoreResult<bool> {
        identity::delete_user(&self.pool, env, id).await
    }
    async fn insert_signing_key(&self, row: &SigningKeyRow) -> StoreResult<()> {
        identity::insert_signing_key(&self.pool, row).await
    }
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        identity::list_signing_keys(&self.pool).await
    }
    async fn retire_signing_key(&self, kid: &str, at: i64) -> StoreResult<bool> {
        identity::retire_signing_key(&self.pool, kid, at).await
    }
    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
        identity::delete_signing_key(&self.pool, kid).await
    }
    async fn insert_refresh(&self, row: &RefreshRow) -> StoreResult<()> {
        identity::insert_refresh(&self.pool, row).await
    }
    async fn rotate_refresh(
        &self,
        hash: &[u8],
        now: i64,
        successor: &RefreshRow,
        sealed_pair: &[u8],
    ) -> StoreResult<RefreshTake> {
        identity::rotate_refresh(&self.pool, hash, now, successor, sealed_pair).await
    }
    async fn get_refresh(&self, hash: &[u8]) -> StoreResult<Option<RefreshRow>> {
        identity::get_refresh(&self.pool, hash).await
    }
    async fn revoke_family(&self, family: &str, now: i64) -> StoreResult<u64> {
        identity::revoke_family(&self.pool, family, now).await
    }
    async fn revoked_families(&self, since: i64) -> StoreResult<Vec<String>> {
        identity::revoked_families(&self.pool, since).await
    }
    async fn revoke_user_families(&self, env: Env, user_id: &str, now: i64) -> StoreResult<u64> {
        identity::revoke_user_families(&self.pool, env, user_id, now).await
    }
    async fn insert_login_code(&self, row: &LoginCodeRow) -> StoreResult<()> {
        identity::insert_login_code(&self.pool, row).await
    }
    async fn take_login_code(&self, hash: &[u8], env: Env, now: i64) -> StoreResult<Option<LoginCodeRow>> {
        identity::take_login_code(&self.pool, hash, env, now).await
    }
    async fn insert_oauth_client(&self, row: &OAuthClientRow) -> StoreResult<()> {
        identity::insert_oauth_client(&self.pool, row).await
    }
    async fn get_oauth_client(&self, id: &str) -> StoreResult<Option<OAuthClientRow>> {
        identity::get_oauth_client(&self.pool, id).await
    }
    async fn keep_oauth_client(&self, id: &str, now: i64, until: i64) -> StoreResult<bool> {
        identity::keep_oauth_client(&self.pool, id, now, until).await
    }
    async fn insert_auth_grant(&self, row: &AuthGrantRow) -> StoreResult<()> {
        identity::insert_auth_grant(&self.pool, row).await
    }
    async fn take_auth_grant(&self, hash: &[u8], kind: &str, now: i64) -> StoreResult<GrantTake> {
        identity::take_auth_grant(&self.pool, hash, kind, now).await
    }
}

#[async_trait::async_trait]
impl SealedStore for ThisStore {
    async fn sealed_values(&self) -> StoreResult<Vec<(SealedPlace, Vec<u8>)>> {
        sealed::values(&self.pool).await
    }
    async fn replace_sealed(&self, place: &SealedPlace, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        sealed::replace(&self.pool, place, old, new).await
    }
}
