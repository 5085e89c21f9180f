//! The identity provider's records: users, signing keys, the refresh tokens Latchkey issues
//! (stored as SHA-256, rotated in families) and one-time sign-in codes. Signing key changes
//! and family revocations bump the generation: every instance publishes the keys and drops
//! the family's access tokens.

use latchkey_core::Env;
use latchkey_core::store::{
    AuthGrantRow, GrantTake, LoginCodeRow, OAuthClientRow, RefreshRow, RefreshTake, SigningKeyRow, StoreResult, UserRow,
};

use super::{Db, Pool, generation};
use crate::{fail, rows};

const UPSERT_USER: &str = "INSERT INTO users (env, id, email, attributes, provider, provider_user_id, \
     created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (env, id) DO UPDATE SET \
     email = COALESCE(excluded.email, users.email), attributes = excluded.attributes, \
     provider = COALESCE(excluded.provider, users.provider), \
     provider_user_id = COALESCE(excluded.provider_user_id, users.provider_user_id), updated_at = excluded.updated_at \
     RETURNING env, id, email, attributes, provider, provider_user_id, created_at, updated_at";
const GET_USER: &str = "SELECT env, id, email, attributes, provider, provider_user_id, created_at, updated_at \
     FROM users WHERE env = $1 AND id = $2";
const FIND_USER_BY_PROVIDER: &str = "SELECT env, id, email, attributes, provider, provider_user_id, \
     created_at, updated_at FROM users WHERE env = $1 AND provider = $2 AND provider_user_id = $3";
const DELETE_USER: &str = "DELETE FROM users WHERE env = $1 AND id = $2";

const INSERT_SIGNING_KEY: &str = "INSERT INTO signing_keys (kid, alg, sealed, created_at, activates_at, \
     retired_at) VALUES ($1, $2, $3, $4, $5, $6)";
const LIST_SIGNING_KEYS: &str = "SELECT kid, alg, sealed, created_at, activates_at, retired_at \
     FROM signing_keys ORDER BY created_at, kid";
const RETIRE_SIGNING_KEY: &str = "UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL";
const DELETE_SIGNING_KEY: &str = "DELETE FROM signing_keys WHERE kid = $1";

const INSERT_REFRESH: &str = "INSERT INTO refresh_tokens (hash, family, env, user_id, created_at, \
     expires_at, used_at, revoked_at, successor, scope, audience) \
     VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, NULL, $7, $8)";
const ROTATE_REFRESH: &str = "UPDATE refresh_tokens SET used_at = $2, successor = $3 \
     WHERE hash = $1 AND used_at IS NULL AND revoked_at IS NULL \
     RETURNING hash, family, env, user_id, created_at, expires_at, used_at, revoked_at, successor, scope, audience";
const GET_REFRESH: &str = "SELECT hash, family, env, user_id, created_at, expires_at, used_at, revoked_at, \
     successor, scope, audience FROM refresh_tokens WHERE hash = $1";
const REVOKE_FAMILY: &str = "UPDATE refresh_tokens SET revoked_at = $2, successor = NULL \
     WHERE family = $1 AND revoked_at IS NULL";
const REVOKED_FAMILIES: &str = "SELECT DISTINCT family FROM refresh_tokens WHERE revoked_at >= $1";
const REVOKE_USER_FAMILIES: &str = "UPDATE refresh_tokens SET revoked_at = $3, successor = NULL \
     WHERE env = $1 AND user_id = $2 AND revoked_at IS NULL";

const INSERT_OAUTH_CLIENT: &str =
    "INSERT INTO oauth_clients (id, metadata, created_at, kept_until) VALUES ($1, $2, $3, $4)";
const GET_OAUTH_CLIENT: &str = "SELECT id, metadata, created_at, kept_until FROM oauth_clients WHERE id = $1";
/// Never moves `kept_until` back; a lapsed registration (`kept_until` before now) stays lapsed.
const KEEP_OAUTH_CLIENT: &str = "UPDATE oauth_clients \
     SET kept_until = CASE WHEN kept_until < $3 THEN $3 ELSE kept_until END WHERE id = $1 AND kept_until >= $2";
const INSERT_AUTH_GRANT: &str = "INSERT INTO auth_grants (hash, kind, env, user_id, client_id, data, family, \
     created_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL)";
