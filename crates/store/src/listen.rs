//! PostgreSQL's change feed ([`latchkey_core::store::Store::change_feed`]): a `LISTEN` on a
//! connection of its own, forwarding the generation each write's bump sent with `pg_notify`
//! when it committed (see `BUMP_GENERATION` in `postgres.rs`).
//!
//! The connection is the feed's alone (not one of the pool's), named `latchkey listener` in
//! `pg_stat_activity`. After 30 s without a notice it checks that the connection still answers
//! (`SELECT 1`, within 5 s): a partition or a failover that neither resets nor closes it would
//! otherwise leave the feed deaf for good. When it is lost the feed logs once, connects again with a growing wait
//! (250 ms doubling to 10 s), logs once when it is back, and then says
//! [`StoreChange::Resync`]: changes committed meanwhile sent their notices to nobody. It says
//! so on its first connection too, so a change committed before the `LISTEN` is not missed.
//! The feed stops when its receiver is dropped; it never panics.

use std::time::{Duration, Instant};

use latchkey_core::store::{ChangeFeed, StoreChange};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::mpsc;

use crate::WAIT;

/// The channel every generation bump notifies, with the new generation as its payload.
pub(crate) const CHANNEL: &str = "latchkey_changes";
/// What the feed's connection is called in `pg_stat_activity`.
pub(crate) const APPLICATION_NAME: &str = "latchkey listener";

/// How long the feed waits without a notice before it checks its connection, and how long the
/// check may take ([`Check::DEFAULT`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Check {
    pub(crate) quiet: Duration,
    pub(crate) answer: Duration,
}

impl Check {
    pub(crate) const DEFAULT: Check = Check { quiet: Duration::from_secs(30), answer: WAIT };
}

const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(10);
/// Notices waiting for the reader. When it is full a notice is dropped, which loses nothing:
/// the reader has not yet taken those queued, and the check they cause reads the store after
/// the dropped notice's write committed.
const QUEUE: usize = 64;

/// Starts a feed on a connection made with `options`; `None` outside a tokio runtime.
pub(crate) fn start(options: &PgConnectOptions, check: Check) -> Option<ChangeFeed> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    let (tx, rx) = mpsc::channel(QUEUE);
    runtime.spawn(run(options.clone().application_name(APPLICATION_NAME), tx, check));
    Some(rx)
}

/// Listens, forwards, and connects again after a loss, until the receiver is dropped.
async fn run(options: PgConnectOptions, tx: mpsc::Sender<StoreChange>, check: Check) {
    let mut retry = FIRST_RETRY;
    let mut outage = false;
    loop {
        let connected = tokio::select! {
            _ = tx.closed() => return,
            connected = listen(&options) => connected,
        };
        let lost = match connected {
            Ok(mut listener) => {
                if outage {
                    tracing::info!("listening for other instances' changes again");
                    outage = false;
                }
                if !offer(&tx, StoreChange::Resync) {
                    return;
                }
                let since = Instant::now();
                let lost = tokio::select! {
                    _ = tx.closed() => return,
                    lost = forward(&mut listener, &tx, check) => lost,
                };
                if tx.is_closed() {
                    return;
                }
                if since.elapsed() > MAX_RETRY {
                    retry = FIRST_RETRY; // it had been up a while: not a connection that fails at once
                }
                lost
            }
            Err(e) => e.to_string(),
        };
        if !outage {
            outage = true;
            tracing::warn!(
                error = %lost,
                "not listening for other instances' changes (PostgreSQL LISTEN): their changes are seen by the \
                 poll of the store instead, within a second; connecting again"
            );
        }
        tokio::select! {
            _ = tx.closed() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(MAX_RETRY);
    }
}

/// A listener on a connection of its own (a pool of one, which the listener needs; it is
/// dropped with the listener), subscribed to [`CHANNEL`].
async fn listen(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(WAIT)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection ends `forward`; `run` connects again, with its waits and its logs.
    listener.eager_reconnect(false);
    listener.ignore_pool_close_event(true);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Forwards notices until the connection is lost (or, checked after a quiet while, does not
/// answer); returns why.
async fn forward(listener: &mut PgListener, tx: &mpsc::Sender<StoreChange>, check: Check) -> String {
    loop {
        // `try_recv` is cancel-safe: a message half read stays buffered for the next call.
        let Ok(received) = tokio::time::timeout(check.quiet, listener.try_recv()).await else {
            // A notice arriving during the check is buffered by the listener, not lost.
            match tokio::time::timeout(check.answer, sqlx::query("SELECT 1").execute(&mut *listener)).await {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return e.to_string(),
                Err(_) => return format!("the connection did not answer a check within {:?}", check.answer),
            }
        };
        let notice = match received {
            Ok(Some(notification)) => match notification.payload().parse::<i64>() {
                Ok(generation) => StoreChange::Generation(generation),
                // Not a bump's (someone else notified this channel): checking costs little.
                Err(_) => StoreChange::Resync,
            },
            Ok(None) => return "the connection was closed".to_owned(),
            Err(e) => return e.to_string(),
        };
        if !offer(tx, notice) {
            return "the feed was dropped".to_owned();
        }
    }
}

/// Queues `notice` (dropped when the queue is full, see [`QUEUE`]); `false` once the receiver
/// is gone.
fn offer(tx: &mpsc::Sender<StoreChange>, notice: StoreChange) -> bool {
    !matches!(tx.try_send(notice), Err(mpsc::error::TrySendError::Closed(_)))
}
