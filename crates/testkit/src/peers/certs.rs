//! Certificates made at test time with `rcgen`: certificate authorities, server certificates
//! for loopback, and client certificates for mutual TLS.
//!
//! Every certificate and key is PEM; keys are PKCS#8 (`-----BEGIN PRIVATE KEY-----`), ECDSA
//! P-256.

use std::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate and its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    /// The certificate (`-----BEGIN CERTIFICATE-----`).
    pub cert_pem: String,
    /// The private key, PKCS#8 (`-----BEGIN PRIVATE KEY-----`).
    pub key_pem: String,
}

impl Pem {
    /// The key followed by the certificate: the form `reqwest::Identity::from_pem` reads.
    pub fn identity_pem(&self) -> String {
        format!("{}{}", self.key_pem, self.cert_pem)
    }
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pem").field("cert_pem", &self.cert_pem).field("key_pem", &"[test key elided]").finish()
    }
}

/// A self-signed certificate authority that signs server and client certificates.
pub struct Ca {
    /// The CA certificate, PEM: what a peer trusts.
    pub cert_pem: String,
    /// The CA's private key, PKCS#8 PEM.
    pub key_pem: String,
    name: String,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca").field("name", &self.name).field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl Ca {
    /// A new CA whose subject is `CN=<name>`, with a fresh key.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("self-sign CA certificate");
        Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            name: name.to_owned(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's common name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate and key as a [`Pem`].
    pub fn pem(&self) -> Pem {
        Pem { cert_pem: self.cert_pem.clone(), key_pem: self.key_pem.clone() }
    }

    /// A server certificate (serverAuth) for `names`: IP addresses become IP subject
    /// alternative names, anything else DNS names. The subject is `CN=<first name>`.
    pub fn server_cert(&self, names: &[&str]) -> Pem {
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).expect("valid subject alternative names");
        params.distinguished_name = dn(names.first().copied().unwrap_or("latchkey-test-server"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate (clientAuth) whose subject is `CN=<cn>`.
    pub fn client_cert(&self, cn: &str) -> Pem {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Pem {
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("generate key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign certificate");
        Pem { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificates_are_pem_and_keys_pkcs8() {
        let ca = Ca::new("Latchkey test CA");
        assert_eq!(ca.name(), "Latchkey test CA");
        assert!(ca.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(ca.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let server = ca.server_cert(&["127.0.0.1", "localhost"]);
        let client = ca.client_cert("latchkey-test-client");
        for pem in [&server, &client] {
            assert!(pem.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
            assert!(pem.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
            assert!(reqwest::Identity::from_pem(pem.identity_pem().as_bytes()).is_ok());
        }
        assert!(!format!("{client:?}").contains(&client.key_pem));
        assert!(!format!("{ca:?}").contains(&ca.key_pem));
    }
}
