//! A real browser for end-to-end flows: headless Debian Chromium (`/usr/bin/chromium`) driven by
//! `playwright-core` (npm), one fresh browser and profile per flow.
//!
//! The driver is `crates/testkit/peers/browser/flow.mjs` (install its package with
//! `npm ci --prefix crates/testkit/peers/browser`; Chromium with `apt-get install -y chromium`).
//! [`run_flow`] runs it as a child process: it opens `start_url`, optionally clicks one element
//! (`click`, a Playwright selector such as `"text=Connect"`), then walks through the provider's
//! pages until the browser's URL starts with `expect_prefix`:
//!
//! - a page with `input[name=login]`: types `login` and `password`, submits the form;
//! - a consent page (a form with a hidden `prompt=consent`, as oidc-provider's devInteractions
//!   has, or a submit button labelled Continue/Allow/Authorize/Accept/Approve/Consent/Yes):
//!   submits it;
//! - anything else: waits for the next navigation (redirects, scripts).
//!
//! Input (JSON): `start_url` and `expect_prefix` (required), `click`, `login` (default `alice`),
//! `password` (default `any-password`), `timeout_ms` (default 20000, browser start included),
//! `screenshot` (a PNG path, written on success and on failure) and `executable` (default
//! `/usr/bin/chromium`).
//!
//! [`run_flow`] blocks for a few seconds (about 2 to 4 on two cores); call it from async tests
//! with `tokio::task::spawn_blocking`.

use std::io::Read;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::process::find_program;

/// The browser the driver starts unless the input names another `executable`.
pub const CHROMIUM: &str = "/usr/bin/chromium";

const CHROMIUM_MISSING: &str =
    "Chromium is not installed: run `apt-get install -y chromium` (or `bash scripts/install-test-peers`)";
const PLAYWRIGHT_MISSING: &str = "playwright-core is not installed: run `npm ci --prefix crates/testkit/peers/browser`";

/// Default of `timeout_ms` (the driver's own limit for the whole flow).
const DEFAULT_TIMEOUT_MS: u64 = 20_000;
/// How much longer than `timeout_ms` the driver may take before it is killed: the driver reports
/// its own timeout (with the page) well before that, so this only catches a hung node or browser.
const HARD_TIMEOUT_SLACK: Duration = Duration::from_secs(30);

/// What a successful flow did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowResult {
    /// The URL the browser ended on (it starts with `expect_prefix`).
    pub final_url: String,
    /// Every main-frame navigation request, in order, redirect hops included: `start_url`
    /// first, the final URL last.
    pub steps: Vec<String>,
}

/// The directory holding `flow.mjs`, `package.json` and (once installed) `node_modules`.
pub fn driver_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers").join("browser")
}

