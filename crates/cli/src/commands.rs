//! `check`, `secret`, `key` and `call`.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context, bail};
use http_body_util::BodyExt as _;
use latchkey_core::Env;
use latchkey_core::store::KeyKind;
use latchkey_core::time_fmt::rfc3339;
use secrecy::{ExposeSecret, SecretString};

use crate::settings::Settings;
use crate::start;

#[derive(clap::Subcommand)]
pub enum SecretCommand {
    /// Store a secret's value, read from standard input (one trailing newline is removed).
    Set {
        name: String,
        /// The environment of this value
        #[arg(long, default_value = "live")]
        env: Env,
    },
    /// List secret names, environments and update times (never values).
    List,
    /// Remove a secret (all its environments).
    Rm { name: String },
}

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Create an app key for one environment; it is printed once.
    Create {
        #[arg(long)]
        env: Env,
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[derive(clap::Args)]
pub struct CallArgs {
    connector: String,
    call: String,
    /// A parameter: `name=text`, or `name:=json` for a JSON value (number, list, object)
    #[arg(short = 'p', long = "param")]
    params: Vec<String>,
    /// The environment whose credentials to use
    #[arg(long, default_value = "live")]
    env: Env,
    /// Whose connection to use, for per-user connectors
    #[arg(long)]
    user: Option<String>,
}

pub async fn check(settings: Settings, live: bool, env: Env) -> anyhow::Result<ExitCode> {
    // The configuration was validated while resolving settings; reaching here means it is valid.
    let file = settings.config_file.as_ref().map_or("(no configuration file)".to_owned(), |p| p.display().to_string());
    let n = settings.config.connectors.len();
    println!("{file}: ok, {n} connector{}", if n == 1 { "" } else { "s" });
    let key_available = settings.master_key.is_some() || settings.data_dir.join("master.key").exists();
    if !key_available && !live {
        println!("(no store yet: secrets not checked)");
        return Ok(ExitCode::SUCCESS);
    }
    let engine = start::engine(&settings).await?;
    let missing = engine.admin().missing_secrets();
    for p in &missing {
        println!("warning: {p}");
    }
    if !live {
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0;
    let mut names: Vec<String> = settings.config.connectors.keys().cloned().collect();
    names.extend(engine.connectors().iter().filter(|c| !c.from_file).map(|c| c.name.clone()));
    for name in names {
        match engine.obtain_token(&name, env).await {
            Ok(None) => println!(
                "{name}: no token needed ({})",
                engine.connector(&name).map_or("?", |c| c.config.auth.method())
            ),
            Ok(Some(0)) => println!("{name}: ok, token obtained ({env}; no expiry given)"),
            Ok(Some(exp)) => println!("{name}: ok, token obtained ({env}; expires {})", rfc3339(exp)),
            Err(e) => {
                failed += 1;
                println!("{name}: FAILED: {}", e.message);
            }
        }
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Writes one record to the audit log before the command acts, when there is a log; a record
/// that cannot be written stops the command (SECURITY S8: fail closed).
fn audit(
    log: Option<&latchkey_server::Audit>,
    kind: &str,
    fields: impl FnOnce(&latchkey_server::Audit) -> serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let Some(log) = log else { return Ok(()) };
    let mut f = fields(log);
    f.insert("caller".into(), "cli".into());
    log.record(kind, f).map_err(|e| anyhow::anyhow!("{}: nothing was done", e.message()))
}

fn named(what: &str, name: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut f = serde_json::Map::new();
    f.insert(what.into(), name.into());
    f
}

pub async fn secret(settings: Settings, cmd: SecretCommand) -> anyhow::Result<ExitCode> {
    let engine = start::engine(&settings).await?;
    let log = start::audit_log(&settings, engine.audit_key()).await?;
    match cmd {
        SecretCommand::Set { name, env } => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("cannot read the value from standard input")?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            let value = SecretString::from(text);
            if value.expose_secret().is_empty() {
                bail!("no value on standard input: pipe it in, e.g. `printf %s \"$KEY\" | latchkey secret set {name}`");
            }
            audit(log.as_ref(), "secret.put", |_| {
                let mut f = named("secret", &name);
                f.insert("environment".into(), env.as_str().into());
                f
            })?;
            let info = engine.admin().put_secret(&name, env, &value).await?;
            let envs: Vec<&str> = info.environments.iter().map(|e| e.as_str()).collect();
            println!("secret `{}` set for {env} (has: {})", info.name, envs.join(", "));
        }
        SecretCommand::List => {
            let list = engine.admin().list_secrets().await?;
            if list.is_empty() {
                println!("no secrets");
            }
            for s in list {
                let envs: Vec<&str> = s.environments.iter().map(|e| e.as_str()).collect();
                println!("{}\t{}\t{}", s.name, envs.join(","), rfc3339(s.updated_at));
            }
        }
        SecretCommand::Rm { name } => {
            audit(log.as_ref(), "secret.delete", |_| named("secret", &name))?;
            if !engine.admin().delete_secret(&name).await? {
                bail!("no secret named `{name}`");
            }
            println!("secret `{name}` removed");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn key(settings: Settings, cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    let engine = start::engine(&settings).await?;
    let log = start::audit_log(&settings, engine.audit_key()).await?;
    match cmd {
        KeyCommand::Create { env, name } => {
            audit(log.as_ref(), "key.create", |_| {
                let mut f = named("key", &name);
                f.insert("environment".into(), env.as_str().into());
                f
            })?;
            let new = engine.admin().create_key(KeyKind::App(env), &name).await?;
            eprintln!("Created {env} app key {} (shown only this once):", new.row.id);
            println!("{}", new.key.expose_secret());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_params(params: &[String]) -> anyhow::Result<serde_json::Value> {
    let mut map = serde_json::Map::new();
    for p in params {
        let (name, value) = if let Some((n, json)) = p.split_once(":=") {
            let v =
                serde_json::from_str(json).with_context(|| format!("-p {n}:= takes JSON, which `{json}` is not"))?;
            (n, v)
        } else if let Some((n, text)) = p.split_once('=') {
            (n, serde_json::Value::String(text.to_owned()))
        } else {
            bail!("-p takes `name=value` or `name:=json`, not `{p}`");
        };
        map.insert(name.to_owned(), value);
    }
    Ok(serde_json::Value::Object(map))
}

pub async fn call(settings: Settings, args: CallArgs) -> anyhow::Result<ExitCode> {
    let params = parse_params(&args.params)?;
    let engine = start::engine(&settings).await?;
    let log = start::audit_log(&settings, engine.audit_key()).await?;
    audit(log.as_ref(), "call", |a| {
        let mut f = named("connector", &args.connector);
        f.insert("call".into(), args.call.as_str().into());
        f.insert("environment".into(), args.env.as_str().into());
        if let Some(u) = &args.user {
            f.insert("user".into(), a.hash(u).into());
        }
        f
    })?;
    let response = match engine.call(args.env, &args.connector, &args.call, &params, args.user.as_deref()).await {
        Ok(r) => r,
        Err(e) => bail!("{}: {}", e.code, e.message),
    };
    eprintln!("HTTP {}", response.status);
    for (name, value) in &response.headers {
        eprintln!("{name}: {}", value.to_str().unwrap_or("(binary)"));
    }
    let mut out = std::io::stdout().lock();
    let mut body = response.body;
    while let Some(frame) = body.frame().await {
        if let Ok(chunk) = frame.context("the upstream's body was cut off")?.into_data() {
            out.write_all(&chunk)?;
        }
    }
    out.flush()?;
    Ok(if response.status.is_success() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Make a new signing key: published in the JWKS at once, signing after 5 minutes (or at
    /// once with --now); old keys stay in the JWKS until their tokens expired.
    Rotate {
        /// RS256 (default, or `[server] token_algorithm`), ES256 or EdDSA
        #[arg(long)]
        algorithm: Option<String>,
        /// Sign with the new key at once (verifiers with a cached JWKS may refuse new tokens)
        #[arg(long)]
        now: bool,
    },
}

pub async fn keys(settings: Settings, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let engine = start::engine(&settings).await?;
    let log = start::audit_log(&settings, engine.audit_key()).await?;
    match cmd {
        KeysCommand::Rotate { algorithm, now } => {
            let alg = match algorithm.as_deref() {
                None => None,
                Some(a) => Some(
                    latchkey_vault::identity::SigningAlg::parse(a)
                        .ok_or_else(|| anyhow::anyhow!("`{a}` is not offered: use RS256, ES256 or EdDSA"))?,
                ),
            };
            audit(log.as_ref(), "signing_key.rotate", |_| {
                let mut f = serde_json::Map::new();
                f.insert("algorithm".into(), alg.map_or("default", |a| a.as_str()).into());
                f.insert("now".into(), now.into());
                f
            })?;
            let row = engine.identity().rotate_signing_key(alg, now).await?;
            println!(
                "new signing key {} ({}): published now, signs from {}",
                row.kid,
                row.alg,
                rfc3339(row.activates_at)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Subcommand)]
pub enum VaultCommand {
    /// A new master key: every sealed value is re-sealed under it while servers keep serving
    /// (they pick the new key up from the data directory within a second). Safe to interrupt
    /// and run again. The old key is kept as `master.key.previous`.
    Rotate,
}

pub async fn vault(settings: Settings, cmd: VaultCommand) -> anyhow::Result<ExitCode> {
    let VaultCommand::Rotate = cmd;
    if settings.master_key.is_some() {
        bail!(
            "vault rotate works on the key file in the data directory; with LATCHKEY_MASTER_KEY, \
             write the key to <data-dir>/master.key (mode 0600), unset the variable, and run it again"
        );
    }
    let (store, vault) = start::open(&settings).await?;
    // Re-sealing changes every sealed credential: its record is written before anything is
    // (SECURITY S8), including the new key's file, which running servers start sealing with.
    let log = start::audit_log(&settings, latchkey_core::engine::audit::key(store.as_ref(), &vault)).await?;
    let dir = &settings.data_dir;
    let next_path = dir.join(start::NEXT_KEY_FILE);
    let (next, resumed) = match std::fs::read_to_string(&next_path) {
        Ok(text) => {
            eprintln!("resuming the rotation to the key in {}", next_path.display());
            let k = latchkey_vault::MasterKey::from_base64(&text)
                .map_err(|e| anyhow::anyhow!("{} is not usable: {e}", next_path.display()))?;
            (k, true)
        }
        Err(_) => (latchkey_vault::MasterKey::generate(), false),
    };
    audit(log.as_ref(), "vault.rotate", |_| {
        let mut f = serde_json::Map::new();
        f.insert("master_key".into(), next.id().to_hex().into());
        f.insert("resumed".into(), resumed.into());
        f
    })?;
    if !resumed {
        start::write_key_file(&next_path, &next)?;
    }
    vault.promote(&next);
    eprintln!(
        "new master key {} written to {}; waiting 3 s for running servers to load it",
        next.id(),
        next_path.display()
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let report = latchkey_core::engine::rotate::reseal_all(store.as_ref(), &vault).await.map_err(anyhow::Error::msg)?;
    // Swap the files: the old key becomes master.key.previous, the new one master.key.
    let key_path = dir.join("master.key");
    let previous = dir.join(start::PREVIOUS_KEY_FILE);
    if key_path.exists() {
        std::fs::rename(&key_path, &previous).with_context(|| format!("cannot move {} aside", key_path.display()))?;
    }
    std::fs::rename(&next_path, &key_path).with_context(|| format!("cannot install {}", key_path.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    println!(
        "rotated to master key {}: {} values re-sealed ({} passes). The old key is in {}: keep it until no backup needs it, then delete it.",
        next.id(),
        report.resealed,
        report.passes,
        previous.display()
    );
    Ok(ExitCode::SUCCESS)
}
