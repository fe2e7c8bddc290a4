//! What `serve` does before and after it answers requests: the first run's
//! admin, loading (or deferring) guests, the listener, the background jobs,
//! the metrics listener, the signals, and the drain at a stop.

use super::dispatch::handle;
use super::limits::DRAIN_MARGIN;
use super::metrics_listener::serve_metrics;
use super::routes::Routes;
use super::static_files::StaticFiles;
use super::{Options, Server, compile, jobs, listen, outgoing, watch};
use crate::app::App;
use crate::capabilities::paths::Root;
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use tokio::sync::Semaphore;

pub(super) async fn run(app: App, options: Options, pool: usize) -> Result<()> {
    let loopback = options.listen.ip().is_loopback();
    if !loopback && app.manifest.hosts.is_empty() {
        bail!(
            "{} listens off loopback, so it needs the names browsers use to reach it: add hosts = [\"invoices.example.com\"] under [app] in {} (it refuses every other Host, which defeats DNS rebinding)",
            options.listen,
            app.manifest.file.display()
        );
    }
    let _lock = options.lock;
    first_run(&app)?;
    // Guests compiled already load now (milliseconds); the others are
    // checked now and compile once the server listens (compile.rs).
    let mut guests = Vec::new();
    let mut later = Vec::new();
    for entry in &app.manifest.guests {
        let Some(route) = &entry.route else { continue };
        match app.load_if_compiled(entry)? {
            Some(guest) => guests.push((route.clone(), Arc::new(guest), entry.browser.clone())),
            None => later.push(entry.clone()),
        }
    }
    let login = app
        .manifest
        .guests
        .iter()
        .find(|g| g.name == "login")
        .and_then(|g| g.route.clone());
    let static_files = match &app.manifest.static_dir {
        Some(dir) => Some(StaticFiles::new(Root::open(dir).with_context(|| {
            format!("cannot open the static directory {}", dir.display())
        })?)),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let addr = listener.local_addr()?;
    // Each guest may take half the pool: a guest whose requests all wait
    // (sleep, a busy database) leaves the other half to everyone else.
    let share = (pool / 2).max(1);
    let mut routes = Routes::new(guests, share, None);
    routes.loading = later
        .iter()
        .map(|e| (e.route.clone().expect("routed"), e.name.clone()))
        .collect();
    let server = Arc::new(Server {
        routes: parking_lot::RwLock::new(Arc::new(routes)),
        login,
        static_files,
        renders: Semaphore::new(pool),
        outgoing: outgoing::Outgoing::new(outgoing::OUTGOING_BYTES),
        loopback,
        draining: std::sync::atomic::AtomicBool::new(false),
        cache_cap: options.cache_cap,
        app,
    });
    let caps = listen::Caps::for_this_process();
    // Before anyone can know the address: a stop sent at once is a stop,
    // not the default action of a signal nobody handles yet.
    let stop = shutdown_signal();
    println!("Serving {} on http://{addr}/", server.app.manifest.app_name);
    if later.is_empty() {
        server.prune_cache();
    } else {
        let names: Vec<&str> = later.iter().map(|e| e.name.as_str()).collect();
        println!(
            "compiling {} in the background: {} answer 503 until ready (`rawalite compile` fills the cache ahead of a start)",
            names.join(", "),
            if names.len() == 1 {
                "its route"
            } else {
                "their routes"
            }
        );
        compile::start(server.clone(), later, share);
    }
    println!("data: {}   (Ctrl-C to stop)", server.app.data_dir.display());
    tracing::info!(%addr, guests = server.routes().len(), pool, share, connections = caps.total, "serving");

    let exporter = match options.metrics {
        Some(addr) => {
            let handle = crate::metrics::install()?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?;
            println!("metrics on http://{}/metrics", listener.local_addr()?);
            Some(tokio::spawn(serve_metrics(
                listener,
                handle,
                server.clone(),
            )))
        }
        None => None,
    };
    let backups = match &server.app.manifest.backup {
        Some(_) if !server.app.database.in_data_dir() => bail!(
            "{}: [app.backup] backs up SQLite data directories; on PostgreSQL use PostgreSQL's backups (pg_dump, or your provider's) and remove [app.backup]",
            server.app.manifest.file.display()
        ),
        Some(schedule) => {
            let roots: Vec<std::path::PathBuf> = server
                .app
                .manifest
                .roots
                .values()
                .map(|path| server.app.data_dir.join(path))
                .collect();
            crate::backup::check_schedule_dir(&schedule.dir, &server.app.data_dir, &roots)?;
            println!(
                "backing up every {} s into {} (keeping {})",
                schedule.every.as_secs(),
                schedule.dir.display(),
                schedule.keep
            );
            Some(tokio::spawn(jobs::scheduled_backups(
                server.app.data_dir.clone(),
                schedule.clone(),
            )))
        }
        None => None,
    };
    let sweeper = tokio::spawn(jobs::sweep_sessions(
        server.app.auth.clone(),
        server.app.database.clone(),
    ));
    let saver = tokio::spawn(jobs::save_limits(server.app.auth.clone()));
    let watcher = options.watch.then(|| {
        println!(
            "watching {} and its components for changes",
            server.app.manifest.file.display()
        );
        tokio::spawn(watch::run(server.clone(), share))
    });
    let handler = {
        let server = server.clone();
        move |request, client| handle(server.clone(), request, client)
    };
    let proxies = server.app.manifest.trusted_proxies.clone();
    let exempt: listen::Exempt = Arc::new(move |ip| proxies.iter().any(|net| net.contains(ip)));
    // Requests in flight get the longest guest deadline and a margin.
    let drain_limit = server
        .app
        .manifest
        .guests
        .iter()
        .map(|g| g.limits.timeout)
        .max()
        .unwrap_or_default()
        + DRAIN_MARGIN;
    let grace = options.drain_grace;
    let draining = server.clone();
    let shutdown = async move {
        stop.await;
        draining
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if !grace.is_zero() {
            println!(
                "draining: /healthz answers 503 for {} s",
                grace.as_secs_f64()
            );
            tokio::time::sleep(grace).await;
        }
    };
    listen::serve(listener, handler, caps, exempt, shutdown, drain_limit).await;
    sweeper.abort();
    saver.abort();
    if let Some(backups) = backups {
        backups.abort();
    }
    if let Some(exporter) = exporter {
        exporter.abort();
    }
    if let Err(e) = server.app.auth.save_limits() {
        tracing::warn!(error = %e, "saving the sign-in limits failed");
    }
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    // Every request has finished; dropping the last handle closes the
    // database connections (and checkpoints the WAL).
    drop(server);
    println!("stopped");
    Ok(())
}

/// On a fresh data directory: an `admin` with a random password, shown once.
fn first_run(app: &App) -> Result<()> {
    if !app.migrations.is_empty() {
        println!("database ready: {}", app.database.describe());
    }
    if let Some(password) = app.auth.ensure_admin()? {
        println!();
        println!("  Created the first user: admin");
        println!("  Password (shown only now): {password}");
        println!("  Change it with: rawalite user passwd admin");
        println!();
    }
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed when this
/// is called, not when the future is first polled, so a signal that comes
/// in between still counts.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt());
    let mut terminate = signal(SignalKind::terminate());
    async move {
        tokio::select! {
            () = received(&mut interrupt) => {}
            () = received(&mut terminate) => {}
        }
        println!("stopping: finishing the requests in flight");
    }
}

/// The next signal of `signal`; never, if it could not be installed.
async fn received(signal: &mut std::io::Result<tokio::signal::unix::Signal>) {
    match signal {
        Ok(signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
