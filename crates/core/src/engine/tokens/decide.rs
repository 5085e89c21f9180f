//! The token lifecycle's decisions, as functions of what is known (the cached token and
//! failure, the stored row, the outcome of a token request), the time and the settings. No
//! I/O, no clock, no randomness (a random `roll` is passed in): `TokenManager` asks, then
//! does what the answer says.

use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::json;

use super::Obtained;
use super::events::error_detail;
use super::pending::Pending;
use crate::auth::TokenSource;
use crate::event::{EventKind, EventOutcome};
use crate::secret::AccessToken;
use crate::store::{TokenRow, TokenWrite};
use crate::token::{ShownState, TokenError, TokenSet, TokenState};
use crate::{CallError, ErrorCode};

/// Tries of one token request within a call, for transient failures.
pub(super) const TRIES: u32 = 3;
/// `Retry-After` is honoured up to this long within a call (longer waits back off instead).
pub(super) const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);
/// Backoff between calls after a transient failure: full jitter, from 1 s up to 5 min.
pub(super) const BACKOFF_BASE_MS: i64 = 1_000;
pub(super) const BACKOFF_CAP_MS: i64 = 300_000;
/// A token obtained this recently counts as "just obtained" (no reactive refresh for it).
pub(super) const JUST_OBTAINED_MS: i64 = 5_000;
/// After a reactive refresh whose new token was refused too (the path refuses any token), no
/// reactive refresh of that token for this long, in this process: an upstream path that
/// answers 401 to every token cannot make each call fetch (and perhaps rotate) a new one.
pub(super) const REACTIVE_PAUSE_MS: i64 = 60_000;
/// `last_used_at` is written at most this often per token.
pub(super) const TOUCH_EVERY_MS: i64 = 60_000;
/// How long a refresh lease lasts unless its holder extends it: the time another instance
/// needs to take over the refresh of a holder that died (issue 19: the calls waiting on the
/// survivors are served within 10 s of a kill, which leaves the new holder about 5 s for its
/// own token request). The holder extends it every [`HEARTBEAT_MS`] for as long as its token
/// requests and their commit run, so the lease is not tied to the connector's timeout. Much
/// shorter would let a store that pauses for a few seconds (each extension may take up to
/// [`HEARTBEAT_MS`]; calls already give the store 3 s, `STORE_WAIT`) cost a live holder its
/// lease, and another instance a second token request; the instances' clocks must agree to
/// well within it (the holder writes its end, the others compare it with their own clocks).
pub const LEASE_MS: i64 = 5_000;
/// How often the holder extends its lease: a third of it, so that one extension that fails
/// (or the store's slowness up to a third each time) still leaves the next one in time.
pub(super) const HEARTBEAT_MS: i64 = LEASE_MS / 3;

/// How long a call waits for a refresh another instance holds before it is told `unavailable`:
/// the connector's timeout (the holder's token request should end within it) and one lease
/// (a holder that died is taken over, by this waiter or another, within a lease of its last
/// heartbeat). A holder still extending its lease past this is retrying a failing provider:
/// the call is told so rather than kept waiting; a waiter that takes the lease over itself
/// then makes its own request, bounded by the connector's timeout again.
pub(super) fn wait_bound_ms(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_millis()).unwrap_or(30_000) + LEASE_MS
}

/// The state shown for a stored token: `refreshing` while a lease runs; `refresh_outcome_unknown`
/// once a lease ran out without being given back (the refresh's process stopped; the next use
/// tries the stored refresh token, SECURITY S24); otherwise the stored state.
pub fn shown_state(row: &TokenRow, now: i64) -> ShownState {
    if row.lease_until > now {
        ShownState::Refreshing
    } else if row.lease_until != 0 {
        ShownState::RefreshOutcomeUnknown
    } else {
        ShownState::Stored(row.state)
    }
}

/// Why a token is wanted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Mode {
    /// Refresh only if the token is stale.
    IfStale,
    /// The upstream refused this access token: replace it unless someone already did.
    Replace,
    /// Refresh now, to keep the refresh token alive.
    KeepAlive,
}

impl Mode {
    /// The event detail's `mode`.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Mode::IfStale => "ifstale",
            Mode::Replace => "replace",
            Mode::KeepAlive => "keepalive",
        }
    }
}

/// The last failure of a token, cached so that calls fail fast (a refusal, until the
/// credential changes) or back off (a transient failure, until `next_attempt_at`).
#[derive(Clone)]
pub(super) struct Failure {
    /// What callers get; its retry hint says whether it is a refusal.
    pub error: CallError,
    pub fingerprint: [u8; 32],
    pub next_attempt_at: i64,
    pub attempts: u32,
}

