//! Real oidc-provider (npm `oidc-provider` 9.x) on loopback: an OpenID Connect / OAuth 2.0
//! authorization server, one per test binary.
//!
//! The server is `crates/testkit/peers/oidc/server.mjs` (install its packages with
//! `npm ci --prefix crates/testkit/peers/oidc`). What it does:
//!
//! - Issuer `http://127.0.0.1:<port>`; the callback carries `iss` (RFC 9207) with that value.
//! - Open dynamic client registration: every test registers its own client with
//!   [`Oidc::register`] (`client_secret_basic`, `client_secret_post` or `none`), or
//!   [`Oidc::register_metadata`] (`private_key_jwt` with the client's `jwks`).
//! - Authorization code flow with PKCE required for every client (`S256` only), driven
//!   headlessly by [`Oidc::login`] through the built-in login and consent pages (any login name,
//!   any password; claims `sub` = login, `email` = `<login>@example.com`).
//! - A refresh token is issued whenever the client has the `refresh_token` grant (no
//!   `offline_access` or `prompt=consent` needed) and every refresh rotates it. Replaying a used
//!   refresh token gives `400 invalid_grant` and revokes the whole grant (all its tokens).
//! - Client credentials (scope `api:read`), userinfo (`/me`, opaque access tokens), revocation
//!   (RFC 7009) and introspection (RFC 7662, see [`Oidc::introspect`]).
//! - Scopes: `openid email profile offline_access api:read`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::{StatusCode, Url};
use serde_json::{Value, json};

use super::process::{PeerProcess, find_program, free_port};

const NOT_INSTALLED: &str = "oidc-provider is not installed: run `npm ci --prefix crates/testkit/peers/oidc` (or `bash scripts/install-test-peers`)";

/// The password [`Oidc::login`] types in (the server accepts any).
const PASSWORD: &str = "any-password";

/// A running oidc-provider.
#[derive(Debug)]
pub struct Oidc {
    /// `http://127.0.0.1:<port>`, without a trailing slash; also the `iss` of its tokens and
    /// of the authorization response.
    pub issuer: String,
    /// The port it listens on.
    pub port: u16,
    /// `<issuer>/auth`.
    pub authorize_url: String,
    /// `<issuer>/token`.
    pub token_url: String,
    /// `<issuer>/me`.
    pub userinfo_url: String,
    /// `<issuer>/token/revocation`.
    pub revocation_url: String,
    /// `<issuer>/token/introspection`.
    pub introspection_url: String,
    /// `<issuer>/reg` (open dynamic client registration).
    pub registration_url: String,
    _process: PeerProcess,
}

/// A client made by [`Oidc::register`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredClient {
    pub client_id: String,
    /// `None` for public clients (`auth_method` `none`).
    pub client_secret: Option<String>,
    /// The registered `token_endpoint_auth_method` (also used for introspection and
    /// revocation); the server rejects any other method for this client with `invalid_client`.
    pub auth_method: String,
}

/// The process-wide oidc-provider, started on first use (blocking, a few seconds at most);
/// access tokens live `OIDC_ACCESS_TOKEN_TTL` seconds if that is set in the environment of the
/// test process, else 3600.
///
/// Panics with the install command if `node` or the npm packages are missing.
pub fn oidc() -> &'static Oidc {
    static OIDC: OnceLock<Oidc> = OnceLock::new();
    OIDC.get_or_init(|| start_with(None, None))
}

impl Oidc {
    /// Starts a separate oidc-provider (not the shared one) whose access tokens live
    /// `seconds`. It runs until the test process exits.
    pub fn start_with_access_token_ttl(seconds: u64) -> Oidc {
        assert!(seconds > 0, "access-token lifetime must be positive");
        start_with(Some(seconds), None)
    }

