//! Values parsed at load (URLs, methods, headers, templates), the method table, and the
//! serialized form: each bad value is a problem naming its connector and field and what to do.

use http::{HeaderName, HeaderValue, Method};
use serde_json::json;

use super::*;

const ALL_METHODS: &str = include_str!("testdata/all_methods.toml");
/// What the store holds and the admin API serves for `ALL_METHODS`, as written by the version
/// before values were parsed at load: the serialized form must not change.
const ALL_METHODS_SERVED: &str = include_str!("testdata/all_methods.served");

fn problems(text: &str) -> Vec<Problem> {
    match Config::parse(text, "latchkey.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0,
    }
}

/// The one problem of `text`, which must be at `field` of connector `a`.
fn problem_at(text: &str, field: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].file, "latchkey.toml");
    assert_eq!(p[0].connector.as_deref(), Some("a"), "{p:#?}");
    assert_eq!(p[0].field.as_deref(), Some(field), "{p:#?}");
    p[0].message.clone()
}

fn connector(rest: &str) -> String {
    format!("[connectors.a]\nbase_url = \"https://x.example\"\nauth = {{ method = \"none\" }}\n{rest}")
}

fn call(rest: &str) -> String {
    connector(&format!("[connectors.a.calls.c]\n{rest}"))
}

fn served(c: &Config) -> String {
    c.connectors.iter().map(|(name, conn)| format!("{name}\t{}\n", serde_json::to_string(conn).unwrap())).collect()
}

#[test]
fn a_bad_header_name_names_the_connector_and_the_header() {
    let m = problem_at(&connector("headers = { \"Bad Header\" = \"1\" }"), "headers.Bad Header");
    assert!(m.contains("`Bad Header` is not a valid header name") && m.contains("use letters, digits and `-`"), "{m}");
}

#[test]
fn a_header_value_with_a_line_break_is_refused_not_skipped() {
    let m = problem_at(&connector("headers = { \"X-Env\" = \"a\\r\\nX-Evil: 1\" }"), "headers.X-Env");
    assert!(m.contains("cannot contain line breaks") && m.contains("on one line"), "{m}");
}

/// It used to pass the checks and then be dropped silently when the runtime built its headers.
#[test]
fn a_header_value_that_cannot_be_sent_is_refused_not_skipped() {
    let m = problem_at(&connector("headers = { \"X-Team\" = \"a\\u0001b\" }"), "headers.X-Team");
    assert!(m.contains("is not a valid header value") && m.contains("control characters"), "{m}");
    Config::parse(&connector("headers = { \"X-Team\" = \"caf\u{e9}\\tB\" }"), "f").unwrap();
}

#[test]
fn call_headers_are_checked_by_name_and_value() {
    let m = problem_at(
        &call("headers = { \"Bad Name\" = \"<id>\" }\nparams = { id = { required = true } }"),
        "calls.c.headers.Bad Name",
    );
    assert!(m.contains("is not a valid header name"), "{m}");
    let m = problem_at(
        &call("headers = { \"X-A\" = \"<id>\\n\" }\nparams = { id = { required = true } }"),
        "calls.c.headers.X-A",
    );
    assert!(m.contains("cannot contain line breaks"), "{m}");
}

#[test]
fn an_invalid_method_names_the_call_and_what_to_write() {
    let m = problem_at(&call("method = \"GE T\""), "calls.c.method");
    assert!(m.contains("`GE T` is not an HTTP method") && m.contains("write GET, POST"), "{m}");
    let m = problem_at(&call("method = \"\""), "calls.c.method");
    assert!(m.contains("is not an HTTP method"), "{m}");
}

#[test]
fn a_method_is_parsed_case_insensitively_and_kept_as_written() {
    let c = Config::parse(&call("method = \"post\""), "f").unwrap();
    let call = &c.connectors["a"].calls["c"];
    assert_eq!(*call.method.value(), Method::POST);
    assert_eq!(serde_json::to_value(call).unwrap()["method"], "post");
    let c = Config::parse(&call_default(), "f").unwrap();
    assert_eq!(*c.connectors["a"].calls["c"].method.value(), Method::GET);
}

fn call_default() -> String {
    call("path = \"/x\"")
}

#[test]
fn a_base_url_that_is_not_a_url_says_what_to_write() {
    let text = "[connectors.a]\nbase_url = \"api.example.com/v1\"\nauth = { method = \"none\" }\n";
    let m = problem_at(text, "base_url");
    assert!(m.contains("`api.example.com/v1` is not a URL") && m.contains("write e.g. `https://"), "{m}");
}

