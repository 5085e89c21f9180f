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
//!
//! Every connection is bounded (hardening item 13): the acceptor holds at most
//! `max_connections` open and backs off when `accept` fails; each serving thread's 1 s tick
//! drops connections that delivered no request head within `header_read_timeout_s` and closes
//! those on which no request started for `keepalive_idle_s` ([`Connections::sweep`]).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use latchkey_core::config::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, watch};

use crate::AppState;

/// The inbound side's bounds (`[server]` settings; SECURITY: a peer must not hold a socket,
/// and so a file descriptor, for ever).
#[derive(Clone, Copy, Debug)]
pub struct Inbound {
    /// Seconds a new connection has to deliver its first complete request head.
    pub header_read_timeout_s: u32,
    /// Seconds a connection may go without starting a request.
    pub keepalive_idle_s: u32,
    /// Between HTTP/2 keep-alive pings.
    pub http2_keepalive_interval: Duration,
    /// Open inbound connections at most.
    pub max_connections: usize,
}

/// An HTTP/2 keep-alive ping not answered within this closes the connection (hyper's default).
const HTTP2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// File descriptors kept for everything but inbound connections (listener, runtimes, store).
const RESERVED_FDS: u64 = 64;

/// How long the acceptor waits after `accept` failed for want of a resource (`EMFILE`,
/// `ENFILE`, `ENOBUFS`): long enough not to spin, short enough to serve soon after a
/// descriptor is freed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The least time between two log lines about the same inbound trouble.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Inbound {
    pub fn of(server: &ServerConfig) -> Self {
        let secs = |v: Option<u64>, default: u32| v.map_or(default, |v| u32::try_from(v).unwrap_or(u32::MAX).max(1));
        Self {
            header_read_timeout_s: secs(server.header_read_timeout_s, 10),
            keepalive_idle_s: secs(server.keepalive_idle_s, 75),
            http2_keepalive_interval: Duration::from_secs(server.http2_keepalive_interval_s.unwrap_or(30).max(1)),
            max_connections: server.max_connections.map_or(10_000, |m| m.max(1) as usize),
        }
    }

    /// `max_connections` lowered to what the process's file-descriptor limit allows: each
    /// served connection may hold one more descriptor for its upstream.
    fn within_fd_limit(mut self, explicit: bool) -> Self {
        let Some(limit) = open_files_limit() else { return self };
        let allowed = usize::try_from(limit.saturating_sub(RESERVED_FDS) / 2).unwrap_or(usize::MAX).max(1);
        if self.max_connections > allowed {
            let message = "lowering max_connections to what the file-descriptor limit allows (each served \
                           connection may need a second descriptor for its upstream): raise the limit (`ulimit \
                           -n`, systemd's LimitNOFILE=) to serve more connections at once";
            if explicit {
                tracing::warn!(from = self.max_connections, to = allowed, open_files = limit, "{message}");
            } else {
                tracing::info!(from = self.max_connections, to = allowed, open_files = limit, "{message}");
            }
            self.max_connections = allowed;
        }
        self
    }
}

