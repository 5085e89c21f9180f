use super::*;
use crate::model::Param;

fn all() -> Select {
    Select { tags: vec![], operations: vec![] }
}

fn check(name: &str, conn: &Connector) -> String {
    let text = conn.to_toml(name);
    latchkey_core::config::Config::parse(&text, "import").unwrap_or_else(|e| panic!("{e}\n{text}"));
    text
}

const V3_YAML: &str = r##"
openapi: 3.0.3
info: {title: Pet Store, version: "1"}
servers:
  - url: https://{region}.pets.example.com/v2
    variables: {region: {default: eu}}
security: [{oauth: [pets.read]}]
components:
  securitySchemes:
    oauth:
      type: oauth2
      flows:
        clientCredentials: {tokenUrl: /oauth/token, scopes: {pets.read: read, pets.write: write}}
    key: {type: apiKey, in: header, name: X-Key}
  parameters:
    Limit: {name: limit, in: query, schema: {type: integer, default: 20}, description: How many}
  schemas:
    Base:
      type: object
      required: [name]
      properties: {name: {type: string, description: The name}}
    Pet:
      allOf:
        - $ref: '#/components/schemas/Base'
        - type: object
          properties:
            id: {type: integer, readOnly: true}
            tag: {type: string, enum: [cat, dog], default: cat}
paths:
  /pets/{petId}:
    parameters:
      - {name: petId, in: path, schema: {type: string}}
    get:
      operationId: getPetById
      tags: [pets]
      summary: One pet
      parameters:
        - {name: X-Request-Id, in: header, required: true, schema: {type: string, format: uuid}}
        - {name: X-Key, in: header, schema: {type: string}}
    delete:
      tags: [admin]
      security: [{key: []}]
  /pets:
    get:
      operationId: listPets
      tags: [pets]
      parameters: [{$ref: '#/components/parameters/Limit'}]
    post:
      operationId: listPets
      tags: [pets]
      requestBody:
        required: true
        content: {application/json: {schema: {$ref: '#/components/schemas/Pet'}}}
  /pets/{petId}/photo:
    put:
      tags: [pets]
      requestBody: {content: {multipart/form-data: {schema: {type: object}}}}
"##;

#[test]
fn openapi_3_yaml_operations_become_calls() {
    let (name, conn) = import(V3_YAML, None, &all()).unwrap();
    assert_eq!(name, "pet_store");
    assert_eq!(conn.base_url, "https://eu.pets.example.com/v2");
    assert_eq!(
        conn.auth,
        Auth::ClientCredentials {
            token_url: "https://eu.pets.example.com/oauth/token".into(),
            scopes: vec!["pets.read".into()],
            secret: "pet_store_client_secret".into()
        }
    );
    let names: Vec<&str> = conn.calls.iter().map(|c| c.name.as_str()).collect();
    // Paths in order of their text (the JSON model keeps no document order).
    assert_eq!(names, ["list_pets", "list_pets_2", "get_pet_by_id", "delete_pets_petid", "put_pets_petid_photo"]);
    let get = &conn.calls[2];
    assert_eq!(get.path, "/pets/<petid>");
    assert_eq!(get.description.as_deref(), Some("One pet"));
    // The path parameter was not marked required: it is anyway.
    assert!(get.params.iter().any(|p| p.name == "petid" && p.required));
    assert_eq!(get.headers, vec![("X-Request-Id".into(), "<x_request_id>".into()), ("X-Key".into(), "<x_key>".into())]);
    assert_eq!(
        get.params.iter().find(|p| p.name == "x_request_id").unwrap().description.as_deref(),
        Some("(string, uuid)")
    );
    let list = &conn.calls[0];
    assert_eq!(
        list.params,
        vec![Param {
            name: "limit".into(),
            required: false,
            default: Some(serde_json::json!(20)),
            description: Some("(integer) How many".into()),
            private: None,
            ty: Some("integer"),
            one_of: None,
        }]
    );
    let post = &conn.calls[1];
    assert_eq!(post.body, Some(serde_json::json!({"name": "<name>", "tag": "<tag>"})));
    assert!(
        post.params
            .iter()
            .any(|p| p.name == "name" && p.required && p.description.as_deref() == Some("(string) The name"))
    );
    let tag = post.params.iter().find(|p| p.name == "tag").unwrap();
    assert_eq!(tag.default, Some(serde_json::json!("cat")));
    assert_eq!(
        (tag.ty, tag.one_of.clone()),
        (Some("string"), Some(vec![serde_json::json!("cat"), serde_json::json!("dog")]))
    );
    assert!(conn.notes.iter().any(|n| n.contains("form or file body")), "{:?}", conn.notes);
    check(&name, &conn);
}

#[test]
fn tags_and_operations_choose_a_subset_and_pick_the_auth_they_use() {
    let (_, conn) = import(V3_YAML, Some("p"), &Select { tags: vec!["admin".into()], operations: vec![] }).unwrap();
    assert_eq!(conn.calls.len(), 1);
    assert_eq!(conn.auth, Auth::ApiKeyHeader { name: "X-Key".into(), prefix: None, secret: "p_key".into() });
    let (_, conn) =
        import(V3_YAML, Some("p"), &Select { tags: vec![], operations: vec!["getPetById".into()] }).unwrap();
    assert_eq!(conn.calls.len(), 1);
    // The header the auth method fills is not a parameter of the call.
    let (_, conn) = import(
        V3_YAML,
        Some("p"),
        &Select { tags: vec![], operations: vec!["getPetById".into(), "delete_pets_petid".into()] },
    )
    .unwrap();
    assert_eq!(conn.calls.len(), 2);
}

