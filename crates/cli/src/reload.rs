//! Reloading the configuration file while serving: on `SIGHUP`, and when `[server]
//! watch_config = true` and the file changes.
//!
//! The file is read and validated by [`settings::load_config`], the validator of the start and
//! of `latchkey check`; the variables its `{ env = "VAR" }` references name are read from the
//! process environment ([`settings::env_vars_for`]); the engine swaps the rest in
//! ([`Engine::reload_config`]). A file with problems changes nothing: every problem is logged
//! (file, line, connector, field), one line each, then one line saying nothing changed.
//!
//! The watch reads the file every second and compares a SHA-256 of its bytes (a file is a few
//! kilobytes; modification times miss two writes within their granularity). A change is acted
//! on once the file has stayed the same for one more second, so that an editor's write in
//! several steps is read whole; a file that still fails is logged once and tried again when it
//! changes next.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use latchkey_core::config::Config;
use latchkey_core::engine::Engine;
use tokio::signal::unix::Signal;

use crate::settings;

/// How often the watch reads the file.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What set a reload off (for the log).
#[derive(Clone, Copy)]
enum Trigger {
    Hangup,
    Watch,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Hangup => "SIGHUP",
            Trigger::Watch => "watch_config",
        }
    }
}

/// The file and what of it was tried last; one reload at a time, so that two triggers cannot
/// apply an older text after a newer one.
struct Reloader {
    engine: Arc<Engine>,
    path: PathBuf,
    /// The SHA-256 of the bytes last tried (applied or refused).
    tried: tokio::sync::Mutex<Option<[u8; 32]>>,
}

/// The file's bytes (or why they cannot be read), and their digest (of the error when
/// unreadable, so that a file that stays missing is tried, and logged, once).
fn read(path: &Path) -> (std::io::Result<Vec<u8>>, [u8; 32]) {
    let bytes = std::fs::read(path);
    let digest = match &bytes {
        Ok(bytes) => latchkey_vault::sha256(bytes),
        Err(e) => latchkey_vault::sha256(format!("unreadable: {e}").as_bytes()),
    };
    (bytes, digest)
}

impl Reloader {
    /// Reads, validates and applies the file, logging the outcome.
    async fn reload(&self, trigger: Trigger) {
        let mut tried = self.tried.lock().await;
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let (bytes, digest) = read(&path);
            (settings::config_from(&path, bytes), digest)
        })
        .await;
        let (loaded, digest) = match loaded {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "the configuration could not be read; nothing changed");
                return;
            }
        };
        *tried = Some(digest);
        let file = self.path.display().to_string();
        let config: Config = match loaded {
            Ok(config) => config,
            Err(errors) => {
                for p in &errors.0 {
                    tracing::error!(
                        file = %p.file,
                        line = p.line,
                        connector = p.connector.as_deref(),
                        field = p.field.as_deref(),
                        "configuration not reloaded: {p}"
                    );
                }
                let n = errors.0.len();
                tracing::error!(
                    %file,
                    trigger = trigger.as_str(),
                    "configuration not reloaded: {n} problem{} in the file; nothing changed, Latchkey keeps \
                     serving with the running configuration (fix the file, check it with `latchkey check`, reload again)",
                    if n == 1 { "" } else { "s" }
                );
                return;
            }
        };
        let env_vars = settings::env_vars_for(&config);
        let report = self.engine.reload_config(config, env_vars).await;
        tracing::info!(%file, trigger = trigger.as_str(), "configuration reloaded: {report}");
        if !report.needs_restart.is_empty() {
            tracing::warn!(
                %file,
                fields = %report.needs_restart.join(", "),
                "configuration reloaded, but changed [server] settings need a restart to apply: {}",
                report.needs_restart.iter().map(|f| format!("server.{f}")).collect::<Vec<_>>().join(", ")
            );
        }
        for name in &report.shadowed {
            tracing::warn!(
                connector = %name,
                "the configuration file now defines connector `{name}`, which the admin API created: the file's definition is used (as at start); the API connector is kept in the store, unused"
            );
        }
    }

    /// Every [`WATCH_EVERY`] while `[server] watch_config` is on: reloads a changed file once
    /// it has stayed the same for one more read ([`settled`]).
    async fn watch(self: Arc<Self>) {
        let mut last_seen = read(&self.path).1;
        {
            let mut tried = self.tried.lock().await;
            tried.get_or_insert(last_seen);
        }
        let mut tick = tokio::time::interval(WATCH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !self.engine.config().server.watch_config {
                continue;
            }
            let path = self.path.clone();
            let Ok((_, digest)) = tokio::task::spawn_blocking(move || read(&path)).await else { continue };
            let tried = *self.tried.lock().await;
            if settled(&mut last_seen, tried, digest) {
                self.reload(Trigger::Watch).await;
            }
        }
    }
}

