//! The phases alone: building a named call and a proxied request, the parameters, the origin
//! check and signing, on connectors compiled from a configuration, without a network.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use secrecy::SecretString;
use serde_json::json;

use super::build::{self, Outgoing};
use super::{OutBody, sign};
use crate::auth::ClientPool;
use crate::config::Config;
use crate::engine::runtime::{ConnectorRuntime, Runtime};
use crate::secrets::SecretSet;
use crate::{CallError, Env, ErrorCode};

const CONFIG: &str = r#"
[connectors.api]
base_url = "https://api.example.com:8443/v2/"
headers = { "X-Fixed" = "f", "Content-Type" = "text/plain" }
query = { fixed = "1" }
auth = { method = "api_key_header", name = "X-Key", prefix = "Key", key = { secret = "k" } }

[connectors.api.calls.get_item]
method = "get"
path = "/items/<id>"
query = { q = "<q>", empty = "<absent>" }
headers = { "X-Trace" = "<trace>" }
params = { id = { required = true }, q = { default = "a b" }, trace = {}, absent = {}, tenant = { private = true, value = "t1" } }

[connectors.api.calls.create]
method = "POST"
path = "/items"
body = { name = "<name>", tenant = "<tenant>" }
params = { name = { required = true }, tenant = { private = true, value = "t1" } }

[connectors.api.calls.search]
method = "POST"
path = "/search/<page>"
query = { sort = "<sort>" }
body = { limit = "<limit>", exact = "<exact>", tags = "<tags>", score = "<score>" }
params.page = { type = "integer", default = 1 }
params.sort = { enum = ["asc", "desc"] }
params.limit = { type = "integer", enum = [10, 50] }
params.exact = { type = "boolean" }
params.tags = { type = "array" }
params.score = { type = "number" }

[connectors.plain]
base_url = "https://plain.example/"
auth = { method = "api_key_query", name = "api_key", key = { secret = "k" } }

[connectors.plain.calls.ping]
path = "/ping"
"#;

fn connectors() -> Runtime {
    let mut secrets = SecretSet::default();
    secrets.set("k", Env::Live, SecretString::from("sekrit"));
    compiled(secrets)
}

fn compiled(secrets: SecretSet) -> Runtime {
    let config = Config::parse(CONFIG, "test.toml").unwrap();
    Runtime::build(&Arc::new(config), Arc::new(Vec::new()), Arc::new(secrets), &ClientPool::default())
}

fn connector(rt: &Runtime, name: &str) -> Arc<ConnectorRuntime> {
    rt.connectors[name].clone()
}

fn named(conn: &ConnectorRuntime, call: &str, params: serde_json::Value) -> Result<Outgoing, CallError> {
    let compiled = &conn.calls[call];
    let values = build::resolve_params(compiled, &params)?;
    build::named(conn, compiled, &values)
}

fn body_bytes(body: &OutBody) -> &[u8] {
    match body {
        OutBody::Bytes(b) => b,
        OutBody::Stream(_) => panic!("a named call's body is in memory"),
    }
}

#[test]
fn a_named_call_renders_path_query_headers_under_the_base_path() {
    let rt = connectors();
    let conn = connector(&rt, "api");
    let out = named(&conn, "get_item", json!({"id": "a b~c", "trace": "t-1"})).unwrap();
    assert_eq!(out.method, Method::GET);
    assert_eq!(out.url.as_str(), "https://api.example.com:8443/v2/items/a%20b~c?fixed=1&q=a+b");
    assert_eq!(out.headers["x-fixed"], "f");
    assert_eq!(out.headers["x-trace"], "t-1");
    let e = named(&conn, "get_item", json!({"id": "a/b"})).unwrap_err();
    assert!(e.message.contains("parameter `id` is one path segment"), "{}", e.message);
    assert!(body_bytes(&out.body).is_empty());
    build::check_origin(&conn, &out.url).unwrap();
}

#[test]
fn a_named_calls_json_body_holds_private_values_and_keeps_a_fixed_content_type() {
    let rt = connectors();
    let conn = connector(&rt, "api");
    let out = named(&conn, "create", json!({"name": "n"})).unwrap();
    assert_eq!(out.method, Method::POST);
    let body: serde_json::Value = serde_json::from_slice(body_bytes(&out.body)).unwrap();
    assert_eq!(body, json!({"name": "n", "tenant": "t1"}));
    assert_eq!(out.headers["content-type"], "text/plain", "the connector's header is not overwritten");

    let plain = connector(&rt, "plain");
    let out = named(&plain, "ping", json!(null)).unwrap();
    assert_eq!(out.url.as_str(), "https://plain.example/ping", "no empty `?`");
    assert_eq!(out.method, Method::GET, "a call without a method is a GET");
}

