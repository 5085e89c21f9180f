//! Checks that span fields or depend on each other, which the parsed values cannot make alone:
//! names, clear-text URLs, headers the connection manages, placeholders and parameters.

use std::collections::BTreeSet;

use url::Url;

use super::auth_tables::{
    AwsSigv4, ClientAuth, ClientKeyFields, OAuth1Fields, OAuth2CustomToken, PublicValue, SignatureMethod,
};
use super::methods::{AuthConfig, AuthMethod};
use super::problems::Problem;
use super::raw::{CallConfig, ConnectorConfig, ParamConfig, ParamType, ServerConfig};
use super::secret_ref::PemSource;
use super::value::{Parsed, is_loopback};
use crate::template::{self, Text};

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// An MCP tool name: 1 to 128 of `A-Z a-z 0-9 _ - .` (MCP 2025-11-25, "Tool names").
pub(crate) fn is_tool_name(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

pub(super) fn server(s: &ServerConfig, file: &str, problems: &mut Vec<Problem>) {
    let mut p = |field: &str, msg: String| problems.push(Problem::at(file, None, format!("server.{field}"), msg));
    if let Some(listen) = &s.listen
        && listen.parse::<std::net::SocketAddr>().is_err()
    {
        p("listen", format!("`{listen}` is not an address and port such as `127.0.0.1:7420`"));
    }
    if let Some(u) = &s.public_url {
        match url::Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => p("public_url", format!("`{u}` is not an http(s) URL such as `https://latchkey.example.com`")),
        }
    }
    for (i, entry) in s.return_to_allow.iter().enumerate() {
        match entry.value() {
            url if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => p(
                &format!("return_to_allow[{i}]"),
                format!("`{entry}` is not an http(s) URL such as `https://app.example.com/`"),
            ),
        }
    }
    if let Some(a) = &s.token_algorithm
        && latchkey_vault::identity::SigningAlg::parse(a).is_none()
    {
        p("token_algorithm", format!("`{a}` is not offered: use RS256, ES256 or EdDSA (never `none` or HS*)"));
    }
    if s.access_token_ttl_s.is_some_and(|t| !(60..=86_400).contains(&t)) {
        p("access_token_ttl_s", "give 60 to 86400 seconds".into());
    }
    if let Some(u) = &s.webhook_url
        && !matches!(u.scheme(), "http" | "https")
    {
        p("webhook_url", format!("`{u}` is not an http(s) URL"));
    }
    for (field, value, default) in [
        ("threads", s.threads.map(u64::from), "one per CPU"),
        ("request_timeout_s", s.request_timeout_s, "60"),
        ("data_key_max_seals", s.data_key_max_seals, "3,865,470,566"),
    ] {
        if value == Some(0) {
            p(field, format!("must be at least 1 (or left out: {default})"));
        }
    }
    for (field, value, max, default) in [
        ("header_read_timeout_s", s.header_read_timeout_s, 3_600, "10"),
        ("keepalive_idle_s", s.keepalive_idle_s, 86_400, "75"),
        ("http2_keepalive_interval_s", s.http2_keepalive_interval_s, 3_600, "30"),
        ("max_connections", s.max_connections.map(u64::from), 1_000_000, "10000"),
        ("connection_cache", s.connection_cache.map(u64::from), 100_000_000, "10000"),
        ("events_kept_days", s.events_kept_days, 36_500, "the whole audit log is kept"),
    ] {
        if let Some(v) = value
            && !(1..=max).contains(&v)
        {
            p(field, format!("{v} is out of range: give 1 to {max} (or leave it out: {default})"));
        }
    }
    if let Some(page) = &s.connect_page {
        connect_page(page, &mut p);
    }
    if let Some(m) = &s.mcp {
        mcp(m, &mut p);
    }
}

/// `[server.mcp]`: an environment, an http(s) sign-in page, a sane registration rate.
fn mcp(m: &super::McpServerConfig, p: &mut impl FnMut(&str, String)) {
    if let Some(e) = &m.environment
        && e.parse::<crate::Env>().is_err()
    {
        p("mcp.environment", format!("`{e}` is not an environment: give `live` or `dev`"));
    }
    if let Some(u) = &m.sign_in_url {
        match url::Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() && url.fragment().is_none() => {
            }
            _ => p(
                "mcp.sign_in_url",
                format!("`{u}` is not an http(s) URL such as `https://app.example.com/mcp-sign-in`"),
            ),
        }
    }
    if let Some(n) = m.registrations_per_second
        && !(1..=1000).contains(&n)
    {
        p("mcp.registrations_per_second", format!("{n} is out of range: give 1 to 1000 (or leave it out: 2)"));
    }
    if let Some(c) = &m.login_connector
        && c.is_empty()
    {
        p("mcp.login_connector", "name a connector with `login = true`".into());
    }
}

