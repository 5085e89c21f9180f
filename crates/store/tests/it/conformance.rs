//! What every `Store` must do, each case on a fresh, migrated, empty store.

use latchkey_core::Env;
use latchkey_core::store::{ConnectorRow, KeyKind, KeyRow, SecretRow, Store, StoreError, Sweep};

use crate::Ctx;

fn secret(name: &str, env: Env, sealed: &[u8], updated_at: i64) -> SecretRow {
    SecretRow { name: name.to_owned(), env, sealed: sealed.to_vec(), updated_at }
}

/// A key whose hash holds 0x00 and non-UTF-8 bytes, distinct per id.
fn key(id: &str, kind: KeyKind, created_at: i64) -> KeyRow {
    let mut hash = vec![0x00, 0xff, 0xc3, 0x28];
    hash.extend(id.bytes());
    hash.resize(32, 0x00);
    KeyRow { id: id.to_owned(), name: format!("key {id}"), kind, hash, created_at, last_used_at: None }
}

fn connector(name: &str, definition: &str, updated_at: i64) -> ConnectorRow {
    ConnectorRow { name: name.to_owned(), definition: definition.to_owned(), updated_at }
}

async fn generation(store: &dyn Store) -> i64 {
    store.generation().await.expect("generation")
}

pub async fn ping(ctx: &Ctx) {
    ctx.store.ping().await.expect("ping");
}

pub async fn fresh_store_is_empty(ctx: &Ctx) {
    let s = &*ctx.store;
    assert_eq!(generation(s).await, 0);
    assert_eq!(s.get_meta("vault").await.unwrap(), None);
    assert!(s.list_secrets().await.unwrap().is_empty());
    assert!(s.list_keys().await.unwrap().is_empty());
    assert!(s.list_connectors().await.unwrap().is_empty());
    assert_eq!(s.find_key("nope").await.unwrap(), None);
}

pub async fn meta_is_insert_if_absent(ctx: &Ctx) {
    let s = &*ctx.store;
    let g = generation(s).await;
    let salt = [0x00, 0x01, 0xfe, 0xff, 0x00, 0x80];

    assert_eq!(s.get_meta("vault.salt").await.unwrap(), None);
    assert!(s.insert_meta("vault.salt", &salt).await.unwrap());
    assert_eq!(s.get_meta("vault.salt").await.unwrap().as_deref(), Some(&salt[..]));

    // A second insert neither fails nor overwrites.
    assert!(!s.insert_meta("vault.salt", b"other").await.unwrap());
    assert_eq!(s.get_meta("vault.salt").await.unwrap().as_deref(), Some(&salt[..]));

    // Keys are independent; an empty value is a value.
    assert!(s.insert_meta("vault.check", b"").await.unwrap());
    assert_eq!(s.get_meta("vault.check").await.unwrap(), Some(Vec::new()));
    assert_eq!(s.get_meta("vault.salt").await.unwrap().as_deref(), Some(&salt[..]));
    assert_eq!(s.get_meta("VAULT.SALT").await.unwrap(), None);

    assert_eq!(generation(s).await, g, "meta is not part of the generation");
}

pub async fn put_secret_is_an_upsert(ctx: &Ctx) {
    let s = &*ctx.store;
    s.put_secret(&secret("stripe", Env::Live, b"live-1", 1)).await.unwrap();
    s.put_secret(&secret("stripe", Env::Dev, b"dev-1", 2)).await.unwrap();
    s.put_secret(&secret("stripe", Env::Live, b"live-2", 3)).await.unwrap();
    assert_eq!(
        s.list_secrets().await.unwrap(),
        vec![secret("stripe", Env::Dev, b"dev-1", 2), secret("stripe", Env::Live, b"live-2", 3),]
    );
    // A value may also move back in time: the row is replaced, not merged.
    s.put_secret(&secret("stripe", Env::Dev, b"dev-0", 0)).await.unwrap();
    assert_eq!(s.list_secrets().await.unwrap()[0], secret("stripe", Env::Dev, b"dev-0", 0));
}

pub async fn sealed_bytes_round_trip_exactly(ctx: &Ctx) {
    let s = &*ctx.store;
    let every_byte: Vec<u8> = (0..=255).collect();
    let samples: Vec<Vec<u8>> = vec![
        vec![0x00],
        vec![0x00; 7],
        b"\x00nul\x00inside\x00".to_vec(),
        vec![0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1], // not UTF-8
        vec![0xed, 0xa0, 0x80],                   // a UTF-16 surrogate, not UTF-8
        b"'); DROP TABLE secrets; --".to_vec(),
        every_byte.clone(),
        every_byte.iter().rev().cycle().take(64 * 1024).copied().collect(),
        Vec::new(),
    ];
    for (i, sealed) in samples.iter().enumerate() {
        s.put_secret(&secret(&format!("s{i:02}"), Env::Live, sealed, i as i64)).await.unwrap();
    }
    let listed = s.list_secrets().await.unwrap();
    assert_eq!(listed.len(), samples.len());
    for (i, (row, sealed)) in listed.iter().zip(&samples).enumerate() {
        assert_eq!(row.name, format!("s{i:02}"));
        assert!(row.sealed == *sealed, "sealed value {i} changed in the store");
    }

    // The same holds for key hashes and meta values.
    let mut k = key("bytes", KeyKind::Admin, 1);
    k.hash = every_byte.clone();
    s.insert_key(&k).await.unwrap();
    assert_eq!(s.find_key("bytes").await.unwrap().unwrap().hash, every_byte);
    assert!(s.insert_meta("bytes", &every_byte).await.unwrap());
    assert_eq!(s.get_meta("bytes").await.unwrap().unwrap(), every_byte);
}

pub async fn delete_secret_removes_every_env(ctx: &Ctx) {
    let s = &*ctx.store;
    s.put_secret(&secret("a", Env::Live, b"1", 1)).await.unwrap();
    s.put_secret(&secret("a", Env::Dev, b"2", 2)).await.unwrap();
    s.put_secret(&secret("b", Env::Live, b"3", 3)).await.unwrap();

    assert!(s.delete_secret("a").await.unwrap());
    assert_eq!(s.list_secrets().await.unwrap(), vec![secret("b", Env::Live, b"3", 3)]);
    assert!(!s.delete_secret("a").await.unwrap());
    assert!(!s.delete_secret("never").await.unwrap());
    assert!(!s.delete_secret("B").await.unwrap(), "names are case-sensitive");
    assert_eq!(s.list_secrets().await.unwrap().len(), 1);
}

pub async fn list_secrets_is_ordered_by_name_then_env(ctx: &Ctx) {
    let s = &*ctx.store;
    // Byte order, whatever the database's locale: upper case before lower, '.' before '_'.
    let names = ["beta", "alpha_2", "Zulu", "alpha", "a.b", "zulu", "Alpha", "été"];
    for (i, name) in names.iter().enumerate() {
        for env in [Env::Live, Env::Dev] {
            s.put_secret(&secret(name, env, name.as_bytes(), i as i64)).await.unwrap();
        }
    }
    let listed: Vec<(String, Env)> =
        s.list_secrets().await.unwrap().into_iter().map(|row| (row.name, row.env)).collect();
    let mut expected: Vec<(String, Env)> =
        names.iter().flat_map(|name| [Env::Live, Env::Dev].map(|env| (name.to_string(), env))).collect();
    expected.sort_by(|a, b| (a.0.as_bytes(), a.1.as_str()).cmp(&(b.0.as_bytes(), b.1.as_str())));
    assert_eq!(listed, expected);
    assert_eq!(listed[0], ("Alpha".to_owned(), Env::Dev));
}

pub async fn keys_insert_find_and_list(ctx: &Ctx) {
    let s = &*ctx.store;
    let admin = key("k-admin", KeyKind::Admin, 30);
    let mut live = key("k-live", KeyKind::App(Env::Live), 10);
    live.last_used_at = Some(12);
    let dev = key("k-dev", KeyKind::App(Env::Dev), 10);
    let early = key("z-early", KeyKind::App(Env::Dev), 5);
    for k in [&admin, &live, &dev, &early] {
        s.insert_key(k).await.unwrap();
    }

    for k in [&admin, &live, &dev, &early] {
        assert_eq!(s.find_key(&k.id).await.unwrap().as_ref(), Some(k));
    }
    assert_eq!(s.find_key("k-missing").await.unwrap(), None);
    assert_eq!(s.find_key("K-ADMIN").await.unwrap(), None, "ids are case-sensitive");

    // By created_at, then id.
    assert_eq!(s.list_keys().await.unwrap(), vec![early, dev, live, admin]);
}

