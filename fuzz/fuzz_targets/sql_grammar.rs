//! The SQL check on statements built from the portable subset's pieces
//! and the attacks on it: common table expressions named like catalogs,
//! set operations with `TABLE`, qualified and bare words that are
//! functions on PostgreSQL, subqueries at every level. No panic; and with
//! `RAWALITE_FUZZ_POSTGRES` set (`cargo xtask fuzz` sets it), every
//! statement the check accepts is planned by PostgreSQL itself as the
//! guest's role, and its plan may read no relation outside the guest's
//! grant (schema `app`, `customers` and `invoices`).

#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use rawalite_fuzz::{grant, on_fiber_stack, schema};
use rawalite_host::capabilities::db::portable::check;
use std::sync::Mutex;

const TABLES: &[&str] = &[
    "customers",
    "invoices",
    "invoice_items",
    "settings",
    "users",
    "sessions",
    "pg_roles",
    "pg_class",
    "pg_authid",
    "pg_database",
    "pg_stat_activity",
    "pg_stat_user_tables",
    "information_schema.tables",
    "host.users",
    "app.customers",
    "c1",
    "c2",
];
const COLUMNS: &[&str] = &[
    "id",
    "name",
    "email",
    "number",
    "customer_id",
    "total_cents",
    "key",
    "value",
    "rolname",
    "relname",
    "x",
    "current_user",
    "user",
    "session_user",
    "current_schema",
    "current_role",
    "\"user\"",
];
const ALIASES: &[&str] = &[
    "a",
    "b",
    "c",
    "customers",
    "invoices",
    "pg_roles",
    "name",
    "x",
];
const FUNCTIONS: &[&str] = &[
    "count",
    "max",
    "min",
    "sum",
    "lower",
    "upper",
    "length",
    "coalesce",
    "nullif",
    "abs",
    "group_concat",
    "ifnull",
    "row_to_json",
    "pg_typeof",
    "version",
    "md5",
    "current_database",
];
const OPERATORS: &[&str] = &["+", "-", "*", "||", "=", "<>", "<", ">=", "AND", "OR"];

fn pick<'a>(u: &mut Unstructured, from: &[&'a str]) -> Result<&'a str> {
    u.choose(from).copied()
}

fn expr(u: &mut Unstructured, depth: u32) -> Result<String> {
    let leaf = depth == 0 || u.ratio(1, 3)?;
    if leaf {
        return Ok(match u.int_in_range(0..=5)? {
            0 => u.int_in_range(0..=100u32)?.to_string(),
            1 => format!(
                "'{}'",
                pick(u, &["a", "x", "%a%", "a\\", "'' || 1"])?.replace('\'', "''")
            ),
            2 => "?".into(),
            3 => format!("{}.{}", pick(u, ALIASES)?, pick(u, COLUMNS)?),
            4 => "NULL".into(),
            _ => pick(u, COLUMNS)?.into(),
        });
    }
    let d = depth - 1;
    Ok(match u.int_in_range(0..=9)? {
        0 => format!("{} {} {}", expr(u, d)?, pick(u, OPERATORS)?, expr(u, d)?),
        1 => {
            let function = pick(u, FUNCTIONS)?;
            if function == "count" && u.arbitrary()? {
                "count(*)".into()
            } else {
                format!("{function}({})", expr(u, d)?)
            }
        }
        2 => format!("group_concat({}, {})", expr(u, d)?, expr(u, d)?),
        3 => format!("({})", query(u, d)?),
        4 => format!("EXISTS ({})", query(u, d)?),
        5 => format!("{} IN ({})", expr(u, d)?, query(u, d)?),
        6 => format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            expr(u, d)?,
            expr(u, d)?,
            expr(u, d)?
        ),
        7 => format!("CAST({} AS {})", expr(u, d)?, pick(u, &["TEXT", "BIGINT"])?),
        8 => format!("NOT {}", expr(u, d)?),
        _ => format!("{} IS NULL", expr(u, d)?),
    })
}

fn from_item(u: &mut Unstructured, depth: u32) -> Result<String> {
    let item = if depth > 0 && u.ratio(1, 4)? {
        format!("({}) {}", query(u, depth - 1)?, pick(u, ALIASES)?)
    } else if u.arbitrary()? {
        format!("{} {}", pick(u, TABLES)?, pick(u, ALIASES)?)
    } else {
        pick(u, TABLES)?.into()
    };
    Ok(if u.ratio(1, 4)? {
        format!(
            "{item} JOIN {} ON {}",
            pick(u, TABLES)?,
            expr(u, depth.saturating_sub(1))?
        )
    } else {
        item
    })
}

