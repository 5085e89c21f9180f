//! The MCP server (SPEC §13 "Agents"): `/mcp`, the Model Context Protocol's Streamable HTTP
//! transport, stateless, every answer `application/json` (no SSE stream, no session id).
//! JSON-RPC by hand over serde_json, the subset a tool server needs: `initialize`,
//! `notifications/initialized` (and any notification: 202), `ping`, `tools/list`,
//! `tools/call` (docs/decisions.md says why not `rmcp`).
//!
//! Tools are named calls marked `mcp = true` (on the call, or on the connector for all its
//! calls), named `connector.call` or their `tool_name`. A tool call goes through the same
//! engine function and checks as `POST /v1/connectors/{c}/calls/{call}` (`Engine::call` for an
//! app key, `Engine::call_as_user` for a user token), and is written to the audit log as a
//! `call` with `via: "mcp"`. The upstream's answer is the tool's content (bounded; JSON as
//! `structuredContent`); an upstream error status or a refused call is a tool error
//! (`isError`), not a protocol error. A user without a connection gets the connect link.
//!
//! Who calls: a Latchkey user access token (user tools: `access = "user"` calls) or an app key
//! (app-level tools: calls of connectors without per-user credentials). Unauthenticated
//! requests get `401` with `WWW-Authenticate: Bearer resource_metadata="…"` (RFC 9728), whose
//! document is served at `/.well-known/oauth-protected-resource[/mcp]`.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt as _;
use latchkey_core::auth::Credential;
use latchkey_core::config::{Access, CallConfig};
use latchkey_core::{CallError, Env, ErrorCode};
use serde_json::{Map, Value, json};

use latchkey_core::engine::mcp_session::{self, McpSession};

use crate::extract::AppOrUser;
use crate::{ApiError, AppState};

/// The protocol revisions answered; the first is offered when the client asks for another.
const VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26"];
/// The revision that has URL-mode elicitation.
const URL_ELICITATION_SINCE: &str = "2025-11-25";
/// How long a session id is honoured; past it, `404` and the client initializes again.
const SESSION_TTL_MS: i64 = 24 * 3600 * 1000;
/// `URLElicitationRequiredError` (MCP 2025-11-25).
const URL_ELICITATION_REQUIRED: i64 = -32042;
/// The largest request body read (a tool call's arguments).
const BODY_LIMIT: usize = 256 * 1024;
/// The most of an upstream's answer a tool result carries.
pub const RESULT_LIMIT: usize = 64 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/mcp", axum::routing::post(post).get(not_offered).delete(not_offered))
        .route("/.well-known/oauth-protected-resource", get(resource_metadata))
        .route("/.well-known/oauth-protected-resource/mcp", get(resource_metadata))
}

fn resource(state: &AppState) -> String {
    format!("{}/mcp", state.engine.public_url().trim_end_matches('/'))
}

/// RFC 9728 Protected Resource Metadata for `/mcp`: Latchkey is its own authorization server.
async fn resource_metadata(State(state): State<AppState>) -> Response {
    let issuer = state.engine.public_url().trim_end_matches('/').to_owned();
    axum::Json(json!({
        "resource": resource(&state),
        "authorization_servers": [issuer],
        "bearer_methods_supported": ["header"],
        "resource_name": "Latchkey",
        "scopes_supported": ["tools"],
    }))
    .into_response()
}

/// No SSE stream and no sessions to end: `GET` and `DELETE` are 405 (MCP, Streamable HTTP).
async fn not_offered() -> Response {
    let mut r = StatusCode::METHOD_NOT_ALLOWED.into_response();
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("POST"));
    r
}