/// Runs one browser flow described by `input` (see the module docs) and waits for it, at most
/// `timeout_ms` plus 30 seconds.
///
/// Returns `Err` with the driver's report (its error, the URL it was on, the visited URLs, the
/// first 2000 characters of the page and its stderr) when the flow fails or times out.
///
/// Panics with the install command if Chromium, node or playwright-core is missing.
pub fn run_flow(input: &Value) -> Result<FlowResult, String> {
    let timeout_ms = input["timeout_ms"].as_u64().unwrap_or(DEFAULT_TIMEOUT_MS);
    let (status, report, stderr) = drive("flow.mjs", input, timeout_ms)?;
    let steps: Vec<String> = report["steps"]
        .as_array()
        .map(|steps| steps.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let final_url = report["final_url"].as_str().unwrap_or_default().to_owned();

    if status.success() && report.get("error").is_none() {
        return Ok(FlowResult { final_url, steps });
    }
    let mut message = format!(
        "browser flow failed ({status}): {}\nfinal URL: {final_url}\nsteps:\n",
        report["error"].as_str().unwrap_or("(no error message)")
    );
    for step in &steps {
        message.push_str("  ");
        message.push_str(step);
        message.push('\n');
    }
    message.push_str("--- page (first 2000 characters) ---\n");
    message.push_str(report["html"].as_str().unwrap_or_default());
    if !stderr.trim().is_empty() {
        message.push_str("\n--- stderr ---\n");
        message.push_str(&tail(&stderr, 40));
    }
    Err(message)
}

/// Runs the driver `script` (in [`driver_dir`]) with `input` and waits for it, at most
/// `timeout_ms` plus 30 seconds: its exit status, its JSON report (the last line it printed)
/// and its standard error. Panics with the install command if something is missing.
fn drive(script: &str, input: &Value, timeout_ms: u64) -> Result<(std::process::ExitStatus, Value, String), String> {
    let dir = driver_dir();
    let script = dir.join(script);
    check_installed(&dir, &script, input["executable"].as_str());
    let Some(node) = find_program("node", &["/usr/bin/node", "/usr/local/bin/node"]) else {
        panic!("{PLAYWRIGHT_MISSING} (no node found)");
    };
    let hard_timeout = Duration::from_millis(timeout_ms) + HARD_TIMEOUT_SLACK;

    let mut child = Command::new(&node)
        .arg(&script)
        .arg(input.to_string())
        .current_dir(&dir)
        // The driver exits (closing the browser) when its stdin closes, i.e. when this process
        // goes away while a flow runs.
        .env("LATCHKEY_FLOW_LIFELINE", "1")
        // Its own process group, so that a hung driver is killed with its browser.
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("browser flow: cannot start {} {}: {e}", node.display(), script.display()));
    let lifeline = child.stdin.take();
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));

    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= hard_timeout => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("browser flow: waiting for the driver failed: {e}"),
        }
    };
    let status = match status {
        Some(status) => status,
        None => {
            // `kill -KILL -- -<pgid>` reaches the browser too; then make sure of node itself.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            drop(lifeline);
            let stderr = stderr.join().unwrap_or_default();
            return Err(format!(
                "browser flow: the driver did not finish within {hard_timeout:?} and was killed\n--- stderr ---\n{}",
                tail(&stderr, 40)
            ));
        }
    };
    drop(lifeline);
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();

    let report = stdout.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or_default();
    match serde_json::from_str(report) {
        Ok(report) => Ok((status, report, stderr)),
        Err(e) => Err(format!(
            "browser flow: the driver ({status}) printed no JSON report ({e})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            tail(&stdout, 20),
            tail(&stderr, 40)
        )),
    }
}

/// Runs a scripted visit with `steps.mjs` (see its header for the steps): returns its report
/// (`pages` with each page's URL, screenshot and HTML, `requests`, `foreign`, `walks`), or
/// `Err` with the failing step, the page it was on and the driver's standard error.
///
/// Blocks for several seconds: call it from async tests with `tokio::task::spawn_blocking`.
/// Panics with the install command if Chromium, node or playwright-core is missing.
pub fn run_steps(input: &Value) -> Result<Value, String> {
    let timeout_ms = input["timeout_ms"].as_u64().unwrap_or(60_000);
    let (status, report, stderr) = drive("steps.mjs", input, timeout_ms)?;
    if status.success() && report.get("error").is_none() {
        return Ok(report);
    }
    let last = report["pages"].as_array().and_then(|p| p.last()).cloned().unwrap_or_default();
    let html = last["html"].as_str().unwrap_or_default();
    Err(format!(
        "browser steps failed ({status}) at step {}: {}\nURL: {}\n--- page ---\n{}\n--- stderr ---\n{}",
        report["step"],
        report["error"].as_str().unwrap_or("(no error message)"),
        last["url"].as_str().unwrap_or_default(),
        html.chars().take(4000).collect::<String>(),
        tail(&stderr, 40)
    ))
}

/// Panics with the install command if the browser or the driver's npm package is missing.
fn check_installed(dir: &Path, script: &Path, executable: Option<&str>) {
    match executable {
        Some(path) if !Path::new(path).is_file() => panic!("{CHROMIUM_MISSING} ({path} is missing)"),
        Some(_) => {}
        None if !Path::new(CHROMIUM).is_file() => panic!("{CHROMIUM_MISSING} ({CHROMIUM} is missing)"),
        None => {}
    }
    if !script.is_file() {
        panic!("browser flow: the driver {} is missing", script.display());
    }
    if !dir.join("node_modules").join("playwright-core").join("package.json").is_file() {
        panic!("{PLAYWRIGHT_MISSING} ({} has no node_modules/playwright-core)", dir.display());
    }
}

