//! The signing step: the one place where a credential goes onto a request. Every method signs
//! the request as built (method, URL with its query, headers, and the body when it is in
//! memory), so a method that signs over the whole request (Digest, OAuth 1.0a, AWS SigV4) has
//! what it needs; the simple ones set a header or a query parameter.

use std::fmt;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::config::TokenIn;
use crate::{CallError, ErrorCode};

/// A request, built and checked, waiting for its credential.
pub struct Unsigned<'a> {
    pub method: &'a Method,
    pub url: &'a mut Url,
    pub headers: &'a mut HeaderMap,
    /// The body, when it is in memory (named calls, and requests sent again after a refresh);
    /// `None` while it streams through from the caller.
    pub body: Option<&'a [u8]>,
    /// The engine's clock, for a method that signs the time (OAuth 1.0a's timestamp, SigV4's
    /// `x-amz-date`); the others never read it, so their calls cost no clock read.
    pub clock: &'a dyn crate::clock::Clock,
}

/// One authentication method's signing step. Signing replaces whatever the caller sent under
/// the names the method owns; it never reads the store or the vault (what it needs was
/// prepared when secrets or connectors changed, or obtained in the credential phase).
pub trait Sign: Send + Sync + fmt::Debug {
    fn sign(&self, request: &mut Unsigned<'_>) -> Result<(), CallError>;

    /// The request header this method owns (the caller may not send it), if any.
    fn owned_header(&self) -> Option<&HeaderName> {
        None
    }
}

/// A fixed header (`api_key_header`, `basic`). `Debug` shows the name only.
pub struct StaticHeader {
    name: HeaderName,
    value: HeaderValue,
}

impl StaticHeader {
    /// The header `name: text`; `what` names the secret in the error when `text` cannot be a
    /// header value.
    pub(crate) fn new(name: HeaderName, text: &str, what: &str) -> Result<Self, CallError> {
        Ok(StaticHeader { name, value: sensitive_header(text, what)? })
    }
}

impl fmt::Debug for StaticHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticHeader({}: [REDACTED])", self.name)
    }
}

impl Sign for StaticHeader {
    fn sign(&self, request: &mut Unsigned<'_>) -> Result<(), CallError> {
        request.headers.insert(self.name.clone(), self.value.clone());
        Ok(())
    }

    fn owned_header(&self) -> Option<&HeaderName> {
        Some(&self.name)
    }
}

/// A fixed query parameter (`api_key_query`). `Debug` shows the name only.
pub struct QueryParam {
    name: String,
    value: SecretString,
}

impl QueryParam {
    pub(crate) fn new(name: &str, value: SecretString) -> Self {
        QueryParam { name: name.to_owned(), value }
    }
}

impl fmt::Debug for QueryParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QueryParam({}=[REDACTED])", self.name)
    }
}

impl Sign for QueryParam {
    fn sign(&self, request: &mut Unsigned<'_>) -> Result<(), CallError> {
        set_query_param(request.url, &self.name, self.value.expose_secret());
        Ok(())
    }
}

/// A bearer token (RFC 6750) where the method says: an OAuth access token, or the calling
/// user's identity JWT. Borrowed for one request.
pub struct Bearer<'a> {
    pub token: &'a (dyn ExposeSecret<str> + Sync),
    pub token_in: TokenIn,
}

impl fmt::Debug for Bearer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bearer({:?}: [REDACTED])", self.token_in)
    }
}

impl Sign for Bearer<'_> {
    fn sign(&self, request: &mut Unsigned<'_>) -> Result<(), CallError> {
        match self.token_in {
            TokenIn::Header => {
                let value = sensitive_header(&format!("Bearer {}", self.token.expose_secret()), "the access token")?;
                request.headers.insert(http::header::AUTHORIZATION, value);
            }
            // RFC 6750 §2.3.
            TokenIn::Query => set_query_param(request.url, "access_token", self.token.expose_secret()),
        }
        Ok(())
    }

    fn owned_header(&self) -> Option<&HeaderName> {
        (self.token_in == TokenIn::Header).then_some(&http::header::AUTHORIZATION)
    }
}

/// Sets `name=value` as the query's only parameter of that name; the others stay byte for byte.
fn set_query_param(url: &mut Url, name: &str, value: &str) {
    if let Some(kept) = url.query().map(|q| super::without_params(q, |n| n == name)) {
        url.set_query(Some(kept.as_str()).filter(|k| !k.is_empty()));
    }
    url.query_pairs_mut().append_pair(name, value);
}

