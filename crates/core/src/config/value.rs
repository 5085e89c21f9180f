//! Values parsed once, at load: URLs, methods, header names and values, templates. Each keeps
//! the text as it was written, which is what it serializes to (the admin API and the store see
//! exactly what was written) and what fingerprints are made of; the runtime takes the parsed
//! value and never parses again.

use std::cmp::Ordering;
use std::fmt;
use std::ops::Deref;

use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::Url;

use crate::template::{Body, Text};
use crate::upstream::{Origin, OriginError};

/// Why a value could not be parsed. Its text is the problem's message; the field and the
/// connector are added by the caller (a [`super::Problem`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("`{text}` is not a URL ({reason}); write e.g. `https://api.example.com/v1`")]
    Url { text: String, reason: url::ParseError },
    #[error("scheme `{0}` is not supported: use https://")]
    Scheme(String),
    #[error("has no host")]
    NoHost,
    #[error("must not carry credentials (`user:pass@`): put them in `auth` and the vault")]
    Credentials,
    #[error("must not have a query or fragment: use the connector's `query` table")]
    QueryOrFragment,
    #[error("`{text}` cannot be reached: {reason}")]
    Origin { text: String, reason: OriginError },
    #[error("`{0}` is not an http(s) URL; write e.g. `https://auth.example.com/authorize?tenant=[tenant]`")]
    LoginUrl(String),
    #[error(
        "`{0}` is not an HTTP method Latchkey sends: write GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, TRACE or CONNECT"
    )]
    Method(String),
    #[error("`{0}` is not a valid header name: use letters, digits and `-`, e.g. `X-Api-Version`")]
    HeaderName(String),
    #[error("header values cannot contain line breaks or NUL: write the value on one line")]
    HeaderBreak,
    #[error("is not a valid header value: remove its control characters (tabs are allowed)")]
    HeaderValue,
    #[error("is not valid JSON ({0}); placeholders go inside strings: `\"<name>\"`")]
    BodyJson(String),
}

/// A value that parses from the text of one configuration field.
pub trait FromField: Sized {
    fn from_field(text: &str) -> Result<Self, ValueError>;
}

/// A field's text as written, and the value parsed from it. Serializes to the text.
///
/// `as_str` is the text as written, not the parsed value's own rendering (a `Url` normalizes:
/// `https://x.example` becomes `https://x.example/`); the parsed value is `*self`.
#[derive(Clone)]
pub struct Parsed<T> {
    text: String,
    value: T,
}

impl<T: FromField> Parsed<T> {
    pub fn parse(text: impl Into<String>) -> Result<Self, ValueError> {
        let text = text.into();
        let value = T::from_field(&text)?;
        Ok(Parsed { text, value })
    }
}

impl<T> Parsed<T> {
    /// A value known to be `text` parsed (a default).
    pub(super) fn from_parts(text: &str, value: T) -> Self {
        Parsed { text: text.to_owned(), value }
    }

    /// The text as it was written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn value(&self) -> &T {
        &self.value
    }
}

impl<T> Deref for Parsed<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> fmt::Display for Parsed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl<T> fmt::Debug for Parsed<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.text, f)
    }
}

/// Two values are the same when they were written the same.
impl<T> PartialEq for Parsed<T> {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl<T> Eq for Parsed<T> {}
impl<T> PartialOrd for Parsed<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
/// Ordered by text, so a table keyed by parsed names keeps the order (and the serialized form)
/// of one keyed by strings.
impl<T> Ord for Parsed<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.text.cmp(&other.text)
    }
}

impl<T> Serialize for Parsed<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de, T: FromField> Deserialize<'de> for Parsed<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Parsed::parse(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl FromField for Url {
    fn from_field(text: &str) -> Result<Self, ValueError> {
        Url::parse(text).map_err(|reason| ValueError::Url { text: text.to_owned(), reason })
    }
}

/// A connector's `base_url`: an http(s) URL with a host, no credentials, no query and no
/// fragment, and where its requests go.
#[derive(Clone)]
pub struct BaseUrl {
    url: Url,
    /// The URL's path without its trailing `/`: calls and proxied paths go under it.
    path: String,
    /// Where requests go, under no egress rule; see [`Origin::under_rule`].
    origin: Origin,
}

