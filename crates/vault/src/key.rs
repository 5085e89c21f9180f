use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretBox, SecretString};

/// The first 8 bytes of SHA-256 over a master key: names the key without revealing it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; KeyId::LEN]);

impl KeyId {
    pub const LEN: usize = 8;

    pub fn to_hex(self) -> String {
        crate::to_hex(&self.0)
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A 256-bit master key. Zeroized on drop; `Debug` shows only its id.
pub struct MasterKey(SecretBox<[u8; 32]>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyParseError {
    #[error("the master key is not valid base64")]
    NotBase64,
    #[error("the master key must be 32 bytes (44 characters of base64), found {0} bytes")]
    WrongLength(usize),
}

impl MasterKey {
    pub fn generate() -> Self {
        Self(SecretBox::new(Box::new(crate::random::bytes::<32>())))
    }

    /// Parses base64 of exactly 32 bytes (surrounding whitespace allowed).
    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        let mut raw = STANDARD.decode(text.trim()).map_err(|_| KeyParseError::NotBase64)?;
        let result = if raw.len() == 32 {
            let mut key = [0u8; 32];
            key.copy_from_slice(&raw);
            Ok(Self(SecretBox::new(Box::new(key))))
        } else {
            Err(KeyParseError::WrongLength(raw.len()))
        };
        zeroize::Zeroize::zeroize(&mut raw);
        result
    }

    /// The base64 text of the key, for writing the key file.
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(STANDARD.encode(self.0.expose_secret()))
    }

    pub fn id(&self) -> KeyId {
        let digest = crate::sha256(self.0.expose_secret());
        let mut id = [0u8; KeyId::LEN];
        id.copy_from_slice(&digest[..KeyId::LEN]);
        KeyId(id)
    }

    pub(crate) fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({}, [REDACTED])", self.id())
    }
}
