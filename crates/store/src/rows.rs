//! Rows as the database returns them, one `sqlx::FromRow` struct per table or row kind, and
//! the one conversion of each into its `latchkey_core::store` row.
//!
//! Columns are read by name, so a struct names exactly the columns its queries select. Text
//! that core parses (environments, key kinds, token states, event kinds and outcomes) stays
//! text here; the conversion parses it, and data a writer could not have written (corruption,
//! a hand edit) is `Unavailable` naming the operation and the value, never a panic and never a
//! row with a made-up value.

use latchkey_core::Env;
use latchkey_core::event::{EventKind, EventOutcome};
use latchkey_core::store::{
    AuthGrantRow, ConnectionRow, ConnectorRow, EventRow, FlowRow, KeyKind, KeyRow, LoginCodeRow, OAuthClientRow,
    RefreshRow, SealedPlace, SecretRow, SigningKeyRow, StoreError, StoreResult, TokenKey, TokenRow, UserRow,
};
use latchkey_core::token::TokenState;

/// The environment stored as `env`, for the trait method `op`.
pub(crate) fn parse_env(op: &'static str, env: &str) -> StoreResult<Env> {
    env.parse().map_err(|_| StoreError::Corrupt { op, reason: format!("a stored row has unknown env `{env}`") })
}

/// `secrets`: `name, env, sealed, updated_at`.
#[derive(sqlx::FromRow)]
pub(crate) struct Secret {
    name: String,
    env: String,
    sealed: Vec<u8>,
    updated_at: i64,
}

impl Secret {
    pub(crate) fn into_row(self, op: &'static str) -> StoreResult<SecretRow> {
        let Secret { name, env, sealed, updated_at } = self;
        Ok(SecretRow { env: parse_env(op, &env)?, name, sealed, updated_at })
    }
}

/// `deletions`: `kind, name`.
#[derive(sqlx::FromRow)]
pub(crate) struct Deletion {
    pub(crate) kind: String,
    pub(crate) name: String,
}

/// `api_keys`: `id, name, kind, hash, created_at, last_used_at`.
#[derive(sqlx::FromRow)]
pub(crate) struct Key {
    id: String,
    name: String,
    kind: String,
    hash: Vec<u8>,
    created_at: i64,
    last_used_at: Option<i64>,
}

impl Key {
    pub(crate) fn into_row(self, op: &'static str) -> StoreResult<KeyRow> {
        let Key { id, name, kind, hash, created_at, last_used_at } = self;
        let Some(kind) = KeyKind::parse(&kind) else {
            return Err(StoreError::Corrupt { op, reason: format!("stored key `{id}` has unknown kind `{kind}`") });
        };
        Ok(KeyRow { id, name, kind, hash, created_at, last_used_at })
    }
}

/// `idempotency_keys`: `scope, idem_key, fingerprint, status, answer, created_at`.
#[derive(sqlx::FromRow)]
pub(crate) struct Idempotency {
    scope: String,
    idem_key: String,
    fingerprint: Vec<u8>,
    status: i64,
    answer: Vec<u8>,
    created_at: i64,
}

impl Idempotency {
    pub(crate) fn into_row(self) -> latchkey_core::store::IdempotencyRow {
        let Idempotency { scope, idem_key, fingerprint, status, answer, created_at } = self;
        latchkey_core::store::IdempotencyRow { scope, key: idem_key, fingerprint, status, answer, created_at }
    }
}

/// `connectors`: `name, definition, updated_at`.
#[derive(sqlx::FromRow)]
pub(crate) struct Connector {
    name: String,
    definition: String,
    updated_at: i64,
}

impl From<Connector> for ConnectorRow {
    fn from(Connector { name, definition, updated_at }: Connector) -> Self {
        ConnectorRow { name, definition, updated_at }
    }
}

/// `tokens`: every column but `lease_owner`.
#[derive(sqlx::FromRow)]
pub(crate) struct Token {
    connector: String,
    env: String,
    connection: String,
    sealed: Option<Vec<u8>>,
    expires_at: Option<i64>,
    state: String,
    last_error: Option<String>,
    last_refresh_at: Option<i64>,
    last_used_at: Option<i64>,
    version: i64,
    lease_until: i64,
    epoch: i64,
    updated_at: i64,
}

