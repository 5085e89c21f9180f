//! `latchkey import curl|openapi|postman` (issue 17) on documents no one here wrote: httpbin's
//! own Swagger 2.0 document (served at `/spec.json` with flasgger), its OpenAPI 3.0 form
//! (npm `swagger2openapi --patch`) and its Postman collection (npm `openapi-to-postmanv2`),
//! and the real documents of npm `@readme/oas-examples`. The imported calls then run against
//! the real httpbin through Latchkey (`latchkey call`), and no credential reaches the file.

use std::path::{Path, PathBuf};
use std::process::Output;

use latchkey_testkit::canary::canary;
use latchkey_testkit::latchkey::{run_cli, test_client};
use latchkey_testkit::peers::httpbin::httpbin;
use latchkey_testkit::peers::importers;
use serde_json::Value;

use super::*;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A scratch directory (its `latchkey.toml` written by the imports) and its data directory.
struct Work {
    dir: tempfile::TempDir,
    data: PathBuf,
}

impl Work {
    /// With a store (`latchkey call` needs one), made by `key create` in an empty directory.
    fn new() -> Work {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let work = Work { dir, data };
        work.ok(&["key", "create", "--env", "dev"], None);
        work
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_cli(bin(), self.dir.path(), &self.data, &[], args, stdin)
    }

    #[track_caller]
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let out = self.cli(args, stdin);
        assert!(out.status.success(), "{args:?} failed: {}", text(&out));
        out
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("latchkey.toml")).unwrap_or_default()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `latchkey call` and the upstream's JSON answer.
    #[track_caller]
    fn call(&self, connector: &str, call: &str, params: &[&str]) -> Value {
        let mut args = vec!["call", connector, call];
        for p in params {
            args.extend(["-p", p]);
        }
        let out = self.ok(&args, None);
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)))
    }
}

