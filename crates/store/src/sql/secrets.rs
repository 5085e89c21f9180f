//! Sealed secret values, one row per name and environment.

use latchkey_core::store::{SecretRow, StoreResult};

use super::{Pool, generation};
use crate::{fail, rows};

const PUT: &str = "INSERT INTO secrets (name, env, sealed, updated_at, changed_gen) \
     VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (name, env) DO UPDATE SET sealed = excluded.sealed, updated_at = excluded.updated_at, \
     changed_gen = excluded.changed_gen";
const DELETE: &str = "DELETE FROM secrets WHERE name = $1";
const LIST: &str = "SELECT name, env, sealed, updated_at FROM secrets ORDER BY name, env";
pub(super) const CHANGED_SINCE: &str =
    "SELECT name, env, sealed, updated_at FROM secrets WHERE changed_gen > $1 ORDER BY name, env";

/// Bumps the generation first and stamps the row with it, in one transaction.
pub(super) async fn put(pool: &Pool, row: &SecretRow) -> StoreResult<()> {
    const OP: &str = "put_secret";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    let generation = generation::bump_first(&mut tx, OP).await?;
    sqlx::query(PUT)
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

pub(super) async fn delete(pool: &Pool, name: &str) -> StoreResult<bool> {
    generation::delete_recorded(pool, "delete_secret", DELETE, "secret", name).await
}

pub(super) async fn list(pool: &Pool) -> StoreResult<Vec<SecretRow>> {
    const OP: &str = "list_secrets";
    let rows = sqlx::query_as::<_, rows::Secret>(LIST).fetch_all(pool).await.map_err(fail(OP))?;
    rows.into_iter().map(|row| row.into_row(OP)).collect()
}
