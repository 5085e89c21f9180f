//! Tokens the provider issued that the store did not take (SECURITY R4, R5): kept in the
//! slot, never handed out, committed before anything else is done with the key, and tried
//! every [`PENDING_RETRY`] by a background task until the store answers.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::events::Recorder;
use super::{Slot, TokenManager, bounded, lock};
use crate::event::{EventKind, EventOutcome};
use crate::store::{Store, TokenKey, TokenWrite};
use crate::token::TokenSet;
use crate::{CallError, ErrorCode};

/// How often a pending commit is tried again while the store does not answer.
pub(super) const PENDING_RETRY: Duration = Duration::from_secs(1);

/// A commit that did not happen because the store did not answer (SECURITY R4, R5).
#[derive(Clone)]
pub(super) struct Pending {
    pub write: TokenWrite,
    pub epoch: i64,
    pub version: i64,
    pub set: Arc<TokenSet>,
    /// The event to record once stored (`token.obtained` or `token.refreshed`).
    pub kind: EventKind,
}

impl TokenManager {
    /// Stores the tokens a refresh could not store earlier, before anything else is done with
    /// `key` (the caller holds the slot's flight lock). While the store still does not answer,
    /// the call fails fast: refreshing again would spend the old refresh token, which the
    /// provider may have rotated away.
    pub(super) async fn settle_pending(&self, key: &TokenKey, slot: &Slot) -> Result<(), CallError> {
        let Some(pending) = lock(&slot.cached).pending.clone() else { return Ok(()) };
        let now = self.events.clock.now_ms();
        let committed = commit_pending(self.events.store.as_ref(), key, &pending, now)
            .await
            .map_err(|e| pending_error(&key.connector, &e))?;
        pending_settled(&self.events, key, slot, &pending, committed).await;
        Ok(())
    }

    /// Keeps `pending` in the slot and tries its commit every [`PENDING_RETRY`] until it is
    /// decided (here or by a caller), so that the tokens are stored when the store comes back
    /// even if no call comes.
    pub(super) fn keep_pending(&self, key: &TokenKey, slot: &Slot, pending: Pending) {
        lock(&slot.cached).pending = Some(pending);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (events, slot, key) = (self.events.clone(), self.slot(key), key.clone());
        runtime.spawn(async move {
            loop {
                events.clock.sleep(PENDING_RETRY).await;
                let _flight = slot.flight.lock().await;
                let Some(pending) = lock(&slot.cached).pending.clone() else { return };
                let now = events.clock.now_ms();
                if let Ok(committed) = commit_pending(events.store.as_ref(), &key, &pending, now).await {
                    pending_settled(&events, &key, &slot, &pending, committed).await;
                    return;
                }
            }
        });
    }
}

/// Commits `pending` under its lease epoch, or, the lease having run out, if nobody wrote since
/// it was taken. `Ok(false)`: another writer won. A commit whose answer was lost may have
/// happened anyway: a refusal is checked against what the store holds.
pub(super) async fn commit_pending(
    store: &dyn Store,
    key: &TokenKey,
    pending: &Pending,
    now: i64,
) -> Result<bool, CallError> {
    if bounded(store.commit_token(key, pending.epoch, &pending.write, now)).await?
        || bounded(store.commit_token_if_version(key, pending.version, &pending.write, now)).await?
    {
        return Ok(true);
    }
    let stored = bounded(store.get_token(key)).await?;
    let ours = pending.write.sealed.as_ref().and_then(|s| s.as_deref());
    Ok(stored.is_some_and(|row| row.sealed.is_some() && row.sealed.as_deref() == ours))
}

/// Memory after a pending commit was decided: the new tokens when stored, else (another writer
/// won meanwhile) whatever the store holds, read at the next use.
async fn pending_settled(events: &Recorder, key: &TokenKey, slot: &Slot, pending: &Pending, committed: bool) {
    {
        let mut c = lock(&slot.cached);
        c.pending = None;
        if committed {
            c.set = Some(pending.set.clone());
            c.version = Some(pending.version + 1);
            c.failure = None;
        } else {
            c.version = None;
        }
    }
    if committed {
        tracing::info!(connector = %key.connector, env = %key.env, "tokens kept while the store did not answer are stored");
        let detail = json!({"mode": "stored_late", "expires_at": pending.set.expires_at});
        events.record(key, pending.kind, EventOutcome::Ok, detail).await;
    } else {
        tracing::error!(connector = %key.connector, env = %key.env, "tokens kept while the store did not answer lost to another writer");
        events.record(key, EventKind::TokenCommitConflict, EventOutcome::Error, json!({"stored_late": true})).await;
    }
}

/// A call's error while new tokens wait in memory for the store.
pub(super) fn pending_error(connector: &str, cause: &CallError) -> CallError {
    CallError::new(
        ErrorCode::Unavailable,
        format!(
            "connector `{connector}`: new tokens are kept in memory until the store takes them ({}); try again shortly",
            cause.message
        ),
    )
}
