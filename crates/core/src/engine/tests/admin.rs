//! `Admin` writes, the master-key check and `vault rotate`'s compare-and-swap passes.

use std::sync::Arc;

use latchkey_vault::{MasterKey, Vault};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::Harness;
use crate::engine::{KeyCheck, KeyCheckError, PutConnectorError, check_master_key, rotate::reseal_all};
use crate::store::memory::MemoryStore;
use crate::store::{SealedStore, SecretRow, Store};
use crate::{Env, ErrorCode};

fn api_connector(key: serde_json::Value) -> serde_json::Value {
    json!({"base_url": "https://api.example.com", "auth": {"method": "api_key_header", "name": "X-Key", "key": key}})
}

#[tokio::test(start_paused = true)]
async fn put_connector_refuses_a_name_the_file_has() {
    let h = Harness::new().await;
    match h.engine.admin().put_connector("plain", api_connector(json!({"secret": "k"}))).await {
        Err(PutConnectorError::Call(e)) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.store.calls("put_connector"), 0);
}

#[tokio::test(start_paused = true)]
async fn put_connector_refuses_environment_references() {
    let h = Harness::new().await;
    match h.engine.admin().put_connector("mine", api_connector(json!({"env": "GH_SECRET"}))).await {
        Err(PutConnectorError::Invalid(errors)) => {
            assert_eq!(errors.0.len(), 1);
            assert_eq!(errors.0[0].field.as_deref(), Some("auth.key"));
            assert!(errors.0[0].message.contains("from the vault only"), "{}", errors.0[0].message);
        }
        other => panic!("{other:?}"),
    }
    assert!(h.engine.connector("mine").is_none());
    assert_eq!(h.store.calls("put_connector"), 0);
}

#[tokio::test(start_paused = true)]
async fn an_api_connector_is_served_at_once_and_stamped_on_the_clock() {
    let h = Harness::new().await;
    h.clock.advance(1234);
    h.engine.admin().put_connector("mine", api_connector(json!({"secret": "k"}))).await.unwrap();
    assert!(h.engine.connector("mine").is_some());
    let rows = h.store.list_connectors().await.unwrap();
    assert_eq!(rows.iter().map(|r| (r.name.as_str(), r.updated_at)).collect::<Vec<_>>(), [("mine", h.now())]);
    assert!(h.engine.admin().delete_connector("mine").await.unwrap());
    assert!(h.engine.connector("mine").is_none());
}

