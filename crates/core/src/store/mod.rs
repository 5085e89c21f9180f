//! The storage interface. `latchkey-store` implements it on SQLite and PostgreSQL, [`memory`]
//! in memory for tests, and one conformance suite runs against all three. Values that are secret arrive here already sealed by
//! the vault: a store never sees plaintext, and never needs the master key.

use crate::Env;

/// The whole store in memory, for tests (latchkey-store's conformance suite runs against it).
#[cfg(any(test, feature = "testing"))]
pub mod memory;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or answered with an error. The message names the
    /// operation, never a value.
    #[error("store unavailable during {op}: {reason}")]
    Unavailable { op: &'static str, reason: String },
    /// A record already exists where a new one was to be inserted.
    #[error("{0} already exists")]
    Conflict(String),
    /// The database answered, but a row holds a value this version cannot read (an unknown
    /// state, kind or environment): written by a newer version, or edited by hand. Retrying
    /// does not help. The message names the row, never a secret value.
    #[error("stored data cannot be read during {op}: {reason}")]
    Corrupt { op: &'static str, reason: String },
}

impl From<StoreError> for crate::CallError {
    /// `unavailable` (retry later) while the store cannot be reached, `internal` (retry does
    /// not help) when what it holds cannot be read; the store's error is kept as the cause.
    fn from(e: StoreError) -> Self {
        use crate::{CallError, ErrorCode, Origin, Retry};
        let error = match &e {
            StoreError::Corrupt { .. } => CallError::new(
                ErrorCode::Internal,
                format!("{e}: if a newer Latchkey wrote it, run that version; otherwise restore the row from a backup or delete it"),
            )
            .from_origin(Origin::Store)
            .with_retry(Retry::Never),
            StoreError::Unavailable { .. } | StoreError::Conflict(_) => {
                CallError::new(ErrorCode::Unavailable, e.to_string())
            }
        };
        error.caused_by(e)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// See [`Store::changes_since`]. Apply the deletions first, then the rows: rows are what the
/// store holds now, so a name deleted and written again since is present, and one written and
/// then deleted is not.
#[derive(Debug, Default)]
pub struct StoreChanges {
    pub through: i64,
    pub secrets: Vec<SecretRow>,
    pub deleted_secrets: Vec<String>,
    pub keys: Vec<KeyRow>,
    pub deleted_keys: Vec<String>,
}

/// One sealed value of a secret in one environment.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretRow {
    pub name: String,
    pub env: Env,
    pub sealed: Vec<u8>,
    pub updated_at: i64,
}

impl std::fmt::Debug for SecretRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretRow")
            .field("name", &self.name)
            .field("env", &self.env)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Admin,
    App(Env),
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Admin => "admin",
            KeyKind::App(Env::Live) => "live",
            KeyKind::App(Env::Dev) => "dev",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(KeyKind::Admin),
            "live" => Some(KeyKind::App(Env::Live)),
            "dev" => Some(KeyKind::App(Env::Dev)),
            _ => None,
        }
    }
}

/// An admin or app key, as stored: only the SHA-256 of the key, never the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: String,
    pub name: String,
    pub kind: KeyKind,
    pub hash: Vec<u8>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// A connector created through the admin API: its definition as JSON of the config shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorRow {
    pub name: String,
    pub definition: String,
    pub updated_at: i64,
}

