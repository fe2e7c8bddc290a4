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
mod tls;
mod url;
mod value;

pub use url::DatabaseUrl;
pub use value::Value;

use super::{Applied, MigrationState, Tables};
use anyhow::{Context, Result, bail};
use futures_util::TryStreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, Row, RowStream, Statement};

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

/// What tells the server, on every connection, that its client is gone
/// although no word came (a paused VM, a cut network): TCP keepalives
/// from its side, and a look at the socket during long statements
/// (PostgreSQL 14 and later).
macro_rules! alive {
    () => {
        "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3 -c client_connection_check_interval=10s"
    };
}

/// The host's own connections: a transaction left idle (its host stopped
/// inside it) ends after 5 s, and no statement waits more than 4 s for a
/// lock, so a stopped host holds no lock another host waits on for long.
/// (The limiter's and the roots' transactions set tighter bounds of their
/// own.)
const HOST_OPTIONS: &str = concat!(
    "-c idle_in_transaction_session_timeout=5s -c lock_timeout=4s ",
    alive!()
);

/// `config` with `ours` after the options it has (so ours win).
fn with_options(config: &Config, ours: &str) -> Config {
    let mut config = config.clone();
    let options = match config.get_options() {
        Some(given) => format!("{given} {ours}"),
        None => ours.to_owned(),
    };
    config.options(&options);
    config
}

/// How long a connection may wait unused in its pool, and live at all:
/// a backend holds memory for what ran on it (PostgreSQL gives it back
/// only when the connection ends), so a guest that stopped, or one that
/// ran much, leaves nothing held for long.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);
const LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Closes, every 30 s, the connections of `pools` that waited past
/// [`IDLE`] or lived past [`LIFETIME`]; forgets the pools gone.
async fn sweep(pools: Arc<Mutex<Vec<std::sync::Weak<Pool>>>>) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        let live: Vec<Arc<Pool>> = {
            let mut pools = pools.lock().unwrap_or_else(|e| e.into_inner());
            pools.retain(|pool| pool.strong_count() > 0);
            pools.iter().filter_map(std::sync::Weak::upgrade).collect()
        };
        for pool in live {
            pool.sweep();
        }
    }
}

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
    /// Every pool, for the sweep of idle and old connections.
    pools: Arc<Mutex<Vec<std::sync::Weak<Pool>>>>,
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
        let host = Arc::new(Pool::new(
            url,
            url.config().clone(),
            HOST_OPTIONS,
            HOST_CONNECTIONS,
        ));
        let pools = Arc::new(Mutex::new(vec![Arc::downgrade(&host)]));
        runtime.spawn(sweep(pools.clone()));
        let postgres = Postgres {
            host,
            url: url.clone(),
            runtime: Some(runtime),
            pools,
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
            crate::blocking::blocking(|| {
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
            " -c transform_null_equals=off -c search_path=app ",
            alive!(),
        );
        let pool = Arc::new(Pool::new(&self.url, config, ours, GUEST_CONNECTIONS));
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(&pool));
        pool
    }

    /// Applies the migrations this binary has and brings every guest's
    /// role and privileges in step with `guests` (name → grant), under an
    /// advisory lock so that hosts running it at once take turns.
    pub fn migrate(
        &self,
        guests: Vec<(String, crate::capabilities::db::DbGrant)>,
    ) -> Result<(Vec<Applied>, Vec<String>)> {
        self.url.direct()?;
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

    /// The other databases of the cluster that a role of `guests` may
    /// connect to, as their privileges say (`pg_hba.conf` may still refuse
    /// it): a guest's password would open them too.
    pub fn guest_reach(&self, guests: &[String]) -> Result<Vec<String>> {
        let roles: Vec<String> = guests
            .iter()
            .map(|guest| provision::guest_role(&self.url, guest))
            .collect();
        let host = self.host.clone();
        self.run(async move {
            let client = host.get(deadline()).await?;
            let rows = client
                .drive(client.query(
                    "SELECT d.datname::text FROM pg_database d \
                     WHERE d.datallowconn AND d.datname <> current_database() \
                     AND EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = ANY($1) \
                                 AND has_database_privilege(r.oid, d.oid, 'CONNECT')) \
                     ORDER BY 1",
                    &[&roles],
                ))
                .await?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
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
    tls: tls::Tls,
    /// Behind a pooler in transaction mode (`pgbouncer=true`).
    pooled: bool,
    /// Oldest first.
    idle: Mutex<Vec<Conn>>,
    slots: Arc<Semaphore>,
}

/// An open connection and the statements prepared on it.
struct Conn {
    client: Client,
    opened: Instant,
    /// Since when it waits in its pool.
    idle_since: Instant,
    /// The runtime whose reactor watches its socket.
    driver: Driver,
    /// The connection's I/O, polled by whoever holds it ([`Pooled::drive`]);
    /// `None` once it ended.
    io: Mutex<Option<Io>>,
    statements: Mutex<Prepared>,
}

type Io = tokio_postgres::Connection<tokio_postgres::Socket, tls::Stream>;

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

/// How long a cancel may take to reach the server.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Statements one connection keeps prepared, and their SQL's bytes; past
/// either it starts over. PostgreSQL bounds neither what a backend keeps of
/// a prepared statement nor how many: a guest sending distinct statements
/// of 64 KiB took its backends to 2 GiB when all of them were kept.
const STATEMENTS: usize = 64;
const STATEMENT_BYTES: usize = 128 << 10;
/// Only statements this short are kept prepared; the rest run unnamed.
const KEPT_SQL: usize = 4 << 10;

/// `e` with its causes (tokio-postgres shows only its kind, "db error",
/// "error connecting to server"), or in words naming the cause when TLS
/// is why.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(tls) = tls::explain(e) {
        return tls;
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text += ": ";
        text += &cause.to_string();
        source = cause.source();
    }
    text
}

/// Why no connection came.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("no connection came free before the deadline")]
    Busy,
    /// Why, in words that name the cause where TLS is it.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
}

