//! `rawalite serve`: the app in the browser. Routes each request by the
//! manifest's route prefixes to a guest, renders it on the async worker
//! that read the request (the guest yields at every epoch tick and its
//! blocking calls step off the worker, so a slow guest holds no worker;
//! renders at once are bounded, and each guest has only its share), and puts the
//! host's own rules on the way in and out: connection caps and timeouts,
//! request limits, the host name, a same-origin check for state changes,
//! the session cookie, a header allowlist, same-site redirects and security
//! headers. Static assets are served from the app's `static` directory
//! without a guest.

mod access_log;
mod compile;
mod dispatch;
#[doc(hidden)]
pub mod fuzzing;
mod guest_io;
mod health;
mod isolation;
mod jobs;
mod limits;
mod listen;
mod metrics_listener;
mod outgoing;
mod page;
mod routes;
mod rules;
mod startup;
mod static_files;
mod watch;

pub use limits::{MAX_BODY, MAX_HEADERS, MAX_REQUEST, MAX_URL};
pub use listen::{HEADER_TIMEOUT, RATE_BYTES, RATE_WINDOW};
pub use outgoing::OUTGOING_BYTES;

use crate::app::App;
use anyhow::Result;
use routes::Routes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub use rules::{COOKIE, SECURE_COOKIE};

/// Where and how to serve.
pub struct Options {
    pub listen: SocketAddr,
    /// Serve Prometheus metrics at `/metrics` on this address.
    pub metrics: Option<SocketAddr>,
    /// Reload guests when their components or the manifest change.
    pub watch: bool,
    /// The data directory's lock, held while serving.
    pub lock: crate::data_dir::DataLock,
    /// On SIGTERM, how long `/healthz` answers 503 while requests are still
    /// served, so a load balancer stops sending any before the listener
    /// closes.
    pub drain_grace: Duration,
    /// The compile cache's cap in bytes: artifacts of components no route
    /// uses are removed, oldest first, past it.
    pub cache_cap: u64,
}

struct Server {
    app: App,
    /// Swapped whole by `--watch`; a request keeps the table it started with.
    routes: parking_lot::RwLock<Arc<Routes>>,
    /// The route of the guest called `login`, where a browser is sent to
    /// sign in; without one, a page that needs a user answers 401.
    login: Option<String>,
    static_files: Option<static_files::StaticFiles>,
    /// Renders that may run at once, all guests together.
    renders: Semaphore,
    /// The bytes of finished bodies waiting for their clients.
    outgoing: outgoing::Outgoing,
    /// Only loopback host names are accepted when listening on loopback,
    /// and only `[app] hosts` off it, which defeats DNS rebinding.
    loopback: bool,
    /// Set on SIGTERM: `/healthz` says so while the server drains.
    draining: std::sync::atomic::AtomicBool,
    cache_cap: u64,
}

/// Runs the server until SIGINT or SIGTERM; in-flight requests finish and
/// the database is closed before this returns.
pub fn serve(app: App, options: Options) -> Result<()> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Renders at once: they run on the workers, but a blocking call (a
    // write, a slow query) holds a thread of its own while it runs, so the
    // bound is a multiple of the cores.
    let pool = (workers * 8).clamp(16, 128);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        // Two workers per core: a worker that waits a moment (a reader on
        // SQLite's WAL-index lock, a hand-off around a blocking call) leaves
        // its core to the other. Measured: the 10-row page +6%, hello even.
        .worker_threads(workers * 2)
        .max_blocking_threads(pool + 16)
        .enable_all()
        .build()?;
    runtime.block_on(startup::run(app, options, pool))
}

impl Server {
    /// Removes compiled artifacts of components no route uses, oldest
    /// first, while the cache is over its cap.
    fn prune_cache(&self) {
        let in_use: Vec<[u8; 32]> = self.routes().guests().map(|g| *g.hash()).collect();
        let (removed, left) = self.app.runtime.prune_cache(&in_use, self.cache_cap);
        if removed > 0 {
            tracing::info!(removed, bytes_left = left, "pruned the compile cache");
        }
    }

    /// The route table for a new request.
    fn routes(&self) -> Arc<Routes> {
        self.routes.read().clone()
    }

    fn swap_routes(&self, routes: Routes) {
        *self.routes.write() = Arc::new(routes);
    }

    /// Replaces the routes with `change` of them, atomically.
    fn update_routes(&self, change: impl FnOnce(&Routes) -> Routes) {
        let mut routes = self.routes.write();
        *routes = Arc::new(change(&routes));
    }
}
