//! The exact HTTP request built from a `TokenRequest`, and the secrets scrubbed from what a
//! provider says back. The grants' own requests are checked in `auth/grant/tests.rs`.

use http::HeaderValue;

use super::*;
use crate::token::TokenErrorKind;

fn request(body: TokenRequestBody, basic: Option<(&str, &str)>, secrets: &[&str]) -> TokenRequest {
    TokenRequest {
        url: "https://x.example/token".into(),
        headers: Vec::new(),
        basic_auth: basic.map(|(id, s)| (id.to_owned(), ClientSecret::from(s.to_owned()))),
        body,
        shape: TokenResponseShape::default(),
        is_refresh: false,
        secrets: secrets.iter().map(|s| SecretString::from(*s)).collect(),
    }
}

fn form(pairs: &[(&str, &str)]) -> TokenRequestBody {
    TokenRequestBody::Form(pairs.iter().map(|(k, v)| ((*k).to_owned(), SecretString::from(*v))).collect())
}

/// Every header, in order, as `name: value` text.
pub(crate) fn header_lines(req: &http::Request<WireBody>) -> Vec<String> {
    req.headers().iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("<not text>"))).collect()
}

pub(crate) fn body_text(req: &http::Request<WireBody>) -> &str {
    std::str::from_utf8(req.body().as_bytes()).expect("a token request body is text")
}

#[test]
fn a_form_request_is_a_post_with_accept_basic_and_content_type_in_that_order() {
    // RFC 6749 §4.4.2's example client.
    let req = request(form(&[("grant_type", "client_credentials")]), Some(("s6BhdRkqt3", "gX1fBat3bV")), &[]);
    let built = build(&req).unwrap();
    assert_eq!(built.method(), http::Method::POST);
    assert_eq!(built.uri(), "https://x.example/token");
    assert_eq!(
        header_lines(&built),
        [
            "accept: application/json",
            "authorization: Basic czZCaGRSa3F0MzpnWDFmQmF0M2JW",
            "content-type: application/x-www-form-urlencoded",
        ]
    );
    assert_eq!(built.body().as_bytes(), b"grant_type=client_credentials");
}

#[test]
fn basic_credentials_are_form_encoded_before_base64_rfc_6749_2_3_1() {
    // "my+app%3A1:p%40ss+w%2Frd%2B%26%3D%25%C3%A9" in Base64: a `:` in the id cannot split the
    // pair, and a `+` in the secret is not read back as a space.
    let req = request(form(&[("grant_type", "client_credentials")]), Some(("my app:1", "p@ss w/rd+&=%é")), &[]);
    let built = build(&req).unwrap();
    let auth = &built.headers()[http::header::AUTHORIZATION];
    assert_eq!(auth, "Basic bXkrYXBwJTNBMTpwJTQwc3MrdyUyRnJkJTJCJTI2JTNEJTI1JUMzJUE5");
    assert!(auth.is_sensitive(), "HTTP libraries must keep it out of their logs");
}

#[test]
fn form_values_are_form_encoded_in_the_order_given() {
    let req = request(
        form(&[
            ("grant_type", "password"),
            ("username", "ada@x.example"),
            ("password", "a b&c=d+é/*~"),
            ("scope", "read write"),
        ]),
        None,
        &[],
    );
    assert_eq!(
        body_text(&build(&req).unwrap()),
        "grant_type=password&username=ada%40x.example&password=a+b%26c%3Dd%2B%C3%A9%2F*%7E&scope=read+write"
    );
}

