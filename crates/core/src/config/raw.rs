//! The serde shapes of the configuration, and the per-section deserialization that lets one
//! load report every problem instead of the first.

use std::collections::BTreeMap;
use std::fmt;

use http::{HeaderValue, Method};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

use super::Config;
use super::methods::{AuthConfig, AuthMethod, parse_auth};
use super::problems::{ConfigErrors, Problem};
use super::secret_ref::SecretRef;
use super::value::{BaseUrl, BodyTemplate, HeaderTable, HeaderText, Parsed};
use crate::template::Text;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One line of text per event (the default).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message` and the event's fields.
    Json,
}

/// A name that is no log format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a log format: use `text` or `json`")]
pub struct UnknownLogFormat(pub String);

impl std::str::FromStr for LogFormat {
    type Err = UnknownLogFormat;
    fn from_str(s: &str) -> Result<Self, UnknownLogFormat> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(UnknownLogFormat(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    #[serde(default)]
    pub return_to_allow: Vec<Parsed<Url>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<Parsed<Url>>,
    /// The connect page's branding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_page: Option<ConnectPageConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<SecretRef>,
    /// Signing algorithm of new identity keys: `RS256` (default), `ES256` or `EdDSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_algorithm: Option<String>,
    /// `aud` of user access tokens (default: the public URL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_audience: Option<String>,
    /// Lifetime of user access tokens (default 900 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_ttl_s: Option<u64>,
    /// Absolute lifetime of a refresh-token family (default 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_ttl_s: Option<u64>,
    /// Let connectors defined through the admin API reach loopback, private and link-local
    /// addresses (default: public addresses only, SECURITY S16).
    #[serde(default)]
    pub api_connectors_private_egress: bool,
    /// Token introspection calls allowed per second per app key, in bursts of twice that
    /// (default 100; SECURITY S33).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_per_second: Option<u32>,
    /// An append-only audit log (JSON lines): every call and credential change is written
    /// to it before it goes out or takes effect, and refused (503) when it cannot be
    /// (SECURITY S8). Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<String>,
    /// Serving threads, each with its own single-threaded runtime (default: one per CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u16>,
    /// The longest a request other than a call (admin, connections, identity) may take before
    /// it is answered `503 unavailable`, in seconds (default 60): a store that stopped
    /// answering must not hold requests for the TCP timeout (SECURITY R5). Calls have their
    /// own bounds (`timeout_ms`, and 3 s for the token store).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_s: Option<u64>,
    /// Values each data key seals before the vault draws a new one (default 3,865,470,566;
    /// SECURITY S2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_key_max_seals: Option<u64>,
    /// Seconds a new connection has to deliver its first complete request head (default 10):
    /// sockets that send nothing, or half a head, are closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_read_timeout_s: Option<u64>,
    /// Seconds a connection may go without starting a request before it is closed (default
    /// 75): at once when idle, after the response in flight otherwise (HTTP/2: GOAWAY).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_idle_s: Option<u64>,
    /// Seconds between HTTP/2 keep-alive pings (default 30); a ping not answered within 20 s
    /// closes the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_keepalive_interval_s: Option<u64>,
    /// Open inbound connections at most (default 10,000, lowered to what the file-descriptor
    /// limit allows); past it, new connections wait in the listen backlog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Per-user connections kept in memory (with their prepared signers), least recently
    /// used first out (default 10,000): a call for a user not kept reads the store once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_cache: Option<u32>,
    /// How log lines are written: `text` (the default) or `json` (one object per line);
    /// `LATCHKEY_LOG_FORMAT` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
    /// Audit events older than this many days are deleted by the background sweep (default:
    /// kept, the whole log).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_kept_days: Option<u64>,
    /// Reload the file when it changes (checked every second), as `SIGHUP` does.
    #[serde(default)]
    pub watch_config: bool,
    /// Latchkey as the authorization server of MCP clients (docs/mcp.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<McpServerConfig>,
    /// The admin console (`/console`): on unless `enabled = false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console: Option<ConsoleConfig>,
}

