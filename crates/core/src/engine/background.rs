//! The engine's background work, which the server spawns: the sync with other writers (on the
//! store's change notices, and every second), and keep-alive refreshes of tokens whose refresh
//! token dies when idle.

use std::sync::Arc;
use std::time::Duration;

use super::{Engine, SYNC_WAIT};
use crate::store::{ChangeFeed, StoreChange};

/// The next notice of `feed`; never, when there is no feed. `None` when the feed ended.
async fn next_notice(feed: &mut Option<ChangeFeed>) -> Option<StoreChange> {
    match feed {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Engine {
    /// Runs [`Engine::sync_once`] every `every`, and as soon as the store's change feed
    /// ([`crate::store::Store::change_feed`], PostgreSQL's LISTEN/NOTIFY) says another writer
    /// committed, until the task is dropped. A burst of notices costs one catch-up; a notice
    /// of a generation memory already holds (this instance's own write) costs a comparison.
    /// Each sync is bounded by [`SYNC_WAIT`]: a store that stopped answering (a partition) is
    /// reported and asked again on a new attempt, instead of holding the sync until the TCP
    /// timeout. The tick stays the fallback for changes the feed missed.
    pub async fn sync_forever(self: Arc<Self>, every: Duration) {
        let mut feed = self.store.change_feed();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                notice = next_notice(&mut feed) => match notice {
                    Some(notice) if self.wants_sync(notice, &mut feed) => {}
                    Some(_) => continue,
                    None => {
                        tracing::warn!("the store's change feed ended; changes by other instances are seen at the next poll");
                        feed = None;
                        continue;
                    }
                },
            }
            self.sync_bounded().await;
        }
    }

    /// Whether `notice`, and the notices queued behind it (taken now: one catch-up answers a
    /// burst), tell of a change memory does not hold yet.
    fn wants_sync(&self, notice: StoreChange, feed: &mut Option<ChangeFeed>) -> bool {
        let held = self.mirror.generation();
        let news = |notice| match notice {
            StoreChange::Resync => true,
            StoreChange::Generation(g) => g > held,
        };
        let mut wanted = news(notice);
        if let Some(rx) = feed {
            while let Ok(queued) = rx.try_recv() {
                wanted |= news(queued);
            }
        }
        wanted
    }

    async fn sync_bounded(&self) {
        match tokio::time::timeout(SYNC_WAIT, self.mirror.sync_once()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "could not check the store for changes"),
            Err(_) => tracing::warn!(
                seconds = SYNC_WAIT.as_secs(),
                behind_s = self.mirror.sync_age().as_secs(),
                "the store did not answer the check for changes; changes other instances make are not seen here until it does"
            ),
        }
    }

    /// Refreshes tokens unused for their connector's `keepalive_s`, so refresh tokens that
    /// die when idle stay alive. Returns how many were refreshed.
    async fn keepalive_once(&self) -> usize {
        let rows = match self.store.list_tokens().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "keep-alive could not list tokens");
                return 0;
            }
        };
        let now = self.clock.now_ms();
        let mut n = 0;
        for row in rows.iter().filter(|r| r.sealed.is_some()) {
            let Some(conn) = self.connector(&row.key.connector) else { continue };
            let Ok(prepared) = conn.credential(row.key.env) else { continue };
            let per_user;
            let src = match (&prepared.credential, row.key.connection.is_empty()) {
                (crate::auth::Credential::Token(src), true) => src.as_ref(),
                (crate::auth::Credential::User(auth), false) => {
                    per_user = auth.for_connection(&row.key.connection);
                    &per_user
                }
                _ => continue,
            };
            let last_activity = row.last_used_at.unwrap_or(0).max(row.last_refresh_at.unwrap_or(0));
            if now - last_activity < src.keepalive_ms {
                continue;
            }
            match self.tokens.keep_alive(src).await {
                Ok(_) => n += 1,
                Err(e) => tracing::warn!(connector = %row.key.connector, error = %e, "keep-alive refresh failed"),
            }
        }
        n
    }

    /// Runs [`Engine::keepalive_once`] until the task is dropped, every half of the smallest
    /// `keepalive_s` among the token connectors (between 1 s and `max_every`), rechecked every
    /// second as connectors change.
    pub async fn keepalive_forever(self: Arc<Self>, max_every: Duration) {
        let mut last_run = std::time::Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let smallest = self
                .connectors()
                .iter()
                .filter(|c| c.config.auth.kind().holds_tokens())
                .map(|c| c.config.keepalive_s)
                .min()
                .unwrap_or(u64::MAX);
            let every = Duration::from_secs((smallest / 2).max(1)).min(max_every);
            if last_run.elapsed() >= every {
                last_run = std::time::Instant::now();
                self.keepalive_once().await;
            }
        }
    }
}
