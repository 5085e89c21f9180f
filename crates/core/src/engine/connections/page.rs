//! The connect page's sessions (SPEC §13): a single-use link for one app user and a list of
//! connectors, spent when the browser first opens it; the browser then holds the session in
//! a cookie sealed by the vault (its user, connectors, `return_to`, CSRF token and expiry),
//! so a stolen link opened a second time is refused and the page needs no session table.
//!
//! A page session is a flow row of kind `session` whose connector is empty (no connector's
//! `/oauth/{connector}/start` can take it) and whose sealed data lists the connectors.

use std::collections::BTreeMap;

use latchkey_vault::{Aad, random, sha256};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::rules::{self, flow_error};
use super::{Connections, FlowError, flow_aad, unavailable};
use crate::auth::Credential;
use crate::config::{ConnectLabels, ConnectPageConfig};
use crate::store::{ConnectionFilter, FlowRow, FlowTake};
use crate::token::TokenState;
use crate::{CallError, Env};

/// A connect page's link and its session live this long (15 minutes).
pub const PAGE_TTL_MS: i64 = 15 * 60 * 1000;
/// The most connectors one page lists.
const MAX_CONNECTORS: usize = 20;
/// The format's first line: a cookie of another format never opens.
const VERSION: &str = "connect-page-1";

#[derive(Serialize, Deserialize)]
struct PageData {
    connectors: Vec<String>,
}

/// A connect page session, as its cookie opens to. `Debug` never shows the CSRF token.
pub struct PageSession {
    pub env: Env,
    /// The app's user.
    pub owner: String,
    pub connectors: Vec<String>,
    pub return_to: String,
    /// The token every form and link of the page carries.
    pub csrf: SecretString,
    /// Unix milliseconds: the session ends then, whatever is done on it.
    pub expires_at: i64,
}

impl PageSession {
    /// Where "Done" sends the browser: `return_to` with `status=done`.
    pub fn done_url(&self) -> String {
        rules::with_query(&self.return_to, &[("status", "done")])
    }
}

impl std::fmt::Debug for PageSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageSession").field("connectors", &self.connectors).finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct SealedSession {
    env: String,
    owner: String,
    connectors: Vec<String>,
    return_to: String,
    csrf: String,
    expires_at: i64,
}

/// How a user connects a connector on the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageMethod {
    /// Through the provider's login (the OAuth redirect flow).
    OAuth,
    /// By entering the method's fields (`key`, or `username` and `password`).
    Values { fields: &'static [&'static str] },
}

/// A connector's state for the page's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    Connected,
    /// Its provider refused the connection's token: the user must connect again.
    NeedsReconnecting,
    NotConnected,
}

/// One connector as the page lists it.
#[derive(Debug, Clone)]
pub struct PageConnector {
    pub name: String,
    pub method: PageMethod,
    pub state: PageState,
    pub labels: ConnectLabels,
}

fn cookie_aad() -> Aad {
    Aad::new("connect", "page", "cookie", "")
}