/// `[server.mcp]`: how MCP clients sign their users in (Latchkey as their OAuth authorization
/// server). Checked by `validate::server`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The `login = true` connector users sign in with (default: the only one there is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_connector: Option<String>,
    /// The app's own sign-in page: the browser is sent there with `?request=ID`, and the app
    /// answers with `POST /v1/mcp/sign-in`. When set, it is used instead of a login connector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_in_url: Option<String>,
    /// The environment of the users MCP clients sign in and of their tokens: `live` (default)
    /// or `dev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Dynamic client registrations allowed per second, in bursts of twice that (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registrations_per_second: Option<u32>,
    /// For development only: accept `http://` client ID metadata documents on loopback
    /// (`127.0.0.1`, `[::1]`, `localhost`) and fetch them from there.
    #[serde(default)]
    pub allow_loopback_client_ids: bool,
}

impl McpServerConfig {
    /// The environment MCP clients' users and tokens belong to.
    pub fn env(&self) -> crate::Env {
        self.environment.as_deref().and_then(|e| e.parse().ok()).unwrap_or(crate::Env::Live)
    }
}

/// `[server.console]`: whether the admin console is served.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// `false` answers every `/console` path `404`, as if there were no console (default `true`).
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl ServerConfig {
    /// Whether `/console` is served (`[server.console] enabled`, on by default).
    pub fn console_enabled(&self) -> bool {
        self.console.as_ref().is_none_or(|c| c.enabled)
    }
}

impl ServerConfig {
    /// `connection_cache` when none is given: at about 1 KB an entry (BENCHMARKS.md), some
    /// 10 MB at most.
    pub const DEFAULT_CONNECTION_CACHE: usize = 10_000;

