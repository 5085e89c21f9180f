//! Latchkey as identity provider (SPEC §9): users, signed user access tokens (JWT, `typ`
//! `at+jwt`), opaque refresh tokens stored only as hashes and rotated with reuse detection and
//! a short retry window, the JWKS, RFC 7662 introspection, RFC 7009 revocation, and key
//! rotation that publishes before it signs. The rules apart from the store are in `claims.rs`
//! (tokens and refresh families) and `keys.rs` (signing keys).

pub(crate) mod claims;
mod keys;

use std::sync::Arc;

use latchkey_vault::identity::{SigningAlg, SigningKey};
use latchkey_vault::{Aad, Vault, random, sha256};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{Value, json};

use super::connections::Connections;
use super::mirror::Mirror;
use crate::clock::Clock;
use crate::store::{RefreshRow, RefreshTake, SigningKeyRow, Store, StoreError, UserRow};
use crate::{CallError, Env, ErrorCode};

pub use claims::{Introspection, TokenPair, UserClaims};
pub(crate) use keys::key_aad;
pub use keys::{IdentityKeys, JWKS_MAX_AGE_S, PUBLISH_BEFORE_SIGNING_S};

fn unavailable(e: StoreError) -> CallError {
    CallError::from(e)
}

fn invalid_grant(message: &str) -> CallError {
    let mut e = CallError::new(ErrorCode::InvalidParams, message);
    e.details.insert("oauth_error".into(), Value::String("invalid_grant".into()));
    e
}

pub(crate) fn successor_aad(hash: &[u8], env: Env) -> Aad {
    Aad::new("refresh", latchkey_vault::to_hex(hash), "successor", env.as_str())
}

/// What a refresh-token family is issued for: its id, its scope (`None`: unrestricted) and
/// its access tokens' audience (`None`: the configured one).
pub(crate) struct Grant {
    pub(crate) family: String,
    pub(crate) scope: Option<String>,
    pub(crate) audience: Option<String>,
}

impl Grant {
    /// A new family.
    pub(crate) fn new(scope: Option<String>, audience: Option<String>) -> Grant {
        Grant { family: Self::new_family(), scope, audience }
    }

    pub(crate) fn new_family() -> String {
        format!("fam_{}", random::token(20))
    }
}

/// A signing key as listed: never its private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyInfo {
    pub kid: String,
    pub alg: String,
    pub created_at: i64,
    pub activates_at: i64,
    pub retired_at: Option<i64>,
}

/// The identity provider: owns users, refresh-token families, sign-in codes and signing keys
/// in the store; reads its keys and revoked families from the [`Mirror`]. Deleting a user
/// deletes its connections ([`Connections`]).
pub struct Identity {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    mirror: Arc<Mirror>,
    connections: Arc<Connections>,
    public_url: String,
    clock: Arc<dyn Clock>,
}