/// `[server.connect_page]`: a title of one line, the logo as a data URL Latchkey serves
/// itself (no request to another origin; the CSP keeps `img-src 'self'`), a `#rrggbb` colour.
fn connect_page(c: &super::ConnectPageConfig, p: &mut impl FnMut(&str, String)) {
    if let Some(t) = &c.title
        && (t.trim().is_empty() || t.chars().count() > 100 || t.chars().any(char::is_control))
    {
        p("connect_page.title", "give one line of 1 to 100 characters".into());
    }
    if let Some(logo) = &c.logo_url
        && c.logo().is_none()
    {
        let shown: String = logo.chars().take(40).collect();
        p(
            "connect_page.logo_url",
            format!(
                "`{shown}…` is not a logo the page can serve: give a `data:` URL (`data:image/png;base64,…`; png, jpeg, gif, webp or svg+xml, at most 64 KiB), which Latchkey serves from its own origin so the page loads nothing from another one"
            ),
        );
    }
    if let Some(a) = &c.accent_color
        && !is_colour(a)
    {
        p("connect_page.accent_color", format!("`{a}` is not a colour: give `#rrggbb`, such as `#0b57d0`"));
    }
}

fn is_colour(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// `connect = { label, help, help_url }`: only on connectors a user connects (OAuth
/// authorization code or `per_user`), short single-line words, and an `https://` help link.
fn connect_labels(name: &str, c: &ConnectorConfig, l: &super::ConnectLabels, p: &mut impl FnMut(&str, String)) {
    if !c.per_user && c.auth.kind() != AuthMethod::OAuth2AuthorizationCode {
        p(
            "connect",
            format!(
                "labels the connector on the connect page, which shows only connectors a user connects (oauth2_authorization_code, or `per_user = true`); connector `{name}` uses `{}` with the app's own credentials: remove `connect`",
                c.auth.method()
            ),
        );
    }
    for (field, value, max) in [("label", &l.label, 100), ("help", &l.help, 500)] {
        if let Some(v) = value
            && (v.trim().is_empty() || v.chars().count() > max || v.chars().any(char::is_control))
        {
            p(&format!("connect.{field}"), format!("give one line of 1 to {max} characters"));
        }
    }
    if let Some(u) = &l.help_url {
        match url::Url::parse(u) {
            Ok(url) if url.scheme() == "https" && url.host().is_some() && url.username().is_empty() => {}
            _ => p(
                "connect.help_url",
                format!(
                    "`{u}` is not an https URL: give the page where a user finds their key, such as `https://example.com/account/api-keys`"
                ),
            ),
        }
    }
}

pub(super) fn connector(name: &str, c: &ConnectorConfig, file: &str, problems: &mut Vec<Problem>) {
    let mut p = |field: &str, msg: String| problems.push(Problem::at(file, Some(name), field, msg));
    if !is_name(name) {
        p("", "connector names may use letters, digits, `_` and `-` (at most 64), because they appear in URLs".into());
    }
    base_url(c, &mut p);
    if c.timeout_ms == 0 || c.timeout_ms > 600_000 {
        p("timeout_ms", format!("{} is out of range: give 1 to 600000 milliseconds", c.timeout_ms));
    }
    for (h, v) in &c.headers {
        managed_header(&format!("headers.{h}"), h.as_str(), &mut p);
        if Text::parse(v.as_str()).has_params() {
            p(
                &format!("headers.{h}"),
                "connector headers are fixed: `<name>` placeholders belong in a call's headers".into(),
            );
        }
    }
    for (k, v) in &c.query {
        if k.is_empty() {
            p("query", "a query parameter needs a name".into());
        }
        if Text::parse(v).has_params() {
            p(
                &format!("query.{k}"),
                "connector query parameters are fixed: `<name>` placeholders belong in a call's query".into(),
            );
        }
    }
    auth(&c.auth, c.allow_insecure_http, c.per_user.then_some(name), &mut p);
    per_user(name, c, &mut p);
    if let Some(labels) = &c.connect {
        connect_labels(name, c, labels, &mut p);
    }
    if let Some(r) = &c.refresh_on {
        for s in &r.status {
            // A success means "token expired" only with a text to find in its body (Slack
            // answers `200 {"ok":false,"error":"token_expired"}`).
            let success_with_text = (200..=299).contains(s) && r.body_contains.is_some();
            if !(400..=599).contains(s) && !success_with_text {
                p(
                    "refresh_on.status",
                    format!(
                        "{s} is not an HTTP error status (400-599); a 2xx status needs `body_contains`, the text that marks an expired token in its body"
                    ),
                );
            }
        }
    }
    if c.token_exchange && !matches!(c.auth, AuthConfig::OAuth2AuthorizationCode(_)) {
        p(
            "token_exchange",
            format!(
                "token exchange hands out a user's provider access token, so it needs a connector holding per-user OAuth connections (auth.method = \"oauth2_authorization_code\"), not `{}`: remove `token_exchange`",
                c.auth.method()
            ),
        );
    }
    for (call_name, call_cfg) in &c.calls {
        call(call_name, call_cfg, &mut |field: &str, msg: String| {
            p(&format!("calls.{call_name}{}{field}", if field.is_empty() { "" } else { "." }), msg)
        });
    }
}

/// The parsed `base_url` is http(s) with a host, no credentials, no query: what is left is
/// whether credentials may cross the network in clear text.
fn base_url(c: &ConnectorConfig, p: &mut impl FnMut(&str, String)) {
    let url = c.base_url.url();
    if url.scheme() == "http" && !c.allow_insecure_http && !is_loopback(url) {
        p(
            "base_url",
            "uses http:// to a host that is not loopback, so credentials would cross the network in clear text: \
             use https://, or set `allow_insecure_http = true` on this connector if the network is trusted"
                .into(),
        );
    }
}

/// A (valid) header name that the HTTP connection sets itself.
fn managed_header(field: &str, name: &str, p: &mut impl FnMut(&str, String)) {
    if HOP_BY_HOP.contains(&name.to_ascii_lowercase().as_str()) {
        p(field, format!("`{name}` is managed by the HTTP connection and cannot be set"));
    }
}

/// A header name and value still written as text (`api_key_header`'s name and prefix).
fn header(field: &str, name: &str, value: &str, p: &mut impl FnMut(&str, String)) {
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        p(field, format!("`{name}` is not a valid header name"));
    } else {
        managed_header(field, name, p);
    }
    if value.contains(['\r', '\n', '\0']) {
        p(field, "header values cannot contain line breaks or NUL".into());
    }
}

