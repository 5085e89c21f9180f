//! `per_user = true` connectors end to end: each user's own API key or password arrives with
//! `PUT /v1/connections/{connector}`, is checked with the connector's `verify` call, and signs
//! that user's calls and proxied requests to httpbin (PyPI); deleted with the connection; seen
//! by a second instance on PostgreSQL. Values never come back in a response, a log line, an
//! event or a webhook (canaries).

use std::time::Duration;

use latchkey_testkit::canary::{canary, find, read_dir_bytes};
use latchkey_testkit::peers::httpbin::httpbin;
use latchkey_testkit::recorder::Recorder;
use reqwest::Method;
use serde_json::{Value, json};

use super::*;

async fn put_values(lk: &Latchkey, key: &str, connector: &str, user: &str, credentials: Value) -> Reply {
    let body = json!({"user": user, "credentials": credentials});
    let req = lk.http.put(lk.url(&format!("/v1/connections/{connector}"))).bearer_auth(key).json(&body);
    Reply::read(req.send().await.unwrap()).await
}

async fn call_as(lk: &Latchkey, key: &str, connector: &str, call: &str, params: Value, user: &str) -> Reply {
    let req = lk
        .http
        .post(lk.url(&format!("/v1/connectors/{connector}/calls/{call}")))
        .bearer_auth(key)
        .json(&json!({"params": params, "user": user}));
    Reply::read(req.send().await.unwrap()).await
}

async fn proxied_as(lk: &Latchkey, key: &str, path: &str, user: &str, extra: Option<(&str, &str)>) -> Reply {
    let mut req = lk.http.get(lk.url(&format!("/v1/proxy/{path}"))).bearer_auth(key).header("Latchkey-User", user);
    if let Some((k, v)) = extra {
        req = req.header(k, v);
    }
    Reply::read(req.send().await.unwrap()).await
}

async fn get(lk: &Latchkey, key: &str, path: &str) -> Reply {
    Reply::read(lk.http.get(lk.url(path)).bearer_auth(key).send().await.unwrap()).await
}

