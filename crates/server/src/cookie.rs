//! The cookies Latchkey's own pages set (the console, the connect page, the MCP authorization
//! pages): always `HttpOnly`, `Secure` when `public_url` is HTTPS, each on its own path.

use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};

use crate::AppState;

/// The `SameSite` attribute a cookie is set with.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SameSite {
    /// Sent only with requests from Latchkey's own pages (the console).
    Strict,
    /// Also sent on a top-level navigation from elsewhere: needed where a provider's or an app's
    /// redirect brings the browser back (docs/decisions.md).
    Lax,
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub(crate) fn value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether cookies are marked `Secure`: when Latchkey is reached over HTTPS.
pub(crate) fn secure(state: &AppState) -> bool {
    state.engine.public_url().starts_with("https://")
}

/// A `Set-Cookie` value (`max_age_s` 0 clears the cookie); `None` if `value` cannot be a
/// header value (it never is anything but base64url text here).
pub(crate) fn set(
    name: &str,
    value: &str,
    path: &str,
    same_site: SameSite,
    max_age_s: i64,
    secure: bool,
) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; HttpOnly; SameSite={same_site:?}; Max-Age={max_age_s}{secure}"
    ))
    .ok()
}

/// `response` with the cookie set, if there is one.
pub(crate) fn with(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookies_say_every_attribute_and_read_back() {
        let c = set("lk_x", "abc", "/console", SameSite::Strict, 60, true).unwrap();
        assert_eq!(c, "lk_x=abc; Path=/console; HttpOnly; SameSite=Strict; Max-Age=60; Secure");
        let c = set("lk_y", "", "/connect", SameSite::Lax, 0, false).unwrap();
        assert_eq!(c, "lk_y=; Path=/connect; HttpOnly; SameSite=Lax; Max-Age=0");
        assert!(set("lk_z", "a\nb", "/", SameSite::Lax, 1, false).is_none());
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; lk_x=abc"));
        headers.append(header::COOKIE, HeaderValue::from_static("lk_y=2"));
        assert_eq!(value(&headers, "lk_x"), Some("abc"));
        assert_eq!(value(&headers, "lk_y"), Some("2"));
        assert_eq!(value(&headers, "lk"), None);
    }
}
