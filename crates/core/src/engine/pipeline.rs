//! The call pipeline: named calls and the passthrough proxy.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use serde_json::Value;
use url::Url;

use super::Engine;
use super::runtime::{CompiledCall, ConnectorRuntime};
use crate::auth::{Credential, TokenSource};
use crate::template::Values;
use crate::upstream::{BoxError, ReqBody, SendError};
use crate::{CallError, Env, ErrorCode};

/// What came back from the upstream: status, headers (hop-by-hop and `set-cookie` removed)
/// and the body, still streaming.
pub struct UpstreamResponse {
    pub status: http::StatusCode,
    pub headers: HeaderMap,
    pub body: UpstreamBody,
}

/// A response body streaming from the upstream.
pub type UpstreamBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A request body: bytes can be sent twice (a retry after a reactive token refresh); a
/// stream is sent once.
pub enum OutBody {
    Bytes(Bytes),
    Stream(ReqBody),
}

impl OutBody {
    /// A body that streams through once, such as the caller's own request body.
    pub fn stream<B>(body: B) -> OutBody
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        OutBody::Stream(body.map_err(Into::into).boxed_unsync())
    }

    fn into_body(self) -> ReqBody {
        match self {
            OutBody::Bytes(b) => bytes_body(b),
            OutBody::Stream(s) => s,
        }
    }
}

fn bytes_body(b: Bytes) -> ReqBody {
    http_body_util::Full::new(b).map_err(|never| match never {}).boxed_unsync()
}

/// How much of an upstream error body is read to look for a `refresh_on.body_contains` match.
const SNIFF_LIMIT: usize = 64 * 1024;

/// A passthrough request: the caller's method, path below the connector, raw query, headers
/// and body.
pub struct ProxyRequest {
    /// Whose connection to use (`Latchkey-User`), for per-user connectors.
    pub user: Option<String>,
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: OutBody,
}

/// Headers that belong to one connection, never forwarded in either direction (RFC 9110 §7.6.1),
/// plus `host` and `content-length`, which the client sets for the new connection.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
];

/// Where `name` is in [`HOP_BY_HOP`]: a `match`, which compiles to a test of the length first.
fn hop_by_hop_index(name: &str) -> Option<usize> {
    Some(match name {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-authenticate" => 2,
        "proxy-authorization" => 3,
        "te" => 4,
        "trailer" => 5,
        "transfer-encoding" => 6,
        "upgrade" => 7,
        "proxy-connection" => 8,
        _ => return None,
    })
}

/// Removes the hop-by-hop headers (and those `Connection` names) and every `Latchkey-*` header,
/// from a caller's request and from an upstream's answer alike.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them, or only `Connection: keep-alive` (nginx sends it on
    // every response): one pass over the names, and no allocation unless `Connection` names
    // a header that is not hop-by-hop anyway, or a `Latchkey-*` header is there.
    let mut present = 0u16;
    let mut ours = false;
    for k in headers.keys() {
        let name = k.as_str();
        if let Some(i) = hop_by_hop_index(name) {
            present |= 1 << i;
        } else if name.starts_with("latchkey-") {
            ours = true;
        }
    }
    if ours {
        strip_latchkey_headers(headers);
    }
    if present == 0 {
        return;
    }
    let names_others = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|n| !HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(n)) && headers.contains_key(n));
    if names_others {
        return strip_named(headers);
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(*name);
        }
    }
}

/// Removes every `Latchkey-*` header: between the caller and Latchkey they are Latchkey's own
/// (`Latchkey-User` in, `Latchkey-Error` out), never the upstream's or the caller's to pass on.
fn strip_latchkey_headers(headers: &mut HeaderMap) {
    let ours: Vec<HeaderName> = headers.keys().filter(|k| k.as_str().starts_with("latchkey-")).cloned().collect();
    for k in ours {
        headers.remove(&k);
    }
}

/// The hop-by-hop headers, every header `Connection` names, and every `Latchkey-*` header.
fn strip_named(headers: &mut HeaderMap) {
    let named: Vec<&str> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // Only the names present are removed: each removal hashes its name.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            HOP_BY_HOP.contains(&k.as_str())
                || k.as_str().starts_with("latchkey-")
                || named.iter().any(|n| n.eq_ignore_ascii_case(k.as_str()))
        })
        .cloned()
        .collect();
    for h in doomed {
        headers.remove(h);
    }
}

