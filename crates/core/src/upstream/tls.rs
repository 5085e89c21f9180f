//! TLS for the call path: the connection stream, and the rustls configurations (system trust
//! store, or a private CA; with or without a client certificate).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WantsClientCert;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ConfigBuilder};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A plain or TLS connection to an upstream.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What is wrong with a client-certificate configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the certificate chain is not valid PEM (one or more CERTIFICATE blocks)")]
    Chain,
    #[error("the private key is not valid PEM (one PKCS#8, PKCS#1 or SEC1 key)")]
    Key,
    #[error("ca_certificate is not a valid PEM certificate")]
    Ca,
    #[error("the certificate and key could not be loaded together (does the key match the certificate?)")]
    Mismatch,
    #[error("TLS could not be set up: {0}")]
    Setup(String),
}

/// The default: servers verified against the system's trust store, no client certificate.
pub(crate) fn default_config() -> Result<ClientConfig, TlsError> {
    Ok(speaking_http1(verifying(None)?.with_no_client_auth()))
}

/// Mutual TLS: `chain` and `key` are PEM; with `ca`, only that CA is trusted for the server.
pub fn identity_config(chain: &str, key: &str, ca: Option<&str>) -> Result<ClientConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(chain.as_bytes()).collect::<Result<_, _>>().map_err(|_| TlsError::Chain)?;
    if certs.is_empty() {
        return Err(TlsError::Chain);
    }
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|_| TlsError::Key)?;
    let config = verifying(ca)?.with_client_auth_cert(certs, key).map_err(|_| TlsError::Mismatch)?;
    Ok(speaking_http1(config))
}

/// How every configuration verifies the server: against the system's trust store, or, given
/// a PEM bundle, against only the CAs in it.
fn verifying(ca: Option<&str>) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?;
    let Some(pem) = ca else {
        let verifier = rustls_platform_verifier::Verifier::new(provider).map_err(|e| TlsError::Setup(e.to_string()))?;
        return Ok(builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)));
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        roots.add(cert.map_err(|_| TlsError::Ca)?).map_err(|_| TlsError::Ca)?;
    }
    if roots.is_empty() {
        return Err(TlsError::Ca);
    }
    Ok(builder.with_root_certificates(roots))
}

/// The call path speaks HTTP/1.1 (ALPN), whatever else the server offers.
fn speaking_http1(mut config: ClientConfig) -> ClientConfig {
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}
