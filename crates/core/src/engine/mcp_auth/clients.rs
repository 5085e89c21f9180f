//! The clients of the MCP authorization server: what a registration (RFC 7591) and a client ID
//! metadata document may say, and the rules their redirect URIs follow. Pure, apart from
//! [`fetch_document`], the one network part.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

/// The most redirect URIs a client may have.
pub const MAX_REDIRECT_URIS: usize = 10;
/// The longest redirect URI accepted (it travels in the authorization cookie).
pub const MAX_REDIRECT_URI: usize = 800;
/// The longest client ID metadata document URL accepted.
pub const MAX_CLIENT_ID: usize = 400;
/// The largest client ID metadata document read.
pub const MAX_DOCUMENT: usize = 64 * 1024;
/// How long a metadata document's fetch may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a fetched document is kept when its answer says nothing (`Cache-Control`), and the
/// longest it is kept whatever it says.
pub const CACHE_DEFAULT_S: i64 = 300;
pub const CACHE_MAX_S: i64 = 3_600;

/// How a client is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// Registered at the registration endpoint: it says what it likes about itself.
    Registered,
    /// Its `client_id` is the https URL of its metadata document: the name is vouched for by
    /// that URL's host.
    MetadataDocument,
}

/// A client as the authorization endpoint and the consent page know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    pub kind: ClientKind,
    pub redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
}

/// An RFC 7591 / RFC 6749 error: its code and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataError {
    pub code: &'static str,
    pub message: String,
}

fn bad(code: &'static str, message: impl Into<String>) -> MetadataError {
    MetadataError { code, message: message.into() }
}

fn is_loopback_host(u: &Url) -> bool {
    match u.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Why a redirect URI is not acceptable for a public client, if it is not: `https`; `http`
/// only on loopback (`127.0.0.1`, `[::1]`, `localhost`; RFC 8252 §7.3); or a private-use
/// scheme (RFC 8252 §7.1: reverse domain name, with a dot). Never a fragment or a user name.
pub fn redirect_uri_problem(uri: &str) -> Option<String> {
    if uri.len() > MAX_REDIRECT_URI {
        return Some(format!("is longer than {MAX_REDIRECT_URI} characters"));
    }
    let Ok(u) = Url::parse(uri) else { return Some("is not an absolute URI".into()) };
    if u.fragment().is_some() {
        return Some("has a fragment (`#…`), which a redirect URI may not have (RFC 6749 §3.1.2)".into());
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Some("carries a user name or password".into());
    }
    match u.scheme() {
        "https" if u.host().is_some() => None,
        "http" if is_loopback_host(&u) => None,
        "http" => {
            Some("uses http on a host other than loopback: use https, or http://127.0.0.1 for a native app".into())
        }
        "javascript" | "data" | "file" | "vbscript" | "about" | "blob" => {
            Some("uses a scheme no redirect may use".into())
        }
        s if s.contains('.') => None,
        _ => Some(
            "uses a custom scheme that is not a reverse domain name (RFC 8252 §7.1: `com.example.app:/callback`)"
                .into(),
        ),
    }
}

fn text_field(body: &Value, field: &str, max: usize) -> Result<Option<String>, MetadataError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control) => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(bad("invalid_client_metadata", format!("`{field}` must be text of 1 to {max} characters"))),
    }
}

fn url_field(body: &Value, field: &str) -> Result<Option<String>, MetadataError> {
    let Some(u) = text_field(body, field, 2048)? else { return Ok(None) };
    match Url::parse(&u) {
        Ok(p) if p.scheme() == "https" && p.host().is_some() => Ok(Some(u)),
        _ => Err(bad("invalid_client_metadata", format!("`{field}` must be an https URL"))),
    }
}

fn string_list(body: &Value, field: &str) -> Result<Option<Vec<String>>, MetadataError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| bad("invalid_client_metadata", format!("`{field}` must be a list of strings"))),
        Some(_) => Err(bad("invalid_client_metadata", format!("`{field}` must be a list of strings"))),
    }
}

