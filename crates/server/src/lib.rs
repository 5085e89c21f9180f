//! Latchkey's HTTP surface: the router, the callers' extractors, wire types and [`ApiError`].
//!
//! Architecture invariant: handlers are thin. They authenticate, parse the wire shape, call the
//! engine, and map the result; every decision about credentials lives in `latchkey-core`.

mod audit;
pub mod connect_page;
pub mod console;
mod cookie;
mod docs;
mod error;
mod extract;
mod idempotency;
mod limit;
mod mcp;
mod mcp_auth;
mod metrics;
mod openapi;
mod request;
mod routes;
mod threads;
pub mod wire;

pub use audit::Audit;
pub use error::ApiError;
pub use metrics::Metrics;
pub use routes::ROUTES;
pub use threads::serve_threaded;

use std::sync::Arc;

use axum::Router;
use latchkey_core::engine::Engine;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
    /// Introspection requests per app key (SECURITY S33).
    introspection: Arc<limit::RateLimiter>,
    /// The audit log, when `[server] audit_log` is set (SECURITY S8).
    audit: Option<Arc<Audit>>,
    /// How long a request other than a call may take (`[server] request_timeout_s`).
    request_timeout: std::time::Duration,
    /// Failed sign-ins to the admin console.
    console_sign_in: Arc<console::SignInLimiter>,
    /// Dynamic client registrations of MCP clients (all callers together).
    registrations: Arc<limit::RateLimiter>,
}

impl AppState {
    pub fn new(engine: Arc<Engine>) -> Self {
        let per_second = engine.config().server.introspection_per_second.unwrap_or(DEFAULT_INTROSPECTION_PER_SECOND);
        let request_timeout = engine.config().server.request_timeout_s.unwrap_or(DEFAULT_REQUEST_TIMEOUT_S).max(1);
        let registrations = engine.mcp_auth().registrations_per_second();
        Self {
            engine,
            metrics: Arc::new(Metrics::default()),
            introspection: Arc::new(limit::RateLimiter::new(per_second)),
            audit: None,
            request_timeout: std::time::Duration::from_secs(request_timeout),
            console_sign_in: Arc::default(),
            registrations: Arc::new(limit::RateLimiter::new(registrations)),
        }
    }

    /// Writes every call and credential change to `audit` first (SECURITY S8).
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = Some(Arc::new(audit));
        self
    }

    /// The audit log's HMAC of `value`, when there is a log.
    pub(crate) fn audit_hash(&self, value: &str) -> Option<String> {
        self.audit.as_ref().map(|a| a.hash(value))
    }

    /// Records `kind` with the fields `fields` builds (only called when the log is on), or
    /// refuses the request when the record cannot be written.
    pub(crate) fn audit(
        &self,
        kind: &str,
        fields: impl FnOnce(&Audit) -> serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), ApiError> {
        match &self.audit {
            Some(audit) => audit.record(kind, fields(audit)),
            None => Ok(()),
        }
    }
}

/// Seconds a request other than a call may take unless `[server] request_timeout_s` says
/// otherwise: longer than any of them takes with a store that answers (an OAuth callback waits
/// on the provider twice, each bounded by the connector's timeout).
const DEFAULT_REQUEST_TIMEOUT_S: u64 = 60;

/// Introspection calls per second per app key, in bursts of twice that, unless `[server]
/// introspection_per_second` says otherwise: enough for a resource server that introspects
/// every request at a modest rate, far too few to scan for tokens.
const DEFAULT_INTROSPECTION_PER_SECOND: u32 = 100;

/// The whole HTTP API (and the admin console's pages) as one router; [`serve_threaded`] runs it behind `routes::Service`, which
/// takes the hot routes before it.
pub fn router(state: AppState) -> Router {
    routes::router(state)
}
