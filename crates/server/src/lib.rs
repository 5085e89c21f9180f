//! Latchkey's HTTP surface: the router, the callers' extractors, wire types and [`ApiError`].
//!
//! Architecture invariant: handlers are thin. They authenticate, parse the wire shape, call the
//! engine, and map the result; every decision about credentials lives in `latchkey-core`.

mod error;
mod extract;
mod metrics;
mod routes;

pub use error::ApiError;
pub use metrics::Metrics;

use std::sync::Arc;

use axum::Router;
use latchkey_core::engine::Engine;

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine, metrics: Arc::new(Metrics::default()) }
    }
}

/// The whole HTTP API. Tests drive it with `oneshot` or on `127.0.0.1:0`.
pub fn router(state: AppState) -> Router {
    routes::router(state)
}

/// Serves until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}
