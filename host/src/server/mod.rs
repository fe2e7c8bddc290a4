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
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod isolation;
mod jobs;
mod listen;
mod outgoing;
mod page;
mod routes;
mod rules;
mod watch;

pub use listen::{HEADER_TIMEOUT, RATE_BYTES, RATE_WINDOW};
pub use outgoing::OUTGOING_BYTES;

use crate::app::App;
use crate::auth::password::Password;
use crate::capabilities::paths::Root;
use crate::capabilities::session::{Caller, SessionChange};
use crate::capabilities::{Error, ErrorCode, Request as GuestRequest};
use crate::runtime::{Outcome, Stopped};
use anyhow::{Context, Result, bail};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, Response, StatusCode, header};
use axum::response::IntoResponse;
use routes::Routes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The largest request body (bigger ones get 413).
pub const MAX_BODY: usize = 1 << 20;
/// The longest request target, path and query (longer ones get 414).
pub const MAX_URL: usize = 8 << 10;
/// The most bytes of request headers (more get 431).
pub const MAX_HEADERS: usize = 16 << 10;
/// The most a request can be: target, headers and body.
pub const MAX_REQUEST: usize = MAX_URL + MAX_HEADERS + MAX_BODY;
/// How long a client may take to send its body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request may wait for a render thread before it gets 503.
const QUEUE_WAIT: Duration = Duration::from_secs(10);
/// How long a finished body may wait for room among the bodies waiting for
/// clients before it gets 503: it holds its memory (and its render's
/// permits) meanwhile, so not long.
const OUTGOING_WAIT: Duration = Duration::from_secs(1);
/// How long a stopping server waits for its requests beyond the longest
/// guest deadline before it cuts them.
const DRAIN_MARGIN: Duration = Duration::from_secs(5);
/// Seconds a client is told to wait for a guest that is still compiling.
const RETRY_AFTER: &str = "5";
pub use rules::{COOKIE, SECURE_COOKIE};

/// Where and how to serve.
pub struct Options {
    pub listen: SocketAddr,
    /// Serve Prometheus metrics at `/metrics` on this address.
    pub metrics: Option<SocketAddr>,
    /// Reload guests when their components or the manifest change.
    pub watch: bool,
    /// The data directory's lock, held while serving.
    pub lock: crate::backup::DataLock,
    /// On SIGTERM, how long `/healthz` answers 503 while requests are still
    /// served, so a load balancer stops sending any before the listener
    /// closes.
    pub drain_grace: Duration,
}

struct Server {
    app: App,
    /// Swapped whole by `--watch`; a request keeps the table it started with.
    routes: parking_lot::RwLock<Arc<Routes>>,
    /// The route of the guest called `login`, where a browser is sent to
    /// sign in; without one, a page that needs a user answers 401.
    login: Option<String>,
    static_root: Option<Root>,
    /// Renders that may run at once, all guests together.
    renders: Semaphore,
    /// The bytes of finished bodies waiting for their clients.
    outgoing: outgoing::Outgoing,
    /// Only loopback host names are accepted when listening on loopback,
    /// and only `[app] hosts` off it, which defeats DNS rebinding.
    loopback: bool,
    /// Set on SIGTERM: `/healthz` says so while the server drains.
    draining: std::sync::atomic::AtomicBool,
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
    runtime.block_on(run(app, options, pool))
}

