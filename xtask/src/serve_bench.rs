//! `cargo xtask bench serve`: RawaLite against a native server and against
//! `wasmtime serve`, in one run on one machine, over loopback HTTP.
//!
//! Each system serves the same pages from `guests/pages`: `hello` (RawaLite
//! guest, native axum handler, wasi:http component) and a page that reads
//! 10 customers (RawaLite guest through `db`, native axum + rusqlite). wrk
//! drives each page with 32 connections. RawaLite also serves the demo's
//! dashboard to a signed-in user (the session cookie, a user lookup, two
//! queries), hello to 1,000 connections at once, and hello with its access
//! log on (text and JSON, to a file), and the host's own paths beside the
//! guests': a 404 page (no guest, no I/O), a 52-byte and a 100 KiB static
//! file. Each figure comes with the server's CPU time per request (from
//! /proc, all its threads). Then the app moves to a throwaway
//! PostgreSQL cluster and the 10-row page (against the native server on
//! tokio-postgres) and the dashboard are measured again.
//!
//! A machine's throughput drifts by tens of percent over minutes, so every
//! page is measured in [`ROUNDS`] rounds, the systems taking turns within
//! each round; a figure is the median of its rounds and a ratio is the
//! median of the ratios within each round, both with their range. The
//! figures, the ratios, the cold start and the RSS over a long run go to
//! the terminal, to BENCHMARKS.md and to docs/bench-serve.svg.

use anyhow::{Context, Result, bail};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CONNECTIONS: usize = 32;
/// The many-connections run: hello, RawaLite only.
const MANY: usize = 1000;
/// Rounds of every measurement, and one wrk run's length in each.
const ROUNDS: usize = 3;
const DURATION: &str = "5s";
/// Before a system's first round.
const WARM_UP: &str = "2s";
const LONG_RUN: u64 = 60;
const WASMTIME_VERSION: &str = "48.0.8";
const SEED_CUSTOMERS: usize = 20;

/// One page on one system, measured in each round.
struct Run {
    system: &'static str,
    page: &'static str,
    connections: usize,
    rounds: Vec<Load>,
    peak_rss_mib: f64,
}

impl Run {
    /// The round with the median requests/s.
    fn median(&self) -> &Load {
        let mut rounds: Vec<&Load> = self.rounds.iter().collect();
        rounds.sort_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second));
        rounds[rounds.len() / 2]
    }

    fn requests_per_second(&self) -> f64 {
        self.median().requests_per_second
    }

    fn range(&self) -> (f64, f64) {
        spread(self.rounds.iter().map(|r| r.requests_per_second))
    }
}

/// The smallest and largest of `values`.
fn spread(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// What to measure: `path` on `server`, with `connections` (and a cookie).
struct Measure<'a> {
    server: &'a Server,
    page: &'static str,
    path: &'static str,
    connections: usize,
    cookie: Option<&'a str>,
    /// Whether the page is an error page (a 404), which wrk counts as
    /// errors.
    error_page: bool,
}

impl<'a> Measure<'a> {
    fn new(server: &'a Server, page: &'static str, path: &'static str) -> Self {
        Measure {
            server,
            page,
            path,
            connections: CONNECTIONS,
            cookie: None,
            error_page: false,
        }
    }
}

/// What wrk measured, and the server's CPU time per request meanwhile.
struct Load {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    cpu_us: f64,
}

