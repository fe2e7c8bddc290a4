//! What every test file needs: the built guests, the built binary, and
//! requests to send them. `cargo xtask test` builds both before the tests.
//!
//! Past 600 lines on purpose: it is every suite's toolbox (fixtures,
//! servers, requests, PostgreSQL), one place to look for a helper.

#![allow(dead_code)] // each test file uses its own part of this module

pub mod sdk;

use rawalite_host::app::App;
use rawalite_host::capabilities::{Error, ErrorCode, Request};
use rawalite_host::manifest::Manifest;
use rawalite_host::runtime::{Guest, Outcome, Runtime};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_owned()
}

/// A guest built by `cargo xtask build`.
pub fn guest(name: &str) -> PathBuf {
    let path = workspace()
        .join("target/guests")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo xtask test`",
        path.display()
    );
    path
}

/// One compile cache for the servers of the demo app: its Python guest
/// takes seconds to compile, once per run instead of once per test. The
/// cache writes atomically, so tests may share it; tests of the cache
/// itself use their own.
pub fn shared_cache() -> PathBuf {
    workspace().join("target/test-cache")
}

/// The `rawalite` binary built by `cargo xtask build`.
pub fn bin() -> PathBuf {
    let path = workspace().join("target/release/rawalite");
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo xtask test`",
        path.display()
    );
    path
}

