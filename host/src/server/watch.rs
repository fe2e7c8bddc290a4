//! `serve --watch`: when a guest's component or the manifest changes, the
//! routes are rebuilt and swapped in for the next request. Requests already
//! running keep the table (and the guests) they started with. A guest that
//! fails to load keeps its previous version serving, and the log says why.

use super::Server;
use super::routes::Routes;
use crate::manifest::{GuestEntry, Manifest};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the files are looked at. Polling: a handful of `stat`s, and it
/// works the same on every file system (editors, `cp`, bind mounts).
const POLL: Duration = Duration::from_millis(250);

/// What identifies a version of a file: it changed when this did.
type Stamp = Option<(SystemTime, u64)>;

/// What a guest was loaded from: its manifest entry (grants, limits,
/// route) and its component file.
#[derive(PartialEq)]
struct Version {
    entry: String,
    component: Stamp,
}

impl Version {
    fn of(entry: &GuestEntry) -> Self {
        Version {
            // GuestEntry's Debug text covers every field that shapes a load.
            entry: format!("{entry:?}"),
            component: stamp(&entry.component),
        }
    }
}

pub(super) async fn run(server: Arc<Server>, share: usize) {
    let mut manifest = server.app.manifest.clone();
    let mut versions: HashMap<String, Version> = manifest
        .guests
        .iter()
        .map(|g| (g.name.clone(), Version::of(g)))
        .collect();
    let mut seen = files(&manifest);
    // Guests compiling since the start are swapped in by compile.rs; a
    // change made meanwhile is seen (and reloaded) once they are done.
    while !server.routes().loading.is_empty() {
        tokio::time::sleep(POLL).await;
    }
    loop {
        tokio::time::sleep(POLL).await;
        let now = files(&manifest);
        if now == seen {
            continue;
        }
        // A build may still be writing: act once the files hold still.
        tokio::time::sleep(POLL).await;
        if files(&manifest) != now {
            continue;
        }
        seen = now;
        let next = match Manifest::load(&manifest.file) {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "the manifest has an error: the running version keeps serving");
                continue;
            }
        };
        if settings(&next) != settings(&manifest) {
            tracing::warn!(
                "[app] and [paths] changes take effect at the next start; guests and grants are reloaded now"
            );
        }
        let reloaded = {
            let server = server.clone();
            let next = next.clone();
            let old = std::mem::take(&mut versions);
            tokio::task::spawn_blocking(move || reload(&server, &next, old, share)).await
        };
        match reloaded {
            Ok(kept) => versions = kept,
            Err(e) => tracing::error!(error = %e, "reloading failed"),
        }
        manifest = next;
        seen = files(&manifest);
    }
}

/// Loads what changed and swaps the routes; returns the versions serving.
fn reload(
    server: &Server,
    manifest: &Manifest,
    mut versions: HashMap<String, Version>,
    share: usize,
) -> HashMap<String, Version> {
    let current = server.routes();
    let mut table = Vec::new();
    let mut missing = Vec::new();
    let mut serving = HashMap::new();
    for entry in manifest.guests.iter().filter(|g| g.route.is_some()) {
        let old = current.by_name(&entry.name);
        let version = Version::of(entry);
        let unchanged = versions.get(&entry.name) == Some(&version);
        let guest = match old {
            Some(route) if unchanged => route.guest.clone(),
            _ => match server.app.load_entry(entry) {
                Ok(guest) => {
                    tracing::info!(guest = %entry.name, "reloaded");
                    Arc::new(guest)
                }
                Err(e) => {
                    tracing::error!(
                        guest = %entry.name,
                        error = format!("{e:#}"),
                        "reload failed: {}",
                        if old.is_some() { "the previous version keeps serving" } else { "not served" }
                    );
                    let Some(route) = old else {
                        missing.push(entry.name.clone());
                        continue;
                    };
                    table.push((
                        route.prefix.clone(),
                        route.guest.clone(),
                        route.browser.clone(),
                    ));
                    if let Some(kept) = versions.remove(&entry.name) {
                        serving.insert(entry.name.clone(), kept);
                    }
                    continue;
                }
            },
        };
        table.push((
            entry.route.clone().expect("filtered"),
            guest,
            entry.browser.clone(),
        ));
        serving.insert(entry.name.clone(), version);
    }
    let mut routes = Routes::new(table, share, Some(&current));
    routes.missing = missing;
    server.swap_routes(routes);
    server.prune_cache();
    serving
}

/// The manifest and every component it names, with their stamps.
fn files(manifest: &Manifest) -> Vec<(PathBuf, Stamp)> {
    std::iter::once(&manifest.file)
        .chain(manifest.guests.iter().map(|g| &g.component))
        .map(|path| (path.clone(), stamp(path)))
        .collect()
}

fn stamp(path: &std::path::Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// The parts of a manifest a reload does not apply.
fn settings(m: &Manifest) -> String {
    format!(
        "{:?}",
        (
            &m.app_name,
            &m.data_dir,
            &m.roots,
            &m.static_dir,
            &m.hosts,
            &m.trusted_proxies
        )
    )
}
