use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use latchkey_core::callers::KeyMemo;
use latchkey_core::engine::{OutBody, ProxyRequest, UpstreamResponse};
use latchkey_core::upstream::BoxError;
use latchkey_core::{CallError, Env, ErrorCode};
use serde::Deserialize;

use crate::extract::{AppCaller, AppOrUser};
use crate::{ApiError, AppState, request};

/// Proxy bodies up to this size are held in memory (and can be replayed once).
const REPLAYABLE_BODY: usize = 1 << 20;

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallBody {
    /// The call's parameters by name. A parameter with a `type` takes a value of that type
    /// (an integer, number or boolean also as text that reads as one: `"5"`, `"true"`); one
    /// with an `enum`, one of its values; otherwise `invalid_params` names the parameter.
    #[serde(default)]
    #[schema(value_type = Object)]
    params: serde_json::Value,
    #[serde(default)]
    user: Option<String>,
}

fn stream(up: UpstreamResponse) -> Response {
    let mut resp = Response::new(Body::new(up.body));
    *resp.status_mut() = up.status;
    *resp.headers_mut() = up.headers;
    resp
}

/// A request on one of the routes that carry an app's traffic, known by its path's shape
/// alone: `/v1/proxy/{connector}[/{*path}]` (any method) and `POST
/// /v1/connectors/{connector}/calls/{call}`. Anything else, including these paths with an
/// empty segment, is the router's (which answers 404 or 405 for them).
#[derive(Clone, Copy)]
pub enum Hot {
    Proxy,
    Call,
}

impl Hot {
    pub fn of(method: &http::Method, path: &str) -> Option<Hot> {
        if let Some(rest) = path.strip_prefix("/v1/proxy/") {
            return rest.split('/').next().is_some_and(|c| !c.is_empty()).then_some(Hot::Proxy);
        }
        let rest = path.strip_prefix("/v1/connectors/")?;
        (method == http::Method::POST && call_segments(rest).is_some()).then_some(Hot::Call)
    }

    /// The route template named in the log line.
    pub fn template(self) -> &'static str {
        match self {
            Hot::Proxy => "/v1/proxy/{connector}/{*path}",
            Hot::Call => "/v1/connectors/{connector}/calls/{call}",
        }
    }
}

/// `{connector}/calls/{call}`, both segments non-empty and still percent-encoded.
fn call_segments(rest: &str) -> Option<(&str, &str)> {
    let (connector, rest) = rest.split_once('/')?;
    let call = rest.strip_prefix("calls/")?;
    (!connector.is_empty() && !call.is_empty() && !call.contains('/')).then_some((connector, call))
}

/// One path segment, percent-decoded as the router's `Path` extractor does.
fn segment(raw: &str, what: &str) -> Result<String, ApiError> {
    percent_encoding::percent_decode_str(raw).decode_utf8().map(Into::into).map_err(|_| {
        ApiError::new(ErrorCode::InvalidParams, format!("the {what} name in the path is not percent-encoded UTF-8"))
    })
}

/// Serves a hot route. `memo` holds the key the connection presented last, where there is a
/// connection to remember it for (`oneshot` callers have none).
pub async fn serve_hot<B>(state: &AppState, hot: Hot, req: http::Request<B>, memo: Option<&KeyMemo>) -> Response
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let answer = match hot {
        Hot::Proxy => proxy_request(state, req, memo).await,
        Hot::Call => named_call_request(state, req, memo).await,
    };
    answer.unwrap_or_else(IntoResponse::into_response)
}

#[utoipa::path(post, path = "/v1/connectors/{connector}/calls/{call}", tag = "calls", params(("connector" = String, Path), ("call" = String, Path)), request_body(content = CallBody, description = "Optional for a call without parameters: an empty body is `{}`."), security(("app_key" = []), ("user_token" = [])), responses((status = "default", description = "The upstream's answer, streamed as it came (status, headers but hop-by-hop and `set-cookie`, body). Latchkey's own errors carry `Latchkey-Error`.", content_type = "*/*", body = String)))]
pub async fn named_call(State(state): State<AppState>, req: Request) -> Response {
    serve_hot(&state, Hot::Call, req, None).await
}