/// The soft limit on open files (`RLIMIT_NOFILE`), read from `/proc` (Linux); `None` elsewhere
/// or when unlimited.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// Serves on `listener` with `threads` serving threads until `shutdown` resolves, then lets
/// every thread drain its in-flight requests.
pub async fn serve_threaded(
    listener: TcpListener,
    state: AppState,
    threads: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let config = state.engine.config();
    let server = &config.server;
    let inbound = Inbound::of(server).within_fd_limit(server.max_connections.is_some());
    let gate = Arc::new(Gate { open: AtomicUsize::new(0), max: inbound.max_connections, freed: Notify::new() });
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
                serve_handed(handed, open_here, crate::routes::Service::new(state, main), stopped, inbound).await;
                Ok::<_, io::Error>(())
            })
        })?;
        workers.push(Worker { hand, open, thread });
    }
    tokio::pin!(shutdown);
    let mut full_warned: Option<Instant> = None;
    let mut failures = Failures::default();
    loop {
        // At `max_connections`, accept nothing until one closes: new connections wait in the
        // listen backlog (idle ones are closed within `header_read_timeout_s`).
        if gate.open.load(Ordering::Acquire) >= gate.max {
            if full_warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                tracing::warn!(
                    max_connections = gate.max,
                    "max_connections reached: new connections wait until open ones close (idle ones within \
                     header_read_timeout_s or keepalive_idle_s); raise [server] max_connections if this is \
                     real traffic"
                );
                full_warned = Some(Instant::now());
            }
            let freed = gate.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if gate.open.load(Ordering::Acquire) >= gate.max {
                tokio::select! {
                    () = &mut shutdown => break,
                    () = freed => {}
                }
            }
            continue;
        }
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let Some(worker) = workers.iter().min_by_key(|w| w.open.load(Ordering::Relaxed)) else { break };
                worker.open.fetch_add(1, Ordering::Relaxed);
                gate.open.fetch_add(1, Ordering::AcqRel);
                let opened = Opened { here: worker.open.clone(), gate: gate.clone() };
                match stream.into_std() {
                    Ok(stream) => {
                        if worker.hand.send((stream, peer, opened)).is_err() {
                            tracing::error!("a serving thread has stopped; its connection was dropped");
                        }
                    }
                    Err(e) => {
                        drop(opened);
                        tracing::warn!(error = %e, "could not hand a connection to a serving thread");
                    }
                }
            }
            // One connection's trouble (reset before it was accepted): the next one is fine.
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset) => {}
            // Out of file descriptors and the like: wait a little instead of spinning, and say
            // so at most every few seconds.
            Err(e) => {
                failures.note(&e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
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

/// `accept` failures, logged at most every [`WARN_EVERY`] with the count in between.
#[derive(Default)]
struct Failures {
    logged: Option<Instant>,
    since: u64,
}

impl Failures {
    fn note(&mut self, e: &io::Error) {
        self.since += 1;
        if self.logged.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            tracing::error!(
                error = %e,
                failures = self.since,
                "accept failed (out of file descriptors? raise `ulimit -n` or lower [server] max_connections); \
                 retrying every 100 ms"
            );
            self.logged = Some(Instant::now());
            self.since = 0;
        }
    }
}

/// Open connections across the serving threads, against `max_connections`.
struct Gate {
    open: AtomicUsize,
    max: usize,
    /// Notified when a connection closes while the acceptor may be waiting for one.
    freed: Notify,
}

struct Worker {
    hand: mpsc::UnboundedSender<(std::net::TcpStream, SocketAddr, Opened)>,
    /// Connections handed to this thread and not closed yet.
    open: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

/// Serves the connections the acceptor hands to this thread until `stopped`, then lets each
/// finish its in-flight request. hyper serves each connection (HTTP/1.1, or HTTP/2 with prior
/// knowledge) without axum's `serve`: its per-request work (a tower adapter, an upgrade
/// handle, a shutdown signal polled beside every request) is not needed here.
async fn serve_handed(
    mut handed: mpsc::UnboundedReceiver<(std::net::TcpStream, SocketAddr, Opened)>,
    open: Arc<AtomicUsize>,
    service: crate::routes::Service,
    mut stopped: watch::Receiver<bool>,
    inbound: Inbound,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // HTTP/1.1 gets no hyper timer: its header-read timer would be armed (a boxed sleep) for
    // every request, and it also runs while a keep-alive connection waits for the next one.
    // `sweep` bounds both waits instead, once a second.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(inbound.http2_keepalive_interval)
        .keep_alive_timeout(HTTP2_KEEPALIVE_TIMEOUT);
    let connections = Arc::new(Connections::default());
    let clock = Arc::new(AtomicU32::new(1));
    // Once a second: the coarse clock moves, and connections past their bounds are told to
    // close. This timer also keeps the I/O driver's planned wake-up sooner than calls'
    // timeouts: tokio wakes its own driver (an eventfd write, and one more event) for a timer
    // due before that wake-up, which without any other timer is every call's.
    tokio::spawn({
        let (connections, clock) = (connections.clone(), clock.clone());
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let now = clock.fetch_add(1, Ordering::Relaxed) + 1;
                connections.sweep(now, inbound);
            }
        }
    });
    loop {
        let handed = tokio::select! {
            handed = handed.recv() => handed,
            _ = stopped.wait_for(|s| *s) => break,
        };
        // The acceptor stopped.
        let Some((stream, _peer, opened)) = handed else { break };
        let io = match TcpStream::from_std(stream) {
            Ok(io) => io,
            Err(e) => {
                tracing::warn!(error = %e, "could not take over a connection");
                continue;
            }
        };
        let activity = Arc::new(Activity { last: AtomicU32::new(0), clock: clock.clone(), verdict: AtomicU8::new(0) });
        let connection =
            builder.serve_connection(TokioIo::new(io), service.for_connection(activity.clone())).into_owned();
        let connections = connections.clone();
        let accepted = clock.load(Ordering::Relaxed);
        tokio::spawn(async move {
            let id = connections.next.fetch_add(1, Ordering::Relaxed);
            let mut connection = std::pin::pin!(connection);
            let (mut registered, mut asked) = (false, false);
            let ended = std::future::poll_fn(|cx| {
                if !registered {
                    // A task's waker stays the same: registered once, not on every poll.
                    let watched = Watched { waker: cx.waker().clone(), activity: activity.clone(), accepted };
                    connections.lock().insert(id, watched);
                    if connections.stopping.load(Ordering::SeqCst) {
                        activity.stop();
                    }
                    registered = true;
                }
                match activity.verdict.load(Ordering::Relaxed) {
                    KEEP => {}
                    CLOSE => {
                        if !asked {
                            connection.as_mut().graceful_shutdown();
                            asked = true;
                        }
                    }
                    // No request ever started on it: nothing is lost by closing it now.
                    _ => return Poll::Ready(Ok(())),
                }
                connection.as_mut().poll(cx)
            })
            .await;
            connections.lock().remove(&id);
            if let Err(e) = ended {
                tracing::debug!(error = %e, "a connection ended with an error");
            }
            drop(opened);
        });
    }
    // Connections handed over but not taken yet are closed unserved.
    handed.close();
    while let Ok((stream, _, opened)) = handed.try_recv() {
        drop(stream);
        drop(opened);
    }
    // Every connection finishes its in-flight request and closes; idle ones close at once.
    connections.stopping.store(true, Ordering::SeqCst);
    for watched in connections.lock().values() {
        watched.activity.stop();
        watched.waker.wake_by_ref();
    }
    while open.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a connection is to do, set by [`Connections::sweep`] or a stop, read on every poll.
const KEEP: u8 = 0;
/// Close after the request in flight, if any (hyper's graceful shutdown).
const CLOSE: u8 = 1;
/// Close now: no request ever started on it.
const DROP: u8 = 2;

/// One connection's requests, as its service sees them: when the last one started, on the
/// serving thread's coarse clock (seconds; 0: none yet). Recording a request is two loads and
/// a store, where hyper's own header timer would box and arm a sleep for each request.
pub(crate) struct Activity {
    last: AtomicU32,
    clock: Arc<AtomicU32>,
    verdict: AtomicU8,
}

impl Activity {
    /// A request started (its head was read whole).
    #[inline]
    pub(crate) fn request(&self) {
        self.last.store(self.clock.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The server stops: close after the request in flight, or at once if none ever started.
    fn stop(&self) {
        let verdict = if self.last.load(Ordering::Relaxed) == 0 { DROP } else { CLOSE };
        self.verdict.fetch_max(verdict, Ordering::Relaxed);
    }
}

/// The connections of one serving thread: each registers its task's waker when it starts, so
/// that a stop, or a bound it went past, can wake it to close. A connection pays one atomic
/// load per poll for this, where hyper-util's `GracefulShutdown` polls a `watch` receiver
/// beside every poll (≈ 570 instructions per proxied request), and hyper's timers would arm a
/// sleep per request.
#[derive(Default)]
struct Connections {
    stopping: AtomicBool,
    next: AtomicU64,
    watched: std::sync::Mutex<std::collections::HashMap<u64, Watched>>,
}

struct Watched {
    waker: std::task::Waker,
    activity: Arc<Activity>,
    /// The coarse clock when it was accepted.
    accepted: u32,
}

impl Connections {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, Watched>> {
        self.watched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells each connection past a bound to close: one that has not delivered a whole request
    /// head within `header_read_timeout_s` of being accepted (nothing sent, half a head, a
    /// stalled HTTP/2 preface) at once; one on which no request started for `keepalive_idle_s`
    /// after its request in flight (HTTP/1.1: at once when idle; HTTP/2: GOAWAY).
    fn sweep(&self, now: u32, inbound: Inbound) {
        let (mut unanswered, mut idle) = (0u32, 0u32);
        for watched in self.lock().values() {
            let activity = &watched.activity;
            if activity.verdict.load(Ordering::Relaxed) != KEEP {
                continue;
            }
            let last = activity.last.load(Ordering::Relaxed);
            let verdict = if last == 0 {
                // Strictly past: the clock is coarse, so a bound of n seconds is n to n + 1.
                if now.saturating_sub(watched.accepted) <= inbound.header_read_timeout_s {
                    continue;
                }
                unanswered += 1;
                DROP
            } else {
                if now.saturating_sub(last) <= inbound.keepalive_idle_s {
                    continue;
                }
                idle += 1;
                CLOSE
            };
            activity.verdict.store(verdict, Ordering::Relaxed);
            watched.waker.wake_by_ref();
        }
        if unanswered + idle > 0 {
            tracing::debug!(
                no_request_head = unanswered,
                idle,
                "closing connections past header_read_timeout_s or keepalive_idle_s"
            );
        }
    }
}

/// One open connection, counted down (on its thread and in the gate) when it closes.
struct Opened {
    here: Arc<AtomicUsize>,
    gate: Arc<Gate>,
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.here.fetch_sub(1, Ordering::Relaxed);
        if self.gate.open.fetch_sub(1, Ordering::AcqRel) >= self.gate.max {
            self.gate.freed.notify_one();
        }
    }
}
