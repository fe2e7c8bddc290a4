//! The `db` capability: SQL against the host's database under the guest's
//! table grants, on SQLite (`sqlite/`) or PostgreSQL (`postgres/`), the
//! same calls with the same errors on both. On SQLite each guest has
//! connections of its own whose authorizer enforces its grant on every
//! statement, and each call's memory is charged to the guest; on
//! PostgreSQL each statement is checked against the portable subset and
//! the grant, and runs as the guest's own role.
//! Refuses: tables outside the grant, DDL, PRAGMA, ATTACH, VACUUM, SQL
//! transactions, impure functions, a second statement, results or working
//! memory past the guest's `db_bytes`, work past the deadline; on
//! PostgreSQL (and on SQLite with `[app] portable_sql`) anything outside
//! the portable subset.

mod grant;
pub mod portable;
mod postgres;
mod result;
mod sqlite;

pub use crate::limits::VALUE_BYTES;
pub use grant::DbGrant;
pub use sqlite::{LIKE_PATTERN_BYTES, MAX_FUNCTION_CALLS, MAX_TRIM_SET};

use super::rawalite::bridge::db::{Host, Outcome, Rows, Statement, Value};
use super::{Call, CallError, Error, ErrorCode, blocking};
use crate::database::Database;
use crate::database::postgres::Postgres;
use crate::limits::Limits;
use portable::Schema;
use sqlite::{Budget, GuestConnection, Touched};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::HasData;

/// Links `db` to a request's [`View`].
pub struct Db;

impl HasData for Db {
    type Data<'a> = View<'a>;
}

/// What a `db` call works with: the request's `db` state and its calls.
pub struct View<'a> {
    pub(crate) state: &'a mut State,
    pub(crate) call: &'a mut Call,
}

/// The limits of one call of one guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbLimits {
    /// Rows one query may return (`[guest.limits] db_rows`).
    pub rows: usize,
    /// Bytes one call may take on the host: SQLite's working memory and the
    /// result together (`[guest.limits] db_bytes`).
    pub bytes: u64,
    /// The longest text or blob SQL may build or read.
    pub value: usize,
    pub sql_bytes: usize,
    pub statements: usize,
}

impl DbLimits {
    pub fn of(limits: &Limits) -> Self {
        DbLimits {
            rows: limits.db_rows,
            bytes: limits.db_bytes,
            value: VALUE_BYTES,
            sql_bytes: 64 << 10,
            statements: 1_000,
        }
    }
}

/// Idle connections kept per guest.
const POOL: usize = 16;

/// One guest's access to the database, built once at load: its grant, its
/// limits and the connections that carry it out.
pub struct GuestDb {
    grant: Arc<DbGrant>,
    limits: DbLimits,
    backend: Backend,
}

enum Backend {
    Sqlite {
        database: Arc<Database>,
        /// With `[app] portable_sql`, the tables statements are checked
        /// against with the portable subset too.
        portable: Option<Arc<Schema>>,
        idle: Mutex<Vec<GuestConnection>>,
    },
    Postgres(postgres::GuestPostgres),
}

impl GuestDb {
    /// On SQLite; with `portable` (the app's tables), statements outside
    /// the portable subset are refused as they would be on PostgreSQL.
    pub fn sqlite(
        grant: DbGrant,
        database: Arc<Database>,
        limits: DbLimits,
        portable: Option<Arc<Schema>>,
    ) -> Self {
        GuestDb {
            grant: Arc::new(grant),
            limits,
            backend: Backend::Sqlite {
                database,
                portable,
                idle: Mutex::new(Vec::new()),
            },
        }
    }

    /// On PostgreSQL, as the role of guest `guest`.
    pub fn postgres(
        grant: DbGrant,
        database: Arc<Postgres>,
        guest: &str,
        schema: Arc<Schema>,
        limits: DbLimits,
    ) -> Self {
        GuestDb {
            grant: Arc::new(grant),
            limits,
            backend: Backend::Postgres(postgres::GuestPostgres::new(database, guest, schema)),
        }
    }

    pub fn grant(&self) -> &DbGrant {
        &self.grant
    }

    fn take(&self) -> Result<GuestConnection, Error> {
        let Backend::Sqlite {
            database,
            portable,
            idle,
        } = &self.backend
        else {
            unreachable!("only SQLite keeps connections per request");
        };
        if let Some(conn) = idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(conn);
        }
        GuestConnection::open(database, self.grant.clone(), &self.limits, portable.clone()).map_err(
            |e| {
                tracing::error!(error = %e, "cannot open a guest connection");
                Error::new(ErrorCode::Internal, "the database is not available")
            },
        )
    }

    fn give_back(&self, conn: GuestConnection) {
        if let Backend::Sqlite { idle, .. } = &self.backend {
            let mut idle = idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < POOL && conn.reusable() {
                idle.push(conn);
            }
        }
    }
}

/// One request's database access (none without a grant) and the
/// connection it took on first use.
pub struct State {
    db: Option<Arc<GuestDb>>,
    conn: Option<GuestConnection>,
}

impl State {
    pub(crate) fn new(db: Option<Arc<GuestDb>>) -> Self {
        State { db, conn: None }
    }
}

