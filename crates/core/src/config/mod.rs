//! The configuration model: the TOML file (and connectors created through the admin API, which
//! are JSON of the same shape). Parsed once into typed structs and validated at load, with every
//! problem listed at once: file, connector, field, what is wrong and what to do.

mod auth_tables;
mod lines;
mod methods;
mod problems;
mod raw;
mod secret_ref;
mod validate;
mod value;

pub use auth_tables::{
    ApiKeyHeader, ApiKeyQuery, AssertionAlg, AuthorizationCode, AwsSigv4, Basic, ClientAuth, ClientCertificate,
    ClientKeyFields, Digest, JwtBearer, LatchkeyIdentity, NoAuth, OAuth1, OAuth1Authorization, OAuth1Fields,
    OAuth2ClientCredentials, OAuth2CustomToken, OAuth2Password, PublicValue, RedirectMode, Scope, SignatureIn,
    SignatureMethod, SignedJwt, TokenIn, TokenResponseFormat,
};
pub use methods::{AuthConfig, AuthMethod, LATER_METHODS, MethodTable};
pub use problems::{ConfigErrors, Problem};
pub use raw::{
    Access, CallConfig, ConnectLabels, ConnectPageConfig, ConnectorConfig, ConsoleConfig, LogFormat, McpServerConfig,
    ParamConfig, ParamType, RefreshOn, ServerConfig,
};
pub use secret_ref::{PemSource, SecretRef};
pub use value::{BaseUrl, BodyTemplate, FromField, HeaderTable, HeaderText, LoginUrl, Parsed, ValueError};

use std::collections::BTreeMap;
use std::path::Path;

/// A whole, valid configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub server: ServerConfig,
    pub connectors: BTreeMap<String, ConnectorConfig>,
}

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
        raw::from_table(value, file).map_err(|ConfigErrors(mut problems)| {
            lines::locate(text, &mut problems);
            ConfigErrors(problems)
        })
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
#[cfg(test)]
mod tests_values;
