//! A store that fails or does not answer (SECURITY R4, R5): calls fail fast with
//! `unavailable` and no token request; tokens the provider issued are kept until stored.

use std::time::Duration;

use super::{HOUR, Harness, T0, access, source};
use crate::ErrorCode;
use crate::clock::Clock;
use crate::event::EventKind;
use crate::token::{self, TokenState};

#[tokio::test(start_paused = true)]
async fn a_store_that_fails_before_a_refresh_fails_the_call_without_a_request() {
    let h = Harness::new();
    let src = source();
    h.store.fail(Some("get_token"), 1);
    let e = h.tokens.get(&src).await.err().unwrap();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("check that the database is reachable"), "{}", e.message);
    assert_eq!(h.requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_does_not_answer_fails_the_call_after_3_s() {
    let h = Harness::new();
    let src = source();
    h.store.hang(Some("take_lease"), 1);
    let e = h.tokens.get(&src).await.err().unwrap();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("did not answer within 3 s"), "{}", e.message);
    assert_eq!((h.now() - T0, h.requests()), (3_000, 0));
}

#[tokio::test(start_paused = true)]
async fn a_fresh_token_needs_no_store() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.store.fail(None, u32::MAX);
    h.clock.advance(HOUR / 2);
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-1");
}

#[tokio::test(start_paused = true)]
async fn tokens_the_store_did_not_take_are_kept_and_committed_before_anything_else() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR);
    h.store.fail(Some("commit_token"), 1);
    let e = h.tokens.get(&src).await.err().unwrap();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("new tokens are kept in memory"), "{}", e.message);
    assert_eq!(h.requests(), 2, "the provider answered");
    // The store still does not answer: calls fail fast, and the old refresh token (perhaps
    // rotated away) is not presented again.
    h.store.fail(None, 3);
    assert_eq!(h.tokens.get(&src).await.err().unwrap().code, ErrorCode::Unavailable);
    assert_eq!(h.requests(), 2);
    h.store.heal();
    let got = h.tokens.get(&src).await.unwrap();
    assert_eq!(access(&got.token), "at-2");
    assert_eq!(h.requests(), 2, "the kept tokens, stored first");
    assert_eq!(h.detail(EventKind::TokenRefreshed).await["mode"], "stored_late");
    let row = h.row(&src.key).await;
    assert_eq!((row.state, row.version), (TokenState::Ok, 2));
    let stored = token::open(&h.vault, &src.key, row.sealed.as_deref().unwrap()).unwrap();
    assert_eq!(access(&stored), "at-2");
}

#[tokio::test(start_paused = true)]
async fn kept_tokens_are_stored_by_the_background_task_when_no_call_comes() {
    let h = Harness::new();
    let src = source();
    h.store.fail(Some("commit_token"), 1);
    h.store.fail(Some("commit_token"), 2);
    assert!(h.tokens.get(&src).await.is_err());
    // One retry a second; the second retry meets the last fault, the third stores them.
    h.clock.sleep(Duration::from_millis(3_500)).await;
    assert_eq!(h.kinds().await, [EventKind::TokenObtained]);
    assert_eq!(h.detail(EventKind::TokenObtained).await["mode"], "stored_late");
    assert_eq!(h.row(&src.key).await.state, TokenState::Ok);
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-1");
    assert_eq!(h.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_commit_whose_answer_was_lost_is_recognised_as_done() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR);
    // The commit is made, then the store does not answer (the answer lost): the retry finds
    // the epoch and version moved, and the stored bytes its own.
    h.store.fail(Some("commit_token"), 1);
    h.tokens.get(&src).await.err().unwrap();
    let slot = h.tokens.slot(&src.key);
    let pending = super::super::lock(&slot.cached).pending.clone().unwrap();
    let now = h.now();
    assert!(super::super::pending::commit_pending(&h.store, &src.key, &pending, now).await.unwrap());
    h.tokens.get(&src).await.unwrap();
    assert_eq!(h.kinds().await.last(), Some(&EventKind::TokenRefreshed));
    assert_eq!(h.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn kept_tokens_lost_to_another_writer_record_a_conflict() {
    let h = Harness::new();
    let src = source();
    h.store.fail(Some("commit_token"), 1);
    h.tokens.get(&src).await.err().unwrap();
    // Our lease runs out; another instance's lease and commit move the row on (before the
    // background task, which has not run yet, could store ours).
    h.clock.advance(30_000);
    h.other_instance().store_tokens(&src.key, &super::token_set("theirs", None, h.now(), HOUR)).await;
    let got = h.tokens.get(&src).await.unwrap();
    assert_eq!(access(&got.token), "theirs");
    assert_eq!(h.kinds().await, [EventKind::TokenCommitConflict]);
    assert_eq!(h.detail(EventKind::TokenCommitConflict).await["stored_late"], true);
}