/// A header value that HTTP libraries treat as sensitive (kept out of their debug output).
pub(crate) fn sensitive_header(text: &str, what: &str) -> Result<HeaderValue, CallError> {
    let mut value = HeaderValue::from_str(text).map_err(|_| {
        CallError::new(
            ErrorCode::SecretMissing,
            format!("{what} contains characters that cannot go into an HTTP header (line breaks or control characters): set it again"),
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(signer: &dyn Sign, url: &str, headers: &[(&str, &str)]) -> (String, HeaderMap) {
        let mut url = Url::parse(url).unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        signer
            .sign(&mut Unsigned {
                method: &Method::GET,
                url: &mut url,
                headers: &mut map,
                body: None,
                clock: &crate::clock::SystemClock,
            })
            .unwrap();
        (url.to_string(), map)
    }

    #[test]
    fn a_static_header_replaces_every_header_of_its_name_and_is_sensitive() {
        let h = StaticHeader::new(HeaderName::from_static("x-key"), "k1", "the API key").unwrap();
        let (_, headers) = sign(&h, "https://a.example/", &[("x-key", "caller"), ("x-key", "again"), ("x-other", "o")]);
        let values: Vec<_> = headers.get_all("x-key").iter().collect();
        assert_eq!(values, ["k1"]);
        assert!(values[0].is_sensitive());
        assert_eq!(headers["x-other"], "o");
        assert_eq!(h.owned_header(), Some(&HeaderName::from_static("x-key")));
    }

    #[test]
    fn a_query_key_replaces_the_callers_of_its_name_and_keeps_the_rest_byte_for_byte() {
        let q = QueryParam::new("api_key", SecretString::from("s&1"));
        let (url, _) = sign(&q, "https://a.example/p?b=%7E&api_key=caller&api%5Fkey=x&c", &[]);
        assert_eq!(url, "https://a.example/p?b=%7E&c&api_key=s%261");
        let (url, _) = sign(&q, "https://a.example/p?api_key=only", &[]);
        assert_eq!(url, "https://a.example/p?api_key=s%261");
        let (url, _) = sign(&q, "https://a.example/p", &[]);
        assert_eq!(url, "https://a.example/p?api_key=s%261");
        assert_eq!(q.owned_header(), None);
    }

    #[test]
    fn a_bearer_token_goes_into_the_authorization_header_or_the_access_token_parameter() {
        let token = SecretString::from("t0k");
        let header = Bearer { token: &token, token_in: TokenIn::Header };
        let (url, headers) = sign(&header, "https://a.example/?x=1", &[("authorization", "Basic caller")]);
        assert_eq!(url, "https://a.example/?x=1");
        assert_eq!(headers["authorization"], "Bearer t0k");
        assert!(headers["authorization"].is_sensitive());
        assert_eq!(header.owned_header(), Some(&http::header::AUTHORIZATION));

        let query = Bearer { token: &token, token_in: TokenIn::Query };
        let (url, headers) = sign(&query, "https://a.example/?access_token=caller&x=1", &[]);
        assert_eq!(url, "https://a.example/?x=1&access_token=t0k");
        assert!(headers.is_empty());
        assert_eq!(query.owned_header(), None);
    }

    #[test]
    fn a_value_that_cannot_be_a_header_is_a_secret_to_set_again_and_not_shown() {
        let e = StaticHeader::new(http::header::AUTHORIZATION, "Basic a\r\nb", "the password").unwrap_err();
        assert_eq!(e.code, ErrorCode::SecretMissing);
        assert!(!e.message.contains("a\r\nb"));
        let token = SecretString::from("canary\nbreak");
        let e = Bearer { token: &token, token_in: TokenIn::Header }
            .sign(&mut Unsigned {
                method: &Method::GET,
                url: &mut Url::parse("https://a.example/").unwrap(),
                headers: &mut HeaderMap::new(),
                body: None,
                clock: &crate::clock::SystemClock,
            })
            .unwrap_err();
        assert!(!e.message.contains("canary"), "{}", e.message);
    }

    #[test]
    fn debug_shows_no_value() {
        let h = StaticHeader::new(HeaderName::from_static("x-key"), "k-canary-1", "the API key").unwrap();
        let q = QueryParam::new("k", SecretString::from("q-canary-2"));
        let token = SecretString::from("b-canary-3");
        let b = Bearer { token: &token, token_in: TokenIn::Header };
        let shown = format!("{h:?} {q:?} {b:?}");
        for canary in ["k-canary-1", "q-canary-2", "b-canary-3"] {
            assert!(!shown.contains(canary), "{shown}");
        }
    }
}
