//! The token lifecycle (SPEC §5): tokens cached in memory and persisted sealed; refreshed
//! `refresh_skew_s` before expiry; one refresh at a time per token, across every instance
//! sharing the store (a short lease its holder extends while it works, with a fencing epoch:
//! `heartbeat.rs`); a rotated refresh token durable before any call uses the new access token;
//! terminal refusals erase tokens and mark `reauthorization_required`; transient failures back
//! off with jitter and keep every token.
//!
//! What to do is decided by the pure functions of [`decide`] (over the cached state, the stored
//! row, the time and the settings); this module only does it: it reads the clock once per
//! step, talks to the store and the token endpoint ([`TokenEndpoint`]), and records events.

mod decide;
mod events;
mod heartbeat;
mod obtain;
mod pending;
mod tally;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_vault::Vault;
use serde_json::json;

use crate::auth::TokenSource;
use crate::clock::Clock;
use crate::event::{EventKind, EventOutcome};
use crate::secret::AccessToken;
use crate::store::{EventRow, Store, TokenKey, TokenRow, TokenWrite};
use crate::token::{self, TokenSet, TokenState};
use crate::{CallError, ErrorCode};

pub use decide::{LEASE_MS, shown_state};
pub use obtain::{HttpTokenEndpoint, TokenEndpoint};
pub use tally::{TokenCount, TokenOutcome};

use decide::{Cached, LeaseWait, Mode, Waiter};
use events::Recorder;
use pending::{Pending, commit_pending, pending_error};

/// A token for one call.
#[derive(Clone)]
pub struct Obtained {
    pub token: Arc<TokenSet>,
    /// A 401 with it does not trigger a refresh: it was obtained from the provider just now,
    /// or reactive refreshes of this token are paused (`REACTIVE_PAUSE_MS`).
    pub fresh: bool,
}

/// How long a store operation on a call's path may take before the call fails with
/// `unavailable` (SECURITY R5: a partitioned store fails calls fast, not after the TCP
/// timeout). `/readyz` waits as long for the store's answer ([`store_bounded`]).
pub const STORE_WAIT: Duration = Duration::from_secs(3);
/// How often a waiter looks at a lease another holder has.
const LEASE_POLL: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Slot {
    cached: Mutex<Cached>,
    /// Single flight within this process; the store lease extends it across processes.
    flight: tokio::sync::Mutex<()>,
    /// Whether a lifetime shorter than the refresh skew was logged (once per token per process).
    short_lifetime_logged: std::sync::atomic::AtomicBool,
}

pub struct TokenManager {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    /// The store, the clock and the webhook sender, for events (and background commits).
    events: Recorder,
    endpoint: Arc<dyn TokenEndpoint>,
    owner: String,
    slots: Mutex<HashMap<TokenKey, Arc<Slot>>>,
    fault: Option<String>,
    /// Token requests sent to providers (for metrics and tests).
    pub requests: AtomicU64,
    /// Refresh-token requests whose answer was lost after they may have reached the provider
    /// (`latchkey_refresh_ambiguous_total`): the exposure to lost rotations.
    pub ambiguous: AtomicU64,
    /// Token requests by connector, kind and outcome (`latchkey_token_requests_total`).
    pub(crate) tally: tally::TokenTally,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A token store operation on a call's path, bounded by [`STORE_WAIT`].
async fn bounded<T>(op: impl Future<Output = crate::store::StoreResult<T>>) -> Result<T, CallError> {
    store_bounded(op, "tokens cannot be refreshed safely until the store answers").await
}

/// A store operation on a call's path, bounded by [`STORE_WAIT`] (SECURITY R5): past it, or
/// when the store fails, `unavailable`, saying what cannot be done (`consequence`) and what to
/// do.
pub async fn store_bounded<T>(
    op: impl Future<Output = crate::store::StoreResult<T>>,
    consequence: &str,
) -> Result<T, CallError> {
    let (cause, source) = match tokio::time::timeout(STORE_WAIT, op).await {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(e @ crate::store::StoreError::Corrupt { .. })) => return Err(e.into()),
        Ok(Err(e)) => (e.to_string(), Some(e)),
        Err(_) => (format!("the store did not answer within {} s", STORE_WAIT.as_secs()), None),
    };
    let error = CallError::new(
        ErrorCode::Unavailable,
        format!("{cause}; {consequence}: check that the database is reachable, then repeat the call"),
    );
    Err(match source {
        Some(e) => error.caused_by(e),
        None => error,
    })
}

