//! The call path's upstream connections: reused when whole, never reused when the upstream
//! closed them or a body was abandoned halfway, grown under concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use latchkey_testkit::recorder::Recorder;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// A raw HTTP/1.1 upstream on loopback that answers GETs by path:
/// `/keep` 200 `ok` and keeps the connection; `/close-after` 200 `ok` with keep-alive
/// headers, then closes the socket (an idle timeout shorter than Latchkey's);
/// `/close-header` 200 `ok` with `Connection: close`; `/drop-second` answers the first
/// request of a connection and closes the connection on the second without an answer (an
/// idle timeout that fires just as the request arrives); `/hang` sends the head and 2 of
/// the 100 bytes it announced, then waits.
struct RawUpstream {
    base_url: String,
    connections: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start() -> RawUpstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut served = 0;
                    loop {
                        let mut chunk = [0u8; 4096];
                        let n = match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        buf.extend_from_slice(&chunk[..n]);
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { continue };
                        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
                        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nkeep-alive: timeout=60\r\n\r\nok";
                        served += 1;
                        if path.ends_with("/drop-second") {
                            if served > 1 {
                                return;
                            }
                            sock.write_all(ok.as_bytes()).await.unwrap();
                        } else if path.ends_with("/keep") {
                            sock.write_all(ok.as_bytes()).await.unwrap();
                        } else if path.ends_with("/close-after") {
                            sock.write_all(ok.as_bytes()).await.unwrap();
                            return;
                        } else if path.ends_with("/close-header") {
                            let close = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                            sock.write_all(close.as_bytes()).await.unwrap();
                            return;
                        } else {
                            let hang = "HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nab";
                            sock.write_all(hang.as_bytes()).await.unwrap();
                            tokio::time::sleep(Duration::from_secs(30)).await;
                            return;
                        }
                    }
                });
            }
        });
        RawUpstream { base_url, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn setup(base_url: &str) -> (Latchkey, String) {
    setup_with(base_url, "").await
}

async fn setup_with(base_url: &str, extra: &str) -> (Latchkey, String) {
    let auth = r#"{ method = "api_key_header", name = "X-Api-Key", key = { secret = "k" } }"#;
    let lk = with_connector(base_url, auth, extra);
    lk.put_secret("k", "live", "the-real-key").await;
    let app = lk.app_key("live").await;
    (lk, app)
}

async fn get(lk: &Latchkey, app: &str, path: &str) -> Reply {
    Reply::read(lk.http.get(lk.url(&format!("/v1/proxy/up{path}"))).bearer_auth(app).send().await.unwrap()).await
}

#[tokio::test]
async fn whole_responses_leave_their_connection_for_the_next_call() {
    let up = RawUpstream::start().await;
    let (lk, app) = setup(&up.base_url).await;
    for _ in 0..10 {
        let r = get(&lk, &app, "/keep").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_not_used_again() {
    let up = RawUpstream::start().await;
    let (lk, app) = setup(&up.base_url).await;
    for i in 0..10 {
        let r = get(&lk, &app, "/close-after").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "call {i}");
        // Lets the upstream's FIN arrive, as it would during any idle time.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.connections(), 10);
}

#[tokio::test]
async fn a_connection_close_answer_is_honoured() {
    let up = RawUpstream::start().await;
    let (lk, app) = setup(&up.base_url).await;
    for i in 0..10 {
        let r = get(&lk, &app, "/close-header").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "call {i}");
    }
    assert_eq!(up.connections(), 10);
    // And a keep-alive answer afterwards is reused as usual.
    for _ in 0..3 {
        assert_eq!(get(&lk, &app, "/keep").await.status, 200);
    }
    assert_eq!(up.connections(), 11);
}

#[tokio::test]
async fn a_body_abandoned_halfway_closes_its_connection() {
    let up = RawUpstream::start().await;
    let (lk, app) = setup(&up.base_url).await;
    let mut resp = lk.http.get(lk.url("/v1/proxy/up/hang")).bearer_auth(&app).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(100));
    assert_eq!(resp.chunk().await.unwrap().as_deref(), Some(&b"ab"[..]));
    drop(resp);
    // The half-read connection must not carry the next call: its answer would be the rest
    // of the abandoned body.
    for _ in 0..3 {
        let r = get(&lk, &app, "/keep").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }
    assert_eq!(up.connections(), 2);
}

#[tokio::test]
async fn concurrent_calls_grow_the_pool_and_reuse_it() {
    let up = Recorder::start().await;
    let (lk, app) = setup(&format!("{}/api", up.base_url)).await;
    let lk = Arc::new(lk);
    for _ in 0..5 {
        let calls = (0..8).map(|_| {
            let (lk, app) = (lk.clone(), app.clone());
            tokio::spawn(async move { get(&lk, &app, "/x").await.status })
        });
        for status in futures_util::future::join_all(calls).await {
            assert_eq!(status.unwrap(), 200);
        }
    }
    assert_eq!(up.count(), 40);
    assert!((1..=8).contains(&up.connections()), "{} upstream connections for 8 concurrent callers", up.connections());
}

#[tokio::test]
async fn a_body_that_goes_silent_for_timeout_ms_is_cut_off() {
    let up = RawUpstream::start().await;
    let (lk, app) = setup_with(&up.base_url, "timeout_ms = 300").await;
    let mut resp = lk.http.get(lk.url("/v1/proxy/up/hang")).bearer_auth(&app).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.chunk().await.unwrap().as_deref(), Some(&b"ab"[..]));
    // The upstream holds the rest for 30 s; Latchkey gives up after 300 ms of silence and
    // ends the caller's response as broken (not as complete).
    let rest = tokio::time::timeout(Duration::from_secs(20), resp.chunk()).await.expect("the body was not cut off");
    assert!(rest.is_err(), "a truncated body must not look complete: {rest:?}");
    // The connection is not reused; the next call works.
    let r = get(&lk, &app, "/keep").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(up.connections(), 2);
}

#[tokio::test]
async fn an_idempotent_request_that_met_a_closing_connection_is_sent_again_once() {
    let up = RawUpstream::start().await;
    let (lk, app) = setup(&up.base_url).await;
    for i in 0..4 {
        let r = get(&lk, &app, "/drop-second").await;
        assert_eq!((r.status, r.body.as_str()), (200, "ok"), "call {i}");
    }
    // Each reused connection dropped its second request; each was sent again on a new one.
    assert_eq!(up.connections(), 4);
}

#[tokio::test]
async fn a_post_that_met_a_closing_connection_is_not_sent_again() {
    let up = RawUpstream::start().await;
    let (lk, app) = setup(&up.base_url).await;
    let post = || async {
        Reply::read(lk.http.post(lk.url("/v1/proxy/up/drop-second")).bearer_auth(&app).send().await.unwrap()).await
    };
    assert_eq!(post().await.status, 200);
    // The second POST went out on the reused connection and got no answer: it may have been
    // acted on, so it is reported, not repeated.
    let r = post().await;
    assert_eq!((r.status, r.error_code()), (502, Some("upstream_unreachable")), "{}", r.body);
    assert!(r.body.contains("lost the connection"), "{}", r.body);
    assert_eq!(up.connections(), 1);
}
