//! A guest's connection: a SQLite connection of its own with the guest's
//! authorizer, a progress handler that enforces the request's deadline,
//! SQLite's own size limits, functions with a bounded cost, and a
//! prepared-statement cache. Each call runs under a memory [`Charge`]: what
//! SQLite allocates for it and the result the host builds share one budget,
//! checked before the memory is spent.

mod errors;

use super::authorizer::{AuthLog, Mode};
use super::scan::{first_keyword_is, has_trailing_statement};
use crate::capabilities::Error;
use crate::capabilities::db::portable::{Schema, check_blocking};
use crate::capabilities::db::{DbGrant, DbLimits, LIKE_PATTERN_BYTES, Shape, Touched, ValueRef};
use crate::capabilities::rawalite::bridge::db::{Outcome, Statement, Value};
use crate::database::sqlite::Sqlite;
use crate::database::sqlite::memory::{Charge, Trip};
use errors::{invalid, too_large};
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags, config::DbConfig};
use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a call may first run on the async worker thread before it is
/// given up and run again off it (see [`Budget`]).
const INLINE: Duration = Duration::from_millis(1);

/// When a call must stop. A first attempt of a query runs on the async
/// worker that serves the request, where nearly every query ends in
/// microseconds; it gives up at `give_up` (and when it would have to wait)
/// so the worker is never held for long, and the query runs again in full
/// off the worker. Only queries get a first attempt: reading twice changes
/// nothing, whereas SQLite may report a write interrupted after it has
/// committed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Budget {
    pub(super) deadline: Instant,
    pub(super) give_up: Option<Instant>,
}

impl Budget {
    /// A first attempt, when there is time for a second one.
    pub(super) fn first(deadline: Instant) -> Self {
        let give_up = Instant::now() + INLINE;
        Budget {
            deadline,
            give_up: (give_up < deadline).then_some(give_up),
        }
    }

    /// An attempt that may take until the deadline.
    pub(super) fn full(deadline: Instant) -> Self {
        Budget {
            deadline,
            give_up: None,
        }
    }

    fn stop(&self) -> Instant {
        self.give_up.unwrap_or(self.deadline)
    }
}

/// How many VM instructions pass between two deadline checks.
const PROGRESS_STEPS: i32 = 100;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;
/// A statement stays cached only if its SQL is at most this long and it
/// takes at most [`CACHED_MEMORY`]: what stays cached stays in memory,
/// charged to no call, so a guest that makes every statement new (or
/// large) must not fill the host with them. 64 statements × 32 KiB × 16
/// idle connections bounds a guest's cache at 32 MiB.
const CACHED_SQL: usize = 4 << 10;
const CACHED_MEMORY: i32 = 32 << 10;

pub(super) struct GuestConnection {
    conn: Connection,
    /// With `[app] portable_sql`, the grant and the tables each new
    /// statement is checked against with the portable subset, as on
    /// PostgreSQL.
    portable: Option<(Arc<DbGrant>, Arc<Schema>)>,
    auth: Arc<Mutex<AuthLog>>,
    /// The current call's deadline, in nanoseconds since [`epoch`].
    deadline: Arc<AtomicU64>,
    /// The tables each cached statement touches, for the audit log (a
    /// cached statement is not prepared again, so the authorizer is silent).
    tables: HashMap<String, Arc<str>>,
    /// The current call's budget.
    budget: Cell<Budget>,
    /// Whether the current call gave up its first attempt.
    gave_up: Cell<bool>,
}

