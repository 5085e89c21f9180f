//! `GET /openapi.json`: the HTTP API's contract, an OpenAPI 3.1 document generated from the
//! code (utoipa: `ToSchema` on the wire types, `#[utoipa::path]` on the handlers). Built once,
//! on the first request, and served as bytes: the call path does not change.
//!
//! `tests` checks that every route the router serves (`routes::ROUTES`) is in the document,
//! and the end-to-end suite validates it with an independent validator.

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, header};
use latchkey_core::ErrorCode;
use utoipa::OpenApi as _;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, Ref, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Header, OpenApi, RefOr, Response as Answer};

use crate::routes::{admin, calls, health, identity, oauth};
use crate::wire;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Latchkey",
        description = "A self-hosted API connector and credential broker. Every error Latchkey writes is \
            `{\"error\": {\"code\", \"doc_url\", \"message\", ..., \"request_id\"}}` with the header \
            `Latchkey-Error: <code>`; every answer carries `Latchkey-Request-Id`. Lists answer \
            one page (`limit`, `starting_after`, `has_more`); `POST`s that create something take an \
            `Idempotency-Key`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        health::healthz, health::readyz, health::metrics, serve, crate::docs::errors,
        admin::list_connectors, admin::get_connector, admin::put_connector, admin::delete_connector,
        admin::list_providers, admin::get_provider,
        admin::list_secrets, admin::put_secret, admin::delete_secret,
        admin::list_keys, admin::create_key, admin::delete_key,
        admin::list_events, admin::list_tokens, admin::audit_hash,
        oauth::admin_list, oauth::admin_delete,
        calls::named_call, proxy_bare, proxy_slash, proxy_path,
        oauth::connect, oauth::connect_many, oauth::list, oauth::get_one, oauth::put_one, oauth::delete_one,
        identity::upsert_user, identity::get_user, identity::delete_user, identity::mint,
        identity::token, identity::introspect, identity::revoke, identity::jwks, identity::openid_configuration,
        oauth::exchange, oauth::connect_as_user, oauth::login, oauth::start, oauth::callback, oauth::connector_callback,
        crate::mcp_auth::metadata, crate::mcp_auth::register, crate::mcp_auth::app_sign_in,
        crate::mcp_auth::authorize, crate::mcp_auth::decide, crate::mcp_auth::signed_in, crate::mcp_auth::continue_sign_in,
    ),
    components(schemas(wire::ErrorEnvelope, wire::ErrorBody, wire::ConfigProblem, wire::ExchangedToken)),
    modifiers(&Contract),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document."),
        (name = "admin", description = "Connectors, secrets, keys, events, tokens and connections, with an admin key."),
        (name = "calls", description = "Named calls and the passthrough proxy, with an app key (or a user token for `access = \"user\"` calls)."),
        (name = "connections", description = "Per-user connections and connect links."),
        (name = "identity", description = "Users, user tokens, the token endpoint, introspection, revocation, discovery."),
        (name = "oauth", description = "The browser's side of connections and sign-in."),
    )
)]
struct Api;

/// `GET /openapi.json`: this document.
#[utoipa::path(get, path = "/openapi.json", tag = "health", responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object)))]
pub async fn serve() -> Response {
    let mut r = document().into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// The document as JSON bytes, built on first use.
pub fn document() -> Bytes {
    static DOCUMENT: OnceLock<Bytes> = OnceLock::new();
    DOCUMENT.get_or_init(|| Bytes::from(Api::openapi().to_json().unwrap_or_default())).clone()
}

const PROXY: &str = "The upstream's answer, streamed as it came (status, headers but hop-by-hop and `set-cookie`, \
    body). Latchkey's own errors carry `Latchkey-Error`.";

/// `ANY /v1/proxy/{connector}`: the connector's `base_url` itself.
#[utoipa::path(method(get, put, post, delete, options, head, patch), path = "/v1/proxy/{connector}", tag = "calls",
    params(("connector" = String, Path), ("Latchkey-User" = Option<String>, Header, description = "Whose connection to use, on a per-user connector.")),
    security(("app_key" = [])), responses((status = "default", description = PROXY, content_type = "*/*", body = String)))]
#[allow(dead_code)]
fn proxy_bare() {}

/// `ANY /v1/proxy/{connector}/`.
#[utoipa::path(method(get, put, post, delete, options, head, patch), path = "/v1/proxy/{connector}/", tag = "calls",
    params(("connector" = String, Path), ("Latchkey-User" = Option<String>, Header, description = "Whose connection to use, on a per-user connector.")),
    security(("app_key" = [])), responses((status = "default", description = PROXY, content_type = "*/*", body = String)))]
#[allow(dead_code)]
fn proxy_slash() {}

