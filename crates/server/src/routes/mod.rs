pub(crate) mod admin;
pub(crate) mod calls;
pub(crate) mod health;
pub(crate) mod identity;
pub(crate) mod oauth;
pub(crate) mod page;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use latchkey_core::callers::KeyMemo;
use latchkey_core::{ErrorCode, Origin};

use crate::metrics::{Route, Source};
use crate::request::{self, Current};
use crate::threads::Activity;
use crate::{ApiError, AppState};

/// The whole API, written once: the router is built from this list and [`ROUTES`] names every
/// path and method in it, which the OpenAPI document is checked against (`openapi::tests`).
/// Each entry is `path => method(handler), ...`; `any` takes every method.
macro_rules! api {
    ($($path:literal => $m0:ident($h0:path) $(, $m:ident($h:path))*;)*) => {
        fn routes() -> Router<AppState> {
            Router::new() $(.route($path, axum::routing::$m0($h0) $(.$m($h))*))*
        }

        /// Every route the router serves: its path template and its methods.
        pub const ROUTES: &[(&str, &[&str])] = &[$(($path, &[stringify!($m0) $(, stringify!($m))*])),*];
    };
}

api! {
    "/healthz" => get(health::healthz);
    "/readyz" => get(health::readyz);
    "/metrics" => get(health::metrics);
    "/openapi.json" => get(crate::openapi::serve);
    "/docs/errors" => get(crate::docs::errors);
    "/v1/admin/connectors" => get(admin::list_connectors);
    "/v1/admin/connectors/{name}" => get(admin::get_connector), put(admin::put_connector), delete(admin::delete_connector);
    "/v1/admin/providers" => get(admin::list_providers);
    "/v1/admin/providers/{name}" => get(admin::get_provider);
    "/v1/admin/secrets" => get(admin::list_secrets);
    "/v1/admin/secrets/{name}" => put(admin::put_secret), delete(admin::delete_secret);
    "/v1/admin/keys" => get(admin::list_keys), post(admin::create_key);
    "/v1/admin/keys/{id}" => delete(admin::delete_key);
    "/v1/admin/events" => get(admin::list_events);
    "/v1/admin/connections" => get(oauth::admin_list);
    "/v1/admin/connections/{id}" => delete(oauth::admin_delete);
    "/v1/admin/tokens" => get(admin::list_tokens);
    "/v1/admin/audit-hash" => post(admin::audit_hash);
    "/v1/connectors/{connector}/calls/{call}" => post(calls::named_call);
    "/v1/connect" => post(oauth::connect_many);
    "/v1/connect/{connector}" => post(oauth::connect);
    "/v1/users" => post(identity::upsert_user);
    "/v1/users/{id}" => get(identity::get_user), delete(identity::delete_user);
    "/v1/users/{id}/tokens" => post(identity::mint);
    "/v1/token" => post(identity::token);
    "/v1/token/introspect" => post(identity::introspect);
    "/v1/token/revoke" => post(identity::revoke);
    "/.well-known/jwks.json" => get(identity::jwks);
    "/.well-known/openid-configuration" => get(identity::openid_configuration);
    "/.well-known/oauth-authorization-server" => get(crate::mcp_auth::metadata);
    "/v1/mcp/register" => post(crate::mcp_auth::register);
    "/v1/mcp/sign-in" => post(crate::mcp_auth::app_sign_in);
    "/oauth/authorize" => get(crate::mcp_auth::authorize), post(crate::mcp_auth::decide);
    "/oauth/authorize/signed-in" => get(crate::mcp_auth::signed_in);
    "/oauth/authorize/continue" => get(crate::mcp_auth::continue_sign_in);
    "/oauth/{connector}/connect" => get(oauth::connect_as_user);
    "/oauth/{connector}/login" => get(oauth::login);
    "/v1/login/exchange" => post(oauth::exchange);
    "/v1/connections" => get(oauth::list);
    "/v1/connections/{connector}" => get(oauth::get_one), put(oauth::put_one), delete(oauth::delete_one);
    "/oauth/callback" => get(oauth::callback);
    "/oauth/{connector}/start" => get(oauth::start);
    "/oauth/{connector}/callback" => get(oauth::connector_callback);
    "/v1/proxy/{connector}" => any(calls::proxy);
    "/v1/proxy/{connector}/" => any(calls::proxy);
    "/v1/proxy/{connector}/{*path}" => any(calls::proxy);
}

