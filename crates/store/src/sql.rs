//! The SQL both backends run, and the one `Store` implementation over it.
//!
//! SQLite and PostgreSQL accept the same text here: `$N` placeholders (sqlx binds SQLite's
//! `$N` by number, not by position), `INSERT … ON CONFLICT`, and `excluded.` in upserts.
//! The schemas in `migrations/{sqlite,postgres}` differ only in type names and collation.

pub(crate) const PING: &str = "SELECT 1";

pub(crate) const GENERATION: &str = "SELECT value FROM generation WHERE id = 1";
pub(crate) const BUMP_GENERATION: &str = "UPDATE generation SET value = value + 1 WHERE id = 1";
/// The first statement of a secret or app key write: the row is stamped with the generation
/// it bumped to. On PostgreSQL the generation row stays locked until the write commits, so
/// generations are handed out in commit order and a reader that sees generation `g` also
/// sees every row stamped `g` or less.
pub(crate) const BUMP_GENERATION_RETURNING: &str =
    "UPDATE generation SET value = value + 1 WHERE id = 1 RETURNING value";
pub(crate) const RECORD_DELETION: &str = "INSERT INTO deletions (kind, name, changed_gen) VALUES ($1, $2, $3) \
     ON CONFLICT (kind, name) DO UPDATE SET changed_gen = excluded.changed_gen";
pub(crate) const DELETIONS_SINCE: &str = "SELECT kind, name FROM deletions WHERE changed_gen > $1 ORDER BY kind, name";
pub(crate) const SECRETS_CHANGED_SINCE: &str =
    "SELECT name, env, sealed, updated_at FROM secrets WHERE changed_gen > $1 ORDER BY name, env";
pub(crate) const KEYS_CHANGED_SINCE: &str = "SELECT id, name, kind, hash, created_at, last_used_at FROM api_keys \
     WHERE changed_gen > $1 ORDER BY created_at, id";

pub(crate) const GET_META: &str = "SELECT value FROM meta WHERE key = $1";
pub(crate) const INSERT_META: &str = "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";

pub(crate) const PUT_SECRET: &str = "INSERT INTO secrets (name, env, sealed, updated_at, changed_gen) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (name, env) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at, \
     changed_gen = excluded.changed_gen";
pub(crate) const DELETE_SECRET: &str = "DELETE FROM secrets WHERE name = $1";
pub(crate) const LIST_SECRETS: &str = "SELECT name, env, sealed, updated_at FROM secrets ORDER BY name, env";

pub(crate) const INSERT_KEY: &str = "INSERT INTO api_keys (id, name, kind, hash, created_at, last_used_at, changed_gen) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING";
pub(crate) const FIND_KEY: &str = "SELECT id, name, kind, hash, created_at, last_used_at FROM api_keys WHERE id = $1";
pub(crate) const LIST_KEYS: &str =
    "SELECT id, name, kind, hash, created_at, last_used_at FROM api_keys ORDER BY created_at, id";
pub(crate) const DELETE_KEY: &str = "DELETE FROM api_keys WHERE id = $1";
/// Only ever moves `last_used_at` forward: instances that flush late cannot move it back.
pub(crate) const TOUCH_KEY: &str = "UPDATE api_keys SET last_used_at = $2 \
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";

pub(crate) const PUT_CONNECTOR: &str = "INSERT INTO connectors (name, definition, updated_at) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at";
pub(crate) const LIST_CONNECTORS: &str = "SELECT name, definition, updated_at FROM connectors ORDER BY name";
pub(crate) const DELETE_CONNECTOR: &str = "DELETE FROM connectors WHERE name = $1";

pub(crate) const GET_TOKEN: &str = "SELECT connector, env, connection, sealed, expires_at, state, last_error, \
     last_refresh_at, last_used_at, version, lease_until, epoch, updated_at \
     FROM tokens WHERE connector = $1 AND env = $2 AND connection = $3";
pub(crate) const LIST_TOKENS: &str = "SELECT connector, env, connection, sealed, expires_at, state, last_error, \
     last_refresh_at, last_used_at, version, lease_until, epoch, updated_at \
     FROM tokens ORDER BY connector, env, connection";
pub(crate) const ENSURE_TOKEN: &str = "INSERT INTO tokens (connector, env, connection, state, version, lease_until, \
     epoch, updated_at) VALUES ($1, $2, $3, 'empty', 0, 0, 0, $4) \
     ON CONFLICT (connector, env, connection) DO NOTHING";
/// The lease is free when it ran out (or was released, `lease_until = 0`).
pub(crate) const TAKE_LEASE: &str = "UPDATE tokens SET lease_owner = $4, lease_until = $5, epoch = epoch + 1 \
     WHERE connector = $1 AND env = $2 AND connection = $3 AND lease_until <= $6 \
     RETURNING connector, env, connection, sealed, expires_at, state, last_error, last_refresh_at, last_used_at, \
     version, lease_until, epoch, updated_at";
/// `$4` is the fencing epoch; `$5`/`$7` say whether to write sealed/expires_at at all.
pub(crate) const COMMIT_TOKEN: &str = "UPDATE tokens SET \
     sealed = CASE WHEN $5 = 1 THEN $6 ELSE sealed END, \
     expires_at = CASE WHEN $7 = 1 THEN $8 ELSE expires_at END, \
     state = $9, last_error = $10, last_refresh_at = COALESCE($11, last_refresh_at), \
     version = version + 1, lease_owner = NULL, lease_until = 0, updated_at = $12 \
     WHERE connector = $1 AND env = $2 AND connection = $3 AND epoch = $4";
