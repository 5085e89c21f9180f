//! Several instances on one store: the lease, waiting for it, taking over an abandoned one.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::super::shown_state;
use super::{Answer, HOUR, Harness, T0, access, refused, source, source_with, token_set};
use crate::clock::Clock;
use crate::event::EventKind;
use crate::store::{TokenKey, TokenStore, TokenWrite};
use crate::token::{self, ShownState, TokenState};
use crate::{Env, ErrorCode};

#[tokio::test(start_paused = true)]
async fn a_caller_waits_for_another_instances_refresh_and_adopts_its_token() {
    let h = Harness::new();
    let src = source();
    let leased = h.store.take_lease(&src.key, "elsewhere", T0, T0 + 25_000).await.unwrap().unwrap();
    let (store, vault, clock, key) = (h.store.clone(), h.vault.clone(), h.clock.clone(), src.key.clone());
    let theirs = tokio::spawn(async move {
        clock.sleep(Duration::from_millis(1_500)).await;
        let set = token_set("theirs", Some("rt-x"), clock.now_ms(), HOUR);
        let write = TokenWrite {
            sealed: Some(Some(token::seal(&vault, &key, &set))),
            expires_at: Some(set.expires_at),
            state: TokenState::Ok,
            ..TokenWrite::default()
        };
        assert!(store.commit_token(&key, leased.epoch, &write, clock.now_ms()).await.unwrap());
    });
    let got = h.tokens.get(&src).await.unwrap();
    theirs.await.unwrap();
    assert_eq!(access(&got.token), "theirs");
    assert_eq!(h.requests(), 0);
    assert!(h.now() >= T0 + 1_500 && h.now() < T0 + 2_000, "it looked again every 100 ms");
}

#[tokio::test(start_paused = true)]
async fn while_another_instance_refreshes_a_still_valid_token_is_served_at_once() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR - 1_000);
    let now = h.now();
    h.store.take_lease(&src.key, "elsewhere", now, now + 25_000).await.unwrap().unwrap();
    let got = h.tokens.get(&src).await.unwrap();
    assert_eq!((access(&got.token), got.fresh), ("at-1", false));
    assert_eq!((h.requests(), h.now()), (1, now), "no request, no wait");
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_never_finishes_is_given_up_on_after_the_timeout_and_one_lease() {
    let h = Harness::new();
    let src = source();
    h.store.take_lease(&src.key, "elsewhere", T0, i64::MAX).await.unwrap().unwrap();
    let e = h.tokens.get(&src).await.err().unwrap();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("did not finish it within 15 s"), "{}", e.message);
    assert!(h.now() > T0 + 15_000 && h.now() <= T0 + 15_100, "waited the 10 s timeout + the 5 s lease");
    assert_eq!(h.requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn install_waits_for_a_lease_and_gives_up_with_its_own_message() {
    let h = Harness::new();
    let key = TokenKey { connector: "crm".into(), env: Env::Live, connection: "con_1".into() };
    let src = source_with(super::authorization_code_grant(), key.clone());
    h.store.take_lease(&key, "elsewhere", T0, i64::MAX).await.unwrap().unwrap();
    let e = h.tokens.install(&src, token_set("a", None, T0, HOUR)).await.err().unwrap();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("connect again in a few seconds"), "{}", e.message);
}