#[test]
fn base_url_rules_are_parse_errors_at_base_url() {
    for (url, expected) in [
        ("ftp://x.example", "scheme `ftp` is not supported"),
        ("https://u:p@x.example", "must not carry credentials"),
        ("https://x.example/v1#top", "must not have a query or fragment"),
        ("https://x.example/?a=1", "must not have a query or fragment"),
    ] {
        let text = format!("[connectors.a]\nbase_url = \"{url}\"\nauth = {{ method = \"none\" }}\n");
        let m = problem_at(&text, "base_url");
        assert!(m.contains(expected), "{url}: {m}");
    }
}

/// A bad value is reported, and the rest of the connector is still checked: one load lists
/// every problem, and the stand-in used meanwhile never makes a configuration.
#[test]
fn a_bad_value_does_not_hide_the_other_problems() {
    let all: Vec<String> = problems(
        r#"
[connectors.a]
base_url = "not a url"
timeout_ms = 0
headers = { "Bad Header" = "1", "Host" = "x", "X-Bad" = "a\nb" }
auth = { method = "oauth2_password", token_url = "::", username = "u", password = { secret = "p" }, client_id = "" }
[connectors.a.calls.c]
method = "GE T"
path = "/u/<id>"
body = '{"a": <b>}'
headers = { "X Y" = "1" }
"#,
    )
    .iter()
    .map(|p| format!("{}: {}", p.field.as_deref().unwrap_or(""), p.message))
    .collect();
    let all = all.join("\n");
    for expected in [
        "base_url: `not a url` is not a URL",
        "timeout_ms: 0 is out of range",
        "headers.Bad Header: `Bad Header` is not a valid header name",
        "headers.Host: `Host` is managed by the HTTP connection",
        "headers.X-Bad: header values cannot contain line breaks",
        "auth.token_url: `::` is not a URL",
        "auth.client_id: cannot be empty",
        "calls.c.method: `GE T` is not an HTTP method",
        "calls.c.body: is not valid JSON",
        "calls.c.headers.X Y: `X Y` is not a valid header name",
        "calls.c.path: uses `<id>`, which is not declared",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(!all.contains("stand-in"), "a stand-in leaked into a message:\n{all}");
}

#[test]
fn a_bad_body_template_names_the_call_and_where_placeholders_go() {
    let m = problem_at(&call("method = \"POST\"\nbody = '{\"a\": <b>}'"), "calls.c.body");
    assert!(m.contains("is not valid JSON") && m.contains("placeholders go inside strings"), "{m}");
}

#[test]
fn a_bad_token_body_or_token_url_names_the_auth_field() {
    let auth = |fields: &str| {
        format!(
            "[connectors.a]\nbase_url = \"https://x.example\"\nauth = {{ method = \"oauth2_custom_token\", {fields} }}\n"
        )
    };
    let m = problem_at(&auth("token_url = \"https://t.example\", token_body = '{'"), "auth.token_body");
    assert!(m.contains("is not valid JSON"), "{m}");
    let m = problem_at(&auth("token_url = \"/token\", token_body = {}"), "auth.token_url");
    assert!(m.contains("`/token` is not a URL") && m.contains("write e.g."), "{m}");
    let m = problem_at(
        &auth("token_url = \"https://t.example\", token_body = {}, token_headers = { \"A B\" = \"1\" }"),
        "auth.token_headers.A B",
    );
    assert!(m.contains("is not a valid header name"), "{m}");
}

#[test]
fn optional_and_templated_auth_urls_are_parsed_too() {
    let code = |extra: &str| {
        format!(
            "[connectors.a]\nbase_url = \"https://x.example\"\nauth = {{ method = \"oauth2_authorization_code\", \
             authorize_url = \"https://[tenant].example/authorize\", token_url = \"https://t.example/token\", \
             client_id = \"id\", client_secret = {{ secret = \"s\" }}{extra} }}\n"
        )
    };
    Config::parse(&code(""), "f").unwrap();
    let m = problem_at(&code(", profile_url = \"me\""), "auth.profile_url");
    assert!(m.contains("`me` is not a URL"), "{m}");
    let m = problem_at(&code(", revoke_url = \"https//x\""), "auth.revoke_url");
    assert!(m.contains("is not a URL"), "{m}");
    let text = code("").replace("https://[tenant].example/authorize", "ldap://[tenant]");
    let m = problem_at(&text, "auth.authorize_url");
    assert!(m.contains("is not an http(s) URL") && m.contains("write e.g."), "{m}");
}

#[test]
fn connectors_given_as_json_get_the_same_problems() {
    let bad = json!({"base_url": "https://x.example", "headers": {"Bad Header": "1"},
        "auth": {"method": "none"}, "calls": {"c": {"method": "GE T"}}});
    let e = Config::connector_from_json("a", bad, "request body").unwrap_err();
    let fields: Vec<_> = e.0.iter().map(|p| (p.file.as_str(), p.connector.as_deref(), p.field.as_deref())).collect();
    assert_eq!(
        fields,
        [("request body", Some("a"), Some("headers.Bad Header")), ("request body", Some("a"), Some("calls.c.method"))]
    );
}

/// Parse → serialize gives exactly what the store held and the API served before (the text as
/// written: no URL normalized, no header name lower-cased), and parsing that again gives the
/// same configuration.
#[test]
fn every_method_round_trips_to_the_same_serialized_form() {
    let first = Config::parse(ALL_METHODS, "all.toml").unwrap();
    let methods: std::collections::HashSet<_> = first.connectors.values().map(|c| c.auth.kind()).collect();
    assert_eq!(methods.len(), AuthMethod::ALL.len(), "the fixture must use every method");
    assert_eq!(served(&first), ALL_METHODS_SERVED);
    for (name, conn) in &first.connectors {
        let json = serde_json::to_value(conn).unwrap();
        let again = Config::connector_from_json(name, json, "store").unwrap();
        assert_eq!(&again, conn, "{name}");
        assert_eq!(serde_json::to_string(&again).unwrap(), serde_json::to_string(conn).unwrap(), "{name}");
    }
}

#[test]
fn aws_sigv4_fields_have_aws_shapes() {
    let aws = |fields: &str| {
        connector("").replace(
            "{ method = \"none\" }",
            &format!("{{ method = \"aws_sigv4\", secret_access_key = {{ secret = \"s\" }}, {fields} }}"),
        )
    };
    let ok = "access_key_id = \"AKIAIOSFODNN7EXAMPLE\", region = \"us-east-1\", service = \"sqs\"";
    Config::parse(&aws(ok), "latchkey.toml").unwrap();
    let cases = [
        (
            "access_key_id = \"AKIA EXAMPLE\", region = \"us-east-1\", service = \"sqs\"",
            "auth.access_key_id",
            "is not an AWS access key id",
        ),
        (
            "access_key_id = \"AKIA\", region = \"US-EAST-1\", service = \"sqs\"",
            "auth.region",
            "`US-EAST-1` is not an AWS region",
        ),
        ("access_key_id = \"AKIA\", region = \"useast1\", service = \"sqs\"", "auth.region", "such as `us-east-1`"),
        (
            "access_key_id = \"AKIA\", region = \"us-east-1\", service = \"SQS\"",
            "auth.service",
            "is not an AWS signing name",
        ),
        (
            "access_key_id = \"AKIA\", region = \"us-east-1\", service = \"sqs\", role_arn = \"arn:aws:iam::12345:role/r\"",
            "auth.role_arn",
            "`arn:aws:iam::12345:role/r` is not an IAM role's ARN: write `arn:aws:iam::<12-digit account id>:role/<name>`",
        ),
        (
            "access_key_id = \"AKIA\", region = \"us-east-1\", service = \"sqs\", role_arn = \"arn:aws:iam::123456789012:user/u\"",
            "auth.role_arn",
            "is not an IAM role's ARN",
        ),
        (
            "access_key_id = \"AKIA\", region = \"us-east-1\", service = \"sqs\", sts_url = \"https://sts.example\"",
            "auth.sts_url",
            "is used only with `role_arn`",
        ),
        (
            "access_key_id = \"AKIA\", region = \"us-east-1\", service = \"sqs\", role_arn = \"arn:aws:iam::123456789012:role/r\", sts_url = \"http://sts.example\"",
            "auth.sts_url",
            "uses http:// to a host that is not loopback",
        ),
        (
            "access_key_id = \"AKIA\", region = \"us-east-1\", service = \"sqs\", sts_url = \"not a url\"",
            "auth.sts_url",
            "",
        ),
        ("access_key_id = \"AKIA\", region = \"us-east-1\"", "auth.service", "missing: this field is required"),
        (
            "access_key_id = \"AKIA\", region = \"us-east-1\", service = \"sqs\", session_token = \"plain\"",
            "auth.session_token",
            "secret",
        ),
    ];
    for (fields, field, says) in cases {
        let m = problem_at(&aws(fields), field);
        assert!(m.contains(says), "{fields}: {m}");
    }
    for loopback in ["http://127.0.0.1:5000/", "http://localhost:5000/"] {
        let fields = format!("{ok}, role_arn = \"arn:aws-cn:iam::123456789012:role/path/r\", sts_url = \"{loopback}\"");
        Config::parse(&aws(&fields), "latchkey.toml").unwrap();
    }
}

#[test]
fn parsed_values_keep_the_text_and_hold_the_value() {
    let c = Config::parse(ALL_METHODS, "all.toml").unwrap();
    let none = &c.connectors["none"];
    assert_eq!(none.base_url.as_str(), "https://API.Example.com");
    assert_eq!(none.base_url.url().as_str(), "https://api.example.com/");
    assert_eq!(none.base_url.path(), "");
    let names: Vec<&HeaderName> = none.headers.keys().map(|k| k.value()).collect();
    assert_eq!(names, [&HeaderName::from_static("accept"), &HeaderName::from_static("x-trace")]);
    assert_eq!(none.headers.values().next().map(|v| v.value()), Some(&HeaderValue::from_static("application/json")));
    let list = &none.calls["list"];
    assert_eq!(list.path.params().collect::<Vec<_>>(), ["id"]);
    assert_eq!(list.headers.values().map(|v| v.params().count()).collect::<Vec<_>>(), [1, 0]);
    assert_eq!(list.body.as_ref().unwrap().body().params(), ["id", "text"]);
    // The URL a token request goes to, and the credential's fingerprint, keep the text.
    let AuthConfig::OAuth2Password(pw) = &c.connectors["pw"].auth else { panic!("pw is oauth2_password") };
    assert_eq!(pw.token_url.as_str(), "https://Auth.Example.com");
    assert_eq!(pw.token_url.value().as_str(), "https://auth.example.com/");
    assert_eq!(c.connectors["q"].base_url.path(), "/v1");
}

#[test]
fn the_method_table_is_every_list() {
    let names: Vec<&str> = AuthMethod::ALL.iter().map(|m| m.name()).collect();
    assert_eq!(
        names,
        [
            "none",
            "api_key_query",
            "api_key_header",
            "basic",
            "digest",
            "oauth1",
            "client_certificate",
            "aws_sigv4",
            "oauth2_password",
            "oauth2_client_credentials",
            "oauth2_custom_token",
            "jwt_bearer",
            "oauth2_authorization_code",
            "oauth1_authorization",
            "latchkey_identity"
        ]
    );
    for m in AuthMethod::ALL {
        assert_eq!(AuthMethod::named(m.name()), Some(*m));
        assert!(!LATER_METHODS.contains(&m.name()), "{m} is both available and later");
    }
    let c = Config::parse(ALL_METHODS, "all.toml").unwrap();
    for conn in c.connectors.values() {
        assert_eq!(conn.auth.method(), conn.auth.kind().name());
        assert_eq!(serde_json::to_value(&conn.auth).unwrap()["method"], conn.auth.method());
    }
    let m = problem_at(&connector("").replace("\"none\"", "\"telepathy\""), "auth.method");
    assert!(m.ends_with(&format!("use one of {}", names.join(", "))), "{m}");
}

/// Keep-alive refreshes the tokens of exactly the methods it did when it matched names by
/// prefix (`oauth2_*` and `jwt_bearer`), app-level and per-user alike.
#[test]
fn methods_holding_tokens_are_the_grant_methods() {
    let holding: Vec<&str> = AuthMethod::ALL.iter().filter(|m| m.holds_tokens()).map(|m| m.name()).collect();
    assert_eq!(
        holding,
        [
            "oauth2_password",
            "oauth2_client_credentials",
            "oauth2_custom_token",
            "jwt_bearer",
            "oauth2_authorization_code"
        ]
    );
}

#[test]
fn secret_refs_name_every_secret_field() {
    let c = Config::parse(ALL_METHODS, "all.toml").unwrap();
    let refs = |name: &str| -> Vec<(&'static str, String)> {
        c.connectors[name].auth.secret_refs().into_iter().map(|(f, r)| (f, r.to_string())).collect()
    };
    assert_eq!(refs("none"), []);
    assert_eq!(refs("h"), [("key", "environment variable `H_KEY`".to_owned())]);
    assert_eq!(refs("cert"), [("certificate", "secret `c`".to_owned()), ("private_key", "secret `k`".to_owned())]);
    assert_eq!(refs("pw"), [("password", "secret `p`".to_owned()), ("client_secret", "secret `cs`".to_owned())]);
    assert_eq!(refs("custom"), [("secrets", "secret `ck`".to_owned())]);
    assert_eq!(
        refs("ccjwt"),
        [("client_private_key", "secret `ck`".to_owned()), ("client_key_certificate", "secret `kc`".to_owned())]
    );
    assert_eq!(refs("custom_jwt"), [("jwt.private_key", "secret `gh_app_key`".to_owned())]);
    assert_eq!(
        refs("cctls"),
        [
            ("client_certificate", "secret `tc`".to_owned()),
            ("client_key", "secret `tk`".to_owned()),
            ("ca_certificate", "secret `tca`".to_owned())
        ]
    );
    assert_eq!(refs("jwt_json"), [("private_key", "secret `sa_json`".to_owned())]);
    assert_eq!(refs("code"), [("client_secret", "secret `cs`".to_owned())]);
    assert_eq!(refs("ident"), []);
    assert_eq!(refs("dg"), [("password", "environment variable `DG_PW`".to_owned())]);
}

#[test]
fn value_errors_are_typed() {
    assert_eq!(Parsed::<Method>::parse("GE T").unwrap_err(), ValueError::Method("GE T".into()));
    assert_eq!(Parsed::<HeaderName>::parse("a b").unwrap_err(), ValueError::HeaderName("a b".into()));
    assert_eq!(Parsed::<HeaderValue>::parse("a\nb").unwrap_err(), ValueError::HeaderBreak);
    assert_eq!(Parsed::<HeaderText>::parse("<x>\0").unwrap_err(), ValueError::HeaderBreak);
    assert!(matches!(Parsed::<BaseUrl>::parse("x"), Err(ValueError::Url { .. })));
    assert_eq!(Parsed::<BaseUrl>::parse("mailto:a@b.example").err(), Some(ValueError::Scheme("mailto".into())));
    assert!(matches!(BodyTemplate::parse(json!("{")), Err(ValueError::BodyJson(_))));
    assert_eq!(BodyTemplate::parse(json!({"a": "<b>"})).unwrap().body().params(), ["b"]);
}

#[test]
fn server_urls_are_parsed_at_load() {
    let p = problems("[server]\nreturn_to_allow = [\"https://app.example/\", \"app.example/back\"]\n");
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!((p[0].connector.as_deref(), p[0].field.as_deref()), (None, Some("server.return_to_allow[1]")));
    assert!(p[0].message.contains("`app.example/back` is not a URL") && p[0].message.contains("write e.g."), "{p:#?}");
    let p = problems("[server]\nwebhook_url = \"ftp://hooks.example\"\n");
    assert_eq!(p[0].field.as_deref(), Some("server.webhook_url"), "{p:#?}");
    let c = Config::parse("[server]\nreturn_to_allow = [\"HTTPS://App.example\"]\n", "f").unwrap();
    assert_eq!(c.server.return_to_allow[0].as_str(), "HTTPS://App.example");
    assert_eq!(c.server.return_to_allow[0].host_str(), Some("app.example"));
}

#[test]
fn methods_are_the_standard_ones_in_any_case() {
    for m in ["GET", "head", "Post", "PUT", "patch", "DELETE", "options", "TRACE", "connect"] {
        let parsed = Parsed::<Method>::parse(m).unwrap();
        assert_eq!(parsed.value().as_str(), m.to_ascii_uppercase());
    }
    // `http::Method` takes any token; the configuration does not.
    for m in ["FETCH", "PROPFIND", "GETT", "QUERY"] {
        assert_eq!(Parsed::<Method>::parse(m).unwrap_err(), ValueError::Method(m.into()), "{m}");
    }
}

fn client_credentials(rest: &str) -> String {
    format!(
        "[connectors.a]\nbase_url = \"https://x.example\"\n\
         auth = {{ method = \"oauth2_client_credentials\", token_url = \"https://a.example/token\", client_id = \"id\"{rest} }}\n"
    )
}

#[test]
fn private_key_jwt_needs_its_key_and_no_secret() {
    let key = ", client_auth = \"private_key_jwt\", client_private_key = { secret = \"ck\" }";
    assert!(Config::parse(&client_credentials(key), "latchkey.toml").is_ok());
    let m = problem_at(&client_credentials(", client_auth = \"private_key_jwt\""), "auth.client_private_key");
    assert!(m.starts_with("is required with client_auth = \"private_key_jwt\""), "{m}");
    let with_secret = format!("{key}, client_secret = {{ secret = \"cs\" }}");
    let m = problem_at(&client_credentials(&with_secret), "auth.client_secret");
    assert_eq!(m, "is not used with client_auth = \"private_key_jwt\": remove it");
    let m = problem_at(&client_credentials(""), "auth.client_secret");
    assert!(m.starts_with("is required"), "{m}");
    let stray = ", client_secret = { secret = \"cs\" }, client_key_id = \"k\"";
    let m = problem_at(&client_credentials(stray), "auth.client_key_id");
    assert_eq!(m, "is used only with client_auth = \"private_key_jwt\": set that, or remove it");
}

#[test]
fn an_unknown_assertion_algorithm_is_a_problem_at_its_field() {
    let bad = ", client_auth = \"private_key_jwt\", client_private_key = { secret = \"ck\" }, client_assertion_alg = \"HS256\"";
    let m = problem_at(&client_credentials(bad), "auth.client_assertion_alg");
    assert!(m.contains("RS256") && m.contains("PS256") && m.contains("ES256"), "{m}");
}

#[test]
fn tls_client_auth_needs_its_certificate_and_key_and_they_need_it() {
    let tls = ", client_auth = \"tls_client_auth\"";
    let both = format!("{tls}, client_certificate = {{ secret = \"cc\" }}, client_key = {{ secret = \"ck\" }}");
    assert!(Config::parse(&client_credentials(&both), "latchkey.toml").is_ok());
    let m = problem_at(
        &client_credentials(&format!("{tls}, client_key = {{ secret = \"ck\" }}")),
        "auth.client_certificate",
    );
    assert!(m.starts_with("is required with client_auth = \"tls_client_auth\""), "{m}");
    let m = problem_at(
        &client_credentials(&format!("{tls}, client_certificate = {{ secret = \"cc\" }}")),
        "auth.client_key",
    );
    assert!(m.starts_with("is required with client_auth = \"tls_client_auth\""), "{m}");
    let m = problem_at(&client_credentials(&format!("{both}, ca_certificate = \"nope\"")), "auth.ca_certificate");
    assert_eq!(m, "is not a PEM certificate (-----BEGIN CERTIFICATE-----)");
    let stray = ", client_secret = { secret = \"cs\" }, client_certificate = { secret = \"cc\" }";
    let m = problem_at(&client_credentials(stray), "auth.client_certificate");
    assert_eq!(m, "is used only with client_auth = \"tls_client_auth\": set that, or remove it");
    let bound = ", client_secret = { secret = \"cs\" }, certificate_bound = true";
    let m = problem_at(&client_credentials(bound), "auth.certificate_bound");
    assert_eq!(m, "is used only with client_auth = \"tls_client_auth\": set that, or remove it");
}

#[test]
fn a_client_key_certificate_goes_with_private_key_jwt_and_is_a_pem_certificate() {
    let jwt = ", client_auth = \"private_key_jwt\", client_private_key = { secret = \"ck\" }";
    let c = Config::parse(&client_credentials(&format!("{jwt}, client_key_certificate = {{ secret = \"kc\" }}")), "t")
        .unwrap_or_else(|e| panic!("{e:?}"));
    let refs: Vec<_> = c.connectors["a"].auth.secret_refs().into_iter().map(|(f, _)| f).collect();
    assert_eq!(refs, ["client_private_key", "client_key_certificate"]);
    let m = problem_at(
        &client_credentials(&format!("{jwt}, client_key_certificate = \"nope\"")),
        "auth.client_key_certificate",
    );
    assert_eq!(m, "is not a PEM certificate (-----BEGIN CERTIFICATE-----)");
    let stray = ", client_secret = { secret = \"cs\" }, client_key_certificate = { secret = \"kc\" }";
    let m = problem_at(&client_credentials(stray), "auth.client_key_certificate");
    assert_eq!(m, "is used only with client_auth = \"private_key_jwt\": set that, or remove it");
}

fn oauth1(fields: &str) -> String {
    format!(
        "[connectors.a]\nbase_url = \"https://x.example\"\nauth = {{ method = \"oauth1\", consumer_key = \"ck\"{fields} }}\n"
    )
}

#[test]
fn oauth1_needs_the_key_its_signature_method_signs_with_and_no_other() {
    let hmac = ", consumer_secret = { secret = \"cs\" }";
    assert!(Config::parse(&oauth1(hmac), "latchkey.toml").is_ok());
    let m = problem_at(&oauth1(""), "auth.consumer_secret");
    assert!(m.starts_with("is required with signature_method = \"HMAC-SHA1\""), "{m}");
    let m = problem_at(&oauth1(", signature_method = \"PLAINTEXT\""), "auth.consumer_secret");
    assert!(m.starts_with("is required with signature_method = \"PLAINTEXT\""), "{m}");
    let m = problem_at(&oauth1(&format!("{hmac}, private_key = {{ secret = \"k\" }}")), "auth.private_key");
    assert_eq!(m, "is used only with signature_method = \"RSA-SHA1\": set that, or remove it");

    let rsa = ", signature_method = \"RSA-SHA1\"";
    assert!(Config::parse(&oauth1(&format!("{rsa}, private_key = {{ secret = \"k\" }}")), "latchkey.toml").is_ok());
    let m = problem_at(&oauth1(rsa), "auth.private_key");
    assert!(m.starts_with("is required with signature_method = \"RSA-SHA1\""), "{m}");
    let both = format!("{rsa}, private_key = {{ secret = \"k\" }}{hmac}");
    let m = problem_at(&oauth1(&both), "auth.consumer_secret");
    assert!(m.starts_with("is not used with signature_method = \"RSA-SHA1\""), "{m}");

    let m = problem_at(&oauth1(&format!("{hmac}, token_secret = {{ secret = \"ts\" }}")), "auth.token_secret");
    assert!(m.starts_with("is set without `token`"), "{m}");
    let ok = format!("{hmac}, token = {{ secret = \"t\" }}, signature_in = \"body\"");
    assert!(Config::parse(&oauth1(&ok), "latchkey.toml").is_ok());
    let m = problem_at(&oauth1(&format!("{hmac}, signature_method = \"HMAC-MD5\"")), "auth.signature_method");
    assert!(m.contains("HMAC-SHA1") && m.contains("RSA-SHA1") && m.contains("PLAINTEXT"), "{m}");
    let m = problem_at(&oauth1(&format!("{hmac}, signature_in = \"cookie\"")), "auth.signature_in");
    assert!(m.contains("header") && m.contains("query") && m.contains("body"), "{m}");
    let m = problem_at(&oauth1(", consumer_secret = \"plain\""), "auth.consumer_secret");
    assert!(m.contains("latchkey secret set") && !m.contains("plain\""), "{m}");
}

#[test]
fn oauth1_authorization_needs_its_three_urls_over_https() {
    let text = |urls: &str| {
        format!(
            "[connectors.a]\nbase_url = \"https://x.example\"\nauth = {{ method = \"oauth1_authorization\", consumer_key = \"ck\", consumer_secret = {{ secret = \"cs\" }}{urls} }}\n"
        )
    };
    let good = ", request_token_url = \"https://p.example/rt\", authorize_url = \"https://p.example/authorize\", access_token_url = \"https://p.example/at\"";
    assert!(Config::parse(&text(good), "latchkey.toml").is_ok());
    let m = problem_at(&text(&good.replace("https://p.example/rt", "http://p.example/rt")), "auth.request_token_url");
    assert!(m.contains("clear text"), "{m}");
    let m =
        problem_at(&text(&good.replace(", access_token_url = \"https://p.example/at\"", "")), "auth.access_token_url");
    assert!(m.contains("missing"), "{m}");
    let m = problem_at(&text(&format!("{good}, token = {{ secret = \"t\" }}")), "auth.token");
    assert!(m.contains("unknown field"), "{m}");
}

#[test]
fn the_connect_page_branding_and_labels_are_checked_at_load() {
    let ok = r##"
[server.connect_page]
title = "Acme"
accent_color = "#0B57d0"
logo_url = "data:image/png;base64,iVBORw0KGgo="

[connectors.k]
base_url = "https://k.example"
per_user = true
auth = { method = "api_key_header", name = "X-Key" }
connect = { label = "K", help = "Find it under Settings.", help_url = "https://k.example/keys" }
"##;
    let c = Config::parse(ok, "f").unwrap();
    let page = c.server.connect_page.as_ref().unwrap();
    assert_eq!(page.logo().map(|(t, b)| (t, b.len())), Some(("image/png", 8)));
    assert_eq!(c.connectors["k"].connect.as_ref().unwrap().label.as_deref(), Some("K"));

    let bad = r##"
[server.connect_page]
title = ""
accent_color = "blue"
logo_url = "https://cdn.example/logo.png"

[connectors.k]
base_url = "https://k.example"
per_user = true
auth = { method = "api_key_header", name = "X-Key" }
connect = { label = "two\nlines", help_url = "http://k.example/keys" }

[connectors.app]
base_url = "https://app.example"
auth = { method = "api_key_header", name = "X-Key", key = { secret = "s" } }
connect = { label = "App" }
"##;
    let p = problems(bad);
    let at: Vec<(Option<&str>, Option<&str>)> =
        p.iter().map(|p| (p.connector.as_deref(), p.field.as_deref())).collect();
    for want in [
        (None, Some("server.connect_page.title")),
        (None, Some("server.connect_page.accent_color")),
        (None, Some("server.connect_page.logo_url")),
        (Some("k"), Some("connect.label")),
        (Some("k"), Some("connect.help_url")),
        (Some("app"), Some("connect")),
    ] {
        assert!(at.contains(&want), "{want:?} missing: {p:#?}");
    }
    assert_eq!(p.len(), 6, "{p:#?}");
    let logo = p.iter().find(|p| p.field.as_deref() == Some("server.connect_page.logo_url")).unwrap();
    assert!(logo.message.contains("data:") && logo.message.contains("own origin"), "{logo:#?}");
    let colour = p.iter().find(|p| p.field.as_deref() == Some("server.connect_page.accent_color")).unwrap();
    assert!(colour.message.contains("#rrggbb"), "{colour:#?}");
}

#[test]
fn a_parameters_type_and_enum_are_checked_against_each_other_its_default_and_where_it_goes() {
    let one = |params: &str| call(&format!("path = \"/x\"\nbody = '{{\"v\": \"<v>\"}}'\nparams.v = {params}"));
    let m = problem_at(&one("{ type = \"int\" }"), "calls.c.params.v.type");
    assert!(m.contains("unknown variant `int`") && m.contains("`integer`"), "{m}");
    let m = problem_at(&one("{ type = \"integer\", default = \"20\" }"), "calls.c.params.v.default");
    assert!(m.contains("is text") && m.contains("`integer`"), "{m}");
    let m = problem_at(&one("{ enum = [\"asc\", \"desc\"], default = \"up\" }"), "calls.c.params.v.default");
    assert!(m.contains("not one of") && m.contains("\"asc\", \"desc\""), "{m}");
    let m = problem_at(&one("{ type = \"string\", enum = [\"a\", 2] }"), "calls.c.params.v.enum");
    assert!(m.contains("value 2 (2) is not a string"), "{m}");
    let m = problem_at(&one("{ enum = [] }"), "calls.c.params.v.enum");
    assert!(m.contains("lists no value"), "{m}");
    let m = problem_at(&one("{ private = true, value = 1.5, type = \"integer\" }"), "calls.c.params.v.value");
    assert!(m.contains("is a number") && m.contains("`integer`"), "{m}");
    let m = problem_at(
        &call("path = \"/x\"\nquery = { ids = \"<ids>\" }\nparams.ids = { type = \"array\" }"),
        "calls.c.params.ids.type",
    );
    assert!(m.contains("used in `query.ids`") && m.contains("JSON `body`"), "{m}");
    // What agrees loads: 5.0 is an integer, as in JSON Schema; an array goes into a body.
    for ok in [
        "{ type = \"integer\", default = 5.0, enum = [5, 6] }",
        "{ type = \"array\", default = [1] }",
        "{ type = \"number\", enum = [1, 2.5] }",
        "{ enum = [\"a\", 1, true] }",
        "{ type = \"boolean\", required = true, description = \"d\" }",
    ] {
        Config::parse(&one(ok), "f").unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    // The same checks for a connector written through the admin API (JSON).
    let json = serde_json::json!({"base_url": "https://x.example", "auth": {"method": "none"},
        "calls": {"c": {"path": "/x", "query": {"n": "<n>"}, "params": {"n": {"type": "integer", "default": "x"}}}}});
    let e = Config::connector_from_json("a", json, "admin API").unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].field.as_deref(), Some("calls.c.params.n.default"), "{e}");
}
