//! The vault: sealing and opening secrets with AES-256-GCM under a master key.
//!
//! Every ciphertext is `LK1 | key id (8 bytes) | nonce (12 bytes) | ciphertext | tag`, and is
//! sealed with associated data that names its record ([`Aad`]), so a ciphertext copied onto
//! another record fails to open. The key id lets a keyring hold several master keys while
//! `latchkey vault rotate` re-encrypts, and lets a wrong key be told apart from a corrupt record.
//!
//! Architecture invariant: this is the only crate that ever holds raw key bytes.

mod aad;
pub mod identity;
pub mod key;
pub mod random;

pub use aad::Aad;
pub use key::{KeyId, MasterKey};

use aws_lc_rs::aead::{AES_256_GCM, Aad as LcAad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use secrecy::SecretSlice;

const MAGIC: &[u8; 3] = b"LK1";
const HEADER_LEN: usize = MAGIC.len() + KeyId::LEN + NONCE_LEN;

/// Why a ciphertext could not be opened. Never carries key or plaintext bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("the ciphertext is not in Latchkey's format (truncated or not sealed by Latchkey)")]
    Malformed,
    #[error("the ciphertext was sealed with master key {0}, which this vault does not hold")]
    UnknownKey(KeyId),
    #[error("integrity check failed for {0}: the ciphertext was altered, or belongs to another record")]
    Integrity(String),
}

/// A keyring of master keys; seals with the active one and opens with whichever made a
/// ciphertext. The ring can change while in use (`vault rotate` while serving).
pub struct Vault {
    ring: std::sync::RwLock<Ring>,
}

struct Ring {
    active: std::sync::Arc<Sealer>,
    others: Vec<std::sync::Arc<Sealer>>,
}

struct Sealer {
    id: KeyId,
    key: LessSafeKey,
}

impl Sealer {
    fn new(master: &MasterKey) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, master.expose())
            .expect("a MasterKey is always 32 bytes, the AES-256-GCM key length");
        Self { id: master.id(), key: LessSafeKey::new(unbound) }
    }
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("active_key", &self.active_key_id()).finish_non_exhaustive()
    }
}

impl Vault {
    pub fn new(active: &MasterKey) -> Self {
        let ring = Ring { active: std::sync::Arc::new(Sealer::new(active)), others: Vec::new() };
        Self { ring: std::sync::RwLock::new(ring) }
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a key that may still open older ciphertexts (during `vault rotate`).
    pub fn with_old_key(self, old: &MasterKey) -> Self {
        self.add_old_key(old);
        self
    }

    /// Adds a key that opens ciphertexts but does not seal.
    pub fn add_old_key(&self, old: &MasterKey) {
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        if old.id() != ring.active.id && !ring.others.iter().any(|s| s.id == old.id()) {
            ring.others.push(std::sync::Arc::new(Sealer::new(old)));
        }
    }

    /// Makes `key` the sealing key; the previous one keeps opening what it sealed.
    pub fn promote(&self, key: &MasterKey) {
        let mut ring = self.ring.write().unwrap_or_else(|e| e.into_inner());
        if ring.active.id == key.id() {
            return;
        }
        let new = match ring.others.iter().position(|s| s.id == key.id()) {
            Some(i) => ring.others.remove(i),
            None => std::sync::Arc::new(Sealer::new(key)),
        };
        let old = std::mem::replace(&mut ring.active, new);
        ring.others.push(old);
    }

    /// Whether the ring holds the key with this id.
    pub fn holds(&self, id: KeyId) -> bool {
        let ring = self.ring();
        ring.active.id == id || ring.others.iter().any(|s| s.id == id)
    }

    pub fn active_key_id(&self) -> KeyId {
        self.ring().active.id
    }

    /// Seals `plaintext` for the record named by `aad`.
    pub fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Vec<u8> {
        let active = self.ring().active.clone();
        let nonce_bytes = random::bytes::<NONCE_LEN>();
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&active.id.0);
        out.extend_from_slice(&nonce_bytes);
        let mut body = plaintext.to_vec();
        active
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce_bytes), LcAad::from(aad.bytes()), &mut body)
            .expect("AES-256-GCM sealing fails only for inputs over 64 GiB");
        out.extend_from_slice(&body);
        zeroize::Zeroize::zeroize(&mut body);
        out
    }

    /// Opens a ciphertext sealed for the record named by `aad`.
    pub fn open(&self, aad: &Aad, sealed: &[u8]) -> Result<SecretSlice<u8>, VaultError> {
        let id = key_id_of(sealed)?;
        let sealer = {
            let ring = self.ring();
            let found = std::iter::once(&ring.active).chain(&ring.others).find(|s| s.id == id).cloned();
            found.ok_or(VaultError::UnknownKey(id))?
        };
        let nonce: [u8; NONCE_LEN] =
            sealed[MAGIC.len() + KeyId::LEN..HEADER_LEN].try_into().map_err(|_| VaultError::Malformed)?;
        let mut body = sealed[HEADER_LEN..].to_vec();
        let plain_len = sealer
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), LcAad::from(aad.bytes()), &mut body)
            .map_err(|_| VaultError::Integrity(aad.describe()))?
            .len();
        body.truncate(plain_len);
        Ok(SecretSlice::from(body))
    }

    /// Whether `sealed` was made by the active key (used by `vault rotate` to skip done records).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        key_id_of(sealed).is_ok_and(|id| id == self.active_key_id())
    }
}

/// The id of the key that sealed a ciphertext.
pub fn key_id_of(sealed: &[u8]) -> Result<KeyId, VaultError> {
    if sealed.len() < HEADER_LEN + AES_256_GCM.tag_len() || &sealed[..MAGIC.len()] != MAGIC {
        return Err(VaultError::Malformed);
    }
    let mut id = [0u8; KeyId::LEN];
    id.copy_from_slice(&sealed[MAGIC.len()..MAGIC.len() + KeyId::LEN]);
    Ok(KeyId(id))
}

/// SHA-256 of `data`, for hashes of admin and app keys (which are high-entropy random strings,
/// so a fast hash is the right one).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().try_into().expect("SHA-256 digests are 32 bytes")
}

/// Compares two byte strings in constant time (for their common length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests;

/// HMAC-SHA256 of `data` under `key` (webhook signatures).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    HmacKey::new(key).sign(data)
}

/// An HMAC-SHA256 key prepared once, for many tags under the same key (the audit log).
pub struct HmacKey(aws_lc_rs::hmac::Key);

impl HmacKey {
    pub fn new(key: &[u8]) -> Self {
        Self(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key))
    }

    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        aws_lc_rs::hmac::sign(&self.0, data).as_ref().try_into().expect("HMAC-SHA256 tags are 32 bytes")
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey([REDACTED])")
    }
}