async fn run(app: App, options: Options, pool: usize) -> Result<()> {
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
    let static_root = match &app.manifest.static_dir {
        Some(dir) => Some(
            Root::open(dir)
                .with_context(|| format!("cannot open the static directory {}", dir.display()))?,
        ),
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
        static_root,
        renders: Semaphore::new(pool),
        outgoing: outgoing::Outgoing::new(OUTGOING_BYTES),
        loopback,
        draining: std::sync::atomic::AtomicBool::new(false),
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
        Some(_) if matches!(server.app.database, crate::database::Backend::Postgres(_)) => bail!(
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
    let router = axum::Router::new()
        .fallback(handle)
        .with_state(server.clone());
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
    listen::serve(listener, router, caps, exempt, shutdown, drain_limit).await;
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

/// The compile cache's cap: `RAWALITE_CACHE_MAX` (`"2 GiB"`, or bytes),
/// else 1 GiB. A Python guest's artifact alone is ~35 MB, and `--watch`
/// adds one per build.
fn cache_cap() -> u64 {
    std::env::var("RAWALITE_CACHE_MAX")
        .ok()
        .and_then(|text| text.trim().parse::<bytesize::ByteSize>().ok())
        .map_or(1 << 30, |size| size.0)
}

impl Server {
    /// Removes compiled artifacts of components no route uses, oldest
    /// first, while the cache is over its cap.
    fn prune_cache(&self) {
        let in_use: Vec<[u8; 32]> = self.routes().guests().map(|g| *g.hash()).collect();
        let (removed, left) = self.app.runtime.prune_cache(&in_use, cache_cap());
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

/// The metrics listener's own connection caps: a scraper needs one or two.
const METRICS_CAPS: listen::Caps = listen::Caps {
    total: 64,
    per_address: 8,
};

/// `GET /metrics` on the metrics listener: the sizes read now, then the
/// exposition. The listener has the app's timeouts, caps of its own and
/// the same `Host` rule (on loopback only loopback names, so a page that
/// rebinds its name to 127.0.0.1 cannot read it).
async fn serve_metrics(
    listener: tokio::net::TcpListener,
    handle: metrics_exporter_prometheus::PrometheusHandle,
    server: Arc<Server>,
) {
    let loopback = listener
        .local_addr()
        .is_ok_and(|addr| addr.ip().is_loopback());
    let scrape = move |request: axum::extract::Request| {
        let (handle, server) = (handle.clone(), server.clone());
        async move {
            let site = rules::Site {
                loopback,
                hosts: &server.app.manifest.hosts,
                addresses: true,
            };
            if let Err(refusal) = rules::check_host(request.headers(), &site) {
                return (refusal.status, refusal.message).into_response();
            }
            if request.uri().path() != "/metrics" {
                return (StatusCode::NOT_FOUND, "metrics are at /metrics").into_response();
            }
            let database = server.app.database.clone();
            let bytes = tokio::task::spawn_blocking(move || database.size())
                .await
                .unwrap_or(0);
            crate::metrics::sizes(
                bytes,
                server
                    .app
                    .roots()
                    .map(|(name, root)| (name, root.usage().bytes)),
            );
            handle.run_upkeep();
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                handle.render(),
            )
                .into_response()
        }
    };
    let app = axum::Router::new().fallback(scrape);
    let nobody: listen::Exempt = Arc::new(|_| false);
    listen::serve(
        listener,
        app,
        METRICS_CAPS,
        nobody,
        std::future::pending(),
        Duration::ZERO,
    )
    .await;
}

/// On a fresh data directory: an `admin` with a random password, shown once.
fn first_run(app: &App) -> Result<()> {
    if !app.migrations.is_empty() {
        println!("database ready: {}", app.database.describe());
    }
    if !app.auth.users()?.is_empty() {
        return Ok(());
    }
    let password = random_password()?;
    if let Err(e) = app.auth.add_user(
        "admin",
        Some("Administrator"),
        &["admin".to_owned()],
        &Password::new(password.clone()),
    ) {
        // Another host on the same database made the first user meanwhile.
        if !app.auth.users()?.is_empty() {
            return Ok(());
        }
        return Err(e);
    }
    println!();
    println!("  Created the first user: admin");
    println!("  Password (shown only now): {password}");
    println!("  Change it with: rawalite user passwd admin");
    println!();
    Ok(())
}

fn random_password() -> Result<String> {
    // 20 characters from 56 unambiguous ones: about 116 bits.
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
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

async fn handle(
    State(server): State<Arc<Server>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    request: axum::extract::Request,
) -> Response<Body> {
    let started = Instant::now();
    let id = page::request_id();
    // Kept for the log line; both clones share the request's bytes.
    let method = request.method().clone();
    let uri = request.uri().clone();
    let routes = server.routes();
    let (status, guest, response) = respond(&server, &routes, client, request, &id).await;
    crate::metrics::request(guest, status.as_u16());
    access_log::Access {
        id: &id,
        method: &method,
        path: uri.path(),
        status: status.as_u16(),
        guest: guest.unwrap_or("-"),
        us: started.elapsed().as_micros() as u64,
    }
    .record();
    response
}

/// The response, its status, and the guest that made it (for the log).
async fn respond<'s>(
    server: &Server,
    routes: &'s Routes,
    client: SocketAddr,
    request: axum::extract::Request,
    id: &str,
) -> (StatusCode, Option<&'s str>, Response<Body>) {
    let (client, secure) = rules::client(
        client,
        request.headers(),
        &server.app.manifest.trusted_proxies,
    );
    let site = rules::Site {
        loopback: server.loopback,
        hosts: &server.app.manifest.hosts,
        addresses: false,
    };
    if let Err(refusal) = rules::check_request(&request, &site) {
        return (
            refusal.status,
            None,
            page::error(refusal.status, refusal.message, id),
        );
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    if path == "/healthz" {
        let response = page::secured(health::check(server).await);
        return (response.status(), None, response);
    }
    if let Some(asset) = path.strip_prefix("/static/") {
        let response = page::static_asset(server.static_root.as_ref(), &parts.method, asset, id);
        return (response.status(), None, response);
    }
    if let Some(name) = routes.loading(path) {
        let status = StatusCode::SERVICE_UNAVAILABLE;
        let mut response = page::error(
            status,
            "This page is starting: its guest is still compiling. Try again in a few seconds.",
            id,
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(RETRY_AFTER),
        );
        return (status, Some(name), response);
    }
    let Some(route) = routes.find(path) else {
        let status = StatusCode::NOT_FOUND;
        return (
            status,
            None,
            page::error(status, "There is no page here.", id),
        );
    };
    let guest = &route.guest;
    let name = guest.name();
    // This site's origin, as the browser names it: needed only to read a
    // Referer or to name a granted script.
    let origin = (parts.headers.contains_key(header::REFERER) || !route.browser.scripts.is_empty())
        .then(|| rules::origin(&parts.headers, secure));
    if let Err(refusal) = isolation::check_sender(
        &parts.method,
        &parts.headers,
        route,
        routes,
        origin.as_deref().unwrap_or(""),
    ) {
        tracing::warn!(request = %id, guest = name, referer = ?parts.headers.get(header::REFERER), "refused a request from another guest's page");
        return (
            refusal.status,
            Some(name),
            page::error(refusal.status, refusal.message, id),
        );
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY)).await
    {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            let status = StatusCode::PAYLOAD_TOO_LARGE;
            let message = "The request body is larger than 1 MiB.";
            return (status, Some(name), page::error(status, message, id));
        }
        Err(_) => {
            let status = StatusCode::REQUEST_TIMEOUT;
            return (
                status,
                Some(name),
                page::error(status, "The request body took too long.", id),
            );
        }
    };
    let browser = rules::wants_html(&parts.headers);
    let token = rules::session_token(&parts.headers, secure);
    let guest_request = guest_request(
        &parts.method,
        &parts.uri,
        &parts.headers,
        &route.prefix,
        path,
        body,
    );

    // One permit of the guest's share and one of the pool per render: a
    // slow guest holds one thread, and at most its share of them.
    let permits = tokio::time::timeout(QUEUE_WAIT, async {
        let share = route.share.acquire().await;
        let render = server.renders.acquire().await;
        share.and_then(|share| Ok((share, render?)))
    })
    .await;
    let _permits = match permits {
        Ok(Ok(permits)) => permits,
        Ok(Err(_closed)) => {
            let status = StatusCode::SERVICE_UNAVAILABLE;
            return (
                status,
                Some(name),
                page::error(status, "The server is stopping.", id),
            );
        }
        Err(_waited) => {
            tracing::warn!(request = %id, guest = name, "no render thread came free in time");
            return (StatusCode::SERVICE_UNAVAILABLE, Some(name), busy(id));
        }
    };
    // The render runs right here, on the async worker: the guest yields at
    // every epoch tick and its blocking calls step off the worker, so no
    // request waits behind it (and none pays a hand-off to another thread).
    let signed = match token {
        Some(token) => server.app.auth.resolve_async(&token).await,
        None => None,
    };
    let caller = Caller {
        user: signed.as_ref().map(|s| s.user.clone()),
        token: signed.map(|s| s.token),
        client: Some(client),
    };
    let render_started = Instant::now();
    let rendered = guest.render_async(&guest_request, caller).await;
    crate::metrics::render(name, render_started.elapsed());
    let mut response = match rendered.outcome {
        Outcome::Response(mut response) => {
            // Held with the render's permits: a body waiting for room does
            // not let another render make one more.
            let body = std::mem::take(&mut response.body);
            match server.outgoing.hold(body, OUTGOING_WAIT).await {
                Some(body) => {
                    let mut response = page::from_guest(response, body, id);
                    if let Some(origin) = origin
                        .as_deref()
                        .filter(|_| !route.browser.scripts.is_empty())
                    {
                        response.headers_mut().insert(
                            header::CONTENT_SECURITY_POLICY,
                            isolation::policy(&route.browser, origin),
                        );
                    }
                    response
                }
                None => {
                    tracing::warn!(request = %id, guest = name, "no room for the response: too many bodies wait for slow clients");
                    busy(id)
                }
            }
        }
        Outcome::Error(error) => guest_error(server, &error, browser, &parts.uri, id),
        Outcome::Stopped(why) => stopped(name, &why, id),
    };
    if let Some(cookie) = cookie(&rendered.session, secure, server.app.auth.policy().absolute) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    (response.status(), Some(name), response)
}

/// `503` with `Retry-After`: the server has no room for this now.
fn busy(id: &str) -> Response<Body> {
    let mut response = page::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "This page is busy. Try again in a moment.",
        id,
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}

/// The request as the guest sees it: its route removed from the path, the
/// query decoded, and without the headers that carry credentials.
fn guest_request(
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    route: &str,
    path: &str,
    body: Bytes,
) -> GuestRequest {
    let rest = if route == "/" {
        path
    } else {
        &path[route.len()..]
    };
    let rest = if rest.is_empty() { "/" } else { rest };
    GuestRequest {
        method: method.as_str().to_owned(),
        base: if route == "/" {
            String::new()
        } else {
            route.to_owned()
        },
        path: percent_decode(rest),
        query: form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect(),
        headers: headers
            .iter()
            .filter(|(name, _)| !rules::HIDDEN_FROM_GUESTS.contains(name))
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect(),
        body: body.into(),
    }
}

/// Decodes %XX in a path (not `+`, which only means space in a query).
fn percent_decode(path: &str) -> String {
    if !path.contains('%') {
        return path.to_owned();
    }
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = path
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn guest_error(
    server: &Server,
    error: &Error,
    browser: bool,
    uri: &axum::http::Uri,
    id: &str,
) -> Response<Body> {
    if error.code == ErrorCode::Unauthenticated
        && browser
        && let Some(login) = &server.login
    {
        let next = uri.path_and_query().map_or("/", |p| p.as_str());
        let location = format!(
            "{login}?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("next", next)
                .finish()
        );
        return page::redirect(&location);
    }
    let status = match error.code {
        ErrorCode::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorCode::Denied => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    // The message is safe to show a user by the bridge's contract, except
    // `internal`, whose details belong in the log.
    let message = if status.is_server_error() && error.code == ErrorCode::Internal {
        tracing::error!(request = %id, error = ?error.message, "the guest reported an internal error");
        page::INTERNAL
    } else {
        &error.message
    };
    page::error(status, message, id)
}

fn stopped(guest: &str, why: &Stopped, id: &str) -> Response<Body> {
    tracing::error!(request = %id, guest, reason = ?why.to_string(), "the guest was stopped");
    crate::metrics::stopped(guest, why.cause());
    let status = match why {
        Stopped::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    page::error(status, page::INTERNAL, id)
}

/// The session cookie for a sign-in or sign-out. Over HTTPS it is
/// `Secure` and named with the `__Host-` prefix.
fn cookie(
    change: &SessionChange,
    secure: bool,
    max_age: Duration,
) -> Option<axum::http::HeaderValue> {
    let name = rules::cookie_name(secure);
    let secure = if secure { "; Secure" } else { "" };
    let value = match change {
        SessionChange::Unchanged => return None,
        SessionChange::SignedIn(token) => format!(
            "{name}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
            token.expose(),
            max_age.as_secs()
        ),
        SessionChange::SignedOut => {
            format!("{name}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{secure}")
        }
    };
    axum::http::HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        /// The query a guest sees is the pairs the client encoded, in
        /// order, whatever they hold.
        #[test]
        fn guests_see_the_query_the_client_sent(
            pairs in prop::collection::vec((".{0,12}", ".{0,12}"), 0..6),
            path in "/[a-z/]{0,12}",
        ) {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&pairs)
                .finish();
            let uri: axum::http::Uri = format!("{path}?{query}").parse().unwrap();
            let seen = guest_request(&Method::GET, &uri, &HeaderMap::new(), "/", uri.path(), Bytes::new());
            prop_assert_eq!(seen.query, pairs);
            prop_assert_eq!(seen.path, path);
        }

        /// Decoding undoes encoding, and any text decodes without a panic.
        #[test]
        fn percent_decoding_undoes_encoding(path in ".{0,60}", junk in "[%0-9a-fA-Fz/]{0,20}") {
            let encoded: String = path
                .bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b == b'/' { (b as char).to_string() } else { format!("%{b:02X}") })
                .collect();
            prop_assert_eq!(percent_decode(&encoded), path);
            let _ = percent_decode(&junk);
        }
    }

    #[test]
    fn paths_are_percent_decoded_but_plus_is_kept() {
        assert_eq!(percent_decode("/a%20b/c+d"), "/a b/c+d");
        assert_eq!(percent_decode("/%zz%4"), "/%zz%4");
        assert_eq!(percent_decode("/K%C3%B6ln"), "/Köln");
    }

    #[test]
    fn the_session_cookie_is_http_only_and_strict() {
        let token = crate::auth::Token::from_cookie("abc");
        let c = cookie(
            &SessionChange::SignedIn(token),
            false,
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(
            c,
            "rawalite_session=abc; HttpOnly; SameSite=Strict; Path=/; Max-Age=60"
        );
        let c = cookie(&SessionChange::SignedOut, true, Duration::from_secs(60)).unwrap();
        assert_eq!(
            c,
            "__Host-rawalite_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0; Secure"
        );
        assert!(cookie(&SessionChange::Unchanged, false, Duration::from_secs(60)).is_none());
    }

    #[test]
    fn random_passwords_are_long_and_differ() {
        let a = random_password().unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, random_password().unwrap());
    }
}
