//! The `db` capability on PostgreSQL. A guest's statement is checked (the
//! portable subset and the grant, `portable.rs`; the result is cached per
//! SQL text) and only what the check renders is sent, over a connection
//! of the guest's own role, whose privileges are its grant again: the
//! second wall. Each call is one transaction of its own:
//!
//! - `query`: the statement alone, prepared once per connection when it
//!   is small (a large one runs unnamed, so the server keeps no plan of
//!   it), on a connection whose transactions are `READ ONLY` unless a write
//!   begins `READ WRITE`, so no statement can write through a query;
//! - `execute` and `transaction`: `SERIALIZABLE READ WRITE`, with
//!   `statement_timeout` and `lock_timeout` set from the time left, run
//!   again from the start on a serialization failure or a deadlock while
//!   the deadline allows;
//!
//! and a cancel sent to the server at the deadline, so no query runs on
//! after its call. Rows are counted against `db_rows` and `db_bytes` as they
//! arrive; past either the call stops and the query is cancelled.

mod values;

use crate::capabilities::db::portable::{Checked, Schema, check_async};
use crate::capabilities::db::{
    Answer, Backend, DbGrant, DbLimits, Packed, Session, Shape, Touched, Values,
};
use crate::capabilities::rawalite::bridge::db::{Outcome, Rows, Statement, Value};
use crate::capabilities::{Error, ErrorCode};
use crate::database::postgres::{Pool, PoolError, Pooled, Postgres, describe};
use futures_util::{StreamExt, pin_mut};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use values::{Param, Raw, cell};

/// Checked statements kept per guest, by SQL text, and the bytes of their
/// texts (the guest's and the one sent): past either the cache starts over.
const CHECKED: usize = 256;
const CHECKED_BYTES: usize = 1 << 20;
/// Only statements this short are kept: a guest that sends large ones
/// (each new) must not fill the host with them.
const CHECKED_SQL: usize = 4 << 10;

/// Statements checked, by the guest's SQL text.
#[derive(Default)]
struct CheckedCache {
    statements: HashMap<String, Result<Arc<Checked>, Error>>,
    bytes: usize,
}

impl CheckedCache {
    fn insert(&mut self, sql: &str, checked: Result<Arc<Checked>, Error>) {
        let bytes = sql.len()
            + match &checked {
                Ok(checked) => checked.sql.len() + checked.tables.len(),
                Err(e) => e.message.len(),
            };
        if self.statements.len() >= CHECKED || self.bytes + bytes > CHECKED_BYTES {
            // A guest that splices values into its SQL makes every
            // statement new; the cache stays bounded.
            self.statements.clear();
            self.bytes = 0;
        }
        if self.statements.insert(sql.to_owned(), checked).is_none() {
            self.bytes += bytes;
        }
    }
}

/// One guest's access to the database on PostgreSQL: its role's pool,
/// its grant and limits, and the statements it was seen to send, checked.
pub struct GuestPostgres(Arc<Guest>);

struct Guest {
    database: Arc<Postgres>,
    pool: Arc<Pool>,
    schema: Arc<Schema>,
    grant: Arc<DbGrant>,
    limits: DbLimits,
    checked: Mutex<CheckedCache>,
}

impl GuestPostgres {
    /// As the role of guest `guest`.
    pub fn new(
        database: Arc<Postgres>,
        guest: &str,
        schema: Arc<Schema>,
        grant: Arc<DbGrant>,
        limits: DbLimits,
    ) -> Self {
        GuestPostgres(Arc::new(Guest {
            pool: database.guest_pool(guest),
            database,
            schema,
            grant,
            limits,
            checked: Mutex::default(),
        }))
    }
}

impl Backend for GuestPostgres {
    fn open(&self) -> Result<Box<dyn Session>, Error> {
        Ok(Box::new(Calls(self.0.clone())))
    }
}

/// A request's calls: each takes a connection of the guest's pool for
/// itself, so a request holds none between them.
struct Calls(Arc<Guest>);

impl Session for Calls {
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value],
        deadline: Instant,
    ) -> Answer<'a, Rows> {
        Box::pin(self.0.query::<Values>(sql, params, deadline))
    }

    fn query_packed<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value],
        deadline: Instant,
    ) -> Answer<'a, Vec<u8>> {
        Box::pin(self.0.query::<Packed>(sql, params, deadline))
    }

    fn execute<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [Value],
        deadline: Instant,
    ) -> Answer<'a, Outcome> {
        Box::pin(self.0.execute(sql, params, deadline))
    }

    fn transaction<'a>(
        &'a mut self,
        statements: &'a [Statement],
        deadline: Instant,
    ) -> Answer<'a, Vec<Outcome>> {
        Box::pin(self.0.transaction(statements, deadline))
    }
}