pub fn run(root: &Path) -> Result<()> {
    ensure_wrk()?;
    raise_file_limit();
    let wasmtime = ensure_wasmtime(root)?;
    super::step("building the native baseline (release)");
    super::cargo(root)
        .args(["build", "--release", "-p", "native-baseline"])
        .status_ok()?;

    let work = std::env::temp_dir().join(format!("rawalite-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let manifest = bench_manifest(root, &work, None)?;
    let rawalite = root.join("target/release/rawalite");
    seed(&rawalite, &manifest, &work)?;
    add_user(&rawalite, &manifest)?;

    super::step("starting the three servers");
    let cache = work.join("cache");
    let port = free_port()?;
    let mut raw = Server::start(
        "RawaLite",
        &mut rawalite_serve(&rawalite, &manifest, port, &cache),
        port,
        &work,
    )?;
    let native = native(
        root,
        &work.join("data/rawalite.db").to_string_lossy(),
        &work,
    )?;
    let port = free_port()?;
    let wasmtime_serve = Server::start(
        "wasmtime serve",
        Command::new(&wasmtime)
            // `-S cli`: a Rust component's std imports wasi:cli, which
            // serve's proxy world leaves out by default. The pooling
            // allocator is its fastest setting (and RawaLite's).
            .args(["serve", "-S", "cli", "-O", "pooling-allocator=y"])
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .arg(root.join("target/guests/bench-http-hello.wasm")),
        port,
        &work,
    )?;

    // The same bytes from every system, or the comparison means nothing.
    let hello = raw.get("/hello/bench")?;
    for other in [&native, &wasmtime_serve] {
        if other.get("/hello/bench")? != hello {
            bail!(
                "{} answers /hello/bench differently from RawaLite",
                other.name
            );
        }
    }
    // The same page from a TypeScript and a Python guest, in a server of
    // their own (a Python guest's compile would change the cold start).
    let languages = {
        let work = work.join("languages");
        std::fs::create_dir_all(&work)?;
        let manifest = languages_manifest(root, &work)?;
        let port = free_port()?;
        let command = &mut rawalite_serve(&rawalite, &manifest, port, &cache);
        Server::start("RawaLite (other languages)", command, port, &work)?
    };
    for language in ["ts-hello", "python-hello"] {
        if languages.get(&format!("/{language}/bench"))? != hello {
            bail!("the {language} guest's page differs from the Rust hello's");
        }
    }
    same_customers(&raw, &native)?;

    // The same app with its access log on, as users run it: to a file,
    // as text and as JSON (each with a data directory of its own, which
    // only one `serve` may hold; hello reads nothing from it).
    let mut logging = Vec::new();
    for (name, log, dir) in [
        ("RawaLite (access log, text)", Log::Text, "log-text"),
        ("RawaLite (access log, JSON)", Log::Json, "log-json"),
    ] {
        let work = work.join(dir);
        std::fs::create_dir_all(&work)?;
        let manifest = bench_manifest(root, &work, None)?;
        let port = free_port()?;
        let mut command = rawalite_serve(&rawalite, &manifest, port, &cache);
        log.apply(&mut command);
        logging.push(Server::start(name, &mut command, port, &work)?);
    }

    let cookie = sign_in(raw.port)?;
    let mut plan = Vec::new();
    for server in [&raw, &native, &wasmtime_serve, &logging[0], &logging[1]] {
        plan.push(Measure::new(server, "hello", "/hello/bench"));
    }
    plan.push(Measure::new(
        &languages,
        "hello, TypeScript guest",
        "/ts-hello/bench",
    ));
    plan.push(Measure::new(
        &languages,
        "hello, Python guest",
        "/python-hello/bench",
    ));
    for server in [&raw, &native] {
        plan.push(Measure::new(server, "db 10 rows", "/customers-page"));
    }
    plan.push(Measure {
        cookie: Some(&cookie),
        ..Measure::new(&raw, "dashboard (signed in)", "/dashboard/")
    });
    plan.push(Measure {
        connections: MANY,
        ..Measure::new(&raw, "hello", "/hello/bench")
    });
    // The host's own paths, with no guest: where a guest's request spends
    // its time outside the sandbox.
    plan.push(Measure {
        error_page: true,
        ..Measure::new(&raw, "host 404 page", "/no-such-page")
    });
    plan.push(Measure::new(&raw, "static file, 52 B", "/static/small.css"));
    plan.push(Measure::new(
        &raw,
        "static file, 100 KiB",
        "/static/large.js",
    ));
    let mut runs = measure(&plan, ROUNDS)?;
    drop(plan);
    drop(logging);
    drop(languages);

    super::step(&format!(
        "RawaLite · db 10 rows for {LONG_RUN} s: RSS after 5 s and at the end"
    ));
    let (rss_5s, rss_end) = long_run(&raw, "/customers-page")?;
    raw.stop();
    drop(native);
    drop(wasmtime_serve);

    runs.extend(on_postgres(root, &rawalite, &work.join("postgres"))?);

    super::step("cold start: from `rawalite serve` to the first answered request");
    let warm = cold_start(&rawalite, &manifest, std::iter::repeat_n(cache, 5))?;
    let empty = (0..3).map(|i| work.join(format!("empty-cache-{i}")));
    let cold = cold_start(&rawalite, &manifest, empty)?;

    let report = Report {
        runs,
        rss_5s,
        rss_end,
        warm_start_ms: warm,
        cold_start_ms: cold,
    };
    report.print();
    report.write(root)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Everything in `plan`, in `rounds` rounds: within a round each in turn,
/// so a drift of the machine's speed falls on all of them alike.
fn measure(plan: &[Measure], rounds: usize) -> Result<Vec<Run>> {
    let mut runs: Vec<Run> = plan
        .iter()
        .map(|m| Run {
            system: m.server.name,
            page: m.page,
            connections: m.connections,
            rounds: Vec::new(),
            peak_rss_mib: 0.0,
        })
        .collect();
    for round in 1..=rounds {
        for (m, run) in plan.iter().zip(&mut runs) {
            super::step(&format!(
                "round {round}/{rounds} · {} · {}: wrk -c{} -d{DURATION}",
                m.server.name, m.page, m.connections
            ));
            let url = m.server.url(m.path);
            if round == 1 {
                wrk(&url, WARM_UP, m.connections, m.cookie, m.error_page)?;
            }
            let pid = m.server.child.id();
            let before = cpu_ticks(pid)?;
            let mut load = wrk(&url, DURATION, m.connections, m.cookie, m.error_page)?;
            let ticks = cpu_ticks(pid)? - before;
            let requests = load.requests_per_second * duration_secs();
            // /proc counts in USER_HZ, 100 a second on Linux.
            load.cpu_us = ticks as f64 * 10_000.0 / requests.max(1.0);
            run.rounds.push(load);
        }
    }
    for (m, run) in plan.iter().zip(&mut runs) {
        run.peak_rss_mib = status_kib(m.server.child.id(), "VmHWM")? as f64 / 1024.0;
    }
    Ok(runs)
}

/// The native baseline serving from `database` (a file or a URL).
fn native(root: &Path, database: &str, work: &Path) -> Result<Server> {
    let port = free_port()?;
    Server::start(
        "native",
        Command::new(root.join("target/release/native-baseline"))
            .arg(format!("127.0.0.1:{port}"))
            .arg(database),
        port,
        work,
    )
}

fn same_customers(raw: &Server, native: &Server) -> Result<()> {
    if native.get("/customers-page")? != raw.get("/customers-page")? {
        bail!("the native baseline answers /customers-page differently from RawaLite");
    }
    Ok(())
}

/// The database pages again with the app on PostgreSQL (a throwaway
/// cluster, `rawalite migrate` as the deploy step, the same seed), against
/// the native baseline on tokio-postgres.
fn on_postgres(root: &Path, rawalite: &Path, work: &Path) -> Result<Vec<Run>> {
    std::fs::create_dir_all(work)?;
    let cluster = super::postgres::Cluster::start(root)?;
    let url = cluster.create_database("bench")?;
    let manifest = bench_manifest(root, work, Some(&url))?;
    super::step("rawalite migrate (PostgreSQL)");
    Command::new(rawalite)
        .args(["migrate", "--manifest"])
        .arg(&manifest)
        .stdout(Stdio::null())
        .status_ok()?;
    seed(rawalite, &manifest, work)?;
    add_user(rawalite, &manifest)?;
    let port = free_port()?;
    let raw = Server::start(
        "RawaLite",
        &mut rawalite_serve(rawalite, &manifest, port, &work.join("cache")),
        port,
        work,
    )?;
    let native = native(root, &url, work)?;
    same_customers(&raw, &native)?;
    // A connection per request at a time, as a pool lends them (and as
    // RawaLite's calls hold theirs), beside the shared, pipelined clients.
    let port = free_port()?;
    let pooled = Server::start(
        "native (pool)",
        Command::new(root.join("target/release/native-baseline"))
            .arg(format!("127.0.0.1:{port}"))
            .arg(&url)
            .arg("--pool"),
        port,
        work,
    )?;
    same_customers(&raw, &pooled)?;
    let cookie = sign_in(raw.port)?;
    let mut plan: Vec<Measure> = [&raw, &native, &pooled]
        .into_iter()
        .map(|server| Measure::new(server, "db 10 rows (PostgreSQL)", "/customers-page"))
        .collect();
    plan.push(Measure {
        cookie: Some(&cookie),
        ..Measure::new(&raw, "dashboard (signed in, PostgreSQL)", "/dashboard/")
    });
    let mut runs = measure(&plan, ROUNDS)?;
    drop(plan);
    drop((raw, native, pooled));
    runs.extend(through_pgbouncer(
        root, rawalite, &manifest, &cluster, work,
    )?);
    runs.extend(through_haproxy(root, rawalite, &manifest, work)?);
    Ok(runs)
}

/// The database page with the host's connections through PgBouncer in
/// transaction mode (`deploy/pgbouncer.ini`, its addresses rewritten, no
/// TLS on either side as none is on the direct path, `trust` as the
/// cluster has), against the same host straight to the server, in turns.
fn through_pgbouncer(
    root: &Path,
    rawalite: &Path,
    manifest: &Path,
    cluster: &super::postgres::Cluster,
    work: &Path,
) -> Result<Vec<Run>> {
    super::servers::ensure()?;
    let dir = work.join("pgbouncer");
    std::fs::create_dir_all(&dir)?;
    let port = free_port()?;
    let users = cluster.psql(
        "bench",
        "SELECT format('\"%s\" \"\"', rolname) FROM pg_roles \
         WHERE rolname = 'postgres' OR starts_with(rolname, 'bench_g_')",
    )?;
    std::fs::write(dir.join("userlist.txt"), users)?;
    let mut config = std::fs::read_to_string(root.join("deploy/pgbouncer.ini"))?;
    for (shipped, here) in [
        (
            "rawalite = host=/var/run/postgresql port=5432 dbname=rawalite".to_owned(),
            format!(
                "bench = host={} port=5432 dbname=bench",
                cluster.socket_dir().display()
            ),
        ),
        (
            "listen_port = 6432".to_owned(),
            format!("listen_port = {port}"),
        ),
        (
            "auth_type = scram-sha-256".to_owned(),
            "auth_type = trust".to_owned(),
        ),
        ("client_tls_sslmode = require".to_owned(), String::new()),
        (
            "client_tls_cert_file = /etc/pgbouncer/server.crt".to_owned(),
            String::new(),
        ),
        (
            "client_tls_key_file = /etc/pgbouncer/server.key".to_owned(),
            String::new(),
        ),
        ("/etc/pgbouncer".to_owned(), dir.display().to_string()),
        ("/var/log/postgresql".to_owned(), dir.display().to_string()),
        (
            "/var/run/postgresql/".to_owned(),
            format!("{}/", dir.display()),
        ),
    ] {
        if !config.contains(&shipped) {
            bail!("deploy/pgbouncer.ini has no `{shipped}`");
        }
        config = config.replace(&shipped, &here);
    }
    let file = dir.join("pgbouncer.ini");
    std::fs::write(&file, config)?;
    if cluster.as_root() {
        // PgBouncer refuses to run as root; it runs as the cluster does.
        Command::new("chown")
            .args(["-R", "postgres"])
            .arg(&dir)
            .status_ok()?;
    }
    let mut bouncer = Command::new(super::servers::PGBOUNCER);
    if cluster.as_root() {
        bouncer.args(["-u", "postgres"]);
    }
    // Not HTTP: ready when it takes connections.
    let _bouncer = Server {
        name: "PgBouncer",
        child: bouncer.arg(&file).spawn().context("starting PgBouncer")?,
        port,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "PgBouncer did not listen on port {port}; see {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(manifest)?;
    let pooled_manifest = work.join("rawalite-pgbouncer.toml");
    let direct = text
        .lines()
        .find(|l| l.starts_with("database = "))
        .context("the bench manifest names no database")?;
    std::fs::write(
        &pooled_manifest,
        text.replace(
            direct,
            &format!(
                "database = \"postgres://postgres@127.0.0.1:{port}/bench?pgbouncer=true&sslmode=disable\""
            ),
        ),
    )?;
    let start = |system, manifest: &Path| -> Result<Server> {
        let port = free_port()?;
        Server::start(
            system,
            &mut rawalite_serve(rawalite, manifest, port, &work.join("cache")),
            port,
            work,
        )
    };
    let direct = start("RawaLite (direct)", manifest)?;
    let pooled = start("RawaLite via PgBouncer", &pooled_manifest)?;
    same_customers(&direct, &pooled)?;
    measure(
        &[
            Measure::new(&direct, "db 10 rows (PostgreSQL)", "/customers-page"),
            Measure::new(&pooled, "db 10 rows (PostgreSQL)", "/customers-page"),
        ],
        ROUNDS,
    )
}

/// The database page through HAProxy with the shipped configuration
/// (`deploy/haproxy.cfg`, its ports rewritten) in front of 1, 2 and 3
/// hosts on the same database. On one machine the hosts share its cores,
/// so this shows the balancer's cost and the hosts' sharing, not scaling.
fn through_haproxy(root: &Path, rawalite: &Path, manifest: &Path, work: &Path) -> Result<Vec<Run>> {
    super::servers::ensure()?;
    let shipped = std::fs::read_to_string(root.join("deploy/haproxy.cfg"))?;
    let mut runs = Vec::new();
    for (n, system) in [
        (1, "HAProxy + 1 host"),
        (2, "HAProxy + 2 hosts"),
        (3, "HAProxy + 3 hosts"),
    ] {
        let mut hosts = Vec::new();
        let mut config = shipped.clone();
        for i in 0..3 {
            let shipped_server = format!("server host{} 127.0.0.1:{}", i + 1, 8081 + i);
            if !config.contains(&shipped_server) {
                bail!("deploy/haproxy.cfg has no `{shipped_server}`");
            }
            if i < n {
                let port = free_port()?;
                hosts.push(Server::start(
                    "RawaLite host",
                    &mut rawalite_serve(rawalite, manifest, port, &work.join("cache")),
                    port,
                    work,
                )?);
                config = config.replace(
                    &shipped_server,
                    &format!("server host{} 127.0.0.1:{port}", i + 1),
                );
            } else {
                config = config.replace(&format!("    {shipped_server}\n"), "");
            }
        }
        let (front, stats) = (free_port()?, free_port()?);
        config = config
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{front}"))
            .replace("127.0.0.1:8404", &format!("127.0.0.1:{stats}"));
        let file = work.join(format!("haproxy-{n}.cfg"));
        std::fs::write(&file, config)?;
        let balancer = Server::start(
            system,
            Command::new(super::servers::HAPROXY)
                .arg("-db")
                .arg("-f")
                .arg(&file),
            front,
            work,
        )?;
        // Every host in the rotation before measuring.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let csv = http_get(stats, "/stats;csv").unwrap_or_default();
            let up = String::from_utf8_lossy(&csv)
                .lines()
                .filter(|l| l.starts_with("hosts,host") && l.contains(",UP,"))
                .count();
            if up == n {
                break;
            }
            if Instant::now() > deadline {
                bail!("HAProxy saw {up} of {n} hosts up after 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Its rounds one after another: the hosts differ from one system
        // to the next.
        runs.extend(measure(
            &[Measure::new(
                &balancer,
                "db 10 rows (PostgreSQL, via HAProxy)",
                "/customers-page",
            )],
            ROUNDS,
        )?);
        drop(balancer);
        drop(hosts);
    }
    Ok(runs)
}

use super::StatusOk;

fn ensure_wrk() -> Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    super::apt::install(&["wrk"])
}

/// `target/tools/bin/wasmtime`, installed from crates.io when missing: only
/// what `wasmtime serve` needs, so the build stays as short as it can (48's
/// `serve` does not compile without `component-model-async`).
fn ensure_wasmtime(root: &Path) -> Result<PathBuf> {
    let bin = root.join("target/tools/bin/wasmtime");
    let version = Command::new(&bin).arg("--version").output();
    if version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(WASMTIME_VERSION)) {
        return Ok(bin);
    }
    super::step(&format!(
        "installing wasmtime-cli {WASMTIME_VERSION} for `wasmtime serve` (cargo install --locked; several minutes, once)"
    ));
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["install", "--locked", "--no-default-features"])
        .args([
            "--features",
            "run,serve,cranelift,pooling-allocator,parallel-compilation,component-model-async",
        ])
        .arg("--root")
        .arg(root.join("target/tools"))
        .arg("--target-dir")
        .arg(root.join("target/tools-build"))
        .arg(format!("wasmtime-cli@{WASMTIME_VERSION}"))
        .status_ok()?;
    Ok(bin)
}

/// The bench app in `work`, on SQLite or on the PostgreSQL `database`.
fn bench_manifest(root: &Path, work: &Path, database: Option<&str>) -> Result<PathBuf> {
    let guests = root.join("target/guests");
    // A small stylesheet and a 100 KiB script, as an app ships them.
    let statics = work.join("static");
    std::fs::create_dir_all(&statics)?;
    std::fs::write(
        statics.join("small.css"),
        "body { font: 16px/1.4 sans-serif; color: #222; }\n\n",
    )?;
    std::fs::write(statics.join("large.js"), "x".repeat(100 << 10))?;
    let database = database.map_or(String::new(), |url| format!("database = \"{url}\"\n"));
    let text = format!(
        r#"[app]
name = "RawaLite bench"
data_dir = "{data}"
# wrk's 1,000 connections all come from 127.0.0.1, which `serve` would cap
# as one client; as a balancer in front would be, loopback is trusted.
trusted_proxies = ["127.0.0.1"]
static = "{statics}"
{database}
[[guest]]
name = "hello"
component = "{guests}/hello.wasm"
route = "/hello"

[[guest]]
name = "customers-page"
component = "{guests}/bench-customers.wasm"
route = "/customers-page"
[guest.db]
read = ["customers"]

# The demo's sign-in and dashboard: a signed-in page.
[[guest]]
name = "login"
component = "{guests}/login.wasm"
route = "/login"
[guest.session]
login = true

[[guest]]
name = "dashboard"
component = "{guests}/dashboard.wasm"
route = "/dashboard"
[guest.db]
read = ["customers", "invoices"]
[guest.session]
require_login = true

# Seeds the database; no route.
[[guest]]
name = "probe"
component = "{guests}/probe.wasm"
[guest.db]
read = ["invoice_items"]
write = ["customers", "invoices"]
"#,
        data = work.join("data").display(),
        guests = guests.display(),
        statics = statics.display(),
    );
    let file = work.join("rawalite.toml");
    std::fs::write(&file, text)?;
    Ok(file)
}

/// The hello page from a TypeScript and a Python guest.
fn languages_manifest(root: &Path, work: &Path) -> Result<PathBuf> {
    let guests = root.join("target/guests");
    let mut text = format!(
        "[app]\nname = \"RawaLite bench\"\ndata_dir = \"{}\"\n",
        work.join("data").display()
    );
    for name in ["ts-hello", "python-hello"] {
        text += &format!(
            "\n[[guest]]\nname = \"{name}\"\ncomponent = \"{}/{name}.wasm\"\nroute = \"/{name}\"\n",
            guests.display()
        );
    }
    let file = work.join("rawalite.toml");
    std::fs::write(&file, text)?;
    Ok(file)
}

fn seed(rawalite: &Path, manifest: &Path, work: &Path) -> Result<()> {
    super::step(&format!(
        "seeding {SEED_CUSTOMERS} customers and an invoice for each"
    ));
    let customers = (1..=SEED_CUSTOMERS).map(|i| {
        format!(
            r#"{{"sql": "INSERT INTO customers (name, email) VALUES (?, ?)", "params": ["t:Customer {i} & Co", "t:customer{i}@example.org"]}}"#
        )
    });
    let invoices = (1..=SEED_CUSTOMERS).map(|i| {
        let status = if i % 3 == 0 { "paid" } else { "open" };
        format!(
            r#"{{"sql": "INSERT INTO invoices (number, customer_id, issued_on, status, total_cents) VALUES (?, ?, '2026-11-01', ?, ?)", "params": [{i}, {i}, "t:{status}", {}]}}"#,
            i * 1234
        )
    });
    let statements: Vec<String> = customers.chain(invoices).collect();
    let body = work.join("seed.json");
    std::fs::write(&body, format!("[{}]", statements.join(",")))?;
    Command::new(rawalite)
        .args(["render", "--manifest"])
        .arg(manifest)
        .args(["--guest", "probe", "--method", "POST", "--body-file"])
        .arg(&body)
        .arg("/db/transaction")
        .stdout(Stdio::null())
        .status_ok()
}

/// The user the signed-in page is measured as.
const USER: &str = "bench";
const PASSWORD: &str = "a long bench password";

fn add_user(rawalite: &Path, manifest: &Path) -> Result<()> {
    let mut child = Command::new(rawalite)
        .args(["user", "add", USER, "--manifest"])
        .arg(manifest)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{PASSWORD}\n").as_bytes())?;
    if !child.wait()?.success() {
        bail!("`rawalite user add {USER}` failed");
    }
    Ok(())
}

/// Signs in through the login guest; the session cookie (`name=value`).
fn sign_in(port: u16) -> Result<String> {
    let body = format!("username={USER}&password={}", PASSWORD.replace(' ', "+"));
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nOrigin: http://127.0.0.1:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .and_then(|c| c.split(';').next())
        .map(str::to_owned)
        .with_context(|| format!("signing in gave no cookie:\n{response}"))
}

struct Server {
    name: &'static str,
    child: Child,
    port: u16,
}

impl Server {
    /// Starts `command` with its output in `<work>/<name>.log` and waits
    /// until it answers.
    fn start(name: &'static str, command: &mut Command, port: u16, work: &Path) -> Result<Server> {
        let log = work.join(format!("{}.log", name.replace(' ', "-")));
        let output = std::fs::File::create(&log)?;
        let child = command
            .stdout(output.try_clone()?)
            .stderr(output)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let mut server = Server { name, child, port };
        let deadline = Instant::now() + Duration::from_secs(300);
        // RawaLite is ready when /healthz says every guest compiled; the
        // others (no /healthz) when they answer.
        let ready = |server: &Server| match server.get("/healthz") {
            Ok(_) => true,
            Err(e) if e.to_string().contains(" 404") => server.get("/hello/ready").is_ok(),
            Err(_) => false,
        };
        while !ready(&server) {
            let exited = server.child.try_wait()?;
            if exited.is_some() || Instant::now() > deadline {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                bail!("{name} did not answer on port {port}; its output:\n{output}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(server)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        http_get(self.port, path)
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A GET over a fresh connection; the body of a 200, or an error.
fn http_get(port: u16, path: &str) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    if !text.starts_with("HTTP/1.1 200") {
        bail!("{}", text.lines().next().unwrap_or("no answer"));
    }
    let at = text.find("\r\n\r\n").context("no header end")? + 4;
    let mut body = response[at..].to_vec();
    if text[..at]
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Lets wrk open a thousand sockets: raises this process's soft limit on
/// open files to its hard limit (children inherit it).
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Runs wrk with `connections` (and a cookie); fails on any error it saw.
fn wrk(
    url: &str,
    duration: &str,
    connections: usize,
    cookie: Option<&str>,
    error_page: bool,
) -> Result<Load> {
    let mut command = Command::new("wrk");
    command.args([
        "-t2",
        "-c",
        &connections.to_string(),
        "-d",
        duration,
        "--latency",
    ]);
    if let Some(cookie) = cookie {
        command.args(["-H", &format!("Cookie: {cookie}")]);
    }
    let out = command.arg(url).output().context("running wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if (text.contains("Non-2xx or 3xx responses") && !error_page) || text.contains("Socket errors")
    {
        bail!("{url} answered errors under load:\n{text}");
    }
    let field = |prefix: &str| -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.split_whitespace().nth(1))
    };
    let rps: f64 = field("Requests/sec:")
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no requests/s in wrk's output:\n{text}"))?;
    let p50 = field("50%").and_then(millis).context("no p50")?;
    let p99 = field("99%").and_then(millis).context("no p99")?;
    Ok(Load {
        requests_per_second: rps,
        p50_ms: p50,
        p99_ms: p99,
        cpu_us: 0.0,
    })
}

/// The CPU time of process `pid` so far, all its threads, user and system,
/// in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command's `)`: state is the 3rd field, utime the
    // 14th and stime the 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no field {n} in /proc/{pid}/stat"))
    };
    Ok(field(14)? + field(15)?)
}

/// [`DURATION`] in seconds.
fn duration_secs() -> f64 {
    DURATION.trim_end_matches('s').parse().unwrap_or(5.0)
}

/// `250.00us`, `1.20ms` or `1.01s` in milliseconds.
fn millis(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(v) = value.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = value.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = value.strip_suffix('s') {
        (v, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// A `kB` field of /proc/PID/status (VmRSS, VmHWM).
fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} for process {pid}"))
}

/// RSS in MiB after 5 s of load and at the end of a long run.
fn long_run(server: &Server, path: &str) -> Result<(f64, f64)> {
    let pid = server.child.id();
    let url = server.url(path);
    let load =
        std::thread::spawn(move || wrk(&url, &format!("{LONG_RUN}s"), CONNECTIONS, None, false));
    std::thread::sleep(Duration::from_secs(5));
    let early = status_kib(pid, "VmRSS")? as f64 / 1024.0;
    std::thread::sleep(Duration::from_secs(LONG_RUN - 6));
    let late = status_kib(pid, "VmRSS")? as f64 / 1024.0;
    load.join()
        .map_err(|_| anyhow::anyhow!("wrk thread failed"))??;
    Ok((early, late))
}

/// RawaLite's log in a run: warnings only, as the other servers log
/// nothing either, or its default (the access log too) as text or JSON.
#[derive(Clone, Copy)]
enum Log {
    Text,
    Json,
}

impl Log {
    /// Turns `serve`'s default log on in `command`, in this format.
    fn apply(self, command: &mut Command) {
        command.env_remove("RUST_LOG");
        if let Log::Json = self {
            command.args(["--log-format", "json"]);
        }
    }
}

/// `rawalite serve` of `manifest` on `port` with its compile cache in
/// `cache`, logging only warnings (the other servers log nothing either).
fn rawalite_serve(rawalite: &Path, manifest: &Path, port: u16, cache: &Path) -> Command {
    let mut command = Command::new(rawalite);
    command
        .args(["serve", "--manifest"])
        .arg(manifest)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RAWALITE_CACHE_DIR", cache)
        .env("RUST_LOG", "warn");
    command
}

/// Median milliseconds from spawning `rawalite serve` to a 200 for /hello,
/// one start per compile cache in `caches`.
fn cold_start(
    rawalite: &Path,
    manifest: &Path,
    caches: impl Iterator<Item = PathBuf>,
) -> Result<f64> {
    let mut times = Vec::new();
    for cache in caches {
        times.push(start_once(rawalite, manifest, &cache)?);
    }
    Ok(median(times))
}

fn start_once(rawalite: &Path, manifest: &Path, cache: &Path) -> Result<f64> {
    let port = free_port()?;
    let started = Instant::now();
    let mut child = rawalite_serve(rawalite, manifest, port, cache)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = started + Duration::from_secs(60);
    let elapsed = loop {
        if http_get(port, "/hello/").is_ok() {
            break started.elapsed();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("rawalite serve did not answer within 60 s");
        }
        std::thread::sleep(Duration::from_micros(500));
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait()?;
    Ok(elapsed.as_secs_f64() * 1000.0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A system and one of its pages.
type Page = (&'static str, &'static str);

/// The ratios reported: what, a system's page over another system's
/// page, the target.
const RATIOS: &[(&str, Page, Page, &str)] = &[
    (
        "hello: RawaLite / wasmtime serve",
        ("RawaLite", "hello"),
        ("wasmtime serve", "hello"),
        "≥ 4x",
    ),
    (
        "hello: RawaLite / native",
        ("RawaLite", "hello"),
        ("native", "hello"),
        "≥ 0.4x",
    ),
    (
        "host 404 page (no guest): RawaLite / native hello",
        ("RawaLite", "host 404 page"),
        ("native", "hello"),
        "≥ 0.9x",
    ),
    (
        "static file, 52 B: RawaLite / native hello",
        ("RawaLite", "static file, 52 B"),
        ("native", "hello"),
        "≥ 0.9x",
    ),
    (
        "static file, 100 KiB: RawaLite / native hello",
        ("RawaLite", "static file, 100 KiB"),
        ("native", "hello"),
        "",
    ),
    (
        "hello: access log (text, to a file) / log at warn",
        ("RawaLite (access log, text)", "hello"),
        ("RawaLite", "hello"),
        "≥ 0.95x",
    ),
    (
        "hello: access log (JSON, to a file) / log at warn",
        ("RawaLite (access log, JSON)", "hello"),
        ("RawaLite", "hello"),
        "≥ 0.95x",
    ),
    (
        "db 10 rows: RawaLite / native",
        ("RawaLite", "db 10 rows"),
        ("native", "db 10 rows"),
        "≥ 0.6x",
    ),
    (
        "db 10 rows on PostgreSQL: RawaLite / native (tokio-postgres, connections shared)",
        ("RawaLite", "db 10 rows (PostgreSQL)"),
        ("native", "db 10 rows (PostgreSQL)"),
        "≥ 0.6x",
    ),
    (
        "db 10 rows on PostgreSQL: RawaLite / native (a pool: one request per connection)",
        ("RawaLite", "db 10 rows (PostgreSQL)"),
        ("native (pool)", "db 10 rows (PostgreSQL)"),
        "",
    ),
    (
        "db 10 rows on PostgreSQL: through PgBouncer (transaction mode) / straight to the server",
        ("RawaLite via PgBouncer", "db 10 rows (PostgreSQL)"),
        ("RawaLite (direct)", "db 10 rows (PostgreSQL)"),
        "",
    ),
];

struct Report {
    runs: Vec<Run>,
    rss_5s: f64,
    rss_end: f64,
    warm_start_ms: f64,
    cold_start_ms: f64,
}

impl Report {
    fn find(&self, system: &str, page: &str) -> Option<&Run> {
        self.runs
            .iter()
            .find(|r| r.system == system && r.page == page && r.connections == CONNECTIONS)
    }

    /// `(system, page)` over `(other, its page)`, round by round: the
    /// median ratio and the range.
    fn ratio(
        &self,
        (system, page): (&str, &str),
        (other, on): (&str, &str),
    ) -> Option<(f64, f64, f64)> {
        let (a, b) = (self.find(system, page)?, self.find(other, on)?);
        let mut ratios: Vec<f64> = a
            .rounds
            .iter()
            .zip(&b.rounds)
            .map(|(a, b)| a.requests_per_second / b.requests_per_second)
            .collect();
        let (lo, hi) = spread(ratios.iter().copied());
        ratios.sort_by(f64::total_cmp);
        Some((ratios[ratios.len() / 2], lo, hi))
    }

    fn markdown(&self) -> String {
        let mut md = format!(
            "Settings: `wrk -t2 -c{CONNECTIONS}` (and `-c{MANY}` where the table says), {ROUNDS} rounds of {DURATION} after a {WARM_UP} warm-up, the systems taking turns within each round; figures are the median round with the range of all rounds. RawaLite: `rawalite serve` with its defaults (workers: one per core; renders at once: 8 per core), its log at `warn` like the other servers except in the rows that say access log (its default log, to a file). Native: axum on tokio's default multi-thread runtime with rusqlite (a connection per worker thread) or tokio-postgres. wasmtime serve {WASMTIME_VERSION} with the pooling allocator. Everything, wrk included, shares this machine's {} cores. The database is seeded through the app's own migrations.\n\n",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        md += "| system | page | connections | requests/s (median, range) | p50 | p99 | server CPU per request | peak RSS |\n|---|---|---:|---:|---:|---:|---:|---:|\n";
        for r in &self.runs {
            let (lo, hi) = r.range();
            let median = r.median();
            md += &format!(
                "| {} | {} | {} | {:.0} ({:.0}–{:.0}) | {:.2} ms | {:.2} ms | {:.1} µs | {:.1} MiB |\n",
                r.system,
                r.page,
                r.connections,
                median.requests_per_second,
                lo,
                hi,
                median.p50_ms,
                median.p99_ms,
                median.cpu_us,
                r.peak_rss_mib
            );
        }
        md += "\n| ratio (requests/s, within each round) | median | range | target |\n|---|---:|---:|---:|\n";
        for (what, system, other, target) in RATIOS {
            md += &match self.ratio(*system, *other) {
                Some((median, lo, hi)) => {
                    format!("| {what} | {median:.2}x | {lo:.2}–{hi:.2}x | {target} |\n")
                }
                None => format!("| {what} | - | - | {target} |\n"),
            };
        }
        md += &format!(
            "\n| RawaLite | value | target |\n|---|---:|---:|\n| RSS after 5 s of load | {:.1} MiB | |\n| RSS after {LONG_RUN} s of load | {:.1} MiB ({:+.1}%) | within 10% |\n| cold start, warm compile cache (median of 5) | {:.0} ms | ≤ 250 ms |\n| cold start, empty compile cache (median of 3) | {:.0} ms | |\n",
            self.rss_5s,
            self.rss_end,
            (self.rss_end / self.rss_5s - 1.0) * 100.0,
            self.warm_start_ms,
            self.cold_start_ms
        );
        md
    }

    fn print(&self) {
        println!("\n{}", self.markdown());
    }

    /// Replaces the generated part of BENCHMARKS.md and the chart.
    fn write(&self, root: &Path) -> Result<()> {
        super::write_generated(
            root,
            "serve",
            &format!(
                "_Written by `cargo xtask bench serve` on {}._\n\n{}\n![requests/s per page](docs/bench-serve.svg)\n",
                super::today(),
                self.markdown()
            ),
        )?;
        std::fs::create_dir_all(root.join("docs"))?;
        std::fs::write(root.join("docs/bench-serve.svg"), self.svg())?;
        println!("wrote docs/bench-serve.svg");
        Ok(())
    }

    /// A grouped bar chart of requests/s, one group per page.
    fn svg(&self) -> String {
        let systems = [
            ("RawaLite", "#2f5bd3"),
            ("native", "#1f7a4d"),
            ("native (pool)", "#7fbf9f"),
            ("wasmtime serve", "#a15c00"),
        ];
        let pages = [
            "hello",
            "db 10 rows",
            "dashboard (signed in)",
            "db 10 rows (PostgreSQL)",
            "dashboard (signed in, PostgreSQL)",
        ];
        let max = self
            .runs
            .iter()
            .filter(|r| r.connections == CONNECTIONS)
            .map(Run::requests_per_second)
            .fold(1.0, f64::max);
        let (width, height, left, top, chart_h) = (900.0, 340.0, 70.0, 40.0, 220.0);
        let group_w = (width - left - 20.0) / pages.len() as f64;
        let bar_w = group_w / 5.5;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"22\" font-size=\"14\" font-weight=\"bold\">Requests per second (wrk, {CONNECTIONS} connections, loopback)</text>\n"
        );
        for i in 0..=4 {
            let value = max * i as f64 / 4.0;
            let y = top + chart_h - chart_h * i as f64 / 4.0;
            svg += &format!(
                "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{value:.0}</text>\n",
                width - 20.0,
                left - 6.0,
                y + 4.0
            );
        }
        for (g, page) in pages.iter().enumerate() {
            let x0 = left + g as f64 * group_w + bar_w * 0.5;
            // The bars of the systems measured on this page, side by side.
            let mut placed = 0;
            for (system, color) in &systems {
                let Some(run) = self.find(system, page) else {
                    continue;
                };
                let h = chart_h * run.requests_per_second() / max;
                let x = x0 + placed as f64 * (bar_w + 6.0);
                placed += 1;
                svg += &format!(
                    "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}</text>\n",
                    top + chart_h - h,
                    x + bar_w / 2.0,
                    top + chart_h - h - 4.0,
                    run.requests_per_second()
                );
            }
            svg += &format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"bold\">{page}</text>\n",
                x0 + placed as f64 * (bar_w + 6.0) / 2.0,
                top + chart_h + 20.0
            );
        }
        for (s, (system, color)) in systems.iter().enumerate() {
            let x = left + s as f64 * 150.0;
            let y = height - 20.0;
            svg += &format!(
                "<rect x=\"{x}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{color}\"/><text x=\"{:.1}\" y=\"{y}\">{system}</text>\n",
                y - 10.0,
                x + 18.0
            );
        }
        svg + "</svg>\n"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_latencies_are_read_in_milliseconds() {
        assert_eq!(millis("250.00us"), Some(0.25));
        assert_eq!(millis("1.50ms"), Some(1.5));
        assert_eq!(millis("2.00s"), Some(2000.0));
        assert_eq!(millis("fast"), None);
    }

    #[test]
    fn cpu_time_is_read_from_proc_and_grows() {
        let pid = std::process::id();
        let before = cpu_ticks(pid).unwrap();
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(cpu_ticks(pid).unwrap() > before);
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
    }
}
