//! The SQLite authorizer that enforces a guest's `[guest.db]` grant on every
//! statement the guest prepares. It is an allowlist: reading granted
//! tables, writing write-granted tables, and a list of pure functions;
//! every other action (DDL, PRAGMA, ATTACH, VACUUM, transactions, other
//! functions) is denied.

use crate::capabilities::ErrorCode;
use crate::capabilities::db::{DbGrant, not_granted};
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use std::collections::BTreeSet;

/// Functions a guest may call: pure computations on values. Anything that
/// reaches outside the database (`load_extension`, `fts3_tokenizer`, …) or
/// inspects it (`sqlite_*`) is not here, nor `json_patch`, whose merge of
/// two large objects takes quadratic time. `instr`, `replace` and the
/// trims run the host's bounded versions (`functions.rs`).
const FUNCTIONS: &[&str] = &[
    "abs",
    "avg",
    "changes",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "count",
    "cume_dist",
    "date",
    "datetime",
    "dense_rank",
    "first_value",
    "format",
    "glob",
    "group_concat",
    "hex",
    "ifnull",
    "iif",
    "instr",
    "json",
    "json_array",
    "json_array_length",
    "json_extract",
    "json_group_array",
    "json_group_object",
    "json_insert",
    "json_object",
    "json_quote",
    "json_remove",
    "json_replace",
    "json_set",
    "json_type",
    "json_valid",
    "julianday",
    "lag",
    "last_insert_rowid",
    "last_value",
    "lead",
    "length",
    "like",
    "likelihood",
    "likely",
    "lower",
    "ltrim",
    "max",
    "min",
    "nth_value",
    "ntile",
    "nullif",
    "octet_length",
    "percent_rank",
    "printf",
    "quote",
    "random",
    "randomblob",
    "rank",
    "replace",
    "round",
    "row_number",
    "rtrim",
    "sign",
    "strftime",
    "string_agg",
    "substr",
    "substring",
    "sum",
    "time",
    "timediff",
    "total",
    "trim",
    "typeof",
    "unhex",
    "unicode",
    "unixepoch",
    "unlikely",
    "upper",
    "zeroblob",
    "->",
    "->>",
];

/// Table-valued functions a guest may read from: pure, like `FUNCTIONS`.
const TABLE_FUNCTIONS: &[&str] = &["json_each", "json_tree"];

/// Function calls one statement may make. SQLite checks its progress
/// handler only at the end of a loop, so a statement's straight-line part
/// (its select list, a long expression) runs unchecked: this bounds it to
/// that many calls, each bounded by the value limit.
pub const MAX_FUNCTION_CALLS: usize = 100;

/// Who is preparing a statement on a guest's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The guest's SQL: the grant applies.
    Guest,
    /// The host's own control statements (BEGIN, COMMIT, ROLLBACK).
    Host,
}

/// What the authorizer saw while a statement was prepared.
#[derive(Debug)]
pub(super) struct AuthLog {
    grant: std::sync::Arc<DbGrant>,
    /// Every table and view in the database, lower-case.
    schema: BTreeSet<String>,
    pub(super) mode: Mode,
    /// Why the first denied action was denied, and the code it earns.
    pub(super) denial: Option<(ErrorCode, String)>,
    /// The tables the statement reads or writes.
    pub(super) tables: BTreeSet<String>,
    /// Function calls in the statement so far.
    functions: usize,
}

impl AuthLog {
    pub(super) fn new(grant: std::sync::Arc<DbGrant>, schema: BTreeSet<String>) -> Self {
        AuthLog {
            grant,
            schema,
            mode: Mode::Guest,
            denial: None,
            tables: BTreeSet::new(),
            functions: 0,
        }
    }

    /// Forgets the last statement, before the next one is prepared.
    pub(super) fn reset(&mut self, mode: Mode) {
        self.mode = mode;
        self.denial = None;
        self.tables.clear();
        self.functions = 0;
    }