pub fn router(state: AppState) -> Router {
    routes()
        .merge(crate::console::routes(&state))
        .merge(crate::mcp::routes())
        .merge(crate::connect_page::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), crate::idempotency::guard))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        "no such route: GET /openapi.json lists them all, and docs/http-api.md explains them",
    )
}

/// Counts and logs every request: method, route template, status, error code, duration, and
/// names it (`Latchkey-Request-Id`). Never the raw path or query, which may carry caller data.
/// Runs as the request [`Service::other`] began, or as a new one when the router is used
/// directly (tests).
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if request::in_request() {
        observed(state, req, next).await
    } else {
        Current::new(req.headers().get(&X_REQUEST_ID)).scope(observed(state, req, next)).await
    }
}

async fn observed(state: AppState, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let Class { route, hot } = Class::of(&method, req.uri().path());
    // The matched route only matters for the log line; at `warn` no string is made.
    let template = tracing::enabled!(tracing::Level::INFO)
        .then(|| req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned());
    // A hot route's answer may be the upstream's own (any status, any body): never rewritten.
    let mut response = next.run(req).await;
    if hot.is_none() {
        response = json_rejection(&method, response);
    }
    record(&state, route, &method, template.as_deref(), started, &mut response);
    response
}

/// The caller's name for its request, used as the request's id when it is sane (a static name:
/// looking a `&str` up parses and hashes it on every request).
static X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// The router's and the extractors' own rejections, which are not JSON (an unknown method's
/// empty 405, a form sent as JSON's plain-text 415, a body past the limit's 413, a malformed
/// form or query's 400 or 422), as Latchkey's JSON errors with `Latchkey-Error` (SPEC §11),
/// keeping their other headers (`Allow`). Their texts are not shown: serde's may quote what
/// was sent.
fn json_rejection(method: &http::Method, response: Response) -> Response {
    let status = response.status();
    let json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    // A handler's own JSON answer (`/readyz`'s 503 with its reason) is left as it is, and so
    // is the console's HTML error page.
    let html =
        response.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error())
        || json
        || html
        || response.extensions().get::<ErrorCode>().is_some()
    {
        return response;
    }
    let (code, message) = match status.as_u16() {
        404 => (
            ErrorCode::NotFound,
            "no such route: GET /openapi.json lists them all, and docs/http-api.md explains them".to_owned(),
        ),
        405 => {
            let allow = response.headers().get(http::header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            let message = if allow.is_empty() {
                format!("this route does not take {method}: the `Allow` header lists the methods it takes")
            } else {
                format!("this route does not take {method}: use {allow} (see `Allow`)")
            };
            (ErrorCode::MethodNotAllowed, message)
        }
        413 => (
            ErrorCode::PayloadTooLarge,
            "the request body is larger than this route accepts (2 MiB): send a smaller one".to_owned(),
        ),
        415 => (
            ErrorCode::UnsupportedMediaType,
            "the body's Content-Type is not what this route reads: send JSON with `Content-Type: application/json`, \
             or, to /v1/token, /v1/token/introspect and /v1/token/revoke, a form with `Content-Type: \
             application/x-www-form-urlencoded`"
                .to_owned(),
        ),
        401 => (ErrorCode::Unauthenticated, "this route needs `Authorization: Bearer <key>`".to_owned()),
        403 => (ErrorCode::Forbidden, "this credential may not use this route".to_owned()),
        429 => (ErrorCode::RateLimited, "too many requests: wait and try again".to_owned()),
        503 => (ErrorCode::Unavailable, "Latchkey cannot answer this now: try again shortly".to_owned()),
        s if s >= 500 => (ErrorCode::Internal, "the request failed inside Latchkey; see its log".to_owned()),
        _ => (
            ErrorCode::InvalidParams,
            "the request could not be read: check its path, query string, body and Content-Type against the \
             HTTP API (GET /openapi.json; docs/http-api.md)"
                .to_owned(),
        ),
    };
    let (mut parts, _) = response.into_parts();
    let answer = ApiError::new(code, message).into_response();
    parts.status = answer.status();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let (answer, body) = answer.into_parts();
    parts.headers.extend(answer.headers);
    parts.extensions.extend(answer.extensions);
    Response::from_parts(parts, body)
}

