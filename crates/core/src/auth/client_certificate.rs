//! `client_certificate`: mutual TLS with a PEM chain and key, optionally trusting a private CA.
//! One pooled client per identity, cached across reloads so connections survive them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::config::{ClientAuth, ClientCertificate, ClientKeyFields, PemSource};
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
    /// Token-endpoint clients with a TLS identity (`tls_client_auth`), by identity and
    /// whether they resolve public addresses only.
    token_by_identity: Mutex<HashMap<[u8; 32], reqwest::Client>>,
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
            token_by_identity: Mutex::new(HashMap::new()),
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

    /// The token-endpoint client that presents `identity` (`tls_client_auth`, RFC 8705), one
    /// per identity, kept across reloads.
    pub(super) fn token_client(
        &self,
        identity: &TlsIdentity<'_>,
        public_only: bool,
    ) -> Result<reqwest::Client, CallError> {
        let mut key = identity.fingerprint();
        key[0] ^= u8::from(public_only);
        let mut cache = self.token_by_identity.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(&key) {
            return Ok(c.clone());
        }
        let tls = identity.config("tls_client_auth")?;
        let mut builder = crate::http::client_builder().tls_backend_preconfigured(tls);
        if public_only {
            builder = builder.dns_resolver(crate::upstream::egress::PublicOnly);
        }
        let client = builder.build().map_err(|e| {
            CallError::new(ErrorCode::SecretMissing, format!("tls_client_auth: the TLS client could not be made ({e})"))
        })?;
        cache.insert(key, client.clone());
        Ok(client)
    }
}

/// A client certificate chain, its key and the CA to trust for the server, as PEM text.
pub(super) struct TlsIdentity<'a> {
    pub cert: &'a str,
    pub key: &'a str,
    pub ca: Option<&'a str>,
}

impl TlsIdentity<'_> {
    fn fingerprint(&self) -> [u8; 32] {
        let mut input = Zeroizing::new(Vec::new());
        for part in [self.key, self.cert, self.ca.unwrap_or("")] {
            input.extend_from_slice(part.trim().as_bytes());
            input.push(0);
        }
        latchkey_vault::sha256(&input)
    }

    /// The rustls configuration; `what` names the method in the error.
    fn config(&self, what: &str) -> Result<rustls::ClientConfig, CallError> {
        crate::upstream::identity_config(self.cert, self.key, self.ca).map_err(|e| {
            CallError::new(ErrorCode::SecretMissing, format!("{what}: {e}; store PEM text with `latchkey secret set`"))
        })
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
    let identity = TlsIdentity { cert: cert.expose_secret(), key: key.expose_secret(), ca: ca_pem };
    upstream(&identity, pool, "client_certificate")
}

/// The pooled upstream client presenting `identity`; `what` names the method in errors.
fn upstream(identity: &TlsIdentity<'_>, pool: &ClientPool, what: &str) -> Result<Arc<Upstream>, CallError> {
    let fingerprint = identity.fingerprint();
    let mut cache = pool.by_identity.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = cache.get(&fingerprint) {
        return Ok(c.clone());
    }
    let tls = identity.config(what)?;
    let client = Arc::new(Upstream::with_tls(tls));
    cache.insert(fingerprint, client.clone());
    Ok(client)
}

/// The clients of an OAuth method's table with `client_auth = "tls_client_auth"`: the token
/// endpoint's, which presents `client_certificate` (RFC 8705 §2.1), and, when its tokens are
/// `certificate_bound` (§3), the upstream that presents it on calls. `(None, None)` otherwise
/// (the shared ones). Adds the identity to `id`.
pub(super) fn tls_clients(
    c: &impl ClientKeyFields,
    env: Env,
    secrets: &SecretSet,
    pool: &ClientPool,
    public_only: bool,
    id: &mut latchkey_vault::Fingerprint,
) -> Result<(Option<reqwest::Client>, Option<Arc<Upstream>>), CallError> {
    let (ClientAuth::TlsClientAuth, (Some(cert), Some(key), ca)) = (c.client_auth(), c.tls_identity()) else {
        return Ok((None, None));
    };
    let cert = secrets.resolve(cert, env)?;
    let key = secrets.resolve(key, env)?;
    let ca_pem: Option<&str> = match ca {
        None => None,
        Some(PemSource::Inline(pem)) => Some(pem),
        Some(PemSource::Ref(r)) => Some(secrets.resolve(r, env)?.expose_secret()),
    };
    let identity = TlsIdentity { cert: cert.expose_secret(), key: key.expose_secret(), ca: ca_pem };
    id.part(b"tls_client_auth").part(&identity.fingerprint());
    let token = pool.token_client(&identity, public_only)?;
    let upstream = if c.certificate_bound() { Some(upstream(&identity, pool, "tls_client_auth")?) } else { None };
    Ok((Some(token), upstream))
}
