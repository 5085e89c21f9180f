//! Token requests of one refresh: the refresh token when there is one (falling back to the
//! grant when it is refused), else the grant, with retries within the call. Requests go
//! through a [`TokenEndpoint`], HTTP in production and scripted in tests.

use std::sync::atomic::Ordering;

use super::{TokenManager, decide};
use crate::auth::TokenSource;
use crate::event::{EventKind, EventOutcome};
use crate::secret::RefreshToken;
use crate::token::{TokenError, TokenRequest, TokenSet, request_token};

/// Where token requests go: the seam that lets the lifecycle be tested without a network.
#[async_trait::async_trait]
pub trait TokenEndpoint: Send + Sync + 'static {
    /// Sends one token request for `src` and reads the token set from the answer.
    async fn send(&self, src: &TokenSource, request: &TokenRequest, now: i64) -> Result<TokenSet, TokenError>;
}

/// The provider's token endpoint over HTTP, with the source's client and timeout.
pub struct HttpTokenEndpoint;

#[async_trait::async_trait]
impl TokenEndpoint for HttpTokenEndpoint {
    async fn send(&self, src: &TokenSource, request: &TokenRequest, now: i64) -> Result<TokenSet, TokenError> {
        request_token(&src.client, request, src.timeout, now).await
    }
}

/// A random number for jitter.
pub(super) fn roll() -> u64 {
    u64::from_le_bytes(latchkey_vault::random::bytes::<8>())
}

impl TokenManager {
    /// Token requests with retries: the refresh token when there is one (falling back to the
    /// grant when it is refused), else the grant.
    pub(super) async fn obtain(
        &self,
        src: &TokenSource,
        refresh_token: Option<&RefreshToken>,
    ) -> Result<TokenSet, TokenError> {
        let mut use_refresh = refresh_token.is_some();
        let mut attempt = 0;
        loop {
            let now = self.events.clock.now_ms();
            let request = match (use_refresh, refresh_token) {
                (true, Some(rt)) => match src.grant.refresh_request(rt, now) {
                    Some(r) => r.map_err(TokenError::unsendable)?,
                    None => {
                        use_refresh = false;
                        continue;
                    }
                },
                _ => src.grant.request(now).map_err(TokenError::unsendable)?,
            };
            self.requests.fetch_add(1, Ordering::Relaxed);
            let answer = self.endpoint.send(src, &request, now).await;
            self.tally.add(&src.key.connector, request.is_refresh, super::TokenOutcome::of(&answer));
            let e = match answer {
                Ok(set) => return Ok(set),
                Err(e) => e,
            };
            if e.is_terminal() {
                if request.is_refresh && src.grant.can_regrant() {
                    // The refresh token was refused; the grant itself may still work.
                    tracing::info!(connector = %src.key.connector, error = %e.summary(), "refresh token refused; repeating the grant");
                    let detail = super::events::error_detail(&e);
                    self.events.record(&src.key, EventKind::TokenRefreshRefused, EventOutcome::Fallback, detail).await;
                    use_refresh = false;
                    continue;
                }
                return Err(e);
            }
            if e.is_ambiguous() && request.is_refresh {
                // The provider may have rotated the refresh token and the answer was lost. The
                // retry below presents the same token at once (a provider with a reuse window
                // accepts it); `invalid_grant` then ends on the refusal path (the grant again,
                // or reauthorization).
                self.ambiguous.fetch_add(1, Ordering::Relaxed);
                let detail = super::events::error_detail(&e);
                self.events.record(&src.key, EventKind::TokenRefreshAmbiguous, EventOutcome::Retrying, detail).await;
            }
            attempt += 1;
            let Some(wait) = decide::retry_within_call(attempt, e.retry_after(), roll()) else { return Err(e) };
            tracing::info!(connector = %src.key.connector, error = %e.summary(), wait_ms = wait.as_millis() as u64, "token request failed; retrying");
            self.events.clock.sleep(wait).await;
        }
    }

    /// Logs, once per token, that its lifetime is too short for the refresh skew: the default
    /// skew is then capped at half the lifetime; a configured one that reaches the lifetime
    /// makes every use refresh, which deserves a warning ([`TokenSource::skew_for`]).
    pub(super) fn note_short_lifetime(&self, src: &TokenSource, slot: &super::Slot, set: &TokenSet) {
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
}