/// What a request is, decided once from its method and path: the route it counts under in
/// the metrics and the log, and whether it is a hot route ([`calls::Hot`]), which
/// [`Service`] dispatches without the router and whose answer is never rewritten.
#[derive(Clone, Copy)]
struct Class {
    route: Route,
    hot: Option<calls::Hot>,
}

impl Class {
    fn of(method: &http::Method, path: &str) -> Class {
        let hot = calls::Hot::of(method, path);
        let route = match hot {
            Some(calls::Hot::Proxy) => Route::Proxy,
            Some(calls::Hot::Call) => Route::Call,
            None if path.starts_with("/v1/proxy/") => Route::Proxy,
            None if path.starts_with("/v1/connectors/") => Route::Call,
            None if path.starts_with("/v1/admin/") => Route::Admin,
            None => Route::Other,
        };
        Class { route, hot }
    }
}

/// The metrics, the `Latchkey-Request-Id` header and the log line of one answered request, as
/// the request being answered ([`request`]) noted it.
fn record(
    state: &AppState,
    route: Route,
    method: &http::Method,
    template: Option<&str>,
    started: Instant,
    response: &mut Response,
) {
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    // Set by `ApiError`: the error Latchkey answered with, if any (never an upstream's header).
    let code = response.extensions().get::<ErrorCode>().copied();
    let origin = response.extensions().get::<Origin>().copied();
    let upstream_error = matches!(code, Some(ErrorCode::UpstreamUnreachable | ErrorCode::UpstreamTimeout));
    let error = code.map_or("", ErrorCode::as_str);
    state.metrics.record(route, status, upstream_error);
    request::with(|labels| {
        // Whose failure: Latchkey's own error answer by its origin; an answer the upstream
        // wrote with a 5xx is the upstream's.
        let source = match (code, origin) {
            (Some(code), origin) => Some(Source::of(origin.unwrap_or(code.origin()))),
            (None, _) if status >= 500 && labels.upstream.is_some() => Some(Source::Upstream),
            (None, _) => None,
        };
        if let (Some(connector), Some(env)) = (labels.connector, labels.env) {
            connector.record(env, status, source, elapsed, labels.upstream);
        }
        let id = labels.id.take();
        if let Some(template) = template
            && (!matches!(route, Route::Other) || status >= 400)
        {
            tracing::info!(
                request_id = id.as_ref().and_then(|id| id.to_str().ok()),
                %method,
                route = %template,
                connector = labels.connector.map(|c| &*c.name),
                call = labels.call.as_deref(),
                env = labels.env.map(|e| e.as_str()),
                status,
                error,
                source = source.map(Source::as_str),
                micros = elapsed.as_micros() as u64,
                upstream_micros = labels.upstream.map(|d| d.as_micros() as u64),
                "request"
            );
        }
        if let Some(id) = id {
            response.headers_mut().insert(request::REQUEST_ID.clone(), id);
        }
    });
}

type BoxedResponse = std::pin::Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The whole HTTP API as the server runs it: the passthrough proxy and named calls, which
/// carry an app's traffic, are dispatched here by their path's shape without the router's
/// matching, parameter maps and middleware (issue 5: they cost ~15 % of a proxied request's
/// instructions); every other request goes to [`router`]. Both answer the same requests the
/// same way: the router also serves the hot routes, through the same handlers, for callers
/// that use it directly (tests with `oneshot`).
#[derive(Clone)]
pub struct Service {
    router: Router,
    state: AppState,
    /// Where requests other than the hot routes run: the main runtime, so that an admin write
    /// that compiles every connector again does not stall a serving thread's connections
    /// (see `threads.rs`).
    others: tokio::runtime::Handle,
}

impl Service {
    /// The hot routes run where they arrive; every other request runs on `others`.
    pub fn new(state: AppState, others: tokio::runtime::Handle) -> Self {
        Self { router: router(state.clone()), state, others }
    }

