//! The engine's own secret writes update memory without reading the whole store again; when
//! another writer changed the store in between, or when the sync sees another writer's changes,
//! it reads only the secrets and keys that changed (never the whole store again after start).
//! On a real SQLite store, with no sync loop running, so nothing else brings memory up to date.

use std::sync::Arc;

use latchkey_core::Env;
use latchkey_core::auth::sign::Unsigned;
use latchkey_core::config::Config;
use latchkey_core::engine::{Engine, EngineSettings};
use latchkey_core::secrets::seal_secret;
use latchkey_core::store::SecretRow;
use latchkey_vault::{MasterKey, Vault};
use secrecy::{ExposeSecret, SecretString};

const CONFIG: &str = r#"
[connectors.a]
base_url = "https://a.example"
auth = { method = "api_key_header", name = "X-Key", key = { secret = "ka" } }
[connectors.b]
base_url = "https://b.example"
auth = { method = "api_key_header", name = "X-Key", key = { secret = "kb" } }
"#;

/// The key connector `name` would send in live, if it has one.
fn sent_key(engine: &Engine, name: &str) -> Option<String> {
    let conn = engine.connector(name)?;
    let prepared = conn.credential(Env::Live).ok()?;
    let (mut headers, mut url) = (http::HeaderMap::new(), url::Url::parse("https://x.example/").ok()?);
    let method = http::Method::GET;
    let signer = prepared.credential.prepared_signer()?;
    signer
        .sign(&mut Unsigned {
            method: &method,
            url: &mut url,
            headers: &mut headers,
            body: None,
            clock: &latchkey_core::clock::SystemClock,
        })
        .ok()?;
    Some(headers.get("x-key")?.to_str().ok()?.to_owned())
}

#[tokio::test]
async fn own_secret_writes_apply_in_memory_and_a_foreign_write_is_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let store = latchkey_store::connect(&format!("sqlite://{}", dir.path().join("lk.db").display())).await.unwrap();
    let vault = Arc::new(Vault::new(&MasterKey::generate()));
    let settings = EngineSettings {
        config: Config::parse(CONFIG, "test.toml").unwrap(),
        public_url: "http://127.0.0.1:1".into(),
        ..Default::default()
    };
    let engine = Engine::start(store.clone(), vault.clone(), settings).await.unwrap();
    assert_eq!(sent_key(&engine, "a"), None);

    let info = engine.admin().put_secret("ka", Env::Live, &SecretString::from("one")).await.unwrap();
    assert_eq!(info.environments, [Env::Live]);
    assert_eq!(sent_key(&engine, "a").as_deref(), Some("one"));
    assert!(!engine.sync_once().await.unwrap(), "the engine already holds its own write");
    let info = engine.admin().put_secret("ka", Env::Dev, &SecretString::from("dev-one")).await.unwrap();
    assert_eq!(info.environments, [Env::Live, Env::Dev]);

    // Another writer (the CLI, another instance) sets `kb`; this engine has not synced.
    let theirs = SecretString::from("theirs");
    let row = SecretRow {
        name: "kb".into(),
        env: Env::Live,
        sealed: seal_secret(&vault, "kb", Env::Live, &theirs),
        updated_at: 1,
    };
    store.put_secret(&row).await.unwrap();
    assert_eq!(sent_key(&engine, "b"), None, "not seen yet");
    // The next own write finds two generations passed and catches up with both.
    engine.admin().put_secret("ka", Env::Live, &SecretString::from("two")).await.unwrap();
    assert_eq!(sent_key(&engine, "a").as_deref(), Some("two"));
    assert_eq!(sent_key(&engine, "b").as_deref(), Some("theirs"));
    assert_eq!(engine.sync_counts(), (1, 1), "one full read (at start), one catch-up");

    assert!(engine.admin().delete_secret("ka").await.unwrap());
    assert_eq!(sent_key(&engine, "a"), None);
    assert!(!engine.admin().delete_secret("ka").await.unwrap());
    assert!(!engine.sync_once().await.unwrap(), "nothing left for the sync loop");
    assert_eq!(sent_key(&engine, "b").as_deref(), Some("theirs"));
}

#[tokio::test]
async fn the_sync_reads_only_what_another_writer_changed() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("lk.db").display());
    let store = latchkey_store::connect(&url).await.unwrap();
    let theirs = latchkey_store::connect(&url).await.unwrap(); // the CLI, another instance
    let vault = Arc::new(Vault::new(&MasterKey::generate()));
    let seal = |name: &str, value: &str| SecretRow {
        name: name.into(),
        env: Env::Live,
        sealed: seal_secret(&vault, name, Env::Live, &SecretString::from(value.to_owned())),
        updated_at: 1,
    };
    theirs.put_secret(&seal("ka", "a-before-start")).await.unwrap();
    let settings = EngineSettings {
        config: Config::parse(CONFIG, "test.toml").unwrap(),
        public_url: "http://127.0.0.1:1".into(),
        ..Default::default()
    };
    let engine = Engine::start(store.clone(), vault.clone(), settings).await.unwrap();
    assert_eq!(sent_key(&engine, "a").as_deref(), Some("a-before-start"));

    // A secret the sync never re-reads: spoil its sealed bytes behind the engine's back. A full
    // reload would open it again and find it broken; catching up leaves it alone.
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::query("UPDATE secrets SET sealed = x'00' WHERE name = 'ka'").execute(&pool).await.unwrap();

    theirs.put_secret(&seal("kb", "b-theirs")).await.unwrap();
    let key = latchkey_core::callers::generate(
        latchkey_core::store::KeyKind::App(Env::Live),
        "theirs",
        latchkey_core::clock::system_now_ms(),
    );
    theirs.insert_key(&key.row).await.unwrap();
    assert!(engine.sync_once().await.unwrap());
    assert_eq!(sent_key(&engine, "b").as_deref(), Some("b-theirs"));
    assert_eq!(sent_key(&engine, "a").as_deref(), Some("a-before-start"), "an unchanged secret was read again");
    assert!(engine.authenticate(key.key.expose_secret(), None).await.is_ok());
    assert_eq!(engine.sync_counts(), (1, 1));

    // Their deletes: the secret's connector loses its key; the app key stops working at once
    // (it is no longer in memory, and the store no longer has it).
    assert!(theirs.delete_secret("kb").await.unwrap());
    assert!(theirs.delete_key(&key.row.id).await.unwrap());
    assert!(engine.sync_once().await.unwrap());
    assert_eq!(sent_key(&engine, "b"), None);
    assert!(engine.authenticate(key.key.expose_secret(), None).await.is_err());
    assert!(!engine.sync_once().await.unwrap(), "nothing more to catch up with");
    assert_eq!(engine.sync_counts(), (1, 2));

    // A store restored from an older backup: its generation is behind what the engine saw, so
    // rows may differ below it; the engine reads everything again (and finds `ka` spoiled).
    sqlx::query("UPDATE generation SET value = value - 3").execute(&pool).await.unwrap();
    assert!(engine.sync_once().await.unwrap());
    assert_eq!(engine.sync_counts(), (2, 2));
    assert_eq!(sent_key(&engine, "a"), None, "the spoiled secret was read again");
}