/// What a registration or a metadata document says, checked: redirect URIs (1 to
/// [`MAX_REDIRECT_URIS`], each acceptable), a public client (`token_endpoint_auth_method`
/// `none`, or absent, when `strict_auth_method` is false it is replaced by `none`), the
/// authorization code and refresh token grants, `code` responses, and the words shown on the
/// consent page.
pub fn check_metadata(body: &Value, strict_auth_method: bool) -> Result<Metadata, MetadataError> {
    if !body.is_object() {
        return Err(bad("invalid_client_metadata", "the body must be a JSON object of client metadata (RFC 7591 §2)"));
    }
    let redirect_uris = string_list(body, "redirect_uris")?.unwrap_or_default();
    if redirect_uris.is_empty() || redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(bad(
            "invalid_redirect_uri",
            format!("`redirect_uris` must list 1 to {MAX_REDIRECT_URIS} redirect URIs"),
        ));
    }
    for (i, uri) in redirect_uris.iter().enumerate() {
        if let Some(problem) = redirect_uri_problem(uri) {
            return Err(bad("invalid_redirect_uri", format!("`redirect_uris[{i}]` {problem}")));
        }
    }
    match body.get("token_endpoint_auth_method").and_then(Value::as_str) {
        None | Some("none") => {}
        Some(other) if strict_auth_method => {
            let shown: String = other.chars().take(40).collect();
            return Err(bad(
                "invalid_client_metadata",
                format!(
                    "`token_endpoint_auth_method` `{shown}` is not offered: MCP clients are public clients (`none`), proven by PKCE"
                ),
            ));
        }
        Some(_) => {} // registration: replaced by `none` (RFC 7591 §3.2.1 lets the server say so)
    }
    let grant_types =
        string_list(body, "grant_types")?.unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    if let Some(g) = grant_types.iter().find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token")) {
        let shown: String = g.chars().take(60).collect();
        return Err(bad(
            "invalid_client_metadata",
            format!("grant type `{shown}` is not offered: use `authorization_code` and `refresh_token`"),
        ));
    }
    if !grant_types.iter().any(|g| g == "authorization_code") {
        return Err(bad("invalid_client_metadata", "`grant_types` must include `authorization_code`"));
    }
    let response_types = string_list(body, "response_types")?.unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return Err(bad("invalid_client_metadata", "`response_types` may only be `code`"));
    }
    Ok(Metadata {
        redirect_uris,
        grant_types,
        client_name: text_field(body, "client_name", 100)?,
        client_uri: url_field(body, "client_uri")?,
        logo_uri: url_field(body, "logo_uri")?,
    })
}

/// Client metadata as accepted (what a registration stores and answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo_uri: Option<String>,
}

impl Metadata {
    pub fn into_client(self, id: String, kind: ClientKind) -> Client {
        Client {
            id,
            kind,
            redirect_uris: self.redirect_uris,
            client_name: self.client_name,
            client_uri: self.client_uri,
            logo_uri: self.logo_uri,
        }
    }
}

/// Whether `client_id` names a metadata document (an `https` URL with a path; with
/// `loopback`, also `http` on loopback), and if it does, why it cannot be one when it cannot.
pub fn document_url(client_id: &str, loopback: bool) -> Option<Result<Url, String>> {
    let scheme_ok = client_id.starts_with("https://") || (loopback && client_id.starts_with("http://"));
    if !scheme_ok {
        return client_id
            .starts_with("http://")
            .then(|| Err("a client ID metadata document must be at an https URL".to_owned()));
    }
    Some(check_document_url(client_id))
}

fn check_document_url(client_id: &str) -> Result<Url, String> {
    if client_id.len() > MAX_CLIENT_ID {
        return Err(format!("the client ID URL is longer than {MAX_CLIENT_ID} characters"));
    }
    let u = Url::parse(client_id).map_err(|_| "the client ID is not a URL".to_owned())?;
    if u.scheme() == "http" && !is_loopback_host(&u) {
        return Err("an http client ID is accepted only on loopback, and only for development".into());
    }
    if u.path() == "/" || u.path().is_empty() {
        return Err("a client ID metadata document URL must have a path".into());
    }
    if u.fragment().is_some() || !u.username().is_empty() || u.password().is_some() {
        return Err("a client ID metadata document URL may have no fragment and no user name".into());
    }
    if u.path().split('/').any(|s| s == "." || s == "..") || u.as_str() != client_id {
        return Err("a client ID metadata document URL must be written in its normal form (no `.` or `..`)".into());
    }
    Ok(u)
}

/// Seconds to keep a document by its `Cache-Control`, bounded by [`CACHE_MAX_S`].
pub fn cache_seconds(cache_control: Option<&str>) -> i64 {
    let Some(cc) = cache_control else { return CACHE_DEFAULT_S };
    let mut seconds = CACHE_DEFAULT_S;
    for d in cc.split(',').map(str::trim) {
        let d = d.to_ascii_lowercase();
        if d == "no-store" || d == "no-cache" {
            return 0;
        }
        if let Some(v) = d.strip_prefix("max-age=") {
            seconds = v.trim_matches('"').parse().unwrap_or(CACHE_DEFAULT_S);
        }
    }
    seconds.clamp(0, CACHE_MAX_S)
}

