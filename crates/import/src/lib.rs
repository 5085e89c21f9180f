//! Latchkey's importers: a pasted cURL command, an OpenAPI 3.x (or Swagger 2.0) document or a
//! Postman v2.1 collection becomes a connector with named calls. Pure functions from text to
//! an [`Imported`] connector: its model, its TOML (`[connectors.NAME]`, already accepted by
//! `Config::parse`, the one validator of `latchkey check`) and the credentials found in the
//! document, as [`SecretString`]s with the vault secret names the TOML reads them by (they are
//! never in the TOML). Reading files, fetching URLs, merging into a configuration file and
//! storing secrets are the callers' (the `latchkey import` command, the console's import page).

pub mod curl;
pub mod model;
pub mod openapi;
pub mod postman;

use anyhow::bail;
use latchkey_core::config::Config;
use secrecy::SecretString;

pub use model::{Auth, CLIENT_ID_PLACEHOLDER, Connector};
pub use openapi::Select;

/// What every importer takes besides the document.
#[derive(Debug, Default, Clone, Copy)]
pub struct Options<'a> {
    /// The connector's name; `None`: from the document's title or host.
    pub name: Option<&'a str>,
    /// The connector's base URL instead of the document's server (a staging host, a local copy).
    pub base_url: Option<&'a str>,
}

/// The kinds of document imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Curl,
    Openapi,
    Postman,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Curl => "curl",
            Kind::Openapi => "openapi",
            Kind::Postman => "postman",
        }
    }

    /// The kind a pasted text most likely is: a `curl …` command, a Postman collection (JSON
    /// with `info.schema` naming Postman, or `item`), else an OpenAPI or Swagger document.
    pub fn detect(text: &str) -> Kind {
        let t = text.trim_start();
        if t.starts_with("curl ") || t.starts_with("curl\t") || t.starts_with("curl\\") || t == "curl" {
            return Kind::Curl;
        }
        if t.starts_with('{')
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(t)
        {
            let postman_schema =
                v.pointer("/info/schema").and_then(|s| s.as_str()).is_some_and(|s| s.contains("postman"));
            let openapi = v.get("openapi").is_some() || v.get("swagger").is_some();
            if postman_schema || (!openapi && v.get("item").is_some()) {
                return Kind::Postman;
            }
        }
        Kind::Openapi
    }
}

/// One imported connector.
#[derive(Debug)]
pub struct Imported {
    /// The connector's name.
    pub name: String,
    /// What was imported; `connector.found` holds the credentials found, `connector.notes`
    /// what was left out or needs the user's hand.
    pub connector: Connector,
    /// `[connectors.NAME]` and its calls, accepted by `Config::parse`; never a secret's value.
    pub toml: String,
}

impl Imported {
    /// The credentials found in the document: (vault secret name the TOML reads, value).
    pub fn found(&self) -> &[(String, SecretString)] {
        &self.connector.found
    }

    /// What was left out of the import or needs the user's hand, one sentence each.
    pub fn notes(&self) -> &[String] {
        &self.connector.notes
    }
}

/// A pasted cURL command (`curl …`); `call` names its one call (default: the method and the
/// path's last word).
pub fn curl(command: &str, options: Options<'_>, call: Option<&str>) -> anyhow::Result<Imported> {
    let (name, conn) = curl::import(command, options.name, call)?;
    finish(name, conn, options.base_url)
}

/// An OpenAPI 3.x or Swagger 2.0 document, JSON or YAML; `select` chooses operations by tag
/// or operationId (empty: all).
pub fn openapi(document: &str, options: Options<'_>, select: &Select) -> anyhow::Result<Imported> {
    let (name, conn) = openapi::import(document, options.name, select)?;
    finish(name, conn, options.base_url)
}

/// A Postman collection (v2.1, JSON).
pub fn postman(collection: &str, options: Options<'_>) -> anyhow::Result<Imported> {
    let (name, conn) = postman::import(collection, options.name)?;
    finish(name, conn, options.base_url)
}

