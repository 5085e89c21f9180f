//! `client_certificate`: mutual TLS with a PEM chain and key, optionally trusting a private CA.
//! One pooled client per identity, cached across reloads so connections survive them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::config::{ClientCertificate, PemSource};
use crate::secrets::SecretSet;
use crate::upstream::Upstream;
use crate::{CallError, Env, ErrorCode};

/// HTTP clients: `reqwest` for token endpoints and other rare requests, and the call path's
/// upstream clients: the shared default and one per client-certificate identity.
pub struct ClientPool {
    http: reqwest::Client,
    /// For connectors defined through the admin API: resolves names to public addresses only.
    http_public: reqwest::Client,
    default: Arc<Upstream>,
    by_identity: Mutex<HashMap<[u8; 32], Arc<Upstream>>>,
}

impl Default for ClientPool {
    #[expect(clippy::expect_used, reason = "the public-only HTTP client configuration is valid")]
    fn default() -> Self {
        Self {
            http: crate::http::default_client(),
            http_public: crate::http::client_builder()
                .dns_resolver(crate::upstream::egress::PublicOnly)
                .build()
                .expect("the public-only HTTP client configuration is valid"),
            default: Arc::new(Upstream::new()),
            by_identity: Mutex::new(HashMap::new()),
        }
    }
}

impl ClientPool {
    pub fn default_client(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// The client for token, profile and revocation requests: public addresses only for
    /// connectors defined through the admin API (unless the server allows private ones).
    pub fn client_for(&self, public_only: bool) -> reqwest::Client {
        if public_only { self.http_public.clone() } else { self.http.clone() }
    }

    pub fn default_upstream(&self) -> Arc<Upstream> {
        self.default.clone()
    }
}

pub(super) fn client(
    config: &ClientCertificate,
    env: Env,
    secrets: &SecretSet,
    pool: &ClientPool,
) -> Result<Arc<Upstream>, CallError> {
    let cert = secrets.resolve(&config.certificate, env)?;
    let key = secrets.resolve(&config.private_key, env)?;
    let ca_pem: Option<&str> = match &config.ca_certificate {
        None => None,
        Some(PemSource::Inline(pem)) => Some(pem),
        Some(PemSource::Ref(r)) => Some(secrets.resolve(r, env)?.expose_secret()),
    };
    let mut fingerprint_input = Zeroizing::new(Vec::new());
    for part in [key.expose_secret(), cert.expose_secret(), ca_pem.unwrap_or("")] {
        fingerprint_input.extend_from_slice(part.trim().as_bytes());
        fingerprint_input.push(0);
    }
    let fingerprint = latchkey_vault::sha256(&fingerprint_input);

    let mut cache = pool.by_identity.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = cache.get(&fingerprint) {
        return Ok(c.clone());
    }
    let tls = crate::upstream::identity_config(cert.expose_secret(), key.expose_secret(), ca_pem).map_err(|e| {
        CallError::new(
            ErrorCode::SecretMissing,
            format!("client_certificate: {e}; store PEM text with `latchkey secret set`"),
        )
    })?;
    let client = Arc::new(Upstream::with_tls(tls));
    cache.insert(fingerprint, client.clone());
    Ok(client)
}