/// Fetches and checks the metadata document at `url` (no redirects, at most
/// [`MAX_DOCUMENT`] bytes, within [`FETCH_TIMEOUT`]): its `client_id` must be `url` exactly.
/// Answers the client and how long it may be kept (seconds).
pub async fn fetch_document(http: &reqwest::Client, url: &Url) -> Result<(Client, i64), String> {
    let sent = http
        .get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| {
            let why = if e.is_timeout() { "it did not answer in time".to_owned() } else { root_cause(&e) };
            format!("its metadata document could not be fetched ({why})")
        })?;
    if sent.status() != http::StatusCode::OK {
        return Err(format!(
            "its metadata document answered {} instead of 200 (redirects are not followed)",
            sent.status()
        ));
    }
    let keep = cache_seconds(sent.headers().get(http::header::CACHE_CONTROL).and_then(|v| v.to_str().ok()));
    let mut body = Vec::new();
    let mut sent = sent;
    while let Some(chunk) = sent.chunk().await.map_err(|_| "its metadata document could not be read".to_owned())? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("its metadata document is larger than {} KiB", MAX_DOCUMENT / 1024));
        }
        body.extend_from_slice(&chunk);
    }
    let doc: Value = serde_json::from_slice(&body).map_err(|_| "its metadata document is not JSON".to_owned())?;
    if doc.get("client_id").and_then(Value::as_str) != Some(url.as_str()) {
        return Err("its metadata document's `client_id` is not the document's URL".into());
    }
    let metadata = check_metadata(&doc, true).map_err(|e| format!("its metadata document: {}", e.message))?;
    Ok((metadata.into_client(url.as_str().to_owned(), ClientKind::MetadataDocument), keep))
}

/// The innermost cause of a request error (reqwest's own text names the URL only).
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string().chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn redirect_uris_are_https_loopback_http_or_private_use_schemes() {
        for ok in [
            "https://app.example/cb",
            "http://127.0.0.1:3000/cb",
            "http://[::1]/cb",
            "http://localhost:8080/cb",
            "com.example.app:/oauth",
        ] {
            assert_eq!(redirect_uri_problem(ok), None, "{ok}");
        }
        for bad in [
            "http://app.example/cb",
            "https://app.example/cb#x",
            "https://u:p@app.example/cb",
            "javascript:alert(1)",
            "myapp:/cb",
            "/relative",
            "data:text/html,hi",
        ] {
            assert!(redirect_uri_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn a_registration_is_a_public_client_with_the_code_grant() {
        let m =
            check_metadata(&json!({"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "Agent"}), false).unwrap();
        assert_eq!(m.grant_types, ["authorization_code", "refresh_token"]);
        assert_eq!(m.client_name.as_deref(), Some("Agent"));
        // A secret-based method is replaced by `none` at registration; a document must say `none`.
        let secret =
            json!({"redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_post"});
        assert!(check_metadata(&secret, false).is_ok());
        assert_eq!(check_metadata(&secret, true).unwrap_err().code, "invalid_client_metadata");
        assert_eq!(check_metadata(&json!({"redirect_uris": []}), false).unwrap_err().code, "invalid_redirect_uri");
        assert_eq!(check_metadata(&json!({}), false).unwrap_err().code, "invalid_redirect_uri");
        let e = check_metadata(&json!({"redirect_uris": ["http://evil.example/cb"]}), false).unwrap_err();
        assert!(e.message.starts_with("`redirect_uris[0]`"), "{}", e.message);
        let g = json!({"redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]});
        assert_eq!(check_metadata(&g, false).unwrap_err().code, "invalid_client_metadata");
        let logo = json!({"redirect_uris": ["https://a.example/cb"], "logo_uri": "javascript:alert(1)"});
        assert_eq!(check_metadata(&logo, false).unwrap_err().code, "invalid_client_metadata");
        let name = json!({"redirect_uris": ["https://a.example/cb"], "client_name": "a\nb"});
        assert!(check_metadata(&name, false).is_err());
    }

    #[test]
    fn client_id_urls_are_https_with_a_path_in_normal_form() {
        assert!(document_url("mcp_abc", false).is_none(), "a registered client's id");
        assert!(document_url("https://app.example/client.json", false).unwrap().is_ok());
        assert!(document_url("https://app.example/", false).unwrap().is_err());
        assert!(document_url("https://app.example/a/../b.json", false).unwrap().is_err());
        assert!(document_url("http://127.0.0.1:9/c.json", false).unwrap().is_err());
        assert!(document_url("http://127.0.0.1:9/c.json", true).unwrap().is_ok());
        assert!(document_url("http://app.example/c.json", true).unwrap().is_err());
    }

    #[test]
    fn documents_are_kept_as_their_answer_says_within_bounds() {
        assert_eq!(cache_seconds(None), CACHE_DEFAULT_S);
        assert_eq!(cache_seconds(Some("public, max-age=60")), 60);
        assert_eq!(cache_seconds(Some("max-age=999999")), CACHE_MAX_S);
        assert_eq!(cache_seconds(Some("no-store")), 0);
    }
}