const TAKE_AUTH_GRANT: &str = "UPDATE auth_grants SET used_at = $3 WHERE hash = $1 AND kind = $2 \
     AND used_at IS NULL RETURNING hash, kind, env, user_id, client_id, data, family, created_at, expires_at, used_at";
const GET_AUTH_GRANT: &str = "SELECT hash, kind, env, user_id, client_id, data, family, created_at, expires_at, \
     used_at FROM auth_grants WHERE hash = $1 AND kind = $2";

const INSERT_LOGIN_CODE: &str = "INSERT INTO login_codes (hash, env, user_id, connection_id, created_at, \
     expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)";
const TAKE_LOGIN_CODE: &str = "UPDATE login_codes SET used_at = $2 WHERE hash = $1 AND used_at IS NULL \
     AND env = $3 AND expires_at >= $2 RETURNING hash, env, user_id, connection_id, created_at, expires_at";

/// Inserts or updates the user (keeping what the new row leaves unset); answers the row as
/// stored, in the same statement.
pub(super) async fn upsert_user(pool: &Pool, row: &UserRow) -> StoreResult<UserRow> {
    const OP: &str = "upsert_user";
    sqlx::query_as::<_, rows::User>(UPSERT_USER)
        .bind(row.env.as_str())
        .bind(row.id.as_str())
        .bind(row.email.as_deref())
        .bind(row.attributes.as_str())
        .bind(row.provider.as_deref())
        .bind(row.provider_user_id.as_deref())
        .bind(row.created_at)
        .bind(row.updated_at)
        .fetch_one(pool)
        .await
        .map_err(fail(OP))?
        .into_row(OP)
}

pub(super) async fn get_user(pool: &Pool, env: Env, id: &str) -> StoreResult<Option<UserRow>> {
    const OP: &str = "get_user";
    let row = sqlx::query_as::<_, rows::User>(GET_USER)
        .bind(env.as_str())
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(fail(OP))?;
    row.map(|row| row.into_row(OP)).transpose()
}

pub(super) async fn find_user_by_provider(
    pool: &Pool,
    env: Env,
    provider: &str,
    provider_user_id: &str,
) -> StoreResult<Option<UserRow>> {
    const OP: &str = "find_user_by_provider";
    let row = sqlx::query_as::<_, rows::User>(FIND_USER_BY_PROVIDER)
        .bind(env.as_str())
        .bind(provider)
        .bind(provider_user_id)
        .fetch_optional(pool)
        .await
        .map_err(fail(OP))?;
    row.map(|row| row.into_row(OP)).transpose()
}

pub(super) async fn delete_user(pool: &Pool, env: Env, id: &str) -> StoreResult<bool> {
    const OP: &str = "delete_user";
    let done = sqlx::query(DELETE_USER).bind(env.as_str()).bind(id).execute(pool).await.map_err(fail(OP))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn insert_signing_key(pool: &Pool, row: &SigningKeyRow) -> StoreResult<()> {
    const OP: &str = "insert_signing_key";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    sqlx::query(INSERT_SIGNING_KEY)
        .bind(row.kid.as_str())
        .bind(row.alg.as_str())
        .bind(row.sealed.as_slice())
        .bind(row.created_at)
        .bind(row.activates_at)
        .bind(row.retired_at)
        .execute(&mut *tx)
        .await
        .map_err(fail(OP))?;
    generation::bump_and_commit(tx, OP).await
}

pub(super) async fn list_signing_keys(pool: &Pool) -> StoreResult<Vec<SigningKeyRow>> {
    const OP: &str = "list_signing_keys";
    let rows = sqlx::query_as::<_, rows::SigningKey>(LIST_SIGNING_KEYS).fetch_all(pool).await.map_err(fail(OP))?;
    Ok(rows.into_iter().map(SigningKeyRow::from).collect())
}

/// `Ok(false)` (and no bump) when the key is unknown or retired already.
pub(super) async fn retire_signing_key(pool: &Pool, kid: &str, at: i64) -> StoreResult<bool> {
    const OP: &str = "retire_signing_key";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    let done = sqlx::query(RETIRE_SIGNING_KEY).bind(kid).bind(at).execute(&mut *tx).await.map_err(fail(OP))?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    generation::bump_and_commit(tx, OP).await?;
    Ok(true)
}

/// `Ok(false)` (and no bump) when the key is unknown.
pub(super) async fn delete_signing_key(pool: &Pool, kid: &str) -> StoreResult<bool> {
    const OP: &str = "delete_signing_key";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    let done = sqlx::query(DELETE_SIGNING_KEY).bind(kid).execute(&mut *tx).await.map_err(fail(OP))?;
    if done.rows_affected() == 0 {
        return Ok(false);
    }
    generation::bump_and_commit(tx, OP).await?;
    Ok(true)
}

pub(super) async fn insert_refresh(pool: &Pool, row: &RefreshRow) -> StoreResult<()> {
    const OP: &str = "insert_refresh";
    insert_refresh_with(pool, row).await.map_err(fail(OP))
}

/// Inserts a refresh-token row (unused, unrevoked, no successor) through `executor`.
async fn insert_refresh_with<'e>(
    executor: impl sqlx::Executor<'e, Database = Db>,
    row: &RefreshRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_REFRESH)
        .bind(row.hash.as_slice())
        .bind(row.family.as_str())
        .bind(row.env.as_str())
        .bind(row.user_id.as_str())
        .bind(row.created_at)
        .bind(row.expires_at)
        .bind(row.scope.as_deref())
        .bind(row.audience.as_deref())
        .execute(executor)
        .await?;
    Ok(())
}