#[test]
fn a_header_parameter_with_a_line_break_is_refused_and_not_echoed() {
    let rt = connectors();
    let conn = connector(&rt, "api");
    let Err(e) = named(&conn, "get_item", json!({"id": "1", "trace": "a\r\nX-Evil: 1"})) else {
        panic!("a line break went into a header");
    };
    assert_eq!(e.code, ErrorCode::InvalidParams);
    assert!(e.message.contains("parameter `trace`"), "{}", e.message);
    assert!(!e.message.contains("X-Evil"), "{}", e.message);
}

#[test]
fn parameters_say_what_is_wrong_and_what_the_call_takes() {
    let rt = connectors();
    let conn = connector(&rt, "api");
    let call = &conn.calls["get_item"];
    let problem = |params| build::resolve_params(call, &params).unwrap_err().message;
    assert!(problem(json!({"tenant": "t2", "id": "1"})).contains("parameter `tenant` is private"));
    let unknown = problem(json!({"id": "1", "nope": 1}));
    assert!(unknown.contains("unknown parameter `nope`"), "{unknown}");
    assert!(unknown.contains("id") && !unknown.contains("tenant"), "private parameters are not listed: {unknown}");
    assert!(problem(json!({})).contains("missing required parameter(s): id"));
    assert!(problem(json!({"id": "a\0b"})).contains("contains NUL"));
    assert!(problem(json!(["id"])).contains("must be a JSON object"));
    let values = build::resolve_params(call, &json!({"id": 7})).unwrap();
    assert_eq!(values.get("q"), Some(&json!("a b")), "the default");
    assert_eq!(values.get("tenant"), Some(&json!("t1")), "the private value");
    assert!(!values.contains_key("absent"));
}

fn proxied(
    conn: &ConnectorRuntime,
    path: &str,
    query: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<Outgoing, CallError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    let owned = conn.credential(Env::Live)?.credential.owned_header().cloned();
    build::proxied(conn, Method::PUT, path, query, map, OutBody::Bytes(bytes::Bytes::new()), owned.as_ref())
}

#[test]
fn a_proxied_request_keeps_the_callers_query_with_the_fixed_parameters_winning() {
    let rt = connectors();
    let conn = connector(&rt, "api");
    let out = proxied(&conn, "/things/x", Some("a=%7E&fixed=evil&b"), &[]).unwrap();
    assert_eq!(out.method, Method::PUT);
    assert_eq!(out.url.as_str(), "https://api.example.com:8443/v2/things/x?a=%7E&b&fixed=1");
    let plain = connector(&rt, "plain");
    let out = proxied(&plain, "x", Some("a=%7E"), &[]).unwrap();
    assert_eq!(out.url.as_str(), "https://plain.example/x?a=%7E", "byte for byte");
    for bad in ["a#b", "a\nb", "a=%00"] {
        assert_eq!(proxied(&plain, "/x", Some(bad), &[]).unwrap_err().code, ErrorCode::InvalidParams, "{bad:?}");
    }
    assert_eq!(proxied(&plain, "/a/../../admin", None, &[]).unwrap_err().code, ErrorCode::InvalidParams);
}

#[test]
fn a_proxied_request_drops_what_is_not_the_upstreams_and_sends_fixed_headers_once() {
    let rt = connectors();
    let conn = connector(&rt, "api");
    let out = proxied(
        &conn,
        "/x",
        None,
        &[
            ("authorization", "Bearer lk_callers_key"),
            ("cookie", "session=1"),
            ("host", "evil.example"),
            ("connection", "x-private"),
            ("x-private", "1"),
            ("keep-alive", "5"),
            ("latchkey-user", "u1"),
            ("x-key", "the caller's own"),
            ("x-fixed", "caller"),
            ("accept", "application/json"),
        ],
    )
    .unwrap();
    let mut names: Vec<&str> = out.headers.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["accept", "content-type", "x-fixed"], "{:?}", out.headers);
    assert_eq!(out.headers.get_all("x-fixed").iter().collect::<Vec<_>>(), ["f"]);
}

#[test]
fn the_origin_check_refuses_a_url_off_the_connectors_origin_or_base_path() {
    let rt = connectors();
    let conn = connector(&rt, "api");
    for off in [
        "http://api.example.com:8443/v2/x",
        "https://api.example.com/v2/x",
        "https://evil.example:8443/v2/x",
        "https://api.example.com:8443/v3/x",
        "https://api.example.com:8443/",
        "https://user@api.example.com:8443/v2/x",
        "https://api.example.com.:8443/v2/x",
    ] {
        let e = build::check_origin(&conn, &url::Url::parse(off).unwrap()).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams, "{off}");
    }
    for on in ["https://api.example.com:8443/v2", "https://api.example.com:8443/v2/x?y#z"] {
        build::check_origin(&conn, &url::Url::parse(on).unwrap()).unwrap();
    }
}