/// A token endpoint or other URL the credential travels to: same rules as `base_url`.
fn credential_url(field: &str, u: &Parsed<Url>, allow_insecure_http: bool, p: &mut impl FnMut(&str, String)) {
    let url = u.value();
    match url.scheme() {
        "https" if url.host().is_some() => {}
        "http" if allow_insecure_http || is_loopback(url) => {}
        "http" => p(
            field,
            "uses http:// to a host that is not loopback, so credentials would cross the network in clear text: \
             use https://, or set `allow_insecure_http = true` on this connector"
                .into(),
        ),
        _ => p(field, format!("`{u}` is not an https URL such as `https://auth.example.com/oauth/token`")),
    }
}

/// The client authentication fields `client_auth` needs, and none it does not use.
/// `secret_required`: whether a method without a key needs `client_secret` (client credentials).
fn client_fields(g: &impl ClientKeyFields, has_secret: bool, secret_required: bool, p: &mut impl FnMut(&str, String)) {
    let (cert, key, ca) = g.tls_identity();
    let auth = g.client_auth();
    let jwt = auth == ClientAuth::PrivateKeyJwt;
    let tls = auth == ClientAuth::TlsClientAuth;
    let needed = |name: &str, what: &str, example: &str| {
        format!("is required with client_auth = \"{name}\": name the secret that holds {what}, e.g. `{example}`")
    };
    if jwt && g.client_private_key().is_none() {
        p(
            "auth.client_private_key",
            needed("private_key_jwt", "the PEM private key", "client_private_key = { secret = \"crm_client_key\" }"),
        );
    }
    if tls && cert.is_none() {
        p(
            "auth.client_certificate",
            needed("tls_client_auth", "the PEM certificate", "client_certificate = { secret = \"crm_client_cert\" }"),
        );
    }
    if tls && key.is_none() {
        p(
            "auth.client_key",
            needed("tls_client_auth", "its PEM private key", "client_key = { secret = \"crm_client_key\" }"),
        );
    }
    for (field, pem) in [("auth.ca_certificate", ca), ("auth.client_key_certificate", g.client_key_certificate())] {
        if let Some(PemSource::Inline(pem)) = pem
            && !pem.contains("-----BEGIN CERTIFICATE-----")
        {
            p(field, "is not a PEM certificate (-----BEGIN CERTIFICATE-----)".into());
        }
    }
    if (jwt || tls) && has_secret {
        let name = if jwt { "private_key_jwt" } else { "tls_client_auth" };
        p("auth.client_secret", format!("is not used with client_auth = \"{name}\": remove it"));
    }
    let only = |name: &str| format!("is used only with client_auth = \"{name}\": set that, or remove it");
    if !jwt {
        for (field, set) in [
            ("auth.client_private_key", g.client_private_key().is_some()),
            ("auth.client_key_id", g.client_key_id().is_some()),
            ("auth.client_assertion_alg", g.client_assertion_alg().is_some()),
            ("auth.client_key_certificate", g.client_key_certificate().is_some()),
        ] {
            if set {
                p(field, only("private_key_jwt"));
            }
        }
    }
    if !tls {
        for (field, set) in [
            ("auth.client_certificate", cert.is_some()),
            ("auth.client_key", key.is_some()),
            ("auth.ca_certificate", ca.is_some()),
            ("auth.certificate_bound", g.certificate_bound()),
        ] {
            if set {
                p(field, only("tls_client_auth"));
            }
        }
    }
    if !jwt && !tls && secret_required && !has_secret {
        p(
            "auth.client_secret",
            "is required (or set client_auth = \"private_key_jwt\" or \"tls_client_auth\" and their key fields)".into(),
        );
    }
}

