//! The conformance suite on PostgreSQL, one fresh database per test, and what only it has.
//!
//! The server is `LATCHKEY_TEST_POSTGRES_URL` if set (a URL of an existing database whose user
//! may create databases), else 127.0.0.1:5432 with trust auth as user `postgres`, then `root`,
//! database `test`. An unreachable server fails these tests: they never skip.

use std::sync::atomic::{AtomicU32, Ordering};

use latchkey_core::Env;
use latchkey_core::store::{ConnectorRow, SecretRow, Store, StoreChange};
use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

use crate::{Ctx, conformance_suite};

const START_HINT: &str = "start it with: \
    pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start \
    (or set LATCHKEY_TEST_POSTGRES_URL to a server that lets you create databases)";

/// The admin URL that answered, and a connection on it.
async fn admin() -> (String, PgConnection) {
    let candidates = match std::env::var("LATCHKEY_TEST_POSTGRES_URL") {
        Ok(url) => vec![url],
        Err(_) => {
            vec!["postgres://postgres@127.0.0.1:5432/test".to_owned(), "postgres://root@127.0.0.1:5432/test".to_owned()]
        }
    };
    let mut failures = Vec::new();
    for url in candidates {
        match PgConnection::connect(&url).await {
            Ok(conn) => return (url, conn),
            Err(e) => failures.push(format!("{}: {e}", latchkey_store::redact_url(&url))),
        }
    }
    panic!("PostgreSQL is not reachable for the store tests ({}); {START_HINT}", failures.join("; "));
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let server = match base.rsplit_once('/') {
        Some((server, _)) if server.contains("://") && !server.ends_with('/') => server,
        _ => base.trim_end_matches('/'),
    };
    format!("{server}/{database}{query}")
}