impl Failure {
    /// The provider refused the credential: no retry until it changes.
    pub fn refused(&self) -> bool {
        self.error.is_refused_credential()
    }
}

/// What this process knows of one token.
#[derive(Default)]
pub(super) struct Cached {
    pub set: Option<std::sync::Arc<TokenSet>>,
    /// The store version this cache reflects; `None` before the first load.
    pub version: Option<i64>,
    pub failure: Option<Failure>,
    pub last_touch: i64,
    /// Until when a 401 does not replace the token ([`REACTIVE_PAUSE_MS`]; 0: not paused).
    pub reactive_paused_until: i64,
    /// Tokens the provider issued that the store did not take (it did not answer): the only
    /// copy of a possibly rotated refresh token. Committed before anything else is done with
    /// this key, and by a background task until then; never handed to a caller before.
    pub pending: Option<Pending>,
}

impl Cached {
    /// Whether a 401 may replace the current token now ([`REACTIVE_PAUSE_MS`]).
    pub fn reactive_allowed(&self, now: i64) -> bool {
        now >= self.reactive_paused_until
    }
}

/// Whether `set` can be used at `now` without refreshing: before its expiry less the skew
/// ([`TokenSource::skew_for`]: 300 s by default, capped at half the lifetime).
pub(super) fn is_fresh(set: &TokenSet, src: &TokenSource, now: i64) -> bool {
    set.is_fresh(now, src.skew_for(set))
}

/// Whether `set` was obtained under `src`'s grant ([`TokenSource::stamp`]): a set stamped
/// under another one is not used, nor its refresh token. An unstamped set (stored before
/// stamps) or an unstamped source (a per-user connection) fits.
pub(super) fn fits(set: &TokenSet, src: &TokenSource) -> bool {
    match (set.grant, src.stamp) {
        (Some(set), Some(src)) => set == src,
        _ => true,
    }
}

/// The cached token set, if it was obtained under `src`'s grant ([`fits`]).
pub(super) fn usable<'a>(c: &'a Cached, src: &TokenSource) -> Option<&'a std::sync::Arc<TokenSet>> {
    c.set.as_ref().filter(|set| fits(set, src))
}

/// The hot path: the cached token when it is fresh.
pub(super) fn fresh_in_memory(c: &Cached, src: &TokenSource, now: i64) -> Option<Obtained> {
    let set = usable(c, src).filter(|set| is_fresh(set, src, now))?;
    Some(Obtained { token: set.clone(), fresh: !c.reactive_allowed(now) })
}

/// Whether a use at `now` is recorded in the store (`last_used_at`), at most every
/// [`TOUCH_EVERY_MS`].
pub(super) fn touch_due(c: &Cached, now: i64) -> bool {
    now - c.last_touch >= TOUCH_EVERY_MS
}

