//! Unit tests of the engine's services through [`Engine`], on the in-memory store and a fake
//! clock (tokio's paused time: a sleep or a timeout returns at once with the time moved on).
//! No network, no real sleeping. Each test starts an engine from a TOML configuration.

mod admin;
mod cache;
mod callers;
mod connect;
mod console;
mod exchange;
mod faults;
mod feed;
mod identity;
mod mcp_auth;
mod mirror;
mod per_user;
mod reload;
mod signin;
mod sweep;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use latchkey_vault::{MasterKey, Vault};
use secrecy::SecretString;

use super::{Engine, EngineSettings};
use crate::Env;
use crate::clock::{Clock, FakeClock};
use crate::config::Config;
use crate::store::memory::MemoryStore;
use crate::store::{ConnectionRow, ConnectionStore, SecretRow, Store};

/// The time the tests start at (an arbitrary instant long past, Unix milliseconds): nothing
/// in the engine may read the wall clock instead.
pub(super) const T0: i64 = 1_600_000_000_000;

/// Two per-user connectors (their token endpoint refuses connections: a code exchange fails
/// without reaching anything) and a static one.
pub(super) const CONFIG: &str = r#"
[server]
public_url = "https://lk.test"
return_to_allow = ["https://app.test/"]
# Quick to generate (RSA keys take a while in a debug build).
token_algorithm = "ES256"

[connectors.gh]
base_url = "https://api.gh.test"
[connectors.gh.auth]
method = "oauth2_authorization_code"
authorize_url = "https://gh.test/authorize"
token_url = "http://127.0.0.1:9/token"
client_id = "gh-client"
client_secret = { env = "GH_SECRET" }
[connectors.gh.calls.me]
path = "/user"
access = "user"

[connectors.other]
base_url = "https://api.other.test"
[connectors.other.auth]
method = "oauth2_authorization_code"
authorize_url = "https://other.test/authorize"
token_url = "http://127.0.0.1:9/token"
client_id = "other-client"
client_secret = { env = "GH_SECRET" }

[connectors.plain]
base_url = "https://api.plain.test"
auth = { method = "api_key_header", name = "X-Key", key = { secret = "plain_key" } }
"#;

/// An engine on a memory store and a fake clock, and what a test reaches around it.
pub(super) struct Harness {
    pub engine: Arc<Engine>,
    pub store: MemoryStore,
    pub clock: Arc<FakeClock>,
    pub vault: Arc<Vault>,
}

impl Harness {
    /// An engine started from `toml` on a new memory store.
    pub async fn start(toml: &str) -> Harness {
        Self::on(toml, MemoryStore::new(), Arc::new(Vault::new(&MasterKey::generate()))).await
    }

    /// An engine started from `toml` on `store` (another instance when the store is shared).
    pub async fn on(toml: &str, store: MemoryStore, vault: Arc<Vault>) -> Harness {
        let clock = FakeClock::at(T0);
        let settings = EngineSettings {
            config: Config::parse(toml, "test.toml").expect("the test configuration parses"),
            env_vars: BTreeMap::from([("GH_SECRET".to_owned(), SecretString::from("gh-secret"))]),
            public_url: "https://lk.test".into(),
            clock: Some(clock.clone()),
            ..Default::default()
        };
        let engine = Engine::start(Arc::new(store.clone()), vault.clone(), settings).await.expect("the engine starts");
        Harness { engine, store, clock, vault }
    }

    /// The default engine ([`CONFIG`]), with a signing key.
    pub async fn new() -> Harness {
        let h = Self::start(CONFIG).await;
        h.engine.identity().ensure_signing_key().await.unwrap();
        h
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Another writer (the CLI, another instance) puts secret `name` straight into the store.
    pub async fn their_secret(&self, name: &str, value: &str) {
        let row = SecretRow {
            name: name.into(),
            env: Env::Live,
            sealed: crate::secrets::seal_secret(&self.vault, name, Env::Live, &SecretString::from(value)),
            updated_at: self.now(),
        };
        self.store.put_secret(&row).await.unwrap();
    }

    /// The environments secret `name` has in the engine's memory.
    pub fn secret_in_memory(&self, name: &str) -> Vec<Env> {
        self.engine.mirror.runtime().secrets.environments(name)
    }

    /// A connection of `owner` on `gh` (live), made straight in the store.
    pub async fn connection(&self, owner: &str) -> ConnectionRow {
        let row = ConnectionRow {
            id: format!("conn_{owner}"),
            connector: "gh".into(),
            env: Env::Live,
            owner: owner.into(),
            provider_user_id: Some(format!("p-{owner}")),
            email: None,
            scopes: None,
            metadata: "{}".into(),
            return_to: None,
            created_at: self.now(),
            updated_at: self.now(),
        };
        self.store.upsert_connection(&row).await.unwrap()
    }
}

/// The value of query parameter `name` in `url`.
pub(super) fn query_param(url: &str, name: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned()).unwrap()
}

/// Cookies as the server hands them to the flow: name to value.
pub(super) fn cookie(name: &str, value: &str) -> HashMap<String, String> {
    HashMap::from([(name.to_owned(), value.to_owned())])
}
