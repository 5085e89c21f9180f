//! The build phase: a named call's parameters resolved and its request rendered, or a proxied
//! request checked and cleaned, into an [`Outgoing`] request under the connector's base URL.
//! Pure: no store, no network, no credential (signing comes after).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use serde_json::Value;
use url::Url;

use super::OutBody;
use super::headers::strip_hop_by_hop;
use crate::CallError;
use crate::engine::runtime::{CompiledCall, ConnectorRuntime};
use crate::template::Values;

/// A request built for the upstream, not yet signed.
pub(super) struct Outgoing {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: OutBody,
}

impl std::fmt::Debug for Outgoing {
    /// The method, the path and the header names: no query (it may carry a key once signed),
    /// no header value, no body.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outgoing")
            .field("method", &self.method)
            .field("path", &self.url.path())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// A named call's request: the connector's fixed query and headers, the call's rendered path,
/// query, headers and JSON body.
pub(super) fn named(conn: &ConnectorRuntime, call: &CompiledCall, values: &Values) -> Result<Outgoing, CallError> {
    let path = call.path.render_path(values)?;
    let mut url = join(conn, &path);
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &conn.query {
            pairs.append_pair(k, v);
        }
        for (k, t) in &call.query {
            if let Some(v) = t.render_value(values, "a query parameter")? {
                pairs.append_pair(k, &v);
            }
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    let mut headers = conn.headers.clone();
    for (name, t) in &call.headers {
        if let Some(v) = t.render_value(values, "a header")? {
            let v = HeaderValue::from_str(&v).map_err(|_| {
                CallError::invalid_params(format!(
                    "a parameter of header `{name}` has characters that cannot go into a header"
                ))
            })?;
            headers.insert(name.clone(), v);
        }
    }
    let body = match &call.body {
        Some(t) => {
            headers.entry(header::CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
            OutBody::Bytes(Bytes::from(
                serde_json::to_vec(&t.render(values)).map_err(|e| CallError::internal(e.to_string()))?,
            ))
        }
        None => OutBody::Bytes(Bytes::new()),
    };
    Ok(Outgoing { method: call.method.clone(), url, headers, body })
}

/// A proxied request: the caller's path (checked) under the base URL, the caller's query with
/// the connector's fixed parameters winning, the caller's headers without hop-by-hop ones,
/// its credential for Latchkey, its cookies or the header the connector's credential owns,
/// and the connector's fixed headers.
pub(super) fn proxied(
    conn: &ConnectorRuntime,
    method: Method,
    path: &str,
    query: Option<&str>,
    mut headers: HeaderMap,
    body: OutBody,
    owned: Option<&HeaderName>,
) -> Result<Outgoing, CallError> {
    check_proxy_path(path)?;
    let mut url = join(conn, path);
    if let Some(q) = query {
        if q.contains(['#', '\r', '\n', '\0']) || q.contains("%00") {
            return Err(CallError::invalid_params("the query string contains a fragment, line break or NUL"));
        }
        if conn.query.is_empty() {
            url.set_query(Some(q));
        } else {
            // The connector's fixed parameters win: the caller's of the same name are dropped.
            let kept = crate::auth::without_params(q, |name| conn.query.iter().any(|(k, _)| k == name));
            url.set_query(Some(&kept));
        }
    }
    if !conn.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in &conn.query {
            pairs.append_pair(k, v);
        }
    }
    strip_hop_by_hop(&mut headers);
    // The caller's own credential for Latchkey, and its cookies, are not the upstream's.
    for h in [header::HOST, header::AUTHORIZATION, header::COOKIE] {
        headers.remove(h);
    }
    if let Some(owned) = owned {
        headers.remove(owned);
    }
    // The connector's fixed headers win over the caller's, and are sent once.
    for k in conn.headers.keys() {
        headers.remove(k);
    }
    for (k, v) in &conn.headers {
        headers.append(k.clone(), v.clone());
    }
    Ok(Outgoing { method, url, headers, body })
}

/// The last line of defence: whatever was built goes to the configured origin, under the
/// base path.
pub(super) fn check_origin(conn: &ConnectorRuntime, url: &Url) -> Result<(), CallError> {
    // Scheme, user info, host and port are one prefix of the serialization; a base URL has no
    // user info (refused at load), so one comparison says "same origin, nobody's credentials".
    let same_origin = url[..url::Position::BeforePath] == conn.base[..url::Position::BeforePath];
    if !same_origin || !url.path().starts_with(&conn.base_path) {
        return Err(CallError::invalid_params("the request would leave the connector's base URL"));
    }
    Ok(())
}

/// base_url + path. The path was rendered (named calls) or checked (proxy) already.
pub(super) fn join(conn: &ConnectorRuntime, path: &str) -> Url {
    join_under(&conn.base, &conn.base_path, path)
}

/// `base` with its path replaced by `base_path` + `path` (`base_path` has no trailing `/`).
fn join_under(base: &Url, base_path: &str, path: &str) -> Url {
    let mut url = base.clone();
    let mut full = String::with_capacity(base_path.len() + path.len() + 1);
    full.push_str(base_path);
    if !path.is_empty() && !path.starts_with('/') {
        full.push('/');
    }
    full.push_str(path);
    url.set_path(if full.is_empty() { "/" } else { &full });
    url
}

/// Refuses a proxy path that could climb above the base path, reach another host, or smuggle
/// control characters: `.`/`..` segments (also percent-encoded), encoded slashes and
/// backslashes, `//`, `\`, CR, LF and NUL.
pub(super) fn check_proxy_path(path: &str) -> Result<(), CallError> {
    let bad = |why: &str| Err(CallError::invalid_params(format!("the proxy path {why}")));
    if path.contains("//") {
        return bad("contains an empty segment (`//`)");
    }
    if path.contains('\\') || path.chars().any(|c| c.is_control()) {
        return bad("contains a backslash or a control character");
    }
    // Without allocating: this runs on every proxied call.
    let bytes = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        let encoded = bytes.get(i + 1..i + 3).map(|p| [p[0].to_ascii_lowercase(), p[1].to_ascii_lowercase()]);
        if matches!(encoded.as_ref().map(|e| &e[..]), Some(b"2f" | b"5c" | b"00" | b"0a" | b"0d" | b"25")) {
            return bad("contains an encoded slash, backslash, percent sign or control character");
        }
    }
    if path.split('/').any(crate::template::is_dot_segment) {
        return bad("contains a `.` or `..` segment (also `..;`, which some servers read as `..`)");
    }
    Ok(())
}

/// The values of a call's parameters: the caller's public ones, defaults, and private values.
pub(super) fn resolve_params(call: &CompiledCall, params: &Value) -> Result<Values, CallError> {
    let empty = serde_json::Map::new();
    let given = match params {
        Value::Null => &empty,
        Value::Object(m) => m,
        _ => return Err(CallError::invalid_params("`params` must be a JSON object of parameter names to values")),
    };
    let public: Vec<&str> = call.params.iter().filter(|(_, p)| !p.private).map(|(n, _)| n.as_str()).collect();
    for name in given.keys() {
        match call.params.get(name) {
            Some(p) if p.private => {
                return Err(CallError::invalid_params(format!(
                    "parameter `{name}` is private: it is fixed in the configuration and cannot be sent"
                )));
            }
            Some(_) => {}
            None => {
                return Err(CallError::invalid_params(format!(
                    "unknown parameter `{name}`; this call takes: {}",
                    if public.is_empty() { "no parameters".to_owned() } else { public.join(", ") }
                )));
            }
        }
    }
    let mut values = Values::new();
    let mut missing = Vec::new();
    for (name, p) in &call.params {
        // A default or a private value was checked at load; a caller's value is checked here,
        // only when the parameter has a `type` or an `enum`.
        let v = if p.private {
            p.value.clone()
        } else {
            match given.get(name) {
                Some(v) if p.is_checked() => Some(
                    p.accept(v.clone())
                        .map_err(|why| CallError::invalid_params(format!("parameter `{name}` {why}")))?,
                ),
                Some(v) => Some(v.clone()),
                None => p.default.clone(),
            }
        };
        match v {
            Some(v) => {
                if let Value::String(s) = &v
                    && s.contains('\0')
                {
                    return Err(CallError::invalid_params(format!("parameter `{name}` contains NUL")));
                }
                values.insert(name.clone(), v);
            }
            None if p.required => missing.push(name.as_str()),
            None => {}
        }
    }
    if !missing.is_empty() {
        return Err(CallError::invalid_params(format!("missing required parameter(s): {}", missing.join(", "))));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::check_proxy_path;

    /// A fixed-seed xorshift64 generator: the same inputs on every run.
    fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// `..;` is `..` to Tomcat and Spring (path parameters are stripped before dot segments are
    /// resolved): refused like `..`, in every spelling.
    #[test]
    fn dot_segments_with_path_parameters_are_refused_in_proxy_paths() {
        for bad in ["/a/..;/admin", "/..;", "/a/%2e%2e;/b", "/a/.;/b", "/a/%2E%2E%3b/b", "/a/..;jsessionid=x/b"] {
            assert!(check_proxy_path(bad).is_err(), "{bad:?} was accepted");
        }
        for good in ["/a;b/c", "/v1.2;rev=3", "/a/...;/b", "/a/b..;"] {
            assert!(check_proxy_path(good).is_ok(), "{good:?} was refused");
        }
    }

    #[test]
    fn fixed_query_parameters_replace_the_callers_and_keep_the_rest_byte_for_byte() {
        assert_eq!(crate::auth::without_params("a=1&fixed=evil&b=x%20y", |n| n == "fixed"), "a=1&b=x%20y");
        assert_eq!(crate::auth::without_params("fi%78ed=evil&fixed&c", |n| n == "fixed"), "c");
        assert_eq!(crate::auth::without_params("", |_| true), "");
    }

    /// SECURITY S13: over 1,000,000 generated proxy paths built from pieces that could name
    /// another host, user, port or scheme, or climb out of the base path, every path the check
    /// lets through joins to a URL with the connector's scheme, host and port, no user info,
    /// no query or fragment of its own, under the base path.
    #[test]
    fn s13_no_accepted_proxy_path_leaves_the_connectors_origin_or_base_path() {
        const PARTS: [&str; 32] = [
            "/",
            "a",
            "..",
            ".",
            "%2e",
            "%2f",
            "@",
            ":",
            "evil.example",
            "//",
            "\\",
            "?",
            "#",
            "%40",
            "%3a",
            "http:",
            "%00",
            " ",
            "é",
            "%",
            "~",
            ";",
            "=",
            "&",
            "%23",
            "%3f",
            "[",
            "]",
            "%5c",
            "user:pw@",
            "%2E%2E",
            "\t",
        ];
        let base = url::Url::parse("https://api.example.com:8443/v2/").unwrap();
        let base_path = base.path().trim_end_matches('/').to_owned();
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let mut accepted = 0;
        for _ in 0..1_000_000 {
            let len = 1 + (next() % 6) as usize;
            let mut path: String = (0..len).map(|_| PARTS[(next() % PARTS.len() as u64) as usize]).collect();
            if next().is_multiple_of(2) {
                path.insert(0, '/');
            }
            if check_proxy_path(&path).is_err() {
                continue;
            }
            accepted += 1;
            let url = super::join_under(&base, &base_path, &path);
            assert_eq!(
                (url.scheme(), url.host_str(), url.port_or_known_default()),
                ("https", Some("api.example.com"), Some(8443)),
                "{path:?} -> {url}"
            );
            assert!(url.username().is_empty() && url.password().is_none(), "{path:?} -> {url}");
            assert!(url.query().is_none() && url.fragment().is_none(), "{path:?} -> {url}");
            assert!(url.path() == base_path || url.path().starts_with(&format!("{base_path}/")), "{path:?} -> {url}");
        }
        assert!(accepted > 100_000, "only {accepted} paths accepted: the inputs are not varied");
    }

    /// The allocating check this replaced, kept as the reference.
    fn reference(path: &str) -> Result<(), &'static str> {
        if path.contains("//") {
            return Err("empty");
        }
        if path.contains('\\') || path.chars().any(|c| c.is_control()) {
            return Err("control");
        }
        let lower = path.to_ascii_lowercase();
        if ["%2f", "%5c", "%00", "%0a", "%0d", "%25"].iter().any(|s| lower.contains(s)) {
            return Err("encoded");
        }
        for seg in lower.split('/') {
            let decoded = seg.replace("%2e", ".");
            if decoded == "." || decoded == ".." {
                return Err("dots");
            }
        }
        Ok(())
    }

    #[test]
    fn the_proxy_path_check_agrees_with_its_reference_on_hostile_paths() {
        const PARTS: [&str; 20] = [
            "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%", "%2", "a", "%25", "\\", "%0a", "%0D", "%5C", "e", "2",
            "%00", "\n", "x.y",
        ];
        // A fixed-seed generator: the same 200,000 paths on every run.
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let (mut refused, mut total) = (0, 0);
        for _ in 0..200_000 {
            let len = (next() % 7) as usize;
            let path: String = (0..len).map(|_| PARTS[(next() % PARTS.len() as u64) as usize]).collect();
            let ours = check_proxy_path(&path);
            assert_eq!(ours.is_ok(), reference(&path).is_ok(), "{path:?}: {ours:?}");
            refused += usize::from(ours.is_err());
            total += 1;
        }
        assert!(refused > total / 4 && refused < total, "{refused} of {total} refused: the inputs are not varied");
        for ok in ["", "/", "/v2/things/a%20b", "/...", "/.a", "/a.", "/%2e%2e%2e", "/%41"] {
            assert!(check_proxy_path(ok).is_ok(), "{ok}");
        }
        for no in ["/.", "/..", "/a/%2e%2E/b", "/%2e.", "/a%2fb", "/a%5Cb", "/%25", "//x", "/a\\b", "/a\nb", "/%"] {
            assert_eq!(check_proxy_path(no).is_ok(), reference(no).is_ok(), "{no}");
        }
    }
}
