//! The browser flow's decisions that need neither store nor network: the links and redirects
//! it builds, the cookie binding a `state` to a browser, and the checks a
//! connect session and a callback pass before anything single-use is spent.

use std::collections::HashMap;

use latchkey_vault::sha256;
use url::Url;

use super::FlowError;
use crate::config::RedirectMode;
use crate::store::FlowRow;

/// `base` with `key=value` pairs added to its query (`base` as it is when it is no URL).
pub(super) fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    match url::Url::parse(base) {
        Ok(mut u) => {
            {
                let mut q = u.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
            }
            u.into()
        }
        Err(_) => base.to_owned(),
    }
}

/// A failed step; the browser goes back to `return_to` with `status=error&error=<code>`
/// when one is known, else it gets an error page.
pub(super) fn flow_error(code: &'static str, message: impl Into<String>, return_to: Option<&str>) -> FlowError {
    FlowError {
        code,
        message: message.into(),
        redirect: return_to.map(|r| with_query(r, &[("status", "error"), ("error", code)])),
    }
}

/// The cookie that binds a `state` to the browser that started the flow; one per flow, so
/// parallel flows in one browser do not overwrite each other.
pub(super) fn flow_cookie_name(state: &str) -> String {
    let h = sha256(state.as_bytes());
    format!("lkflow_{}", latchkey_vault::to_hex(&h[..6]))
}

/// Where the provider sends the browser back: one callback for every connector, or one per
/// connector (`redirect = "per_connector"`).
pub(super) fn redirect_uri(public_url: &str, connector: &str, mode: RedirectMode) -> String {
    match mode {
        RedirectMode::Generic => format!("{public_url}/oauth/callback"),
        RedirectMode::PerConnector => format!("{public_url}/oauth/{connector}/callback"),
    }
}

/// The single-use link a connect session answers.
pub(super) fn start_link(public_url: &str, connector: &str, handle: &str) -> String {
    format!("{public_url}/oauth/{connector}/start?session={handle}")
}

/// Whether `return_to` matches an entry of `[server] return_to_allow`: same scheme, host
/// and port, and a path under the entry's path; never with credentials or a fragment.
pub(super) fn return_to_allowed<'a>(allow: impl IntoIterator<Item = &'a Url>, return_to: &str) -> bool {
    let Ok(u) = Url::parse(return_to) else { return false };
    if !u.username().is_empty() || u.password().is_some() || u.fragment().is_some() {
        return false;
    }
    allow.into_iter().any(|e| {
        let under = if e.path().ends_with('/') {
            u.path().starts_with(e.path())
        } else {
            u.path() == e.path() || u.path().starts_with(&format!("{}/", e.path()))
        };
        u.scheme() == e.scheme()
            && u.host() == e.host()
            && u.port_or_known_default() == e.port_or_known_default()
            && under
    })
}

/// Where a reconnect link sends the browser back: where the connection was made from, else
/// the first allowed `return_to`.
pub(super) fn reconnect_return_to<T: ToString>(made_from: Option<&str>, allow: &[T]) -> Option<String> {
    made_from.map(str::to_owned).or_else(|| allow.first().map(ToString::to_string))
}

/// A connect link opened at `/oauth/{connector}/start`: a session of this connector, unused
/// and fresh. Checked before the session is taken, so a refused link is not spent.
pub(super) fn check_session(row: Option<FlowRow>, connector: &str, now: i64) -> Result<FlowRow, FlowError> {
    let invalid = || flow_error("session_invalid", "this connect link is not valid: ask the app for a new one", None);
    let row = match row {
        Some(r) if r.kind == "session" => r,
        _ => return Err(invalid()),
    };
    if row.used_at.is_some() {
        return Err(session_used(&row));
    }
    if row.connector != connector {
        return Err(invalid());
    }
    if now > row.expires_at {
        return Err(flow_error(
            "session_expired",
            "this connect link expired: ask the app for a new one",
            Some(&row.return_to),
        ));
    }
    Ok(row)
}

pub(super) fn session_used(row: &FlowRow) -> FlowError {
    flow_error("session_used", "this connect link was used already: ask the app for a new one", Some(&row.return_to))
}

pub(super) fn state_unknown(return_to: Option<&str>) -> FlowError {
    flow_error("state_invalid", "unknown `state`: start the connection again from the app", return_to)
}

pub(super) fn state_used(row: &FlowRow) -> FlowError {
    flow_error("state_used", "this login was completed already (a replayed callback)", Some(&row.return_to))
}

