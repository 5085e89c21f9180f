//! The compiled, immutable view the hot path reads: connectors with their calls compiled and
//! their credentials prepared for each environment, and the configuration they were compiled
//! from (swapped with them, so that nothing sees connectors of one file with the settings of
//! another).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, Method};
use latchkey_vault::Vault;
use secrecy::SecretString;
use url::Url;

use crate::auth::{self, ClientPool, Prepared};
use crate::config::{Access, CallConfig, Config, ConnectorConfig, ParamConfig};
use crate::secrets::SecretSet;
use crate::store::{ConnectorRow, SecretRow};
use crate::template::{Body, Text};
use crate::upstream::Origin;
use crate::{CallError, Env};

#[derive(Default)]
pub(crate) struct Runtime {
    /// The configuration file as of this runtime (replaced by a reload, `engine/reload.rs`).
    pub config: Arc<Config>,
    pub connectors: HashMap<String, Arc<ConnectorRuntime>>,
    pub webhook_secret: Option<SecretString>,
    pub identity: super::identity::IdentityKeys,
    /// What the connectors were built from, so that this instance's own write of one secret
    /// rebuilds them without reading the whole store again.
    pub secrets: Arc<SecretSet>,
    pub stored: Arc<Vec<ConnectorRow>>,
}

pub struct ConnectorRuntime {
    pub name: String,
    pub config: ConnectorConfig,
    /// Defined in the configuration file (read-only through the API) or through the admin API.
    pub from_file: bool,
    pub(crate) base: Url,
    pub(crate) base_path: String,
    /// Where requests go, for the upstream client's connection pool.
    pub(crate) origin: Origin,
    pub(crate) headers: HeaderMap,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    pub(crate) calls: HashMap<String, CompiledCall>,
    live: Result<Prepared, CallError>,
    dev: Result<Prepared, CallError>,
}

impl ConnectorRuntime {
    pub fn credential(&self, env: Env) -> Result<&Prepared, CallError> {
        match env {
            Env::Live => self.live.as_ref(),
            Env::Dev => self.dev.as_ref(),
        }
        .map_err(Clone::clone)
    }

    /// Whether credentials for `env` are ready (for `latchkey check` and `/readyz` detail).
    pub fn credential_status(&self, env: Env) -> Result<(), CallError> {
        self.credential(env).map(|_| ())
    }
}

pub(crate) struct CompiledCall {
    pub method: Method,
    pub path: Text,
    pub query: Vec<(String, Text)>,
    pub headers: Vec<(HeaderName, Text)>,
    pub body: Option<Body>,
    pub access: Access,
    pub params: BTreeMap<String, ParamConfig>,
}

impl Runtime {
    /// Opens every secret, then builds.
    pub fn load(
        config: &Arc<Config>,
        stored: Vec<ConnectorRow>,
        secret_rows: &[SecretRow],
        vault: &Vault,
        env_vars: Arc<BTreeMap<String, SecretString>>,
        clients: &ClientPool,
    ) -> Runtime {
        let secrets = SecretSet::open(secret_rows, vault, env_vars);
        Runtime::build(config, Arc::new(stored), Arc::new(secrets), clients)
    }

    /// The same runtime with `change` made to its secrets: connectors are compiled again
    /// from the secrets in memory; signing keys are kept.
    pub fn with_secrets(&self, clients: &ClientPool, change: impl FnOnce(&mut SecretSet)) -> Runtime {
        let mut secrets = SecretSet::clone(&self.secrets);
        change(&mut secrets);
        let mut rt = Runtime::build(&self.config, self.stored.clone(), Arc::new(secrets), clients);
        rt.identity = self.identity.clone();
        rt
    }

    pub(crate) fn build(
        config: &Arc<Config>,
        stored: Arc<Vec<ConnectorRow>>,
        secrets: Arc<SecretSet>,
        clients: &ClientPool,
    ) -> Runtime {
        let private_egress = config.server.api_connectors_private_egress;
        let mut connectors = HashMap::new();
        for (name, c) in &config.connectors {
            connectors
                .insert(name.clone(), Arc::new(compile(name, c.clone(), true, &secrets, clients, private_egress)));
        }
        for row in stored.iter() {
            if connectors.contains_key(&row.name) {
                continue; // the file wins; the API refuses to create such a row
            }
            let parsed = serde_json::from_str(&row.definition)
                .map_err(|e| e.to_string())
                .and_then(|json| Config::connector_from_json(&row.name, json, "admin API").map_err(|e| e.to_string()));
            match parsed {
                Ok(c) => {
                    connectors.insert(
                        row.name.clone(),
                        Arc::new(compile(&row.name, c, false, &secrets, clients, private_egress)),
                    );
                }
                Err(e) => tracing::error!(connector = %row.name, error = %e, "stored connector is invalid; skipped"),
            }
        }
        let webhook_secret = config.server.webhook_secret.as_ref().and_then(|r| match secrets.resolve(r, Env::Live) {
            Ok(s) => Some(s.clone()),
            Err(e) => {
                tracing::warn!(error = %e.message, "webhook_secret is not available: webhooks go out unsigned");
                None
            }
        });
        Runtime { config: config.clone(), connectors, webhook_secret, identity: Default::default(), secrets, stored }
    }