impl GuestConnection {
    pub(super) fn open(
        database: &Sqlite,
        grant: Arc<DbGrant>,
        limits: &DbLimits,
        portable: Option<Arc<Schema>>,
    ) -> rusqlite::Result<Self> {
        // A guest that may not write gets a read-only connection as well.
        let flags = if grant.writable().is_empty() {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        };
        let conn = database.connect(flags)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_TRUSTED_SCHEMA, false)?;
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, limits.value as i32)?;
        conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, limits.sql_bytes as i32)?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        conn.set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 999)?;
        conn.set_limit(Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, LIKE_PATTERN_BYTES)?;
        // Sorters and temporary tables stay in memory, where the call's
        // charge counts them, instead of in files nothing bounds.
        conn.pragma_update(None, "temp_store", "memory")?;
        super::functions::install(&conn)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Load the schema before the strict authorizer is installed: the
        // load itself reads sqlite_schema, which no guest may.
        let schema = conn
            .prepare("SELECT lower(name) FROM sqlite_schema WHERE type IN ('table', 'view')")?
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<BTreeSet<String>>>()?;

        let portable = portable.map(|schema| (grant.clone(), schema));
        let auth = Arc::new(Mutex::new(AuthLog::new(grant, schema)));
        let log = auth.clone();
        conn.authorizer(Some(move |ctx: rusqlite::hooks::AuthContext<'_>| {
            log.lock().unwrap_or_else(|e| e.into_inner()).authorize(ctx)
        }))?;
        let deadline = Arc::new(AtomicU64::new(u64::MAX));
        let until = deadline.clone();
        conn.progress_handler(
            PROGRESS_STEPS,
            Some(move || nanos(Instant::now()) > until.load(Ordering::Relaxed)),
        )?;
        Ok(GuestConnection {
            conn,
            portable,
            auth,
            deadline,
            tables: HashMap::new(),
            budget: Cell::new(Budget::full(Instant::now())),
            gave_up: Cell::new(false),
        })
    }

    /// Whether the connection can serve another request: not stuck in a
    /// transaction whose rollback failed.
    pub(super) fn reusable(&self) -> bool {
        self.conn.is_autocommit()
    }

    /// Whether the last call gave up its first attempt (and must be run
    /// again with a full budget).
    pub(super) fn gave_up(&self) -> bool {
        self.gave_up.replace(false)
    }

    /// Arms the budget for the next call, resets the authorizer's log, and
    /// starts charging SQLite's memory to the call.
    fn begin(&self, budget: Budget, limits: &DbLimits) -> Charge {
        self.budget.set(budget);
        self.gave_up.set(false);
        self.deadline.store(nanos(budget.stop()), Ordering::Relaxed);
        // Waiting for another writer's lock may take half of what is left of
        // the request, so the guest still has time to answer `conflict`; a
        // first attempt does not wait at all.
        let left = budget.deadline.saturating_duration_since(Instant::now());
        let wait = match budget.give_up {
            Some(_) => Duration::ZERO,
            None => (left / 2).min(crate::database::sqlite::BUSY_TIMEOUT),
        };
        let _ = self.conn.busy_timeout(wait);
        self.log().reset(Mode::Guest);
        Charge::new(limits.bytes, budget.stop())
    }

    fn log(&self) -> std::sync::MutexGuard<'_, AuthLog> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one statement that reads, building its result in the shape `S`.
    pub(super) fn query<S: Shape>(
        &mut self,
        sql: &str,
        params: &[Value],
        limits: &DbLimits,
        budget: Budget,
    ) -> Result<(S::Output, Touched), Error> {
        let charge = self.begin(budget, limits);
        let tables = self.prepare_checked(sql, limits, &charge)?;
        let mut stmt = Prepared::new(
            self.conn
                .prepare_cached(sql)
                .map_err(|e| self.error(e, sql, &charge))?,
            sql,
        );
        if !stmt.readonly() {
            return Err(invalid("this statement changes rows: use db.execute"));
        }
        bind(&mut stmt, params).map_err(|e| self.error(e, sql, &charge))?;
        let result_too_large = || {
            too_large(format!(
                "the result is larger than this guest's {} bytes for one db call; select fewer rows or columns",
                charge.budget()
            ))
        };
        let mut result = S::default();
        let width = stmt.column_count();
        let names = charge.lenient(|| result.columns(&stmt.column_names()));
        if !charge.spend(names) {
            return Err(result_too_large());
        }
        let mut cursor = stmt.raw_query();
        while let Some(row) = cursor.next().map_err(|e| self.error(e, sql, &charge))? {
            if result.rows() == limits.rows {
                return Err(too_large(format!(
                    "the result has more than {} rows; add a LIMIT",
                    limits.rows
                )));
            }
            // Each value is counted as it is read, so the result never grows
            // more than one value past the budget.
            result.row(width);
            charge.lenient(|| {
                for i in 0..width {
                    let value = row.get_ref(i).map_err(|e| self.error(e, sql, &charge))?;
                    if !charge.spend(result.value(value_ref(value))) {
                        return Err(result_too_large());
                    }
                }
                Ok(())
            })?;
        }
        // Past the deadline NOCASE calls everything equal, so a sort that
        // ran then has no order to trust.
        if charge.tripped() == Some(Trip::Deadline) {
            return Err(self.stopped());
        }
        let touched = Touched {
            tables,
            rows: result.rows(),
        };
        Ok((result.finish(), touched))
    }

    pub(super) fn execute(
        &mut self,
        sql: &str,
        params: &[Value],
        limits: &DbLimits,
        budget: Budget,
    ) -> Result<(Outcome, Touched), Error> {
        let charge = self.begin(budget, limits);
        let tables = self.run(sql, params, limits, &charge)?;
        let outcome = Outcome {
            changed: self.conn.changes(),
            last_insert_rowid: self.conn.last_insert_rowid(),
        };
        let rows = outcome.changed as usize;
        Ok((outcome, Touched { tables, rows }))
    }

    /// All statements or none: BEGIN IMMEDIATE, each statement, COMMIT; any
    /// failure rolls everything back.
    pub(super) fn transaction(
        &mut self,
        statements: &[Statement],
        limits: &DbLimits,
        budget: Budget,
    ) -> Result<(Vec<Outcome>, Touched), Error> {
        if statements.len() > limits.statements {
            return Err(too_large(format!(
                "a transaction may have at most {} statements",
                limits.statements
            )));
        }
        let charge = self.begin(budget, limits);
        self.host("BEGIN IMMEDIATE", &charge)?;
        let result = self.run_all(statements, limits, &charge);
        let result = result.and_then(|done| {
            self.host("COMMIT", &charge)?;
            Ok(done)
        });
        if result.is_err() && !self.conn.is_autocommit() {
            // The rollback must not be refused for the budget or the time
            // the failed statement used up.
            drop(charge);
            self.log().mode = Mode::Host;
            if let Err(e) = self.conn.execute_batch("ROLLBACK") {
                tracing::error!(error = %e, "rollback failed");
            }
            self.log().mode = Mode::Guest;
        }
        result
    }

    fn run_all(
        &mut self,
        statements: &[Statement],
        limits: &DbLimits,
        charge: &Charge,
    ) -> Result<(Vec<Outcome>, Touched), Error> {
        let mut outcomes = Vec::with_capacity(statements.len());
        let mut tables = BTreeSet::new();
        let mut rows = 0;
        for (i, s) in statements.iter().enumerate() {
            self.log().reset(Mode::Guest);
            let touched = self
                .run(&s.sql, &s.params, limits, charge)
                .map_err(|e| Error {
                    message: format!("statement {}: {}", i + 1, e.message),
                    ..e
                })?;
            tables.extend(
                touched
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            );
            let changed = self.conn.changes();
            rows += changed as usize;
            outcomes.push(Outcome {
                changed,
                last_insert_rowid: self.conn.last_insert_rowid(),
            });
        }
        let tables = tables.into_iter().collect::<Vec<_>>().join(",").into();
        Ok((outcomes, Touched { tables, rows }))
    }

    /// Prepares (or finds) and executes one statement that returns no rows.
    fn run(
        &mut self,
        sql: &str,
        params: &[Value],
        limits: &DbLimits,
        charge: &Charge,
    ) -> Result<Arc<str>, Error> {
        let tables = self.prepare_checked(sql, limits, charge)?;
        let mut stmt = Prepared::new(
            self.conn
                .prepare_cached(sql)
                .map_err(|e| self.error(e, sql, charge))?,
            sql,
        );
        bind(&mut stmt, params).map_err(|e| self.error(e, sql, charge))?;
        if stmt.column_count() > 0 {
            return Err(invalid("this statement returns rows: use db.query"));
        }
        stmt.raw_execute().map_err(|e| self.error(e, sql, charge))?;
        Ok(tables)
    }

    /// Checks the statement's size and that it is one statement, prepares
    /// it under the guest's authorizer, and returns the tables it touches.
    fn prepare_checked(
        &mut self,
        sql: &str,
        limits: &DbLimits,
        charge: &Charge,
    ) -> Result<Arc<str>, Error> {
        if sql.len() > limits.sql_bytes {
            return Err(invalid(format!(
                "the SQL is longer than {} bytes",
                limits.sql_bytes
            )));
        }
        if let Some(tables) = self.tables.get(sql) {
            return Ok(tables.clone());
        }
        if let Some((grant, schema)) = &self.portable {
            let budget = self.budget.get();
            if budget.give_up.is_some() {
                // A first attempt runs on the async worker, which must not
                // wait for the check's thread: run again off it.
                return Err(self.give_up());
            }
            check_blocking(sql, grant.clone(), schema.clone(), budget.deadline)?;
        }
        // Every CREATE is denied anyway, and a trigger's body has `;` inside.
        if !first_keyword_is(sql, "create") && has_trailing_statement(sql) {
            return Err(invalid(
                "one statement per call: remove what follows the first `;`",
            ));
        }
        let cached = Prepared::new(
            self.conn
                .prepare_cached(sql)
                .map_err(|e| self.error(e, sql, charge))?,
            sql,
        )
        .kept();
        let tables: Arc<str> = self
            .log()
            .tables
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(",")
            .into();
        if cached {
            if self.tables.len() >= STATEMENT_CACHE * 2 {
                // A guest that splices values into its SQL makes every
                // statement new; keep the map bounded like SQLite's cache.
                self.tables.clear();
            }
            self.tables.insert(sql.to_owned(), tables.clone());
        }
        Ok(tables)
    }

    /// Runs one of the host's own control statements.
    fn host(&mut self, sql: &str, charge: &Charge) -> Result<(), Error> {
        self.log().mode = Mode::Host;
        let result = self.conn.execute_batch(sql);
        self.log().mode = Mode::Guest;
        result.map_err(|e| self.error(e, sql, charge))
    }
}

