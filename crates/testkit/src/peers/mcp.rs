//! The official MCP Python SDK (PyPI `mcp`, [`MCP_VERSION`]) as a client of Latchkey's `/mcp`:
//! `crates/testkit/peers/mcp/client.py` connects with `streamable_http_client` over an httpx
//! client carrying the bearer, initializes a `ClientSession`, lists the tools and calls the
//! ones asked for. Blocks: call it from async tests through `tokio::task::spawn_blocking`.

use std::io::Write as _;
use std::process::{Command, Stdio};

use serde_json::Value;

/// The SDK release `client.py` is written against.
pub const MCP_VERSION: &str = "2.3.0";

const MISSING: &str =
    "the MCP Python SDK is not installed: run `pip install 'mcp==2.3.0'` (or `bash scripts/install-test-peers`)";

/// Runs the client with `request` (`{"url", "token", "calls": [{"name", "arguments"}]}`) and
/// returns what it printed: `{"initialized", "tools", "results"}`, or `{"error"}`.
pub fn run(request: &Value) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/mcp/client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 cannot be started ({e}): {MISSING}"));
    child
        .stdin
        .take()
        .map(|mut s| s.write_all(request.to_string().as_bytes()))
        .transpose()
        .unwrap_or_else(|e| panic!("writing to the MCP client: {e}"));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("the MCP client: {e}"));
    assert_ne!(out.status.code(), Some(3), "{MISSING}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the MCP client printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs `crates/testkit/peers/mcp/oauth_client.py` with `request` (`{"url", "client_name",
/// "calls"}`): the SDK signs a user in by itself (discovery, registration, PKCE). When it asks
/// the user to open the authorization URL, `authorize` is called with it (drive a browser
/// there, to the SDK's loopback redirect URI); an error from it stops the client and panics.
/// Returns the client's last line: `{"initialized", "tools", "results", "tokens", "client",
/// "received"}`, or `{"error"}`.
pub fn run_oauth(request: &Value, authorize: impl FnOnce(&str) -> Result<(), String>) -> Value {
    use std::io::BufRead as _;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/mcp/oauth_client.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3 cannot be started ({e}): {MISSING}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(request.to_string().as_bytes()).unwrap_or_else(|e| panic!("writing to the MCP client: {e}"));
    }
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("the MCP client has no stdout"));
    let mut lines = std::io::BufReader::new(stdout).lines();
    let mut authorize = Some(authorize);
    let mut last = None;
    for line in lines.by_ref() {
        let line = line.unwrap_or_else(|e| panic!("reading the MCP client: {e}"));
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("the MCP client printed no JSON ({e}): {line}"));
        if let Some(url) = v["authorize"].as_str() {
            let Some(f) = authorize.take() else { panic!("the MCP client asked for authorization twice") };
            if let Err(e) = f(url) {
                let _ = child.kill();
                let out = child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
                panic!(
                    "the browser did not complete the authorization: {e}\nclient's stderr: {}",
                    out.unwrap_or_default()
                );
            }
            continue;
        }
        last = Some(v);
    }
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("the MCP client: {e}"));
    assert_ne!(out.status.code(), Some(3), "{MISSING}");
    last.unwrap_or_else(|| panic!("the MCP client printed nothing: {}", String::from_utf8_lossy(&out.stderr)))
}
