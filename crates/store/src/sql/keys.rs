//! Admin and app keys: only the SHA-256 of each key.

use latchkey_core::store::{KeyRow, StoreError, StoreResult};

use super::{Pool, generation};
use crate::{fail, rows};

const INSERT: &str = "INSERT INTO api_keys (id, name, kind, hash, created_at, last_used_at, changed_gen) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING";
const FIND: &str = "SELECT id, name, kind, hash, created_at, last_used_at FROM api_keys WHERE id = $1";
const LIST: &str = "SELECT id, name, kind, hash, created_at, last_used_at FROM api_keys ORDER BY created_at, id";
pub(super) const CHANGED_SINCE: &str = "SELECT id, name, kind, hash, created_at, last_used_at FROM api_keys \
     WHERE changed_gen > $1 ORDER BY created_at, id";
const DELETE: &str = "DELETE FROM api_keys WHERE id = $1";
/// Only ever moves `last_used_at` forward: instances that flush late cannot move it back.
const TOUCH: &str = "UPDATE api_keys SET last_used_at = $2 \
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";

/// Bumps the generation first and stamps the row with it; `Conflict` (and no bump) when the
/// id exists.
pub(super) async fn insert(pool: &Pool, row: &KeyRow) -> StoreResult<()> {
    const OP: &str = "insert_key";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    let generation = generation::bump_first(&mut tx, OP).await?;
    let done = sqlx::query(INSERT)
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

pub(super) async fn find(pool: &Pool, id: &str) -> StoreResult<Option<KeyRow>> {
    const OP: &str = "find_key";
    let row = sqlx::query_as::<_, rows::Key>(FIND).bind(id).fetch_optional(pool).await.map_err(fail(OP))?;
    row.map(|row| row.into_row(OP)).transpose()
}

pub(super) async fn list(pool: &Pool) -> StoreResult<Vec<KeyRow>> {
    const OP: &str = "list_keys";
    let rows = sqlx::query_as::<_, rows::Key>(LIST).fetch_all(pool).await.map_err(fail(OP))?;
    rows.into_iter().map(|row| row.into_row(OP)).collect()
}

pub(super) async fn delete(pool: &Pool, id: &str) -> StoreResult<bool> {
    generation::delete_recorded(pool, "delete_key", DELETE, "key", id).await
}

/// Records a use; no bump.
pub(super) async fn touch(pool: &Pool, id: &str, at: i64) -> StoreResult<()> {
    const OP: &str = "touch_key";
    sqlx::query(TOUCH).bind(id).bind(at).execute(pool).await.map_err(fail(OP))?;
    Ok(())
}
