//! A TCP forwarder that a test can cut, to stand between Latchkey and its PostgreSQL store.
//!
//! While paused, nothing flows in either direction on any connection, and new connections are
//! accepted but not forwarded: a network partition, where nothing is refused or reset and
//! nothing arrives. Bytes read before or during the pause are delivered after [`resume`], as a
//! healed network delivers retransmitted segments, so a query sent into the partition may
//! still run once it heals. [`cut`] is a server restart instead: every open connection is
//! closed at once (what was in flight is lost), and new ones wait for [`resume`]. [`restart`]
//! is a restart as clients see it while the server is down: open connections are closed, and
//! new ones are closed as soon as they are accepted (refused) until [`resume`].
//!
//! [`resume`]: TcpProxy::resume
//! [`cut`]: TcpProxy::cut
//! [`restart`]: TcpProxy::restart

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running forwarder; it stops when dropped.
pub struct TcpProxy {
    /// Where to connect instead of the target.
    pub addr: SocketAddr,
    state: watch::Sender<State>,
    accept: tokio::task::JoinHandle<()>,
}

#[derive(Clone, Copy, Default)]
struct State {
    paused: bool,
    /// New connections are closed at once instead of held (see [`TcpProxy::restart`]).
    refusing: bool,
    /// Connections opened before the last [`TcpProxy::cut`] are closed.
    cuts: u64,
}

impl TcpProxy {
    /// Forwards every connection made to [`TcpProxy::addr`] to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the TCP proxy");
        let addr = listener.local_addr().expect("the TCP proxy's address");
        let (state, watching) = watch::channel(State::default());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if watching.borrow().refusing {
                    drop(client);
                    continue;
                }
                let mut watching = watching.clone();
                tokio::spawn(async move {
                    let Ok(now) = watching.wait_for(|s| !s.paused).await.map(|s| *s) else { return };
                    let Ok(server) = TcpStream::connect(target).await else { return };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::join!(
                        pump(client_read, server_write, watching.clone(), now.cuts),
                        pump(server_read, client_write, watching, now.cuts),
                    );
                });
            }
        });
        TcpProxy { addr, state, accept }
    }

    /// Stops every byte, both ways, until [`TcpProxy::resume`].
    pub fn pause(&self) {
        self.state.send_modify(|s| s.paused = true);
    }

    /// Closes every open connection, and holds new ones until [`TcpProxy::resume`].
    pub fn cut(&self) {
        self.state.send_modify(|s| {
            s.paused = true;
            s.cuts += 1;
        });
    }

    /// Closes every open connection, and closes new ones as soon as they are accepted, as a
    /// server that is down refuses them, until [`TcpProxy::resume`].
    pub fn restart(&self) {
        self.state.send_modify(|s| {
            s.paused = true;
            s.refusing = true;
            s.cuts += 1;
        });
    }

    pub fn resume(&self) {
        self.state.send_modify(|s| {
            s.paused = false;
            s.refusing = false;
        });
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to`, holding what it read while the proxy is paused, until either side
/// closes or the proxy cuts the connections opened before cut number `cuts`.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut state: watch::Receiver<State>,
    cuts: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            _ = state.wait_for(|s| s.cuts != cuts) => return,
        };
        match state.wait_for(|s| !s.paused || s.cuts != cuts).await {
            Ok(s) if s.cuts == cuts => {}
            _ => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
