//! `providers list` and `providers show`: the catalog of provider templates built into the
//! binary (`provider = "NAME"` in a connector). Needs neither the configuration nor a store.

use std::process::ExitCode;

use anyhow::bail;
use latchkey_core::providers::{self, Template};
use latchkey_server::wire;
use serde_json::{Value, json};

use crate::commands::print_json;

#[derive(clap::Subcommand)]
pub enum ProvidersCommand {
    /// List the provider templates: name, auth method, parameters, title.
    List {
        /// Print `{"providers": [...]}`, the body of `GET /v1/admin/providers`
        #[arg(long)]
        json: bool,
    },
    /// Show what a template fills, the parameters it takes, and what the connector must write
    /// (the secrets to store), with an example connector.
    Show {
        /// The template's name
        #[arg(value_name = "NAME")]
        name: String,
        /// Print the body of `GET /v1/admin/providers/NAME`
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: &ProvidersCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ProvidersCommand::List { json } => {
            let list: Vec<wire::ProviderSummary> = providers::all().map(wire::ProviderSummary::from).collect();
            if *json {
                print_json(&wire::Providers { providers: list, has_more: false })?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = String::from("NAME\tMETHOD\tPARAMS\tTITLE\n");
            for p in list {
                let params = if p.params.is_empty() { "-".to_owned() } else { p.params.join(",") };
                out.push_str(&format!("{}\t{}\t{}\t{}\n", p.name, p.method, params, p.title));
            }
            write_out(&out)?;
        }
        ProvidersCommand::Show { name, json } => {
            let Some(t) = providers::get(name) else {
                bail!("no provider template named `{name}` (see `latchkey providers list`)");
            };
            if *json {
                print_json(&wire::Provider::from(t))?;
            } else {
                write_out(&describe(t)?)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The text of `providers show`.
pub fn describe(t: &Template) -> anyhow::Result<String> {
    let connector = t.name.replace('-', "_");
    let mut out = format!("{} — {}\nauth method: {}\n", t.name, t.title, t.method().unwrap_or_default());
    if !t.params.is_empty() {
        out.push_str("\nparameters (provider_params):\n");
        for (k, p) in &t.params {
            match &p.default {
                Some(d) => out.push_str(&format!("  {k}: {} (default `{d}`)\n", p.about)),
                None => out.push_str(&format!("  {k}: {} (required, e.g. `{}`)\n", p.about, p.example)),
            }
        }
    }
    if !t.needs.is_empty() {
        out.push_str("\nthe connector writes:\n");
        for n in &t.needs {
            let kind = if n.secret { "secret" } else { "value" };
            out.push_str(&format!("  {} ({kind}): {}\n", n.field, n.about));
        }
    }
    if !t.notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in &t.notes {
            out.push_str(&format!("  - {n}\n"));
        }
    }
    out.push_str("\nexample (latchkey.toml):\n\n");
    out.push_str(&format!("[connectors.{connector}]\n"));
    let Value::Object(example) = t.example(&connector, false) else { bail!("the example is no table") };
    let first = ["provider", "provider_params"];
    let rest = example.iter().filter(|(k, _)| !first.contains(&k.as_str()));
    for (k, v) in first.iter().filter_map(|k| example.get_key_value(*k)).chain(rest) {
        out.push_str(&format!("{k} = {}\n", toml::Value::try_from(v)?));
    }
    let secrets = t.secrets(&connector);
    if !secrets.is_empty() {
        out.push_str("\nthen store the secrets (the value on standard input):\n\n");
        for (_, name) in secrets {
            out.push_str(&format!("  latchkey secret set {name}\n"));
        }
    }
    out.push_str("\nthe template fills (a field the connector writes replaces it):\n\n");
    out.push_str(&toml_of(&json!({ "connectors": { &connector: t.connector } }))?);
    out.push_str("\ndocumentation:\n");
    for d in &t.docs {
        out.push_str(&format!("  {d}\n"));
    }
    Ok(out)
}

/// Writes `text` to standard output whole; a closed pipe (`| head`) is no error.
fn write_out(text: &str) -> anyhow::Result<()> {
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn toml_of(v: &Value) -> anyhow::Result<String> {
    Ok(toml::to_string(v)?)
}
