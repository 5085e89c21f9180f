//! Fills an existing Latchkey data directory with many credentials, fast: N sealed secrets
//! (`bulk-000000` …) and N app keys, written in one SQLite transaction. The secrets are sealed
//! with the directory's own `master.key`, exactly as `PUT /v1/admin/secrets` would seal them,
//! so Latchkey opens (decrypts) every one of them at start. Latchkey must not be running.
//!
//! Usage: seed-store DATA_DIR N

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test and benchmark code: a panic is the failure report")]

use std::time::Instant;

use latchkey_core::Env;
use latchkey_core::secrets::seal_secret;
use latchkey_core::store::KeyKind;
use latchkey_vault::{MasterKey, Vault};
use secrecy::SecretString;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<usize>().ok())) else {
        eprintln!("usage: seed-store DATA_DIR N");
        std::process::exit(2);
    };
    let dir = std::path::Path::new(dir);
    let key_text = std::fs::read_to_string(dir.join("master.key")).expect("read master.key");
    let vault = Vault::new(&MasterKey::from_base64(key_text.trim()).expect("master key"));
    let url = format!("sqlite://{}", dir.join("latchkey.db").display());
    let store = latchkey_store::SqliteStore::connect(&url).await.expect("open store");
    let started = Instant::now();
    let now = latchkey_core::time_fmt::now_ms();
    let mut tx = store.pool().begin().await.expect("begin");
    for i in 0..n {
        let name = format!("bulk-{i:06}");
        let value = SecretString::from(format!("value-of-{name}-0123456789abcdef"));
        let sealed = seal_secret(&vault, &name, Env::Live, &value);
        sqlx::query("INSERT INTO secrets (name, env, sealed, updated_at) VALUES ($1, $2, $3, $4)")
            .bind(&name)
            .bind(Env::Live.as_str())
            .bind(sealed)
            .bind(now)
            .execute(&mut *tx)
            .await
            .expect("insert secret");
        let key = latchkey_core::callers::generate(
            KeyKind::App(Env::Live),
            &format!("bulk-{i:06}"),
            latchkey_core::clock::system_now_ms(),
        );
        let row = key.row;
        sqlx::query(
            "INSERT INTO api_keys (id, name, kind, hash, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&row.id)
        .bind(&row.name)
        .bind(row.kind.as_str())
        .bind(&row.hash)
        .bind(row.created_at)
        .bind(row.last_used_at)
        .execute(&mut *tx)
        .await
        .expect("insert key");
    }
    sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1").execute(&mut *tx).await.expect("bump");
    tx.commit().await.expect("commit");
    store.close().await;
    println!("seeded {n} secrets and {n} app keys in {:.2} s", started.elapsed().as_secs_f64());
}
