//! Settings: flags beat environment variables beat the configuration file beat defaults.
//! Read once here and passed by value; nothing else reads the process environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use latchkey_core::config::{Config, ConfigErrors, Problem, SecretRef};
use secrecy::SecretString;

/// The flags every command takes: where the configuration and the store are.
#[derive(clap::Args)]
#[command(next_help_heading = "Configuration and store (every command)")]
pub struct Flags {
    /// The configuration file [default: ./latchkey.toml if it exists]
    #[arg(long, env = "LATCHKEY_CONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where the SQLite database and the master key file live
    #[arg(long, env = "LATCHKEY_DATA_DIR", global = true, default_value = "./latchkey-data", value_name = "DIR")]
    data_dir: PathBuf,
    /// The store: `sqlite://PATH` or `postgres://USER@HOST/DATABASE` [default: sqlite in the data directory]
    #[arg(long, env = "LATCHKEY_DATABASE_URL", global = true, hide_env_values = true, value_name = "URL")]
    database_url: Option<String>,
}

/// The flags only `serve` takes.
#[derive(clap::Args, Clone, Default)]
pub struct ServeFlags {
    /// Address to listen on [default: 127.0.0.1:7420, or `[server] listen`]
    #[arg(long, env = "LATCHKEY_LISTEN", value_name = "HOST:PORT")]
    listen: Option<SocketAddr>,
    /// The externally visible base URL [default: http:// and the address bound, or `[server] public_url`]
    #[arg(long, env = "LATCHKEY_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// Serving threads [default: one per CPU, or `[server] threads`]
    #[arg(long, env = "LATCHKEY_THREADS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: Option<u16>,
}

pub struct Settings {
    pub config: Config,
    pub config_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub listen: SocketAddr,
    /// Serving threads (`serve`), each with its own single-threaded runtime.
    pub threads: usize,
    /// Defaults to `http://` + the address actually bound.
    pub public_url: Option<String>,
    pub master_key: Option<SecretString>,
    pub admin_key: Option<SecretString>,
    /// The environment variables that the file's `{ env = "VAR" }` references name.
    pub env_vars: BTreeMap<String, SecretString>,
    /// `LATCHKEY_FAULT`: a test hook that aborts the process at a named point of a token
    /// refresh (`after_token_response`, `after_token_commit`), to prove crash safety.
    pub fault: Option<String>,
    /// `LATCHKEY_LOG_FORMAT`, else `[server] log_format`, else text.
    pub log_format: latchkey_core::config::LogFormat,
    /// How often `serve` polls the store for other writers' changes: 1 s, or (undocumented,
    /// for tests that show the change feed works without the poll) `LATCHKEY_SYNC_INTERVAL_MS`.
    pub sync_every: std::time::Duration,
}

