//! Unit tests of the token lifecycle, on a fake clock (tokio's paused time: a sleep returns at
//! once with the time moved on), the in-memory store and a scripted token endpoint. No
//! network, no real sleeping.

mod decide;
mod failover;
mod failures;
mod leases;
mod reactive;
mod refresh;
mod shown;
mod stamps;
mod store_faults;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_vault::{MasterKey, Vault};
use secrecy::{ExposeSecret, SecretString};

use super::{TokenEndpoint, TokenManager};
use crate::Env;
use crate::auth::TokenSource;
use crate::auth::grant::{Client, Grant};
use crate::clock::{Clock, FakeClock};
use crate::config::{ClientAuth, TokenIn};
use crate::event::EventKind;
use crate::secret::{AccessToken, ClientSecret, RefreshToken};
use crate::store::memory::MemoryStore;
use crate::store::{EventFilter, EventRow, TokenKey, TokenRow, TokenStore, TokenWrite};
use crate::token::{self, TokenError, TokenErrorKind, TokenRequest, TokenRequestBody, TokenSet, TokenState};

/// The time the tests start at (an arbitrary instant, Unix milliseconds).
pub(super) const T0: i64 = 1_700_000_000_000;
pub(super) const HOUR: i64 = 3_600_000;

/// What the scripted endpoint answers to one request.
pub(super) enum Answer {
    /// A token set living this long (ms), with or without a refresh token.
    Tokens {
        lifetime_ms: i64,
        refresh: bool,
    },
    Fail(TokenError),
}

/// One request the endpoint saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Seen {
    pub at: i64,
    pub grant_type: String,
    /// The refresh token presented, if any.
    pub refresh_token: Option<String>,
}

/// A token endpoint that answers from a script (then, by default, one-hour tokens with a
/// refresh token), numbering the tokens it issues: `at-1`, `rt-1`, `at-2`, ...
pub(super) struct Script {
    clock: Arc<FakeClock>,
    answers: Mutex<VecDeque<Answer>>,
    seen: Mutex<Vec<Seen>>,
    issued: Mutex<u32>,
    /// How long each answer takes (a slow provider).
    delay: Mutex<Duration>,
}

impl Script {
    pub fn then(&self, answer: Answer) -> &Self {
        self.answers.lock().unwrap().push_back(answer);
        self
    }
    pub fn slow(&self, delay: Duration) {
        *self.delay.lock().unwrap() = delay;
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn form_value(request: &TokenRequest, name: &str) -> Option<String> {
    match &request.body {
        TokenRequestBody::Form(pairs) => {
            pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.expose_secret().to_owned())
        }
        TokenRequestBody::Json(_) => None,
    }
}

#[async_trait::async_trait]
impl TokenEndpoint for Script {
    async fn send(&self, _src: &TokenSource, request: &TokenRequest, now: i64) -> Result<TokenSet, TokenError> {
        self.seen.lock().unwrap().push(Seen {
            at: now,
            grant_type: form_value(request, "grant_type").unwrap_or_default(),
            refresh_token: form_value(request, "refresh_token"),
        });
        let delay = *self.delay.lock().unwrap();
        if !delay.is_zero() {
            self.clock.sleep(delay).await;
        }
        let answer = self.answers.lock().unwrap().pop_front();
        let (lifetime_ms, refresh) = match answer {
            Some(Answer::Fail(e)) => return Err(e),
            Some(Answer::Tokens { lifetime_ms, refresh }) => (lifetime_ms, refresh),
            None => (HOUR, true),
        };
        let n = {
            let mut issued = self.issued.lock().unwrap();
            *issued += 1;
            *issued
        };
        let now = self.clock.now_ms();
        Ok(token_set(&format!("at-{n}"), refresh.then(|| format!("rt-{n}")).as_deref(), now, lifetime_ms))
    }
}

pub(super) fn token_set(access: &str, refresh: Option<&str>, obtained_at: i64, lifetime_ms: i64) -> TokenSet {
    TokenSet {
        access_token: AccessToken::from(access.to_owned()),
        refresh_token: refresh.map(|r| RefreshToken::from(r.to_owned())),
        token_secret: None,
        token_type: Some("Bearer".into()),
        expires_at: Some(obtained_at + lifetime_ms),
        scope: None,
        extra: serde_json::Map::new(),
        obtained_at,
        grant: None,
    }
}

/// A provider's refusal (`invalid_grant` and its kin): terminal.
pub(super) fn refused(code: &str) -> TokenError {
    TokenError {
        kind: TokenErrorKind::Refused,
        status: Some(400),
        error: Some(code.into()),
        description: None,
        uri: None,
    }
}

/// A transient failure (a 5xx or 429), with the provider's `Retry-After` if any.
pub(super) fn transient(status: u16, retry_after: Option<Duration>) -> TokenError {
    TokenError {
        kind: TokenErrorKind::Failed { retry_after },
        status: Some(status),
        error: None,
        description: None,
        uri: None,
    }
}

/// A timeout after the request may have reached the provider: its answer was lost.
pub(super) fn ambiguous_timeout() -> TokenError {
    TokenError {
        kind: TokenErrorKind::Lost { timed_out: true },
        status: None,
        error: None,
        description: Some("timed out".into()),
        uri: None,
    }
}

fn client() -> Client {
    Client {
        id: "id".into(),
        secret: Some(ClientSecret::from("secret".to_owned())),
        auth: ClientAuth::Basic,
        assertion: None,
    }
}

/// The password grant: refreshable, and the grant can be repeated.
pub(super) fn password_grant() -> Grant {
    Grant::Password {
        token_url: "https://provider.test/token".into(),
        username: "u".into(),
        password: SecretString::from("p"),
        client: client(),
        scope: None,
    }
}

/// The browser flow's grant: only its refresh token renews tokens.
pub(super) fn authorization_code_grant() -> Grant {
    Grant::AuthorizationCode {
        token_url: "https://provider.test/token".into(),
        client: client(),
        scope: None,
        shape: Default::default(),
    }
}

pub(super) fn source_with(grant: Grant, key: TokenKey) -> TokenSource {
    TokenSource {
        key,
        grant: Arc::new(grant),
        token_in: TokenIn::Header,
        skew_ms: crate::auth::grant::DEFAULT_SKEW_MS,
        skew_configured: false,
        keepalive_ms: 24 * HOUR,
        timeout: Duration::from_secs(10),
        client: crate::http::client_builder().build().expect("a client"),
        fingerprint: [1; 32],
        stamp: Some([1; 32]),
        refresh_on: None,
        signing: crate::auth::TokenSigning::Bearer,
    }
}

/// An app-level password-grant source for `crm` in live.
pub(super) fn source() -> TokenSource {
    source_with(password_grant(), TokenKey::app("crm", Env::Live))
}

/// A manager on a fake clock, an in-memory store and a scripted endpoint.
pub(super) struct Harness {
    pub clock: Arc<FakeClock>,
    pub store: MemoryStore,
    pub vault: Arc<Vault>,
    pub script: Arc<Script>,
    pub tokens: Arc<TokenManager>,
    pub webhooks: tokio::sync::mpsc::UnboundedReceiver<EventRow>,
}

impl Harness {
    pub fn new() -> Self {
        let clock = FakeClock::at(T0);
        let store = MemoryStore::new();
        let vault = Arc::new(Vault::new(&MasterKey::generate()));
        Self::on(clock, store, vault)
    }

