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

/// One HTTP/1.1 connection kept open across requests, so a test knows every request went over
/// the same connection.
pub struct KeepAlive {
    stream: tokio::net::TcpStream,
    host: String,
    buffered: Vec<u8>,
}

impl KeepAlive {
    pub async fn open(base_url: &str) -> KeepAlive {
        let host = base_url.trim_start_matches("http://").trim_end_matches('/').to_owned();
        let stream = tokio::net::TcpStream::connect(&host).await.expect("connect");
        KeepAlive { stream, host, buffered: Vec::new() }
    }

    /// Sends `GET target` with `Authorization: Bearer key`; returns the status once the whole
    /// response (`Content-Length` or chunked) was read.
    pub async fn get(&mut self, target: &str, key: &str) -> u16 {
        let req = format!("GET {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\r\n", self.host);
        self.stream.write_all(req.as_bytes()).await.expect("write");
        let end = loop {
            if let Some(i) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await;
        };
        let head = String::from_utf8_lossy(&self.buffered[..end]).to_ascii_lowercase();
        self.buffered.drain(..end);
        let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status line");
        let length = head.lines().find_map(|l| l.strip_prefix("content-length:")).map(|v| v.trim().parse().unwrap());
        match length {
            Some(n) => {
                while self.buffered.len() < n {
                    self.fill().await;
                }
                self.buffered.drain(..n);
            }
            None => {
                assert!(head.contains("transfer-encoding: chunked"), "no length and not chunked: {head}");
                let end = loop {
                    if let Some(i) = self.buffered.windows(5).position(|w| w == b"0\r\n\r\n") {
                        break i + 5;
                    }
                    self.fill().await;
                };
                self.buffered.drain(..end);
            }
        }
        status
    }

    /// The connection itself, to see whether the server closed it.
    pub fn stream(&mut self) -> &mut tokio::net::TcpStream {
        &mut self.stream
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        self.buffered.extend_from_slice(&chunk[..n]);
    }
}