    /// How many per-user connections memory keeps (`connection_cache`, or its default).
    pub fn connection_cache(&self) -> usize {
        self.connection_cache.map_or(Self::DEFAULT_CONNECTION_CACHE, |n| n.max(1) as usize)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshOn {
    #[serde(default)]
    pub status: Vec<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    #[default]
    App,
    User,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParamConfig {
    #[serde(default)]
    pub required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
    #[serde(default)]
    pub private: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON type a value must have (`type = "integer"`); any value when absent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub ty: Option<ParamType>,
    /// The values allowed (`enum = ["asc", "desc"]`); any value when absent.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<serde_json::Value>>,
}

impl ParamConfig {
    /// Whether a caller's value is checked at all (`type` or `enum`): untyped parameters cost
    /// the call path nothing.
    pub fn is_checked(&self) -> bool {
        self.ty.is_some() || self.one_of.is_some()
    }

    /// A caller's value, checked against `type` and `enum`: text that reads as the type
    /// (`"5"` for an integer, `"true"` for a boolean) becomes that type, since `-p k=v` and
    /// many clients send text; anything else of the wrong type, or outside `enum`, is the
    /// message to give (naming the type or the values, never echoing the value).
    pub fn accept(&self, v: serde_json::Value) -> Result<serde_json::Value, String> {
        let v = match self.ty {
            Some(t) if !t.matches(&v) => match &v {
                serde_json::Value::String(s) => match t.read(s) {
                    Some(read) => read,
                    None => return Err(format!("must be {} (got text that is not one)", t.article())),
                },
                other => return Err(format!("must be {} (got {})", t.article(), ParamType::article_of(other))),
            },
            _ => v,
        };
        if let Some(allowed) = &self.one_of
            && !allowed.iter().any(|a| same_value(a, &v))
        {
            return Err(format!("must be one of: {}", list_values(allowed)));
        }
        Ok(v)
    }
}

/// Equal JSON values, numbers by value (`5` and `5.0` are one number).
pub(crate) fn same_value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

/// `"asc", "desc"`: the values of an `enum`, as JSON, at most 20 of them.
pub fn list_values(values: &[serde_json::Value]) -> String {
    let mut out: Vec<String> = values.iter().take(20).map(|v| v.to_string()).collect();
    if values.len() > 20 {
        out.push(format!("… ({} in all)", values.len()));
    }
    out.join(", ")
}

/// A parameter's JSON type (JSON Schema's names, without `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamType {
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
}

impl ParamType {
    pub const NAMES: &str = "string, integer, number, boolean, array, object";

    pub fn as_str(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Integer => "integer",
            ParamType::Number => "number",
            ParamType::Boolean => "boolean",
            ParamType::Array => "array",
            ParamType::Object => "object",
        }
    }

    /// "an integer", for messages.
    pub fn article(self) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Integer => "an integer",
            ParamType::Number => "a number",
            ParamType::Boolean => "a boolean (true or false)",
            ParamType::Array => "an array (a list)",
            ParamType::Object => "an object (a table)",
        }
    }

    /// "a string", "null": what a value is, for messages.
    pub fn article_of(v: &serde_json::Value) -> &'static str {
        match v {
            serde_json::Value::Null => "null",
            serde_json::Value::Bool(_) => "a boolean",
            serde_json::Value::Number(_) => "a number",
            serde_json::Value::String(_) => "text",
            serde_json::Value::Array(_) => "an array",
            serde_json::Value::Object(_) => "an object",
        }
    }

    /// Whether `v` is of this type (an integer is a number with no fraction, `5.0` too, as
    /// in JSON Schema).
    pub fn matches(self, v: &serde_json::Value) -> bool {
        match (self, v) {
            (ParamType::String, serde_json::Value::String(_))
            | (ParamType::Number, serde_json::Value::Number(_))
            | (ParamType::Boolean, serde_json::Value::Bool(_))
            | (ParamType::Array, serde_json::Value::Array(_))
            | (ParamType::Object, serde_json::Value::Object(_)) => true,
            (ParamType::Integer, serde_json::Value::Number(n)) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        }
    }

    /// Text read as this type, for the scalar types: `"42"` an integer, `"1.5"` a number,
    /// `"true"`/`"false"` a boolean. Arrays and objects are not read from text.
    pub fn read(self, s: &str) -> Option<serde_json::Value> {
        match self {
            ParamType::Integer => s.parse::<i64>().map(Into::into).or_else(|_| s.parse::<u64>().map(Into::into)).ok(),
            ParamType::Number => s
                .parse::<i64>()
                .map(Into::into)
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Into::into)),
            ParamType::Boolean => match s {
                "true" => Some(true.into()),
                "false" => Some(false.into()),
                _ => None,
            },
            ParamType::String | ParamType::Array | ParamType::Object => None,
        }
    }

    /// Whether a value of this type can be written into a path, query or header.
    pub fn is_text(self) -> bool {
        !matches!(self, ParamType::Array | ParamType::Object)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallConfig {
    #[serde(default = "default_method")]
    pub method: Parsed<Method>,
    #[serde(default = "empty_path")]
    pub path: Parsed<Text>,
    #[serde(default)]
    pub query: BTreeMap<String, Parsed<Text>>,
    #[serde(default)]
    pub headers: HeaderTable<HeaderText>,
    /// A JSON template: a string of JSON text, or a table meaning the same JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyTemplate>,
    #[serde(default)]
    pub access: Access,
    #[serde(default)]
    pub params: BTreeMap<String, ParamConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Offered as a tool at `/mcp` (the connector's `mcp = true` offers all its calls).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mcp: bool,
    /// The tool's name at `/mcp`, instead of `connector.call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
}

fn default_method() -> Parsed<Method> {
    Parsed::from_parts("GET", Method::GET)
}
fn empty_path() -> Parsed<Text> {
    Parsed::from_parts("", Text(Vec::new()))
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    pub base_url: Parsed<BaseUrl>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Sent on every request, as they are.
    #[serde(default)]
    pub headers: HeaderTable<HeaderValue>,
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Parsed apart by [`parse_auth`]; see there.
    #[serde(skip_deserializing)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub calls: BTreeMap<String, CallConfig>,
    /// Seconds before expiry to refresh. Unset: 300, capped at half the token's lifetime;
    /// set: exactly this (see `TokenSource::skew_for`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_skew_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_on: Option<RefreshOn>,
    #[serde(default = "default_keepalive_s")]
    pub keepalive_s: u64,
    /// Whether the passthrough proxy may reach this connector.
    #[serde(default = "yes")]
    pub proxy: bool,
    /// Allow `http://` to a host that is not loopback (credentials in clear text).
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// The method's secret fields come from each user (`PUT /v1/connections/{connector}`),
    /// not from the vault: `api_key_query`, `api_key_header`, `basic` and `digest` only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_user: bool,
    /// With `per_user`: the named call made with a user's new values before they are saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<String>,
    /// The provider template applied under this connector (`crate::providers`). Not
    /// serialized: the serialized connector (stored, served) is the merged one, whole, so that
    /// loading it again applies no template over what the connector wrote (a field it set to
    /// `null` stays unset).
    #[serde(default, skip_serializing)]
    pub provider: Option<String>,
    /// The template's parameters (`{ subdomain = "acme" }`); not serialized either.
    #[serde(default, skip_serializing)]
    pub provider_params: BTreeMap<String, String>,
    /// How the connect page shows this connector to a user (`connect = { label, help, help_url }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<ConnectLabels>,
    /// Every call of this connector is a tool at `/mcp`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mcp: bool,
    /// An app key may exchange a user's Latchkey token for that user's provider access token
    /// on this connector (RFC 8693, `POST /v1/token`): per-user OAuth connectors only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub token_exchange: bool,
}

impl ConnectorConfig {
    /// The calls offered as tools at `/mcp`, with their tool names (`tool_name`, else
    /// `connector.call`), in call-name order.
    pub fn tools<'a>(&'a self, connector: &'a str) -> impl Iterator<Item = (String, &'a str, &'a CallConfig)> + 'a {
        self.calls.iter().filter(|(_, c)| self.mcp || c.mcp).map(move |(name, c)| {
            let tool = c.tool_name.clone().unwrap_or_else(|| format!("{connector}.{name}"));
            (tool, name.as_str(), c)
        })
    }
}

/// A connector's words on the connect page: its name for users, a help text, and a link to
/// where a user finds their key. Checked by `validate::connect_labels`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectLabels {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// An `https://` page (opened by the user, never fetched by the page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help_url: Option<String>,
}

/// `[server.connect_page]`: the connect page's branding. Checked by `validate::server`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectPageConfig {
    /// The page's heading and title (default "Connect your accounts").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// A `data:image/png|jpeg|gif|webp|svg+xml;base64,` URL, served by Latchkey itself at
    /// `/connect/logo` (the page makes no request to another origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// `#rrggbb`: buttons, links and the focus ring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accent_color: Option<String>,
}