/// A statement from the cache that goes back into it only if it is small
/// (see [`CACHED_SQL`]); a large one is finalized when dropped.
struct Prepared<'c> {
    stmt: Option<rusqlite::CachedStatement<'c>>,
    small_sql: bool,
}

impl<'c> Prepared<'c> {
    fn new(stmt: rusqlite::CachedStatement<'c>, sql: &str) -> Self {
        Prepared {
            stmt: Some(stmt),
            small_sql: sql.len() <= CACHED_SQL,
        }
    }

    /// Whether it stays in the cache.
    fn kept(&self) -> bool {
        self.small_sql
            && self.stmt.as_ref().is_some_and(|stmt| {
                stmt.get_status(rusqlite::StatementStatus::MemUsed) <= CACHED_MEMORY
            })
    }
}

impl<'c> std::ops::Deref for Prepared<'c> {
    type Target = rusqlite::CachedStatement<'c>;
    fn deref(&self) -> &Self::Target {
        self.stmt.as_ref().expect("taken only on drop")
    }
}

impl std::ops::DerefMut for Prepared<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.stmt.as_mut().expect("taken only on drop")
    }
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        if !self.kept()
            && let Some(stmt) = self.stmt.take()
        {
            stmt.discard();
        }
    }
}

fn bind(stmt: &mut rusqlite::CachedStatement<'_>, params: &[Value]) -> rusqlite::Result<()> {
    let expected = stmt.parameter_count();
    if params.len() != expected {
        return Err(rusqlite::Error::InvalidParameterCount(
            params.len(),
            expected,
        ));
    }
    stmt.clear_bindings();
    for (i, value) in params.iter().enumerate() {
        let index = i + 1;
        match value {
            Value::Null => stmt.raw_bind_parameter(index, rusqlite::types::Null)?,
            Value::Integer(v) => stmt.raw_bind_parameter(index, v)?,
            Value::Real(v) => stmt.raw_bind_parameter(index, v)?,
            Value::Text(v) => stmt.raw_bind_parameter(index, v.as_str())?,
            Value::Blob(v) => stmt.raw_bind_parameter(index, v.as_slice())?,
        }
    }
    Ok(())
}

/// Nanoseconds since the process's first deadline, for an atomic deadline.
fn nanos(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch)
        .as_nanos()
        .min(u64::MAX as u128) as u64
}

/// A value of SQLite's as the result shapes take it.
fn value_ref(value: rusqlite::types::ValueRef<'_>) -> ValueRef<'_> {
    use rusqlite::types::ValueRef as V;
    match value {
        V::Null => ValueRef::Null,
        V::Integer(v) => ValueRef::Integer(v),
        V::Real(v) => ValueRef::Real(v),
        V::Text(t) => ValueRef::Text(t),
        V::Blob(b) => ValueRef::Blob(b),
    }
}