impl Connections {
    /// `POST /v1/connect` (and `POST /v1/connect/{connector}` for a `per_user` connector): a
    /// single-use link (valid 15 minutes) to the connect page for `owner` and `connectors`.
    pub async fn connect_page_session(
        &self,
        env: Env,
        owner: &str,
        connectors: &[String],
        return_to: &str,
    ) -> Result<String, CallError> {
        if owner.is_empty() || owner.len() > 200 {
            return Err(CallError::invalid_params("`user` must name the app's user (1 to 200 characters)"));
        }
        if connectors.is_empty() || connectors.len() > MAX_CONNECTORS {
            return Err(CallError::invalid_params(format!(
                "`connectors` must name 1 to {MAX_CONNECTORS} connectors the user connects"
            )));
        }
        let mut seen = Vec::with_capacity(connectors.len());
        for name in connectors {
            if seen.contains(name) {
                return Err(CallError::invalid_params(format!("`connectors` names `{name}` twice")));
            }
            self.page_method(name, env)?;
            seen.push(name.clone());
        }
        if !self.return_to_allowed(return_to) {
            return Err(CallError::invalid_params(format!(
                "return_to `{return_to}` is not allowed: add its origin and path to `[server] return_to_allow`"
            )));
        }
        let handle = random::token(43);
        let hash = sha256(handle.as_bytes()).to_vec();
        let now = self.clock.now_ms();
        let data =
            serde_json::to_vec(&PageData { connectors: seen }).map_err(|e| CallError::internal(e.to_string()))?;
        let row = FlowRow {
            sealed: Some(self.vault.seal(&flow_aad(&hash, "session", env), &data)),
            handle_hash: hash,
            kind: "session".into(),
            connector: String::new(),
            env,
            owner: owner.to_owned(),
            return_to: return_to.to_owned(),
            binding: None,
            created_at: now,
            expires_at: now + PAGE_TTL_MS,
            used_at: None,
        };
        self.store.insert_flow(&row).await.map_err(unavailable)?;
        Ok(format!("{}/connect?session={handle}", self.public_url))
    }

    /// Whether `connector` is shown on the page, and how it is connected.
    fn page_method(&self, connector: &str, env: Env) -> Result<PageMethod, CallError> {
        let conn = self
            .mirror
            .connector(connector)
            .ok_or_else(|| CallError::not_found(format!("no connector named `{connector}`")))?;
        if conn.config.per_user {
            return match &conn.credential(env)?.credential {
                Credential::PerUser(a) => Ok(PageMethod::Values { fields: a.fields() }),
                _ => Err(CallError::internal(format!("connector `{connector}` is per_user but not prepared so"))),
            };
        }
        if !matches!(conn.config.auth, crate::config::AuthConfig::OAuth2AuthorizationCode(_)) {
            return Err(CallError::invalid_params(format!(
                "connector `{connector}` has no per-user connections: the connect page shows oauth2_authorization_code connectors and `per_user = true` ones"
            )));
        }
        self.user_auth(connector, env).map(|_| PageMethod::OAuth)
    }

    /// Whether a link for `connector` alone goes to the page (a `per_user` connector) rather
    /// than straight to the provider (an OAuth connector).
    pub fn is_values_connector(&self, connector: &str) -> bool {
        self.mirror.connector(connector).is_some_and(|c| c.config.per_user)
    }

    /// The browser opens the link: the session is checked, spent (a second opening is
    /// refused), and becomes the page's session with a fresh CSRF token.
    pub async fn open_page_link(&self, handle: &str) -> Result<PageSession, FlowError> {
        let now = self.clock.now_ms();
        let hash = sha256(handle.as_bytes());
        let unavailable = |e: crate::store::StoreError| flow_error("unavailable", e.to_string(), None);
        let invalid =
            || flow_error("session_invalid", "this connect link is not valid: ask the app for a new one", None);
        let row = match self.store.get_flow(&hash).await.map_err(unavailable)? {
            Some(r) if r.kind == "session" && r.connector.is_empty() => r,
            _ => return Err(invalid()),
        };
        if row.used_at.is_some() {
            return Err(used());
        }
        if now > row.expires_at {
            return Err(flow_error("session_expired", "this connect link expired: ask the app for a new one", None));
        }
        match self.store.take_flow(&hash, now).await.map_err(unavailable)? {
            FlowTake::Fresh(_) => {}
            FlowTake::Used(_) => return Err(used()),
            FlowTake::Unknown => return Err(invalid()),
        }
        let data: PageData = row
            .sealed
            .as_ref()
            .and_then(|s| self.vault.open(&flow_aad(&hash, "session", row.env), s).ok())
            .and_then(|p| serde_json::from_slice(p.expose_secret()).ok())
            .ok_or_else(|| flow_error("session_invalid", "the connect session is damaged", None))?;
        Ok(PageSession {
            env: row.env,
            owner: row.owner,
            connectors: data.connectors,
            return_to: row.return_to,
            csrf: SecretString::from(random::token(32)),
            expires_at: row.expires_at,
        })
    }

