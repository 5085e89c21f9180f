//! `per_user = true`: an `api_key_query`, `api_key_header`, `basic` or `digest` connector whose
//! secret fields come from each user instead of the vault. The connector is prepared once as
//! the method's shape ([`PerUserAuth`]: the header or parameter name, the prefix); a user's
//! values ([`UserValues`]) are checked when they arrive, sealed as one small document bound to
//! the connection's key and to its user, and prepared into a [`UserSigner`] (what the user's
//! connection holds, ready to sign) when a call first needs them; the engine keeps it with the
//! user's cached connection (`engine/connections/values.rs`).

use std::collections::BTreeMap;
use std::fmt;

use http::HeaderName;
use latchkey_vault::Vault;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::sign::Sign;
use super::{Credential, api_key, basic, digest};
use crate::config::{AuthConfig, ConnectorConfig};
use crate::store::TokenKey;
use crate::token::OpenError;
use crate::{CallError, ErrorCode};

/// The longest value a user may give for one field, in bytes.
pub const MAX_VALUE_LEN: usize = 4096;

/// The method's shape, without its secret values.
#[derive(Debug)]
enum Shape {
    Query { name: String },
    Header { name: HeaderName, prefix: Option<String> },
    Basic,
    Digest,
}

/// A `per_user` connector's method, ready to prepare each user's values.
pub struct PerUserAuth {
    connector: String,
    method: &'static str,
    shape: Shape,
}

impl fmt::Debug for PerUserAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PerUserAuth({}: {})", self.connector, self.method)
    }
}

/// The credential of a `per_user` connector (`auth::prepare` sends such connectors here).
pub(super) fn prepare(name: &str, connector: &ConnectorConfig) -> Result<Credential, CallError> {
    let shape = match &connector.auth {
        AuthConfig::ApiKeyQuery(a) => Shape::Query { name: a.name.clone() },
        AuthConfig::ApiKeyHeader(a) => Shape::Header {
            name: HeaderName::from_bytes(a.name.as_bytes())
                .map_err(|_| CallError::internal(format!("`{}` is not a valid header name", a.name)))?,
            prefix: a.prefix.clone().filter(|p| !p.is_empty()),
        },
        AuthConfig::Basic(_) => Shape::Basic,
        AuthConfig::Digest(_) => Shape::Digest,
        other => {
            return Err(CallError::new(
                ErrorCode::ConfigInvalid,
                format!("connector `{name}` uses `{}`, which cannot be `per_user`", other.method()),
            ));
        }
    };
    Ok(Credential::PerUser(std::sync::Arc::new(PerUserAuth {
        connector: name.to_owned(),
        method: connector.auth.method(),
        shape,
    })))
}

/// A user's values, by field (`key`, or `username` and `password`). `Debug` shows the fields
/// only.
pub struct UserValues(BTreeMap<&'static str, SecretString>);

impl fmt::Debug for UserValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserValues({:?}: [REDACTED])", self.0.keys().collect::<Vec<_>>())
    }
}

/// What a user's connection holds, prepared to sign: a fixed header or query parameter, or a
/// Digest credential with this user's own kept challenge (never shared with another user).
pub enum UserSigner {
    Static(Box<dyn Sign>),
    Digest(Box<digest::DigestAuth>),
}

impl fmt::Debug for UserSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserSigner::Static(s) => write!(f, "UserSigner::Static({s:?})"),
            UserSigner::Digest(d) => write!(f, "UserSigner::Digest({d:?})"),
        }
    }
}

fn invalid(message: String) -> CallError {
    CallError::invalid_params(message)
}

