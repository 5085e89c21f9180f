//! The token lifecycle (SPEC §5): tokens cached in memory and persisted sealed; refreshed
//! `refresh_skew_s` before expiry; one refresh at a time per token, across every instance
//! sharing the store (a lease with a fencing epoch); a rotated refresh token durable before any
//! call uses the new access token; terminal refusals erase tokens and mark
//! `reauthorization_required`; transient failures back off with jitter and keep every token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_vault::Vault;
use secrecy::ExposeSecret;
use serde_json::json;

use crate::auth::TokenSource;
use crate::event::{EventKind, EventOutcome};
use crate::secret::{AccessToken, RefreshToken};
use crate::store::{EventRow, Store, TokenKey, TokenRow, TokenWrite};
use crate::time_fmt::now_ms;
use crate::token::{self, ShownState, TokenError, TokenSet, TokenState, request_token};
use crate::{CallError, ErrorCode};

/// How long a refresh lease lasts: longer than the token requests of one refresh (each bounded
/// by the connector's timeout, at most 30 s) plus a margin. A lease held by a process that died
/// runs out after this; meanwhile a still-valid token keeps being served.
fn lease_ms(src: &TokenSource) -> i64 {
    let timeout = i64::try_from(src.timeout.as_millis()).unwrap_or(30_000);
    2 * timeout + 5_000
}
/// The state shown for a stored token: `refreshing` while a lease runs; `refresh_outcome_unknown`
/// once a lease ran out without being given back (the refresh's process stopped; the next use
/// tries the stored refresh token, SECURITY S24); otherwise the stored state.
pub fn shown_state(row: &crate::store::TokenRow, now: i64) -> ShownState {
    if row.lease_until > now {
        ShownState::Refreshing
    } else if row.lease_until != 0 {
        ShownState::RefreshOutcomeUnknown
    } else {
        ShownState::Stored(row.state)
    }
}

/// Tries of one token request within a call, for transient failures.
const TRIES: u32 = 3;
/// `Retry-After` is honoured up to this long within a call (longer waits back off instead).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Backoff between calls after a transient failure: full jitter, from 1 s up to 5 min.
const BACKOFF_BASE_MS: i64 = 1_000;
const BACKOFF_CAP_MS: i64 = 300_000;
/// A token obtained this recently counts as "just obtained" (no reactive refresh for it).
const JUST_OBTAINED_MS: i64 = 5_000;
/// After a reactive refresh whose new token was refused too (the path refuses any token), no
/// reactive refresh of that token for this long, in this process: an upstream path that
/// answers 401 to every token cannot make each call fetch (and perhaps rotate) a new one.
const REACTIVE_PAUSE_MS: i64 = 60_000;
/// `last_used_at` is written at most this often per token.
const TOUCH_EVERY_MS: i64 = 60_000;

/// A token for one call.
#[derive(Clone)]
pub struct Obtained {
    pub token: Arc<TokenSet>,
    /// A 401 with it does not trigger a refresh: it was obtained from the provider just now,
    /// or reactive refreshes of this token are paused ([`REACTIVE_PAUSE_MS`]).
    pub fresh: bool,
}

#[derive(Clone)]
struct Failure {
    error: CallError,
    terminal: bool,
    fingerprint: [u8; 32],
    next_attempt_at: i64,
    attempts: u32,
}

#[derive(Default)]
struct Cached {
    set: Option<Arc<TokenSet>>,
    /// The store version this cache reflects; `None` before the first load.
    version: Option<i64>,
    failure: Option<Failure>,
    last_touch: i64,
    /// Until when a 401 does not replace the token ([`REACTIVE_PAUSE_MS`]; 0: not paused).
    reactive_paused_until: i64,
    /// Tokens the provider issued that the store did not take (it did not answer): the only
    /// copy of a possibly rotated refresh token. Committed before anything else is done with
    /// this key, and by a background task until then; never handed to a caller before.
    pending: Option<Pending>,
}