fn signed_by_prepared(conn: &ConnectorRuntime, env: Env, mut out: Outgoing) -> Result<Outgoing, CallError> {
    let signer = conn.credential(env)?.credential.prepared_signer().expect("a static credential");
    sign(signer, &crate::clock::SystemClock, &mut out)?;
    Ok(out)
}

#[test]
fn a_prepared_credential_signs_the_built_request_replacing_the_callers() {
    let rt = connectors();
    let conn = connector(&rt, "api");
    let mut out = proxied(&conn, "/x", None, &[]).unwrap();
    out.headers.insert("x-key", HeaderValue::from_static("smuggled"));
    let signed = signed_by_prepared(&conn, Env::Live, out).unwrap();
    assert_eq!(signed.headers.get_all("x-key").iter().collect::<Vec<_>>(), ["Key sekrit"]);

    let plain = connector(&rt, "plain");
    let out = proxied(&plain, "/x", Some("api_key=smuggled&a=1"), &[]).unwrap();
    let signed = signed_by_prepared(&plain, Env::Live, out).unwrap();
    assert_eq!(signed.url.as_str(), "https://plain.example/x?a=1&api_key=sekrit");
}

#[test]
fn a_credential_without_its_secret_says_which_secret_to_set() {
    let mut secrets = SecretSet::default();
    secrets.set("k", Env::Dev, SecretString::from("dev-only"));
    let rt = compiled(secrets);
    let conn = connector(&rt, "api");
    assert!(conn.credential(Env::Dev).is_ok());
    let e = conn.credential(Env::Live).unwrap_err();
    assert_eq!(e.code, ErrorCode::SecretMissing);
    assert!(e.message.contains("secret `k` has no live value"), "{}", e.message);
    assert!(!e.message.contains("dev-only"), "{}", e.message);
}

/// A typed parameter takes a value of its type, or text that reads as one (`-p page=2`),
/// which becomes that type (so a JSON body gets a number); anything else, or a value outside
/// `enum`, is `invalid_params` naming the parameter and what it takes, never the value.
#[test]
fn typed_parameters_are_checked_and_text_that_reads_as_the_type_is_taken() {
    let rt = connectors();
    let conn = connector(&rt, "api");
    let out = named(
        &conn,
        "search",
        json!({"page": "2", "sort": "asc", "limit": "50", "exact": "true", "tags": ["a"], "score": "1.5"}),
    )
    .unwrap();
    assert_eq!(out.url.as_str(), "https://api.example.com:8443/v2/search/2?fixed=1&sort=asc");
    let OutBody::Bytes(body) = &out.body else { panic!("a body in memory") };
    let body: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(body, json!({"limit": 50, "exact": true, "tags": ["a"], "score": 1.5}));
    let call = &conn.calls["search"];
    let problem = |params| build::resolve_params(call, &params).unwrap_err();
    for (params, want) in [
        (json!({"page": "two"}), "parameter `page` must be an integer (got text that is not one)"),
        (json!({"page": 1.5}), "parameter `page` must be an integer (got a number)"),
        (json!({"exact": "yes"}), "parameter `exact` must be a boolean (true or false)"),
        (json!({"tags": "a,b"}), "parameter `tags` must be an array (a list) (got text that is not one)"),
        (json!({"score": null}), "parameter `score` must be a number (got null)"),
        (json!({"sort": "up-secret-canary"}), "parameter `sort` must be one of: \"asc\", \"desc\""),
        (json!({"limit": 20}), "parameter `limit` must be one of: 10, 50"),
    ] {
        let e = problem(params.clone());
        assert_eq!(e.code, ErrorCode::InvalidParams, "{params}");
        assert!(e.message.starts_with(want), "{params}: {}", e.message);
        assert!(!e.message.contains("canary"), "the value is not echoed: {}", e.message);
    }
    // Untyped parameters take any value, as before.
    let get = &conn.calls["get_item"];
    assert_eq!(build::resolve_params(get, &json!({"id": [1]})).unwrap()["id"], json!([1]));
    // 5.0 is an integer; an integer is a number.
    let values = build::resolve_params(call, &json!({"page": 5.0, "score": 3})).unwrap();
    assert_eq!((&values["page"], &values["score"]), (&json!(5.0), &json!(3)));
}
