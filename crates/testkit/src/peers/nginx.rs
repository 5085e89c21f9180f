//! nginx (Debian) demanding client certificates, one per test binary.
//!
//! nginx runs as a single foreground process (`daemon off; master_process off;`) with its
//! prefix, configuration, logs, pid file and temp paths in its own scratch directory, so the
//! system's `/etc/nginx`, `/var/log/nginx` and `/var/lib/nginx` are never touched. Every path
//! answers `200` with the verified client's subject DN (`$ssl_client_s_dn`, e.g.
//! `CN=latchkey-test-client`) and a newline; without a client certificate, or with one nginx's
//! CA did not sign, nginx answers `400`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use super::certs::{Ca, Pem};
use super::process::{PeerProcess, find_program, free_port};

const NOT_INSTALLED: &str =
    "nginx is not installed: run `apt-get install -y nginx` (or `bash .ci/run`, which installs every peer)";

/// The common name of [`NginxMtls::client`] and [`NginxMtls::foreign_client`].
pub const CLIENT_CN: &str = "latchkey-test-client";

/// A running nginx with `ssl_verify_client on`.
#[derive(Debug)]
pub struct NginxMtls {
    /// `https://127.0.0.1:<port>`, without a trailing slash.
    pub base_url: String,
    /// The port nginx listens on.
    pub port: u16,
    /// The CA that signed nginx's server certificate (for `127.0.0.1` and `localhost`): trust
    /// this to reach nginx.
    pub server_ca_pem: String,
    /// The CA nginx trusts for client certificates; sign more clients with
    /// [`Ca::client_cert`].
    pub client_ca: Ca,
    /// A client certificate (`CN=latchkey-test-client`) signed by `client_ca`: nginx accepts it.
    pub client: Pem,
    /// A client certificate with the same subject, signed by an unrelated CA: nginx rejects it
    /// with `400`.
    pub foreign_client: Pem,
    _process: PeerProcess,
}

impl NginxMtls {
    /// `base_url` joined with `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// The process-wide nginx, started on first use (blocking, well under a second normally).
///
/// Panics with the install command if no nginx binary is found.
pub fn nginx_mtls() -> &'static NginxMtls {
    static NGINX: OnceLock<NginxMtls> = OnceLock::new();
    NGINX.get_or_init(|| start(free_port(), None))
}

/// A separate nginx on `port` in front of `http://127.0.0.1:<upstream_port>` (an mTLS
/// terminator): a client certificate is asked for but optional (`ssl_verify_client optional`),
/// and the upstream gets `X-SSL-Client-Cert` (the URL-escaped PEM), `X-SSL-Client-Verify`
/// (`SUCCESS`, `NONE` or `FAILED:…`), `X-SSL-Client-S-DN` and `X-Forwarded-Proto: https`.
/// `/whoami` is nginx's own: `200` with the client's subject DN, a space, the request's
/// `Authorization` header and a newline.
pub fn nginx_mtls_proxy(port: u16, upstream_port: u16) -> NginxMtls {
    start(port, Some(upstream_port))
}

fn start(port: u16, upstream_port: Option<u16>) -> NginxMtls {
    let Some(nginx) = find_program("nginx", &["/usr/sbin/nginx"]) else {
        panic!("{NOT_INSTALLED}");
    };
    let server_ca = Ca::new("Latchkey test server CA");
    let client_ca = Ca::new("Latchkey test client CA");
    let foreign_ca = Ca::new("Latchkey foreign CA");
    let server = server_ca.server_cert(&["127.0.0.1", "localhost"]);
    let client = client_ca.client_cert(CLIENT_CN);
    let foreign_client = foreign_ca.client_cert(CLIENT_CN);

    let dir = tempfile::Builder::new().prefix("latchkey-nginx-").tempdir().expect("create nginx scratch directory");
    let root = dir.path();
    write(root, "server.crt", &server.cert_pem);
    write(root, "server.key", &server.key_pem);
    write(root, "client-ca.crt", &client_ca.cert_pem);
    let conf = root.join("nginx.conf");
    write(root, "nginx.conf", &config(root, port, upstream_port));

    let args: Vec<String> = vec![
        "-p".to_owned(),
        format!("{}/", root.display()),
        "-e".to_owned(),
        root.join("error.log").display().to_string(),
        "-c".to_owned(),
        conf.display().to_string(),
    ];
    let process = PeerProcess::spawn("nginx", dir, &nginx, &args);
    process.wait_until_ready(SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(30));
    NginxMtls {
        base_url: format!("https://127.0.0.1:{port}"),
        port,
        server_ca_pem: server_ca.cert_pem,
        client_ca,
        client,
        foreign_client,
        _process: process,
    }
}

