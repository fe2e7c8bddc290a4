//! Accepting connections so that no client can hold the server: a cap on
//! open connections (and a much smaller one per address), a time limit on
//! reading a request's head that also ends idle keep-alive connections,
//! and a minimum rate for reading responses. A connection past a cap gets
//! a `503` and is closed at once. A connection that closes keeps reading
//! what the client still sends for a moment (see [`LINGER`]).
//!
//! On shutdown the listener stops accepting (after taking the connections
//! the kernel completed already) and every open connection finishes the
//! request it is serving, or the one waiting unread in its socket, for at
//! most a bound: past it the rest are cut, so a stop always ends.

use crate::net::Address;
use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tokio_util::task::TaskTracker;

/// How long a client may take to send a request's head, and how long a
/// kept-alive connection may wait for its next request (hyper's one
/// timer covers both).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// A client that stops reading a response must take at least
/// [`RATE_BYTES`] of it within this long, or the connection ends: a
/// response waiting for a slow reader holds memory.
pub const RATE_WINDOW: Duration = Duration::from_secs(20);
/// See [`RATE_WINDOW`]: about 3 KiB/s, slower than any real link.
pub const RATE_BYTES: usize = 64 << 10;
/// How long a closing connection reads and discards what the client still
/// sends. A socket closed with unread input is reset, and a reset can
/// reach the client before it reads the answer: a browser posting a body
/// over the limit would see "connection reset" instead of the `413` page.
pub(super) const LINGER: Duration = Duration::from_secs(2);
/// Connections one address may hold: a browser opens six, an office behind
/// one NAT a few dozen; an attacker no more than this.
pub(super) const PER_ADDRESS: usize = 128;
/// What hyper buffers per connection, for reading a request and writing a
/// response: what a slow client can make a connection hold.
const CONNECTION_BUFFER: usize = 32 << 10;

/// How many connections may be open at once.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caps {
    pub total: usize,
    /// Per client address (IPv6 per /64), except trusted proxies, behind
    /// which many clients share one address. Loopback counts like any
    /// other address unless it is a trusted proxy.
    pub per_address: usize,
}

impl Caps {
    /// Caps that fit the process's file descriptors, raising the soft limit
    /// to the hard one first (most systems start at 1,024).
    pub(super) fn for_this_process() -> Self {
        let files = raise_file_limit();
        // Room for the database, the roots, the compile cache and logs.
        let total = files.saturating_sub(256).clamp(64, 16_384) as usize;
        Caps {
            total,
            per_address: PER_ADDRESS.min(total / 4).max(16),
        }
    }
}

/// Raises the soft limit on open files to the hard limit; returns the
/// soft limit now in force.
fn raise_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max.min(1 << 20),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

/// Who may exceed the per-address cap: the manifest's trusted proxies.
pub(super) type Exempt = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// Open connections, in all and per address.
struct Open {
    caps: Caps,
    exempt: Exempt,
    total: usize,
    per_address: HashMap<Address, usize>,
}

/// One admitted connection; dropping it frees its place.
struct Slot {
    open: Arc<Mutex<Open>>,
    /// The address it counts against, if it counts against one.
    address: Option<Address>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(address) = self.address
            && let Some(n) = open.per_address.get_mut(&address)
        {
            *n -= 1;
            if *n == 0 {
                open.per_address.remove(&address);
            }
        }
    }
}

fn admit(open: &Arc<Mutex<Open>>, ip: IpAddr) -> Option<Slot> {
    let mut state = open.lock().unwrap_or_else(|e| e.into_inner());
    if state.total >= state.caps.total {
        return None;
    }
    let address = (!(state.exempt)(ip)).then(|| Address::of(ip));
    if let Some(address) = address {
        let cap = state.caps.per_address;
        let n = state.per_address.entry(address).or_default();
        if *n >= cap {
            return None;
        }
        *n += 1;
    }
    state.total += 1;
    drop(state);
    Some(Slot {
        open: open.clone(),
        address,
    })
}

