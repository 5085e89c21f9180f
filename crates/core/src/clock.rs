//! Time as a parameter: the token lifecycle reads the time and waits only through a
//! [`Clock`], so that tests run it on a [`FakeClock`] without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A future that [`Clock::sleep`] returns.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The wall clock (Unix milliseconds) and a way to wait.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;
    fn sleep(&self, d: Duration) -> Sleep;
}

/// The wall clock in Unix milliseconds: the one place in Latchkey that reads it (clippy's
/// `disallowed-methods` refuses `SystemTime::now` anywhere else).
#[expect(clippy::disallowed_methods, reason = "the one wall-clock read")]
pub fn system_now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// The system's clock and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock for tests: it starts at a fixed time, moves when a test says so
/// ([`FakeClock::advance`]) and with tokio's clock, which a test pauses
/// (`#[tokio::test(start_paused = true)]`): a sleep then returns at once, as soon as every
/// task waits, with the time moved on by exactly its length.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug)]
pub struct FakeClock {
    start: tokio::time::Instant,
    at_start: i64,
    jumped: std::sync::atomic::AtomicI64,
}

#[cfg(any(test, feature = "testing"))]
impl FakeClock {
    /// A clock that reads `now_ms` now.
    pub fn at(now_ms: i64) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            start: tokio::time::Instant::now(),
            at_start: now_ms,
            jumped: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// Moves the time on by `ms` at once (no sleeper wakes for it).
    pub fn advance(&self, ms: i64) {
        self.jumped.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(any(test, feature = "testing"))]
impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        let elapsed = i64::try_from(self.start.elapsed().as_millis()).unwrap_or(i64::MAX);
        self.at_start + self.jumped.load(std::sync::atomic::Ordering::SeqCst) + elapsed
    }
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

#[cfg(test)]
mod tests {
    use super::{Clock, FakeClock, SystemClock};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_fake_clock_moves_by_hand_and_with_sleeps_only() {
        let clock = FakeClock::at(1_000_000);
        assert_eq!(clock.now_ms(), 1_000_000);
        clock.advance(250);
        assert_eq!(clock.now_ms(), 1_000_250);
        clock.sleep(Duration::from_secs(3)).await;
        assert_eq!(clock.now_ms(), 1_003_250);
    }

    #[test]
    fn the_system_clock_is_the_wall_clock() {
        let before = crate::time_fmt::now_ms();
        let now = SystemClock.now_ms();
        assert!(now >= before && now - before < 60_000);
    }
}
