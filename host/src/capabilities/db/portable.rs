//! The portable subset of SQL: what a guest may send so that the same
//! statement means the same on SQLite and on PostgreSQL. Every statement is
//! parsed with SQLite's rules (guests write SQLite SQL with `?`/`?N`),
//! checked against the subset and the guest's grant, rewritten only where a
//! rewrite gives the same result on both engines, rendered, parsed again
//! with PostgreSQL's rules, and refused unless that second reading is the
//! same tree: a string, a comment or a quote that PostgreSQL would lex
//! differently (`$a$ … $a$`, `E'…'`) cannot smuggle anything past the
//! check. `docs/SQL.md` lists the subset and each rewrite.
//!
//! Refuses, with `invalid-input` and the portable spelling where there is
//! one: anything but one SELECT, INSERT, UPDATE or DELETE; functions,
//! operators, casts, collations and literals outside the subset;
//! placeholders other than `?` and `?N`; schema-qualified names; table
//! functions; `RETURNING` and `INSERT OR …`. Tables outside the grant get
//! the grant's `denied`, as on SQLite.

use super::grant::{DbGrant, not_granted};
use crate::capabilities::{Error, ErrorCode};
use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Distinct, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, InTarget, ObjectName, ObjectNamePart, Query, SelectItem, SetExpr,
    Statement, TableFactor, TableObject, UnaryOperator, Value, ValueWithSpan, Visit, VisitMut,
    Visitor, VisitorMut,
};
use sqlparser::dialect::{PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;
use std::collections::{BTreeSet, HashMap};
use std::ops::ControlFlow;
use std::sync::Arc;

/// How deep expressions may nest: a statement nested deeper is refused
/// rather than parsed on a stack it could exhaust.
const RECURSION_LIMIT: usize = 64;

/// Functions that mean the same on both engines, as they are.
const PORTABLE: &[&str] = &[
    "abs",
    "avg",
    "coalesce",
    "count",
    "dense_rank",
    "first_value",
    "lag",
    "last_value",
    "lead",
    "length",
    "lower",
    "max",
    "min",
    "nullif",
    "rank",
    "replace",
    "round",
    "row_number",
    "sum",
    "upper",
];

/// What the host needs to know of the database to rewrite: each app
/// table's identity column, which an INSERT returns so that
/// `last-insert-rowid` is filled.
#[derive(Debug, Clone, Default)]
pub struct Schema {
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
/// send to PostgreSQL.
pub fn check(sql: &str, grant: &DbGrant, schema: &Schema) -> Result<Checked, Error> {
    let mut statements = parse(&SQLiteDialect {}, sql)
        .map_err(|e| invalid(format!("the statement cannot be read: {e}")))?;
    if statements.len() != 1 {
        return Err(invalid(
            "one statement per call: remove what follows the first `;`",
        ));
    }
    let mut statement = statements.remove(0);
    let writes = shape(&statement)?;
    let mut subset = Subset::default();
    if let ControlFlow::Break(e) = Visit::visit(&statement, &mut subset) {
        return Err(e);
    }
    let tables = grants(&statement, &subset, grant)?;
    if let Statement::Query(query) = &statement {
        named_columns(query)?;
    }
    let mut rewrite = Rewrite::default();
    if let ControlFlow::Break(e) = VisitMut::visit(&mut statement, &mut rewrite) {
        return Err(e);
    }
    let returns_id = returning(&mut statement, schema);
    let text = statement.to_string();
    match parse(&PostgreSqlDialect {}, &text) {
        Ok(again) if again.len() == 1 && again[0] == statement => {}
        _ => {
            return Err(invalid(
                "this statement would be read differently by PostgreSQL; write it in the portable subset (docs/SQL.md)",
            ));
        }
    }
    Ok(Checked {
        sql: text,
        writes,
        params: rewrite.params,
        returns_id,
        tables: tables.into_iter().collect::<Vec<_>>().join(",").into(),
    })
}

fn parse(
    dialect: &dyn sqlparser::dialect::Dialect,
    sql: &str,
) -> Result<Vec<Statement>, sqlparser::parser::ParserError> {
    Parser::new(dialect)
        .with_recursion_limit(RECURSION_LIMIT)
        .try_with_sql(sql)?
        .parse_statements()
}

/// The statement's kind and the clauses it may not have; whether it writes.
fn shape(statement: &Statement) -> Result<bool, Error> {
    let no_returning = || {
        invalid("RETURNING is not available: a write returns only its count and last-insert-rowid")
    };
    match statement {
        Statement::Query(query) => {
            query_shape(query)?;
            Ok(false)
        }
        Statement::Insert(insert) => {
            if insert.or.is_some() || insert.replace_into || insert.ignore {
                return Err(invalid(
                    "INSERT OR … is SQLite's own: write INSERT … ON CONFLICT (…) DO UPDATE SET … or DO NOTHING",
                ));
            }
            if insert.returning.is_some() {
                return Err(no_returning());
            }
            if let Some(source) = &insert.source {
                query_shape(source)?;
            }
            Ok(true)
        }
        Statement::Update(update) => {
            if update.or.is_some() {
                return Err(invalid("UPDATE OR … is SQLite's own"));
            }
            if update.returning.is_some() {
                return Err(no_returning());
            }
            if !update.order_by.is_empty() || update.limit.is_some() {
                return Err(invalid(
                    "UPDATE … ORDER BY/LIMIT is SQLite's own: select the rows in WHERE",
                ));
            }
            Ok(true)
        }
        Statement::Delete(delete) => {
            if delete.returning.is_some() {
                return Err(no_returning());
            }
            if !delete.order_by.is_empty() || delete.limit.is_some() || !delete.tables.is_empty() {
                return Err(invalid(
                    "DELETE … ORDER BY/LIMIT is SQLite's own: select the rows in WHERE",
                ));
            }
            Ok(true)
        }
        _ => Err(invalid(
            "only SELECT, INSERT, UPDATE and DELETE are allowed (the host runs each call in a transaction of its own)",
        )),
    }
}

/// The columns a query's result has must be named the same on both
/// engines: a column, or an expression with `AS` (SQLite names
/// `count(*)` "count(*)", PostgreSQL "count").
fn named_columns(query: &Query) -> Result<(), Error> {
    let body = match query.body.as_ref() {
        SetExpr::SetOperation { left, .. } => left.as_ref(),
        other => other,
    };
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

fn query_shape(query: &Query) -> Result<(), Error> {
    if !query.locks.is_empty() || query.for_clause.is_some() {
        return Err(invalid("FOR UPDATE and the like are not allowed"));
    }
    if let SetExpr::Select(select) = query.body.as_ref() {
        if select.into.is_some() {
            return Err(invalid("SELECT … INTO is not allowed"));
        }
        if matches!(select.distinct, Some(Distinct::On(_))) {
            return Err(invalid("DISTINCT ON is PostgreSQL's own: use GROUP BY"));
        }
    }
    Ok(())
}

/// What the first pass found: the names of common table expressions, the
/// relations named, and the first thing outside the subset.
#[derive(Default)]
struct Subset {
    ctes: BTreeSet<String>,
    relations: Vec<String>,
    statements: usize,
}

impl Visitor for Subset {
    type Break = Error;

    fn pre_visit_statement(&mut self, _: &Statement) -> ControlFlow<Error> {
        self.statements += 1;
        if self.statements > 1 {
            return ControlFlow::Break(invalid(
                "a statement inside a statement (a data-modifying WITH) is not allowed",
            ));
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Error> {
        if let Err(e) = query_shape(query) {
            return ControlFlow::Break(e);
        }
        if !matches!(
            query.body.as_ref(),
            SetExpr::Select(_)
                | SetExpr::Query(_)
                | SetExpr::SetOperation { .. }
                | SetExpr::Values(_)
        ) {
            return ControlFlow::Break(invalid("a statement inside a query is not allowed"));
        }
        for cte in query.with.iter().flat_map(|w| &w.cte_tables) {
            self.ctes.insert(cte.alias.name.value.to_ascii_lowercase());
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<Error> {
        match plain_name(relation) {
            Some(name) => {
                self.relations.push(name);
                ControlFlow::Continue(())
            }
            None => ControlFlow::Break(invalid(format!(
                "`{relation}`: name tables without a schema"
            ))),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Error> {
        match factor {
            TableFactor::Table {
                args: None,
                with_hints,
                version: None,
                partitions,
                sample: None,
                ..
            } if with_hints.is_empty() && partitions.is_empty() => ControlFlow::Continue(()),
            TableFactor::Derived { lateral: false, .. } | TableFactor::NestedJoin { .. } => {
                ControlFlow::Continue(())
            }
            _ => ControlFlow::Break(invalid(format!(
                "`{factor}`: read from tables and subqueries only (table functions are not portable)"
            ))),
        }
    }

    fn pre_visit_ident(&mut self, ident: &Ident) -> ControlFlow<Error> {
        match ident.quote_style {
            None | Some('"') => ControlFlow::Continue(()),
            Some(_) => ControlFlow::Break(invalid(format!(
                "`{ident}`: quote names with \"double quotes\" only"
            ))),
        }
    }

    fn pre_visit_value(&mut self, value: &ValueWithSpan) -> ControlFlow<Error> {
        match &value.value {
            Value::Number(..) | Value::SingleQuotedString(_) | Value::Boolean(_) | Value::Null => {
                ControlFlow::Continue(())
            }
            Value::Placeholder(p) if placeholder_index(p).is_some() => ControlFlow::Continue(()),
            Value::Placeholder(p) => {
                ControlFlow::Break(invalid(format!("`{p}`: parameters are `?` or `?N`")))
            }
            Value::HexStringLiteral(_) => ControlFlow::Break(invalid(
                "X'…' blob literals are not portable: pass the blob as a parameter",
            )),
            other => ControlFlow::Break(invalid(format!(
                "`{other}` is not a portable literal: use '…' strings, numbers and parameters"
            ))),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Error> {
        match expression(expr) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        }
    }
}

/// Checks one expression node (its children are visited on their own).
fn expression(expr: &Expr) -> Result<(), Error> {
    use BinaryOperator as B;
    match expr {
        Expr::Identifier(_)
        | Expr::Value(_)
        | Expr::Nested(_)
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::IsDistinctFrom(..)
        | Expr::IsNotDistinctFrom(..)
        | Expr::In {
            target: InTarget::List(_) | InTarget::Subquery(_),
            global: false,
            ..
        }
        | Expr::Between { .. }
        | Expr::Exists { .. }
        | Expr::Subquery(_)
        | Expr::Case { .. } => Ok(()),
        Expr::CompoundIdentifier(parts) if parts.len() == 2 => Ok(()),
        Expr::CompoundIdentifier(_) => Err(invalid(format!(
            "`{expr}`: name columns as column or table.column"
        ))),
        Expr::BinaryOp { op, .. } => match op {
            B::Plus
            | B::Minus
            | B::Multiply
            | B::Divide
            | B::Modulo
            | B::StringConcat
            | B::Gt
            | B::Lt
            | B::GtEq
            | B::LtEq
            | B::Eq
            | B::NotEq
            | B::And
            | B::Or => Ok(()),
            other => Err(invalid(format!("the operator `{other}` is not portable"))),
        },
        Expr::UnaryOp { op, .. } => match op {
            UnaryOperator::Not | UnaryOperator::Minus | UnaryOperator::Plus => Ok(()),
            other => Err(invalid(format!("the operator `{other}` is not portable"))),
        },
        Expr::Like {
            any: false,
            pattern,
            ..
        } => match pattern.as_ref() {
            Expr::Value(v) if matches!(&v.value, Value::SingleQuotedString(p) if p.len() > super::LIKE_PATTERN_BYTES as usize) => {
                Err(invalid(format!(
                    "a LIKE pattern may have at most {} bytes",
                    super::LIKE_PATTERN_BYTES
                )))
            }
            _ => Ok(()),
        },
        Expr::Collate { collation, .. } => match plain_name(collation).as_deref() {
            Some("nocase") => Ok(()),
            _ => Err(invalid(format!(
                "COLLATE {collation} is not portable: COLLATE NOCASE is (the default compares bytes on both)"
            ))),
        },
        Expr::Cast {
            kind: CastKind::Cast,
            data_type,
            format: None,
            ..
        } => match data_type {
            DataType::BigInt(None) | DataType::Text | DataType::DoublePrecision => Ok(()),
            DataType::Integer(_) | DataType::Int(_) => Err(invalid(
                "CAST(… AS INTEGER) is 32 bits on PostgreSQL: write CAST(… AS BIGINT)",
            )),
            DataType::Real | DataType::Float(_) => Err(invalid(
                "CAST(… AS REAL) is 32 bits on PostgreSQL: write CAST(… AS DOUBLE PRECISION)",
            )),
            other => Err(invalid(format!(
                "CAST(… AS {other}) is not portable: cast to BIGINT, TEXT or DOUBLE PRECISION"
            ))),
        },
        Expr::Substring {
            substring_from: Some(_),
            special: true,
            ..
        } => Ok(()),
        Expr::Trim {
            trim_where: None,
            trim_what: None,
            trim_characters: None,
            ..
        } => Ok(()),
        Expr::Function(function) => function_call(function),
        other => Err(invalid(format!(
            "`{other}` is not in the portable subset of SQL (docs/SQL.md lists what is)"
        ))),
    }
}

/// Checks a function call: its name and the shape of its arguments.
fn function_call(f: &Function) -> Result<(), Error> {
    let Some(name) = plain_name(&f.name) else {
        return Err(invalid(format!(
            "`{}`: call functions without a schema",
            f.name
        )));
    };
    if !matches!(f.parameters, FunctionArguments::None)
        || f.null_treatment.is_some()
        || !f.within_group.is_empty()
        || f.uses_odbc_syntax
    {
        return Err(invalid(format!("`{f}` is not portable")));
    }
    let args: Vec<&FunctionArgExpr> = match &f.args {
        FunctionArguments::None => Vec::new(),
        FunctionArguments::List(list) if list.clauses.is_empty() => {
            let mut args = Vec::new();
            for arg in &list.args {
                match arg {
                    FunctionArg::Unnamed(arg) => args.push(arg),
                    _ => return Err(invalid(format!("`{f}`: named arguments are not portable"))),
                }
            }
            args
        }
        _ => return Err(invalid(format!("`{f}` is not portable"))),
    };
    let expr = |i: usize| match args.get(i) {
        Some(FunctionArgExpr::Expr(e)) => Some(e),
        _ => None,
    };
    let literal = |i: usize| match expr(i) {
        Some(Expr::Value(v)) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.as_str()),
            _ => None,
        },
        _ => None,
    };
    match name.as_str() {
        "sum" | "avg" if expr(0).is_some_and(boolean) => Err(invalid(format!(
            "`{f}` adds up a condition, which PostgreSQL refuses: write count(*) FILTER (WHERE …)"
        ))),
        "round" if args.len() != 1 => Err(invalid(
            "round(x, digits) is not portable (PostgreSQL rounds only numeric to digits): round(x) is",
        )),
        "date" if args.len() == 1 && literal(0) == Some("now") => Ok(()),
        "date" => Err(invalid(
            "date(…) is portable only as date('now'); compute other dates in the guest",
        )),
        "strftime"
            if args.len() == 2
                && literal(1) == Some("now")
                && literal(0).is_some_and(|f| to_char_format(f).is_some()) =>
        {
            Ok(())
        }
        "strftime" => Err(invalid(
            "strftime(…) is portable only as strftime(F, 'now'), F made of %Y %m %d %H %M %S and plain characters",
        )),
        "ifnull" | "group_concat" | "string_agg" if args.len() <= 2 => Ok(()),
        name if PORTABLE.contains(&name) => Ok(()),
        "printf" | "format" => Err(invalid(
            "printf/format are not portable: build the text in the guest",
        )),
        "iif" => Err(invalid(
            "iif(…) is not portable: write CASE WHEN … THEN … ELSE … END",
        )),
        "instr" => Err(invalid(
            "instr(…) is not portable: write x LIKE '%' || y || '%', or search in the guest",
        )),
        "substring" | "substr" => Err(invalid("write substr(x, start, length)")),
        "last_insert_rowid" => Err(invalid(
            "last_insert_rowid() is not portable: db.execute returns it",
        )),
        other => Err(invalid(format!(
            "`{other}` is not in the portable subset of SQL (docs/SQL.md lists what is)"
        ))),
    }
}

/// Whether an expression is a condition (PostgreSQL types it `boolean`).
fn boolean(expr: &Expr) -> bool {
    use BinaryOperator as B;
    match expr {
        Expr::Nested(e) => boolean(e),
        Expr::BinaryOp { op, .. } => matches!(
            op,
            B::Gt | B::Lt | B::GtEq | B::LtEq | B::Eq | B::NotEq | B::And | B::Or
        ),
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            ..
        }
        | Expr::IsNull(_)
        | Expr::IsNotNull(_)
        | Expr::Like { .. }
        | Expr::In { .. }
        | Expr::Between { .. }
        | Expr::Exists { .. } => true,
        _ => false,
    }
}

/// The tables the statement touches, each checked against the grant: the
/// target of a write needs `write`, everything else `read` (which `write`
/// implies). A name that is a common table expression of the statement is
/// that, not a table.
fn grants(
    statement: &Statement,
    subset: &Subset,
    grant: &DbGrant,
) -> Result<BTreeSet<String>, Error> {
    let target = match statement {
        Statement::Insert(insert) => match &insert.table {
            TableObject::TableName(name) => plain_name(name),
            _ => return Err(invalid("insert into a table by its name")),
        },
        Statement::Update(update) => match &update.table.relation {
            TableFactor::Table { name, .. } => plain_name(name),
            _ => None,
        },
        Statement::Delete(delete) => match &delete.from {
            sqlparser::ast::FromTable::WithFromKeyword(tables) if tables.len() == 1 => {
                match &tables[0].relation {
                    TableFactor::Table { name, .. } => plain_name(name),
                    _ => None,
                }
            }
            _ => return Err(invalid("DELETE FROM one table")),
        },
        _ => None,
    };
    let mut tables = BTreeSet::new();
    if let Some(target) = &target {
        if !grant.may_write(target) {
            return Err(Error::new(ErrorCode::Denied, not_granted(target, true)));
        }
        tables.insert(target.clone());
    }
    for name in &subset.relations {
        if subset.ctes.contains(name) || Some(name) == target.as_ref() {
            continue;
        }
        if !grant.may_read(name) {
            return Err(Error::new(ErrorCode::Denied, not_granted(name, false)));
        }
        tables.insert(name.clone());
    }
    Ok(tables)
}

/// A name of one plain part, lower-cased (as both engines fold unquoted
/// names; quoted names are taken as written).
fn plain_name(name: &ObjectName) -> Option<String> {
    match name.0.as_slice() {
        [ObjectNamePart::Identifier(ident)] => Some(match ident.quote_style {
            None => ident.value.to_ascii_lowercase(),
            Some(_) => ident.value.clone(),
        }),
        _ => None,
    }
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

/// `strftime`'s format made of `%Y %m %d %H %M %S` and plain characters,
/// as `to_char`'s (plain characters double-quoted).
fn to_char_format(format: &str) -> Option<String> {
    let mut out = String::new();
    let mut plain = String::new();
    let mut chars = format.chars();
    let flush = |plain: &mut String, out: &mut String| {
        if !plain.is_empty() {
            out.push('"');
            out.push_str(plain);
            out.push('"');
            plain.clear();
        }
    };
    while let Some(c) = chars.next() {
        if c == '%' {
            let field = match chars.next()? {
                'Y' => "YYYY",
                'm' => "MM",
                'd' => "DD",
                'H' => "HH24",
                'M' => "MI",
                'S' => "SS",
                _ => return None,
            };
            flush(&mut plain, &mut out);
            out.push_str(field);
        } else if c.is_ascii_alphanumeric() {
            // Letters and digits could read as to_char patterns: quoted.
            plain.push(c);
        } else if " -:/.,".contains(c) {
            flush(&mut plain, &mut out);
            out.push(c);
        } else {
            return None;
        }
    }
    flush(&mut plain, &mut out);
    Some(out)
}

/// The second pass: the rewrites of the subset (placeholders, LIKE, the
/// functions spelled differently), applied where the first pass allowed.
#[derive(Default)]
struct Rewrite {
    /// The highest parameter number so far (SQLite numbers a bare `?` as
    /// one more than that).
    params: usize,
}

impl VisitorMut for Rewrite {
    type Break = Error;

    fn pre_visit_value(&mut self, value: &mut ValueWithSpan) -> ControlFlow<Error> {
        if let Value::Placeholder(p) = &mut value.value {
            let n = match placeholder_index(p) {
                Some(0) => self.params + 1,
                Some(n) => n,
                None => return ControlFlow::Break(invalid("parameters are `?` or `?N`")),
            };
            self.params = self.params.max(n);
            *p = format!("${n}");
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Error> {
        match expr {
            Expr::Like {
                negated,
                any,
                expr: value,
                pattern,
                escape_char,
            } => {
                *expr = Expr::ILike {
                    negated: *negated,
                    any: *any,
                    expr: value.clone(),
                    pattern: pattern.clone(),
                    escape_char: escape_char.clone(),
                };
            }
            Expr::Function(f) => {
                let name = plain_name(&f.name).unwrap_or_default();
                let replacement = match name.as_str() {
                    "ifnull" => {
                        f.name = ObjectName::from(vec![Ident::new("coalesce")]);
                        None
                    }
                    "group_concat" | "string_agg" => Some(string_agg(f)),
                    "date" => Some(pg_expr(
                        "to_char((now() AT TIME ZONE 'UTC')::date, 'YYYY-MM-DD')".to_owned(),
                    )),
                    "strftime" => {
                        let format = match &f.args {
                            FunctionArguments::List(list) => match list.args.first() {
                                Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(
                                    v,
                                )))) => match &v.value {
                                    Value::SingleQuotedString(s) => to_char_format(s),
                                    _ => None,
                                },
                                _ => None,
                            },
                            _ => None,
                        };
                        format.map(|format| {
                            pg_expr(format!(
                                "to_char(now() AT TIME ZONE 'UTC', '{}')",
                                format.replace('\'', "''")
                            ))
                        })
                    }
                    _ => None,
                };
                if let Some(replacement) = replacement {
                    match replacement {
                        Some(replacement) => *expr = replacement,
                        None => {
                            return ControlFlow::Break(invalid(format!(
                                "`{name}` could not be rewritten"
                            )));
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// `group_concat(x[, s])` → `string_agg(CAST(x AS TEXT), s)` (`','` by
/// default), which both engines have.
fn string_agg(f: &Function) -> Option<Expr> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let arg = |i: usize| match list.args.get(i) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(e.to_string()),
        _ => None,
    };
    let separator = match list.args.len() {
        1 => "','".to_owned(),
        2 => arg(1)?,
        _ => return None,
    };
    let distinct = if list.duplicate_treatment.is_some() {
        "DISTINCT "
    } else {
        ""
    };
    let mut call = pg_expr(format!(
        "string_agg({distinct}CAST({} AS TEXT), {separator})",
        arg(0)?
    ))?;
    if let Expr::Function(g) = &mut call {
        g.filter = f.filter.clone();
        g.over = f.over.clone();
    }
    Some(call)
}

/// An expression written for PostgreSQL by the host.
fn pg_expr(sql: String) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .ok()?
        .parse_expr()
        .ok()
}

/// Adds `RETURNING <identity>` to an INSERT into a table that has one, so
/// the host can fill `last-insert-rowid`; whether it did.
fn returning(statement: &mut Statement, schema: &Schema) -> bool {
    let Statement::Insert(insert) = statement else {
        return false;
    };
    let TableObject::TableName(name) = &insert.table else {
        return false;
    };
    let Some(column) = plain_name(name).and_then(|t| schema.identity.get(&t)) else {
        return false;
    };
    insert.returning = Some(vec![SelectItem::UnnamedExpr(Expr::Identifier(Ident::new(
        column.clone(),
    )))]);
    true
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn grant() -> DbGrant {
        DbGrant::new(
            ["customers", "invoices", "invoice_items", "settings"],
            ["customers", "invoices", "invoice_items", "settings"],
        )
    }

    fn schema() -> Schema {
        Schema {
            identity: [
                ("customers", "id"),
                ("invoices", "id"),
                ("invoice_items", "id"),
            ]
            .into_iter()
            .map(|(t, c)| (t.to_owned(), c.to_owned()))
            .collect(),
        }
    }

    fn ok(sql: &str) -> Checked {
        check(sql, &grant(), &schema()).unwrap_or_else(|e| panic!("{sql}: {}", e.message))
    }

    fn refused(sql: &str) -> Error {
        match check(sql, &grant(), &schema()) {
            Ok(c) => panic!("{sql} passed as {}", c.sql),
            Err(e) => e,
        }
    }

    #[test]
    fn the_demo_statements_pass_and_are_rewritten_exactly() {
        for (sql, want) in [
            (
                "SELECT id, name, email FROM customers ORDER BY id LIMIT 10",
                "SELECT id, name, email FROM customers ORDER BY id LIMIT 10",
            ),
            (
                "SELECT c.name FROM customers c WHERE ?1 = '' OR c.name LIKE ?2 ESCAPE '\\' ORDER BY c.name COLLATE NOCASE, c.id LIMIT ?3 OFFSET ?4",
                "SELECT c.name FROM customers c WHERE $1 = '' OR c.name ILIKE $2 ESCAPE '\\' ORDER BY c.name COLLATE NOCASE, c.id LIMIT $3 OFFSET $4",
            ),
            (
                "UPDATE customers SET name = ?, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?",
                "UPDATE customers SET name = $1, updated_at = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') WHERE id = $2",
            ),
            (
                "SELECT count(*) FILTER (WHERE status = 'open') AS open FROM invoices",
                "SELECT count(*) FILTER (WHERE status = 'open') AS open FROM invoices",
            ),
            (
                "SELECT ifnull(sum(total_cents), 0) AS total FROM invoices",
                "SELECT coalesce(sum(total_cents), 0) AS total FROM invoices",
            ),
            (
                "SELECT group_concat(name) AS names FROM customers",
                "SELECT string_agg(CAST(name AS TEXT), ',') AS names FROM customers",
            ),
            (
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            ),
        ] {
            assert_eq!(ok(sql).sql, want);
        }
        let insert = ok(
            "INSERT INTO invoices (number, customer_id, issued_on) VALUES ((SELECT coalesce(max(number), 0) + 1 FROM invoices), ?, coalesce(nullif(?, ''), date('now')))",
        );
        assert!(insert.sql.ends_with(" RETURNING id"), "{}", insert.sql);
        assert!(insert.returns_id && insert.writes);
        assert_eq!(insert.params, 2);
        assert!(
            insert
                .sql
                .contains("to_char((now() AT TIME ZONE 'UTC')::DATE, 'YYYY-MM-DD')"),
            "{}",
            insert.sql
        );
        assert_eq!(&*insert.tables, "invoices");
    }

    #[test]
    fn bare_and_numbered_parameters_number_as_sqlite_does() {
        let sql = "SELECT ? AS a, ?5 AS b, ? AS c, ?2 AS d";
        assert_eq!(ok(sql).sql, "SELECT $1 AS a, $5 AS b, $6 AS c, $2 AS d");
        assert_eq!(ok(sql).params, 6);
    }

    #[test]
    fn what_is_not_portable_is_refused_with_the_portable_spelling() {
        for (sql, hint) in [
            (
                "SELECT sum(status = 'open') FROM invoices",
                "count(*) FILTER (WHERE",
            ),
            ("SELECT printf('%d', 1)", "build the text in the guest"),
            ("SELECT iif(1, 2, 3)", "CASE WHEN"),
            ("SELECT CAST(1 AS INTEGER)", "BIGINT"),
            ("SELECT CAST(1 AS REAL)", "DOUBLE PRECISION"),
            (
                "INSERT OR REPLACE INTO customers (name) VALUES ('a')",
                "ON CONFLICT",
            ),
            ("SELECT date('now', '+1 day')", "date('now')"),
            ("SELECT strftime('%j', 'now')", "%Y %m %d"),
            ("SELECT x'00'", "as a parameter"),
            (
                "SELECT name FROM customers ORDER BY name COLLATE BINARY",
                "COLLATE NOCASE",
            ),
            ("SELECT * FROM json_each('[1]')", "table functions"),
            ("SELECT 1; SELECT 2", "one statement per call"),
            ("DELETE FROM customers RETURNING id", "RETURNING"),
            ("SELECT `name` FROM customers", "double quotes"),
            ("SELECT :name", "`?` or `?N`"),
            ("SELECT @name", "`?` or `?N`"),
            ("SELECT round(1.25, 1) AS r", "round(x)"),
            (
                "SELECT count(*) FROM customers",
                "name the column `count(*)` with AS",
            ),
        ] {
            let e = refused(sql);
            assert_eq!(e.code, ErrorCode::InvalidInput, "{sql}: {}", e.message);
            assert!(e.message.contains(hint), "{sql}: {}", e.message);
        }
    }

    #[test]
    fn postgresql_statements_and_smuggling_are_refused() {
        for sql in [
            "SET ROLE rawalite_owner",
            "SET statement_timeout = 0",
            "RESET ALL",
            "SHOW search_path",
            "SELECT set_config('role', 'x', true)",
            "COPY customers TO STDOUT",
            "COPY customers FROM '/etc/passwd'",
            "SELECT pg_read_file('/etc/passwd')",
            "SELECT pg_ls_dir('.')",
            "SELECT lo_from_bytea(0, 'x')",
            "DO $$ BEGIN END $$",
            "LISTEN c",
            "NOTIFY c",
            "SELECT pg_notify('c', 'x')",
            "SELECT pg_advisory_lock(1)",
            "LOCK TABLE customers IN ACCESS EXCLUSIVE MODE",
            "PREPARE p AS SELECT 1",
            "EXECUTE p",
            "DECLARE c CURSOR FOR SELECT 1",
            "EXPLAIN SELECT 1",
            "CALL p()",
            "BEGIN",
            "COMMIT",
            "SAVEPOINT s",
            "ROLLBACK",
            "SELECT pg_sleep(10)",
            "SELECT pg_terminate_backend(1)",
            "SELECT $a$ ' $a$, 1 AS smuggled --'",
            "SELECT E'\\'', pg_sleep(1) --'",
            "SELECT repeat('x', 200000000)",
            "SELECT lpad('x', 200000000)",
            "SELECT string_agg(name, ',' ORDER BY name) FROM customers",
            "SELECT * FROM generate_series(1, ?)",
            "SELECT count(*) FROM generate_series(1, 1000000000)",
            "SELECT * FROM customers FOR UPDATE",
            "WITH d AS (DELETE FROM customers RETURNING id) SELECT * FROM d",
            "CREATE TABLE t (x int)",
            "CREATE TEMP TABLE t (x int)",
            "DROP TABLE customers",
            "VACUUM",
            "SELECT relname FROM pg_catalog.pg_class",
            "SELECT 1::text",
            "SELECT customers.name FROM app.customers",
            "SELECT 'a' ~ 'b'",
        ] {
            let e = refused(sql);
            assert!(
                matches!(e.code, ErrorCode::InvalidInput | ErrorCode::Denied),
                "{sql}: {e:?}"
            );
        }
    }

    #[test]
    fn tables_outside_the_grant_get_the_grants_denial() {
        let grant = DbGrant::new(["customers"], []);
        for (sql, table) in [
            (
                "SELECT * FROM invoices",
                "`invoices` is not in this guest's db.read",
            ),
            (
                "SELECT * FROM users",
                "`users` is not in this guest's db.read",
            ),
            ("SELECT relname FROM pg_class", "`pg_class` is not in"),
            (
                "SELECT * FROM information_schema.tables",
                "name tables without a schema",
            ),
            (
                "INSERT INTO customers (name) VALUES ('x')",
                "`customers` is not in this guest's db.write",
            ),
            ("SELECT (SELECT count(*) FROM sessions)", "`sessions`"),
        ] {
            let e = check(sql, &grant, &schema()).unwrap_err();
            assert!(e.message.contains(table), "{sql}: {}", e.message);
        }
        // A common table expression is not a table.
        assert!(check("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5) SELECT x FROM c", &grant, &schema()).is_ok());
        assert!(
            check(
                "SELECT (SELECT count(*) FROM customers) AS n",
                &grant,
                &schema()
            )
            .is_ok()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Whatever text a guest sends: no panic, and what passes is one
        /// statement that PostgreSQL reads as the host rendered it.
        #[test]
        fn any_text_is_checked_without_harm(sql in "[ -~]{0,80}") {
            if let Ok(checked) = check(&sql, &grant(), &schema()) {
                let again = parse(&PostgreSqlDialect {}, &checked.sql).unwrap();
                prop_assert_eq!(again.len(), 1);
            }
        }

        /// Statements built from the subset's pieces pass, and their
        /// parameters are renumbered densely.
        #[test]
        fn subset_statements_pass(
            column in prop::sample::select(vec!["id", "name", "email", "c.name"]),
            op in prop::sample::select(vec!["=", "<>", "<", ">=", "LIKE"]),
            agg in prop::sample::select(vec!["count(*)", "max(id)", "min(name)", "sum(id)", "avg(id)"]),
            limit in 1u32..100,
        ) {
            let sql = format!("SELECT {agg} AS n, {column} FROM customers c WHERE {column} {op} ? GROUP BY {column} ORDER BY {column} LIMIT {limit}");
            let checked = check(&sql, &grant(), &schema()).map_err(|e| TestCaseError::fail(e.message))?;
            prop_assert_eq!(checked.params, 1);
            prop_assert!(checked.sql.contains("$1"));
        }
    }
}