#[async_trait::async_trait]
pub trait Store: TokenStore + ConnectionStore + IdentityStore + SealedStore + Send + Sync + 'static {
    /// Cheap round trip for `/readyz`.
    async fn ping(&self) -> StoreResult<()>;

    /// A counter bumped by every write to secrets, keys and connectors, so that every
    /// instance (and a server beside a CLI writing to the same store) notices and reloads.
    async fn generation(&self) -> StoreResult<i64>;

    async fn get_meta(&self, key: &str) -> StoreResult<Option<Vec<u8>>>;
    /// Inserts `value` under `key` unless the key exists; returns whether it was inserted.
    async fn insert_meta(&self, key: &str, value: &[u8]) -> StoreResult<bool>;

    async fn put_secret(&self, row: &SecretRow) -> StoreResult<()>;
    /// Deletes every environment's value; returns whether anything was deleted.
    async fn delete_secret(&self, name: &str) -> StoreResult<bool>;
    async fn list_secrets(&self) -> StoreResult<Vec<SecretRow>>;
    /// What writers changed after generation `since`: the secrets and app keys written since
    /// (as they are now) and the secret names and key ids deleted since. `through` is the
    /// generation read before them; every change up to it is included (later ones may be).
    async fn changes_since(&self, since: i64) -> StoreResult<StoreChanges>;

    async fn insert_key(&self, row: &KeyRow) -> StoreResult<()>;
    async fn find_key(&self, id: &str) -> StoreResult<Option<KeyRow>>;
    async fn list_keys(&self) -> StoreResult<Vec<KeyRow>>;
    async fn delete_key(&self, id: &str) -> StoreResult<bool>;
    async fn touch_key(&self, id: &str, at: i64) -> StoreResult<()>;

    async fn put_connector(&self, row: &ConnectorRow) -> StoreResult<()>;
    /// Inserts the connector unless one of that name is stored, in one statement: of two
    /// concurrent creators of a name exactly one gets `true`. Bumps the generation only when
    /// it inserted.
    async fn insert_connector(&self, row: &ConnectorRow) -> StoreResult<bool>;
    async fn list_connectors(&self) -> StoreResult<Vec<ConnectorRow>>;
    async fn delete_connector(&self, name: &str) -> StoreResult<bool>;

    /// Claims `row`'s `Idempotency-Key` for its scope (a caller), in progress (`status` 0),
    /// unless a claim is there: then that one is answered, as it is. First forgets this key's
    /// claim when it was made before `expired_before`, or is still in progress and was made
    /// before `abandoned_before` (its request never finished: a process died). Other keys'
    /// old claims are left to [`Store::sweep`].
    async fn claim_idempotency(
        &self,
        row: &IdempotencyRow,
        expired_before: i64,
        abandoned_before: i64,
    ) -> StoreResult<Option<IdempotencyRow>>;
    /// Keeps the answer (`status` and the sealed body) of the claim in progress for `scope`
    /// and `key`.
    async fn finish_idempotency(&self, scope: &str, key: &str, status: i64, answer: &[u8]) -> StoreResult<()>;
    /// Forgets the claim in progress for `scope` and `key` (its answer is not kept: the same
    /// key may be tried again).
    async fn release_idempotency(&self, scope: &str, key: &str) -> StoreResult<()>;

    /// Deletes up to `limit` rows of `what` whose time is before `before` (what "time" is for
    /// each table: [`Sweep`]), in one bounded statement, and answers how many it deleted.
    /// Several instances may sweep at once: each row is deleted once, and a sweeper never
    /// waits for rows another one holds (PostgreSQL: `SKIP LOCKED`).
    async fn sweep(&self, what: Sweep, before: i64, limit: u32) -> StoreResult<u64>;

    /// Notices of other writers' changes as they commit, sooner than polling
    /// [`Store::generation`] notices them, or `None` (the default: the memory store, SQLite)
    /// when this store sends none and polling is all there is. Each call starts a feed of its
    /// own, which stops when its receiver is dropped. A feed may miss changes (while its
    /// connection is down); it then says [`StoreChange::Resync`] once it is back, so polling
    /// stays the fallback.
    fn change_feed(&self) -> Option<ChangeFeed> {
        None
    }
}

/// A table [`Store::sweep`] deletes old rows of, and the time each row is judged by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sweep {
    /// Connect sessions and OAuth states (`flows`): their `expires_at`.
    Flows,
    /// One-time sign-in codes (`login_codes`): their `expires_at`.
    LoginCodes,
    /// The MCP authorization server's codes, sign-in requests and grants (`auth_grants`):
    /// their `expires_at`.
    AuthGrants,
    /// Refresh tokens (`refresh_tokens`): their family's absolute `expires_at` (every token
    /// of a family has the same), or their `revoked_at` (a family is revoked all at once).
    RefreshTokens,
    /// Registered MCP clients (`oauth_clients`): their `kept_until`.
    OAuthClients,
    /// `Idempotency-Key` claims and answers (`idempotency_keys`): their `created_at`.
    IdempotencyKeys,
    /// The audit log (`events`): their `at` (swept only when `[server] events_kept_days` is set).
    Events,
}

impl Sweep {
    pub const ALL: [Sweep; 7] = [
        Sweep::Flows,
        Sweep::LoginCodes,
        Sweep::AuthGrants,
        Sweep::RefreshTokens,
        Sweep::OAuthClients,
        Sweep::IdempotencyKeys,
        Sweep::Events,
    ];

