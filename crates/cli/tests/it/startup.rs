//! `latchkey serve`: first start, restarts, master-key checks, health endpoints.

use std::os::unix::fs::PermissionsExt as _;

use super::*;

#[tokio::test]
async fn first_start_makes_a_private_key_file_and_prints_a_working_admin_key() {
    let lk = Latchkey::start(bin(), "");
    let key_file = lk.data_dir.join("master.key");
    assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(&lk.data_dir).unwrap().permissions().mode() & 0o777, 0o700);
    assert!(lk.admin().starts_with("lk_admin_"), "{}", lk.admin());

    let r = Reply::read(lk.http.get(lk.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    let r = Reply::read(lk.http.get(lk.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Reply::read(lk.admin_req(reqwest::Method::GET, "/v1/admin/keys").send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = Reply::read(lk.http.get(lk.url("/metrics")).send().await.unwrap()).await;
    assert!(r.body.contains("latchkey_http_requests_total{route=\"admin\",status=\"2xx\"} 1"), "{}", r.body);
}

#[tokio::test]
async fn a_restart_keeps_the_store_and_prints_no_second_admin_key() {
    let mut lk = Latchkey::start(bin(), "");
    let admin = lk.admin().to_owned();
    lk.put_secret("kept", "live", "v1").await;
    lk.kill();
    let again =
        Latchkey::start_with(bin(), Options { data_dir: Some(lk.data_dir.clone()), ..Options::default() }).unwrap();
    assert_eq!(again.admin_key, None, "a second admin key was printed");
    let r = Reply::read(again.http.get(again.url("/v1/admin/secrets")).bearer_auth(&admin).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["secrets"][0]["name"], "kept");
}

#[tokio::test]
async fn a_wrong_master_key_stops_start_up_and_changes_nothing() {
    let mut lk = Latchkey::start(bin(), "");
    let admin = lk.admin().to_owned();
    lk.put_secret("precious", "live", "value").await;
    lk.kill();
    let key_before = std::fs::read(lk.data_dir.join("master.key")).unwrap();

    let wrong = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let out = Latchkey::start_with(
        bin(),
        Options {
            data_dir: Some(lk.data_dir.clone()),
            env: vec![("LATCHKEY_MASTER_KEY".into(), wrong.into())],
            ..Options::default()
        },
    )
    .err()
    .expect("started with a wrong key");
    assert!(out.contains("is not the key this store was sealed with"), "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    assert!(!out.contains(wrong), "the key was echoed: {out}");

    // The right key still opens everything as it was.
    assert_eq!(std::fs::read(lk.data_dir.join("master.key")).unwrap(), key_before);
    let again =
        Latchkey::start_with(bin(), Options { data_dir: Some(lk.data_dir.clone()), ..Options::default() }).unwrap();
    let r = Reply::read(again.http.get(again.url("/v1/admin/secrets")).bearer_auth(&admin).send().await.unwrap()).await;
    assert_eq!(r.json()["secrets"][0]["name"], "precious");
}

#[tokio::test]
async fn a_store_without_its_key_is_never_re_keyed() {
    let mut lk = Latchkey::start(bin(), "");
    lk.kill();
    std::fs::remove_file(lk.data_dir.join("master.key")).unwrap();
    let out = Latchkey::start_with(bin(), Options { data_dir: Some(lk.data_dir.clone()), ..Options::default() })
        .err()
        .expect("started without its key");
    assert!(out.contains("never re-keys an existing store"), "{out}");
    assert!(!lk.data_dir.join("master.key").exists(), "a new key file was written");
}

#[tokio::test]
async fn a_malformed_master_key_is_refused_clearly() {
    let out = Latchkey::start_with(
        bin(),
        Options { env: vec![("LATCHKEY_MASTER_KEY".into(), "not-base64!".into())], ..Options::default() },
    )
    .err()
    .expect("started");
    assert!(out.contains("LATCHKEY_MASTER_KEY is not usable: the master key is not valid base64"), "{out}");
}

#[tokio::test]
async fn the_bootstrap_admin_key_works_and_must_be_long() {
    let boot = "bootstrap-admin-key-for-automation-0123456789";
    let lk = Latchkey::start_with(
        bin(),
        Options { env: vec![("LATCHKEY_ADMIN_KEY".into(), boot.into())], ..Options::default() },
    )
    .unwrap();
    assert_eq!(lk.admin_key, None, "an admin key was generated although one was given");
    let r = Reply::read(lk.http.get(lk.url("/v1/admin/keys")).bearer_auth(boot).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!lk.output().contains(boot), "the bootstrap key was printed");

    let out = Latchkey::start_with(
        bin(),
        Options { env: vec![("LATCHKEY_ADMIN_KEY".into(), "short".into())], ..Options::default() },
    )
    .err()
    .expect("started with a short admin key");
    assert!(out.contains("LATCHKEY_ADMIN_KEY must be at least 32 characters"), "{out}");
}

#[tokio::test]
async fn a_broken_configuration_is_refused_with_every_problem() {
    let out = Latchkey::start_with(
        bin(),
        Options {
            config: "[connectors.a]\nbase_url = \"nope\"\nauth = { method = \"basic\", username = \"u\", password = \"hunter2\" }\n\
                     [connectors.b]\nbase_url = \"https://b.example\"\nauth = { method = \"api_key_header\" }\n"
                .into(),
            ..Options::default()
        },
    )
    .err()
    .expect("started with a broken config");
    assert!(out.contains("the configuration has 3 problems"), "{out}");
    // Each at its line of the file (a missing field at the table that lacks it).
    assert!(out.contains("latchkey.toml:2: connector `a`, field `base_url`"), "{out}");
    assert!(out.contains("latchkey.toml:3: connector `a`, field `auth.password`: a secret cannot be written"), "{out}");
    assert!(out.contains("latchkey.toml:6: connector `b`, field `auth.key`: missing"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
}

#[tokio::test]
async fn unauthenticated_and_wrong_callers_get_clear_errors() {
    let lk = Latchkey::start(bin(), "");
    let r = Reply::read(lk.http.get(lk.url("/v1/admin/keys")).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (401, Some("unauthenticated")));
    assert_eq!(r.json()["error"]["code"], "unauthenticated");
    // The real key with its last character changed (to one it is not: a fixed `x` would
    // sometimes be the same key).
    let (head, last) = lk.admin().split_at(lk.admin().len() - 1);
    let forged = format!("{head}{}", if last == "x" { "y" } else { "x" });
    let r = Reply::read(lk.http.get(lk.url("/v1/admin/keys")).bearer_auth(&forged).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (401, Some("unauthenticated")));
    let app = lk.app_key("live").await;
    let r = Reply::read(lk.http.get(lk.url("/v1/admin/keys")).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (403, Some("forbidden")));
    let r = Reply::read(lk.http.get(lk.url("/v1/nothing-here")).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")));
}
