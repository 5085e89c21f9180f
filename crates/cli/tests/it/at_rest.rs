//! Data at rest: ciphertexts bound to their records (S1), a PostgreSQL dump with no plaintext
//! (S5), and the store shared by the CLI and a running server on PostgreSQL.

use std::process::Command;
use std::time::{Duration, Instant};

use latchkey_core::store::SecretRow;
use latchkey_testkit::canary::{canary, find};
use latchkey_testkit::recorder::Recorder;
use serde_json::json;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ciphertext_moved_onto_another_record_fails_its_integrity_check() {
    let up = Recorder::start().await;
    let lk = with_connector(
        &up.base_url,
        r#"{ method = "api_key_header", name = "X-Key", key = { secret = "victim" } }"#,
        "[connectors.up.calls.ping]\npath = \"/ping\"\n",
    );
    lk.put_secret("attacker", "live", "attacker-value").await;
    lk.put_secret("victim", "live", "victim-value").await;
    let app = lk.app_key("live").await;
    assert_eq!(lk.call(&app, "up", "ping", json!({})).await.status, 200);

    // Someone with write access to the database copies one sealed value onto another row.
    let store =
        latchkey_store::connect(&format!("sqlite://{}", lk.data_dir.join("latchkey.db").display())).await.unwrap();
    let rows = store.list_secrets().await.unwrap();
    let stolen = rows.iter().find(|r| r.name == "attacker").unwrap().sealed.clone();
    let victim = rows.iter().find(|r| r.name == "victim").unwrap();
    store
        .put_secret(&SecretRow {
            name: "victim".into(),
            env: victim.env,
            sealed: stolen,
            updated_at: victim.updated_at + 1,
        })
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = lk.call(&app, "up", "ping", json!({})).await;
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!((r.status, r.error_code()), (500, Some("internal")), "{}", r.body);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.contains("integrity check failed for secret `victim`"), "{msg}");
    assert!(msg.contains("latchkey secret set victim"), "{msg}");
    assert!(!r.body.contains("attacker-value") && !r.body.contains("victim-value"));
    let sent: Vec<_> = up.requests().iter().map(|r| r.header("x-key").unwrap_or("").to_owned()).collect();
    assert!(sent.iter().all(|k| k == "victim-value"), "a request went out with another record's credential: {sent:?}");
    assert!(lk.output().contains("secret failed to decrypt"), "no integrity alert in the log");
}

