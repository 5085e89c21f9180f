use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use latchkey_core::engine::{OutBody, ProxyRequest, UpstreamResponse};

/// Proxy bodies up to this size are held in memory (and can be replayed once).
const REPLAYABLE_BODY: usize = 1 << 20;
use latchkey_core::{CallError, ErrorCode};
use serde::Deserialize;

use crate::extract::{AppCaller, AppOrUser};
use crate::{ApiError, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallBody {
    #[serde(default)]
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

pub async fn named_call(
    State(state): State<AppState>,
    caller: AppOrUser,
    Path((connector, call)): Path<(String, String)>,
    body: Result<Json<CallBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidParams,
            format!("the request body must be JSON `{{\"params\": {{...}}}}`: {}", e.body_text()),
        )
    })?;
    let up = match caller {
        AppOrUser::App { env } => state.engine.call(env, &connector, &call, &body.params, body.user.as_deref()).await?,
        AppOrUser::User { env, user } => {
            if body.user.as_deref().is_some_and(|u| u != user) {
                return Err(CallError::not_found(format!("no connection of yours on connector `{connector}`")).into());
            }
            state.engine.call_as_user(env, &connector, &call, &body.params, &user).await?
        }
    };
    Ok(stream(up))
}

pub async fn proxy_root(
    state: State<AppState>,
    caller: AppCaller,
    Path(connector): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    forward(state, caller, connector, String::new(), req).await
}

pub async fn proxy(
    state: State<AppState>,
    caller: AppCaller,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Result<Response, ApiError> {
    let connector = params.into_iter().find(|(k, _)| k == "connector").map(|(_, v)| v).unwrap_or_default();
    // The raw (still percent-encoded) path below the connector, not the decoded capture.
    let prefix_len = "/v1/proxy/".len() + req.uri().path()["/v1/proxy/".len()..].find('/').unwrap_or(0);
    let path = req.uri().path()[prefix_len..].to_owned();
    forward(state, caller, connector, path, req).await
}

async fn forward(
    State(state): State<AppState>,
    caller: AppCaller,
    connector: String,
    path: String,
    req: Request,
) -> Result<Response, ApiError> {
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
    let (parts, body) = req.into_parts();
    // Small bodies are held, so a call can be sent again after a reactive token refresh;
    // larger ones stream through once.
    let length = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let empty_h1 = length.is_none()
        && !parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        && parts.version <= http::Version::HTTP_11;
    let body = if length.is_some_and(|n| n <= REPLAYABLE_BODY) || empty_h1 {
        let bytes = axum::body::to_bytes(body, REPLAYABLE_BODY)
            .await
            .map_err(|_| ApiError::new(ErrorCode::InvalidParams, "the request body could not be read"))?;
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
    Ok(stream(up).into_response())
}