pub async fn proxy(State(state): State<AppState>, req: Request) -> Response {
    serve_hot(&state, Hot::Proxy, req, None).await
}

/// Notes the call's labels for the metrics and the log line, once the caller is known (so its
/// environment): the connector only if it exists, the named call (for the log line) only if
/// the connector has it. Names a caller made up are never labels.
fn note(state: &AppState, env: Env, connector: &str, call: Option<&str>) {
    let stats = state.metrics.connectors.get(connector, || state.engine.connector(connector).is_some());
    let call = stats.and(call).filter(|_| tracing::enabled!(tracing::Level::INFO)).and_then(|call| {
        let runtime = state.engine.connector(connector)?;
        runtime.config.calls.contains_key(call).then(|| call.to_owned())
    });
    request::note(|l| {
        l.connector = stats;
        l.env = Some(env);
        l.call = call;
    });
}

/// Extractors in the order a handler would run them: caller, path, body.
async fn named_call_request<B>(
    state: &AppState,
    req: http::Request<B>,
    memo: Option<&KeyMemo>,
) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let caller = AppOrUser::of(&parts, state, memo).await?;
    let rest = parts.uri.path().strip_prefix("/v1/connectors/").unwrap_or_default();
    let (connector, call) = call_segments(rest).unwrap_or_default();
    let (connector, call) = (segment(connector, "connector")?, segment(call, "call")?);
    note(state, caller.env(), &connector, Some(&call));
    let body = call_body(&parts.headers, body).await.map_err(|text| {
        ApiError::new(
            ErrorCode::InvalidParams,
            format!("the request body must be JSON `{{\"params\": {{...}}}}`: {text}"),
        )
    })?;
    state.audit("call", |a| {
        let mut f = serde_json::Map::new();
        match &caller {
            AppOrUser::App { env, key_id } => {
                f.insert("caller".into(), key_id.as_str().into());
                f.insert("environment".into(), env.as_str().into());
                if let Some(u) = &body.user {
                    f.insert("user".into(), a.hash(u).into());
                }
            }
            AppOrUser::User { env, user, .. } => {
                f.insert("caller".into(), "user token".into());
                f.insert("environment".into(), env.as_str().into());
                f.insert("user".into(), a.hash(user).into());
            }
        }
        f.insert("connector".into(), connector.as_str().into());
        f.insert("call".into(), call.as_str().into());
        f
    })?;
    let up = match caller {
        AppOrUser::App { env, .. } => {
            state.engine.call(env, &connector, &call, &body.params, body.user.as_deref()).await?
        }
        AppOrUser::User { env, user, .. } => {
            if body.user.as_deref().is_some_and(|u| u != user) {
                return Err(CallError::not_found(format!("no connection of yours on connector `{connector}`")).into());
            }
            state.engine.call_as_user(env, &connector, &call, &body.params, &user).await?
        }
    };
    request::note(|l| l.upstream = Some(up.upstream_time));
    Ok(stream(up))
}

/// The named call's body, as axum's `Json` extractor reads it (the same content types, limit
/// and error texts) without its per-request `mime` parse and boxed body: the common
/// `Content-Type: application/json` is recognised by a comparison. An empty body, with any
/// `Content-Type` or none, is `{}`: a call without parameters needs none.
async fn call_body<B>(headers: &http::HeaderMap, body: B) -> Result<CallBody, String>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if body.is_end_stream() {
        return Ok(CallBody::default());
    }
    if !json_content_type(headers) {
        return Err("Expected request with `Content-Type: application/json`".into());
    }
    let bytes =
        read_whole(body, JSON_BODY_LIMIT).await.map_err(|e| format!("Failed to buffer the request body: {e}"))?;
    if bytes.is_empty() {
        return Ok(CallBody::default());
    }
    Json::<CallBody>::from_bytes(&bytes).map(|Json(body)| body).map_err(|e| e.body_text())
}

