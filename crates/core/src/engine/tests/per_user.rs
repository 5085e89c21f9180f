//! `per_user = true` connectors: each user's values stored as their connection, prepared once
//! per user, replaced and deleted, here and on another instance sharing the store.

use std::sync::Arc;

use http::{HeaderMap, Method};
use secrecy::SecretString;
use url::Url;

use super::Harness;
use crate::auth::Credential;
use crate::auth::per_user::UserSigner;
use crate::auth::sign::Unsigned;
use crate::event::EventKind;
use crate::store::{ConnectionFilter, EventFilter, TokenStore};
use crate::{Env, ErrorCode};

const CONFIG: &str = r#"
[connectors.keys]
base_url = "https://api.keys.test"
per_user = true
auth = { method = "api_key_header", name = "X-Api-Key" }
[connectors.keys.calls.me]
path = "/me"

[connectors.pw]
base_url = "https://api.pw.test"
per_user = true
auth = { method = "basic" }

[connectors.gh]
base_url = "https://api.gh.test"
[connectors.gh.auth]
method = "oauth2_authorization_code"
authorize_url = "https://gh.test/authorize"
token_url = "http://127.0.0.1:9/token"
client_id = "gh-client"
client_secret = { env = "GH_SECRET" }

[connectors.plain]
base_url = "https://api.plain.test"
auth = { method = "api_key_header", name = "X-Key", key = { secret = "plain_key" } }
"#;

fn key(v: &str) -> Vec<(String, SecretString)> {
    vec![("key".to_owned(), SecretString::from(v))]
}

/// The header `X-Api-Key` that `owner`'s prepared values put on a request, or the error.
async fn signed_key(h: &Harness, owner: &str) -> Result<String, crate::CallError> {
    let conn = h.engine.mirror.connector("keys").unwrap();
    let Credential::PerUser(auth) = &conn.credential(Env::Live).unwrap().credential else { panic!("not per-user") };
    let signer = h.engine.connections.user_signer(Env::Live, "keys", owner, auth).await?;
    let UserSigner::Static(s) = signer.as_ref() else { panic!("not static") };
    let mut headers = HeaderMap::new();
    s.sign(&mut Unsigned {
        method: &Method::GET,
        url: &mut Url::parse("https://api.keys.test/me").unwrap(),
        headers: &mut headers,
        body: None,
        clock: &crate::clock::SystemClock,
    })?;
    Ok(headers["x-api-key"].to_str().unwrap().to_owned())
}

async fn kinds(h: &Harness) -> Vec<EventKind> {
    let filter = EventFilter { limit: 100, ..Default::default() };
    let mut events = h.store.list_events(&filter).await.unwrap();
    events.reverse();
    events.into_iter().map(|e| e.kind).collect()
}

#[tokio::test(start_paused = true)]
async fn each_user_signs_with_their_own_values_replaced_and_deleted_with_their_connection() {
    let h = Harness::start(CONFIG).await;
    let (alice, created) = h.engine.put_user_values(Env::Live, "keys", "alice", key("canary-alice-1")).await.unwrap();
    assert!(created);
    assert_eq!(alice.row.owner, "alice");
    assert_eq!(alice.token.as_ref().map(|t| t.state), Some(crate::token::TokenState::Ok));
    h.engine.put_user_values(Env::Live, "keys", "bob", key("canary-bob-1")).await.unwrap();
    assert_eq!(signed_key(&h, "alice").await.unwrap(), "canary-alice-1");
    assert_eq!(signed_key(&h, "bob").await.unwrap(), "canary-bob-1");
    // Not in dev: environments are apart.
    let Err(e) = h.engine.call(Env::Dev, "keys", "me", &serde_json::json!({}), Some("alice")).await else {
        panic!("called")
    };
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.message.contains("connect one with PUT /v1/connections/keys (the user's `key`)"), "{}", e.message);

    // Replaced: the same connection, the new value from the next call on.
    let (again, created) = h.engine.put_user_values(Env::Live, "keys", "alice", key("canary-alice-2")).await.unwrap();
    assert!(!created);
    assert_eq!(again.row.id, alice.row.id);
    assert_eq!(signed_key(&h, "alice").await.unwrap(), "canary-alice-2");

    // The store holds them sealed.
    let token_key =
        crate::store::TokenKey { connector: "keys".into(), env: Env::Live, connection: alice.row.id.clone() };
    let sealed = h.store.get_token(&token_key).await.unwrap().unwrap().sealed.unwrap();
    assert!(!sealed.windows(6).any(|w| w == b"canary"));

    // Deleted with the connection.
    h.engine.connections().delete(&again.row, "app").await.unwrap();
    let e = signed_key(&h, "alice").await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert_eq!(signed_key(&h, "bob").await.unwrap(), "canary-bob-1");
    assert_eq!(
        kinds(&h).await,
        [
            EventKind::ConnectionCreated,
            EventKind::ConnectionCreated,
            EventKind::ConnectionReconnected,
            EventKind::ConnectionDeleted
        ]
    );
    let filter = ConnectionFilter { connector: Some("keys".into()), env: None, owner: None };
    let left: Vec<_> = h.engine.connections().views(&filter).await.unwrap().into_iter().map(|v| v.row.owner).collect();
    assert_eq!(left, ["bob"]);
}

