//! `latchkey import postman`: a Postman collection (v2.1) → a connector (its auth the auth
//! method) and a named call per request; `{{variables}}` become parameters.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::bail;
use secrecy::SecretString;
use serde_json::Value;

use super::model::{Auth, Call, Connector, slug, unique};

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
    "accept-encoding",
];
/// Folders nested deeper are not walked (a hostile file cannot recurse without end).
const MAX_DEPTH: usize = 32;

/// Collection variables whose names say they hold a credential: never written as defaults.
fn secret_like(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["token", "secret", "password", "passwd", "apikey", "api_key", "api-key", "credential"]
        .iter()
        .any(|w| n.contains(w))
}

struct Ctx<'a> {
    vars: BTreeMap<String, String>,
    /// The collection variables' declared types (`"type": "number"`).
    types: BTreeMap<String, String>,
    conn: &'a str,
    /// Credentials found, by secret name.
    found: Vec<(String, SecretString)>,
    notes: Vec<String>,
}

impl Ctx<'_> {
    /// `{{x}}` replaced by the collection's value for `x` (for the base URL).
    fn resolve(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for _ in 0..4 {
            let mut changed = false;
            for (k, v) in &self.vars {
                let token = format!("{{{{{k}}}}}");
                if out.contains(&token) {
                    out = out.replace(&token, v);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        out
    }

    /// A credential's text: its value goes to the vault when the collection holds it (inline,
    /// or in the variable it names).
    fn credential(&mut self, secret: &str, text: &str) {
        let value = self.resolve(text);
        if !value.is_empty() && !value.contains("{{") {
            self.found.push((secret.to_owned(), SecretString::from(value)));
        }
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Postman's `[{key, value}]` lists (auth parameters, variables, headers, query).
fn kv(list: Option<&Value>) -> Vec<(String, String, bool)> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let key = str_of(e, "key")?.to_owned();
            let value = match e.get("value") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(v) => v.to_string(),
            };
            Some((key, value, e.get("disabled").and_then(Value::as_bool).unwrap_or(false)))
        })
        .collect()
}

