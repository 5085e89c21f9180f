//! `latchkey import curl`: a pasted cURL command → a connector and one named call.

use std::collections::BTreeSet;

use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::Value;

use super::model::{Auth, Call, Connector, parametrize_path, slug};

/// Flags that take a value and mean nothing to the import (the value is skipped, a note says so).
const IGNORED_WITH_VALUE: &[&str] = &[
    "-o",
    "--output",
    "-w",
    "--write-out",
    "-m",
    "--max-time",
    "--connect-timeout",
    "--retry",
    "--retry-delay",
    "--retry-max-time",
    "-x",
    "--proxy",
    "-U",
    "--proxy-user",
    "--cacert",
    "--capath",
    "-E",
    "--cert",
    "--key",
    "--cert-type",
    "--key-type",
    "-c",
    "--cookie-jar",
    "--resolve",
    "--connect-to",
    "--limit-rate",
    "-K",
    "--config",
    "--max-redirs",
    "--interface",
    "--local-port",
    "--dns-servers",
    "-r",
    "--range",
    "-T",
    "--upload-file",
    "-F",
    "--form",
    "--form-string",
    "--trace",
    "--trace-ascii",
    "--stderr",
    "-D",
    "--dump-header",
    "-y",
    "--speed-time",
    "-Y",
    "--speed-limit",
    "--expect100-timeout",
    "--keepalive-time",
    "--aws-sigv4",
    "--proto",
    "--proto-redir",
    "--variable",
    "--url-query",
];

/// Flags without a value that change nothing here.
const IGNORED: &[&str] = &[
    "-s",
    "--silent",
    "-S",
    "--show-error",
    "-L",
    "--location",
    "-k",
    "--insecure",
    "-v",
    "--verbose",
    "-i",
    "--include",
    "-f",
    "--fail",
    "--fail-with-body",
    "--compressed",
    "-g",
    "--globoff",
    "-N",
    "--no-buffer",
    "-#",
    "--progress-bar",
    "-q",
    "--disable",
    "--http1.1",
    "--http2",
    "--http1.0",
    "--http2-prior-knowledge",
    "-4",
    "-6",
    "--ipv4",
    "--ipv6",
    "-n",
    "--netrc",
    "--location-trusted",
    "-O",
    "--remote-name",
    "-J",
    "--remote-header-name",
    "-Z",
    "--parallel",
    "--tcp-nodelay",
    "-1",
    "--tlsv1",
    "--tlsv1.2",
    "--tlsv1.3",
    "--basic",
    "--anyauth",
];

/// Header names (lower case) that carry a credential.
const KEY_HEADERS: &[&str] = &[
    "x-api-key",
    "api-key",
    "apikey",
    "x-apikey",
    "x-api-token",
    "x-auth-token",
    "x-access-token",
    "x-token",
    "private-token",
    "x-goog-api-key",
    "ocp-apim-subscription-key",
    "x-functions-key",
    "x-secret-key",
    "x-auth-key",
    "authentication",
];

/// Query parameters (lower case) that carry a credential.
const KEY_QUERY: &[&str] =
    &["api_key", "apikey", "api-key", "key", "token", "access_token", "auth_token", "appid", "app_key", "apitoken"];