impl Cached {
    /// Whether a 401 may replace the current token now ([`REACTIVE_PAUSE_MS`]).
    fn reactive_allowed(&self, now: i64) -> bool {
        now >= self.reactive_paused_until
    }
}

/// A commit that did not happen because the store did not answer (SECURITY R4, R5).
#[derive(Clone)]
struct Pending {
    write: TokenWrite,
    epoch: i64,
    version: i64,
    set: Arc<TokenSet>,
    /// The event to record once stored (`token.obtained` or `token.refreshed`).
    kind: EventKind,
}

/// How long a store operation on a call's path may take before the call fails with
/// `unavailable` (SECURITY R5: a partitioned store fails calls fast, not after the TCP
/// timeout). `/readyz` waits as long for the store's answer ([`store_bounded`]).
pub const STORE_WAIT: Duration = Duration::from_secs(3);
/// How often a pending commit is tried again while the store does not answer.
const PENDING_RETRY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Slot {
    cached: Mutex<Cached>,
    /// Single flight within this process; the store lease extends it across processes.
    flight: tokio::sync::Mutex<()>,
    /// Whether a lifetime shorter than the refresh skew was logged (once per token per process).
    short_lifetime_logged: std::sync::atomic::AtomicBool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// Refresh only if the token is stale.
    IfStale,
    /// The upstream refused this access token: replace it unless someone already did.
    Replace,
    /// Refresh now, to keep the refresh token alive.
    KeepAlive,
}

