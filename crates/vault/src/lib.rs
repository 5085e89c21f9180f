//! The vault: sealing and opening secrets with AES-256-GCM under a master key.
//!
//! A master key never encrypts a secret itself. It derives data keys (HKDF-SHA256, RFC 5869,
//! with a random 128-bit term as the info), and each data key seals at most
//! [`DEFAULT_DATA_KEY_SEALS`] values (or what [`Vault::set_data_key_budget`] says) before
//! the vault retires it and draws a new term (SECURITY S2: with random 96-bit nonces, NIST SP
//! 800-38D allows 2^32 encryptions per key). A data key is derived again from the master key
//! and the term named in a ciphertext, so terms need no storage, and every process draws its
//! own: the budget is counted exactly, in memory, with no coordination between instances.
//!
//! Every ciphertext is `LK2 | master key id (8 bytes) | term (16) | nonce (12) | ciphertext |
//! tag`, sealed with associated data that names its record ([`Aad`]), so a ciphertext copied
//! onto another record fails to open. The key id lets a keyring hold several master keys while
//! `latchkey vault rotate` re-encrypts, and lets a wrong key be told apart from a corrupt
//! record. `LK1 | key id | nonce | ciphertext | tag` (sealed directly under the master key,
//! before data keys) still opens; `vault rotate` re-seals it as `LK2`.
//!
//! Architecture invariant: this is the only crate that ever holds raw key bytes.

mod aad;
pub mod identity;
pub mod key;
pub mod random;
pub mod thumbprint;

pub use aad::Aad;
pub use key::{KeyId, MasterKey};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use aws_lc_rs::aead::{AES_256_GCM, Aad as LcAad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use secrecy::SecretSlice;

const MAGIC_V1: &[u8; 3] = b"LK1";
const MAGIC: &[u8; 3] = b"LK2";
const TERM_LEN: usize = 16;
const HEADER_V1_LEN: usize = MAGIC.len() + KeyId::LEN + NONCE_LEN;
const HEADER_LEN: usize = MAGIC.len() + KeyId::LEN + TERM_LEN + NONCE_LEN;
/// Seals per data key unless set otherwise: HashiCorp Vault's `max_operations` default, 90 %
/// of the 2^32 that NIST SP 800-38D allows with random 96-bit nonces.
pub const DEFAULT_DATA_KEY_SEALS: u64 = 3_865_470_566;
/// Derived data keys kept for opening, per master key; more are derived again when needed.
const OPEN_CACHE: usize = 4096;
/// HKDF salt: separates data keys from anything else a master key might ever derive.
const DATA_KEY_SALT: &[u8] = b"latchkey data key v1";

type Term = [u8; TERM_LEN];

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

/// A keyring of master keys; seals with a data key of the active one and opens with
/// whichever made a ciphertext. The ring can change while in use (`vault rotate` while
/// serving).
pub struct Vault {
    ring: RwLock<Ring>,
    /// The data key sealing now: under the active master key, with budget left.
    sealing: RwLock<Option<Arc<DataKey>>>,
    /// Seals per data key.
    budget: AtomicU64,
    /// Data keys this vault drew (the first one included).
    drawn: AtomicU64,
}

struct Ring {
    active: Arc<Sealer>,
    others: Vec<Arc<Sealer>>,
}

/// A master key: its id, its data-key derivation, and (for `LK1`) its AEAD key.
struct Sealer {
    id: KeyId,
    direct: LessSafeKey,
    derive: hkdf::Prk,
    /// Data keys derived for opening, by term.
    opened: Mutex<HashMap<Term, Arc<LessSafeKey>>>,
}

impl Sealer {
    #[expect(clippy::expect_used, reason = "a MasterKey is always 32 bytes, the AES-256-GCM key length")]
    fn new(master: &MasterKey) -> Self {
        let unbound = UnboundKey::new(&AES_256_GCM, master.expose())
            .expect("a MasterKey is always 32 bytes, the AES-256-GCM key length");
        let derive = hkdf::Salt::new(hkdf::HKDF_SHA256, DATA_KEY_SALT).extract(master.expose());
        Self { id: master.id(), direct: LessSafeKey::new(unbound), derive, opened: Mutex::new(HashMap::new()) }
    }

    #[expect(clippy::expect_used, reason = "32 bytes is a valid HKDF-SHA256 output length")]
    fn data_key(&self, term: &Term) -> LessSafeKey {
        let info = [&term[..]];
        let okm = self.derive.expand(&info, &AES_256_GCM).expect("32 bytes is a valid HKDF-SHA256 output length");
        LessSafeKey::new(UnboundKey::from(okm))
    }

    /// The data key of `term`, for opening (cached).
    fn opener(&self, term: &Term) -> Arc<LessSafeKey> {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = opened.get(term) {
            return key.clone();
        }
        if opened.len() >= OPEN_CACHE {
            opened.clear();
        }
        opened.entry(*term).or_insert_with(|| Arc::new(self.data_key(term))).clone()
    }
}

/// A data key that seals: its master key and term, and how many seals it has made.
struct DataKey {
    master: KeyId,
    term: Term,
    key: LessSafeKey,
    used: AtomicU64,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault").field("active_key", &self.active_key_id()).finish_non_exhaustive()
    }
}

