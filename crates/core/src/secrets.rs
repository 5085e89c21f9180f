//! Secret values, decrypted once and held in memory in redacting, zeroizing types.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use latchkey_vault::{Aad, Vault};
use secrecy::{ExposeSecret, SecretString};

use crate::config::SecretRef;
use crate::store::SecretRow;
use crate::{CallError, Env, ErrorCode};

/// The associated data that binds a secret's ciphertext to its name and environment.
pub fn secret_aad(name: &str, env: Env) -> Aad {
    Aad::new("secret", name, "value", env.as_str())
}

/// Seals a secret value for storage.
pub fn seal_secret(vault: &Vault, name: &str, env: Env, value: &SecretString) -> Vec<u8> {
    vault.seal(&secret_aad(name, env), value.expose_secret().as_bytes())
}

/// Secret names: letters, digits, `_`, `-` and `.`, at most 128; `invalid_params` otherwise.
pub fn check_secret_name(name: &str) -> Result<(), CallError> {
    if !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        Ok(())
    } else {
        Err(CallError::invalid_params(format!(
            "`{}` is not a valid secret name: use letters, digits, `_`, `-` and `.` (at most 128)",
            name.chars().take(64).collect::<String>()
        )))
    }
}

#[derive(Clone)]
enum Slot {
    Value(SecretString),
    /// The ciphertext failed to open (tampered, moved, or sealed by an unknown key).
    Broken(String),
}

/// Every secret value known to this process: vault secrets (per environment) and the
/// environment variables named by `{ env = "VAR" }` references.
#[derive(Default, Clone)]
pub struct SecretSet {
    vault: HashMap<(String, Env), Slot>,
    env_vars: Arc<BTreeMap<String, SecretString>>,
}

impl SecretSet {
    /// Opens every stored secret. A value that fails its integrity check is kept as broken:
    /// calls that need it fail with a clear error; nothing falls back to another value.
    pub fn open(rows: &[SecretRow], vault: &Vault, env_vars: Arc<BTreeMap<String, SecretString>>) -> Self {
        let mut set = Self { vault: HashMap::with_capacity(rows.len()), env_vars };
        set.open_rows(rows, vault);
        set
    }

    /// Opens `rows` (written by another writer) over what is held: each replaces its name and
    /// environment's value, broken or not.
    pub fn open_rows(&mut self, rows: &[SecretRow], vault: &Vault) {
        for row in rows {
            let slot = match vault.open(&secret_aad(&row.name, row.env), &row.sealed) {
                Ok(bytes) => match String::from_utf8(bytes.expose_secret().to_vec()) {
                    Ok(s) => Slot::Value(SecretString::from(s)),
                    Err(e) => {
                        let mut raw = e.into_bytes();
                        zeroize::Zeroize::zeroize(&mut raw);
                        Slot::Broken("its value is not UTF-8 text".into())
                    }
                },
                Err(e) => {
                    tracing::error!(secret = %row.name, env = %row.env, error = %e, "secret failed to decrypt");
                    Slot::Broken(e.to_string())
                }
            };
            self.vault.insert((row.name.clone(), row.env), slot);
        }
    }

    /// The environment variables `{ env = "VAR" }` references resolve to.
    pub fn env_vars(&self) -> &Arc<BTreeMap<String, SecretString>> {
        &self.env_vars
    }

    /// The same vault secrets with `env_vars` as the environment variables (a configuration
    /// reload: its references may name other variables).
    #[must_use]
    pub fn with_env_vars(&self, env_vars: Arc<BTreeMap<String, SecretString>>) -> Self {
        Self { vault: self.vault.clone(), env_vars }
    }

    /// Records a value just written to the store (instead of opening every row again).
    pub fn set(&mut self, name: &str, env: Env, value: SecretString) {
        self.vault.insert((name.to_owned(), env), Slot::Value(value));
    }

    /// Forgets a secret just deleted from the store, in every environment.
    pub fn remove(&mut self, name: &str) {
        for env in Env::ALL {
            self.vault.remove(&(name.to_owned(), env));
        }
    }

    /// The environments that have a value (or a broken one) for `name`.
    pub fn environments(&self, name: &str) -> Vec<Env> {
        Env::ALL.into_iter().filter(|env| self.vault.contains_key(&(name.to_owned(), *env))).collect()
    }

    /// The value of `r` in `env`. In dev, a secret without a dev value uses its live value.
    pub fn resolve(&self, r: &SecretRef, env: Env) -> Result<&SecretString, CallError> {
        match r {
            SecretRef::Env(var) => self.env_vars.get(var).ok_or_else(|| {
                CallError::new(
                    ErrorCode::SecretMissing,
                    format!("environment variable `{var}` is not set in Latchkey's environment: set it and restart"),
                )
            }),
            SecretRef::Vault(name) => {
                let slot = self
                    .vault
                    .get(&(name.clone(), env))
                    .or_else(|| (env == Env::Dev).then(|| self.vault.get(&(name.clone(), Env::Live))).flatten());
                match slot {
                    Some(Slot::Value(v)) => Ok(v),
                    Some(Slot::Broken(why)) => Err(CallError::internal(format!(
                        "secret `{name}` cannot be used: {why}; set it again with `latchkey secret set {name}`"
                    ))),
                    None => Err(CallError::new(
                        ErrorCode::SecretMissing,
                        match env {
                            Env::Live => format!(
                                "secret `{name}` has no live value: run `latchkey secret set {name}` or PUT /v1/admin/secrets/{name}"
                            ),
                            Env::Dev => format!(
                                "secret `{name}` has neither a dev nor a live value: run `latchkey secret set {name} --env dev` \
                                 (or without `--env` for the live value, which dev falls back to)"
                            ),
                        },
                    )),
                }
            }
        }
    }
}