pub(crate) const COMMIT_TOKEN_IF_VERSION: &str = "UPDATE tokens SET \
     sealed = CASE WHEN $5 = 1 THEN $6 ELSE sealed END, \
     expires_at = CASE WHEN $7 = 1 THEN $8 ELSE expires_at END, \
     state = $9, last_error = $10, last_refresh_at = COALESCE($11, last_refresh_at), \
     version = version + 1, updated_at = $12 \
     WHERE connector = $1 AND env = $2 AND connection = $3 AND version = $4";
pub(crate) const TOUCH_TOKEN: &str = "UPDATE tokens SET last_used_at = $4 \
     WHERE connector = $1 AND env = $2 AND connection = $3 AND (last_used_at IS NULL OR last_used_at < $4)";
pub(crate) const DELETE_TOKEN: &str = "DELETE FROM tokens WHERE connector = $1 AND env = $2 AND connection = $3";

pub(crate) const INSERT_EVENT: &str = "INSERT INTO events (id, at, kind, connector, env, connection, actor, outcome, \
     detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
pub(crate) const LIST_EVENTS: &str = "SELECT id, at, kind, connector, env, connection, actor, outcome, detail \
     FROM events WHERE ($1 IS NULL OR connector = $1) AND ($2 IS NULL OR kind = $2) \
     AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) ORDER BY at DESC, id DESC LIMIT $5";

pub(crate) const UPSERT_CONNECTION: &str = "INSERT INTO connections (id, connector, env, owner, provider_user_id, \
     email, scopes, metadata, return_to, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (connector, env, owner) DO UPDATE SET provider_user_id = excluded.provider_user_id, \
     email = excluded.email, scopes = excluded.scopes, metadata = excluded.metadata, \
     return_to = COALESCE(excluded.return_to, connections.return_to), updated_at = excluded.updated_at";
pub(crate) const FIND_CONNECTION: &str = "SELECT id, connector, env, owner, provider_user_id, email, scopes, metadata, \
     return_to, created_at, updated_at FROM connections WHERE connector = $1 AND env = $2 AND owner = $3";
pub(crate) const GET_CONNECTION: &str = "SELECT id, connector, env, owner, provider_user_id, email, scopes, metadata, \
     return_to, created_at, updated_at FROM connections WHERE id = $1";
pub(crate) const LIST_CONNECTIONS: &str = "SELECT id, connector, env, owner, provider_user_id, email, scopes, metadata, \
     return_to, created_at, updated_at FROM connections \
     WHERE ($1 IS NULL OR connector = $1) AND ($2 IS NULL OR env = $2) AND ($3 IS NULL OR owner = $3) \
     ORDER BY connector, env, owner";
pub(crate) const DELETE_CONNECTION_TOKENS: &str = "DELETE FROM tokens WHERE connection = $1 AND connection <> ''";
pub(crate) const DELETE_CONNECTION: &str = "DELETE FROM connections WHERE id = $1";
pub(crate) const INSERT_FLOW: &str = "INSERT INTO flows (handle_hash, kind, connector, env, owner, return_to, sealed, \
     binding, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)";
pub(crate) const TAKE_FLOW: &str = "UPDATE flows SET used_at = $2 WHERE handle_hash = $1 AND used_at IS NULL \
     RETURNING handle_hash, kind, connector, env, owner, return_to, sealed, binding, created_at, expires_at, used_at";
pub(crate) const GET_FLOW: &str = "SELECT handle_hash, kind, connector, env, owner, return_to, sealed, binding, \
     created_at, expires_at, used_at FROM flows WHERE handle_hash = $1";
pub(crate) const PURGE_FLOWS: &str = "DELETE FROM flows WHERE expires_at < $1";

pub(crate) const UPSERT_USER: &str = "INSERT INTO users (env, id, email, attributes, provider, provider_user_id, \
     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (env, id) DO UPDATE SET \
     email = COALESCE(excluded.email, users.email), attributes = excluded.attributes, \
     provider = COALESCE(excluded.provider, users.provider), \
     provider_user_id = COALESCE(excluded.provider_user_id, users.provider_user_id), updated_at = excluded.updated_at";
pub(crate) const GET_USER: &str = "SELECT env, id, email, attributes, provider, provider_user_id, created_at, updated_at \
     FROM users WHERE env = $1 AND id = $2";
pub(crate) const FIND_USER_BY_PROVIDER: &str = "SELECT env, id, email, attributes, provider, provider_user_id, \
     created_at, updated_at FROM users WHERE env = $1 AND provider = $2 AND provider_user_id = $3";
pub(crate) const DELETE_USER: &str = "DELETE FROM users WHERE env = $1 AND id = $2";
pub(crate) const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys (kid, alg, sealed, created_at, activates_at, \
     retired_at) VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const LIST_SIGNING_KEYS: &str = "SELECT kid, alg, sealed, created_at, activates_at, retired_at \
     FROM signing_keys ORDER BY created_at, kid";
pub(crate) const RETIRE_SIGNING_KEY: &str =
    "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL";
pub(crate) const DELETE_SIGNING_KEY: &str = "DELETE FROM signing_keys WHERE kid = $1";
pub(crate) const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (hash, family, env, user_id, created_at, \
     expires_at, used_at, revoked_at, successor) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, NULL)";
