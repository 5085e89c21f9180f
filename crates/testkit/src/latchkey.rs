//! The real `latchkey` binary, started in its own data directory on port 0.

use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How to start one Latchkey.
#[derive(Default, Clone)]
pub struct Options {
    /// The configuration file's text (written to `latchkey.toml` in the work directory).
    pub config: String,
    /// Extra environment variables for the process.
    pub env: Vec<(String, String)>,
    /// Reuse this data directory (to restart on an existing store).
    pub data_dir: Option<PathBuf>,
    /// Extra arguments after `serve`.
    pub args: Vec<String>,
    /// Start without a configuration file (`config` is not written).
    pub no_config_file: bool,
}

pub struct Latchkey {
    child: Child,
    pub base_url: String,
    /// The admin key printed at first start (None when the store already had one).
    pub admin_key: Option<String>,
    pub data_dir: PathBuf,
    pub work_dir: PathBuf,
    _work: Option<tempfile::TempDir>,
    output: Arc<Mutex<Vec<u8>>>,
    bin: PathBuf,
    /// The extra environment variables it was started with (the CLI gets them too).
    pub env: Vec<(String, String)>,
    pub http: reqwest::Client,
}

impl Drop for Latchkey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const READY: &str = "Latchkey listening on http://";
const ADMIN: &str = "Admin key (shown only this once; keep it safe): ";

/// A plain client for talking to Latchkey and to peers in tests.
#[allow(clippy::disallowed_methods)]
pub fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("test client")
}

fn pump(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n]);
        }
    });
}

impl Latchkey {
    /// Starts Latchkey with `config`, and panics with its output if it does not become ready.
    pub fn start(bin: &Path, config: &str) -> Latchkey {
        Self::start_with(bin, Options { config: config.to_owned(), ..Options::default() })
            .unwrap_or_else(|out| panic!("latchkey did not start:\n{out}"))
    }

