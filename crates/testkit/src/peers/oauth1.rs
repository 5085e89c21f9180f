//! A real OAuth 1.0a provider: oauthlib's server side (PyPI `oauthlib`) under Flask and
//! gunicorn on loopback, one per test binary (`peers/oauth1/server.py`). oauthlib checks every
//! signature (HMAC-SHA1, HMAC-SHA256, RSA-SHA1, PLAINTEXT; header, query or form body).
//!
//! - Consumer [`OAuth1Peer::consumer_key`] has a secret per environment
//!   ([`OAuth1Peer::consumer_secret`]); a request's environment is its token's (`live` without
//!   a token). Consumer [`OAuth1Peer::rsa_consumer_key`] signs with RSA-SHA1, with
//!   [`OAuth1Peer::rsa_private_pem`].
//! - Two-legged tokens: [`OAuth1Peer::token`] per consumer and environment.
//! - `/api/echo` answers a verified request with `{"client_key", "token"` (a label: `live`,
//!   `dev`, `rsa-live`, `rsa-dev`, or `user:<name>` (`user:<name>@dev`) for a three-legged
//!   token)`,
//!   "signature_method", "signature_type"` (`AUTH_HEADER`, `QUERY` or `BODY`)`, "params"}` and
//!   anything else with `401 {"error": "invalid_request"}`.
//! - Three-legged: `/oauth/request_token`, `/oauth/authorize` (approves at once for
//!   [`OAuth1Peer::user`] and redirects to the callback), `/oauth/access_token`. A request
//!   token request (which has no token to tell its environment) is checked with the live
//!   consumer secret, then the dev one; its tokens keep the environment that verified it
//!   (labels `user:<name>` and `user:<name>@dev`). [`OAuth1Peer::issued`] tells the secrets
//!   the last flow was given.
//! - Revocation: an echo with `?mark=M` remembers its token; [`OAuth1Peer::revoke`] revokes it,
//!   and the token is then answered `401` with an `oauth_problem` (the OAuth Problem Reporting
//!   extension) in `WWW-Authenticate` or in a form body.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::authlib::raw_http;
use super::process::{PeerProcess, find_program, free_port};

const NOT_INSTALLED: &str = "oauthlib is not installed: run `pip install oauthlib==3.3.1 flask gunicorn cryptography PyJWT` (or `bash scripts/install-test-peers`)";

/// A two-legged access token and its secret.
#[derive(Debug, Clone)]
pub struct PeerToken {
    pub token: String,
    pub secret: String,
}

/// A running oauthlib provider.
#[derive(Debug)]
pub struct OAuth1Peer {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    pub port: u16,
    /// The HMAC and PLAINTEXT consumer.
    pub consumer_key: String,
    /// Its secret in `live` and in `dev` (canaries).
    pub consumer_secret: [String; 2],
    /// The RSA-SHA1 consumer.
    pub rsa_consumer_key: String,
    /// Its private key, PKCS#8 PEM.
    pub rsa_private_pem: String,
    /// Two-legged tokens: `[consumer live, consumer dev, rsa live, rsa dev]`.
    pub tokens: [PeerToken; 4],
    /// Whom the authorize page approves for.
    pub user: String,
    process: PeerProcess,
}

impl OAuth1Peer {
    /// `base_url` joined with `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The two-legged token of the HMAC consumer (`rsa = false`) or the RSA one, in `env`.
    pub fn token(&self, rsa: bool, env: &str) -> &PeerToken {
        &self.tokens[usize::from(rsa) * 2 + usize::from(env == "dev")]
    }

    /// The consumer secret in `env`.
    pub fn secret(&self, env: &str) -> &str {
        &self.consumer_secret[usize::from(env == "dev")]
    }

    /// Every secret the peer handed out (for canary scans).
    pub fn canaries(&self) -> Vec<String> {
        let mut v = self.consumer_secret.to_vec();
        for t in &self.tokens {
            v.push(t.token.clone());
            v.push(t.secret.clone());
        }
        v
    }

    /// `{"ok", "refused", "request_token", "access_token"}` counts since the start.
    pub fn stats(&self) -> serde_json::Value {
        self.get_json("/test/stats")
    }

    /// The secrets the provider issued in the last three-legged flow: `{"request_token_secret",
    /// "access_token", "access_token_secret"}` (for canary scans).
    pub fn issued(&self) -> serde_json::Value {
        self.get_json("/test/issued")
    }

    /// Revokes the token that signed the last `/api/echo?mark={mark}`: it is answered `401`
    /// with `oauth_problem={problem}` from then on, in the body when `in_body`, else in
    /// `WWW-Authenticate`. Panics when no echo was marked so.
    pub fn revoke(&self, mark: &str, problem: &str, in_body: bool) {
        let form = format!("mark={mark}&problem={problem}&where={}", if in_body { "body" } else { "header" });
        let body = ("application/x-www-form-urlencoded", form.as_bytes());
        match raw_http(self.port, "POST", "/test/revoke", Some(body)) {
            Ok((200, _)) => {}
            other => self.process.fail(&format!("answered /test/revoke ({form}) with {other:?}")),
        }
    }

