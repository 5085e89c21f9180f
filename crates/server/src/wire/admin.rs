//! The admin API's bodies: connectors, secrets, keys, audit events, the health of tokens.

use latchkey_core::callers::display_prefix;
use latchkey_core::engine::tokens::shown_state;
use latchkey_core::engine::{ConnectorRuntime, SecretInfo};
use latchkey_core::store::{EventRow, KeyKind, KeyRow, TokenRow};
use latchkey_core::time_fmt::rfc3339;
use serde::Serialize;
use serde_json::Value;

use super::stored_json;

/// A connector and where it was defined.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Connector<'a> {
    /// The connector's definition: the shape of `[connectors.NAME]` in the configuration file.
    #[schema(value_type = Object)]
    pub definition: &'a latchkey_core::config::ConnectorConfig,
    pub name: &'a str,
    /// `file` (the configuration file) or `api` (written through the admin API).
    #[schema(value_type = String, pattern = "^(file|api)$")]
    pub source: &'static str,
}

impl<'a> From<&'a ConnectorRuntime> for Connector<'a> {
    fn from(c: &'a ConnectorRuntime) -> Self {
        Connector { definition: &c.config, name: &c.name, source: if c.from_file { "file" } else { "api" } }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Connectors<'a> {
    pub connectors: Vec<Connector<'a>>,
    /// Whether more items follow this page: ask again with `starting_after` = the last item's id.
    pub has_more: bool,
}

/// A secret's name and environments, never its value.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Secret<'a> {
    pub environments: Vec<&'static str>,
    pub name: &'a str,
    pub updated_at: String,
}

impl<'a> From<&'a SecretInfo> for Secret<'a> {
    fn from(s: &'a SecretInfo) -> Self {
        Secret {
            environments: s.environments.iter().map(|e| e.as_str()).collect(),
            name: &s.name,
            updated_at: rfc3339(s.updated_at),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Secrets<'a> {
    /// Whether more items follow this page: ask again with `starting_after` = the last item's id.
    pub has_more: bool,
    pub secrets: Vec<Secret<'a>>,
}

/// An admin or app key as listed: its display prefix, never the key. `key` is there only in
/// the answer that creates it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Key<'a> {
    pub created_at: String,
    pub environment: Option<&'static str>,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    pub kind: &'static str,
    pub last_used_at: Option<String>,
    pub name: &'a str,
    pub prefix: String,
}

impl<'a> From<&'a KeyRow> for Key<'a> {
    fn from(k: &'a KeyRow) -> Self {
        let (kind, environment) = match k.kind {
            KeyKind::Admin => ("admin", None),
            KeyKind::App(e) => ("app", Some(e.as_str())),
        };
        Key {
            created_at: rfc3339(k.created_at),
            environment,
            id: &k.id,
            key: None,
            kind,
            last_used_at: k.last_used_at.map(rfc3339),
            name: &k.name,
            prefix: display_prefix(k),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Keys<'a> {
    /// Whether more items follow this page: ask again with `starting_after` = the last item's id.
    pub has_more: bool,
    pub keys: Vec<Key<'a>>,
}

/// One audit event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Event<'a> {
    pub actor: &'a str,
    pub at: String,
    pub connection: Option<&'a str>,
    pub connector: &'a str,
    pub detail: Value,
    pub environment: &'static str,
    pub id: &'a str,
    pub kind: &'static str,
    pub outcome: &'static str,
}

