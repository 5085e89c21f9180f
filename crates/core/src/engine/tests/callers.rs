//! App and admin keys through `Engine::authenticate`: a key another writer made is found in
//! the store at a bounded rate per second of the engine's clock, and a key's use is recorded
//! at most once a minute of it.

use std::time::Duration;

use secrecy::ExposeSecret;

use super::Harness;
use crate::Env;
use crate::callers::{KeyMemo, generate};
use crate::store::{KeyKind, Store};

/// Lets the task that records a key's use run (1 ms on the paused clock).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_key_another_writer_made_is_found_in_the_store_before_the_sync() {
    let h = Harness::new().await;
    let theirs = generate(KeyKind::App(Env::Dev), "theirs", h.now());
    h.store.insert_key(&theirs.row).await.unwrap();
    let caller = h.engine.authenticate(theirs.key.expose_secret(), None).await.unwrap();
    assert_eq!(caller.key_id(), theirs.row.id);
    assert_eq!(h.engine.stats().key_store_lookups, 1);
    h.engine.authenticate(theirs.key.expose_secret(), None).await.unwrap();
    assert_eq!(h.engine.stats().key_store_lookups, 1, "kept in memory once found");
}

#[tokio::test(start_paused = true)]
async fn store_lookups_of_unknown_keys_are_bounded_per_second_of_the_clock() {
    let h = Harness::new().await;
    let unknown = || generate(KeyKind::App(Env::Live), "nobody", 0).key;
    for _ in 0..20 {
        assert!(h.engine.authenticate(unknown().expose_secret(), None).await.is_err());
    }
    assert_eq!(h.store.calls("find_key"), 20);
    let e = h.engine.authenticate(unknown().expose_secret(), None).await.unwrap_err();
    assert!(e.message.contains("next sync"), "{}", e.message);
    assert_eq!(h.store.calls("find_key"), 20, "the 21st in the same second is not looked up");
    h.clock.advance(1_000);
    assert!(h.engine.authenticate(unknown().expose_secret(), None).await.is_err());
    assert_eq!(h.store.calls("find_key"), 21, "a new second, new lookups");
}

#[tokio::test(start_paused = true)]
async fn a_key_known_missing_is_not_looked_up_again() {
    let h = Harness::new().await;
    let key = generate(KeyKind::App(Env::Live), "nobody", 0).key;
    assert!(h.engine.authenticate(key.expose_secret(), None).await.is_err());
    h.clock.advance(1_000);
    assert!(h.engine.authenticate(key.expose_secret(), None).await.is_err());
    assert_eq!(h.store.calls("find_key"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_keys_use_is_recorded_at_most_once_a_minute() {
    let h = Harness::new().await;
    let key = h.engine.admin().create_key(KeyKind::App(Env::Live), "app").await.unwrap();
    let presented = key.key.expose_secret();
    h.engine.authenticate(presented, None).await.unwrap();
    settle().await;
    let used = h.store.find_key(&key.row.id).await.unwrap().unwrap().last_used_at.unwrap();
    assert!(h.now() - used <= 1, "stamped on the engine's clock");
    h.clock.advance(59_000);
    h.engine.authenticate(presented, None).await.unwrap();
    settle().await;
    assert_eq!(h.store.calls("touch_key"), 1);
    h.clock.advance(1_000);
    h.engine.authenticate(presented, None).await.unwrap();
    settle().await;
    assert_eq!(h.store.calls("touch_key"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_remembered_key_records_its_use_once_a_minute_too() {
    let h = Harness::new().await;
    let key = h.engine.admin().create_key(KeyKind::Admin, "ops").await.unwrap();
    let (presented, memo) = (key.key.expose_secret(), KeyMemo::default());
    for _ in 0..3 {
        h.engine.authenticate(presented, Some(&memo)).await.unwrap();
    }
    settle().await;
    assert_eq!(h.store.calls("touch_key"), 1);
    h.clock.advance(60_000);
    h.engine.authenticate(presented, Some(&memo)).await.unwrap();
    settle().await;
    assert_eq!(h.store.calls("touch_key"), 2);
    // Another key changes nothing for this one, but makes the memo stale: checked in full.
    h.engine.admin().create_key(KeyKind::Admin, "other").await.unwrap();
    assert!(h.engine.authenticate(presented, Some(&memo)).await.is_ok());
}