/// The logo media types the connect page serves.
pub const LOGO_TYPES: [&str; 5] = ["image/png", "image/jpeg", "image/gif", "image/webp", "image/svg+xml"];
/// The largest logo served (decoded bytes).
pub const LOGO_MAX: usize = 64 * 1024;

impl ConnectPageConfig {
    /// The logo's media type and bytes, when `logo_url` is a data URL the page serves.
    pub fn logo(&self) -> Option<(&'static str, Vec<u8>)> {
        let rest = self.logo_url.as_deref()?.strip_prefix("data:")?;
        let (media, data) = rest.split_once(";base64,")?;
        let media = LOGO_TYPES.iter().copied().find(|t| *t == media)?;
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).ok()?;
        (!bytes.is_empty() && bytes.len() <= LOGO_MAX).then_some((media, bytes))
    }
}

fn default_timeout_ms() -> u64 {
    30_000
}
fn default_keepalive_s() -> u64 {
    86_400
}
pub(super) fn yes() -> bool {
    true
}

/// A field whose value serde parses (a URL, a method, a header, a template): when it does not
/// parse, the problem is recorded, the field is dropped (optional ones) or given a stand-in
/// that parses (required ones), and the table is parsed again, so that one load reports every
/// bad value and the checks of the rest still run. A stand-in never reaches a configuration:
/// a table with a problem is refused.
pub(super) struct Sift {
    /// The field's path in its table; `*` matches any one key (`headers.*`).
    path: &'static str,
    stand_in: Option<fn() -> serde_json::Value>,
}

impl Sift {
    pub(super) const fn drop(path: &'static str) -> Sift {
        Sift { path, stand_in: None }
    }

