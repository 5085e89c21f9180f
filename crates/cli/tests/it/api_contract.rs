//! The HTTP API's contract: the OpenAPI document (valid for an independent validator, and
//! naming every route the router serves), `Idempotency-Key` on the `POST`s that create
//! something, cursor pagination on every list, named calls without a body, and API connectors
//! checked against the egress rules when they are written.

use std::collections::BTreeSet;

use latchkey_testkit::fake_oauth::FakeOAuth;
use latchkey_testkit::recorder::Recorder;
use reqwest::Method;
use serde_json::{Value, json};

use super::*;

const VALIDATOR_MISSING: &str = "openapi-spec-validator is not installed: run `pip install \
     'openapi-spec-validator==0.7.2'` (or `bash scripts/install-test-peers`)";

#[tokio::test]
async fn the_openapi_document_validates_and_covers_every_route() {
    let lk = Latchkey::start(bin(), "");
    let r = lk.http.get(lk.url("/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let text = r.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    // An independent validator (Python's openapi-spec-validator) judges the document.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let installed = std::process::Command::new("python3").args(["-c", "import openapi_spec_validator"]).output();
    assert!(installed.is_ok_and(|o| o.status.success()), "{VALIDATOR_MISSING}");
    let script = "import sys\n\
        from openapi_spec_validator import validate\n\
        from openapi_spec_validator.readers import read_from_filename\n\
        spec, _ = read_from_filename(sys.argv[1])\n\
        validate(spec)\n\
        print('valid')\n";
    let out = std::process::Command::new("python3").args(["-c", script]).arg(&file).output().unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("valid"),
        "the validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every route the router serves, with each method, is in the document, and nothing else.
    let any = ["get", "put", "post", "delete", "options", "head", "patch"];
    let mut served = BTreeSet::new();
    for (path, methods) in latchkey_server::ROUTES {
        let path = path.replace("{*", "{");
        for m in *methods {
            let ms: Vec<&str> = if *m == "any" { any.to_vec() } else { vec![*m] };
            served.extend(ms.into_iter().map(|m| format!("{m} {path}")));
        }
    }
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in item.as_object().unwrap().keys().filter(|k| any.contains(&k.as_str())) {
            documented.insert(format!("{m} {path}"));
        }
    }
    assert_eq!(served.difference(&documented).collect::<Vec<_>>(), Vec::<&String>::new(), "served, not documented");
    assert_eq!(documented.difference(&served).collect::<Vec<_>>(), Vec::<&String>::new(), "documented, not served");
    assert!(served.len() > 40, "the router's list is the whole API: {}", served.len());

    // A route the document names is served: a GET without parameters answers, never 404.
    for (path, item) in doc["paths"].as_object().unwrap() {
        if item.get("get").is_some() && !path.contains('{') {
            let r = lk.http.get(lk.url(path)).send().await.unwrap();
            assert_ne!(r.status(), 404, "{path}");
        }
    }
    // The error shape: every code Latchkey writes, and the header that carries it.
    let error = &doc["components"]["responses"]["Error"];
    assert_eq!(error["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorEnvelope");
    let codes = error["headers"]["Latchkey-Error"]["schema"]["enum"].as_array().unwrap();
    for code in ["unauthenticated", "not_found", "egress_refused", "idempotency_key_reused", "internal"] {
        assert!(codes.iter().any(|c| c == code), "{code}");
    }
}

fn idempotent(lk: &Latchkey, key: &str, body: Value) -> reqwest::RequestBuilder {
    lk.admin_req(Method::POST, "/v1/admin/keys").header("Idempotency-Key", key).json(&body)
}

#[tokio::test]
async fn an_idempotent_replay_returns_the_first_answer_and_another_body_is_refused() {
    let lk = Latchkey::start(bin(), "");
    let body = json!({"environment": "live", "name": "ci"});
    let first = idempotent(&lk, "k-1", body.clone()).send().await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first = first.text().await.unwrap();
    // The same key and body: the first answer, status and body, and no second key.
    let again = idempotent(&lk, "k-1", body.clone()).send().await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.text().await.unwrap(), first, "the first answer, byte for byte");
    let keys = Reply::read(lk.admin_req(Method::GET, "/v1/admin/keys").send().await.unwrap()).await.json();
    let named = keys["keys"].as_array().unwrap().iter().filter(|k| k["name"] == "ci").count();
    assert_eq!(named, 1, "one key was made");
    // The replayed key works: it is the key that was made.
    let made: Value = serde_json::from_str(&first).unwrap();
    let r = lk.http.post(lk.url("/v1/users")).bearer_auth(made["key"].as_str().unwrap());
    assert_eq!(r.json(&json!({"id": "u1"})).send().await.unwrap().status(), 200);

    // The same key with another body: refused, naming the header, and nothing made.
    let r =
        Reply::read(idempotent(&lk, "k-1", json!({"environment": "dev", "name": "ci"})).send().await.unwrap()).await;
    assert_eq!((r.status, r.error_code()), (422, Some("idempotency_key_reused")), "{}", r.body);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("Idempotency-Key"), "{}", r.body);
    // ... and on another route.
    let r = lk.admin_req(Method::POST, "/v1/admin/audit-hash").header("Idempotency-Key", "k-1");
    assert_eq!(r.json(&json!({"value": "x"})).send().await.unwrap().status(), 404, "read only where it creates");

    // A request that failed keeps nothing: the same key then works with a corrected body.
    let r = Reply::read(idempotent(&lk, "k-2", json!({"environment": "nope"})).send().await.unwrap()).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = idempotent(&lk, "k-2", json!({"environment": "dev"})).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = Reply::read(idempotent(&lk, "bad key", body.clone()).send().await.unwrap()).await;
    assert_eq!(r.error_code(), Some("invalid_params"), "{}", r.body);

    // Keys are per caller: another app key's same key is a new request.
    let (a, b) = (lk.app_key("live").await, lk.app_key("live").await);
    let mint = |app: &str| {
        lk.http.post(lk.url("/v1/users/u2/tokens")).bearer_auth(app).header("Idempotency-Key", "mint-1").send()
    };
    let r = lk.http.post(lk.url("/v1/users")).bearer_auth(&a).json(&json!({"id": "u2"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let one = mint(&a).await.unwrap();
    assert_eq!(one.status(), 201);
    let one = one.text().await.unwrap();
    let replayed = mint(&a).await.unwrap();
    assert_eq!(replayed.headers()["cache-control"], "no-store");
    assert_eq!(replayed.text().await.unwrap(), one, "the same tokens");
    let other = mint(&b).await.unwrap();
    assert!(other.headers().get("idempotent-replayed").is_none());
    assert_ne!(other.text().await.unwrap(), one, "another caller's request is its own");
}

/// Every item of the list at `path`, walked one per page with `starting_after`; asserts each
/// page holds at most one and that more than one page was needed.
async fn walk(lk: &Latchkey, bearer: &str, path: &str, list: &str, id: &str) -> Vec<String> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let get = |url: String| async move {
        Reply::read(lk.http.get(lk.url(&url)).bearer_auth(bearer).send().await.unwrap()).await
    };
    let all = get(format!("{path}{sep}limit=1000")).await;
    assert_eq!(all.status, 200, "{path}: {}", all.body);
    assert_eq!(all.json()["has_more"], false, "{path}");
    let everything: Vec<String> =
        all.json()[list].as_array().unwrap().iter().map(|v| v[id].as_str().unwrap().to_owned()).collect();
    assert!(everything.len() >= 2, "{path}: too few items to page through: {}", all.body);
    let (mut seen, mut after, mut pages) = (Vec::new(), None::<String>, 0);
    loop {
        let url = match &after {
            None => format!("{path}{sep}limit=1"),
            Some(a) => format!("{path}{sep}limit=1&starting_after={a}"),
        };
        let page = get(url).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let items = page.json()[list].as_array().unwrap().clone();
        assert!(items.len() <= 1, "{path}: limit=1 gave {}", items.len());
        pages += 1;
        seen.extend(items.iter().map(|v| v[id].as_str().unwrap().to_owned()));
        after = seen.last().cloned();
        if page.json()["has_more"] == false {
            break;
        }
        assert!(pages <= everything.len(), "{path}: has_more never ends");
    }
    assert_eq!(seen, everything, "{path}: every item once, in order");
    assert!(pages >= 2, "{path}");
    let r = get(format!("{path}{sep}limit=0")).await;
    assert_eq!(r.error_code(), Some("invalid_params"), "{path}: {}", r.body);
    seen
}

#[tokio::test]
async fn every_list_paginates() {
    let fake = FakeOAuth::start().await;
    let lk = Latchkey::start(
        bin(),
        "[server]\napi_connectors_private_egress = true\nreturn_to_allow = [\"https://app.example.com/\"]\n",
    );
    let admin = lk.admin().to_owned();
    lk.put_secret("cs", "live", "fake-secret").await;
    lk.put_secret("other", "dev", "x").await;
    for name in ["fake", "fake2"] {
        let def = json!({"base_url": fake.base_url, "auth": {
            "method": "oauth2_authorization_code", "authorize_url": format!("{}/authorize", fake.base_url),
            "token_url": fake.token_url, "client_id": "app", "client_secret": {"secret": "cs"}}});
        let path = format!("/v1/admin/connectors/{name}");
        let r = Reply::read(lk.admin_req(Method::PUT, &path).json(&def).send().await.unwrap()).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let app = lk.app_key("live").await;
    for (connector, user) in [("fake", "ada"), ("fake", "bob"), ("fake2", "ada")] {
        super::connections::connect_through(&lk, &app, connector, user).await;
    }
    walk(&lk, &admin, "/v1/admin/connectors", "connectors", "name").await;
    walk(&lk, &admin, "/v1/admin/secrets", "secrets", "name").await;
    walk(&lk, &admin, "/v1/admin/keys", "keys", "id").await;
    walk(&lk, &admin, "/v1/admin/events", "events", "id").await;
    walk(&lk, &admin, "/v1/admin/events?kind=connection.created", "events", "id").await;
    walk(&lk, &admin, "/v1/admin/tokens", "tokens", "id").await;
    let all = walk(&lk, &admin, "/v1/admin/connections", "connections", "id").await;
    assert_eq!(all.len(), 3);
    walk(&lk, &app, "/v1/connections?user=ada", "connections", "id").await;
    // A cursor that names nothing is refused, not read as the start.
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/keys?starting_after=nope").send().await.unwrap()).await;
    assert_eq!(r.error_code(), Some("invalid_params"), "{}", r.body);
}

#[tokio::test]
async fn a_named_call_without_parameters_takes_an_empty_body() {
    let up = Recorder::start().await;
    let lk = with_connector(&up.base_url, r#"{ method = "none" }"#, "[connectors.up.calls.ping]\npath = \"/ping\"\n");
    let app = lk.app_key("live").await;
    let url = lk.url("/v1/connectors/up/calls/ping");
    // No body and no Content-Type, and an empty JSON body: both are `{}`.
    let r = Reply::read(lk.http.post(&url).bearer_auth(&app).send().await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = lk.http.post(&url).bearer_auth(&app).header("content-type", "application/json").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(up.count(), 2);
    assert_eq!(up.last().uri, "/ping");
    // A body that is there must still be JSON.
    let r = Reply::read(lk.http.post(&url).bearer_auth(&app).body("x").send().await.unwrap()).await;
    assert_eq!(r.error_code(), Some("invalid_params"), "{}", r.body);
    assert_eq!(up.count(), 2);
}

#[tokio::test]
async fn an_api_connector_with_a_private_token_url_is_refused_when_written() {
    let lk = Latchkey::start(bin(), "");
    for (token_url, field) in [("https://10.1.2.3/token", "auth.token_url"), ("https://[::1]:9/t", "auth.token_url")] {
        let def = json!({"base_url": "https://8.8.8.8", "auth": {"method": "oauth2_client_credentials",
            "token_url": token_url, "client_id": "app", "client_secret": {"secret": "s"}}});
        let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/c").json(&def).send().await.unwrap()).await;
        assert_eq!((r.status, r.error_code()), (422, Some("egress_refused")), "{}", r.body);
        assert_eq!(r.json()["error"]["field"], field);
        assert!(r.json()["error"]["message"].as_str().unwrap().starts_with(&format!("{field}: ")), "{}", r.body);
    }
    let def = json!({"base_url": "https://169.254.169.254/latest", "auth": {"method": "none"}});
    let r = Reply::read(lk.admin_req(Method::PUT, "/v1/admin/connectors/c").json(&def).send().await.unwrap()).await;
    assert_eq!((r.status, r.json()["error"]["field"].as_str()), (422, Some("base_url")), "{}", r.body);
    let r = Reply::read(lk.admin_req(Method::GET, "/v1/admin/connectors/c").send().await.unwrap()).await;
    assert_eq!(r.status, 404, "nothing was stored");
}

/// Keys are kept in the store: a retry that reaches another instance gets the first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_replay_works_across_instances_on_postgres() {
    let db = super::at_rest::Database::create();
    let key = latchkey_vault::MasterKey::generate();
    let key_text = secrecy::ExposeSecret::expose_secret(&key.to_base64()).to_owned();
    let env = vec![("LATCHKEY_DATABASE_URL".to_owned(), db.url()), ("LATCHKEY_MASTER_KEY".to_owned(), key_text)];
    let start = || Latchkey::start_with(bin(), Options { env: env.clone(), ..Options::default() }).unwrap();
    let (first, second) = (start(), start());
    let app = first.app_key("live").await;
    let r = first.http.post(first.url("/v1/users")).bearer_auth(&app).json(&json!({"id": "u"})).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mint = |lk: &Latchkey| {
        lk.http.post(lk.url("/v1/users/u/tokens")).bearer_auth(&app).header("Idempotency-Key", "across-1").send()
    };
    let one = mint(&first).await.unwrap();
    assert_eq!(one.status(), 201);
    let one = one.text().await.unwrap();
    let two = mint(&second).await.unwrap();
    assert_eq!((two.status().as_u16(), two.headers()["idempotent-replayed"].to_str().unwrap()), (201, "true"));
    assert_eq!(two.text().await.unwrap(), one, "the other instance answered with the first answer");
}
