//! Connectors created through the admin API, as JSON of the config shape. Writes bump the
//! generation after the write, in its transaction; connectors are few and read whole.

use latchkey_core::store::{ConnectorRow, StoreResult};

use super::{Pool, generation};
use crate::{fail, rows};

const PUT: &str = "INSERT INTO connectors (name, definition, updated_at) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, updated_at = excluded.updated_at";
const INSERT: &str = "INSERT INTO connectors (name, definition, updated_at) VALUES ($1, $2, $3) \
     ON CONFLICT (name) DO NOTHING";
const LIST: &str = "SELECT name, definition, updated_at FROM connectors ORDER BY name";
const DELETE: &str = "DELETE FROM connectors WHERE name = $1";

pub(super) async fn put(pool: &Pool, row: &ConnectorRow) -> StoreResult<()> {
    const OP: &str = "put_connector";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    sqlx::query(PUT)
        .bind(row.name.as_str())
        .bind(row.definition.as_str())
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(fail(OP))?;
    generation::bump_and_commit(tx, OP).await
}

/// `Ok(false)` (and no bump) when a connector of that name is stored: the insert and the
/// check are one statement, so of two creators of a name exactly one inserts (on PostgreSQL
/// the second waits for the first's transaction, then finds the name taken).
pub(super) async fn insert(pool: &Pool, row: &ConnectorRow) -> StoreResult<bool> {
    const OP: &str = "insert_connector";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    let done = sqlx::query(INSERT)
        .bind(row.name.as_str())
        .bind(row.definition.as_str())
        .bind(row.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(fail(OP))?;
    if done.rows_affected() == 0 {
        return Ok(false); // rolled back: nothing changed, no bump
    }
    generation::bump_and_commit(tx, OP).await?;
    Ok(true)
}

pub(super) async fn list(pool: &Pool) -> StoreResult<Vec<ConnectorRow>> {
    const OP: &str = "list_connectors";
    let rows = sqlx::query_as::<_, rows::Connector>(LIST).fetch_all(pool).await.map_err(fail(OP))?;
    Ok(rows.into_iter().map(ConnectorRow::from).collect())
}

/// `Ok(false)` (and no bump) when there was no such connector.
pub(super) async fn delete(pool: &Pool, name: &str) -> StoreResult<bool> {
    const OP: &str = "delete_connector";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    let done = sqlx::query(DELETE).bind(name).execute(&mut *tx).await.map_err(fail(OP))?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    generation::bump_and_commit(tx, OP).await?;
    Ok(true)
}
