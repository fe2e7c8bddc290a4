//! A guest's connection: a SQLite connection of its own with the guest's
//! authorizer, a progress handler that enforces the request's deadline,
//! SQLite's own size limits, and a prepared-statement cache.

use super::grant::{AuthLog, DbGrant, Mode, not_granted};
use crate::capabilities::rawalite::bridge::db::{Outcome, Rows, Statement, Value};
use crate::capabilities::{Error, ErrorCode};
use crate::database::Database;
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, config::DbConfig};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// The limits of one call. The defaults are the issue's; none is a manifest
/// setting yet.
#[derive(Debug, Clone, Copy)]
pub struct DbLimits {
    pub rows: usize,
    pub bytes: usize,
    pub sql_bytes: usize,
    pub statements: usize,
}

impl Default for DbLimits {
    fn default() -> Self {
        DbLimits {
            rows: 10_000,
            bytes: 16 << 20,
            sql_bytes: 64 << 10,
            statements: 1_000,
        }
    }
}

/// How many VM instructions pass between two deadline checks.
const PROGRESS_STEPS: i32 = 1_000;
/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

pub(super) struct GuestConnection {
    conn: Connection,
    auth: Arc<Mutex<AuthLog>>,
    /// The current call's deadline, in nanoseconds since [`epoch`].
    deadline: Arc<AtomicU64>,
    /// The tables each cached statement touches, for the audit log (a
    /// cached statement is not prepared again, so the authorizer is silent).
    tables: HashMap<String, Arc<str>>,
}

/// What a call touched, for the audit log.
pub(super) struct Touched {
    pub(super) tables: Arc<str>,
    pub(super) rows: usize,
}

