//! The audit log of token and connection events (`events`), newest first.

use latchkey_core::store::{EventFilter, EventRow, StoreResult};

use super::Pool;
use crate::{fail, rows};

const INSERT: &str = "INSERT INTO events (id, at, kind, connector, env, connection, actor, outcome, \
     detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
const LIST: &str = "SELECT id, at, kind, connector, env, connection, actor, outcome, detail \
     FROM events WHERE ($1 IS NULL OR connector = $1) AND ($2 IS NULL OR kind = $2) \
     AND ($3 IS NULL OR at >= $3) AND ($4 IS NULL OR at < $4) \
     AND ($6 IS NULL OR at < (SELECT a.at FROM events a WHERE a.id = $6) \
          OR (at = (SELECT a.at FROM events a WHERE a.id = $6) AND id < $6)) \
     ORDER BY at DESC, id DESC LIMIT $5";

/// The number of events listed when the filter sets no positive limit.
const DEFAULT_LIMIT: i64 = 100;

pub(super) async fn insert(pool: &Pool, e: &EventRow) -> StoreResult<()> {
    const OP: &str = "insert_event";
    sqlx::query(INSERT)
        .bind(e.id.as_str())
        .bind(e.at)
        .bind(e.kind.as_str())
        .bind(e.connector.as_str())
        .bind(e.env.as_str())
        .bind(e.connection.as_str())
        .bind(e.actor.as_str())
        .bind(e.outcome.as_str())
        .bind(e.detail.as_str())
        .execute(pool)
        .await
        .map_err(fail(OP))?;
    Ok(())
}

pub(super) async fn list(pool: &Pool, f: &EventFilter) -> StoreResult<Vec<EventRow>> {
    const OP: &str = "list_events";
    let rows = sqlx::query_as::<_, rows::Event>(LIST)
        .bind(f.connector.as_deref())
        .bind(f.kind.as_deref())
        .bind(f.since)
        .bind(f.until)
        .bind(if f.limit > 0 { f.limit } else { DEFAULT_LIMIT })
        .bind(f.starting_after.as_deref())
        .fetch_all(pool)
        .await
        .map_err(fail(OP))?;
    rows.into_iter().map(|row| row.into_row(OP)).collect()
}
