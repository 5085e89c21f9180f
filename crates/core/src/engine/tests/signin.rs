//! Sign-in codes (`Identity::exchange_login_code`): once, for 60 seconds, in their
//! environment; a refused exchange leaves the code as it was.

use latchkey_vault::sha256;
use serde_json::Value;

use super::Harness;
use crate::Env;
use crate::store::{IdentityStore, LoginCodeRow};

/// A sign-in code for user `ann` (live), as the callback of a login flow leaves it.
async fn login_code(h: &Harness) -> String {
    h.engine.identity().upsert_user(Env::Live, "ann", None, Value::Null).await.unwrap();
    let code = "lkc_test-code".to_owned();
    let row = LoginCodeRow {
        hash: sha256(code.as_bytes()).to_vec(),
        env: Env::Live,
        user_id: "ann".into(),
        connection_id: "conn_ann".into(),
        created_at: h.now(),
        expires_at: h.now() + 60_000,
    };
    h.store.insert_login_code(&row).await.unwrap();
    code
}

#[tokio::test(start_paused = true)]
async fn a_code_gives_the_user_tokens_and_the_connection_once() {
    let h = Harness::new().await;
    let code = login_code(&h).await;
    let (user, pair, connection) = h.engine.identity().exchange_login_code(Env::Live, &code).await.unwrap();
    assert_eq!((user.id.as_str(), connection.as_str()), ("ann", "conn_ann"));
    assert!(pair.refresh_token.starts_with("lkr_"));
    let again = h.engine.identity().exchange_login_code(Env::Live, &code).await.unwrap_err();
    assert_eq!(again.details.get("oauth_error").and_then(Value::as_str), Some("invalid_grant"));
}

#[tokio::test(start_paused = true)]
async fn another_environments_code_is_refused_without_spending_it() {
    let h = Harness::new().await;
    let code = login_code(&h).await;
    assert!(h.engine.identity().exchange_login_code(Env::Dev, &code).await.is_err());
    assert!(h.engine.identity().exchange_login_code(Env::Live, &code).await.is_ok(), "still usable in live");
}

#[tokio::test(start_paused = true)]
async fn an_expired_code_is_refused() {
    let h = Harness::new().await;
    let code = login_code(&h).await;
    h.clock.advance(60_001);
    assert!(h.engine.identity().exchange_login_code(Env::Live, &code).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_code_whose_user_is_gone_is_refused() {
    let h = Harness::new().await;
    let code = login_code(&h).await;
    h.store.delete_user(Env::Live, "ann").await.unwrap();
    assert!(h.engine.identity().exchange_login_code(Env::Live, &code).await.is_err());
}
