//! Crash safety around a refresh-token rotation (SPEC §12.7, SECURITY S24): the process is
//! aborted right after the provider answered, and right after the new tokens were stored. On
//! restart the stored refresh token is the newest one the provider accepts, or Latchkey
//! recovers through the grant; never a silent dead token.

use latchkey_testkit::fake_oauth::FakeOAuth;
use reqwest::Method;
use serde_json::json;

use super::*;

fn restart(config: &str, data: &std::path::Path, fault: Option<&str>) -> Latchkey {
    let mut env = Vec::new();
    if let Some(f) = fault {
        env.push(("LATCHKEY_FAULT".to_owned(), f.to_owned()));
    }
    Latchkey::start_with(
        bin(),
        Options { config: config.to_owned(), data_dir: Some(data.to_path_buf()), env, ..Options::default() },
    )
    .unwrap_or_else(|out| panic!("restart failed:\n{out}"))
}

async fn call_status(lk: &Latchkey, app: &str) -> Option<u16> {
    let resp = lk
        .http
        .post(lk.url("/v1/connectors/api/calls/echo"))
        .bearer_auth(app)
        .json(&json!({"params": {}}))
        .send()
        .await;
    resp.ok().map(|r| r.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_around_a_rotation_never_leaves_a_dead_refresh_token() {
    let fake = FakeOAuth::start().await;
    fake.set_expires_in(60);
    let config = format!(
        "[connectors.api]\nbase_url = \"{base}\"\nrefresh_skew_s = 60\ntimeout_ms = 1000\n\
         auth = {{ method = \"oauth2_password\", token_url = \"{token}\", username = \"ada\", password = {{ secret = \"pw\" }}, client_id = \"app\" }}\n\
         [connectors.api.calls.echo]\npath = \"/api/echo\"\n",
        base = fake.base_url,
        token = fake.token_url
    );
    let mut lk = Latchkey::start(bin(), &config);
    let admin = lk.admin().to_owned();
    lk.put_secret("pw", "live", "pw").await;
    let app = lk.app_key("live").await;
    assert_eq!(call_status(&lk, &app).await, Some(200));
    let _work = lk.keep_work_dir();
    let data = lk.data_dir.clone();
    lk.kill();

    // 1. Killed after the provider rotated, before the new tokens were stored.
    let mut lk = restart(&config, &data, Some("after_token_response"));
    assert_eq!(call_status(&lk, &app).await, None, "the process should have died mid-call");
    assert!(lk.output().contains("fault injected at after_token_response"), "{}", lk.output());
    lk.kill();
    assert_eq!(fake.reused_refresh_tokens(), 0);

    // On restart the dead process's lease still runs for a few seconds (the still-valid token
    // is served meanwhile, and the credential shows as `refreshing`); once it ran out without
    // being given back, the credential shows `refresh_outcome_unknown` (SECURITY S24). The next
    // use tries the stored refresh token, which turns out stale: the provider refuses it once,
    // and Latchkey recovers through the grant instead of leaving a dead credential.
    let lk = restart(&config, &data, None);
    assert_eq!(call_status(&lk, &app).await, Some(200));
    let state = async || {
        let r = Reply::read(lk.http.get(lk.url("/v1/admin/tokens")).bearer_auth(&admin).send().await.unwrap()).await;
        r.json()["tokens"][0]["state"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(state().await, "refreshing");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        match state().await.as_str() {
            "refresh_outcome_unknown" => break,
            "refreshing" => assert!(std::time::Instant::now() < deadline, "the dead lease never ran out"),
            other => panic!("unexpected state {other}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(fake.reused_refresh_tokens(), 0, "nothing was tried before the next use");
    assert_eq!(call_status(&lk, &app).await, Some(200));
    assert_eq!(fake.reused_refresh_tokens(), 1);
    let events = async |kind: &str| {
        let path = format!("/v1/admin/events?kind={kind}");
        let r = Reply::read(lk.http.get(lk.url(&path)).bearer_auth(&admin).send().await.unwrap()).await;
        r.json()["events"].as_array().unwrap().clone()
    };
    assert_eq!(events("token.refresh_outcome_unknown").await.len(), 1);
    let recovered = events("token.recovered").await;
    assert_eq!(recovered.len(), 1, "{recovered:?}");
    assert!(recovered[0].to_string().contains("refresh_outcome_unknown"), "{recovered:?}");
    let grants: Vec<String> = fake.calls().iter().map(|c| c.grant().to_owned()).collect();
    assert_eq!(grants[..4], ["password", "refresh_token", "refresh_token", "password"], "{grants:?}");
    let r = Reply::read(lk.http.get(lk.url("/v1/admin/tokens")).bearer_auth(&admin).send().await.unwrap()).await;
    assert_eq!(r.json()["tokens"][0]["state"], "ok", "{}", r.body);
    let r = Reply::read(
        lk.http.get(lk.url("/v1/admin/events?kind=token.refresh_refused")).bearer_auth(&admin).send().await.unwrap(),
    )
    .await;
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 1, "{}", r.body);
    drop(lk);

    // 2. Killed right after the new tokens were stored: the newest token is on disk.
    let mut lk = restart(&config, &data, Some("after_token_commit"));
    assert_eq!(call_status(&lk, &app).await, None);
    assert!(lk.output().contains("fault injected at after_token_commit"));
    lk.kill();
    let newest = fake.current_refresh_token();
    let lk = restart(&config, &data, None);
    assert_eq!(call_status(&lk, &app).await, Some(200));
    assert_eq!(fake.reused_refresh_tokens(), 1, "the committed refresh token was not the newest");
    let r = Reply::read(
        lk.http
            .get(lk.url("/v1/admin/events?kind=token.refresh_outcome_unknown"))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 1, "a committed refresh is not unknown: {}", r.body);
    let last = fake.calls().last().unwrap().clone();
    assert_eq!(last.grant(), "refresh_token");
    assert_eq!(last.form.get("refresh_token"), newest.as_ref());
    let _ = Method::GET;
}