/// Headers a named call cannot or need not set.
const DROPPED_HEADERS: &[&str] = &[
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

/// What a cURL command asked for, before it is turned into a connector.
#[derive(Default)]
struct Request {
    method: Option<String>,
    url: Option<String>,
    headers: Vec<(String, String)>,
    data: Vec<String>,
    json: bool,
    get: bool,
    head: bool,
    user: Option<String>,
    bearer: Option<String>,
}

/// Parses `command` (a pasted `curl …`, with `\` line continuations and shell quoting).
/// `name` is the connector's name (for secret names); `call` overrides the call's name.
pub fn import(command: &str, name: Option<&str>, call_name: Option<&str>) -> anyhow::Result<(String, Connector)> {
    let mut notes = Vec::new();
    let req = parse(command, &mut notes)?;
    let Some(raw_url) = req.url.clone() else {
        anyhow::bail!("the command names no URL: paste the whole `curl …` command, URL included");
    };
    let with_scheme = if raw_url.contains("://") { raw_url.clone() } else { format!("http://{raw_url}") };
    // The URL is not repeated in these errors: it may carry a credential (`user:pass@`, a key
    // in the query) that must stay out of the terminal's scrollback.
    let url = url::Url::parse(&with_scheme).map_err(|e| {
        anyhow::anyhow!(
            "the command's URL cannot be read ({e}): paste it whole, e.g. `https://api.example.com/v1/items`"
        )
    })?;
    let Some(host) = url.host_str() else {
        anyhow::bail!("the command's URL has no host: paste it whole, e.g. `https://api.example.com/v1/items`")
    };
    if !url.username().is_empty() {
        notes.push("the URL's `user:password@` was taken as Basic credentials".to_owned());
    }
    let conn_name = match name {
        Some(n) => n.to_owned(),
        None => name_from_host(host),
    };
    let mut conn = Connector { base_url: url.origin().ascii_serialization(), notes, ..Connector::default() };
    let mut call = Call::default();

    // Credentials, in order of precedence: Authorization, -u, --oauth2-bearer, key headers, key query parameters.
    let mut secrets: Vec<String> = Vec::new();
    let mut headers = Vec::new();
    for (h, v) in &req.headers {
        let lower = h.to_ascii_lowercase();
        if DROPPED_HEADERS.contains(&lower.as_str()) {
            continue;
        }
        if lower == "content-type" && req.json_body() {
            continue;
        }
        if lower == "authorization" && conn.auth == Auth::None {
            conn.auth = auth_from_authorization(&conn_name, v, &mut conn.found, &mut secrets);
            continue;
        }
        if (lower == "authorization" || KEY_HEADERS.contains(&lower.as_str())) && conn.auth != Auth::None {
            conn.notes.push(format!(
                "a second credential (header `{h}`) was left out: a connector has one auth method; add it as a \
                 parameter if the API needs both"
            ));
            continue;
        }
        if KEY_HEADERS.contains(&lower.as_str()) {
            let secret = format!("{conn_name}_key");
            conn.found.push((secret.clone(), SecretString::from(v.clone())));
            secrets.push(v.clone());
            conn.auth = Auth::ApiKeyHeader { name: h.clone(), prefix: None, secret };
            continue;
        }
        headers.push((h.clone(), v.clone()));
    }
    let basic_user = req.user.clone().or_else(|| {
        (!url.username().is_empty()).then(|| {
            let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
            format!("{}:{}", decode(url.username()), decode(url.password().unwrap_or_default()))
        })
    });
    if let Some(user) = basic_user {
        if conn.auth == Auth::None {
            let (username, password) = user.split_once(':').unwrap_or((user.as_str(), ""));
            let secret = format!("{conn_name}_password");
            if password.is_empty() {
                conn.notes.push(format!("`-u {username}` has no password: set it as `{secret}`"));
            } else {
                conn.found.push((secret.clone(), SecretString::from(password.to_owned())));
                secrets.push(password.to_owned());
            }
            conn.auth = Auth::Basic { username: username.to_owned(), secret };
        } else {
            conn.notes.push("`-u` was left out: the command also has another credential".to_owned());
        }
    }
    if let Some(token) = &req.bearer {
        if conn.auth == Auth::None {
            let secret = format!("{conn_name}_token");
            conn.found.push((secret.clone(), SecretString::from(token.clone())));
            secrets.push(token.clone());
            conn.auth = Auth::ApiKeyHeader { name: "Authorization".into(), prefix: Some("Bearer".into()), secret };
        } else {
            conn.notes.push("`--oauth2-bearer` was left out: the command also has another credential".to_owned());
        }
    }

    // The query: the URL's, then `-G` data.
    let mut query: Vec<(String, String)> = url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    if req.get {
        for d in &req.data {
            query.extend(url::form_urlencoded::parse(d.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())));
        }
    }

    call.method = req.method();
    // A credential's value in the path (httpbin's `/basic-auth/user/passwd`) is a parameter
    // without a default: the value never reaches the file.
    let path = url
        .path()
        .split('/')
        .map(|seg| {
            let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
            if !seg.is_empty() && secrets.iter().any(|s| s == decoded.as_ref()) {
                let n = call.add_param("secret", true, None, Some("a credential's value was here".into()));
                conn.notes.push(format!(
                    "the path holds the credential's value: it is the parameter `{n}` (send it with each call)"
                ));
                format!("<{n}>")
            } else {
                seg.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    call.path = parametrize_path(&mut call, &path);
    for (k, v) in query {
        if conn.auth == Auth::None && KEY_QUERY.contains(&k.to_ascii_lowercase().as_str()) {
            let secret = format!("{conn_name}_key");
            conn.found.push((secret.clone(), SecretString::from(v.clone())));
            secrets.push(v);
            conn.auth = Auth::ApiKeyQuery { name: k, secret };
            continue;
        }
        if secrets.contains(&v) {
            let n = call.add_param(&k, true, None, None);
            call.query.push((k, format!("<{n}>")));
            continue;
        }
        let n = call.add_param(&k, false, Some(Value::String(v)), None);
        call.query.push((k, format!("<{n}>")));
    }
    for (h, v) in headers {
        if h.eq_ignore_ascii_case("cookie") || secrets.contains(&v) {
            let n = call.add_param(&h, true, None, Some(format!("the `{h}` header")));
            conn.notes.push(format!(
                "the `{h}` header may be a credential: it is the required parameter `{n}`, its value not written"
            ));
            call.headers.push((h, format!("<{n}>")));
        } else {
            call.headers.push((h, v));
        }
    }

    if !req.get && !req.data.is_empty() {
        let data = req.data.join("&");
        match serde_json::from_str::<Value>(&data) {
            Ok(json @ (Value::Object(_) | Value::Array(_))) => {
                call.body = Some(template(&mut call, json, "", &secrets));
            }
            _ => conn.notes.push(
                "the body is not JSON: a named call sends JSON bodies only, so it was left out (use the proxy for it)"
                    .to_owned(),
            ),
        }
    }
    call.name = match call_name {
        Some(n) => n.to_owned(),
        None => {
            let words: Vec<&str> = call
                .path
                .split('/')
                .filter(|s| !s.is_empty() && !s.starts_with('<') && *s != "api")
                .filter(|s| !(s.starts_with('v') && s.len() > 1 && s[1..].chars().all(|c| c.is_ascii_digit())))
                .collect();
            slug(&format!("{} {}", call.method, if words.is_empty() { "root".to_owned() } else { words.join(" ") }))
        }
    };
    let mut taken = BTreeSet::new();
    taken.insert(call.name.clone());
    conn.calls.push(call);
    // Defence in depth: no found value may have reached the TOML.
    let text = conn.to_toml(&conn_name);
    let leaked = |v: &str| {
        // A short value is a substring of anything: then only a whole TOML string counts.
        !v.is_empty()
            && if v.len() >= 8 {
                text.contains(v)
            } else {
                text.contains(&format!("\"{v}\"")) || text.contains(&format!("'{v}'"))
            }
    };
    if conn.found.iter().any(|(_, v)| leaked(v.expose_secret())) {
        anyhow::bail!(
            "a credential's value appears elsewhere in the command (a header or the body): nothing was written; \
             remove it from those places and import again"
        );
    }
    Ok((conn_name, conn))
}

impl Request {
    fn json_body(&self) -> bool {
        !self.get && self.data.iter().any(|d| matches!(d.trim_start().chars().next(), Some('{' | '[')))
    }

    fn method(&self) -> String {
        match (&self.method, self.head) {
            (Some(m), _) => m.to_ascii_uppercase(),
            (None, true) => "HEAD".to_owned(),
            (None, false) if !self.data.is_empty() && !self.get => "POST".to_owned(),
            (None, false) => "GET".to_owned(),
        }
    }
}

/// Leaf values of a JSON body become parameters with the value as default; the body holds
/// their placeholders. Lists are one parameter each.
fn template(call: &mut Call, value: Value, key: &str, secrets: &[String]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let inner = if key.is_empty() { k.clone() } else { format!("{key}_{k}") };
                    let t = template(call, v, &inner, secrets);
                    (k, t)
                })
                .collect(),
        ),
        Value::Null => Value::Null,
        v if key.is_empty() => v,
        Value::String(s) if secrets.contains(&s) => {
            let n = call.add_param(key, true, None, Some("a credential's value was here".into()));
            Value::String(format!("<{n}>"))
        }
        v => {
            let n = call.add_param(key, false, Some(v), None);
            Value::String(format!("<{n}>"))
        }
    }
}