fn unauthenticated(state: &AppState, e: ApiError) -> Response {
    let mut r = e.into_response();
    *r.status_mut() = StatusCode::UNAUTHORIZED;
    let metadata = format!(
        "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        state.engine.public_url().trim_end_matches('/')
    );
    if let Ok(v) = HeaderValue::from_str(&metadata) {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

/// DNS rebinding (MCP, Streamable HTTP "Security Warning"): an `Origin` other than Latchkey's
/// own public origin is refused with 403.
fn origin_allowed(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let public = state.engine.public_url();
    let host_at = public.find("://").map_or(0, |i| i + 3);
    let own = public[host_at..].find('/').map_or(public, |j| &public[..host_at + j]);
    origin.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(own))
}

fn rpc_error(id: Value, code: i64, message: impl Into<String>) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message.into()}})
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

fn plain(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn post(State(state): State<AppState>, req: axum::extract::Request) -> Response {
    let (parts, body) = req.into_parts();
    if !origin_allowed(&state, &parts.headers) {
        return plain(StatusCode::FORBIDDEN, rpc_error(Value::Null, -32600, "this Origin may not call /mcp"));
    }
    if let Some(v) = parts.headers.get("mcp-protocol-version")
        && !v.to_str().is_ok_and(|v| VERSIONS.contains(&v))
    {
        return plain(
            StatusCode::BAD_REQUEST,
            rpc_error(
                Value::Null,
                -32600,
                format!("unsupported MCP-Protocol-Version: use one of {}", VERSIONS.join(", ")),
            ),
        );
    }
    let caller = match AppOrUser::of_mcp(&parts, &state).await {
        Ok(c) => c,
        Err(e) => return unauthenticated(&state, e),
    };
    let bytes = match http_body_util::Limited::new(body, BODY_LIMIT).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, rpc_error(Value::Null, -32600, "the request is too large"));
        }
    };
    let Ok(msg) = serde_json::from_slice::<Value>(&bytes) else {
        return plain(StatusCode::BAD_REQUEST, rpc_error(Value::Null, -32700, "not JSON"));
    };
    let method = msg["method"].as_str().unwrap_or_default();
    // The session id, when the client sends one (it need not: without it, nothing declared at
    // `initialize` is known, and tools answer as to a client without URL elicitation).
    let session = if method == "initialize" {
        None
    } else {
        match parts.headers.get("mcp-session-id") {
            None => None,
            Some(v) => match v.to_str().ok().and_then(|id| open_session(&state, &caller, id)) {
                Some(s) => Some(s),
                None => {
                    return plain(
                        StatusCode::NOT_FOUND,
                        rpc_error(
                            msg.get("id").cloned().unwrap_or(Value::Null),
                            -32001,
                            "this Mcp-Session-Id is unknown here, expired, or another caller's: initialize again",
                        ),
                    );
                }
            },
        }
    };
    // A notification or a response from the client: accepted, nothing to answer.
    let Some(id) = msg.get("id").cloned().filter(|_| msg.get("method").is_some()) else {
        return StatusCode::ACCEPTED.into_response();
    };
    let params = msg.get("params").cloned().unwrap_or(Value::Null);
    let answer = match method {
        "initialize" => {
            let asked = params["protocolVersion"].as_str().unwrap_or_default();
            let version = VERSIONS.iter().find(|v| **v == asked).copied().unwrap_or(VERSIONS[0]);
            let session = McpSession {
                issued_at: state.engine.now_ms(),
                // `elicitation: {}` alone means form mode only (the spec's backwards
                // compatibility); URL mode is `elicitation.url`.
                url_elicitation: params["capabilities"]["elicitation"]["url"].is_object(),
                protocol_version: version.to_owned(),
                caller: fingerprint(&caller),
            };
            let answer = rpc_result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {"listChanged": false}},
                    "serverInfo": {"name": "latchkey", "version": env!("CARGO_PKG_VERSION")},
                    "instructions": "Each tool is a named call of an API that Latchkey signs for you; credentials never appear here.",
                }),
            );
            let mut r = plain(StatusCode::OK, answer);
            if let Ok(v) = HeaderValue::from_str(&state.engine.seal_mcp_session(&session)) {
                r.headers_mut().insert("mcp-session-id", v);
            }
            return r;
        }
        "ping" => rpc_result(id, json!({})),
        "tools/list" => {
            rpc_result(id, json!({"tools": tools(&state, &caller).into_iter().map(|t| t.listing).collect::<Vec<_>>()}))
        }
        "tools/call" => {
            let elicit =
                session.is_some_and(|s| s.url_elicitation && s.protocol_version.as_str() >= URL_ELICITATION_SINCE);
            match call(&state, &caller, &params, elicit).await {
                Ok(result) => rpc_result(id, result),
                Err(ToolError::Protocol(code, message)) => rpc_error(id, code, message),
                Err(ToolError::Elicit(error)) => json!({"jsonrpc": "2.0", "id": id, "error": error}),
                Err(ToolError::Refused(e)) => return e.into_response(),
            }
        }
        other => rpc_error(id, -32601, format!("method `{other}` is not offered by this server")),
    };
    plain(StatusCode::OK, answer)
}

