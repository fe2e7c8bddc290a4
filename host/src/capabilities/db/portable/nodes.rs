//! The portable subset node by node: which expressions, operators,
//! literals, casts, functions and names it has. `walk.rs` calls these on
//! every node it meets and walks the children itself.

use super::{invalid, placeholder_index, plain_name};
use crate::capabilities::Error;
use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, InTarget, UnaryOperator, Value, ValueWithSpan,
};

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

/// SQL-standard words that PostgreSQL evaluates as functions where SQLite
/// (and sqlparser) read a column: `SELECT current_user` names the role.
const KEYWORD_FUNCTIONS: &[&str] = &[
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "localtime",
    "localtimestamp",
    "session_user",
    "system_user",
    "user",
];

/// A name as both engines compare it: unquoted names fold to lower case,
/// quoted ones are taken as written.
pub(super) fn name_of(ident: &Ident) -> String {
    match ident.quote_style {
        None => ident.value.to_ascii_lowercase(),
        Some(_) => ident.value.clone(),
    }
}

/// Names are bare or in double quotes, the one quoting both engines share.
pub(super) fn ident(ident: &Ident) -> Result<(), Error> {
    match ident.quote_style {
        None | Some('"') => Ok(()),
        Some(_) => Err(invalid(format!(
            "`{ident}`: quote names with \"double quotes\" only"
        ))),
    }
}

/// A bare name used as a column: not one PostgreSQL calls.
pub(super) fn column(column: &Ident) -> Result<(), Error> {
    ident(column)?;
    if column.quote_style.is_none() && KEYWORD_FUNCTIONS.contains(&name_of(column).as_str()) {
        return Err(invalid(format!(
            "`{column}` is a function on PostgreSQL, not a column; if it is a column, quote it: \"{}\"",
            column.value
        )));
    }
    Ok(())
}

pub(super) fn value(value: &ValueWithSpan) -> Result<(), Error> {
    match &value.value {
        Value::Number(..) | Value::SingleQuotedString(_) | Value::Boolean(_) | Value::Null => {
            Ok(())
        }
        Value::Placeholder(p) if placeholder_index(p).is_some() => Ok(()),
        Value::Placeholder(p) => Err(invalid(format!("`{p}`: parameters are `?` or `?N`"))),
        Value::HexStringLiteral(_) => Err(invalid(
            "X'…' blob literals are not portable: pass the blob as a parameter",
        )),
        other => Err(invalid(format!(
            "`{other}` is not a portable literal: use '…' strings, numbers and parameters"
        ))),
    }
}

/// Checks one expression node's kind (its children are checked on their own).
pub(super) fn expression(expr: &Expr) -> Result<(), Error> {
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
            Expr::Value(v) if matches!(&v.value, Value::SingleQuotedString(p) if p.len() > crate::capabilities::db::LIKE_PATTERN_BYTES as usize) => {
                Err(invalid(format!(
                    "a LIKE pattern may have at most {} bytes",
                    crate::capabilities::db::LIKE_PATTERN_BYTES
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
        other => Err(not_portable(other)),
    }
}

pub(super) fn not_portable(what: &dyn std::fmt::Display) -> Error {
    invalid(format!(
        "`{what}` is not in the portable subset of SQL (docs/SQL.md lists what is)"
    ))
}

/// Checks a function call: its name and the shape of its arguments.
pub(super) fn function_call(f: &Function) -> Result<(), Error> {
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
                    FunctionArg::Unnamed(arg) => match arg {
                        FunctionArgExpr::Expr(_) => args.push(arg),
                        FunctionArgExpr::Wildcard if name == "count" && list.args.len() == 1 => {
                            args.push(arg)
                        }
                        _ => return Err(invalid(format!("`{f}`: `*` only as count(*)"))),
                    },
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
                && literal(0).is_some_and(|f| super::rewrite::to_char_format(f).is_some()) =>
        {
            Ok(())
        }
        "strftime" => Err(invalid(
            "strftime(…) is portable only as strftime(F, 'now'), F made of %Y %m %d %H %M %S and plain characters",
        )),
        "ifnull" | "group_concat" | "string_agg" if (1..=2).contains(&args.len()) => Ok(()),
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
    let mut expr = expr;
    while let Expr::Nested(inner) = expr {
        expr = inner;
    }
    match expr {
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
