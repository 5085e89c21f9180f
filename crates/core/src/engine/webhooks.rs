//! Webhooks (SPEC §8): `connection.created`, `connection.refresh_failed`,
//! `connection.recovered`, `connection.deleted`, POSTed to `[server] webhook_url`, signed with
//! HMAC-SHA256 over `"<timestamp>.<body>"` in `Latchkey-Signature: t=<unix seconds>,v1=<hex>`
//! (a receiver rejects old timestamps against replay), retried with backoff, and recorded in
//! the audit log. Payloads carry ids, names and error codes, never a token.

use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use serde_json::{Value, json};

use super::mirror::Mirror;
use super::tokens::TokenManager;
use crate::event::{EventKind, EventOutcome};
use crate::store::{EventRow, Store, TokenKey};
use crate::time_fmt::rfc3339;

const ATTEMPTS: u32 = 5;

/// The webhook a recorded event becomes, if any.
fn webhook_type(e: &EventRow) -> Option<&'static str> {
    if e.connection.is_empty() {
        return None;
    }
    let detail: Value = serde_json::from_str(&e.detail).unwrap_or(Value::Null);
    match e.kind {
        EventKind::ConnectionCreated => Some("connection.created"),
        EventKind::ConnectionDeleted => Some("connection.deleted"),
        EventKind::ConnectionRecovered | EventKind::TokenRecovered => Some("connection.recovered"),
        // Once per change of health: terminal refusals, and the first transient failure.
        EventKind::TokenRefreshFailed
            if e.outcome == EventOutcome::Terminal
                || matches!(detail["previous_state"].as_str(), Some("ok") | Some("empty")) =>
        {
            Some("connection.refresh_failed")
        }
        _ => None,
    }
}

/// `t=<secs>,v1=<hex HMAC-SHA256(secret, "<secs>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(body);
    let tag = latchkey_vault::hmac_sha256(secret, &signed);
    format!("t={timestamp},v1={}", latchkey_vault::to_hex(&tag))
}

/// The body of the `kind` webhook of `event`; `owner` is the connection's owner when the
/// connection still exists (else the event's own `user`).
fn payload(event: &EventRow, kind: &str, owner: Option<String>) -> String {
    let detail: Value = serde_json::from_str(&event.detail).unwrap_or(Value::Null);
    let mut data = json!({
        "connection_id": event.connection,
        "connector": event.connector,
        "environment": event.env.as_str(),
        "user": owner.or_else(|| detail["user"].as_str().map(str::to_owned)),
    });
    if kind == "connection.refresh_failed" {
        data["error"] = detail["error"].clone();
        data["error_description"] = detail["error_description"].clone();
        data["terminal"] = Value::Bool(event.outcome == EventOutcome::Terminal);
    }
    json!({"id": event.id, "type": kind, "created_at": rfc3339(event.at), "data": data}).to_string()
}

/// Webhook deliveries: reads the connection (its owner) from the store, the URL and the
/// signing secret from the [`Mirror`], and records each outcome through the token manager's
/// event log.
pub(crate) struct Webhooks {
    store: Arc<dyn Store>,
    mirror: Arc<Mirror>,
    tokens: Arc<TokenManager>,
}

impl Webhooks {
    pub(crate) fn new(store: Arc<dyn Store>, mirror: Arc<Mirror>, tokens: Arc<TokenManager>) -> Webhooks {
        Webhooks { store, mirror, tokens }
    }

    /// Turns recorded events into webhook deliveries until the channel closes.
    pub(crate) async fn run(self: Arc<Self>, mut rx: tokio::sync::mpsc::UnboundedReceiver<EventRow>) {
        while let Some(event) = rx.recv().await {
            let Some(kind) = webhook_type(&event) else { continue };
            let Some(url) = self.mirror.config().server.webhook_url.clone() else { continue };
            let hooks = self.clone();
            tokio::spawn(async move { hooks.deliver(url.as_str(), kind, event).await });
        }
    }