/// Who is calling, as a session remembers it.
fn fingerprint(caller: &AppOrUser) -> String {
    match caller {
        AppOrUser::App { env, key_id } => McpSession::fingerprint("app", *env, key_id),
        AppOrUser::User { env, user, .. } => McpSession::fingerprint("user", *env, user),
    }
}

/// The session a presented id holds, when this install sealed it for this caller less than
/// [`SESSION_TTL_MS`] ago; else `None` (the transport's answer is 404: initialize again).
fn open_session(state: &AppState, caller: &AppOrUser, id: &str) -> Option<McpSession> {
    let s = state.engine.open_mcp_session(id)?;
    let age = state.engine.now_ms() - s.issued_at;
    (s.is_of(&fingerprint(caller)) && (0..SESSION_TTL_MS).contains(&age)).then_some(s)
}

/// A tool: the named call it runs, and its listing.
struct Tool {
    connector: String,
    call: String,
    listing: Value,
}

/// Whether this caller may use a call as a tool: a user token, `access = "user"` calls; an app
/// key, the calls of connectors whose credential is the app's own.
fn offered(caller: &AppOrUser, call: &CallConfig, credential: Option<&Credential>) -> bool {
    match caller {
        AppOrUser::User { .. } => call.access == Access::User,
        AppOrUser::App { .. } => {
            !matches!(credential, Some(Credential::User(_) | Credential::PerUser(_) | Credential::Identity { .. }))
        }
    }
}

/// Whether a token's `scope` lets it see a tool: absent, every tool; present, only when it
/// holds `tools` (all), `connector:NAME` (that connector's tools) or `tool:NAME` (that tool,
/// by its listed name). Other words (a scope may say more than tools) grant no tool.
pub(crate) fn in_scope(scope: Option<&str>, connector: &str, tool: &str) -> bool {
    let Some(scope) = scope else { return true };
    scope.split_ascii_whitespace().any(|word| {
        word == "tools"
            || word.strip_prefix("connector:") == Some(connector)
            || word.strip_prefix("tool:") == Some(tool)
    })
}

/// The tools this caller sees (and may call): offered to its kind of caller, within its
/// token's scope.
fn tools(state: &AppState, caller: &AppOrUser) -> Vec<Tool> {
    let env = caller.env();
    let scope = match caller {
        AppOrUser::User { scope, .. } => scope.as_deref(),
        AppOrUser::App { .. } => None,
    };
    let mut out: BTreeMap<String, Tool> = BTreeMap::new();
    for conn in state.engine.connectors() {
        let credential = conn.credential(env).ok().map(|p| &p.credential);
        for (name, call_name, call) in conn.config.tools(&conn.name) {
            if !offered(caller, call, credential) || !in_scope(scope, &conn.name, &name) || out.contains_key(&name) {
                continue;
            }
            let mut listing = json!({"name": name, "inputSchema": input_schema(call)});
            if let Some(d) = &call.description {
                listing["description"] = Value::String(d.clone());
            }
            listing["title"] = Value::String(format!("{} {}", conn.name, call_name));
            out.insert(name, Tool { connector: conn.name.clone(), call: call_name.to_owned(), listing });
        }
    }
    out.into_values().collect()
}

