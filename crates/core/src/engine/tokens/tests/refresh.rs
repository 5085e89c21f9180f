//! Obtaining, caching, refreshing: the paths without failures.

use std::time::Duration;

use super::{Answer, HOUR, Harness, T0, access, authorization_code_grant, source, source_with, token_set};
use crate::event::EventKind;
use crate::store::{TokenKey, TokenStore};
use crate::token::TokenState;
use crate::{Env, ErrorCode};

#[tokio::test(start_paused = true)]
async fn the_first_call_obtains_a_token_and_stores_it_before_answering() {
    let h = Harness::new();
    let src = source();
    let got = h.tokens.get(&src).await.unwrap();
    assert_eq!(access(&got.token), "at-1");
    assert!(got.fresh, "obtained in this very call");
    let row = h.row(&src.key).await;
    assert_eq!((row.state, row.version, row.epoch, row.lease_until), (TokenState::Ok, 1, 1, 0));
    assert_eq!(row.expires_at, Some(T0 + HOUR));
    assert_eq!(row.last_refresh_at, Some(T0));
    assert_eq!(h.kinds().await, [EventKind::TokenObtained]);
    assert_eq!(h.detail(EventKind::TokenObtained).await["mode"], "ifstale");
    let seen = h.script.seen();
    assert_eq!((seen.len(), seen[0].grant_type.as_str(), seen[0].refresh_token.as_deref()), (1, "password", None));
}

#[tokio::test(start_paused = true)]
async fn a_fresh_token_is_answered_from_memory_without_the_store() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    let reads = h.store.calls("get_token");
    h.clock.advance(HOUR - 300_001);
    let got = h.tokens.get(&src).await.unwrap();
    assert_eq!(access(&got.token), "at-1");
    assert!(!got.fresh, "a 401 with a cached token may replace it");
    assert_eq!(h.requests(), 1);
    assert_eq!((h.store.calls("get_token"), h.store.calls("take_lease")), (reads, 1));
}

#[tokio::test(start_paused = true)]
async fn a_token_within_the_skew_is_refreshed_with_its_refresh_token() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR - 300_000);
    let got = h.tokens.get(&src).await.unwrap();
    assert_eq!(access(&got.token), "at-2");
    let seen = h.script.seen();
    assert_eq!((seen[1].grant_type.as_str(), seen[1].refresh_token.as_deref()), ("refresh_token", Some("rt-1")));
    assert_eq!(h.kinds().await, [EventKind::TokenObtained, EventKind::TokenRefreshed]);
    let row = h.row(&src.key).await;
    assert_eq!((row.version, row.last_refresh_at), (2, Some(T0 + HOUR - 300_000)));
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_is_refreshed() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(2 * HOUR);
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-2");
    assert_eq!(h.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_one_minute_token_is_refreshed_at_half_its_lifetime_not_on_every_call() {
    let h = Harness::new();
    let src = source();
    h.script.then(Answer::Tokens { lifetime_ms: 60_000, refresh: true });
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(29_999);
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-1");
    h.clock.advance(1);
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-2");
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_of_a_stale_token_cause_one_request() {
    let h = Harness::new();
    let src = std::sync::Arc::new(source());
    h.script.slow(Duration::from_secs(2));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (tokens, src) = (h.tokens.clone(), src.clone());
        calls.spawn(async move { tokens.get(&src).await.map(|o| access(&o.token).to_owned()) });
    }
    while let Some(done) = calls.join_next().await {
        assert_eq!(done.unwrap().unwrap(), "at-1");
    }
    assert_eq!(h.requests(), 1);
    assert_eq!(h.store.calls("take_lease"), 1, "the others waited in memory, then found it there");
}

#[tokio::test(start_paused = true)]
async fn an_answer_without_a_refresh_token_keeps_the_old_one() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.script.then(Answer::Tokens { lifetime_ms: HOUR, refresh: false });
    h.clock.advance(HOUR);
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR);
    h.tokens.get(&src).await.unwrap();
    let presented: Vec<_> = h.script.seen().into_iter().map(|s| s.refresh_token).collect();
    assert_eq!(presented, [None, Some("rt-1".into()), Some("rt-1".into())]);
}

