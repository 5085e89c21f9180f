//! Reloading the configuration file (`Engine::reload_config`): connectors added, removed and
//! changed; what did not change kept as it was (prepared credential, pool, tokens); tokens of
//! a changed grant dropped; `[server]` fields that need a restart reported.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use latchkey_vault::{MasterKey, Vault};
use secrecy::{ExposeSecret, SecretString};

use super::T0;
use crate::auth::{Credential, TokenSource};
use crate::clock::{Clock, FakeClock};
use crate::config::Config;
use crate::engine::tokens::TokenEndpoint;
use crate::engine::{Engine, EngineSettings};
use crate::secret::AccessToken;
use crate::store::memory::MemoryStore;
use crate::store::{ConnectorRow, Store, TokenKey, TokenStore};
use crate::token::{TokenError, TokenRequest, TokenRequestBody, TokenSet};
use crate::{Env, ErrorCode};

/// A token endpoint that issues `at-1`, `at-2`, ... for an hour, and remembers each request's
/// URL and scope.
#[derive(Default)]
struct Issuer {
    seen: Mutex<Vec<(String, Option<String>)>>,
}

impl Issuer {
    fn seen(&self) -> Vec<(String, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl TokenEndpoint for Issuer {
    async fn send(&self, _src: &TokenSource, request: &TokenRequest, now: i64) -> Result<TokenSet, TokenError> {
        let scope = match &request.body {
            TokenRequestBody::Form(pairs) => {
                pairs.iter().find(|(k, _)| k == "scope").map(|(_, v)| v.expose_secret().to_owned())
            }
            TokenRequestBody::Json(_) => None,
        };
        let n = {
            let mut seen = self.seen.lock().unwrap();
            seen.push((request.url.clone(), scope));
            seen.len()
        };
        Ok(TokenSet {
            access_token: AccessToken::from(format!("at-{n}")),
            refresh_token: None,
            token_secret: None,
            token_type: Some("Bearer".into()),
            expires_at: Some(now + 3_600_000),
            scope: None,
            extra: serde_json::Map::new(),
            obtained_at: now,
            grant: None,
        })
    }
}

struct Reloading {
    engine: Arc<Engine>,
    store: MemoryStore,
    vault: Arc<Vault>,
    issuer: Arc<Issuer>,
}

fn env_vars() -> BTreeMap<String, SecretString> {
    BTreeMap::from([("CS".to_owned(), SecretString::from("client-secret"))])
}

fn parse(toml: &str) -> Config {
    Config::parse(toml, "latchkey.toml").expect("the test configuration parses")
}

async fn start(toml: &str) -> Reloading {
    start_on(toml, MemoryStore::new(), Arc::new(Vault::new(&MasterKey::generate()))).await
}

/// An instance on `store` (another one when the store is shared), with its own token endpoint.
async fn start_on(toml: &str, store: MemoryStore, vault: Arc<Vault>) -> Reloading {
    let issuer = Arc::new(Issuer::default());
    let clock: Arc<dyn Clock> = FakeClock::at(T0);
    let settings = EngineSettings {
        config: parse(toml),
        env_vars: env_vars(),
        public_url: "https://lk.test".into(),
        clock: Some(clock),
        token_endpoint: Some(issuer.clone()),
        ..Default::default()
    };
    let engine = Engine::start(Arc::new(store.clone()), vault.clone(), settings).await.expect("the engine starts");
    Reloading { engine, store, vault, issuer }
}

/// Two client-credentials connectors and a static one.
fn config(tokens_scope: &str, plain_base: &str, server: &str) -> String {
    format!(
        r#"
[server]
{server}

[connectors.tokens]
base_url = "https://api.tokens.test"
auth = {{ method = "oauth2_client_credentials", token_url = "https://idp.test/token", client_id = "c", client_secret = {{ env = "CS" }}, scope = "{tokens_scope}" }}

[connectors.steady]
base_url = "https://api.steady.test"
auth = {{ method = "oauth2_client_credentials", token_url = "https://idp.test/steady", client_id = "s", client_secret = {{ env = "CS" }} }}

[connectors.plain]
base_url = "{plain_base}"
headers = {{ "X-Version" = "1" }}
auth = {{ method = "none" }}
"#
    )
}

fn token_of(engine: &Engine, name: &str) -> Arc<TokenSource> {
    match &engine.connector(name).unwrap().credential(Env::Live).unwrap().credential {
        Credential::Token(src) => src.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

async fn access_token(engine: &Engine, name: &str) -> String {
    let src = token_of(engine, name);
    engine.tokens.get(&src).await.unwrap().token.access_token.expose_secret().to_owned()
}

#[tokio::test(start_paused = true)]
async fn a_reload_adds_removes_and_changes_connectors() {
    let r = start(&config("read", "https://api.plain.test", "")).await;
    let text = r#"
[connectors.plain]
base_url = "https://api2.plain.test/v2"
headers = { "X-Version" = "2" }
auth = { method = "none" }

[connectors.fresh]
base_url = "https://api.fresh.test"
auth = { method = "none" }
"#;
    let report = r.engine.reload_config(parse(text), env_vars()).await;
    assert_eq!(report.added, ["fresh"]);
    assert_eq!(report.removed, ["steady", "tokens"]);
    assert_eq!(report.changed, ["plain"]);
    assert!(report.needs_restart.is_empty() && report.applied.is_empty(), "{report}");
    let plain = r.engine.connector("plain").unwrap();
    assert_eq!(plain.base.as_str(), "https://api2.plain.test/v2");
    assert_eq!(plain.headers.get("x-version").unwrap(), "2");
    assert!(r.engine.connector("tokens").is_none());
    assert_eq!(r.engine.config().connectors.len(), 2, "the configuration swapped with the runtime");
    assert!(r.engine.connector("fresh").unwrap().from_file);
}

#[tokio::test(start_paused = true)]
async fn an_unchanged_connector_keeps_its_credential_pool_and_tokens_and_a_changed_grant_gets_a_new_token() {
    let r = start(&config("read", "https://api.plain.test", "")).await;
    assert_eq!(access_token(&r.engine, "tokens").await, "at-1");
    assert_eq!(access_token(&r.engine, "steady").await, "at-2");
    let steady_before = r.engine.connector("steady").unwrap();

    let report = r.engine.reload_config(parse(&config("read write", "https://api.plain.test", "")), env_vars()).await;
    assert_eq!(report.changed, ["tokens"]);
    assert_eq!(report.tokens_dropped, ["tokens (dev)", "tokens (live)"]);

    let steady_after = r.engine.connector("steady").unwrap();
    assert!(Arc::ptr_eq(&steady_before, &steady_after), "the same prepared credential and upstream pool");
    assert_eq!(access_token(&r.engine, "steady").await, "at-2", "no new token request");
    assert_eq!(access_token(&r.engine, "tokens").await, "at-3", "a token under the new scope");
    let seen = r.issuer.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2], ("https://idp.test/token".to_owned(), Some("read write".to_owned())));
    // The stored token was erased, not left for another instance (or a restart) to use.
    let stored = r.store.get_token(&TokenKey::app("tokens", Env::Live)).await.unwrap().unwrap();
    assert!(stored.sealed.is_some(), "the new token is stored");
    assert_eq!(access_token(&r.engine, "tokens").await, "at-3", "and cached");
}

#[tokio::test(start_paused = true)]
async fn a_changed_grant_erases_the_stored_token_before_the_next_call() {
    let r = start(&config("read", "https://api.plain.test", "")).await;
    access_token(&r.engine, "tokens").await;
    let key = TokenKey::app("tokens", Env::Live);
    assert!(r.store.get_token(&key).await.unwrap().unwrap().sealed.is_some());
    r.engine.reload_config(parse(&config("admin", "https://api.plain.test", "")), env_vars()).await;
    let row = r.store.get_token(&key).await.unwrap().unwrap();
    assert!(row.sealed.is_none(), "no token of the old grant is left in the store");
}

#[tokio::test(start_paused = true)]
async fn a_reload_reports_server_fields_that_need_a_restart() {
    let r = start(&config("read", "https://api.plain.test", "listen = \"127.0.0.1:7420\"")).await;
    let server = "listen = \"127.0.0.1:7421\"\nthreads = 3\nwebhook_url = \"https://hooks.test/\"";
    let report = r.engine.reload_config(parse(&config("read", "https://api.plain.test", server)), env_vars()).await;
    assert_eq!(report.needs_restart, ["listen", "threads"]);
    assert_eq!(report.applied, ["webhook_url"]);
    assert!(report.changed.is_empty(), "no connector changed");
    assert_eq!(r.engine.config().server.webhook_url.as_ref().unwrap().as_str(), "https://hooks.test/");
    assert!(report.to_string().contains("needs a restart to apply: listen, threads"), "{report}");
}

#[tokio::test(start_paused = true)]
async fn the_same_file_again_changes_nothing() {
    let text = config("read", "https://api.plain.test", "");
    let r = start(&text).await;
    let before = r.engine.connector("plain").unwrap();
    let report = r.engine.reload_config(parse(&text), env_vars()).await;
    assert!(report.is_empty(), "{report}");
    assert!(Arc::ptr_eq(&before, &r.engine.connector("plain").unwrap()));
}

#[tokio::test(start_paused = true)]
async fn a_file_connector_now_named_like_an_api_connector_wins_and_is_reported() {
    let r = start(&config("read", "https://api.plain.test", "")).await;
    let json = serde_json::json!({"base_url": "https://api.from-api.test", "auth": {"method": "none"}});
    r.engine.admin().put_connector("shared", json).await.unwrap();
    assert!(!r.engine.connector("shared").unwrap().from_file);
    let text = format!(
        "{}\n[connectors.shared]\nbase_url = \"https://api.from-file.test\"\nauth = {{ method = \"none\" }}\n",
        config("read", "https://api.plain.test", "")
    );
    let report = r.engine.reload_config(parse(&text), env_vars()).await;
    assert_eq!(report.shadowed, ["shared"]);
    assert_eq!(report.changed, ["shared"]);
    let shared = r.engine.connector("shared").unwrap();
    assert!(shared.from_file);
    assert_eq!(shared.base.as_str(), "https://api.from-file.test/");
    // The API now refuses to change it, as for any file connector.
    let json = serde_json::json!({"base_url": "https://x.test", "auth": {"method": "none"}});
    let refused = r.engine.admin().put_connector("shared", json).await.unwrap_err();
    assert!(matches!(refused, crate::engine::PutConnectorError::Call(e) if e.code == ErrorCode::Forbidden));
    // The stored row stays: removing the file's definition brings it back.
    let report = r.engine.reload_config(parse(&config("read", "https://api.plain.test", "")), env_vars()).await;
    assert_eq!(report.changed, ["shared"]);
    assert!(!r.engine.connector("shared").unwrap().from_file);
    let rows: Vec<ConnectorRow> = r.store.list_connectors().await.unwrap();
    assert_eq!(rows.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_new_env_reference_resolves_from_the_variables_given_with_the_reload() {
    let r = start(&config("read", "https://api.plain.test", "")).await;
    let text = format!(
        "{}\n[connectors.keyed]\nbase_url = \"https://api.keyed.test\"\nauth = {{ method = \"api_key_header\", name = \"X-Key\", key = {{ env = \"NEW_KEY\" }} }}\n",
        config("read", "https://api.plain.test", "")
    );
    let missing = r.engine.reload_config(parse(&text), env_vars()).await;
    assert_eq!(missing.added, ["keyed"]);
    let err = r.engine.connector("keyed").unwrap().credential_status(Env::Live).unwrap_err();
    assert_eq!(err.code, ErrorCode::SecretMissing);
    let mut vars = env_vars();
    vars.insert("NEW_KEY".into(), SecretString::from("k"));
    let report = r.engine.reload_config(parse(&text), vars).await;
    assert!(report.is_empty(), "the definition did not change: {report}");
    // A credential that could not be prepared is prepared again.
    assert!(r.engine.connector("keyed").unwrap().credential_status(Env::Live).is_ok());
}

/// A call that took the runtime before the reload and asks for its token after it obtains one
/// under the old grant; calls under the new grant do not use it.
#[tokio::test(start_paused = true)]
async fn a_token_obtained_under_the_old_grant_during_a_reload_is_not_used_after_it() {
    let r = start(&config("read", "https://api.plain.test", "")).await;
    let in_flight = token_of(&r.engine, "tokens");
    r.engine.reload_config(parse(&config("write", "https://api.plain.test", "")), env_vars()).await;
    let late = r.engine.tokens.get(&in_flight).await.unwrap();
    assert_eq!(late.token.access_token.expose_secret(), "at-1", "the old runtime's call is answered");
    assert_eq!(access_token(&r.engine, "tokens").await, "at-2", "the new grant obtains its own");
    assert_eq!(r.issuer.seen()[1].1.as_deref(), Some("write"));
}

/// Two instances sharing a store, one reloaded with a changed grant and one not yet: neither
/// uses the other's token.
#[tokio::test(start_paused = true)]
async fn instances_on_different_grants_do_not_use_each_others_tokens() {
    let a = start(&config("read", "https://api.plain.test", "")).await;
    let b = start_on(&config("read", "https://api.plain.test", ""), a.store.clone(), a.vault.clone()).await;
    assert_eq!(access_token(&a.engine, "tokens").await, "at-1");
    b.engine.reload_config(parse(&config("write", "https://api.plain.test", "")), env_vars()).await;
    assert_eq!(access_token(&b.engine, "tokens").await, "at-1", "b's own endpoint: a new token");
    assert_eq!(b.issuer.seen(), [("https://idp.test/token".to_owned(), Some("write".to_owned()))]);
    // `a`, still on the old file, replaces b's token when it next looks in the store (a new
    // process here, with an empty cache), rather than using it.
    let a2 = start_on(&config("read", "https://api.plain.test", ""), a.store.clone(), a.vault.clone()).await;
    assert_eq!(access_token(&a2.engine, "tokens").await, "at-1");
    assert_eq!(a2.issuer.seen().len(), 1, "a token under a's own grant");
}