/// `auth.jwt` of `oauth2_custom_token`: `<jwt>` used, not declared twice, Latchkey's claims
/// left to it, a lifetime in bounds. `used` is every placeholder with where it is used.
fn signed_jwt(g: &OAuth2CustomToken, used: &[(String, String)], p: &mut impl FnMut(&str, String)) {
    let Some(jwt) = &g.jwt else { return };
    if !used.iter().any(|(n, _)| n == "jwt") {
        p(
            "auth.jwt",
            "is set but `<jwt>` is used nowhere: put it where the provider wants the JWT, e.g. \
             `token_headers = { Authorization = \"Bearer <jwt>\" }`"
                .into(),
        );
    }
    for (table, declared) in [("secrets", g.secrets.contains_key("jwt")), ("values", g.values.contains_key("jwt"))] {
        if declared {
            p(
                &format!("auth.{table}.jwt"),
                "`<jwt>` is the JWT `auth.jwt` signs: give this placeholder another name".into(),
            );
        }
    }
    for claim in ["iat", "exp"] {
        if jwt.claims.contains_key(claim) {
            p(
                &format!("auth.jwt.claims.{claim}"),
                "is set by Latchkey at each token request (`iat` 60 seconds back, `exp` after `lifetime_s`): remove it"
                    .into(),
            );
        }
    }
    if jwt.lifetime_s == 0 || jwt.lifetime_s > 3600 {
        p(
            "auth.jwt.lifetime_s",
            format!("{} is out of range: give 1 to 3600 seconds (GitHub takes at most 600)", jwt.lifetime_s),
        );
    }
}

