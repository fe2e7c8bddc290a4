//! The `db` capability: SQL against the host's database under the guest's
//! table grants. Each guest has connections of its own whose authorizer
//! enforces its grant on every statement, whatever SQL it sends.
//! Refuses: tables outside the grant, DDL, PRAGMA, ATTACH, VACUUM, SQL
//! transactions, impure functions, a second statement, oversized results.

mod connection;
mod grant;

pub use connection::DbLimits;
pub use grant::DbGrant;

use super::rawalite::bridge::db::{Host, Outcome, Rows, Statement, Value};
use super::{Error, ErrorCode};
use crate::database::Database;
use connection::{GuestConnection, Touched};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use wasmtime::component::HasData;

/// Links `db` to a request's [`State`].
pub struct Db;

impl HasData for Db {
    type Data<'a> = &'a mut State;
}

/// Idle connections kept per guest.
const POOL: usize = 16;

/// One guest's access to the database, built once at load: its grant and
/// the connections that carry its authorizer.
pub struct GuestDb {
    grant: Arc<DbGrant>,
    database: Arc<Database>,
    limits: DbLimits,
    idle: Mutex<Vec<GuestConnection>>,
}

impl GuestDb {
    pub fn new(grant: DbGrant, database: Arc<Database>) -> Self {
        GuestDb {
            grant: Arc::new(grant),
            database,
            limits: DbLimits::default(),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn grant(&self) -> &DbGrant {
        &self.grant
    }

    fn take(&self) -> Result<GuestConnection, Error> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(conn);
        }
        GuestConnection::open(&self.database, self.grant.clone(), &self.limits).map_err(|e| {
            tracing::error!(error = %e, "cannot open a guest connection");
            Error::new(ErrorCode::Internal, "the database is not available")
        })
    }

    fn give_back(&self, conn: GuestConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < POOL && conn.reusable() {
            idle.push(conn);
        }
    }
}

/// What one request's `db` calls work with: the guest's database access
/// (none without a grant), a connection taken on first use, the deadline.
pub struct State {
    guest: Arc<str>,
    db: Option<Arc<GuestDb>>,
    conn: Option<GuestConnection>,
    deadline: Instant,
}

impl State {
    pub(crate) fn new(guest: Arc<str>, db: Option<Arc<GuestDb>>, deadline: Instant) -> Self {
        State {
            guest,
            db,
            conn: None,
            deadline,
        }
    }

    /// Runs one call on this request's connection and writes its audit event.
    fn call<T>(
        &mut self,
        op: &'static str,
        f: impl FnOnce(&mut GuestConnection, &DbLimits, Instant) -> Result<(T, Touched), Error>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let result = match &self.db {
            None => Err(Error::new(
                ErrorCode::Denied,
                "this guest has no db grant ([guest.db] in the manifest)",
            )),
            Some(db) => {
                let conn = match self.conn.take() {
                    Some(conn) => Ok(conn),
                    None => db.take(),
                };
                conn.and_then(|mut conn| {
                    let result = f(&mut conn, &db.limits, self.deadline);
                    self.conn = Some(conn);
                    result
                })
            }
        };
        let us = started.elapsed().as_micros() as u64;
        match &result {
            Ok((_, touched)) => tracing::info!(
                target: "rawalite::audit",
                guest = %self.guest,
                capability = "db",
                op,
                tables = %touched.tables,
                outcome = "ok",
                rows = touched.rows,
                us,
            ),
            Err(e) => tracing::info!(
                target: "rawalite::audit",
                guest = %self.guest,
                capability = "db",
                op,
                outcome = e.code.as_str(),
                error = %e.message,
                us,
            ),
        }
        result.map(|(value, _)| value)
    }
}

impl Drop for State {
    fn drop(&mut self) {
        if let (Some(db), Some(conn)) = (&self.db, self.conn.take()) {
            db.give_back(conn);
        }
    }
}

impl Host for State {
    fn query(&mut self, sql: String, params: Vec<Value>) -> Result<Rows, Error> {
        self.call("query", |conn, limits, deadline| {
            conn.query(&sql, &params, limits, deadline)
        })
    }

    fn execute(&mut self, sql: String, params: Vec<Value>) -> Result<Outcome, Error> {
        self.call("execute", |conn, limits, deadline| {
            conn.execute(&sql, &params, limits, deadline)
        })
    }

    fn transaction(&mut self, statements: Vec<Statement>) -> Result<Vec<Outcome>, Error> {
        self.call("transaction", |conn, limits, deadline| {
            conn.transaction(&statements, limits, deadline)
        })
    }
}