impl Token {
    pub(crate) fn into_row(self, op: &'static str) -> StoreResult<TokenRow> {
        let Token {
            connector,
            env,
            connection,
            sealed,
            expires_at,
            state,
            last_error,
            last_refresh_at,
            last_used_at,
            version,
            lease_until,
            epoch,
            updated_at,
        } = self;
        let key = TokenKey { connector, env: parse_env(op, &env)?, connection };
        let state = TokenState::parse(&state).map_err(|e| StoreError::Corrupt {
            op,
            reason: format!("stored token `{}/{}/{}` has {e}", key.connector, key.env, key.connection),
        })?;
        Ok(TokenRow {
            key,
            sealed,
            expires_at,
            state,
            last_error,
            last_refresh_at,
            last_used_at,
            version,
            lease_until,
            epoch,
            updated_at,
        })
    }
}

/// `events`: every column.
#[derive(sqlx::FromRow)]
pub(crate) struct Event {
    id: String,
    at: i64,
    kind: String,
    connector: String,
    env: String,
    connection: String,
    actor: String,
    outcome: String,
    detail: String,
}

impl Event {
    pub(crate) fn into_row(self, op: &'static str) -> StoreResult<EventRow> {
        let Event { id, at, kind, connector, env, connection, actor, outcome, detail } = self;
        let env = parse_env(op, &env)?;
        let unknown =
            |e: &dyn std::fmt::Display| StoreError::Corrupt { op, reason: format!("stored event `{id}` has {e}") };
        let kind = EventKind::parse(&kind).map_err(|e| unknown(&e))?;
        let outcome = EventOutcome::parse(&outcome).map_err(|e| unknown(&e))?;
        Ok(EventRow { id, at, kind, connector, env, connection, actor, outcome, detail })
    }
}

/// `connections`: every column.
#[derive(sqlx::FromRow)]
pub(crate) struct Connection {
    id: String,
    connector: String,
    env: String,
    owner: String,
    provider_user_id: Option<String>,
    email: Option<String>,
    scopes: Option<String>,
    metadata: String,
    return_to: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl Connection {
    pub(crate) fn into_row(self, op: &'static str) -> StoreResult<ConnectionRow> {
        let Connection {
            id,
            connector,
            env,
            owner,
            provider_user_id,
            email,
            scopes,
            metadata,
            return_to,
            created_at,
            updated_at,
        } = self;
        Ok(ConnectionRow {
            id,
            connector,
            env: parse_env(op, &env)?,
            owner,
            provider_user_id,
            email,
            scopes,
            metadata,
            return_to,
            created_at,
            updated_at,
        })
    }
}

/// `flows`: every column.
#[derive(sqlx::FromRow)]
pub(crate) struct Flow {
    handle_hash: Vec<u8>,
    kind: String,
    connector: String,
    env: String,
    owner: String,
    return_to: String,
    sealed: Option<Vec<u8>>,
    binding: Option<Vec<u8>>,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

impl Flow {
    pub(crate) fn into_row(self, op: &'static str) -> StoreResult<FlowRow> {
        let Flow {
            handle_hash,
            kind,
            connector,
            env,
            owner,
            return_to,
            sealed,
            binding,
            created_at,
            expires_at,
            used_at,
        } = self;
        Ok(FlowRow {
            handle_hash,
            kind,
            connector,
            env: parse_env(op, &env)?,
            owner,
            return_to,
            sealed,
            binding,
            created_at,
            expires_at,
            used_at,
        })
    }
}

/// `users`: every column.
#[derive(sqlx::FromRow)]
pub(crate) struct User {
    env: String,
    id: String,
    email: Option<String>,
    attributes: String,
    provider: Option<String>,
    provider_user_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl User {
    pub(crate) fn into_row(self, op: &'static str) -> StoreResult<UserRow> {
        let User { env, id, email, attributes, provider, provider_user_id, created_at, updated_at } = self;
        Ok(UserRow {
            env: parse_env(op, &env)?,
            id,
            email,
            attributes,
            provider,
            provider_user_id,
            created_at,
            updated_at,
        })
    }
}

/// `signing_keys`: every column.
#[derive(sqlx::FromRow)]
pub(crate) struct SigningKey {
    kid: String,
    alg: String,
    sealed: Vec<u8>,
    created_at: i64,
    activates_at: i64,
    retired_at: Option<i64>,
}

impl From<SigningKey> for SigningKeyRow {
    fn from(SigningKey { kid, alg, sealed, created_at, activates_at, retired_at }: SigningKey) -> Self {
        SigningKeyRow { kid, alg, sealed, created_at, activates_at, retired_at }
    }
}

/// `refresh_tokens`: every column.
#[derive(sqlx::FromRow)]
pub(crate) struct Refresh {
    hash: Vec<u8>,
    family: String,
    env: String,
    user_id: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
    revoked_at: Option<i64>,
    successor: Option<Vec<u8>>,
    scope: Option<String>,
    audience: Option<String>,
}

impl Refresh {
    pub(crate) fn into_row(self, op: &'static str) -> StoreResult<RefreshRow> {
        let Refresh {
            hash,
            family,
            env,
            user_id,
            created_at,
            expires_at,
            used_at,
            revoked_at,
            successor,
            scope,
            audience,
        } = self;
        Ok(RefreshRow {
            hash,
            family,
            env: parse_env(op, &env)?,
            user_id,
            created_at,
            expires_at,
            used_at,
            revoked_at,
            successor,
            scope,
            audience,
        })
    }
}

/// `oauth_clients`: every column.
#[derive(sqlx::FromRow)]
pub(crate) struct OAuthClient {
    id: String,
    metadata: String,
    created_at: i64,
    kept_until: i64,
}

impl From<OAuthClient> for OAuthClientRow {
    fn from(OAuthClient { id, metadata, created_at, kept_until }: OAuthClient) -> Self {
        OAuthClientRow { id, metadata, created_at, kept_until }
    }
}

/// `auth_grants`: every column.
#[derive(sqlx::FromRow)]
pub(crate) struct AuthGrant {
    hash: Vec<u8>,
    kind: String,
    env: String,
    user_id: String,
    client_id: String,
    data: String,
    family: String,
    created_at: i64,
    expires_at: i64,
    used_at: Option<i64>,
}

impl AuthGrant {
    pub(crate) fn into_row(self, op: &'static str) -> StoreResult<AuthGrantRow> {
        let AuthGrant { hash, kind, env, user_id, client_id, data, family, created_at, expires_at, used_at } = self;
        Ok(AuthGrantRow {
            hash,
            kind,
            env: parse_env(op, &env)?,
            user_id,
            client_id,
            data,
            family,
            created_at,
            expires_at,
            used_at,
        })
    }
}

/// `login_codes`: every column but `used_at`.
#[derive(sqlx::FromRow)]
pub(crate) struct LoginCode {
    hash: Vec<u8>,
    env: String,
    user_id: String,
    connection_id: String,
    created_at: i64,
    expires_at: i64,
}

impl LoginCode {
    pub(crate) fn into_row(self, op: &'static str) -> StoreResult<LoginCodeRow> {
        let LoginCode { hash, env, user_id, connection_id, created_at, expires_at } = self;
        Ok(LoginCodeRow { hash, env: parse_env(op, &env)?, user_id, connection_id, created_at, expires_at })
    }
}

/// The sealed values `vault rotate` re-seals, one struct per place: each names the columns
/// that make its [`SealedPlace`] and the sealed bytes.
pub(crate) mod sealed {
    use super::*;

