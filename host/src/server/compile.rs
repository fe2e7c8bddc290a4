//! Guests that are not compiled yet (an empty compile cache, a new
//! component) compile after `serve` starts listening: the routes of the
//! guests that are ready answer at once, the others 503 with `Retry-After`
//! until theirs is done, and `/healthz` says not ready until all are. A
//! big guest takes seconds and hundreds of megabytes to compile, so they
//! compile a few at a time, never more than the cores.

use super::Server;
use crate::manifest::GuestEntry;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// At most this many compiles at once: each may take ~400 MB.
const AT_ONCE: usize = 4;

/// Compiles `entries` on threads of their own, swapping each guest into
/// the routes as it is ready.
pub(super) fn start(server: Arc<Server>, entries: Vec<GuestEntry>, share: usize) {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(AT_ONCE)
        .min(entries.len());
    let queue = Arc::new(Mutex::new(entries));
    for _ in 0..threads {
        let (server, queue) = (server.clone(), queue.clone());
        std::thread::spawn(move || {
            while let Some(entry) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop() {
                compile(&server, &entry, share);
            }
        });
    }
}

fn compile(server: &Server, entry: &GuestEntry, share: usize) {
    let started = Instant::now();
    let loaded = match server.app.load_entry(entry) {
        Ok(guest) => {
            tracing::info!(guest = %entry.name, seconds = started.elapsed().as_secs_f64(), "compiled: now serving");
            Some((Arc::new(guest), entry.browser.clone()))
        }
        Err(e) => {
            tracing::error!(guest = %entry.name, error = format!("{e:#}"), "compiling failed: not served");
            None
        }
    };
    server.update_routes(|routes| routes.loaded(&entry.name, loaded, share));
    if server.routes().loading.is_empty() {
        server.prune_cache();
    }
}