impl<'a> From<&'a EventRow> for Event<'a> {
    fn from(e: &'a EventRow) -> Self {
        Event {
            actor: &e.actor,
            at: rfc3339(e.at),
            connection: (!e.connection.is_empty()).then_some(e.connection.as_str()),
            connector: &e.connector,
            detail: stored_json(&e.detail),
            environment: e.env.as_str(),
            id: &e.id,
            kind: e.kind.as_str(),
            outcome: e.outcome.as_str(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Events<'a> {
    pub events: Vec<Event<'a>>,
    /// Whether more items follow this page: ask again with `starting_after` = the last item's id.
    pub has_more: bool,
}

/// The health of an app-level token (never the token).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Token<'a> {
    pub connector: &'a str,
    pub environment: &'static str,
    pub expires_at: Option<String>,
    pub has_token: bool,
    /// `connector:environment`, and `:connection` for a per-user connection's token: the
    /// token's place in the list (`starting_after`).
    pub id: String,
    pub last_error: Option<&'a str>,
    pub last_refresh_at: Option<String>,
    pub last_used_at: Option<String>,
    /// `refreshing` while a lease runs; `refresh_outcome_unknown` after one that was never
    /// given back (SECURITY S24).
    pub state: &'static str,
}

impl<'a> Token<'a> {
    pub fn of(t: &'a TokenRow, now: i64) -> Self {
        Token {
            connector: &t.key.connector,
            environment: t.key.env.as_str(),
            expires_at: t.expires_at.map(rfc3339),
            has_token: t.sealed.is_some(),
            id: match t.key.connection.as_str() {
                "" => format!("{}:{}", t.key.connector, t.key.env.as_str()),
                connection => format!("{}:{}:{connection}", t.key.connector, t.key.env.as_str()),
            },
            last_error: t.last_error.as_deref(),
            last_refresh_at: t.last_refresh_at.map(rfc3339),
            last_used_at: t.last_used_at.map(rfc3339),
            state: shown_state(t, now).as_str(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Tokens<'a> {
    /// Whether more items follow this page: ask again with `starting_after` = the last item's id.
    pub has_more: bool,
    pub tokens: Vec<Token<'a>>,
}

/// `POST /v1/admin/audit-hash`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditHash {
    pub hash: String,
}

/// A provider template of the catalog, in short (`GET /v1/admin/providers`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProviderSummary<'a> {
    pub name: &'a str,
    /// The provider and the way in, for people.
    pub title: &'a str,
    /// The auth method the template fills.
    pub method: &'a str,
    /// The parameters it takes (`provider_params`).
    pub params: Vec<&'a str>,
    /// The fields the connector must write itself; the secret ones are stored with `latchkey secret set`.
    pub needs: Vec<&'a str>,
}

impl<'a> From<&'a latchkey_core::providers::Template> for ProviderSummary<'a> {
    fn from(t: &'a latchkey_core::providers::Template) -> Self {
        ProviderSummary {
            name: &t.name,
            title: &t.title,
            method: t.method().unwrap_or_default(),
            params: t.params.keys().map(String::as_str).collect(),
            needs: t.needs.iter().map(|n| n.field.as_str()).collect(),
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Providers<'a> {
    pub providers: Vec<ProviderSummary<'a>>,
    /// Whether more items follow this page: ask again with `starting_after` = the last item's id.
    pub has_more: bool,
}

/// One provider template whole (`GET /v1/admin/providers/{name}`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Provider<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub method: &'a str,
    /// The provider's documentation the template was taken from.
    pub docs: &'a [String],
    /// The provider's quirks the template handles, and what to know.
    pub notes: &'a [String],
    /// Parameter name → `{about, default?, kind, example}`; `kind` is `name` (a host label or
    /// path segment), `list` (names joined by commas) or `origin` (an `https://host`). Without a `default` it is required.
    #[schema(value_type = Object)]
    pub params: &'a std::collections::BTreeMap<String, latchkey_core::providers::Param>,
    /// The fields the connector must write: `{field, secret, about}`.
    #[schema(value_type = Vec<Object>)]
    pub needs: &'a [latchkey_core::providers::Need],
    /// What the template fills: the shape of `[connectors.NAME]`, `{param}` where a parameter goes.
    #[schema(value_type = Object)]
    pub fills: &'a Value,
    /// A connector that uses the template, named after it, for `PUT /v1/admin/connectors/{name}`.
    #[schema(value_type = Object)]
    pub example: Value,
}

impl<'a> From<&'a latchkey_core::providers::Template> for Provider<'a> {
    fn from(t: &'a latchkey_core::providers::Template) -> Self {
        Provider {
            name: &t.name,
            title: &t.title,
            method: t.method().unwrap_or_default(),
            docs: &t.docs,
            notes: &t.notes,
            params: &t.params,
            needs: &t.needs,
            fills: &t.connector,
            example: t.example(&t.name.replace('-', "_"), false),
        }
    }
}
