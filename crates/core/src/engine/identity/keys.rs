//! The identity provider's signing keys as memory holds them, and the rules over them: which
//! key signs now, which keys the JWKS publishes, which a rotation retires and deletes, and the
//! verification of a user access token against them.

use std::collections::HashSet;
use std::sync::Arc;

use latchkey_vault::Aad;
use latchkey_vault::identity::{SigningAlg, SigningKey};
use secrecy::ExposeSecret;

use super::claims::UserClaims;
use crate::store::SigningKeyRow;

/// How long a new key is published before it signs (the JWKS cache lifetime).
pub const PUBLISH_BEFORE_SIGNING_S: i64 = 300;
pub const JWKS_MAX_AGE_S: i64 = 300;
/// A retired key stays published this long after its last token expired (clock skew).
const PUBLISHED_MARGIN_MS: i64 = 60_000;

/// The signing keys as the runtime holds them.
#[derive(Default, Clone)]
pub struct IdentityKeys {
    pub keys: Vec<(SigningKeyRow, Arc<SigningKey>)>,
    pub revoked_families: HashSet<String>,
}

pub(crate) fn key_aad(kid: &str) -> Aad {
    Aad::new("signing_key", kid, "pkcs8", "-")
}

impl IdentityKeys {
    pub fn load(rows: Vec<SigningKeyRow>, vault: &latchkey_vault::Vault, revoked: Vec<String>) -> IdentityKeys {
        let mut keys = Vec::new();
        for row in rows {
            let Some(alg) = SigningAlg::parse(&row.alg) else { continue };
            match vault.open(&key_aad(&row.kid), &row.sealed) {
                Ok(der) => match SigningKey::from_pkcs8(&row.kid, alg, der.expose_secret().to_vec()) {
                    Ok(k) => keys.push((row, Arc::new(k))),
                    Err(e) => tracing::error!(kid = %row.kid, error = %e, "signing key unusable"),
                },
                Err(e) => tracing::error!(kid = %row.kid, error = %e, "signing key failed to decrypt"),
            }
        }
        IdentityKeys { keys, revoked_families: revoked.into_iter().collect() }
    }

    /// The key that signs now: the newest active one.
    pub(crate) fn signer(&self, now: i64) -> Option<&Arc<SigningKey>> {
        self.keys
            .iter()
            .filter(|(r, _)| r.activates_at <= now && r.retired_at.is_none_or(|t| t > now))
            .max_by_key(|(r, _)| r.activates_at)
            .map(|(_, k)| k)
    }