#[test]
fn curl_with_a_bearer_token_keeps_it_out_of_the_file_and_the_call_runs_once_it_is_set() {
    let bin_ = httpbin();
    let work = Work::new();
    let token = canary("bearer");
    // From standard input: the token never is an argument (shell history, `ps`).
    let command = format!(
        "curl -sS \\\n  -H 'Authorization: Bearer {token}' \\\n  -H 'Accept: application/json' \\\n  '{}/bearer'",
        bin_.base_url
    );
    let out = work.ok(&["import", "curl", "--name", "bin", "--write"], Some(&command));
    let said = text(&out);
    let file = work.config();
    assert!(!file.contains(&token) && !said.contains(&token), "the token leaked:\n{file}\n{said}");
    assert!(
        file.contains(r#"auth = { method = "api_key_header", name = "Authorization", prefix = "Bearer", key = { secret = "bin_token" } }"#),
        "{file}"
    );
    assert!(said.contains("latchkey secret set bin_token"), "{said}");
    assert!(text(&work.ok(&["check"], None)).contains("ok, 1 connector"));

    // Without the secret the call says what is missing; with it httpbin accepts the token.
    let out = work.cli(&["call", "bin", "get_bearer"], None);
    assert!(!out.status.success() && text(&out).contains("bin_token"), "{}", text(&out));
    work.ok(&["secret", "set", "bin_token"], Some(&token));
    let answer = work.call("bin", "get_bearer", &[]);
    assert_eq!(answer["authenticated"], true);
    assert_eq!(answer["token"], token.as_str());

    // A second import of the same name is refused, the file untouched; --force replaces it.
    let before = work.config();
    let out = work.cli(&["import", "curl", "--name", "bin", "--write"], Some(&command));
    assert!(!out.status.success() && text(&out).contains("already has a connector `bin`"), "{}", text(&out));
    assert_eq!(work.config(), before);
    work.ok(&["import", "curl", "--name", "bin", "--call", "whoami", "--write", "--force"], Some(&command));
    assert!(work.config().contains("[connectors.bin.calls.whoami]") && !work.config().contains("get_bearer"));
}

#[test]
fn curl_with_basic_credentials_sets_the_secret_with_set_secrets_and_the_call_runs() {
    let bin_ = httpbin();
    let work = Work::new();
    std::fs::write(work.path("latchkey.toml"), "# mine\n[server]\nlisten = \"127.0.0.1:7420\"  # kept\n").unwrap();
    let password = canary("basic");
    let command = format!("curl -u alice:{password} {}/basic-auth/alice/{password}", bin_.base_url);
    let out = work.ok(&["import", "curl", "--name", "hb", "--write", "--set-secrets"], Some(&command));
    let said = text(&out);
    assert!(said.contains("secret `hb_password` set for live"), "{said}");
    let file = work.config();
    assert!(file.starts_with("# mine\n[server]\nlisten = \"127.0.0.1:7420\"  # kept\n"), "{file}");
    assert!(!file.contains(&password) && !said.contains(&password), "the password leaked:\n{file}\n{said}");
    assert!(
        file.contains(r#"auth = { method = "basic", username = "alice", password = { secret = "hb_password" } }"#),
        "{file}"
    );
    // httpbin wants the password in the path too: a parameter without default (never written).
    assert!(file.contains("path = \"/basic-auth/alice/<secret>\""), "{file}");
    let secret_param = format!("secret={password}");
    let answer = work.call("hb", "get_basic_auth_alice", &[&secret_param]);
    assert_eq!(answer, serde_json::json!({"authenticated": true, "user": "alice"}));
    // The stored password is what was sent: another path value makes httpbin refuse it.
    let out = work.cli(&["call", "hb", "get_basic_auth_alice", "-p", "secret=other"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn curl_query_and_json_body_become_parameters_and_run_against_httpbin() {
    let bin_ = httpbin();
    let work = Work::new();
    let command = format!(
        "curl -X POST '{}/anything/42?color=red' -H 'X-API-Key: {}' --json '{{\"name\": \"Ada\", \"age\": 36}}' --frobnicate",
        bin_.base_url,
        canary("key")
    );
    let out = work.ok(&["import", "curl", "--name", "any", "--write", "--set-secrets"], Some(&command));
    assert!(text(&out).contains("`--frobnicate` is not known here: ignored"), "{}", text(&out));
    let answer = work.call("any", "post_anything", &["name=Grace", "color=blue"]);
    assert_eq!(answer["url"], format!("{}/anything/42?color=blue", bin_.base_url));
    assert_eq!(answer["json"], serde_json::json!({"name": "Grace", "age": 36}));
    assert!(answer["headers"]["X-Api-Key"].as_str().unwrap().starts_with("CANARYkey"), "{answer}");
}

/// httpbin's own document (`/spec.json`, Swagger 2.0), fetched by `latchkey import openapi URL`.
#[test]
fn openapi_import_of_httpbins_own_swagger_document_fetched_by_url_runs() {
    let bin_ = httpbin();
    let work = Work::new();
    let url = bin_.url("/spec.json");
    let out = work.ok(&["import", "openapi", &url, "--name", "httpbin", "--base-url", &bin_.base_url, "--write"], None);
    assert!(text(&out).contains("written to latchkey.toml"), "{}", text(&out));
    let file = work.config();
    assert!(file.contains("[connectors.httpbin.calls.get_get]"), "{file}");
    assert!(text(&work.ok(&["check"], None)).contains("ok, 1 connector"));
    let answer = work.call("httpbin", "get_get", &[]);
    assert_eq!(answer["url"], bin_.url("/get"));
    let answer = work.call("httpbin", "get_anything_anything", &["anything=from-openapi"]);
    assert_eq!(answer["url"], bin_.url("/anything/from-openapi"));
    // A path parameter's value stays one segment.
    let out = work.cli(&["call", "httpbin", "get_anything_anything", "-p", "anything=../get"], None);
    assert!(!out.status.success(), "{}", text(&out));
    // The document's types are kept: `/cache/{value}` takes an integer, given as text by `-p`
    // (text that reads as one is taken) and refused when it is not one.
    assert!(file.contains("value = { required = true, type = \"integer\""), "{file}");
    let answer = work.call("httpbin", "get_cache_value", &["value=60"]);
    assert_eq!(answer["url"], bin_.url("/cache/60"));
    let out = work.cli(&["call", "httpbin", "get_cache_value", "-p", "value=sixty"], None);
    assert!(!out.status.success() && text(&out).contains("parameter `value` must be an integer"), "{}", text(&out));

    // --tag and --operation choose a subset; printed, not written.
    let out = work.ok(&["import", "openapi", &url, "--base-url", &bin_.base_url, "--tag", "Auth"], None);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        printed.contains("calls.get_bearer]") && printed.contains("calls.get_basic_auth_user_passwd]"),
        "{printed}"
    );
    assert!(!printed.contains("calls.get_get]"), "{printed}");
    let out = work.ok(&["import", "openapi", &url, "--base-url", &bin_.base_url, "--operation", "get_ip"], None);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(printed.matches("calls.").count(), 1, "{printed}");
    // The default name is the document's title; its server (httpbin.org) is the base URL.
    let out = work.ok(&["import", "openapi", &url, "--operation", "get_ip"], None);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("[connectors.httpbin_org]\nbase_url = \"https://httpbin.org\"")
    );
}

async fn spec_file(work: &Work) -> PathBuf {
    let body = test_client().get(httpbin().url("/spec.json")).send().await.unwrap().text().await.unwrap();
    assert!(
        body.contains("\"swagger\": \"2.0\""),
        "httpbin serves no Swagger document (is flasgger installed?): {body:.200}"
    );
    let path = work.path("httpbin-swagger.json");
    std::fs::write(&path, body).unwrap();
    path
}

#[tokio::test]
async fn openapi_3_converted_by_swagger2openapi_imports_and_runs() {
    let bin_ = httpbin();
    let work = Work::new();
    let swagger = spec_file(&work).await;
    let openapi = work.path("httpbin-openapi3.json");
    importers::swagger2openapi(&swagger, &openapi);
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&openapi).unwrap()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.0"));
    work.ok(
        &["import", "openapi", openapi.to_str().unwrap(), "--name", "hb3", "--base-url", &bin_.base_url, "--write"],
        None,
    );
    work.ok(&["check"], None);
    assert_eq!(work.call("hb3", "get_get", &[])["url"], bin_.url("/get"));
    let answer = work.call("hb3", "put_anything_anything", &["anything=v3"]);
    assert_eq!(
        (answer["method"].as_str(), answer["url"].as_str()),
        (Some("PUT"), Some(bin_.url("/anything/v3").as_str()))
    );
}

#[tokio::test]
async fn postman_collection_converted_by_openapi_to_postmanv2_imports_and_runs() {
    let bin_ = httpbin();
    let work = Work::new();
    let swagger = spec_file(&work).await;
    let collection = work.path("httpbin.postman_collection.json");
    importers::openapi_to_postman(&swagger, &collection);
    let out = work.ok(
        &["import", "postman", collection.to_str().unwrap(), "--name", "pm", "--base-url", &bin_.base_url, "--write"],
        None,
    );
    assert!(text(&out).contains("written to latchkey.toml"), "{}", text(&out));
    work.ok(&["check"], None);
    let file = work.config();
    // Find the call that GETs `/get` (its name comes from the request's name) and run it.
    let config: toml::Table = toml::from_str(&file).unwrap();
    let calls = config["connectors"]["pm"]["calls"].as_table().unwrap();
    let find = |method: &str, path: &str| {
        calls
            .iter()
            .find(|(_, c)| c.get("method").and_then(|m| m.as_str()) == Some(method) && c["path"].as_str() == Some(path))
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| panic!("no {method} {path} call in:\n{file}"))
    };
    let get = find("GET", "/get");
    assert_eq!(work.call("pm", &get, &[])["url"], bin_.url("/get"));
    // openapi-to-postmanv2's type hints (`<integer>`) are kept as types.
    let cache = find("GET", "/cache/<value>");
    assert_eq!(calls[&cache]["params"]["value"]["type"].as_str(), Some("integer"), "{file}");
    let anything = find("PATCH", "/anything/<anything>");
    let answer = work.call("pm", &anything, &["anything=from-postman"]);
    assert_eq!(
        (answer["method"].as_str(), answer["url"].as_str()),
        (Some("PATCH"), Some(bin_.url("/anything/from-postman").as_str()))
    );
}

/// Every document of `@readme/oas-examples` (real OpenAPI 3.0, 3.1 and Swagger 2.0 documents,
/// JSON and YAML, with their quirks) imports into a file `latchkey check` accepts.
#[test]
fn real_openapi_documents_of_a_registry_package_import_and_pass_check() {
    let work = Work::new();
    let mut imported = 0;
    for doc in importers::oas_examples() {
        let name = doc.file_stem().unwrap().to_string_lossy().into_owned();
        let out =
            work.cli(&["import", "openapi", doc.to_str().unwrap(), "--base-url", "https://api.example.com"], None);
        if name == "webhooks" {
            // OpenAPI 3.1 webhooks only: no operations to call.
            assert!(!out.status.success() && text(&out).contains("paths"), "{}", text(&out));
            continue;
        }
        assert!(out.status.success(), "{}: {}", doc.display(), text(&out));
        let file = work.path("one.toml");
        std::fs::write(&file, &out.stdout).unwrap();
        let check = work.cli(&["check", "--config", file.to_str().unwrap()], None);
        assert!(check.status.success(), "{}: {}", doc.display(), text(&check));
        imported += 1;
    }
    assert!(imported >= 60, "only {imported} documents");

    // The petstore's own server (plain http to another host) is written as https, with a note,
    // and its `api_key` header scheme is the auth (its implicit OAuth flow has no counterpart).
    let petstore = importers::oas_example("3.0/yaml/petstore.yaml");
    let out = work.ok(&["import", "openapi", petstore.to_str().unwrap()], None);
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(printed.contains("base_url = \"https://petstore.swagger.io/v2\""), "{printed}");
    assert!(text(&out).contains("plain http://"), "{}", text(&out));
    assert!(printed.contains("calls.find_pets_by_status]"), "{printed}");
    // Types and enums are kept: an int64 path parameter, a body property's allowed values.
    assert!(printed.contains("petid = { required = true, type = \"integer\""), "{printed}");
    assert!(
        printed.contains("status = { type = \"string\", enum = [\"available\", \"pending\", \"sold\"]"),
        "{printed}"
    );
}

#[test]
fn an_import_that_would_not_pass_check_is_refused_and_nothing_is_written() {
    let work = Work::new();
    std::fs::write(work.path("latchkey.toml"), "[server]\n").unwrap();
    let out = work.cli(&["import", "curl", "--name", "bad name", "--write"], Some("curl https://api.example.com/x"));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("does not pass `latchkey check`") && text(&out).contains("connector names"),
        "{}",
        text(&out)
    );
    assert_eq!(work.config(), "[server]\n");
    let out = work.cli(&["import", "openapi", Path::new("/nonexistent/doc.yaml").to_str().unwrap()], None);
    assert!(!out.status.success() && text(&out).contains("cannot read /nonexistent/doc.yaml"), "{}", text(&out));
}
