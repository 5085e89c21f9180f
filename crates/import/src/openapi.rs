//! `latchkey import openapi`: an OpenAPI 3.x or Swagger 2.0 document (JSON or YAML) → a
//! connector (its security scheme the auth method) and a named call per operation.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use serde_json::{Map, Value};

use super::model::{Auth, Call, Connector, slug, unique};

/// Which operations to import: every one when both are empty.
pub struct Select {
    pub tags: Vec<String>,
    pub operations: Vec<String>,
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];
/// Headers a call cannot set, or that the call sets itself.
const SKIPPED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-type",
];
/// `$ref`s followed one inside another at most (a cycle stops here).
const MAX_REF_DEPTH: usize = 32;
/// YAML nodes a document may expand to, aliases counted as copies (an alias bomb stops here).
const MAX_YAML_NODES: u64 = 4_000_000;

/// Parses `text` (JSON, or YAML) as a document.
pub fn parse_document(text: &str) -> anyhow::Result<Value> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') {
        return serde_json::from_str(trimmed).map_err(|e| {
            anyhow::anyhow!(
                "not valid JSON ({e}): give the whole document as the API publishes it (a download cut short or \
                 a hand edit fails here), or its YAML form"
            )
        });
    }
    yaml_budget(trimmed)?;
    let docs = yaml_rust2::YamlLoader::load_from_str(trimmed).map_err(not_yaml)?;
    let Some(doc) = docs.into_iter().next() else {
        bail!("the document is empty: give the file or URL of the API's OpenAPI (or Swagger) document")
    };
    Ok(yaml_to_json(doc))
}

/// Refuses a YAML text whose aliases would expand past [`MAX_YAML_NODES`] (the loader copies
/// each alias's node).
fn yaml_budget(text: &str) -> anyhow::Result<()> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let mut sizes: BTreeMap<usize, u64> = BTreeMap::new();
    let mut stack: Vec<(usize, u64)> = vec![(0, 0)];
    loop {
        let (event, _) = parser.next_token().map_err(not_yaml)?;
        let leaf = match event {
            Event::StreamEnd => break,
            Event::SequenceStart(aid, _) | Event::MappingStart(aid, _) => {
                stack.push((aid, 1));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => stack.pop().map(|(aid, n)| {
                if aid > 0 {
                    sizes.insert(aid, n);
                }
                n
            }),
            Event::Scalar(_, _, aid, _) => {
                if aid > 0 {
                    sizes.insert(aid, 1);
                }
                Some(1)
            }
            Event::Alias(id) => Some(sizes.get(&id).copied().unwrap_or(1)),
            _ => None,
        };
        if let (Some(n), Some(top)) = (leaf, stack.last_mut()) {
            top.1 = top.1.saturating_add(n);
            if top.1 > MAX_YAML_NODES {
                bail!(
                    "the YAML document expands to more than {MAX_YAML_NODES} values (aliases): refused; give its \
                     JSON form, or a YAML document whose anchors are not repeated so often"
                );
            }
        }
    }
    Ok(())
}

/// A text that is neither JSON nor YAML: most often not the document at all (an HTML page).
fn not_yaml(e: yaml_rust2::ScanError) -> anyhow::Error {
    anyhow::anyhow!(
        "neither JSON nor valid YAML ({e}): give the OpenAPI or Swagger document itself as JSON or YAML (a \
         documentation page's URL answers HTML: look there for the link to `openapi.json` or `swagger.yaml`)"
    )
}

fn yaml_to_json(y: yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Real(s) => {
            s.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map_or(Value::String(s), Value::Number)
        }
        Yaml::Integer(i) => Value::from(i),
        Yaml::String(s) => Value::String(s),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Array(a) => Value::Array(a.into_iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.into_iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) | Yaml::Real(s) => s,
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        _ => String::new(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Yaml::Null | Yaml::Alias(_) | Yaml::BadValue => Value::Null,
    }
}

/// The document's parts an import reads, resolved against its own `$ref`s.
struct Doc<'a> {
    root: &'a Value,
    v2: bool,
}

impl<'a> Doc<'a> {
    /// `value`, or what its local `$ref` points at (followed up to [`MAX_REF_DEPTH`] times).
    fn resolve(&self, mut value: &'a Value) -> &'a Value {
        for _ in 0..MAX_REF_DEPTH {
            let Some(r) = value.get("$ref").and_then(Value::as_str) else { return value };
            let Some(pointer) = r.strip_prefix('#') else { return &Value::Null };
            match self.root.pointer(pointer) {
                Some(v) => value = v,
                None => return &Value::Null,
            }
        }
        &Value::Null
    }
}

fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty())
}

