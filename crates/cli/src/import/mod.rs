//! `latchkey import curl|openapi|postman`: a pasted cURL command, an OpenAPI (or Swagger)
//! document or a Postman collection becomes a connector with named calls. Each importer is a
//! pure function from text to a connector in the `latchkey-import` crate (shared with the
//! console's import page); this module reads the document (a file, standard input or a URL),
//! then prints or merges the TOML, and sets or prints the credentials found.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use latchkey_core::Env;
use latchkey_core::config::Config;
use latchkey_import::{Auth, CLIENT_ID_PLACEHOLDER, Connector, Imported, Options, Select};

use crate::settings::Settings;
use crate::start::{self, Need};

/// The largest document read from a file or a URL.
const MAX_DOCUMENT: usize = 16 * 1024 * 1024;
/// How long fetching a document may take, whole.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(clap::Subcommand)]
pub enum ImportCommand {
    /// A pasted cURL command: its method, URL, headers, query and body become one named call;
    /// its credential becomes the auth method, its value kept out of the file
    Curl {
        /// The command (`curl …`, quoted as one argument), or `-` (the default) to read it from
        /// standard input, which keeps a credential out of the shell's history
        #[arg(value_name = "COMMAND", default_value = "-")]
        command: String,
        /// The call's name [default: the method and the path's last word]
        #[arg(long, value_name = "CALL")]
        call: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// An OpenAPI 3.x or Swagger 2.0 document (JSON or YAML): its security scheme becomes the
    /// auth method, its operations named calls
    Openapi {
        /// A file, or an http(s) URL to fetch (at most 16 MiB, 30 s)
        #[arg(value_name = "FILE|URL")]
        source: String,
        /// Only operations with this tag (repeatable)
        #[arg(long, value_name = "TAG")]
        tag: Vec<String>,
        /// Only this operation, by operationId or call name (repeatable)
        #[arg(long, value_name = "ID")]
        operation: Vec<String>,
        #[command(flatten)]
        common: Common,
    },
    /// A Postman collection (v2.1): its requests become named calls, `{{variables}}`
    /// parameters, its auth the auth method
    Postman {
        /// The collection's JSON file
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
}

/// What every importer takes.
#[derive(clap::Args)]
pub struct Common {
    /// The connector's name [default: from the document's title or host]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// The connector's base URL, instead of the document's server (a staging host, a local copy)
    #[arg(long, value_name = "URL")]
    base_url: Option<String>,
    /// Merge the connector into the configuration file (`--config`, else ./latchkey.toml)
    /// instead of printing it; the rest of the file is kept byte for byte
    #[arg(long)]
    write: bool,
    /// With --write: replace a connector of the same name
    #[arg(long, requires = "write")]
    force: bool,
    /// Store the credentials found (a cURL command's, a collection's) in the vault's live
    /// environment at once, instead of printing the `latchkey secret set` commands
    #[arg(long)]
    set_secrets: bool,
}

fn options(common: &Common) -> Options<'_> {
    Options { name: common.name.as_deref(), base_url: common.base_url.as_deref() }
}

pub async fn import(settings: Settings, cmd: ImportCommand) -> anyhow::Result<ExitCode> {
    let (common, imported) = match cmd {
        ImportCommand::Curl { command, call, common } => {
            let text = if command == "-" { read_stdin()? } else { command };
            let imported = latchkey_import::curl(&text, options(&common), call.as_deref())?;
            (common, imported)
        }
        ImportCommand::Openapi { source, tag, operation, common } => {
            let text = read_source(&source).await?;
            let select = Select { tags: tag, operations: operation };
            // The document's own problems name it; the connector's come after.
            let (name, conn) = latchkey_import::openapi::import(&text, common.name.as_deref(), &select)
                .map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
            let imported = latchkey_import::finish(name, conn, common.base_url.as_deref())?;
            (common, imported)
        }
        ImportCommand::Postman { file, common } => {
            let text = read_file(&file)?;
            let (name, conn) = latchkey_import::postman::import(&text, common.name.as_deref())
                .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let imported = latchkey_import::finish(name, conn, common.base_url.as_deref())?;
            (common, imported)
        }
    };
    let Imported { name, connector: conn, toml: text } = imported;
    for note in &conn.notes {
        eprintln!("note: {note}");
    }
    if common.write {
        let path = settings.config_file.clone().unwrap_or_else(|| PathBuf::from("latchkey.toml"));
        write_into(&path, &name, &conn, common.force)?;
        eprintln!(
            "connector `{name}` ({} call{}) written to {}",
            conn.calls.len(),
            plural(conn.calls.len()),
            path.display()
        );
    } else {
        print!("{text}");
    }
    if matches!(conn.auth, Auth::ClientCredentials { .. } | Auth::AuthorizationCode { .. }) {
        eprintln!(
            "note: replace client_id = \"{CLIENT_ID_PLACEHOLDER}\" with the client id the provider gave you; \
             the documents never hold it"
        );
    }
    if common.set_secrets && !conn.found.is_empty() {
        let engine = start::engine(&settings, Need::CreateIfMissing).await?;
        let log = start::audit_log(&settings, engine.audit_key()).await?;
        for (secret, value) in &conn.found {
            crate::commands::audit(log.as_ref(), "secret.put", |_| {
                let mut f = crate::commands::named("secret", secret);
                f.insert("environment".into(), Env::Live.as_str().into());
                f
            })?;
            engine.admin().put_secret(secret, Env::Live, value).await?;
            eprintln!("secret `{secret}` set for live (the value found in the import; never written to the file)");
        }
    } else {
        for (secret, _) in &conn.found {
            eprintln!(
                "note: the credential found was not written to the configuration: store it with \
                 `latchkey secret set {secret}` and paste it at the prompt (or import again with --set-secrets)"
            );
        }
    }
    if let Some(secret) = conn.auth.secret()
        && !conn.found.iter().any(|(s, _)| s == secret)
    {
        eprintln!("note: the connector reads the secret `{secret}`: store it with `latchkey secret set {secret}`");
    }
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin().take(MAX_DOCUMENT as u64).read_to_string(&mut text).context(
        "cannot read the command from standard input (it must be UTF-8 text): paste the `curl …` command, or \
             give it as one quoted argument",
    )?;
    Ok(text)
}

fn read_file(path: &Path) -> anyhow::Result<String> {
    let unreadable = |e: std::io::Error| {
        anyhow::anyhow!("cannot read {} ({e}): check the path and that this user may read the file", path.display())
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT as u64 + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    document_text(bytes, &path.display().to_string())
}

/// The text of a document read whole from `from` (a file or a URL), or why it cannot be
/// imported and what to give instead.
fn document_text(bytes: Vec<u8>, from: &str) -> anyhow::Result<String> {
    if bytes.len() > MAX_DOCUMENT {
        bail!(
            "{from} is larger than {} MiB, more than an import reads: give a smaller document (one part of an API \
             published in several, or this one without its examples)",
            MAX_DOCUMENT >> 20
        );
    }
    String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "{from} is not UTF-8 text: give the document itself (JSON or YAML, not compressed), converted to \
             UTF-8 if it is in another encoding (`iconv -t UTF-8`)"
        )
    })
}

