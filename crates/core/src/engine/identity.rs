//! Latchkey as identity provider (SPEC §9): users, signed user access tokens (JWT, `typ`
//! `at+jwt`), opaque refresh tokens stored only as hashes and rotated with reuse detection and
//! a short retry window, the JWKS, RFC 7662 introspection, RFC 7009 revocation, and key
//! rotation that publishes before it signs.

use std::collections::HashSet;
use std::sync::Arc;

use latchkey_vault::identity::{SigningAlg, SigningKey};
use latchkey_vault::{Aad, random, sha256};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Engine;
use crate::store::{ConnectionFilter, RefreshRow, RefreshTake, SigningKeyRow, StoreError, UserRow};
use crate::time_fmt::now_ms;
use crate::{CallError, Env, ErrorCode};

/// A used refresh token returns the same new pair if replayed this soon (clients that retried).
const GRACE_MS: i64 = 30_000;
/// How long a new key is published before it signs (the JWKS cache lifetime).
pub const PUBLISH_BEFORE_SIGNING_S: i64 = 300;
pub const JWKS_MAX_AGE_S: i64 = 300;

/// The signing keys as the runtime holds them.
#[derive(Default, Clone)]
pub struct IdentityKeys {
    pub keys: Vec<(SigningKeyRow, Arc<SigningKey>)>,
    pub revoked_families: HashSet<String>,
}

pub(crate) fn key_aad(kid: &str) -> Aad {
    Aad::new("signing_key", kid, "pkcs8", "-")
}

fn unavailable(e: StoreError) -> CallError {
    CallError::from(e)
}

fn invalid_grant(message: &str) -> CallError {
    let mut e = CallError::new(ErrorCode::InvalidParams, message);
    e.details.insert("oauth_error".into(), Value::String("invalid_grant".into()));
    e
}

/// What introspection found (RFC 7662); the server writes the answer.
#[derive(Debug, Clone)]
pub enum Introspection {
    /// Unknown, invalid, expired, used, revoked, or of another environment.
    Inactive,
    /// An active refresh token: its user, its expiry (Unix seconds), the issuer and the
    /// environment.
    Refresh { sub: String, exp: i64, iss: String, env: Env },
    /// An active access token in the environment asked about: its claims.
    Access(UserClaims),
}

/// The claims of a user access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// The environment the token belongs to.
    pub env: String,
    /// The refresh-token family it was issued with (revoking the family revokes it).
    pub fam: String,
}

/// What `POST /v1/users/{id}/tokens` and `POST /v1/token` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
}

impl IdentityKeys {
    pub fn load(rows: Vec<SigningKeyRow>, vault: &latchkey_vault::Vault, revoked: Vec<String>) -> IdentityKeys {
        let mut keys = Vec::new();
        for row in rows {
            let Some(alg) = SigningAlg::parse(&row.alg) else { continue };
            match vault.open(&key_aad(&row.kid), &row.sealed) {
                Ok(der) => match SigningKey::from_pkcs8(&row.kid, alg, der.expose_secret().to_vec()) {
                    Ok(k) => keys.push((row, Arc::new(k))),
                    Err(e) => tracing::error!(kid = %row.kid, error = %e, "signing key unusable"),
                },
                Err(e) => tracing::error!(kid = %row.kid, error = %e, "signing key failed to decrypt"),
            }
        }
        IdentityKeys { keys, revoked_families: revoked.into_iter().collect() }
    }

    /// The key that signs now: the newest active one.
    fn signer(&self, now: i64) -> Option<&Arc<SigningKey>> {
        self.keys
            .iter()
            .filter(|(r, _)| r.activates_at <= now && r.retired_at.is_none_or(|t| t > now))
            .max_by_key(|(r, _)| r.activates_at)
            .map(|(_, k)| k)
    }

    fn by_kid(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|(r, _)| r.kid == kid).map(|(_, k)| k)
    }
}

impl Engine {
    fn access_ttl_s(&self) -> i64 {
        self.config.server.access_token_ttl_s.map_or(900, |t| i64::try_from(t).unwrap_or(900))
    }

    fn refresh_ttl_ms(&self) -> i64 {
        self.config.server.refresh_token_ttl_s.map_or(30 * 86_400, |t| i64::try_from(t).unwrap_or(30 * 86_400)) * 1000
    }

    pub fn token_audience(&self) -> String {
        self.config.server.token_audience.clone().unwrap_or_else(|| self.public_url.clone())
    }

