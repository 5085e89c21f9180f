//! What the server does with its inbound side: `SIGHUP` does not stop it.

use std::time::{Duration, Instant};

use super::*;

/// Generous: every wait below ends as soon as what it waits for happens.
const PATIENCE: Duration = Duration::from_secs(60);

fn start(config: &str) -> Latchkey {
    Latchkey::start(bin(), config)
}

#[tokio::test]
async fn sighup_does_not_stop_the_server() {
    let lk = start("");
    let sent = std::process::Command::new("kill").args(["-HUP", &lk.pid().to_string()]).status();
    assert!(sent.as_ref().is_ok_and(|s| s.success()), "kill -HUP failed: {sent:?}");
    let deadline = Instant::now() + PATIENCE;
    while !lk.output().contains("SIGHUP") {
        assert!(Instant::now() < deadline, "nothing logged about SIGHUP:\n{}", lk.output());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        lk.output().contains("reload is not supported"),
        "the SIGHUP line does not say what to do:\n{}",
        lk.output()
    );
    let r = lk.http.get(lk.url("/healthz")).send().await.expect("served after SIGHUP");
    assert_eq!(r.status(), 200);
}
