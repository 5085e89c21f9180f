//! `latchkey vault rotate`: every sealed value re-sealed under the vault's active key, with a
//! compare-and-swap per value (a concurrent writer wins, and the next pass picks its value up),
//! until no value sealed by another key is left. Safe to stop at any point and run again:
//! every ciphertext names its key, and the keyring opens both.

use latchkey_vault::{Aad, Vault, VaultError};

use crate::store::{SealedPlace, Store};

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
            super::connect::flow_aad(hash, if kind == "session" { "session" } else { "state" }, *env)
        }
        SealedPlace::SigningKey(kid) => super::identity::key_aad(kid),
        SealedPlace::RefreshSuccessor { hash, env } => super::Engine::successor_aad(hash, *env),
    }
}

/// Re-seals every value not sealed by `vault`'s active key.
pub async fn reseal_all(store: &dyn Store, vault: &Vault) -> Result<ResealReport, String> {
    let mut report = ResealReport::default();
    for pass in 1..=20 {
        report.passes = pass;
        let values = store.sealed_values().await.map_err(|e| e.to_string())?;
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
                Err(VaultError::UnknownKey(id)) => {
                    return Err(format!(
                        "{} is sealed with key {id}, which this keyring lacks: give that key too",
                        a.describe()
                    ));
                }
                Err(e) => return Err(format!("{e}; nothing further was changed")),
            };
            let new = vault.seal(&a, secrecy::ExposeSecret::expose_secret(&plain));
            if store.replace_sealed(&place, &sealed, &new).await.map_err(|e| e.to_string())? {
                report.resealed += 1;
            }
        }
        if stale == 0 {
            return Ok(report);
        }
    }
    Err("values kept changing under the old key for 20 passes: is an instance still running without the new key?"
        .into())
}
