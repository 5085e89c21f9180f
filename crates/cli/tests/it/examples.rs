//! The sample configurations in `examples/` (every `*.toml` there, so a new one is checked
//! without touching this file): each passes `latchkey check` as a new user first runs it (no
//! store yet), and again once every secret it names has been provided the way a user
//! provides it (`latchkey secret set NAME` on standard input for `{ secret = "NAME" }`, the
//! process environment for `{ env = "VAR" }`), when `check` must find nothing missing or
//! unusable. The whole configuration files shown in `README.md` and `docs/*.md` pass `check`
//! too.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use latchkey_core::config::{AuthConfig, Config, SecretRef};
use latchkey_testkit::latchkey::run_cli;
use latchkey_testkit::peers::certs::Ca;
use latchkey_vault::identity::{SigningAlg, SigningKey};

use super::*;

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Every `examples/*.toml`, sorted.
fn example_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let dir = dir.canonicalize().unwrap_or(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

/// Values of the right shape for each kind of secret field: PEM where the method reads PEM,
/// a service-account JSON key where `jwt_bearer` takes its issuer and token URL from one.
struct Values {
    ca: Ca,
    client: latchkey_testkit::peers::certs::Pem,
    rsa_pem: String,
}

impl Values {
    fn new() -> Values {
        let ca = Ca::new("latchkey-examples-ca");
        let client = ca.client_cert("latchkey-examples-client");
        let key = SigningKey::generate(SigningAlg::Rs256).expect("generate an RSA key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
        let mut rsa_pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            rsa_pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            rsa_pem.push('\n');
        }
        rsa_pem.push_str("-----END PRIVATE KEY-----\n");
        Values { ca, client, rsa_pem }
    }

    fn for_field(&self, auth: &AuthConfig, field: &str, name: &str) -> String {
        match (auth, field) {
            (AuthConfig::ClientCertificate(_), "certificate") => self.client.cert_pem.clone(),
            (AuthConfig::ClientCertificate(_), "private_key") => self.client.key_pem.clone(),
            (AuthConfig::ClientCertificate(_), "ca_certificate") => self.ca.cert_pem.clone(),
            (AuthConfig::JwtBearer(j), "private_key") if j.token_url.is_none() || j.issuer.is_none() => {
                serde_json::json!({
                    "type": "service_account",
                    "client_email": "latchkey@example-project.iam.gserviceaccount.com",
                    "private_key_id": "examplekeyid",
                    "private_key": self.rsa_pem,
                    "token_uri": "https://oauth2.googleapis.com/token",
                })
                .to_string()
            }
            (AuthConfig::JwtBearer(_) | AuthConfig::OAuth1(_) | AuthConfig::OAuth1Authorization(_), "private_key") => {
                self.rsa_pem.clone()
            }
            (AuthConfig::OAuth2CustomToken(_), "jwt.private_key") => self.rsa_pem.clone(),
            (AuthConfig::AwsSigv4(_), "access_key_id") => "AKIAIOSFODNN7EXAMPLE".to_owned(),
            _ => format!("example-value-of-{name}"),
        }
    }
}

/// Secrets by name, each with the value to provide.
type Named = Vec<(String, String)>;

/// Every secret a configuration names, with the value to provide: (vault secrets, environment
/// variables).
fn secrets_of(config: &Config, values: &Values) -> (Named, Named) {
    let (mut vault, mut env) = (Vec::new(), Vec::new());
    let mut add = |r: &SecretRef, value: String| {
        let (list, name) = match r {
            SecretRef::Vault(n) => (&mut vault, n),
            SecretRef::Env(v) => (&mut env, v),
        };
        if !list.iter().any(|(n, _)| n == name) {
            list.push((name.clone(), value));
        }
    };
    if let Some(r) = &config.server.webhook_secret {
        add(r, "example-webhook-signing-secret".to_owned());
    }
    for connector in config.connectors.values() {
        for (field, r) in connector.auth.secret_refs() {
            let name = match r {
                SecretRef::Vault(n) | SecretRef::Env(n) => n.clone(),
            };
            add(r, values.for_field(&connector.auth, field, &name));
        }
    }
    (vault, env)
}

#[test]
fn every_example_passes_check_before_and_after_its_secrets_are_provided() {
    let files = example_files();
    assert!(files.len() >= 4, "expected the sample configurations in examples/, found {files:?}");
    let values = Values::new();
    for file in &files {
        let path = file.to_str().expect("UTF-8 path");
        let work = tempfile::tempdir().expect("temp dir");
        let data = work.path().join("data");

        // As a new user runs it: no store yet.
        let out = run_cli(bin(), work.path(), &data, &[], &["check", "--config", path], None);
        assert!(out.status.success(), "`latchkey check` refused {path}:\n{}", text(&out));
        assert!(text(&out).contains(": ok,"), "{path}:\n{}", text(&out));

        // Every secret provided as a user would: then nothing is missing or unusable.
        let config = Config::load(file).unwrap_or_else(|e| panic!("{path}: {e}"));
        let (vault, env) = secrets_of(&config, &values);
        for (name, value) in &vault {
            let out = run_cli(bin(), work.path(), &data, &env, &["secret", "set", name, "--config", path], Some(value));
            assert!(out.status.success(), "{path}: `secret set {name}` failed:\n{}", text(&out));
        }
        let out = run_cli(bin(), work.path(), &data, &env, &["check", "--config", path], None);
        let said = text(&out);
        assert!(out.status.success(), "{path}: `latchkey check` failed with its secrets provided:\n{said}");
        assert!(said.contains(": ok,"), "{path}:\n{said}");
        assert!(
            !said.lines().any(|l| l.starts_with("warning")),
            "{path}: `latchkey check` still reports problems with every secret provided:\n{said}"
        );
    }
}

/// The ` ```toml ` blocks of `README.md` and `docs/*.md` that are whole files (they have a
/// `[section]` line; one-line excerpts such as `refresh_on = {...}` have none), each with where
/// it is.
fn documented_configs() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    let mut blocks = Vec::new();
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        let mut block: Option<(usize, Vec<&str>)> = None;
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            match &mut block {
                None if trimmed == "```toml" => block = Some((n + 1, Vec::new())),
                None => {}
                Some(_) if trimmed.starts_with("```") => {
                    let (start, lines) = block.take().expect("in a block");
                    let indent = line.len() - trimmed.len();
                    let body: Vec<&str> = lines.iter().map(|l| l.get(indent..).unwrap_or(l.trim_start())).collect();
                    if body.iter().any(|l| l.starts_with('[')) {
                        blocks.push((format!("{}:{}", page.display(), start + 1), body.join("\n")));
                    }
                }
                Some((_, lines)) => lines.push(line),
            }
        }
    }
    blocks
}

#[test]
fn every_whole_configuration_in_the_docs_passes_check() {
    let blocks = documented_configs();
    assert!(blocks.len() >= 10, "expected the configuration examples of docs/configuration.md, found {}", blocks.len());
    for (place, config) in &blocks {
        let work = tempfile::tempdir().expect("temp dir");
        std::fs::write(work.path().join("latchkey.toml"), config).expect("write config");
        let out = run_cli(bin(), work.path(), &work.path().join("data"), &[], &["check"], None);
        assert!(
            out.status.success(),
            "the configuration at {place} does not pass `latchkey check`:\n{config}\n{}",
            text(&out)
        );
    }
}
