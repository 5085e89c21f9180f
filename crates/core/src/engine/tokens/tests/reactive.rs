//! Reactive refresh: replacing a token the upstream refused, and the pause when the path
//! refuses every token.

use crate::secret::AccessToken;

use super::{HOUR, Harness, access, source};
use crate::event::EventKind;

#[tokio::test(start_paused = true)]
async fn a_refused_token_is_replaced_at_once_even_when_fresh() {
    let h = Harness::new();
    let src = source();
    let first = h.tokens.get(&src).await.unwrap();
    h.clock.advance(60_000);
    let again = h.tokens.replace(&src, &first.token.access_token).await.unwrap();
    assert_eq!((access(&again.token), again.fresh), ("at-2", true));
    assert_eq!(h.script.seen()[1].refresh_token.as_deref(), Some("rt-1"));
    assert_eq!(h.detail(EventKind::TokenRefreshed).await["mode"], "replace");
}

#[tokio::test(start_paused = true)]
async fn callers_refused_with_one_token_share_one_replacement() {
    let h = Harness::new();
    let src = source();
    let first = h.tokens.get(&src).await.unwrap();
    let refused = first.token.access_token.clone();
    let a = h.tokens.replace(&src, &refused).await.unwrap();
    let b = h.tokens.replace(&src, &refused).await.unwrap();
    assert_eq!((access(&a.token), access(&b.token)), ("at-2", "at-2"));
    assert!(b.fresh, "the second caller's retry must not replace it again");
    assert_eq!(h.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_replacement_refused_too_pauses_replacements_for_a_minute() {
    let h = Harness::new();
    let src = source();
    let first = h.tokens.get(&src).await.unwrap();
    h.clock.advance(10_000);
    let again = h.tokens.replace(&src, &first.token.access_token).await.unwrap();
    h.tokens.refused_after_refresh(&src, &again.token);
    // A 401 with it neither replaces it nor asks the provider; calls see it as fresh.
    h.clock.advance(10_000);
    let same = h.tokens.replace(&src, &again.token.access_token).await.unwrap();
    assert_eq!((access(&same.token), same.fresh), ("at-2", true));
    assert!(h.tokens.get(&src).await.unwrap().fresh);
    assert_eq!(h.requests(), 2);
    h.clock.advance(50_000);
    assert!(!h.tokens.get(&src).await.unwrap().fresh, "the pause is over");
    let third = h.tokens.replace(&src, &again.token.access_token).await.unwrap();
    assert_eq!(access(&third.token), "at-3");
}

#[tokio::test(start_paused = true)]
async fn a_refusal_of_a_token_no_longer_cached_pauses_nothing() {
    let h = Harness::new();
    let src = source();
    let first = h.tokens.get(&src).await.unwrap();
    h.tokens.replace(&src, &first.token.access_token).await.unwrap();
    h.tokens.refused_after_refresh(&src, &first.token);
    h.clock.advance(HOUR - 300_000);
    let refused = AccessToken::from("at-2".to_owned());
    assert_eq!(access(&h.tokens.replace(&src, &refused).await.unwrap().token), "at-3");
}