const V2_JSON: &str = r##"{
  "swagger": "2.0",
  "info": {"title": "Legacy", "version": "1"},
  "host": "legacy.example.org", "basePath": "/api/", "schemes": ["http", "https"],
  "securityDefinitions": {"b": {"type": "basic"}, "o": {"type": "oauth2", "flow": "accessCode",
     "authorizationUrl": "https://legacy.example.org/authorize", "tokenUrl": "https://legacy.example.org/token", "scopes": {"a": "A"}}},
  "security": [{"o": ["a"]}],
  "paths": {
    "/items/{id}": {"put": {
      "parameters": [{"name": "id", "in": "path", "type": "integer"},
                     {"name": "body", "in": "body", "schema": {"$ref": "#/definitions/Item"}},
                     {"name": "q", "in": "query", "type": "string", "default": "x", "required": true}]}},
    "/upload?kind=file#x": {"post": {"operationId": "upload", "parameters": [{"name": "f", "in": "formData", "type": "file"}]}},
    "/raw": {"post": {"operationId": "raw", "parameters": [{"name": "b", "in": "body", "required": true, "schema": {"type": "array"}}]}}
  },
  "definitions": {"Item": {"type": "object", "properties": {"n": {"type": "number"}, "self": {"$ref": "#/definitions/Item"}}}}
}"##;

#[test]
fn swagger_2_json_with_oauth_and_bodies() {
    let (name, conn) = import(V2_JSON, None, &all()).unwrap();
    assert_eq!(name, "legacy");
    assert_eq!(conn.base_url, "https://legacy.example.org/api");
    assert!(matches!(&conn.auth, Auth::AuthorizationCode { scopes, .. } if scopes == &["a"]));
    let put = &conn.calls[0];
    assert_eq!(put.name, "put_items_id");
    assert_eq!(put.path, "/items/<id>");
    assert_eq!(put.body, Some(serde_json::json!({"n": "<n>", "self": "<self>"})));
    // `required` and a default: the default wins (the configuration refuses both).
    assert!(put.params.iter().any(|p| p.name == "q" && !p.required && p.default == Some(serde_json::json!("x"))));
    assert_eq!(conn.calls[1].body, Some(serde_json::json!("<body>")));
    assert_eq!(
        (conn.calls[2].path.as_str(), &conn.calls[2].query[..]),
        ("/upload", &[("kind".to_owned(), "file".to_owned())][..])
    );
    check(&name, &conn);
}

#[test]
fn documents_that_are_not_openapi_are_refused_clearly() {
    assert!(import("{\"a\": 1}", None, &all()).unwrap_err().to_string().contains("not an OpenAPI document"));
    assert!(import("openapi: 4.0.0\npaths: {}", None, &all()).unwrap_err().to_string().contains("OpenAPI 4.0.0"));
    assert!(import("{not json", None, &all()).unwrap_err().to_string().contains("not valid JSON"));
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
                c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
                e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    assert!(parse_document(bomb).unwrap_err().to_string().contains("aliases"));
    assert_eq!(parse_document("a: &x [1]\nb: *x\n").unwrap(), serde_json::json!({"a": [1], "b": [1]}));
}

/// Real documents disagree with themselves: a default in text for an integer, a default
/// outside its enum, a list type in a query, OpenAPI 3.1's `[T, "null"]`, nulls in an enum,
/// types that are no JSON type. What is kept always passes `check`.
#[test]
fn types_and_enums_are_kept_as_far_as_they_agree() {
    const DOC: &str = r##"
openapi: 3.1.0
info: {title: Quirks, version: "1"}
servers: [{url: https://q.example.com}]
paths:
  /items/{id}:
    get:
      operationId: items
      parameters:
        - {name: id, in: path, required: true, schema: {type: [integer, "null"]}}
        - {name: limit, in: query, schema: {type: integer, default: "20", enum: ["10", "20"]}}
        - {name: sort, in: query, schema: {type: string, enum: [asc, desc, null], default: newest}}
        - {name: ids, in: query, schema: {type: array, items: {type: integer}}}
        - {name: n, in: query, schema: {type: int, default: 3}}
        - {name: when, in: query, schema: {type: string, default: 5}}
"##;
    let (name, conn) = import(DOC, None, &all()).unwrap();
    let p = |n: &str| conn.calls[0].params.iter().find(|p| p.name == n).unwrap().clone();
    assert_eq!(p("id").ty, Some("integer"));
    let limit = p("limit");
    assert_eq!(
        (limit.ty, limit.default, limit.one_of),
        (Some("integer"), Some(serde_json::json!(20)), Some(vec![serde_json::json!(10), serde_json::json!(20)]))
    );
    let sort = p("sort");
    assert_eq!((sort.ty, sort.one_of), (Some("string"), None), "the default is outside the enum: the enum goes");
    assert_eq!(p("ids").ty, None, "a list cannot go into a query");
    assert_eq!(p("n").ty, None, "`int` is no JSON type");
    assert_eq!(p("when").ty, None, "the default is no string");
    let text = check(&name, &conn);
    assert!(text.contains("limit = { default = 20, type = \"integer\", enum = [10, 20]"), "{text}");
}
