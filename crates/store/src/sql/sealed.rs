//! Installation-wide values (`meta`, written once) and every sealed value in the store, for
//! `vault rotate`: read them all, then replace each one only if it is still what was read.

use latchkey_core::store::{SealedPlace, StoreResult};

use super::Pool;
use crate::{fail, rows};

const GET_META: &str = "SELECT value FROM meta WHERE key = $1";
const INSERT_META: &str = "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";

const SEALED_META: &str = "SELECT key, value FROM meta WHERE key IN ('vault.key_check', 'audit.salt')";
const SEALED_SECRETS: &str = "SELECT name, env, sealed FROM secrets";
const SEALED_TOKENS: &str = "SELECT connector, env, connection, sealed FROM tokens WHERE sealed IS NOT NULL";
const SEALED_FLOWS: &str = "SELECT handle_hash, kind, env, sealed FROM flows WHERE sealed IS NOT NULL";
const SEALED_SIGNING_KEYS: &str = "SELECT kid, sealed FROM signing_keys";
const SEALED_REFRESH_SUCCESSORS: &str = "SELECT hash, env, successor FROM refresh_tokens WHERE successor IS NOT NULL";
/// Kept answers only: a claim in progress (`status` 0) holds no answer yet.
const SEALED_IDEMPOTENCY_ANSWERS: &str = "SELECT scope, idem_key, answer FROM idempotency_keys WHERE status <> 0";

const REPLACE_META: &str = "UPDATE meta SET value = $3 WHERE key = $1 AND value = $2";
const REPLACE_SECRET: &str = "UPDATE secrets SET sealed = $4 WHERE name = $1 AND env = $2 AND sealed = $3";
const REPLACE_TOKEN: &str =
    "UPDATE tokens SET sealed = $5 WHERE connector = $1 AND env = $2 AND connection = $3 AND sealed = $4";
const REPLACE_FLOW: &str = "UPDATE flows SET sealed = $3 WHERE handle_hash = $1 AND sealed = $2";
const REPLACE_SIGNING_KEY: &str = "UPDATE signing_keys SET sealed = $3 WHERE kid = $1 AND sealed = $2";
const REPLACE_REFRESH_SUCCESSOR: &str = "UPDATE refresh_tokens SET successor = $3 WHERE hash = $1 AND successor = $2";
const REPLACE_IDEMPOTENCY_ANSWER: &str =
    "UPDATE idempotency_keys SET answer = $4 WHERE scope = $1 AND idem_key = $2 AND status <> 0 AND answer = $3";

pub(super) async fn get_meta(pool: &Pool, key: &str) -> StoreResult<Option<Vec<u8>>> {
    const OP: &str = "get_meta";
    sqlx::query_scalar::<_, Vec<u8>>(GET_META).bind(key).fetch_optional(pool).await.map_err(fail(OP))
}

/// Inserts unless the key exists; returns whether it inserted.
pub(super) async fn insert_meta(pool: &Pool, key: &str, value: &[u8]) -> StoreResult<bool> {
    const OP: &str = "insert_meta";
    let done = sqlx::query(INSERT_META).bind(key).bind(value).execute(pool).await.map_err(fail(OP))?;
    Ok(done.rows_affected() == 1)
}

/// Every sealed value with its place: meta, secrets, tokens, flows, signing keys, refresh
/// successors, kept `Idempotency-Key` answers, in that order.
pub(super) async fn values(pool: &Pool) -> StoreResult<Vec<(SealedPlace, Vec<u8>)>> {
    const OP: &str = "sealed_values";
    let mut out = Vec::new();
    let meta = sqlx::query_as::<_, rows::sealed::Meta>(SEALED_META).fetch_all(pool).await.map_err(fail(OP))?;
    out.extend(meta.into_iter().map(rows::sealed::Meta::into_place));
    let secrets = sqlx::query_as::<_, rows::sealed::Secret>(SEALED_SECRETS).fetch_all(pool).await.map_err(fail(OP))?;
    for row in secrets {
        out.push(row.into_place(OP)?);
    }
    let tokens = sqlx::query_as::<_, rows::sealed::Token>(SEALED_TOKENS).fetch_all(pool).await.map_err(fail(OP))?;
    for row in tokens {
        out.push(row.into_place(OP)?);
    }
    let flows = sqlx::query_as::<_, rows::sealed::Flow>(SEALED_FLOWS).fetch_all(pool).await.map_err(fail(OP))?;
    for row in flows {
        out.push(row.into_place(OP)?);
    }
    let signing_keys =
        sqlx::query_as::<_, rows::sealed::SigningKey>(SEALED_SIGNING_KEYS).fetch_all(pool).await.map_err(fail(OP))?;
    out.extend(signing_keys.into_iter().map(rows::sealed::SigningKey::into_place));
    let successors = sqlx::query_as::<_, rows::sealed::RefreshSuccessor>(SEALED_REFRESH_SUCCESSORS)
        .fetch_all(pool)
        .await
        .map_err(fail(OP))?;
    for row in successors {
        out.push(row.into_place(OP)?);
    }
    let answers = sqlx::query_as::<_, rows::sealed::IdempotencyAnswer>(SEALED_IDEMPOTENCY_ANSWERS)
        .fetch_all(pool)
        .await
        .map_err(fail(OP))?;
    out.extend(answers.into_iter().map(rows::sealed::IdempotencyAnswer::into_place));
    Ok(out)
}

/// Replaces the value at `place` if it is still `old` (compare-and-swap); returns whether it
/// replaced.
pub(super) async fn replace(pool: &Pool, place: &SealedPlace, old: &[u8], new: &[u8]) -> StoreResult<bool> {
    const OP: &str = "replace_sealed";
    let query = match place {
        SealedPlace::Meta(key) => sqlx::query(REPLACE_META).bind(key.as_str()),
        SealedPlace::Secret(name, env) => sqlx::query(REPLACE_SECRET).bind(name.as_str()).bind(env.as_str()),
        SealedPlace::Token(k) => {
            sqlx::query(REPLACE_TOKEN).bind(k.connector.as_str()).bind(k.env.as_str()).bind(k.connection.as_str())
        }
        SealedPlace::Flow { hash, .. } => sqlx::query(REPLACE_FLOW).bind(hash.as_slice()),
        SealedPlace::SigningKey(kid) => sqlx::query(REPLACE_SIGNING_KEY).bind(kid.as_str()),
        SealedPlace::RefreshSuccessor { hash, .. } => sqlx::query(REPLACE_REFRESH_SUCCESSOR).bind(hash.as_slice()),
        SealedPlace::IdempotencyAnswer { scope, key } => {
            sqlx::query(REPLACE_IDEMPOTENCY_ANSWER).bind(scope.as_str()).bind(key.as_str())
        }
    };
    let done = query.bind(old).bind(new).execute(pool).await.map_err(fail(OP))?;
    Ok(done.rows_affected() == 1)
}