impl PerUserAuth {
    /// The fields each user gives (in the order a form shows them).
    pub fn fields(&self) -> &'static [&'static str] {
        match self.shape {
            Shape::Query { .. } | Shape::Header { .. } => &["key"],
            Shape::Basic | Shape::Digest => &["username", "password"],
        }
    }

    /// The method's name (`api_key_header`, ...).
    pub fn method(&self) -> &'static str {
        self.method
    }

    /// The request header the user's values own (the caller may not send it).
    pub fn owned_header(&self) -> Option<&HeaderName> {
        match &self.shape {
            Shape::Query { .. } => None,
            Shape::Header { name, .. } => Some(name),
            Shape::Basic | Shape::Digest => Some(&http::header::AUTHORIZATION),
        }
    }

    /// Checks the values a user gave: every field of the method, no other, each a bounded
    /// value that can go into an HTTP request. Errors name the field, never show the value.
    pub fn values(&self, given: Vec<(String, SecretString)>) -> Result<UserValues, CallError> {
        let fields = self.fields();
        let takes = fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(" and ");
        let mut out = BTreeMap::new();
        for (field, value) in given {
            let Some(field) = fields.iter().copied().find(|f| *f == field) else {
                let shown: String = field.chars().take(64).collect();
                return Err(invalid(format!(
                    "`credentials.{shown}` is not a field of connector `{}` ({}): it takes {takes}",
                    self.connector, self.method
                )));
            };
            check_value(self, field, value.expose_secret())?;
            out.insert(field, value);
        }
        if let Some(missing) = fields.iter().find(|f| !out.contains_key(*f)) {
            return Err(invalid(format!(
                "`credentials.{missing}` is missing: connector `{}` ({}) takes {takes}",
                self.connector, self.method
            )));
        }
        Ok(UserValues(out))
    }

    /// The user's values prepared to sign.
    pub fn prepare(&self, values: &UserValues) -> Result<UserSigner, CallError> {
        let field = |f: &str| {
            values.0.get(f).ok_or_else(|| {
                CallError::new(
                    ErrorCode::SecretMissing,
                    format!(
                        "the stored values of this connection lack `{f}`: set them again with PUT /v1/connections/{}",
                        self.connector
                    ),
                )
            })
        };
        Ok(match &self.shape {
            Shape::Query { name } => UserSigner::Static(api_key::query(name, field("key")?)),
            Shape::Header { name, prefix } => {
                UserSigner::Static(api_key::header(name.as_str(), prefix.as_deref(), field("key")?)?)
            }
            Shape::Basic => UserSigner::Static(basic::header(field("username")?.expose_secret(), field("password")?)?),
            Shape::Digest => UserSigner::Digest(Box::new(digest::DigestAuth::new(
                field("username")?.expose_secret(),
                field("password")?,
            ))),
        })
    }
}

/// One value: not empty, bounded, no control characters (they cannot go into a header, and
/// nobody's key has them), and what the method's own rules ask of a username.
fn check_value(auth: &PerUserAuth, field: &str, value: &str) -> Result<(), CallError> {
    if value.is_empty() {
        return Err(invalid(format!("`credentials.{field}` is empty")));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(invalid(format!("`credentials.{field}` is longer than {MAX_VALUE_LEN} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "`credentials.{field}` contains line breaks or other control characters, which cannot go into an HTTP request: check the value (it is not shown here)"
        )));
    }
    match (&auth.shape, field) {
        (Shape::Basic, "username") if value.contains(':') => {
            Err(invalid("`credentials.username` cannot contain `:` (HTTP Basic)".into()))
        }
        (Shape::Digest, "username") if !digest::username_ok(value) => {
            Err(invalid("`credentials.username` must be printable ASCII without `\"` or `\\` (HTTP Digest)".into()))
        }
        _ => Ok(()),
    }
}

/// The sealed document: the user it belongs to, and the values.
#[derive(Serialize, Deserialize)]
struct Stored {
    kind: String,
    user: String,
    values: BTreeMap<String, String>,
}

const KIND: &str = "per_user_values";

impl UserValues {
    /// The values, for scrubbing them out of what an upstream echoed.
    pub fn secrets(&self) -> impl Iterator<Item = &SecretString> {
        self.0.values()
    }

    /// Sealed as one document in the connection's token row (`key`), bound to it like a token
    /// set (the record's AAD) and to `owner` (inside the document, checked by [`UserValues::open`]).
    #[expect(clippy::expect_used, reason = "a map of strings serializes")]
    pub fn seal(&self, vault: &Vault, key: &TokenKey, owner: &str) -> Vec<u8> {
        let stored = Stored {
            kind: KIND.to_owned(),
            user: owner.to_owned(),
            values: self.0.iter().map(|(k, v)| ((*k).to_owned(), v.expose_secret().to_owned())).collect(),
        };
        let json = Zeroizing::new(serde_json::to_vec(&stored).expect("a map of strings serializes"));
        let mut stored = stored;
        for v in stored.values.values_mut() {
            zeroize::Zeroize::zeroize(v);
        }
        vault.seal(&crate::token::aad(key), &json)
    }

    /// Opens what [`UserValues::seal`] sealed for `owner` under `key`; a document of another
    /// user, or no such document, does not open.
    pub fn open(vault: &Vault, key: &TokenKey, owner: &str, sealed: &[u8]) -> Result<UserValues, OpenError> {
        let plain = vault.open(&crate::token::aad(key), sealed)?;
        let mut stored: Stored = serde_json::from_slice(plain.expose_secret()).map_err(|_| OpenError::Unreadable)?;
        if stored.kind != KIND || stored.user != owner {
            return Err(OpenError::Unreadable);
        }
        let mut out = BTreeMap::new();
        for (k, v) in std::mem::take(&mut stored.values) {
            let field = ["key", "username", "password"].into_iter().find(|f| *f == k).ok_or(OpenError::Unreadable)?;
            out.insert(field, SecretString::from(v));
        }
        Ok(UserValues(out))
    }
}

#[cfg(test)]
mod tests;
