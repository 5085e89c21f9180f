//! The generation: a counter bumped by every write that changes what instances hold in
//! memory, the deletions recorded under it, and `changes_since`, which reads what changed
//! after a generation a reader saw.

use latchkey_core::store::{StoreChanges, StoreResult};

use super::{BUMP_GENERATION, Pool, Tx, keys, secrets};
use crate::{fail, rows};

const GENERATION: &str = "SELECT value FROM generation WHERE id = 1";
const RECORD_DELETION: &str = "INSERT INTO deletions (kind, name, changed_gen) VALUES ($1, $2, $3) \
     ON CONFLICT (kind, name) DO UPDATE SET changed_gen = excluded.changed_gen";
const DELETIONS_SINCE: &str = "SELECT kind, name FROM deletions WHERE changed_gen > $1 ORDER BY kind, name";

pub(super) async fn current(pool: &Pool) -> StoreResult<i64> {
    const OP: &str = "generation";
    sqlx::query_scalar::<_, i64>(GENERATION).fetch_one(pool).await.map_err(fail(OP))
}

/// Runs the generation bump inside the write's transaction, then commits both.
pub(super) async fn bump_and_commit(mut tx: Tx<'_>, op: &'static str) -> StoreResult<()> {
    bump_first(&mut tx, op).await?;
    tx.commit().await.map_err(fail(op))
}

/// Starts a secret or app key write: bumps the generation first and returns the new value,
/// which the write stamps on its row (`changed_gen`) or its deletion. On PostgreSQL the
/// generation row stays locked until the write commits, so generations are handed out in
/// commit order and a reader that sees generation `g` also sees every row stamped `g` or
/// less; and the bump notifies listeners of the new generation when the write commits
/// ([`BUMP_GENERATION`]).
pub(super) async fn bump_first(tx: &mut Tx<'_>, op: &'static str) -> StoreResult<i64> {
    sqlx::query_scalar::<_, i64>(BUMP_GENERATION).fetch_one(&mut **tx).await.map_err(fail(op))
}

/// Deletes with `delete` (bound to `name`) and records the deletion of `kind` `name` under
/// the generation it bumped, in one transaction; `Ok(false)` (and no bump) when nothing was
/// there. Readers catching up learn of it from `deletions` (`changes_since`).
pub(super) async fn delete_recorded(
    pool: &Pool,
    op: &'static str,
    delete: &'static str,
    kind: &'static str,
    name: &str,
) -> StoreResult<bool> {
    let mut tx = pool.begin().await.map_err(fail(op))?;
    let generation = bump_first(&mut tx, op).await?;
    let done = sqlx::query(delete).bind(name).execute(&mut *tx).await.map_err(fail(op))?;
    if done.rows_affected() == 0 {
        return Ok(false); // rolled back: no bump
    }
    sqlx::query(RECORD_DELETION).bind(kind).bind(name).bind(generation).execute(&mut *tx).await.map_err(fail(op))?;
    tx.commit().await.map_err(fail(op))?;
    Ok(true)
}

pub(super) async fn changes_since(pool: &Pool, since: i64) -> StoreResult<StoreChanges> {
    const OP: &str = "changes_since";
    // The generation first: every row stamped up to it is committed already.
    let through = sqlx::query_scalar::<_, i64>(GENERATION).fetch_one(pool).await.map_err(fail(OP))?;
    let mut changes = StoreChanges { through, ..StoreChanges::default() };
    let deletions =
        sqlx::query_as::<_, rows::Deletion>(DELETIONS_SINCE).bind(since).fetch_all(pool).await.map_err(fail(OP))?;
    for rows::Deletion { kind, name } in deletions {
        match kind.as_str() {
            "secret" => changes.deleted_secrets.push(name),
            _ => changes.deleted_keys.push(name),
        }
    }
    let secrets = sqlx::query_as::<_, rows::Secret>(secrets::CHANGED_SINCE)
        .bind(since)
        .fetch_all(pool)
        .await
        .map_err(fail(OP))?;
    for row in secrets {
        changes.secrets.push(row.into_row(OP)?);
    }
    let keys =
        sqlx::query_as::<_, rows::Key>(keys::CHANGED_SINCE).bind(since).fetch_all(pool).await.map_err(fail(OP))?;
    for row in keys {
        changes.keys.push(row.into_row(OP)?);
    }
    Ok(changes)
}