    /// `meta`: `key, value`.
    #[derive(sqlx::FromRow)]
    pub(crate) struct Meta {
        key: String,
        value: Vec<u8>,
    }

    impl Meta {
        pub(crate) fn into_place(self) -> (SealedPlace, Vec<u8>) {
            (SealedPlace::Meta(self.key), self.value)
        }
    }

    /// `secrets`: `name, env, sealed`.
    #[derive(sqlx::FromRow)]
    pub(crate) struct Secret {
        name: String,
        env: String,
        sealed: Vec<u8>,
    }

    impl Secret {
        pub(crate) fn into_place(self, op: &'static str) -> StoreResult<(SealedPlace, Vec<u8>)> {
            Ok((SealedPlace::Secret(self.name, parse_env(op, &self.env)?), self.sealed))
        }
    }

    /// `tokens`: `connector, env, connection, sealed` (never NULL: selected only when set).
    #[derive(sqlx::FromRow)]
    pub(crate) struct Token {
        connector: String,
        env: String,
        connection: String,
        sealed: Vec<u8>,
    }

    impl Token {
        pub(crate) fn into_place(self, op: &'static str) -> StoreResult<(SealedPlace, Vec<u8>)> {
            let Token { connector, env, connection, sealed } = self;
            Ok((SealedPlace::Token(TokenKey { connector, env: parse_env(op, &env)?, connection }), sealed))
        }
    }

    /// `flows`: `handle_hash, kind, env, sealed` (selected only when set).
    #[derive(sqlx::FromRow)]
    pub(crate) struct Flow {
        handle_hash: Vec<u8>,
        kind: String,
        env: String,
        sealed: Vec<u8>,
    }

    impl Flow {
        pub(crate) fn into_place(self, op: &'static str) -> StoreResult<(SealedPlace, Vec<u8>)> {
            let Flow { handle_hash: hash, kind, env, sealed } = self;
            Ok((SealedPlace::Flow { hash, kind, env: parse_env(op, &env)? }, sealed))
        }
    }