/// `rawalite ARGS…` with a private compile cache, run to completion.
pub fn rawalite(args: &[&str], cache: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .env("RAWALITE_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .output()
        .expect("rawalite runs")
}

/// `rawalite ARGS` as an operator runs it: its exit code and everything it
/// printed, stdout then stderr.
pub fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("rawalite runs");
    let text = format!("{}{}", stdout(&out), stderr(&out));
    (out.status.code().unwrap_or(-1), text)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A GET of `target` (`/path?query`), as the host would build it.
pub fn get(target: &str) -> Request {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Request {
        method: "GET".into(),
        base: String::new(),
        path: path.into(),
        query: query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// Writes `dir/rawalite.toml`: an app whose data lives in `dir/data`, with
/// the given `[[guest]]` tables appended. `{probe}` in them stands for the
/// built probe's path.
pub fn manifest(dir: &Path, guests: &str) -> PathBuf {
    manifest_on(dir, guests, on_postgres())
}

/// [`manifest`] on a fresh PostgreSQL database (migrated) when `postgres`,
/// whatever the pass.
pub fn manifest_on(dir: &Path, guests: &str, postgres: bool) -> PathBuf {
    let file = dir.join("rawalite.toml");
    let database = if postgres {
        format!("database = \"{}\"\n", pg_database())
    } else {
        String::new()
    };
    let text = format!(
        "[app]\nname = \"test\"\ndata_dir = \"data\"\n{database}\n{}",
        guests.replace("{probe}", &guest("probe").display().to_string())
    );
    std::fs::write(&file, text).expect("write the manifest");
    if postgres {
        migrate(&file);
    }
    file
}

/// Whether this pass of the suites runs on PostgreSQL: `cargo xtask test`
/// runs the db, session, hostile, crash, paths and browser suites a second time
/// with `RAWALITE_TEST_BACKEND=postgres`.
pub fn on_postgres() -> bool {
    std::env::var("RAWALITE_TEST_BACKEND").as_deref() == Ok("postgres")
}

/// `database = "…"` for an `[app]` table: a fresh database of the test
/// cluster on PostgreSQL, nothing on SQLite.
pub fn database_line() -> String {
    if on_postgres() {
        format!("database = \"{}\"\n", pg_database())
    } else {
        String::new()
    }
}

/// A new, empty database in the throwaway cluster `cargo xtask test`
/// started (its socket directory is `RAWALITE_TEST_POSTGRES`); its URL.
pub fn pg_database() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let socket = std::env::var("RAWALITE_TEST_POSTGRES").expect(
        "RAWALITE_TEST_POSTGRES is not set: run the tests with `cargo xtask test`, which starts a PostgreSQL cluster for them",
    );
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let out = psql(
        &format!("postgres://postgres@/postgres?host={socket}"),
        &format!("CREATE DATABASE {name}"),
    );
    assert!(out.status.success(), "CREATE DATABASE: {}", stderr(&out));
    format!("postgres://postgres@/{name}?host={socket}")
}

/// `rawalite migrate` of the manifest `file`, as the deploy step on
/// PostgreSQL (on SQLite, every command migrates anyway).
pub fn migrate(file: &Path) {
    let out = Command::new(bin())
        .args(["migrate", "--manifest"])
        .arg(file)
        .output()
        .expect("rawalite migrate runs");
    assert!(
        out.status.success(),
        "migrate: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// An app in a temporary directory, opened in-process with a private
/// compile cache: its manifest has the given `[[guest]]` tables (see
/// [`manifest`]) and its data lives in `dir/data`.
pub struct ProbeApp {
    pub dir: tempfile::TempDir,
    pub manifest: PathBuf,
    pub app: App,
}

impl ProbeApp {
    pub fn open(guests: &str) -> Self {
        Self::open_with(guests, on_postgres())
    }

    /// [`ProbeApp::open`] on PostgreSQL, in either pass.
    pub fn open_on_postgres(guests: &str) -> Self {
        Self::open_with(guests, true)
    }

    fn open_with(guests: &str, postgres: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let manifest = manifest_on(dir.path(), guests, postgres);
        let runtime = Runtime::new(Some(dir.path().join("cache"))).unwrap();
        let app = App::open(Manifest::load(&manifest).unwrap(), None, runtime).unwrap();
        ProbeApp { dir, manifest, app }
    }

    pub fn guest(&self, name: &str) -> Guest {
        self.app.load(name).unwrap()
    }

    /// A path in the data directory (where roots live by default), for
    /// checking behind the guests' backs.
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.dir.path().join("data").join(name)
    }

    pub fn db_file(&self) -> PathBuf {
        self.data_path("rawalite.db")
    }

    /// Runs `sql` on the app's database behind the guests' backs (as its
    /// owner; on PostgreSQL with the host's and the app's schemas on the
    /// search path, so the same SQL serves both backends); the first column
    /// of each row, as text.
    pub fn sql(&self, sql: &str) -> Vec<String> {
        sql_behind(&self.manifest, &self.dir.path().join("data"), sql)
    }

    /// [`ProbeApp::sql`]'s one number.
    pub fn number(&self, sql: &str) -> i64 {
        self.sql(sql)[0]
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A connection of the test's own to the database.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db_file()).unwrap()
    }
}

/// `rawalite render` of a POST of `body` to `target` with the app's guest
/// `guest`, logging at `log` (a `RUST_LOG` filter).
pub fn render_post(app: &ProbeApp, guest: &str, body: &Path, target: &str, log: &str) -> Output {
    Command::new(bin())
        .args(["render", "--manifest"])
        .arg(&app.manifest)
        .args(["--guest", guest, "--method", "POST", "--body-file"])
        .arg(body)
        .arg(target)
        .env("RAWALITE_CACHE_DIR", app.dir.path().join("cache"))
        .env("RUST_LOG", log)
        .output()
        .expect("rawalite runs")
}

/// The body of the response `outcome` must be.
pub fn body(outcome: Outcome) -> Vec<u8> {
    match outcome {
        Outcome::Response(r) => r.body,
        other => panic!("expected a response, got {other:?}"),
    }
}

/// The JSON body of the response `outcome` must be.
pub fn json(outcome: Outcome) -> serde_json::Value {
    serde_json::from_slice(&body(outcome)).unwrap()
}

/// The guest error `outcome` must be.
pub fn err(outcome: Outcome) -> Error {
    match outcome {
        Outcome::Error(e) => e,
        other => panic!("expected a guest error, got {other:?}"),
    }
}

/// Asserts a guest error with `code` whose message contains `needle` and
/// shows no host path.
pub fn assert_code(outcome: Outcome, code: ErrorCode, needle: &str) -> Error {
    let e = err(outcome);
    assert_eq!(e.code, code, "{}", e.message);
    assert!(
        e.message.contains(needle),
        "`{needle}` not in: {}",
        e.message
    );
    assert!(
        !e.message.contains("/tmp"),
        "a host path leaked: {}",
        e.message
    );
    e
}

/// `path?k=v&…` with the values percent-encoded, for the command line.
pub fn url(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        query.append_pair(k, v);
    }
    format!("{path}?{}", query.finish())
}

/// A GET of `path` with these query pairs, for in-process renders.
pub fn get_with(path: &str, pairs: &[(&str, &str)]) -> Request {
    let mut req = get(path);
    req.query = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    req
}

/// The probe's `db.query` of `sql` with text parameters, rendered in
/// process by `guest` for no one.
pub fn query(guest: &Guest, sql: &str, params: &[&str]) -> Outcome {
    probe_db(guest, "/db/query", sql, params)
}

/// The probe's `db.execute`, as [`query`].
pub fn execute(guest: &Guest, sql: &str, params: &[&str]) -> Outcome {
    probe_db(guest, "/db/execute", sql, params)
}

fn probe_db(guest: &Guest, path: &str, sql: &str, params: &[&str]) -> Outcome {
    let mut pairs = vec![("sql", sql)];
    pairs.extend(params.iter().map(|p| ("p", *p)));
    guest
        .render(
            &get_with(path, &pairs),
            rawalite_host::capabilities::session::Caller::default(),
        )
        .outcome
}

/// `rawalite ARGS…` with `stdin` as its standard input.
pub fn rawalite_with_stdin(args: &[&str], cache: &Path, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .env("RAWALITE_CACHE_DIR", cache)
        .env("RUST_LOG", "trace")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("rawalite runs");
    let written = child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes());
    // A command that fails before it reads (an unknown user, say) may have
    // closed its stdin already: its exit code and stderr say what happened.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
    }
    child.wait_with_output().expect("rawalite finishes")
}

