//! The `db` capability: SQL against the host's database under the guest's
//! table grants, the same calls with the same errors on every backend.
//! The capability owns the seam: a backend (`database/sqlite/guest`,
//! `database/postgres/guest`) implements [`Backend`] for one guest, built
//! once at load with its grant and limits, and [`Session`] for one
//! request; this module checks the deadline, the grant's presence, and
//! writes the audit line of every call. On SQLite each guest has
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
mod result;

pub use crate::limits::VALUE_BYTES;
pub(crate) use grant::not_granted;
pub use grant::{DbGrant, is_host_table};
pub use result::{Packed, Shape, ValueRef, Values};

pub use super::rawalite::bridge::db::Value;
use super::rawalite::bridge::db::{Host, Outcome, Rows, Statement};
use super::{Call, CallError, Error, ErrorCode};
use crate::limits::Limits;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
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

/// The longest LIKE or GLOB pattern: matching costs up to its length per
/// character of the value.
pub const LIKE_PATTERN_BYTES: i32 = 50;

/// What a call touched, for the audit log.
pub struct Touched {
    /// The tables, comma-separated.
    pub tables: Arc<str>,
    pub rows: usize,
}

/// A call's answer as a backend gives it, with what it touched.
pub type Answer<'a, T> = Pin<Box<dyn Future<Output = Result<(T, Touched), Error>> + Send + 'a>>;

/// One guest's database on a backend, built once at load with the guest's
/// grant and limits.
pub trait Backend: Send + Sync {
    /// A request's access, opened at its first call; dropping it ends it
    /// (a connection held for the request goes back to the guest's pool).
    fn open(&self) -> Result<Box<dyn Session>, Error>;
}

/// One request's access to the database: the four calls of the WIT
/// interface, each ending by `deadline`.
pub trait Session: Send {
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value],
        deadline: Instant,
    ) -> Answer<'a, Rows>;
    fn query_packed<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value],
        deadline: Instant,
    ) -> Answer<'a, Vec<u8>>;
    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value],
        deadline: Instant,
    ) -> Answer<'a, Outcome>;
    fn transaction<'a>(
        &'a mut self,
        statements: &'a [Statement],
        deadline: Instant,
    ) -> Answer<'a, Vec<Outcome>>;
}

/// One guest's access to the database: its grant, and the backend that
/// carries it out.
pub struct GuestDb {
    grant: Arc<DbGrant>,
    backend: Box<dyn Backend>,
}

impl GuestDb {
    pub fn new(grant: Arc<DbGrant>, backend: Box<dyn Backend>) -> Self {
        GuestDb { grant, backend }
    }

    pub fn grant(&self) -> &DbGrant {
        &self.grant
    }
}

/// One request's database access (none without a grant) and the session
/// it opened on first use.
pub struct State {
    db: Option<Arc<GuestDb>>,
    session: Option<Box<dyn Session>>,
}

impl State {
    pub(crate) fn new(db: Option<Arc<GuestDb>>) -> Self {
        State { db, session: None }
    }

    /// The request's session, opened on its first call.
    fn session(&mut self) -> Result<&mut dyn Session, Error> {
        if self.session.is_none() {
            let db = self.db.as_ref().ok_or_else(|| {
                Error::new(
                    ErrorCode::Denied,
                    "this guest has no db grant ([guest.db] in the manifest)",
                )
            })?;
            self.session = Some(db.backend.open()?);
        }
        Ok(self.session.as_deref_mut().expect("opened above"))
    }
}

impl View<'_> {
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

/// One call: the deadline checked, the request's session opened if need
/// be, `$call` awaited on it, and the audit line written.
macro_rules! call {
    ($view:ident, $op:literal, |$session:ident, $deadline:ident| $call:expr) => {{
        let started = $view.call.begin()?;
        let $deadline = $view.call.deadline;
        let result = match $view.state.session() {
            Ok($session) => $call.await,
            Err(e) => Err(e),
        };
        $view.finish($op, started, result)
    }};
}

impl Host for View<'_> {
    async fn query(&mut self, sql: String, params: Vec<Value>) -> Result<Rows, CallError> {
        call!(self, "query", |s, deadline| s
            .query(&sql, &params, deadline))
    }

    async fn query_packed(
        &mut self,
        sql: String,
        params: Vec<Value>,
    ) -> Result<Vec<u8>, CallError> {
        call!(self, "query", |s, deadline| s
            .query_packed(&sql, &params, deadline))
    }

    async fn execute(&mut self, sql: String, params: Vec<Value>) -> Result<Outcome, CallError> {
        call!(self, "execute", |s, deadline| s
            .execute(&sql, &params, deadline))
    }

    async fn transaction(&mut self, statements: Vec<Statement>) -> Result<Vec<Outcome>, CallError> {
        call!(self, "transaction", |s, deadline| s
            .transaction(&statements, deadline))
    }
}
