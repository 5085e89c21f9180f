//! The send and response-filter phases: one request to the upstream on the connector's pooled
//! client, the answer's hop-by-hop headers and cookies dropped, and the check whether the answer
//! refuses the access token (which sends the request once more with a new one).

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderValue, Method, header};
use http_body_util::BodyExt as _;
use url::Url;

use super::UpstreamResponse;
use super::headers::strip_hop_by_hop;
use crate::auth::{Prepared, TokenSource};
use crate::engine::runtime::ConnectorRuntime;
use crate::upstream::{ReqBody, SendError};
use crate::{CallError, ErrorCode};

/// How much of an upstream error body is read to look for a `refresh_on.body_contains` match
/// (or OAuth 1.0a's `oauth_problem`).
const SNIFF_LIMIT: usize = 64 * 1024;

/// Sends a signed request once (nothing to refresh).
pub(super) async fn send_outgoing(
    conn: &ConnectorRuntime,
    prepared: &Prepared,
    request: &mut super::build::Outgoing,
) -> Result<UpstreamResponse, CallError> {
    let headers = std::mem::take(&mut request.headers);
    let body = std::mem::replace(&mut request.body, super::OutBody::Bytes(Bytes::new()));
    send_once(conn, prepared, request.method.clone(), &request.url, headers, body.into_body()).await
}

/// Sends one signed request and hands back the answer, still streaming.
pub(super) async fn send_once(
    conn: &ConnectorRuntime,
    prepared: &Prepared,
    method: Method,
    url: &Url,
    headers: HeaderMap,
    body: ReqBody,
) -> Result<UpstreamResponse, CallError> {
    let target = http::Uri::try_from(&url[url::Position::BeforePath..]).map_err(|_| {
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
    let sent = std::time::Instant::now();
    let response =
        prepared.upstream.send(&conn.origin, request, conn.timeout).await.map_err(|e| send_error(e, conn))?;
    let upstream_time = sent.elapsed();
    let (parts, body) = response.into_parts();
    let mut headers = parts.headers;
    // Also `Latchkey-Error` and its kin: Latchkey's words, which an upstream cannot speak.
    strip_hop_by_hop(&mut headers);
    headers.remove(header::SET_COOKIE);
    Ok(UpstreamResponse {
        status: parts.status,
        headers,
        body: body.map_err(std::io::Error::other).boxed_unsync(),
        upstream_time,
    })
}

/// Whether the upstream's answer means "this access token is no longer good": a 401, or a
/// `refresh_on` match (status, and text in the body when `body_contains` is set). A body read
/// to decide is put back in front of the rest of the stream.
pub(super) async fn token_refused(src: &TokenSource, resp: UpstreamResponse) -> (bool, UpstreamResponse) {
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
    let (head, resp) = sniff(resp).await;
    let found = head.windows(needle.len().max(1)).any(|w| w == needle.as_bytes());
    (found, resp)
}

/// The first [`SNIFF_LIMIT`] bytes of the answer's body (or all of it, when shorter), read to
/// decide what the answer means, and the answer with them put back in front of the rest.
pub(super) async fn sniff(resp: UpstreamResponse) -> (Bytes, UpstreamResponse) {
    let UpstreamResponse { status, headers, body, upstream_time } = resp;
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
    let head = Bytes::from(head);
    let prefix = futures_util::stream::iter(
        std::iter::once(Ok(http_body::Frame::data(head.clone()))).chain(rest_error.map(Err)),
    );
    let body = http_body_util::StreamBody::new(prefix.chain(body)).boxed_unsync();
    (head, UpstreamResponse { status, headers, body, upstream_time })
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
