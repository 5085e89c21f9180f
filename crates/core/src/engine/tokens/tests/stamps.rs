//! Grant stamps: a token set is used only by a source of the grant it was obtained under
//! (settings and secrets: a reload, a restart or another instance's file may change them).

use super::{Harness, access, source, token_set};
use crate::auth::TokenSource;
use crate::token::{self, TokenSet};

/// `source()` with other grant settings.
fn changed() -> TokenSource {
    TokenSource { fingerprint: [2; 32], stamp: Some([2; 32]), ..source() }
}

fn stored_set(h: &Harness, row: &crate::store::TokenRow) -> TokenSet {
    token::open(&h.vault, &row.key, row.sealed.as_deref().unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_token_of_another_grant_is_not_used_nor_its_refresh_token() {
    let h = Harness::new();
    let old = source();
    assert_eq!(access(&h.tokens.get(&old).await.unwrap().token), "at-1");
    assert_eq!(stored_set(&h, &h.row(&old.key).await).grant, Some([1; 32]), "stamped with its grant");

    let new = changed();
    let got = h.tokens.get(&new).await.unwrap();
    assert_eq!(access(&got.token), "at-2", "not the token of the old grant");
    let seen = h.script.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].grant_type, "password", "the grant itself, not the old refresh token");
    assert_eq!(seen[1].refresh_token, None);
    assert_eq!(stored_set(&h, &h.row(&new.key).await).grant, Some([2; 32]));
    assert_eq!(access(&h.tokens.get(&new).await.unwrap().token), "at-2", "then cached");
    assert_eq!(h.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_token_another_instance_stored_under_another_grant_is_not_adopted() {
    let h = Harness::new();
    let src = source();
    let theirs = TokenSet { grant: Some([9; 32]), ..token_set("theirs", Some("their-rt"), h.now(), 3_600_000) };
    h.store_tokens(&src.key, &theirs).await;
    let got = h.tokens.get(&src).await.unwrap();
    assert_eq!(access(&got.token), "at-1");
    assert_eq!(h.script.seen()[0].refresh_token, None, "their refresh token is not used either");
}

#[tokio::test(start_paused = true)]
async fn a_token_stored_before_stamps_is_used() {
    let h = Harness::new();
    let src = source();
    h.store_tokens(&src.key, &token_set("unstamped", None, h.now(), 3_600_000)).await;
    assert_eq!(access(&h.tokens.get(&src).await.unwrap().token), "unstamped");
    assert_eq!(h.requests(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_per_user_connections_tokens_are_not_stamped() {
    let h = Harness::new();
    let user = TokenSource { stamp: None, ..source() };
    let stamped = TokenSet { grant: Some([9; 32]), ..token_set("user-at", None, h.now(), 3_600_000) };
    h.store_tokens(&user.key, &stamped).await;
    assert_eq!(access(&h.tokens.get(&user).await.unwrap().token), "user-at");
    h.tokens.install(&user, token_set("user-at-2", None, h.now(), 3_600_000)).await.unwrap();
    assert_eq!(stored_set(&h, &h.row(&user.key).await).grant, None);
}
