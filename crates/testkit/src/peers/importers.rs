//! Documents no one here wrote, for `latchkey import`: npm's `swagger2openapi` (converts a
//! Swagger 2.0 document to OpenAPI 3.0, `--patch` fixing small errors), `openapi-to-postmanv2`
//! (an OpenAPI document to a Postman collection v2.1), and `@readme/oas-examples` (real
//! OpenAPI 3.x and Swagger 2.0 documents, JSON and YAML), all pinned in
//! `crates/testkit/peers/importers/package.json`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process::find_program;

const MISSING: &str = "the importer peers are not installed: run `npm ci --prefix crates/testkit/peers/importers` \
                       (or `bash scripts/install-test-peers`)";

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/peers/importers"))
}

fn package(name: &str) -> PathBuf {
    let p = dir().join("node_modules").join(name);
    if !p.join("package.json").is_file() {
        panic!("{MISSING} ({} is missing)", p.display());
    }
    p
}

fn run(package_name: &str, script: &str, args: &[&str]) {
    let Some(node) = find_program("node", &["/usr/bin/node", "/usr/local/bin/node"]) else {
        panic!("{MISSING} (no node found)");
    };
    let script = package(package_name).join(script);
    let out = Command::new(node)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Converts the Swagger 2.0 document `input` to OpenAPI 3.0 JSON at `output`
/// (`swagger2openapi --patch`).
pub fn swagger2openapi(input: &Path, output: &Path) {
    run(
        "swagger2openapi",
        "swagger2openapi.js",
        &["--patch", "-o", &output.display().to_string(), &input.display().to_string()],
    );
    assert!(output.is_file(), "swagger2openapi wrote nothing at {}", output.display());
}

/// Converts the OpenAPI (or Swagger) document `input` to a Postman collection v2.1 at `output`
/// (`openapi2postmanv2 -s input -o output`).
pub fn openapi_to_postman(input: &Path, output: &Path) {
    run(
        "openapi-to-postmanv2",
        "bin/openapi2postmanv2.js",
        &["-s", &input.display().to_string(), "-o", &output.display().to_string()],
    );
    assert!(output.is_file(), "openapi2postmanv2 wrote nothing at {}", output.display());
}

/// A document of `@readme/oas-examples`, e.g. `3.0/yaml/petstore.yaml`.
pub fn oas_example(relative: &str) -> PathBuf {
    let p = package("@readme/oas-examples").join(relative);
    assert!(p.is_file(), "{} is not in @readme/oas-examples", p.display());
    p
}

/// Every document of `@readme/oas-examples` (JSON and YAML, every version).
pub fn oas_examples() -> Vec<PathBuf> {
    let root = package("@readme/oas-examples");
    let mut out = Vec::new();
    for version in ["2.0", "3.0", "3.1"] {
        for format in ["json", "yaml"] {
            let Ok(entries) = std::fs::read_dir(root.join(version).join(format)) else { continue };
            out.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
        }
    }
    out.sort();
    out
}