pub fn import(text: &str, name: Option<&str>) -> anyhow::Result<(String, Connector)> {
    let root: Value = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "not valid JSON ({e}): export the collection again from Postman (Export, Collection v2.1) and give \
             that file whole"
        )
    })?;
    let info = root.get("info").unwrap_or(&Value::Null);
    let schema = str_of(info, "schema").unwrap_or("");
    if root.get("item").is_none() || (!schema.is_empty() && !schema.contains("collection")) {
        bail!("not a Postman collection: it has no `info` and `item` (export it as Collection v2.1)");
    }
    if schema.contains("v1.") {
        bail!("a Postman collection v1 is not read here: export it again as Collection v2.1");
    }
    let conn_name = name.map_or_else(|| slug(str_of(info, "name").unwrap_or("api")), str::to_owned);
    let vars: BTreeMap<String, String> = kv(root.get("variable")).into_iter().map(|(k, v, _)| (k, v)).collect();
    let types: BTreeMap<String, String> = root
        .get("variable")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| Some((str_of(v, "key")?.to_owned(), str_of(v, "type")?.to_owned())))
        .collect();
    let mut ctx = Ctx { vars, types, conn: &conn_name, found: Vec::new(), notes: Vec::new() };

    let mut requests: Vec<(Vec<String>, &Value)> = Vec::new();
    walk(&root, &mut Vec::new(), &mut requests, 0);
    // The collection's auth, else the first request's that has one.
    let auth_spec =
        root.get("auth").or_else(|| requests.iter().find_map(|(_, r)| r.get("request").and_then(|q| q.get("auth"))));
    let auth = auth_spec.map_or(Auth::None, |a| auth(a, &mut ctx));

    // Names: the request's; prefixed with its folder when two would clash, then with its
    // method when they still do.
    let method = |r: &Value| r.get("request").and_then(|q| str_of(q, "method")).unwrap_or("GET").to_ascii_lowercase();
    let mut names: Vec<String> = requests.iter().map(|(_, r)| slug(str_of(r, "name").unwrap_or("request"))).collect();
    for step in 0..2 {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for n in &names {
            *counts.entry(n.clone()).or_default() += 1;
        }
        for (n, (folders, r)) in names.iter_mut().zip(&requests) {
            if counts[n.as_str()] > 1 {
                *n = match step {
                    0 if !folders.is_empty() => slug(&format!("{} {n}", folders.join(" "))),
                    0 => n.clone(),
                    _ => slug(&format!("{} {n}", method(r))),
                };
            }
        }
    }
    let mut taken = BTreeSet::new();
    let mut conn = Connector { auth, ..Connector::default() };
    for ((_, item), wanted) in requests.iter().zip(names) {
        let Some(req) = item.get("request") else { continue };
        let mut call = Call { name: unique(&wanted, &mut taken), ..Call::default() };
        if let Some(origin) = request(&mut ctx, &mut call, req, &conn.auth) {
            if conn.base_url.is_empty() {
                conn.base_url = origin;
            } else if origin != conn.base_url {
                ctx.notes.push(format!("`{}` goes to {origin}, not {}: left out", call.name, conn.base_url));
                continue;
            }
        }
        call.description = match item.get("request").and_then(|r| r.get("description")) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(d) => str_of(d, "content").map(str::to_owned),
            None => None,
        }
        .filter(|d| !d.trim().is_empty());
        conn.calls.push(call);
    }
    if conn.base_url.is_empty() {
        ctx.notes.push("the collection's requests name no host: give it with --base-url".into());
    }
    conn.found = ctx.found;
    conn.notes = ctx.notes;
    Ok((conn_name, conn))
}

fn walk<'a>(node: &'a Value, folders: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'a Value)>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for item in node.get("item").and_then(Value::as_array).into_iter().flatten() {
        if item.get("request").is_some() {
            out.push((folders.clone(), item));
        } else if item.get("item").is_some() {
            folders.push(str_of(item, "name").unwrap_or("folder").to_owned());
            walk(item, folders, out, depth + 1);
            folders.pop();
        }
    }
}

fn auth(spec: &Value, ctx: &mut Ctx<'_>) -> Auth {
    let kind = str_of(spec, "type").unwrap_or("noauth");
    let params: BTreeMap<String, String> = kv(spec.get(kind)).into_iter().map(|(k, v, _)| (k, v)).collect();
    let get = |k: &str| params.get(k).cloned().unwrap_or_default();
    let conn = ctx.conn.to_owned();
    match kind {
        "bearer" => {
            let secret = format!("{conn}_token");
            ctx.credential(&secret, &get("token"));
            Auth::ApiKeyHeader { name: "Authorization".into(), prefix: Some("Bearer".into()), secret }
        }
        "basic" => {
            let secret = format!("{conn}_password");
            ctx.credential(&secret, &get("password"));
            let mut username = ctx.resolve(&get("username"));
            if username.is_empty() || username.contains("{{") || username.contains(':') {
                ctx.notes.push("the collection's Basic username is not set: replace `REPLACE-WITH-USERNAME`".into());
                username = "REPLACE-WITH-USERNAME".into();
            }
            Auth::Basic { username, secret }
        }
        "apikey" => {
            let secret = format!("{conn}_key");
            ctx.credential(&secret, &get("value"));
            let key = ctx.resolve(&get("key"));
            let key = if key.is_empty() { "X-API-Key".to_owned() } else { key };
            if get("in") == "query" {
                Auth::ApiKeyQuery { name: key, secret }
            } else {
                Auth::ApiKeyHeader { name: key, prefix: None, secret }
            }
        }
        "oauth2" => {
            let secret = format!("{conn}_client_secret");
            ctx.credential(&secret, &get("clientSecret"));
            let scopes: Vec<String> = ctx.resolve(&get("scope")).split_whitespace().map(str::to_owned).collect();
            let token_url = ctx.resolve(&get("accessTokenUrl"));
            let authorize_url = ctx.resolve(&get("authUrl"));
            match get("grant_type").as_str() {
                "client_credentials" if !token_url.is_empty() => Auth::ClientCredentials { token_url, scopes, secret },
                "authorization_code" | "authorization_code_with_pkce" | ""
                    if !token_url.is_empty() && !authorize_url.is_empty() =>
                {
                    Auth::AuthorizationCode { authorize_url, token_url, scopes, secret }
                }
                g => {
                    ctx.found.retain(|(s, _)| *s != secret);
                    ctx.notes.push(format!(
                        "the collection's OAuth 2.0 grant `{g}` (or its URLs) is not imported: auth is `none`"
                    ));
                    Auth::None
                }
            }
        }
        "noauth" => Auth::None,
        other => {
            ctx.notes.push(format!("the collection's auth `{other}` is not imported: auth is `none`"));
            Auth::None
        }
    }
}