    /// Makes a new signing key. With `now = false` it is published first and signs only after
    /// `PUBLISH_BEFORE_SIGNING_S`; the keys it replaces keep signing until then, and stay in
    /// the JWKS until every token they signed has expired.
    pub async fn rotate_signing_key(&self, alg: Option<SigningAlg>, now: bool) -> Result<SigningKeyRow, CallError> {
        let alg = alg
            .or_else(|| self.config.server.token_algorithm.as_deref().and_then(SigningAlg::parse))
            .unwrap_or(SigningAlg::Rs256);
        let key = SigningKey::generate(alg).map_err(|e| CallError::internal(e.to_string()))?;
        let at = now_ms();
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
        for old in previous.iter().filter(|r| r.retired_at.is_none()) {
            self.store.retire_signing_key(&old.kid, activates_at).await.map_err(unavailable)?;
        }
        // Keys whose every token has expired leave the store (and the JWKS).
        let gone = at - self.access_ttl_s() * 1000 - 60_000;
        for old in previous.iter().filter(|r| r.retired_at.is_some_and(|t| t < gone)) {
            self.store.delete_signing_key(&old.kid).await.map_err(unavailable)?;
        }
        self.catch_up().await.map_err(unavailable)?;
        Ok(row)
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
        let now = now_ms();
        let ttl = self.access_ttl_s() * 1000;
        let rt = self.runtime.load();
        let keys: Vec<Value> = rt
            .identity
            .keys
            .iter()
            .filter(|(r, _)| r.retired_at.is_none_or(|t| t + ttl + 60_000 > now))
            .map(|(_, k)| k.public_jwk().clone())
            .collect();
        json!({"keys": keys})
    }

