//! The background sweep's deletes (`Store::sweep`): per table, one statement deleting at most
//! `limit` rows whose time is before `before`, chosen by a subquery on the table's primary key,
//! so that no statement holds a long lock however large the backlog. On PostgreSQL the
//! subquery takes its rows `FOR UPDATE SKIP LOCKED` (the parent's [`SKIP_LOCKED`]): several
//! instances sweeping at once delete disjoint rows and never wait for (or deadlock on) each
//! other or a writer. SQLite serializes writers, and needs nothing.

use latchkey_core::store::{StoreResult, Sweep};

use super::{Pool, SKIP_LOCKED};
use crate::fail;

/// The table, its primary key's columns, and which of its rows are old (`$1`: before).
fn parts(what: Sweep) -> (&'static str, &'static str, &'static str) {
    match what {
        Sweep::Flows => ("flows", "handle_hash", "expires_at < $1"),
        Sweep::LoginCodes => ("login_codes", "hash", "expires_at < $1"),
        Sweep::AuthGrants => ("auth_grants", "hash", "expires_at < $1"),
        // Every token of a family has the family's absolute expiry, and a family is revoked
        // all at once: whole families go.
        Sweep::RefreshTokens => ("refresh_tokens", "hash", "(expires_at < $1 OR revoked_at < $1)"),
        Sweep::OAuthClients => ("oauth_clients", "id", "kept_until < $1"),
        Sweep::IdempotencyKeys => ("idempotency_keys", "scope, idem_key", "created_at < $1"),
        Sweep::Events => ("events", "id", "at < $1"),
    }
}

/// The statement sweeping `what`: `$1` before, `$2` the limit.
pub(super) fn statement(what: Sweep) -> String {
    let (table, key, old) = parts(what);
    format!("DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {old} LIMIT $2{SKIP_LOCKED})")
}

pub(super) async fn sweep(pool: &Pool, what: Sweep, before: i64, limit: u32) -> StoreResult<u64> {
    const OP: &str = "sweep";
    // Made of the fixed words above only: nothing a caller gives reaches the text.
    let done = sqlx::query(sqlx::AssertSqlSafe(statement(what)))
        .bind(before)
        .bind(i64::from(limit))
        .execute(pool)
        .await
        .map_err(fail(OP))?;
    Ok(done.rows_affected())
}
