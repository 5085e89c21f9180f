//! The provider refuses or fails: reauthorization, the grant again, degraded with backoff.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::super::lock;
use super::{Answer, HOUR, Harness, T0, access, ambiguous_timeout, refused, source, transient};
use crate::event::{EventKind, EventOutcome};
use crate::token::TokenState;
use crate::{ErrorCode, Retry};

#[tokio::test(start_paused = true)]
async fn a_refused_grant_erases_the_tokens_and_later_calls_fail_fast() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR);
    // The refresh token is refused, and so is the grant itself.
    h.script.then(Answer::Fail(refused("invalid_grant"))).then(Answer::Fail(refused("invalid_client")));
    let e = h.tokens.get(&src).await.err().unwrap();
    assert_eq!((e.code, e.retry()), (ErrorCode::TokenRequestFailed, Retry::Never));
    assert_eq!(e.details["provider_error"], "invalid_client");
    let row = h.row(&src.key).await;
    assert_eq!((row.state, row.sealed, row.expires_at), (TokenState::ReauthorizationRequired, None, None));
    assert_eq!(row.last_error.as_deref(), Some("invalid_client (400)"));
    assert_eq!(
        h.kinds().await,
        [
            EventKind::TokenObtained,
            EventKind::TokenRefreshRefused,
            EventKind::TokenRefreshFailed,
            EventKind::TokenReauthorizationRequired
        ]
    );
    assert_eq!(h.events().await[1].outcome, EventOutcome::Fallback);
    assert_eq!(h.events().await[2].outcome, EventOutcome::Terminal);
    // Later calls: 409 at once, without asking the provider or the store.
    let reads = h.store.calls("get_token");
    h.clock.advance(HOUR);
    let again = h.tokens.get(&src).await.err().unwrap();
    assert_eq!(again.code, ErrorCode::ReauthorizationRequired);
    assert!(again.message.contains("(invalid_client)"), "{}", again.message);
    assert_eq!((h.requests(), h.store.calls("get_token")), (3, reads));
}

#[tokio::test(start_paused = true)]
async fn a_refused_credential_is_tried_again_once_its_secrets_change() {
    let h = Harness::new();
    let mut src = source();
    h.script.then(Answer::Fail(refused("invalid_client")));
    h.tokens.get(&src).await.err().unwrap();
    assert!(h.tokens.get(&src).await.is_err());
    assert_eq!(h.requests(), 1);
    src.fingerprint = [9; 32];
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-1");
    assert_eq!(h.detail(EventKind::TokenRecovered).await["previous_state"], "reauthorization_required");
}

#[tokio::test(start_paused = true)]
async fn a_refused_refresh_token_falls_back_to_the_grant() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR);
    h.script.then(Answer::Fail(refused("invalid_grant")));
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-2");
    let grants: Vec<_> = h.script.seen().into_iter().map(|s| s.grant_type).collect();
    assert_eq!(grants, ["password", "refresh_token", "password"]);
    assert_eq!(h.kinds().await, [EventKind::TokenObtained, EventKind::TokenRefreshRefused, EventKind::TokenRefreshed]);
    assert_eq!(h.row(&src.key).await.state, TokenState::Ok);
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_is_tried_three_times_then_degrades_and_serves_the_valid_token() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR - 60_000);
    for _ in 0..3 {
        h.script.then(Answer::Fail(transient(503, None)));
    }
    let got = h.tokens.get(&src).await.unwrap();
    assert_eq!((access(&got.token), got.fresh), ("at-1", false));
    assert_eq!(h.requests(), 4);
    let row = h.row(&src.key).await;
    assert_eq!((row.state, row.sealed.is_some(), row.lease_until), (TokenState::Degraded, true, 0));
    let detail = h.detail(EventKind::TokenRefreshFailed).await;
    assert_eq!((detail["status"].as_u64(), detail["previous_state"].as_str()), (Some(503), Some("ok")));
    assert_eq!(h.events().await.last().unwrap().outcome, EventOutcome::Transient);
    // Within the backoff, the still-valid token is served without a request.
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-1");
    assert_eq!(h.requests(), 4);
}

#[tokio::test(start_paused = true)]
async fn retries_within_a_call_wait_with_backoff_on_the_clock() {
    let h = Harness::new();
    let src = source();
    h.script.then(Answer::Fail(transient(502, None))).then(Answer::Fail(transient(502, None)));
    h.tokens.get(&src).await.unwrap();
    let at: Vec<i64> = h.script.seen().iter().map(|s| s.at - T0).collect();
    assert!((200..600).contains(&at[1]), "{at:?}");
    assert!((400..1_200).contains(&(at[2] - at[1])), "{at:?}");
}

#[tokio::test(start_paused = true)]
async fn a_short_retry_after_is_honoured_within_the_call() {
    let h = Harness::new();
    let src = source();
    h.script.then(Answer::Fail(transient(429, Some(Duration::from_millis(1_500)))));
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-1");
    let at: Vec<i64> = h.script.seen().iter().map(|s| s.at).collect();
    assert_eq!(at, [T0, T0 + 1_500]);
}

