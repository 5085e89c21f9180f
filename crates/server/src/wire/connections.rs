//! Per-user connections and connect links.

use latchkey_core::engine::ConnectionView;
use latchkey_core::engine::tokens::shown_state;
use latchkey_core::time_fmt::rfc3339;
use serde::Serialize;
use serde_json::Value;

use super::stored_json;

/// A per-user connection and the health of its token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Connection<'a> {
    pub connector: &'a str,
    pub created_at: String,
    pub email: Option<&'a str>,
    pub environment: &'static str,
    pub expires_at: Option<String>,
    pub id: &'a str,
    pub last_error: Option<&'a str>,
    pub last_refresh_at: Option<String>,
    pub metadata: Value,
    pub provider_user_id: Option<&'a str>,
    pub scopes: Vec<&'a str>,
    /// The token's shown state, or `empty` when there is none yet.
    pub status: &'static str,
    pub updated_at: String,
    pub user: &'a str,
}

impl<'a> Connection<'a> {
    pub fn of(v: &'a ConnectionView, now: i64) -> Self {
        let t = v.token.as_ref();
        let r = &v.row;
        Connection {
            connector: &r.connector,
            created_at: rfc3339(r.created_at),
            email: r.email.as_deref(),
            environment: r.env.as_str(),
            expires_at: t.and_then(|t| t.expires_at).map(rfc3339),
            id: &r.id,
            last_error: t.and_then(|t| t.last_error.as_deref()),
            last_refresh_at: t.and_then(|t| t.last_refresh_at).map(rfc3339),
            metadata: stored_json(&r.metadata),
            provider_user_id: r.provider_user_id.as_deref(),
            scopes: r.scopes.as_deref().map(|s| s.split_whitespace().collect()).unwrap_or_default(),
            status: t.map_or("empty", |t| shown_state(t, now).as_str()),
            updated_at: rfc3339(r.updated_at),
            user: &r.owner,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Connections<'a> {
    pub connections: Vec<Connection<'a>>,
    /// Whether more items follow this page: ask again with `starting_after` = the last item's id.
    pub has_more: bool,
}

/// `DELETE` of a connection: its id, and whether the provider confirmed the revocation.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Deleted<'a> {
    pub deleted: &'a str,
    pub revoked: bool,
}

/// A connect link: `POST /v1/connect/{connector}` gives `expires_at`, the user token's
/// `GET /oauth/{connector}/connect` does not.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConnectLink {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    pub url: String,
}