pub fn import(text_in: &str, name: Option<&str>, select: &Select) -> anyhow::Result<(String, Connector)> {
    let root = parse_document(text_in)?;
    let v2 = match (text(&root, "openapi"), text(&root, "swagger")) {
        (Some(v), _) if v.starts_with('3') => false,
        (_, Some(v)) if v.starts_with('2') => true,
        (Some(v), _) | (_, Some(v)) => bail!(
            "OpenAPI {v} is not read here, only OpenAPI 3.x and Swagger 2.0: convert the document to one of \
             those (or ask the API for it) and import that"
        ),
        (None, None) => bail!(
            "not an OpenAPI document: it has neither `openapi: 3.x` nor `swagger: \"2.0\"`; give the API's \
             OpenAPI or Swagger document (a Postman collection is imported with `latchkey import postman`, a \
             single request with `latchkey import curl`)"
        ),
    };
    let doc = Doc { root: &root, v2 };
    let title = root.get("info").and_then(|i| text(i, "title")).unwrap_or("api");
    let conn_name = name.map_or_else(|| slug(title), str::to_owned);
    let mut notes = Vec::new();
    let mut conn = Connector { base_url: base_url(&root, v2, &mut notes), ..Connector::default() };

    let mut taken = BTreeSet::new();
    let mut used_schemes: Vec<(String, Vec<String>)> = Vec::new();
    let global_security = root.get("security");
    let Some(paths) = root.get("paths").and_then(Value::as_object) else {
        bail!(
            "the document has no `paths` (no operations to make calls of): give the document that lists the \
             API's operations, bundled into one file when it is split across several"
        );
    };
    for (path, item) in paths {
        let item = doc.resolve(item);
        let shared = item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        for method in METHODS {
            let Some(op) = item.get(*method) else { continue };
            let id = text(op, "operationId");
            let tags: Vec<&str> = op
                .get("tags")
                .and_then(Value::as_array)
                .map_or(Vec::new(), |t| t.iter().filter_map(Value::as_str).collect());
            let wanted_name = match id {
                Some(id) => snake(id),
                None => slug(&format!("{method} {path}")),
            };
            if !select.tags.is_empty() && !tags.iter().any(|t| select.tags.iter().any(|s| s == t)) {
                continue;
            }
            if !select.operations.is_empty()
                && !select.operations.iter().any(|o| Some(o.as_str()) == id || *o == wanted_name)
            {
                continue;
            }
            for req in op.get("security").or(global_security).and_then(Value::as_array).into_iter().flatten() {
                for (scheme, scopes) in req.as_object().into_iter().flatten() {
                    let scopes = scopes
                        .as_array()
                        .map_or(Vec::new(), |s| s.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect());
                    match used_schemes.iter_mut().find(|(n, _)| n == scheme) {
                        Some((_, all)) => all.extend(scopes),
                        None => used_schemes.push((scheme.clone(), scopes)),
                    }
                }
            }
            let mut call =
                Call { name: unique(&wanted_name, &mut taken), method: method.to_ascii_uppercase(), ..Call::default() };
            call.description = text(op, "summary").or_else(|| text(op, "description")).map(str::to_owned);
            let mut params: Vec<&Value> = Vec::new();
            for p in op.get("parameters").and_then(Value::as_array).into_iter().flatten().chain(shared.iter()) {
                let p = doc.resolve(p);
                let key = (text(p, "name"), text(p, "in"));
                if !params.iter().any(|q| (text(q, "name"), text(q, "in")) == key) {
                    params.push(p);
                }
            }
            operation(&doc, &mut call, path, op, &params, &mut notes);
            conn.calls.push(call);
        }
    }
    conn.auth = auth(&doc, &conn_name, &conn.base_url, &used_schemes, &mut notes);
    // The parameters the auth method fills are not the caller's.
    let auth_name = match &conn.auth {
        Auth::ApiKeyHeader { name, .. } => Some(("header", name.to_ascii_lowercase())),
        Auth::ApiKeyQuery { name, .. } => Some(("query", name.to_ascii_lowercase())),
        Auth::Basic { .. } | Auth::ClientCredentials { .. } | Auth::AuthorizationCode { .. } => {
            Some(("header", "authorization".to_owned()))
        }
        Auth::None => None,
    };
    if let Some((place, auth_name)) = auth_name {
        for call in &mut conn.calls {
            let list = if place == "header" { &mut call.headers } else { &mut call.query };
            let mut dropped = Vec::new();
            list.retain(|(k, v)| {
                let keep = k.to_ascii_lowercase() != auth_name;
                if !keep {
                    dropped.push(v.trim_matches(['<', '>']).to_owned());
                }
                keep
            });
            call.params.retain(|p| !dropped.contains(&p.name));
        }
    }
    notes.sort();
    notes.dedup();
    conn.notes = notes;
    Ok((conn_name, conn))
}

