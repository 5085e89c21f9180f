//! The store stops answering (SECURITY R4, R5): a network partition between Latchkey and its
//! PostgreSQL store, made by a TCP forwarder the test cuts (`latchkey_testkit::tcp_proxy`).

use std::time::{Duration, Instant};

use latchkey_testkit::fake_oauth::FakeOAuth;
use latchkey_testkit::tcp_proxy::TcpProxy;
use serde_json::json;

use super::at_rest::Database;
use super::*;

/// One Latchkey on a new PostgreSQL database reached through a [`TcpProxy`], and its app key.
struct Partitionable {
    lk: Latchkey,
    app: String,
    proxy: TcpProxy,
    /// The provider of connector `api`.
    fake: FakeOAuth,
    _db: Database,
    _providers: [FakeOAuth; 2],
}

/// [`Partitionable`] with `server` added to `[server]`: connector `api` at `fake` (every token
/// stale at once, so each call refreshes) and `steady` at a provider of its own (tokens fresh
/// for a minute), both with the password grant, which issues rotating refresh tokens.
async fn setup(server: &str) -> Partitionable {
    let db = Database::create();
    let proxy = TcpProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let fake = FakeOAuth::start().await;
    let other = FakeOAuth::start().await;
    let users = FakeOAuth::start().await;
    let key = latchkey_vault::MasterKey::generate();
    let key_text = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
    // `people`: per-user connections (authorization code) at a provider of their own.
    let mut config = format!(
        "[server]\nreturn_to_allow = [\"https://app.example.com/\"]\n{server}\
         [connectors.people]\nbase_url = \"{base}\"\n\
         auth = {{ method = \"oauth2_authorization_code\", authorize_url = \"{base}/authorize\", token_url = \"{token}\", client_id = \"app\" }}\n\
         [connectors.people.calls.echo]\npath = \"/api/echo\"\n",
        base = users.base_url,
        token = users.token_url
    );
    for (name, skew, fake) in [("api", 60, &fake), ("steady", 0, &other)] {
        fake.set_expires_in(60);
        config.push_str(&format!(
            "[connectors.{name}]\nbase_url = \"{base}\"\nrefresh_skew_s = {skew}\n\
             auth = {{ method = \"oauth2_password\", token_url = \"{token}\", username = \"ada\", password = {{ secret = \"pw\" }}, client_id = \"app\" }}\n\
             [connectors.{name}.calls.echo]\npath = \"/api/echo\"\n",
            base = fake.base_url,
            token = fake.token_url
        ));
    }
    let url = format!("postgres://postgres@{}/{}", proxy.addr, db.0);
    let env = vec![("LATCHKEY_DATABASE_URL".to_owned(), url), ("LATCHKEY_MASTER_KEY".to_owned(), key_text)];
    let lk = Latchkey::start_with(bin(), Options { config, env, ..Options::default() }).unwrap();
    lk.put_secret("pw", "live", "pw").await;
    let app = lk.app_key("live").await;
    Partitionable { lk, app, proxy, fake, _db: db, _providers: [other, users] }
}

