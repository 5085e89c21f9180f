//! What an importer produces: one connector and its named calls, rendered as the
//! configuration's TOML (`[connectors.NAME]` and `[connectors.NAME.calls.CALL]`).

use std::collections::BTreeSet;

use latchkey_core::config::ParamType;
use secrecy::SecretString;
use serde_json::Value;
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table};

/// One imported connector.
#[derive(Debug, Default)]
pub struct Connector {
    pub base_url: String,
    pub auth: Auth,
    pub calls: Vec<Call>,
    /// Credentials found in the document (a pasted cURL command): secret name → value. They go
    /// to the vault, never into the TOML.
    pub found: Vec<(String, SecretString)>,
    /// Said on standard error: what was left out or needs the user's hand.
    pub notes: Vec<String>,
}

/// How the connector authenticates; every secret field names a vault secret.
#[derive(Debug, Default, Clone, PartialEq)]
pub enum Auth {
    #[default]
    None,
    ApiKeyHeader {
        name: String,
        prefix: Option<String>,
        secret: String,
    },
    ApiKeyQuery {
        name: String,
        secret: String,
    },
    Basic {
        username: String,
        secret: String,
    },
    ClientCredentials {
        token_url: String,
        scopes: Vec<String>,
        secret: String,
    },
    AuthorizationCode {
        authorize_url: String,
        token_url: String,
        scopes: Vec<String>,
        secret: String,
    },
}

/// The `client_id` written for OAuth methods when the document has none (it never does).
pub const CLIENT_ID_PLACEHOLDER: &str = "REPLACE-WITH-CLIENT-ID";

impl Auth {
    /// The vault secret this method reads, if any.
    pub fn secret(&self) -> Option<&str> {
        match self {
            Auth::None => None,
            Auth::ApiKeyHeader { secret, .. }
            | Auth::ApiKeyQuery { secret, .. }
            | Auth::Basic { secret, .. }
            | Auth::ClientCredentials { secret, .. }
            | Auth::AuthorizationCode { secret, .. } => Some(secret),
        }
    }

    fn item(&self) -> InlineTable {
        let mut t = InlineTable::new();
        let secret_ref = |name: &str| {
            let mut r = InlineTable::new();
            r.insert("secret", name.into());
            toml_edit::Value::InlineTable(r)
        };
        match self {
            Auth::None => {
                t.insert("method", "none".into());
            }
            Auth::ApiKeyHeader { name, prefix, secret } => {
                t.insert("method", "api_key_header".into());
                t.insert("name", name.as_str().into());
                if let Some(p) = prefix {
                    t.insert("prefix", p.as_str().into());
                }
                t.insert("key", secret_ref(secret));
            }
            Auth::ApiKeyQuery { name, secret } => {
                t.insert("method", "api_key_query".into());
                t.insert("name", name.as_str().into());
                t.insert("key", secret_ref(secret));
            }
            Auth::Basic { username, secret } => {
                t.insert("method", "basic".into());
                t.insert("username", username.as_str().into());
                t.insert("password", secret_ref(secret));
            }
            Auth::ClientCredentials { token_url, scopes, secret } => {
                t.insert("method", "oauth2_client_credentials".into());
                t.insert("token_url", token_url.as_str().into());
                t.insert("client_id", CLIENT_ID_PLACEHOLDER.into());
                t.insert("client_secret", secret_ref(secret));
                if !scopes.is_empty() {
                    t.insert("scope", toml_edit::Value::Array(scopes.iter().map(String::as_str).collect()));
                }
            }
            Auth::AuthorizationCode { authorize_url, token_url, scopes, secret } => {
                t.insert("method", "oauth2_authorization_code".into());
                t.insert("authorize_url", authorize_url.as_str().into());
                t.insert("token_url", token_url.as_str().into());
                t.insert("client_id", CLIENT_ID_PLACEHOLDER.into());
                t.insert("client_secret", secret_ref(secret));
                if !scopes.is_empty() {
                    t.insert("scope", toml_edit::Value::Array(scopes.iter().map(String::as_str).collect()));
                }
            }
        }
        t
    }
}