/// The JSON type of a value, for a parameter's schema.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

/// The input schema of a named call: its public parameters (private ones are fixed and never
/// appear), each with its `type` (declared, else its default's), `enum`, description and
/// default, and which are required.
pub(crate) fn input_schema(call: &CallConfig) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (name, p) in call.params.iter().filter(|(_, p)| !p.private) {
        let mut prop = Map::new();
        // The declared `type`, else the default's: text that reads as the type is accepted
        // too, but a schema says what to send.
        match (p.ty, &p.default) {
            (Some(t), _) => {
                prop.insert("type".into(), t.as_str().into());
            }
            (None, Some(d)) => {
                prop.insert("type".into(), json_type(d).into());
            }
            (None, None) => {}
        }
        if let Some(d) = &p.default {
            prop.insert("default".into(), d.clone());
        }
        if let Some(allowed) = &p.one_of {
            prop.insert("enum".into(), Value::Array(allowed.clone()));
        }
        if let Some(d) = &p.description {
            prop.insert("description".into(), Value::String(d.clone()));
        }
        if p.required {
            required.push(Value::String(name.clone()));
        }
        properties.insert(name.clone(), Value::Object(prop));
    }
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

enum ToolError {
    Protocol(i64, String),
    /// `URLElicitationRequiredError`: the JSON-RPC error object, the connect link in its data.
    Elicit(Value),
    /// The audit log cannot be written: the request is refused as every call would be.
    Refused(ApiError),
}

/// Runs a tool; `elicit`: the client takes URL-mode elicitation, so a user without a
/// connection gets the connect link as `URLElicitationRequiredError` instead of a tool result.
async fn call(state: &AppState, caller: &AppOrUser, params: &Value, elicit: bool) -> Result<Value, ToolError> {
    let name = params["name"].as_str().ok_or_else(|| ToolError::Protocol(-32602, "`name` is missing".into()))?;
    let tool = tools(state, caller)
        .into_iter()
        .find(|t| t.listing["name"] == name)
        .ok_or_else(|| ToolError::Protocol(-32602, format!("unknown tool `{name}`: tools/list names them")))?;
    let args = match params.get("arguments") {
        None | Some(Value::Null) => json!({}),
        Some(a @ Value::Object(_)) => a.clone(),
        Some(_) => return Err(ToolError::Protocol(-32602, "`arguments` must be an object".into())),
    };
    state
        .audit("call", |a| {
            let mut f = Map::new();
            match caller {
                AppOrUser::App { env, key_id } => {
                    f.insert("caller".into(), key_id.as_str().into());
                    f.insert("environment".into(), env.as_str().into());
                }
                AppOrUser::User { env, user, .. } => {
                    f.insert("caller".into(), "user token".into());
                    f.insert("environment".into(), env.as_str().into());
                    f.insert("user".into(), a.hash(user).into());
                }
            }
            f.insert("connector".into(), tool.connector.as_str().into());
            f.insert("call".into(), tool.call.as_str().into());
            f.insert("via".into(), "mcp".into());
            f
        })
        .map_err(ToolError::Refused)?;
    let answer = match caller {
        AppOrUser::App { env, .. } => state.engine.call(*env, &tool.connector, &tool.call, &args, None).await,
        AppOrUser::User { env, user, .. } => {
            state.engine.call_as_user(*env, &tool.connector, &tool.call, &args, user).await
        }
    };
    let up = match answer {
        Ok(up) => up,
        Err(e) => return refused(state, caller, &tool, e, elicit).await,
    };
    let status = up.status;
    let mut body = Vec::new();
    let mut cut = false;
    let mut stream = up.body;
    while let Some(frame) = stream.frame().await {
        let Ok(frame) = frame else {
            return Ok(tool_error(format!("the upstream's answer broke off (status {})", status.as_u16())));
        };
        if let Ok(data) = frame.into_data() {
            let room = RESULT_LIMIT - body.len();
            if data.len() > room {
                body.extend_from_slice(&data[..room]);
                cut = true;
                break;
            }
            body.extend_from_slice(&data);
        }
    }
    Ok(upstream_result(status, &Bytes::from(body), cut))
}

