//! The master-key check: a sealed marker in the store proves that the key given at start-up
//! is the key the store was sealed with. A wrong key stops start-up before anything is touched.

use latchkey_vault::{Aad, Vault, VaultError};

use crate::store::Store;

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

/// Checks (or, on a new store, records) that `vault`'s key is the store's key.
pub async fn check_master_key(store: &dyn Store, vault: &Vault) -> Result<KeyCheck, String> {
    let marker = store.get_meta(MARKER_KEY).await.map_err(|e| e.to_string())?;
    let Some(sealed) = marker else {
        let sealed = vault.seal(&aad(), MARKER);
        let inserted = store.insert_meta(MARKER_KEY, &sealed).await.map_err(|e| e.to_string())?;
        if inserted {
            return Ok(KeyCheck::Initialized);
        }
        // Another process initialized it first: check against theirs.
        return Box::pin(check_master_key(store, vault)).await;
    };
    match vault.open(&aad(), &sealed) {
        Ok(_) => Ok(KeyCheck::Matches),
        Err(VaultError::UnknownKey(id)) => Err(format!(
            "the master key given (id {}) is not the key this store was sealed with (id {id}); \
             nothing was changed. Give the right key in LATCHKEY_MASTER_KEY or the data directory's \
             master.key, or point --data-dir/--database-url at the store this key belongs to",
            vault.active_key_id()
        )),
        Err(e) => Err(format!("the store's key-check marker is damaged ({e}); nothing was changed")),
    }
}