/// One named call.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Call {
    pub name: String,
    pub method: String,
    /// Starts with `/` (or is empty); may hold `<param>` placeholders.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// A JSON body template.
    pub body: Option<Value>,
    pub params: Vec<Param>,
    pub description: Option<String>,
}

/// One declared parameter.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub required: bool,
    pub default: Option<Value>,
    pub description: Option<String>,
    /// A fixed value no caller sees or sends (`private = true`, `value = …`).
    pub private: Option<Value>,
    /// The JSON type (`type = "integer"`), one of the configuration's type names.
    pub ty: Option<&'static str>,
    /// The values allowed (`enum = [...]`).
    pub one_of: Option<Vec<Value>>,
}

/// The configuration's parameter types.
const TYPES: &[&str] = &["string", "integer", "number", "boolean", "array", "object"];
/// An `enum` longer than this is left to the description.
const MAX_ENUM: usize = 100;

impl Call {
    /// Declares a parameter named after `wanted` (made a valid, unused name) and returns its
    /// name; `required` is dropped when there is a default (the configuration refuses both).
    pub fn add_param(
        &mut self,
        wanted: &str,
        required: bool,
        default: Option<Value>,
        description: Option<String>,
    ) -> String {
        let base = param_name(wanted);
        let mut name = base.clone();
        let mut n = 2;
        while self.params.iter().any(|p| p.name == name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        let default = default.filter(|d| !d.is_null() && toml_value(d).is_some());
        let required = required && default.is_none();
        self.params.push(Param { name: name.clone(), required, default, description, ..Param::default() });
        name
    }

    /// Gives parameter `name` the document's type and allowed values, as far as they agree
    /// with each other, with its default and with where it goes (`text`: a path, query or
    /// header, where lists and tables cannot go), so that the output passes `latchkey check`:
    /// a default given as text that reads as the type (`"20"` for an integer) becomes that
    /// type; a type the default does not have is left out, as is an `enum` its values, the
    /// type or the default do not fit.
    pub fn set_type(&mut self, name: &str, ty: Option<&str>, one_of: Option<&Value>, text: bool) {
        let Some(p) = self.params.iter_mut().find(|p| p.name == name) else { return };
        let mut ty = ty.and_then(|t| TYPES.iter().copied().find(|k| *k == t));
        if text && matches!(ty, Some("array" | "object")) {
            ty = None;
        }
        let parsed = ty.and_then(|t| serde_json::from_value::<ParamType>(Value::String(t.to_owned())).ok());
        if let (Some(t), Some(d)) = (parsed, &p.default)
            && !t.matches(d)
        {
            match d.as_str().and_then(|s| t.read(s)) {
                Some(read) => p.default = Some(read),
                None => ty = None,
            }
        }
        let parsed = ty.and_then(|t| serde_json::from_value::<ParamType>(Value::String(t.to_owned())).ok());
        p.ty = ty;
        let values: Option<Vec<Value>> = one_of.and_then(Value::as_array).map(|a| {
            a.iter()
                .filter(|v| !v.is_null())
                .map(|v| match (parsed, v.as_str()) {
                    // `enum: ["1", "2"]` on an integer: as the type.
                    (Some(t), Some(s)) if !t.matches(v) => t.read(s).unwrap_or_else(|| v.clone()),
                    _ => v.clone(),
                })
                .collect()
        });
        let fits = |vs: &Vec<Value>| {
            !vs.is_empty()
                && vs.len() <= MAX_ENUM
                && vs.iter().all(|v| {
                    toml_value(v).is_some()
                        && parsed.is_none_or(|t| t.matches(v))
                        && !(text && matches!(v, Value::Array(_) | Value::Object(_)))
                })
                && p.default.as_ref().is_none_or(|d| vs.contains(d))
        };
        p.one_of = values.filter(fits);
    }
}

/// A valid parameter name from any text: letters, digits and `_`, not starting with a digit.
pub fn param_name(text: &str) -> String {
    let mut s: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    s = s.trim_matches('_').to_owned();
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    if s.is_empty() {
        s = "param".to_owned();
    }
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

/// A valid connector or call name (letters, digits, `_` and `-`, at most 64).
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    let mut gap = false;
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            if gap && !out.is_empty() {
                out.push('_');
            }
            gap = false;
            out.push(c.to_ascii_lowercase());
        } else {
            gap = true;
        }
    }
    // A camelCase operationId stays readable without a split.
    out.truncate(64);
    if out.is_empty() { "call".to_owned() } else { out }
}

