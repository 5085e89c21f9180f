//! `Identity`: refresh-token families (rotation, the retry window, reuse, expiry) and
//! signing-key rotation (published at once, signing after 300 s, kept until its tokens died).

use latchkey_vault::identity::peek_header;
use secrecy::SecretString;
use serde_json::Value;

use super::Harness;
use crate::Env;
use crate::engine::identity::{Introspection, PUBLISH_BEFORE_SIGNING_S, TokenPair};
use crate::store::IdentityStore;

const GRACE_MS: i64 = 30_000;
/// How long user access tokens live by default (ms).
const ACCESS_TTL_MS: i64 = 900_000;

async fn minted(h: &Harness) -> TokenPair {
    h.engine.identity().upsert_user(Env::Live, "ann", None, Value::Null).await.unwrap();
    h.engine.identity().mint_tokens(Env::Live, "ann").await.unwrap()
}

async fn refresh(h: &Harness, token: &str) -> Result<TokenPair, crate::CallError> {
    h.engine.identity().refresh_user_tokens(&SecretString::from(token.to_owned())).await
}

fn kid(token: &str) -> String {
    peek_header(token).unwrap().0
}

fn jwks_kids(h: &Harness) -> Vec<String> {
    let jwks = h.engine.identity().jwks();
    let mut kids: Vec<String> =
        jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    kids.sort();
    kids
}