pub async fn insert_key_conflicts_on_an_existing_id(ctx: &Ctx) {
    let s = &*ctx.store;
    let original = key("dup", KeyKind::Admin, 1);
    s.insert_key(&original).await.unwrap();
    let g = generation(s).await;

    let mut again = key("dup", KeyKind::App(Env::Live), 2);
    again.name = "impostor".to_owned();
    let error = s.insert_key(&again).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert!(error.to_string().contains("dup"), "{error}");

    assert_eq!(s.find_key("dup").await.unwrap(), Some(original.clone()));
    assert_eq!(s.list_keys().await.unwrap(), vec![original]);
    assert_eq!(generation(s).await, g, "a refused insert changes nothing");
    // The store is still usable after the refusal.
    s.insert_key(&key("other", KeyKind::Admin, 3)).await.unwrap();
    assert_eq!(generation(s).await, g + 1);
}

pub async fn delete_key_reports_whether_it_deleted(ctx: &Ctx) {
    let s = &*ctx.store;
    s.insert_key(&key("a", KeyKind::Admin, 1)).await.unwrap();
    s.insert_key(&key("b", KeyKind::App(Env::Dev), 2)).await.unwrap();
    assert!(s.delete_key("a").await.unwrap());
    assert!(!s.delete_key("a").await.unwrap());
    assert!(!s.delete_key("never").await.unwrap());
    assert_eq!(s.find_key("a").await.unwrap(), None);
    assert_eq!(s.list_keys().await.unwrap(), vec![key("b", KeyKind::App(Env::Dev), 2)]);
    // The id is free again.
    s.insert_key(&key("a", KeyKind::Admin, 3)).await.unwrap();
}

pub async fn touch_key_records_last_use_without_a_bump(ctx: &Ctx) {
    let s = &*ctx.store;
    let k = key("t", KeyKind::App(Env::Live), 1);
    s.insert_key(&k).await.unwrap();
    s.insert_key(&key("u", KeyKind::App(Env::Live), 1)).await.unwrap();
    let g = generation(s).await;
    let last_used = async |id: &str| s.find_key(id).await.unwrap().unwrap().last_used_at;

    s.touch_key("t", 100).await.unwrap();
    assert_eq!(last_used("t").await, Some(100));
    s.touch_key("t", 50).await.unwrap();
    assert_eq!(last_used("t").await, Some(100), "last use never moves back");
    s.touch_key("t", 200).await.unwrap();
    assert_eq!(last_used("t").await, Some(200));
    assert_eq!(last_used("u").await, None, "only the touched key changes");
    s.touch_key("missing", 300).await.unwrap();

    let touched = s.find_key("t").await.unwrap().unwrap();
    assert_eq!(touched, KeyRow { last_used_at: Some(200), ..k });
    assert_eq!(generation(s).await, g, "touch_key does not bump the generation");
}