/// What the cache can answer without a token request, if anything: a token (fresh, already
/// replaced, or renewed recently enough for a keep-alive), the cached refusal, or the cached
/// transient failure while its backoff runs (with a still-valid token when one is only stale).
pub(super) fn from_cache(
    c: &Cached,
    src: &TokenSource,
    mode: Mode,
    refused: Option<&AccessToken>,
    now: i64,
) -> Option<Result<Obtained, CallError>> {
    if let Some(set) = usable(c, src) {
        let just = now - set.obtained_at < JUST_OBTAINED_MS;
        let token = |fresh| Some(Ok(Obtained { token: set.clone(), fresh }));
        match mode {
            Mode::IfStale if is_fresh(set, src, now) => return token(just),
            Mode::Replace if refused.is_some_and(|r| r.expose_secret() != set.access_token.expose_secret()) => {
                return token(true);
            }
            // A token just obtained was refused too: the 401 is the path's answer.
            Mode::Replace if !c.reactive_allowed(now) => return token(true),
            // Another caller (or instance) just renewed it: that keeps it alive too.
            Mode::KeepAlive if now - set.obtained_at < src.keepalive_ms / 2 => return token(just),
            _ => {}
        }
    }
    let f = c.failure.as_ref()?;
    if f.refused() && f.fingerprint == src.fingerprint {
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
    if !f.refused() && now < f.next_attempt_at && f.fingerprint == src.fingerprint {
        if let Some(set) = usable(c, src)
            && set.is_valid(now)
            && mode == Mode::IfStale
        {
            return Some(Ok(Obtained { token: set.clone(), fresh: false }));
        }
        return Some(Err(f.error.clone()));
    }
    None
}

/// Who waits for a lease another holder has.
#[derive(Clone, Copy)]
pub(super) enum Waiter<'a> {
    /// A call that wants a token.
    Refresh { mode: Mode, refused: Option<&'a AccessToken> },
    /// The browser flow installing a connection's first tokens.
    Install,
}

/// What to do while another holder has the lease.
pub(super) enum LeaseWait {
    /// Use this token meanwhile (it is stale but still valid).
    Serve(Obtained),
    /// Look again shortly.
    Wait,
    /// The holder does not finish: fail with this.
    GiveUp(CallError),
}

/// While another holder refreshes: a call that only wants a fresh-enough token is served the
/// still-valid one; everyone else waits, up to [`wait_bound_ms`] from its arrival
/// (`waited_since`), then is told what it waited for.
pub(super) fn while_leased(
    c: &Cached,
    src: &TokenSource,
    waiter: Waiter<'_>,
    now: i64,
    waited_since: i64,
) -> LeaseWait {
    if let Waiter::Refresh { mode: Mode::IfStale, .. } = waiter
        && let Some(set) = usable(c, src).filter(|s| s.is_valid(now))
    {
        return LeaseWait::Serve(Obtained { token: set.clone(), fresh: false });
    }
    let waited = now - waited_since;
    let bound = wait_bound_ms(src.timeout);
    if waited <= bound {
        return LeaseWait::Wait;
    }
    let connector = &src.key.connector;
    let within = format!(
        "within {} s (the connector's timeout, {} s, and the {} s refresh lease)",
        bound / 1000,
        src.timeout.as_secs(),
        LEASE_MS / 1000
    );
    let mut error = CallError::new(
        ErrorCode::Unavailable,
        match waiter {
            Waiter::Refresh { .. } => format!(
                "connector `{connector}`: another instance holds its token refresh and did not finish it {within}; \
                 try again shortly, and look at that instance's log if this lasts"
            ),
            Waiter::Install => format!(
                "the connection's tokens are being refreshed by another instance that did not finish {within}; \
                 connect again in a few seconds"
            ),
        },
    );
    error.details.insert("connector".into(), json!(connector));
    error.details.insert("waited_ms".into(), json!(waited));
    error.details.insert("lease_held_elsewhere".into(), json!(true));
    LeaseWait::GiveUp(error)
}

/// SECURITY S24: the lease just taken replaced one that was never given back (`seen`, the row
/// read last before taking it, held the lease before ours, and nothing was committed since:
/// the version did not move), so a refresh was under way when its process died or stalled
/// past the lease. A holder that committed between that read and our take (its commit bumps
/// the version) finished: not abandoned. Returns the abandoned lease's end.
pub(super) fn abandoned(seen: Option<&TokenRow>, leased: &TokenRow) -> Option<i64> {
    seen.filter(|r| r.epoch + 1 == leased.epoch && r.lease_until != 0 && r.version == leased.version)
        .map(|r| r.lease_until)
}

/// The event of newly stored tokens: the first ones, or a refresh.
pub(super) fn obtained_kind(leased: &TokenRow) -> EventKind {
    if leased.sealed.is_none() { EventKind::TokenObtained } else { EventKind::TokenRefreshed }
}

/// The state a success recovers from, recorded as `token.recovered`: an abandoned refresh
/// (`refresh_outcome_unknown`), `degraded` or `reauthorization_required`.
pub(super) fn recovered_from(previous: TokenState, abandoned: bool) -> Option<ShownState> {
    if abandoned {
        Some(ShownState::RefreshOutcomeUnknown)
    } else if matches!(previous, TokenState::Degraded | TokenState::ReauthorizationRequired) {
        Some(ShownState::Stored(previous))
    } else {
        None
    }
}

/// The write that stores new tokens (state `ok`).
pub(super) fn success_write(sealed: Vec<u8>, set: &TokenSet, now: i64) -> TokenWrite {
    TokenWrite {
        sealed: Some(Some(sealed)),
        expires_at: Some(set.expires_at),
        state: TokenState::Ok,
        last_error: None,
        last_refresh_at: Some(now),
    }
}

/// The backoff window after `attempts` transient failures in a row: 2^attempts seconds, up to
/// [`BACKOFF_CAP_MS`].
pub(super) fn backoff_window(attempts: u32) -> i64 {
    (BACKOFF_BASE_MS << attempts.min(16)).min(BACKOFF_CAP_MS)
}

/// How long after a transient failure the next attempt may be made: full jitter over the
/// window (`roll` is random), but never before the provider's `Retry-After` (capped too).
pub(super) fn backoff_ms(attempts: u32, retry_after: Option<Duration>, roll: u64) -> i64 {
    let window = backoff_window(attempts);
    let jittered = i64::try_from(roll % u64::try_from(window).unwrap_or(1)).unwrap_or(0);
    let retry_after = retry_after.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0)).min(BACKOFF_CAP_MS);
    retry_after.max(jittered)
}