/// Marks the token used with `sealed_pair` on it and inserts `successor`, in one
/// transaction; when it was not there to take, reads what is there (`Spent` or `Unknown`).
pub(super) async fn rotate_refresh(
    pool: &Pool,
    hash: &[u8],
    now: i64,
    successor: &RefreshRow,
    sealed_pair: &[u8],
) -> StoreResult<RefreshTake> {
    const OP: &str = "rotate_refresh";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    let taken = sqlx::query_as::<_, rows::Refresh>(ROTATE_REFRESH)
        .bind(hash)
        .bind(now)
        .bind(sealed_pair)
        .fetch_optional(&mut *tx)
        .await
        .map_err(fail(OP))?;
    if let Some(row) = taken {
        insert_refresh_with(&mut *tx, successor).await.map_err(fail(OP))?;
        tx.commit().await.map_err(fail(OP))?;
        return Ok(RefreshTake::Fresh(row.into_row(OP)?));
    }
    tx.rollback().await.map_err(fail(OP))?;
    Ok(match get_refresh(pool, hash).await? {
        Some(r) => RefreshTake::Spent(r),
        None => RefreshTake::Unknown,
    })
}

pub(super) async fn get_refresh(pool: &Pool, hash: &[u8]) -> StoreResult<Option<RefreshRow>> {
    const OP: &str = "get_refresh";
    let row =
        sqlx::query_as::<_, rows::Refresh>(GET_REFRESH).bind(hash).fetch_optional(pool).await.map_err(fail(OP))?;
    row.map(|row| row.into_row(OP)).transpose()
}

/// Revokes the family's live tokens and bumps the generation, whether or not any changed.
pub(super) async fn revoke_family(pool: &Pool, family: &str, now: i64) -> StoreResult<u64> {
    const OP: &str = "revoke_family";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    let done = sqlx::query(REVOKE_FAMILY).bind(family).bind(now).execute(&mut *tx).await.map_err(fail(OP))?;
    if done.rows_affected() == 0 {
        return Ok(0); // rolled back: nothing changed, no bump
    }
    generation::bump_and_commit(tx, OP).await?;
    Ok(done.rows_affected())
}

pub(super) async fn revoked_families(pool: &Pool, since: i64) -> StoreResult<Vec<String>> {
    const OP: &str = "revoked_families";
    sqlx::query_scalar::<_, String>(REVOKED_FAMILIES).bind(since).fetch_all(pool).await.map_err(fail(OP))
}

/// Revokes every unrevoked refresh token of the user, all families at once, with one
/// generation bump (none when nothing changed).
pub(super) async fn revoke_user_families(pool: &Pool, env: Env, user_id: &str, now: i64) -> StoreResult<u64> {
    const OP: &str = "revoke_user_families";
    let mut tx = pool.begin().await.map_err(fail(OP))?;
    let done = sqlx::query(REVOKE_USER_FAMILIES)
        .bind(env.as_str())
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(fail(OP))?;
    if done.rows_affected() == 0 {
        return Ok(0); // rolled back: nothing changed, no bump
    }
    generation::bump_and_commit(tx, OP).await?;
    Ok(done.rows_affected())
}