    fn by_kid(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|(r, _)| r.kid == kid).map(|(_, k)| k)
    }

    /// The keys the JWKS lists: every key but those retired before the last token they signed
    /// (which lives `access_ttl_ms`) expired.
    pub(crate) fn published(&self, now: i64, access_ttl_ms: i64) -> impl Iterator<Item = &Arc<SigningKey>> {
        self.keys
            .iter()
            .filter(move |(r, _)| r.retired_at.is_none_or(|t| t + access_ttl_ms + PUBLISHED_MARGIN_MS > now))
            .map(|(_, k)| k)
    }

    /// The algorithms of the keys, sorted, each once.
    pub(crate) fn algorithms(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.keys.iter().map(|(_, k)| k.alg.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub(crate) fn family_revoked(&self, family: &str) -> bool {
        self.revoked_families.contains(family)
    }

    /// A user access token's claims, when one of these keys signed it (the algorithm is the
    /// key's, never the header's), `iss`, `aud`, `exp` and `nbf` hold, and its family is not
    /// revoked; `now` (Unix ms) is when `exp` and `nbf` are checked.
    pub(crate) fn verify(&self, token: &str, issuer: &str, audience: &str, now: i64) -> Option<UserClaims> {
        let (kid, _) = latchkey_vault::identity::peek_header(token)?;
        let key = self.by_kid(&kid)?;
        let claims: UserClaims = key.verify(token, issuer, Some(audience), now / 1000).ok()?;
        (!self.family_revoked(&claims.fam)).then_some(claims)
    }
}

/// What a rotation at `at` does to the keys there were: every key not yet retired retires
/// when the new key starts signing (`activates_at`), and keys retired before every token they
/// signed expired (`access_ttl_s`, plus a minute) are deleted.
pub(crate) fn rotation_plan(
    previous: &[SigningKeyRow],
    at: i64,
    access_ttl_s: i64,
) -> (Vec<&SigningKeyRow>, Vec<&SigningKeyRow>) {
    let retire = previous.iter().filter(|r| r.retired_at.is_none()).collect();
    let gone = at - access_ttl_s * 1000 - PUBLISHED_MARGIN_MS;
    let delete = previous.iter().filter(|r| r.retired_at.is_some_and(|t| t < gone)).collect();
    (retire, delete)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kid: &str, activates_at: i64, retired_at: Option<i64>) -> SigningKeyRow {
        SigningKeyRow { kid: kid.into(), alg: "ES256".into(), sealed: vec![], created_at: 0, activates_at, retired_at }
    }

    fn keys(rows: &[SigningKeyRow]) -> (IdentityKeys, Vec<String>) {
        let mut out = IdentityKeys::default();
        let mut kids = Vec::new();
        for r in rows {
            let k = Arc::new(SigningKey::generate(SigningAlg::Es256).unwrap());
            kids.push(k.kid.clone());
            out.keys.push((SigningKeyRow { kid: k.kid.clone(), ..r.clone() }, k));
        }
        (out, kids)
    }

    #[test]
    fn the_newest_active_key_signs_and_a_new_key_waits() {
        let (ks, kids) = keys(&[row("", 0, Some(1_000)), row("", 1_000, None), row("", 5_000, None)]);
        assert_eq!(ks.signer(500).unwrap().kid, kids[0]);
        assert_eq!(ks.signer(1_000).unwrap().kid, kids[1], "the old key stops as the next starts");
        assert_eq!(ks.signer(4_999).unwrap().kid, kids[1], "a published key does not sign before its time");
        assert_eq!(ks.signer(5_000).unwrap().kid, kids[2]);
        assert!(keys(&[row("", 10, None)]).0.signer(9).is_none());
        assert!(IdentityKeys::default().signer(0).is_none());
    }

    #[test]
    fn retired_keys_stay_published_until_their_tokens_expired() {
        let (ks, kids) = keys(&[row("", 0, Some(1_000)), row("", 1_000, None)]);
        let ttl = 900_000;
        let at = |now| ks.published(now, ttl).map(|k| k.kid.clone()).collect::<Vec<_>>();
        assert_eq!(at(1_000 + ttl + 59_999), kids);
        assert_eq!(at(1_000 + ttl + 60_000), kids[1..]);
        assert_eq!(ks.algorithms(), ["ES256"]);
    }

    #[test]
    fn a_rotation_retires_the_signing_keys_and_deletes_the_long_retired() {
        let ttl_s = 900;
        let at = 10_000_000;
        let gone = at - ttl_s * 1000 - 60_000;
        let previous = [
            row("current", 0, None),
            row("recent", 0, Some(gone)),
            row("old", 0, Some(gone - 1)),
            row("next", 9, None),
        ];
        let (retire, delete) = rotation_plan(&previous, at, ttl_s);
        let kids = |v: Vec<&SigningKeyRow>| v.into_iter().map(|r| r.kid.clone()).collect::<Vec<_>>();
        assert_eq!(kids(retire), ["current", "next"]);
        assert_eq!(kids(delete), ["old"]);
    }

    fn claims(iss: &str, aud: &str, fam: &str, exp: i64) -> UserClaims {
        super::super::claims::access_claims(iss, aud, crate::Env::Live, "u1", fam, exp - 900, 900, "j".into())
    }

    #[test]
    fn user_tokens_verify_against_our_keys_only() {
        let (mut ks, _) = keys(&[row("", 0, None)]);
        let now = 1_700_000_000;
        let good = claims("https://lk", "https://lk", "fam_1", now + 900);
        let token = ks.keys[0].1.sign("at+jwt", &good).unwrap();
        let found = ks.verify(&token, "https://lk", "https://lk", now * 1000).unwrap();
        assert_eq!((found.sub.as_str(), found.fam.as_str(), found.env.as_str()), ("u1", "fam_1", "live"));
        assert!(ks.verify(&token, "https://other", "https://lk", now * 1000).is_none(), "issuer");
        assert!(ks.verify(&token, "https://lk", "https://api", now * 1000).is_none(), "audience");
        let expired = ks.keys[0].1.sign("at+jwt", &claims("https://lk", "https://lk", "f", now - 60)).unwrap();
        assert!(ks.verify(&expired, "https://lk", "https://lk", now * 1000).is_none(), "expiry");
        // A key that is not ours signs nothing that verifies.
        let stranger = SigningKey::generate(SigningAlg::Es256).unwrap();
        assert!(ks.verify(&stranger.sign("at+jwt", &good).unwrap(), "https://lk", "https://lk", now * 1000).is_none());
        assert!(ks.verify("not.a.jwt", "https://lk", "https://lk", now * 1000).is_none());
        // Revoking the family revokes its access tokens.
        ks.revoked_families.insert("fam_1".into());
        assert!(ks.verify(&token, "https://lk", "https://lk", now * 1000).is_none(), "revoked family");
    }
}
