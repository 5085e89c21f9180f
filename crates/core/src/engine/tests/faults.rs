//! The store failing or hanging on a call's path: the caller hears `unavailable` within the
//! bound, measured on the fake clock, and nothing sleeps for real.

use std::time::{Duration, Instant};

use serde_json::json;

use super::Harness;
use crate::engine::tokens::STORE_WAIT;
use crate::{Env, ErrorCode};

/// A named call as user `ann` on `gh`, which fails.
async fn call(h: &Harness) -> crate::CallError {
    match h.engine.call_as_user(Env::Live, "gh", "me", &json!({}), "ann").await {
        Ok(_) => panic!("the call went through"),
        Err(e) => e,
    }
}

#[tokio::test(start_paused = true)]
async fn a_store_failing_during_the_connection_lookup_answers_unavailable() {
    let h = Harness::new().await;
    h.store.fail(Some("find_connection"), 1);
    let started = tokio::time::Instant::now();
    let e = call(&h).await;
    assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
    assert_eq!(started.elapsed(), Duration::ZERO, "at once, no waiting");
    assert_eq!(h.store.calls("find_connection"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_store_hanging_during_the_connection_lookup_answers_unavailable_within_the_bound() {
    let h = Harness::new().await;
    h.store.hang(Some("find_connection"), 1);
    let (started, real) = (h.now(), Instant::now());
    let e = call(&h).await;
    assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
    assert!(e.message.contains("connection could not be looked up"), "{}", e.message);
    assert_eq!(h.now() - started, STORE_WAIT.as_millis() as i64, "exactly the bound, on the fake clock");
    assert!(real.elapsed() < Duration::from_secs(1), "without sleeping for real");
}

#[tokio::test(start_paused = true)]
async fn after_the_store_answers_again_the_lookup_goes_through() {
    let h = Harness::new().await;
    h.connection("ann").await;
    h.store.hang(Some("find_connection"), 1);
    assert!(h.engine.user_connection(Env::Live, "gh", "ann").await.is_err());
    let row = h.engine.user_connection(Env::Live, "gh", "ann").await.unwrap();
    assert_eq!(row.map(|r| r.id), Some("conn_ann".to_owned()));
}

#[tokio::test(start_paused = true)]
async fn a_user_without_a_connection_is_told_to_connect() {
    let h = Harness::new().await;
    let e = call(&h).await;
    assert_ne!(e.code, ErrorCode::Unavailable, "{e:?}");
}

#[tokio::test(start_paused = true)]
async fn ping_is_bounded_too() {
    let h = Harness::new().await;
    h.store.hang(Some("ping"), 1);
    let started = h.now();
    let e = h.engine.ping().await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert_eq!(h.now() - started, STORE_WAIT.as_millis() as i64);
    assert!(h.engine.ping().await.is_ok());
}
