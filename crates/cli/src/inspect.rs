//! `connector list` and `connector show`: the connectors a server would serve, from the
//! configuration file and, when there is a store, the admin API's.

use std::process::ExitCode;

use anyhow::bail;
use latchkey_server::wire;

use crate::commands::print_json;
use crate::settings::Settings;
use crate::start;

#[derive(clap::Subcommand)]
pub enum ConnectorCommand {
    /// List connectors: name, where defined (file or api), auth method, base URL, calls.
    List {
        /// Print `{"connectors": [...]}`, the body of `GET /v1/admin/connectors`
        #[arg(long)]
        json: bool,
    },
    /// Show one connector's definition (secrets appear as references, never values).
    Show {
        /// The connector's name
        #[arg(value_name = "NAME")]
        name: String,
        /// Print the body of `GET /v1/admin/connectors/NAME`
        #[arg(long)]
        json: bool,
    },
}

pub async fn connector(settings: Settings, cmd: ConnectorCommand) -> anyhow::Result<ExitCode> {
    // With no store, the file's connectors are still shown; the note goes to standard error.
    let engine = start::engine_if_exists(&settings).await?;
    let runtimes = engine.as_ref().map(|e| e.connectors()).unwrap_or_default();
    let mut list: Vec<wire::Connector> = match &engine {
        Some(_) => runtimes.iter().map(|c| wire::Connector::from(&**c)).collect(),
        None => {
            eprintln!(
                "note: {}; showing the configuration file's connectors only",
                start::no_store_message(&settings).split(". ").next().unwrap_or_default()
            );
            settings
                .config
                .connectors
                .iter()
                .map(|(name, definition)| wire::Connector { definition, name, source: "file" })
                .collect()
        }
    };
    list.sort_by(|a, b| a.name.cmp(b.name));
    match cmd {
        ConnectorCommand::List { json } => {
            if json {
                print_json(&wire::Connectors { connectors: list, has_more: false })?;
                return Ok(ExitCode::SUCCESS);
            }
            if list.is_empty() {
                println!("no connectors");
            } else {
                println!("NAME\tSOURCE\tMETHOD\tBASE URL\tCALLS");
            }
            for c in list {
                let calls: Vec<&str> = c.definition.calls.keys().map(String::as_str).collect();
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.name,
                    c.source,
                    c.definition.auth.method(),
                    c.definition.base_url.as_str(),
                    if calls.is_empty() { "-".to_owned() } else { calls.join(",") }
                );
            }
        }
        ConnectorCommand::Show { name, json } => {
            let Some(c) = list.into_iter().find(|c| c.name == name) else {
                bail!("no connector named `{name}` (see `latchkey connector list`)");
            };
            if json {
                print_json(&c)?;
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "# connector `{}` (defined in {})",
                c.name,
                if c.source == "file" { "the configuration file" } else { "the admin API" }
            );
            let mut table = toml::Table::new();
            let mut definition = toml::Value::try_from(c.definition)?;
            drop_empty_tables(&mut definition);
            let mut connectors = toml::Table::new();
            connectors.insert(c.name.to_owned(), definition);
            table.insert("connectors".into(), toml::Value::Table(connectors));
            print!("{}", toml::to_string_pretty(&table)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes the empty tables (`headers = {}`, `params = {}`, ...) that defaults leave, so the
/// text shows what was configured.
fn drop_empty_tables(value: &mut toml::Value) {
    if let toml::Value::Table(t) = value {
        for (_, v) in t.iter_mut() {
            drop_empty_tables(v);
        }
        t.retain(|_, v| !matches!(v, toml::Value::Table(inner) if inner.is_empty()));
    }
}
