//! The host's database on PostgreSQL, for deployments past one machine:
//! the app's tables in schema `app`, the host's (users, sessions, the
//! limiter's counts) in schema `host`, which no guest role may use, and one
//! LOGIN role per guest whose privileges mirror its `[guest.db]` grant.
//!
//! `rawalite migrate` is the one deploy step ([`Postgres::migrate`]): under
//! an advisory lock it applies `migrations/postgres/`, revokes PUBLIC's
//! defaults, and creates or updates every guest's role and its GRANTs
//! (revoking what the manifest no longer grants). Everything else only
//! checks: `serve` refuses a database whose migrations or grants are out of
//! step with the binary and the manifest.
//!
//! A call awaits its work on the caller's runtime ([`Postgres::awaited`]:
//! a guest's `db` call, a signed-in request's session) or, synchronous,
//! waits for it on its thread ([`Postgres::run`]: the host's own calls,
//! off the async workers as every blocking host call is), with a small
//! tokio runtime of this module's own watching the sockets.

mod provision;
mod url;

pub use url::DatabaseUrl;

use super::{Applied, MigrationState, Tables};
use anyhow::{Context, Result, bail};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Config, NoTls, Statement};

/// The migrations for PostgreSQL, in order: the first is the twin of
/// `migrations/` up to 0003; then what several hosts share, which only
/// PostgreSQL has: the sign-in counts as rows, jobs, roots' usage.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../../../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_several_hosts",
        include_str!("../../../../migrations/postgres/0002_several_hosts.sql"),
    ),
    (
        "0003_root_usage",
        include_str!("../../../../migrations/postgres/0003_root_usage.sql"),
    ),
];

/// The advisory lock `migrate` holds (an arbitrary constant: "RAWALITE").
const MIGRATE_LOCK: i64 = 0x5241_5741_4c49_5445;

/// Connections one guest may hold at once on one host.
pub const GUEST_CONNECTIONS: usize = 8;
/// Connections the host itself holds for users and sessions.
const HOST_CONNECTIONS: usize = 8;

/// A PostgreSQL database of an app.
pub struct Postgres {
    url: DatabaseUrl,
    /// Taken only when dropped.
    runtime: Option<tokio::runtime::Runtime>,
    /// The host's own connections (the URL's role).
    host: Arc<Pool>,
}