fn write(dir: &Path, name: &str, contents: &str) {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// nginx.conf with every file nginx writes inside `dir`. The error log also goes to stderr, so
/// that it lands in the peer log shown when nginx fails to start.
fn config(dir: &Path, port: u16, upstream_port: Option<u16>) -> String {
    let d = dir.display();
    let (verify, location) = match upstream_port {
        None => ("on".to_owned(), "return 200 \"$ssl_client_s_dn\\n\";".to_owned()),
        Some(up) => (
            "optional".to_owned(),
            format!(
                "proxy_pass http://127.0.0.1:{up};\n            \
                 proxy_set_header Host $http_host;\n            \
                 proxy_set_header X-Forwarded-Proto https;\n            \
                 proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;\n            \
                 proxy_set_header X-SSL-Client-Verify $ssl_client_verify;\n            \
                 proxy_set_header X-SSL-Client-S-DN $ssl_client_s_dn;\n        }}\n        \
                 location = /whoami {{\n            \
                 return 200 \"$ssl_client_s_dn $http_authorization\\n\";"
            ),
        ),
    };
    format!(
        r#"daemon off;
master_process off;
worker_processes 1;
pid "{d}/nginx.pid";
error_log "{d}/error.log" info;
error_log stderr warn;

events {{
    worker_connections 1024;
}}

http {{
    access_log "{d}/access.log";
    client_body_temp_path "{d}/client_body_temp";
    proxy_temp_path "{d}/proxy_temp";
    fastcgi_temp_path "{d}/fastcgi_temp";
    uwsgi_temp_path "{d}/uwsgi_temp";
    scgi_temp_path "{d}/scgi_temp";

    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;

        ssl_certificate "{d}/server.crt";
        ssl_certificate_key "{d}/server.key";
        ssl_verify_client {verify};
        ssl_client_certificate "{d}/client-ca.crt";

        default_type text/plain;
        location / {{
            {location}
        }}
    }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::disallowed_methods)]
    fn client_with(identity: Option<&Pem>) -> reqwest::Client {
        let nginx = nginx_mtls();
        let ca = reqwest::Certificate::from_pem(nginx.server_ca_pem.as_bytes()).unwrap();
        let mut builder = reqwest::Client::builder().tls_certs_only([ca]);
        if let Some(pem) = identity {
            builder = builder.identity(reqwest::Identity::from_pem(pem.identity_pem().as_bytes()).unwrap());
        }
        builder.build().unwrap()
    }

    #[tokio::test]
    async fn the_right_client_certificate_gets_200_and_its_dn() {
        let nginx = nginx_mtls();
        assert!(nginx.base_url.starts_with("https://127.0.0.1:"));
        let response = client_with(Some(&nginx.client)).get(nginx.url("/whoami")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "CN=latchkey-test-client\n");
    }

    #[tokio::test]
    async fn a_freshly_signed_client_certificate_gets_200() {
        let nginx = nginx_mtls();
        let other = nginx.client_ca.client_cert("another-client");
        let response = client_with(Some(&other)).get(nginx.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "CN=another-client\n");
    }

    #[tokio::test]
    async fn no_client_certificate_gets_400() {
        let nginx = nginx_mtls();
        let response = client_with(None).get(nginx.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 400);
    }

    #[tokio::test]
    async fn a_client_certificate_from_another_ca_gets_400() {
        let nginx = nginx_mtls();
        let response = client_with(Some(&nginx.foreign_client)).get(nginx.url("/")).send().await.unwrap();
        assert_eq!(response.status(), 400);
    }

    #[tokio::test]
    #[allow(clippy::disallowed_methods)]
    async fn the_server_certificate_is_not_publicly_trusted() {
        let nginx = nginx_mtls();
        let client = reqwest::Client::builder().tls_certs_only([]).build().unwrap();
        assert!(client.get(nginx.url("/")).send().await.is_err());
    }
}