    /// `issuer` joined with `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Registers a client (open dynamic registration) with the token endpoint auth method
    /// `auth_method` (`client_secret_basic`, `client_secret_post` or `none`), `grant_types`
    /// such as `["authorization_code", "refresh_token"]` or `["client_credentials"]`, and
    /// `redirect_uris` (may be empty when there is no `authorization_code` grant).
    ///
    /// Panics with the server's answer if registration fails.
    pub async fn register(&self, auth_method: &str, grant_types: &[&str], redirect_uris: &[&str]) -> RegisteredClient {
        let response_types: &[&str] = if grant_types.contains(&"authorization_code") { &["code"] } else { &[] };
        self.register_metadata(json!({
            "token_endpoint_auth_method": auth_method,
            "grant_types": grant_types,
            "response_types": response_types,
            "redirect_uris": redirect_uris,
        }))
        .await
    }

    /// Registers a client with exactly `metadata` (RFC 7591), e.g. a `private_key_jwt` client
    /// with its public keys in `jwks`: `{"token_endpoint_auth_method": "private_key_jwt",
    /// "jwks": {"keys": [..]}, "grant_types": ["client_credentials"], "response_types": [],
    /// "redirect_uris": []}`.
    ///
    /// Panics with the server's answer if registration fails.
    pub async fn register_metadata(&self, metadata: Value) -> RegisteredClient {
        let auth_method = metadata["token_endpoint_auth_method"].as_str().unwrap_or("client_secret_basic").to_owned();
        let response = crate::latchkey::test_client()
            .post(&self.registration_url)
            .json(&metadata)
            .send()
            .await
            .unwrap_or_else(|e| panic!("oidc-provider: registration request failed: {e}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status != StatusCode::CREATED {
            panic!("oidc-provider: registering {metadata} gave {status}: {body}");
        }
        let body: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("oidc-provider: registration answer is not JSON ({e}): {body}"));
        RegisteredClient {
            client_id: body["client_id"].as_str().expect("registration answer has client_id").to_owned(),
            client_secret: body["client_secret"].as_str().map(str::to_owned),
            auth_method: body["token_endpoint_auth_method"].as_str().unwrap_or(&auth_method).to_owned(),
        }
    }

    /// Drives the login and consent pages headlessly, starting from a full authorization URL
    /// (as built by the code under test), with one cookie jar and no automatic redirects.
    /// Logs in as `login` (any password) and grants everything asked for.
    ///
    /// Returns the final redirect `Location`: the client's redirect URI with `code`, `state`
    /// and `iss` (or with `error` if the server refused the request). Panics if the server
    /// answers with anything but redirects and its own pages (e.g. an error page for an unknown
    /// client or redirect URI), with the status and body.
    pub async fn login(&self, authorization_url: &str, login: &str) -> String {
        self.login_with(crate::latchkey::test_client(), authorization_url, login).await
    }

    /// [`login`](Oidc::login) at an issuer served over TLS with a certificate `ca_pem` issued
    /// (the mTLS proxy's: its client certificate is optional, and the browser has none).
    #[allow(clippy::disallowed_methods, reason = "a browser stand-in, not Latchkey's client")]
    pub async fn login_trusting(&self, ca_pem: &str, authorization_url: &str, login: &str) -> String {
        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("a PEM CA certificate");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tls_certs_only([ca])
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("a client trusting the CA");
        self.login_with(http, authorization_url, login).await
    }

