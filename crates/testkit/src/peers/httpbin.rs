//! Real httpbin (PyPI `httpbin`) under gunicorn on loopback, one per test binary.
//!
//! `/get`, `/headers` and `/anything` echo the request; `/basic-auth/<u>/<p>`,
//! `/digest-auth/auth/<u>/<p>`, `/bearer` check credentials; `/redirect-to?url=...` redirects.
//! With PyPI `flasgger` beside it (required here), it serves its own Swagger 2.0 document at
//! `/spec.json`, which `latchkey import` tests read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::{PeerProcess, find_program, free_port};

const NOT_INSTALLED: &str = "httpbin is not installed: run `pip install httpbin gunicorn 'flasgger==0.9.7.1'` \
                             (or `bash scripts/install-test-peers`, which installs every peer)";

/// A running httpbin.
#[derive(Debug)]
pub struct Httpbin {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    /// The port httpbin listens on.
    pub port: u16,
    _process: PeerProcess,
}

impl Httpbin {
    /// `base_url` joined with `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// The process-wide httpbin, started on first use (blocking, a few seconds at most).
///
/// Panics with the install command if `python3` cannot import `httpbin` and `gunicorn`.
pub fn httpbin() -> &'static Httpbin {
    static HTTPBIN: OnceLock<Httpbin> = OnceLock::new();
    HTTPBIN.get_or_init(start)
}

fn start() -> Httpbin {
    let python = python_with_httpbin();
    let port = free_port();
    let dir = tempfile::Builder::new().prefix("latchkey-httpbin-").tempdir().expect("create httpbin scratch directory");
    let args: Vec<String> = [
        "-m",
        "gunicorn",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--workers",
        "2",
        "--threads",
        "8",
        "--graceful-timeout",
        "2",
        // The default control socket is one fixed path under ~/.gunicorn, shared by every
        // gunicorn on the machine.
        "--no-control-socket",
        "--access-logfile",
        "-",
        "httpbin:app",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let process = PeerProcess::spawn("httpbin", dir, &python, &args);
    process.wait_until_ready(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(60));
    Httpbin { base_url: format!("http://127.0.0.1:{port}"), port, _process: process }
}

/// The interpreter (`sys.executable`) of the first `python3` that imports httpbin, gunicorn
/// and flasgger.
fn python_with_httpbin() -> PathBuf {
    let Some(python3) = find_program("python3", &["/usr/bin/python3"]) else {
        panic!("{NOT_INSTALLED} (no python3 found)");
    };
    let output = Command::new(&python3)
        .args(["-c", "import sys, httpbin, gunicorn, flasgger; print(sys.executable)"])
        .output()
        .unwrap_or_else(|e| panic!("{NOT_INSTALLED} (cannot run {}: {e})", python3.display()));
    if !output.status.success() {
        panic!("{NOT_INSTALLED}\n({} says: {})", python3.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    let executable = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if executable.is_empty() { python3 } else { PathBuf::from(executable) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    #[allow(clippy::disallowed_methods)]
    async fn httpbin_answers_get() {
        let bin = httpbin();
        assert!(bin.base_url.starts_with("http://127.0.0.1:"));
        let client = reqwest::Client::new();
        let response = client.get(bin.url("/get?probe=1")).header("x-probe", "latchkey").send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["args"]["probe"], "1");
        assert_eq!(body["headers"]["X-Probe"], "latchkey");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn httpbin_is_one_process_for_all_callers() {
        let a = tokio::task::spawn_blocking(httpbin);
        let b = tokio::task::spawn_blocking(httpbin);
        assert!(std::ptr::eq(a.await.unwrap(), b.await.unwrap()));
    }
}
