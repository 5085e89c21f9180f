//! Hostile parameters and paths: nothing a caller sends can change the upstream's origin,
//! climb above the base path, break out of a JSON string or smuggle a header.

use latchkey_testkit::recorder::Recorder;
use serde_json::{Value, json};

use super::*;

const CALLS: &str = r#"
[connectors.up.calls.get]
path = "/items/<id>"
headers = { "X-Tag" = "<tag>" }
query = { q = "<q>" }
[connectors.up.calls.get.params]
id = { required = true }
tag = {}
q = {}
tenant = { private = true, value = "acme" }
[connectors.up.calls.post]
method = "POST"
path = "/notes"
body = '{"text": "<text>", "owner": "fixed", "tenant": "<tenant>"}'
[connectors.up.calls.post.params]
text = { required = true }
tenant = { private = true, value = "acme" }
"#;

async fn setup() -> (Recorder, Latchkey, String) {
    let up = Recorder::start().await;
    let lk = with_connector(&format!("{}/base", up.base_url), r#"{ method = "none" }"#, CALLS);
    let app = lk.app_key("live").await;
    (up, lk, app)
}

#[tokio::test]
async fn hostile_path_parameters_are_refused_before_anything_is_sent() {
    let (up, lk, app) = setup().await;
    for bad in [
        "../admin",
        "..",
        ".",
        "%2F",
        "a%2fb",
        "%2e%2e",
        "//evil.example",
        "a/b",
        "a\\b",
        "x\r\nHost: evil",
        "nul\0",
        "",
    ] {
        let r = lk.call(&app, "up", "get", json!({"id": bad})).await;
        assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{bad:?}: {}", r.body);
    }
    assert_eq!(up.count(), 0, "a hostile request reached the upstream");
}

#[tokio::test]
async fn characters_that_could_name_a_host_stay_inside_their_segment() {
    let (up, lk, app) = setup().await;
    for (value, encoded) in
        [("@evil.example", "@evil.example"), ("a?b#c", "a%3Fb%23c"), ("x:y@z", "x:y@z"), ("sp ace", "sp%20ace")]
    {
        let r = lk.call(&app, "up", "get", json!({"id": value})).await;
        assert_eq!(r.status, 200, "{value}: {}", r.body);
        let rec = up.last();
        assert_eq!(rec.uri, format!("/base/items/{encoded}"), "{value}");
        assert_eq!(rec.header("host"), Some(up.base_url.trim_start_matches("http://")));
    }
}

#[tokio::test]
async fn header_and_query_values_cannot_smuggle_lines() {
    let (up, lk, app) = setup().await;
    let r = lk.call(&app, "up", "get", json!({"id": "1", "tag": "a\r\nX-Injected: 1"})).await;
    assert_eq!(r.error_code(), Some("invalid_params"), "{}", r.body);
    let r = lk.call(&app, "up", "get", json!({"id": "1", "q": "a\nb"})).await;
    assert_eq!(r.error_code(), Some("invalid_params"), "{}", r.body);
    assert_eq!(up.count(), 0);
    // A query value with `&` and `=` stays one value.
    let r = lk.call(&app, "up", "get", json!({"id": "1", "q": "a&admin=true#x"})).await;
    assert_eq!(r.status, 200);
    assert_eq!(up.last().uri, "/base/items/1?q=a%26admin%3Dtrue%23x");
}

#[tokio::test]
async fn unknown_private_and_missing_parameters_are_invalid_params() {
    let (up, lk, app) = setup().await;
    let r = lk.call(&app, "up", "get", json!({"id": "1", "tenant": "evil"})).await;
    assert_eq!(r.error_code(), Some("invalid_params"));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("`tenant` is private"), "{}", r.body);
    let r = lk.call(&app, "up", "get", json!({"id": "1", "bogus": 1})).await;
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown parameter `bogus`; this call takes: id, q, tag"),
        "{}",
        r.body
    );
    let r = lk.call(&app, "up", "get", json!({})).await;
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("missing required parameter(s): id"), "{}", r.body);
    let r = lk.call(&app, "up", "get", json!(["not", "an", "object"])).await;
    assert_eq!(r.error_code(), Some("invalid_params"));
    let r = lk.call(&app, "up", "nope", json!({})).await;
    assert_eq!((r.status, r.error_code()), (404, Some("not_found")));
    assert!(r.body.contains("its calls: get, post"), "{}", r.body);
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn json_body_injection_stays_inside_its_string() {
    let (up, lk, app) = setup().await;
    let evil = "\", \"owner\": \"attacker\", \"tenant\": \"evil";
    let r = lk.call(&app, "up", "post", json!({"text": evil})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let sent: Value = serde_json::from_slice(&up.last().body).unwrap();
    assert_eq!(sent, json!({"text": evil, "owner": "fixed", "tenant": "acme"}));
}

#[tokio::test]
async fn hostile_proxy_paths_are_refused() {
    let (up, lk, app) = setup().await;
    for target in [
        "/v1/proxy/up/../../v1/admin/keys",
        "/v1/proxy/up/a/../../x",
        "/v1/proxy/up/%2e%2e/x",
        "/v1/proxy/up/.%2E/x",
        "/v1/proxy/up/a%2Fb",
        "/v1/proxy/up/a%5cb",
        "/v1/proxy/up//evil.example/x",
        "/v1/proxy/up/x%00y",
        "/v1/proxy/up/x%0d%0aHost:%20evil",
    ] {
        let (status, text) = raw::request(&lk.base_url, "GET", target, &app).await;
        assert!(
            status == 400 && text.to_ascii_lowercase().contains("latchkey-error: invalid_params") || status == 404,
            "{target}: {text}"
        );
    }
    assert_eq!(up.count(), 0, "a hostile path reached the upstream: {:?}", up.requests());
    // An absolute-form request target cannot pick another host either.
    let (status, _) = raw::request(&lk.base_url, "GET", "http://evil.example/v1/proxy/up/x", &app).await;
    assert_eq!(status, 200);
    let rec = up.last();
    assert_eq!(rec.uri, "/base/x");
    assert_eq!(rec.header("host"), Some(up.base_url.trim_start_matches("http://")));
}

#[tokio::test]
async fn duplicate_authorization_headers_are_refused() {
    let (up, lk, app) = setup().await;
    let addr = lk.base_url.trim_start_matches("http://").to_owned();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let req = format!(
        "GET /v1/proxy/up/x HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {app}\r\nAuthorization: Bearer other\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.to_ascii_lowercase().contains("latchkey-error: invalid_params"), "{text}");
    assert_eq!(up.count(), 0);
}

/// SECURITY S14: a request with both `Content-Length` and `Transfer-Encoding` is how requests
/// are smuggled (RFC 9112 §6.1): one reader frames the body by one header, the next by the
/// other. hyper does what RFC 9112 §6.3 requires: `Transfer-Encoding` wins, `Content-Length`
/// is dropped, and the connection is closed after the response. The checklist asks for a 400
/// instead; hyper does not say the two were there, so this tests what matters: the body is
/// framed one way, a request hidden after it by the other framing is never run, the
/// connection closes, and upstream the body goes with framing of Latchkey's own.
#[tokio::test]
async fn a_request_smuggled_behind_conflicting_lengths_is_never_run() {
    let (up, lk, app) = setup().await;
    let addr = lk.base_url.trim_start_matches("http://").to_owned();
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // By Content-Length (4) the body is `2\r\n{` and a request starts at `}`; by chunked
    // framing the body is `{}` and what follows the last chunk is a second request.
    let hidden = format!("GET /v1/proxy/up/smuggled HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {app}\r\n\r\n");
    let req = format!(
        "POST /v1/proxy/up/x HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {app}\r\n\
         Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{{}}\r\n0\r\n\r\n{hidden}"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the connection stayed open after a request with conflicting lengths");
    let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    assert_eq!(text.matches("http/1.1 ").count(), 1, "a second response came back: {text}");
    let seen = up.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].body, b"{}", "the body was framed by Content-Length");
    assert!(!seen.iter().any(|r| r.uri.contains("smuggled")), "the hidden request was run");
}

/// A named call's body must be JSON, sent as JSON: anything else is `400 invalid_params` with
/// what was wrong, and nothing goes upstream.
#[tokio::test]
async fn a_named_call_body_that_is_not_json_is_refused() {
    let (up, lk, app) = setup().await;
    let url = lk.url("/v1/connectors/up/calls/post");
    let send = |content_type: Option<&'static str>, body: &'static str| {
        let mut r = lk.http.post(&url).bearer_auth(&app).body(body);
        if let Some(t) = content_type {
            r = r.header("content-type", t);
        }
        async move { Reply::read(r.send().await.unwrap()).await }
    };
    let r = send(None, r#"{"params": {"text": "x"}}"#).await;
    assert_eq!((r.status, r.error_code()), (400, Some("invalid_params")), "{}", r.body);
    assert!(r.body.contains("Content-Type: application/json"), "{}", r.body);
    let r = send(Some("text/plain"), r#"{"params": {"text": "x"}}"#).await;
    assert_eq!(r.error_code(), Some("invalid_params"), "{}", r.body);
    let r = send(Some("application/json"), r#"{"params": "#).await;
    assert_eq!(r.error_code(), Some("invalid_params"), "{}", r.body);
    assert!(r.body.contains("Failed to parse the request body as JSON"), "{}", r.body);
    let r = send(Some("application/json"), r#"{"params": {}, "extra": 1}"#).await;
    assert!(r.body.contains("unknown field `extra`"), "{}", r.body);
    assert_eq!(up.count(), 0, "a refused call went upstream");
    let r = send(Some("application/json; charset=utf-8"), r#"{"params": {"text": "x"}}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.count(), 1);
}
