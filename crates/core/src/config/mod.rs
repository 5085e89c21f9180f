//! The configuration model: the TOML file (and connectors created through the admin API, which
//! are JSON of the same shape). Parsed once into typed structs and validated at load, with every
//! problem listed at once: file, connector, field, what is wrong and what to do.

mod problems;
mod raw;
pub(crate) mod validate;

pub use problems::{ConfigErrors, Problem};
pub use raw::{
    Access, ApiKeyHeader, ApiKeyQuery, AuthConfig, AuthorizationCode, Basic, CallConfig, ClientAuth, ClientCertificate,
    ConnectorConfig, JwtBearer, LatchkeyIdentity, NoAuth, OAuth2ClientCredentials, OAuth2CustomToken, OAuth2Password,
    ParamConfig, PemSource, RedirectMode, RefreshOn, Scope, SecretRef, ServerConfig, TokenIn, TokenResponseFormat,
};

use std::collections::BTreeMap;
use std::path::Path;

/// A whole, valid configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub server: ServerConfig,
    pub connectors: BTreeMap<String, ConnectorConfig>,
}

/// The auth methods this version implements, and those that are named but come later.
pub const METHODS: &[&str] = &[
    "none",
    "api_key_query",
    "api_key_header",
    "basic",
    "client_certificate",
    "oauth2_password",
    "oauth2_client_credentials",
    "oauth2_custom_token",
    "jwt_bearer",
    "oauth2_authorization_code",
    "latchkey_identity",
];
pub const LATER_METHODS: &[&str] = &["digest", "oauth1", "aws_sigv4"];

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigErrors::one(Problem::file(&file, format!("cannot read the file: {e}"))))?;
        Self::parse(&text, &file)
    }

    /// Parses and validates TOML text; `file` names it in problems.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigErrors> {
        let value: toml::Table = toml::from_str(text).map_err(|e| {
            ConfigErrors::one(
                Problem::file(file, format!("not valid TOML: {}", e.message().trim())).with_span(text, e.span()),
            )
        })?;
        raw::from_table(value, file)
    }

    /// Parses one connector given as JSON (the admin API), with the same validation.
    pub fn connector_from_json(
        name: &str,
        json: serde_json::Value,
        origin: &str,
    ) -> Result<ConnectorConfig, ConfigErrors> {
        raw::connector_from_json(name, json, origin)
    }
}

#[cfg(test)]
mod tests;