/// An importer's connector finished: the base URL chosen (or a plain `http://` server
/// upgraded), at least one call, and TOML the configuration's validator accepts. The entry
/// points above call it; a caller that names the document in the importer's errors calls the
/// importer module, then this.
pub fn finish(name: String, mut conn: Connector, base_url: Option<&str>) -> anyhow::Result<Imported> {
    if let Some(url) = base_url {
        conn.base_url = url.trim_end_matches('/').to_owned();
    } else if let Some(https) = upgraded(&conn.base_url) {
        conn.notes.push(format!(
            "the document's server {} is plain http:// to a host that is not loopback: written as {https} \
             (give --base-url to choose; `allow_insecure_http = true` on the connector allows clear text)",
            conn.base_url
        ));
        conn.base_url = https;
    }
    if conn.calls.is_empty() {
        bail!(
            "nothing to import: the document has no operations (or none that --tag/--operation chose); check \
             --tag and --operation against the document's tags and operationIds, or leave them out to import \
             every operation"
        );
    }
    let toml = conn.to_toml(&name);
    // The one validator: what is returned is a file `latchkey check` accepts.
    if let Err(problems) = Config::parse(&toml, "(imported)") {
        bail!(
            "the imported connector `{name}` does not pass `latchkey check`, so nothing was written:\n{problems}\n\
             (--name and --base-url change the name and the URL; a plain http:// URL is allowed to loopback hosts only)"
        );
    }
    Ok(Imported { name, connector: conn, toml })
}

/// `http://` to a host that is not loopback, as `https://` (the configuration refuses the
/// first without `allow_insecure_http`).
pub fn upgraded(base_url: &str) -> Option<String> {
    let url = url::Url::parse(base_url).ok()?;
    if url.scheme() != "http" {
        return None;
    }
    let loopback = match url.host()? {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    (!loopback).then(|| format!("https{}", &base_url[4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_to_another_host_is_written_as_https() {
        assert_eq!(upgraded("http://petstore.swagger.io/v2").as_deref(), Some("https://petstore.swagger.io/v2"));
        assert_eq!(upgraded("http://127.0.0.1:8080"), None);
        assert_eq!(upgraded("http://localhost/x"), None);
        assert_eq!(upgraded("https://a.example"), None);
    }

    #[test]
    fn the_kind_of_a_pasted_text_is_detected() {
        assert_eq!(Kind::detect("  curl -H 'A: b' https://a.example/x"), Kind::Curl);
        assert_eq!(
            Kind::detect(
                r#"{"info": {"schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json"}, "item": []}"#
            ),
            Kind::Postman
        );
        assert_eq!(Kind::detect(r#"{"openapi": "3.0.0", "paths": {}}"#), Kind::Openapi);
        assert_eq!(Kind::detect("openapi: 3.0.0\npaths: {}\n"), Kind::Openapi);
        assert_eq!(Kind::detect("swagger: '2.0'"), Kind::Openapi);
    }

    #[test]
    fn an_import_gives_toml_without_the_credential_and_the_credential_by_name() {
        let imported = curl(
            "curl -H 'Authorization: Bearer CANARY-1234' https://api.example.com/v1/me",
            Options { name: Some("ex"), base_url: None },
            None,
        )
        .unwrap();
        assert_eq!(imported.name, "ex");
        assert!(!imported.toml.contains("CANARY"), "{}", imported.toml);
        let [(secret, value)] = imported.found() else { panic!("{:?}", imported.found().len()) };
        assert_eq!(secrecy::ExposeSecret::expose_secret(value), "CANARY-1234");
        assert!(imported.toml.contains(&format!("secret = \"{secret}\"")), "{}", imported.toml);
        let staged = curl(
            "curl https://api.example.com/v1/me",
            Options { name: None, base_url: Some("http://127.0.0.1:9/") },
            None,
        )
        .unwrap();
        assert!(staged.toml.contains("base_url = \"http://127.0.0.1:9\""), "{}", staged.toml);
    }
}
