//! HTTP Digest on the call path. With a challenge kept from an earlier answer the request is
//! signed before it leaves (one round trip); without one it goes unsigned, and the upstream's
//! 401 challenge signs it again. A 401 to a signed request (a nonce the upstream no longer
//! takes, `stale=true` or not) is answered once with its new challenge; a 401 to that is the
//! credential refused. The body is sent twice at most, so a streamed (proxied) body is read
//! into memory first, up to [`BODY_LIMIT`]: for Digest connectors only.

use bytes::Bytes;
use http::{HeaderMap, header::AUTHORIZATION};
use http_body_util::BodyExt as _;

use super::build::Outgoing;
use super::{OutBody, UpstreamResponse, bytes_body, send};
use crate::auth::Prepared;
use crate::auth::digest::{self, Challenge, DigestAuth};
use crate::engine::runtime::ConnectorRuntime;
use crate::{CallError, ErrorCode};

/// The largest proxied body a Digest connector takes (it may be sent twice).
pub(super) const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// [`send_with_digest`] boxed, built out of line: neither its state nor the code that makes it
/// is in `sign_and_send`. Measured (`bench/instructions`, non-LTO release): boxed inline, a
/// proxied request of another method cost ~270 more instructions; out of line, within noise.
#[inline(never)]
pub(super) fn boxed<'a>(
    conn: &'a ConnectorRuntime,
    prepared: &'a Prepared,
    auth: &'a DigestAuth,
    request: &'a mut Outgoing,
) -> std::pin::Pin<Box<dyn Future<Output = Result<UpstreamResponse, CallError>> + Send + 'a>> {
    Box::pin(send_with_digest(conn, prepared, auth, request))
}

async fn send_with_digest(
    conn: &ConnectorRuntime,
    prepared: &Prepared,
    auth: &DigestAuth,
    request: &mut Outgoing,
) -> Result<UpstreamResponse, CallError> {
    let body = replayable(conn, std::mem::replace(&mut request.body, OutBody::Bytes(Bytes::new()))).await?;
    let uri = request.url[url::Position::BeforePath..url::Position::AfterQuery].to_owned();
    let signed = |c: &Challenge| -> Result<HeaderMap, CallError> {
        let mut h = request.headers.clone();
        h.insert(AUTHORIZATION, auth.authorization(c, &request.method, &uri)?);
        Ok(h)
    };
    let cached = auth.cached();
    let headers = match &cached {
        Some(c) => signed(c)?,
        None => request.headers.clone(),
    };
    let first =
        send::send_once(conn, prepared, request.method.clone(), &request.url, headers, bytes_body(body.clone()))
            .await?;
    let Some(challenge) = digest_challenge(conn, &first)? else {
        return Ok(first);
    };
    drop(first);
    if cached.is_some() {
        tracing::debug!(connector = %conn.name, "upstream refused the kept Digest nonce; answering its new challenge");
    }
    let challenge = auth.remember(challenge);
    let second =
        send::send_once(conn, prepared, request.method.clone(), &request.url, signed(&challenge)?, bytes_body(body))
            .await?;
    if digest_challenge(conn, &second).ok().flatten().is_some() {
        auth.forget();
        let fix = if conn.config.per_user {
            format!("set the user's values again with PUT /v1/connections/{}", conn.name)
        } else {
            "check `auth.username` and set the password secret again".to_owned()
        };
        return Err(CallError::new(
            ErrorCode::SecretMissing,
            format!(
                "connector `{}`: the upstream refused the Digest username and password (401 to an answer to its own challenge): {fix}",
                conn.name
            ),
        ));
    }
    Ok(second)
}

/// A 401's Digest challenge; `None` for any other answer (passed through as it is).
fn digest_challenge(conn: &ConnectorRuntime, resp: &UpstreamResponse) -> Result<Option<Challenge>, CallError> {
    if resp.status != http::StatusCode::UNAUTHORIZED {
        return Ok(None);
    }
    match digest::challenge(&resp.headers) {
        Ok(found) => Ok(found.map(|(c, _stale)| c)),
        Err(offered) => Err(CallError::new(
            ErrorCode::ConfigInvalid,
            format!(
                "connector `{}`: the upstream asks for {offered}, which Latchkey cannot answer (it answers Digest with MD5, SHA-256 or their -sess variants, qop=auth or none)",
                conn.name
            ),
        )),
    }
}

/// The body in memory: a streamed body is read, up to [`BODY_LIMIT`].
async fn replayable(conn: &ConnectorRuntime, body: OutBody) -> Result<Bytes, CallError> {
    let mut stream = match body {
        OutBody::Bytes(b) => return Ok(b),
        OutBody::Stream(s) => s,
    };
    let mut read = bytes::BytesMut::new();
    while let Some(frame) = stream.frame().await {
        let Ok(frame) = frame else {
            return Err(CallError::invalid_params("the request body could not be read to the end"));
        };
        if let Some(chunk) = frame.data_ref() {
            if read.len() + chunk.len() > BODY_LIMIT {
                return Err(CallError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "connector `{}` uses Digest, which may send a request twice: its proxied bodies are held in memory, at most {} MiB; send a smaller body (or split the upload)",
                        conn.name,
                        BODY_LIMIT / (1024 * 1024)
                    ),
                ));
            }
            read.extend_from_slice(chunk);
        }
    }
    Ok(read.freeze())
}