/// Serves `listener`'s connections, each request answered by `handler`
/// (given the peer that sent it), until `shutdown` completes, then lets the
/// open connections finish their requests for at most `drain_limit`.
/// The handler is called straight from hyper's service: no router, no
/// boxed service and no extensions stand between them, as there is one
/// handler per listener and it routes for itself.
pub(super) async fn serve<H, A>(
    listener: TcpListener,
    handler: H,
    caps: Caps,
    exempt: Exempt,
    shutdown: impl Future<Output = ()>,
    drain_limit: Duration,
) where
    H: Fn(Request<Body>, SocketAddr) -> A + Clone + Send + 'static,
    A: Future<Output = Response<Body>> + Send + 'static,
{
    let open = Arc::new(Mutex::new(Open {
        caps,
        exempt,
        total: 0,
        per_address: HashMap::new(),
    }));
    let stop = CancellationToken::new();
    let stopping = Arc::new(AtomicBool::new(false));
    let connections = TaskTracker::new();
    let accept = |stream: TcpStream, peer: std::net::SocketAddr| {
        let Some(slot) = admit(&open, peer.ip()) else {
            tracing::warn!(client = %peer.ip(), "connection refused: too many open connections");
            busy(stream);
            return;
        };
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let io = TokioIo::new(Guarded {
            stream,
            stall: None,
            until: None,
        });
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let answer = handler(request.map(Body::new), peer);
            async move { Ok::<_, Infallible>(answer.await) }
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(CONNECTION_BUFFER)
            .serve_connection(io, service);
        let connection = Draining {
            connection: Box::pin(connection),
            fd,
            stop: Box::pin(stop.clone().cancelled_owned()),
            stopping: stopping.clone(),
            state: Stop::Unwatched,
        };
        connections.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(client = %peer.ip(), error = %e, "connection ended");
            }
            drop(slot);
        });
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => accept(stream, peer),
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // it was accepted: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    // Connections the kernel completed before the stop wait in the
    // listener's backlog; closing it would reset them unanswered (what a
    // client that sent its request just then saw). They are taken and
    // served like the rest.
    if let Ok(listener) = listener.into_std() {
        while let Ok((stream, peer)) = listener.accept() {
            if let Ok(stream) = stream
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(stream))
            {
                accept(stream, peer);
            }
        }
    }
    stopping.store(true, Ordering::Release);
    stop.cancel();
    connections.close();
    if tokio::time::timeout(drain_limit, connections.wait())
        .await
        .is_err()
    {
        let open = open.lock().unwrap_or_else(|e| e.into_inner()).total;
        tracing::warn!(
            open,
            "requests still running after the drain limit were cut"
        );
    }
}

/// A connection that ends when the server stops, as hyper's graceful
/// shutdown ends it (the request being served is finished, then the
/// connection closes), except for a request sent on it that still waits
/// in its socket: hyper closes a connection that has read nothing yet, or
/// sits between two requests, at once, whatever waits in its socket, and
/// its client sees the connection close unanswered. Such a request is
/// read first.
struct Draining<C> {
    connection: Pin<Box<C>>,
    /// The connection's socket, to see whether input waits in it.
    fd: RawFd,
    /// Polled once, so that the stop wakes this connection's task.
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Set before the stop: what a wake-up of the task is read against.
    /// Polling `stop` itself at every wake-up took two locks every
    /// connection shares, a few times per request.
    stopping: Arc<AtomicBool>,
    state: Stop,
}

enum Stop {
    /// `stop` not polled yet.
    Unwatched,
    /// `stop` has this task's waker: a connection is one task's future for
    /// its whole life, so the waker it was given stays the one to wake.
    Serving,
    /// The server stops; hyper is not told while input waits.
    Stopping,
    Told,
}

impl<C: GracefulConnection> Future for Draining<C> {
    type Output = C::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<C::Output> {
        let this = &mut *self;
        match this.state {
            Stop::Unwatched => {
                this.state = match this.stop.as_mut().poll(cx) {
                    Poll::Ready(()) => Stop::Stopping,
                    Poll::Pending => Stop::Serving,
                }
            }
            Stop::Serving if this.stopping.load(Ordering::Acquire) => this.state = Stop::Stopping,
            _ => {}
        }
        this.tell_once_read();
        let polled = this.connection.as_mut().poll(cx);
        if polled.is_pending() && matches!(this.state, Stop::Stopping) && !input_waits(this.fd) {
            // It read what waited: from now on it is serving a request.
            this.tell_once_read();
            return this.connection.as_mut().poll(cx);
        }
        polled
    }
}

impl<C: GracefulConnection> Draining<C> {
    /// Tells hyper to stop once nothing waits in the socket.
    fn tell_once_read(&mut self) {
        if matches!(self.state, Stop::Stopping) && !input_waits(self.fd) {
            self.connection.as_mut().graceful_shutdown();
            self.state = Stop::Told;
        }
    }
}

