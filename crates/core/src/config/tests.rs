use super::*;

fn problems(text: &str) -> Vec<String> {
    match Config::parse(text, "latchkey.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

fn one_problem(text: &str) -> String {
    let p = problems(text);
    assert_eq!(p.len(), 1, "{p:#?}");
    p.into_iter().next().unwrap_or_default()
}

const GOOD: &str = r#"
[server]
listen = "127.0.0.1:7420"
public_url = "http://127.0.0.1:7420"
return_to_allow = ["https://app.example.com/"]

[connectors.billing]
base_url = "https://api.example.com/v1"
timeout_ms = 10000
headers = { "Accept" = "application/json" }
auth = { method = "api_key_header", name = "Authorization", prefix = "Bearer", key = { secret = "billing_key" } }

[connectors.billing.calls.get_customer]
method = "GET"
path = "/customers/<customer_id>"
query = { expand = "<expand>" }
access = "app"
[connectors.billing.calls.get_customer.params]
customer_id = { required = true }
expand = { default = "subscriptions" }
tenant = { private = true, value = "acme" }

[connectors.billing.calls.create_note]
method = "POST"
path = "/notes"
headers = { "Idempotency-Key" = "<request_id>" }
body = '{"customer": "<customer_id>", "text": "<text>", "tags": "<tags>"}'
[connectors.billing.calls.create_note.params]
customer_id = { required = true }
text = { required = true }
tags = { default = [] }
request_id = { required = true }
"#;

#[test]
fn the_spec_example_is_valid() {
    let c = Config::parse(GOOD, "latchkey.toml").unwrap();
    let billing = &c.connectors["billing"];
    assert_eq!(billing.timeout_ms, 10000);
    assert!(billing.proxy);
    assert_eq!(billing.calls.len(), 2);
    assert_eq!(
        billing.auth,
        AuthConfig::ApiKeyHeader(ApiKeyHeader {
            name: "Authorization".into(),
            prefix: Some("Bearer".into()),
            key: Some(SecretRef::Vault("billing_key".into()))
        })
    );
}

#[test]
fn a_plain_string_in_a_secret_field_is_refused_with_the_fix() {
    let p = one_problem(
        r#"[connectors.a]
base_url = "https://x.example"
auth = { method = "api_key_query", name = "k", key = "sk_live_123" }"#,
    );
    assert!(p.contains("connector `a`"), "{p}");
    assert!(p.contains("auth.key"), "{p}");
    assert!(p.contains("latchkey secret set"), "{p}");
    assert!(!p.contains("sk_live_123"), "the literal leaked into the message: {p}");
}

#[test]
fn every_problem_is_listed_at_once() {
    let p = problems(
        r#"
[connectors.a]
base_url = "ftp://x"
auth = { method = "none" }
[connectors.a.calls.c1]
path = "no-slash/<x>"
[connectors.a.calls.c2]
bogus = 1
[connectors.b]
base_url = "https://y.example"
auth = { method = "basic", username = "u" }
[connectors.c]
base_url = "https://z.example"
auth = { method = "oauth1" }
[connectors.c2]
base_url = "https://z.example"
auth = { method = "digest", username = "a\"b", password = { secret = "pw" } }
[connectors.d]
base_url = "https://z.example"
auth = { method = "telepathy" }
[connectors.e]
base_url = "https://z.example"
"#,
    );
    let all = p.join("\n");
    for expected in [
        "connector `a`, field `base_url`: scheme `ftp`",
        "connector `a`, field `calls.c1.path`: `no-slash/<x>` must start with `/`",
        "connector `a`, field `calls.c1.path`: uses `<x>`, which is not declared",
        "connector `a`, field `calls.c2.bogus`: unknown field `bogus`",
        "connector `b`, field `auth.password`",
        "connector `c`, field `auth.consumer_key`: missing",
        "connector `c2`, field `auth.username`: a Digest username must be printable ASCII",
        "connector `d`, field `auth.method`: unknown auth method `telepathy`",
        "connector `e`, field `auth`: missing",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(all.starts_with("latchkey.toml"), "{all}");
}

#[test]
fn toml_syntax_errors_name_the_line() {
    let p = one_problem("[connectors.a]\nbase_url = \"https://x\"\nauth = {\n");
    assert!(p.starts_with("latchkey.toml:"), "{p}");
    assert!(p.contains("not valid TOML"), "{p}");
}

#[test]
fn unknown_fields_and_sections_are_refused() {
    let p = problems(
        "[connectors.a]\nbase_url = \"https://x.example\"\nauth = { method = \"none\" }\ntimeout = 5\n[srever]\n",
    );
    let all = p.join("\n");
    assert!(all.contains("unknown field `timeout`"), "{all}");
    assert!(all.contains("field `srever`: unknown section"), "{all}");
    let p = one_problem("[connectors.a]\nbase_url = \"https://x.example\"\nauth = { method = \"none\", key = 1 }\n");
    assert!(p.contains("unknown field `key`"), "{p}");
}

#[test]
fn parameter_declarations_are_checked() {
    let all = problems(
        r#"
[connectors.a]
base_url = "https://x.example"
auth = { method = "none" }
[connectors.a.calls.c]
path = "/u/<id>"
body = '{"a": <b>}'
[connectors.a.calls.c.params]
id = {}
p1 = { private = true }
p2 = { value = 1 }
p3 = { required = true, default = 2 }
"#,
    )
    .join("\n");
    for expected in [
        "params.id`: is used in the path, so it must be `required = true`",
        "params.p1`: a private parameter is fixed here: give its `value`",
        "params.p2`: `value` fixes a private parameter",
        "params.p3`: is both `required` and has a `default`",
        "calls.c.body`: is not valid JSON",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn base_urls_are_checked() {
    let p = one_problem("[connectors.a]\nbase_url = \"http://api.example.com\"\nauth = { method = \"none\" }\n");
    assert!(p.contains("allow_insecure_http"), "{p}");
    Config::parse("[connectors.a]\nbase_url = \"http://127.0.0.1:9\"\nauth = { method = \"none\" }\n", "f").unwrap();
    let p = one_problem("[connectors.a]\nbase_url = \"https://u:p@api.example.com\"\nauth = { method = \"none\" }\n");
    assert!(p.contains("must not carry credentials"), "{p}");
    let p = one_problem("[connectors.a]\nbase_url = \"https://api.example.com?x=1\"\nauth = { method = \"none\" }\n");
    assert!(p.contains("query"), "{p}");
}

#[test]
fn bad_header_names_and_connector_names() {
    let all = problems(
        "[connectors.\"a b\"]\nbase_url = \"https://x.example\"\nheaders = { \"Bad Header\" = \"1\", \"Host\" = \"x\" }\nauth = { method = \"none\" }\n",
    )
    .join("\n");
    assert!(all.contains("connector names may use"), "{all}");
    assert!(all.contains("`Bad Header` is not a valid header name"), "{all}");
    assert!(all.contains("`Host` is managed by the HTTP connection"), "{all}");
}

#[test]
fn json_connectors_use_the_same_rules() {
    let ok = serde_json::json!({"base_url": "https://x.example", "auth": {"method": "basic", "username": "u", "password": {"secret": "pw"}}});
    Config::connector_from_json("a", ok, "request body").unwrap();
    let bad = serde_json::json!({"base_url": "https://x.example", "auth": {"method": "basic", "username": "u", "password": "hunter2"}});
    let e = Config::connector_from_json("a", bad, "request body").unwrap_err().to_string();
    assert!(e.contains("auth.password") && e.contains("latchkey secret set") && !e.contains("hunter2"), "{e}");
}

#[test]
fn body_as_a_table_means_the_same_json() {
    let c = Config::parse(
        r#"
[connectors.a]
base_url = "https://x.example"
auth = { method = "none" }
[connectors.a.calls.c]
method = "POST"
body = { customer = "<id>", nested = { list = ["<id>", 1] } }
[connectors.a.calls.c.params]
id = { required = true }
"#,
        "f",
    )
    .unwrap();
    assert!(c.connectors["a"].calls["c"].body.as_ref().unwrap().source().is_object());
}

#[test]
fn inbound_limits_are_checked() {
    let p = one_problem("[server]\nheader_read_timeout_s = 0\n");
    assert!(p.contains("server.header_read_timeout_s") && p.contains("give 1 to 3600"), "{p}");
    let p = one_problem("[server]\nmax_connections = 0\n");
    assert!(p.contains("server.max_connections") && p.contains("leave it out: 10000"), "{p}");
    let all = problems("[server]\nkeepalive_idle_s = 100000\nhttp2_keepalive_interval_s = 0\n").join("\n");
    assert!(all.contains("server.keepalive_idle_s") && all.contains("server.http2_keepalive_interval_s"), "{all}");
    let ok = Config::parse(
        "[server]\nheader_read_timeout_s = 5\nkeepalive_idle_s = 60\nhttp2_keepalive_interval_s = 20\nmax_connections = 100\n",
        "latchkey.toml",
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn the_connection_cache_bound_is_checked_and_defaults_to_ten_thousand() {
    let p = one_problem("[server]\nconnection_cache = 0\n");
    assert!(p.contains("server.connection_cache") && p.contains("give 1 to 100000000 (or leave it out: 10000)"), "{p}");
    let c = Config::parse("[server]\nconnection_cache = 250\n", "f").unwrap();
    assert_eq!(c.server.connection_cache(), 250);
    assert_eq!(Config::parse("", "f").unwrap().server.connection_cache(), 10_000);
}

#[test]
fn events_kept_days_is_a_number_of_days_or_left_out() {
    let p = one_problem("[server]\nevents_kept_days = 0\n");
    assert!(p.contains("server.events_kept_days") && p.contains("give 1 to 36500"), "{p}");
    assert!(p.contains("the whole audit log is kept"), "{p}");
    let ok = Config::parse("[server]\nevents_kept_days = 90\n", "latchkey.toml").unwrap();
    assert_eq!(ok.server.events_kept_days, Some(90));
    assert_eq!(Config::parse("", "latchkey.toml").unwrap().server.events_kept_days, None);
}

#[test]
fn unknown_fields_and_semantic_problems_show_together_each_at_its_line() {
    let text = "[server]\nnonsense = 3\n\n[connectors.a]\nbase_url = \"https://a.example\"\nbogus = 1\n\
                auth = { method = \"api_key_query\", name = \"\", key = { secret = \"x\" }, extra = 2 }\n\n\
                [connectors.b]\nbase_url = \"https://b.example\"\nauth = { method = \"none\" }\n\
                [connectors.b.calls.c]\npath = \"/x/<y>\"\nmethod = \"FETCH\"\nfrob = true\n";
    let p = problems(text);
    let has = |needle: &str| assert!(p.iter().any(|s| s.contains(needle)), "no `{needle}` in {p:#?}");
    has("latchkey.toml:2, field `server.nonsense`: unknown field `nonsense`");
    has("latchkey.toml:6: connector `a`, field `bogus`: unknown field `bogus`");
    has("latchkey.toml:7: connector `a`, field `auth.extra`: unknown field `extra`");
    // The semantic checks of the same tables still ran.
    has("latchkey.toml:7: connector `a`, field `auth.name`:");
    has("latchkey.toml:15: connector `b`, field `calls.c.frob`: unknown field `frob`");
    has("latchkey.toml:14: connector `b`, field `calls.c.method`: `FETCH` is not an HTTP method");
    has("latchkey.toml:13: connector `b`, field `calls.c.path`: uses `<y>`, which is not declared");
    assert_eq!(p.len(), 7, "{p:#?}");
}

#[test]
fn a_missing_field_is_reported_at_its_table() {
    let p = one_problem("\n[connectors.a]\nauth = { method = \"none\" }\n");
    assert!(p.starts_with("latchkey.toml:2: connector `a`, field `base_url`: missing"), "{p}");
}

#[test]
fn a_signed_jwt_for_a_custom_token_is_checked_with_its_placeholder() {
    let custom = |name: &str, auth: &str| {
        format!(
            "[connectors.{name}]\nbase_url = \"https://api.example\"\n\
             auth = {{ method = \"oauth2_custom_token\", token_url = \"https://api.example/token\", {auth} }}\n"
        )
    };
    let key = "private_key = { secret = \"app_key\" }";
    let good = custom(
        "gh",
        &format!(
            "token_headers = {{ Authorization = \"Bearer <jwt>\" }}, token_body = {{}}, token_name = \"token\", \
             expires_at_name = \"expires_at\", jwt = {{ {key}, claims = {{ iss = \"123456\" }} }}"
        ),
    );
    let config = Config::parse(&good, "latchkey.toml").unwrap_or_else(|e| panic!("{e:?}"));
    let AuthConfig::OAuth2CustomToken(t) = &config.connectors["gh"].auth else { panic!() };
    let jwt = t.jwt.as_ref().unwrap();
    assert_eq!((jwt.lifetime_s, jwt.alg, t.expires_at_name.as_deref()), (540, None, Some("expires_at")));
    assert_eq!(
        config.connectors["gh"].auth.secret_refs().iter().map(|(f, r)| format!("{f}={r}")).collect::<Vec<_>>(),
        ["jwt.private_key=secret `app_key`"]
    );

    let all = problems(
        &[
            custom("a", "token_body = '{\"jwt\": \"<jwt>\"}'"),
            custom("b", &format!("token_body = {{}}, jwt = {{ {key} }}")),
            custom(
                "c",
                &format!(
                    "token_body = {{ a = \"<jwt>\" }}, secrets = {{ jwt = {{ secret = \"x\" }} }}, \
                     jwt = {{ {key}, claims = {{ iat = 1, exp = 2, iss = \"1\" }}, lifetime_s = 0 }}"
                ),
            ),
            custom(
                "d",
                &format!("token_body = {{ a = \"<jwt>\" }}, jwt = {{ {key}, lifetime_s = 3601, alg = \"HS256\" }}"),
            ),
            custom("e", &format!("token_body = {{ a = \"<jwt>\" }}, jwt = {{ {key}, claim = {{}} }}")),
            custom("f", "token_body = {}, expires_at_name = \"\""),
        ]
        .concat(),
    )
    .join("\n");
    for expected in [
        "connector `a`, field `auth.token_body`: uses `<jwt>`, but `auth.jwt` is not set",
        "connector `b`, field `auth.jwt`: is set but `<jwt>` is used nowhere",
        "connector `c`, field `auth.secrets.jwt`: `<jwt>` is the JWT `auth.jwt` signs",
        "connector `c`, field `auth.jwt.claims.iat`: is set by Latchkey at each token request",
        "connector `c`, field `auth.jwt.claims.exp`: is set by Latchkey",
        "connector `c`, field `auth.jwt.lifetime_s`: 0 is out of range: give 1 to 3600 seconds (GitHub takes at most 600)",
        "connector `d`, field `auth.jwt.alg`",
        "connector `e`, field `auth.jwt.claim`",
        "connector `f`, field `auth.expires_at_name`: cannot be empty",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(!all.contains("auth.jwt.claims.iss"), "{all}");
    assert!(all.contains("RS256") && all.contains("ES256"), "{all}");
}

#[test]
fn per_user_connectors_take_their_secret_fields_from_each_user() {
    let ok = Config::parse(
        r#"[connectors.k]
base_url = "https://api.example"
per_user = true
verify = "me"
auth = { method = "api_key_header", name = "X-Api-Key" }
[connectors.k.calls.me]
path = "/me"
[connectors.b]
base_url = "https://api.example"
per_user = true
auth = { method = "basic" }
[connectors.q]
base_url = "https://api.example"
per_user = true
auth = { method = "api_key_query", name = "key" }
[connectors.d]
base_url = "https://api.example"
per_user = true
auth = { method = "digest" }
"#,
        "latchkey.toml",
    )
    .unwrap();
    assert!(ok.connectors["k"].per_user);
    assert_eq!(ok.connectors["k"].verify.as_deref(), Some("me"));
    assert!(ok.connectors["b"].auth.secret_refs().is_empty());
    // Served as written: the fields round-trip, and an app-level connector shows neither.
    let served = serde_json::to_value(&ok.connectors["k"]).unwrap();
    assert_eq!(served["per_user"], true);
    assert_eq!(served["verify"], "me");
    assert!(served["auth"].get("key").is_none());
    let again = Config::connector_from_json("k", served, "api").unwrap();
    assert_eq!(again, ok.connectors["k"]);
}

#[test]
fn per_user_mistakes_name_the_field_and_what_to_do() {
    let all = problems(
        r#"[connectors.a]
base_url = "https://api.example"
per_user = true
auth = { method = "api_key_header", name = "X-Key", key = { secret = "k" } }
[connectors.b]
base_url = "https://api.example"
per_user = true
auth = { method = "basic", username = "svc", password = { env = "PW" } }
[connectors.c]
base_url = "https://api.example"
per_user = true
auth = { method = "oauth2_client_credentials", token_url = "https://a.example/t", client_id = "x", client_secret = { secret = "s" } }
[connectors.d]
base_url = "https://api.example"
verify = "me"
auth = { method = "api_key_query", name = "k" }
[connectors.d.calls.me]
path = "/me"
[connectors.e]
base_url = "https://api.example"
per_user = true
verify = "nope"
auth = { method = "digest" }
[connectors.e.calls.me]
path = "/me/<id>"
params = { id = { required = true } }
[connectors.f]
base_url = "https://api.example"
per_user = true
verify = "me"
auth = { method = "digest" }
[connectors.f.calls.me]
path = "/me/<id>"
params = { id = { required = true } }
"#,
    )
    .join("\n");
    for expected in [
        "connector `a`, field `auth.key`: this connector is `per_user`: each user's value arrives with PUT /v1/connections/a, so no secret is named here: remove it",
        "connector `b`, field `auth.username`: this connector is `per_user`: each user gives their own with PUT /v1/connections/b",
        "connector `b`, field `auth.password`: this connector is `per_user`",
        "connector `c`, field `per_user`: works with api_key_query, api_key_header, basic and digest; this connector uses `oauth2_client_credentials`",
        "connector `d`, field `auth.key`: missing: this field is required (or set `per_user = true`",
        "connector `d`, field `verify`: checks the values each user gives, so it works only with `per_user = true`",
        "connector `e`, field `verify`: names `nope`, which is no call of connector `e` (its calls: me)",
        "connector `f`, field `verify`: call `me` requires parameter `id`",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}

#[test]
fn mcp_tools_tool_names_and_token_exchange_are_checked() {
    let ok = Config::parse(
        "[connectors.a]\nbase_url = \"http://127.0.0.1:9\"\nauth = { method = \"none\" }\nmcp = true\n\
         [connectors.a.calls.x]\npath = \"/x\"\ndescription = \"X.\"\n\
         [connectors.a.calls.y]\npath = \"/y\"\ntool_name = \"why\"\n\
         [connectors.b]\nbase_url = \"http://127.0.0.1:9\"\nauth = { method = \"none\" }\n\
         [connectors.b.calls.z]\npath = \"/z\"\nmcp = true\n[connectors.b.calls.w]\npath = \"/w\"\n",
        "f",
    )
    .unwrap();
    let tools: Vec<String> =
        ok.connectors.iter().flat_map(|(n, c)| c.tools(n).map(|(t, _, _)| t).collect::<Vec<_>>()).collect();
    assert_eq!(tools, ["a.x", "why", "b.z"]);

    let bad = problems(
        "[connectors.a]\nbase_url = \"http://127.0.0.1:9\"\nauth = { method = \"none\" }\ntoken_exchange = true\n\
         [connectors.a.calls.x]\npath = \"/x\"\nmcp = true\ntool_name = \"no spaces\"\n",
    );
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].contains("token_exchange") && bad[0].contains("oauth2_authorization_code"), "{bad:?}");
    assert!(bad[1].contains("calls.x.tool_name") && bad[1].contains("not a tool name"), "{bad:?}");

    let twice = problems(
        "[connectors.a]\nbase_url = \"http://127.0.0.1:9\"\nauth = { method = \"none\" }\n\
         [connectors.a.calls.x]\npath = \"/x\"\nmcp = true\ntool_name = \"t\"\n\
         [connectors.b]\nbase_url = \"http://127.0.0.1:9\"\nauth = { method = \"none\" }\n\
         [connectors.b.calls.y]\npath = \"/y\"\nmcp = true\ntool_name = \"t\"\n",
    );
    assert_eq!(twice.len(), 1, "{twice:?}");
    assert!(twice[0].contains("tool `t` is also call `a.x`"), "{twice:?}");
}