/// Fills `call` from a request; returns its origin (scheme, host, port, and a base path held
/// in a variable such as `{{baseUrl}}`).
fn request(ctx: &mut Ctx<'_>, call: &mut Call, req: &Value, auth: &Auth) -> Option<String> {
    let mut vars_used: BTreeMap<String, String> = BTreeMap::new();
    call.method = str_of(req, "method").unwrap_or("GET").to_ascii_uppercase();
    let (origin, segments, query, path_vars) = match req.get("url") {
        Some(Value::String(raw)) => split_raw(raw),
        Some(u) => {
            let host = match u.get("host") {
                Some(Value::Array(parts)) => parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("."),
                Some(Value::String(h)) => h.clone(),
                _ => String::new(),
            };
            let mut origin = match str_of(u, "protocol") {
                Some(p) if !host.is_empty() => format!("{p}://{host}"),
                _ => host,
            };
            if let Some(port) = str_of(u, "port") {
                origin = format!("{origin}:{port}");
            }
            let segments: Vec<String> = match u.get("path") {
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| match p {
                        Value::String(s) => Some(s.clone()),
                        other => str_of(other, "value").map(str::to_owned),
                    })
                    .collect(),
                Some(Value::String(p)) => p.split('/').map(str::to_owned).collect(),
                _ => Vec::new(),
            };
            let query: Vec<(String, String)> =
                kv(u.get("query")).into_iter().filter(|(_, _, off)| !off).map(|(k, v, _)| (k, v)).collect();
            let path_vars: BTreeMap<String, String> =
                kv(u.get("variable")).into_iter().map(|(k, v, _)| (k, v)).collect();
            (origin, segments, query, path_vars)
        }
        None => return None,
    };
    let origin = ctx.resolve(&origin);
    // A host without a scheme (Postman's `example.com/x`) is https.
    let origin = if origin.contains("://") || origin.is_empty() { origin } else { format!("https://{origin}") };
    // A base URL held in a variable may carry a path: the request's path goes after it.
    let origin = origin.trim_end_matches('/').to_owned();

    let mut path = String::new();
    for seg in segments.iter().filter(|s| !s.is_empty()) {
        path.push('/');
        if let Some(var) = seg.strip_prefix(':') {
            let default =
                path_vars.get(var).filter(|v| !v.is_empty() && !is_type_hint(v)).map(|v| Value::String(v.clone()));
            let hint = path_vars.get(var).filter(|v| is_type_hint(v));
            let n = call.add_param(var, true, default, hint.map(|v| format!("({})", v.trim_matches(['<', '>']))));
            call.set_type(&n, hint.and_then(|h| hinted_type(h)), None, true);
            path.push_str(&format!("<{n}>"));
        } else {
            path.push_str(&text(ctx, call, &mut vars_used, seg, seg, true));
        }
    }
    call.path = path;
    for (k, v) in query {
        let t = text(ctx, call, &mut vars_used, &k, &v, false);
        // A literal value is the default of a parameter, as a cURL command's is.
        let t = if t == v && !v.is_empty() {
            let n = call.add_param(&k, false, Some(Value::String(v)), None);
            format!("<{n}>")
        } else {
            t
        };
        if matches!(auth, Auth::ApiKeyQuery { name, .. } if *name == k) {
            continue;
        }
        call.query.push((k, t));
    }
    let body = req.get("body");
    let raw_json = body
        .filter(|b| str_of(b, "mode") == Some("raw"))
        .and_then(|b| str_of(b, "raw"))
        .filter(|r| !r.trim().is_empty());
    for (k, v, off) in kv(req.get("header")) {
        let lower = k.to_ascii_lowercase();
        if off || SKIPPED_HEADERS.contains(&lower.as_str()) || (lower == "content-type" && raw_json.is_some()) {
            continue;
        }
        let auth_header = match auth {
            Auth::ApiKeyHeader { name, .. } => name.eq_ignore_ascii_case(&k),
            Auth::None | Auth::ApiKeyQuery { .. } => false,
            _ => lower == "authorization",
        };
        if auth_header {
            continue;
        }
        let t = text(ctx, call, &mut vars_used, &k, &v, false);
        call.headers.push((k, t));
    }
    if let Some(raw) = raw_json {
        match serde_json::from_str::<Value>(&quote_vars(raw)) {
            Ok(json) => call.body = Some(body_template(ctx, call, &mut vars_used, json, "")),
            Err(_) => ctx
                .notes
                .push(format!("`{}`: the body is not JSON: left out (named calls send JSON bodies)", call.name)),
        }
    } else if body.and_then(|b| str_of(b, "mode")).is_some_and(|m| m != "raw") {
        ctx.notes.push(format!("`{}`: a form or file body is not imported (named calls send JSON bodies)", call.name));
    }
    Some(origin)
}

