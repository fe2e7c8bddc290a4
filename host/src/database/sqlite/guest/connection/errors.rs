//! How a call's failures read to the guest: SQLite's errors mapped onto
//! the bridge's codes, and the stops at a budget's end.

use super::GuestConnection;
use crate::capabilities::db::not_granted;
use crate::capabilities::{Error, ErrorCode};
use crate::database::sqlite::guest::scan::writes;
use crate::database::sqlite::memory::{Charge, Trip};
use crate::limits::VALUE_BYTES;
use std::time::Instant;

impl GuestConnection {
    /// Maps a SQLite error onto the bridge's codes. The message is SQLite's
    /// own where that is safe (syntax, constraints); anything about files
    /// or the machine becomes `internal` and goes to the log.
    pub(super) fn error(&self, e: rusqlite::Error, sql: &str, charge: &Charge) -> Error {
        use rusqlite::ErrorCode as C;
        // A denied function is reported as a plain SQL error, a denied
        // table as SQLITE_AUTH: either way the authorizer said why.
        if let Some((code, why)) = self.log().denial.take() {
            return Error::new(code, why);
        }
        match charge.tripped() {
            Some(Trip::Memory) => {
                return too_large(format!(
                    "the statement needs more than this guest's {} bytes for one db call",
                    charge.budget()
                ));
            }
            Some(Trip::Deadline) => return self.stopped(),
            None => {}
        }
        if let rusqlite::Error::SqliteFailure(failure, _) = &e {
            match failure.code {
                C::OperationInterrupted => return self.stopped(),
                C::DatabaseBusy | C::DatabaseLocked if self.budget.get().give_up.is_some() => {
                    return self.give_up();
                }
                _ => {}
            }
        }
        // A statement SQLite could not compile may have been refused before
        // the authorizer saw its tables, with a message that names a column
        // ("no such column", "has no column named"). When it mentions a
        // table this guest may not read, the answer is the grant's, so no
        // message ever tells a guest about another table's columns.
        let refuse_unless_granted = |message: &str| match self.log().ungranted_name(sql) {
            Some(table) => denied(not_granted(&table, writes(sql))),
            None => invalid(message),
        };
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
                    C::DiskFull | C::SystemIoFailure => {
                        tracing::error!(error = %e, "the database could not write: the disk may be full or at a file size limit");
                        Error::new(
                            ErrorCode::Unavailable,
                            "the server could not write to its disk (it may be full): nothing was written; try again later",
                        )
                    }
                    C::DatabaseBusy | C::DatabaseLocked => {
                        Error::new(ErrorCode::Conflict, "the database is busy; try again")
                    }
                    C::OperationInterrupted => self.stopped(),
                    C::TooBig => too_large(format!(
                        "a value or the statement is larger than this host allows (values up to {} bytes)",
                        VALUE_BYTES
                    )),
                    C::ReadOnly => denied(
                        "this guest has no db.write grant (`write = [...]` under [guest.db] in the manifest)",
                    ),
                    C::ParameterOutOfRange => invalid("a parameter index is out of range"),
                    C::Unknown => match message.strip_prefix("no such table: ") {
                        // Only tables outside the grant can be missing (the
                        // grant's tables are checked at start), so the
                        // answer is the authorizer's, exists or not.
                        Some(table) => denied(not_granted(table, writes(sql))),
                        None => refuse_unless_granted(message),
                    },
                    _ => internal(&e),
                }
            }
            rusqlite::Error::SqlInputError { msg, .. } => refuse_unless_granted(msg),
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
    /// The call stopped at its budget's end: the request's deadline, or the
    /// moment a first attempt gives up.
    pub(super) fn stopped(&self) -> Error {
        let budget = self.budget.get();
        if budget.give_up.is_some() && Instant::now() < budget.deadline {
            return self.give_up();
        }
        Error::new(
            ErrorCode::Timeout,
            "the statement ran past the request's deadline",
        )
    }

    /// Marks the first attempt as given up; the error is never seen.
    pub(super) fn give_up(&self) -> Error {
        self.gave_up.set(true);
        Error::new(ErrorCode::Timeout, "the first attempt gave up")
    }
}

pub(super) fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

pub(super) fn denied(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::Denied, message)
}

pub(super) fn too_large(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::TooLarge, message)
}

pub(super) fn internal(e: &rusqlite::Error) -> Error {
    tracing::error!(error = ?e.to_string(), "database failure");
    Error::new(
        ErrorCode::Internal,
        "the database failed; the host's log has the details",
    )
}