/// A name for a call that no call in `taken` has: `name`, else `name_2`, `name_3`…
pub fn unique(name: &str, taken: &mut BTreeSet<String>) -> String {
    let mut candidate = name.to_owned();
    let mut n = 2;
    while taken.contains(&candidate) {
        let suffix = format!("_{n}");
        let keep = name.len().min(64 - suffix.len());
        candidate = format!("{}{suffix}", &name[..keep]);
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// A JSON value as TOML, when it has one (TOML has no null).
pub fn toml_value(v: &Value) -> Option<toml_edit::Value> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) => f.into(),
            _ => return None,
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            let mut a = Array::new();
            for i in items {
                a.push(toml_value(i)?);
            }
            toml_edit::Value::Array(a)
        }
        Value::Object(map) => {
            let mut t = InlineTable::new();
            for (k, v) in map {
                t.insert(k, toml_value(v)?);
            }
            toml_edit::Value::InlineTable(t)
        }
    })
}

fn pairs(list: &[(String, String)]) -> InlineTable {
    let mut t = InlineTable::new();
    for (k, v) in list {
        t.insert(k, v.as_str().into());
    }
    t
}

impl Connector {
    /// `[connectors.NAME]` and its calls, as a table to place under `connectors`.
    pub fn table(&self) -> Table {
        let mut conn = Table::new();
        conn.insert("base_url", toml_edit::value(self.base_url.as_str()));
        conn.insert("auth", toml_edit::value(self.auth.item()));
        if !self.calls.is_empty() {
            let mut calls = Table::new();
            calls.set_implicit(true);
            for call in &self.calls {
                calls.insert(&call.name, Item::Table(call.table()));
            }
            conn.insert("calls", Item::Table(calls));
        }
        conn
    }

    /// The whole TOML text of this connector as its own file.
    pub fn to_toml(&self, name: &str) -> String {
        let mut doc = DocumentMut::new();
        let mut connectors = Table::new();
        connectors.set_implicit(true);
        connectors.insert(name, Item::Table(self.table()));
        doc.insert("connectors", Item::Table(connectors));
        doc.to_string()
    }
}

impl Call {
    fn table(&self) -> Table {
        let mut t = Table::new();
        if let Some(d) = &self.description {
            t.insert("description", toml_edit::value(one_line(d)));
        }
        t.insert("method", toml_edit::value(self.method.as_str()));
        t.insert("path", toml_edit::value(self.path.as_str()));
        if !self.query.is_empty() {
            t.insert("query", toml_edit::value(pairs(&self.query)));
        }
        if !self.headers.is_empty() {
            t.insert("headers", toml_edit::value(pairs(&self.headers)));
        }
        if let Some(body) = &self.body {
            t.insert("body", toml_edit::value(body.to_string()));
        }
        if !self.params.is_empty() {
            let mut params = Table::new();
            for p in &self.params {
                let mut spec = InlineTable::new();
                if let Some(v) = p.private.as_ref().and_then(toml_value) {
                    spec.insert("private", true.into());
                    spec.insert("value", v);
                } else if p.required {
                    spec.insert("required", true.into());
                }
                if let Some(v) = p.default.as_ref().and_then(toml_value) {
                    spec.insert("default", v);
                }
                if let Some(t) = p.ty {
                    spec.insert("type", t.into());
                }
                if let Some(v) = p.one_of.as_ref().and_then(|v| toml_value(&Value::Array(v.clone()))) {
                    spec.insert("enum", v);
                }
                if let Some(d) = &p.description {
                    spec.insert("description", one_line(d).into());
                }
                params.insert(&p.name, toml_edit::value(spec));
            }
            t.insert("params", Item::Table(params));
        }
        t
    }
}

/// Descriptions are written on one line, at most 300 characters.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > 300 { format!("{}…", joined.chars().take(299).collect::<String>()) } else { joined }
}