    /// The table's name (also the metric's label).
    pub fn table(self) -> &'static str {
        match self {
            Sweep::Flows => "flows",
            Sweep::LoginCodes => "login_codes",
            Sweep::AuthGrants => "auth_grants",
            Sweep::RefreshTokens => "refresh_tokens",
            Sweep::OAuthClients => "oauth_clients",
            Sweep::IdempotencyKeys => "idempotency_keys",
            Sweep::Events => "events",
        }
    }
}

/// See [`Store::change_feed`].
pub type ChangeFeed = tokio::sync::mpsc::Receiver<StoreChange>;

/// A notice on a [`ChangeFeed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChange {
    /// A write committed, bumping the generation to this value (a reader holding this
    /// generation or a later one has nothing to do).
    Generation(i64),
    /// The feed is listening (first, or again after its connection was lost): changes made
    /// before may not have been noticed, so a reader should check the generation.
    Resync,
}

/// A request's `Idempotency-Key` and, once answered, its answer. `fingerprint` is the
/// SHA-256 of the request (method, path, body); `answer` is sealed (an answer may show a new
/// key or token), empty while `status` is 0 (in progress).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRow {
    pub scope: String,
    pub key: String,
    pub fingerprint: Vec<u8>,
    pub status: i64,
    pub answer: Vec<u8>,
    pub created_at: i64,
}

/// Which token: app-level tokens have an empty `connection`; per-user connections name theirs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    pub connector: String,
    pub env: Env,
    pub connection: String,
}

impl TokenKey {
    pub fn app(connector: &str, env: Env) -> Self {
        Self { connector: connector.to_owned(), env, connection: String::new() }
    }

    /// The record id the token ciphertext is bound to.
    pub fn record_id(&self) -> String {
        format!("{}/{}/{}", self.connector, self.env, self.connection)
    }
}

/// A stored token: its sealed token set, health and the refresh lease (with a fencing epoch).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub key: TokenKey,
    pub sealed: Option<Vec<u8>>,
    pub expires_at: Option<i64>,
    pub state: crate::token::TokenState,
    pub last_error: Option<String>,
    pub last_refresh_at: Option<i64>,
    pub last_used_at: Option<i64>,
    /// Bumped by every committed write of tokens or state.
    pub version: i64,
    pub lease_until: i64,
    /// Bumped by every lease taken: the fencing token for the commit.
    pub epoch: i64,
    pub updated_at: i64,
}

impl std::fmt::Debug for TokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRow")
            .field("key", &self.key)
            .field("has_tokens", &self.sealed.is_some())
            .field("expires_at", &self.expires_at)
            .field("state", &self.state)
            .field("version", &self.version)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// What a refresh commits. `sealed: None` keeps the stored tokens; `Some(None)` erases them.
#[derive(Clone, Default)]
pub struct TokenWrite {
    pub sealed: Option<Option<Vec<u8>>>,
    pub expires_at: Option<Option<i64>>,
    pub state: crate::token::TokenState,
    pub last_error: Option<String>,
    pub last_refresh_at: Option<i64>,
}

/// One audit-log entry. Never carries a token or a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub id: String,
    pub at: i64,
    pub kind: crate::event::EventKind,
    pub connector: String,
    pub env: Env,
    pub connection: String,
    pub actor: String,
    pub outcome: crate::event::EventOutcome,
    /// JSON text: error codes, statuses, descriptions.
    pub detail: String,
}

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub connector: Option<String>,
    pub kind: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: i64,
    /// A page after the event with this id (in the listing's order, newest first).
    pub starting_after: Option<String>,
}

