//! Stored tokens: the sealed token set, its health, and the refresh lease with its fencing
//! epoch. Token writes do not bump the generation.

use latchkey_core::store::{StoreResult, TokenKey, TokenRow, TokenWrite};

use super::{Db, Pool};
use crate::{fail, rows};

const GET: &str = "SELECT connector, env, connection, sealed, expires_at, state, last_error, \
     last_refresh_at, last_used_at, version, lease_until, epoch, updated_at \
     FROM tokens WHERE connector = $1 AND env = $2 AND connection = $3";
const LIST: &str = "SELECT connector, env, connection, sealed, expires_at, state, last_error, \
     last_refresh_at, last_used_at, version, lease_until, epoch, updated_at \
     FROM tokens ORDER BY connector, env, connection";
const ENSURE: &str = "INSERT INTO tokens (connector, env, connection, state, version, lease_until, \
     epoch, updated_at) VALUES ($1, $2, $3, 'empty', 0, 0, 0, $4) \
     ON CONFLICT (connector, env, connection) DO NOTHING";
/// The lease is free when it ran out (or was released, `lease_until = 0`).
const TAKE_LEASE: &str = "UPDATE tokens SET lease_owner = $4, lease_until = $5, epoch = epoch + 1 \
     WHERE connector = $1 AND env = $2 AND connection = $3 AND lease_until <= $6 \
     RETURNING connector, env, connection, sealed, expires_at, state, last_error, last_refresh_at, last_used_at, \
     version, lease_until, epoch, updated_at";
/// The holder's heartbeat: only under its epoch, only while the lease runs (a released lease
/// has `lease_until = 0`).
const EXTEND_LEASE: &str = "UPDATE tokens SET lease_until = $6 \
     WHERE connector = $1 AND env = $2 AND connection = $3 AND epoch = $4 AND lease_until > $5";
/// `$4` is the fencing epoch; `$5`/`$7` say whether to write sealed/expires_at at all.
const COMMIT: &str = "UPDATE tokens SET \
     sealed = CASE WHEN $5 = 1 THEN $6 ELSE sealed END, \
     expires_at = CASE WHEN $7 = 1 THEN $8 ELSE expires_at END, \
     state = $9, last_error = $10, last_refresh_at = COALESCE($11, last_refresh_at), \
     version = version + 1, lease_owner = NULL, lease_until = 0, updated_at = $12 \
     WHERE connector = $1 AND env = $2 AND connection = $3 AND epoch = $4";
const COMMIT_IF_VERSION: &str = "UPDATE tokens SET \
     sealed = CASE WHEN $5 = 1 THEN $6 ELSE sealed END, \
     expires_at = CASE WHEN $7 = 1 THEN $8 ELSE expires_at END, \
     state = $9, last_error = $10, last_refresh_at = COALESCE($11, last_refresh_at), \
     version = version + 1, updated_at = $12 \
     WHERE connector = $1 AND env = $2 AND connection = $3 AND version = $4";
const TOUCH: &str = "UPDATE tokens SET last_used_at = $4 \
     WHERE connector = $1 AND env = $2 AND connection = $3 AND (last_used_at IS NULL OR last_used_at < $4)";
const DELETE: &str = "DELETE FROM tokens WHERE connector = $1 AND env = $2 AND connection = $3";

/// A statement with its arguments bound so far.
type Query = sqlx::query::Query<'static, Db, <Db as sqlx::Database>::Arguments>;

/// A query over one token row: `key` bound as `$1`–`$3`.
fn keyed(sql: &'static str, key: &TokenKey) -> Query {
    sqlx::query(sql).bind(key.connector.as_str()).bind(key.env.as_str()).bind(key.connection.as_str())
}

pub(super) async fn get(pool: &Pool, key: &TokenKey) -> StoreResult<Option<TokenRow>> {
    const OP: &str = "get_token";
    sqlx::query_as::<_, rows::Token>(GET)
        .bind(key.connector.as_str())
        .bind(key.env.as_str())
        .bind(key.connection.as_str())
        .fetch_optional(pool)
        .await
        .map_err(fail(OP))?
        .map(|row| row.into_row(OP))
        .transpose()
}

