//! The connect flow (`Connections`): session links and states are single-use, expire on the
//! clock, and a refused request spends neither.

use std::collections::{BTreeMap, HashMap};

use super::{Harness, cookie, query_param};
use crate::Env;
use crate::engine::FlowError;

const TEN_MINUTES: i64 = 10 * 60 * 1000;

/// A connect link for `ann` on `connector`; its session handle.
async fn session(h: &Harness, connector: &str) -> String {
    let link = h
        .engine
        .connections()
        .connect_session(Env::Live, connector, "ann", "https://app.test/done", BTreeMap::new())
        .await
        .unwrap();
    assert!(link.starts_with(&format!("https://lk.test/oauth/{connector}/start")), "{link}");
    query_param(&link, "session")
}

/// A started flow: the state the provider will send back, and the browser's cookies.
async fn started(h: &Harness) -> (String, HashMap<String, String>) {
    let s = session(h, "gh").await;
    let (login_url, cookie_name, binding) = h.engine.connections().start_flow("gh", &s).await.unwrap();
    assert!(login_url.starts_with("https://gh.test/authorize?"));
    (query_param(&login_url, "state"), cookie(&cookie_name, &binding))
}

fn callback(state: &str) -> HashMap<String, String> {
    HashMap::from([("state".to_owned(), state.to_owned()), ("code".to_owned(), "the-code".to_owned())])
}

fn code(r: Result<crate::engine::CallbackOutcome, FlowError>) -> &'static str {
    r.expect_err("refused").code
}

#[tokio::test(start_paused = true)]
async fn a_return_to_outside_the_allow_list_is_refused() {
    let h = Harness::new().await;
    let e = h
        .engine
        .connections()
        .connect_session(Env::Live, "gh", "ann", "https://evil.test/", BTreeMap::new())
        .await
        .unwrap_err();
    assert!(e.message.contains("return_to_allow"), "{}", e.message);
}

#[tokio::test(start_paused = true)]
async fn a_session_link_is_single_use() {
    let h = Harness::new().await;
    let s = session(&h, "gh").await;
    h.engine.connections().start_flow("gh", &s).await.unwrap();
    assert_eq!(h.engine.connections().start_flow("gh", &s).await.unwrap_err().code, "session_used");
}

#[tokio::test(start_paused = true)]
async fn a_session_link_opened_at_another_connector_is_refused_without_spending_it() {
    let h = Harness::new().await;
    let s = session(&h, "gh").await;
    assert_eq!(h.engine.connections().start_flow("other", &s).await.unwrap_err().code, "session_invalid");
    assert!(h.engine.connections().start_flow("gh", &s).await.is_ok(), "still usable where it belongs");
}

#[tokio::test(start_paused = true)]
async fn a_session_link_expires_after_ten_minutes() {
    let h = Harness::new().await;
    let s = session(&h, "gh").await;
    h.clock.advance(TEN_MINUTES + 1);
    assert_eq!(h.engine.connections().start_flow("gh", &s).await.unwrap_err().code, "session_expired");
}

#[tokio::test(start_paused = true)]
async fn an_unknown_session_is_refused() {
    let h = Harness::new().await;
    assert_eq!(h.engine.connections().start_flow("gh", "nope").await.unwrap_err().code, "session_invalid");
}

#[tokio::test(start_paused = true)]
async fn a_callback_refused_for_its_browser_does_not_spend_the_state() {
    let h = Harness::new().await;
    let (state, cookies) = started(&h).await;
    let flows = h.engine.connections();
    assert_eq!(code(flows.finish_flow(Some("gh"), &callback(&state), &HashMap::new()).await), "browser_mismatch");
    let name = cookies.keys().next().unwrap();
    let wrong = cookie(name, "not-the-binding");
    assert_eq!(code(flows.finish_flow(Some("gh"), &callback(&state), &wrong).await), "browser_mismatch");
    // The browser that holds the cookie still gets through the state check: the code is
    // exchanged (and refused, since the token endpoint does not answer).
    assert_eq!(code(flows.finish_flow(Some("gh"), &callback(&state), &cookies).await), "token_exchange_failed");
}

#[tokio::test(start_paused = true)]
async fn a_state_is_single_use() {
    let h = Harness::new().await;
    let (state, cookies) = started(&h).await;
    let flows = h.engine.connections();
    assert_eq!(code(flows.finish_flow(Some("gh"), &callback(&state), &cookies).await), "token_exchange_failed");
    assert_eq!(code(flows.finish_flow(Some("gh"), &callback(&state), &cookies).await), "state_used");
    assert_eq!(code(flows.finish_flow(None, &callback(&state), &cookies).await), "state_used");
}

#[tokio::test(start_paused = true)]
async fn an_expired_state_is_refused() {
    let h = Harness::new().await;
    let (state, cookies) = started(&h).await;
    h.clock.advance(TEN_MINUTES + 1);
    assert_eq!(
        code(h.engine.connections().finish_flow(Some("gh"), &callback(&state), &cookies).await),
        "state_expired"
    );
}

#[tokio::test(start_paused = true)]
async fn a_state_still_fresh_just_before_its_end_is_taken() {
    let h = Harness::new().await;
    let (state, cookies) = started(&h).await;
    h.clock.advance(TEN_MINUTES - 1);
    let got = code(h.engine.connections().finish_flow(Some("gh"), &callback(&state), &cookies).await);
    assert_eq!(got, "token_exchange_failed");
}

#[tokio::test(start_paused = true)]
async fn a_state_at_another_connectors_callback_is_refused_without_spending_it() {
    let h = Harness::new().await;
    let (state, cookies) = started(&h).await;
    let flows = h.engine.connections();
    assert_eq!(code(flows.finish_flow(Some("other"), &callback(&state), &cookies).await), "state_invalid");
    assert_eq!(code(flows.finish_flow(Some("gh"), &callback(&state), &cookies).await), "token_exchange_failed");
}

#[tokio::test(start_paused = true)]
async fn a_callback_without_a_state_or_with_an_unknown_one_is_refused() {
    let h = Harness::new().await;
    let flows = h.engine.connections();
    assert_eq!(code(flows.finish_flow(Some("gh"), &HashMap::new(), &HashMap::new()).await), "state_missing");
    assert_eq!(code(flows.finish_flow(Some("gh"), &callback("forged"), &HashMap::new()).await), "state_invalid");
}
