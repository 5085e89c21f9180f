//! `Mirror`: this process's own writes against another writer's, seen after a sync; the
//! generation going back; the per-user connection cache cleared on every swap.

use secrecy::SecretString;

use super::Harness;
use crate::Env;
use crate::store::{ConnectionStore, KeyKind, Store};

#[tokio::test(start_paused = true)]
async fn an_own_write_changes_memory_without_reading_the_store_again() {
    let h = Harness::new().await;
    let (before, read) = (h.engine.sync_counts(), h.store.calls("changes_since"));
    h.engine.admin().put_secret("plain_key", Env::Live, &SecretString::from("k1")).await.unwrap();
    assert_eq!(h.secret_in_memory("plain_key"), [Env::Live]);
    assert_eq!(h.engine.sync_counts(), before, "neither a reload nor a catch-up");
    assert_eq!(h.store.calls("changes_since"), read, "no changed row read");
    assert!(!h.engine.sync_once().await.unwrap(), "memory is at the store's generation already");
}

#[tokio::test(start_paused = true)]
async fn another_writers_change_is_seen_after_a_sync_from_the_changed_rows_only() {
    let h = Harness::new().await;
    let (reloads, catch_ups) = h.engine.sync_counts();
    h.their_secret("plain_key", "theirs").await;
    assert!(h.secret_in_memory("plain_key").is_empty(), "not before the sync");
    assert!(h.engine.sync_once().await.unwrap());
    assert_eq!(h.secret_in_memory("plain_key"), [Env::Live]);
    assert_eq!(h.engine.sync_counts(), (reloads, catch_ups + 1), "caught up, not read whole");
    assert!(!h.engine.sync_once().await.unwrap(), "nothing moved since");
    assert_eq!(h.engine.sync_counts(), (reloads, catch_ups + 1));
}

#[tokio::test(start_paused = true)]
async fn an_own_write_after_another_writers_catches_up_with_both() {
    let h = Harness::new().await;
    let (reloads, catch_ups) = h.engine.sync_counts();
    h.their_secret("theirs", "t").await;
    h.engine.admin().put_secret("ours", Env::Live, &SecretString::from("o")).await.unwrap();
    assert_eq!(h.secret_in_memory("theirs"), [Env::Live], "the generation moved by two: caught up");
    assert_eq!(h.secret_in_memory("ours"), [Env::Live]);
    assert_eq!(h.engine.sync_counts(), (reloads, catch_ups + 1));
}

#[tokio::test(start_paused = true)]
async fn a_generation_gone_back_reads_the_whole_store_again() {
    let h = Harness::new().await;
    let backup = h.store.backup();
    h.engine.admin().put_secret("a", Env::Live, &SecretString::from("1")).await.unwrap();
    h.engine.admin().put_secret("b", Env::Live, &SecretString::from("2")).await.unwrap();
    assert_eq!(h.secret_in_memory("a"), [Env::Live]);
    // Restored from the backup: the generation is lower than the one memory holds.
    h.store.restore(&backup);
    assert!(h.engine.sync_once().await.unwrap());
    assert_eq!(h.engine.sync_counts().0, 2, "a second full read");
    assert!(h.secret_in_memory("a").is_empty(), "what the backup lacks is gone from memory");
    // Writes go on from the restored generation.
    h.engine.admin().put_secret("c", Env::Live, &SecretString::from("3")).await.unwrap();
    assert_eq!(h.secret_in_memory("c"), [Env::Live]);
    assert!(!h.engine.sync_once().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn a_key_another_writer_deleted_is_refused_after_the_sync() {
    let h = Harness::new().await;
    let key = h.engine.admin().create_key(KeyKind::App(Env::Live), "app").await.unwrap();
    let presented = secrecy::ExposeSecret::expose_secret(&key.key).to_owned();
    assert!(h.engine.authenticate(&presented, None).await.is_ok());
    h.store.delete_key(&key.row.id).await.unwrap();
    assert!(h.engine.authenticate(&presented, None).await.is_ok(), "memory still has it");
    h.engine.sync_once().await.unwrap();
    assert!(h.engine.authenticate(&presented, None).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn a_key_is_stamped_with_the_engines_clock() {
    let h = Harness::new().await;
    h.clock.advance(3_600_000);
    let key = h.engine.admin().create_key(KeyKind::Admin, "ops").await.unwrap();
    assert_eq!(key.row.created_at, h.now());
    let info = h.engine.admin().put_secret("s", Env::Dev, &SecretString::from("v")).await.unwrap();
    assert_eq!(info.updated_at, h.now());
}

#[tokio::test(start_paused = true)]
async fn the_sync_age_grows_on_the_clock_while_the_store_does_not_answer() {
    let h = Harness::new().await;
    h.engine.sync_once().await.unwrap();
    assert_eq!(h.engine.stats().sync_age.as_millis(), 0);
    h.store.fail(Some("generation"), 1);
    h.clock.advance(7_000);
    assert!(h.engine.sync_once().await.is_err());
    assert_eq!(h.engine.stats().sync_age.as_secs(), 7);
    h.engine.sync_once().await.unwrap();
    assert_eq!(h.engine.stats().sync_age.as_millis(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_connection_cache_is_cleared_when_memory_is_swapped() {
    let h = Harness::new().await;
    h.connection("ann").await;
    let lookup = || h.engine.user_connection(Env::Live, "gh", "ann");
    assert!(lookup().await.unwrap().is_some());
    assert!(lookup().await.unwrap().is_some());
    assert_eq!(h.store.calls("find_connection"), 1, "the second lookup came from memory");
    // Deleted by another instance: this one still answers from memory ...
    h.store.delete_connection("conn_ann").await.unwrap();
    assert!(lookup().await.unwrap().is_some());
    // ... until anything swaps memory (here: another writer's secret, seen by the sync).
    h.their_secret("plain_key", "x").await;
    h.engine.sync_once().await.unwrap();
    assert!(lookup().await.unwrap().is_none());
    assert_eq!(h.store.calls("find_connection"), 2);
}

#[tokio::test(start_paused = true)]
async fn an_own_secret_write_clears_the_connection_cache_too() {
    let h = Harness::new().await;
    h.connection("bob").await;
    assert!(h.engine.user_connection(Env::Live, "gh", "bob").await.unwrap().is_some());
    h.store.delete_connection("conn_bob").await.unwrap();
    h.engine.admin().put_secret("plain_key", Env::Live, &SecretString::from("k")).await.unwrap();
    assert!(h.engine.user_connection(Env::Live, "gh", "bob").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_new_instance_reads_everything_at_start() {
    let h = Harness::new().await;
    h.engine.admin().put_secret("plain_key", Env::Live, &SecretString::from("k")).await.unwrap();
    let second = Harness::on(super::CONFIG, h.store.clone(), h.vault.clone()).await;
    assert_eq!(second.secret_in_memory("plain_key"), [Env::Live]);
    assert_eq!(second.engine.sync_counts(), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn the_engine_reads_the_time_from_the_clock_it_was_given() {
    let h = Harness::new().await;
    h.clock.advance(86_400_000);
    assert_eq!(h.engine.now_ms(), h.now());
    let started = super::super::EngineSettings::default();
    assert!(started.clock.is_none(), "the system's clock unless a test gives one");
}