#[tokio::test(start_paused = true)]
async fn a_token_another_instance_stored_is_adopted_without_a_request() {
    let h = Harness::new();
    let src = source();
    h.store_tokens(&src.key, &token_set("theirs", Some("rt-x"), T0, HOUR)).await;
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "theirs");
    assert_eq!(h.requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn keep_alive_refreshes_a_fresh_token_unless_it_was_renewed_recently() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(HOUR / 2);
    let kept = h.tokens.keep_alive(&src).await.unwrap();
    assert_eq!(access(&kept.token), "at-1", "renewed within half the keep-alive: nothing to do");
    h.clock.advance(12 * HOUR);
    let kept = h.tokens.keep_alive(&src).await.unwrap();
    assert_eq!(access(&kept.token), "at-2");
    assert_eq!(h.script.seen()[1].refresh_token.as_deref(), Some("rt-1"));
    assert_eq!(h.detail(EventKind::TokenRefreshed).await["mode"], "keepalive");
}

#[tokio::test(start_paused = true)]
async fn install_stores_a_connections_tokens_and_says_what_was_there() {
    let h = Harness::new();
    let key = TokenKey { connector: "crm".into(), env: Env::Live, connection: "con_1".into() };
    let src = source_with(authorization_code_grant(), key.clone());
    let previous = h.tokens.install(&src, token_set("user-at", Some("user-rt"), T0, HOUR)).await.unwrap();
    assert_eq!(previous, TokenState::Empty);
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "user-at");
    assert_eq!(h.requests(), 0);
    assert_eq!(h.row(&key).await.state, TokenState::Ok);
    let again = h.tokens.install(&src, token_set("user-at-2", Some("user-rt-2"), T0, HOUR)).await.unwrap();
    assert_eq!(again, TokenState::Ok);
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_a_refresh_token_needs_reauthorization() {
    let h = Harness::new();
    let key = TokenKey { connector: "crm".into(), env: Env::Live, connection: "con_1".into() };
    let src = source_with(authorization_code_grant(), key.clone());
    let e = h.tokens.get(&src).await.err().unwrap();
    assert_eq!(e.code, ErrorCode::TokenRequestFailed);
    assert!(e.is_refused_credential());
    assert_eq!(h.requests(), 0, "the grant could not even build its request");
    assert_eq!(h.row(&key).await.state, TokenState::ReauthorizationRequired);
}

