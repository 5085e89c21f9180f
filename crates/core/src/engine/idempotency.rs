//! `Idempotency-Key` on the API's `POST`s that create something (Stripe's convention): the
//! first request with a key claims it in the store (so every instance sees it), and its answer
//! is kept, sealed, for 24 hours. The same key again from the same caller with the same
//! request is answered with that answer, without doing it again; with another request it is
//! refused; while the first is still running, the second is told to wait.

use latchkey_vault::{Aad, Vault};
use secrecy::ExposeSecret;

use crate::store::{IdempotencyRow, Store};
use crate::{CallError, ErrorCode};

/// How long a key and its answer are kept.
pub const KEEP_MS: i64 = 24 * 60 * 60 * 1000;

/// A claim still in progress after this long belongs to a request that never finished (its
/// process died): it is forgotten. Longer than any request other than a call may take
/// (`[server] request_timeout_s`, 60 s unless set).
const ABANDONED_MS: i64 = 10 * 60 * 1000;

/// The longest key taken (Stripe's limit).
pub const MAX_KEY_LEN: usize = 255;

/// What to do with a request that carries a key. `Debug` shows a replay's status and length,
/// never its body (the first answer may hold a key shown once, or tokens).
#[derive(PartialEq, Eq)]
pub enum Claim {
    /// The key is new: do the request, then [`Idempotency::finish`] or [`Idempotency::release`].
    First,
    /// The same request was answered before: answer this.
    Replay { status: u16, body: Vec<u8> },
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Claim::First => f.write_str("Claim::First"),
            Claim::Replay { status, body } => write!(f, "Claim::Replay({status}, {} bytes)", body.len()),
        }
    }
}

/// The keys of one store, sealed by one vault.
pub struct Idempotency<'a> {
    pub(crate) store: &'a dyn Store,
    pub(crate) vault: &'a Vault,
}

/// The SHA-256 of a request: its method, path and query, and body, each length-prefixed (the
/// body is hashed as it is, never copied).
fn fingerprint(method: &str, target: &str, body: &[u8]) -> Vec<u8> {
    let mut f = latchkey_vault::Fingerprint::default();
    f.part(method.as_bytes()).part(target.as_bytes()).part(body);
    f.finish().to_vec()
}

/// What a kept answer is bound to (also for `vault rotate`, which re-seals it).
pub(super) fn aad(scope: &str, key: &str) -> Aad {
    Aad::new("idempotency", format!("{scope}\n{key}"), "answer", "-")
}

/// A key is 1 to 255 visible ASCII characters.
pub fn check_key(key: &str) -> Result<(), CallError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CallError::invalid_params(
            "`Idempotency-Key` must be 1 to 255 visible ASCII characters (a UUID, say), one per request",
        ));
    }
    Ok(())
}

impl Idempotency<'_> {
    /// Claims `key` for `scope` (the caller) and this request at `now` (Unix ms).
    pub async fn claim(
        &self,
        scope: &str,
        key: &str,
        (method, target, body): (&str, &str, &[u8]),
        now: i64,
    ) -> Result<Claim, CallError> {
        check_key(key)?;
        let fingerprint = fingerprint(method, target, body);
        let row = IdempotencyRow {
            scope: scope.to_owned(),
            key: key.to_owned(),
            fingerprint: fingerprint.clone(),
            status: 0,
            answer: Vec::new(),
            created_at: now,
        };
        let Some(found) = self.store.claim_idempotency(&row, now - KEEP_MS, now - ABANDONED_MS).await? else {
            return Ok(Claim::First);
        };
        if found.fingerprint != fingerprint {
            return Err(CallError::new(
                ErrorCode::IdempotencyKeyReused,
                "this `Idempotency-Key` was used in the last 24 hours by this caller for another request (another \
                 route or body): send a new key with a new request, or the same request with the same key",
            ));
        }
        if found.status == 0 {
            return Err(CallError::new(
                ErrorCode::IdempotencyKeyInUse,
                "the first request with this `Idempotency-Key` is still being answered: try again in a moment",
            ));
        }
        let body = self.vault.open(&aad(scope, key), &found.answer).map_err(|e| {
            CallError::internal(format!(
                "the answer kept for this `Idempotency-Key` cannot be opened ({e}): send the request with a new key"
            ))
        })?;
        Ok(Claim::Replay { status: u16::try_from(found.status).unwrap_or(500), body: body.expose_secret().to_vec() })
    }

    /// Keeps `status` and `body` as the answer to `key`, sealed.
    pub async fn finish(&self, scope: &str, key: &str, status: u16, body: &[u8]) -> Result<(), CallError> {
        let sealed = self.vault.seal(&aad(scope, key), body);
        Ok(self.store.finish_idempotency(scope, key, i64::from(status), &sealed).await?)
    }

    /// Forgets the claim on `key`: the request made no change to keep an answer for.
    pub async fn release(&self, scope: &str, key: &str) -> Result<(), CallError> {
        Ok(self.store.release_idempotency(scope, key).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_differ_by_method_target_and_body_alike() {
        let f = fingerprint("POST", "/v1/users", b"{}");
        assert_eq!(f, fingerprint("POST", "/v1/users", b"{}"));
        assert_ne!(f, fingerprint("POST", "/v1/users", b"{ }"));
        assert_ne!(f, fingerprint("POST", "/v1/users/", b"{}"));
        assert_ne!(fingerprint("POST", "/a", b"b/c"), fingerprint("POST", "/ab", b"/c"));
        assert!(check_key("0b7c1a1e-4a5b-4c1e-9f0a-1b2c3d4e5f60").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key("with space").is_err());
        assert!(check_key(&"x".repeat(256)).is_err());
        let replay = Claim::Replay { status: 201, body: b"{\"key\":\"lk_live_canary\"}".to_vec() };
        assert_eq!(format!("{replay:?}"), "Claim::Replay(201, 24 bytes)");
    }
}
