//! The HTTP/1.1 accept loop every service runs, with the limits a service
//! on a shared host needs (issue 21, point 3):
//!
//! - **Header-read timeout** (`HTTP_HEADER_TIMEOUT_MS`, default 10 s): a
//!   request's head must arrive within this long of its first byte, so a
//!   slowloris client dripping a header a second is cut off.
//! - **Idle timeout** (`HTTP_IDLE_TIMEOUT_MS`, default 60 s): a keep-alive
//!   connection with no request for this long is closed. Longer than the
//!   header timeout so a gateway's pooled connections are not cut while it
//!   may still reuse them.
//! - **Connection cap** (`HTTP_MAX_CONNECTIONS`, default the descriptor
//!   limit less a reserve for Redis, the PSP client and logs): at the cap, a
//!   new connection closes the connection that has been idle (or stuck in
//!   its headers) longest, so `/readyz` and real requests still get in
//!   while idle attackers are churned out; only when every connection is in
//!   the middle of a request is the new one closed at once. The process
//!   never reaches `Too many open files`.
//!
//! Connections are tracked by a small shared state: a request in flight
//! (counted by the service wrapper), when the current head began (set by
//! the first byte read while idle), and the last activity. A watchdog per
//! connection closes it when its deadline passes; a request being handled
//! has none (its own work is bounded elsewhere).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tower::ServiceExt;

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// From a request's first byte to the end of its head.
    pub header_timeout: Duration,
    /// A keep-alive connection with no request for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections at most; `None`: from the descriptor limit.
    pub max_connections: Option<usize>,
}

pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Headers hyper parses in a request before it refuses it with an empty
/// 431 itself; the router answers a JSON 431 well below this
/// ([`crate::http::MAX_HEADERS`]).
const PARSED_HEADERS: usize = 256;

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: None,
        }
    }
}

impl HttpLimits {
    /// The connection cap: the configured one, or the soft descriptor limit
    /// less a reserve (a quarter, between 16 and 256) for everything else
    /// the process opens. A configured cap above that is lowered to it.
    pub fn connection_cap(&self) -> usize {
        let derived = descriptor_limit().map(|soft| {
            let reserve = (soft / 4).clamp(16, 256);
            usize::try_from(soft.saturating_sub(reserve))
                .unwrap_or(usize::MAX)
                .max(1)
        });
        match (self.max_connections, derived) {
            (Some(configured), Some(derived)) => configured.min(derived).max(1),
            (Some(configured), None) => configured.max(1),
            (None, Some(derived)) => derived,
            (None, None) => 1024,
        }
    }
}

/// The soft `RLIMIT_NOFILE`, if the platform has one.
pub fn descriptor_limit() -> Option<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// Raises the soft descriptor limit to the hard one (what systemd and
/// shells leave at 1024 is far below what the kernel allows a service).
/// Returns the soft limit now in force.
pub fn raise_descriptor_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}

/// Milliseconds since the first call: the clock of [`ConnState`].
fn now_ms() -> u64 {
    static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);
    // Never 0, which means "unset" below.
    ORIGIN.elapsed().as_millis() as u64 + 1
}

/// What the watchdog and the cap look at, per connection.
#[derive(Debug, Default)]
struct ConnState {
    /// Requests being handled (0 or 1 for HTTP/1.1 without pipelining).
    in_flight: AtomicU32,
    /// When the first byte of the next request head arrived (0: none yet).
    head_started_ms: AtomicU64,
    /// Accepted, or the last response finished.
    last_activity_ms: AtomicU64,
    /// Tells the connection to close now (evicted at the cap).
    evict: Notify,
    /// A head began or a request finished: the watchdog's deadline moved.
    changed: Notify,
    /// Eviction was asked for (it is still open until its task sees it).
    evicting: std::sync::atomic::AtomicBool,
}