/// `per_user` only where the method has fields a user can give, and `verify` naming a call
/// that can be made without parameters.
fn per_user(name: &str, c: &ConnectorConfig, p: &mut impl FnMut(&str, String)) {
    if c.per_user && c.auth.kind().user_fields().is_empty() {
        let what = match c.auth.kind() {
            AuthMethod::OAuth2AuthorizationCode | AuthMethod::OAuth1Authorization => {
                "its connections are per-user already (each user connects in the browser)"
            }
            _ => "it has no fields a user could give",
        };
        p(
            "per_user",
            format!(
                "works with api_key_query, api_key_header, basic and digest; this connector uses `{}`, and {what}: remove `per_user`",
                c.auth.method()
            ),
        );
    }
    let Some(verify) = &c.verify else { return };
    if !c.per_user {
        p(
            "verify",
            "checks the values each user gives, so it works only with `per_user = true`: set that, or remove `verify`"
                .into(),
        );
    }
    match c.calls.get(verify) {
        None => {
            let mut names: Vec<&str> = c.calls.keys().map(String::as_str).collect();
            names.sort_unstable();
            p(
                "verify",
                format!(
                    "names `{verify}`, which is no call of connector `{name}` (its calls: {}): add `[connectors.{name}.calls.{verify}]`, or name one of them",
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                ),
            );
        }
        Some(call) => {
            for (param, pc) in &call.params {
                if pc.required {
                    p(
                        "verify",
                        format!(
                            "call `{verify}` requires parameter `{param}`, but the verify call is made without parameters: give `{param}` a `default`, or verify with another call"
                        ),
                    );
                }
            }
        }
    }
}

/// A field a `per_user` connector takes from each user: not written here when the connector
/// is per-user (`per_user` is then its name), required otherwise.
fn user_field(field: &str, present: bool, secret: bool, per_user: Option<&str>, p: &mut impl FnMut(&str, String)) {
    match (per_user, present) {
        (None, false) => p(
            field,
            "missing: this field is required (or set `per_user = true` on the connector, so that each user gives their own)"
                .into(),
        ),
        (Some(name), true) if secret => p(
            field,
            format!(
                "this connector is `per_user`: each user's value arrives with PUT /v1/connections/{name}, so no secret is named here: remove it"
            ),
        ),
        (Some(name), true) => p(
            field,
            format!("this connector is `per_user`: each user gives their own with PUT /v1/connections/{name}: remove it"),
        ),
        _ => {}
    }
}

