//! OAuth tokens: the token set Latchkey holds, the token endpoint client, and error
//! classification (terminal or transient) that drives the lifecycle in `engine::tokens`.

mod endpoint;
pub mod metadata;
pub mod scrub;

pub use endpoint::{
    AnswerError, MAX_ANSWER, MAX_ANSWER_TEXT, TokenError, TokenRequest, TokenRequestBody, TokenResponseShape,
    read_bounded, request_token,
};

use latchkey_vault::{Aad, Vault};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::store::TokenKey;

/// What a token endpoint gave: the secret parts in redacting types, the rest as it came.
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub token_type: Option<String>,
    /// Unix milliseconds; `None` when the provider gave no lifetime.
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
    /// The token response's other fields that are no secret, at any depth (`token::metadata`).
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub obtained_at: i64,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[REDACTED]")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[REDACTED]"))
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl TokenSet {
    /// Whether the token can be used at `now` without refreshing (`skew_ms` before expiry).
    pub fn is_fresh(&self, now: i64, skew_ms: i64) -> bool {
        self.expires_at.is_none_or(|at| now < at.saturating_sub(skew_ms))
    }

    /// `skew_ms`, capped at half this token's lifetime.
    pub fn skew_ms(&self, skew_ms: i64) -> i64 {
        match self.expires_at {
            Some(at) => skew_ms.min(at.saturating_sub(self.obtained_at).max(0) / 2),
            None => skew_ms,
        }
    }

    /// Whether the token still works at all (it may be inside the refresh window).
    pub fn is_valid(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// The sealed, stored form.
#[derive(Serialize, Deserialize)]
struct Stored {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    extra: serde_json::Map<String, serde_json::Value>,
    obtained_at: i64,
}

pub(crate) fn aad(key: &TokenKey) -> Aad {
    Aad::new("token", key.record_id(), "tokens", key.env.as_str())
}

pub fn seal(vault: &Vault, key: &TokenKey, set: &TokenSet) -> Vec<u8> {
    let stored = Stored {
        access_token: set.access_token.expose_secret().to_owned(),
        refresh_token: set.refresh_token.as_ref().map(|r| r.expose_secret().to_owned()),
        token_type: set.token_type.clone(),
        expires_at: set.expires_at,
        scope: set.scope.clone(),
        extra: set.extra.clone(),
        obtained_at: set.obtained_at,
    };
    let mut json = serde_json::to_vec(&stored).expect("a token set serializes");
    let sealed = vault.seal(&aad(key), &json);
    zeroize::Zeroize::zeroize(&mut json);
    drop(stored.access_token);
    sealed
}

pub fn open(vault: &Vault, key: &TokenKey, sealed: &[u8]) -> Result<TokenSet, String> {
    let plain = vault.open(&aad(key), sealed).map_err(|e| e.to_string())?;
    let stored: Stored =
        serde_json::from_slice(plain.expose_secret()).map_err(|_| "the stored token set is not readable".to_owned())?;
    Ok(TokenSet {
        access_token: SecretString::from(stored.access_token),
        refresh_token: stored.refresh_token.map(SecretString::from),
        token_type: stored.token_type,
        expires_at: stored.expires_at,
        scope: stored.scope,
        extra: stored.extra,
        obtained_at: stored.obtained_at,
    })
}

/// Health of a token (or, later, of a per-user connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    /// No token obtained yet.
    Empty,
    Ok,
    Refreshing,
    /// The last refresh failed transiently; the token may still work.
    Degraded,
    /// The provider refused the credential; tokens were erased.
    ReauthorizationRequired,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Empty => "empty",
            TokenState::Ok => "ok",
            TokenState::Refreshing => "refreshing",
            TokenState::Degraded => "degraded",
            TokenState::ReauthorizationRequired => "reauthorization_required",
        }
    }

    pub fn parse(s: &str) -> TokenState {
        match s {
            "ok" => TokenState::Ok,
            "refreshing" => TokenState::Refreshing,
            "degraded" => TokenState::Degraded,
            "reauthorization_required" => TokenState::ReauthorizationRequired,
            _ => TokenState::Empty,
        }
    }
}