    fn get_json(&self, path: &str) -> serde_json::Value {
        match raw_http(self.port, "GET", path, None) {
            Ok((200, body)) => {
                serde_json::from_str(&body).unwrap_or_else(|e| self.process.fail(&format!("{path}: {e}")))
            }
            other => self.process.fail(&format!("answered {path} with {other:?}")),
        }
    }
}

/// The provider shared by the test binary, started on first use. Panics with the install
/// command if `python3` cannot import oauthlib, Flask, gunicorn and cryptography.
pub fn oauth1_peer() -> &'static OAuth1Peer {
    static PEER: OnceLock<OAuth1Peer> = OnceLock::new();
    PEER.get_or_init(start)
}

fn start() -> OAuth1Peer {
    let python = python_with_oauthlib();
    let script_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers").join("oauth1");
    let port = free_port();
    let base_url = format!("http://127.0.0.1:{port}");
    let dir = tempfile::Builder::new().prefix("latchkey-oauth1-").tempdir().expect("create oauth1 scratch directory");
    let dir_path = dir.path().to_path_buf();
    let canary = crate::canary::canary;
    let consumer_key = "latchkey-consumer".to_owned();
    let rsa_consumer_key = "latchkey-rsa-consumer".to_owned();
    let consumer_secret = [canary("o1cslive"), canary("o1csdev")];
    let token =
        |label: &str| PeerToken { token: canary(&format!("o1tok{label}")), secret: canary(&format!("o1ts{label}")) };
    let tokens = [token("live"), token("dev"), token("rsalive"), token("rsadev")];
    let user = "ada".to_owned();
    let token_rows: Vec<serde_json::Value> = [
        (&consumer_key, "live", "live"),
        (&consumer_key, "dev", "dev"),
        (&rsa_consumer_key, "live", "rsa-live"),
        (&rsa_consumer_key, "dev", "rsa-dev"),
    ]
    .iter()
    .zip(&tokens)
    .map(|((consumer, env, label), t)| {
        serde_json::json!({"consumer": consumer, "token": t.token, "secret": t.secret, "env": env, "label": label})
    })
    .collect();
    let config = serde_json::json!({
        "dir": dir_path,
        "user": user,
        "consumers": {
            consumer_key.clone(): {"secrets": {"live": consumer_secret[0], "dev": consumer_secret[1]}},
            rsa_consumer_key.clone(): {"secrets": {}, "rsa": true},
        },
        "tokens": token_rows,
    });
    let config_path = dir_path.join("config.json");
    std::fs::write(&config_path, config.to_string()).unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
    let args: Vec<String> = [
        "-B",
        "-m",
        "gunicorn",
        "--bind",
        &format!("127.0.0.1:{port}"),
        // One worker: the tokens and nonces live in its memory.
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
        &format!("LATCHKEY_OAUTH1_CONFIG={}", config_path.display()),
        "--access-logfile",
        "-",
        "server:app",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let process = PeerProcess::spawn("oauth1", dir, &python, &args);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    process.wait_until_ready(addr, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match raw_http(port, "GET", "/test/health", None) {
            Ok((200, _)) => break,
            other if Instant::now() >= deadline => process.fail(&format!("did not answer /test/health: {other:?}")),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
        process.wait_until_ready(addr, deadline.saturating_duration_since(Instant::now()));
    }
    let pem_path = dir_path.join("rsa_pkcs8.pem");
    let rsa_private_pem = std::fs::read_to_string(&pem_path)
        .unwrap_or_else(|e| process.fail(&format!("did not write {}: {e}", pem_path.display())));
    OAuth1Peer {
        base_url,
        port,
        consumer_key,
        consumer_secret,
        rsa_consumer_key,
        rsa_private_pem,
        tokens,
        user,
        process,
    }
}

fn python_with_oauthlib() -> std::path::PathBuf {
    let Some(python3) = find_program("python3", &["/usr/bin/python3"]) else {
        panic!("{NOT_INSTALLED} (no python3 found)");
    };
    let output = Command::new(&python3)
        .args(["-c", "import sys, oauthlib, flask, gunicorn, cryptography, jwt; print(sys.executable)"])
        .output()
        .unwrap_or_else(|e| panic!("{NOT_INSTALLED} (cannot run {}: {e})", python3.display()));
    if !output.status.success() {
        panic!("{NOT_INSTALLED}\n({} says: {})", python3.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    let executable = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if executable.is_empty() { python3 } else { std::path::PathBuf::from(executable) }
}