    pub(super) const fn stand_in(path: &'static str, value: fn() -> serde_json::Value) -> Sift {
        Sift { path, stand_in: Some(value) }
    }

    fn matches(&self, path: &[String]) -> bool {
        let pattern: Vec<&str> = self.path.split('.').collect();
        pattern.len() == path.len() && pattern.iter().zip(path).all(|(p, k)| *p == "*" || p == k)
    }
}

const CONNECTOR_SIFT: &[Sift] =
    &[Sift::stand_in("base_url", || "https://stand-in.invalid".into()), Sift::drop("headers.*")];
const CALL_SIFT: &[Sift] = &[
    Sift::drop("method"),
    Sift::drop("headers.*"),
    Sift::drop("body"),
    Sift::drop("params.*.type"),
    Sift::drop("params.*.enum"),
];

/// Deserializes `value` into `T`, naming the failing field path on error; the values of
/// `sift` are each reported and set aside (see [`Sift`]), so the value may come back with
/// problems.
pub(super) fn typed_all<T: DeserializeOwned>(
    mut value: serde_json::Value,
    sift: &[Sift],
) -> (Option<T>, Vec<(String, String)>) {
    let mut problems: Vec<(String, String)> = Vec::new();
    loop {
        let err = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => return (Some(t), problems),
            Err(e) => e,
        };
        let keys: Vec<String> = err
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let (path, msg) = located(err);
        if problems.iter().any(|(p, _)| *p == path) {
            return (None, problems); // its stand-in did not help: reported already
        }
        // An unknown field is reported and dropped, so that the rest is still checked.
        let unknown = msg.starts_with("unknown field `");
        problems.push((path, msg));
        let stand_in = match sift.iter().find(|s| s.matches(&keys)) {
            Some(s) => s.stand_in,
            None if unknown => None,
            None => return (None, problems),
        };
        let Some((last, parents)) = keys.split_last() else { return (None, problems) };
        let Some(serde_json::Value::Object(table)) = parents.iter().try_fold(&mut value, |v, k| v.get_mut(k)) else {
            return (None, problems);
        };
        match stand_in {
            Some(stand_in) => table.insert(last.clone(), stand_in()),
            None => table.remove(last),
        };
    }
}

/// A deserialization error as (field path, message).
fn located<E: fmt::Display>(e: serde_path_to_error::Error<E>) -> (String, String) {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let msg = e.inner().to_string();
    // "missing field `x`" is reported at the parent; name the field itself.
    if let Some(field) = msg.strip_prefix("missing field `").and_then(|m| m.strip_suffix('`')) {
        return (join(&path, field), "missing: this field is required".to_owned());
    }
    (path, msg)
}

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix}.{path}"),
    }
}

pub(super) fn from_table(mut table: toml::Table, file: &str) -> Result<Config, ConfigErrors> {
    let mut problems = Vec::new();
    let mut config = Config::default();

    if let Some(server) = table.remove("server") {
        let (server, errs) = match serde_json::to_value(server) {
            Ok(json) => typed_all::<ServerConfig>(json, &[]),
            Err(e) => (None, vec![(String::new(), e.to_string())]),
        };
        for (path, msg) in errs {
            problems.push(Problem::at(file, None, join("server", &path), msg));
        }
        if let Some(s) = server {
            config.server = s;
        }
    }
    match table.remove("connectors") {
        None => {}
        Some(toml::Value::Table(connectors)) => {
            for (name, value) in connectors {
                let json = match serde_json::to_value(value) {
                    Ok(v) => v,
                    Err(e) => {
                        problems.push(Problem::at(file, Some(&name), "", e.to_string()));
                        continue;
                    }
                };
                match connector_from_json(&name, json, file) {
                    Ok(c) => {
                        config.connectors.insert(name, c);
                    }
                    Err(ConfigErrors(mut p)) => problems.append(&mut p),
                }
            }
        }
        Some(_) => {
            problems.push(Problem::at(file, None, "connectors", "must be a table of connectors: `[connectors.NAME]`"))
        }
    }
    for key in table.keys() {
        problems.push(Problem::at(
            file,
            None,
            key.as_str(),
            "unknown section: the file has `[server]` and `[connectors.NAME]` sections only",
        ));
    }
    super::validate::server(&config.server, file, &mut problems);
    let mut tools: BTreeMap<String, String> = BTreeMap::new();
    for (name, c) in &config.connectors {
        for (tool, call, _) in c.tools(name) {
            if let Some(first) = tools.insert(tool.clone(), format!("{name}.{call}")) {
                problems.push(Problem::at(
                    file,
                    Some(name),
                    format!("calls.{call}.tool_name"),
                    format!(
                        "tool `{tool}` is also call `{first}`: tool names at /mcp must differ; set another `tool_name`"
                    ),
                ));
            }
        }
    }
    if problems.is_empty() { Ok(config) } else { Err(ConfigErrors(problems)) }
}