/// `ANY /v1/proxy/{connector}/{path}`: `base_url` + `/{path}` (any number of segments).
#[utoipa::path(method(get, put, post, delete, options, head, patch), path = "/v1/proxy/{connector}/{path}", tag = "calls",
    params(("connector" = String, Path), ("path" = String, Path, description = "The rest of the upstream's path; it may hold `/`."),
        ("Latchkey-User" = Option<String>, Header, description = "Whose connection to use, on a per-user connector.")),
    security(("app_key" = [])), responses((status = "default", description = PROXY, content_type = "*/*", body = String)))]
#[allow(dead_code)]
fn proxy_path() {}

/// What the derive cannot say: the security schemes, the error answer every operation may
/// give, each error code, and one operation id per operation.
struct Contract;

impl utoipa::Modify for Contract {
    fn modify(&self, api: &mut OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        for (name, description) in [
            ("admin_key", "An admin key, `lk_admin_…`: everything under `/v1/admin`."),
            ("app_key", "An app key, `lk_live_…` or `lk_dev_…`, which fixes the environment."),
            ("user_token", "A user token: a JWT Latchkey issued (`POST /v1/users/{id}/tokens`)."),
        ] {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.description = Some(description.to_owned());
            if name == "user_token" {
                http.bearer_format = Some("JWT".to_owned());
            }
            components.add_security_scheme(name, SecurityScheme::Http(http));
        }
        let codes = Object::builder()
            .schema_type(Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .description(Some("The error's code, also in the body's `error.code`."))
            .build();
        let mut latchkey_error = Header::new(Schema::Object(codes));
        latchkey_error.description = Some("The error's code.".to_owned());
        let error = Answer::builder()
            .description(
                "An error Latchkey wrote: `{\"error\": {\"code\", \"message\", \"doc_url\", \"request_id\", \
             ...details}}`; a 401 carries `WWW-Authenticate: Bearer`.",
            )
            .content("application/json", Content::new(Some(Ref::from_schema_name("ErrorEnvelope"))))
            .header("Latchkey-Error", latchkey_error)
            .header(REQUEST_ID, request_id())
            .build();
        components.responses.insert("Error".to_owned(), RefOr::T(error));
        components.schemas.insert("CallParameter".to_owned(), RefOr::T(Schema::Object(call_parameter())));
        let mut seen = std::collections::BTreeSet::new();
        for item in api.paths.paths.values_mut() {
            for (method, op) in [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("options", &mut item.options),
                ("head", &mut item.head),
                ("patch", &mut item.patch),
            ] {
                if let Some(op) = op {
                    contract(op, method, &mut seen);
                }
            }
        }
    }
}

const REQUEST_ID: &str = "Latchkey-Request-Id";

/// `Latchkey-Request-Id`, on every answer.
fn request_id() -> Header {
    let mut header = Header::new(Schema::Object(Object::builder().schema_type(Type::String).build()));
    header.description = Some(
        "The request's id: the caller's `X-Request-Id` when it is 1 to 128 letters, digits and `-_.:+/=@`, else one \
         Latchkey made. Also in an error body's `request_id` and in the request's log line."
            .to_owned(),
    );
    header
}

/// Every operation may answer an error; every answer names the request; each operation has
/// its own id.
fn contract(op: &mut Operation, method: &str, seen: &mut std::collections::BTreeSet<String>) {
    for answer in op.responses.responses.values_mut() {
        if let RefOr::T(answer) = answer {
            answer.headers.insert(REQUEST_ID.to_owned(), RefOr::T(request_id()));
        }
    }
    for class in ["4XX", "5XX"] {
        op.responses
            .responses
            .entry(class.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::new("#/components/responses/Error")));
    }
    let id = op.operation_id.clone().unwrap_or_else(|| method.to_owned());
    let id = if seen.contains(&id) { format!("{id}_{method}") } else { id };
    seen.insert(id.clone());
    op.operation_id = Some(id);
}

/// One entry of a named call's `params` in a connector definition
/// (`calls.CALL.params.NAME`, the `[connectors.NAME.calls.CALL.params]` table of the file).
fn call_parameter() -> Object {
    let field = |ty: Option<Type>, about: &str| {
        let mut o = Object::builder().description(Some(about));
        if let Some(t) = ty {
            o = o.schema_type(t);
        }
        o.build()
    };
    let any = |about: &str| field(None, about);
    let types = Object::builder()
        .schema_type(Type::String)
        .enum_values(Some(latchkey_core::config::ParamType::NAMES.split(", ")))
        .description(Some(
            "The JSON type a caller's value must have; any value when absent. Text that reads as an integer, a \
             number or a boolean (`\"5\"`, `\"true\"`) is taken as one. `array` and `object` parameters go into \
             the JSON body only. A wrong type is `invalid_params` naming the parameter and the type.",
        ));
    let allowed = utoipa::openapi::schema::Array::builder().items(Object::new()).min_items(Some(1)).description(Some(
        "The values a caller may send (of `type`, when given); another is `invalid_params` naming the parameter \
         and listing them.",
    ));
    Object::builder()
        .description(Some(
            "A named call's parameter: `calls.CALL.params.NAME` of a connector definition. Checked at load: `type`, \
             `enum`, `default` and `value` must agree.",
        ))
        .property("required", field(Some(Type::Boolean), "The caller must send it (not with `default`)."))
        .property("default", any("Used when the caller does not send it."))
        .property("private", field(Some(Type::Boolean), "Fixed by `value`: callers can neither send nor read it."))
        .property("value", any("A private parameter's value."))
        .property("description", field(Some(Type::String), "Shown to people and, at `/mcp`, to agents."))
        .property("type", types.build())
        .property("enum", allowed.build())
        .additional_properties(Some(utoipa::openapi::schema::AdditionalProperties::FreeForm(false)))
        .build()
}