pub struct TokenManager {
    store: Arc<dyn Store>,
    vault: Arc<Vault>,
    /// Every recorded event is also sent here (webhooks listen).
    notify: Option<tokio::sync::mpsc::UnboundedSender<EventRow>>,
    owner: String,
    slots: Mutex<HashMap<TokenKey, Arc<Slot>>>,
    fault: Option<String>,
    /// Token requests sent to providers (for metrics and tests).
    pub requests: AtomicU64,
    /// Refresh-token requests whose answer was lost after they may have reached the provider
    /// (`latchkey_refresh_ambiguous_total`): the exposure to lost rotations.
    pub ambiguous: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn jitter(max_ms: i64) -> i64 {
    if max_ms <= 0 {
        return 0;
    }
    let r = u64::from_le_bytes(latchkey_vault::random::bytes::<8>());
    i64::try_from(r % u64::try_from(max_ms).unwrap_or(1)).unwrap_or(0)
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

impl TokenManager {
    pub fn new(
        store: Arc<dyn Store>,
        vault: Arc<Vault>,
        fault: Option<String>,
        notify: Option<tokio::sync::mpsc::UnboundedSender<EventRow>>,
    ) -> Self {
        Self {
            store,
            vault,
            notify,
            owner: latchkey_vault::random::token(16),
            slots: Mutex::new(HashMap::new()),
            fault,
            requests: AtomicU64::new(0),
            ambiguous: AtomicU64::new(0),
        }
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
        let now = now_ms();
        {
            let mut c = lock(&slot.cached);
            if let Some(set) = &c.set
                && set.is_fresh(now, src.skew_for(set))
            {
                let out = Obtained { token: set.clone(), fresh: !c.reactive_allowed(now) };
                self.touch(&src.key, &mut c, now);
                return Ok(out);
            }
        }
        self.refresh(src, &slot, Mode::IfStale, None).await
    }

    /// Replaces an access token the upstream refused (reactive refresh), unless another
    /// caller already replaced it.
    pub async fn replace(&self, src: &TokenSource, refused: &AccessToken) -> Result<Obtained, CallError> {
        let slot = self.slot(&src.key);
        self.refresh(src, &slot, Mode::Replace, Some(refused)).await
    }

    /// The upstream refused `token` too, which a reactive refresh had just obtained: the path
    /// refuses any token, so 401s do not replace it for [`REACTIVE_PAUSE_MS`] (issue 12: one
    /// path that always answers 401 would otherwise make every call fetch a new token).
    pub fn refused_after_refresh(&self, src: &TokenSource, token: &TokenSet) {
        let slot = self.slot(&src.key);
        let mut c = lock(&slot.cached);
        if c.set.as_ref().is_some_and(|s| s.access_token.expose_secret() == token.access_token.expose_secret()) {
            let now = now_ms();
            if c.reactive_allowed(now) {
                tracing::warn!(
                    connector = %src.key.connector,
                    env = %src.key.env,
                    "the upstream refused a token obtained just now: not refreshing on its 401s for 60 s"
                );
            }
            c.reactive_paused_until = now + REACTIVE_PAUSE_MS;
        }
    }

    /// Refreshes now (keep-alive), whatever the token's age.
    pub async fn keep_alive(&self, src: &TokenSource) -> Result<Obtained, CallError> {
        let slot = self.slot(&src.key);
        self.refresh(src, &slot, Mode::KeepAlive, None).await
    }

    fn touch(&self, key: &TokenKey, c: &mut Cached, now: i64) {
        if now - c.last_touch < TOUCH_EVERY_MS {
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

    /// What the cache can answer without a token request, if anything.
    fn answer_from_cache(
        c: &Cached,
        src: &TokenSource,
        mode: Mode,
        refused: Option<&AccessToken>,
        now: i64,
    ) -> Option<Result<Obtained, CallError>> {
        if let Some(set) = &c.set {
            let just = now - set.obtained_at < JUST_OBTAINED_MS;
            match mode {
                Mode::IfStale if set.is_fresh(now, src.skew_for(set)) => {
                    return Some(Ok(Obtained { token: set.clone(), fresh: just }));
                }
                Mode::Replace if refused.is_some_and(|r| r.expose_secret() != set.access_token.expose_secret()) => {
                    return Some(Ok(Obtained { token: set.clone(), fresh: true }));
                }
                // A token just obtained was refused too: the 401 is the path's answer.
                Mode::Replace if !c.reactive_allowed(now) => {
                    return Some(Ok(Obtained { token: set.clone(), fresh: true }));
                }
                // Another caller (or instance) just renewed it: that keeps it alive too.
                Mode::KeepAlive if now - set.obtained_at < src.keepalive_ms / 2 => {
                    return Some(Ok(Obtained { token: set.clone(), fresh: just }));
                }
                _ => {}
            }
        }
        if let Some(f) = &c.failure {
            if f.terminal && f.fingerprint == src.fingerprint {
                return Some(Err(CallError::new(
                    ErrorCode::ReauthorizationRequired,
                    format!(
                        "connector `{}`: the provider refused its credential ({}); fix the secrets or settings \
                         (e.g. `latchkey secret set`) and the next call tries again",
                        src.key.connector,
                        f.error.details.get("provider_error").and_then(|v| v.as_str()).unwrap_or("refused")
                    ),
                )));
            }
            // New settings or secrets (a new fingerprint) may be tried at once.
            if !f.terminal && now < f.next_attempt_at && f.fingerprint == src.fingerprint {
                if let Some(set) = &c.set
                    && set.is_valid(now)
                    && mode == Mode::IfStale
                {
                    return Some(Ok(Obtained { token: set.clone(), fresh: false }));
                }
                return Some(Err(f.error.clone()));
            }
        }
        None
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

    async fn refresh(
        &self,
        src: &TokenSource,
        slot: &Slot,
        mode: Mode,
        refused: Option<&AccessToken>,
    ) -> Result<Obtained, CallError> {
        let _flight = slot.flight.lock().await;
        let key = &src.key;
        self.settle_pending(key, slot).await?;
        let now = now_ms();
        if let Some(answer) = Self::answer_from_cache(&lock(&slot.cached), src, mode, refused, now) {
            return answer;
        }
        // Another instance may have refreshed: the store is the truth.
        let mut row = bounded(self.store.get_token(key)).await?;
        if let Some(row) = &row {
            let mut c = lock(&slot.cached);
            self.adopt_row(&mut c, row);
            if let Some(answer) = Self::answer_from_cache(&c, src, mode, refused, now).filter(|a| a.is_ok()) {
                return answer;
            }
        }
        // Take the lease, or wait for the instance that holds it.
        let waited_since = now_ms();
        let leased = loop {
            let now = now_ms();
            if let Some(row) = bounded(self.store.take_lease(key, &self.owner, now, now + lease_ms(src))).await? {
                break row;
            }
            {
                let c = lock(&slot.cached);
                if mode == Mode::IfStale
                    && let Some(set) = c.set.as_ref().filter(|s| s.is_valid(now))
                {
                    // Someone else is refreshing; this token still works meanwhile.
                    return Ok(Obtained { token: set.clone(), fresh: false });
                }
            }
            if now - waited_since > lease_ms(src) + 5_000 {
                return Err(CallError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "connector `{}`: another instance holds the token refresh and does not finish",
                        key.connector
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            row = bounded(self.store.get_token(key)).await?;
            if let Some(row) = &row {
                let mut c = lock(&slot.cached);
                self.adopt_row(&mut c, row);
                if let Some(Ok(answer)) = Self::answer_from_cache(&c, src, mode, refused, now_ms()) {
                    return Ok(answer);
                }
            }
        };
        // SECURITY S24: the lease just taken replaced one that was never given back, so a
        // refresh was under way when its process died (or stalled past the lease). The provider
        // may have rotated the refresh token without the new one reaching the store. The
        // stored one is tried once (providers with a reuse window accept it); a refusal makes
        // the credential `reauthorization_required`, with its event and webhook, or the grant
        // obtains a new one.
        let abandoned = row.as_ref().filter(|r| r.epoch + 1 == leased.epoch && r.lease_until != 0);
        if let Some(r) = abandoned {
            tracing::warn!(
                connector = %key.connector,
                env = %key.env,
                "a refresh begun earlier never finished (its process stopped); its outcome is unknown: trying the stored refresh token"
            );
            self.event(
                key,
                EventKind::TokenRefreshOutcomeUnknown,
                EventOutcome::Unknown,
                json!({"lease_until": r.lease_until}),
            )
            .await;
        }
        let abandoned = abandoned.is_some();
        let (early, previous) = {
            let mut c = lock(&slot.cached);
            self.adopt_row(&mut c, &leased);
            match Self::answer_from_cache(&c, src, mode, refused, now_ms()) {
                Some(Ok(answer)) => (Some(answer), None),
                _ => (None, c.set.clone()),
            }
        };
        if let Some(answer) = early {
            self.release(key, &leased).await;
            return Ok(answer);
        }
        let previous_state = leased.state;
        let result = self.obtain(src, previous.as_ref().and_then(|p| p.refresh_token.as_ref())).await;
        self.fault("after_token_response");
        let now = now_ms();
        match result {
            Ok(mut new) => {
                if new.refresh_token.is_none() {
                    // No new refresh token in the answer: the old one stays valid (RFC 6749 §6).
                    new.refresh_token = previous.as_ref().and_then(|p| p.refresh_token.clone());
                }
                let write = TokenWrite {
                    sealed: Some(Some(token::seal(&self.vault, key, &new))),
                    expires_at: Some(new.expires_at),
                    state: TokenState::Ok,
                    last_error: None,
                    last_refresh_at: Some(now),
                };
                // Durable before anyone uses it.
                let new = Arc::new(new);
                let kind = if leased.sealed.is_none() { EventKind::TokenObtained } else { EventKind::TokenRefreshed };
                let pending = Pending { write, epoch: leased.epoch, version: leased.version, set: new.clone(), kind };
                let committed = match commit_pending(self.store.as_ref(), key, &pending).await {
                    Ok(committed) => committed,
                    Err(error) => {
                        // The provider answered and the store did not: the new tokens exist
                        // only here. Kept, and stored as soon as the store answers; no call
                        // gets them before (SECURITY S24, R4, R5).
                        tracing::error!(connector = %key.connector, env = %key.env, "the store did not take new tokens; they are kept in memory and stored when it answers");
                        lock(&slot.cached).pending = Some(pending);
                        self.spawn_pending_commit(key);
                        return Err(pending_error(&key.connector, &error));
                    }
                };
                self.fault("after_token_commit");
                if !committed {
                    tracing::error!(connector = %key.connector, env = %key.env, "token commit lost to another writer; using the stored token");
                    self.event(key, EventKind::TokenCommitConflict, EventOutcome::Error, json!({})).await;
                } else {
                    self.event(
                        key,
                        kind,
                        EventOutcome::Ok,
                        json!({"mode": format!("{mode:?}").to_lowercase(), "expires_at": new.expires_at}),
                    )
                    .await;
                    if abandoned {
                        let previous = json!({"previous_state": ShownState::RefreshOutcomeUnknown.as_str()});
                        self.event(key, EventKind::TokenRecovered, EventOutcome::Ok, previous).await;
                    } else if matches!(previous_state, TokenState::Degraded | TokenState::ReauthorizationRequired) {
                        self.event(
                            key,
                            EventKind::TokenRecovered,
                            EventOutcome::Ok,
                            json!({"previous_state": previous_state.as_str()}),
                        )
                        .await;
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
            Err(e) if e.is_terminal() => {
                let write = TokenWrite {
                    sealed: Some(None),
                    expires_at: Some(None),
                    state: TokenState::ReauthorizationRequired,
                    last_error: Some(e.summary()),
                    last_refresh_at: None,
                };
                let committed = bounded(self.store.commit_token(key, leased.epoch, &write, now)).await?;
                self.event(key, EventKind::TokenRefreshFailed, EventOutcome::Terminal, error_detail(&e)).await;
                if previous_state != TokenState::ReauthorizationRequired {
                    self.event(key, EventKind::TokenReauthorizationRequired, EventOutcome::Terminal, error_detail(&e))
                        .await;
                }
                let error = e.to_call_error(&key.connector);
                let mut c = lock(&slot.cached);
                c.set = None;
                c.version = committed.then_some(leased.version + 1);
                c.failure = Some(Failure {
                    error: error.clone(),
                    terminal: true,
                    fingerprint: src.fingerprint,
                    next_attempt_at: 0,
                    attempts: 0,
                });
                Err(error)
            }
            Err(e) => {
                let write = TokenWrite {
                    sealed: None,
                    expires_at: None,
                    state: TokenState::Degraded,
                    last_error: Some(e.summary()),
                    last_refresh_at: None,
                };
                let committed = bounded(self.store.commit_token(key, leased.epoch, &write, now)).await?;
                // The state before, so that the first transient failure (from `ok` or `empty`)
                // becomes a `connection.refresh_failed` webhook, and the next ones do not.
                let mut detail = error_detail(&e);
                detail["previous_state"] = json!(previous_state.as_str());
                self.event(key, EventKind::TokenRefreshFailed, EventOutcome::Transient, detail).await;
                let mut error = e.to_call_error(&key.connector);
                if e.timed_out() {
                    error.code = ErrorCode::TokenRequestFailed;
                }
                let mut c = lock(&slot.cached);
                let attempts = c.failure.as_ref().map_or(0, |f| f.attempts) + 1;
                let window = (BACKOFF_BASE_MS << attempts.min(16)).min(BACKOFF_CAP_MS);
                let retry_after =
                    e.retry_after().map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0)).min(BACKOFF_CAP_MS);
                c.failure = Some(Failure {
                    error: error.clone(),
                    terminal: false,
                    fingerprint: src.fingerprint,
                    next_attempt_at: now + retry_after.max(jitter(window)),
                    attempts,
                });
                if committed {
                    c.version = Some(leased.version + 1);
                }
                match &c.set {
                    Some(set) if set.is_valid(now) && mode != Mode::Replace => {
                        Ok(Obtained { token: set.clone(), fresh: false })
                    }
                    _ => Err(error),
                }
            }
        }
    }

    /// Logs, once per token, that its lifetime is too short for the refresh skew: the default
    /// skew is then capped at half the lifetime; a configured one that reaches the lifetime
    /// makes every use refresh, which deserves a warning ([`TokenSource::skew_for`]).
    fn note_short_lifetime(&self, src: &TokenSource, slot: &Slot, set: &TokenSet) {
        let Some(at) = set.expires_at else { return };
        let lifetime = at.saturating_sub(set.obtained_at);
        let (connector, env) = (&src.key.connector, src.key.env);
        if src.skew_configured {
            if src.skew_ms >= lifetime && !slot.short_lifetime_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    %connector, %env, lifetime_s = lifetime / 1000, refresh_skew_s = src.skew_ms / 1000,
                    "the provider's tokens live no longer than refresh_skew_s: every use refreshes; lower refresh_skew_s or leave it unset"
                );
            }
        } else if src.skew_for(set) < src.skew_ms && !slot.short_lifetime_logged.swap(true, Ordering::Relaxed) {
            tracing::info!(
                %connector, %env, lifetime_s = lifetime / 1000, refresh_skew_s = src.skew_ms / 1000,
                "the provider's tokens live less than twice the default refresh_skew_s: each is refreshed at half its lifetime instead"
            );
        }
    }

    /// Gives the lease back without changing anything (another writer was faster).
    async fn release(&self, key: &TokenKey, leased: &TokenRow) {
        let write = TokenWrite { state: leased.state, last_error: leased.last_error.clone(), ..TokenWrite::default() };
        if let Err(e) = bounded(self.store.commit_token(key, leased.epoch, &write, now_ms())).await {
            tracing::warn!(connector = %key.connector, error = %e, "could not release the token lease; it runs out by itself");
        }
    }

    /// Token requests with retries: the refresh token when there is one (falling back to the
    /// grant when it is refused), else the grant.
    async fn obtain(&self, src: &TokenSource, refresh_token: Option<&RefreshToken>) -> Result<TokenSet, TokenError> {
        let mut use_refresh = refresh_token.is_some();
        let mut attempt = 0;
        loop {
            let now = now_ms();
            let request = match (use_refresh, refresh_token) {
                (true, Some(rt)) => match src.grant.refresh_request(rt) {
                    Some(r) => r,
                    None => {
                        use_refresh = false;
                        continue;
                    }
                },
                _ => src.grant.request(now).map_err(TokenError::unsendable)?,
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            match request_token(&src.client, &request, src.timeout, now).await {
                Ok(set) => return Ok(set),
                Err(e) if e.is_terminal() && request.is_refresh && src.grant.can_regrant() => {
                    // The refresh token was refused; the grant itself may still work.
                    tracing::info!(connector = %src.key.connector, error = %e.summary(), "refresh token refused; repeating the grant");
                    self.event(&src.key, EventKind::TokenRefreshRefused, EventOutcome::Fallback, error_detail(&e))
                        .await;
                    use_refresh = false;
                }
                Err(e) if e.is_terminal() => return Err(e),
                Err(e) => {
                    if e.is_ambiguous() && request.is_refresh {
                        // The provider may have rotated the refresh token and the answer was
                        // lost. The retry below presents the same token at once (a provider
                        // with a reuse window accepts it); `invalid_grant` then ends on the
                        // refusal path (the grant again, or reauthorization).
                        self.ambiguous.fetch_add(1, Ordering::Relaxed);
                        self.event(
                            &src.key,
                            EventKind::TokenRefreshAmbiguous,
                            EventOutcome::Retrying,
                            error_detail(&e),
                        )
                        .await;
                    }
                    attempt += 1;
                    if attempt >= TRIES || e.retry_after().is_some_and(|d| d > MAX_RETRY_AFTER) {
                        return Err(e);
                    }
                    let base = 200u64 << attempt;
                    let wait = e
                        .retry_after()
                        .unwrap_or(Duration::from_millis(base / 2 + jitter(i64::try_from(base).unwrap_or(200)) as u64));
                    tracing::info!(connector = %src.key.connector, error = %e.summary(), wait_ms = wait.as_millis() as u64, "token request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    pub(crate) async fn event(
        &self,
        key: &TokenKey,
        kind: EventKind,
        outcome: EventOutcome,
        detail: serde_json::Value,
    ) {
        record_event(self.store.as_ref(), self.notify.as_ref(), key, kind, outcome, detail).await;
    }

    /// Stores the tokens a refresh could not store earlier, before anything else is done with
    /// `key` (the caller holds the slot's flight lock). While the store still does not answer,
    /// the call fails fast: refreshing again would spend the old refresh token, which the
    /// provider may have rotated away.
    async fn settle_pending(&self, key: &TokenKey, slot: &Slot) -> Result<(), CallError> {
        let Some(pending) = lock(&slot.cached).pending.clone() else { return Ok(()) };
        let committed =
            commit_pending(self.store.as_ref(), key, &pending).await.map_err(|e| pending_error(&key.connector, &e))?;
        pending_settled(self.store.as_ref(), self.notify.as_ref(), key, slot, &pending, committed).await;
        Ok(())
    }

    /// Tries the pending commit of `key` every [`PENDING_RETRY`] until it is decided (here or
    /// by a caller), so that the tokens are stored when the store comes back even if no call
    /// comes.
    fn spawn_pending_commit(&self, key: &TokenKey) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (store, notify, slot, key) = (self.store.clone(), self.notify.clone(), self.slot(key), key.clone());
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(PENDING_RETRY).await;
                let _flight = slot.flight.lock().await;
                let Some(pending) = lock(&slot.cached).pending.clone() else { return };
                if let Ok(committed) = commit_pending(store.as_ref(), &key, &pending).await {
                    pending_settled(store.as_ref(), notify.as_ref(), &key, &slot, &pending, committed).await;
                    return;
                }
            }
        });
    }

    /// Stores the first tokens of a connection (or new ones after a reconnect), durably,
    /// before the browser is told it worked. Returns the state the token had before.
    pub async fn install(&self, src: &TokenSource, set: TokenSet) -> Result<TokenState, CallError> {
        let key = &src.key;
        let slot = self.slot(key);
        let _flight = slot.flight.lock().await;
        let started = now_ms();
        let leased = loop {
            let now = now_ms();
            if let Some(row) = bounded(self.store.take_lease(key, &self.owner, now, now + lease_ms(src))).await? {
                break row;
            }
            if now - started > lease_ms(src) + 5_000 {
                return Err(CallError::new(
                    ErrorCode::Unavailable,
                    "the connection's tokens are being refreshed by another instance that does not finish; connect again in a few seconds",
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let previous = leased.state;
        let now = now_ms();
        let write = TokenWrite {
            sealed: Some(Some(token::seal(&self.vault, key, &set))),
            expires_at: Some(set.expires_at),
            state: TokenState::Ok,
            last_error: None,
            last_refresh_at: Some(now),
        };
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

/// Memory after a pending commit was decided: the new tokens when stored, else (another writer
/// won meanwhile) whatever the store holds, read at the next use.
async fn pending_settled(
    store: &dyn Store,
    notify: Option<&tokio::sync::mpsc::UnboundedSender<EventRow>>,
    key: &TokenKey,
    slot: &Slot,
    pending: &Pending,
    committed: bool,
) {
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
        record_event(store, notify, key, pending.kind, EventOutcome::Ok, detail).await;
    } else {
        tracing::error!(connector = %key.connector, env = %key.env, "tokens kept while the store did not answer lost to another writer");
        record_event(
            store,
            notify,
            key,
            EventKind::TokenCommitConflict,
            EventOutcome::Error,
            json!({"stored_late": true}),
        )
        .await;
    }
}

/// Commits `pending` under its lease epoch, or, the lease having run out, if nobody wrote since
/// it was taken. `Ok(false)`: another writer won. A commit whose answer was lost may have
/// happened anyway: a refusal is checked against what the store holds.
async fn commit_pending(store: &dyn Store, key: &TokenKey, pending: &Pending) -> Result<bool, CallError> {
    let now = now_ms();
    if bounded(store.commit_token(key, pending.epoch, &pending.write, now)).await?
        || bounded(store.commit_token_if_version(key, pending.version, &pending.write, now)).await?
    {
        return Ok(true);
    }
    let stored = bounded(store.get_token(key)).await?;
    let ours = pending.write.sealed.as_ref().and_then(|s| s.as_deref());
    Ok(stored.is_some_and(|row| row.sealed.is_some() && row.sealed.as_deref() == ours))
}

fn pending_error(connector: &str, cause: &CallError) -> CallError {
    CallError::new(
        ErrorCode::Unavailable,
        format!(
            "connector `{connector}`: new tokens are kept in memory until the store takes them ({}); try again shortly",
            cause.message
        ),
    )
}

/// Records a token event in the store's event log (bounded by [`STORE_WAIT`]) and hands it to
/// the webhook sender.
async fn record_event(
    store: &dyn Store,
    notify: Option<&tokio::sync::mpsc::UnboundedSender<EventRow>>,
    key: &TokenKey,
    kind: EventKind,
    outcome: EventOutcome,
    detail: serde_json::Value,
) {
    let at = now_ms();
    let row = EventRow {
        id: event_id(at),
        at,
        kind,
        connector: key.connector.clone(),
        env: key.env,
        connection: key.connection.clone(),
        actor: "latchkey".into(),
        outcome,
        detail: detail.to_string(),
    };
    tracing::info!(kind = kind.as_str(), connector = %key.connector, env = %key.env, outcome = outcome.as_str(), "token event");
    if let Err(e) = store_bounded(store.insert_event(&row), "the event was not recorded").await {
        tracing::error!(error = %e.message, kind = kind.as_str(), "could not record an audit event");
    }
    if let Some(tx) = notify {
        let _ = tx.send(row);
    }
}

fn error_detail(e: &TokenError) -> serde_json::Value {
    json!({"error": e.error, "error_description": e.description, "error_uri": e.uri, "status": e.status, "timed_out": e.timed_out()})
}

/// An event id that sorts in the order this process recorded its events, even within one
/// millisecond (listing orders by time, then id), and stays unique across instances.
fn event_id(at: i64) -> String {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:012x}{seq:08x}{}", at.max(0), latchkey_vault::random::token(12))
}

#[cfg(test)]
mod tests {
    use super::shown_state;
    use crate::Env;
    use crate::store::{TokenKey, TokenRow};
    use crate::token::{ShownState, TokenState};

    fn row(state: TokenState, lease_until: i64) -> TokenRow {
        TokenRow {
            key: TokenKey::app("crm", Env::Live),
            sealed: None,
            expires_at: None,
            state,
            last_error: None,
            last_refresh_at: None,
            last_used_at: None,
            version: 0,
            lease_until,
            epoch: 1,
            updated_at: 0,
        }
    }

    #[test]
    fn shown_state_is_the_stored_state_without_a_lease() {
        for state in TokenState::ALL {
            assert_eq!(shown_state(&row(state, 0), 1_000), ShownState::Stored(state));
        }
    }

    #[test]
    fn shown_state_is_refreshing_while_a_lease_runs() {
        for state in TokenState::ALL {
            assert_eq!(shown_state(&row(state, 1_001), 1_000), ShownState::Refreshing);
        }
    }

    #[test]
    fn shown_state_is_refresh_outcome_unknown_once_a_lease_ran_out_unreleased() {
        // `lease_until` neither 0 (given back) nor in the future (running): SECURITY S24.
        for until in [1, 999, 1_000] {
            let shown = shown_state(&row(TokenState::Ok, until), 1_000);
            assert_eq!(shown, ShownState::RefreshOutcomeUnknown);
            assert_eq!(shown.as_str(), "refresh_outcome_unknown");
        }
    }
}
