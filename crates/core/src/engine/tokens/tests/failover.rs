//! Issue 19: a short lease its holder extends while it works. A slow holder keeps it; a holder
//! that dies is taken over within one lease; a waiter is told, not hung.

use std::sync::Arc;
use std::time::Duration;

use super::super::{LEASE_MS, shown_state};
use super::{HOUR, Harness, access, source};
use crate::ErrorCode;
use crate::clock::Clock;
use crate::event::EventKind;
use crate::token::ShownState;

#[tokio::test(start_paused = true)]
async fn a_holder_whose_request_outlasts_the_lease_keeps_it_and_the_other_instance_waits_for_its_token() {
    let a = Harness::new();
    let b = a.other_instance();
    let src = Arc::new(source());
    // 8 s: longer than the 5 s lease, within the connector's 10 s timeout.
    a.script.slow(Duration::from_secs(8));
    let (tokens, s) = (a.tokens.clone(), src.clone());
    let holder = tokio::spawn(async move { tokens.get(&s).await.map(|o| access(&o.token).to_owned()) });
    a.clock.sleep(Duration::from_secs(1)).await;
    let (tokens, s) = (b.tokens.clone(), src.clone());
    let waiter = tokio::spawn(async move { tokens.get(&s).await.map(|o| access(&o.token).to_owned()) });
    a.clock.sleep(Duration::from_secs(6)).await;
    let row = a.row(&src.key).await;
    assert_eq!(shown_state(&row, a.now()), ShownState::Refreshing, "7 s in, past the first lease's end");
    assert_eq!(row.epoch, 1, "nobody took it over");
    assert_eq!(holder.await.unwrap().unwrap(), "at-1");
    assert_eq!(waiter.await.unwrap().unwrap(), "at-1");
    assert_eq!((a.requests(), b.requests()), (1, 0), "one token request for both instances");
    assert!(a.store.calls("extend_lease") >= 4, "extended every 1.67 s for 8 s");
    assert_eq!(a.kinds().await, [EventKind::TokenObtained]);
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_dies_mid_request_is_taken_over_within_one_lease_with_one_more_request_on_s24s_path() {
    let a = Harness::new();
    let b = a.other_instance();
    let src = Arc::new(source());
    a.tokens.get(&src).await.unwrap();
    a.clock.advance(HOUR);
    // The holder's refresh never gets its answer: its process dies 2 s into the request.
    a.script.slow(Duration::from_secs(60));
    let (tokens, s) = (a.tokens.clone(), src.clone());
    let holder = tokio::spawn(async move { tokens.get(&s).await.map(|_| ()) });
    a.clock.sleep(Duration::from_secs(1)).await;
    let (tokens, s) = (b.tokens.clone(), src.clone());
    let waiter = tokio::spawn(async move { tokens.get(&s).await.map(|o| access(&o.token).to_owned()) });
    a.clock.sleep(Duration::from_secs(1)).await;
    holder.abort();
    assert!(holder.await.unwrap_err().is_cancelled());
    let killed_at = a.now();
    // Each harness's endpoint numbers its own tokens: this is the first that b's issued.
    assert_eq!(waiter.await.unwrap().unwrap(), "at-1");
    let seen = b.script.seen();
    assert_eq!(seen.len(), 1, "one more token request, by the instance that took over");
    assert!(
        seen[0].at > killed_at && seen[0].at <= killed_at + LEASE_MS,
        "taken over {} ms after the holder died, within one lease",
        seen[0].at - killed_at
    );
    // SECURITY S24: the refresh token the dead holder may have spent is tried once.
    assert_eq!(a.script.seen()[1].refresh_token.as_deref(), Some("rt-1"));
    assert_eq!(seen[0].refresh_token.as_deref(), Some("rt-1"));
    assert_eq!(
        b.kinds().await,
        [
            EventKind::TokenObtained,
            EventKind::TokenRefreshOutcomeUnknown,
            EventKind::TokenRefreshed,
            EventKind::TokenRecovered
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_call_stops_its_heartbeat_and_its_lease_runs_out_by_itself() {
    let h = Harness::new();
    let src = Arc::new(source());
    h.script.slow(Duration::from_secs(60));
    let (tokens, s) = (h.tokens.clone(), src.clone());
    let call = tokio::spawn(async move { tokens.get(&s).await.map(|_| ()) });
    h.clock.sleep(Duration::from_secs(3)).await;
    call.abort();
    assert!(call.await.unwrap_err().is_cancelled());
    let extensions = h.store.calls("extend_lease");
    h.clock.sleep(Duration::from_secs(10)).await;
    assert_eq!(h.store.calls("extend_lease"), extensions, "no heartbeat outlives its call");
    assert_eq!(shown_state(&h.row(&src.key).await, h.now()), ShownState::RefreshOutcomeUnknown);
}

#[tokio::test(start_paused = true)]
async fn a_waiter_past_its_bound_is_told_which_connector_it_waited_for_and_how_long() {
    let a = Harness::new();
    let b = a.other_instance();
    let src = Arc::new(source());
    // A live holder that keeps retrying past the waiter's bound (the 10 s timeout and the lease).
    a.script.slow(Duration::from_secs(40));
    let (tokens, s) = (a.tokens.clone(), src.clone());
    let holder = tokio::spawn(async move { tokens.get(&s).await.map(|_| ()) });
    a.clock.sleep(Duration::from_secs(1)).await;
    let arrived = b.now();
    let e = b.tokens.get(&src).await.err().unwrap();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.starts_with("connector `crm`: another instance holds its token refresh"), "{}", e.message);
    assert!(e.message.contains("within 15 s"), "{}", e.message);
    assert!(e.details["waited_ms"].as_i64().is_some_and(|w| w > 15_000 && w <= 15_100), "{:?}", e.details);
    assert!(b.now() - arrived <= 15_100, "told after its bound, not when the holder finished");
    assert_eq!(b.requests(), 0, "the live holder kept its lease");
    holder.await.unwrap().unwrap();
    assert_eq!(a.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn callers_queued_behind_a_waiter_in_one_process_share_its_bound() {
    let a = Harness::new();
    let b = a.other_instance();
    let src = Arc::new(source());
    a.script.slow(Duration::from_secs(40));
    let (tokens, s) = (a.tokens.clone(), src.clone());
    let holder = tokio::spawn(async move { tokens.get(&s).await.map(|_| ()) });
    a.clock.sleep(Duration::from_secs(1)).await;
    let arrived = b.now();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (tokens, s) = (b.tokens.clone(), src.clone());
            tokio::spawn(async move { tokens.get(&s).await.err().map(|e| e.code) })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), Some(ErrorCode::Unavailable));
    }
    assert!(b.now() - arrived <= 15_200, "each told after its own bound, not one bound after another");
    holder.await.unwrap().unwrap();
}
