//! The per-user connection cache is bounded (`[server] connection_cache`): past the bound the
//! least recently used connection goes, and its next lookup reads the store as a cold start
//! does; a reload of the file applies a new bound.

use std::collections::BTreeMap;

use secrecy::SecretString;

use super::{CONFIG, Harness};
use crate::Env;
use crate::config::Config;
use crate::store::ConnectionStore;

fn bounded(n: usize) -> String {
    CONFIG.replacen("[server]\n", &format!("[server]\nconnection_cache = {n}\n"), 1)
}

#[tokio::test(start_paused = true)]
async fn past_the_bound_the_least_recently_used_connection_is_read_from_the_store_again() {
    let h = Harness::start(&bounded(2)).await;
    for owner in ["ann", "bob", "cy"] {
        h.connection(owner).await;
    }
    let lookup = |owner: &'static str| h.engine.user_connection(Env::Live, "gh", owner);
    let reads = || h.store.calls("find_connection");
    assert!(lookup("ann").await.unwrap().is_some());
    assert!(lookup("bob").await.unwrap().is_some());
    assert!(lookup("ann").await.unwrap().is_some(), "ann is now the most recently used");
    assert_eq!(reads(), 2, "the third lookup came from memory");
    assert!(lookup("cy").await.unwrap().is_some(), "cy makes room by dropping bob, not ann");
    assert_eq!(h.engine.connections.cached(), (2, 2));
    assert!(lookup("ann").await.unwrap().is_some());
    assert_eq!(reads(), 3, "ann was kept");
    // What memory dropped is read from the store, as at a cold start: a deletion made there
    // meanwhile (by another instance, before any sync) is seen at once.
    h.store.delete_connection("conn_bob").await.unwrap();
    assert!(lookup("bob").await.unwrap().is_none());
    assert_eq!(reads(), 4);
    let fresh = Harness::on(&bounded(2), h.store.clone(), h.vault.clone()).await;
    assert_eq!(
        h.engine.user_connection(Env::Live, "gh", "cy").await.unwrap(),
        fresh.engine.user_connection(Env::Live, "gh", "cy").await.unwrap(),
        "a re-read entry is what a new instance reads"
    );
}

#[tokio::test(start_paused = true)]
async fn the_default_bound_applies_and_a_reload_applies_a_new_one() {
    let h = Harness::new().await;
    assert_eq!(h.engine.connections.cached(), (0, Config::parse(CONFIG, "f").unwrap().server.connection_cache()));
    assert_eq!(h.engine.connections.cached().1, 10_000);
    for owner in ["ann", "bob", "cy"] {
        h.connection(owner).await;
        h.engine.user_connection(Env::Live, "gh", owner).await.unwrap();
    }
    assert_eq!(h.engine.connections.cached().0, 3);
    let env_vars = BTreeMap::from([("GH_SECRET".to_owned(), SecretString::from("gh-secret"))]);
    let report = h.engine.reload_config(Config::parse(&bounded(1), "f").unwrap(), env_vars).await;
    assert_eq!(report.applied, ["connection_cache"], "{report}");
    assert_eq!(h.engine.connections.cached(), (0, 1), "emptied and bounded anew");
    for owner in ["ann", "bob", "cy"] {
        assert!(h.engine.user_connection(Env::Live, "gh", owner).await.unwrap().is_some());
    }
    assert_eq!(h.engine.connections.cached(), (1, 1));
}

/// Many users through a small bound: memory holds the bound, never more, and every user is
/// still answered from the store.
#[tokio::test(start_paused = true)]
async fn many_users_stay_within_the_bound() {
    const USERS: usize = 3_000;
    const BOUND: usize = 500;
    let h = Harness::start(&bounded(BOUND)).await;
    for i in 0..USERS {
        h.connection(&format!("user-{i:06}")).await;
    }
    for i in 0..USERS {
        let owner = format!("user-{i:06}");
        let row = h.engine.user_connection(Env::Live, "gh", &owner).await.unwrap().unwrap();
        assert_eq!(row.owner, owner);
        assert!(h.engine.connections.cached().0 <= BOUND);
    }
    assert_eq!(h.engine.connections.cached(), (BOUND, BOUND));
    assert_eq!(h.store.calls("find_connection"), USERS as u64);
}
