//! Raw HTTP/1.1 requests, for paths that an HTTP client library would normalize first.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Sends `method target` with `Authorization: Bearer key` and returns (status, whole response).
pub async fn request(base_url: &str, method: &str, target: &str, key: &str) -> (u16, String) {
    let addr = base_url.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text)
}