/// Tokens and the audit log: separate from [`Store`] so that each stays readable.
#[async_trait::async_trait]
pub trait TokenStore: Send + Sync + 'static {
    async fn get_token(&self, key: &TokenKey) -> StoreResult<Option<TokenRow>>;
    async fn list_tokens(&self) -> StoreResult<Vec<TokenRow>>;
    /// Takes the refresh lease if it is free at `now` (creating an empty row if there is
    /// none): returns the row with its new epoch, or `None` while another holder's lease runs.
    async fn take_lease(&self, key: &TokenKey, owner: &str, now: i64, until: i64) -> StoreResult<Option<TokenRow>>;
    /// Moves the end of the lease taken under `epoch` to `until` (the holder's heartbeat),
    /// only if that epoch still holds it and it has not run out at `now`: `false` when it was
    /// released, ran out, or was taken over (a newer epoch).
    async fn extend_lease(&self, key: &TokenKey, epoch: i64, now: i64, until: i64) -> StoreResult<bool>;
    /// Commits `write` and releases the lease, only if `epoch` still holds it (compare-and-swap).
    async fn commit_token(&self, key: &TokenKey, epoch: i64, write: &TokenWrite, now: i64) -> StoreResult<bool>;
    /// Commits `write` only if nobody wrote since `version` (for a holder whose lease ran out).
    async fn commit_token_if_version(
        &self,
        key: &TokenKey,
        version: i64,
        write: &TokenWrite,
        now: i64,
    ) -> StoreResult<bool>;
    /// Records a use; never touches tokens or the version.
    async fn touch_token(&self, key: &TokenKey, at: i64) -> StoreResult<()>;
    async fn delete_token(&self, key: &TokenKey) -> StoreResult<bool>;

    async fn insert_event(&self, event: &EventRow) -> StoreResult<()>;
    /// Newest first.
    async fn list_events(&self, filter: &EventFilter) -> StoreResult<Vec<EventRow>>;
}

/// A per-user connection: who owns it (the app's user id), whose account it is at the
/// provider, and the token response's non-secret fields. Its tokens live in `tokens` under
/// `TokenKey { connection: id }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRow {
    pub id: String,
    pub connector: String,
    pub env: Env,
    pub owner: String,
    pub provider_user_id: Option<String>,
    pub email: Option<String>,
    pub scopes: Option<String>,
    /// JSON object: the token response's fields other than the tokens.
    pub metadata: String,
    /// Where the last connect flow sent the browser back (reused by reconnect links).
    pub return_to: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A count of [`ConnectionStore::count_connections`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionCount {
    pub connector: String,
    pub env: Env,
    pub state: crate::token::TokenState,
    pub count: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ConnectionFilter {
    pub connector: Option<String>,
    pub env: Option<Env>,
    pub owner: Option<String>,
}

/// One step of a browser flow, stored under the SHA-256 of its random handle: a connect
/// session (`kind = "session"`, handed to the app) or an OAuth `state` (`kind = "state"`,
/// bound to a browser cookie and holding the sealed PKCE verifier).
#[derive(Clone, PartialEq, Eq)]
pub struct FlowRow {
    pub handle_hash: Vec<u8>,
    pub kind: String,
    pub connector: String,
    pub env: Env,
    pub owner: String,
    pub return_to: String,
    pub sealed: Option<Vec<u8>>,
    pub binding: Option<Vec<u8>>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl std::fmt::Debug for FlowRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowRow")
            .field("kind", &self.kind)
            .field("connector", &self.connector)
            .field("env", &self.env)
            .field("owner", &self.owner)
            .field("expires_at", &self.expires_at)
            .field("used_at", &self.used_at)
            .finish_non_exhaustive()
    }
}

/// What taking a flow handle found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowTake {
    /// Unused until now; it is now used.
    Fresh(FlowRow),
    /// Used before (a replay).
    Used(FlowRow),
    Unknown,
}

#[async_trait::async_trait]
pub trait ConnectionStore: Send + Sync + 'static {
    /// Creates the connection for (connector, env, owner), or updates the existing one and
    /// keeps its id; returns the stored row.
    async fn upsert_connection(&self, row: &ConnectionRow) -> StoreResult<ConnectionRow>;
    async fn find_connection(&self, connector: &str, env: Env, owner: &str) -> StoreResult<Option<ConnectionRow>>;
    async fn get_connection(&self, id: &str) -> StoreResult<Option<ConnectionRow>>;
    async fn list_connections(&self, filter: &ConnectionFilter) -> StoreResult<Vec<ConnectionRow>>;
    /// Deletes the connection and its tokens, and bumps the generation (instances forget it).
    async fn delete_connection(&self, id: &str) -> StoreResult<bool>;
    /// A connection whose credential is its user's own values (`per_user` connectors): in one
    /// transaction, upserts the connection of (connector, env, owner) as
    /// [`ConnectionStore::upsert_connection`] does, puts `sealed` in its token row (state `ok`,
    /// no expiry, no error, the version bumped, `last_refresh_at = now`), and bumps the
    /// generation, so that every instance drops what it prepared from the old values. The
    /// values were sealed for `row.id`: when the row of (connector, env, owner) has another id
    /// (made meanwhile), nothing is written and the answer is `None`.
    async fn put_connection_values(
        &self,
        row: &ConnectionRow,
        sealed: &[u8],
        now: i64,
    ) -> StoreResult<Option<ConnectionRow>>;
    /// How many connections there are by connector, environment and their token's stored
    /// state (`Empty` for one without a token row), for the metrics; sorted by those three as
    /// text, no zero counts.
    async fn count_connections(&self) -> StoreResult<Vec<ConnectionCount>>;

    async fn insert_flow(&self, row: &FlowRow) -> StoreResult<()>;
    /// Marks a flow handle used, atomically: exactly one taker sees `Fresh`.
    async fn take_flow(&self, handle_hash: &[u8], now: i64) -> StoreResult<FlowTake>;
    /// Reads a flow handle without using it: a request is checked against it first, and only
    /// a request that is otherwise valid takes it (a refused one must not spend it).
    async fn get_flow(&self, handle_hash: &[u8]) -> StoreResult<Option<FlowRow>>;
}

