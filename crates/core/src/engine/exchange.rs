//! Token exchange (RFC 8693; SPEC §13): an app key presents a user's Latchkey access token
//! (`subject_token`) and names a connector (`resource` or `audience`); if the connector says
//! `token_exchange = true`, the answer is that user's current provider access token, fresh
//! (refreshed through the token lifecycle when it must be), never its refresh token. Each
//! exchange that reaches a connection is recorded as a `token.exchanged` event.
//!
//! Each refusal has its own [`Refusal`]: the server writes its RFC 8693 §2.2.2 / RFC 6749
//! §5.2 `error` beside Latchkey's error shape.

use serde_json::{Value, json};

use super::Engine;
use crate::auth::Credential;
use crate::event::{EventKind, EventOutcome};
use crate::secret::AccessToken;
use crate::{CallError, Env, ErrorCode};

/// `grant_type` of a token exchange.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// `subject_token_type` (and `issued_token_type`): an OAuth access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Why an exchange was refused; each is its own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The subject token is a user token of the other environment than the app key's.
    WrongEnvironment,
    /// The subject token is not a valid, unexpired, unrevoked Latchkey user access token.
    InvalidSubject,
    /// No such connector, or it does not say `token_exchange = true`.
    NotExchangeable,
    /// The user has no connection on the connector.
    NoConnection,
}

impl Refusal {
    /// The OAuth `error` (RFC 8693 §2.2.2, RFC 6749 §5.2).
    pub fn oauth_error(self) -> &'static str {
        match self {
            Refusal::WrongEnvironment | Refusal::InvalidSubject => "invalid_request",
            Refusal::NotExchangeable => "invalid_target",
            Refusal::NoConnection => "invalid_grant",
        }
    }

    /// Latchkey's `details.reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::WrongEnvironment => "subject_token_environment",
            Refusal::InvalidSubject => "subject_token_invalid",
            Refusal::NotExchangeable => "connector_not_exchangeable",
            Refusal::NoConnection => "no_connection",
        }
    }

    fn error(self, code: ErrorCode, message: String) -> CallError {
        let mut e = CallError::new(code, message);
        e.details.insert("oauth_error".into(), Value::String(self.oauth_error().into()));
        e.details.insert("reason".into(), Value::String(self.as_str().into()));
        e
    }
}

/// What an exchange hands out: the provider's access token and its remaining lifetime.
#[derive(Debug)]
pub struct Exchanged {
    pub access_token: AccessToken,
    /// The provider's `token_type`, `Bearer` when it gave none.
    pub token_type: String,
    /// Seconds left, when the provider gave a lifetime.
    pub expires_in: Option<i64>,
    /// The connection's user (for the audit log).
    pub user: String,
}

/// The subject token's user, refused unless it is valid in `env` (pure over the verified
/// claims' environment).
pub(crate) fn subject_env_matches(token_env: &str, env: Env) -> Result<(), CallError> {
    if token_env == env.as_str() {
        Ok(())
    } else {
        Err(Refusal::WrongEnvironment.error(
            ErrorCode::Forbidden,
            format!(
                "the subject_token belongs to the `{token_env}` environment and this app key to `{env}`: exchange it with a `{token_env}` app key"
            ),
        ))
    }
}

impl Engine {
    /// `POST /v1/token` with the token-exchange grant, for an app key of `env` (`key_id`, for
    /// the event).
    pub async fn exchange_token(
        &self,
        env: Env,
        key_id: &str,
        subject_token: &str,
        connector: &str,
    ) -> Result<Exchanged, CallError> {
        let claims = self.identity.verify_user_token(subject_token).map_err(|_| {
            Refusal::InvalidSubject.error(
                ErrorCode::Unauthenticated,
                "the subject_token is not a valid Latchkey user access token (invalid, expired or revoked): get a new one with POST /v1/token".into(),
            )
        })?;
        subject_env_matches(&claims.env, env)?;
        let not_exchangeable = || {
            Refusal::NotExchangeable.error(
                ErrorCode::Forbidden,
                format!(
                    "connector `{connector}` does not allow token exchange: set `token_exchange = true` on a connector holding per-user OAuth connections"
                ),
            )
        };
        let conn = self.connector(connector).ok_or_else(not_exchangeable)?;
        if !conn.config.token_exchange {
            return Err(not_exchangeable());
        }
        let prepared = conn.credential(env)?;
        let Credential::User(auth) = &prepared.credential else { return Err(not_exchangeable()) };
        let user = claims.sub;
        let Some(row) = self.user_connection(env, connector, &user).await? else {
            return Err(Refusal::NoConnection.error(
                ErrorCode::NotFound,
                format!(
                    "user `{user}` has no connection on connector `{connector}` ({env}): connect one with POST /v1/connect/{connector}"
                ),
            ));
        };
        let src = auth.for_connection(&row.id);
        let obtained = match self.tokens.get(&src).await {
            Ok(o) => o,
            Err(e) => {
                let detail = json!({"caller": key_id, "error": e.code.as_str()});
                self.tokens.event(&src.key, EventKind::TokenExchanged, EventOutcome::Error, detail).await;
                return Err(self.reauthorization(e, Some(&row)).await);
            }
        };
        let now = self.clock.now_ms();
        let token = &obtained.token;
        let expires_in = token.expires_at.map(|at| ((at - now) / 1000).max(0));
        self.tokens.event(&src.key, EventKind::TokenExchanged, EventOutcome::Ok, json!({"caller": key_id})).await;
        Ok(Exchanged {
            access_token: token.access_token.clone(),
            token_type: token.token_type.clone().unwrap_or_else(|| "Bearer".into()),
            expires_in,
            user,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_has_its_own_error() {
        let all = [Refusal::WrongEnvironment, Refusal::InvalidSubject, Refusal::NotExchangeable, Refusal::NoConnection];
        let reasons: std::collections::BTreeSet<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(reasons.len(), all.len());
        assert_eq!(Refusal::NotExchangeable.oauth_error(), "invalid_target");
        assert_eq!(Refusal::InvalidSubject.oauth_error(), "invalid_request");
        assert_eq!(Refusal::NoConnection.oauth_error(), "invalid_grant");
    }

    #[test]
    fn a_subject_token_of_the_other_environment_is_refused() {
        assert!(subject_env_matches("live", Env::Live).is_ok());
        let e = subject_env_matches("live", Env::Dev).unwrap_err();
        assert_eq!(e.code, ErrorCode::Forbidden);
        assert_eq!(e.details["reason"], "subject_token_environment");
        assert_eq!(e.details["oauth_error"], "invalid_request");
    }
}