/// Within one call, after the `attempt`-th transient failure of a token request: how long to
/// wait before trying again, or `None` to give up (after [`TRIES`], or when the provider asks
/// for more than [`MAX_RETRY_AFTER`]).
pub(super) fn retry_within_call(attempt: u32, retry_after: Option<Duration>, roll: u64) -> Option<Duration> {
    if attempt >= TRIES || retry_after.is_some_and(|d| d > MAX_RETRY_AFTER) {
        return None;
    }
    let base = 200u64 << attempt;
    Some(retry_after.unwrap_or(Duration::from_millis(base / 2 + roll % base)))
}

/// What follows a failed refresh: the write (with the lease's release), the events, the
/// failure to cache, whether the cached tokens go, and the caller's answer.
pub(super) struct AfterFailure {
    pub write: TokenWrite,
    pub events: Vec<(EventKind, EventOutcome, serde_json::Value)>,
    pub failure: Failure,
    /// A refusal erases the tokens, in the store and here.
    pub erase: bool,
    pub answer: Result<Obtained, CallError>,
}

/// After a token request failed with `e`. A refusal (terminal): tokens erased,
/// `reauthorization_required` (its event once), calls fail fast until the credential changes.
/// A transient failure: tokens kept, `degraded`, the next attempt after a backoff that grows
/// with each failure in a row (`roll` is random); a still-valid token is answered, except to
/// a replacement (the upstream refused it).
pub(super) fn after_failure(
    e: &TokenError,
    c: &Cached,
    src: &TokenSource,
    mode: Mode,
    previous: TokenState,
    now: i64,
    roll: u64,
) -> AfterFailure {
    let error = e.to_call_error(&src.key.connector);
    if error.is_refused_credential() {
        let mut events = vec![(EventKind::TokenRefreshFailed, EventOutcome::Terminal, error_detail(e))];
        if previous != TokenState::ReauthorizationRequired {
            events.push((EventKind::TokenReauthorizationRequired, EventOutcome::Terminal, error_detail(e)));
        }
        return AfterFailure {
            write: TokenWrite {
                sealed: Some(None),
                expires_at: Some(None),
                state: TokenState::ReauthorizationRequired,
                last_error: Some(e.summary()),
                last_refresh_at: None,
            },
            events,
            failure: Failure { error: error.clone(), fingerprint: src.fingerprint, next_attempt_at: 0, attempts: 0 },
            erase: true,
            answer: Err(error),
        };
    }
    // The state before, so that the first transient failure (from `ok` or `empty`) becomes a
    // `connection.refresh_failed` webhook, and the next ones do not.
    let mut detail = error_detail(e);
    detail["previous_state"] = json!(previous.as_str());
    let attempts = c.failure.as_ref().map_or(0, |f| f.attempts) + 1;
    let answer = match usable(c, src) {
        Some(set) if set.is_valid(now) && mode != Mode::Replace => Ok(Obtained { token: set.clone(), fresh: false }),
        _ => Err(error.clone()),
    };
    AfterFailure {
        write: TokenWrite {
            sealed: None,
            expires_at: None,
            state: TokenState::Degraded,
            last_error: Some(e.summary()),
            last_refresh_at: None,
        },
        events: vec![(EventKind::TokenRefreshFailed, EventOutcome::Transient, detail)],
        failure: Failure {
            error,
            fingerprint: src.fingerprint,
            next_attempt_at: now + backoff_ms(attempts, e.retry_after(), roll),
            attempts,
        },
        erase: false,
        answer,
    }
}

/// After the upstream refused `token`, which a reactive refresh had just obtained: until when
/// 401s do not replace it, and whether that starts a pause now (to log it once), or `None`
/// when `token` is no longer the cached one.
pub(super) fn pause_reactive(c: &Cached, token: &TokenSet, now: i64) -> Option<(i64, bool)> {
    let current = c.set.as_ref()?;
    (current.access_token.expose_secret() == token.access_token.expose_secret())
        .then(|| (now + REACTIVE_PAUSE_MS, c.reactive_allowed(now)))
}
