//! SECURITY S16: connectors defined through the admin API reach only public addresses, checked
//! after DNS resolution; the configuration file's connectors, or `[server]
//! api_connectors_private_egress = true`, may reach private ones.

use latchkey_testkit::fake_oauth::FakeOAuth;
use latchkey_testkit::recorder::Recorder;
use reqwest::Method;
use serde_json::json;

use super::*;

async fn put_connector(lk: &Latchkey, name: &str, def: serde_json::Value) {
    let path = format!("/v1/admin/connectors/{name}");
    let r = Reply::read(lk.admin_req(Method::PUT, &path).json(&def).send().await.unwrap()).await;
    assert_eq!(r.status, 201, "{}", r.body);
}

async fn proxy(lk: &Latchkey, app: &str, connector: &str) -> Reply {
    Reply::read(lk.http.get(lk.url(&format!("/v1/proxy/{connector}/x"))).bearer_auth(app).send().await.unwrap()).await
}

/// A write the egress rules refuse: 422 `egress_refused`, naming the field, and nothing stored.
async fn refused_write(lk: &Latchkey, name: &str, def: serde_json::Value, field: &str) -> String {
    let path = format!("/v1/admin/connectors/{name}");
    let r = Reply::read(lk.admin_req(Method::PUT, &path).json(&def).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (422, Some("egress_refused")), "{name}: {}", r.body);
    assert_eq!(r.json()["error"]["field"], field, "{}", r.body);
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with(&format!("{field}: ")), "names the field: {message}");
    assert!(message.contains("api_connectors_private_egress"), "says how to allow it: {message}");
    let r = Reply::read(lk.admin_req(Method::GET, &path).send().await.unwrap()).await;
    assert_eq!(r.status, 404, "not stored: {}", r.body);
    message
}

#[tokio::test]
async fn an_api_connector_that_reaches_loopback_is_refused_when_written() {
    let up = Recorder::start().await;
    let port = up.base_url.rsplit(':').next().unwrap().to_owned();
    let lk = Latchkey::start(
        bin(),
        &format!("[connectors.filed]\nbase_url = \"{}\"\nauth = {{ method = \"none\" }}\n", up.base_url),
    );
    let app = lk.app_key("live").await;
    let by_name = json!({"base_url": format!("http://localhost:{port}"), "auth": {"method": "none"}});
    let by_ip = json!({"base_url": up.base_url, "auth": {"method": "none"}});
    for (name, def) in [("byname", by_name), ("byip", by_ip)] {
        let message = refused_write(&lk, name, def, "base_url").await;
        assert!(
            message.contains("resolves only to non-public addresses") && message.contains("127.0.0.1"),
            "{message}"
        );
    }
    // The file's connector to the same upstream is the operator's choice, and works.
    assert_eq!(proxy(&lk, &app, "filed").await.status, 200);
    assert_eq!(up.count(), 1);
}

/// A connector written while private egress was allowed, served after it no longer is: the
/// check at connect time (which also catches a name rebound after the write) refuses the call.
#[tokio::test]
async fn an_api_connector_that_reaches_loopback_is_refused_when_called() {
    let up = Recorder::start().await;
    let port = up.base_url.rsplit(':').next().unwrap().to_owned();
    let mut lk = Latchkey::start(bin(), "[server]\napi_connectors_private_egress = true\n");
    let app = lk.app_key("live").await;
    put_connector(&lk, "byname", json!({"base_url": format!("http://localhost:{port}"), "auth": {"method": "none"}}))
        .await;
    put_connector(&lk, "byip", json!({"base_url": up.base_url, "auth": {"method": "none"}})).await;
    let work = lk.keep_work_dir();
    lk.kill();
    let lk = Latchkey::start_with(
        bin(),
        latchkey_testkit::latchkey::Options { data_dir: Some(lk.data_dir.clone()), ..Default::default() },
    )
    .unwrap();
    for connector in ["byname", "byip"] {
        let r = proxy(&lk, &app, connector).await;
        assert_eq!((r.status, r.error_code()), (502, Some("upstream_unreachable")), "{connector}: {}", r.body);
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            message.contains("resolves only to non-public addresses") && message.contains("127.0.0.1"),
            "{message}"
        );
    }
    assert_eq!(up.count(), 0, "nothing reached the loopback upstream");
    drop(work);
}

#[tokio::test]
async fn the_server_can_allow_api_connectors_private_addresses() {
    let up = Recorder::start().await;
    let port = up.base_url.rsplit(':').next().unwrap().to_owned();
    let lk = Latchkey::start(bin(), "[server]\napi_connectors_private_egress = true\n");
    let app = lk.app_key("live").await;
    put_connector(&lk, "byname", json!({"base_url": format!("http://localhost:{port}"), "auth": {"method": "none"}}))
        .await;
    let r = proxy(&lk, &app, "byname").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn an_api_connector_cannot_send_its_credentials_to_a_private_token_endpoint() {
    let fake = FakeOAuth::start().await;
    let lk = Latchkey::start(bin(), "");
    lk.put_secret("secret", "live", "client-secret").await;
    let by_name = fake.token_url.replace("127.0.0.1", "localhost");
    for (name, token_url) in [("literal", fake.token_url.clone()), ("byname", by_name)] {
        let def = json!({
            "base_url": "https://api.example.com",
            "auth": {"method": "oauth2_client_credentials", "token_url": token_url,
                     "client_id": "app", "client_secret": {"secret": "secret"}},
        });
        let message = refused_write(&lk, name, def, "auth.token_url").await;
        assert!(message.contains("non-public addresses"), "{name}: {message}");
    }
    assert_eq!(fake.token_requests(), 0, "the client secret never left for a private address");
}
