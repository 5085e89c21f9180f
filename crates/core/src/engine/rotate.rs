//! `latchkey vault rotate`: every sealed value re-sealed under the vault's active key, with a
//! compare-and-swap per value (a concurrent writer wins, and the next pass picks its value up),
//! until no value sealed by another key is left. Safe to stop at any point and run again:
//! every ciphertext names its key, and the keyring opens both.

use latchkey_vault::{Aad, KeyId, Vault, VaultError};

use crate::store::{SealedPlace, Store, StoreError};

/// What a rotation did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ResealReport {
    pub resealed: usize,
    pub already_current: usize,
    pub passes: usize,
}

fn aad(place: &SealedPlace) -> Aad {
    match place {
        SealedPlace::Meta(key) if key == super::audit::SALT_KEY => super::audit::salt_aad(),
        SealedPlace::Meta(_) => super::keycheck::aad(),
        SealedPlace::Secret(name, env) => crate::secrets::secret_aad(name, *env),
        SealedPlace::Token(key) => crate::token::aad(key),
        SealedPlace::Flow { hash, kind, env } => {
            super::connections::flow_aad(hash, if kind == "session" { "session" } else { "state" }, *env)
        }
        SealedPlace::SigningKey(kid) => super::identity::key_aad(kid),
        SealedPlace::RefreshSuccessor { hash, env } => super::identity::successor_aad(hash, *env),
        SealedPlace::IdempotencyAnswer { scope, key } => super::idempotency::aad(scope, key),
    }
}

/// Why a rotation stopped (what it re-sealed before stays re-sealed; running it again goes on).
#[derive(Debug)]
pub enum ResealError {
    /// The store did not answer.
    Store(StoreError),
    /// A value is sealed with a key the keyring lacks.
    MissingKey { value: String, key: KeyId },
    /// A value does not open (altered, or of another record).
    Open(VaultError),
    /// Values kept being sealed with the old key.
    Unsettled,
}

impl std::fmt::Display for ResealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResealError::Store(e) => write!(f, "{e}"),
            ResealError::MissingKey { value, key } => {
                write!(f, "{value} is sealed with key {key}, which this keyring lacks: give that key too")
            }
            ResealError::Open(e) => write!(f, "{e}; nothing further was changed"),
            ResealError::Unsettled => f.write_str(
                "values kept changing under the old key for 20 passes: is an instance still running without the new key?",
            ),
        }
    }
}

impl std::error::Error for ResealError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ResealError::Store(e) => Some(e),
            ResealError::Open(e) => Some(e),
            ResealError::MissingKey { .. } | ResealError::Unsettled => None,
        }
    }
}

/// Re-seals every value not sealed by `vault`'s active key.
pub async fn reseal_all(store: &dyn Store, vault: &Vault) -> Result<ResealReport, ResealError> {
    let mut report = ResealReport::default();
    for pass in 1..=20 {
        report.passes = pass;
        let values = store.sealed_values().await.map_err(ResealError::Store)?;
        let mut stale = 0;
        for (place, sealed) in values {
            if vault.is_current(&sealed) {
                if pass == 1 {
                    report.already_current += 1;
                }
                continue;
            }
            stale += 1;
            let a = aad(&place);
            let plain = match vault.open(&a, &sealed) {
                Ok(p) => p,
                Err(VaultError::UnknownKey(key)) => {
                    return Err(ResealError::MissingKey { value: a.describe(), key });
                }
                Err(e) => return Err(ResealError::Open(e)),
            };
            let new = vault.seal(&a, secrecy::ExposeSecret::expose_secret(&plain));
            if store.replace_sealed(&place, &sealed, &new).await.map_err(ResealError::Store)? {
                report.resealed += 1;
            }
        }
        if stale == 0 {
            return Ok(report);
        }
    }
    Err(ResealError::Unsettled)
}