    /// `signing_keys`: `kid, sealed`.
    #[derive(sqlx::FromRow)]
    pub(crate) struct SigningKey {
        kid: String,
        sealed: Vec<u8>,
    }

    impl SigningKey {
        pub(crate) fn into_place(self) -> (SealedPlace, Vec<u8>) {
            (SealedPlace::SigningKey(self.kid), self.sealed)
        }
    }

    /// `refresh_tokens`: `hash, env, successor` (selected only when set).
    #[derive(sqlx::FromRow)]
    pub(crate) struct RefreshSuccessor {
        hash: Vec<u8>,
        env: String,
        successor: Vec<u8>,
    }

    impl RefreshSuccessor {
        pub(crate) fn into_place(self, op: &'static str) -> StoreResult<(SealedPlace, Vec<u8>)> {
            let RefreshSuccessor { hash, env, successor } = self;
            Ok((SealedPlace::RefreshSuccessor { hash, env: parse_env(op, &env)? }, successor))
        }
    }

    /// `idempotency_keys`: `scope, idem_key, answer` (selected only once answered).
    #[derive(sqlx::FromRow)]
    pub(crate) struct IdempotencyAnswer {
        scope: String,
        idem_key: String,
        answer: Vec<u8>,
    }

    impl IdempotencyAnswer {
        pub(crate) fn into_place(self) -> (SealedPlace, Vec<u8>) {
            (SealedPlace::IdempotencyAnswer { scope: self.scope, key: self.idem_key }, self.answer)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_env_is_corrupt_naming_the_operation_and_the_value() {
        let event = Event {
            id: "e1".into(),
            at: 1,
            kind: "k".into(),
            connector: "c".into(),
            env: "prod".into(),
            connection: String::new(),
            actor: "a".into(),
            outcome: "ok".into(),
            detail: "{}".into(),
        };
        let error = event.into_row("list_events").unwrap_err().to_string();
        assert_eq!(error, "stored data cannot be read during list_events: a stored row has unknown env `prod`");
    }

    #[test]
    fn an_unknown_key_kind_is_corrupt_naming_the_key() {
        let key = Key {
            id: "k1".into(),
            name: "n".into(),
            kind: "root".into(),
            hash: vec![0],
            created_at: 1,
            last_used_at: None,
        };
        let error = key.into_row("find_key").unwrap_err().to_string();
        assert_eq!(error, "stored data cannot be read during find_key: stored key `k1` has unknown kind `root`");
    }

    fn event(kind: &str, outcome: &str) -> Event {
        Event {
            id: "e1".into(),
            at: 1,
            kind: kind.into(),
            connector: "c".into(),
            env: "live".into(),
            connection: String::new(),
            actor: "a".into(),
            outcome: outcome.into(),
            detail: "{}".into(),
        }
    }

    #[test]
    fn events_read_their_kind_and_outcome_from_the_stored_text() {
        let row = event("token.refresh_failed", "terminal").into_row("list_events").unwrap();
        assert_eq!((row.kind, row.outcome), (EventKind::TokenRefreshFailed, EventOutcome::Terminal));
    }

    #[test]
    fn an_unknown_event_kind_or_outcome_is_corrupt_naming_the_event() {
        let error = event("token.renewed", "ok").into_row("list_events").unwrap_err().to_string();
        assert_eq!(
            error,
            "stored data cannot be read during list_events: stored event `e1` has unknown event kind `token.renewed`"
        );
        let error = event("token.obtained", "fine").into_row("list_events").unwrap_err().to_string();
        assert_eq!(
            error,
            "stored data cannot be read during list_events: stored event `e1` has unknown event outcome `fine`"
        );
    }

    fn token(state: &str) -> Token {
        Token {
            connector: "crm".into(),
            env: "live".into(),
            connection: String::new(),
            sealed: None,
            expires_at: None,
            state: state.into(),
            last_error: None,
            last_refresh_at: None,
            last_used_at: None,
            version: 0,
            lease_until: 0,
            epoch: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn tokens_read_every_stored_state() {
        for state in TokenState::ALL {
            assert_eq!(token(state.as_str()).into_row("get_token").unwrap().state, state);
        }
    }

    #[test]
    fn an_unknown_token_state_is_corrupt_not_empty() {
        let error = token("paused").into_row("get_token").unwrap_err().to_string();
        assert_eq!(
            error,
            "stored data cannot be read during get_token: stored token `crm/live/` has unknown token state `paused`"
        );
    }
}
