//! The rewrites of the subset, applied to a statement that passed the
//! check: placeholders, LIKE, and the functions PostgreSQL spells
//! differently. A rewrite builds its nodes from the checked ones (never
//! from text it parses again), so the final comparison compares
//! PostgreSQL's reading with the tree that was checked.

use super::{Schema, invalid, placeholder_index, plain_name};
use crate::capabilities::Error;
use sqlparser::ast::{
    CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, Ident, ObjectName, SelectItem, Statement, TableObject, Value, ValueWithSpan,
    VisitMut, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use std::ops::ControlFlow;

/// Rewrites `statement` in place; how many parameters it takes.
pub(super) fn rewrite(statement: &mut Statement) -> Result<usize, Error> {
    let mut rewrite = Rewrite::default();
    if let ControlFlow::Break(e) = VisitMut::visit(statement, &mut rewrite) {
        return Err(e);
    }
    Ok(rewrite.params)
}

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
                    "strftime" => Some(first_literal(f).and_then(to_char_format).and_then(
                        |format| {
                            pg_expr(format!(
                                "to_char(now() AT TIME ZONE 'UTC', '{}')",
                                format.replace('\'', "''")
                            ))
                        },
                    )),
                    _ => None,
                };
                match replacement {
                    None => {}
                    Some(Some(replacement)) => *expr = replacement,
                    Some(None) => {
                        return ControlFlow::Break(invalid(format!(
                            "`{name}` could not be rewritten"
                        )));
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

fn first_literal(f: &Function) -> Option<&str> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    match list.args.first() {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) => match &v.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// `group_concat(x[, s])` → `string_agg(CAST(x AS TEXT), s)` (`','` by
/// default), which both engines have, built from the checked arguments.
fn string_agg(f: &Function) -> Option<Expr> {
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let arg = |i: usize| match list.args.get(i) {
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => Some(e.clone()),
        _ => None,
    };
    let separator = match list.args.len() {
        1 => Expr::Value(Value::SingleQuotedString(",".into()).into()),
        2 => arg(1)?,
        _ => return None,
    };
    let text = Expr::Cast {
        kind: CastKind::Cast,
        expr: Box::new(arg(0)?),
        data_type: DataType::Text,
        format: None,
    };
    Some(Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("string_agg")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: list.duplicate_treatment,
            args: vec![
                FunctionArg::Unnamed(FunctionArgExpr::Expr(text)),
                FunctionArg::Unnamed(FunctionArgExpr::Expr(separator)),
            ],
            clauses: Vec::new(),
        }),
        within_group: Vec::new(),
        filter: f.filter.clone(),
        null_treatment: None,
        over: f.over.clone(),
    }))
}

/// An expression the host writes for PostgreSQL (no guest text in it).
fn pg_expr(sql: String) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .ok()?
        .parse_expr()
        .ok()
}

/// `strftime`'s format made of `%Y %m %d %H %M %S` and plain characters,
/// as `to_char`'s (plain characters double-quoted).
pub(super) fn to_char_format(format: &str) -> Option<String> {
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

/// Adds `RETURNING <identity>` to an INSERT into a table that has one, so
/// the host can fill `last-insert-rowid`; whether it did.
pub(super) fn returning(statement: &mut Statement, schema: &Schema) -> bool {
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