pub(crate) const ROTATE_REFRESH: &str = "UPDATE refresh_tokens SET used_at = $2, successor = $3 \
     WHERE hash = $1 AND used_at IS NULL AND revoked_at IS NULL \
     RETURNING hash, family, env, user_id, created_at, expires_at, used_at, revoked_at, successor";
pub(crate) const GET_REFRESH: &str = "SELECT hash, family, env, user_id, created_at, expires_at, used_at, revoked_at, \
     successor FROM refresh_tokens WHERE hash = $1";
pub(crate) const REVOKE_FAMILY: &str = "UPDATE refresh_tokens SET revoked_at = $2, successor = NULL \
     WHERE family = $1 AND revoked_at IS NULL";
pub(crate) const REVOKED_FAMILIES: &str = "SELECT DISTINCT family FROM refresh_tokens WHERE revoked_at >= $1";
pub(crate) const USER_FAMILIES: &str = "SELECT DISTINCT family FROM refresh_tokens WHERE env = $1 AND user_id = $2 \
     AND revoked_at IS NULL";

pub(crate) const INSERT_LOGIN_CODE: &str = "INSERT INTO login_codes (hash, env, user_id, connection_id, created_at, \
     expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)";
pub(crate) const TAKE_LOGIN_CODE: &str = "UPDATE login_codes SET used_at = $2 WHERE hash = $1 AND used_at IS NULL \
     AND env = $3 AND expires_at >= $2 RETURNING hash, env, user_id, connection_id, created_at, expires_at";

/// Binds a token write: key, fence (epoch or version), then the write's fields, in the order of
/// `COMMIT_TOKEN` and `COMMIT_TOKEN_IF_VERSION`.
macro_rules! bind_write {
    ($query:expr, $key:expr, $fence:expr, $write:expr, $now:expr) => {{
        let w: &TokenWrite = $write;
        let (set_sealed, sealed) = match &w.sealed {
            Some(v) => (1i64, v.clone()),
            None => (0i64, None),
        };
        let (set_expires, expires) = match w.expires_at {
            Some(v) => (1i64, v),
            None => (0i64, None),
        };
        $query
            .bind($key.connector.as_str())
            .bind($key.env.as_str())
            .bind($key.connection.as_str())
            .bind($fence)
            .bind(set_sealed)
            .bind(sealed)
            .bind(set_expires)
            .bind(expires)
            .bind(w.state.as_str())
            .bind(w.last_error.clone())
            .bind(w.last_refresh_at)
            .bind($now)
    }};
}

/// Runs the generation bump inside the write's transaction, then commits both.
macro_rules! bump_and_commit {
    ($tx:ident, $op:ident) => {{
        sqlx::query(sql::BUMP_GENERATION).execute(&mut *$tx).await.map_err(fail($op))?;
        $tx.commit().await.map_err(fail($op))
    }};
}

/// Starts a secret or app key write: bumps the generation first and yields the new value,
/// which the write stamps on its row (`changed_gen`) or its deletion.
macro_rules! bump_first {
    ($tx:ident, $op:ident) => {{ sqlx::query_scalar::<_, i64>(sql::BUMP_GENERATION_RETURNING).fetch_one(&mut *$tx).await.map_err(fail($op))? }};
}

/// Deletes with `$delete` (bound to `$name`) and records the deletion of `$kind` `$name` under
/// the generation it bumped, in one transaction; `Ok(false)` (and no bump) when nothing was
/// there. Readers catching up learn of it from `deletions` (`changes_since`).
macro_rules! delete_recorded {
    ($self:ident, $op:ident, $delete:expr, $kind:literal, $name:expr) => {{
        let mut tx = $self.pool.begin().await.map_err(fail($op))?;
        let generation = bump_first!(tx, $op);
        let done = sqlx::query($delete).bind($name).execute(&mut *tx).await.map_err(fail($op))?;
        if done.rows_affected() == 0 {
            return Ok(false); // rolled back: no bump
        }
        sqlx::query(sql::RECORD_DELETION)
            .bind($kind)
            .bind($name)
            .bind(generation)
            .execute(&mut *tx)
            .await
            .map_err(fail($op))?;
        tx.commit().await.map_err(fail($op))?;
        Ok(true)
    }};
}

/// Inserts a refresh-token row (unused, unrevoked, no successor) through `$exec`.
macro_rules! insert_refresh {
    ($exec:expr, $row:expr) => {{
        let row: &RefreshRow = $row;
        sqlx::query(sql::INSERT_REFRESH)
            .bind(row.hash.as_slice())
            .bind(row.family.as_str())
            .bind(row.env.as_str())
            .bind(row.user_id.as_str())
            .bind(row.created_at)
            .bind(row.expires_at)
            .execute($exec)
            .await
    }};
}

