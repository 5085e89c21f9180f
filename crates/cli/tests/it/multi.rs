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
