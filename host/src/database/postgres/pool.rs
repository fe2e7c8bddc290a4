//! Connections to PostgreSQL: one pool per role (the host's, each
//! guest's), each connection's driver on the module's runtime, a call's
//! deadline enforced with a cancel, and the way a blocking caller waits
//! for an answer ([`poll_until`]).

use super::value::{self, Value};
use super::{DatabaseUrl, tls, with_options};
use futures_util::TryStreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Config, Row, RowStream, Statement};

/// How long a connection may wait unused in its pool, and live at all:
/// a backend holds memory for what ran on it (PostgreSQL gives it back
/// only when the connection ends), so a guest that stopped, or one that
/// ran much, leaves nothing held for long.
const IDLE: std::time::Duration = std::time::Duration::from_secs(60);
const LIFETIME: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Closes, every 30 s, the connections of `pools` that waited past
/// [`IDLE`] or lived past [`LIFETIME`]; forgets the pools gone.
pub(super) async fn sweep(pools: Arc<Mutex<Vec<std::sync::Weak<Pool>>>>) {
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

/// How long a call waits for PostgreSQL on an async worker before it steps
/// off (`block_in_place`): most answers come back well within it, and
/// stepping off moves the worker's other tasks to another thread.
pub(super) const INLINE: std::time::Duration = std::time::Duration::from_millis(1);

/// Polls `work` on this thread, parking it while it waits for a wake-up,
/// until it is done or `until` has passed.
pub(super) fn poll_until<F: Future>(
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
    pub(super) fn new(url: &DatabaseUrl, config: Config, options: &str, max: usize) -> Self {
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
