//! A token bucket per caller, for routes that invite guessing (SECURITY S33: introspection).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets kept before full ones (callers that stopped) are dropped.
const MAX_BUCKETS: usize = 10_000;

pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_second` requests per second for each caller, in bursts of up to twice that.
    pub fn new(per_second: u32) -> RateLimiter {
        let per_second = f64::from(per_second.max(1));
        RateLimiter { per_second, burst: per_second * 2.0, buckets: Mutex::new(HashMap::new()) }
    }

    /// Whether `caller`'s bucket has a request left, without taking it (a limit on failures:
    /// looked at before the attempt, taken from only when it fails).
    pub fn peek(&self, caller: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some((tokens, at)) = buckets.get(caller) else { return Ok(()) };
        let tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        if tokens >= 1.0 { Ok(()) } else { Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second)) }
    }

    /// Takes one request from `caller`'s bucket, or says how long until one is available.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(caller) {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(caller.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused_per_caller() {
        let limit = RateLimiter::new(5);
        let allowed = (0..30).filter(|_| limit.check("a").is_ok()).count();
        assert!((10..=11).contains(&allowed), "burst of twice the rate, got {allowed}");
        let wait = limit.check("a").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200), "{wait:?}");
        assert!(limit.check("b").is_ok(), "another caller has its own bucket");
        assert!(limit.peek("a").is_err() && limit.peek("c").is_ok(), "peek sees the bucket");
        assert!(limit.peek("c").is_ok(), "and takes nothing");
    }
}