pub(super) async fn list(pool: &Pool) -> StoreResult<Vec<TokenRow>> {
    const OP: &str = "list_tokens";
    let rows = sqlx::query_as::<_, rows::Token>(LIST).fetch_all(pool).await.map_err(fail(OP))?;
    rows.into_iter().map(|row| row.into_row(OP)).collect()
}

/// Creates the row if there is none, then takes the lease if it is free at `now`.
pub(super) async fn take_lease(
    pool: &Pool,
    key: &TokenKey,
    owner: &str,
    now: i64,
    until: i64,
) -> StoreResult<Option<TokenRow>> {
    const OP: &str = "take_lease";
    keyed(ENSURE, key).bind(now).execute(pool).await.map_err(fail(OP))?;
    sqlx::query_as::<_, rows::Token>(TAKE_LEASE)
        .bind(key.connector.as_str())
        .bind(key.env.as_str())
        .bind(key.connection.as_str())
        .bind(owner)
        .bind(until)
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(fail(OP))?
        .map(|row| row.into_row(OP))
        .transpose()
}

/// Moves the lease's end to `until` if `epoch` still holds it and it runs at `now`.
pub(super) async fn extend_lease(pool: &Pool, key: &TokenKey, epoch: i64, now: i64, until: i64) -> StoreResult<bool> {
    const OP: &str = "extend_lease";
    let done = keyed(EXTEND_LEASE, key).bind(epoch).bind(now).bind(until).execute(pool).await.map_err(fail(OP))?;
    Ok(done.rows_affected() == 1)
}

/// Commits `write` and releases the lease if `epoch` still holds it.
pub(super) async fn commit(pool: &Pool, key: &TokenKey, epoch: i64, write: &TokenWrite, now: i64) -> StoreResult<bool> {
    const OP: &str = "commit_token";
    let done = write_query(COMMIT, key, epoch, write, now).execute(pool).await.map_err(fail(OP))?;
    Ok(done.rows_affected() == 1)
}

/// Commits `write` if nobody wrote since `version`.
pub(super) async fn commit_if_version(
    pool: &Pool,
    key: &TokenKey,
    version: i64,
    write: &TokenWrite,
    now: i64,
) -> StoreResult<bool> {
    const OP: &str = "commit_token_if_version";
    let done = write_query(COMMIT_IF_VERSION, key, version, write, now).execute(pool).await.map_err(fail(OP))?;
    Ok(done.rows_affected() == 1)
}

/// `COMMIT` or `COMMIT_IF_VERSION` bound: key, fence (epoch or version), then the write's
/// fields.
fn write_query(sql: &'static str, key: &TokenKey, fence: i64, w: &TokenWrite, now: i64) -> Query {
    let (set_sealed, sealed) = match &w.sealed {
        Some(v) => (1i64, v.clone()),
        None => (0i64, None),
    };
    let (set_expires, expires) = match w.expires_at {
        Some(v) => (1i64, v),
        None => (0i64, None),
    };
    keyed(sql, key)
        .bind(fence)
        .bind(set_sealed)
        .bind(sealed)
        .bind(set_expires)
        .bind(expires)
        .bind(w.state.as_str())
        .bind(w.last_error.clone())
        .bind(w.last_refresh_at)
        .bind(now)
}

/// Records a use; never touches tokens or the version.
pub(super) async fn touch(pool: &Pool, key: &TokenKey, at: i64) -> StoreResult<()> {
    const OP: &str = "touch_token";
    keyed(TOUCH, key).bind(at).execute(pool).await.map_err(fail(OP))?;
    Ok(())
}

pub(super) async fn delete(pool: &Pool, key: &TokenKey) -> StoreResult<bool> {
    const OP: &str = "delete_token";
    let done = keyed(DELETE, key).execute(pool).await.map_err(fail(OP))?;
    Ok(done.rows_affected() > 0)
}