    async fn login_with(&self, http: reqwest::Client, authorization_url: &str, login: &str) -> String {
        let issuer = Url::parse(&self.issuer).expect("issuer is a URL");
        let mut jar = CookieJar::default();
        let mut url = Url::parse(authorization_url)
            .unwrap_or_else(|e| panic!("oidc login: not a URL ({e}): {authorization_url}"));
        for _ in 0..20 {
            if url.origin() != issuer.origin() {
                return url.to_string();
            }
            let response = if url.path().starts_with("/interaction/") {
                // The interaction page says which prompt (login or consent) it wants.
                let page = http.get(url.clone()).headers(jar.header_for(&url)).send().await;
                let page = page.unwrap_or_else(|e| panic!("oidc login: GET {url} failed: {e}"));
                jar.store(&url, &page);
                let status = page.status();
                let html = page.text().await.unwrap_or_default();
                if status != StatusCode::OK {
                    panic!("oidc login: GET {url} gave {status}: {html}");
                }
                let prompt = hidden_input(&html, "prompt")
                    .unwrap_or_else(|| panic!("oidc login: no prompt on the interaction page {url}: {html}"));
                let body = match prompt.as_str() {
                    "login" => form(&[("prompt", "login"), ("login", login), ("password", PASSWORD)]),
                    "consent" => form(&[("prompt", "consent")]),
                    other => panic!("oidc login: unexpected prompt {other:?} at {url}"),
                };
                http.post(url.clone())
                    .headers(jar.header_for(&url))
                    .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("oidc login: POST {url} failed: {e}"))
            } else {
                http.get(url.clone())
                    .headers(jar.header_for(&url))
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("oidc login: GET {url} failed: {e}"))
            };
            jar.store(&url, &response);
            let status = response.status();
            let location =
                response.headers().get(http::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let Some(location) = location.filter(|_| status.is_redirection()) else {
                let body = response.text().await.unwrap_or_default();
                panic!("oidc login: {url} gave {status} instead of a redirect: {body}");
            };
            url = url.join(&location).unwrap_or_else(|e| panic!("oidc login: bad Location {location:?} ({e})"));
        }
        panic!("oidc login: too many redirects, last at {url}");
    }

    /// RFC 7662 introspection of `token`, authenticated as `client` (with its registered auth
    /// method). Returns the JSON: `{"active": false}` for unknown, expired or revoked tokens,
    /// else `active: true` with `client_id`, `scope`, `sub`, `exp`, `token_type`, ...
    ///
    /// Panics with the server's answer unless it is `200`.
    pub async fn introspect(&self, client: &RegisteredClient, token: &str) -> Value {
        let response = client
            .authenticate(crate::latchkey::test_client().post(&self.introspection_url), &[("token", token)])
            .send()
            .await
            .unwrap_or_else(|e| panic!("oidc-provider: introspection request failed: {e}"));
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status != StatusCode::OK {
            panic!("oidc-provider: introspection gave {status}: {body}");
        }
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("oidc-provider: introspection answer is not JSON ({e}): {body}"))
    }
}

impl RegisteredClient {
    /// Adds this client's authentication (Basic header, or `client_id`/`client_secret` in the
    /// form, or just `client_id` for public clients) to a form POST with `params`.
    pub fn authenticate(&self, request: reqwest::RequestBuilder, params: &[(&str, &str)]) -> reqwest::RequestBuilder {
        let mut params: Vec<(&str, &str)> = params.to_vec();
        let secret = self.client_secret.as_deref().unwrap_or_default();
        let request = match self.auth_method.as_str() {
            "client_secret_basic" => request.basic_auth(form_encode(&self.client_id), Some(form_encode(secret))),
            "client_secret_post" => {
                params.push(("client_id", &self.client_id));
                params.push(("client_secret", secret));
                request
            }
            _ => {
                params.push(("client_id", &self.client_id));
                request
            }
        };
        request.header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(form(&params))
    }
}

/// Starts oidc-provider; with `issuer` (`https://…` of an mTLS proxy in front), mTLS is on.
pub(super) fn start_with(access_token_ttl: Option<u64>, issuer: Option<&str>) -> Oidc {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers").join("oidc");
    let server = dir.join("server.mjs");
    let Some(node) = find_program("node", &["/usr/bin/node", "/usr/local/bin/node"]) else {
        panic!("{NOT_INSTALLED} (no node found)");
    };
    if !server.is_file() {
        panic!("{NOT_INSTALLED} ({} is missing)", server.display());
    }
    if !dir.join("node_modules").join("oidc-provider").join("package.json").is_file() {
        panic!("{NOT_INSTALLED} ({} has no node_modules/oidc-provider)", dir.display());
    }
    let port = free_port();
    let scratch = tempfile::Builder::new().prefix("latchkey-oidc-").tempdir().expect("create oidc scratch directory");
    let mut args = vec![server.display().to_string(), port.to_string()];
    if access_token_ttl.is_some() || issuer.is_some() {
        args.push(access_token_ttl.unwrap_or(3600).to_string());
    }
    args.extend(issuer.map(str::to_owned));
    let process = PeerProcess::spawn("oidc-provider", scratch, &node, &args);
    process.wait_until_ready(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(60));
    let issuer = issuer.map_or_else(|| format!("http://127.0.0.1:{port}"), str::to_owned);
    Oidc {
        authorize_url: format!("{issuer}/auth"),
        token_url: format!("{issuer}/token"),
        userinfo_url: format!("{issuer}/me"),
        revocation_url: format!("{issuer}/token/revocation"),
        introspection_url: format!("{issuer}/token/introspection"),
        registration_url: format!("{issuer}/reg"),
        issuer,
        port,
        _process: process,
    }
}

