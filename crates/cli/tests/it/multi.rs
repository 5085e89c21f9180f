//! Several Latchkey instances on one PostgreSQL store (SPEC §5, SECURITY R1): one refresh at a
//! time across all of them.

use std::sync::Arc;
use std::time::Duration;

use latchkey_testkit::fake_oauth::FakeOAuth;
use serde_json::json;

use super::at_rest::Database;
use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_postgres_make_one_token_request_for_an_expired_token() {
    let db = Database::create();
    let fake = FakeOAuth::start().await;
    fake.set_delay(Duration::from_millis(500));
    let key = latchkey_vault::MasterKey::generate();
    let key_text = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
    let config = format!(
        "[connectors.api]\nbase_url = \"{base}\"\n\
         auth = {{ method = \"oauth2_password\", token_url = \"{token}\", username = \"ada\", password = {{ secret = \"pw\" }}, client_id = \"app\" }}\n\
         [connectors.api.calls.echo]\npath = \"/api/echo\"\n",
        base = fake.base_url,
        token = fake.token_url
    );
    let env = vec![("LATCHKEY_DATABASE_URL".to_owned(), db.url()), ("LATCHKEY_MASTER_KEY".to_owned(), key_text)];
    let first = Latchkey::start_with(bin(), Options { config: config.clone(), env: env.clone(), ..Options::default() })
        .unwrap();
    first.put_secret("pw", "live", "pw").await;
    let app = first.app_key("live").await;
    let mut instances = vec![Arc::new(first)];
    for _ in 0..2 {
        instances.push(Arc::new(
            Latchkey::start_with(bin(), Options { config: config.clone(), env: env.clone(), ..Options::default() })
                .unwrap(),
        ));
    }
    let mut tasks = Vec::new();
    for lk in &instances {
        for _ in 0..40 {
            let (lk, app) = (lk.clone(), app.clone());
            tasks.push(tokio::spawn(async move { lk.call(&app, "api", "echo", json!({})).await }));
        }
    }
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    assert_eq!(fake.token_requests(), 1, "instances refreshed the same token separately");
}

/// A secret written or deleted through one instance reaches another at its next sync (1 s),
/// which reads only the changed rows (ef5c583): its full reads stay at one (its start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_catches_up_with_a_secret_change_reading_only_that_change() {
    let db = Database::create();
    let up = latchkey_testkit::recorder::Recorder::start().await;
    let key = latchkey_vault::MasterKey::generate();
    let key_text = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
    let config = format!(
        "[connectors.up]\nbase_url = \"{}\"\nauth = {{ method = \"api_key_header\", name = \"X-Key\", key = {{ secret = \"k\" }} }}\n",
        up.base_url
    );
    let env = vec![("LATCHKEY_DATABASE_URL".to_owned(), db.url()), ("LATCHKEY_MASTER_KEY".to_owned(), key_text)];
    let a = Latchkey::start_with(bin(), Options { config: config.clone(), env: env.clone(), ..Options::default() })
        .unwrap();
    a.put_secret("k", "live", "first").await;
    let app = a.app_key("live").await;
    let b = Latchkey::start_with(bin(), Options { config, env, ..Options::default() }).unwrap();
    let sent_by_b = async |b: &Latchkey| {
        let r = b.http.get(b.url("/v1/proxy/up/x")).bearer_auth(&app).send().await.unwrap();
        (r.status().as_u16(), up.requests().last().and_then(|q| q.header("x-key").map(str::to_owned)))
    };
    assert_eq!(sent_by_b(&b).await, (200, Some("first".into())));

    a.put_secret("k", "live", "second").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sent_by_b(&b).await.1.as_deref() != Some("second") {
        assert!(std::time::Instant::now() < deadline, "instance b never saw the new value");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = a.admin_req(reqwest::Method::DELETE, "/v1/admin/secrets/k").send().await.unwrap();
    assert_eq!(r.status(), 204);
    while sent_by_b(&b).await.0 == 200 {
        assert!(std::time::Instant::now() < deadline, "instance b kept using a deleted secret");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(b.metric("latchkey_store_reads_total{kind=\"full\"}").await, 1.0);
    let changes = b.metric("latchkey_store_reads_total{kind=\"changes\"}").await;
    assert!(changes >= 2.0, "{changes} catch-ups");
}