/// The schema of `code` in an error body: one of [`ErrorCode::ALL`].
pub fn error_code() -> Object {
    Object::builder().schema_type(Type::String).enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str()))).build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    /// Every route the router serves is in the document with each of its methods, and the
    /// document has nothing the router does not serve.
    #[test]
    fn every_route_is_in_the_document() {
        let doc: Value = serde_json::from_slice(&super::document()).unwrap();
        let any = ["get", "put", "post", "delete", "options", "head", "patch"];
        let mut served = BTreeSet::new();
        for (path, methods) in crate::routes::ROUTES {
            let path = path.replace("{*", "{");
            for m in *methods {
                if *m == "any" {
                    served.extend(any.iter().map(|m| (path.clone(), (*m).to_owned())));
                } else {
                    served.insert((path.clone(), (*m).to_owned()));
                }
            }
        }
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for m in item.as_object().unwrap().keys().filter(|k| any.contains(&k.as_str())) {
                documented.insert((path.clone(), m.clone()));
            }
        }
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }

    /// `Idempotency-Key` is described on exactly the `POST`s that read it.
    #[test]
    fn idempotency_key_is_on_the_creating_posts() {
        let doc: Value = serde_json::from_slice(&super::document()).unwrap();
        let mut with = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let params = op["parameters"].as_array().cloned().unwrap_or_default();
                if params.iter().any(|p| p["name"] == "Idempotency-Key") {
                    with.insert(format!("{method} {path}"));
                }
            }
        }
        let creates: BTreeSet<String> = crate::idempotency::CREATES.iter().map(|p| format!("post {p}")).collect();
        assert_eq!(with, creates);
    }

    /// The error shape names every code, and every operation may answer it.
    #[test]
    fn errors_and_security_are_described() {
        let doc: Value = serde_json::from_slice(&super::document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let codes = &doc["components"]["responses"]["Error"]["headers"]["Latchkey-Error"]["schema"]["enum"];
        assert_eq!(codes.as_array().unwrap().len(), latchkey_core::ErrorCode::ALL.len());
        assert_eq!(
            doc["components"]["responses"]["Error"]["headers"]["Latchkey-Request-Id"]["schema"]["type"],
            "string"
        );
        let error_body = &doc["components"]["schemas"]["ErrorBody"];
        // The details are flattened in: the named fields are the second part of an `allOf`.
        let named = &error_body["allOf"][1];
        for field in ["code", "message", "doc_url"] {
            assert!(named["required"].as_array().unwrap().iter().any(|r| r == field), "{field}: {error_body}");
        }
        assert_eq!(named["properties"]["request_id"]["type"], serde_json::json!(["string", "null"]));
        let body = serde_json::to_string(error_body).unwrap();
        for c in latchkey_core::ErrorCode::ALL {
            assert!(body.contains(&format!("\"{}\"", c.as_str())), "{c} is not in ErrorBody");
        }
        for s in ["admin_key", "app_key", "user_token"] {
            assert_eq!(doc["components"]["securitySchemes"][s]["scheme"], "bearer", "{s}");
        }
        // A call parameter's fields, `type` and `enum` among them.
        let param = &doc["components"]["schemas"]["CallParameter"];
        assert_eq!(
            param["properties"]["type"]["enum"],
            serde_json::json!(["string", "integer", "number", "boolean", "array", "object"])
        );
        assert_eq!(param["properties"]["enum"]["type"], "array");
        assert_eq!(param["additionalProperties"], false);
        let mut ids = BTreeSet::new();
        for item in doc["paths"].as_object().unwrap().values() {
            for op in item.as_object().unwrap().values().filter(|o| o.get("responses").is_some()) {
                assert!(op["responses"].get("4XX").is_some());
                for (status, answer) in op["responses"].as_object().unwrap() {
                    let named = answer.get("$ref").is_some() || answer["headers"].get("Latchkey-Request-Id").is_some();
                    assert!(named, "{} {status} has no Latchkey-Request-Id", op["operationId"]);
                }
                assert!(ids.insert(op["operationId"].as_str().unwrap().to_owned()), "duplicate operationId");
            }
        }
    }
}