/// `<integer>`, `<string>`: the example values openapi-to-postmanv2 writes.
fn is_type_hint(v: &str) -> bool {
    v.len() > 2
        && v.starts_with('<')
        && v.ends_with('>')
        && v[1..v.len() - 1].chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ' ')
}

/// The parameter type a hint names: `<integer>`, `<long>` an integer; `<number>`, `<double>`,
/// `<float>` a number; `<boolean>` a boolean; `<string>` (and formats of it: `<uuid>`,
/// `<dateTime>`, …) a string.
fn hinted_type(hint: &str) -> Option<&'static str> {
    match hint.trim_matches(['<', '>']).to_ascii_lowercase().as_str() {
        "integer" | "long" | "int32" | "int64" => Some("integer"),
        "number" | "double" | "float" => Some("number"),
        "boolean" => Some("boolean"),
        "string" | "uuid" | "datetime" | "date" | "date-time" | "email" | "uri" | "byte" | "binary" | "password" => {
            Some("string")
        }
        _ => None,
    }
}

/// Text with `{{var}}` → `<param>` (the collection's value as the default); literal text
/// that would read as a placeholder is carried by a private parameter; a type hint
/// (`<string>`) is a parameter named after `key`, without default.
fn text(
    ctx: &mut Ctx<'_>,
    call: &mut Call,
    used: &mut BTreeMap<String, String>,
    key: &str,
    t: &str,
    in_path: bool,
) -> String {
    if is_type_hint(t) {
        let n = call.add_param(key, in_path, None, Some(format!("({})", t.trim_matches(['<', '>']))));
        call.set_type(&n, hinted_type(t), None, true);
        return format!("<{n}>");
    }
    let mut out = String::new();
    let mut rest = t;
    while let Some(open) = rest.find("{{") {
        let Some(close) = rest[open..].find("}}") else { break };
        out.push_str(&literal(call, &rest[..open]));
        let var = &rest[open + 2..open + close];
        out.push_str(&format!("<{}>", var_param(ctx, call, used, var, in_path)));
        rest = &rest[open + close + 2..];
    }
    out.push_str(&literal(call, rest));
    out
}