pub async fn connectors_upsert_list_and_delete(ctx: &Ctx) {
    let s = &*ctx.store;
    let json = r#"{"base_url":"https://api.example.com","headers":{"x":"a\"b\n"},"note":"日本 🚀"}"#;
    s.put_connector(&connector("github", "{}", 1)).await.unwrap();
    s.put_connector(&connector("Acme", json, 2)).await.unwrap();
    s.put_connector(&connector("github", r#"{"v":2}"#, 3)).await.unwrap();
    assert_eq!(
        s.list_connectors().await.unwrap(),
        vec![connector("Acme", json, 2), connector("github", r#"{"v":2}"#, 3)]
    );
    assert!(s.delete_connector("github").await.unwrap());
    assert!(!s.delete_connector("github").await.unwrap());
    assert!(!s.delete_connector("acme").await.unwrap(), "names are case-sensitive");
    assert_eq!(s.list_connectors().await.unwrap(), vec![connector("Acme", json, 2)]);
}

pub async fn generation_bumps_on_every_write_and_only_then(ctx: &Ctx) {
    let s = &*ctx.store;
    let mut expected = generation(s).await;
    macro_rules! step {
        ($bump:expr, $what:expr) => {{
            let _ = $what;
            expected += $bump;
            assert_eq!(generation(s).await, expected, "after {}", stringify!($what));
        }};
    }
    step!(1, s.put_secret(&secret("a", Env::Live, b"1", 1)).await.unwrap());
    step!(1, s.put_secret(&secret("a", Env::Live, b"1", 1)).await.unwrap());
    step!(1, s.put_secret(&secret("a", Env::Dev, b"2", 1)).await.unwrap());
    step!(1, assert!(s.delete_secret("a").await.unwrap()));
    step!(0, assert!(!s.delete_secret("a").await.unwrap()));

    step!(1, s.insert_key(&key("k", KeyKind::Admin, 1)).await.unwrap());
    step!(0, s.insert_key(&key("k", KeyKind::Admin, 1)).await.unwrap_err());
    step!(0, s.touch_key("k", 5).await.unwrap());
    step!(1, assert!(s.delete_key("k").await.unwrap()));
    step!(0, assert!(!s.delete_key("k").await.unwrap()));

    step!(1, s.put_connector(&connector("c", "{}", 1)).await.unwrap());
    step!(1, s.put_connector(&connector("c", "{}", 2)).await.unwrap());
    step!(1, assert!(s.delete_connector("c").await.unwrap()));
    step!(0, assert!(!s.delete_connector("c").await.unwrap()));

    step!(0, s.insert_meta("m", b"v").await.unwrap());
    step!(0, s.insert_meta("m", b"w").await.unwrap());
    step!(0, s.get_meta("m").await.unwrap());
    step!(0, s.list_secrets().await.unwrap());
    step!(0, s.list_keys().await.unwrap());
    step!(0, s.find_key("k").await.unwrap());
    step!(0, s.list_connectors().await.unwrap());
    step!(0, s.ping().await.unwrap());
}

pub async fn generation_is_shared_by_instances(ctx: &Ctx) {
    // A second instance on the same database (its migrations find nothing to do) sees the
    // first's writes and bumps, and the first sees the second's.
    let other = ctx.second_instance().await;
    let g = generation(&*ctx.store).await;
    assert_eq!(generation(&*other).await, g);

    other.put_secret(&secret("x", Env::Dev, b"\x00x", 7)).await.unwrap();
    assert_eq!(generation(&*ctx.store).await, g + 1);
    assert_eq!(ctx.store.list_secrets().await.unwrap(), vec![secret("x", Env::Dev, b"\x00x", 7)]);

    ctx.store.insert_key(&key("k", KeyKind::Admin, 1)).await.unwrap();
    assert_eq!(generation(&*other).await, g + 2);
    assert!(matches!(other.insert_key(&key("k", KeyKind::Admin, 1)).await, Err(StoreError::Conflict(_))));
}

pub async fn concurrent_writes_each_bump_once(ctx: &Ctx) {
    const WRITERS: i64 = 16;
    let g = generation(&*ctx.store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..WRITERS {
        let store = ctx.store.clone();
        tasks.spawn(async move {
            store.put_secret(&secret(&format!("w{i:02}"), Env::Live, &[i as u8, 0], i)).await.unwrap();
            store.put_connector(&connector(&format!("c{i:02}"), "{}", i)).await.unwrap();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("writer");
    }
    assert_eq!(generation(&*ctx.store).await, g + 2 * WRITERS);
    assert_eq!(ctx.store.list_secrets().await.unwrap().len(), WRITERS as usize);
    assert_eq!(ctx.store.list_connectors().await.unwrap().len(), WRITERS as usize);
}

fn names(rows: &[SecretRow]) -> Vec<(String, Env)> {
    rows.iter().map(|r| (r.name.clone(), r.env)).collect()
}

pub async fn changes_since_holds_only_what_changed(ctx: &Ctx) {
    let s = &*ctx.store;
    let g0 = generation(s).await;
    let nothing = s.changes_since(g0).await.unwrap();
    assert_eq!(nothing.through, g0);
    assert!(nothing.secrets.is_empty() && nothing.keys.is_empty());
    assert!(nothing.deleted_secrets.is_empty() && nothing.deleted_keys.is_empty());

    s.put_secret(&secret("a", Env::Live, b"a1", 1)).await.unwrap();
    s.put_secret(&secret("b", Env::Live, b"b1", 1)).await.unwrap();
    s.insert_key(&key("k1", KeyKind::App(Env::Live), 1)).await.unwrap();
    let c = s.changes_since(g0).await.unwrap();
    assert_eq!(c.through, g0 + 3);
    assert_eq!(names(&c.secrets), [("a".into(), Env::Live), ("b".into(), Env::Live)]);
    assert_eq!(c.secrets[0].sealed, b"a1", "rows come as stored");
    assert_eq!(c.keys, [key("k1", KeyKind::App(Env::Live), 1)]);

    // From the middle: only the later writes.
    let c = s.changes_since(g0 + 2).await.unwrap();
    assert!(c.secrets.is_empty());
    assert_eq!(c.keys.len(), 1);

    let g1 = g0 + 3;
    s.put_secret(&secret("a", Env::Dev, b"a-dev", 2)).await.unwrap();
    assert!(s.delete_secret("b").await.unwrap());
    assert!(!s.delete_secret("b").await.unwrap(), "nothing to delete");
    assert!(s.delete_key("k1").await.unwrap());
    assert!(!s.delete_key("k1").await.unwrap());
    s.insert_key(&key("k2", KeyKind::Admin, 2)).await.unwrap();
    let c = s.changes_since(g1).await.unwrap();
    assert_eq!(c.through, g1 + 4, "a delete that deleted nothing does not bump");
    assert_eq!(names(&c.secrets), [("a".into(), Env::Dev)]);
    assert_eq!(c.deleted_secrets, ["b"]);
    assert_eq!(c.deleted_keys, ["k1"]);
    assert_eq!(c.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(), ["k2"]);

    // Deleted, then written again: both are reported; the row is what the store holds now.
    let g2 = g1 + 4;
    assert!(s.delete_secret("a").await.unwrap());
    s.put_secret(&secret("a", Env::Live, b"a2", 3)).await.unwrap();
    let c = s.changes_since(g2).await.unwrap();
    assert_eq!(c.deleted_secrets, ["a"]);
    assert_eq!(names(&c.secrets), [("a".into(), Env::Live)]);
    assert_eq!(c.secrets[0].sealed, b"a2");
    // Written, then deleted: only the deletion.
    let g3 = g2 + 2;
    s.put_secret(&secret("c", Env::Live, b"c1", 4)).await.unwrap();
    assert!(s.delete_secret("c").await.unwrap());
    let c = s.changes_since(g3).await.unwrap();
    assert!(c.secrets.is_empty());
    assert_eq!(c.deleted_secrets, ["c"]);
    // Key use is not a change.
    s.touch_key("k2", 9).await.unwrap();
    assert!(s.changes_since(g3 + 2).await.unwrap().keys.is_empty());
}

/// A reader that catches up in a loop while writers commit concurrently ends up with every
/// row: none is stamped with a generation the reader had already passed when it committed.
pub async fn a_reader_catching_up_during_concurrent_writes_misses_nothing(ctx: &Ctx) {
    const WRITERS: usize = 8;
    const EACH: usize = 12;
    let mut seen = generation(&*ctx.store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let store = ctx.store.clone();
        tasks.spawn(async move {
            for i in 0..EACH {
                store.put_secret(&secret(&format!("s{w}-{i:02}"), Env::Live, &[w as u8, i as u8], 1)).await.unwrap();
                store.insert_key(&key(&format!("k{w}-{i:02}"), KeyKind::App(Env::Dev), 1)).await.unwrap();
                if i % 3 == 2 {
                    assert!(store.delete_secret(&format!("s{w}-{:02}", i - 1)).await.unwrap());
                }
            }
        });
    }
    let mut secrets = std::collections::BTreeSet::new();
    let mut keys = std::collections::BTreeSet::new();
    let mut catch_up = async |seen: &mut i64| {
        let c = ctx.store.changes_since(*seen).await.unwrap();
        for name in &c.deleted_secrets {
            secrets.remove(name);
        }
        secrets.extend(c.secrets.into_iter().map(|r| r.name));
        keys.extend(c.keys.into_iter().map(|k| k.id));
        *seen = c.through;
    };
    while !tasks.is_empty() {
        catch_up(&mut seen).await;
        if let Some(done) = tasks.try_join_next() {
            done.expect("writer");
        }
        tokio::task::yield_now().await;
    }
    catch_up(&mut seen).await;
    let stored: std::collections::BTreeSet<String> =
        ctx.store.list_secrets().await.unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(stored.len(), WRITERS * (EACH - EACH / 3));
    assert_eq!(secrets, stored, "the reader's view is the store's");
    assert_eq!(keys.len(), WRITERS * EACH);
    assert_eq!(seen, generation(&*ctx.store).await);
}

// ---- tokens and events ----

use latchkey_core::event::{EventKind, EventOutcome};
use latchkey_core::store::{EventFilter, EventRow, TokenKey, TokenWrite};
use latchkey_core::token::TokenState;

fn tkey(connector: &str) -> TokenKey {
    TokenKey::app(connector, Env::Live)
}

fn write(sealed: &[u8], state: TokenState) -> TokenWrite {
    TokenWrite {
        sealed: Some(Some(sealed.to_vec())),
        expires_at: Some(Some(5_000)),
        state,
        last_error: None,
        last_refresh_at: Some(1_000),
    }
}

pub async fn token_lease_is_exclusive_until_it_runs_out(ctx: &Ctx) {
    let s = &*ctx.store;
    let k = tkey("a");
    assert_eq!(s.get_token(&k).await.unwrap(), None);
    let first = s.take_lease(&k, "one", 100, 1_100).await.unwrap().expect("a free lease");
    assert_eq!((first.epoch, first.version, first.state, first.sealed.is_none()), (1, 0, TokenState::Empty, true));
    assert!(s.take_lease(&k, "two", 500, 1_500).await.unwrap().is_none(), "two holders at once");
    let second = s.take_lease(&k, "two", 1_100, 2_100).await.unwrap().expect("the lease ran out");
    assert_eq!(second.epoch, 2);
    // A commit releases the lease.
    assert!(s.commit_token(&k, 2, &write(b"t1", TokenState::Ok), 1_200).await.unwrap());
    let third = s.take_lease(&k, "one", 1_201, 2_201).await.unwrap().expect("released by the commit");
    assert_eq!((third.epoch, third.version, third.sealed.as_deref()), (3, 1, Some(&b"t1"[..])));
    assert_eq!(s.generation().await.unwrap(), 0, "tokens are not configuration: no generation bump");
}

pub async fn token_commit_is_fenced_by_the_lease_epoch(ctx: &Ctx) {
    let s = &*ctx.store;
    let k = tkey("a");
    let old = s.take_lease(&k, "slow", 0, 10).await.unwrap().unwrap();
    let new = s.take_lease(&k, "fast", 20, 30).await.unwrap().unwrap();
    assert!(s.commit_token(&k, new.epoch, &write(b"newest", TokenState::Ok), 21).await.unwrap());
    assert!(
        !s.commit_token(&k, old.epoch, &write(b"stale", TokenState::Ok), 22).await.unwrap(),
        "a stale holder overwrote"
    );
    let row = s.get_token(&k).await.unwrap().unwrap();
    assert_eq!(row.sealed.as_deref(), Some(&b"newest"[..]));
    // A write that keeps the tokens changes only the state.
    let l = s.take_lease(&k, "x", 40, 50).await.unwrap().unwrap();
    let keep = TokenWrite { state: TokenState::Degraded, last_error: Some("500".into()), ..TokenWrite::default() };
    assert!(s.commit_token(&k, l.epoch, &keep, 41).await.unwrap());
    let row = s.get_token(&k).await.unwrap().unwrap();
    assert_eq!(
        (row.sealed.as_deref(), row.expires_at, row.state),
        (Some(&b"newest"[..]), Some(5_000), TokenState::Degraded)
    );
    assert_eq!(row.last_error.as_deref(), Some("500"));
    assert_eq!(row.last_refresh_at, Some(1_000), "kept when not given");
    // Erasing tokens.
    let l = s.take_lease(&k, "x", 60, 70).await.unwrap().unwrap();
    let erase = TokenWrite {
        sealed: Some(None),
        expires_at: Some(None),
        state: TokenState::ReauthorizationRequired,
        ..TokenWrite::default()
    };
    assert!(s.commit_token(&k, l.epoch, &erase, 61).await.unwrap());
    let row = s.get_token(&k).await.unwrap().unwrap();
    assert_eq!((row.sealed, row.expires_at), (None, None));
}

/// The holder's heartbeat moves only its own running lease: not one taken over by a newer
/// epoch, not one given back by a commit, not one that ran out.
pub async fn token_lease_is_extended_only_by_its_running_holder(ctx: &Ctx) {
    let s = &*ctx.store;
    let k = tkey("a");
    let first = s.take_lease(&k, "one", 100, 1_100).await.unwrap().unwrap();
    assert!(s.extend_lease(&k, first.epoch, 1_000, 2_000).await.unwrap(), "the holder extends its lease");
    assert_eq!(s.get_token(&k).await.unwrap().unwrap().lease_until, 2_000);
    assert!(s.take_lease(&k, "two", 1_500, 2_500).await.unwrap().is_none(), "still held, by the extension");
    assert!(!s.extend_lease(&k, first.epoch, 2_000, 3_000).await.unwrap(), "ran out at 2,000: not extended");
    assert!(!s.extend_lease(&k, first.epoch + 1, 1_900, 3_000).await.unwrap(), "an epoch that never held it");
    // Taken over: the old holder cannot move the new holder's lease.
    let second = s.take_lease(&k, "two", 2_000, 3_000).await.unwrap().unwrap();
    assert!(!s.extend_lease(&k, first.epoch, 2_100, 9_000).await.unwrap(), "the old holder extended");
    assert_eq!(s.get_token(&k).await.unwrap().unwrap().lease_until, 3_000);
    assert!(s.extend_lease(&k, second.epoch, 2_100, 4_000).await.unwrap());
    // Released by the commit: nothing left to extend.
    assert!(s.commit_token(&k, second.epoch, &write(b"t1", TokenState::Ok), 2_200).await.unwrap());
    assert!(!s.extend_lease(&k, second.epoch, 2_300, 5_000).await.unwrap(), "a released lease was extended");
    let row = s.get_token(&k).await.unwrap().unwrap();
    assert_eq!((row.lease_until, row.epoch, row.version), (0, second.epoch, 1), "only lease_until ever moves");
    assert!(!s.extend_lease(&tkey("none"), 1, 0, 10).await.unwrap(), "no row");
}

pub async fn token_commit_if_version_refuses_a_stale_writer(ctx: &Ctx) {
    let s = &*ctx.store;
    let k = tkey("a");
    let l = s.take_lease(&k, "a", 0, 10).await.unwrap().unwrap();
    assert!(s.commit_token(&k, l.epoch, &write(b"v1", TokenState::Ok), 1).await.unwrap());
    let v = s.get_token(&k).await.unwrap().unwrap().version;
    assert!(s.commit_token_if_version(&k, v, &write(b"v2", TokenState::Ok), 2).await.unwrap());
    assert!(!s.commit_token_if_version(&k, v, &write(b"v3", TokenState::Ok), 3).await.unwrap());
    assert_eq!(s.get_token(&k).await.unwrap().unwrap().sealed.as_deref(), Some(&b"v2"[..]));
}

pub async fn token_touch_and_delete(ctx: &Ctx) {
    let s = &*ctx.store;
    let k = tkey("a");
    let l = s.take_lease(&k, "a", 0, 10).await.unwrap().unwrap();
    assert!(s.commit_token(&k, l.epoch, &write(b"v1", TokenState::Ok), 1).await.unwrap());
    let before = s.get_token(&k).await.unwrap().unwrap();
    s.touch_token(&k, 50).await.unwrap();
    s.touch_token(&k, 40).await.unwrap();
    let after = s.get_token(&k).await.unwrap().unwrap();
    assert_eq!((after.last_used_at, after.version), (Some(50), before.version), "touch moved the version");
    s.take_lease(&tkey("b"), "a", 0, 10).await.unwrap().unwrap();
    let all = s.list_tokens().await.unwrap();
    assert_eq!(all.iter().map(|t| t.key.connector.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    assert!(s.delete_token(&k).await.unwrap());
    assert!(!s.delete_token(&k).await.unwrap());
    assert_eq!(s.get_token(&k).await.unwrap(), None);
}

/// SECURITY S25: only a compare-and-swap may overwrite a credential. 1,000 refreshes (lease,
/// then commit of a new value) run while other tasks write the same row: uses recorded
/// (`touch_token`), and a writer that rewrites the whole credential from a snapshot it read
/// earlier, with `commit_token_if_version` (the write that lost rotations at Floway and
/// Nango). No rotation may be lost: the row ends with the last refresh's value, and a
/// snapshot's rewrite succeeds only when no refresh came between its read and its write.
pub async fn s25_no_rotation_is_lost_to_concurrent_writes_of_the_same_row(ctx: &Ctx) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let k = tkey("hot");
    let stop = Arc::new(AtomicBool::new(false));
    let mut hammers = Vec::new();
    {
        let (s, k, stop) = (ctx.store.clone(), k.clone(), stop.clone());
        hammers.push(tokio::spawn(async move {
            let mut at = 0;
            while !stop.load(Ordering::Relaxed) {
                at += 1;
                s.touch_token(&k, at).await.unwrap();
            }
        }));
    }
    {
        let (s, k, stop) = (ctx.store.clone(), k.clone(), stop.clone());
        hammers.push(tokio::spawn(async move {
            let mut seen = 0;
            while !stop.load(Ordering::Relaxed) {
                let Some(snapshot) = s.get_token(&k).await.unwrap() else {
                    tokio::task::yield_now().await;
                    continue;
                };
                let Some(sealed) = snapshot.sealed.clone() else { continue };
                // What this writer sees never goes back to an older rotation.
                let n = rotation(&sealed);
                assert!(n >= seen, "rotation {n} seen after rotation {seen}");
                seen = n;
                tokio::task::yield_now().await;
                let rewrite = TokenWrite { sealed: Some(Some(sealed)), ..write(b"", TokenState::Ok) };
                s.commit_token_if_version(&k, snapshot.version, &rewrite, 0).await.unwrap();
            }
        }));
    }
    let s = &*ctx.store;
    for i in 1..=1_000i64 {
        let lease = loop {
            if let Some(l) = s.take_lease(&k, "refresher", i * 10, i * 10 + 5).await.unwrap() {
                break l;
            }
            tokio::task::yield_now().await;
        };
        let value = format!("rotation-{i}");
        assert!(
            s.commit_token(&k, lease.epoch, &write(value.as_bytes(), TokenState::Ok), i * 10 + 1).await.unwrap(),
            "refresh {i} lost its lease to a metadata write"
        );
        // A rewrite from a snapshot older than this commit cannot pass the version check, so
        // the row holds this rotation until the next one.
        let now = s.get_token(&k).await.unwrap().unwrap();
        assert_eq!(now.sealed.as_deref().map(rotation), Some(i), "rotation {i} was overwritten");
    }
    stop.store(true, Ordering::Relaxed);
    for h in hammers {
        h.await.unwrap();
    }
    let row = s.get_token(&k).await.unwrap().unwrap();
    assert_eq!(row.sealed.as_deref(), Some(&b"rotation-1000"[..]), "a rotation was lost");
}

/// The number in `rotation-N`.
fn rotation(sealed: &[u8]) -> i64 {
    std::str::from_utf8(sealed).ok().and_then(|t| t.strip_prefix("rotation-")?.parse().ok()).unwrap_or(0)
}

pub async fn concurrent_leases_have_one_winner(ctx: &Ctx) {
    let k = tkey("race");
    let mut tasks = Vec::new();
    for i in 0..16 {
        let s = ctx.store.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(
            async move { s.take_lease(&k, &format!("o{i}"), 100, 10_000).await.unwrap().is_some() },
        ));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
}

pub async fn events_filter_and_order(ctx: &Ctx) {
    let s = &*ctx.store;
    for (i, (kind, conn)) in
        [(EventKind::TokenObtained, "a"), (EventKind::TokenRefreshed, "a"), (EventKind::TokenRefreshFailed, "b")]
            .iter()
            .enumerate()
    {
        s.insert_event(&EventRow {
            id: format!("e{i}"),
            at: 100 * (i as i64 + 1),
            kind: *kind,
            connector: (*conn).into(),
            env: Env::Live,
            connection: String::new(),
            actor: "system".into(),
            outcome: EventOutcome::Ok,
            detail: "{}".into(),
        })
        .await
        .unwrap();
    }
    let ids = |v: Vec<EventRow>| v.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_events(&EventFilter::default()).await.unwrap()), ["e2", "e1", "e0"]);
    let f = EventFilter { connector: Some("a".into()), ..EventFilter::default() };
    assert_eq!(ids(s.list_events(&f).await.unwrap()), ["e1", "e0"]);
    let f = EventFilter { kind: Some("token.refresh_failed".into()), ..EventFilter::default() };
    assert_eq!(ids(s.list_events(&f).await.unwrap()), ["e2"]);
    let f = EventFilter { since: Some(200), until: Some(300), ..EventFilter::default() };
    assert_eq!(ids(s.list_events(&f).await.unwrap()), ["e1"]);
    let f = EventFilter { limit: 1, ..EventFilter::default() };
    assert_eq!(ids(s.list_events(&f).await.unwrap()), ["e2"]);
    // Pages: after an event come the older ones (same time: smaller ids), filters still apply.
    let f = EventFilter { starting_after: Some("e2".into()), ..EventFilter::default() };
    assert_eq!(ids(s.list_events(&f).await.unwrap()), ["e1", "e0"]);
    let f = EventFilter { starting_after: Some("e2".into()), limit: 1, ..EventFilter::default() };
    assert_eq!(ids(s.list_events(&f).await.unwrap()), ["e1"]);
    let f = EventFilter { starting_after: Some("e1".into()), connector: Some("a".into()), ..EventFilter::default() };
    assert_eq!(ids(s.list_events(&f).await.unwrap()), ["e0"]);
    s.insert_event(&EventRow {
        id: "e1b".into(),
        at: 200,
        kind: EventKind::TokenObtained,
        connector: "a".into(),
        env: Env::Live,
        connection: String::new(),
        actor: "system".into(),
        outcome: EventOutcome::Ok,
        detail: "{}".into(),
    })
    .await
    .unwrap();
    let f = EventFilter { starting_after: Some("e1b".into()), ..EventFilter::default() };
    assert_eq!(ids(s.list_events(&f).await.unwrap()), ["e1", "e0"]);
}

// ---- connections and flows ----

use latchkey_core::store::{ConnectionFilter, ConnectionRow, FlowRow, FlowTake};

fn conn(id: &str, connector: &str, owner: &str, email: &str) -> ConnectionRow {
    ConnectionRow {
        id: id.into(),
        connector: connector.into(),
        env: Env::Live,
        owner: owner.into(),
        provider_user_id: Some(format!("p-{owner}")),
        email: Some(email.into()),
        scopes: Some("a b".into()),
        metadata: "{}".into(),
        return_to: Some("https://app/".into()),
        created_at: 1,
        updated_at: 1,
    }
}

pub async fn connections_upsert_keeps_the_id(ctx: &Ctx) {
    let s = &*ctx.store;
    let first = s.upsert_connection(&conn("c1", "gh", "alice", "a@x")).await.unwrap();
    assert_eq!(first.id, "c1");
    let again =
        s.upsert_connection(&ConnectionRow { return_to: None, ..conn("c2", "gh", "alice", "new@x") }).await.unwrap();
    assert_eq!((again.id.as_str(), again.email.as_deref()), ("c1", Some("new@x")), "reconnecting changed the id");
    assert_eq!(again.return_to.as_deref(), Some("https://app/"), "a missing return_to erased the old one");
    s.upsert_connection(&conn("c3", "gh", "bob", "b@x")).await.unwrap();
    s.upsert_connection(&conn("c4", "slack", "alice", "a@x")).await.unwrap();
    let ids = |v: Vec<ConnectionRow>| v.into_iter().map(|c| c.id).collect::<Vec<_>>();
    let f = ConnectionFilter { owner: Some("alice".into()), ..ConnectionFilter::default() };
    assert_eq!(ids(s.list_connections(&f).await.unwrap()), ["c1", "c4"]);
    let f = ConnectionFilter { connector: Some("gh".into()), env: Some(Env::Live), ..ConnectionFilter::default() };
    assert_eq!(ids(s.list_connections(&f).await.unwrap()), ["c1", "c3"]);
    assert_eq!(s.find_connection("gh", Env::Dev, "alice").await.unwrap(), None);
    assert_eq!(s.get_connection("c3").await.unwrap().unwrap().owner, "bob");
}

pub async fn deleting_a_connection_deletes_its_tokens(ctx: &Ctx) {
    let s = &*ctx.store;
    s.upsert_connection(&conn("c1", "gh", "alice", "a@x")).await.unwrap();
    let k = TokenKey { connector: "gh".into(), env: Env::Live, connection: "c1".into() };
    let l = s.take_lease(&k, "o", 0, 10).await.unwrap().unwrap();
    assert!(s.commit_token(&k, l.epoch, &write(b"t", TokenState::Ok), 1).await.unwrap());
    let app = tkey("gh");
    s.take_lease(&app, "o", 0, 10).await.unwrap().unwrap();
    assert!(s.delete_connection("c1").await.unwrap());
    assert_eq!(s.get_token(&k).await.unwrap(), None);
    assert!(s.get_token(&app).await.unwrap().is_some(), "the app-level token went too");
    assert!(!s.delete_connection("c1").await.unwrap());
}

/// A `per_user` connection's values: the connection and its token row in one write, which
/// bumps the generation; the same id when the values are replaced; nothing when the row of
/// (connector, env, owner) has another id than the one the values were sealed for.
pub async fn connection_values_are_put_with_their_connection_in_one_bumped_write(ctx: &Ctx) {
    let s = &*ctx.store;
    let row = |id: &str, owner: &str, at: i64| ConnectionRow {
        provider_user_id: None,
        email: None,
        scopes: None,
        return_to: None,
        created_at: at,
        updated_at: at,
        ..conn(id, "keys", owner, "-")
    };
    let g0 = s.generation().await.unwrap();
    let stored = s.put_connection_values(&row("c1", "alice", 5), &[0x00, 0xff, 1], 5).await.unwrap().unwrap();
    assert_eq!((stored.id.as_str(), stored.owner.as_str(), stored.created_at), ("c1", "alice", 5));
    assert_eq!(s.generation().await.unwrap(), g0 + 1);
    let k = TokenKey { connector: "keys".into(), env: Env::Live, connection: "c1".into() };
    let t = s.get_token(&k).await.unwrap().unwrap();
    assert_eq!((t.sealed.as_deref(), t.state, t.expires_at), (Some(&[0x00, 0xff, 1][..]), TokenState::Ok, None));
    assert_eq!((t.last_refresh_at, t.lease_until, t.last_error), (Some(5), 0, None));
    let v1 = t.version;

    // Replaced: the same connection, new values, a newer version, another bump.
    let again = s.put_connection_values(&row("c1", "alice", 9), &[7, 7], 9).await.unwrap().unwrap();
    assert_eq!((again.id.as_str(), again.created_at, again.updated_at), ("c1", 5, 9));
    let t = s.get_token(&k).await.unwrap().unwrap();
    assert_eq!((t.sealed.as_deref(), t.last_refresh_at), (Some(&[7, 7][..]), Some(9)));
    assert!(t.version > v1);
    assert_eq!(s.generation().await.unwrap(), g0 + 2);

    // Sealed for another id than the row's: nothing written, no bump.
    assert_eq!(s.put_connection_values(&row("c2", "alice", 10), &[1], 10).await.unwrap(), None);
    assert_eq!(s.get_token(&k).await.unwrap().unwrap().sealed.as_deref(), Some(&[7, 7][..]));
    let other = TokenKey { connection: "c2".into(), ..k.clone() };
    assert_eq!(s.get_token(&other).await.unwrap(), None);
    assert_eq!(s.get_connection("c2").await.unwrap(), None);
    assert_eq!(s.generation().await.unwrap(), g0 + 2);

    // A token row under a lease (an OAuth refresh that once ran there) is replaced all the
    // same, and the lease given back (values are never leased).
    let bob = TokenKey { connection: "c3".into(), ..k.clone() };
    s.upsert_connection(&row("c3", "bob", 1)).await.unwrap();
    s.take_lease(&bob, "o", 0, 10).await.unwrap().unwrap();
    s.put_connection_values(&row("c3", "bob", 11), &[3], 11).await.unwrap().unwrap();
    let t = s.get_token(&bob).await.unwrap().unwrap();
    assert_eq!((t.sealed.as_deref(), t.lease_until), (Some(&[3][..]), 0));
    // Deleted with the connection.
    assert!(s.delete_connection("c1").await.unwrap());
    assert_eq!(s.get_token(&k).await.unwrap(), None);
}

pub async fn flows_are_taken_once(ctx: &Ctx) {
    let s = &*ctx.store;
    let row = FlowRow {
        handle_hash: vec![0x00, 0xff, 1, 2],
        kind: "state".into(),
        connector: "gh".into(),
        env: Env::Dev,
        owner: "alice".into(),
        return_to: "https://app/".into(),
        sealed: Some(vec![9, 0, 9]),
        binding: Some(vec![7; 32]),
        created_at: 10,
        expires_at: 20,
        used_at: None,
    };
    s.insert_flow(&row).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let st = ctx.store.clone();
        tasks.push(tokio::spawn(async move { st.take_flow(&[0x00, 0xff, 1, 2], 15).await.unwrap() }));
    }
    let mut fresh = 0;
    for t in tasks {
        match t.await.unwrap() {
            FlowTake::Fresh(r) => {
                fresh += 1;
                assert_eq!(r, FlowRow { used_at: Some(15), ..row.clone() });
            }
            FlowTake::Used(r) => assert_eq!(r.used_at, Some(15)),
            FlowTake::Unknown => panic!("a stored flow was unknown"),
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(s.take_flow(b"nope", 15).await.unwrap(), FlowTake::Unknown);
    assert_eq!(s.sweep(Sweep::Flows, 21, 100).await.unwrap(), 1);
    assert_eq!(s.take_flow(&[0x00, 0xff, 1, 2], 22).await.unwrap(), FlowTake::Unknown);
}

/// SECURITY S30: a refresh token is never seen used without its successor. Of eight
/// concurrent rotations one wins; the others see the token spent *with* the winner's pair, and
/// only the winner's successor row exists.
pub async fn refresh_rotation_is_atomic_and_has_one_winner(ctx: &Ctx) {
    use latchkey_core::store::{RefreshRow, RefreshTake};
    let s = &*ctx.store;
    let row = |hash: Vec<u8>| RefreshRow {
        hash,
        family: "fam_1".into(),
        env: Env::Live,
        user_id: "alice".into(),
        created_at: 10,
        expires_at: 1_000,
        used_at: None,
        revoked_at: None,
        successor: None,
        scope: None,
        audience: None,
    };
    s.insert_refresh(&row(vec![1; 32])).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let st = ctx.store.clone();
        let next = row(vec![100 + i; 32]);
        tasks.push(tokio::spawn(async move { (i, st.rotate_refresh(&[1; 32], 20, &next, &[i, i]).await.unwrap()) }));
    }
    let (mut winners, mut spent) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            (i, RefreshTake::Fresh(r)) => {
                assert_eq!((r.used_at, r.successor.as_deref()), (Some(20), Some(&[i, i][..])));
                winners.push(i);
            }
            (_, RefreshTake::Spent(r)) => spent.push(r),
            (_, RefreshTake::Unknown) => panic!("a stored refresh token was unknown"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let w = winners[0];
    for r in spent {
        assert_eq!(r.successor.as_deref(), Some(&[w, w][..]), "a loser saw the token used without the winner's pair");
    }
    for i in 0..8u8 {
        let stored = s.get_refresh(&[100 + i; 32]).await.unwrap();
        assert_eq!(stored.is_some(), i == w, "successor {i}: only the winner's is stored");
    }
    assert_eq!(s.rotate_refresh(b"nope", 30, &row(vec![9; 32]), &[0]).await.unwrap(), RefreshTake::Unknown);
    assert!(s.get_refresh(&[9; 32]).await.unwrap().is_none(), "an unknown token's successor was stored");
}

/// Revoking a user's families revokes every one of them at once, with one generation bump;
/// revoking what is revoked already changes nothing and bumps nothing.
pub async fn revoking_families_bumps_once_and_only_when_something_changed(ctx: &Ctx) {
    use latchkey_core::store::RefreshRow;
    let s = &*ctx.store;
    let row = |hash: u8, family: &str, user: &str| RefreshRow {
        hash: vec![hash; 32],
        family: family.into(),
        env: Env::Live,
        user_id: user.into(),
        created_at: 10,
        expires_at: 1_000,
        used_at: None,
        revoked_at: None,
        successor: None,
        scope: None,
        audience: None,
    };
    for r in [row(1, "fam_a", "alice"), row(2, "fam_a", "alice"), row(3, "fam_b", "alice"), row(4, "fam_c", "bob")] {
        s.insert_refresh(&r).await.unwrap();
    }
    let g = generation(s).await;
    assert_eq!(s.revoke_user_families(Env::Live, "alice", 50).await.unwrap(), 3);
    assert_eq!(generation(s).await, g + 1);
    for h in [1, 2, 3] {
        assert_eq!(s.get_refresh(&[h; 32]).await.unwrap().unwrap().revoked_at, Some(50));
    }
    assert_eq!(s.get_refresh(&[4; 32]).await.unwrap().unwrap().revoked_at, None, "another user's family");
    assert_eq!(s.revoke_user_families(Env::Dev, "bob", 60).await.unwrap(), 0, "bob has no dev family");
    assert_eq!(s.revoke_family("fam_a", 70).await.unwrap(), 0);
    assert_eq!(generation(s).await, g + 1, "a revocation that changed nothing bumped the generation");
    assert_eq!(s.revoke_family("fam_c", 80).await.unwrap(), 1);
    assert_eq!(generation(s).await, g + 2);
    let mut revoked = s.revoked_families(50).await.unwrap();
    revoked.sort();
    assert_eq!(revoked, ["fam_a", "fam_b", "fam_c"]);
}

// ---- idempotency keys ----

use latchkey_core::store::IdempotencyRow;

fn claim(scope: &str, key: &str, fingerprint: &[u8], at: i64) -> IdempotencyRow {
    IdempotencyRow {
        scope: scope.into(),
        key: key.into(),
        fingerprint: fingerprint.to_vec(),
        status: 0,
        answer: Vec::new(),
        created_at: at,
    }
}

pub async fn idempotency_keys_are_claimed_once_answered_and_forgotten(ctx: &Ctx) {
    let s = &*ctx.store;
    let day = 86_400_000;
    let now = 10 * day;
    let (expired, abandoned) = (now - day, now - 120_000);
    // A first claim wins; a second sees it in progress, with the first request's fingerprint.
    assert_eq!(s.claim_idempotency(&claim("k1", "a", b"f1", now), expired, abandoned).await.unwrap(), None);
    let found = s.claim_idempotency(&claim("k1", "a", b"f2", now + 1), expired, abandoned).await.unwrap().unwrap();
    assert_eq!((found.status, found.fingerprint.as_slice(), found.answer.len()), (0, &b"f1"[..], 0));
    // Keys are per scope: another caller's same key is its own.
    assert_eq!(s.claim_idempotency(&claim("k2", "a", b"f9", now), expired, abandoned).await.unwrap(), None);
    // Answered: the answer is read back exactly, and is never overwritten.
    s.finish_idempotency("k1", "a", 201, b"\x00sealed\xff").await.unwrap();
    s.finish_idempotency("k1", "a", 500, b"other").await.unwrap();
    let found = s.claim_idempotency(&claim("k1", "a", b"f1", now + 2), expired, abandoned).await.unwrap().unwrap();
    assert_eq!((found.status, found.answer.as_slice(), found.created_at), (201, &b"\x00sealed\xff"[..], now));
    // An answered key is not released; a claim in progress is.
    s.release_idempotency("k1", "a").await.unwrap();
    assert!(s.claim_idempotency(&claim("k1", "a", b"f1", now), expired, abandoned).await.unwrap().is_some());
    s.release_idempotency("k2", "a").await.unwrap();
    assert_eq!(s.claim_idempotency(&claim("k2", "a", b"f3", now), expired, abandoned).await.unwrap(), None);
    // A claim in progress past `abandoned_before` is forgotten, an answered one only after a day.
    let later = now + 200_000;
    let found = s.claim_idempotency(&claim("k2", "a", b"f4", later), later - day, later - 120_000).await.unwrap();
    assert_eq!(found, None, "the abandoned claim was taken over");
    let found = s.claim_idempotency(&claim("k1", "a", b"f5", later), later - day, later - 120_000).await.unwrap();
    assert_eq!(found.unwrap().status, 201);
    let next_day = now + day + 1;
    let found = s.claim_idempotency(&claim("k1", "a", b"f6", next_day), next_day - day, next_day - 120_000).await;
    assert_eq!(found.unwrap(), None, "forgotten after 24 hours");
}

pub async fn concurrent_idempotency_claims_have_one_winner(ctx: &Ctx) {
    let second = ctx.second_instance().await;
    let stores: Vec<std::sync::Arc<dyn Store>> = vec![ctx.store.clone(), second];
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            s.claim_idempotency(&claim("k", "same", b"f", 1_000), 0, 0).await.unwrap().is_none()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        winners += usize::from(t.await.unwrap());
    }
    assert_eq!(winners, 1);
}

/// Kept answers are sealed values (`vault rotate` re-seals them), claims in progress are not;
/// an answer is replaced only while it is still what was read.
pub async fn idempotency_answers_are_sealed_values_replaced_only_when_unchanged(ctx: &Ctx) {
    use latchkey_core::store::SealedPlace;
    let s = &*ctx.store;
    let now = 10 * 86_400_000;
    for key in ["answered", "running"] {
        assert_eq!(s.claim_idempotency(&claim("caller", key, b"f", now), 0, 0).await.unwrap(), None);
    }
    s.finish_idempotency("caller", "answered", 201, b"old").await.unwrap();
    let answers = |values: Vec<(SealedPlace, Vec<u8>)>| {
        values.into_iter().filter(|(p, _)| matches!(p, SealedPlace::IdempotencyAnswer { .. })).collect::<Vec<_>>()
    };
    let place = SealedPlace::IdempotencyAnswer { scope: "caller".into(), key: "answered".into() };
    assert_eq!(answers(s.sealed_values().await.unwrap()), vec![(place.clone(), b"old".to_vec())]);
    assert!(!s.replace_sealed(&place, b"other", b"new").await.unwrap(), "replaced what was not read");
    assert!(s.replace_sealed(&place, b"old", b"new").await.unwrap());
    let running = SealedPlace::IdempotencyAnswer { scope: "caller".into(), key: "running".into() };
    assert!(!s.replace_sealed(&running, b"", b"new").await.unwrap(), "gave a claim in progress an answer");
    let found = s.claim_idempotency(&claim("caller", "answered", b"f", now), 0, 0).await.unwrap().unwrap();
    assert_eq!((found.status, found.answer.as_slice()), (201, &b"new"[..]));
}

/// The metrics' connections by state: by connector, environment and the token's stored state,
/// `empty` for a connection without a token row; app-level tokens are not connections.
pub async fn connections_are_counted_by_state(ctx: &Ctx) {
    use latchkey_core::store::ConnectionCount;
    let s = &*ctx.store;
    assert_eq!(s.count_connections().await.unwrap(), []);
    s.upsert_connection(&conn("c1", "gh", "alice", "a@x")).await.unwrap();
    s.upsert_connection(&conn("c2", "gh", "bob", "b@x")).await.unwrap();
    s.upsert_connection(&conn("c3", "gh", "carol", "c@x")).await.unwrap();
    s.upsert_connection(&ConnectionRow { env: Env::Dev, ..conn("c4", "gh", "alice", "a@x") }).await.unwrap();
    s.upsert_connection(&conn("c5", "slack", "alice", "a@x")).await.unwrap();
    for (id, state) in [("c1", TokenState::Ok), ("c2", TokenState::Ok), ("c3", TokenState::ReauthorizationRequired)] {
        let k = TokenKey { connector: "gh".into(), env: Env::Live, connection: id.into() };
        let l = s.take_lease(&k, "o", 0, 10).await.unwrap().unwrap();
        assert!(s.commit_token(&k, l.epoch, &write(b"t", state), 1).await.unwrap());
    }
    let app = tkey("gh");
    let l = s.take_lease(&app, "o", 0, 10).await.unwrap().unwrap();
    assert!(s.commit_token(&app, l.epoch, &write(b"t", TokenState::Degraded), 1).await.unwrap());
    let count = |connector: &str, env, state, count| ConnectionCount { connector: connector.into(), env, state, count };
    assert_eq!(
        s.count_connections().await.unwrap(),
        [
            count("gh", Env::Dev, TokenState::Empty, 1),
            count("gh", Env::Live, TokenState::Ok, 2),
            count("gh", Env::Live, TokenState::ReauthorizationRequired, 1),
            count("slack", Env::Live, TokenState::Empty, 1),
        ]
    );
}

// ---- the MCP authorization server ----

/// Registered clients are stored as given and found by id; an id is registered once.
pub async fn oauth_clients_are_registered_once(ctx: &Ctx) {
    use latchkey_core::store::OAuthClientRow;
    let s = &*ctx.store;
    let row = OAuthClientRow {
        id: "mcp_1".into(),
        metadata: r#"{"redirect_uris":["http://127.0.0.1/cb"]}"#.into(),
        created_at: 7,
        kept_until: 1_000,
    };
    s.insert_oauth_client(&row).await.unwrap();
    assert_eq!(s.get_oauth_client("mcp_1").await.unwrap(), Some(row.clone()));
    assert_eq!(s.get_oauth_client("mcp_2").await.unwrap(), None);
    assert!(s.insert_oauth_client(&row).await.is_err(), "a duplicate id was registered");
}

/// An authorization code is taken once across concurrent takers (and instances); later takers
/// see it used, with its family; another kind's handle of the same hash is not it.
pub async fn auth_grants_are_taken_once(ctx: &Ctx) {
    use latchkey_core::store::{AuthGrantRow, GrantTake};
    let s = &*ctx.store;
    let row = AuthGrantRow {
        hash: vec![0x00, 0xff, 3],
        kind: "code".into(),
        env: Env::Live,
        user_id: "alice".into(),
        client_id: "mcp_1".into(),
        data: r#"{"scope":"tools"}"#.into(),
        family: "fam_x".into(),
        created_at: 10,
        expires_at: 70,
        used_at: None,
    };
    s.insert_auth_grant(&row).await.unwrap();
    assert!(s.insert_auth_grant(&row).await.is_err(), "a duplicate handle was inserted");
    let other = ctx.second_instance().await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let st = if i % 2 == 0 { ctx.store.clone() } else { other.clone() };
        tasks.push(tokio::spawn(async move { st.take_auth_grant(&[0x00, 0xff, 3], "code", 20).await.unwrap() }));
    }
    let mut fresh = 0;
    for t in tasks {
        match t.await.unwrap() {
            GrantTake::Fresh(r) => {
                fresh += 1;
                assert_eq!(r, AuthGrantRow { used_at: Some(20), ..row.clone() });
            }
            GrantTake::Used(r) => assert_eq!((r.used_at, r.family.as_str()), (Some(20), "fam_x")),
            GrantTake::Unknown => panic!("a stored code was unknown"),
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(s.take_auth_grant(&[0x00, 0xff, 3], "grant", 30).await.unwrap(), GrantTake::Unknown);
    assert_eq!(s.take_auth_grant(b"nope", "code", 30).await.unwrap(), GrantTake::Unknown);
}

/// A refresh family's scope and audience are stored with each of its tokens and kept by the
/// successor a rotation inserts.
pub async fn refresh_tokens_keep_their_scope_and_audience(ctx: &Ctx) {
    use latchkey_core::store::{RefreshRow, RefreshTake};
    let s = &*ctx.store;
    let row = |hash: u8| RefreshRow {
        hash: vec![hash; 32],
        family: "fam_s".into(),
        env: Env::Live,
        user_id: "alice".into(),
        created_at: 10,
        expires_at: 1_000,
        used_at: None,
        revoked_at: None,
        successor: None,
        scope: Some("tool:a connector:b".into()),
        audience: Some("https://lk.example/mcp".into()),
    };
    s.insert_refresh(&row(1)).await.unwrap();
    assert_eq!(s.get_refresh(&[1; 32]).await.unwrap(), Some(row(1)));
    match s.rotate_refresh(&[1; 32], 20, &row(2), &[9]).await.unwrap() {
        RefreshTake::Fresh(r) => assert_eq!(r.scope.as_deref(), Some("tool:a connector:b")),
        other => panic!("{other:?}"),
    }
    let next = s.get_refresh(&[2; 32]).await.unwrap().unwrap();
    assert_eq!(
        (next.scope.as_deref(), next.audience.as_deref()),
        (Some("tool:a connector:b"), Some("https://lk.example/mcp"))
    );
}

// ---- create, never replace ----

/// `insert_connector` inserts only a name not stored (and bumps only then); `put_connector`
/// still replaces.
pub async fn connector_insert_never_replaces(ctx: &Ctx) {
    let s = &*ctx.store;
    let g0 = generation(s).await;
    assert!(s.insert_connector(&connector("gh", r#"{"v":1}"#, 10)).await.unwrap());
    assert_eq!(generation(s).await, g0 + 1);
    assert!(!s.insert_connector(&connector("gh", r#"{"v":2}"#, 20)).await.unwrap());
    assert_eq!(generation(s).await, g0 + 1, "a refused insert bumped the generation");
    assert_eq!(s.list_connectors().await.unwrap(), [connector("gh", r#"{"v":1}"#, 10)]);
    s.put_connector(&connector("gh", r#"{"v":3}"#, 30)).await.unwrap();
    assert_eq!(s.list_connectors().await.unwrap(), [connector("gh", r#"{"v":3}"#, 30)]);
    assert!(s.delete_connector("gh").await.unwrap());
    assert!(s.insert_connector(&connector("gh", r#"{"v":4}"#, 40)).await.unwrap(), "a deleted name is free");
}

/// Eight creators of one name at the same instant, on two instances: exactly one inserts, the
/// store holds its definition, and the generation moved once.
pub async fn concurrent_connector_creations_have_one_winner(ctx: &Ctx) {
    let other = ctx.second_instance().await;
    let g0 = generation(&*ctx.store).await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let st = if i % 2 == 0 { ctx.store.clone() } else { other.clone() };
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let row = connector("same", &format!(r#"{{"creator":{i}}}"#), i);
            (i, st.insert_connector(&row).await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (i, inserted) = t.await.unwrap();
        if inserted {
            winners.push(i);
        }
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let stored = ctx.store.list_connectors().await.unwrap();
    assert_eq!(stored, [connector("same", &format!(r#"{{"creator":{}}}"#, winners[0]), winners[0])]);
    assert_eq!(generation(&*ctx.store).await, g0 + 1);
}

// ---- the sweep ----

use latchkey_core::store::{AuthGrantRow, GrantTake, LoginCodeRow, OAuthClientRow, RefreshRow};

fn flow_at(hash: u8, expires_at: i64) -> FlowRow {
    FlowRow {
        handle_hash: vec![0x00, hash],
        kind: "session".into(),
        connector: "gh".into(),
        env: Env::Live,
        owner: "alice".into(),
        return_to: "https://app/".into(),
        sealed: None,
        binding: None,
        created_at: 0,
        expires_at,
        used_at: None,
    }
}

fn refresh_at(hash: u8, family: &str, expires_at: i64) -> RefreshRow {
    RefreshRow {
        hash: vec![hash; 32],
        family: family.into(),
        env: Env::Live,
        user_id: "alice".into(),
        created_at: 0,
        expires_at,
        used_at: None,
        revoked_at: None,
        successor: None,
        scope: None,
        audience: None,
    }
}

fn grant_at(hash: u8, expires_at: i64) -> AuthGrantRow {
    AuthGrantRow {
        hash: vec![0xff, hash],
        kind: "code".into(),
        env: Env::Live,
        user_id: "alice".into(),
        client_id: "mcp_1".into(),
        data: "{}".into(),
        family: "fam".into(),
        created_at: 0,
        expires_at,
        used_at: None,
    }
}

fn login_code_at(hash: u8, expires_at: i64) -> LoginCodeRow {
    LoginCodeRow {
        hash: vec![0xee, hash],
        env: Env::Live,
        user_id: "alice".into(),
        connection_id: "c1".into(),
        created_at: 0,
        expires_at,
    }
}

fn client_until(id: &str, kept_until: i64) -> OAuthClientRow {
    OAuthClientRow { id: id.into(), metadata: "{}".into(), created_at: 0, kept_until }
}

fn event_at(id: &str, at: i64) -> EventRow {
    EventRow {
        id: id.into(),
        at,
        kind: EventKind::TokenObtained,
        connector: "gh".into(),
        env: Env::Live,
        connection: String::new(),
        actor: "system".into(),
        outcome: EventOutcome::Ok,
        detail: "{}".into(),
    }
}

/// Each table loses exactly its rows whose time is before the bound, and keeps the rest,
/// used or not; other tables are untouched.
pub async fn sweep_deletes_only_old_rows_of_its_table(ctx: &Ctx) {
    let s = &*ctx.store;
    let before = 1_000;
    // flows: by expiry, used or not.
    s.insert_flow(&flow_at(1, 999)).await.unwrap();
    s.insert_flow(&flow_at(2, 500)).await.unwrap();
    s.take_flow(&[0x00, 2], 400).await.unwrap();
    s.insert_flow(&flow_at(3, 1_000)).await.unwrap();
    // sign-in codes
    s.insert_login_code(&login_code_at(1, 999)).await.unwrap();
    s.insert_login_code(&login_code_at(2, 5_000)).await.unwrap();
    // the MCP authorization server's handles
    s.insert_auth_grant(&grant_at(1, 999)).await.unwrap();
    s.insert_auth_grant(&grant_at(2, 1_000)).await.unwrap();
    // refresh tokens: an expired family (used and unused tokens), a live family with a used
    // token, a family revoked long ago and one revoked just now.
    s.insert_refresh(&refresh_at(1, "expired", 999)).await.unwrap();
    s.rotate_refresh(&[1; 32], 100, &refresh_at(2, "expired", 999), b"pair").await.unwrap();
    s.insert_refresh(&refresh_at(3, "live", 9_000)).await.unwrap();
    s.rotate_refresh(&[3; 32], 100, &refresh_at(4, "live", 9_000), b"pair").await.unwrap();
    s.insert_refresh(&refresh_at(5, "revoked_old", 9_000)).await.unwrap();
    s.revoke_family("revoked_old", 999).await.unwrap();
    s.insert_refresh(&refresh_at(6, "revoked_now", 9_000)).await.unwrap();
    s.revoke_family("revoked_now", 1_000).await.unwrap();
    // registered clients
    s.insert_oauth_client(&client_until("lapsed", 999)).await.unwrap();
    s.insert_oauth_client(&client_until("kept", 1_000)).await.unwrap();
    // idempotency keys: by their claim's time, answered or not
    s.claim_idempotency(&claim("c", "old", b"f", 999), 0, 0).await.unwrap();
    s.claim_idempotency(&claim("c", "new", b"f", 1_000), 0, 0).await.unwrap();
    // events
    s.insert_event(&event_at("e_old", 999)).await.unwrap();
    s.insert_event(&event_at("e_new", 1_000)).await.unwrap();

    let g0 = generation(s).await;
    let swept = |what| async move { s.sweep(what, before, 100).await.unwrap() };
    assert_eq!(swept(Sweep::Flows).await, 2);
    assert_eq!(s.get_flow(&[0x00, 1]).await.unwrap(), None);
    assert_eq!(s.get_flow(&[0x00, 2]).await.unwrap(), None);
    assert!(s.get_flow(&[0x00, 3]).await.unwrap().is_some());
    assert_eq!(swept(Sweep::LoginCodes).await, 1);
    assert!(s.take_login_code(&[0xee, 2], Env::Live, 1_000).await.unwrap().is_some(), "the fresh code");
    assert_eq!(swept(Sweep::AuthGrants).await, 1);
    assert_eq!(s.take_auth_grant(&[0xff, 1], "code", 10).await.unwrap(), GrantTake::Unknown);
    assert!(matches!(s.take_auth_grant(&[0xff, 2], "code", 10).await.unwrap(), GrantTake::Fresh(_)));
    assert_eq!(swept(Sweep::RefreshTokens).await, 3);
    for (hash, kept) in [(1, false), (2, false), (3, true), (4, true), (5, false), (6, true)] {
        assert_eq!(s.get_refresh(&[hash; 32]).await.unwrap().is_some(), kept, "refresh token {hash}");
    }
    assert_eq!(swept(Sweep::OAuthClients).await, 1);
    assert_eq!(s.get_oauth_client("lapsed").await.unwrap(), None);
    assert!(s.get_oauth_client("kept").await.unwrap().is_some());
    assert_eq!(swept(Sweep::IdempotencyKeys).await, 1);
    assert_eq!(s.claim_idempotency(&claim("c", "old", b"g", 1_001), 0, 0).await.unwrap(), None, "a new claim");
    assert!(s.claim_idempotency(&claim("c", "new", b"g", 1_001), 0, 0).await.unwrap().is_some());
    assert_eq!(swept(Sweep::Events).await, 1);
    let ids: Vec<String> = s.list_events(&EventFilter::default()).await.unwrap().into_iter().map(|e| e.id).collect();
    assert_eq!(ids, ["e_new"]);
    for what in Sweep::ALL {
        assert_eq!(swept(what).await, 0, "{what:?} swept twice");
    }
    assert_eq!(generation(s).await, g0, "the sweep bumped the generation");
}

/// A claim forgets only its own key's stale row: the others wait for the sweep.
pub async fn an_idempotency_claim_forgets_only_its_own_key(ctx: &Ctx) {
    let s = &*ctx.store;
    s.claim_idempotency(&claim("c", "a", b"f", 10), 0, 0).await.unwrap();
    s.claim_idempotency(&claim("c", "b", b"f", 10), 0, 0).await.unwrap();
    assert_eq!(s.claim_idempotency(&claim("c", "a", b"g", 500), 100, 100).await.unwrap(), None);
    let b = s.claim_idempotency(&claim("c", "b", b"g", 500), 0, 0).await.unwrap();
    assert_eq!(b.map(|r| r.created_at), Some(10), "another key's old claim was forgotten by a claim");
    assert_eq!(s.sweep(Sweep::IdempotencyKeys, 100, 100).await.unwrap(), 1);
}

/// One statement deletes at most `limit` rows: a backlog goes in several.
pub async fn sweep_is_bounded_by_its_limit(ctx: &Ctx) {
    let s = &*ctx.store;
    for i in 0..5 {
        s.insert_flow(&flow_at(i, 10)).await.unwrap();
    }
    s.insert_flow(&flow_at(9, 2_000)).await.unwrap();
    let mut runs = Vec::new();
    loop {
        let n = s.sweep(Sweep::Flows, 1_000, 2).await.unwrap();
        runs.push(n);
        if n == 0 {
            break;
        }
    }
    assert_eq!(runs, [2, 2, 1, 0]);
    assert!(s.get_flow(&[0x00, 9]).await.unwrap().is_some());
}

/// Sweepers on two instances at once, in small batches: every old row is deleted exactly
/// once (the counts add up), nobody fails, and the fresh rows stay.
pub async fn concurrent_sweeps_delete_each_row_once(ctx: &Ctx) {
    let other = ctx.second_instance().await;
    for i in 0..60u8 {
        ctx.store.insert_refresh(&refresh_at(i, &format!("fam{}", i % 7), 500)).await.unwrap();
    }
    for i in 100..110u8 {
        ctx.store.insert_refresh(&refresh_at(i, "live", 5_000)).await.unwrap();
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(4));
    let mut tasks = Vec::new();
    for t in 0..4 {
        let st = if t % 2 == 0 { ctx.store.clone() } else { other.clone() };
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut total = 0;
            loop {
                let n = st.sweep(Sweep::RefreshTokens, 1_000, 7).await.unwrap();
                total += n;
                if n == 0 {
                    return total;
                }
            }
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 60);
    for i in 100..110u8 {
        assert!(ctx.store.get_refresh(&[i; 32]).await.unwrap().is_some());
    }
    assert_eq!(ctx.store.sweep(Sweep::RefreshTokens, 1_000, 100).await.unwrap(), 0);
}

/// A registered client's `kept_until` moves forward only, and only while it is kept: a
/// lapsed or unknown client is not brought back.
pub async fn oauth_clients_are_kept_only_while_they_have_not_lapsed(ctx: &Ctx) {
    let s = &*ctx.store;
    s.insert_oauth_client(&client_until("mcp_1", 1_000)).await.unwrap();
    assert!(s.keep_oauth_client("mcp_1", 900, 5_000).await.unwrap());
    assert_eq!(s.get_oauth_client("mcp_1").await.unwrap().unwrap().kept_until, 5_000);
    assert!(s.keep_oauth_client("mcp_1", 950, 3_000).await.unwrap(), "kept, and not moved back");
    assert_eq!(s.get_oauth_client("mcp_1").await.unwrap().unwrap().kept_until, 5_000);
    assert!(!s.keep_oauth_client("mcp_1", 5_001, 9_000).await.unwrap(), "a lapsed client was kept");
    assert_eq!(s.get_oauth_client("mcp_1").await.unwrap().unwrap().kept_until, 5_000);
    assert!(!s.keep_oauth_client("mcp_2", 0, 9_000).await.unwrap(), "an unknown client was kept");
}