fn unique_database() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let ms = latchkey_core::clock::system_now_ms();
    format!("lk_test_{}_{ms}_{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Drops its database when dropped, also when the test panicked.
pub struct DropDatabase {
    admin: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // A runtime of its own on a thread of its own: Drop cannot await, and may run on the
        // test's runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin).await?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::query(AssertSqlSafe(sql)).execute(&mut conn).await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// A new, empty database of its own, opened through `connect`.
async fn fresh() -> (Ctx, DropDatabase) {
    let (admin, mut conn) = admin().await;
    let name = unique_database();
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let _ = conn.close().await;
    let guard = DropDatabase { admin: admin.clone(), name: name.clone() };
    let url = with_database(&admin, &name);
    let store = latchkey_store::connect(&url).await.unwrap_or_else(|e| panic!("open PostgreSQL store: {e}"));
    (Ctx { store, url }, guard)
}

conformance_suite!(fresh);

#[test]
fn with_database_replaces_only_the_database() {
    assert_eq!(with_database("postgres://postgres@127.0.0.1:5432/test", "x"), "postgres://postgres@127.0.0.1:5432/x");
    assert_eq!(with_database("postgresql://u@h/test?sslmode=disable", "x"), "postgresql://u@h/x?sslmode=disable");
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}

#[tokio::test]
async fn a_missing_database_is_unavailable_with_the_servers_words() {
    let (admin, conn) = admin().await;
    let _ = conn.close().await;
    let url = with_database(&admin, "lk_test_does_not_exist");
    let (op, reason) = crate::connect::connect_error(&url).await;
    assert_eq!(op, "connect");
    assert!(reason.contains("lk_test_does_not_exist"), "{reason}");
    assert!(reason.contains("does not exist"), "{reason}");
}

#[tokio::test]
async fn names_sort_in_byte_order_whatever_the_locale() {
    // The columns are COLLATE "C": check the schema says so, beside the conformance case
    // that checks the order.
    let (ctx, _guard) = fresh().await;
    let mut conn = PgConnection::connect(&ctx.url).await.unwrap();
    let collations: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND data_type = 'text' \
         AND column_name IN ('name', 'id', 'key') AND collation_name IS DISTINCT FROM 'C'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(collations, vec![], "text keys without COLLATE \"C\"");
    let _ = conn.close().await;
}

/// The next notice of `feed`; fails (rather than hangs) when none comes within 20 s.
async fn next_notice(feed: &mut latchkey_core::store::ChangeFeed) -> StoreChange {
    tokio::time::timeout(std::time::Duration::from_secs(20), feed.recv())
        .await
        .expect("no change notice within 20 s")
        .expect("the change feed ended")
}

/// What another handle's change feed hears of a write: the generation it committed, sent
/// with it (LISTEN/NOTIFY); after its connection is killed, that it must check (it may have
/// missed changes), and then the next write again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_handles_feed_hears_each_write_and_listens_again_after_its_connection_is_killed() {
    let (ctx, _guard) = fresh().await;
    let other = ctx.second_instance().await;
    let mut feed = other.change_feed().expect("PostgreSQL has a change feed");
    assert_eq!(next_notice(&mut feed).await, StoreChange::Resync, "a new feed says to check once it listens");

    let row = SecretRow { name: "k".into(), env: Env::Live, sealed: vec![1, 2, 3], updated_at: 1 };
    ctx.store.put_secret(&row).await.unwrap();
    let written = ctx.store.generation().await.unwrap();
    assert_eq!(next_notice(&mut feed).await, StoreChange::Generation(written));
    ctx.store.put_connector(&ConnectorRow { name: "c".into(), definition: "{}".into(), updated_at: 1 }).await.unwrap();
    assert_eq!(next_notice(&mut feed).await, StoreChange::Generation(written + 1));

    let mut conn = PgConnection::connect(&ctx.url).await.unwrap();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'latchkey listener'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(killed, vec![true], "one listener connection");
    let _ = conn.close().await;
    assert_eq!(next_notice(&mut feed).await, StoreChange::Resync, "listening again, it says to check");
    assert!(ctx.store.delete_secret("k").await.unwrap());
    assert_eq!(next_notice(&mut feed).await, StoreChange::Generation(written + 2));
    // This handle's own feed hears its own writes too (a reader compares and does nothing).
    let mut own = ctx.store.change_feed().expect("PostgreSQL has a change feed");
    assert_eq!(next_notice(&mut own).await, StoreChange::Resync);
    ctx.store.put_secret(&row).await.unwrap();
    assert_eq!(next_notice(&mut own).await, StoreChange::Generation(written + 3));
    assert_eq!(next_notice(&mut feed).await, StoreChange::Generation(written + 3));
}

/// A feed whose connection goes silent (a partition that neither resets nor closes it: a TCP
/// forwarder stops passing bytes) notices when its check after a quiet while gets no answer,
/// and listens again on a new connection once the network is back, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_whose_connection_goes_silent_listens_again() {
    let (ctx, _guard) = fresh().await;
    let mut url = url::Url::parse(&ctx.url).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let target = tokio::net::lookup_host(target).await.unwrap().next().unwrap();
    let proxy = latchkey_testkit::tcp_proxy::TcpProxy::start(target).await;
    url.set_host(Some(&proxy.addr.ip().to_string())).unwrap();
    url.set_port(Some(proxy.addr.port())).unwrap();
    let mut through = latchkey_store::PostgresStore::connect(url.as_str()).await.unwrap();
    through.check_change_feed_after(std::time::Duration::from_millis(200));
    let mut feed = Store::change_feed(&through).expect("PostgreSQL has a change feed");
    assert_eq!(next_notice(&mut feed).await, StoreChange::Resync);

    proxy.pause();
    let row = SecretRow { name: "k".into(), env: Env::Live, sealed: vec![1], updated_at: 1 };
    ctx.store.put_secret(&row).await.unwrap();
    // The check (after 200 ms quiet) goes unanswered for 200 ms; connecting again waits for
    // the network. Were the connection still taken for alive, the notice held in the
    // partition would come first once it heals.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    proxy.resume();
    assert_eq!(next_notice(&mut feed).await, StoreChange::Resync, "listening again on a new connection");
    ctx.store.delete_secret("k").await.unwrap();
    let generation = ctx.store.generation().await.unwrap();
    assert_eq!(next_notice(&mut feed).await, StoreChange::Generation(generation));
}
