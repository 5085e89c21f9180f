//! Reloading the configuration file without a restart (`SIGHUP`, `[server] watch_config`).
//!
//! The caller (the CLI, the only crate that reads files and the process environment) loads
//! and validates the new file exactly as `latchkey check` and the start do, and hands over the
//! valid [`Config`] with the environment variables its references name. A file that does not
//! validate never reaches here, so it changes nothing. [`Engine::reload_config`] then:
//!
//! - compiles the connectors again from the secrets and API connectors in memory (the store is
//!   not read) and swaps the runtime and the configuration in at once, under the mirror's
//!   rebuild lock: a call holds one runtime for its whole way, and that runtime carries the
//!   configuration it was compiled from;
//! - keeps every connector whose definition did not change as it was: its prepared credential,
//!   its upstream pool, its cached and stored tokens; the client pool is kept whole;
//! - drops the tokens of a connector whose grant changed (its fingerprint over the grant's
//!   settings: token URL, client, scopes, audience, ...), cached and stored
//!   ([`super::tokens::TokenManager::discard`]), so that the next call obtains a new one under
//!   the new settings rather than using a token, or a refresh token, issued under the old ones
//!   (and a token a call still on the old runtime obtains meanwhile, or another instance on
//!   the old file stores, is stamped with the old grant and not used: `TokenSource::stamp`);
//! - reports what changed, including the `[server]` fields that only a restart applies
//!   ([`server_fields`]).
//!
//! An API connector whose name the file now defines is shadowed by the file's definition, as
//! at start. Connections, users and the identity provider's keys are not touched.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use secrecy::SecretString;

use super::Engine;
use super::runtime::Runtime;
use crate::Env;
use crate::auth::Credential;
use crate::config::{Config, ServerConfig};

/// Whether a reload applies a `[server]` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerField {
    /// Read where it is used, so a reload applies it.
    Reloads,
    /// Read once at start (the listener, the serving threads, the vault, the log, the audit
    /// log): a changed value applies after a restart.
    NeedsRestart,
}

/// Every `[server]` field and whether a reload applies it (docs/operations.md has the same
/// list). A field missing here counts as needing a restart; a test keeps the list whole.
pub fn server_fields() -> &'static [(&'static str, ServerField)] {
    use ServerField::{NeedsRestart, Reloads};
    &[
        ("listen", NeedsRestart),
        ("public_url", NeedsRestart),
        ("return_to_allow", Reloads),
        ("webhook_url", Reloads),
        ("webhook_secret", Reloads),
        ("token_algorithm", Reloads),
        ("token_audience", Reloads),
        ("access_token_ttl_s", Reloads),
        ("refresh_token_ttl_s", Reloads),
        ("api_connectors_private_egress", Reloads),
        ("introspection_per_second", NeedsRestart),
        ("audit_log", NeedsRestart),
        ("threads", NeedsRestart),
        ("request_timeout_s", NeedsRestart),
        ("data_key_max_seals", NeedsRestart),
        ("header_read_timeout_s", NeedsRestart),
        ("keepalive_idle_s", NeedsRestart),
        ("http2_keepalive_interval_s", NeedsRestart),
        ("max_connections", NeedsRestart),
        ("connection_cache", Reloads),
        ("log_format", NeedsRestart),
        ("events_kept_days", Reloads),
        ("watch_config", Reloads),
        ("connect_page", Reloads),
        ("console", Reloads),
    ]
}

fn field_kind(name: &str) -> ServerField {
    server_fields().iter().find(|(n, _)| *n == name).map_or(ServerField::NeedsRestart, |(_, k)| *k)
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    /// API connectors whose name the file now defines: the file's definition is used.
    pub shadowed: Vec<String>,
    /// Tokens dropped because their connector's grant changed (`connector (env)`).
    pub tokens_dropped: Vec<String>,
    /// `[server]` fields changed and applied.
    pub applied: Vec<String>,
    /// `[server]` fields changed that apply only after a restart.
    pub needs_restart: Vec<String>,
}

impl ReloadReport {
    /// Whether the file changed nothing that Latchkey holds.
    pub fn is_empty(&self) -> bool {
        *self == ReloadReport::default()
    }
}

impl fmt::Display for ReloadReport {
    /// One line: each non-empty part, `connectors added: a, b; ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing changed");
        }
        let parts = [
            ("connectors added", &self.added),
            ("connectors removed", &self.removed),
            ("connectors changed", &self.changed),
            ("API connectors now defined by the file (the file's definition is used)", &self.shadowed),
            ("tokens dropped (grant changed; new ones are obtained on the next call)", &self.tokens_dropped),
            ("[server] applied", &self.applied),
            ("[server] changed but needs a restart to apply", &self.needs_restart),
        ];
        let mut first = true;
        for (label, names) in parts.into_iter().filter(|(_, n)| !n.is_empty()) {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{label}: {}", names.join(", "))?;
        }
        Ok(())
    }
}