/// A Latchkey user (identity provider): per environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub env: Env,
    pub id: String,
    pub email: Option<String>,
    /// JSON object of the app's attributes.
    pub attributes: String,
    /// For users made by sign-in: the login connector and the provider's user id.
    pub provider: Option<String>,
    pub provider_user_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An identity signing key: the private key sealed by the vault.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub sealed: Vec<u8>,
    pub created_at: i64,
    /// Published in the JWKS from creation; used for signing from this time.
    pub activates_at: i64,
    /// No longer signs from this time; stays in the JWKS until its tokens expired.
    pub retired_at: Option<i64>,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRow").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// A refresh token Latchkey issued, stored only as its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshRow {
    pub hash: Vec<u8>,
    pub family: String,
    pub env: Env,
    pub user_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The pair issued when this token was used, sealed, for the short retry window.
    pub successor: Option<Vec<u8>>,
    /// The family's `scope` (space-separated), kept by every refresh; `None`: unrestricted.
    pub scope: Option<String>,
    /// The family's access-token `aud` when it is not the configured one (`<public_url>/mcp`
    /// for MCP clients), kept by every refresh.
    pub audience: Option<String>,
}

impl std::fmt::Debug for RefreshRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshRow")
            .field("family", &self.family)
            .field("user_id", &self.user_id)
            .field("used_at", &self.used_at)
            .field("revoked_at", &self.revoked_at)
            .field("scope", &self.scope)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshTake {
    /// Unused until now; it is now used.
    Fresh(RefreshRow),
    /// Used (or revoked) before.
    Spent(RefreshRow),
    Unknown,
}