/// Literal text, or a private parameter holding it when it holds `<name>` (which a template
/// would read as a placeholder).
fn literal(call: &mut Call, t: &str) -> String {
    let mut rest = t;
    let mut looks = false;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        if let Some(close) = after.find('>') {
            let inner = &after[..close];
            if !inner.is_empty()
                && inner.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                looks = true;
                break;
            }
        }
        rest = after;
    }
    if !looks {
        return t.to_owned();
    }
    let n = call.add_param("literal", false, None, None);
    if let Some(p) = call.params.iter_mut().find(|p| p.name == n) {
        p.private = Some(Value::String(t.to_owned()));
    }
    format!("<{n}>")
}

fn var_param(
    ctx: &mut Ctx<'_>,
    call: &mut Call,
    used: &mut BTreeMap<String, String>,
    var: &str,
    required: bool,
) -> String {
    if let Some(n) = used.get(var) {
        return n.clone();
    }
    let value = ctx.vars.get(var).filter(|v| !v.is_empty()).cloned();
    let default = match value {
        Some(_) if secret_like(var) => {
            ctx.notes.push(format!(
                "the collection variable `{var}` looks like a credential: its value was not written (a parameter without default)"
            ));
            None
        }
        Some(v) => Some(Value::String(v)),
        None => None,
    };
    let n = call.add_param(var, required && default.is_none(), default, None);
    // A collection variable may say its type: `string`, `number`, `boolean` (or `any`).
    let ty = match ctx.types.get(var).map(String::as_str) {
        Some("number") => Some("number"),
        Some("boolean") => Some("boolean"),
        Some("string") => Some("string"),
        _ => None,
    };
    call.set_type(&n, ty, None, true);
    used.insert(var.to_owned(), n.clone());
    n
}

/// `{{var}}` outside a JSON string becomes `"{{var}}"`, so the template parses.
fn quote_vars(raw: &str) -> String {
    let mut out = String::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = raw;
    while let Some(c) = rest.chars().next() {
        if !in_string
            && rest.starts_with("{{")
            && let Some(close) = rest.find("}}")
        {
            out.push('"');
            out.push_str(&rest[..close + 2]);
            out.push('"');
            rest = &rest[close + 2..];
            continue;
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

fn body_template(
    ctx: &mut Ctx<'_>,
    call: &mut Call,
    used: &mut BTreeMap<String, String>,
    value: Value,
    key: &str,
) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let inner = if key.is_empty() { k.clone() } else { format!("{key}_{k}") };
                    let t = body_template(ctx, call, used, v, &inner);
                    (k, t)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| body_template(ctx, call, used, v, key)).collect())
        }
        Value::String(s) => Value::String(text(ctx, call, used, if key.is_empty() { "body" } else { key }, &s, false)),
        v => v,
    }
}

/// A raw URL string: origin, path segments, query pairs, no path variables.
#[expect(clippy::type_complexity, reason = "the same four parts as a structured URL")]
fn split_raw(raw: &str) -> (String, Vec<String>, Vec<(String, String)>, BTreeMap<String, String>) {
    let (before_query, query) = raw.split_once('?').unwrap_or((raw, ""));
    let (scheme, rest) = before_query.split_once("://").map_or(("", before_query), |(s, r)| (s, r));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let origin = if scheme.is_empty() { host.to_owned() } else { format!("{scheme}://{host}") };
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    (origin, path.split('/').map(str::to_owned).collect(), query, BTreeMap::new())
}

#[cfg(test)]
mod tests;
