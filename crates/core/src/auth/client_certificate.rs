//! `client_certificate`: mutual TLS with a PEM chain and key, optionally trusting a private CA.
//! One pooled client per identity, cached across reloads so connections survive them.

use std::collections::HashMap;
use std::sync::Mutex;

use secrecy::{ExposeSecret, SecretString};

use crate::config::{ClientCertificate, PemSource};
use crate::secrets::SecretSet;
use crate::{CallError, Env, ErrorCode};

/// HTTP clients: the shared default, and one per client-certificate identity.
pub struct ClientPool {
    default: reqwest::Client,
    by_identity: Mutex<HashMap<[u8; 32], reqwest::Client>>,
}

impl Default for ClientPool {
    fn default() -> Self {
        Self { default: crate::http::default_client(), by_identity: Mutex::new(HashMap::new()) }
    }
}

impl ClientPool {
    pub fn default_client(&self) -> reqwest::Client {
        self.default.clone()
    }
}

pub(super) fn client(
    config: &ClientCertificate,
    env: Env,
    secrets: &SecretSet,
    pool: &ClientPool,
) -> Result<reqwest::Client, CallError> {
    let cert = secrets.resolve(&config.certificate, env)?;
    let key = secrets.resolve(&config.private_key, env)?;
    let ca_pem: Option<&str> = match &config.ca_certificate {
        None => None,
        Some(PemSource::Inline(pem)) => Some(pem),
        Some(PemSource::Ref(r)) => Some(secrets.resolve(r, env)?.expose_secret()),
    };
    let identity_pem = SecretString::from(format!("{}\n{}\n", key.expose_secret().trim(), cert.expose_secret().trim()));
    let mut fingerprint_input = identity_pem.expose_secret().as_bytes().to_vec();
    fingerprint_input.extend_from_slice(b"\0ca\0");
    fingerprint_input.extend_from_slice(ca_pem.unwrap_or("").as_bytes());
    let fingerprint = latchkey_vault::sha256(&fingerprint_input);
    zeroize::Zeroize::zeroize(&mut fingerprint_input);

    let mut cache = pool.by_identity.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = cache.get(&fingerprint) {
        return Ok(c.clone());
    }
    let bad = |what: &str| {
        CallError::new(
            ErrorCode::SecretMissing,
            format!("client_certificate: {what}; store PEM text with `latchkey secret set`"),
        )
    };
    let identity = reqwest::Identity::from_pem(identity_pem.expose_secret().as_bytes())
        .map_err(|_| bad("the certificate chain or private key is not valid PEM (a chain of CERTIFICATE blocks and one PKCS#8, PKCS#1 or SEC1 key)"))?;
    let mut builder = crate::http::client_builder().identity(identity);
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|_| bad("ca_certificate is not a valid PEM certificate"))?;
        builder = builder.tls_certs_only(certs);
    }
    let client = builder.build().map_err(|_| {
        bad("the certificate and key could not be loaded together (does the key match the certificate?)")
    })?;
    cache.insert(fingerprint, client.clone());
    Ok(client)
}