    /// Takes over from `previous` every connector compiled from the same definition under the
    /// same egress rule: the same prepared credentials and upstream pools (a reload of the
    /// configuration file leaves what it did not change as it was). Only for two runtimes
    /// built from the same vault secrets: a changed secret changes credentials, not definitions.
    /// A connector whose credential could not be prepared is compiled again (the variables a
    /// reload collects may now hold what it lacked).
    pub(crate) fn keep_unchanged(&mut self, previous: &Runtime) {
        let same_egress =
            self.config.server.api_connectors_private_egress == previous.config.server.api_connectors_private_egress;
        for (name, conn) in &mut self.connectors {
            if let Some(old) = previous.connectors.get(name)
                && old.from_file == conn.from_file
                && (conn.from_file || same_egress)
                && old.config == conn.config
                && Env::ALL.into_iter().all(|env| old.credential_status(env).is_ok())
            {
                *conn = old.clone();
            }
        }
    }
}

fn compile(
    name: &str,
    config: ConnectorConfig,
    from_file: bool,
    secrets: &SecretSet,
    clients: &ClientPool,
    private_egress: bool,
) -> ConnectorRuntime {
    let base = config.base_url.url().clone();
    let base_path = config.base_url.path().to_owned();
    // SECURITY S16: admin-API connectors reach public addresses only, unless allowed.
    let public_only = !from_file && !private_egress;
    let origin = config.base_url.origin().under_rule(public_only);
    let mut headers = HeaderMap::new();
    for (k, v) in &config.headers {
        headers.append(k.value().clone(), v.value().clone());
    }
    let query = config.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let calls = config.calls.iter().map(|(n, c)| (n.clone(), compile_call(c))).collect();
    let prepare = |env| auth::prepare(name, &config, env, secrets, clients, public_only);
    ConnectorRuntime {
        name: name.to_owned(),
        from_file,
        base,
        base_path,
        origin,
        headers,
        query,
        timeout: Duration::from_millis(config.timeout_ms),
        calls,
        live: prepare(Env::Live),
        dev: prepare(Env::Dev),
        config,
    }
}

/// The call as the pipeline reads it; every value was parsed at load.
fn compile_call(c: &CallConfig) -> CompiledCall {
    CompiledCall {
        method: c.method.value().clone(),
        path: c.path.value().clone(),
        query: c.query.iter().map(|(k, v)| (k.clone(), v.value().clone())).collect(),
        headers: c.headers.iter().map(|(k, v)| (k.value().clone(), v.value().0.clone())).collect(),
        body: c.body.as_ref().map(|b| b.body().clone()),
        access: c.access,
        params: c.params.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[connectors.a]
base_url = "https://API.example.com/v1/"
headers = { "X-Fixed" = "1" }
auth = { method = "none" }
[connectors.a.calls.c]
method = "patch"
path = "/items/<id>"
query = { q = "<id>" }
headers = { "X-Request-Id" = "r-<id>" }
body = '{"id": "<id>"}'
params = { id = { required = true } }
"#;

    #[test]
    fn a_call_is_compiled_from_its_parsed_values() {
        let config = Config::parse(TEXT, "f").unwrap();
        let compiled = compile_call(&config.connectors["a"].calls["c"]);
        assert_eq!(compiled.method, Method::PATCH);
        assert_eq!(compiled.path, Text::parse("/items/<id>"));
        assert_eq!(compiled.query, [("q".to_owned(), Text::parse("<id>"))]);
        assert_eq!(compiled.headers, [(HeaderName::from_static("x-request-id"), Text::parse("r-<id>"))]);
        assert_eq!(compiled.body, Some(Body::new(serde_json::json!({"id": "<id>"}))));
    }

    /// The origin parsed with `base_url` and put under an egress rule is the one built from
    /// the URL under that rule (the pool keys connections by it).
    #[test]
    fn the_parsed_origin_under_a_rule_is_the_origin_of_that_rule() {
        let config = Config::parse(TEXT, "f").unwrap();
        let base = &config.connectors["a"].base_url;
        for public_only in [true, false, true] {
            let direct = Origin::from_url(base.url(), public_only).unwrap();
            let ruled = base.origin().under_rule(public_only).under_rule(public_only);
            assert_eq!(format!("{ruled:?}"), format!("{direct:?}"));
        }
        assert_eq!(base.path(), "/v1");
    }
}