impl Vault {
    pub fn new(active: &MasterKey) -> Self {
        let ring = Ring { active: Arc::new(Sealer::new(active)), others: Vec::new() };
        Self {
            ring: RwLock::new(ring),
            sealing: RwLock::new(None),
            budget: AtomicU64::new(DEFAULT_DATA_KEY_SEALS),
            drawn: AtomicU64::new(0),
        }
    }

    /// Retires each data key after `seals` seals (at least 1) instead of
    /// [`DEFAULT_DATA_KEY_SEALS`].
    pub fn set_data_key_budget(&self, seals: u64) {
        self.budget.store(seals.max(1), Ordering::Relaxed);
    }

    /// How many data keys this vault has drawn so far (each one after the first retired the
    /// one before, or followed a new master key).
    pub fn data_keys_drawn(&self) -> u64 {
        self.drawn.load(Ordering::Relaxed)
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Ring> {
        self.ring.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The data key for one more seal: the current one while it has budget left and belongs
    /// to the active master key, else a new one. Counting is exact: a key never seals more
    /// than the budget, however many threads seal at once.
    fn data_key_for_seal(&self) -> Arc<DataKey> {
        loop {
            let active = self.ring().active.clone();
            let current = self.sealing.read().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(key) = &current
                && key.master == active.id
                && key.used.fetch_add(1, Ordering::Relaxed) < self.budget.load(Ordering::Relaxed)
            {
                return key.clone();
            }
            let mut sealing = self.sealing.write().unwrap_or_else(|e| e.into_inner());
            let unchanged = match (&*sealing, &current) {
                (Some(now), Some(seen)) => Arc::ptr_eq(now, seen),
                (None, None) => true,
                _ => false,
            };
            if unchanged {
                let term = random::bytes::<TERM_LEN>();
                let key = active.data_key(&term);
                *sealing = Some(Arc::new(DataKey { master: active.id, term, key, used: AtomicU64::new(0) }));
                self.drawn.fetch_add(1, Ordering::Relaxed);
            }
        }
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
            ring.others.push(Arc::new(Sealer::new(old)));
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
            None => Arc::new(Sealer::new(key)),
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
    #[expect(clippy::expect_used, reason = "AES-256-GCM sealing fails only for inputs over 64 GiB")]
    pub fn seal(&self, aad: &Aad, plaintext: &[u8]) -> Vec<u8> {
        let data_key = self.data_key_for_seal();
        let nonce_bytes = random::bytes::<NONCE_LEN>();
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&data_key.master.0);
        out.extend_from_slice(&data_key.term);
        out.extend_from_slice(&nonce_bytes);
        let mut body = plaintext.to_vec();
        data_key
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
        let after_id = MAGIC.len() + KeyId::LEN;
        if sealed.starts_with(MAGIC) {
            let term: Term = sealed[after_id..after_id + TERM_LEN].try_into().map_err(|_| VaultError::Malformed)?;
            let nonce = &sealed[after_id + TERM_LEN..HEADER_LEN];
            return open_with(&sealer.opener(&term), aad, nonce, &sealed[HEADER_LEN..]);
        }
        // `LK1`: sealed directly under the master key.
        open_with(&sealer.direct, aad, &sealed[after_id..HEADER_V1_LEN], &sealed[HEADER_V1_LEN..])
    }

    /// Whether `sealed` was made by a data key of the active master key (`vault rotate` skips
    /// those and re-seals everything else, `LK1` values included).
    pub fn is_current(&self, sealed: &[u8]) -> bool {
        sealed.starts_with(MAGIC) && key_id_of(sealed).is_ok_and(|id| id == self.active_key_id())
    }
}

fn open_with(key: &LessSafeKey, aad: &Aad, nonce: &[u8], body: &[u8]) -> Result<SecretSlice<u8>, VaultError> {
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| VaultError::Malformed)?;
    let mut body = body.to_vec();
    let plain_len = key
        .open_in_place(Nonce::assume_unique_for_key(nonce), LcAad::from(aad.bytes()), &mut body)
        .map_err(|_| VaultError::Integrity(aad.describe()))?
        .len();
    body.truncate(plain_len);
    Ok(SecretSlice::from(body))
}

/// The id of the master key that sealed a ciphertext.
pub fn key_id_of(sealed: &[u8]) -> Result<KeyId, VaultError> {
    let header = if sealed.starts_with(MAGIC) {
        HEADER_LEN
    } else if sealed.starts_with(MAGIC_V1) {
        HEADER_V1_LEN
    } else {
        return Err(VaultError::Malformed);
    };
    if sealed.len() < header + AES_256_GCM.tag_len() {
        return Err(VaultError::Malformed);
    }
    let mut id = [0u8; KeyId::LEN];
    id.copy_from_slice(&sealed[MAGIC.len()..MAGIC.len() + KeyId::LEN]);
    Ok(KeyId(id))
}

/// SHA-256 of `data`, for hashes of admin and app keys (which are high-entropy random strings,
/// so a fast hash is the right one).
#[expect(clippy::expect_used, reason = "SHA-256 digests are 32 bytes")]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    d.as_ref().try_into().expect("SHA-256 digests are 32 bytes")
}