    /// Another instance (its own manager and endpoint) on the same store, clock and key.
    pub fn other_instance(&self) -> Self {
        Self::on(self.clock.clone(), self.store.clone(), self.vault.clone())
    }

    fn on(clock: Arc<FakeClock>, store: MemoryStore, vault: Arc<Vault>) -> Self {
        let script = Arc::new(Script {
            clock: clock.clone(),
            answers: Mutex::default(),
            seen: Mutex::default(),
            issued: Mutex::default(),
            delay: Mutex::default(),
        });
        let (notify, webhooks) = tokio::sync::mpsc::unbounded_channel();
        let tokens = TokenManager::new(Arc::new(store.clone()), vault.clone(), clock.clone(), None, Some(notify))
            .with_endpoint(script.clone());
        Self { clock, store, vault, script, tokens: Arc::new(tokens), webhooks }
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Token requests sent so far.
    pub fn requests(&self) -> u64 {
        self.tokens.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub async fn row(&self, key: &TokenKey) -> TokenRow {
        self.store.get_token(key).await.unwrap().expect("a token row")
    }

    /// The kinds of the recorded events, oldest first.
    pub async fn kinds(&self) -> Vec<EventKind> {
        self.events().await.iter().map(|e| e.kind).collect()
    }

    /// The recorded events, oldest first.
    pub async fn events(&self) -> Vec<EventRow> {
        let mut rows = self.store.list_events(&EventFilter { limit: 1_000, ..EventFilter::default() }).await.unwrap();
        rows.reverse();
        rows
    }

    /// The detail of the last event of `kind`.
    pub async fn detail(&self, kind: EventKind) -> serde_json::Value {
        let event = self.events().await.into_iter().rev().find(|e| e.kind == kind).expect("an event of that kind");
        serde_json::from_str(&event.detail).unwrap()
    }

    /// Stores `set` for `key` as another instance would have (lease, commit).
    pub async fn store_tokens(&self, key: &TokenKey, set: &TokenSet) {
        let now = self.now();
        let leased = self.store.take_lease(key, "elsewhere", now, now + 1_000).await.unwrap().expect("a free lease");
        let write = TokenWrite {
            sealed: Some(Some(token::seal(&self.vault, key, set))),
            expires_at: Some(set.expires_at),
            state: TokenState::Ok,
            last_error: None,
            last_refresh_at: Some(now),
        };
        assert!(self.store.commit_token(key, leased.epoch, &write, now).await.unwrap());
    }

    /// Lets spawned tasks (touches, background commits) run.
    pub async fn settle(&self) {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }
}

pub(super) fn access(set: &TokenSet) -> &str {
    set.access_token.expose_secret()
}