impl Identity {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        mirror: Arc<Mirror>,
        connections: Arc<Connections>,
        public_url: String,
    ) -> Identity {
        let clock = mirror.clock().clone();
        Identity { store, vault, mirror, connections, public_url, clock }
    }

    fn access_ttl_s(&self) -> i64 {
        claims::access_ttl_s(self.mirror.config().server.access_token_ttl_s)
    }

    pub(crate) fn refresh_ttl_ms(&self) -> i64 {
        claims::refresh_ttl_ms(self.mirror.config().server.refresh_token_ttl_s)
    }

    fn token_audience(&self) -> String {
        self.mirror.config().server.token_audience.clone().unwrap_or_else(|| self.public_url.clone())
    }

    /// Makes a new signing key. With `now = false` it is published first and signs only after
    /// `PUBLISH_BEFORE_SIGNING_S`; the keys it replaces keep signing until then, and stay in
    /// the JWKS until every token they signed has expired.
    pub async fn rotate_signing_key(&self, alg: Option<SigningAlg>, now: bool) -> Result<SigningKeyRow, CallError> {
        let alg = alg
            .or_else(|| self.mirror.config().server.token_algorithm.as_deref().and_then(SigningAlg::parse))
            .unwrap_or(SigningAlg::Rs256);
        let key = SigningKey::generate(alg).map_err(|e| CallError::internal(e.to_string()))?;
        let at = self.clock.now_ms();
        let activates_at = if now { at } else { at + PUBLISH_BEFORE_SIGNING_S * 1000 };
        let row = SigningKeyRow {
            kid: key.kid.clone(),
            alg: alg.as_str().into(),
            sealed: self.vault.seal(&key_aad(&key.kid), key.pkcs8()),
            created_at: at,
            activates_at,
            retired_at: None,
        };
        let previous = self.store.list_signing_keys().await.map_err(unavailable)?;
        self.store.insert_signing_key(&row).await.map_err(unavailable)?;
        // Keys whose every token has expired leave the store (and the JWKS).
        let (retire, delete) = keys::rotation_plan(&previous, at, self.access_ttl_s());
        for old in retire {
            self.store.retire_signing_key(&old.kid, activates_at).await.map_err(unavailable)?;
        }
        for old in delete {
            self.store.delete_signing_key(&old.kid).await.map_err(unavailable)?;
        }
        self.mirror.catch_up().await.map_err(unavailable)?;
        Ok(row)
    }

    /// The signing keys as stored, newest first: ids, algorithms and times, never the keys
    /// (the admin console's list).
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyInfo>, CallError> {
        let mut rows = self.store.list_signing_keys().await.map_err(unavailable)?;
        rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.kid.cmp(&b.kid)));
        Ok(rows
            .into_iter()
            .map(|r| SigningKeyInfo {
                kid: r.kid,
                alg: r.alg,
                created_at: r.created_at,
                activates_at: r.activates_at,
                retired_at: r.retired_at,
            })
            .collect())
    }

    /// Makes the first signing key if there is none (at start-up).
    pub async fn ensure_signing_key(&self) -> Result<(), CallError> {
        if self.store.list_signing_keys().await.map_err(unavailable)?.is_empty() {
            self.rotate_signing_key(None, true).await?;
        }
        Ok(())
    }

    /// `GET /.well-known/jwks.json`: public members only; keys leave once their tokens expired.
    pub fn jwks(&self) -> Value {
        let rt = self.mirror.runtime();
        let keys: Vec<Value> = rt
            .identity
            .published(self.clock.now_ms(), self.access_ttl_s() * 1000)
            .map(|k| k.public_jwk().clone())
            .collect();
        json!({"keys": keys})
    }

    /// The algorithms of the signing keys, sorted, each once: the discovery document's
    /// `id_token_signing_alg_values_supported` (the server writes the document).
    pub fn signing_algs(&self) -> Vec<&'static str> {
        self.mirror.runtime().identity.algorithms()
    }

    pub async fn upsert_user(
        &self,
        env: Env,
        id: &str,
        email: Option<String>,
        attributes: Value,
    ) -> Result<UserRow, CallError> {
        if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
            return Err(CallError::invalid_params("`id` must be the app's user id (1 to 200 characters)"));
        }
        if !attributes.is_object() && !attributes.is_null() {
            return Err(CallError::invalid_params("`attributes` must be a JSON object"));
        }
        let now = self.clock.now_ms();
        let row = UserRow {
            env,
            id: id.to_owned(),
            email,
            attributes: if attributes.is_null() { "{}".into() } else { attributes.to_string() },
            provider: None,
            provider_user_id: None,
            created_at: now,
            updated_at: now,
        };
        self.store.upsert_user(&row).await.map_err(unavailable)
    }

    pub async fn get_user(&self, env: Env, id: &str) -> Result<Option<UserRow>, CallError> {
        self.store.get_user(env, id).await.map_err(unavailable)
    }

    /// Deletes a user: its connections (revoked at their providers), its token families,
    /// and the user.
    pub async fn delete_user(&self, env: Env, id: &str) -> Result<bool, CallError> {
        if self.get_user(env, id).await?.is_none() {
            return Ok(false);
        }
        self.connections.delete_all_of(env, id).await?;
        self.store.revoke_user_families(env, id, self.clock.now_ms()).await.map_err(unavailable)?;
        let deleted = self.store.delete_user(env, id).await.map_err(unavailable)?;
        self.mirror.catch_up().await.map_err(unavailable)?;
        Ok(deleted)
    }

    /// Signs `claims` (`typ: at+jwt`) with the key that signs at `now`.
    fn sign_user_jwt<T: Serialize>(&self, claims: &T, now: i64) -> Result<String, CallError> {
        let rt = self.mirror.runtime();
        let key = rt.identity.signer(now).ok_or_else(|| {
            CallError::new(
                ErrorCode::Unavailable,
                "no identity signing key is active: run `latchkey keys rotate --now`",
            )
        })?;
        key.sign("at+jwt", claims).map_err(|e| CallError::internal(e.to_string()))
    }

    /// The `aud` of the access tokens MCP clients are given: `/mcp` only accepts them (and the
    /// rest of the API, which expects the configured audience, refuses them).
    pub fn mcp_audience(&self) -> String {
        format!("{}/mcp", self.public_url)
    }

    fn sign_access(&self, env: Env, user: &str, grant: &Grant, now: i64) -> Result<(String, i64), CallError> {
        let ttl = self.access_ttl_s();
        let iat = now / 1000;
        let aud = grant.audience.clone().unwrap_or_else(|| self.token_audience());
        let mut claims =
            claims::access_claims(&self.public_url, &aud, env, user, &grant.family, iat, ttl, random::token(24));
        claims.scope.clone_from(&grant.scope);
        Ok((self.sign_user_jwt(&claims, now)?, ttl))
    }

    /// A user access token carrying `scope`, without a refresh token: for tests of what reads
    /// the claim (`/mcp`'s tool narrowing) until a route issues scoped tokens.
    #[cfg(any(test, feature = "testing"))]
    pub fn scoped_access_token(&self, env: Env, user: &str, scope: &str) -> Result<String, CallError> {
        let now = self.clock.now_ms();
        let aud = self.token_audience();
        let mut claims = claims::access_claims(
            &self.public_url,
            &aud,
            env,
            user,
            "fam_test",
            now / 1000,
            self.access_ttl_s(),
            random::token(24),
        );
        claims.scope = Some(scope.to_owned());
        self.sign_user_jwt(&claims, now)
    }

    /// A short-lived JWT saying who is calling, for `latchkey_identity` connectors.
    pub(crate) async fn sign_identity(
        &self,
        env: Env,
        user: &str,
        audience: &str,
        lifetime_s: i64,
    ) -> Result<String, CallError> {
        if self.get_user(env, user).await?.is_none() {
            return Err(CallError::not_found(format!("no user `{user}` ({env}): create it with POST /v1/users")));
        }
        let now = self.clock.now_ms();
        let claims =
            claims::identity_claims(&self.public_url, env, user, audience, now / 1000, lifetime_s, random::token(24));
        self.sign_user_jwt(&claims, now)
    }

    /// A new refresh token of `family` and the row that stores it (only its hash).
    fn new_refresh(env: Env, user: &str, grant: &Grant, now: i64, expires_at: i64) -> (String, RefreshRow) {
        let token = format!("lkr_{}", random::token(43));
        let row = RefreshRow {
            hash: sha256(token.as_bytes()).to_vec(),
            family: grant.family.clone(),
            env,
            user_id: user.to_owned(),
            created_at: now,
            expires_at,
            used_at: None,
            revoked_at: None,
            successor: None,
            scope: grant.scope.clone(),
            audience: grant.audience.clone(),
        };
        (token, row)
    }

    /// `POST /v1/users/{id}/tokens`: a new access token and a new refresh-token family.
    pub async fn mint_tokens(&self, env: Env, user: &str) -> Result<TokenPair, CallError> {
        self.mint_tokens_for(env, user, Grant::new(None, None)).await
    }

    /// A new access token and a new refresh-token family of `grant` (its family id, scope and
    /// audience, which every refresh of the family keeps).
    pub(crate) async fn mint_tokens_for(&self, env: Env, user: &str, grant: Grant) -> Result<TokenPair, CallError> {
        if self.get_user(env, user).await?.is_none() {
            return Err(CallError::not_found(format!("no user `{user}` ({env}): create it with POST /v1/users")));
        }
        let now = self.clock.now_ms();
        let (access_token, expires_in) = self.sign_access(env, user, &grant, now)?;
        let (refresh_token, row) = Self::new_refresh(env, user, &grant, now, now + self.refresh_ttl_ms());
        self.store.insert_refresh(&row).await.map_err(unavailable)?;
        Ok(TokenPair { access_token, token_type: "Bearer".into(), expires_in, refresh_token, scope: grant.scope })
    }

    /// `POST /v1/users/{id}/tokens` with a `scope`: checked as an MCP client's would be.
    pub async fn mint_scoped_tokens(&self, env: Env, user: &str, scope: Option<&str>) -> Result<TokenPair, CallError> {
        let scope = match scope {
            Some(s) => Some(crate::engine::mcp_auth::scope::check(&self.mirror, s).map_err(|m| {
                let mut e = CallError::invalid_params(format!("`scope`: {m}"));
                e.details.insert("oauth_error".into(), Value::String("invalid_scope".into()));
                e
            })?),
            None => None,
        };
        self.mint_tokens_for(env, user, Grant::new(scope, None)).await
    }

    /// Revokes a refresh-token family (a replayed authorization code's).
    pub(crate) async fn revoke_family(&self, family: &str) -> Result<(), CallError> {
        self.store.revoke_family(family, self.clock.now_ms()).await.map_err(unavailable)?;
        self.mirror.catch_up().await.map_err(unavailable)?;
        Ok(())
    }

    /// `POST /v1/token` with `grant_type=refresh_token`: rotates. A reused token revokes its
    /// whole family, except the immediately previous token within the retry window, which
    /// returns the same new pair.
    ///
    /// The pair is made before the token is taken, and the store marks the token used, keeps
    /// the pair on it and inserts the successor in one transaction: a concurrent presenter of
    /// the same token finds it used *with* its successor and gets the same pair, instead of
    /// finding it used without one and revoking the family the winner was just given.
    pub async fn refresh_user_tokens(&self, refresh_token: &SecretString) -> Result<TokenPair, CallError> {
        let hash = sha256(refresh_token.expose_secret().as_bytes());
        let now = self.clock.now_ms();
        let Some(row) = self.store.get_refresh(&hash).await.map_err(unavailable)? else {
            return Err(invalid_grant("the refresh token is not valid"));
        };
        let family_revoked = self.mirror.runtime().identity.family_revoked(&row.family);
        let row = match claims::presented(&row, now, family_revoked) {
            claims::Presented::Refused => {
                return Err(invalid_grant("the refresh token expired or was revoked: sign the user in again"));
            }
            claims::Presented::Rotate => {
                if self.get_user(row.env, &row.user_id).await?.is_none() {
                    return Err(invalid_grant("the user no longer exists"));
                }
                let grant =
                    Grant { family: row.family.clone(), scope: row.scope.clone(), audience: row.audience.clone() };
                let (access_token, expires_in) = self.sign_access(row.env, &row.user_id, &grant, now)?;
                let (next, next_row) = Self::new_refresh(row.env, &row.user_id, &grant, now, row.expires_at);
                let pair = TokenPair {
                    access_token,
                    token_type: "Bearer".into(),
                    expires_in,
                    refresh_token: next,
                    scope: grant.scope,
                };
                let mut plain =
                    serde_json::to_vec(&pair).map_err(|_| CallError::internal("a token pair serializes"))?;
                let sealed = self.vault.seal(&successor_aad(&hash, row.env), &plain);
                zeroize::Zeroize::zeroize(&mut plain);
                match self.store.rotate_refresh(&hash, now, &next_row, &sealed).await.map_err(unavailable)? {
                    RefreshTake::Fresh(_) => return Ok(pair),
                    RefreshTake::Unknown => return Err(invalid_grant("the refresh token is not valid")),
                    // Taken by a concurrent presenter since it was read: theirs is the pair.
                    RefreshTake::Spent(now_spent) => now_spent,
                }
            }
            claims::Presented::Reused => row,
        };
        if claims::replay_allowed(&row, now)
            && let Some(sealed) = &row.successor
            && let Ok(plain) = self.vault.open(&successor_aad(&hash, row.env), sealed)
            && let Ok(pair) = serde_json::from_slice::<TokenPair>(plain.expose_secret())
        {
            // Only while the successor is still unused: this is the previous token.
            let next = sha256(pair.refresh_token.as_bytes());
            if let Some(n) = self.store.get_refresh(&next).await.map_err(unavailable)?
                && n.used_at.is_none()
                && n.revoked_at.is_none()
            {
                return Ok(pair);
            }
        }
        self.store.revoke_family(&row.family, now).await.map_err(unavailable)?;
        self.mirror.catch_up().await.map_err(unavailable)?;
        tracing::warn!(family = %row.family, "refresh token reused: family revoked");
        Err(invalid_grant("the refresh token was used already: its whole family is revoked; sign the user in again"))
    }

    /// Verifies a user access token (signature by one of our keys, `iss`, `aud`, `exp`,
    /// `nbf`, family not revoked).
    pub fn verify_user_token(&self, token: &str) -> Result<UserClaims, CallError> {
        let now = self.clock.now_ms();
        self.mirror.runtime().identity.verify(token, &self.public_url, &self.token_audience(), now).ok_or_else(|| {
            CallError::new(
                ErrorCode::Unauthenticated,
                "the user token is invalid or expired: get a new one with POST /v1/token",
            )
        })
    }

    /// Verifies a user access token presented at `/mcp`: as [`Identity::verify_user_token`],
    /// with `aud` the configured audience (a token the app minted) or [`Identity::mcp_audience`]
    /// (a token an MCP client was given).
    pub fn verify_mcp_token(&self, token: &str) -> Result<UserClaims, CallError> {
        if let Ok(c) = self.verify_user_token(token) {
            return Ok(c);
        }
        let now = self.clock.now_ms();
        self.mirror.runtime().identity.verify(token, &self.public_url, &self.mcp_audience(), now).ok_or_else(|| {
            CallError::new(ErrorCode::Unauthenticated, "the user token is invalid or expired: sign in again")
        })
    }

    /// RFC 7662: `{"active": false}` for anything invalid, expired, revoked or foreign.
    pub async fn introspect(&self, env: Env, token: &str) -> Introspection {
        let inactive = Introspection::Inactive;
        if token.starts_with("lkr_") {
            let Ok(Some(row)) = self.store.get_refresh(&sha256(token.as_bytes())).await else { return inactive };
            let family_revoked = self.mirror.runtime().identity.family_revoked(&row.family);
            if !claims::refresh_active(&row, env, self.clock.now_ms(), family_revoked) {
                return inactive;
            }
            return Introspection::Refresh {
                sub: row.user_id,
                exp: row.expires_at / 1000,
                iss: self.public_url.clone(),
                env,
            };
        }
        match self.verify_user_token(token) {
            Ok(c) if c.env == env.as_str() => Introspection::Access(c),
            _ => inactive,
        }
    }

    /// RFC 7009: revokes the token's family (refresh tokens and the access tokens issued with
    /// them). Unknown or foreign tokens are ignored, so the answer is no oracle.
    pub async fn revoke_user_token(&self, env: Env, token: &str) -> Result<(), CallError> {
        let family = if token.starts_with("lkr_") {
            match self.store.get_refresh(&sha256(token.as_bytes())).await.map_err(unavailable)? {
                Some(r) if r.env == env => Some(r.family),
                _ => None,
            }
        } else {
            self.verify_user_token(token).ok().filter(|c| c.env == env.as_str()).map(|c| c.fam)
        };
        if let Some(f) = family {
            self.store.revoke_family(&f, self.clock.now_ms()).await.map_err(unavailable)?;
            self.mirror.catch_up().await.map_err(unavailable)?;
        }
        Ok(())
    }

    /// `POST /v1/login/exchange`: a one-time sign-in code for the user, its tokens and the
    /// connection. A code works once, for 60 seconds, in its environment.
    pub async fn exchange_login_code(&self, env: Env, code: &str) -> Result<(UserRow, TokenPair, String), CallError> {
        let refused = || invalid_grant("the sign-in code is unknown, used or expired: sign in again");
        // Taken only by a request that may use it: a code presented with another
        // environment's key, or too late, is refused and stays as it was.
        let row = self
            .store
            .take_login_code(&sha256(code.as_bytes()), env, self.clock.now_ms())
            .await
            .map_err(unavailable)?
            .ok_or_else(refused)?;
        let user = self.store.get_user(env, &row.user_id).await.map_err(unavailable)?.ok_or_else(refused)?;
        let tokens = self.mint_tokens(env, &user.id).await?;
        Ok((user, tokens, row.connection_id))
    }
}
