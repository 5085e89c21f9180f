//! The OAuth protocol's secret values, one type per kind, so that a refresh token cannot be
//! sent where a client secret belongs and a PKCE verifier is spent once. (`secrets.rs` holds
//! the operator's secrets by name; the values here are what a grant makes of them, or what a
//! provider issued.)
//!
//! Each is a [`SecretString`]: zeroized on drop, no `Display`, no `Serialize`, and a `Debug`
//! that names the kind only (`AccessToken([REDACTED])`). The value is read through
//! [`ExposeSecret::expose_secret`], which says so where it happens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};

macro_rules! secret_kind {
    ($(#[$meta:meta])* $name:ident $(, $derive:ident)?) => {
        $(#[$meta])*
        $(#[derive($derive)])?
        pub struct $name(SecretString);

        impl $name {
            /// The value as a form field or header value of a request being built (moved, not
            /// copied).
            #[allow(dead_code, reason = "a private key is read, never sent")]
            pub(crate) fn into_secret(self) -> SecretString {
                self.0
            }
        }

        impl ExposeSecret<str> for $name {
            fn expose_secret(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(SecretString::from(value))
            }
        }

        impl From<SecretString> for $name {
            fn from(value: SecretString) -> Self {
                Self(value)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

secret_kind!(
    /// A client's secret: `client_secret_basic` or `client_secret_post` (RFC 6749 §2.3.1).
    ClientSecret,
    Clone
);
secret_kind!(
    /// An access token a provider issued; what signs calls (RFC 6749 §1.4).
    AccessToken,
    Clone
);
secret_kind!(
    /// A refresh token a provider issued (RFC 6749 §1.5); may rotate on every use.
    RefreshToken,
    Clone
);
secret_kind!(
    /// The secret that goes with a token and signs with it instead of travelling: OAuth 1.0a's
    /// `oauth_token_secret` (RFC 5849 §2.3), or the `SecretAccessKey` of AWS temporary
    /// credentials (STS `AssumeRole`), whose session token is the set's access token.
    TokenSecret,
    Clone
);
secret_kind!(
    /// A private key in PEM (PKCS#1 or PKCS#8), as `jwt_bearer` signs its assertions with.
    PrivateKey,
    Clone
);
secret_kind!(
    /// A PKCE code verifier (RFC 7636 §4.1). Not `Clone`: made once per flow, its challenge
    /// goes to the login URL, and the code exchange consumes it.
    PkceVerifier
);

impl PkceVerifier {
    /// Length of a verifier Latchkey makes (RFC 7636 §4.1: 43 to 128 characters).
    pub const LEN: usize = 64;

    /// A new random verifier: [`Self::LEN`] characters of `[A-Za-z0-9]` (unreserved, §4.1).
    pub fn generate() -> Self {
        Self::from(latchkey_vault::random::token(Self::LEN))
    }

    /// The S256 challenge: `BASE64URL(SHA256(verifier))`, unpadded (RFC 7636 §4.2).
    pub fn challenge(&self) -> String {
        URL_SAFE_NO_PAD.encode(latchkey_vault::sha256(self.expose_secret().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_the_kind_and_never_the_value() {
        let canary = "canary-7f3a";
        let shown = [
            format!("{:?}", ClientSecret::from(canary.to_owned())),
            format!("{:?}", AccessToken::from(canary.to_owned())),
            format!("{:?}", RefreshToken::from(canary.to_owned())),
            format!("{:?}", PrivateKey::from(canary.to_owned())),
            format!("{:?}", PkceVerifier::from(canary.to_owned())),
            format!("{:?}", Some(AccessToken::from(SecretString::from(canary)))),
        ];
        assert_eq!(
            shown,
            [
                "ClientSecret([REDACTED])",
                "AccessToken([REDACTED])",
                "RefreshToken([REDACTED])",
                "PrivateKey([REDACTED])",
                "PkceVerifier([REDACTED])",
                "Some(AccessToken([REDACTED]))",
            ]
        );
    }

    #[test]
    fn the_value_is_read_only_by_exposing_it() {
        let token = AccessToken::from("at-1".to_owned());
        assert_eq!(token.expose_secret(), "at-1");
        assert_eq!(token.clone().into_secret().expose_secret(), "at-1");
    }

    #[test]
    fn pkce_s256_challenge_is_rfc_7636_appendix_b() {
        let verifier = PkceVerifier::from("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned());
        assert_eq!(verifier.challenge(), "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn a_generated_verifier_is_64_unreserved_characters_and_new_each_time() {
        let (a, b) = (PkceVerifier::generate(), PkceVerifier::generate());
        assert_eq!(a.expose_secret().len(), PkceVerifier::LEN);
        assert!(a.expose_secret().bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.challenge().len(), 43);
    }
}