/// Whether bytes wait in the socket `fd`, unread.
fn input_waits(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is the open socket of the connection whose task asks
    // (it closes only when that task ends); MSG_PEEK leaves the byte there
    // and MSG_DONTWAIT never blocks.
    let peeked = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    peeked > 0
}

/// Tells a client past a cap to come back later, without waiting for it.
fn busy(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let _ = stream.try_write(BUSY);
}

/// A connection held to the minimum rate while the client is not reading
/// (see [`RATE_WINDOW`]), whose shutdown sends its FIN, then reads and
/// discards what the client still sends until the client closes or
/// [`LINGER`] passes.
struct Guarded {
    stream: TcpStream,
    /// Set when a write found the client not reading: the window's end and
    /// the bytes taken since it began.
    stall: Option<(Pin<Box<Sleep>>, usize)>,
    /// Set once the FIN is sent: when to stop reading.
    until: Option<Pin<Box<Sleep>>>,
}

impl Guarded {
    /// Counts what a write took, or holds the client to the rate while it
    /// takes nothing; a client under the rate ends the connection.
    fn pace(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if let Some((_, taken)) = &mut self.stall {
                    *taken += n;
                    if *taken >= RATE_BYTES {
                        self.stall = None;
                    }
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending => {
                let (window, taken) = self
                    .stall
                    .get_or_insert_with(|| (Box::pin(tokio::time::sleep(RATE_WINDOW)), 0));
                if window.as_mut().poll(cx).is_ready() {
                    if *taken < RATE_BYTES {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client reads the response too slowly",
                        )));
                    }
                    // Enough was taken: a new window, whose timer wakes us.
                    window.as_mut().reset(Instant::now() + RATE_WINDOW);
                    *taken = 0;
                    let _ = window.as_mut().poll(cx);
                }
                Poll::Pending
            }
            failed => failed,
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.pace(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.pace(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let until = match &mut this.until {
            Some(until) => until,
            None => {
                ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
                this.until.insert(Box::pin(tokio::time::sleep(LINGER)))
            }
        };
        let mut scratch = [0u8; 8192];
        loop {
            if until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut discard = ReadBuf::new(&mut scratch);
            match ready!(Pin::new(&mut this.stream).poll_read(cx, &mut discard)) {
                Ok(()) if discard.filled().is_empty() => return Poll::Ready(Ok(())),
                Ok(()) => continue,
                // The client reset: nothing left to protect.
                Err(_) => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(total: usize, per_address: usize) -> Arc<Mutex<Open>> {
        Arc::new(Mutex::new(Open {
            caps: Caps { total, per_address },
            exempt: Arc::new(|ip: IpAddr| ip == IpAddr::from([10, 0, 0, 1])),
            total: 0,
            per_address: HashMap::new(),
        }))
    }

    #[test]
    fn caps_hold_per_address_and_in_all_and_free_on_drop() {
        let open = open(4, 2);
        let a = IpAddr::from([192, 0, 2, 1]);
        let first = admit(&open, a).unwrap();
        let _second = admit(&open, a).unwrap();
        assert!(admit(&open, a).is_none(), "per address");
        let proxy = IpAddr::from([10, 0, 0, 1]);
        let _p = admit(&open, proxy).unwrap();
        let _q = admit(&open, proxy).unwrap();
        assert!(admit(&open, proxy).is_none(), "in all");
        drop(first);
        assert!(admit(&open, a).is_some());
    }

    #[test]
    fn loopback_counts_like_any_address_and_ipv6_per_64() {
        let open = open(10, 1);
        let local = IpAddr::from([127, 0, 0, 1]);
        let _a = admit(&open, local).unwrap();
        assert!(admit(&open, local).is_none(), "loopback is counted");
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let _b = admit(&open, v6).unwrap();
        let same_64: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        assert!(admit(&open, same_64).is_none(), "one /64, one address");
        let other_64: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(admit(&open, other_64).is_some());
    }

    #[test]
    fn a_share_is_small_whatever_the_total() {
        let caps = Caps::for_this_process();
        assert!(caps.per_address <= PER_ADDRESS, "{caps:?}");
        assert!(caps.per_address < caps.total, "{caps:?}");
    }
}
