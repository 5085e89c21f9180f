//! The `latchkey` binary: commands, settings, start-up. The only crate that uses anyhow.

mod commands;
mod import;
mod inspect;
mod providers;
mod reload;
mod settings;
mod start;

use clap::{CommandFactory as _, Parser, Subcommand};

/// mimalloc instead of glibc's malloc: a proxied request makes ~20 allocations, and mimalloc's
/// are cheaper (issue 5: 42,771 → 41,086 instructions per request; idle RSS 15 MB, from 17).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "latchkey", version, about = "A self-hosted API connector and credential broker")]
struct Cli {
    #[command(flatten)]
    settings: settings::Flags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server.
    Serve(settings::ServeFlags),
    /// Validate the configuration file (and report secrets the connectors need but the store lacks).
    Check(commands::CheckArgs),
    /// Manage secrets in the vault. Values are read from a prompt or standard input, never from arguments.
    #[command(subcommand)]
    Secret(commands::SecretCommand),
    /// Manage keys: create app keys; list and remove admin and app keys.
    #[command(subcommand)]
    Key(commands::KeyCommand),
    /// Show the connectors (from the configuration file and the admin API).
    #[command(subcommand)]
    Connector(inspect::ConnectorCommand),
    /// The provider templates built in (`provider = "NAME"` in a connector).
    #[command(subcommand)]
    Providers(providers::ProvidersCommand),
    /// Run one named call locally and print the upstream's response.
    Call(commands::CallArgs),
    /// Manage the identity signing keys (user tokens).
    #[command(subcommand)]
    Keys(commands::KeysCommand),
    /// Manage the vault's master key.
    #[command(subcommand)]
    Vault(commands::VaultCommand),
    /// Make a connector from a cURL command, an OpenAPI document or a Postman collection.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Print a shell completion script, e.g. `latchkey completions bash > /etc/bash_completion.d/latchkey`.
    Completions {
        /// The shell to write the script for
        #[arg(value_enum, value_name = "SHELL")]
        shell: Shell,
    },
    /// Print Latchkey's version.
    Version,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Commands that need neither the configuration nor a store.
    match cli.command {
        Command::Completions { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            // Written whole into memory first: `generate` panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "latchkey", &mut script);
            return match std::io::Write::write_all(&mut std::io::stdout().lock(), &script) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the script: {e}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        Command::Version => {
            println!("latchkey {}", env!("CARGO_PKG_VERSION"));
            return std::process::ExitCode::SUCCESS;
        }
        Command::Providers(ref c) => {
            return match providers::run(c) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let serve_flags = match &cli.command {
            Command::Serve(f) => Some(f.clone()),
            _ => None,
        };
        let settings = settings::Settings::resolve(cli.settings, serve_flags)?;
        match cli.command {
            Command::Serve(_) => start::serve(settings).await,
            Command::Check(args) => commands::check(settings, args).await,
            Command::Secret(c) => commands::secret(settings, c).await,
            Command::Key(c) => commands::key(settings, c).await,
            Command::Connector(c) => inspect::connector(settings, c).await,
            Command::Call(c) => commands::call(settings, c).await,
            Command::Keys(c) => commands::keys(settings, c).await,
            Command::Vault(c) => commands::vault(settings, c).await,
            Command::Import(c) => import::import(settings, c).await,
            Command::Completions { .. } | Command::Version | Command::Providers(_) => {
                Ok(std::process::ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_tree_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
