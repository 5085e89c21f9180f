//! The call path, as named phases: resolve the connector (and call), authorize the caller,
//! resolve parameters, take the prepared credential, build the request ([`build`]), check its
//! origin, obtain what signs it (the credential phase: an OAuth token, a user's connection, an
//! identity JWT), sign it (one step, [`crate::auth::sign::Sign`]), send it and filter the
//! answer ([`send`]); a refused access token is refreshed once and the request sent again.
//! Nothing on this path touches the vault; the store only when a token must be refreshed or a
//! user's connection looked up for the first time.

mod build;
mod digest;
mod headers;
mod oauth1;
mod per_user;
mod send;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method};
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use secrecy::SecretString;
use serde_json::Value;

use super::Engine;
use super::runtime::ConnectorRuntime;
use crate::auth::sign::{Bearer, Sign, Unsigned};
use crate::auth::{Credential, Prepared, TokenSigning, TokenSource};
use crate::config::TokenIn;
use crate::store::ConnectionRow;
use crate::upstream::{BoxError, ReqBody};
use crate::{CallError, Env, ErrorCode};
use build::Outgoing;

/// What came back from the upstream: status, headers (hop-by-hop and `set-cookie` removed)
/// and the body, still streaming; and how long the upstream took to answer (from the send to
/// its response head, summed over both sends when a refused token was replaced), which the
/// server's metrics tell apart from the time spent in Latchkey.
pub struct UpstreamResponse {
    pub status: http::StatusCode,
    pub headers: HeaderMap,
    pub body: UpstreamBody,
    pub upstream_time: std::time::Duration,
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
        // Resolve.
        let conn = self.connector_for(connector)?;
        let compiled = conn.calls.get(call).ok_or_else(|| {
            let mut names: Vec<&str> = conn.calls.keys().map(String::as_str).collect();
            names.sort_unstable();
            CallError::not_found(format!(
                "connector `{connector}` has no call named `{call}`; its calls: {}",
                if names.is_empty() { "none".to_owned() } else { names.join(", ") }
            ))
        })?;
        // Authorize the caller.
        if user_token && compiled.access != crate::config::Access::User {
            return Err(CallError::new(
                ErrorCode::Forbidden,
                format!(
                    "call `{call}` of connector `{connector}` is for the app's backend (access = \"app\"): a user token may make only `access = \"user\"` calls"
                ),
            ));
        }
        // Parameters, credential, build.
        let values = build::resolve_params(compiled, params)?;
        let prepared = conn.credential(env)?;
        let mut request = build::named(&conn, compiled, &values)?;
        // A user token names its user for the credentials that belong to one (a per-user
        // connection, the user's identity); on an app-level credential the app's own key signs
        // the user's call, and the user is not a parameter the caller sent.
        let user = match &prepared.credential {
            Credential::User(_) | Credential::PerUser(_) | Credential::Identity { .. } => user,
            Credential::OAuth1(o) if o.flow.is_some() => user,
            _ if user_token => None,
            _ => user,
        };
        self.sign_and_send(&conn, prepared, env, user, &mut request).await
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
        let ProxyRequest { user, method, path, query, headers, body } = req;
        let owned = prepared.credential.owned_header();
        let mut request = build::proxied(&conn, method, &path, query.as_deref(), headers, body, owned)?;
        self.sign_and_send(&conn, prepared, env, user.as_deref(), &mut request).await
    }

    /// Checks the origin, then the credential phase: what signs this request for this caller
    /// (what was prepared; the user's identity JWT; an OAuth token, the app's or the named
    /// user's connection's), then the signing step and the send.
    ///
    /// Kept flat on purpose: every `async fn` between the route and the upstream adds its
    /// arguments (twice: rust-lang/rust#62958) and awaited futures to the future the server
    /// boxes per request, and copies into the box; so the request is borrowed, not moved, and
    /// the static credentials' path awaits the send directly.
    async fn sign_and_send(
        &self,
        conn: &ConnectorRuntime,
        prepared: &Prepared,
        env: Env,
        user: Option<&str>,
        request: &mut Outgoing,
    ) -> Result<UpstreamResponse, CallError> {
        build::check_origin(conn, &request.url)?;
        match (&prepared.credential, user) {
            (Credential::Static(signer), None) => {
                sign(signer.as_ref(), self.clock.as_ref(), request)?;
                send::send_outgoing(conn, prepared, request).await
            }
            (Credential::None, None) => send::send_outgoing(conn, prepared, request).await,
            // Boxed, out of line: its state and code stay off the other methods' path.
            (Credential::Digest(auth), None) => digest::boxed(conn, prepared, auth, request).await,
            // Boxed, out of line, as Digest; it names its own wrong callers.
            (Credential::OAuth1(auth), user) => oauth1::boxed(self, conn, prepared, auth, env, user, request).await,
            (Credential::Token(src), None) => self.send_with_token(conn, prepared, src, None, request).await,
            (Credential::User(auth), Some(owner)) => {
                let row = self.user_connection(env, &conn.name, owner).await?.ok_or_else(|| {
                    CallError::not_found(format!(
                        "user `{owner}` has no connection on connector `{}` ({env}): connect one with POST /v1/connect/{}",
                        conn.name, conn.name
                    ))
                })?;
                let src = auth.for_connection(&row.id);
                self.send_with_token(conn, prepared, &src, Some(&row), request).await
            }
            // Boxed, out of line, like Digest: the user's prepared values sign.
            (Credential::PerUser(auth), Some(owner)) => {
                per_user::boxed(self, conn, prepared, auth, env, owner, request).await
            }
            (Credential::Identity { audience, lifetime_s }, Some(user)) => {
                let jwt = SecretString::from(self.sign_identity(env, user, audience, *lifetime_s).await?);
                sign(&Bearer { token: &jwt, token_in: TokenIn::Header }, self.clock.as_ref(), request)?;
                send::send_outgoing(conn, prepared, request).await
            }
            (credential, user) => Err(wrong_caller(conn, credential, user.is_some())),
        }
    }

    /// Signs with an OAuth access token from the lifecycle and sends; when the upstream refuses
    /// a token this call did not just obtain, replaces it once and sends again (a body in
    /// memory only).
    async fn send_with_token(
        &self,
        conn: &ConnectorRuntime,
        prepared: &Prepared,
        src: &TokenSource,
        connection: Option<&ConnectionRow>,
        request: &mut Outgoing,
    ) -> Result<UpstreamResponse, CallError> {
        let obtained = match self.tokens.get(src).await {
            Ok(o) => o,
            Err(e) => return Err(self.reauthorization(e, connection).await),
        };
        let (method, url, headers) = (&request.method, &request.url, &request.headers);
        // The unsigned request is kept: a second attempt is signed with another token.
        let signed =
            |token: &crate::token::TokenSet, body: Option<&[u8]>| -> Result<(HeaderMap, url::Url), CallError> {
                let (mut h, mut u) = (headers.clone(), url.clone());
                let mut unsigned = Unsigned { method, url: &mut u, headers: &mut h, body, clock: self.clock.as_ref() };
                match &src.signing {
                    TokenSigning::Bearer => {
                        Bearer { token: &token.access_token, token_in: src.token_in }.sign(&mut unsigned)?
                    }
                    TokenSigning::AwsSigV4(signer) => {
                        crate::auth::aws_sigv4::sts::sign_with_token(signer, token, &mut unsigned)?
                    }
                }
                Ok((h, u))
            };
        let (first_body, replay) = match std::mem::replace(&mut request.body, OutBody::Bytes(Bytes::new())) {
            OutBody::Bytes(b) => (bytes_body(b.clone()), Some(b)),
            OutBody::Stream(s) => (s, None),
        };
        let (h, u) = signed(&obtained.token, replay.as_deref())?;
        let first = send::send_once(conn, prepared, method.clone(), &u, h, first_body).await?;
        let Some(replay) = replay.filter(|_| !obtained.fresh) else {
            return Ok(first);
        };
        // Filter: did the upstream refuse the token?
        let (expired, first) = send::token_refused(src, first).await;
        if !expired {
            return Ok(first);
        }
        // Reactive refresh: the upstream refused a token Latchkey did not just obtain.
        tracing::info!(connector = %conn.name, status = first.status.as_u16(), "upstream refused the access token; refreshing once");
        let first_time = first.upstream_time;
        drop(first);
        let again = match self.tokens.replace(src, &obtained.token.access_token).await {
            Ok(o) => o,
            Err(e) => return Err(self.reauthorization(e, connection).await),
        };
        let (h, u) = signed(&again.token, Some(&replay))?;
        let mut second = send::send_once(conn, prepared, method.clone(), &u, h, bytes_body(replay)).await?;
        second.upstream_time += first_time;
        let (refused_again, second) = send::token_refused(src, second).await;
        if refused_again {
            self.tokens.refused_after_refresh(src, &again.token);
        }
        Ok(second)
    }

    /// For a per-user connection, a refused credential becomes `reauthorization_required` with
    /// a `reconnect_url` that reconnects the same connection.
    pub(super) async fn reauthorization(&self, e: CallError, connection: Option<&ConnectionRow>) -> CallError {
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
}

