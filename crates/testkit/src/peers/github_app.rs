//! A GitHub App's installation-token endpoint (`POST /app/installations/{id}/access_tokens`)
//! and an installation's resource (`GET /installation/repositories`), as GitHub documents
//! them, in Flask under gunicorn, one per test binary (`peers/github_app/server.py`). The app
//! JWT is verified by PyJWT (PyPI), not by anything Latchkey wrote: RS256 against the app's
//! keys, `iss` the app id, `iat` and `exp` present, `exp` at most 10 minutes ahead.
//!
//! Each test makes its own installation ([`GitHubApp::installation`]) with the token lifetime
//! it wants and reads its counters ([`GitHubApp::stats`]).

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use super::authlib::{raw_http, wait_for_app};
use super::process::{PeerProcess, find_program, free_port};

const NOT_INSTALLED: &str = "Flask, gunicorn or PyJWT is not installed: run `pip install flask gunicorn 'PyJWT[crypto]==2.15.1'` (or `bash scripts/install-test-peers`)";

/// A running GitHub App mimic.
#[derive(Debug)]
pub struct GitHubApp {
    /// `http://127.0.0.1:<port>`: GitHub's API root (`https://api.github.com`).
    pub base_url: String,
    pub port: u16,
    /// The app's id, the JWT's `iss`.
    pub app_id: String,
    /// The app's private key, PKCS#1 PEM as GitHub hands it out.
    pub key_pem: String,
    /// The app's second key (GitHub allows two while one is rotated).
    pub second_key_pem: String,
    /// A key that is none of the app's.
    pub unregistered_key_pem: String,
    process: PeerProcess,
}

/// An installation's counters, since it was made.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Token requests (verified or not).
    pub token_requests: u64,
    /// Token requests refused (401).
    pub refused: u64,
    /// The claims of each JWT that got a token, with the key that verified it (`first` or
    /// `second`) and when it arrived (Unix seconds, the peer's clock).
    pub jwts: Vec<serde_json::Value>,
    /// Calls of the resource with one of its live tokens, and with an expired one.
    pub resource_ok: u64,
    pub resource_refused: u64,
}

impl GitHubApp {
    /// Makes an installation whose tokens live `token_lifetime_s`; returns its id.
    pub fn installation(&self, token_lifetime_s: u64) -> u64 {
        let body = serde_json::json!({ "token_lifetime_s": token_lifetime_s }).to_string();
        let answer = self.request("POST", "/test/installations", Some(body.as_bytes()));
        answer["installation_id"].as_u64().unwrap_or_else(|| panic!("github_app: no installation id in {answer}"))
    }

    /// The installation's token endpoint.
    pub fn token_url(&self, installation: u64) -> String {
        format!("{}/app/installations/{installation}/access_tokens", self.base_url)
    }

    /// An installation's counters. A plain blocking request: safe inside async tests.
    pub fn stats(&self, installation: u64) -> Stats {
        let v = self.request("GET", &format!("/test/installations/{installation}"), None);
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("github_app: no {k} in {v}"));
        Stats {
            token_requests: n("token_requests"),
            refused: n("refused"),
            jwts: v["jwts"].as_array().cloned().unwrap_or_default(),
            resource_ok: n("resource_ok"),
            resource_refused: n("resource_refused"),
        }
    }

    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> serde_json::Value {
        let (status, text) = raw_http(self.port, method, path, body.map(|b| ("application/json", b)))
            .unwrap_or_else(|e| self.process.fail(&format!("did not answer {method} {path}: {e}")));
        assert_eq!(status, 200, "github_app {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("github_app {path}: not JSON ({e}): {text}"))
    }
}

/// The process-wide GitHub App mimic, started on first use. Panics with the install command
/// if `python3` cannot import Flask, gunicorn, PyJWT and cryptography.
pub fn github_app() -> &'static GitHubApp {
    static PEER: OnceLock<GitHubApp> = OnceLock::new();
    PEER.get_or_init(start)
}

fn start() -> GitHubApp {
    let python = python_with_pyjwt();
    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers").join("github_app");
    let port = free_port();
    let base_url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::Builder::new().prefix("latchkey-github-app-").tempdir().expect("create a scratch directory");
    let dir_path = dir.path().to_path_buf();
    let app_id = "123456".to_owned();
    let config = serde_json::json!({ "app_id": app_id, "dir": dir_path });
    let config_path = dir_path.join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
    let args: Vec<String> = [
        "-B",
        "-m",
        "gunicorn",
        "--bind",
        &format!("127.0.0.1:{port}"),
        // One worker: the tokens live in its memory.
        "--workers",
        "1",
        "--threads",
        "8",
        "--graceful-timeout",
        "2",
        "--no-control-socket",
        "--chdir",
        &script_dir.display().to_string(),
        "--env",
        &format!("LATCHKEY_GITHUB_APP_CONFIG={}", config_path.display()),
        "--access-logfile",
        "-",
        "server:app",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let process = PeerProcess::spawn("github_app", dir, &python, &args);
    wait_for_app(&process, port, Duration::from_secs(60));
    let read = |name: &str| {
        let path = dir_path.join(format!("{name}.pem"));
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| process.fail(&format!("did not write {}: {e}", path.display())))
    };
    GitHubApp {
        base_url,
        port,
        app_id,
        key_pem: read("first"),
        second_key_pem: read("second"),
        unregistered_key_pem: read("unregistered"),
        process,
    }
}

fn python_with_pyjwt() -> std::path::PathBuf {
    let Some(python3) = find_program("python3", &["/usr/bin/python3"]) else {
        panic!("{NOT_INSTALLED} (no python3 found)");
    };
    let output = std::process::Command::new(&python3)
        .args(["-c", "import sys, flask, gunicorn, jwt, cryptography; print(sys.executable)"])
        .output()
        .unwrap_or_else(|e| panic!("{NOT_INSTALLED} (cannot run {}: {e})", python3.display()));
    if !output.status.success() {
        panic!("{NOT_INSTALLED}\n({} says: {})", python3.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    let executable = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if executable.is_empty() { python3 } else { std::path::PathBuf::from(executable) }
}