/// A real `rawalite serve` on a free port of 127.0.0.1, stopped (SIGTERM)
/// when dropped.
pub struct Served {
    pub child: std::process::Child,
    pub base: String,
    /// The first user's password, as printed on the first run.
    pub admin_password: String,
    /// What the server printed on stdout after starting, read on demand.
    pub stdout: std::sync::mpsc::Receiver<String>,
}

impl Served {
    // The child is waited for in `stop`, which `Drop` calls.
    #[allow(clippy::zombie_processes)]
    pub fn start(manifest: &Path, data: &Path, cache: &Path) -> Served {
        let log = if std::env::var_os("RAWALITE_TEST_LOG").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        };
        Self::start_with(manifest, data, cache, &[], &[], log)
    }

    /// `start`, with more arguments to `serve`, more environment, and its
    /// log (stderr) sent to `log`.
    pub fn start_with(
        manifest: &Path,
        data: &Path,
        cache: &Path,
        args: &[&str],
        envs: &[(&str, &str)],
        log: std::process::Stdio,
    ) -> Served {
        Self::start_at(manifest, data, cache, "127.0.0.1:0", args, envs, log)
    }

    /// `start`, without waiting for guests that compile in the background.
    pub fn start_compiling(manifest: &Path, data: &Path, cache: &Path) -> Served {
        Self::launch(
            manifest,
            data,
            cache,
            "127.0.0.1:0",
            &[],
            &[],
            std::process::Stdio::null(),
        )
    }

    /// `start`, listening on `listen` (a port a load balancer names),
    /// with more arguments to `serve`; its log goes to the test's stderr
    /// with `RAWALITE_TEST_LOG`.
    pub fn start_listening(
        manifest: &Path,
        data: &Path,
        cache: &Path,
        listen: &str,
        args: &[&str],
    ) -> Served {
        let log = if std::env::var_os("RAWALITE_TEST_LOG").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        };
        Self::start_at(manifest, data, cache, listen, args, &[], log)
    }

    fn start_at(
        manifest: &Path,
        data: &Path,
        cache: &Path,
        listen: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        log: std::process::Stdio,
    ) -> Served {
        let served = Self::launch(manifest, data, cache, listen, args, envs, log);
        served.wait_until_compiled();
        served
    }

    /// Starts `serve` and returns once it listens.
    #[allow(clippy::zombie_processes)]
    fn launch(
        manifest: &Path,
        data: &Path,
        cache: &Path,
        listen: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        log: std::process::Stdio,
    ) -> Served {
        use std::io::BufRead;
        if on_postgres() {
            migrate(manifest);
        }
        let mut child = Command::new(bin())
            .args(["serve", "--manifest"])
            .arg(manifest)
            .arg("--data")
            .arg(data)
            .args(["--listen", listen])
            .args(args)
            .env("RAWALITE_CACHE_DIR", cache)
            .env("RUST_LOG", "warn")
            .envs(envs.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("rawalite serve starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut admin_password = String::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).expect("serve printed its address");
            if let Some(password) = line.trim().strip_prefix("Password (shown only now): ") {
                admin_password = password.to_owned();
            }
            if let Some(at) = line.find("http://") {
                let base = line[at..].trim_end_matches('/').to_owned();
                return Served {
                    child,
                    base,
                    admin_password,
                    stdout: rx,
                };
            }
        }
    }

    /// Waits while a guest compiles in the background (an empty compile
    /// cache): `/healthz` lists it as `compiling` until it is ready.
    fn wait_until_compiled(&self) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            let health = agent
                .get(self.url("/healthz"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_to_string().ok())
                .unwrap_or_default();
            if !health.contains("\"compiling\"") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "guests still compiling after 180 s: {health}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("serve exits")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

/// The demo app of the repository's `rawalite.toml`, with absolute paths
/// so it runs from a temp dir; with `probe`, the probe answers at `/probe`.
pub fn demo_manifest(dir: &Path, probe: bool) -> PathBuf {
    let root = workspace();
    let mut app = std::fs::read_to_string(root.join("rawalite.toml"))
        .expect("the repository's rawalite.toml")
        .replace(
            "\"target/guests/",
            &format!("\"{}/target/guests/", root.display()),
        )
        .replace(
            "static = \"static\"",
            &format!("static = \"{}/static\"", root.display()),
        )
        .replacen("[app]\n", &format!("[app]\n{}", database_line()), 1);
    let migrate_after = on_postgres();
    if probe {
        app += &format!(
            "\n[[guest]]\nname = \"probe\"\ncomponent = \"{}\"\nroute = \"/probe\"\n[guest.limits]\ntimeout_ms = 5000\n[guest.db]\nread = [\"customers\"]\nwrite = [\"customers\"]\n",
            guest("probe").display()
        );
    }
    let file = dir.join("rawalite.toml");
    std::fs::write(&file, app).expect("write the manifest");
    if migrate_after {
        migrate(&file);
    }
    file
}

/// The demo app (with the probe when `probe`) on a fresh database of the
/// test cluster, migrated, trusting 127.0.0.1 as its proxy (so a test says
/// which client it is with `X-Forwarded-For`): for several hosts at once,
/// whichever backend this pass runs on.
pub fn demo_on_shared_postgres(dir: &Path, probe: bool) -> PathBuf {
    let file = demo_on_database(dir, probe, &pg_database());
    migrate(&file);
    file
}

/// The demo app (with the probe when `probe`) on the database of `url`,
/// not migrated, trusting 127.0.0.1 as its proxy.
pub fn demo_on_database(dir: &Path, probe: bool, url: &str) -> PathBuf {
    let file = demo_manifest(dir, probe);
    let app = std::fs::read_to_string(&file)
        .expect("the manifest")
        .lines()
        .filter(|l| !l.starts_with("database ="))
        .collect::<Vec<_>>()
        .join("\n")
        .replacen(
            "[app]\n",
            &format!("[app]\ndatabase = \"{url}\"\ntrusted_proxies = [\"127.0.0.1\"]\n"),
            1,
        );
    std::fs::write(&file, app).expect("write the manifest");
    file
}

/// Fails, naming one, unless every write in `acknowledged` is `stored`.
pub fn assert_none_lost<'a>(
    acknowledged: impl IntoIterator<Item = &'a String>,
    stored: &std::collections::HashSet<String>,
) {
    let lost: Vec<&String> = acknowledged
        .into_iter()
        .filter(|n| !stored.contains(*n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}

/// A connection to `to` from the loopback address `from` (127.0.0.2 and
/// so on are all this machine, but count as other clients), with a small
/// receive buffer when `receive_buffer` says so.
pub fn connect_from(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
    receive_buffer: Option<usize>,
) -> std::net::TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    if let Some(size) = receive_buffer {
        socket.set_recv_buffer_size(size).expect("a receive buffer");
    }
    socket
        .bind(&std::net::SocketAddr::from((from, 0)).into())
        .expect("bind a loopback address");
    socket.connect(&to.into()).expect("connect");
    socket.into()
}

/// A port of 127.0.0.1 nothing listens on (for a server the test starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The database URL of the manifest `file`.
pub fn database_url(file: &Path) -> String {
    Manifest::load(file)
        .expect("the manifest")
        .database
        .expect("a manifest with a database")
}

/// The first column of the first row of `sql` on `url`, as text.
pub fn psql_value(url: &str, sql: &str) -> String {
    let out = psql(url, sql);
    assert!(out.status.success(), "{sql}: {}", stderr(&out));
    stdout(&out).lines().next().unwrap_or_default().to_owned()
}

/// `psql` of `sql` on `url`: rows unaligned, no headers, stopping at the
/// first error.
pub fn psql(url: &str, sql: &str) -> Output {
    Command::new("psql")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs")
}

/// Runs `sql` on the database of the app of `manifest` (data in `data`)
/// behind its back, as the database's owner: PostgreSQL when the manifest
/// names one (with the host's and the app's schemas on the search path, so
/// the same SQL serves both backends), else the SQLite file. Returns the
/// first column of each row, as text.
pub fn sql_behind(manifest: &Path, data: &Path, sql: &str) -> Vec<String> {
    let manifest = Manifest::load(manifest).expect("the manifest");
    match &manifest.database {
        Some(url) => {
            let out = psql(url, &format!("SET search_path = host, app; {sql}"));
            assert!(out.status.success(), "{sql}: {}", stderr(&out));
            stdout(&out).lines().map(str::to_owned).collect()
        }
        None => {
            let conn = rusqlite::Connection::open(data.join("rawalite.db")).unwrap();
            let mut stmt = conn.prepare(sql).unwrap();
            if stmt.column_count() == 0 {
                stmt.execute([]).unwrap();
                return Vec::new();
            }
            stmt.query_map([], |row| {
                Ok(match row.get_ref(0)? {
                    rusqlite::types::ValueRef::Null => String::new(),
                    rusqlite::types::ValueRef::Integer(i) => i.to_string(),
                    rusqlite::types::ValueRef::Real(r) => r.to_string(),
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                })
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
        }
    }
}

/// The HTTP client of every test: statuses are answers, not errors; no
/// redirect is followed (a test looks at where it points); a request
/// that hangs fails after a minute.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(60)))
        .build()
        .into()
}

/// A sign-in as `admin` on `host` from `client` (`X-Forwarded-For`):
/// its status, its body and the `name=value` of the session cookie it set.
pub fn sign_in(host: &str, client: &str, password: &str) -> (u16, String, Option<String>) {
    let mut r = agent()
        .post(format!("{host}/login"))
        .header("Origin", host)
        .header("X-Forwarded-For", client)
        .send_form([("username", "admin"), ("password", password), ("next", "/")])
        .expect("the host answers");
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .map(str::to_owned);
    let body = r.body_mut().read_to_string().unwrap_or_default();
    (r.status().as_u16(), body, cookie)
}