impl BaseUrl {
    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Whether the host is loopback (`localhost`, 127.0.0.0/8, `::1`).
    pub fn is_loopback(&self) -> bool {
        is_loopback(&self.url)
    }
}

pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl FromField for BaseUrl {
    fn from_field(text: &str) -> Result<Self, ValueError> {
        let url = Url::from_field(text)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ValueError::Scheme(url.scheme().to_owned()));
        }
        if url.host().is_none() {
            return Err(ValueError::NoHost);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ValueError::Credentials);
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(ValueError::QueryOrFragment);
        }
        let origin =
            Origin::from_url(&url, false).map_err(|reason| ValueError::Origin { text: text.to_owned(), reason })?;
        let path = url.path().trim_end_matches('/').to_owned();
        Ok(BaseUrl { url, path, origin })
    }
}

/// A login URL whose `[name]` placeholders are filled when a connect session starts: an
/// http(s) URL once they are blanked.
#[derive(Debug, Clone)]
pub struct LoginUrl(());

impl FromField for LoginUrl {
    fn from_field(text: &str) -> Result<Self, ValueError> {
        match Url::parse(&text.replace(['[', ']'], "")) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(LoginUrl(())),
            _ => Err(ValueError::LoginUrl(text.to_owned())),
        }
    }
}

/// A call's method, case-insensitive as written (`post` is `POST`): one of RFC 9110's methods
/// or PATCH. Any other token (`FETCH`, a typo) is refused, so a mistake shows at load instead
/// of as an upstream's 405.
impl FromField for Method {
    fn from_field(text: &str) -> Result<Self, ValueError> {
        const STANDARD: [Method; 9] = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
            Method::TRACE,
            Method::CONNECT,
        ];
        let upper = text.to_ascii_uppercase();
        STANDARD.into_iter().find(|m| m.as_str() == upper).ok_or_else(|| ValueError::Method(text.to_owned()))
    }
}

impl FromField for HeaderName {
    fn from_field(text: &str) -> Result<Self, ValueError> {
        HeaderName::from_bytes(text.as_bytes()).map_err(|_| ValueError::HeaderName(text.to_owned()))
    }
}

/// A fixed header value, sent as it is.
impl FromField for HeaderValue {
    fn from_field(text: &str) -> Result<Self, ValueError> {
        if text.contains(['\r', '\n', '\0']) {
            return Err(ValueError::HeaderBreak);
        }
        HeaderValue::from_str(text).map_err(|_| ValueError::HeaderValue)
    }
}

/// A path or query template: any text; `<name>` are placeholders.
impl FromField for Text {
    fn from_field(text: &str) -> Result<Self, ValueError> {
        Ok(Text::parse(text))
    }
}

/// A header value template: its literal text cannot break the header (values are checked
/// again once rendered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderText(pub Text);

impl Deref for HeaderText {
    type Target = Text;
    fn deref(&self) -> &Text {
        &self.0
    }
}

impl FromField for HeaderText {
    fn from_field(text: &str) -> Result<Self, ValueError> {
        if text.contains(['\r', '\n', '\0']) {
            return Err(ValueError::HeaderBreak);
        }
        Ok(HeaderText(Text::parse(text)))
    }
}

/// A JSON body template as written (a string of JSON text, or a table meaning the same JSON)
/// and parsed.
#[derive(Clone)]
pub struct BodyTemplate {
    source: serde_json::Value,
    body: Body,
}

impl BodyTemplate {
    pub fn parse(source: serde_json::Value) -> Result<Self, ValueError> {
        let body = match &source {
            serde_json::Value::String(text) => {
                Body::new(serde_json::from_str(text).map_err(|e| ValueError::BodyJson(e.to_string()))?)
            }
            other => Body::new(other.clone()),
        };
        Ok(BodyTemplate { source, body })
    }

    /// The value as written.
    pub fn source(&self) -> &serde_json::Value {
        &self.source
    }

    pub fn body(&self) -> &Body {
        &self.body
    }
}

impl fmt::Debug for BodyTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.source, f)
    }
}

impl PartialEq for BodyTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Serialize for BodyTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.source.serialize(s)
    }
}

impl<'de> Deserialize<'de> for BodyTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        BodyTemplate::parse(serde_json::Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A table of headers: names and values parsed, ordered as the names were written.
pub type HeaderTable<V> = std::collections::BTreeMap<Parsed<HeaderName>, Parsed<V>>;