/// The whole of `body`, or an error past `limit` bytes or when it fails midway.
async fn read_whole<B>(body: B, limit: usize) -> Result<Bytes, BoxError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    Ok(http_body_util::BodyExt::collect(http_body_util::Limited::new(body, limit)).await?.to_bytes())
}

/// axum's default body limit, which the `Json` extractor applied here before.
const JSON_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// `application/json`, or any `application/*+json`, with any parameters.
fn json_content_type(headers: &http::HeaderMap) -> bool {
    let Some(value) = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return true;
    }
    value
        .parse::<mime::Mime>()
        .is_ok_and(|m| m.type_() == "application" && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json")))
}

async fn proxy_request<B>(state: &AppState, req: http::Request<B>, memo: Option<&KeyMemo>) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let caller = AppCaller::of(&parts, state, memo).await?;
    let rest = parts.uri.path().strip_prefix("/v1/proxy/").unwrap_or_default();
    // The raw (still percent-encoded) path below the connector, not a decoded capture.
    let (raw_connector, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let connector = segment(raw_connector, "connector")?;
    note(state, caller.env, &connector, None);
    let path = path.to_owned();
    forward(state, caller, connector, path, http::Request::from_parts(parts, body)).await
}

async fn forward<B>(
    state: &AppState,
    caller: AppCaller,
    connector: String,
    path: String,
    req: http::Request<B>,
) -> Result<Response, ApiError>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let user = match req.headers().get("latchkey-user") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| CallError::invalid_params("`Latchkey-User` must be the app's user id as text"))?,
        ),
    };
    state.audit("proxy", |a| {
        let mut f = serde_json::Map::new();
        f.insert("caller".into(), caller.key_id.as_str().into());
        f.insert("environment".into(), caller.env.as_str().into());
        f.insert("connector".into(), connector.as_str().into());
        f.insert("method".into(), req.method().as_str().into());
        let target = req.uri().query().map_or_else(|| path.clone(), |q| format!("{path}?{q}"));
        f.insert("path".into(), a.hash(&target).into());
        if let Some(u) = &user {
            f.insert("user".into(), a.hash(u).into());
        }
        f
    })?;
    let (parts, body) = req.into_parts();
    // Small bodies are held, so a call can be sent again after a reactive token refresh;
    // larger ones stream through once.
    let length = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let empty_h1 = length.is_none()
        && !parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        && parts.version <= http::Version::HTTP_11;
    let body = if body.is_end_stream() {
        OutBody::Bytes(Bytes::new())
    } else if length.is_some_and(|n| n <= REPLAYABLE_BODY) || empty_h1 {
        let bytes = read_whole(body, REPLAYABLE_BODY).await.map_err(|e| {
            ApiError::new(ErrorCode::InvalidParams, format!("the request body could not be read ({e}); send it again"))
        })?;
        OutBody::Bytes(bytes)
    } else {
        OutBody::stream(body)
    };
    let proxied = ProxyRequest {
        user,
        method: parts.method,
        path,
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    let up = state.engine.proxy(caller.env, &connector, proxied).await?;
    request::note(|l| l.upstream = Some(up.upstream_time));
    Ok(stream(up))
}

#[cfg(test)]
mod tests {
    /// The comparison for `application/json` agrees with axum's `mime`-based rule, which the
    /// named call used before.
    #[test]
    fn json_content_types_are_those_axum_accepts() {
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON", true),
            ("application/json; charset=utf-8", true),
            ("application/json ;charset=utf-8", true),
            ("application/problem+json", true),
            ("application/vnd.api+json; charset=utf-8", true),
            ("application/jsonx", false),
            ("text/json", false),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("", false),
            ("json", false),
        ] {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_str(value).unwrap());
            assert_eq!(super::json_content_type(&headers), json, "{value:?}");
        }
        assert!(!super::json_content_type(&http::HeaderMap::new()), "no Content-Type");
    }
}
