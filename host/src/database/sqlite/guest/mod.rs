//! The `db` capability on SQLite: each guest's connections carry an
//! authorizer that enforces its grant on every statement, a progress
//! handler for its deadline, SQLite's own limits and the host's bounded
//! functions, and every call's memory is charged to the guest.
//!
//! A read runs first where the render runs, and if it gives up (it takes
//! more than a moment, or must wait) again in full off the async worker; a
//! write runs off the worker at once (it waits for the disk anyway, and it
//! must never run twice).

mod authorizer;
mod connection;
mod functions;
mod scan;

pub use authorizer::MAX_FUNCTION_CALLS;
pub use functions::MAX_TRIM_SET;

use super::Sqlite;
use crate::blocking::blocking;
use crate::capabilities::db::portable::Schema;
use crate::capabilities::db::{
    Answer, Backend, DbGrant, DbLimits, Packed, Session, Shape, Touched, Values,
};
use crate::capabilities::rawalite::bridge::db::{Outcome, Rows, Statement, Value};
use crate::capabilities::{Error, ErrorCode};
use connection::{Budget, GuestConnection};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Idle connections kept per guest.
const POOL: usize = 16;

/// One guest's access on SQLite: its connections, opened as requests need
/// them and kept for the next ones.
pub struct GuestSqlite(Arc<Shared>);

struct Shared {
    database: Sqlite,
    grant: Arc<DbGrant>,
    limits: DbLimits,
    /// With `[app] portable_sql`, the tables statements are checked
    /// against with the portable subset too.
    portable: Option<Arc<Schema>>,
    idle: Mutex<Vec<GuestConnection>>,
}

impl GuestSqlite {
    pub fn new(
        database: Sqlite,
        grant: Arc<DbGrant>,
        limits: DbLimits,
        portable: Option<Arc<Schema>>,
    ) -> Self {
        GuestSqlite(Arc::new(Shared {
            database,
            grant,
            limits,
            portable,
            idle: Mutex::default(),
        }))
    }
}

impl Backend for GuestSqlite {
    fn open(&self) -> Result<Box<dyn Session>, Error> {
        let shared = &self.0;
        let idle = shared.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match idle {
            Some(conn) => conn,
            None => GuestConnection::open(
                &shared.database,
                shared.grant.clone(),
                &shared.limits,
                shared.portable.clone(),
            )
            .map_err(|e| {
                tracing::error!(error = %e, "cannot open a guest connection");
                Error::new(ErrorCode::Internal, "the database is not available")
            })?,
        };
        Ok(Box::new(Held {
            shared: shared.clone(),
            conn: Some(conn),
        }))
    }
}

/// A request's connection, given back to the guest's pool at its end.
struct Held {
    shared: Arc<Shared>,
    conn: Option<GuestConnection>,
}

impl Held {
    /// Runs `call` on the request's connection: a read first here, and in
    /// full off the worker if it gave up; a write in full off the worker.
    fn run<T>(
        &mut self,
        read: bool,
        deadline: Instant,
        call: impl Fn(&mut GuestConnection, &DbLimits, Budget) -> Result<(T, Touched), Error>,
    ) -> Result<(T, Touched), Error> {
        let limits = &self.shared.limits;
        let conn = self.conn.as_mut().expect("held until dropped");
        let full =
            |conn: &mut GuestConnection| blocking(|| call(conn, limits, Budget::full(deadline)));
        if read {
            let first = call(conn, limits, Budget::first(deadline));
            if conn.gave_up() { full(conn) } else { first }
        } else {
            full(conn)
        }
    }

    fn query<S: Shape>(
        &mut self,
        sql: &str,
        params: &[Value],
        deadline: Instant,
    ) -> Result<(S::Output, Touched), Error> {
        self.run(true, deadline, |conn, limits, budget| {
            conn.query::<S>(sql, params, limits, budget)
        })
    }
}

impl Session for Held {
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value],
        deadline: Instant,
    ) -> Answer<'a, Rows> {
        Box::pin(std::future::ready(
            self.query::<Values>(sql, params, deadline),
        ))
    }

    fn query_packed<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value],
        deadline: Instant,
    ) -> Answer<'a, Vec<u8>> {
        Box::pin(std::future::ready(
            self.query::<Packed>(sql, params, deadline),
        ))
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value],
        deadline: Instant,
    ) -> Answer<'a, Outcome> {
        Box::pin(std::future::ready(self.run(
            false,
            deadline,
            |conn, limits, budget| conn.execute(sql, params, limits, budget),
        )))
    }

    fn transaction<'a>(
        &'a mut self,
        statements: &'a [Statement],
        deadline: Instant,
    ) -> Answer<'a, Vec<Outcome>> {
        Box::pin(std::future::ready(self.run(
            false,
            deadline,
            |conn, limits, budget| conn.transaction(statements, limits, budget),
        )))
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.shared.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < POOL && conn.reusable() {
                idle.push(conn);
            }
        }
    }
}
