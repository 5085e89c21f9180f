//! The identity provider's records and every sealed value, in memory.

use super::{MemoryStore, duplicate, token_id};
use crate::Env;
use crate::store::{
    AuthGrantRow, GrantTake, IdentityStore, LoginCodeRow, OAuthClientRow, RefreshRow, RefreshTake, SealedPlace,
    SealedStore, SigningKeyRow, StoreResult, UserRow,
};

#[async_trait::async_trait]
impl IdentityStore for MemoryStore {
    async fn upsert_user(&self, row: &UserRow) -> StoreResult<UserRow> {
        self.enter("upsert_user").await?;
        let mut d = self.data();
        let user = d.users.entry((row.env.as_str(), row.id.clone())).or_insert_with(|| row.clone());
        user.email = row.email.clone().or(user.email.take());
        user.attributes = row.attributes.clone();
        user.provider = row.provider.clone().or(user.provider.take());
        user.provider_user_id = row.provider_user_id.clone().or(user.provider_user_id.take());
        user.updated_at = row.updated_at;
        Ok(user.clone())
    }
    async fn get_user(&self, env: Env, id: &str) -> StoreResult<Option<UserRow>> {
        self.enter("get_user").await?;
        Ok(self.data().users.get(&(env.as_str(), id.to_owned())).cloned())
    }
    async fn find_user_by_provider(
        &self,
        env: Env,
        provider: &str,
        provider_user_id: &str,
    ) -> StoreResult<Option<UserRow>> {
        self.enter("find_user_by_provider").await?;
        let d = self.data();
        let found = d.users.values().find(|u| {
            u.env == env
                && u.provider.as_deref() == Some(provider)
                && u.provider_user_id.as_deref() == Some(provider_user_id)
        });
        Ok(found.cloned())
    }
    async fn delete_user(&self, env: Env, id: &str) -> StoreResult<bool> {
        self.enter("delete_user").await?;
        Ok(self.data().users.remove(&(env.as_str(), id.to_owned())).is_some())
    }
    async fn insert_signing_key(&self, row: &SigningKeyRow) -> StoreResult<()> {
        const OP: &str = "insert_signing_key";
        self.enter(OP).await?;
        let mut d = self.data();
        if d.signing_keys.contains_key(&row.kid) {
            return Err(duplicate(OP, "the signing key"));
        }
        d.signing_keys.insert(row.kid.clone(), row.clone());
        d.bump();
        Ok(())
    }
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        self.enter("list_signing_keys").await?;
        let mut rows: Vec<SigningKeyRow> = self.data().signing_keys.values().cloned().collect();
        rows.sort_by(|a, b| (a.created_at, &a.kid).cmp(&(b.created_at, &b.kid)));
        Ok(rows)
    }
    async fn retire_signing_key(&self, kid: &str, at: i64) -> StoreResult<bool> {
        self.enter("retire_signing_key").await?;
        let mut d = self.data();
        match d.signing_keys.get_mut(kid).filter(|k| k.retired_at.is_none()) {
            Some(key) => key.retired_at = Some(at),
            None => return Ok(false),
        }
        d.bump();
        Ok(true)
    }
    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool> {
        self.enter("delete_signing_key").await?;
        let mut d = self.data();
        if d.signing_keys.remove(kid).is_none() {
            return Ok(false);
        }
        d.bump();
        Ok(true)
    }
    async fn insert_refresh(&self, row: &RefreshRow) -> StoreResult<()> {
        const OP: &str = "insert_refresh";
        self.enter(OP).await?;
        let mut d = self.data();
        if d.refresh.contains_key(&row.hash) {
            return Err(duplicate(OP, "the refresh token"));
        }
        let fresh = RefreshRow { used_at: None, revoked_at: None, successor: None, ..row.clone() };
        d.refresh.insert(row.hash.clone(), fresh);
        Ok(())
    }
    async fn rotate_refresh(
        &self,
        hash: &[u8],
        now: i64,
        successor: &RefreshRow,
        sealed_pair: &[u8],
    ) -> StoreResult<RefreshTake> {
        const OP: &str = "rotate_refresh";
        self.enter(OP).await?;
        let mut d = self.data();
        let Some(row) = d.refresh.get(hash).cloned() else { return Ok(RefreshTake::Unknown) };
        if row.used_at.is_some() || row.revoked_at.is_some() {
            return Ok(RefreshTake::Spent(row));
        }
        if d.refresh.contains_key(&successor.hash) {
            return Err(duplicate(OP, "the successor"));
        }
        let taken = RefreshRow { used_at: Some(now), successor: Some(sealed_pair.to_vec()), ..row };
        d.refresh.insert(hash.to_vec(), taken.clone());
        let next = RefreshRow { used_at: None, revoked_at: None, successor: None, ..successor.clone() };
        d.refresh.insert(successor.hash.clone(), next);
        Ok(RefreshTake::Fresh(taken))
    }
    async fn get_refresh(&self, hash: &[u8]) -> StoreResult<Option<RefreshRow>> {
        self.enter("get_refresh").await?;
        Ok(self.data().refresh.get(hash).cloned())
    }
    async fn revoke_family(&self, family: &str, now: i64) -> StoreResult<u64> {
        self.enter("revoke_family").await?;
        Ok(self.revoke(|r| r.family == family, now))
    }
    async fn revoked_families(&self, since: i64) -> StoreResult<Vec<String>> {
        self.enter("revoked_families").await?;
        let d = self.data();
        let mut families: Vec<String> = d
            .refresh
            .values()
            .filter(|r| r.revoked_at.is_some_and(|at| at >= since))
            .map(|r| r.family.clone())
            .collect();
        families.sort();
        families.dedup();
        Ok(families)
    }
    async fn revoke_user_families(&self, env: Env, user_id: &str, now: i64) -> StoreResult<u64> {
        self.enter("revoke_user_families").await?;
        Ok(self.revoke(|r| r.env == env && r.user_id == user_id, now))
    }
    async fn insert_login_code(&self, row: &LoginCodeRow) -> StoreResult<()> {
        const OP: &str = "insert_login_code";
        self.enter(OP).await?;
        let mut d = self.data();
        if d.login_codes.contains_key(&row.hash) {
            return Err(duplicate(OP, "the sign-in code"));
        }
        d.login_codes.insert(row.hash.clone(), (row.clone(), None));
        Ok(())
    }
    async fn take_login_code(&self, hash: &[u8], env: Env, now: i64) -> StoreResult<Option<LoginCodeRow>> {
        self.enter("take_login_code").await?;
        let mut d = self.data();
        let Some((row, used_at)) = d.login_codes.get_mut(hash) else { return Ok(None) };
        if used_at.is_some() || row.env != env || row.expires_at < now {
            return Ok(None);
        }
        *used_at = Some(now);
        Ok(Some(row.clone()))
    }
    async fn insert_oauth_client(&self, row: &OAuthClientRow) -> StoreResult<()> {
        const OP: &str = "insert_oauth_client";
        self.enter(OP).await?;
        let mut d = self.data();
        if d.oauth_clients.contains_key(&row.id) {
            return Err(duplicate(OP, "the client"));
        }
        d.oauth_clients.insert(row.id.clone(), row.clone());
        Ok(())
    }
    async fn get_oauth_client(&self, id: &str) -> StoreResult<Option<OAuthClientRow>> {
        self.enter("get_oauth_client").await?;
        Ok(self.data().oauth_clients.get(id).cloned())
    }
    async fn keep_oauth_client(&self, id: &str, now: i64, until: i64) -> StoreResult<bool> {
        self.enter("keep_oauth_client").await?;
        Ok(match self.data().oauth_clients.get_mut(id) {
            Some(row) if row.kept_until >= now => {
                row.kept_until = row.kept_until.max(until);
                true
            }
            _ => false,
        })
    }
    async fn insert_auth_grant(&self, row: &AuthGrantRow) -> StoreResult<()> {
        const OP: &str = "insert_auth_grant";
        self.enter(OP).await?;
        let mut d = self.data();
        if d.auth_grants.contains_key(&row.hash) {
            return Err(duplicate(OP, "the grant"));
        }
        d.auth_grants.insert(row.hash.clone(), AuthGrantRow { used_at: None, ..row.clone() });
        Ok(())
    }
    async fn take_auth_grant(&self, hash: &[u8], kind: &str, now: i64) -> StoreResult<GrantTake> {
        self.enter("take_auth_grant").await?;
        let mut d = self.data();
        let Some(row) = d.auth_grants.get_mut(hash).filter(|r| r.kind == kind) else { return Ok(GrantTake::Unknown) };
        if row.used_at.is_some() {
            return Ok(GrantTake::Used(row.clone()));
        }
        row.used_at = Some(now);
        Ok(GrantTake::Fresh(row.clone()))
    }
}