/// `per_user`: the connector's name when it is `per_user`.
fn auth(a: &AuthConfig, allow_insecure_http: bool, per_user: Option<&str>, p: &mut impl FnMut(&str, String)) {
    match a {
        AuthConfig::OAuth2Password(g) => {
            client_fields(g, g.client_secret.is_some(), false, p);
            credential_url("auth.token_url", &g.token_url, allow_insecure_http, p);
            if g.client_id.is_empty() {
                p("auth.client_id", "cannot be empty".into());
            }
        }
        AuthConfig::OAuth2ClientCredentials(g) => {
            client_fields(g, g.client_secret.is_some(), true, p);
            credential_url("auth.token_url", &g.token_url, allow_insecure_http, p);
            if g.client_id.is_empty() {
                p("auth.client_id", "cannot be empty".into());
            }
        }
        AuthConfig::OAuth2CustomToken(g) => {
            credential_url("auth.token_url", &g.token_url, allow_insecure_http, p);
            let mut used: Vec<(String, String)> = Vec::new();
            used.extend(g.token_body.body().params().into_iter().map(|n| (n, "auth.token_body".to_owned())));
            for (h, v) in &g.token_headers {
                managed_header(&format!("auth.token_headers.{h}"), h.as_str(), p);
                used.extend(v.params().map(|n| (n.to_owned(), format!("auth.token_headers.{h}"))));
            }
            signed_jwt(g, &used, p);
            if g.expires_at_name.as_deref() == Some("") {
                p("auth.expires_at_name", "cannot be empty: give the dotted path of the expiry in the answer".into());
            }
            let mut seen = BTreeSet::new();
            for (name, place) in used {
                let declared = g.secrets.contains_key(&name) || g.values.contains_key(&name);
                if declared || (name == "jwt" && g.jwt.is_some()) || !seen.insert(name.clone()) {
                    continue;
                }
                if name == "jwt" {
                    p(
                        &place,
                        "uses `<jwt>`, but `auth.jwt` is not set: add `jwt = { private_key = { secret = \"NAME\" }, claims = { iss = \"...\" } }` \
                         to `auth` (or declare `jwt` in `auth.secrets` or `auth.values`)"
                            .into(),
                    );
                } else {
                    p(
                        &place,
                        format!(
                            "uses `<{name}>`, which is not declared: add it to `auth.secrets` (a secret) or `auth.values` (a fixed value)"
                        ),
                    );
                }
            }
            for name in g.secrets.keys().filter(|n| g.values.contains_key(*n)) {
                p(&format!("auth.values.{name}"), "is also a secret: give each placeholder one source".into());
            }
        }
        AuthConfig::OAuth2AuthorizationCode(g) => {
            client_fields(g, g.client_secret.is_some(), false, p);
            credential_url("auth.token_url", &g.token_url, allow_insecure_http, p);
            for (field, u) in [("auth.profile_url", &g.profile_url), ("auth.revoke_url", &g.revoke_url)] {
                if let Some(u) = u {
                    credential_url(field, u, allow_insecure_http, p);
                }
            }
            if g.client_id.is_empty() {
                p("auth.client_id", "cannot be empty".into());
            }
            if g.client_secret.is_none() && matches!(g.client_auth, ClientAuth::Basic | ClientAuth::Body) && !g.pkce {
                p("auth.pkce", "a public client (no client_secret, no key) must use PKCE".into());
            }
        }
        AuthConfig::LatchkeyIdentity(g) => {
            if g.lifetime_s == 0 || g.lifetime_s > 3600 {
                p("auth.lifetime_s", format!("{} is out of range: give 1 to 3600 seconds", g.lifetime_s));
            }
        }
        AuthConfig::JwtBearer(g) => {
            if let Some(u) = &g.token_url {
                credential_url("auth.token_url", u, allow_insecure_http, p);
            }
            if g.lifetime_s == 0 || g.lifetime_s > 3600 {
                p("auth.lifetime_s", format!("{} is out of range: an assertion lives 1 to 3600 seconds", g.lifetime_s));
            }
        }
        AuthConfig::None(_) => {}
        AuthConfig::ApiKeyQuery(q) => {
            if q.name.is_empty() {
                p("auth.name", "name the query parameter that carries the key, e.g. `api_key`".into());
            }
            user_field("auth.key", q.key.is_some(), true, per_user, p);
        }
        AuthConfig::ApiKeyHeader(h) => {
            header("auth.name", &h.name, h.prefix.as_deref().unwrap_or(""), p);
            user_field("auth.key", h.key.is_some(), true, per_user, p);
        }
        AuthConfig::Basic(b) => {
            user_field("auth.username", b.username.is_some(), false, per_user, p);
            user_field("auth.password", b.password.is_some(), true, per_user, p);
            if b.username.as_deref().is_some_and(|u| u.contains(':')) {
                p("auth.username", "a Basic username cannot contain `:`".into());
            }
        }
        AuthConfig::Digest(d) => {
            user_field("auth.username", d.username.is_some(), false, per_user, p);
            user_field("auth.password", d.password.is_some(), true, per_user, p);
            if d.username.as_deref().is_some_and(|u| !crate::auth::digest::username_ok(u)) {
                p(
                    "auth.username",
                    "a Digest username must be printable ASCII without `\"` or `\\` (Latchkey does not send `username*`)".into(),
                );
            }
        }
        AuthConfig::AwsSigv4(a) => aws_sigv4(a, allow_insecure_http, p),
        AuthConfig::OAuth1(o) => {
            oauth1_fields(o, p);
            if o.token_secret.is_some() && o.token.is_none() {
                p(
                    "auth.token_secret",
                    "is set without `token`: a token secret signs only with its token; add `token = { secret = \"...\" }` or remove it".into(),
                );
            }
        }
        AuthConfig::OAuth1Authorization(o) => {
            oauth1_fields(o, p);
            for (field, u) in
                [("auth.request_token_url", &o.request_token_url), ("auth.access_token_url", &o.access_token_url)]
            {
                credential_url(field, u, allow_insecure_http, p);
            }
            if !matches!(o.authorize_url.value().scheme(), "https" | "http") {
                p("auth.authorize_url", format!("`{}` is not an http(s) URL", o.authorize_url));
            }
        }
        AuthConfig::ClientCertificate(c) => {
            if let Some(PemSource::Inline(pem)) = &c.ca_certificate
                && !pem.contains("-----BEGIN CERTIFICATE-----")
            {
                p("auth.ca_certificate", "is not a PEM certificate (-----BEGIN CERTIFICATE-----)".into());
            }
        }
    }
}

