//! Token events: recorded in the store's audit log (bounded by [`super::STORE_WAIT`]) and
//! handed to the webhook sender. Never a token or a secret.

use std::sync::Arc;

use serde_json::json;

use super::store_bounded;
use crate::clock::Clock;
use crate::event::{EventKind, EventOutcome};
use crate::store::{EventRow, Store, TokenKey};
use crate::token::TokenError;

/// Records token events; cloned into background tasks.
#[derive(Clone)]
pub(super) struct Recorder {
    pub store: Arc<dyn Store>,
    /// Every recorded event is also sent here (webhooks listen).
    pub notify: Option<tokio::sync::mpsc::UnboundedSender<EventRow>>,
    pub clock: Arc<dyn Clock>,
}

impl Recorder {
    pub async fn record(&self, key: &TokenKey, kind: EventKind, outcome: EventOutcome, detail: serde_json::Value) {
        let at = self.clock.now_ms();
        let row = EventRow {
            id: event_id(at),
            at,
            kind,
            connector: key.connector.clone(),
            env: key.env,
            connection: key.connection.clone(),
            actor: "latchkey".into(),
            outcome,
            detail: detail.to_string(),
        };
        tracing::info!(kind = kind.as_str(), connector = %key.connector, env = %key.env, outcome = outcome.as_str(), "token event");
        if let Err(e) = store_bounded(self.store.insert_event(&row), "the event was not recorded").await {
            tracing::error!(error = %e.message, kind = kind.as_str(), "could not record an audit event");
        }
        if let Some(tx) = &self.notify {
            let _ = tx.send(row);
        }
    }
}

/// An event's detail for a failed token request: the provider's §5.2 fields (scrubbed), its
/// status, and whether it timed out.
pub(super) fn error_detail(e: &TokenError) -> serde_json::Value {
    json!({"error": e.error, "error_description": e.description, "error_uri": e.uri, "status": e.status, "timed_out": e.timed_out()})
}

/// An event id that sorts in the order this process recorded its events, even within one
/// millisecond (listing orders by time, then id), and stays unique across instances.
fn event_id(at: i64) -> String {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{:012x}{seq:08x}{}", at.max(0), latchkey_vault::random::token(12))
}