#[tokio::test(start_paused = true)]
async fn another_instance_drops_what_it_prepared_when_the_values_change_or_go() {
    let a = Harness::start(CONFIG).await;
    let b = Harness::on(CONFIG, a.store.clone(), a.vault.clone()).await;
    let (row, _) = a.engine.put_user_values(Env::Live, "keys", "alice", key("v1")).await.unwrap();
    b.engine.sync_once().await.unwrap();
    assert_eq!(signed_key(&b, "alice").await.unwrap(), "v1"); // prepared and kept on b
    a.engine.put_user_values(Env::Live, "keys", "alice", key("v2")).await.unwrap();
    assert!(b.engine.sync_once().await.unwrap(), "the new values moved the generation");
    assert_eq!(signed_key(&b, "alice").await.unwrap(), "v2");
    a.engine.connections().delete(&row.row, "app").await.unwrap();
    assert!(b.engine.sync_once().await.unwrap());
    assert_eq!(signed_key(&b, "alice").await.unwrap_err().code, ErrorCode::NotFound);
}

#[tokio::test(start_paused = true)]
async fn values_go_only_to_per_user_connectors_with_every_field_and_a_user() {
    let h = Harness::start(CONFIG).await;
    let put = |c: &'static str, u: &'static str, v: Vec<(String, SecretString)>| {
        let engine = Arc::clone(&h.engine);
        async move { engine.put_user_values(Env::Live, c, u, v).await.unwrap_err() }
    };
    let e = put("gh", "alice", key("x")).await;
    assert!(e.message.contains("holds OAuth connections"), "{}", e.message);
    let e = put("plain", "alice", key("x")).await;
    assert!(e.message.contains("set `per_user = true`"), "{}", e.message);
    let e = put("nope", "alice", key("x")).await;
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = put("keys", "", key("x")).await;
    assert!(e.message.contains("`user`"), "{}", e.message);
    let e = put("pw", "alice", vec![("username".into(), SecretString::from("a"))]).await;
    assert!(e.message.contains("`credentials.password` is missing"), "{}", e.message);
    assert_eq!(e.code, ErrorCode::InvalidParams);
    // Nothing was stored by any of them.
    let all = ConnectionFilter { connector: None, env: None, owner: None };
    assert!(h.engine.connections().views(&all).await.unwrap().is_empty());
    // A call for a user names whose; without one it says so.
    let Err(e) = h.engine.call(Env::Live, "keys", "me", &serde_json::json!({}), None).await else { panic!("called") };
    assert!(e.message.contains("takes each user's own values"), "{}", e.message);
    h.engine.connections().require_user_connector("keys").unwrap();
    assert!(h.engine.connections().require_user_connector("plain").is_err());
}

/// A user's prepared signer dropped at the cache's bound is read, opened and prepared again
/// from the store on the next call, with the values stored now.
#[tokio::test(start_paused = true)]
async fn a_signer_dropped_at_the_bound_is_prepared_again_from_the_store() {
    let h = Harness::start(&format!("[server]\nconnection_cache = 1\n{CONFIG}")).await;
    h.engine.put_user_values(Env::Live, "keys", "alice", key("canary-alice-1")).await.unwrap();
    h.engine.put_user_values(Env::Live, "keys", "bob", key("canary-bob-1")).await.unwrap();
    assert_eq!(signed_key(&h, "alice").await.unwrap(), "canary-alice-1");
    let reads = h.store.calls("find_connection");
    assert_eq!(signed_key(&h, "alice").await.unwrap(), "canary-alice-1");
    assert_eq!(h.store.calls("find_connection"), reads, "kept while it fits");
    assert_eq!(signed_key(&h, "bob").await.unwrap(), "canary-bob-1", "bob takes alice's place");
    assert_eq!(h.engine.connections.cached(), (1, 1));
    assert_eq!(signed_key(&h, "alice").await.unwrap(), "canary-alice-1");
    assert_eq!(h.store.calls("find_connection"), reads + 2, "alice was read again");
}