/// `getPetById` → `get_pet_by_id`.
fn snake(id: &str) -> String {
    let mut out = String::new();
    let mut prev_lower = false;
    for c in id.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c);
    }
    slug(&out)
}

fn base_url(root: &Value, v2: bool, notes: &mut Vec<String>) -> String {
    if v2 {
        let host = text(root, "host");
        let base = text(root, "basePath").unwrap_or("");
        let schemes: Vec<&str> = root
            .get("schemes")
            .and_then(Value::as_array)
            .map_or(Vec::new(), |s| s.iter().filter_map(Value::as_str).collect());
        let scheme = if schemes.is_empty() || schemes.contains(&"https") { "https" } else { schemes[0] };
        return match host {
            Some(h) => format!("{scheme}://{h}{}", base.trim_end_matches('/')),
            None => {
                notes.push("the document names no host: give the server with --base-url".into());
                base.trim_end_matches('/').to_owned()
            }
        };
    }
    let Some(server) = root.get("servers").and_then(Value::as_array).and_then(|s| s.first()) else {
        notes.push("the document names no server: give it with --base-url".into());
        return String::new();
    };
    let mut url = text(server, "url").unwrap_or("").to_owned();
    for (var, spec) in server.get("variables").and_then(Value::as_object).into_iter().flatten() {
        if let Some(d) = spec.get("default").and_then(Value::as_str) {
            url = url.replace(&format!("{{{var}}}"), d);
        }
    }
    if !url.contains("://") {
        notes.push(format!("the document's server `{url}` is relative: give the whole URL with --base-url"));
    }
    url.trim_end_matches('/').to_owned()
}

/// Fills `call` from one operation: path, query and header parameters, and a JSON body.
fn operation(doc: &Doc<'_>, call: &mut Call, path: &str, op: &Value, params: &[&Value], notes: &mut Vec<String>) {
    let mut path_names: BTreeMap<String, String> = BTreeMap::new();
    let mut form = false;
    for p in params {
        let (Some(name), Some(place)) = (text(p, "name"), text(p, "in")) else { continue };
        let schema = if doc.v2 { *p } else { doc.resolve(p.get("schema").unwrap_or(&Value::Null)) };
        let default = schema.get("default").cloned();
        let description = describe(p, schema);
        match place {
            // A path parameter is required whatever the document says (some forget to say so).
            "path" => {
                let n = call.add_param(name, true, default, description);
                call.set_type(&n, schema_type(schema), schema.get("enum"), true);
                path_names.insert(name.to_owned(), n);
            }
            "query" => {
                let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
                let n = call.add_param(name, required, default, description);
                call.set_type(&n, schema_type(schema), schema.get("enum"), true);
                call.query.push((name.to_owned(), format!("<{n}>")));
            }
            "header" => {
                if SKIPPED_HEADERS.contains(&name.to_ascii_lowercase().as_str())
                    || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_!#$%&'*+.^`|~".contains(c))
                {
                    continue;
                }
                let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
                let n = call.add_param(name, required, default, description);
                call.set_type(&n, schema_type(schema), schema.get("enum"), true);
                call.headers.push((name.to_owned(), format!("<{n}>")));
            }
            "body" => {
                let schema = doc.resolve(p.get("schema").unwrap_or(&Value::Null));
                body(doc, call, schema, p.get("required").and_then(Value::as_bool).unwrap_or(false));
            }
            "formData" => form = true,
            _ => notes
                .push(format!("`{name}` (a {place} parameter) is not imported: calls send no cookies of their own")),
        }
    }
    if let Some(rb) = op.get("requestBody").map(|r| doc.resolve(r)) {
        let content = rb.get("content").and_then(Value::as_object);
        let json = content.and_then(|c| {
            c.iter().find(|(ct, _)| {
                let ct = ct.to_ascii_lowercase();
                ct.starts_with("application/json") || ct.contains("+json") || ct == "*/*"
            })
        });
        match json {
            Some((_, media)) => {
                let schema = doc.resolve(media.get("schema").unwrap_or(&Value::Null));
                body(doc, call, schema, rb.get("required").and_then(Value::as_bool).unwrap_or(false));
            }
            None if content.is_some_and(|c| !c.is_empty()) => form = true,
            None => {}
        }
    }
    if form {
        notes.push(format!(
            "`{}`: a form or file body is not imported (named calls send JSON bodies); use the proxy for it",
            call.name
        ));
    }
    // `{name}` → `<name>`; a `{name}` the parameters forgot is declared, required.
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else { break };
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..open + close];
        let n = match path_names.get(name) {
            Some(n) => n.clone(),
            None => {
                let n = call.add_param(name, true, None, None);
                path_names.insert(name.to_owned(), n.clone());
                n
            }
        };
        out.push('<');
        out.push_str(&n);
        out.push('>');
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    // A path with its own query (`/items?kind=a`, which some documents write): the fixed pairs
    // go to the call's query; a fragment is dropped.
    let out = out.split('#').next().unwrap_or_default().to_owned();
    call.path = match out.split_once('?') {
        Some((p, q)) => {
            call.query.extend(url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())));
            p.to_owned()
        }
        None => out,
    };
}

