//! `connect`'s choice of backend and its errors, which must never show a password.

use latchkey_core::store::StoreError;

/// The `Unavailable` that `connect(url)` must fail with, as (op, reason).
pub(crate) async fn connect_error(url: &str) -> (&'static str, String) {
    match latchkey_store::connect(url).await {
        Ok(_) => panic!("connect({url}) succeeded"),
        Err(StoreError::Unavailable { op, reason }) => (op, reason),
        Err(other) => panic!("connect({url}): {other:?}"),
    }
}

#[tokio::test]
async fn an_unknown_scheme_is_named_without_the_rest() {
    let (op, reason) = connect_error("mysql://root:hunter2@db/latchkey").await;
    assert_eq!(op, "connect");
    assert!(reason.contains("`mysql:`"), "{reason}");
    assert!(reason.contains("sqlite://") && reason.contains("postgres://"), "{reason}");
    assert!(!reason.contains("hunter2"), "{reason}");
}

#[tokio::test]
async fn a_refused_postgres_connection_names_the_server_not_the_user() {
    // Port 1 on loopback refuses at once.
    let (op, reason) = connect_error("postgres://alice:hunter2@127.0.0.1:1/latchkey").await;
    assert_eq!(op, "connect");
    assert!(reason.contains("postgres://127.0.0.1:1/latchkey"), "{reason}");
    assert!(!reason.contains("hunter2") && !reason.contains("alice"), "{reason}");
}

#[tokio::test]
async fn a_malformed_postgres_url_does_not_echo_its_password() {
    let (op, reason) = connect_error("postgresql://alice:hunter2@127.0.0.1:notaport/db").await;
    assert_eq!(op, "connect");
    assert!(!reason.contains("hunter2"), "{reason}");
}