fn auth_from_authorization(
    conn: &str,
    value: &str,
    found: &mut Vec<(String, SecretString)>,
    secrets: &mut Vec<String>,
) -> Auth {
    let (scheme, rest) = value.trim().split_once(' ').map_or(("", value.trim()), |(s, r)| (s, r.trim()));
    if scheme.eq_ignore_ascii_case("basic")
        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(rest)
        && let Ok(text) = String::from_utf8(bytes)
        && let Some((user, pass)) = text.split_once(':')
    {
        let secret = format!("{conn}_password");
        found.push((secret.clone(), SecretString::from(pass.to_owned())));
        secrets.push(pass.to_owned());
        secrets.push(rest.to_owned());
        return Auth::Basic { username: user.to_owned(), secret };
    }
    let secret = format!("{conn}_token");
    found.push((secret.clone(), SecretString::from(rest.to_owned())));
    secrets.push(rest.to_owned());
    let prefix = (!scheme.is_empty())
        .then(|| if scheme.eq_ignore_ascii_case("bearer") { "Bearer".to_owned() } else { scheme.to_owned() });
    Auth::ApiKeyHeader { name: "Authorization".to_owned(), prefix, secret }
}

/// `api.github.com` → `github`; `127.0.0.1` → `api`.
fn name_from_host(host: &str) -> String {
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') || host == "localhost" {
        return "api".to_owned();
    }
    let labels: Vec<&str> = host.split('.').collect();
    let pick = if labels.len() >= 2 { labels[labels.len() - 2] } else { labels[0] };
    slug(pick)
}