/// `application/x-www-form-urlencoded` serialization of `pairs`.
fn form(pairs: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://form.invalid/").expect("static URL");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

/// One value form-urlencoded (RFC 6749 section 2.3.1 asks this for Basic credentials).
fn form_encode(value: &str) -> String {
    let mut url = Url::parse("http://form.invalid/").expect("static URL");
    url.query_pairs_mut().append_key_only(value);
    url.query().unwrap_or_default().to_owned()
}

/// The `value` of `<input ... name="NAME" value="...">` in the provider's own pages.
fn hidden_input(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\"");
    let at = html.find(&needle)?;
    let rest = &html[at + needle.len()..];
    let rest = &rest[rest.find("value=\"")? + "value=\"".len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// A cookie jar good enough for one host: cookies keyed by name and path, sent to requests
/// whose path starts with the cookie's path.
#[derive(Default)]
struct CookieJar {
    cookies: Vec<(String, String, String)>,
}

impl CookieJar {
    fn store(&mut self, url: &Url, response: &reqwest::Response) {
        for header in response.headers().get_all(http::header::SET_COOKIE) {
            let Ok(header) = header.to_str() else { continue };
            let mut parts = header.split(';').map(str::trim);
            let Some((name, value)) = parts.next().and_then(|pair| pair.split_once('=')) else { continue };
            let mut path = None;
            let mut expired = value.is_empty();
            for attribute in parts {
                let (key, val) = attribute.split_once('=').unwrap_or((attribute, ""));
                match key.to_ascii_lowercase().as_str() {
                    "path" => path = Some(val.to_owned()),
                    "max-age" => expired |= val.trim().starts_with('-') || val.trim() == "0",
                    "expires" => expired |= val.contains("1970"),
                    _ => {}
                }
            }
            let path = path.filter(|p| p.starts_with('/')).unwrap_or_else(|| {
                let request_path = url.path();
                request_path[..request_path.rfind('/').unwrap_or(0).max(1)].to_owned()
            });
            self.cookies.retain(|(n, _, p)| !(n == name && *p == path));
            if !expired {
                self.cookies.push((name.to_owned(), value.to_owned(), path));
            }
        }
    }

    fn header_for(&self, url: &Url) -> http::HeaderMap {
        let request_path = url.path();
        let matching: Vec<String> = self
            .cookies
            .iter()
            .filter(|(_, _, path)| {
                request_path.starts_with(path.as_str())
                    && (path.ends_with('/')
                        || request_path.len() == path.len()
                        || request_path[path.len()..].starts_with('/'))
            })
            .map(|(name, value, _)| format!("{name}={value}"))
            .collect();
        let mut headers = http::HeaderMap::new();
        if !matching.is_empty() {
            headers.insert(http::header::COOKIE, matching.join("; ").parse().expect("cookie values are header-safe"));
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    const REDIRECT: &str = "http://127.0.0.1:9/cb";

    fn authorization_url(oidc: &Oidc, client: &RegisteredClient, scope: &str, state: &str) -> String {
        let mut url = Url::parse(&oidc.authorize_url).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", scope)
            .append_pair("state", state)
            .append_pair("code_challenge", CHALLENGE)
            .append_pair("code_challenge_method", "S256");
        url.to_string()
    }

    fn query(location: &str) -> Vec<(String, String)> {
        Url::parse(location).unwrap().query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
    }

    fn param(location: &str, name: &str) -> Option<String> {
        query(location).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    async fn token(oidc: &Oidc, client: &RegisteredClient, params: &[(&str, &str)]) -> (StatusCode, Value) {
        let response =
            client.authenticate(crate::latchkey::test_client().post(&oidc.token_url), params).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("token answer not JSON ({e}): {text}")))
    }

    async fn code_flow(oidc: &Oidc, client: &RegisteredClient, login: &str) -> Value {
        let location = oidc.login(&authorization_url(oidc, client, "openid email", "st-1"), login).await;
        assert!(location.starts_with(&format!("{REDIRECT}?")), "{location}");
        assert_eq!(param(&location, "state").as_deref(), Some("st-1"), "{location}");
        let code = param(&location, "code").unwrap_or_else(|| panic!("no code in {location}"));
        let (status, body) = token(
            oidc,
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    #[tokio::test]
    async fn discovery_document_is_served() {
        let oidc = oidc();
        let response =
            crate::latchkey::test_client().get(oidc.url("/.well-known/openid-configuration")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let doc: Value = response.json().await.unwrap();
        assert_eq!(doc["issuer"], oidc.issuer.as_str());
        assert_eq!(doc["authorization_endpoint"], oidc.authorize_url.as_str());
        assert_eq!(doc["token_endpoint"], oidc.token_url.as_str());
        assert_eq!(doc["userinfo_endpoint"], oidc.userinfo_url.as_str());
        assert_eq!(doc["revocation_endpoint"], oidc.revocation_url.as_str());
        assert_eq!(doc["introspection_endpoint"], oidc.introspection_url.as_str());
        assert_eq!(doc["registration_endpoint"], oidc.registration_url.as_str());
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        for scope in ["openid", "email", "profile", "offline_access", "api:read"] {
            assert!(doc["scopes_supported"].as_array().unwrap().contains(&json!(scope)), "{scope}: {doc}");
        }
    }

    #[tokio::test]
    async fn client_credentials_token() {
        let oidc = oidc();
        let client = oidc.register("client_secret_basic", &["client_credentials"], &[]).await;
        assert!(client.client_secret.is_some());
        let (status, body) = token(oidc, &client, &[("grant_type", "client_credentials"), ("scope", "api:read")]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "api:read");
        assert!(body.get("refresh_token").is_none(), "{body}");
        let access = body["access_token"].as_str().unwrap();
        let info = oidc.introspect(&client, access).await;
        assert_eq!(info["active"], true, "{info}");
        assert_eq!(info["client_id"], client.client_id.as_str());
        assert_eq!(info["scope"], "api:read");

        let wrong = RegisteredClient { client_secret: Some("wrong".to_owned()), ..client.clone() };
        let (status, body) = token(oidc, &wrong, &[("grant_type", "client_credentials")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body, json!({"error": "invalid_client", "error_description": "client authentication failed"}));
    }

    #[tokio::test]
    async fn authorization_code_refresh_rotation_and_revocation() {
        let oidc = oidc();
        let client = oidc.register("client_secret_basic", &["authorization_code", "refresh_token"], &[REDIRECT]).await;

        let location = oidc.login(&authorization_url(oidc, &client, "openid email", "state-42"), "alice").await;
        assert!(location.starts_with(&format!("{REDIRECT}?")), "{location}");
        assert_eq!(param(&location, "state").as_deref(), Some("state-42"));
        assert_eq!(param(&location, "iss").as_deref(), Some(oidc.issuer.as_str()), "{location}");
        let code = param(&location, "code").unwrap();

        // PKCE is enforced: the wrong verifier fails (and burns nothing we need: new code below).
        let (status, body) = token(
            oidc,
            &client,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", "wrong-verifier-wrong-verifier-wrong-verifier-00"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_grant", "{body}");

        let tokens = code_flow(oidc, &client, "alice").await;
        let access = tokens["access_token"].as_str().unwrap().to_owned();
        let refresh =
            tokens["refresh_token"].as_str().unwrap_or_else(|| panic!("no refresh token: {tokens}")).to_owned();
        assert_eq!(tokens["token_type"], "Bearer");
        assert!(tokens["id_token"].is_string(), "{tokens}");

        let me: Value = crate::latchkey::test_client()
            .get(&oidc.userinfo_url)
            .bearer_auth(&access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(me["sub"], "alice", "{me}");
        assert_eq!(me["email"], "alice@example.com", "{me}");

        let (status, refreshed) =
            token(oidc, &client, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
        assert_eq!(status, StatusCode::OK, "{refreshed}");
        let new_refresh = refreshed["refresh_token"].as_str().unwrap().to_owned();
        let new_access = refreshed["access_token"].as_str().unwrap().to_owned();
        assert_ne!(new_refresh, refresh, "every refresh rotates");
        assert_ne!(new_access, access);

        let (status, body) =
            token(oidc, &client, &[("grant_type", "refresh_token"), ("refresh_token", &refresh)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body, json!({"error": "invalid_grant", "error_description": "grant request is invalid"}));
        // The replay revoked the whole grant, the rotated refresh token included.
        assert_eq!(oidc.introspect(&client, &new_refresh).await["active"], false);
        assert_eq!(oidc.introspect(&client, &new_access).await["active"], false);

        // A fresh grant, to revoke one access token on purpose.
        let tokens = code_flow(oidc, &client, "bob").await;
        let access = tokens["access_token"].as_str().unwrap();
        let info = oidc.introspect(&client, access).await;
        assert_eq!(info["active"], true, "{info}");
        assert_eq!(info["sub"], "bob", "{info}");
        let refresh = tokens["refresh_token"].as_str().unwrap();
        assert_eq!(oidc.introspect(&client, refresh).await["active"], true);
        let response = client
            .authenticate(
                crate::latchkey::test_client().post(&oidc.revocation_url),
                &[("token", access), ("token_type_hint", "access_token")],
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(oidc.introspect(&client, access).await, json!({"active": false}));
        // oidc-provider revokes every token of the grant (refresh token included) when one
        // access token of it is revoked; only the consent (the Grant record) survives.
        assert_eq!(oidc.introspect(&client, refresh).await["active"], false);
    }

    #[tokio::test]
    async fn public_and_post_clients() {
        let oidc = oidc();
        for method in ["none", "client_secret_post"] {
            let client = oidc.register(method, &["authorization_code", "refresh_token"], &[REDIRECT]).await;
            assert_eq!(client.client_secret.is_none(), method == "none", "{client:?}");
            let tokens = code_flow(oidc, &client, "carol").await;
            assert!(tokens["refresh_token"].is_string(), "{method}: {tokens}");
            let (status, body) = token(
                oidc,
                &client,
                &[("grant_type", "refresh_token"), ("refresh_token", tokens["refresh_token"].as_str().unwrap())],
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{method}: {body}");
        }
    }

    #[tokio::test]
    async fn missing_pkce_is_refused() {
        let oidc = oidc();
        let client = oidc.register("client_secret_basic", &["authorization_code"], &[REDIRECT]).await;
        let mut url = Url::parse(&oidc.authorize_url).unwrap();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &client.client_id)
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("scope", "openid")
            .append_pair("state", "s");
        let location = oidc.login(url.as_str(), "dave").await;
        assert_eq!(param(&location, "error").as_deref(), Some("invalid_request"), "{location}");
    }

    #[tokio::test]
    async fn a_separate_server_with_short_lived_access_tokens() {
        let own = Oidc::start_with_access_token_ttl(7);
        assert_ne!(own.issuer, oidc().issuer);
        let client = own.register("client_secret_post", &["client_credentials"], &[]).await;
        let (status, body) = token(&own, &client, &[("grant_type", "client_credentials")]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["expires_in"], 7, "{body}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oidc_is_one_process_for_all_callers() {
        let a = tokio::task::spawn_blocking(oidc);
        let b = tokio::task::spawn_blocking(oidc);
        assert!(std::ptr::eq(a.await.unwrap(), b.await.unwrap()));
    }
}