/// SHA-256 over a sequence of parts, each length-prefixed (so `["ab", "c"]` and `["a", "bc"]`
/// differ), fed one at a time: a fingerprint of settings and secrets is computed without the
/// secrets ever being copied into one buffer or formatted into a `String`.
pub struct Fingerprint(aws_lc_rs::digest::Context);

impl Default for Fingerprint {
    fn default() -> Self {
        Fingerprint(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256))
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint([REDACTED])")
    }
}

impl Fingerprint {
    /// Adds one part.
    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_be_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds an optional part: absent and empty differ.
    pub fn opt(&mut self, bytes: Option<&[u8]>) -> &mut Self {
        match bytes {
            Some(b) => self.part(b"1").part(b),
            None => self.part(b"0"),
        }
    }

    #[expect(clippy::expect_used, reason = "SHA-256 digests are 32 bytes")]
    pub fn finish(self) -> [u8; 32] {
        self.0.finish().as_ref().try_into().expect("SHA-256 digests are 32 bytes")
    }
}

/// Compares two byte strings in constant time (for their common length).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests;

/// Lower-case hex of `bytes` (key ids, webhook signatures, audit-log HMACs, record names of
/// hashed tokens).
pub fn to_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// HMAC-SHA256 of `data` under `key` (webhook signatures).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    HmacKey::new(key).sign(data)
}

/// HMAC-SHA1 of `data` under `key`: OAuth 1.0a's `HMAC-SHA1` signature method (RFC 5849
/// §3.4.2), which providers still ask for; Latchkey's own MACs are HMAC-SHA256.
#[expect(clippy::expect_used, reason = "HMAC-SHA1 tags are 20 bytes")]
pub fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    aws_lc_rs::hmac::sign(&key, data).as_ref().try_into().expect("HMAC-SHA1 tags are 20 bytes")
}

/// An HMAC-SHA256 key prepared once, for many tags under the same key (the audit log).
pub struct HmacKey(aws_lc_rs::hmac::Key);

impl HmacKey {
    pub fn new(key: &[u8]) -> Self {
        Self(aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key))
    }

    #[expect(clippy::expect_used, reason = "HMAC-SHA256 tags are 32 bytes")]
    pub fn sign(&self, data: &[u8]) -> [u8; 32] {
        aws_lc_rs::hmac::sign(&self.0, data).as_ref().try_into().expect("HMAC-SHA256 tags are 32 bytes")
    }
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey([REDACTED])")
    }
}