/// Polls `check` every 250 ms until it succeeds; fails after 20 s with `what` and the last answer.
pub(crate) async fn until<F: std::future::Future<Output = Result<(), String>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) => assert!(Instant::now() < deadline, "not within 20 s: {what}; last answer: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// SECURITY R5: while the store is partitioned away, a call whose token must be refreshed
/// fails fast with 503 and asks the provider nothing (a refresh whose result could not be
/// stored would spend the refresh token); a call whose token is fresh needs no store and
/// works; a call for a user whose connection must be looked up in the store fails fast too. Once the partition heals, calls refresh again, and no refresh token was lost or
/// presented twice; the sync, bounded too, reports that the instance is behind, and
/// `latchkey_store_sync_age_seconds` says by how much. (The partition lasts 10 s here, not R5's
/// 30 s: the bounds are the point.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_a_partitioned_store_fails_refreshing_calls_fast_and_loses_no_refresh_token() {
    let Partitionable { lk, app, proxy, fake, _db, _providers } = setup("").await;
    for connector in ["api", "steady", "api"] {
        let r = lk.call(&app, connector, "echo", json!({})).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // Connected, never called: the first call looks the connection up in the store.
    super::connections::connect_through(&lk, &app, "people", "ada").await;
    let requests = fake.token_requests();

    proxy.pause();
    let partitioned = Instant::now();
    let started = Instant::now();
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!((r.status, r.error_code()), (503, Some("unavailable")), "{}", r.body);
    assert!(r.body.contains("store did not answer"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(8), "a partitioned store held the call {:?}", started.elapsed());
    assert_eq!(fake.token_requests(), requests, "a refresh was asked for while its result could not be stored");
    let r = lk.call(&app, "steady", "echo", json!({})).await;
    assert_eq!(r.status, 200, "a fresh token needs no store: {}", r.body);
    let started = Instant::now();
    let as_ada = lk.http.post(lk.url("/v1/connectors/people/calls/echo")).bearer_auth(&app);
    let r = Reply::read(as_ada.json(&json!({"params": {}, "user": "ada"})).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (503, Some("unavailable")), "{}", r.body);
    assert!(r.body.contains("connection could not be looked up"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(8), "a partitioned store held the call {:?}", started.elapsed());
    // Readiness says so within the same bound.
    let started = Instant::now();
    let r = Reply::read(lk.http.get(lk.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("the store did not answer within 3 s"), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(6), "a partitioned store held /readyz {:?}", started.elapsed());
    // The sync, bounded too (by the pool's wait for a connection, 5 s, or its own 10 s), says
    // it cannot see the store, and the instance says how far behind it is.
    while partitioned.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let behind = lk.metric("latchkey_store_sync_age_seconds").await;
    assert!(behind >= 7.0, "sync age {behind} s after 10 s of partition");
    let out = lk.output();
    assert!(
        out.contains("could not check the store for changes") || out.contains("did not answer the check for changes"),
        "no warning that the sync is behind:\n{out}"
    );
    proxy.resume();

    until("calls recover after the partition healed", || async {
        let r = lk.call(&app, "api", "echo", json!({})).await;
        (r.status == 200).then_some(()).ok_or(r.body)
    })
    .await;
    assert_eq!(fake.reused_refresh_tokens(), 0, "a refresh token was presented twice");
    until("the sync catches up after the partition healed", || async {
        let behind = lk.metric("latchkey_store_sync_age_seconds").await;
        (behind < 3.0).then_some(()).ok_or(format!("sync age {behind} s"))
    })
    .await;
    let r = Reply::read(lk.http.get(lk.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.reused_refresh_tokens(), 0);
    let as_ada = lk.http.post(lk.url("/v1/connectors/people/calls/echo")).bearer_auth(&app);
    let r = Reply::read(as_ada.json(&json!({"params": {}, "user": "ada"})).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// SECURITY R4: the provider rotates the refresh token, and the store restarts before the new
/// one is stored (every connection to it is closed, what was in flight is lost, and it takes
/// no new connection for a while). The call gets 503 (tokens are not used before they are stored); the
/// new tokens are kept in memory, the next call during the partition fails fast without
/// another token request (the old refresh token is never spent again), and once the store
/// answers they are stored (`token.refreshed`, mode `stored_late`) and used: the refresh after
/// that presents the rotated refresh token, not the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r4_tokens_the_store_did_not_take_are_kept_and_stored_when_it_answers() {
    let Partitionable { lk, app, proxy, fake, _db, _providers } = setup("").await;
    assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    let before = fake.token_requests();

    // The refresh reaches the provider, which answers after 1.5 s; the store restarts meanwhile.
    fake.set_delay(Duration::from_millis(1_500));
    let lk = std::sync::Arc::new(lk);
    let call = {
        let (lk, app) = (lk.clone(), app.clone());
        tokio::spawn(async move { lk.call(&app, "api", "echo", json!({})).await })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.token_requests() == before {
        assert!(Instant::now() < deadline, "the call did not ask for a token within 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    proxy.cut();
    let r = call.await.unwrap();
    assert_eq!((r.status, r.error_code()), (503, Some("unavailable")), "{}", r.body);
    assert!(r.body.contains("kept in memory"), "{}", r.body);
    fake.set_delay(Duration::ZERO);
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(fake.token_requests(), before + 1, "the old refresh token was spent again during the partition");
    proxy.resume();

    until("the kept tokens are stored after the store came back", || async {
        let events = lk.admin_req(reqwest::Method::GET, "/v1/admin/events?kind=token.refreshed");
        let r = Reply::read(events.send().await.unwrap()).await;
        (r.status == 200 && r.body.contains("stored_late")).then_some(()).ok_or(r.body)
    })
    .await;
    let r = lk.call(&app, "api", "echo", json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fake.reused_refresh_tokens(), 0, "the refresh after the partition presented the old refresh token");
    let grants: Vec<String> = fake.calls().iter().map(|c| c.grant().to_owned()).collect();
    assert_eq!(grants, ["password", "refresh_token", "refresh_token"], "{grants:?}");
}

/// SECURITY R5 for every other request: with `[server] request_timeout_s = 2`, an admin write
/// while the store is partitioned away is answered `503` after about 2 s, saying the change
/// may or may not have been made, where it would otherwise wait for the TCP timeout; once the
/// store answers, so does the API. The answer names the request like any other. A bound of 0
/// is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r5_other_requests_are_bounded_while_the_store_is_partitioned() {
    let Partitionable { lk, proxy, _db, _providers, .. } = setup("request_timeout_s = 2\n").await;
    proxy.pause();
    let started = Instant::now();
    let put = lk
        .admin_req(reqwest::Method::PUT, "/v1/admin/secrets/late")
        .header("x-request-id", "late-put-1")
        .json(&json!({"value": "v"}));
    let sent = tokio::time::timeout(Duration::from_secs(15), put.send()).await;
    let r = Reply::read(sent.expect("the request was held past the bound").unwrap()).await;
    assert_eq!((r.status, r.error_code()), (503, Some("unavailable")), "{}", r.body);
    assert!(r.body.contains("may or may not have been made"), "{}", r.body);
    // Answered as the same request: its id in the header and the body.
    assert_eq!(r.headers.get("latchkey-request-id").and_then(|v| v.to_str().ok()), Some("late-put-1"));
    assert_eq!(r.json()["error"]["request_id"], "late-put-1", "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(6), "the request was held {:?}", started.elapsed());
    proxy.resume();
    until("the API recovers after the partition healed", || async {
        let r = Reply::read(lk.admin_req(reqwest::Method::GET, "/v1/admin/secrets").send().await.unwrap()).await;
        (r.status == 200).then_some(()).ok_or(r.body)
    })
    .await;

    let refused = refused_start("[server]\nrequest_timeout_s = 0\n");
    assert!(refused.contains("field `server.request_timeout_s`: must be at least 1"), "{refused}");
}
