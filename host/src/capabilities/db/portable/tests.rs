use super::*;
use crate::capabilities::db::DbLimits;
use proptest::prelude::*;

fn grant() -> DbGrant {
    DbGrant::new(
        ["customers", "invoices", "invoice_items", "settings"],
        ["customers", "invoices", "invoice_items", "settings"],
    )
}

fn schema() -> Schema {
    let columns = |names: &[&str]| names.iter().map(|c| c.to_string()).collect();
    Schema {
        columns: [
            (
                "customers",
                columns(&[
                    "id",
                    "name",
                    "email",
                    "phone",
                    "address",
                    "notes",
                    "created_at",
                    "updated_at",
                ]),
            ),
            (
                "invoices",
                columns(&[
                    "id",
                    "number",
                    "customer_id",
                    "issued_on",
                    "status",
                    "total_cents",
                ]),
            ),
            (
                "invoice_items",
                columns(&[
                    "id",
                    "invoice_id",
                    "position",
                    "quantity",
                    "unit_price_cents",
                ]),
            ),
            ("settings", columns(&["key", "value"])),
        ]
        .into_iter()
        .map(|(t, c)| (t.to_owned(), c))
        .collect(),
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
    check(sql, &grant(), &schema()).unwrap_or_else(|e| panic!("{}: {}", short(sql), e.message))
}

/// A statement as a failure message shows it: the start of a long one.
fn short(sql: &str) -> &str {
    &sql[..sql.floor_char_boundary(200)]
}

fn refused(sql: &str) -> Error {
    match check(sql, &grant(), &schema()) {
        Ok(c) => panic!("{} passed as {}", short(sql), short(&c.sql)),
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

/// Runs `f` on a thread with `stack` bytes of stack, as the check would
/// run on a guest's fiber: an overflow aborts the test process.
fn on_stack<T: Send + 'static>(stack: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(stack)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn the_deepest_statement_allowed_checks_on_a_small_stack() {
    // The checking threads have 64 MiB; what DEPTH allows fits in a
    // fiber's 2 MiB (debug builds' frames are several times larger).
    let stack = if cfg!(debug_assertions) {
        32 << 20
    } else {
        2 << 20
    };
    let near = DEPTH - 20;
    let mut statements: Vec<String> = ["-", "+", "*", "/", "%", "||", "=", "<>", "AND", "OR"]
        .iter()
        .map(|op| format!("SELECT 1{} AS x", format!(" {op} 1").repeat(near)))
        .collect();
    statements.push(format!(
        "SELECT 1 AS x{}",
        " UNION SELECT 1".repeat(near / 3)
    ));
    statements.push(format!(
        "SELECT id FROM customers WHERE name LIKE 'a' OR {}",
        vec!["c.name = ?"; near / 3].join(" OR ")
    ));
    statements.push(format!(
        "SELECT name FROM customers WHERE {}",
        vec!["name IS NOT NULL"; near / 4].join(" AND ")
    ));
    on_stack(stack, move || {
        for sql in statements {
            let outcome = check(&sql, &grant(), &schema());
            if let Err(e) = &outcome {
                // Refused for what it says, never for its depth.
                assert!(!e.message.contains("nests"), "{}", e.message);
            }
        }
    });
}

#[test]
fn statements_deeper_than_allowed_are_refused_naming_the_limit() {
    let chain = |n: usize, op: &str| format!("SELECT 1{} AS x", format!(" {op} 1").repeat(n));
    for n in [DEPTH + 1, 10_000, 30_000] {
        for op in ["-", "||", "AND", "OR", "*"] {
            let e = refused(&chain(n, op));
            assert!(e.message.contains(&DEPTH.to_string()), "{}", e.message);
        }
    }
    let unions = format!("SELECT 1 AS x{}", " UNION ALL SELECT 1".repeat(DEPTH + 1));
    assert!(refused(&unions).message.contains(&DEPTH.to_string()));
    for nested in [
        format!("SELECT {}1{} AS x", "(".repeat(100), ")".repeat(100)),
        format!(
            "SELECT {}1{} AS x",
            "CASE WHEN 1 THEN ".repeat(100),
            " END".repeat(100)
        ),
        format!("SELECT {}1{} AS x", "(SELECT ".repeat(100), ")".repeat(100)),
        format!(
            "SELECT 1 AS x WHERE 1 IN {}1{}",
            "(SELECT 1 WHERE 1 IN (".repeat(30),
            "))".repeat(30)
        ),
    ] {
        let e = refused(&nested);
        assert!(
            e.message.contains(&NESTING.to_string()),
            "{}: {}",
            &nested[..40],
            e.message
        );
    }
    for prefix in ["NOT ", "- ", "NOT -"] {
        let e = refused(&format!("SELECT {}1 AS x", prefix.repeat(1000)));
        assert!(e.message.contains(&NESTING.to_string()), "{}", e.message);
    }
}

/// The second line: without the bound on tokens, the deepest tree 64 KiB
/// of SQL can make is checked, printed, compared and dropped on a checking
/// thread's stack.
#[test]
fn the_checking_stack_holds_any_tree_64_kib_can_make() {
    let limit = DbLimits::of(&crate::limits::Limits::default()).sql_bytes;
    let deepest = [
        format!("SELECT 1{} AS x", "-1".repeat((limit - 20) / 2)),
        format!(
            "SELECT 1 AS x{}",
            " UNION SELECT 1".repeat((limit - 20) / 15)
        ),
        format!("SELECT 1 AS x WHERE 1{}", " OR 1".repeat((limit - 30) / 5)),
    ];
    // Debug builds' frames are several times larger.
    let stack = if cfg!(debug_assertions) {
        16 * threads::STACK
    } else {
        threads::STACK
    };
    on_stack(stack, move || {
        for sql in deepest {
            assert!(sql.len() <= limit);
            let tokens = sqlparser::tokenizer::Tokenizer::new(&SQLiteDialect {}, &sql)
                .tokenize_with_location()
                .unwrap();
            let checked = check_tokens(tokens, &grant(), &schema());
            assert!(checked.is_ok(), "{:?}", checked.err());
        }
    });
}

#[test]
fn a_common_table_expression_is_seen_only_where_postgresql_sees_it() {
    let grant = DbGrant::new(["customers"], []);
    let denied = |sql: &str, table: &str| {
        let e = check(sql, &grant, &schema()).unwrap_err();
        assert_eq!(e.code, ErrorCode::Denied, "{sql}: {}", e.message);
        assert!(
            e.message.contains(&format!("`{table}`")),
            "{sql}: {}",
            e.message
        );
    };
    // A CTE's own body reads the real relation of its name.
    denied(
        "WITH pg_roles AS (SELECT rolname FROM pg_roles) SELECT CAST(rolname AS TEXT) AS r FROM pg_roles",
        "pg_roles",
    );
    denied(
        "WITH pg_database AS (SELECT datname FROM pg_database WHERE 1 = 1) SELECT datname FROM pg_database",
        "pg_database",
    );
    // A later CTE is not in reach of an earlier one, without RECURSIVE.
    denied(
        "WITH b AS (SELECT id FROM a), a AS (SELECT id FROM customers) SELECT id FROM b",
        "a",
    );
    // A CTE of a subquery is not in reach of the query around it.
    denied(
        "SELECT (WITH pg_class AS (SELECT 1 AS x) SELECT x FROM pg_class) AS a FROM pg_class",
        "pg_class",
    );
    denied(
        "SELECT id FROM customers UNION SELECT oid FROM pg_authid",
        "pg_authid",
    );
    for sql in [
        "WITH c AS (SELECT id FROM customers) SELECT id FROM c",
        "WITH a AS (SELECT id FROM customers), b AS (SELECT id FROM a) SELECT id FROM b",
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5) SELECT x FROM c",
        "WITH c AS (SELECT id FROM customers) SELECT (SELECT count(*) FROM c) AS n",
        "WITH customers AS (SELECT 1 AS id) SELECT id FROM customers",
    ] {
        check(sql, &grant, &schema()).unwrap_or_else(|e| panic!("{sql}: {}", e.message));
    }
}

#[test]
fn every_operand_of_every_set_operation_is_checked() {
    let grant = DbGrant::new(["customers"], []);
    for sql in [
        "SELECT id FROM customers UNION TABLE users",
        "SELECT id FROM customers UNION TABLE host.users",
        "SELECT CAST(name AS TEXT) AS a FROM customers UNION TABLE information_schema.applicable_roles",
        "SELECT id FROM customers UNION SELECT id FROM (SELECT id FROM customers UNION TABLE users) x",
        "SELECT id FROM customers WHERE id IN (SELECT id FROM customers EXCEPT TABLE sessions)",
        "SELECT id FROM customers UNION ALL SELECT id FROM customers INTERSECT SELECT id FROM users",
    ] {
        let e = check(sql, &grant, &schema()).unwrap_err();
        assert!(
            matches!(e.code, ErrorCode::InvalidInput | ErrorCode::Denied),
            "{sql}: {e:?}"
        );
    }
}

#[test]
fn words_postgresql_calls_are_not_columns() {
    for word in [
        "current_user",
        "session_user",
        "current_role",
        "current_schema",
        "current_catalog",
        "user",
        "CURRENT_USER",
        "system_user",
    ] {
        for sql in [
            format!("SELECT {word} AS a"),
            format!("SELECT name FROM customers WHERE name = {word}"),
            format!("SELECT group_concat(name, {word}) AS a FROM customers"),
            format!("SELECT max({word}) AS a FROM customers"),
            format!("SELECT count(*) FILTER (WHERE {word} = 'x') AS a FROM customers"),
        ] {
            let e = refused(&sql);
            assert_eq!(e.code, ErrorCode::InvalidInput, "{sql}: {}", e.message);
        }
    }
    // Quoted, the word is a column's name on both engines.
    assert!(check("SELECT \"user\" FROM customers", &grant(), &schema()).is_ok());
}

#[test]
fn a_qualified_name_is_a_column_of_a_table_in_reach() {
    for sql in [
        "SELECT c.row_to_json AS j FROM customers c",
        "SELECT c.pg_typeof AS j FROM customers c",
        "SELECT customers.to_json AS j FROM customers",
        "SELECT name.md5 AS j FROM customers",
        "SELECT c.name FROM customers x",
        "SELECT count(*) AS n FROM customers c WHERE c.quote_literal = ''",
        "SELECT d.count FROM (SELECT count(*) FROM customers) d",
        "SELECT c.id FROM customers c, (SELECT c.name AS n) d",
        "SELECT c.id FROM customers c JOIN invoices i ON i.id = x.id JOIN customers x ON x.id = 1",
        "SELECT x.name FROM customers x WHERE x.id IN (SELECT x.customer_id FROM invoices x)",
        "INSERT INTO settings (key, value) VALUES ('a', 'b') ON CONFLICT (key) DO UPDATE SET value = excluded.row_to_json",
        "SELECT x.* FROM customers c",
        "SELECT c.name.length AS n FROM customers c",
        "WITH w AS (SELECT id FROM customers) SELECT w.name FROM w",
    ] {
        let e = refused(sql);
        assert_eq!(e.code, ErrorCode::InvalidInput, "{sql}: {}", e.message);
    }
    for sql in [
        "SELECT c.name FROM customers c",
        "SELECT customers.name FROM customers",
        "SELECT d.n FROM (SELECT count(*) AS n FROM customers) d",
        "SELECT d.name FROM (SELECT * FROM customers) d",
        "SELECT d.name FROM (SELECT c.* FROM customers c) d",
        "SELECT i.number, c.name FROM invoices i JOIN customers c ON c.id = i.customer_id",
        "SELECT c.id FROM customers c WHERE EXISTS (SELECT 1 AS one FROM invoices i WHERE i.customer_id = c.id)",
        "WITH w AS (SELECT id, name FROM customers) SELECT w.name FROM w",
        "WITH w(a, b) AS (SELECT id, name FROM customers) SELECT w.b FROM w",
        "SELECT v.column1 FROM (VALUES (1), (2)) v",
        "INSERT INTO settings (key, value) VALUES ('a', 'b') ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        "UPDATE customers SET name = 'x' WHERE customers.id = 1",
        "UPDATE customers AS c SET name = 'x' WHERE c.id = 1",
        "SELECT c.* FROM customers c",
    ] {
        ok(sql);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// Whatever text a guest sends: no panic, and what passes is one
    /// statement that PostgreSQL reads as the host rendered it.
    #[test]
    fn any_text_is_checked_without_harm(sql in "[ -~]{0,80}") {
        if let Ok(checked) = check(&sql, &grant(), &schema()) {
            let again = Parser::parse_sql(&PostgreSqlDialect {}, &checked.sql).unwrap();
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