/// The credential phase's refusals: a per-user credential without a user, an identity
/// credential without one, an app-level credential with one.
fn wrong_caller(conn: &ConnectorRuntime, credential: &Credential, user_named: bool) -> CallError {
    match (credential, user_named) {
        (Credential::User(_), false) => CallError::invalid_params(format!(
            "connector `{}` holds per-user connections: name whose with `user` (or the `Latchkey-User` header)",
            conn.name
        )),
        (Credential::PerUser(_), false) => CallError::invalid_params(format!(
            "connector `{}` takes each user's own values (per_user = true): name whose with `user` (or the `Latchkey-User` header)",
            conn.name
        )),
        (Credential::Identity { .. }, false) => CallError::invalid_params(format!(
            "connector `{}` sends the calling user's identity: name the user with `user` (or call with a user token)",
            conn.name
        )),
        _ => CallError::invalid_params(format!(
            "connector `{}` uses app-level credentials ({}): drop `user` / `Latchkey-User`",
            conn.name,
            conn.config.auth.method()
        )),
    }
}

/// The signing step for a request sent once: the signer sees the body when it is in memory.
fn sign(signer: &dyn Sign, clock: &dyn crate::clock::Clock, request: &mut Outgoing) -> Result<(), CallError> {
    let body = match &request.body {
        OutBody::Bytes(b) => Some(&b[..]),
        OutBody::Stream(_) => None,
    };
    signer.sign(&mut Unsigned {
        method: &request.method,
        url: &mut request.url,
        headers: &mut request.headers,
        body,
        clock,
    })
}

#[cfg(test)]
mod tests;
