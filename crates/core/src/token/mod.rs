//! OAuth tokens: the token set Latchkey holds (sealed as one document), the token endpoint
//! client, and why a request failed, by kind, which drives the lifecycle in `engine::tokens`.
//!
//! A request goes through three steps, two of them pure: `endpoint::build` makes the exact
//! `http::Request` from a [`TokenRequest`], `endpoint::send` is the only one with a network,
//! and `answer::parse` reads the status, headers and body into a [`TokenSet`] or a
//! [`TokenError`] ([`TokenErrorKind`]: refused, unsendable, failed, unreachable, lost).

mod answer;
mod endpoint;
mod error;
pub mod metadata;
pub mod scrub;

pub use answer::{Answer, AnswerError, MAX_ANSWER, MAX_ANSWER_TEXT, MAX_LIFETIME_S, parse};
pub use endpoint::{
    AnswerFormat, TokenRequest, TokenRequestBody, TokenResponseShape, WireBody, build, read_bounded, request_token,
    send,
};
pub(crate) use endpoint::{basic_authorization, execute, post};
pub use error::{TokenError, TokenErrorKind};

use latchkey_vault::{Aad, Vault, VaultError};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use crate::secret::{AccessToken, RefreshToken, TokenSecret};
use crate::store::TokenKey;

/// What a token endpoint gave: the secret parts in redacting types, the rest as it came.
#[derive(Clone)]
pub struct TokenSet {
    pub access_token: AccessToken,
    pub refresh_token: Option<RefreshToken>,
    /// The secret that signs beside the token (OAuth 1.0a's token secret, AWS temporary
    /// credentials' secret key); `None` for OAuth 2 tokens.
    pub token_secret: Option<TokenSecret>,
    pub token_type: Option<String>,
    /// Unix milliseconds; `None` when the provider gave no lifetime.
    pub expires_at: Option<i64>,
    pub scope: Option<String>,
    /// The token response's other fields that are no secret, at any depth (`token::metadata`).
    pub extra: serde_json::Map<String, serde_json::Value>,
    pub obtained_at: i64,
    /// The stamp of the grant it was obtained under ([`crate::auth::TokenSource::stamp`]);
    /// `None` when unknown (stored before stamps, or a per-user connection's).
    pub grant: Option<[u8; 32]>,
}

impl std::fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSet")
            .field("access_token", &"[REDACTED]")
            .field("refresh_token", &self.refresh_token.as_ref().map(|_| "[REDACTED]"))
            .field("token_secret", &self.token_secret.as_ref().map(|_| "[REDACTED]"))
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_secret: Option<String>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_at: Option<i64>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    extra: serde_json::Map<String, serde_json::Value>,
    obtained_at: i64,
    /// [`TokenSet::grant`], base64url.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    grant: Option<String>,
}

pub(crate) fn aad(key: &TokenKey) -> Aad {
    Aad::new("token", key.record_id(), "tokens", key.env.as_str())
}

#[expect(clippy::expect_used, reason = "a token set serializes")]
pub fn seal(vault: &Vault, key: &TokenKey, set: &TokenSet) -> Vec<u8> {
    let stored = Stored {
        access_token: set.access_token.expose_secret().to_owned(),
        refresh_token: set.refresh_token.as_ref().map(|r| r.expose_secret().to_owned()),
        token_secret: set.token_secret.as_ref().map(|s| s.expose_secret().to_owned()),
        token_type: set.token_type.clone(),
        expires_at: set.expires_at,
        scope: set.scope.clone(),
        extra: set.extra.clone(),
        obtained_at: set.obtained_at,
        grant: set.grant.map(|g| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, g)),
    };
    let mut json = serde_json::to_vec(&stored).expect("a token set serializes");
    let sealed = vault.seal(&aad(key), &json);
    zeroize::Zeroize::zeroize(&mut json);
    drop(stored.access_token);
    sealed
}

/// Why a stored token set could not be opened. Never carries a byte of it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The vault refused the ciphertext (another key, altered, or another record's).
    #[error(transparent)]
    Sealed(#[from] VaultError),
    /// It opened, but is not a token set.
    #[error("the stored token set is not readable")]
    Unreadable,
}