impl Guest {
    /// The statement checked, from the cache when it was seen before. The
    /// check runs on a thread of its own, the cache's lock not held.
    async fn check(&self, sql: &str, deadline: Instant) -> Result<Arc<Checked>, Error> {
        let limits = &self.limits;
        if sql.len() > limits.sql_bytes {
            return Err(invalid(format!(
                "the SQL is longer than {} bytes",
                limits.sql_bytes
            )));
        }
        if let Some(found) = self.cache().statements.get(sql) {
            return found.clone();
        }
        let checked = check_async(sql, self.grant.clone(), self.schema.clone(), deadline)
            .await
            .map(Arc::new);
        // Whether a statement passes is the statement's own answer; running
        // out of time is this request's.
        let settled = !matches!(&checked, Err(e) if matches!(e.code, ErrorCode::Timeout | ErrorCode::Internal | ErrorCode::Unavailable));
        if settled && sql.len() <= CHECKED_SQL {
            self.cache().insert(sql, checked.clone());
        }
        checked
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, CheckedCache> {
        self.checked.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn query<S: Shape + Send + 'static>(
        &self,
        sql: &str,
        params: &[Value],
        deadline: Instant,
    ) -> Result<(S::Output, Touched), Error>
    where
        S::Output: Send,
    {
        let checked = self.check(sql, deadline).await?;
        if checked.writes {
            return Err(invalid("this statement changes rows: use db.execute"));
        }
        let params = bind(&checked, params)?;
        let limits = self.limits;
        let tables = checked.tables.clone();
        let result = self
            .database
            .awaited(call(&self.pool, deadline, false, |conn| {
                let (checked, params) = (checked.clone(), params.clone());
                Box::pin(async move { rows::<S>(conn, &checked, &params, &limits).await })
            }))
            .await?;
        let rows = result.1;
        Ok((result.0, Touched { tables, rows }))
    }

    async fn execute(
        &self,
        sql: &str,
        params: &[Value],
        deadline: Instant,
    ) -> Result<(Outcome, Touched), Error> {
        let (mut outcomes, touched) = self
            .transaction(
                &[Statement {
                    sql: sql.to_owned(),
                    params: params.to_vec(),
                }],
                deadline,
            )
            .await?;
        Ok((outcomes.remove(0), touched))
    }

    /// All statements or none, in one SERIALIZABLE transaction.
    async fn transaction(
        &self,
        statements: &[Statement],
        deadline: Instant,
    ) -> Result<(Vec<Outcome>, Touched), Error> {
        let limits = &self.limits;
        if statements.len() > limits.statements {
            return Err(Error::new(
                ErrorCode::TooLarge,
                format!(
                    "a transaction may have at most {} statements",
                    limits.statements
                ),
            ));
        }
        let mut batch = Vec::with_capacity(statements.len());
        let mut tables = std::collections::BTreeSet::new();
        for (i, s) in statements.iter().enumerate() {
            let numbered = |e: Error| Error {
                message: if statements.len() > 1 {
                    format!("statement {}: {}", i + 1, e.message)
                } else {
                    e.message
                },
                ..e
            };
            let checked = self.check(&s.sql, deadline).await.map_err(numbered)?;
            if !checked.writes {
                return Err(numbered(invalid(
                    "this statement returns rows: use db.query",
                )));
            }
            tables.extend(
                checked
                    .tables
                    .split(',')
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned),
            );
            let params = bind(&checked, &s.params).map_err(numbered)?;
            batch.push((checked, params));
        }
        let batch = Arc::new(batch);
        let outcomes = self
            .database
            .awaited(call(&self.pool, deadline, true, |conn| {
                let batch = batch.clone();
                Box::pin(async move {
                    // Sent together, run in order; the first failure is the
                    // one to report (those after it only say the
                    // transaction was aborted).
                    let outcomes = futures_util::future::join_all(
                        batch
                            .iter()
                            .map(|(checked, params)| write(conn, checked, params)),
                    )
                    .await;
                    outcomes
                        .into_iter()
                        .enumerate()
                        .map(|(i, outcome)| {
                            outcome.map_err(|e| match e {
                                Failure::Error(e) if batch.len() > 1 => Failure::Error(Error {
                                    message: format!("statement {}: {}", i + 1, e.message),
                                    ..e
                                }),
                                other => other,
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
            }))
            .await?;
        let rows = outcomes.iter().map(|o| o.changed as usize).sum();
        let tables = tables.into_iter().collect::<Vec<_>>().join(",").into();
        Ok((outcomes, Touched { tables, rows }))
    }
}

/// Checks that the call's parameters match the statement's.
fn bind(checked: &Checked, params: &[Value]) -> Result<Arc<Vec<Param>>, Error> {
    if params.len() != checked.params {
        return Err(invalid(format!(
            "the statement takes {} parameters, {} were given",
            checked.params,
            params.len()
        )));
    }
    Ok(Arc::new(params.iter().map(Param::of).collect()))
}

/// Why one attempt at a call failed.
enum Failure {
    /// Another transaction got in the way: the call may run again.
    Retry(String),
    Error(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

/// Runs `attempt` on a connection of `pool`, as one transaction: for a
/// query, the statement alone (the connection's transactions are READ
/// COMMITTED and read-only by default); for a write, SERIALIZABLE READ
/// WRITE with the server's timeouts set from the time left, run again on a
/// serialization failure. Either way a cancel stops it at the deadline.
async fn call<T>(
    pool: &Arc<Pool>,
    deadline: Instant,
    writes: bool,
    attempt: impl for<'c> Fn(&'c Pooled) -> Attempt<'c, T>,
) -> Result<T, Error> {
    let past_deadline = || {
        Error::new(
            ErrorCode::Timeout,
            "the statement ran past the request's deadline",
        )
    };
    loop {
        let conn = pool.get(deadline).await.map_err(pool_error)?;
        let ms = deadline
            .saturating_duration_since(Instant::now())
            .as_millis();
        if ms == 0 {
            return Err(past_deadline());
        }
        let work = async {
            if !writes {
                // One statement is a transaction of its own; the cancel
                // below bounds it (and the role's statement_timeout, should
                // the host be gone).
                return attempt(&conn).await;
            }
            // One round trip, not three: the three go out together and
            // the server runs them in order. A statement that fails aborts
            // the transaction, and the COMMIT then rolls it back.
            // (`join3` polls them in this order, so they are sent in it.)
            let (setup, value, commit) = futures_util::future::join3(
                conn.batch_execute(&format!(
                    "BEGIN ISOLATION LEVEL SERIALIZABLE READ WRITE; SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {}",
                    (ms / 2).max(1)
                )),
                attempt(&conn),
                conn.batch_execute("COMMIT"),
            )
            .await;
            setup.map_err(failure)?;
            let value = value?;
            commit.map_err(failure)?;
            Ok(value)
        };
        match tokio::time::timeout_at(deadline.into(), conn.drive(work)).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(Failure::Error(e))) => return Err(e),
            Ok(Err(Failure::Retry(why))) => {
                if Instant::now() + RETRY_PAUSE >= deadline {
                    tracing::debug!(why, "a write kept meeting others until its deadline");
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        "the database is busy; try again",
                    ));
                }
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(_elapsed) => {
                // The server may still be running it: stop it there, and
                // never hand this connection to another call.
                conn.cancel().await;
                return Err(past_deadline());
            }
        }
    }
}

/// One attempt's work on a connection (boxed: a future that borrows the
/// connection, and that the database's runtime may move between threads).
type Attempt<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, Failure>> + Send + 'c>>;

/// How long a write waits before running again after a serialization
/// failure: long enough for the other transaction to commit.
const RETRY_PAUSE: Duration = Duration::from_millis(2);

/// Reads the rows of a query into the shape `S`, counting them against the
/// call's limits as they arrive.
async fn rows<S: Shape>(
    conn: &Pooled,
    checked: &Checked,
    params: &[Param],
    limits: &DbLimits,
) -> Result<(S::Output, usize), Failure> {
    let typed: Vec<_> = params
        .iter()
        .map(|p| (p as &(dyn tokio_postgres::types::ToSql + Sync), p.pg_type()))
        .collect();
    // Kept prepared on the connection when small (one message, no
    // planning); a large one (or any, behind a pooler) runs unnamed, and
    // the server keeps nothing of it.
    let stream = conn.rows(&checked.sql, &typed).await.map_err(failure)?;
    pin_mut!(stream);
    let mut result = S::default();
    let mut spent = 0usize;
    let mut started = false;
    while let Some(row) = stream.next().await {
        let row = row.map_err(failure)?;
        if !started {
            let names: Vec<&str> = row.columns().iter().map(|c| c.name()).collect();
            spent += result.columns(&names);
            started = true;
        }
        if let Err(e) = take::<S>(&mut result, &mut spent, &row, limits) {
            // The server would go on sending what is left of the result.
            conn.cancel().await;
            return Err(e);
        }
    }
    if !started {
        // No row: the columns still name the result.
        let types: Vec<_> = typed.into_iter().map(|(_, t)| t).collect();
        let names = conn.columns(&checked.sql, &types).await.map_err(failure)?;
        result.columns(&names.iter().map(String::as_str).collect::<Vec<_>>());
    }
    let count = result.rows();
    Ok((result.finish(), count))
}

/// Adds `row` to `result`, or says which of the call's limits it breaks.
fn take<S: Shape>(
    result: &mut S,
    spent: &mut usize,
    row: &tokio_postgres::Row,
    limits: &DbLimits,
) -> Result<(), Failure> {
    let too_large = |what: String| Failure::Error(Error::new(ErrorCode::TooLarge, what));
    if result.rows() == limits.rows {
        return Err(too_large(format!(
            "the result has more than {} rows; add a LIMIT",
            limits.rows
        )));
    }
    result.row(row.len());
    for (i, column) in row.columns().iter().enumerate() {
        let raw: Raw<'_> = row.try_get(i).map_err(failure)?;
        let value = cell(column.type_(), raw).map_err(|what| {
            Failure::Error(invalid(format!(
                "column `{}` is of {what}, which the bridge cannot carry: CAST it to BIGINT, TEXT or DOUBLE PRECISION",
                column.name()
            )))
        })?;
        *spent += result.value(value.as_ref());
        if *spent as u64 > limits.bytes {
            return Err(too_large(format!(
                "the result is larger than this guest's {} bytes for one db call; select fewer rows or columns",
                limits.bytes
            )));
        }
    }
    Ok(())
}

/// Runs one write; its outcome as SQLite reports it.
async fn write(conn: &Pooled, checked: &Checked, params: &[Param]) -> Result<Outcome, Failure> {
    let stream = conn
        .query_typed_raw(
            &checked.sql,
            params
                .iter()
                .map(|p| (p as &(dyn tokio_postgres::types::ToSql + Sync), p.pg_type())),
        )
        .await
        .map_err(failure)?;
    pin_mut!(stream);
    let mut last_id = 0;
    while let Some(row) = stream.next().await {
        let row = row.map_err(failure)?;
        if checked.returns_id
            && let Ok(id) = row.try_get::<_, i64>(0)
        {
            last_id = id;
        }
    }
    let changed = stream.rows_affected().unwrap_or(0);
    Ok(Outcome {
        changed,
        last_insert_rowid: last_id,
    })
}

/// A database error as the bridge reports it, in SQLite's words where a
/// guest may match on them.
fn failure(e: tokio_postgres::Error) -> Failure {
    let Some(db) = e.as_db_error() else {
        return Failure::Error(if e.is_closed() {
            Error::new(
                ErrorCode::Unavailable,
                "the database connection closed; try again",
            )
        } else {
            internal(&describe(&e))
        });
    };
    let code = db.code();
    let constraint = db.constraint().unwrap_or("");
    if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
        return Failure::Retry(db.message().to_owned());
    }
    let (error_code, message) = match code.code() {
        "23503" => (
            ErrorCode::Conflict,
            format!("FOREIGN KEY constraint failed ({constraint})"),
        ),
        "23505" => (
            ErrorCode::Conflict,
            format!("UNIQUE constraint failed: {constraint}"),
        ),
        "23514" => (
            ErrorCode::Conflict,
            format!("CHECK constraint failed: {constraint}"),
        ),
        "23502" => (
            ErrorCode::Conflict,
            format!(
                "NOT NULL constraint failed: {}.{}",
                db.table().unwrap_or(""),
                db.column().unwrap_or("")
            ),
        ),
        "57014" => (
            ErrorCode::Timeout,
            "the statement ran past the request's deadline".to_owned(),
        ),
        "55P03" => (
            ErrorCode::Conflict,
            "the database is busy; try again".to_owned(),
        ),
        "25006" => (
            ErrorCode::InvalidInput,
            "this statement changes rows: use db.execute".to_owned(),
        ),
        "42501" => (
            ErrorCode::Denied,
            format!("the database refused it: {}", db.message()),
        ),
        c if c.starts_with("53") || c == "54000" => (
            ErrorCode::TooLarge,
            "the statement needs more than the database allows one call".to_owned(),
        ),
        c if c.starts_with("22") || c.starts_with("42") || c.starts_with("23") => {
            (ErrorCode::InvalidInput, db.message().to_owned())
        }
        _ => return Failure::Error(internal(&describe(&e))),
    };
    Failure::Error(Error::new(error_code, message))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

fn internal(e: &dyn std::fmt::Display) -> Error {
    tracing::error!(error = %e, "database failure");
    Error::new(
        ErrorCode::Internal,
        "the database failed; the host's log has the details",
    )
}

/// How long a call waits for a connection of its guest's pool.
fn pool_error(e: PoolError) -> Error {
    match e {
        PoolError::Busy => Error::new(
            ErrorCode::Timeout,
            "no database connection came free before the request's deadline",
        ),
        PoolError::Connect(e) => {
            tracing::error!(error = %e, "cannot connect as the guest's role");
            Error::new(ErrorCode::Unavailable, "the database is not available")
        }
    }
}

#[cfg(test)]
mod tests;
