//! References to secrets: a vault secret by name or an environment variable, never a value.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Where a secret comes from: a vault secret by name, or a process environment variable.
/// A plain string is refused, so a secret can never be written into the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Vault(String),
    Env(String),
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Vault(n) => write!(f, "secret `{n}`"),
            SecretRef::Env(v) => write!(f, "environment variable `{v}`"),
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"{ secret = "NAME" } or { env = "VAR" }"#)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(
                    "a secret cannot be written in the configuration: store it with \
                     `latchkey secret set NAME` (value on standard input) and write \
                     `{ secret = \"NAME\" }` here, or `{ env = \"VAR\" }` to read it from the environment",
                ))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SecretRef, A::Error> {
                let mut found: Option<SecretRef> = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    if value.is_empty() {
                        return Err(de::Error::custom(format!(
                            "`{key}` must name a {}",
                            if key == "env" { "variable" } else { "secret" }
                        )));
                    }
                    let r = match key.as_str() {
                        "secret" => SecretRef::Vault(value),
                        "env" => SecretRef::Env(value),
                        other => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{other}` in a secret reference: write {{ secret = \"NAME\" }} or {{ env = \"VAR\" }}"
                            )));
                        }
                    };
                    if found.replace(r).is_some() {
                        return Err(de::Error::custom("give either `secret` or `env`, not both"));
                    }
                }
                found.ok_or_else(|| {
                    de::Error::custom(r#"empty secret reference: write { secret = "NAME" } or { env = "VAR" }"#)
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            SecretRef::Vault(n) => m.serialize_entry("secret", n)?,
            SecretRef::Env(v) => m.serialize_entry("env", v)?,
        }
        m.end()
    }
}

/// A PEM given inline (a public certificate is not secret) or by reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PemSource {
    Inline(String),
    Ref(SecretRef),
}
