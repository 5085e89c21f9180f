//! `Engine::sync_forever` woken by the store's change feed before its tick: one catch-up per
//! burst of notices, a comparison only for a generation memory holds, a check on `Resync`.

use std::time::Duration;

use super::Harness;
use crate::Env;
use crate::store::{Store, StoreChange};

/// Lets the spawned sync run (paused time: the sleep returns at once, long before its tick).
async fn settle() {
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test(start_paused = true)]
async fn a_change_notice_wakes_the_sync_before_its_tick_and_a_burst_costs_one_catch_up() {
    let h = Harness::new().await;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    h.store.set_change_feed(rx);
    let sync = tokio::spawn(h.engine.clone().sync_forever(Duration::from_secs(3600)));
    settle().await; // its first tick, at once
    let (reloads, catch_ups) = h.engine.sync_counts();

    h.their_secret("plain_key", "theirs").await;
    let generation = h.store.generation().await.unwrap();
    for _ in 0..5 {
        tx.send(StoreChange::Generation(generation)).await.unwrap();
    }
    settle().await;
    assert_eq!(h.secret_in_memory("plain_key"), [Env::Live], "seen without waiting for the tick");
    assert_eq!(h.engine.sync_counts(), (reloads, catch_ups + 1), "one catch-up for the burst");

    // A generation memory holds (this instance's own write, say): compared, nothing read.
    let reads = h.store.calls("generation");
    tx.send(StoreChange::Generation(generation)).await.unwrap();
    settle().await;
    assert_eq!(h.store.calls("generation"), reads, "the store was asked");

    // Listening again after a loss: a check of the generation, and no catch-up when nothing moved.
    tx.send(StoreChange::Resync).await.unwrap();
    settle().await;
    assert_eq!(h.store.calls("generation"), reads + 1);
    assert_eq!(h.engine.sync_counts(), (reloads, catch_ups + 1));

    // A feed that ends leaves the tick.
    drop(tx);
    h.their_secret("later", "theirs").await;
    settle().await;
    assert!(h.secret_in_memory("later").is_empty(), "not before the tick");
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert_eq!(h.secret_in_memory("later"), [Env::Live], "seen at the tick");
    sync.abort();
}