/// `aws_sigv4`: the key id, region and service have AWS's shapes (they are signed as written,
/// so a typo would only show as the upstream's `SignatureDoesNotMatch`), `role_arn` is an IAM
/// role's ARN, and `sts_url` goes with it.
fn aws_sigv4(a: &AwsSigv4, allow_insecure_http: bool, p: &mut impl FnMut(&str, String)) {
    if let PublicValue::Plain(id) = &a.access_key_id
        && !(!id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric()))
    {
        p(
            "auth.access_key_id",
            "is not an AWS access key id (letters and digits, such as `AKIAIOSFODNN7EXAMPLE`): copy it from the \
             key's `AccessKeyId`, or write `{ secret = \"NAME\" }` when live and dev use different keys"
                .into(),
        );
    }
    let word = |s: &str, max: usize| {
        !s.is_empty()
            && s.len() <= max
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if !(word(&a.region, 32) && a.region.contains('-')) {
        p(
            "auth.region",
            format!("`{}` is not an AWS region: write one such as `us-east-1` or `eu-west-3`, in lower case", a.region),
        );
    }
    if !word(&a.service, 64) {
        p(
            "auth.service",
            format!(
                "`{}` is not an AWS signing name: write the service's name as the endpoint spells it, in lower case, \
                 such as `sqs`, `s3`, `execute-api`",
                a.service
            ),
        );
    }
    if let Some(arn) = &a.role_arn
        && !is_role_arn(arn)
    {
        p(
            "auth.role_arn",
            format!(
                "`{arn}` is not an IAM role's ARN: write `arn:aws:iam::<12-digit account id>:role/<name>`, as the \
                 role's page in the IAM console shows it"
            ),
        );
    }
    match (&a.sts_url, &a.role_arn) {
        (Some(u), Some(_)) => credential_url("auth.sts_url", u, allow_insecure_http, p),
        (Some(_), None) => p("auth.sts_url", "is used only with `role_arn`: set that, or remove it".into()),
        (None, _) => {}
    }
}

/// `arn:<partition>:iam::<12 digits>:role/<path and name>`.
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else { return false };
    prefix == "arn"
        && matches!(
            partition,
            "aws" | "aws-cn" | "aws-us-gov" | "aws-iso" | "aws-iso-b" | "aws-iso-e" | "aws-iso-f" | "aws-eusc"
        )
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|name| !name.is_empty() && !name.ends_with('/') && name.bytes().all(|b| b.is_ascii_graphic()))
}

/// The OAuth 1.0a fields each signature method needs, and none it does not use.
fn oauth1_fields(o: &impl OAuth1Fields, p: &mut impl FnMut(&str, String)) {
    let method = o.signature_method().name();
    if o.consumer_key().is_empty() {
        p("auth.consumer_key", "cannot be empty: give the consumer key the provider issued".into());
    }
    if o.signature_method() == SignatureMethod::RsaSha1 {
        if o.private_key().is_none() {
            p(
                "auth.private_key",
                "is required with signature_method = \"RSA-SHA1\": name the secret that holds the consumer's PEM private key, e.g. `private_key = { secret = \"crm_oauth1_key\" }`".into(),
            );
        }
        if o.consumer_secret().is_some() {
            p(
                "auth.consumer_secret",
                "is not used with signature_method = \"RSA-SHA1\" (the private key signs): remove it".into(),
            );
        }
    } else {
        if o.consumer_secret().is_none() {
            p(
                "auth.consumer_secret",
                format!(
                    "is required with signature_method = \"{method}\": name the secret that holds it, e.g. `consumer_secret = {{ secret = \"crm_consumer_secret\" }}`"
                ),
            );
        }
        if o.private_key().is_some() {
            p("auth.private_key", "is used only with signature_method = \"RSA-SHA1\": set that, or remove it".into());
        }
    }
}