/// A JSON body: an object's properties become parameters (required as the schema says, with
/// its defaults and descriptions); anything else is one parameter `body`.
fn body(doc: &Doc<'_>, call: &mut Call, schema: &Value, required: bool) {
    let mut props: Map<String, Value> = Map::new();
    let mut required_props: Vec<String> = Vec::new();
    collect_properties(doc, schema, &mut props, &mut required_props, 0);
    if props.is_empty() {
        let n = call.add_param("body", required, None, Some("the request's JSON body".into()));
        call.set_type(&n, schema_type(schema), None, false);
        call.body = Some(Value::String(format!("<{n}>")));
        return;
    }
    let mut template = Map::new();
    for (prop, spec) in props {
        let spec = doc.resolve(&spec);
        if spec.get("readOnly").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let n =
            call.add_param(&prop, required_props.contains(&prop), spec.get("default").cloned(), describe(spec, spec));
        call.set_type(&n, schema_type(spec), spec.get("enum"), false);
        template.insert(prop, Value::String(format!("<{n}>")));
    }
    call.body = Some(Value::Object(template));
}

fn collect_properties(
    doc: &Doc<'_>,
    schema: &Value,
    props: &mut Map<String, Value>,
    required: &mut Vec<String>,
    depth: usize,
) {
    let schema = doc.resolve(schema);
    if depth > MAX_REF_DEPTH {
        return;
    }
    for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        collect_properties(doc, part, props, required, depth + 1);
    }
    for (k, v) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
        props.insert(k.clone(), v.clone());
    }
    required.extend(
        schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned)),
    );
}

/// A schema's `type`: the word, or (OpenAPI 3.1) the one type of a list besides `null`.
fn schema_type(schema: &Value) -> Option<&str> {
    match schema.get("type")? {
        Value::String(t) => Some(t),
        Value::Array(list) => {
            let mut types = list.iter().filter_map(Value::as_str).filter(|t| *t != "null");
            let one = types.next();
            if types.next().is_some() { None } else { one }
        }
        _ => None,
    }
}