impl Pool {
    /// Connections of `config` to the database of `url`, with `options`
    /// (`-c name=value …`) after any the URL gives, so ours win; behind a
    /// pooler none are sent (it refuses them), and what they pin comes
    /// from the roles' own settings (`migrate`).
    fn new(url: &DatabaseUrl, config: Config, options: &str, max: usize) -> Self {
        let config = match url.pooled() {
            true => config,
            false => with_options(&config, options),
        };
        Pool {
            config,
            tls: url.tls().clone(),
            pooled: url.pooled(),
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
        let conn = match idle.filter(|c| c.fresh(Instant::now()) && c.alive()) {
            Some(conn) => conn,
            None => {
                let (client, io) = self.connect().await?;
                let now = Instant::now();
                Conn {
                    client,
                    opened: now,
                    idle_since: now,
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
    pub async fn connect_alone(&self) -> Result<Client, PoolError> {
        let (client, connection) = self.connect().await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %describe(&e), "a PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    /// Opens a connection of this pool's role.
    async fn connect(&self) -> Result<(Client, Io), PoolError> {
        self.config
            .connect(self.tls.clone())
            .await
            .map_err(|e| PoolError::Connect(describe(&e)))
    }

    /// Closes the idle connections that waited past [`IDLE`] or lived past
    /// [`LIFETIME`].
    fn sweep(&self) {
        let now = Instant::now();
        let stale: Vec<Conn> = {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let (fresh, stale) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|c| c.fresh(now));
            *idle = fresh;
            stale
        };
        drop(stale);
    }
}

impl Conn {
    /// Whether it may still serve: neither idle nor alive too long.
    fn fresh(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.idle_since) < IDLE
            && now.saturating_duration_since(self.opened) < LIFETIME
    }

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

    /// Asks the server to stop what this connection runs (over the
    /// pool's TLS; a second at most), and marks the connection to be
    /// closed: a statement left running would hold its locks for whoever
    /// comes next.
    pub async fn cancel(&self) {
        self.discard();
        let token = self.cancel_token();
        let cancel = token.cancel_query(self.pool.tls.clone());
        match tokio::time::timeout(CANCEL_WAIT, cancel).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %describe(&e), "a cancel could not be sent to PostgreSQL")
            }
            Err(_) => tracing::warn!("a cancel to PostgreSQL took more than a second; left"),
        }
    }

    /// [`Pooled::drive`] no later than `deadline` (`None` when it ran out
    /// of time, and then cancelled on the server). A connection whose work
    /// failed or ran out of time is closed rather than given back: a
    /// transaction of it may still be open (or aborted), and the next
    /// caller would meet it.
    pub async fn until<T>(
        &self,
        deadline: Instant,
        work: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Option<Result<T, tokio_postgres::Error>> {
        let outcome = tokio::time::timeout_at(deadline.into(), self.drive(work))
            .await
            .ok();
        match outcome {
            Some(Ok(_)) => {}
            Some(Err(_)) => self.discard(),
            // The server may still run it, holding its locks.
            None => self.cancel().await,
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
                    tracing::debug!(error = %describe(&e), "a PostgreSQL connection ended");
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

    /// Whether `sql` may be kept prepared on this connection: a short one,
    /// and not behind a pooler (which may run the next message on another
    /// server connection, where no statement of that name is).
    fn may_keep(&self, sql: &str) -> bool {
        !self.pool.pooled && sql.len() <= KEPT_SQL
    }

    /// `sql` prepared on this connection and kept, when it [may](Pooled::may_keep)
    /// be; else `None`, and it runs unnamed (nothing of it stays on the
    /// server, and a pooler in transaction mode lets it through).
    async fn kept(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Option<Statement>, tokio_postgres::Error> {
        if !self.may_keep(sql) {
            return Ok(None);
        }
        let types = params.iter().map(|(_, t)| t);
        if let Some(statement) = self.find(sql, types.clone()) {
            return Ok(Some(statement));
        }
        let types: Vec<Type> = types.cloned().collect();
        self.statement(sql, &types).await.map(Some)
    }

    /// The rows of `sql` with `params`, each with its type, as they come
    /// ([`Pooled::kept`] or unnamed).
    pub async fn rows(
        &self,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<RowStream, tokio_postgres::Error> {
        let values = params.iter().map(|(value, _)| *value);
        match self.kept(sql, params).await? {
            Some(statement) => self.client().query_raw(&statement, values).await,
            None => {
                self.client()
                    .query_typed_raw(sql, params.iter().map(|(v, t)| (*v, t.clone())))
                    .await
            }
        }
    }

    /// The host's statements, as `Client`'s methods of the same names but
    /// with [`Value`]s, whose types travel with them: kept prepared or run
    /// unnamed as [`Pooled::kept`] says.
    pub async fn query(
        &self,
        sql: &str,
        params: &[&dyn Value],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.rows(sql, &value::typed(params))
            .await?
            .try_collect()
            .await
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&dyn Value],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let params = value::typed(params);
        match self.kept(sql, &params).await? {
            Some(statement) => self.client().query_opt(&statement, &values(&params)).await,
            None => self.client().query_typed_opt(sql, &params).await,
        }
    }

    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&dyn Value],
    ) -> Result<Row, tokio_postgres::Error> {
        let params = value::typed(params);
        match self.kept(sql, &params).await? {
            Some(statement) => self.client().query_one(&statement, &values(&params)).await,
            None => self.client().query_typed_one(sql, &params).await,
        }
    }

    /// The number of rows `sql` changed.
    pub async fn execute(
        &self,
        sql: &str,
        params: &[&dyn Value],
    ) -> Result<u64, tokio_postgres::Error> {
        let params = value::typed(params);
        match self.kept(sql, &params).await? {
            Some(statement) => self.client().execute(&statement, &values(&params)).await,
            None => self.client().execute_typed(sql, &params).await,
        }
    }

    /// Begins a transaction whose locks a stopped host (a paused VM, a cut
    /// network) holds no longer than `idle` past its last statement, and
    /// whose statements wait at most `lock` for a lock. Set in the
    /// transaction, so it holds behind a pooler too.
    pub async fn begin(
        &self,
        idle: std::time::Duration,
        lock: std::time::Duration,
    ) -> Result<(), tokio_postgres::Error> {
        self.batch_execute(&format!(
            "BEGIN; SET LOCAL idle_in_transaction_session_timeout = {}; SET LOCAL lock_timeout = {}",
            idle.as_millis().max(1),
            lock.as_millis().max(1)
        ))
        .await
    }

    fn client(&self) -> &Client {
        &self.conn.as_ref().expect("taken only when dropped").client
    }

    /// `sql` with parameters of `types`, prepared on this connection the
    /// first time it is asked for: after that, running it is one message
    /// and no planning, as for a native server's prepared statements. Only
    /// for what [`Pooled::may_keep`].
    async fn statement(
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
        let count: usize = statements.values().map(Vec::len).sum();
        let bytes: usize = statements
            .iter()
            .map(|(sql, kept)| sql.len() * kept.len())
            .sum();
        if count >= STATEMENTS || bytes + sql.len() > STATEMENT_BYTES {
            // Dropping them closes them on the server.
            statements.clear();
        }
        statements
            .entry(sql.to_owned())
            .or_default()
            .push((types.to_vec(), statement.clone()));
        Ok(statement)
    }

    /// The names of the columns `sql` returns, for a statement that
    /// returned no row (which would carry them): from the statement kept,
    /// or else described anew.
    pub async fn columns(
        &self,
        sql: &str,
        types: &[Type],
    ) -> Result<Vec<String>, tokio_postgres::Error> {
        match self.prepared(sql, types) {
            Some(statement) => Ok(names(&statement)),
            None => self.describe(sql, types).await,
        }
    }

    /// [`Pooled::columns`] of a statement not kept: prepared and closed
    /// inside one transaction (the close sent before its end), so a pooler
    /// keeps it on one server connection and leaves nothing behind.
    async fn describe(
        &self,
        sql: &str,
        types: &[Type],
    ) -> Result<Vec<String>, tokio_postgres::Error> {
        self.batch_execute("BEGIN").await?;
        let described = self
            .prepare_typed(sql, types)
            .await
            .map(|statement| names(&statement));
        self.batch_execute("COMMIT").await?;
        described
    }

    /// `sql` with parameters of `types` if it is prepared on this connection.
    fn prepared(&self, sql: &str, types: &[Type]) -> Option<Statement> {
        self.find(sql, types.iter())
    }

    fn find<'t>(
        &self,
        sql: &str,
        types: impl Iterator<Item = &'t Type> + Clone,
    ) -> Option<Statement> {
        let conn = self.conn.as_ref().expect("taken only when dropped");
        let statements = conn.statements.lock().unwrap_or_else(|e| e.into_inner());
        statements
            .get(sql)?
            .iter()
            .find(|(t, _)| t.iter().eq(types.clone()))
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
        if let Some(mut conn) = self.conn.take().filter(|c| !broken && c.alive()) {
            conn.idle_since = Instant::now();
            self.pool
                .idle
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(conn);
        }
    }
}

/// The names of `statement`'s columns.
fn names(statement: &Statement) -> Vec<String> {
    statement
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect()
}

/// The values of typed parameters.
fn values<'a>(params: &[(&'a (dyn ToSql + Sync), Type)]) -> Vec<&'a (dyn ToSql + Sync)> {
    params.iter().map(|(value, _)| *value).collect()
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
