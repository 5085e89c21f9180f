//! OAuth 1.0a on the call path: the token (the app's, or the calling user's connection's),
//! a form-encoded body read into memory when it streams (its parameters are signed, RFC 5849
//! §3.4.1.3.1; up to [`super::digest::BODY_LIMIT`], for OAuth 1.0a connectors only: other
//! bodies are not signed and stream through), the signing step, the send.

use bytes::Bytes;
use http_body_util::BodyExt as _;
use secrecy::ExposeSecret as _;

use super::build::Outgoing;
use super::{OutBody, UpstreamResponse, send};
use crate::auth::Prepared;
use crate::auth::oauth1::{self, OAuth1Auth, Token};
use crate::engine::Engine;
use crate::engine::runtime::ConnectorRuntime;
use crate::store::{ConnectionRow, TokenKey};
use crate::token::TokenSet;
use crate::{CallError, Env, ErrorCode};

/// [`send_with_oauth1`] boxed, built out of line, as Digest's: neither its state nor its code
/// is in `sign_and_send`.
#[inline(never)]
pub(super) fn boxed<'a>(
    engine: &'a Engine,
    conn: &'a ConnectorRuntime,
    prepared: &'a Prepared,
    auth: &'a OAuth1Auth,
    env: Env,
    user: Option<&'a str>,
    request: &'a mut Outgoing,
) -> std::pin::Pin<Box<dyn Future<Output = Result<UpstreamResponse, CallError>> + Send + 'a>> {
    Box::pin(send_with_oauth1(engine, conn, prepared, auth, env, user, request))
}

async fn send_with_oauth1(
    engine: &Engine,
    conn: &ConnectorRuntime,
    prepared: &Prepared,
    auth: &OAuth1Auth,
    env: Env,
    user: Option<&str>,
    request: &mut Outgoing,
) -> Result<UpstreamResponse, CallError> {
    let (set, row) = match (&auth.flow, user) {
        (None, None) => (None, None),
        (Some(_), Some(owner)) => {
            let row = engine.user_connection(env, &conn.name, owner).await?.ok_or_else(|| {
                CallError::not_found(format!(
                    "user `{owner}` has no connection on connector `{}` ({env}): connect one with POST /v1/connect/{}",
                    conn.name, conn.name
                ))
            })?;
            let key = TokenKey { connector: conn.name.clone(), env, connection: row.id.clone() };
            let mut set = engine.tokens.current(&key).await;
            // Connected again (here or at another instance, whose write this one's connection
            // cache learns of at its next sync) since this token was read: read it again.
            if set.as_ref().is_some_and(|s| s.obtained_at < row.updated_at) {
                engine.tokens.forget(&key);
                set = engine.tokens.current(&key).await;
            }
            let Some(set) = set else {
                let mut e = CallError::new(
                    ErrorCode::ReauthorizationRequired,
                    format!(
                        "the connection of user `{owner}` on connector `{}` holds no token: send the user to `reconnect_url` to connect again",
                        conn.name
                    ),
                );
                e.details.insert("connection".into(), serde_json::Value::String(row.id.clone()));
                if let Some(url) = engine.reconnect_url(&row).await {
                    e.details.insert("reconnect_url".into(), serde_json::Value::String(url));
                }
                return Err(e);
            };
            (Some(set), Some(row))
        }
        (Some(_), None) => {
            return Err(CallError::invalid_params(format!(
                "connector `{}` holds per-user connections: name whose with `user` (or the `Latchkey-User` header)",
                conn.name
            )));
        }
        (None, Some(_)) => {
            return Err(CallError::invalid_params(format!(
                "connector `{}` uses app-level credentials (oauth1): drop `user` / `Latchkey-User`",
                conn.name
            )));
        }
    };
    let token = match &set {
        Some(s) => Some(Token {
            token: s.access_token.expose_secret(),
            secret: s.token_secret.as_ref().map_or("", |t| t.expose_secret()),
        }),
        None => auth.app_token(),
    };
    let mut body = match std::mem::replace(&mut request.body, OutBody::Bytes(Bytes::new())) {
        OutBody::Bytes(b) => Some(b),
        OutBody::Stream(s) if oauth1::is_form(&request.headers) => Some(read_form(conn, s).await?),
        OutBody::Stream(s) => {
            request.body = OutBody::Stream(s);
            None
        }
    };
    let now_s = engine.clock.now_ms().div_euclid(1000);
    auth.sign(
        oauth1::Request {
            method: &request.method,
            url: &mut request.url,
            headers: &mut request.headers,
            body: body.as_mut(),
            now_s,
        },
        token,
        &[],
    )?;
    if let Some(b) = body {
        request.body = OutBody::Bytes(b);
    }
    let response = send::send_outgoing(conn, prepared, request).await?;
    match (set, row, &auth.flow) {
        (Some(set), Some(row), Some(flow)) if response.status == http::StatusCode::UNAUTHORIZED => {
            revoked(engine, conn, flow, &row, &set, response).await
        }
        _ => Ok(response),
    }
}

/// A `401` to a user's call: when it reports the user's token revoked (`oauth_problem`, see
/// [`oauth1::revoked_token_problem`]), the connection is marked as needing reconnection and
/// the caller answered `reauthorization_required` with a `reconnect_url`, as an OAuth 2
/// connection whose refresh token is refused; any other `401` is passed through.
async fn revoked(
    engine: &Engine,
    conn: &ConnectorRuntime,
    flow: &oauth1::Flow,
    row: &ConnectionRow,
    set: &TokenSet,
    response: UpstreamResponse,
) -> Result<UpstreamResponse, CallError> {
    let (head, response) = send::sniff(response).await;
    let Some(problem) = oauth1::revoked_token_problem(&response.headers, &head) else {
        return Ok(response);
    };
    drop(response);
    let src = flow.for_connection(&row.id);
    let reason = format!("the upstream answered 401 with oauth_problem={problem}: the user must connect again");
    if let Err(e) = engine.tokens.revoked(&src, &set.access_token, &reason).await {
        // The caller is told to reconnect all the same; the next call sees the token refused
        // again and tries once more to mark it.
        tracing::warn!(connector = %conn.name, env = %row.env, error = %e, "could not mark the revoked OAuth 1.0a token");
    }
    let mut refused = CallError::new(ErrorCode::ReauthorizationRequired, reason);
    refused.details.insert("provider_error".into(), serde_json::Value::String(problem.to_owned()));
    Err(engine.reauthorization(refused, Some(row)).await)
}

/// A streamed form body read into memory, up to [`super::digest::BODY_LIMIT`].
async fn read_form(conn: &ConnectorRuntime, mut stream: crate::upstream::ReqBody) -> Result<Bytes, CallError> {
    let limit = super::digest::BODY_LIMIT;
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = stream.frame().await {
        let Ok(frame) = frame else {
            return Err(CallError::invalid_params("the request body could not be read to the end"));
        };
        if let Some(chunk) = frame.data_ref() {
            if read.len() + chunk.len() > limit {
                return Err(CallError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "connector `{}` uses OAuth 1.0a, which signs the parameters of a form-encoded body: its proxied form bodies are held in memory, at most {} MiB; send a smaller form (or another content type, which is not signed and streams)",
                        conn.name,
                        limit / (1024 * 1024)
                    ),
                ));
            }
            read.extend_from_slice(chunk);
        }
    }
    Ok(read.freeze())
}