#[async_trait::async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    async fn upsert_user(&self, row: &UserRow) -> StoreResult<UserRow>;
    async fn get_user(&self, env: Env, id: &str) -> StoreResult<Option<UserRow>>;
    async fn find_user_by_provider(
        &self,
        env: Env,
        provider: &str,
        provider_user_id: &str,
    ) -> StoreResult<Option<UserRow>>;
    async fn delete_user(&self, env: Env, id: &str) -> StoreResult<bool>;

    /// Inserts a signing key; bumps the generation so every instance publishes it.
    async fn insert_signing_key(&self, row: &SigningKeyRow) -> StoreResult<()>;
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>>;
    async fn retire_signing_key(&self, kid: &str, at: i64) -> StoreResult<bool>;
    async fn delete_signing_key(&self, kid: &str) -> StoreResult<bool>;

    async fn insert_refresh(&self, row: &RefreshRow) -> StoreResult<()>;
    /// Rotates a refresh token in one transaction: marks it used, stores `sealed_pair` (the
    /// pair it is exchanged for) on it and inserts `successor`, so that a token is never seen
    /// used without its successor (SECURITY S30: a concurrent presenter gets the same pair).
    /// Exactly one taker sees `Fresh`; the others see `Spent` with the winner's pair, and
    /// nothing of theirs is written.
    async fn rotate_refresh(
        &self,
        hash: &[u8],
        now: i64,
        successor: &RefreshRow,
        sealed_pair: &[u8],
    ) -> StoreResult<RefreshTake>;
    async fn get_refresh(&self, hash: &[u8]) -> StoreResult<Option<RefreshRow>>;
    /// Revokes every token of a family (and bumps the generation when any changed: instances
    /// drop its access tokens). Returns how many rows changed.
    async fn revoke_family(&self, family: &str, now: i64) -> StoreResult<u64>;
    /// Families revoked at or after `since`.
    async fn revoked_families(&self, since: i64) -> StoreResult<Vec<String>>;
    /// Revokes every family of a user, in one statement and one generation bump (none when
    /// nothing changed). Returns how many rows changed.
    async fn revoke_user_families(&self, env: Env, user_id: &str, now: i64) -> StoreResult<u64>;

    async fn insert_login_code(&self, row: &LoginCodeRow) -> StoreResult<()>;
    /// Marks a sign-in code of `env` used, atomically, if it has not expired at `now`; `None`
    /// (and the code untouched) when it is unknown, used, expired or of another environment.
    async fn take_login_code(&self, hash: &[u8], env: Env, now: i64) -> StoreResult<Option<LoginCodeRow>>;

    /// Registers an OAuth client (RFC 7591); a duplicate id is an error.
    async fn insert_oauth_client(&self, row: &OAuthClientRow) -> StoreResult<()>;
    async fn get_oauth_client(&self, id: &str) -> StoreResult<Option<OAuthClientRow>>;
    /// Moves the client's `kept_until` to `until` (never earlier), if it is registered and
    /// still kept at `now`; `false` (nothing written) when it is unknown or lapsed.
    async fn keep_oauth_client(&self, id: &str, now: i64, until: i64) -> StoreResult<bool>;
    /// Inserts a single-use handle of the MCP authorization server; a duplicate is an error.
    async fn insert_auth_grant(&self, row: &AuthGrantRow) -> StoreResult<()>;
    /// Marks the handle of `kind` used, atomically: exactly one taker sees `Fresh`; later ones
    /// see `Used` (with the row, so a replayed code's family can be revoked). Expiry is the
    /// caller's to check.
    async fn take_auth_grant(&self, hash: &[u8], kind: &str, now: i64) -> StoreResult<GrantTake>;
}

/// A client registered at the MCP authorization server's registration endpoint (RFC 7591):
/// its metadata as accepted (JSON: `redirect_uris`, `client_name`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthClientRow {
    pub id: String,
    pub metadata: String,
    pub created_at: i64,
    /// The registration lapses after this time (then it is unknown, and swept): set at
    /// registration and moved later by each authorization ([`IdentityStore::keep_oauth_client`]).
    pub kept_until: i64,
}

/// A single-use handle of the MCP authorization server, stored as its SHA-256: an
/// authorization code (`kind` `code`), an app sign-in request (`sign_in`), or the grant an
/// app's sign-in answers with (`grant`). `data` is JSON whose shape the kind fixes (a code's
/// redirect URI, PKCE challenge, scope and resource); `family` is the refresh-token family a
/// code's tokens get (revoked when the code is replayed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthGrantRow {
    pub hash: Vec<u8>,
    pub kind: String,
    pub env: Env,
    pub user_id: String,
    pub client_id: String,
    pub data: String,
    pub family: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantTake {
    /// Unused until now; it is now used.
    Fresh(AuthGrantRow),
    /// Used before (a replay).
    Used(AuthGrantRow),
    Unknown,
}

/// A one-time sign-in code, stored as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginCodeRow {
    pub hash: Vec<u8>,
    pub env: Env,
    pub user_id: String,
    pub connection_id: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Where a sealed value lives, with what its associated data needs (for `vault rotate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedPlace {
    Meta(String),
    Secret(String, Env),
    Token(TokenKey),
    Flow {
        hash: Vec<u8>,
        kind: String,
        env: Env,
    },
    SigningKey(String),
    RefreshSuccessor {
        hash: Vec<u8>,
        env: Env,
    },
    /// The answer kept for an `Idempotency-Key` (`scope` is the caller).
    IdempotencyAnswer {
        scope: String,
        key: String,
    },
}

#[async_trait::async_trait]
pub trait SealedStore: Send + Sync + 'static {
    /// Every sealed value in the store, with its place.
    async fn sealed_values(&self) -> StoreResult<Vec<(SealedPlace, Vec<u8>)>>;
    /// Replaces a sealed value if it is still `old` (a concurrent writer wins; the caller
    /// goes round again). Returns whether it replaced.
    async fn replace_sealed(&self, place: &SealedPlace, old: &[u8], new: &[u8]) -> StoreResult<bool>;
}
