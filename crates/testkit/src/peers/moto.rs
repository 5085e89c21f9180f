//! Real moto (PyPI `moto[server]`) in server mode on loopback, one per test binary, checking
//! AWS Signature Version 4 like AWS: it is started with `INITIAL_NO_AUTH_ACTION_COUNT` so that
//! the setup's actions run unsigned (an IAM user with an access key and a policy, a role the user
//! may assume, temporary credentials of that role: `peers/moto/aws.py setup`), after which
//! signature checks are turned on (`/moto-api/reset-auth` with 0): every later action must be
//! signed with a key moto made, and a wrong signature gets `403 SignatureDoesNotMatch`.
//!
//! [`botocore_signature`] runs botocore's `SigV4Auth` over a request as it was sent, as the
//! reference signer.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use super::process::{PeerProcess, find_program, free_port};

const NOT_INSTALLED: &str = "moto is not installed: run `pip install 'moto[server]==5.2.1'` (or `scripts/install-test-peers`, which installs every peer)";

/// Keys moto made.
#[derive(Debug, Clone)]
pub struct Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

/// A running moto with signature checks on.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    /// The IAM user's access key (its policy allows every action).
    pub user: Keys,
    /// `arn:aws:iam::123456789012:role/latchkey-role`: the user may assume it; it allows SQS.
    pub role_arn: String,
    /// Temporary credentials of the role, made during the setup (with a session token).
    pub temporary: Keys,
    _process: PeerProcess,
}

/// The process-wide moto, started and set up on first use (blocking, a few seconds).
///
/// Panics with the install command if `python3` cannot import moto's server and boto3.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers").join("moto").join("aws.py")
}

fn start() -> Moto {
    let python = python_with_moto();
    let port = free_port();
    let dir = tempfile::Builder::new().prefix("latchkey-moto-").tempdir().expect("create moto scratch directory");
    // Actions are unsigned until the setup turns checks on (moto counts them from the start).
    let args: Vec<String> = [
        "INITIAL_NO_AUTH_ACTION_COUNT=1000",
        python.to_str().expect("a UTF-8 path to python"),
        "-m",
        "moto.server",
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let process = PeerProcess::spawn("moto", dir, Path::new("/usr/bin/env"), &args);
    process.wait_until_ready(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(60));
    let base_url = format!("http://127.0.0.1:{port}");
    let output = Command::new(&python)
        .arg(script())
        .args(["setup", &base_url])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()));
    if !output.status.success() {
        panic!("moto setup failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let setup: Value = serde_json::from_slice(&output.stdout).expect("the setup prints JSON");
    let keys = |v: &Value| Keys {
        access_key_id: v["access_key_id"].as_str().expect("access_key_id").to_owned(),
        secret_access_key: v["secret_access_key"].as_str().expect("secret_access_key").to_owned(),
        session_token: v["session_token"].as_str().map(str::to_owned),
    };
    Moto {
        base_url,
        user: keys(&setup),
        role_arn: setup["role_arn"].as_str().expect("role_arn").to_owned(),
        temporary: keys(&setup["temporary"]),
        _process: process,
    }
}

/// What botocore's signer computes for a request as it was sent.
#[derive(Debug, Clone)]
pub struct Reference {
    pub signature: String,
    /// The payload hash botocore used (its own SHA-256 of the body, or `UNSIGNED-PAYLOAD`).
    pub payload: String,
    /// botocore's canonical request, for the failure message.
    pub canonical: String,
}

/// botocore's signature (`SigV4Auth`, `S3SigV4Auth` for `s3`) of the request `method url`
/// with `headers` (as sent, names lower-case) and `body` (`None`: not hashed, the request says
/// `UNSIGNED-PAYLOAD`), over the headers its `Authorization` names, at its `X-Amz-Date`.
pub fn botocore_signature(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    region: &str,
    service: &str,
    keys: &Keys,
) -> Reference {
    use base64::Engine as _;
    let request = serde_json::json!({
        "method": method,
        "url": url,
        "headers": headers,
        "body": body.map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        "region": region,
        "service": service,
        "access_key_id": keys.access_key_id,
        "secret_access_key": keys.secret_access_key,
        "session_token": keys.session_token,
    });
    let mut child = Command::new(python_with_moto())
        .arg(script())
        .arg("sign")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run botocore");
    child.stdin.take().expect("stdin").write_all(request.to_string().as_bytes()).expect("write the request");
    let output = child.wait_with_output().expect("botocore's answer");
    if !output.status.success() {
        panic!("botocore could not sign: {}", String::from_utf8_lossy(&output.stderr));
    }
    let v: Value = serde_json::from_slice(&output.stdout).expect("botocore prints JSON");
    let text = |k: &str| v[k].as_str().expect("a string").to_owned();
    Reference { signature: text("signature"), payload: text("payload"), canonical: text("canonical") }
}

/// The interpreter (`sys.executable`) of the first `python3` that imports moto's server,
/// boto3 and botocore.
fn python_with_moto() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let Some(python3) = find_program("python3", &["/usr/bin/python3"]) else {
                panic!("{NOT_INSTALLED} (no python3 found)");
            };
            let output = Command::new(&python3)
                .args(["-c", "import sys, moto.server, boto3, botocore; print(sys.executable)"])
                .output()
                .unwrap_or_else(|e| panic!("{NOT_INSTALLED} (cannot run {}: {e})", python3.display()));
            if !output.status.success() {
                panic!(
                    "{NOT_INSTALLED}\n({} says: {})",
                    python3.display(),
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            let executable = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if executable.is_empty() { python3 } else { PathBuf::from(executable) }
        })
        .clone()
}