#[test]
fn a_json_request_sends_its_headers_between_accept_and_content_type_and_its_body_as_is() {
    let mut req = request(TokenRequestBody::Json(SecretString::from(r#"{"key":"k-1","n":1}"#)), None, &["k-1"]);
    let mut key = HeaderValue::from_static("hdr-secret");
    key.set_sensitive(true);
    req.headers = vec![
        (HeaderName::from_static("x-api-key"), key),
        (HeaderName::from_static("x-tenant"), HeaderValue::from_static("t1")),
    ];
    let built = build(&req).unwrap();
    assert_eq!(
        header_lines(&built),
        ["accept: application/json", "x-api-key: hdr-secret", "x-tenant: t1", "content-type: application/json"]
    );
    assert!(built.headers()["x-api-key"].is_sensitive());
    assert_eq!(built.body().as_bytes(), br#"{"key":"k-1","n":1}"#);
}

#[test]
fn a_configured_accept_or_content_type_is_sent_besides_latchkeys_own() {
    // As reqwest's `header()` did: appended, never replacing.
    let mut req = request(TokenRequestBody::Json(SecretString::from("{}")), None, &[]);
    req.headers = vec![
        (http::header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.x+json")),
        (http::header::ACCEPT, HeaderValue::from_static("*/*")),
    ];
    assert_eq!(
        header_lines(&build(&req).unwrap()),
        [
            "accept: application/json",
            "accept: */*",
            "content-type: application/vnd.x+json",
            "content-type: application/json"
        ]
    );
}

#[test]
fn the_url_is_read_as_reqwest_reads_it() {
    let mut req = request(form(&[("grant_type", "client_credentials")]), None, &[]);
    req.url = "HTTPS://Login.Example:443/a/../oauth2/token?tenant=t 1".into();
    assert_eq!(build(&req).unwrap().uri(), "https://login.example/oauth2/token?tenant=t%201");
}

#[test]
fn a_url_that_is_none_sends_nothing_and_is_unreachable_not_ambiguous() {
    let mut req = request(form(&[("grant_type", "client_credentials")]), None, &[]);
    req.url = "/token".into();
    let e = build(&req).unwrap_err();
    assert_eq!(e.kind, TokenErrorKind::Unreachable { timed_out: false });
    assert!(!e.is_ambiguous() && !e.is_terminal());
    assert_eq!(e.summary(), "unreachable: could not reach the token endpoint (relative URL without a base)");
}

#[test]
fn what_reqwest_sends_is_what_was_built() {
    let req = request(form(&[("grant_type", "refresh_token"), ("refresh_token", "rt-1")]), Some(("app", "s")), &[]);
    let built = build(&req).unwrap();
    let (lines, body) = (header_lines(&built), built.body().as_bytes().to_vec());
    let sent = reqwest::Request::try_from(built).unwrap();
    assert_eq!(sent.method(), reqwest::Method::POST);
    assert_eq!(sent.url().as_str(), "https://x.example/token");
    let sent_lines: Vec<String> =
        sent.headers().iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or_default())).collect();
    assert_eq!(sent_lines, lines);
    assert_eq!(sent.body().and_then(reqwest::Body::as_bytes), Some(body.as_slice()));
}

#[test]
fn a_body_never_prints() {
    let built = build(&request(form(&[("password", "hunter2")]), Some(("app", "client-secret-1")), &[])).unwrap();
    let shown = format!("{built:?}");
    assert!(!shown.contains("hunter2") && !shown.contains("client-secret-1"), "{shown}");
    assert!(shown.contains("WireBody(16 bytes, [REDACTED])"), "{shown}");
    assert!(!shown.contains("YXBwOmNsaWVudC1zZWNyZXQtMQ"), "the Basic pair is a sensitive header: {shown}");
}

#[test]
fn a_providers_echo_of_a_sent_secret_is_scrubbed() {
    let req = request(
        form(&[("grant_type", "password"), ("username", "ada"), ("password", "hunter2 pass&word")]),
        Some(("app", "client-secret-1")),
        &[],
    );
    let s = req.scrubber();
    let out = s.text("bad password hunter2+pass%26word for client client-secret-1 (user ada)");
    assert_eq!(out.as_deref(), Some("bad password [REDACTED] for client [REDACTED] (user ada)"));
    assert!(!format!("{req:?}").contains("hunter2"));
}

#[test]
fn every_form_value_but_the_public_ones_is_a_secret() {
    // A field Latchkey does not know is scrubbed; the grant type and the client id are not.
    let req =
        request(form(&[("grant_type", "urn:x"), ("client_id", "my-app"), ("subject_token", "subj-tok-1")]), None, &[]);
    assert_eq!(req.scrubber().text("my-app urn:x subj-tok-1").as_deref(), Some("my-app urn:x [REDACTED]"));
}

#[test]
fn a_custom_requests_listed_secrets_are_scrubbed_json_escaped_too() {
    let req = request(
        TokenRequestBody::Json(SecretString::from(r#"{"k":"a\"b\\c-key"}"#)),
        None,
        &["a\"b\\c-key", "hdr-secret"],
    );
    let out = req.scrubber().text(r#"body {"k":"a\"b\\c-key"} header X-Key: hdr-secret"#);
    assert_eq!(out.as_deref(), Some("body {'k':'[REDACTED]'} header X-Key: [REDACTED]"));
}

#[test]
fn the_url_reqwest_sends_is_the_configured_one_read_as_a_url_even_with_unusual_characters() {
    for url in ["https://x.example/t?a=^|{}&b=`", "https://x.example/p|a^t/h?", "https://[::1]:8443/token#frag"] {
        let mut req = request(form(&[("grant_type", "client_credentials")]), None, &[]);
        req.url = url.into();
        let sent = reqwest::Request::try_from(build(&req).unwrap()).unwrap();
        let mut expected = url::Url::parse(url).unwrap();
        expected.set_fragment(None); // never sent
        assert_eq!(sent.url(), &expected, "{url}");
    }
}
