//! The background sweep on the fake clock: rows past their time (plus what each keeps) are
//! gone after a run, fresh ones stay; the audit log is swept only when `events_kept_days`
//! says so; a table the store fails on does not stop the others.

use secrecy::SecretString;
use serde_json::json;

use super::Harness;
use crate::Env;
use crate::event::{EventKind, EventOutcome};
use crate::store::{
    ConnectionStore, EventFilter, EventRow, FlowRow, IdempotencyRow, IdentityStore, LoginCodeRow, Store, Sweep,
    TokenStore,
};

const DAY: i64 = 86_400_000;

fn config(events_kept_days: Option<u64>) -> String {
    let kept = events_kept_days.map(|d| format!("events_kept_days = {d}\n")).unwrap_or_default();
    format!(
        r#"
[server]
token_algorithm = "ES256"
{kept}
[server.mcp]
sign_in_url = "https://app.test/mcp-sign-in"

[connectors.bin]
base_url = "https://api.bin.test"
auth = {{ method = "none" }}
mcp = true
calls.get = {{ path = "/get", access = "user" }}
"#
    )
}

async fn harness(events_kept_days: Option<u64>) -> Harness {
    let h = Harness::start(&config(events_kept_days)).await;
    h.engine.identity().ensure_signing_key().await.unwrap();
    h.engine.identity().upsert_user(Env::Live, "alice", None, json!({})).await.unwrap();
    h
}

fn flow(hash: u8, now: i64) -> FlowRow {
    FlowRow {
        handle_hash: vec![hash; 32],
        kind: "session".into(),
        connector: "bin".into(),
        env: Env::Live,
        owner: "alice".into(),
        return_to: "https://app.test/".into(),
        sealed: None,
        binding: None,
        created_at: now,
        expires_at: now + 10 * 60_000,
        used_at: None,
    }
}

fn login_code(hash: u8, now: i64) -> LoginCodeRow {
    LoginCodeRow {
        hash: vec![hash; 32],
        env: Env::Live,
        user_id: "alice".into(),
        connection_id: "c1".into(),
        created_at: now,
        expires_at: now + 60_000,
    }
}

fn claim(key: &str, now: i64) -> IdempotencyRow {
    IdempotencyRow {
        scope: "key_1".into(),
        key: key.into(),
        fingerprint: vec![1],
        status: 0,
        answer: Vec::new(),
        created_at: now,
    }
}

fn event(id: &str, now: i64) -> EventRow {
    EventRow {
        id: id.into(),
        at: now,
        kind: EventKind::TokenObtained,
        connector: "bin".into(),
        env: Env::Live,
        connection: String::new(),
        actor: "system".into(),
        outcome: EventOutcome::Ok,
        detail: "{}".into(),
    }
}

/// What a run swept of `what`.
fn swept(report: &[(Sweep, u64)], what: Sweep) -> u64 {
    report.iter().find(|(w, _)| *w == what).map_or(0, |(_, n)| *n)
}

async fn refresh_known(h: &Harness, token: &str) -> bool {
    h.store.get_refresh(&latchkey_vault::sha256(token.as_bytes())).await.unwrap().is_some()
}