/// A callback's `state` row: a state, unused, fresh, of the connector whose callback path it
/// came to (if any), and finished in the browser that started it (the cookie named after the
/// state holds the binding whose hash the row keeps). Checked before the state is taken, so a
/// callback without the browser's cookie does not spend the state of the browser that has it.
pub(super) fn check_state(
    row: Option<FlowRow>,
    state: &str,
    path_connector: Option<&str>,
    cookies: &HashMap<String, String>,
    now: i64,
) -> Result<FlowRow, FlowError> {
    let row = match row {
        Some(r) if r.kind == "state" => r,
        _ => return Err(state_unknown(None)),
    };
    if row.used_at.is_some() {
        return Err(state_used(&row));
    }
    let rt = Some(row.return_to.as_str());
    if now > row.expires_at {
        return Err(flow_error("state_expired", "the login took longer than 10 minutes: start again", rt));
    }
    if path_connector.is_some_and(|c| c != row.connector) {
        return Err(flow_error("state_invalid", "this `state` belongs to another connector", rt));
    }
    let bound = cookies
        .get(&flow_cookie_name(state))
        .zip(row.binding.as_ref())
        .is_some_and(|(value, expected)| latchkey_vault::constant_time_eq(&sha256(value.as_bytes()), expected));
    if !bound {
        return Err(flow_error(
            "browser_mismatch",
            "the login finished in another browser than the one that started it",
            rt,
        ));
    }
    Ok(row)
}