    /// The session as its cookie's value: sealed, then base64url.
    pub fn seal_page_session(&self, s: &PageSession) -> String {
        let sealed = SealedSession {
            env: s.env.as_str().to_owned(),
            owner: s.owner.clone(),
            connectors: s.connectors.clone(),
            return_to: s.return_to.clone(),
            csrf: s.csrf.expose_secret().to_owned(),
            expires_at: s.expires_at,
        };
        let text = Zeroizing::new(format!("{VERSION}\n{}", serde_json::to_string(&sealed).unwrap_or_default()));
        let sealed = self.vault.seal(&cookie_aad(), text.as_bytes());
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sealed)
    }

    /// The session a cookie holds, while it lasts; `None` for anything else (expired, another
    /// install's, tampered, garbage).
    pub fn open_page_session(&self, cookie: &str) -> Option<PageSession> {
        if cookie.len() > 8192 {
            return None;
        }
        let sealed = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, cookie).ok()?;
        let opened = self.vault.open(&cookie_aad(), &sealed).ok()?;
        let text = std::str::from_utf8(opened.expose_secret()).ok()?;
        let json = text.strip_prefix(VERSION)?.strip_prefix('\n')?;
        let s: SealedSession = serde_json::from_str(json).ok()?;
        if self.clock.now_ms() > s.expires_at {
            return None;
        }
        Some(PageSession {
            env: s.env.parse().ok()?,
            owner: s.owner,
            connectors: s.connectors,
            return_to: s.return_to,
            csrf: SecretString::from(s.csrf),
            expires_at: s.expires_at,
        })
    }

    /// The page's connectors with their state for its user (a connector removed from the
    /// configuration since is left out).
    pub async fn page_connectors(&self, s: &PageSession) -> Result<Vec<PageConnector>, CallError> {
        let filter = ConnectionFilter { connector: None, env: Some(s.env), owner: Some(s.owner.clone()) };
        let views = self.views(&filter).await?;
        let mut out = Vec::with_capacity(s.connectors.len());
        for name in &s.connectors {
            let Ok(method) = self.page_method(name, s.env) else { continue };
            let labels = self.mirror.connector(name).and_then(|c| c.config.connect.clone()).unwrap_or_default();
            let state = match views.iter().find(|v| &v.row.connector == name) {
                None => PageState::NotConnected,
                Some(v) if v.token.as_ref().is_some_and(|t| t.state == TokenState::ReauthorizationRequired) => {
                    PageState::NeedsReconnecting
                }
                Some(_) => PageState::Connected,
            };
            out.push(PageConnector { name: name.clone(), method, state, labels });
        }
        Ok(out)
    }

    /// The page's "Connect" of an OAuth connector: a `state` bound to this browser whose
    /// callback comes back to the page (`{public_url}/connect`). Returns the provider's login
    /// URL and the flow cookie's name and value.
    pub async fn start_from_page(
        &self,
        s: &PageSession,
        connector: &str,
    ) -> Result<(String, String, String), FlowError> {
        let back = format!("{}/connect", self.public_url);
        if !s.connectors.iter().any(|c| c == connector) {
            return Err(flow_error("connector_unavailable", "this connector is not on this connect page", None));
        }
        match self.page_method(connector, s.env) {
            Ok(PageMethod::OAuth) => self.begin_state(connector, s.env, &s.owner, &back, BTreeMap::new(), false).await,
            _ => Err(flow_error("connector_unavailable", "this connector is not connected through a login", None)),
        }
    }

    /// The connect page's branding (`[server.connect_page]`), as configured now.
    pub fn page_branding(&self) -> ConnectPageConfig {
        self.mirror.config().server.connect_page.clone().unwrap_or_default()
    }
}

fn used() -> FlowError {
    flow_error("session_used", "this connect link was used already: ask the app for a new one", None)
}