#[tokio::test(start_paused = true)]
async fn create_connector_never_replaces_one_and_check_connector_writes_nothing() {
    let h = Harness::new().await;
    // Checked, not written.
    let c = h.engine.admin().check_connector("mine", api_connector(json!({"secret": "k"}))).await.unwrap();
    assert_eq!(c.base_url.as_str(), "https://api.example.com");
    assert!(h.engine.connector("mine").is_none());
    assert_eq!(h.store.calls("put_connector"), 0);
    // A problem is the same problem `put_connector` finds.
    match h.engine.admin().check_connector("mine", json!({"provider": "zendesk"})).await {
        Err(PutConnectorError::Invalid(errors)) => {
            assert!(errors.0.iter().any(|p| p.field.as_deref() == Some("provider_params.subdomain")), "{errors:?}");
        }
        other => panic!("{other:?}"),
    }
    // Created once; a second creation of the name is refused and changes nothing.
    h.engine.admin().create_connector("mine", api_connector(json!({"secret": "k"}))).await.unwrap();
    assert_eq!((h.store.calls("insert_connector"), h.store.calls("put_connector")), (1, 0));
    let other = json!({"base_url": "https://other.example.com", "auth": {"method": "none"}});
    match h.engine.admin().create_connector("mine", other.clone()).await {
        Err(PutConnectorError::Call(e)) => {
            assert_eq!(e.code, ErrorCode::InvalidParams);
            assert!(e.message.contains("a connector named `mine` exists already"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((h.store.calls("insert_connector"), h.store.calls("put_connector")), (1, 0));
    assert_eq!(h.engine.connector("mine").unwrap().config.base_url.as_str(), "https://api.example.com");
    // Nor one of the file's.
    match h.engine.admin().create_connector("plain", other).await {
        Err(PutConnectorError::Call(e)) => assert_eq!(e.code, ErrorCode::Forbidden),
        other => panic!("{other:?}"),
    }
}

/// Two instances create the same name at the same instant: both pass their checks (neither
/// holds the name in memory), the store's insert-if-absent lets exactly one write, and the
/// other gets the same "exists" error as a creation that found the name in memory.
#[tokio::test(start_paused = true)]
async fn concurrent_creations_of_a_name_have_one_winner() {
    let a = Harness::new().await;
    let b = Harness::on(super::CONFIG, a.store.clone(), a.vault.clone()).await;
    let mine = api_connector(json!({"secret": "a"}));
    let theirs = json!({"base_url": "https://other.example.com", "auth": {"method": "none"}});
    let (ra, rb) = tokio::join!(
        a.engine.admin().create_connector("same", mine),
        b.engine.admin().create_connector("same", theirs)
    );
    let (won, lost) = match (ra, rb) {
        (Ok(c), Err(e)) | (Err(e), Ok(c)) => (c, e),
        other => panic!("not exactly one winner: {other:?}"),
    };
    match lost {
        PutConnectorError::Call(e) => {
            assert_eq!(e.code, ErrorCode::InvalidParams);
            assert!(e.message.contains("a connector named `same` exists already"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    let rows = a.store.list_connectors().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].definition.contains(won.base_url.as_str()), "the store holds the loser's definition");
    // A replace (PUT) still replaces.
    a.engine.admin().put_connector("same", api_connector(json!({"secret": "b"}))).await.unwrap();
    assert_eq!(a.store.calls("put_connector"), 1);
}

#[tokio::test(start_paused = true)]
async fn an_api_connector_may_name_a_provider_template() {
    let h = Harness::new().await;
    let json = json!({"provider": "zendesk", "provider_params": {"subdomain": "acme"},
                      "auth": {"client_id": "latchkey", "client_secret": {"secret": "zd"}}});
    h.engine.admin().put_connector("help", json).await.unwrap();
    let c = h.engine.connector("help").expect("served");
    assert_eq!(c.config.base_url.as_str(), "https://acme.zendesk.com/api/v2");
    // Stored whole, as merged: loading it applies no template again.
    let rows = h.store.list_connectors().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(!rows[0].definition.contains("provider"), "{}", rows[0].definition);
    assert!(rows[0].definition.contains("https://acme.zendesk.com/oauth/tokens"), "{}", rows[0].definition);
    // A missing parameter is refused with the field named.
    match h.engine.admin().put_connector("help2", json!({"provider": "zendesk", "auth": {"client_id": "x"}})).await {
        Err(PutConnectorError::Invalid(errors)) => {
            assert_eq!(errors.0[0].field.as_deref(), Some("provider_params.subdomain"), "{errors:?}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn the_master_key_check_records_the_first_key_and_refuses_another() {
    let store = MemoryStore::new();
    let ours = Vault::new(&MasterKey::generate());
    assert_eq!(check_master_key(&store, &ours).await.unwrap(), KeyCheck::Initialized);
    assert_eq!(check_master_key(&store, &ours).await.unwrap(), KeyCheck::Matches);
    let theirs = Vault::new(&MasterKey::generate());
    match check_master_key(&store, &theirs).await {
        Err(KeyCheckError::WrongKey { given, sealed_with }) => {
            assert_eq!((given, sealed_with), (theirs.active_key_id(), ours.active_key_id()));
        }
        other => panic!("{other:?}"),
    }
    // A keyring holding the store's key as an old key opens the marker.
    let rotating = Vault::new(&MasterKey::generate());
    let old = MasterKey::generate();
    let store2 = MemoryStore::new();
    check_master_key(&store2, &Vault::new(&old)).await.unwrap();
    rotating.add_old_key(&old);
    assert_eq!(check_master_key(&store2, &rotating).await.unwrap(), KeyCheck::Matches);
}

#[tokio::test(start_paused = true)]
async fn the_master_key_check_reports_a_store_that_does_not_answer() {
    let store = MemoryStore::new();
    store.fail(Some("get_meta"), 1);
    let vault = Vault::new(&MasterKey::generate());
    assert!(matches!(check_master_key(&store, &vault).await, Err(KeyCheckError::Store(_))));
    assert_eq!(store.calls("insert_meta"), 0, "nothing written");
}

fn secret(vault: &Vault, name: &str, value: &str) -> SecretRow {
    SecretRow {
        name: name.into(),
        env: Env::Live,
        sealed: crate::secrets::seal_secret(vault, name, Env::Live, &SecretString::from(value)),
        updated_at: 0,
    }
}

async fn opened(store: &MemoryStore, vault: &Vault, name: &str) -> String {
    let row = store.list_secrets().await.unwrap().into_iter().find(|r| r.name == name).unwrap();
    let plain = vault.open(&crate::secrets::secret_aad(name, Env::Live), &row.sealed).unwrap();
    String::from_utf8(plain.expose_secret().to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn reseal_moves_every_value_to_the_active_key() {
    let store = MemoryStore::new();
    let old = MasterKey::generate();
    let before = Vault::new(&old);
    check_master_key(&store, &before).await.unwrap();
    store.put_secret(&secret(&before, "a", "one")).await.unwrap();
    store.put_secret(&secret(&before, "b", "two")).await.unwrap();
    let after = Vault::new(&MasterKey::generate()).with_old_key(&old);
    let report = reseal_all(&store, &after).await.unwrap();
    assert_eq!((report.resealed, report.already_current, report.passes), (3, 0, 2));
    assert!(store.sealed_values().await.unwrap().iter().all(|(_, v)| after.is_current(v)));
    assert_eq!(opened(&store, &after, "a").await, "one");
    let again = reseal_all(&store, &after).await.unwrap();
    assert_eq!((again.resealed, again.already_current, again.passes), (0, 3, 1));
}

#[tokio::test(start_paused = true)]
async fn reseal_leaves_a_value_changed_under_it_for_the_next_pass() {
    let store = MemoryStore::new();
    let old = MasterKey::generate();
    let before = Arc::new(Vault::new(&old));
    store.put_secret(&secret(&before, "a", "one")).await.unwrap();
    // An instance still on the old key writes a new value between the read and the swap.
    let (writer, vault) = (store.clone(), before.clone());
    store.before_next("replace_sealed", move || async move {
        writer.put_secret(&secret(&vault, "a", "theirs")).await.unwrap();
    });
    let after = Vault::new(&MasterKey::generate()).with_old_key(&old);
    let report = reseal_all(&store, &after).await.unwrap();
    assert_eq!(store.calls("replace_sealed"), 2);
    // Pass 1 lost its swap, pass 2 took the value again, pass 3 found nothing left.
    assert_eq!((report.resealed, report.passes), (1, 3));
    assert_eq!(opened(&store, &after, "a").await, "theirs", "their value kept, not ours");
    assert!(store.sealed_values().await.unwrap().iter().all(|(_, v)| after.is_current(v)));
}

/// A write the store did not confirm may have been made: the caller is told to look first.
#[tokio::test(start_paused = true)]
async fn a_write_the_store_did_not_confirm_says_to_look_before_repeating_it() {
    let h = Harness::new().await;
    h.store.fail(Some("put_secret"), 1);
    let e = h.engine.admin().put_secret("s", Env::Live, &SecretString::from("v")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("may or may not have been made: list the secrets"), "{}", e.message);
    h.store.fail(Some("insert_key"), 1);
    let Err(e) = h.engine.admin().create_key(crate::store::KeyKind::App(Env::Live), "k").await else {
        panic!("the key was made");
    };
    assert!(e.message.contains("may or may not have been made: list the keys"), "{}", e.message);
}

/// A write the store confirmed but this instance could not read back: a secret says it was
/// made; a new key is answered (its text exists only in this answer) and works at once.
#[tokio::test(start_paused = true)]
async fn a_confirmed_write_that_cannot_be_read_back_is_not_reported_as_lost() {
    let h = Harness::new().await;
    h.store.fail(Some("generation"), 1);
    let e = h.engine.admin().put_secret("s", Env::Live, &SecretString::from("v")).await.unwrap_err();
    assert!(e.message.starts_with("the change was made, but this instance could not read it back"), "{}", e.message);
    assert_eq!(h.store.list_secrets().await.unwrap().len(), 1);

    h.store.fail(Some("generation"), 1);
    let new = h.engine.admin().create_key(crate::store::KeyKind::App(Env::Live), "k").await.unwrap();
    assert!(h.engine.authenticate(new.key.expose_secret(), None).await.is_ok());
}
