//! Instances on one PostgreSQL store hear of each other's changes through LISTEN/NOTIFY
//! (issue 14), and still catch up by polling when they cannot listen.

use std::time::{Duration, Instant};

use latchkey_core::Env;
use latchkey_core::store::SecretRow;
use latchkey_testkit::recorder::Recorder;
use reqwest::Method;
use secrecy::SecretString;
use serde_json::json;

use super::at_rest::{Database, psql};
use super::*;

/// Two instances on one new PostgreSQL database, both with connector `up` (its key the secret
/// `k`, "first" in live) at a recorder, and connectors made through the admin API allowed to
/// reach it; `b` runs with `b_env` added.
struct Pair {
    a: Latchkey,
    b: Latchkey,
    up: Recorder,
    db: Database,
    /// The master key both use, to write to the store directly.
    key: latchkey_vault::MasterKey,
}

async fn pair(b_env: &[(&str, &str)]) -> Pair {
    let db = Database::create();
    let up = Recorder::start().await;
    let key = latchkey_vault::MasterKey::generate();
    let key_text = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
    let config = format!(
        "[server]\napi_connectors_private_egress = true\n[connectors.up]\nbase_url = \"{}\"\nauth = {{ method = \"api_key_header\", name = \"X-Key\", key = {{ secret = \"k\" }} }}\n",
        up.base_url
    );
    let env = vec![("LATCHKEY_DATABASE_URL".to_owned(), db.url()), ("LATCHKEY_MASTER_KEY".to_owned(), key_text)];
    let a = Latchkey::start_with(bin(), Options { config: config.clone(), env: env.clone(), ..Options::default() })
        .unwrap();
    a.put_secret("k", "live", "first").await;
    let mut env = env;
    env.extend(b_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let b = Latchkey::start_with(bin(), Options { config, env, ..Options::default() }).unwrap();
    Pair { a, b, up, db, key }
}

impl Pair {
    /// What `b` answers to a proxied GET through `connector` with `app`, and the `X-Key` the
    /// recorder saw last.
    async fn through_b(&self, app: &str, connector: &str) -> (u16, Option<String>) {
        let r = self.b.http.get(self.b.url(&format!("/v1/proxy/{connector}/x"))).bearer_auth(app).send().await.unwrap();
        (r.status().as_u16(), self.up.requests().last().and_then(|q| q.header("x-key").map(str::to_owned)))
    }
}

/// Asks `check` every 100 ms until it holds; fails after 20 s with `what` and the last answer.
async fn until<F: Future<Output = Result<(), String>>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) => assert!(Instant::now() < deadline, "not within 20 s: {what}; last answer: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Instance b polls the store only every 10 minutes here, yet a secret, a connector and an app
/// key's deletion written through a reach it: a's writes notify, b listens. It reads only what
/// changed (its full reads stay at one, its start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_hears_of_app_keys_secrets_and_connectors_without_its_poll() {
    let p = pair(&[("LATCHKEY_SYNC_INTERVAL_MS", "600000")]).await;
    let app = p.a.app_key("live").await;
    until("b accepts the app key made on a", || async {
        match p.through_b(&app, "up").await {
            (200, Some(k)) if k == "first" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    p.a.put_secret("k", "live", "second").await;
    until("b signs with the secret's new value", || async {
        match p.through_b(&app, "up").await {
            (200, Some(k)) if k == "second" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let r =
        p.a.admin_req(Method::PUT, "/v1/admin/connectors/more")
            .json(&json!({"base_url": p.up.base_url, "auth": {"method": "none"}}))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    until("b knows the connector made on a", || async {
        match p.through_b(&app, "more").await {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // An app key deleted on a (b looks up a key it does not hold, so only a deletion shows
    // that b heard of a key change).
    let id = &app["lk_live_".len()..][..12]; // a key is prefix, id (12), secret
    let r = p.a.admin_req(Method::DELETE, &format!("/v1/admin/keys/{id}")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    until("b refuses the app key deleted on a", || async {
        match p.through_b(&app, "up").await {
            (401, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(p.b.metric("latchkey_store_reads_total{kind=\"full\"}").await, 1.0);
    let output = p.b.output();
    assert!(!output.contains("not listening for other instances' changes"), "{output}");
}

/// With b's listening connection killed and the database refusing new connections (so it
/// cannot listen again), b still catches up by its poll (every second) with a secret the test
/// writes on a connection made before; b says once that it is not listening, and once that it
/// listens again when it can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_its_listener_cut_off_an_instance_still_catches_up_by_polling() {
    let p = pair(&[]).await;
    let app = p.a.app_key("live").await;
    until("b accepts the app key made on a", || async {
        match p.through_b(&app, "up").await {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // A writer of the test's own, connected before the database refuses new connections.
    let writer = latchkey_store::connect(&p.db.url()).await.unwrap();
    let db = &p.db.0;
    psql("test", &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"));
    psql(
        "test",
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{db}' AND application_name = 'latchkey listener'"
        ),
    );
    until("b says it is not listening", || async {
        let output = p.b.output();
        output.contains("not listening for other instances' changes").then_some(()).ok_or(output)
    })
    .await;
    let vault = latchkey_vault::Vault::new(&p.key);
    let sealed = latchkey_core::secrets::seal_secret(&vault, "k", Env::Live, &SecretString::from("second"));
    let row = SecretRow { name: "k".into(), env: Env::Live, sealed, updated_at: 1 };
    writer.put_secret(&row).await.unwrap();
    until("b signs with the secret's new value", || async {
        match p.through_b(&app, "up").await {
            (200, Some(k)) if k == "second" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    drop(writer);

    psql("test", &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"));
    until("b listens again", || async {
        let output = p.b.output();
        output.contains("listening for other instances' changes again").then_some(()).ok_or(output)
    })
    .await;
    let output = p.b.output();
    assert_eq!(output.matches("not listening for other instances' changes").count(), 1, "{output}");
}