/// A file, or a document fetched from an http(s) URL (bounded in size and time, through the
/// project's one hardened client: no redirects followed, no proxy).
async fn read_source(source: &str) -> anyhow::Result<String> {
    let lower = source.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return read_file(Path::new(source));
    }
    let client = latchkey_core::http::client_builder().timeout(FETCH_TIMEOUT).build().map_err(|e| {
        anyhow::anyhow!(
            "cannot make an HTTP client to fetch the document ({e}): check the system's CA certificates, or \
             download the document and give the file"
        )
    })?;
    let failed = |what: &str, e: reqwest::Error| {
        anyhow::anyhow!(
            "cannot {what} {source} ({e}): check the URL and the network (fetching takes at most {} s), or \
             download the document and give the file",
            FETCH_TIMEOUT.as_secs()
        )
    };
    let fetch = async {
        let mut response = client.get(source).send().await.map_err(|e| failed("fetch", e))?;
        if !response.status().is_success() {
            bail!(
                "{source} answered {}: give the URL that answers the document itself (redirects are not followed: \
                 give the final URL), or download it and give the file",
                response.status()
            );
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| failed("read", e))? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_DOCUMENT {
                break;
            }
        }
        document_text(bytes, source)
    };
    fetch.await
}

/// Merges `conn` into the file at `path` (created when missing), keeping every other byte;
/// the result must pass the validator before it replaces the file.
fn write_into(path: &Path, name: &str, conn: &Connector, force: bool) -> anyhow::Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => bail!(
            "cannot read {} ({e}), the configuration file --write merges into: check the path (--config) and \
             that this user may read it, or import without --write to print the connector",
            path.display()
        ),
    };
    let merged = merge(&existing, name, conn, force).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let file = path.display().to_string();
    if let Err(problems) = Config::parse(&merged, &file) {
        bail!(
            "{file} with the imported connector `{name}` would not pass `latchkey check`, so it was not changed:\n{problems}\n\
             (fix what is listed: a problem elsewhere in the file shows with `latchkey check`; or import without \
             --write to print the connector)"
        );
    }
    let tmp = path.with_file_name(format!(
        ".{}.import-{}",
        path.file_name().map_or("latchkey.toml".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let unwritable = |e: std::io::Error, what: &str, file: &Path| {
        anyhow::anyhow!(
            "cannot {what} {} ({e}), so {} was not changed: check that this user may write to its directory, or \
             import without --write to print the connector",
            file.display(),
            path.display()
        )
    };
    std::fs::write(&tmp, merged.as_bytes()).map_err(|e| unwritable(e, "write", &tmp))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&tmp, meta.permissions());
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        unwritable(e, "replace", path)
    })
}

