//! Accepting connections so that no client can hold the server: a cap on
//! open connections (and a smaller one per address), a time limit on
//! reading a request's head that also ends idle keep-alive connections,
//! and a time limit on a response the client does not read. A connection
//! past a cap gets a `503` and is closed at once. A connection that closes
//! keeps reading what the client still sends for a moment (see [`LINGER`]).
//!
//! On shutdown the listener stops accepting and every open connection
//! finishes the request it is serving.

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Sleep;
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

/// How long a client may take to send a request's head, and how long a
/// kept-alive connection may wait for its next request (hyper's one
/// timer covers both).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a response may make no progress because the client is not
/// reading it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a closing connection reads and discards what the client still
/// sends. A socket closed with unread input is reset, and a reset can
/// reach the client before it reads the answer: a browser posting a body
/// over the limit would see "connection reset" instead of the `413` page.
pub const LINGER: Duration = Duration::from_secs(2);

/// How many connections may be open at once.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub total: usize,
    /// Per client address, except loopback and trusted proxies, behind
    /// which many clients share one address.
    pub per_address: usize,
}

impl Caps {
    /// Caps that fit the process's file descriptors, raising the soft limit
    /// to the hard one first (most systems start at 1,024).
    pub fn for_this_process() -> Self {
        let files = raise_file_limit();
        // Room for the database, the roots, the compile cache and logs.
        let total = files.saturating_sub(256).clamp(64, 16_384) as usize;
        Caps {
            total,
            per_address: (total / 4).max(16),
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

/// Who may exceed the per-address cap: loopback (a local proxy, a local
/// load test) and the manifest's trusted proxies.
pub type Exempt = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

/// Open connections, in all and per address.
struct Open {
    caps: Caps,
    exempt: Exempt,
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
struct Slot {
    open: Arc<Mutex<Open>>,
    /// The address it counts against, if it counts against one.
    address: Option<IpAddr>,
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

fn admit(open: &Arc<Mutex<Open>>, address: IpAddr) -> Option<Slot> {
    let mut state = open.lock().unwrap_or_else(|e| e.into_inner());
    if state.total >= state.caps.total {
        return None;
    }
    let counted = !address.is_loopback() && !(state.exempt)(address);
    if counted {
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
        address: counted.then_some(address),
    })
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// open connections finish their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    caps: Caps,
    exempt: Exempt,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Mutex::new(Open {
        caps,
        exempt,
        total: 0,
        per_address: HashMap::new(),
    }));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // it was accepted: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = admit(&open, peer.ip()) else {
            tracing::warn!(client = %peer.ip(), "connection refused: too many open connections");
            busy(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let io = TokioIo::new(Lingering {
            stream: Box::pin(stream),
            until: None,
        });
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(io, service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(client = %peer.ip(), error = %e, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Tells a client past a cap to come back later, without waiting for it.
fn busy(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    let _ = stream.try_write(BUSY);
}

/// A connection whose shutdown sends its FIN, then reads and discards what
/// the client still sends until the client closes or [`LINGER`] passes.
struct Lingering {
    stream: Pin<Box<TimeoutStream<TcpStream>>>,
    /// Set once the FIN is sent: when to stop reading.
    until: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.stream.as_mut().poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.stream.as_mut().poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream.as_mut().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let until = match &mut this.until {
            Some(until) => until,
            None => {
                ready!(this.stream.as_mut().poll_shutdown(cx))?;
                this.until.insert(Box::pin(tokio::time::sleep(LINGER)))
            }
        };
        let mut scratch = [0u8; 8192];
        loop {
            if until.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut discard = ReadBuf::new(&mut scratch);
            match ready!(this.stream.as_mut().poll_read(cx, &mut discard)) {
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
    fn loopback_is_not_counted_per_address() {
        let open = open(10, 1);
        let local = IpAddr::from([127, 0, 0, 1]);
        let _a = admit(&open, local).unwrap();
        let _b = admit(&open, local).unwrap();
        assert_eq!(open.lock().unwrap().per_address.len(), 0);
    }
}
