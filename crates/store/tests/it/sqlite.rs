//! The conformance suite on SQLite files in temporary directories, and what only SQLite has.

use latchkey_core::Env;
use latchkey_core::store::{EventFilter, SecretRow, Store, StoreError, TokenStore};
use latchkey_store::SqliteStore;
use tempfile::TempDir;

use crate::{Ctx, conformance_suite};

/// A fresh database file in its own temporary directory, opened through `connect`.
async fn fresh() -> (Ctx, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let store = latchkey_store::connect(&url).await.expect("open SQLite store");
    (Ctx { store, url }, dir)
}

conformance_suite!(fresh);

fn secret(name: &str) -> SecretRow {
    SecretRow { name: name.to_owned(), env: Env::Live, sealed: vec![0x00, 0xff, 0x00], updated_at: 1 }
}

#[tokio::test]
async fn connections_use_wal_foreign_keys_and_a_busy_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lk.db")).await.unwrap();
    // Every pooled connection gets the settings: hold several at once and ask each.
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(store.pool().acquire().await.unwrap());
    }
    for conn in &mut conns {
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut **conn).await.unwrap();
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(&mut **conn).await.unwrap();
        let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(&mut **conn).await.unwrap();
        assert_eq!((journal.as_str(), foreign_keys, busy_timeout), ("wal", 1, 5000));
    }
}

#[tokio::test]
async fn dollar_placeholders_bind_by_number_not_position() {
    // The shared SQL uses PostgreSQL's `$N`; on SQLite sqlx must bind `$2` to the second
    // argument even where it comes first in the text, and reuse a repeated `$N`.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lk.db")).await.unwrap();
    let text: String = sqlx::query_scalar("SELECT $2 || '-' || $1 || '-' || $2")
        .bind("first")
        .bind("second")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(text, "second-first-second");
}

#[tokio::test]
async fn open_creates_the_file_and_its_directory_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/latchkey.db");
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(path.is_file());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the database file is its owner's only");
    }
    store.put_secret(&secret("kept")).await.unwrap();
    assert!(store.insert_meta("salt", b"\x00\x01").await.unwrap());
    store.close().await;
    drop(store);

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.list_secrets().await.unwrap(), vec![secret("kept")]);
    assert_eq!(store.generation().await.unwrap(), 1);
    assert!(!store.insert_meta("salt", b"other").await.unwrap());
}

#[tokio::test]
async fn in_memory_url_keeps_its_data_for_the_life_of_the_store() {
    let store = latchkey_store::connect("sqlite::memory:").await.unwrap();
    store.put_secret(&secret("m")).await.unwrap();
    for _ in 0..3 {
        assert_eq!(store.list_secrets().await.unwrap(), vec![secret("m")]);
    }
    assert_eq!(store.generation().await.unwrap(), 1);
}

#[tokio::test]
async fn an_unusable_path_is_unavailable_at_connect() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let url = format!("sqlite://{}/lk.db", file.display());
    let (op, reason) = crate::connect::connect_error(&url).await;
    assert_eq!(op, "connect");
    assert!(reason.contains("a-file"), "{reason}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.db");
    std::fs::write(&path, vec![0x42; 8192]).unwrap();
    let error = SqliteStore::open(&path).await.unwrap_err();
    assert!(matches!(error, StoreError::Unavailable { .. }), "{error:?}");
}

#[tokio::test]
async fn a_row_with_an_unknown_env_is_corrupt_naming_the_operation() {
    // `events.env` has no CHECK constraint: a hand edit can store what no writer would.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lk.db")).await.unwrap();
    sqlx::query(
        "INSERT INTO events (id, at, kind, connector, env, connection, actor, outcome, detail) \
         VALUES ('e1', 1, 'token.refreshed', 'crm', 'prod', '', 'engine', 'ok', '{}')",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let error = store.list_events(&EventFilter::default()).await.unwrap_err().to_string();
    assert_eq!(error, "stored data cannot be read during list_events: a stored row has unknown env `prod`");
}

#[tokio::test]
async fn a_token_with_an_unknown_state_is_corrupt_not_empty() {
    // `tokens.state` has no CHECK constraint; before, such a row read as `empty`.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("lk.db")).await.unwrap();
    sqlx::query(
        "INSERT INTO tokens (connector, env, connection, state, version, lease_until, epoch, updated_at) \
         VALUES ('crm', 'live', '', 'refreshing', 0, 0, 0, 1)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    let key = latchkey_core::store::TokenKey::app("crm", Env::Live);
    let error = store.get_token(&key).await.unwrap_err().to_string();
    assert_eq!(
        error,
        "stored data cannot be read during get_token: stored token `crm/live/` has unknown token state `refreshing`"
    );
    let error = store.list_tokens().await.unwrap_err().to_string();
    assert!(error.starts_with("stored data cannot be read during list_tokens: "), "{error}");
    let error = store.take_lease(&key, "me", 2, 3).await.unwrap_err().to_string();
    assert!(error.starts_with("stored data cannot be read during take_lease: "), "{error}");
}

/// `Open::Existing` creates nothing: no file where there was none, no schema in an empty
/// file; it opens a store with this version's schema, and says when the schema is older.
#[tokio::test]
async fn opening_an_existing_store_creates_and_migrates_nothing() {
    use latchkey_store::{Open, OpenError};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    let url = format!("sqlite://{}", path.display());
    assert!(matches!(latchkey_store::open(&url, Open::Existing).await, Err(OpenError::NoStore)));
    assert!(!path.exists(), "a file was created");
    std::fs::write(&path, b"").unwrap();
    assert!(matches!(latchkey_store::open(&url, Open::Existing).await, Err(OpenError::NoStore)));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "a schema was written");

    let store = latchkey_store::connect(&url).await.unwrap();
    store.put_secret(&secret("k")).await.unwrap();
    drop(store);
    let store = latchkey_store::open(&url, Open::Existing).await.unwrap();
    assert_eq!(store.list_secrets().await.unwrap().len(), 1);
    drop(store);

    let conn = SqliteStore::open(&path).await.unwrap();
    let latest: i64 =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations").fetch_one(conn.pool()).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET success = false WHERE version = $1")
        .bind(latest)
        .execute(conn.pool())
        .await
        .unwrap();
    conn.close().await;
    match latchkey_store::open(&url, Open::Existing).await {
        Err(OpenError::Behind { applied, latest: l }) => assert_eq!((applied, l), (latest - 1, latest)),
        other => panic!("{:?}", other.map(|_| ())),
    }
    let behind = latchkey_store::open(&url, Open::Existing).await.err().unwrap().to_string();
    assert!(behind.contains("run `latchkey serve` with this version"), "{behind}");
}