#[tokio::test(start_paused = true)]
async fn current_reads_the_store_and_forget_drops_memory() {
    let h = Harness::new();
    let src = source();
    assert!(h.tokens.current(&src.key).await.is_none());
    h.store_tokens(&src.key, &token_set("theirs", None, T0, HOUR)).await;
    assert_eq!(access(&h.tokens.current(&src.key).await.unwrap()), "theirs");
    h.store.delete_token(&src.key).await.unwrap();
    assert!(h.tokens.current(&src.key).await.is_some(), "from memory");
    h.tokens.forget(&src.key);
    assert!(h.tokens.current(&src.key).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn uses_are_recorded_in_the_store_at_most_every_minute() {
    let h = Harness::new();
    let src = source();
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(1);
    h.tokens.get(&src).await.unwrap();
    h.settle().await;
    assert_eq!(h.store.calls("touch_token"), 0, "obtained just now counts as a use");
    h.clock.advance(60_000);
    h.tokens.get(&src).await.unwrap();
    h.tokens.get(&src).await.unwrap();
    h.settle().await;
    assert_eq!(h.store.calls("touch_token"), 1);
    assert_eq!(h.row(&src.key).await.last_used_at, Some(T0 + 60_001));
}

#[tokio::test(start_paused = true)]
async fn every_event_also_goes_to_the_webhook_sender() {
    let mut h = Harness::new();
    h.tokens.get(&source()).await.unwrap();
    let sent = h.webhooks.try_recv().unwrap();
    assert_eq!((sent.kind, sent.at, sent.connector.as_str()), (EventKind::TokenObtained, T0, "crm"));
}

#[tokio::test(start_paused = true)]
async fn a_configured_skew_that_reaches_the_lifetime_refreshes_on_every_use() {
    let h = Harness::new();
    let mut src = source();
    src.skew_ms = 120_000;
    src.skew_configured = true;
    h.script.then(Answer::Tokens { lifetime_ms: 60_000, refresh: true });
    h.script.then(Answer::Tokens { lifetime_ms: 60_000, refresh: true });
    h.tokens.get(&src).await.unwrap();
    h.clock.advance(1);
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "at-2");
    assert_eq!(h.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn installing_new_tokens_ends_a_cached_refusal() {
    let h = Harness::new();
    let key = TokenKey { connector: "crm".into(), env: Env::Live, connection: "con_1".into() };
    let src = source_with(authorization_code_grant(), key.clone());
    h.tokens.install(&src, token_set("user-at", Some("user-rt"), T0, HOUR)).await.unwrap();
    h.clock.advance(HOUR);
    h.script.then(super::Answer::Fail(super::refused("invalid_grant")));
    assert!(h.tokens.get(&src).await.is_err());
    assert_eq!(h.tokens.get(&src).await.err().unwrap().code, ErrorCode::ReauthorizationRequired);
    // The user connects again.
    let now = h.now();
    let previous = h.tokens.install(&src, token_set("user-at-2", Some("user-rt-2"), now, HOUR)).await.unwrap();
    assert_eq!(previous, TokenState::ReauthorizationRequired);
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "user-at-2");
}

/// A token the upstream reports revoked (OAuth 1.0a's `oauth_problem`) is erased and its
/// connection marked `reauthorization_required`, with the events of a refused refresh, once;
/// a report about a token the connection no longer holds (connected again since) changes
/// nothing.
#[tokio::test(start_paused = true)]
async fn a_token_reported_revoked_is_erased_unless_it_was_replaced_meanwhile() {
    let h = Harness::new();
    let key = TokenKey { connector: "crm".into(), env: Env::Live, connection: "con_1".into() };
    let src = source_with(authorization_code_grant(), key.clone());
    h.tokens.install(&src, token_set("user-at", None, T0, HOUR)).await.unwrap();
    let old = h.tokens.current(&key).await.unwrap().access_token.clone();
    // Connected again before the report arrives: the new token stays.
    h.tokens.install(&src, token_set("user-at-2", None, T0, HOUR)).await.unwrap();
    assert!(!h.tokens.revoked(&src, &old, "revoked").await.unwrap());
    assert_eq!(h.row(&key).await.state, TokenState::Ok);
    assert_eq!(access(&h.tokens.current(&key).await.unwrap()), "user-at-2");

    let current = h.tokens.current(&key).await.unwrap().access_token.clone();
    assert!(
        h.tokens.revoked(&src, &current, "the upstream answered 401 with oauth_problem=token_revoked").await.unwrap()
    );
    let row = h.row(&key).await;
    assert_eq!((row.state, row.sealed.is_none()), (TokenState::ReauthorizationRequired, true));
    assert_eq!(row.last_error.as_deref(), Some("the upstream answered 401 with oauth_problem=token_revoked"));
    assert!(h.tokens.current(&key).await.is_none(), "erased here too");
    let kinds = h.kinds().await;
    assert!(kinds.ends_with(&[EventKind::TokenRefreshFailed, EventKind::TokenReauthorizationRequired]), "{kinds:?}");
    assert_eq!(h.detail(EventKind::TokenRefreshFailed).await["revoked_at_provider"], true);
    assert_eq!(h.requests(), 0, "nothing was asked of the token endpoint");
}
