//! The provider catalog: connector templates for common APIs (`providers/NAME.toml` at the
//! repository's root, embedded in the binary by `build.rs`). A connector that says
//! `provider = "NAME"` gets the template's `[connector]` table merged under its own, field by
//! field, before validation ([`apply`]); what the connector writes itself wins. Templates
//! with per-account URLs take parameters (`provider_params = { subdomain = "acme" }`), put
//! into the template's text where it says `{subdomain}`.

mod merge;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use merge::{Applied, apply};

include!(concat!(env!("OUT_DIR"), "/providers.rs"));

/// One provider template, as its file says.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// The file's name without `.toml`: what `provider = "…"` says.
    #[serde(default)]
    pub name: String,
    /// The provider and the way in, for people ("Google (user OAuth)").
    pub title: String,
    /// The provider's documentation the template's facts were taken from.
    pub docs: Vec<String>,
    /// The provider's quirks the template handles, and what the user should know.
    #[serde(default)]
    pub notes: Vec<String>,
    /// Parameters that go into the template's URLs (`{name}`).
    #[serde(default)]
    pub params: BTreeMap<String, Param>,
    /// Fields the connector must write itself (the client id, the secrets).
    #[serde(default)]
    pub needs: Vec<Need>,
    /// The connector table the template fills: the shape of `[connectors.NAME]`.
    pub connector: Value,
}

/// A parameter of a template.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Param {
    pub about: String,
    /// Used when the connector gives none; without it the parameter is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default)]
    pub kind: ParamKind,
    /// An example value, for `providers show` and the tests.
    pub example: String,
}

/// What a parameter's value may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// A host label or a path segment: letters, digits, `-`, `_` and `.` (not first).
    #[default]
    Name,
    /// An `https://` origin (no path, query or credentials), e.g. a Salesforce instance URL.
    Origin,
    /// Names as [`ParamKind::Name`] joined by commas (no spaces), for a query value such as
    /// Trello's `scope=read,write`.
    List,
}

/// A field the connector must write itself.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Need {
    /// Its dotted path in the connector (`auth.client_id`).
    pub field: String,
    /// A secret: written as a secret reference, its value stored with `latchkey secret set`.
    #[serde(default)]
    pub secret: bool,
    pub about: String,
}

/// Why a template's file is not a template (the tests make sure none is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenTemplate {
    pub name: String,
    pub why: String,
}

/// Every template, parsed once. A file that does not parse is left out and reported by
/// [`broken`] (the tests make sure none is).
fn catalog() -> &'static (BTreeMap<String, Template>, Vec<BrokenTemplate>) {
    static CATALOG: OnceLock<(BTreeMap<String, Template>, Vec<BrokenTemplate>)> = OnceLock::new();
    CATALOG.get_or_init(|| {
        let mut ok = BTreeMap::new();
        let mut broken = Vec::new();
        for (name, text) in TEMPLATES {
            match parse(name, text) {
                Ok(t) => {
                    ok.insert((*name).to_owned(), t);
                }
                Err(why) => broken.push(BrokenTemplate { name: (*name).to_owned(), why }),
            }
        }
        (ok, broken)
    })
}

fn parse(name: &str, text: &str) -> Result<Template, String> {
    let table: toml::Table = toml::from_str(text).map_err(|e| e.message().to_owned())?;
    let json = serde_json::to_value(table).map_err(|e| e.to_string())?;
    let mut t: Template = serde_path_to_error::deserialize(json).map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    if !t.connector.is_object() {
        return Err("`connector` must be a table".into());
    }
    t.name = name.to_owned();
    Ok(t)
}

/// The template named `name`.
pub fn get(name: &str) -> Option<&'static Template> {
    catalog().0.get(name)
}

/// Every template, by name.
pub fn all() -> impl Iterator<Item = &'static Template> {
    catalog().0.values()
}

/// Template files that did not parse.
pub fn broken() -> &'static [BrokenTemplate] {
    &catalog().1
}

/// Every template's name, for messages.
pub fn names() -> String {
    catalog().0.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

impl Template {
    /// The auth method the template fills.
    pub fn method(&self) -> Option<&str> {
        self.connector.get("auth").and_then(|a| a.get("method")).and_then(Value::as_str)
    }

    /// The secrets the user must store, as (field, suggested secret name) for a connector
    /// named `connector`.
    pub fn secrets(&self, connector: &str) -> Vec<(String, String)> {
        self.needs
            .iter()
            .filter(|n| n.secret)
            .map(|n| (n.field.clone(), format!("{connector}_{}", n.field.rsplit('.').next().unwrap_or(&n.field))))
            .collect()
    }

    /// A connector that uses this template, as JSON: `provider`, each parameter's example (or
    /// nothing for a parameter with a default), and each needed field: a secret reference
    /// named as [`Template::secrets`] says, else `placeholder` with the field's name.
    pub fn example(&self, connector: &str, with_defaults: bool) -> Value {
        let mut c = serde_json::Map::new();
        c.insert("provider".into(), Value::String(self.name.clone()));
        let params: serde_json::Map<String, Value> = self
            .params
            .iter()
            .filter(|(_, p)| with_defaults || p.default.is_none())
            .map(|(k, p)| (k.clone(), Value::String(p.example.clone())))
            .collect();
        if !params.is_empty() {
            c.insert("provider_params".into(), Value::Object(params));
        }
        let secrets: BTreeMap<String, String> = self.secrets(connector).into_iter().collect();
        for need in &self.needs {
            let value = match secrets.get(&need.field) {
                Some(secret) => serde_json::json!({ "secret": secret }),
                None => {
                    Value::String(format!("YOUR_{}", need.field.rsplit('.').next().unwrap_or("VALUE").to_uppercase()))
                }
            };
            set_field(&mut c, &need.field, value);
        }
        Value::Object(c)
    }
}

/// Sets the dotted `field` of `table` to `value`, making the tables on the way (a value that
/// is not a table on the way is left as it is): how a form's `auth.client_id` becomes a
/// connector's field.
pub fn set_field(table: &mut serde_json::Map<String, Value>, field: &str, value: Value) {
    match field.split_once('.') {
        None => {
            table.insert(field.to_owned(), value);
        }
        Some((head, rest)) => {
            let slot = table.entry(head.to_owned()).or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Value::Object(next) = slot {
                set_field(next, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests;