#[tokio::test(start_paused = true)]
async fn rows_past_their_time_are_swept_and_fresh_ones_stay() {
    let h = harness(Some(7)).await;
    let t0 = h.now();
    // At t0: one of everything that is short-lived, and two refresh-token families (one
    // revoked at once), a registered MCP client nobody authorizes, an event.
    h.store.insert_flow(&flow(1, t0)).await.unwrap();
    h.store.insert_login_code(&login_code(1, t0)).await.unwrap();
    let (sign_in, _) =
        h.engine.mcp_auth().app_sign_in_request(Env::Live, "https://app.test/mcp-sign-in").await.unwrap();
    assert!(!sign_in.is_empty());
    h.store.claim_idempotency(&claim("old", t0), 0, 0).await.unwrap();
    h.store.insert_event(&event("e_t0", t0)).await.unwrap();
    let kept = h.engine.identity().mint_tokens(Env::Live, "alice").await.unwrap();
    let revoked = h.engine.identity().mint_tokens(Env::Live, "alice").await.unwrap();
    h.engine.identity().revoke_user_token(Env::Live, &revoked.refresh_token).await.unwrap();
    let (client, _, _) =
        h.engine.mcp_auth().register(&json!({"redirect_uris": ["http://127.0.0.1:9/cb"]})).await.unwrap();

    // A day: everything short-lived has expired, but is kept a day past its expiry; nothing
    // is swept before its time.
    h.clock.advance(DAY);
    let report = h.engine.sweep_once().await;
    assert!(report.iter().all(|(_, n)| *n == 0), "{report:?}");

    // Three days: the handles, the idempotency key and the family revoked at t0 are gone;
    // the live family, the client (30 days) and the event (7 days) stay, and so does what was
    // made just now.
    h.clock.advance(2 * DAY);
    let now = h.now();
    h.store.insert_flow(&flow(2, now)).await.unwrap();
    h.store.insert_login_code(&login_code(2, now)).await.unwrap();
    h.store.claim_idempotency(&claim("new", now), 0, 0).await.unwrap();
    let report = h.engine.sweep_once().await;
    assert_eq!(
        [Sweep::Flows, Sweep::LoginCodes, Sweep::AuthGrants, Sweep::IdempotencyKeys, Sweep::RefreshTokens]
            .map(|w| swept(&report, w)),
        [1, 1, 1, 1, 1],
        "{report:?}"
    );
    assert_eq!((swept(&report, Sweep::OAuthClients), swept(&report, Sweep::Events)), (0, 0));
    assert_eq!(h.store.get_flow(&[1; 32]).await.unwrap(), None);
    assert!(h.store.get_flow(&[2; 32]).await.unwrap().is_some());
    assert!(h.store.take_login_code(&[2; 32], Env::Live, now).await.unwrap().is_some());
    assert!(h.store.claim_idempotency(&claim("new", now), 0, 0).await.unwrap().is_some(), "the fresh key");
    assert!(!refresh_known(&h, &revoked.refresh_token).await);
    assert!(refresh_known(&h, &kept.refresh_token).await);
    // The live family still works (and rotates: its used token stays for reuse detection).
    let next = h.engine.identity().refresh_user_tokens(&SecretString::from(kept.refresh_token.clone())).await.unwrap();
    assert!(h.store.get_oauth_client(&client).await.unwrap().is_some());

    // Eight days: the event is past `events_kept_days`.
    h.clock.advance(5 * DAY);
    let report = h.engine.sweep_once().await;
    assert_eq!(swept(&report, Sweep::Events), 1, "{report:?}");
    assert!(h.store.list_events(&EventFilter::default()).await.unwrap().is_empty());

    // Thirty-one days: the client nobody authorized has lapsed and is swept.
    h.clock.advance(23 * DAY);
    let report = h.engine.sweep_once().await;
    assert_eq!(swept(&report, Sweep::OAuthClients), 1, "{report:?}");
    assert_eq!(h.store.get_oauth_client(&client).await.unwrap(), None);
    // The family (30 days from t0) expired a day ago: kept two days past its expiry.
    assert!(refresh_known(&h, &next.refresh_token).await);
    h.clock.advance(DAY + 1);
    let report = h.engine.sweep_once().await;
    assert_eq!(swept(&report, Sweep::RefreshTokens), 2, "both tokens of the family: {report:?}");
    assert!(!refresh_known(&h, &kept.refresh_token).await && !refresh_known(&h, &next.refresh_token).await);

    let counts: std::collections::HashMap<_, _> = h.engine.swept_counts().into_iter().collect();
    assert_eq!(counts["refresh_tokens"], 3);
    assert_eq!(counts["events"], 1);
    assert_eq!(counts.len(), Sweep::ALL.len());
}

#[tokio::test(start_paused = true)]
async fn the_audit_log_is_kept_unless_events_kept_days_is_set() {
    let h = harness(None).await;
    h.store.insert_event(&event("e_t0", h.now())).await.unwrap();
    h.clock.advance(3_650 * DAY);
    let report = h.engine.sweep_once().await;
    assert!(report.iter().all(|(w, _)| *w != Sweep::Events), "{report:?}");
    assert_eq!(h.store.list_events(&EventFilter::default()).await.unwrap().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_table_the_store_fails_on_waits_for_the_next_run_and_the_others_are_swept() {
    let h = harness(None).await;
    let t0 = h.now();
    h.store.insert_flow(&flow(1, t0)).await.unwrap();
    h.store.insert_login_code(&login_code(1, t0)).await.unwrap();
    h.clock.advance(2 * DAY);
    h.store.fail(Some("sweep"), 1); // the first table, flows
    let report = h.engine.sweep_once().await;
    assert_eq!((swept(&report, Sweep::Flows), swept(&report, Sweep::LoginCodes)), (0, 1), "{report:?}");
    let report = h.engine.sweep_once().await;
    assert_eq!(swept(&report, Sweep::Flows), 1, "{report:?}");
}

#[tokio::test(start_paused = true)]
async fn a_backlog_is_swept_in_bounded_statements() {
    use crate::engine::sweep::{BATCH, BATCHES};
    let h = harness(None).await;
    let t0 = h.now();
    let backlog = u64::from(BATCH) * u64::from(BATCHES) + 3;
    for i in 0..backlog {
        let mut row = flow(0, t0);
        row.handle_hash = i.to_be_bytes().to_vec();
        h.store.insert_flow(&row).await.unwrap();
    }
    h.clock.advance(2 * DAY);
    let before = h.store.calls("sweep");
    let report = h.engine.sweep_once().await;
    assert_eq!(swept(&report, Sweep::Flows), backlog - 3, "one run deletes at most BATCHES statements' worth");
    let report = h.engine.sweep_once().await;
    assert_eq!(swept(&report, Sweep::Flows), 3);
    // BATCHES full statements for flows in the first run, one for each other table, and one
    // per table in the second (the audit log is not swept: no `events_kept_days`).
    let tables = u64::try_from(Sweep::ALL.len() - 1).unwrap();
    assert_eq!(h.store.calls("sweep") - before, u64::from(BATCHES) + (tables - 1) + tables);
}