    /// Starts Latchkey; `Err` carries everything it printed if it exited or never became ready.
    pub fn start_with(bin: &Path, opts: Options) -> Result<Latchkey, String> {
        let work = tempfile::tempdir().expect("temp dir");
        let work_dir = work.path().to_path_buf();
        if !opts.no_config_file {
            std::fs::write(work_dir.join("latchkey.toml"), &opts.config).expect("write config");
        }
        let data_dir = opts.data_dir.clone().unwrap_or_else(|| work_dir.join("data"));
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(&opts.args)
            .current_dir(&work_dir)
            .env("LATCHKEY_DATA_DIR", &data_dir)
            .env("LATCHKEY_LOG", "debug")
            .env_remove("LATCHKEY_MASTER_KEY")
            .env_remove("LATCHKEY_ADMIN_KEY")
            .env_remove("LATCHKEY_DATABASE_URL")
            .env_remove("LATCHKEY_CONFIG")
            .env_remove("LATCHKEY_LISTEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let output = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        pump(stderr, output.clone());
        // Read stdout line by line until ready, keeping every byte.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    output.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(line.as_bytes());
                    let _ = tx.send(line.clone());
                    line.clear();
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut admin_key = None;
        let text = |o: &Arc<Mutex<Vec<u8>>>| {
            String::from_utf8_lossy(&o.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
        };
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(k) = line.strip_prefix(ADMIN) {
                        admin_key = Some(k.trim().to_owned());
                    }
                    if let Some(addr) = line.strip_prefix(READY) {
                        let base_url = format!("http://{}", addr.trim());
                        return Ok(Latchkey {
                            child,
                            base_url,
                            admin_key,
                            data_dir,
                            work_dir,
                            _work: Some(work),
                            output,
                            bin: bin.to_path_buf(),
                            env: opts.env,
                            http: test_client(),
                        });
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(200));
                        return Err(format!("exited with {status}:\n{}", text(&output)));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        return Err(format!("not ready after 30 s:\n{}", text(&output)));
                    }
                }
            }
        }
    }

    /// Keeps the work directory alive past this process (to restart on the same data).
    pub fn keep_work_dir(&mut self) -> tempfile::TempDir {
        self._work.take().expect("work dir already taken")
    }

    /// Everything the process printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    pub fn output_bytes(&self) -> Vec<u8> {
        self.output.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the server to stop (SIGTERM), as a service manager does; see [`Latchkey::wait_exit`].
    pub fn terminate(&self) {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(sent.as_ref().is_ok_and(|s| s.success()), "kill -TERM failed: {sent:?}");
    }

    /// Sends `SIGHUP` (a reload of the configuration), as `systemctl reload` does.
    pub fn hangup(&self) {
        let sent = Command::new("kill").args(["-HUP", &self.child.id().to_string()]).status();
        assert!(sent.as_ref().is_ok_and(|s| s.success()), "kill -HUP failed: {sent:?}");
    }

    /// The configuration file the server was started with (`latchkey.toml` in its work
    /// directory).
    pub fn config_path(&self) -> PathBuf {
        self.work_dir.join("latchkey.toml")
    }

    /// Replaces the configuration file whole (written aside, then renamed over it), so that a
    /// reader sees the old text or the new one, never a part.
    pub fn replace_config(&self, text: &str) {
        let aside = self.work_dir.join("latchkey.toml.new");
        std::fs::write(&aside, text).expect("write the new configuration");
        std::fs::rename(&aside, self.config_path()).expect("rename the new configuration into place");
    }

    /// Waits up to `limit` for the process to exit; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The process id (to read `/proc/<pid>/…`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The value of one series in `/metrics`: its name with its labels, if any
    /// (`latchkey_store_reads_total{kind="full"}`). Panics, showing the page, when it is absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let page = self.http.get(self.url("/metrics")).send().await.expect("GET /metrics").text().await.expect("text");
        let value = page.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
        value.and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no number for {series} in /metrics:\n{page}"))
    }

    pub fn admin(&self) -> &str {
        self.admin_key.as_deref().expect("this Latchkey printed no admin key")
    }

    /// `method path` with the admin key.
    pub fn admin_req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).bearer_auth(self.admin())
    }

    pub async fn put_secret(&self, name: &str, env: &str, value: &str) {
        let resp = self
            .admin_req(reqwest::Method::PUT, &format!("/v1/admin/secrets/{name}"))
            .json(&json!({"value": value, "environment": env}))
            .send()
            .await
            .expect("put secret");
        assert_eq!(resp.status(), 200, "PUT secret {name}: {}", resp.text().await.unwrap_or_default());
    }

    /// Creates an app key for `env` ("live" or "dev") and returns it.
    pub async fn app_key(&self, env: &str) -> String {
        let resp = self
            .admin_req(reqwest::Method::POST, "/v1/admin/keys")
            .json(&json!({"environment": env, "name": "test"}))
            .send()
            .await
            .expect("create key");
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.expect("json");
        v["key"].as_str().expect("key").to_owned()
    }

    /// A named call with an app key: returns status, headers and body text.
    pub async fn call(&self, key: &str, connector: &str, call: &str, params: Value) -> Reply {
        let resp = self
            .http
            .post(self.url(&format!("/v1/connectors/{connector}/calls/{call}")))
            .bearer_auth(key)
            .json(&json!({ "params": params }))
            .send()
            .await
            .expect("call");
        Reply::read(resp).await
    }

    /// Runs the CLI against this server's data directory and configuration.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        run_cli(&self.bin, &self.work_dir, &self.data_dir, &self.env, args, stdin)
    }
}

/// Runs `latchkey <args>` in `work_dir` with `data_dir`, feeding `stdin`.
pub fn run_cli(
    bin: &Path,
    work_dir: &Path,
    data_dir: &Path,
    env: &[(String, String)],
    args: &[&str],
    stdin: Option<&str>,
) -> std::process::Output {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(work_dir)
        .env("LATCHKEY_DATA_DIR", data_dir)
        .env_remove("LATCHKEY_MASTER_KEY")
        .env_remove("LATCHKEY_ADMIN_KEY")
        .env_remove("LATCHKEY_DATABASE_URL")
        .env_remove("LATCHKEY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run latchkey");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait latchkey")
}

/// An HTTP response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub async fn read(resp: reqwest::Response) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await.unwrap_or_default();
        Reply { status, headers, body }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `Latchkey-Error` header, if any.
    pub fn error_code(&self) -> Option<&str> {
        self.headers.get("latchkey-error").and_then(|v| v.to_str().ok())
    }

    /// Everything in the reply, for canary scans.
    pub fn all_text(&self) -> String {
        let mut s = format!("{}\n", self.status);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        s.push_str(&self.body);
        s
    }
}