/// `(integer) The pet's id`: the type, the description, the allowed values.
fn describe(p: &Value, schema: &Value) -> Option<String> {
    let ty = text(schema, "type").map(|t| match text(schema, "format") {
        Some(f) => format!("{t}, {f}"),
        None => t.to_owned(),
    });
    let desc = text(p, "description").or_else(|| text(schema, "description"));
    let choices = schema.get("enum").and_then(Value::as_array).map(|e| {
        e.iter()
            .take(20)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let mut out = String::new();
    if let Some(t) = ty {
        out.push_str(&format!("({t})"));
    }
    if let Some(d) = desc {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(d);
    }
    if let Some(c) = choices {
        out.push_str(&format!(" one of: {c}"));
    }
    let out = out.trim().to_owned();
    (!out.is_empty()).then_some(out)
}

/// The auth method: the first scheme the chosen operations require (with the scopes they
/// ask), else the first the document defines.
fn auth(doc: &Doc<'_>, conn: &str, base_url: &str, used: &[(String, Vec<String>)], notes: &mut Vec<String>) -> Auth {
    let defs = if doc.v2 {
        doc.root.get("securityDefinitions")
    } else {
        doc.root.get("components").and_then(|c| c.get("securitySchemes"))
    };
    let Some(defs) = defs.and_then(Value::as_object) else { return Auth::None };
    let mut candidates: Vec<(&str, Vec<String>)> = used.iter().map(|(n, s)| (n.as_str(), s.clone())).collect();
    if candidates.is_empty() {
        candidates = defs.keys().map(|k| (k.as_str(), Vec::new())).collect();
    }
    for (scheme_name, scopes) in candidates {
        let Some(def) = defs.get(scheme_name).map(|d| doc.resolve(d)) else { continue };
        let mut scopes: Vec<String> = scopes;
        scopes.sort();
        scopes.dedup();
        let absolute = |u: &str| {
            if u.contains("://") || base_url.is_empty() {
                u.to_owned()
            } else {
                url::Url::parse(base_url).and_then(|b| b.join(u)).map_or(u.to_owned(), |j| j.to_string())
            }
        };
        let found = match (text(def, "type").unwrap_or(""), text(def, "in")) {
            ("apiKey", Some("header")) => text(def, "name").map(|n| Auth::ApiKeyHeader {
                name: n.to_owned(),
                prefix: None,
                secret: format!("{conn}_key"),
            }),
            ("apiKey", Some("query")) => {
                text(def, "name").map(|n| Auth::ApiKeyQuery { name: n.to_owned(), secret: format!("{conn}_key") })
            }
            ("basic", _) => Some(basic(conn, notes)),
            ("http", _) => match text(def, "scheme").map(str::to_ascii_lowercase).as_deref() {
                Some("basic") => Some(basic(conn, notes)),
                Some("bearer") => Some(Auth::ApiKeyHeader {
                    name: "Authorization".into(),
                    prefix: Some("Bearer".into()),
                    secret: format!("{conn}_token"),
                }),
                _ => None,
            },
            ("oauth2", _) => oauth2(def, doc.v2, conn, scopes, &absolute),
            _ => None,
        };
        match found {
            Some(a) => return a,
            None => notes.push(format!(
                "the security scheme `{scheme_name}` has no counterpart here (cookie keys, OpenID Connect discovery, \
                 implicit or password flows): the connector was given the next one, or `none`"
            )),
        }
    }
    Auth::None
}

fn basic(conn: &str, notes: &mut Vec<String>) -> Auth {
    notes.push("the username of Basic authentication is not in the document: replace `REPLACE-WITH-USERNAME`".into());
    Auth::Basic { username: "REPLACE-WITH-USERNAME".into(), secret: format!("{conn}_password") }
}

fn oauth2(def: &Value, v2: bool, conn: &str, scopes: Vec<String>, absolute: &dyn Fn(&str) -> String) -> Option<Auth> {
    let secret = format!("{conn}_client_secret");
    if v2 {
        return match text(def, "flow") {
            Some("application") => {
                text(def, "tokenUrl").map(|t| Auth::ClientCredentials { token_url: absolute(t), scopes, secret })
            }
            Some("accessCode") => match (text(def, "authorizationUrl"), text(def, "tokenUrl")) {
                (Some(a), Some(t)) => {
                    Some(Auth::AuthorizationCode { authorize_url: absolute(a), token_url: absolute(t), scopes, secret })
                }
                _ => None,
            },
            _ => None,
        };
    }
    let flows = def.get("flows")?;
    if let Some(f) = flows.get("authorizationCode")
        && let (Some(a), Some(t)) = (text(f, "authorizationUrl"), text(f, "tokenUrl"))
    {
        return Some(Auth::AuthorizationCode { authorize_url: absolute(a), token_url: absolute(t), scopes, secret });
    }
    let f = flows.get("clientCredentials")?;
    text(f, "tokenUrl").map(|t| Auth::ClientCredentials { token_url: absolute(t), scopes, secret })
}

#[cfg(test)]
mod tests;