impl Postgres {
    /// Connects to `url` (checking that it answers); nothing is created.
    pub fn connect(url: &DatabaseUrl) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("postgres")
            .enable_all()
            .build()
            .context("cannot start the PostgreSQL client")?;
        let postgres = Postgres {
            host: Arc::new(Pool::new(url.config().clone(), HOST_CONNECTIONS)),
            url: url.clone(),
            runtime: Some(runtime),
        };
        let host = postgres.host.clone();
        postgres
            .run(async move {
                host.get(Instant::now() + std::time::Duration::from_secs(10))
                    .await
                    .map(drop)
            })
            .with_context(|| format!("cannot connect to {}", postgres.url))?;
        Ok(postgres)
    }

    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// Runs `work` to its end on the calling thread, which sleeps while it
    /// waits; the database's runtime watches the sockets and timers and
    /// wakes it. Not a task of the runtime's: a round trip then costs one
    /// wake-up of the caller rather than a hand-off to a runtime thread and
    /// back. Blocks: on an async worker it waits a moment ([`INLINE`]) in
    /// place, then steps off the worker.
    pub fn run<T>(&self, work: impl Future<Output = T>) -> T {
        let runtime = self.runtime.as_ref().expect("taken only when dropped");
        // Unconstrained: a caller inside a runtime's task (a guest rendered
        // on its thread's runtime) must not spend that task's cooperative
        // budget here. Once spent, tokio's resources answer Pending and
        // leave the wake-up to that runtime's scheduler, which cannot run
        // until this returns: the call would wait for its deadline.
        let mut work = std::pin::pin!(tokio::task::unconstrained(work));
        let first = {
            let _context = runtime.enter();
            poll_until(work.as_mut(), Some(Instant::now() + INLINE))
        };
        // Longer than a moment: off the caller's async worker for the rest
        // (stepped off outside this runtime's context, so the worker's
        // replacement comes from the caller's runtime).
        first.unwrap_or_else(|| {
            crate::capabilities::blocking(|| {
                let _context = runtime.enter();
                poll_until(work.as_mut(), None).expect("polled until done")
            })
        })
    }

    /// Awaits `work` on the caller's runtime: the caller's task (a guest's
    /// fiber, a request) waits, and on `serve`'s runtime the worker serves
    /// others meanwhile. It takes a connection that runtime watches where
    /// it can ([`Driver`]), so the answer wakes the caller's runtime itself;
    /// on a runtime of one thread (`rawalite render`, the tests, the bench)
    /// that is this very thread, with no other between it and the socket.
    /// Outside any runtime, [`Postgres::run`].
    pub async fn awaited<T>(&self, work: impl Future<Output = T>) -> T {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => work.await,
            Err(_) => self.run(work),
        }
    }

    /// The host's own connections.
    pub fn host(&self) -> Arc<Pool> {
        self.host.clone()
    }

    /// A pool of connections as the role of guest `guest`.
    pub fn guest_pool(&self, guest: &str) -> Arc<Pool> {
        let role = provision::guest_role(&self.url, guest);
        let mut config = self.url.config().clone();
        config.user(&role);
        if let Some(password) = provision::role_password(&role) {
            config.password(password);
        }
        // A guest's query runs alone, outside any BEGIN: read-only and
        // READ COMMITTED by default. Its writes begin `SERIALIZABLE READ
        // WRITE` explicitly. The settings that change how the server reads
        // a statement are pinned as the host's check reads it (a role's or
        // database's `ALTER … SET` could otherwise turn `'a\'` into the
        // start of a longer string); a connection's options outrank those.
        let ours = concat!(
            r"-c default_transaction_read_only=on -c default_transaction_isolation=read\ committed",
            " -c standard_conforming_strings=on -c backslash_quote=safe_encoding",
            " -c transform_null_equals=off -c search_path=app",
        );
        let options = match config.get_options() {
            Some(given) => format!("{given} {ours}"),
            None => ours.to_owned(),
        };
        config.options(&options);
        Arc::new(Pool::new(config, GUEST_CONNECTIONS))
    }

    /// Applies the migrations this binary has and brings every guest's
    /// role and privileges in step with `guests` (name → grant), under an
    /// advisory lock so that hosts running it at once take turns.
    pub fn migrate(
        &self,
        guests: Vec<(String, crate::capabilities::db::DbGrant)>,
    ) -> Result<(Vec<Applied>, Vec<String>)> {
        let host = self.host.clone();
        let url = self.url.clone();
        self.run(async move {
            let mut client = host.connect_alone().await?;
            client
                .query("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK])
                .await
                .context("taking the migration lock")?;
            let result = async {
                client
                    .batch_execute(
                        "CREATE SCHEMA IF NOT EXISTS host; CREATE SCHEMA IF NOT EXISTS app; SET search_path = host",
                    )
                    .await
                    .context("creating the schemas `app` and `host`")?;
                let applied = run_migrations(&mut client).await?;
                let notes = provision::provision(&client, &url, &guests).await?;
                Ok::<_, anyhow::Error>((applied, notes))
            }
            .await;
            let _ = client
                .query("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK])
                .await;
            result
        })
    }

    /// Where the database stands against this binary's migrations.
    pub fn migration_state(&self) -> Result<MigrationState> {
        let host = self.host.clone();
        let applied = self.run(async move {
            let client = host.get(deadline()).await?;
            client
                .drive(async {
                    let exists: bool = client
                        .query_one(
                            "SELECT to_regclass('host.refinery_schema_history') IS NOT NULL",
                            &[],
                        )
                        .await?
                        .get(0);
                    if !exists {
                        return Ok::<_, anyhow::Error>(Vec::new());
                    }
                    let rows = client
                        .query(
                            "SELECT version, name FROM host.refinery_schema_history ORDER BY version",
                            &[],
                        )
                        .await?;
                    Ok(rows
                        .iter()
                        .map(|r| format!("{:04}_{}", r.get::<_, i32>(0), r.get::<_, String>(1)))
                        .collect())
                })
                .await
        })?;
        Ok(super::compare(&applied, MIGRATIONS.iter().map(|(n, _)| *n)))
    }

    /// What differs between the guests' roles and `guests`' grants: one
    /// line per difference; none when in step.
    pub fn grant_drift(
        &self,
        guests: Vec<(String, crate::capabilities::db::DbGrant)>,
    ) -> Result<Vec<String>> {
        let host = self.host.clone();
        let url = self.url.clone();
        self.run(async move {
            let client = host.get(deadline()).await?;
            client.drive(provision::drift(&client, &url, &guests)).await
        })
    }

    /// The app's tables, each with its columns, and each one's identity
    /// column.
    pub fn app_tables(&self) -> Result<(Tables, HashMap<String, String>)> {
        let host = self.host.clone();
        self.run(async move {
            let client = host.get(deadline()).await?;
            let rows = client
                .drive(client.query(
                    "SELECT c.relname, a.attname, a.attidentity <> '' \
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                     LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
                     WHERE n.nspname = 'app' AND c.relkind IN ('r', 'v', 'p')",
                    &[],
                ))
                .await?;
            let mut tables = Tables::new();
            let mut identity = HashMap::new();
            for row in rows {
                let table: String = row.get(0);
                let column: Option<String> = row.get(1);
                if let Some(column) = &column
                    && row.get::<_, Option<bool>>(2) == Some(true)
                {
                    identity.insert(table.clone(), column.clone());
                }
                tables.entry(table).or_default().extend(column);
            }
            Ok((tables, identity))
        })
    }

    /// Whether this host claims the current interval of `every` for job
    /// `name`: true for exactly one of the hosts that ask within it.
    pub fn claim(&self, name: &str, every: std::time::Duration) -> Result<bool> {
        let host = self.host.clone();
        // A tenth of slack: hosts' timers of the same interval tick apart.
        let seconds = every.as_secs_f64() * 0.9;
        let name = name.to_owned();
        self.run(async move {
            let client = host.get(deadline()).await?;
            let claimed = client
                .drive(client.execute(
                    "INSERT INTO host.jobs (name, last_run) VALUES ($1, clock_timestamp()) \
                     ON CONFLICT (name) DO UPDATE SET last_run = excluded.last_run \
                     WHERE host.jobs.last_run < clock_timestamp() - make_interval(secs => $2)",
                    &[&name, &seconds],
                ))
                .await?;
            Ok(claimed == 1)
        })
    }

    /// The size of the database in bytes, for the metrics.
    pub fn size(&self) -> Result<u64> {
        let host = self.host.clone();
        self.run(async move {
            let client = host.get(deadline()).await?;
            let row = client
                .drive(client.query_one("SELECT pg_database_size(current_database())", &[]))
                .await?;
            Ok(row.get::<_, i64>(0).max(0) as u64)
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // It may be dropped on an async worker (when `serve` ends), where a
        // runtime may not wait for its threads.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// How long a call waits for PostgreSQL on an async worker before it steps
/// off (`block_in_place`): most answers come back well within it, and
/// stepping off moves the worker's other tasks to another thread.
const INLINE: std::time::Duration = std::time::Duration::from_millis(1);

/// Polls `work` on this thread, parking it while it waits for a wake-up,
/// until it is done or `until` has passed.
fn poll_until<F: Future>(
    mut work: std::pin::Pin<&mut F>,
    until: Option<Instant>,
) -> Option<F::Output> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(out) = work.as_mut().poll(&mut cx) {
            return Some(out);
        }
        match until {
            None => std::thread::park(),
            Some(until) => {
                let now = Instant::now();
                if now >= until {
                    return None;
                }
                std::thread::park_timeout(until - now);
            }
        }
    }
}

/// How long the host waits for its own connections.
fn deadline() -> Instant {
    Instant::now() + std::time::Duration::from_secs(10)
}

/// refinery's runner against `client`, with the file names people see.
async fn run_migrations(client: &mut Client) -> Result<Vec<Applied>> {
    let migrations = MIGRATIONS
        .iter()
        .map(|(file, sql)| {
            refinery::Migration::unapplied(&super::refinery_name(file)?, sql).map_err(Into::into)
        })
        .collect::<Result<Vec<_>>>()?;
    let report = refinery::Runner::new(&migrations)
        .set_grouped(false)
        .set_abort_divergent(true)
        .set_abort_missing(true)
        .run_async(client)
        .await
        .map_err(super::migration_error)?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| Applied {
            name: super::file_name(m),
        })
        .collect())
}

/// Connections of one role, at most `max` at once. A caller waits for one
/// no later than its deadline, so one guest exhausting its pool waits
/// alone; other guests have pools of their own.
pub struct Pool {
    config: Config,
    /// Oldest first.
    idle: Mutex<Vec<Conn>>,
    slots: Arc<Semaphore>,
}

/// An open connection and the statements prepared on it.
struct Conn {
    client: Client,
    /// The runtime whose reactor watches its socket.
    driver: Driver,
    /// The connection's I/O, polled by whoever holds it ([`Pooled::drive`]);
    /// `None` once it ended.
    io: Mutex<Option<Io>>,
    statements: Mutex<Prepared>,
}

type Io = tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>;

/// Which runtime's reactor watches a connection's socket, fixed when it
/// connects. One whose workers always run (`serve`'s, or the database's
/// own inside [`Postgres::run`]) wakes whichever thread waits, so the
/// connection may serve any call, though an answer then crosses to the
/// caller's runtime. A runtime of one thread watches it only while that
/// runtime is polled: the connection serves only calls on it (a call
/// elsewhere would wait for an answer nobody reads).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Driver {
    runtime: tokio::runtime::Id,
    always_runs: bool,
}

