//! Opening the store with the right master key, and `latchkey serve`.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use latchkey_core::engine::{Engine, EngineSettings, KeyCheck, check_master_key};
use latchkey_core::store::{KeyKind, Store};
use latchkey_vault::{MasterKey, Vault};
use secrecy::ExposeSecret;

use crate::settings::Settings;

const KEY_FILE: &str = "master.key";
pub const NEXT_KEY_FILE: &str = "master.key.next";
pub const PREVIOUS_KEY_FILE: &str = "master.key.previous";

/// Whether a command may make a store when there is none.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read-only commands (and those that change only what is there): nothing is created or
    /// migrated; with no store they say where they looked and how to make one, and with an
    /// older schema that `latchkey serve` migrates it.
    Existing,
    /// Commands that write: a missing store is created (and its schema migrated), and they say so.
    CreateIfMissing,
}

/// A read-only command found no store (see [`no_store_message`]).
#[derive(Debug)]
struct NoStore(String);

impl std::fmt::Display for NoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NoStore {}

fn no_store(settings: &Settings) -> anyhow::Error {
    anyhow::Error::new(NoStore(no_store_message(settings)))
}

/// Where a read-only command looked for a store, and how to make one.
pub fn no_store_message(settings: &Settings) -> String {
    let looked = match settings.sqlite_file() {
        Some(path) => format!(
            "no store at {} (the SQLite database in the data directory {}; set with --data-dir or LATCHKEY_DATA_DIR, \
             or --database-url / LATCHKEY_DATABASE_URL)",
            path.display(),
            settings.data_dir.display()
        ),
        None => format!(
            "the database {} holds no Latchkey store yet (set with --database-url or LATCHKEY_DATABASE_URL)",
            settings.store_location()
        ),
    };
    format!(
        "{looked}. Create one with `latchkey serve`, `latchkey secret set NAME` or `latchkey key create --env dev` \
         (run where the store should live), or point these settings at an existing store"
    )
}

/// Whether the store exists without opening it: the SQLite file is there (PostgreSQL: `None`,
/// only opening tells).
pub fn sqlite_store_exists(settings: &Settings) -> Option<bool> {
    settings.sqlite_file().map(|p| p.exists())
}