#[tokio::test(start_paused = true)]
async fn a_long_retry_after_ends_the_call_and_holds_off_the_next_attempt() {
    let h = Harness::new();
    let src = source();
    h.script.then(Answer::Fail(transient(429, Some(Duration::from_secs(120)))));
    let e = h.tokens.get(&src).await.err().unwrap();
    assert_eq!((e.code, e.retry()), (ErrorCode::TokenRequestFailed, Retry::After(Duration::from_secs(120))));
    assert_eq!(h.requests(), 1, "no retry within the call");
    h.clock.advance(119_999);
    assert_eq!(h.tokens.get(&src).await.err().unwrap(), e, "the cached failure, no request");
    assert_eq!(h.requests(), 1);
    h.clock.advance(1);
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-1");
    assert_eq!(h.detail(EventKind::TokenRecovered).await["previous_state"], "degraded");
}

#[tokio::test(start_paused = true)]
async fn the_backoff_between_calls_grows_with_each_failure_and_is_capped() {
    let h = Harness::new();
    let src = source();
    let slot = h.tokens.slot(&src.key);
    for attempt in 1..=10u32 {
        for _ in 0..3 {
            h.script.then(Answer::Fail(transient(503, None)));
        }
        assert!(h.tokens.get(&src).await.is_err());
        let (next, attempts) = {
            let c = lock(&slot.cached);
            let f = c.failure.as_ref().unwrap();
            (f.next_attempt_at, f.attempts)
        };
        assert_eq!(attempts, attempt);
        let waited = next - h.now();
        assert!((0..super::super::decide::backoff_window(attempt)).contains(&waited), "{waited}");
        assert!(waited < 300_000, "capped at 5 min");
        h.clock.advance(next - h.now());
    }
    assert_eq!(h.requests(), 30);
}

#[tokio::test(start_paused = true)]
async fn a_failure_without_a_valid_token_fails_the_call_and_backs_off() {
    let h = Harness::new();
    let src = source();
    for _ in 0..3 {
        h.script.then(Answer::Fail(transient(500, None)));
    }
    let e = h.tokens.get(&src).await.err().unwrap();
    assert_eq!((e.code, e.retry()), (ErrorCode::TokenRequestFailed, Retry::Later));
    assert!(e.message.contains("Latchkey will retry with backoff"), "{}", e.message);
    assert_eq!(h.row(&src.key).await.state, TokenState::Degraded);
    assert_eq!(h.detail(EventKind::TokenRefreshFailed).await["previous_state"], "empty");
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_refresh_is_counted_recorded_and_retried_with_the_same_refresh_token() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR);
    h.script.then(Answer::Fail(ambiguous_timeout()));
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-2");
    assert_eq!(h.tokens.ambiguous.load(Ordering::Relaxed), 1);
    let presented: Vec<_> = h.script.seen().into_iter().map(|s| s.refresh_token).collect();
    assert_eq!(presented, [None, Some("rt-1".into()), Some("rt-1".into())]);
    assert_eq!(
        h.kinds().await,
        [EventKind::TokenObtained, EventKind::TokenRefreshAmbiguous, EventKind::TokenRefreshed]
    );
    let ambiguous = &h.events().await[1];
    assert_eq!(ambiguous.outcome, EventOutcome::Retrying);
    assert_eq!(h.detail(EventKind::TokenRefreshAmbiguous).await["timed_out"], true);
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_refresh_whose_token_was_rotated_falls_back_to_the_grant() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR);
    h.script.then(Answer::Fail(ambiguous_timeout())).then(Answer::Fail(refused("invalid_grant")));
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-2");
    let grants: Vec<_> = h.script.seen().into_iter().map(|s| s.grant_type).collect();
    assert_eq!(grants, ["password", "refresh_token", "refresh_token", "password"]);
}

#[tokio::test(start_paused = true)]
async fn an_ambiguous_timeout_of_the_grant_is_no_lost_rotation() {
    let h = Harness::new();
    let src = source();
    h.script.then(Answer::Fail(ambiguous_timeout()));
    h.tokens.get(&src).await.unwrap();
    assert_eq!(h.tokens.ambiguous.load(Ordering::Relaxed), 0, "no refresh token was presented");
    assert_eq!(h.kinds().await, [EventKind::TokenObtained]);
}

#[tokio::test(start_paused = true)]
async fn ambiguous_timeouts_on_every_try_degrade_with_a_token_request_failure() {
    let h = Harness::new();
    let src = source();
    for _ in 0..3 {
        h.script.then(Answer::Fail(ambiguous_timeout()));
    }
    let e = h.tokens.get(&src).await.err().unwrap();
    assert_eq!((e.code, e.retry()), (ErrorCode::TokenRequestFailed, Retry::Later));
    assert_eq!(h.row(&src.key).await.state, TokenState::Degraded);
}