fn parse(command: &str, notes: &mut Vec<String>) -> anyhow::Result<Request> {
    // Line continuations (`\` at a line's end) join lines; a `$ ` prompt is not part of it.
    let joined = command.replace("\\\r\n", " ").replace("\\\n", " ");
    let joined = joined.trim().strip_prefix("$ ").unwrap_or(joined.trim()).to_owned();
    let words = shlex::split(&joined)
        .ok_or_else(|| anyhow::anyhow!("the command's quoting is unbalanced: paste it as the shell would read it"))?;
    let mut words = words.into_iter().peekable();
    if words.peek().is_some_and(|w| w == "curl" || w.ends_with("/curl")) {
        words.next();
    }
    let mut req = Request::default();
    while let Some(word) = words.next() {
        // `--flag=value` and `-Xvalue`.
        let (flag, inline) = if let Some(rest) = word.strip_prefix("--") {
            match rest.split_once('=') {
                Some((f, v)) if !f.is_empty() => (format!("--{f}"), Some(v.to_owned())),
                _ => (word.clone(), None),
            }
        } else if word.starts_with('-') && word.len() > 2 && !word.starts_with("--") {
            (word[..2].to_owned(), Some(word[2..].to_owned()))
        } else {
            (word.clone(), None)
        };
        let mut value = |what: &str| -> anyhow::Result<String> {
            match inline.clone().or_else(|| words.next()) {
                Some(v) => Ok(v),
                None => anyhow::bail!("`{what}` needs a value: paste the whole command, with what follows `{what}`"),
            }
        };
        match flag.as_str() {
            "-X" | "--request" => req.method = Some(value(&flag)?),
            "-H" | "--header" => {
                let h = value(&flag)?;
                match h.split_once(':') {
                    Some((n, v)) if !v.trim().is_empty() => {
                        req.headers.push((n.trim().to_owned(), v.trim().to_owned()))
                    }
                    _ => notes.push(format!("the header `{}` has no value: left out", h.trim_end_matches(';'))),
                }
            }
            "-d" | "--data" | "--data-ascii" | "--data-binary" | "--data-raw" => {
                let d = value(&flag)?;
                if d.starts_with('@') && flag != "--data-raw" {
                    notes.push(format!("`{flag} {d}` reads a file: its content is not imported"));
                } else {
                    req.data.push(if flag == "--data-binary" || flag == "--data-raw" {
                        d
                    } else {
                        d.replace(['\r', '\n'], "")
                    });
                }
            }
            "--data-urlencode" => {
                let d = value(&flag)?;
                let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                req.data.push(match d.split_once('=') {
                    Some(("", v)) => encode(v),
                    Some((k, v)) => format!("{k}={}", encode(v)),
                    None => encode(&d),
                });
            }
            "--json" => {
                req.data.push(value(&flag)?);
                req.json = true;
                req.headers.push(("Accept".into(), "application/json".into()));
            }
            "-u" | "--user" => req.user = Some(value(&flag)?),
            "--oauth2-bearer" => req.bearer = Some(value(&flag)?),
            "-A" | "--user-agent" => req.headers.push(("User-Agent".into(), value(&flag)?)),
            "-e" | "--referer" => req.headers.push(("Referer".into(), value(&flag)?)),
            "-b" | "--cookie" => req.headers.push(("Cookie".into(), value(&flag)?)),
            "-G" | "--get" => req.get = true,
            "-I" | "--head" => req.head = true,
            "--url" => req.url = Some(value(&flag)?),
            f if IGNORED_WITH_VALUE.contains(&f) => {
                let _ = value(f)?;
                notes.push(format!("`{f}` was ignored"));
            }
            f if IGNORED.contains(&f) => {}
            f if f.starts_with('-') && f.len() > 1 => notes.push(format!("`{f}` is not known here: ignored")),
            _ => {
                if req.url.is_some() {
                    notes.push(format!("a second URL `{word}` was ignored"));
                } else {
                    req.url = Some(word);
                }
            }
        }
    }
    if req.json && !req.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case("content-type")) {
        req.headers.push(("Content-Type".into(), "application/json".into()));
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, conn: &Connector) -> String {
        let text = conn.to_toml(name);
        latchkey_core::config::Config::parse(&text, "import").unwrap_or_else(|e| panic!("{e}\n{text}"));
        text
    }

    #[test]
    fn a_url_that_cannot_be_read_is_not_repeated_in_the_error() {
        let e = import("curl 'http://user:canary-pw@[bad/x?api_key=canary-key'", None, None).unwrap_err().to_string();
        assert!(!e.contains("canary"), "{e}");
        assert!(e.contains("paste it whole"), "{e}");
    }

    #[test]
    fn a_bearer_request_with_a_json_body_and_continuations() {
        let cmd = "curl -X POST 'https://api.example.com/v1/users/42/notes?limit=10&api_version=2' \\\n  \
                   -H 'Authorization: Bearer sk_live_SECRET123' \\\n  -H \"Content-Type: application/json\" \\\n  \
                   --data-raw '{\"text\": \"hello\", \"pinned\": true, \"meta\": {\"n\": 3}, \"tags\": [\"a\"]}' --compressed";
        let (name, conn) = import(cmd, None, None).unwrap();
        assert_eq!(name, "example");
        assert_eq!(conn.base_url, "https://api.example.com");
        assert_eq!(
            conn.auth,
            Auth::ApiKeyHeader {
                name: "Authorization".into(),
                prefix: Some("Bearer".into()),
                secret: "example_token".into()
            }
        );
        assert_eq!(conn.found[0].0, "example_token");
        assert_eq!(conn.found[0].1.expose_secret(), "sk_live_SECRET123");
        let call = &conn.calls[0];
        assert_eq!(call.method, "POST");
        assert_eq!(call.path, "/v1/users/<user_id>/notes");
        assert_eq!(
            call.query,
            vec![("limit".into(), "<limit>".into()), ("api_version".into(), "<api_version>".into())]
        );
        assert_eq!(
            call.body,
            Some(
                serde_json::json!({"text": "<text>", "pinned": "<pinned>", "meta": {"n": "<meta_n>"}, "tags": "<tags>"})
            )
        );
        assert!(call.headers.is_empty(), "Content-Type goes with a JSON body: {:?}", call.headers);
        let text = check(&name, &conn);
        assert!(!text.contains("SECRET123"), "{text}");
        assert!(text.contains("pinned = { default = true }"), "{text}");
    }

    #[test]
    fn basic_credentials_in_u_and_in_the_path_stay_out_of_the_file() {
        let (name, conn) =
            import("curl -u 'alice:s3cr3t-pw' http://127.0.0.1:8080/basic-auth/alice/s3cr3t-pw", Some("bin"), None)
                .unwrap();
        assert_eq!(conn.auth, Auth::Basic { username: "alice".into(), secret: "bin_password".into() });
        assert_eq!(conn.base_url, "http://127.0.0.1:8080");
        assert_eq!(conn.calls[0].path, "/basic-auth/alice/<secret>");
        assert!(conn.calls[0].params[0].required && conn.calls[0].params[0].default.is_none());
        let text = check(&name, &conn);
        assert!(!text.contains("s3cr3t-pw"), "{text}");
        assert_eq!(conn.calls[0].name, "get_basic_auth_alice");
    }

    #[test]
    fn key_headers_and_key_query_parameters_become_the_auth_method() {
        let (_, conn) =
            import("curl -H 'X-API-Key: abc123' https://api.weather.io/forecast?city=Oslo", None, None).unwrap();
        assert_eq!(
            conn.auth,
            Auth::ApiKeyHeader { name: "X-API-Key".into(), prefix: None, secret: "weather_key".into() }
        );
        let (_, conn) = import("curl 'https://api.weather.io/forecast?city=Oslo&appid=abc123'", None, None).unwrap();
        assert_eq!(conn.auth, Auth::ApiKeyQuery { name: "appid".into(), secret: "weather_key".into() });
        assert_eq!(conn.calls[0].query, vec![("city".into(), "<city>".into())]);
        let basic = base64::engine::general_purpose::STANDARD.encode("bob:pw");
        let (_, conn) =
            import(&format!("curl -H 'Authorization: Basic {basic}' https://x.example.org/"), None, None).unwrap();
        assert_eq!(conn.auth, Auth::Basic { username: "bob".into(), secret: "example_password".into() });
        assert_eq!(conn.found[0].1.expose_secret(), "pw");
    }

    #[test]
    fn get_data_goes_to_the_query_and_unknown_flags_are_noted() {
        let (_, conn) = import(
            "curl -G https://example.com/search --data-urlencode 'q=a b' -d page=2 --frobnicate -o out.json",
            Some("s"),
            Some("find"),
        )
        .unwrap();
        let call = &conn.calls[0];
        assert_eq!(call.name, "find");
        assert_eq!(call.method, "GET");
        assert_eq!(call.params.iter().map(|p| p.default.clone().unwrap()).collect::<Vec<_>>(), vec!["a b", "2"]);
        assert!(conn.notes.iter().any(|n| n.contains("--frobnicate")), "{:?}", conn.notes);
        assert!(conn.notes.iter().any(|n| n.contains("-o")), "{:?}", conn.notes);
    }

    #[test]
    fn a_form_body_is_noted_and_a_missing_url_refused() {
        let (_, conn) = import("curl --request=PUT https://example.com/x --data 'a=1&b=2'", None, None).unwrap();
        assert_eq!(conn.calls[0].method, "PUT");
        assert!(conn.calls[0].body.is_none() && conn.notes.iter().any(|n| n.contains("not JSON")));
        assert!(import("curl -X GET", None, None).unwrap_err().to_string().contains("no URL"));
        assert!(import("curl 'https://x", None, None).unwrap_err().to_string().contains("quoting"));
    }

    #[test]
    fn a_secret_repeated_in_the_body_becomes_a_parameter_without_default() {
        let (name, conn) = import(
            "curl -H 'Authorization: Bearer tok_abcdefgh' https://e.example.com/x --json '{\"t\": \"tok_abcdefgh\"}'",
            None,
            None,
        )
        .unwrap();
        assert!(conn.calls[0].params[0].required && conn.calls[0].params[0].default.is_none());
        assert!(!check(&name, &conn).contains("tok_abcdefgh"));
        // A copy the importer cannot place (a plain header) is refused, not written.
        let err = import(
            "curl -H 'Authorization: Bearer tok_abcdefgh' -H 'X-Copy: v=tok_abcdefgh' https://e.example.com/x",
            None,
            None,
        );
        assert!(err.unwrap_err().to_string().contains("appears elsewhere"));
    }
}