impl Engine {
    fn connector_for(&self, name: &str) -> Result<Arc<ConnectorRuntime>, CallError> {
        self.connector(name).ok_or_else(|| {
            CallError::not_found(format!("no connector named `{name}`: list them with GET /v1/admin/connectors"))
        })
    }

    /// A named call: `POST /v1/connectors/{connector}/calls/{call}`.
    pub async fn call(
        &self,
        env: Env,
        connector: &str,
        call: &str,
        params: &Value,
        user: Option<&str>,
    ) -> Result<UpstreamResponse, CallError> {
        self.call_checked(env, connector, call, params, user, false).await
    }

    /// A named call made with a user token: only `access = "user"` calls, only with the
    /// token's own connection (its public parameters only, as for every caller).
    pub async fn call_as_user(
        &self,
        env: Env,
        connector: &str,
        call: &str,
        params: &Value,
        user: &str,
    ) -> Result<UpstreamResponse, CallError> {
        self.call_checked(env, connector, call, params, Some(user), true).await
    }

    async fn call_checked(
        &self,
        env: Env,
        connector: &str,
        call: &str,
        params: &Value,
        user: Option<&str>,
        user_token: bool,
    ) -> Result<UpstreamResponse, CallError> {
        let conn = self.connector_for(connector)?;
        let compiled = conn.calls.get(call).ok_or_else(|| {
            let mut names: Vec<&str> = conn.calls.keys().map(String::as_str).collect();
            names.sort_unstable();
            CallError::not_found(format!(
                "connector `{connector}` has no call named `{call}`; its calls: {}",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            ))
        })?;
        if user_token && compiled.access != crate::config::Access::User {
            return Err(CallError::new(
                ErrorCode::Forbidden,
                format!(
                    "call `{call}` of connector `{connector}` is for the app's backend (access = \"app\"): a user token may make only `access = \"user\"` calls"
                ),
            ));
        }
        let values = resolve_params(compiled, params)?;
        let prepared = conn.credential(env)?;

        let path = compiled.path.render_path(&values)?;
        let mut url = join(&conn, &path);
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in &conn.query {
                pairs.append_pair(k, v);
            }
            for (k, t) in &compiled.query {
                if let Some(v) = t.render_value(&values, "a query parameter")? {
                    pairs.append_pair(k, &v);
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut headers = conn.headers.clone();
        for (name, t) in &compiled.headers {
            if let Some(v) = t.render_value(&values, "a header")? {
                let v = HeaderValue::from_str(&v).map_err(|_| {
                    CallError::invalid_params(format!(
                        "a parameter of header `{name}` has characters that cannot go into a header"
                    ))
                })?;
                headers.insert(name.clone(), v);
            }
        }
        let body = match &compiled.body {
            Some(t) => {
                headers.entry(header::CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
                OutBody::Bytes(Bytes::from(
                    serde_json::to_vec(&t.render(&values)).map_err(|e| CallError::internal(e.to_string()))?,
                ))
            }
            None => OutBody::Bytes(Bytes::new()),
        };
        prepared.credential.apply(&mut headers, &mut url);
        // A user token names its user for the credentials that belong to one (a per-user
        // connection, the user's identity); on an app-level credential the app's own key signs
        // the user's call, and the user is not a parameter the caller sent.
        let user = match &prepared.credential {
            Credential::User(_) | Credential::Identity { .. } => user,
            _ if user_token => None,
            _ => user,
        };
        self.send(&conn, prepared, env, user, compiled.method.clone(), url, headers, body).await
    }

    /// The passthrough proxy: `ANY /v1/proxy/{connector}/{path}`.
    pub async fn proxy(&self, env: Env, connector: &str, req: ProxyRequest) -> Result<UpstreamResponse, CallError> {
        let conn = self.connector_for(connector)?;
        if !conn.config.proxy {
            return Err(CallError::new(
                ErrorCode::Forbidden,
                format!(
                    "connector `{connector}` does not allow the passthrough proxy (proxy = false): use its named calls"
                ),
            ));
        }
        let prepared = conn.credential(env)?;
        check_proxy_path(&req.path)?;
        let mut url = join(&conn, &req.path);
        if let Some(q) = &req.query {
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
        let mut headers = req.headers;
        strip_hop_by_hop(&mut headers);
        // The caller's own credential for Latchkey, and its cookies, are not the upstream's.
        for h in [header::HOST, header::AUTHORIZATION, header::COOKIE] {
            headers.remove(h);
        }
        if let Some(owned) = prepared.credential.owned_header() {
            headers.remove(owned);
        }
        // The connector's fixed headers win over the caller's, and are sent once.
        for k in conn.headers.keys() {
            headers.remove(k);
        }
        for (k, v) in &conn.headers {
            headers.append(k.clone(), v.clone());
        }
        prepared.credential.apply(&mut headers, &mut url);
        self.send(&conn, prepared, env, req.user.as_deref(), req.method, url, headers, req.body).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        conn: &ConnectorRuntime,
        prepared: &crate::auth::Prepared,
        env: Env,
        user: Option<&str>,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: OutBody,
    ) -> Result<UpstreamResponse, CallError> {
        // The last line of defence: whatever was built, it goes to the configured origin.
        let same_origin = url.scheme() == conn.base.scheme()
            && url.host() == conn.base.host()
            && url.port_or_known_default() == conn.base.port_or_known_default();
        if !same_origin || !url.path().starts_with(&conn.base_path) {
            return Err(CallError::invalid_params("the request would leave the connector's base URL"));
        }
        let mut connection = None;
        let per_user;
        let src: &TokenSource = match (&prepared.credential, user) {
            (Credential::User(auth), Some(owner)) => {
                let row = self.user_connection(env, &conn.name, owner).await?.ok_or_else(|| {
                    CallError::not_found(format!(
                        "user `{owner}` has no connection on connector `{}` ({env}): connect one with POST /v1/connect/{}",
                        conn.name, conn.name
                    ))
                })?;
                per_user = auth.for_connection(&row.id);
                connection = Some(row);
                &per_user
            }
            (Credential::User(_), None) => {
                return Err(CallError::invalid_params(format!(
                    "connector `{}` holds per-user connections: name whose with `user` (or the `Latchkey-User` header)",
                    conn.name
                )));
            }
            (Credential::Identity { audience, lifetime_s }, user) => {
                let user = user.ok_or_else(|| {
                    CallError::invalid_params(format!(
                        "connector `{}` sends the calling user's identity: name the user with `user` (or call with a user token)",
                        conn.name
                    ))
                })?;
                let jwt = self.sign_identity(env, user, audience, *lifetime_s).await?;
                let mut headers = headers;
                let mut value = HeaderValue::from_str(&format!("Bearer {jwt}"))
                    .map_err(|_| CallError::internal("bad identity token"))?;
                value.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, value);
                return self.send_once(conn, prepared, method, url, headers, body.into_body()).await;
            }
            (_, Some(_)) => {
                return Err(CallError::invalid_params(format!(
                    "connector `{}` uses app-level credentials ({}): drop `user` / `Latchkey-User`",
                    conn.name,
                    conn.config.auth.method()
                )));
            }
            (Credential::Token(src), None) => src,
            (_, None) => {
                return self.send_once(conn, prepared, method, url, headers, body.into_body()).await;
            }
        };
        let reauth = |e: CallError| self.reauthorization(e, connection.as_ref());
        let obtained = match self.tokens.get(src).await {
            Ok(o) => o,
            Err(e) => return Err(reauth(e).await),
        };
        let signed = |token: &secrecy::SecretString| -> Result<(HeaderMap, Url), CallError> {
            let (mut h, mut u) = (headers.clone(), url.clone());
            crate::auth::apply_token(src.token_in, token, &mut h, &mut u)?;
            Ok((h, u))
        };
        let (h, u) = signed(&obtained.token.access_token)?;
        let (first_body, replay) = match body {
            OutBody::Bytes(b) => (bytes_body(b.clone()), Some(b)),
            OutBody::Stream(s) => (s, None),
        };
        let first = self.send_once(conn, prepared, method.clone(), u, h, first_body).await?;
        let Some(replay) = replay.filter(|_| !obtained.fresh) else {
            return Ok(first);
        };
        let (expired, first) = token_refused(src, first).await;
        if !expired {
            return Ok(first);
        }
        // Reactive refresh: the upstream refused a token Latchkey did not just obtain.
        tracing::info!(connector = %conn.name, status = first.status.as_u16(), "upstream refused the access token; refreshing once");
        drop(first);
        let again = match self.tokens.replace(src, &obtained.token.access_token).await {
            Ok(o) => o,
            Err(e) => return Err(reauth(e).await),
        };
        let (h, u) = signed(&again.token.access_token)?;
        let second = self.send_once(conn, prepared, method, u, h, bytes_body(replay)).await?;
        let (refused_again, second) = token_refused(src, second).await;
        if refused_again {
            self.tokens.refused_after_refresh(src, &again.token);
        }
        Ok(second)
    }

    /// For a per-user connection, a refused credential becomes `reauthorization_required` with
    /// a `reconnect_url` that reconnects the same connection.
    async fn reauthorization(&self, e: CallError, connection: Option<&crate::store::ConnectionRow>) -> CallError {
        let Some(row) = connection else { return e };
        if !e.is_refused_credential() {
            return e;
        }
        let mut out = CallError::new(
            ErrorCode::ReauthorizationRequired,
            format!(
                "the provider refused the connection of user `{}` on connector `{}`: send the user to `reconnect_url` to connect again",
                row.owner, row.connector
            ),
        );
        for k in ["provider_error", "provider_error_description", "provider_error_uri"] {
            if let Some(v) = e.details.get(k) {
                out.details.insert(k.into(), v.clone());
            }
        }
        out.details.insert("connection".into(), Value::String(row.id.clone()));
        if let Some(url) = self.reconnect_url(row).await {
            out.details.insert("reconnect_url".into(), Value::String(url));
        }
        out
    }

    async fn send_once(
        &self,
        conn: &ConnectorRuntime,
        prepared: &crate::auth::Prepared,
        method: Method,
        url: Url,
        headers: HeaderMap,
        body: ReqBody,
    ) -> Result<UpstreamResponse, CallError> {
        let target = http::Uri::try_from(&url[url::Position::BeforePath..])
            .map_err(|_| {
                CallError::invalid_params(format!(
                    "connector `{}`: the request's path and query do not form a valid HTTP request target; check the call's path and parameters",
                    conn.name
                ))
            })?;
        let mut request = http::Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = target;
        *request.headers_mut() = headers;
        request
            .headers_mut()
            .entry(header::USER_AGENT)
            .or_insert(HeaderValue::from_static(concat!("latchkey/", env!("CARGO_PKG_VERSION"))));
        let response =
            prepared.upstream.send(&conn.origin, request, conn.timeout).await.map_err(|e| send_error(e, conn))?;
        let (parts, body) = response.into_parts();
        let mut headers = parts.headers;
        // Also `Latchkey-Error` and its kin: Latchkey's words, which an upstream cannot speak.
        strip_hop_by_hop(&mut headers);
        headers.remove(header::SET_COOKIE);
        Ok(UpstreamResponse { status: parts.status, headers, body: body.map_err(std::io::Error::other).boxed_unsync() })
    }
}

/// Whether the upstream's answer means "this access token is no longer good": a 401, or a
/// `refresh_on` match (status, and text in the body when `body_contains` is set). A body read
/// to decide is put back in front of the rest of the stream.
async fn token_refused(src: &TokenSource, resp: UpstreamResponse) -> (bool, UpstreamResponse) {
    let status = resp.status.as_u16();
    let rule = src.refresh_on.as_ref();
    let status_matches = match rule {
        Some(r) if !r.status.is_empty() => r.status.contains(&status),
        _ => status == 401,
    };
    if !status_matches {
        return (false, resp);
    }
    let Some(needle) = rule.and_then(|r| r.body_contains.clone()) else {
        return (true, resp);
    };
    let UpstreamResponse { status, headers, body } = resp;
    let mut body = http_body_util::BodyStream::new(body);
    let mut head = Vec::new();
    let mut rest_error = None;
    while head.len() < SNIFF_LIMIT {
        match body.next().await {
            Some(Ok(frame)) => {
                if let Some(chunk) = frame.data_ref() {
                    head.extend_from_slice(chunk);
                }
            }
            Some(Err(e)) => {
                rest_error = Some(e);
                break;
            }
            None => break,
        }
    }
    let found = head.windows(needle.len().max(1)).any(|w| w == needle.as_bytes());
    let prefix = futures_util::stream::iter(
        std::iter::once(Ok(http_body::Frame::data(Bytes::from(head)))).chain(rest_error.map(Err)),
    );
    let body = http_body_util::StreamBody::new(prefix.chain(body)).boxed_unsync();
    (found, UpstreamResponse { status, headers, body })
}

/// Says what went wrong without ever showing the URL (which may carry a query key).
fn send_error(e: SendError, conn: &ConnectorRuntime) -> CallError {
    let origin = conn.base.origin().ascii_serialization();
    let (what, cause) = match e {
        SendError::Timeout => {
            return CallError::new(
                ErrorCode::UpstreamTimeout,
                format!(
                    "connector `{}`: {origin} did not answer within {} ms; raise `timeout_ms` if it is slow",
                    conn.name,
                    conn.timeout.as_millis()
                ),
            );
        }
        SendError::Connect(cause) => ("could not connect to", cause),
        SendError::Lost(cause) => ("lost the connection to", cause),
    };
    CallError::new(ErrorCode::UpstreamUnreachable, format!("connector `{}`: {what} {origin} ({cause})", conn.name))
}

/// base_url + path. The path was rendered (named calls) or checked (proxy) already.
fn join(conn: &ConnectorRuntime, path: &str) -> Url {
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
fn check_proxy_path(path: &str) -> Result<(), CallError> {
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
fn resolve_params(call: &CompiledCall, params: &Value) -> Result<Values, CallError> {
    let given = match params {
        Value::Null => serde_json::Map::new(),
        Value::Object(m) => m.clone(),
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
        let v = if p.private { p.value.clone() } else { given.get(name).cloned().or_else(|| p.default.clone()) };
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

    #[test]
    fn hop_by_hop_index_names_the_list() {
        for (i, name) in super::HOP_BY_HOP.iter().enumerate() {
            assert_eq!(super::hop_by_hop_index(name), Some(i));
        }
        assert_eq!(super::hop_by_hop_index("accept"), None);
        assert_eq!(super::hop_by_hop_index("Connection"), None, "header names are lower case here");
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

    /// The fast path of `strip_hop_by_hop` removes what the general one (`strip_named`)
    /// removes, for every combination of a few headers and `Connection` values.
    #[test]
    fn hop_by_hop_stripping_matches_the_general_rule() {
        use http::{HeaderMap, HeaderName, HeaderValue};
        let names = ["keep-alive", "te", "x-private", "close", "upgrade", "latchkey-error", "transfer-encoding"];
        let connection = ["", "keep-alive", "close", "Keep-Alive, TE", "x-private", "upgrade, X-Private", "close,te"];
        let mut checked = 0;
        for value in connection {
            for mask in 0u32..(1 << names.len()) {
                let mut headers = HeaderMap::new();
                if !value.is_empty() {
                    headers.insert(http::header::CONNECTION, HeaderValue::from_static(value));
                }
                for (i, n) in names.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        headers.append(HeaderName::from_static(n), HeaderValue::from_static("v"));
                    }
                }
                let mut fast = headers.clone();
                super::strip_hop_by_hop(&mut fast);
                let mut general = headers;
                super::strip_named(&mut general);
                assert_eq!(fast, general, "Connection: {value:?}, headers {mask:#b}");
                checked += 1;
            }
        }
        assert_eq!(checked, connection.len() << names.len());
    }

    /// The allocating check this replaced, kept as the reference.
    fn reference(path: &str) -> Result<(), String> {
        if path.contains("//") {
            return Err("empty".into());
        }
        if path.contains('\\') || path.chars().any(|c| c.is_control()) {
            return Err("control".into());
        }
        let lower = path.to_ascii_lowercase();
        if ["%2f", "%5c", "%00", "%0a", "%0d", "%25"].iter().any(|s| lower.contains(s)) {
            return Err("encoded".into());
        }
        for seg in lower.split('/') {
            let decoded = seg.replace("%2e", ".");
            if decoded == "." || decoded == ".." {
                return Err("dots".into());
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