/// The text of `existing` with `[connectors.NAME]` added (or, with `force`, replaced).
fn merge(existing: &str, name: &str, conn: &Connector, force: bool) -> anyhow::Result<String> {
    let mut doc: toml_edit::DocumentMut = existing.parse().map_err(|e| {
        anyhow::anyhow!(
            "not valid TOML, so nothing was merged into it ({e}): fix the file (`latchkey check` shows where), \
             or import without --write to print the connector"
        )
    })?;
    let connectors = doc
        .entry("connectors")
        .or_insert_with(|| {
            let mut t = toml_edit::Table::new();
            t.set_implicit(true);
            toml_edit::Item::Table(t)
        })
        .as_table_like_mut()
        .ok_or_else(not_a_table)?;
    if connectors.contains_key(name) {
        if !force {
            bail!("it already has a connector `{name}`: choose another name with --name, or replace it with --force");
        }
        connectors.remove(name);
    }
    let mut table = conn.table();
    // After everything the file has: new tables are placed last, in order.
    let mut position = doc_max_position(existing);
    table.set_position(Some(next(&mut position)));
    let connectors = doc["connectors"].as_table_like_mut().ok_or_else(not_a_table)?;
    let mut table = toml_edit::Item::Table(table);
    if let Some(calls) = table.get_mut("calls").and_then(toml_edit::Item::as_table_mut) {
        for (_, call) in calls.iter_mut() {
            if let Some(t) = call.as_table_mut() {
                t.set_position(Some(next(&mut position)));
                if let Some(p) = t.get_mut("params").and_then(toml_edit::Item::as_table_mut) {
                    p.set_position(Some(next(&mut position)));
                }
            }
        }
    }
    connectors.insert(name, table);
    let mut text = doc.to_string();
    if !existing.is_empty() && !existing.ends_with('\n') {
        // `toml_edit` keeps the old text; a new table starts on its own line.
        text = text.replacen(existing, &format!("{existing}\n"), 1);
    }
    Ok(text)
}

/// The file's `connectors` is a value, not the table of `[connectors.NAME]` tables.
fn not_a_table() -> anyhow::Error {
    anyhow::anyhow!(
        "`connectors` is not a table, so nothing was merged into it: connectors are `[connectors.NAME]` \
         tables; fix the file, or import without --write to print the connector"
    )
}

fn next(position: &mut isize) -> isize {
    *position += 1;
    *position
}

