//! The portable subset of SQL: what a guest may send so that the same
//! statement means the same on SQLite and on PostgreSQL, and the first wall
//! on PostgreSQL. A statement is bounded in depth from its tokens
//! (`depth.rs`), parsed with SQLite's rules (guests write SQLite SQL with
//! `?`/`?N`), walked node by node against the subset, the guest's grant
//! and the names in reach (`walk.rs`, `nodes.rs`), rewritten only where a
//! rewrite gives the same result on both engines (`rewrite.rs`), rendered,
//! parsed again with PostgreSQL's rules, and refused unless that second
//! reading is the same tree: a string, a comment or a quote that
//! PostgreSQL would lex differently (`$a$ … $a$`, `E'…'`) cannot smuggle
//! anything past the check (the guest's PostgreSQL connections pin the
//! settings that change how a string is read). `docs/SQL.md` lists the
//! subset and each rewrite.
//!
//! Refuses, with `invalid-input` and the portable spelling where there is
//! one: anything but one SELECT, INSERT, UPDATE or DELETE; a statement
//! nested deeper than [`DEPTH`]; functions (also as `x.y` and as bare
//! words such as `current_user`), operators, casts, collations and
//! literals outside the subset; placeholders other than `?` and `?N`;
//! schema-qualified names; table functions; `RETURNING` and `INSERT OR …`.
//! Tables outside the grant get the grant's `denied`, as on SQLite.
//!
//! The check recurses as deep as the statement nests and takes up to some
//! 100 ms for 64 KiB of SQL: it runs on threads of its own (`threads.rs`).

mod depth;
mod nodes;
mod rewrite;
mod threads;
mod walk;

pub use depth::{DEPTH, NESTING};
pub use threads::{check_async, check_blocking};

use super::grant::DbGrant;
use crate::capabilities::{Error, ErrorCode};
use sqlparser::ast::{Expr, ObjectName, ObjectNamePart, Query, SelectItem, SetExpr, Statement};
use sqlparser::dialect::{PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::TokenWithSpan;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// How deep the parser may recurse: a second bound past [`NESTING`]
/// (a level of it is one to three of the parser's), for what that does not
/// count (`NOT NOT …`).
const RECURSION_LIMIT: usize = 160;

/// What the host knows of the app's tables.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// Each table's columns, by table (names as PostgreSQL stores them:
    /// lower case unless created quoted).
    pub columns: HashMap<String, BTreeSet<String>>,
    /// Each table's identity column, which an INSERT returns so that
    /// `last-insert-rowid` is filled (PostgreSQL only).
    pub identity: HashMap<String, String>,
}

/// A statement that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The text to send to PostgreSQL.
    pub sql: String,
    /// Whether it writes (INSERT, UPDATE, DELETE).
    pub writes: bool,
    /// How many parameters it takes (the highest `?N`).
    pub params: usize,
    /// Whether the host added `RETURNING <identity>` to an INSERT.
    pub returns_id: bool,
    /// The tables it reads or writes, for the audit log.
    pub tables: Arc<str>,
}

/// Checks `sql` against the portable subset and `grant`; returns what to
/// send to PostgreSQL. Recurses as deep as [`DEPTH`] allows: call it on a
/// thread with a large stack ([`check_async`], [`check_blocking`]).
pub fn check(sql: &str, grant: &DbGrant, schema: &Schema) -> Result<Checked, Error> {
    check_tokens(depth::tokens(sql)?, grant, schema)
}

fn check_tokens(
    tokens: Vec<TokenWithSpan>,
    grant: &DbGrant,
    schema: &Schema,
) -> Result<Checked, Error> {
    let mut statements = Parser::new(&SQLiteDialect {})
        .with_recursion_limit(RECURSION_LIMIT)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(unreadable)?;
    if statements.len() != 1 {
        return Err(invalid(
            "one statement per call: remove what follows the first `;`",
        ));
    }
    let mut statement = statements.remove(0);
    let touches = walk::walk(&statement, grant, schema)?;
    if let Statement::Query(query) = &statement {
        named_columns(query)?;
    }
    let params = rewrite::rewrite(&mut statement)?;
    let returns_id = rewrite::returning(&mut statement, schema);
    let text = statement.to_string();
    // The rewrites nest a little deeper than what the guest wrote.
    let again = Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(RECURSION_LIMIT + 16)
        .try_with_sql(&text)
        .and_then(|mut parser| parser.parse_statements());
    match again {
        Ok(again) if again.len() == 1 && again[0] == statement => {}
        _ => {
            return Err(invalid(
                "this statement would be read differently by PostgreSQL; write it in the portable subset (docs/SQL.md)",
            ));
        }
    }
    Ok(Checked {
        sql: text,
        writes: touches.writes,
        params,
        returns_id,
        tables: touches
            .tables
            .into_iter()
            .collect::<Vec<_>>()
            .join(",")
            .into(),
    })
}

fn unreadable(e: ParserError) -> Error {
    match e {
        ParserError::RecursionLimitExceeded => invalid(format!(
            "the statement nests too deeply (more than {RECURSION_LIMIT} levels of the parser): flatten it"
        )),
        e => invalid(format!("the statement cannot be read: {e}")),
    }
}

/// The columns a query's result has must be named the same on both
/// engines: a column, or an expression with `AS` (SQLite names
/// `count(*)` "count(*)", PostgreSQL "count").
fn named_columns(query: &Query) -> Result<(), Error> {
    let mut body = query.body.as_ref();
    while let SetExpr::SetOperation { left, .. } = body {
        body = left;
    }
    if let SetExpr::Select(select) = body {
        for item in &select.projection {
            if let SelectItem::UnnamedExpr(expr) = item
                && !matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
            {
                return Err(invalid(format!(
                    "name the column `{expr}` with AS (`{expr} AS n`): SQLite and PostgreSQL name it differently"
                )));
            }
        }
    }
    Ok(())
}

/// `?` (0: the next one) or `?N` (N); anything else is not ours.
fn placeholder_index(p: &str) -> Option<usize> {
    let digits = p.strip_prefix('?')?;
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| (1..=999).contains(n))
}

/// A name of one plain part, lower-cased (as both engines fold unquoted
/// names; quoted names are taken as written).
fn plain_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(nodes::name_of(ident)),
        _ => None,
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

#[cfg(test)]
mod tests;
