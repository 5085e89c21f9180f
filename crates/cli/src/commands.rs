//! `check`, `secret`, `key`, `call`, `keys` and `vault`.

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context, bail};
use http_body_util::BodyExt as _;
use latchkey_core::Env;
use latchkey_core::config::SecretRef;
use latchkey_core::store::KeyKind;
use latchkey_core::time_fmt::rfc3339;
use secrecy::{ExposeSecret, SecretString};

use crate::settings::Settings;
use crate::start::{self, Need};
use latchkey_server::wire;

/// `live` or `dev`, with its possible values shown in `--help`.
pub fn env_arg() -> impl clap::builder::TypedValueParser<Value = Env> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["live", "dev"]).map(|s| if s == "dev" { Env::Dev } else { Env::Live })
}

#[derive(clap::Subcommand)]
pub enum SecretCommand {
    /// Store a secret's value: typed at a prompt that does not echo it, or read from standard
    /// input when that is a pipe (one trailing newline is removed).
    Set {
        /// The secret's name, as the configuration names it (`{ secret = "NAME" }`)
        #[arg(value_name = "NAME")]
        name: String,
        /// The environment of this value
        #[arg(long, default_value = "live", value_name = "ENV", value_parser = env_arg())]
        env: Env,
    },
    /// List secret names, environments and update times (never values).
    List {
        /// Print `{"secrets": [...]}`, the body of `GET /v1/admin/secrets`
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret (all its environments).
    Rm {
        /// The secret's name
        #[arg(value_name = "NAME")]
        name: String,
    },
}

#[derive(clap::Subcommand)]
pub enum KeyCommand {
    /// Create an app key for one environment; it is printed once.
    Create {
        /// The environment the key reaches
        #[arg(long, value_name = "ENV", value_parser = env_arg())]
        env: Env,
        /// A label to tell keys apart in `key list`
        #[arg(long, default_value = "", value_name = "TEXT")]
        name: String,
    },
    /// List admin and app keys: id, kind, environment, name, prefix, times (never the keys).
    List {
        /// Print `{"keys": [...]}`, the body of `GET /v1/admin/keys`
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: calls with it are refused from then on (a running server notices within a second).
    Rm {
        /// The key's id, as `key list` shows it
        #[arg(value_name = "ID")]
        id: String,
    },
}

#[derive(clap::Args)]
pub struct CallArgs {
    /// The connector's name
    #[arg(value_name = "CONNECTOR")]
    connector: String,
    /// The named call, from `[connectors.NAME.calls.CALL]`
    #[arg(value_name = "CALL")]
    call: String,
    /// A parameter: `name=text`, or `name:=json` for a JSON value (number, list, object)
    #[arg(short = 'p', long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// The environment whose credentials to use
    #[arg(long, default_value = "live", value_name = "ENV", value_parser = env_arg())]
    env: Env,
    /// Whose connection to use, for per-user connectors
    #[arg(long, value_name = "USER")]
    user: Option<String>,
}

#[derive(clap::Args)]
pub struct CheckArgs {
    /// Also run every connector's token grant against its provider (a full grant, never a
    /// stored token or refresh token) and say per connector what was done
    #[arg(long)]
    live: bool,
    /// With --live: obtain tokens as a call would (the stored token, or a refresh) instead of a full grant
    #[arg(long, requires = "live")]
    reuse_tokens: bool,
    /// The environment whose credentials `--live` uses
    #[arg(long, default_value = "live", value_name = "ENV", value_parser = env_arg())]
    env: Env,
    /// Exit non-zero when a secret the connectors name is missing (from the store or the environment)
    #[arg(long)]
    strict: bool,
}

pub async fn check(settings: Settings, args: CheckArgs) -> anyhow::Result<ExitCode> {
    // The configuration was validated while resolving settings; reaching here means it is valid.
    let file = settings.config_file.as_ref().map_or("(no configuration file)".to_owned(), |p| p.display().to_string());
    let n = settings.config.connectors.len();
    println!("{file}: ok, {n} connector{}", if n == 1 { "" } else { "s" });
    let Some(engine) = start::engine_if_exists(&settings).await? else {
        if args.live {
            bail!("{}", start::no_store_message(&settings));
        }
        println!("no store at {}: secrets in the vault not checked", settings.store_location());
        let mut missing = 0;
        for (name, conn) in &settings.config.connectors {
            for (field, r) in conn.auth.secret_refs() {
                let absent = match r {
                    SecretRef::Vault(_) => true,
                    SecretRef::Env(var) => !settings.env_vars.contains_key(var),
                };
                if absent {
                    missing += 1;
                    println!("warning: connector `{name}`, field `auth.{field}`: {r} is missing");
                }
            }
        }
        return Ok(if args.strict && missing > 0 {
            println!("{missing} secret{} missing (--strict)", if missing == 1 { " is" } else { "s are" });
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        });
    };
    let missing = engine.admin().missing_secrets();
    for p in &missing {
        println!("warning: {p}");
    }
    if args.strict && !missing.is_empty() {
        println!("{} secret problem{} (--strict)", missing.len(), if missing.len() == 1 { "" } else { "s" });
        if !args.live {
            return Ok(ExitCode::FAILURE);
        }
    }
    if !args.live {
        return Ok(ExitCode::SUCCESS);
    }
    let mut connectors = engine.connectors();
    connectors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut failed = 0;
    for conn in connectors {
        let (ok, what) = live_check(&engine, &conn, args.env, args.reuse_tokens).await;
        if !ok {
            failed += 1;
        }
        println!("{}: {what}", conn.name);
    }
    let strict_failed = args.strict && !missing.is_empty();
    Ok(if failed == 0 && !strict_failed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What `check --live` does for one connector, and whether it worked.
async fn live_check(
    engine: &latchkey_core::engine::Engine,
    conn: &latchkey_core::engine::ConnectorRuntime,
    env: Env,
    reuse: bool,
) -> (bool, String) {
    use latchkey_core::auth::Credential;
    let method = conn.config.auth.method();
    let prepared = match conn.credential(env) {
        Ok(p) => p,
        Err(e) => return (false, format!("FAILED ({env}): {}", e.message)),
    };
    let src = match &prepared.credential {
        Credential::None => return (true, format!("nothing to obtain ({method}: no credential)")),
        Credential::Static(_) => {
            return (true, format!("nothing to obtain ({method}: a static credential, prepared from its secrets)"));
        }
        Credential::Digest(_) => {
            return (
                true,
                format!(
                    "nothing to obtain ({method}: prepared from its secrets; the upstream's challenge comes with the first call)"
                ),
            );
        }
        Credential::OAuth1(o) if o.flow.is_none() => {
            return (true, format!("nothing to obtain ({method}: prepared from its secrets, signed per request)"));
        }
        Credential::User(_) | Credential::OAuth1(_) => {
            return (
                true,
                format!(
                    "skipped ({method}): tokens come from each user's browser flow; nothing to obtain without a user"
                ),
            );
        }
        Credential::PerUser(_) => {
            return (
                true,
                format!(
                    "skipped ({method}, per_user): each user's values arrive with PUT /v1/connections/{}; nothing to obtain without a user",
                    conn.name
                ),
            );
        }
        Credential::Identity { .. } => {
            return (true, format!("nothing to obtain ({method}: Latchkey signs its own tokens)"));
        }
        Credential::Token(src) => src,
    };
    if reuse {
        return match engine.obtain_token(&conn.name, env).await {
            Ok(exp) => {
                (true, format!("ok ({env}, {method}): a token as calls get it (stored, or refreshed){}", expiry(exp)))
            }
            Err(e) => (false, format!("FAILED ({env}, {method}): {}", e.message)),
        };
    }
    let now = latchkey_core::time_fmt::now_ms();
    let request = match src.grant.request(now) {
        Ok(r) => r,
        Err(e) => return (false, format!("FAILED ({env}, {method}): cannot build the token request: {}", e.message)),
    };
    let url = request.url.clone();
    match latchkey_core::token::request_token(&src.client, &request, src.timeout, now).await {
        Ok(set) => (
            true,
            format!(
                "ok ({env}, {method}): full grant at {url}: token obtained{}{}; not stored",
                expiry(set.expires_at),
                if set.refresh_token.is_some() { ", with a refresh token" } else { "" },
            ),
        ),
        Err(e) => {
            (false, format!("FAILED ({env}, {method}): full grant at {url}: {}", e.to_call_error(&conn.name).message))
        }
    }
}

fn expiry(expires_at: Option<i64>) -> String {
    match expires_at {
        None | Some(0) => " (no expiry given)".to_owned(),
        Some(exp) => format!(" (expires {})", rfc3339(exp)),
    }
}

/// Writes one record to the audit log before the command acts, when there is a log; a record
/// that cannot be written stops the command (SECURITY S8: fail closed).
pub(crate) fn audit(
    log: Option<&latchkey_server::Audit>,
    kind: &str,
    fields: impl FnOnce(&latchkey_server::Audit) -> serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let Some(log) = log else { return Ok(()) };
    let mut f = fields(log);
    f.insert("caller".into(), "cli".into());
    log.record(kind, f).map_err(|e| anyhow::anyhow!("{}: nothing was done", e.message()))
}

pub(crate) fn named(what: &str, name: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut f = serde_json::Map::new();
    f.insert(what.into(), name.into());
    f
}

/// A secret's value: from a prompt that does not echo when standard input is a terminal,
/// else read whole from standard input (one trailing newline removed).
fn read_value(name: &str, env: Env) -> anyhow::Result<SecretString> {
    use std::io::IsTerminal as _;
    let text = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Value of secret `{name}` ({env}; not shown): "))
            .context("cannot read the value from the terminal")?
    } else {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("cannot read the value from standard input")?;
        if text.ends_with('\n') {
            text.pop();
            if text.ends_with('\r') {
                text.pop();
            }
        }
        text
    };
    let value = SecretString::from(text);
    if value.expose_secret().is_empty() {
        bail!(
            "no value on standard input: type it at the prompt, or pipe it in, e.g. `printf %s \"$KEY\" | latchkey secret set {name}`"
        );
    }
    Ok(value)
}

/// `what` as JSON on standard output, followed by a newline.
pub fn print_json(what: &impl serde::Serialize) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, what)?;
    writeln!(out)?;
    Ok(())
}

pub async fn secret(settings: Settings, cmd: SecretCommand) -> anyhow::Result<ExitCode> {
    let need = match cmd {
        SecretCommand::Set { .. } => Need::CreateIfMissing,
        SecretCommand::List { .. } | SecretCommand::Rm { .. } => Need::Existing,
    };
    // The value is read before the store is opened: a prompt is not kept waiting behind it.
    let value = match &cmd {
        SecretCommand::Set { name, env } => Some(read_value(name, *env)?),
        _ => None,
    };
    let engine = start::engine(&settings, need).await?;
    let log = start::audit_log(&settings, engine.audit_key()).await?;
    match cmd {
        SecretCommand::Set { name, env } => {
            let Some(value) = value else { bail!("no value read") };
            audit(log.as_ref(), "secret.put", |_| {
                let mut f = named("secret", &name);
                f.insert("environment".into(), env.as_str().into());
                f
            })?;
            let info = engine.admin().put_secret(&name, env, &value).await?;
            let envs: Vec<&str> = info.environments.iter().map(|e| e.as_str()).collect();
            println!("secret `{}` set for {env} (has: {})", info.name, envs.join(", "));
        }
        SecretCommand::List { json } => {
            let list = engine.admin().list_secrets().await?;
            if json {
                print_json(&wire::Secrets { has_more: false, secrets: list.iter().map(wire::Secret::from).collect() })?;
                return Ok(ExitCode::SUCCESS);
            }
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
    let need = match cmd {
        KeyCommand::Create { .. } => Need::CreateIfMissing,
        KeyCommand::List { .. } | KeyCommand::Rm { .. } => Need::Existing,
    };
    let engine = start::engine(&settings, need).await?;
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
        KeyCommand::List { json } => {
            let keys = engine.admin().list_keys().await?;
            let keys: Vec<wire::Key> = keys.iter().map(wire::Key::from).collect();
            if json {
                print_json(&wire::Keys { has_more: false, keys })?;
                return Ok(ExitCode::SUCCESS);
            }
            if keys.is_empty() {
                println!("no keys");
            } else {
                println!("ID\tKIND\tENV\tPREFIX\tNAME\tCREATED\tLAST USED");
            }
            for k in keys {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.kind,
                    k.environment.unwrap_or("-"),
                    k.prefix,
                    if k.name.is_empty() { "-" } else { k.name },
                    k.created_at,
                    k.last_used_at.as_deref().unwrap_or("never"),
                );
            }
        }
        KeyCommand::Rm { id } => {
            audit(log.as_ref(), "key.delete", |_| named("key", &id))?;
            if !engine.admin().delete_key(&id).await? {
                bail!("no key with id `{id}` (see `latchkey key list`)");
            }
            println!("key `{id}` removed: it is refused from now on");
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
    let engine = start::engine(&settings, Need::Existing).await?;
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
        /// The new key's algorithm [default: RS256, or `[server] token_algorithm`]
        #[arg(long, value_name = "ALG", value_parser = ["RS256", "ES256", "EdDSA"])]
        algorithm: Option<String>,
        /// Sign with the new key at once (verifiers with a cached JWKS may refuse new tokens)
        #[arg(long)]
        now: bool,
    },
}

pub async fn keys(settings: Settings, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    let engine = start::engine(&settings, Need::CreateIfMissing).await?;
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
    let (store, vault) = start::open(&settings, Need::Existing).await?;
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