impl Engine {
    /// Makes `config` (validated by the caller, as at start) the configuration, with
    /// `env_vars` for its `{ env = "VAR" }` references, and says what changed (see the module
    /// documentation). Tokens of a changed grant that cannot be erased from the store (it does
    /// not answer) are logged; the reload itself stands.
    pub async fn reload_config(&self, config: Config, env_vars: BTreeMap<String, SecretString>) -> ReloadReport {
        let (before, after) = self.mirror.swap_config(Arc::new(config), env_vars).await;
        let mut report = compare(&before, &after);
        for (name, conn) in &after.connectors {
            let Some(old) = before.connectors.get(name) else { continue };
            if Arc::ptr_eq(old, conn) {
                continue;
            }
            for env in Env::ALL {
                let (Ok(old), Ok(new)) = (old.credential(env), conn.credential(env)) else { continue };
                let (Credential::Token(old), Credential::Token(new)) = (&old.credential, &new.credential) else {
                    continue;
                };
                if old.fingerprint == new.fingerprint {
                    continue;
                }
                report.tokens_dropped.push(format!("{name} ({env})"));
                if let Err(e) = self.tokens.discard(new).await {
                    tracing::warn!(
                        connector = %name,
                        %env,
                        error = %e.message,
                        "the grant changed but the stored token could not be erased; the next call may use it until it is refreshed"
                    );
                }
            }
        }
        report.tokens_dropped.sort();
        report
    }
}

/// The connectors and `[server]` fields that differ between two runtimes.
fn compare(before: &Runtime, after: &Runtime) -> ReloadReport {
    let mut report = ReloadReport::default();
    let names: BTreeSet<&String> = before.connectors.keys().chain(after.connectors.keys()).collect();
    for name in names {
        match (before.connectors.get(name), after.connectors.get(name)) {
            (None, Some(_)) => report.added.push(name.clone()),
            (Some(_), None) => report.removed.push(name.clone()),
            (Some(old), Some(new)) if old.from_file != new.from_file || old.config != new.config => {
                report.changed.push(name.clone())
            }
            _ => {}
        }
    }
    report.shadowed = after
        .config
        .connectors
        .keys()
        .filter(|name| {
            !before.config.connectors.contains_key(*name) && after.stored.iter().any(|row| &row.name == *name)
        })
        .cloned()
        .collect();
    for field in changed_server_fields(&before.config.server, &after.config.server) {
        match field_kind(&field) {
            ServerField::Reloads => report.applied.push(field),
            ServerField::NeedsRestart => report.needs_restart.push(field),
        }
    }
    report
}

/// The names of the `[server]` fields whose values differ (compared as they are written).
fn changed_server_fields(before: &ServerConfig, after: &ServerConfig) -> Vec<String> {
    let as_map = |s: &ServerConfig| match serde_json::to_value(s) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (before, after) = (as_map(before), as_map(after));
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    names.into_iter().filter(|name| before.get(*name) != after.get(*name)).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field `[server]` has is classified (a new field must say whether a reload
    /// applies it).
    #[test]
    fn every_server_field_says_whether_a_reload_applies_it() {
        let text = r#"
[server]
listen = "127.0.0.1:1"
public_url = "https://l.example.com"
return_to_allow = ["https://app.example.com/"]
webhook_url = "https://hooks.example.com/"
webhook_secret = { env = "W" }
token_algorithm = "ES256"
token_audience = "a"
access_token_ttl_s = 600
refresh_token_ttl_s = 600
api_connectors_private_egress = true
introspection_per_second = 5
audit_log = "/tmp/a"
threads = 2
request_timeout_s = 5
data_key_max_seals = 5
header_read_timeout_s = 5
keepalive_idle_s = 5
http2_keepalive_interval_s = 5
max_connections = 5
connection_cache = 5
log_format = "json"
events_kept_days = 90
watch_config = true
console = { enabled = false }
connect_page = { title = "Connect" }
"#;
        let config = Config::parse(text, "f").unwrap();
        let fields = changed_server_fields(&ServerConfig::default(), &config.server);
        let listed: Vec<&str> = server_fields().iter().map(|(n, _)| *n).collect();
        assert_eq!(fields, {
            let mut l = listed.clone();
            l.sort_unstable();
            l
        });
        assert_eq!(field_kind("listen"), ServerField::NeedsRestart);
        assert_eq!(field_kind("webhook_url"), ServerField::Reloads);
        assert_eq!(field_kind("no_such_field"), ServerField::NeedsRestart);
    }

    #[test]
    fn the_report_is_one_line_naming_each_change() {
        let report = ReloadReport {
            added: vec!["a".into(), "b".into()],
            needs_restart: vec!["listen".into()],
            ..ReloadReport::default()
        };
        assert_eq!(report.to_string(), "connectors added: a, b; [server] changed but needs a restart to apply: listen");
        assert_eq!(ReloadReport::default().to_string(), "nothing changed");
    }
}