fn select(u: &mut Unstructured, depth: u32) -> Result<String> {
    let mut items = Vec::new();
    for i in 0..u.int_in_range(1..=3)? {
        items.push(match u.int_in_range(0..=3)? {
            0 => "*".into(),
            1 => format!("{}.*", pick(u, ALIASES)?),
            2 => pick(u, COLUMNS)?.into(),
            _ => format!("{} AS n{i}", expr(u, depth)?),
        });
    }
    let mut sql = format!("SELECT {}", items.join(", "));
    if u.ratio(3, 4)? {
        sql += &format!(" FROM {}", from_item(u, depth)?);
        if u.arbitrary()? {
            sql += &format!(", {}", from_item(u, depth)?);
        }
    }
    if u.arbitrary()? {
        sql += &format!(" WHERE {}", expr(u, depth)?);
    }
    Ok(sql)
}

fn query(u: &mut Unstructured, depth: u32) -> Result<String> {
    let mut sql = String::new();
    if depth > 0 && u.ratio(1, 3)? {
        sql += if u.arbitrary()? {
            "WITH RECURSIVE "
        } else {
            "WITH "
        };
        let ctes = (0..u.int_in_range(1..=2)?)
            .map(|_| {
                Ok(format!(
                    "{} AS ({})",
                    pick(u, TABLES)?,
                    query(u, depth - 1)?
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        sql += &ctes.join(", ");
        sql += " ";
    }
    sql += &select(u, depth)?;
    if u.ratio(1, 3)? {
        let operator = pick(u, &["UNION", "UNION ALL", "EXCEPT", "INTERSECT"])?;
        let right = if u.ratio(1, 3)? {
            format!("TABLE {}", pick(u, TABLES)?)
        } else {
            select(u, depth)?
        };
        sql += &format!(" {operator} {right}");
    }
    if u.ratio(1, 4)? {
        sql += &format!(" LIMIT {}", u.int_in_range(1..=10u32)?);
    }
    Ok(sql)
}

fn statement(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0..=5)? {
        0 => format!("INSERT INTO {} (name) {}", pick(u, TABLES)?, query(u, 2)?),
        1 => format!(
            "UPDATE {} SET name = {} WHERE {}",
            pick(u, TABLES)?,
            expr(u, 2)?,
            expr(u, 2)?
        ),
        2 => format!("DELETE FROM {} WHERE {}", pick(u, TABLES)?, expr(u, 2)?),
        _ => query(u, 3)?,
    })
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(sql) = statement(&mut u) else {
        return;
    };
    let checked = on_fiber_stack(move || check(&sql, &grant(), &schema()).map(|c| (sql, c)));
    if let Ok((sql, checked)) = checked {
        planned_within_the_grant(&sql, &checked.sql);
    }
});

/// Asks PostgreSQL for the plan of the statement the check accepted, as
/// the guest's role, and fails on any relation outside the grant.
fn planned_within_the_grant(guest_sql: &str, sql: &str) {
    static CLIENT: Mutex<Option<Option<postgres::Client>>> = Mutex::new(None);
    let mut client = CLIENT.lock().unwrap();
    let client = client.get_or_insert_with(|| {
        let url = std::env::var("RAWALITE_FUZZ_POSTGRES").ok()?;
        let config: postgres::Config = url.parse().expect("RAWALITE_FUZZ_POSTGRES is a URL");
        Some(
            config
                .connect(postgres::NoTls)
                .expect("connect to RAWALITE_FUZZ_POSTGRES"),
        )
    });
    let Some(client) = client.as_mut() else {
        return;
    };
    let explain = format!("EXPLAIN (VERBOSE, FORMAT JSON) {}", without_parameters(sql));
    // PostgreSQL refusing it (the role's privileges, a type) is no leak.
    let Ok(rows) = client.simple_query(&explain) else {
        return;
    };
    let plan = rows.iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
        _ => None,
    });
    let plan: serde_json::Value =
        serde_json::from_str(&plan.expect("a plan")).expect("a JSON plan");
    let grant = grant();
    let readable = grant.readable();
    let mut nodes = vec![&plan];
    while let Some(node) = nodes.pop() {
        match node {
            serde_json::Value::Array(items) => nodes.extend(items),
            serde_json::Value::Object(fields) => {
                if let Some(relation) = fields.get("Relation Name").and_then(|r| r.as_str()) {
                    let schema = fields.get("Schema").and_then(|s| s.as_str());
                    assert!(
                        schema == Some("app") && readable.contains(relation),
                        "the check accepted {guest_sql:?} (sent as {sql:?}), whose plan reads {schema:?}.{relation}"
                    );
                }
                nodes.extend(fields.values());
            }
            _ => {}
        }
    }
}

/// `sql` with each `$N` outside a quoted string or name made NULL, so that
/// PostgreSQL plans it without values.
fn without_parameters(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) => {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
                out.push_str("NULL");
            }
            None => out.push(c),
        }
    }
    out
}