pub(super) async fn insert_login_code(pool: &Pool, row: &LoginCodeRow) -> StoreResult<()> {
    const OP: &str = "insert_login_code";
    sqlx::query(INSERT_LOGIN_CODE)
        .bind(row.hash.as_slice())
        .bind(row.env.as_str())
        .bind(row.user_id.as_str())
        .bind(row.connection_id.as_str())
        .bind(row.created_at)
        .bind(row.expires_at)
        .execute(pool)
        .await
        .map_err(fail(OP))?;
    Ok(())
}

/// Marks the code used in one statement, if it is unused, unexpired at `now` and of `env`.
pub(super) async fn take_login_code(pool: &Pool, hash: &[u8], env: Env, now: i64) -> StoreResult<Option<LoginCodeRow>> {
    const OP: &str = "take_login_code";
    let row = sqlx::query_as::<_, rows::LoginCode>(TAKE_LOGIN_CODE)
        .bind(hash)
        .bind(now)
        .bind(env.as_str())
        .fetch_optional(pool)
        .await
        .map_err(fail(OP))?;
    row.map(|row| row.into_row(OP)).transpose()
}

pub(super) async fn insert_oauth_client(pool: &Pool, row: &OAuthClientRow) -> StoreResult<()> {
    const OP: &str = "insert_oauth_client";
    sqlx::query(INSERT_OAUTH_CLIENT)
        .bind(row.id.as_str())
        .bind(row.metadata.as_str())
        .bind(row.created_at)
        .bind(row.kept_until)
        .execute(pool)
        .await
        .map_err(fail(OP))?;
    Ok(())
}

pub(super) async fn get_oauth_client(pool: &Pool, id: &str) -> StoreResult<Option<OAuthClientRow>> {
    const OP: &str = "get_oauth_client";
    let row = sqlx::query_as::<_, rows::OAuthClient>(GET_OAUTH_CLIENT)
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(fail(OP))?;
    Ok(row.map(OAuthClientRow::from))
}

/// `Ok(false)` when the client is unknown or its registration lapsed at `now`.
pub(super) async fn keep_oauth_client(pool: &Pool, id: &str, now: i64, until: i64) -> StoreResult<bool> {
    const OP: &str = "keep_oauth_client";
    let done = sqlx::query(KEEP_OAUTH_CLIENT).bind(id).bind(now).bind(until).execute(pool).await.map_err(fail(OP))?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn insert_auth_grant(pool: &Pool, row: &AuthGrantRow) -> StoreResult<()> {
    const OP: &str = "insert_auth_grant";
    sqlx::query(INSERT_AUTH_GRANT)
        .bind(row.hash.as_slice())
        .bind(row.kind.as_str())
        .bind(row.env.as_str())
        .bind(row.user_id.as_str())
        .bind(row.client_id.as_str())
        .bind(row.data.as_str())
        .bind(row.family.as_str())
        .bind(row.created_at)
        .bind(row.expires_at)
        .execute(pool)
        .await
        .map_err(fail(OP))?;
    Ok(())
}

/// Marks the handle used in one statement if it was unused; otherwise reads what is there.
pub(super) async fn take_auth_grant(pool: &Pool, hash: &[u8], kind: &str, now: i64) -> StoreResult<GrantTake> {
    const OP: &str = "take_auth_grant";
    let taken = sqlx::query_as::<_, rows::AuthGrant>(TAKE_AUTH_GRANT)
        .bind(hash)
        .bind(kind)
        .bind(now)
        .fetch_optional(pool)
        .await
        .map_err(fail(OP))?;
    if let Some(row) = taken {
        return Ok(GrantTake::Fresh(row.into_row(OP)?));
    }
    let found = sqlx::query_as::<_, rows::AuthGrant>(GET_AUTH_GRANT)
        .bind(hash)
        .bind(kind)
        .fetch_optional(pool)
        .await
        .map_err(fail(OP))?;
    Ok(match found {
        Some(row) => GrantTake::Used(row.into_row(OP)?),
        None => GrantTake::Unknown,
    })
}