/// Implements `latchkey_core::store::Store` for a struct with a `pool: sqlx::Pool<DB>` field.
///
/// The body is written once and expanded per backend, where every type is concrete: the
/// generic alternative needs a screen of higher-ranked sqlx bounds for no gain.
///
/// Every write to secrets, api_keys (insert, delete) and connectors runs in one transaction
/// with the generation bump, and bumps only when it changed a row. Each such transaction
/// starts with its write, so on SQLite it takes the write lock first (waiting out the busy
/// timeout) and never has to upgrade a read snapshot. A transaction dropped before commit
/// rolls back.
macro_rules! impl_store {
    ($store:ty) => {
        const _: () = {
            use latchkey_core::Env;
            use latchkey_core::store::{
                ConnectionFilter, ConnectionRow, ConnectionStore, ConnectorRow, EventFilter, EventRow, FlowRow,
                FlowTake, IdentityStore, KeyRow, LoginCodeRow, RefreshRow, RefreshTake, SealedPlace, SealedStore, SecretRow, SigningKeyRow,
                Store, StoreChanges, StoreError, StoreResult, TokenKey, TokenRow, TokenStore, TokenWrite, UserRow,
            };
            use $crate::sql::{self, bind_write, bump_and_commit, bump_first, delete_recorded, insert_refresh};
            use $crate::fail;
            use $crate::rows;

            #[async_trait::async_trait]
            impl Store for $store {
                async fn ping(&self) -> StoreResult<()> {
                    const OP: &str = "ping";
                    sqlx::query(sql::PING).execute(&self.pool).await.map_err(fail(OP))?;
                    Ok(())
                }

                async fn generation(&self) -> StoreResult<i64> {
                    const OP: &str = "generation";
                    sqlx::query_scalar::<_, i64>(sql::GENERATION).fetch_one(&self.pool).await.map_err(fail(OP))
                }

                async fn get_meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
                    const OP: &str = "get_meta";
                    sqlx::query_scalar::<_, Vec<u8>>(sql::GET_META)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))
                }

                async fn insert_meta(&self, key: &str, value: &[u8]) -> StoreResult<bool> {
                    const OP: &str = "insert_meta";
                    let done = sqlx::query(sql::INSERT_META)
                        .bind(key)
                        .bind(value)
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    Ok(done.rows_affected() == 1)
                }

                async fn put_secret(&self, row: &SecretRow) -> StoreResult<()> {
                    const OP: &str = "put_secret";
                    let mut tx = self.pool.begin().await.map_err(fail(OP))?;
                    let generation = bump_first!(tx, OP);
                    sqlx::query(sql::PUT_SECRET)
                        .bind(row.name.as_str())
                        .bind(row.env.as_str())
                        .bind(row.sealed.as_slice())
                        .bind(row.updated_at)
                        .bind(generation)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail(OP))?;
                    tx.commit().await.map_err(fail(OP))
                }

                async fn delete_secret(&self, name: &str) -> StoreResult<bool> {
                    const OP: &str = "delete_secret";
                    delete_recorded!(self, OP, sql::DELETE_SECRET, "secret", name)
                }

                async fn list_secrets(&self) -> StoreResult<Vec<SecretRow>> {
                    const OP: &str = "list_secrets";
                    sqlx::query_as::<_, rows::Secret>(sql::LIST_SECRETS)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .into_iter()
                        .map(|row| row.into_row(OP))
                        .collect()
                }

                async fn changes_since(&self, since: i64) -> StoreResult<StoreChanges> {
                    const OP: &str = "changes_since";
                    // The generation first: every row stamped up to it is committed already.
                    let through =
                        sqlx::query_scalar::<_, i64>(sql::GENERATION).fetch_one(&self.pool).await.map_err(fail(OP))?;
                    let mut changes = StoreChanges { through, ..StoreChanges::default() };
                    for rows::Deletion { kind, name } in sqlx::query_as::<_, rows::Deletion>(sql::DELETIONS_SINCE)
                        .bind(since)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?
                    {
                        match kind.as_str() {
                            "secret" => changes.deleted_secrets.push(name),
                            _ => changes.deleted_keys.push(name),
                        }
                    }
                    for row in sqlx::query_as::<_, rows::Secret>(sql::SECRETS_CHANGED_SINCE)
                        .bind(since)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?
                    {
                        changes.secrets.push(row.into_row(OP)?);
                    }
                    for row in sqlx::query_as::<_, rows::Key>(sql::KEYS_CHANGED_SINCE)
                        .bind(since)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?
                    {
                        changes.keys.push(row.into_row(OP)?);
                    }
                    Ok(changes)
                }

                async fn insert_key(&self, row: &KeyRow) -> StoreResult<()> {
                    const OP: &str = "insert_key";
                    let mut tx = self.pool.begin().await.map_err(fail(OP))?;
                    let generation = bump_first!(tx, OP);
                    let done = sqlx::query(sql::INSERT_KEY)
                        .bind(row.id.as_str())
                        .bind(row.name.as_str())
                        .bind(row.kind.as_str())
                        .bind(row.hash.as_slice())
                        .bind(row.created_at)
                        .bind(row.last_used_at)
                        .bind(generation)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail(OP))?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::Conflict(format!("key `{}`", row.id)));
                    }
                    tx.commit().await.map_err(fail(OP))
                }

                async fn find_key(&self, id: &str) -> StoreResult<Option<KeyRow>> {
                    const OP: &str = "find_key";
                    sqlx::query_as::<_, rows::Key>(sql::FIND_KEY)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .map(|row| row.into_row(OP))
                        .transpose()
                }

                async fn list_keys(&self) -> StoreResult<Vec<KeyRow>> {
                    const OP: &str = "list_keys";
                    sqlx::query_as::<_, rows::Key>(sql::LIST_KEYS)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .into_iter()
                        .map(|row| row.into_row(OP))
                        .collect()
                }

                async fn delete_key(&self, id: &str) -> StoreResult<bool> {
                    const OP: &str = "delete_key";
                    delete_recorded!(self, OP, sql::DELETE_KEY, "key", id)
                }

                async fn touch_key(&self, id: &str, at: i64) -> StoreResult<()> {
                    const OP: &str = "touch_key";
                    sqlx::query(sql::TOUCH_KEY).bind(id).bind(at).execute(&self.pool).await.map_err(fail(OP))?;
                    Ok(())
                }

                async fn put_connector(&self, row: &ConnectorRow) -> StoreResult<()> {
                    const OP: &str = "put_connector";
                    let mut tx = self.pool.begin().await.map_err(fail(OP))?;
                    sqlx::query(sql::PUT_CONNECTOR)
                        .bind(row.name.as_str())
                        .bind(row.definition.as_str())
                        .bind(row.updated_at)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail(OP))?;
                    bump_and_commit!(tx, OP)
                }

                async fn list_connectors(&self) -> StoreResult<Vec<ConnectorRow>> {
                    const OP: &str = "list_connectors";
                    let rows = sqlx::query_as::<_, rows::Connector>(sql::LIST_CONNECTORS)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    Ok(rows.into_iter().map(ConnectorRow::from).collect())
                }

                async fn delete_connector(&self, name: &str) -> StoreResult<bool> {
                    const OP: &str = "delete_connector";
                    let mut tx = self.pool.begin().await.map_err(fail(OP))?;
                    let done =
                        sqlx::query(sql::DELETE_CONNECTOR).bind(name).execute(&mut *tx).await.map_err(fail(OP))?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    bump_and_commit!(tx, OP)?;
                    Ok(true)
                }
            }

            #[async_trait::async_trait]
            impl TokenStore for $store {
                async fn get_token(&self, key: &TokenKey) -> StoreResult<Option<TokenRow>> {
                    const OP: &str = "get_token";
                    sqlx::query_as::<_, rows::Token>(sql::GET_TOKEN)
                        .bind(key.connector.as_str())
                        .bind(key.env.as_str())
                        .bind(key.connection.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .map(|row| row.into_row(OP))
                        .transpose()
                }

                async fn list_tokens(&self) -> StoreResult<Vec<TokenRow>> {
                    const OP: &str = "list_tokens";
                    sqlx::query_as::<_, rows::Token>(sql::LIST_TOKENS)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .into_iter()
                        .map(|row| row.into_row(OP))
                        .collect()
                }

                async fn take_lease(
                    &self,
                    key: &TokenKey,
                    owner: &str,
                    now: i64,
                    until: i64,
                ) -> StoreResult<Option<TokenRow>> {
                    const OP: &str = "take_lease";
                    sqlx::query(sql::ENSURE_TOKEN)
                        .bind(key.connector.as_str())
                        .bind(key.env.as_str())
                        .bind(key.connection.as_str())
                        .bind(now)
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    sqlx::query_as::<_, rows::Token>(sql::TAKE_LEASE)
                        .bind(key.connector.as_str())
                        .bind(key.env.as_str())
                        .bind(key.connection.as_str())
                        .bind(owner)
                        .bind(until)
                        .bind(now)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .map(|row| row.into_row(OP))
                        .transpose()
                }

                async fn commit_token(
                    &self,
                    key: &TokenKey,
                    epoch: i64,
                    write: &TokenWrite,
                    now: i64,
                ) -> StoreResult<bool> {
                    const OP: &str = "commit_token";
                    let done = bind_write!(sqlx::query(sql::COMMIT_TOKEN), key, epoch, write, now)
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    Ok(done.rows_affected() == 1)
                }

                async fn commit_token_if_version(
                    &self,
                    key: &TokenKey,
                    version: i64,
                    write: &TokenWrite,
                    now: i64,
                ) -> StoreResult<bool> {
                    const OP: &str = "commit_token_if_version";
                    let done = bind_write!(sqlx::query(sql::COMMIT_TOKEN_IF_VERSION), key, version, write, now)
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    Ok(done.rows_affected() == 1)
                }

                async fn touch_token(&self, key: &TokenKey, at: i64) -> StoreResult<()> {
                    const OP: &str = "touch_token";
                    sqlx::query(sql::TOUCH_TOKEN)
                        .bind(key.connector.as_str())
                        .bind(key.env.as_str())
                        .bind(key.connection.as_str())
                        .bind(at)
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    Ok(())
                }

                async fn delete_token(&self, key: &TokenKey) -> StoreResult<bool> {
                    const OP: &str = "delete_token";
                    let done = sqlx::query(sql::DELETE_TOKEN)
                        .bind(key.connector.as_str())
                        .bind(key.env.as_str())
                        .bind(key.connection.as_str())
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    Ok(done.rows_affected() > 0)
                }

                async fn insert_event(&self, e: &EventRow) -> StoreResult<()> {
                    const OP: &str = "insert_event";
                    sqlx::query(sql::INSERT_EVENT)
                        .bind(e.id.as_str())
                        .bind(e.at)
                        .bind(e.kind.as_str())
                        .bind(e.connector.as_str())
                        .bind(e.env.as_str())
                        .bind(e.connection.as_str())
                        .bind(e.actor.as_str())
                        .bind(e.outcome.as_str())
                        .bind(e.detail.as_str())
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    Ok(())
                }

                async fn list_events(&self, f: &EventFilter) -> StoreResult<Vec<EventRow>> {
                    const OP: &str = "list_events";
                    sqlx::query_as::<_, rows::Event>(sql::LIST_EVENTS)
                        .bind(f.connector.as_deref())
                        .bind(f.kind.as_deref())
                        .bind(f.since)
                        .bind(f.until)
                        .bind(if f.limit > 0 { f.limit } else { 100 })
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .into_iter()
                        .map(|row| row.into_row(OP))
                        .collect()
                }
            }

            #[async_trait::async_trait]
            impl ConnectionStore for $store {
                async fn upsert_connection(&self, row: &ConnectionRow) -> StoreResult<ConnectionRow> {
                    const OP: &str = "upsert_connection";
                    sqlx::query(sql::UPSERT_CONNECTION)
                        .bind(row.id.as_str())
                        .bind(row.connector.as_str())
                        .bind(row.env.as_str())
                        .bind(row.owner.as_str())
                        .bind(row.provider_user_id.as_deref())
                        .bind(row.email.as_deref())
                        .bind(row.scopes.as_deref())
                        .bind(row.metadata.as_str())
                        .bind(row.return_to.as_deref())
                        .bind(row.created_at)
                        .bind(row.updated_at)
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    self.find_connection(&row.connector, row.env, &row.owner).await?.ok_or_else(|| {
                        StoreError::Unavailable { op: OP, reason: "the connection vanished after its write".into() }
                    })
                }

                async fn find_connection(
                    &self,
                    connector: &str,
                    env: Env,
                    owner: &str,
                ) -> StoreResult<Option<ConnectionRow>> {
                    const OP: &str = "find_connection";
                    sqlx::query_as::<_, rows::Connection>(sql::FIND_CONNECTION)
                        .bind(connector)
                        .bind(env.as_str())
                        .bind(owner)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .map(|row| row.into_row(OP))
                        .transpose()
                }

                async fn get_connection(&self, id: &str) -> StoreResult<Option<ConnectionRow>> {
                    const OP: &str = "get_connection";
                    sqlx::query_as::<_, rows::Connection>(sql::GET_CONNECTION)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .map(|row| row.into_row(OP))
                        .transpose()
                }

                async fn list_connections(&self, f: &ConnectionFilter) -> StoreResult<Vec<ConnectionRow>> {
                    const OP: &str = "list_connections";
                    sqlx::query_as::<_, rows::Connection>(sql::LIST_CONNECTIONS)
                        .bind(f.connector.as_deref())
                        .bind(f.env.map(|e| e.as_str()))
                        .bind(f.owner.as_deref())
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .into_iter()
                        .map(|row| row.into_row(OP))
                        .collect()
                }

                async fn delete_connection(&self, id: &str) -> StoreResult<bool> {
                    const OP: &str = "delete_connection";
                    let mut tx = self.pool.begin().await.map_err(fail(OP))?;
                    sqlx::query(sql::DELETE_CONNECTION_TOKENS).bind(id).execute(&mut *tx).await.map_err(fail(OP))?;
                    let done =
                        sqlx::query(sql::DELETE_CONNECTION).bind(id).execute(&mut *tx).await.map_err(fail(OP))?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    // Other instances drop their cached view of this connection on the bump.
                    bump_and_commit!(tx, OP)?;
                    Ok(true)
                }

                async fn insert_flow(&self, row: &FlowRow) -> StoreResult<()> {
                    const OP: &str = "insert_flow";
                    sqlx::query(sql::INSERT_FLOW)
                        .bind(row.handle_hash.as_slice())
                        .bind(row.kind.as_str())
                        .bind(row.connector.as_str())
                        .bind(row.env.as_str())
                        .bind(row.owner.as_str())
                        .bind(row.return_to.as_str())
                        .bind(row.sealed.as_deref())
                        .bind(row.binding.as_deref())
                        .bind(row.created_at)
                        .bind(row.expires_at)
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    Ok(())
                }

                async fn take_flow(&self, handle_hash: &[u8], now: i64) -> StoreResult<FlowTake> {
                    const OP: &str = "take_flow";
                    if let Some(t) = sqlx::query_as::<_, rows::Flow>(sql::TAKE_FLOW)
                        .bind(handle_hash)
                        .bind(now)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))?
                    {
                        return Ok(FlowTake::Fresh(t.into_row(OP)?));
                    }
                    match self.get_flow(handle_hash).await? {
                        Some(r) => Ok(FlowTake::Used(r)),
                        None => Ok(FlowTake::Unknown),
                    }
                }

                async fn get_flow(&self, handle_hash: &[u8]) -> StoreResult<Option<FlowRow>> {
                    const OP: &str = "get_flow";
                    sqlx::query_as::<_, rows::Flow>(sql::GET_FLOW)
                        .bind(handle_hash)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .map(|row| row.into_row(OP))
                        .transpose()
                }

                async fn purge_flows(&self, before: i64) -> StoreResult<u64> {
                    const OP: &str = "purge_flows";
                    let done =
                        sqlx::query(sql::PURGE_FLOWS).bind(before).execute(&self.pool).await.map_err(fail(OP))?;
                    Ok(done.rows_affected())
                }
            }

            #[async_trait::async_trait]
            impl IdentityStore for $store {
                async fn upsert_user(&self, row: &UserRow) -> StoreResult<UserRow> {
                    const OP: &str = "upsert_user";
                    sqlx::query(sql::UPSERT_USER)
                        .bind(row.env.as_str())
                        .bind(row.id.as_str())
                        .bind(row.email.as_deref())
                        .bind(row.attributes.as_str())
                        .bind(row.provider.as_deref())
                        .bind(row.provider_user_id.as_deref())
                        .bind(row.created_at)
                        .bind(row.updated_at)
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    self.get_user(row.env, &row.id).await?.ok_or_else(|| StoreError::Unavailable {
                        op: OP,
                        reason: "the user vanished after its write".into(),
                    })
                }

                async fn get_user(&self, env: Env, id: &str) -> StoreResult<Option<UserRow>> {
                    const OP: &str = "get_user";
                    sqlx::query_as::<_, rows::User>(sql::GET_USER)
                        .bind(env.as_str())
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .map(|row| row.into_row(OP))
                        .transpose()
                }

                async fn find_user_by_provider(
                    &self,
                    env: Env,
                    provider: &str,
                    puid: &str,
                ) -> StoreResult<Option<UserRow>> {
                    const OP: &str = "find_user_by_provider";
                    sqlx::query_as::<_, rows::User>(sql::FIND_USER_BY_PROVIDER)
                        .bind(env.as_str())
                        .bind(provider)
                        .bind(puid)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .map(|row| row.into_row(OP))
                        .transpose()
                }

                async fn delete_user(&self, env: Env, id: &str) -> StoreResult<bool> {
                    const OP: &str = "delete_user";
                    let done = sqlx::query(sql::DELETE_USER)
                        .bind(env.as_str())
                        .bind(id)
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    Ok(done.rows_affected() > 0)
                }

                async fn insert_signing_key(&self, row: &SigningKeyRow) -> StoreResult<()> {
                    const OP: &str = "insert_signing_key";
                    let mut tx = self.pool.begin().await.map_err(fail(OP))?;
                    sqlx::query(sql::INSERT_SIGNING_KEY)
                        .bind(row.kid.as_str())
                        .bind(row.alg.as_str())
                        .bind(row.sealed.as_slice())
                        .bind(row.created_at)
                        .bind(row.activates_at)
                        .bind(row.retired_at)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail(OP))?;
                    bump_and_commit!(tx, OP)
                }

                async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
                    const OP: &str = "list_signing_keys";
                    let rows = sqlx::query_as::<_, rows::SigningKey>(sql::LIST_SIGNING_KEYS)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    Ok(rows.into_iter().map(SigningKeyRow::from).collect())
                }

                async fn retire_signing_key(&self, kid: &str, at: i64) -> StoreResult<bool> {
                    const OP: &str = "retire_signing_key";
                    let mut tx = self.pool.begin().await.map_err(fail(OP))?;
                    let done = sqlx::query(sql::RETIRE_SIGNING_KEY)
                        .bind(kid)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail(OP))?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    bump_and_commit!(tx, OP)?;
                    Ok(true)
                }

                async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
                    const OP: &str = "delete_signing_key";
                    let mut tx = self.pool.begin().await.map_err(fail(OP))?;
                    let done =
                        sqlx::query(sql::DELETE_SIGNING_KEY).bind(kid).execute(&mut *tx).await.map_err(fail(OP))?;
                    if done.rows_affected() == 0 {
                        return Ok(false);
                    }
                    bump_and_commit!(tx, OP)?;
                    Ok(true)
                }

                async fn insert_refresh(&self, row: &RefreshRow) -> StoreResult<()> {
                    const OP: &str = "insert_refresh";
                    insert_refresh!(&self.pool, row).map(|_| ()).map_err(fail(OP))
                }

                async fn rotate_refresh(
                    &self,
                    hash: &[u8],
                    now: i64,
                    successor: &RefreshRow,
                    sealed_pair: &[u8],
                ) -> StoreResult<RefreshTake> {
                    const OP: &str = "rotate_refresh";
                    let mut tx = self.pool.begin().await.map_err(fail(OP))?;
                    let taken = sqlx::query_as::<_, rows::Refresh>(sql::ROTATE_REFRESH)
                        .bind(hash)
                        .bind(now)
                        .bind(sealed_pair)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(fail(OP))?;
                    if let Some(t) = taken {
                        insert_refresh!(&mut *tx, successor).map_err(fail(OP))?;
                        tx.commit().await.map_err(fail(OP))?;
                        return Ok(RefreshTake::Fresh(t.into_row(OP)?));
                    }
                    tx.rollback().await.map_err(fail(OP))?;
                    Ok(match self.get_refresh(hash).await? {
                        Some(r) => RefreshTake::Spent(r),
                        None => RefreshTake::Unknown,
                    })
                }

                async fn get_refresh(&self, hash: &[u8]) -> StoreResult<Option<RefreshRow>> {
                    const OP: &str = "get_refresh";
                    sqlx::query_as::<_, rows::Refresh>(sql::GET_REFRESH)
                        .bind(hash)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .map(|row| row.into_row(OP))
                        .transpose()
                }

                async fn revoke_family(&self, family: &str, now: i64) -> StoreResult<u64> {
                    const OP: &str = "revoke_family";
                    let mut tx = self.pool.begin().await.map_err(fail(OP))?;
                    let done = sqlx::query(sql::REVOKE_FAMILY)
                        .bind(family)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail(OP))?;
                    bump_and_commit!(tx, OP)?;
                    Ok(done.rows_affected())
                }

                async fn revoked_families(&self, since: i64) -> StoreResult<Vec<String>> {
                    const OP: &str = "revoked_families";
                    sqlx::query_scalar::<_, String>(sql::REVOKED_FAMILIES)
                        .bind(since)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))
                }

                async fn insert_login_code(&self, row: &LoginCodeRow) -> StoreResult<()> {
                    const OP: &str = "insert_login_code";
                    sqlx::query(sql::INSERT_LOGIN_CODE)
                        .bind(row.hash.as_slice())
                        .bind(row.env.as_str())
                        .bind(row.user_id.as_str())
                        .bind(row.connection_id.as_str())
                        .bind(row.created_at)
                        .bind(row.expires_at)
                        .execute(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    Ok(())
                }

                async fn take_login_code(
                    &self,
                    hash: &[u8],
                    env: Env,
                    now: i64,
                ) -> StoreResult<Option<LoginCodeRow>> {
                    const OP: &str = "take_login_code";
                    sqlx::query_as::<_, rows::LoginCode>(sql::TAKE_LOGIN_CODE)
                        .bind(hash)
                        .bind(now)
                        .bind(env.as_str())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(fail(OP))?
                        .map(|row| row.into_row(OP))
                        .transpose()
                }

                async fn revoke_user_families(&self, env: Env, user_id: &str, now: i64) -> StoreResult<u64> {
                    const OP: &str = "revoke_user_families";
                    let families = sqlx::query_scalar::<_, String>(sql::USER_FAMILIES)
                        .bind(env.as_str())
                        .bind(user_id)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?;
                    let mut n = 0;
                    for f in families {
                        n += self.revoke_family(&f, now).await?;
                    }
                    Ok(n)
                }
            }

            #[async_trait::async_trait]
            impl SealedStore for $store {
                async fn sealed_values(&self) -> StoreResult<Vec<(SealedPlace, Vec<u8>)>> {
                    const OP: &str = "sealed_values";
                    let mut out = Vec::new();
                    for row in sqlx::query_as::<_, rows::sealed::Meta>("SELECT key, value FROM meta WHERE key IN ('vault.key_check', 'audit.salt')")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?
                    {
                        out.push(row.into_place());
                    }
                    for row in sqlx::query_as::<_, rows::sealed::Secret>("SELECT name, env, sealed FROM secrets")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?
                    {
                        out.push(row.into_place(OP)?);
                    }
                    for row in sqlx::query_as::<_, rows::sealed::Token>(
                        "SELECT connector, env, connection, sealed FROM tokens WHERE sealed IS NOT NULL",
                    )
                    .fetch_all(&self.pool)
                    .await
                    .map_err(fail(OP))?
                    {
                        out.push(row.into_place(OP)?);
                    }
                    for row in sqlx::query_as::<_, rows::sealed::Flow>(
                        "SELECT handle_hash, kind, env, sealed FROM flows WHERE sealed IS NOT NULL",
                    )
                    .fetch_all(&self.pool)
                    .await
                    .map_err(fail(OP))?
                    {
                        out.push(row.into_place(OP)?);
                    }
                    for row in sqlx::query_as::<_, rows::sealed::SigningKey>("SELECT kid, sealed FROM signing_keys")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(fail(OP))?
                    {
                        out.push(row.into_place());
                    }
                    for row in sqlx::query_as::<_, rows::sealed::RefreshSuccessor>(
                        "SELECT hash, env, successor FROM refresh_tokens WHERE successor IS NOT NULL",
                    )
                    .fetch_all(&self.pool)
                    .await
                    .map_err(fail(OP))?
                    {
                        out.push(row.into_place(OP)?);
                    }
                    Ok(out)
                }

                async fn replace_sealed(&self, place: &SealedPlace, old: &[u8], new: &[u8]) -> StoreResult<bool> {
                    const OP: &str = "replace_sealed";
                    let done = match place {
                        SealedPlace::Meta(k) => sqlx::query("UPDATE meta SET value = $3 WHERE key = $1 AND value = $2")
                            .bind(k.as_str())
                            .bind(old)
                            .bind(new)
                            .execute(&self.pool)
                            .await,
                        SealedPlace::Secret(name, env) => {
                            sqlx::query("UPDATE secrets SET sealed = $4 WHERE name = $1 AND env = $2 AND sealed = $3")
                                .bind(name.as_str())
                                .bind(env.as_str())
                                .bind(old)
                                .bind(new)
                                .execute(&self.pool)
                                .await
                        }
                        SealedPlace::Token(k) => sqlx::query(
                            "UPDATE tokens SET sealed = $5 WHERE connector = $1 AND env = $2 AND connection = $3 AND sealed = $4",
                        )
                        .bind(k.connector.as_str())
                        .bind(k.env.as_str())
                        .bind(k.connection.as_str())
                        .bind(old)
                        .bind(new)
                        .execute(&self.pool)
                        .await,
                        SealedPlace::Flow { hash, .. } => {
                            sqlx::query("UPDATE flows SET sealed = $3 WHERE handle_hash = $1 AND sealed = $2")
                                .bind(hash.as_slice())
                                .bind(old)
                                .bind(new)
                                .execute(&self.pool)
                                .await
                        }
                        SealedPlace::SigningKey(kid) => {
                            sqlx::query("UPDATE signing_keys SET sealed = $3 WHERE kid = $1 AND sealed = $2")
                                .bind(kid.as_str())
                                .bind(old)
                                .bind(new)
                                .execute(&self.pool)
                                .await
                        }
                        SealedPlace::RefreshSuccessor { hash, .. } => {
                            sqlx::query("UPDATE refresh_tokens SET successor = $3 WHERE hash = $1 AND successor = $2")
                                .bind(hash.as_slice())
                                .bind(old)
                                .bind(new)
                                .execute(&self.pool)
                                .await
                        }
                    }
                    .map_err(fail(OP))?;
                    Ok(done.rows_affected() == 1)
                }
            }
        };
    };
}

pub(crate) use {bind_write, bump_and_commit, bump_first, delete_recorded, impl_store, insert_refresh};