pub fn psql(db: &str, sql: &str) {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("psql is missing: install the PostgreSQL client (`apt-get install -y postgresql-client`)");
    assert!(
        out.status.success(),
        "psql failed (is PostgreSQL up? `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct Database(pub String);

impl Database {
    pub fn create() -> Database {
        let name = format!(
            "lk_e2e_{}_{}",
            std::process::id(),
            canary("").to_lowercase().replace("canary", "").replace('x', "_")
        );
        psql("test", &format!("CREATE DATABASE {name}"));
        Database(name)
    }
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:5432/{}", self.0)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-qc",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0),
            ])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_calls_work_and_a_dump_holds_no_plaintext() {
    let db = Database::create();
    let up = Recorder::start().await;
    let key = latchkey_vault::MasterKey::generate();
    let key_text = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
    let env =
        vec![("LATCHKEY_DATABASE_URL".to_owned(), db.url()), ("LATCHKEY_MASTER_KEY".to_owned(), key_text.clone())];
    let config = format!(
        "[connectors.up]\nbase_url = \"{}\"\nauth = {{ method = \"basic\", username = \"u\", password = {{ secret = \"pw\" }} }}\n",
        up.base_url
    );
    let lk = Latchkey::start_with(bin(), Options { config, env, ..Options::default() }).unwrap();
    assert!(!lk.data_dir.join("master.key").exists(), "a key file was written although LATCHKEY_MASTER_KEY was given");
    let pw = canary("pgpw");
    let dev_pw = canary("pgdev");
    lk.put_secret("pw", "live", &pw).await;
    lk.put_secret("pw", "dev", &dev_pw).await;
    let app = lk.app_key("live").await;
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(up.last().header("authorization").unwrap().starts_with("Basic "));

    // The CLI, on the same PostgreSQL store, adds a key the running server accepts.
    let out = lk.cli(&["key", "create", "--env", "dev"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&dev).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let dump = Command::new("pg_dump")
        .args(["-h", "127.0.0.1", "-U", "postgres", "--data-only", &db.0])
        .output()
        .expect("pg_dump is missing: install the PostgreSQL client (`apt-get install -y postgresql-client`)");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    assert!(String::from_utf8_lossy(&dump.stdout).contains("COPY public.secrets"), "the dump has no secrets table");
    let canaries = [pw, dev_pw, app, dev, key_text, lk.admin().to_owned()];
    let found = find(&dump.stdout, &canaries);
    assert!(found.is_empty(), "plaintext in the PostgreSQL dump: {found:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_rotate_reseals_everything_while_the_server_keeps_serving() {
    use latchkey_testkit::fake_oauth::FakeOAuth;
    let up = Recorder::start().await;
    let fake = FakeOAuth::start().await;
    // With an audit log, whose HMAC key is sealed in the store too.
    let config = format!(
        "[server]\naudit_log = \"audit.jsonl\"\n\
         [connectors.up]\nbase_url = \"{}\"\nauth = {{ method = \"api_key_header\", name = \"X-Key\", key = {{ secret = \"k\" }} }}\n\
         [connectors.api]\nbase_url = \"{}\"\nauth = {{ method = \"oauth2_password\", token_url = \"{}\", username = \"u\", password = {{ secret = \"pw\" }}, client_id = \"c\" }}\n\
         [connectors.api.calls.echo]\npath = \"/api/echo\"\n",
        up.base_url, fake.base_url, fake.token_url
    );
    let mut lk = Latchkey::start(bin(), &config);
    let admin = lk.admin().to_owned();
    lk.put_secret("k", "live", "rotating-secret").await;
    lk.put_secret("pw", "live", "pw").await;
    let app = lk.app_key("live").await;
    assert_eq!(lk.call(&app, "api", "echo", json!({})).await.status, 200);
    let users = Reply::read(
        lk.http.post(lk.url("/v1/users")).bearer_auth(&app).json(&json!({"id": "alice"})).send().await.unwrap(),
    )
    .await;
    assert_eq!(users.status, 200);
    // An answer kept for an `Idempotency-Key` (sealed: it shows the key made, once).
    let idempotent = |lk: &Latchkey| {
        let r = lk.http.post(lk.url("/v1/admin/keys")).bearer_auth(&admin).header("Idempotency-Key", "before-rotate");
        r.json(&json!({"environment": "dev", "name": "kept"})).send()
    };
    let kept = idempotent(&lk).await.unwrap();
    assert_eq!(kept.status(), 201);
    let kept = kept.text().await.unwrap();
    let old_key = std::fs::read_to_string(lk.data_dir.join("master.key")).unwrap();
    let old_id = latchkey_vault::MasterKey::from_base64(&old_key).unwrap().id();

    // Calls go on during the rotation.
    let caller = {
        let (http, url, app) = (lk.http.clone(), lk.url("/v1/proxy/up/x"), app.clone());
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in 0..40 {
                statuses.push(http.get(&url).bearer_auth(&app).send().await.map(|r| r.status().as_u16()).unwrap_or(0));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            statuses
        })
    };
    let out = lk.cli(&["vault", "rotate"], None);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(text.contains("values re-sealed"), "{text}");
    // A secret written after the rotation, and a call after it.
    lk.put_secret("k", "live", "rotating-secret-2").await;
    let statuses = caller.await.unwrap();
    assert!(statuses.iter().all(|s| *s == 200), "calls failed during the rotation: {statuses:?}");
    assert_eq!(up.last().header("x-key"), Some("rotating-secret-2"));

    let new_key = std::fs::read_to_string(lk.data_dir.join("master.key")).unwrap();
    let new_id = latchkey_vault::MasterKey::from_base64(&new_key).unwrap().id();
    assert_ne!(new_id, old_id);
    assert_eq!(std::fs::read_to_string(lk.data_dir.join("master.key.previous")).unwrap(), old_key);
    let store =
        latchkey_store::connect(&format!("sqlite://{}", lk.data_dir.join("latchkey.db").display())).await.unwrap();
    let values = store.sealed_values().await.unwrap();
    assert!(values.len() >= 5, "{} sealed values", values.len());
    assert!(
        values.iter().any(|(p, _)| matches!(p, latchkey_core::store::SealedPlace::Meta(k) if k == "audit.salt")),
        "the audit log's key is not among the sealed values"
    );
    assert!(
        values.iter().any(|(p, _)| matches!(p, latchkey_core::store::SealedPlace::IdempotencyAnswer { key, .. } if key == "before-rotate")),
        "the kept idempotent answer is not among the sealed values"
    );
    for (place, sealed) in &values {
        assert_eq!(latchkey_vault::key_id_of(sealed).unwrap(), new_id, "{place:?} is still sealed with the old key");
    }
    drop(store);

    // Without the previous key, a restart opens everything with the new key alone.
    lk.kill();
    std::fs::remove_file(lk.data_dir.join("master.key.previous")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let again = Latchkey::start_with(
        bin(),
        Options { config: config.clone(), data_dir: Some(lk.data_dir.clone()), ..Options::default() },
    )
    .unwrap();
    assert_eq!(again.call(&app, "api", "echo", json!({})).await.status, 200);
    let r = Reply::read(again.http.get(again.url("/v1/proxy/up/x")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Reply::read(again.http.get(again.url("/v1/admin/secrets")).bearer_auth(&admin).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    // The kept answer replays, byte for byte, with the new key alone.
    let replay = idempotent(&again).await.unwrap();
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.text().await.unwrap(), kept);
    drop(again);
    drop(work);
    // The old key alone no longer opens the store.
    std::fs::write(lk.data_dir.join("master.key"), &old_key).unwrap();
    let out =
        Latchkey::start_with(bin(), Options { config, data_dir: Some(lk.data_dir.clone()), ..Options::default() })
            .err()
            .expect("started with the old key");
    assert!(out.contains("is not the key this store was sealed with"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_vault_rotation_resumes_and_restarts_cleanly() {
    let up = Recorder::start().await;
    let config = format!(
        "[connectors.up]\nbase_url = \"{}\"\nauth = {{ method = \"basic\", username = \"u\", password = {{ secret = \"pw\" }} }}\n",
        up.base_url
    );
    let mut lk = Latchkey::start(bin(), &config);
    lk.put_secret("pw", "live", "pw-1").await;
    let app = lk.app_key("live").await;
    lk.kill();
    // A rotation that died right after writing the next key: some values may use either key.
    let next = latchkey_vault::MasterKey::generate();
    let next_text = secrecy::ExposeSecret::expose_secret(&next.to_base64()).to_owned();
    std::fs::write(lk.data_dir.join("master.key.next"), format!("{next_text}\n")).unwrap();
    let lk2 = Latchkey::start_with(
        bin(),
        Options { config: config.clone(), data_dir: Some(lk.data_dir.clone()), ..Options::default() },
    )
    .unwrap();
    let r = Reply::read(lk2.http.get(lk2.url("/v1/proxy/up/x")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let out = lk2.cli(&["vault", "rotate"], None);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("resuming"), "{text}");
    let store =
        latchkey_store::connect(&format!("sqlite://{}", lk.data_dir.join("latchkey.db").display())).await.unwrap();
    for (place, sealed) in store.sealed_values().await.unwrap() {
        assert_eq!(latchkey_vault::key_id_of(&sealed).unwrap(), next.id(), "{place:?}");
    }
    assert_eq!(std::fs::read_to_string(lk.data_dir.join("master.key")).unwrap().trim(), next_text);
}

/// SECURITY S2: with `[server] data_key_max_seals = 3`, seven secrets written through the API
/// are sealed under at least three data keys, none sealing more than three of them; every one
/// still opens after a restart (a new process, which derives the old data keys again).
#[tokio::test]
async fn data_keys_are_retired_at_their_budget_and_older_ones_still_open() {
    let up = Recorder::start().await;
    let mut config = String::from("[server]\ndata_key_max_seals = 3\n");
    for i in 0..7 {
        config.push_str(&format!(
            "[connectors.up{i}]\nbase_url = \"{}\"\nauth = {{ method = \"api_key_header\", name = \"X-Key\", key = {{ secret = \"k{i}\" }} }}\n",
            up.base_url
        ));
    }
    let mut lk = Latchkey::start(bin(), &config);
    let app = lk.app_key("live").await;
    for i in 0..7 {
        lk.put_secret(&format!("k{i}"), "live", &format!("value-{i}")).await;
    }
    let drawn = lk.metric("latchkey_vault_data_keys_total").await;
    assert!(drawn >= 3.0, "7 seals (and the store's key check) at 3 per data key drew {drawn} data keys");

    let store =
        latchkey_store::connect(&format!("sqlite://{}", lk.data_dir.join("latchkey.db").display())).await.unwrap();
    let mut per_term = std::collections::HashMap::<Vec<u8>, usize>::new();
    for row in store.list_secrets().await.unwrap() {
        assert!(row.sealed.starts_with(b"LK2"), "secret {} is not sealed under a data key", row.name);
        // LK2 | master key id (8) | term (16) | ...
        *per_term.entry(row.sealed[11..27].to_vec()).or_default() += 1;
    }
    assert_eq!(per_term.values().sum::<usize>(), 7);
    assert!(per_term.len() >= 3 && per_term.values().all(|&n| n <= 3), "seals per data key: {per_term:?}");
    drop(store);

    let work = lk.keep_work_dir();
    lk.kill();
    let again =
        Latchkey::start_with(bin(), Options { config, data_dir: Some(lk.data_dir.clone()), ..Options::default() })
            .unwrap();
    for i in 0..7 {
        let r = again.http.get(again.url(&format!("/v1/proxy/up{i}/x"))).bearer_auth(&app).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        assert_eq!(up.last().header("x-key"), Some(format!("value-{i}").as_str()));
    }
    drop(work);

    let refused = refused_start("[server]\ndata_key_max_seals = 0\n");
    assert!(refused.contains("field `server.data_key_max_seals`: must be at least 1"), "{refused}");
}