impl ConnState {
    fn new() -> Self {
        let state = Self::default();
        state.last_activity_ms.store(now_ms(), Ordering::Relaxed);
        state
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// When this connection must be closed, or `None` while a request is
    /// being handled.
    fn deadline_ms(&self, limits: &HttpLimits) -> Option<u64> {
        if self.busy() {
            return None;
        }
        let head = self.head_started_ms.load(Ordering::Acquire);
        Some(if head != 0 {
            head + limits.header_timeout.as_millis() as u64
        } else {
            self.last_activity_ms.load(Ordering::Acquire) + limits.idle_timeout.as_millis() as u64
        })
    }

    /// The order in which idle connections are evicted: the longest
    /// waiting first (a head that started long ago counts from then).
    fn idle_since_ms(&self) -> u64 {
        match self.head_started_ms.load(Ordering::Acquire) {
            0 => self.last_activity_ms.load(Ordering::Acquire),
            head => head,
        }
    }

    fn read_some(&self) {
        if !self.busy() && self.head_started_ms.load(Ordering::Relaxed) == 0 {
            self.head_started_ms.store(now_ms(), Ordering::Release);
            // The header timeout is usually sooner than the idle one.
            self.changed.notify_one();
        }
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started_ms.store(0, Ordering::Release);
    }

    fn request_finished(&self) {
        self.last_activity_ms.store(now_ms(), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_one();
    }
}

/// Decrements the in-flight count however the response future ends.
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The socket, noting when bytes arrive.
struct Tracked {
    stream: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.read_some();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Open connections, for the cap.
#[derive(Default)]
struct Registry {
    next_id: u64,
    open: HashMap<u64, Arc<ConnState>>,
}

impl Registry {
    /// Tells the longest-idle connection to close; false if every one is
    /// handling a request.
    fn evict_one(&self) -> bool {
        let victim = self
            .open
            .values()
            .filter(|state| !state.busy() && !state.evicting.load(Ordering::Relaxed))
            .min_by_key(|state| state.idle_since_ms());
        match victim {
            Some(state) => {
                state.evicting.store(true, Ordering::Relaxed);
                state.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Logs at most once a second (a flood must not flood the log too).
fn warn_rate_limited(last: &AtomicU64, message: &'static str, open: usize, cap: usize) {
    let now = now_ms();
    let previous = last.load(Ordering::Relaxed);
    if (previous == 0 || now.saturating_sub(previous) >= 1000)
        && last
            .compare_exchange(previous, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(open, cap, "{message}");
    }
}

/// Serves `router` on `listener` until `stop` resolves, then lets every
/// connection finish its request in flight and close (dropping the
/// returned future instead closes them at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let cap = limits.connection_cap();
    tracing::debug!(cap, ?limits, "accepting connections");
    let registry: Arc<Mutex<Registry>> = Arc::default();
    let draining = tokio_util::sync::CancellationToken::new();
    let mut tasks = JoinSet::new();
    let last_warning = AtomicU64::new(0);
    let mut stop = std::pin::pin!(stop);
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of descriptors despite the cap (something else holds
                // them): make room, and do not spin on the error.
                if matches!(error.raw_os_error(), Some(23 | 24)) {
                    {
                        let registry = registry.lock().expect("registry lock");
                        registry.evict_one();
                        warn_rate_limited(
                            &last_warning,
                            "out of file descriptors; closing an idle connection",
                            registry.open.len(),
                            cap,
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                continue;
            }
        };
        let state = Arc::new(ConnState::new());
        let id = {
            let mut registry = registry.lock().expect("registry lock");
            if registry.open.len() >= cap {
                let open = registry.open.len();
                if !registry.evict_one() {
                    warn_rate_limited(
                        &last_warning,
                        "connection cap reached with every connection busy; refusing",
                        open,
                        cap,
                    );
                    continue;
                }
                warn_rate_limited(
                    &last_warning,
                    "connection cap reached; closing the longest-idle connection",
                    open,
                    cap,
                );
            }
            registry.next_id += 1;
            let id = registry.next_id;
            registry.open.insert(id, state.clone());
            id
        };
        let _ = stream.set_nodelay(true);
        tasks.spawn(serve_connection(
            Tracked {
                stream,
                state: state.clone(),
            },
            state,
            router.clone(),
            limits,
            draining.clone(),
            Deregister(registry.clone(), id),
        ));
    }
    drop(listener);
    draining.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Removes a connection from the registry when its task ends (or aborts).
struct Deregister(Arc<Mutex<Registry>>, u64);

impl Drop for Deregister {
    fn drop(&mut self) {
        if let Ok(mut registry) = self.0.lock() {
            registry.open.remove(&self.1);
        }
    }
}

async fn serve_connection(
    io: Tracked,
    state: Arc<ConnState>,
    router: Router,
    limits: HttpLimits,
    draining: tokio_util::sync::CancellationToken,
    _registered: Deregister,
) {
    let service_state = state.clone();
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        service_state.request_started();
        let in_flight = InFlight(service_state.clone());
        let response = router.clone().oneshot(request.map(Body::new));
        async move {
            let response = response.await;
            drop(in_flight);
            response
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .max_headers(PARSED_HEADERS)
        .serve_connection(TokioIo::new(io), service);
    let mut connection = std::pin::pin!(connection);
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result
                    && !error.is_incomplete_message()
                {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = draining.cancelled(), if !closing => {
                // Finish the request in flight, then close.
                connection.as_mut().graceful_shutdown();
                closing = true;
            }
            () = expired(&state, &limits) => {
                tracing::debug!("closing a connection past its header or idle timeout");
                return;
            }
            () = state.evict.notified() => return,
        }
    }
}

/// Resolves once the connection is past its deadline (never while a
/// request is in flight).
async fn expired(state: &ConnState, limits: &HttpLimits) {
    let recheck = limits.header_timeout.min(limits.idle_timeout);
    loop {
        let now = now_ms();
        let wait = match state.deadline_ms(limits) {
            Some(deadline) if deadline <= now => return,
            Some(deadline) => Duration::from_millis(deadline - now),
            None => recheck,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = state.changed.notified() => {}
        }
    }
}
