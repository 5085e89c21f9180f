//! The master-key check: a sealed marker in the store proves that the key given at start-up
//! is the key the store was sealed with. A wrong key stops start-up before anything is touched.

use latchkey_vault::{Aad, KeyId, Vault, VaultError};

use crate::store::{Store, StoreError};

pub(crate) const MARKER_KEY: &str = "vault.key_check";
const MARKER: &[u8] = b"latchkey master key check v1";

pub(crate) fn aad() -> Aad {
    Aad::new("meta", MARKER_KEY, "value", "-")
}

#[derive(Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// The store was new: the marker was written with this key.
    Initialized,
    /// The key matches the store.
    Matches,
}

/// Why the master key could not be checked, or is not the store's.
#[derive(Debug)]
pub enum KeyCheckError {
    /// The store did not answer.
    Store(StoreError),
    /// The store was sealed with another key.
    WrongKey { given: KeyId, sealed_with: KeyId },
    /// The marker does not open with the key that sealed it.
    Damaged(VaultError),
}

impl std::fmt::Display for KeyCheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyCheckError::Store(e) => write!(f, "{e}"),
            KeyCheckError::WrongKey { given, sealed_with } => write!(
                f,
                "the master key given (id {given}) is not the key this store was sealed with (id {sealed_with}); \
                 nothing was changed. Give the right key in LATCHKEY_MASTER_KEY or the data directory's \
                 master.key, or point --data-dir/--database-url at the store this key belongs to"
            ),
            KeyCheckError::Damaged(e) => {
                write!(f, "the store's key-check marker is damaged ({e}); nothing was changed")
            }
        }
    }
}

impl std::error::Error for KeyCheckError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KeyCheckError::Store(e) => Some(e),
            KeyCheckError::WrongKey { .. } => None,
            KeyCheckError::Damaged(e) => Some(e),
        }
    }
}

/// Checks (or, on a new store, records) that `vault`'s key is the store's key.
pub async fn check_master_key(store: &dyn Store, vault: &Vault) -> Result<KeyCheck, KeyCheckError> {
    let marker = store.get_meta(MARKER_KEY).await.map_err(KeyCheckError::Store)?;
    let Some(sealed) = marker else {
        let sealed = vault.seal(&aad(), MARKER);
        let inserted = store.insert_meta(MARKER_KEY, &sealed).await.map_err(KeyCheckError::Store)?;
        if inserted {
            return Ok(KeyCheck::Initialized);
        }
        // Another process initialized it first: check against theirs.
        return Box::pin(check_master_key(store, vault)).await;
    };
    match vault.open(&aad(), &sealed) {
        Ok(_) => Ok(KeyCheck::Matches),
        Err(VaultError::UnknownKey(id)) => {
            Err(KeyCheckError::WrongKey { given: vault.active_key_id(), sealed_with: id })
        }
        Err(e) => Err(KeyCheckError::Damaged(e)),
    }
}
