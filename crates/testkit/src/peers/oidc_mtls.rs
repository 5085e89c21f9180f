//! oidc-provider behind nginx verifying client certificates (RFC 8705 `tls_client_auth`), one
//! per test binary: the issuer and token endpoint are nginx's `https://127.0.0.1:<port>`;
//! nginx passes the verified certificate on in headers, and oidc-provider's `features.mTLS`
//! reads them (see `peers/oidc/server.mjs`). Registration and introspection are reached
//! directly over plain HTTP, without a certificate.

use std::sync::OnceLock;

use serde_json::json;

use super::nginx::{CLIENT_CN, NginxMtls, nginx_mtls_proxy};
use super::oidc::{Oidc, RegisteredClient, start_with};
use super::process::free_port;

/// A running oidc-provider with mTLS, and the nginx in front of it.
#[derive(Debug)]
pub struct OidcMtls {
    /// `issuer` and `token_url` through nginx (https); `registration_url` and
    /// `introspection_url` straight to oidc-provider (http).
    pub oidc: Oidc,
    /// Its `server_ca_pem` is what to trust for the token endpoint; its `client` certificate
    /// (`CN=latchkey-test-client`) and any other its `client_ca` signs are accepted.
    pub nginx: NginxMtls,
}

/// The subject DN nginx reports for [`NginxMtls::client`].
pub const CLIENT_DN: &str = "CN=latchkey-test-client";

/// The process-wide oidc-provider with mTLS, started on first use.
pub fn oidc_mtls() -> &'static OidcMtls {
    static PEER: OnceLock<OidcMtls> = OnceLock::new();
    PEER.get_or_init(|| {
        let nginx_port = free_port();
        let issuer = format!("https://127.0.0.1:{nginx_port}");
        let mut oidc = start_with(None, Some(&issuer));
        let direct = format!("http://127.0.0.1:{}", oidc.port);
        oidc.registration_url = format!("{direct}/reg");
        oidc.introspection_url = format!("{direct}/token/introspection");
        let nginx = nginx_mtls_proxy(nginx_port, oidc.port);
        OidcMtls { oidc, nginx }
    })
}

impl OidcMtls {
    /// Registers a `tls_client_auth` client for `grant_types` whose certificate must have the
    /// subject DN `subject_dn` (e.g. [`CLIENT_DN`], `CN=` + [`CLIENT_CN`]); with `bound`, its
    /// access tokens are bound to the certificate (introspection shows `cnf.x5t#S256`).
    pub async fn register_tls_client(&self, grant_types: &[&str], subject_dn: &str, bound: bool) -> RegisteredClient {
        debug_assert!(CLIENT_DN.ends_with(CLIENT_CN));
        self.oidc
            .register_metadata(json!({
                "token_endpoint_auth_method": "tls_client_auth",
                "tls_client_auth_subject_dn": subject_dn,
                "tls_client_certificate_bound_access_tokens": bound,
                "grant_types": grant_types,
                "response_types": [],
                "redirect_uris": [],
            }))
            .await
    }
}