/// A position after every table of `text` (tables are numbered in the order read).
fn doc_max_position(text: &str) -> isize {
    isize::try_from(text.lines().filter(|l| l.trim_start().starts_with('[')).count()).unwrap_or(isize::MAX / 2) + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_import::model::Call;
    use latchkey_import::{openapi, postman};

    fn conn() -> Connector {
        Connector {
            base_url: "https://api.example.com".into(),
            auth: Auth::None,
            calls: vec![Call { name: "ping".into(), method: "GET".into(), path: "/ping".into(), ..Call::default() }],
            ..Connector::default()
        }
    }

    const EXISTING: &str = "# my file\n[server]\nlisten = \"127.0.0.1:7420\"   # keep this comment\n\n\
                            [connectors.old]\nbase_url = \"https://old.example\"\nauth = { method = \"none\" }\n\n\
                            [connectors.old.calls.a]\npath = \"/a\"\n";

    #[test]
    fn merging_keeps_every_other_byte_and_refuses_to_overwrite() {
        let merged = merge(EXISTING, "new", &conn(), false).unwrap();
        assert!(merged.starts_with(EXISTING), "{merged}");
        assert!(merged[EXISTING.len()..].contains("[connectors.new]"), "{merged}");
        let config = Config::parse(&merged, "t").unwrap();
        assert_eq!(config.connectors.len(), 2);
        let err = merge(EXISTING, "old", &conn(), false).unwrap_err().to_string();
        assert!(err.contains("already has a connector `old`") && err.contains("--force"), "{err}");
        let replaced = merge(EXISTING, "old", &conn(), true).unwrap();
        assert!(
            replaced.starts_with("# my file\n[server]\nlisten = \"127.0.0.1:7420\"   # keep this comment\n"),
            "{replaced}"
        );
        assert!(!replaced.contains("old.example") && !replaced.contains("calls.a]"), "{replaced}");
        let config = Config::parse(&replaced, "t").unwrap();
        assert_eq!(config.connectors["old"].calls.len(), 1);
    }

    /// Each error an import can meet says where (the file, URL or field), what is wrong, and
    /// what to do about it.
    #[test]
    fn every_import_error_says_what_to_do() {
        let openapi = |text: &str| {
            openapi::import(text, None, &openapi::Select { tags: vec![], operations: vec![] }).unwrap_err().to_string()
        };
        let postman = |text: &str| postman::import(text, None).unwrap_err().to_string();
        let cases = [
            (openapi("{\"openapi\": "), "not valid JSON", "give the whole document"),
            (openapi("a: [b\n  c: {"), "neither JSON nor valid YAML", "give the OpenAPI or Swagger document itself"),
            (openapi(""), "the document is empty", "give the file or URL"),
            (openapi("openapi: 4.0.0\npaths: {}"), "OpenAPI 4.0.0 is not read here", "convert the document"),
            (openapi("{\"a\": 1}"), "not an OpenAPI document", "`latchkey import postman`"),
            (openapi("openapi: 3.0.0\ninfo: {title: x}"), "has no `paths`", "bundled into one file"),
            (postman("{\"info\": "), "not valid JSON", "export the collection again"),
            (postman("{\"a\": 1}"), "not a Postman collection", "export it as Collection v2.1"),
            (
                document_text(vec![b'{', 0xff, b'}'], "spec.json").unwrap_err().to_string(),
                "spec.json is not UTF-8 text",
                "give the document itself",
            ),
            (
                document_text(vec![b' '; MAX_DOCUMENT + 1], "https://api.example/big.json").unwrap_err().to_string(),
                "https://api.example/big.json is larger than 16 MiB",
                "give a smaller document",
            ),
            (
                read_file(Path::new("/nonexistent/doc.yaml")).unwrap_err().to_string(),
                "cannot read /nonexistent/doc.yaml",
                "check the path",
            ),
            (merge("a = [", "new", &conn(), false).unwrap_err().to_string(), "not valid TOML", "fix the file"),
            (
                merge("connectors = 1\n", "new", &conn(), false).unwrap_err().to_string(),
                "`connectors` is not a table",
                "fix the file, or import without --write",
            ),
        ];
        for (message, wrong, advice) in cases {
            assert!(message.contains(wrong) && message.contains(advice), "`{wrong}` / `{advice}` not in: {message}");
        }
    }

    #[test]
    fn write_errors_name_the_file_and_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latchkey.toml");
        std::fs::write(&path, "connectors = 1\n").unwrap();
        let e = write_into(&path, "new", &conn(), false).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: `connectors` is not a table", path.display())), "{e}");
        std::fs::write(&path, "[server]\nlisten = \"nowhere\"\n").unwrap();
        let e = write_into(&path, "new", &conn(), false).unwrap_err().to_string();
        assert!(e.contains("server.listen") && e.contains("fix what is listed"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "[server]\nlisten = \"nowhere\"\n", "changed");
        let missing = dir.path().join("no-such-dir").join("latchkey.toml");
        let e = write_into(&missing, "new", &conn(), false).unwrap_err().to_string();
        assert!(e.contains("cannot write") && e.contains("may write to its directory"), "{e}");
        assert!(e.contains(&missing.display().to_string()), "{e}");
    }

    #[test]
    fn merging_into_an_empty_or_unterminated_file() {
        let merged = merge("", "new", &conn(), false).unwrap();
        assert_eq!(Config::parse(&merged, "t").unwrap().connectors.len(), 1);
        let merged = merge("[server]\nlisten = \"127.0.0.1:1\"", "new", &conn(), false).unwrap();
        assert!(merged.starts_with("[server]\nlisten = \"127.0.0.1:1\"\n"), "{merged}");
        assert_eq!(Config::parse(&merged, "t").unwrap().connectors.len(), 1);
    }
}
