use crate::metrics::{Process, escape, metric};
use crate::{AppState, wire};
use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::{StatusCode, header};

#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "The process answers.", body = wire::Health)))]
pub async fn healthz() -> impl IntoResponse {
    Json(wire::Health { status: "ok" })
}

/// Ready when the store answers, within the bound every store operation on a call's path has
/// (SECURITY R5): a partitioned store makes the instance unready in seconds, which a load
/// balancer's probe (often with a timeout of a few seconds) sees as a 503, not as its own
/// timeout.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, description = "The store answers.", body = wire::Ready), (status = 503, description = "The store does not answer: `{\"status\": \"unavailable\", \"reason\"}`.", body = wire::Ready)))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.engine.ping().await {
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

#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text exposition format.", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let stats = state.engine.stats();
    let mut text = state.metrics.render();
    let tokens: Vec<(String, u64)> = state
        .engine
        .token_counts()
        .into_iter()
        .map(|t| {
            let labels = format!(
                "{{connector=\"{}\",kind=\"{}\",outcome=\"{}\"}}",
                escape(&t.connector),
                t.kind,
                t.outcome.as_str()
            );
            (labels, t.count)
        })
        .collect();
    metric(
        &mut text,
        "latchkey_token_requests_total",
        "counter",
        "Token requests sent to providers, by connector, kind (`grant`, or `refresh` with a refresh token) and outcome (ok, refused, unsendable, failed, unreachable, lost).",
        &tokens.iter().map(|(l, n)| (l.as_str(), n as &dyn std::fmt::Display)).collect::<Vec<_>>(),
    );
    metric(
        &mut text,
        "latchkey_refresh_ambiguous_total",
        "counter",
        "Refresh-token requests whose answer was lost after they may have reached the provider (a rotation may have been lost).",
        &[("", &stats.refresh_ambiguous)],
    );
    metric(
        &mut text,
        "latchkey_key_store_lookups_total",
        "counter",
        "Store lookups of presented keys not in memory (made by another writer since the last sync, or unknown): at most 20 per second.",
        &[("", &stats.key_store_lookups)],
    );
    metric(
        &mut text,
        "latchkey_store_reads_total",
        "counter",
        "Times memory was brought up to the store: `full` reads everything (at start, or after the store went back), `changes` only the rows written since.",
        &[("{kind=\"full\"}", &stats.full_reloads), ("{kind=\"changes\"}", &stats.catch_ups)],
    );
    let age = format!("{:.3}", stats.sync_age.as_secs_f64());
    metric(
        &mut text,
        "latchkey_store_sync_age_seconds",
        "gauge",
        "How long ago this instance last saw the store's changes (about 1 s normally; it grows while the store does not answer, and changes other instances make are not seen here meanwhile).",
        &[("", &age)],
    );
    metric(
        &mut text,
        "latchkey_vault_data_keys_total",
        "counter",
        "Data keys drawn by this process: each seals at most `[server] data_key_max_seals` values.",
        &[("", &stats.data_keys_drawn)],
    );
    let swept: Vec<(String, u64)> =
        state.engine.swept_counts().into_iter().map(|(table, n)| (format!("{{table=\"{table}\"}}"), n)).collect();
    metric(
        &mut text,
        "latchkey_store_swept_rows_total",
        "counter",
        "Rows this instance's background sweep deleted, by table (expired sign-in codes, flows and authorization codes, dead refresh-token families, lapsed MCP client registrations, old idempotency keys, and events past `events_kept_days`).",
        &swept.iter().map(|(l, n)| (l.as_str(), n as &dyn std::fmt::Display)).collect::<Vec<_>>(),
    );
    // Counted in the store at scrape time, bounded like any store read on a request's path:
    // when the store does not answer, the family is left out (and `/readyz` says why).
    match state.engine.connection_counts().await {
        Ok(counts) => {
            let counts: Vec<(String, u64)> = counts
                .into_iter()
                .map(|c| {
                    let labels = format!(
                        "{{connector=\"{}\",env=\"{}\",state=\"{}\"}}",
                        escape(&c.connector),
                        c.env.as_str(),
                        c.state.as_str()
                    );
                    (labels, c.count)
                })
                .collect();
            metric(
                &mut text,
                "latchkey_connections",
                "gauge",
                "Per-user connections by connector, environment and their token's state (empty: no token yet; ok; degraded: the last refresh failed transiently; reauthorization_required).",
                &counts.iter().map(|(l, n)| (l.as_str(), n as &dyn std::fmt::Display)).collect::<Vec<_>>(),
            );
        }
        Err(e) => tracing::warn!(error = %e.message, "connections were not counted for /metrics"),
    }
    Process::read().render(&mut text);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
