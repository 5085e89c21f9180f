//! Per-user connections and the browser flows (connect sessions, OAuth states) that make
//! them. A connection's tokens live in `tokens` under its id.

use latchkey_core::Env;
use latchkey_core::store::{
    ConnectionCount, ConnectionFilter, ConnectionRow, FlowRow, FlowTake, StoreError, StoreResult,
};
use latchkey_core::token::TokenState;

use super::{Pool, generation};
use crate::{fail, rows};

const UPSERT: &str = "INSERT INTO connections (id, connector, env, owner, provider_user_id, \
     email, scopes, metadata, return_to, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
     ON CONFLICT (connector, env, owner) DO UPDATE SET provider_user_id = excluded.provider_user_id, \
     email = excluded.email, scopes = excluded.scopes, metadata = excluded.metadata, \
     return_to = COALESCE(excluded.return_to, connections.return_to), updated_at = excluded.updated_at \
     RETURNING id, connector, env, owner, provider_user_id, email, scopes, metadata, return_to, created_at, updated_at";
const FIND: &str = "SELECT id, connector, env, owner, provider_user_id, email, scopes, metadata, \
     return_to, created_at, updated_at FROM connections WHERE connector = $1 AND env = $2 AND owner = $3";
const GET: &str = "SELECT id, connector, env, owner, provider_user_id, email, scopes, metadata, \
     return_to, created_at, updated_at FROM connections WHERE id = $1";
const LIST: &str = "SELECT id, connector, env, owner, provider_user_id, email, scopes, metadata, \
     return_to, created_at, updated_at FROM connections \
     WHERE ($1 IS NULL OR connector = $1) AND ($2 IS NULL OR env = $2) AND ($3 IS NULL OR owner = $3) \
     ORDER BY connector, env, owner";
/// A connection without a token row counts as `empty`, as the connection listing shows it.
const COUNT: &str = "SELECT c.connector, c.env, COALESCE(t.state, 'empty') AS state, COUNT(*) AS n \
     FROM connections c LEFT JOIN tokens t ON t.connector = c.connector AND t.env = c.env AND t.connection = c.id \
     GROUP BY c.connector, c.env, COALESCE(t.state, 'empty') ORDER BY c.connector, c.env, state";
/// A per-user connection's values, in its token row: state `ok`, no expiry, no error.
const PUT_VALUES: &str = "INSERT INTO tokens (connector, env, connection, sealed, expires_at, state, \
     last_error, last_refresh_at, version, lease_until, epoch, updated_at) \
     VALUES ($1, $2, $3, $4, NULL, 'ok', NULL, $5, 1, 0, 0, $5) \
     ON CONFLICT (connector, env, connection) DO UPDATE SET sealed = excluded.sealed, expires_at = NULL, \
     state = 'ok', last_error = NULL, last_refresh_at = excluded.last_refresh_at, \
     version = tokens.version + 1, lease_owner = NULL, lease_until = 0, updated_at = excluded.updated_at";
const DELETE_TOKENS: &str = "DELETE FROM tokens WHERE connection = $1 AND connection <> ''";
const DELETE: &str = "DELETE FROM connections WHERE id = $1";

const INSERT_FLOW: &str = "INSERT INTO flows (handle_hash, kind, connector, env, owner, return_to, sealed, \
     binding, created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)";
const TAKE_FLOW: &str = "UPDATE flows SET used_at = $2 WHERE handle_hash = $1 AND used_at IS NULL \
     RETURNING handle_hash, kind, connector, env, owner, return_to, sealed, binding, created_at, expires_at, used_at";
const GET_FLOW: &str = "SELECT handle_hash, kind, connector, env, owner, return_to, sealed, binding, \
     created_at, expires_at, used_at FROM flows WHERE handle_hash = $1";

/// Inserts, or updates the row of (connector, env, owner) keeping its id; answers the row as
/// stored, in the same statement.
pub(super) async fn upsert(pool: &Pool, row: &ConnectionRow) -> StoreResult<ConnectionRow> {
    const OP: &str = "upsert_connection";
    sqlx::query_as::<_, rows::Connection>(UPSERT)
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
        .fetch_one(pool)
        .await
        .map_err(fail(OP))?
        .into_row(OP)
}

pub(super) async fn find(pool: &Pool, connector: &str, env: Env, owner: &str) -> StoreResult<Option<ConnectionRow>> {
    const OP: &str = "find_connection";
    sqlx::query_as::<_, rows::Connection>(FIND)
        .bind(connector)
        .bind(env.as_str())
        .bind(owner)
        .fetch_optional(pool)
        .await
        .map_err(fail(OP))?
        .map(|row| row.into_row(OP))
        .transpose()
}

