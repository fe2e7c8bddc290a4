//! Guests that are not compiled yet (an empty compile cache, a new
//! component) compile after `serve` starts listening: the routes of the
//! guests that are ready answer at once, the others 503 with `Retry-After`
//! until theirs is done, and `/healthz` says not ready until all are. A
//! big guest takes seconds and hundreds of megabytes to compile, so they
//! compile a few at a time: no more than the cores, 4, or the memory
//! available allows.

use super::Server;
use crate::manifest::GuestEntry;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// At most this many compiles at once.
const AT_ONCE: usize = 4;
/// What one compile of a big guest may take (Python: ~360 MB at its peak).
const COMPILE_MEMORY: u64 = 512 << 20;

/// Compiles `entries` on threads of their own, swapping each guest into
/// the routes as it is ready.
pub(super) fn start(server: Arc<Server>, entries: Vec<GuestEntry>, share: usize) {
    let memory = available_memory().map_or(AT_ONCE, |bytes| (bytes / COMPILE_MEMORY) as usize);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(AT_ONCE)
        .min(memory)
        .min(entries.len())
        .max(1);
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

/// `MemAvailable` of /proc/meminfo, in bytes (Linux).
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