/// The tool result of an upstream's answer: its text (and JSON object as `structuredContent`),
/// a note when it was cut, `isError` for an error status.
pub(crate) fn upstream_result(status: StatusCode, body: &[u8], cut: bool) -> Value {
    let text = String::from_utf8_lossy(body).into_owned();
    let mut content = vec![json!({"type": "text", "text": text})];
    let mut result = json!({"isError": status.is_client_error() || status.is_server_error()});
    if cut {
        content.push(json!({"type": "text", "text": format!(
            "[Latchkey: the answer was cut at {RESULT_LIMIT} bytes; ask for less (a narrower query or a smaller page)]"
        )}));
    } else if let Ok(v @ Value::Object(_)) = serde_json::from_slice::<Value>(body) {
        result["structuredContent"] = v;
    }
    if result["isError"] == true {
        content
            .insert(0, json!({"type": "text", "text": format!("The API answered with status {}.", status.as_u16())}));
    }
    result["content"] = Value::Array(content);
    result
}

fn tool_error(text: String) -> Value {
    json!({"isError": true, "content": [{"type": "text", "text": text}]})
}

/// A refused call as a tool result: the connect link for a user without a connection (what to
/// open, then call again; as `URLElicitationRequiredError` when `elicit`), else the error's
/// code and message.
async fn refused(
    state: &AppState,
    caller: &AppOrUser,
    tool: &Tool,
    e: CallError,
    elicit: bool,
) -> Result<Value, ToolError> {
    if let AppOrUser::User { env, user, .. } = caller
        && e.code == ErrorCode::NotFound
        && let Ok(false) = state.engine.connections().has_connection(*env, &tool.connector, user).await
    {
        let link = connect_link(state, *env, &tool.connector, user).await;
        return match link {
            Some(url) if elicit => Err(ToolError::Elicit(elicitation(&tool.connector, url))),
            link => Ok(connect_result(&tool.connector, link)),
        };
    }
    let mut text = format!("{}: {}", e.code.as_str(), e.message);
    if let Some(Value::String(url)) = e.details.get("reconnect_url") {
        text.push_str(&format!("\nTo connect again, open: {url}"));
    }
    Ok(tool_error(text))
}

/// A connect link for this user and connector, made as `POST /v1/connect/{connector}` would,
/// returning to the first `return_to_allow` entry (none without one).
async fn connect_link(state: &AppState, env: Env, connector: &str, user: &str) -> Option<String> {
    let to = state.engine.config().server.return_to_allow.first().map(|u| u.as_str().to_owned())?;
    state.engine.connections().connect_session(env, connector, user, &to, BTreeMap::new()).await.ok()
}

/// The error object of `URLElicitationRequiredError` (MCP 2025-11-25, "URL mode"): the client
/// shows `message` and offers to open `url`, then calls the tool again.
fn elicitation(connector: &str, url: String) -> Value {
    let message = format!("Connect your `{connector}` account to use this tool; then call it again.");
    json!({
        "code": URL_ELICITATION_REQUIRED,
        "message": format!("you have not connected `{connector}` yet: open the link to connect it"),
        "data": {"elicitations": [{
            "mode": "url",
            "elicitationId": mcp_session::elicitation_id(),
            "url": url,
            "message": message,
        }]},
    })
}