    /// A table or view of the schema that `sql` names and this guest may
    /// not read, if there is one.
    pub(super) fn ungranted_name(&self, sql: &str) -> Option<String> {
        super::scan::names(sql)
            .map(|name| name.to_ascii_lowercase())
            .find(|name| self.in_schema(name) && !self.grant.may_read(name))
    }

    pub(super) fn authorize(&mut self, ctx: AuthContext<'_>) -> Authorization {
        if self.mode == Mode::Host {
            return Authorization::Allow;
        }
        match self.verdict(&ctx) {
            Ok(()) => Authorization::Allow,
            Err(why) => {
                self.denial.get_or_insert(why);
                Authorization::Deny
            }
        }
    }

    /// Allowed, or the code and message of the refusal: a grant's refusal
    /// is `denied`, a limit's `too-large`.
    fn verdict(&mut self, ctx: &AuthContext<'_>) -> Result<(), (ErrorCode, String)> {
        self.grant_verdict(ctx)
            .map_err(|why| (ErrorCode::Denied, why))?;
        if matches!(ctx.action, AuthAction::Function { .. }) {
            self.functions += 1;
            if self.functions > MAX_FUNCTION_CALLS {
                return Err((
                    ErrorCode::TooLarge,
                    format!(
                        "a statement may call at most {MAX_FUNCTION_CALLS} functions; split it into several"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn grant_verdict(&mut self, ctx: &AuthContext<'_>) -> Result<(), String> {
        match ctx.action {
            AuthAction::Select | AuthAction::Recursive => Ok(()),
            // SQLite reports a read with no database both for a CTE or a
            // subquery (a table of the statement's own, whose real tables
            // are checked apart) and for a real table read without any
            // column (`SELECT count(*) FROM users`). Only names that are in
            // the schema are real tables; those get the grant's check.
            AuthAction::Read { table_name, .. }
                if ctx.database_name.is_none() && !self.in_schema(table_name) =>
            {
                Ok(())
            }
            AuthAction::Read { table_name, .. } if TABLE_FUNCTIONS.contains(&table_name) => Ok(()),
            AuthAction::Read { table_name, .. } => self.table(table_name, false),
            AuthAction::Insert { table_name }
            | AuthAction::Delete { table_name }
            | AuthAction::Update { table_name, .. } => self.table(table_name, true),
            AuthAction::Function { function_name } => {
                if FUNCTIONS.contains(&function_name.to_ascii_lowercase().as_str()) {
                    Ok(())
                } else {
                    Err(format!("function `{function_name}` is not allowed"))
                }
            }
            AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => Err(
                "transactions are made with db.transaction, not with BEGIN, COMMIT or SAVEPOINT"
                    .to_owned(),
            ),
            AuthAction::Pragma { pragma_name, .. } => {
                Err(format!("PRAGMA {pragma_name} is not allowed"))
            }
            // VACUUM reports ATTACH first.
            AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
                Err("ATTACH, DETACH and VACUUM are not allowed".to_owned())
            }
            _ => Err(
                "schema changes (CREATE, DROP, ALTER, triggers, indexes) are not allowed; the schema changes through migrations"
                    .to_owned(),
            ),
        }
    }

    fn in_schema(&self, table: &str) -> bool {
        let table = table.to_ascii_lowercase();
        table.starts_with("sqlite_") || self.schema.contains(&table)
    }

    fn table(&mut self, table: &str, write: bool) -> Result<(), String> {
        if table.to_ascii_lowercase().starts_with("sqlite_") {
            // DROP and CREATE report a write of the schema table first.
            return Err(format!(
                "SQLite's own table `{table}` is out of every guest's reach; the schema changes through migrations"
            ));
        }
        let allowed = if write {
            self.grant.may_write(table)
        } else {
            self.grant.may_read(table)
        };
        if allowed {
            if !self.tables.contains(table) {
                self.tables.insert(table.to_owned());
            }
            Ok(())
        } else {
            Err(not_granted(table, write))
        }
    }
}
