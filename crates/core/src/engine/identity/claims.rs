//! What the identity provider issues and the rules of its refresh-token families, apart from
//! the store: the claims of a user access token and of a `latchkey_identity` token, the pair
//! an app gets, what introspection found, and how a presented refresh token is treated.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Env;
use crate::store::RefreshRow;

/// A used refresh token returns the same new pair if replayed this soon (clients that retried).
pub(crate) const GRACE_MS: i64 = 30_000;
/// A family's revocation is read into memory (and its rows kept by the sweep) this long:
/// longer than any access token issued with it lives (`access_token_ttl_s` is at most a day).
/// Its refresh tokens are refused without it (their own rows say revoked, or are gone).
pub(crate) const REVOCATIONS_KEPT_MS: i64 = 2 * 86_400_000;
/// User access tokens live this long unless `[server] access_token_ttl_s` says otherwise.
const ACCESS_TTL_S: i64 = 900;
/// Refresh-token families live this long unless `[server] refresh_token_ttl_s` says otherwise.
const REFRESH_TTL_S: i64 = 30 * 86_400;

/// What introspection found (RFC 7662); the server writes the answer.
#[derive(Debug, Clone)]
pub enum Introspection {
    /// Unknown, invalid, expired, used, revoked, or of another environment.
    Inactive,
    /// An active refresh token: its user, its expiry (Unix seconds), the issuer and the
    /// environment.
    Refresh { sub: String, exp: i64, iss: String, env: Env },
    /// An active access token in the environment asked about: its claims.
    Access(UserClaims),
}

/// The claims of a user access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    /// The environment the token belongs to.
    pub env: String,
    /// The refresh-token family it was issued with (revoking the family revokes it).
    pub fam: String,
    /// What the token may do, space-separated (RFC 8693 §4.2 / RFC 9068 `scope`); absent when
    /// unrestricted. Read by `/mcp` to narrow the tools a token sees (`tools`,
    /// `connector:NAME`, `tool:NAME`); see docs/mcp.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// What `POST /v1/users/{id}/tokens` and `POST /v1/token` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenPair {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
    /// The granted scope, when the tokens are narrowed (RFC 6749 §5.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// How long user access tokens live (seconds): `access_token_ttl_s`, else 15 minutes.
pub(crate) fn access_ttl_s(setting: Option<u64>) -> i64 {
    setting.map_or(ACCESS_TTL_S, |t| i64::try_from(t).unwrap_or(ACCESS_TTL_S))
}

/// How long a refresh-token family lives (ms): `refresh_token_ttl_s`, else 30 days.
pub(crate) fn refresh_ttl_ms(setting: Option<u64>) -> i64 {
    setting.map_or(REFRESH_TTL_S, |t| i64::try_from(t).unwrap_or(REFRESH_TTL_S)) * 1000
}

/// The claims of a user access token issued at `iat` (Unix seconds) for `ttl_s`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn access_claims(
    iss: &str,
    aud: &str,
    env: Env,
    user: &str,
    family: &str,
    iat: i64,
    ttl_s: i64,
    jti: String,
) -> UserClaims {
    UserClaims {
        iss: iss.to_owned(),
        sub: user.to_owned(),
        aud: aud.to_owned(),
        exp: iat + ttl_s,
        iat,
        nbf: iat,
        jti,
        env: env.as_str().into(),
        fam: family.to_owned(),
        scope: None,
    }
}

/// The claims of the token a `latchkey_identity` connector sends: who is calling, for
/// `audience`, for `lifetime_s`; no family (it is never refreshed).
pub(crate) fn identity_claims(
    iss: &str,
    env: Env,
    user: &str,
    audience: &str,
    iat: i64,
    lifetime_s: i64,
    jti: String,
) -> Value {
    json!({
        "iss": iss, "sub": user, "aud": audience, "exp": iat + lifetime_s, "iat": iat, "nbf": iat,
        "jti": jti, "env": env.as_str(),
    })
}

/// What a presented refresh token leads to, by its row alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Presented {
    /// Unused and valid: it rotates (once its user is found to exist).
    Rotate,
    /// Expired, revoked, or of a revoked family: refused, nothing changes.
    Refused,
    /// Used before: the same pair within the retry window ([`replay_allowed`]), else the
    /// whole family is revoked.
    Reused,
}

pub(crate) fn presented(row: &RefreshRow, now: i64, family_revoked: bool) -> Presented {
    if row.revoked_at.is_some() {
        return Presented::Refused;
    }
    if row.used_at.is_some() {
        return Presented::Reused;
    }
    if row.expires_at <= now || family_revoked { Presented::Refused } else { Presented::Rotate }
}