pub(super) fn connector_from_json(
    name: &str,
    json: serde_json::Value,
    file: &str,
) -> Result<ConnectorConfig, ConfigErrors> {
    let c = Some(name);
    let serde_json::Value::Object(map) = json else {
        return Err(ConfigErrors::one(Problem::at(file, c, "", "a connector must be a table (an object)")));
    };
    match crate::providers::apply(&map) {
        None => connector_table(name, map, file),
        Some(Err(errs)) => Err(ConfigErrors(errs.into_iter().map(|(f, m)| Problem::at(file, c, f, m)).collect())),
        Some(Ok(applied)) => {
            let serde_json::Value::Object(merged) = applied.json.clone() else {
                return Err(ConfigErrors::one(Problem::at(file, c, "provider", "the template is no table")));
            };
            connector_table(name, merged, file).map_err(|ConfigErrors(mut problems)| {
                for p in &mut problems {
                    applied.annotate(p.field.as_deref(), &mut p.message);
                }
                ConfigErrors(problems)
            })
        }
    }
}

/// One connector's table, its template (if any) applied already.
fn connector_table(
    name: &str,
    mut map: serde_json::Map<String, serde_json::Value>,
    file: &str,
) -> Result<ConnectorConfig, ConfigErrors> {
    let c = Some(name);
    let mut problems = Vec::new();
    // Calls are parsed one by one, so a mistake in one call does not hide the others.
    let calls = match map.remove("calls") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(calls)) => calls,
        Some(_) => {
            problems.push(Problem::at(file, c, "calls", "must be a table of calls: `[connectors.NAME.calls.CALL]`"));
            serde_json::Map::new()
        }
    };
    let auth = match map.remove("auth") {
        Some(a) => {
            let (auth, errs) = parse_auth(a);
            for (path, msg) in errs {
                problems.push(Problem::at(file, c, join("auth", &path), msg));
            }
            auth
        }
        None => {
            problems.push(Problem::at(
                file,
                c,
                "auth",
                format!(
                    "missing: every connector needs `auth = {{ method = \"...\" }}` (one of: {})",
                    AuthMethod::names()
                ),
            ));
            None
        }
    };
    let (connector, errs) = typed_all::<ConnectorConfig>(serde_json::Value::Object(map), CONNECTOR_SIFT);
    for (path, msg) in errs {
        problems.push(Problem::at(file, c, path, msg));
    }
    let mut parsed_calls = BTreeMap::new();
    for (call_name, value) in calls {
        let prefix = format!("calls.{call_name}");
        let (call, errs) = typed_all::<CallConfig>(value, CALL_SIFT);
        for (path, msg) in errs {
            problems.push(Problem::at(file, c, join(&prefix, &path), msg));
        }
        if let Some(call) = call {
            parsed_calls.insert(call_name, call);
        }
    }
    let Some(mut connector) = connector else {
        return Err(ConfigErrors(problems));
    };
    // Even when `auth` is wrong, the rest of the connector is checked, so every problem shows.
    let auth_ok = auth.is_some();
    connector.auth = auth.unwrap_or_default();
    connector.calls = parsed_calls;
    super::validate::connector(name, &connector, file, &mut problems);
    if !auth_ok {
        return Err(ConfigErrors(problems));
    }
    if problems.is_empty() { Ok(connector) } else { Err(ConfigErrors(problems)) }
}