    /// A request that is not on a hot route, answered by the router on the main runtime.
    /// Bounded by `[server] request_timeout_s`: a store that stopped answering (a partition)
    /// gets the request a `503` instead of holding it for the TCP timeout (SECURITY R5).
    fn other(&self, req: Request) -> BoxedResponse {
        let started = Instant::now();
        let wait = self.state.request_timeout;
        let (method, route) = (req.method().clone(), Class::of(req.method(), req.uri().path()).route);
        let current = Current::new(req.headers().get(&X_REQUEST_ID));
        let id = current.id();
        let routed = current.scope(tower_service::Service::call(&mut self.router.clone(), req));
        let answer = self.others.spawn(tokio::time::timeout(wait, routed));
        let state = self.state.clone();
        Box::pin(async move {
            let failed = match answer.await {
                Ok(Ok(Ok(response))) => return Ok(response),
                Ok(Ok(Err(never))) => match never {},
                Ok(Err(_)) => ApiError::new(
                    ErrorCode::Unavailable,
                    format!(
                        "Latchkey did not finish this request within {} s (is its store answering?); a change it \
                         asked for may or may not have been made: look before repeating it",
                        wait.as_secs()
                    ),
                ),
                Err(_) => ApiError::new(ErrorCode::Internal, "the request failed inside Latchkey; see its log"),
            };
            // Answered here, as the same request: its id, its metrics and its log line.
            Ok(Current::new(id.as_ref()).sync_scope(|| {
                let mut response = failed.into_response();
                let template = tracing::enabled!(tracing::Level::INFO).then_some("unfinished");
                record(&state, route, &method, template, started, &mut response);
                response
            }))
        })
    }

    /// A request on a hot route, answered where it arrived, with its metrics and log line.
    fn hot<B>(&self, route: Route, hot: calls::Hot, req: http::Request<B>, memo: Option<Arc<KeyMemo>>) -> BoxedResponse
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<latchkey_core::upstream::BoxError>,
    {
        let state = self.state.clone();
        let current = Current::new(req.headers().get(&X_REQUEST_ID));
        Box::pin(current.scope(async move {
            let started = Instant::now();
            let method = req.method().clone();
            let template = hot.template();
            let mut response = calls::serve_hot(&state, hot, req, memo.as_deref()).await;
            record(
                &state,
                route,
                &method,
                tracing::enabled!(tracing::Level::INFO).then_some(template),
                started,
                &mut response,
            );
            Ok(response)
        }))
    }

    /// The service for one connection: it also remembers the key the connection presented
    /// last ([`KeyMemo`]), and notes when each request starts in `activity` (for the
    /// connection's idle bound).
    pub(crate) fn for_connection(&self, activity: Arc<Activity>) -> ConnectionService {
        ConnectionService { service: self.clone(), memo: Arc::default(), activity }
    }
}

impl tower_service::Service<Request> for Service {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedResponse;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        match Class::of(req.method(), req.uri().path()) {
            Class { route, hot: Some(hot) } => self.hot(route, hot, req, None),
            Class { hot: None, .. } => self.other(req),
        }
    }
}

/// [`Service`] for one connection, as hyper runs it (`threads.rs`): hot routes read the
/// request body straight from hyper, and the app key is checked against the connection's
/// [`KeyMemo`] first.
#[derive(Clone)]
pub struct ConnectionService {
    service: Service,
    memo: Arc<KeyMemo>,
    activity: Arc<Activity>,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ConnectionService {
    type Response = Response;
    type Error = Infallible;
    type Future = BoxedResponse;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.activity.request();
        match Class::of(req.method(), req.uri().path()) {
            Class { route, hot: Some(hot) } => self.service.hot(route, hot, req, Some(self.memo.clone())),
            Class { hot: None, .. } => self.service.other(req.map(axum::body::Body::new)),
        }
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::{Class, Route, calls::Hot};

    /// The one classification: hot routes by their shape, the rest by prefix.
    #[test]
    fn requests_are_classified_once_by_method_and_path() {
        let class = |m: Method, p: &str| {
            let c = Class::of(&m, p);
            (c.route, c.hot)
        };
        assert!(matches!(class(Method::GET, "/v1/proxy/gh/repos"), (Route::Proxy, Some(Hot::Proxy))));
        assert!(matches!(class(Method::GET, "/v1/proxy//x"), (Route::Proxy, None)));
        assert!(matches!(class(Method::POST, "/v1/connectors/gh/calls/list"), (Route::Call, Some(Hot::Call))));
        assert!(matches!(class(Method::GET, "/v1/connectors/gh/calls/list"), (Route::Call, None)));
        assert!(matches!(class(Method::GET, "/v1/admin/keys"), (Route::Admin, None)));
        assert!(matches!(class(Method::GET, "/healthz"), (Route::Other, None)));
    }
}
