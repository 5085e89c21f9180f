//! The admin console's sealed sessions.

use std::sync::Arc;

use latchkey_vault::{MasterKey, Vault};
use secrecy::{ExposeSecret, SecretString};

use super::{CONFIG, Harness};
use crate::engine::console::ConsoleSession;
use crate::store::memory::MemoryStore;

#[tokio::test(start_paused = true)]
async fn a_session_opens_where_it_was_sealed_and_on_another_instance_only() {
    let h = Harness::new().await;
    let session = ConsoleSession::new(SecretString::from("lk_admin_canary-key"), 1_000);
    let cookie = h.engine.seal_console_session(&session);
    assert!(!cookie.contains("canary"), "the key is sealed, not encoded");
    assert!(cookie.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{cookie}");
    assert!(!format!("{session:?}").contains("canary"));

    let opened = h.engine.open_console_session(&cookie).unwrap();
    assert_eq!(opened.admin_key.expose_secret(), "lk_admin_canary-key");
    assert_eq!(opened.csrf.expose_secret(), session.csrf.expose_secret());
    assert_eq!((opened.signed_in_at, opened.seen_at), (1_000, 1_000));

    // Another instance with the same master key opens it (no shared session table needed).
    let other = Harness::on(CONFIG, MemoryStore::new(), h.vault.clone()).await;
    assert!(other.engine.open_console_session(&cookie).is_some());
    // Another install's does not; nor does a changed cookie, nor garbage.
    let stranger = Harness::on(CONFIG, MemoryStore::new(), Arc::new(Vault::new(&MasterKey::generate()))).await;
    assert!(stranger.engine.open_console_session(&cookie).is_none());
    let mut bytes = cookie.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    assert!(h.engine.open_console_session(&String::from_utf8(bytes).unwrap()).is_none());
    for garbage in ["", "x", "!!!", &"A".repeat(5000)] {
        assert!(h.engine.open_console_session(garbage).is_none(), "{garbage}");
    }
    // Two sessions of one key have different CSRF tokens.
    let again = ConsoleSession::new(SecretString::from("lk_admin_canary-key"), 1_000);
    assert_ne!(again.csrf.expose_secret(), session.csrf.expose_secret());
}

#[tokio::test(start_paused = true)]
async fn an_imports_credentials_open_for_their_session_only_and_not_for_long() {
    use crate::engine::console::IMPORT_CREDENTIALS_MS;
    let h = Harness::new().await;
    let csrf = SecretString::from("csrf-of-the-session");
    let found = vec![
        ("api_key".to_owned(), SecretString::from("CANARY bearer\nwith a newline")),
        ("other_password".to_owned(), SecretString::from("p@ss w0rd")),
    ];
    let sealed = h.engine.seal_import_credentials("key1", &csrf, &found);
    assert!(!sealed.contains("CANARY") && !sealed.contains("api_key"), "sealed, not encoded");
    assert!(sealed.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{sealed}");
    let opened = h.engine.open_import_credentials("key1", &csrf, &sealed).unwrap();
    let opened: Vec<(&str, &str)> = opened.iter().map(|(n, v)| (n.as_str(), v.expose_secret())).collect();
    assert_eq!(opened, [("api_key", "CANARY bearer\nwith a newline"), ("other_password", "p@ss w0rd")]);
    // Another session (another key, or the same key signed in again) does not open them.
    assert!(h.engine.open_import_credentials("key2", &csrf, &sealed).is_none());
    assert!(h.engine.open_import_credentials("key1", &SecretString::from("another"), &sealed).is_none());
    // Nor does a console session cookie pass for them, nor garbage.
    let cookie = h.engine.seal_console_session(&ConsoleSession::new(SecretString::from("k"), 1));
    assert!(h.engine.open_import_credentials("key1", &csrf, &cookie).is_none());
    for garbage in ["", "x", "!!!", &"A".repeat(70_000)] {
        assert!(h.engine.open_import_credentials("key1", &csrf, garbage).is_none());
    }
    // None found seals to an empty list.
    let none = h.engine.seal_import_credentials("key1", &csrf, &[]);
    assert!(h.engine.open_import_credentials("key1", &csrf, &none).unwrap().is_empty());
    // After their time, they are gone.
    h.clock.advance(IMPORT_CREDENTIALS_MS + 1);
    assert!(h.engine.open_import_credentials("key1", &csrf, &sealed).is_none());
}

#[tokio::test(start_paused = true)]
async fn signing_keys_are_listed_newest_first_without_their_keys() {
    let h = Harness::new().await;
    h.clock.advance(10_000);
    let second = h.engine.identity().rotate_signing_key(None, false).await.unwrap();
    let keys = h.engine.identity().signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].kid, second.kid);
    assert!(keys[0].activates_at > keys[0].created_at, "published before it signs");
    assert!(keys[1].retired_at.is_some(), "the old key retires when the new one signs");
}

#[tokio::test(start_paused = true)]
async fn a_connectors_secrets_are_redacted_from_an_answer_shown() {
    let h = Harness::new().await;
    h.engine.admin().put_secret("plain_key", crate::Env::Live, &SecretString::from("k3y/with space")).await.unwrap();
    h.engine.admin().put_secret("plain_key", crate::Env::Dev, &SecretString::from("dev-key-value")).await.unwrap();
    let echoed = r#"{"headers": {"X-Key": "k3y/with space"}, "url": "https://x/?key=k3y%2Fwith%20space", "dev": "dev-key-value"}"#;
    let shown = h.engine.redact_secrets("plain", echoed);
    assert_eq!(shown, r#"{"headers": {"X-Key": "[secret]"}, "url": "https://x/?key=[secret]", "dev": "[secret]"}"#);
    // Another connector's answer is its own business; an unknown connector changes nothing.
    assert_eq!(h.engine.redact_secrets("nope", echoed), echoed);
}
