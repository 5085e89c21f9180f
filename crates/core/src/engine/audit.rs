//! The audit log's key (SECURITY S8): 32 random bytes made once per install and sealed in the
//! store's `meta`, like the master-key marker, so every instance HMACs the same value alike.

use latchkey_vault::{Aad, HmacKey, Vault};
use secrecy::{ExposeSecret, SecretSlice};

use crate::store::{Store, StoreError};

pub(crate) const SALT_KEY: &str = "audit.salt";

pub(crate) fn salt_aad() -> Aad {
    Aad::new("meta", SALT_KEY, "value", "-")
}

/// Why the audit log's key is not available.
#[derive(Debug)]
pub enum AuditKeyError {
    /// The store did not answer.
    Store(StoreError),
    /// The key in the store does not open with this master key.
    Sealed(latchkey_vault::VaultError),
    /// Written, yet not there when read again.
    Lost,
}

impl std::fmt::Display for AuditKeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditKeyError::Store(e) => write!(f, "the audit log's key cannot be read from the store: {e}"),
            AuditKeyError::Sealed(e) => write!(
                f,
                "the audit log's key in the store cannot be opened ({e}): start with the master key this store \
                 was sealed with"
            ),
            AuditKeyError::Lost => {
                f.write_str("the audit log's key was written to the store but cannot be read back: check the store")
            }
        }
    }
}

impl std::error::Error for AuditKeyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            AuditKeyError::Store(e) => Some(e),
            AuditKeyError::Sealed(e) => Some(e),
            AuditKeyError::Lost => None,
        }
    }
}

/// The install's audit key, made on first use (another instance may make it first: theirs is
/// used).
pub async fn key(store: &dyn Store, vault: &Vault) -> Result<HmacKey, AuditKeyError> {
    for _ in 0..2 {
        if let Some(sealed) = store.get_meta(SALT_KEY).await.map_err(AuditKeyError::Store)? {
            let salt: SecretSlice<u8> = vault.open(&salt_aad(), &sealed).map_err(AuditKeyError::Sealed)?;
            return Ok(HmacKey::new(salt.expose_secret()));
        }
        let salt = zeroize::Zeroizing::new(latchkey_vault::random::bytes::<32>());
        store.insert_meta(SALT_KEY, &vault.seal(&salt_aad(), &salt[..])).await.map_err(AuditKeyError::Store)?;
    }
    Err(AuditKeyError::Lost)
}

/// `hmac-sha256:<hex>` of `value`: how the audit log records strings that may carry caller data.
pub fn hash(key: &HmacKey, value: &str) -> String {
    format!("hmac-sha256:{}", latchkey_vault::to_hex(&key.sign(value.as_bytes())))
}