    async fn deliver(&self, url: &str, kind: &'static str, event: EventRow) {
        let connection = self.store.get_connection(&event.connection).await.ok().flatten();
        let body = payload(&event, kind, connection.map(|c| c.owner));
        let secret = self.mirror.runtime().webhook_secret.clone();
        let key = TokenKey { connector: event.connector.clone(), env: event.env, connection: event.connection.clone() };
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            let mut req = self
                .mirror
                .clients()
                .default_client()
                .post(url)
                .timeout(Duration::from_secs(10))
                .header(http::header::CONTENT_TYPE, "application/json")
                .header("latchkey-event", kind)
                .header("latchkey-delivery", event.id.as_str())
                .body(body.clone());
            if let Some(s) = &secret {
                req = req.header(
                    "latchkey-signature",
                    signature(s.expose_secret().as_bytes(), self.mirror.clock().now_ms() / 1000, body.as_bytes()),
                );
            }
            match req.send().await {
                Ok(r) if r.status().is_success() => {
                    self.tokens
                        .event(
                            &key,
                            EventKind::WebhookDelivered,
                            EventOutcome::Ok,
                            json!({"type": kind, "attempts": attempt + 1}),
                        )
                        .await;
                    return;
                }
                Ok(r) => last = format!("status {}", r.status().as_u16()),
                Err(e) => last = if e.is_timeout() { "timeout".into() } else { "unreachable".into() },
            }
        }
        tracing::warn!(kind, error = %last, "webhook not delivered");
        self.tokens
            .event(
                &key,
                EventKind::WebhookFailed,
                EventOutcome::Error,
                json!({"type": kind, "attempts": ATTEMPTS, "error": last}),
            )
            .await;
    }
}

#[cfg(test)]
mod tests {
    use crate::Env;
    use crate::event::{EventKind, EventOutcome};
    use crate::store::EventRow;

    fn event(kind: EventKind, outcome: EventOutcome, connection: &str, detail: &str) -> EventRow {
        EventRow {
            id: "e1".into(),
            at: 1,
            kind,
            connector: "crm".into(),
            env: Env::Live,
            connection: connection.into(),
            actor: "latchkey".into(),
            outcome,
            detail: detail.into(),
        }
    }

    #[test]
    fn webhook_types_of_recorded_events() {
        use EventKind::*;
        use EventOutcome::{Ok, Terminal, Transient};
        let cases = [
            (ConnectionCreated, Ok, "{}", Some("connection.created")),
            (ConnectionDeleted, Ok, "{}", Some("connection.deleted")),
            (ConnectionRecovered, Ok, "{}", Some("connection.recovered")),
            (TokenRecovered, Ok, "{}", Some("connection.recovered")),
            (TokenRefreshFailed, Terminal, "{}", Some("connection.refresh_failed")),
            (TokenRefreshFailed, Transient, r#"{"previous_state":"ok"}"#, Some("connection.refresh_failed")),
            (TokenRefreshFailed, Transient, r#"{"previous_state":"degraded"}"#, None),
            (TokenRefreshFailed, Transient, "{}", None),
            (ConnectionReconnected, Ok, "{}", None),
            (TokenObtained, Ok, "{}", None),
            (WebhookDelivered, Ok, "{}", None),
        ];
        for (kind, outcome, detail, expected) in cases {
            assert_eq!(super::webhook_type(&event(kind, outcome, "conn1", detail)), expected, "{kind} {outcome}");
            // Events of app-level credentials (no connection) never become webhooks.
            assert_eq!(super::webhook_type(&event(kind, outcome, "", detail)), None, "{kind} {outcome}");
        }
    }

    #[test]
    fn payloads_name_the_connection_and_never_more_than_the_error() {
        let e = event(
            EventKind::TokenRefreshFailed,
            EventOutcome::Terminal,
            "conn1",
            r#"{"user":"u-from-event","error":"invalid_grant","error_description":"gone","previous_state":"ok"}"#,
        );
        let body: serde_json::Value =
            serde_json::from_str(&super::payload(&e, "connection.refresh_failed", Some("u1".into()))).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "id": "e1", "type": "connection.refresh_failed", "created_at": crate::time_fmt::rfc3339(1),
                "data": {"connection_id": "conn1", "connector": "crm", "environment": "live", "user": "u1",
                         "error": "invalid_grant", "error_description": "gone", "terminal": true},
            })
        );
        // A deleted connection: the owner the event recorded.
        let gone = event(EventKind::ConnectionDeleted, EventOutcome::Ok, "conn1", r#"{"user":"u2","revoked":true}"#);
        let body: serde_json::Value = serde_json::from_str(&super::payload(&gone, "connection.deleted", None)).unwrap();
        assert_eq!(
            body["data"],
            serde_json::json!({"connection_id": "conn1", "connector": "crm", "environment": "live", "user": "u2"})
        );
    }

    #[test]
    fn signature_is_hmac_over_timestamp_and_body() {
        // Known answer: HMAC-SHA256("secret", "1700000000.{}").
        let s = super::signature(b"secret", 1_700_000_000, b"{}");
        assert!(s.starts_with("t=1700000000,v1="), "{s}");
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(s, super::signature(b"secret", 1_700_000_001, b"{}"));
    }
}