impl View<'_> {
    /// Starts a call: the deadline checked, the clock for its audit event
    /// started, and the guest's database, unless it has no grant.
    fn begin(&mut self) -> Result<(Instant, Result<Arc<GuestDb>, Error>), CallError> {
        let started = self.call.begin()?;
        let db = self.state.db.clone().ok_or_else(|| {
            Error::new(
                ErrorCode::Denied,
                "this guest has no db grant ([guest.db] in the manifest)",
            )
        });
        Ok((started, db))
    }

    /// Runs a call on SQLite, on this request's connection: a read first
    /// where the render runs, and if it gives up (it takes more than a
    /// moment, or must wait) again in full off the async worker; a write
    /// off the worker at once (it waits for the disk anyway, and it must
    /// never run twice).
    fn sqlite<T>(
        &mut self,
        db: &GuestDb,
        read: bool,
        call: impl Fn(&mut GuestConnection, &DbLimits, Budget) -> Result<(T, Touched), Error>,
    ) -> Result<(T, Touched), Error> {
        let deadline = self.call.deadline;
        let state = &mut *self.state;
        let conn = match state.conn.take() {
            Some(conn) => Ok(conn),
            None => db.take(),
        };
        conn.and_then(|mut conn| {
            let full = |conn: &mut GuestConnection| {
                blocking(|| call(conn, &db.limits, Budget::full(deadline)))
            };
            let result = if read {
                let first = call(&mut conn, &db.limits, Budget::first(deadline));
                if conn.gave_up() {
                    full(&mut conn)
                } else {
                    first
                }
            } else {
                full(&mut conn)
            };
            state.conn = Some(conn);
            result
        })
    }

    /// Ends a call: writes its audit event and hands back its value.
    fn finish<T>(
        &mut self,
        op: &'static str,
        started: Instant,
        result: Result<(T, Touched), Error>,
    ) -> Result<T, CallError> {
        if self.call.audit("db", super::outcome(&result)) {
            let us = started.elapsed().as_micros() as u64;
            let guest = &self.call.guest;
            match &result {
                Ok((_, touched)) => tracing::info!(
                    target: "rawalite::audit",
                    guest = %guest,
                    capability = "db",
                    op,
                    tables = %touched.tables,
                    outcome = "ok",
                    rows = touched.rows,
                    us,
                ),
                Err(e) => crate::log_queue::keep(e.code == ErrorCode::Denied, || {
                    tracing::info!(
                        target: "rawalite::audit",
                        guest = %guest,
                        capability = "db",
                        op,
                        outcome = e.code.as_str(),
                        error = ?e.message,
                        us,
                    )
                }),
            }
        }
        Ok(result.map(|(value, _)| value)?)
    }
}

/// One call on whichever backend the guest's database is: SQLite's
/// synchronously (`$sqlite`, given the connection, limits and budget), or
/// PostgreSQL's awaited (`$postgres`, given the guest's access, its
/// database and the deadline), where the guest's fiber waits and the
/// worker serves other requests meanwhile.
macro_rules! call {
    ($view:ident, $op:literal, $read:literal, |$conn:ident, $limits:ident, $budget:ident| $sqlite:expr, |$pg:ident, $db:ident, $deadline:ident| $postgres:expr) => {{
        let (started, db) = $view.begin()?;
        let result = match db {
            Err(e) => Err(e),
            Ok($db) => match &$db.backend {
                Backend::Postgres($pg) => {
                    let $deadline = $view.call.deadline;
                    $postgres.await
                }
                Backend::Sqlite { .. } => {
                    $view.sqlite(&$db, $read, |$conn, $limits, $budget| $sqlite)
                }
            },
        };
        $view.finish($op, started, result)
    }};
}

impl Drop for State {
    fn drop(&mut self) {
        if let (Some(db), Some(conn)) = (&self.db, self.conn.take()) {
            db.give_back(conn);
        }
    }
}

impl Host for View<'_> {
    async fn query(&mut self, sql: String, params: Vec<Value>) -> Result<Rows, CallError> {
        call!(
            self,
            "query",
            true,
            |conn, limits, budget| conn.query::<result::Values>(&sql, &params, limits, budget),
            |pg, db, deadline| pg
                .query::<result::Values>(&sql, &params, &db.grant, &db.limits, deadline)
        )
    }

    async fn query_packed(
        &mut self,
        sql: String,
        params: Vec<Value>,
    ) -> Result<Vec<u8>, CallError> {
        call!(
            self,
            "query",
            true,
            |conn, limits, budget| conn.query::<result::Packed>(&sql, &params, limits, budget),
            |pg, db, deadline| pg
                .query::<result::Packed>(&sql, &params, &db.grant, &db.limits, deadline)
        )
    }

    async fn execute(&mut self, sql: String, params: Vec<Value>) -> Result<Outcome, CallError> {
        call!(
            self,
            "execute",
            false,
            |conn, limits, budget| conn.execute(&sql, &params, limits, budget),
            |pg, db, deadline| pg.execute(&sql, &params, &db.grant, &db.limits, deadline)
        )
    }

    async fn transaction(&mut self, statements: Vec<Statement>) -> Result<Vec<Outcome>, CallError> {
        call!(
            self,
            "transaction",
            false,
            |conn, limits, budget| conn.transaction(&statements, limits, budget),
            |pg, db, deadline| pg.transaction(&statements, &db.grant, &db.limits, deadline)
        )
    }
}