impl Driver {
    /// The caller's runtime.
    fn here() -> Driver {
        let runtime = tokio::runtime::Handle::current();
        Driver {
            runtime: runtime.id(),
            always_runs: runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread,
        }
    }
}

/// Prepared statements by SQL text, then by parameter types.
type Prepared = HashMap<String, Vec<(Vec<Type>, Statement)>>;

/// Statements one connection keeps prepared; past them it starts over.
const STATEMENTS: usize = 64;

/// Why no connection came.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no connection came free before the deadline")]
    Busy,
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[from] tokio_postgres::Error),
}

impl Pool {
    fn new(config: Config, max: usize) -> Self {
        Pool {
            config,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(max)),
        }
    }

    /// A connection watched by the caller's runtime ([`Driver`]), waiting
    /// for a free slot no later than `deadline`. Must run on a runtime:
    /// the database's own (inside [`Postgres::run`]) or the caller's
    /// ([`Postgres::awaited`]).
    pub async fn get(self: &Arc<Self>, deadline: Instant) -> Result<Pooled, PoolError> {
        let slot = tokio::time::timeout_at(deadline.into(), self.slots.clone().acquire_owned())
            .await
            .map_err(|_| PoolError::Busy)?
            .map_err(|_| PoolError::Busy)?;
        let driver = Driver::here();
        let (idle, stale) = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            // Open connections stay within the pool's size: those in use
            // (this call's slot among them) and the idle.
            let room = idle.len() <= self.slots.available_permits();
            match idle.iter().rposition(|c| c.driver == driver) {
                Some(i) => (Some(idle.remove(i)), None),
                None if room => (None, None),
                // Full: one watched by another runtime that always runs
                // serves a caller whose runtime always runs too; else the
                // oldest idle one makes room (closed once the lock is let
                // go).
                None => match idle
                    .iter()
                    .rposition(|c| driver.always_runs && c.driver.always_runs)
                {
                    Some(i) => (Some(idle.remove(i)), None),
                    None => (None, Some(idle.remove(0))),
                },
            }
        };
        drop(stale);
        let conn = match idle.filter(Conn::alive) {
            Some(conn) => conn,
            None => {
                let (client, io) = self.config.connect(NoTls).await?;
                Conn {
                    client,
                    driver,
                    io: Mutex::new(Some(io)),
                    statements: Mutex::new(HashMap::new()),
                }
            }
        };
        Ok(Pooled {
            conn: Some(conn),
            pool: self.clone(),
            broken: AtomicBool::new(false),
            _slot: slot,
        })
    }

    /// A new connection outside the pool's count (the migration's own).
    pub async fn connect_alone(&self) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = self.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "a PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