impl MemoryStore {
    /// Revokes the unrevoked refresh tokens `which` picks, with one generation bump when any
    /// changed; returns how many.
    fn revoke(&self, which: impl Fn(&RefreshRow) -> bool, now: i64) -> u64 {
        let mut d = self.data();
        let mut changed = 0;
        for row in d.refresh.values_mut().filter(|r| r.revoked_at.is_none() && which(r)) {
            row.revoked_at = Some(now);
            row.successor = None;
            changed += 1;
        }
        if changed > 0 {
            d.bump();
        }
        changed
    }
}

/// The meta values that are sealed.
const SEALED_META: [&str; 2] = ["vault.key_check", "audit.salt"];

#[async_trait::async_trait]
impl SealedStore for MemoryStore {
    async fn sealed_values(&self) -> StoreResult<Vec<(SealedPlace, Vec<u8>)>> {
        self.enter("sealed_values").await?;
        let d = self.data();
        let mut out = Vec::new();
        for (key, value) in d.meta.iter().filter(|(k, _)| SEALED_META.contains(&k.as_str())) {
            out.push((SealedPlace::Meta(key.clone()), value.clone()));
        }
        for (row, _) in d.secrets.values() {
            out.push((SealedPlace::Secret(row.name.clone(), row.env), row.sealed.clone()));
        }
        for row in d.tokens.values() {
            if let Some(sealed) = &row.sealed {
                out.push((SealedPlace::Token(row.key.clone()), sealed.clone()));
            }
        }
        for row in d.flows.values() {
            if let Some(sealed) = &row.sealed {
                let place = SealedPlace::Flow { hash: row.handle_hash.clone(), kind: row.kind.clone(), env: row.env };
                out.push((place, sealed.clone()));
            }
        }
        for row in d.signing_keys.values() {
            out.push((SealedPlace::SigningKey(row.kid.clone()), row.sealed.clone()));
        }
        for row in d.refresh.values() {
            if let Some(sealed) = &row.successor {
                out.push((SealedPlace::RefreshSuccessor { hash: row.hash.clone(), env: row.env }, sealed.clone()));
            }
        }
        for row in d.idempotency.values().filter(|r| r.status != 0) {
            let place = SealedPlace::IdempotencyAnswer { scope: row.scope.clone(), key: row.key.clone() };
            out.push((place, row.answer.clone()));
        }
        Ok(out)
    }
    async fn replace_sealed(&self, place: &SealedPlace, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        self.enter("replace_sealed").await?;
        let mut d = self.data();
        let slot: Option<&mut Vec<u8>> = match place {
            SealedPlace::Meta(key) => d.meta.get_mut(key),
            SealedPlace::Secret(name, env) => {
                d.secrets.get_mut(&(name.clone(), env.as_str())).map(|(r, _)| &mut r.sealed)
            }
            SealedPlace::Token(key) => d.tokens.get_mut(&token_id(key)).and_then(|r| r.sealed.as_mut()),
            SealedPlace::Flow { hash, .. } => d.flows.get_mut(hash).and_then(|r| r.sealed.as_mut()),
            SealedPlace::SigningKey(kid) => d.signing_keys.get_mut(kid).map(|r| &mut r.sealed),
            SealedPlace::RefreshSuccessor { hash, .. } => d.refresh.get_mut(hash).and_then(|r| r.successor.as_mut()),
            SealedPlace::IdempotencyAnswer { scope, key } => {
                d.idempotency.get_mut(&(scope.clone(), key.clone())).filter(|r| r.status != 0).map(|r| &mut r.answer)
            }
        };
        match slot {
            Some(value) if value.as_slice() == old => {
                *value = new.to_vec();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
