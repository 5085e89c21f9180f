use secrecy::ExposeSecret as _;

use super::*;

fn check(name: &str, conn: &Connector) -> String {
    let text = conn.to_toml(name);
    latchkey_core::config::Config::parse(&text, "import").unwrap_or_else(|e| panic!("{e}\n{text}"));
    text
}

const COLLECTION: &str = r##"{
  "info": {"name": "Orders API", "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"},
  "variable": [{"key": "baseUrl", "value": "https://api.orders.example/v1/"}, {"key": "limit", "value": "25", "type": "number"},
               {"key": "apiToken", "value": "tok_live_COLLECTIONSECRET"}],
  "auth": {"type": "bearer", "bearer": [{"key": "token", "value": "{{apiToken}}", "type": "string"}]},
  "item": [
    {"name": "Orders", "item": [
      {"name": "List", "request": {"method": "GET", "description": "All orders",
        "header": [{"key": "Accept", "value": "application/json"}, {"key": "X-Old", "value": "x", "disabled": true}],
        "url": {"raw": "{{baseUrl}}/orders?limit={{limit}}&status=open", "host": ["{{baseUrl}}"], "path": ["orders"],
                "query": [{"key": "limit", "value": "{{limit}}"}, {"key": "status", "value": "open"}, {"key": "off", "value": "1", "disabled": true}]}}},
      {"name": "Get", "request": {"method": "get",
        "url": {"host": ["{{baseUrl}}"], "path": ["orders", ":orderId"], "variable": [{"key": "orderId", "value": "<integer>"}]}}},
      {"name": "Create", "request": {"method": "POST",
        "header": [{"key": "Content-Type", "value": "application/json"}],
        "body": {"mode": "raw", "raw": "{\"sku\": \"{{sku}}\", \"qty\": {{qty}}, \"note\": \"<string>\", \"tag\": \"a <b> c\"}"},
        "url": {"host": ["{{baseUrl}}"], "path": ["orders"]}}}
    ]},
    {"name": "Customers", "item": [
      {"name": "List", "request": {"method": "GET", "url": "{{baseUrl}}/customers"}},
      {"name": "Upload", "request": {"method": "POST", "body": {"mode": "formdata", "formdata": []}, "url": "{{baseUrl}}/files"}},
      {"name": "Elsewhere", "request": {"method": "GET", "url": "https://other.example/x"}}
    ]}
  ]
}"##;

#[test]
fn a_collection_becomes_calls_with_its_variables_as_parameters() {
    let (name, conn) = import(COLLECTION, None).unwrap();
    assert_eq!(name, "orders_api");
    assert_eq!(conn.base_url, "https://api.orders.example/v1");
    assert_eq!(
        conn.auth,
        Auth::ApiKeyHeader {
            name: "Authorization".into(),
            prefix: Some("Bearer".into()),
            secret: "orders_api_token".into()
        }
    );
    assert_eq!(conn.found.len(), 1);
    assert_eq!(conn.found[0].1.expose_secret(), "tok_live_COLLECTIONSECRET");
    let names: Vec<&str> = conn.calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["orders_list", "get", "create", "customers_list", "upload"]);
    let list = &conn.calls[0];
    assert_eq!(list.path, "/orders");
    assert_eq!(list.query, vec![("limit".into(), "<limit>".into()), ("status".into(), "<status>".into())]);
    // The variable's declared type is the parameter's, its text value read as that type.
    assert_eq!((list.params[0].default.clone(), list.params[0].ty), (Some(serde_json::json!(25)), Some("number")));
    assert_eq!(list.headers, vec![("Accept".into(), "application/json".into())]);
    assert_eq!(list.description.as_deref(), Some("All orders"));
    let get = &conn.calls[1];
    assert_eq!((get.method.as_str(), get.path.as_str()), ("GET", "/orders/<orderid>"));
    assert!(get.params[0].required && get.params[0].default.is_none());
    assert_eq!(get.params[0].ty, Some("integer"), "the `<integer>` hint is the type");
    let create = &conn.calls[2];
    assert_eq!(
        create.body,
        Some(serde_json::json!({"sku": "<sku>", "qty": "<qty>", "note": "<note>", "tag": "<literal>"}))
    );
    assert_eq!(
        create.params.iter().find(|p| p.name == "literal").unwrap().private,
        Some(Value::String("a <b> c".into()))
    );
    assert!(create.headers.is_empty());
    assert!(conn.notes.iter().any(|n| n.contains("other.example")), "{:?}", conn.notes);
    assert!(conn.notes.iter().any(|n| n.contains("form or file")), "{:?}", conn.notes);
    let text = check(&name, &conn);
    assert!(!text.contains("COLLECTIONSECRET"), "{text}");
}

#[test]
fn collection_auth_kinds() {
    let with = |auth: &str| {
        let doc = format!(
            r#"{{"info": {{"name": "x", "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"}},
                "auth": {auth}, "item": [{{"name": "a", "request": {{"url": "https://x.example/a?k=1"}}}}]}}"#
        );
        import(&doc, None).unwrap().1
    };
    let c = with(
        r#"{"type": "basic", "basic": [{"key": "username", "value": "bob"}, {"key": "password", "value": "pw"}]}"#,
    );
    assert_eq!(c.auth, Auth::Basic { username: "bob".into(), secret: "x_password".into() });
    assert_eq!(c.found[0].1.expose_secret(), "pw");
    let c = with(
        r#"{"type": "apikey", "apikey": [{"key": "key", "value": "k"}, {"key": "value", "value": "{{missing}}"}, {"key": "in", "value": "query"}]}"#,
    );
    assert_eq!(c.auth, Auth::ApiKeyQuery { name: "k".into(), secret: "x_key".into() });
    assert!(c.found.is_empty() && c.calls[0].query.is_empty(), "the key's own query parameter is the auth's");
    let c = with(
        r#"{"type": "oauth2", "oauth2": [{"key": "grant_type", "value": "client_credentials"},
            {"key": "accessTokenUrl", "value": "https://x.example/token"}, {"key": "scope", "value": "a b"}]}"#,
    );
    assert_eq!(
        c.auth,
        Auth::ClientCredentials {
            token_url: "https://x.example/token".into(),
            scopes: vec!["a".into(), "b".into()],
            secret: "x_client_secret".into()
        }
    );
    let c = with(r#"{"type": "hawk", "hawk": []}"#);
    assert_eq!(c.auth, Auth::None);
    assert!(import("{\"a\": 1}", None).unwrap_err().to_string().contains("not a Postman collection"));
}