/// Whether the file, read as `digest`, is to be reloaded: it is the same as at the read
/// before (`last_seen`, updated here: an editor may still be writing) and not what was tried
/// last (applied, or refused and logged: a file is tried once until it changes again).
fn settled(last_seen: &mut [u8; 32], tried: Option<[u8; 32]>, digest: [u8; 32]) -> bool {
    if digest != *last_seen {
        *last_seen = digest;
        return false;
    }
    tried != Some(digest)
}

/// Reloads on `hangup` (taken at start, so that a `SIGHUP` during start-up does not stop the
/// process) and runs the watch. Without a file there is nothing to re-read, and `SIGHUP` says so.
pub fn spawn(engine: Arc<Engine>, config_file: Option<PathBuf>, hangup: Option<Signal>) {
    let Some(path) = config_file else {
        if let Some(mut hangup) = hangup {
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    tracing::warn!(
                        "SIGHUP received, but Latchkey was started without a configuration file: there is no file \
                         to re-read, so nothing changed (start it with --config FILE or LATCHKEY_CONFIG to reload one)"
                    );
                }
            });
        }
        return;
    };
    let reloader = Arc::new(Reloader { engine, path, tried: tokio::sync::Mutex::new(None) });
    if let Some(mut hangup) = hangup {
        let reloader = reloader.clone();
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!(file = %reloader.path.display(), "SIGHUP received: reloading the configuration");
                reloader.reload(Trigger::Hangup).await;
            }
        });
    }
    tokio::spawn(reloader.watch());
}

/// Catches `SIGHUP` from the start: its default action would end the process.
pub fn catch_hangup() -> Option<Signal> {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot catch SIGHUP: it will stop Latchkey, and reload by signal is not available");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_reloaded_once_it_has_stayed_the_same_for_one_read_and_only_once() {
        let (a, b, c) = ([1; 32], [2; 32], [3; 32]);
        let mut seen = a;
        assert!(!settled(&mut seen, Some(a), a), "unchanged since it was applied");
        assert!(!settled(&mut seen, Some(a), b), "changed: wait for one more read");
        assert!(!settled(&mut seen, Some(a), c), "still changing (an editor writing in steps)");
        assert!(settled(&mut seen, Some(a), c), "settled: reload");
        assert!(!settled(&mut seen, Some(c), c), "tried already (applied or refused): not again");
        assert!(!settled(&mut seen, Some(c), b));
        assert!(settled(&mut seen, Some(c), b), "changed again: tried again");
    }

    #[test]
    fn an_unreadable_file_has_a_digest_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchkey.toml");
        let (missing, gone) = read(&path);
        assert!(missing.is_err());
        std::fs::write(&path, "").unwrap();
        let (empty, there) = read(&path);
        assert_eq!(empty.unwrap(), b"");
        assert_ne!(gone, there, "a missing file differs from an empty one");
        assert_eq!(read(&dir.path().join("latchkey.toml")).1, there);
    }
}