/// A parameter's `type` and `enum` agree with each other, with its `default` or `value`, and
/// with where it is used (a list or a table cannot go into a path, query or header).
fn param_values(name: &str, pc: &ParamConfig, used: &[(String, String)], p: &mut impl FnMut(&str, String)) {
    if let Some(allowed) = &pc.one_of {
        if allowed.is_empty() {
            p("enum", "lists no value: give the values a caller may send, or remove `enum`".into());
        }
        for (i, v) in allowed.iter().enumerate() {
            if v.is_null() {
                p("enum", format!("value {} is null, which no parameter takes: remove it", i + 1));
            } else if let Some(t) = pc.ty
                && !t.matches(v)
            {
                p(
                    "enum",
                    format!("value {} ({v}) is not {}, the parameter's `type`: make them agree", i + 1, t.article()),
                );
            }
        }
    }
    for (field, v) in [("default", &pc.default), ("value", &pc.value)] {
        let Some(v) = v else { continue };
        if let Some(t) = pc.ty
            && !t.matches(v)
        {
            p(
                field,
                format!(
                    "is {}, but the parameter's `type` is `{}`: make them agree",
                    ParamType::article_of(v),
                    t.as_str()
                ),
            );
        } else if let Some(allowed) = &pc.one_of
            && !allowed.is_empty()
            && !allowed.iter().any(|a| super::raw::same_value(a, v))
        {
            p(field, format!("is not one of the parameter's `enum` values ({})", super::raw::list_values(allowed)));
        }
    }
    if let Some(t) = pc.ty
        && !t.is_text()
        && let Some((_, place)) = used.iter().find(|(n, place)| n == name && place != "body")
    {
        p(
            "type",
            format!(
                "is `{}`, but `<{name}>` is used in `{place}`, where only text goes: use it in the JSON `body`, or give it a text type",
                t.as_str()
            ),
        );
    }
}

fn call(name: &str, c: &CallConfig, p: &mut impl FnMut(&str, String)) {
    if !is_name(name) {
        p("", "call names may use letters, digits, `_` and `-` (at most 64), because they appear in URLs".into());
    }
    if !c.path.as_str().is_empty() && !c.path.as_str().starts_with('/') {
        p("path", format!("`{}` must start with `/` (it is appended to the connector's base_url)", c.path));
    }
    if c.path.as_str().contains(['?', '#']) {
        p("path", "must not contain `?` or `#`: put query parameters in the call's `query` table".into());
    }
    if let Some(t) = &c.tool_name
        && !is_tool_name(t)
    {
        p(
            "tool_name",
            format!("`{t}` is not a tool name: use 1 to 128 letters, digits, `_`, `-` and `.` (MCP tool names)"),
        );
    }
    let mut used: Vec<(String, String)> = Vec::new(); // (param, where)
    let path: &Text = &c.path;
    used.extend(path.params().map(|n| (n.to_owned(), "path".to_owned())));
    for (k, v) in &c.query {
        used.extend(v.params().map(|n| (n.to_owned(), format!("query.{k}"))));
    }
    for (h, v) in &c.headers {
        managed_header(&format!("headers.{h}"), h.as_str(), p);
        used.extend(v.params().map(|n| (n.to_owned(), format!("headers.{h}"))));
    }
    if let Some(body) = &c.body {
        used.extend(body.body().params().into_iter().map(|n| (n, "body".to_owned())));
    }
    let mut seen = BTreeSet::new();
    for (param, place) in &used {
        if !c.params.contains_key(param) && seen.insert(param.clone()) {
            p(
                place,
                format!(
                    "uses `<{param}>`, which is not declared: add `{param} = {{ required = true }}` to this call's params"
                ),
            );
        }
    }
    for (pname, pc) in &c.params {
        let field = format!("params.{pname}");
        if !template::is_param_name(pname) {
            p(&field, "parameter names start with a letter or `_` and use letters, digits and `_`".into());
        }
        if pc.private && pc.value.is_none() {
            p(&field, "a private parameter is fixed here: give its `value`".into());
        }
        if !pc.private && pc.value.is_some() {
            p(
                &field,
                "`value` fixes a private parameter: add `private = true`, or use `default` for a caller-settable value"
                    .into(),
            );
        }
        if pc.private && (pc.required || pc.default.is_some()) {
            p(&field, "a private parameter takes only `value`; `required` and `default` are for public ones".into());
        }
        if pc.required && pc.default.is_some() {
            p(&field, "is both `required` and has a `default`: choose one".into());
        }
        param_values(pname, pc, &used, &mut |f: &str, m: String| p(&format!("{field}.{f}"), m));
    }
    for n in path.params() {
        if let Some(pc) = c.params.get(n)
            && !pc.required
            && pc.default.is_none()
            && !pc.private
        {
            p(
                &format!("params.{n}"),
                "is used in the path, so it must be `required = true`, have a `default`, or be private".into(),
            );
        }
    }
}