impl Settings {
    /// `serve` is `None` for the commands that do not listen: they still read the public URL
    /// (links in messages) from `LATCHKEY_PUBLIC_URL` or the file, and the address from
    /// `LATCHKEY_LISTEN` or the file.
    pub fn resolve(flags: Flags, serve: Option<ServeFlags>) -> anyhow::Result<Settings> {
        let serve = match serve {
            Some(s) => s,
            None => ServeFlags {
                listen: match std::env::var("LATCHKEY_LISTEN") {
                    Ok(l) if !l.is_empty() => Some(l.parse().context("LATCHKEY_LISTEN")?),
                    _ => None,
                },
                public_url: std::env::var("LATCHKEY_PUBLIC_URL").ok().filter(|u| !u.is_empty()),
                threads: None,
            },
        };
        let config_file = match flags.config {
            Some(path) => Some(path),
            None => Some(PathBuf::from("latchkey.toml")).filter(|p| p.exists()),
        };
        let config = match &config_file {
            Some(path) => load_config(path).map_err(|e| anyhow::anyhow!("{e}"))?,
            None => Config::default(),
        };
        let listen = match (serve.listen, &config.server.listen) {
            (Some(l), _) => l,
            (None, Some(l)) => l.parse().context("server.listen")?,
            (None, None) => SocketAddr::from(([127, 0, 0, 1], 7420)),
        };
        let threads = match serve.threads.or(config.server.threads) {
            Some(n) => usize::from(n).max(1),
            None => std::thread::available_parallelism().map_or(1, usize::from),
        };
        let public_url = serve.public_url.or_else(|| config.server.public_url.clone());
        let database_url =
            flags.database_url.unwrap_or_else(|| format!("sqlite://{}", flags.data_dir.join("latchkey.db").display()));
        let admin_key = std::env::var("LATCHKEY_ADMIN_KEY").ok().filter(|k| !k.is_empty());
        if let Some(k) = &admin_key
            && k.chars().count() < 32
        {
            bail!(
                "LATCHKEY_ADMIN_KEY must be at least 32 characters (it is a credential): generate one with `openssl rand -base64 32`"
            );
        }
        let env_vars = env_vars_for(&config);
        let log_format = match std::env::var("LATCHKEY_LOG_FORMAT") {
            Ok(f) if !f.is_empty() => f
                .parse::<latchkey_core::config::LogFormat>()
                .map_err(|e| anyhow::anyhow!("LATCHKEY_LOG_FORMAT: {e}"))?,
            _ => config.server.log_format.unwrap_or_default(),
        };
        let sync_every = match std::env::var("LATCHKEY_SYNC_INTERVAL_MS") {
            Ok(ms) if !ms.is_empty() => match ms.parse::<u64>() {
                Ok(ms) if ms > 0 => std::time::Duration::from_millis(ms),
                _ => bail!("LATCHKEY_SYNC_INTERVAL_MS must be a number of milliseconds, at least 1 (or unset: 1000)"),
            },
            _ => std::time::Duration::from_secs(1),
        };
        Ok(Settings {
            sync_every,
            log_format,
            config,
            config_file,
            data_dir: flags.data_dir,
            database_url,
            listen,
            threads,
            public_url,
            master_key: std::env::var("LATCHKEY_MASTER_KEY").ok().map(SecretString::from),
            admin_key: admin_key.map(SecretString::from),
            env_vars,
            fault: std::env::var("LATCHKEY_FAULT").ok().filter(|f| !f.is_empty()),
        })
    }
}

/// Reads and validates the configuration file: the one validator of the start, `latchkey
/// check` and a reload (`SIGHUP`, `[server] watch_config`), which therefore accept and refuse
/// the same files with the same problems (file, line, connector, field).
pub fn load_config(path: &Path) -> Result<Config, ConfigErrors> {
    config_from(path, std::fs::read(path))
}

/// [`load_config`] of `bytes` read from `path` (the watch hashes what it parses).
pub fn config_from(path: &Path, bytes: std::io::Result<Vec<u8>>) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = bytes
        .map_err(|e| e.to_string())
        .and_then(|b| String::from_utf8(b).map_err(|_| "it is not UTF-8 text".to_owned()))
        .map_err(|e| ConfigErrors::one(Problem::file(&file, format!("cannot read the file: {e}"))))?;
    Config::parse(&text, &file)
}

/// The values of the environment variables that `config`'s `{ env = "VAR" }` references name
/// (those set), read from the process environment (only this crate reads it).
pub fn env_vars_for(config: &Config) -> BTreeMap<String, SecretString> {
    let mut env_vars = BTreeMap::new();
    let server_refs = config.server.webhook_secret.iter().map(|r| ("webhook_secret", r));
    for conn in config.connectors.values() {
        for (_, r) in conn.auth.secret_refs().into_iter().chain(server_refs.clone()) {
            if let SecretRef::Env(var) = r
                && let Ok(v) = std::env::var(var)
            {
                env_vars.insert(var.clone(), SecretString::from(v));
            }
        }
    }
    // A file without connectors still has the server's references.
    for (_, r) in server_refs {
        if let SecretRef::Env(var) = r
            && let Ok(v) = std::env::var(var)
        {
            env_vars.insert(var.clone(), SecretString::from(v));
        }
    }
    env_vars
}

impl Settings {
    /// The SQLite database file the store URL names (`None` for PostgreSQL or an in-memory one).
    pub fn sqlite_file(&self) -> Option<PathBuf> {
        let url = &self.database_url;
        let scheme_len = url.find(':')?;
        if !url[..scheme_len].eq_ignore_ascii_case("sqlite") {
            return None;
        }
        let rest = &url[scheme_len + 1..];
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() || path == ":memory:" || query.contains("mode=memory") {
            return None;
        }
        Some(PathBuf::from(path))
    }

    /// Where the store is, for messages: the SQLite file, or the URL without its password.
    pub fn store_location(&self) -> String {
        match self.sqlite_file() {
            Some(path) => path.display().to_string(),
            None => latchkey_store::redact_url(&self.database_url),
        }
    }
}