    /// The algorithms of the signing keys, sorted, each once: the discovery document's
    /// `id_token_signing_alg_values_supported` (the server writes the document).
    pub fn signing_algs(&self) -> Vec<&'static str> {
        let rt = self.runtime.load();
        let mut v: Vec<&'static str> = rt.identity.keys.iter().map(|(_, k)| k.alg.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
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
        let now = now_ms();
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
        let filter = ConnectionFilter { connector: None, env: Some(env), owner: Some(id.to_owned()) };
        for c in self.store.list_connections(&filter).await.map_err(unavailable)? {
            self.delete_connection(&c, "user_deleted").await?;
        }
        self.store.revoke_user_families(env, id, now_ms()).await.map_err(unavailable)?;
        let deleted = self.store.delete_user(env, id).await.map_err(unavailable)?;
        self.catch_up().await.map_err(unavailable)?;
        Ok(deleted)
    }

    /// Signs `claims` (`typ: at+jwt`) with the key that signs now.
    fn sign_user_jwt<T: Serialize>(&self, claims: &T) -> Result<String, CallError> {
        let rt = self.runtime.load();
        let key = rt.identity.signer(now_ms()).ok_or_else(|| {
            CallError::new(
                ErrorCode::Unavailable,
                "no identity signing key is active: run `latchkey keys rotate --now`",
            )
        })?;
        key.sign("at+jwt", claims).map_err(|e| CallError::internal(e.to_string()))
    }

    fn sign_access(&self, env: Env, user: &str, family: &str) -> Result<(String, i64), CallError> {
        let ttl = self.access_ttl_s();
        let iat = now_ms() / 1000;
        let claims = UserClaims {
            iss: self.public_url.clone(),
            sub: user.to_owned(),
            aud: self.token_audience(),
            exp: iat + ttl,
            iat,
            nbf: iat,
            jti: random::token(24),
            env: env.as_str().into(),
            fam: family.to_owned(),
        };
        Ok((self.sign_user_jwt(&claims)?, ttl))
    }

    /// A short-lived JWT saying who is calling, for `latchkey_identity` connectors.
    pub async fn sign_identity(
        &self,
        env: Env,
        user: &str,
        audience: &str,
        lifetime_s: i64,
    ) -> Result<String, CallError> {
        if self.get_user(env, user).await?.is_none() {
            return Err(CallError::not_found(format!("no user `{user}` ({env}): create it with POST /v1/users")));
        }
        let iat = now_ms() / 1000;
        let claims = json!({
            "iss": self.public_url, "sub": user, "aud": audience, "exp": iat + lifetime_s, "iat": iat, "nbf": iat,
            "jti": random::token(24), "env": env.as_str(),
        });
        self.sign_user_jwt(&claims)
    }

    /// A new refresh token of `family` and the row that stores it (only its hash).
    fn new_refresh(env: Env, user: &str, family: &str, expires_at: i64) -> (String, RefreshRow) {
        let token = format!("lkr_{}", random::token(43));
        let row = RefreshRow {
            hash: sha256(token.as_bytes()).to_vec(),
            family: family.to_owned(),
            env,
            user_id: user.to_owned(),
            created_at: now_ms(),
            expires_at,
            used_at: None,
            revoked_at: None,
            successor: None,
        };
        (token, row)
    }

    /// `POST /v1/users/{id}/tokens`: a new access token and a new refresh-token family.
    pub async fn mint_tokens(&self, env: Env, user: &str) -> Result<TokenPair, CallError> {
        if self.get_user(env, user).await?.is_none() {
            return Err(CallError::not_found(format!("no user `{user}` ({env}): create it with POST /v1/users")));
        }
        let family = format!("fam_{}", random::token(20));
        let (access_token, expires_in) = self.sign_access(env, user, &family)?;
        let (refresh_token, row) = Self::new_refresh(env, user, &family, now_ms() + self.refresh_ttl_ms());
        self.store.insert_refresh(&row).await.map_err(unavailable)?;
        Ok(TokenPair { access_token, token_type: "Bearer".into(), expires_in, refresh_token })
    }

    pub(crate) fn successor_aad(hash: &[u8], env: Env) -> Aad {
        Aad::new("refresh", latchkey_vault::to_hex(hash), "successor", env.as_str())
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
        let now = now_ms();
        let Some(row) = self.store.get_refresh(&hash).await.map_err(unavailable)? else {
            return Err(invalid_grant("the refresh token is not valid"));
        };
        let row = if row.used_at.is_none() && row.revoked_at.is_none() {
            if row.expires_at <= now || self.runtime.load().identity.revoked_families.contains(&row.family) {
                return Err(invalid_grant("the refresh token expired or was revoked: sign the user in again"));
            }
            if self.get_user(row.env, &row.user_id).await?.is_none() {
                return Err(invalid_grant("the user no longer exists"));
            }
            let (access_token, expires_in) = self.sign_access(row.env, &row.user_id, &row.family)?;
            let (next, next_row) = Self::new_refresh(row.env, &row.user_id, &row.family, row.expires_at);
            let pair = TokenPair { access_token, token_type: "Bearer".into(), expires_in, refresh_token: next };
            let mut plain = serde_json::to_vec(&pair).map_err(|_| CallError::internal("a token pair serializes"))?;
            let sealed = self.vault.seal(&Self::successor_aad(&hash, row.env), &plain);
            zeroize::Zeroize::zeroize(&mut plain);
            match self.store.rotate_refresh(&hash, now, &next_row, &sealed).await.map_err(unavailable)? {
                RefreshTake::Fresh(_) => return Ok(pair),
                RefreshTake::Unknown => return Err(invalid_grant("the refresh token is not valid")),
                // Taken by a concurrent presenter since it was read: theirs is the pair.
                RefreshTake::Spent(now_spent) => now_spent,
            }
        } else if row.revoked_at.is_some() {
            return Err(invalid_grant("the refresh token expired or was revoked: sign the user in again"));
        } else {
            row
        };
        if row.revoked_at.is_none()
            && row.used_at.is_some_and(|u| now - u <= GRACE_MS)
            && let Some(sealed) = &row.successor
            && let Ok(plain) = self.vault.open(&Self::successor_aad(&hash, row.env), sealed)
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
        self.catch_up().await.map_err(unavailable)?;
        tracing::warn!(family = %row.family, "refresh token reused: family revoked");
        Err(invalid_grant("the refresh token was used already: its whole family is revoked; sign the user in again"))
    }

    /// Verifies a user access token (signature by one of our keys, `iss`, `aud`, `exp`,
    /// `nbf`, family not revoked).
    pub fn verify_user_token(&self, token: &str) -> Result<UserClaims, CallError> {
        let bad = || {
            CallError::new(
                ErrorCode::Unauthenticated,
                "the user token is invalid or expired: get a new one with POST /v1/token",
            )
        };
        let (kid, _) = latchkey_vault::identity::peek_header(token).ok_or_else(bad)?;
        let rt = self.runtime.load();
        let key = rt.identity.by_kid(&kid).ok_or_else(bad)?;
        let claims: UserClaims =
            key.verify(token, &self.public_url, Some(&self.token_audience())).map_err(|_| bad())?;
        if rt.identity.revoked_families.contains(&claims.fam) {
            return Err(bad());
        }
        Ok(claims)
    }

    /// RFC 7662: `{"active": false}` for anything invalid, expired, revoked or foreign.
    pub async fn introspect(&self, env: Env, token: &str) -> Introspection {
        let inactive = Introspection::Inactive;
        if token.starts_with("lkr_") {
            let Ok(Some(row)) = self.store.get_refresh(&sha256(token.as_bytes())).await else { return inactive };
            let revoked =
                row.revoked_at.is_some() || self.runtime.load().identity.revoked_families.contains(&row.family);
            if row.env != env || row.used_at.is_some() || revoked || row.expires_at <= now_ms() {
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
            self.store.revoke_family(&f, now_ms()).await.map_err(unavailable)?;
            self.catch_up().await.map_err(unavailable)?;
        }
        Ok(())
    }
}