/// Replaces every path segment that looks like a value (a number, a UUID, a long hex or
/// base-62 id) with a required parameter whose default is that value.
pub fn parametrize_path(call: &mut Call, path: &str) -> String {
    let mut out = String::new();
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        if looks_like_id(seg) {
            let before = segments[..i].iter().rev().find(|s| !s.is_empty() && !looks_like_id(s));
            let wanted = match before {
                Some(b) => format!("{}_id", singular(b)),
                None => "id".to_owned(),
            };
            let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy().into_owned();
            let name = call.add_param(&wanted, false, Some(Value::String(decoded)), None);
            out.push('<');
            out.push_str(&name);
            out.push('>');
        } else {
            out.push_str(seg);
        }
    }
    out
}

fn singular(word: &str) -> String {
    let w = param_name(word);
    if let Some(stem) = w.strip_suffix("ies") {
        format!("{stem}y")
    } else if w.ends_with("ss") {
        w
    } else if let Some(stem) = w.strip_suffix('s') {
        stem.to_owned()
    } else {
        w
    }
}

/// A path segment that is a value rather than a name.
pub fn looks_like_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let digits = seg.chars().filter(char::is_ascii_digit).count();
    let all_digits = digits == seg.len();
    let uuid = seg.len() == 36
        && seg
            .chars()
            .enumerate()
            .all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() });
    let hex = seg.len() >= 16 && seg.chars().all(|c| c.is_ascii_hexdigit());
    // `cus_9s8d7f6g5h`, `ch_3MqLi2`: a prefix and a random tail with digits.
    let prefixed = seg.len() >= 10
        && digits >= 2
        && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && seg.chars().any(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    all_digits || uuid || hex || prefixed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_valid_and_unique() {
        assert_eq!(param_name("X-Request-Id"), "x_request_id");
        assert_eq!(param_name("2fa"), "_2fa");
        assert_eq!(param_name("--"), "param");
        assert_eq!(slug("GET /users/{id}/repos"), "get_users_id_repos");
        assert_eq!(slug("listPets"), "listpets");
        let mut taken = BTreeSet::new();
        assert_eq!(unique("a", &mut taken), "a");
        assert_eq!(unique("a", &mut taken), "a_2");
        assert_eq!(unique("a", &mut taken), "a_3");
    }

    #[test]
    fn ids_in_a_path_become_parameters_with_their_value_as_default() {
        let mut call = Call::default();
        let path = parametrize_path(&mut call, "/v1/users/42/orders/3fa85f64-5717-4562-b3fc-2c963f66afa6/items");
        assert_eq!(path, "/v1/users/<user_id>/orders/<order_id>/items");
        assert_eq!(call.params[0].default, Some(Value::String("42".into())));
        assert!(!call.params[0].required, "a default and `required` are exclusive");
        assert!(!looks_like_id("v1") && !looks_like_id("users") && !looks_like_id("basic-auth"));
        assert!(looks_like_id("cus_9s8d7f6g5h") && looks_like_id("0123456789abcdef0123"));
    }

    #[test]
    fn the_toml_passes_the_validator() {
        let mut call = Call { name: "get_user".into(), method: "POST".into(), ..Call::default() };
        call.path = parametrize_path(&mut call, "/users/7");
        let n = call.add_param("X-Trace", true, None, Some("a\n  trace".into()));
        call.headers.push(("X-Trace".into(), format!("<{n}>")));
        let q = call.add_param("limit", false, Some(serde_json::json!(10)), None);
        call.query.push(("limit".into(), format!("<{q}>")));
        let b = call.add_param("name", false, Some(serde_json::json!("x")), None);
        call.body = Some(serde_json::json!({"name": format!("<{b}>"), "tags": [1, 2]}));
        let conn = Connector {
            base_url: "https://api.example.com".into(),
            auth: Auth::ApiKeyHeader {
                name: "Authorization".into(),
                prefix: Some("Bearer".into()),
                secret: "ex_key".into(),
            },
            calls: vec![call],
            ..Connector::default()
        };
        let text = conn.to_toml("ex");
        let config = latchkey_core::config::Config::parse(&text, "import").unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.connectors.len(), 1);
        assert!(text.contains("[connectors.ex.calls.get_user]"), "{text}");
        assert!(text.contains("description = \"a trace\""), "{text}");
    }
}
