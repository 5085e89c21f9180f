//! Child processes for peer servers that die with the test process.
//!
//! Peers live in process-wide statics, and statics are never dropped, so no `Drop` impl can stop
//! them. Instead every peer runs under a small `sh` wrapper whose standard input is a pipe from
//! the test process. The test process never writes to that pipe; when it exits (normally, by a
//! panic, or by `SIGKILL`) the kernel closes its end, the wrapper reads end-of-file, stops the
//! peer with `SIGTERM` and deletes the peer's scratch directory. No unsafe code and no
//! platform-specific process APIs are needed.

use std::fmt::Write as _;
use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The wrapper run as `sh -c WRAPPER sh <dir> <program> <args>...`.
///
/// - fd 3 keeps the pipe from the test process; the peer itself gets `/dev/null` as stdin and
///   never sees the pipe, so only the watcher notices when the test process goes away.
/// - When the peer exits on its own, its status lands in `<dir>/exited` (the readiness poll
///   looks for it) and the wrapper lingers until the test process exits, so that the log stays
///   readable for the panic message; then it removes `<dir>`.
const WRAPPER: &str = r#"
dir=$1
shift
exec 3<&0 0</dev/null
"$@" 3<&- &
pid=$!
(
    read _ignored <&3 || :
    [ -e "$dir/exited" ] || kill -TERM "$pid" 2>/dev/null
) &
watcher=$!
exec 3<&-
wait "$pid"
echo "$?" > "$dir/exited"
wait "$watcher"
rm -rf "$dir"
"#;

/// A peer server process, stopped when the test process exits.
#[derive(Debug)]
pub(crate) struct PeerProcess {
    name: String,
    /// The `sh` wrapper. Kept so that the process handle stays owned for the life of the test
    /// process.
    _wrapper: Child,
    /// The write end of the wrapper's stdin. Never written to: closing it (which happens when
    /// the test process exits) stops the peer.
    _lifeline: ChildStdin,
    dir: PathBuf,
    log: PathBuf,
}

impl PeerProcess {
    /// Starts `program args...` in `dir` (its working directory and scratch space), with stdout
    /// and stderr appended to `dir/<name>.log`. `dir` is removed once the peer is gone.
    pub(crate) fn spawn(name: &str, dir: TempDir, program: &Path, args: &[String]) -> PeerProcess {
        let dir = dir.keep();
        let log = dir.join(format!("{name}.log"));
        let log_file =
            File::create(&log).unwrap_or_else(|e| panic!("{name}: cannot create log file {}: {e}", log.display()));
        let log_err = log_file.try_clone().unwrap_or_else(|e| panic!("{name}: cannot duplicate log file handle: {e}"));
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .arg(&dir)
            .arg(program)
            .args(args)
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(log_file)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start `sh` to run {}: {e}", program.display()));
        let lifeline = wrapper.stdin.take().expect("stdin is piped");
        PeerProcess { name: name.to_owned(), _wrapper: wrapper, _lifeline: lifeline, dir, log }
    }

    /// The peer's scratch directory (removed after the peer is stopped).
    #[allow(dead_code)]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The exit status of the peer, if it has exited.
    fn exit_status(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("exited")).ok().filter(|s| s.ends_with('\n')).map(|s| s.trim().to_owned())
    }

    /// The last `max_lines` lines of the peer's log.
    pub(crate) fn log_tail(&self, max_lines: usize) -> String {
        let text = match std::fs::read(&self.log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => return format!("(cannot read {}: {e})", self.log.display()),
        };
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(max_lines);
        lines[start..].join("\n")
    }

    /// Waits until `addr` accepts TCP connections. Panics, with the tail of the peer's log, if
    /// the peer exits first or `timeout` passes.
    pub(crate) fn wait_until_ready(&self, addr: SocketAddr, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                self.fail(&format!("exited with status {status} before accepting connections on {addr}"));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("did not accept connections on {addr} within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Panics with `what` and the tail of the peer's log.
    pub(crate) fn fail(&self, what: &str) -> ! {
        let mut msg = format!("peer {} {what}", self.name);
        let _ = write!(msg, "\n--- last lines of {} ---\n{}\n---", self.log.display(), self.log_tail(40));
        panic!("{msg}");
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is released before it is returned, so another process may take it in between; for
/// loopback test peers that race is rare enough.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address of a bound listener").port()
}

/// Finds `name` in `$PATH`, then in `fallbacks`.
pub(crate) fn find_program(name: &str, fallbacks: &[&str]) -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file()));
    from_path.or_else(|| fallbacks.iter().map(PathBuf::from).find(|candidate| candidate.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exiting_peer_fails_with_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let args = vec!["-c".to_owned(), "echo boom-from-peer >&2; exit 3".to_owned()];
        let peer = PeerProcess::spawn("failing", dir, Path::new("sh"), &args);
        let port = free_port();
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            peer.wait_until_ready(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(10));
        }))
        .expect_err("the peer exited, so it is not ready");
        let msg = err.downcast_ref::<String>().expect("panic message is a String");
        assert!(msg.contains("exited with status 3"), "{msg}");
        assert!(msg.contains("boom-from-peer"), "{msg}");
    }

    #[test]
    fn a_listening_peer_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let python = find_program("python3", &["/usr/bin/python3"]).expect("python3");
        let args = vec![
            "-c".to_owned(),
            format!("import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(60)"),
        ];
        let peer = PeerProcess::spawn("listener", dir, &python, &args);
        peer.wait_until_ready(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(20));
    }
}
