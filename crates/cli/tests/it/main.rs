//! End-to-end tests: the real `latchkey` binary against real peers (httpbin, nginx) and an
//! in-process recording upstream. One test binary, modules inside.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test and benchmark code: a panic is the failure report")]

mod admin;
mod api_contract;
mod at_rest;
mod audit;
mod auth_methods;
mod aws_sigv4;
mod cli;
mod cli_commands;
mod client_auth;
mod cluster;
mod connect_page;
mod connections;
mod console;
mod crash;
mod egress;
mod environments;
mod examples;
mod failover;
mod github_app;
mod grants;
mod hardening;
mod hostile;
mod idp;
mod import;
mod inbound;
mod leaks;
mod lifecycle;
mod logs;
mod mcp;
mod mcp_oauth;
mod multi;
mod notify;
mod oauth1;
mod observability;
mod partition;
mod per_user;
mod provider_answers;
mod providers;
mod proxy;
mod raw;
mod reload;
mod startup;
mod upstream_pool;

use std::path::Path;

pub use latchkey_testkit::latchkey::{Latchkey, Options, Reply};

pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_latchkey"))
}

/// A Latchkey with one connector `up` at `base_url` using `auth` (a TOML inline table), plus
/// any extra TOML.
pub fn with_connector(base_url: &str, auth: &str, extra: &str) -> Latchkey {
    Latchkey::start(bin(), &format!("[connectors.up]\nbase_url = \"{base_url}\"\nauth = {auth}\n{extra}"))
}

/// What Latchkey printed when it refused to start with `config`; panics if it started.
pub fn refused_start(config: &str) -> String {
    Latchkey::start_with(bin(), Options { config: config.to_owned(), ..Options::default() })
        .err()
        .unwrap_or_else(|| panic!("started with a configuration it should refuse:\n{config}"))
}
