//! Token requests counted by connector, kind (a refresh token presented, or the grant) and
//! outcome, for the server's metrics (`latchkey_token_requests_total`). Token requests are
//! rare next to calls, so a short lock per request is fine; the names are connector names
//! (a bounded set), never users or connections.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::token::{TokenError, TokenErrorKind};

/// What a token request ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOutcome {
    /// The provider answered with a token.
    Ok,
    /// The provider refused the credential (terminal).
    Refused,
    /// No request could be made from the credential.
    Unsendable,
    /// The provider answered without a usable token (down, busy, broken answer).
    Failed,
    /// The request never reached the provider.
    Unreachable,
    /// The request may have reached the provider and its answer was lost.
    Lost,
}

impl TokenOutcome {
    pub const ALL: [TokenOutcome; 6] = [
        TokenOutcome::Ok,
        TokenOutcome::Refused,
        TokenOutcome::Unsendable,
        TokenOutcome::Failed,
        TokenOutcome::Unreachable,
        TokenOutcome::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TokenOutcome::Ok => "ok",
            TokenOutcome::Refused => "refused",
            TokenOutcome::Unsendable => "unsendable",
            TokenOutcome::Failed => "failed",
            TokenOutcome::Unreachable => "unreachable",
            TokenOutcome::Lost => "lost",
        }
    }

    pub(super) fn of<T>(result: &Result<T, TokenError>) -> TokenOutcome {
        match result.as_ref().map_err(|e| &e.kind) {
            Ok(_) => TokenOutcome::Ok,
            Err(TokenErrorKind::Refused) => TokenOutcome::Refused,
            Err(TokenErrorKind::Unsendable) => TokenOutcome::Unsendable,
            Err(TokenErrorKind::Failed { .. }) => TokenOutcome::Failed,
            Err(TokenErrorKind::Unreachable { .. }) => TokenOutcome::Unreachable,
            Err(TokenErrorKind::Lost { .. }) => TokenOutcome::Lost,
        }
    }
}

/// How many token requests of one kind for one connector ended with one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenCount {
    pub connector: String,
    /// `refresh` (a refresh token presented) or `grant` (the grant itself).
    pub kind: &'static str,
    pub outcome: TokenOutcome,
    pub count: u64,
}

/// The counts, by connector, then `[grant, refresh]`, then outcome.
#[derive(Default)]
pub(crate) struct TokenTally(Mutex<BTreeMap<String, [[u64; 6]; 2]>>);

impl TokenTally {
    pub(super) fn add(&self, connector: &str, refresh: bool, outcome: TokenOutcome) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let slot = match counts.get_mut(connector) {
            Some(slot) => slot,
            None => counts.entry(connector.to_owned()).or_default(),
        };
        let i = TokenOutcome::ALL.iter().position(|o| *o == outcome).unwrap_or_default();
        slot[usize::from(refresh)][i] += 1;
    }

    /// Every count, zeros included for each connector seen, by connector, kind, outcome.
    pub(crate) fn counts(&self) -> Vec<TokenCount> {
        let counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for (connector, kinds) in counts.iter() {
            for (k, kind) in ["grant", "refresh"].into_iter().enumerate() {
                for (o, outcome) in TokenOutcome::ALL.into_iter().enumerate() {
                    out.push(TokenCount { connector: connector.clone(), kind, outcome, count: kinds[k][o] });
                }
            }
        }
        out
    }
}