impl GuestConnection {
    pub(super) fn open(
        database: &Database,
        grant: Arc<DbGrant>,
        limits: &DbLimits,
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
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, limits.bytes as i32)?;
        conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, limits.sql_bytes as i32)?;
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
        conn.set_limit(Limit::SQLITE_LIMIT_VARIABLE_NUMBER, 999)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // Load the schema before the strict authorizer is installed: the
        // load itself reads sqlite_schema, which no guest may.
        let schema = conn
            .prepare("SELECT lower(name) FROM sqlite_schema WHERE type IN ('table', 'view')")?
            .query_map([], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<BTreeSet<String>>>()?;

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
            auth,
            deadline,
            tables: HashMap::new(),
        })
    }

    /// Whether the connection can serve another request: not stuck in a
    /// transaction whose rollback failed.
    pub(super) fn reusable(&self) -> bool {
        self.conn.is_autocommit()
    }

    /// Arms the deadline for the next call and resets the authorizer's log.
    fn begin(&self, deadline: Instant) {
        self.deadline.store(nanos(deadline), Ordering::Relaxed);
        // Waiting for another writer's lock may take half of what is left of
        // the request, so the guest still has time to answer `conflict`.
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = self
            .conn
            .busy_timeout((left / 2).min(crate::database::BUSY_TIMEOUT));
        let mut log = self.log();
        log.denial = None;
        log.tables.clear();
        log.mode = Mode::Guest;
    }

    fn log(&self) -> std::sync::MutexGuard<'_, AuthLog> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn query(
        &mut self,
        sql: &str,
        params: &[Value],
        limits: &DbLimits,
        deadline: Instant,
    ) -> Result<(Rows, Touched), Error> {
        self.begin(deadline);
        let tables = self.prepare_checked(sql, limits)?;
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| self.error(e, sql))?;
        if !stmt.readonly() {
            return Err(invalid("this statement changes rows: use db.execute"));
        }
        bind(&mut stmt, params).map_err(|e| self.error(e, sql))?;
        let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        let width = columns.len();
        let mut rows = Vec::new();
        let mut bytes = 0usize;
        let mut cursor = stmt.raw_query();
        while let Some(row) = cursor.next().map_err(|e| self.error(e, sql))? {
            if rows.len() == limits.rows {
                return Err(too_large(format!(
                    "the result has more than {} rows; add a LIMIT",
                    limits.rows
                )));
            }
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                let value = row.get_ref(i).map_err(|e| self.error(e, sql))?;
                bytes += value_size(&value);
                values.push(to_value(value));
            }
            if bytes > limits.bytes {
                return Err(too_large(format!(
                    "the result is larger than {} bytes; select fewer rows or columns",
                    limits.bytes
                )));
            }
            rows.push(values);
        }
        let touched = Touched {
            tables,
            rows: rows.len(),
        };
        Ok((Rows { columns, rows }, touched))
    }

    pub(super) fn execute(
        &mut self,
        sql: &str,
        params: &[Value],
        limits: &DbLimits,
        deadline: Instant,
    ) -> Result<(Outcome, Touched), Error> {
        self.begin(deadline);
        let tables = self.run(sql, params, limits)?;
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
        deadline: Instant,
    ) -> Result<(Vec<Outcome>, Touched), Error> {
        if statements.len() > limits.statements {
            return Err(too_large(format!(
                "a transaction may have at most {} statements",
                limits.statements
            )));
        }
        self.begin(deadline);
        self.host("BEGIN IMMEDIATE")?;
        let result = self.run_all(statements, limits);
        let result = result.and_then(|done| {
            self.host("COMMIT")?;
            Ok(done)
        });
        if result.is_err()
            && !self.conn.is_autocommit()
            && let Err(e) = self.host("ROLLBACK")
        {
            tracing::error!(error = %e.message, "rollback failed");
        }
        result
    }

    fn run_all(
        &mut self,
        statements: &[Statement],
        limits: &DbLimits,
    ) -> Result<(Vec<Outcome>, Touched), Error> {
        let mut outcomes = Vec::with_capacity(statements.len());
        let mut tables = BTreeSet::new();
        let mut rows = 0;
        for (i, s) in statements.iter().enumerate() {
            self.log().mode = Mode::Guest;
            let touched = self.run(&s.sql, &s.params, limits).map_err(|e| Error {
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
    fn run(&mut self, sql: &str, params: &[Value], limits: &DbLimits) -> Result<Arc<str>, Error> {
        let tables = self.prepare_checked(sql, limits)?;
        let mut stmt = self
            .conn
            .prepare_cached(sql)
            .map_err(|e| self.error(e, sql))?;
        bind(&mut stmt, params).map_err(|e| self.error(e, sql))?;
        if stmt.column_count() > 0 {
            return Err(invalid("this statement returns rows: use db.query"));
        }
        stmt.raw_execute().map_err(|e| self.error(e, sql))?;
        Ok(tables)
    }

    /// Checks the statement's size and that it is one statement, prepares
    /// it under the guest's authorizer, and returns the tables it touches.
    fn prepare_checked(&mut self, sql: &str, limits: &DbLimits) -> Result<Arc<str>, Error> {
        if sql.len() > limits.sql_bytes {
            return Err(invalid(format!(
                "the SQL is longer than {} bytes",
                limits.sql_bytes
            )));
        }
        if let Some(tables) = self.tables.get(sql) {
            return Ok(tables.clone());
        }
        // Every CREATE is denied anyway, and a trigger's body has `;` inside.
        if !first_keyword_is(sql, "create") && has_trailing_statement(sql) {
            return Err(invalid(
                "one statement per call: remove what follows the first `;`",
            ));
        }
        self.conn
            .prepare_cached(sql)
            .map_err(|e| self.error(e, sql))?;
        let tables: Arc<str> = self
            .log()
            .tables
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(",")
            .into();
        if self.tables.len() >= STATEMENT_CACHE * 4 {
            // A guest that splices values into its SQL makes every statement
            // new; keep the map bounded like SQLite's own cache.
            self.tables.clear();
        }
        self.tables.insert(sql.to_owned(), tables.clone());
        Ok(tables)
    }

    /// Runs one of the host's own control statements.
    fn host(&mut self, sql: &str) -> Result<(), Error> {
        self.log().mode = Mode::Host;
        let result = self.conn.execute_batch(sql);
        self.log().mode = Mode::Guest;
        result.map_err(|e| self.error(e, sql))
    }

    /// Maps a SQLite error onto the bridge's codes. The message is SQLite's
    /// own where that is safe (syntax, constraints); anything about files
    /// or the machine becomes `internal` and goes to the log.
    fn error(&self, e: rusqlite::Error, sql: &str) -> Error {
        use rusqlite::ErrorCode as C;
        // A denied function is reported as a plain SQL error, a denied
        // table as SQLITE_AUTH: either way the authorizer said why.
        if let Some(why) = self.log().denial.take() {
            return denied(why);
        }
        match &e {
            rusqlite::Error::SqliteFailure(failure, message) => {
                let message = message.as_deref().unwrap_or("");
                match failure.code {
                    C::AuthorizationForStatementDenied => denied("not allowed"),
                    C::ConstraintViolation => Error::new(
                        ErrorCode::Conflict,
                        if message.is_empty() {
                            "a constraint failed"
                        } else {
                            message
                        },
                    ),
                    C::DatabaseBusy | C::DatabaseLocked => {
                        Error::new(ErrorCode::Conflict, "the database is busy; try again")
                    }
                    C::OperationInterrupted => Error::new(
                        ErrorCode::Timeout,
                        "the statement ran past the request's deadline",
                    ),
                    C::TooBig => {
                        too_large("a value or the statement is larger than this host allows")
                    }
                    C::ReadOnly => denied("this guest has no db.write grant"),
                    C::ParameterOutOfRange => invalid("a parameter index is out of range"),
                    C::Unknown => match message.strip_prefix("no such table: ") {
                        // Only tables outside the grant can be missing (the
                        // grant's tables are checked at start), so the
                        // answer is the authorizer's, exists or not.
                        Some(table) => denied(not_granted(table, writes(sql))),
                        None => invalid(message),
                    },
                    _ => internal(&e),
                }
            }
            rusqlite::Error::SqlInputError { msg, .. } => invalid(msg.as_str()),
            rusqlite::Error::MultipleStatement => {
                invalid("one statement per call: remove what follows the first `;`")
            }
            rusqlite::Error::InvalidParameterCount(given, expected) => invalid(format!(
                "the statement takes {expected} parameters, {given} were given"
            )),
            rusqlite::Error::ExecuteReturnedResults => {
                invalid("this statement returns rows: use db.query")
            }
            _ => internal(&e),
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

fn to_value(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(v) => Value::Integer(v),
        ValueRef::Real(v) => Value::Real(v),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn value_size(value: &ValueRef<'_>) -> usize {
    match value {
        ValueRef::Text(t) | ValueRef::Blob(t) => t.len(),
        _ => 8,
    }
}

/// Whether `sql` has a second statement after the first `;` (comments and
/// white space after it do not count). Quotes and comments are skipped so a
/// `;` inside a string does not end the statement.
fn has_trailing_statement(sql: &str) -> bool {
    let b = sql.as_bytes();
    let mut i = 0;
    let mut ended = false;
    while i < b.len() {
        match b[i] {
            quote @ (b'\'' | b'"' | b'`') => {
                if ended {
                    return true;
                }
                i += 1;
                while i < b.len() && b[i] != quote {
                    i += 1;
                }
            }
            b'[' => {
                if ended {
                    return true;
                }
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b';' => ended = true,
            c if c.is_ascii_whitespace() => {}
            _ if ended => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Whether a statement writes, by its first keyword: for the denial of a
/// table that does not exist, which the authorizer never sees.
fn writes(sql: &str) -> bool {
    ["insert", "update", "delete", "replace"]
        .iter()
        .any(|k| first_keyword_is(sql, k))
}

fn first_keyword_is(sql: &str, keyword: &str) -> bool {
    sql.trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .is_some_and(|first| first.eq_ignore_ascii_case(keyword))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

fn denied(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::Denied, message)
}

fn too_large(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::TooLarge, message)
}

fn internal(e: &rusqlite::Error) -> Error {
    tracing::error!(error = %e, "database failure");
    Error::new(
        ErrorCode::Internal,
        "the database failed; the host's log has the details",
    )
}

/// Nanoseconds since the process's first deadline, for an atomic deadline.
fn nanos(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    at.saturating_duration_since(epoch)
        .as_nanos()
        .min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_statement_with_trailing_noise_is_one() {
        assert!(!has_trailing_statement("select 1"));
        assert!(!has_trailing_statement("select 1;"));
        assert!(!has_trailing_statement("select 1;  -- done\n"));
        assert!(!has_trailing_statement("select 1; /* done */ "));
        assert!(!has_trailing_statement("select ';' || \"a;b\" || [c;d]"));
    }

    #[test]
    fn a_second_statement_is_found() {
        assert!(has_trailing_statement("select 1; delete from customers"));
        assert!(has_trailing_statement("select 1;select 2"));
        assert!(has_trailing_statement("select 1; -- x\n delete from t"));
        assert!(has_trailing_statement("select 1; 'x'"));
    }

    #[test]
    fn writes_is_judged_by_the_first_keyword() {
        assert!(writes("  INSERT INTO x VALUES (1)"));
        assert!(writes("delete from x"));
        assert!(!writes("select * from x"));
        assert!(!writes("with a as (select 1) select * from a"));
    }
}
