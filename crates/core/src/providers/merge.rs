//! `provider = "NAME"`: the template's connector table, its parameters put in, merged under the
//! connector's own table before the connector is parsed, so every problem still names the
//! file, the connector and the field (and the template, when the template's value is wrong).

use serde_json::{Map, Value};

use super::{ParamKind, Template};

/// Tables merged key by key (the connector's key wins, the template's others stay); any other
/// value the connector writes replaces the template's whole (a scope list, `refresh_on`, a
/// call). `auth` merges only when the connector keeps the template's method.
const MERGED: &[&str] = &[
    "",
    "auth",
    "headers",
    "query",
    "calls",
    "auth.extra_authorize_params",
    "auth.token_headers",
    "auth.values",
    "auth.jwt",
];

/// Problems as (field, message).
pub type Problems = Vec<(String, String)>;

/// A connector with its template applied.
#[derive(Debug)]
pub struct Applied {
    /// The connector's table with the template's under it.
    pub json: Value,
    pub template: &'static Template,
    /// Fields whose value is the template's, not the connector's.
    taken: Vec<String>,
}

impl Applied {
    /// Adds to a problem found in the merged connector where it came from: the template's
    /// value (and how to replace it), or a field the template leaves to the connector.
    pub fn annotate(&self, field: Option<&str>, message: &mut String) {
        let Some(field) = field else { return };
        let name = &self.template.name;
        if self.template.needs.iter().any(|n| n.field == field) {
            message.push_str(&format!(
                " (provider `{name}` leaves this field to the connector: `latchkey providers show {name}` says what to write)"
            ));
            return;
        }
        if message.starts_with("missing") {
            return;
        }
        if self.taken.iter().any(|t| field == t || field.starts_with(&format!("{t}."))) {
            message.push_str(&format!(
                " (this value comes from provider template `{name}`: write `{field}` in the connector to replace it)"
            ));
        }
    }
}

/// The connector `own` with its template applied, or `None` when it names no provider; the
/// problems (field, message) when the provider or its parameters are wrong.
pub fn apply(own: &Map<String, Value>) -> Option<Result<Applied, Problems>> {
    let provider = own.get("provider")?;
    Some(applied(provider, own))
}

fn applied(provider: &Value, own: &Map<String, Value>) -> Result<Applied, Problems> {
    let Some(name) = provider.as_str() else {
        return Err(vec![("provider".into(), "must be the name of a provider template, a string".into())]);
    };
    let Some(template) = super::get(name) else {
        return Err(vec![(
            "provider".into(),
            format!(
                "no provider template is named `{name}`: `latchkey providers list` shows them (one of: {})",
                super::names()
            ),
        )]);
    };
    let values = params(template, own.get("provider_params"))?;
    let mut filled = template.connector.clone();
    fill(&mut filled, &values);
    let mut taken = Vec::new();
    let json = merge(filled, Value::Object(own.clone()), "", &mut taken);
    Ok(Applied { json, template, taken })
}

/// The value of each of the template's parameters, checked.
fn params(template: &Template, given: Option<&Value>) -> Result<Vec<(String, String)>, Problems> {
    let name = &template.name;
    let mut problems = Vec::new();
    let empty = Map::new();
    let given = match given {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => {
            return Err(vec![(
                "provider_params".into(),
                "must be a table of parameter = \"value\", e.g. `provider_params = { subdomain = \"acme\" }`".into(),
            )]);
        }
    };
    for key in given.keys() {
        if !template.params.contains_key(key) {
            let takes = if template.params.is_empty() {
                "takes no parameters".to_owned()
            } else {
                format!("takes: {}", template.params.keys().map(String::as_str).collect::<Vec<_>>().join(", "))
            };
            problems.push((
                format!("provider_params.{key}"),
                format!("provider `{name}` has no parameter `{key}`; it {takes}"),
            ));
        }
    }
    let mut values = Vec::new();
    for (key, param) in &template.params {
        let value = match given.get(key) {
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                problems.push((format!("provider_params.{key}"), "must be a string".into()));
                continue;
            }
            None => match &param.default {
                Some(d) => d.clone(),
                None => {
                    problems.push((
                        format!("provider_params.{key}"),
                        format!(
                            "missing: provider `{name}` needs `{key}` ({}): write `provider_params = {{ {key} = \"{}\" }}`",
                            param.about, param.example
                        ),
                    ));
                    continue;
                }
            },
        };
        match checked(param.kind, &value) {
            Ok(v) => values.push((key.clone(), v)),
            Err(why) => problems.push((format!("provider_params.{key}"), format!("`{value}` {why}"))),
        }
    }
    if problems.is_empty() { Ok(values) } else { Err(problems) }
}

/// A parameter's value as it goes into the template, or why it may not.
fn checked(kind: ParamKind, value: &str) -> Result<String, &'static str> {
    match kind {
        ParamKind::Name => {
            if name(value) {
                Ok(value.to_owned())
            } else {
                Err("may use letters, digits, `-`, `_` and `.` only")
            }
        }
        ParamKind::List => {
            if value.len() <= 200 && value.split(',').all(name) {
                Ok(value.to_owned())
            } else {
                Err("must be names (letters, digits, `-`, `_` and `.`) joined by commas, without spaces")
            }
        }
        ParamKind::Origin => {
            let url = url::Url::parse(value).map_err(|_| "is not a URL: write it as `https://host`")?;
            let bare = url.username().is_empty()
                && url.password().is_none()
                && url.query().is_none()
                && url.fragment().is_none()
                && url.path() == "/";
            if url.scheme() != "https" || url.host_str().is_none() || !bare {
                return Err("must be an `https://host` origin, without a path, query or credentials");
            }
            Ok(url.origin().ascii_serialization())
        }
    }
}

/// A host label or a path segment: letters, digits, `-`, `_` and `.` (not first, not twice).
fn name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 100
        && !value.starts_with('.')
        && !value.contains("..")
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Puts each `{param}` of the template's strings.
fn fill(v: &mut Value, values: &[(String, String)]) {
    match v {
        Value::String(s) => {
            for (k, value) in values {
                let mark = format!("{{{k}}}");
                if s.contains(&mark) {
                    *s = s.replace(&mark, value);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| fill(v, values)),
        Value::Object(m) => m.values_mut().for_each(|v| fill(v, values)),
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// `own` over `template`: see [`MERGED`]. Records in `taken` each field kept from the template.
fn merge(template: Value, own: Value, path: &str, taken: &mut Vec<String>) -> Value {
    match (template, own) {
        (Value::Object(mut t), Value::Object(o)) if MERGED.contains(&path) && same_method(path, &t, &o) => {
            taken.extend(t.keys().filter(|k| !o.contains_key(*k)).map(|k| join(path, k)));
            for (k, ov) in o {
                let at = join(path, &k);
                let merged = match t.remove(&k) {
                    Some(tv) => merge(tv, ov, &at, taken),
                    None => ov,
                };
                t.insert(k, merged);
            }
            Value::Object(t)
        }
        (_, own) => own,
    }
}

/// `auth` merges only when the connector names no other method than the template's.
fn same_method(path: &str, t: &Map<String, Value>, o: &Map<String, Value>) -> bool {
    path != "auth" || o.get("method").is_none_or(|m| Some(m) == t.get("method"))
}