/// Reads `pipe` to the end on its own thread (so that neither pipe can fill up and block the
/// driver), lossily as UTF-8.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// The last `max_lines` lines of `text`.
fn tail(text: &str, max_lines: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(max_lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    use axum::Router;
    use axum::response::Html;
    use axum::routing::get;
    use reqwest::StatusCode;
    use serde_json::json;
    use url::Url;

    /// RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    /// Serves `/start` (a page with a "Connect" link to `connect_to`) and `/done` on `listener`.
    fn serve_app_pages(listener: tokio::net::TcpListener, connect_to: &str) {
        let href = connect_to.replace('&', "&amp;").replace('"', "&quot;");
        let start = format!("<!DOCTYPE html><html><body><h1>Test app</h1><a href=\"{href}\">Connect</a></body></html>");
        let app = Router::new()
            .route("/start", get(move || async move { Html(start) }))
            .route("/done", get(|| async { Html("<!DOCTYPE html><html><body><p>done</p></body></html>") }));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn browser_logs_in_and_consents_at_oidc_provider() {
        let oidc = tokio::task::spawn_blocking(crate::peers::oidc::oidc).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let done = format!("http://127.0.0.1:{port}/done");
        let client = oidc.register("none", &["authorization_code"], &[&done]).await;

        let mut authorize = Url::parse(&oidc.authorize_url).unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", &done)
            .append_pair("scope", "openid")
            .append_pair("state", "xyz")
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256");
        serve_app_pages(listener, authorize.as_str());

        let screenshot = tempfile::Builder::new().suffix(".png").tempfile().unwrap();
        let input = json!({
            "start_url": format!("http://127.0.0.1:{port}/start"),
            "click": "text=Connect",
            "login": "alice",
            "password": "any",
            "expect_prefix": done,
            "timeout_ms": 20000,
            "screenshot": screenshot.path(),
        });
        let started = Instant::now();
        let result =
            tokio::task::spawn_blocking(move || run_flow(&input)).await.unwrap().unwrap_or_else(|e| panic!("{e}"));
        let elapsed = started.elapsed();

        let final_url = Url::parse(&result.final_url).unwrap();
        assert!(result.final_url.starts_with(&format!("{done}?")), "{result:?}");
        assert!(result.final_url.contains("code="), "{result:?}");
        let param = |name: &str| final_url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        assert_eq!(param("state").as_deref(), Some("xyz"), "{result:?}");
        assert_eq!(param("iss").as_deref(), Some(oidc.issuer.as_str()), "{result:?}");
        assert_eq!(result.steps.first().map(String::as_str), Some(format!("http://127.0.0.1:{port}/start").as_str()));
        assert_eq!(result.steps.last(), Some(&result.final_url));
        assert!(result.steps.iter().any(|s| s.contains("/interaction/")), "{result:?}");
        assert!(std::fs::metadata(screenshot.path()).unwrap().len() > 0, "no screenshot written");

        // The code is real: it redeems with the PKCE verifier, for alice.
        let code = param("code").unwrap();
        let response = client
            .authenticate(
                crate::latchkey::test_client().post(&oidc.token_url),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &done),
                    ("code_verifier", VERIFIER),
                ],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let tokens: Value = response.json().await.unwrap();
        let me: Value = crate::latchkey::test_client()
            .get(&oidc.userinfo_url)
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["sub"], "alice", "{me}");
        eprintln!("browser flow took {elapsed:?} ({} steps)", result.steps.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn browser_flow_that_never_arrives_reports_the_page() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        serve_app_pages(listener, "/done");
        let input = json!({
            "start_url": format!("http://127.0.0.1:{port}/start"),
            "click": "text=Connect",
            "expect_prefix": format!("http://127.0.0.1:{port}/never"),
            "timeout_ms": 8000,
        });
        let err = tokio::task::spawn_blocking(move || run_flow(&input)).await.unwrap().expect_err("never arrives");
        assert!(err.contains("timed out after 8000 ms"), "{err}");
        assert!(err.contains(&format!("final URL: http://127.0.0.1:{port}/done")), "{err}");
        assert!(err.contains("<p>done</p>"), "{err}");
    }

    #[test]
    #[should_panic(expected = "Chromium is not installed: run `apt-get install -y chromium`")]
    fn a_missing_browser_panics_with_the_install_command() {
        let _ = run_flow(&json!({
            "start_url": "http://127.0.0.1:9/",
            "expect_prefix": "http://127.0.0.1:9/done",
            "executable": "/nonexistent/chromium",
        }));
    }
}
