//! The sweep: deletes the store's short-lived rows once nothing can need them any more, so
//! that no table the engine writes on its own grows without end. Run by the server every
//! [`SWEEP_EVERY`] ([`Engine::sweep_forever`]); each table is swept in statements of at most
//! [`BATCH`] rows (a large backlog never holds a long lock), at most [`BATCHES`] of them per
//! table and run. Several instances may sweep at once: the store deletes each row once and
//! never waits for rows another sweeper holds. The time comes from the engine's clock only.
//!
//! What each table keeps, and why (docs/operations.md has the user's table):
//! - `flows`, `login_codes`, `auth_grants`: a day past their expiry ([`HANDLES_KEPT_MS`]).
//!   An expired handle is refused either way; the day keeps a replayed authorization code
//!   revoking the tokens it was exchanged for (RFC 6749 §4.1.2), and instances whose clocks
//!   differ by seconds never disagree.
//! - `refresh_tokens`: two days ([`claims::REVOCATIONS_KEPT_MS`]) after their family's absolute
//!   expiry, or after their family was revoked. Until a family expires every used token of it
//!   stays (reuse detection and the retry window need them); a revoked family stays as long as
//!   the runtime reads revocations, longer than any access token of it lives (at most a day).
//! - `oauth_clients`: past their `kept_until` ([`super::mcp_auth::CLIENT_IDLE_MS`]).
//! - `idempotency_keys`: 24 hours after their claim ([`super::idempotency::KEEP_MS`]).
//! - `events`: only with `[server] events_kept_days`; by default the audit log is kept.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::Engine;
use super::identity::claims;
use crate::store::{StoreError, Sweep};

/// How often the server sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Rows one statement deletes at most.
pub const BATCH: u32 = 500;
/// Statements per table and run at most: a backlog is worked off over several runs.
pub const BATCHES: u32 = 20;
/// Single-use handles (connect sessions and states, sign-in codes, the MCP authorization
/// server's codes, sign-in requests and grants) are kept this long after they expired.
pub const HANDLES_KEPT_MS: i64 = 86_400_000;
/// One store statement of the sweep may take this long before the run gives up on its table.
const STATEMENT_WAIT: Duration = Duration::from_secs(30);

/// Rows swept by this process, per table (for `/metrics`).
#[derive(Default)]
pub(crate) struct Swept {
    counts: [AtomicU64; Sweep::ALL.len()],
}

impl Swept {
    fn add(&self, what: Sweep, n: u64) {
        if let Some(i) = Sweep::ALL.iter().position(|w| *w == what) {
            self.counts[i].fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl Engine {
    /// Before which time rows of `what` are swept at `now`; `None`: not swept (the audit log
    /// without `events_kept_days`).
    fn sweep_before(&self, what: Sweep, now: i64) -> Option<i64> {
        Some(match what {
            Sweep::Flows | Sweep::LoginCodes | Sweep::AuthGrants => now - HANDLES_KEPT_MS,
            Sweep::RefreshTokens => now - claims::REVOCATIONS_KEPT_MS,
            Sweep::OAuthClients => now,
            Sweep::IdempotencyKeys => now - super::idempotency::KEEP_MS,
            Sweep::Events => {
                let days = self.mirror.config().server.events_kept_days?;
                now - i64::try_from(days).ok()?.checked_mul(86_400_000)?
            }
        })
    }

    /// One run of the sweep: every table, each in statements of at most [`BATCH`] rows until
    /// one deletes fewer (or [`BATCHES`] ran). A table the store fails on is logged and left
    /// for the next run; the others are still swept. Answers the rows deleted per table.
    pub async fn sweep_once(&self) -> Vec<(Sweep, u64)> {
        let now = self.clock.now_ms();
        let mut report = Vec::with_capacity(Sweep::ALL.len());
        for what in Sweep::ALL {
            let Some(before) = self.sweep_before(what, now) else { continue };
            let mut total = 0;
            for _ in 0..BATCHES {
                let done = match tokio::time::timeout(STATEMENT_WAIT, self.store.sweep(what, before, BATCH)).await {
                    Ok(done) => done,
                    Err(_) => Err(StoreError::Unavailable { op: "sweep", reason: "no answer in 30 s".into() }),
                };
                match done {
                    Ok(n) => {
                        total += n;
                        self.swept.add(what, n);
                        if n < u64::from(BATCH) {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(table = what.table(), error = %e, "the sweep of old rows failed; it runs again in a minute");
                        break;
                    }
                }
            }
            if total > 0 {
                tracing::debug!(table = what.table(), rows = total, "swept old rows");
            }
            report.push((what, total));
        }
        report
    }

    /// Runs [`Engine::sweep_once`] every `every` (the server gives [`SWEEP_EVERY`]), the
    /// first run one period after the start, until the task is dropped.
    pub async fn sweep_forever(self: Arc<Self>, every: Duration) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep_once().await;
        }
    }

    /// Rows this process swept, per table (in [`Sweep::ALL`]'s order).
    pub fn swept_counts(&self) -> Vec<(&'static str, u64)> {
        Sweep::ALL.iter().zip(&self.swept.counts).map(|(w, n)| (w.table(), n.load(Ordering::Relaxed))).collect()
    }
}
