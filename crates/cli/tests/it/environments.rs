//! Live and dev: the key's environment chooses the secret's value; dev falls back to live.

use latchkey_testkit::recorder::Recorder;
use serde_json::json;

use super::*;

const CALLS: &str = "[connectors.up.calls.ping]\npath = \"/ping\"\n\
    [connectors.other]\nbase_url = \"BASE\"\nauth = { method = \"api_key_header\", name = \"X-Other\", key = { secret = \"other\" } }\n\
    [connectors.other.calls.ping]\npath = \"/other\"\n";

#[tokio::test]
async fn each_key_sends_its_environments_value() {
    let up = Recorder::start().await;
    let lk = with_connector(
        &up.base_url,
        r#"{ method = "api_key_header", name = "X-Api-Key", key = { secret = "k" } }"#,
        &CALLS.replace("BASE", &up.base_url),
    );
    lk.put_secret("k", "live", "live-value").await;
    lk.put_secret("k", "dev", "dev-value").await;
    lk.put_secret("other", "live", "other-live").await;
    let live = lk.app_key("live").await;
    let dev = lk.app_key("dev").await;
    assert!(live.starts_with("lk_live_") && dev.starts_with("lk_dev_"));

    assert_eq!(lk.call(&live, "up", "ping", json!({})).await.status, 200);
    assert_eq!(up.last().header("x-api-key"), Some("live-value"));
    assert_eq!(lk.call(&dev, "up", "ping", json!({})).await.status, 200);
    assert_eq!(up.last().header("x-api-key"), Some("dev-value"));
    // No dev value: dev falls back to live.
    assert_eq!(lk.call(&dev, "other", "ping", json!({})).await.status, 200);
    assert_eq!(up.last().header("x-other"), Some("other-live"));
    // A live key never sees a dev value, whatever was set last.
    lk.put_secret("k", "dev", "dev-value-2").await;
    assert_eq!(lk.call(&live, "up", "ping", json!({})).await.status, 200);
    assert_eq!(up.last().header("x-api-key"), Some("live-value"));
}

#[tokio::test]
async fn a_dev_only_secret_is_not_used_by_live_keys() {
    let up = Recorder::start().await;
    let lk = with_connector(
        &up.base_url,
        r#"{ method = "api_key_header", name = "X-Api-Key", key = { secret = "k" } }"#,
        "[connectors.up.calls.ping]\npath = \"/ping\"\n",
    );
    lk.put_secret("k", "dev", "dev-only").await;
    let live = lk.app_key("live").await;
    let dev = lk.app_key("dev").await;
    let r = lk.call(&live, "up", "ping", json!({})).await;
    assert_eq!((r.status, r.error_code()), (424, Some("secret_missing")), "{}", r.body);
    assert_eq!(up.count(), 0, "a request went out without its live credential");
    assert_eq!(lk.call(&dev, "up", "ping", json!({})).await.status, 200);
    assert_eq!(up.last().header("x-api-key"), Some("dev-only"));
}

#[tokio::test]
async fn app_keys_of_either_environment_cannot_reach_the_admin_api() {
    let lk = Latchkey::start(bin(), "");
    lk.put_secret("live_only", "live", "x").await;
    for env in ["live", "dev"] {
        let key = lk.app_key(env).await;
        for (method, path) in [
            (reqwest::Method::GET, "/v1/admin/secrets"),
            (reqwest::Method::PUT, "/v1/admin/secrets/live_only"),
            (reqwest::Method::DELETE, "/v1/admin/secrets/live_only"),
            (reqwest::Method::POST, "/v1/admin/keys"),
        ] {
            let r = Reply::read(
                lk.http
                    .request(method, lk.url(path))
                    .bearer_auth(&key)
                    .json(&json!({"value": "y", "environment": "live"}))
                    .send()
                    .await
                    .unwrap(),
            )
            .await;
            assert_eq!((r.status, r.error_code()), (403, Some("forbidden")), "{env} {path}");
        }
    }
}
