//! The lease holder's heartbeat (issue 19): a refresh lease lasts [`LEASE_MS`], and its holder
//! extends it every [`HEARTBEAT_MS`] for as long as its token requests and their commit run.
//! The heartbeat is a future joined with that work, not a spawned task: when the caller's
//! future is dropped (the call cancelled, the task aborted) the heartbeat stops with it and the
//! lease runs out by itself within [`LEASE_MS`], after which another instance takes over
//! (SECURITY S24's path, `decide::abandoned`). The epoch stays the fence: a holder that lost
//! its lease still finishes, and `commit_token` refuses its write if another epoch holds it.

use std::convert::Infallible;
use std::time::Duration;

use super::TokenManager;
use super::decide::{HEARTBEAT_MS, LEASE_MS};
use crate::store::{TokenKey, TokenRow};

fn ms(value: i64) -> Duration {
    Duration::from_millis(u64::try_from(value).unwrap_or(0))
}

impl TokenManager {
    /// Runs `work` (a refresh's token requests and commit, pinned by the caller so that it is
    /// stored once) while extending the lease taken as `leased`; returns what `work` returns,
    /// as soon as it does.
    pub(super) async fn holding<T>(
        &self,
        key: &TokenKey,
        leased: &TokenRow,
        mut work: std::pin::Pin<&mut impl Future<Output = T>>,
    ) -> T {
        // Boxed: a refresh is the cold path, and the call's future (which the server boxes and
        // copies per request) stays as small as it was.
        let beat = Box::pin(self.heartbeat(key, leased.epoch, leased.lease_until - LEASE_MS));
        tokio::select! {
            biased;
            out = &mut work => out,
            never = beat => match never {},
        }
    }

    /// Extends the lease of `epoch`, taken at `taken_at`, every [`HEARTBEAT_MS`] from then (what
    /// ran between the take and the work, an event recorded, counts), each try bounded by the
    /// same time so that the next one starts on schedule. Never ends: after the lease is lost
    /// (released by this refresh's own commit, run out, or taken over) it only waits to be
    /// dropped.
    async fn heartbeat(&self, key: &TokenKey, epoch: i64, taken_at: i64) -> Infallible {
        let clock = &self.events.clock;
        let mut next = taken_at;
        loop {
            next += HEARTBEAT_MS;
            let wait = next - clock.now_ms();
            if wait > 0 {
                clock.sleep(ms(wait)).await;
            } else {
                // Behind schedule: one extension now, the next a third of the lease later.
                next -= wait;
            }
            let now = clock.now_ms();
            let until = now + LEASE_MS;
            let extended =
                tokio::time::timeout(ms(HEARTBEAT_MS), self.store.extend_lease(key, epoch, now, until)).await;
            let cause = match extended {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => break,
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("the store did not answer within {HEARTBEAT_MS} ms"),
            };
            tracing::warn!(
                connector = %key.connector, env = %key.env, error = %cause,
                "could not extend the token refresh lease; trying again (it runs out {} s after the last extension, and another instance may then take the refresh over)",
                LEASE_MS / 1000
            );
        }
        self.lease_lost(key, epoch).await;
        std::future::pending().await
    }

    /// The store refused an extension: logged unless this refresh's own commit released it.
    async fn lease_lost(&self, key: &TokenKey, epoch: i64) {
        let row = match tokio::time::timeout(ms(HEARTBEAT_MS), self.store.get_token(key)).await {
            Ok(Ok(row)) => row,
            _ => None,
        };
        if row.as_ref().is_some_and(|r| r.epoch == epoch && r.lease_until == 0) {
            return;
        }
        let taken_over = row.as_ref().is_some_and(|r| r.epoch > epoch);
        tracing::warn!(
            connector = %key.connector, env = %key.env, taken_over,
            "this instance's token refresh lost its lease (it ran out before an extension reached the store{}); \
             the refresh finishes, and its tokens are stored only if no newer ones were",
            if taken_over { ", and another instance took the refresh over" } else { "" }
        );
    }
}
