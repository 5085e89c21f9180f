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

/// The per-install key that audit records HMAC their sensitive strings with (SECURITY S8):
/// 32 random bytes, made once and sealed in the store like the marker.
pub(crate) const AUDIT_SALT_KEY: &str = "audit.salt";

pub(crate) fn audit_salt_aad() -> Aad {
    Aad::new("meta", AUDIT_SALT_KEY, "value", "-")
}

/// The audit salt, made on first use (another instance may make it first: theirs is used).
pub async fn audit_salt(store: &dyn Store, vault: &Vault) -> Result<AuditSalt, String> {
    for _ in 0..2 {
        if let Some(sealed) = store.get_meta(AUDIT_SALT_KEY).await.map_err(|e| e.to_string())? {
            let salt =
                vault.open(&audit_salt_aad(), &sealed).map_err(|e| format!("the audit salt cannot be opened: {e}"))?;
            return Ok(zeroize::Zeroizing::new(secrecy::ExposeSecret::expose_secret(&salt).to_vec()));
        }
        let salt = zeroize::Zeroizing::new(latchkey_vault::random::bytes::<32>());
        store
            .insert_meta(AUDIT_SALT_KEY, &vault.seal(&audit_salt_aad(), &salt[..]))
            .await
            .map_err(|e| e.to_string())?;
    }
    Err("the audit salt could not be stored".into())
}

/// The audit log's per-install HMAC key.
pub type AuditSalt = zeroize::Zeroizing<Vec<u8>>;

/// `hmac-sha256:<hex>` of `value` under the audit key: how the audit log records strings that
/// may carry caller data.
pub fn audit_hash(key: &latchkey_vault::HmacKey, value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(12 + 64);
    out.push_str("hmac-sha256:");
    for b in key.sign(value.as_bytes()) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 15)]));
    }
    out
}