pub fn open(vault: &Vault, key: &TokenKey, sealed: &[u8]) -> Result<TokenSet, OpenError> {
    let plain = vault.open(&aad(key), sealed)?;
    let stored: Stored = serde_json::from_slice(plain.expose_secret()).map_err(|_| OpenError::Unreadable)?;
    let grant = match &stored.grant {
        None => None,
        Some(text) => Some(
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, text)
                .ok()
                .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
                .ok_or(OpenError::Unreadable)?,
        ),
    };
    Ok(TokenSet {
        access_token: AccessToken::from(stored.access_token),
        refresh_token: stored.refresh_token.map(RefreshToken::from),
        token_secret: stored.token_secret.map(TokenSecret::from),
        token_type: stored.token_type,
        expires_at: stored.expires_at,
        scope: stored.scope,
        extra: stored.extra,
        obtained_at: stored.obtained_at,
        grant,
    })
}

/// A token's health as stored in the `tokens` row (`state` column). The text of each variant
/// ([`TokenState::as_str`]) is what the store holds, so it never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenState {
    /// No token obtained yet (the row a first lease creates).
    #[default]
    Empty,
    Ok,
    /// The last refresh failed transiently; the token may still work.
    Degraded,
    /// The provider refused the credential; tokens were erased.
    ReauthorizationRequired,
}

/// Stored text that names no [`TokenState`] (corruption or a hand edit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown token state `{0}`")]
pub struct UnknownTokenState(pub String);

impl TokenState {
    pub const ALL: [TokenState; 4] =
        [TokenState::Empty, TokenState::Ok, TokenState::Degraded, TokenState::ReauthorizationRequired];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Empty => "empty",
            TokenState::Ok => "ok",
            TokenState::Degraded => "degraded",
            TokenState::ReauthorizationRequired => "reauthorization_required",
        }
    }

    /// The state stored as `s`; any other text is an error, never a made-up state.
    pub fn parse(s: &str) -> Result<TokenState, UnknownTokenState> {
        TokenState::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownTokenState(s.to_owned()))
    }
}

/// A token's health as the API shows it (`state` of `/v1/admin/tokens`, `status` of a
/// connection): the stored state, unless the refresh lease says more. Never stored; derived by
/// `engine::tokens::shown_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShownState {
    /// A refresh lease is running.
    Refreshing,
    /// A lease ran out without being given back: the refresh's process stopped, and whether
    /// the provider rotated the refresh token is unknown (SECURITY S24).
    RefreshOutcomeUnknown,
    Stored(TokenState),
}

impl ShownState {
    pub fn as_str(self) -> &'static str {
        match self {
            ShownState::Refreshing => "refreshing",
            ShownState::RefreshOutcomeUnknown => "refresh_outcome_unknown",
            ShownState::Stored(state) => state.as_str(),
        }
    }
}

#[cfg(test)]
mod state_tests {
    use super::{ShownState, TokenState, UnknownTokenState};

    #[test]
    fn stored_states_round_trip_as_the_text_databases_hold() {
        let texts: Vec<_> = TokenState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(texts, ["empty", "ok", "degraded", "reauthorization_required"]);
        for state in TokenState::ALL {
            assert_eq!(TokenState::parse(state.as_str()), Ok(state));
        }
    }

    #[test]
    fn unknown_stored_state_is_an_error_not_empty() {
        for text in ["", "OK", "refreshing", "refresh_outcome_unknown", "gone"] {
            let e = TokenState::parse(text).unwrap_err();
            assert_eq!(e, UnknownTokenState(text.to_owned()));
            assert_eq!(e.to_string(), format!("unknown token state `{text}`"));
        }
    }

    #[test]
    fn shown_states_text() {
        assert_eq!(ShownState::Refreshing.as_str(), "refreshing");
        assert_eq!(ShownState::RefreshOutcomeUnknown.as_str(), "refresh_outcome_unknown");
        for state in TokenState::ALL {
            assert_eq!(ShownState::Stored(state).as_str(), state.as_str());
        }
    }
}