fn connect_result(connector: &str, link: Option<String>) -> Value {
    let text = match &link {
        Some(url) => format!(
            "You have not connected `{connector}` yet. Open this link to connect it, then call the tool again: {url}"
        ),
        None => format!(
            "You have not connected `{connector}` yet: ask the app to connect it for you (POST /v1/connect/{connector}), then call the tool again."
        ),
    };
    let mut result = json!({"isError": true, "content": [{"type": "text", "text": text}]});
    if let Some(url) = link {
        result["structuredContent"] = json!({"connect_url": url, "connector": connector});
    }
    result
}

#[cfg(test)]
#[path = "mcp/tests.rs"]
mod router_tests;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a panic is the failure report")]
    use super::*;

    #[test]
    fn the_schema_has_public_parameters_only_with_their_types_defaults_and_required() {
        let call: CallConfig = serde_json::from_value(json!({
            "path": "/x",
            "params": {
                "q": {"required": true, "description": "what to look for"},
                "limit": {"default": 10},
                "key": {"private": true, "value": "fixed"},
                "page": {"type": "integer", "required": true},
                "sort": {"enum": ["asc", "desc"], "default": "asc"},
                "ratio": {"type": "number", "default": 1, "enum": [1, 2.5]},
            },
        }))
        .unwrap();
        let s = input_schema(&call);
        assert_eq!(s["required"], json!(["page", "q"]));
        assert_eq!(s["properties"]["q"]["description"], "what to look for");
        assert_eq!(s["properties"]["limit"], json!({"type": "integer", "default": 10}));
        assert_eq!(s["properties"]["page"], json!({"type": "integer"}));
        assert_eq!(s["properties"]["sort"], json!({"type": "string", "default": "asc", "enum": ["asc", "desc"]}));
        assert_eq!(
            s["properties"]["ratio"],
            json!({"type": "number", "default": 1, "enum": [1, 2.5]}),
            "declared wins"
        );
        assert!(s["properties"].get("key").is_none(), "{s}");
        assert_eq!(s["additionalProperties"], false);
    }

    #[test]
    fn a_scope_narrows_tools_to_all_a_connector_or_one_tool() {
        assert!(in_scope(None, "gh", "gh.repos"), "no scope: no narrowing");
        assert!(in_scope(Some("tools"), "gh", "gh.repos"));
        assert!(in_scope(Some("openid connector:gh"), "gh", "github_repos"));
        assert!(!in_scope(Some("connector:ghx connector:g"), "gh", "gh.repos"), "whole names only");
        assert!(in_scope(Some("tool:github_repos"), "gh", "github_repos"));
        assert!(!in_scope(Some("tool:gh.repos"), "gh", "github_repos"), "the listed name, not connector.call");
        assert!(!in_scope(Some(""), "gh", "gh.repos"), "present and empty: nothing");
        assert!(!in_scope(Some("openid profile toolsx"), "gh", "gh.repos"));
        assert!(in_scope(Some("  tool:a\ttools "), "gh", "b"), "any ASCII whitespace separates");
    }

    #[test]
    fn an_answer_is_bounded_and_an_error_status_is_a_tool_error() {
        let ok = upstream_result(StatusCode::OK, br#"{"a": 1}"#, false);
        assert_eq!(ok["isError"], false);
        assert_eq!(ok["structuredContent"], json!({"a": 1}));
        let cut = upstream_result(StatusCode::OK, br#"{"a": "#, true);
        assert!(cut.get("structuredContent").is_none());
        assert!(cut["content"][1]["text"].as_str().unwrap().contains("cut at"));
        let bad = upstream_result(StatusCode::BAD_GATEWAY, b"down", false);
        assert_eq!(bad["isError"], true);
        assert!(bad["content"][0]["text"].as_str().unwrap().contains("502"));
    }
}