/// Whether a used token may have its successor's pair again: it was used at most
/// [`GRACE_MS`] ago, is not revoked, and the pair is on it. (The pair is given only while the
/// successor is still unused: the caller checks that.)
pub(crate) fn replay_allowed(row: &RefreshRow, now: i64) -> bool {
    row.revoked_at.is_none() && row.used_at.is_some_and(|u| now - u <= GRACE_MS) && row.successor.is_some()
}

/// Whether introspection of a refresh token in `env` finds it active.
pub(crate) fn refresh_active(row: &RefreshRow, env: Env, now: i64, family_revoked: bool) -> bool {
    row.env == env && row.used_at.is_none() && row.revoked_at.is_none() && !family_revoked && row.expires_at > now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> RefreshRow {
        RefreshRow {
            hash: vec![1],
            family: "fam_1".into(),
            env: Env::Live,
            user_id: "u1".into(),
            created_at: 0,
            expires_at: 10_000,
            used_at: None,
            revoked_at: None,
            successor: None,
            scope: None,
            audience: None,
        }
    }

    #[test]
    fn access_claims_carry_the_environment_and_the_family() {
        let c = access_claims("https://lk", "https://api", Env::Dev, "u1", "fam_1", 1_000, 900, "j1".into());
        assert_eq!((c.iss.as_str(), c.aud.as_str(), c.sub.as_str()), ("https://lk", "https://api", "u1"));
        assert_eq!((c.iat, c.nbf, c.exp), (1_000, 1_000, 1_900));
        assert_eq!((c.env.as_str(), c.fam.as_str(), c.jti.as_str()), ("dev", "fam_1", "j1"));
        let v = serde_json::to_value(&c).unwrap();
        let mut names: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["aud", "env", "exp", "fam", "iat", "iss", "jti", "nbf", "sub"]);
    }

    #[test]
    fn identity_claims_name_the_caller_for_the_audience_and_no_family() {
        let v = identity_claims("https://lk", Env::Live, "u1", "crm", 1_000, 60, "j".into());
        assert_eq!(
            v,
            json!({"iss": "https://lk", "sub": "u1", "aud": "crm", "exp": 1_060, "iat": 1_000, "nbf": 1_000,
                   "jti": "j", "env": "live"})
        );
    }

    #[test]
    fn lifetimes_default_and_follow_the_settings() {
        assert_eq!(access_ttl_s(None), 900);
        assert_eq!(access_ttl_s(Some(60)), 60);
        assert_eq!(access_ttl_s(Some(u64::MAX)), 900);
        assert_eq!(refresh_ttl_ms(None), 30 * 86_400 * 1000);
        assert_eq!(refresh_ttl_ms(Some(3_600)), 3_600_000);
    }

    #[test]
    fn a_presented_refresh_token_rotates_once_and_a_reuse_is_caught() {
        assert_eq!(presented(&row(), 9_999, false), Presented::Rotate);
        assert_eq!(presented(&row(), 10_000, false), Presented::Refused, "expired");
        assert_eq!(presented(&row(), 0, true), Presented::Refused, "family revoked");
        let revoked = RefreshRow { revoked_at: Some(1), ..row() };
        assert_eq!(presented(&revoked, 0, false), Presented::Refused);
        let used = RefreshRow { used_at: Some(1), ..row() };
        assert_eq!(presented(&used, 0, false), Presented::Reused);
        // A used token is a reuse even past its expiry or in a revoked family: the family goes.
        assert_eq!(presented(&used, 20_000, true), Presented::Reused);
        assert_eq!(presented(&RefreshRow { revoked_at: Some(2), ..used }, 0, false), Presented::Refused);
    }

    #[test]
    fn a_replay_gets_the_same_pair_only_within_the_window() {
        let used = RefreshRow { used_at: Some(1_000), successor: Some(vec![9]), ..row() };
        assert!(replay_allowed(&used, 1_000 + GRACE_MS));
        assert!(!replay_allowed(&used, 1_001 + GRACE_MS));
        assert!(!replay_allowed(&RefreshRow { successor: None, ..used.clone() }, 1_000));
        assert!(!replay_allowed(&RefreshRow { revoked_at: Some(1_000), ..used.clone() }, 1_000));
        assert!(!replay_allowed(&row(), 0), "never used");
    }

    #[test]
    fn introspection_finds_only_usable_refresh_tokens_of_the_environment() {
        assert!(refresh_active(&row(), Env::Live, 9_999, false));
        assert!(!refresh_active(&row(), Env::Dev, 0, false));
        assert!(!refresh_active(&row(), Env::Live, 10_000, false));
        assert!(!refresh_active(&row(), Env::Live, 0, true));
        assert!(!refresh_active(&RefreshRow { used_at: Some(1), ..row() }, Env::Live, 0, false));
        assert!(!refresh_active(&RefreshRow { revoked_at: Some(1), ..row() }, Env::Live, 0, false));
    }
}