#[tokio::test(start_paused = true)]
async fn a_refresh_token_rotates_into_a_new_pair() {
    let h = Harness::new().await;
    let first = minted(&h).await;
    let second = refresh(&h, &first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(refresh(&h, &second.refresh_token).await.is_ok(), "the successor rotates in turn");
}

#[tokio::test(start_paused = true)]
async fn a_rotated_token_replayed_within_the_grace_window_returns_the_same_pair() {
    let h = Harness::new().await;
    let first = minted(&h).await;
    let second = refresh(&h, &first.refresh_token).await.unwrap();
    h.clock.advance(GRACE_MS);
    let replay = refresh(&h, &first.refresh_token).await.unwrap();
    assert_eq!(replay.refresh_token, second.refresh_token);
    assert_eq!(replay.access_token, second.access_token);
    assert!(refresh(&h, &second.refresh_token).await.is_ok(), "the family lives on");
}

#[tokio::test(start_paused = true)]
async fn a_rotated_token_replayed_after_the_grace_window_revokes_the_family() {
    let h = Harness::new().await;
    let first = minted(&h).await;
    let second = refresh(&h, &first.refresh_token).await.unwrap();
    h.clock.advance(GRACE_MS + 1);
    let e = refresh(&h, &first.refresh_token).await.unwrap_err();
    assert!(e.message.contains("family is revoked"), "{}", e.message);
    assert!(refresh(&h, &second.refresh_token).await.is_err(), "the successor died with its family");
    let access = h.engine.identity().verify_user_token(&second.access_token);
    assert!(access.is_err(), "and the access tokens of the family");
}

#[tokio::test(start_paused = true)]
async fn a_replay_once_the_successor_was_used_revokes_the_family() {
    let h = Harness::new().await;
    let first = minted(&h).await;
    let second = refresh(&h, &first.refresh_token).await.unwrap();
    let third = refresh(&h, &second.refresh_token).await.unwrap();
    assert!(refresh(&h, &first.refresh_token).await.is_err(), "within the window, but the pair was used");
    assert!(refresh(&h, &third.refresh_token).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn an_expired_family_is_refused() {
    let h = Harness::new().await;
    let first = minted(&h).await;
    let second = refresh(&h, &first.refresh_token).await.unwrap();
    // The family's end does not move with rotations: 30 days from the first token.
    h.clock.advance(30 * 86_400_000);
    let e = refresh(&h, &second.refresh_token).await.unwrap_err();
    assert!(e.message.contains("expired or was revoked"), "{}", e.message);
}

#[tokio::test(start_paused = true)]
async fn an_access_token_verifies_until_it_expires_on_the_engines_clock() {
    let h = Harness::new().await;
    let pair = minted(&h).await;
    let claims = h.engine.identity().verify_user_token(&pair.access_token).unwrap();
    assert_eq!((claims.sub.as_str(), claims.env.as_str()), ("ann", "live"));
    // 15 minutes, and 5 seconds' leeway.
    h.clock.advance(ACCESS_TTL_MS + 5_000);
    assert!(h.engine.identity().verify_user_token(&pair.access_token).is_ok());
    h.clock.advance(1_000);
    assert!(h.engine.identity().verify_user_token(&pair.access_token).is_err());
    assert!(matches!(h.engine.identity().introspect(Env::Live, &pair.access_token).await, Introspection::Inactive));
}

#[tokio::test(start_paused = true)]
async fn a_refresh_token_of_a_deleted_user_is_refused() {
    let h = Harness::new().await;
    let first = minted(&h).await;
    assert!(h.engine.identity().delete_user(Env::Live, "ann").await.unwrap());
    assert!(refresh(&h, &first.refresh_token).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn introspection_sees_a_refresh_token_in_its_environment_until_it_expires() {
    let h = Harness::new().await;
    let pair = minted(&h).await;
    let id = h.engine.identity();
    assert!(matches!(id.introspect(Env::Live, &pair.refresh_token).await, Introspection::Refresh { .. }));
    assert!(matches!(id.introspect(Env::Dev, &pair.refresh_token).await, Introspection::Inactive));
    h.clock.advance(30 * 86_400_000);
    assert!(matches!(id.introspect(Env::Live, &pair.refresh_token).await, Introspection::Inactive));
}

#[tokio::test(start_paused = true)]
async fn revoking_a_token_revokes_its_family() {
    let h = Harness::new().await;
    let pair = minted(&h).await;
    h.engine.identity().revoke_user_token(Env::Dev, &pair.refresh_token).await.unwrap();
    assert!(refresh(&h, &pair.refresh_token).await.is_ok(), "another environment's revocation is ignored");
    let pair = minted(&h).await;
    h.engine.identity().revoke_user_token(Env::Live, &pair.access_token).await.unwrap();
    assert!(refresh(&h, &pair.refresh_token).await.is_err());
    assert!(matches!(h.engine.identity().introspect(Env::Live, &pair.access_token).await, Introspection::Inactive));
}

#[tokio::test(start_paused = true)]
async fn a_new_signing_key_is_published_at_once_and_signs_after_300_s() {
    let h = Harness::new().await;
    let old = kid(&minted(&h).await.access_token);
    let new = h.engine.identity().rotate_signing_key(None, false).await.unwrap();
    assert_eq!(new.activates_at, h.now() + PUBLISH_BEFORE_SIGNING_S * 1000);
    let mut both = vec![old.clone(), new.kid.clone()];
    both.sort();
    assert_eq!(jwks_kids(&h), both, "published before it signs");
    h.clock.advance(PUBLISH_BEFORE_SIGNING_S * 1000 - 1);
    assert_eq!(kid(&minted(&h).await.access_token), old, "the old key still signs");
    h.clock.advance(1);
    assert_eq!(kid(&minted(&h).await.access_token), new.kid, "the new key signs from then on");
}

#[tokio::test(start_paused = true)]
async fn a_key_rotated_now_signs_at_once() {
    let h = Harness::new().await;
    let new = h.engine.identity().rotate_signing_key(None, true).await.unwrap();
    assert_eq!(kid(&minted(&h).await.access_token), new.kid);
}

#[tokio::test(start_paused = true)]
async fn a_retired_key_is_kept_until_its_last_token_expired() {
    let h = Harness::new().await;
    let old = kid(&minted(&h).await.access_token);
    let new = h.engine.identity().rotate_signing_key(None, true).await.unwrap();
    let retired = h.store.list_signing_keys().await.unwrap();
    assert!(retired.iter().any(|k| k.kid == old && k.retired_at == Some(h.now())));
    // Tokens the old key signed live 15 minutes: it stays published (and stored) until then.
    h.clock.advance(ACCESS_TTL_MS);
    assert!(jwks_kids(&h).contains(&old));
    h.engine.identity().rotate_signing_key(None, true).await.unwrap();
    assert!(h.store.list_signing_keys().await.unwrap().iter().any(|k| k.kid == old), "not yet deleted");
    // A minute's margin later, it leaves the JWKS, and the next rotation deletes it.
    h.clock.advance(60_001);
    assert!(!jwks_kids(&h).contains(&old));
    h.engine.identity().rotate_signing_key(None, true).await.unwrap();
    let kids: Vec<String> = h.store.list_signing_keys().await.unwrap().into_iter().map(|k| k.kid).collect();
    assert!(!kids.contains(&old), "{kids:?}");
    assert!(kids.contains(&new.kid), "retired later: kept");
}

#[tokio::test(start_paused = true)]
async fn ensure_signing_key_makes_one_key_once() {
    let h = Harness::new().await;
    h.engine.identity().ensure_signing_key().await.unwrap();
    assert_eq!(h.store.list_signing_keys().await.unwrap().len(), 1);
    assert_eq!(jwks_kids(&h).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn without_an_active_key_nothing_is_signed() {
    let h = Harness::start(super::CONFIG).await;
    h.engine.identity().upsert_user(Env::Live, "ann", None, Value::Null).await.unwrap();
    let e = h.engine.identity().mint_tokens(Env::Live, "ann").await.unwrap_err();
    assert!(e.message.contains("keys rotate --now"), "{}", e.message);
    h.engine.identity().rotate_signing_key(None, false).await.unwrap();
    assert!(h.engine.identity().mint_tokens(Env::Live, "ann").await.is_err(), "published, not yet signing");
}

/// The claims of a JWT, unverified.
fn payload(token: &str) -> Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn tokens_are_issued_at_the_engines_time() {
    let h = Harness::new().await;
    h.engine.identity().upsert_user(Env::Live, "ann", None, Value::Null).await.unwrap();
    h.clock.advance(42_000);
    let identity = h.engine.sign_identity(Env::Live, "ann", "https://api.test", 60).await.unwrap();
    let claims = payload(&identity);
    assert_eq!(claims["iat"], h.now() / 1000);
    assert_eq!(claims["exp"], h.now() / 1000 + 60);
    let pair = h.engine.identity().mint_tokens(Env::Live, "ann").await.unwrap();
    assert_eq!(payload(&pair.access_token)["iat"], h.now() / 1000);
    let row = h.store.get_refresh(&latchkey_vault::sha256(pair.refresh_token.as_bytes())).await.unwrap().unwrap();
    assert_eq!((row.created_at, row.expires_at), (h.now(), h.now() + 30 * 86_400_000));
}