pub(super) async fn get(pool: &Pool, id: &str) -> StoreResult<Option<ConnectionRow>> {
    const OP: &str = "get_connection";
    let row = sqlx::query_as::<_, rows::Connection>(GET).bind(id).fetch_optional(pool).await.map_err(fail(OP))?;
    row.map(|row| row.into_row(OP)).transpose()
}

pub(super) async fn list(pool: &Pool, f: &ConnectionFilter) -> StoreResult<Vec<ConnectionRow>> {
    const OP: &str = "list_connections";
    let rows = sqlx::query_as::<_, rows::Connection>(LIST)
        .bind(f.connector.as_deref())
        .bind(f.env.map(|e| e.as_str()))
        .bind(f.owner.as_deref())
        .fetch_all(pool)
        .await
        .map_err(fail(OP))?;
    rows.into_iter().map(|row| row.into_row(OP)).collect()
}

pub(super) async fn count(pool: &Pool) -> StoreResult<Vec<ConnectionCount>> {
    const OP: &str = "count_connections";
    let counts: Vec<(String, String, String, i64)> = sqlx::query_as(COUNT).fetch_all(pool).await.map_err(fail(OP))?;
    counts
        .into_iter()
        .map(|(connector, env, state, n)| {
            let state = TokenState::parse(&state).map_err(|e| StoreError::Corrupt {
                op: OP,
                reason: format!("a token of connector `{connector}` has {e}"),
            })?;
            Ok(ConnectionCount { env: rows::parse_env(OP, &env)?, connector, state, count: n.max(0) as u64 })
        })
        .collect()
}

/// The connection upserted and its values put in its token row, with a generation bump, in
/// one transaction; `None` (rolled back) when (connector, env, owner) has another id.
pub(super) async fn put_values(
    pool: &Pool,
    row: &ConnectionRow,
    sealed: &[u8],
    now: i64,
) -> StoreResult<Option<ConnectionRow>> {
    const OP: &str = "put_connection_values";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    let stored = sqlx::query_as::<_, rows::Connection>(UPSERT)
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
        .fetch_one(&mut *tx)
        .await
        .map_err(fail(OP))?
        .into_row(OP)?;
    if stored.id != row.id {
        return Ok(None); // rolled back
    }
    sqlx::query(PUT_VALUES)
        .bind(row.connector.as_str())
        .bind(row.env.as_str())
        .bind(row.id.as_str())
        .bind(sealed)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(fail(OP))?;
    // Other instances drop what they prepared from the old values on the bump.
    generation::bump_and_commit(tx, OP).await?;
    Ok(Some(stored))
}

/// Deletes the connection and its tokens; bumps the generation when there was one.
pub(super) async fn delete(pool: &Pool, id: &str) -> StoreResult<bool> {
    const OP: &str = "delete_connection";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    sqlx::query(DELETE_TOKENS).bind(id).execute(&mut *tx).await.map_err(fail(OP))?;
    let done = sqlx::query(DELETE).bind(id).execute(&mut *tx).await.map_err(fail(OP))?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    // Other instances drop their cached view of this connection on the bump.
    generation::bump_and_commit(tx, OP).await?;
    Ok(true)
}

pub(super) async fn insert_flow(pool: &Pool, row: &FlowRow) -> StoreResult<()> {
    const OP: &str = "insert_flow";
    sqlx::query(INSERT_FLOW)
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
        .execute(pool)
        .await
        .map_err(fail(OP))?;
    Ok(())
}

/// Marks the flow used in one statement: exactly one taker sees `Fresh`.
pub(super) async fn take_flow(pool: &Pool, handle_hash: &[u8], now: i64) -> StoreResult<FlowTake> {
    const OP: &str = "take_flow";
    let taken = sqlx::query_as::<_, rows::Flow>(TAKE_FLOW)
        .bind(handle_hash)
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(fail(OP))?;
    if let Some(row) = taken {
        return Ok(FlowTake::Fresh(row.into_row(OP)?));
    }
    match get_flow(pool, handle_hash).await? {
        Some(r) => Ok(FlowTake::Used(r)),
        None => Ok(FlowTake::Unknown),
    }
}

pub(super) async fn get_flow(pool: &Pool, handle_hash: &[u8]) -> StoreResult<Option<FlowRow>> {
    const OP: &str = "get_flow";
    let row =
        sqlx::query_as::<_, rows::Flow>(GET_FLOW).bind(handle_hash).fetch_optional(pool).await.map_err(fail(OP))?;
    row.map(|row| row.into_row(OP)).transpose()
}
