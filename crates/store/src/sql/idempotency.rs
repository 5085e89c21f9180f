//! `Idempotency-Key`s (`idempotency_keys`): claimed while the first request runs, then its
//! answer, kept 24 hours (a claim forgets its own key's stale row; `sweep.rs` the rest).

use latchkey_core::store::{IdempotencyRow, StoreResult};

use super::Pool;
use crate::{fail, rows};

/// This key's stale claim only (one row, on the request's path); the background sweep deletes
/// the others.
const FORGET: &str = "DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 \
     AND (created_at < $3 OR (status = 0 AND created_at < $4))";
const CLAIM: &str = "INSERT INTO idempotency_keys (scope, idem_key, fingerprint, status, answer, created_at) \
     VALUES ($1, $2, $3, 0, $4, $5) ON CONFLICT (scope, idem_key) DO NOTHING";
const GET: &str = "SELECT scope, idem_key, fingerprint, status, answer, created_at FROM idempotency_keys \
     WHERE scope = $1 AND idem_key = $2";
const FINISH: &str =
    "UPDATE idempotency_keys SET status = $3, answer = $4 WHERE scope = $1 AND idem_key = $2 AND status = 0";
const RELEASE: &str = "DELETE FROM idempotency_keys WHERE scope = $1 AND idem_key = $2 AND status = 0";

pub(super) async fn claim(
    pool: &Pool,
    row: &IdempotencyRow,
    expired_before: i64,
    abandoned_before: i64,
) -> StoreResult<Option<IdempotencyRow>> {
    const OP: &str = "claim_idempotency";
    sqlx::query(FORGET)
        .bind(row.scope.as_str())
        .bind(row.key.as_str())
        .bind(expired_before)
        .bind(abandoned_before)
        .execute(pool)
        .await
        .map_err(fail(OP))?;
    // The claim and the read are two statements: a claim forgotten between them (24 hours
    // old) is read as none, and this request is then answered without one (`claim` again).
    for _ in 0..2 {
        let claimed = sqlx::query(CLAIM)
            .bind(row.scope.as_str())
            .bind(row.key.as_str())
            .bind(row.fingerprint.as_slice())
            .bind(&[][..] as &[u8])
            .bind(row.created_at)
            .execute(pool)
            .await
            .map_err(fail(OP))?;
        if claimed.rows_affected() == 1 {
            return Ok(None);
        }
        let found = sqlx::query_as::<_, rows::Idempotency>(GET)
            .bind(row.scope.as_str())
            .bind(row.key.as_str())
            .fetch_optional(pool)
            .await
            .map_err(fail(OP))?;
        if let Some(found) = found {
            return Ok(Some(found.into_row()));
        }
    }
    Err(latchkey_core::store::StoreError::Unavailable {
        op: OP,
        reason: "the key's claim came and went twice while it was read".into(),
    })
}

pub(super) async fn finish(pool: &Pool, scope: &str, key: &str, status: i64, answer: &[u8]) -> StoreResult<()> {
    const OP: &str = "finish_idempotency";
    sqlx::query(FINISH).bind(scope).bind(key).bind(status).bind(answer).execute(pool).await.map_err(fail(OP))?;
    Ok(())
}

pub(super) async fn release(pool: &Pool, scope: &str, key: &str) -> StoreResult<()> {
    const OP: &str = "release_idempotency";
    sqlx::query(RELEASE).bind(scope).bind(key).execute(pool).await.map_err(fail(OP))?;
    Ok(())
}