/// Webhooks of `kind` that reached `hooks` (within `wait`).
async fn hooks_of(hooks: &Recorder, kind: &str, wait: Duration) -> Vec<Value> {
    let deadline = std::time::Instant::now() + wait;
    loop {
        let found: Vec<Value> = hooks
            .requests()
            .iter()
            .filter(|r| r.header("latchkey-event") == Some(kind))
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect();
        if !found.is_empty() || std::time::Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_calls_with_their_own_key_named_and_proxied_live_and_dev_until_deleted() {
    let hooks = Recorder::start().await;
    let config = format!(
        "[server]\nwebhook_url = \"{hooks}/hooks\"\n\
         [connectors.keys]\nbase_url = \"{bin}\"\nper_user = true\n\
         auth = {{ method = \"api_key_header\", name = \"X-Api-Key\" }}\n\
         [connectors.keys.calls.headers]\npath = \"/headers\"\naccess = \"user\"\n\
         [connectors.q]\nbase_url = \"{bin}\"\nper_user = true\n\
         auth = {{ method = \"api_key_query\", name = \"api_key\" }}\n\
         [connectors.q.calls.get]\npath = \"/get\"\n",
        hooks = hooks.base_url,
        bin = httpbin().base_url
    );
    let lk = Latchkey::start(bin(), &config);
    let (live, dev) = (lk.app_key("live").await, lk.app_key("dev").await);
    let (alice, bob, alice_dev, alice_q, caller) =
        (canary("alice"), canary("bob"), canary("alicedev"), canary("aliceq"), canary("caller"));
    let canaries = [alice.clone(), bob.clone(), alice_dev.clone(), alice_q.clone()];
    let mut seen = String::new();

    // Values arrive; the answer is the connection, never the values.
    let r = put_values(&lk, &live, "keys", "alice", json!({"key": alice})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let (id, status) = (r.json()["id"].as_str().unwrap().to_owned(), r.json()["status"].clone());
    assert!(id.starts_with("conn_"), "{}", r.body);
    assert_eq!((status, r.json()["user"].clone()), (json!("ok"), json!("alice")));
    seen += &r.all_text();
    for (key, user, value) in [(&live, "bob", &bob), (&dev, "alice", &alice_dev)] {
        let r = put_values(&lk, key, "keys", user, json!({"key": value})).await;
        assert_eq!(r.status, 201, "{}", r.body);
        seen += &r.all_text();
    }
    let r = put_values(&lk, &live, "q", "alice", json!({"key": alice_q})).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // Each call carries its own user's key: named calls and the proxy, live and dev.
    let header = |r: &Reply| r.json()["headers"]["X-Api-Key"].as_str().map(str::to_owned);
    let r = call_as(&lk, &live, "keys", "headers", json!({}), "alice").await;
    assert_eq!((r.status, header(&r)), (200, Some(alice.clone())), "{}", r.body);
    let r = call_as(&lk, &live, "keys", "headers", json!({}), "bob").await;
    assert_eq!(header(&r), Some(bob.clone()));
    let r = call_as(&lk, &dev, "keys", "headers", json!({}), "alice").await;
    assert_eq!(header(&r), Some(alice_dev.clone()));
    // The caller's own header of that name never replaces the user's key.
    let r = proxied_as(&lk, &live, "keys/headers", "bob", Some(("X-Api-Key", &caller))).await;
    assert_eq!((r.status, header(&r)), (200, Some(bob.clone())), "{}", r.body);
    let r = proxied_as(&lk, &dev, "keys/headers", "alice", None).await;
    assert_eq!(header(&r), Some(alice_dev.clone()));
    let r = call_as(&lk, &live, "q", "get", json!({}), "alice").await;
    assert_eq!(r.json()["args"]["api_key"], alice_q.as_str(), "{}", r.body);

    // A user token calls with its own user's values, and sees its own connection.
    let r = lk.http.post(lk.url("/v1/users")).bearer_auth(&live).json(&json!({"id": "bob"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = lk.http.post(lk.url("/v1/users/bob/tokens")).bearer_auth(&live).send().await.unwrap();
    let bob_token = Reply::read(r).await.json()["access_token"].as_str().unwrap().to_owned();
    let r = lk.call(&bob_token, "keys", "headers", json!({})).await;
    assert_eq!((r.status, header(&r)), (200, Some(bob.clone())), "{}", r.body);
    let r = call_as(&lk, &bob_token, "keys", "headers", json!({}), "alice").await;
    assert_eq!(r.status, 404, "a user token used another user's values: {}", r.body);
    let r = get(&lk, &bob_token, "/v1/connections/keys").await;
    assert_eq!((r.status, r.json()["user"].as_str()), (200, Some("bob")), "{}", r.body);
    seen += &r.all_text();
    let r = put_values(&lk, &bob_token, "keys", "bob", json!({"key": "x"})).await;
    assert!(r.status >= 400, "a user token set values: {}", r.body);

    // A user without values: the not-found that says how to connect one.
    let r = call_as(&lk, &live, "keys", "headers", json!({}), "carol").await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")), "{}", r.body);
    assert!(r.body.contains("connect one with PUT /v1/connections/keys"), "{}", r.body);
    let r = proxied_as(&lk, &dev, "keys/headers", "bob", None).await;
    assert_eq!(r.status, 404, "bob has live values only: {}", r.body);
    seen += &r.all_text();

    // Replaced: the same connection, the next call carries the new key.
    let alice2 = canary("alice2");
    let r = put_values(&lk, &live, "keys", "alice", json!({"key": alice2})).await;
    assert_eq!((r.status, r.json()["id"].as_str()), (200, Some(id.as_str())), "{}", r.body);
    seen += &r.all_text();
    let r = call_as(&lk, &live, "keys", "headers", json!({}), "alice").await;
    assert_eq!(header(&r), Some(alice2.clone()));

    // Listed as any connection, without values; refused values name the field only.
    for path in ["/v1/connections/keys?user=alice", "/v1/connections?user=alice"] {
        let r = get(&lk, &live, path).await;
        assert_eq!(r.status, 200, "{}", r.body);
        seen += &r.all_text();
    }
    let r = lk.admin_req(Method::GET, "/v1/admin/connections?connector=keys").send().await.unwrap();
    seen += &Reply::read(r).await.all_text();
    for (body, expected) in [
        (
            json!({"user": "alice", "credentials": {"key": format!("{alice}\r\nX-Injected: 1")}}),
            "`credentials.key` contains line breaks",
        ),
        (
            json!({"user": "alice", "credentials": {"password": alice}}),
            "`credentials.password` is not a field of connector `keys`",
        ),
        (json!({"user": "alice", "credentials": {}}), "`credentials.key` is missing"),
        (json!({"user": "alice", "credentials": {"key": 5}}), "`credentials.key` must be a string"),
        (json!({"user": "alice", "credentials": alice}), "`credentials` must be an object"),
        (json!({"user": "alice", "credentials": {"key": "x".repeat(5000)}}), "longer than 4096 bytes"),
    ] {
        let req = lk.http.put(lk.url("/v1/connections/keys")).bearer_auth(&live).json(&body);
        let r = Reply::read(req.send().await.unwrap()).await;
        assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{}", r.body);
        assert!(r.body.contains(expected), "{expected}: {}", r.body);
        seen += &r.all_text();
    }
    let r = call_as(&lk, &live, "keys", "headers", json!({}), "alice").await;
    assert_eq!(header(&r), Some(alice2.clone()), "a refused PUT changed the values");
    // Admin keys do not set values: an app key chooses the environment.
    let r = put_values(&lk, lk.admin(), "keys", "alice", json!({"key": "x"})).await;
    assert_eq!(r.status, 403, "{}", r.body);

    // Deleted with the connection.
    let req = lk.http.delete(lk.url("/v1/connections/keys?user=alice")).bearer_auth(&live);
    let r = Reply::read(req.send().await.unwrap()).await;
    assert_eq!((r.status, r.json()["deleted"].as_str()), (200, Some(id.as_str())), "{}", r.body);
    let r = call_as(&lk, &live, "keys", "headers", json!({}), "alice").await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = call_as(&lk, &live, "keys", "headers", json!({}), "bob").await;
    assert_eq!(header(&r), Some(bob.clone()), "another user's connection went too");
    // Deleting a user deletes their values too.
    let r = lk.http.delete(lk.url("/v1/users/bob")).bearer_auth(&live).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = call_as(&lk, &live, "keys", "headers", json!({}), "bob").await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Events and webhooks as for OAuth connections, without values.
    let r = lk.admin_req(Method::GET, "/v1/admin/events?connector=keys").send().await.unwrap();
    let events = Reply::read(r).await;
    let kinds: Vec<String> =
        events.json()["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
    for kind in ["connection.created", "connection.reconnected", "connection.deleted"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} missing: {kinds:?}");
    }
    seen += &events.all_text();
    let created = hooks_of(&hooks, "connection.created", Duration::from_secs(10)).await;
    assert!(created.iter().any(|h| h["data"]["user"] == "alice"), "{created:?}");
    let deleted = hooks_of(&hooks, "connection.deleted", Duration::from_secs(10)).await;
    assert!(!deleted.is_empty());

    // No value anywhere Latchkey speaks: responses, events, webhooks, logs, the data directory.
    let mut canaries = canaries.to_vec();
    canaries.push(alice2);
    let hooks_text: Vec<u8> = hooks.requests().iter().flat_map(|r| r.body.clone()).collect();
    assert_eq!(find(seen.as_bytes(), &canaries), Vec::<&str>::new(), "in responses");
    assert_eq!(find(&hooks_text, &canaries), Vec::<&str>::new(), "in webhooks");
    assert_eq!(find(&lk.output_bytes(), &canaries), Vec::<&str>::new(), "in the log");
    assert_eq!(find(&read_dir_bytes(&lk.data_dir), &canaries), Vec::<&str>::new(), "in the data directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_wrong_values_saving_nothing_and_basic_and_digest_sign_per_user() {
    let base = &httpbin().base_url;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let config = format!(
        "[server]\naudit_log = \"{log}\"\n\
         [connectors.pw]\nbase_url = \"{base}\"\nper_user = true\nverify = \"check\"\n\
         auth = {{ method = \"basic\" }}\n\
         [connectors.pw.calls.check]\npath = \"/basic-auth/ada/open-sesame\"\n\
         [connectors.pw.calls.anything]\npath = \"/anything\"\n\
         [connectors.dg]\nbase_url = \"{base}\"\nper_user = true\nauth = {{ method = \"digest\" }}\n\
         [connectors.dg.calls.digest]\npath = \"/digest-auth/auth/<user>/<pw>/<alg>\"\n\
         params = {{ user = {{ required = true }}, pw = {{ required = true }}, alg = {{ default = \"MD5\" }} }}\n\
         [connectors.down]\nbase_url = \"http://127.0.0.1:9\"\nper_user = true\nverify = \"me\"\n\
         auth = {{ method = \"api_key_header\", name = \"X-Key\" }}\n\
         [connectors.down.calls.me]\npath = \"/me\"\n",
        log = log.display()
    );
    let lk = Latchkey::start(bin(), &config);
    let live = lk.app_key("live").await;
    let wrong = canary("wrongpw");

    // The verify call is refused with these values: 422 with the upstream's status, nothing saved.
    let r = put_values(&lk, &live, "pw", "ada", json!({"username": "ada", "password": wrong})).await;
    assert_eq!((r.status, r.error_code()), (422, Some("credentials_refused")), "{}", r.body);
    assert_eq!(r.json()["error"]["upstream_status"], 401, "{}", r.body);
    assert!(!r.body.contains(&wrong), "{}", r.body);
    let r = get(&lk, &live, "/v1/connections/pw?user=ada").await;
    assert_eq!(r.status, 404, "refused values were saved: {}", r.body);
    let r = call_as(&lk, &live, "pw", "anything", json!({}), "ada").await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Accepted by the verify call: saved, and the user's calls carry them.
    let r = put_values(&lk, &live, "pw", "ada", json!({"username": "ada", "password": "open-sesame"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = call_as(&lk, &live, "pw", "check", json!({}), "ada").await;
    assert_eq!((r.status, r.json()), (200, json!({"authenticated": true, "user": "ada"})), "{}", r.body);
    // A refused replacement keeps the values that worked.
    let r = put_values(&lk, &live, "pw", "ada", json!({"username": "ada", "password": wrong})).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = call_as(&lk, &live, "pw", "check", json!({}), "ada").await;
    assert_eq!(r.status, 200, "{}", r.body);

    // An upstream that cannot be reached: the values could not be checked, nothing saved.
    let r = put_values(&lk, &live, "down", "ada", json!({"key": wrong})).await;
    assert_eq!((r.status, r.error_code()), (502, Some("upstream_unreachable")), "{}", r.body);
    assert!(r.body.contains("not saved"), "{}", r.body);
    let r = get(&lk, &live, "/v1/connections/down?user=ada").await;
    assert_eq!(r.status, 404, "{}", r.body);

    // Digest: each user answers with their own password, and their own kept challenge.
    for (user, pw) in [("ada", "pw-a"), ("bob", "pw-b")] {
        let r = put_values(&lk, &live, "dg", user, json!({"username": user, "password": pw})).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let ok = |u: &str| json!({"authenticated": true, "user": u});
    for _ in 0..2 {
        for (user, pw) in [("ada", "pw-a"), ("bob", "pw-b")] {
            let r = call_as(&lk, &live, "dg", "digest", json!({"user": user, "pw": pw}), user).await;
            assert_eq!((r.status, r.json()), (200, ok(user)), "{user}: {}", r.body);
        }
    }
    // Bob's password against ada's check: httpbin refuses the answer to its own challenge.
    let r = call_as(&lk, &live, "dg", "digest", json!({"user": "ada", "pw": "pw-a"}), "bob").await;
    assert_eq!((r.status, r.error_code()), (424, Some("secret_missing")), "{}", r.body);
    assert!(r.body.contains("PUT /v1/connections/dg"), "{}", r.body);
    let r = call_as(&lk, &live, "dg", "digest", json!({"user": "ada", "pw": "pw-a"}), "ada").await;
    assert_eq!(r.status, 200, "ada's challenge was spoiled by bob's refusal: {}", r.body);

    assert_eq!(find(&lk.output_bytes(), std::slice::from_ref(&wrong)), Vec::<&str>::new(), "in the log");
    // SECURITY S8: setting values is a credential change, audited before it is made (refused
    // ones too), the user id as its HMAC, never a value.
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(find(text.as_bytes(), std::slice::from_ref(&wrong)), Vec::<&str>::new(), "in the audit log");
    assert!(!text.contains("open-sesame") && !text.contains("pw-a"), "{text}");
    let puts: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["kind"] == "connection.put")
        .collect();
    assert_eq!(puts.len(), 6, "{text}");
    assert_eq!((puts[0]["connector"].as_str(), puts[0]["environment"].as_str()), (Some("pw"), Some("live")));
    assert!(puts[0]["user"].as_str().unwrap().starts_with("hmac-sha256:"), "{text}");
}

/// A second instance on the same PostgreSQL store: a user's new values and their deletion
/// reach it at its next sync (the write bumps the generation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_on_postgres_uses_a_users_new_values_and_drops_deleted_ones() {
    let db = super::at_rest::Database::create();
    let up = Recorder::start().await;
    let key = latchkey_vault::MasterKey::generate();
    let key_text = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
    let config = format!(
        "[connectors.up]\nbase_url = \"{}\"\nper_user = true\nauth = {{ method = \"api_key_header\", name = \"X-Key\" }}\n",
        up.base_url
    );
    let env = vec![("LATCHKEY_DATABASE_URL".to_owned(), db.url()), ("LATCHKEY_MASTER_KEY".to_owned(), key_text)];
    let a = Latchkey::start_with(bin(), Options { config: config.clone(), env: env.clone(), ..Options::default() })
        .unwrap();
    let app = a.app_key("live").await;
    let b = Latchkey::start_with(bin(), Options { config, env, ..Options::default() }).unwrap();
    let sent_by_b = async |b: &Latchkey| {
        let r = b.http.get(b.url("/v1/proxy/up/x")).bearer_auth(&app).header("Latchkey-User", "alice").send();
        let status = r.await.unwrap().status().as_u16();
        (status, up.requests().last().and_then(|q| q.header("x-key").map(str::to_owned)))
    };
    assert_eq!(put_values(&a, &app, "up", "alice", json!({"key": "first"})).await.status, 201);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sent_by_b(&b).await != (200, Some("first".into())) {
        assert!(std::time::Instant::now() < deadline, "instance b never saw alice's values");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(put_values(&a, &app, "up", "alice", json!({"key": "second"})).await.status, 200);
    while sent_by_b(&b).await.1.as_deref() != Some("second") {
        assert!(std::time::Instant::now() < deadline, "instance b kept alice's old values");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Deleted by an admin, by id (as the console will).
    let r = get(&a, &app, "/v1/connections/up?user=alice").await;
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = a.admin_req(Method::DELETE, &format!("/v1/admin/connections/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    while sent_by_b(&b).await.0 != 404 {
        assert!(std::time::Instant::now() < deadline, "instance b kept using deleted values");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
