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

mod grows;
mod load;
mod pg;
mod report;

use anyhow::{Context, Result, bail};
use grows::memory_grows;
use load::*;
use pg::*;
use report::*;
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

    let grows = memory_grows(root, &rawalite, &work)?;
    runs.extend(on_postgres(root, &rawalite, &work.join("postgres"))?);

    super::step("cold start: from `rawalite serve` to the first answered request");
    let warm = cold_start(&rawalite, &manifest, std::iter::repeat_n(cache, 5))?;
    let empty = (0..3).map(|i| work.join(format!("empty-cache-{i}")));
    let cold = cold_start(&rawalite, &manifest, empty)?;

    let report = Report {
        runs,
        grows,
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
    let mut command = Command::new(rawalite);
    command
        .args(["user", "add", USER, "--manifest"])
        .arg(manifest);
    add_user_with(&mut command)
}

/// Runs `rawalite user add` as `command` says, with the bench's password.
fn add_user_with(command: &mut Command) -> Result<()> {
    let mut child = command
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
