//! A measuring instrument for issue 5, not part of Latchkey: the least a passthrough proxy
//! on tokio can do for `bench/instructions`' request, so that "what would a purpose-built
//! HTTP/1.1 layer cost?" has a measured answer instead of a guess.
//!
//! One current-thread runtime; each client connection gets its own upstream keep-alive
//! connection; requests are parsed with `httparse`; the head sent upstream is the request
//! line with `/v1/proxy/up` removed, the caller's headers minus `Authorization`, `Host` and
//! `Connection`, plus `Host` and the injected `X-Api-Key`; the response head goes back minus
//! `Connection`, with its body. It handles only what the benchmark sends: no request bodies
//! beyond `Content-Length`, responses with `Content-Length`. It checks no credential and
//! chooses none. Anything else closes the connection.
//!
//! Usage: floor-proxy LISTEN UPSTREAM (both `host:port`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test and benchmark code: a panic is the failure report")]

use std::io;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const PREFIX: &[u8] = b"/v1/proxy/up";

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: floor-proxy LISTEN UPSTREAM");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&listen).await?;
        loop {
            let (client, _) = listener.accept().await?;
            client.set_nodelay(true)?;
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let _ = serve(client, &upstream).await;
            });
        }
    })
}

/// Reads into `buf` until it holds a whole head; returns the head's length.
async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>, request: bool) -> io::Result<Option<usize>> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let parsed = if request {
            httparse::Request::new(&mut headers).parse(buf)
        } else {
            httparse::Response::new(&mut headers).parse(buf)
        };
        match parsed {
            Ok(httparse::Status::Complete(n)) => return Ok(Some(n)),
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Ok(None),
        }
        if buf.len() > 64 * 1024 || s.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

fn content_length(headers: &[httparse::Header<'_>]) -> usize {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

/// Appends `headers` but those named in `skip`, then the blank line that ends a head.
fn copy_headers(out: &mut Vec<u8>, headers: &[httparse::Header<'_>], skip: &[&str]) {
    for h in headers {
        if skip.iter().any(|n| h.name.eq_ignore_ascii_case(n)) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

async fn serve(mut client: TcpStream, upstream_addr: &str) -> io::Result<()> {
    let mut up = TcpStream::connect(upstream_addr).await?;
    up.set_nodelay(true)?;
    let (mut inbuf, mut upbuf, mut out) =
        (Vec::with_capacity(8192), Vec::with_capacity(8192), Vec::with_capacity(8192));
    loop {
        let Some(head) = read_head(&mut client, &mut inbuf, true).await? else { return Ok(()) };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        req.parse(&inbuf).map_err(io::Error::other)?;
        let (Some(method), Some(path)) = (req.method, req.path) else { return Ok(()) };
        let path = path.as_bytes();
        let path = path.strip_prefix(PREFIX).unwrap_or(path);
        let length = content_length(req.headers);
        out.clear();
        out.extend_from_slice(method.as_bytes());
        out.push(b' ');
        out.extend_from_slice(if path.is_empty() { b"/" } else { path });
        out.extend_from_slice(b" HTTP/1.1\r\nHost: up\r\nX-Api-Key: k\r\n");
        copy_headers(&mut out, req.headers, &["authorization", "host", "connection"]);
        if !move_body(&mut client, &mut inbuf, head, length, &mut out).await? {
            return Ok(());
        }
        up.write_all(&out).await?;

        let Some(head) = read_head(&mut up, &mut upbuf, false).await? else { return Ok(()) };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        resp.parse(&upbuf).map_err(io::Error::other)?;
        let length = content_length(resp.headers);
        out.clear();
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(resp.code.unwrap_or(502).to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
        out.extend_from_slice(b"\r\n");
        copy_headers(&mut out, resp.headers, &["connection"]);
        if !move_body(&mut up, &mut upbuf, head, length, &mut out).await? {
            return Ok(());
        }
        client.write_all(&out).await?;
    }
}

/// Reads until the `length`-byte body after a `head`-byte head is in `buf`, appends it to
/// `out` and drops the message from `buf`; `false` when the peer closed first.
async fn move_body(
    from: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: usize,
    length: usize,
    out: &mut Vec<u8>,
) -> io::Result<bool> {
    while buf.len() < head + length {
        if from.read_buf(buf).await? == 0 {
            return Ok(false);
        }
    }
    out.extend_from_slice(&buf[head..head + length]);
    buf.drain(..head + length);
    Ok(true)
}