#[tokio::test(start_paused = true)]
async fn two_instances_refresh_an_expired_token_once() {
    let a = Harness::new();
    let b = a.other_instance();
    let src = std::sync::Arc::new(source());
    a.script.slow(Duration::from_secs(1));
    let (ta, tb) = (a.tokens.clone(), b.tokens.clone());
    let (s1, s2) = (src.clone(), src.clone());
    let (ra, rb) = tokio::join!(async move { ta.get(&s1).await }, async move { tb.get(&s2).await });
    assert_eq!(access(&ra.unwrap().token), access(&rb.unwrap().token));
    assert_eq!(a.requests() + b.requests(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lease_that_ran_out_unreleased_shows_as_refresh_outcome_unknown_and_is_taken_over() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    // Another instance began a refresh and died: its lease runs out, never given back.
    let now = h.now();
    h.store.take_lease(&src.key, "dead", now, now + 25_000).await.unwrap().unwrap();
    assert_eq!(shown_state(&h.row(&src.key).await, now + 24_999), ShownState::Refreshing);
    h.clock.advance(HOUR);
    assert_eq!(shown_state(&h.row(&src.key).await, h.now()), ShownState::RefreshOutcomeUnknown);
    let got = h.tokens.get(&src).await.unwrap();
    assert_eq!(access(&got.token), "at-2");
    assert_eq!(h.script.seen()[1].refresh_token.as_deref(), Some("rt-1"), "the stored refresh token, once");
    assert_eq!(
        h.kinds().await,
        [
            EventKind::TokenObtained,
            EventKind::TokenRefreshOutcomeUnknown,
            EventKind::TokenRefreshed,
            EventKind::TokenRecovered
        ]
    );
    assert_eq!(h.detail(EventKind::TokenRecovered).await["previous_state"], "refresh_outcome_unknown");
    assert_eq!(h.detail(EventKind::TokenRefreshOutcomeUnknown).await["lease_until"], now + 25_000);
    assert_eq!(shown_state(&h.row(&src.key).await, h.now()), ShownState::Stored(TokenState::Ok));
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_refresh_whose_token_was_rotated_away_ends_in_reauthorization() {
    let h = Harness::new();
    let key = TokenKey { connector: "crm".into(), env: Env::Live, connection: "con_1".into() };
    let src = source_with(super::authorization_code_grant(), key.clone());
    h.tokens.install(&src, token_set("user-at", Some("user-rt"), T0, HOUR)).await.unwrap();
    h.store.take_lease(&key, "dead", T0, T0 + 25_000).await.unwrap().unwrap();
    h.clock.advance(HOUR);
    h.script.then(Answer::Fail(refused("invalid_grant")));
    let e = h.tokens.get(&src).await.err().unwrap();
    assert!(e.is_refused_credential());
    assert_eq!(h.requests(), 1, "the browser grant cannot be repeated");
    assert_eq!(
        h.kinds().await,
        [EventKind::TokenRefreshOutcomeUnknown, EventKind::TokenRefreshFailed, EventKind::TokenReauthorizationRequired]
    );
    let row = h.row(&key).await;
    assert_eq!((row.state, row.sealed.is_none()), (TokenState::ReauthorizationRequired, true));
}

#[tokio::test(start_paused = true)]
async fn shown_state_is_refreshing_while_this_instance_refreshes() {
    let h = Harness::new();
    let src = std::sync::Arc::new(source());
    h.script.slow(Duration::from_secs(5));
    let (tokens, s) = (h.tokens.clone(), src.clone());
    let call = tokio::spawn(async move { tokens.get(&s).await.map(|_| ()) });
    h.clock.sleep(Duration::from_secs(1)).await;
    assert_eq!(shown_state(&h.row(&src.key).await, h.now()), ShownState::Refreshing);
    call.await.unwrap().unwrap();
    assert_eq!(shown_state(&h.row(&src.key).await, h.now()), ShownState::Stored(TokenState::Ok));
}

#[tokio::test(start_paused = true)]
async fn a_late_holders_commit_is_refused_by_the_fence_and_recorded_as_a_conflict() {
    let h = Harness::new();
    let src = source();
    // The store fails the holder's first three extensions (at 1.67, 3.33 and 5 s): its lease
    // runs out at 5 s and the fourth is refused. The provider answers after 30 s; meanwhile
    // another instance took over and refreshed.
    h.store.fail(Some("extend_lease"), 3);
    h.script.slow(Duration::from_secs(30));
    let (store, vault, clock, key) = (h.store.clone(), h.vault.clone(), h.clock.clone(), src.key.clone());
    let other = tokio::spawn(async move {
        clock.sleep(Duration::from_secs(26)).await;
        let now = clock.now_ms();
        let leased = store.take_lease(&key, "elsewhere", now, now + 25_000).await.unwrap().expect("ran out");
        let set = token_set("theirs", Some("rt-x"), now, HOUR);
        let write = TokenWrite {
            sealed: Some(Some(token::seal(&vault, &key, &set))),
            expires_at: Some(set.expires_at),
            state: TokenState::Ok,
            ..TokenWrite::default()
        };
        assert!(store.commit_token(&key, leased.epoch, &write, now).await.unwrap());
    });
    h.tokens.get(&src).await.unwrap();
    other.await.unwrap();
    assert_eq!(h.store.calls("extend_lease"), 4, "no extension after the store refused one");
    assert_eq!(h.kinds().await, [EventKind::TokenCommitConflict]);
    let stored = token::open(&h.vault, &src.key, &h.row(&src.key).await.sealed.unwrap()).unwrap();
    assert_eq!(stored.access_token.expose_secret(), "theirs", "the other writer's tokens stay");
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_commits_just_before_the_waiter_takes_the_lease_finished_its_refresh() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR);
    let now = h.now();
    let leased = h.store.take_lease(&src.key, "elsewhere", now, now + 5_000).await.unwrap().unwrap();
    // The holder commits between the waiter's read of the row (still leased) and its take.
    let (store, vault, key) = (h.store.clone(), h.vault.clone(), src.key.clone());
    h.store.before_next("take_lease", move || async move {
        let set = token_set("theirs", Some("rt-x"), now, HOUR);
        let write = TokenWrite {
            sealed: Some(Some(token::seal(&vault, &key, &set))),
            expires_at: Some(set.expires_at),
            state: TokenState::Ok,
            ..TokenWrite::default()
        };
        assert!(store.commit_token(&key, leased.epoch, &write, now).await.unwrap());
    });
    let got = h.tokens.get(&src).await.unwrap();
    assert_eq!(access(&got.token), "theirs");
    assert_eq!(h.requests(), 1, "only the first token");
    assert_eq!(h.kinds().await, [EventKind::TokenObtained], "no refresh whose outcome is unknown");
}