#[cfg(test)]
mod open_tests {
    use latchkey_vault::MasterKey;

    use super::*;
    use crate::Env;

    fn set() -> TokenSet {
        TokenSet {
            access_token: AccessToken::from("at-1".to_owned()),
            refresh_token: Some(RefreshToken::from("rt-1".to_owned())),
            token_secret: None,
            token_type: Some("Bearer".into()),
            expires_at: Some(2_000),
            scope: None,
            extra: serde_json::Map::new(),
            obtained_at: 1_000,
            grant: None,
        }
    }

    #[test]
    fn a_sealed_token_set_opens_as_it_was() {
        let vault = Vault::new(&MasterKey::generate());
        let key = TokenKey::app("crm", Env::Live);
        let opened = open(&vault, &key, &seal(&vault, &key, &set())).unwrap();
        assert_eq!(opened.access_token.expose_secret(), "at-1");
        assert_eq!(opened.refresh_token.as_ref().map(|r| r.expose_secret()), Some("rt-1"));
        assert_eq!((opened.expires_at, opened.obtained_at), (Some(2_000), 1_000));
        assert_eq!(opened.grant, None, "a set stored before stamps has none");
        let stamped = TokenSet { grant: Some([7; 32]), ..set() };
        assert_eq!(open(&vault, &key, &seal(&vault, &key, &stamped)).unwrap().grant, Some([7; 32]));
        assert!(opened.token_secret.is_none(), "an OAuth 2 set has no token secret");
    }

    #[test]
    fn a_token_secret_is_sealed_with_its_token_and_never_shown() {
        let vault = Vault::new(&MasterKey::generate());
        let key = TokenKey::app("crm", Env::Live);
        let with = TokenSet { token_secret: Some(TokenSecret::from("ts-canary-1".to_owned())), ..set() };
        let sealed = seal(&vault, &key, &with);
        assert!(!sealed.windows(11).any(|w| w == b"ts-canary-1"), "sealed, not in the clear");
        let opened = open(&vault, &key, &sealed).unwrap();
        assert_eq!(opened.token_secret.as_ref().map(|s| s.expose_secret()), Some("ts-canary-1"));
        assert!(!format!("{opened:?}").contains("ts-canary-1"), "Debug redacts it");
    }

    #[test]
    fn a_stamp_that_is_not_32_bytes_is_unreadable() {
        let vault = Vault::new(&MasterKey::generate());
        let key = TokenKey::app("crm", Env::Live);
        let sealed = vault.seal(&aad(&key), br#"{"access_token": "a", "obtained_at": 1, "grant": "AAAA"}"#);
        assert_eq!(open(&vault, &key, &sealed).unwrap_err(), OpenError::Unreadable);
    }

    #[test]
    fn a_token_set_of_another_record_or_vault_is_a_sealed_error() {
        let vault = Vault::new(&MasterKey::generate());
        let key = TokenKey::app("crm", Env::Live);
        let sealed = seal(&vault, &key, &set());
        let moved = open(&vault, &TokenKey::app("crm", Env::Dev), &sealed).unwrap_err();
        assert!(matches!(moved, OpenError::Sealed(VaultError::Integrity(_))), "{moved:?}");
        let other = open(&Vault::new(&MasterKey::generate()), &key, &sealed).unwrap_err();
        assert!(matches!(other, OpenError::Sealed(VaultError::UnknownKey(_))), "{other:?}");
    }

    #[test]
    fn sealed_bytes_that_are_no_token_set_are_unreadable() {
        let vault = Vault::new(&MasterKey::generate());
        let key = TokenKey::app("crm", Env::Live);
        let sealed = vault.seal(&aad(&key), br#"{"refresh_token": "rt-1"}"#);
        let e = open(&vault, &key, &sealed).unwrap_err();
        assert_eq!(e, OpenError::Unreadable);
        assert_eq!(e.to_string(), "the stored token set is not readable");
    }
}
