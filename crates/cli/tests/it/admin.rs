//! The admin API: keys, secrets and connectors.

use latchkey_testkit::recorder::Recorder;
use reqwest::Method;
use serde_json::{Value, json};

use super::*;

#[tokio::test]
async fn app_keys_are_shown_once_listed_without_secrets_and_revocable() {
    let lk = Latchkey::start(bin(), "[server]\napi_connectors_private_egress = true\n");
    let r = Reply::read(
        lk.admin_req(Method::POST, "/v1/admin/keys")
            .json(&json!({"environment": "dev", "name": "ci"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(created["environment"], "dev");
    assert_eq!(created["name"], "ci");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with(&format!("lk_dev_{id}")));

    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/keys").send().await.unwrap()).await;
    assert!(!r.body.contains(&key[7 + 12..]), "a key's secret part was listed");
    let listed: Vec<Value> = r.json()["keys"].as_array().unwrap().clone();
    let mine = listed.iter().find(|k| k["id"] == id.as_str()).unwrap();
    assert_eq!(mine["prefix"], format!("lk_dev_{id}"));
    assert!(mine.get("key").is_none() && mine.get("hash").is_none());

    // The key works, then stops working once deleted.
    let up = Recorder::start().await;
    lk.admin_req(Method::PUT, "/v1/admin/connectors/up")
        .json(&json!({"base_url": up.base_url, "auth": {"method": "none"}}))
        .send()
        .await
        .unwrap();
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&key).send().await.unwrap()).await;
    assert_eq!(r.status, 200);
    let r = Reply::read(lk.admin_req(Method::DELETE, &format!("/v1/admin/keys/{id}")).send().await.unwrap()).await;
    assert_eq!(r.status, 204);
    let r = Reply::read(lk.http.get(lk.url("/v1/proxy/up/x")).bearer_auth(&key).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (401, Some("unauthenticated")));
    let r = Reply::read(lk.admin_req(Method::DELETE, &format!("/v1/admin/keys/{id}")).send().await.unwrap()).await;
    assert_eq!(r.status, 404);
    let r = Reply::read(
        lk.admin_req(Method::POST, "/v1/admin/keys").json(&json!({"environment": "prod"})).send().await.unwrap(),
    )
    .await;
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")));
    assert!(r.body.contains("use `live` or `dev`"), "{}", r.body);
}

#[tokio::test]
async fn secrets_are_written_listed_without_values_and_deleted() {
    let lk = Latchkey::start(bin(), "");
    let r = Reply::read(
        lk.admin_req(Method::PUT, "/v1/admin/secrets/stripe")
            .json(&json!({"value": "sk-1", "environment": "live"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["name"], "stripe");
    assert_eq!(v["environments"], json!(["live"]));
    assert!(v["updated_at"].as_str().unwrap().ends_with('Z'));
    let r = Reply::read(
        lk.admin_req(Method::PUT, "/v1/admin/secrets/stripe")
            .json(&json!({"value": "sk-2", "environment": "dev"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["environments"], json!(["live", "dev"]));
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/secrets").send().await.unwrap()).await;
    assert!(!r.body.contains("sk-1") && !r.body.contains("sk-2"), "{}", r.body);
    assert_eq!(r.json()["secrets"][0]["environments"], json!(["live", "dev"]));

    for (body, expect) in [
        (json!({"value": "x", "environment": "staging"}), "use `live` or `dev`"),
        (json!({"value": ""}), "is empty"),
        (json!({"environment": "live"}), "missing field `value`"),
    ] {
        let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/secrets/s").json(&body).send().await.unwrap()).await;
        assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{body}");
        assert!(r.body.contains(expect), "{}", r.body);
    }
    let r = Reply::read(
        lk.admin_req(Method::PUT, "/v1/admin/secrets/bad%20name").json(&json!({"value": "x"})).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.error_code(), Some("invalid_params"));

    let r = Reply::read(lk.admin_req(Method::DELETE, "/v1/admin/secrets/stripe").send().await.unwrap()).await;
    assert_eq!(r.status, 204);
    let r = Reply::read(lk.admin_req(Method::DELETE, "/v1/admin/secrets/stripe").send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")));
}

#[tokio::test]
async fn connectors_are_created_replaced_and_deleted_through_the_api() {
    let up = Recorder::start().await;
    let lk = Latchkey::start(
        bin(),
        "[server]\napi_connectors_private_egress = true\n[connectors.filed]\nbase_url = \"https://x.example\"\nauth = { method = \"none\" }\n",
    );
    let app = lk.app_key("live").await;
    lk.put_secret("k", "live", "api-secret").await;
    let def = json!({
        "base_url": up.base_url,
        "auth": {"method": "api_key_header", "name": "X-Key", "key": {"secret": "k"}},
        "calls": {"hello": {"path": "/hello/<who>", "params": {"who": {"required": true}}}}
    });
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/api").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["source"], "api");
    assert_eq!(r.json()["definition"]["auth"]["key"], json!({"secret": "k"}));

    let r = lk.call(&app, "api", "hello", json!({"who": "ada"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.last().uri, "/hello/ada");
    assert_eq!(up.last().header("x-key"), Some("api-secret"));

    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/api").json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "replacing answers 200");
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/connectors").send().await.unwrap()).await;
    let names: Vec<String> =
        r.json()["connectors"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
    assert_eq!(names, ["api", "filed"]);

    // A literal secret is refused with the field and the fix, and never echoed.
    let bad = json!({"base_url": up.base_url, "auth": {"method": "basic", "username": "u", "password": "hunter2"}});
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/api").json(&bad).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (400, Some("config_invalid")), "{}", r.body);
    assert_eq!(r.json()["error"]["problems"][0]["field"], "auth.password");
    assert!(!r.body.contains("hunter2"));
    // The failed PUT changed nothing.
    assert_eq!(lk.call(&app, "api", "hello", json!({"who": "x"})).await.status, 200);

    let env_ref =
        json!({"base_url": up.base_url, "auth": {"method": "api_key_query", "name": "k", "key": {"env": "HOME"}}});
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/e").json(&env_ref).send().await.unwrap()).await;
    assert_eq!(r.error_code(), Some("config_invalid"));
    assert!(r.body.contains("from the vault only"), "{}", r.body);

    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/filed").json(&def).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (403, Some("forbidden")));
    assert!(r.body.contains("defined in the configuration file"), "{}", r.body);

    let r = Reply::read(lk.admin_req(Method::DELETE, "/v1/admin/connectors/api").send().await.unwrap()).await;
    assert_eq!(r.status, 204);
    let r = lk.call(&app, "api", "hello", json!({"who": "x"})).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")));
}