/// What the provider's redirect carries: its `error` (passed on to the app as a code of
/// letters, digits and `_`, at most 64), an `iss` equal to the connector's issuer when one is
/// configured (RFC 9207 mix-up defence), and a code.
pub(super) fn check_answer<'q>(
    query: &'q HashMap<String, String>,
    issuer: Option<&str>,
    return_to: &str,
) -> Result<&'q String, FlowError> {
    let rt = Some(return_to);
    if let Some(err) = query.get("error") {
        let code: String = err.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect();
        let redirect = with_query(return_to, &[("status", "error"), ("error", &code)]);
        return Err(FlowError {
            code: "provider_error",
            message: format!("the provider said `{code}`"),
            redirect: Some(redirect),
        });
    }
    if let Some(issuer) = issuer
        && query.get("iss").map(String::as_str) != Some(issuer)
    {
        return Err(flow_error(
            "iss_mismatch",
            "the callback's `iss` is not this connector's issuer (RFC 9207 mix-up defence)",
            rt,
        ));
    }
    query
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or_else(|| flow_error("code_missing", "the callback has no `code`", rt))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::Env;

    fn row(kind: &str) -> FlowRow {
        FlowRow {
            handle_hash: vec![1],
            kind: kind.into(),
            connector: "google".into(),
            env: Env::Live,
            owner: "u1".into(),
            return_to: "https://app.example/done?x=1".into(),
            sealed: None,
            binding: Some(sha256(b"binding").to_vec()),
            created_at: 0,
            expires_at: 1_000,
            used_at: None,
        }
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn redirects_keep_the_apps_query_and_add_the_outcome() {
        assert_eq!(
            with_query("https://app.example/done?x=1", &[("status", "error"), ("error", "a b")]),
            "https://app.example/done?x=1&status=error&error=a+b"
        );
        assert_eq!(with_query("not a url", &[("status", "error")]), "not a url");
        let e = flow_error("state_expired", "late", Some("https://app.example/"));
        assert_eq!(e.redirect.as_deref(), Some("https://app.example/?status=error&error=state_expired"));
        assert_eq!(flow_error("state_missing", "m", None).redirect, None);
    }

    #[test]
    fn links_and_callbacks_are_built_from_the_public_url() {
        let base = "https://lk.example";
        assert_eq!(redirect_uri(base, "gh", RedirectMode::Generic), "https://lk.example/oauth/callback");
        assert_eq!(redirect_uri(base, "gh", RedirectMode::PerConnector), "https://lk.example/oauth/gh/callback");
        assert_eq!(start_link(base, "gh", "h1"), "https://lk.example/oauth/gh/start?session=h1");
    }

    #[test]
    fn flow_cookies_are_per_state() {
        let a = flow_cookie_name("state-a");
        assert!(a.starts_with("lkflow_") && a.len() == "lkflow_".len() + 12, "{a}");
        assert_eq!(a, flow_cookie_name("state-a"));
        assert_ne!(a, flow_cookie_name("state-b"));
    }

    #[test]
    fn return_to_must_be_under_an_allowed_entry() {
        let allow: Vec<Url> =
            ["https://app.example/oauth", "http://localhost:3000/"].iter().map(|u| Url::parse(u).unwrap()).collect();
        for ok in ["https://app.example/oauth", "https://app.example/oauth/done?x=1", "http://localhost:3000/any"] {
            assert!(return_to_allowed(&allow, ok), "{ok}");
        }
        for refused in [
            "https://app.example/oauthx",
            "https://app.example/",
            "http://app.example/oauth",
            "https://app.example:8443/oauth",
            "https://evil.example/oauth",
            "https://user:pw@app.example/oauth",
            "https://app.example/oauth#frag",
            "http://localhost:3001/",
            "not a url",
        ] {
            assert!(!return_to_allowed(&allow, refused), "{refused}");
        }
        assert!(!return_to_allowed(&[], "https://app.example/oauth"));
        let default_port = [Url::parse("https://app.example:443/oauth").unwrap()];
        assert!(return_to_allowed(&default_port, "https://app.example/oauth/x"), "the scheme's port is the same port");
    }

    #[test]
    fn reconnect_links_return_where_the_connection_was_made() {
        let allow = vec!["https://a.example/".to_owned(), "https://b.example/".to_owned()];
        assert_eq!(reconnect_return_to(Some("https://c.example/x"), &allow).as_deref(), Some("https://c.example/x"));
        assert_eq!(reconnect_return_to(None, &allow).as_deref(), Some("https://a.example/"));
        assert_eq!(reconnect_return_to::<String>(None, &[]), None);
    }

    #[test]
    fn a_session_is_checked_before_it_is_spent() {
        assert_eq!(check_session(Some(row("session")), "google", 1_000).unwrap().owner, "u1");
        let code = |r: Option<FlowRow>, c: &str, now| check_session(r, c, now).unwrap_err().code;
        assert_eq!(code(None, "google", 0), "session_invalid");
        assert_eq!(code(Some(row("state")), "google", 0), "session_invalid");
        assert_eq!(code(Some(row("session")), "github", 0), "session_invalid");
        assert_eq!(code(Some(row("session")), "google", 1_001), "session_expired");
        let used = FlowRow { used_at: Some(5), ..row("session") };
        let e = check_session(Some(used), "github", 0).unwrap_err();
        assert_eq!(e.code, "session_used", "a used link says so even at another connector");
        assert_eq!(e.redirect.as_deref(), Some("https://app.example/done?x=1&status=error&error=session_used"));
        // An unknown link has no trustworthy return_to: an error page, not a redirect.
        assert_eq!(check_session(None, "google", 0).unwrap_err().redirect, None);
    }

    #[test]
    fn a_callback_state_is_checked_before_it_is_spent() {
        let cookies = query(&[(&flow_cookie_name("s1"), "binding")]);
        assert!(check_state(Some(row("state")), "s1", None, &cookies, 1_000).is_ok());
        assert!(check_state(Some(row("state")), "s1", Some("google"), &cookies, 0).is_ok());
        let code = |r: Option<FlowRow>, path: Option<&str>, cookies: &HashMap<String, String>, now| {
            check_state(r, "s1", path, cookies, now).unwrap_err().code
        };
        assert_eq!(code(None, None, &cookies, 0), "state_invalid");
        assert_eq!(code(Some(row("session")), None, &cookies, 0), "state_invalid");
        assert_eq!(code(Some(FlowRow { used_at: Some(1), ..row("state") }), None, &cookies, 0), "state_used");
        assert_eq!(code(Some(row("state")), None, &cookies, 1_001), "state_expired");
        assert_eq!(code(Some(row("state")), Some("github"), &cookies, 0), "state_invalid");
        assert_eq!(code(Some(row("state")), None, &HashMap::new(), 0), "browser_mismatch");
        let wrong = query(&[(&flow_cookie_name("s1"), "other")]);
        assert_eq!(code(Some(row("state")), None, &wrong, 0), "browser_mismatch");
        let other_flow = query(&[(&flow_cookie_name("s2"), "binding")]);
        assert_eq!(code(Some(row("state")), None, &other_flow, 0), "browser_mismatch");
        assert_eq!(code(Some(FlowRow { binding: None, ..row("state") }), None, &cookies, 0), "browser_mismatch");
        assert_eq!(check_state(None, "s1", None, &cookies, 0).unwrap_err().redirect, None);
    }

    #[test]
    fn the_providers_answer_needs_a_code_and_the_right_issuer() {
        let rt = "https://app.example/";
        assert_eq!(check_answer(&query(&[("code", "c1")]), None, rt).unwrap(), "c1");
        assert_eq!(check_answer(&query(&[("code", "")]), None, rt).unwrap_err().code, "code_missing");
        let iss = Some("https://idp.example");
        assert_eq!(check_answer(&query(&[("code", "c1")]), iss, rt).unwrap_err().code, "iss_mismatch");
        let mixed_up = query(&[("code", "c1"), ("iss", "https://other.example")]);
        assert_eq!(check_answer(&mixed_up, iss, rt).unwrap_err().code, "iss_mismatch");
        let right = query(&[("code", "c1"), ("iss", "https://idp.example")]);
        assert_eq!(check_answer(&right, iss, rt).unwrap(), "c1");
        // The provider's error goes back to the app as a code of safe characters only.
        let e = check_answer(&query(&[("error", "access_denied<script>"), ("code", "c1")]), iss, rt).unwrap_err();
        assert_eq!(e.code, "provider_error");
        assert_eq!(e.message, "the provider said `access_deniedscript`");
        assert_eq!(e.redirect.as_deref(), Some("https://app.example/?status=error&error=access_deniedscript"));
    }
}
