//! The audit log's key (SECURITY S8): 32 random bytes made once per install and sealed in the
//! store's `meta`, like the master-key marker, so every instance HMACs the same value alike.

use latchkey_vault::{Aad, HmacKey, Vault};
use secrecy::{ExposeSecret, SecretSlice};

use crate::store::Store;

pub(crate) const SALT_KEY: &str = "audit.salt";

pub(crate) fn salt_aad() -> Aad {
    Aad::new("meta", SALT_KEY, "value", "-")
}

/// The install's audit key, made on first use (another instance may make it first: theirs is
/// used).
pub async fn key(store: &dyn Store, vault: &Vault) -> Result<HmacKey, String> {
    let unavailable = |e: crate::store::StoreError| format!("the audit log's key cannot be read from the store: {e}");
    for _ in 0..2 {
        if let Some(sealed) = store.get_meta(SALT_KEY).await.map_err(unavailable)? {
            let salt: SecretSlice<u8> = vault.open(&salt_aad(), &sealed).map_err(|e| {
                format!(
                    "the audit log's key in the store cannot be opened ({e}): start with the master key this store \
                     was sealed with"
                )
            })?;
            return Ok(HmacKey::new(salt.expose_secret()));
        }
        let salt = zeroize::Zeroizing::new(latchkey_vault::random::bytes::<32>());
        store.insert_meta(SALT_KEY, &vault.seal(&salt_aad(), &salt[..])).await.map_err(unavailable)?;
    }
    Err("the audit log's key was written to the store but cannot be read back: check the store".into())
}

/// `hmac-sha256:<hex>` of `value`: how the audit log records strings that may carry caller data.
pub fn hash(key: &HmacKey, value: &str) -> String {
    format!("hmac-sha256:{}", latchkey_vault::to_hex(&key.sign(value.as_bytes())))
}