impl Conn {
    /// Whether the server still holds the connection: what it sent while
    /// the connection sat idle (its end, a notice) is read first.
    fn alive(&self) -> bool {
        let mut io = self.io.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(connection) = io.as_mut() {
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if std::pin::Pin::new(connection).poll(&mut cx).is_ready() {
                *io = None;
            }
        }
        io.is_some() && !self.client.is_closed()
    }
}

/// A connection of a [`Pool`], back in it when dropped (unless closed, or
/// marked broken). Its I/O moves only while [`Pooled::drive`] runs.
pub struct Pooled {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    /// Set by [`Pooled::discard`].
    broken: AtomicBool,
    _slot: OwnedSemaphorePermit,
}

impl Pooled {
    /// Marks the connection to be closed instead of given back: after a
    /// call was cancelled, say, its state is not known (and a late cancel
    /// could stop the next caller's statement).
    pub fn discard(&self) {
        self.broken.store(true, Ordering::Relaxed);
    }

    /// [`Pooled::drive`] no later than `deadline` (`None` when it ran out
    /// of time). A connection whose work failed or ran out of time is
    /// closed rather than given back: a transaction of it may still be
    /// open (or aborted), and the next caller would meet it.
    pub async fn until<T>(
        &self,
        deadline: Instant,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Option<Result<T, tokio_postgres::Error>> {
        let outcome = tokio::time::timeout_at(deadline.into(), self.drive(work))
            .await
            .ok();
        if !matches!(outcome, Some(Ok(_))) {
            self.discard();
        }
        outcome
    }

    /// Runs `work`, which uses this connection, polling the connection's
    /// I/O beside it: requests go out from the calling thread, with no
    /// task between it and the socket.
    pub async fn drive<T>(&self, work: impl Future<Output = T>) -> T {
        let conn = self.conn.as_ref().expect("taken only when dropped");
        let mut io = conn.io.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut work = std::pin::pin!(work);
        let out = std::future::poll_fn(|cx| {
            if let std::task::Poll::Ready(out) = work.as_mut().poll(cx) {
                return std::task::Poll::Ready(out);
            }
            if let Some(connection) = io.as_mut()
                && let std::task::Poll::Ready(ended) = std::pin::Pin::new(connection).poll(cx)
            {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "a PostgreSQL connection ended");
                }
                // The client is closed now: what `work` waits for fails.
                io = None;
                return work.as_mut().poll(cx);
            }
            std::task::Poll::Pending
        })
        .await;
        *conn.io.lock().unwrap_or_else(|e| e.into_inner()) = io;
        out
    }

    /// `sql` with parameters of `types`, prepared on this connection the
    /// first time it is asked for: after that, running it is one message
    /// and no planning, as for a native server's prepared statements.
    pub async fn statement(
        &self,
        sql: &str,
        types: &[Type],
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.prepared(sql, types) {
            return Ok(statement);
        }
        let statement = self.prepare_typed(sql, types).await?;
        let conn = self.conn.as_ref().expect("taken only when dropped");
        let mut statements = conn.statements.lock().unwrap_or_else(|e| e.into_inner());
        if statements.values().map(Vec::len).sum::<usize>() >= STATEMENTS {
            // Dropping them closes them on the server.
            statements.clear();
        }
        statements
            .entry(sql.to_owned())
            .or_default()
            .push((types.to_vec(), statement.clone()));
        Ok(statement)
    }

    /// `sql` with parameters of `types` if it is prepared on this connection.
    pub fn prepared(&self, sql: &str, types: &[Type]) -> Option<Statement> {
        let conn = self.conn.as_ref().expect("taken only when dropped");
        let statements = conn.statements.lock().unwrap_or_else(|e| e.into_inner());
        statements
            .get(sql)?
            .iter()
            .find(|(t, _)| t == types)
            .map(|(_, statement)| statement.clone())
    }
}

impl std::ops::Deref for Pooled {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.conn.as_ref().expect("taken only when dropped").client
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let broken = *self.broken.get_mut();
        if let Some(conn) = self.conn.take().filter(|c| !broken && c.alive()) {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
    }
}

/// Refuses a URL that is not `postgres://` or `postgresql://`.
pub fn check_scheme(text: &str) -> Result<()> {
    if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
        bail!(
            "a database URL starts with postgres:// (got `{}`)",
            url::redact(text)
        );
    }
    Ok(())
}
