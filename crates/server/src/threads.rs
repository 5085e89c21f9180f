//! One serving thread per CPU, as nginx runs one worker process per CPU. An acceptor hands
//! each new connection to the serving thread with the fewest open connections; each serving
//! thread runs its own single-threaded tokio runtime, so a connection's requests are read,
//! proxied (over that thread's own upstream connections) and answered on one thread.
//!
//! Issue 5: on tokio's work-stealing runtime every request that woke an idle worker also woke
//! the other one, which found nothing to do and slept again (two `futex` calls and a cross-CPU
//! wake-up per request at one connection), and tasks moved between CPUs. Background work
//! (the sync loop, token keep-alive, webhooks) stays on the main runtime, and so does every
//! request but the hot routes (proxy, named calls): an admin write that compiles every
//! connector again must not stall the connections of the thread it arrived on.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::AppState;

/// Serves on `listener` with `threads` serving threads until `shutdown` resolves, then lets
/// every thread drain its in-flight requests.
pub async fn serve_threaded(
    listener: TcpListener,
    state: AppState,
    threads: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let main = tokio::runtime::Handle::current();
    let (stop, stopped) = watch::channel(false);
    let mut workers = Vec::with_capacity(threads);
    for index in 0..threads.max(1) {
        let (hand, handed) = mpsc::unbounded_channel();
        let open = Arc::new(AtomicUsize::new(0));
        let (state, open_here, stopped, main) = (state.clone(), open.clone(), stopped.clone(), main.clone());
        let thread = std::thread::Builder::new().name(format!("latchkey-http-{index}")).spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                latchkey_core::upstream::set_serving_thread(index);
                // Each call arms a timer (its `timeout_ms`). tokio wakes its own I/O driver
                // (an eventfd write, and one more event) for a timer due before the driver's
                // next planned wake-up, which without any other timer is every call's. A
                // timer due every second keeps the planned wake-up sooner than calls' timeouts.
                tokio::spawn(async {
                    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
                    loop {
                        tick.tick().await;
                    }
                });
                serve_handed(handed, open_here, crate::routes::Service::new(state, main), stopped).await;
                Ok::<_, io::Error>(())
            })
        })?;
        workers.push(Worker { hand, open, thread });
    }
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let Some(worker) = workers.iter().min_by_key(|w| w.open.load(Ordering::Relaxed)) else { break };
                worker.open.fetch_add(1, Ordering::Relaxed);
                match stream.into_std() {
                    Ok(stream) => {
                        if worker.hand.send((stream, peer)).is_err() {
                            worker.open.fetch_sub(1, Ordering::Relaxed);
                            tracing::error!("a serving thread has stopped; its connection was dropped");
                        }
                    }
                    Err(e) => {
                        worker.open.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "could not hand a connection to a serving thread");
                    }
                }
            }
            // Out of file descriptors and the like: wait instead of spinning (as axum does).
            Err(e) => {
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
    drop(listener); // new connections are refused from now on, not left in the backlog
    let _ = stop.send(true);
    tokio::task::spawn_blocking(move || {
        for w in workers {
            drop(w.hand);
            match w.thread.join() {
                Ok(Err(e)) => tracing::error!(error = %e, "a serving thread failed"),
                Err(_) => tracing::error!("a serving thread panicked"),
                Ok(Ok(())) => {}
            }
        }
    })
    .await
    .map_err(io::Error::other)
}

struct Worker {
    hand: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr)>,
    /// Connections handed to this thread and not closed yet.
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

/// Serves the connections the acceptor hands to this thread until `stopped`, then lets each
/// finish its in-flight request. hyper serves each connection (HTTP/1.1, or HTTP/2 with prior
/// knowledge) without axum's `serve`: its per-request work (a tower adapter, an upgrade
/// handle, a shutdown signal polled beside every request) is not needed here.
async fn serve_handed(
    mut handed: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr)>,
    open: Arc<AtomicUsize>,
    service: crate::routes::Service,
    mut stopped: watch::Receiver<bool>,
) {
    let builder = auto::Builder::new(TokioExecutor::new());
    let draining = Arc::new(Draining::default());
    loop {
        let handed = tokio::select! {
            handed = handed.recv() => handed,
            _ = stopped.wait_for(|s| *s) => break,
        };
        // The acceptor stopped.
        let Some((stream, _peer)) = handed else { break };
        let opened = Opened(open.clone());
        let io = match TcpStream::from_std(stream) {
            Ok(io) => io,
            Err(e) => {
                tracing::warn!(error = %e, "could not take over a connection");
                continue;
            }
        };
        let connection = builder.serve_connection(TokioIo::new(io), service.for_connection()).into_owned();
        let draining = draining.clone();
        tokio::spawn(async move {
            let id = draining.next.fetch_add(1, Ordering::Relaxed);
            let mut connection = std::pin::pin!(connection);
            let (mut registered, mut asked) = (false, false);
            let ended = std::future::poll_fn(|cx| {
                if !registered {
                    // A task's waker stays the same: registered once, not on every poll.
                    draining.lock().insert(id, cx.waker().clone());
                    registered = true;
                }
                if !asked && draining.stopping.load(Ordering::SeqCst) {
                    connection.as_mut().graceful_shutdown();
                    asked = true;
                }
                connection.as_mut().poll(cx)
            })
            .await;
            draining.lock().remove(&id);
            if let Err(e) = ended {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
            drop(opened);
        });
    }
    // Connections handed over but not taken yet are closed unserved.
    handed.close();
    while let Ok((stream, _)) = handed.try_recv() {
        drop(Opened(open.clone()));
        drop(stream);
    }
    // Every connection finishes its in-flight request and closes; idle ones close at once.
    draining.stopping.store(true, Ordering::SeqCst);
    for waker in draining.lock().values() {
        waker.wake_by_ref();
    }
    while open.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The connections of one serving thread, for a graceful stop: each registers its task's waker
/// when it starts; a stop sets `stopping` and wakes them, and each then asks hyper to close
/// after its in-flight request. A connection pays one atomic load per poll for this, where
/// hyper-util's `GracefulShutdown` polls a `watch` receiver beside every poll (≈ 570
/// instructions per proxied request).
#[derive(Default)]
struct Draining {
    stopping: std::sync::atomic::AtomicBool,
    next: std::sync::atomic::AtomicU64,
    wakers: std::sync::Mutex<std::collections::HashMap<u64, std::task::Waker>>,
}

impl Draining {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, std::task::Waker>> {
        self.wakers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One open connection of a serving thread, counted down when it closes.
struct Opened(Arc<AtomicUsize>);

impl Drop for Opened {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
