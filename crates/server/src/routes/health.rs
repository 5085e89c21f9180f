use crate::metrics::metric;
use crate::{AppState, wire};
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::{StatusCode, header};

pub async fn healthz() -> impl IntoResponse {
    Json(wire::Health { status: "ok" })
}

/// Ready when the store answers, within the bound every store operation on a call's path has
/// (SECURITY R5): a partitioned store makes the instance unready in seconds, which a load
/// balancer's probe (often with a timeout of a few seconds) sees as a 503, not as its own
/// timeout.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let ping = state.engine.store().ping();
    match latchkey_core::engine::tokens::store_bounded(ping, "Latchkey is not ready").await {
        Ok(()) => (
            StatusCode::OK,
            Json(wire::Ready { connectors: Some(state.engine.connectors().len()), reason: None, status: "ready" }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(wire::Ready { connectors: None, reason: Some(e.message), status: "unavailable" }),
        ),
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    use std::sync::atomic::Ordering::Relaxed;
    let engine = &state.engine;
    let mut text = state.metrics.render();
    let requests = engine.tokens.requests.load(Relaxed);
    metric(
        &mut text,
        "latchkey_token_requests_total",
        "counter",
        "Token requests sent to providers.",
        &[("", &requests)],
    );
    let ambiguous = engine.tokens.ambiguous.load(Relaxed);
    metric(
        &mut text,
        "latchkey_refresh_ambiguous_total",
        "counter",
        "Refresh-token requests whose answer was lost after they may have reached the provider (a rotation may have been lost).",
        &[("", &ambiguous)],
    );
    let lookups = engine.callers.store_lookups.load(Relaxed);
    metric(
        &mut text,
        "latchkey_key_store_lookups_total",
        "counter",
        "Store lookups of presented keys not in memory (made by another writer since the last sync, or unknown): at most 20 per second.",
        &[("", &lookups)],
    );
    let (full, catch_ups) = engine.sync_counts();
    metric(
        &mut text,
        "latchkey_store_reads_total",
        "counter",
        "Times memory was brought up to the store: `full` reads everything (at start, or after the store went back), `changes` only the rows written since.",
        &[("{kind=\"full\"}", &full), ("{kind=\"changes\"}", &catch_ups)],
    );
    let age = format!("{:.3}", engine.sync_age().as_secs_f64());
    metric(
        &mut text,
        "latchkey_store_sync_age_seconds",
        "gauge",
        "How long ago this instance last saw the store's changes (about 1 s normally; it grows while the store does not answer, and changes other instances make are not seen here meanwhile).",
        &[("", &age)],
    );
    let data_keys = engine.data_keys_drawn();
    metric(
        &mut text,
        "latchkey_vault_data_keys_total",
        "counter",
        "Data keys drawn by this process: each seals at most `[server] data_key_max_seals` values.",
        &[("", &data_keys)],
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
