//! The auth methods: one table, from which every list derives (the method names, the `auth`
//! enum, which table each parses, which secrets it names, whether it holds tokens to keep
//! alive, and the "one of ..." of error messages). Adding a method is one line here, its
//! table in `auth_tables.rs`, and its arm in `auth::prepare`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::auth_tables::{
    ApiKeyHeader, ApiKeyQuery, AuthorizationCode, AwsSigv4, Basic, ClientCertificate, Digest, JwtBearer,
    LatchkeyIdentity, NoAuth, OAuth1, OAuth1Authorization, OAuth2ClientCredentials, OAuth2CustomToken, OAuth2Password,
};
use super::raw::{Sift, typed_all};
use super::secret_ref::SecretRef;

/// What each method's `auth` table knows about itself.
pub trait MethodTable: DeserializeOwned {
    /// Every secret reference of the table, with the field that holds it.
    fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
        Vec::new()
    }
}

/// Methods that are named in the documentation but come in a later version: naming one says so.
pub const LATER_METHODS: &[&str] = &[];

macro_rules! auth_methods {
    ($( $(#[$doc:meta])* $variant:ident($table:ty) = $name:literal, tokens: $tokens:literal; )*) => {
        /// The `auth` table: one variant per method, each with its own fields. Deserialized by
        /// [`parse_auth`] (the method first, then its fields), so that a problem names its
        /// exact field; serialized with `method` first-class, as it was written.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(tag = "method")]
        #[allow(clippy::large_enum_variant, reason = "made once per load, read in place; boxing would only add a pointer")]
        pub enum AuthConfig {
            $( $(#[$doc])* #[serde(rename = $name)] $variant($table), )*
        }

        /// An auth method, without its settings.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum AuthMethod {
            $( $(#[$doc])* $variant, )*
        }

        impl AuthMethod {
            /// Every method this version implements, in the order the documentation lists them.
            pub const ALL: &[AuthMethod] = &[$(AuthMethod::$variant),*];

            /// The name written in `auth.method`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(AuthMethod::$variant => $name,)*
                }
            }

            /// Whether the method holds OAuth tokens (the app's own, or one per connection)
            /// that keep-alive refreshes before an idle refresh token dies.
            pub const fn holds_tokens(self) -> bool {
                match self {
                    $(AuthMethod::$variant => $tokens,)*
                }
            }

            /// The method named `name`, if this version has it.
            pub fn named(name: &str) -> Option<AuthMethod> {
                AuthMethod::ALL.iter().copied().find(|m| m.name() == name)
            }

            /// Parses the method's table (without `method`).
            fn parse_table(self, table: serde_json::Value) -> (Option<AuthConfig>, Vec<(String, String)>) {
                match self {
                    $(AuthMethod::$variant => {
                        let (t, problems) = typed_all::<$table>(table, AUTH_SIFT);
                        (t.map(AuthConfig::$variant), problems)
                    })*
                }
            }
        }

        impl AuthConfig {
            pub fn kind(&self) -> AuthMethod {
                match self {
                    $(AuthConfig::$variant(_) => AuthMethod::$variant,)*
                }
            }

            /// Every secret reference of this method, with the field that holds it.
            pub fn secret_refs(&self) -> Vec<(&'static str, &SecretRef)> {
                match self {
                    $(AuthConfig::$variant(t) => t.secret_refs(),)*
                }
            }
        }
    };
}

auth_methods! {
    None(NoAuth) = "none", tokens: false;
    ApiKeyQuery(ApiKeyQuery) = "api_key_query", tokens: false;
    ApiKeyHeader(ApiKeyHeader) = "api_key_header", tokens: false;
    Basic(Basic) = "basic", tokens: false;
    Digest(Digest) = "digest", tokens: false;
    OAuth1(OAuth1) = "oauth1", tokens: false;
    ClientCertificate(ClientCertificate) = "client_certificate", tokens: false;
    AwsSigv4(AwsSigv4) = "aws_sigv4", tokens: false;
    OAuth2Password(OAuth2Password) = "oauth2_password", tokens: true;
    OAuth2ClientCredentials(OAuth2ClientCredentials) = "oauth2_client_credentials", tokens: true;
    OAuth2CustomToken(OAuth2CustomToken) = "oauth2_custom_token", tokens: true;
    JwtBearer(JwtBearer) = "jwt_bearer", tokens: true;
    OAuth2AuthorizationCode(AuthorizationCode) = "oauth2_authorization_code", tokens: true;
    OAuth1Authorization(OAuth1Authorization) = "oauth1_authorization", tokens: false;
    LatchkeyIdentity(LatchkeyIdentity) = "latchkey_identity", tokens: false;
}

/// The parsed fields of the `auth` tables (see [`Sift`]).
const AUTH_SIFT: &[Sift] = &[
    Sift::stand_in("token_url", || "https://stand-in.invalid/token".into()),
    Sift::stand_in("authorize_url", || "https://stand-in.invalid/authorize".into()),
    Sift::stand_in("request_token_url", || "https://stand-in.invalid/request_token".into()),
    Sift::stand_in("access_token_url", || "https://stand-in.invalid/access_token".into()),
    Sift::stand_in("token_body", || serde_json::json!({})),
    Sift::drop("profile_url"),
    Sift::drop("revoke_url"),
    Sift::drop("sts_url"),
    Sift::drop("token_headers.*"),
];

impl AuthMethod {
    /// The fields each user gives on a `per_user` connector of this method (in the order a
    /// form shows them); empty for a method that cannot be per-user.
    pub const fn user_fields(self) -> &'static [&'static str] {
        match self {
            AuthMethod::ApiKeyQuery | AuthMethod::ApiKeyHeader => &["key"],
            AuthMethod::Basic | AuthMethod::Digest => &["username", "password"],
            _ => &[],
        }
    }

    /// The names of every method, for messages: `none, api_key_query, ...`.
    pub fn names() -> String {
        AuthMethod::ALL.iter().map(|m| m.name()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl AuthConfig {
    /// The method's name, as written in `auth.method`.
    pub fn method(&self) -> &'static str {
        self.kind().name()
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig::None(NoAuth {})
    }
}

/// The `auth` table: its `method` first, then that method's fields, each problem with its path.
/// The table is returned with the problems when they were only in parsed values (each then
/// stood in for), so that the connector's other checks still run.
pub(super) fn parse_auth(value: serde_json::Value) -> (Option<AuthConfig>, Vec<(String, String)>) {
    let refuse = |field: &str, msg: String| (None, vec![(field.to_owned(), msg)]);
    let serde_json::Value::Object(mut map) = value else {
        return refuse("", "must be a table: `auth = { method = \"...\", ... }`".into());
    };
    let name = match map.remove("method") {
        Some(serde_json::Value::String(m)) => m,
        Some(_) => return refuse("method", "must be a string".into()),
        None => return refuse("", format!("missing `method`: one of {}", AuthMethod::names())),
    };
    match AuthMethod::named(&name) {
        Some(method) => method.parse_table(serde_json::Value::Object(map)),
        None if LATER_METHODS.contains(&name.as_str()) => refuse(
            "method",
            format!("`{name}` is not available in this version of Latchkey yet; available: {}", AuthMethod::names()),
        ),
        None => refuse("method", format!("unknown auth method `{name}`: use one of {}", AuthMethod::names())),
    }
}