/// What waiting for the lease ended with.
enum Leased {
    Taken(TokenRow),
    Answered(Obtained),
}

impl TokenManager {
    /// Token requests go to the providers' token endpoints over HTTP ([`Self::with_endpoint`]
    /// replaces them in tests); time is read from `clock`.
    pub fn new(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        clock: Arc<dyn Clock>,
        fault: Option<String>,
        notify: Option<tokio::sync::mpsc::UnboundedSender<EventRow>>,
    ) -> Self {
        Self {
            store: store.clone(),
            vault,
            events: Recorder { store, notify, clock },
            endpoint: Arc::new(HttpTokenEndpoint),
            owner: latchkey_vault::random::token(16),
            slots: Mutex::new(HashMap::new()),
            fault,
            requests: AtomicU64::new(0),
            ambiguous: AtomicU64::new(0),
            tally: tally::TokenTally::default(),
        }
    }

    /// The same manager, sending token requests to `endpoint`.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: Arc<dyn TokenEndpoint>) -> Self {
        self.endpoint = endpoint;
        self
    }

    fn now(&self) -> i64 {
        self.events.clock.now_ms()
    }

    fn slot(&self, key: &TokenKey) -> Arc<Slot> {
        lock(&self.slots).entry(key.clone()).or_default().clone()
    }

    /// Test hook: aborts the process at a named point of a refresh (LATCHKEY_FAULT).
    fn fault(&self, at: &str) {
        if self.fault.as_deref() == Some(at) {
            eprintln!("latchkey: fault injected at {at}: aborting");
            std::process::abort();
        }
    }

    /// A usable access token for `src`: from memory when fresh, else refreshed (once, for
    /// every concurrent caller).
    pub async fn get(&self, src: &TokenSource) -> Result<Obtained, CallError> {
        let slot = self.slot(&src.key);
        let now = self.now();
        {
            let mut c = lock(&slot.cached);
            if let Some(out) = decide::fresh_in_memory(&c, src, now) {
                self.touch(&src.key, &mut c, now);
                return Ok(out);
            }
        }
        // Boxed: the refresh (token requests, store, heartbeat) is the cold path, and the
        // call's future, which the server boxes and copies per request, need not hold it.
        Box::pin(self.refresh(src, &slot, Mode::IfStale, None)).await
    }

    /// Replaces an access token the upstream refused (reactive refresh), unless another
    /// caller already replaced it.
    pub async fn replace(&self, src: &TokenSource, refused: &AccessToken) -> Result<Obtained, CallError> {
        let slot = self.slot(&src.key);
        Box::pin(self.refresh(src, &slot, Mode::Replace, Some(refused))).await
    }

    /// The upstream refused `token` too, which a reactive refresh had just obtained: the path
    /// refuses any token, so 401s do not replace it for `REACTIVE_PAUSE_MS` (issue 12: one
    /// path that always answers 401 would otherwise make every call fetch a new token).
    pub fn refused_after_refresh(&self, src: &TokenSource, token: &TokenSet) {
        let slot = self.slot(&src.key);
        let mut c = lock(&slot.cached);
        if let Some((until, starts)) = decide::pause_reactive(&c, token, self.now()) {
            if starts {
                tracing::warn!(
                    connector = %src.key.connector,
                    env = %src.key.env,
                    "the upstream refused a token obtained just now: not refreshing on its 401s for 60 s"
                );
            }
            c.reactive_paused_until = until;
        }
    }

    /// Refreshes now (keep-alive), whatever the token's age.
    pub async fn keep_alive(&self, src: &TokenSource) -> Result<Obtained, CallError> {
        let slot = self.slot(&src.key);
        self.refresh(src, &slot, Mode::KeepAlive, None).await
    }

    fn touch(&self, key: &TokenKey, c: &mut Cached, now: i64) {
        if !decide::touch_due(c, now) {
            return;
        }
        c.last_touch = now;
        let store = self.store.clone();
        let key = key.clone();
        if let Ok(h) = tokio::runtime::Handle::try_current() {
            h.spawn(async move {
                if let Err(e) = store.touch_token(&key, now).await {
                    tracing::warn!(connector = %key.connector, error = %e, "could not record token use");
                }
            });
        }
    }

    fn adopt_row(&self, c: &mut Cached, row: &TokenRow) {
        if c.version == Some(row.version) {
            return;
        }
        c.version = Some(row.version);
        c.set = match &row.sealed {
            Some(sealed) => match token::open(&self.vault, &row.key, sealed) {
                Ok(set) => Some(Arc::new(set)),
                Err(e) => {
                    tracing::error!(connector = %row.key.connector, env = %row.key.env, error = %e, "stored token failed to decrypt; it will be replaced");
                    None
                }
            },
            None => None,
        };
    }

    /// Adopts `row` and asks the cache again: only a token counts as an answer here.
    fn adopt_and_answer(
        &self,
        slot: &Slot,
        row: &TokenRow,
        src: &TokenSource,
        mode: Mode,
        refused: Option<&AccessToken>,
        now: i64,
    ) -> Option<Obtained> {
        let mut c = lock(&slot.cached);
        self.adopt_row(&mut c, row);
        decide::from_cache(&c, src, mode, refused, now)?.ok()
    }

    /// Takes the refresh lease, or waits while another holder has it: the one wait loop of the
    /// lifecycle. A refresh that waits reads the store again each time (the holder may have
    /// stored a token that answers it; `seen` is then the row read last); [`decide::while_leased`]
    /// says whether to serve a still-valid token meanwhile or to give up, counting from
    /// `waited_since` (when the call arrived, before it queued behind this process's flight).
    async fn lease(
        &self,
        src: &TokenSource,
        slot: &Slot,
        waiter: Waiter<'_>,
        seen: &mut Option<TokenRow>,
        waited_since: i64,
    ) -> Result<Leased, CallError> {
        let key = &src.key;
        loop {
            let now = self.now();
            if let Some(row) = bounded(self.store.take_lease(key, &self.owner, now, now + LEASE_MS)).await? {
                return Ok(Leased::Taken(row));
            }
            match decide::while_leased(&lock(&slot.cached), src, waiter, now, waited_since) {
                LeaseWait::Serve(obtained) => return Ok(Leased::Answered(obtained)),
                LeaseWait::GiveUp(error) => return Err(error),
                LeaseWait::Wait => {}
            }
            self.events.clock.sleep(LEASE_POLL).await;
            if let Waiter::Refresh { mode, refused } = waiter {
                *seen = bounded(self.store.get_token(key)).await?;
                if let Some(row) = seen.as_ref()
                    && let Some(answer) = self.adopt_and_answer(slot, row, src, mode, refused, self.now())
                {
                    return Ok(Leased::Answered(answer));
                }
            }
        }
    }

    async fn refresh(
        &self,
        src: &TokenSource,
        slot: &Slot,
        mode: Mode,
        refused: Option<&AccessToken>,
    ) -> Result<Obtained, CallError> {
        let arrived = self.now();
        let _flight = slot.flight.lock().await;
        let key = &src.key;
        self.settle_pending(key, slot).await?;
        let now = self.now();
        if let Some(answer) = decide::from_cache(&lock(&slot.cached), src, mode, refused, now) {
            return answer;
        }
        // Another instance may have refreshed: the store is the truth.
        let mut seen = bounded(self.store.get_token(key)).await?;
        if let Some(row) = &seen
            && let Some(answer) = self.adopt_and_answer(slot, row, src, mode, refused, now)
        {
            return Ok(answer);
        }
        let leased = match self.lease(src, slot, Waiter::Refresh { mode, refused }, &mut seen, arrived).await? {
            Leased::Taken(row) => row,
            Leased::Answered(obtained) => return Ok(obtained),
        };
        // SECURITY S24: the provider may have rotated the refresh token without the new one
        // reaching the store. The stored one is tried once (providers with a reuse window
        // accept it); a refusal makes the credential `reauthorization_required`, with its event
        // and webhook, or the grant obtains a new one.
        let abandoned = decide::abandoned(seen.as_ref(), &leased);
        if let Some(lease_until) = abandoned {
            tracing::warn!(
                connector = %key.connector,
                env = %key.env,
                "a refresh begun earlier never finished (its process stopped); its outcome is unknown: trying the stored refresh token"
            );
            let detail = json!({"lease_until": lease_until});
            self.events.record(key, EventKind::TokenRefreshOutcomeUnknown, EventOutcome::Unknown, detail).await;
        }
        let (early, previous) = {
            let mut c = lock(&slot.cached);
            self.adopt_row(&mut c, &leased);
            match decide::from_cache(&c, src, mode, refused, self.now()) {
                Some(Ok(answer)) => (Some(answer), None),
                _ => (None, decide::usable(&c, src).cloned()),
            }
        };
        if let Some(answer) = early {
            self.release(key, &leased).await;
            return Ok(answer);
        }
        // The token requests and their commit, while the heartbeat extends the lease (pinned
        // here and lent, so that the call's future holds it once).
        let work = std::pin::pin!(async {
            let result = self.obtain(src, previous.as_ref().and_then(|p| p.refresh_token.as_ref())).await;
            self.fault("after_token_response");
            match result {
                Ok(new) => {
                    self.store_new(src, slot, mode, &leased, abandoned.is_some(), previous.as_deref(), new).await
                }
                Err(e) => self.store_failure(src, slot, mode, &leased, &e).await,
            }
        });
        self.holding(key, &leased, work).await
    }

    /// Stores what a failed refresh leaves ([`decide::after_failure`]), releasing the lease,
    /// records its events and answers the caller.
    async fn store_failure(
        &self,
        src: &TokenSource,
        slot: &Slot,
        mode: Mode,
        leased: &TokenRow,
        e: &token::TokenError,
    ) -> Result<Obtained, CallError> {
        let key = &src.key;
        let now = self.now();
        let after = decide::after_failure(e, &lock(&slot.cached), src, mode, leased.state, now, obtain::roll());
        let committed = bounded(self.store.commit_token(key, leased.epoch, &after.write, now)).await?;
        for (kind, outcome, detail) in after.events {
            self.events.record(key, kind, outcome, detail).await;
        }
        let mut c = lock(&slot.cached);
        if after.erase {
            c.set = None;
            c.version = committed.then_some(leased.version + 1);
        } else if committed {
            c.version = Some(leased.version + 1);
        }
        c.failure = Some(after.failure);
        after.answer
    }

    /// Stores new tokens under the lease, durably before anyone uses them (write-ahead
    /// rotation), and answers them. A response without a refresh token keeps the old one (RFC
    /// 6749 §6). When the store does not answer, they are kept in memory until it does.
    #[allow(clippy::too_many_arguments)]
    async fn store_new(
        &self,
        src: &TokenSource,
        slot: &Slot,
        mode: Mode,
        leased: &TokenRow,
        abandoned: bool,
        previous: Option<&TokenSet>,
        mut new: TokenSet,
    ) -> Result<Obtained, CallError> {
        let key = &src.key;
        if new.refresh_token.is_none() {
            new.refresh_token = previous.and_then(|p| p.refresh_token.clone());
        }
        new.grant = src.stamp;
        let now = self.now();
        let write = decide::success_write(token::seal(&self.vault, key, &new), &new, now);
        let new = Arc::new(new);
        let kind = decide::obtained_kind(leased);
        let pending = Pending { write, epoch: leased.epoch, version: leased.version, set: new.clone(), kind };
        let committed = match commit_pending(self.store.as_ref(), key, &pending, now).await {
            Ok(committed) => committed,
            Err(error) => {
                // The provider answered and the store did not: the new tokens exist only here.
                // Kept, and stored as soon as the store answers; no call gets them before
                // (SECURITY S24, R4, R5).
                tracing::error!(connector = %key.connector, env = %key.env, "the store did not take new tokens; they are kept in memory and stored when it answers");
                self.keep_pending(key, slot, pending);
                return Err(pending_error(&key.connector, &error));
            }
        };
        self.fault("after_token_commit");
        if !committed {
            tracing::error!(connector = %key.connector, env = %key.env, "token commit lost to another writer; using the stored token");
            self.events.record(key, EventKind::TokenCommitConflict, EventOutcome::Error, json!({})).await;
        } else {
            let detail = json!({"mode": mode.as_str(), "expires_at": new.expires_at});
            self.events.record(key, kind, EventOutcome::Ok, detail).await;
            if let Some(from) = decide::recovered_from(leased.state, abandoned) {
                let detail = json!({"previous_state": from.as_str()});
                self.events.record(key, EventKind::TokenRecovered, EventOutcome::Ok, detail).await;
            }
        }
        self.note_short_lifetime(src, slot, &new);
        let mut c = lock(&slot.cached);
        c.set = Some(new.clone());
        c.version = Some(leased.version + 1);
        c.failure = None;
        c.last_touch = now;
        Ok(Obtained { token: new, fresh: true })
    }

    /// Gives the lease back without changing anything (another writer was faster).
    async fn release(&self, key: &TokenKey, leased: &TokenRow) {
        let write = TokenWrite { state: leased.state, last_error: leased.last_error.clone(), ..TokenWrite::default() };
        if let Err(e) = bounded(self.store.commit_token(key, leased.epoch, &write, self.now())).await {
            tracing::warn!(connector = %key.connector, error = %e, "could not release the token lease; it runs out by itself");
        }
    }

    pub(crate) async fn event(
        &self,
        key: &TokenKey,
        kind: EventKind,
        outcome: EventOutcome,
        detail: serde_json::Value,
    ) {
        self.events.record(key, kind, outcome, detail).await;
    }

    /// Stores the first tokens of a connection (or new ones after a reconnect), durably,
    /// before the browser is told it worked. Returns the state the token had before.
    pub async fn install(&self, src: &TokenSource, mut set: TokenSet) -> Result<TokenState, CallError> {
        set.grant = src.stamp;
        let key = &src.key;
        let slot = self.slot(key);
        let arrived = self.now();
        let _flight = slot.flight.lock().await;
        let leased = match self.lease(src, &slot, Waiter::Install, &mut None, arrived).await? {
            Leased::Taken(row) => row,
            Leased::Answered(_) => return Err(CallError::internal("an install was answered from the cache")),
        };
        let previous = leased.state;
        let now = self.now();
        let write = decide::success_write(token::seal(&self.vault, key, &set), &set, now);
        if !bounded(self.store.commit_token(key, leased.epoch, &write, now)).await? {
            return Err(CallError::new(
                ErrorCode::Unavailable,
                "the connection's tokens changed while they were stored; connect again",
            ));
        }
        let mut c = lock(&slot.cached);
        c.set = Some(Arc::new(set));
        c.version = Some(leased.version + 1);
        c.failure = None;
        c.last_touch = now;
        Ok(previous)
    }

    /// The current token set of a key, from memory or the store (for revocation).
    pub async fn current(&self, key: &TokenKey) -> Option<Arc<TokenSet>> {
        let slot = self.slot(key);
        if let Some(set) = lock(&slot.cached).set.clone() {
            return Some(set);
        }
        let row = bounded(self.store.get_token(key)).await.ok()??;
        let mut c = lock(&slot.cached);
        self.adopt_row(&mut c, &row);
        c.set.clone()
    }

    /// Drops the token of `src`'s key, cached and stored: it was obtained under grant settings
    /// that a configuration reload changed (token URL, client, scopes), so the next call
    /// obtains a new one under the new settings instead of using it or its refresh token.
    /// Tokens the store has not taken yet are stored first, then erased with the rest, under
    /// the refresh lease (a refresh in flight elsewhere finishes first).
    pub async fn discard(&self, src: &TokenSource) -> Result<(), CallError> {
        let key = &src.key;
        let slot = self.slot(key);
        let arrived = self.now();
        let _flight = slot.flight.lock().await;
        self.settle_pending(key, &slot).await?;
        lock(&slot.cached).set = None;
        let leased = match self.lease(src, &slot, Waiter::Install, &mut None, arrived).await? {
            Leased::Taken(row) => row,
            Leased::Answered(_) => return Err(CallError::internal("a discard was answered from the cache")),
        };
        let write = TokenWrite {
            sealed: Some(None),
            expires_at: Some(None),
            state: TokenState::Empty,
            last_error: None,
            last_refresh_at: None,
        };
        let committed = bounded(self.store.commit_token(key, leased.epoch, &write, self.now())).await?;
        let mut c = lock(&slot.cached);
        c.set = None;
        c.version = committed.then_some(leased.version + 1);
        c.failure = None;
        Ok(())
    }

    /// The upstream refused `refused`, a token nothing can replace (an OAuth 1.0a connection's,
    /// reported revoked by the provider): unless the connection holds another token by now
    /// (connected again, here or elsewhere), the token is erased, in the store and here, and
    /// the connection marked `reauthorization_required`, with the events (and so the
    /// `connection.refresh_failed` webhook) of a refused refresh. `reason` says what the
    /// upstream answered (names and statuses only). Returns whether it was marked now.
    pub async fn revoked(&self, src: &TokenSource, refused: &AccessToken, reason: &str) -> Result<bool, CallError> {
        use secrecy::ExposeSecret as _;
        let key = &src.key;
        let slot = self.slot(key);
        let arrived = self.now();
        let _flight = slot.flight.lock().await;
        self.settle_pending(key, &slot).await?;
        let leased = match self.lease(src, &slot, Waiter::Install, &mut None, arrived).await? {
            Leased::Taken(row) => row,
            Leased::Answered(_) => return Err(CallError::internal("a revocation was answered from the cache")),
        };
        let same = {
            let mut c = lock(&slot.cached);
            self.adopt_row(&mut c, &leased);
            c.set.as_ref().is_some_and(|s| s.access_token.expose_secret() == refused.expose_secret())
        };
        if !same {
            self.release(key, &leased).await;
            return Ok(false);
        }
        let write = TokenWrite {
            sealed: Some(None),
            expires_at: Some(None),
            state: TokenState::ReauthorizationRequired,
            last_error: Some(reason.to_owned()),
            last_refresh_at: None,
        };
        let committed = bounded(self.store.commit_token(key, leased.epoch, &write, self.now())).await?;
        let detail = json!({"error": reason, "revoked_at_provider": true});
        self.events.record(key, EventKind::TokenRefreshFailed, EventOutcome::Terminal, detail.clone()).await;
        if leased.state != TokenState::ReauthorizationRequired {
            self.events.record(key, EventKind::TokenReauthorizationRequired, EventOutcome::Terminal, detail).await;
        }
        let mut c = lock(&slot.cached);
        c.set = None;
        c.version = committed.then_some(leased.version + 1);
        Ok(committed)
    }

    /// Forgets a key's cached token (after its connection was deleted).
    pub fn forget(&self, key: &TokenKey) {
        lock(&self.slots).remove(key);
    }

    /// The stored state of a key (for connection listings). A store that fails (or holds a
    /// row it cannot read) is an error, not a connection shown as `empty`.
    pub async fn state_of(&self, key: &TokenKey) -> Result<Option<TokenRow>, CallError> {
        store_bounded(self.store.get_token(key), "the connections cannot be listed").await
    }
}