/// Opens the store and the vault, and proves that the key belongs to the store. On a new
/// store (only with [`Need::CreateIfMissing`]), a missing key is generated (mode 0600); on an
/// existing one it never is.
pub async fn open(settings: &Settings, need: Need) -> anyhow::Result<(Arc<dyn Store>, Arc<Vault>)> {
    if need == Need::Existing && sqlite_store_exists(settings) == Some(false) {
        return Err(no_store(settings));
    }
    if need == Need::CreateIfMissing && (settings.database_url.starts_with("sqlite:") || settings.master_key.is_none())
    {
        create_private_dir(&settings.data_dir)?;
    }
    let how = match need {
        Need::Existing => latchkey_store::Open::Existing,
        Need::CreateIfMissing => latchkey_store::Open::Migrate,
    };
    let store = match latchkey_store::open(&settings.database_url, how).await {
        Ok(store) => store,
        Err(latchkey_store::OpenError::NoStore) => return Err(no_store(settings)),
        Err(latchkey_store::OpenError::Store(e)) => {
            return Err(anyhow::Error::new(e))
                .context("cannot open the store (check --database-url / LATCHKEY_DATABASE_URL)");
        }
        Err(e) => bail!("the store at {}: {e}", settings.store_location()),
    };
    let store_is_new = store.get_meta("vault.key_check").await?.is_none();
    if store_is_new && need == Need::Existing {
        return Err(no_store(settings));
    }
    let key = master_key(settings, store_is_new)?;
    let vault = Arc::new(Vault::new(&key));
    if let Some(seals) = settings.config.server.data_key_max_seals {
        vault.set_data_key_budget(seals);
    }
    if settings.master_key.is_none() {
        // A rotation in progress (or interrupted): the next key seals, the previous one opens.
        for (file, promote) in [(NEXT_KEY_FILE, true), (PREVIOUS_KEY_FILE, false)] {
            let path = settings.data_dir.join(file);
            if let Ok(text) = std::fs::read_to_string(&path) {
                let k = MasterKey::from_base64(&text)
                    .map_err(|e| anyhow::anyhow!("{} is not usable: {e}", path.display()))?;
                if promote { vault.promote(&k) } else { vault.add_old_key(&k) }
            }
        }
    }
    match check_master_key(store.as_ref(), &vault).await.map_err(anyhow::Error::msg)? {
        KeyCheck::Initialized => {
            tracing::info!(key_id = %vault.active_key_id(), "new store sealed with master key");
            eprintln!("Created a new store at {} (master key {}).", settings.store_location(), vault.active_key_id());
        }
        KeyCheck::Matches => {}
    }
    Ok((store, vault))
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

fn master_key(settings: &Settings, store_is_new: bool) -> anyhow::Result<MasterKey> {
    if let Some(text) = &settings.master_key {
        return MasterKey::from_base64(text.expose_secret())
            .map_err(|e| anyhow::anyhow!("LATCHKEY_MASTER_KEY is not usable: {e}"));
    }
    let path = settings.data_dir.join(KEY_FILE);
    if path.exists() {
        let meta = std::fs::metadata(&path)?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the master key file is readable by other users: chmod 600 it");
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return MasterKey::from_base64(&text).map_err(|e| anyhow::anyhow!("{} is not usable: {e}", path.display()));
    }
    // Interrupted between the two renames of `vault rotate`: the next key is the key.
    if let Ok(text) = std::fs::read_to_string(settings.data_dir.join(NEXT_KEY_FILE)) {
        return MasterKey::from_base64(&text).map_err(|e| anyhow::anyhow!("{NEXT_KEY_FILE} is not usable: {e}"));
    }
    if !store_is_new {
        bail!(
            "this store already holds data sealed with a master key, but no key was given: neither \
             LATCHKEY_MASTER_KEY nor {} exists. Restore the key file (or set LATCHKEY_MASTER_KEY); \
             Latchkey never re-keys an existing store. Nothing was changed.",
            path.display()
        );
    }
    let key = MasterKey::generate();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(key.to_base64().expose_secret().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    eprintln!(
        "Generated a new master key in {} (mode 0600): back it up; without it the store cannot be opened.",
        path.display()
    );
    Ok(key)
}

/// Writes a key file (mode 0600) durably.
pub fn write_key_file(path: &Path, key: &MasterKey) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(key.to_base64().expose_secret().as_bytes())?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The engine for a command that does not listen (its public URL is the configured one).
/// The engine over the existing store, or `None` when there is none (nothing is created).
pub async fn engine_if_exists(settings: &Settings) -> anyhow::Result<Option<Arc<Engine>>> {
    match engine(settings, Need::Existing).await {
        Ok(e) => Ok(Some(e)),
        Err(e) if e.downcast_ref::<NoStore>().is_some() => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn engine(settings: &Settings, need: Need) -> anyhow::Result<Arc<Engine>> {
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{}", settings.listen));
    engine_at(settings, public_url, need).await
}

async fn engine_at(settings: &Settings, public_url: String, need: Need) -> anyhow::Result<Arc<Engine>> {
    let (store, vault) = open(settings, need).await?;
    let engine = Engine::start(
        store,
        vault,
        EngineSettings {
            config: settings.config.clone(),
            env_vars: settings.env_vars.clone(),
            bootstrap_admin_key: settings.admin_key.clone(),
            public_url,
            fault: settings.fault.clone(),
            key_dir: settings.master_key.is_none().then(|| settings.data_dir.clone()),
            clock: None,
            token_endpoint: None,
        },
    )
    .await?;
    Ok(engine)
}

pub async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    init_logging(settings.log_format);
    let hangup = crate::reload::catch_hangup();
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let public_url = settings.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let engine = engine_at(&settings, public_url.clone(), Need::CreateIfMissing).await?;
    if settings.admin_key.is_none() {
        let keys = engine.admin().list_keys().await?;
        if !keys.iter().any(|k| k.kind == KeyKind::Admin) {
            let new = engine.admin().create_key(KeyKind::Admin, "first admin key").await?;
            println!("Admin key (shown only this once; keep it safe): {}", new.key.expose_secret());
        }
    }
    engine.identity().ensure_signing_key().await?;
    for p in engine.admin().missing_secrets() {
        tracing::warn!("{p}");
    }
    tokio::spawn(engine.clone().sync_forever(settings.sync_every));
    tokio::spawn(engine.clone().keepalive_forever(Duration::from_secs(60)));
    tokio::spawn(engine.clone().sweep_forever(latchkey_core::engine::sweep::SWEEP_EVERY));
    crate::reload::spawn(engine.clone(), settings.config_file.clone(), hangup);
    tracing::info!(%public_url, "public URL");
    println!("Latchkey listening on http://{addr}");
    let mut state = latchkey_server::AppState::new(engine.clone());
    if let Some(audit) = audit_log(&settings, engine.audit_key()).await? {
        state = state.with_audit(audit);
        tracing::info!(path = %settings.config.server.audit_log.as_deref().unwrap_or_default(), "writing the audit log");
    }
    latchkey_server::serve_threaded(listener, state, settings.threads, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}

/// Logs to standard error, filtered by `LATCHKEY_LOG` (default `info`): text, or with
/// `format = Json` one JSON object per line (`timestamp`, `level`, `message` and the event's
/// fields at the top level), for log collectors.
pub fn init_logging(format: latchkey_core::config::LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("LATCHKEY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match format {
        latchkey_core::config::LogFormat::Json => {
            builder.json().flatten_event(true).with_current_span(false).with_span_list(false).try_init()
        }
        latchkey_core::config::LogFormat::Text => {
            builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init()
        }
    };
}

/// The audit log, when `[server] audit_log` is set (SECURITY S8): the server writes it, and so
/// do the commands that use or change a credential, appending to the same file under the same
/// key (`key`, the install's audit key, is read only when there is a log).
pub async fn audit_log(
    settings: &Settings,
    key: impl Future<Output = Result<latchkey_vault::HmacKey, latchkey_core::engine::AuditKeyError>>,
) -> anyhow::Result<Option<latchkey_server::Audit>> {
    let Some(path) = &settings.config.server.audit_log else { return Ok(None) };
    let key = key.await.map_err(|e| anyhow::anyhow!("server.audit_log: {e}"))?;
    let audit = latchkey_server::Audit::open(std::path::Path::new(path), key)
        .with_context(|| format!("server.audit_log: cannot open `{path}` for appending"))?;
    Ok(Some(audit))
}
